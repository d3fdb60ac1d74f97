//! The plain-HTTP health listener: `/health` (the process is up), `/ready` (it can take
//! traffic) and `/metrics` (Prometheus text), on a separate port bound to loopback by default,
//! so probes and scrapes need no certificate; and whatever further pages its owner adds (the
//! registry's dashboard), which decide themselves whom they answer.

use crate::error::{Error, ErrorKind, Result};
use crate::server::activity::{Activity, Lifetime, Watched};
use crate::server::admission::{Admission, RateLimitedWarning};
use crate::server::linger::LingeringClose;
use crate::server::{json_response, Body, ServerLimits};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long to wait after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one warning per this interval about refused connections.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Why the process cannot take traffic, or `None` when it can.
pub type ReadinessCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The process's metrics in the Prometheus text exposition format ([`crate::metrics`]).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Further pages: the answer to a request for one of them (given the request's head and where
/// it came from), `None` for a path that is not one of them.
pub type Pages = Arc<dyn Fn(&http::request::Parts, SocketAddr) -> Option<http::Response<Body>> + Send + Sync>;

/// What the health listener answers from: readiness, metrics (`None`: turned off) and further
/// pages (`None`: none).
#[derive(Clone)]
pub struct Probes {
    pub readiness: ReadinessCheck,
    pub metrics: Option<MetricsRender>,
    pub pages: Option<Pages>,
}

pub struct HealthServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

/// The health port takes at most this many connections (probes and scrapes need few), and
/// otherwise the timeouts of the listener it reports on.
pub const HEALTH_MAX_CONNECTIONS: usize = 64;

impl HealthServer {
    /// Serves `/health`, `/ready` and `/metrics` with the default connection limits.
    pub async fn start(host: &str, port: u16, probes: Probes) -> Result<HealthServer> {
        Self::start_limited(host, port, probes, &ServerLimits::default()).await
    }

    /// Serves with `limits`' timeouts, and at most [`HEALTH_MAX_CONNECTIONS`] connections.
    pub async fn start_limited(host: &str, port: u16, probes: Probes, limits: &ServerLimits) -> Result<HealthServer> {
        let listener = crate::server::bind(host, port).await.map_err(|e| {
            Error::new(
                ErrorKind::AddressInUse,
                format!("health listener: {}; set TOOLMESH_HEALTH_PORT (0 = any free port, 'off' = none)", e.message()),
            )
        })?;
        let local_addr = listener.local_addr().map_err(|e| Error::new(ErrorKind::AddressInUse, e.to_string()))?;
        let mut limits = limits.clone();
        limits.max_connections = limits.max_connections.min(HEALTH_MAX_CONNECTIONS);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::new(limits), probes, stopped));
        Ok(HealthServer { local_addr, stop })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(listener: TcpListener, limits: Arc<ServerLimits>, probes: Probes, mut stopped: watch::Receiver<bool>) {
    let admission = Admission::new(limits.max_connections, limits.per_peer());
    let refused_warning = RateLimitedWarning::new(WARNING_INTERVAL);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors (EMFILE) most likely: pause instead of spinning.
                    tracing::debug!("health listener: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let slot = match admission.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                refused_warning.warn(|held_back| tracing::warn!(%remote, held_back, "health listener: refused a connection ({refused:?})"));
                continue;
            }
        };
        let (limits, probes) = (limits.clone(), probes.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let activity = Activity::new(true, &limits);
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let _in_flight = activity.request_started();
                    let (head, _body) = req.into_parts();
                    let response = answer(&head, remote, &probes);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                })
            };
            let io = TokioIo::new(Watched::new(LingeringClose::new(stream), activity.clone()));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::pin!(conn);
            let lifetime = Lifetime { activity: &activity, expiry: None, remote, stopped: None };
            lifetime.supervise(conn, |conn| conn.graceful_shutdown()).await;
        });
    }
}

fn answer(head: &http::request::Parts, remote: SocketAddr, probes: &Probes) -> http::Response<Body> {
    if head.method != Method::GET && head.method != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"status": "error", "reason": "use GET"}));
    }
    if let Some(page) = probes.pages.as_ref().and_then(|pages| pages(head, remote)) {
        return page;
    }
    match head.uri.path() {
        "/health" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        "/ready" => match (probes.readiness)() {
            None => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Some(reason) => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "not_ready", "reason": reason})),
        },
        "/metrics" => match &probes.metrics {
            Some(render) => http::Response::builder()
                .header(http::header::CONTENT_TYPE, http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE))
                .body(Body::from(render()))
                .expect("static response parts are valid"),
            None => json_response(
                StatusCode::NOT_FOUND,
                &json!({"status": "error", "reason": "metrics are turned off: set TOOLMESH_METRICS=on (the default) to serve them"}),
            ),
        },
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"status": "error", "reason": "the health endpoints are /health, /ready and /metrics"}),
        ),
    }
}
