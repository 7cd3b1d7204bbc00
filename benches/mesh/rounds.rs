//! Interleaved measurement. A section starts all its targets at once; they sit idle
//! except the one being measured. The measurement is split into rounds: in each round
//! every target gets one load run in turn, and the order rotates between rounds, so
//! that other work on the machine falls on all targets alike. For every run the
//! CPU time (utime + stime from `/proc`) of each process that serves the target is
//! read before and after, as is the machine's CPU time outside the bench's processes.

use std::path::PathBuf;

use anyhow::Context;

use crate::connect::{self, ConnectSpec};
use crate::h2load::{self, H2loadSpec};
use crate::load;
use crate::measure::{clock_ticks_per_second, machine_ticks, tree_cpu_ticks};
use crate::procs::Proc;
use crate::thrift::{self, ThriftSpec};

/// How a target is loaded.
#[derive(Clone, Debug)]
pub(crate) enum Load {
    /// `wrk` with `conns` connections on `url` (HTTP/1.1 keep-alive; `https://` for
    /// TLS) with extra request headers.
    Wrk {
        url: String,
        headers: Vec<String>,
        conns: u64,
    },
    /// `h2load` sending gRPC unary calls.
    H2load {
        url: String,
        body: PathBuf,
        conns: u64,
        streams: u64,
    },
    /// A new connection per request ([`crate::connect`]).
    Connect(ConnectSpec),
    /// Serial Thrift calls ([`crate::thrift`]).
    Thrift(ThriftSpec),
}

/// A process whose CPU time is counted for a target, with the role it plays.
#[derive(Clone, Debug)]
pub(crate) struct Counted {
    /// `plexus`, `outgoing`, `incoming`, `server`, ...
    pub(crate) role: &'static str,
    pub(crate) pid: u32,
    /// Whether it is a Plexus (summed into the Plexus CPU per request).
    pub(crate) plexus: bool,
}

/// One load run of a target.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sample {
    /// Requests completed.
    pub(crate) requests: u64,
    /// Length of the run, seconds.
    pub(crate) secs: f64,
    /// CPU seconds of each counted process, in the order of [`Target::counted`].
    pub(crate) cpu_secs: Vec<f64>,
    /// CPU seconds of the load generator.
    pub(crate) load_cpu_secs: f64,
    /// wrk's median and 99th percentile latency, or h2load's mean (as p50), µs.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Failed requests and non-2xx answers.
    pub(crate) errors: u64,
    /// What went wrong first, if anything.
    pub(crate) error_note: Option<String>,
    /// Busy machine CPU not used by the bench's processes, and all machine CPU, ticks.
    pub(crate) other_ticks: u64,
    pub(crate) all_ticks: u64,
}

/// A target: its load, the processes counted, the processes it owns, its samples.
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) load: Load,
    pub(crate) counted: Vec<Counted>,
    /// Processes started for this target only, stopped with it.
    pub(crate) procs: Vec<Proc>,
    /// Where its load generator's output goes.
    pub(crate) dir: PathBuf,
    pub(crate) samples: Vec<Sample>,
    /// The target whose throughput this one is compared with (an index into the
    /// section's targets), if any.
    pub(crate) reference: Option<usize>,
    /// What was seen about the target after the runs (the protocol of a hop, ...).
    pub(crate) note: String,
}

impl Target {
    /// A target with no samples yet; its load generator writes into `dir/<slug>`.
    pub(crate) fn new(
        name: impl Into<String>,
        load: Load,
        counted: Vec<Counted>,
        dir: &std::path::Path,
    ) -> anyhow::Result<Target> {
        let name = name.into();
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = dir.join(format!("load-{slug}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Target {
            name,
            load,
            counted,
            procs: Vec::new(),
            dir,
            samples: Vec::new(),
            reference: None,
            note: String::new(),
        })
    }
}

impl Target {
    /// CPU µs per request of each counted process, per round.
    pub(crate) fn round_cpu_us(&self, i: usize) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| 1e6 * s.cpu_secs.get(i).copied().unwrap_or(f64::NAN) / s.requests as f64)
            .collect()
    }

    /// CPU µs per request of all counted Plexus processes together, per round.
    pub(crate) fn round_plexus_cpu_us(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| {
                let cpu: f64 = self
                    .counted
                    .iter()
                    .zip(&s.cpu_secs)
                    .filter(|(c, _)| c.plexus)
                    .map(|(_, t)| t)
                    .sum();
                1e6 * cpu / s.requests as f64
            })
            .collect()
    }
}

