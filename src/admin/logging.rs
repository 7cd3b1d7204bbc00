//! Logging set-up and `/logging.json`: the log level can be read and changed at run
//! time, for debugging a live proxy without a restart.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// Changes the level of the installed logger.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    level: std::sync::Mutex<String>,
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Installs the process logger (stderr; `RUST_LOG` or `default` as the filter, with the
/// Kubernetes client's own duplicate error lines off unless named). Calling it again
/// does nothing.
pub fn init_logging(default: &str) {
    let mut level = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    // The Kubernetes client logs every failed connection attempt on its own; the watches
    // report the same failures with their namespace and resource, once each. Silence the
    // duplicate unless the filter asks for the client by name.
    if !level.contains("kube_client") {
        level.push_str(",kube_client=off");
    }
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
    if installed.is_ok() {
        let _ = CONTROL.set(LogControl {
            handle,
            level: std::sync::Mutex::new(level),
        });
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(v.to_string())));
    *rsp.status_mut() = status;
    rsp
}

/// `GET` → `[{"logger":"root","level":"INFO"}]`; `POST ?logger=root&level=DEBUG` sets it.
pub(super) fn handle<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let Some(control) = CONTROL.get() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "logging is not managed by this process"}),
        );
    };
    if req.method() == Method::POST {
        let params = super::query_params(req.uri().query());
        let level = params
            .get("level")
            .map(|l| l.to_ascii_lowercase())
            .unwrap_or_default();
        if params.get("logger").is_some_and(|l| l != "root") {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "only the root logger can be set"}),
            );
        }
        let Ok(filter) = EnvFilter::try_new(&level) else {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("bad level {level:?}")}),
            );
        };
        if level.is_empty() || control.handle.reload(filter).is_err() {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "level is required (trace, debug, info, warn, error)"}),
            );
        }
        if let Ok(mut l) = control.level.lock() {
            *l = level;
        }
    }
    let level = control
        .level
        .lock()
        .map(|l| l.to_ascii_uppercase())
        .unwrap_or_default();
    json(StatusCode::OK, &json!([{"logger": "root", "level": level}]))
}
