//! Starting a core agent from JS, and the running agent as a JS object.

use crate::context::RequestContext;
use crate::errors::to_js_error;
use crate::handler::{catalog_args, invoke_args, CatalogArgs, CatalogCall, Invocation, InvokeArgs, JsHandlers, NodeToolHandler};
use crate::settle::promise;
use napi::bindgen_prelude::{Function, Object};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::Env;
use napi_derive::napi;
use std::sync::Arc;
use toolmesh_core::agent::{parse_catalog, parse_tools, Agent};
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext as CoreRequestContext;
use toolmesh_core::mcp::ResultShape;
use toolmesh_core::report::NotificationObserver;
use toolmesh_core::{Error, ErrorKind};

/// Builds the configuration (`TOOLMESH_*` environment, then `options`, core's keys), validates
/// the tools (core's JSON tool definitions) and the resources and prompts (`catalogJson`, MCP's
/// member names: `{"resources", "resourceTemplates", "prompts"}`) and starts the agent.
/// Configuration, tool and catalog errors are thrown at once; start-up errors (certificates,
/// address) reject the promise. `onInvoke` runs on the JS thread for every call of one of the
/// agent's tools, `onCatalog` for every read of a resource or get of a prompt that core does not
/// answer itself (`requestJson` is `{"kind": "readResource", "uri", "name", "template"?,
/// "variables"}` or `{"kind": "getPrompt", "name", "arguments"}`).
#[napi(
    catch_unwind,
    ts_args_type = "name: string, options: Array<[string, string]>, toolsJson: string, catalogJson: string, \
                    onInvoke: (tool: string, argumentsJson: string, context: RequestContext, responder: Responder) => void, \
                    onCatalog: (requestJson: string, context: RequestContext, responder: Responder) => void",
    ts_return_type = "Promise<NativeAgent>"
)]
pub fn start<'env>(
    env: &'env Env,
    name: String,
    options: Vec<(String, String)>,
    tools_json: String,
    catalog_json: String,
    on_invoke: Function<'_, InvokeArgs, ()>,
    on_catalog: Function<'_, CatalogArgs, ()>,
) -> napi::Result<Object<'env>> {
    toolmesh_core::logging::init_from_env();
    let core_error = |error: Error| to_js_error(env, &error);
    let mut config = AgentConfig::from_env(&name).map_err(core_error)?;
    for (key, value) in &options {
        config.set(key, value).map_err(core_error)?;
    }
    let tools = parse_tools(&tools_json).map_err(core_error)?;
    let catalog = parse_catalog(&catalog_json).map_err(core_error)?;
    let on_invoke =
        on_invoke.build_threadsafe_function::<Invocation>().callee_handled::<false>().build_callback(|call| Ok(invoke_args(call.value)))?;
    let on_catalog = on_catalog
        .build_threadsafe_function::<CatalogCall>()
        .callee_handled::<false>()
        .build_callback(|call| Ok(catalog_args(call.value)))?;
    let handler = Arc::new(NodeToolHandler::new(JsHandlers { on_invoke, on_catalog }));
    promise(env, async move {
        // On failure the handler is dropped here, and with it `onInvoke` and `onCatalog`.
        let agent = Agent::start_with_catalog(config, tools, catalog, handler.clone()).await?;
        Ok(NativeAgent { agent, handler })
    })
}

/// The name of the error class an error of `code` is thrown as: core's rule
/// (`toolmesh_core::error::error_class`), the same as Python's.
#[napi(catch_unwind)]
pub fn error_class_name(code: u32) -> &'static str {
    toolmesh_core::error::error_class(code)
}

/// How `agent.run()` reports a start-up error: core's rule for every language.
#[napi(object)]
pub struct StartFailure {
    /// `toolmesh: error [CODE KIND]: message`, for stderr.
    pub line: String,
    /// 2 for a configuration or TLS problem, else 1.
    pub status: u32,
}

/// The report of a start-up error with `code`, `kind` and `message` (`toolmesh_core::error::start_failure`).
#[napi(catch_unwind)]
pub fn start_failure(code: u32, kind: String, message: String) -> StartFailure {
    let (line, status) = toolmesh_core::error::start_failure(code, &kind, &message);
    StartFailure { line, status: status.into() }
}

