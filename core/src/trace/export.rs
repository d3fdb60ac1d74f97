//! The span exporter: a finished span is encoded into the batch being filled, on a bounded
//! queue, without waiting, and one task on the shared runtime posts each batch (when full, when
//! its first span has waited, on a flush) to the collector, or to the agent's registry when none
//! is named (OTLP/HTTP protobuf). A full queue, a slow or dead receiver, or a
//! refused batch only ever drops spans, counted in [`SpanCounters`]; no call waits on any of it.

use super::otlp::{self, SpanRecord};
use super::settings::{Batch, Destination, Export};
use crate::client::HttpsClient;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{Counter, Exposition, Kind};
use crate::registry_client::RegistryClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// What became of the spans handed to the exporter.
#[derive(Default)]
pub struct SpanCounters {
    pub exported: Counter,
    /// Dropped because the queue was full (the collector is slower than the calls, or gone).
    pub queue_full: Counter,
    /// Dropped because their batch could not be delivered (refused, unreachable, timed out).
    pub export_failed: Counter,
}

impl SpanCounters {
    /// Writes the counters in the exposition `/metrics` answers with.
    pub fn write(&self, out: &mut Exposition) {
        out.metric("toolmesh_spans_exported_total", Kind::Counter, "Spans the collector accepted.");
        out.sample("toolmesh_spans_exported_total", &[], self.exported.get());
        out.metric("toolmesh_spans_dropped_total", Kind::Counter, "Spans dropped instead of exported, by why.");
        out.sample("toolmesh_spans_dropped_total", &[("reason", "queue_full")], self.queue_full.get());
        out.sample("toolmesh_spans_dropped_total", &[("reason", "export_failed")], self.export_failed.get());
    }
}

/// The handle spans are offered to; the task ends when the last handle is dropped, after
/// exporting what is queued.
pub struct Exporter {
    queue: Arc<Queue>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
    counters: Arc<SpanCounters>,
}

/// The spans waiting for export, already encoded: a span is written into its batch as it ends,
/// on the thread that ends it, so nothing of it outlives the call that recorded it. The export
/// task is woken once per batch (by the first span queued and by the span that fills a batch),
/// not once per span: waking an idle task per span would cost every call a thread wake-up.
struct Queue {
    pending: Mutex<Pending>,
    wake: Notify,
    batch: Batch,
    /// Room left before a batch's spans for the request's head ([`otlp::head_room`]).
    room: usize,
}

#[derive(Default)]
struct Pending {
    /// Batches of `batch.max_batch` spans, oldest first.
    full: VecDeque<Encoded>,
    /// The batch spans are written into now.
    open: Option<Encoded>,
    /// Spans in `full` and `open`.
    spans: usize,
    /// The bytes a new batch starts with room for: the last one's that left.
    capacity: usize,
    /// The buffer of a batch that has been posted, for the next batch: a batch is a few hundred
    /// kilobytes, and a new one per batch would cost page faults and `malloc` consolidating its
    /// free lists on the agent's hot path.
    spare: Option<Vec<u8>>,
}

/// A batch of spans encoded as the body of an `ExportTraceServiceRequest` takes them, after room
/// for the head ([`otlp::head`]) that is written when the batch leaves: the body is then posted
/// without a copy.
pub(super) struct Encoded {
    pub(super) spans: usize,
    bytes: Vec<u8>,
    room: usize,
}

impl Encoded {
    /// An empty batch in `spare` when that has room for `capacity` bytes of spans, else in a new
    /// buffer.
    fn new(room: usize, capacity: usize, spare: Option<Vec<u8>>) -> Encoded {
        let mut bytes = match spare {
            Some(mut spare) if spare.capacity() >= room + capacity => {
                spare.clear();
                spare
            }
            _ => Vec::with_capacity(room + capacity),
        };
        bytes.resize(room, 0);
        Encoded { spans: 0, bytes, room }
    }

    /// The bytes of its spans, as [`otlp::append_span`] wrote them.
    fn span_bytes(&self) -> usize {
        self.bytes.len() - self.room
    }

    /// The whole request: the head of `resource` and `scope` written into the room before the
    /// spans.
    pub(super) fn into_request(self, resource: &[u8], scope: (&str, &str)) -> Bytes {
        let head = otlp::head(resource, scope, self.span_bytes());
        let start = self.room - head.len();
        let mut bytes = self.bytes;
        bytes[start..self.room].copy_from_slice(&head);
        Bytes::from(bytes).slice(start..)
    }
}

impl Queue {
    fn spans(&self) -> usize {
        self.pending.lock().expect("span queue lock").spans
    }

