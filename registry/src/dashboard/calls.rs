//! The mesh's call graph over a sliding window: each agent's heartbeat reports the calls it made
//! to each provider agent since its last one (counted exactly by core, see
//! `toolmesh_core::metrics`), and the dashboard shows per edge the calls, errors and mean latency
//! of the last window.
//!
//! An edge keeps one bucket per tenth of the window, so memory is bounded by the edges (at most
//! the registered agents squared, and only between registered agents) times ten.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use toolmesh_core::registry_api::ReportedCalls;

/// Buckets per window.
const BUCKETS: u32 = 10;

pub struct CallGraph {
    window: Duration,
    /// The calls a report covers at most: one heartbeat interval.
    interval: Duration,
    edges: Mutex<HashMap<(String, String), Edge>>,
}

struct Edge {
    /// When the first report of this edge arrived.
    since: Instant,
    buckets: VecDeque<Bucket>,
}

struct Bucket {
    start: Instant,
    calls: u64,
    errors: u64,
    duration_ns: u64,
}

/// One edge over the window, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EdgeStats {
    /// The calling agent's id.
    pub from: String,
    /// The provider agent's id.
    pub to: String,
    /// The provider is in the caller's topology (a dependency resolved to it); an edge can be
    /// declared without calls, or have calls without being declared any more.
    pub declared: bool,
    pub calls: u64,
    pub errors: u64,
    pub calls_per_second: f64,
    /// errors / calls; 0 without calls.
    pub error_rate: f64,
    pub mean_latency_ms: f64,
}

impl CallGraph {
    /// A graph over the last `window`, from reports that each cover up to `interval`.
    pub fn new(window: Duration, interval: Duration) -> Self {
        CallGraph { window, interval, edges: Mutex::new(HashMap::new()) }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Adds what the agent `from` reported; calls to agents for which `registered` is false are
    /// left out (so a report cannot grow the graph past the registered agents).
    pub fn record(&self, from: &str, reports: &[ReportedCalls], registered: impl Fn(&str) -> bool) {
        self.record_at(Instant::now(), from, reports, registered);
    }

    fn record_at(&self, now: Instant, from: &str, reports: &[ReportedCalls], registered: impl Fn(&str) -> bool) {
        let width = self.window / BUCKETS;
        let mut edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        for report in reports.iter().filter(|r| r.calls > 0 && registered(&r.agent_id)) {
            let edge =
                edges.entry((from.to_owned(), report.agent_id.clone())).or_insert_with(|| Edge { since: now, buckets: VecDeque::new() });
            if edge.buckets.back().is_none_or(|b| now.duration_since(b.start) >= width) {
                edge.buckets.push_back(Bucket { start: now, calls: 0, errors: 0, duration_ns: 0 });
            }
            let bucket = edge.buckets.back_mut().expect("a bucket was just ensured");
            bucket.calls = bucket.calls.saturating_add(report.calls);
            bucket.errors = bucket.errors.saturating_add(report.errors.min(report.calls));
            bucket.duration_ns = bucket.duration_ns.saturating_add(report.duration_ns);
        }
    }

    /// Every edge between agents still `registered` with calls in the window, sorted; edges
    /// without either are forgotten.
    pub fn edges(&self, registered: impl Fn(&str) -> bool) -> Vec<EdgeStats> {
        self.edges_at(Instant::now(), registered)
    }

    fn edges_at(&self, now: Instant, registered: impl Fn(&str) -> bool) -> Vec<EdgeStats> {
        let mut edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        edges.retain(|(from, to), edge| {
            while edge.buckets.front().is_some_and(|b| now.duration_since(b.start) > window) {
                edge.buckets.pop_front();
            }
            !edge.buckets.is_empty() && registered(from) && registered(to)
        });
        let mut stats: Vec<EdgeStats> = edges
            .iter()
            .map(|((from, to), edge)| {
                let (calls, errors, duration_ns) = edge.buckets.iter().fold((0u64, 0u64, 0u64), |(c, e, d), b| {
                    (c.saturating_add(b.calls), e.saturating_add(b.errors), d.saturating_add(b.duration_ns))
                });
                // A young edge's rate is over the time it has been reported for (its first report
                // covers up to an interval before it arrived), not over a window mostly empty.
                let covered = (now.duration_since(edge.since) + self.interval).min(window).as_secs_f64();
                EdgeStats {
                    from: from.clone(),
                    to: to.clone(),
                    declared: false,
                    calls,
                    errors,
                    calls_per_second: calls as f64 / covered,
                    error_rate: if calls == 0 { 0.0 } else { errors as f64 / calls as f64 },
                    mean_latency_ms: if calls == 0 { 0.0 } else { duration_ns as f64 / calls as f64 / 1e6 },
                }
            })
            .collect();
        stats.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(agent_id: &str, calls: u64, errors: u64, duration_ms: u64) -> ReportedCalls {
        ReportedCalls { agent_id: agent_id.to_owned(), calls, errors, duration_ns: duration_ms * 1_000_000 }
    }

    #[test]
    fn an_edge_adds_up_its_reports_over_the_window_and_forgets_older_ones() {
        let graph = CallGraph::new(Duration::from_secs(10), Duration::from_secs(1));
        let start = Instant::now();
        let all = |_: &str| true;
        graph.record_at(start, "a", &[report("b", 4, 1, 8), report("c", 1, 0, 1)], all);
        graph.record_at(start + Duration::from_secs(1), "a", &[report("b", 6, 0, 12)], all);
        let at = start + Duration::from_secs(4);
        let edges = graph.edges_at(at, all);
        assert_eq!(edges.len(), 2);
        let ab = &edges[0];
        assert_eq!((ab.from.as_str(), ab.to.as_str(), ab.calls, ab.errors), ("a", "b", 10, 1));
        assert!((ab.error_rate - 0.1).abs() < 1e-9 && (ab.mean_latency_ms - 2.0).abs() < 1e-9, "{ab:?}");
        // Reported for 4 s, covering an interval before the first report: 10 calls in 5 s.
        assert!((ab.calls_per_second - 2.0).abs() < 1e-9, "{ab:?}");
        // Past the window, the first report is forgotten, then the edge.
        let later = graph.edges_at(start + Duration::from_millis(10_500), all);
        assert_eq!(later.iter().map(|e| (e.to.as_str(), e.calls)).collect::<Vec<_>>(), [("b", 6)]);
        assert!((later[0].calls_per_second - 0.6).abs() < 1e-9, "a full window: {later:?}");
        assert!(graph.edges_at(start + Duration::from_secs(12), all).is_empty());
    }

    #[test]
    fn only_registered_agents_make_edges() {
        let graph = CallGraph::new(Duration::from_secs(10), Duration::from_secs(1));
        graph.record("a", &[report("b", 1, 0, 1), report("ghost", 5, 5, 1), report("idle", 0, 0, 0)], |id| id != "ghost");
        assert_eq!(graph.edges(|_| true).iter().map(|e| e.to.as_str()).collect::<Vec<_>>(), ["b"]);
        assert!(graph.edges(|id| id != "a").is_empty(), "an edge of an agent gone is forgotten");
        assert!(graph.edges(|_| true).is_empty(), "forgotten for good");
    }
}
