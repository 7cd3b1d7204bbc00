//! The `plexus` command line: argument parsing and dispatch, nothing else.
//!
//! Each subcommand lives in its own module and returns a [`CliError`]; this module turns
//! errors into exit codes in one place: 2 for bad input (syntax errors, bad files,
//! usage), 1 for failures at run time.

mod catalog;
mod check;
mod dtab;
mod run;
mod stat;
mod tls;

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A command failure and how the process should exit because of it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user gave something unusable; exit status 2.
    #[error("{0}")]
    BadInput(String),
    /// The command ran and failed; exit status 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::BadInput(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "plexus", version, about = "Plexus: a service mesh that speaks Linkerd 1.x", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check that a Linkerd 1.x configuration file can be run, without running it.
    Check {
        /// The configuration file (`-` reads standard input).
        config: std::path::PathBuf,
    },
    /// Run the routers of a Linkerd 1.x configuration file.
    Run {
        /// The configuration file (`-` reads standard input).
        config: std::path::PathBuf,
    },
    /// Show live request rates, success rates and latencies of a running Plexus.
    Stat {
        /// The admin server to read (`ip:port`).
        #[arg(long, default_value = "127.0.0.1:9990")]
        admin: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Print one table (after one interval) and exit.
        #[arg(long)]
        once: bool,
    },
    /// Run the Kubernetes tutorials on this machine: a simulated 3-node cluster on
    /// loopback with one Plexus per node and the hello/world/api apps.
    Demo {
        /// The tutorial's `helloworld` app (default: next to this binary).
        #[arg(long)]
        app: Option<std::path::PathBuf>,
        /// The simulated Kubernetes API's port on 127.0.0.1.
        #[arg(long, default_value_t = 8001)]
        api_port: u16,
    },
    /// Parse and show a Finagle path.
    Path {
        #[command(subcommand)]
        command: dtab::PathCommand,
    },
    /// Parse, show, look up, bind and explain dtabs (the playground on the command line).
    Dtab {
        #[command(subcommand)]
        command: dtab::DtabCommand,
    },
    /// Parse, show and simplify name trees.
    Nametree {
        #[command(subcommand)]
        command: dtab::NameTreeCommand,
    },
    /// Create a mesh CA and issue the certificates it signs (for encrypting traffic
    /// between nodes).
    Tls {
        #[command(subcommand)]
        command: tls::TlsCommand,
    },
}

/// `plexus demo`: this binary on every node, `helloworld` from beside it by default.
fn demo(app: Option<std::path::PathBuf>, api_port: u16) -> Result<String, CliError> {
    let plexus = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find the plexus binary: {e}")))?;
    let app = app.unwrap_or_else(|| plexus.with_file_name("helloworld"));
    crate::demo::run(crate::demo::DemoOptions {
        plexus,
        app,
        api_port,
        nodes: 3,
    })
    .map_err(CliError::Failed)?;
    Ok(String::new())
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => check::run(config),
        Command::Run { config } => run::run(config),
        Command::Stat {
            admin,
            interval,
            once,
        } => stat::run(admin, interval, once),
        Command::Demo { app, api_port } => demo(app, api_port),
        Command::Path { command } => dtab::run_path(command),
        Command::Dtab { command } => dtab::run_dtab(command),
        Command::Nametree { command } => dtab::run_nametree(command),
        Command::Tls { command } => tls::run(command),
    };
    match result {
        Ok(output) => {
            // A closed pipe (`plexus ... | head`) is not an error worth a panic.
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{output}").and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("plexus: cannot write output: {e}");
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("plexus: {e}");
            e.exit_code()
        }
    }
}

/// Reads an argument that may be `-` for standard input. At most one argument of a
/// command may be `-`; `stdin_used` tracks that.
fn read_arg(arg: &str, stdin_used: &mut bool) -> Result<String, CliError> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    if std::mem::replace(stdin_used, true) {
        return Err(CliError::BadInput(
            "only one argument can be read from standard input ('-')".into(),
        ));
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::BadInput(format!("cannot read standard input: {e}")))?;
    // A trailing newline from `echo` or a file is not part of the value.
    Ok(s.strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&s)
        .to_string())
}

/// Reads a configuration file (`-` for standard input) and checks that Plexus can run
/// it: bad syntax, unknown keys and unsupported kinds are all bad input, listed.
fn load_config(path: &std::path::Path) -> Result<(crate::config::Config, String), CliError> {
    let name = path.display().to_string();
    let text = if name == "-" {
        read_arg("-", &mut false)?
    } else {
        std::fs::read_to_string(path).map_err(|e| CliError::BadInput(format!("{name}: {e}")))?
    };
    let parsed = crate::config::Config::parse(&text)
        .map_err(|e| CliError::BadInput(format!("{name}: {e}")))?;
    let problems = parsed.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        return Err(CliError::BadInput(format!(
            "{name}: Plexus cannot run this configuration yet:\n{}",
            list.join("\n")
        )));
    }
    Ok((parsed, text))
}
