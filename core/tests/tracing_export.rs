//! Spans exported over OTLP/HTTP to a real receiver on a loopback socket, decoded from the
//! protobuf that arrived: a caller's client span and the agent's server span of the same call,
//! parent and child across the mTLS hop, with the MCP conventions' attributes; and a dead
//! collector that costs the calls nothing but dropped (counted) spans.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use toolmesh_core::context::RequestContext;
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::Provider;
use toolmesh_core::trace::{Resource, Settings, SpanCounters, Tracer};

/// What the receiver was sent: per request its path, content type, API key header and body.
type Received = Arc<Mutex<Vec<(String, String, String, Bytes)>>>;

/// An OTLP/HTTP receiver on a loopback port: records every request, answers 200.
async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                        let (path, content_type, key) = (request.uri().path().to_owned(), header("content-type"), header("x-api-key"));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        sink.lock().unwrap().push((path, content_type, key, body));
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                }),
            ));
        }
    });
    (url, received)
}

/// A protobuf message, read by field number (wire format only: what the test needs).
#[derive(Debug, Default)]
struct Message {
    fields: BTreeMap<u32, Vec<Field>>,
}

#[derive(Debug, Clone)]
enum Field {
    Varint(u64),
    Fixed64(u64),
    Bytes(Bytes),
}

impl Message {
    fn parse(mut data: &[u8]) -> Message {
        fn varint(data: &mut &[u8]) -> u64 {
            let mut value = 0;
            for shift in (0..64).step_by(7) {
                let byte = data[0];
                *data = &data[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
            }
            value
        }
        let mut message = Message::default();
        while !data.is_empty() {
            let key = varint(&mut data);
            let field = match key & 7 {
                0 => Field::Varint(varint(&mut data)),
                1 => {
                    let value = u64::from_le_bytes(data[..8].try_into().unwrap());
                    data = &data[8..];
                    Field::Fixed64(value)
                }
                2 => {
                    let length = varint(&mut data) as usize;
                    let bytes = Bytes::copy_from_slice(&data[..length]);
                    data = &data[length..];
                    Field::Bytes(bytes)
                }
                other => panic!("unexpected wire type {other}"),
            };
            message.fields.entry((key >> 3) as u32).or_default().push(field);
        }
        message
    }

    fn all(&self, number: u32) -> Vec<Field> {
        self.fields.get(&number).cloned().unwrap_or_default()
    }

    fn messages(&self, number: u32) -> Vec<Message> {
        self.all(number).iter().map(|f| Message::parse(&self.bytes_of(f))).collect()
    }

    fn bytes_of(&self, field: &Field) -> Bytes {
        match field {
            Field::Bytes(b) => b.clone(),
            other => panic!("not bytes: {other:?}"),
        }
    }

    fn bytes(&self, number: u32) -> Option<Bytes> {
        self.all(number).first().map(|f| self.bytes_of(f))
    }

    fn text(&self, number: u32) -> Option<String> {
        self.bytes(number).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    fn number(&self, number: u32) -> Option<u64> {
        self.all(number).first().map(|f| match f {
            Field::Varint(v) | Field::Fixed64(v) => *v,
            other => panic!("not a number: {other:?}"),
        })
    }

    /// `repeated KeyValue` at `number` as text: strings as they are, ints in decimal.
    fn attributes(&self, number: u32) -> BTreeMap<String, String> {
        self.messages(number)
            .iter()
            .map(|kv| {
                let value = &kv.messages(2)[0];
                let text = value.text(1).unwrap_or_else(|| (value.number(3).unwrap() as i64).to_string());
                (kv.text(1).unwrap(), text)
            })
            .collect()
    }
}

/// A decoded span: its ids in hex, its name, kind, attributes, status code and timestamps.
#[derive(Debug)]
struct Exported {
    resource: BTreeMap<String, String>,
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    name: String,
    kind: u64,
    attributes: BTreeMap<String, String>,
    status: u64,
    start: u64,
    end: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spans_in(body: &[u8]) -> Vec<Exported> {
    let mut out = Vec::new();
    for resource_spans in Message::parse(body).messages(1) {
        let resource = resource_spans.messages(1)[0].attributes(1);
        for scope_spans in resource_spans.messages(2) {
            assert_eq!(scope_spans.messages(1)[0].text(1).as_deref(), Some("toolmesh"));
            for span in scope_spans.messages(2) {
                out.push(Exported {
                    resource: resource.clone(),
                    trace_id: hex(&span.bytes(1).unwrap()),
                    span_id: hex(&span.bytes(2).unwrap()),
                    parent: span.bytes(4).map(|b| hex(&b)),
                    name: span.text(5).unwrap(),
                    kind: span.number(6).unwrap(),
                    attributes: span.attributes(9),
                    status: span.messages(15).first().and_then(|s| s.number(3)).unwrap_or(0),
                    start: span.number(7).unwrap(),
                    end: span.number(8).unwrap(),
                });
            }
        }
    }
    out
}

/// Waits until the receiver holds `n` spans of the traces that spans of `service` started, then
/// returns those (other tests' agents of this binary may export there too).
async fn exported(received: &Received, service: &str, n: usize) -> Vec<Exported> {
    let ours = || {
        let all: Vec<Exported> = received.lock().unwrap().iter().flat_map(|(_, _, _, body)| spans_in(body)).collect();
        let traces: Vec<String> = all
            .iter()
            .filter(|s| s.resource.get("service.name").map(String::as_str) == Some(service))
            .map(|s| s.trace_id.clone())
            .collect();
        all.into_iter().filter(|s| traces.contains(&s.trace_id)).collect::<Vec<_>>()
    };
    wait_until(&format!("{n} spans reached the receiver"), Duration::from_secs(20), || ours().len() >= n).await;
    ours()
}

fn settings(vars: &[(&str, &str)]) -> Settings {
    Settings::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())).unwrap()
}

#[tokio::test]
async fn client_and_server_spans_of_one_call_reach_an_otlp_receiver_as_parent_and_child() {
    let (url, received) = receiver().await;
    // The agent reads the standard variables (the other test's agent may too: its spans are in
    // other traces).
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &url);
    std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cret");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "20");
    std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test");
    let pki = Pki::new();
    let agent = start_agent("calc", &pki.issue("calc"), standard_tools(), |_| {}).await;

