//! What each MCP method answers: `server/discover`, `initialize`, `ping`, `logging/setLevel`,
//! `completion/complete`, `tools/list` and `tools/call` (resources and prompts: `catalog.rs`),
//! with the caller decided by the gate and the context a handler runs in; and the capabilities
//! that declare them.

use super::client_requests::{self, ClientRequests};
use super::era::{check_param_headers, supported_versions, Era};
use super::in_flight::InFlight;
use super::reply::{
    json_ok, rpc_error, CallResult, ErrorMeta, ResultMeta, RichCallResult, RpcError, Structured, TextContent, ToolErrorContent,
};
use super::request::{Params, Raw, RequestMeta};
use super::stream::{event_stream, reporter_for, HandlerOutputOrError};
use super::tasks;
use super::{McpServer, PeerInfo};
use crate::authorize::Caller;
use crate::context::{InputAnswers, RequestContext, TraceContext, TRACEPARENT_HEADER, TRACESTATE_HEADER};
use crate::error::{Error, ErrorKind};
use crate::host::{Catalog, HandlerOutput, InputRequired, LocalTools};
use crate::mcp::input::{relay, StateSeal};
use crate::mcp::*;
use crate::metrics::{Outcome, ServerOperation};
use crate::registry_api::TaskSupport;
use crate::report::CancelUnlessAnswered;
use crate::server::Body;
use crate::trace::{Span, SpanKind};
use http::header::HeaderName;
use http::{HeaderMap, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The capabilities `initialize` and `server/discover` declare: exactly the methods this server
/// answers in that era, and no more (the conformance suite calls what is declared, and checks that
/// what is not declared is Method not found).
/// - `tools`: `tools/list` and `tools/call`; the list never changes while the agent runs.
/// - `completions`: `completion/complete`, answered from the values a prompt's arguments and a
///   template's variables declare (`completions` in the catalog).
/// - `resources` (iff the agent declared a resource or a template): `resources/list`,
///   `resources/templates/list`, `resources/read`. `listChanged: false`: the catalog is fixed at
///   start. `subscribe: true`: legacy `resources/subscribe`/`unsubscribe` with a session's GET
///   stream, modern `subscriptions/listen`, both fed by the host's
///   [`McpServer::notify_resource_updated`] (`subscriptions.rs`).
/// - `prompts` (iff the agent declared a prompt): `prompts/list`, `prompts/get`;
///   `listChanged: false` for the same reason.
/// - `extensions.io.modelcontextprotocol/tasks` (modern only, iff a tool declares task support):
///   `tasks/get`, `tasks/update`, `tasks/cancel` (`tasks.rs`).
/// - `logging` (legacy only): `logging/setLevel`, accepted; a stateless server cannot keep the
///   level past that request, so legacy calls get `info` and up (`stream.rs`). The 2026-07-28 era
///   removed the method: a modern request opts into log messages per request instead.
pub(super) fn capabilities(era: Era, catalog: &Catalog, serves_tasks: bool) -> Value {
    let mut capabilities = json!({"tools": {"listChanged": false}, "completions": {}});
    if era == Era::Legacy {
        capabilities["logging"] = json!({});
    }
    if era == Era::Modern && serves_tasks {
        capabilities["extensions"] = json!({ TASKS_EXTENSION: {} });
    }
    if catalog.serves_resources() {
        capabilities["resources"] = json!({"listChanged": false, "subscribe": true});
    }
    if catalog.serves_prompts() {
        capabilities["prompts"] = json!({"listChanged": false});
    }
    capabilities
}

/// Method not found, with the HTTP status of the era (404 in the modern era).
pub(super) fn method_not_found(era: Era, method: &str) -> RpcError {
    let status = if era == Era::Modern { StatusCode::NOT_FOUND } else { StatusCode::OK };
    RpcError::new(status, codes::METHOD_NOT_FOUND, "Method not found").with_data(json!(method))
}

/// The levels of `logging/setLevel`, least severe first (RFC 5424's, as MCP names them).
const LOG_LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// `logging/setLevel` (legacy): a known level is accepted with an empty result.
fn set_log_level(params: &Params) -> Result<Value, RpcError> {
    match params.level.and_then(Raw::as_str) {
        Some(level) if LOG_LEVELS.contains(&level.as_ref()) => Ok(json!({})),
        other => Err(RpcError::new(
            StatusCode::OK,
            codes::INVALID_PARAMS,
            format!("Invalid params: logging/setLevel needs 'level', one of {}; got {other:?}", LOG_LEVELS.join(", ")),
        )),
    }
}

/// `completion/complete`: a well-formed request (a `ref/prompt` or `ref/resource` reference and
/// an argument's name and value) gets the declared values of that argument that start with what
/// the user typed (`Catalog::complete`); a reference this agent does not serve is -32602.
fn complete(params: &Params, catalog: &Catalog) -> Result<Value, RpcError> {
    let reference = params.reference.as_ref().and_then(|r| r.get("type")).and_then(Value::as_str);
    let known_reference = matches!(reference, Some("ref/prompt" | "ref/resource"));
    let argument = params.argument.as_ref();
    let string = |key: &str| argument.and_then(|a| a.get(key)).is_some_and(Value::is_string);
    if !(known_reference && string("name") && string("value")) {
        return Err(RpcError::new(
            StatusCode::OK,
            codes::INVALID_PARAMS,
            "Invalid params: completion/complete needs 'ref' ({\"type\": \"ref/prompt\" or \"ref/resource\", ...}) and 'argument' ({\"name\", \"value\"}, strings)",
        ));
    }
    let text = |key: &str| argument.and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or_default();
    let reference = params.reference.as_ref().unwrap_or(&Value::Null);
    let completions = catalog
        .complete(reference, text("name"), text("value"))
        .map_err(|problem| RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, format!("Invalid params: {problem}")))?;
    let has_more = completions.total > completions.values.len();
    Ok(json!({"completion": {"values": completions.values, "total": completions.total, "hasMore": has_more}}))
}

