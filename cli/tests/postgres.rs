//! Registry replicas on PostgreSQL (`toolmesh registry --store postgres://...`): real
//! `toolmesh registry` processes on a real PostgreSQL server the test starts (see
//! `common/postgres.rs`), operated with the real `toolmesh` CLI over mutual TLS.

mod common;

use common::postgres::Postgres;
use common::{run, toolmesh, Certs, RegistryProcess, CALC_PROVIDES_ADD};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use toolmesh_core::registry_api::{EntityRequest, RegisterRequest};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};
use toolmesh_core::ErrorKind;

fn replica(certs: &Certs, postgres: &Postgres) -> RegistryProcess {
    RegistryProcess::start(certs, &["--store", &postgres.url(), "--health-port", "off"])
}

/// `toolmesh ARGS` as the mesh's operator against `registry`.
fn operator(certs: &Certs, registry: &RegistryProcess, args: &[&str]) -> Command {
    let mut command = toolmesh(args);
    command.args(["--registry", &registry.url]).args(certs.tls_args("operator"));
    command
}

/// The entity names `registry` lists.
fn entities(certs: &Certs, registry: &RegistryProcess) -> Vec<String> {
    let listed = run(operator(certs, registry, &["entity", "list", "--json"])).success();
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    listed["entities"].as_array().expect("entities").iter().map(|e| e["name"].as_str().expect("name").to_owned()).collect()
}

/// The version of the policy `registry` has in force.
fn policy_version(certs: &Certs, registry: &RegistryProcess) -> u64 {
    let listed = run(operator(certs, registry, &["policy", "list", "--json"])).success();
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    listed["version"].as_u64().unwrap_or_else(|| panic!("no policy version in {listed}"))
}

/// Reads `read` until it gives `expected`: a change made at one replica reaches another by
/// NOTIFY, milliseconds later (more on a busy machine). Fails after two seconds with the last read.
fn settles_to<T: PartialEq + std::fmt::Debug>(what: &str, expected: T, mut read: impl FnMut() -> T) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = read();
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {got:?} after 2 s, expected {expected:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn partner_ca(dir: &Path, trust_domain: &str) -> String {
    run(toolmesh(&["certs", "ca", "--dir", dir.to_str().expect("utf-8"), "--trust-domain", trust_domain])).success();
    dir.join("ca.pem").to_str().expect("utf-8").to_owned()
}

#[test]
fn operator_state_made_at_any_replica_is_shared_and_survives_restarting_every_replica() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc");
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (one_ca, two_ca) = (partner_ca(one.path(), "one.example"), partner_ca(two.path(), "two.example"));
    let policy = certs.path("policy.yaml");
    std::fs::write(&policy, CALC_PROVIDES_ADD).expect("write policy");
    let policy = policy.to_str().expect("utf-8");

    let (a, b) = (replica(&certs, &postgres), replica(&certs, &postgres));
    run(operator(&certs, &a, &["entity", "add", "one", "--ca-cert", &one_ca])).success();
    // B adds to the set as stored, not to the one it loaded at its start.
    run(operator(&certs, &b, &["entity", "add", "two", "--ca-cert", &two_ca])).success();
    run(operator(&certs, &b, &["policy", "apply", policy])).success();
    // A's next version follows B's apply.
    let applied = run(operator(&certs, &a, &["policy", "apply", policy])).success();
    assert!(applied.stdout.contains("version 2"), "{}", applied.stdout);
    settles_to("A took B's entity", vec!["one".to_owned(), "two".to_owned()], || entities(&certs, &a));
    settles_to("B took A's policy", 2, || policy_version(&certs, &b));

    for replica in [a, b] {
        let (code, logs) = replica.terminate();
        assert_eq!(code, Some(0), "{logs}");
    }
    let (c, d) = (replica(&certs, &postgres), replica(&certs, &postgres));
    for restarted in [&c, &d] {
        assert_eq!(entities(&certs, restarted), ["one", "two"], "the entities survived restarting every replica");
        assert_eq!(policy_version(&certs, restarted), 2, "the policy survived restarting every replica");
    }

    // A revocation at one replica cuts the entity off at the others within a second (NOTIFY).
    run(operator(&certs, &c, &["entity", "revoke", "one"])).success();
    let revoked = Instant::now();
    while entities(&certs, &d) != ["two"] {
        assert!(revoked.elapsed() < Duration::from_secs(1), "replica D still lists the entity revoked at C after {:?}", revoked.elapsed());
    }
    eprintln!("a revocation at one replica reached another in {:?} (CLI round trips included)", revoked.elapsed());
}

