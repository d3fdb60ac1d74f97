//! The modern MCP client agents use to call each other's tools.

mod tasks;

pub use tasks::StartedTask;

use super::*;
use crate::client::{HttpsClient, PeerIdentity, RequestError};
use crate::context::{RequestContext, TraceContext, Traceparent, CALLER_HEADERS_HEADER, TRACEPARENT_HEADER};
use crate::error::{Error, ErrorKind};
use crate::mcp::content::{whole_result, ResultShape};
use crate::mcp::input::{relay, InputRequired};
use crate::origin::Origins;
use crate::registry_api::{ParamHeader, Provider};
use crate::report::Notification;
use crate::tls::Identity;
use crate::trace::{Span, SpanKind, Tracer};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct McpClient {
    http: HttpsClient,
    endpoints: Arc<Endpoints>,
    next_id: Arc<AtomicU64>,
    /// Signs the origin chain every call carries.
    origins: Arc<Origins>,
    tracer: Tracer,
}

impl McpClient {
    pub fn new(identity: &Arc<Identity>) -> crate::Result<Self> {
        Self::counting(identity, Arc::default())
    }

    /// [`McpClient::new`], counting its TLS handshakes (and those that failed) in `handshakes`.
    pub fn counting(identity: &Arc<Identity>, handshakes: Arc<crate::metrics::TlsMetrics>) -> crate::Result<Self> {
        Ok(McpClient {
            http: HttpsClient::counting(identity, handshakes)?,
            endpoints: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            origins: Arc::new(Origins::new(identity.clone())),
            tracer: Tracer::default(),
        })
    }

