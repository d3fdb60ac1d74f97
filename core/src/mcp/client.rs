//! The modern MCP client agents use to call each other's tools.

use super::*;
use crate::client::{HttpsClient, RequestError};
use crate::context::{RequestContext, TraceContext};
use crate::error::{Error, ErrorKind};
use crate::tls::Identity;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct McpClient {
    http: HttpsClient,
    next_id: Arc<AtomicU64>,
}

impl McpClient {
    pub fn new(identity: &Arc<Identity>) -> crate::Result<Self> {
        Ok(Self::from_http(HttpsClient::new(identity)?))
    }

    pub fn from_http(http: HttpsClient) -> Self {
        McpClient { http, next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// Calls `tool` at `endpoint` (`https://host:port/mcp`) and returns its value: the result's
    /// `structuredContent`, else its text (parsed as JSON when it is JSON). `context` is the
    /// caller's: its headers are sent along, and the hop gets a new span of its trace.
    pub async fn call_tool(
        &self,
        endpoint: &str,
        tool: &str,
        arguments: Value,
        context: &RequestContext,
    ) -> Result<Value, RequestError> {
        let hop = context.trace.as_ref().map(TraceContext::child).unwrap_or_else(TraceContext::new_root);
        let mut meta = json!({
            META_PROTOCOL_VERSION: MODERN_VERSION,
            META_CLIENT_CAPABILITIES: {},
            META_CLIENT_INFO: {"name": "toolmesh", "version": env!("CARGO_PKG_VERSION")},
            "traceparent": hop.traceparent(),
        });
        if let Some(state) = &hop.tracestate {
            meta["tracestate"] = json!(state);
        }
        if let Some(deadline) = context.deadline {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            meta[META_DEADLINE_MS] = json!(remaining.as_millis() as u64);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta},
        });
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(HEADER_PROTOCOL_VERSION, MODERN_VERSION)
            .header(HEADER_METHOD, "tools/call")
            .header(HEADER_NAME, encode_header_value(tool))
            .header("traceparent", hop.traceparent());
        for (name, value) in &context.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| RequestError {
            error: Error::new(ErrorKind::InvalidConfig, format!("cannot build a request to {endpoint}: {e}")),
            delivered: false,
        })?;
        let response = self.http.send(request).await?;
        decode_call_response(tool, endpoint, response).map_err(|error| RequestError { error, delivered: true })
    }
}

fn decode_call_response(tool: &str, endpoint: &str, response: http::Response<Bytes>) -> Result<Value, Error> {
    let status = response.status();
    let is_sse = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let body = response.into_body();
    let message: Option<Value> = if is_sse { last_sse_message(&body) } else { serde_json::from_slice(&body).ok() };
    let Some(message) = message.filter(Value::is_object) else {
        let text = String::from_utf8_lossy(&body);
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("{endpoint} answered HTTP {status} without a JSON-RPC message: {}", text.trim()),
        ));
    };
    if let Some(error) = message.get("error") {
        return Err(remote_rpc_error(tool, error));
    }
    let Some(result) = message.get("result") else {
        return Err(Error::new(ErrorKind::Protocol, format!("{endpoint} answered a JSON-RPC message with neither result nor error")));
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(remote_tool_error(tool, result));
    }
    if let Some(structured) = result.get("structuredContent") {
        return Ok(structured.clone());
    }
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|i| i.get("type").and_then(Value::as_str) == Some("text")))
        .and_then(|i| i.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
}

/// The last `data:` message of an SSE body (the response follows any notifications).
fn last_sse_message(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let mut last = None;
    for event in text.split("\n\n") {
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
        if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
            if v.get("result").is_some() || v.get("error").is_some() {
                last = Some(v);
            }
        }
    }
    last
}

/// A mesh error reported by the remote side keeps its kind; anything else is classified here.
fn mesh_error_in(meta: Option<&Value>) -> Option<Error> {
    let meta = meta?;
    let kind = ErrorKind::from_code(meta.get("code")?.as_u64()? as u32)?;
    let message = meta.get("message")?.as_str()?;
    Some(Error::new(kind, message))
}

fn remote_rpc_error(tool: &str, error: &Value) -> Error {
    if let Some(e) = mesh_error_in(error.get("data")) {
        return e;
    }
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
    if code == codes::INVALID_PARAMS && message.starts_with("Unknown tool") {
        return Error::new(ErrorKind::UnknownTool, format!("Unknown tool: {tool}"));
    }
    Error::new(ErrorKind::RemoteError, format!("the peer refused tools/call '{tool}': {message} (JSON-RPC {code})"))
}

fn remote_tool_error(tool: &str, result: &Value) -> Error {
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|i| i.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    match mesh_error_in(result.get("_meta").and_then(|m| m.get(META_ERROR))) {
        // The remote handler itself failed: for us that is a remote tool failure.
        Some(e) if e.code() / 1000 == 6 => Error::new(ErrorKind::ToolFailed, e.message()),
        Some(e) => e,
        None if text.starts_with("Unknown tool") => Error::new(ErrorKind::UnknownTool, format!("Unknown tool: {tool}")),
        None => Error::new(ErrorKind::ToolFailed, format!("tool '{tool}' failed: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: &str, body: &str) -> http::Response<Bytes> {
        http::Response::builder().header("content-type", content_type).body(Bytes::from(body.to_owned())).unwrap()
    }

    #[test]
    fn decodes_structured_text_sse_and_errors() {
        let ok = response("application/json", r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":5}}"#);
        assert_eq!(decode_call_response("t", "e", ok).unwrap(), json!(5));
        let text = response("application/json", r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"a\":1}"}]}}"#);
        assert_eq!(decode_call_response("t", "e", text).unwrap(), json!({"a": 1}));
        let sse = response(
            "text/event-stream",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"structuredContent\":{\"x\":2}}}\n\n",
        );
        assert_eq!(decode_call_response("t", "e", sse).unwrap(), json!({"x": 2}));
        let unknown = response("application/json", r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: nope"}}"#);
        let e = decode_call_response("nope", "e", unknown).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::UnknownTool, "Unknown tool: nope"));
        let failed = response(
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"tool 'x' failed: boom"}],"_meta":{"dev.toolmesh/error":{"code":6001,"name":"HANDLER_FAILED","message":"tool 'x' failed: boom"}}}}"#,
        );
        let e = decode_call_response("x", "e", failed).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::ToolFailed, "tool 'x' failed: boom"));
        let foreign = response("application/json", r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"bad"}]}}"#);
        assert_eq!(decode_call_response("x", "e", foreign).unwrap_err().message(), "tool 'x' failed: bad");
        let plain = response("text/plain", "toolmesh: this port speaks HTTPS");
        assert_eq!(decode_call_response("x", "e", plain).unwrap_err().kind(), ErrorKind::Protocol);
    }
}
