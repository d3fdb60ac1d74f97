//! A running core agent as a Python object, and the tool handler that feeds its asyncio loop.

use crate::bridge::to_pyerr;
use crate::context::Context;
use crate::dispatch::{dispatch, settle_when_done, InvokeTarget, Job, Outcome};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::Arc;
use toolmesh_core::agent::{parse_catalog, parse_tools, Agent};
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{CatalogInvocation, CatalogRequest, Completion, ToolHandler, ToolInvocation};
use toolmesh_core::mcp::ResultShape;
use toolmesh_core::report::NotificationObserver;

/// Core's host handler for a Python agent: queues each invocation for the dispatch thread.
struct PythonToolHandler {
    target: Arc<InvokeTarget>,
}

impl ToolHandler for PythonToolHandler {
    fn invoke(&self, invocation: ToolInvocation, completion: Completion) {
        // Serialised here, on the tokio worker, so the GIL is held only to build Python objects.
        dispatch(Job::Invoke {
            target: self.target.clone(),
            tool: invocation.tool,
            arguments_json: invocation.arguments.to_string(),
            context: invocation.context,
            completion,
        });
    }

    fn invoke_catalog(&self, invocation: CatalogInvocation, completion: Completion) {
        let subject = match &invocation.request {
            CatalogRequest::ReadResource { uri, .. } => format!("resource '{uri}'"),
            CatalogRequest::GetPrompt { name, .. } => format!("prompt '{name}'"),
        };
        let request_json = match serde_json::to_string(&invocation.request) {
            Ok(json) => json,
            // Strings and JSON maps always serialize; answer rather than drop, should that change.
            Err(e) => return completion.err(format!("the {subject} request could not be encoded: {e}")),
        };
        dispatch(Job::Catalog { target: self.target.clone(), request_json, subject, context: invocation.context, completion });
    }
}

/// Builds the configuration (`TOOLMESH_*` environment, then `options`), validates the tools and
/// starts the agent with its resources and prompts (`catalog_json`, MCP's member names, checked
/// by core); the asyncio `future` receives a [`NativeAgent`] or the start-up error, and
/// `on_invoke` (tools) and `on_catalog` (resource reads, prompts) run on the future's loop.
/// Configuration, tool, resource and prompt errors are raised at once, as `toolmesh.ConfigError`.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // one per argument of the Python call
pub(crate) fn start(
    py: Python<'_>,
    name: &str,
    options: Vec<(String, String)>,
    tools_json: &str,
    catalog_json: &str,
    on_invoke: Py<PyAny>,
    on_catalog: Py<PyAny>,
    future: Py<PyAny>,
) -> PyResult<()> {
    toolmesh_core::logging::init_from_env();
    let mut config = AgentConfig::from_env(name).map_err(|e| to_pyerr(py, &e))?;
    for (key, value) in &options {
        config.set(key, value).map_err(|e| to_pyerr(py, &e))?;
    }
    let tools = parse_tools(tools_json).map_err(|e| to_pyerr(py, &e))?;
    let catalog = parse_catalog(catalog_json).map_err(|e| to_pyerr(py, &e))?;
    let event_loop = future.call_method0(py, "get_loop")?;
    let target = Arc::new(InvokeTarget { event_loop, on_invoke, on_catalog });
    let handler = Arc::new(PythonToolHandler { target });
    settle_when_done(future, async move {
        let agent = Agent::start_with_catalog(config, tools, catalog, handler).await?;
        Ok(Outcome::Object(Box::new(move |py| Ok(Bound::new(py, NativeAgent::new(agent))?.into_any()))))
    });
    Ok(())
}

/// The dependency index of each proxy parameter (names in order) of a tool whose dependencies
/// have `capabilities`; None when there are more parameters than dependencies. Core's rule for
/// every language (`toolmesh_core::agent::assign_proxy_parameters`).
#[pyfunction]
pub(crate) fn assign_proxy_parameters(parameters: Vec<String>, capabilities: Vec<String>) -> Option<Vec<usize>> {
    toolmesh_core::agent::assign_proxy_parameters(&parameters, &capabilities)
}

/// The name of the `toolmesh` exception class an error of `code` is raised as: core's rule
/// (`toolmesh_core::error::error_class`), the same as Node's.
#[pyfunction]
pub(crate) fn error_class(code: u32) -> &'static str {
    toolmesh_core::error::error_class(code)
}

