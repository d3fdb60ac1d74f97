//! The registry's behaviour as agents see it through the core's `RegistryClient`, and its
//! refusal of callers that do not hold a mesh certificate. Real sockets and mutual TLS throughout.

mod common;

use common::{registration, Mesh};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use toolmesh_ca::Role;
use toolmesh_core::registry_api::{RegisterResponse, Topology};
use toolmesh_core::registry_client::{HeartbeatOutcome, RegistryClient};
use toolmesh_core::server::PLAINTEXT_ANSWER;
use toolmesh_core::tls::Identity;
use toolmesh_core::ErrorKind;

/// How quickly a dependent must learn that a provider came or went.
const TOPOLOGY_LATENCY: Duration = Duration::from_secs(1);

fn client(url: &str, identity: &Arc<Identity>) -> RegistryClient {
    RegistryClient::new(url, identity).expect("registry client")
}

/// Registers `report-1`: it provides `report` and depends on `add`.
async fn register_consumer(agent: &RegistryClient) -> RegisterResponse {
    agent.register(&registration("report-1", &[("report", "report")], &[json!("add")])).await.expect("register consumer")
}

fn provider_ids(topology: &Topology) -> Vec<&str> {
    topology.dependencies.iter().flat_map(|d| d.providers.iter().map(|p| p.agent_id.as_str())).collect()
}

#[tokio::test]
async fn registered_agents_are_listed_and_resolved() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let agent = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    let registered = agent.register(&registration("calc-1", &[("add", "add"), ("sub", "sub")], &[])).await.expect("register");
    assert_eq!(registered.heartbeat_interval_ms, 5000);
    register_consumer(&client(&registry.url(), &mesh.identity("report", Role::Agent))).await;

    let operator = client(&registry.url(), &mesh.identity("operator", Role::Operator));
    let agents = operator.list_agents().await.expect("list").agents;
    let summary: Vec<_> = agents.iter().map(|a| (a.name.as_str(), a.status.as_str(), a.tools.len())).collect();
    assert_eq!(summary, [("calc", "healthy", 2), ("report", "healthy", 1)]);
    assert_eq!(agents[0].identity, "spiffe://toolmesh.local/agent/calc");

    let resolved = operator.resolve(&serde_json::from_value(json!("sub")).expect("spec")).await.expect("resolve");
    let found: Vec<_> = resolved.providers.iter().map(|p| (p.agent_id.as_str(), p.tool.as_str())).collect();
    assert_eq!(found, [("calc-1", "sub")]);
    let none = operator.resolve(&serde_json::from_value(json!("mul")).expect("spec")).await.expect("resolve");
    assert!(none.providers.is_empty());
    registry.shutdown().await;
}

#[tokio::test]
async fn heartbeats_carry_a_topology_only_when_it_changed() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let agent = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let held = register_consumer(&agent).await;
    assert_eq!(agent.heartbeat("report-1", held.topology.version).await.expect("beat"), HeartbeatOutcome::Alive(None));

    let provider = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    provider.register(&registration("calc-1", &[("add", "add")], &[])).await.expect("register provider");
    let HeartbeatOutcome::Alive(Some(changed)) = agent.heartbeat("report-1", held.topology.version).await.expect("beat") else {
        panic!("a new provider must change the topology");
    };
    assert_eq!(provider_ids(&changed), ["calc-1"]);
    assert_eq!(agent.heartbeat("report-1", changed.version).await.expect("beat"), HeartbeatOutcome::Alive(None));
    assert_eq!(agent.heartbeat("nobody", 0).await.expect("beat"), HeartbeatOutcome::Unknown);
    registry.shutdown().await;
}

/// Starts a long poll and makes sure it is parked at the registry before returning it.
async fn parked_watch(agent: &RegistryClient, agent_id: &str, since: u64) -> tokio::task::JoinHandle<Option<Topology>> {
    let (agent, agent_id) = (agent.clone(), agent_id.to_owned());
    let watch = tokio::spawn(async move { agent.watch(&agent_id, since, Duration::from_secs(10)).await.expect("watch") });
    // The poll can only end early on a change, which nothing makes yet; give it time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!watch.is_finished(), "the long poll answered without a change");
    watch
}

