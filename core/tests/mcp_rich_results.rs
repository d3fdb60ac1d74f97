//! Tool results in MCP's own shape (images, audio, resource links, embedded resources, several
//! items, `structuredContent` beside content) over real mTLS to a real agent, in both eras; and
//! what a caller that takes one value gets from them.

mod common;

use bytes::Bytes;
use common::mcp::*;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::Arc;
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HandlerOutput, LocalTools, ToolInvocation, ToolOutput};
use toolmesh_core::mcp::ResultShape;

fn mixed() -> Value {
    json!({"content": [
        {"type": "text", "text": "a picture and its source"},
        {"type": "image", "data": PNG, "mimeType": "image/png", "annotations": {"audience": ["user"]}},
        {"type": "resource_link", "uri": "file:///pictures/red.png", "name": "red.png", "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "test://meta", "mimeType": "application/json", "text": "{\"w\":1}"}},
    ]})
}

fn tools() -> Vec<toolmesh_core::registry_api::ToolInfo> {
    ["mixed", "counted", "scalar", "refused"].map(|name| tool(name, name, json!({"type": "object"}), json!([]))).to_vec()
}

fn handler() -> Arc<FnHandler<impl Fn(ToolInvocation, Completion) + Send + Sync>> {
    Arc::new(FnHandler(|call: ToolInvocation, done: Completion| {
        let result = match call.tool.as_str() {
            "mixed" => mixed(),
            // structuredContent and no text: the text rendering is added.
            "counted" => json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}], "structuredContent": {"count": 1}}),
            "scalar" => json!({"structuredContent": 7}),
            _ => json!({"content": [{"type": "text", "text": "not today"}], "isError": true}),
        };
        done.result(ToolOutput::from_json(result).unwrap())
    }))
}

async fn start(pki: &Pki) -> Agent {
    let mut config = config("rich", &pki.issue("rich"));
    config.set("health_port", "off").unwrap();
    Agent::start(config, tools(), handler()).await.unwrap()
}

async fn call(client: &HttpsClient, endpoint: &str, tool: &str, modern: bool) -> Value {
    let mut params = json!({"name": tool, "arguments": {}});
    let mut request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if modern {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}});
        request = request.header("mcp-protocol-version", MODERN).header("mcp-method", "tools/call").header("mcp-name", tool);
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let response = client.send(request.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_slice::<Value>(response.body()).unwrap()["result"].clone()
}

#[tokio::test]
async fn every_content_item_reaches_the_client_as_the_handler_gave_it_in_both_eras() {
    let pki = Pki::new();
    let agent = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let legacy = call(&client, ep, "mixed", false).await;
    assert_eq!(legacy, json!({"content": mixed()["content"], "isError": false}));
    let modern = call(&client, ep, "mixed", true).await;
    assert_eq!(modern["content"], mixed()["content"]);
    assert_eq!((&modern["isError"], &modern["resultType"]), (&json!(false), &json!("complete")));
    assert_eq!(modern["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], json!("rich"));

    let counted = call(&client, ep, "counted", true).await;
    assert_eq!(counted["structuredContent"], json!({"count": 1}));
    assert_eq!(counted["content"][1], json!({"type": "text", "text": "{\"count\":1}"}));
    // A scalar structuredContent is as given in 2026-07-28 and wrapped for legacy revisions.
    let scalar = call(&client, ep, "scalar", true).await;
    assert_eq!((&scalar["structuredContent"], &scalar["content"]), (&json!(7), &json!([{"type": "text", "text": "7"}])));
    let scalar = call(&client, ep, "scalar", false).await;
    assert_eq!(scalar["structuredContent"], json!({"result": 7}));
    // The handler's own isError result is sent as it is, without a mesh error.
    let refused = call(&client, ep, "refused", true).await;
    assert_eq!((&refused["isError"], &refused["content"][0]["text"]), (&json!(true), &json!("not today")));
    assert!(refused["_meta"].get("dev.toolmesh/error").is_none(), "{refused}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_caller_that_takes_one_value_gets_the_structured_content_else_the_whole_result() {
    // What in-process calls (a dependency on the agent itself) get from the same local tools the
    // MCP server answers from.
    let local = LocalTools::new(tools(), handler());
    let context = || Arc::new(RequestContext::default());
    assert_eq!(local.invoke("counted", json!({}), context()).await.unwrap(), json!({"count": 1}));
    assert_eq!(local.invoke("scalar", json!({}), context()).await.unwrap(), json!(7));
    assert_eq!(local.invoke("mixed", json!({}), context()).await.unwrap(), mixed());
    let e = local.invoke("refused", json!({}), context()).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (toolmesh_core::ErrorKind::HandlerFailed, "tool 'refused' failed: not today"));
    // The MCP server's view keeps the result whole.
    let whole = local.invoke_output("refused", json!({}), context()).await.unwrap();
    assert!(matches!(whole, HandlerOutput::Result(ref output) if output.is_error()), "{whole:?}");
}

/// A caller that takes the whole result (`ResultShape::Whole`, what each binding's "call for the
/// result" uses) gets every content item as the handler gave it and the `structuredContent`,
/// the same from a remote callee over mTLS as from the agent's own tool in process.
#[tokio::test]
async fn a_caller_that_takes_the_whole_result_gets_it_unchanged_remote_or_in_process() {
    let pki = Pki::new();
    let agent = start(&pki).await;
    let client = toolmesh_core::mcp::McpClient::new(&pki.identity("operator")).unwrap();
    let local = LocalTools::new(tools(), handler());
    let context = RequestContext::default();
    for tool in ["mixed", "counted", "scalar"] {
        let info = tools().into_iter().find(|t| t.name == tool).unwrap();
        let provider = toolmesh_core::registry_api::Provider::of("rich-1", "rich", agent.endpoint(), &info);
        let remote = client.call_provider(&provider, &json!({}), &context, ResultShape::Whole).await.map_err(|e| e.error).unwrap();
        let in_process = local.invoke_shaped(tool, json!({}), Arc::new(RequestContext::default()), ResultShape::Whole).await.unwrap();
        assert_eq!(remote, in_process, "{tool}");
    }
    let whole = |tool: &str| {
        let provider = toolmesh_core::registry_api::Provider::of("rich-1", "rich", agent.endpoint(), &tools()[0]);
        let provider = toolmesh_core::registry_api::Provider { tool: tool.to_owned(), ..provider };
        let client = client.clone();
        async move { client.call_provider(&provider, &json!({}), &RequestContext::default(), ResultShape::Whole).await.map_err(|e| e.error) }
    };
    assert_eq!(whole("mixed").await.unwrap(), mixed());
    assert_eq!(
        whole("counted").await.unwrap(),
        json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}, {"type": "text", "text": "{\"count\":1}"}],
               "structuredContent": {"count": 1}})
    );
    // A failed tool is an error in this shape too.
    assert_eq!(whole("refused").await.unwrap_err().kind(), toolmesh_core::ErrorKind::ToolFailed);
    agent.shutdown().await;
}
