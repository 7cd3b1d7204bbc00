//! Mux sessions to Plexus peers: the Thrift → ThriftMux upgrade, client side.
//!
//! A client with `peerUpgrades: [mux]` sends its calls to an endpoint that speaks Mux
//! over one session per (endpoint, worker), many calls in flight at once, instead of a
//! pool of serial Thrift connections. The session is a [`plexus_mux::ClientSession`]
//! driven by one task that owns the socket; callers hand it Tdispatches through a
//! channel and get the Rdispatch back on a oneshot.
//!
//! Whether an endpoint speaks Mux is learned by trying: the session opens with Mux's
//! handshake probe, and an endpoint that does not answer it within
//! [`MUX_HANDSHAKE_TIMEOUT`] (a plain Thrift
//! server closes the connection or waits for more bytes) is remembered as plain for a
//! while (see [`crate::router::peer`]) and gets plain Thrift, exactly what the
//! application sent.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use plexus_mux::{ClientEvent, ClientSession, Request, Response, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::router::client::{Dial, open};
use crate::router::error::{ErrorKind, ProxyError};

/// How long a Mux handshake (or the detection that a peer does not speak Mux) may take.
pub const MUX_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a dispatched call came to.
pub type Answer = Result<Response, plexus_mux::session::RequestError>;

enum Command {
    /// A call, known to its caller by a number of its own (the tag is the session's).
    Dispatch(u64, Request, oneshot::Sender<Answer>),
    /// The caller of call number N went away before the reply: discard it.
    Cancel(u64),
}

/// A handle on one open session.
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    /// Set by the driver when the session ends or drains: new calls go elsewhere.
    closed: Rc<Cell<bool>>,
    /// Numbers calls for [`Command::Cancel`].
    next_call: Cell<u64>,
}

/// Discards a call whose caller stopped waiting (a timeout, or its client went away), so
/// the peer stops working on it.
struct CancelOnDrop<'a> {
    commands: &'a mpsc::UnboundedSender<Command>,
    call: u64,
    answered: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.commands.send(Command::Cancel(self.call));
        }
    }
}

impl Session {
    fn usable(&self) -> bool {
        !self.closed.get() && !self.commands.is_closed()
    }

    /// Sends a call and waits for its reply. `Err(())`: the session was gone before the
    /// call was queued (never sent). Dropping the future discards the call (Tdiscarded).
    pub async fn dispatch(&self, request: Request) -> Result<Answer, ()> {
        let call = self.next_call.get();
        self.next_call.set(call.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Dispatch(call, request, tx))
            .map_err(|_| ())?;
        let mut guard = CancelOnDrop {
            commands: &self.commands,
            call,
            answered: false,
        };
        let answer = rx.await;
        guard.answered = true;
        answer.map_err(|_| ())
    }
}

type Key = (SocketAddr, Option<Arc<str>>);

thread_local! {
    static SESSIONS: RefCell<HashMap<Key, Rc<Session>>> = RefCell::new(HashMap::new());
    /// Sessions being opened: later callers wait for the first one's handshake instead
    /// of opening sessions of their own.
    static OPENING: RefCell<HashMap<Key, watch::Receiver<bool>>> = RefCell::new(HashMap::new());
}

fn key(dial: &Dial<'_>) -> Key {
    let tls = dial.tls.map(|t| {
        t.server_name
            .clone()
            .unwrap_or_else(|| Arc::from(dial.addr.ip().to_string()))
    });
    (dial.addr, tls)
}

/// Why no session could be had.
pub enum OpenError {
    /// The endpoint could not be reached at all.
    Connect(ProxyError),
    /// The endpoint does not speak Mux (or not well enough): use plain Thrift.
    NotMux(String),
}

/// This worker's session to the endpoint, opened (handshake included) if there is none.
pub async fn session(dial: &Dial<'_>) -> Result<Rc<Session>, OpenError> {
    let key = key(dial);
    loop {
        if let Some(s) = SESSIONS.with(|s| s.borrow().get(&key).cloned())
            && s.usable()
        {
            return Ok(s);
        }
        let Some(mut opening) = OPENING.with(|o| o.borrow().get(&key).cloned()) else {
            break;
        };
        // Another call is opening this session: use it once it is open (or, if that
        // failed, try again).
        let _ = opening.wait_for(|done| *done).await;
        if !SESSIONS.with(|s| s.borrow().get(&key).is_some_and(|s| s.usable())) {
            break;
        }
    }
    let (opened, rx) = watch::channel(false);
    OPENING.with(|o| o.borrow_mut().insert(key.clone(), rx));
    let result = open_session(dial, key.clone()).await;
    OPENING.with(|o| o.borrow_mut().remove(&key));
    opened.send_replace(true);
    result
}

