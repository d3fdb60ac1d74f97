//! The opaque handles C holds, one module each, each with one ownership rule.

// Header order: a configuration starts an agent, whose handler receives invocations.
pub mod agent;
pub mod config;
pub mod invocation;
