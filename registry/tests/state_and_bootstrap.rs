//! A registry's state directory belongs to one mesh and is private; the `--tls-auto` bootstrap
//! issues no certificate naming the registry's own names and throttles failed join tokens.
//! Real registries over real mutual TLS.

mod common;

use common::{Mesh, RawClient};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use toolmesh_ca::Role;
use toolmesh_registry::{RegistryConfig, RunningRegistry, MESH_CA_FILE};

async fn start_in(mesh: &Mesh, state_dir: &Path) -> toolmesh_core::Result<RunningRegistry> {
    let mut config = RegistryConfig::new("127.0.0.1", 0, mesh.identity("registry", Role::Registry));
    config.state_dir = Some(state_dir.to_owned());
    toolmesh_registry::start(config).await
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn fingerprint(mesh: &Mesh) -> String {
    mesh.ca.fingerprint()
}

#[tokio::test]
async fn a_state_dir_written_for_one_mesh_ca_is_refused_to_another() {
    let (ours, theirs, partner) = (Mesh::named("our mesh CA"), Mesh::named("their mesh CA"), Mesh::named("partner CA"));
    let base = tempfile::tempdir().expect("tempdir");
    let state = base.path().join("state");
    #[cfg(unix)]
    {
        // An existing directory open to everyone is made private.
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&state).expect("mkdir");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }

    let registry = start_in(&ours, &state).await.expect("start");
    #[cfg(unix)]
    assert_eq!(mode(&state), 0o700, "the state directory is private");
    let operator = RawClient::new(&registry.url(), &ours.identity("ops", Role::Operator));
    let added =
        operator.send("POST", "/v1/entities", Some(json!({"name": "partner", "ca_cert": partner.ca.cert_pem()}).to_string().into())).await;
    assert_eq!(added.status, 200, "{}", String::from_utf8_lossy(&added.body));
    registry.shutdown().await;
    let recorded = std::fs::read_to_string(state.join(MESH_CA_FILE)).expect("the mesh CA is recorded");
    assert!(recorded.lines().any(|l| l == fingerprint(&ours)), "{recorded}");

    let refused = start_in(&theirs, &state).await.err().expect("another mesh's registry must not take the directory");
    assert_eq!(refused.kind(), toolmesh_core::ErrorKind::InvalidConfig);
    for part in ["belongs to another mesh", &fingerprint(&ours), &fingerprint(&theirs), "--state-dir", MESH_CA_FILE] {
        assert!(refused.message().contains(part), "{part:?} missing in: {}", refused.message());
    }

    // The directory's own mesh still starts on it, with its entity.
    let registry = start_in(&ours, &state).await.expect("restart");
    let listed = RawClient::new(&registry.url(), &ours.identity("ops", Role::Operator)).send("GET", "/v1/entities", None).await.json();
    assert_eq!(listed["entities"][0]["name"], "partner", "{listed}");
    registry.shutdown().await;
}

