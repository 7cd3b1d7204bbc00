//! The `plexus` binary: everything happens in `plexus::cli`.

/// mimalloc instead of the system allocator: every request allocates and frees header
/// maps, HPACK entries and frame buffers, and glibc's malloc (with its consolidation of
/// freed chunks) was 8 % of the proxy's CPU under gRPC load (see `benches/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    plexus::cli::main()
}
