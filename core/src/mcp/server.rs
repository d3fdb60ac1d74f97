//! The `/mcp` endpoint: modern (2026-07-28) requests are validated and answered statelessly;
//! legacy (2025-03-26 … 2025-11-25) requests are served statelessly too, with no session.
//!
//! A request is read into typed structs that borrow from the body, and `tools/call` (the hot
//! path) is answered from typed structs too: per call, the only `Value` trees are the arguments
//! (the schema check and the handler take one) and the handler's answer.

use super::*;
use crate::authorize::{Caller, Gate};
use crate::context::{HeaderAllowList, RequestContext, TraceContext};
use crate::error::{Error, ErrorKind};
use crate::host::LocalTools;
use crate::server::{read_body, Body, PeerInfo};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::de::{value::MapAccessDeserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// Serves one agent's tools over MCP.
pub struct McpServer {
    info: ServerInfo,
    /// `info` serialized once: every modern `tools/call` result carries it.
    info_json: Box<RawValue>,
    tools: Arc<LocalTools>,
    propagate: HeaderAllowList,
    gate: Arc<Gate>,
}

/// A JSON-RPC error on its way out (serialized as the response's `error`), with the HTTP status
/// it travels with.
#[derive(Serialize)]
struct RpcError {
    #[serde(skip)]
    status: StatusCode,
    code: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
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

    fn invalid_request(what: &str) -> Self {
        RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, format!("Invalid Request: {what}"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Modern,
    Legacy,
}

impl McpServer {
    /// Serves `tools`, each request decided by `gate` first.
    pub fn new(info: ServerInfo, tools: Arc<LocalTools>, propagate: HeaderAllowList, gate: Arc<Gate>) -> Self {
        let info_json = serde_json::value::to_raw_value(&info).expect("two strings always serialize");
        McpServer { info, info_json, tools, propagate, gate }
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
            return rpc_error(RawValue::NULL, e);
        }
        let body = match read_body(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        self.handle_message(&parts.headers, &body, &peer).await
    }

    /// Answers one message whose body is read: what [`McpServer::handle`] does once the path,
    /// method, HTTP headers and body size passed. Any bytes get an answer, never a panic: a JSON-RPC
    /// error for a body that is not a request (`core/tests/fuzz_mcp_reader.rs` holds it to that).
    pub async fn handle_message(&self, headers: &HeaderMap, body: &[u8], peer: &PeerInfo) -> Response<Body> {
        let Request { id, method, params } = match read_request(body) {
            Ok(Some(request)) => request,
            Ok(None) => return accepted(),
            Err(e) => return rpc_error(RawValue::NULL, e),
        };
        let params = match params {
            None => Params::default(),
            Some(ObjectOr::Object(params)) => params,
            Some(_) => {
                return rpc_error(id, RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, "Invalid params: params must be an object"))
            }
        };
        let era = era_of(&method, headers, params.meta());
        if era == Era::Modern {
            if let Err(e) = check_modern_request(&method, headers, &params) {
                return rpc_error(id, e);
            }
        }
        if method == "tools/call" {
            return self.tools_call(era, id, params, headers, peer).await;
        }
        let outcome = match era {
            Era::Modern => self.modern(&method, &params, headers, peer),
            Era::Legacy => self.legacy(&method, &params, headers, peer),
        };
        match outcome {
            Ok(result) => json_ok(id, &result),
            Err(e) => rpc_error(id, e),
        }
    }

    /// The modern methods but `tools/call`, once the request is validated.
    fn modern(&self, method: &str, params: &Params, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        let mut result = match method {
            "server/discover" => json!({
                "supportedVersions": supported_versions(),
                "capabilities": {"tools": {"listChanged": false}},
                "ttlMs": 0,
                "cacheScope": "private",
            }),
            "tools/list" => {
                let mut list = self.tools_list(params, headers, peer)?;
                list["ttlMs"] = json!(0);
                list["cacheScope"] = json!("private");
                list
            }
            other => {
                return Err(RpcError::new(StatusCode::NOT_FOUND, codes::METHOD_NOT_FOUND, "Method not found").with_data(json!(other)))
            }
        };
        result["resultType"] = json!("complete");
        result["_meta"] = json!({ META_SERVER_INFO: self.info });
        Ok(result)
    }

    /// The legacy methods but `tools/call`.
    fn legacy(&self, method: &str, params: &Params, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                let requested = params.protocol_version.and_then(Raw::as_str);
                let requested = requested.as_deref().unwrap_or(DEFAULT_LEGACY_VERSION);
                let version = if LEGACY_VERSIONS.contains(&requested) { requested } else { LEGACY_VERSIONS[0] };
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": self.info,
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => self.tools_list(params, headers, peer),
            other => Err(RpcError::new(StatusCode::OK, codes::METHOD_NOT_FOUND, "Method not found").with_data(json!(other))),
        }
    }

    /// The tools the caller may see (policy's `discover` phase): the same rules that decide its
    /// calls, so a listed tool is one it may call unless a rule says otherwise.
    fn tools_list(&self, params: &Params, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        if params.cursor.is_some() {
            return Err(RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, "Invalid params: unknown cursor (this server never paginates)"));
        }
        let caller = self.caller(headers, peer).map_err(|e| {
            RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, e.message()).with_data(json!(ErrorMeta::of(&e)))
        })?;
        let policy = self.gate.policy();
        let tools: Vec<Value> = self
            .tools
            .tools()
            .iter()
            .filter(|t| self.gate.may_list(&policy, &caller, t))
            .map(|t| {
                let mut tool = json!({"name": t.name, "inputSchema": t.input_schema});
                if !t.description.is_empty() {
                    tool["description"] = json!(t.description);
                }
                if !t.annotations.is_empty() {
                    tool["annotations"] = json!(t.annotations);
                }
                tool["_meta"] = json!({"dev.toolmesh/capability": t.capability, "dev.toolmesh/version": t.version, "dev.toolmesh/tags": t.tags});
                tool
            })
            .collect();
        Ok(json!({ "tools": tools }))
    }

    /// `tools/call` in either era (a modern request is validated already).
    async fn tools_call(&self, era: Era, id: &RawValue, params: Params<'_>, headers: &HeaderMap, peer: &PeerInfo) -> Response<Body> {
        let Some(name) = params.name.and_then(Raw::as_str) else {
            return rpc_error(id, RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, "Invalid params: tools/call needs a string 'name'"));
        };
        let admitted = match (self.caller(headers, peer), self.tools.get(&name)) {
            (Err(e), _) => return self.call_result(era, id, e.message(), None, Some(ErrorMeta::of(&e))),
            (Ok(caller), Some(tool)) => match self.gate.admit_call(caller, tool) {
                Ok(admitted) => Some(admitted),
                Err(e) => return self.call_result(era, id, e.message(), None, Some(ErrorMeta::of(&e))),
            },
            // An unknown tool is answered as such below.
            (Ok(_), None) => None,
        };
        let mut context = self.inbound_context(headers, params.meta());
        context.caller = Some(Arc::from(peer.identity.as_str()));
        context.origin = admitted.as_ref().and_then(|a| a.origin.clone());
        let context = Arc::new(context);
        tracing::debug!(tool = %name, caller = %peer.identity, trace = ?context.trace.as_ref().map(|t| &t.trace_id), "tools/call");
        let outcome = self.tools.invoke(&name, params.arguments.unwrap_or(Value::Null), context).await;
        // Holds the call's place in a concurrency limit until the handler has answered.
        drop(admitted);
        match outcome {
            Ok(value) => {
                // Serialized once: it is both the `structuredContent` and, unless the value is a
                // string, the text rendering.
                let json = serde_json::value::to_raw_value(&value).expect("a Value always serializes");
                let text = match &value {
                    Value::String(s) => s.as_str(),
                    _ => json.get(),
                };
                self.call_result(era, id, text, Some(Structured::of(era, &value, &json)), None)
            }
            Err(e) if e.kind() == ErrorKind::UnknownTool => {
                rpc_error(id, RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, e.message()).with_data(json!(ErrorMeta::of(&e))))
            }
            Err(e) => match e.app_code() {
                // A tool's own error: a client that does not read toolmesh's `_meta` still sees
                // its code, in the text and (with its data) as `structuredContent`.
                Some(app_code) => {
                    let text = format!("{app_code}: {}", e.message());
                    let structured = Structured::ToolError { error: ToolErrorContent { code: app_code, message: e.message(), data: e.data() } };
                    self.call_result(era, id, &text, Some(structured), Some(ErrorMeta::of(&e)))
                }
                None => self.call_result(era, id, e.message(), None, Some(ErrorMeta::of(&e))),
            },
        }
    }

    /// Answers a `tools/call` with its result; a modern one carries `resultType` and the server's
    /// `serverInfo`.
    fn call_result(&self, era: Era, id: &RawValue, text: &str, structured: Option<Structured>, error: Option<ErrorMeta>) -> Response<Body> {
        let modern = era == Era::Modern;
        let result = CallResult {
            content: [TextContent { kind: "text", text }],
            structured,
            is_error: error.is_some(),
            result_type: modern.then_some("complete"),
            meta: ResultMeta { server_info: modern.then_some(&*self.info_json), error },
        };
        json_ok(id, &result)
    }

    /// Who is calling: the mTLS peer, and the origin chain it sent (verified).
    fn caller<'p>(&self, headers: &HeaderMap, peer: &'p PeerInfo) -> Result<Caller<'p>, Error> {
        let header = match headers.get(crate::origin::HEADER).map(|v| v.to_str()) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => return Err(Error::new(ErrorKind::OriginRejected, format!("the {} header is not ASCII", crate::origin::HEADER))),
        };
        self.gate.caller(peer, header)
    }

    /// The context a handler runs in: allow-listed headers, a new span of the caller's trace
    /// (or a new trace), and the caller's remaining time budget.
    fn inbound_context(&self, headers: &HeaderMap, meta: Option<&RequestMeta>) -> RequestContext {
        let header_str = |key: &str| headers.get(key).and_then(|v| v.to_str().ok());
        let parent = match meta.and_then(|m| m.traceparent).and_then(Raw::as_str) {
            Some(tp) => TraceContext::parse(&tp, meta.and_then(|m| m.tracestate).and_then(Raw::as_str).as_deref()),
            None => header_str("traceparent").and_then(|tp| TraceContext::parse(tp, header_str("tracestate"))),
        };
        let trace = parent.map(|p| p.child()).unwrap_or_else(TraceContext::new_root);
        let deadline = meta
            .and_then(|m| m.deadline_ms)
            .and_then(Raw::as_u64)
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        let (headers, hop_only) = self.propagate.capture_inbound(headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))));
        RequestContext { headers, hop_only, trace: Some(trace), deadline, ..RequestContext::default() }
    }
}

