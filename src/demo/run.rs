//! Running the demo: the checks before anything starts, the processes, the
//! walk-through, and the clean stop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::layout::{self, ADMIN_PORT, INCOMING_PORT, Layout, OUTGOING_PORT, THRIFT_OUTGOING_PORT};
use crate::sim::Cluster;

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The `plexus` binary to run on each node (normally this one).
    pub plexus: PathBuf,
    /// The tutorial's `helloworld` app.
    pub app: PathBuf,
    /// The simulated Kubernetes API's port on 127.0.0.1.
    pub api_port: u16,
    /// How many nodes.
    pub nodes: u8,
}

/// A process the demo started, and where its output goes.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exited: bool,
}

/// Only one demo at a time: a pid file in the temporary directory.
struct Lock(PathBuf);

impl Lock {
    fn acquire() -> Result<Lock, String> {
        let path = std::env::temp_dir().join("plexus-demo.pid");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Lock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid = pid.trim();
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let running = !pid.is_empty()
                        && String::from_utf8_lossy(&cmdline)
                            .split('\0')
                            .any(|a| a == "demo");
                    if running {
                        return Err(format!(
                            "a Plexus demo is already running (pid {pid}); use it, or stop it with \
                             Ctrl-C in its terminal (or `kill {pid}`) before starting another"
                        ));
                    }
                    // Left behind by a demo that was killed: take it over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!("cannot take the demo lock {}", path.display()))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Refuses to start when any address the demo needs is taken, naming it.
fn check_ports(layout: &Layout) -> Result<(), String> {
    for (addr, what) in layout.listeners() {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "cannot start the demo: {addr} ({what}) is already in use; stop what listens \
                     there (`ss -ltnp 'sport = :{port}'` shows it) and try again",
                    port = addr.port()
                )
            } else {
                format!("cannot start the demo: cannot listen on {addr} ({what}): {e}")
            });
        }
    }
    Ok(())
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub fn run(options: DemoOptions) -> Result<(), String> {
    for (what, bin) in [("plexus", &options.plexus), ("helloworld", &options.app)] {
        if !bin.is_file() {
            return Err(format!(
                "the {what} binary was not found at {}; build both with \
                 `cargo build --release -p plexus -p plexus-examples` (or pass --app PATH)",
                bin.display()
            ));
        }
    }
    let layout = Layout::new(options.nodes, options.api_port);
    let _lock = Lock::acquire()?;
    check_ports(&layout)?;
    let work = std::env::temp_dir().join(format!("plexus-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(demo(&layout, &options, &work));
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

async fn demo(layout: &Layout, options: &DemoOptions, work: &Path) -> Result<(), String> {
    let cluster = Cluster::new();
    layout.populate(&cluster);
    let api = cluster.start(layout.api).await.map_err(|e| {
        format!(
            "cannot serve the simulated Kubernetes API on {}: {e}",
            layout.api
        )
    })?;
    let mut procs = Vec::new();
    let started = start_processes(layout, options, work, &mut procs).await;
    let outcome = match started {
        Ok(()) => walk_through(layout, work).await.map(|()| true),
        Err(e) => Err(e),
    };
    let outcome = match outcome {
        Ok(_) => {
            supervise(&mut procs).await;
            Ok(())
        }
        Err(e) => Err(format!("{e}\n(logs are in {})", work.display())),
    };
    println!("\nstopping the demo ...");
    stop(layout, &mut procs).await;
    api.stop().await;
    if outcome.is_ok() {
        println!("stopped: every process the demo started has exited and its ports are free");
    }
    outcome
}

async fn start_processes(
    layout: &Layout,
    options: &DemoOptions,
    work: &Path,
    procs: &mut Vec<Proc>,
) -> Result<(), String> {
    for &n in &layout.nodes {
        let config = work.join(format!("node-{n}.yaml"));
        std::fs::write(&config, layout.node_config(n))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let mut cmd = Command::new(&options.plexus);
        cmd.arg("run")
            .arg(&config)
            .env("POD_IP", layout::plexus_ip(n).to_string())
            .env("NODE_NAME", layout::node_name(n));
        procs.push(spawn(&format!("plexus on node-{n}"), cmd, work)?);
    }
    for app in &layout.apps {
        procs.push(spawn(
            &app.pod,
            Command::from(app.command(&options.app)),
            work,
        )?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (addr, what) in layout.listeners().into_iter().skip(1) {
        while TcpStream::connect(addr).await.is_err() {
            for p in procs.iter_mut() {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Err(format!(
                        "{} exited during start-up ({status}); its log is {}:\n{}",
                        p.name,
                        p.log.display(),
                        tail(&p.log)
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{what} did not start listening on {addr} within a minute"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn spawn(name: &str, mut cmd: Command, work: &Path) -> Result<Proc, String> {
    let log = work.join(format!("{}.log", name.replace(' ', "-")));
    let file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    Ok(Proc {
        name: name.to_owned(),
        child,
        log,
        exited: false,
    })
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// One HTTP/1.1 request, through `proxy` when given; returns the status and body.
async fn http(
    connect: SocketAddr,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = TcpStream::connect(connect).await?;
        let mut req =
            format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("no answer from {connect} within 10 s"))?
        .map_err(|e| format!("{connect}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response from {connect}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body.trim_end().to_owned()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Calls `Greeter.greet("plexus")` on the Thrift app at `addr` (framed, strict binary),
/// as `helloworld-client -protocol thrift` does, and returns the greeting.
async fn greet(addr: SocketAddr) -> Result<String, String> {
    use plexus_thrift::{Decoder, Limits, MessageKind};
    let call = super::greet_call(1);
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut out = bytes::BytesMut::new();
        plexus_thrift::encode(&call, true, &mut out).map_err(|e| e.to_string())?;
        s.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut decoder = Decoder::new(true, Limits::default());
        let mut buf = bytes::BytesMut::new();
        loop {
            if let Some(reply) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
                return Ok(reply);
            }
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("the connection closed before the reply".to_owned());
            }
        }
    };
    let reply = tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within 15 s"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    if reply.header().kind == MessageKind::Exception {
        let e = plexus_thrift::ApplicationException::from_message(&reply)
            .map_or_else(|e| e.to_string(), |e| e.message);
        return Err(format!("{addr}: {e}"));
    }
    // The result struct: field 0, a string.
    let body = reply.body();
    match body {
        [0x0b, 0x00, 0x00, a, b, c, d, rest @ ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            rest.get(..len)
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .ok_or_else(|| format!("{addr}: a truncated reply"))
        }
        _ => Err(format!("{addr}: an unexpected reply")),
    }
}

/// `GET http://<host>/` through node 1's outgoing router, as `curl -x` does.
async fn via_node1(host: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let proxy = SocketAddr::new(layout::plexus_ip(1), OUTGOING_PORT);
    http(proxy, "GET", &format!("http://{host}/"), host, headers).await
}

async fn walk_through(layout: &Layout, work: &Path) -> Result<(), String> {
    // The first request in a namespace starts its watch; wait until the mesh answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let hello = loop {
        match via_node1("hello", &[]).await {
            Ok((200, body)) => break body,
            other if Instant::now() > deadline => {
                return Err(format!(
                    "the mesh did not answer through 127.0.1.1:4140: {other:?}"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let thrift_hello = layout
        .apps
        .iter()
        .find(|a| a.service == "thrift-hello" && a.node == 1)
        .map_or_else(|| SocketAddr::from(([127, 0, 1, 14], 7780)), |a| a.addr);
    let greeting = loop {
        match greet(thrift_hello).await {
            Ok(g) => break g,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the Thrift hello did not answer: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let override_dtab = "/host/world => /srv/world-v2;";
    let earth = via_node1("hello", &[("l5d-dtab", override_dtab)]).await?.1;
    let api = via_node1("api", &[]).await?.1;
    let n1 = layout::plexus_ip(1);
    let failing = layout
        .apps
        .iter()
        .find(|a| a.service == "world-v1" && a.node == 2)
        .map_or_else(|| "127.0.2.11:7778".to_owned(), |a| a.addr.to_string());
    let mut out = String::new();
    out.push_str(&format!(
        "\nPlexus demo: a {}-node mesh on loopback, running the Kubernetes DaemonSet tutorial.\n\n",
        layout.nodes.len()
    ));
    out.push_str(&format!(
        "  Kubernetes API  http://{}  (simulated: a development tool, not a cluster)\n",
        layout.api
    ));
    for &n in &layout.nodes {
        let pods: Vec<String> = layout
            .apps
            .iter()
            .filter(|a| a.node == n)
            .map(|a| format!("{} {}", a.service, a.addr))
            .collect();
        out.push_str(&format!(
            "  node-{n}  Plexus {ip} (outgoing :{OUTGOING_PORT}, incoming :{INCOMING_PORT}, Thrift :{THRIFT_OUTGOING_PORT}, admin :{ADMIN_PORT}); pods: {}\n",
            pods.join(", "),
            ip = layout::plexus_ip(n),
        ));
    }
    out.push_str(&format!(
        "\nEach node's config is in {}; logs are next to it.\n\n",
        work.display()
    ));
    out.push_str(&format!(
        "1. Call hello through node-1's Plexus (hello calls world through its own node's Plexus):\n\n  \
         $ curl -s -x http://{n1}:{OUTGOING_PORT} http://hello\n  {hello}\n\n"
    ));
    out.push_str(&format!(
        "2. Send this request's call to world to world-v2 instead, with a per-request dtab override:\n\n  \
         $ curl -s -x http://{n1}:{OUTGOING_PORT} -H 'l5d-dtab: {override_dtab}' http://hello\n  {earth}\n\n"
    ));
    out.push_str(&format!(
        "   and the api app, which calls hello:\n\n  $ curl -s -x http://{n1}:{OUTGOING_PORT} http://api\n  {api}\n\n"
    ));
    out.push_str(&format!(
        "3. Watch it: the dashboard is at http://{n1}:{ADMIN_PORT}/ (every node has one), the dtab\n   \
         playground at http://{n1}:{ADMIN_PORT}/delegator, and in a terminal:\n\n  \
         $ plexus stat --admin {n1}:{ADMIN_PORT}\n\n"
    ));
    out.push_str(&format!(
        "4. Break an instance and watch the mesh route around it (retries, circuit breaking):\n\n  \
         $ curl -s -X POST 'http://{failing}/setFailureRate?failureRate=1.0'\n  \
         $ curl -s -X POST 'http://{failing}/setLatency?latency=2s'\n  \
         $ for i in $(seq 20); do curl -s -x http://{n1}:{OUTGOING_PORT} http://hello; echo; done\n  \
         $ curl -s -X POST 'http://{failing}/setFailureRate?failureRate=0'   # and latency=0s to heal it\n\n"
    ));
    out.push_str(&format!(
        "5. Thrift: the Thrift hello calls Greeter.greet on world through its node's Plexus\n   \
         (:{THRIFT_OUTGOING_PORT}); between nodes the call rides one ThriftMux session per peer:\n\n  \
         $ helloworld-client -protocol thrift {thrift_hello}\n  {greeting}\n\n"
    ));
    out.push_str("Ctrl-C stops the demo and everything it started.\n");
    println!("{out}");
    println!("plexus demo: ready");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM, reporting any process that dies meanwhile.
async fn supervise(procs: &mut [Proc]) {
    let signal = crate::runtime::shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = &mut signal => return,
            _ = tick.tick() => {
                for p in procs.iter_mut().filter(|p| !p.exited) {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        p.exited = true;
                        eprintln!(
                            "plexus demo: {} exited ({status}); the rest keeps running. Its log ({}) ends with:\n{}",
                            p.name, p.log.display(), tail(&p.log)
                        );
                    }
                }
            }
        }
    }
}

/// Asks each Plexus to drain and exit, stops the apps, and waits for every process.
async fn stop(layout: &Layout, procs: &mut [Proc]) {
    for &n in &layout.nodes {
        let admin = SocketAddr::new(layout::plexus_ip(n), ADMIN_PORT);
        let _ = http(admin, "POST", "/admin/shutdown", &admin.to_string(), &[]).await;
    }
    let grace = Instant::now() + Duration::from_secs(5);
    for p in procs.iter_mut() {
        if p.name.starts_with("plexus") {
            while Instant::now() < grace {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let _ = p.child.start_kill();
        let _ = p.child.wait().await;
    }
}