    /// Samples each request's span with `tracer`, and records a client span of those sampled.
    pub fn traced(mut self, tracer: Tracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// Calls `provider`'s tool at its endpoint (`https://host:port/mcp`) and returns its value:
    /// the result's `structuredContent`, else its text (parsed as JSON when it is JSON).
    /// `context` is the caller's: its headers are sent along, and the hop gets a new span of its
    /// trace. The parameters the provider's tool mirrors in headers are sent in them.
    /// `shape` says whether the caller takes that value or the whole result.
    pub async fn call_provider(
        &self,
        provider: &Provider,
        arguments: &Value,
        context: &RequestContext,
        shape: ResultShape,
    ) -> Result<Value, RequestError> {
        let call = ToolCall {
            tool: &provider.tool,
            arguments,
            param_headers: &provider.param_headers,
            shape,
            provider: Some(&provider.agent_id),
            tasks: false,
        };
        self.call(&provider.endpoint, call, context, Some(&provider.agent_name)).await
    }

    /// Calls `tool` at `endpoint` as [`McpClient::call_provider`] does, for a tool whose
    /// parameters are not mirrored in headers.
    pub async fn call_tool(&self, endpoint: &str, tool: &str, arguments: &Value, context: &RequestContext) -> Result<Value, RequestError> {
        let call = ToolCall { tool, arguments, param_headers: &[], shape: ResultShape::Value, provider: None, tasks: false };
        self.call(endpoint, call, context, None).await
    }

    /// A call with a context that carries an observer ([`RequestContext::on_notification`]) asks
    /// the callee for progress (a progress token) and log messages (from `debug` up), and hands
    /// the observer each one as it arrives on the answer's event stream. A tool that runs only as
    /// a task is called again as one and followed to its end (`client/tasks.rs`).
    async fn call(&self, endpoint: &str, call: ToolCall<'_>, context: &RequestContext, peer: Option<&str>) -> Result<Value, RequestError> {
        let (tool, shape, provider) = (call.tool, call.shape, call.provider);
        let (hop, mut span) = self.hop("tools/call", Some(tool), endpoint, context, peer);
        let mut answer = self.post(endpoint, "tools/call", Some(call), context, &hop).await;
        // Only a call that declared the extension can be answered with a task: the others'
        // answers are not searched for one.
        let declared_tasks = answer.as_ref().is_ok_and(tasks::needs_tasks);
        if declared_tasks {
            answer = self.post(endpoint, "tools/call", Some(ToolCall { tasks: true, ..call }), context, &hop).await;
        }
        let result = match answer {
            Ok(response) => {
                answered_by(span.as_mut(), &response);
                match declared_tasks.then(|| tasks::created_task(&response)).flatten() {
                    Some(task) => self.follow_task(endpoint, (tool, shape), task, &hop).await,
                    None => match decode_call_response(tool, endpoint, response, shape) {
                        Ok(Decoded::Value(value)) => Ok(value),
                        Ok(Decoded::InputRequired(input)) => Err(relay::asked_for_input(tool, endpoint, provider, input, context)),
                        Err(error) => Err(error),
                    }
                    .map_err(|error| RequestError { error, delivered: true }),
                }
            }
            Err(e) => Err(e),
        };
        ended(span.as_mut(), result.as_ref().err());
        result
    }

    /// The span of one request to `endpoint`: a new span of the caller's trace (or a new trace),
    /// sent as the parent in the request's `traceparent`, and its client span when recorded.
    fn hop(
        &self,
        method: &str,
        target: Option<&str>,
        endpoint: &str,
        context: &RequestContext,
        peer: Option<&str>,
    ) -> (TraceContext, Option<Span>) {
        let hop = match &context.trace {
            Some(parent) => self.tracer.child(parent),
            None => self.tracer.root(),
        };
        let Some(mut span) = self.tracer.span(SpanKind::Client, method, target, &hop, context.trace.as_ref()) else {
            return (hop, None);
        };
        if let Some(tool) = target {
            span.set("gen_ai.tool.name", tool.to_owned());
            span.set("gen_ai.operation.name", "execute_tool");
        }
        span.set("mcp.protocol.version", MODERN_VERSION);
        span.set("network.transport", "tcp");
        span.set("network.protocol.name", "http");
        crate::trace::set_server_address(&mut span, endpoint);
        if let Some(peer) = peer {
            span.set("toolmesh.peer.agent", peer.to_owned());
        }
        (hop, Some(span))
    }

    /// The tools `endpoint` lists to us (as the callee's policy lets us see them), as MCP tool
    /// objects.
    pub async fn list_tools(&self, endpoint: &str, context: &RequestContext) -> Result<Vec<Value>, RequestError> {
        let (hop, mut span) = self.hop("tools/list", None, endpoint, context, None);
        let result = self.list_tools_as(endpoint, context, &hop, span.as_mut()).await;
        ended(span.as_mut(), result.as_ref().err());
        result
    }

    async fn list_tools_as(
        &self,
        endpoint: &str,
        context: &RequestContext,
        hop: &TraceContext,
        span: Option<&mut Span>,
    ) -> Result<Vec<Value>, RequestError> {
        let response = self.post(endpoint, "tools/list", None, context, hop).await?;
        answered_by(span, &response);
        let reply: Value = serde_json::from_slice(response.body()).map_err(|e| RequestError {
            error: Error::new(ErrorKind::Protocol, format!("{endpoint} answered tools/list with something that is not JSON: {e}")),
            delivered: true,
        })?;
        if let Some(error) = reply.get("error") {
            let error = mesh_error_in(error.get("data")).unwrap_or_else(|| {
                let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
                Error::new(ErrorKind::RemoteError, format!("{endpoint} refused tools/list: {message}"))
            });
            return Err(RequestError { error, delivered: true });
        }
        match reply.pointer("/result/tools").and_then(Value::as_array) {
            Some(tools) => Ok(tools.clone()),
            None => Err(RequestError {
                error: Error::new(ErrorKind::Protocol, format!("{endpoint} answered tools/list without a tool array")),
                delivered: true,
            }),
        }
    }

    /// Posts one modern request with the headers every mesh request carries: protocol, trace,
    /// signed origin, the context's propagated headers, and for a tool call the tool's name and
    /// mirrored parameters.
    async fn post(
        &self,
        endpoint: &str,
        method: &'static str,
        call: Option<ToolCall<'_>>,
        context: &RequestContext,
        hop: &TraceContext,
    ) -> Result<http::Response<Bytes>, RequestError> {
        let tool = call.as_ref().map(|c| c.tool);
        let arguments = call.as_ref().map(|c| c.arguments);
        let traceparent = hop.traceparent();
        // Rounded up: the callee's deadline never comes before ours, so that at our deadline we
        // drop the call (and the callee is cancelled) rather than race its own timeout.
        let deadline_ms =
            context.deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()).as_micros().div_ceil(1000) as u64);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let observer = context.on_notification.as_ref().filter(|_| call.is_some());
        let asks = observer.map(|o| (o.wants_progress(), o.log_level()));
        // A retry that brings the client's answers to this provider's request for input.
        let answers = call
            .as_ref()
            .and_then(|c| Some((c.provider?, c.tool)))
            .and_then(|(provider, tool)| context.dependency_answers.as_deref().filter(|answers| answers.are_for(provider, tool)));
        // Only a request served here (which can relay what a callee asks) declares its client's.
        let relayable = context
            .dependency_asked
            .as_ref()
            .and(context.client_capabilities.as_deref())
            .filter(|_| call.is_some())
            .and_then(relayable_capabilities);
        let tasks = call.as_ref().is_some_and(|c| c.tasks);
        let meta = RequestMeta {
            traceparent: &traceparent,
            tracestate: hop.tracestate.as_deref(),
            deadline_ms,
            asks,
            client_capabilities: relayable.as_ref(),
            tasks,
        };
        let body = request_body(id, method, tool, arguments, answers, meta);
        let unbuildable = |what: String| RequestError {
            error: Error::new(ErrorKind::InvalidConfig, format!("cannot build a request to {endpoint}: {what}")),
            delivered: false,
        };
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.endpoints.uri(endpoint).map_err(|e| unbuildable(e.to_string()))?;
        // Room for the request's own headers and `Host`, so that the map is not grown on the way.
        *request.headers_mut() = http::HeaderMap::with_capacity(12);
        let headers = request.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert(PROTOCOL_VERSION_HEADER, HeaderValue::from_static(MODERN_VERSION));
        headers.insert(METHOD_HEADER, HeaderValue::from_static(method));
        if let Some(tool) = tool {
            let name = HeaderValue::from_str(&encode_header_value(tool)).map_err(|e| unbuildable(e.to_string()))?;
            headers.insert(NAME_HEADER, name);
        }
        if let Some(ToolCall { tool, arguments, param_headers, .. }) = call {
            for ParamHeader { parameter, header } in param_headers {
                let Some(text) = arguments.get(parameter).and_then(mirrored_text) else { continue };
                let name = HeaderName::try_from(format!("mcp-param-{header}"))
                    .map_err(|e| unbuildable(format!("tool '{tool}' mirrors '{parameter}' in header '{header}': {e}")))?;
                let value = HeaderValue::from_str(&encode_header_value(&text)).map_err(|e| unbuildable(e.to_string()))?;
                headers.insert(name, value);
            }
        }
        let traceparent = HeaderValue::from_str(traceparent.as_str()).map_err(|e| unbuildable(e.to_string()))?;
        headers.insert(TRACEPARENT_HEADER, traceparent);
        // Who started the chain this call belongs to, signed: the callee's policy may ask.
        let origin = self
            .origins
            .outbound(context.origin.as_deref(), context.caller.as_deref())
            .map_err(|error| RequestError { error, delivered: false })?;
        headers.insert(crate::origin::HEADER_NAME, origin);
        // The context's headers come from an allow-list (which never captures these) or from the
        // host; either way the request's own headers (body, hop, protocol, trace) are not theirs to set.
        for (name, value) in context.onward_headers() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| unbuildable(format!("header '{name}': {e}")))?;
            let value = HeaderValue::from_str(value).map_err(|e| unbuildable(format!("header '{name}': {e}")))?;
            headers.append(name, value);
        }
        // The caller's own headers: the handler it calls sees them whatever its allow-list.
        let set_on_purpose = context.caller_set_names();
        if !set_on_purpose.is_empty() {
            let names = HeaderValue::from_str(&set_on_purpose.join(", ")).map_err(|e| unbuildable(e.to_string()))?;
            headers.insert(CALLER_HEADERS_HEADER, names);
        }
        match observer {
            None => self.http.send(request).await,
            Some(observer) => {
                let mut events = EventReader::default();
                let mut observe = |piece: &Bytes| {
                    events.read(piece, |message| {
                        if let Some(notification) = Notification::from_message(&message) {
                            observer.notify(notification);
                        }
                    })
                };
                self.http.send_observed(request, Some(&mut observe)).await
            }
        }
    }
}

