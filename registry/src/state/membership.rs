//! Agents joining, beating and leaving: register, heartbeat, watch, deregister, and evicting a
//! revoked entity's agents.

use super::{Agent, Caller, Change, Registry, StateError, TopologyWatch};
use crate::access;
use crate::binding::{self, Usage};
use crate::validate;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;
use toolmesh_core::registry_api::{HeartbeatResponse, RegisterRequest, RegisterResponse, Topology};
use toolmesh_core::text::Escaped;

impl Registry {
    /// Registers an agent, or updates it when the same identity registers the same id again
    /// (an agent re-registers after a registry restart or an eviction). The name recorded is
    /// the one the caller's certificate carries (an entity's in its namespace); a refused
    /// registration changes nothing.
    pub fn register(&self, mut registration: RegisterRequest, caller: &Caller) -> Result<RegisterResponse, StateError> {
        let dependencies = validate::registration(&registration).map_err(StateError::Invalid)?;
        registration.name = binding::bound_name(&caller.identity, caller.entity.as_deref(), &registration.name)
            .map_err(StateError::NameNotInCertificate)?;
        let bytes = serde_json::to_vec(&registration).map_or(0, |json| json.len());
        let agent_id = registration.agent_id.clone();
        let mut state = self.lock();
        if let Some(existing) = state.agents.get(&agent_id).filter(|existing| existing.caller != *caller) {
            return Err(StateError::IdentityConflict { agent_id, registered: existing.caller.describe(), caller: caller.describe() });
        }
        if let Some((holder, _)) = state.names.get(&registration.name).filter(|(holder, _)| holder != caller) {
            return Err(StateError::NameHeld { name: registration.name, holder: holder.describe(), caller: caller.describe() });
        }
        let policy = state.policy();
        for tool in &registration.tools {
            let decision = access::provide(policy, caller, &registration.name, tool);
            if !decision.allowed {
                let message = access::provide_denied_message(&caller.describe(), &registration.name, tool, &decision.rule);
                return Err(StateError::ProvideDenied { message, rule: decision.rule.to_string(), tool: tool.name.clone() });
            }
        }
        let this = Usage { agents: 1, tools: registration.tools.len(), bytes };
        self.quotas
            .check(state.usage_of(caller, &agent_id).add(this))
            .map_err(|exceeded| StateError::QuotaExceeded { exceeded, caller: caller.describe() })?;
        let previous = state.remove(&agent_id);
        let re_registration = previous.is_some();
        let mut affected: BTreeSet<String> = BTreeSet::new();
        // Keeping the channel of a re-registered agent keeps its watchers attached.
        let topology = match previous {
            Some(old) => {
                affected.extend(old.provided_capabilities().map(str::to_owned));
                old.topology
            }
            None => watch::Sender::new(Arc::new(Topology::new(Vec::new()))),
        };
        affected.extend(registration.tools.iter().map(|t| t.capability.clone()));
        tracing::info!(
            agent_id = %Escaped(&agent_id),
            name = %Escaped(&registration.name),
            endpoint = %Escaped(&registration.endpoint),
            identity = %Escaped(&caller.identity),
            entity = caller.entity.as_deref().unwrap_or("-"),
            tools = registration.tools.len(),
            dependencies = dependencies.len(),
            re_registration,
            "agent registered"
        );
        self.publish(Change::Registered { registration: registration.clone(), caller: caller.clone() });
        state.insert(Agent {
            registration,
            caller: caller.clone(),
            bytes,
            last_heartbeat: Instant::now(),
            stale: false,
            unreachable: false,
            dependencies,
            topology,
            certificate_not_after: None,
            registered_at: Instant::now(),
        });
        let mut refresh = state.dependents_of(affected.iter().map(String::as_str));
        refresh.insert(agent_id.clone());
        state.refresh(&refresh);
        let topology = state.agents[&agent_id].topology.borrow().as_ref().clone();
        Ok(RegisterResponse {
            agent_id,
            heartbeat_interval_ms: self.interval_ms(),
            topology,
            trust_bundle_version: None,
            policy_version: None,
            warming_up: self.warming_up(),
        })
    }