impl McpServer {
    /// The modern methods but `tools/call`, once the request is validated.
    pub(super) fn modern(&self, method: &str, params: &Params, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        let mut result = match method {
            "server/discover" => json!({
                "supportedVersions": supported_versions(),
                "capabilities": capabilities(Era::Modern, self.tools.catalog(), self.serves_tasks),
                "ttlMs": 0,
                "cacheScope": "private",
            }),
            "tools/list" => {
                let mut list = self.tools_list(params, headers, peer)?;
                list["ttlMs"] = json!(0);
                list["cacheScope"] = json!("private");
                list
            }
            "completion/complete" => complete(params, self.tools.catalog())?,
            "tasks/get" | "tasks/update" | "tasks/cancel" if self.serves_tasks => self.tasks_method(method, params, peer)?,
            other => match self.catalog_list(other, params, headers, peer)? {
                Some(mut list) => {
                    list["ttlMs"] = json!(0);
                    list["cacheScope"] = json!("private");
                    list
                }
                None => return Err(method_not_found(Era::Modern, other)),
            },
        };
        result["resultType"] = json!("complete");
        result["_meta"] = json!({ META_SERVER_INFO: self.info });
        Ok(result)
    }

    /// The legacy methods but `tools/call`.
    pub(super) fn legacy(&self, method: &str, params: &Params, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                let declared = params.capabilities.map_or(0, |raw| raw.0.get().len());
                if declared > super::sessions::MAX_CAPABILITIES_BYTES {
                    return Err(RpcError::new(
                        StatusCode::OK,
                        codes::INVALID_PARAMS,
                        format!(
                            "Invalid params: the client capabilities are {declared} bytes; a session keeps them, and takes at most {}",
                            super::sessions::MAX_CAPABILITIES_BYTES
                        ),
                    ));
                }
                let requested = params.protocol_version.and_then(Raw::as_str);
                let requested = requested.as_deref().unwrap_or(DEFAULT_LEGACY_VERSION);
                let version = if LEGACY_VERSIONS.contains(&requested) { requested } else { LEGACY_VERSIONS[0] };
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": capabilities(Era::Legacy, self.tools.catalog(), self.serves_tasks),
                    "serverInfo": self.info,
                }))
            }
            "ping" => Ok(json!({})),
            "logging/setLevel" => set_log_level(params),
            "completion/complete" => complete(params, self.tools.catalog()),
            "tools/list" => self.tools_list(params, headers, peer),
            "resources/subscribe" | "resources/unsubscribe" => self.legacy_subscription(method, params, headers, peer),
            other => self.catalog_list(other, params, headers, peer)?.ok_or_else(|| method_not_found(Era::Legacy, other)),
        }
    }

    /// The tools the caller may see (policy's `discover` phase): the same rules that decide its
    /// calls, so a listed tool is one it may call unless a rule says otherwise.
    fn tools_list(&self, params: &Params, headers: &HeaderMap, peer: &PeerInfo) -> Result<Value, RpcError> {
        if params.cursor.is_some() {
            return Err(RpcError::new(
                StatusCode::OK,
                codes::INVALID_PARAMS,
                "Invalid params: unknown cursor (this server never paginates)",
            ));
        }
        let caller = self
            .caller(headers, peer)
            .map_err(|e| RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, e.message()).with_data(json!(ErrorMeta::of(&e))))?;
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
                if let Some(schema) = &t.output_schema {
                    tool["outputSchema"] = schema.clone();
                }
                if !t.task_support.is_forbidden() {
                    tool["execution"] = json!({"taskSupport": t.task_support.as_str()});
                }
                tool["_meta"] =
                    json!({"dev.toolmesh/capability": t.capability, "dev.toolmesh/version": t.version, "dev.toolmesh/tags": t.tags});
                tool
            })
            .collect();
        Ok(json!({ "tools": tools }))
    }

    /// `tools/call` in either era (a modern request is validated already); how it ended goes to
    /// `operation`. A handler that reports progress or log messages the request lets through
    /// turns the answer into an event stream ([`super::stream`]).
    // The parts of the request `handle_message` read, each passed once.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn tools_call(
        &self,
        era: Era,
        id: &RawValue,
        (params, session_capabilities): (Params<'_>, Option<Arc<Value>>),
        headers: &HeaderMap,
        peer: &PeerInfo,
        trace: TraceContext,
        mut operation: ServerOperation,
    ) -> Response<Body> {
        let Some(name) = params.name.and_then(Raw::as_str) else {
            operation.ended(Outcome::Rpc(codes::INVALID_PARAMS));
            return rpc_error(id, RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, "Invalid params: tools/call needs a string 'name'"));
        };
        operation.tool(&name);
        // A modern request declares them; a legacy one's session holds what its initialize declared.
        let client_capabilities =
            params.meta().and_then(|m| m.client_capabilities).and_then(declared_capabilities).or(session_capabilities);
        let task_support = self.tools.get(&name).map_or(TaskSupport::Forbidden, |tool| tool.task_support);
        let tasks_negotiated = era == Era::Modern && client_capabilities.as_deref().is_some_and(tasks::negotiated);
        if task_support == TaskSupport::Required && !tasks_negotiated {
            let mut e = tasks::tasks_extension_missing(&format!("tool '{name}' runs only as a task and"));
            if era == Era::Legacy {
                e.status = StatusCode::OK;
            }
            operation.ended(Outcome::Rpc(e.code()));
            return rpc_error(id, e);
        }
        if era == Era::Modern {
            if let Some(tool) = self.tools.get(&name) {
                let checked = check_param_headers(&tool.input_schema, params.arguments.as_ref(), headers).and_then(|()| {
                    check_required_capabilities(
                        format_args!("tool '{name}'"),
                        &tool.required_client_capabilities,
                        client_capabilities.as_deref(),
                    )
                });
                if let Err(e) = checked {
                    operation.ended(Outcome::Rpc(e.code()));
                    return rpc_error(id, e);
                }
            }
        }
        let as_task = tasks_negotiated && task_support != TaskSupport::Forbidden;
        let mut task_reports = None;
        let (reporter, notifications) = match reporter_for(era, params.meta()) {
            // A task's progress and log messages have no stream to go to: they become its status.
            Ok((asked, _)) if as_task => {
                let (reporter, reports) = tasks::reporter(asked.log_level());
                task_reports = Some(reports);
                (reporter, None)
            }
            Ok(sink) => sink,
            Err(e) => {
                operation.ended(Outcome::Rpc(e.code()));
                return rpc_error(id, e);
            }
        };
        let refused = |mut operation: ServerOperation, e: Error| {
            operation.ended(Outcome::Error(e.kind()));
            call_result(era, id, &self.info_json, e.message(), None, Some(ErrorMeta::of(&e)))
        };
        let admitted = match (self.caller(headers, peer), self.tools.get(&name)) {
            (Err(e), _) => return refused(operation, e),
            (Ok(caller), Some(tool)) => match self.gate.admit_call(caller, tool) {
                Ok(admitted) => Some(admitted),
                Err(e) => return refused(operation, e),
            },
            // An unknown tool is answered as such below.
            (Ok(_), None) => None,
        };
        let input = match (era, input_answers(format_args!("tool '{name}'"), &params, &self.seal)) {
            (Era::Modern, Ok(input)) => input,
            (Era::Modern, Err(e)) => {
                operation.ended(Outcome::Rpc(e.code()));
                return rpc_error(id, e);
            }
            // Input requests and their answers are of the 2026-07-28 era only.
            (Era::Legacy, _) => None,
        };
        let mut context = self.inbound_context(headers, params.meta(), trace);
        if as_task {
            // A task outlives the request that created it, and the request's time budget.
            context.deadline = None;
        }
        let reporter = Arc::new(reporter.with_deadline(context.deadline));
        // A legacy caller cancels with `notifications/cancelled` naming this request's id.
        let registered = (era == Era::Legacy).then(|| InFlight::register(&self.in_flight, &peer.identity, id.get(), &reporter));
        context.caller = Some(peer.identity.clone());
        context.client_capabilities = client_capabilities.clone();
        if let Some(answers) = input {
            take_answers(&mut context, Arc::unwrap_or_clone(answers));
        }
        context.dependency_asked = Some(Arc::default());
        context.origin = admitted.as_ref().and_then(|a| a.origin.clone());
        context.reporter = Some(reporter.clone());
        let context = Arc::new(context);
        tracing::debug!(tool = %name, caller = %peer.identity, trace = ?context.trace_id(), "tools/call");
        let tool: Arc<str> = Arc::from(name.as_ref());
        let arguments = params.arguments.unwrap_or(Value::Null);
        if let Some(reports) = task_reports {
            let asking = Asking { tool: tool.clone(), seal: self.seal.clone(), declared: client_capabilities };
            return self.call_as_task(id, tool, arguments, context, asking, admitted, operation, &peer.identity, reports).await;
        }
        // A legacy client answers input requests sent on the stream; the handler then runs again.
        let legacy_input = (era == Era::Legacy).then(|| (self.client_requests.clone(), arguments.clone()));
        let handler = {
            let started = self.tools.start(&tool, arguments, context.clone());
            let (tools, tool) = (self.tools.clone(), tool.clone());
            let asked = context.dependency_asked.clone();
            async move {
                let outcome = match started {
                    Ok(answer) => relay_input(tools.output(&tool, answer.await), asked.as_deref()),
                    Err(e) => Err(e),
                };
                match legacy_input {
                    Some((requests, arguments)) => ask_legacy_client(&tools, &tool, &requests, arguments, context, outcome).await,
                    None => outcome,
                }
            }
        };
        let abandoned = CancelUnlessAnswered::new(reporter.clone());
        let info_json = self.info_json.clone();
        let asking = Asking { tool: tool.clone(), seal: self.seal.clone(), declared: client_capabilities };
        let cancelled = reporter.clone();
        let finish = move |id: &RawValue, outcome: HandlerOutputOrError| {
            // Holds the call's place in a concurrency limit until the handler has answered.
            drop(admitted);
            drop(registered);
            // Whatever the handler made of its cancellation (a cancelled task, an interrupted
            // thread, a dependency call that failed, or nothing), a caller that cancelled and
            // still reads (legacy `notifications/cancelled`) gets one answer from every language.
            let outcome = match cancelled.cancelled_by_caller() {
                true => Err(Error::new(
                    ErrorKind::Cancelled,
                    format!("tool '{tool}' was cancelled by its caller before it answered; its handler's answer, if any, was dropped"),
                )),
                false => outcome,
            };
            operation.ended(outcome_of(&outcome));
            tool_answer(era, id, &info_json, outcome, &asking)
        };
        let Some(mut notifications) = notifications else {
            let response = finish(id, handler.await);
            abandoned.answered();
            return response;
        };
        // Boxed only here: the stream's task takes over the handler when it reports first.
        let mut handler = Box::pin(handler);
        let first = tokio::select! {
            biased;
            Some(first) = notifications.recv() => first,
            outcome = handler.as_mut() => {
                abandoned.answered();
                return finish(id, outcome);
            }
        };
        abandoned.answered();
        let id = id.to_owned();
        event_stream(reporter, first, notifications, handler, move |outcome| {
            finish(&id, outcome).into_body().into_whole().expect("a tools/call answer is one JSON body")
        })
    }

    /// Who is calling: the mTLS peer, and the origin chain it sent (verified).
    pub(super) fn caller<'p>(&self, headers: &HeaderMap, peer: &'p PeerInfo) -> Result<Caller<'p>, Error> {
        // `is_ascii` checks a word at a time, `to_str` a byte at a time: this header is long.
        let header = match headers.get(crate::origin::HEADER_NAME).map(|v| std::str::from_utf8(v.as_bytes()).ok().filter(|v| v.is_ascii()))
        {
            None => None,
            Some(Some(value)) => Some(value),
            Some(None) => return Err(Error::new(ErrorKind::OriginRejected, format!("the {} header is not ASCII", crate::origin::HEADER))),
        };
        self.gate.caller(peer, header)
    }

    /// The span a request is served in — a child of the caller's span in its `traceparent`
    /// (`_meta`, else the header), or a new trace — and, when the trace is recorded, its server
    /// span: the MCP semantic conventions' attributes, and the caller's verified identity.
    pub(super) fn trace_request(
        &self,
        method: &str,
        params: &Params,
        id: &RawValue,
        headers: &HeaderMap,
        peer: &PeerInfo,
    ) -> (TraceContext, Option<Span>) {
        let header_str = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let meta = params.meta();
        let parent = match meta.and_then(|m| m.traceparent).and_then(Raw::as_str) {
            Some(tp) => TraceContext::parse(&tp, meta.and_then(|m| m.tracestate).and_then(Raw::as_str).as_deref()),
            None => header_str(TRACEPARENT_HEADER).and_then(|tp| TraceContext::parse(tp, header_str(TRACESTATE_HEADER))),
        };
        let trace = match &parent {
            Some(parent) => self.tracer.child(parent),
            None => self.tracer.root(),
        };
        if !trace.sampled || !self.tracer.exporting() {
            return (trace, None);
        }
        let target = match method {
            "tools/call" | "prompts/get" => params.name.and_then(Raw::as_str),
            _ => None,
        };
        let Some(mut span) = self.tracer.span(SpanKind::Server, method, target.as_deref(), &trace, parent.as_ref()) else {
            return (trace, None);
        };
        match (method, target) {
            ("tools/call", Some(tool)) => {
                span.set("gen_ai.tool.name", tool.into_owned());
                span.set("gen_ai.operation.name", "execute_tool");
            }
            ("prompts/get", Some(prompt)) => span.set("gen_ai.prompt.name", prompt.into_owned()),
            _ => {}
        }
        let request_id = id.get();
        span.set("jsonrpc.request.id", request_id.strip_prefix('"').and_then(|i| i.strip_suffix('"')).unwrap_or(request_id).to_owned());
        let version = match header_str(PROTOCOL_VERSION_HEADER) {
            Some(version) => Some(Cow::Borrowed(version)),
            None => meta.and_then(|m| m.protocol_version).and_then(Raw::as_str),
        };
        if let Some(version) = version {
            span.set("mcp.protocol.version", version_value(&version));
        }
        span.set("network.transport", "tcp");
        span.set("network.protocol.name", "http");
        span.set("client.address", peer.address_value());
        span.set("client.port", i64::from(peer.remote.port()));
        if peer.is_authenticated() {
            span.set("toolmesh.peer.identity", peer.identity.clone());
        }
        (trace, Some(span))
    }

    /// The context a handler runs in, as the span `trace`: allow-listed headers and the caller's
    /// remaining time budget.
    pub(super) fn inbound_context(&self, headers: &HeaderMap, meta: Option<&RequestMeta>, trace: TraceContext) -> RequestContext {
        let deadline =
            meta.and_then(|m| m.deadline_ms).and_then(Raw::as_u64).map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        let (headers, hop_only) = self.propagate.capture_inbound_map(headers);
        RequestContext { headers, hop_only, trace: Some(trace), deadline, ..RequestContext::default() }
    }
}

