//! An agent's metrics: its MCP server's operations, its calls to other agents, its TLS
//! handshakes, and what it reads off its certificate, topology and policy gate when scraped.
//!
//! Label values and their bounds: `mcp_method_name` is one of the methods MCP defines (else
//! `_OTHER`); `gen_ai_tool_name` on the server side is one of the agent's own tools (else
//! `_OTHER`); on the client side a (`peer_agent`, `gen_ai_tool_name`) pair is one of the first
//! [`MAX_PEER_TOOLS`] pairs called, later ones are counted as (`_OTHER`, `_OTHER`);
//! `error_type` is an error kind name, a JSON-RPC error code, or `CANCELLED`.

use super::callees::CalleeTally;
use super::{Counter, Entered, Exposition, Family, Gauge, Histogram, HistogramSnapshot, Kind};
use crate::authorize::Gate;
use crate::discovery::TopologyView;
use crate::error::ErrorKind;
use crate::fx_hash::FxHashMap;
use crate::registry_api::Provider;
use crate::tls::Identity;
use crate::trace::{Span, SpanCounters};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// The methods an MCP server answers, by which its operations are counted.
const METHODS: [&str; 12] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];
/// The label value of what falls outside a bounded set.
const OTHER: &str = "_OTHER";
/// At most this many (peer agent, tool) pairs get series of their own on the client side.
pub const MAX_PEER_TOOLS: usize = 64;
/// `method` or `tool` of a series outside the bounded set.
const OUTSIDE: u16 = u16::MAX;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// A mesh error (a failed tool, a refusal, a timeout...).
    Error(ErrorKind),
    /// A JSON-RPC error answered for the request.
    Rpc(i64),
    /// The caller went away (or the call was dropped) before it ended.
    Cancelled,
}

impl Outcome {
    /// The `error_type` label; `None` for success.
    fn error_type(self) -> Option<String> {
        match self {
            Outcome::Ok => None,
            Outcome::Error(kind) => Some(kind.name().to_owned()),
            Outcome::Rpc(code) => Some(code.to_string()),
            Outcome::Cancelled => Some("CANCELLED".to_owned()),
        }
    }
}

/// One agent's metrics. Each part is shared with the component that records it.
#[derive(Clone)]
pub struct AgentMetrics {
    pub server: Arc<ServerMetrics>,
    pub client: Arc<ClientMetrics>,
    pub tls: Arc<TlsMetrics>,
    pub gate: Arc<Gate>,
    pub identity: Arc<Identity>,
    pub topology: watch::Receiver<Arc<TopologyView>>,
    pub spans: Arc<SpanCounters>,
}

impl AgentMetrics {
    /// The exposition of every metric, as `/metrics` answers it.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        self.server.write(&mut out);
        self.client.write(&mut out);
        self.tls.write(&mut out);
        self.spans.write(&mut out);
        out.metric("toolmesh_policy_denials_total", Kind::Counter, "Inbound requests the agent's policy gate refused, by reason.");
        for (reason, count) in self.gate.denials() {
            out.sample("toolmesh_policy_denials_total", &[("reason", reason)], count);
        }
        if let Some(seconds) = self.certificate_expiry_seconds() {
            out.metric(
                "toolmesh_certificate_expiry_seconds",
                Kind::Gauge,
                "Seconds until the agent's current certificate (or a CA in its chain) expires; negative once expired.",
            );
            out.sample("toolmesh_certificate_expiry_seconds", &[], seconds);
        }
        let topology = self.topology.borrow().clone();
        let agents: HashSet<&str> = topology.providers.values().flatten().map(|p| p.agent_id.as_str()).collect();
        out.metric("toolmesh_topology_dependencies", Kind::Gauge, "Dependencies in the agent's current topology from the registry.");
        out.sample("toolmesh_topology_dependencies", &[], topology.providers.len());
        out.metric("toolmesh_topology_providers", Kind::Gauge, "Distinct provider agents in the agent's current topology.");
        out.sample("toolmesh_topology_providers", &[], agents.len());
        out.finish()
    }

    fn certificate_expiry_seconds(&self) -> Option<i64> {
        let key = self.identity.certified_key();
        let not_after = crate::server::expiry::chain_not_after(&key.cert, &self.identity.anchor_certificates())?;
        Some(match not_after.duration_since(SystemTime::now()) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
        })
    }
}

