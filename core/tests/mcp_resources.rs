//! Resources over real mTLS to a real agent: `resources/list`, `resources/templates/list` and
//! `resources/read` in both eras, static content answered by core and the rest by the host
//! handler, the errors of each era, the capabilities declared exactly, and the callee's policy
//! deciding who may list and read (no side door around the rules for tools).

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::host::{Catalog, CatalogRequest, FnCatalogHandler, FnHandler};
use toolmesh_core::policy::Policy;

fn catalog() -> Catalog {
    Catalog::parse(
        &json!({
            "resources": [
                {"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain", "text": "static text"},
                {"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png", "blob": PNG},
                {"uri": "test://live", "name": "live", "description": "read through the handler"},
                {"uri": "test://broken", "name": "broken"},
                {"uri": "test://failing", "name": "failing"},
            ],
            "resourceTemplates": [{"uriTemplate": "test://template/{id}/data", "name": "template-data", "mimeType": "application/json"}],
        })
        .to_string(),
    )
    .unwrap()
}

/// An agent serving `catalog()`; the handler's reads are recorded.
async fn start(pki: &Pki, name: &str) -> (Agent, Arc<Mutex<Vec<CatalogRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let handler = FnCatalogHandler(
        |_, done: toolmesh_core::host::Completion| done.err("no tools here"),
        move |invocation: toolmesh_core::host::CatalogInvocation, done: toolmesh_core::host::Completion| {
            record.lock().unwrap().push(invocation.request.clone());
            let CatalogRequest::ReadResource { uri, variables, .. } = invocation.request else { return done.err("not a read") };
            match uri.as_str() {
                "test://broken" => done.ok(json!({"contents": [{"uri": uri, "blob": "not base64!"}]})),
                "test://failing" => done.err("the disk is on fire"),
                _ => done.ok(json!({"contents": [{"uri": uri, "text": format!("live {}", variables.get("id").and_then(Value::as_str).unwrap_or("-"))}]})),
            }
        },
    );
    let agent = Agent::start_with_catalog(config(name, &pki.issue(name)), standard_tools(), catalog(), Arc::new(handler)).await.unwrap();
    (agent, seen)
}

