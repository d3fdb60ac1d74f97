//! Input required (SEP-2322, 2026-07-28) over real mTLS to a real agent: a handler asks the
//! client for input, core seals the state it wants back, and the client's second call brings the
//! answers and the state to the handler; a state changed on the way, or made for another tool, is
//! refused before the handler runs; a client that did not declare what a request needs is
//! refused; a legacy client answers the same requests sent on the call's stream; a prompt asks as
//! a tool does; and callers that cannot answer (a mesh call) are told why.

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::RequestContext;
use toolmesh_core::error::ErrorKind;
use toolmesh_core::host::{Completion, FnHandler, InputRequired, LocalTools, ToolHandler, ToolInvocation};
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

    agent.shutdown().await;

    // A mesh call (here in-process) cannot answer yet.
    let message = "tool 'greet' asked its caller for input (elicitation/create), which only an MCP 2026-07-28 client can give; \
                   this call cannot answer it";
    let local = LocalTools::new(tools(), handler());
    let e = local.invoke("greet", json!({}), Arc::new(RequestContext::default())).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::Protocol, message));
}

/// Sends a legacy `tools/call` and returns the events of its stream as they come, and the whole
/// answer once it ends.
fn legacy_call(
    client: &HttpsClient,
    endpoint: &str,
    tool: &str,
) -> (tokio::sync::mpsc::UnboundedReceiver<Value>, tokio::task::JoinHandle<String>) {
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let (client, endpoint) = (client.clone(), endpoint.to_owned());
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let answer = tokio::spawn(async move {
        let request = http::Request::builder()
            .method("POST")
            .uri(endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .unwrap();
        let mut observe = move |chunk: &bytes::Bytes| {
            for line in String::from_utf8_lossy(chunk).lines() {
                if let Some(Ok(message)) = line.strip_prefix("data: ").map(serde_json::from_str::<Value>) {
                    let _ = events.send(message);
                }
            }
        };
        let response = client.send_observed(request, Some(&mut observe)).await.unwrap();
        String::from_utf8(response.body().to_vec()).unwrap()
    });
    (received, answer)
}

#[tokio::test]
async fn a_legacy_client_answers_the_requests_sent_on_the_stream_and_the_handler_gets_the_answers() {
    let pki = Pki::new();
    let agent = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let stranger = HttpsClient::new(&pki.identity("stranger")).unwrap();
    let ep = agent.endpoint();
    let within = std::time::Duration::from_secs(10);

    let (mut events, answer) = legacy_call(&client, ep, "greet");
    let request = tokio::time::timeout(within, events.recv()).await.expect("a request on the stream").expect("the stream is open");
    assert_eq!(request["method"], "elicitation/create", "{request}");
    assert_eq!(request["params"]["message"], "Who are you?");
    let id = request["id"].clone();
    assert!(id.as_str().is_some_and(|id| id.len() > 24), "an unguessable string id: {id}");
    let response = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    // Another identity's response to it is accepted as a message, and answers nothing.
    let (status, _) = post(&stranger, ep, &[], response(json!({"action": "accept", "content": {"name": "Mallory"}}))).await;
    assert_eq!(status, 202);
    let (status, _) = post(&client, ep, &[], response(json!({"action": "accept", "content": {"name": "Ada"}}))).await;
    assert_eq!(status, 202);
    let answer = tokio::time::timeout(within, answer).await.expect("the call ends").unwrap();
    let result: Value = answer
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["id"] == 1)
        .expect("the call's answer on the stream");
    assert_eq!(result["result"]["structuredContent"], json!({"hello": "Ada", "state": {"asked": "greet"}}), "{result}");

    // A client that cannot elicit answers with an error: the call fails, saying so.
    let (mut events, answer) = legacy_call(&client, ep, "greet");
    let request = tokio::time::timeout(within, events.recv()).await.unwrap().unwrap();
    let refusal = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "Method not found"}});
    assert_eq!(post(&client, ep, &[], refusal).await.0, 202);
    let answer = tokio::time::timeout(within, answer).await.expect("the call ends").unwrap();
    assert!(
        answer.contains(
            "tool 'greet' asked its caller for input (elicitation/create), and the client answered with error -32601: Method not found"
        ),
        "{answer}"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn a_prompt_and_a_resource_ask_for_input_as_a_tool_does_with_their_state_sealed_for_them() {
    use toolmesh_core::host::{Catalog, CatalogInvocation, CatalogRequest, FnCatalogHandler};
    let pki = Pki::new();
    let mut config = config("asker", &pki.issue("asker"));
    config.set("health_port", "off").unwrap();
    let catalog =
        Catalog::parse(r#"{"prompts": [{"name": "greet"}], "resourceTemplates": [{"uriTemplate": "test://vault/{id}", "name": "vault"}]}"#)
            .unwrap();
    let prompt = |invocation: CatalogInvocation, done: Completion| {
        let input = invocation.context.input.clone();
        match (invocation.request, input.as_deref().and_then(|i| Some((i.responses.get("name")?, i.state.as_ref()?)))) {
            (CatalogRequest::GetPrompt { .. }, Some((answer, state))) => done.ok(json!({"messages": [{"role": "user", "content":
                {"type": "text", "text": format!("Hello, {}! ({state})", answer["content"]["name"].as_str().unwrap_or_default())}}]})),
            (CatalogRequest::ReadResource { uri, .. }, Some((answer, state))) => done.ok(json!({"contents": [{"uri": uri,
                "text": format!("opened by {} ({state})", answer["content"]["name"].as_str().unwrap_or_default())}]})),
            // Asked as a document, the other way a handler may answer.
            (CatalogRequest::ReadResource { uri, .. }, None) => done.ok(json!({"resultType": "input_required",
                "inputRequests": {"name": {"method": "elicitation/create", "params": {"message": "Who opens it?",
                    "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}}},
                "requestState": {"asked": uri}})),
            (CatalogRequest::GetPrompt { .. }, None) => done.input_required(
                InputRequired::from_json(json!({
                    "inputRequests": {"name": {"method": "elicitation/create", "params": {"message": "Who are you?",
                        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}}},
                    "requestState": {"asked": "prompt"},
                }))
                .unwrap(),
            ),
        }
    };
    let tool_handler = handler();
    let handler = Arc::new(FnCatalogHandler(move |call: ToolInvocation, done: Completion| tool_handler.invoke(call, done), prompt));
    let agent = Agent::start_with_catalog(config, tools(), catalog, handler).await.unwrap();
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let (status, first) = modern(&client, ep, "prompts/get", Some("greet"), with_elicitation(json!({"name": "greet"}))).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = first["result"]["requestState"].as_str().expect("a sealed state").to_owned();
    let answer = json!({"name": {"action": "accept", "content": {"name": "Ada"}}});
    let params = json!({"name": "greet", "inputResponses": answer, "requestState": state});
    let (status, second) = modern(&client, ep, "prompts/get", Some("greet"), with_elicitation(params)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["result"]["resultType"], "complete");
    assert_eq!(second["result"]["messages"][0]["content"]["text"], r#"Hello, Ada! ({"asked":"prompt"})"#);

    // A state this agent sealed for its tool of the same name is not the prompt's.
    let (_, sealed) = modern(&client, ep, "tools/call", Some("greet"), with_elicitation(json!({"name": "greet", "arguments": {}}))).await;
    let for_the_tool = sealed["result"]["requestState"].as_str().expect("a state for tool 'greet'").to_owned();
    let params = json!({"name": "greet", "inputResponses": answer, "requestState": for_the_tool});
    let (_, refused) = modern(&client, ep, "prompts/get", Some("greet"), with_elicitation(params)).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("issued for another request"), "{refused}");

    // A client without elicitation is refused with -32021, naming the prompt.
    let (status, refused) = modern(&client, ep, "prompts/get", Some("greet"), json!({"name": "greet"})).await;
    assert_eq!((status, refused["error"]["code"].clone()), (400, json!(-32021)), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("prompt 'greet' needs elicitation"), "{refused}");

    // A resource read asks the same way; its state is sealed for that resource's URI alone.
    let read = |uri: &str, extra: Value| {
        let mut params = with_elicitation(json!({"uri": uri}));
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        params
    };
    let (status, first) = modern(&client, ep, "resources/read", Some("test://vault/1"), read("test://vault/1", json!({}))).await;
    assert_eq!((status, first["result"]["resultType"].as_str()), (200, Some("input_required")), "{first}");
    assert!(first["result"]["inputRequests"]["name"].is_object(), "{first}");
    let state = first["result"]["requestState"].as_str().expect("a sealed state").to_owned();
    let answered = json!({"inputResponses": answer, "requestState": state});
    let (status, second) = modern(&client, ep, "resources/read", Some("test://vault/1"), read("test://vault/1", answered.clone())).await;
    assert_eq!((status, second["result"]["resultType"].as_str()), (200, Some("complete")), "{second}");
    assert_eq!(second["result"]["contents"][0]["text"], r#"opened by Ada ({"asked":"test://vault/1"})"#);
    let (_, refused) = modern(&client, ep, "resources/read", Some("test://vault/2"), read("test://vault/2", answered)).await;
    assert_eq!(refused["error"]["code"], -32602, "a state sealed for another resource: {refused}");
    let (status, refused) = modern(&client, ep, "resources/read", Some("test://vault/1"), json!({"uri": "test://vault/1"})).await;
    assert_eq!((status, refused["error"]["code"].clone()), (400, json!(-32021)), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("resource 'test://vault/1' needs elicitation"), "{refused}");
    let legacy = legacy_ok(&client, ep, "resources/read", json!({"uri": "test://vault/1"})).await;
    assert!(legacy["error"]["message"].as_str().is_some_and(|m| m.contains("resource 'test://vault/1'")), "{legacy}");
    agent.shutdown().await;
}