async fn open_session(dial: &Dial<'_>, key: Key) -> Result<Rc<Session>, OpenError> {
    let io = open(dial, false).await.map_err(OpenError::Connect)?;
    let (commands, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let closed = Rc::new(Cell::new(false));
    let config = SessionConfig {
        ping_interval: Some(std::time::Duration::from_secs(5)),
        ping_timeout: Some(std::time::Duration::from_secs(4)),
        ..SessionConfig::default()
    };
    let session = ClientSession::new(config, Instant::now());
    let addr = dial.addr;
    tokio::task::spawn_local(drive(addr, io, session, rx, ready_tx, closed.clone()));
    match tokio::time::timeout(MUX_HANDSHAKE_TIMEOUT, ready_rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(why))) => return Err(OpenError::NotMux(why)),
        Ok(Err(_)) => return Err(OpenError::NotMux("the session ended".into())),
        Err(_) => {
            closed.set(true);
            return Err(OpenError::NotMux(format!(
                "no answer to the mux handshake within {MUX_HANDSHAKE_TIMEOUT:?}"
            )));
        }
    }
    let s = Rc::new(Session {
        commands,
        closed,
        next_call: Cell::new(0),
    });
    SESSIONS.with(|m| m.borrow_mut().insert(key, s.clone()));
    Ok(s)
}

/// Runs one session: reads, writes, timers, and the callers' calls.
async fn drive(
    addr: SocketAddr,
    io: Box<dyn crate::router::client::Io>,
    mut session: ClientSession,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: oneshot::Sender<Result<(), String>>,
    closed: Rc<Cell<bool>>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut ready = Some(ready);
    let mut pending: HashMap<u32, (u64, oneshot::Sender<Answer>)> = HashMap::new();
    let mut tags: HashMap<u64, u32> = HashMap::new();
    let mut out = BytesMut::new();
    let mut inbuf = BytesMut::with_capacity(16 << 10);
    let mut accepting = true;
    let end = |why: String, ready: &mut Option<oneshot::Sender<Result<(), String>>>| {
        if let Some(r) = ready.take() {
            let _ = r.send(Err(why));
        }
    };
    loop {
        while session.poll_transmit(&mut out) {}
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Ready(n) => {
                    tracing::debug!(endpoint = %addr, handshake = n.handshake, "mux session open");
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                ClientEvent::Response { tag, response } => {
                    if let Some((call, tx)) = pending.remove(&tag) {
                        tags.remove(&call);
                        let _ = tx.send(Ok(response));
                    }
                }
                ClientEvent::RequestFailed { tag, error } => {
                    if let Some((call, tx)) = pending.remove(&tag) {
                        tags.remove(&call);
                        let _ = tx.send(Err(error));
                    }
                }
                ClientEvent::Draining => {
                    closed.set(true);
                    accepting = false;
                }
                ClientEvent::StartTls { .. } => {
                    // Plexus never offers opportunistic TLS (its `tls` header says off);
                    // a server that starts it anyway is not speaking our session.
                    closed.set(true);
                    end("the peer asked for opportunistic TLS".into(), &mut ready);
                    return;
                }
                ClientEvent::Finished => {
                    closed.set(true);
                    end("the session ended".into(), &mut ready);
                    let _ = wr.write_all(&out).await;
                    return;
                }
                ClientEvent::Failed(e) => {
                    closed.set(true);
                    tracing::debug!(endpoint = %addr, error = %e, "mux session failed");
                    end(e.to_string(), &mut ready);
                    return;
                }
                ClientEvent::Pong { .. } | ClientEvent::Lease { .. } => {}
            }
        }
        let timeout = session.poll_timeout();
        tokio::select! {
            read = rd.read_buf(&mut inbuf) => match read {
                Ok(0) | Err(_) => session.receive_eof(Instant::now()),
                Ok(_) => {
                    session.receive(&inbuf, Instant::now());
                    inbuf.clear();
                }
            },
            written = wr.write_buf(&mut out), if !out.is_empty() => {
                if let Err(e) = written {
                    tracing::debug!(endpoint = %addr, error = %e, "mux session write failed");
                    session.receive_eof(Instant::now());
                }
            }
            command = commands.recv(), if accepting => match command {
                Some(Command::Cancel(call)) => {
                    if let Some(tag) = tags.remove(&call) {
                        pending.remove(&tag);
                        // The tag is freed when the peer answers the Tdiscarded.
                        session.discard(tag, "the caller went away");
                    }
                }
                Some(Command::Dispatch(call, request, reply)) => match session.dispatch(request) {
                    Ok(tag) => {
                        pending.insert(tag, (call, reply));
                        tags.insert(call, tag);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(plexus_mux::session::RequestError::NotSent(
                            if e.is_retryable() { "the mux session cannot take it" } else { "the call cannot be encoded for mux" },
                        )));
                    }
                },
                // Every handle is gone: nothing more will be asked.
                None => accepting = false,
            },
            () = sleep_until(timeout), if timeout.is_some() => session.handle_timeout(Instant::now()),
        }
        if !accepting && pending.is_empty() && out.is_empty() {
            closed.set(true);
            return;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A Mux-level failure as a routing error.
pub fn request_error(addr: SocketAddr, e: &plexus_mux::session::RequestError) -> ProxyError {
    ProxyError::new(ErrorKind::Upstream, format!("{addr} (mux): {e}"))
}
