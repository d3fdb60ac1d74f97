//! `toolmesh certs init` and `toolmesh certs issue`, run as the real binary.

mod common;

use common::{run, toolmesh, Certs};
use std::process::Command;

fn openssl_available() -> bool {
    Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
}

fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).output().expect("run openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openssl {args:?} failed: {text}");
    text
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn init_writes_a_complete_set_with_private_keys_and_refuses_to_run_twice() {
    let certs = Certs::init("calc,report");
    for name in ["ca", "registry", "operator", "calc", "report"] {
        let (cert, key) = (certs.path(&format!("{name}.pem")), certs.path(&format!("{name}.key")));
        assert!(cert.is_file() && key.is_file(), "{name} pair missing");
        #[cfg(unix)]
        {
            assert_eq!(mode(&key), 0o600, "{name}.key must be private");
            assert_eq!(mode(&cert), 0o644, "{name}.pem");
        }
    }
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    let before = std::fs::read(certs.path("ca.key")).expect("read");
    let again = run(toolmesh(&["certs", "init", "--dir", &dir, "--agents", "other"]));
    again.failure(2, "INVALID_CONFIG", "ca.pem already exists").failure(2, "INVALID_CONFIG", "--force");
    assert!(!certs.path("other.pem").exists(), "a refused run writes nothing");
    assert_eq!(std::fs::read(certs.path("ca.key")).expect("read"), before);

    let forced = run(toolmesh(&["certs", "init", "--dir", &dir, "--force"])).success();
    assert!(forced.stdout.contains("TOOLMESH_TLS_CA="), "prints the env vars: {}", forced.stdout);
    assert_ne!(std::fs::read(certs.path("ca.key")).expect("read"), before, "--force replaces the CA");
}

#[test]
fn init_rejects_unusable_names_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certs");
    let path = path.to_str().expect("utf-8");
    for (agents, problem) in [("ca", "reserved"), ("a/b", "not a usable certificate name"), ("calc,calc", "twice")] {
        run(toolmesh(&["certs", "init", "--dir", path, "--agents", agents])).failure(2, "INVALID_CONFIG", problem);
    }
    run(toolmesh(&["certs", "init", "--dir", path, "--days", "0"])).failure(2, "INVALID_CONFIG", "--days");
    assert!(!dir.path().join("certs").exists());
}

#[test]
fn issue_adds_a_certificate_signed_by_the_mesh_ca() {
    let certs = Certs::init("calc");
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    let issued = run(toolmesh(&[
        "certs", "issue", "search", "--dir", &dir, "--dns", "search.internal", "--ip", "10.0.0.7", "--days", "30",
    ]))
    .success();
    assert!(issued.stdout.contains("spiffe://toolmesh.local/agent/search"), "{}", issued.stdout);
    #[cfg(unix)]
    assert_eq!(mode(&certs.path("search.key")), 0o600);

    run(toolmesh(&["certs", "issue", "search", "--dir", &dir])).failure(2, "INVALID_CONFIG", "--force");
    run(toolmesh(&["certs", "issue", "calc", "--dir", &dir, "--role", "operator", "--force"])).success();

    let empty = tempfile::tempdir().expect("tempdir");
    let no_ca = run(toolmesh(&["certs", "issue", "x", "--dir", empty.path().to_str().expect("utf-8")]));
    no_ca.failure(2, "CERTIFICATE_FILE", "ca.pem");

    if !openssl_available() {
        eprintln!("openssl is not installed; skipping the chain check");
        return;
    }
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    for name in ["registry", "operator", "calc", "search"] {
        let cert = certs.path(&format!("{name}.pem"));
        let verified = openssl(&["verify", "-CAfile", ca, cert.to_str().expect("utf-8")]);
        assert!(verified.contains(": OK"), "{verified}");
    }
    let search = certs.path("search.pem");
    let sans = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", search.to_str().expect("utf-8")]);
    for want in ["DNS:search", "DNS:search.internal", "IP Address:10.0.0.7", "URI:spiffe://toolmesh.local/agent/search"] {
        assert!(sans.contains(want), "{want} missing from {sans}");
    }
    let calc = certs.path("calc.pem");
    let sans = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", calc.to_str().expect("utf-8")]);
    assert!(sans.contains("URI:spiffe://toolmesh.local/operator/calc"), "--force replaced it with the new role: {sans}");
}
