//! A small blocking WebDriver client: enough of the W3C protocol (sessions, navigation,
//! elements, scripts, screenshots, logs) to drive chromedriver from a test.
//!
//! WebDriver is JSON over HTTP/1.1 on loopback; one request per connection keeps the
//! client a page of std code instead of an async stack and a crate with its own build
//! cost. Every call fails with the driver's own error message.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Proc, free_port, listening, wait_for};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The first of `names` found as a file or on `PATH`; the test fails, naming what to
/// install, when none is.
pub(crate) fn program(names: &[&str], package: &str) -> PathBuf {
    for name in names {
        let p = Path::new(name);
        if p.is_absolute() && p.is_file() {
            return p.to_path_buf();
        }
        if !p.is_absolute()
            && let Some(paths) = std::env::var_os("PATH")
        {
            for dir in std::env::split_paths(&paths) {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return candidate;
                }
            }
        }
    }
    panic!(
        "none of {names:?} is installed: the dashboard test needs the Debian package \
         {package} (scripts/test.sh installs it)"
    );
}

/// A running chromedriver.
pub(crate) struct Driver {
    addr: SocketAddr,
    _proc: Proc,
}

impl Driver {
    /// Starts chromedriver on a free loopback port, logging to `dir`.
    pub(crate) fn start(dir: &Path) -> Driver {
        let bin = program(
            &["chromedriver", "/usr/lib/chromium/chromedriver"],
            "chromium-driver",
        );
        let port = free_port();
        let proc = Proc::spawn(
            Command::new(bin)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg(format!(
                    "--log-path={}",
                    dir.join("chromedriver.log").display()
                )),
            dir.join("chromedriver.out"),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_for("chromedriver to listen", || listening(addr));
        Driver { addr, _proc: proc }
    }

    /// Sends one command; the `value` of the answer, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .map_err(|e| format!("connect to chromedriver: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(body.as_bytes()))
            .map_err(|e| format!("send to chromedriver: {e}"))?;
        // chromedriver keeps connections open whatever the request says: read until the
        // response is complete by its own framing.
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let (status, payload) = loop {
            let n = s
                .read(&mut buf)
                .map_err(|e| format!("read from chromedriver: {e}"))?;
            raw.extend_from_slice(&buf[..n]);
            match parse_response(&raw, n == 0) {
                Ok(Some(done)) => break done,
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        };
        let v: Value = serde_json::from_slice(&payload).map_err(|e| {
            format!(
                "chromedriver answered {status} with no JSON ({e}): {}",
                String::from_utf8_lossy(&payload)
            )
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 || value.get("error").is_some_and(|e| !e.is_null()) {
            return Err(format!(
                "{method} {path}: {} {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            ));
        }
        Ok(value)
    }

    /// Opens a headless Chromium with a fresh profile in `profile` and the given window
    /// size.
    pub(crate) fn session(&self, profile: &Path, width: u32, height: u32) -> Session<'_> {
        let chromium = program(&["/usr/lib/chromium/chromium", "chromium"], "chromium");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--hide-scrollbars".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = self
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        Session { driver: self, id }
    }
}

impl Drop for Driver {
    /// Asks chromedriver to close every browser it started before the process is
    /// killed: a killed chromedriver would leave its Chromium running.
    fn drop(&mut self) {
        let _ = self.call("GET", "/shutdown", None);
    }
}

/// Splits an HTTP/1.1 response into its status and body, framed by `Content-Length`,
/// chunks, or (`eof`) the end of the connection. `None`: more bytes are needed.
fn parse_response(raw: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, String> {
    let incomplete = |what: &str| {
        if eof {
            Err(format!("chromedriver closed the connection: {what}"))
        } else {
            Ok(None)
        }
    };
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return incomplete("no complete response head");
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
                return incomplete("truncated chunk");
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok(Some((status, out)));
            }
            if rest.len() < size + 2 {
                return incomplete("truncated chunk");
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < len {
            return incomplete(&format!("body of {} bytes, {len} announced", body.len()));
        }
        return Ok(Some((status, body[..len].to_vec())));
    }
    if eof {
        Ok(Some((status, body.to_vec())))
    } else {
        Ok(None)
    }
}

/// A browser session; closed (and its Chromium stopped) when dropped.
pub(crate) struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

/// A reference to an element of the current page.
pub(crate) struct Element(String);

impl Session<'_> {
    fn cmd(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{rest}", self.id);
        self.driver
            .call(method, &path, body.as_ref())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Navigates and waits for the page to load.
    pub(crate) fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub(crate) fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The first element matching a CSS selector.
    pub(crate) fn find(&self, css: &str) -> Element {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        Element(
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element reference in {v}"))
                .to_string(),
        )
    }

    /// Clicks an element as a user would.
    pub(crate) fn click(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/click", el.0), Some(json!({})));
    }

    /// Empties an input.
    pub(crate) fn clear(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/clear", el.0), Some(json!({})));
    }

    /// Types `text` into an element (`\u{E007}` is the Enter key).
    pub(crate) fn type_text(&self, el: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        );
    }

    /// Resizes the browser window.
    pub(crate) fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A PNG of the viewport.
    pub(crate) fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(v.as_str().unwrap_or_default()).expect("screenshot is base64");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "screenshot is no PNG"
        );
        png
    }

    /// The browser console's entries since the last call: `(level, message)`.
    pub(crate) fn console(&self) -> Vec<(String, String)> {
        let v = self.cmd("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

/// Standard base64 (with padding), as WebDriver encodes screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for quad in bytes.chunks(4) {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | u32::from(value(c)?);
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

#[test]
fn base64_round_trips_known_values() {
    assert_eq!(base64_decode("").unwrap(), b"");
    assert_eq!(base64_decode("Zg==").unwrap(), b"f");
    assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
    assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
    assert_eq!(base64_decode("Zm9vYmFy\n").unwrap(), b"foobar");
    assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
    assert!(base64_decode("Zm9").is_none());
    assert!(base64_decode("Zm9*").is_none());
}

#[test]
fn responses_are_framed_by_length_or_chunks() {
    let ok = |raw: &[u8], eof| parse_response(raw, eof).unwrap().unwrap();
    let (s, b) = ok(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra",
        false,
    );
    assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
    let (s, b) = ok(
        b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        false,
    );
    assert_eq!((s, b.as_slice()), (404, &b"{\"a\":1}"[..]));
    let (s, b) = ok(b"HTTP/1.1 200 OK\r\n\r\n{}", true);
    assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
    // Not yet complete: wait for more, unless the connection ended.
    for partial in [
        &b"HTTP/1.1 200 OK\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{",
        b"HTTP/1.1 200 OK\r\n\r\n{}",
    ] {
        assert_eq!(parse_response(partial, false), Ok(None));
    }
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", true).is_err());
    assert!(parse_response(b"nonsense\r\n\r\n", false).is_err());
}
