//! Registrations are bound to identity: the name an agent registers under is the one its
//! verified certificate carries, and one identity may hold only so much of the registry.
//!
//! - The name a certificate carries is the last segment of its SPIFFE ID
//!   (`spiffe://td/agent/calc` → `calc`), or its CN when it has no SPIFFE ID (legacy
//!   certificates). Registry and operator certificates carry no agent name.
//! - A mesh identity registers exactly that name.
//! - A partner entity's identity registers `<certname>` or `<entity>/<certname>`, and is recorded
//!   as `<entity>/<certname>` either way: its names live in its own namespace, so a partner can
//!   never take a mesh name, nor another partner's.

/// Why a requested name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRefusal {
    pub requested: String,
    /// The name the certificate carries; `None` when it carries none.
    pub carried: Option<String>,
    pub message: String,
}

/// The name a certificate identity carries, or why it carries none.
pub fn carried_name(identity: &str) -> Result<&str, String> {
    if let Some(name) = toolmesh_core::policy::agent_name_of(identity) {
        return Ok(name);
    }
    if !identity.starts_with(toolmesh_core::spiffe_id::SCHEME) {
        return Err("the certificate names neither a SPIFFE ID nor a CN".to_owned());
    }
    match toolmesh_core::SpiffeId::parse(identity) {
        Err(invalid) => Err(invalid.to_string()),
        Ok(id) => match id.role() {
            Some(role @ ("registry" | "operator")) => Err(format!("{identity} is a certificate of role '{role}', not of an agent")),
            _ => Err(format!("{identity} names no workload (its SPIFFE ID has no path)")),
        },
    }
}

/// The name a registration of `requested` by `identity` (of `entity`, if a partner's) is
/// recorded under, or why it is refused.
pub fn bound_name(identity: &str, entity: Option<&str>, requested: &str) -> Result<String, NameRefusal> {
    // Quoted back in refusals, which reach terminals and logs.
    let shown = toolmesh_core::text::escape(requested);
    let refuse = |carried: Option<&str>, message: String| NameRefusal {
        requested: requested.to_owned(),
        carried: carried.map(str::to_owned),
        message,
    };
    let carried = carried_name(identity).map_err(|why| {
        refuse(
            None,
            format!(
                "{why}, so it may not register agents; an agent registers under the name its certificate carries: \
                 issue a certificate for {shown}: toolmesh certs issue {shown}"
            ),
        )
    })?;
    match entity {
        None if carried.contains('/') => Err(refuse(
            Some(carried),
            format!("the certificate of {identity} carries the name '{carried}'; names with '/' are those of partner entities' agents"),
        )),
        None if requested == carried => Ok(carried.to_owned()),
        None => Err(refuse(
            Some(carried),
            format!(
                "the certificate of {identity} carries the agent name '{carried}', not '{shown}': an agent registers \
                 under the name its certificate carries; run it as '{carried}', or issue a certificate for {shown}: \
                 toolmesh certs issue {shown}"
            ),
        )),
        Some(entity) => {
            let recorded = format!("{entity}/{carried}");
            if requested == carried || requested == recorded {
                Ok(recorded)
            } else {
                Err(refuse(
                    Some(carried),
                    format!(
                        "the certificate of {identity} (entity '{entity}') carries the agent name '{carried}', not '{shown}': \
                         run it as '{carried}' (recorded as '{recorded}'), or have your CA issue a certificate for {shown}"
                    ),
                ))
            }
        }
    }
}

/// How much of the registry one identity (all its replicas together) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub max_agents: usize,
    pub max_tools: usize,
    /// Bytes of registration JSON, as stored.
    pub max_bytes: usize,
}

pub const DEFAULT_MAX_AGENTS: usize = 64;
pub const DEFAULT_MAX_TOOLS: usize = 1024;
/// Four registrations of the largest size a request may have (1 MiB).
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

