//! Shared fixtures: a CA and certificates on disk, agents with Rust handlers.
#![allow(dead_code)]

pub mod mcp;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use time::{Duration as TimeDuration, OffsetDateTime};
use toolmesh_ca::{write_pair, CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::tls::{Identity, TlsFiles};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("test mesh CA", 30).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `name` with the default SANs and returns its files.
    pub fn issue(&self, name: &str) -> TlsFiles {
        self.issue_with(name, |_| {})
    }

    pub fn issue_with(&self, name: &str, adjust: impl FnOnce(&mut LeafRequest)) -> TlsFiles {
        let mut request = LeafRequest::new(name, Role::Agent, DEFAULT_TRUST_DOMAIN, 5);
        adjust(&mut request);
        let issued = self.ca.issue(&request).unwrap();
        let (cert, key) = write_pair(self.dir.path(), name, &issued, true).unwrap();
        TlsFiles { cert, key, ca: self.path("ca.pem") }
    }

    pub fn issue_expired(&self, name: &str) -> TlsFiles {
        self.issue_with(name, |r| {
            r.not_before = OffsetDateTime::now_utc() - TimeDuration::days(10);
            r.not_after = OffsetDateTime::now_utc() - TimeDuration::days(1);
        })
    }

    pub fn identity(&self, name: &str) -> Arc<Identity> {
        Identity::load(&self.issue(name)).unwrap()
    }
}

pub fn config(name: &str, files: &TlsFiles) -> AgentConfig {
    let mut c = AgentConfig::from_env(name).unwrap();
    c.set("tls_cert", files.cert.to_str().unwrap()).unwrap();
    c.set("tls_key", files.key.to_str().unwrap()).unwrap();
    c.set("tls_ca", files.ca.to_str().unwrap()).unwrap();
    c
}

pub fn tool(name: &str, capability: &str, schema: Value, dependencies: Value) -> ToolInfo {
    serde_json::from_value(json!({
        "name": name, "capability": capability, "input_schema": schema, "dependencies": dependencies,
    }))
    .unwrap()
}

pub fn ab_schema() -> Value {
    json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
}

/// The handler of the test agents: `add`, `sum3` (via dependency 0), `echo_context`, `fail`, `slow`.
/// `sum3` needs the agent itself, which is set after start.
pub fn handler(agent: Arc<OnceLock<Agent>>) -> Arc<FnHandler<impl Fn(ToolInvocation, Completion) + Send + Sync>> {
    Arc::new(FnHandler(move |inv: ToolInvocation, done: Completion| {
        let agent = agent.clone();
        tokio::spawn(async move {
            let arg = |k: &str| inv.arguments.get(k).and_then(Value::as_i64).unwrap_or(0);
            match inv.tool.as_str() {
                "add" => done.ok(json!(arg("a") + arg("b"))),
                "sum3" => {
                    let agent = agent.get().unwrap();
                    let ctx = Some(inv.context.clone());
                    let first = agent.call("sum3", 0, json!({"a": arg("a"), "b": arg("b")}), ctx.clone()).await;
                    let result = match first {
                        Ok(ab) => agent.call("sum3", 0, json!({"a": ab, "b": arg("c")}), ctx).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(v) => done.ok(v),
                        Err(e) => done.complete(Err(toolmesh_core::host::HostError { message: e.message().into(), mesh_error: Some(e) })),
                    }
                }
                "echo_context" => done.ok(json!({
                    "headers": inv.context.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "trace_id": inv.context.trace_id(),
                    "span_id": inv.context.span_id(),
                    "origin": inv.context.origin.as_ref().map(|o| json!({"identity": o.identity, "signed": o.signed})),
                })),
                "fail" => done.err("boom"),
                // A tool's own error, with the code the caller asks for.
                "refuse" => {
                    let code = inv.arguments.get("code").and_then(Value::as_str).unwrap_or("unknown_sku");
                    done.complete(Err(toolmesh_core::host::HostError::tool_error(code, "no such sku: X", Some(json!({"sku": "X"})))))
                }
                // Calls refuse and lets its error escape unchanged.
                "refuse_via" => {
                    let agent = agent.get().unwrap();
                    match agent.call("refuse_via", 0, inv.arguments.clone(), Some(inv.context.clone())).await {
                        Ok(v) => done.ok(v),
                        Err(e) => done.complete(Err(toolmesh_core::host::HostError { message: e.message().into(), mesh_error: Some(e) })),
                    }
                }
                "slow" => {
                    if let Some(tag) = inv.arguments.get("tag").and_then(Value::as_str) {
                        slow_calls_started().lock().unwrap().insert(tag.to_owned());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(arg("ms") as u64)).await;
                    done.ok(json!("done"))
                }
                other => done.err(format!("no such tool {other}")),
            }
        });
    }))
}

/// The tags of the `slow` calls whose handler started (a test tags its call to know it is in
/// flight; the tests of a binary share this set).
fn slow_calls_started() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static STARTED: OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    STARTED.get_or_init(Default::default)
}

/// Waits until the handler of the `slow` call tagged `tag` started.
pub async fn until_slow_call_started(tag: &str) {
    wait_until(&format!("the slow call tagged {tag} reached its handler"), std::time::Duration::from_secs(10), || {
        slow_calls_started().lock().unwrap().contains(tag)
    })
    .await;
}

/// Waits until `condition` holds, polling it; panics saying `what` did not happen if it does not
/// within `within` (so a regression fails instead of hanging the run).
pub async fn wait_until(what: &str, within: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "waited {within:?}, yet never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub fn standard_tools() -> Vec<ToolInfo> {
    vec![
        tool("add", "add", ab_schema(), json!([])),
        tool("sum3", "sum3", json!({"type": "object", "properties": {}}), json!(["add"])),
        tool("echo_context", "echo_context", json!({"type": "object"}), json!([])),
        tool("fail", "fail", json!({"type": "object"}), json!([])),
        tool("refuse", "refuse", json!({"type": "object"}), json!([])),
        tool("refuse_via", "refuse_via", json!({"type": "object"}), json!(["refuse"])),
        tool("slow", "slow", json!({"type": "object", "properties": {"ms": {"type": "integer"}}}), json!([])),
    ]
}

pub async fn start_agent(name: &str, files: &TlsFiles, tools: Vec<ToolInfo>, adjust: impl FnOnce(&mut AgentConfig)) -> Agent {
    let mut c = config(name, files);
    adjust(&mut c);
    let slot = Arc::new(OnceLock::new());
    let agent = Agent::start(c, tools, handler(slot.clone())).await.unwrap();
    let _ = slot.set(agent.clone());
    agent
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A TCP relay that counts the connections it accepts: put in front of a listener, it shows
/// whether anything dialed that listener through the relay's address.
pub struct CountingRelay {
    pub addr: std::net::SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    /// Listens on `listener` and relays every connection to `target`.
    pub fn spawn(listener: tokio::net::TcpListener, target: std::net::SocketAddr) -> CountingRelay {
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingRelay { addr, connections, task }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `probe` until it gives a value (`Err` says why not yet); panics saying `what` did not
/// happen, with the last reason, if none came within `within`.
pub async fn eventually<T>(what: &str, within: std::time::Duration, mut probe: impl std::ops::AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(why) => assert!(std::time::Instant::now() < deadline, "waited {within:?}, yet never: {what} (last: {why})"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
