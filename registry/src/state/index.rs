//! The maps kept beside the agents (providers and dependents by capability, names held, usage by
//! identity), updated together as agents come and go.

use super::{Agent, Caller, State, StateError};
use crate::binding::Usage;
use std::collections::{BTreeSet, HashMap, HashSet};

impl State {
    /// What `caller` holds, leaving out the agent `except` (which a registration replaces).
    pub(super) fn usage_of(&self, caller: &Caller, except: &str) -> Usage {
        let held = self.usage.get(caller).copied().unwrap_or_default();
        match self.agents.get(except).filter(|a| a.caller == *caller) {
            Some(replaced) => held.sub(replaced.usage()),
            None => held,
        }
    }

    /// The agent, if `caller` is the identity that registered it.
    pub(super) fn owned_mut(&mut self, agent_id: &str, caller: &Caller) -> Result<&mut Agent, StateError> {
        let agent = self.agents.get_mut(agent_id).ok_or_else(|| StateError::UnknownAgent(agent_id.to_owned()))?;
        if agent.caller != *caller {
            return Err(StateError::NotOwner {
                agent_id: agent_id.to_owned(),
                registered: agent.caller.describe(),
                caller: caller.describe(),
            });
        }
        Ok(agent)
    }

    pub(super) fn insert(&mut self, agent: Agent) {
        let id = &agent.registration.agent_id;
        for capability in agent.provided_capabilities() {
            self.providers.entry(capability.to_owned()).or_default().insert(id.clone());
        }
        for capability in agent.depended_capabilities() {
            self.dependents.entry(capability.to_owned()).or_default().insert(id.clone());
        }
        let held = self.names.entry(agent.registration.name.clone()).or_insert_with(|| (agent.caller.clone(), 0));
        held.1 += 1;
        let usage = self.usage.entry(agent.caller.clone()).or_default();
        *usage = usage.add(agent.usage());
        self.agents.insert(id.clone(), agent);
    }

    /// Removes an agent and its index entries; dependents are not refreshed here.
    pub(super) fn remove(&mut self, agent_id: &str) -> Option<Agent> {
        let agent = self.agents.remove(agent_id)?;
        unindex(&mut self.providers, agent.provided_capabilities(), agent_id);
        unindex(&mut self.dependents, agent.depended_capabilities(), agent_id);
        if let Some(held) = self.names.get_mut(&agent.registration.name) {
            held.1 -= 1;
            if held.1 == 0 {
                self.names.remove(&agent.registration.name);
            }
        }
        if let Some(usage) = self.usage.get_mut(&agent.caller) {
            *usage = usage.sub(agent.usage());
            if usage.agents == 0 {
                self.usage.remove(&agent.caller);
            }
        }
        Some(agent)
    }

    pub(super) fn dependents_of<'a>(&self, capabilities: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        capabilities.filter_map(|c| self.dependents.get(c)).flatten().cloned().collect()
    }
}

fn unindex<'a>(index: &mut HashMap<String, HashSet<String>>, capabilities: impl Iterator<Item = &'a str>, agent_id: &str) {
    for capability in capabilities {
        if let Some(ids) = index.get_mut(capability) {
            ids.remove(agent_id);
            if ids.is_empty() {
                index.remove(capability);
            }
        }
    }
}