#[tokio::test]
async fn watchers_learn_of_providers_arriving_and_leaving_within_a_second() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let consumer = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let provider = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    let held = register_consumer(&consumer).await;

    let watch = parked_watch(&consumer, "report-1", held.topology.version).await;
    let started = Instant::now();
    provider.register(&registration("calc-1", &[("add", "add")], &[])).await.expect("register provider");
    let arrived = watch.await.expect("watch task").expect("a changed topology, not a timeout");
    assert!(started.elapsed() < TOPOLOGY_LATENCY, "took {:?}", started.elapsed());
    assert_eq!(provider_ids(&arrived), ["calc-1"]);

    let watch = parked_watch(&consumer, "report-1", arrived.version).await;
    let started = Instant::now();
    provider.deregister("calc-1").await.expect("deregister");
    let left = watch.await.expect("watch task").expect("a changed topology, not a timeout");
    assert!(started.elapsed() < TOPOLOGY_LATENCY, "took {:?}", started.elapsed());
    assert!(provider_ids(&left).is_empty());

    let nothing = consumer.watch("report-1", left.version, Duration::from_millis(50)).await.expect("watch");
    assert_eq!(nothing, None, "an unchanged topology ends the poll empty");
    registry.shutdown().await;
}

#[tokio::test]
async fn a_stale_provider_leaves_topologies_while_a_healthy_one_remains() {
    let interval = Duration::from_millis(200);
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, interval).await;
    let consumer = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let quiet = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    // Another replica of calc: the same certificate name, its own agent id.
    let lively = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    quiet.register(&registration("calc-1", &[("add", "add")], &[])).await.expect("register");
    lively.register(&registration("calc-2", &[("add", "add")], &[])).await.expect("register");
    let held = register_consumer(&consumer).await;
    assert_eq!(provider_ids(&held.topology), ["calc-1", "calc-2"]);
    let beating = tokio::spawn(async move {
        loop {
            consumer.beat("report-1", 0).await.expect("heartbeat");
            lively.beat("calc-2", 0).await.expect("heartbeat");
            tokio::time::sleep(interval / 2).await;
        }
    });

    // calc-1 goes silent: stale after 1.5 intervals, out of the consumer's topology, though
    // still listed until its eviction at 3 intervals.
    let watcher = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let started = Instant::now();
    let changed = watcher.watch("report-1", held.topology.version, Duration::from_secs(5)).await.expect("watch").expect("a change");
    assert_eq!(provider_ids(&changed), ["calc-2"]);
    assert!(started.elapsed() < interval * 5 / 2, "took {:?}", started.elapsed());
    let listed = watcher.list_agents().await.expect("list").agents;
    // Listed as not healthy: unreachable when the registry's probe of its late heartbeat (its
    // endpoint takes no connection) came first, else stale.
    let status = listed.iter().find(|a| a.agent_id == "calc-1").map(|a| a.status.as_str());
    assert!(matches!(status, Some("unreachable" | "stale")), "{status:?}");

    // It beats again: routed to again at once.
    quiet.beat("calc-1", 0).await.expect("beat").expect("still registered");
    let back = watcher.watch("report-1", changed.version, Duration::from_secs(1)).await.expect("watch").expect("a change");
    assert_eq!(provider_ids(&back), ["calc-1", "calc-2"]);
    beating.abort();
    registry.shutdown().await;
}

#[tokio::test]
async fn answers_say_warming_up_for_one_eviction_window_after_a_start() {
    let interval = Duration::from_millis(200);
    let mesh = Mesh::new();
    // The window starts somewhere within the start: bounds measured from either side of it hold
    // however long the start takes on a loaded machine.
    let before_start = Instant::now();
    let registry = mesh.start_registry(0, interval).await;
    let started = Instant::now();
    let agent = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    assert!(agent.register(&registration("calc-1", &[("add", "add")], &[])).await.expect("register").warming_up);
    loop {
        let warming_up = agent.beat("calc-1", 0).await.expect("beat").expect("registered").warming_up;
        if !warming_up {
            break;
        }
        assert!(started.elapsed() < interval * 3, "still warming up {:?} after the start", started.elapsed());
        tokio::time::sleep(interval / 4).await;
    }
    assert!(before_start.elapsed() >= interval * 3, "warmed up {:?} after the start began", before_start.elapsed());
    assert!(!agent.register(&registration("calc-2", &[("add", "add")], &[])).await.expect("register").warming_up);
    registry.shutdown().await;
}

