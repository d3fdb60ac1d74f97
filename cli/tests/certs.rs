//! `toolmesh certs init` and `toolmesh certs issue`, run as the real binary.

mod common;

use common::{run, toolmesh, Certs, RegistryProcess};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The openssl checks prove something only when openssl runs: a missing binary fails them.
fn require_openssl() {
    let works = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(works, "these tests check certificates with `openssl x509` and `openssl verify`: install openssl (apt-get install openssl)");
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

/// `certs init`, `certs ca` and `certs issue` under umask 000: every directory they create is
/// 0700 (the umask would otherwise leave 0777), the keys 0600.
#[cfg(unix)]
#[test]
fn directories_created_under_a_permissive_umask_are_private() {
    let base = tempfile::tempdir().expect("tempdir");
    let under_umask_000 = |args: &[&str]| {
        let mut command = Command::new("sh");
        command.args(["-c", "umask 000; exec \"$@\"", "sh", env!("CARGO_BIN_EXE_toolmesh")]).args(args);
        command.env_remove("TOOLMESH_STATE_DIR");
        run(command).success()
    };
    let init = base.path().join("init").join("pki");
    under_umask_000(&["certs", "init", "--dir", init.to_str().expect("utf-8"), "--agents", "calc"]);
    assert_eq!(mode(&base.path().join("init")), 0o700, "a missing parent too");
    assert_eq!(mode(&init), 0o700);
    assert_eq!(mode(&init.join("calc.key")), 0o600);
    let ca = base.path().join("ca");
    under_umask_000(&["certs", "ca", "--dir", ca.to_str().expect("utf-8")]);
    assert_eq!(mode(&ca), 0o700);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    // `issue` writes into --dir, which holds the CA; a pair elsewhere is not possible, so the
    // directory stays as `ca` made it.
    under_umask_000(&["certs", "issue", "search", "--dir", ca.to_str().expect("utf-8")]);
    assert_eq!(mode(&ca), 0o700);
    // An existing directory others may write to is kept, with a warning naming the fix.
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let warned = under_umask_000(&["certs", "ca", "--dir", shared.to_str().expect("utf-8")]);
    assert!(
        warned.stderr.contains("is writable by its group or others (mode 777)") && warned.stderr.contains("chmod 700"),
        "{}",
        warned.stderr
    );
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
    let issued =
        run(toolmesh(&["certs", "issue", "search", "--dir", &dir, "--dns", "search.internal", "--ip", "10.0.0.7", "--days", "30"]))
            .success();
    assert!(issued.stdout.contains("spiffe://toolmesh.local/agent/search"), "{}", issued.stdout);
    #[cfg(unix)]
    assert_eq!(mode(&certs.path("search.key")), 0o600);

    run(toolmesh(&["certs", "issue", "search", "--dir", &dir])).failure(2, "INVALID_CONFIG", "--force");
    run(toolmesh(&["certs", "issue", "calc", "--dir", &dir, "--role", "operator", "--force"])).success();

    let empty = tempfile::tempdir().expect("tempdir");
    let no_ca = run(toolmesh(&["certs", "issue", "x", "--dir", empty.path().to_str().expect("utf-8")]));
    no_ca.failure(2, "CERTIFICATE_FILE", "ca.pem");

    require_openssl();
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

#[test]
fn ca_then_issue_with_rsa_keys_and_extra_sans_verifies_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8").to_owned();
    run(toolmesh(&["certs", "ca", "--dir", &path, "--key-type", "rsa-2048"])).success();
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    run(toolmesh(&["certs", "ca", "--dir", &path])).failure(2, "INVALID_CONFIG", "--force");
    let issued = run(toolmesh(&[
        "certs",
        "issue",
        "billing",
        "--dir",
        &path,
        "--key-type",
        "rsa-3072",
        "--uri",
        "spiffe://partner.example/agent/billing",
    ]))
    .success();
    assert!(issued.stdout.contains("rsa-3072"), "{}", issued.stdout);
    run(toolmesh(&["certs", "issue", "p256", "--dir", &path])).success();
    run(toolmesh(&["certs", "issue", "x", "--dir", &path, "--key-type", "dsa"])).failure(2, "INVALID_CONFIG", "rsa-4096");
    run(toolmesh(&["certs", "issue", "x", "--dir", &path, "--uri", "https://x"])).failure(2, "INVALID_CONFIG", "spiffe://");

    require_openssl();
    let ca = dir.path().join("ca.pem");
    for name in ["billing", "p256"] {
        let cert = dir.path().join(format!("{name}.pem"));
        let verified = openssl(&["verify", "-purpose", "sslclient", "-CAfile", ca.to_str().expect("utf-8"), cert.to_str().expect("utf-8")]);
        assert!(verified.contains(": OK"), "{verified}");
        let verified = openssl(&["verify", "-purpose", "sslserver", "-CAfile", ca.to_str().expect("utf-8"), cert.to_str().expect("utf-8")]);
        assert!(verified.contains(": OK"), "{verified}");
    }
    let text = openssl(&["x509", "-noout", "-text", "-in", dir.path().join("billing.pem").to_str().expect("utf-8")]);
    assert!(text.contains("Public-Key: (3072 bit)"), "{text}");
    assert!(text.contains("URI:spiffe://partner.example/agent/billing"), "{text}");
    let ca_text = openssl(&["x509", "-noout", "-text", "-in", ca.to_str().expect("utf-8")]);
    assert!(ca_text.contains("Public-Key: (2048 bit)") && ca_text.contains("CA:TRUE"), "{ca_text}");
    assert_eq!(openssl(&["rsa", "-check", "-noout", "-in", dir.path().join("billing.key").to_str().expect("utf-8")]).trim(), "RSA key ok");
}

/// `certs ca --trust-domain D` then `certs issue`/`rotate` without one: the leaves are in D, not
/// in toolmesh.local; an explicit --trust-domain still wins, with a warning when it is not D.
#[test]
fn issue_and_rotate_take_the_trust_domain_of_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8").to_owned();
    run(toolmesh(&["certs", "ca", "--dir", &path, "--trust-domain", "prod.example"])).success();
    let issued = run(toolmesh(&["certs", "issue", "calc", "--dir", &path])).success();
    assert!(issued.stdout.contains("spiffe://prod.example/agent/calc"), "{}", issued.stdout);
    assert!(!issued.stderr.contains("warning"), "{}", issued.stderr);
    run(toolmesh(&["certs", "issue", "ops", "--dir", &path, "--role", "operator"])).success();
    let other = run(toolmesh(&["certs", "issue", "guest", "--dir", &path, "--trust-domain", "other.example"])).success();
    assert!(other.stdout.contains("spiffe://other.example/agent/guest"), "{}", other.stdout);
    assert!(
        other.stderr.contains("warning: --trust-domain other.example differs from the CA's trust domain prod.example"),
        "{}",
        other.stderr
    );
    run(toolmesh(&["certs", "rotate", "calc", "--dir", &path])).success();

    require_openssl();
    let text = |name: &str| openssl(&["x509", "-noout", "-text", "-in", dir.path().join(format!("{name}.pem")).to_str().expect("utf-8")]);
    for (name, uri) in [("calc", "URI:spiffe://prod.example/agent/calc"), ("ops", "URI:spiffe://prod.example/operator/ops")] {
        let text = text(name);
        assert!(text.contains(uri) && !text.contains("toolmesh.local"), "{name}: {text}");
    }
    assert!(text("guest").contains("URI:spiffe://other.example/agent/guest"));
}

