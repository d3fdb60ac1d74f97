//! Core's host handler for a Node agent, and the answer channel a JS handler replies through.

use crate::context::RequestContext;
use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use std::sync::{Arc, Mutex, MutexGuard};
use toolmesh_core::context::RequestContext as CoreContext;
use toolmesh_core::host::{CatalogInvocation, Completion, HostError, ToolHandler, ToolInvocation};
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
    let responder = Responder::new(completion, tool.clone());
    FnArgs::from((tool, arguments_json, RequestContext { inner: context }, responder))
}

/// One `resources/read` or `prompts/get` on its way to the JS thread: core's request as JSON
/// (`{"kind": "readResource", ...}` or `{"kind": "getPrompt", ...}`), so the JS side spells no
/// shape core has not named.
pub(crate) struct CatalogCall {
    pub request_json: String,
    pub context: Arc<CoreContext>,
    pub completion: Completion,
}

/// What the agent's `onCatalog(requestJson, context, responder)` receives.
pub(crate) type CatalogArgs = FnArgs<(String, RequestContext, Responder)>;

/// `onCatalog`, callable from core's workers; like `onInvoke`, it never throws.
pub(crate) type CatalogFunction = ThreadsafeFunction<CatalogCall, (), CatalogArgs, Status, false>;

/// The JS arguments of one catalog request, built on the JS thread.
pub(crate) fn catalog_args(call: CatalogCall) -> CatalogArgs {
    let CatalogCall { request_json, context, completion } = call;
    FnArgs::from((request_json, RequestContext { inner: context }, Responder::new(completion, String::new())))
}

/// The JS functions an agent's calls are handed to.
pub(crate) struct JsHandlers {
    pub on_invoke: InvokeFunction,
    pub on_catalog: CatalogFunction,
}

/// Hands every invocation of an agent's tools to its JS `onInvoke`, and every read of a resource
/// or prompt it serves through JS to `onCatalog`, without ever blocking a tokio worker: the
/// threadsafe functions' queues are unbounded.
pub(crate) struct NodeToolHandler {
    /// `None` once the agent has stopped. While they are held, Node's event loop stays alive, as
    /// it does for a listening server.
    handlers: Mutex<Option<JsHandlers>>,
}

impl NodeToolHandler {
    pub(crate) fn new(handlers: JsHandlers) -> Self {
        NodeToolHandler { handlers: Mutex::new(Some(handlers)) }
    }

    /// Releases `onInvoke` and `onCatalog`, so that a stopped agent lets the process exit.
    pub(crate) fn release(&self) {
        self.slot().take();
    }

    fn slot(&self) -> MutexGuard<'_, Option<JsHandlers>> {
        self.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        if let Some(handlers) = self.slot().as_ref() {
            handlers.on_invoke.call(invocation, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    fn invoke_catalog(&self, invocation: CatalogInvocation, completion: Completion) {
        let request_json = serde_json::to_string(&invocation.request).expect("a catalog request serializes");
        let call = CatalogCall { request_json, context: invocation.context, completion };
        // Dropped as `invoke` drops it: core answers HANDLER_DROPPED.
        if let Some(handlers) = self.slot().as_ref() {
            handlers.on_catalog.call(call, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// The answer channel of one tool invocation. Answers exactly once; if it is garbage-collected
/// unanswered, the completion is dropped and core reports HANDLER_DROPPED to the caller.
#[napi]
pub struct Responder {
    completion: Mutex<Option<Completion>>,
    /// The tool answered, for the error of an invalid tool result (empty for a catalog request).
    tool: String,
}

impl Responder {
    fn new(completion: Completion, tool: String) -> Self {
        Responder { completion: Mutex::new(Some(completion)), tool }
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

    /// The handler answered a tool result in MCP's shape (`CallToolResult` as JSON, bytes already
    /// base64-encoded), or input requests (`InputRequired`). Core reads and checks it on its
    /// runtime; a refusal reaches the caller as HANDLER_RESULT naming the item at fault, e.g.
    /// `content[1]: image 'data' is not base64`.
    #[napi(catch_unwind)]
    pub fn result(&self, result_json: String) -> napi::Result<()> {
        let completion = self.take()?;
        let tool = self.tool.clone();
        runtime::handle().spawn(async move {
            // A refusal is the caller's HANDLER_RESULT; the handler has answered either way.
            let _ = completion.answer_document_text(&format!("tool '{tool}'"), &result_json);
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
