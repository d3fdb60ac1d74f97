//! The `/mcp` endpoint: modern (2026-07-28) requests are validated and answered statelessly;
//! legacy (2025-03-26 … 2025-11-25) requests are served statelessly too: the session a legacy
//! `initialize` hands out only carries resource subscriptions and their GET stream.
//!
//! A request is read into typed structs that borrow from the body, and `tools/call` (the hot
//! path) is answered from typed structs too: per call, the only `Value` trees are the arguments
//! (the schema check and the handler take one) and the handler's answer.
//!
//! This file holds [`McpServer`] and the path a request takes; each step has its own file:
//! `server/http_checks.rs` (Origin, Accept, Content-Type), `server/request.rs` (reading the
//! JSON-RPC message), `server/era.rs` (which protocol era, and what a modern request must carry),
//! `server/methods.rs` (what each MCP method answers), `server/catalog.rs` (resources and
//! prompts), `server/tasks.rs` and `server/task_store.rs` (the tasks extension),
//! `server/sessions.rs` and `server/subscriptions.rs` (legacy sessions, resource subscriptions in
//! both eras) and `server/reply.rs` (the answers).

mod catalog;
mod client_requests;
mod era;
mod http_checks;
mod in_flight;
mod methods;
mod reply;
mod request;
mod sessions;
mod stream;
mod subscriptions;
mod task_store;
mod tasks;
#[cfg(test)]
mod tests;

use super::*;
use crate::authorize::Gate;
use crate::context::HeaderAllowList;
use crate::host::LocalTools;
use crate::metrics::{Outcome, ServerMetrics, ServerOperation};
use crate::server::{read_body, Body, PeerInfo};
use crate::trace::Tracer;
use client_requests::ClientRequests;
use era::{check_modern_request, era_of, Era};
use http::{HeaderMap, Method, Response, StatusCode};
use http_checks::check_http_headers;
use hyper::body::Incoming;
use in_flight::InFlight;
use reply::{accepted, json_ok, rpc_error, RpcError};
use request::{read_request, Notice, ObjectOr, Params, Request};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
pub use task_store::DEFAULT_MAX_TASKS;

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// Serves one agent's tools, resources and prompts over MCP.
pub struct McpServer {
    info: ServerInfo,
    /// `info` serialized once: every modern `tools/call` result carries it.
    info_json: Arc<RawValue>,
    tools: Arc<LocalTools>,
    propagate: HeaderAllowList,
    gate: Arc<Gate>,
    metrics: Arc<ServerMetrics>,
    tracer: Tracer,
    /// Seals the state of input-required answers (a key of this run of the agent).
    seal: Arc<input::StateSeal>,
    /// Legacy calls in flight, for `notifications/cancelled` to find.
    in_flight: Arc<InFlight>,
    /// Requests sent to legacy clients for a handler's input, for their responses to find.
    client_requests: Arc<ClientRequests>,
    /// Whether a tool declares task support: the tasks extension is served only then.
    serves_tasks: bool,
    /// The tasks of the calls that run as tasks (`server/tasks.rs`).
    tasks: Arc<task_store::TaskStore>,
    /// Legacy sessions: their resource subscriptions and GET streams (`server/sessions.rs`).
    sessions: sessions::Sessions,
    /// Modern `subscriptions/listen` streams (`server/subscriptions.rs`).
    listeners: subscriptions::Listeners,
}

impl McpServer {
    /// Serves `tools`, each request decided by `gate` first.
    pub fn new(info: ServerInfo, tools: Arc<LocalTools>, propagate: HeaderAllowList, gate: Arc<Gate>) -> Self {
        let info_json = Arc::from(serde_json::value::to_raw_value(&info).expect("two strings always serialize"));
        let metrics = Arc::new(ServerMetrics::new(tools.tools().iter().map(|t| t.name.as_str())));
        let serves_tasks = tools.tools().iter().any(|t| !t.task_support.is_forbidden());
        McpServer {
            info,
            info_json,
            tools,
            propagate,
            gate,
            metrics,
            tracer: Tracer::default(),
            seal: Arc::new(input::StateSeal::new()),
            in_flight: Arc::default(),
            client_requests: Arc::default(),
            serves_tasks,
            tasks: Arc::new(task_store::TaskStore::new(task_store::Limits::default())),
            sessions: sessions::Sessions::new(sessions::Limits::default()),
            listeners: subscriptions::Listeners::default(),
        }
    }

