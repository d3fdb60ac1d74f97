//! The registry's trace store: the spans agents export to it when no OTLP collector is named
//! (`POST /v1/traces`, OTLP/HTTP protobuf), kept in memory for `toolmesh trace` and the
//! dashboard. Bounded by a number of spans and an estimate of their bytes (see [`TraceLimits`]):
//! past either, the exporter (verified identity) holding the largest share of the store gives
//! up its oldest trace — its spans of it, the trace going with its last span — so that one
//! identity exporting a flood evicts its own traces, not every other agent's. Counted on
//! `/metrics`. Nothing is written to disk; a restart starts empty.
//!
//! Spans arrive all the time and are read rarely (a `toolmesh trace`, a dashboard poll), so
//! each exported request is kept as it was encoded, checked whole on arrival, and only what
//! keeping, bounding, listing and evicting need is indexed (ids, times, failed or not); a span
//! is decoded when someone reads its trace. A request's bytes are freed with its last kept span.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::mem::size_of;
use std::sync::{Arc, Mutex};
use toolmesh_core::metrics::{Counter, Exposition, Kind};
use toolmesh_core::registry_api::{TraceDetail, TraceList, TraceSpan, TraceSummary};
use toolmesh_core::trace::{decode_indexed_span, index_export_request, IndexedSpan, ReceivedSpan};

/// Spans kept by default.
pub const DEFAULT_TRACE_MAX_SPANS: usize = 50_000;
/// The attribute every kept span carries: the verified identity (SPIFFE ID) of the certificate
/// that exported it.
pub const EXPORTER_ATTRIBUTE: &str = "toolmesh.exporter.identity";
/// Bytes kept by default (the estimate of [`footprint`]): 32 MiB.
pub const DEFAULT_TRACE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// How much the store keeps: past either bound, the oldest traces are evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLimits {
    pub max_spans: usize,
    /// An estimate of the memory the kept spans take: each span's encoded bytes as received
    /// (with its share of its request's resource and scope), its index entry, and a per-trace
    /// overhead.
    pub max_bytes: usize,
}

impl Default for TraceLimits {
    fn default() -> Self {
        TraceLimits { max_spans: DEFAULT_TRACE_MAX_SPANS, max_bytes: DEFAULT_TRACE_MAX_BYTES }
    }
}

/// The bounded store of recent traces. Shared by the HTTP API and the dashboard.
pub struct TraceStore {
    limits: TraceLimits,
    kept: Mutex<Kept>,
    received: Counter,
    evicted_traces: Counter,
    evicted_spans: Counter,
}

#[derive(Default)]
struct Kept {
    traces: HashMap<[u8; 16], KeptTrace, foldhash::fast::RandomState>,
    /// What each exporter (verified identity) holding spans holds.
    exporters: HashMap<Arc<str>, Share, foldhash::fast::RandomState>,
    /// The exporters by how full their share is ([`Share::fill`]), so that an eviction finds
    /// the largest without going through every exporter of a large mesh.
    by_fill: BTreeSet<(u64, Arc<str>)>,
    spans: usize,
    bytes: usize,
}

/// One exporter's part of the store.
#[derive(Default)]
struct Share {
    spans: usize,
    /// Of its spans' footprints (a trace's overhead is counted in the store's bytes only).
    bytes: usize,
    /// The traces it holds spans of, in the order its first span of each arrived: its
    /// evictions take from the front.
    arrival: VecDeque<[u8; 16]>,
}

impl Share {
    /// How full the share is, of the larger of the two bounds, as an order-keeping integer (the
    /// bits of a non-negative `f64` sort as it does).
    fn fill(&self, limits: TraceLimits) -> u64 {
        (self.spans as f64 / limits.max_spans as f64).max(self.bytes as f64 / limits.max_bytes as f64).to_bits()
    }
}

/// One trace's spans, with what its summary needs kept up to date.
struct KeptTrace {
    spans: Vec<KeptSpan>,
    /// The exporters holding spans of it (a trace's are few: one per agent it crossed).
    exporters: Vec<Arc<str>>,
    bytes: usize,
    start: u64,
    end: u64,
    errors: usize,
}

/// A span as kept: the request it came in, still encoded, and its index in it.
struct KeptSpan {
    request: Bytes,
    index: IndexedSpan,
    exporter: Arc<str>,
    bytes: usize,
}

