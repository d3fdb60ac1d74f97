//! The calls an agent made to each provider agent since its last heartbeat, which reports them
//! (`HeartbeatRequest::calls`) for the registry's dashboard: exact counts, errors and summed
//! durations, taken (and reset) at each heartbeat.
//!
//! Recording takes a read lock and three relaxed atomic adds; the write lock only when a provider
//! is first called in an interval. At most [`MAX_REPORTED_CALLEES`] providers are kept per
//! interval: calls to others are not reported (an agent's topology is far smaller).

use crate::fx_hash::FxHashMap;
use crate::registry_api::{ReportedCalls, MAX_REPORTED_CALLEES};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

#[derive(Default)]
pub struct CalleeTally {
    callees: RwLock<FxHashMap<String, Tally>>,
}

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    errors: AtomicU64,
    duration_ns: AtomicU64,
}

impl Tally {
    fn add(&self, failed: bool, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.duration_ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl CalleeTally {
    /// One call to the agent `agent_id` ended.
    pub fn record(&self, agent_id: &str, failed: bool, elapsed: Duration) {
        if let Some(tally) = self.callees.read().unwrap_or_else(|e| e.into_inner()).get(agent_id) {
            return tally.add(failed, elapsed);
        }
        let mut callees = self.callees.write().unwrap_or_else(|e| e.into_inner());
        if let Some(tally) = callees.get(agent_id) {
            return tally.add(failed, elapsed);
        }
        if callees.len() < MAX_REPORTED_CALLEES {
            callees.entry(agent_id.to_owned()).or_default().add(failed, elapsed);
        }
    }

    /// The calls since the last take, by provider (sorted by agent id); counting starts afresh.
    /// A call recorded while this runs lands in this take or the next, never in neither.
    pub fn take(&self) -> Vec<ReportedCalls> {
        let taken = std::mem::take(&mut *self.callees.write().unwrap_or_else(|e| e.into_inner()));
        let mut calls: Vec<ReportedCalls> = taken
            .into_iter()
            .map(|(agent_id, t)| ReportedCalls {
                agent_id,
                calls: t.calls.into_inner(),
                errors: t.errors.into_inner(),
                duration_ns: t.duration_ns.into_inner(),
            })
            .collect();
        calls.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_provider_until_taken_then_afresh() {
        let tally = CalleeTally::default();
        tally.record("b-1", false, Duration::from_millis(2));
        tally.record("a-1", true, Duration::from_millis(5));
        tally.record("b-1", true, Duration::from_millis(3));
        let taken = tally.take();
        let expect = |agent_id: &str, calls, errors, ms: u64| ReportedCalls {
            agent_id: agent_id.to_owned(),
            calls,
            errors,
            duration_ns: ms * 1_000_000,
        };
        assert_eq!(taken, [expect("a-1", 1, 1, 5), expect("b-1", 2, 1, 5)]);
        assert!(tally.take().is_empty(), "a take starts counting afresh");
        tally.record("a-1", false, Duration::from_millis(1));
        assert_eq!(tally.take(), [expect("a-1", 1, 0, 1)]);
    }

    #[test]
    fn at_most_the_reported_number_of_providers_is_kept_per_interval() {
        let tally = CalleeTally::default();
        for i in 0..MAX_REPORTED_CALLEES + 5 {
            tally.record(&format!("agent-{i:03}"), false, Duration::from_micros(1));
        }
        tally.record("agent-000", false, Duration::from_micros(1));
        let taken = tally.take();
        assert_eq!(taken.len(), MAX_REPORTED_CALLEES);
        assert_eq!(taken[0].calls, 2, "a provider already kept still counts");
        assert!(!taken.iter().any(|c| c.agent_id == format!("agent-{MAX_REPORTED_CALLEES:03}")));
    }
}
