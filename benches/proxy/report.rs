//! The report: one Markdown table with a row per target (throughput, latency under
//! both loads, CPU per request, memory, and ratios to haproxy and to the direct
//! baseline), the targets Plexus is held to and whether each is met, and everything
//! odd seen during the run (errors, non-200 answers, warnings, exits).

use std::fmt::Write as _;

use crate::load::{FixedRateResult, WrkResult};
use crate::measure::Machine;

/// Above this share of the machine's CPU used by others, the report warns.
const BUSY_WARNING_PCT: f64 = 10.0;

/// The measurements of one target.
#[derive(Debug)]
pub(crate) struct Row {
    /// `direct`, `plexus`, `nginx` or `haproxy`.
    pub(crate) name: &'static str,
    /// The throughput run.
    pub(crate) wrk: WrkResult,
    /// The fixed-rate run.
    pub(crate) fixed: FixedRateResult,
    /// CPU of the measured process (the proxy; the backend for `direct`) per request
    /// of the throughput run.
    pub(crate) cpu_us: f64,
    /// CPU of the backend per request of the same run.
    pub(crate) backend_cpu_us: f64,
    /// CPU per request of each round's wrk run.
    pub(crate) round_cpu_us: Vec<f64>,
    /// req/s of each round's wrk run.
    pub(crate) round_rps: Vec<f64>,
    /// `VmRSS` after start-up, MiB.
    pub(crate) rss_idle_mib: f64,
    /// `VmHWM` after both runs, MiB.
    pub(crate) rss_loaded_mib: f64,
    /// Share of the machine's CPU time during the wrk run that was busy but not used by
    /// the bench's processes (other processes, steal), percent.
    pub(crate) other_cpu_pct: f64,
    /// Errors, non-200 answers, warnings, exits.
    pub(crate) notes: Vec<String>,
}

