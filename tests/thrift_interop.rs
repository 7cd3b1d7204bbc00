//! Thrift interop with independent peers: two Python Thrift implementations that share no
//! code with Plexus nor with each other (thriftpy2, and Apache Thrift with code generated
//! by the `thrift` compiler), driven by `tests/thrift/peer.py` against the `Echo` service
//! of `tests/thrift/echo.thrift`.
//!
//! Every combination of implementation × transport (framed, buffered = unframed) ×
//! protocol (strict binary, non-strict binary, compact), plus multiplexed services, runs
//! the peer's cases in one client process against one server process: a round trip, a
//! void reply, a declared exception, a TApplicationException, oneway calls, a 2 MiB
//! message, 200 calls on one connection, and (raw-pipelined) five calls written back to
//! back before any reply is read. The client checks that every reply carries its call's
//! name and seqid.
//!
//! `direct_matrix` runs the client straight against the server (it checks the peers
//! themselves); `plexus_matrix` runs it through one Plexus with a `protocol: thrift`
//! router per combination, then checks the routers' success/failure counts;
//! `two_peer_mux_matrix` runs it through two Plexus peers (127.0.1.1 → 127.0.2.1)
//! whose hop is upgraded to Mux, and checks from the incoming side's metrics that every
//! combination's calls rode Mux.
//!
//! The Python and the compiler come from `PLEXUS_PYTHON` and `PLEXUS_THRIFT_COMPILER`,
//! which `scripts/test.sh` installs and exports; without them the tests fail.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{Proc, curl, free_port, listening, plexus_bin, scratch, wait_for};

/// The cases `peer.py client` runs by default.
const CASES: &[&str] = &[
    "echo", "void", "declared", "appexc", "oneway", "large", "many",
];

/// What a peer needs: the venv's Python, the Thrift compiler, where generated code goes.
struct Tools {
    python: PathBuf,
    compiler: PathBuf,
    gen_dir: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let var = |name: &str| {
            let path = std::env::var_os(name)
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    panic!(
                        "{name} is not set: run ./scripts/test.sh, which installs the Thrift \
                     peers' tools (thrift-compiler, PyPI thrift and thriftpy2) and exports it"
                    )
                });
            assert!(path.is_file(), "{name}={} is not a file", path.display());
            path
        };
        Tools {
            python: var("PLEXUS_PYTHON"),
            compiler: var("PLEXUS_THRIFT_COMPILER"),
            gen_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("thrift-gen"),
        }
    })
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/thrift/peer.py")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Thriftpy2,
    Apache,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Thriftpy2 => "thriftpy2",
            Impl::Apache => "apache",
        }
    }
}

/// One server/client combination.
#[derive(Clone, Copy)]
struct Combo {
    imp: Impl,
    framed: bool,
    /// `binary`, `binary-nonstrict` or `compact`, as `peer.py` spells them.
    protocol: &'static str,
    multiplexed: bool,
}