    /// The full batches; the open one stays.
    fn take_full(&self) -> Vec<Encoded> {
        let mut pending = self.pending.lock().expect("span queue lock");
        let full: Vec<Encoded> = pending.full.drain(..).collect();
        pending.spans -= full.iter().map(|batch| batch.spans).sum::<usize>();
        full
    }

    /// Keeps the buffer of a batch that has been posted for the next batch.
    fn recycle(&self, buffer: Vec<u8>) {
        self.pending.lock().expect("span queue lock").spare.get_or_insert(buffer);
    }

    /// Every batch, the open one last.
    fn take_all(&self) -> Vec<Encoded> {
        let mut pending = self.pending.lock().expect("span queue lock");
        let mut all: Vec<Encoded> = pending.full.drain(..).collect();
        if let Some(open) = pending.open.take() {
            pending.capacity = open.span_bytes();
            all.push(open);
        }
        pending.spans = 0;
        all
    }
}

impl Exporter {
    /// Starts the export task on the current runtime, posting spans of the process whose
    /// encoded `Resource` is `resource` to `export`'s destination; `None` when that is the
    /// registry and there is none.
    pub fn spawn(
        export: &Export,
        resource: Vec<u8>,
        counters: Arc<SpanCounters>,
        registry: Option<&RegistryClient>,
    ) -> Result<Option<Exporter>> {
        let (transport, receiver) = match &export.destination {
            Destination::Collector { url, headers, certificate } => {
                (Transport::collector(url, headers, certificate.as_deref())?, format!("the OTLP collector at {url}"))
            }
            Destination::Registry => match registry {
                Some(registry) => {
                    let mut registry = registry.clone();
                    registry.set_timeout(export.timeout);
                    let receiver = format!("the registry at {}", registry.url());
                    (Transport::Registry(registry), receiver)
                }
                None => return Ok(None),
            },
        };
        let room = otlp::head_room(&resource, SCOPE);
        let collector = Collector { transport, receiver, timeout: export.timeout, resource, counters: counters.clone(), failing: false };
        Ok(Some(Exporter::with_sink(export.batch, room, counters, collector)))
    }

    /// An exporter that hands each batch to `sink`, leaving `room` before each batch's spans.
    pub(super) fn with_sink(batch: Batch, room: usize, counters: Arc<SpanCounters>, sink: impl Sink) -> Exporter {
        let queue = Arc::new(Queue { pending: Mutex::default(), wake: Notify::new(), batch, room });
        let (flushes, flush_requests) = mpsc::channel(4);
        tokio::spawn(run(queue.clone(), flush_requests, sink));
        Exporter { queue, flushes, counters }
    }

    /// Encodes `span` into the batch being filled, or drops it (counted) when the queue is full.
    pub fn offer(&self, span: &SpanRecord) {
        let (room, batch) = (self.queue.room, self.queue.batch);
        let queued = {
            let mut pending = self.queue.pending.lock().expect("span queue lock");
            let pending = &mut *pending;
            if pending.spans >= batch.max_queue {
                None
            } else {
                let open = match &mut pending.open {
                    Some(open) => open,
                    None => pending.open.insert(Encoded::new(room, pending.capacity, pending.spare.take())),
                };
                otlp::append_span(&mut open.bytes, span);
                open.spans += 1;
                pending.spans += 1;
                let filled = open.spans >= batch.max_batch;
                if filled {
                    let full = pending.open.take().expect("the batch just written");
                    // The next batch's spans take about as many bytes: room for them and a
                    // quarter more, so that it is not grown (copied whole) near its end.
                    pending.capacity = full.span_bytes() + full.span_bytes() / 4;
                    pending.full.push_back(full);
                }
                Some(pending.spans == 1 || filled)
            }
        };
        match queued {
            None => self.counters.queue_full.inc(),
            Some(true) => self.queue.wake.notify_one(),
            Some(false) => {}
        }
    }

    /// Exports what is queued now; done when it was posted (or failed), or after `wait`.
    pub async fn flush(&self, wait: Duration) {
        let (done, exported) = oneshot::channel();
        if self.flushes.try_send(done).is_ok() {
            let _ = tokio::time::timeout(wait, exported).await;
        }
    }

    #[cfg(test)]
    fn counters(&self) -> &Arc<SpanCounters> {
        &self.counters
    }
}

/// The instrumentation scope of every span exported.
const SCOPE: (&str, &str) = ("toolmesh", env!("CARGO_PKG_VERSION"));