    // The caller: a client with a tracer of its own, exporting to the same receiver.
    let caller = settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &format!("{url}/v1/traces")), ("OTEL_BSP_SCHEDULE_DELAY", "20")]);
    let counters = Arc::new(SpanCounters::default());
    let resource = Resource { agent_name: "operator", agent_id: "operator-1", identity: "spiffe://toolmesh.local/agent/operator" };
    let tracer = Tracer::start(&caller, resource, counters.clone(), None).unwrap();
    let client = McpClient::new(&pki.identity("operator")).unwrap().traced(tracer.clone());
    let context = RequestContext::default();
    assert_eq!(client.call_tool(agent.endpoint(), "add", &json!({"a": 2, "b": 3}), &context).await.unwrap(), json!(5));
    let e = client.call_tool(agent.endpoint(), "fail", &json!({}), &context).await.unwrap_err();
    let spans = exported(&received, "operator", 4).await;

    let (path, content_type, key, _) = received.lock().unwrap()[0].clone();
    assert_eq!((path.as_str(), content_type.as_str()), ("/v1/traces", "application/x-protobuf"));
    assert!(received.lock().unwrap().iter().any(|(_, _, key, _)| key == "s3cret"), "the agent's OTLP headers were not sent ({key:?})");

    let find = |name: &str, kind: u64| {
        spans.iter().find(|s| s.name == name && s.kind == kind).unwrap_or_else(|| panic!("no {name} of kind {kind} in {spans:#?}"))
    };
    // Client (kind 3) and server (kind 2) spans of the call to add: one trace, the client span the
    // server span's parent — the id the client sent in its traceparent.
    let client_add = find("tools/call add", 3);
    let server_add = find("tools/call add", 2);
    assert_eq!(client_add.trace_id, server_add.trace_id);
    assert_eq!(client_add.parent, None, "a call made outside any handler starts a trace");
    assert_eq!(server_add.parent.as_deref(), Some(client_add.span_id.as_str()));
    assert!(client_add.start <= server_add.start && server_add.end <= client_add.end, "{client_add:?} {server_add:?}");
    assert_eq!(client_add.status, 0);
    let port = agent.local_addr().port().to_string();
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "add"),
        ("gen_ai.operation.name", "execute_tool"),
        ("mcp.protocol.version", "2026-07-28"),
        ("server.address", "127.0.0.1"),
        ("server.port", port.as_str()),
        ("network.transport", "tcp"),
        ("toolmesh.peer.identity", "spiffe://toolmesh.local/agent/calc"),
    ] {
        assert_eq!(client_add.attributes.get(key).map(String::as_str), Some(value), "client {key}: {client_add:#?}");
    }
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "add"),
        ("mcp.protocol.version", "2026-07-28"),
        ("client.address", "127.0.0.1"),
        ("toolmesh.peer.identity", "spiffe://toolmesh.local/agent/operator"),
    ] {
        assert_eq!(server_add.attributes.get(key).map(String::as_str), Some(value), "server {key}: {server_add:#?}");
    }
    assert!(server_add.attributes.contains_key("jsonrpc.request.id") && server_add.attributes.contains_key("client.port"));
    assert_eq!(server_add.resource.get("service.name").map(String::as_str), Some("calc"));
    assert_eq!(server_add.resource.get("service.instance.id").map(String::as_str), Some(agent.agent_id()));
    assert_eq!(server_add.resource.get("toolmesh.identity").map(String::as_str), Some("spiffe://toolmesh.local/agent/calc"));
    assert_eq!(server_add.resource.get("deployment.environment").map(String::as_str), Some("test"));
    assert_eq!(client_add.resource.get("service.name").map(String::as_str), Some("operator"));

    // A failed tool: both sides say so, with the mesh's error kind as error.type — the handler
    // failed where it ran, the tool failed for its caller.
    let (client_fail, server_fail) = (find("tools/call fail", 3), find("tools/call fail", 2));
    assert_eq!(server_fail.parent.as_deref(), Some(client_fail.span_id.as_str()));
    assert_eq!((client_fail.status, server_fail.status), (2, 2), "status ERROR on both sides");
    assert_eq!(server_fail.attributes.get("error.type").map(String::as_str), Some("HANDLER_FAILED"));
    assert_eq!(e.error.kind().name(), "TOOL_FAILED");
    assert_eq!(client_fail.attributes.get("error.type").map(String::as_str), Some("TOOL_FAILED"));

    agent.shutdown().await;
    tracer.flush(Duration::from_secs(5)).await;
    assert_eq!(counters.exported.get(), 2);
    assert_eq!(counters.queue_full.get() + counters.export_failed.get(), 0);
}