#[tokio::test]
async fn resources_are_listed_and_read_in_both_eras_and_declared_exactly() {
    let pki = Pki::new();
    let (agent, seen) = start(&pki, "docs").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    // Capabilities: resources (subscriptions: mcp_subscriptions.rs; a fixed list), and no prompts.
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    let v = legacy_ok(&client, ep, "initialize", init).await;
    let resources = json!({"listChanged": false, "subscribe": true});
    assert_eq!(
        v["result"]["capabilities"],
        json!({"tools": {"listChanged": false}, "completions": {}, "logging": {}, "resources": resources}),
        "{v}"
    );
    let (_, v) = modern(&client, ep, "server/discover", None, json!({})).await;
    assert_eq!(v["result"]["capabilities"], json!({"tools": {"listChanged": false}, "completions": {}, "resources": resources}), "{v}");
    for method in ["prompts/list", "prompts/get"] {
        let v = legacy_ok(&client, ep, method, json!({"name": "x", "uri": "test://static-text"})).await;
        assert_eq!(v["error"]["code"], json!(-32601), "{method} is not declared: {v}");
    }

    // Lists: declaration order, content never listed; the modern era adds the caching hints.
    let v = legacy_ok(&client, ep, "resources/list", json!({})).await;
    let listed = &v["result"]["resources"];
    assert_eq!(listed.as_array().unwrap().len(), 5, "{v}");
    assert_eq!(listed[0], json!({"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain"}), "{v}");
    assert_eq!(listed[2], json!({"uri": "test://live", "name": "live", "description": "read through the handler"}), "{v}");
    let (status, v) = modern(&client, ep, "resources/templates/list", None, json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["resourceTemplates"],
        json!([{"uriTemplate": "test://template/{id}/data", "name": "template-data", "mimeType": "application/json"}]),
        "{v}"
    );
    assert_eq!(
        (&v["result"]["ttlMs"], &v["result"]["cacheScope"], &v["result"]["resultType"]),
        (&json!(0), &json!("private"), &json!("complete")),
        "{v}"
    );
    let v = legacy_ok(&client, ep, "resources/list", json!({"cursor": "next"})).await;
    assert_eq!(v["error"]["code"], json!(-32602), "this server never paginates: {v}");

    // Static content is core's: the handler is not asked.
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://static-text"})).await;
    assert_eq!(v["result"]["contents"], json!([{"uri": "test://static-text", "mimeType": "text/plain", "text": "static text"}]), "{v}");
    let (_, v) = modern(&client, ep, "resources/read", Some("test://static-binary"), json!({"uri": "test://static-binary"})).await;
    assert_eq!(v["result"]["contents"], json!([{"uri": "test://static-binary", "mimeType": "image/png", "blob": PNG}]), "{v}");
    assert_eq!(
        (&v["result"]["ttlMs"], &v["result"]["cacheScope"], &v["result"]["resultType"]),
        (&json!(0), &json!("private"), &json!("complete")),
        "{v}"
    );
    assert!(v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"].is_string(), "{v}");
    assert!(seen.lock().unwrap().is_empty());

    // A template's URI and a resource without content go to the handler.
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://template/123/data"})).await;
    assert_eq!(v["result"]["contents"], json!([{"uri": "test://template/123/data", "text": "live 123"}]), "{v}");
    let (_, v) = modern(&client, ep, "resources/read", Some("test://live"), json!({"uri": "test://live"})).await;
    assert_eq!(v["result"]["contents"], json!([{"uri": "test://live", "text": "live -"}]), "{v}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        CatalogRequest::ReadResource {
            uri: "test://template/123/data".into(),
            name: "template-data".into(),
            template: Some("test://template/{id}/data".into()),
            variables: json!({"id": "123"}).as_object().unwrap().clone(),
        }
    );
    assert_eq!(
        seen[1],
        CatalogRequest::ReadResource { uri: "test://live".into(), name: "live".into(), template: None, variables: Default::default() }
    );

    // SEP-2243: a modern read mirrors its URI in Mcp-Name.
    let (status, v) = modern(&client, ep, "resources/read", None, json!({"uri": "test://live"})).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "{v}");
    let (status, v) = modern(&client, ep, "resources/read", Some("test://other"), json!({"uri": "test://live"})).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "{v}");
    agent.shutdown().await;
}

