//! A mesh call to a tool that runs only as a task (`execution.taskSupport: "required"`, the MCP
//! tasks extension): the callee refuses a call that did not negotiate the extension (-32021
//! naming it), so the call is made again declaring it; answered with a task (`resultType:
//! "task"`), the client polls `tasks/get` at the interval the callee asks for until the task
//! ends, and returns its inlined result as the synchronous call would have. A call dropped
//! before then (its caller's deadline, or cancellation) cancels the task with `tasks/cancel`.
//!
//! Only a required-task tool costs the extra round trip: a mesh call does not declare the
//! extension first, so an `"optional"` tool answers it directly rather than as a task polled
//! at half-second steps.

use super::*;
use std::time::Duration;

/// The polling interval used when the callee asks for none, and the bounds on the one it asks
/// for (a callee cannot make a caller spin, nor wait for minutes between polls).
const DEFAULT_POLL: Duration = Duration::from_millis(500);
const POLL_BOUNDS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(5));

/// Whether `response` is a refusal for want of the tasks extension (-32021 naming it).
pub(super) fn needs_tasks(response: &http::Response<Bytes>) -> bool {
    if response.status() != http::StatusCode::BAD_REQUEST {
        return false;
    }
    let Ok(reply) = serde_json::from_slice::<Value>(response.body()) else { return false };
    reply.pointer("/error/code").and_then(Value::as_i64) == Some(codes::MISSING_CAPABILITY)
        && reply.pointer("/error/data/requiredCapabilities/extensions").and_then(|e| e.get(TASKS_EXTENSION)).is_some()
}

/// The task a `tools/call` answer created, if it is a CreateTaskResult: its id and polling interval.
pub(super) fn created_task(response: &http::Response<Bytes>) -> Option<(String, Duration)> {
    let reply: Value = serde_json::from_slice(response.body()).ok()?;
    let result = reply.get("result").filter(|r| r.get("resultType").and_then(Value::as_str) == Some("task"))?;
    Some((result.get("taskId")?.as_str()?.to_owned(), poll_interval(result)))
}

fn poll_interval(task: &Value) -> Duration {
    task.get("pollIntervalMs").and_then(Value::as_u64).map_or(DEFAULT_POLL, Duration::from_millis).clamp(POLL_BOUNDS.0, POLL_BOUNDS.1)
}

impl McpClient {
    /// Follows the task `task_id` that `endpoint` created for a call of `tool` to its end: its
    /// result in `shape`, or the error the call would have had.
    pub(super) async fn follow_task(
        &self,
        endpoint: &str,
        (tool, shape): (&str, ResultShape),
        (task_id, mut interval): (String, Duration),
        hop: &TraceContext,
    ) -> Result<Value, RequestError> {
        let delivered = |error| RequestError { error, delivered: true };
        let mut cancel_unless_ended = CancelTask { client: self.clone(), endpoint: endpoint.to_owned(), task_id: Some(task_id.clone()) };
        loop {
            tokio::time::sleep(interval).await;
            let task = self.task_request(endpoint, "tasks/get", &task_id, hop).await?;
            interval = poll_interval(&task);
            let ended = match task.get("status").and_then(Value::as_str) {
                Some("working") => continue,
                Some("completed") => {
                    let reply = serde_json::to_vec(&serde_json::json!({"result": task.get("result")})).expect("JSON serializes");
                    match value_of_reply((tool, shape), endpoint, &reply, (http::StatusCode::OK, &reply)) {
                        Ok(Decoded::Value(value)) => Ok(value),
                        Ok(Decoded::InputRequired(_)) => Err(delivered(Error::new(
                            ErrorKind::Protocol,
                            format!("task {task_id} at {endpoint} completed with a request for input, which the tasks extension answers as status input_required"),
                        ))),
                        Err(error) => Err(delivered(error)),
                    }
                }
                Some("failed") => Err(delivered(remote_rpc_error(tool, task.get("error").unwrap_or(&Value::Null)))),
                Some("cancelled") => Err(delivered(Error::new(
                    ErrorKind::Cancelled,
                    format!("tool '{tool}' ran as task {task_id} at {endpoint}, which was cancelled before it ended"),
                ))),
                Some("input_required") => Err(delivered(Error::new(
                    ErrorKind::RemoteError,
                    format!(
                        "tool '{tool}' (task {task_id} at {endpoint}) asks its caller for input, which a mesh call cannot give; \
                         the task is cancelled"
                    ),
                ))),
                other => Err(delivered(Error::new(
                    ErrorKind::Protocol,
                    format!("{endpoint} answered tasks/get for task {task_id} with status {other:?}, not one the tasks extension defines"),
                ))),
            };
            // A task that asks for input is left for no one: it is cancelled too.
            if task.get("status").and_then(Value::as_str) != Some("input_required") {
                cancel_unless_ended.task_id = None;
            }
            return ended;
        }
    }

