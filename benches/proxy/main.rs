//! Load benchmark of Plexus as an HTTP/1.1 proxy against nginx and haproxy, on
//! loopback: `cargo bench --bench proxy`. It builds Plexus in release mode, starts one
//! backend and, in front of it, Plexus, nginx (one worker, upstream keep-alive) and
//! haproxy (one thread, `http-reuse`), then measures the backend directly and one hop
//! through each proxy, in interleaved rounds so that other work on the machine falls
//! on all of them alike: throughput and latency with `wrk`, latency at a fixed rate
//! with its own open-loop generator, CPU per request and memory of each proxy from
//! `/proc`. It prints one Markdown table and whether Plexus meets its targets. See
//! `benches/README.md`.
//!
//! The same binary also serves as the backend and as the fixed-rate generator when
//! started with `PLEXUS_BENCH_ROLE` set; run without `--bench` (as `cargo test
//! --benches` does) it only checks its parsers.

mod backend;
mod load;
mod measure;
mod procs;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::load::{FixedRate, FixedRateResult, FixedRateSample, WrkResult};
use crate::measure::{
    Machine, clock_ticks_per_second, machine_ticks, tree_cpu_ticks, tree_memory_mib,
    waited_children_ticks,
};
use crate::procs::{BackendKind, Proc, ROLE_ENV};
use crate::report::Row;

/// The CPU the load generators run on when pinning.
const LOAD_CPU: usize = 0;
/// The CPU the backend and the proxy share when pinning.
const SERVER_CPU: usize = 1;
/// wrk run on each target before the measured ones, to open connections and warm
/// caches.
const WARMUP_SECS: u64 = 2;
/// A proxy that takes longer than this to exit after SIGTERM is reported.
const SLOW_EXIT: Duration = Duration::from_millis(500);