/// Where batches go: the collector, or a test's recorder.
pub(super) trait Sink: Send + 'static {
    /// Delivers `batch`; returns its buffer when nothing holds it any more, for the next batch.
    fn send(&mut self, batch: Encoded) -> impl Future<Output = Option<Vec<u8>>> + Send + '_;
}

/// The receiver batches are posted to: an OTLP collector, or the registry.
struct Collector {
    transport: Transport,
    /// Who it is, for the log.
    receiver: String,
    timeout: Duration,
    resource: Vec<u8>,
    counters: Arc<SpanCounters>,
    /// The last export failed: the next failure is not logged again.
    failing: bool,
}

impl Sink for Collector {
    async fn send(&mut self, batch: Encoded) -> Option<Vec<u8>> {
        let spans = batch.spans;
        let body = batch.into_request(&self.resource, SCOPE);
        // The transport lets go of the body once it is written (before the answer comes);
        // this handle then holds the buffer alone and takes it back.
        let sent = body.clone();
        let outcome = match tokio::time::timeout(self.timeout, self.transport.post(body)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        report(&self.counters, &mut self.failing, &self.receiver, spans, outcome);
        reclaim(sent)
    }
}

/// The buffer under `sent`, emptied, when no other handle on it is left.
fn reclaim(sent: Bytes) -> Option<Vec<u8>> {
    let mut buffer = sent.try_into_mut().ok()?;
    buffer.clear();
    Some(Vec::from(buffer))
}

/// The export loop: a batch is sent when it is full, when its first span has waited
/// `batch.delay`, on a flush, and when the exporter is dropped.
async fn run(queue: Arc<Queue>, mut flushes: mpsc::Receiver<oneshot::Sender<()>>, mut sink: impl Sink) {
    let batch = queue.batch;
    'idle: loop {
        // Nothing queued: wait for a first span, a flush, or the end.
        tokio::select! {
            () = queue.wake.notified() => {}
            request = flushes.recv() => {
                send_all(queue.take_all(), &queue, &mut sink).await;
                match request {
                    Some(done) => { let _ = done.send(()); continue 'idle }
                    None => return,
                }
            }
        }
        let mut due = tokio::time::Instant::now() + batch.delay;
        loop {
            let full = queue.take_full();
            if !full.is_empty() {
                // Full batches leave at once; the rest waits anew.
                send_all(full, &queue, &mut sink).await;
                due = tokio::time::Instant::now() + batch.delay;
            }
            if queue.spans() == 0 {
                continue 'idle;
            }
            tokio::select! {
                () = queue.wake.notified() => {}
                () = tokio::time::sleep_until(due) => {
                    send_all(queue.take_all(), &queue, &mut sink).await;
                    continue 'idle;
                }
                request = flushes.recv() => {
                    send_all(queue.take_all(), &queue, &mut sink).await;
                    match request {
                        Some(done) => { let _ = done.send(()); continue 'idle }
                        None => return,
                    }
                }
            }
        }
    }
}

async fn send_all(batches: Vec<Encoded>, queue: &Queue, sink: &mut impl Sink) {
    for batch in batches {
        if let Some(buffer) = sink.send(batch).await {
            queue.recycle(buffer);
        }
    }
}

/// Counts a batch's spans as exported or dropped; a receiver that starts failing is logged
/// once, until it works again.
fn report(counters: &SpanCounters, failing: &mut bool, receiver: &str, spans: usize, outcome: std::result::Result<(), String>) {
    match outcome {
        Ok(()) => counters.exported.add(spans as u64),
        Err(_) => counters.export_failed.add(spans as u64),
    }
    let was_failing = std::mem::replace(failing, outcome.is_err());
    match outcome {
        Ok(()) => {}
        Err(why) if !was_failing => {
            tracing::warn!("cannot export spans to {receiver} ({why}); dropping them until it answers")
        }
        Err(why) => tracing::debug!("span export failed: {why}"),
    }
}

fn request_headers(pairs: &[(String, String)]) -> Result<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-protobuf"));
    for (name, value) in pairs {
        let bad = |e: String| Error::new(ErrorKind::InvalidConfig, format!("OTLP header '{name}': {e}"));
        let name = http::HeaderName::try_from(name.as_str()).map_err(|e| bad(e.to_string()))?;
        headers.append(name, http::HeaderValue::try_from(value.as_str()).map_err(|e| bad(e.to_string()))?);
    }
    Ok(headers)
}

fn build_request(uri: &http::Uri, headers: &http::HeaderMap, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    request
}

/// How batches reach their receiver: core's HTTPS client for an `https://` collector (its
/// certificate checked against `OTEL_EXPORTER_OTLP_CERTIFICATE` or the system's CAs), one kept
/// HTTP/1.1 connection for `http://`, and the registry client (mutual TLS with the agent's
/// identity, moving on to the next replica as registration does) for the registry.
enum Transport {
    Tls { client: HttpsClient, uri: http::Uri, headers: http::HeaderMap },
    Plain { uri: http::Uri, headers: http::HeaderMap, authority: String, connection: Option<http1::SendRequest<Full<Bytes>>> },
    Registry(RegistryClient),
}

impl Transport {
    fn collector(url: &str, headers: &[(String, String)], certificate: Option<&str>) -> Result<Transport> {
        let uri: http::Uri = url.parse().map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("{url}: {e}")))?;
        let headers = request_headers(headers)?;
        if uri.scheme_str() == Some("https") {
            return Ok(Transport::Tls { client: HttpsClient::with_tls(collector_tls(certificate)?), uri, headers });
        }
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        let authority = if uri.port().is_some() { authority } else { format!("{authority}:80") };
        Ok(Transport::Plain { uri, headers, authority, connection: None })
    }

    async fn post(&mut self, body: Bytes) -> std::result::Result<(), String> {
        let status = match self {
            Transport::Registry(registry) => return registry.export_spans(body).await.map_err(|e| e.message().to_owned()),
            Transport::Tls { client, uri, headers } => {
                client.send(build_request(uri, headers, body)).await.map_err(|e| e.error.message().to_owned())?.status()
            }
            Transport::Plain { uri, headers, authority, connection } => {
                let ready = match connection.as_mut() {
                    Some(sender) => sender.ready().await.is_ok(),
                    None => false,
                };
                if !ready {
                    *connection = Some(connect(authority).await?);
                }
                let sender = connection.as_mut().expect("connected above");
                let mut request = build_request(uri, headers, body);
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
                *request.uri_mut() = path.parse().map_err(|e| format!("{e}"))?;
                request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_str(authority).map_err(|e| e.to_string())?);
                let response = match sender.send_request(request).await {
                    Ok(response) => response,
                    Err(e) => {
                        *connection = None;
                        return Err(format!("{authority}: {e}"));
                    }
                };
                let status = response.status();
                // Read to the end so the connection can carry the next batch.
                if response.into_body().collect().await.is_err() {
                    *connection = None;
                }
                status
            }
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered HTTP {status}"))
        }
    }
}

