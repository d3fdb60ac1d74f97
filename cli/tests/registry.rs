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

    run(toolmesh(&["registry", "--port", "0"]).env("TOOLMESH_TLS_CERT", certs.path("registry.pem")))
        .failure(2, "CERTIFICATE_FILE", "--tls-key/TOOLMESH_TLS_KEY, --tls-ca/TOOLMESH_TLS_CA");
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
    run(toolmesh(&["list", "--registry", "http://127.0.0.1:8443"]).args(&operator))
        .failure(2, "REGISTRY_URL_NOT_HTTPS", "not https://");
    run(toolmesh(&["list"]).args(&operator)).failure(2, "INVALID_CONFIG", "TOOLMESH_REGISTRY_URL");
    run(toolmesh(&["call", "add", "{}", "--registry", "https://127.0.0.1:8443"]))
        .failure(2, "CERTIFICATE_FILE", "--tls-cert/TOOLMESH_TLS_CERT");

    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    run(toolmesh(&["list", "--registry", &format!("https://127.0.0.1:{port}")]).args(&operator))
        .failure(1, "REGISTRY_UNAVAILABLE", "unreachable");
}