/// A running core agent.
#[napi]
pub struct NativeAgent {
    agent: Agent,
    handler: Arc<NodeToolHandler>,
}

#[napi]
impl NativeAgent {
    #[napi(getter)]
    pub fn agent_id(&self) -> String {
        self.agent.agent_id().to_owned()
    }

    /// `https://host:port/mcp`
    #[napi(getter)]
    pub fn endpoint(&self) -> String {
        self.agent.endpoint().to_owned()
    }

    /// `toolmesh agent NAME serving ENDPOINT (id ID)`: what `run()` prints once it serves.
    #[napi(getter)]
    pub fn ready_line(&self) -> String {
        self.agent.ready_line()
    }

    /// The port the agent listens on (useful with port 0).
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.agent.local_addr().port().into()
    }

    /// Calls the `dependency`-th declared dependency of local tool `tool` with JSON arguments;
    /// the promise receives the JSON result or rejects with the mesh error. `context` is the
    /// handler's request context, so that core propagates its headers and continues its trace;
    /// `call_headers` are the `withCallHeaders` scopes' headers, outer scopes first: core merges
    /// them in, set on purpose. With `on_notification`, the callee's progress and log messages
    /// are handed to it as they arrive (core's JSON, `Notification::to_json`), then `null` once
    /// the call ended (before the promise settles or after: the promise is another queue);
    /// they are then not relayed to the handler's own caller. With `whole`, the promise receives
    /// the callee's whole tool result (MCP's `CallToolResult`, every content item as sent).
    #[napi(
        catch_unwind,
        ts_args_type = "tool: string, dependency: number, argumentsJson: string, context?: RequestContext | undefined | null, callHeaders?: Array<[string, string]> | undefined | null, onNotification?: ((json: string | null) => void) | undefined | null, whole?: boolean | undefined | null",
        ts_return_type = "Promise<string>"
    )]
    #[allow(clippy::too_many_arguments)] // one per argument of the JS call
    pub fn call<'env>(
        &self,
        env: &'env Env,
        tool: String,
        dependency: u32,
        arguments_json: String,
        context: Option<&RequestContext>,
        call_headers: Option<Vec<(String, String)>>,
        on_notification: Option<Function<'_, Option<String>, ()>>,
        whole: Option<bool>,
    ) -> napi::Result<Object<'env>> {
        let shape = if whole.unwrap_or(false) { ResultShape::Whole } else { ResultShape::Value };
        let agent = self.agent.clone();
        let context = context.map(|c| c.inner.clone());
        let call_headers = call_headers.unwrap_or_default();
        let stream = match on_notification {
            Some(callback) => Some(Arc::new(callback.build_threadsafe_function::<Option<String>>().callee_handled::<false>().build()?)),
            None => None,
        };
        promise(env, async move {
            let outcome = async {
                let mut context = CoreRequestContext::for_call(context, &call_headers)?;
                if let Some(stream) = &stream {
                    let stream = stream.clone();
                    let observer = NotificationObserver::new(move |notification| {
                        stream.call(Some(notification.to_json().to_string()), ThreadsafeFunctionCallMode::NonBlocking);
                    });
                    let base = context.as_deref().cloned().unwrap_or_default();
                    context = Some(Arc::new(CoreRequestContext { on_notification: Some(observer), ..base }));
                }
                let arguments = serde_json::from_str(&arguments_json)
                    .map_err(|e| Error::new(ErrorKind::InvalidArguments, format!("the call arguments are not JSON: {e}")))?;
                agent.call_shaped(&tool, dependency as usize, arguments, context, shape).await
            }
            .await;
            // The end, after every notification: one queue keeps their order.
            if let Some(stream) = &stream {
                stream.call(None, ThreadsafeFunctionCallMode::NonBlocking);
            }
            Ok(outcome?.to_string())
        })
    }

    /// Deregisters, drains in-flight calls and closes the listener, then releases `onInvoke` and
    /// `onCatalog` so that the process can exit.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn stop<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let agent = self.agent.clone();
        let handler = self.handler.clone();
        promise(env, async move {
            agent.shutdown().await;
            handler.release();
            Ok(())
        })
    }
}
