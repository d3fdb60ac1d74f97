//! `toolmesh_invocation`: one call of a local tool, from the handler's `invoke` to its answer.

use crate::boundary::{c_string_lossy, catch_panic, guarded, handle_arg, report, str_arg};
use crate::error::{toolmesh_error, Failure};
use crate::result::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock};
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, HostError};
use toolmesh_core::report::LogLevel;

/// One invocation of a local tool (or a read of a resource, or a get of a prompt, through
/// `invoke_catalog`): its request context (propagated headers, trace, deadline)
/// and its answer channel.
///
/// Ownership: handed to the handler's `invoke` (or `invoke_catalog`), which owns it until it
/// answers exactly once with `toolmesh_invocation_complete`,
/// `toolmesh_invocation_complete_result`, `toolmesh_invocation_fail`,
/// `toolmesh_invocation_fail_tool_error`, `toolmesh_invocation_fail_with_error` or
/// `toolmesh_invocation_fail_with_code` (from any thread); that call frees it, whatever it
/// returns. A handler that gives up frees it with `toolmesh_invocation_free`, and its caller
/// learns at once that the tool "ended without an answer"; one that neither answers nor frees
/// it leaves its caller waiting until its timeout.
/// Until it is answered it may be borrowed, also concurrently, by the accessors and by
/// `toolmesh_agent_call`, but not while it is being answered.
pub struct toolmesh_invocation {
    /// What is invoked, for messages: `tool 'x'`, `resource 'uri'`, `prompt 'name'`.
    subject: String,
    context: Arc<RequestContext>,
    completion: Completion,
    /// The propagated headers as C strings: lowercase name, value.
    headers: Vec<(String, CString)>,
    trace_id: Option<CString>,
    /// The handler's cancel callback, emptied when the invocation is answered or freed, so that
    /// it never runs after (answering waits for a callback that is running).
    on_cancel: Arc<Mutex<Option<CancelCallback>>>,
    /// The caller's identity and the client's declared capabilities (JSON) as C strings, made on
    /// first use: most handlers never ask.
    caller: OnceLock<Option<CString>>,
    client_capabilities: OnceLock<Option<CString>>,
    input: OnceLock<Option<CString>>,
}

/// A C cancel callback and its argument.
struct CancelCallback {
    callback: toolmesh_cancel_callback,
    user_data: *mut c_void,
}

// SAFETY: the C contract of `toolmesh_invocation_on_cancel`: the callback may run on any thread,
// with `user_data`, which the handler keeps valid until it answers the invocation.
unsafe impl Send for CancelCallback {}

/// Called once when the request an invocation serves is cancelled; see
/// `toolmesh_invocation_on_cancel`.
#[allow(non_camel_case_types)]
pub type toolmesh_cancel_callback = extern "C" fn(user_data: *mut c_void);

impl toolmesh_invocation {
    pub(crate) fn new(subject: String, context: Arc<RequestContext>, completion: Completion) -> Self {
        let headers =
            context.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), c_string_lossy(value.as_str()))).collect();
        let trace_id = context.trace_id().map(c_string_lossy);
        toolmesh_invocation {
            subject,
            context,
            completion,
            headers,
            trace_id,
            on_cancel: Arc::default(),
            caller: OnceLock::new(),
            client_capabilities: OnceLock::new(),
            input: OnceLock::new(),
        }
    }

    pub(crate) fn context(&self) -> Arc<RequestContext> {
        self.context.clone()
    }
}

/// The value of a propagated header of the request (name matched case-insensitively), or NULL
/// when the request did not carry it (or the allow-list, option `propagate_headers`, did not
/// let it through). Borrowed from the invocation: valid until it is answered.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation; `name` is NULL or a NUL-terminated
/// string; both borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_header(
    invocation: *const toolmesh_invocation,
    name: *const c_char,
) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: NULL or live, as the caller guarantees.
        let Some(invocation) = (unsafe { invocation.as_ref() }) else { return ptr::null() };
        if name.is_null() {
            return ptr::null();
        }
        // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        invocation
            .headers
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            .map_or(ptr::null(), |(_, value)| value.as_ptr())
    })
}

