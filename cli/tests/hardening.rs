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

/// The openssl tests prove something only when openssl runs: a missing binary fails them.
fn require_openssl() {
    let works = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    assert!(works, "these tests drive `openssl s_client` and `openssl s_server`: install openssl (apt-get install openssl)");
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

/// `openssl s_server` speaking only `version` (e.g. `-tls1_1`) with the old cipher suites,
/// answering one connection with a status page; killed on drop.
struct OldTlsServer {
    child: std::process::Child,
    url: String,
}

impl OldTlsServer {
    fn start(version: &str, certs: &Certs) -> Self {
        let file = |name: &str| certs.path(name).to_str().expect("utf-8").to_owned();
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-www", version, "-cipher", "DEFAULT@SECLEVEL=0"])
            .args(["-cert", &file("calc.pem"), "-key", &file("calc.key")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_server");
        use std::io::BufRead;
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let accept = stdout.lines().map_while(Result::ok).find_map(|l| l.strip_prefix("ACCEPT ").map(str::to_owned));
        let url = format!("https://{}", accept.expect("openssl s_server printed no ACCEPT line"));
        OldTlsServer { child, url }
    }
}

impl Drop for OldTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn old_tls_versions_and_missing_client_certificates_are_refused() {
    require_openssl();
    let certs = Certs::init("calc");
    let registry = RegistryProcess::start(&certs, &[]);
    let file = |name: &str| certs.path(name).to_str().expect("utf-8").to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("operator.pem"), file("operator.key"));
    // OpenSSL 3 refuses TLS 1.0/1.1 by itself at its default security level ("legacy sigalg
    // disallowed"), whatever the server does: level 0 lets this client speak them, which an
    // openssl server of that version proves before toolmesh is asked.
    for (old, negotiated) in [("-tls1", "Protocol  : TLSv1\n"), ("-tls1_1", "Protocol  : TLSv1.1")] {
        let client = [old, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", &ca, "-cert", &cert, "-key", &key];
        let control = OldTlsServer::start(old, &certs);
        let (_, text) = s_client(&control.url, &client);
        // s_client prints the version it tried even when nothing was agreed: "Cipher is (NONE)".
        let agreed = |text: &str| text.contains(negotiated) && text.contains(", Cipher is ") && !text.contains("Cipher is (NONE)");
        assert!(
            agreed(&text) && text.contains("HTTP/1.0 200 ok"),
            "the client cannot speak {old}, so the check below proves nothing: {text}"
        );

        // rustls reads a TLS 1.0/1.1 ClientHello's lack of signature_algorithms before its
        // version and answers handshake_failure (alert 40) rather than protocol_version (70).
        let (ok, text) = s_client(&registry.url, &client);
        assert!(!ok && !text.contains("HTTP/1.1") && !agreed(&text), "{old} must fail the handshake: {text}");
        let alert = text.contains("SSL alert number 40") || text.contains("SSL alert number 70");
        assert!(alert, "{old} is refused with a fatal handshake_failure or protocol_version alert: {text}");
        // The same client with only the version changed is served: the version is what was refused.
        let mut tls12 = client;
        tls12[0] = "-tls1_2";
        let (_, text) = s_client(&registry.url, &tls12);
        assert!(text.contains("Protocol  : TLSv1.2") && text.contains("HTTP/1.1 200"), "TLS 1.2 with the same client works: {text}");
    }
    let (_, text) = s_client(&registry.url, &["-tls1_2", "-CAfile", &ca]);
    assert!(!text.contains("HTTP/1.1 200"), "served without a client certificate: {text}");
    assert!(text.to_lowercase().contains("alert") || text.contains("errno"), "refused in the handshake: {text}");
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
    for secret in ["join-token", toolmesh_registry::STATE_FILE, "operator.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path().join(secret)).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }

    let mut config = AgentConfig::from_env("calc").expect("config");
    for (key, value) in
        [("tls", "auto"), ("registry_url", registry.url.as_str()), ("join_token", token.trim()), ("heartbeat_interval_ms", "200")]
    {
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
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join(toolmesh_registry::STATE_FILE)).expect("state")).expect("JSON");
    let ca_key = stored["auto_tls"]["ca_key"].as_str().expect("the CA key is stored").to_owned();
    let operator_key = std::fs::read_to_string(state.path().join("operator.key")).expect("key");
    for (key, pem) in [("the CA key", ca_key), ("operator.key", operator_key)] {
        for line in pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 16) {
            assert!(!logs.contains(line), "bytes of {key} in the logs");
        }
    }
}

#[test]
fn bad_tls_auto_configuration_stops_start_up_with_the_reason() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let not_a_dir = file.path().join("state");
    run(toolmesh(&["registry", "--tls-auto", "--port", "0", "--state-dir", not_a_dir.to_str().expect("utf-8")])).failure(
        2,
        "INVALID_CONFIG",
        "state directory",
    );
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::write(state.path().join("ca.pem"), "not a certificate").expect("write");
    std::fs::write(state.path().join("ca.key"), "not a key").expect("write");
    run(toolmesh(&["registry", "--tls-auto", "--port", "0", "--state-dir", state.path().to_str().expect("utf-8")])).failure(
        2,
        "CERTIFICATE_FILE",
        "ca.key",
    );
    let certs = Certs::init("calc");
    let mut both = toolmesh(&["registry", "--tls-auto", "--port", "0"]);
    run(both.args(certs.tls_args("registry"))).failure(2, "INVALID_CONFIG", "cannot be used with");
}

/// Failed join tokens are logged as warnings naming the source and the reason, never the token,
/// and the sixth within a minute from one source is answered `429` with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_join_tokens_are_logged_by_source_and_throttled() {
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().to_str().expect("utf-8").to_owned();
    let registry =
        RegistryProcess::spawn(toolmesh(&["registry", "--tls-auto", "--state-dir", &state_dir, "--port", "0", "--health-port", "off"]));
    let token = toolmesh_core::auto_tls::JoinToken::read(&state.path().join("join-token")).expect("join token");
    let wrong = toolmesh_core::auto_tls::JoinToken::generate(token.ca_fingerprint()).reveal();
    let http =
        toolmesh_core::client::HttpsClient::with_tls(toolmesh_core::tls::pinned_registry_config(token.ca_fingerprint()).expect("pinned"));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let request = http::Request::post(format!("{}/v1/bootstrap", registry.url))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {wrong}"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .expect("request");
        let answer = http.send(request).await.unwrap_or_else(|e| panic!("bootstrap: {}", e.error));
        statuses.push((answer.status().as_u16(), answer.headers().get("retry-after").is_some()));
    }
    assert_eq!(statuses, [(401, false), (401, false), (401, false), (401, false), (401, false), (429, true)]);
    let (_, logs) = registry.terminate();
    let refusals: Vec<&str> = logs.lines().filter(|l| l.contains("refused a bootstrap request: wrong join token")).collect();
    assert_eq!(refusals.len(), 5, "{logs}");
    assert!(refusals.iter().all(|l| l.contains("WARN") && l.contains("source=127.0.0.1") && l.contains("not this registry's")), "{logs}");
    assert!(refusals[4].contains("refused until it cools down"), "{logs}");
    let secret = wrong.rsplit('.').next().expect("secret");
    assert!(!logs.contains(secret), "the presented token's secret in the logs: {logs}");
}
