//! The dashboard's data from real agents over real mTLS: the calls one agent makes to another
//! arrive, counted exactly by core and reported with its heartbeats, as the edge of
//! `/dashboard/state.json`; the agents' rows carry their certificates' expiry; and the access
//! rule of docs/dashboard.md holds on both listeners.

mod common;

use common::{Mesh, RawClient};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toolmesh_ca::Role;
use toolmesh_core::agent::Agent;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::ErrorKind;
use toolmesh_registry::RegistryConfig;

const HEARTBEAT: Duration = Duration::from_millis(200);

/// An agent serving `tools`: `add` adds `a` and `b` (and fails for a negative `a`); `relay`
/// calls its dependency (`add`) with its own arguments.
async fn agent(mesh: &Mesh, dir: &std::path::Path, name: &str, registry: &str, tools: Value) -> Agent {
    let mut config = mesh.agent_config(dir, name, registry, HEARTBEAT);
    config.set("health_port", "off").unwrap();
    let tools: Vec<ToolInfo> = serde_json::from_value(tools).unwrap();
    let slot: Arc<OnceLock<Agent>> = Arc::new(OnceLock::new());
    let itself = slot.clone();
    let handler = FnHandler(move |invocation: ToolInvocation, done: Completion| {
        let itself = itself.clone();
        tokio::spawn(async move {
            let a = invocation.arguments.get("a").and_then(Value::as_i64).unwrap_or(0);
            match invocation.tool.as_str() {
                "add" if a < 0 => done.err("negative"),
                "add" => done.ok(json!(a + invocation.arguments.get("b").and_then(Value::as_i64).unwrap_or(0))),
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

/// `GET path` on the plain listener with `host` as the Host header: status and body.
async fn plain_get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_owned())
}

#[tokio::test]
async fn the_calls_agents_make_are_the_edges_of_the_dashboard() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mesh = Mesh::new();
        let dir = tempfile::tempdir().unwrap();
        let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
        config.heartbeat_interval = HEARTBEAT;
        config.health = Some(("127.0.0.1".to_owned(), 0));
        let registry = toolmesh_registry::start(config).await.unwrap();
        let url = registry.url().to_owned();
        let health = registry.health_addr().unwrap();
        let local = format!("127.0.0.1:{}", health.port());
        let back = agent(&mesh, dir.path(), "back", &url, json!([{"name": "add", "capability": "add", "version": "1.2.0"}])).await;
        let front =
            agent(&mesh, dir.path(), "front", &url, json!([{"name": "relay", "capability": "relay", "dependencies": ["add"]}])).await;

        let operator = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
        let relay = |a: i64| {
            let (operator, endpoint) = (operator.clone(), front.endpoint().to_owned());
            async move {
                operator.call_tool(&endpoint, "relay", &json!({"a": a, "b": 1}), &RequestContext::default()).await.map_err(|e| e.error)
            }
        };
        // Calls made before front knew back found no provider: they are no edge.
        let first = async || relay(1).await.map_err(|e| e.to_string());
        common::eventually("front resolves back", Duration::from_secs(10), first).await;
        for a in 2..=5 {
            assert_eq!(relay(a).await.unwrap(), json!(a + 1));
        }
        for _ in 0..2 {
            assert_eq!(relay(-1).await.unwrap_err().kind(), ErrorKind::ToolFailed);
        }

        let state = async || {
            let (status, body) = plain_get(health, "/dashboard/state.json", &local).await;
            let state: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
            let edge = state["edges"].as_array().and_then(|edges| edges.iter().find(|e| e["from"] == front.agent_id()).cloned());
            match edge {
                Some(edge) if edge["calls"] == 7 => Ok((state, edge)),
                other => Err(format!("edge {other:?}")),
            }
        };
        let (state, edge) = common::eventually("front's calls to back reported", Duration::from_secs(10), state).await;
        assert_eq!((&edge["to"], &edge["errors"]), (&json!(back.agent_id()), &json!(2)), "{edge}");
        assert!((edge["error_rate"].as_f64().unwrap() - 2.0 / 7.0).abs() < 1e-9, "{edge}");
        assert!(edge["mean_latency_ms"].as_f64().unwrap() > 0.0 && edge["calls_per_second"].as_f64().unwrap() > 0.0, "{edge}");
        assert_eq!(state["edges"].as_array().unwrap().len(), 1, "back calls no one: {state}");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let rows = state["agents"].as_array().unwrap();
        let back_row = rows.iter().find(|a| a["agent_id"] == back.agent_id()).expect("back listed");
        assert_eq!((&back_row["name"], &back_row["health"]), (&json!("back"), &json!("healthy")));
        assert_eq!(back_row["identity"], "spiffe://toolmesh.local/agent/back");
        assert_eq!(back_row["tools"], json!([{"name": "add", "capability": "add", "version": "1.2.0"}]));
        for row in rows {
            let left = row["certificate_not_after"].as_i64().expect("expiry known") - now;
            assert!((86_000..=86_400).contains(&left), "the test CA's certificates live a day: {row}");
        }

        // The plain listener answers only requests for a loopback name.
        let (status, body) = plain_get(health, "/dashboard/state.json", "rebind.example").await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = plain_get(health, "/dashboard/", &format!("localhost:{}", health.port())).await;
        assert!(status == 200 && body.contains("renderWaterfall"), "{status}");
        // The traces panel reads the trace store: a list (maybe empty until the agents' first
        // export), and 404 for a trace it does not keep.
        let (status, body) = plain_get(health, "/dashboard/traces.json?last=20", &local).await;
        assert!(status == 200 && serde_json::from_str::<Value>(&body).unwrap()["traces"].is_array(), "{status} {body}");
        let (status, body) = plain_get(health, &format!("/dashboard/traces/{}.json", "ab".repeat(16)), &local).await;
        assert!(status == 404 && body.contains("unknown_trace"), "{status} {body}");
        // Over mTLS, admins only; and it is read-only.
        let as_operator = RawClient::new(&url, &mesh.identity("operator", Role::Operator));
        let answer = as_operator.send("GET", "/dashboard/state.json", None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["agents"].as_array().map(Vec::len), Some(2));
        assert_eq!(as_operator.send("POST", "/dashboard/state.json", None).await.status, 405);
        let as_agent = RawClient::new(&url, &mesh.identity("front", Role::Agent)).send("GET", "/dashboard/", None).await;
        assert_eq!(as_agent.status, 403);
        assert!(as_agent.json()["message"].as_str().is_some_and(|m| m.contains("admin identity")), "{:?}", as_agent.json());

        // An agent that leaves takes its edges with it.
        front.shutdown().await;
        let gone = async || {
            let (_, body) = plain_get(health, "/dashboard/state.json", &local).await;
            let state: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            match state["edges"].as_array().map(Vec::len) {
                Some(0) => Ok(()),
                other => Err(format!("{other:?} edges")),
            }
        };
        common::eventually("front's edge gone with it", Duration::from_secs(10), gone).await;
        back.shutdown().await;
        // Both flushed their spans as they stopped: a relay's trace is listed, and opens.
        let (_, body) = plain_get(health, "/dashboard/traces.json?last=50", &local).await;
        let listed: Value = serde_json::from_str(&body).unwrap();
        let relayed = listed["traces"].as_array().unwrap().iter().find(|t| t["root_name"] == "tools/call relay" && t["span_count"] == 3);
        let relayed = relayed.unwrap_or_else(|| panic!("no relay trace of 3 spans: {listed}"));
        assert_eq!(relayed["root_service"], "front");
        let (status, body) = plain_get(health, &format!("/dashboard/traces/{}.json", relayed["trace_id"].as_str().unwrap()), &local).await;
        let trace: Value = serde_json::from_str(&body).unwrap();
        let services: Vec<&str> = trace["spans"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
        assert_eq!((status, services), (200, vec!["front", "front", "back"]), "{trace}");
    })
    .await
    .expect("the test took over a minute");
}