fn supported_versions() -> Vec<&'static str> {
    std::iter::once(MODERN_VERSION).chain(LEGACY_VERSIONS.iter().copied()).collect()
}

// ---- Reading a request ----------------------------------------------------------------------
//
// Members are read leniently: one of an unexpected type is kept (and then reads as absent, as
// `Value::as_str` and co. made it), never a deserialization error, so it is answered with the
// protocol's error for it (Invalid Request, Invalid params) and only malformed JSON is a parse
// error. Unlike a `Value`, which let the last one win, a member read here that appears twice is
// a parse error; members not read here (`clientInfo`, …) are checked for JSON syntax only.

/// A request to answer.
struct Request<'a> {
    /// A string or a number, echoed verbatim.
    id: &'a RawValue,
    method: Cow<'a, str>,
    params: Option<ObjectOr<Params<'a>>>,
}

/// Reads and checks a JSON-RPC message: `Ok(None)` for one that gets no answer (a notification,
/// or a response a stateless server has nothing to match with).
fn read_request(body: &[u8]) -> Result<Option<Request<'_>>, RpcError> {
    // One UTF-8 check of the whole body costs less than serde_json's check of every string. A
    // body that fails it is read as bytes, only for serde_json's own error message.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<ObjectOr<Envelope>>(text),
        Err(_) => serde_json::from_slice(body),
    };
    let envelope = match parsed {
        Ok(ObjectOr::Object(envelope)) => envelope,
        Ok(ObjectOr::Array) => return Err(RpcError::invalid_request("JSON-RPC batches are not supported")),
        Ok(ObjectOr::Other) => return Err(RpcError::invalid_request("the body must be a JSON-RPC object")),
        Err(e) => return Err(RpcError::new(StatusCode::BAD_REQUEST, codes::PARSE_ERROR, format!("Parse error: {e}"))),
    };
    if envelope.jsonrpc.and_then(Raw::as_str).as_deref() != Some("2.0") {
        return Err(RpcError::invalid_request("jsonrpc must be \"2.0\""));
    }
    let Some(method) = envelope.method.and_then(Raw::as_str) else {
        // A response or a malformed message: a stateless server has nothing to match it with.
        return if envelope.result.is_some() || envelope.error.is_some() { Ok(None) } else { Err(RpcError::invalid_request("no method")) };
    };
    let Some(id) = envelope.id else {
        return Ok(None); // a notification
    };
    if !id.is_string_or_number() {
        return Err(RpcError::invalid_request("id must be a string or an integer"));
    }
    Ok(Some(Request { id: id.0, method, params: envelope.params }))
}

