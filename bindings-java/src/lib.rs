//! `libtoolmesh_jni`: the Java binding's adapter to toolmesh-core, loaded by `dev.toolmesh.Native`.
//!
//! The surface is small on purpose: JSON crosses as strings, native objects are named by handles
//! (numbers looked up in tables, so a stale or repeated handle is refused instead of being
//! undefined behaviour), asynchronous results reach Java by request id, and every invocation of a
//! Java tool is only enqueued onto the agent's Java executor. Sockets, certificates and MCP all
//! stay in core.

mod agent;
mod entry;
mod handles;
mod invocation;
mod jvm;
mod testing;
