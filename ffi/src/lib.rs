//! The C ABI of toolmesh: opaque handles over toolmesh-core, described by the committed header
//! `include/toolmesh.h` (generated from this crate by cbindgen; `scripts/c-tests.sh` fails when
//! the two drift apart).
//!
//! The rules every export follows:
//! - A fallible function returns a `toolmesh_result` (0 or an error code) and takes a last
//!   `toolmesh_error **error_out` (may be NULL) that receives the error's code and message on
//!   failure. Outputs are written only on success.
//! - Every handle has one owner and one function that frees it; freeing NULL does nothing.
//! - Pointer arguments are borrowed for the call unless the function's documentation says it
//!   takes them over.
//! - No panic crosses the boundary (`boundary`), and no C code runs on a tokio worker: handlers
//!   and completions run on host threads (`host_threads`).
//!
//! This crate is where toolmesh's `unsafe` lives; each block says why it is sound.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]

// In the order the header presents them: cbindgen emits items in module order.
mod boundary;
pub mod call;
pub mod error;
pub mod handler;
pub mod handles;
mod host_threads;
pub mod result;
mod sigpipe;
