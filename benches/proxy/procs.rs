//! The processes of a run: installing the tools, building Plexus, writing the configs of
//! Plexus, nginx and haproxy in a temporary directory, starting every server as a child
//! process pinned to its CPU, waiting until it answers, and stopping it again. Every
//! child lives in a [`Proc`] guard that terminates it, and anything it started, when
//! dropped, so an error or a panic anywhere leaves nothing running.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load::HttpConn;
use crate::measure::process_tree;

/// The environment variable that makes the bench binary act as a helper process.
pub(crate) const ROLE_ENV: &str = "PLEXUS_BENCH_ROLE";

/// A child process, stopped (with everything it started) when dropped.
pub(crate) struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, pinned to `cpu` when given, with its output going to `log` (and
    /// standard output to `stdout` when given).
    pub(crate) fn spawn(
        name: &str,
        cmd: &Command,
        cpu: Option<usize>,
        log: &Path,
        stdout: Option<&Path>,
    ) -> anyhow::Result<Proc> {
        let mut full = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(cmd.get_program());
                c
            }
            None => Command::new(cmd.get_program()),
        };
        full.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => full.env(k, v),
                None => full.env_remove(k),
            };
        }
        let err = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let out = match stdout {
            Some(path) => Stdio::from(File::create(path)?),
            None => Stdio::from(err.try_clone()?),
        };
        full.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = full
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id (`taskset` execs the program, so it is the program's).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at start.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// An error, with the end of its log, if the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); end of its log:\n{}",
                self.name,
                self.log_tail(20)
            ),
        }
    }

    /// The last `n` lines of the process's log.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit by itself within `timeout` (it is killed after
    /// that); true if it exited successfully.
    pub(crate) fn wait(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() >= deadline {
                let _ = self.stop();
                bail!("{} did not finish within {timeout:?}", self.name);
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process (as [`Drop`] does) and tells how it went: `Ok` with the time it
    /// took to exit after SIGTERM, or an error if it had to be killed or had already
    /// exited.
    pub(crate) fn shutdown(&mut self) -> anyhow::Result<Duration> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} had exited ({status}); end of its log:\n{}",
                self.name,
                self.log_tail(20)
            );
        }
        match self.stop() {
            Some(took) => Ok(took),
            None => bail!(
                "{} did not exit within {STOP_GRACE:?} of SIGTERM and was killed",
                self.name
            ),
        }
    }

    /// SIGTERM to the process, then SIGKILL to it and its descendants if it has not
    /// exited within [`STOP_GRACE`]. Returns how long it took to exit by itself.
    fn stop(&mut self) -> Option<Duration> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Some(Duration::ZERO);
        }
        let tree = process_tree(self.pid());
        let start = Instant::now();
        signal("TERM", &[self.pid()]);
        let mut exited = None;
        while start.elapsed() < STOP_GRACE {
            if self.child.try_wait().ok().flatten().is_some() {
                exited = Some(start.elapsed());
                break;
            }
            sleep(Duration::from_millis(5));
        }
        // nginx's workers outlive a killed master: take down everything it started.
        let alive: Vec<u32> = tree
            .into_iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        signal("KILL", &alive);
        let _ = self.child.kill();
        let _ = self.child.wait();
        exited
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a process may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Sends a signal to processes (by pid, never by name).
fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Installs wrk, nginx and haproxy with apt-get if any is missing (running
/// `apt-get update` only if a first install fails).
pub(crate) fn ensure_tools() -> anyhow::Result<()> {
    ensure_packages(&[("wrk", "wrk"), ("nginx", "nginx"), ("haproxy", "haproxy")])
}

/// Installs the Debian package of every `(command, package)` whose command `command
/// -v` does not find (running `apt-get update` only if a first install fails).
pub(crate) fn ensure_packages(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {bin}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    let updated = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success());
    if updated && install() {
        return Ok(());
    }
    bail!("cannot install {}", missing.join(" "))
}

/// Builds the `plexus` binary in release mode and returns its path.
pub(crate) fn build_plexus() -> anyhow::Result<PathBuf> {
    build_release("plexus", "plexus")
}