/// The endpoints called, each parsed once: parsing checks a URI byte by byte and copies it, and
/// every call to a provider parsed its endpoint again. Forgotten all at once when full.
#[derive(Default)]
struct Endpoints(std::sync::Mutex<crate::fx_hash::FxHashMap<Box<str>, http::Uri>>);

impl Endpoints {
    const MOST: usize = 4096;

    fn uri(&self, endpoint: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        if let Some(uri) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(endpoint) {
            return Ok(uri.clone());
        }
        let uri: http::Uri = endpoint.parse()?;
        let mut parsed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if parsed.len() >= Self::MOST {
            parsed.clear();
        }
        parsed.insert(endpoint.into(), uri.clone());
        Ok(uri)
    }
}

/// Splits a stream of server-sent events into the JSON messages their `data` carries, as the
/// pieces arrive (an event may span pieces).
#[derive(Default)]
struct EventReader {
    pending: Vec<u8>,
}

impl EventReader {
    fn read(&mut self, piece: &[u8], mut message: impl FnMut(Value)) {
        // Line ends may be CRLF; a JSON message holds no raw CR of its own.
        self.pending.extend(piece.iter().filter(|b| **b != b'\r'));
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let data: Vec<&[u8]> = event
                .split(|b| *b == b'\n')
                .filter_map(|line| line.strip_prefix(b"data:"))
                .map(|d| d.strip_prefix(b" ").unwrap_or(d))
                .collect();
            if let Ok(value) = serde_json::from_slice::<Value>(&data.join(&b'\n')) {
                message(value);
            }
        }
    }
}

