//! Long calls across hops (issue 14): a chain X → A → B → C of agents on real mTLS listeners,
//! found through a live registry. A and B only call their dependency with their request's
//! context; core relays C's progress and log messages up to X, and cancels every hop below a
//! request that is cancelled — by X closing its stream, by a legacy `notifications/cancelled`,
//! or by its deadline — after which no handler runs on and no connection stays open. C's request
//! for input reaches X (modern: an input-required result; legacy: a request on A's stream) and
//! X's answer reaches C.

mod common;

use bytes::Bytes;
use common::{eventually, wait_until, Mesh};
use http_body_util::Full;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use toolmesh_ca::{write_pair, Role};
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{Completion, FnHandler, HostError, InputRequired, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::report::{LogLevel, Notification, NotificationObserver};
use toolmesh_core::tls::TlsFiles;
use toolmesh_core::ErrorKind;
use toolmesh_registry::RunningRegistry;

const HEARTBEAT: Duration = Duration::from_millis(200);
/// What the issue allows a cancellation per hop.
const PER_HOP: Duration = Duration::from_millis(100);

/// What a handler saw, for the test to wait on.
#[derive(Debug)]
enum Seen {
    /// The last hop's handler started (its first progress is on its way).
    Started,
    /// The last hop's handler saw its request cancelled, at this instant.
    Cancelled(Instant),
    /// A middle hop's call to its dependency failed with this kind.
    CallFailed(&'static str, ErrorKind),
}

/// Handlers alive now, across the chain's agents: each holds one while it runs.
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

struct Running(Arc<AtomicUsize>);

impl Live {
    fn enter(&self) -> Running {
        self.0.fetch_add(1, Ordering::SeqCst);
        Running(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Chain {
    dir: tempfile::TempDir,
    mesh: Mesh,
    _registry: RunningRegistry,
    registry_url: String,
    agents: Vec<Agent>,
    seen: mpsc::UnboundedReceiver<Seen>,
    report: mpsc::UnboundedSender<Seen>,
    live: Live,
}

/// The tools: `c` reports progress 1..=3 of 3 and a log message at each of debug and info, then
/// answers `{"from": "c"}` — or, with `{"hang": true}`, waits for its request's cancellation.
/// `b` calls `c`, `a` calls `b`, `mid` calls `c` (served by the same agent: in process).
fn tool(name: &str, dependency: Option<&str>) -> ToolInfo {
    let dependencies: Vec<&str> = dependency.into_iter().collect();
    serde_json::from_value(json!({"name": name, "capability": name, "dependencies": dependencies})).unwrap()
}

impl Chain {
    async fn new() -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let mesh = Mesh::new();
        std::fs::write(dir.path().join("ca.pem"), mesh.ca.cert_pem()).unwrap();
        let registry = mesh.start_registry(0, HEARTBEAT).await;
        let registry_url = format!("https://127.0.0.1:{}", registry.local_addr().port());
        let (report, seen) = mpsc::unbounded_channel();
        Chain { dir, mesh, _registry: registry, registry_url, agents: Vec::new(), seen, report, live: Live::default() }
    }

    fn files(&self, name: &str, role: Role) -> TlsFiles {
        let issued = self.mesh.issue(name, role);
        let (cert, key) = write_pair(self.dir.path(), name, &issued, true).unwrap();
        TlsFiles { cert, key, ca: self.dir.path().join("ca.pem") }
    }

    /// Starts an agent serving `tools` and waits until it is registered.
    async fn agent(&mut self, name: &str, tools: Vec<ToolInfo>) -> Agent {
        let files = self.files(name, Role::Agent);
        let mut config = AgentConfig::from_env(name).unwrap();
        for (key, value) in [
            ("tls_cert", files.cert.to_str().unwrap()),
            ("tls_key", files.key.to_str().unwrap()),
            ("tls_ca", files.ca.to_str().unwrap()),
            ("registry_url", self.registry_url.as_str()),
            ("heartbeat_interval_ms", "200"),
            ("health_port", "off"),
        ] {
            config.set(key, value).unwrap();
        }
        let me: Arc<OnceLock<Agent>> = Arc::new(OnceLock::new());
        let (report, live) = (self.report.clone(), self.live.clone());
        let handler = {
            let me = me.clone();
            FnHandler(move |call: ToolInvocation, done: Completion| {
                let (me, report, running) = (me.clone(), report.clone(), live.enter());
                tokio::spawn(async move {
                    let _running = running;
                    let context = call.context.clone();
                    if call.tool == "c" {
                        let _ = report.send(Seen::Started);
                        for step in 1..=3 {
                            context.progress(f64::from(step), Some(3.0), Some(&format!("c step {step}")));
                        }
                        context.log(LogLevel::Debug, &json!("c is thorough"), Some("c"));
                        context.log(LogLevel::Info, &json!({"c": "done"}), Some("c"));
                        if call.arguments["ask"] == json!(true) {
                            // Asks the client for a name; the retry brings it, and the state.
                            return match &context.input {
                                None => done.input_required(InputRequired {
                                    input_requests: serde_json::from_value(json!({"name": {"method": "elicitation/create",
                                        "params": {"message": "Who is asking?", "requestedSchema": {"type": "object"}}}}))
                                    .unwrap(),
                                    request_state: Some(json!({"asked": "c"})),
                                }),
                                Some(input) => {
                                    let name = &input.responses["name"]["content"]["name"];
                                    done.ok(json!({"from": "c", "hello": name, "state": input.state}))
                                }
                            };
                        }
                        if call.arguments["hang"] == json!(true) {
                            let waited = tokio::time::timeout(Duration::from_secs(20), context.cancelled()).await;
                            let _ = report.send(Seen::Cancelled(Instant::now()));
                            assert!(waited.is_ok(), "c's request was never cancelled");
                            return done.err("cancelled");
                        }
                        return done.ok(json!({"from": "c"}));
                    }
                    // A middle hop: nothing but the call, with its request's context.
                    let tool: &'static str = if call.tool == "a" {
                        "a"
                    } else if call.tool == "b" {
                        "b"
                    } else {
                        "mid"
                    };
                    let agent = me.get().unwrap();
                    match agent.call(tool, 0, call.arguments.clone(), Some(context)).await {
                        Ok(value) => done.ok(value),
                        Err(e) => {
                            let _ = report.send(Seen::CallFailed(tool, e.kind()));
                            done.complete(Err(HostError { message: e.message().to_owned(), mesh_error: Some(e) }))
                        }
                    }
                });
            })
        };
        let agent = Agent::start(config, tools, Arc::new(handler)).await.unwrap();
        let _ = me.set(agent.clone());
        assert!(agent.wait_registered(Duration::from_secs(5)).await, "{name} did not register");
        self.agents.push(agent.clone());
        agent
    }

    /// X → A → B → C, each its own agent; returns A.
    async fn three_hops(&mut self) -> Agent {
        self.agent("c-agent", vec![tool("c", None)]).await;
        self.agent("b-agent", vec![tool("b", Some("c"))]).await;
        self.agent("a-agent", vec![tool("a", Some("b"))]).await
    }

    fn caller(&self) -> McpClient {
        McpClient::new(&self.mesh.identity("x", Role::Agent)).unwrap()
    }

    fn raw_caller(&self) -> HttpsClient {
        HttpsClient::new(&self.mesh.identity("x", Role::Agent)).unwrap()
    }

    async fn next_seen(&mut self, what: &str) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv()).await.unwrap_or_else(|_| panic!("waited 10 s for {what}")).unwrap()
    }

    /// Waits until every handler of the chain returned, and no connection to any of its agents
    /// is open beyond `baseline` (those pooled before the call).
    async fn settled(&self, baseline: usize) {
        wait_until("every handler of the chain returned", Duration::from_secs(5), || self.live.count() == 0).await;
        let ports: HashSet<u16> = self.agents.iter().map(|a| a.local_addr().port()).collect();
        eventually("the connections of the cancelled calls closed", Duration::from_secs(5), async || {
            let open = established_to(&ports);
            if open <= baseline {
                Ok(())
            } else {
                Err(format!("{open} open, {baseline} before"))
            }
        })
        .await;
    }

    fn established(&self) -> usize {
        established_to(&self.agents.iter().map(|a| a.local_addr().port()).collect())
    }
}

/// TCP connections in ESTABLISHED state whose server side is one of `ports` (this process holds
/// both ends of every connection, so each is counted once, by its server side).
fn established_to(ports: &HashSet<u16>) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            fields.get(3) == Some(&"01") && local_port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

/// An observer that collects what it receives.
fn collecting() -> (NotificationObserver, Arc<Mutex<Vec<Notification>>>, mpsc::UnboundedReceiver<Notification>) {
    let all: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let observer = NotificationObserver::new({
        let all = all.clone();
        move |n: Notification| {
            all.lock().unwrap().push(n.clone());
            let _ = tx.send(n);
        }
    });
    (observer, all, rx)
}

/// Calls `a` until the chain answers (the topology reached every hop).
async fn until_the_chain_answers(caller: &McpClient, endpoint: &str, tool: &str) {
    eventually("the chain answers", Duration::from_secs(10), async || {
        caller.call_tool(endpoint, tool, &json!({}), &RequestContext::default()).await.map_err(|e| e.error.to_string())
    })
    .await;
}

fn c_progress() -> Vec<Notification> {
    (1..=3)
        .map(|step| Notification::Progress { progress: f64::from(step), total: Some(3.0), message: Some(format!("c step {step}")) })
        .collect()
}

fn c_logs() -> Vec<Notification> {
    vec![
        Notification::Log { level: LogLevel::Debug, logger: Some("c".into()), data: json!("c is thorough") },
        Notification::Log { level: LogLevel::Info, logger: Some("c".into()), data: json!({"c": "done"}) },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_hops_progress_and_log_messages_reach_the_first_caller_in_order() {
    let mut chain = Chain::new().await;
    let a = chain.three_hops().await;
    let caller = chain.caller();
    until_the_chain_answers(&caller, a.endpoint(), "a").await;

    let (observer, received, _) = collecting();
    let context = RequestContext { on_notification: Some(observer), ..RequestContext::default() };
    let value = caller.call_tool(a.endpoint(), "a", &json!({}), &context).await.unwrap();
    assert_eq!(value, json!({"from": "c"}));
    let expected: Vec<Notification> = c_progress().into_iter().chain(c_logs()).collect();
    assert_eq!(*received.lock().unwrap(), expected, "C's reports, relayed by B and A, in order");

    // A raw modern request with a token of its own and warnings only: C's progress comes back
    // under that token, and neither log message (both below warning) is let through.
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "a", "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {},
        "progressToken": "x-token", "io.modelcontextprotocol/logLevel": "warning"}}});
    let messages = post(&chain.raw_caller(), a.endpoint(), true, &body).await;
    let progress: Vec<Value> = messages.iter().filter(|m| m["method"] == "notifications/progress").map(|m| m["params"].clone()).collect();
    assert_eq!(
        progress,
        (1..=3)
            .map(|s| json!({"progressToken": "x-token", "progress": f64::from(s), "total": 3.0, "message": format!("c step {s}")}))
            .collect::<Vec<_>>()
    );
    assert!(!messages.iter().any(|m| m["method"] == "notifications/message"), "{messages:?}");
    assert_eq!(messages.last().unwrap()["result"]["structuredContent"], json!({"from": "c"}));

    // Without a token or a level, nothing is asked of B or C and the answer is plain JSON.
    let body = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "a", "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
    let messages = post(&chain.raw_caller(), a.endpoint(), true, &body).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_first_stream_cancels_every_hop_within_100_ms_each_and_leaves_nothing_running() {
    let mut chain = Chain::new().await;
    let a = chain.three_hops().await;
    let caller = chain.caller();
    until_the_chain_answers(&caller, a.endpoint(), "a").await;
    while let Ok(seen) = chain.seen.try_recv() {
        assert!(matches!(seen, Seen::Started), "{seen:?}");
    }
    let baseline = chain.established();

    let (observer, _, mut first) = collecting();
    let context = RequestContext { on_notification: Some(observer), ..RequestContext::default() };
    let arguments = json!({"hang": true});
    let mut call = Box::pin(caller.call_tool(a.endpoint(), "a", &arguments, &context));
    tokio::select! {
        outcome = &mut call => panic!("a hanging chain answered: {outcome:?}"),
        first = first.recv() => assert_eq!(first, Some(c_progress()[0].clone())),
    }
    // X goes away: its call, connection and stream are dropped.
    let closed = Instant::now();
    drop(call);
    assert!(matches!(chain.next_seen("c to start").await, Seen::Started));
    let mut failed = Vec::new();
    let cancelled_at = loop {
        match chain.next_seen("c to see its request cancelled").await {
            Seen::Cancelled(at) => break at,
            Seen::CallFailed(hop, kind) => failed.push((hop, kind)),
            Seen::Started => panic!("a second c started"),
        }
    };
    let took = cancelled_at.duration_since(closed);
    println!("cancellation X -> A -> B -> C took {took:?}");
    assert!(took < 3 * PER_HOP, "three hops took {took:?}");
    chain.settled(baseline).await;
    while let Ok(Seen::CallFailed(hop, kind)) = chain.seen.try_recv() {
        failed.push((hop, kind));
    }
    failed.sort_by_key(|(hop, _)| *hop);
    assert_eq!(failed, [("a", ErrorKind::Cancelled), ("b", ErrorKind::Cancelled)], "each middle hop's call was cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_notifications_cancelled_cancels_the_chain_below_that_request() {
    let mut chain = Chain::new().await;
    let a = chain.three_hops().await;
    let caller = chain.caller();
    until_the_chain_answers(&caller, a.endpoint(), "a").await;
    while chain.seen.try_recv().is_ok() {}
    let baseline = chain.established();

    let client = chain.raw_caller();
    let endpoint = a.endpoint().to_owned();
    let call = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "a", "arguments": {"hang": true}, "_meta": {"progressToken": 1}}});
    let pending = tokio::spawn({
        let (client, endpoint) = (client.clone(), endpoint.clone());
        async move { post(&client, &endpoint, false, &call).await }
    });
    assert!(matches!(chain.next_seen("c to start").await, Seen::Started));
    // Another request id, and the same id from another identity, cancel nothing.
    let cancel =
        |id: Value| json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "user gave up"}});
    assert_eq!(post_status(&client, &endpoint, &cancel(json!(41))).await, 202);
    let stranger = HttpsClient::new(&chain.mesh.identity("stranger", Role::Agent)).unwrap();
    assert_eq!(post_status(&stranger, &endpoint, &cancel(json!(42))).await, 202);
    assert!(chain.seen.try_recv().is_err(), "nothing was cancelled by a cancellation that names another request");

    let sent = Instant::now();
    assert_eq!(post_status(&client, &endpoint, &cancel(json!(42))).await, 202);
    let cancelled_at = loop {
        match chain.next_seen("c to see its request cancelled").await {
            Seen::Cancelled(at) => break at,
            _ => continue,
        }
    };
    let took = cancelled_at.duration_since(sent);
    println!("notifications/cancelled at A -> C cancelled in {took:?}");
    assert!(took < 3 * PER_HOP, "took {took:?}");
    // A's handler answers at once (its dependency call failed), and core answers the cancelled
    // request CANCELLED in its own words, whatever the handler said.
    let messages = tokio::time::timeout(Duration::from_secs(5), pending).await.expect("the cancelled request was answered").unwrap();
    let answer = messages.last().unwrap();
    assert_eq!(answer["result"]["isError"], json!(true), "{answer}");
    assert_eq!(
        answer["result"]["_meta"]["dev.toolmesh/error"],
        json!({"code": 4006, "name": "CANCELLED",
               "message": "tool 'a' was cancelled by its caller before it answered; its handler's answer, if any, was dropped"}),
        "{answer}"
    );
    // The raw callers' own kept-alive connections close with them.
    drop((client, stranger));
    chain.settled(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_callers_deadline_cancels_the_hops_below() {
    let mut chain = Chain::new().await;
    let a = chain.three_hops().await;
    let caller = chain.caller();
    until_the_chain_answers(&caller, a.endpoint(), "a").await;
    while chain.seen.try_recv().is_ok() {}
    let baseline = chain.established();

    let budget = Duration::from_millis(400);
    let started = Instant::now();
    let context = RequestContext { deadline: Some(tokio::time::Instant::now() + budget), ..RequestContext::default() };
    let error = caller.call_tool(a.endpoint(), "a", &json!({"hang": true}), &context).await.unwrap_err().error;
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let cancelled_at = loop {
        match chain.next_seen("c to see its request cancelled").await {
            Seen::Cancelled(at) => break at,
            _ => continue,
        }
    };
    let past_deadline = cancelled_at.duration_since(started).saturating_sub(budget);
    println!("c cancelled {past_deadline:?} after the first caller's deadline");
    assert!(past_deadline < 3 * PER_HOP, "{past_deadline:?}");
    chain.settled(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_served_in_process_relays_progress_and_is_cancelled_with_its_caller() {
    let mut chain = Chain::new().await;
    let m = chain.agent("m-agent", vec![tool("mid", Some("c")), tool("c", None)]).await;
    let caller = chain.caller();
    until_the_chain_answers(&caller, m.endpoint(), "mid").await;
    while chain.seen.try_recv().is_ok() {}

    let (observer, received, _) = collecting();
    let context = RequestContext { on_notification: Some(observer), ..RequestContext::default() };
    assert_eq!(caller.call_tool(m.endpoint(), "mid", &json!({}), &context).await.unwrap(), json!({"from": "c"}));
    let expected: Vec<Notification> = c_progress().into_iter().chain(c_logs()).collect();
    assert_eq!(*received.lock().unwrap(), expected);
    while chain.seen.try_recv().is_ok() {}

    let (observer, _, mut first) = collecting();
    let context = RequestContext { on_notification: Some(observer), ..RequestContext::default() };
    let arguments = json!({"hang": true});
    let mut call = Box::pin(caller.call_tool(m.endpoint(), "mid", &arguments, &context));
    tokio::select! {
        outcome = &mut call => panic!("a hanging call answered: {outcome:?}"),
        first = first.recv() => assert_eq!(first, Some(c_progress()[0].clone())),
    }
    let closed = Instant::now();
    drop(call);
    let cancelled_at = loop {
        match chain.next_seen("c to see its request cancelled").await {
            Seen::Cancelled(at) => break at,
            _ => continue,
        }
    };
    let took = cancelled_at.duration_since(closed);
    println!("cancellation X -> M -> M (in process) took {took:?}");
    assert!(took < 2 * PER_HOP, "{took:?}");
    wait_until("every handler returned", Duration::from_secs(5), || chain.live.count() == 0).await;
}

/// POSTs one JSON-RPC message (modern headers when `modern`) and returns the JSON messages of
/// the answer: its event stream's, or the one JSON body.
async fn post(client: &HttpsClient, endpoint: &str, modern: bool, body: &Value) -> Vec<Value> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if modern {
        let name = body["params"]["name"].as_str().unwrap();
        request = request.header("mcp-protocol-version", "2026-07-28").header("mcp-method", "tools/call").header("mcp-name", name);
    }
    let response = client.send(request.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let text = String::from_utf8(response.body().to_vec()).unwrap();
    if response.headers().get("content-type").is_some_and(|t| t == "text/event-stream") {
        return text
            .split("\n\n")
            .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
    }
    vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))]
}