#[tokio::test]
async fn requests_to_a_registry_that_never_answers_give_up_in_time() {
    // A server that completes the TLS handshake, then neither reads nor answers.
    let mesh = Mesh::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let acceptor = tokio_rustls::TlsAcceptor::from(mesh.identity("registry", Role::Registry).server_config().expect("tls"));
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            held.push(acceptor.accept(tcp).await.expect("handshake"));
        }
    });
    let mut agent = client(&url, &mesh.identity("calc", Role::Agent));
    agent.set_timeout(Duration::from_millis(300));

    let started = Instant::now();
    let e = agent.beat("calc-1", 0).await.expect_err("no answer");
    assert_eq!(e.kind(), ErrorKind::RegistryUnavailable, "{e}");
    assert!(e.message().contains("did not answer within 300 ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    let e = agent.register(&registration("calc-1", &[("add", "add")], &[])).await.expect_err("no answer");
    assert_eq!(e.kind(), ErrorKind::RegistryUnavailable, "{e}");

    // The long poll may take its wait and a margin of 5 s, not for ever.
    let started = Instant::now();
    let e = agent.watch("calc-1", 0, Duration::from_millis(100)).await.expect_err("no answer");
    assert_eq!(e.kind(), ErrorKind::RegistryUnavailable, "{e}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(5000) && took < Duration::from_millis(6500), "the long poll gave up after {took:?}");
    hung.abort();
}

#[tokio::test]
async fn agents_that_stop_heartbeating_go_stale_then_are_evicted() {
    let interval = Duration::from_millis(200);
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, interval).await;
    let consumer = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let provider = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    provider.register(&registration("calc-1", &[("add", "add")], &[])).await.expect("register provider");
    let held = register_consumer(&consumer).await;
    assert_eq!(provider_ids(&held.topology), ["calc-1"]);
    let beating = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                consumer.heartbeat("report-1", 0).await.expect("heartbeat");
                tokio::time::sleep(interval / 2).await;
            }
        })
    };

    let status_of_provider = || async {
        let agents = consumer.list_agents().await.expect("list").agents;
        agents.into_iter().find(|a| a.agent_id == "calc-1").map(|a| a.status)
    };
    let deadline = Instant::now() + interval * 3;
    while status_of_provider().await.as_deref() == Some("healthy") {
        assert!(Instant::now() < deadline, "the silent provider never went stale");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let evicted = consumer.watch("report-1", held.topology.version, Duration::from_secs(5)).await.expect("watch");
    let evicted = evicted.expect("eviction must change the consumer's topology");
    assert!(provider_ids(&evicted).is_empty());
    assert!(started.elapsed() < interval * 4, "eviction took {:?}", started.elapsed());
    assert_eq!(status_of_provider().await, None);
    assert_eq!(provider.heartbeat("calc-1", 0).await.expect("beat"), HeartbeatOutcome::Unknown);
    let listed = consumer.list_agents().await.expect("list").agents;
    assert_eq!(listed.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(), ["healthy"], "the heartbeating agent stays");
    beating.abort();
    registry.shutdown().await;
}