/// Names on a client span the callee the TLS handshake verified (its SPIFFE ID), under the
/// attribute a server span names its verified caller with.
fn answered_by(span: Option<&mut Span>, response: &http::Response<Bytes>) {
    if let (Some(span), Some(identity)) = (span, response.extensions().get::<PeerIdentity>()) {
        span.set("toolmesh.peer.identity", identity.0.clone());
    }
}

/// Ends a client span as its request ended.
fn ended(span: Option<&mut Span>, error: Option<&RequestError>) {
    match (span, error) {
        (Some(span), None) => span.ok(),
        (Some(span), Some(e)) => span.failed(e.error.kind().name(), e.error.message()),
        (None, _) => {}
    }
}

/// The `tools/call` part of a request: the tool, its arguments, the parameters it mirrors in
/// `Mcp-Param-*` headers, and whether the call declares the tasks extension.
#[derive(Clone, Copy)]
struct ToolCall<'a> {
    tool: &'a str,
    arguments: &'a Value,
    param_headers: &'a [ParamHeader],
    shape: ResultShape,
    /// The agent id of the provider called, when the call went through discovery.
    provider: Option<&'a str>,
    tasks: bool,
}

/// A `tools/call` answer read: the value (or whole result) the caller takes, or the callee's
/// request for input from the client.
enum Decoded {
    Value(Value),
    InputRequired(InputRequired),
}

fn decode_call_response(tool: &str, endpoint: &str, response: http::Response<Bytes>, shape: ResultShape) -> Result<Decoded, Error> {
    let status = response.status();
    let is_sse = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let body = response.into_body();
    let sse_message = if is_sse { last_sse_message(&body) } else { None };
    let message = if is_sse { sse_message.as_deref().map_or(&b""[..], str::as_bytes) } else { &body[..] };
    value_of_reply((tool, shape), endpoint, message, (status, &body))
}

/// The value of one JSON-RPC answer to a `tools/call` (`message`) in `shape`, or the error it stands for;
/// `answered` (the HTTP status and body) is shown when there is no answer.
fn value_of_reply(
    (tool, shape): (&str, ResultShape),
    endpoint: &str,
    message: &[u8],
    answered: (http::StatusCode, &[u8]),
) -> Result<Decoded, Error> {
    let reply: Option<Reply> = serde_json::from_slice(message).ok();
    let Some(reply) = reply else {
        let (status, body) = answered;
        let text = String::from_utf8_lossy(body);
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("{endpoint} answered HTTP {status} without a JSON-RPC message: {}", text.trim()),
        ));
    };
    if let Some(error) = reply.error {
        return Err(remote_rpc_error(tool, &serde_json::from_str(error.get()).unwrap_or(Value::Null)));
    }
    let Some(result) = reply.result else {
        return Err(Error::new(ErrorKind::Protocol, format!("{endpoint} answered a JSON-RPC message with neither result nor error")));
    };
    if result.is_error {
        return Err(remote_tool_error(tool, &result));
    }
    if result.result_type.as_deref() == Some("input_required") {
        let answer = serde_json::json!({"inputRequests": result.input_requests, "requestState": result.request_state});
        return InputRequired::from_json(answer).map(Decoded::InputRequired).map_err(|problem| {
            Error::new(ErrorKind::Protocol, format!("{endpoint} answered an input-required result that is not valid: {problem}"))
        });
    }
    if shape == ResultShape::Whole {
        // Read again whole, only for the callers that take it: each item as the callee sent it.
        return match serde_json::from_slice::<WholeReply>(message) {
            Ok(WholeReply { result: WholeResult { content, structured } }) => Ok(Decoded::Value(whole_result(content, structured))),
            Err(e) => Err(Error::new(ErrorKind::Protocol, format!("{endpoint} answered a tool result that is not MCP's shape: {e}"))),
        };
    }
    if let Some(structured) = result.structured {
        return Ok(Decoded::Value(structured));
    }
    let text = first_text(&result.content).unwrap_or_default();
    Ok(Decoded::Value(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))))
}

