//! Raw MCP requests over real mTLS, for the tests that check the endpoint's answers themselves.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use toolmesh_core::client::HttpsClient;

/// The modern protocol revision.
pub const MODERN: &str = "2026-07-28";
/// A 1×1 PNG, base64.
pub const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// POSTs `body` with `headers` to `endpoint`: the status and the JSON answer (`Null` if none).
pub async fn post(client: &HttpsClient, endpoint: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.send(request.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    (response.status().as_u16(), serde_json::from_slice(response.body()).unwrap_or(Value::Null))
}

/// A legacy-era request that must be answered 200: the JSON-RPC answer.
pub async fn legacy_ok(client: &HttpsClient, endpoint: &str, method: &str, params: Value) -> Value {
    let (status, v) = post(client, endpoint, &[], json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).await;
    assert_eq!(status, 200, "{method}: {v}");
    v
}

/// A modern request with the required `_meta` (members `params._meta` gives win) and mirrored
/// headers (`Mcp-Name` when given).
pub async fn modern(client: &HttpsClient, endpoint: &str, method: &str, name: Option<&str>, mut params: Value) -> (u16, Value) {
    let mut meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}});
    if let Some(given) = params.get("_meta").and_then(Value::as_object) {
        for (key, value) in given {
            meta[key] = value.clone();
        }
    }
    params["_meta"] = meta;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut headers = vec![("mcp-protocol-version", MODERN), ("mcp-method", method)];
    if let Some(name) = name {
        headers.push(("mcp-name", name));
    }
    post(client, endpoint, &headers, body).await
}
