//! The registry's durable state across restarts of a real `toolmesh registry --tls-auto`
//! process: everything an operator made (entities added and revoked, the applied policy, the
//! CA and join token) is there after the process is killed without warning and started again.

mod common;

use common::{run, toolmesh, RegistryProcess, CALC_PROVIDES_ADD};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};

fn auto_registry(state: &Path) -> RegistryProcess {
    let dir = state.to_str().expect("utf-8");
    RegistryProcess::spawn(toolmesh(&["registry", "--tls-auto", "--state-dir", dir, "--port", "0", "--health-port", "off"]))
}

/// `toolmesh ARGS` as the operator of the `--tls-auto` registry keeping its state in `state`.
fn operator(registry: &RegistryProcess, state: &Path, args: &[&str]) -> Command {
    let mut command = toolmesh(args);
    command.args(["--tls-auto", "--state-dir", state.to_str().expect("utf-8"), "--registry", &registry.url]);
    command
}

fn partner_ca(dir: &Path, trust_domain: &str) -> String {
    run(toolmesh(&["certs", "ca", "--dir", dir.to_str().expect("utf-8"), "--trust-domain", trust_domain])).success();
    dir.join("ca.pem").to_str().expect("utf-8").to_owned()
}

/// Joins the mesh with `token` (bootstrapping an agent certificate over the registry's CA) and
/// answers once the agent is registered.
async fn join(registry_url: &str, token: &str) {
    let mut config = AgentConfig::from_env("calc").expect("config");
    for (key, value) in [("tls", "auto"), ("registry_url", registry_url), ("join_token", token.trim()), ("heartbeat_interval_ms", "200")] {
        config.set(key, value).expect("option");
    }
    let tools = serde_json::from_value(json!([{"name": "add", "capability": "add"}])).expect("tools");
    let handler = FnHandler(|_: ToolInvocation, done: Completion| done.ok(json!(0)));
    let agent = Agent::start(config, tools, Arc::new(handler)).await.expect("an agent joins with the join token");
    assert!(agent.wait_registered(Duration::from_secs(10)).await, "registered with the registry's CA");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_killed_and_restarted_keeps_everything_operator_made() {
    let state = tempfile::tempdir().expect("tempdir");
    let (partner, other) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (partner_ca, other_ca) = (partner_ca(partner.path(), "partner.example"), partner_ca(other.path(), "other.example"));
    let policy_file = state.path().with_extension("policy.yaml");
    std::fs::write(&policy_file, CALC_PROVIDES_ADD).expect("write policy");
    let (s, registry) = (state.path(), auto_registry(state.path()));

    run(operator(&registry, s, &["entity", "add", "partner", "--ca-cert", &partner_ca])).success();
    run(operator(&registry, s, &["entity", "add", "other", "--ca-cert", &other_ca])).success();
    run(operator(&registry, s, &["entity", "revoke", "other"])).success();
    run(operator(&registry, s, &["policy", "apply", policy_file.to_str().expect("utf-8")])).success();
    let entities = run(operator(&registry, s, &["entity", "list", "--json"])).success().stdout;
    let policy = run(operator(&registry, s, &["policy", "list", "--json"])).success().stdout;
    let token = std::fs::read_to_string(s.join("join-token")).expect("join token");
    let ca = std::fs::read_to_string(s.join("ca.pem")).expect("CA certificate");
    join(&registry.url, &token).await;
    // SIGKILL: nothing is written on the way out, so what survives was durable when answered.
    drop(registry);

    let registry = auto_registry(s);
    assert_eq!(run(operator(&registry, s, &["entity", "list", "--json"])).success().stdout, entities, "entities and the revocation kept");
    let listed: serde_json::Value = serde_json::from_str(&entities).expect("JSON");
    let names: Vec<&str> = listed["entities"].as_array().expect("entities").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["partner"]);
    assert_eq!(run(operator(&registry, s, &["policy", "list", "--json"])).success().stdout, policy, "the policy and its version kept");
    assert!(policy.contains("\"version\": 1") && policy.contains("calc-provides-add"), "{policy}");
    assert_eq!(std::fs::read_to_string(s.join("join-token")).expect("join token"), token, "the same join token");
    assert_eq!(std::fs::read_to_string(s.join("ca.pem")).expect("CA"), ca, "the same CA");
    // The operator certificate issued before the restart is still trusted (the commands above),
    // and the old token still lets an agent join.
    join(&registry.url, &token).await;
    let next = run(operator(&registry, s, &["policy", "apply", policy_file.to_str().expect("utf-8")])).success();
    assert!(next.stdout.contains("policy version 2 applied"), "versions go on from the kept one: {}", next.stdout);

    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.join(toolmesh_registry::STATE_FILE)).expect("state")).expect("JSON");
    assert_eq!(stored["schema_version"], toolmesh_registry::store::SCHEMA_VERSION);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.join(toolmesh_registry::STATE_FILE)).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state holds the CA key");
    }
    assert!(!s.join("ca.key").exists(), "the CA key lives in the store only");
}
