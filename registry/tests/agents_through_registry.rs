//! Agents (core, Rust handlers) finding and calling each other through a live registry over mTLS.

mod common;

use common::{eventually, get, sample, wait_until};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use toolmesh_ca::{write_pair, CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::discovery::Discovery;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::{DependencySpec, RegisterRequest, ToolInfo};
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
        self.registry_beating(port, HEARTBEAT).await
    }

    async fn registry_beating(&self, port: u16, heartbeat: Duration) -> RunningRegistry {
        let mut config = RegistryConfig::new("127.0.0.1", port, self.identity("registry", Role::Registry));
        config.heartbeat_interval = heartbeat;
        toolmesh_registry::start(config).await.unwrap()
    }

    fn operator(&self, registry: &str) -> RegistryClient {
        RegistryClient::new(registry, &self.identity("operator", Role::Operator)).unwrap()
    }

    /// An agent providing `add` (counting its calls) and `sum3` (adding through its dependency).
    async fn agent(&self, name: &str, registry: &str, tools: &[&str], calls: Arc<AtomicUsize>) -> Agent {
        self.agent_beating(name, registry, tools, calls, Some(HEARTBEAT)).await
    }

    /// [`Mesh::agent`] with its own heartbeat period (`None`: the default).
    async fn agent_beating(
        &self,
        name: &str,
        registry: &str,
        tools: &[&str],
        calls: Arc<AtomicUsize>,
        heartbeat: Option<Duration>,
    ) -> Agent {
        let agent = self.start_as(name, name, registry, tools, calls, heartbeat, |_| {}).await;
        assert!(agent.wait_registered(Duration::from_secs(5)).await, "{name} did not register");
        agent
    }

    /// An agent named `name` holding a certificate for `cert`, started without waiting for it
    /// to register; `adjust` changes its configuration.
    #[allow(clippy::too_many_arguments)]
    async fn start_as(
        &self,
        cert: &str,
        name: &str,
        registry: &str,
        tools: &[&str],
        calls: Arc<AtomicUsize>,
        heartbeat: Option<Duration>,
        adjust: impl FnOnce(&mut AgentConfig),
    ) -> Agent {
        let files = self.files(cert, Role::Agent);
        let mut config = AgentConfig::from_env(name).unwrap();
        let heartbeat_ms = heartbeat.map(|h| h.as_millis().to_string());
        let mut settings = vec![
            ("tls_cert", files.cert.to_str().unwrap()),
            ("tls_key", files.key.to_str().unwrap()),
            ("tls_ca", files.ca.to_str().unwrap()),
            ("registry_url", registry),
        ];
        if let Some(ms) = &heartbeat_ms {
            settings.push(("heartbeat_interval_ms", ms));
        }
        for (key, value) in settings {
            config.set(key, value).unwrap();
        }
        let all: Vec<ToolInfo> = serde_json::from_value(json!([
            {"name": "add", "capability": "add", "input_schema": {"type": "object", "required": ["a", "b"]}},
            {"name": "sum3", "capability": "sum3", "dependencies": ["add"]},
            // Slow adders (20 ms), so that calls are in flight when a provider dies: one declares
            // itself idempotent (MCP's annotation), the other does not.
            {"name": "add_idempotent", "capability": "add_idempotent", "annotations": {"idempotentHint": true}},
            {"name": "add_once", "capability": "add_once"},
            {"name": "use_idempotent", "capability": "use_idempotent", "dependencies": ["add_idempotent"]},
            {"name": "use_once", "capability": "use_once", "dependencies": ["add_once"]},
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
                    if inv.tool.starts_with("add_") {
                        calls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
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
        adjust(&mut config);
        let agent = Agent::start(config, tools, Arc::new(handler)).await.unwrap();
        let _ = me.set(agent.clone());
        agent
    }
}

/// An agent running in a runtime of its own, on its own threads, like another process: killing
/// it ends every task of that runtime at once (its listener, connections and heartbeats),
/// without a deregistration, as SIGKILL would.
struct Process {
    runtime: Option<tokio::runtime::Runtime>,
    agent: Agent,
}

impl Process {
    fn start(mesh: &Mesh, name: &str, registry: &str, tools: &[&str], calls: Arc<AtomicUsize>) -> Process {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
                    let agent = runtime.block_on(mesh.agent(name, registry, tools, calls));
                    Process { runtime: Some(runtime), agent }
                })
                .join()
                .unwrap()
        })
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Kills it and waits until its port refuses connections (the runtime's tasks are dropped
    /// in the background, as the kernel closes a killed process's sockets).
    async fn kill_and_wait(&mut self) {
        self.kill();
        let started = Instant::now();
        while TcpStream::connect(self.agent.local_addr()).await.is_ok() {
            assert!(started.elapsed() < Duration::from_secs(5), "the killed agent's port still takes connections");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn status_of(operator: &RegistryClient, agent_id: &str) -> String {
    let agents = operator.list_agents().await.unwrap().agents;
    agents.into_iter().find(|a| a.agent_id == agent_id).map_or_else(|| "absent".into(), |a| a.status)
}

/// Waits until `agent_id` is listed `unreachable`; how long that took. A failure also tells how
/// many long polls the registry holds (from its health listener's /metrics): one still held
/// means the registry never saw the killed agent's connection close.
async fn until_unreachable(operator: &RegistryClient, health: SocketAddr, agent_id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    eventually(&format!("{agent_id} listed unreachable"), within, async || match status_of(operator, agent_id).await.as_str() {
        "unreachable" => Ok(()),
        status => {
            let waiters = sample(&get(health, "/metrics").await.2, "toolmesh_registry_long_poll_waiters");
            Err(format!("listed {status}, long polls held: {waiters:?}"))
        }
    })
    .await;
    started.elapsed()
}

async fn sum3(client: &McpClient, a: &Agent, i: i64) -> Result<Value, toolmesh_core::Error> {
    client.call_tool(a.endpoint(), "sum3", &json!({"a": i, "b": 1, "c": 1}), &RequestContext::default()).await.map_err(|e| e.error)
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

    // b1 stops once the calls are under way (after the 25th), while they go on.
    let (under_way, stop_b1) = tokio::sync::oneshot::channel();
    let stopper = tokio::spawn(async move {
        stop_b1.await.expect("the calls were under way");
        b1.shutdown().await;
    });
    let mut under_way = Some(under_way);
    let mut failures = Vec::new();
    for i in 0..150 {
        if i == 25 {
            under_way.take().expect("sent once").send(()).expect("the stopper waits");
        }
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
    while let Err(e) = sum3(&client, &a, 1).await {
        // A bound far past the 1 s asserted below, so that a regression fails instead of hanging.
        assert!(registered.elapsed() < Duration::from_secs(5), "a could not call the new provider b 5 s after it registered: {e}");
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
    wait_listed(&operator, &[&a, &b], &[], Duration::from_secs(5)).await;
    assert_eq!(sum3(&client, &a, 1).await.unwrap(), json!(3));
    a.shutdown().await;
    b.shutdown().await;
    registry.shutdown().await;
}

/// Waits until the registry lists `present` and not `absent`.
async fn wait_listed(operator: &RegistryClient, present: &[&Agent], absent: &[&Agent], within: Duration) {
    let what = format!("the registry lists {:?} and not {:?}", ids_of(present), ids_of(absent));
    eventually(&what, within, async || {
        let ids: Vec<String> = match operator.list_agents().await {
            Ok(list) => list.agents.into_iter().map(|x| x.agent_id).collect(),
            Err(e) => return Err(e.to_string()),
        };
        let listed = |a: &&Agent| ids.iter().any(|id| id == a.agent_id());
        if present.iter().all(listed) && !absent.iter().any(listed) {
            Ok(())
        } else {
            Err(format!("it lists {ids:?}"))
        }
    })
    .await
}

fn ids_of(agents: &[&Agent]) -> Vec<String> {
    agents.iter().map(|a| a.agent_id().to_owned()).collect()
}

/// Calls `a`'s sum3 back to back until stopped: (calls made, failures with their time).
struct Caller {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Caller {
    fn start(client: McpClient, a: Agent) -> Caller {
        let (stop, made) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let started = Instant::now();
        let task = tokio::spawn({
            let (stop, made) = (stop.clone(), made.clone());
            async move {
                let (mut calls, mut failures) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let i = calls as i64;
                    match sum3(&client, &a, i).await {
                        Ok(v) if v == json!(i + 2) => {}
                        Ok(v) => failures.push(format!("{:?}: call {i} answered {v}", started.elapsed())),
                        Err(e) => failures.push(format!("{:?}: call {i}: {e}", started.elapsed())),
                    }
                    calls += 1;
                    made.store(calls, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (calls, failures)
            }
        });
        Caller { stop, made, task }
    }

    /// How many calls it made so far.
    fn made(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }

    /// Waits until it made `more` calls beyond those made so far.
    async fn until_more_calls(&self, more: usize, why: &str) {
        let target = self.made() + more;
        wait_until(&format!("{more} more calls ({why})"), Duration::from_secs(10), || self.made() >= target).await;
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A TCP relay to the registry that can be shut: one agent's network path to the registry,
/// so that the test decides which agent reaches a restarted registry first.
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let open = open.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { return };
                    if !open.load(Ordering::Relaxed) {
                        continue; // dropped: the path is down
                    }
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Relay { port, open, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restart_loses_no_call_while_the_agents_register_again() {
    let mesh = Mesh::new();
    // Heartbeats of 1 s at the registry: it warms up for 3 s after a start. The agents beat
    // every 100 ms.
    let registry = mesh.registry_beating(0, Duration::from_secs(1)).await;
    let port = registry.local_addr().port();
    let url = registry.url();
    let relay = Relay::to(port).await;
    let fast = Some(Duration::from_millis(100));
    let b = mesh.agent_beating("b", &relay.url(), &["add"], Arc::default(), fast).await;
    let a = mesh.agent_beating("a", &url, &["sum3"], Arc::default(), fast).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
    eventually("a reached b", Duration::from_secs(3), async || sum3(&client, &a, 1).await.map_err(|e| e.to_string())).await;

    let caller = Caller::start(client, a.clone());
    caller.until_more_calls(20, "before the restart").await;
    relay.set_open(false);
    registry.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let registry = mesh.registry_beating(port, Duration::from_secs(1)).await;
    let operator = mesh.operator(&url);
    // a registers again first and, for a second, the registry knows no provider of `add`.
    wait_listed(&operator, &[&a], &[&b], Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_listed(&operator, &[&a], &[&b], Duration::ZERO).await;
    relay.set_open(true);
    wait_listed(&operator, &[&a, &b], &[], Duration::from_secs(2)).await;
    caller.until_more_calls(20, "after both registered again").await;
    let (calls, failures) = caller.finish().await;
    assert!(failures.is_empty(), "{} of {calls} calls failed across the restart: {failures:?}", failures.len());
    assert!(calls > 100, "only {calls} calls");

    a.shutdown().await;
    b.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_stops_answering_stalls_no_heartbeat() {
    let mesh = Mesh::new();
    let registry = mesh.registry(0).await;
    let port = registry.local_addr().port();
    let url = registry.url();
    let b = mesh.agent("b", &url, &["add"], Arc::default()).await;
    let a = mesh.agent("a", &url, &["sum3"], Arc::default()).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
    eventually("a reached b", Duration::from_secs(3), async || sum3(&client, &a, 1).await.map_err(|e| e.to_string())).await;
    registry.shutdown().await;

    // In its place, a server that completes the TLS handshake and then never answers, holding
    // every connection open (a registry hung, or a path that went half-open).
    let held: Arc<Mutex<Vec<tokio_rustls::server::TlsStream<TcpStream>>>> = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(mesh.identity("registry", Role::Registry).server_config().unwrap());
    let hung = tokio::spawn({
        let held = held.clone();
        async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, held) = (acceptor.clone(), held.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        held.lock().unwrap().push(tls);
                    }
                });
            }
        }
    });
    // Both agents' heartbeats and long polls hang there.
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "the agents never reached the hung registry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Calls go on from the cache meanwhile.
    for i in 0..20 {
        assert_eq!(sum3(&client, &a, i).await.unwrap(), json!(i + 2), "call {i} failed with the registry hung");
    }

    // The registry comes back, while the hung connections stay open: heartbeats that time out
    // (about a heartbeat interval, at least 1 s) let the agents find it.
    hung.abort();
    let registry = mesh.registry(port).await;
    let returned = Instant::now();
    wait_listed(&mesh.operator(&url), &[&a, &b], &[], Duration::from_secs(5)).await;
    let after = returned.elapsed();
    assert!(after < Duration::from_millis(2500), "the agents took {after:?} to register again");
    assert_eq!(sum3(&client, &a, 1).await.unwrap(), json!(3));
    // The agents closed the connections they gave up on (nothing leaks per timed-out beat).
    let held = std::mem::take(&mut *held.lock().unwrap());
    for mut stream in held {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest)).await;
        assert!(closed.is_ok(), "a connection the agents gave up on is still open");
    }
    a.shutdown().await;
    b.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_from_a_provider_that_died_without_deregistering() {
    let mesh = Mesh::new();
    let registry = mesh.registry(0).await;
    let url = registry.url();
    // A provider whose process died: still registered and heartbeating (its registration lives
    // on), its endpoint a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tools: Vec<ToolInfo> = serde_json::from_value(json!([{"name": "add", "capability": "add"}])).unwrap();
    let ghost =
        RegisterRequest { agent_id: "ghost-1".into(), name: "ghost".into(), endpoint: format!("https://127.0.0.1:{closed}/mcp"), tools };
    let ghost_client = RegistryClient::new(&url, &mesh.identity("ghost", Role::Agent)).unwrap();
    let ghost = Discovery::spawn(ghost_client, ghost, HEARTBEAT);
    assert!(ghost.wait_registered(Duration::from_secs(5)).await);
    let a = mesh.agent("a", &url, &["sum3"], Arc::default()).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
    // a routes to the ghost: with no other provider, the call fails to connect.
    let e = sum3(&client, &a, 1).await.unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");

    let b_calls = Arc::new(AtomicUsize::new(0));
    let b = mesh.agent("b", &url, &["add"], b_calls.clone()).await;
    let operator = mesh.operator(&url);
    // The ghost is resolved too, unless the registry lists it unreachable just now (a reported
    // it, and it heartbeats: healthy again with each heartbeat).
    let providers = operator.resolve(&DependencySpec::capability("add")).await.unwrap().providers;
    assert!(providers.iter().any(|p| p.agent_name == "b") && providers.len() <= 2, "{providers:?}");
    let deadline = Instant::now() + Duration::from_secs(1);
    while b_calls.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "a did not learn of b");
        let _ = sum3(&client, &a, 1).await;
    }

    // The ghost is down now (calls skip it), and due for a trial after a pause that doubled
    // with each failed attempt (4 s after the first call's three): calls go on until it was
    // tried again and that call failed over to b.
    let (caller, started) = (Caller::start(client, a.clone()), Instant::now());
    let unreachable_before = a.failovers().unreachable;
    wait_until("a trial of the ghost failed over to b", Duration::from_secs(15), || a.failovers().unreachable > unreachable_before).await;
    caller.until_more_calls(1, "after the trial").await;
    let (calls, failures) = caller.finish().await;
    assert!(failures.is_empty(), "{} of {calls} calls failed: {failures:?}", failures.len());
    assert!(calls > 100, "only {calls} calls in {:?}", started.elapsed());
    // It heartbeats, so it stays registered (each heartbeat makes it healthy again until the
    // registry's next probe of a report).
    assert_ne!(status_of(&operator, "ghost-1").await, "absent", "the ghost stayed registered");
    ghost.stop().await;
    a.shutdown().await;
    b.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_heartbeats_arrivals_and_departures_reach_dependents_within_a_second() {
    let mesh = Mesh::new();
    // The default 5 s heartbeats at the registry and the agents: only the long poll is fast.
    let registry = mesh.registry_beating(0, toolmesh_registry::DEFAULT_HEARTBEAT_INTERVAL).await;
    let url = registry.url();
    let a = mesh.agent_beating("a", &url, &["sum3"], Arc::default(), None).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
    assert_eq!(sum3(&client, &a, 1).await.unwrap_err().kind(), ErrorKind::DependencyUnresolved);

    let (b1_calls, b2_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let b1 = mesh.agent_beating("b1", &url, &["add"], b1_calls.clone(), None).await;
    let registered = Instant::now();
    while let Err(e) = sum3(&client, &a, 1).await {
        // A bound far past the 1 s asserted below, so that a regression fails instead of hanging.
        assert!(registered.elapsed() < Duration::from_secs(5), "a could not call the new provider b1 5 s after it registered: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let visible_after = registered.elapsed();
    assert!(visible_after < Duration::from_secs(1), "a new provider took {visible_after:?} to become callable");

    let b2 = mesh.agent_beating("b2", &url, &["add"], b2_calls.clone(), None).await;
    let registered = Instant::now();
    while b2_calls.load(Ordering::Relaxed) == 0 {
        assert!(registered.elapsed() < Duration::from_secs(5), "the second provider b2 received no call 5 s after it registered");
        sum3(&client, &a, 1).await.unwrap();
    }
    let visible_after = registered.elapsed();
    assert!(visible_after < Duration::from_secs(1), "a second provider took {visible_after:?} to receive calls");

    // b1 deregisters (then drains for a moment and stops): calls stop reaching it within 1 s.
    let leaving = Instant::now();
    let stopping = tokio::spawn(async move { b1.shutdown().await });
    let (mut seen, mut last_b1_call) = (b1_calls.load(Ordering::Relaxed), Duration::ZERO);
    while leaving.elapsed() < Duration::from_secs(2) {
        sum3(&client, &a, 1).await.unwrap();
        let now = b1_calls.load(Ordering::Relaxed);
        if now != seen {
            (seen, last_b1_call) = (now, leaving.elapsed());
        }
    }
    stopping.await.unwrap();
    assert!(last_b1_call < Duration::from_secs(1), "b1 still received calls {last_b1_call:?} after deregistering");
    a.shutdown().await;
    b2.shutdown().await;
    registry.shutdown().await;
}

/// Issue 11: an impostor holding an ordinary agent certificate registered under another agent's
/// name with its capabilities, and was answered by `call calc:add`, `call add` and chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_cannot_take_another_agents_name_and_a_refused_provider_is_skipped() {
    let mesh = Mesh::new();
    let registry = mesh.registry(0).await;
    let url = registry.url();
    let (calc_calls, evil_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let calc = mesh.agent("calc", &url, &["add"], calc_calls.clone()).await;
    // Replicas of calc share its certificate and name: both register.
    let replica = mesh.agent("calc", &url, &["add"], calc_calls.clone()).await;
    let impostor = mesh.start_as("evil", "calc", &url, &["add"], evil_calls.clone(), Some(HEARTBEAT), |_| {}).await;
    assert!(!impostor.wait_registered(Duration::from_millis(800)).await, "evil registered under the name calc");

    let operator = mesh.operator(&url);
    let listed = operator.list_agents().await.unwrap().agents;
    let calcs: Vec<&str> = listed.iter().filter(|a| a.name == "calc").map(|a| a.identity.as_str()).collect();
    assert_eq!(calcs, ["spiffe://toolmesh.local/agent/calc"; 2], "only the real calc's replicas: {listed:?}");
    let resolved = operator.resolve(&DependencySpec::capability("add")).await.unwrap().providers;
    let mut ids: Vec<&str> = resolved.iter().map(|p| p.agent_id.as_str()).collect();
    ids.sort();
    let mut expected = [calc.agent_id(), replica.agent_id()];
    expected.sort();
    assert_eq!(ids, expected, "discovery routes `add` to the real calc only");
    impostor.shutdown().await;

    // Under its own name, evil registers, a provider of `add` like any other; a consumer that
    // allows only calc as a peer refuses evil's certificate and fails over, every time.
    let evil = mesh.agent("evil", &url, &["add"], evil_calls.clone()).await;
    let only_calc = |c: &mut AgentConfig| {
        c.set("tls_allowed_ids", "spiffe://toolmesh.local/agent/calc,spiffe://toolmesh.local/registry/registry").unwrap()
    };
    let consumer = mesh.start_as("report", "report", &url, &["sum3"], Arc::default(), Some(HEARTBEAT), only_calc).await;
    assert!(consumer.wait_registered(Duration::from_secs(5)).await);
    let deadline = Instant::now() + Duration::from_secs(3);
    while consumer.failovers().refused_certificate == 0 {
        assert!(Instant::now() < deadline, "the consumer never tried evil");
        assert_eq!(consumer.call("sum3", 0, json!({"a": 1, "b": 2}), None).await.unwrap(), json!(3));
    }
    let calls_before = calc_calls.load(Ordering::Relaxed);
    for i in 0..20 {
        assert_eq!(consumer.call("sum3", 0, json!({"a": i, "b": 1}), None).await.unwrap(), json!(i + 1), "call {i}");
    }
    assert_eq!(calc_calls.load(Ordering::Relaxed) - calls_before, 20, "every call answered by calc");
    assert_eq!(evil_calls.load(Ordering::Relaxed), 0, "evil answered nothing");
    for agent in [consumer, evil, replica, calc] {
        agent.shutdown().await;
    }
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_listed_unreachable_within_a_heartbeat_interval() {
    // Long enough an interval that only the dropped long poll can explain an early listing: a
    // late heartbeat is probed 1.1 intervals after the last one.
    let interval = Duration::from_secs(4);
    let mesh = Mesh::new();
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.heartbeat_interval = interval;
    config.health = Some(("127.0.0.1".into(), 0));
    let registry = toolmesh_registry::start(config).await.unwrap();
    let url = registry.url();
    let operator = mesh.operator(&url);

    // Nobody calls it: its long poll at the registry dies with it, and the registry probes it then.
    let mut idle = Process::start(&mesh, "idle", &url, &["add"], Arc::default());
    let idle_id = idle.agent.agent_id().to_owned();
    assert_eq!(status_of(&operator, &idle_id).await, "healthy");
    // Killed only once its long poll is open (it opens just after registering): killed before,
    // nothing at the registry would die with it, and only its missed heartbeats would tell.
    let health = registry.health_addr().unwrap();
    eventually("the idle agent holds its long poll", Duration::from_secs(10), async || {
        match sample(&get(health, "/metrics").await.2, "toolmesh_registry_long_poll_waiters") {
            Some(1.0) => Ok(()),
            waiters => Err(format!("waiters: {waiters:?}")),
        }
    })
    .await;
    idle.kill_and_wait().await;
    let took = until_unreachable(&operator, health, &idle_id, interval / 4).await;
    eprintln!("an idle killed agent was listed unreachable after {took:?}");

    // Its callers report it at once (their heartbeat goes out early), and the registry probes
    // it then: listed unreachable well within a heartbeat interval of the first failed call.
    let mut dead = Process::start(&mesh, "dead", &url, &["add"], Arc::default());
    let dead_id = dead.agent.agent_id().to_owned();
    let caller = mesh.agent_beating("a", &url, &["sum3"], Arc::default(), None).await;
    let client = McpClient::new(&mesh.identity("operator", Role::Operator)).unwrap();
    sum3(&client, &caller, 1).await.unwrap();
    let killed = Instant::now();
    dead.kill_and_wait().await;
    let e = sum3(&client, &caller, 1).await.unwrap_err();
    // Refused, or reset on the connection kept from the call before (then possibly delivered).
    assert!(matches!(e.kind(), ErrorKind::ConnectFailed | ErrorKind::ConnectionLost), "{e}");
    let took = until_unreachable(&operator, health, &dead_id, interval / 2).await;
    eprintln!(
        "a killed agent its caller reported was listed unreachable {took:?} after the failed call, {:?} after the kill",
        killed.elapsed()
    );
    let named = format!("tool 'add' of agent 'dead' ({dead_id}) at {}: ", dead.agent.endpoint());
    assert!(e.message().starts_with(&named), "the error names the agent, the tool and the address: {e}");
    caller.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_providers_under_load_fails_no_call_to_an_idempotent_tool() {
    let mesh = Mesh::new();
    let registry = mesh.registry(0).await;
    let url = registry.url();
    let tools = ["add_idempotent", "add_once"];
    let (doomed_calls, survivor_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut doomed = Process::start(&mesh, "doomed", &url, &tools, doomed_calls.clone());
    let _survivor = mesh.agent("survivor", &url, &tools, survivor_calls.clone()).await;
    let a = mesh.agent("a", &url, &["use_idempotent", "use_once"], Arc::default()).await;
    let listed = mesh.operator(&url).list_agents().await.unwrap().agents;
    let declared = listed.iter().find(|x| x.name == "doomed").unwrap().tools.iter().find(|t| t.name == "add_idempotent").unwrap().clone();
    assert_eq!(declared.annotations.idempotent_hint, Some(true), "the registry keeps the annotation");
    // Until a's topology names both providers.
    let deadline = Instant::now() + Duration::from_secs(3);
    while doomed_calls.load(Ordering::Relaxed) == 0 || survivor_calls.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "calls never reached both providers");
        a.call("use_idempotent", 0, json!({"a": 1, "b": 2}), None).await.unwrap();
    }

    // Eight callers of each tool, without pause, while one provider is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (a, stop) = (a.clone(), stop.clone());
            let tool = if w % 2 == 0 { "use_idempotent" } else { "use_once" };
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let result = a.call(tool, 0, json!({"a": i, "b": 1}), None).await;
                    outcomes.push(result.map(|v| assert_eq!(v, json!(i + 1))));
                    i += 1;
                }
                (tool, outcomes)
            })
        })
        .collect();
    let under_load = doomed_calls.load(Ordering::Relaxed) + 20;
    wait_until("20 calls of the load reached the doomed provider", Duration::from_secs(10), || {
        doomed_calls.load(Ordering::Relaxed) >= under_load
    })
    .await;
    let endpoint = doomed.agent.endpoint().to_owned();
    let doomed_id = doomed.agent.agent_id().to_owned();
    let before = doomed_calls.load(Ordering::Relaxed);
    doomed.kill_and_wait().await;
    // Past the first trial of the dead provider (1 s after it went down).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut idempotent_calls, mut once_calls, mut once_failures) = (0, 0, Vec::new());
    for worker in workers {
        let (tool, outcomes) = worker.await.unwrap();
        for outcome in outcomes {
            if tool == "use_idempotent" {
                idempotent_calls += 1;
                if let Err(e) = outcome {
                    panic!("a call to the idempotent tool failed: {e}");
                }
            } else {
                once_calls += 1;
                if let Err(e) = outcome {
                    once_failures.push(e);
                }
            }
        }
    }
    assert!(before > 0, "the doomed provider took calls before it died");
    assert!(idempotent_calls > 100 && once_calls > 100, "{idempotent_calls} and {once_calls} calls");
    // Only the calls in flight at the kill fail: lost after delivery (never a refused connection,
    // the provider is down from the first failure), each naming the agent, tool and address.
    let named = format!("tool 'add_once' of agent 'doomed' ({doomed_id}) at {endpoint}: ");
    for e in &once_failures {
        assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
        assert!(e.message().starts_with(&named), "{e}");
    }
    assert!(once_failures.len() <= 8, "more failures than calls in flight: {once_failures:?}");
    eprintln!("{idempotent_calls} idempotent calls, none failed; {once_calls} others, {} lost in flight", once_failures.len());
    a.shutdown().await;
    registry.shutdown().await;
}