impl Default for Quotas {
    fn default() -> Self {
        Quotas { max_agents: DEFAULT_MAX_AGENTS, max_tools: DEFAULT_MAX_TOOLS, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// What one identity holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub agents: usize,
    pub tools: usize,
    pub bytes: usize,
}

impl Usage {
    pub fn add(self, other: Usage) -> Usage {
        Usage { agents: self.agents + other.agents, tools: self.tools + other.tools, bytes: self.bytes + other.bytes }
    }

    pub fn sub(self, other: Usage) -> Usage {
        Usage {
            agents: self.agents.saturating_sub(other.agents),
            tools: self.tools.saturating_sub(other.tools),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }
}

/// A quota a registration would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The rule, named like its registry flag without dashes: `max_agents_per_identity`.
    pub rule: &'static str,
    pub limit: usize,
    pub would_hold: usize,
}

impl QuotaExceeded {
    pub fn describe(&self, identity: &str) -> String {
        let flag = self.rule.replace('_', "-");
        let what = match self.rule {
            "max_agents_per_identity" => "agents",
            "max_tools_per_identity" => "tools",
            _ => "bytes of registrations",
        };
        format!(
            "{identity} would hold {} {what}, more than the {} this registry allows one identity (--{flag}); \
             its existing registrations are unchanged: deregister some, or ask the operator to raise --{flag}",
            self.would_hold, self.limit
        )
    }
}

impl Quotas {
    /// Checks what an identity would hold with a registration added.
    pub fn check(&self, held: Usage) -> Result<(), QuotaExceeded> {
        let checks = [
            ("max_agents_per_identity", self.max_agents, held.agents),
            ("max_tools_per_identity", self.max_tools, held.tools),
            ("max_bytes_per_identity", self.max_bytes, held.bytes),
        ];
        match checks.into_iter().find(|(_, limit, would_hold)| would_hold > limit) {
            Some((rule, limit, would_hold)) => Err(QuotaExceeded { rule, limit, would_hold }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_the_last_segment_of_its_spiffe_id_or_its_cn() {
        assert_eq!(carried_name("spiffe://td/agent/calc"), Ok("calc"));
        assert_eq!(carried_name("spiffe://td/ns/prod/sa/calc"), Ok("calc"));
        assert_eq!(carried_name("legacy-calc"), Ok("legacy-calc"));
        assert!(carried_name("spiffe://td/operator/ops").unwrap_err().contains("role 'operator'"));
        assert!(carried_name("spiffe://td/registry/registry").is_err());
        assert!(carried_name("spiffe://td").is_err());
        assert!(carried_name("spiffe://td/agent/").unwrap_err().contains("is not a SPIFFE ID: it ends with '/'"));
        assert!(carried_name("unknown").is_err());
    }

    #[test]
    fn mesh_names_must_match_and_entity_names_are_namespaced() {
        assert_eq!(bound_name("spiffe://td/agent/calc", None, "calc"), Ok("calc".to_owned()));
        let refused = bound_name("spiffe://td/agent/evil", None, "calc").unwrap_err();
        assert_eq!(refused.carried.as_deref(), Some("evil"));
        assert!(refused.message.contains("toolmesh certs issue calc") && refused.message.contains("'evil'"), "{}", refused.message);
        assert!(bound_name("partner/calc", None, "partner/calc").is_err(), "a mesh CN may not pose as a partner's agent");
        assert!(bound_name("spiffe://td/operator/ops", None, "ops").unwrap_err().message.contains("not of an agent"));

        let theirs = "spiffe://partner.example/agent/theirs";
        assert_eq!(bound_name(theirs, Some("partner"), "theirs"), Ok("partner/theirs".to_owned()));
        assert_eq!(bound_name(theirs, Some("partner"), "partner/theirs"), Ok("partner/theirs".to_owned()));
        assert!(bound_name(theirs, Some("partner"), "calc").is_err());
        assert!(bound_name("spiffe://partner.example/agent/calc", Some("partner"), "other/calc").is_err());
        assert_eq!(
            bound_name("spiffe://partner.example/agent/calc", Some("partner"), "calc"),
            Ok("partner/calc".to_owned()),
            "never the mesh's calc"
        );
    }

    #[test]
    fn quotas_name_the_first_rule_exceeded() {
        let quotas = Quotas { max_agents: 2, max_tools: 10, max_bytes: 100 };
        assert_eq!(quotas.check(Usage { agents: 2, tools: 10, bytes: 100 }), Ok(()));
        let exceeded = quotas.check(Usage { agents: 3, tools: 1, bytes: 1 }).unwrap_err();
        assert_eq!((exceeded.rule, exceeded.limit, exceeded.would_hold), ("max_agents_per_identity", 2, 3));
        assert!(exceeded.describe("spiffe://td/agent/a").contains("--max-agents-per-identity"));
        assert_eq!(quotas.check(Usage { agents: 1, tools: 1, bytes: 101 }).unwrap_err().rule, "max_bytes_per_identity");
    }
}
