//! The report: per section, how it was measured, one Markdown table with a row per
//! target (medians over the rounds, with their spread, since a 2-core machine shared
//! with other work disturbs single runs), and what was checked or found.

use std::fmt::Write as _;

use crate::rounds::Target;
use crate::sections::Section;

/// Above this share of the machine's CPU used by others, the report warns.
const BUSY_WARNING_PCT: f64 = 10.0;

/// The median, minimum and maximum of the finite values (NaN when there are none).
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

/// Requests per second of each round.
fn round_rps(t: &Target) -> Vec<f64> {
    t.samples
        .iter()
        .map(|s| s.requests as f64 / s.secs)
        .collect()
}

/// The median of the rounds' requests per second.
pub(crate) fn median_rps(t: &Target) -> f64 {
    spread(&round_rps(t)).0
}

/// The median, minimum and maximum over the rounds of `through`'s requests per second
/// divided by `direct`'s in the same round. A round measures both within seconds of
/// each other, so a slow spell of the machine moves both of them and less their ratio,
/// where the ratio of the two medians can pair one target's good rounds with the
/// other's bad ones.
pub(crate) fn paired_ratio(through: &Target, direct: &Target) -> (f64, f64, f64) {
    paired(&round_rps(through), &round_rps(direct))
}

/// [`spread`] of `through[i] / direct[i]`, over the rounds both have.
fn paired(through: &[f64], direct: &[f64]) -> (f64, f64, f64) {
    let ratios: Vec<f64> = through.iter().zip(direct).map(|(t, d)| t / d).collect();
    spread(&ratios)
}