#[test]
fn init_from_a_yaml_config_names_roles_dns_and_ips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mesh.yaml");
    std::fs::write(
        &config,
        "trust_domain: prod.example\ndays: 45\nagents:\n  - name: registry\n    dns: [registry.prod.example]\n  - name: calc\n    dns: [calc.internal]\n    ip: [10.0.0.5]\n  - name: admin\n    role: operator\n",
    )
    .expect("write config");
    let out = dir.path().join("certs");
    let out_str = out.to_str().expect("utf-8");
    run(toolmesh(&["certs", "init", "--dir", out_str, "--config", config.to_str().expect("utf-8")])).success();
    let check = run(toolmesh(&["certs", "check", "--dir", out_str, "--warn-days", "10"])).success();
    let row = |name: &str| {
        check
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}.pem")))
            .unwrap_or_else(|| panic!("{name}: {}", check.stdout))
            .to_owned()
    };
    assert!(
        row("registry").contains("DNS:registry.prod.example") && row("registry").contains("URI:spiffe://prod.example/registry/registry")
    );
    assert!(
        row("calc").contains("IP:10.0.0.5")
            && row("calc").contains("DNS:calc.internal")
            && row("calc").contains("spiffe://prod.example/agent/calc")
    );
    assert!(row("admin").contains("URI:spiffe://prod.example/operator/admin"), "{}", row("admin"));
    assert!(row("operator").contains(" 44 ") || row("operator").contains(" 45 "), "45 days: {}", row("operator"));

    require_openssl();
    let ca = out.join("ca.pem");
    for name in ["registry", "calc", "admin", "operator"] {
        let cert = out.join(format!("{name}.pem"));
        for purpose in ["sslclient", "sslserver"] {
            let verified = openssl(&["verify", "-purpose", purpose, "-CAfile", ca.to_str().expect("utf-8"), cert.to_str().expect("utf-8")]);
            assert!(verified.contains(": OK"), "{name}: {verified}");
        }
    }

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "agents:\n  - nam: x\n").expect("write");
    run(toolmesh(&["certs", "init", "--dir", out_str, "--config", bad.to_str().expect("utf-8")])).failure(2, "INVALID_CONFIG", "nam");
    std::fs::write(&bad, "agents:\n  - name: x\n    role: boss\n").expect("write");
    run(toolmesh(&["certs", "init", "--dir", out_str, "--config", bad.to_str().expect("utf-8"), "--force"])).failure(
        2,
        "INVALID_CONFIG",
        "role 'boss'",
    );
}

