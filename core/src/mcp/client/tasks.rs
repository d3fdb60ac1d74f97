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
        (task_id, interval): (String, Duration),
        hop: &TraceContext,
    ) -> Result<Value, RequestError> {
        let mut cancel_unless_ended = CancelTask { client: self.clone(), endpoint: endpoint.to_owned(), task_id: Some(task_id.clone()) };
        let task = self.poll_until_settled(endpoint, &task_id, interval, hop).await?;
        if task.get("status").and_then(Value::as_str) == Some("input_required") {
            // A task that asks for input is left for no one: it is cancelled (on drop).
            return Err(RequestError {
                error: Error::new(
                    ErrorKind::RemoteError,
                    format!(
                        "tool '{tool}' (task {task_id} at {endpoint}) asks its caller for input, which a mesh call cannot give; \
                         the task is cancelled"
                    ),
                ),
                delivered: true,
            });
        }
        cancel_unless_ended.task_id = None;
        settled_value(&task, (tool, shape), endpoint, &task_id).map_err(|error| RequestError { error, delivered: true })
    }

    /// Polls `tasks/get` for `task_id` at `endpoint` until the task leaves `working`: the task
    /// as last reported. A provider that can no longer be reached has lost the task with it:
    /// that fails the call as delivered, so that it is not made again at another provider (the
    /// tool may have acted already).
    async fn poll_until_settled(
        &self,
        endpoint: &str,
        task_id: &str,
        mut interval: Duration,
        hop: &TraceContext,
    ) -> Result<Value, RequestError> {
        loop {
            tokio::time::sleep(interval).await;
            let task = self.task_request(endpoint, "tasks/get", task_id, hop).await.map_err(|RequestError { error, .. }| {
                let error = if error.is_unreachable() {
                    error.context(format!(
                        "task {task_id} is lost: the agent at {endpoint} that holds it can no longer be reached, and a task \
                         lives only in the agent that created it; call the tool again if it is safe to repeat"
                    ))
                } else {
                    error
                };
                RequestError { error, delivered: true }
            })?;
            interval = poll_interval(&task);
            if task.get("status").and_then(Value::as_str) != Some("working") {
                return Ok(task);
            }
        }
    }

    /// Starts `provider`'s tool as a task the caller follows itself (`toolmesh call --task`):
    /// the task the provider created (its CreateTaskResult), or the result it answered with at
    /// once, in `shape` (the tasks extension lets a fast handler answer directly).
    pub async fn start_task(
        &self,
        provider: &Provider,
        arguments: &Value,
        context: &RequestContext,
        shape: ResultShape,
    ) -> Result<StartedTask, RequestError> {
        let tool = provider.tool.as_str();
        let endpoint = provider.endpoint.as_str();
        let call =
            ToolCall { tool, arguments, param_headers: &provider.param_headers, shape, provider: Some(&provider.agent_id), tasks: true };
        let (hop, mut span) = self.hop("tools/call", Some(tool), endpoint, context, Some(&provider.agent_name));
        let result = match self.post(endpoint, "tools/call", Some(call), context, &hop).await {
            Ok(response) => {
                answered_by(span.as_mut(), &response);
                let created = serde_json::from_slice::<Value>(response.body())
                    .ok()
                    .and_then(|mut reply| reply.get_mut("result").map(Value::take))
                    .filter(|result| result.get("resultType").and_then(Value::as_str) == Some("task"));
                match created {
                    Some(task) => Ok(StartedTask::Created(task)),
                    None => match decode_call_response(tool, endpoint, response, shape) {
                        Ok(Decoded::Value(value)) => Ok(StartedTask::Answered(value)),
                        Ok(Decoded::InputRequired(_)) => Err(Error::new(
                            ErrorKind::RemoteError,
                            format!("tool '{tool}' at {endpoint} asks its caller for input before any task exists, which this caller cannot give"),
                        )),
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

    /// The task `task_id` at `endpoint` as `tasks/get` reports it now.
    pub async fn get_task(&self, endpoint: &str, task_id: &str) -> Result<Value, Error> {
        self.task_request(endpoint, "tasks/get", task_id, &self.tracer.root()).await.map_err(|e| e.error)
    }

    /// Cancels the task `task_id` at `endpoint`: the task as `tasks/get` reports it then
    /// (`tasks/cancel` answers with nothing).
    pub async fn cancel_task(&self, endpoint: &str, task_id: &str) -> Result<Value, Error> {
        let hop = self.tracer.root();
        self.task_request(endpoint, "tasks/cancel", task_id, &hop).await.map_err(|e| e.error)?;
        self.task_request(endpoint, "tasks/get", task_id, &hop).await.map_err(|e| e.error)
    }

    /// Waits for the task `task_id` at `endpoint` to end, without cancelling it if the wait is
    /// dropped: its result in `shape`, or the error it ended with. A task that asks for input
    /// ends the wait with [`ErrorKind::InputRequired`] (the task is left waiting for it).
    pub async fn wait_for_task(&self, endpoint: &str, task_id: &str, shape: ResultShape) -> Result<Value, Error> {
        let hop = self.tracer.root();
        let first = self.task_request(endpoint, "tasks/get", task_id, &hop).await.map_err(|e| e.error)?;
        let task = match first.get("status").and_then(Value::as_str) {
            Some("working") => self.poll_until_settled(endpoint, task_id, poll_interval(&first), &hop).await.map_err(|e| e.error)?,
            _ => first,
        };
        if task.get("status").and_then(Value::as_str) == Some("input_required") {
            return Err(Error::new(
                ErrorKind::InputRequired,
                format!("task {task_id} at {endpoint} waits for input its caller must give (tasks/update); `toolmesh task get` shows what it asks"),
            ));
        }
        settled_value(&task, ("task", shape), endpoint, task_id)
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

/// What a task that left `working` (and does not wait for input) ended with: its inlined
/// result in `shape`, or the error it failed or was cancelled with.
fn settled_value(task: &Value, (tool, shape): (&str, ResultShape), endpoint: &str, task_id: &str) -> Result<Value, Error> {
    match task.get("status").and_then(Value::as_str) {
        Some("completed") => {
            let reply = serde_json::to_vec(&serde_json::json!({"result": task.get("result")})).expect("JSON serializes");
            match value_of_reply((tool, shape), endpoint, &reply, (http::StatusCode::OK, &reply))? {
                Decoded::Value(value) => Ok(value),
                Decoded::InputRequired(_) => Err(Error::new(
                    ErrorKind::Protocol,
                    format!("task {task_id} at {endpoint} completed with a request for input, which the tasks extension answers as status input_required"),
                )),
            }
        }
        Some("failed") => Err(remote_rpc_error(tool, task.get("error").unwrap_or(&Value::Null))),
        Some("cancelled") => Err(Error::new(
            ErrorKind::Cancelled,
            format!("tool '{tool}' ran as task {task_id} at {endpoint}, which was cancelled before it ended"),
        )),
        other => Err(Error::new(
            ErrorKind::Protocol,
            format!("{endpoint} answered tasks/get for task {task_id} with status {other:?}, not one the tasks extension defines"),
        )),
    }
}

/// How a provider answered a call made as a task ([`McpClient::start_task`]).
pub enum StartedTask {
    /// The task it created (the CreateTaskResult: `taskId`, `status`, `pollIntervalMs`, ...).
    Created(Value),
    /// The result, answered at once without a task.
    Answered(Value),
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
