//! OpenTelemetry tracing: a span for the server side and the client side of every MCP request
//! an agent serves or sends, following the OpenTelemetry MCP semantic conventions, exported over
//! OTLP/HTTP (protobuf) as the standard `OTEL_*` variables configure (docs/tracing.md).
//!
//! The span of a request is the [`TraceContext`] it already carries across hops: a client span's
//! id is the parent id sent in its `traceparent`, and a server span is the child of the one it
//! received. With no collector named, spans go to the agent's registry, which keeps a bounded
//! store of recent traces. With nowhere to send them (export turned off, or no collector and no
//! registry) nothing is recorded: a [`Tracer`] then only decides sampling flags, and
//! [`Tracer::span`] is a branch that returns `None`.

mod export;
pub mod otlp;
mod receive;
mod sampler;
mod settings;

pub use export::SpanCounters;
pub use otlp::{SpanKind, SpanRecord, Value};
pub use receive::{check_export_request, decode_indexed_span, index_export_request, IndexedSpan, ReceivedSpan};
pub use sampler::{Root, Sampler};
pub use settings::{Batch, Destination, Export, Settings};

use crate::context::TraceContext;
use crate::error::Result;
use crate::registry_client::RegistryClient;
use export::Exporter;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Decides sampling and records spans for one agent. Cheap to clone. The default records
/// nothing and samples as OpenTelemetry's default (`parentbased_always_on`) does.
#[derive(Clone, Default)]
pub struct Tracer {
    sampler: Sampler,
    exporter: Option<Arc<Exporter>>,
}

/// Who is exporting: the resource attributes of every span an agent exports.
pub struct Resource<'a> {
    /// `service.name` unless `OTEL_SERVICE_NAME` names another.
    pub agent_name: &'a str,
    /// `service.instance.id`.
    pub agent_id: &'a str,
    /// The agent's verified identity (its SPIFFE ID): `toolmesh.identity`.
    pub identity: &'a str,
}

impl Tracer {
    /// The tracer `settings` ask for; with an export, its task starts on the current runtime.
    /// Spans go to `registry` when the settings name no collector (none without a registry).
    pub fn start(
        settings: &Settings,
        resource: Resource<'_>,
        counters: Arc<SpanCounters>,
        registry: Option<&RegistryClient>,
    ) -> Result<Tracer> {
        let exporter = match &settings.export {
            None => None,
            Some(export) => {
                let service = export.service_name.as_deref().unwrap_or(resource.agent_name);
                let mut attributes: Vec<(String, String)> =
                    export.resource.iter().filter(|(key, _)| key != "service.name").cloned().collect();
                attributes.extend(
                    [
                        ("service.name", service),
                        ("service.instance.id", resource.agent_id),
                        ("toolmesh.agent.name", resource.agent_name),
                        ("toolmesh.identity", resource.identity),
                        ("telemetry.sdk.name", "toolmesh"),
                        ("telemetry.sdk.language", "rust"),
                        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
                    ]
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
                );
                Exporter::spawn(export, otlp::resource(&attributes), counters, registry)?.map(Arc::new)
            }
        };
        Ok(Tracer { sampler: settings.sampler, exporter })
    }

    /// A tracer that hands its spans to `sink` (tests of what is recorded).
    #[cfg(test)]
    fn recording(sink: impl export::Sink) -> Tracer {
        let batch = Batch { max_queue: 1000, max_batch: 1, delay: Duration::from_millis(1) };
        let room = otlp::head_room(b"", ("test", "0"));
        Tracer { sampler: Sampler::default(), exporter: Some(Arc::new(Exporter::with_sink(batch, room, Arc::default(), sink))) }
    }

    /// Whether spans are exported at all.
    pub fn exporting(&self) -> bool {
        self.exporter.is_some()
    }

    /// The span of a new trace.
    pub fn root(&self) -> TraceContext {
        self.sampler.root()
    }

    /// A new span under `parent` (a hop, or a request served for it).
    pub fn child(&self, parent: &TraceContext) -> TraceContext {
        self.sampler.child(parent)
    }

    /// Starts recording the span `context` of a `kind` request of `method` (named
    /// `{method} {target}`, or `{method}`), under `parent`; `None` when nothing is exported or
    /// the trace is not sampled.
    pub fn span(
        &self,
        kind: SpanKind,
        method: &str,
        target: Option<&str>,
        context: &TraceContext,
        parent: Option<&TraceContext>,
    ) -> Option<Span> {
        let mut name = String::with_capacity(method.len() + target.map_or(0, |t| 1 + t.len()));
        name.push_str(method);
        if let Some(target) = target {
            name.push(' ');
            name.push_str(target);
        }
        let mut span = self.operation(kind, name, context, parent)?;
        span.set("mcp.method.name", method_value(method));
        Some(span)
    }