#[test]
fn check_fails_when_a_certificate_expires_within_the_threshold() {
    let certs = Certs::init("calc");
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    let fine = run(toolmesh(&["certs", "check", "--dir", &dir])).success();
    for header in ["FILE", "SUBJECT", "SANS", "ISSUER", "NOT AFTER", "DAYS LEFT"] {
        assert!(fine.stdout.lines().next().is_some_and(|h| h.contains(header)), "{header}: {}", fine.stdout);
    }
    assert_eq!(fine.stdout.lines().count(), 5, "ca, registry, operator, calc + header: {}", fine.stdout);
    run(toolmesh(&["certs", "issue", "short", "--dir", &dir, "--days", "7"])).success();
    let failed = run(toolmesh(&["certs", "check", "--dir", &dir])).failure(1, "CERTIFICATE_EXPIRED", "short.pem (expires soon)");
    assert!(failed.stdout.contains("EXPIRES SOON"), "{}", failed.stdout);
    run(toolmesh(&["certs", "check", "--dir", &dir, "--warn-days", "5"])).success();
    let empty = tempfile::tempdir().expect("tempdir");
    run(toolmesh(&["certs", "check", "--dir", empty.path().to_str().expect("utf-8")])).failure(2, "INVALID_CONFIG", "no certificate");
}

