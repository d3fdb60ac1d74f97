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

#[tokio::test]
async fn completion_complete_answers_no_suggestions_in_both_eras() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let request = json!({"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "who", "value": "pa"}});
    let none = json!({"completion": {"values": [], "total": 0, "hasMore": false}});

    let (status, v) = post(&client, ep, &[], legacy("completion/complete", request.clone())).await;
    assert_eq!((status, &v["result"]), (200, &none), "{v}");
    let (status, v) = modern(&client, ep, "completion/complete", None, request).await;
    assert_eq!((status, &v["result"]["completion"], &v["result"]["resultType"]), (200, &none["completion"], &json!("complete")), "{v}");
    let resource = json!({"ref": {"type": "ref/resource", "uri": "file:///{path}"}, "argument": {"name": "path", "value": ""}});
    let (_, v) = post(&client, ep, &[], legacy("completion/complete", resource)).await;
    assert_eq!(v["result"], none, "{v}");

    for malformed in [
        json!({"argument": {"name": "who", "value": "pa"}}),
        json!({"ref": {"type": "ref/tool", "name": "add"}, "argument": {"name": "a", "value": "1"}}),
        json!({"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "who"}}),
    ] {
        let (_, v) = post(&client, ep, &[], legacy("completion/complete", malformed.clone())).await;
        assert_eq!(v["error"]["code"], json!(-32602), "{malformed}: {v}");
    }
    agent.shutdown().await;
}
