//! Progress and log messages from a handler, over real mTLS to a real agent, in both eras: what
//! each request lets through (a progress token; the modern `_meta` log level, legacy `info` and
//! up), the answer's switch to an event stream at the first notification, a mesh caller that
//! receives them, and the cancellation that a closed stream fires.

mod common;

use bytes::Bytes;
use common::mcp::*;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::report::{LogLevel, Notification, NotificationObserver};

/// What the `watched` tool's handler saw once its request was cancelled.
#[derive(Debug)]
struct AfterCancel {
    progress_sent: bool,
    log_sent: bool,
    /// How the call it had in flight ended.
    outbound: String,
}

struct Fixture {
    agent: Agent,
    after_cancel: mpsc::UnboundedReceiver<AfterCancel>,
    /// The completion of the `hang` calls, held so that they never answer.
    _hung: Arc<Mutex<Vec<Completion>>>,
}

fn tools() -> Vec<toolmesh_core::registry_api::ToolInfo> {
    let any = json!({"type": "object"});
    vec![
        tool("report", "report", any.clone(), json!([])),
        tool("quiet", "quiet", any.clone(), json!([])),
        tool("hang", "hang", any.clone(), json!([])),
        tool("watched", "watched", any, json!(["hang"])),
    ]
}

/// `report`: progress 1 and 2 of 2, then a log message at each level, then `"done"`.
/// `quiet`: answers at once. `hang`: never answers. `watched`: reports progress, then calls
/// `hang` and, once its request is cancelled, tells the test what it saw.
async fn start(pki: &Pki) -> Fixture {
    let mut config = config("reporter", &pki.issue("reporter"));
    config.set("health_port", "off").unwrap();
    let slot: Arc<OnceLock<Agent>> = Arc::new(OnceLock::new());
    let (cancelled, after_cancel) = mpsc::unbounded_channel();
    let hung: Arc<Mutex<Vec<Completion>>> = Arc::default();
    let handler = {
        let (slot, hung) = (slot.clone(), hung.clone());
        Arc::new(FnHandler(move |call: ToolInvocation, done: Completion| {
            let (slot, hung, cancelled) = (slot.clone(), hung.clone(), cancelled.clone());
            tokio::spawn(async move {
                let context = call.context.clone();
                match call.tool.as_str() {
                    "report" => {
                        context.progress(1.0, Some(2.0), Some("half"));
                        context.progress(2.0, Some(2.0), None);
                        for level in LogLevel::ALL {
                            context.log(level, &json!({"at": level.as_str()}), Some("test"));
                        }
                        done.ok(json!("done"));
                    }
                    "quiet" => done.ok(json!("quiet")),
                    "hang" => hung.lock().unwrap().push(done),
                    "watched" => {
                        context.progress(1.0, None, Some("started"));
                        let agent = slot.get().unwrap();
                        let outbound = agent.call("watched", 0, json!({}), Some(context.clone())).await;
                        let _ = tokio::time::timeout(Duration::from_secs(10), context.cancelled()).await;
                        let _ = cancelled.send(AfterCancel {
                            progress_sent: context.progress(2.0, None, None),
                            log_sent: context.log(LogLevel::Emergency, &json!("late"), None),
                            outbound: format!("{outbound:?}"),
                        });
                        done.ok(json!("too late"));
                    }
                    other => done.err(format!("no such tool {other}")),
                }
            });
        }))
    };
    let agent = Agent::start(config, tools(), handler).await.unwrap();
    let _ = slot.set(agent.clone());
    Fixture { agent, after_cancel, _hung: hung }
}

