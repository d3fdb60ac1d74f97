//! The answer channel of one tool invocation, handed to the Python handler task.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::sync::Mutex;
use toolmesh_core::host::{Completion, HostError};

/// Answers exactly once. If it is garbage-collected unanswered, the completion is dropped and
/// core reports `HANDLER_DROPPED` to the caller.
#[pyclass(frozen, module = "toolmesh._native")]
pub struct Responder {
    completion: Mutex<Option<Completion>>,
    /// What is being answered, for core's error words: `tool 'x'`, `resource 'uri'`, `prompt 'p'`.
    subject: String,
}

impl Responder {
    pub(crate) fn new(completion: Completion, subject: String) -> Self {
        Responder { completion: Mutex::new(Some(completion)), subject }
    }

    fn take(&self) -> PyResult<Completion> {
        let mut slot = self.completion.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.take().ok_or_else(|| PyRuntimeError::new_err("this tool call was already answered"))
    }
}

#[pymethods]
impl Responder {
    /// The handler's JSON-encoded return value.
    fn ok(&self, py: Python<'_>, result_json: &str) -> PyResult<()> {
        let value = py
            .detach(|| serde_json::from_str(result_json))
            .map_err(|e| PyValueError::new_err(format!("the tool result is not JSON: {e}")))?;
        self.take()?.ok(value);
        Ok(())
    }

    /// The handler's result in MCP's `CallToolResult` shape (JSON text), built by
    /// `toolmesh.ToolResult`, or its input requests (`toolmesh.InputRequired`): core reads and
    /// checks it; a refusal reaches the caller as `HANDLER_RESULT` naming the item at fault.
    fn ok_result(&self, py: Python<'_>, call_tool_result_json: &str) -> PyResult<()> {
        let value = py
            .detach(|| serde_json::from_str(call_tool_result_json))
            .map_err(|e| PyValueError::new_err(format!("the tool result is not JSON: {e}")))?;
        // A refusal is the caller's HANDLER_RESULT; the handler has answered either way.
        let _ = self.take()?.answer_document(&self.subject, value);
        Ok(())
    }

    /// The handler raised: reported to the caller as `HANDLER_FAILED`.
    fn fail(&self, message: String) -> PyResult<()> {
        self.take()?.err(message);
        Ok(())
    }

    /// The handler raised `toolmesh.ToolError` (its own, or one a proxy call raised): the caller
    /// gets `TOOL_ERROR` with this application code, message and data (JSON text, or None).
    #[pyo3(signature = (app_code, message, data_json=None))]
    fn fail_tool_error(&self, py: Python<'_>, app_code: &str, message: String, data_json: Option<&str>) -> PyResult<()> {
        let completion = self.take()?;
        let data = data_json.map(|json| py.detach(|| serde_json::from_str(json))).transpose();
        match data {
            Ok(data) => completion.complete(Err(HostError::tool_error(app_code, message, data))),
            Err(e) => completion.complete(Err(HostError::tool_error_data_not_json(app_code, &e.to_string()))),
        }
        Ok(())
    }

    /// The data of the handler's `toolmesh.ToolError` cannot be encoded as JSON; `reason` says
    /// why, in Python's words. Core words the caller's error, the same in every language.
    fn fail_tool_error_data_not_json(&self, app_code: &str, reason: &str) -> PyResult<()> {
        self.take()?.complete(Err(HostError::tool_error_data_not_json(app_code, reason)));
        Ok(())
    }

    /// The handler's result is not JSON; `reason` says why, in Python's words. Core words the
    /// caller's `HANDLER_RESULT` error, the same in every language.
    fn not_json(&self, reason: String) -> PyResult<()> {
        self.take()?.not_json(reason);
        Ok(())
    }

    /// Argument `argument` did not decode into `type_name`, its parameter's type hint; `reason`
    /// says why, in Python's words. Core words the caller's `INVALID_ARGUMENTS`, as in every language.
    fn argument_not_decoded(&self, argument: &str, type_name: &str, reason: &str) -> PyResult<()> {
        self.take()?.argument_not_decoded(argument, type_name, reason);
        Ok(())
    }

    /// The handler failed with a mesh error (a proxy call it awaited raised a `ToolmeshError`):
    /// the caller gets that error's code and message unchanged.
    fn fail_mesh(&self, code: u32, message: String) -> PyResult<()> {
        let completion = self.take()?;
        completion.complete(Err(HostError::with_code(code.into(), message)));
        Ok(())
    }
}