#[tokio::test]
async fn a_client_span_names_the_identity_the_callee_proved_not_the_name_it_registered() {
    let (url, received) = receiver().await;
    let pki = Pki::new();
    // An agent registered as "calc" whose certificate is billing's.
    let agent = start_agent("calc", &pki.issue("billing"), standard_tools(), |_| {}).await;
    let caller = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &url), ("OTEL_BSP_SCHEDULE_DELAY", "1")]);
    let resource = Resource { agent_name: "auditor", agent_id: "auditor-1", identity: "spiffe://toolmesh.local/agent/auditor" };
    let tracer = Tracer::start(&caller, resource, Arc::default(), None).unwrap();
    let client = McpClient::new(&pki.identity("auditor")).unwrap().traced(tracer.clone());
    let provider = Provider::of(agent.agent_id(), "calc", agent.endpoint(), &standard_tools()[0]);
    let context = RequestContext::default();
    assert_eq!(
        client.call_provider(&provider, &json!({"a": 1, "b": 1}), &context, toolmesh_core::mcp::ResultShape::Value).await.unwrap(),
        json!(2)
    );
    assert_eq!(client.list_tools(agent.endpoint(), &context).await.unwrap().len(), standard_tools().len());
    tracer.flush(Duration::from_secs(5)).await;
    let spans = exported(&received, "auditor", 2).await;
    for name in ["tools/call add", "tools/list"] {
        let span = spans.iter().find(|s| s.name == name && s.kind == 3).unwrap_or_else(|| panic!("no client {name} in {spans:#?}"));
        assert_eq!(
            span.attributes.get("toolmesh.peer.identity").map(String::as_str),
            Some("spiffe://toolmesh.local/agent/billing"),
            "{span:#?}"
        );
    }
    let call = spans.iter().find(|s| s.name == "tools/call add" && s.kind == 3).unwrap();
    assert_eq!(call.attributes.get("toolmesh.peer.agent").map(String::as_str), Some("calc"));
    // A call that never reached a verified peer names none.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    client.call_tool(&format!("https://{dead}/mcp"), "add", &json!({}), &context).await.unwrap_err();
    tracer.flush(Duration::from_secs(5)).await;
    let spans = exported(&received, "auditor", 3).await;
    let failed = spans.iter().find(|s| s.attributes.get("server.port") == Some(&dead.port().to_string())).unwrap();
    assert_eq!(failed.attributes.get("error.type").map(String::as_str), Some("CONNECT_FAILED"));
    assert!(!failed.attributes.contains_key("toolmesh.peer.identity"), "{failed:#?}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_dead_collector_costs_the_calls_nothing_but_dropped_spans() {
    let pki = Pki::new();
    let agent = start_agent("calc", &pki.issue("calc"), standard_tools(), |_| {}).await;
    // A port nothing listens on.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let caller = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{dead}")), ("OTEL_BSP_SCHEDULE_DELAY", "1")]);
    let counters = Arc::new(SpanCounters::default());
    let resource = Resource { agent_name: "operator", agent_id: "operator-1", identity: "operator" };
    let tracer = Tracer::start(&caller, resource, counters.clone(), None).unwrap();
    let client = McpClient::new(&pki.identity("operator")).unwrap().traced(tracer.clone());
    for i in 0..50 {
        assert_eq!(
            client.call_tool(agent.endpoint(), "add", &json!({"a": i, "b": 1}), &RequestContext::default()).await.unwrap(),
            json!(i + 1)
        );
    }
    tracer.flush(Duration::from_secs(5)).await;
    wait_until("every span was counted", Duration::from_secs(10), || counters.export_failed.get() + counters.queue_full.get() == 50).await;
    assert_eq!(counters.exported.get(), 0);
    agent.shutdown().await;
}

