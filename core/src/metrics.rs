//! Prometheus metrics: relaxed atomic counters and gauges, fixed-bucket duration histograms,
//! series keyed by small `Copy` keys, and the text exposition format (0.0.4) the health
//! listener's `/metrics` answers with. The metric names and labels are listed in docs/metrics.md.
//!
//! Recording is a few relaxed atomic adds: no allocation, no I/O, and a lock only to find a
//! labelled series (a read lock, but the first time a series is seen). Every label's values come
//! from a bounded set, so the number of series is bounded; `agent.rs` says which sets.

mod agent;
mod callees;

pub use agent::{AgentMetrics, ClientMetrics, ClientOperation, Outcome, ServerMetrics, ServerOperation, TlsMetrics, TlsSide};

use crate::fx_hash::FxHashMap;
use std::fmt::{Display, Write};
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down; [`Gauge::enter`] counts something while it lasts.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one until the returned guard is dropped.
    pub fn enter(&self) -> Entered<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Entered(self)
    }

    /// Adds `delta` (negative to take away), for a count whose holder is not a scope.
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One in a [`Gauge`], until dropped.
pub struct Entered<'a>(&'a Gauge);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The upper bounds of the duration buckets, in nanoseconds: the OpenTelemetry MCP semantic
/// conventions' advice (10 ms … 300 s) with sub-millisecond buckets below it, where calls
/// between agents on one network land.
const BUCKET_BOUNDS_NANOS: [u64; 20] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
    300_000_000_000,
];

/// A duration histogram with the fixed buckets of [`BUCKET_BOUNDS_NANOS`] (and `+Inf`).
#[derive(Default)]
pub struct Histogram {
    /// Per bucket, not cumulative: an observation adds to one. The last is `+Inf`.
    counts: [AtomicU64; BUCKET_BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The series of one metric, by a small key whose parts each come from a bounded set. A series
/// is made the first time its key is seen.
pub struct Family<K, V> {
    series: RwLock<FxHashMap<K, V>>,
}

impl<K, V> Default for Family<K, V> {
    fn default() -> Self {
        Family { series: RwLock::default() }
    }
}

impl<K: Copy + Eq + Hash, V: Default> Family<K, V> {
    /// Runs `f` on the series of `key`.
    pub fn with<R>(&self, key: K, f: impl FnOnce(&V) -> R) -> R {
        if let Some(series) = self.series.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return f(series);
        }
        f(self.series.write().unwrap_or_else(|e| e.into_inner()).entry(key).or_default())
    }

    /// Every series, as `each` turns it into a sort key and what to write, in that order.
    pub fn sorted<S: Ord>(&self, mut each: impl FnMut(K, &V) -> S) -> Vec<S> {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<S> = series.iter().map(|(key, value)| each(*key, value)).collect();
        out.sort();
        out
    }
}

/// A snapshot of a [`Histogram`], to write once its labels are known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
    sum_nanos: u64,
}

impl From<&Histogram> for HistogramSnapshot {
    fn from(histogram: &Histogram) -> Self {
        HistogramSnapshot {
            counts: histogram.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum_nanos: histogram.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// The kinds of metric the exposition format names.
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Writes the text exposition format, version 0.0.4: for each metric its `# HELP` and `# TYPE`
/// lines, then its samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a metric; its samples follow.
    pub fn metric(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.text, " {value}");
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram series (in seconds).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &HistogramSnapshot) {
        let mut cumulative = 0;
        for (i, count) in histogram.counts.iter().enumerate() {
            cumulative += count;
            let bound = match BUCKET_BOUNDS_NANOS.get(i) {
                Some(&nanos) => seconds(nanos).to_string(),
                None => "+Inf".to_owned(),
            };
            let _ = write!(self.text, "{name}_bucket");
            self.labels(labels, Some(&bound));
            let _ = writeln!(self.text, " {cumulative}");
        }
        let _ = write!(self.text, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.text, " {}", seconds(histogram.sum_nanos));
        let _ = write!(self.text, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.text, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.text
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.text.push('{');
        let all = labels.iter().copied().chain(le.map(|bound| ("le", bound)));
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{name}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(100)); // on the first bound: le="0.0001"
        histogram.observe(Duration::from_micros(101));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(301)); // past the last bound: +Inf only
        let mut out = Exposition::default();
        out.metric("op_duration_seconds", Kind::Histogram, "How long.");
        out.histogram("op_duration_seconds", &[("method", "tools/call")], &HistogramSnapshot::from(&histogram));
        let text = out.finish();
        let line = |bound: &str| {
            let prefix = format!("op_duration_seconds_bucket{{method=\"tools/call\",le=\"{bound}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no bucket {bound} in\n{text}"));
            line[prefix.len()..].to_owned()
        };
        assert_eq!(line("0.0001"), "1");
        assert_eq!(line("0.00025"), "2");
        assert_eq!(line("0.0025"), "2");
        assert_eq!(line("0.005"), "3");
        assert_eq!(line("300"), "3");
        assert_eq!(line("+Inf"), "4");
        assert!(text.contains("op_duration_seconds_count{method=\"tools/call\"} 4\n"), "{text}");
        assert!(text.contains("op_duration_seconds_sum{method=\"tools/call\"} 301.003201\n"), "{text}");
        assert!(text.starts_with("# HELP op_duration_seconds How long.\n# TYPE op_duration_seconds histogram\n"), "{text}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = Exposition::default();
        out.metric("x_total", Kind::Counter, "a \\ b\nc");
        out.sample("x_total", &[("a", "q\"b\\s\nn"), ("b", "plain")], 7);
        out.sample("y", &[], -2);
        assert_eq!(
            out.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{a=\"q\\\"b\\\\s\\nn\",b=\"plain\"} 7\ny -2\n"
        );
    }

    #[test]
    fn a_gauge_counts_what_is_entered_until_it_is_left() {
        let gauge = Gauge::default();
        let first = gauge.enter();
        let second = gauge.enter();
        assert_eq!(gauge.get(), 2);
        drop(first);
        assert_eq!(gauge.get(), 1);
        drop(second);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_family_makes_a_series_per_key_once() {
        let family: Family<(u8, bool), Counter> = Family::default();
        family.with((1, true), Counter::inc);
        family.with((1, true), Counter::inc);
        family.with((2, false), Counter::inc);
        assert_eq!(family.sorted(|key, counter| (key, counter.get())), [((1, true), 2), ((2, false), 1)]);
    }
}
