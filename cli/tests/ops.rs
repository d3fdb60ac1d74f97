//! `toolmesh list` and `toolmesh call` against a registry process and a live agent (the core's
//! agent, in this test process), all over mutual TLS with the development certificates.

mod common;

use common::{run, toolmesh, Certs, RegistryProcess, Run};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::registry_api::{RegisterRequest, ToolInfo};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};

/// A `calc` agent with `add` (echoing the propagated `x-tenant` header) and `fail`.
async fn start_calc(certs: &Certs, registry_url: &str) -> Agent {
    let mut config = AgentConfig::from_env("calc").expect("agent config");
    for (key, value) in [
        ("registry_url", registry_url.to_owned()),
        ("tls_cert", certs.path("calc.pem").display().to_string()),
        ("tls_key", certs.path("calc.key").display().to_string()),
        ("tls_ca", certs.path("ca.pem").display().to_string()),
        ("propagate_headers", "x-tenant".to_owned()),
    ] {
        config.set(key, &value).expect("agent option");
    }
    let tools: Vec<ToolInfo> = serde_json::from_value(json!([
        {"name": "add", "capability": "add", "version": "1.2.0", "tags": ["math"], "annotations": {"readOnlyHint": true}},
        {"name": "fail", "capability": "fail"},
        {"name": "refuse", "capability": "refuse"},
    ]))
    .expect("tools");
    let handler = FnHandler(|invocation: ToolInvocation, completion: Completion| match invocation.tool.as_str() {
        "add" => {
            let sum = invocation.arguments["a"].as_i64().unwrap_or(0) + invocation.arguments["b"].as_i64().unwrap_or(0);
            let header = |name| invocation.context.header(name);
            completion
                .ok(json!({"sum": sum, "tenant": header("x-tenant"), "note": header("x-note"), "authorization": header("authorization")}));
        }
        "refuse" => {
            completion.complete(Err(toolmesh_core::host::HostError::tool_error("unknown_sku", "no such sku: X", Some(json!({"sku": "X"})))))
        }
        _ => completion.err("the fail tool always fails"),
    });
    let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("start agent");
    assert!(agent.wait_registered(Duration::from_secs(10)).await, "the agent did not register");
    agent
}

