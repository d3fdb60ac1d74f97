//! The hardening table of docs/identity.md, checked against real processes: old TLS versions
//! and missing client certificates refused, and no key material in a debug log of a full
//! `--tls-auto` run (registry, an agent bootstrapping, operator commands).

mod common;

use common::{run, toolmesh, Certs, RegistryProcess};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};

fn openssl_available() -> bool {
    Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
}

/// `openssl s_client` against `url` with `extra` flags, sending one HTTP request; (success, output).
fn s_client(url: &str, extra: &[&str]) -> (bool, String) {
    let address = url.trim_start_matches("https://");
    let mut child = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-ign_eof", "-connect", address, "-servername", "localhost"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    use std::io::Write;
    let _ = child.stdin.take().expect("stdin").write_all(b"GET /v1/agents HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let output = child.wait_with_output().expect("openssl output");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn old_tls_versions_and_missing_client_certificates_are_refused() {
    if !openssl_available() {
        eprintln!("openssl is not installed (apt-get install openssl); skipping");
        return;
    }
    let certs = Certs::init("calc");
    let registry = RegistryProcess::start(&certs, &[]);
    for old in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(&registry.url, &[old]);
        assert!(!ok && !text.contains("HTTP/1.1"), "{old} must fail the handshake: {text}");
    }
    let (_, text) = s_client(&registry.url, &["-tls1_2", "-CAfile", certs.path("ca.pem").to_str().expect("utf-8")]);
    assert!(!text.contains("HTTP/1.1 200"), "served without a client certificate: {text}");
    assert!(text.to_lowercase().contains("alert") || text.contains("errno"), "refused in the handshake: {text}");
    let file = |name: &str| certs.path(name).to_str().expect("utf-8").to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("operator.pem"), file("operator.key"));
    let with_cert = ["-tls1_2", "-CAfile", &ca, "-cert", &cert, "-key", &key];
    let (_, text) = s_client(&registry.url, &with_cert);
    assert!(text.contains("HTTP/1.1 200"), "TLS 1.2 with a certificate works: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_log_of_a_full_auto_run_holds_no_key_material() {
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().to_str().expect("utf-8").to_owned();
    let mut command = toolmesh(&["registry", "--tls-auto", "--state-dir", &state_dir, "--port", "0", "--heartbeat-interval-ms", "200"]);
    command.env("RUST_LOG", "debug");
    let registry = RegistryProcess::spawn(command);
    let token = std::fs::read_to_string(state.path().join("join-token")).expect("join token");
    #[cfg(unix)]
    for secret in ["join-token", "ca.key", "operator.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path().join(secret)).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }

    let mut config = AgentConfig::from_env("calc").expect("config");
    for (key, value) in [("tls", "auto"), ("registry_url", registry.url.as_str()), ("join_token", token.trim()), ("heartbeat_interval_ms", "200")] {
        config.set(key, value).expect("option");
    }
    let tools = serde_json::from_value(json!([{"name": "add", "capability": "add"}])).expect("tools");
    let handler = FnHandler(|inv: ToolInvocation, done: Completion| {
        done.ok(json!(inv.arguments["a"].as_i64().unwrap_or(0) + inv.arguments["b"].as_i64().unwrap_or(0)))
    });
    let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("an auto agent starts");
    assert!(agent.wait_registered(Duration::from_secs(10)).await);

    let operator = |args: &[&str]| {
        let mut command = toolmesh(args);
        command.args(["--tls-auto", "--state-dir", &state_dir, "--registry", &registry.url]).env("RUST_LOG", "debug");
        command
    };
    let called = tokio::task::spawn_blocking({
        let (list, call) = (operator(&["list"]), operator(&["call", "add", r#"{"a": 2, "b": 3}"#]));
        move || (run(list).success(), run(call).success())
    })
    .await
    .expect("operator commands");
    assert!(called.0.stdout.contains("(mesh)"), "{}", called.0.stdout);
    assert_eq!(called.1.stdout.trim(), "5");
    agent.shutdown().await;
    let (code, logs) = registry.terminate();
    assert_eq!(code, Some(0));
    let logs = format!("{logs}\n{}\n{}", called.0.stderr, called.1.stderr);
    assert!(logs.contains("issued an agent certificate"), "debug logs were captured: {logs}");
    assert!(!logs.contains("PRIVATE KEY"), "a private key in the logs");
    let secret = token.trim().rsplit('.').next().expect("token secret");
    assert!(!logs.contains(secret), "the join token's secret in the logs");
    for key in ["ca.key", "operator.key"] {
        let pem = std::fs::read_to_string(state.path().join(key)).expect("key");
        for line in pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 16) {
            assert!(!logs.contains(line), "bytes of {key} in the logs");
        }
    }
}

#[test]
fn bad_tls_auto_configuration_stops_start_up_with_the_reason() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let not_a_dir = file.path().join("state");
    run(toolmesh(&["registry", "--tls-auto", "--port", "0", "--state-dir", not_a_dir.to_str().expect("utf-8")]))
        .failure(2, "INVALID_CONFIG", "state directory");
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::write(state.path().join("ca.pem"), "not a certificate").expect("write");
    std::fs::write(state.path().join("ca.key"), "not a key").expect("write");
    run(toolmesh(&["registry", "--tls-auto", "--port", "0", "--state-dir", state.path().to_str().expect("utf-8")]))
        .failure(2, "CERTIFICATE_FILE", "ca.key");
    let certs = Certs::init("calc");
    let mut both = toolmesh(&["registry", "--tls-auto", "--port", "0"]);
    run(both.args(certs.tls_args("registry"))).failure(2, "INVALID_CONFIG", "cannot be used with");
}
