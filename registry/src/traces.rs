//! The registry's trace store: the spans agents export to it when no OTLP collector is named
//! (`POST /v1/traces`, OTLP/HTTP protobuf), kept in memory for `toolmesh trace` and the
//! dashboard. Bounded by a number of spans and an estimate of their bytes (see [`TraceLimits`]):
//! past either, the exporter (verified identity) holding the largest share of the store gives
//! up its oldest request, so that one identity exporting a flood evicts its own spans, not
//! every other agent's. Counted on `/metrics`. Nothing is written to disk; a restart starts
//! empty.
//!
//! Spans arrive all the time and are read rarely (a `toolmesh trace`, a dashboard poll), so
//! arriving costs as little as it can: each exported request is checked whole and queued, as it
//! was encoded, behind its exporter's earlier ones. The first read indexes what arrived since
//! the last (ids, times, failed or not: what listing traces needs), a trace is gathered from the
//! index when asked for, and a span is decoded only when its trace is read.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::mem::size_of;
use std::sync::{Arc, Mutex};
use toolmesh_core::metrics::{Counter, Exposition, Kind};
use toolmesh_core::registry_api::{TraceDetail, TraceList, TraceSpan, TraceSummary};
use toolmesh_core::trace::{check_export_request, decode_indexed_span, index_export_request, IndexedSpan, ReceivedSpan};

/// Spans kept by default.
pub const DEFAULT_TRACE_MAX_SPANS: usize = 50_000;
/// The attribute every kept span carries: the verified identity (SPIFFE ID) of the certificate
/// that exported it.
pub const EXPORTER_ATTRIBUTE: &str = "toolmesh.exporter.identity";
/// Bytes kept by default (the estimate of [`KeptRequest::footprint`]): 32 MiB.
pub const DEFAULT_TRACE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// How much the store keeps: past either bound, the oldest requests are evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLimits {
    pub max_spans: usize,
    /// An estimate of the memory the kept spans take: each request's encoded bytes as received
    /// and its spans' index entries.
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
    evicted_requests: Counter,
    evicted_spans: Counter,
}

#[derive(Default)]
struct Kept {
    /// What each exporter (verified identity) holding spans holds.
    exporters: HashMap<Arc<str>, Share, foldhash::fast::RandomState>,
    /// The exporters by how full their share is ([`Share::fill`]), so that an eviction finds
    /// the largest without going through every exporter of a large mesh.
    by_fill: BTreeSet<(u64, Arc<str>)>,
    requests: usize,
    spans: usize,
    bytes: usize,
}

/// One exporter's part of the store.
#[derive(Default)]
struct Share {
    spans: usize,
    bytes: usize,
    /// Its requests in the order they arrived: evictions take from the front.
    requests: VecDeque<KeptRequest>,
}

impl Share {
    /// How full the share is, of the larger of the two bounds, as an order-keeping integer (the
    /// bits of a non-negative `f64` sort as it does).
    fn fill(&self, limits: TraceLimits) -> u64 {
        (self.spans as f64 / limits.max_spans as f64).max(self.bytes as f64 / limits.max_bytes as f64).to_bits()
    }
}

/// An exported request as kept: still encoded, and indexed once someone has read the store.
struct KeptRequest {
    body: Bytes,
    spans: usize,
    index: Option<Vec<IndexedSpan>>,
}

impl KeptRequest {
    /// The memory it is counted as taking: its bytes, its index (made or to be made: the bound
    /// holds after reads too) and itself.
    fn footprint(&self) -> usize {
        size_of::<KeptRequest>() + self.body.len() + self.spans * size_of::<IndexedSpan>()
    }
}

/// A kept span as a read sees it.
#[derive(Clone, Copy)]
struct KeptSpan<'a> {
    exporter: &'a Arc<str>,
    body: &'a Bytes,
    index: &'a IndexedSpan,
}

impl KeptSpan<'_> {
    /// The span decoded from its request; `None` (logged) if it cannot be, which the check on
    /// arrival rules out.
    fn decode(&self) -> Option<ReceivedSpan> {
        decode_indexed_span(self.body, self.index)
            .inspect_err(|e| tracing::warn!("a kept span no longer decodes, leaving it out: {e}"))
            .ok()
    }
}

impl Kept {
    /// Indexes the requests that arrived since the last read.
    fn index(&mut self) {
        for request in self.exporters.values_mut().flat_map(|share| share.requests.iter_mut()) {
            if request.index.is_none() {
                let index = index_export_request(&request.body)
                    .inspect_err(|e| tracing::warn!("a kept request no longer indexes, leaving it out: {e}"))
                    .unwrap_or_default();
                request.index = Some(index);
            }
        }
    }

