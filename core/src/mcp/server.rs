//! The `/mcp` endpoint: modern (2026-07-28) requests are validated and answered statelessly;
//! legacy (2025-03-26 … 2025-11-25) requests are served statelessly too, with no session.

use super::*;
use crate::context::{HeaderAllowList, RequestContext, TraceContext};
use crate::error::{Error, ErrorKind};
use crate::host::LocalTools;
use crate::server::{read_body, Body, PeerInfo};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// Serves one agent's tools over MCP.
pub struct McpServer {
    info: ServerInfo,
    tools: Arc<LocalTools>,
    propagate: HeaderAllowList,
}

/// A JSON-RPC error on its way out, with the HTTP status it travels with.
struct RpcError {
    status: StatusCode,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        RpcError { status, code, message: message.into(), data: None }
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Era {
    Modern,
    Legacy,
}

impl McpServer {
    pub fn new(info: ServerInfo, tools: Arc<LocalTools>, propagate: HeaderAllowList) -> Self {
        McpServer { info, tools, propagate }
    }

    pub async fn handle(&self, request: http::Request<Incoming>, peer: Arc<PeerInfo>) -> Response<Body> {
        if request.uri().path() != ENDPOINT_PATH {
            return crate::server::text_response(StatusCode::NOT_FOUND, format!("not found: the MCP endpoint is {ENDPOINT_PATH}"));
        }
        if request.method() != Method::POST {
            // Stateless server: no GET stream, no session to DELETE.
            let mut response = crate::server::text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: this stateless MCP endpoint takes POST only",
            );
            response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let (parts, body) = request.into_parts();
        if let Some(e) = check_http_headers(&parts.headers) {
            return rpc_error(Value::Null, e);
        }
        let body = match read_body(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        self.handle_message(&parts.headers, &body, &peer).await
    }

    async fn handle_message(&self, headers: &HeaderMap, body: &Bytes, peer: &PeerInfo) -> Response<Body> {
        let message: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return rpc_error(Value::Null, RpcError::new(StatusCode::BAD_REQUEST, codes::PARSE_ERROR, format!("Parse error: {e}")))
            }
        };
        let Value::Object(message) = message else {
            let what = if message.is_array() { "JSON-RPC batches are not supported" } else { "the body must be a JSON-RPC object" };
            return rpc_error(Value::Null, RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, format!("Invalid Request: {what}")));
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return rpc_error(Value::Null, RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\""));
        }
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // A response or a malformed message: a stateless server has nothing to match it with.
            return if message.contains_key("result") || message.contains_key("error") {
                accepted()
            } else {
                rpc_error(Value::Null, RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, "Invalid Request: no method"))
            };
        };
        let id = match message.get("id") {
            None => return accepted(), // a notification
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            Some(_) => {
                return rpc_error(Value::Null, RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, "Invalid Request: id must be a string or an integer"))
            }
        };
        let empty = Map::new();
        let params = match message.get("params") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => {
                return rpc_error(id, RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, "Invalid params: params must be an object"))
            }
        };
        let era = match era_of(method, headers, params) {
            Ok(era) => era,
            Err(e) => return rpc_error(id, e),
        };
        let outcome = match era {
            Era::Modern => self.modern(method, headers, params, peer).await,
            Era::Legacy => self.legacy(method, params, headers, peer).await,
        };
        match outcome {
            Ok(result) => json_ok(id, result),
            Err(e) => rpc_error(id, e),
        }
    }

    async fn modern(&self, method: &str, headers: &HeaderMap, params: &Map<String, Value>, peer: &PeerInfo) -> Result<Value, RpcError> {
        check_modern_request(method, headers, params)?;
        let mut result = match method {
            "server/discover" => json!({
                "supportedVersions": std::iter::once(MODERN_VERSION).chain(LEGACY_VERSIONS.iter().copied()).collect::<Vec<_>>(),
                "capabilities": {"tools": {"listChanged": false}},
                "ttlMs": 0,
                "cacheScope": "private",
            }),
            "tools/list" => {
                let mut list = self.tools_list(params)?;
                list["ttlMs"] = json!(0);
                list["cacheScope"] = json!("private");
                list
            }
            "tools/call" => self.tools_call(Era::Modern, params, headers, peer).await?,
            other => {
                return Err(RpcError::new(StatusCode::NOT_FOUND, codes::METHOD_NOT_FOUND, "Method not found").with_data(json!(other)))
            }
        };
        result["resultType"] = json!("complete");
        let meta = result.as_object_mut().expect("results are objects").entry("_meta").or_insert_with(|| json!({}));
        meta[META_SERVER_INFO] = json!({"name": self.info.name, "version": self.info.version});
        Ok(result)
    }

    async fn legacy(&self, method: &str, params: &Map<String, Value>, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                let requested = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(DEFAULT_LEGACY_VERSION);
                let version = if LEGACY_VERSIONS.contains(&requested) { requested } else { LEGACY_VERSIONS[0] };
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": self.info.name, "version": self.info.version},
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => self.tools_list(params),
            "tools/call" => self.tools_call(Era::Legacy, params, headers, peer).await,
            other => Err(RpcError::new(StatusCode::OK, codes::METHOD_NOT_FOUND, "Method not found").with_data(json!(other))),
        }
    }

    fn tools_list(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        if params.get("cursor").is_some_and(|c| !c.is_null()) {
            return Err(RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, "Invalid params: unknown cursor (this server never paginates)"));
        }
        let tools: Vec<Value> = self
            .tools
            .tools()
            .iter()
            .map(|t| {
                let mut tool = json!({"name": t.name, "inputSchema": t.input_schema});
                if !t.description.is_empty() {
                    tool["description"] = json!(t.description);
                }
                tool["_meta"] = json!({"dev.toolmesh/capability": t.capability, "dev.toolmesh/version": t.version, "dev.toolmesh/tags": t.tags});
                tool
            })
            .collect();
        Ok(json!({ "tools": tools }))
    }

    async fn tools_call(&self, era: Era, params: &Map<String, Value>, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, "Invalid params: tools/call needs a string 'name'"));
        };
        let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
        let context = Arc::new(self.inbound_context(headers, params));
        tracing::debug!(tool = name, caller = %peer.identity, trace = ?context.trace.as_ref().map(|t| &t.trace_id), "tools/call");
        match self.tools.invoke(name, arguments, context).await {
            Ok(value) => Ok(tool_result(era, value)),
            Err(e) if e.kind() == ErrorKind::UnknownTool => Err(RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, e.message())
                .with_data(error_meta(&e))),
            Err(e) => Ok(json!({
                "content": [{"type": "text", "text": e.message()}],
                "isError": true,
                "_meta": { META_ERROR: error_meta(&e) },
            })),
        }
    }

    /// The context a handler runs in: allow-listed headers, a new span of the caller's trace
    /// (or a new trace), and the caller's remaining time budget.
    fn inbound_context(&self, headers: &HeaderMap, params: &Map<String, Value>) -> RequestContext {
        let meta = params.get("_meta").and_then(Value::as_object);
        let meta_str = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
        let header_str = |key: &str| headers.get(key).and_then(|v| v.to_str().ok());
        let parent = match meta_str("traceparent") {
            Some(tp) => TraceContext::parse(tp, meta_str("tracestate")),
            None => header_str("traceparent").and_then(|tp| TraceContext::parse(tp, header_str("tracestate"))),
        };
        let trace = parent.map(|p| p.child()).unwrap_or_else(TraceContext::new_root);
        let deadline = meta
            .and_then(|m| m.get(META_DEADLINE_MS))
            .and_then(Value::as_u64)
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        let headers = self.propagate.capture(headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))));
        RequestContext { headers, trace: Some(trace), deadline }
    }
}

