//! `toolmesh registry` as a process: it starts with the development certificates, answers over
//! mutual TLS, stops cleanly on SIGTERM, and refuses bad configuration with a clear message.

mod common;

use common::{run, toolmesh, Certs, RegistryProcess};

#[test]
fn the_registry_serves_the_dev_certificates_and_stops_on_sigterm() {
    let certs = Certs::init("calc");
    let registry = RegistryProcess::start(&certs, &["--heartbeat-interval-ms", "1000"]);
    assert!(registry.url.starts_with("https://127.0.0.1:") && !registry.url.ends_with(":0"), "{}", registry.url);

    let listed = run(toolmesh(&["list", "--registry", &registry.url]).args(certs.tls_args("operator"))).success();
    assert!(listed.stdout.contains("no agents are registered"), "{}", listed.stdout);
    let json = run(toolmesh(&["list", "--json"]).env("TOOLMESH_REGISTRY_URL", &registry.url).args(certs.tls_args("calc"))).success();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json.stdout).expect("JSON"), serde_json::json!({"agents": []}));

    let (code, logs) = registry.terminate();
    assert_eq!(code, Some(0), "logs:\n{logs}");
    assert!(logs.contains("SIGTERM"), "logs:\n{logs}");
}

#[test]
fn tls_settings_come_from_the_environment_too() {
    let certs = Certs::init("calc");
    let mut command = toolmesh(&["registry", "--port", "0"]);
    command
        .env("TOOLMESH_TLS_CERT", certs.path("registry.pem"))
        .env("TOOLMESH_TLS_KEY", certs.path("registry.key"))
        .env("TOOLMESH_TLS_CA", certs.path("ca.pem"));
    let registry = RegistryProcess::spawn(command);
    assert_eq!(registry.terminate().0, Some(0));

    run(toolmesh(&["registry", "--port", "0"]).env("TOOLMESH_TLS_CERT", certs.path("registry.pem"))).failure(
        2,
        "CERTIFICATE_FILE",
        "--tls-key/TOOLMESH_TLS_KEY, --tls-ca/TOOLMESH_TLS_CA",
    );
}

#[test]
fn bad_certificates_are_refused_at_start_with_the_file_named() {
    let certs = Certs::init("calc");
    let other = Certs::init("calc");
    let registry = |cert: &str, key: &str, ca: std::path::PathBuf| {
        let mut command = toolmesh(&["registry", "--port", "0"]);
        command.args(certs.tls_args_with(&certs.path(cert), &certs.path(key), &ca));
        run(&mut command)
    };
    registry("missing.pem", "registry.key", certs.path("ca.pem")).failure(2, "CERTIFICATE_FILE", "missing.pem");
    registry("registry.pem", "calc.key", certs.path("ca.pem")).failure(2, "KEY_MISMATCH", "calc.key");
    registry("registry.pem", "registry.key", other.path("ca.pem")).failure(2, "CERTIFICATE_UNTRUSTED", "registry.pem");
    registry("registry.key", "registry.key", certs.path("ca.pem")).failure(2, "CERTIFICATE_FILE", "no PEM certificate");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let certs = Certs::init("calc");
    let first = RegistryProcess::start(&certs, &[]);
    let port = first.url.rsplit(':').next().expect("port").to_owned();
    let mut second = toolmesh(&["registry", "--port", &port]);
    run(second.args(certs.tls_args("registry"))).failure(2, "ADDRESS_IN_USE", "already in use");
}

#[test]
fn out_of_range_flags_are_usage_errors() {
    let certs = Certs::init("calc");
    let mut command = toolmesh(&["registry", "--port", "0", "--heartbeat-interval-ms", "5"]);
    run(command.args(certs.tls_args("registry"))).failure(2, "INVALID_CONFIG", "--heartbeat-interval-ms");
    run(toolmesh(&["registry", "--port", "70000"])).failure(2, "INVALID_CONFIG", "--port");
    run(toolmesh(&["lst"])).failure(2, "INVALID_CONFIG", "unrecognized subcommand 'lst'");
}

