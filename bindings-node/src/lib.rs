//! `toolmesh.node`: the Node binding's adapter to toolmesh-core.
//!
//! The surface is deliberately tiny: JSON crosses as strings, every asynchronous operation runs
//! on core's one tokio runtime and settles a JS promise, and tool calls reach JavaScript through
//! one threadsafe function per agent. Sockets, certificates and MCP all stay in core; the
//! idiomatic API is TypeScript (`lib/`).
//!
//! napi-rs is built without its `tokio_rt` feature, so it never starts a runtime of its own.

// deny, not forbid: the #[napi] macros allow unsafe_code in the code they generate, which a
// forbid refuses; code written here may still not use unsafe.
#![deny(unsafe_code)]
// napi-rs registers the exports only outside cfg(test), so a test build sees them as unused.
#![cfg_attr(test, allow(dead_code))]

mod context;
mod errors;
mod handler;
mod native_agent;
mod settle;