/// A JSON-RPC message: the members the server reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Raw<'a>>,
    #[serde(borrow, default)]
    method: Option<Raw<'a>>,
    /// Absent makes a notification; `null` is an invalid id.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<Raw<'a>>,
    #[serde(borrow, default)]
    params: Option<ObjectOr<Params<'a>>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<IgnoredAny>,
    #[serde(default, deserialize_with = "present")]
    error: Option<IgnoredAny>,
}

/// The `params` members the methods read.
#[derive(Deserialize, Default)]
struct Params<'a> {
    /// `tools/call`.
    #[serde(borrow, default)]
    name: Option<Raw<'a>>,
    /// `tools/call`; `null` is the same as absent.
    #[serde(default)]
    arguments: Option<Value>,
    /// `tools/list`; anything but `null` is refused, as this server never paginates.
    #[serde(default)]
    cursor: Option<IgnoredAny>,
    /// `initialize`.
    #[serde(rename = "protocolVersion", borrow, default)]
    protocol_version: Option<Raw<'a>>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<ObjectOr<RequestMeta<'a>>>,
}

impl<'a> Params<'a> {
    fn meta(&self) -> Option<&RequestMeta<'a>> {
        match &self.meta {
            Some(ObjectOr::Object(meta)) => Some(meta),
            _ => None,
        }
    }
}