fn error_meta(e: &Error) -> Value {
    json!({"code": e.code(), "name": e.kind().name(), "message": e.message()})
}

/// A tool's return value as an MCP result: `structuredContent` plus a text rendering. Legacy
/// revisions require `structuredContent` to be an object, so other values are wrapped.
fn tool_result(era: Era, value: Value) -> Value {
    let text = match &value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let structured = match (era, value) {
        (Era::Legacy, v @ Value::Object(_)) | (Era::Modern, v) => v,
        (Era::Legacy, v) => json!({ "result": v }),
    };
    json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": false})
}

fn era_of(method: &str, headers: &HeaderMap, params: &Map<String, Value>) -> Result<Era, RpcError> {
    if method == "initialize" {
        return Ok(Era::Legacy);
    }
    let has_meta_version = params.get("_meta").and_then(|m| m.get(META_PROTOCOL_VERSION)).is_some();
    match headers.get(HEADER_PROTOCOL_VERSION).map(|v| v.to_str().map(str::trim)) {
        _ if has_meta_version => Ok(Era::Modern),
        None => Ok(Era::Legacy),
        Some(Ok(v)) if LEGACY_VERSIONS.contains(&v) => Ok(Era::Legacy),
        // Any other version claims the modern era, whose requests must carry _meta.
        Some(_) => Ok(Era::Modern),
    }
}