impl KeptSpan {
    /// The span decoded from its request; `None` (logged) if it cannot be, which the check on
    /// arrival rules out.
    fn decode(&self) -> Option<ReceivedSpan> {
        decode_indexed_span(&self.request, &self.index)
            .inspect_err(|e| tracing::warn!("a kept span no longer decodes, leaving it out: {e}"))
            .ok()
    }
}

/// What a kept trace costs besides its spans: its map entry, its place in an arrival queue, its
/// list of exporters.
const TRACE_OVERHEAD: usize = size_of::<KeptTrace>() + 3 * size_of::<[u8; 16]>() + 2 * size_of::<Arc<str>>() + 16;

/// The memory a span is counted as taking: its index entry, its `Span` message and its share
/// (`envelope`) of the request's other bytes.
fn footprint(span: &IndexedSpan, envelope: usize) -> usize {
    size_of::<KeptSpan>() + span.at.len() + envelope
}

impl TraceStore {
    pub fn new(limits: TraceLimits) -> Self {
        TraceStore {
            limits,
            kept: Mutex::default(),
            received: Counter::default(),
            evicted_traces: Counter::default(),
            evicted_spans: Counter::default(),
        }
    }

    pub fn limits(&self) -> TraceLimits {
        self.limits
    }

    /// Keeps the spans of `request` (an OTLP `ExportTraceServiceRequest`, protobuf) exported
    /// by the verified identity `exporter`, or says what is wrong with it (nothing is kept
    /// then); then evicts until the store is within its bounds: the exporter holding the
    /// largest share (of the span or the byte bound, whichever it fills more) gives up its
    /// spans of its oldest trace, again and again. With one exporter that is its first received
    /// trace, whole. Any mesh certificate may export, and a span's `service.name` is the
    /// exporter's word, so each span read names who exported it ([`EXPORTER_ATTRIBUTE`],
    /// replacing one the body carried): a span an agent sends in another agent's name is told
    /// apart by whoever reads it, and counts against its own share. Returns the spans kept.
    pub fn insert(&self, request: Bytes, exporter: &str) -> Result<usize, String> {
        let spans = index_export_request(&request)?;
        if spans.is_empty() {
            return Ok(0);
        }
        let request = owned(request);
        let envelope = (request.len() - spans.iter().map(|s| s.at.len()).sum::<usize>()).div_ceil(spans.len());
        let count = spans.len();
        self.received.add(count as u64);
        let mut kept = self.kept.lock().expect("trace store lock");
        let kept = &mut *kept;
        let exporter: Arc<str> = kept.exporters.get_key_value(exporter).map_or_else(|| Arc::from(exporter), |(known, _)| known.clone());
        let share = kept.exporters.entry(exporter.clone()).or_default();
        kept.by_fill.remove(&(share.fill(self.limits), exporter.clone()));
        for index in spans {
            let bytes = footprint(&index, envelope);
            let trace = kept.traces.entry(index.trace_id).or_insert_with(|| {
                kept.bytes += TRACE_OVERHEAD;
                KeptTrace { spans: Vec::new(), exporters: Vec::new(), bytes: TRACE_OVERHEAD, start: u64::MAX, end: 0, errors: 0 }
            });
            if !trace.exporters.iter().any(|known| same(known, &exporter)) {
                trace.exporters.push(exporter.clone());
                share.arrival.push_back(index.trace_id);
            }
            trace.start = trace.start.min(index.start_unix_nano);
            trace.end = trace.end.max(index.end_unix_nano);
            trace.errors += usize::from(index.failed);
            trace.bytes += bytes;
            trace.spans.push(KeptSpan { request: request.clone(), index, exporter: exporter.clone(), bytes });
            share.spans += 1;
            share.bytes += bytes;
            kept.spans += 1;
            kept.bytes += bytes;
        }
        kept.by_fill.insert((share.fill(self.limits), exporter));
        while kept.spans > self.limits.max_spans || kept.bytes > self.limits.max_bytes {
            if !self.evict_from_largest(kept) {
                break;
            }
        }
        Ok(count)
    }

