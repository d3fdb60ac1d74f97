//! The tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`): a modern `tools/call` of a
//! tool that declares task support, from a client that negotiated the extension (in its
//! `_meta` client capabilities, per request), runs as a task unless its handler answers within
//! [`IMMEDIATE_WINDOW`]: the call is answered with the task (`resultType: "task"`) and the handler
//! goes on in the background; the client polls `tasks/get` for its status and inlined result,
//! answers its input requests with `tasks/update`, and may `tasks/cancel` it.
//!
//! A handler's answer settles the task as the synchronous call would have been answered: a
//! result (even `isError`) completes it; a handler that ended without an answer, or with one
//! that is not a valid result, fails it with a JSON-RPC error. Input requests park it in
//! `input_required` until every one is answered; the handler then runs again with the answers
//! and the state it asked for (kept by core, never sent to the client).
//!
//! The extension carries no `notifications/progress` or `notifications/message` for a task ("not
//! supported on tasks in general"): what the handler reports (progress, and log messages at the
//! level the creating call asked for) becomes the task's `statusMessage`, which describes "the
//! current task state", until its next report. The call's metrics and server span end when the
//! task does, with its outcome.

use super::era::Era;
use super::methods::{check_required_capabilities, outcome_of, tool_answer, Asking};
use super::reply::{json_ok, ErrorMeta, RpcError};
use super::request::{Params, Raw};
use super::stream::{events_response, sse_message, HandlerOutputOrError};
use super::task_store::{Status, Task};
use super::{McpServer, PeerInfo};
use crate::context::{InputAnswers, RequestContext};
use crate::error::{Error, ErrorKind};
use crate::host::{HandlerOutput, LocalTools};
use crate::mcp::*;
use crate::metrics::{Outcome, ServerOperation};
use crate::report::{CancelUnlessAnswered, LogLevel, Notification, NotificationObserver, Reporter};
use crate::server::{Body, Event};
use http::{Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// A handler that answers within this long is answered directly, without a task (the spec's
/// immediate-result shortcut): a fast call costs no polling, and a handler that asks for input
/// at once does so in the call itself (SEP-2322), before any task exists.
pub(super) const IMMEDIATE_WINDOW: Duration = Duration::from_millis(100);

/// One round of a task's handler.
type Round = Pin<Box<dyn Future<Output = HandlerOutputOrError> + Send>>;

/// Whether client capabilities (a modern request's `_meta`) include the tasks extension.
pub(super) fn negotiated(capabilities: &Value) -> bool {
    capabilities.get("extensions").and_then(|e| e.get(TASKS_EXTENSION)).is_some()
}

/// -32021 naming the tasks extension as the missing capability.
pub(super) fn tasks_extension_missing(what: &str) -> RpcError {
    RpcError::new(
        StatusCode::BAD_REQUEST,
        codes::MISSING_CAPABILITY,
        format!(
            "Missing required client capability: {what} needs the {TASKS_EXTENSION} extension; declare it in _meta \
             {META_CLIENT_CAPABILITIES}.extensions"
        ),
    )
    .with_data(json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}))
}

/// Where the handler of a call that may become a task reports: to the task once there is one;
/// what it reports before (within the immediate window) is kept for it.
pub(super) struct TaskReports(Mutex<Reports>);

enum Reports {
    Early(Option<String>),
    Task(Weak<Task>),
}

impl TaskReports {
    fn report(&self, message: String) {
        let mut reports = self.0.lock().expect("task reports lock");
        match &mut *reports {
            Reports::Early(last) => *last = Some(message),
            Reports::Task(task) => {
                let task = task.upgrade();
                drop(reports);
                if let Some(task) = task {
                    task.report(&message);
                }
            }
        }
    }

    /// From now on, reports go to `task` (the last one made before, too).
    fn attach(&self, task: &Arc<Task>) {
        let mut reports = self.0.lock().expect("task reports lock");
        if let Reports::Early(Some(last)) = &*reports {
            task.report(last);
        }
        *reports = Reports::Task(Arc::downgrade(task));
    }
}