    /// Every indexed span, with its request and exporter.
    fn spans(&self) -> impl Iterator<Item = KeptSpan<'_>> {
        self.exporters.iter().flat_map(|(exporter, share)| {
            share
                .requests
                .iter()
                .flat_map(move |request| request.index.iter().flatten().map(move |index| KeptSpan { exporter, body: &request.body, index }))
        })
    }

    /// The indexed spans by trace.
    fn traces(&self) -> HashMap<[u8; 16], Vec<KeptSpan<'_>>, foldhash::fast::RandomState> {
        let mut traces: HashMap<[u8; 16], Vec<KeptSpan<'_>>, foldhash::fast::RandomState> = HashMap::default();
        for span in self.spans() {
            traces.entry(span.index.trace_id).or_default().push(span);
        }
        traces
    }
}

impl TraceStore {
    pub fn new(limits: TraceLimits) -> Self {
        TraceStore {
            limits,
            kept: Mutex::default(),
            received: Counter::default(),
            evicted_requests: Counter::default(),
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
    /// oldest request, again and again. With one exporter that is the first received. Any mesh
    /// certificate may export, and a span's `service.name` is the exporter's word, so each span
    /// read names who exported it ([`EXPORTER_ATTRIBUTE`], replacing one the body carried): a
    /// span an agent sends in another agent's name is told apart by whoever reads it, and
    /// counts against its own share. Returns the spans kept.
    pub fn insert(&self, request: Bytes, exporter: &str) -> Result<usize, String> {
        let spans = check_export_request(&request)?;
        if spans == 0 {
            return Ok(0);
        }
        let request = KeptRequest { body: owned(request), spans, index: None };
        let bytes = request.footprint();
        self.received.add(spans as u64);
        let mut kept = self.kept.lock().expect("trace store lock");
        let kept = &mut *kept;
        let exporter: Arc<str> = kept.exporters.get_key_value(exporter).map_or_else(|| Arc::from(exporter), |(known, _)| known.clone());
        let share = kept.exporters.entry(exporter.clone()).or_default();
        kept.by_fill.remove(&(share.fill(self.limits), exporter.clone()));
        share.requests.push_back(request);
        (share.spans, share.bytes) = (share.spans + spans, share.bytes + bytes);
        (kept.requests, kept.spans, kept.bytes) = (kept.requests + 1, kept.spans + spans, kept.bytes + bytes);
        kept.by_fill.insert((share.fill(self.limits), exporter));
        while kept.spans > self.limits.max_spans || kept.bytes > self.limits.max_bytes {
            if !self.evict_from_largest(kept) {
                break;
            }
        }
        Ok(spans)
    }

    /// Evicts the oldest request of the exporter holding the largest share; false when nothing
    /// is left to evict.
    fn evict_from_largest(&self, kept: &mut Kept) -> bool {
        let Some((_, largest)) = kept.by_fill.pop_last() else {
            return false;
        };
        let Some(share) = kept.exporters.get_mut(&largest) else { return true };
        if let Some(oldest) = share.requests.pop_front() {
            let bytes = oldest.footprint();
            (share.spans, share.bytes) = (share.spans - oldest.spans, share.bytes - bytes);
            (kept.requests, kept.spans, kept.bytes) = (kept.requests - 1, kept.spans - oldest.spans, kept.bytes - bytes);
            self.evicted_requests.inc();
            self.evicted_spans.add(oldest.spans as u64);
        }
        if share.requests.is_empty() {
            kept.exporters.remove(&largest);
        } else {
            kept.by_fill.insert((share.fill(self.limits), largest));
        }
        true
    }

    /// The `last` most recent traces, newest (by start) first.
    pub fn recent(&self, last: usize) -> TraceList {
        let mut kept = self.kept.lock().expect("trace store lock");
        kept.index();
        let traces = kept.traces();
        let mut newest: Vec<(&[u8; 16], u64)> =
            traces.iter().map(|(id, spans)| (id, spans.iter().map(|s| s.index.start_unix_nano).min().unwrap_or(0))).collect();
        newest.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        TraceList { traces: newest.into_iter().take(last).map(|(id, _)| summary(id, &traces[id])).collect() }
    }

    /// The spans of one trace, by start; `None` when no span of it is kept (or `trace_id` is
    /// not 32 hex digits).
    pub fn trace(&self, trace_id: &str) -> Option<TraceDetail> {
        let id = parse_trace_id(trace_id)?;
        let mut kept = self.kept.lock().expect("trace store lock");
        kept.index();
        let mut spans: Vec<TraceSpan> = kept.spans().filter(|span| span.index.trace_id == id).filter_map(view).collect();
        if spans.is_empty() {
            return None;
        }
        spans.sort_by(|a, b| a.start_unix_nano.cmp(&b.start_unix_nano).then_with(|| a.span_id.cmp(&b.span_id)));
        Some(TraceDetail { trace_id: hex(&id), spans })
    }

    /// The store's figures in the registry's `/metrics` exposition (read without indexing: a
    /// scrape costs the same whatever the store holds).
    pub fn write(&self, out: &mut Exposition) {
        let (requests, spans, bytes, exporters, largest) = {
            let kept = self.kept.lock().expect("trace store lock");
            let largest = kept.exporters.values().map(|share| share.spans).max().unwrap_or(0);
            (kept.requests, kept.spans, kept.bytes, kept.exporters.len(), largest)
        };
        out.metric("toolmesh_registry_trace_requests", Kind::Gauge, "Export requests the registry's trace store keeps.");
        out.sample("toolmesh_registry_trace_requests", &[], requests as u64);
        out.metric("toolmesh_registry_trace_spans", Kind::Gauge, "Spans the registry's trace store keeps.");
        out.sample("toolmesh_registry_trace_spans", &[], spans as u64);
        out.metric("toolmesh_registry_trace_bytes", Kind::Gauge, "Estimated memory of the kept spans, bounded by --trace-max-bytes.");
        out.sample("toolmesh_registry_trace_bytes", &[], bytes as u64);
        out.metric("toolmesh_registry_trace_exporters", Kind::Gauge, "Verified identities whose exported spans the store keeps.");
        out.sample("toolmesh_registry_trace_exporters", &[], exporters as u64);
        out.metric(
            "toolmesh_registry_trace_largest_exporter_spans",
            Kind::Gauge,
            "Spans kept of the identity that exported the most of them: past a bound, its requests are evicted first.",
        );
        out.sample("toolmesh_registry_trace_largest_exporter_spans", &[], largest as u64);
        out.metric("toolmesh_registry_trace_spans_received_total", Kind::Counter, "Spans agents exported to the registry.");
        out.sample("toolmesh_registry_trace_spans_received_total", &[], self.received.get());
        out.metric(
            "toolmesh_registry_trace_requests_evicted_total",
            Kind::Counter,
            "Export requests evicted (oldest first) to stay within the store's bounds.",
        );
        out.sample("toolmesh_registry_trace_requests_evicted_total", &[], self.evicted_requests.get());
        out.metric("toolmesh_registry_trace_spans_evicted_total", Kind::Counter, "Spans of the evicted requests.");
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

/// The span a trace hangs from: one without a parent, else one whose parent is not kept (it
/// was never exported, or by a process exporting elsewhere), else the earliest.
fn root<'a>(spans: &[KeptSpan<'a>]) -> Option<KeptSpan<'a>> {
    let ids: HashSet<[u8; 8]> = spans.iter().map(|s| s.index.span_id).collect();
    let rank = |span: &IndexedSpan| match span.parent_span_id {
        None => 0,
        Some(parent) if !ids.contains(&parent) => 1,
        Some(_) => 2,
    };
    spans.iter().copied().min_by_key(|kept| (rank(kept.index), kept.index.start_unix_nano))
}

fn summary(id: &[u8; 16], spans: &[KeptSpan<'_>]) -> TraceSummary {
    let root = root(spans);
    let start = spans.iter().map(|s| s.index.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.index.end_unix_nano).max().unwrap_or(0);
    TraceSummary {
        trace_id: hex(id),
        root_name: root.and_then(|r| r.decode()).map(|r| r.name).unwrap_or_default(),
        root_service: root.map(|r| r.index.service.to_string()).unwrap_or_default(),
        start_unix_nano: start,
        duration_ns: end.saturating_sub(start),
        span_count: spans.len(),
        error_count: spans.iter().filter(|s| s.index.failed).count(),
    }
}

fn view(kept: KeptSpan<'_>) -> Option<TraceSpan> {
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
    fn past_its_span_bound_the_store_evicts_the_first_received_requests_and_counts_them() {
        let store = TraceStore::new(TraceLimits { max_spans: 4, max_bytes: usize::MAX });
        keep(&store, vec![span(1, 1, None, 10, 20), span(1, 2, Some(1), 11, 12)], EXPORTER);
        keep(&store, vec![span(2, 1, None, 5, 6)], EXPORTER);
        keep(&store, vec![span(3, 1, None, 30, 40), span(3, 2, Some(1), 31, 32)], EXPORTER);
        // 5 spans: the first request received (trace 1, though not the earliest to start), goes.
        assert!(store.trace(&hex(&[1; 16])).is_none());
        assert!(store.trace(&hex(&[2; 16])).is_some() && store.trace(&hex(&[3; 16])).is_some());
        let mut out = Exposition::default();
        store.write(&mut out);
        let text = out.finish();
        for line in [
            "toolmesh_registry_trace_requests 2\n",
            "toolmesh_registry_trace_spans 3\n",
            "toolmesh_registry_trace_requests_evicted_total 1\n",
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
        let exported_by = |identity: &str| store.kept.lock().unwrap().exporters.get(identity).map_or(0, |share| share.spans);
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
            "toolmesh_registry_trace_requests_evicted_total 9781\n",
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
        let shares: Vec<usize> = identities.iter().map(|id| store.kept.lock().unwrap().exporters[*id].spans).collect();
        assert_eq!(shares, [30, 30, 30]);
        // Each kept its newest.
        let oldest_kept = store.recent(usize::MAX).traces.iter().map(|t| parse_trace_id(&t.trace_id).unwrap()[0]).min();
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
            let requests = || kept.exporters.values().flat_map(|share| &share.requests);
            assert_eq!(requests().map(KeptRequest::footprint).sum::<usize>(), kept.bytes);
            assert_eq!(requests().count(), kept.requests);
        }
    }

    #[test]
    fn a_request_alone_in_its_buffer_is_kept_as_it_is_and_a_slice_of_a_shared_one_is_copied() {
        let store = TraceStore::new(TraceLimits::default());
        let kept_at = || store.kept.lock().unwrap().exporters[EXPORTER].requests.back().unwrap().body.as_ptr();
        let alone = Bytes::from(encode(vec![span(1, 1, None, 1, 2)]));
        let at = alone.as_ptr();
        assert_eq!(store.insert(alone, EXPORTER), Ok(1));
        assert_eq!(kept_at(), at, "not copied");
        // A body that is a slice of a buffer still in use (a connection's read buffer).
        let mut buffer = encode(vec![span(2, 1, None, 1, 2)]);
        let length = buffer.len();
        buffer.extend_from_slice(&[0; 4096]);
        let buffer = Bytes::from(buffer);
        let body = buffer.slice(..length);
        assert_eq!(store.insert(body, EXPORTER), Ok(1));
        assert_ne!(kept_at(), buffer.as_ptr(), "copied");
        // Alone in a buffer mostly empty: copied, so that the rest is freed.
        let mut roomy = Vec::with_capacity(64 * 1024);
        roomy.extend(encode(vec![span(3, 1, None, 1, 2)]));
        let roomy = Bytes::from(roomy);
        let at = roomy.as_ptr();
        assert_eq!(store.insert(roomy, EXPORTER), Ok(1));
        assert_ne!(kept_at(), at, "copied");
    }

    #[test]
    fn arriving_indexes_nothing_and_a_read_indexes_what_arrived_since_the_last() {
        let store = TraceStore::new(TraceLimits::default());
        let indexed =
            || -> Vec<bool> { store.kept.lock().unwrap().exporters[EXPORTER].requests.iter().map(|r| r.index.is_some()).collect() };
        keep(&store, vec![span(1, 1, None, 1, 2), span(2, 1, None, 3, 4)], EXPORTER);
        assert_eq!(indexed(), [false]);
        assert_eq!(store.recent(10).traces.len(), 2);
        keep(&store, vec![span(1, 2, Some(1), 1, 2)], EXPORTER);
        assert_eq!(indexed(), [true, false]);
        // A scrape reads the counts only.
        store.write(&mut Exposition::default());
        assert_eq!(indexed(), [true, false]);
        assert_eq!(store.trace(&hex(&[1; 16])).unwrap().spans.len(), 2, "a trace gathers its spans across requests");
        assert_eq!(indexed(), [true, true]);
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
        // Sized as kept: one request as encoded and its index.
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
        assert_eq!(store.evicted_requests.get(), 7);
        // A large attribute counts at its size.
        let mut big = span(11, 1, None, 1, 2);
        big.attributes.push(("blob".into(), "x".repeat(one)));
        keep(&store, vec![big], EXPORTER);
        assert_eq!(store.recent(100).traces.len(), 1, "only the big trace fits");
    }
}
