//! Identities over their lifetime, with a live registry and real agents: automatic certificates
//! from the registry's CA renewed while calls flow, and an entity added then revoked without a
//! restart anywhere.

mod common;

use common::{eventually, Mesh};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolmesh_ca::{CertificateSummary, Role};
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::{EntityRequest, ToolInfo};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::Identity;

const HEARTBEAT: Duration = Duration::from_millis(200);

/// `add` (a + b), `double` (calls its `add` dependency with a = b = x) and `ping`.
fn tools(provided: &[&str]) -> Vec<ToolInfo> {
    let all: Vec<ToolInfo> = serde_json::from_value(json!([
        {"name": "add", "capability": "add"},
        {"name": "double", "capability": "double", "dependencies": ["add"]},
        {"name": "ping", "capability": "ping"},
    ]))
    .expect("tools");
    all.into_iter().filter(|t| provided.contains(&t.name.as_str())).collect()
}

async fn start(config: AgentConfig, provided: &[&str]) -> Agent {
    let me: Arc<std::sync::OnceLock<Agent>> = Arc::default();
    let handler = {
        let me = me.clone();
        FnHandler(move |inv: ToolInvocation, done: Completion| {
            let me = me.clone();
            tokio::spawn(async move {
                let n = |k: &str| inv.arguments.get(k).and_then(Value::as_i64).unwrap_or(0);
                match inv.tool.as_str() {
                    "add" => return done.ok(json!(n("a") + n("b"))),
                    "ping" => return done.ok(json!("pong")),
                    _ => {}
                }
                let agent = me.get().expect("started");
                match agent.call("double", 0, json!({"a": n("x"), "b": n("x")}), Some(inv.context.clone())).await {
                    Ok(v) => done.ok(v),
                    Err(e) => done.complete(Err(HostError { message: e.message().to_owned(), mesh_error: Some(e) })),
                }
            });
        })
    };
    let agent = Agent::start(config, tools(provided), Arc::new(handler)).await.expect("start agent");
    let _ = me.set(agent.clone());
    assert!(agent.wait_registered(Duration::from_secs(5)).await, "the agent did not register");
    agent
}

/// Entities are denied by default in every phase: this policy lets `partner` provide, see and call.
fn partner_policy() -> toolmesh_core::policy::PolicyDocument {
    let text = "rules:\n  - name: partner-joins\n    phases: [provide, discover, call]\n    source: { entities: [partner] }\n";
    toolmesh_core::policy::parse_document(text).expect("policy")
}

fn auto_config(name: &str, registry: &str, token: &str) -> AgentConfig {
    let mut config = AgentConfig::from_env(name).expect("config");
    for (key, value) in [("tls", "auto"), ("registry_url", registry), ("join_token", token), ("heartbeat_interval_ms", "200")] {
        config.set(key, value).expect("option");
    }
    config
}

/// One call, bounded: a call that neither answers nor fails fails the test instead of hanging
/// it (the client itself has no overall request timeout; one run of this binary hung once).
async fn call(client: &McpClient, endpoint: &str, tool: &str, args: Value) -> Result<Value, toolmesh_core::Error> {
    const BOUND: Duration = Duration::from_secs(10);
    match tokio::time::timeout(BOUND, client.call_tool(endpoint, tool, &args, &RequestContext::default())).await {
        Ok(answer) => answer.map_err(|e| e.error),
        Err(_) => panic!("{tool} at {endpoint} neither answered nor failed within {BOUND:?}"),
    }
}

