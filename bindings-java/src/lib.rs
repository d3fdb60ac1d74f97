//! `libtoolmesh_jni`: the Java binding's adapter to toolmesh-core, loaded by `dev.toolmesh.Native`.
//!
//! The surface is small on purpose: JSON crosses as strings, native objects are named by handles
//! (numbers looked up in tables, so a stale or repeated handle is refused instead of being
//! undefined behaviour), asynchronous results reach Java by request id, and every invocation of a
//! Java tool is only enqueued onto the agent's Java executor. Sockets, certificates and MCP all
//! stay in core.

// No unsafe blocks anywhere: the jni crate's safe API does the FFI. Only the modules that
// export JNI functions allow the lint, for their `#[no_mangle]` (the JVM finds them by name).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod agent;
mod entry;
mod handles;
#[allow(unsafe_code)]
mod invocation;
mod jvm;
mod strings;
#[allow(unsafe_code)]
mod testing;