#[test]
fn rotate_reissues_in_place_with_a_new_key_and_the_same_names() {
    let certs = Certs::init("calc");
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    run(toolmesh(&["certs", "issue", "search", "--dir", &dir, "--dns", "search.internal", "--key-type", "rsa-2048"])).success();
    let before = |name: &str| {
        (std::fs::read(certs.path(&format!("{name}.pem"))).expect("pem"), std::fs::read(certs.path(&format!("{name}.key"))).expect("key"))
    };
    let (search_cert, search_key) = before("search");
    let (calc_cert, _) = before("calc");
    let rotated = run(toolmesh(&["certs", "rotate", "search", "--dir", &dir])).success();
    assert!(rotated.stdout.contains("rotated"), "{}", rotated.stdout);
    let (new_cert, new_key) = before("search");
    assert_ne!(new_cert, search_cert);
    assert_ne!(new_key, search_key, "a rotation brings a new key");
    assert_eq!(before("calc").0, calc_cert, "only the named pair rotates");
    #[cfg(unix)]
    assert_eq!(mode(&certs.path("search.key")), 0o600);
    run(toolmesh(&["certs", "rotate", "ca", "--dir", &dir])).failure(2, "INVALID_CONFIG", "not rotated in place");
    run(toolmesh(&["certs", "rotate", "nobody", "--dir", &dir])).failure(2, "CERTIFICATE_FILE", "nobody.pem");
    let all = run(toolmesh(&["certs", "rotate", "--all", "--dir", &dir])).success();
    assert_eq!(all.stdout.lines().count(), 4, "calc, operator, registry, search: {}", all.stdout);
    assert_ne!(before("calc").0, calc_cert);

    require_openssl();
    let ca = certs.path("ca.pem");
    let search = certs.path("search.pem");
    assert!(openssl(&["verify", "-CAfile", ca.to_str().expect("utf-8"), search.to_str().expect("utf-8")]).contains(": OK"));
    let sans = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", search.to_str().expect("utf-8")]);
    assert!(sans.contains("DNS:search.internal") && sans.contains("URI:spiffe://toolmesh.local/agent/search"), "{sans}");
    let text = openssl(&["x509", "-noout", "-text", "-in", search.to_str().expect("utf-8")]);
    assert!(text.contains("Public-Key: (2048 bit)"), "the key type is kept: {text}");
}

