//! Starting what the sections measure: the helloworld gRPC server, Plexus processes
//! with the configs of each scenario (an h2 router for gRPC, the outgoing and
//! incoming routers of a two-node mesh on 127.0.1.1 and 127.0.2.1, plain and TLS
//! routers), the certificates (minted with `plexus tls init` / `issue`, as
//! docs/tls.md tells users to), and reading a Plexus's admin endpoints afterwards.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procs::{self, Proc};

/// The name in the bench's server certificate, which clients check.
pub(crate) const CERT_NAME: &str = "plexus-bench";

/// The bench's TLS files.
#[derive(Clone, Debug)]
pub(crate) struct Certs {
    /// The CA certificate everyone trusts.
    pub(crate) ca: PathBuf,
    /// The server certificate (DNS name [`CERT_NAME`]) and its PKCS#8 key.
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Certs {
    /// A server's `tls:` block.
    pub(crate) fn server_yaml(&self) -> String {
        format!(
            "{{certPath: {}, keyPath: {}}}",
            self.cert.display(),
            self.key.display()
        )
    }

    /// A client's `tls:` block.
    pub(crate) fn client_yaml(&self) -> String {
        format!(
            "{{commonName: {CERT_NAME}, trustCertsBundle: {}}}",
            self.ca.display()
        )
    }
}

/// Mints a CA and a server certificate in `dir` with `plexus tls`.
pub(crate) fn mint_certs(plexus: &Path, dir: &Path) -> anyhow::Result<Certs> {
    let ca_dir = dir.join("mesh-ca");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(plexus)
            .arg("tls")
            .args(args)
            .output()
            .context("running plexus tls")?;
        if !out.status.success() {
            bail!(
                "plexus tls {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let ca = ca_dir.to_string_lossy().into_owned();
    run(&["init", &ca])?;
    run(&["issue", &ca, CERT_NAME, "--dns", CERT_NAME])?;
    Ok(Certs {
        ca: ca_dir.join("ca.pem"),
        cert: ca_dir.join(format!("{CERT_NAME}.pem")),
        key: ca_dir.join(format!("{CERT_NAME}-key.pk8.pem")),
    })
}

/// How to tell that a freshly started server is ready.
pub(crate) enum Ready {
    /// `GET /` over HTTP/1.1 answers 200.
    Http(SocketAddr),
    /// A gRPC call answers `grpc-status: 0`.
    Grpc(SocketAddr),
    /// The port accepts connections (a TLS server; the load run checks the answers).
    Listening(SocketAddr),
    /// A Thrift `greet` call is answered.
    Thrift(SocketAddr),
}

/// Waits until `proc` is ready as `ready` says.
pub(crate) fn wait(proc: &mut Proc, ready: &Ready) -> anyhow::Result<()> {
    match *ready {
        Ready::Http(addr) => procs::wait_ready_at(proc, addr),
        Ready::Grpc(addr) => crate::grpc::wait_ok(proc, addr).map(|_| ()),
        Ready::Thrift(addr) => crate::thrift::wait_ok(proc, addr),
        Ready::Listening(addr) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                proc.check_alive()?;
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            bail!(
                "{} is not listening on {addr}; end of its log:\n{}",
                proc.name(),
                proc.log_tail(20)
            )
        }
    }
}

/// A started Plexus: its process and admin address.
pub(crate) struct Plexus {
    pub(crate) proc: Proc,
    pub(crate) admin: SocketAddr,
}

/// Starts Plexus with the config `body` (everything but `admin:`) and an admin server
/// on `ip`, pinned to `cpu`, in its own directory `dir/<name>`; waits until `ready`.
pub(crate) fn start_plexus(
    bin: &Path,
    name: &str,
    ip: &str,
    body: &str,
    cpu: Option<usize>,
    dir: &Path,
    ready: &Ready,
) -> anyhow::Result<Plexus> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let admin: SocketAddr = format!("{ip}:{}", procs::free_port()?).parse()?;
    let config = format!("admin: {{ip: {ip}, port: {}}}\n{body}", admin.port());
    let path = dir.join("plexus.yaml");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg(&path);
    let mut proc = Proc::spawn(name, &cmd, cpu, &dir.join("plexus.log"), None)?;
    wait(&mut proc, ready)?;
    Ok(Plexus { proc, admin })
}

/// Starts nghttpx (Debian `nghttp2-proxy`), a reverse proxy written in C on the same
/// HTTP/2 library as h2load, as a plain HTTP/2 proxy from `addr` to the gRPC server at
/// `backend`: one process, one thread, no `Via`, no access log. It does no routing,
/// naming, metrics or retries, so it shows what proxying alone costs the server and the
/// throughput in the same layout.
pub(crate) fn start_nghttpx(
    name: &str,
    addr: SocketAddr,
    backend: SocketAddr,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new("nghttpx");
    cmd.arg(format!("--frontend={},{};no-tls", addr.ip(), addr.port()))
        .arg(format!(
            "--backend={},{};;proto=h2",
            backend.ip(),
            backend.port()
        ))
        .args([
            "--single-process",
            "--single-thread",
            "--workers=1",
            "--no-via",
            "--accesslog-file=/dev/null",
            "--conf=/dev/null",
        ])
        .arg(format!(
            "--errorlog-file={}",
            dir.join(format!("{name}.log")).display()
        ));
    let mut proc = Proc::spawn(name, &cmd, cpu, &dir.join(format!("{name}.out")), None)?;
    wait(&mut proc, &Ready::Grpc(addr))?;
    Ok(proc)
}

/// Starts `helloworld -protocol grpc -text world` on `addr`, pinned to `cpu`.
pub(crate) fn start_world(
    bin: &Path,
    name: &str,
    addr: SocketAddr,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args(["-protocol", "grpc", "-text", "world"])
        .arg(format!("-addr={addr}"));
    let mut proc = Proc::spawn(name, &cmd, cpu, &dir.join(format!("{name}.log")), None)?;
    wait(&mut proc, &Ready::Grpc(addr))?;
    Ok(proc)
}

/// Starts `helloworld -protocol thrift -text world` on `addr`, pinned to `cpu`.
pub(crate) fn start_thrift_world(
    bin: &Path,
    addr: SocketAddr,
    cpu: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args(["-protocol", "thrift", "-text", "world"])
        .arg(format!("-addr={addr}"));
    let mut proc = Proc::spawn(
        "thrift-world",
        &cmd,
        cpu,
        &dir.join("thrift-world.log"),
        None,
    )?;
    wait(&mut proc, &Ready::Thrift(addr))?;
    Ok(proc)
}

/// `GET <path>` on `addr` (HTTP/1.1, connection closed after), the body as text.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no response head")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The payload of a chunked body (enough for the admin's JSON).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// A Plexus's `/admin/metrics.json` as a flat map.
pub(crate) fn metrics(admin: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let text = http_get(admin, "/admin/metrics.json")?;
    serde_json::from_str(&text).context("parsing /admin/metrics.json")
}

/// The value of one metric (0 when absent).
pub(crate) fn metric(m: &serde_json::Value, key: &str) -> f64 {
    m.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

/// Checks of the chunked-body reader, run by `cargo test --benches`.
pub(crate) fn self_check() {
    assert_eq!(
        dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "hello world"
    );
    assert_eq!(dechunk("3\r\n{}\n\r\n0\r\n\r\n"), "{}\n");
    assert_eq!(dechunk("zz\r\n"), "");
}
