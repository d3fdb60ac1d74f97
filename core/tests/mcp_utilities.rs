//! MCP's utility methods over real mTLS to a real agent, and the capabilities that declare them:
//! what `initialize` and `server/discover` declare is exactly what the agent answers.

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use toolmesh_core::client::HttpsClient;

fn legacy(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

#[tokio::test]
async fn declared_capabilities_are_exactly_the_methods_answered() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let init =
        legacy("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}));
    let (_, v) = post(&client, ep, &[], init).await;
    assert_eq!(v["result"]["capabilities"], json!({"tools": {"listChanged": false}, "completions": {}, "logging": {}}), "{v}");
    let (_, v) = modern(&client, ep, "server/discover", None, json!({})).await;
    // The modern era has no logging/setLevel, and handlers send no log messages to opt into.
    assert_eq!(v["result"]["capabilities"], json!({"tools": {"listChanged": false}, "completions": {}}), "{v}");

    // Undeclared: prompts and resources are Method not found in both eras.
    for method in ["prompts/list", "resources/list", "resources/templates/list"] {
        let (status, v) = post(&client, ep, &[], legacy(method, json!({}))).await;
        assert_eq!((status, &v["error"]["code"]), (200, &json!(-32601)), "{method}: {v}");
        let (status, v) = modern(&client, ep, method, None, json!({})).await;
        assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "{method}: {v}");
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn logging_set_level_takes_a_known_level_in_the_legacy_era_only() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let version = [("mcp-protocol-version", "2025-11-25")];

    for level in ["debug", "info", "warning", "emergency"] {
        let (status, v) = post(&client, ep, &version, legacy("logging/setLevel", json!({"level": level}))).await;
        assert_eq!((status, &v["result"]), (200, &json!({})), "{level}: {v}");
    }
    for params in [json!({"level": "verbose"}), json!({"level": 3}), json!({})] {
        let (_, v) = post(&client, ep, &version, legacy("logging/setLevel", params.clone())).await;
        assert_eq!(v["error"]["code"], json!(-32602), "{params}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("one of debug, info"), "{v}");
    }
    // Removed in 2026-07-28.
    let (status, v) = modern(&client, ep, "logging/setLevel", None, json!({"level": "info"})).await;
    assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "{v}");
    agent.shutdown().await;
}

/// Prompt arguments and template variables that declare the values they take, which
/// `completion/complete` offers.
const COMPLETING: &str = r#"{"prompts": [{"name": "greet", "arguments": [
        {"name": "who", "completions": ["Paris", "Pamplona", "pasta", "Berlin"]}, {"name": "tone"}]}],
    "resourceTemplates": [{"uriTemplate": "file:///{path}", "name": "files", "completions": {"path": ["a.txt", "b.txt"]}}]}"#;

#[tokio::test]
async fn completion_complete_offers_the_declared_values_that_start_with_what_was_typed_in_both_eras() {
    let pki = Pki::new();
    let handler = toolmesh_core::host::FnCatalogHandler(
        |_, done: toolmesh_core::host::Completion| done.err("no tools here"),
        |_, done: toolmesh_core::host::Completion| done.err("nothing to read or get"),
    );
    let catalog = toolmesh_core::agent::parse_catalog(COMPLETING).unwrap();
    let config = config("b", &pki.issue("b"));
    let agent =
        toolmesh_core::agent::Agent::start_with_catalog(config, standard_tools(), catalog, std::sync::Arc::new(handler)).await.unwrap();
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let completing = |reference: Value, name: &str, value: &str| json!({"ref": reference, "argument": {"name": name, "value": value}});
    let greet = json!({"type": "ref/prompt", "name": "greet"});

    // Case is ignored; the declared order is kept.
    let pa = json!({"completion": {"values": ["Paris", "Pamplona", "pasta"], "total": 3, "hasMore": false}});
    let (status, v) = post(&client, ep, &[], legacy("completion/complete", completing(greet.clone(), "who", "pa"))).await;
    assert_eq!((status, &v["result"]), (200, &pa), "{v}");
    let (status, v) = modern(&client, ep, "completion/complete", None, completing(greet.clone(), "who", "PA")).await;
    assert_eq!((status, &v["result"]["completion"], &v["result"]["resultType"]), (200, &pa["completion"], &json!("complete")), "{v}");
    let files = json!({"type": "ref/resource", "uri": "file:///{path}"});
    let (_, v) = post(&client, ep, &[], legacy("completion/complete", completing(files, "path", ""))).await;
    assert_eq!(v["result"]["completion"]["values"], json!(["a.txt", "b.txt"]), "{v}");
    // An argument that declares no values has none to offer.
    let none = json!({"completion": {"values": [], "total": 0, "hasMore": false}});
    let (_, v) = post(&client, ep, &[], legacy("completion/complete", completing(greet.clone(), "tone", "f"))).await;
    assert_eq!(v["result"], none, "{v}");

    for (malformed, says) in [
        (json!({"argument": {"name": "who", "value": "pa"}}), "needs 'ref'"),
        (completing(json!({"type": "ref/tool", "name": "add"}), "a", "1"), "needs 'ref'"),
        (json!({"ref": greet, "argument": {"name": "who"}}), "needs 'ref'"),
        (completing(json!({"type": "ref/prompt", "name": "nope"}), "who", ""), "unknown prompt 'nope'"),
        (completing(json!({"type": "ref/resource", "uri": "file:///x"}), "path", ""), "unknown resource template 'file:///x'"),
    ] {
        let (_, v) = post(&client, ep, &[], legacy("completion/complete", malformed.clone())).await;
        assert_eq!(v["error"]["code"], json!(-32602), "{malformed}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{malformed}: {v}");
    }
    agent.shutdown().await;
}

#[test]
fn completions_are_checked_at_start_and_never_listed() {
    let unknown = r#"{"resourceTemplates": [{"uriTemplate": "file:///{path}", "name": "f", "completions": {"dir": ["x"]}}]}"#;
    let refused = toolmesh_core::agent::parse_catalog(unknown).unwrap_err();
    assert!(refused.message().contains("'dir' is not a variable of the template"), "{refused}");
    let catalog = toolmesh_core::agent::parse_catalog(COMPLETING).unwrap();
    let listed = serde_json::to_string(&catalog).unwrap();
    assert!(!listed.contains("completions"), "{listed}");
}