/// The reporter of a call that may become a task: its progress, and its log messages at or
/// above `log_level` (the creating request's), become the task's status message.
pub(super) fn reporter(log_level: Option<LogLevel>) -> (Reporter, Arc<TaskReports>) {
    let reports = Arc::new(TaskReports(Mutex::new(Reports::Early(None))));
    let sink = reports.clone();
    let observer = NotificationObserver::new(move |notification| sink.report(status_message(notification))).with_log_level(log_level);
    (Reporter::observed(Some(observer)), reports)
}

/// A report as a status message: a progress report's message (else how far it is), a log
/// message's text (else its data as JSON).
fn status_message(notification: Notification) -> String {
    match notification {
        Notification::Progress { message: Some(message), .. } => message,
        Notification::Progress { progress, total: Some(total), .. } => format!("progress {progress} of {total}"),
        Notification::Progress { progress, total: None, .. } => format!("progress {progress}"),
        Notification::Log { data: Value::String(text), .. } => text,
        Notification::Log { data, .. } => data.to_string(),
    }
}

/// Runs `tool` once with `arguments` and `context`.
fn round(tools: Arc<LocalTools>, tool: Arc<str>, arguments: Value, context: Arc<RequestContext>) -> Round {
    let started = tools.start(&tool, arguments, context);
    Box::pin(async move {
        match started {
            Ok(answer) => tools.output(&tool, answer.await),
            Err(e) => Err(e),
        }
    })
}

impl McpServer {
    /// A `tools/call` that may become a task: answered directly when the handler answers within
    /// [`IMMEDIATE_WINDOW`], else with a new task of `owner` that the handler's rounds settle.
    /// `hold` (the call's place in a concurrency limit) is kept until the task is settled.
    // The parts of the call `tools_call` prepared, each passed once.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call_as_task(
        &self,
        id: &RawValue,
        tool: Arc<str>,
        arguments: Value,
        context: Arc<RequestContext>,
        asking: Asking,
        hold: impl Send + 'static,
        mut operation: ServerOperation,
        owner: &str,
        reports: Arc<TaskReports>,
    ) -> Response<Body> {
        let reporter = context.reporter.clone().expect("a served call has a reporter");
        let abandoned = CancelUnlessAnswered::new(reporter.clone());
        let mut first = round(self.tools.clone(), tool.clone(), arguments.clone(), context.clone());
        if let Ok(outcome) = tokio::time::timeout(IMMEDIATE_WINDOW, first.as_mut()).await {
            abandoned.answered();
            drop(hold);
            operation.ended(outcome_of(&outcome));
            return tool_answer(Era::Modern, id, &self.info_json, outcome, &asking);
        }
        let task = match self.tasks.create(owner, reporter.clone()) {
            Ok(task) => task,
            Err(why) => {
                // `abandoned` cancels the handler: no task will ever hold its answer.
                let e = Error::new(ErrorKind::RateLimited, why);
                operation.ended(Outcome::Error(e.kind()));
                return super::methods::call_result(Era::Modern, id, &self.info_json, e.message(), None, Some(ErrorMeta::of(&e)));
            }
        };
        abandoned.answered();
        reports.attach(&task);
        operation.annotate("toolmesh.task.id", task.id().to_owned());
        tracing::debug!(tool = %tool, caller = %owner, task = task.id(), "tools/call runs as a task");
        let mut created = task.to_json(false);
        created["resultType"] = json!("task");
        created["_meta"] = json!({ META_SERVER_INFO: &*self.info_json });
        let next = {
            let tools = self.tools.clone();
            move |answers: InputAnswers| {
                let mut context = (*context).clone();
                context.input = Some(Arc::new(answers));
                round(tools.clone(), tool.clone(), arguments.clone(), Arc::new(context))
            }
        };
        tokio::spawn(run(task, first, next, self.info_json.clone(), asking, (hold, operation)));
        json_ok(id, &created)
    }

    /// `tasks/get`, `tasks/update` and `tasks/cancel`, for a client that negotiated the
    /// extension, on a task its own identity created (any other is unknown: -32602).
    pub(super) fn tasks_method(&self, method: &str, params: &Params, peer: &PeerInfo) -> Result<Value, RpcError> {
        let declared = params.meta().and_then(|m| m.client_capabilities).and_then(|raw| serde_json::from_str::<Value>(raw.0.get()).ok());
        if !declared.as_ref().is_some_and(negotiated) {
            return Err(tasks_extension_missing(method));
        }
        let invalid = |why: String| RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, format!("Invalid params: {why}"));
        let Some(task_id) = params.task_id.and_then(Raw::as_str) else {
            return Err(invalid(format!("{method} needs a string 'taskId'")));
        };
        let Some(task) = self.tasks.get(&peer.identity, &task_id) else {
            return Err(invalid(format!("unknown task '{}'", crate::text::escape(&task_id))));
        };
        Ok(match method {
            "tasks/get" => task.to_json(true),
            "tasks/update" => {
                task.answer(input_responses(params.input_responses.as_ref()).map_err(invalid)?);
                json!({})
            }
            _ => {
                task.cancel("cancelled by its caller (tasks/cancel)");
                json!({})
            }
        })
    }
}

