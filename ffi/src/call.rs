//! `toolmesh_agent_call`: a dependency call from C, whose completion callback runs exactly once.

use crate::boundary::{c_string_lossy, guarded, handle_arg, report, str_arg};
use crate::error::{toolmesh_error, Failure};
use crate::handles::agent::toolmesh_agent;
use crate::handles::call_headers::toolmesh_call_headers;
use crate::handles::invocation::toolmesh_invocation;
use crate::result::*;
use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex};
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::ResultShape;
use toolmesh_core::report::NotificationObserver;
use toolmesh_core::{runtime, Error};

/// Receives the outcome of `toolmesh_agent_call`: `code` is `TOOLMESH_OK`, the text the
/// result as UTF-8 JSON and `error` NULL, or `code` is the error's code, the text its message
/// (the core's message, the same as in every language) and `error` the whole error: for a
/// `TOOLMESH_TOOL_ERROR` also its application code and data (`toolmesh_error_app_code`,
/// `toolmesh_error_data_json`); a handler re-raises it intact with
/// `toolmesh_invocation_fail_with_error`. The text and the error are borrowed for the duration
/// of the callback (never free the error): copy what you keep. `userdata` is the pointer given to `toolmesh_agent_call`,
/// passed back untouched: it is the caller's (toolmesh never frees it), and this one call is the
/// last time toolmesh uses it, so the callback may free it. Runs on a toolmesh host thread (so
/// it may block, and may answer an invocation).
pub type toolmesh_call_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, code: toolmesh_result, text: *const c_char, error: *const toolmesh_error)>;

/// Calls dependency number `dependency_index` (in declaration order) of the local tool `tool`,
/// with `arguments_json` (a JSON object), through the mesh: resolution, load balancing,
/// timeouts, retries and failover are core's. With `invocation` (the request being handled, or
/// NULL outside a handler) the call carries its propagated headers and continues its trace.
///
/// Returns `TOOLMESH_OK` when the call was started: `callback(userdata, ...)` then runs exactly
/// once, on a toolmesh host thread, whatever happens (also when the agent stops or is freed
/// meanwhile), possibly before this returns. Returns an error code, and never calls `callback`,
/// when an argument is wrong (NULL agent, tool or callback; strings that are not UTF-8; arguments
/// that are not JSON). All arguments are borrowed for the call only; `userdata` is the caller's
/// and only passed back.
///
/// # Safety
/// `agent` is NULL or a live agent and `invocation` NULL or a live, unanswered invocation, both
/// borrowed for the call only (the invocation stays the handler's to answer; the call keeps what it
/// needs of its context). `tool` and `arguments_json` are NULL or NUL-terminated strings, borrowed
/// for the call (toolmesh keeps copies). `userdata` is the caller's, never dereferenced or freed by
/// toolmesh, only passed back to `callback`, which may be called on another thread, possibly before
/// this returns; it must stay valid until then. `error_out` is NULL or points to storage for one
/// pointer (borrowed for the call) that receives, on failure only, a new `toolmesh_error` owned by
/// the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_call(
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    tool: *const c_char,
    dependency_index: usize,
    arguments_json: *const c_char,
    callback: toolmesh_call_callback,
    userdata: *mut c_void,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    // SAFETY: the caller's guarantees are those of `start_call`, with no call headers.
    unsafe {
        start_call(
            "toolmesh_agent_call",
            agent,
            invocation,
            std::ptr::null(),
            Call { tool, dependency_index, shape: ResultShape::Value, on_update: None },
            arguments_json,
            callback,
            userdata,
            error_out,
        )
    }
}

/// `toolmesh_agent_call` with headers set on purpose (`headers`, NULL for none): the handler the
/// call reaches sees them whatever its agent's allow-list, and they go further only where
/// allow-lists name them (see `toolmesh_call_headers`). With `invocation`, they are added to the
/// headers it sends onward. Everything else is as for `toolmesh_agent_call`; the set is only
/// borrowed for the call, which keeps what it needs.
///
/// # Safety
/// As for `toolmesh_agent_call`; `headers` is NULL or a live set of call headers, borrowed for
/// the call and not changed by another thread during it.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_call_with_headers(
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    headers: *const toolmesh_call_headers,
    tool: *const c_char,
    dependency_index: usize,
    arguments_json: *const c_char,
    callback: toolmesh_call_callback,
    userdata: *mut c_void,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    // SAFETY: the caller's guarantees are those of `start_call`.
    unsafe {
        start_call(
            "toolmesh_agent_call_with_headers",
            agent,
            invocation,
            headers,
            Call { tool, dependency_index, shape: ResultShape::Value, on_update: None },
            arguments_json,
            callback,
            userdata,
            error_out,
        )
    }
}

