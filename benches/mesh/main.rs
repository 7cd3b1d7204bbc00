//! Load benchmark of Plexus's HTTP/2 side, on loopback: `cargo bench --bench mesh`.
//! It measures gRPC unary calls through one h2 router against calling the server
//! directly (h2load), the two-hop path of the per-host mesh with the hop in HTTP/1.1,
//! upgraded to HTTP/2 between the peers, in TLS and both (wrk), and what TLS costs one
//! router on keep-alive connections and per new connection (full handshakes), and Thrift
//! calls direct, through one thrift router and through two peers with and without the
//! Mux upgrade. Targets
//! of a section run at once and are measured in interleaved rounds; the report gives
//! medians over the rounds and CPU per request of every process from `/proc`. See
//! `benches/README.md`.
//!
//! It shares the HTTP/1.1 proxy bench's process handling, `/proc` measurement, wrk
//! runner and backend (`benches/proxy/`). The binary also runs as the backend and as
//! the new-connection client when started with `PLEXUS_BENCH_ROLE` set; run without
//! `--bench` (as `cargo test --benches` does) it only checks its parsers.

// The proxy bench's modules, shared; this bench uses only part of them.
#[path = "../proxy/backend.rs"]
mod backend;
#[allow(dead_code, reason = "shared with the proxy bench, which uses the rest")]
#[path = "../proxy/load.rs"]
mod load;
#[allow(dead_code, reason = "shared with the proxy bench, which uses the rest")]
#[path = "../proxy/measure.rs"]
mod measure;
#[allow(dead_code, reason = "shared with the proxy bench, which uses the rest")]
#[path = "../proxy/procs.rs"]
mod procs;

mod connect;
mod forward;
mod grpc;
mod h2load;
mod report;
mod rounds;
mod sections;
mod setup;
mod thrift;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;

use crate::procs::ROLE_ENV;
use crate::sections::{Ctx, Section};

/// The CPU the load generators run on when pinning.
pub(crate) const LOAD_CPU: usize = 0;
/// The CPU the servers (and Plexus) run on when pinning.
pub(crate) const SERVER_CPU: usize = 1;

/// The sections, in the order they run.
const SECTIONS: [&str; 4] = ["grpc", "mesh", "tls", "thrift"];