#[test]
fn a_store_url_that_is_not_postgres_unreachable_or_off_this_machine_is_refused_naming_the_fix() {
    let certs = Certs::init("calc");
    let refused = RegistryProcess::try_spawn({
        let mut command = toolmesh(&["registry", "--port", "0", "--store", "mysql://db/toolmesh"]);
        command.args(certs.tls_args("registry"));
        command
    });
    let logs = refused.err().expect("refused");
    assert!(logs.contains("postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"), "{logs}");

    // A port nothing listens on: see postgres_connect.rs (the start waits, then fails naming it).

    // A server on another machine: refused before any connection unless its certificate is verified.
    let refused = RegistryProcess::try_spawn({
        let mut command =
            toolmesh(&["registry", "--port", "0", "--health-port", "off", "--store", "postgres://toolmesh:secret@db.example.com/toolmesh"]);
        command.args(certs.tls_args("registry"));
        command
    });
    let logs = refused.err().expect("refused");
    assert!(logs.contains("sslmode=verify-full") && logs.contains("sslrootcert="), "{logs}");
    assert!(!logs.contains("secret"), "the password is not logged: {logs}");
}

/// `identity`'s client of `registry`, from the certificate files of `certs`.
fn client(certs: &Certs, registry: &RegistryProcess, identity: &str) -> RegistryClient {
    let files =
        TlsFiles { cert: certs.path(&format!("{identity}.pem")), key: certs.path(&format!("{identity}.key")), ca: certs.path("ca.pem") };
    RegistryClient::new(&registry.url, &Identity::load(&files).expect("identity")).expect("client")
}