/// The per-request `_meta` members read here (key names as in [`super::META_PROTOCOL_VERSION`] etc.).
#[derive(Deserialize)]
struct RequestMeta<'a> {
    /// Present at all, even `null`, it marks a modern request.
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default, deserialize_with = "present")]
    protocol_version: Option<Raw<'a>>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", borrow, default)]
    client_capabilities: Option<Raw<'a>>,
    #[serde(borrow, default)]
    traceparent: Option<Raw<'a>>,
    #[serde(borrow, default)]
    tracestate: Option<Raw<'a>>,
    #[serde(rename = "dev.toolmesh/deadlineMs", borrow, default)]
    deadline_ms: Option<Raw<'a>>,
}

/// A member kept as its JSON text, read only as far as the server needs it.
#[derive(Deserialize, Clone, Copy)]
#[serde(transparent)]
struct Raw<'a>(#[serde(borrow)] &'a RawValue);

impl<'a> Raw<'a> {
    /// The member as a string, or `None` when it is not one.
    fn as_str(self) -> Option<Cow<'a, str>> {
        let json = self.0.get();
        match json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            // Without escapes, the text between the quotes is the string.
            Some(plain) if !plain.contains('\\') => Some(Cow::Borrowed(plain)),
            Some(_) => serde_json::from_str(json).ok().map(Cow::Owned),
            None => None,
        }
    }

    fn as_u64(self) -> Option<u64> {
        serde_json::from_str::<Value>(self.0.get()).ok()?.as_u64()
    }

    fn is_object(self) -> bool {
        self.0.get().starts_with('{')
    }

    fn is_string_or_number(self) -> bool {
        matches!(self.0.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
    }
}

/// For a member whose `null` must not read as its absence (a bare `Option` reads both as `None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A value read only when it is an object; any other value is skipped and noted by kind.
enum ObjectOr<T> {
    Object(T),
    Array,
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectOrVisitor(PhantomData))
    }
}

struct ObjectOrVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOrVisitor<T> {
    type Value = ObjectOr<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOr::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ObjectOr::Array)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }
}

// ---- Writing an answer ----------------------------------------------------------------------

#[derive(Serialize)]
struct Success<'a, R> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: &'a R,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    error: &'a RpcError,
}

#[derive(Serialize)]
struct CallResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "structuredContent", skip_serializing_if = "Option::is_none")]
    structured: Option<Structured<'a>>,
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
    #[serde(rename = "_meta", skip_serializing_if = "ResultMeta::is_empty")]
    meta: ResultMeta<'a>,
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// A tool's value as `structuredContent`. Legacy revisions require an object there, so other
/// values are wrapped.
#[derive(Serialize)]
#[serde(untagged)]
enum Structured<'a> {
    AsIs(&'a RawValue),
    Wrapped { result: &'a RawValue },
    /// The `structuredContent` of a tool error: `{"error": {"code", "message", "data"?}}`.
    ToolError { error: ToolErrorContent<'a> },
}

#[derive(Serialize)]
struct ToolErrorContent<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

impl<'a> Structured<'a> {
    fn of(era: Era, value: &Value, json: &'a RawValue) -> Self {
        match era {
            Era::Legacy if !value.is_object() => Structured::Wrapped { result: json },
            _ => Structured::AsIs(json),
        }
    }
}

#[derive(Serialize)]
struct ResultMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/serverInfo", skip_serializing_if = "Option::is_none")]
    server_info: Option<&'a RawValue>,
    #[serde(rename = "dev.toolmesh/error", skip_serializing_if = "Option::is_none")]
    error: Option<ErrorMeta<'a>>,
}

impl ResultMeta<'_> {
    fn is_empty(&self) -> bool {
        self.server_info.is_none() && self.error.is_none()
    }
}

/// The mesh error behind an `isError` result or an unknown tool (the `META_ERROR` extension).
#[derive(Serialize)]
struct ErrorMeta<'a> {
    code: u32,
    name: &'static str,
    message: &'a str,
    /// A tool error's application code and data.
    #[serde(rename = "appCode", skip_serializing_if = "Option::is_none")]
    app_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

impl<'a> ErrorMeta<'a> {
    fn of(e: &'a Error) -> Self {
        ErrorMeta { code: e.code(), name: e.kind().name(), message: e.message(), app_code: e.app_code(), data: e.data() }
    }
}

fn era_of(method: &str, headers: &HeaderMap, meta: Option<&RequestMeta>) -> Era {
    if method == "initialize" {
        return Era::Legacy;
    }
    if meta.is_some_and(|m| m.protocol_version.is_some()) {
        return Era::Modern;
    }
    match headers.get(HEADER_PROTOCOL_VERSION).map(|v| v.to_str().map(str::trim)) {
        None => Era::Legacy,
        Some(Ok(v)) if LEGACY_VERSIONS.contains(&v) => Era::Legacy,
        // Any other version claims the modern era, whose requests must carry _meta.
        Some(_) => Era::Modern,
    }
}