/// CPU ticks used so far by this program and every process it started, running or
/// already waited for.
fn ours() -> u64 {
    tree_cpu_ticks(std::process::id()) + crate::measure::waited_children_ticks()
}

/// One load run of `t` for `secs` seconds with the load generator on `cpu`.
pub(crate) fn measure(t: &mut Target, secs: u64, cpu: Option<usize>) -> anyhow::Result<()> {
    let hz = clock_ticks_per_second() as f64;
    let before: Vec<u64> = t.counted.iter().map(|c| tree_cpu_ticks(c.pid)).collect();
    let (ours_before, machine_before) = (ours(), machine_ticks());
    let load_before = crate::measure::waited_children_ticks();
    let mut s =
        run_load(&t.load, secs, cpu, &t.dir).with_context(|| format!("loading {}", t.name))?;
    let load_after = crate::measure::waited_children_ticks();
    let (ours_after, machine_after) = (ours(), machine_ticks());
    let after: Vec<u64> = t.counted.iter().map(|c| tree_cpu_ticks(c.pid)).collect();
    s.cpu_secs = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / hz)
        .collect();
    s.load_cpu_secs = load_after.saturating_sub(load_before) as f64 / hz;
    let busy = machine_after.0.saturating_sub(machine_before.0);
    s.other_ticks = busy.saturating_sub(ours_after.saturating_sub(ours_before));
    s.all_ticks = machine_after.1.saturating_sub(machine_before.1);
    for p in &mut t.procs {
        p.check_alive()?;
    }
    t.samples.push(s);
    Ok(())
}

/// Runs a target's load once; CPU fields are left for [`measure`].
pub(crate) fn run_load(
    load: &Load,
    secs: u64,
    cpu: Option<usize>,
    dir: &std::path::Path,
) -> anyhow::Result<Sample> {
    Ok(match load {
        Load::Wrk {
            url,
            headers,
            conns,
        } => {
            let w = load::wrk_url(url, headers, *conns, secs, cpu, dir)?;
            Sample {
                requests: w.requests,
                secs: w.secs,
                p50_us: w.p50_us,
                p99_us: w.p99_us,
                errors: w.non_2xx,
                error_note: w.socket_errors,
                ..Sample::default()
            }
        }
        Load::H2load {
            url,
            body,
            conns,
            streams,
        } => {
            let spec = H2loadSpec {
                url,
                body,
                conns: *conns,
                streams: *streams,
            };
            let h = h2load::h2load(&spec, secs, cpu, dir)?;
            let errors = h.failed + h.non_2xx;
            Sample {
                requests: h.requests,
                secs: h.secs,
                p50_us: h.mean_us,
                p99_us: f64::NAN,
                errors,
                error_note: (errors > 0)
                    .then(|| format!("h2load: {} failed, {} not 2xx", h.failed, h.non_2xx)),
                ..Sample::default()
            }
        }
        Load::Thrift(spec) => {
            let t = thrift::run(spec, secs, cpu, dir)?;
            Sample {
                requests: t.requests,
                secs: t.secs,
                p50_us: t.p50_us,
                p99_us: t.p99_us,
                errors: t.errors,
                error_note: t.first_error,
                ..Sample::default()
            }
        }
        Load::Connect(spec) => {
            let c = connect::run(spec, secs, cpu, dir)?;
            Sample {
                requests: c.requests,
                secs: c.secs,
                p50_us: f64::NAN,
                p99_us: f64::NAN,
                errors: c.errors,
                error_note: c.first_error,
                ..Sample::default()
            }
        }
    })
}

/// Warms every target up (`warmup` seconds of load, not counted), then measures
/// `rounds` rounds of `secs` seconds each, rotating the order.
pub(crate) fn run_rounds(
    section: &str,
    targets: &mut [Target],
    rounds: u64,
    secs: u64,
    warmup: u64,
    cpu: Option<usize>,
) -> anyhow::Result<()> {
    for t in targets.iter() {
        eprintln!("{section}: warming up {}", t.name);
        run_load(&t.load, warmup, cpu, &t.dir).with_context(|| format!("warming {}", t.name))?;
    }
    let n = targets.len();
    for round in 0..rounds as usize {
        for i in 0..n {
            let t = &mut targets[(round + i) % n];
            eprintln!("{section}: round {}: {}", round + 1, t.name);
            measure(t, secs, cpu)?;
        }
    }
    Ok(())
}
