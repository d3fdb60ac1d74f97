//! `toolmesh trace` against a registry process that keeps the spans of three real agents (core's,
//! in this test process, exporting to it by default: no OTEL endpoint is set) after a two-hop
//! call edge → front → calc, over mutual TLS with the development certificates.

mod common;

use common::{run, toolmesh, Certs, RegistryProcess, Run};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::registry_api::{ToolInfo, TraceSummary};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};
use toolmesh_core::ErrorKind;

/// Starts agent `name` (its certificate's name) with `tools`; `handler` gets the agent itself,
/// to call its dependencies.
async fn start(
    certs: &Certs,
    registry_url: &str,
    name: &str,
    tools: Value,
    handler: impl Fn(Agent, ToolInvocation, Completion) + Send + Sync + 'static,
) -> Agent {
    let config = certs.agent_config(name, registry_url);
    let tools: Vec<ToolInfo> = serde_json::from_value(tools).expect("tools");
    let slot: Arc<OnceLock<Agent>> = Arc::default();
    let me = slot.clone();
    let handler = FnHandler(move |invocation: ToolInvocation, completion: Completion| {
        handler(me.get().expect("the agent is set once started").clone(), invocation, completion)
    });
    let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("start agent");
    let _ = slot.set(agent.clone());
    assert!(agent.wait_registered(Duration::from_secs(10)).await, "{name} did not register");
    agent
}

fn fail_with(completion: Completion, e: toolmesh_core::Error) {
    completion.complete(Err(HostError { message: e.message().into(), mesh_error: Some(e) }));
}

