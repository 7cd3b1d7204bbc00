//! Helpers for end-to-end tests: the real binaries, free ports, bounded waits, curl.
#![allow(dead_code, unreachable_pub)]

pub mod backend;
pub mod thrift;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `plexus` binary under test.
pub fn plexus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plexus"))
}

/// The `helloworld` demo binary, built once per test run (it belongs to another package
/// of the workspace, so cargo does not build it for these tests by itself).
pub fn helloworld_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "plexus-examples",
                "--bin",
                "helloworld",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building helloworld failed");
        plexus_bin().with_file_name("helloworld")
    })
    .clone()
}

/// A binary of the examples package (`helloworld-client`, ...), built once per run.
pub fn example_bin(name: &str) -> PathBuf {
    let dir = helloworld_bin();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "plexus-examples", "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {name} failed");
    dir.with_file_name(name)
}

/// A port free on 127.0.0.1 right now, from below the kernel's ephemeral range
/// (32768-60999). Ports handed out by binding port 0 come from that range, where any
/// outgoing connection of a concurrent test can take one between this call and the
/// server's bind; below it, only another test's server could, and each process walks
/// its own sequence.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + i) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Polls `cond` until it holds, for at most 30 s (generous for a loaded 2-core CI).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped; its stderr goes to a log file kept for failures.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("process starts");
        Proc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Current resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

/// An established TCP connection of a process, from `/proc/net/tcp` (IPv4) and the
/// process's open sockets.
#[derive(Debug)]
pub struct TcpConn {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's timer on the socket: 2 is the keepalive timer.
    pub timer: u8,
}

/// The established IPv4 TCP connections process `pid` has open.
pub fn established_tcp(pid: u32) -> Vec<TcpConn> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            t.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| {
        let hex = addr.rsplit(':').next().unwrap_or("0");
        u16::from_str_radix(hex, 16).expect("port")
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (f.len() > 9 && f[3] == "01" && inodes.contains(f[9])).then(|| TcpConn {
                local_port: port(f[1]),
                remote_port: port(f[2]),
                timer: f[5]
                    .split(':')
                    .next()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .unwrap_or(0),
            })
        })
        .collect()
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `plexus run` on `config` (written to `dir/plexus.yaml`, logging to
/// `dir/plexus.log`) and waits until `router` and `admin` accept connections; a Plexus
/// that exits first fails the test with its log and config.
pub fn run_plexus(
    name: &str,
    dir: &Path,
    config: &str,
    router: SocketAddr,
    admin: SocketAddr,
) -> Proc {
    std::fs::write(dir.join("plexus.yaml"), config).expect("config");
    let mut plexus = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(dir.join("plexus.yaml")),
        dir.join("plexus.log"),
    );
    wait_for(&format!("{name} to serve"), || {
        if let Ok(Some(_)) = plexus.child.try_wait() {
            panic!("{name} exited:\n{}\nconfig:\n{config}", plexus.log_text());
        }
        listening(router) && listening(admin)
    });
    plexus
}

/// Whether something accepts connections at `addr`.
pub fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A scratch directory for one test, under cargo's target tmp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What curl saw.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Runs the real `curl` with `args` (plus `-s -i`) and parses the last response.
pub fn curl(args: &[&str]) -> CurlResponse {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .expect("curl runs (install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_http(&text)
        .unwrap_or_else(|| panic!("curl {args:?} gave no response: {text:?} {:?}", out.status))
}

fn parse_http(text: &str) -> Option<CurlResponse> {
    // Skip interim responses (100 Continue).
    let mut rest = text;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        if (100..200).contains(&status) && status != 101 {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        return Some(CurlResponse {
            status,
            headers,
            body: body.to_string(),
        });
    }
}

/// Reads a whole stream into a string (small responses in tests).
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// Runs `promtool check metrics` on an exposition when promtool is installed (required
/// when `PLEXUS_REQUIRE_PROMTOOL=1`, as the test script sets). Linkerd's metric names
/// draw lint warnings (`:` in names, counters without `_total`, units): those are
/// accepted, anything else (a parse error) fails.
/// The numbers of h2load's `requests:` and `status codes:` summary lines, by name.
pub fn h2load_summary(out: &str) -> std::collections::HashMap<String, u64> {
    let mut numbers = std::collections::HashMap::new();
    for line in out.lines() {
        let Some(rest) = line
            .strip_prefix("requests: ")
            .or_else(|| line.strip_prefix("status codes: "))
        else {
            continue;
        };
        for item in rest.split(", ") {
            if let Some((n, name)) = item.trim().split_once(' ')
                && let Ok(n) = n.parse()
            {
                numbers.insert(name.to_owned(), n);
            }
        }
    }
    numbers
}

pub fn promtool_check(text: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("PLEXUS_REQUIRE_PROMTOOL").is_err(),
                "promtool is required: {e}"
            );
            eprintln!("promtool not installed; skipping the exposition check");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            for line in report.lines().filter(|l| !l.trim().is_empty()) {
                let lint = [
                    "metric names should not contain ':'",
                    "counter metrics should have \"_total\" suffix",
                    "metric names should not contain abbreviated units",
                ];
                assert!(
                    lint.iter().any(|l| line.contains(l)),
                    "promtool: {line}\n{report}"
                );
            }
        }
        other => panic!("promtool failed ({other:?}):\n{report}"),
    }
}