impl Combo {
    fn transport(&self) -> &'static str {
        if self.framed { "framed" } else { "buffered" }
    }

    /// The router's `thriftProtocol`: non-strict binary is binary to Linkerd's config.
    fn thrift_protocol(&self) -> &'static str {
        if self.protocol == "compact" {
            "compact"
        } else {
            "binary"
        }
    }

    /// Also the router label.
    fn label(&self) -> String {
        format!(
            "{}-{}-{}{}",
            self.imp.name(),
            self.transport(),
            self.protocol,
            if self.multiplexed { "-mux" } else { "" }
        )
    }

    /// The Dst path the router names this combination's requests with: the multiplexed
    /// service name (`Echo:echo` → `Echo`) is appended to `/svc`.
    fn dst(&self) -> &'static str {
        if self.multiplexed {
            "/svc/Echo"
        } else {
            "/svc"
        }
    }

    /// `peer.py` arguments shared by the server and the client.
    fn args(&self) -> Vec<String> {
        let t = tools();
        let mut args = vec![
            "--impl".to_owned(),
            self.imp.name().to_owned(),
            "--gen-dir".to_owned(),
            t.gen_dir.display().to_string(),
            "--thrift".to_owned(),
            t.compiler.display().to_string(),
            "--transport".to_owned(),
            self.transport().to_owned(),
            "--protocol".to_owned(),
            self.protocol.to_owned(),
        ];
        if self.multiplexed {
            args.push("--multiplexed".to_owned());
        }
        args
    }

    fn cases(&self) -> Vec<&'static str> {
        let mut cases = CASES.to_vec();
        if self.multiplexed {
            cases.push("multiplexed");
        }
        cases
    }

    /// How many two-way calls the client runs make at least (a oneway call may or may not
    /// count as a request, and `oneway` polls `notified()` at least twice).
    fn two_way_calls(&self) -> f64 {
        // echo 3, void 1, declared 1, appexc 2, oneway 2, large 1, many 200
        let mut calls = 210.0;
        if self.multiplexed {
            calls += 2.0;
        }
        if self.raw_pipelined() {
            calls += 5.0;
        }
        calls
    }

    /// Raw pipelining is library-independent: run it once per transport × protocol,
    /// against the Apache servers (and so through their routers).
    fn raw_pipelined(&self) -> bool {
        self.imp == Impl::Apache && !self.multiplexed
    }
}

/// Both implementations × framed/buffered × strict binary, non-strict binary, compact;
/// plus a multiplexed service (`TMultiplexedProtocol`, name `Echo:method`) for each
/// implementation. Both libraries can write and read non-strict binary, so both do.
fn matrix() -> Vec<Combo> {
    let mut combos = Vec::new();
    for imp in [Impl::Thriftpy2, Impl::Apache] {
        for framed in [true, false] {
            for protocol in ["binary", "binary-nonstrict", "compact"] {
                combos.push(Combo {
                    imp,
                    framed,
                    protocol,
                    multiplexed: false,
                });
            }
        }
    }
    combos.push(Combo {
        imp: Impl::Apache,
        framed: true,
        protocol: "binary",
        multiplexed: true,
    });
    combos.push(Combo {
        imp: Impl::Thriftpy2,
        framed: false,
        protocol: "compact",
        multiplexed: true,
    });
    combos
}

