//! The plain-HTTP health listener: `/health` (the process is up) and `/ready` (it can take
//! traffic), on a separate port bound to loopback by default, so probes need no certificate.

use crate::error::{Error, ErrorKind, Result};
use crate::server::{json_response, Body};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Why the process cannot take traffic, or `None` when it can.
pub type ReadinessCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

pub struct HealthServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl HealthServer {
    pub async fn start(host: &str, port: u16, readiness: ReadinessCheck) -> Result<HealthServer> {
        let listener = crate::server::bind(host, port).await.map_err(|e| {
            Error::new(ErrorKind::AddressInUse, format!("health listener: {}; set TOOLMESH_HEALTH_PORT (0 = any free port, 'off' = none)", e.message()))
        })?;
        let local_addr = listener.local_addr().map_err(|e| Error::new(ErrorKind::AddressInUse, e.to_string()))?;
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let readiness = readiness.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let response = answer(req.method(), req.uri().path(), &readiness);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
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

fn answer(method: &Method, path: &str, readiness: &ReadinessCheck) -> http::Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"status": "error", "reason": "use GET"}));
    }
    match path {
        "/health" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        "/ready" => match readiness() {
            None => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Some(reason) => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "not_ready", "reason": reason})),
        },
        _ => json_response(StatusCode::NOT_FOUND, &json!({"status": "error", "reason": "the health endpoints are /health and /ready"})),
    }
}