/// What a run does, from `PLEXUS_BENCH_*` environment variables. (One more,
/// `PLEXUS_BENCH_PLEXUS=<binary>`, read in [`run`], measures that binary instead of
/// building the work tree's, to compare two versions.)
#[derive(Debug)]
struct Settings {
    /// The targets measured (`PLEXUS_BENCH_TARGETS`, comma-separated names; default
    /// all four, plus `plexus-base` when a baseline is given).
    targets: Vec<Target>,
    /// A second Plexus binary measured as the target `plexus-base`, interleaved with
    /// the first round by round (`PLEXUS_BENCH_BASELINE`).
    baseline: Option<PathBuf>,
    /// Rounds the measurements are split into (`PLEXUS_BENCH_ROUNDS`, 3).
    rounds: u64,
    /// wrk seconds per target, over all rounds (`PLEXUS_BENCH_SECS`, 12).
    secs: u64,
    /// wrk connections (`PLEXUS_BENCH_CONNS`, 32).
    conns: u64,
    /// The fixed-rate run per target, over all rounds (`PLEXUS_BENCH_RATE` 2000/s,
    /// `PLEXUS_BENCH_RATE_SECS` 12, `PLEXUS_BENCH_RATE_CONNS` 8).
    fixed: FixedRate,
    /// Pin load to CPU 0 and servers to CPU 1 (`PLEXUS_BENCH_PIN`, 1).
    pin: bool,
    /// `PLEXUS_BENCH_BACKEND`: `hyper` (default) or `nginx`.
    backend: BackendKind,
    /// Worker threads of the hyper backend (`PLEXUS_BENCH_BACKEND_THREADS`, 2).
    backend_threads: usize,
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
        let backend = match std::env::var("PLEXUS_BENCH_BACKEND").as_deref() {
            Ok("nginx") => BackendKind::Nginx,
            Ok("hyper") | Err(_) => BackendKind::Hyper,
            Ok(other) => anyhow::bail!("PLEXUS_BENCH_BACKEND={other}: use hyper or nginx"),
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let baseline = std::env::var_os("PLEXUS_BENCH_BASELINE").map(PathBuf::from);
        let targets = match std::env::var("PLEXUS_BENCH_TARGETS") {
            Ok(list) => list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    Target::ALL
                        .into_iter()
                        .find(|t| t.name() == n)
                        .with_context(|| format!("PLEXUS_BENCH_TARGETS: unknown target {n}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            Err(_) => Target::ALL
                .into_iter()
                .filter(|t| *t != Target::PlexusBaseline || baseline.is_some())
                .collect(),
        };
        if targets.is_empty() {
            anyhow::bail!("PLEXUS_BENCH_TARGETS names no target");
        }
        if targets.contains(&Target::PlexusBaseline) && baseline.is_none() {
            anyhow::bail!("the target plexus-base needs PLEXUS_BENCH_BASELINE=<binary>");
        }
        Ok(Settings {
            targets,
            baseline,
            rounds: num("PLEXUS_BENCH_ROUNDS", 3)?.max(1),
            secs: num("PLEXUS_BENCH_SECS", 12)?.max(1),
            conns: num("PLEXUS_BENCH_CONNS", 32)?.max(1),
            fixed: FixedRate {
                rate: num("PLEXUS_BENCH_RATE", 2000)?.max(1),
                secs: num("PLEXUS_BENCH_RATE_SECS", 12)?.max(1),
                conns: num("PLEXUS_BENCH_RATE_CONNS", 8)?.max(1),
            },
            pin: num("PLEXUS_BENCH_PIN", 1)? != 0 && cpus >= 2,
            backend,
            backend_threads: usize::try_from(num("PLEXUS_BENCH_BACKEND_THREADS", 2)?)?.max(1),
        })
    }

    fn load_cpu(&self) -> Option<usize> {
        self.pin.then_some(LOAD_CPU)
    }

    fn server_cpu(&self) -> Option<usize> {
        self.pin.then_some(SERVER_CPU)
    }

    /// Seconds of one round's wrk run.
    fn wrk_slice(&self) -> u64 {
        (self.secs / self.rounds).max(1)
    }

    /// One round's fixed-rate run.
    fn fixed_slice(&self) -> FixedRate {
        FixedRate {
            secs: (self.fixed.secs / self.rounds).max(1),
            ..self.fixed
        }
    }

    /// The set-up lines printed above the table.
    fn describe(&self) -> Vec<String> {
        let backend = match self.backend {
            BackendKind::Hyper => format!(
                "the hyper server in this bench, {} tokio worker threads",
                self.backend_threads
            ),
            BackendKind::Nginx => "nginx (1 worker) returning the body from its config".into(),
        };
        let pinning = if self.pin {
            format!(
                "load generators pinned to CPU {LOAD_CPU}; backend and proxies share CPU \
                 {SERVER_CPU} (taskset), so Plexus runs one worker"
            )
        } else {
            "nothing pinned: load generator, proxy and backend share every CPU".into()
        };
        let (rounds, fixed) = (self.rounds, self.fixed_slice());
        vec![
            format!("Backend: {backend}; `GET /` answered `200` with a 12-byte body."),
            format!("Pinning: {pinning}."),
            format!(
                "Rounds: {rounds}; in each, every target is measured in turn (the order \
                 rotates), so other work on the machine falls on all of them alike."
            ),
            format!(
                "Throughput: `wrk -t1 -c{} -d{}s --latency` per round and target after a \
                 {WARMUP_SECS} s warm-up; req/s over all rounds, p50/p99 the median of the \
                 rounds' (wrk's, not corrected for coordinated omission).",
                self.conns,
                self.wrk_slice()
            ),
            format!(
                "Fixed rate: {} req/s for {} s per round and target over {} keep-alive \
                 connections, open loop, latency from the scheduled send time, percentiles \
                 over every request of all rounds.",
                fixed.rate, fixed.secs, fixed.conns
            ),
            "CPU: utime+stime of the process (and its children) over the wrk runs / \
             requests wrk completed. RSS: VmRSS after start-up, VmHWM at the end; MB = MiB."
                .into(),
        ]
    }
}

/// The things measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Direct,
    Plexus,
    /// The `PLEXUS_BENCH_BASELINE` binary, with the same config as `plexus`.
    PlexusBaseline,
    Nginx,
    Haproxy,
}

impl Target {
    const ALL: [Target; 5] = [
        Target::Direct,
        Target::Plexus,
        Target::PlexusBaseline,
        Target::Nginx,
        Target::Haproxy,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Plexus => "plexus",
            Target::PlexusBaseline => "plexus-base",
            Target::Nginx => "nginx",
            Target::Haproxy => "haproxy",
        }
    }
}

/// A started target and what has been measured of it so far.
struct Running {
    target: Target,
    /// Where requests go: the proxy's port, or the backend's for `direct`.
    port: u16,
    /// The proxy (`None` for `direct`).
    proc: Option<Proc>,
    /// Its own directory for configs, logs and load-generator output.
    dir: PathBuf,
    rss_idle_mib: f64,
    wrk: Vec<WrkResult>,
    fixed: Vec<FixedRateSample>,
    /// CPU ticks of the measured process during the wrk runs.
    cpu_ticks: u64,
    /// CPU per request of each round's wrk run, µs.
    round_cpu_us: Vec<f64>,
    /// CPU ticks of the backend during the same runs.
    backend_ticks: u64,
    /// Busy machine ticks not used by the bench's processes, and all machine ticks.
    other_ticks: u64,
    all_ticks: u64,
}