/// Starts `peer.py server` for `combo` on `port` and waits for it to say `ready`.
fn start_server(dir: &Path, combo: &Combo, port: u16) -> Proc {
    let log = dir.join(format!("server-{}.log", combo.label()));
    let mut cmd = Command::new(&tools().python);
    cmd.arg(peer_script())
        .arg("server")
        .args(combo.args())
        .args(["--port", &port.to_string()]);
    let mut server = Proc::spawn(&mut cmd, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log_text().lines().any(|l| l == "ready") {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{} server exited ({status}) before it was ready:\n{}",
                combo.label(),
                server.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} server not ready in 60 s:\n{}",
            combo.label(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// What one peer client run printed.
struct Run {
    what: String,
    exit: Option<i32>,
    output: String,
}

impl Run {
    fn failures(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter(|l| l.starts_with("FAIL "))
            .collect()
    }

    /// Whether every expected case printed `ok` and the run passed as a whole.
    fn problems(&self, cases: &[String]) -> Option<String> {
        let lines: Vec<&str> = self.output.lines().collect();
        let mut missing: Vec<&str> = cases
            .iter()
            .map(String::as_str)
            .filter(|c| !lines.contains(&format!("ok {c}").as_str()))
            .collect();
        let summary = format!("{} passed, 0 failed", cases.len());
        if missing.is_empty() && self.exit == Some(0) && lines.last() == Some(&summary.as_str()) {
            return None;
        }
        missing.retain(|c| {
            !self
                .failures()
                .iter()
                .any(|f| f.starts_with(&format!("FAIL {c}:")))
        });
        let mut text = format!("{} (exit {:?}):\n", self.what, self.exit);
        for line in self.failures() {
            let _ = writeln!(text, "  {line}");
        }
        if !missing.is_empty() {
            let _ = writeln!(text, "  no result for {}", missing.join(", "));
        }
        let other: String = self
            .output
            .lines()
            .filter(|l| {
                !l.starts_with("ok ") && !l.starts_with("FAIL ") && !l.contains(" passed, ")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if !other.is_empty() {
            let _ = writeln!(text, "  other output:\n{}", indent(&other));
        }
        Some(text)
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs `peer.py` with `args` to completion (at most 3 minutes: the peer's own socket
/// timeouts end a hung case well before that, so the output says which case hung).
fn run_peer(dir: &Path, what: &str, args: &[String]) -> Run {
    let log = dir.join(format!("{}.log", what.replace(' ', "-")));
    let mut cmd = Command::new(&tools().python);
    cmd.arg(peer_script()).args(args);
    let mut proc = Proc::spawn(&mut cmd, log);
    let deadline = Instant::now() + Duration::from_secs(180);
    let exit = loop {
        if let Ok(Some(status)) = proc.child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        what: what.to_owned(),
        exit,
        output: proc.log_text(),
    }
}

/// Starts `plexus run` with `config` (written to `dir/<name>.yaml`) and waits until every
/// address in `listen` accepts connections.
fn start_plexus(dir: &Path, name: &str, config: &str, listen: &[SocketAddr]) -> Proc {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).expect("config");
    let mut plexus = Proc::spawn(
        Command::new(plexus_bin()).arg("run").arg(&path),
        dir.join(format!("{name}.log")),
    );
    for a in listen {
        wait_for(&format!("{name} to listen on {a}"), || {
            if let Ok(Some(status)) = plexus.child.try_wait() {
                panic!(
                    "{name} exited ({status}):\n{}\nconfig:\n{config}",
                    plexus.log_text()
                );
            }
            listening(*a)
        });
    }
    plexus
}

/// Runs the combinations one after another, each against its own server on its port, the
/// client aimed at `target(index)`. Prints the matrix (visible with `--nocapture`) and
/// returns a report per failing run, with the server's log.
fn run_matrix(
    dir: &Path,
    combos: &[(Combo, u16)],
    target: impl Fn(usize) -> SocketAddr,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, (combo, app_port)) in combos.iter().enumerate() {
        let server = start_server(dir, combo, *app_port);
        let target = target(i).to_string();
        let mut runs = Vec::new();
        let mut args = vec!["client".to_owned()];
        args.extend(combo.args());
        args.extend(["--target".to_owned(), target.clone()]);
        let cases: Vec<String> = combo.cases().iter().map(|c| c.to_string()).collect();
        runs.push((
            run_peer(dir, &format!("client {}", combo.label()), &args),
            cases,
        ));
        if combo.raw_pipelined() {
            let args = [
                "raw-pipelined",
                "--transport",
                combo.transport(),
                "--protocol",
                combo.protocol,
                "--target",
                &target,
            ]
            .map(str::to_owned);
            let cases = (11..=15).map(|s| format!("pipelined-{s}")).collect();
            runs.push((
                run_peer(
                    dir,
                    &format!("raw-pipelined {}-{}", combo.transport(), combo.protocol),
                    &args,
                ),
                cases,
            ));
        }
        for (run, cases) in &runs {
            let verdict = run.output.lines().last().unwrap_or("no output");
            eprintln!("{:<44} {verdict}", run.what);
            if let Some(text) = run.problems(cases) {
                problems.push(format!(
                    "{text}  server log:\n{}",
                    indent(&server.log_text())
                ));
            }
        }
    }
    problems
}

fn combos_with_ports() -> Vec<(Combo, u16)> {
    matrix().into_iter().map(|c| (c, free_port())).collect()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The peers against each other, no Plexus: checks the peers and the harness.
#[test]
fn direct_matrix() {
    let dir = scratch("thrift-direct");
    let combos = combos_with_ports();
    let problems = run_matrix(&dir, &combos, |i| addr(combos[i].1));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The Prometheus value of `name{labels}` (labels in the order Plexus prints them).
fn prometheus_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

/// The same matrix through one Plexus: one `protocol: thrift` router per combination
/// (Linkerd 1.x keys: `thriftProtocol`, `thriftFramed` on the server and the client),
/// each sending `/svc` (or `/svc/Echo`, multiplexed) to that combination's server.
#[test]
fn plexus_matrix() {
    let dir = scratch("thrift-plexus");
    let combos = combos_with_ports();
    let proxy_ports: Vec<u16> = combos.iter().map(|_| free_port()).collect();
    let admin = free_port();
    let mut config = format!("admin: {{ip: 127.0.0.1, port: {admin}}}\nrouters:\n");
    for ((combo, app_port), proxy_port) in combos.iter().zip(&proxy_ports) {
        let _ = write!(
            config,
            "- protocol: thrift\n  label: {label}\n  thriftProtocol: {protocol}\n  \
             thriftMethodInDst: false\n  dtab: {dst} => /$/inet/127.0.0.1/{app_port}\n  \
             servers: [{{ip: 127.0.0.1, port: {proxy_port}, thriftFramed: {framed}}}]\n  \
             client: {{thriftFramed: {framed}}}\n",
            label = combo.label(),
            protocol = combo.thrift_protocol(),
            dst = combo.dst(),
            framed = combo.framed,
        );
    }
    std::fs::write(dir.join("plexus.yaml"), &config).expect("config");
    let mut plexus = Proc::spawn(
        Command::new(plexus_bin())
            .arg("run")
            .arg(dir.join("plexus.yaml")),
        dir.join("plexus.log"),
    );
    for port in proxy_ports.iter().chain([&admin]) {
        wait_for(&format!("plexus to listen on {port}"), || {
            if let Ok(Some(status)) = plexus.child.try_wait() {
                panic!(
                    "plexus exited ({status}):\n{}\nconfig:\n{config}",
                    plexus.log_text()
                );
            }
            listening(addr(*port))
        });
    }

    let mut problems = run_matrix(&dir, &combos, |i| addr(proxy_ports[i]));

    // Each client run had exactly two failing calls: `declared` (a REPLY carrying the
    // declared exception Oops) and `appexc` (an EXCEPTION message). Both count as failures
    // of the router's service, every other call as a success. (The counts may land just
    // after the client saw its reply, so they get a few seconds to settle.)
    let metrics_url = format!("http://127.0.0.1:{admin}/admin/metrics/prometheus");
    let check = |prom: &str| -> Vec<(String, Option<String>)> {
        combos
            .iter()
            .map(|(combo, _)| {
                let labels = format!(
                    "rt=\"{}\",service=\"{}\"",
                    combo.label(),
                    combo.dst().trim_start_matches('/')
                );
                let value = |leaf| prometheus_value(prom, &format!("rt:service:{leaf}"), &labels);
                let (requests, success, failures) =
                    (value("requests"), value("success"), value("failures"));
                let seen =
                    format!("requests {requests:?}, success {success:?}, failures {failures:?}");
                let min = combo.two_way_calls();
                let ok = failures == Some(2.0)
                    && requests.is_some_and(|r| r >= min && success == Some(r - 2.0));
                let problem = (!ok).then(|| {
                    format!(
                        "metrics of rt:service:*{{{labels}}}: {seen}; want failures 2 \
                         (declared + appexc), requests at least {min} (the two-way calls), \
                         success = requests - 2"
                    )
                });
                (format!("{labels:<56} {seen}"), problem)
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let prom = loop {
        let prom = curl(&[&metrics_url]).body;
        if check(&prom).iter().all(|(_, p)| p.is_none()) || Instant::now() > deadline {
            break prom;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (seen, problem) in check(&prom) {
        eprintln!("{seen}");
        problems.extend(problem);
    }
    if !problems.is_empty() {
        let metrics: String = prom
            .lines()
            .filter(|l| l.starts_with("rt:service:") && !l.contains("latency"))
            .map(|l| format!("    {l}\n"))
            .collect();
        panic!(
            "{}\nservice metrics:\n{metrics}\nplexus log:\n{}",
            problems.join("\n"),
            indent(&plexus.log_text())
        );
    }
    support::promtool_check(&prom);
}

/// The single-service combinations through two Plexus peers: an outgoing router per
/// combination on 127.0.1.1 (`peerUpgrades: [mux]`) sends to its twin incoming router on
/// 127.0.2.1, which speaks the combination's framing to the Python server. The apps
/// speak plain Thrift at both ends; the hop between the peers is one Mux session.
#[test]
fn two_peer_mux_matrix() {
    let dir = scratch("thrift-two-peers");
    let combos: Vec<(Combo, u16)> = combos_with_ports()
        .into_iter()
        .filter(|(c, _)| !c.multiplexed)
        .collect();
    let (out_admin, in_admin) = (free_port(), free_port());
    let ports: Vec<(u16, u16)> = combos.iter().map(|_| (free_port(), free_port())).collect();
    let mut outgoing = format!("admin: {{ip: 127.0.1.1, port: {out_admin}}}\nrouters:\n");
    let mut incoming = format!("admin: {{ip: 127.0.2.1, port: {in_admin}}}\nrouters:\n");
    for ((combo, app_port), (out_port, in_port)) in combos.iter().zip(&ports) {
        let label = combo.label();
        let framed = combo.framed;
        let _ = write!(
            outgoing,
            "- protocol: thrift\n  label: out-{label}\n  thriftProtocol: {protocol}\n  \
             dtab: /svc => /$/inet/127.0.2.1/{in_port}\n  \
             servers: [{{ip: 127.0.1.1, port: {out_port}, thriftFramed: {framed}}}]\n  \
             client: {{peerUpgrades: [mux]}}\n",
            protocol = combo.thrift_protocol(),
        );
        let _ = write!(
            incoming,
            "- protocol: thrift\n  label: in-{label}\n  thriftProtocol: {protocol}\n  \
             dtab: /svc => /$/inet/127.0.0.1/{app_port}\n  \
             servers: [{{ip: 127.0.2.1, port: {in_port}}}]\n  \
             client: {{thriftFramed: {framed}}}\n",
            protocol = combo.thrift_protocol(),
        );
    }
    let listen = |ip: [u8; 4], pick: fn(&(u16, u16)) -> u16, admin: u16| -> Vec<SocketAddr> {
        ports
            .iter()
            .map(pick)
            .chain([admin])
            .map(|p| SocketAddr::from((ip, p)))
            .collect()
    };
    let incoming_plexus = start_plexus(
        &dir,
        "incoming",
        &incoming,
        &listen([127, 0, 2, 1], |p| p.1, in_admin),
    );
    let outgoing_plexus = start_plexus(
        &dir,
        "outgoing",
        &outgoing,
        &listen([127, 0, 1, 1], |p| p.0, out_admin),
    );

    let mut problems = run_matrix(&dir, &combos, |i| {
        SocketAddr::from(([127, 0, 1, 1], ports[i].0))
    });

    // Every call of every combination reached the incoming side over Mux, none as plain
    // Thrift; and the application failures crossed the hop as failures.
    let prom = curl(&[&format!(
        "http://127.0.2.1:{in_admin}/admin/metrics/prometheus"
    )])
    .body;
    for ((combo, _), (_, in_port)) in combos.iter().zip(&ports) {
        let labels = |protocol: &str| {
            format!(
                "rt=\"in-{}\",server=\"127.0.2.1/{in_port}\",protocol=\"{protocol}\"",
                combo.label()
            )
        };
        let mux = prometheus_value(&prom, "rt:server:protocol:requests", &labels("thriftmux"));
        let plain = prometheus_value(&prom, "rt:server:protocol:requests", &labels("thrift"));
        eprintln!("{:<44} mux {mux:?}, plain {plain:?}", combo.label());
        if !(mux.is_some_and(|m| m >= combo.two_way_calls()) && plain.unwrap_or(0.0) == 0.0) {
            problems.push(format!(
                "{}: the incoming router saw {mux:?} calls over Mux and {plain:?} plain; \
                 want at least {} over Mux and none plain",
                combo.label(),
                combo.two_way_calls()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\noutgoing log:\n{}\nincoming log:\n{}",
        problems.join("\n"),
        indent(&outgoing_plexus.log_text()),
        indent(&incoming_plexus.log_text())
    );
}
