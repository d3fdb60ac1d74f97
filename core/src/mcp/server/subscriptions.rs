//! Resource subscriptions in both eras, and the host's announcement that a resource changed.
//!
//! - Legacy: `resources/subscribe` / `resources/unsubscribe` record the URI in the caller's
//!   session (`sessions.rs`); `notifications/resources/updated` goes out on that session's
//!   standalone GET stream.
//! - Modern (2026-07-28): `subscriptions/listen` is a long-lived POST whose event stream starts
//!   with `notifications/subscriptions/acknowledged` (the URIs of `resourceSubscriptions` this
//!   server agreed to watch) and then carries their `notifications/resources/updated`, every one
//!   tagged with `_meta["io.modelcontextprotocol/subscriptionId"]`, the listen request's id.
//!   Closing the stream ends the subscription; a stopping agent ends it with the listen result.
//!
//! Only resources the caller may read can be watched (the gate decides, as for `resources/read`).
//! The lists never change while an agent runs, so no `list_changed` is ever offered.

use super::era::Era;
use super::methods::method_not_found;
use super::reply::RpcError;
use super::request::{Params, Raw};
use super::sessions::{event_stream_response, stopping, too_many_subscriptions};
use super::stream::sse_message;
use super::{McpServer, PeerInfo};
use crate::error::{Error, ErrorKind};
use crate::mcp::{codes, META_SERVER_INFO, SESSION_ID_HEADER};
use crate::server::{Body, Event};
use http::{HeaderMap, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The `_meta` key that ties a notification (and the closing result) to its listen stream.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Open listen streams an identity may hold at once.
const LISTENERS_PER_IDENTITY: usize = 16;

/// The open `subscriptions/listen` streams.
#[derive(Default)]
pub(super) struct Listeners {
    open: Mutex<Vec<Listener>>,
    /// How many task notification streams (the tasks extension's listens, `server/tasks.rs`)
    /// each identity holds open: they count against the same bound.
    task_streams: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    /// Set once the agent stops: no new stream opens, as it would hold the shutdown up.
    closed: AtomicBool,
}

/// One open task notification stream's place in its identity's bound, given back when dropped.
pub(super) struct TaskStreamSlot {
    task_streams: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    owner: Arc<str>,
}

impl Drop for TaskStreamSlot {
    fn drop(&mut self) {
        let mut task_streams = self.task_streams.lock().expect("listeners lock");
        if let Some(count) = task_streams.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                task_streams.remove(&self.owner);
            }
        }
    }
}

fn too_many_listens() -> RpcError {
    RpcError::new(
        StatusCode::TOO_MANY_REQUESTS,
        codes::INVALID_REQUEST,
        format!("too many subscriptions/listen streams: a client certificate may hold {LISTENERS_PER_IDENTITY} open; close one first"),
    )
}

struct Listener {
    owner: Arc<str>,
    /// The listen request's id (its JSON).
    id: Box<RawValue>,
    uris: HashSet<String>,
    stream: mpsc::UnboundedSender<Event>,
}

impl Listeners {
    fn open(&self, owner: &str, id: &RawValue, uris: HashSet<String>, ack: &Value) -> Result<Response<Body>, RpcError> {
        let mut open = self.open.lock().expect("listeners lock");
        // Checked under the lock that `close` takes after setting it: no stream slips in.
        if self.closed.load(Ordering::Acquire) {
            return Err(stopping());
        }
        open.retain(|l| !l.stream.is_closed());
        let task_streams = self.task_streams.lock().expect("listeners lock").get(owner).copied().unwrap_or(0);
        if open.iter().filter(|l| &*l.owner == owner).count() + task_streams >= LISTENERS_PER_IDENTITY {
            return Err(too_many_listens());
        }
        let (stream, events) = mpsc::unbounded_channel();
        let ack = serde_json::to_vec(ack).expect("JSON values serialize");
        let _ = stream.send(Event { bytes: sse_message(&ack), last: false });
        open.push(Listener { owner: Arc::from(owner), id: id.to_owned(), uris, stream });
        Ok(event_stream_response(Body::events(events, || {})))
    }

    /// A place for one more task notification stream of `owner`'s, within the bound that
    /// resource listens count against too.
    pub(super) fn task_stream(&self, owner: &str) -> Result<TaskStreamSlot, RpcError> {
        let mut open = self.open.lock().expect("listeners lock");
        if self.closed.load(Ordering::Acquire) {
            return Err(stopping());
        }
        open.retain(|l| !l.stream.is_closed());
        let listening = open.iter().filter(|l| &*l.owner == owner).count();
        let mut task_streams = self.task_streams.lock().expect("listeners lock");
        let count = task_streams.entry(Arc::from(owner)).or_insert(0);
        if listening + *count >= LISTENERS_PER_IDENTITY {
            return Err(too_many_listens());
        }
        *count += 1;
        Ok(TaskStreamSlot { task_streams: self.task_streams.clone(), owner: Arc::from(owner) })
    }