/// The operations an agent's MCP server answers: how long each took, and how many are running.
pub struct ServerMetrics {
    /// The agent's own tools, whose names label `tools/call`.
    tools: Vec<String>,
    tool_index: FxHashMap<String, u16>,
    durations: Family<(u16, u16, Outcome), Histogram>,
    in_flight: Gauge,
    off: AtomicBool,
}

impl ServerMetrics {
    /// Metrics for a server of these tools.
    pub fn new<'a>(tools: impl IntoIterator<Item = &'a str>) -> Self {
        // Past u16's range (never reached: a catalog is far smaller), tools share `_OTHER`.
        let tools: Vec<String> = tools.into_iter().take(usize::from(OUTSIDE)).map(str::to_owned).collect();
        let tool_index = tools.iter().enumerate().map(|(i, name)| (name.clone(), i as u16)).collect();
        ServerMetrics { tools, tool_index, durations: Family::default(), in_flight: Gauge::default(), off: AtomicBool::new(false) }
    }

    /// Records nothing from now on (`metrics = off`).
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
    }

    /// Starts timing one request of `method`; it is recorded when the returned guard is dropped.
    /// The guard owns its share of the metrics: a request answered as a stream ends after the
    /// handler that started it returned its response's head.
    pub fn start(self: &Arc<Self>, method: &str) -> ServerOperation {
        let recording = !self.off.load(Ordering::Relaxed);
        let method = if recording { METHODS.iter().position(|m| *m == method).map_or(OUTSIDE, |i| i as u16) } else { OUTSIDE };
        if recording {
            self.in_flight.add(1);
        }
        ServerOperation {
            metrics: self.clone(),
            started: recording.then(Instant::now),
            method,
            tool: OUTSIDE,
            outcome: Outcome::Cancelled,
            span: None,
        }
    }

    fn write(&self, out: &mut Exposition) {
        const NAME: &str = "mcp_server_operation_duration_seconds";
        out.metric(NAME, Kind::Histogram, "MCP requests the agent served, by method, tool and error type.");
        let series = self.durations.sorted(|(method, tool, outcome), histogram| {
            let method = METHODS.get(usize::from(method)).copied().unwrap_or(OTHER);
            let tool = (method == "tools/call").then(|| self.tools.get(usize::from(tool)).map_or(OTHER, String::as_str));
            (method, tool, outcome.error_type(), HistogramSnapshot::from(histogram))
        });
        for (method, tool, error_type, histogram) in &series {
            let mut labels = vec![("mcp_method_name", *method)];
            labels.extend(tool.map(|tool| ("gen_ai_tool_name", tool)));
            labels.extend(error_type.as_deref().map(|e| ("error_type", e)));
            out.histogram(NAME, &labels, histogram);
        }
        out.metric("toolmesh_server_requests_in_flight", Kind::Gauge, "MCP requests the agent is serving now.");
        out.sample("toolmesh_server_requests_in_flight", &[], self.in_flight.get());
    }
}

/// One request being served; recorded when dropped (as `CANCELLED` unless an outcome was set),
/// in the metrics and, when the request's trace is recorded, as its server span.
pub struct ServerOperation {
    metrics: Arc<ServerMetrics>,
    /// `None` when metrics are off: nothing is recorded in them.
    started: Option<Instant>,
    method: u16,
    tool: u16,
    outcome: Outcome,
    span: Option<Span>,
}

impl ServerOperation {
    /// The request's server span, ended with the operation's outcome.
    pub fn traced(&mut self, span: Option<Span>) {
        self.span = span;
    }