    /// Records a heartbeat; answers with the topology only when `held_version` is outdated.
    pub fn heartbeat(&self, agent_id: &str, caller: &Caller, held_version: u64) -> Result<HeartbeatResponse, StateError> {
        let mut state = self.lock();
        let agent = state.owned_mut(agent_id, caller)?;
        agent.last_heartbeat = Instant::now();
        self.metrics.heartbeats.inc();
        let was_unreachable = std::mem::take(&mut agent.unreachable);
        if std::mem::take(&mut agent.stale) | was_unreachable {
            tracing::info!(agent_id, name = %Escaped(&agent.registration.name), "agent healthy again: heartbeats resumed");
            let dependents = state.dependents_of(state.agents[agent_id].provided_capabilities());
            state.refresh(&dependents);
        }
        if self.shared.is_some() {
            state.beaten_here.insert(agent_id.to_owned());
        }
        let current = state.agents[agent_id].topology.borrow();
        let topology = (current.version != held_version).then(|| current.as_ref().clone());
        Ok(HeartbeatResponse { topology, trust_bundle_version: None, policy_version: None, warming_up: self.warming_up() })
    }

    /// Notes when the certificate the agent presented with a registration or heartbeat expires
    /// (Unix seconds): it follows the agent's rotations, as each new certificate makes new
    /// connections.
    pub fn presented_certificate(&self, agent_id: &str, not_after: i64) {
        if let Some(agent) = self.lock().agents.get_mut(agent_id) {
            agent.certificate_not_after = Some(not_after);
        }
    }

    /// A receiver of the agent's topology, for its long polls: only the identity that registered
    /// it may watch it (a topology is what that agent may discover, decided for it). Its sender
    /// is dropped (and the receiver sees the channel closed) when the agent is deregistered or
    /// evicted.
    pub fn watch(&self, agent_id: &str, caller: &Caller) -> Result<TopologyWatch, StateError> {
        let mut state = self.lock();
        Ok(state.owned_mut(agent_id, caller)?.topology.subscribe())
    }

    /// Removes an agent; only the identity that registered it may, or an admin (`as_admin`).
    pub fn deregister(&self, agent_id: &str, caller: &Caller, as_admin: bool) -> Result<(), StateError> {
        let mut state = self.lock();
        let owner = match state.owned_mut(agent_id, caller) {
            Ok(_) => None,
            Err(StateError::NotOwner { registered, .. }) if as_admin => Some(registered),
            Err(e) => return Err(e),
        };
        let Some(agent) = state.remove(agent_id) else { return Err(StateError::UnknownAgent(agent_id.to_owned())) };
        self.publish(Change::Removed { agent_id: agent_id.to_owned() });
        let name = Escaped(&agent.registration.name);
        match owner {
            None => tracing::info!(agent_id, %name, "agent deregistered"),
            Some(owner) => {
                tracing::info!(agent_id, %name, owner = %Escaped(&owner), by = %Escaped(&caller.describe()), "agent deregistered by an admin")
            }
        }
        state.refresh_dependents_of(&agent);
        Ok(())
    }

    /// Removes every agent of a revoked entity at once, so nobody is routed to them; answers
    /// their ids.
    pub fn evict_entity(&self, entity: &str) -> Vec<String> {
        let mut state = self.lock();
        let members: Vec<String> =
            state.agents.values().filter(|a| a.caller.entity.as_deref() == Some(entity)).map(|a| a.registration.agent_id.clone()).collect();
        for agent_id in &members {
            if let Some(agent) = state.remove(agent_id) {
                tracing::info!(agent_id = %Escaped(agent_id), name = %Escaped(&agent.registration.name), entity, "agent evicted: its entity was revoked");
                self.metrics.evicted_revoked.inc();
                self.publish(Change::Removed { agent_id: agent_id.clone() });
                state.refresh_dependents_of(&agent);
            }
        }
        members
    }
}
