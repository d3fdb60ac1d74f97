//! SEP-2243's `Mcp-Param-*` headers, over real mTLS to a real agent: a modern `tools/call` of a
//! tool whose input schema marks a parameter `x-mcp-header` must mirror that parameter in a header
//! (plain, or strict base64 in the `=?base64?…?=` sentinel); anything else is 400 / -32020.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::Provider;

const MODERN: &str = "2026-07-28";

fn call(region: Option<&str>) -> Value {
    let arguments = match region {
        Some(r) => json!({"region": r}),
        None => json!({}),
    };
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo_context", "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}},
    }})
}

async fn post(client: &HttpsClient, endpoint: &str, param_header: Option<(&str, &str)>, body: Value) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo_context");
    if let Some((name, value)) = param_header {
        request = request.header(name, value);
    }
    let response = client.send(request.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    (response.status().as_u16(), serde_json::from_slice(response.body()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_parameter_marked_x_mcp_header_must_be_mirrored_in_its_header() {
    let pki = Pki::new();
    let mut tools = standard_tools();
    // echo_context, with a `region` parameter that callers mirror in Mcp-Param-Region.
    let echo = tools.iter_mut().find(|t| t.name == "echo_context").unwrap();
    echo.input_schema = json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
    let agent = start_agent("b", &pki.issue("b"), tools, |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let ok = |(status, v): (u16, Value)| {
        assert_eq!((status, &v["result"]["isError"]), (200, &json!(false)), "{v}");
    };
    let mismatch = |(status, v): (u16, Value)| {
        assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "{v}");
    };

    ok(post(&client, ep, Some(("mcp-param-region", "eu-west")), call(Some("eu-west"))).await);
    // Header names are case-insensitive; surrounding whitespace is not part of the value.
    ok(post(&client, ep, Some(("MCP-PARAM-REGION", "  eu-west ")), call(Some("eu-west"))).await);
    // Base64 in the sentinel is decoded ("Hello")...
    ok(post(&client, ep, Some(("mcp-param-region", "=?base64?SGVsbG8=?=")), call(Some("Hello"))).await);
    // ...and a value lacking half the sentinel is literal.
    ok(post(&client, ep, Some(("mcp-param-region", "=?base64?SGVsbG8=")), call(Some("=?base64?SGVsbG8="))).await);
    // No value in the body and no header: nothing to mirror.
    ok(post(&client, ep, None, call(None)).await);

    mismatch(post(&client, ep, None, call(Some("eu-west"))).await);
    mismatch(post(&client, ep, Some(("mcp-param-region", "us-east")), call(Some("eu-west"))).await);
    mismatch(post(&client, ep, Some(("mcp-param-region", "eu-west")), call(None)).await);
    // Unpadded base64 and foreign characters are refused, not guessed at.
    mismatch(post(&client, ep, Some(("mcp-param-region", "=?base64?SGVsbG8?=")), call(Some("Hello"))).await);
    mismatch(post(&client, ep, Some(("mcp-param-region", "=?base64?SGVs!!!bG8=?=")), call(Some("Hello"))).await);
    agent.shutdown().await;
}

/// A mesh call (`McpClient::call_provider`, what an agent's call pipeline sends) mirrors each
/// parameter its provider lists in `param_headers`, as the registry fills them from the tool's
/// schema: without them the provider refuses the call.
#[tokio::test]
async fn a_mesh_call_mirrors_the_parameters_its_provider_declares() {
    let pki = Pki::new();
    let mut tools = standard_tools();
    let echo = tools.iter_mut().find(|t| t.name == "echo_context").unwrap();
    echo.input_schema = json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"},
        "note": {"type": "string"},
    }});
    let echo = echo.clone();
    let agent = start_agent("b", &pki.issue("b"), tools, |_| {}).await;
    let provider = Provider::of("b-1", "b", agent.endpoint(), &echo);
    let pairs: Vec<(&str, &str)> = provider.param_headers.iter().map(|p| (p.parameter.as_str(), p.header.as_str())).collect();
    assert_eq!(pairs, [("priority", "Priority"), ("region", "Region")]);

    let client = McpClient::new(&pki.identity("operator")).unwrap();
    let context = RequestContext::default();
    for arguments in [
        json!({"region": "eu-west", "priority": 3, "note": "n"}),
        json!({"region": "Zürich"}), // not plain ASCII: sent in the base64 sentinel
        json!({"priority": 1}),      // a parameter the call does not give is not sent
        json!({}),
    ] {
        let answer = client.call_provider(&provider, &arguments, &context, toolmesh_core::mcp::ResultShape::Value).await;
        assert!(answer.is_ok(), "{arguments}: {:?}", answer.map_err(|e| e.error));
    }
    // The same call without the mirrored headers is refused by the provider.
    let refused = client.call_tool(agent.endpoint(), "echo_context", &json!({"region": "eu-west"}), &context).await;
    let error = refused.expect_err("a call without Mcp-Param-Region is refused").error;
    assert!(error.message().contains("Mcp-Param-Region") || error.message().contains("mcp-param-region"), "{error}");
    agent.shutdown().await;
}