/// Builds binary `bin` of workspace package `package` in release mode and returns its
/// path (read from cargo's JSON messages, so a shared or redirected target directory
/// is found).
pub(crate) fn build_release(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    eprintln!("building {bin} (cargo build --release -p {package} --bin {bin})");
    let mut build = Command::new(cargo);
    // Without the variables cargo set for this bench: some build scripts (ring's)
    // track `CARGO_MANIFEST_DIR`, and a value here that a plain `cargo build` does not
    // have would rebuild them, and everything above them, on every bench run and
    // again on the next build by hand.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_this_crate) {
            build.env_remove(&name);
        }
    }
    let out = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "-p", package, "--bin", bin])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build --release -p {package} --bin {bin} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build did not report the {bin} executable"))
}

/// Whether environment variable `name` is one cargo sets for a crate (the bench
/// itself), as opposed to configuration of cargo's own (`CARGO`, `CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, ...), which a nested build must keep. A
/// running bench was seen to have `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH`,
/// `CARGO_PKG_*` and `CARGO_BIN_EXE_*`; the others are the rest of cargo's list for
/// crates, dropped too in case a cargo version passes them on.
fn set_by_cargo_for_this_crate(name: &str) -> bool {
    matches!(
        name,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_MANIFEST_LINKS"
            | "CARGO_CRATE_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
    ) || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
}

/// Checks [`set_by_cargo_for_this_crate`] (run by `cargo test --benches`).
pub(crate) fn self_check() {
    for name in [
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
        "CARGO_PKG_VERSION_MAJOR",
        "CARGO_CRATE_NAME",
        "CARGO_TARGET_TMPDIR",
        "CARGO_BIN_EXE_plexus",
    ] {
        assert!(
            set_by_cargo_for_this_crate(name),
            "{name} is the bench's own"
        );
    }
    for name in [
        "CARGO",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_LTO",
        "CARGO_BUILD_JOBS",
        "CARGO_INCREMENTAL",
        "PATH",
    ] {
        assert!(!set_by_cargo_for_this_crate(name), "{name} is kept");
    }
}

/// A free port on 127.0.0.1 (bound and released; nothing else here takes ports).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits (up to ten seconds) until `127.0.0.1:<port>` answers `GET /` with 200,
/// checking that the process is still running meanwhile.
pub(crate) fn wait_ready(proc: &mut Proc, port: u16) -> anyhow::Result<()> {
    wait_ready_at(proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Waits (up to ten seconds) until `addr` answers `GET /` with 200, checking that the
/// process is still running meanwhile.
pub(crate) fn wait_ready_at(proc: &mut Proc, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        proc.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            match HttpConn::connect(addr).and_then(|mut c| c.get()) {
                Ok(200) => return Ok(()),
                Ok(status) => last = format!("status {status}"),
                Err(e) => last = e.to_string(),
            }
        }
        sleep(Duration::from_millis(50));
    }
    bail!(
        "{} is not answering 200 on {addr} ({last}); end of its log:\n{}",
        proc.name(),
        proc.log_tail(20)
    )
}

/// The backend every target sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// The hyper server in this program ([`crate::backend`]).
    Hyper,
    /// nginx returning the body from its config.
    Nginx,
}

/// Starts the backend on `port`, pinned to `cpu`.
pub(crate) fn start_backend(
    kind: BackendKind,
    threads: usize,
    port: u16,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let mut proc = match kind {
        BackendKind::Hyper => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.env(ROLE_ENV, "backend")
                .env("PLEXUS_BENCH_PORT", port.to_string())
                .env("PLEXUS_BENCH_THREADS", threads.to_string());
            Proc::spawn("backend", &cmd, cpu, &dir.join("backend.log"), None)?
        }
        BackendKind::Nginx => {
            let location = "default_type text/plain; return 200 \"Hello world\\n\";";
            start_nginx("backend", port, location, "", cpu, dir)?
        }
    };
    wait_ready(&mut proc, port)?;
    Ok(proc)
}