#[tokio::test]
async fn agents_re_register_after_the_registry_restarts() {
    let mesh = Mesh::new();
    let first = mesh.start_registry(0, Duration::from_secs(5)).await;
    let port = first.local_addr().port();
    let agent = client(&first.url(), &mesh.identity("calc", Role::Agent));
    let request = registration("calc-1", &[("add", "add")], &[json!("add")]);
    let before = agent.register(&request).await.expect("register");
    first.shutdown().await;

    let unreachable = agent.heartbeat("calc-1", before.topology.version).await.expect_err("registry is down");
    assert_eq!(unreachable.kind(), ErrorKind::RegistryUnavailable, "{unreachable}");

    let second = mesh.start_registry(port, Duration::from_secs(5)).await;
    assert_eq!(agent.heartbeat("calc-1", before.topology.version).await.expect("beat"), HeartbeatOutcome::Unknown);
    let after = agent.register(&request).await.expect("re-register");
    assert_eq!(after.topology, before.topology, "the same registration yields the same topology");
    assert_eq!(agent.list_agents().await.expect("list").agents.len(), 1);
    second.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_answers_pending_long_polls_at_once() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let agent = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let held = register_consumer(&agent).await;
    let watch = parked_watch(&agent, "report-1", held.topology.version).await;
    let started = Instant::now();
    registry.shutdown().await;
    assert_eq!(watch.await.expect("watch task"), None);
    assert!(started.elapsed() < Duration::from_secs(1), "shutdown took {:?}", started.elapsed());
}

/// Sends a request over a bare rustls client built from `config`; returns how the registry
/// refused it. With TLS 1.3 the client finishes its side of the handshake before the server
/// checks the client certificate, so the refusal may arrive on the first read instead.
async fn refusal(registry: &toolmesh_registry::RunningRegistry, config: rustls::ClientConfig) -> String {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(registry.local_addr()).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    match connector.connect(name, tcp).await {
        Err(e) => e.to_string(),
        Ok(mut tls) => {
            tls.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.expect("write");
            let mut answer = Vec::new();
            match tls.read_to_end(&mut answer).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("answered an unauthenticated client: {}", String::from_utf8_lossy(&answer)),
            }
        }
    }
}

fn client_config(trusting: &Identity) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    rustls::ClientConfig::builder_with_provider(toolmesh_core::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(trusting.roots())
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let config = client_config(&mesh.identity("anyone", Role::Agent)).with_no_client_auth();
    let outcome = refusal(&registry, config).await;
    assert!(outcome.contains("CertificateRequired"), "{outcome}");
    registry.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let foreign = Mesh::named("foreign CA");
    let intruder = foreign.issue("intruder", Role::Agent);
    let chain = CertificateDer::pem_slice_iter(intruder.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("PEM");
    let key = PrivateKeyDer::from_pem_slice(intruder.key_pem.as_bytes()).expect("PEM key");
    // The intruder trusts the mesh CA (so it accepts the registry) but holds a foreign certificate.
    let config = client_config(&mesh.identity("anyone", Role::Agent)).with_client_auth_cert(chain, key).expect("client cert");
    let outcome = refusal(&registry, config).await;
    assert!(outcome.contains("UnknownCA"), "{outcome}");
    registry.shutdown().await;
}

#[tokio::test]
async fn plaintext_http_gets_a_readable_refusal() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let mut tcp = tokio::net::TcpStream::connect(registry.local_addr()).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.ends_with(PLAINTEXT_ANSWER), "{answer}");
    registry.shutdown().await;
}

#[tokio::test]
async fn only_the_identity_that_registered_an_agent_may_watch_its_topology() {
    let mesh = Mesh::new();
    let registry = mesh.start_registry(0, Duration::from_secs(5)).await;
    let consumer = client(&registry.url(), &mesh.identity("report", Role::Agent));
    let held = register_consumer(&consumer).await;
    // A topology is what its agent may discover: another identity reading it would learn what
    // the policy keeps from it.
    let other = client(&registry.url(), &mesh.identity("calc", Role::Agent));
    let refused =
        other.watch("report-1", held.topology.version.wrapping_add(1), Duration::from_millis(50)).await.expect_err("not its agent");
    assert!(refused.message().contains("not_owner") || refused.message().contains("registered by"), "{refused}");
    let own = consumer.watch("report-1", held.topology.version.wrapping_add(1), Duration::from_millis(50)).await.expect("its own");
    assert!(own.is_some(), "a different version answers at once");
    registry.shutdown().await;
}
