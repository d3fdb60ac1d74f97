//! `toolmesh._native`: the Python binding's adapter to toolmesh-core.
//!
//! The surface is deliberately tiny: JSON crosses as strings, every asynchronous operation
//! answers through an asyncio future settled on its loop, and tool calls reach Python through
//! one dispatch thread. Sockets, certificates and MCP all stay in core.

#![forbid(unsafe_code)]

mod bridge;
mod context;
mod dispatch;
mod native_agent;
mod responder;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<context::Context>()?;
    m.add_class::<native_agent::NativeAgent>()?;
    m.add_class::<responder::Responder>()?;
    m.add_function(wrap_pyfunction!(native_agent::start, m)?)?;
    m.add_function(wrap_pyfunction!(native_agent::start_failure, m)?)?;
    m.add_function(wrap_pyfunction!(native_agent::error_class, m)?)?;
    m.add_function(wrap_pyfunction!(native_agent::assign_proxy_parameters, m)?)?;
    m.add_function(wrap_pyfunction!(dispatch::close_dispatch, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::install_bridge, m)?)?;
    Ok(())
}
