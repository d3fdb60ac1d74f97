//! Input required (SEP-2322, 2026-07-28) over real mTLS to a real agent: a handler asks the
//! client for input, core seals the state it wants back, and the client's second call brings the
//! answers and the state to the handler; a state changed on the way, or made for another tool, is
//! refused before the handler runs; a client that did not declare what a request needs is
//! refused; and callers that cannot answer (a legacy request, a mesh call) are told why.

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::RequestContext;
use toolmesh_core::error::ErrorKind;
use toolmesh_core::host::{Completion, FnHandler, InputRequired, LocalTools, ToolInvocation};
use toolmesh_core::registry_api::ToolInfo;

fn tools() -> Vec<ToolInfo> {
    ["greet", "other"].map(|name| tool(name, name, json!({"type": "object"}), json!([]))).to_vec()
}

/// Asks for a name (with state `{"asked": <tool>}`) until the answers carry one and the state.
fn handler() -> Arc<FnHandler<impl Fn(ToolInvocation, Completion) + Send + Sync>> {
    Arc::new(FnHandler(|call: ToolInvocation, done: Completion| {
        let input = call.context.input.as_deref();
        match input.and_then(|i| Some((i.responses.get("name")?, i.state.as_ref()?))) {
            Some((answer, state)) => done.ok(json!({"hello": answer["content"]["name"], "state": state})),
            None => done.input_required(
                InputRequired::from_json(json!({
                    "inputRequests": {"name": {"method": "elicitation/create", "params": {"message": "Who are you?",
                        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}}},
                    "requestState": {"asked": call.tool},
                }))
                .unwrap(),
            ),
        }
    }))
}

async fn start(pki: &Pki) -> Agent {
    let mut config = config("asker", &pki.issue("asker"));
    config.set("health_port", "off").unwrap();
    Agent::start(config, tools(), handler()).await.unwrap()
}

fn with_elicitation(mut params: Value) -> Value {
    params["_meta"] = json!({"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    params
}

#[tokio::test]
async fn the_answers_and_the_sealed_state_reach_the_handler_on_the_second_call() {
    let pki = Pki::new();
    let agent = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let (status, first) =
        modern(&client, ep, "tools/call", Some("greet"), with_elicitation(json!({"name": "greet", "arguments": {}}))).await;
    assert_eq!(status, 200, "{first}");
    let first = &first["result"];
    assert_eq!(first["resultType"], "input_required", "{first}");
    assert_eq!(first["inputRequests"]["name"]["method"], "elicitation/create");
    let state = first["requestState"].as_str().expect("a sealed state");
    assert!(!state.contains("asked"), "the state is opaque to the client: {state}");

    let answer = json!({"name": {"action": "accept", "content": {"name": "Ada"}}});
    let params = json!({"name": "greet", "arguments": {}, "inputResponses": answer, "requestState": state});
    let (status, second) = modern(&client, ep, "tools/call", Some("greet"), with_elicitation(params)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["result"]["resultType"], "complete");
    assert_eq!(second["result"]["structuredContent"], json!({"hello": "Ada", "state": {"asked": "greet"}}));

    // Changed on the way, or brought to another tool: refused before any handler runs.
    let mut tampered = state.to_owned();
    tampered.insert(0, 'x');
    for (tool, state, says) in [("greet", tampered.as_str(), "integrity check"), ("other", state, "issued for another request")] {
        let params = json!({"name": tool, "arguments": {}, "inputResponses": answer, "requestState": state});
        let (status, refused) = modern(&client, ep, "tools/call", Some(tool), with_elicitation(params)).await;
        assert_eq!((status, refused["error"]["code"].clone()), (200, json!(-32602)), "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(says), "{refused}");
    }
    // Answers that are not results by key.
    for bad in [json!([1]), json!({"name": "Ada"})] {
        let params = json!({"name": "greet", "arguments": {}, "inputResponses": bad});
        let (_, refused) = modern(&client, ep, "tools/call", Some("greet"), with_elicitation(params)).await;
        assert_eq!(refused["error"]["code"], json!(-32602), "{refused}");
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn a_caller_that_cannot_answer_is_told_why() {
    let pki = Pki::new();
    let agent = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    // A modern client that did not declare elicitation.
    let (status, refused) = modern(&client, ep, "tools/call", Some("greet"), json!({"name": "greet", "arguments": {}})).await;
    assert_eq!((status, refused["error"]["code"].clone()), (400, json!(-32021)), "{refused}");
    assert_eq!(refused["error"]["data"]["requiredCapabilities"], json!({"elicitation": {}}));

    // A legacy request: there is no such result in its era.
    let legacy = legacy_ok(&client, ep, "tools/call", json!({"name": "greet", "arguments": {}})).await;
    let message = "tool 'greet' asked its caller for input (elicitation/create), which only an MCP 2026-07-28 client can give; \
                   this call cannot answer it";
    assert_eq!((legacy["result"]["isError"].clone(), legacy["result"]["content"][0]["text"].clone()), (json!(true), json!(message)));
    agent.shutdown().await;

    // A mesh call (here in-process) cannot answer either.
    let local = LocalTools::new(tools(), handler());
    let e = local.invoke("greet", json!({}), Arc::new(RequestContext::default())).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::Protocol, message));
}
