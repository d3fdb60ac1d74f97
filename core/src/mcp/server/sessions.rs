//! Legacy (2025-03-26 … 2025-11-25) sessions: the `Mcp-Session-Id` an `initialize` hands out,
//! bound to the verified identity that asked for it, holding the capabilities the client declared
//! (a call on the session may relay a request for input only if the client can answer it), the
//! resources it subscribed to (`resources/subscribe`) and the standalone GET stream their
//! `notifications/resources/updated` go out on.
//!
//! Every other legacy request is still served statelessly: a session only adds subscriptions. A
//! request naming a session that is unknown, expired, ended or another identity's is answered 404,
//! as the spec asks of a terminated session, so a session id is worth nothing to anyone but the
//! certificate that created it.

use super::reply::RpcError;
use super::stream::sse_message;
use crate::fx_hash::FxHashMap;
use crate::mcp::codes;
use crate::server::{Body, Event};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How much one identity may hold.
#[derive(Clone, Debug)]
pub(super) struct Limits {
    /// Sessions per identity; opening one more drops that identity's least recently used one.
    pub(super) sessions_per_identity: usize,
    /// Resources one session (or one modern listen stream) may subscribe to.
    pub(super) subscriptions: usize,
    /// A session with no open stream that no request used for this long is ended.
    pub(super) idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { sessions_per_identity: 64, subscriptions: 256, idle: Duration::from_secs(30 * 60) }
    }
}

/// The largest client capabilities a legacy `initialize` may declare: its session keeps them, so
/// a client must not make 64 sessions hold a request body each.
pub(super) const MAX_CAPABILITIES_BYTES: usize = 8 * 1024;

pub(super) struct Sessions {
    limits: Limits,
    sessions: Mutex<FxHashMap<Box<str>, Session>>,
    /// Set once the agent stops: no new stream opens, as it would hold the shutdown up.
    closed: AtomicBool,
}

struct Session {
    owner: Arc<str>,
    /// The client capabilities its `initialize` declared.
    capabilities: Option<Arc<Value>>,
    subscribed: HashSet<String>,
    stream: Option<mpsc::UnboundedSender<Event>>,
    last_used: Instant,
}

impl Session {
    fn streaming(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| !s.is_closed())
    }

    fn expired(&self, now: Instant, idle: Duration) -> bool {
        !self.streaming() && now.duration_since(self.last_used) > idle
    }
}

/// 404 for a session that is not (or no longer, or not the caller's) there: the client must
/// initialize again.
fn not_found() -> RpcError {
    RpcError::new(
        StatusCode::NOT_FOUND,
        codes::INVALID_REQUEST,
        "Session not found: it expired, was ended, or was not created by this client certificate; send initialize again",
    )
}