    /// The request calls `tool` (`tools/call`).
    pub fn tool(&mut self, tool: &str) {
        if self.started.is_some() {
            self.tool = self.metrics.tool_index.get(tool).copied().unwrap_or(OUTSIDE);
        }
    }

    /// Sets `key` on the request's server span, when it is recorded.
    pub fn annotate(&mut self, key: &'static str, value: impl Into<crate::trace::Value>) {
        if let Some(span) = self.span.as_mut() {
            span.set(key, value);
        }
    }

    pub fn ended(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for ServerOperation {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            self.metrics.in_flight.add(-1);
            let elapsed = started.elapsed();
            self.metrics.durations.with((self.method, self.tool, self.outcome), |h| h.observe(elapsed));
        }
        if let Some(span) = self.span.as_mut() {
            match self.outcome {
                Outcome::Ok => span.ok(),
                Outcome::Error(kind) => span.failed(kind.name(), kind.name()),
                Outcome::Rpc(code) => {
                    span.set("rpc.response.status_code", code.to_string());
                    span.failed(&code.to_string(), "the request was answered with a JSON-RPC error");
                }
                // The span's own drop records it.
                Outcome::Cancelled => {}
            }
        }
    }
}

/// The calls an agent makes to other agents' tools: how long each took, how many are running,
/// and how often one went on to another provider.
#[derive(Default)]
pub struct ClientMetrics {
    peer_tools: Mutex<PeerTools>,
    durations: Family<(u16, Outcome), Histogram>,
    in_flight: Gauge,
    /// Attempts that could not reach a provider.
    pub(crate) unreachable: Counter,
    /// Attempts whose provider failed TLS.
    pub(crate) refused_certificate: Counter,
    /// Calls sent again after their connection broke once the provider had them.
    pub(crate) retried_after_delivery: Counter,
    /// Attempts after the first of a call.
    pub(crate) retries: Counter,
    /// The calls per provider agent since the last heartbeat, which reports them.
    callees: CalleeTally,
    off: AtomicBool,
}

/// The (peer agent, tool) pairs that have series, in the order first called.
#[derive(Default)]
struct PeerTools {
    index: FxHashMap<String, FxHashMap<String, u16>>,
    pairs: Vec<(String, String)>,
}

impl PeerTools {
    fn id(&mut self, agent: &str, tool: &str) -> u16 {
        if let Some(&id) = self.index.get(agent).and_then(|tools| tools.get(tool)) {
            return id;
        }
        if self.pairs.len() >= MAX_PEER_TOOLS {
            return OUTSIDE;
        }
        let id = self.pairs.len() as u16;
        self.pairs.push((agent.to_owned(), tool.to_owned()));
        self.index.entry(agent.to_owned()).or_default().insert(tool.to_owned(), id);
        id
    }
}

impl ClientMetrics {
    /// Starts timing one call to one of `providers`; it is recorded when the returned guard is
    /// dropped, under the provider tried last.
    pub fn start<'a>(&'a self, providers: &'a [Provider]) -> ClientOperation<'a> {
        let recording = !self.off.load(Ordering::Relaxed);
        ClientOperation {
            metrics: self,
            providers,
            tried: AtomicUsize::new(usize::MAX),
            started: recording.then(Instant::now),
            outcome: Outcome::Cancelled,
            _in_flight: recording.then(|| self.in_flight.enter()),
        }
    }