    /// Evicts the spans the exporter holding the largest share keeps of its oldest trace; false
    /// when nothing is left to evict.
    fn evict_from_largest(&self, kept: &mut Kept) -> bool {
        let Some((_, largest)) = kept.by_fill.pop_last() else {
            return false;
        };
        let Some(share) = kept.exporters.get_mut(&largest) else { return true };
        let Some(oldest) = share.arrival.pop_front() else {
            kept.exporters.remove(&largest);
            return true;
        };
        if let Some(trace) = kept.traces.get_mut(&oldest) {
            let (mut spans, mut bytes, mut errors) = (0, 0, 0);
            trace.spans.retain(|kept| {
                let theirs = same(&kept.exporter, &largest);
                if theirs {
                    (spans, bytes, errors) = (spans + 1, bytes + kept.bytes, errors + usize::from(kept.index.failed));
                }
                !theirs
            });
            trace.exporters.retain(|exporter| !same(exporter, &largest));
            (trace.bytes, trace.errors) = (trace.bytes - bytes, trace.errors - errors);
            (share.spans, share.bytes) = (share.spans - spans, share.bytes - bytes);
            (kept.spans, kept.bytes) = (kept.spans - spans, kept.bytes - bytes);
            self.evicted_spans.add(spans as u64);
            if trace.spans.is_empty() {
                kept.bytes -= trace.bytes;
                self.evicted_traces.inc();
                kept.traces.remove(&oldest);
            } else {
                trace.start = trace.spans.iter().map(|s| s.index.start_unix_nano).min().unwrap_or(trace.start);
                trace.end = trace.spans.iter().map(|s| s.index.end_unix_nano).max().unwrap_or(trace.end);
            }
        }
        if share.spans == 0 {
            kept.exporters.remove(&largest);
        } else {
            kept.by_fill.insert((share.fill(self.limits), largest));
        }
        true
    }

    /// The `last` most recent traces, newest (by start) first.
    pub fn recent(&self, last: usize) -> TraceList {
        let kept = self.kept.lock().expect("trace store lock");
        let mut newest: Vec<(&[u8; 16], &KeptTrace)> = kept.traces.iter().collect();
        newest.sort_unstable_by(|a, b| b.1.start.cmp(&a.1.start).then_with(|| a.0.cmp(b.0)));
        TraceList { traces: newest.into_iter().take(last).map(|(id, trace)| summary(id, trace)).collect() }
    }

    /// The spans of one trace, by start; `None` when no span of it is kept (or `trace_id` is
    /// not 32 hex digits).
    pub fn trace(&self, trace_id: &str) -> Option<TraceDetail> {
        let id = parse_trace_id(trace_id)?;
        let kept = self.kept.lock().expect("trace store lock");
        let trace = kept.traces.get(&id)?;
        let mut spans: Vec<TraceSpan> = trace.spans.iter().filter_map(view).collect();
        spans.sort_by_key(|s| s.start_unix_nano);
        Some(TraceDetail { trace_id: hex(&id), spans })
    }

    /// The store's figures in the registry's `/metrics` exposition.
    pub fn write(&self, out: &mut Exposition) {
        let (traces, spans, bytes, exporters, largest) = {
            let kept = self.kept.lock().expect("trace store lock");
            let largest = kept.exporters.values().map(|share| share.spans).max().unwrap_or(0);
            (kept.traces.len(), kept.spans, kept.bytes, kept.exporters.len(), largest)
        };
        out.metric("toolmesh_registry_traces", Kind::Gauge, "Traces the registry's trace store keeps.");
        out.sample("toolmesh_registry_traces", &[], traces as u64);
        out.metric("toolmesh_registry_trace_spans", Kind::Gauge, "Spans the registry's trace store keeps.");
        out.sample("toolmesh_registry_trace_spans", &[], spans as u64);
        out.metric("toolmesh_registry_trace_bytes", Kind::Gauge, "Estimated memory of the kept spans, bounded by --trace-max-bytes.");
        out.sample("toolmesh_registry_trace_bytes", &[], bytes as u64);
        out.metric("toolmesh_registry_trace_exporters", Kind::Gauge, "Verified identities whose exported spans the store keeps.");
        out.sample("toolmesh_registry_trace_exporters", &[], exporters as u64);
        out.metric(
            "toolmesh_registry_trace_largest_exporter_spans",
            Kind::Gauge,
            "Spans kept of the identity that exported the most of them: past a bound, its traces are evicted first.",
        );
        out.sample("toolmesh_registry_trace_largest_exporter_spans", &[], largest as u64);
        out.metric("toolmesh_registry_trace_spans_received_total", Kind::Counter, "Spans agents exported to the registry.");
        out.sample("toolmesh_registry_trace_spans_received_total", &[], self.received.get());
        out.metric(
            "toolmesh_registry_trace_evictions_total",
            Kind::Counter,
            "Traces evicted (oldest first) to stay within the store's bounds.",
        );
        out.sample("toolmesh_registry_trace_evictions_total", &[], self.evicted_traces.get());
        out.metric("toolmesh_registry_trace_spans_evicted_total", Kind::Counter, "Spans of the evicted traces.");
        out.sample("toolmesh_registry_trace_spans_evicted_total", &[], self.evicted_spans.get());
    }
}

