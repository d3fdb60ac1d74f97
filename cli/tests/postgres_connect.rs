//! How a registry replica reaches PostgreSQL: TLS with libpq's `sslmode`, `sslrootcert`,
//! `sslcert`/`sslkey` against a real server started with `ssl=on` and a certificate from a test
//! CA; and a start that waits a bounded time for a database that is not answering, then refuses
//! (a replica serving without the stored revocations would let revoked identities in).

mod common;

use common::postgres::{Postgres, ServerTls};
use common::{run, toolmesh, Certs, RegistryProcess};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A test CA: its certificate file, and what it issues.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("self-sign").pem();
        TestCa { pem, issuer: Issuer::new(params, key) }
    }

    /// A certificate naming `names` (DNS SANs) with common name `common_name`: (cert PEM, key PEM).
    fn issue(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        (params.signed_by(&key, &self.issuer).expect("sign").pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

/// The server's name in its certificate; tests reach it as this name at `hostaddr=127.0.0.1`, so
/// the replica treats it as a server on another machine.
const DB_HOST: &str = "db.mesh.test";

/// `postgres://postgres@HOST:PORT/toolmesh?hostaddr=127.0.0.1&PARAMS`
fn url(host: &str, postgres: &Postgres, params: &str) -> String {
    format!("postgres://postgres@{host}:{}/toolmesh?hostaddr=127.0.0.1&{params}", postgres.port())
}

fn registry(certs: &Certs, store: &str) -> Command {
    let mut command = toolmesh(&["registry", "--port", "0", "--health-port", "off", "--store-wait", "1s", "--store", store]);
    command.args(certs.tls_args("registry"));
    command
}

/// `toolmesh entity list` at `registry` works: the replica loaded the store and serves.
fn serves(certs: &Certs, registry: &RegistryProcess) {
    let mut list = toolmesh(&["entity", "list", "--registry", &registry.url]);
    list.args(certs.tls_args("operator"));
    run(list).success();
}

/// A PostgreSQL server serving TLS with a certificate for [`DB_HOST`] from a test CA (asking TCP
/// clients for a certificate from it when `client_certificates`), a mesh's certificates, and the
/// CA's file.
struct TlsServer {
    ca: TestCa,
    postgres: Postgres,
    certs: Certs,
    files: tempfile::TempDir,
    ca_file: String,
}

impl TlsServer {
    fn start(client_certificates: bool) -> TlsServer {
        let ca = TestCa::new("postgres test CA");
        let (cert, key) = ca.issue(DB_HOST, &[DB_HOST]);
        let client_ca_pem = client_certificates.then_some(ca.pem.as_str());
        let postgres = Postgres::start_tls(&ServerTls { cert_pem: &cert, key_pem: &key, client_ca_pem });
        let files = tempfile::tempdir().expect("tempdir");
        let ca_file = write(files.path(), "ca.pem", &ca.pem);
        TlsServer { ca, postgres, certs: Certs::init("calc"), files, ca_file }
    }
}

/// The PEM file (in `files`) of another CA's certificate, which did not issue the server's.
fn other_ca_file(files: &tempfile::TempDir) -> String {
    write(files.path(), "other-ca.pem", &TestCa::new("another CA").pem)
}

#[test]
fn a_replica_reaches_postgres_on_another_host_only_over_tls_whose_certificate_it_verified() {
    let TlsServer { postgres, certs, files, ca_file, .. } = TlsServer::start(false);
    let other_ca_file = other_ca_file(&files);

    // verify-full: the chain leads to sslrootcert and the certificate names the host.
    let store = url(DB_HOST, &postgres, &format!("sslmode=verify-full&sslrootcert={ca_file}"));
    let replica = RegistryProcess::spawn(registry(&certs, &store));
    serves(&certs, &replica);
    let encrypted = postgres.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'toolmesh' AND ssl");
    let plaintext = postgres.psql(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'toolmesh' AND NOT ssl AND client_addr IS NOT NULL",
    );
    assert!(encrypted.parse::<u32>().expect("a count") >= 2, "the operations' and the listener's connections use TLS: {encrypted}");
    assert_eq!(plaintext, "0", "no TCP connection of the replica is plaintext");
    drop(replica);

    // Left out, sslmode is verify-full for a server on another machine.
    let replica = RegistryProcess::spawn(registry(&certs, &url(DB_HOST, &postgres, &format!("sslrootcert={ca_file}"))));
    serves(&certs, &replica);
    drop(replica);

    // A certificate from another CA: refused at once, naming what was checked.
    let started = Instant::now();
    let logs =
        RegistryProcess::try_spawn(registry(&certs, &url(DB_HOST, &postgres, &format!("sslmode=verify-full&sslrootcert={other_ca_file}"))))
            .err()
            .expect("a server certificate from another CA is refused");
    assert!(logs.contains("TLS handshake with db.mesh.test failed") && logs.contains("UnknownIssuer"), "{logs}");
    assert!(logs.contains(&format!("sslrootcert={other_ca_file}")), "{logs}");
    assert!(started.elapsed() < Duration::from_secs(5), "a refusal is not retried like an absent server: {:?}", started.elapsed());

    // The right CA, but a certificate for another name: verify-full refuses, verify-ca takes it.
    let logs = RegistryProcess::try_spawn(registry(
        &certs,
        &url("wrong.mesh.test", &postgres, &format!("sslmode=verify-full&sslrootcert={ca_file}")),
    ))
    .err()
    .expect("a certificate for another host name is refused");
    assert!(
        logs.contains("TLS handshake with wrong.mesh.test failed") && logs.contains("not valid for name \"wrong.mesh.test\""),
        "{logs}"
    );
    let replica =
        RegistryProcess::spawn(registry(&certs, &url("wrong.mesh.test", &postgres, &format!("sslmode=verify-ca&sslrootcert={ca_file}"))));
    serves(&certs, &replica);
    drop(replica);

    // Plaintext or unverified TLS to that host: refused before connecting, naming the fix.
    for mode in ["disable", "require"] {
        let logs = RegistryProcess::try_spawn(registry(&certs, &url(DB_HOST, &postgres, &format!("sslmode={mode}"))))
            .err()
            .expect("refused off this machine");
        assert!(logs.contains(&format!("sslmode={mode}")) && logs.contains("add sslmode=verify-full&sslrootcert="), "{logs}");
    }
}

#[test]
fn sslmode_require_to_a_server_with_tls_off_is_refused_naming_the_fix() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc");
    let store = format!("postgres://postgres@127.0.0.1:{}/toolmesh?sslmode=require", postgres.port());
    let logs = RegistryProcess::try_spawn(registry(&certs, &store)).err().expect("refused");
    assert!(logs.contains("server does not support TLS") && logs.contains("turn on ssl in its postgresql.conf"), "{logs}");
    // The same server on loopback in plaintext is this machine's business.
    let replica = RegistryProcess::spawn(registry(&certs, &postgres.url()));
    serves(&certs, &replica);
}

#[test]
fn a_server_asking_for_a_client_certificate_takes_the_one_sslcert_names() {
    let TlsServer { ca, postgres, certs, files, ca_file } = TlsServer::start(true);
    let (client_cert, client_key) = ca.issue("postgres", &[]);
    let (client_cert, client_key) = (write(files.path(), "client.pem", &client_cert), write(files.path(), "client.key", &client_key));

    let verified = format!("sslmode=verify-full&sslrootcert={ca_file}");
    let logs = RegistryProcess::try_spawn(registry(&certs, &url(DB_HOST, &postgres, &verified))).err().expect("no client certificate");
    assert!(logs.contains("certificate"), "the server's refusal is shown: {logs}");
    let with_cert = format!("{verified}&sslcert={client_cert}&sslkey={client_key}");
    let replica = RegistryProcess::spawn(registry(&certs, &url(DB_HOST, &postgres, &with_cert)));
    serves(&certs, &replica);
}

#[test]
fn a_password_login_over_tls_is_bound_to_the_connection_with_scram_channel_binding() {
    let TlsServer { postgres, certs, files: _files, ca_file, .. } = TlsServer::start(false);
    postgres.require_scram_password("s3cret");
    let store = |password: &str, binding: &str| {
        format!(
            "postgres://postgres:{password}@{DB_HOST}:{}/toolmesh?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca_file}&channel_binding={binding}",
            postgres.port()
        )
    };

    // SCRAM-SHA-256-PLUS: the replica binds the exchange to the server certificate it verified
    // (tokio-postgres refuses `require` when the connection offers no binding data).
    let replica = RegistryProcess::spawn(registry(&certs, &store("s3cret", "require")));
    serves(&certs, &replica);
    drop(replica);
    // The wrong password is refused at once, and not shown.
    let logs = RegistryProcess::try_spawn(registry(&certs, &store("wrong", "require"))).err().expect("a wrong password is refused");
    assert!(logs.contains("password authentication failed"), "{logs}");
    assert!(!logs.contains("wrong@"), "the password is not logged: {logs}");
}

#[test]
fn sslrootcert_system_verifies_the_server_against_the_machines_cas_and_its_name() {
    let TlsServer { postgres, certs, files, ca_file, .. } = TlsServer::start(false);
    let other_ca_file = other_ca_file(&files);
    // The machine's trust store, as the test sets it (rustls-native-certs reads SSL_CERT_FILE).
    let trusting = |bundle: &str, store: &str| {
        let mut command = registry(&certs, store);
        command.env("SSL_CERT_FILE", bundle).env_remove("SSL_CERT_DIR");
        command
    };

    let replica = RegistryProcess::spawn(trusting(&ca_file, &url(DB_HOST, &postgres, "sslrootcert=system")));
    serves(&certs, &replica);
    drop(replica);
    // The machine does not trust the server's CA: refused at once.
    let logs = RegistryProcess::try_spawn(trusting(&other_ca_file, &url(DB_HOST, &postgres, "sslrootcert=system")))
        .err()
        .expect("a server the machine's CAs do not vouch for is refused");
    assert!(logs.contains("TLS handshake with db.mesh.test failed") && logs.contains("UnknownIssuer"), "{logs}");
    // The name is always checked with the system's CAs, as libpq does.
    let logs = RegistryProcess::try_spawn(trusting(&ca_file, &url(DB_HOST, &postgres, "sslmode=verify-ca&sslrootcert=system")))
        .err()
        .expect("sslrootcert=system with verify-ca is refused");
    assert!(logs.contains("sslrootcert=system takes sslmode=verify-full only"), "{logs}");
    let logs = RegistryProcess::try_spawn(trusting(&ca_file, &url("wrong.mesh.test", &postgres, "sslrootcert=system")))
        .err()
        .expect("a certificate for another name is refused");
    assert!(logs.contains("not valid for name \"wrong.mesh.test\""), "{logs}");
}

/// A registry process whose log lines arrive on a channel as it writes them.
struct Starting {
    child: std::process::Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Starting {
    fn spawn(mut command: Command) -> Starting {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn registry");
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        Starting { child, stdout, stderr }
    }

    /// Waits for a line of `stream` containing `text`; answers the lines read so far.
    fn wait_for(stream: &mpsc::Receiver<String>, text: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stream.recv_timeout(left) {
                Ok(line) if line.contains(text) => return seen,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line containing '{text}' within {within:?}; read:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_replica_waits_for_postgres_at_start_and_starts_once_it_answers() {
    let mut postgres = Postgres::start();
    postgres.stop();
    let certs = Certs::init("calc");
    let mut command = toolmesh(&["registry", "--port", "0", "--health-port", "off", "--store-wait", "30s", "--store", &postgres.url()]);
    command.args(certs.tls_args("registry"));
    let starting = Starting::spawn(command);
    Starting::wait_for(&starting.stderr, "PostgreSQL is not answering yet", Duration::from_secs(10));
    postgres.resume();
    let resumed = Instant::now();
    Starting::wait_for(&starting.stdout, "toolmesh registry listening on", Duration::from_secs(15));
    eprintln!("the replica started {:?} after PostgreSQL came back", resumed.elapsed());
}

#[test]
fn a_replica_refuses_to_start_while_postgres_does_not_answer_naming_url_cause_and_fix() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let certs = Certs::init("calc");
    let store = format!("postgres://toolmesh:secret@127.0.0.1:{port}/toolmesh");
    let mut command = toolmesh(&["registry", "--port", "0", "--health-port", "off", "--store", &store]);
    command.args(certs.tls_args("registry")).env("TOOLMESH_REGISTRY_STORE_WAIT", "2s");
    let started = Instant::now();
    let output = command.output().expect("run the registry");
    let took = started.elapsed();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the start fails: {logs}");
    assert!(output.stdout.is_empty(), "it never listened: {}", String::from_utf8_lossy(&output.stdout));
    assert!((Duration::from_secs(2)..Duration::from_secs(8)).contains(&took), "it waited the 2s asked for, then stopped: {took:?}");
    let named = format!("PostgreSQL at 'postgres://toolmesh:***@127.0.0.1:{port}/toolmesh' did not answer within 2s");
    assert!(logs.contains(&named), "{logs}");
    assert!(logs.to_lowercase().contains("connection refused"), "the cause: {logs}");
    assert!(logs.contains("start PostgreSQL or correct --store"), "the fix: {logs}");
    assert!(!logs.contains("secret"), "the password is not logged: {logs}");
}