/// A raw `tools/call` with `meta` added to `_meta` (modern when `modern`): the status, the
/// content type, and the body as text.
async fn call(client: &HttpsClient, endpoint: &str, tool: &str, modern: bool, meta: Value) -> (u16, String, String) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    let mut full_meta = json!({});
    if modern {
        full_meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}});
        request = request.header("mcp-protocol-version", MODERN).header("mcp-method", "tools/call").header("mcp-name", tool);
    }
    full_meta.as_object_mut().unwrap().extend(meta.as_object().unwrap().clone());
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": {}, "_meta": full_meta}});
    let response = client.send(request.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    if content_type == "text/event-stream" {
        assert_eq!(response.headers().get("x-accel-buffering").unwrap(), "no");
    }
    (response.status().as_u16(), content_type, String::from_utf8(response.body().to_vec()).unwrap())
}

/// The JSON messages of an event stream, in order (the priming event has no data).
fn messages(stream: &str) -> Vec<Value> {
    assert!(stream.starts_with("id: 0\ndata:\n\n"), "the stream starts with its priming event: {stream}");
    stream
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

fn levels(messages: &[Value]) -> Vec<String> {
    messages.iter().filter(|m| m["method"] == "notifications/message").map(|m| m["params"]["level"].as_str().unwrap().to_owned()).collect()
}

fn progress(messages: &[Value]) -> Vec<Value> {
    messages.iter().filter(|m| m["method"] == "notifications/progress").map(|m| m["params"].clone()).collect()
}

#[tokio::test]
async fn progress_and_logs_stream_in_order_before_the_result_in_both_eras() {
    let pki = Pki::new();
    let fixture = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("caller")).unwrap();
    let endpoint = fixture.agent.endpoint();

    // Modern, asking for progress and for warnings and up.
    let (status, content_type, body) =
        call(&client, endpoint, "report", true, json!({"progressToken": "p-1", "io.modelcontextprotocol/logLevel": "warning"})).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"), "{body}");
    let all = messages(&body);
    assert_eq!(
        progress(&all),
        [
            json!({"progressToken": "p-1", "progress": 1.0, "total": 2.0, "message": "half"}),
            json!({"progressToken": "p-1", "progress": 2.0, "total": 2.0})
        ]
    );
    assert_eq!(levels(&all), ["warning", "error", "critical", "alert", "emergency"]);
    assert_eq!(all[2]["params"], json!({"level": "warning", "logger": "test", "data": {"at": "warning"}}));
    let result = all.last().unwrap();
    assert_eq!((&result["id"], &result["result"]["structuredContent"]), (&json!(7), &json!("done")), "the result comes last: {body}");
    assert_eq!(all.len(), 2 + 5 + 1);

    // Legacy: an integer token; log messages at info and up, as no level can be kept.
    let (status, content_type, body) = call(&client, endpoint, "report", false, json!({"progressToken": 42})).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"), "{body}");
    let all = messages(&body);
    assert_eq!(progress(&all).iter().map(|p| p["progressToken"].clone()).collect::<Vec<_>>(), [json!(42), json!(42)]);
    assert_eq!(levels(&all), ["info", "notice", "warning", "error", "critical", "alert", "emergency"]);
    assert_eq!(all.last().unwrap()["result"]["structuredContent"], json!({"result": "done"}));
    fixture.agent.shutdown().await;
}