/// `request` as the store may keep it: as it is when it alone holds its buffer and fills most of
/// it (a body read in several frames is gathered into one such buffer: a batch of hundreds of
/// spans is not copied again), else a copy of just its bytes (a body read in one frame may be a
/// slice of the connection's read buffer, which keeping it would keep alive).
fn owned(request: Bytes) -> Bytes {
    match request.try_into_mut() {
        Ok(alone) if alone.capacity() - alone.len() <= alone.len() / 8 => alone.freeze(),
        Ok(alone) => Bytes::copy_from_slice(&alone),
        Err(shared) => Bytes::copy_from_slice(&shared),
    }
}

/// Whether two exporter names are the same: by pointer first, as the store shares one `Arc` per
/// exporter while it holds spans of it.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// A trace id as the API writes it: 32 hex digits (either case read).
pub fn parse_trace_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The span the trace hangs from: one without a parent, else one whose parent is not kept (it
/// was never exported, or by a process exporting elsewhere), else the earliest.
fn root(trace: &KeptTrace) -> Option<&KeptSpan> {
    let ids: HashSet<[u8; 8]> = trace.spans.iter().map(|s| s.index.span_id).collect();
    let rank = |span: &IndexedSpan| match span.parent_span_id {
        None => 0,
        Some(parent) if !ids.contains(&parent) => 1,
        Some(_) => 2,
    };
    trace.spans.iter().min_by_key(|kept| (rank(&kept.index), kept.index.start_unix_nano))
}

fn summary(id: &[u8; 16], trace: &KeptTrace) -> TraceSummary {
    let root = root(trace);
    TraceSummary {
        trace_id: hex(id),
        root_name: root.and_then(KeptSpan::decode).map(|r| r.name).unwrap_or_default(),
        root_service: root.map(|r| r.index.service.to_string()).unwrap_or_default(),
        start_unix_nano: trace.start,
        duration_ns: trace.end.saturating_sub(trace.start),
        span_count: trace.spans.len(),
        error_count: trace.errors,
    }
}

fn view(kept: &KeptSpan) -> Option<TraceSpan> {
    let span = kept.decode()?;
    let mut attributes: BTreeMap<String, String> = span.attributes.into_iter().map(|(k, v)| (k.into_owned(), v)).collect();
    attributes.insert(EXPORTER_ATTRIBUTE.to_owned(), kept.exporter.to_string());
    Some(TraceSpan {
        span_id: hex(&span.span_id),
        parent_span_id: span.parent_span_id.map(|p| hex(&p)),
        name: span.name,
        service: span.service.to_string(),
        kind: span.kind,
        start_unix_nano: span.start_unix_nano,
        end_unix_nano: span.end_unix_nano,
        error: span.error,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use toolmesh_core::registry_api::TraceSpanKind;
    use toolmesh_core::trace::{otlp, SpanKind, SpanRecord, Value};

    fn span(trace: u8, id: u8, parent: Option<u8>, start: u64, end: u64) -> ReceivedSpan {
        ReceivedSpan {
            service: format!("svc{id}").into(),
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            name: format!("tools/call t{id}"),
            kind: TraceSpanKind::Server,
            start_unix_nano: start,
            end_unix_nano: end,
            attributes: vec![("gen_ai.tool.name".into(), format!("t{id}"))],
            error: None,
        }
    }

    /// `spans` as an agent exports them: OTLP protobuf, each under its own service's resource
    /// (requests concatenate into one).
    fn encode(spans: Vec<ReceivedSpan>) -> Vec<u8> {
        let mut request = Vec::new();
        for span in spans {
            let resource = otlp::resource(&[("service.name".to_owned(), span.service.to_string())]);
            let attributes = span
                .attributes
                .into_iter()
                .map(|(key, value)| match key {
                    Cow::Borrowed(key) => (key, Value::from(value)),
                    Cow::Owned(key) => panic!("the tests' attribute keys are constants, not {key}"),
                })
                .collect();
            let record = SpanRecord {
                trace_id: span.trace_id,
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                trace_state: None,
                name: span.name,
                kind: SpanKind::Server,
                start_unix_nanos: span.start_unix_nano,
                end_unix_nanos: span.end_unix_nano,
                attributes,
                error: span.error,
            };
            request.extend(otlp::export_request(&resource, ("toolmesh", "test"), &[record]));
        }
        request
    }

    fn keep(store: &TraceStore, spans: Vec<ReceivedSpan>, exporter: &str) {
        let count = spans.len();
        assert_eq!(store.insert(Bytes::from(encode(spans)), exporter), Ok(count));
    }

    #[test]
    fn recent_lists_newest_first_with_the_root_and_a_trace_its_spans_by_start() {
        let store = TraceStore::new(TraceLimits::default());
        let mut failed = span(1, 3, Some(2), 130, 140);
        failed.error = Some("boom".into());
        // Arriving out of order, as batches of different agents do.
        keep(&store, vec![failed, span(2, 9, None, 500, 600)], EXPORTER);
        keep(&store, vec![span(1, 2, Some(1), 120, 150), span(1, 1, None, 100, 200)], EXPORTER);
        let recent = store.recent(10).traces;
        assert_eq!(recent.iter().map(|t| t.trace_id.clone()).collect::<Vec<_>>(), [hex(&[2; 16]), hex(&[1; 16])]);
        let first = &recent[1];
        assert_eq!((first.root_name.as_str(), first.root_service.as_str()), ("tools/call t1", "svc1"));
        assert_eq!((first.start_unix_nano, first.duration_ns, first.span_count, first.error_count), (100, 100, 3, 1));
        assert_eq!(store.recent(1).traces.len(), 1);

        let detail = store.trace(&hex(&[1; 16])).unwrap();
        let ids: Vec<&str> = detail.spans.iter().map(|s| s.span_id.as_str()).collect();
        assert_eq!(ids, [hex(&[1; 8]), hex(&[2; 8]), hex(&[3; 8])]);
        assert_eq!(detail.spans[0].parent_span_id, None);
        assert_eq!(detail.spans[2].parent_span_id, Some(hex(&[2; 8])));
        assert_eq!(detail.spans[2].error.as_deref(), Some("boom"));
        assert_eq!(detail.spans[2].attributes.get("gen_ai.tool.name").map(String::as_str), Some("t3"));
        // Upper case is read; unknown and malformed ids are not found.
        assert!(store.trace(&hex(&[1; 16]).to_uppercase()).is_some());
        assert!(store.trace(&hex(&[7; 16])).is_none());
        assert!(store.trace("not-a-trace-id").is_none());
    }

    #[test]
    fn a_trace_whose_root_was_not_kept_hangs_from_its_earliest_orphan() {
        let store = TraceStore::new(TraceLimits::default());
        keep(&store, vec![span(1, 5, Some(4), 300, 310), span(1, 4, Some(99), 200, 400)], EXPORTER);
        assert_eq!(store.recent(1).traces[0].root_name, "tools/call t4");
    }

    #[test]
    fn past_its_span_bound_the_store_evicts_the_first_received_traces_and_counts_them() {
        let store = TraceStore::new(TraceLimits { max_spans: 4, max_bytes: usize::MAX });
        keep(&store, vec![span(1, 1, None, 10, 20), span(1, 2, Some(1), 11, 12)], EXPORTER);
        keep(&store, vec![span(2, 1, None, 5, 6)], EXPORTER);
        keep(&store, vec![span(3, 1, None, 30, 40), span(3, 2, Some(1), 31, 32)], EXPORTER);
        // 5 spans: trace 1, the first received (though not the earliest to start), goes.
        assert!(store.trace(&hex(&[1; 16])).is_none());
        assert!(store.trace(&hex(&[2; 16])).is_some() && store.trace(&hex(&[3; 16])).is_some());
        let mut out = Exposition::default();
        store.write(&mut out);
        let text = out.finish();
        for line in [
            "toolmesh_registry_traces 2\n",
            "toolmesh_registry_trace_spans 3\n",
            "toolmesh_registry_trace_evictions_total 1\n",
            "toolmesh_registry_trace_spans_evicted_total 2\n",
            "toolmesh_registry_trace_spans_received_total 5\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }

    const EXPORTER: &str = "spiffe://toolmesh.local/agent/test";

    #[test]
    fn one_identity_exporting_a_flood_evicts_its_own_traces_not_the_others() {
        let (a, b, flood) = ("spiffe://toolmesh.local/agent/a", "spiffe://toolmesh.local/agent/b", "spiffe://toolmesh.local/agent/flood");
        let store = TraceStore::new(TraceLimits { max_spans: 300, max_bytes: usize::MAX });
        // a and b: 20 traces of two spans each.
        for trace in 1..=20 {
            keep(&store, vec![span(trace, 1, None, 10, 20), span(trace, 2, Some(1), 11, 19)], a);
            keep(&store, vec![span(trace + 100, 1, None, 10, 20), span(trace + 100, 2, Some(1), 11, 19)], b);
        }
        // The flood: 10,000 traces of its own, and a span slipped into one of a's.
        keep(&store, vec![span(1, 9, Some(1), 12, 13)], flood);
        for n in 0..10_000u32 {
            let mut one = span(0, 1, None, 1, 2);
            one.trace_id[..4].copy_from_slice(&(n + 1).to_be_bytes());
            one.trace_id[4] = 0xff;
            keep(&store, vec![one], flood);
        }
        let exported_by = |identity: &str| {
            let kept = store.kept.lock().unwrap();
            kept.traces.values().flat_map(|t| &t.spans).filter(|s| &*s.exporter == identity).count()
        };
        assert_eq!((exported_by(a), exported_by(b)), (40, 40), "the others keep every span");
        assert_eq!(exported_by(flood), 220, "the flood keeps what is left");
        let slipped_in = store.trace(&hex(&[1; 16])).unwrap();
        assert_eq!(slipped_in.spans.len(), 2, "the flood's span of a's trace went with its oldest: {slipped_in:?}");
        assert!(slipped_in.spans.iter().all(|s| s.attributes[EXPORTER_ATTRIBUTE] == a));
        let mut out = Exposition::default();
        store.write(&mut out);
        let text = out.finish();
        for line in [
            "toolmesh_registry_trace_spans 300\n",
            "toolmesh_registry_trace_exporters 3\n",
            "toolmesh_registry_trace_largest_exporter_spans 220\n",
            "toolmesh_registry_trace_spans_evicted_total 9781\n",
            "toolmesh_registry_trace_evictions_total 9780\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }

    #[test]
    fn exporters_that_all_export_much_end_with_equal_shares() {
        let store = TraceStore::new(TraceLimits { max_spans: 90, max_bytes: usize::MAX });
        let identities = ["spiffe://toolmesh.local/agent/x", "spiffe://toolmesh.local/agent/y", "spiffe://toolmesh.local/agent/z"];
        // From 1: an all-zero trace id is not valid.
        for round in 1..=100u8 {
            for (i, identity) in identities.iter().enumerate() {
                let mut one = span(round, 1, None, 1, 2);
                one.trace_id[15] = i as u8;
                keep(&store, vec![one], identity);
            }
        }
        let kept = store.kept.lock().unwrap();
        let shares: Vec<usize> = identities.iter().map(|id| kept.exporters[*id].spans).collect();
        assert_eq!(shares, [30, 30, 30]);
        // Each kept its newest.
        let oldest_kept = kept.traces.keys().map(|id| id[0]).min();
        assert_eq!(oldest_kept, Some(71));
    }

    #[test]
    fn the_exporters_by_fill_stay_those_of_the_shares_through_inserts_and_evictions() {
        let limits = TraceLimits { max_spans: 120, max_bytes: 40_000 };
        let store = TraceStore::new(limits);
        let identities: Vec<String> = (0..40).map(|i| format!("spiffe://toolmesh.local/agent/a{i}")).collect();
        // A fixed pseudo-random walk: exporters of every size, traces shared between them.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        for _ in 0..3_000 {
            let identity = &identities[(next(40) * next(40) / 40) as usize];
            let spans: Vec<ReceivedSpan> =
                (0..=next(3)).map(|i| span(1 + next(200) as u8, 1 + i as u8, None, next(1_000), 1_000)).collect();
            keep(&store, spans, identity);
            let kept = store.kept.lock().unwrap();
            let expected: BTreeSet<(u64, Arc<str>)> =
                kept.exporters.iter().map(|(name, share)| (share.fill(limits), name.clone())).collect();
            assert_eq!(kept.by_fill, expected);
            assert!(kept.spans <= limits.max_spans && kept.bytes <= limits.max_bytes);
            assert_eq!(kept.exporters.values().map(|share| share.spans).sum::<usize>(), kept.spans);
        }
    }

    #[test]
    fn a_request_alone_in_its_buffer_is_kept_as_it_is_and_a_slice_of_a_shared_one_is_copied() {
        let store = TraceStore::new(TraceLimits::default());
        let kept_at = |trace: u8| store.kept.lock().unwrap().traces[&[trace; 16]].spans[0].request.as_ptr();
        let alone = Bytes::from(encode(vec![span(1, 1, None, 1, 2)]));
        let at = alone.as_ptr();
        assert_eq!(store.insert(alone, EXPORTER), Ok(1));
        assert_eq!(kept_at(1), at, "not copied");
        // A body that is a slice of a buffer still in use (a connection's read buffer).
        let mut buffer = encode(vec![span(2, 1, None, 1, 2)]);
        let length = buffer.len();
        buffer.extend_from_slice(&[0; 4096]);
        let buffer = Bytes::from(buffer);
        let body = buffer.slice(..length);
        assert_eq!(store.insert(body, EXPORTER), Ok(1));
        assert_ne!(kept_at(2), buffer.as_ptr(), "copied");
        // Alone in a buffer mostly empty: copied, so that the rest is freed.
        let mut roomy = Vec::with_capacity(64 * 1024);
        roomy.extend(encode(vec![span(3, 1, None, 1, 2)]));
        let roomy = Bytes::from(roomy);
        let at = roomy.as_ptr();
        assert_eq!(store.insert(roomy, EXPORTER), Ok(1));
        assert_ne!(kept_at(3), at, "copied");
    }

    #[test]
    fn every_kept_span_names_the_identity_that_exported_it_whatever_the_body_claims() {
        let store = TraceStore::new(TraceLimits::default());
        let mut forged = span(1, 1, None, 1, 2);
        forged.attributes.push((EXPORTER_ATTRIBUTE.into(), "spiffe://toolmesh.local/agent/someone-else".into()));
        keep(&store, vec![forged], EXPORTER);
        let trace = store.trace(&hex(&[1; 16])).expect("kept");
        assert_eq!(trace.spans[0].attributes.get(EXPORTER_ATTRIBUTE).map(String::as_str), Some(EXPORTER));
    }

    #[test]
    fn a_malformed_request_is_refused_whole_saying_where_and_keeps_nothing() {
        let store = TraceStore::new(TraceLimits::default());
        let mut request = encode(vec![span(1, 1, None, 1, 2), span(2, 1, None, 1, 2)]);
        request.truncate(request.len() - 3);
        let e = store.insert(Bytes::from(request), EXPORTER).unwrap_err();
        assert!(e.starts_with("ExportTraceServiceRequest: ") && e.contains("claims"), "{e}");
        assert!(store.recent(10).traces.is_empty());
        assert_eq!(store.received.get(), 0);
        assert_eq!(store.insert(Bytes::new(), EXPORTER), Ok(0));
    }

    #[test]
    fn past_its_byte_bound_the_store_evicts_until_it_fits() {
        // Sized as kept: one span as encoded, its index, and its trace's overhead.
        let one = {
            let probe = TraceStore::new(TraceLimits::default());
            keep(&probe, vec![span(1, 1, None, 1, 2)], EXPORTER);
            let bytes = probe.kept.lock().unwrap().bytes;
            bytes
        };
        let store = TraceStore::new(TraceLimits { max_spans: usize::MAX, max_bytes: 3 * one });
        for trace in 1..=10 {
            keep(&store, vec![span(trace, 1, None, u64::from(trace), 100)], EXPORTER);
            let kept = store.kept.lock().unwrap();
            assert!(kept.bytes <= 3 * one, "{} > {}", kept.bytes, 3 * one);
        }
        let kept: Vec<String> = store.recent(100).traces.into_iter().map(|t| t.trace_id).collect();
        assert_eq!(kept, [hex(&[10; 16]), hex(&[9; 16]), hex(&[8; 16])]);
        assert_eq!(store.evicted_traces.get(), 7);
        // A large attribute counts at its size.
        let mut big = span(11, 1, None, 1, 2);
        big.attributes.push(("blob".into(), "x".repeat(one)));
        keep(&store, vec![big], EXPORTER);
        assert_eq!(store.recent(100).traces.len(), 1, "only the big trace fits");
    }
}