#[test]
fn operator_commands_refuse_bad_registry_urls_and_unreachable_registries() {
    let certs = Certs::init("calc");
    let operator = certs.tls_args("operator");
    run(toolmesh(&["list", "--registry", "http://127.0.0.1:8443"]).args(&operator)).failure(2, "REGISTRY_URL_NOT_HTTPS", "not https://");
    run(toolmesh(&["list"]).args(&operator)).failure(2, "INVALID_CONFIG", "TOOLMESH_REGISTRY_URL");
    run(toolmesh(&["call", "add", "{}", "--registry", "https://127.0.0.1:8443"])).failure(
        2,
        "CERTIFICATE_FILE",
        "--tls-cert/TOOLMESH_TLS_CERT",
    );

    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    run(toolmesh(&["list", "--registry", &format!("https://127.0.0.1:{port}")]).args(&operator)).failure(
        1,
        "REGISTRY_UNAVAILABLE",
        "unreachable",
    );
}

/// A plain-HTTP GET on 127.0.0.1:`port`: (status, JSON body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {answer}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body: {answer}"));
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    Ok((status, serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))))
}

/// Whether nothing listens on 127.0.0.1:`port`.
fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn any_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts a registry from `plan(port)`'s flags on a free port whose port + 1000 is free too
/// (answering the registry and the port). Another process may take a port between the check
/// and the start, so a start that loses that race is tried again on other ports.
fn start_on_fixed_port(certs: &Certs, plan: impl Fn(u16) -> Vec<String>) -> (RegistryProcess, u16) {
    let mut last = String::new();
    for _ in 0..10 {
        let port = any_free_port();
        if port > 64_535 || !free(port + 1000) {
            continue;
        }
        let mut command = toolmesh(&["registry", "--port", &port.to_string()]);
        command.args(certs.tls_args("registry")).args(plan(port));
        match RegistryProcess::try_spawn(command) {
            Ok(registry) => return (registry, port),
            Err(logs) if logs.contains("ADDRESS_IN_USE") => last = logs,
            Err(logs) => panic!("{logs}"),
        }
    }
    panic!("no free pair of ports in ten tries: {last}");
}

#[test]
fn health_and_readiness_are_served_in_plain_http_on_port_plus_1000_unless_moved_or_off() {
    let certs = Certs::init("calc");
    let (registry, port) = start_on_fixed_port(&certs, |_| Vec::new());
    assert_eq!(registry.url, format!("https://127.0.0.1:{port}"));
    assert_eq!(http_get(port + 1000, "/health").expect("health"), (200, serde_json::json!({"status": "ok"})));
    assert_eq!(http_get(port + 1000, "/ready").expect("ready"), (200, serde_json::json!({"status": "ready"})));
    assert_eq!(http_get(port + 1000, "/other").expect("other").0, 404);
    assert_eq!(registry.terminate().0, Some(0));

    // --health-port N: there, and not on port + 1000.
    let chosen = std::cell::Cell::new(0);
    let (registry, port) = start_on_fixed_port(&certs, |port| {
        let health = std::iter::repeat_with(any_free_port).find(|&p| p != port + 1000).expect("a port");
        chosen.set(health);
        vec!["--health-port".to_owned(), health.to_string()]
    });
    assert_eq!(http_get(chosen.get(), "/health").expect("health"), (200, serde_json::json!({"status": "ok"})));
    assert_eq!(http_get(chosen.get(), "/ready").expect("ready"), (200, serde_json::json!({"status": "ready"})));
    let refused = http_get(port + 1000, "/health").expect_err("nothing on port + 1000 when the health port is moved");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    assert_eq!(registry.terminate().0, Some(0));

    // off: nothing listens on port + 1000, and the registry itself serves.
    let (registry, port) = start_on_fixed_port(&certs, |_| vec!["--health-port".to_owned(), "off".to_owned()]);
    let refused = http_get(port + 1000, "/health").expect_err("no health listener with --health-port off");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    let listed = run(toolmesh(&["list", "--registry", &registry.url]).args(certs.tls_args("operator"))).success();
    assert!(listed.stdout.contains("no agents"), "{}", listed.stdout);
    assert_eq!(registry.terminate().0, Some(0));
}
