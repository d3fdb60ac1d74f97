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

    fn __repr__(&self) -> String {
        format!("RequestContext(traceparent={:?}, headers={:?})", self.traceparent().unwrap_or_default(), self.inner.headers)
    }
}
