//! The `plexus` binary: everything happens in `plexus::cli`.
//!
//! Its allocator is mimalloc rather than the system's: a proxied call allocates and
//! frees a few dozen blocks on one thread, one of them (the request's state) a few
//! kilobytes, and glibc's malloc consolidated its free lists on each such block. See
//! benches/README.md, "Allocator". The library (and so the tests' in-process routers)
//! keeps whatever allocator its user chose.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    plexus::cli::main()
}