async fn post_status(client: &HttpsClient, endpoint: &str, body: &Value) -> u16 {
    let request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client.send(request).await.unwrap().status().as_u16()
}

/// Sends X's modern `tools/call` of `a` (with the client's answers and A's state on a retry) and
/// returns the JSON-RPC result.
async fn call_a(raw: &HttpsClient, endpoint: &str, params: Value) -> Value {
    let mut params = params;
    params["name"] = json!("a");
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let request = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "a")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = raw.send(request).await.unwrap();
    let answer: Value = serde_json::from_slice(response.body()).unwrap();
    answer["result"].clone()
}

#[tokio::test]
async fn input_required_three_hops_down_reaches_the_first_caller_and_its_answer_reaches_the_last_hop() {
    let mut chain = Chain::new().await;
    let a = chain.three_hops().await;
    let x = chain.caller();
    until_the_chain_answers(&x, a.endpoint(), "a").await;
    let raw = chain.raw_caller();

    // C asks; B's and A's handlers only let their call's INPUT_REQUIRED propagate.
    let asked = call_a(&raw, a.endpoint(), json!({"arguments": {"ask": true}})).await;
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    assert_eq!(asked["inputRequests"]["name"]["params"]["message"], "Who is asking?", "{asked}");
    let state = asked["requestState"].as_str().expect("A's sealed state").to_owned();
    assert!(!state.contains("asked"), "the state is sealed, not readable: {state}");
    let mut failed = Vec::new();
    while let Ok(seen) = chain.seen.try_recv() {
        if let Seen::CallFailed(tool, kind) = seen {
            failed.push((tool, kind));
        }
    }
    assert_eq!(failed, [("b", ErrorKind::InputRequired), ("a", ErrorKind::InputRequired)], "each hop's call saw INPUT_REQUIRED");

    // X's retry with the answer: it reaches C, with C's own state.
    let answers = json!({"name": {"action": "accept", "content": {"name": "Ada"}}});
    let answered = call_a(&raw, a.endpoint(), json!({"arguments": {"ask": true}, "inputResponses": answers, "requestState": state})).await;
    assert_eq!(answered["structuredContent"], json!({"from": "c", "hello": "Ada", "state": {"asked": "c"}}), "{answered}");

    // A state changed on the way is refused by A before anything runs.
    let forged = format!("{}x", &state[..state.len() - 1]);
    let refused = call_a(&raw, a.endpoint(), json!({"arguments": {"ask": true}, "inputResponses": answers, "requestState": forged})).await;
    assert!(refused.is_null(), "a forged state is a JSON-RPC error, not a result");
}

