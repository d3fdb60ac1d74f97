//! The request context of an inbound call, as the Python object handlers see.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;
use toolmesh_core::context::RequestContext;

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
        self.inner.trace.as_ref().map(|t| t.trace_id.as_str())
    }

    /// The span of the handler that is running; outbound calls become its children.
    #[getter]
    fn span_id(&self) -> Option<&str> {
        self.inner.trace.as_ref().map(|t| t.span_id.as_str())
    }

    #[getter]
    fn sampled(&self) -> bool {
        self.inner.trace.as_ref().is_some_and(|t| t.sampled)
    }

    #[getter]
    fn traceparent(&self) -> Option<String> {
        self.inner.trace.as_ref().map(|t| t.traceparent())
    }

    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.inner.trace.as_ref().and_then(|t| t.tracestate.as_deref())
    }

    /// Milliseconds left before the inbound call's deadline, if it has one.
    #[getter]
    fn remaining_ms(&self) -> Option<u64> {
        let left = self.inner.deadline?.saturating_duration_since(tokio::time::Instant::now());
        Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }

    fn __repr__(&self) -> String {
        format!(
            "RequestContext(traceparent={:?}, headers={:?})",
            self.traceparent().unwrap_or_default(),
            self.inner.headers
        )
    }
}