/// SEP-2243 header validation and the required `_meta` keys of a modern request.
fn check_modern_request(method: &str, headers: &HeaderMap, params: &Params) -> Result<(), RpcError> {
    let meta = params.meta();
    let Some(version) = meta.and_then(|m| m.protocol_version).and_then(Raw::as_str) else {
        return Err(RpcError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            format!("Invalid params: missing _meta[\"{META_PROTOCOL_VERSION}\"]"),
        ));
    };
    if version != MODERN_VERSION {
        return Err(RpcError::new(StatusCode::BAD_REQUEST, codes::UNSUPPORTED_VERSION, format!("Unsupported protocol version: {version}"))
            .with_data(json!({"supported": supported_versions(), "requested": version})));
    }
    if !meta.and_then(|m| m.client_capabilities).is_some_and(Raw::is_object) {
        return Err(RpcError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            format!("Invalid params: missing _meta[\"{META_CLIENT_CAPABILITIES}\"]"),
        ));
    }
    expect_header(headers, HEADER_PROTOCOL_VERSION, &version)?;
    expect_header(headers, HEADER_METHOD, method)?;
    if method == "tools/call" {
        if let Some(name) = params.name.and_then(Raw::as_str) {
            expect_header(headers, HEADER_NAME, &name)?;
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
///
/// There is no `Host` allow-list (§7.3 asks for one on loopback listeners, against DNS rebinding):
/// this endpoint only speaks mTLS, and a browser led to it under a rebound name fails the TLS
/// handshake, as the agent's certificate names no attacker's domain and the browser does not trust
/// the mesh CA. Agents are reached by IPs, service names and load-balancer names that the agent
/// cannot list, so an allow-list would only refuse legitimate callers.
fn check_http_headers(headers: &HeaderMap) -> Option<RpcError> {
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !is_loopback_origin(origin) {
            return Some(RpcError::new(StatusCode::FORBIDDEN, codes::INVALID_REQUEST, format!("Invalid Origin header: {origin}")));
        }
    }
    // Like the SDKs (python-sdk answers 406 to `Accept: application/json` alone, and to none):
    // the client must be ready for either kind of answer.
    let accept = headers.get_all(http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok());
    let (mut json, mut sse) = (false, false);
    for range in accept.flat_map(|v| v.split(',')) {
        let (json_ok, sse_ok) = accepts(range);
        json |= json_ok;
        sse |= sse_ok;
    }
    if !(json && sse) {
        return Some(RpcError::new(
            StatusCode::NOT_ACCEPTABLE,
            codes::INVALID_REQUEST,
            "Not Acceptable: the client must accept both application/json and text/event-stream (send Accept: application/json, text/event-stream)",
        ));
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

/// Whether one media range of an `Accept` header covers application/json and text/event-stream;
/// wildcards count, and `q=0` means "not acceptable".
fn accepts(range: &str) -> (bool, bool) {
    let mut parts = range.split(';');
    let media = parts.next().unwrap_or("").trim();
    let refused = parts.any(|p| {
        let p = p.trim();
        p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
    });
    if refused {
        return (false, false);
    }
    let is = |t: &str| media.eq_ignore_ascii_case(t);
    (is("application/json") || is("application/*") || is("*/*"), is("text/event-stream") || is("text/*") || is("*/*"))
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

fn json_ok(id: &RawValue, result: &impl Serialize) -> Response<Body> {
    crate::server::json_response(StatusCode::OK, &Success { jsonrpc: "2.0", id, result })
}

fn rpc_error(id: &RawValue, e: RpcError) -> Response<Body> {
    crate::server::json_response(e.status, &Failure { jsonrpc: "2.0", id, error: &e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Completion, FnHandler, ToolInvocation};
    use crate::registry_api::ToolInfo;
    use http_body_util::BodyExt;

    fn tool(name: &str, input_schema: Value) -> ToolInfo {
        ToolInfo {
            name: name.into(),
            capability: name.into(),
            version: "1.0.0".into(),
            tags: vec![],
            description: String::new(),
            input_schema,
            dependencies: vec![],
            timeout_ms: None,
            annotations: Default::default(),
        }
    }

    /// `add` (a + b), `echo` (its arguments), `context` (what the handler's context holds), `fail`.
    fn server() -> McpServer {
        let ab = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]});
        let any = json!({"type": "object"});
        let tools = vec![tool("add", ab), tool("echo", any.clone()), tool("context", any.clone()), tool("fail", any)];
        let handler = FnHandler(|call: ToolInvocation, done: Completion| match call.tool.as_str() {
            "add" => done.ok(json!(call.arguments["a"].as_i64().unwrap() + call.arguments["b"].as_i64().unwrap())),
            "echo" => done.ok(call.arguments),
            "context" => done.ok(json!({
                "trace_id": call.context.trace.as_ref().map(|t| t.trace_id.clone()),
                "has_deadline": call.context.deadline.is_some(),
            })),
            _ => done.err("boom"),
        });
        let info = ServerInfo { name: "srv".into(), version: "9.9".into() };
        let gate = Arc::new(Gate::new(test_identity(), "srv", crate::policy::Policy::allow_mesh()));
        McpServer::new(info, Arc::new(LocalTools::new(tools, Arc::new(handler))), HeaderAllowList::default(), gate)
    }

    /// One mesh identity for every server of these tests (key generation is not free).
    fn test_identity() -> Arc<crate::tls::Identity> {
        use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
        static IDENTITY: std::sync::OnceLock<Arc<crate::tls::Identity>> = std::sync::OnceLock::new();
        IDENTITY
            .get_or_init(|| {
                let ca = CertificateAuthority::generate("mcp server test CA", 1).unwrap();
                let issued = ca.issue(&LeafRequest::new("srv", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).unwrap();
                crate::tls::Identity::from_pem(&issued.cert_pem, &issued.key_pem, ca.cert_pem()).unwrap()
            })
            .clone()
    }

    /// Posts `body` to the server with `headers`; the HTTP status and the raw response body.
    async fn post(server: &McpServer, headers: &[(&'static str, &str)], body: impl AsRef<[u8]>) -> (u16, String) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let peer = PeerInfo { identity: "test".into(), remote: "127.0.0.1:1".parse().unwrap(), chain: vec![] };
        let response = server.handle_message(&map, body.as_ref(), &peer).await;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Like [`post`], with the answer parsed.
    async fn answer(server: &McpServer, headers: &[(&'static str, &str)], body: &str) -> (u16, Value) {
        let (status, text) = post(server, headers, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    const MODERN_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    fn modern_call_headers(name: &str) -> [(&'static str, &str); 3] {
        [(HEADER_PROTOCOL_VERSION, MODERN_VERSION), (HEADER_METHOD, "tools/call"), (HEADER_NAME, name)]
    }

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
    fn accept_must_cover_json_and_sse_and_content_type_must_be_json() {
        let status = |accept: Option<&str>, content_type: &str| {
            let mut h = HeaderMap::new();
            if let Some(accept) = accept {
                h.insert(http::header::ACCEPT, accept.parse().unwrap());
            }
            h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
            check_http_headers(&h).map_or(200, |e| e.status.as_u16())
        };
        for ok in ["application/json, text/event-stream", "text/event-stream;q=0.5,APPLICATION/JSON", "*/*", "application/*, text/*", "application/json, */*;q=0.1"] {
            assert_eq!(status(Some(ok), "application/json"), 200, "{ok}");
        }
        for bad in ["application/json", "text/event-stream", "", "text/html", "application/json, text/event-stream;q=0", "*/*;q=0"] {
            assert_eq!(status(Some(bad), "application/json"), 406, "{bad}");
        }
        assert_eq!(status(None, "application/json"), 406);
        // Both types may come in separate Accept headers.
        let mut h = HeaderMap::new();
        h.append(http::header::ACCEPT, "application/json".parse().unwrap());
        h.append(http::header::ACCEPT, "text/event-stream".parse().unwrap());
        h.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(check_http_headers(&h).is_none());
        assert_eq!(status(Some("*/*"), "application/json; charset=utf-8"), 200);
        assert_eq!(status(Some("*/*"), "text/plain"), 415);
        assert_eq!(status(Some("*/*"), ""), 415);
    }

    #[test]
    fn era_follows_meta_then_header() {
        fn meta(body: &str) -> RequestMeta<'_> {
            serde_json::from_str(body).unwrap()
        }
        let mut h = HeaderMap::new();
        assert_eq!(era_of("tools/list", &h, None), Era::Legacy);
        assert_eq!(era_of("initialize", &h, None), Era::Legacy);
        h.insert(HEADER_PROTOCOL_VERSION, "2025-06-18".parse().unwrap());
        assert_eq!(era_of("tools/list", &h, None), Era::Legacy);
        h.insert(HEADER_PROTOCOL_VERSION, "bogus".parse().unwrap());
        assert_eq!(era_of("tools/list", &h, None), Era::Modern);
        let with_version = format!(r#"{{"{META_PROTOCOL_VERSION}":"2026-07-28"}}"#);
        assert_eq!(era_of("tools/list", &HeaderMap::new(), Some(&meta(&with_version))), Era::Modern);
        // Present but null still claims the modern era (and is then refused as missing).
        let null_version = format!(r#"{{"{META_PROTOCOL_VERSION}":null}}"#);
        assert_eq!(era_of("tools/list", &HeaderMap::new(), Some(&meta(&null_version))), Era::Modern);
        assert_eq!(era_of("tools/list", &HeaderMap::new(), Some(&meta("{}"))), Era::Legacy);
    }

    #[test]
    fn the_request_meta_uses_the_protocol_key_names() {
        let body = json!({
            META_PROTOCOL_VERSION: "v",
            META_CLIENT_CAPABILITIES: {},
            META_DEADLINE_MS: 5,
            "traceparent": "tp",
            "tracestate": "ts",
        })
        .to_string();
        let meta: RequestMeta = serde_json::from_str(&body).unwrap();
        assert_eq!(meta.protocol_version.and_then(Raw::as_str).as_deref(), Some("v"));
        assert!(meta.client_capabilities.is_some_and(Raw::is_object));
        assert_eq!(meta.deadline_ms.and_then(Raw::as_u64), Some(5));
        assert_eq!(meta.traceparent.and_then(Raw::as_str).as_deref(), Some("tp"));
        assert_eq!(meta.tracestate.and_then(Raw::as_str).as_deref(), Some("ts"));
    }

    #[test]
    fn raw_members_read_as_their_type_or_not_at_all() {
        let raw = |json: &'static str| Raw(serde_json::from_str::<&RawValue>(json).unwrap());
        assert!(matches!(raw(r#""plain""#).as_str(), Some(Cow::Borrowed("plain"))));
        assert_eq!(raw(r#""a\u0062\"c""#).as_str().as_deref(), Some("ab\"c"));
        assert_eq!(raw("5").as_str(), None);
        assert_eq!(raw("5").as_u64(), Some(5));
        assert_eq!(raw("5.5").as_u64(), None);
        assert_eq!(raw(r#""5""#).as_u64(), None);
        assert!(raw("{}").is_object() && !raw("[]").is_object());
        for id in [r#""x""#, "0", "-1", "1.5e3"] {
            assert!(raw(id).is_string_or_number(), "{id}");
        }
        for id in ["null", "true", "{}", "[]"] {
            assert!(!raw(id).is_string_or_number(), "{id}");
        }
    }

    #[tokio::test]
    async fn ids_are_echoed_verbatim_and_must_be_strings_or_numbers() {
        let s = server();
        for id in ["7", "-1.5e3", r#""a\u0062""#, r#""call-1""#] {
            let (status, text) = post(&s, &[], &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)).await;
            assert_eq!(status, 200);
            assert!(text.contains(&format!(r#""id":{id},"#)), "{text}");
        }
        for id in ["null", "true", "[1]", "{}"] {
            let (status, v) = answer(&s, &[], &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)).await;
            assert_eq!((status, &v["error"]["code"], &v["id"]), (400, &json!(-32600), &Value::Null), "{id}");
            assert_eq!(v["error"]["message"], json!("Invalid Request: id must be a string or an integer"));
        }
        // No id: a notification, which gets no answer.
        let (status, text) = post(&s, &[], r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add"}}"#).await;
        assert_eq!((status, text.as_str()), (202, ""));
    }

    #[tokio::test]
    async fn malformed_envelopes_get_their_json_rpc_errors() {
        let s = server();
        let cases = [
            ("{not json", 400, -32700),
            (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#, 400, -32700),
            ("[]", 400, -32600),
            ("5", 400, -32600),
            (r#"{"jsonrpc":2,"id":1,"method":"ping"}"#, 400, -32600),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, 400, -32600),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, 400, -32600),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#, 400, -32602),
            (r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#, 200, -32601),
        ];
        for (body, status, code) in cases {
            let (s_, v) = answer(&s, &[], body).await;
            assert_eq!((s_, &v["error"]["code"]), (status, &json!(code)), "{body}: {v}");
        }
        let (_, v) = answer(&s, &[], "{not json").await;
        assert_eq!(v["error"]["message"], json!("Parse error: key must be a string at line 1 column 2"));
        // Invalid UTF-8 is a parse error, with serde_json's position of it.
        let (status, text) = post(&s, &[], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffing\"}").await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, &v["error"]["message"]), (400, &json!("Parse error: invalid unicode code point at line 1 column 36")));
        let (_, v) = answer(&s, &[], "[1]").await;
        assert_eq!(v["error"]["message"], json!("Invalid Request: JSON-RPC batches are not supported"));
        let (_, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":"x","method":"ping","params":7}"#).await;
        assert_eq!((&v["id"], &v["error"]["message"]), (&json!("x"), &json!("Invalid params: params must be an object")));
        // A response (even with a null result) is accepted and ignored.
        assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","id":1,"result":null}"#).await.0, 202);
        assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","id":1}"#).await.0, 400);
    }

    #[tokio::test]
    async fn legacy_tool_calls_wrap_non_objects_and_carry_no_modern_members() {
        let s = server();
        let (status, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#).await;
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}, "isError": false}})
        );
        let (_, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":"y"}}}"#).await;
        assert_eq!(v["result"]["structuredContent"], json!({"x": "y"}));
        assert_eq!(v["result"]["content"][0]["text"], json!(r#"{"x":"y"}"#));
    }

    #[tokio::test]
    async fn modern_tool_calls_carry_result_type_and_server_info() {
        let s = server();
        let body = format!(r#"{{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":1}},{MODERN_META}}}}}"#);
        let (status, v) = answer(&s, &modern_call_headers("add"), &body).await;
        assert_eq!(status, 200);
        assert_eq!(
            v["result"],
            json!({"content": [{"type": "text", "text": "2"}], "structuredContent": 2, "isError": false, "resultType": "complete",
                   "_meta": {META_SERVER_INFO: {"name": "srv", "version": "9.9"}}})
        );
        let failed = format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"fail",{MODERN_META}}}}}"#);
        let (_, v) = answer(&s, &modern_call_headers("fail"), &failed).await;
        assert_eq!(v["result"]["isError"], json!(true));
        assert_eq!(v["result"]["content"][0]["text"], json!("tool 'fail' failed: boom"));
        assert_eq!(v["result"]["_meta"][META_ERROR], json!({"code": 6001, "name": "HANDLER_FAILED", "message": "tool 'fail' failed: boom"}));
        assert_eq!(v["result"]["_meta"][META_SERVER_INFO]["name"], json!("srv"));
        assert!(v["result"].get("structuredContent").is_none());
        // An escaped name is the same name, in the body and against the Mcp-Name header.
        let escaped = format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools\/call","params":{{"name":"a\u0064d","arguments":{{"a":1,"b":2}},{MODERN_META}}}}}"#);
        let (status, v) = answer(&s, &modern_call_headers("add"), &escaped).await;
        assert_eq!((status, &v["result"]["structuredContent"]), (200, &json!(3)), "{v}");
        let (status, v) = answer(&s, &modern_call_headers("other"), &body).await;
        assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)));
    }

    #[tokio::test]
    async fn arguments_absent_or_null_are_empty_and_other_values_are_refused() {
        let s = server();
        for arguments in ["", r#","arguments":null"#] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo"{arguments}}}}}"#);
            let (_, v) = answer(&s, &[], &body).await;
            assert_eq!(v["result"]["structuredContent"], json!({}), "{arguments}");
        }
        for arguments in ["[1]", r#""x""#, "5"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{arguments}}}}}"#);
            let (status, v) = answer(&s, &[], &body).await;
            assert_eq!((status, &v["result"]["isError"]), (200, &json!(true)), "{arguments}");
            assert_eq!(v["result"]["_meta"][META_ERROR]["name"], json!("INVALID_ARGUMENTS"));
            assert_eq!(v["result"]["content"][0]["text"], json!("tool 'echo': arguments must be a JSON object"));
        }
        let (_, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#).await;
        assert_eq!(v["result"]["content"][0]["text"], json!("tool 'add': missing required argument(s): b"));
    }

    #[tokio::test]
    async fn a_call_without_a_usable_name_or_tool_is_invalid_params() {
        let s = server();
        for params in ["", r#","params":null"#, r#","params":{}"#, r#","params":{"name":5}"#] {
            let (status, v) = answer(&s, &[], &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call"{params}}}"#)).await;
            assert_eq!((status, &v["error"]["code"]), (200, &json!(-32602)), "{params}");
            assert_eq!(v["error"]["message"], json!("Invalid params: tools/call needs a string 'name'"));
        }
        let (status, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#).await;
        assert_eq!((status, &v["error"]["code"], &v["error"]["message"]), (200, &json!(-32602), &json!("Unknown tool: nope")));
        assert_eq!(v["error"]["data"], json!({"code": 5002, "name": "UNKNOWN_TOOL", "message": "Unknown tool: nope"}));
    }

    #[tokio::test]
    async fn the_caller_trace_and_deadline_reach_the_handler_and_odd_types_are_ignored() {
        let s = server();
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let meta = format!(
            r#""_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}},"traceparent":"00-{trace}-b7ad6b7169203331-01","dev.toolmesh/deadlineMs":5000}}"#
        );
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"context",{meta}}}}}"#);
        let (_, v) = answer(&s, &modern_call_headers("context"), &body).await;
        assert_eq!(v["result"]["structuredContent"], json!({"trace_id": trace, "has_deadline": true}));
        let odd = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"context","_meta":{"traceparent":5,"dev.toolmesh/deadlineMs":"5"}}}"#;
        let (_, v) = answer(&s, &[], odd).await;
        assert_eq!(v["result"]["structuredContent"]["has_deadline"], json!(false));
        assert_ne!(v["result"]["structuredContent"]["trace_id"], json!(trace));
    }

    #[tokio::test]
    async fn modern_requests_need_their_meta() {
        let s = server();
        let headers = [(HEADER_PROTOCOL_VERSION, MODERN_VERSION), (HEADER_METHOD, "tools/list")];
        let (status, v) = answer(&s, &headers, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).await;
        assert_eq!((status, &v["error"]["code"]), (400, &json!(-32602)));
        let no_caps = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":[]}}}"#;
        let (status, v) = answer(&s, &headers, no_caps).await;
        assert_eq!((status, &v["error"]["message"]), (400, &json!(format!("Invalid params: missing _meta[\"{META_CLIENT_CAPABILITIES}\"]"))));
        let (status, v) = answer(&s, &headers, &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{MODERN_META}}}}}"#)).await;
        assert_eq!((status, &v["result"]["resultType"], &v["result"]["tools"][0]["name"]), (200, &json!("complete"), &json!("add")));
    }
}
