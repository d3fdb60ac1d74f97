//! The spans of an agent's registry operations, as a real registry's trace store keeps them (no
//! collector is named, so real agents export there over mTLS): registrations, the topology
//! answers that changed something, a registry that forgot the agent, deregistration — and none
//! for the heartbeats that changed nothing.

mod common;

use common::{sample, Mesh};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_ca::Role;
use toolmesh_core::agent::Agent;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::registry_api::{ToolInfo, TraceSpan, TraceSpanKind};
use toolmesh_registry::{RegistryConfig, RunningRegistry};

const HEARTBEAT: Duration = Duration::from_millis(100);

async fn agent(mesh: &Mesh, dir: &std::path::Path, name: &str, registry: &str, tools: Value) -> Agent {
    let config = mesh.agent_config(dir, name, registry, HEARTBEAT);
    let tools: Vec<ToolInfo> = serde_json::from_value(tools).unwrap();
    let handler = FnHandler(|_: ToolInvocation, done: Completion| done.ok(json!(0)));
    let agent = Agent::start(config, tools, Arc::new(handler)).await.unwrap();
    assert!(agent.wait_registered(Duration::from_secs(10)).await, "{name} did not register");
    agent
}

fn registry_config(mesh: &Mesh, port: u16) -> RegistryConfig {
    let mut config = RegistryConfig::new("127.0.0.1", port, mesh.identity("registry", Role::Registry));
    config.heartbeat_interval = HEARTBEAT;
    config.health = Some(("127.0.0.1".to_owned(), 0));
    config
}

/// A new registry (knowing no agent) on the port a stopped one used, once the port is free.
async fn restart(mesh: &Mesh, port: u16) -> RunningRegistry {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match toolmesh_registry::start(registry_config(mesh, port)).await {
            Ok(registry) => return registry,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "port {port} was not free 10 s after the registry stopped: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every span the registry keeps.
fn kept(registry: &RunningRegistry) -> Vec<TraceSpan> {
    let store = registry.traces();
    store.recent(usize::MAX).traces.iter().filter_map(|t| store.trace(&t.trace_id)).flat_map(|d| d.spans).collect()
}

/// The registry operation spans of `service` for `operation`.
fn operations(spans: &[TraceSpan], service: &str, operation: &str) -> Vec<TraceSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.attributes.get("toolmesh.registry.operation").map(String::as_str) == Some(operation))
        .cloned()
        .collect()
}

async fn heartbeats_seen(registry: &RunningRegistry) -> f64 {
    let (_, _, text) = common::get(registry.health_addr().unwrap(), "/metrics").await;
    sample(&text, "toolmesh_registry_heartbeats_total").unwrap_or(0.0)
}

#[tokio::test]
async fn an_agent_records_the_registry_operations_that_tell_something_and_not_every_heartbeat() {
    // Batches leave within 20 ms of their first span (the default waits 5 s).
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "20");
    tokio::time::timeout(Duration::from_secs(60), async {
        let mesh = Mesh::new();
        let dir = tempfile::tempdir().unwrap();
        let registry = toolmesh_registry::start(registry_config(&mesh, 0)).await.unwrap();
        let url = registry.url();
        let port = registry.url().rsplit(':').next().unwrap().to_owned();
        let front =
            agent(&mesh, dir.path(), "front", &url, json!([{"name": "relay", "capability": "relay", "dependencies": ["add"]}])).await;
        let back = agent(&mesh, dir.path(), "back", &url, json!([{"name": "add", "capability": "add"}])).await;

        // Each registration is a client span of a trace of its own, described as an HTTP request
        // to the registry; front hears of back by a long poll or a heartbeat that brings the new topology.
        let learned = |spans: &[TraceSpan]| {
            let answers = [operations(spans, "front", "watch_topology"), operations(spans, "front", "heartbeat")].concat();
            answers.into_iter().find(|s| s.error.is_none() && s.attributes.contains_key("toolmesh.topology.version"))
        };
        common::wait_until("both registrations and front's new topology are kept", Duration::from_secs(20), || {
            let spans = kept(&registry);
            operations(&spans, "front", "register").len() == 1
                && operations(&spans, "back", "register").len() == 1
                && learned(&spans).is_some()
        })
        .await;
        let spans = kept(&registry);
        let register = &operations(&spans, "back", "register")[0];
        assert_eq!(
            (register.name.as_str(), register.kind, register.parent_span_id.as_ref()),
            ("POST /v1/agents", TraceSpanKind::Client, None)
        );
        for (key, value) in [
            ("http.request.method", "POST"),
            ("url.template", "/v1/agents"),
            ("server.address", "127.0.0.1"),
            ("server.port", port.as_str()),
            ("toolmesh.exporter.identity", "spiffe://toolmesh.local/agent/back"),
        ] {
            assert_eq!(register.attributes.get(key).map(String::as_str), Some(value), "{key}: {register:#?}");
        }
        assert!(register.error.is_none() && !register.attributes.contains_key("error.type"), "{register:#?}");
        let topology = learned(&spans).unwrap();
        assert!(topology.name.starts_with("GET /v1/agents/{agent_id}/topology") || topology.name == "POST /v1/agents/{agent_id}/heartbeat");

        // Forty more heartbeats (twenty each) that change nothing record nothing.
        let before = heartbeats_seen(&registry).await;
        common::eventually("40 more heartbeats", Duration::from_secs(20), async || match heartbeats_seen(&registry).await {
            seen if seen >= before + 40.0 => Ok(()),
            seen => Err(format!("{seen} heartbeats")),
        })
        .await;
        let spans = kept(&registry);
        for service in ["front", "back"] {
            let beats = operations(&spans, service, "heartbeat");
            assert!(beats.iter().all(|s| s.attributes.contains_key("toolmesh.topology.version")), "{service}: {beats:#?}");
            assert!(beats.len() <= 2, "{service}: {beats:#?}");
        }

        // A registry that restarts forgets the agents: the heartbeat (or long poll) it answers
        // `unknown_agent` is a failed span, and the registration that follows another.
        registry.shutdown().await;
        let registry = restart(&mesh, port.parse().unwrap()).await;
        common::wait_until("back was forgotten and registered again", Duration::from_secs(20), || {
            let spans = kept(&registry);
            let forgotten = [operations(&spans, "back", "heartbeat"), operations(&spans, "back", "watch_topology")]
                .concat()
                .into_iter()
                .any(|s| s.attributes.get("error.type").map(String::as_str) == Some("UNKNOWN_AGENT") && s.error.is_some());
            forgotten && operations(&spans, "back", "register").len() == 1
        })
        .await;

        // Stopping deregisters, flushing its span on the way out.
        back.shutdown().await;
        let spans = kept(&registry);
        let deregister = operations(&spans, "back", "deregister");
        assert_eq!(deregister.len(), 1, "{spans:#?}");
        assert_eq!(deregister[0].name, "DELETE /v1/agents/{agent_id}");
        assert!(deregister[0].error.is_none(), "{deregister:#?}");
        front.shutdown().await;
        registry.shutdown().await;
    })
    .await
    .expect("the test took over a minute");
}
