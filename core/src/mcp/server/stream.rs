//! A `tools/call` whose handler reports while it runs: which notifications the request lets
//! through (its progress token and log level, by era), and the answer that switches from
//! `application/json` to `text/event-stream` at the first notification — a priming event, the
//! notifications in order, then the result — on a stream whose closing cancels the request.

use super::era::Era;
use super::reply::RpcError;
use super::request::RequestMeta;
use crate::host::HandlerOutput;
use crate::mcp::{codes, META_LOG_LEVEL};
use crate::report::{LogLevel, Reporter};
use crate::server::{Body, Event};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The sink of one `tools/call`, and the receiver of its notifications when any can pass.
/// Progress needs the request's `progressToken` (a string or an integer). Log messages: in the
/// modern era at or above the request's `_meta` level (absent: none); in legacy revisions at
/// `info` and above — the level a `logging/setLevel` chose cannot outlive that request on a
/// stateless server, so every legacy request gets what a client that set none gets.
pub(super) fn reporter_for(era: Era, meta: Option<&RequestMeta>) -> Result<(Reporter, Option<mpsc::UnboundedReceiver<Bytes>>), RpcError> {
    let token = meta.and_then(|m| m.progress_token).filter(|t| t.is_string_or_number()).map(|t| t.0.to_owned());
    let level = match era {
        Era::Legacy => Some(LogLevel::Info),
        Era::Modern => match meta.and_then(|m| m.log_level) {
            None => None,
            Some(level) => match level.as_str().as_deref().and_then(LogLevel::parse) {
                Some(level) => Some(level),
                None => {
                    return Err(RpcError::new(
                        StatusCode::BAD_REQUEST,
                        codes::INVALID_PARAMS,
                        format!("Invalid params: _meta[\"{META_LOG_LEVEL}\"] must be one of {}; got {}", LogLevel::names(), level.0.get()),
                    ))
                }
            },
        },
    };
    Ok(Reporter::new(token, level))
}

/// Answers as an event stream: the priming event and `first` now, then each notification as the
/// handler sends it, then the result that `answer` makes once the handler answered (its bytes
/// are one JSON-RPC response). The stream's closing before the result cancels the request.
pub(super) fn event_stream<A>(
    reporter: Arc<Reporter>,
    first: Bytes,
    mut notifications: mpsc::UnboundedReceiver<Bytes>,
    handler: impl Future<Output = HandlerOutputOrError> + Send + 'static,
    answer: A,
) -> Response<Body>
where
    A: FnOnce(HandlerOutputOrError) -> Bytes + Send + 'static,
{
    let (events, stream) = mpsc::unbounded_channel();
    let send = move |events: &mpsc::UnboundedSender<Event>, bytes: Bytes, last: bool| events.send(Event { bytes, last });
    // A stateless server cannot resume a stream, so the priming event's id is never asked for
    // again; it is there because clients of 2025-11-25 expect a stream to start with one.
    let _ = send(&events, Bytes::from_static(b"id: 0\ndata:\n\n"), false);
    let _ = send(&events, sse_message(&first), false);
    tokio::spawn(async move {
        tokio::pin!(handler);
        let output = loop {
            tokio::select! {
                biased;
                Some(notification) = notifications.recv() => { let _ = send(&events, sse_message(&notification), false); }
                output = &mut handler => break output,
                // The client went away (the request is cancelled already): no one waits for the
                // answer, so a handler that never gives one holds nothing here.
                () = events.closed() => return,
            }
        };
        // What the handler sent before it answered comes before the answer.
        while let Ok(notification) = notifications.try_recv() {
            let _ = send(&events, sse_message(&notification), false);
        }
        let _ = send(&events, sse_message(&answer(output)), true);
    });
    let cancel = reporter.clone();
    events_response(stream, move || cancel.cancel())
}

/// An answer that is the event stream `stream`; `on_abandoned` runs when the client closes it
/// before its last event.
pub(super) fn events_response(
    stream: mpsc::UnboundedReceiver<Event>,
    on_abandoned: impl FnOnce() + Send + Sync + 'static,
) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"))
        .header(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
        // Proxies such as nginx would hold the events back until the stream ends.
        .header("x-accel-buffering", HeaderValue::from_static("no"))
        .body(Body::events(stream, on_abandoned))
        .expect("static response parts are valid")
}

pub(super) type HandlerOutputOrError = Result<HandlerOutput, crate::error::Error>;

/// One JSON-RPC message as an SSE event (serialized JSON has no newline to split it).
pub(super) fn sse_message(json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 24);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}