/// The W3C trace id of the request (32 lowercase hex digits), or NULL if it has none. Borrowed
/// from the invocation: valid until it is answered. Dependency calls made with this invocation
/// continue the same trace.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_trace_id(invocation: *const toolmesh_invocation) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: NULL or live, as the caller guarantees.
        let invocation = unsafe { invocation.as_ref() };
        invocation.and_then(|i| i.trace_id.as_ref()).map_or(ptr::null(), |t| t.as_ptr())
    })
}

/// The verified identity of the caller (its certificate's SPIFFE ID, e.g.
/// `spiffe://toolmesh.local/agent/planner`), or NULL for a NULL invocation. Borrowed from the
/// invocation: valid until it is answered.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_caller(invocation: *const toolmesh_invocation) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: NULL or live, as the caller guarantees.
        let Some(invocation) = (unsafe { invocation.as_ref() }) else { return ptr::null() };
        let caller = invocation.caller.get_or_init(|| invocation.context.caller.as_deref().map(c_string_lossy));
        caller.as_ref().map_or(ptr::null(), |c| c.as_ptr())
    })
}

/// The capabilities the MCP client declared, as a JSON object (`{"sampling":{}}`), or NULL when
/// they are unknown: a legacy-era request (which declares them only in its session's
/// `initialize`), or a NULL invocation. A tool that needs one declares it
/// (`required_client_capabilities`), and core refuses a modern client without it before the
/// handler runs. Borrowed from the invocation: valid until it is answered.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_client_capabilities(invocation: *const toolmesh_invocation) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: NULL or live, as the caller guarantees.
        let Some(invocation) = (unsafe { invocation.as_ref() }) else { return ptr::null() };
        let declared = invocation
            .client_capabilities
            .get_or_init(|| invocation.context.client_capabilities.as_ref().map(|c| c_string_lossy(c.to_string())));
        declared.as_ref().map_or(ptr::null(), |c| c.as_ptr())
    })
}

/// What the client answered to the input requests of an earlier call of this tool (MCP
/// 2026-07-28), as a JSON object `{"responses": {key: result, ...}, "state": <the requestState the
/// earlier answer carried, checked and unsealed by toolmesh, or null>}`; NULL when the call
/// answers none (or for a NULL invocation). A handler asks for input by answering
/// `toolmesh_invocation_complete_result` with `{"resultType": "input_required", "inputRequests":
/// {...}, "requestState": ...}`. Borrowed from the invocation: valid until it is answered.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_input(invocation: *const toolmesh_invocation) -> *const c_char {
    catch_panic(ptr::null(), || {
        // SAFETY: NULL or live, as the caller guarantees.
        let Some(invocation) = (unsafe { invocation.as_ref() }) else { return ptr::null() };
        let input = invocation.input.get_or_init(|| {
            let input = invocation.context.input.as_deref()?;
            Some(c_string_lossy(serde_json::json!({"responses": input.responses, "state": input.state}).to_string()))
        });
        input.as_ref().map_or(ptr::null(), |c| c.as_ptr())
    })
}

/// The milliseconds left before the request's deadline (0 once it passed), or -1 when it has
/// none (or for a NULL invocation). The budget shrinks hop by hop: a dependency call made with
/// this invocation carries what is left of it, and its callee sees less. Read it again for a
/// fresh figure.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_remaining_ms(invocation: *const toolmesh_invocation) -> i64 {
    catch_panic(-1, || {
        // SAFETY: NULL or live, as the caller guarantees.
        let remaining = unsafe { invocation.as_ref() }.and_then(|i| i.context.remaining_ms());
        remaining.map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX))
    })
}

/// Whether the request this invocation serves was cancelled: its caller closed the stream or
/// sent `notifications/cancelled`, or its deadline passed. Progress and log messages are
/// dropped from then on, dependency calls made with it fail with `TOOLMESH_CANCELLED`, and no
/// one waits for its answer (it must still be answered or freed). False for NULL. Use it from
/// any thread while the invocation is unanswered.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_cancelled(invocation: *const toolmesh_invocation) -> bool {
    catch_panic(false, || {
        // SAFETY: NULL or live, as the caller guarantees.
        unsafe { invocation.as_ref() }.is_some_and(|i| i.context.is_cancelled())
    })
}

