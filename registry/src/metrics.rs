//! The registry's metrics, served at `/metrics` on its health listener: the agents it holds,
//! the heartbeats and evictions, the long polls waiting, its trace store, and its TLS handshakes. Names and labels
//! are listed in docs/metrics.md.

use crate::state::Registry;
use crate::traces::TraceStore;
use toolmesh_core::metrics::{Counter, Exposition, Gauge, Kind, TlsMetrics};

/// What the registry counts as it goes.
#[derive(Default)]
pub struct RegistryMetrics {
    pub heartbeats: Counter,
    /// Agents whose heartbeats stopped.
    pub evicted_silent: Counter,
    /// Agents of a revoked entity.
    pub evicted_revoked: Counter,
    pub long_poll_waiters: Gauge,
}

/// The exposition of every metric of `registry` (and of its listener's `handshakes`, and its
/// trace store).
pub fn render(registry: &Registry, handshakes: &TlsMetrics, traces: &TraceStore) -> String {
    let metrics = registry.metrics();
    let mut out = Exposition::default();
    out.metric(
        "toolmesh_registry_agents",
        Kind::Gauge,
        "Agents registered, by health (stale: heartbeats overdue; unreachable: the registry could not connect).",
    );
    for (health, count) in registry.agents_by_health() {
        out.sample("toolmesh_registry_agents", &[("health", health)], count);
    }
    out.metric("toolmesh_registry_heartbeats_total", Kind::Counter, "Heartbeats accepted.");
    out.sample("toolmesh_registry_heartbeats_total", &[], metrics.heartbeats.get());
    out.metric("toolmesh_registry_evictions_total", Kind::Counter, "Agents evicted, by why.");
    out.sample("toolmesh_registry_evictions_total", &[("reason", "heartbeats_stopped")], metrics.evicted_silent.get());
    out.sample("toolmesh_registry_evictions_total", &[("reason", "entity_revoked")], metrics.evicted_revoked.get());
    out.metric("toolmesh_registry_long_poll_waiters", Kind::Gauge, "Topology long polls waiting for a change now.");
    out.sample("toolmesh_registry_long_poll_waiters", &[], metrics.long_poll_waiters.get());
    traces.write(&mut out);
    handshakes.write(&mut out);
    out.finish()
}
