//! Prompts over real mTLS to a real agent: `prompts/list` and `prompts/get` in both eras, the
//! arguments checked by core before the host handler sees them, the handler's answer checked,
//! the capabilities declared exactly, and the callee's policy deciding who may list and get.

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use toolmesh_core::agent::{parse_catalog, Agent};
use toolmesh_core::client::HttpsClient;
use toolmesh_core::host::{CatalogInvocation, CatalogRequest, Completion, FnCatalogHandler};
use toolmesh_core::policy::Policy;

const CATALOG: &str = r#"{"prompts": [
    {"name": "greeting", "description": "Greets someone", "arguments": [
        {"name": "who", "description": "whom to greet", "required": true}, {"name": "tone"}]},
    {"name": "picture", "title": "A picture"},
    {"name": "broken"}
]}"#;

/// An agent serving `CATALOG`; the handler's gets are recorded.
async fn start(pki: &Pki, name: &str) -> (Agent, Arc<Mutex<Vec<CatalogRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let handler = FnCatalogHandler(
        |_, done: Completion| done.err("no tools here"),
        move |invocation: CatalogInvocation, done: Completion| {
            record.lock().unwrap().push(invocation.request.clone());
            let CatalogRequest::GetPrompt { name, arguments } = invocation.request else { return done.err("not a prompt") };
            let text = |t: String| json!({"role": "user", "content": {"type": "text", "text": t}});
            match name.as_str() {
                "greeting" => done.ok(json!({"description": "a greeting", "messages": [
                    text(format!("Say hello to {} ({})", arguments["who"].as_str().unwrap(), arguments.get("tone").and_then(Value::as_str).unwrap_or("plain"))),
                    {"role": "assistant", "content": {"type": "text", "text": "Hello!"}}]})),
                "picture" => done.ok(json!({"messages": [{"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}}]})),
                _ => done.ok(json!({"messages": [{"role": "system", "content": {"type": "text", "text": "x"}}]})),
            }
        },
    );
    let catalog = parse_catalog(CATALOG).unwrap();
    let agent = Agent::start_with_catalog(config(name, &pki.issue(name)), standard_tools(), catalog, Arc::new(handler)).await.unwrap();
    (agent, seen)
}

#[tokio::test]
async fn prompts_are_listed_and_got_in_both_eras_and_declared_exactly() {
    let pki = Pki::new();
    let (agent, seen) = start(&pki, "writer").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    let v = legacy_ok(&client, ep, "initialize", init).await;
    let prompts = json!({"listChanged": false});
    assert_eq!(
        v["result"]["capabilities"],
        json!({"tools": {"listChanged": false}, "completions": {}, "logging": {}, "prompts": prompts}),
        "{v}"
    );
    let (_, v) = modern(&client, ep, "server/discover", None, json!({})).await;
    assert_eq!(v["result"]["capabilities"], json!({"tools": {"listChanged": false}, "completions": {}, "prompts": prompts}), "{v}");
    let (status, v) = modern(&client, ep, "resources/list", None, json!({})).await;
    assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "resources are not declared: {v}");

    let v = legacy_ok(&client, ep, "prompts/list", json!({})).await;
    assert_eq!(
        v["result"]["prompts"],
        json!([
            {"name": "greeting", "description": "Greets someone", "arguments": [
                {"name": "who", "description": "whom to greet", "required": true}, {"name": "tone", "required": false}]},
            {"name": "picture", "title": "A picture"},
            {"name": "broken"}
        ]),
        "{v}"
    );
    let (_, v) = modern(&client, ep, "prompts/list", None, json!({})).await;
    assert_eq!(
        (&v["result"]["ttlMs"], &v["result"]["cacheScope"], &v["result"]["resultType"]),
        (&json!(0), &json!("private"), &json!("complete")),
        "{v}"
    );

    let v = legacy_ok(&client, ep, "prompts/get", json!({"name": "greeting", "arguments": {"who": "Ada"}})).await;
    assert_eq!(
        v["result"],
        json!({"description": "a greeting", "messages": [
            {"role": "user", "content": {"type": "text", "text": "Say hello to Ada (plain)"}},
            {"role": "assistant", "content": {"type": "text", "text": "Hello!"}}]}),
        "{v}"
    );
    let (status, v) = modern(&client, ep, "prompts/get", Some("picture"), json!({"name": "picture"})).await;
    assert_eq!(
        (status, &v["result"]["messages"][0]["content"]["data"], &v["result"]["resultType"]),
        (200, &json!(PNG), &json!("complete")),
        "{v}"
    );
    assert!(v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"].is_string(), "{v}");
    let (status, v) = modern(&client, ep, "prompts/get", Some("greeting"), json!({"name": "picture"})).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "Mcp-Name mirrors the prompt's name: {v}");
    assert_eq!(
        seen.lock().unwrap()[0],
        CatalogRequest::GetPrompt { name: "greeting".into(), arguments: json!({"who": "Ada"}).as_object().unwrap().clone() }
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn arguments_are_checked_before_the_handler_and_its_answer_after() {
    let pki = Pki::new();
    let (agent, seen) = start(&pki, "writer").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    for (params, says) in [
        (json!({"name": "nope"}), "unknown prompt 'nope'"),
        (json!({"name": "greeting"}), "missing required argument(s) who"),
        (json!({"name": "greeting", "arguments": {"who": 7}}), "argument 'who' must be a string"),
        (json!({"name": "greeting", "arguments": "who"}), "arguments must be an object of strings"),
        (json!({}), "prompts/get needs a string 'name'"),
    ] {
        let v = legacy_ok(&client, ep, "prompts/get", params.clone()).await;
        assert_eq!(v["error"]["code"], json!(-32602), "{params}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{params}: {v}");
    }
    assert!(seen.lock().unwrap().is_empty(), "no refused get reached the handler");

    let (_, v) = modern(&client, ep, "prompts/get", Some("broken"), json!({"name": "broken"})).await;
    assert_eq!((&v["error"]["code"], &v["error"]["data"]["name"]), (&json!(-32603), &json!("HANDLER_RESULT")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("messages[0]: 'role' must be \"user\" or \"assistant\""), "{v}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_caller_the_policy_denies_cannot_list_or_get() {
    let pki = Pki::new();
    let (agent, seen) = start(&pki, "writer").await;
    agent.replace_policy(
        Policy::parse(
            "apiVersion: toolmesh.dev/v1alpha1\nkind: AccessPolicy\nrules:\n  - name: no-outsider\n    action: deny\n    source: { agents: [outsider] }\n",
            1,
        )
        .unwrap(),
    );
    let ep = agent.endpoint();
    let outsider = HttpsClient::new(&pki.identity("outsider")).unwrap();
    let insider = HttpsClient::new(&pki.identity("insider")).unwrap();

    let v = legacy_ok(&outsider, ep, "prompts/list", json!({})).await;
    assert_eq!(v["result"]["prompts"], json!([]), "{v}");
    let v = legacy_ok(&outsider, ep, "prompts/get", json!({"name": "picture"})).await;
    assert_eq!((&v["error"]["code"], &v["error"]["data"]["name"]), (&json!(-32602), &json!("CALL_DENIED")), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("may not read prompt 'picture' of agent 'writer' (policy rule 'no-outsider'"),
        "{v}"
    );
    assert!(seen.lock().unwrap().is_empty());

    // The default (allow within the mesh) still lets everyone else in.
    let v = legacy_ok(&insider, ep, "prompts/list", json!({})).await;
    assert_eq!(v["result"]["prompts"].as_array().unwrap().len(), 3, "{v}");
    let v = legacy_ok(&insider, ep, "prompts/get", json!({"name": "picture"})).await;
    assert_eq!(v["result"]["messages"][0]["content"]["type"], json!("image"), "{v}");
    agent.shutdown().await;
}