/// SEP-2243 header validation and the required `_meta` keys of a modern request.
fn check_modern_request(method: &str, headers: &HeaderMap, params: &Map<String, Value>) -> Result<(), RpcError> {
    let meta = params.get("_meta").and_then(Value::as_object);
    let Some(version) = meta.and_then(|m| m.get(META_PROTOCOL_VERSION)).and_then(Value::as_str) else {
        return Err(RpcError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            format!("Invalid params: missing _meta[\"{META_PROTOCOL_VERSION}\"]"),
        ));
    };
    if version != MODERN_VERSION {
        let supported: Vec<&str> = std::iter::once(MODERN_VERSION).chain(LEGACY_VERSIONS.iter().copied()).collect();
        return Err(RpcError::new(StatusCode::BAD_REQUEST, codes::UNSUPPORTED_VERSION, format!("Unsupported protocol version: {version}"))
            .with_data(json!({"supported": supported, "requested": version})));
    }
    if !meta.is_some_and(|m| m.get(META_CLIENT_CAPABILITIES).is_some_and(Value::is_object)) {
        return Err(RpcError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            format!("Invalid params: missing _meta[\"{META_CLIENT_CAPABILITIES}\"]"),
        ));
    }
    expect_header(headers, HEADER_PROTOCOL_VERSION, version)?;
    expect_header(headers, HEADER_METHOD, method)?;
    if method == "tools/call" {
        if let Some(name) = params.get("name").and_then(Value::as_str) {
            expect_header(headers, HEADER_NAME, name)?;
        }
    }
    Ok(())
}

fn expect_header(headers: &HeaderMap, name: &str, expected: &str) -> Result<(), RpcError> {
    let mismatch = |what: String| RpcError::new(StatusCode::BAD_REQUEST, codes::HEADER_MISMATCH, format!("Header mismatch: {what}"));
    let Some(raw) = headers.get(name) else {
        return Err(mismatch(format!("missing {name} header (expected '{expected}')")));
    };
    let value = raw.to_str().ok().and_then(decode_header_value).ok_or_else(|| mismatch(format!("{name} header is not valid")))?;
    if value != expected {
        return Err(mismatch(format!("{name} header '{value}' does not match the body ('{expected}')")));
    }
    Ok(())
}

/// Origin, Accept and Content-Type rules shared by both eras.
fn check_http_headers(headers: &HeaderMap) -> Option<RpcError> {
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !is_loopback_origin(origin) {
            return Some(RpcError::new(StatusCode::FORBIDDEN, codes::INVALID_REQUEST, format!("Invalid Origin header: {origin}")));
        }
    }
    if let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let accepts_json = accept.split(',').map(|t| t.split(';').next().unwrap_or("").trim()).any(|t| {
            t.eq_ignore_ascii_case("application/json") || t == "*/*" || t.eq_ignore_ascii_case("application/*")
        });
        if !accepts_json {
            return Some(RpcError::new(
                StatusCode::NOT_ACCEPTABLE,
                codes::INVALID_REQUEST,
                "Not Acceptable: the client must accept application/json and text/event-stream",
            ));
        }
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Some(RpcError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    None
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    let host = if rest.starts_with('[') {
        rest.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or("").to_owned()
    };
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

fn accepted() -> Response<Body> {
    Response::builder().status(StatusCode::ACCEPTED).body(Full::new(Bytes::new())).expect("static response")
}

fn json_ok(id: Value, result: Value) -> Response<Body> {
    crate::server::json_response(StatusCode::OK, &json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn rpc_error(id: Value, e: RpcError) -> Response<Body> {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(data) = e.data {
        error["data"] = data;
    }
    crate::server::json_response(e.status, &json!({"jsonrpc": "2.0", "id": id, "error": error}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_only() {
        assert!(is_loopback_origin("http://127.0.0.1:8080"));
        assert!(is_loopback_origin("https://localhost"));
        assert!(is_loopback_origin("http://[::1]:9"));
        assert!(!is_loopback_origin("https://evil.example"));
        assert!(!is_loopback_origin("http://localhost.evil.example"));
        assert!(!is_loopback_origin("null"));
    }

    #[test]
    fn era_follows_meta_then_header() {
        let mut h = HeaderMap::new();
        let no_meta = Map::new();
        assert!(matches!(era_of("tools/list", &h, &no_meta), Ok(Era::Legacy)));
        assert!(matches!(era_of("initialize", &h, &no_meta), Ok(Era::Legacy)));
        h.insert(HEADER_PROTOCOL_VERSION, "2025-06-18".parse().unwrap());
        assert!(matches!(era_of("tools/list", &h, &no_meta), Ok(Era::Legacy)));
        h.insert(HEADER_PROTOCOL_VERSION, "bogus".parse().unwrap());
        assert!(matches!(era_of("tools/list", &h, &no_meta), Ok(Era::Modern)));
        let with_meta = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}}).as_object().unwrap().clone();
        assert!(matches!(era_of("tools/list", &HeaderMap::new(), &with_meta), Ok(Era::Modern)));
    }

    #[test]
    fn legacy_results_wrap_non_objects() {
        assert_eq!(tool_result(Era::Legacy, json!(5))["structuredContent"], json!({"result": 5}));
        assert_eq!(tool_result(Era::Modern, json!(5))["structuredContent"], json!(5));
        assert_eq!(tool_result(Era::Legacy, json!({"a": 1}))["structuredContent"], json!({"a": 1}));
        assert_eq!(tool_result(Era::Modern, json!("hi"))["content"][0]["text"], json!("hi"));
    }
}
