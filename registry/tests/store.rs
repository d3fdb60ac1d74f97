//! The embedded store: a state directory of the layout before the store (schema version 1:
//! `entities.json`, `policy.json`, `ca.pem`, `ca.key`, `join-token`) is migrated to the one
//! state file and keeps working; a state file of a newer schema is refused with the fix.
//! Real registries over real mutual TLS.

mod common;

use common::{Mesh, RawClient};
use serde_json::json;
use std::time::Duration;
use toolmesh_ca::{CertificateAuthority, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::auto_tls::JoinToken;
use toolmesh_registry::store::SCHEMA_VERSION;
use toolmesh_registry::{AutoIssuer, RegistryConfig, STATE_FILE};

#[tokio::test]
async fn a_version_1_state_directory_is_migrated_and_keeps_everything() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = state.path();
    // What a registry before the store left behind.
    let ca = CertificateAuthority::generate(&toolmesh_ca::ca_common_name(DEFAULT_TRUST_DOMAIN), 1).expect("CA");
    let partner = CertificateAuthority::generate("partner CA", 1).expect("CA");
    let token = JoinToken::generate(&ca.fingerprint());
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("write");
    std::fs::write(dir.join("ca.key"), ca.key_pem()).expect("write");
    std::fs::write(dir.join("join-token"), format!("{}\n", token.reveal())).expect("write");
    let entities = json!({"entities": [{"name": "partner", "ca_cert": partner.cert_pem(), "added_at": "2026-01-01T00:00:00Z"}]});
    std::fs::write(dir.join("entities.json"), entities.to_string()).expect("write");
    std::fs::write(dir.join("policy.json"), json!({"version": 4, "policy": {"default": "deny", "rules": []}}).to_string()).expect("write");

    let issuer = AutoIssuer::prepare(dir, DEFAULT_TRUST_DOMAIN, Duration::from_secs(3600), vec!["127.0.0.1".into()]).expect("migrated");
    assert_eq!(issuer.ca_pem(), ca.cert_pem(), "the same CA");
    assert!(issuer.token().admits(&token.reveal()), "the same join token");
    for gone in ["entities.json", "policy.json", "ca.key"] {
        assert!(!dir.join(gone).exists(), "{gone} is in the state file now");
    }
    for kept in ["ca.pem", "join-token"] {
        assert!(dir.join(kept).exists(), "{kept} stays for operators and local agents");
    }
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).expect("state file")).expect("JSON");
    assert_eq!(stored["schema_version"], SCHEMA_VERSION);

    let mut config = RegistryConfig::new("127.0.0.1", 0, issuer.registry_identity().expect("identity"));
    config.issuer = Some(std::sync::Arc::new(issuer));
    config.state_dir = Some(dir.to_owned());
    let registry = toolmesh_registry::start(config).await.expect("start on the migrated directory");
    let mesh = Mesh { ca };
    let operator = RawClient::new(&registry.url(), &mesh.identity("ops", Role::Operator));
    let listed = operator.send("GET", "/v1/entities", None).await.json();
    assert_eq!(listed["entities"][0]["name"], "partner", "{listed}");
    assert_eq!(listed["entities"][0]["trust_domain"], "partner", "the default trust domain of an entity stored without one");
    let policy = operator.send("GET", "/v1/policy", None).await.json();
    assert_eq!((policy["version"].as_u64(), policy["policy"]["default"].as_str()), (Some(4), Some("deny")), "{policy}");
    registry.shutdown().await;
}

#[tokio::test]
async fn a_state_file_of_a_newer_schema_is_refused_naming_the_fix() {
    let mesh = Mesh::new();
    let state = tempfile::tempdir().expect("tempdir");
    let newer = json!({"schema_version": SCHEMA_VERSION + 1, "entities": [], "shards": {}});
    std::fs::write(state.path().join(STATE_FILE), newer.to_string()).expect("write");
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.state_dir = Some(state.path().to_owned());
    let refused = toolmesh_registry::start(config).await.err().expect("a newer schema is not read");
    assert_eq!(refused.kind(), toolmesh_core::ErrorKind::InvalidConfig);
    for part in [STATE_FILE, "written by a newer toolmesh", &format!("up to version {SCHEMA_VERSION}")] {
        assert!(refused.message().contains(part), "{part:?} missing in: {}", refused.message());
    }
    let damaged = state.path().join(STATE_FILE);
    std::fs::write(&damaged, "{\"schema_version\": 2, \"entities\": [{\"name\": 1}]}").expect("write");
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.state_dir = Some(state.path().to_owned());
    let refused = toolmesh_registry::start(config).await.err().expect("a damaged state file is not read");
    assert!(refused.message().contains("restore it from a backup"), "{}", refused.message());
}
