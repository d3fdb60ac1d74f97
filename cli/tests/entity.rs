//! `toolmesh entity add/list/revoke` against a `toolmesh registry` process: only an admin
//! identity (an operator certificate of the mesh CA) changes entities, and the registry keeps
//! them in its state directory across a restart.

mod common;

use common::{run, toolmesh, Certs, RegistryProcess};
use std::path::Path;
use std::process::Command;

/// A registry from the files of `certs`, keeping its entities in `state`.
fn registry(certs: &Certs, state: &Path) -> RegistryProcess {
    RegistryProcess::start(certs, &["--state-dir", state.to_str().expect("utf-8")])
}

/// `toolmesh entity ARGS` against `registry` acting with `tls` (certificate flags).
fn entity(registry: &RegistryProcess, args: &[&str], tls: &[String]) -> Command {
    let mut command = toolmesh(&["entity"]);
    command.args(args).args(["--registry", &registry.url]).args(tls);
    command
}

#[test]
fn entities_are_added_listed_and_revoked_by_admins_only_and_kept_across_a_restart() {
    let certs = Certs::init("calc");
    let state = tempfile::tempdir().expect("tempdir");
    // The partner's own CA, with an operator certificate in its own trust domain, and one of the
    // same shape as the mesh's admin (spiffe://toolmesh.local/operator/ops), which its CA may not
    // vouch for.
    let partner = tempfile::tempdir().expect("tempdir");
    let partner_dir = partner.path().to_str().expect("utf-8");
    run(toolmesh(&["certs", "ca", "--dir", partner_dir, "--trust-domain", "partner.example"])).success();
    run(toolmesh(&["certs", "issue", "ops", "--dir", partner_dir, "--role", "operator", "--trust-domain", "toolmesh.local"])).success();
    run(toolmesh(&["certs", "issue", "their-ops", "--dir", partner_dir, "--role", "operator"])).success();
    let bundle = partner.path().join("bundle.pem");
    let pem = |path: &Path| std::fs::read_to_string(path).expect("read PEM");
    std::fs::write(&bundle, format!("{}{}", pem(&certs.path("ca.pem")), pem(&partner.path().join("ca.pem")))).expect("write bundle");
    let partner_ca = partner.path().join("ca.pem");
    let partner_ca = partner_ca.to_str().expect("utf-8");
    let admin = certs.tls_args("operator");
    let agent = certs.tls_args("calc");
    let impostor = certs.tls_args_with(&partner.path().join("ops.pem"), &partner.path().join("ops.key"), &bundle);
    let partner_operator = certs.tls_args_with(&partner.path().join("their-ops.pem"), &partner.path().join("their-ops.key"), &bundle);

    let mesh = registry(&certs, state.path());
    let listed = run(entity(&mesh, &["list"], &admin)).success();
    assert!(listed.stdout.contains("no entities: only the mesh CA is trusted"), "{}", listed.stdout);
    let refused = run(entity(&mesh, &["add", "partner", "--ca-cert", partner_ca], &agent));
    // A permission refusal (403), named as one rather than as a protocol error.
    refused.failure(1, "PEER_IDENTITY_NOT_ALLOWED", "admin identity").failure(
        1,
        "PEER_IDENTITY_NOT_ALLOWED",
        "spiffe://toolmesh.local/agent/calc is not an admin",
    );

    let added = run(entity(&mesh, &["add", "partner", "--ca-cert", partner_ca, "--trust-domain", "partner.example"], &admin)).success();
    assert!(added.stdout.contains("entity 'partner' added") && added.stdout.contains("partner.example"), "{}", added.stdout);
    let table = run(entity(&mesh, &["list"], &admin)).success();
    let header = table.stdout.lines().next().expect("header");
    for column in ["ENTITY", "CA SUBJECT", "CA SHA-256", "CA NOT AFTER", "ADDED"] {
        assert!(header.contains(column), "{column}: {}", table.stdout);
    }
    assert!(table.stdout.lines().nth(1).is_some_and(|row| row.starts_with("partner ")), "{}", table.stdout);
    let json = run(entity(&mesh, &["list", "--json"], &admin)).success();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let entities = json["entities"].as_array().expect("entities");
    assert_eq!(entities.len(), 1, "{json}");
    assert_eq!(entities[0]["name"], "partner");
    assert!(entities[0]["ca_subject"].as_str().is_some_and(|s| s.contains("partner.example")), "{json}");

    // An operator certificate minted by an entity's CA is no admin; one claiming the mesh's trust
    // domain is refused at the handshake, since the entity's CA may vouch only for its own.
    let other_ca = certs.path("ca.pem");
    run(entity(&mesh, &["add", "other", "--ca-cert", other_ca.to_str().expect("utf-8")], &impostor)).failure(
        1,
        "PEER_REJECTED_CERTIFICATE",
        "refused our client certificate",
    );
    let refused = run(entity(&mesh, &["add", "other", "--ca-cert", other_ca.to_str().expect("utf-8")], &partner_operator));
    refused.failure(1, "PEER_IDENTITY_NOT_ALLOWED", "admin identity").failure(
        1,
        "PEER_IDENTITY_NOT_ALLOWED",
        "is a certificate of entity 'partner'",
    );
    run(entity(&mesh, &["revoke", "partner"], &partner_operator)).failure(1, "PEER_IDENTITY_NOT_ALLOWED", "admin identity");

    // Kept across a restart on the same state directory.
    assert_eq!(mesh.terminate().0, Some(0));
    let mesh = registry(&certs, state.path());
    let json = run(entity(&mesh, &["list", "--json"], &admin)).success();
    assert!(json.stdout.contains("\"partner\""), "the entity did not survive the restart: {}", json.stdout);

    let revoked = run(entity(&mesh, &["revoke", "partner"], &admin)).success();
    assert!(revoked.stdout.contains("entity 'partner' revoked"), "{}", revoked.stdout);
    run(entity(&mesh, &["revoke", "partner"], &admin)).failure(1, "PROTOCOL", "no entity 'partner'");
    assert_eq!(mesh.terminate().0, Some(0));
    let mesh = registry(&certs, state.path());
    let listed = run(entity(&mesh, &["list"], &admin)).success();
    assert!(listed.stdout.contains("no entities"), "the revoked entity came back after a restart: {}", listed.stdout);
}

