//! The policy document operators write (JSON or YAML), shaped like the Kubernetes agentic
//! networking SIG's draft `XAccessPolicy` (SPIFFE-ID sources, MCP method and tool matching) so
//! that it can map onto it later. `docs/identity.md` is its reference.

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "toolmesh.dev/v1alpha1";
pub const KIND: &str = "AccessPolicy";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    /// What happens when no rule matches.
    #[serde(default)]
    pub default: DefaultAction,
    #[serde(default)]
    pub rules: Vec<RuleDocument>,
}

impl Default for PolicyDocument {
    fn default() -> Self {
        PolicyDocument { api_version: api_version(), kind: kind(), default: DefaultAction::AllowMesh, rules: Vec::new() }
    }
}

fn api_version() -> String {
    API_VERSION.to_owned()
}

fn kind() -> String {
    KIND.to_owned()
}

/// The decision when no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultAction {
    /// Allow principals of the mesh's own trust domain; deny everyone else (partner entities
    /// included). The default of `certs init` and `--tls-auto` dev meshes.
    #[default]
    AllowMesh,
    /// Deny whatever no rule allows: the production setting.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDocument {
    /// Names the rule in decisions, denials and the audit.
    pub name: String,
    #[serde(default)]
    pub action: Action,
    /// The phases the rule decides; both `discover` and `call` when absent, so that what a
    /// caller sees and what it may call come from one rule (`provide` is always explicit).
    #[serde(default = "default_phases")]
    pub phases: Vec<Phase>,
    /// Who calls (the mTLS peer); any mesh principal when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PrincipalDocument>,
    /// Who started the chain of calls (the verified origin; the caller itself on a direct call);
    /// not checked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<PrincipalDocument>,
    /// What is called, seen or provided; everything when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetDocument>,
    /// MCP methods (`tools/call`, `tools/list`); any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Per caller, per tool limits on what the rule allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsDocument>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

/// The three moments identity decides something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// May register as a provider of (enforced by the registry).
    Provide,
    /// Sees in the topology and in `tools/list` (the registry and each agent).
    Discover,
    /// May call (each callee, in core).
    Call,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provide => "provide",
            Phase::Discover => "discover",
            Phase::Call => "call",
        }
    }
}

fn default_phases() -> Vec<Phase> {
    vec![Phase::Discover, Phase::Call]
}

/// Matches a principal when **any** listed criterion matches (as `XAccessPolicy`'s `Source`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalDocument {
    /// SPIFFE IDs, exact or with `*` (`spiffe://toolmesh.local/agent/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// SPIFFE trust domains (`partner.example`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Trusted partner entities by name (`toolmesh entity add NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// Agent names (the name the certificate carries), exact or with `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}

/// Matches a target when **every** given list has a match (a rule for `tools: [add]` and
/// `agents: [calc]` is about `add` on `calc` only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetDocument {
    /// The providing agent's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Matches when the tool carries at least one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsDocument {
    /// Calls per second, per caller and tool (a token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Calls allowed at once above the rate; the rate rounded up (at least 1) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Calls in flight at once, per caller and tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}