    fn notify(&self, uri: &str) -> usize {
        let open = self.open.lock().expect("listeners lock");
        open.iter()
            .filter(|l| l.uris.contains(uri))
            .filter(|l| {
                let notification = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/resources/updated",
                    "params": {"uri": uri, "_meta": {META_SUBSCRIPTION_ID: &*l.id}},
                });
                let bytes = serde_json::to_vec(&notification).expect("JSON values serialize");
                l.stream.send(Event { bytes: sse_message(&bytes), last: false }).is_ok()
            })
            .count()
    }

    /// Ends every stream with its listen result, as a graceful teardown does.
    fn close(&self, server_info: &Value) {
        self.closed.store(true, Ordering::Release);
        for listener in self.open.lock().expect("listeners lock").drain(..) {
            let result = json!({
                "jsonrpc": "2.0",
                "id": &*listener.id,
                "result": {"resultType": "complete", "_meta": {META_SUBSCRIPTION_ID: &*listener.id, META_SERVER_INFO: server_info}},
            });
            let bytes = serde_json::to_vec(&result).expect("JSON values serialize");
            let _ = listener.stream.send(Event { bytes: sse_message(&bytes), last: true });
        }
    }
}

/// The session id a legacy request carries, if any.
pub(super) fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_ID_HEADER).map(|v| v.to_str().unwrap_or(""))
}

impl McpServer {
    /// Announces that the resource at `uri` changed: every legacy session and modern listen
    /// stream subscribed to it gets `notifications/resources/updated`. Returns how many streams
    /// it went out on. A URI that names none of this agent's resources is refused, so a typo
    /// does not pass for a change nobody watches.
    pub fn notify_resource_updated(&self, uri: &str) -> Result<usize, Error> {
        if self.tools.resolve_resource(uri).is_none() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("notify_resource_updated: '{uri}' is not a resource this agent serves; declare it (a resource or a template that matches it) first"),
            ));
        }
        let legacy = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
        let legacy = serde_json::to_vec(&legacy).expect("JSON values serialize");
        Ok(self.sessions.notify(uri, &legacy) + self.listeners.notify(uri))
    }

    /// Ends every subscription stream (the agent is stopping; an open stream would hold it up).
    pub fn close_subscriptions(&self) {
        self.sessions.close_streams();
        self.listeners.close(&json!(self.info));
    }

    /// `resources/subscribe` and `resources/unsubscribe` (legacy): recorded in the caller's
    /// session, which must be there.
    pub(super) fn legacy_subscription(
        &self,
        method: &str,
        params: &Params,
        headers: &HeaderMap,
        peer: &PeerInfo,
    ) -> Result<Value, RpcError> {
        if !self.tools.catalog().serves_resources() {
            return Err(method_not_found(Era::Legacy, method));
        }
        let Some(uri) = params.uri.and_then(Raw::as_str) else {
            return Err(RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, format!("Invalid params: {method} needs a string 'uri'")));
        };
        let Some(session) = session_id(headers) else {
            return Err(RpcError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                format!("{method} needs a session: send the Mcp-Session-Id header that initialize answered with"),
            ));
        };
        if method == "resources/unsubscribe" {
            self.sessions.unsubscribe(session, &peer.identity, &uri)?;
            return Ok(json!({}));
        }
        let Some(resource) = self.tools.resolve_resource(&uri) else {
            return Err(RpcError::new(StatusCode::OK, codes::RESOURCE_NOT_FOUND, format!("Resource not found: {uri}"))
                .with_data(json!({"uri": uri})));
        };
        drop(self.admit_named(headers, peer, "resource", resource.name())?);
        self.sessions.subscribe(session, &peer.identity, &uri)?;
        Ok(json!({}))
    }

    /// `subscriptions/listen` (modern), once the request is validated.
    pub(super) fn subscriptions_listen(
        &self,
        id: &RawValue,
        params: &Params,
        headers: &HeaderMap,
        peer: &PeerInfo,
    ) -> Result<Response<Body>, RpcError> {
        if !self.tools.catalog().serves_resources() {
            return Err(method_not_found(Era::Modern, "subscriptions/listen"));
        }
        let invalid = |message: &str| RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, format!("Invalid params: {message}"));
        let Some(filter) = params.notifications.as_ref().and_then(Value::as_object) else {
            return Err(invalid("subscriptions/listen needs 'notifications', an object such as {\"resourceSubscriptions\": [\"<uri>\"]}"));
        };
        let requested: Vec<&str> = match filter.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(uris)) => uris
                .iter()
                .map(|u| {
                    u.as_str().ok_or_else(|| invalid("'notifications.resourceSubscriptions' must be an array of resource URIs (strings)"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("'notifications.resourceSubscriptions' must be an array of resource URIs (strings)")),
        };
        let cap = self.sessions.limits().subscriptions;
        if requested.len() > cap {
            return Err(too_many_subscriptions(cap));
        }
        // Honored: the URIs of resources this caller may read; the others are left out of the
        // acknowledgement, as the spec asks of what a server does not support.
        let honored: HashSet<String> = requested
            .into_iter()
            .filter(|uri| self.tools.resolve_resource(uri).is_some_and(|r| self.admit_named(headers, peer, "resource", r.name()).is_ok()))
            .map(str::to_owned)
            .collect();
        let mut acknowledged = serde_json::Map::new();
        if filter.contains_key("resourceSubscriptions") {
            let mut uris: Vec<&String> = honored.iter().collect();
            uris.sort();
            acknowledged.insert("resourceSubscriptions".to_owned(), json!(uris));
        }
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": acknowledged, "_meta": {META_SUBSCRIPTION_ID: id}},
        });
        self.listeners.open(&peer.identity, id, honored, &ack)
    }
}