/// Starts Plexus with a router that sends every request to the backend.
pub(crate) fn start_plexus(
    bin: &Path,
    port: u16,
    backend: u16,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let admin = free_port()?;
    // PLEXUS_BENCH_ZIPKIN=<rate>: trace at that sample rate, to a collector that is not
    // there (sampled spans are dropped), to measure what tracing costs a request.
    let telemetry = match std::env::var("PLEXUS_BENCH_ZIPKIN") {
        Ok(rate) => format!(
            "telemetry:\n- kind: io.l5d.zipkin\n  host: 127.0.0.1\n  port: {}\n  sampleRate: {rate}\n",
            free_port()?
        ),
        Err(_) => String::new(),
    };
    let config = format!(
        "admin: {{ip: 127.0.0.1, port: {admin}}}\n\
         routers:\n\
         - protocol: http\n\
         \x20 label: bench\n\
         \x20 dtab: /svc => /$/inet/127.0.0.1/{backend};\n\
         \x20 servers:\n\
         \x20 - ip: 127.0.0.1\n\
         \x20   port: {port}\n\
         {telemetry}"
    );
    let path = dir.join("plexus.yaml");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg(&path);
    let mut proc = Proc::spawn("plexus", &cmd, cpu, &dir.join("plexus.log"), None)?;
    wait_ready(&mut proc, port)?;
    Ok(proc)
}

/// Starts nginx as a proxy: one worker, keep-alive to the backend.
pub(crate) fn start_nginx_proxy(
    port: u16,
    backend: u16,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let upstream = format!(
        "upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; \
         keepalive_requests 100000000; }}"
    );
    let location = "proxy_pass http://backend; proxy_http_version 1.1; \
                    proxy_set_header Connection \"\";";
    let mut proc = start_nginx("nginx", port, location, &upstream, cpu, dir)?;
    wait_ready(&mut proc, port)?;
    Ok(proc)
}

/// nginx in the foreground with its own config and prefix in `dir/<name>`.
fn start_nginx(
    name: &str,
    port: u16,
    location: &str,
    http_extra: &str,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(&prefix)?;
    let p = prefix.display();
    // Client keep-alive is otherwise closed after 1000 requests (nginx >= 1.19.10).
    let config = format!(
        "worker_processes 1;\n\
         pid {p}/nginx.pid;\n\
         error_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 keepalive_requests 100000000;\n\
         \x20 keepalive_timeout 60s;\n\
         \x20 client_body_temp_path {p}/body;\n\
         \x20 proxy_temp_path {p}/proxy;\n\
         \x20 fastcgi_temp_path {p}/fastcgi;\n\
         \x20 uwsgi_temp_path {p}/uwsgi;\n\
         \x20 scgi_temp_path {p}/scgi;\n\
         \x20 {http_extra}\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         \x20   location / {{ {location} }}\n\
         \x20 }}\n\
         }}\n"
    );
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"])
        .args(["-g", "daemon off;"]);
    Proc::spawn(name, &cmd, cpu, &prefix.join("stderr.log"), None)
}

/// Starts haproxy as a proxy: one thread, connections to the backend reused.
pub(crate) fn start_haproxy(
    port: u16,
    backend: u16,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let config = format!(
        "global\n\
         \x20 nbthread 1\n\
         \x20 maxconn 4096\n\
         defaults\n\
         \x20 mode http\n\
         \x20 option http-keep-alive\n\
         \x20 http-reuse always\n\
         \x20 timeout connect 5s\n\
         \x20 timeout client 60s\n\
         \x20 timeout server 60s\n\
         frontend bench\n\
         \x20 bind 127.0.0.1:{port}\n\
         \x20 default_backend backend\n\
         backend backend\n\
         \x20 server b1 127.0.0.1:{backend}\n"
    );
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, config)?;
    let mut cmd = Command::new("haproxy");
    cmd.arg("-f").arg(&conf).arg("-db");
    let mut proc = Proc::spawn("haproxy", &cmd, cpu, &dir.join("haproxy.log"), None)?;
    wait_ready(&mut proc, port)?;
    Ok(proc)
}
