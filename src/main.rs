//! The `plexus` binary: everything happens in `plexus::cli`.

fn main() -> std::process::ExitCode {
    plexus::cli::main()
}