#[tokio::test]
async fn a_state_dir_from_before_the_record_is_adopted() {
    let mesh = Mesh::new();
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::write(state.path().join("entities.json"), r#"{"entities": []}"#).expect("an earlier registry's entities");
    let registry = start_in(&mesh, state.path()).await.expect("an unrecorded directory is adopted");
    registry.shutdown().await;
    let recorded = std::fs::read_to_string(state.path().join(MESH_CA_FILE)).expect("adopted: the mesh CA is recorded");
    assert!(recorded.lines().any(|l| l == fingerprint(&mesh)), "{recorded}");
}

#[tokio::test]
async fn tls_auto_makes_no_new_ca_in_a_directory_of_another_mesh() {
    let mesh = Mesh::new();
    let state = tempfile::tempdir().expect("tempdir");
    start_in(&mesh, state.path()).await.expect("start").shutdown().await;
    let refused = toolmesh_registry::AutoIssuer::prepare(state.path(), "toolmesh.local", Duration::from_secs(60), vec![])
        .expect_err("the directory is the other mesh's");
    assert!(refused.message().contains(&fingerprint(&mesh)) && refused.message().contains("--state-dir"), "{}", refused.message());
    assert!(!state.path().join("ca.pem").exists(), "no CA was made there");
}

/// A `--tls-auto` registry (reached at 127.0.0.1 and registry.example) whose bootstrap cools a
/// source down after `failures` wrong tokens for `cooldown`.
async fn auto_registry(
    state: &Path,
    failures: u32,
    cooldown: Duration,
) -> (std::sync::Arc<toolmesh_registry::AutoIssuer>, RunningRegistry) {
    let hosts = vec!["127.0.0.1".to_owned(), "registry.example".to_owned()];
    let issuer = toolmesh_registry::AutoIssuer::prepare(state, "toolmesh.local", Duration::from_secs(3600), hosts).expect("prepare");
    let issuer = std::sync::Arc::new(issuer.with_join_throttle(failures, Duration::from_secs(60), cooldown));
    let mut config = RegistryConfig::new("127.0.0.1", 0, issuer.registry_identity().expect("identity"));
    config.issuer = Some(issuer.clone());
    config.state_dir = Some(state.to_owned());
    (issuer, toolmesh_registry::start(config).await.expect("start"))
}

fn join_request(name: &str, hosts: &[&str]) -> bytes::Bytes {
    let (_, csr) = toolmesh_ca::certificate_request(name).expect("csr");
    json!({"name": name, "csr": csr, "hosts": hosts}).to_string().into()
}

#[tokio::test]
async fn bootstrap_refuses_every_dns_name_of_the_registrys_own_certificate() {
    let state = tempfile::tempdir().expect("tempdir");
    let (issuer, registry) = auto_registry(state.path(), 5, Duration::from_secs(60)).await;
    let joining = RawClient::anonymous(&registry.url(), issuer.token().ca_fingerprint(), Some(issuer.token().reveal()));
    // `registry` is a DNS name of the registry's certificate (as its CN): asked for as a host, it
    // was issued to any agent.
    for hosts in [&["registry"][..], &["Registry."], &["10.0.0.7", "registry.example"]] {
        let refused = joining.send("POST", "/v1/bootstrap", Some(join_request("joiner", hosts))).await;
        assert_eq!(refused.status, 400, "hosts {hosts:?}: {}", String::from_utf8_lossy(&refused.body));
        let message = refused.json()["message"].as_str().expect("message").to_owned();
        assert!(
            message.contains("one of the registry's own names") && message.contains("advertise the agent under its own name"),
            "{message}"
        );
    }
    // What every process of a machine shares stays allowed.
    let issued = joining.send("POST", "/v1/bootstrap", Some(join_request("joiner", &["localhost", "127.0.0.1", "joiner.internal"]))).await;
    assert_eq!(issued.status, 200, "{}", String::from_utf8_lossy(&issued.body));
    registry.shutdown().await;
}

#[tokio::test]
async fn failed_join_tokens_cool_their_source_down() {
    let state = tempfile::tempdir().expect("tempdir");
    let (issuer, registry) = auto_registry(state.path(), 3, Duration::from_secs(2)).await;
    let fingerprint = issuer.token().ca_fingerprint().to_owned();
    let wrong = toolmesh_core::auto_tls::JoinToken::generate(&fingerprint).reveal();
    let guessing = RawClient::anonymous(&registry.url(), &fingerprint, Some(wrong));
    let joining = RawClient::anonymous(&registry.url(), &fingerprint, Some(issuer.token().reveal()));
    let anonymous = RawClient::anonymous(&registry.url(), &fingerprint, None);

    let first = anonymous.send("POST", "/v1/bootstrap", Some(join_request("a", &[]))).await;
    assert_eq!(first.status, 401, "no token");
    for _ in 0..2 {
        assert_eq!(guessing.send("POST", "/v1/bootstrap", Some(join_request("a", &[]))).await.status, 401);
    }
    // The third failure started the cooldown: every request from the source is refused, the
    // right token too (so the answer tells a guesser nothing), with when to retry.
    for client in [&guessing, &joining] {
        let cooled = client.send("POST", "/v1/bootstrap", Some(join_request("a", &[]))).await;
        assert_eq!(cooled.status, 429, "{}", String::from_utf8_lossy(&cooled.body));
        let retry_after: u64 = cooled.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
        assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
        let body = cooled.json();
        assert_eq!(body["error"], "too_many_failed_joins");
        assert!(body["message"].as_str().expect("message").contains("retry in"), "{body}");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let issued = joining.send("POST", "/v1/bootstrap", Some(join_request("a", &[]))).await;
    assert_eq!(issued.status, 200, "after the cooldown the right token works: {}", String::from_utf8_lossy(&issued.body));
    registry.shutdown().await;
}
