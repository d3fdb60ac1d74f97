//! Input requests for a legacy client. A client of 2025-11-25 and before has no input-required
//! result: it answers the server's own requests (`elicitation/create`, `sampling/createMessage`,
//! `roots/list`) sent on the call's event stream, by POSTing their responses. So that a handler
//! written once for input requests works in both eras, core sends each request of a legacy
//! call's input-required answer to the client, waits for the responses, and runs the handler
//! again with them and its state — what a modern client's retry would bring.
//!
//! A stateless server has no session to match responses with: they are matched by the id of the
//! request (unguessable, of this run of the agent) and the verified identity of the caller, so one
//! workload can answer only the requests sent to it.

use crate::error::{Error, ErrorKind};
use crate::fx_hash::FxHashMap;
use crate::mcp::input::InputRequired;
use crate::report::Reporter;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How many times one legacy call may ask for input before it counts as a loop.
pub(super) const MAX_ROUNDS: usize = 8;

/// What a client answered to one request: its `result`, or its `error` object.
pub(super) type ClientAnswer = Result<Value, Value>;

/// The requests sent to legacy clients and not answered yet.
pub(super) struct ClientRequests {
    /// Makes this run's ids unguessable: a client cannot answer a request it was not sent.
    prefix: String,
    next: AtomicU64,
    pending: Mutex<FxHashMap<Box<str>, Pending>>,
}

struct Pending {
    caller: Arc<str>,
    answer: oneshot::Sender<ClientAnswer>,
}

impl Default for ClientRequests {
    fn default() -> Self {
        let mut random = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).expect("the system random source works");
        let prefix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        ClientRequests { prefix: format!("toolmesh-{prefix}"), next: AtomicU64::new(0), pending: Mutex::default() }
    }
}

/// Removes a request from the table when its answer is no longer awaited (answered, cancelled,
/// or the call gave up).
struct Awaited<'a> {
    table: &'a ClientRequests,
    id: Box<str>,
}

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        self.table.pending.lock().expect("client requests lock").remove(&self.id);
    }
}

