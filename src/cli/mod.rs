//! The `plexus` command line (placeholder while the naming core lands).

/// Runs the command line.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
