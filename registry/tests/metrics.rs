//! `/metrics` on the health listeners of real agents and a real registry, over real mTLS: the
//! numbers follow the calls made, the handshakes refused, the policy's denials and an eviction.

mod common;

use common::{get, sample, Mesh};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use toolmesh_ca::Role;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::policy::Policy;
use toolmesh_core::registry_api::{RegisterRequest, ToolInfo};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::ErrorKind;
use toolmesh_registry::RegistryConfig;

const HEARTBEAT: Duration = Duration::from_millis(200);

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// The agents the registry holds, whatever their health (a heartbeat late on a busy machine
/// makes an agent stale for a moment).
fn registered(text: &str) -> f64 {
    ["healthy", "stale", "unreachable"].iter().map(|health| value(text, &format!("toolmesh_registry_agents{{health=\"{health}\"}}"))).sum()
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    body
}

/// An agent serving `tools`: `add` adds `a` and `b` (and fails for a negative `a`); `relay`
/// calls its dependency (`add`) with its own arguments.
async fn agent(mesh: &Mesh, dir: &std::path::Path, name: &str, registry: &str, tools: Value) -> Agent {
    agent_with(mesh, dir, name, registry, tools, &[]).await
}

/// [`agent`], with more configuration `settings`.
async fn agent_with(mesh: &Mesh, dir: &std::path::Path, name: &str, registry: &str, tools: Value, settings: &[(&str, &str)]) -> Agent {
    let mut config = mesh.agent_config(dir, name, registry, HEARTBEAT);
    for (setting, value) in [("health_port", "0")].iter().chain(settings) {
        config.set(setting, value).unwrap();
    }
    let tools: Vec<ToolInfo> = serde_json::from_value(tools).unwrap();
    let slot: Arc<OnceLock<Agent>> = Arc::new(OnceLock::new());
    let itself = slot.clone();
    let handler = FnHandler(move |invocation: ToolInvocation, done: Completion| {
        let itself = itself.clone();
        tokio::spawn(async move {
            let arg = |k: &str| invocation.arguments.get(k).and_then(Value::as_i64).unwrap_or(0);
            match invocation.tool.as_str() {
                "add" if arg("a") < 0 => done.err("negative"),
                "add" => done.ok(json!(arg("a") + arg("b"))),
                _ => {
                    let agent = itself.get().expect("set once started");
                    match agent.call("relay", 0, invocation.arguments.clone(), Some(invocation.context.clone())).await {
                        Ok(v) => done.ok(v),
                        Err(e) => done.complete(Err(HostError { message: e.message().into(), mesh_error: Some(e) })),
                    }
                }
            }
        });
    });
    let agent = Agent::start(config, tools, Arc::new(handler)).await.unwrap();
    let _ = slot.set(agent.clone());
    assert!(agent.wait_registered(Duration::from_secs(10)).await, "{name} did not register");
    agent
}