/// Registers `callback`, called once with `user_data` when the request this invocation serves
/// is cancelled (as `toolmesh_invocation_cancelled` tells), at once if it already is. It runs
/// on a toolmesh thread, must not block, and must not answer the invocation itself: it should
/// only tell the handler's own thread (set a flag, signal a condition, write to a pipe). It
/// never runs once the invocation is answered or freed; answering waits for a callback that is
/// running. A second registration replaces the first.
///
/// Returns `TOOLMESH_NULL_ARGUMENT` for a NULL invocation.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call. `user_data`
/// stays valid, and `callback` safe to call from any thread, until the invocation is answered.
/// `error_out` is NULL or points to storage for one pointer that receives, on failure only, a
/// new `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_on_cancel(
    invocation: *const toolmesh_invocation,
    callback: toolmesh_cancel_callback,
    user_data: *mut c_void,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_on_cancel", || {
        // SAFETY: NULL or live, as the caller guarantees.
        let invocation = unsafe { handle_arg(invocation, "invocation") }?;
        let first = invocation
            .on_cancel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(CancelCallback { callback, user_data })
            .is_none();
        if first {
            let slot = invocation.on_cancel.clone();
            invocation.context.on_cancel(move || {
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(CancelCallback { callback, user_data }) = slot.take() {
                    // A panic cannot cross from C; one in Rust here would poison only this slot.
                    callback(user_data);
                }
            });
        }
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Reports the handler's progress to the caller of the tool: `progress` so far, of `total` (NaN:
/// no total), with an optional `message` (NULL: none; UTF-8, borrowed for the call). toolmesh
/// sends it only when the request asked for progress (MCP's `progressToken`) and its caller is
/// still waiting; otherwise it is dropped, which is not an error (`TOOLMESH_OK`). A NaN or
/// infinite `progress` is dropped too. Use it from any thread while the invocation is unanswered.
///
/// Returns `TOOLMESH_NULL_ARGUMENT` for a NULL invocation and `TOOLMESH_INVALID_UTF8` for a
/// message that is not UTF-8 (nothing is sent then).
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call. `message` is NULL
/// or a NUL-terminated string, borrowed for the call. `error_out` is NULL or points to storage
/// for one pointer that receives, on failure only, a new `toolmesh_error` owned by the caller,
/// who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_progress(
    invocation: *const toolmesh_invocation,
    progress: f64,
    total: f64,
    message: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_progress", || {
        // SAFETY: NULL or live, as the caller guarantees.
        let invocation = unsafe { handle_arg(invocation, "invocation") }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let message = if message.is_null() { None } else { Some(unsafe { str_arg(message, "message") }?) };
        invocation.context.progress(progress, Some(total).filter(|t| !t.is_nan()), message);
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Sends a log message to the caller of the tool: `data_json` (UTF-8 JSON, any value, borrowed
/// for the call) at `level`, one of MCP's "debug", "info", "notice", "warning", "error",
/// "critical", "alert", "emergency", from `logger` (NULL: none). toolmesh sends it only at or
/// above the level the request opted into (a modern request names one in its `_meta`; a legacy
/// request gets "info" and up) and while its caller is still waiting; otherwise it is dropped,
/// which is not an error. Use it from any thread while the invocation is unanswered.
///
/// Returns `TOOLMESH_NULL_ARGUMENT` (a NULL invocation, level or data), `TOOLMESH_INVALID_UTF8`,
/// `TOOLMESH_INVALID_JSON` (data that is not JSON) or `TOOLMESH_INVALID_ARGUMENTS` (a level
/// MCP does not name); nothing is sent then.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, borrowed for the call. `level`,
/// `logger` and `data_json` are NULL or NUL-terminated strings, borrowed for the call.
/// `error_out` is NULL or points to storage for one pointer that receives, on failure only, a
/// new `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_log(
    invocation: *const toolmesh_invocation,
    level: *const c_char,
    logger: *const c_char,
    data_json: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_log", || {
        // SAFETY: NULL or live, as the caller guarantees.
        let invocation = unsafe { handle_arg(invocation, "invocation") }?;
        // SAFETY: each NULL or NUL-terminated, as the caller guarantees.
        let (level, data) = unsafe { (str_arg(level, "level")?, str_arg(data_json, "data_json")?) };
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let logger = if logger.is_null() { None } else { Some(unsafe { str_arg(logger, "logger") }?) };
        let level = LogLevel::named(level)?;
        let data: serde_json::Value = serde_json::from_str(data)
            .map_err(|e| Failure::new(TOOLMESH_INVALID_JSON, format!("the log message's data_json is not JSON: {e}")))?;
        invocation.context.log(level, &data, logger);
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Answers the invocation with the tool's result, a UTF-8 JSON value (borrowed for the call).
/// Frees the invocation in every case. When `result_json` is NULL, not UTF-8 or not JSON, this
/// returns the argument's code and why, and the caller of the tool gets the error every language
/// gives for a result that is not JSON: "tool '<name>' returned a value that is not JSON; ...".
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns, whatever it returns, and must not be used again. `result_json` is
/// NULL or a NUL-terminated string, borrowed for the call (toolmesh keeps a parsed copy).
/// `error_out` is NULL or points to storage for one pointer (borrowed for the call) that receives,
/// on failure only, a new `toolmesh_error` owned by the caller, who frees it with
/// `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_complete(
    invocation: *mut toolmesh_invocation,
    result_json: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_complete", || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees.
        let invocation = unsafe { take(invocation) }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let parsed = unsafe { str_arg(result_json, "result_json") }.and_then(|json| {
            serde_json::from_str(json).map_err(|e| Failure::new(TOOLMESH_INVALID_JSON, format!("the result is not JSON: {e}")))
        });
        match parsed {
            Ok(value) => {
                invocation.completion.ok(value);
                Ok(())
            }
            Err(failure) => {
                invocation.completion.not_json(failure.message.clone());
                Err(failure)
            }
        }
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Answers the invocation with a tool result in MCP's own shape, for what one JSON value cannot
/// say: images, audio, resource links, embedded resources, several items, `structuredContent`
/// beside its own content, or `isError`. `call_tool_result_json` (UTF-8, borrowed for the call)
/// is a `CallToolResult`:
/// `{"content": [{"type": "text", "text": "..."}, {"type": "image", "data": "<base64>",
///   "mimeType": "image/png"}, {"type": "audio", ...}, {"type": "resource_link", "uri", "name"},
///   {"type": "resource", "resource": {"uri", "text" | "blob"}}], "structuredContent": <any>,
///   "isError": false}`, where binary data is standard base64 (padded). toolmesh checks it, as
/// for every language. Frees the invocation in every case.
///
/// When the document is refused, the caller of the tool gets `TOOLMESH_HANDLER_RESULT` with
/// "tool '<name>' returned an invalid tool result: <why>", naming the item at fault (e.g.
/// `content[1]: image 'data' is not base64 (standard alphabet, padded)`), and this returns the
/// same code and message. NULL, invalid UTF-8 or text that is not JSON returns the argument's code
/// and the caller gets the error of a result that is not JSON, as for
/// `toolmesh_invocation_complete`. `isError: true` is the tool's own account of a failure: MCP
/// callers get the result as it is, mesh callers a `TOOLMESH_HANDLER_FAILED` with its text.
/// The document may instead ask the client for input (MCP 2026-07-28):
/// `{"resultType": "input_required", "inputRequests": {key: {"method": "elicitation/create" |
/// "sampling/createMessage" | "roots/list", "params": {...}}}, "requestState": <any JSON>}`;
/// toolmesh seals the state, and the client's next call brings the answers
/// (`toolmesh_invocation_input`).
/// A resource read or a prompt get (`invoke_catalog`) is answered with
/// `toolmesh_invocation_complete` instead: a tool result there is refused the same way.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns, whatever it returns, and must not be used again.
/// `call_tool_result_json` is NULL or a NUL-terminated string, borrowed for the call (toolmesh
/// keeps a parsed copy). `error_out` is NULL or points to storage for one pointer (borrowed for
/// the call) that receives, on failure only, a new `toolmesh_error` owned by the caller, who
/// frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_complete_result(
    invocation: *mut toolmesh_invocation,
    call_tool_result_json: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_complete_result", || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees.
        let invocation = unsafe { take(invocation) }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let parsed = unsafe { str_arg(call_tool_result_json, "call_tool_result_json") }.and_then(|json| {
            serde_json::from_str(json)
                .map_err(|e| Failure::new(TOOLMESH_INVALID_JSON, format!("the tool result is not JSON: {e}")))
        });
        let document = match parsed {
            Ok(document) => document,
            Err(failure) => {
                invocation.completion.not_json(failure.message.clone());
                return Err(failure);
            }
        };
        let invocation = *invocation;
        invocation
            .completion
            .answer_document(&invocation.subject, document)
            .map_err(|message| Failure::new(TOOLMESH_HANDLER_RESULT, message))
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Answers the invocation with a failure: the caller of the tool gets `TOOLMESH_TOOL_FAILED`
/// with the message "tool '<name>' failed: <message>". `message` is borrowed for the call; NULL
/// or an empty message is reported as "(no message)", as in every language, and invalid UTF-8 as
/// best it can be. Frees the invocation in every case.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns, whatever it returns, and must not be used again. `message` is NULL or
/// a NUL-terminated string, borrowed for the call (toolmesh keeps a copy). `error_out` is NULL or
/// points to storage for one pointer (borrowed for the call) that receives, on failure only, a new
/// `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_fail(
    invocation: *mut toolmesh_invocation,
    message: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_fail", || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees.
        let invocation = unsafe { take(invocation) }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        invocation.completion.err(unsafe { message_arg(message) });
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Answers the invocation with a mesh error, typically one a dependency call of this handler
/// reported: the caller gets `code` and `message` unchanged, as if it had made that call itself.
/// A `code` that is not one of the core's error codes (1000 and up) is reported as a plain
/// failure, like `toolmesh_invocation_fail`, and so is `TOOLMESH_TOOL_ERROR`, which a code alone
/// cannot carry (it has an application code): re-raise such an error with
/// `toolmesh_invocation_fail_with_error`, or raise one with `toolmesh_invocation_fail_tool_error`. `message` is borrowed for the call; NULL is an empty
/// message. Frees the invocation in every case.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns, whatever it returns, and must not be used again. `message` is NULL or
/// a NUL-terminated string, borrowed for the call (toolmesh keeps a copy). `error_out` is NULL or
/// points to storage for one pointer (borrowed for the call) that receives, on failure only, a new
/// `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_fail_with_code(
    invocation: *mut toolmesh_invocation,
    code: toolmesh_result,
    message: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_fail_with_code", || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees.
        let invocation = unsafe { take(invocation) }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let message = unsafe { message_arg(message) };
        invocation.completion.complete(Err(HostError::with_code(code.into(), message)));
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Answers the invocation with the tool's own error, an expected failure of its domain (an
/// unknown SKU, an empty stock): the caller gets `TOOLMESH_TOOL_ERROR` with `app_code`, `message`
/// word for word and `data_json` (any JSON value, or NULL for none), in every language, as the
/// other languages' `ToolError` gives them. All three are borrowed for the call (toolmesh keeps
/// copies). Frees the invocation in every case.
///
/// `app_code` is 1 to 64 characters among `A-Z a-z 0-9 _ . : -`. When it is not (or NULL, or
/// not UTF-8), or `data_json` is not JSON, the caller gets `TOOLMESH_TOOL_FAILED` with a message
/// saying why, and this returns the reason too: `TOOLMESH_HANDLER_FAILED` for a refused code,
/// `TOOLMESH_INVALID_JSON` for data that is not JSON. A NULL `message` is an empty one.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns, whatever it returns, and must not be used again. `app_code`,
/// `message` and `data_json` are NULL or NUL-terminated strings, borrowed for the call.
/// `error_out` is NULL or points to storage for one pointer (borrowed for the call) that
/// receives, on failure only, a new `toolmesh_error` owned by the caller, who frees it with
/// `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_fail_tool_error(
    invocation: *mut toolmesh_invocation,
    app_code: *const c_char,
    message: *const c_char,
    data_json: *const c_char,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_fail_tool_error", || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees.
        let invocation = unsafe { take(invocation) }?;
        // SAFETY: NULL or NUL-terminated, as the caller guarantees.
        let (app_code, message) = unsafe { (message_arg(app_code), message_arg(message)) };
        let data = if data_json.is_null() {
            Ok(None)
        } else {
            // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
            unsafe { str_arg(data_json, "data_json") }.and_then(|json| {
                serde_json::from_str(json)
                    .map(Some)
                    .map_err(|e| Failure::new(TOOLMESH_INVALID_JSON, format!("the tool error's data is not JSON: {e}")))
            })
        };
        match data {
            Ok(data) => {
                let refused = toolmesh_core::error::check_app_code(&app_code).err();
                invocation.completion.complete(Err(HostError::tool_error(&app_code, message, data)));
                refused.map_or(Ok(()), |problem| Err(Failure::new(TOOLMESH_HANDLER_FAILED, problem)))
            }
            Err(failure) => {
                invocation.completion.complete(Err(HostError::tool_error_data_not_json(&app_code, &failure.message)));
                Err(failure)
            }
        }
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Answers the invocation with `error`, the error a dependency call of this handler reported
/// (the `error` its callback received, or one a toolmesh function returned): the caller gets it
/// intact — its code and message, and for a `TOOLMESH_TOOL_ERROR` its application code and data
/// — as if it had made that call itself. An error with a C ABI code (below 1000) is reported as
/// a plain failure with its message, like `toolmesh_invocation_fail`. Frees the invocation in
/// every case; `error` stays the caller's.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns, whatever it returns, and must not be used again. `error` is NULL
/// or a live `toolmesh_error`, borrowed for the call. `error_out` is NULL or points to storage
/// for one pointer (borrowed for the call) that receives, on failure only, a new
/// `toolmesh_error` owned by the caller, who frees it with `toolmesh_error_free`.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_fail_with_error(
    invocation: *mut toolmesh_invocation,
    error: *const toolmesh_error,
    error_out: *mut *mut toolmesh_error,
) -> toolmesh_result {
    let outcome = guarded("toolmesh_invocation_fail_with_error", || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees.
        let invocation = unsafe { take(invocation) }?;
        // SAFETY: NULL or live, as the caller guarantees. Checked after `take`, so that the
        // invocation is answered (dropped: HANDLER_DROPPED) also when `error` is NULL.
        let error = unsafe { handle_arg(error, "error") }?;
        let host_error = match error.to_core() {
            Some(e) => HostError { message: e.message().to_owned(), mesh_error: Some(e) },
            None => HostError::new(error.message().to_string_lossy()),
        };
        invocation.completion.complete(Err(host_error));
        Ok(())
    });
    // SAFETY: `error_out` is NULL or writable, as the caller guarantees.
    unsafe { report(outcome, error_out) }
}

