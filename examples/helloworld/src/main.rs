//! The `helloworld` demo service of the Plexus tutorials, an HTTP rewrite of
//! the `buoyantio/helloworld` image used with Linkerd 1.x.
//!
//! It answers every request with its text (`-text`, or `$TARGET_WORLD`),
//! followed by ` (<$POD_IP>)` when set, then — if `-target` names another
//! instance — that instance's answer, and `!`. Chaining a `hello` to a
//! `world` through the mesh gives `Hello (10.0.1.5) world (10.0.2.7)!!`.
//! Latency and failures can be injected with flags or at run time through
//! `POST /setLatency?latency=<duration>` and
//! `POST /setFailureRate?failureRate=<0..1>`.

mod duration;
mod flags;
mod handler;
mod settings;
mod upstream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::flags::{FlagError, Flags, Protocol, USAGE};
use crate::handler::App;
use crate::settings::Settings;
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
    if flags.protocol == Protocol::Grpc {
        eprintln!("grpc is not supported by this build yet");
        return ExitCode::from(2);
    }
    let app = match build_app(&flags) {
        Ok(app) => Arc::new(app),
        Err(message) => {
            eprintln!("helloworld: {message}");
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
    match runtime.block_on(serve(flags.addr, app)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("helloworld: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Applies the environment (`TARGET_WORLD`, `POD_IP`, `http_proxy`) to the
/// flags.
fn build_app(flags: &Flags) -> Result<App, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut text = env("TARGET_WORLD").unwrap_or_else(|| flags.text.clone());
    if let Some(ip) = env("POD_IP") {
        text = format!("{text} ({ip})");
    }
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

/// Serves until SIGTERM or SIGINT, then lets open connections finish for up
/// to [`SHUTDOWN_GRACE`].
async fn serve(addr: SocketAddr, app: Arc<App>) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    eprintln!(
        "helloworld listening on {bound} (text {:?}, target {:?}, latency {:?}, failure rate {}, json {})",
        app.text,
        app.upstream
            .as_ref()
            .map_or_else(String::new, |u| u.url().to_string()),
        app.settings.latency(),
        app.settings.failure_rate(),
        app.json,
    );

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
        let app = app.clone();
        let mut stop_rx = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
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
