//! Why an operation on the state was refused.

use crate::binding::{NameRefusal, QuotaExceeded};

/// Why an operation on the state was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The request is malformed; the text names the problem.
    Invalid(String),
    /// No agent with this id is registered.
    UnknownAgent(String),
    /// A registration for an id that another certificate identity holds.
    IdentityConflict { agent_id: String, registered: String, caller: String },
    /// A heartbeat or deregistration for an agent that another certificate identity registered.
    NotOwner { agent_id: String, registered: String, caller: String },
    /// A registration under a name the caller's certificate does not carry.
    NameNotInCertificate(NameRefusal),
    /// A registration under a name that another identity's live registrations hold.
    NameHeld { name: String, holder: String, caller: String },
    /// A registration that would take the caller past one of its quotas.
    QuotaExceeded { exceeded: QuotaExceeded, caller: String },
    /// A registration with a tool the applied policy does not let the caller provide.
    ProvideDenied { message: String, rule: String, tool: String },
}