/// `(line, exit_status)`: how `toolmesh.run` reports a start-up error, core's rule for every
/// language (`toolmesh_core::error::start_failure`).
#[pyfunction]
pub(crate) fn start_failure(code: u32, name: &str, message: &str) -> (String, u8) {
    toolmesh_core::error::start_failure(code, name, message)
}

#[pyclass(frozen, module = "toolmesh._native")]
pub struct NativeAgent {
    agent: Agent,
}

impl NativeAgent {
    pub(crate) fn new(agent: Agent) -> Self {
        NativeAgent { agent }
    }
}

#[pymethods]
impl NativeAgent {
    #[getter]
    fn agent_id(&self) -> &str {
        self.agent.agent_id()
    }

    /// `https://host:port/mcp`
    #[getter]
    fn endpoint(&self) -> &str {
        self.agent.endpoint()
    }

    /// `toolmesh agent NAME serving ENDPOINT (id ID)`: what `toolmesh.run` prints once it serves.
    #[getter]
    fn ready_line(&self) -> String {
        self.agent.ready_line()
    }

    /// The port the agent listens on (useful with `port=0`).
    #[getter]
    fn port(&self) -> u16 {
        self.agent.local_addr().port()
    }

    /// Calls the `dependency`-th declared dependency of local tool `tool`; the asyncio `future`
    /// receives the JSON-encoded result or the mesh error. `context` is the handler's request context, so
    /// that core propagates its headers and continues its trace; `call_headers` are the headers of
    /// the `toolmesh.call_headers` scopes the call is made in (outer first), which core merges in.
    /// With `on_notification`, a callable, the callee's progress and log messages are handed to
    /// it on `future`'s loop as they arrive (core's JSON, `Notification::to_json`), instead of
    /// being relayed to the handler's own caller. With `whole`, `future` receives the callee's
    /// whole tool result (MCP's `CallToolResult`, every content item as sent) instead of one value.
    #[pyo3(signature = (tool, dependency, arguments_json, context, call_headers, future, on_notification=None, whole=false))]
    #[allow(clippy::too_many_arguments)] // one per argument of the Python call
    fn call(
        &self,
        py: Python<'_>,
        tool: String,
        dependency: usize,
        arguments_json: &str,
        context: Option<PyRef<'_, Context>>,
        call_headers: Vec<(String, String)>,
        future: Py<PyAny>,
        on_notification: Option<Py<PyAny>>,
        whole: bool,
    ) -> PyResult<()> {
        let observer = match on_notification {
            None => None,
            Some(callback) => {
                let event_loop = Arc::new(future.bind(py).call_method0("get_loop")?.unbind());
                let callback = Arc::new(callback);
                Some(NotificationObserver::new(move |notification| {
                    let (event_loop, callback) = (event_loop.clone(), callback.clone());
                    dispatch(Job::Notify { event_loop, callback, json: notification.to_json().to_string() });
                }))
            }
        };
        let arguments: serde_json::Value = py
            .detach(|| serde_json::from_str(arguments_json))
            .map_err(|e| PyValueError::new_err(format!("the call arguments are not JSON: {e}")))?;
        let context = context.map(|c| c.inner.clone());
        let agent = self.agent.clone();
        settle_when_done(future, async move {
            let mut context = RequestContext::for_call(context, &call_headers)?;
            if let Some(observer) = observer {
                let base = context.as_deref().cloned().unwrap_or_default();
                context = Some(Arc::new(RequestContext { on_notification: Some(observer), ..base }));
            }
            let shape = if whole { ResultShape::Whole } else { ResultShape::Value };
            let result = agent.call_shaped(&tool, dependency, arguments, context, shape).await?;
            Ok(Outcome::Json(result.to_string()))
        });
        Ok(())
    }

    /// Deregisters, drains in-flight calls and closes the listener; `future` receives None.
    fn stop(&self, future: Py<PyAny>) {
        let agent = self.agent.clone();
        settle_when_done(future, async move {
            agent.shutdown().await;
            Ok(Outcome::Nothing)
        });
    }

    fn __repr__(&self) -> String {
        format!("NativeAgent(agent_id={:?}, endpoint={:?})", self.agent.agent_id(), self.agent.endpoint())
    }
}
