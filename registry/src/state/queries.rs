//! Reading the state: the agent list, resolving a dependency, tools by name.

use super::{Caller, Registry, StateError};
use tokio::time::Instant;
use toolmesh_core::registry_api::{AgentInfo, AgentList, DependencySpec, ResolveResponse, ToolInfo};
use toolmesh_core::resolve::Selector;

impl Registry {
    /// Every agent, ordered by name then id; `unreachable` when the registry could not connect
    /// to it since its last heartbeat, else `stale` when a heartbeat is more than half an
    /// interval overdue. A `viewer` (not an admin) sees its own agents, and the others with the
    /// tools it may discover, if any.
    pub fn list(&self, viewer: Option<&Caller>) -> AgentList {
        let state = self.lock();
        let now = Instant::now();
        let stale_after = self.stale_after();
        let mut agents: Vec<AgentInfo> = state
            .agents
            .values()
            .filter_map(|a| {
                let tools: Vec<ToolInfo> = match viewer {
                    Some(viewer) if a.caller != *viewer => {
                        let visible: Vec<ToolInfo> =
                            a.registration.tools.iter().filter(|t| state.visible(a, t, Some(viewer))).cloned().collect();
                        if visible.is_empty() {
                            return None;
                        }
                        visible
                    }
                    _ => a.registration.tools.clone(),
                };
                let silence = now.duration_since(a.last_heartbeat);
                Some(AgentInfo {
                    agent_id: a.registration.agent_id.clone(),
                    name: a.registration.name.clone(),
                    endpoint: a.registration.endpoint.clone(),
                    tools,
                    status: if a.unreachable {
                        "unreachable"
                    } else if silence > stale_after {
                        "stale"
                    } else {
                        "healthy"
                    }
                    .to_owned(),
                    last_seen_ms: silence.as_millis() as u64,
                    identity: a.caller.identity.clone(),
                    entity: a.caller.entity.clone(),
                })
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.agent_id.cmp(&b.agent_id)));
        AgentList { agents }
    }

    /// The ids of the registered agents.
    pub fn agent_ids(&self) -> std::collections::HashSet<String> {
        self.lock().agents.keys().cloned().collect()
    }

    /// (dependent agent id, provider agent id) for every provider in every agent's current
    /// topology: who may call whom, as resolved for them.
    pub fn dependency_pairs(&self) -> std::collections::BTreeSet<(String, String)> {
        let state = self.lock();
        let mut pairs = std::collections::BTreeSet::new();
        for (id, agent) in &state.agents {
            for dependency in &agent.topology.borrow().dependencies {
                pairs.extend(dependency.providers.iter().map(|p| (id.clone(), p.agent_id.clone())));
            }
        }
        pairs
    }

    /// When each agent's certificate expires (Unix seconds), by agent id, as far as known.
    pub fn certificate_expiries(&self) -> std::collections::HashMap<String, i64> {
        let state = self.lock();
        state.agents.iter().filter_map(|(id, a)| Some((id.clone(), a.certificate_not_after?))).collect()
    }

    /// The providers of `spec` that `viewer` may discover (every one for an admin: `None`).
    pub fn resolve(&self, spec: &DependencySpec, viewer: Option<&Caller>) -> Result<ResolveResponse, StateError> {
        let selector = Selector::new(spec).map_err(|e| StateError::Invalid(e.message().to_owned()))?;
        let state = self.lock();
        Ok(ResolveResponse { providers: state.routable(&selector, &spec.capability, viewer) })
    }

    /// The registered tools named `tool` (of agent `agent` only, if given) as (agent name, tool),
    /// ordered by agent name; each agent name once.
    pub fn tools_named(&self, tool: &str, agent: Option<&str>) -> Vec<(String, ToolInfo)> {
        let state = self.lock();
        let mut found: Vec<(String, ToolInfo)> = state
            .agents
            .values()
            .filter(|a| agent.is_none_or(|name| a.registration.name == name))
            .flat_map(|a| a.registration.tools.iter().filter(|t| t.name == tool).map(|t| (a.registration.name.clone(), t.clone())))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        found
    }
}
