//! The access policy at the registry, over real mutual TLS: applied and kept across restarts,
//! `provide` enforced at registration and in topologies, `discover` filtering each agent's
//! topology, and a policy pushed to real agents, whose callee enforces `call` within one
//! heartbeat.

mod common;

use common::{eventually, registration_as, Mesh};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolmesh_ca::{write_pair, Role};
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::policy::{parse_document, PolicyDocument};
use toolmesh_core::registry_api::{ToolInfo, Topology};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};
use toolmesh_core::ErrorKind;
use toolmesh_registry::{RegistryConfig, RunningRegistry};

const HEARTBEAT: Duration = Duration::from_millis(200);

fn policy(yaml: &str) -> PolicyDocument {
    parse_document(yaml).expect("policy document")
}

fn client(mesh: &Mesh, registry: &RunningRegistry, name: &str, role: Role) -> RegistryClient {
    RegistryClient::new(&registry.url(), &mesh.identity(name, role)).expect("registry client")
}

async fn start_in(mesh: &Mesh, state_dir: &std::path::Path) -> RunningRegistry {
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.heartbeat_interval = HEARTBEAT;
    config.state_dir = Some(state_dir.to_owned());
    toolmesh_registry::start(config).await.expect("start registry")
}

fn provider_names(topology: &Topology) -> Vec<String> {
    topology.dependencies.iter().flat_map(|d| d.providers.iter().map(|p| p.agent_name.clone())).collect()
}

#[tokio::test]
async fn a_policy_is_applied_by_admins_versioned_and_kept_across_restarts() {
    let mesh = Mesh::new();
    let state = tempfile::tempdir().expect("tempdir");
    let registry = start_in(&mesh, state.path()).await;
    let (ops, alice) = (client(&mesh, &registry, "ops", Role::Operator), client(&mesh, &registry, "alice", Role::Agent));

    let none = alice.policy().await.expect_err("no policy yet");
    assert!(none.message().contains("no access policy has been applied"), "{none}");
    let denied = alice.apply_policy(&policy("default: deny\n")).await.expect_err("an agent is no admin");
    assert_eq!(denied.kind(), ErrorKind::PeerIdentityNotAllowed, "{denied}");
    assert!(denied.message().contains("applying a policy needs an admin identity"), "{denied}");

    assert_eq!(ops.apply_policy(&policy("default: deny\n")).await.expect("apply").version, 1);
    let second = policy("rules:\n  - name: mesh-adds\n    target: { tools: [add] }\n");
    assert_eq!(ops.apply_policy(&second).await.expect("apply").version, 2);
    let held = alice.policy().await.expect("any member reads it");
    assert_eq!((held.version, held.policy.clone()), (2, second.clone()));

    let bad = policy("rules:\n  - name: fine\n  - name: broken\n    action: deny\n    limits: { concurrency: 1 }\n");
    let refused = ops.apply_policy(&bad).await.expect_err("a deny rule with limits does not compile");
    assert!(refused.message().contains("rules[1] ('broken')") && refused.message().contains("limits"), "{refused}");
    assert_eq!(alice.policy().await.expect("unchanged").version, 2, "a refused policy changes nothing");

    let file = state.path().join(toolmesh_registry::STATE_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).expect("the state file").permissions().mode() & 0o777, 0o600);
    }
    registry.shutdown().await;

    // A restart keeps the policy and its version; the next apply goes on from there.
    let registry = start_in(&mesh, state.path()).await;
    let (ops, alice) = (client(&mesh, &registry, "ops", Role::Operator), client(&mesh, &registry, "alice", Role::Agent));
    assert_eq!(alice.policy().await.expect("kept").policy, second);
    let registered = alice.register(&registration_as("alice", "alice-1", &[("add", "add")], &[])).await.expect("register");
    assert_eq!(registered.policy_version, Some(2), "registrations announce the kept version");
    assert_eq!(ops.apply_policy(&second).await.expect("apply").version, 3);
    registry.shutdown().await;

    // A corrupt file stops the start, naming the file and the fix.
    let mut stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("JSON");
    stored["policy"] = serde_json::json!({"version": 3, "policy": {"rules": [{"nam": 1}]}});
    std::fs::write(&file, stored.to_string()).expect("corrupt it");
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.state_dir = Some(state.path().to_owned());
    let refused = toolmesh_registry::start(config).await.err().expect("a corrupt policy refuses the start");
    assert!(
        refused.message().contains(toolmesh_registry::STATE_FILE) && refused.message().contains("restore it from a backup"),
        "{refused}"
    );
}

