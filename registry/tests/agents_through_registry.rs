//! Agents (core, Rust handlers) finding and calling each other through a live registry over mTLS.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::pki::{write_pair, CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};
use toolmesh_core::ErrorKind;
use toolmesh_registry::{RegistryConfig, RunningRegistry};

const HEARTBEAT: Duration = Duration::from_millis(200);

struct Mesh {
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
}

impl Mesh {
    fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("mesh test CA", 1).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        Mesh { dir, ca }
    }

    fn files(&self, name: &str, role: Role) -> TlsFiles {
        let issued = self.ca.issue(&LeafRequest::new(name, role, DEFAULT_TRUST_DOMAIN, 1)).unwrap();
        let (cert, key) = write_pair(self.dir.path(), name, &issued, true).unwrap();
        TlsFiles { cert, key, ca: self.dir.path().join("ca.pem") }
    }

    fn identity(&self, name: &str, role: Role) -> Arc<Identity> {
        Identity::load(&self.files(name, role)).unwrap()
    }

    async fn registry(&self, port: u16) -> RunningRegistry {
        let mut config = RegistryConfig::new("127.0.0.1", port, self.identity("registry", Role::Registry));
        config.heartbeat_interval = HEARTBEAT;
        toolmesh_registry::start(config).await.unwrap()
    }

    /// An agent providing `add` (counting its calls) and `sum3` (adding through its dependency).
    async fn agent(&self, name: &str, registry: &str, tools: &[&str], calls: Arc<AtomicUsize>) -> Agent {
        let files = self.files(name, Role::Agent);
        let mut config = AgentConfig::from_env(name).unwrap();
        for (key, value) in [
            ("tls_cert", files.cert.to_str().unwrap()),
            ("tls_key", files.key.to_str().unwrap()),
            ("tls_ca", files.ca.to_str().unwrap()),
            ("registry_url", registry),
            ("heartbeat_interval_ms", "200"),
        ] {
            config.set(key, value).unwrap();
        }
        let all: Vec<ToolInfo> = serde_json::from_value(json!([
            {"name": "add", "capability": "add", "input_schema": {"type": "object", "required": ["a", "b"]}},
            {"name": "sum3", "capability": "sum3", "dependencies": ["add"]},
        ]))
        .unwrap();
        let tools = all.into_iter().filter(|t| tools.contains(&t.name.as_str())).collect();
        let me: Arc<OnceLock<Agent>> = Arc::new(OnceLock::new());
        let handler = {
            let me = me.clone();
            FnHandler(move |inv: ToolInvocation, done: Completion| {
                let me = me.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    let n = |k: &str| inv.arguments.get(k).and_then(Value::as_i64).unwrap_or(0);
                    if inv.tool == "add" {
                        calls.fetch_add(1, Ordering::Relaxed);
                        return done.ok(json!(n("a") + n("b")));
                    }
                    let agent = me.get().unwrap();
                    let ctx = Some(inv.context.clone());
                    let result = match agent.call("sum3", 0, json!({"a": n("a"), "b": n("b")}), ctx.clone()).await {
                        Ok(ab) => agent.call("sum3", 0, json!({"a": ab, "b": n("c")}), ctx).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(v) => done.ok(v),
                        Err(e) => done.complete(Err(HostError { message: e.message().to_owned(), mesh_error: Some(e) })),
                    }
                });
            })
        };
        let agent = Agent::start(config, tools, Arc::new(handler)).await.unwrap();
        let _ = me.set(agent.clone());
        assert!(agent.wait_registered(Duration::from_secs(5)).await, "{name} did not register");
        agent
    }
}

async fn sum3(client: &McpClient, a: &Agent, i: i64) -> Result<Value, toolmesh_core::Error> {
    client
        .call_tool(a.endpoint(), "sum3", &json!({"a": i, "b": 1, "c": 1}), &RequestContext::default())
        .await
        .map_err(|e| e.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_across_providers_and_stopping_one_loses_none() {
    let mesh = Mesh::new();
    let registry = mesh.registry(0).await;
    let (b1_calls, b2_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let b1 = mesh.agent("b1", &registry.url(), &["add"], b1_calls.clone()).await;
    let _b2 = mesh.agent("b2", &registry.url(), &["add"], b2_calls.clone()).await;
    let a = mesh.agent("a", &registry.url(), &["sum3"], Arc::default()).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();

    // A may have registered before learning of both providers: wait for its topology to settle.
    let deadline = Instant::now() + Duration::from_secs(3);
    while b1_calls.load(Ordering::Relaxed) == 0 || b2_calls.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "calls never reached both providers");
        sum3(&client, &a, 1).await.unwrap();
    }

    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b1.shutdown().await;
    });
    let mut failures = Vec::new();
    for i in 0..150 {
        match sum3(&client, &a, i).await {
            Ok(v) => assert_eq!(v, json!(i + 2)),
            Err(e) => failures.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    stopper.await.unwrap();
    assert!(failures.is_empty(), "calls lost while a provider stopped: {failures:?}");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_is_callable_within_a_second_and_an_outage_of_the_registry_is_survived() {
    let mesh = Mesh::new();
    let registry = mesh.registry(0).await;
    let url = registry.url();
    let port = registry.local_addr().port();
    let a = mesh.agent("a", &url, &["sum3"], Arc::default()).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
    let e = sum3(&client, &a, 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DependencyUnresolved, "{e}");

    let b = mesh.agent("b", &url, &["add"], Arc::default()).await;
    let registered = Instant::now();
    while sum3(&client, &a, 1).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let visible_after = registered.elapsed();
    assert!(visible_after < Duration::from_secs(1), "new provider took {visible_after:?} to become callable");

    registry.shutdown().await;
    for i in 0..20 {
        assert_eq!(sum3(&client, &a, i).await.unwrap(), json!(i + 2), "call {i} failed with the registry down");
    }
    tokio::time::sleep(HEARTBEAT * 2).await; // the agents notice the outage
    assert_eq!(sum3(&client, &a, 5).await.unwrap(), json!(7));

    let registry = mesh.registry(port).await;
    let operator = RegistryClient::new(&url, &mesh.identity("operator", Role::Operator)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ids: Vec<String> = operator.list_agents().await.unwrap().agents.into_iter().map(|x| x.agent_id).collect();
        if ids.contains(&a.agent_id().to_owned()) && ids.contains(&b.agent_id().to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "agents did not re-register after the restart: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sum3(&client, &a, 1).await.unwrap(), json!(3));
    a.shutdown().await;
    b.shutdown().await;
    registry.shutdown().await;
}
