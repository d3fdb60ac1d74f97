//! The registry's in-memory state: who is registered, what each agent provides and depends on,
//! and each agent's current topology.
//!
//! Every operation takes the one lock, does its work without awaiting, and releases it. When an
//! agent arrives, changes or leaves, only the agents that depend on a capability it provides (or
//! provided) get their topology recomputed, through the `dependents` index; watchers are woken
//! through a `watch` channel per agent, and only when the topology's version actually changed.
//!
//! A provider whose heartbeat is overdue (stale, as `list` shows it) is left out of topologies
//! while a healthy provider of the same dependency exists: it is probably gone, and would only
//! cost its callers a failed connection until eviction. With no healthy provider it stays, as a
//! last resort.
//!
//! An agent is *unreachable* when the registry itself could not connect to its endpoint: it
//! probes an agent whose heartbeat is late (more than an interval since the last, a tenth of an
//! interval before it counts as stale), and an agent a caller reported it could not reach. An
//! unreachable agent is routed to like a stale one (only as the last resort), and is healthy
//! again with its next heartbeat. The probe is a bare TCP connection, closed at once: it costs
//! the agent nothing, and a refused connection is proof the process is gone.
//!
//! Registrations are bound to identity (see `binding`): an agent registers under the name its
//! certificate carries, a name held by one identity's live registrations is refused to every
//! other, and one identity holds at most its quotas of agents, tools and bytes.
//!
//! This file holds the types ([`Registry`], its locked `State`, one `Agent`); what they do is in
//! `state/`: `membership.rs` (register, heartbeat, watch, deregister, evict an entity),
//! `health.rs` (stale agents, eviction, probes of unreachable ones), `queries.rs` (list,
//! resolve, tools by name), `topology.rs` (computing topologies and waking watchers, the
//! applied policy), `index.rs` (the maps kept beside the agents), `shared.rs` (registrations
//! shared with other replicas through a store), `caller.rs` and `error.rs`.

mod caller;
mod error;
mod health;
mod index;
mod membership;
mod queries;
mod shared;
#[cfg(test)]
mod tests;
mod topology;

pub use caller::Caller;
pub use error::StateError;
pub use health::Probe;
pub use shared::Change;

use crate::binding::{Quotas, Usage};
use crate::metrics::RegistryMetrics;
use crate::validate::Dependency;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use toolmesh_core::policy::Policy;
use toolmesh_core::registry_api::{RegisterRequest, Topology};

/// The current topology of one agent, as watchers see it.
pub type TopologyWatch = watch::Receiver<Arc<Topology>>;

pub struct Registry {
    state: Mutex<State>,
    quotas: Quotas,
    heartbeat_interval: Duration,
    /// Until when, after a start, agents of the registry's previous life may still be coming
    /// back (one eviction window): answers say `warming_up`.
    warm_until: Instant,
    metrics: RegistryMetrics,
    /// With replicas sharing registrations (see `shared.rs`): where this replica's changes go,
    /// and how late another replica's heartbeats may reach it. `None`: this registry alone.
    shared: Option<shared::Shared>,
}

#[derive(Default)]
struct State {
    agents: HashMap<String, Agent>,
    /// capability → ids of the agents with a tool of that capability.
    providers: HashMap<String, HashSet<String>>,
    /// capability → ids of the agents with a dependency on that capability.
    dependents: HashMap<String, HashSet<String>>,
    /// name → the identity whose live registrations hold it, and how many they are.
    names: HashMap<String, (Caller, usize)>,
    /// What each identity holds, against its quotas.
    usage: HashMap<Caller, Usage>,
    /// The access policy applied at the registry: `provide` is decided at registration and
    /// again whenever a topology is computed, `discover` per viewer. `None` while none was
    /// applied: the built-in allow-mesh default decides.
    policy: Option<Arc<Policy>>,
    /// The agents that sent a heartbeat here since the shared store last heard of it.
    beaten_here: HashSet<String>,
}

struct Agent {
    registration: RegisterRequest,
    caller: Caller,
    /// The size of the registration's JSON, counted against the caller's byte quota.
    bytes: usize,
    last_heartbeat: Instant,
    /// The heartbeat is overdue (see [`Registry::sweep`]); routed to only when nothing else is.
    stale: bool,
    /// The registry could not connect to the agent's endpoint since its last heartbeat (see
    /// [`Registry::mark_unreachable`]); routed to only when nothing else is.
    unreachable: bool,
    dependencies: Vec<Dependency>,
    topology: watch::Sender<Arc<Topology>>,
    /// When the certificate the agent last presented to the registry expires (Unix seconds).
    certificate_not_after: Option<i64>,
    /// When this registry took the registration (a replica's reconciliation with the shared
    /// store leaves alone what it took after reading the store).
    registered_at: Instant,
}

impl Agent {
    fn provided_capabilities(&self) -> impl Iterator<Item = &str> {
        self.registration.tools.iter().map(|t| t.capability.as_str())
    }

    /// Routed to only when no healthy provider remains.
    fn out_of_rotation(&self) -> bool {
        self.stale || self.unreachable
    }

    fn depended_capabilities(&self) -> impl Iterator<Item = &str> {
        self.dependencies.iter().map(|d| d.spec.capability.as_str())
    }

    /// What this registration counts against its identity's quotas.
    fn usage(&self) -> Usage {
        Usage { agents: 1, tools: self.registration.tools.len(), bytes: self.bytes }
    }
}

impl Registry {
    /// Agents silent for `eviction_intervals` heartbeat intervals are evicted (by [`Registry::sweep`]).
    pub fn new(heartbeat_interval: Duration, eviction_intervals: u32) -> Self {
        let warm_until = Instant::now() + heartbeat_interval * eviction_intervals;
        let metrics = RegistryMetrics::default();
        Registry { state: Mutex::new(State::default()), quotas: Quotas::default(), heartbeat_interval, warm_until, metrics, shared: None }
    }

    /// The same registry with other per-identity quotas.
    pub fn with_quotas(self, quotas: Quotas) -> Self {
        Registry { quotas, ..self }
    }

    /// What the registry counts as it goes.
    pub fn metrics(&self) -> &RegistryMetrics {
        &self.metrics
    }

    /// How many agents are registered, by health: `healthy`, `stale`, `unreachable`.
    pub fn agents_by_health(&self) -> [(&'static str, usize); 3] {
        let state = self.lock();
        let count = |f: fn(&Agent) -> bool| state.agents.values().filter(|a| f(a)).count();
        [("healthy", count(|a| !a.out_of_rotation())), ("stale", count(|a| a.stale)), ("unreachable", count(|a| a.unreachable && !a.stale))]
    }

    /// Every agent that was alive before this registry started has had time to register again.
    fn warming_up(&self) -> bool {
        Instant::now() < self.warm_until
    }

    /// A heartbeat more than half an interval overdue (and, with shared registrations, later
    /// than another replica's heartbeats may take to arrive here).
    fn stale_after(&self) -> Duration {
        self.heartbeat_interval.mul_f64(1.5) + self.shared_lag()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("registry state lock poisoned")
    }

    fn interval_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64
    }
}