/// A legacy X (2025-11-25, which has no input-required result) that declared elicitation when
/// it initialized: C's request reaches it as a request of A's on the call's event stream, its
/// response goes back down to C, and the call ends with C's answer, on the same stream.
#[tokio::test]
async fn input_required_three_hops_down_reaches_a_legacy_first_caller_as_a_request_on_its_stream() {
    let mut chain = Chain::new().await;
    let a = chain.three_hops().await;
    until_the_chain_answers(&chain.caller(), a.endpoint(), "a").await;
    let raw = chain.raw_caller();
    let endpoint = a.endpoint().to_owned();
    let legacy = |body: Value, session: Option<&str>| {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
        }
        request.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    };

    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {}}, "clientInfo": {"name": "x", "version": "1"}}});
    let initialized = raw.send(legacy(initialize, None)).await.unwrap();
    assert_eq!(initialized.status(), 200);
    let session = initialized.headers().get("mcp-session-id").map(|s| s.to_str().unwrap().to_owned());

    let (events, mut received) = mpsc::unbounded_channel::<Value>();
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "a", "arguments": {"ask": true}}});
    let answer = tokio::spawn({
        let (raw, request) = (raw.clone(), legacy(call, session.as_deref()));
        async move {
            let mut observe = move |chunk: &Bytes| {
                for line in String::from_utf8_lossy(chunk).lines() {
                    if let Some(Ok(message)) = line.strip_prefix("data: ").map(serde_json::from_str::<Value>) {
                        let _ = events.send(message);
                    }
                }
            };
            let response = raw.send_observed(request, Some(&mut observe)).await.unwrap();
            String::from_utf8(response.body().to_vec()).unwrap()
        }
    });
    let asked = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.expect("C's request reaches X on A's stream");
        let Some(message) = message else { panic!("the stream ended: {}", answer.await.unwrap()) };
        if message.get("method").is_some() && message.get("id").is_some() {
            break message;
        }
    };
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    assert_eq!(asked["params"]["message"], "Who is asking?", "{asked}");

    let response = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": "Ada"}}});
    assert_eq!(raw.send(legacy(response, session.as_deref())).await.unwrap().status(), 202);
    let answer = tokio::time::timeout(Duration::from_secs(10), answer).await.expect("the call ends").unwrap();
    let result = answer
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["id"] == 7)
        .unwrap_or_else(|| panic!("the call's answer on its stream: {answer}"));
    assert_eq!(result["result"]["structuredContent"], json!({"from": "c", "hello": "Ada", "state": {"asked": "c"}}), "{result}");
}