/// A protocol version as a span attribute value: the versions served borrowed, any other copied.
fn version_value(version: &str) -> crate::trace::Value {
    crate::trace::Value::known_or_owned(version, std::iter::once(&MODERN_VERSION).chain(LEGACY_VERSIONS))
}

/// The client capabilities a modern request declares in its `_meta`, for its handler; `{}`, what
/// mesh callers send, is shared rather than parsed.
pub(super) fn declared_capabilities(raw: Raw) -> Option<Arc<Value>> {
    static NONE_DECLARED: LazyLock<Arc<Value>> = LazyLock::new(|| Arc::new(json!({})));
    match raw.0.get() {
        "{}" => Some(NONE_DECLARED.clone()),
        json => serde_json::from_str(json).ok().map(Arc::new),
    }
}

/// A modern call to a tool that needs client capabilities its client did not declare: 400 /
/// -32021, with the missing ones as a `ClientCapabilities` object in `data.requiredCapabilities`.
/// `subject`: what needs them ("tool 'x'", "prompt 'y'").
pub(super) fn check_required_capabilities(
    subject: impl std::fmt::Display,
    required: &[String],
    declared: Option<&Value>,
) -> Result<(), RpcError> {
    let missing: serde_json::Map<String, Value> = required
        .iter()
        .filter(|capability| declared.and_then(|d| d.get(capability.as_str())).is_none())
        .map(|capability| (capability.clone(), json!({})))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.keys().map(String::as_str).collect();
    Err(RpcError::new(
        StatusCode::BAD_REQUEST,
        codes::MISSING_CAPABILITY,
        format!("Missing required client capability: {subject} needs {}; declare it in _meta {META_CLIENT_CAPABILITIES}", names.join(", ")),
    )
    .with_data(json!({ "requiredCapabilities": missing })))
}