impl ClientRequests {
    /// Sends `input`'s requests to `caller` on `reporter`'s stream, all at once, and returns the
    /// responses by key once every one is answered. Fails when the call is cancelled (or its
    /// deadline passes) first, or when the client answers one with an error.
    pub(super) async fn ask(
        &self,
        tool: &str,
        caller: &Arc<str>,
        input: &InputRequired,
        reporter: &Reporter,
    ) -> Result<Map<String, Value>, Error> {
        let mut waiting = Vec::with_capacity(input.input_requests.len());
        for (key, request) in &input.input_requests {
            let id: Box<str> = format!("{}-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed)).into();
            let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
            let (answer, answered) = oneshot::channel();
            self.pending.lock().expect("client requests lock").insert(id.clone(), Pending { caller: caller.clone(), answer });
            let awaited = Awaited { table: self, id: id.clone() };
            let message = json!({"jsonrpc": "2.0", "id": &*id, "method": method, "params": request.get("params").cloned().unwrap_or_else(|| json!({}))});
            if !reporter.send_to_client(Bytes::from(serde_json::to_vec(&message).expect("a Value always serializes"))) {
                return Err(cancelled(tool));
            }
            waiting.push((key, method, answered, awaited));
        }
        let mut responses = Map::with_capacity(waiting.len());
        for (key, method, answered, _awaited) in waiting {
            let answer = tokio::select! {
                answer = answered => answer.map_err(|_| cancelled(tool))?,
                () = reporter.cancelled() => return Err(cancelled(tool)),
            };
            match answer {
                Ok(result) => responses.insert(key.clone(), result),
                Err(error) => return Err(refused(tool, &method, &error)),
            };
        }
        Ok(responses)
    }

    /// A response `caller` POSTed; true when it answered a request sent to that caller.
    pub(super) fn answer(&self, caller: &str, id: &str, answer: ClientAnswer) -> bool {
        let mut pending = self.pending.lock().expect("client requests lock");
        match pending.get(id) {
            Some(request) if &*request.caller == caller => {}
            _ => return false,
        }
        let request = pending.remove(id).expect("looked up under the same lock");
        request.answer.send(answer).is_ok()
    }
}

fn cancelled(tool: &str) -> Error {
    Error::new(ErrorKind::Cancelled, format!("tool '{tool}' was waiting for its caller's input when the call was cancelled"))
}

/// The client answered a request with a JSON-RPC error (it cannot elicit, sample or list roots).
fn refused(tool: &str, method: &str, error: &Value) -> Error {
    let code = error.get("code").map_or_else(|| "no code".to_owned(), Value::to_string);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
    Error::new(
        ErrorKind::RemoteError,
        format!("tool '{tool}' asked its caller for input ({method}), and the client answered with error {code}: {message}"),
    )
}

/// The error of a legacy call whose handler asked for input more than [`MAX_ROUNDS`] times.
pub(super) fn too_many_rounds(tool: &str) -> Error {
    Error::new(
        ErrorKind::HandlerResult,
        format!("tool '{tool}' asked its caller for input {MAX_ROUNDS} times in one call; a handler must answer once it has the input it asked for"),
    )
}

/// The id of a response a client POSTed, when it can answer one of ours (a string).
pub(super) fn response_id(id: &serde_json::value::RawValue) -> Option<String> {
    serde_json::from_str::<String>(id.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(requests: Value) -> InputRequired {
        InputRequired::from_json(json!({"inputRequests": requests})).expect("valid input requests")
    }

    /// The requests as the client reads them off the stream.
    fn sent(stream: &mut tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> Vec<Value> {
        std::iter::from_fn(|| stream.try_recv().ok()).map(|b| serde_json::from_slice(&b).expect("JSON")).collect()
    }

    #[tokio::test]
    async fn each_request_goes_out_with_its_own_id_and_the_answers_come_back_by_key() {
        let table = ClientRequests::default();
        let (reporter, stream) = Reporter::new(None, Some(crate::report::LogLevel::Info));
        let mut stream = stream.expect("a legacy request has a stream");
        let caller: Arc<str> = Arc::from("spiffe://mesh/agent/a");
        let input = asking(json!({
            "name": {"method": "elicitation/create", "params": {"message": "Who?", "requestedSchema": {"type": "object"}}},
            "roots": {"method": "roots/list"},
        }));
        let asked = table.ask("greet", &caller, &input, &reporter);
        tokio::pin!(asked);
        assert!(futures_poll_once(asked.as_mut()).await.is_none(), "it waits for the answers");
        let requests = sent(&mut stream);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0]["method"], "elicitation/create");
        assert_eq!(requests[0]["params"]["message"], "Who?");
        assert_eq!(requests[1]["params"], json!({}), "a request without params is sent with empty ones");
        let ids: Vec<&str> = requests.iter().map(|r| r["id"].as_str().expect("string ids")).collect();
        assert_ne!(ids[0], ids[1]);
        assert!(!table.answer("spiffe://mesh/agent/other", ids[0], Ok(json!({}))), "another identity cannot answer");
        assert!(!table.answer(&caller, "toolmesh-guessed-0", Ok(json!({}))), "an unknown id answers nothing");
        assert!(table.answer(&caller, ids[1], Ok(json!({"roots": []}))));
        assert!(table.answer(&caller, ids[0], Ok(json!({"action": "accept", "content": {"name": "Ada"}}))));
        let responses = asked.await.expect("both answered");
        assert_eq!(responses["name"], json!({"action": "accept", "content": {"name": "Ada"}}));
        assert_eq!(responses["roots"], json!({"roots": []}));
        assert!(table.pending.lock().expect("lock").is_empty(), "nothing is left waiting");
    }

    #[tokio::test]
    async fn an_error_answer_or_a_cancelled_call_ends_the_wait_and_leaves_nothing_behind() {
        let table = ClientRequests::default();
        let caller: Arc<str> = Arc::from("spiffe://mesh/agent/a");
        let input = asking(json!({"q": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}}));

        let (reporter, stream) = Reporter::new(None, Some(crate::report::LogLevel::Info));
        let mut stream = stream.expect("stream");
        let asked = table.ask("ask", &caller, &input, &reporter);
        tokio::pin!(asked);
        assert!(futures_poll_once(asked.as_mut()).await.is_none());
        let id = sent(&mut stream)[0]["id"].as_str().expect("id").to_owned();
        assert!(table.answer(&caller, &id, Err(json!({"code": -32601, "message": "Method not found"}))));
        let e = asked.await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::RemoteError);
        assert_eq!(
            e.message(),
            "tool 'ask' asked its caller for input (sampling/createMessage), and the client answered with error -32601: Method not found"
        );

        let (reporter, _stream) = Reporter::new(None, Some(crate::report::LogLevel::Info));
        let asked = table.ask("ask", &caller, &input, &reporter);
        tokio::pin!(asked);
        assert!(futures_poll_once(asked.as_mut()).await.is_none());
        reporter.cancel();
        assert_eq!(asked.await.expect_err("cancelled").kind(), ErrorKind::Cancelled);
        assert!(table.pending.lock().expect("lock").is_empty());
    }

    /// Polls `future` once: `Some` when it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
