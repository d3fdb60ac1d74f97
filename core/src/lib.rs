//! toolmesh-core: the service mesh that lives inside an MCP agent.
//!
//! One module per concern: [`tls`] (identities and handshakes), [`server`] and [`client`]
//! (HTTPS transport), [`mcp`] (the protocol), [`registry_api`] and [`discovery`] (the phone
//! book), [`resolve`] (dependency matching), [`pipeline`] (outbound calls), [`context`]
//! (propagated request data), [`report`] (what a handler reports while it runs), [`host`] (the bridge every language binding implements) and
//! [`agent`] (all of it together).
#![forbid(unsafe_code)]

pub mod agent;
pub mod authorize;
pub mod auto_tls;
pub mod certificate;
pub mod client;
pub mod config;
pub mod context;
pub mod discovery;
pub mod error;
pub mod fs_private;
pub mod fx_hash;
pub mod health;
pub mod host;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod origin;
mod per_generation;
pub mod pipeline;
pub mod policy;
pub mod registry_api;
pub mod registry_client;
pub mod registry_endpoints;
pub mod report;
pub mod resolve;
pub mod runtime;
pub mod server;
pub mod spiffe_id;
pub mod text;
pub mod tls;
pub mod trace;

pub use error::{Error, ErrorKind, Result};
pub use spiffe_id::SpiffeId;
