//! The registry's durable state as one value: entities, the applied policy, the auto-TLS CA.

use serde::{Deserialize, Serialize};
use toolmesh_core::registry_api::StoredPolicy;

/// Everything a registry keeps across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durable {
    #[serde(default)]
    pub entities: Vec<StoredEntity>,
    /// The applied access policy; `None` while none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<StoredPolicy>,
    /// The CA and join token of a `--tls-auto` registry; `None` without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_tls: Option<AutoTlsState>,
}

/// One trusted entity (another organisation's CA) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntity {
    pub name: String,
    pub ca_cert: String,
    pub added_at: String,
    /// Absent in files from before trust domains were recorded: then the default for the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// The CA a `--tls-auto` registry issues every certificate of the mesh from, and the join token
/// agents present to get one.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoTlsState {
    pub ca_cert: String,
    pub ca_key: String,
    pub join_token: String,
}

impl std::fmt::Debug for AutoTlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoTlsState").field("ca_cert", &self.ca_cert).finish_non_exhaustive()
    }
}