/// The scenario: two meshes (two CAs) run by one account, registries started without
/// --state-dir. The second must not inherit the first one's entities: each mesh gets its own
/// default directory (keyed by its CA, 0700, recording the CA), and a registry pointed at the
/// other mesh's directory refuses to start, naming both CAs and the fix.
#[test]
fn registries_of_two_meshes_without_state_dir_do_not_share_entities() {
    let home = tempfile::tempdir().expect("tempdir");
    let (first, second) = (Certs::init("calc"), Certs::init("calc"));
    let partner = tempfile::tempdir().expect("tempdir");
    let partner_dir = partner.path().to_str().expect("utf-8");
    run(toolmesh(&["certs", "ca", "--dir", partner_dir, "--trust-domain", "partner.example"])).success();
    let partner_ca = partner.path().join("ca.pem");
    let in_home = |certs: &Certs, extra: &[&str]| {
        let mut command = toolmesh(&["registry", "--port", "0", "--health-port", "off"]);
        command.args(certs.tls_args("registry")).args(extra).env("HOME", home.path());
        command
    };

    let mesh = RegistryProcess::spawn(in_home(&first, &[]));
    run(entity(&mesh, &["add", "partner", "--ca-cert", partner_ca.to_str().expect("utf-8")], &first.tls_args("operator"))).success();
    drop(mesh);
    let other = RegistryProcess::spawn(in_home(&second, &[]));
    let listed = run(entity(&other, &["list"], &second.tls_args("operator"))).success();
    assert!(listed.stdout.contains("no entities"), "the second mesh inherited the first one's entities: {}", listed.stdout);
    drop(other);

    let fingerprint =
        |certs: &Certs| toolmesh_ca::CertificateAuthority::load(&certs.path("ca.pem"), &certs.path("ca.key")).expect("CA").fingerprint();
    let meshes = home.path().join(".toolmesh").join("meshes");
    let first_dir = meshes.join(&fingerprint(&first)[..16]);
    let recorded = std::fs::read_to_string(first_dir.join("mesh-ca.sha256")).expect("the state directory records its mesh CA");
    assert!(recorded.lines().any(|l| l == fingerprint(&first)), "{recorded}");
    assert!(first_dir.join(toolmesh_registry::STATE_FILE).is_file());
    #[cfg(unix)]
    for dir in [home.path().join(".toolmesh"), meshes.clone(), first_dir.clone()] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dir).expect("metadata").permissions().mode() & 0o777, 0o700, "{}", dir.display());
    }

    // Pointed at the first mesh's directory, the second mesh's registry refuses to start.
    let refused = run(in_home(&second, &["--state-dir", first_dir.to_str().expect("utf-8")]));
    refused
        .failure(2, "INVALID_CONFIG", "belongs to another mesh")
        .failure(2, "INVALID_CONFIG", &fingerprint(&first))
        .failure(2, "INVALID_CONFIG", &fingerprint(&second))
        .failure(2, "INVALID_CONFIG", "--state-dir");
}