/// A latency for the table.
fn latency(us: f64) -> String {
    if !us.is_finite() {
        "n/a".into()
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

/// The median, minimum and maximum of some values (NaN when there are none).
pub(crate) fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    let min = v.first().copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    (median, min, max)
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**NOT met**" }
}

/// The whole report as Markdown.
pub(crate) fn render(machine: &Machine, setup: &[String], rows: &[Row]) -> String {
    let mut s = String::new();
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    let (direct, haproxy) = (find("direct"), find("haproxy"));
    let rps_of = |r: Option<&Row>| r.map_or(f64::NAN, |r| r.wrk.rps);
    let cpu_of = |r: Option<&Row>| r.map_or(f64::NAN, |r| r.cpu_us);

    let _ = writeln!(s, "## Plexus proxy benchmark\n");
    let _ = writeln!(
        s,
        "Machine: {} CPUs, {}, Linux {}. Tools: {}.\n",
        machine.cpus,
        machine.model,
        machine.kernel,
        machine.tools.join("; ")
    );
    for line in setup {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| target | req/s | p50 | p99 | fixed-rate p50 | fixed-rate p99 | fixed-rate p99.9 \
         | CPU µs/req | RSS idle MB | RSS loaded MB | req/s ÷ haproxy | req/s ÷ direct \
         | CPU ÷ haproxy | CPU ÷ direct |"
    );
    let _ = writeln!(s, "|---|{}", "---:|".repeat(13));
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            r.name,
            r.wrk.rps,
            latency(r.wrk.p50_us),
            latency(r.wrk.p99_us),
            latency(r.fixed.p50_us),
            latency(r.fixed.p99_us),
            latency(r.fixed.p999_us),
            r.cpu_us,
            r.rss_idle_mib,
            r.rss_loaded_mib,
            ratio(r.wrk.rps, rps_of(haproxy)),
            ratio(r.wrk.rps, rps_of(direct)),
            ratio(r.cpu_us, cpu_of(haproxy)),
            ratio(r.cpu_us, cpu_of(direct)),
        );
    }
    let _ = writeln!(
        s,
        "\nCPU µs/req is the proxy process's (the backend's for `direct`). The backend's own \
         CPU per request in each run: {}.",
        rows.iter()
            .map(|r| format!("{} {:.1} µs", r.name, r.backend_cpu_us))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let _ = writeln!(
        s,
        "\nBy round (each round's wrk run on its own; medians are less disturbed by a busy \
         moment than the totals above):\n\n\
         | target | rounds | req/s median | min | max | CPU µs/req median | min | max |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let (rps, rps_min, rps_max) = spread(&r.round_rps);
        let (cpu, cpu_min, cpu_max) = spread(&r.round_cpu_us);
        let _ = writeln!(
            s,
            "| {} | {} | {rps:.0} | {rps_min:.0} | {rps_max:.0} | {cpu:.1} | {cpu_min:.1} \
             | {cpu_max:.1} |",
            r.name,
            r.round_rps.len()
        );
    }
    if let (Some(new), Some(base)) = (find("plexus"), find("plexus-base")) {
        let paired =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
        let (cpu, cpu_lo, cpu_hi) = spread(&paired(&new.round_cpu_us, &base.round_cpu_us));
        let (rps, rps_lo, rps_hi) = spread(&paired(&new.round_rps, &base.round_rps));
        let wins = new
            .round_cpu_us
            .iter()
            .zip(&base.round_cpu_us)
            .filter(|(x, y)| x > y)
            .count();
        let _ = writeln!(
            s,
            "\nplexus ÷ plexus-base, paired by round (both measured within seconds of each \
             other): CPU per request {cpu:.3} (median; {cpu_lo:.3}–{cpu_hi:.3}), req/s \
             {rps:.3} ({rps_lo:.3}–{rps_hi:.3}); plexus used more CPU per request in \
             {wins} of {} rounds.",
            new.round_cpu_us.len().min(base.round_cpu_us.len())
        );
    }
    let _ = writeln!(
        s,
        "\nSlowest fixed-rate request: {}.",
        rows.iter()
            .map(|r| format!("{} {}", r.name, latency(r.fixed.max_us)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "Machine CPU busy outside the bench's processes during each wrk run (other processes, \
         and time stolen by the hypervisor): {}.",
        rows.iter()
            .map(|r| format!("{} {:.0}%", r.name, r.other_cpu_pct))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if rows.iter().any(|r| r.other_cpu_pct > BUSY_WARNING_PCT) {
        let _ = writeln!(
            s,
            "\n**Warning: the machine was busy with other work during the run; the figures \
             are disturbed. Run again on a quiet machine.**"
        );
    }

    let _ = writeln!(s, "\n### Targets\n");
    match (find("plexus"), find("nginx"), haproxy) {
        (Some(p), Some(n), Some(h)) => {
            let cpu_limit = 0.9 * h.cpu_us;
            let rps_floor = 1.1 * n.wrk.rps;
            let _ = writeln!(
                s,
                "- CPU per request <= 0.9 x haproxy: plexus {:.1} µs, limit {cpu_limit:.1} µs: {}",
                p.cpu_us,
                verdict(p.cpu_us <= cpu_limit)
            );
            let _ = writeln!(
                s,
                "- Throughput >= 1.1 x nginx: plexus {:.0} req/s, floor {rps_floor:.0} req/s: {}",
                p.wrk.rps,
                verdict(p.wrk.rps >= rps_floor)
            );
            let _ = writeln!(
                s,
                "- RSS idle <= 8 MB: plexus {:.1} MB: {}",
                p.rss_idle_mib,
                verdict(p.rss_idle_mib <= 8.0)
            );
            let _ = writeln!(
                s,
                "- RSS loaded <= 20 MB: plexus {:.1} MB: {}",
                p.rss_loaded_mib,
                verdict(p.rss_loaded_mib <= 20.0)
            );
        }
        _ => {
            let _ = writeln!(s, "- not evaluated: a target is missing from the run");
        }
    }

    let _ = writeln!(s, "\n### Errors and oddities\n");
    let mut any = false;
    for r in rows {
        for note in &r.notes {
            any = true;
            let _ = writeln!(s, "- {}: {note}", r.name);
        }
    }
    if !any {
        let _ = writeln!(
            s,
            "- none: every response was 200, no socket errors, no warnings, nothing exited"
        );
    }
    s
}

/// Checks of [`spread`], run by `cargo test --benches`; panics on a mismatch.
pub(crate) fn self_check() {
    let (m, lo, hi) = spread(&[3.0, f64::NAN, 1.0, 2.0, 10.0]);
    assert!((m - 2.5).abs() < 1e-9 && (lo - 1.0).abs() < 1e-9 && (hi - 10.0).abs() < 1e-9);
    assert!((spread(&[4.0, 1.0, 2.0]).0 - 2.0).abs() < 1e-9);
    assert!(spread(&[]).0.is_nan());
}