#[test]
fn defaults_are_p256_keys_and_90_day_leaves_and_rsa_4096_on_request() {
    require_openssl();
    let certs = Certs::init("calc");
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    let calc = certs.path("calc.pem");
    let calc = calc.to_str().expect("utf-8");
    let text = openssl(&["x509", "-noout", "-text", "-in", calc]);
    assert!(text.contains("ASN1 OID: prime256v1") && text.contains("Public-Key: (256 bit)"), "ECDSA P-256 by default: {text}");
    // Valid for 89-90 more days: not expiring within 89 days, but within 90 days and an hour.
    let checkend = |days: u64, extra: u64| {
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", &(days * 86_400 + extra).to_string(), "-in", calc])
            .output()
            .expect("openssl")
            .status
    };
    assert!(checkend(89, 0).success(), "expires within 89 days");
    assert!(!checkend(90, 3600).success(), "valid past 90 days");
    let check = run(toolmesh(&["certs", "check", "--dir", &dir])).success();
    let row = check.stdout.lines().find(|l| l.starts_with("calc.pem")).expect("calc row").to_owned();
    assert!(row.split_whitespace().any(|w| w == "89" || w == "90"), "days left: {row}");

    run(toolmesh(&["certs", "issue", "big", "--dir", &dir, "--key-type", "rsa-4096"])).success();
    let big = certs.path("big.pem");
    let text = openssl(&["x509", "-noout", "-text", "-in", big.to_str().expect("utf-8")]);
    assert!(text.contains("Public-Key: (4096 bit)") && text.contains("rsaEncryption"), "{text}");
    let ca = certs.path("ca.pem");
    assert!(openssl(&["verify", "-CAfile", ca.to_str().expect("utf-8"), big.to_str().expect("utf-8")]).contains(": OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_issued_through_bootstrap_verifies_against_the_state_dirs_ca() {
    require_openssl();
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().to_str().expect("utf-8").to_owned();
    let registry = RegistryProcess::spawn(toolmesh(&["registry", "--tls-auto", "--state-dir", &state_dir, "--port", "0"]));
    let token = std::fs::read_to_string(state.path().join("join-token")).expect("join token");
    let mut config = toolmesh_core::config::AgentConfig::from_env("calc").expect("config");
    for (key, value) in [("tls", "auto"), ("registry_url", registry.url.as_str()), ("join_token", token.trim())] {
        config.set(key, value).expect("option");
    }
    let tools = serde_json::from_value(serde_json::json!([{"name": "add", "capability": "add"}])).expect("tools");
    let handler = toolmesh_core::host::FnHandler(|_: toolmesh_core::host::ToolInvocation, done: toolmesh_core::host::Completion| {
        done.ok(serde_json::json!(0))
    });
    let agent = toolmesh_core::agent::Agent::start(config, tools, Arc::new(handler)).await.expect("an auto agent starts");
    assert!(agent.wait_registered(Duration::from_secs(10)).await);

    // The certificate the agent got from the registry, as it presents it.
    let file = |name: &str| state.path().join(name).to_str().expect("utf-8").to_owned();
    let address = agent.local_addr().to_string();
    let shown = tokio::task::spawn_blocking({
        let (ca, cert, key) = (file("ca.pem"), file("operator.pem"), file("operator.key"));
        move || {
            Command::new("timeout")
                .args(["10", "openssl", "s_client", "-connect", &address, "-CAfile", &ca, "-cert", &cert, "-key", &key])
                .stdin(Stdio::null())
                .output()
                .expect("openssl s_client")
        }
    })
    .await
    .expect("s_client");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let begin = shown.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("no certificate shown: {shown}"));
    let end = shown.find("-----END CERTIFICATE-----").expect("end of the certificate") + "-----END CERTIFICATE-----".len();
    let issued = state.path().join("bootstrapped.pem");
    std::fs::write(&issued, format!("{}\n", &shown[begin..end])).expect("write");
    let issued = issued.to_str().expect("utf-8");
    let text = openssl(&["x509", "-noout", "-text", "-in", issued]);
    assert!(text.contains("URI:spiffe://toolmesh.local/agent/calc"), "{text}");
    for purpose in ["sslclient", "sslserver"] {
        let verified = openssl(&["verify", "-purpose", purpose, "-CAfile", &file("ca.pem"), issued]);
        assert!(verified.contains(": OK"), "{verified}");
    }
    let other = Certs::init("calc");
    let foreign = Command::new("openssl")
        .args(["verify", "-CAfile", other.path("ca.pem").to_str().expect("utf-8"), issued])
        .output()
        .expect("openssl");
    assert!(!foreign.status.success(), "the check can fail: another CA does not verify it");
    agent.shutdown().await;
    drop(registry);
}

#[cfg(unix)]
#[test]
fn private_keys_readable_by_others_are_flagged_by_check_and_at_load() {
    use std::os::unix::fs::PermissionsExt;
    let certs = Certs::init("calc");
    let dir = certs.dir.path().to_str().expect("utf-8").to_owned();
    let fine = run(toolmesh(&["certs", "check", "--dir", &dir])).success();
    assert!(!fine.stderr.contains("readable by its group or others"), "init writes 0600 keys: {}", fine.stderr);
    let key = certs.path("registry.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let flagged = run(toolmesh(&["certs", "check", "--dir", &dir])).success();
    let line = format!(
        "the private key {} is readable by its group or others (mode 640); restrict it with `chmod 600 {}`",
        key.display(),
        key.display()
    );
    assert!(flagged.stderr.contains(&line), "{}", flagged.stderr);
    assert_eq!(flagged.stderr.matches("readable by its group or others").count(), 1, "only that key: {}", flagged.stderr);
    // Loading it works, with a warning in the log; at debug level both ends log each handshake
    // with the peer's identity, never key material.
    let mut command = toolmesh(&["registry", "--port", "0"]);
    command.args(certs.tls_args("registry")).env("RUST_LOG", "debug");
    let registry = common::RegistryProcess::spawn(command);
    let listed = run(toolmesh(&["list", "--registry", &registry.url]).args(certs.tls_args("operator")).env("RUST_LOG", "debug")).success();
    let (_, logs) = registry.terminate();
    assert!(logs.contains("the private key file is readable by its group or others") && logs.contains("WARN"), "{logs}");
    let accepted = logs.lines().find(|l| l.contains("TLS handshake accepted")).unwrap_or_else(|| panic!("{logs}"));
    assert!(accepted.contains("peer=spiffe://toolmesh.local/operator/operator"), "{accepted}");
    let done = listed.stderr.lines().find(|l| l.contains("TLS handshake done")).unwrap_or_else(|| panic!("{}", listed.stderr));
    assert!(done.contains("peer=spiffe://toolmesh.local/registry/registry"), "{done}");
    for text in [&logs, &listed.stderr] {
        assert!(!text.contains("PRIVATE KEY"), "key material in the log: {text}");
    }
}
