//! The live dashboard (docs/dashboard.md): one self-contained read-only page, and the JSON
//! snapshot of the mesh it polls — the agents with their tools, health and certificate expiry,
//! and the call graph of the last window (`calls`); and the recent traces from the trace store
//! (`traces.json`, `traces/{trace_id}.json`, the JSON of `GET /v1/traces`).
//!
//! Who may open it: on the mTLS port, admins (see `http`); on the plain health listener, only a
//! browser on the registry's own machine — a connection from a loopback address whose `Host` is a
//! loopback name, so that neither another machine (when the health listener is bound to a
//! non-loopback address for probes) nor a web page using DNS rebinding reads the topology.

mod calls;

pub use calls::{CallGraph, EdgeStats};

use crate::state::Registry;
use crate::traces::TraceStore;
use http::StatusCode;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toolmesh_core::registry_api::ReportedCalls;
use toolmesh_core::server::{json_response, Body};

/// The page: HTML, CSS and JavaScript in one file, nothing fetched from elsewhere.
const PAGE: &str = include_str!("dashboard/page.html");
/// The shortest window the call graph is shown over (a window is at least six heartbeats).
const MIN_WINDOW: Duration = Duration::from_secs(30);

/// What the dashboard shows, and the calls it learns from heartbeats.
pub struct Dashboard {
    registry: Arc<Registry>,
    calls: CallGraph,
    heartbeat_interval: Duration,
    traces: Arc<TraceStore>,
}

/// Traces `traces.json` lists unless `?last=` says otherwise, and the most it lists.
const TRACES_LISTED: usize = 20;
const MAX_TRACES_LISTED: usize = 1000;

/// `GET /dashboard/state.json`.
#[derive(Serialize)]
struct Snapshot {
    /// When the snapshot was taken, Unix milliseconds.
    time_unix_ms: u64,
    heartbeat_interval_ms: u64,
    /// The window of the edges' numbers, in seconds.
    window_s: u64,
    agents: Vec<AgentRow>,
    edges: Vec<EdgeStats>,
}

#[derive(Serialize)]
struct AgentRow {
    agent_id: String,
    name: String,
    /// The certificate's identity: its SPIFFE ID (URI SAN), else its subject CN.
    identity: String,
    /// The entity whose CA the certificate chains to; null for the mesh's own CA.
    entity: Option<String>,
    endpoint: String,
    /// `healthy`, `stale` or `unreachable`.
    health: String,
    /// Milliseconds since the agent's last heartbeat.
    last_heartbeat_ms: u64,
    /// When the certificate the agent presents to the registry expires, Unix seconds.
    certificate_not_after: Option<i64>,
    tools: Vec<ToolRow>,
}

#[derive(Serialize)]
struct ToolRow {
    name: String,
    capability: String,
    version: String,
}

impl Dashboard {
    pub fn new(registry: Arc<Registry>, heartbeat_interval: Duration, traces: Arc<TraceStore>) -> Self {
        let window = (heartbeat_interval * 6).max(MIN_WINDOW);
        Dashboard { registry, calls: CallGraph::new(window, heartbeat_interval), heartbeat_interval, traces }
    }

    /// Takes the calls the agent `from` reported with its heartbeat.
    pub fn record_calls(&self, from: &str, calls: &[ReportedCalls]) {
        if calls.is_empty() {
            return;
        }
        let registered = self.registry.agent_ids();
        self.calls.record(from, calls, |id| registered.contains(id));
    }

    /// The answer to `GET path` on the plain health listener from `remote`: only a browser on
    /// this machine is answered (see the module's documentation). `None`: not a dashboard path.
    pub fn answer_local(&self, head: &http::request::Parts, remote: SocketAddr) -> Option<http::Response<Body>> {
        if !is_dashboard_path(head.uri.path()) {
            return None;
        }
        if !is_loopback(remote.ip()) {
            return Some(refuse(format!(
                "the dashboard on the registry's plain health port is served to this machine only (the request came from {}); \
                 open it through a tunnel to the health port (ssh -L, kubectl port-forward), or over mutual TLS at \
                 https://REGISTRY/dashboard/ with an operator certificate",
                remote.ip()
            )));
        }
        let host = head.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !is_loopback_host(host) {
            return Some(refuse(format!(
                "the dashboard on the plain health port answers only requests for localhost, 127.0.0.1 or [::1], not for host '{}' \
                 (a guard against DNS rebinding); open http://127.0.0.1:PORT/dashboard/",
                toolmesh_core::text::escape(host)
            )));
        }
        self.answer(&head.uri)
    }