#[tokio::test]
async fn agents_and_the_registry_count_what_happens_at_metrics() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mesh = Mesh::new();
        let dir = tempfile::tempdir().unwrap();
        let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
        config.heartbeat_interval = HEARTBEAT;
        config.health = Some(("127.0.0.1".to_owned(), 0));
        let registry = toolmesh_registry::start(config).await.unwrap();
        let url = registry.url().to_owned();
        let back = agent(&mesh, dir.path(), "back", &url, json!([{"name": "add", "capability": "add"}])).await;
        let front =
            agent(&mesh, dir.path(), "front", &url, json!([{"name": "relay", "capability": "relay", "dependencies": ["add"]}])).await;

        let operator = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
        let call = |endpoint: String, tool: &'static str, arguments: Value| {
            let operator = operator.clone();
            async move { operator.call_tool(&endpoint, tool, &arguments, &RequestContext::default()).await.map_err(|e| e.error) }
        };
        // Front learns of back from the registry (its topology), then calls it.
        let relayed = async || call(front.endpoint().to_owned(), "relay", json!({"a": 2, "b": 3})).await.map_err(|e| e.to_string());
        assert_eq!(common::eventually("front resolves back", Duration::from_secs(10), relayed).await, json!(5));
        let failed = call(front.endpoint().to_owned(), "relay", json!({"a": -1, "b": 3})).await.unwrap_err();
        assert_eq!(failed.kind(), ErrorKind::ToolFailed, "{failed}");
        // A peer of another mesh: it refuses back's certificate (not from its CA) in the handshake.
        let foreign = Mesh::named("a foreign CA");
        let intruder = McpClient::new(&foreign.identity("intruder", Role::Agent)).unwrap();
        let refused = intruder.call_tool(back.endpoint(), "add", &json!({"a": 1, "b": 1}), &RequestContext::default()).await;
        assert_eq!(refused.unwrap_err().error.kind(), ErrorKind::PeerCertificateUntrusted);
        // A caller the policy denies.
        back.replace_policy(Policy::parse("default: deny", 2).unwrap());
        let denied = call(back.endpoint().to_owned(), "add", json!({"a": 1, "b": 1})).await.unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::CallDenied, "{denied}");

        let text = scrape(front.health_addr().unwrap()).await;
        let client = |error: &str| {
            format!("mcp_client_operation_duration_seconds_count{{mcp_method_name=\"tools/call\",peer_agent=\"back\",gen_ai_tool_name=\"add\"{error}}}")
        };
        assert_eq!(value(&text, &client("")), 1.0);
        assert_eq!(value(&text, &client(",error_type=\"TOOL_FAILED\"")), 1.0);
        let server = |error: &str| {
            format!("mcp_server_operation_duration_seconds_count{{mcp_method_name=\"tools/call\",gen_ai_tool_name=\"relay\"{error}}}")
        };
        assert_eq!(value(&text, &server("")), 1.0, "the first relay that resolved back");
        assert!(value(&text, &server(",error_type=\"TOOL_FAILED\"")) >= 1.0, "the failed relay, and any before back was known");
        assert_eq!(value(&text, "toolmesh_client_calls_in_flight"), 0.0);
        assert_eq!(value(&text, "toolmesh_server_requests_in_flight"), 0.0);
        assert_eq!(value(&text, "toolmesh_client_failovers_total{reason=\"unreachable\"}"), 0.0);
        assert!(value(&text, "toolmesh_tls_handshakes_total{side=\"client\"}") >= 1.0);
        assert!(value(&text, "toolmesh_tls_handshakes_total{side=\"server\"}") >= 1.0);
        assert_eq!(value(&text, "toolmesh_topology_dependencies"), 1.0);
        assert_eq!(value(&text, "toolmesh_topology_providers"), 1.0);
        let expiry = value(&text, "toolmesh_certificate_expiry_seconds");
        assert!((86_000.0..=86_400.0).contains(&expiry), "certificates of the test CA live one day: {expiry}");
        // The bucket counts are cumulative and end at the count.
        let buckets: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("mcp_client_operation_duration_seconds_bucket{") && !l.contains("error_type"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.len(), 21);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets[20] == 1.0, "{buckets:?}");

        let text = scrape(back.health_addr().unwrap()).await;
        let add = |error: &str| {
            format!("mcp_server_operation_duration_seconds_count{{mcp_method_name=\"tools/call\",gen_ai_tool_name=\"add\"{error}}}")
        };
        assert_eq!(value(&text, &add("")), 1.0);
        assert_eq!(value(&text, &add(",error_type=\"HANDLER_FAILED\"")), 1.0, "the caller sees it as TOOL_FAILED");
        assert_eq!(value(&text, &add(",error_type=\"CALL_DENIED\"")), 1.0);
        assert_eq!(value(&text, "toolmesh_policy_denials_total{reason=\"call_denied\"}"), 1.0);
        assert_eq!(value(&text, "toolmesh_tls_handshake_failures_total{side=\"server\",reason=\"PEER_REJECTED_CERTIFICATE\"}"), 1.0);

        let health = registry.health_addr().unwrap();
        let text = scrape(health).await;
        assert_eq!(registered(&text), 2.0);
        assert_eq!(value(&text, "toolmesh_registry_evictions_total{reason=\"heartbeats_stopped\"}"), 0.0);
        let beating = async || {
            let text = scrape(health).await;
            let seen = (sample(&text, "toolmesh_registry_long_poll_waiters"), sample(&text, "toolmesh_registry_heartbeats_total"));
            match seen {
                (Some(2.0), Some(beats)) if beats >= 1.0 => Ok(()),
                other => Err(format!("(waiters, heartbeats) {other:?}")),
            }
        };
        common::eventually("both agents hold a long poll and beat", Duration::from_secs(10), beating).await;
        // An agent that registers once and never beats is evicted.
        let ghost = RegistryClient::new(&url, &mesh.identity("ghost", Role::Agent)).unwrap();
        let registration = RegisterRequest { agent_id: "ghost-1".into(), name: "ghost".into(), endpoint: back.endpoint().into(), tools: vec![] };
        ghost.register(&registration).await.unwrap();
        let evicted = async || match sample(&scrape(health).await, "toolmesh_registry_evictions_total{reason=\"heartbeats_stopped\"}") {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?} evicted")),
        };
        common::eventually("back is evicted", Duration::from_secs(10), evicted).await;
        assert_eq!(registered(&scrape(health).await), 2.0, "back and front, not the ghost");
        let (status, _, body) = get(health, "/nothing").await;
        assert_eq!((status, body.contains("/metrics")), (404, true), "{body}");
        front.shutdown().await;
        back.shutdown().await;
        // Their spans went to the registry (no collector is named), flushed as they stopped.
        let text = scrape(health).await;
        assert!(value(&text, "toolmesh_registry_trace_spans_received_total") >= 4.0, "{text}");
        assert!(value(&text, "toolmesh_registry_trace_requests") >= 1.0 && value(&text, "toolmesh_registry_trace_bytes") > 0.0, "{text}");
        assert_eq!(value(&text, "toolmesh_registry_trace_requests_evicted_total"), 0.0);
    })
    .await
    .expect("the test took over a minute");
}

#[tokio::test]
async fn an_agent_with_metrics_off_serves_calls_and_says_so_at_metrics() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mesh = Mesh::new();
        let dir = tempfile::tempdir().unwrap();
        let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
        config.heartbeat_interval = HEARTBEAT;
        let registry = toolmesh_registry::start(config).await.unwrap();
        let url = registry.url().to_owned();
        let tools = json!([{"name": "add", "capability": "add"}]);
        let quiet = agent_with(&mesh, dir.path(), "quiet", &url, tools, &[("metrics", "off")]).await;
        let operator = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
        let sum = operator.call_tool(quiet.endpoint(), "add", &json!({"a": 2, "b": 3}), &RequestContext::default()).await.unwrap();
        assert_eq!(sum, json!(5));
        let (status, _, body) = get(quiet.health_addr().unwrap(), "/metrics").await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("metrics are turned off: set TOOLMESH_METRICS=on"), "{body}");
        let mut config = AgentConfig::from_env("bad").unwrap();
        let refused = config.set("metrics", "maybe").unwrap_err();
        assert_eq!(refused.message(), "metrics 'maybe' must be 'on' or 'off'");
        quiet.shutdown().await;
    })
    .await
    .expect("the test took over a minute");
}