/// A successful `tools/call` answer read whole, for [`ResultShape::Whole`].
#[derive(Deserialize)]
struct WholeReply {
    result: WholeResult,
}

#[derive(Deserialize)]
struct WholeResult {
    #[serde(default)]
    content: Vec<Value>,
    // A `null` here decodes as absent, as for one value.
    #[serde(rename = "structuredContent", default)]
    structured: Option<Value>,
}

/// What a `tools/call` answer is read into: only the fields a caller uses are decoded, and what
/// only an error needs (`error`, `_meta`) is kept as the raw JSON of the body until it does.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    result: Option<CallResult<'a>>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallResult<'a> {
    // A `null` here decodes as absent; the text fallback then yields the same `null`.
    #[serde(rename = "structuredContent", default)]
    structured: Option<Value>,
    #[serde(rename = "isError", default)]
    is_error: bool,
    #[serde(borrow, default)]
    content: Vec<Content<'a>>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<&'a RawValue>,
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<Cow<'a, str>>,
    #[serde(rename = "inputRequests", default)]
    input_requests: Option<Value>,
    #[serde(rename = "requestState", default)]
    request_state: Option<Value>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

fn first_text<'c>(content: &'c [Content<'_>]) -> Option<&'c str> {
    content.iter().find(|c| c.kind == "text").and_then(|c| c.text.as_deref())
}

/// The JSON-RPC body of a modern request. What never changes (the envelope's and `_meta`'s keys,
/// the protocol version, the client's info) is copied as it is; only what varies is serialized,
/// where serde would escape the same constant keys again on every call.
/// What a request's `_meta` carries besides the constant members.
struct RequestMeta<'a> {
    traceparent: &'a Traceparent,
    tracestate: Option<&'a str>,
    deadline_ms: Option<u64>,
    /// What the caller's observer asks for: progress (the request's id is its token), and log
    /// messages from a level up.
    asks: Option<(bool, Option<crate::report::LogLevel>)>,
    /// What the client of the request this call is made for can answer (its elicitation,
    /// sampling, roots): a callee's request for input is relayed to it. `{}` when none.
    client_capabilities: Option<&'a Value>,
    /// Whether the client capabilities declare the tasks extension.
    tasks: bool,
}

/// The capabilities of a request's client that a callee's input request can use, declared on the
/// calls made for it (the requests are relayed to that client, [`relay`]).
fn relayable_capabilities(declared: &Value) -> Option<Value> {
    let relayable: serde_json::Map<String, Value> =
        ["elicitation", "sampling", "roots"].into_iter().filter_map(|name| Some((name.to_owned(), declared.get(name)?.clone()))).collect();
    (!relayable.is_empty()).then_some(Value::Object(relayable))
}

