//! The few Python functions the native side calls, which `toolmesh._bridge` installs when it is
//! imported.
//!
//! They are handed in rather than looked up so that the native module imports nothing from the
//! `toolmesh` package: the Python modules depend on `_native`, never the other way round.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use toolmesh_core::Error;

pub(crate) struct Bridge {
    /// `run_batch(calls)`: runs `[(callback, args), ...]` on the loop it was scheduled on.
    pub run_batch: Py<PyAny>,
    /// `settle_future(future, value, exception)`: answers an awaited asyncio future.
    pub settle_future: Py<PyAny>,
    /// `error_from_native(code, name, message, app_code, data_json)`: the `toolmesh.ToolmeshError`
    /// subclass instance (`toolmesh.ToolError` for a tool error).
    error_from_native: Py<PyAny>,
}

static BRIDGE: PyOnceLock<Bridge> = PyOnceLock::new();

pub(crate) fn bridge(py: Python<'_>) -> PyResult<&Bridge> {
    BRIDGE.get(py).ok_or_else(|| {
        PyRuntimeError::new_err(
            "toolmesh's native callbacks are not installed: import the toolmesh package \
             (its toolmesh._bridge module installs them) before using toolmesh._native",
        )
    })
}

/// Called once by `toolmesh._bridge` as it is imported, with its `run_batch`, `settle_future`
/// and `error_from_native`. A second call (the module reloaded) keeps the first functions.
#[pyfunction]
pub(crate) fn install_bridge(py: Python<'_>, run_batch: Py<PyAny>, settle_future: Py<PyAny>, error_from_native: Py<PyAny>) {
    let _ = BRIDGE.set(py, Bridge { run_batch, settle_future, error_from_native });
}

/// The Python exception object for a core error.
pub(crate) fn error_object<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyAny>> {
    let data_json = error.data().map(|data| data.to_string());
    bridge(py)?.error_from_native.bind(py).call1((error.code(), error.kind().name(), error.message(), error.app_code(), data_json))
}

/// A core error raised as its `toolmesh` exception.
pub(crate) fn to_pyerr(py: Python<'_>, error: &Error) -> PyErr {
    match error_object(py, error) {
        Ok(exception) => PyErr::from_value(exception),
        Err(import_failure) => import_failure,
    }
}
