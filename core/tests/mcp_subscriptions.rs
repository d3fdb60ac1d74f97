//! Resource subscriptions over real mTLS to a real agent, in both eras: a client subscribes, the
//! host announces a change (`Agent::notify_resource_updated`), and the client's stream carries
//! `notifications/resources/updated`; unsubscribing (or closing the stream) stops it; a legacy
//! session belongs to the certificate that created it; what one client may hold is bounded; a
//! stopping agent ends the streams.

mod common;

use bytes::Bytes;
use common::mcp::*;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::error::ErrorKind;
use toolmesh_core::host::{Catalog, FnCatalogHandler};

const WAIT: Duration = Duration::from_secs(10);

async fn start(pki: &Pki, name: &str) -> Agent {
    let catalog = Catalog::parse(
        &json!({
            "resources": [{"uri": "test://watched", "name": "watched", "text": "v1"}],
            "resourceTemplates": [{"uriTemplate": "test://items/{id}", "name": "items"}],
        })
        .to_string(),
    )
    .unwrap();
    let handler = FnCatalogHandler(
        |_, done: toolmesh_core::host::Completion| done.err("no tools here"),
        |_, done: toolmesh_core::host::Completion| done.ok(json!({"contents": []})),
    );
    Agent::start_with_catalog(config(name, &pki.issue(name)), vec![], catalog, Arc::new(handler)).await.unwrap()
}

/// Sends one request: the status, the response headers and the JSON answer (`Null` if none).
async fn send(
    client: &HttpsClient,
    method: &str,
    endpoint: &str,
    session: Option<&str>,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let response = client.send(request.body(Full::new(body)).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (status, response.headers().clone(), value)
}

/// A legacy `initialize`: the session id it answers with.
async fn initialize(client: &HttpsClient, endpoint: &str) -> String {
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    let (status, headers, v) =
        send(client, "POST", endpoint, None, Some(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["capabilities"]["resources"], json!({"listChanged": false, "subscribe": true}), "{v}");
    headers.get("mcp-session-id").expect("initialize hands out a session").to_str().unwrap().to_owned()
}

/// A legacy request in `session`: the status and the JSON-RPC answer.
async fn request(client: &HttpsClient, endpoint: &str, session: Option<&str>, method: &str, params: Value) -> (u16, Value) {
    let (status, _, v) =
        send(client, "POST", endpoint, session, Some(json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}))).await;
    (status, v)
}

/// An event stream being read: its JSON messages as they arrive; `None` once it ended.
struct Stream {
    messages: mpsc::UnboundedReceiver<Value>,
    reader: tokio::task::JoinHandle<()>,
}

impl Stream {
    /// Opens `request`'s answer as a stream, read in the background.
    fn open(client: &HttpsClient, request: http::Request<Full<Bytes>>) -> Stream {
        let (sender, messages) = mpsc::unbounded_channel();
        let client = client.clone();
        let reader = tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut observe = |chunk: &Bytes| {
                pending.extend_from_slice(chunk);
                while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                    let event: Vec<u8> = pending.drain(..end + 2).collect();
                    let event = String::from_utf8(event).unwrap();
                    if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                        let _ = sender.send(serde_json::from_str(data).unwrap());
                    }
                }
            };
            let _ = client.send_observed(request, Some(&mut observe)).await;
        });
        Stream { messages, reader }
    }

    /// A legacy session's GET stream.
    fn session(client: &HttpsClient, endpoint: &str, session: &str) -> Stream {
        let request = http::Request::builder()
            .method("GET")
            .uri(endpoint)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", session)
            .body(Full::new(Bytes::new()))
            .unwrap();
        Stream::open(client, request)
    }

    /// A modern `subscriptions/listen` with request id `id`.
    fn listen(client: &HttpsClient, endpoint: &str, id: u64, notifications: Value) -> Stream {
        let meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}});
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {"notifications": notifications, "_meta": meta}});
        let request = http::Request::builder()
            .method("POST")
            .uri(endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "subscriptions/listen")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        Stream::open(client, request)
    }

    /// The next message, within [`WAIT`]; `None` if the stream ended.
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(WAIT, self.messages.recv()).await.expect("a message or the stream's end within 10 s")
    }
}