fn request_body(
    id: u64,
    method: &str,
    tool: Option<&str>,
    arguments: Option<&Value>,
    answers: Option<&relay::Answers>,
    meta: RequestMeta<'_>,
) -> Vec<u8> {
    let RequestMeta { traceparent, tracestate, deadline_ms, asks, client_capabilities, tasks } = meta;
    fn json(body: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
        serde_json::to_writer(body, value).expect("JSON values always serialize into a Vec");
    }
    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    json(&mut body, &id);
    body.extend_from_slice(br#","method":"#);
    json(&mut body, method);
    body.extend_from_slice(br#","params":{"#);
    if let Some(tool) = tool {
        body.extend_from_slice(br#""name":"#);
        json(&mut body, tool);
        body.push(b',');
    }
    if let Some(arguments) = arguments {
        body.extend_from_slice(br#""arguments":"#);
        json(&mut body, arguments);
        body.push(b',');
    }
    if let Some(answers) = answers {
        body.extend_from_slice(br#""inputResponses":"#);
        json(&mut body, &answers.responses);
        if let Some(state) = &answers.request_state {
            body.extend_from_slice(br#","requestState":"#);
            json(&mut body, state);
        }
        body.push(b',');
    }
    body.extend_from_slice(br#""_meta":"#);
    body.extend_from_slice(constant_meta().as_bytes());
    body.push(b',');
    json(&mut body, META_CLIENT_CAPABILITIES);
    body.push(b':');
    match (client_capabilities, tasks) {
        (None, false) => body.extend_from_slice(b"{}"),
        (declared, tasks) => {
            let mut capabilities = declared.cloned().unwrap_or_else(|| serde_json::json!({}));
            if tasks {
                capabilities["extensions"] = serde_json::json!({TASKS_EXTENSION: {}});
            }
            json(&mut body, &capabilities);
        }
    }
    body.extend_from_slice(br#","traceparent":""#);
    body.extend_from_slice(traceparent.as_str().as_bytes());
    body.push(b'"');
    if let Some(tracestate) = tracestate {
        body.extend_from_slice(br#","tracestate":"#);
        json(&mut body, tracestate);
    }
    if let Some(deadline_ms) = deadline_ms {
        body.push(b',');
        json(&mut body, META_DEADLINE_MS);
        body.push(b':');
        json(&mut body, &deadline_ms);
    }
    let (progress, log_level) = asks.unwrap_or_default();
    if progress {
        body.extend_from_slice(br#","progressToken":"#);
        json(&mut body, &id);
    }
    if let Some(level) = log_level {
        body.extend_from_slice(br#",""#);
        body.extend_from_slice(META_LOG_LEVEL.as_bytes());
        body.extend_from_slice(br#"":""#);
        body.extend_from_slice(level.as_str().as_bytes());
        body.push(b'"');
    }
    body.extend_from_slice(b"}}}");
    body
}

/// The members of a request's `_meta` that never change, serialized once, as an object still
/// open for the members that follow.
fn constant_meta() -> &'static str {
    static META: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    META.get_or_init(|| {
        let mut meta = serde_json::json!({
            META_PROTOCOL_VERSION: MODERN_VERSION,
            META_CLIENT_INFO: {"name": "toolmesh", "version": env!("CARGO_PKG_VERSION")},
        })
        .to_string();
        meta.pop();
        meta
    })
}

/// The JSON of the last `data:` message of an SSE body that is a response (the response
/// follows any notifications).
fn last_sse_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut last = None;
    for event in text.split("\n\n") {
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
        let data = data.join("\n");
        if let Ok(v) = serde_json::from_str::<Value>(&data) {
            if v.get("result").is_some() || v.get("error").is_some() {
                last = Some(data);
            }
        }
    }
    last
}

/// A mesh error reported by the remote side keeps its kind (a tool error its application code
/// and data); anything else is classified here.
fn mesh_error_in(meta: Option<&Value>) -> Option<Error> {
    let meta = meta?;
    let kind = ErrorKind::from_code(u32::try_from(meta.get("code")?.as_u64()?).ok()?)?;
    let message = meta.get("message")?.as_str()?;
    if kind == ErrorKind::ToolError {
        let app_code = meta.get("appCode").and_then(Value::as_str).unwrap_or_default();
        let data = meta.get("data").cloned();
        // A peer that sent no valid application code has not told us what its tool meant.
        return Some(Error::tool_error(app_code, message, data).unwrap_or_else(|problem| {
            Error::new(
                ErrorKind::Protocol,
                format!("the peer reported a tool error that breaks the protocol: {problem}; its message: {message}"),
            )
        }));
    }
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

fn remote_tool_error(tool: &str, result: &CallResult) -> Error {
    let text = result.content.iter().filter_map(|c| c.text.as_deref()).collect::<Vec<_>>().join("\n");
    let meta: Option<Value> = result.meta.and_then(|m| serde_json::from_str(m.get()).ok());
    match mesh_error_in(meta.as_ref().and_then(|m| m.get(META_ERROR))) {
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
    use serde_json::json;

    #[test]
    fn an_endpoint_is_parsed_once_and_a_bad_one_is_refused_every_time() {
        let endpoints = Endpoints::default();
        let uri = endpoints.uri("https://127.0.0.1:8443/mcp").unwrap();
        assert_eq!((uri.host(), uri.port_u16(), uri.path()), (Some("127.0.0.1"), Some(8443), "/mcp"));
        assert_eq!(endpoints.uri("https://127.0.0.1:8443/mcp").unwrap(), uri);
        assert_eq!(endpoints.0.lock().unwrap().len(), 1);
        for _ in 0..2 {
            assert!(endpoints.uri("https://bad host/mcp").is_err());
        }
        assert_eq!(endpoints.0.lock().unwrap().len(), 1);
        for port in 0..=Endpoints::MOST {
            endpoints.uri(&format!("https://a:{port}/mcp")).unwrap();
        }
        assert!(endpoints.0.lock().unwrap().len() <= Endpoints::MOST);
    }

    fn response(content_type: &str, body: &str) -> http::Response<Bytes> {
        http::Response::builder().header("content-type", content_type).body(Bytes::from(body.to_owned())).unwrap()
    }

    fn decode_call_response_value(tool: &str, endpoint: &str, response: http::Response<Bytes>) -> Result<Value, Error> {
        decode_call_response(tool, endpoint, response, ResultShape::Value).map(value)
    }

    fn value(decoded: Decoded) -> Value {
        match decoded {
            Decoded::Value(value) => value,
            Decoded::InputRequired(input) => panic!("asked for input: {input:?}"),
        }
    }

    #[test]
    fn a_whole_result_keeps_every_item_as_sent_and_drops_the_envelope() {
        let items = json!([
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png", "annotations": {"priority": 1}},
            {"type": "resource_link", "uri": "file:///a.txt", "name": "a.txt", "icons": [{"src": "x"}], "_meta": {"k": 1}},
        ]);
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "content": items,
            "structuredContent": {"n": 2}, "_meta": {"io.modelcontextprotocol/serverInfo": {}}}});
        let whole = value(decode_call_response("t", "e", response("application/json", &body.to_string()), ResultShape::Whole).unwrap());
        assert_eq!(whole, json!({"content": items, "structuredContent": {"n": 2}}));
        let text_only = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
        let whole = value(decode_call_response("t", "e", response("application/json", text_only), ResultShape::Whole).unwrap());
        assert_eq!(whole, json!({"content": [{"type": "text", "text": "hi"}]}));
        // A failed tool is the same error in either shape.
        let failed = r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"boom"}]}}"#;
        let Err(e) = decode_call_response("x", "e", response("application/json", failed), ResultShape::Whole) else {
            panic!("a failed tool")
        };
        assert_eq!(e.kind(), ErrorKind::ToolFailed);
    }

    #[test]
    fn a_request_body_is_the_json_rpc_request_with_the_protocol_key_names() {
        let trace = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
        let meta = |extra: Value| {
            let mut meta = json!({
                META_PROTOCOL_VERSION: MODERN_VERSION,
                META_CLIENT_CAPABILITIES: {},
                META_CLIENT_INFO: {"name": "toolmesh", "version": env!("CARGO_PKG_VERSION")},
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            });
            meta.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            meta
        };
        let traceparent = trace.traceparent();
        let call_meta = RequestMeta {
            traceparent: &traceparent,
            tracestate: Some("k=v"),
            deadline_ms: Some(5),
            asks: None,
            client_capabilities: None,
            tasks: false,
        };
        let call = request_body(7, "tools/call", Some("a \"quoted\" tool"), Some(&json!({"a": [1, "x"]})), None, call_meta);
        assert_eq!(
            serde_json::from_slice::<Value>(&call).unwrap(),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                "name": "a \"quoted\" tool", "arguments": {"a": [1, "x"]},
                "_meta": meta(json!({"tracestate": "k=v", META_DEADLINE_MS: 5}))}})
        );
        let list = request_body(
            8,
            "tools/list",
            None,
            None,
            None,
            RequestMeta {
                traceparent: &traceparent,
                tracestate: None,
                deadline_ms: None,
                asks: None,
                client_capabilities: None,
                tasks: false,
            },
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&list).unwrap(),
            json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"_meta": meta(json!({}))}})
        );
        let observed = request_body(
            9,
            "tools/call",
            Some("t"),
            Some(&json!({})),
            None,
            RequestMeta {
                traceparent: &traceparent,
                tracestate: None,
                deadline_ms: None,
                asks: Some((true, Some(crate::report::LogLevel::Debug))),
                client_capabilities: None,
                tasks: false,
            },
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&observed).unwrap(),
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "t", "arguments": {},
                "_meta": meta(json!({"progressToken": 9, META_LOG_LEVEL: "debug"}))}})
        );
        // A relay asks for no more than its own caller lets through.
        let relayed = request_body(
            10,
            "tools/call",
            Some("t"),
            Some(&json!({})),
            None,
            RequestMeta {
                traceparent: &traceparent,
                tracestate: None,
                deadline_ms: None,
                asks: Some((false, Some(crate::report::LogLevel::Warning))),
                client_capabilities: None,
                tasks: false,
            },
        );
        assert_eq!(serde_json::from_slice::<Value>(&relayed).unwrap()["params"]["_meta"], meta(json!({META_LOG_LEVEL: "warning"})));
        let bare = |client_capabilities, tasks| RequestMeta {
            traceparent: &traceparent,
            tracestate: None,
            deadline_ms: None,
            asks: None,
            client_capabilities,
            tasks,
        };
        // A call made again for a tool that runs only as a task declares the extension.
        let as_task = request_body(11, "tools/call", Some("t"), Some(&json!({})), None, bare(None, true));
        let mut declared = meta(json!({}));
        declared[META_CLIENT_CAPABILITIES] = json!({"extensions": {TASKS_EXTENSION: {}}});
        assert_eq!(serde_json::from_slice::<Value>(&as_task).unwrap()["params"]["_meta"], declared);
        // A retry brings the client's answers to the provider that asked, with its state.
        let answers = relay::Answers {
            provider: "c-1".into(),
            tool: "t".into(),
            responses: serde_json::Map::from_iter([("name".to_owned(), json!({"action": "accept"}))]),
            request_state: Some(json!("sealed")),
        };
        let answering = request_body(12, "tools/call", Some("t"), Some(&json!({})), Some(&answers), bare(None, false));
        let params = &serde_json::from_slice::<Value>(&answering).unwrap()["params"];
        assert_eq!((&params["inputResponses"], &params["requestState"]), (&json!({"name": {"action": "accept"}}), &json!("sealed")));
        // A call made for a request declares what its client can answer of a callee's requests.
        let relayable = relayable_capabilities(&json!({"elicitation": {"form": {}}, "roots": {}, "extensions": {"x": {}}}));
        assert_eq!(relayable, Some(json!({"elicitation": {"form": {}}, "roots": {}})));
        assert_eq!(relayable_capabilities(&json!({"extensions": {}})), None);
        let relaying = request_body(13, "tools/call", Some("t"), Some(&json!({})), None, bare(relayable.as_ref(), true));
        let meta = &serde_json::from_slice::<Value>(&relaying).unwrap()["params"]["_meta"];
        assert_eq!(meta[META_CLIENT_CAPABILITIES], json!({"elicitation": {"form": {}}, "roots": {}, "extensions": {TASKS_EXTENSION: {}}}));
    }

    #[test]
    fn events_are_read_as_they_arrive_whatever_the_pieces() {
        let stream = "id: 0\ndata:\n\nevent: message\r\ndata: {\"a\":1}\r\n\r\nevent: message\ndata: {\"b\":";
        let mut reader = EventReader::default();
        let mut seen = Vec::new();
        for piece in stream.as_bytes().chunks(7) {
            reader.read(piece, |m| seen.push(m));
        }
        assert_eq!(seen, [json!({"a": 1})], "the unfinished event waits for its end");
        reader.read(b"2}\n\n", |m| seen.push(m));
        assert_eq!(seen, [json!({"a": 1}), json!({"b": 2})]);
    }

    #[test]
    fn decodes_structured_text_sse_and_errors() {
        let ok = response("application/json", r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":5}}"#);
        assert_eq!(decode_call_response_value("t", "e", ok).unwrap(), json!(5));
        let text = response("application/json", r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"a\":1}"}]}}"#);
        assert_eq!(decode_call_response_value("t", "e", text).unwrap(), json!({"a": 1}));
        let sse = response(
            "text/event-stream",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"structuredContent\":{\"x\":2}}}\n\n",
        );
        assert_eq!(decode_call_response_value("t", "e", sse).unwrap(), json!({"x": 2}));
        let unknown = response("application/json", r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: nope"}}"#);
        let e = decode_call_response_value("nope", "e", unknown).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::UnknownTool, "Unknown tool: nope"));
        let failed = response(
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"tool 'x' failed: boom"}],"_meta":{"dev.toolmesh/error":{"code":6001,"name":"HANDLER_FAILED","message":"tool 'x' failed: boom"}}}}"#,
        );
        let e = decode_call_response_value("x", "e", failed).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::ToolFailed, "tool 'x' failed: boom"));
        let foreign =
            response("application/json", r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"bad"}]}}"#);
        assert_eq!(decode_call_response_value("x", "e", foreign).unwrap_err().message(), "tool 'x' failed: bad");
        let domain = response(
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"unknown_sku: no such sku: X"}],"_meta":{"dev.toolmesh/error":{"code":5005,"name":"TOOL_ERROR","message":"no such sku: X","appCode":"unknown_sku","data":{"sku":"X"}}}}}"#,
        );
        let e = decode_call_response_value("x", "e", domain).unwrap_err();
        assert_eq!(
            (e.kind(), e.message(), e.app_code(), e.data()),
            (ErrorKind::ToolError, "no such sku: X", Some("unknown_sku"), Some(&json!({"sku": "X"})))
        );
        let codeless = response(
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[],"_meta":{"dev.toolmesh/error":{"code":5005,"name":"TOOL_ERROR","message":"m"}}}}"#,
        );
        assert_eq!(decode_call_response_value("x", "e", codeless).unwrap_err().kind(), ErrorKind::Protocol);
        let plain = response("text/plain", "toolmesh: this port speaks HTTPS");
        assert_eq!(decode_call_response_value("x", "e", plain).unwrap_err().kind(), ErrorKind::Protocol);
    }
}