/// How a `tools/call` ended, for the metrics.
pub(super) fn outcome_of(outcome: &HandlerOutputOrError) -> Outcome {
    match outcome {
        Ok(HandlerOutput::Result(output)) if output.is_error() => Outcome::Error(ErrorKind::ToolError),
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.kind()),
    }
}

/// The answers a modern `tools/call` brings to its tool's earlier input requests: `inputResponses`
/// (an object of objects) and the `requestState` this agent sealed for the same tool, opened.
/// The client's answers to `subject`'s earlier input requests ("tool 'x'", "prompt 'y'"), with
/// the state it sealed for that subject unsealed; `None` when the request brings none.
pub(super) fn input_answers(
    subject: impl std::fmt::Display,
    params: &Params,
    seal: &StateSeal,
) -> Result<Option<Arc<InputAnswers>>, RpcError> {
    let invalid = |why: String| RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, format!("Invalid params: {why}"));
    let responses = match &params.input_responses {
        None | Some(Value::Null) => None,
        Some(Value::Object(responses)) => match responses.iter().find(|(_, response)| !response.is_object()) {
            Some((key, _)) => {
                return Err(invalid(format!("inputResponses.{key} must be an object (the client's result for that request)")))
            }
            None => Some(responses.clone()),
        },
        Some(_) => return Err(invalid("inputResponses must be an object of the client's results by request key".into())),
    };
    let state = match params.request_state {
        None => None,
        Some(sealed) => {
            let sealed = sealed.as_str().ok_or_else(|| invalid("requestState must be the string an earlier answer gave".into()))?;
            // Written out only when there is a state to open (most calls carry none).
            Some(seal.open(&subject.to_string(), &sealed).map_err(invalid)?)
        }
    };
    if responses.is_none() && state.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(InputAnswers { responses: responses.unwrap_or_default(), state })))
}