    /// Starts recording the span `context` named `name`, under `parent`, with no attribute yet
    /// (an operation that is not an MCP request); `None` as for [`Tracer::span`].
    pub fn operation(&self, kind: SpanKind, name: String, context: &TraceContext, parent: Option<&TraceContext>) -> Option<Span> {
        let exporter = self.exporter.as_ref().filter(|_| context.sampled)?;
        Some(Span {
            record: Box::new(SpanRecord {
                trace_id: context.trace_id_bytes(),
                span_id: context.span_id_bytes(),
                parent_span_id: parent.map(TraceContext::span_id_bytes),
                trace_state: context.tracestate.clone(),
                name,
                kind,
                start_unix_nanos: unix_nanos(),
                end_unix_nanos: 0,
                // Room for a request span's attributes (~12): no regrowth as they are set.
                attributes: Vec::with_capacity(ATTRIBUTES),
                error: None,
            }),
            ended: false,
            kept: true,
            exporter: exporter.clone(),
        })
    }

    /// Exports what is queued; done when posted, or after `wait`.
    pub async fn flush(&self, wait: Duration) {
        if let Some(exporter) = &self.exporter {
            exporter.flush(wait).await;
        }
    }
}

/// A span being recorded; exported when dropped. Dropped before [`Span::ok`] or
/// [`Span::failed`], it ends as `CANCELLED` (the caller went away).
pub struct Span {
    /// Boxed: a span rides in every request's future, which stays small when none is recorded.
    record: Box<SpanRecord>,
    ended: bool,
    /// False for a span [`Span::discard`]ed.
    kept: bool,
    exporter: Arc<Exporter>,
}

impl Span {
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.record.attributes.push((key, value.into()));
    }

    /// The operation succeeded.
    pub fn ok(&mut self) {
        self.ended = true;
    }

    /// Drops the span unexported: an operation that turned out to be noise (a heartbeat that
    /// changed nothing).
    pub fn discard(mut self) {
        self.kept = false;
    }

    /// The operation failed: `error.type` is `error_type`, and the status is `ERROR`.
    pub fn failed(&mut self, error_type: &str, message: &str) {
        self.ended = true;
        self.set("error.type", error_type.to_owned());
        self.record.error = Some(message.to_owned());
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if !self.kept {
            return;
        }
        if !self.ended {
            self.failed("CANCELLED", "the caller went away before the request ended");
        }
        self.record.end_unix_nanos = unix_nanos().max(self.record.start_unix_nanos);
        self.exporter.offer(&self.record);
    }
}

/// A method name as an attribute value: the methods served and called every day borrowed, any
/// other copied.
fn method_value(method: &str) -> Value {
    const COMMON: [&str; 6] = ["tools/call", "tools/list", "initialize", "ping", "prompts/get", "resources/read"];
    Value::known_or_owned(method, &COMMON)
}

/// Sets a client span's `server.address` and `server.port` from the URL it calls
/// (`https://host:port/path`; port 443 when the URL names none). Read by hand in one pass over
/// the authority, not parsed as an `http::Uri`, which copies and checks the whole URL on every
/// call.
pub fn set_server_address(span: &mut Span, url: &str) {
    let rest = url.strip_prefix("https://").or_else(|| url.split_once("://").map(|(_, rest)| rest)).unwrap_or(url);
    let (mut host_start, mut end, mut colon) = (0, rest.len(), None);
    for (i, byte) in rest.bytes().enumerate() {
        match byte {
            b'/' | b'?' | b'#' => {
                end = i;
                break;
            }
            // What comes before is user information.
            b'@' => (host_start, colon) = (i + 1, None),
            b':' => colon = Some(i),
            // The colons of `[::1]` are the address's, not a port's.
            b']' => colon = None,
            _ => {}
        }
    }
    let (host, port) = match colon {
        Some(colon) => (&rest[host_start..colon], rest[colon + 1..end].parse::<u16>().ok()),
        None => (&rest[host_start..end], Some(443)),
    };
    if !host.is_empty() {
        span.set("server.address", host.trim_start_matches('[').trim_end_matches(']').to_owned());
    }
    if let Some(port) = port {
        span.set("server.port", i64::from(port));
    }
}