/// What a run does, from `PLEXUS_BENCH_*` environment variables.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Sections to run (`PLEXUS_BENCH_SECTIONS`, comma-separated; default all).
    pub(crate) sections: Vec<String>,
    /// Rounds (`PLEXUS_BENCH_ROUNDS`, 5).
    pub(crate) rounds: u64,
    /// Load seconds per target over all rounds (`PLEXUS_BENCH_SECS`, 15).
    pub(crate) secs: u64,
    /// Load seconds per target before the rounds, not counted
    /// (`PLEXUS_BENCH_WARMUP_SECS`, 2).
    pub(crate) warmup_secs: u64,
    /// wrk connections (`PLEXUS_BENCH_CONNS`, 32).
    pub(crate) conns: u64,
    /// h2load connections and streams per connection (`PLEXUS_BENCH_H2_CONNS` 4,
    /// `PLEXUS_BENCH_H2_STREAMS` 32).
    pub(crate) h2_conns: u64,
    pub(crate) h2_streams: u64,
    /// Connections the new-connection client keeps going at once
    /// (`PLEXUS_BENCH_CONNECT_CONNS`, 8).
    pub(crate) connect_conns: u64,
    /// Worker threads of the hyper backend (`PLEXUS_BENCH_BACKEND_THREADS`, 2).
    pub(crate) backend_threads: usize,
    /// Pin load to CPU 0 and servers to CPU 1 (`PLEXUS_BENCH_PIN`, 1; needs 2 CPUs).
    pub(crate) pin: bool,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let num = |k: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(k) {
                Ok(v) => v
                    .parse()
                    .with_context(|| format!("{k}={v} is not a number")),
                Err(_) => Ok(default),
            }
        };
        let sections = match std::env::var("PLEXUS_BENCH_SECTIONS") {
            Ok(list) => {
                let names: Vec<String> = list
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                if let Some(bad) = names.iter().find(|n| !SECTIONS.contains(&n.as_str())) {
                    anyhow::bail!(
                        "PLEXUS_BENCH_SECTIONS: unknown section {bad} (known: {})",
                        SECTIONS.join(", ")
                    );
                }
                names
            }
            Err(_) => SECTIONS.iter().map(|s| s.to_string()).collect(),
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Settings {
            sections,
            rounds: num("PLEXUS_BENCH_ROUNDS", 5)?.max(1),
            secs: num("PLEXUS_BENCH_SECS", 15)?.max(1),
            warmup_secs: num("PLEXUS_BENCH_WARMUP_SECS", 2)?.max(1),
            conns: num("PLEXUS_BENCH_CONNS", 32)?.max(1),
            h2_conns: num("PLEXUS_BENCH_H2_CONNS", 4)?.max(1),
            h2_streams: num("PLEXUS_BENCH_H2_STREAMS", 32)?.max(1),
            connect_conns: num("PLEXUS_BENCH_CONNECT_CONNS", 8)?.max(1),
            backend_threads: usize::try_from(num("PLEXUS_BENCH_BACKEND_THREADS", 2)?)?.max(1),
            pin: num("PLEXUS_BENCH_PIN", 1)? != 0 && cpus >= 2,
        })
    }

    /// Seconds of one round's load run.
    pub(crate) fn round_secs(&self) -> u64 {
        (self.secs / self.rounds).max(1)
    }

    pub(crate) fn load_cpu(&self) -> Option<usize> {
        self.pin.then_some(LOAD_CPU)
    }

    pub(crate) fn server_cpu(&self) -> Option<usize> {
        self.pin.then_some(SERVER_CPU)
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

fn main() -> ExitCode {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("backend") => return backend::backend_main(),
        Ok("connect") => return connect::connect_main(),
        Ok("thrift-load") => return thrift::thrift_main(),
        Ok("h2-forward") => return forward::forward_main(),
        _ => {}
    }
    if !std::env::args().any(|a| a == "--bench") {
        load::self_check();
        procs::self_check();
        h2load::self_check();
        report::self_check();
        setup::self_check();
        println!("mesh bench: parser checks passed; `cargo bench --bench mesh` measures");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A binary named by an environment variable, or built from the work tree.
fn binary(var: &str, package: &str, bin: &str) -> anyhow::Result<(PathBuf, String)> {
    match std::env::var_os(var) {
        Some(path) => Ok((PathBuf::from(path), format!("given by {var}"))),
        None => Ok((
            procs::build_release(package, bin)?,
            "built from the work tree".into(),
        )),
    }
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    procs::ensure_packages(&[("wrk", "wrk"), ("h2load", "nghttp2-client")])?;
    if settings.wants("grpc") {
        // The grpc section's reference proxy.
        procs::ensure_packages(&[("nghttpx", "nghttp2-proxy")])?;
    }
    let (plexus, plexus_source) = binary("PLEXUS_BENCH_PLEXUS", "plexus", "plexus")?;
    let helloworld = if settings.wants("grpc") || settings.wants("thrift") {
        Some(binary(
            "PLEXUS_BENCH_HELLOWORLD",
            "plexus-examples",
            "helloworld",
        )?)
    } else {
        None
    };
    // Declared before the processes so it is removed after they are stopped.
    let dir = tempfile::Builder::new()
        .prefix("plexus-bench-mesh-")
        .tempdir()?;
    let baseline = std::env::var_os("PLEXUS_BENCH_BASELINE").map(PathBuf::from);
    let baseline_label = std::env::var("PLEXUS_BENCH_BASELINE_LABEL")
        .ok()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "plexus-base".into());
    let ctx = Ctx {
        settings: &settings,
        plexus: &plexus,
        baseline: baseline.as_deref().map(|b| (b, baseline_label.as_str())),
        dir: dir.path(),
    };
    let certs = if settings.wants("mesh") || settings.wants("tls") {
        Some(setup::mint_certs(&plexus, dir.path())?)
    } else {
        None
    };
    let mut sections: Vec<Section> = Vec::new();
    for name in &settings.sections {
        eprintln!("section {name}");
        let section = match (name.as_str(), &helloworld, &certs) {
            ("grpc", Some((hw, _)), _) => sections::grpc(&ctx, hw)?,
            ("mesh", _, Some(certs)) => sections::mesh(&ctx, certs)?,
            ("tls", _, Some(certs)) => sections::tls(&ctx, certs)?,
            ("thrift", Some((hw, _)), _) => sections::thrift(&ctx, hw)?,
            _ => continue,
        };
        sections.push(section);
    }
    let mut setup = vec![format!(
        "Plexus: `{}`, {plexus_source}{}.",
        plexus.display(),
        git_head().map_or(String::new(), |h| format!(" (work tree at {h})"))
    )];
    if let Some(base) = &baseline {
        setup.push(format!(
            "{baseline_label} (gRPC section): `{}` (PLEXUS_BENCH_BASELINE), same config, \
             measured in the same rounds.",
            base.display()
        ));
    }
    if let Some((hw, source)) = &helloworld {
        setup.push(format!("helloworld: `{}`, {source}.", hw.display()));
    }
    setup.push(format!(
        "{} rounds of {} s per target after a {} s warm-up; in each round every target \
         of a section is measured in turn, the order rotating.",
        settings.rounds,
        settings.round_secs(),
        settings.warmup_secs
    ));
    println!("{}", report::render(&machine(), &setup, &sections));
    Ok(())
}

/// The commit of the work tree, short.
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One line about the machine and the load tools.
fn machine() -> String {
    let m = measure::Machine::probe();
    let first_line = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default()
    };
    format!(
        "{} CPUs, {}, Linux {}; {}; {}",
        m.cpus,
        m.model,
        m.kernel,
        first_line("wrk", "-v"),
        first_line("h2load", "--version")
    )
}