    /// Records no call from now on (`metrics = off`); the failover counters still count.
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
    }

    /// The calls per provider agent since the last take, for a heartbeat to report.
    pub fn take_calls(&self) -> Vec<crate::registry_api::ReportedCalls> {
        self.callees.take()
    }

    fn write(&self, out: &mut Exposition) {
        const NAME: &str = "mcp_client_operation_duration_seconds";
        out.metric(NAME, Kind::Histogram, "Calls the agent made to other agents' tools, by peer agent, tool and error type.");
        let series = {
            let peer_tools = self.peer_tools.lock().unwrap_or_else(|e| e.into_inner());
            self.durations.sorted(|(pair, outcome), histogram| {
                let (agent, tool) = match pair {
                    NO_PROVIDER => ("", ""),
                    pair => peer_tools.pairs.get(usize::from(pair)).map_or((OTHER, OTHER), |(a, t)| (a.as_str(), t.as_str())),
                };
                (agent.to_owned(), tool.to_owned(), outcome.error_type(), HistogramSnapshot::from(histogram))
            })
        };
        for (agent, tool, error_type, histogram) in &series {
            let mut labels = vec![("mcp_method_name", "tools/call"), ("peer_agent", agent.as_str()), ("gen_ai_tool_name", tool.as_str())];
            labels.extend(error_type.as_deref().map(|e| ("error_type", e)));
            out.histogram(NAME, &labels, histogram);
        }
        out.metric("toolmesh_client_calls_in_flight", Kind::Gauge, "Calls the agent is making to other agents now.");
        out.sample("toolmesh_client_calls_in_flight", &[], self.in_flight.get());
        out.metric("toolmesh_client_retries_total", Kind::Counter, "Attempts after the first of a call (to another provider or the same).");
        out.sample("toolmesh_client_retries_total", &[], self.retries.get());
        out.metric("toolmesh_client_failovers_total", Kind::Counter, "Attempts that went on to another provider, by why.");
        for (reason, counter) in [
            ("unreachable", &self.unreachable),
            ("refused_certificate", &self.refused_certificate),
            ("retried_after_delivery", &self.retried_after_delivery),
        ] {
            out.sample("toolmesh_client_failovers_total", &[("reason", reason)], counter.get());
        }
    }
}

/// The pair of a call that found no provider to try.
const NO_PROVIDER: u16 = OUTSIDE - 1;

/// One call being made; recorded when dropped (as `CANCELLED` unless an outcome was set).
pub struct ClientOperation<'a> {
    metrics: &'a ClientMetrics,
    providers: &'a [Provider],
    /// The index in `providers` of the provider tried last.
    tried: AtomicUsize,
    /// `None` when metrics are off: nothing is recorded.
    started: Option<Instant>,
    outcome: Outcome,
    _in_flight: Option<Entered<'a>>,
}

impl ClientOperation<'_> {
    /// The call is sent to `provider` (one of those it started with).
    pub fn trying(&self, provider: &Provider) {
        if let Some(index) = self.providers.iter().position(|p| std::ptr::eq(p, provider)) {
            if self.tried.swap(index, Ordering::Relaxed) != usize::MAX {
                self.metrics.retries.inc();
            }
        }
    }

    pub fn ended(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for ClientOperation<'_> {
    fn drop(&mut self) {
        let Some(started) = self.started else { return };
        let elapsed = started.elapsed();
        let pair = match self.providers.get(self.tried.load(Ordering::Relaxed)) {
            Some(p) => {
                self.metrics.callees.record(&p.agent_id, self.outcome != Outcome::Ok, elapsed);
                self.metrics.peer_tools.lock().unwrap_or_else(|e| e.into_inner()).id(&p.agent_name, &p.tool)
            }
            None => NO_PROVIDER,
        };
        self.metrics.durations.with((pair, self.outcome), |h| h.observe(elapsed));
    }
}

/// Which end of a TLS handshake the agent was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsSide {
    Server,
    Client,
}

impl TlsSide {
    fn name(self) -> &'static str {
        match self {
            TlsSide::Server => "server",
            TlsSide::Client => "client",
        }
    }
}

/// TLS handshakes, and the failed ones by reason: an error kind name (`PEER_CERTIFICATE_UNTRUSTED`,
/// `TLS_HANDSHAKE`...), `timeout`, or `plaintext` (an HTTP request on the TLS port).
#[derive(Default)]
pub struct TlsMetrics {
    completed: Family<TlsSide, Counter>,
    failed: Family<(TlsSide, &'static str), Counter>,
}

impl TlsMetrics {
    pub fn completed(&self, side: TlsSide) {
        self.completed.with(side, Counter::inc);
    }