/// The certificate an agent presents on a fresh connection.
async fn presented(agent: &Agent, client: &Arc<Identity>) -> CertificateSummary {
    presented_at(agent.local_addr(), client).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_agents_get_short_lived_certificates_renewed_while_calls_keep_working() {
    let state = tempfile::tempdir().expect("tempdir");
    let lifetime = Duration::from_secs(4);
    let (mesh, issuer, registry) = Mesh::start_auto(state.path(), lifetime, HEARTBEAT).await;
    let token = issuer.token().reveal();
    let provider = start(auto_config("adder", &registry.url(), &token), &["add"]).await;
    let consumer = start(auto_config("doubler", &registry.url(), &token), &["double"]).await;
    let operator = mesh.identity("ops", Role::Operator);
    let first = presented(&provider, &operator).await;
    assert_eq!(first.uris, ["spiffe://toolmesh.local/agent/adder"]);
    let valid_for = first.not_after - time::OffsetDateTime::now_utc();
    assert!(valid_for <= time::Duration::seconds(4), "short-lived: {valid_for}");

    let client = McpClient::new(&operator).expect("client");
    let deadline = Instant::now() + Duration::from_secs(12);
    // Renewal comes at two thirds of the 4 s lifetime: the first at about 2.7 s, the second at
    // about 5.3 s, after the first certificate expired. Call through the consumer all along.
    let (mut calls, mut renewals, mut current) = (0, 0, first.not_after);
    let first_expired = || first.not_after < time::OffsetDateTime::now_utc();
    while Instant::now() < deadline && !(renewals >= 2 && calls >= 50 && first_expired()) {
        let x = calls % 100;
        let doubled = call(&client, consumer.endpoint(), "double", json!({"x": x})).await;
        assert_eq!(doubled.unwrap_or_else(|e| panic!("call {calls} failed during renewal: {e}")), json!(2 * x));
        calls += 1;
        let now_presented = presented(&provider, &operator).await.not_after;
        if now_presented > current {
            (renewals, current) = (renewals + 1, now_presented);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(renewals >= 2, "{renewals} renewal(s) within the deadline, expected two");
    assert!(first_expired(), "the calls did not outlive the first certificate");
    for agent in [provider, consumer] {
        agent.shutdown().await;
    }
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_entity_is_cut_off_within_a_heartbeat_even_on_open_connections() {
    let state = tempfile::tempdir().expect("tempdir");
    let (mesh, issuer, registry) = Mesh::start_auto(state.path(), Duration::from_secs(3600), HEARTBEAT).await;
    // A partner entity is denied by default: our agent's policy names it.
    let policy = state.path().join("ours-policy.yaml");
    std::fs::write(&policy, "rules:\n  - name: partner-pings\n    source: { entities: [partner] }\n    target: { tools: [ping] }\n")
        .expect("policy");
    let mut ours_config = auto_config("ours", &registry.url(), &issuer.token().reveal());
    ours_config.set("policy_file", policy.to_str().expect("path")).expect("option");
    let ours = start(ours_config, &["double", "ping"]).await;

    // The partner's agent holds a certificate from its own CA, in its own trust domain, and
    // trusts the mesh CA.
    let partner = Mesh::named("partner CA");
    let files = tempfile::tempdir().expect("tempdir");
    let (config, their_files) = partner_agent(files.path(), &mesh, &partner, &registry.url());
    let refused =
        Agent::start(config.clone(), tools(&["add"]), Arc::new(FnHandler(|_: ToolInvocation, done: Completion| done.ok(json!(0)))))
            .await
            .expect("an agent starts while the registry still refuses it");
    assert!(!refused.wait_registered(Duration::from_millis(600)).await, "an unknown entity must not register");
    refused.shutdown().await;

    let admin = RegistryClient::new(&registry.url(), &mesh.identity("ops", Role::Operator)).expect("client");
    let agent_admin = RegistryClient::new(&registry.url(), &mesh.identity("someone", Role::Agent)).expect("client");
    let request = EntityRequest { name: "partner".into(), ca_cert: partner.ca.cert_pem().into(), trust_domain: None };
    let denied = agent_admin.add_entity(&request).await.expect_err("an agent is no admin");
    assert!(denied.message().contains("admin identity"), "{denied}");
    admin.add_entity(&request).await.expect("add entity");
    admin.apply_policy(&partner_policy()).await.expect("apply policy");
    assert_eq!(stored_entities(state.path()), ["partner"], "kept across restarts");
    let theirs = start(config, &["add"]).await;
    let listed = admin.list_agents().await.expect("list").agents;
    assert_eq!(listed.iter().find(|a| a.name == "partner/theirs").and_then(|a| a.entity.clone()).as_deref(), Some("partner"));

    // Both directions work, over connections that stay pooled.
    let their_identity = Identity::load(&their_files).expect("partner identity");
    let their_client = McpClient::new(&their_identity).expect("client");
    let trusted = async || call(&their_client, ours.endpoint(), "ping", json!({})).await.map_err(|e| e.to_string());
    eventually("our agent trusted the partner's CA", Duration::from_secs(3), trusted).await;
    let doubled = ours.call("double", 0, json!({"a": 2, "b": 2}), None).await;
    assert!(doubled.is_ok(), "{doubled:?}");

    admin.revoke_entity("partner").await.expect("revoke");
    let revoked_at = Instant::now();
    assert!(admin.list_agents().await.expect("list").agents.iter().all(|a| a.name != "partner/theirs"), "evicted at once");
    let refusal = loop {
        match call(&their_client, ours.endpoint(), "ping", json!({})).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(revoked_at.elapsed() < HEARTBEAT * 3, "still served {:?} after the revocation", revoked_at.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert!(revoked_at.elapsed() <= HEARTBEAT + Duration::from_millis(200), "cut off after {:?}", revoked_at.elapsed());
    assert!(refusal.message().contains("no longer verifies"), "{refusal}");
    let e = ours.call("double", 0, json!({"a": 2, "b": 2}), None).await.expect_err("nobody routes to a revoked agent");
    assert_eq!(e.kind(), toolmesh_core::ErrorKind::DependencyUnresolved, "{e}");
    theirs.shutdown().await;
    ours.shutdown().await;
    registry.shutdown().await;

    // The registry keeps entities across restarts; the revoked one stays revoked.
    assert!(stored_entities(state.path()).is_empty(), "the revocation is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_mesh_ca_file_is_followed_without_a_restart() {
    let (old, new) = (Mesh::named("old mesh CA"), Mesh::named("new mesh CA"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let install = |mesh: &Mesh| {
        let (cert, key) = toolmesh_ca::write_pair(dir.path(), "registry", &mesh.issue("registry", Role::Registry), true).expect("write");
        std::fs::write(&ca, mesh.ca.cert_pem()).expect("write CA");
        toolmesh_core::tls::TlsFiles { cert, key, ca: ca.clone() }
    };
    let files = install(&old);
    let mut config = toolmesh_registry::RegistryConfig::new("127.0.0.1", 0, Identity::load(&files).expect("registry identity"));
    config.tls_reload_interval = Duration::from_millis(50);
    let registry = toolmesh_registry::start(config).await.expect("start registry");
    let old_operator = RegistryClient::new(&registry.url(), &old.identity("ops", Role::Operator)).expect("client");
    assert!(old_operator.list_agents().await.is_ok(), "the mesh CA's operator is served");

    install(&new);
    let new_operator = RegistryClient::new(&registry.url(), &new.identity("ops", Role::Operator)).expect("client");
    let served = async || new_operator.list_agents().await.map_err(|e| e.to_string());
    let listed = eventually("a certificate of the rotated mesh CA was served", Duration::from_secs(5), served).await;
    assert!(listed.agents.is_empty(), "{listed:?}");
    let bundle = new_operator.trust_bundle().await.expect("trust bundle").pem;
    let der = |pem: &str| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().expect("PEM")
    };
    assert_eq!(der(&bundle), der(new.ca.cert_pem()), "agents are handed the new mesh CA, and no longer the old one");
    let refused = old_operator.list_agents().await.expect_err("the replaced CA is no longer trusted");
    assert!(refused.message().contains("certificate"), "{refused}");
    registry.shutdown().await;
}

/// The certificate a server presents on a fresh connection, as `client` verifies it.
async fn presented_at(addr: std::net::SocketAddr, client: &Arc<Identity>) -> CertificateSummary {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(client.client_config().expect("config")).connect(name, tcp).await.expect("handshake");
    CertificateSummary::parse_der(&tls.get_ref().1.peer_certificates().expect("certificate")[0], "presented").expect("parse")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_auto_registry_renews_its_own_certificate_while_agents_heartbeat_and_operators_list() {
    let state = tempfile::tempdir().expect("tempdir");
    let (mesh, issuer, registry) = Mesh::start_auto_with(state.path(), Duration::from_secs(3600), HEARTBEAT, Duration::from_secs(4)).await;
    let token = issuer.token().reveal();
    let agents = [
        start(auto_config("adder", &registry.url(), &token), &["add"]).await,
        start(auto_config("pinger", &registry.url(), &token), &["ping"]).await,
    ];
    let operator = mesh.identity("ops", Role::Operator);
    let kept = RegistryClient::new(&registry.url(), &operator).expect("client");
    let first = presented_at(registry.local_addr(), &operator).await;
    assert!(first.not_after - time::OffsetDateTime::now_utc() <= time::Duration::seconds(4), "short-lived: {}", first.not_after);

    // Renewal at two thirds of 4 s: about 2.7 s, then 5.3 s, after the first certificate expired.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut lists, mut renewals, mut current) = (0, 0, first.not_after);
    let first_expired = || first.not_after < time::OffsetDateTime::now_utc();
    while Instant::now() < deadline && !(renewals >= 2 && first_expired()) {
        // A kept connection and a new one (a new handshake) every round; both agents stay listed,
        // so their heartbeats never lapsed for the three intervals that evict.
        for client in [&kept, &RegistryClient::new(&registry.url(), &operator).expect("client")] {
            let listed = client.list_agents().await.unwrap_or_else(|e| panic!("list {lists} failed across the renewal: {e}")).agents;
            let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
            assert!(names.contains(&"adder") && names.contains(&"pinger"), "an agent was evicted: {names:?}");
            lists += 1;
        }
        let presented = presented_at(registry.local_addr(), &operator).await.not_after;
        assert!(presented >= current, "a fresh connection presented an older certificate: {presented} after {current}");
        if presented > current {
            (renewals, current) = (renewals + 1, presented);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewals >= 2, "{renewals} renewal(s) of the registry's certificate within the deadline, expected two");
    assert!(first_expired(), "the test did not outlive the registry's first certificate");
    for agent in &agents {
        assert!(agent.wait_registered(Duration::from_secs(1)).await, "an agent is no longer registered");
    }
    for agent in agents {
        agent.shutdown().await;
    }
    registry.shutdown().await;
}

/// An agent of `partner`'s CA, in the partner's own trust domain, that trusts the mesh CA too,
/// registering with `registry`; and its certificate files.
fn partner_agent(files: &std::path::Path, mesh: &Mesh, partner: &Mesh, registry: &str) -> (AgentConfig, toolmesh_core::tls::TlsFiles) {
    let (cert, key) = toolmesh_ca::write_pair(files, "theirs", &partner.issue_in("theirs", Role::Agent, "partner"), true).expect("write");
    let ca = files.join("bundle.pem");
    std::fs::write(&ca, format!("{}{}", mesh.ca.cert_pem(), partner.ca.cert_pem())).expect("write bundle");
    let mut config = AgentConfig::from_env("theirs").expect("config");
    for (k, v) in [
        ("tls_cert", cert.to_str().expect("utf-8")),
        ("tls_key", key.to_str().expect("utf-8")),
        ("tls_ca", ca.to_str().expect("utf-8")),
        ("registry_url", registry),
        ("heartbeat_interval_ms", "200"),
    ] {
        config.set(k, v).expect("option");
    }
    (config, toolmesh_core::tls::TlsFiles { cert, key, ca })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_are_kept_across_registry_restarts_and_a_revoked_one_stays_revoked() {
    let state = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let partner = Mesh::named("partner CA");
    let (mesh, _, registry) = Mesh::start_auto(state.path(), Duration::from_secs(3600), HEARTBEAT).await;
    let admin = RegistryClient::new(&registry.url(), &mesh.identity("ops", Role::Operator)).expect("client");
    admin
        .add_entity(&EntityRequest { name: "partner".into(), ca_cert: partner.ca.cert_pem().into(), trust_domain: None })
        .await
        .expect("add entity");
    admin.apply_policy(&partner_policy()).await.expect("apply policy");
    registry.shutdown().await;

    // Started again on the same state directory: the same CA, and the entity is still trusted.
    let (mesh, _, registry) = Mesh::start_auto(state.path(), Duration::from_secs(3600), HEARTBEAT).await;
    let admin = RegistryClient::new(&registry.url(), &mesh.identity("ops", Role::Operator)).expect("client");
    let entities = admin.list_entities().await.expect("list entities").entities;
    assert_eq!(entities.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["partner"], "{entities:?}");
    assert_eq!(entities[0].ca_fingerprint, partner.ca.fingerprint());
    let theirs = start(partner_agent(files.path(), &mesh, &partner, &registry.url()).0, &["add"]).await;
    let listed = admin.list_agents().await.expect("list").agents;
    assert_eq!(listed.iter().find(|a| a.name == "partner/theirs").and_then(|a| a.entity.clone()).as_deref(), Some("partner"));
    admin.revoke_entity("partner").await.expect("revoke");
    theirs.shutdown().await;
    registry.shutdown().await;

    // Started again: the revocation was kept; the partner's agent is refused.
    let (mesh, _, registry) = Mesh::start_auto(state.path(), Duration::from_secs(3600), HEARTBEAT).await;
    let admin = RegistryClient::new(&registry.url(), &mesh.identity("ops", Role::Operator)).expect("client");
    assert!(admin.list_entities().await.expect("list entities").entities.is_empty(), "the revoked entity came back");
    let (config, _) = partner_agent(files.path(), &mesh, &partner, &registry.url());
    let refused = Agent::start(config, tools(&["add"]), Arc::new(FnHandler(|_: ToolInvocation, done: Completion| done.ok(json!(0)))))
        .await
        .expect("an agent starts while the registry refuses it");
    assert!(!refused.wait_registered(Duration::from_millis(800)).await, "a revoked entity's agent registered after a restart");
    assert!(admin.list_agents().await.expect("list").agents.is_empty());
    refused.shutdown().await;
    registry.shutdown().await;
}

/// The names of the entities in the registry's store in `state_dir`.
fn stored_entities(state_dir: &std::path::Path) -> Vec<String> {
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join(toolmesh_registry::STATE_FILE)).expect("state file")).expect("JSON");
    stored["entities"].as_array().expect("entities").iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect()
}
