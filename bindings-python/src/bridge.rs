//! The few Python functions the native side calls, looked up once from `toolmesh._bridge`.

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
    BRIDGE.get_or_try_init(py, || {
        let module = py.import("toolmesh._bridge")?;
        Ok(Bridge {
            run_batch: module.getattr("run_batch")?.unbind(),
            settle_future: module.getattr("settle_future")?.unbind(),
            error_from_native: module.getattr("error_from_native")?.unbind(),
        })
    })
}

/// The Python exception object for a core error.
pub(crate) fn error_object<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyAny>> {
    let data_json = error.data().map(|data| data.to_string());
    bridge(py)?.error_from_native.bind(py).call1((
        error.code(),
        error.kind().name(),
        error.message(),
        error.app_code(),
        data_json,
    ))
}

/// A core error raised as its `toolmesh` exception.
pub(crate) fn to_pyerr(py: Python<'_>, error: &Error) -> PyErr {
    match error_object(py, error) {
        Ok(exception) => PyErr::from_value(exception),
        Err(import_failure) => import_failure,
    }
}