/// How many attributes a span has room for from the start.
const ATTRIBUTES: usize = 12;

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry_api::TraceSpanKind;
    use std::sync::Mutex;

    /// Keeps the spans of each batch as a receiver reads them.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<ReceivedSpan>>>);

    impl export::Sink for Recorder {
        async fn send(&mut self, batch: export::Encoded) -> Option<Vec<u8>> {
            let request = batch.into_request(b"", ("test", "0"));
            let spans =
                index_export_request(&request).unwrap().iter().map(|span| decode_indexed_span(&request, span).unwrap()).collect::<Vec<_>>();
            self.0.lock().unwrap().extend(spans);
            None
        }
    }

    async fn recorded(recorder: &Recorder, n: usize) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while recorder.0.lock().unwrap().len() < n {
            assert!(tokio::time::Instant::now() < deadline, "{n} spans were not recorded");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        recorder.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn spans_are_the_trace_contexts_and_end_as_they_are_told() {
        let recorder = Recorder::default();
        let tracer = Tracer::recording(recorder.clone());
        let parent = tracer.root();
        let hop = tracer.child(&parent);
        let mut client = tracer.span(SpanKind::Client, "tools/call", Some("add"), &hop, Some(&parent)).unwrap();
        client.set("gen_ai.tool.name", "add");
        client.failed("TOOL_FAILED", "it broke");
        drop(client);
        drop(tracer.span(SpanKind::Server, "tools/list", None, &parent, None).unwrap());
        let spans = recorded(&recorder, 2).await;
        let client = &spans[0];
        assert_eq!(
            (client.trace_id, client.span_id, client.parent_span_id),
            (hop.trace_id_bytes(), hop.span_id_bytes(), Some(parent.span_id_bytes()))
        );
        assert_eq!(client.name, "tools/call add");
        assert_eq!(client.kind, TraceSpanKind::Client);
        assert!(client.end_unix_nano >= client.start_unix_nano && client.start_unix_nano > 0);
        let attributes: Vec<(&str, &str)> = client.attributes.iter().map(|(k, v)| (&**k, v.as_str())).collect();
        assert_eq!(attributes, [("mcp.method.name", "tools/call"), ("gen_ai.tool.name", "add"), ("error.type", "TOOL_FAILED")]);
        assert_eq!(client.error.as_deref(), Some("it broke"));
        let cancelled = &spans[1];
        assert_eq!((cancelled.name.as_str(), cancelled.parent_span_id), ("tools/list", None));
        assert!(cancelled.attributes.contains(&("error.type".into(), "CANCELLED".into())), "{cancelled:?}");
    }

    #[tokio::test]
    async fn a_client_span_names_the_host_and_port_its_url_does() {
        let recorder = Recorder::default();
        let tracer = Tracer::recording(recorder.clone());
        let urls = [
            "https://127.0.0.1:8443/mcp",
            "https://[::1]:9000/mcp",
            "https://[::1]/mcp",
            "https://agent.example/mcp?x=1",
            "https://u@h:1",
            "http://u:p@h#f",
            "https://h:x/",
        ];
        for url in urls {
            let mut span = tracer.operation(SpanKind::Client, url.to_owned(), &tracer.root(), None).unwrap();
            set_server_address(&mut span, url);
        }
        let spans = recorded(&recorder, urls.len()).await;
        let named: Vec<(Option<&str>, Option<&str>)> = spans
            .iter()
            .map(|s| {
                let get = |key| s.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
                (get("server.address"), get("server.port"))
            })
            .collect();
        assert_eq!(
            named,
            [
                (Some("127.0.0.1"), Some("8443")),
                (Some("::1"), Some("9000")),
                (Some("::1"), Some("443")),
                (Some("agent.example"), Some("443")),
                (Some("h"), Some("1")),
                (Some("h"), Some("443")),
                (Some("h"), None)
            ]
        );
    }

    #[tokio::test]
    async fn nothing_is_recorded_for_an_unsampled_trace_or_without_an_exporter() {
        let recorder = Recorder::default();
        let tracer = Tracer::recording(recorder.clone());
        let mut unsampled = tracer.root();
        unsampled.sampled = false;
        assert!(tracer.span(SpanKind::Server, "ping", None, &unsampled, None).is_none());
        let off = Tracer::default();
        assert!(!off.exporting() && off.root().sampled);
        assert!(off.span(SpanKind::Server, "ping", None, &off.root(), None).is_none());
    }
}
