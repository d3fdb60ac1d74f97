//! Registrations shared by replicas through a store (PostgreSQL, see `store/pg_agents.rs`):
//! what this replica accepts goes out as a [`Change`]; what another replica accepted comes in
//! through [`Registry::adopt`] and [`Registry::forget`]; heartbeats stay in memory and reach the
//! store in one batch per period ([`Registry::take_beaten`]), and what the store knows of the
//! other replicas' heartbeats comes back through [`Registry::seen`].

use super::{Agent, Caller, Registry};
use crate::validate;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use toolmesh_core::registry_api::{RegisterRequest, Topology};
use toolmesh_core::text::Escaped;

/// A registration this replica accepted or removed, for the other replicas.
#[derive(Debug, Clone)]
pub enum Change {
    Registered { registration: RegisterRequest, caller: Caller },
    Removed { agent_id: String },
}

impl Change {
    pub fn agent_id(&self) -> &str {
        match self {
            Change::Registered { registration, .. } => &registration.agent_id,
            Change::Removed { agent_id } => agent_id,
        }
    }
}

pub(super) struct Shared {
    changes: mpsc::UnboundedSender<Change>,
    /// How much later than here another replica's heartbeat may be known here.
    lag: Duration,
}

impl Registry {
    /// A replica among others sharing registrations: its changes are sent on `changes`, and a
    /// heartbeat another replica received may be known here up to `lag` late (staleness and
    /// probes allow for it). It evicts no silent agent itself: the store's leader does, once.
    pub fn shared(self, changes: mpsc::UnboundedSender<Change>, lag: Duration) -> Self {
        Registry { shared: Some(Shared { changes, lag }), ..self }
    }

    pub(super) fn shared_lag(&self) -> Duration {
        self.shared.as_ref().map_or(Duration::ZERO, |shared| shared.lag)
    }

    /// Sends a change to the other replicas (sent under the state lock, so in the order made).
    pub(super) fn publish(&self, change: Change) {
        if let Some(shared) = &self.shared {
            // The receiver lives as long as the store's runtime; past it there is nobody to tell.
            let _ = shared.changes.send(change);
        }
    }

    /// Takes a registration another replica accepted (or that the store held at this replica's
    /// start), last heard of `silent` ago. The accepting replica checked it (identity, name,
    /// policy, quotas); here it only joins the topologies. The same registration again changes
    /// nothing.
    pub fn adopt(&self, registration: RegisterRequest, caller: Caller, silent: Duration) {
        let dependencies = match validate::registration(&registration) {
            Ok(dependencies) => dependencies,
            Err(e) => {
                tracing::warn!(agent_id = %Escaped(&registration.agent_id), "ignoring a shared registration this registry cannot read: {e}");
                return;
            }
        };
        let mut state = self.lock();
        let agent_id = registration.agent_id.clone();
        if state.agents.get(&agent_id).is_some_and(|held| held.registration == registration && held.caller == caller) {
            return;
        }
        let bytes = serde_json::to_vec(&registration).map_or(0, |json| json.len());
        let previous = state.remove(&agent_id);
        let mut affected: BTreeSet<String> = registration.tools.iter().map(|t| t.capability.clone()).collect();
        let topology = match previous {
            Some(old) => {
                affected.extend(old.provided_capabilities().map(str::to_owned));
                old.topology
            }
            None => watch::Sender::new(Arc::new(Topology::new(Vec::new()))),
        };
        tracing::info!(agent_id = %Escaped(&agent_id), name = %Escaped(&registration.name), "agent registered at another replica");
        let now = Instant::now();
        state.insert(Agent {
            registration,
            caller,
            bytes,
            last_heartbeat: now.checked_sub(silent).unwrap_or(now),
            stale: false,
            unreachable: false,
            dependencies,
            topology,
            certificate_not_after: None,
            registered_at: now,
        });
        let mut refresh = state.dependents_of(affected.iter().map(String::as_str));
        refresh.insert(agent_id);
        state.refresh(&refresh);
    }

    /// Removes an agent another replica removed (deregistered, evicted); `evicted_here` when
    /// this replica's eviction removed it from the store (counted here, once per mesh).
    pub fn forget(&self, agent_id: &str, evicted_here: bool) {
        let mut state = self.lock();
        let Some(agent) = state.remove(agent_id) else { return };
        let name = Escaped(&agent.registration.name);
        if evicted_here {
            let silent_ms = agent.last_heartbeat.elapsed().as_millis() as u64;
            tracing::info!(agent_id = %Escaped(agent_id), %name, silent_ms, "agent evicted: heartbeats stopped at every replica");
            self.metrics.evicted_silent.inc();
        } else {
            tracing::info!(agent_id = %Escaped(agent_id), %name, "agent removed at another replica");
        }
        state.beaten_here.remove(agent_id);
        state.refresh_dependents_of(&agent);
    }

    /// The agents that sent a heartbeat here since the last call, for one batched write.
    pub fn take_beaten(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().beaten_here).into_iter().collect()
    }

    /// Heartbeats [`Registry::take_beaten`] took that could not be stored: kept for the next batch.
    pub fn beaten_again(&self, agent_ids: Vec<String>) {
        self.lock().beaten_here.extend(agent_ids);
    }

    /// The store could not be read for `blind`: heartbeats other replicas received in that time
    /// are unknown here, so no agent's silence grows by it (none turns stale for the store's
    /// absence; this replica's own probes still find agents that died).
    pub fn store_unheard(&self, blind: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        for agent in state.agents.values_mut() {
            agent.last_heartbeat = (agent.last_heartbeat + blind).min(now);
        }
    }

    /// Takes what the store knows of each agent's last heartbeat at any replica (`silent`
    /// for so long), when it is newer than this replica's; answers the ids the store holds
    /// that this replica does not (a change it missed).
    pub fn seen(&self, silences: &[(String, Duration)]) -> Vec<String> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut missing = Vec::new();
        for (agent_id, silent) in silences {
            match state.agents.get_mut(agent_id) {
                Some(agent) => {
                    let seen = now.checked_sub(*silent).unwrap_or(now);
                    if seen > agent.last_heartbeat {
                        agent.last_heartbeat = seen;
                    }
                }
                None => missing.push(agent_id.clone()),
            }
        }
        missing
    }

    /// Removes the agents the store no longer holds (removed while this replica missed the
    /// news): those not in `stored`, taken before the store was read at `read_at`, and not
    /// among this replica's own changes still on their way to the store (`unsent`).
    pub fn forget_unstored(&self, stored: &HashSet<String>, read_at: Instant, unsent: &HashSet<String>) {
        let gone: Vec<String> = {
            let state = self.lock();
            state
                .agents
                .values()
                .filter(|a| a.registered_at < read_at)
                .map(|a| &a.registration.agent_id)
                .filter(|id| !stored.contains(*id) && !unsent.contains(*id))
                .cloned()
                .collect()
        };
        for agent_id in gone {
            self.forget(&agent_id, false);
        }
    }
}
