//! `toolmesh policy apply/list/test` against a registry process, over mutual TLS with the
//! development certificates.

mod common;

use common::{run, toolmesh, Certs, RegistryProcess, Run};
use serde_json::json;
use toolmesh_core::registry_api::RegisterRequest;
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};

const POLICY: &str = "\
apiVersion: toolmesh.dev/v1alpha1
kind: AccessPolicy
default: deny
rules:
  - name: calc-provides-math
    phases: [provide]
    source: { agents: [calc] }
    target: { capabilities: [math] }
  - name: front-adds
    source: { agents: [front] }
    target: { capabilities: [math], tools: [add] }
";

async fn as_identity(certs: &Certs, registry_url: &str, name: &str, args: &[&str]) -> Run {
    let mut command = toolmesh(args);
    command.args(certs.tls_args(name)).env("TOOLMESH_REGISTRY_URL", registry_url);
    tokio::task::spawn_blocking(move || run(command)).await.expect("run toolmesh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_apply_list_and_test_through_the_cli() {
    let certs = Certs::init("calc,front");
    let registry = RegistryProcess::start(&certs, &[]);
    let files = TlsFiles { cert: certs.path("calc.pem"), key: certs.path("calc.key"), ca: certs.path("ca.pem") };
    let calc = RegistryClient::new(&registry.url, &Identity::load(&files).expect("calc identity")).expect("client");
    let tools = serde_json::from_value(json!([{"name": "add", "capability": "math"}])).expect("tools");
    calc.register(&RegisterRequest { agent_id: "calc-1".into(), name: "calc".into(), endpoint: "https://127.0.0.1:9/mcp".into(), tools })
        .await
        .expect("register calc");
    let url = registry.url.clone();

    let none = as_identity(&certs, &url, "calc", &["policy", "list"]).await.success();
    assert!(none.stdout.starts_with("no policy applied at "), "{}", none.stdout);

    let file = certs.path("policy.yaml");
    std::fs::write(&file, POLICY).expect("write policy");
    let path = file.to_str().expect("utf-8 path");
    let applied = as_identity(&certs, &url, "operator", &["policy", "apply", path]).await.success();
    assert!(applied.stdout.contains("policy version 1 applied: 2 rules, default deny"), "{}", applied.stdout);
    as_identity(&certs, &url, "calc", &["policy", "apply", path]).await.failure(
        1,
        "PEER_IDENTITY_NOT_ALLOWED",
        "applying a policy needs an admin",
    );

    // A mistake is named locally, with the file and the rule, before anything is sent.
    let broken = certs.path("broken.yaml");
    std::fs::write(&broken, "rules:\n  - name: twice\n  - name: twice\n").expect("write");
    as_identity(&certs, &url, "operator", &["policy", "apply", broken.to_str().expect("path")])
        .await
        .failure(2, "INVALID_CONFIG", "rules[1] ('twice')")
        .failure(2, "INVALID_CONFIG", "broken.yaml");

    let listed = as_identity(&certs, &url, "calc", &["policy", "list"]).await.success();
    assert!(listed.stdout.starts_with("policy version 1, default deny, 2 rules"), "{}", listed.stdout);
    let row = listed.stdout.lines().find(|l| l.starts_with("front-adds")).unwrap_or_else(|| panic!("{}", listed.stdout));
    for part in ["allow", "discover,call", "agents=front", "capabilities=math tools=add"] {
        assert!(row.contains(part), "{part} missing from {row}");
    }
    let as_json: serde_json::Value =
        serde_json::from_str(&as_identity(&certs, &url, "operator", &["policy", "list", "--json"]).await.success().stdout).expect("json");
    assert_eq!(as_json["version"], 1);

    let test = |from: &'static str| ["policy", "test", "--from", from, "--tool", "add"];
    let allowed = as_identity(&certs, &url, "operator", &test("spiffe://toolmesh.local/agent/front")).await.success();
    assert_eq!(allowed.stdout.trim(), "allow  calc:add (math) by rule 'front-adds' (policy version 1)");
    let denied = as_identity(&certs, &url, "operator", &test("spiffe://toolmesh.local/agent/calc")).await.success();
    assert_eq!(denied.stdout.trim(), "deny   calc:add (math) by rule 'default: deny' (policy version 1)");
    let args = ["policy", "test", "--from", "spiffe://toolmesh.local/agent/calc", "--tool", "add", "--phase", "provide", "--json"];
    let provide: serde_json::Value =
        serde_json::from_str(&as_identity(&certs, &url, "operator", &args).await.success().stdout).expect("json");
    assert_eq!((&provide["decisions"][0]["allowed"], &provide["decisions"][0]["rule"]), (&json!(true), &json!("calc-provides-math")));
    let nobody =
        as_identity(&certs, &url, "operator", &["policy", "test", "--from", "spiffe://toolmesh.local/agent/front", "--tool", "mul"])
            .await
            .success();
    assert!(
        nobody.stdout.contains("no provider of tool 'mul' is registered") && nobody.stdout.contains("deny   *:mul (mul)"),
        "{}",
        nobody.stdout
    );
}
