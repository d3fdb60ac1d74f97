//! The request context of an inbound call, as the Python object handlers see.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;
use toolmesh_core::context::RequestContext;
use toolmesh_core::report::LogLevel;

/// Read-only view of core's request context. Proxies hand it back to core unchanged, so header
/// filtering and trace spans are decided there, not here.
#[pyclass(frozen, name = "RequestContext", module = "toolmesh")]
pub struct Context {
    pub(crate) inner: Arc<RequestContext>,
}

#[pymethods]
impl Context {
    /// The propagated headers (lowercase names); a fresh dict each time.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let headers = PyDict::new(py);
        for (name, value) in &self.inner.headers {
            headers.set_item(name, value)?;
        }
        Ok(headers)
    }

    #[getter]
    fn trace_id(&self) -> Option<&str> {
        self.inner.trace_id()
    }

    /// The span of the handler that is running; outbound calls become its children.
    #[getter]
    fn span_id(&self) -> Option<&str> {
        self.inner.span_id()
    }

    #[getter]
    fn sampled(&self) -> bool {
        self.inner.sampled()
    }

    #[getter]
    fn traceparent(&self) -> Option<String> {
        self.inner.traceparent()
    }

    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.inner.tracestate()
    }

    /// Milliseconds left before the inbound call's deadline, if it has one.
    #[getter]
    fn remaining_ms(&self) -> Option<u64> {
        self.inner.remaining_ms()
    }

    /// The caller's verified identity (its certificate's SPIFFE ID); None outside a served call.
    #[getter]
    fn caller(&self) -> Option<&str> {
        self.inner.caller.as_deref()
    }

    /// The capabilities the client declared (modern MCP requests), as JSON; None when unknown.
    #[getter]
    fn client_capabilities_json(&self) -> Option<String> {
        self.inner.client_capabilities.as_ref().map(|c| c.to_string())
    }

    /// Reports the handler's progress to its caller; core sends it only when the request asked
    /// for progress and its caller is still waiting. Returns whether it was sent.
    #[pyo3(signature = (progress, total=None, message=None))]
    fn report_progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) -> bool {
        self.inner.progress(progress, total, message)
    }

    /// Sends `data_json` (any JSON value, encoded by the package) as a log message at `level`
    /// (MCP's names, "debug" up to "emergency"); core sends it only at or above the level the
    /// request opted into. Returns whether it was sent.
    #[pyo3(signature = (level, data_json, logger=None))]
    fn log_json(&self, level: &str, data_json: &str, logger: Option<&str>) -> PyResult<bool> {
        let level = LogLevel::named(level).map_err(|e| PyValueError::new_err(e.message().to_owned()))?;
        let data = serde_json::from_str(data_json).map_err(|e| PyValueError::new_err(format!("the log message is not JSON: {e}")))?;
        Ok(self.inner.log(level, &data, logger))
    }

    /// Whether the request was cancelled (its caller closed the stream): reports are dropped
    /// from then on, and the dependency calls it makes fail.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("RequestContext(traceparent={:?}, headers={:?})", self.traceparent().unwrap_or_default(), self.inner.headers)
    }
}
