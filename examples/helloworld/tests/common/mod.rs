//! Helpers shared by the end-to-end tests of the `helloworld` binaries:
//! starting a service on a kernel-chosen 127.0.0.1 port (read back from its
//! startup line), running `helloworld-client`, and plain HTTP/1.1 over std
//! sockets. Every wait is bounded: on the startup line, on the end of the
//! process's stderr, on socket timeouts, or on the client's `-timeout`.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any single wait in these tests may take.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A running `helloworld` process, killed when dropped.
pub(crate) struct Proc {
    child: Child,
    lines: Receiver<String>,
    stderr: Vec<String>,
}

impl Proc {
    /// Starts the binary with exactly these arguments and environment.
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_helloworld"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start helloworld");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// Starts a service on a free 127.0.0.1 port and returns it once its
    /// startup line names the bound address.
    pub(crate) fn serve(args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
        let mut all = vec!["-addr=127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut proc = Proc::spawn(&all, env);
        let deadline = Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match proc.lines.recv_timeout(remaining) {
                Ok(line) => {
                    proc.stderr.push(line.clone());
                    if let Some(rest) = line.strip_prefix("helloworld listening on ") {
                        let addr = rest
                            .split_whitespace()
                            .next()
                            .and_then(|a| a.parse().ok())
                            .unwrap_or_else(|| panic!("no address in {line:?}"));
                        return (proc, addr);
                    }
                }
                Err(error) => panic!("no startup line ({error:?}); stderr: {:?}", proc.stderr),
            }
        }
    }

    /// Waits (bounded) for the process to close stderr and exit; returns its
    /// status and everything it printed on stderr.
    pub(crate) fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => self.stderr.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("process did not exit; stderr: {:?}", self.stderr)
                }
            }
        }
        let status = self.child.wait().expect("wait for helloworld");
        (status, self.stderr.join("\n"))
    }

    /// Sends a signal with the system `kill` command.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// Opens a connection with bounded timeouts.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

/// Writes one request on `stream` and reads its answer (by Content-Length).
pub(crate) fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    close: bool,
) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");

    let head = read_head(stream);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut content_type = String::new();
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_owned(),
            "content-length" => length = value.trim().parse().expect("content-length"),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("read body");
    Reply {
        status,
        content_type,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

/// Reads up to and including the blank line that ends an HTTP head.
pub(crate) fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert!(n == 1, "connection closed mid-head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("utf-8 head")
}

/// One request on a fresh connection.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    exchange(&mut connect(addr), method, path, headers, true)
}

pub(crate) fn get(addr: SocketAddr) -> Reply {
    request(addr, "GET", "/", &[])
}

/// A 127.0.0.1 port that nothing listens on (bound, then released).
pub(crate) fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// What a finished `helloworld-client` run printed.
#[derive(Debug)]
pub(crate) struct ClientRun {
    /// The exit code (`None` if killed by a signal).
    pub(crate) code: Option<i32>,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

/// Runs `helloworld-client` with these arguments, bounded by its own
/// `-timeout` (set to [`WAIT`] before the given arguments, which may
/// override it).
pub(crate) fn client(args: &[&str]) -> ClientRun {
    let timeout = format!("-timeout={}s", WAIT.as_secs());
    let output = Command::new(env!("CARGO_BIN_EXE_helloworld-client"))
        .arg(&timeout)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run helloworld-client");
    ClientRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