/// `toolmesh_agent_call_with_headers` (`headers` may be NULL) whose callback receives the
/// callee's whole tool result instead of one value: MCP's `CallToolResult` as JSON,
/// `{"content": [...], "structuredContent"?: ...}`, every content item (image, audio, resource
/// link, embedded resource, text) as the callee sent it. A handler can answer with it unchanged
/// through `toolmesh_invocation_complete_result`. A failed tool is an error, as for
/// `toolmesh_agent_call`.
///
/// # Safety
/// As for `toolmesh_agent_call_with_headers`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_call_for_result(
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    headers: *const toolmesh_call_headers,
    tool: *const c_char,
    dependency_index: usize,
    arguments_json: *const c_char,
    callback: toolmesh_call_callback,
    userdata: *mut c_void,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    // SAFETY: the caller's guarantees are those of `start_call`.
    unsafe {
        start_call(
            "toolmesh_agent_call_for_result",
            agent,
            invocation,
            headers,
            Call { tool, dependency_index, shape: ResultShape::Whole, on_update: None },
            arguments_json,
            callback,
            userdata,
            error_out,
        )
    }
}

/// `toolmesh_agent_call_with_headers` (`headers` may be NULL) that hands the callee's reports to
/// the caller instead of relaying them to the handler's own caller: `on_update(userdata,
/// update_json)` receives each one as it arrives, `{"kind": "progress", "progress": 1, "total":
/// 2, "message": "..."}` (total and message optional) or `{"kind": "log", "level": "warning",
/// "data": <any JSON>, "logger": "..."}` (logger optional; every level from `debug`), on a
/// toolmesh host thread, one at a time, in order, all before `callback` runs. The JSON is
/// borrowed for the duration of `on_update`. The handler may re-emit or transform them
/// (`toolmesh_invocation_progress`, `toolmesh_invocation_log`). Everything else is as for
/// `toolmesh_agent_call`; `on_update` NULL is refused like a NULL `callback`.
///
/// # Safety
/// As for `toolmesh_agent_call_with_headers`; `userdata` is passed to `on_update` as well, from
/// another thread, and must stay valid until `callback` has run.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_agent_call_observed(
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    headers: *const toolmesh_call_headers,
    tool: *const c_char,
    dependency_index: usize,
    arguments_json: *const c_char,
    on_update: toolmesh_call_update_callback,
    callback: toolmesh_call_callback,
    userdata: *mut c_void,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    if on_update.is_none() {
        // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
        return unsafe { report(Err(Failure::null_argument("on_update")), error_out) };
    }
    // SAFETY: the caller's guarantees are those of `start_call`.
    unsafe {
        start_call(
            "toolmesh_agent_call_observed",
            agent,
            invocation,
            headers,
            Call { tool, dependency_index, shape: ResultShape::Value, on_update },
            arguments_json,
            callback,
            userdata,
            error_out,
        )
    }
}

/// Receives one report of an observed call's callee (`toolmesh_agent_call_observed`): `userdata`
/// as given, and the report as UTF-8 JSON, borrowed for the call. Runs on a toolmesh host thread.
pub type toolmesh_call_update_callback = Option<unsafe extern "C" fn(userdata: *mut c_void, update_json: *const c_char)>;

/// What a call export asks for: the local tool, its dependency's index, the shape of result the
/// caller takes, and whether (to whom) the callee's reports go.
struct Call {
    tool: *const c_char,
    dependency_index: usize,
    shape: ResultShape,
    on_update: toolmesh_call_update_callback,
}