#[tokio::test]
async fn a_registry_that_never_answers_costs_the_calls_nothing_but_dropped_spans() {
    let pki = Pki::new();
    let agent = start_agent("calc", &pki.issue("calc"), standard_tools(), |_| {}).await;
    // A registry that takes connections and never answers, not even the TLS handshake.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_url = format!("https://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = black_hole.accept().await {
            open.push(stream);
        }
    });
    // No collector named: the spans go to the registry, each export bounded by 30 s.
    let caller = settings(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "1"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
    ]);
    let identity = pki.identity("operator");
    let registry = toolmesh_core::registry_client::RegistryClient::new(&registry_url, &identity).unwrap();
    let counters = Arc::new(SpanCounters::default());
    let resource = Resource { agent_name: "operator", agent_id: "operator-1", identity: "operator" };
    let tracer = Tracer::start(&caller, resource, counters.clone(), Some(&registry)).unwrap();
    assert!(tracer.exporting());
    let client = McpClient::new(&identity).unwrap().traced(tracer.clone());
    let started = std::time::Instant::now();
    for i in 0..50 {
        assert_eq!(
            client.call_tool(agent.endpoint(), "add", &json!({"a": i, "b": 1}), &RequestContext::default()).await.unwrap(),
            json!(i + 1)
        );
    }
    // Every call was answered while the first export still hangs (it may for 30 s): none waited on it.
    assert!(started.elapsed() < Duration::from_secs(15), "50 calls took {:?}", started.elapsed());
    // One span is in the hanging export, at most 8 wait in the queue; the rest were dropped, counted.
    assert!(counters.queue_full.get() >= 41, "queue_full {}", counters.queue_full.get());
    assert_eq!(counters.exported.get(), 0);
    // Without a registry, the default exports nowhere and records nothing.
    let nowhere = Tracer::start(&caller, Resource { agent_name: "x", agent_id: "x-1", identity: "x" }, Arc::default(), None).unwrap();
    assert!(!nowhere.exporting());
    held.abort();
    agent.shutdown().await;
}