/// Frees an invocation without answering it, for a handler that gives up on it. The core sees
/// the completion dropped (`TOOLMESH_HANDLER_DROPPED`), and the caller gets right away, instead
/// of at its timeout, "tool '<name>' ended without an answer" with `TOOLMESH_TOOL_FAILED`: a
/// caller gets that code for every unexpected handler failure, in every language. Freeing NULL does nothing.
///
/// # Safety
/// `invocation` is NULL or a live, unanswered invocation, owned by this call from here on: it is
/// freed before this returns and must not be used again.
#[no_mangle]
pub unsafe extern "C" fn toolmesh_invocation_free(invocation: *mut toolmesh_invocation) {
    catch_panic((), || {
        // SAFETY: NULL or live and now owned by this call, as the caller guarantees. Dropping
        // the completion unanswered is what tells core the handler dropped it.
        drop(unsafe { take(invocation) });
    })
}

/// # Safety
/// `invocation` is NULL or a live invocation whose ownership passes to the caller.
unsafe fn take(invocation: *mut toolmesh_invocation) -> Result<Box<toolmesh_invocation>, Failure> {
    if invocation.is_null() {
        return Err(Failure::null_argument("invocation"));
    }
    // SAFETY: created by `Box::into_raw` when it was handed to `invoke`; answered (freed) once.
    let invocation = unsafe { Box::from_raw(invocation) };
    // Answered or freed from here on: the cancel callback must not run any more.
    invocation.on_cancel.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    Ok(invocation)
}