/// The body of the call exports (`function` names the one called).
///
/// # Safety
/// The guarantees `toolmesh_agent_call_with_headers` documents.
#[allow(clippy::too_many_arguments)]
unsafe fn start_call(
    function: &str,
    agent: *const toolmesh_agent,
    invocation: *const toolmesh_invocation,
    headers: *const toolmesh_call_headers,
    call: Call,
    arguments_json: *const c_char,
    callback: toolmesh_call_callback,
    userdata: *mut c_void,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let Call { tool, dependency_index, shape, on_update } = call;
    let outcome = guarded(function, || {
        // SAFETY: NULL or live, as the caller guarantees.
        let agent = unsafe { handle_arg(agent, "agent") }?.agent.clone();
        // SAFETY: NULL or live and unanswered, as the caller guarantees.
        let context = unsafe { invocation.as_ref() }.map(toolmesh_invocation::context);
        // SAFETY: NULL or live and not changed during the call, as the caller guarantees.
        let headers = unsafe { headers.as_ref() }.map(|h| h.headers.as_slice()).unwrap_or_default();
        let mut context = RequestContext::for_call(context, headers)?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let (tool, arguments) = unsafe { (str_arg(tool, "tool")?.to_owned(), str_arg(arguments_json, "arguments_json")?) };
        let arguments = serde_json::from_str(arguments)
            .map_err(|e| Failure::new(TOOLMESH_INVALID_JSON, format!("the call arguments are not JSON: {e}")))?;
        let callback = callback.ok_or_else(|| Failure::null_argument("callback"))?;
        let completion = CallCompletion { target: Some((callback, UserData(userdata))) };
        // An observed call's reports, then its result, run one after another on host threads.
        let ordered = on_update.map(|on_update| {
            let ordered = Arc::new(Ordered::default());
            let reports = ordered.clone();
            let userdata = UserData(userdata);
            let observer = NotificationObserver::new(move |update| {
                let json = c_string_lossy(update.to_json().to_string());
                let userdata = UserData(userdata.pointer());
                // SAFETY: the contract of `toolmesh_agent_call_observed`: `on_update` takes the
                // caller's userdata and a NUL-terminated JSON text borrowed for the call.
                reports.push(move || unsafe { on_update(userdata.pointer(), json.as_ptr()) });
            });
            let base = context.as_deref().cloned().unwrap_or_default();
            context = Some(Arc::new(RequestContext { on_notification: Some(observer), ..base }));
            ordered
        });
        runtime::spawn_settled(
            async move { agent.call_shaped(&tool, dependency_index, arguments, context, shape).await },
            move |outcome| {
                let deliver = move || completion.deliver(outcome.map(|value| value.to_string()));
                match ordered {
                    Some(ordered) => ordered.push(deliver),
                    None => crate::host_threads::spawn(deliver),
                }
            },
        );
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

type Callback = unsafe extern "C" fn(*mut c_void, toolmesh_result, *const c_char, *const toolmesh_error);

/// The caller's `userdata`, passed back untouched.
struct UserData(*mut c_void);

// SAFETY: `toolmesh_agent_call` documents that the callback is called on another thread with
// `userdata`; toolmesh itself never dereferences it.
unsafe impl Send for UserData {}
// SAFETY: as for `Send`: shared only to be copied into the jobs that pass it back.
unsafe impl Sync for UserData {}

impl UserData {
    /// The pointer (a method, so that a closure captures the whole `Send` wrapper).
    fn pointer(&self) -> *mut c_void {
        self.0
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Jobs run one after another, in the order pushed, each on a host thread; none pins a thread
/// while the queue is empty.
#[derive(Default)]
struct Ordered {
    queue: Mutex<(VecDeque<Job>, bool)>,
}

impl Ordered {
    fn push(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.0.push_back(Box::new(job));
        if !std::mem::replace(&mut queue.1, true) {
            let ordered = self.clone();
            crate::host_threads::spawn(move || ordered.drain());
        }
    }

    fn drain(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                match queue.0.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.1 = false;
                        return;
                    }
                }
            };
            job();
        }
    }
}

/// The one answer a call owes its caller. Delivered by `deliver`, on a host thread; if it is
/// dropped undelivered (the runtime went away with the task, maybe on a runtime thread), it
/// hands the answer `TOOLMESH_SHUTDOWN` to a host thread as it goes.
struct CallCompletion {
    target: Option<(Callback, UserData)>,
}

impl CallCompletion {
    fn deliver(mut self, outcome: Result<String, Error>) {
        match outcome {
            Ok(json) => self.fire(TOOLMESH_OK, &c_string_lossy(json), None),
            Err(error) => {
                let error = toolmesh_error::from(Failure::from(error));
                self.fire(error.code(), error.message(), Some(&error))
            }
        }
    }

    fn fire(&mut self, code: toolmesh_result, text: &CStr, error: Option<&toolmesh_error>) {
        if let Some((callback, userdata)) = self.target.take() {
            let error = error.map_or(std::ptr::null(), |e| e as *const toolmesh_error);
            // SAFETY: the contract of `toolmesh_agent_call`: the callback takes its userdata, a
            // code, a string and an error (or NULL), both borrowed for the call; `take` makes
            // this the only call.
            unsafe { callback(userdata.0, code, text.as_ptr(), error) };
        }
    }
}

impl Drop for CallCompletion {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            crate::host_threads::spawn(move || {
                let mut abandoned = CallCompletion { target: Some(target) };
                let error = toolmesh_error::from(Failure::new(
                    TOOLMESH_SHUTDOWN,
                    "the call was abandoned: toolmesh shut down before it finished",
                ));
                abandoned.fire(error.code(), error.message(), Some(&error));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{toolmesh_error_app_code, toolmesh_error_data_json};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    use toolmesh_core::ErrorKind;

    /// What one test's callback received, and the thread it ran on.
    type Received = Mutex<Vec<(toolmesh_result, String, String)>>;

    unsafe extern "C" fn record(userdata: *mut c_void, code: toolmesh_result, text: *const c_char, error: *const toolmesh_error) {
        // SAFETY: the tests pass a live `Received` and a NUL-terminated text.
        let (received, text) = unsafe { (&*(userdata as *const Received), CStr::from_ptr(text)) };
        let mut text = text.to_string_lossy().into_owned();
        // SAFETY: NULL or the error borrowed for this callback.
        match unsafe { error.as_ref() } {
            None => assert_eq!(code, TOOLMESH_OK, "a failure comes with its error"),
            Some(error) => {
                assert_eq!(
                    (error.code(), error.message().to_str().unwrap()),
                    (code, text.as_str()),
                    "the error is the one reported"
                );
                // SAFETY: a live error; the strings it lends are NUL-terminated.
                let (app_code, data) = unsafe { (toolmesh_error_app_code(error), toolmesh_error_data_json(error)) };
                if !app_code.is_null() {
                    // SAFETY: as above.
                    let (app_code, data) = unsafe { (CStr::from_ptr(app_code), CStr::from_ptr(data)) };
                    text = format!("{} {text} {}", app_code.to_str().unwrap(), data.to_str().unwrap());
                }
            }
        }
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        received.lock().unwrap().push((code, text, thread));
    }

    fn completion(received: &Received) -> CallCompletion {
        CallCompletion { target: Some((record, UserData(received as *const Received as *mut c_void))) }
    }

    fn wait_for(received: &Received, count: usize) -> Vec<(toolmesh_result, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.lock().unwrap().len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20)); // room for a second delivery
        received.lock().unwrap().clone()
    }

    #[test]
    fn a_completion_is_delivered_once() {
        let received = Received::default();
        completion(&received).deliver(Ok("42".to_owned()));
        completion(&received).deliver(Err(Error::new(ErrorKind::Timeout, "no answer within 200 ms")));
        let refused = Error::tool_error("unknown_sku", "no such sku: X", Some(serde_json::json!({"sku": "X"}))).unwrap();
        completion(&received).deliver(Err(refused));
        let here = std::thread::current().name().unwrap_or("").to_owned();
        assert_eq!(
            wait_for(&received, 3),
            [
                (TOOLMESH_OK, "42".to_owned(), here.clone()),
                (TOOLMESH_TIMEOUT, "no answer within 200 ms".to_owned(), here.clone()),
                (TOOLMESH_TOOL_ERROR, r#"unknown_sku no such sku: X {"sku":"X"}"#.to_owned(), here)
            ]
        );
    }

    /// Dropped on the test's thread (standing for a runtime worker that drops the task), the
    /// answer still goes to a host thread, once.
    #[test]
    fn a_completion_dropped_undelivered_still_answers_once_on_a_host_thread() {
        let received = Received::default();
        drop(completion(&received));
        assert_eq!(
            wait_for(&received, 1),
            [(
                TOOLMESH_SHUTDOWN,
                "the call was abandoned: toolmesh shut down before it finished".to_owned(),
                "toolmesh-host".to_owned()
            )]
        );
    }
}