/// A latency for the table.
fn latency(us: f64) -> String {
    if !us.is_finite() {
        "n/a".into()
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

/// The whole report as Markdown.
pub(crate) fn render(machine: &str, setup: &[String], sections: &[Section]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Plexus h2, mesh and TLS benchmark\n");
    let _ = writeln!(s, "Machine: {machine}.\n");
    for line in setup {
        let _ = writeln!(s, "- {line}");
    }
    for section in sections {
        render_section(&mut s, section);
    }
    s
}

fn render_section(s: &mut String, section: &Section) {
    let _ = writeln!(s, "\n### {}\n", section.title);
    for line in &section.method {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(
        s,
        "\n| target | req/s | (min–max) | vs. | Plexus CPU µs/req | (min–max) | per process \
         µs/req | server µs/req | counted CPU | latency | load gen CPU | other load | errors \
         |\n|---|---:|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|"
    );
    for t in &section.targets {
        let (rps, rps_min, rps_max) = spread(&round_rps(t));
        let vs = match t.reference.and_then(|i| section.targets.get(i)) {
            Some(r) => format!("{:.2} × {}", rps / median_rps(r), r.name),
            None => String::new(),
        };
        let plexus_cpu = spread(&t.round_plexus_cpu_us());
        let has_plexus = t.counted.iter().any(|c| c.plexus);
        // Every proxy process by its role (Plexus's, or a reference proxy's); the
        // servers behind them in their own column.
        let is_server = |c: &crate::rounds::Counted| matches!(c.role, "server" | "backend");
        let per_process: Vec<String> = t
            .counted
            .iter()
            .enumerate()
            .filter(|(_, c)| !is_server(c))
            .map(|(i, c)| format!("{} {:.1}", c.role, spread(&t.round_cpu_us(i)).0))
            .collect();
        let server: Vec<String> = t
            .counted
            .iter()
            .enumerate()
            .filter(|(_, c)| is_server(c))
            .map(|(i, _)| format!("{:.1}", spread(&t.round_cpu_us(i)).0))
            .collect();
        let p50 = spread(&t.samples.iter().map(|x| x.p50_us).collect::<Vec<_>>()).0;
        let p99 = spread(&t.samples.iter().map(|x| x.p99_us).collect::<Vec<_>>()).0;
        let lat = match &t.load {
            crate::rounds::Load::Wrk { .. } | crate::rounds::Load::Thrift(_) => {
                format!("p50 {} / p99 {}", latency(p50), latency(p99))
            }
            crate::rounds::Load::H2load { .. } => format!("mean {}", latency(p50)),
            crate::rounds::Load::Connect(_) => "n/a".into(),
        };
        let secs: f64 = t.samples.iter().map(|x| x.secs).sum();
        let load_cpu: f64 = t.samples.iter().map(|x| x.load_cpu_secs).sum();
        let counted_cpu: f64 = t.samples.iter().flat_map(|x| x.cpu_secs.iter()).sum();
        let other: u64 = t.samples.iter().map(|x| x.other_ticks).sum();
        let all: u64 = t.samples.iter().map(|x| x.all_ticks).sum();
        let errors: u64 = t.samples.iter().map(|x| x.errors).sum();
        let (cpu, cpu_range) = if has_plexus {
            (
                format!("{:.1}", plexus_cpu.0),
                format!("{:.1}–{:.1}", plexus_cpu.1, plexus_cpu.2),
            )
        } else {
            ("–".into(), String::new())
        };
        let _ = writeln!(
            s,
            "| {} | {rps:.0} | {rps_min:.0}–{rps_max:.0} | {vs} | {cpu} | {cpu_range} | {} | \
             {} | {:.0} % | {lat} | {:.0} % | {:.0} % | {errors} |",
            t.name,
            per_process.join(", "),
            server.join(", "),
            100.0 * counted_cpu / secs.max(1e-9),
            100.0 * load_cpu / secs.max(1e-9),
            100.0 * other as f64 / all.max(1) as f64,
        );
    }
    let _ = writeln!(
        s,
        "\nMedians over {} rounds. *Plexus CPU* is all the target's Plexus processes \
         together; *per process* each proxy process, a reference proxy's too; *server* is \
         the backend's or gRPC server's own CPU per request; \
         *counted CPU* and *load gen CPU* are the CPU time of the counted processes (proxy \
         and server) and of the load generator over the run's wall time (100 % = one \
         core), which tells whether a run was bound by CPU; *other load* is the machine's \
         CPU busy outside the bench's processes.",
        section.targets.first().map_or(0, |t| t.samples.len())
    );
    let busiest = section
        .targets
        .iter()
        .map(|t| {
            let other: u64 = t.samples.iter().map(|x| x.other_ticks).sum();
            let all: u64 = t.samples.iter().map(|x| x.all_ticks).sum();
            100.0 * other as f64 / all.max(1) as f64
        })
        .fold(0.0, f64::max);
    if busiest > BUSY_WARNING_PCT {
        let _ = writeln!(
            s,
            "\n**Warning: the machine was busy with other work ({busiest:.0} % at most); \
             absolute figures are disturbed, compare within the table.**"
        );
    }
    if !section.findings.is_empty() {
        let _ = writeln!(s);
        for f in &section.findings {
            let _ = writeln!(s, "- {f}");
        }
    }
    let errors: Vec<String> = section
        .targets
        .iter()
        .flat_map(|t| {
            t.samples
                .iter()
                .filter_map(|x| x.error_note.clone())
                .map(move |e| format!("{}: {e}", t.name))
        })
        .collect();
    match errors.first() {
        Some(first) => {
            let _ = writeln!(s, "- Errors in {} runs, first: {first}", errors.len());
        }
        None => {
            let _ = writeln!(s, "- No failed request and no non-2xx answer in any run.");
        }
    }
    for t in &section.targets {
        if !t.note.is_empty() && !section.findings.iter().any(|f| f.contains(&t.note)) {
            let _ = writeln!(s, "- {}: {}", t.name, t.note);
        }
    }
}

/// Checks of [`spread`] and [`paired`], run by `cargo test --benches`; panics on a
/// mismatch.
pub(crate) fn self_check() {
    // Round by round: 0.5, 0.8, 0.5 (and a round only one target has is left out).
    let (m, lo, hi) = paired(&[30.0, 40.0, 35.0, 9.0], &[60.0, 50.0, 70.0]);
    assert!((m - 0.5).abs() < 1e-9 && (lo - 0.5).abs() < 1e-9 && (hi - 0.8).abs() < 1e-9);
    assert!(paired(&[], &[]).0.is_nan());
    let (m, lo, hi) = spread(&[3.0, f64::NAN, 1.0, 2.0, 10.0]);
    assert!((m - 2.5).abs() < 1e-9 && (lo - 1.0).abs() < 1e-9 && (hi - 10.0).abs() < 1e-9);
    assert!((spread(&[4.0, 1.0, 2.0]).0 - 2.0).abs() < 1e-9);
    assert!(spread(&[]).0.is_nan());
    assert_eq!(latency(812.4), "812 µs");
    assert_eq!(latency(1500.0), "1.50 ms");
}
