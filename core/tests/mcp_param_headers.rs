//! SEP-2243's `Mcp-Param-*` headers, over real mTLS to a real agent: a modern `tools/call` of a
//! tool whose input schema marks a parameter `x-mcp-header` must mirror that parameter in a header
//! (plain, or strict base64 in the `=?base64?…?=` sentinel); anything else is 400 / -32020.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use toolmesh_core::client::HttpsClient;

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
