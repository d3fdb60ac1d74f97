//! The opaque handles C holds, one module each, each with one ownership rule.

pub mod agent;
pub mod call_headers;
pub mod config;
pub mod invocation;
