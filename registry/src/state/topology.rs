//! Computing each agent's topology (the providers routable for its dependencies, as the applied
//! policy lets it see them) and waking its watchers when it changed.

use super::{Agent, Caller, Registry, State};
use crate::access;
use std::collections::BTreeSet;
use std::sync::Arc;
use toolmesh_core::policy::Policy;
use toolmesh_core::registry_api::{Provider, ResolvedDependency, ToolInfo, Topology};
use toolmesh_core::resolve::Selector;

impl Registry {
    /// Takes a newly applied policy: every topology is computed again under it, and the agents
    /// whose topology changed learn it at their next heartbeat or long poll.
    pub fn replace_policy(&self, policy: Arc<Policy>) {
        let mut state = self.lock();
        state.policy = Some(policy);
        let everyone: BTreeSet<String> = state.agents.keys().cloned().collect();
        state.refresh(&everyone);
    }
}

impl State {
    pub(super) fn refresh_dependents_of(&self, gone: &Agent) {
        let dependents = self.dependents_of(gone.provided_capabilities());
        self.refresh(&dependents);
    }

    /// Recomputes the topologies of `agent_ids` and wakes the watchers of those that changed.
    pub(super) fn refresh(&self, agent_ids: &BTreeSet<String>) {
        for agent in agent_ids.iter().filter_map(|id| self.agents.get(id)) {
            let topology = self.topology_of(agent);
            agent.topology.send_if_modified(|current| {
                let changed = current.version != topology.version;
                if changed {
                    *current = Arc::new(topology);
                }
                changed
            });
        }
    }

    fn topology_of(&self, agent: &Agent) -> Topology {
        Topology::new(
            agent
                .dependencies
                .iter()
                .map(|d| ResolvedDependency {
                    key: d.spec.key(),
                    spec: d.spec.clone(),
                    providers: self.routable(&d.selector, &d.spec.capability, Some(&agent.caller)),
                })
                .collect(),
        )
    }

    /// The providers `selector` matches that `viewer` may discover (all for `None`), ranked:
    /// the healthy ones, or the stale ones when no healthy one matches.
    pub(super) fn routable(&self, selector: &Selector, capability: &str, viewer: Option<&Caller>) -> Vec<Provider> {
        let healthy = selector.rank(self.providers_of(capability, false, viewer));
        if healthy.is_empty() {
            selector.rank(self.providers_of(capability, true, viewer))
        } else {
            healthy
        }
    }

    /// Every registered tool of `capability` whose agent is (or is not) stale or unreachable and that is
    /// visible to `viewer`, as an (unscored) provider.
    fn providers_of<'a>(&'a self, capability: &'a str, stale: bool, viewer: Option<&'a Caller>) -> impl Iterator<Item = Provider> + 'a {
        self.providers
            .get(capability)
            .into_iter()
            .flatten()
            .filter_map(|id| self.agents.get(id))
            .filter(move |agent| agent.out_of_rotation() == stale)
            .flat_map(move |agent| {
                agent
                    .registration
                    .tools
                    .iter()
                    .filter(move |t| t.capability == capability && self.visible(agent, t, viewer))
                    .map(|t| provider(agent, t))
            })
    }

    /// The applied policy, else the built-in default: allow within the mesh, deny partner
    /// entities until a rule names them.
    pub(super) fn policy(&self) -> &Policy {
        static DEFAULT: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
        self.policy.as_deref().unwrap_or_else(|| DEFAULT.get_or_init(Policy::allow_mesh))
    }

    /// Whether `tool` of `agent` is offered at all (its identity may still provide it under the
    /// applied policy: revoking a provide rule drops providers registered before) and `viewer`
    /// may discover it (`None`: an admin, who sees every provided tool).
    pub(super) fn visible(&self, agent: &Agent, tool: &ToolInfo, viewer: Option<&Caller>) -> bool {
        let policy = self.policy();
        let name = &agent.registration.name;
        access::provide(policy, &agent.caller, name, tool).allowed
            && viewer.is_none_or(|viewer| access::discover(policy, viewer, name, tool))
    }
}

fn provider(agent: &Agent, tool: &ToolInfo) -> Provider {
    let registration = &agent.registration;
    Provider::of(&registration.agent_id, &registration.name, &registration.endpoint, tool)
}
