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
        "Slowest fixed-rate request: {}.",
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