/// Runs `toolmesh` with the operator identity, off the async runtime the agent is served on.
async fn operator(certs: &Certs, registry_url: &str, args: &[&str]) -> Run {
    let mut command = toolmesh(args);
    command.args(certs.tls_args("operator")).env("TOOLMESH_REGISTRY_URL", registry_url);
    tokio::task::spawn_blocking(move || run(command)).await.expect("run toolmesh")
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_call_reach_a_live_agent() {
    let certs = Certs::init("calc");
    let registry = RegistryProcess::start(&certs, &[]);
    let agent = start_calc(&certs, &registry.url).await;
    let id = agent.agent_id().to_owned();

    let listed = operator(&certs, &registry.url, &["list"]).await.success();
    let row = listed.stdout.lines().find(|l| l.starts_with("calc ")).unwrap_or_else(|| panic!("no calc row: {}", listed.stdout));
    for want in [id.as_str(), "healthy", agent.endpoint(), "add: add@1.2.0 [math]"] {
        assert!(row.contains(want), "{want} missing from {row}");
    }
    assert!(listed.stdout.contains("fail: fail@1.0.0"), "{}", listed.stdout);
    let listed = json_of(&operator(&certs, &registry.url, &["list", "--json"]).await.success());
    assert_eq!(listed["agents"][0]["identity"], "spiffe://toolmesh.local/agent/calc");
    assert_eq!(listed["agents"][0]["tools"][0]["annotations"], json!({"readOnlyHint": true}));

    // --header reaches the handler, allow-listed (x-tenant) or not (x-note); credentials only
    // when the agent's allow-list names them.
    let args =
        ["call", "add", r#"{"a": 2, "b": 3}"#, "--header", "X-Tenant=acme", "--header", "x-note=hi", "--header", "Authorization=Bearer t"];
    let by_capability = operator(&certs, &registry.url, &args).await;
    assert_eq!(json_of(&by_capability.success()), json!({"sum": 5, "tenant": "acme", "note": "hi", "authorization": null}));
    let by_name = operator(&certs, &registry.url, &["call", "calc:add", r#"{"a": 1, "b": 1}"#]).await;
    assert_eq!(json_of(&by_name.success())["sum"], 2);
    let help = toolmesh(&["call", "--help"]).output().expect("toolmesh call --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("The handler it reaches sees it") && !help.contains("propagate with the call"), "{help}");
    let by_id = operator(&certs, &registry.url, &["call", &format!("{id}:add"), r#"{"a": 4}"#]).await;
    assert_eq!(json_of(&by_id.success())["sum"], 4);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_name_the_problem() {
    let certs = Certs::init("calc");
    let registry = RegistryProcess::start(&certs, &[]);
    let agent = start_calc(&certs, &registry.url).await;

    let call = |args: &'static [&'static str]| operator(&certs, &registry.url, args);
    call(&["call", "fail"]).await.failure(1, "TOOL_FAILED", "the fail tool always fails");
    let refused = call(&["call", "refuse"]).await.failure(1, "TOOL_ERROR unknown_sku", "no such sku: X");
    assert!(refused.stderr.contains("toolmesh: error data: {\"sku\":\"X\"}\n"), "{}", refused.stderr);
    call(&["call", "calc:mul"]).await.failure(1, "UNKNOWN_TOOL", "its tools: add, fail, refuse");
    call(&["call", "nobody:add"]).await.failure(1, "UNKNOWN_AGENT", "no agent named 'nobody'");
    call(&["call", "mul"]).await.failure(1, "DEPENDENCY_UNRESOLVED", "capability 'mul'");
    call(&["call", "add", "{not json"]).await.failure(2, "INVALID_CONFIG", "not valid JSON");
    call(&["call", "add", "[1, 2]"]).await.failure(2, "INVALID_CONFIG", "must be a JSON object");
    call(&["call", "add", "--header", "nameonly"]).await.failure(2, "INVALID_CONFIG", "NAME=VALUE");

    agent.shutdown().await;
    let gone = call(&["call", "add", "{}"]).await;
    gone.failure(1, "DEPENDENCY_UNRESOLVED", "capability 'add'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_moves_past_a_provider_that_cannot_be_reached() {
    let certs = Certs::init("calc,ghost");
    let registry = RegistryProcess::start(&certs, &[]);
    let agent = start_calc(&certs, &registry.url).await;
    // A crashed agent the registry has not evicted yet: registered, ranked first, unreachable.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let files = TlsFiles { cert: certs.path("ghost.pem"), key: certs.path("ghost.key"), ca: certs.path("ca.pem") };
    let ghost = Identity::load(&files).expect("ghost identity");
    let client = RegistryClient::new(&registry.url, &ghost).expect("registry client");
    let tools = serde_json::from_value(json!([{"name": "add", "capability": "add"}])).expect("tools");
    let endpoint = format!("https://127.0.0.1:{closed_port}/mcp");
    let registration = RegisterRequest { agent_id: "0-ghost".into(), name: "ghost".into(), endpoint, tools };
    client.register(&registration).await.expect("register ghost");

    let answered = operator(&certs, &registry.url, &["call", "add", r#"{"a": 20, "b": 22}"#]).await.success();
    assert_eq!(json_of(&answered)["sum"], 42);
    assert!(answered.stderr.contains("0-ghost"), "the skipped provider is reported: {}", answered.stderr);
    operator(&certs, &registry.url, &["call", "ghost:add"]).await.failure(1, "CONNECT_FAILED", &closed_port.to_string());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_a_refused_squatter_for_operators_only() {
    let certs = Certs::init("calc,ghost");
    let registry = RegistryProcess::start(&certs, &[]);
    let files = TlsFiles { cert: certs.path("ghost.pem"), key: certs.path("ghost.key"), ca: certs.path("ca.pem") };
    let ghost = RegistryClient::new(&registry.url, &Identity::load(&files).expect("ghost identity")).expect("registry client");
    let tools = serde_json::from_value(json!([{"name": "add", "capability": "add"}])).expect("tools");
    let squat = RegisterRequest { agent_id: "calc-0bad".into(), name: "calc".into(), endpoint: "https://127.0.0.1:9/mcp".into(), tools };
    let refused = ghost.register(&squat).await.expect_err("ghost may not register as calc");
    assert!(refused.message().contains("toolmesh certs issue calc"), "{refused}");

    let audit = operator(&certs, &registry.url, &["audit"]).await.success();
    let line = audit.stdout.lines().find(|l| l.contains("name_not_in_certificate")).unwrap_or_else(|| panic!("{}", audit.stdout));
    assert!(
        line.contains("registration_refused") && line.contains("caller=spiffe://toolmesh.local/agent/ghost") && line.contains("tool=add"),
        "{line}"
    );
    assert!(line.contains(" agent=calc "), "{line}");
    let as_json =
        json_of(&operator(&certs, &registry.url, &["audit", "--json", "--kind", "registration_refused", "--limit", "1"]).await.success());
    assert_eq!(as_json["events"][0]["rule"], "name_not_in_certificate");

    let mut command = toolmesh(&["audit"]);
    command.args(certs.tls_args("calc")).env("TOOLMESH_REGISTRY_URL", &registry.url);
    let denied = tokio::task::spawn_blocking(move || run(command)).await.expect("run toolmesh");
    denied.failure(1, "PEER_IDENTITY_NOT_ALLOWED", "reading the audit needs an admin identity");
}