/// Runs `toolmesh` with the operator identity, off the async runtime the agents are served on.
async fn operator(certs: &Certs, registry_url: &str, args: &[&str]) -> Run {
    let mut command = toolmesh(args);
    command.args(certs.tls_args("operator")).env("TOOLMESH_REGISTRY_URL", registry_url);
    tokio::task::spawn_blocking(move || run(command)).await.expect("run toolmesh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_prints_the_call_tree_of_a_two_hop_call_and_last_lists_it() {
    // Batches leave 50 ms after their first span rather than 5 s (the agents read it at start).
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "50");
    let certs = Certs::init("edge,front,calc");
    let registry = RegistryProcess::start(&certs, &[]);
    let url = registry.url.clone();
    let calc = start(
        &certs,
        &url,
        "calc",
        json!([{"name": "add", "capability": "add"}, {"name": "fail", "capability": "fail"}]),
        |_, invocation, completion| match invocation.tool.as_str() {
            "add" => {
                completion.ok(json!(invocation.arguments["a"].as_i64().unwrap_or(0) + invocation.arguments["b"].as_i64().unwrap_or(0)))
            }
            _ => completion.err("fail always fails"),
        },
    )
    .await;
    // front adds through calc, then calls calc's fail and expects it to fail as a tool does.
    let front = start(
        &certs,
        &url,
        "front",
        json!([{"name": "front", "capability": "front", "dependencies": ["add", "fail"]}]),
        |agent, invocation, completion| {
            tokio::spawn(async move {
                let context = Some(invocation.context.clone());
                let sum = match agent.call("front", 0, invocation.arguments.clone(), context.clone()).await {
                    Ok(sum) => sum,
                    Err(e) => return fail_with(completion, e),
                };
                match agent.call("front", 1, json!({}), context).await {
                    Err(e) if e.kind() == ErrorKind::ToolFailed => completion.ok(sum),
                    Err(e) => fail_with(completion, e),
                    Ok(_) => completion.err("fail did not fail"),
                }
            });
        },
    )
    .await;
    let edge =
        start(&certs, &url, "edge", json!([{"name": "edge", "capability": "edge", "dependencies": ["front"]}]), |_, _, completion| {
            completion.err("not called")
        })
        .await;

    // Until every dependency resolved: a call outside any handler, so edge's client span is the root.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match edge.call("edge", 0, json!({"a": 2, "b": 3}), None).await {
            Ok(sum) => break assert_eq!(sum, json!(5)),
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "the two-hop call never succeeded: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The registry keeps the six spans once the three agents exported them.
    let reader = RegistryClient::new(
        &url,
        &Identity::load(&TlsFiles { cert: certs.path("operator.pem"), key: certs.path("operator.key"), ca: certs.path("ca.pem") }).unwrap(),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let summary: TraceSummary = loop {
        let recent = reader.recent_traces(50).await.expect("recent traces");
        if let Some(summary) = recent.traces.into_iter().find(|t| t.root_service == "edge" && t.span_count == 6) {
            break summary;
        }
        assert!(tokio::time::Instant::now() < deadline, "the registry never kept the call's six spans");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((summary.root_name.as_str(), summary.error_count), ("tools/call front", 2), "{summary:?}");
    let detail = reader.trace(&summary.trace_id).await.unwrap().expect("the trace");

    // The tree: each line's indent is its depth; names, services, kinds and parents as called.
    let shown = operator(&certs, &url, &["trace", &summary.trace_id]).await.success();
    let lines: Vec<&str> = shown.stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("trace {}  ", summary.trace_id)), "{}", shown.stdout);
    assert!(lines[0].ends_with("6 spans, 2 errors"), "{}", shown.stdout);
    let rows: Vec<(usize, String)> = lines[1..]
        .iter()
        .map(|line| {
            // `  +OFFSET  DURATION  {indent}SERVICE  NAME (KIND)…`: the indent follows the second "ms  ".
            let after = line.splitn(3, " ms  ").nth(2).unwrap_or_else(|| panic!("no offset and duration in {line:?}"));
            let depth = (after.len() - after.trim_start().len()) / 2;
            let text = after.split_whitespace().collect::<Vec<_>>().join(" ");
            (depth, text)
        })
        .collect();
    let expected = [
        (0, "edge tools/call front (client)"),
        (1, "front tools/call front (server)"),
        (2, "front tools/call add (client)"),
        (3, "calc tools/call add (server)"),
        (2, "front tools/call fail (client) ✗ tool 'fail' failed: fail always fails"),
        (3, "calc tools/call fail (server) ✗ HANDLER_FAILED"),
    ];
    assert_eq!(rows.len(), expected.len(), "{}", shown.stdout);
    for ((depth, text), (want_depth, want)) in rows.iter().zip(expected) {
        assert_eq!(*depth, want_depth, "depth of {text:?} in\n{}", shown.stdout);
        assert!(text.starts_with(want), "{text:?} should start with {want:?} in\n{}", shown.stdout);
    }
    // The links behind the indents: each span's parent is the one printed above it one level up.
    let by_name = |name: &str, kind: &str| {
        detail.spans.iter().find(|s| s.name == name && format!("{:?}", s.kind).to_lowercase() == kind).expect("span").clone()
    };
    let edge_client = by_name("tools/call front", "client");
    let front_server = by_name("tools/call front", "server");
    let add_client = by_name("tools/call add", "client");
    let add_server = by_name("tools/call add", "server");
    let fail_client = by_name("tools/call fail", "client");
    let fail_server = by_name("tools/call fail", "server");
    assert_eq!(edge_client.parent_span_id, None);
    assert_eq!(front_server.parent_span_id.as_ref(), Some(&edge_client.span_id));
    assert_eq!(add_client.parent_span_id.as_ref(), Some(&front_server.span_id));
    assert_eq!(add_server.parent_span_id.as_ref(), Some(&add_client.span_id));
    assert_eq!(fail_client.parent_span_id.as_ref(), Some(&front_server.span_id));
    assert_eq!(fail_server.parent_span_id.as_ref(), Some(&fail_client.span_id));
    assert_eq!((add_server.service.as_str(), front_server.service.as_str()), ("calc", "front"));
    assert_eq!(fail_server.attributes.get("error.type").map(String::as_str), Some("HANDLER_FAILED"));
    assert_eq!(add_server.attributes.get("toolmesh.peer.identity").map(String::as_str), Some("spiffe://toolmesh.local/agent/front"));

    // --last lists it, one line each; --json answers the API's document.
    let listed = operator(&certs, &url, &["trace", "--last", "10"]).await.success();
    let row = listed.stdout.lines().find(|l| l.starts_with(&summary.trace_id)).unwrap_or_else(|| panic!("not listed: {}", listed.stdout));
    assert!(row.contains("  6 spans  2 errors  edge: tools/call front"), "{row}");
    let json: Value = serde_json::from_str(&operator(&certs, &url, &["trace", "--last", "10", "--json"]).await.success().stdout).unwrap();
    assert!(json["traces"].as_array().unwrap().iter().any(|t| t["trace_id"] == summary.trace_id.as_str()), "{json}");
    let trees = operator(&certs, &url, &["trace", "--last", "10", "--tree"]).await.success();
    assert!(trees.stdout.contains(&shown.stdout), "--tree prints each trace as `trace ID` does:\n{}", trees.stdout);

    // Errors name the problem and the fix.
    let unknown = "0123456789abcdef0123456789abcdef";
    operator(&certs, &url, &["trace", unknown]).await.failure(1, "INVALID_ARGUMENTS", "keeps no span of trace 0123456789abcdef");
    operator(&certs, &url, &["trace", "xyz"]).await.failure(2, "INVALID_ARGUMENTS", "write its 32 hex digits");
    let agent_identity = {
        let mut command = toolmesh(&["trace", "--last", "1"]);
        command.args(certs.tls_args("calc")).env("TOOLMESH_REGISTRY_URL", &url);
        tokio::task::spawn_blocking(move || run(command)).await.unwrap()
    };
    agent_identity.failure(1, "PEER_IDENTITY_NOT_ALLOWED", "reading traces needs an admin identity");

    for agent in [edge, front, calc] {
        agent.shutdown().await;
    }
    drop(registry);
    operator(&certs, &url, &["trace", "--last", "1"]).await.failure(1, "REGISTRY_UNAVAILABLE", "check that `toolmesh registry` runs there");
}