    /// Records a server span of each request `tracer` samples.
    pub fn traced(mut self, tracer: Tracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// Keeps at most `max_tasks` tasks for all callers together (each caller at most its share).
    pub fn keeping_tasks(mut self, max_tasks: usize) -> Self {
        self.tasks = Arc::new(task_store::TaskStore::new(task_store::Limits { total: max_tasks, ..task_store::Limits::default() }));
        self
    }

    /// What this server counts of the requests it answers.
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.metrics.clone()
    }

    pub async fn handle(&self, request: http::Request<Incoming>, peer: Arc<PeerInfo>) -> Response<Body> {
        if request.uri().path() != ENDPOINT_PATH {
            return crate::server::text_response(StatusCode::NOT_FOUND, format!("not found: the MCP endpoint is {ENDPOINT_PATH}"));
        }
        if request.method() == Method::GET || request.method() == Method::DELETE {
            return self.session_request(request.method(), request.headers(), &peer);
        }
        if request.method() != Method::POST {
            let mut response = crate::server::text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: this MCP endpoint takes POST (GET and DELETE: a legacy session's stream and end)",
            );
            response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, POST, DELETE"));
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
    /// Each request read is timed and counted in [`McpServer::metrics`].
    pub async fn handle_message(&self, headers: &HeaderMap, body: &[u8], peer: &PeerInfo) -> Response<Body> {
        let read = read_request(body);
        // A notification or response naming a session must name a live one of the caller's, as
        // a request must (below): 404 tells the client to initialize again.
        let modern = headers.get(HEADER_PROTOCOL_VERSION).is_some_and(|v| v == MODERN_VERSION);
        if let (Ok(Err(_)), Some(session), false) = (&read, subscriptions::session_id(headers), modern) {
            if let Err(e) = self.sessions.touch(session, &peer.identity) {
                return rpc_error(RawValue::NULL, e);
            }
        }
        let Request { id, method, params } = match read {
            Ok(Ok(request)) => request,
            Ok(Err(Notice::Cancelled(request_id))) => {
                let cancelled = self.in_flight.cancel(&peer.identity, request_id.get());
                tracing::debug!(caller = %peer.identity, request = request_id.get(), cancelled, "notifications/cancelled");
                return accepted();
            }
            Ok(Err(Notice::Answer(request_id, answer))) => {
                // Accepted whatever it answers: a response that matches no request of ours (its
                // id, or its sender) is dropped, as a stateless server has nothing else to do.
                let matched = client_requests::response_id(request_id).is_some_and(|id| {
                    let answer = answer.map(RawValue::get).map_err(RawValue::get);
                    let parse = |json: &str| serde_json::from_str(json).expect("a RawValue holds valid JSON");
                    self.client_requests.answer(&peer.identity, &id, answer.map(parse).map_err(parse))
                });
                tracing::debug!(caller = %peer.identity, request = request_id.get(), matched, "a response to a request of the server's");
                return accepted();
            }
            Ok(Err(Notice::Ignored)) => return accepted(),
            Err(e) => return rpc_error(RawValue::NULL, e),
        };
        let mut operation = self.metrics.start(&method);
        let params = match params {
            None => Params::default(),
            Some(ObjectOr::Object(params)) => params,
            Some(_) => {
                let e = RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, "Invalid params: params must be an object");
                return answer(&mut operation, id, Err(e));
            }
        };
        let (trace, span) = self.trace_request(&method, &params, id, headers, peer);
        operation.traced(span);
        let era = era_of(&method, headers, params.meta());
        if era == Era::Modern {
            if let Err(e) = check_modern_request(&method, headers, &params) {
                return answer(&mut operation, id, Err(e));
            }
            if method == "subscriptions/listen" {
                // A listen naming tasks is the tasks extension's (`notifications/tasks`); any
                // other is for resource updates.
                let task_ids = params.notifications.as_ref().and_then(|n| n.get("taskIds"));
                let listened = match task_ids {
                    Some(_) if self.serves_tasks => self.listen_to_tasks(id, &params, peer),
                    _ => self.subscriptions_listen(id, &params, headers, peer),
                };
                return match listened {
                    Ok(stream) => {
                        operation.ended(Outcome::Ok);
                        stream
                    }
                    Err(e) => answer(&mut operation, id, Err(e)),
                };
            }
        }
        // A legacy request that names a session must name a live one of the caller's; the
        // session holds what its client can do.
        let mut session_capabilities = None;
        if let (Era::Legacy, Some(session)) = (era, subscriptions::session_id(headers).filter(|_| method != "initialize")) {
            match self.sessions.touch(session, &peer.identity) {
                Ok(capabilities) => session_capabilities = capabilities,
                Err(e) => return answer(&mut operation, id, Err(e)),
            }
        }
        if method == "tools/call" {
            return self.tools_call(era, id, (params, session_capabilities), headers, peer, trace, operation).await;
        }
        if matches!(method.as_ref(), "resources/read" | "prompts/get") {
            let result = self.catalog_get(era, &method, &params, headers, peer, trace).await;
            return answer(&mut operation, id, result);
        }
        let result = match era {
            Era::Modern => self.modern(&method, &params, headers, peer),
            Era::Legacy => self.legacy(&method, &params, headers, peer),
        };
        // Only an initialize that succeeded opens a session (a refused one is answered 200 too).
        let opens_session = era == Era::Legacy && method == "initialize" && result.is_ok();
        let mut response = answer(&mut operation, id, result);
        if opens_session {
            let session = self.sessions.open(&peer.identity, params.capabilities.and_then(methods::declared_capabilities));
            let value = http::HeaderValue::try_from(session).expect("a hex session id is a valid header value");
            response.headers_mut().insert(SESSION_ID_HEADER, value);
        }
        response
    }

    /// `GET` (a legacy session's stream of resource notifications) and `DELETE` (its end); both
    /// name the session in `Mcp-Session-Id`.
    fn session_request(&self, method: &Method, headers: &HeaderMap, peer: &PeerInfo) -> Response<Body> {
        let Some(session) = subscriptions::session_id(headers) else {
            return crate::server::text_response(
                StatusCode::BAD_REQUEST,
                format!("Bad Request: {method} needs the Mcp-Session-Id header that a legacy initialize answered with"),
            );
        };
        let result = if method == Method::GET {
            let accepts_events =
                headers.get_all(http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| {
                    v.split(',').any(|r| matches!(r.split(';').next().map(str::trim), Some("text/event-stream" | "text/*" | "*/*")))
                });
            if !accepts_events {
                return crate::server::text_response(
                    StatusCode::NOT_ACCEPTABLE,
                    "Not Acceptable: the session stream is text/event-stream; send Accept: text/event-stream",
                );
            }
            self.sessions.listen(session, &peer.identity)
        } else {
            self.sessions.end(session, &peer.identity).map(|()| Response::new(Body::empty()))
        };
        result.unwrap_or_else(|e| rpc_error(RawValue::NULL, e))
    }
}

/// Answers with `result`, and records how the operation ended.
fn answer(operation: &mut ServerOperation, id: &RawValue, result: Result<serde_json::Value, RpcError>) -> Response<Body> {
    match result {
        Ok(result) => {
            operation.ended(Outcome::Ok);
            json_ok(id, &result)
        }
        Err(e) => {
            operation.ended(Outcome::Rpc(e.code()));
            rpc_error(id, e)
        }
    }
}