/// What a retry brought, where it belongs: the handler's own answers, or (its state is a relay
/// state) the answers to a dependency's request for input, which its call carries on.
fn take_answers(context: &mut RequestContext, answers: InputAnswers) {
    context.input = None;
    context.dependency_answers = None;
    match relay::route(answers) {
        Ok(own) => context.input = Some(Arc::new(own)),
        Err(for_dependency) => context.dependency_answers = Some(Arc::new(for_dependency)),
    }
}

/// A handler that failed after one of its dependency calls was asked for input (its
/// `INPUT_REQUIRED`, propagated or not) answers that request instead: its caller asks the client,
/// and the retry's answers reach the dependency.
fn relay_input(outcome: HandlerOutputOrError, asked: Option<&relay::Asked>) -> HandlerOutputOrError {
    match (outcome, asked.and_then(relay::Asked::take)) {
        (Err(_), Some(asked)) => Ok(HandlerOutput::InputRequired(asked.relayed())),
        (outcome, _) => outcome,
    }
}

/// A legacy call's outcome once its handler has what it asked for: while the handler answers
/// input-required (at most [`client_requests::MAX_ROUNDS`] times), its requests go to the client
/// on the call's stream and the handler runs again with the responses and its state.
async fn ask_legacy_client(
    tools: &LocalTools,
    tool: &Arc<str>,
    requests: &ClientRequests,
    arguments: Value,
    mut context: Arc<RequestContext>,
    mut outcome: HandlerOutputOrError,
) -> HandlerOutputOrError {
    for _ in 0..client_requests::MAX_ROUNDS {
        let Ok(HandlerOutput::InputRequired(input)) = outcome else { return outcome };
        let (Some(caller), Some(reporter)) = (context.caller.clone(), context.reporter.clone()) else {
            return Ok(HandlerOutput::InputRequired(input));
        };
        let responses = requests.ask(tool, &caller, &input, &reporter).await?;
        let mut next = (*context).clone();
        take_answers(&mut next, InputAnswers { responses, state: input.request_state });
        context = Arc::new(next);
        outcome = match tools.start(tool, arguments.clone(), context.clone()) {
            Ok(answer) => relay_input(tools.output(tool, answer.await), context.dependency_asked.as_deref()),
            Err(e) => Err(e),
        };
    }
    match outcome {
        Ok(HandlerOutput::InputRequired(_)) => Err(client_requests::too_many_rounds(tool)),
        other => other,
    }
}