#[tokio::test]
async fn an_unknown_uri_is_each_eras_error_and_a_bad_answer_is_the_handlers() {
    let pki = Pki::new();
    let (agent, _) = start(&pki, "docs").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let unknown = "test://nonexistent";

    // 2026-07-28 (SEP-2164): Invalid params with the URI; the legacy revisions: -32002.
    let (status, v) = modern(&client, ep, "resources/read", Some(unknown), json!({"uri": unknown})).await;
    assert_eq!((status, &v["error"]["code"], &v["error"]["data"]), (200, &json!(-32602), &json!({"uri": unknown})), "{v}");
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": unknown})).await;
    assert_eq!((&v["error"]["code"], &v["error"]["data"]), (&json!(-32002), &json!({"uri": unknown})), "{v}");
    assert!(v.get("result").is_none(), "never an empty contents: {v}");
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://template/1/2/data"})).await;
    assert_eq!(v["error"]["code"], json!(-32002), "a variable never spans a '/': {v}");
    let v = legacy_ok(&client, ep, "resources/read", json!({})).await;
    assert_eq!(v["error"]["code"], json!(-32602), "{v}");

    // What the handler answers is checked; a failure is the handler's (Internal error).
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://broken"})).await;
    assert_eq!((&v["error"]["code"], &v["error"]["data"]["name"]), (&json!(-32603), &json!("HANDLER_RESULT")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("contents[0] 'blob' is not base64"), "{v}");
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://failing"})).await;
    assert_eq!((&v["error"]["code"], &v["error"]["data"]["name"]), (&json!(-32603), &json!("HANDLER_FAILED")), "{v}");
    assert_eq!(v["error"]["message"], json!("resource 'test://failing' failed: the disk is on fire"), "{v}");
    agent.shutdown().await;

    // A host whose handler serves tools only: static resources still read, the rest say why not.
    let handler = FnHandler(|_, done: toolmesh_core::host::Completion| done.err("no tools"));
    let agent =
        Agent::start_with_catalog(config("plain", &pki.issue("plain")), standard_tools(), catalog(), Arc::new(handler)).await.unwrap();
    let ep = agent.endpoint();
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://static-text"})).await;
    assert_eq!(v["result"]["contents"][0]["text"], json!("static text"), "{v}");
    let v = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://live"})).await;
    assert_eq!(v["error"]["code"], json!(-32603), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("has no handler for resource 'test://live'"), "{v}");
    agent.shutdown().await;

    // A catalog that does not hold together stops the agent from starting, naming the entry.
    let bad = Catalog {
        resource_templates: catalog()
            .resource_templates
            .into_iter()
            .map(|mut t| {
                t.uri_template = "test://{a}{b}".into();
                t
            })
            .collect(),
        ..Catalog::default()
    };
    let handler = FnHandler(|_, done: toolmesh_core::host::Completion| done.err("no tools"));
    let e = Agent::start_with_catalog(config("bad", &pki.issue("bad")), standard_tools(), bad, Arc::new(handler)).await.err().unwrap();
    assert!(e.message().contains("resourceTemplates[0].uriTemplate 'test://{a}{b}'"), "{e}");
}

#[tokio::test]
async fn the_callees_policy_decides_who_lists_and_reads_by_the_rules_for_tools() {
    let pki = Pki::new();
    let (agent, seen) = start(&pki, "docs").await;
    // Only `front` may reach `live` (by name, as a tool so named would be); nobody else anything.
    agent.replace_policy(
        Policy::parse(
            "apiVersion: toolmesh.dev/v1alpha1\nkind: AccessPolicy\ndefault: deny\nrules:\n  - name: front-reads-live\n    source: { agents: [front] }\n    target: { tools: [live] }\n",
            1,
        )
        .unwrap(),
    );
    let ep = agent.endpoint();
    let front = HttpsClient::new(&pki.identity("front")).unwrap();
    let other = HttpsClient::new(&pki.identity("other")).unwrap();

    let v = legacy_ok(&front, ep, "resources/list", json!({})).await;
    assert_eq!(
        v["result"]["resources"].as_array().unwrap().iter().map(|r| r["uri"].clone()).collect::<Vec<_>>(),
        vec![json!("test://live")],
        "{v}"
    );
    let v = legacy_ok(&front, ep, "resources/read", json!({"uri": "test://live"})).await;
    assert_eq!(v["result"]["contents"][0]["text"], json!("live -"), "{v}");
    let (_, v) = modern(&front, ep, "resources/templates/list", None, json!({})).await;
    assert_eq!(v["result"]["resourceTemplates"], json!([]), "{v}");

    // Static content is no side door: core's own answers are decided too.
    for (client, uri) in [(&front, "test://static-text"), (&front, "test://template/1/data"), (&other, "test://live")] {
        let v = legacy_ok(client, ep, "resources/read", json!({"uri": uri})).await;
        assert_eq!((&v["error"]["code"], &v["error"]["data"]["name"]), (&json!(-32602), &json!("CALL_DENIED")), "{uri}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("(policy rule 'default: deny'"), "{v}");
        let (_, v) = modern(client, ep, "resources/read", Some(uri), json!({"uri": uri})).await;
        assert_eq!(v["error"]["data"]["name"], json!("CALL_DENIED"), "{uri}: {v}");
    }
    let v = legacy_ok(&other, ep, "resources/list", json!({})).await;
    assert_eq!(v["result"]["resources"], json!([]), "{v}");
    assert_eq!(seen.lock().unwrap().len(), 1, "only the allowed read reached the handler");
    agent.shutdown().await;
}