async fn connect(authority: &str) -> std::result::Result<http1::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// TLS to the collector: no client certificate, the server checked against `certificate`'s
/// CAs, else the system's (`SSL_CERT_FILE`, else the Debian/Alpine bundle).
fn collector_tls(certificate: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    let path = certificate
        .map(str::to_owned)
        .or_else(|| std::env::var("SSL_CERT_FILE").ok())
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".to_owned());
    let refused = |why: String| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("cannot read the CAs for the https:// OTLP collector from {path}: {why}; set OTEL_EXPORTER_OTLP_CERTIFICATE to a PEM file of them"),
        )
    };
    let text = std::fs::read(&path).map_err(|e| refused(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(&text).map_err(|e| refused(e.to_string()))? {
        if block.tag() == "CERTIFICATE" {
            roots.add(block.into_contents().into()).map_err(|e| refused(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(refused("it holds no certificate".to_owned()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::otlp::{SpanKind, SpanRecord};
    use super::*;
    use std::sync::Mutex;

    fn span(n: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [n; 16],
            span_id: [n; 8],
            parent_span_id: None,
            trace_state: None,
            name: format!("span {n}"),
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Records each batch as its spans' numbers, read back from the request it makes, and the
    /// capacity of the buffer it was written in; hands back a buffer of [`HANDED_BACK`] bytes.
    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<u8>>>>,
        capacities: Arc<Mutex<Vec<usize>>>,
    }

    /// Far more than any batch of these tests needs, so that a batch written in it is told apart.
    const HANDED_BACK: usize = 1 << 20;

    impl Sink for Recorder {
        async fn send(&mut self, batch: Encoded) -> Option<Vec<u8>> {
            let spans = batch.spans;
            let request = batch.into_request(b"", SCOPE);
            let numbers: Vec<u8> = super::super::index_export_request(&request).unwrap().iter().map(|s| s.trace_id[0]).collect();
            assert_eq!(numbers.len(), spans);
            self.batches.lock().unwrap().push(numbers);
            let buffer = reclaim(request).expect("the recorder holds the only handle on the request");
            assert!(buffer.is_empty());
            self.capacities.lock().unwrap().push(buffer.capacity());
            Some(Vec::with_capacity(HANDED_BACK))
        }
    }

    /// Never done with a batch, as a collector that hangs.
    struct Stuck;

    impl Sink for Stuck {
        async fn send(&mut self, _: Encoded) -> Option<Vec<u8>> {
            std::future::pending().await
        }
    }

    fn recording(batch: Batch) -> (Exporter, Arc<Mutex<Vec<Vec<u8>>>>) {
        let recorder = Recorder::default();
        (Exporter::with_sink(batch, otlp::head_room(b"", SCOPE), Arc::default(), recorder.clone()), recorder.batches)
    }

    #[tokio::test(start_paused = true)]
    async fn each_batch_is_written_into_the_buffer_of_the_batch_posted_before_it() {
        let recorder = Recorder::default();
        let batch = Batch { max_queue: 100, max_batch: 2, delay: Duration::from_secs(3600) };
        let exporter = Exporter::with_sink(batch, otlp::head_room(b"", SCOPE), Arc::default(), recorder.clone());
        for n in 1..=6 {
            exporter.offer(&span(n));
            // One batch at a time: each is posted before the next is begun.
            settle().await;
        }
        assert_eq!(*recorder.batches.lock().unwrap(), [vec![1, 2], vec![3, 4], vec![5, 6]]);
        let capacities = recorder.capacities.lock().unwrap().clone();
        assert!(capacities[0] < HANDED_BACK, "{capacities:?}");
        assert_eq!(capacities[1..], [HANDED_BACK; 2], "not written into the buffer handed back");
        // A handle someone else still holds keeps its buffer: the next batch takes a new one.
        let body = Bytes::from(vec![1u8; 8]);
        let held = body.clone();
        assert_eq!(reclaim(body), None);
        assert_eq!(reclaim(held).map(|b| (b.len(), b.capacity())), Some((0, 8)));
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_leaves_when_its_first_span_has_waited_the_delay() {
        let delay = Duration::from_millis(500);
        let (exporter, batches) = recording(Batch { max_queue: 100, max_batch: 10, delay });
        exporter.offer(&span(1));
        settle().await;
        tokio::time::advance(Duration::from_millis(300)).await;
        exporter.offer(&span(2));
        settle().await;
        assert!(batches.lock().unwrap().is_empty());
        tokio::time::advance(Duration::from_millis(201)).await;
        settle().await;
        assert_eq!(*batches.lock().unwrap(), [vec![1, 2]]);
        // The next span starts a new wait.
        exporter.offer(&span(3));
        settle().await;
        tokio::time::advance(Duration::from_millis(499)).await;
        settle().await;
        assert_eq!(batches.lock().unwrap().len(), 1);
        tokio::time::advance(Duration::from_millis(2)).await;
        settle().await;
        assert_eq!(*batches.lock().unwrap(), [vec![1, 2], vec![3]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_leaves_at_once_and_a_flush_sends_the_rest() {
        let (exporter, batches) = recording(Batch { max_queue: 100, max_batch: 3, delay: Duration::from_secs(3600) });
        for n in 1..=7 {
            exporter.offer(&span(n));
        }
        settle().await;
        assert_eq!(*batches.lock().unwrap(), [vec![1, 2, 3], vec![4, 5, 6]]);
        exporter.flush(Duration::from_secs(1)).await;
        assert_eq!(*batches.lock().unwrap(), [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_spans_and_never_waits() {
        let exporter = Exporter::with_sink(Batch { max_queue: 4, max_batch: 1, delay: Duration::from_secs(1) }, 0, Arc::default(), Stuck);
        exporter.offer(&span(0));
        settle().await; // taken by the stuck send
        for n in 1..=10 {
            exporter.offer(&span(n));
        }
        assert_eq!(exporter.counters().queue_full.get(), 6);
        assert_eq!(exporter.counters().exported.get(), 0);
    }

    #[test]
    fn failed_batches_count_their_spans_as_dropped() {
        let counters = SpanCounters::default();
        let mut failing = false;
        report(&counters, &mut failing, "the registry", 3, Ok(()));
        report(&counters, &mut failing, "the registry", 2, Err("refused".into()));
        assert!(failing);
        assert_eq!((counters.exported.get(), counters.export_failed.get()), (3, 2));
        let mut out = Exposition::default();
        counters.write(&mut out);
        let text = out.finish();
        assert!(text.contains("toolmesh_spans_dropped_total{reason=\"export_failed\"} 2\n"), "{text}");
        assert!(text.contains("toolmesh_spans_exported_total 3\n"), "{text}");
    }
}