/// A failure message never fails: NULL is an empty message (core words it like every language's
/// exception without a message) and invalid UTF-8 becomes readable text.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
unsafe fn message_arg(message: *const c_char) -> String {
    if message.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{toolmesh_error_free, toolmesh_error_message};
    use toolmesh_core::host::{completion_output, CompletionReceiver, HandlerOutput, ToolOutput};

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

    fn invocation() -> (*mut toolmesh_invocation, CompletionReceiver) {
        let (completion, receiver) = Completion::new();
        let invocation = toolmesh_invocation::new("tool 'picture'".into(), Arc::default(), completion);
        (Box::into_raw(Box::new(invocation)), receiver)
    }

    /// Answers a fresh invocation with `json`; what this returned (code, message) and what the
    /// caller of the tool got.
    fn answer(json: Option<&str>) -> (toolmesh_result, String, Result<HandlerOutput, toolmesh_core::Error>) {
        let (invocation, mut receiver) = invocation();
        let json = json.map(|j| CString::new(j).unwrap());
        let mut error = ptr::null_mut();
        // SAFETY: a live invocation, owned by the call; a NUL-terminated string or NULL; a place for the error.
        let code = unsafe {
            toolmesh_invocation_complete_result(invocation, json.as_ref().map_or(ptr::null(), |j| j.as_ptr()), &mut error)
        };
        let message = if error.is_null() {
            String::new()
        } else {
            // SAFETY: a live error, freed once.
            unsafe {
                let message = CStr::from_ptr(toolmesh_error_message(error)).to_string_lossy().into_owned();
                toolmesh_error_free(error);
                message
            }
        };
        let received = receiver.try_recv().expect("the invocation was answered before the call returned");
        (code, message, completion_output("picture", Ok(received)))
    }

    #[test]
    fn a_valid_tool_result_reaches_the_caller_as_it_is() {
        let document = serde_json::json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]});
        let (code, message, output) = answer(Some(&document.to_string()));
        assert_eq!((code, message.as_str()), (TOOLMESH_OK, ""));
        assert_eq!(output.unwrap(), HandlerOutput::Result(ToolOutput::from_json(document).unwrap()));
    }

    #[test]
    fn a_refused_tool_result_is_handler_result_naming_the_item_for_both_sides() {
        let (code, message, output) = answer(Some(
            r#"{"content": [{"type": "text", "text": "ok"}, {"type": "image", "data": "not base64!", "mimeType": "image/png"}]}"#,
        ));
        assert_eq!(code, TOOLMESH_HANDLER_RESULT);
        assert!(
            message.starts_with("tool 'picture' returned an invalid tool result: content[1]: image 'data' is not base64"),
            "{message}"
        );
        let error = output.unwrap_err();
        assert_eq!(error.kind(), toolmesh_core::ErrorKind::HandlerResult);
        assert_eq!(error.message(), message);
    }

    #[test]
    fn text_that_is_not_json_or_null_is_the_not_json_error() {
        for (json, expected) in [(Some("{not json"), TOOLMESH_INVALID_JSON), (None, TOOLMESH_NULL_ARGUMENT)] {
            let (code, _, output) = answer(json);
            assert_eq!(code, expected);
            let error = output.unwrap_err();
            assert_eq!(error.message(), "tool 'picture' returned a value that is not JSON; the agent serving it logs why");
        }
    }
}
