//! The `helloworld` demo service of the Plexus tutorials, a rewrite of the
//! `buoyantio/helloworld` image used with Linkerd 1.x.
//!
//! It answers every request with its text (`-text`, or `$TARGET_WORLD`),
//! followed by ` (<$POD_IP>)` when set, then — if `-target` names another
//! instance — that instance's answer, and `!`. Chaining a `hello` to a
//! `world` through the mesh gives `Hello (10.0.1.5) world (10.0.2.7)!!`.
//! Latency and failures can be injected with flags or at run time through
//! `POST /setLatency?latency=<duration>` and
//! `POST /setFailureRate?failureRate=<0..1>`. It speaks HTTP/1.1 by default,
//! gRPC with `-protocol grpc` (see the `grpc_server` module) and Thrift with
//! `-protocol thrift` (see the `thrift_server` module).

mod flags;
mod grpc_server;
mod grpc_upstream;
mod handler;
mod settings;
mod thrift_server;
mod thrift_upstream;
mod upstream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::flags::{FlagError, Flags, Protocol, USAGE};
use crate::grpc_server::GrpcApp;
use crate::handler::App;
use crate::settings::Settings;
use crate::thrift_server::ThriftApp;
use crate::thrift_upstream::GreeterUpstream;
use crate::upstream::{Proxy, Target, Upstream};