impl Running {
    /// The process measured: the proxy, or the backend for `direct`.
    fn pid(&self, backend: &Proc) -> u32 {
        self.proc.as_ref().map_or(backend.pid(), Proc::pid)
    }
}

fn main() -> ExitCode {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("backend") => return backend::backend_main(),
        Ok("loadgen") => return load::loadgen_main(),
        _ => {}
    }
    if !std::env::args().any(|a| a == "--bench") {
        load::self_check();
        procs::self_check();
        report::self_check();
        println!("proxy bench: parser checks passed; `cargo bench --bench proxy` measures");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    procs::ensure_tools()?;
    let (plexus, source) = match std::env::var_os("PLEXUS_BENCH_PLEXUS") {
        Some(bin) => (
            PathBuf::from(bin),
            "given by PLEXUS_BENCH_PLEXUS".to_string(),
        ),
        None => (
            procs::build_plexus()?,
            format!("built from the {}", source_state()),
        ),
    };
    let machine = Machine::probe();
    // Declared before the processes so it is removed after they are stopped.
    let dir = tempfile::Builder::new().prefix("plexus-bench-").tempdir()?;
    let backend_port = procs::free_port()?;
    let mut backend = procs::start_backend(
        settings.backend,
        settings.backend_threads,
        backend_port,
        settings.server_cpu(),
        dir.path(),
    )?;
    let mut running = Vec::new();
    for &target in &settings.targets {
        let r = start_target(
            target,
            &settings,
            &plexus,
            &backend,
            backend_port,
            dir.path(),
        )
        .with_context(|| format!("starting {}", target.name()))?;
        running.push(r);
    }
    let load = settings.load_cpu();
    for r in &running {
        eprintln!("warming up {}", r.target.name());
        load::wrk(r.port, settings.conns, WARMUP_SECS, load, &r.dir)?;
    }
    let n = running.len();
    for round in 0..settings.rounds as usize {
        for i in 0..n {
            let r = &mut running[(round + i) % n];
            eprintln!("round {}: wrk {}", round + 1, r.target.name());
            throughput_slice(r, &settings, &backend)
                .with_context(|| format!("wrk through {}", r.target.name()))?;
        }
    }
    for round in 0..settings.rounds as usize {
        for i in 0..n {
            let r = &mut running[(round + i) % n];
            eprintln!("round {}: fixed rate {}", round + 1, r.target.name());
            let sample = load::fixed_rate(settings.fixed_slice(), r.port, load, &r.dir)
                .with_context(|| format!("fixed rate through {}", r.target.name()))?;
            r.fixed.push(sample);
        }
    }
    let rows: Vec<Row> = running.into_iter().map(|r| finish(r, &backend)).collect();
    backend.check_alive()?;
    let mut setup = vec![format!("Plexus: `{}`, {source}.", plexus.display())];
    if let Some(base) = &settings.baseline {
        setup.push(format!(
            "plexus-base: `{}` (PLEXUS_BENCH_BASELINE), same config, measured in the same \
             rounds.",
            base.display()
        ));
    }
    setup.extend(settings.describe());
    println!("{}", report::render(&machine, &setup, &rows));
    Ok(())
}

/// Starts a target's proxy (nothing for `direct`) and reads its idle memory.
fn start_target(
    target: Target,
    settings: &Settings,
    plexus: &Path,
    backend: &Proc,
    backend_port: u16,
    dir: &Path,
) -> anyhow::Result<Running> {
    eprintln!("starting {}", target.name());
    let dir = dir.join(target.name());
    std::fs::create_dir_all(&dir)?;
    let cpu = settings.server_cpu();
    let port = match target {
        Target::Direct => backend_port,
        _ => procs::free_port()?,
    };
    let proc = match target {
        Target::Direct => None,
        Target::Plexus => Some(procs::start_plexus(plexus, port, backend_port, cpu, &dir)?),
        Target::PlexusBaseline => {
            let bin = settings
                .baseline
                .as_deref()
                .context("plexus-base needs PLEXUS_BENCH_BASELINE")?;
            Some(procs::start_plexus(bin, port, backend_port, cpu, &dir)?)
        }
        Target::Nginx => Some(procs::start_nginx_proxy(port, backend_port, cpu, &dir)?),
        Target::Haproxy => Some(procs::start_haproxy(port, backend_port, cpu, &dir)?),
    };
    let mut r = Running {
        target,
        port,
        proc,
        dir,
        rss_idle_mib: 0.0,
        wrk: Vec::new(),
        fixed: Vec::new(),
        cpu_ticks: 0,
        round_cpu_us: Vec::new(),
        backend_ticks: 0,
        other_ticks: 0,
        all_ticks: 0,
    };
    r.rss_idle_mib = tree_memory_mib(r.pid(backend), "VmRSS");
    Ok(r)
}