/// What an input-required answer needs: the tool (a sealed state is valid for it only), the
/// agent's seal, and the capabilities the client declared (a request it cannot serve is refused).
pub(super) struct Asking {
    pub(super) tool: Arc<str>,
    pub(super) seal: Arc<StateSeal>,
    pub(super) declared: Option<Arc<Value>>,
}

/// A handler's input requests, answered `resultType: "input_required"` to a modern client that
/// declared what they need, with the handler's state sealed; refused (-32021) to one that did
/// not, and to a legacy request (which has no such result) as the tool's failure.
fn input_required_answer(era: Era, id: &RawValue, info_json: &RawValue, input: &InputRequired, asking: &Asking) -> Response<Body> {
    if era == Era::Legacy {
        let e = crate::host::input_required_error(&asking.tool, input);
        return call_result(era, id, info_json, e.message(), None, Some(ErrorMeta::of(&e)));
    }
    match input_required_result(&format!("tool '{}'", asking.tool), input, &asking.seal, asking.declared.as_deref()) {
        Ok(mut result) => {
            result["_meta"] = json!({META_SERVER_INFO: info_json});
            json_ok(id, &result)
        }
        Err(e) => rpc_error(id, e),
    }
}

/// The `resultType: "input_required"` result of `subject`'s input requests ("tool 'x'", "prompt
/// 'y'"), its state sealed for that subject; refused (-32021) when the client did not declare a
/// capability a request needs.
pub(super) fn input_required_result(
    subject: &str,
    input: &InputRequired,
    seal: &StateSeal,
    declared: Option<&Value>,
) -> Result<Value, RpcError> {
    let needed: Vec<String> = input.required_capabilities().iter().map(|c| (*c).to_owned()).collect();
    check_required_capabilities(subject, &needed, declared)?;
    let mut result = json!({"resultType": "input_required", "inputRequests": input.input_requests});
    if let Some(state) = &input.request_state {
        result["requestState"] = json!(seal.seal(subject, state));
    }
    Ok(result)
}