    pub fn failed(&self, side: TlsSide, reason: &'static str) {
        self.failed.with((side, reason), Counter::inc);
    }

    /// Writes the handshake counters.
    pub fn write(&self, out: &mut Exposition) {
        out.metric("toolmesh_tls_handshakes_total", Kind::Counter, "TLS handshakes completed, by the side the agent was.");
        for (side, count) in self.completed.sorted(|side, c| (side.name(), c.get())) {
            out.sample("toolmesh_tls_handshakes_total", &[("side", side)], count);
        }
        out.metric("toolmesh_tls_handshake_failures_total", Kind::Counter, "TLS handshakes that failed, by side and reason.");
        for (side, reason, count) in self.failed.sorted(|(side, reason), c| (side.name(), reason, c.get())) {
            out.sample("toolmesh_tls_handshake_failures_total", &[("side", side), ("reason", reason)], count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(agent: &str, tool: &str) -> Provider {
        serde_json::from_value(serde_json::json!({
            "agent_id": format!("{agent}-1"), "agent_name": agent, "endpoint": "https://x/mcp", "tool": tool,
            "capability": "c", "version": "1.0.0", "tags": [], "score": 0,
        }))
        .unwrap()
    }

    fn label_values(text: &str, label: &str) -> HashSet<String> {
        let key = format!("{label}=\"");
        text.lines().filter_map(|l| Some(l.split(&key).nth(1)?.split('"').next()?.to_owned())).collect()
    }

    #[test]
    fn client_series_stop_at_the_first_peer_tool_pairs_and_the_rest_are_other() {
        let metrics = ClientMetrics::default();
        let providers: Vec<Provider> = (0..MAX_PEER_TOOLS + 10).map(|i| provider(&format!("agent{i}"), "t")).collect();
        for p in &providers {
            let mut operation = metrics.start(std::slice::from_ref(p));
            operation.trying(p);
            operation.ended(Outcome::Ok);
        }
        let mut out = Exposition::default();
        metrics.write(&mut out);
        let text = out.finish();
        let peers = label_values(&text, "peer_agent");
        assert_eq!(peers.len(), MAX_PEER_TOOLS + 1, "{peers:?}");
        assert!(peers.contains("agent0") && peers.contains(OTHER) && !peers.contains(&format!("agent{MAX_PEER_TOOLS}")));
        let other = format!("mcp_client_operation_duration_seconds_count{{mcp_method_name=\"tools/call\",peer_agent=\"{OTHER}\",gen_ai_tool_name=\"{OTHER}\"}} 10");
        assert!(text.contains(&other), "{text}");
    }

    #[test]
    fn server_series_name_only_known_methods_and_the_agents_own_tools() {
        let metrics = Arc::new(ServerMetrics::new(["add"]));
        for (method, tool) in [("tools/call", "add"), ("tools/call", "made-up"), ("made/up", ""), ("tools/list", "")] {
            let mut operation = metrics.start(method);
            operation.tool(tool);
            operation.ended(Outcome::Rpc(-32602));
        }
        drop(metrics.start("ping")); // never ended: the caller went away
        let mut out = Exposition::default();
        metrics.write(&mut out);
        let text = out.finish();
        assert_eq!(label_values(&text, "mcp_method_name"), HashSet::from(["tools/call", "tools/list", "ping", OTHER].map(String::from)));
        assert_eq!(label_values(&text, "gen_ai_tool_name"), HashSet::from(["add", OTHER].map(String::from)));
        assert_eq!(label_values(&text, "error_type"), HashSet::from(["-32602", "CANCELLED"].map(String::from)));
        assert!(text.contains("toolmesh_server_requests_in_flight 0\n"), "{text}");
    }
}