/// One round's wrk run through a target, with the CPU time it cost.
fn throughput_slice(r: &mut Running, settings: &Settings, backend: &Proc) -> anyhow::Result<()> {
    let pid = r.pid(backend);
    let (before, backend_before) = (tree_cpu_ticks(pid), tree_cpu_ticks(backend.pid()));
    let (ours_before, machine_before) = (ours(), machine_ticks());
    let wrk = load::wrk(
        r.port,
        settings.conns,
        settings.wrk_slice(),
        settings.load_cpu(),
        &r.dir,
    )?;
    let (ours_after, machine_after) = (ours(), machine_ticks());
    let (after, backend_after) = (tree_cpu_ticks(pid), tree_cpu_ticks(backend.pid()));
    r.cpu_ticks += after.saturating_sub(before);
    r.round_cpu_us.push(measure::cpu_us_per_request(
        after.saturating_sub(before),
        clock_ticks_per_second(),
        wrk.requests,
    ));
    r.backend_ticks += backend_after.saturating_sub(backend_before);
    // Busy CPU time that none of the bench's processes used: other work on the machine
    // and steal. (With tick-based accounting, softirq time is charged to the process
    // that was running, so loopback processing counts as ours.)
    let busy = machine_after.0.saturating_sub(machine_before.0);
    r.other_ticks += busy.saturating_sub(ours_after.saturating_sub(ours_before));
    r.all_ticks += machine_after.1.saturating_sub(machine_before.1);
    r.wrk.push(wrk);
    Ok(())
}

/// Peak memory, then stops the proxy and gathers everything odd into the row.
fn finish(r: Running, backend: &Proc) -> Row {
    let ticks = clock_ticks_per_second();
    let rss_loaded_mib = tree_memory_mib(r.pid(backend), "VmHWM");
    let wrk = WrkResult::combine(&r.wrk);
    let fixed = FixedRateResult::from_samples(&r.fixed);

    let mut notes = Vec::new();
    if wrk.non_2xx > 0 {
        notes.push(format!("wrk: {} non-2xx/3xx responses", wrk.non_2xx));
    }
    if let Some(errors) = &wrk.socket_errors {
        notes.push(format!("wrk: {errors}"));
    }
    if fixed.errors > 0 || fixed.non_200 > 0 {
        notes.push(format!(
            "fixed rate: {} of {} requests failed, {} answered with a status other than 200",
            fixed.errors, fixed.scheduled, fixed.non_200
        ));
    }
    if let Some(mut p) = r.proc {
        match p.shutdown() {
            Ok(took) if took > SLOW_EXIT => {
                notes.push(format!("took {took:?} to exit after SIGTERM"));
            }
            Ok(_) => {}
            Err(e) => notes.push(format!("{e:#}")),
        }
        let worrying = ["warn", "error", "panic", "alert", "crit", "emerg"];
        let warnings: Vec<String> = p
            .log()
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                worrying.iter().any(|w| l.contains(w))
            })
            .map(str::to_string)
            .collect();
        if let Some(first) = warnings.first() {
            notes.push(format!(
                "{} warning/error lines in its log, first: `{first}`",
                warnings.len()
            ));
        }
    }
    Row {
        name: r.target.name(),
        cpu_us: measure::cpu_us_per_request(r.cpu_ticks, ticks, wrk.requests),
        backend_cpu_us: measure::cpu_us_per_request(r.backend_ticks, ticks, wrk.requests),
        round_cpu_us: r.round_cpu_us,
        round_rps: r.wrk.iter().map(|w| w.rps).collect(),
        other_cpu_pct: 100.0 * r.other_ticks as f64 / r.all_ticks.max(1) as f64,
        wrk,
        fixed,
        rss_idle_mib: r.rss_idle_mib,
        rss_loaded_mib,
        notes,
    }
}

/// The commit the bench was built from and whether the work tree had changes (the
/// Plexus measured is built from the work tree, unless `PLEXUS_BENCH_PLEXUS` names
/// another binary).
fn source_state() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            let tree = if dirty {
                "with uncommitted changes"
            } else {
                "clean"
            };
            format!("work tree at {head} ({tree})")
        }
        None => "work tree state unknown".into(),
    }
}

/// CPU ticks used so far by this program and every process it started, running or
/// already waited for.
fn ours() -> u64 {
    tree_cpu_ticks(std::process::id()) + waited_children_ticks()
}
