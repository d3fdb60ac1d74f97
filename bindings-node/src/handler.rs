//! Core's host handler for a Node agent, and the answer channel a JS handler replies through.

use crate::context::RequestContext;
use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use std::sync::{Arc, Mutex, MutexGuard};
use toolmesh_core::context::RequestContext as CoreContext;
use toolmesh_core::host::{Completion, HostError, ToolHandler, ToolInvocation};
use toolmesh_core::runtime;

/// One invocation on its way to the JS thread.
pub(crate) struct Invocation {
    pub tool: String,
    pub arguments_json: String,
    pub context: Arc<CoreContext>,
    pub completion: Completion,
}

/// What the agent's `onInvoke(tool, argumentsJson, context, responder)` receives.
pub(crate) type InvokeArgs = FnArgs<(String, String, RequestContext, Responder)>;

/// `onInvoke`, callable from core's workers. Not callee-handled: the JS side never throws (a
/// throw from a threadsafe call is fatal), it answers through the responder.
pub(crate) type InvokeFunction = ThreadsafeFunction<Invocation, (), InvokeArgs, Status, false>;

/// The JS arguments of one invocation, built on the JS thread.
pub(crate) fn invoke_args(invocation: Invocation) -> InvokeArgs {
    let Invocation { tool, arguments_json, context, completion } = invocation;
    FnArgs::from((tool, arguments_json, RequestContext { inner: context }, Responder::new(completion)))
}

/// Hands every invocation of an agent's tools to its JS `onInvoke`, without ever blocking a
/// tokio worker: the threadsafe function's queue is unbounded.
pub(crate) struct NodeToolHandler {
    /// `None` once the agent has stopped. While it is held, Node's event loop stays alive, as it
    /// does for a listening server.
    on_invoke: Mutex<Option<InvokeFunction>>,
}

impl NodeToolHandler {
    pub(crate) fn new(on_invoke: InvokeFunction) -> Self {
        NodeToolHandler { on_invoke: Mutex::new(Some(on_invoke)) }
    }

    /// Releases `onInvoke`, so that a stopped agent lets the process exit.
    pub(crate) fn release(&self) {
        self.slot().take();
    }

    fn slot(&self) -> MutexGuard<'_, Option<InvokeFunction>> {
        self.on_invoke.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ToolHandler for NodeToolHandler {
    fn invoke(&self, invocation: ToolInvocation, completion: Completion) {
        // Serialised here, on the tokio worker, so the JS thread only builds strings.
        let invocation =
            Invocation { tool: invocation.tool, arguments_json: invocation.arguments.to_string(), context: invocation.context, completion };
        // Without `onInvoke` (stopped), or when Node refuses the call (its environment is
        // closing), the invocation is dropped with its completion and core answers the caller
        // HANDLER_DROPPED instead of hanging.
        if let Some(on_invoke) = self.slot().as_ref() {
            on_invoke.call(invocation, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// The answer channel of one tool invocation. Answers exactly once; if it is garbage-collected
/// unanswered, the completion is dropped and core reports HANDLER_DROPPED to the caller.
#[napi]
pub struct Responder {
    completion: Mutex<Option<Completion>>,
}

impl Responder {
    fn new(completion: Completion) -> Self {
        Responder { completion: Mutex::new(Some(completion)) }
    }

    fn take(&self) -> napi::Result<Completion> {
        let mut slot = self.completion.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.take().ok_or_else(|| napi::Error::from_reason("this tool call was already answered"))
    }
}

#[napi]
impl Responder {
    /// The handler's JSON-encoded return value. Decoded on core's runtime, not on the JS thread.
    #[napi(catch_unwind)]
    pub fn ok(&self, result_json: String) -> napi::Result<()> {
        let completion = self.take()?;
        runtime::handle().spawn(async move {
            match serde_json::from_str(&result_json) {
                Ok(value) => completion.ok(value),
                Err(e) => completion.not_json(e.to_string()),
            }
        });
        Ok(())
    }

    /// The handler failed. Without `kind` the caller gets HANDLER_FAILED with `message`. With the
    /// name of a core error kind (the error of a mesh call the handler awaited) the caller gets
    /// that code and `message` unchanged.
    #[napi(catch_unwind)]
    pub fn fail(&self, message: String, kind: Option<String>) -> napi::Result<()> {
        self.take()?.complete(Err(HostError::with_kind_name(kind.as_deref(), message)));
        Ok(())
    }

    /// The handler threw a `ToolError` (its own, or one a proxy call rejected with): the caller
    /// gets TOOL_ERROR with this application code, message and data (JSON text, or none).
    /// Decoded on core's runtime, not on the JS thread.
    #[napi(catch_unwind)]
    pub fn fail_tool_error(&self, app_code: String, message: String, data_json: Option<String>) -> napi::Result<()> {
        let completion = self.take()?;
        runtime::handle().spawn(async move {
            let error = match data_json.map(|json| serde_json::from_str(&json)).transpose() {
                Ok(data) => HostError::tool_error(&app_code, message, data),
                Err(e) => HostError::tool_error_data_not_json(&app_code, &e.to_string()),
            };
            completion.complete(Err(error));
        });
        Ok(())
    }

    /// The data of the handler's `ToolError` cannot be encoded as JSON; `reason` says why, in
    /// JavaScript's words. Core words the caller's error, the same in every language.
    #[napi(catch_unwind)]
    pub fn fail_tool_error_data_not_json(&self, app_code: String, reason: String) -> napi::Result<()> {
        self.take()?.complete(Err(HostError::tool_error_data_not_json(&app_code, &reason)));
        Ok(())
    }

    /// The handler's result is not JSON; `reason` says why, in JavaScript's words. Core words the
    /// caller's HANDLER_RESULT error, the same in every language.
    #[napi(catch_unwind)]
    pub fn not_json(&self, reason: String) -> napi::Result<()> {
        self.take()?.not_json(reason);
        Ok(())
    }
}