impl McpServer {
    /// `subscriptions/listen` naming `notifications.taskIds`, for `notifications/tasks` (the
    /// extension's status notifications; no other kind is served on it yet): an event stream that acknowledges the requested `taskIds` that name tasks of the caller's
    /// own (any other is left out of the acknowledgement, as an unknown id would be), then
    /// sends each such task's DetailedTask — what `tasks/get` would answer — now and at every
    /// change. Each message carries the subscription's id (the listen request's id) in `_meta`.
    /// The stream ends once every task it follows has ended (nothing more can change), or when
    /// the client closes it.
    pub(super) fn listen_to_tasks(&self, id: &RawValue, params: &Params, peer: &PeerInfo) -> Result<Response<Body>, RpcError> {
        let declared = params.meta().and_then(|m| m.client_capabilities).and_then(|raw| serde_json::from_str::<Value>(raw.0.get()).ok());
        if !declared.as_ref().is_some_and(negotiated) {
            return Err(tasks_extension_missing("subscriptions/listen for task notifications"));
        }
        let invalid = |why: &str| RpcError::new(StatusCode::OK, codes::INVALID_PARAMS, format!("Invalid params: {why}"));
        let Some(Value::Array(requested)) = params.notifications.as_ref().and_then(|n| n.get("taskIds")) else {
            return Err(invalid("'notifications.taskIds' must be an array of task ids"));
        };
        let Some(requested) = requested.iter().map(Value::as_str).collect::<Option<Vec<&str>>>() else {
            return Err(invalid("'notifications.taskIds' must hold strings (task ids)"));
        };
        // Held by the stream until it is dropped: its place in the identity's bound on listens.
        let slot = self.listeners.task_stream(&peer.identity)?;
        let mut followed: Vec<Arc<Task>> = Vec::new();
        for task_id in requested {
            if let Some(task) = self.tasks.get(&peer.identity, task_id) {
                if !followed.iter().any(|t| t.id() == task.id()) {
                    followed.push(task);
                }
            }
        }
        let subscription = id.get().trim_matches('"').to_owned();
        let meta = json!({ META_SUBSCRIPTION_ID: subscription });
        let notification = move |method: &str, mut params: Value| {
            params["_meta"] = meta.clone();
            sse_message(&serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method, "params": params})).expect("JSON serializes"))
        };
        let (events, stream) = mpsc::unbounded_channel();
        let ids: Vec<&str> = followed.iter().map(|t| t.id()).collect();
        let acknowledged = notification("notifications/subscriptions/acknowledged", json!({"notifications": {"taskIds": ids}}));
        let _ = events.send(Event { bytes: acknowledged, last: false });
        // One follower per task, each with a sender of the stream: it ends (cleanly) when the
        // last of them has sent its task's end.
        let notification = Arc::new(notification);
        for task in followed {
            let (events, notification) = (events.clone(), notification.clone());
            tokio::spawn(async move {
                let mut watch = task.watch();
                loop {
                    watch.mark_unchanged();
                    let ended = task.status().is_terminal();
                    if events.send(Event { bytes: notification("notifications/tasks", task.to_json(true)), last: false }).is_err() || ended
                    {
                        return;
                    }
                    tokio::select! {
                        biased;
                        () = events.closed() => return,
                        _ = watch.changed() => {}
                    }
                }
            });
        }
        Ok(events_response(stream, move || drop(slot)))
    }
}