fn updated(uri: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}})
}

/// How many streams an announcement of `uri` reaches once the server saw closed streams go.
async fn reaches(agent: &Agent, uri: &str, expected: usize) {
    eventually(&format!("an update of {uri} reaches {expected} stream(s)"), WAIT, async || {
        let reached = agent.notify_resource_updated(uri).unwrap();
        if reached == expected {
            Ok(())
        } else {
            Err(format!("reached {reached}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_legacy_session_receives_the_updates_it_subscribed_to_until_it_unsubscribes_or_ends() {
    let pki = Pki::new();
    let agent = start(&pki, "docs").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let session = initialize(&client, ep).await;
    let mut stream = Stream::session(&client, ep, &session);

    // Nothing is subscribed yet: an announcement reaches no one.
    assert_eq!(agent.notify_resource_updated("test://watched").unwrap(), 0);
    let (status, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": "test://watched"})).await;
    assert_eq!((status, v["result"].clone()), (200, json!({})), "{v}");
    let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": "test://items/7"})).await;
    assert_eq!(v["result"], json!({}), "{v}");

    // The GET stream may still be opening: the first announcement goes out once it is attached.
    reaches(&agent, "test://watched", 1).await;
    assert_eq!(stream.next().await, Some(updated("test://watched")));
    assert_eq!(agent.notify_resource_updated("test://items/7").unwrap(), 1);
    assert_eq!(agent.notify_resource_updated("test://items/8").unwrap(), 0, "a template's other resources are not watched");
    assert_eq!(stream.next().await, Some(updated("test://items/7")));

    // Unsubscribed: the next message on the stream is the other resource's, not this one's.
    let (_, v) = request(&client, ep, Some(&session), "resources/unsubscribe", json!({"uri": "test://watched"})).await;
    assert_eq!(v["result"], json!({}), "{v}");
    assert_eq!(agent.notify_resource_updated("test://watched").unwrap(), 0);
    assert_eq!(agent.notify_resource_updated("test://items/7").unwrap(), 1);
    assert_eq!(stream.next().await, Some(updated("test://items/7")));

    // Bad input: an unknown resource, no session, no uri, and a host announcing a URI it does
    // not serve.
    let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": "test://nope"})).await;
    assert_eq!((v["error"]["code"].clone(), v["error"]["data"]["uri"].clone()), (json!(-32002), json!("test://nope")), "{v}");
    let (status, v) = request(&client, ep, None, "resources/subscribe", json!({"uri": "test://watched"})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("Mcp-Session-Id"), "{v}");
    let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({})).await;
    assert_eq!(v["error"]["code"], json!(-32602), "{v}");
    let e = agent.notify_resource_updated("test://nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(e.message().contains("'test://nope' is not a resource this agent serves"), "{}", e.message());
    // Sessionless legacy requests are still served.
    let (status, v) = request(&client, ep, None, "resources/list", json!({})).await;
    assert_eq!((status, v["result"]["resources"][0]["uri"].clone()), (200, json!("test://watched")), "{v}");

    // DELETE ends the session: its stream closes and its id is unknown from then on.
    let (status, _, _) = send(&client, "DELETE", ep, Some(&session), None).await;
    assert_eq!(status, 200);
    assert_eq!(stream.next().await, None, "the session's stream ends with it");
    let (status, v) = request(&client, ep, Some(&session), "resources/list", json!({})).await;
    assert_eq!((status, v["error"]["code"].clone()), (404, json!(-32600)), "{v}");
    let (status, _, _) = send(&client, "GET", ep, Some(&session), None).await;
    assert_eq!(status, 404);
    assert_eq!(agent.notify_resource_updated("test://items/7").unwrap(), 0);
    agent.shutdown().await;
}

#[tokio::test]
async fn a_session_belongs_to_the_certificate_that_created_it() {
    let pki = Pki::new();
    let agent = start(&pki, "docs").await;
    let owner = HttpsClient::new(&pki.identity("operator")).unwrap();
    let intruder = HttpsClient::new(&pki.identity("intruder")).unwrap();
    let ep = agent.endpoint();
    let session = initialize(&owner, ep).await;
    let (_, v) = request(&owner, ep, Some(&session), "resources/subscribe", json!({"uri": "test://watched"})).await;
    assert_eq!(v["result"], json!({}), "{v}");

    // Another mesh certificate presenting the id is answered as for an unknown session.
    for method in ["resources/subscribe", "resources/unsubscribe", "resources/list"] {
        let (status, v) = request(&intruder, ep, Some(&session), method, json!({"uri": "test://watched"})).await;
        assert_eq!((status, v["error"]["code"].clone()), (404, json!(-32600)), "{method}: {v}");
    }
    for method in ["GET", "DELETE"] {
        let (status, _, _) = send(&intruder, method, ep, Some(&session), None).await;
        assert_eq!(status, 404, "{method}");
    }
    // So is a notification, and one naming a session nobody opened; on the owner's it is accepted.
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send(&intruder, "POST", ep, Some(&session), Some(initialized.clone())).await.0, 404);
    assert_eq!(send(&owner, "POST", ep, Some("0123456789abcdef0123456789abcdef"), Some(initialized.clone())).await.0, 404);
    assert_eq!(send(&owner, "POST", ep, Some(&session), Some(initialized)).await.0, 202);

    // The owner's session is untouched: its subscription is still there and its stream opens.
    let mut stream = Stream::session(&owner, ep, &session);
    reaches(&agent, "test://watched", 1).await;
    assert_eq!(stream.next().await, Some(updated("test://watched")));
    stream.reader.abort();
    agent.shutdown().await;
}

#[tokio::test]
async fn what_one_client_holds_is_bounded() {
    let pki = Pki::new();
    let agent = start(&pki, "docs").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    // At most 256 resources per session; subscribing again to one already held is no new one.
    let session = initialize(&client, ep).await;
    for i in 0..256 {
        let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": format!("test://items/{i}")})).await;
        assert_eq!(v["result"], json!({}), "{i}: {v}");
    }
    let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": "test://items/0"})).await;
    assert_eq!(v["result"], json!({}), "{v}");
    let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": "test://watched"})).await;
    assert_eq!(v["error"]["code"], json!(-32602), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("at most 256 resources"), "{v}");

    // A session keeps its client's capabilities: at most 8 KiB of them.
    let bloated = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {"experimental": {"pad": "x".repeat(9000)}}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, v) = send(&client, "POST", ep, None, Some(bloated)).await;
    assert_eq!((status, v["error"]["code"].clone()), (200, json!(-32602)), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("takes at most 8192"), "{v}");
    assert!(headers.get("mcp-session-id").is_none(), "no session for it");

    // At most 64 sessions per identity: the 65th drops the least recently used one.
    let mut sessions = vec![session];
    for _ in 1..65 {
        sessions.push(initialize(&client, ep).await);
    }
    let (status, _) = request(&client, ep, Some(&sessions[0]), "ping", json!({})).await;
    assert_eq!(status, 404, "the oldest session was dropped");
    let (status, _) = request(&client, ep, Some(&sessions[1]), "ping", json!({})).await;
    assert_eq!(status, 200);
    // Another identity's sessions do not count against this one's.
    let other = HttpsClient::new(&pki.identity("other")).unwrap();
    let theirs = initialize(&other, ep).await;
    let (status, _) = request(&other, ep, Some(&theirs), "ping", json!({})).await;
    assert_eq!(status, 200);

    // At most 16 open listen streams per identity (the acknowledgement says each is open).
    let mut streams = Vec::new();
    for id in 0..16 {
        let mut stream = Stream::listen(&client, ep, id, json!({"resourceSubscriptions": ["test://watched"]}));
        assert_eq!(stream.next().await.unwrap()["method"], json!("notifications/subscriptions/acknowledged"));
        streams.push(stream);
    }
    let (status, v) = modern(&client, ep, "subscriptions/listen", None, json!({"notifications": {}})).await;
    assert_eq!((status, v["error"]["code"].clone()), (429, json!(-32600)), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("may hold 16 open"), "{v}");
    let mut theirs = Stream::listen(&other, ep, 99, json!({}));
    assert_eq!(theirs.next().await.unwrap()["method"], json!("notifications/subscriptions/acknowledged"));
    agent.shutdown().await;
}

#[tokio::test]
async fn a_modern_listen_stream_is_acknowledged_tagged_and_ended_by_closing_it() {
    let pki = Pki::new();
    let agent = start(&pki, "docs").await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let (_, v) = modern(&client, ep, "server/discover", None, json!({})).await;
    assert_eq!(v["result"]["capabilities"]["resources"], json!({"listChanged": false, "subscribe": true}), "{v}");

    // The acknowledgement comes first and names only what is honored: an unknown resource and a
    // list change (the lists are fixed) are left out.
    let mut stream =
        Stream::listen(&client, ep, 41, json!({"resourceSubscriptions": ["test://watched", "test://nope"], "toolsListChanged": true}));
    let ack = stream.next().await.unwrap();
    assert_eq!(
        ack,
        json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
               "params": {"notifications": {"resourceSubscriptions": ["test://watched"]}, "_meta": {"io.modelcontextprotocol/subscriptionId": 41}}})
    );
    assert_eq!(agent.notify_resource_updated("test://watched").unwrap(), 1);
    assert_eq!(agent.notify_resource_updated("test://items/1").unwrap(), 0);
    let update = stream.next().await.unwrap();
    assert_eq!(update["method"], json!("notifications/resources/updated"));
    assert_eq!(update["params"], json!({"uri": "test://watched", "_meta": {"io.modelcontextprotocol/subscriptionId": 41}}));

    // Closing the stream ends the subscription.
    stream.reader.abort();
    reaches(&agent, "test://watched", 0).await;

    // Bad input is refused before any stream opens.
    let (status, v) = modern(&client, ep, "subscriptions/listen", None, json!({})).await;
    assert_eq!((status, v["error"]["code"].clone()), (400, json!(-32602)), "{v}");
    let (status, v) =
        modern(&client, ep, "subscriptions/listen", None, json!({"notifications": {"resourceSubscriptions": "test://watched"}})).await;
    assert_eq!((status, v["error"]["code"].clone()), (400, json!(-32602)), "{v}");

    // A stopping agent ends an open stream with the listen result (and is not held up by it),
    // and a legacy session's stream too.
    let session = initialize(&client, ep).await;
    let mut legacy = Stream::session(&client, ep, &session);
    let (_, v) = request(&client, ep, Some(&session), "resources/subscribe", json!({"uri": "test://watched"})).await;
    assert_eq!(v["result"], json!({}), "{v}");
    reaches(&agent, "test://watched", 1).await;
    assert_eq!(legacy.next().await, Some(updated("test://watched")));
    let mut stream = Stream::listen(&client, ep, 42, json!({"resourceSubscriptions": ["test://watched"]}));
    // The acknowledgement is sent once the subscription is in place.
    assert_eq!(stream.next().await.unwrap()["method"], json!("notifications/subscriptions/acknowledged"));
    assert_eq!(agent.notify_resource_updated("test://watched").unwrap(), 2);
    assert_eq!(stream.next().await.unwrap()["method"], json!("notifications/resources/updated"));
    assert_eq!(legacy.next().await, Some(updated("test://watched")));
    let started = std::time::Instant::now();
    agent.shutdown().await;
    let result = stream.next().await.unwrap();
    assert_eq!((result["id"].clone(), result["result"]["resultType"].clone()), (json!(42), json!("complete")), "{result}");
    assert_eq!(result["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"], json!(42));
    assert_eq!(stream.next().await, None);
    assert_eq!(legacy.next().await, None);
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
}