const PROVIDE_AND_DISCOVER: &str = "
default: deny
rules:
  - name: calc-provides-math
    phases: [provide]
    source: { agents: [calc] }
    target: { capabilities: [math] }
  - name: consumers-provide-apps
    phases: [provide]
    source: { agents: [front, other] }
    target: { capabilities: [app] }
  - name: front-uses-math
    source: { agents: [front] }
    target: { capabilities: [math] }
";

#[tokio::test]
async fn provide_is_enforced_at_registration_and_discover_in_each_topology() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, HEARTBEAT).await;
    let ops = client(&mesh, &registry, "ops", Role::Operator);
    ops.apply_policy(&policy(PROVIDE_AND_DISCOVER)).await.expect("apply");

    // Only calc may provide math.
    let evil = client(&mesh, &registry, "evil", Role::Agent);
    let refused = evil.register(&registration_as("evil", "evil-1", &[("add", "math")], &[])).await.expect_err("evil may not provide math");
    assert_eq!(refused.kind(), ErrorKind::RegistrationRefused, "{refused}");
    for part in ["tool 'add'", "capability 'math'", "'default: deny'", "toolmesh policy apply"] {
        assert!(refused.message().contains(part), "{part} missing: {refused}");
    }
    let calc = client(&mesh, &registry, "calc", Role::Agent);
    calc.register(&registration_as("calc", "calc-1", &[("add", "math")], &[])).await.expect("calc provides math");

    // front may discover math; other may not, and sees no provider for the same dependency.
    let front = client(&mesh, &registry, "front", Role::Agent);
    let other = client(&mesh, &registry, "other", Role::Agent);
    let front_topology =
        front.register(&registration_as("front", "front-1", &[("go", "app")], &[json!("math")])).await.expect("front").topology;
    assert_eq!(provider_names(&front_topology), ["calc"]);
    let other_topology =
        other.register(&registration_as("other", "other-1", &[("go", "app")], &[json!("math")])).await.expect("other").topology;
    assert_eq!(other_topology.dependencies.len(), 1);
    assert!(provider_names(&other_topology).is_empty(), "other may not discover math: {other_topology:?}");
    let resolved = other.resolve(&toolmesh_core::registry_api::DependencySpec::capability("math")).await.expect("resolve");
    assert!(resolved.providers.is_empty(), "resolve is filtered too: {resolved:?}");
    let seen: Vec<String> = other.list_agents().await.expect("list").agents.into_iter().map(|a| a.name).collect();
    assert_eq!(seen, ["other"], "an agent lists only what it may discover (and its own)");
    let all: Vec<String> = ops.list_agents().await.expect("list").agents.into_iter().map(|a| a.name).collect();
    assert_eq!(all, ["calc", "front", "other"], "admins see everything");

    // The refusal is audited with the policy rule.
    let audit = ops.audit(Some(10), Some("registration_refused")).await.expect("audit");
    let event = audit.events.iter().find(|e| e.caller.ends_with("/agent/evil")).expect("evil's refusal is audited");
    assert_eq!((event.rule.as_str(), event.agent.as_deref(), event.tool.as_deref()), ("default: deny", Some("evil"), Some("add")));

    // Revoking calc's provide rule drops it from front's topology by the next heartbeat.
    let revoked = PROVIDE_AND_DISCOVER.replace("agents: [calc]", "agents: [nobody]");
    ops.apply_policy(&policy(&revoked)).await.expect("apply");
    let beat = front.beat("front-1", front_topology.version).await.expect("heartbeat").expect("front is registered");
    assert_eq!(beat.policy_version, Some(2));
    let topology = beat.topology.expect("the topology changed");
    assert!(provider_names(&topology).is_empty(), "calc may no longer provide math: {topology:?}");
    registry.shutdown().await;
}

/// A core agent with one tool, answering `{"sum": a + b}` and counting its calls.
async fn agent(
    mesh: &Mesh,
    dir: &std::path::Path,
    registry: &str,
    name: &str,
    tool: Value,
    calls: Arc<AtomicUsize>,
) -> (Agent, Arc<Identity>) {
    let issued = mesh.issue(name, Role::Agent);
    let (cert, key) = write_pair(dir, name, &issued, true).expect("write pair");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, mesh.ca.cert_pem()).expect("write CA");
    let files = TlsFiles { cert, key, ca };
    let mut config = AgentConfig::from_env(name).expect("config");
    let heartbeat = HEARTBEAT.as_millis().to_string();
    for (key, value) in [
        ("tls_cert", files.cert.to_str().expect("path")),
        ("tls_key", files.key.to_str().expect("path")),
        ("tls_ca", files.ca.to_str().expect("path")),
        ("registry_url", registry),
        ("heartbeat_interval_ms", &heartbeat),
    ] {
        config.set(key, value).expect("option");
    }
    let tools: Vec<ToolInfo> = serde_json::from_value(json!([tool])).expect("tool");
    let handler = FnHandler(move |inv: ToolInvocation, done: Completion| {
        calls.fetch_add(1, Ordering::Relaxed);
        let n = |k: &str| inv.arguments.get(k).and_then(Value::as_i64).unwrap_or(0);
        done.ok(json!({"sum": n("a") + n("b")}));
    });
    let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("start agent");
    assert!(agent.wait_registered(Duration::from_secs(5)).await, "{name} did not register");
    (agent, Identity::load(&files).expect("identity"))
}