/// `tasks/update`'s `inputResponses`: an object of the client's results (objects) by key.
fn input_responses(given: Option<&Value>) -> Result<Map<String, Value>, String> {
    match given {
        Some(Value::Object(responses)) => match responses.iter().find(|(_, response)| !response.is_object()) {
            Some((key, _)) => Err(format!("inputResponses.{key} must be an object (the client's result for that request)")),
            None => Ok(responses.clone()),
        },
        _ => Err("tasks/update needs 'inputResponses', an object of the client's results by request key".into()),
    }
}

/// Drives a task's handler, round after round, until it settles or is cancelled. `hold` (the
/// call's place in a concurrency limit) is let go, and the call's operation recorded with the
/// task's outcome (cancelled unless it settled), when it does.
async fn run(
    task: Arc<Task>,
    mut round: Round,
    next: impl Fn(InputAnswers) -> Round,
    info_json: Arc<RawValue>,
    asking: Asking,
    (hold, mut operation): (impl Send, ServerOperation),
) {
    let _hold = hold;
    loop {
        let outcome = tokio::select! {
            biased;
            () = task.reporter.cancelled() => return,
            outcome = &mut round => outcome,
        };
        let input = match outcome {
            Ok(HandlerOutput::InputRequired(input)) => input,
            outcome => {
                let ended = outcome_of(&outcome);
                let (status, settled) = settle(outcome, &info_json, &asking);
                // A task cancelled meanwhile stays cancelled, and so is recorded.
                if task.finish(status, settled) {
                    operation.ended(ended);
                }
                return;
            }
        };
        let needed: Vec<String> = input.required_capabilities().iter().map(|c| (*c).to_owned()).collect();
        if let Err(e) = check_required_capabilities(format_args!("tool '{}'", asking.tool), &needed, asking.declared.as_deref()) {
            if task.finish(Status::Failed, serde_json::to_value(&e).expect("an error serializes")) {
                operation.ended(Outcome::Rpc(e.code()));
            }
            return;
        }
        if !task.ask(input.input_requests) {
            return;
        }
        tokio::select! {
            biased;
            () = task.reporter.cancelled() => return,
            () = task.answered.notified() => {}
        }
        round = next(InputAnswers { responses: task.take_answers(), state: input.request_state });
    }
}

/// How a handler's last answer settles its task: with the result the call would have been
/// answered with (`completed`, even when `isError`), or with a JSON-RPC error (`failed`) when the
/// handler ended without an answer or with one that is not a valid result.
fn settle(outcome: HandlerOutputOrError, info_json: &RawValue, asking: &Asking) -> (Status, Value) {
    if let Err(e) = &outcome {
        if matches!(e.kind(), ErrorKind::HandlerDropped | ErrorKind::HandlerResult | ErrorKind::Internal) {
            return (Status::Failed, json!({"code": codes::INTERNAL_ERROR, "message": e.message(), "data": ErrorMeta::of(e)}));
        }
    }
    // Written as the synchronous call's answer (one path for both, so they cannot differ), then
    // read back: a task settles once, off the hot path.
    let answer = tool_answer(Era::Modern, RawValue::NULL, info_json, outcome, asking);
    let body = answer.into_body().into_whole().unwrap_or_default();
    let mut message: Value = serde_json::from_slice(&body).unwrap_or_default();
    match (message.get_mut("result").map(Value::take), message.get_mut("error").map(Value::take)) {
        (Some(result), _) => (Status::Completed, result),
        (None, Some(error)) => (Status::Failed, error),
        (None, None) => (Status::Failed, json!({"code": codes::INTERNAL_ERROR, "message": "the tool's answer could not be read"})),
    }
}
