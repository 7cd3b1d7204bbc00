//! Measurement from `/proc`: the CPU time (user + system) and the memory (`VmRSS`,
//! `VmHWM`) of a process together with every process it started (nginx's master and
//! worker, for instance), and the machine facts printed with the results.

use std::fs;
use std::process::Command;

/// The pid and every descendant of it, found through `/proc/<pid>/task/*/children`.
pub(crate) fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while let Some(&p) = all.get(i) {
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    all
}

/// utime + stime of one process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks used so far by a process and its descendants.
pub(crate) fn tree_cpu_ticks(pid: u32) -> u64 {
    process_tree(pid).into_iter().filter_map(cpu_ticks).sum()
}

/// CPU time of this process's waited-for children (`cutime + cstime` of
/// `/proc/self/stat`), in clock ticks: what `wrk` used, read after it exits.
pub(crate) fn waited_children_ticks() -> u64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // cutime and cstime are fields 16 and 17.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(13) + field(14)
}

/// The machine's CPU time from the first line of `/proc/stat`, in clock ticks:
/// (busy including steal, all).
pub(crate) fn machine_ticks() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, busy + idle)
}

/// A `/proc/<pid>/status` line in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The sum of a `/proc/<pid>/status` memory figure over a process and its
/// descendants, in MiB.
pub(crate) fn tree_memory_mib(pid: u32, key: &str) -> f64 {
    let kb: u64 = process_tree(pid)
        .into_iter()
        .filter_map(|p| status_kb(p, key))
        .sum();
    kb as f64 / 1024.0
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if it cannot be read.
pub(crate) fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time between two tick readings, in microseconds per request.
pub(crate) fn cpu_us_per_request(ticks: u64, ticks_per_second: u64, requests: u64) -> f64 {
    if requests == 0 {
        return f64::NAN;
    }
    ticks as f64 * 1e6 / ticks_per_second as f64 / requests as f64
}

/// The facts about the machine printed next to the results.
#[derive(Debug)]
pub(crate) struct Machine {
    /// Online CPUs.
    pub(crate) cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub(crate) model: String,
    /// `uname -r`.
    pub(crate) kernel: String,
    /// First lines of `nginx -v`, `haproxy -v` and `wrk -v`.
    pub(crate) tools: Vec<String>,
}

impl Machine {
    /// Reads the machine facts.
    pub(crate) fn probe() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
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
        Machine {
            cpus,
            model,
            kernel: first_line("uname", "-r"),
            tools: vec![
                first_line("nginx", "-v"),
                first_line("haproxy", "-v"),
                first_line("wrk", "-v"),
            ],
        }
    }
}
