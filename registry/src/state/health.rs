//! Agents whose heartbeats stopped: stale ones routed to only as a last resort, silent ones
//! evicted, late and reported ones probed and marked unreachable.

use super::{Agent, Registry};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use toolmesh_core::text::Escaped;

impl Registry {
    /// Removes the agents whose last heartbeat is older than `max_silence` (unless replicas
    /// share registrations: then the shared store's leader evicts), and takes those
    /// whose heartbeat is overdue out of their dependents' topologies while healthy providers
    /// remain.
    pub fn sweep(&self, max_silence: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        let stale_after = self.stale_after();
        let mut turned_stale = BTreeSet::new();
        for agent in state.agents.values_mut() {
            if !agent.stale && now.duration_since(agent.last_heartbeat) > stale_after {
                agent.stale = true;
                tracing::info!(
                    agent_id = %Escaped(&agent.registration.agent_id),
                    name = %Escaped(&agent.registration.name),
                    silent_ms = now.duration_since(agent.last_heartbeat).as_millis() as u64,
                    "agent stale: heartbeats overdue; routed to only when no healthy provider remains"
                );
                turned_stale.extend(agent.provided_capabilities().map(str::to_owned));
            }
        }
        if !turned_stale.is_empty() {
            let dependents = state.dependents_of(turned_stale.iter().map(String::as_str));
            state.refresh(&dependents);
        }
        if self.shared.is_some() {
            // Replicas evict once per mesh, from the shared store (see `shared.rs`): an agent
            // silent here may be beating at another replica.
            return;
        }
        let silent: Vec<String> = state
            .agents
            .values()
            .filter(|a| now.duration_since(a.last_heartbeat) > max_silence)
            .map(|a| a.registration.agent_id.clone())
            .collect();
        for agent_id in &silent {
            if let Some(agent) = state.remove(agent_id) {
                tracing::info!(
                    agent_id = %Escaped(agent_id),
                    name = %Escaped(&agent.registration.name),
                    silent_ms = now.duration_since(agent.last_heartbeat).as_millis() as u64,
                    "agent evicted: heartbeats stopped"
                );
                self.metrics.evicted_silent.inc();
                state.refresh_dependents_of(&agent);
            }
        }
    }

    /// The agents to probe: those whose heartbeat is late (more than [`Registry::probe_after`]
    /// since the last) and that are not known unreachable yet. Each comes with its last
    /// heartbeat, which [`Registry::mark_unreachable`] compares.
    pub fn late(&self) -> Vec<Probe> {
        let state = self.lock();
        let now = Instant::now();
        let probe_after = self.probe_after();
        state.agents.values().filter(|a| !a.unreachable && now.duration_since(a.last_heartbeat) > probe_after).map(Probe::of).collect()
    }

    /// The agents among `agent_ids` (reported unreachable by a caller) to probe: at most
    /// [`MAX_REPORTED_UNREACHABLE`], those registered and not known unreachable yet.
    pub fn reported(&self, agent_ids: &[String]) -> Vec<Probe> {
        let state = self.lock();
        agent_ids
            .iter()
            .take(MAX_REPORTED_UNREACHABLE)
            .filter_map(|id| state.agents.get(id))
            .filter(|a| !a.unreachable)
            .map(Probe::of)
            .collect()
    }

    /// The registry could not connect to a probed agent: unless it sent a heartbeat meanwhile,
    /// `list` shows it `unreachable` and its dependents' topologies leave it out while healthy
    /// providers remain, until its next heartbeat.
    pub fn mark_unreachable(&self, probe: &Probe, why: &str) {
        let mut state = self.lock();
        let Some(agent) = state.agents.get_mut(&probe.agent_id) else { return };
        if agent.unreachable || agent.last_heartbeat != probe.last_heartbeat {
            return;
        }
        agent.unreachable = true;
        tracing::info!(
            agent_id = %Escaped(&probe.agent_id),
            name = %Escaped(&agent.registration.name),
            endpoint = %Escaped(&probe.endpoint),
            silent_ms = agent.last_heartbeat.elapsed().as_millis() as u64,
            "agent unreachable: {why}; routed to only when no healthy provider remains"
        );
        let capabilities: Vec<String> = agent.provided_capabilities().map(str::to_owned).collect();
        let dependents = state.dependents_of(capabilities.iter().map(String::as_str));
        state.refresh(&dependents);
    }

    /// How long a probe waits for a connection: half an interval, within 100 ms to 1 s.
    pub fn probe_timeout(&self) -> Duration {
        (self.heartbeat_interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// A heartbeat is late, and the agent worth a probe, a tenth of an interval after it was
    /// due (well before it counts as stale).
    fn probe_after(&self) -> Duration {
        self.heartbeat_interval.mul_f64(1.1) + self.shared_lag()
    }
}

/// Most agents one heartbeat may report unreachable (the registry probes each).
pub const MAX_REPORTED_UNREACHABLE: usize = 16;

/// An agent to probe: where it listens, and its heartbeat when the probe was decided.
#[derive(Debug, Clone)]
pub struct Probe {
    pub agent_id: String,
    pub endpoint: String,
    last_heartbeat: Instant,
}

impl Probe {
    fn of(agent: &Agent) -> Probe {
        Probe {
            agent_id: agent.registration.agent_id.clone(),
            endpoint: agent.registration.endpoint.clone(),
            last_heartbeat: agent.last_heartbeat,
        }
    }
}