/// How long open connections get to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let flags = match flags::parse(std::env::args().skip(1)) {
        Ok(flags) => flags,
        Err(FlagError::Help) => {
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(FlagError::Invalid(message)) => {
            eprintln!("{message}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("helloworld: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = match flags.protocol {
        Protocol::Http => match build_app(&flags) {
            Ok(app) => runtime.block_on(serve_http(flags.addr, Arc::new(app))),
            Err(message) => {
                eprintln!("helloworld: {message}");
                return ExitCode::from(2);
            }
        },
        // The gRPC channel to the target needs the runtime to exist.
        Protocol::Grpc => match runtime.block_on(async { build_grpc_app(&flags) }) {
            Ok(app) => runtime.block_on(serve_grpc(flags.addr, Arc::new(app))),
            Err(message) => {
                eprintln!("helloworld: {message}");
                return ExitCode::from(2);
            }
        },
        Protocol::Thrift => match build_thrift_app(&flags) {
            Ok(app) => runtime.block_on(serve_thrift(flags.addr, Arc::new(app))),
            Err(message) => {
                eprintln!("helloworld: {message}");
                return ExitCode::from(2);
            }
        },
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("helloworld: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads an environment variable, treating an empty value as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The text before the ` (<POD_IP>)` suffix: `$TARGET_WORLD` or `-text`.
fn base_text(flags: &Flags) -> String {
    env("TARGET_WORLD").unwrap_or_else(|| flags.text.clone())
}

/// Appends ` (<POD_IP>)` when the variable is set.
fn with_pod_ip(text: String) -> String {
    match env("POD_IP") {
        Some(ip) => format!("{text} ({ip})"),
        None => text,
    }
}

/// Applies the environment (`TARGET_WORLD`, `POD_IP`, `http_proxy`) to the
/// flags.
fn build_app(flags: &Flags) -> Result<App, String> {
    let text = with_pod_ip(base_text(flags));
    let upstream = match &flags.target {
        None => None,
        Some(target) => {
            let target = Target::parse(target).map_err(|e| format!("-target {target:?}: {e}"))?;
            let proxy = env("http_proxy")
                .or_else(|| env("HTTP_PROXY"))
                .map(|value| Proxy::parse(&value).map_err(|e| format!("http_proxy: {e}")))
                .transpose()?;
            Some(Upstream::new(target, proxy))
        }
    };
    Ok(App {
        text,
        json: flags.json,
        settings: Settings::new(flags.latency, flags.failure_rate),
        upstream,
    })
}

/// Applies the environment (`TARGET_WORLD`, `POD_IP`) to the flags for the
/// gRPC mode; must run inside the runtime.
fn build_grpc_app(flags: &Flags) -> Result<GrpcApp, String> {
    let base = base_text(flags);
    let upstream = flags
        .target
        .as_deref()
        .map(|target| {
            grpc_upstream::WorldUpstream::new(target)
                .map_err(|e| format!("-target {target:?}: {e}"))
        })
        .transpose()?;
    Ok(GrpcApp::new(
        &base,
        with_pod_ip(base.clone()),
        Settings::new(flags.latency, flags.failure_rate),
        upstream,
    ))
}

/// Applies the environment (`TARGET_WORLD`, `POD_IP`) to the flags for the
/// Thrift mode.
fn build_thrift_app(flags: &Flags) -> Result<ThriftApp, String> {
    let upstream = flags
        .target
        .as_deref()
        .map(|target| GreeterUpstream::new(target).map_err(|e| format!("-target {target:?}: {e}")))
        .transpose()?;
    Ok(ThriftApp::new(
        with_pod_ip(base_text(flags)),
        Settings::new(flags.latency, flags.failure_rate),
        upstream,
    ))
}

/// Serves HTTP/1.1.
async fn serve_http(addr: SocketAddr, app: Arc<App>) -> Result<(), String> {
    let describe = format!(
        "text {:?}, target {:?}, latency {:?}, failure rate {}, json {}",
        app.text,
        app.upstream
            .as_ref()
            .map_or_else(String::new, |u| u.url().to_string()),
        app.settings.latency(),
        app.settings.failure_rate(),
        app.json,
    );
    serve(addr, describe, move |stream, stop_rx| {
        http1_connection(app.clone(), stream, stop_rx)
    })
    .await
}

/// Serves gRPC (and the control endpoints over HTTP/1.1 or HTTP/2).
async fn serve_grpc(addr: SocketAddr, app: Arc<GrpcApp>) -> Result<(), String> {
    let describe = app.describe();
    serve(addr, describe, move |stream, stop_rx| {
        grpc_server::serve_connection(app.clone(), stream, stop_rx)
    })
    .await
}

/// Serves Thrift (and the control endpoints over HTTP/1.1).
async fn serve_thrift(addr: SocketAddr, app: Arc<ThriftApp>) -> Result<(), String> {
    let describe = app.describe();
    serve(addr, describe, move |stream, stop_rx| {
        thrift_server::serve_connection(app.clone(), stream, stop_rx)
    })
    .await
}

/// One HTTP/1.1 connection, closed gracefully once `stop_rx` changes.
async fn http1_connection(app: Arc<App>, stream: TcpStream, mut stop_rx: watch::Receiver<bool>) {
    let service = service_fn(move |request| handler::handle(app.clone(), request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop_rx.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result
        && !error.is_incomplete_message()
    {
        eprintln!("helloworld: connection error: {error}");
    }
}

/// Accepts connections on `addr` and runs `connection` for each, until
/// SIGTERM or SIGINT; then tells every connection to stop (through the watch
/// channel) and lets them finish for up to [`SHUTDOWN_GRACE`]. The startup
/// line, `helloworld listening on <addr> (<describe>)`, names the bound
/// address.
async fn serve<C, F>(addr: SocketAddr, describe: String, connection: C) -> Result<(), String>
where
    C: Fn(TcpStream, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    eprintln!("helloworld listening on {bound} ({describe})");

    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection task holds a sender; recv() ends once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);

    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off a little.
                    eprintln!("helloworld: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Best effort: a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let task = connection(stream, stop_rx.clone());
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            task.await;
            drop(alive);
        });
    }

    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv())
        .await
        .is_err()
    {
        eprintln!("helloworld: connections still open after {SHUTDOWN_GRACE:?}, exiting anyway");
    }
    eprintln!("helloworld stopped");
    Ok(())
}

/// A future that completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