fn registration(agent_id: &str, name: &str) -> RegisterRequest {
    let tools = serde_json::from_value(json!([{"name": "add", "capability": "add"}])).expect("tools");
    RegisterRequest { agent_id: agent_id.into(), name: name.into(), endpoint: "https://127.0.0.1:9/mcp".into(), tools }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_stopped_replicas_serve_agents_refuse_changes_with_503_and_converge_when_it_returns() {
    let mut postgres = Postgres::start();
    let certs = Certs::init("calc,front");
    let partner = tempfile::tempdir().expect("tempdir");
    let partner_ca = partner_ca(partner.path(), "partner.example");
    let (a, b) = (replica(&certs, &postgres), replica(&certs, &postgres));
    let calc = client(&certs, &a, "calc");
    let registered = calc.register(&registration("calc-1", "calc")).await.expect("register calc");
    let (admin_a, admin_b) = (client(&certs, &a, "operator"), client(&certs, &b, "operator"));
    let entity = EntityRequest { name: "partner".into(), ca_cert: std::fs::read_to_string(&partner_ca).expect("CA"), trust_domain: None };

    postgres.stop();
    // Agents are served from memory: heartbeats and a new registration (at the other replica).
    for _ in 0..5 {
        calc.heartbeat("calc-1", registered.topology.version).await.expect("a heartbeat while PostgreSQL is down");
    }
    client(&certs, &b, "front").register(&registration("front-1", "front")).await.expect("a registration while PostgreSQL is down");
    // A change that must be stored is refused, naming the store, and nothing changes.
    let refused = admin_a.add_entity(&entity).await.expect_err("no entity added without the store");
    assert_eq!(refused.kind(), ErrorKind::RegistryUnavailable, "{refused}");
    assert!(refused.message().contains("store is unreachable") && refused.message().contains("503"), "{refused}");
    assert!(admin_a.list_entities().await.expect("list from memory").entities.is_empty(), "nothing changed");
    // The answer tells clients when to come back.
    let body = json!({"name": "partner", "ca_cert": entity.ca_cert}).to_string();
    let curl = Command::new("curl")
        .args(["-sS", "-i", "-X", "POST", "-H", "content-type: application/json", "--data", &body])
        .args(["--cert", &certs.path("operator.pem").display().to_string(), "--key", &certs.path("operator.key").display().to_string()])
        .args(["--cacert", &certs.path("ca.pem").display().to_string(), &format!("{}/v1/entities", a.url)])
        .output()
        .expect("run curl");
    let answer = String::from_utf8_lossy(&curl.stdout).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503") || answer.starts_with("http/2 503"), "{answer}");
    assert!(answer.contains("retry-after: 2"), "{answer}");
    assert!(answer.contains("\"store_unavailable\""), "{answer}");

    postgres.resume();
    // The same change succeeds once PostgreSQL is back, and reaches the other replica.
    let back = Instant::now();
    loop {
        match admin_a.add_entity(&entity).await {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::RegistryUnavailable && back.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the entity was not added {:?} after PostgreSQL came back: {e}", back.elapsed()),
        }
    }
    let stored = back.elapsed();
    while admin_b.list_entities().await.expect("list").entities.is_empty() {
        assert!(back.elapsed() < Duration::from_secs(10), "replica B never took the entity added at A after PostgreSQL came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("after PostgreSQL came back: stored after {stored:?}, at the other replica after {:?}", back.elapsed());
    calc.heartbeat("calc-1", registered.topology.version).await.expect("heartbeats go on");
}

#[test]
fn the_schema_is_versioned_and_a_database_a_newer_toolmesh_migrated_is_refused() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc");
    let (code, logs) = replica(&certs, &postgres).terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(
        postgres.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM toolmesh_schema"),
        "1,2",
        "the first start migrated"
    );
    // A second start finds nothing to migrate.
    let (code, logs) = replica(&certs, &postgres).terminate();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(postgres.psql("SELECT count(*) FROM toolmesh_schema"), "2");

    postgres.psql("INSERT INTO toolmesh_schema (version) VALUES (99)");
    let refused = RegistryProcess::try_spawn({
        let mut command = toolmesh(&["registry", "--port", "0", "--health-port", "off", "--store", &postgres.url()]);
        command.args(certs.tls_args("registry"));
        command
    });
    let logs = refused.err().expect("refused");
    assert!(logs.contains("schema version 99") && logs.contains("run the newer toolmesh registry"), "{logs}");
}

#[test]
fn entities_added_at_two_replicas_at_once_are_all_kept() {
    let postgres = Postgres::start();
    let certs = Certs::init("calc");
    let (a, b) = (replica(&certs, &postgres), replica(&certs, &postgres));
    let cas = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..6).map(|i| format!("partner{i}")).collect();
    let adds: Vec<Command> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let dir = cas.path().join(name);
            std::fs::create_dir(&dir).expect("a directory for the CA");
            let ca = partner_ca(&dir, &format!("{name}.example"));
            operator(&certs, if i % 2 == 0 { &a } else { &b }, &["entity", "add", name, "--ca-cert", &ca])
        })
        .collect();
    // Each replica adds to the set as stored under the lock, so no add overwrites another.
    let threads: Vec<_> = adds
        .into_iter()
        .map(|add| {
            std::thread::spawn(move || {
                run(add).success();
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("an add");
    }
    settles_to("every entity added at either replica is kept", names, || {
        let mut stored = entities(&certs, &a);
        stored.sort();
        stored
    });
}

#[test]
fn tls_auto_replicas_on_postgres_share_one_ca_and_join_token() {
    let postgres = Postgres::start();
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let auto = |dir: &Path| {
        let dir = dir.to_str().expect("utf-8");
        RegistryProcess::spawn(toolmesh(&[
            "registry",
            "--tls-auto",
            "--state-dir",
            dir,
            "--port",
            "0",
            "--health-port",
            "off",
            "--store",
            &postgres.url(),
        ]))
    };
    let (a, b) = (auto(one.path()), auto(two.path()));
    for file in ["ca.pem", "join-token"] {
        let read = |dir: &Path| std::fs::read_to_string(dir.join(file)).expect("a copy in the state directory");
        assert_eq!(read(one.path()), read(two.path()), "{file}: the second replica took the first one's");
    }
    assert!(!one.path().join(toolmesh_registry::STATE_FILE).exists(), "the state is PostgreSQL's, not the directory's");
    // The operator certificate one replica wrote is the mesh's at the other.
    let mut list = toolmesh(&["entity", "list", "--tls-auto", "--state-dir", one.path().to_str().expect("utf-8"), "--registry", &b.url]);
    list.stdin(std::process::Stdio::null());
    run(list).success();
    // Restarted, a replica keeps the stored CA.
    let ca = std::fs::read_to_string(one.path().join("ca.pem")).expect("ca.pem");
    drop(a);
    std::fs::remove_file(one.path().join("ca.pem")).expect("remove the copy");
    let _a = auto(one.path());
    assert_eq!(std::fs::read_to_string(one.path().join("ca.pem")).expect("ca.pem written again"), ca);
}