#[tokio::test]
async fn nothing_is_sent_that_the_request_did_not_ask_for_and_the_answer_stays_json() {
    let pki = Pki::new();
    let fixture = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("caller")).unwrap();
    let endpoint = fixture.agent.endpoint();

    // Modern without a token or a level: neither progress nor log messages, one JSON answer.
    let (status, content_type, body) = call(&client, endpoint, "report", true, json!({})).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"), "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["result"]["structuredContent"], json!("done"));

    // A token but no level: progress only.
    let (_, content_type, body) = call(&client, endpoint, "report", true, json!({"progressToken": 1})).await;
    assert_eq!(content_type, "text/event-stream");
    let all = messages(&body);
    assert_eq!((progress(&all).len(), levels(&all).len()), (2, 0), "{body}");

    // A level but no token: log messages only.
    let (_, _, body) = call(&client, endpoint, "report", true, json!({"io.modelcontextprotocol/logLevel": "debug"})).await;
    let all = messages(&body);
    assert_eq!((progress(&all).len(), levels(&all).len()), (0, 8), "{body}");

    // A handler that reports nothing answers JSON even when the request asked for everything.
    let (_, content_type, _) =
        call(&client, endpoint, "quiet", true, json!({"progressToken": 1, "io.modelcontextprotocol/logLevel": "debug"})).await;
    assert_eq!(content_type, "application/json");

    // A level MCP does not name is the client's mistake.
    let (status, _, body) = call(&client, endpoint, "report", true, json!({"io.modelcontextprotocol/logLevel": "loud"})).await;
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &error["error"]["code"]), (400, &json!(-32602)), "{body}");
    assert!(error["error"]["message"].as_str().unwrap().contains("must be one of debug, info"), "{body}");
    fixture.agent.shutdown().await;
}

#[tokio::test]
async fn a_mesh_caller_receives_the_callees_progress_and_log_messages() {
    let pki = Pki::new();
    let fixture = start(&pki).await;
    let client = McpClient::new(&pki.identity("caller")).unwrap();
    let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let context = RequestContext {
        on_notification: Some(NotificationObserver::new({
            let received = received.clone();
            move |n| received.lock().unwrap().push(n)
        })),
        ..RequestContext::default()
    };
    let value = client.call_tool(fixture.agent.endpoint(), "report", &json!({}), &context).await.unwrap();
    assert_eq!(value, json!("done"));
    let received = received.lock().unwrap().clone();
    assert_eq!(
        received[..2],
        [
            Notification::Progress { progress: 1.0, total: Some(2.0), message: Some("half".into()) },
            Notification::Progress { progress: 2.0, total: Some(2.0), message: None },
        ]
    );
    let logged: Vec<LogLevel> = received[2..]
        .iter()
        .map(|n| match n {
            Notification::Log { level, logger, .. } if logger.as_deref() == Some("test") => *level,
            other => panic!("not a log message of the handler: {other:?}"),
        })
        .collect();
    assert_eq!(logged, LogLevel::ALL, "a mesh caller asks for every level");

    // Without an observer, the caller asks for nothing and gets the plain answer.
    let value = client.call_tool(fixture.agent.endpoint(), "report", &json!({}), &RequestContext::default()).await.unwrap();
    assert_eq!(value, json!("done"));
    fixture.agent.shutdown().await;
}

#[tokio::test]
async fn a_closed_stream_cancels_the_request_its_reports_and_its_outbound_calls() {
    let pki = Pki::new();
    let mut fixture = start(&pki).await;
    let client = McpClient::new(&pki.identity("caller")).unwrap();
    let (first, mut first_seen) = mpsc::unbounded_channel();
    let context = RequestContext {
        on_notification: Some(NotificationObserver::new(move |n| {
            let _ = first.send(n);
        })),
        ..RequestContext::default()
    };
    let endpoint = fixture.agent.endpoint().to_owned();
    let arguments = json!({});
    let call = client.call_tool(&endpoint, "watched", &arguments, &context);
    // The caller gives up once the stream has begun: the call's future, its connection and the
    // stream are dropped.
    tokio::select! {
        outcome = call => panic!("the watched call never answers before it is cancelled: {outcome:?}"),
        first = first_seen.recv() => assert_eq!(first, Some(Notification::Progress { progress: 1.0, total: None, message: Some("started".into()) })),
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), fixture.after_cancel.recv())
        .await
        .expect("the handler saw its request cancelled within 10 s")
        .unwrap();
    assert!(!seen.progress_sent && !seen.log_sent, "{seen:?}");
    assert!(seen.outbound.contains("was cancelled: the request it was made for was cancelled"), "{seen:?}");
    fixture.agent.shutdown().await;
}