    /// The answer to `GET path` (or `HEAD`; both listeners refuse every other method with 405,
    /// the dashboard being read-only) from someone allowed to see the dashboard; `None`: not a
    /// dashboard path.
    pub fn answer(&self, uri: &http::Uri) -> Option<http::Response<Body>> {
        let path = uri.path();
        if !is_dashboard_path(path) {
            return None;
        }
        let trace_id = path.strip_prefix("/dashboard/traces/").and_then(|rest| rest.strip_suffix(".json"));
        Some(match (path, trace_id) {
            ("/dashboard" | "/dashboard/", _) => page(),
            ("/dashboard/state.json", _) => guarded(json_response(StatusCode::OK, &self.snapshot())),
            ("/dashboard/traces.json", _) => guarded(json_response(StatusCode::OK, &self.traces.recent(traces_listed(uri.query())))),
            (_, Some(id)) => match self.traces.trace(id) {
                Some(trace) => guarded(json_response(StatusCode::OK, &trace)),
                None => error(
                    StatusCode::NOT_FOUND,
                    "unknown_trace",
                    format!("the registry keeps no span of trace {}", toolmesh_core::text::escape(id)),
                ),
            },
            _ => error(StatusCode::NOT_FOUND, "not_found", format!("no dashboard page {}", toolmesh_core::text::escape(path))),
        })
    }

    fn snapshot(&self) -> Snapshot {
        let listed = self.registry.list(None).agents;
        let expiries = self.registry.certificate_expiries();
        let agents: Vec<AgentRow> = listed
            .into_iter()
            .map(|a| AgentRow {
                certificate_not_after: expiries.get(&a.agent_id).copied(),
                tools: a.tools.into_iter().map(|t| ToolRow { name: t.name, capability: t.capability, version: t.version }).collect(),
                agent_id: a.agent_id,
                name: a.name,
                identity: a.identity,
                entity: a.entity,
                endpoint: a.endpoint,
                health: a.status,
                last_heartbeat_ms: a.last_seen_ms,
            })
            .collect();
        let registered: HashSet<&str> = agents.iter().map(|a| a.agent_id.as_str()).collect();
        let edges = with_dependencies(self.calls.edges(|id| registered.contains(id)), self.registry.dependency_pairs());
        Snapshot {
            time_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            window_s: self.calls.window().as_secs(),
            agents,
            edges,
        }
    }
}

/// The edges with calls, marked declared where the caller's topology holds the provider, and
/// an edge without calls for each other provider a topology holds; sorted by (from, to).
fn with_dependencies(mut edges: Vec<EdgeStats>, mut declared: BTreeSet<(String, String)>) -> Vec<EdgeStats> {
    for edge in &mut edges {
        edge.declared = declared.remove(&(edge.from.clone(), edge.to.clone()));
    }
    edges.extend(declared.into_iter().map(|(from, to)| EdgeStats {
        from,
        to,
        declared: true,
        calls: 0,
        errors: 0,
        calls_per_second: 0.0,
        error_rate: 0.0,
        mean_latency_ms: 0.0,
    }));
    edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    edges
}

/// `?last=N` of `traces.json`: the default when absent or not a positive number, at most 1000.
fn traces_listed(query: Option<&str>) -> usize {
    let asked = query.unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("last=")?.parse::<usize>().ok());
    asked.filter(|n| *n > 0).unwrap_or(TRACES_LISTED).min(MAX_TRACES_LISTED)
}

fn is_dashboard_path(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// `localhost`, a loopback IPv4 address or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

fn page() -> http::Response<Body> {
    let response = http::Response::builder()
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(PAGE))
        .expect("static response parts are valid");
    guarded(response)
}

/// Headers every dashboard answer carries: never cached, never framed, and the page may load
/// nothing and talk to nobody but the registry it came from.
fn guarded(mut response: http::Response<Body>) -> http::Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    response
}

fn error(status: StatusCode, name: &str, message: String) -> http::Response<Body> {
    guarded(json_response(status, &json!({"error": name, "message": message})))
}

fn refuse(message: String) -> http::Response<Body> {
    error(StatusCode::FORBIDDEN, "forbidden", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, to: &str, calls: u64) -> EdgeStats {
        let (from, to) = (from.to_owned(), to.to_owned());
        EdgeStats { from, to, declared: false, calls, errors: 0, calls_per_second: 0.0, error_rate: 0.0, mean_latency_ms: 0.0 }
    }

    #[test]
    fn declared_dependencies_are_edges_with_or_without_calls() {
        let declared = BTreeSet::from([("a".to_owned(), "b".to_owned()), ("a".to_owned(), "c".to_owned())]);
        let edges = with_dependencies(vec![edge("a", "c", 5), edge("x", "a", 2)], declared);
        let seen: Vec<(&str, &str, bool, u64)> = edges.iter().map(|e| (e.from.as_str(), e.to.as_str(), e.declared, e.calls)).collect();
        assert_eq!(seen, [("a", "b", true, 0), ("a", "c", true, 5), ("x", "a", false, 2)]);
    }

    #[test]
    fn only_loopback_hosts_and_addresses_count_as_this_machine() {
        for host in ["localhost", "localhost:9443", "LOCALHOST:1", "127.0.0.1:9443", "127.3.2.1", "[::1]:9443", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["", "evil.example:9443", "10.0.0.1:9443", "[::2]:1", "localhost.evil.example", "127.0.0.1.nip.io:80"] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("192.168.1.2".parse().unwrap()));
    }
}