impl Sessions {
    pub(super) fn new(limits: Limits) -> Self {
        Sessions { limits, sessions: Mutex::default(), closed: AtomicBool::new(false) }
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A new session of `owner`'s, whose client declared `capabilities`: its id, 128 random bits in hex.
    pub(super) fn open(&self, owner: &str, capabilities: Option<Arc<Value>>) -> String {
        let mut random = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).expect("the system random source works");
        let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, s| !s.expired(now, self.limits.idle));
        let mut owned: Vec<(&Box<str>, Instant)> =
            sessions.iter().filter(|(_, s)| &*s.owner == owner).map(|(id, s)| (id, s.last_used)).collect();
        let excess = (owned.len() + 1).saturating_sub(self.limits.sessions_per_identity);
        if excess > 0 {
            owned.sort_by_key(|(_, last_used)| *last_used);
            let dropped: Vec<Box<str>> = owned.iter().take(excess).map(|(id, _)| (*id).clone()).collect();
            for id in dropped {
                sessions.remove(&id);
            }
        }
        let session = Session { owner: Arc::from(owner), capabilities, subscribed: HashSet::new(), stream: None, last_used: now };
        sessions.insert(id.clone().into_boxed_str(), session);
        id
    }

    /// Runs `f` on session `id` if `owner` holds it, marking it used.
    fn with<R>(&self, id: &str, owner: &str, f: impl FnOnce(&mut Session) -> R) -> Result<R, RpcError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions.get_mut(id).filter(|s| &*s.owner == owner && !s.expired(now, self.limits.idle)).ok_or_else(not_found)?;
        session.last_used = now;
        Ok(f(session))
    }

    /// Checks that `owner` holds session `id`, and marks it used: the client capabilities its
    /// `initialize` declared.
    pub(super) fn touch(&self, id: &str, owner: &str) -> Result<Option<Arc<Value>>, RpcError> {
        self.with(id, owner, |session| session.capabilities.clone())
    }

    pub(super) fn subscribe(&self, id: &str, owner: &str, uri: &str) -> Result<(), RpcError> {
        let cap = self.limits.subscriptions;
        self.with(id, owner, |session| {
            if session.subscribed.len() >= cap && !session.subscribed.contains(uri) {
                return Err(too_many_subscriptions(cap));
            }
            session.subscribed.insert(uri.to_owned());
            Ok(())
        })?
    }

    pub(super) fn unsubscribe(&self, id: &str, owner: &str, uri: &str) -> Result<(), RpcError> {
        self.with(id, owner, |session| {
            session.subscribed.remove(uri);
        })
    }

    /// The session's standalone GET stream: a priming event now, then the notifications of the
    /// resources it subscribed to. A new stream replaces the session's previous one, which ends.
    pub(super) fn listen(&self, id: &str, owner: &str) -> Result<Response<Body>, RpcError> {
        let (events, stream) = mpsc::unbounded_channel();
        // A 2025-11-25 client expects a stream to start with an event that has an id.
        let _ = events.send(Event { bytes: Bytes::from_static(b"id: 0\ndata:\n\n"), last: false });
        // Checked under the lock that `close_streams` takes after setting it: no stream slips in.
        let closed = &self.closed;
        self.with(id, owner, |session| match closed.load(Ordering::Acquire) {
            true => Err(stopping()),
            false => {
                session.stream = Some(events);
                Ok(())
            }
        })??;
        Ok(event_stream_response(Body::events(stream, || {})))
    }

    /// Ends session `id` (`DELETE`): its stream closes, and its id is unknown from now on.
    pub(super) fn end(&self, id: &str, owner: &str) -> Result<(), RpcError> {
        self.with(id, owner, |_| ())?;
        self.sessions.lock().expect("sessions lock").remove(id);
        Ok(())
    }

    /// Sends `notification` (one JSON-RPC message) on the stream of every session subscribed to
    /// `uri`; how many streams it went out on.
    pub(super) fn notify(&self, uri: &str, notification: &[u8]) -> usize {
        let event = sse_message(notification);
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .values()
            .filter(|s| s.subscribed.contains(uri))
            .filter_map(|s| s.stream.as_ref())
            .filter(|stream| stream.send(Event { bytes: event.clone(), last: false }).is_ok())
            .count()
    }

    /// Ends every session's stream (the agent is stopping: an open stream would hold it up).
    pub(super) fn close_streams(&self) {
        self.closed.store(true, Ordering::Release);
        for session in self.sessions.lock().expect("sessions lock").values_mut() {
            session.stream = None;
        }
    }
}

/// 503 for a stream asked for while the agent stops.
pub(super) fn stopping() -> RpcError {
    RpcError::new(StatusCode::SERVICE_UNAVAILABLE, codes::INTERNAL_ERROR, "the agent is shutting down; subscribe to another provider")
}

pub(super) fn too_many_subscriptions(cap: usize) -> RpcError {
    RpcError::new(
        StatusCode::OK,
        codes::INVALID_PARAMS,
        format!("Invalid params: a subscriber may watch at most {cap} resources; unsubscribe from one first"),
    )
}

/// A `text/event-stream` answer whose events come later.
pub(super) fn event_stream_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"))
        .header(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
        // Proxies such as nginx would hold the events back until the stream ends.
        .header("x-accel-buffering", HeaderValue::from_static("no"))
        .body(body)
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_session_expires_unless_its_stream_is_open() {
        let sessions = Sessions::new(Limits { idle: Duration::from_millis(20), ..Limits::default() });
        let idle = sessions.open("spiffe://mesh/a", None);
        let streaming = sessions.open("spiffe://mesh/a", None);
        let _stream = sessions.listen(&streaming, "spiffe://mesh/a").unwrap();
        sessions.touch(&idle, "spiffe://mesh/a").unwrap();
        // Idleness is a matter of time: wait past it.
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(sessions.touch(&idle, "spiffe://mesh/a").unwrap_err().code(), codes::INVALID_REQUEST);
        sessions.touch(&streaming, "spiffe://mesh/a").unwrap();
        // Opening a session sweeps the expired ones out of the table.
        sessions.open("spiffe://mesh/b", None);
        assert!(!sessions.sessions.lock().unwrap().contains_key(idle.as_str()));
    }

    #[test]
    fn a_session_is_only_its_owners() {
        let sessions = Sessions::new(Limits::default());
        let id = sessions.open("spiffe://mesh/a", None);
        assert!(sessions.subscribe(&id, "spiffe://mesh/b", "test://x").is_err());
        assert!(sessions.end(&id, "spiffe://mesh/b").is_err());
        sessions.subscribe(&id, "spiffe://mesh/a", "test://x").unwrap();
        assert_eq!(id.len(), 32);
    }
}