    /// One task method (`tasks/get`, `tasks/cancel`) on `task_id` at `endpoint`: its result.
    async fn task_request(&self, endpoint: &str, method: &'static str, task_id: &str, hop: &TraceContext) -> Result<Value, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut meta: Value = serde_json::from_str(&format!("{}}}", constant_meta())).expect("the constant _meta is JSON");
        meta[META_CLIENT_CAPABILITIES] = serde_json::json!({"extensions": {TASKS_EXTENSION: {}}});
        meta["traceparent"] = Value::String(hop.traceparent().as_str().to_owned());
        let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"taskId": task_id, "_meta": meta}});
        let failed = |error| RequestError { error, delivered: false };
        let mut request = http::Request::new(Full::new(Bytes::from(body.to_string())));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() =
            endpoint.parse().map_err(|e: http::uri::InvalidUri| failed(Error::new(ErrorKind::InvalidConfig, e.to_string())))?;
        let headers = request.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert(HeaderName::from_static(HEADER_PROTOCOL_VERSION), HeaderValue::from_static(MODERN_VERSION));
        headers.insert(HeaderName::from_static(HEADER_METHOD), HeaderValue::from_static(method));
        // The routing header names the task (SEP-2663, "Streamable HTTP: Routing Headers").
        let name = HeaderValue::from_str(&encode_header_value(task_id))
            .map_err(|e| failed(Error::new(ErrorKind::Protocol, format!("task id {task_id:?} cannot be a header: {e}"))))?;
        headers.insert(HeaderName::from_static(HEADER_NAME), name);
        let response = self.http.send(request).await?;
        let reply: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        match (reply.get("result"), reply.get("error")) {
            (Some(result), _) => Ok(result.clone()),
            (None, error) => {
                let message = error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("no JSON-RPC answer");
                Err(RequestError {
                    error: Error::new(ErrorKind::RemoteError, format!("{endpoint} refused {method} for task {task_id}: {message}")),
                    delivered: true,
                })
            }
        }
    }
}

/// Cancels the task at `endpoint` when dropped still holding its id: the call that follows it
/// was dropped (its deadline, its caller gone) or gave up on it.
struct CancelTask {
    client: McpClient,
    endpoint: String,
    task_id: Option<String>,
}

impl Drop for CancelTask {
    fn drop(&mut self) {
        let (Some(task_id), Ok(runtime)) = (self.task_id.take(), tokio::runtime::Handle::try_current()) else { return };
        let (client, endpoint) = (self.client.clone(), std::mem::take(&mut self.endpoint));
        runtime.spawn(async move {
            let hop = client.tracer.root();
            if let Err(e) = client.task_request(&endpoint, "tasks/cancel", &task_id, &hop).await {
                tracing::debug!(task = %task_id, endpoint = %endpoint, error = %e.error, "tasks/cancel of an abandoned task failed");
            }
        });
    }
}