/// The JSON-RPC answer to a `tools/call` whose handler answered (or could not be asked).
pub(super) fn tool_answer(era: Era, id: &RawValue, info_json: &RawValue, outcome: HandlerOutputOrError, asking: &Asking) -> Response<Body> {
    match outcome {
        Ok(HandlerOutput::InputRequired(input)) => input_required_answer(era, id, info_json, &input, asking),
        Ok(HandlerOutput::Result(output)) => {
            let meta = ResultMeta { server_info: (era == Era::Modern).then_some(info_json), error: None };
            json_ok(id, &RichCallResult::of(era, &output, meta))
        }
        Ok(HandlerOutput::Value(value)) => {
            // Serialized once: it is both the `structuredContent` and, unless the value is a
            // string, the text rendering.
            let json = serde_json::value::to_raw_value(&value).expect("a Value always serializes");
            let text = match &value {
                Value::String(s) => s.as_str(),
                _ => json.get(),
            };
            call_result(era, id, info_json, text, Some(Structured::of(era, &value, &json)), None)
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
                call_result(era, id, info_json, &text, Some(structured), Some(ErrorMeta::of(&e)))
            }
            None => call_result(era, id, info_json, e.message(), None, Some(ErrorMeta::of(&e))),
        },
    }
}

/// Answers a `tools/call` with its result; a modern one carries `resultType` and the server's
/// `serverInfo`.
pub(super) fn call_result(
    era: Era,
    id: &RawValue,
    info_json: &RawValue,
    text: &str,
    structured: Option<Structured>,
    error: Option<ErrorMeta>,
) -> Response<Body> {
    let modern = era == Era::Modern;
    let result = CallResult {
        content: [TextContent { kind: "text", text }],
        structured,
        is_error: error.is_some(),
        result_type: modern.then_some("complete"),
        meta: ResultMeta { server_info: modern.then_some(info_json), error },
    };
    json_ok(id, &result)
}