const OTHER_MAY_NOT_USE_MATH: &str = "
rules:
  - name: other-keeps-off-math
    action: deny
    source: { agents: [other] }
    target: { capabilities: [math] }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_applied_at_the_registry_is_enforced_by_the_callee_within_a_heartbeat() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = mesh.start_registry(0, HEARTBEAT).await;
    let ops = client(&mesh, &registry, "ops", Role::Operator);
    ops.apply_policy(&policy(OTHER_MAY_NOT_USE_MATH)).await.expect("apply");
    let url = registry.url();
    let calc_calls = Arc::new(AtomicUsize::new(0));
    let (calc, _) = agent(&mesh, dir.path(), &url, "calc", json!({"name": "add", "capability": "math"}), calc_calls.clone()).await;
    let uses_math = |name: &str| json!({"name": name, "capability": "app", "dependencies": ["math"]});
    let (front, front_identity) = agent(&mesh, dir.path(), &url, "front", uses_math("go"), Arc::default()).await;
    let (other, _) = agent(&mesh, dir.path(), &url, "other", uses_math("go"), Arc::default()).await;

    let sum = front.call("go", 0, json!({"a": 2, "b": 3}), None).await.expect("front calls calc:add");
    assert_eq!(sum["sum"], 5);
    let unresolved = other.call("go", 0, json!({"a": 2, "b": 3}), None).await.expect_err("other discovers no math provider");
    assert_eq!(unresolved.kind(), ErrorKind::DependencyUnresolved, "{unresolved}");
    assert_eq!(calc_calls.load(Ordering::Relaxed), 1, "other's call never reached calc");

    // Deny front calling add: calc takes the policy at its next heartbeat and refuses.
    let denying = format!("{OTHER_MAY_NOT_USE_MATH}  - name: no-front-adds\n    action: deny\n    phases: [call]\n    source: {{ agents: [front] }}\n    target: {{ tools: [add] }}\n");
    ops.apply_policy(&policy(&denying)).await.expect("apply");
    let applied = Instant::now();
    let refusal = loop {
        match front.call("go", 0, json!({"a": 1, "b": 1}), None).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(applied.elapsed() < HEARTBEAT * 5, "still allowed {:?} after the apply", applied.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let took = applied.elapsed();
    assert_eq!(refusal.kind(), ErrorKind::CallDenied, "{refusal}");
    assert_eq!(refusal.code(), 7001);
    assert!(refusal.message().contains("no-front-adds"), "{refusal}");
    assert!(
        took <= HEARTBEAT + Duration::from_millis(400),
        "enforced {took:?} after the apply; expected within one heartbeat ({HEARTBEAT:?})"
    );
    // The callee refuses front's identity whatever client it uses.
    let direct = McpClient::new(&front_identity).expect("client");
    let denied = direct.call_tool(calc.endpoint(), "add", &json!({"a": 1, "b": 1}), &RequestContext::default()).await.expect_err("denied");
    assert_eq!(denied.error.kind(), ErrorKind::CallDenied, "{}", denied.error);
    // calc reports its refusals with its next heartbeat: the registry's audit shows them.
    let reported = eventually("calc's refusals reached the registry's audit", HEARTBEAT * 10, async || {
        let events = ops.audit(Some(100), Some("call_denied")).await.expect("audit").events;
        events.into_iter().find(|e| e.rule == "no-front-adds").ok_or_else(|| "no event of the rule no-front-adds yet".to_owned())
    })
    .await;
    assert_eq!((reported.caller.as_str(), reported.tool.as_deref()), ("spiffe://toolmesh.local/agent/front", Some("add")));
    assert_eq!(reported.agent.as_deref(), Some(calc.agent_id()));

    for agent in [front, other, calc] {
        agent.shutdown().await;
    }
    registry.shutdown().await;
}
