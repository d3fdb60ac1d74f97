//! The tasks extension (SEP-2663) over real mTLS to a real agent: a call from a client that
//! negotiated the extension becomes a task that `tasks/get` follows to its result, `tasks/update`
//! feeds with input and `tasks/cancel` stops (its handler told so); a handler that answers at once
//! is answered directly; a client that did not negotiate gets synchronous answers and -32021 for
//! the task methods; a task is visible only to the identity that created it; and one identity
//! holds a bounded number of tasks, and every identity together a bounded number too; a task's
//! progress and log messages become its status message, listeners on `subscriptions/listen` get
//! `notifications/tasks` at each change, and the call's metrics end when the task does; a mesh
//! call to a tool that runs only as a task creates the task and follows it to its result, at the
//! provider that created it, and fails naming the lost task (without trying another provider)
//! once that provider is gone.

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::host::{Completion, FnHandler, InputRequired, ToolInvocation};
use toolmesh_core::registry_api::{TaskSupport, ToolInfo};
use toolmesh_core::report::LogLevel;

const TASKS: &str = "io.modelcontextprotocol/tasks";
const WITHIN: Duration = Duration::from_secs(10);

/// What the test and the handlers share: the labels the test released (a `work`, `ask`, `crash`
/// or `broken` call waits for its label), and the labels of the calls that saw their cancel.
struct Shared {
    released: watch::Sender<Vec<String>>,
    cancelled: mpsc::UnboundedSender<String>,
}

impl Shared {
    fn release(&self, label: &str) {
        self.released.send_modify(|released| released.push(label.to_owned()));
    }
}

fn tools() -> Vec<ToolInfo> {
    let declared = |name: &str, task_support| ToolInfo { task_support, ..tool(name, name, json!({"type": "object"}), json!([])) };
    vec![
        declared("work", TaskSupport::Optional),
        declared("ask", TaskSupport::Optional),
        declared("crash", TaskSupport::Optional),
        declared("broken", TaskSupport::Optional),
        declared("fast", TaskSupport::Optional),
        declared("only_task", TaskSupport::Required),
        declared("report", TaskSupport::Optional),
        declared("slow_task", TaskSupport::Required),
        declared("plain", TaskSupport::Forbidden),
    ]
}

fn handler(shared: Arc<Shared>) -> Arc<FnHandler<impl Fn(ToolInvocation, Completion) + Send + Sync>> {
    Arc::new(FnHandler(move |call: ToolInvocation, done: Completion| {
        let label = call.arguments["label"].as_str().unwrap_or_default().to_owned();
        let mut released = shared.released.subscribe();
        let cancelled = shared.cancelled.clone();
        tokio::spawn(async move {
            match call.tool.as_str() {
                "fast" | "only_task" | "plain" => return done.ok(json!({"label": label})),
                // The second round (with the answers) answers at once.
                "ask" if call.context.input.is_some() => {
                    let input = call.context.input.as_deref().unwrap();
                    return done.ok(json!({"answers": input.responses, "state": input.state}));
                }
                _ => {}
            }
            tokio::select! {
                _ = released.wait_for(|released| released.contains(&label)) => {}
                () = call.context.cancelled() => {
                    let _ = cancelled.send(label);
                    return;
                }
            }
            match call.tool.as_str() {
                "work" | "slow_task" => done.ok(json!({"label": label})),
                "report" => {
                    call.context.progress(1.0, Some(2.0), Some("half way"));
                    let logged = format!("{label}-log");
                    let _ = released.wait_for(|released| released.contains(&logged)).await;
                    call.context.log(LogLevel::Info, &json!("fetched 3 pages"), None);
                    call.context.log(LogLevel::Debug, &json!("below the level the call asked for"), None);
                    let end = format!("{label}-end");
                    let _ = released.wait_for(|released| released.contains(&end)).await;
                    done.ok(json!({"label": label}))
                }
                "ask" => done.input_required(
                    InputRequired::from_json(json!({
                        "inputRequests": {
                            "name": {"method": "elicitation/create", "params": {"message": "Name?", "requestedSchema": {"type": "object"}}},
                            "colour": {"method": "elicitation/create", "params": {"message": "Colour?", "requestedSchema": {"type": "object"}}}},
                        "requestState": {"asked": label},
                    }))
                    .unwrap(),
                ),
                "broken" => done.err("the job broke"),
                // Ends without an answer.
                _ => drop(done),
            }
        });
    }))
}

async fn start(pki: &Pki) -> (Agent, Arc<Shared>, mpsc::UnboundedReceiver<String>) {
    start_with(pki, &[("health_port", "off")]).await
}

/// [`start`] with these agent options.
async fn start_with(pki: &Pki, settings: &[(&str, &str)]) -> (Agent, Arc<Shared>, mpsc::UnboundedReceiver<String>) {
    let (cancelled, seen) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared { released: watch::channel(Vec::new()).0, cancelled });
    let mut config = config("tasker", &pki.issue("tasker"));
    for (key, value) in settings {
        config.set(key, value).unwrap();
    }
    let agent = Agent::start(config, tools(), handler(shared.clone())).await.unwrap();
    (agent, shared, seen)
}

/// Client capabilities that negotiate the tasks extension (and elicitation).
fn negotiating(mut params: Value) -> Value {
    params["_meta"] = json!({"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "extensions": {TASKS: {}}}});
    params
}

async fn call(client: &HttpsClient, ep: &str, tool: &str, label: &str) -> Value {
    let (status, answer) =
        modern(client, ep, "tools/call", Some(tool), negotiating(json!({"name": tool, "arguments": {"label": label}}))).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"].clone()
}

/// A task method; the whole JSON-RPC answer.
async fn task_method(client: &HttpsClient, ep: &str, method: &str, task: &str, mut params: Value) -> Value {
    params["taskId"] = json!(task);
    modern(client, ep, method, Some(task), negotiating(params)).await.1
}

async fn until_status(client: &HttpsClient, ep: &str, task: &str, status: &str) -> Value {
    eventually(&format!("task {task} is {status}"), WITHIN, async || {
        let got = task_method(client, ep, "tasks/get", task, json!({})).await["result"].clone();
        if got["status"] == status {
            Ok(got)
        } else {
            Err(got.to_string())
        }
    })
    .await
}

#[tokio::test]
async fn a_call_becomes_a_task_that_settles_asks_for_input_and_cancels() {
    let pki = Pki::new();
    let (agent, shared, mut cancelled) = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let (_, discovered) = modern(&client, ep, "server/discover", None, json!({})).await;
    assert_eq!(discovered["result"]["capabilities"]["extensions"], json!({TASKS: {}}), "{discovered}");
    let (_, listed) = modern(&client, ep, "tools/list", None, json!({})).await;
    let support: Vec<(&str, &Value)> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap(), &t["execution"])).collect();
    assert!(support.contains(&("only_task", &json!({"taskSupport": "required"}))), "{support:?}");
    assert!(support.contains(&("plain", &Value::Null)), "forbidden is the default, not listed: {support:?}");

    // A handler still working past the immediate window: the call is answered with the task.
    let created = call(&client, ep, "work", "w1").await;
    assert_eq!(created["resultType"], "task", "{created}");
    let task = created["taskId"].as_str().unwrap().to_owned();
    assert_eq!(task.len(), 32);
    for member in ["createdAt", "lastUpdatedAt"] {
        assert!(created[member].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{member}: {created}");
    }
    assert_eq!((created["status"].as_str(), created["ttlMs"].as_u64()), (Some("working"), Some(30 * 60 * 1000)));
    assert!(created.get("result").is_none() && created.get("requestState").is_none(), "{created}");
    let working = task_method(&client, ep, "tasks/get", &task, json!({})).await["result"].clone();
    assert_eq!((working["status"].as_str(), working["resultType"].as_str()), (Some("working"), Some("complete")), "{working}");
    assert!(working.get("result").is_none());
    shared.release("w1");
    let done = until_status(&client, ep, &task, "completed").await;
    assert_eq!(done["result"]["structuredContent"], json!({"label": "w1"}), "{done}");
    assert_eq!(done["result"]["isError"], false);

    // A tool error completes the task with an isError result; no answer at all fails it.
    let broken = call(&client, ep, "broken", "b1").await["taskId"].as_str().unwrap().to_owned();
    let crashed = call(&client, ep, "crash", "c1").await["taskId"].as_str().unwrap().to_owned();
    shared.release("b1");
    shared.release("c1");
    let broken = until_status(&client, ep, &broken, "completed").await;
    assert_eq!(
        (broken["result"]["isError"].as_bool(), broken["result"]["content"][0]["text"].as_str()),
        (Some(true), Some("tool 'broken' failed: the job broke"))
    );
    let crashed = until_status(&client, ep, &crashed, "failed").await;
    assert_eq!(crashed["error"]["code"], -32603, "{crashed}");
    assert!(crashed["error"]["message"].as_str().unwrap().contains("ended without an answer"), "{crashed}");
    assert!(crashed.get("result").is_none());

    // Input: both requests must be answered (one at a time here) before the handler runs again,
    // with the answers and the state it asked for.
    let asking = call(&client, ep, "ask", "a1").await["taskId"].as_str().unwrap().to_owned();
    shared.release("a1");
    let parked = until_status(&client, ep, &asking, "input_required").await;
    let mut keys: Vec<&String> = parked["inputRequests"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["colour", "name"]);
    assert!(parked.get("requestState").is_none(), "the state stays in core: {parked}");
    let ack = task_method(
        &client,
        ep,
        "tasks/update",
        &asking,
        json!({"inputResponses": {"name": {"action": "accept", "content": {"name": "Ada"}}}}),
    )
    .await;
    assert_eq!(ack["result"]["resultType"], "complete", "{ack}");
    assert!(ack["result"].get("status").is_none(), "an ack, not the task: {ack}");
    let still = task_method(&client, ep, "tasks/get", &asking, json!({})).await["result"].clone();
    assert_eq!(
        (still["status"].as_str(), still["inputRequests"].as_object().map(|r| r.len())),
        (Some("input_required"), Some(1)),
        "{still}"
    );
    assert!(still["inputRequests"].get("colour").is_some());
    let bad = task_method(&client, ep, "tasks/update", &asking, json!({"inputResponses": {"colour": "red"}})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    task_method(
        &client,
        ep,
        "tasks/update",
        &asking,
        json!({"inputResponses": {"colour": {"action": "accept", "content": {"colour": "red"}}}}),
    )
    .await;
    let answered = until_status(&client, ep, &asking, "completed").await;
    assert_eq!(answered["result"]["structuredContent"]["state"], json!({"asked": "a1"}), "{answered}");
    assert_eq!(answered["result"]["structuredContent"]["answers"]["colour"]["content"], json!({"colour": "red"}));

    // Cancel: acked, the task says so, its handler is told; a second cancel is acked the same.
    let running = call(&client, ep, "work", "w2").await["taskId"].as_str().unwrap().to_owned();
    let ack = task_method(&client, ep, "tasks/cancel", &running, json!({})).await;
    assert_eq!(ack["result"], json!({"resultType": "complete", "_meta": ack["result"]["_meta"]}), "{ack}");
    let told = tokio::time::timeout(WITHIN, cancelled.recv()).await.expect("the handler sees its cancel");
    assert_eq!(told.as_deref(), Some("w2"));
    assert_eq!(task_method(&client, ep, "tasks/get", &running, json!({})).await["result"]["status"], "cancelled");
    shared.release("w2");
    let again = task_method(&client, ep, "tasks/cancel", &running, json!({})).await;
    assert_eq!(again["result"]["resultType"], "complete", "{again}");
    assert_eq!(task_method(&client, ep, "tasks/get", &running, json!({})).await["result"]["status"], "cancelled");

    // A handler that answers at once is answered directly.
    let fast = call(&client, ep, "fast", "f1").await;
    assert_eq!((fast["resultType"].as_str(), fast.get("taskId")), (Some("complete"), None), "{fast}");

    let unknown = task_method(&client, ep, "tasks/get", "00000000000000000000000000000000", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(unknown["error"]["message"], "Invalid params: unknown task '00000000000000000000000000000000'");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_client_that_did_not_negotiate_tasks_gets_answers_directly_and_no_task_methods() {
    let pki = Pki::new();
    let (agent, shared, _) = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    shared.release("s1");
    let (status, answer) = modern(&client, ep, "tools/call", Some("work"), json!({"name": "work", "arguments": {"label": "s1"}})).await;
    assert_eq!((status, answer["result"]["resultType"].as_str()), (200, Some("complete")), "{answer}");
    assert_eq!(answer["result"]["structuredContent"], json!({"label": "s1"}));

    let (status, refused) = modern(&client, ep, "tools/call", Some("only_task"), json!({"name": "only_task", "arguments": {}})).await;
    assert_eq!((status, refused["error"]["code"].as_i64()), (400, Some(-32021)), "{refused}");
    assert_eq!(refused["error"]["data"], json!({"requiredCapabilities": {"extensions": {TASKS: {}}}}));
    assert!(refused["error"]["message"].as_str().unwrap().contains("tool 'only_task' runs only as a task"), "{refused}");

    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let (status, refused) = modern(&client, ep, method, Some("x"), json!({"taskId": "x", "inputResponses": {}})).await;
        assert_eq!((status, refused["error"]["code"].as_i64()), (400, Some(-32021)), "{method}: {refused}");
    }
    // The removed v1 methods, and the legacy era, have none of it.
    for method in ["tasks/result", "tasks/list"] {
        let (_, answer) = modern(&client, ep, method, None, negotiating(json!({"taskId": "x"}))).await;
        assert_eq!(answer["error"]["code"], -32601, "{method}: {answer}");
    }
    let legacy = legacy_ok(&client, ep, "tasks/get", json!({"taskId": "x"})).await;
    assert_eq!(legacy["error"]["code"], -32601, "{legacy}");
    // The routing header must name the task.
    let created = call(&client, ep, "work", "h1").await["taskId"].as_str().unwrap().to_owned();
    let (status, mismatch) = modern(&client, ep, "tasks/get", Some("another"), negotiating(json!({"taskId": created}))).await;
    assert_eq!((status, mismatch["error"]["code"].as_i64()), (400, Some(-32020)), "{mismatch}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_task_is_visible_only_to_the_identity_that_created_it() {
    let pki = Pki::new();
    let (agent, shared, _) = start(&pki).await;
    let owner = HttpsClient::new(&pki.identity("owner")).unwrap();
    let other = HttpsClient::new(&pki.identity("other")).unwrap();
    let ep = agent.endpoint();

    let task = call(&owner, ep, "ask", "i1").await["taskId"].as_str().unwrap().to_owned();
    shared.release("i1");
    until_status(&owner, ep, &task, "input_required").await;
    for (method, params) in [
        ("tasks/get", json!({})),
        (
            "tasks/update",
            json!({"inputResponses": {"name": {"action": "accept", "content": {}}, "colour": {"action": "accept", "content": {}}}}),
        ),
        ("tasks/cancel", json!({})),
    ] {
        let refused = task_method(&other, ep, method, &task, params).await;
        assert_eq!(refused["error"]["code"], -32602, "{method}: {refused}");
        assert_eq!(refused["error"]["message"], format!("Invalid params: unknown task '{task}'"), "the same as for an id never issued");
    }
    let untouched = task_method(&owner, ep, "tasks/get", &task, json!({})).await["result"].clone();
    assert_eq!(untouched["status"], "input_required", "another identity changed nothing: {untouched}");
    assert_eq!(untouched["inputRequests"].as_object().unwrap().len(), 2);
    agent.shutdown().await;
}

#[tokio::test]
async fn one_identity_holds_a_bounded_number_of_tasks() {
    const PER_CALLER: usize = 128;
    let pki = Pki::new();
    let (agent, _shared, _) = start(&pki).await;
    let busy = HttpsClient::new(&pki.identity("busy")).unwrap();
    let other = HttpsClient::new(&pki.identity("other")).unwrap();
    let ep = agent.endpoint().to_owned();

    let calls = (0..PER_CALLER).map(|i| {
        let (busy, ep) = (busy.clone(), ep.clone());
        tokio::spawn(async move { call(&busy, &ep, "work", &format!("n{i}")).await })
    });
    for created in futures_util::future::join_all(calls).await {
        let created = created.unwrap();
        assert_eq!(created["resultType"], "task", "{created}");
    }
    let refused = call(&busy, &ep, "work", "one-too-many").await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(refused["_meta"]["dev.toolmesh/error"]["name"], "RATE_LIMITED", "{refused}");
    let text = refused["content"][0]["text"].as_str().unwrap();
    assert!(text.contains(&format!("holds {PER_CALLER} tasks, as many as one caller may")), "{text}");
    let theirs = call(&other, &ep, "work", "someone-else").await;
    assert_eq!(theirs["resultType"], "task", "another identity is not limited by this one: {theirs}");
    agent.shutdown().await;
}

#[tokio::test]
async fn every_identity_together_holds_at_most_max_tasks() {
    let pki = Pki::new();
    let (agent, shared, _) = start_with(&pki, &[("health_port", "off"), ("max_tasks", "3")]).await;
    let ep = agent.endpoint();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let client = HttpsClient::new(&pki.identity(name)).unwrap();
        let created = call(&client, ep, "work", &format!("g{i}")).await;
        assert_eq!(created["resultType"], "task", "{name}: {created}");
    }
    let fourth = HttpsClient::new(&pki.identity("d")).unwrap();
    let refused = call(&fourth, ep, "work", "g3").await;
    assert_eq!((refused["isError"].as_bool(), refused["_meta"]["dev.toolmesh/error"]["name"].as_str()), (Some(true), Some("RATE_LIMITED")));
    let text = refused["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("this agent holds 3 tasks for its callers, as many as it keeps (max_tasks = 3;"), "{text}");
    // The refused call's handler was cancelled, not left running for no one.
    shared.release("g3");
    // A call answered within the immediate window needs no task, so it is not refused.
    let fast = call(&fourth, ep, "fast", "g4").await;
    assert_eq!(fast["resultType"], "complete", "{fast}");
    agent.shutdown().await;

    let mut config = config("bad", &pki.issue("bad"));
    let e = config.set("max_tasks", "0").unwrap_err();
    assert_eq!(e.message(), "max_tasks '0' must be a positive number of tasks");
}

/// The JSON-RPC messages of an event stream's bytes so far, and the bytes of an event not whole yet.
fn messages(buffer: &mut String) -> Vec<Value> {
    let mut whole = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let event: String = buffer.drain(..end + 2).collect();
        whole.extend(event.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()));
    }
    whole
}

/// `mcp_server_operation_duration_seconds_count` of `tool` with this `error_type` (`None`: ok).
fn calls_counted(metrics: &str, tool: &str, error_type: Option<&str>) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("mcp_server_operation_duration_seconds_count{") && l.contains(&format!("gen_ai_tool_name=\"{tool}\"")))
        .filter(|l| match error_type {
            Some(error_type) => l.contains(&format!("error_type=\"{error_type}\"")),
            None => !l.contains("error_type="),
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

async fn scrape(agent: &Agent) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(agent.health_addr().unwrap()).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test]
async fn a_task_reports_in_its_status_message_notifies_its_listeners_and_is_measured_to_its_end() {
    let pki = Pki::new();
    let (agent, shared, mut cancelled) = start_with(&pki, &[("health_port", "0")]).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint().to_owned();

    let mut params = negotiating(json!({"name": "report", "arguments": {"label": "r1"}}));
    params["_meta"]["io.modelcontextprotocol/logLevel"] = json!("info");
    let (_, created) = modern(&client, &ep, "tools/call", Some("report"), params).await;
    let task = created["result"]["taskId"].as_str().unwrap().to_owned();

    // A listener of this task (and of an id that names none of the caller's tasks).
    let (chunks, mut received) = mpsc::unbounded_channel::<bytes::Bytes>();
    let listen = {
        let (client, ep) = (client.clone(), ep.clone());
        let params = negotiating(json!({"notifications": {"taskIds": [task.clone(), "0123"]}}));
        tokio::spawn(async move { listen(&client, &ep, params, chunks).await })
    };
    let mut buffer = String::new();
    let mut seen: Vec<Value> = Vec::new();
    let mut until = async |what: &str, done: &dyn Fn(&Value) -> bool| -> Value {
        loop {
            if let Some(found) = seen.iter().find(|m| done(m)) {
                return found.clone();
            }
            let chunk = tokio::time::timeout(WITHIN, received.recv()).await.unwrap_or_else(|_| panic!("never on the stream: {what}"));
            buffer.push_str(std::str::from_utf8(&chunk.expect("the stream is open")).unwrap());
            seen.extend(messages(&mut buffer));
        }
    };
    let ack = until("the acknowledgement", &|m| m["method"] == "notifications/subscriptions/acknowledged").await;
    assert_eq!(ack["params"]["notifications"]["taskIds"], json!([task]), "only the caller's own task: {ack}");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "1");
    let working = until("the task working", &|m| m["method"] == "notifications/tasks").await;
    assert_eq!((working["params"]["taskId"].as_str(), working["params"]["status"].as_str()), (Some(task.as_str()), Some("working")));
    assert_eq!(working["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "1");

    shared.release("r1");
    let progressed = until("the progress", &|m| m["params"]["statusMessage"] == "half way").await;
    assert_eq!(progressed["params"]["status"], "working");
    assert_eq!(task_method(&client, &ep, "tasks/get", &task, json!({})).await["result"]["statusMessage"], "half way");
    // Running: the call is not measured yet, and is in flight.
    let metrics = scrape(&agent).await;
    assert_eq!(calls_counted(&metrics, "report", None), 0, "{metrics}");
    assert!(metrics.contains("toolmesh_server_requests_in_flight 1"), "{metrics}");

    shared.release("r1-log");
    until("the log message", &|m| m["params"]["statusMessage"] == "fetched 3 pages").await;
    shared.release("r1-end");
    let completed = until("the task completed", &|m| m["params"]["status"] == "completed").await;
    assert_eq!(completed["params"]["result"]["structuredContent"], json!({"label": "r1"}), "{completed}");
    assert_eq!(completed["params"]["statusMessage"], "fetched 3 pages", "the debug message was below the call's level");
    tokio::time::timeout(WITHIN, listen).await.expect("the stream ends once its tasks have").unwrap();
    let metrics = scrape(&agent).await;
    assert_eq!(calls_counted(&metrics, "report", None), 1, "measured when the task completed: {metrics}");

    // A cancelled task is measured as cancelled; a crashed one as its error, with its message.
    let running = call(&client, &ep, "work", "w9").await["taskId"].as_str().unwrap().to_owned();
    task_method(&client, &ep, "tasks/cancel", &running, json!({})).await;
    assert_eq!(tokio::time::timeout(WITHIN, cancelled.recv()).await.unwrap().as_deref(), Some("w9"));
    let shown = task_method(&client, &ep, "tasks/get", &running, json!({})).await["result"].clone();
    assert_eq!(shown["statusMessage"], "cancelled by its caller (tasks/cancel)", "{shown}");
    let crashed = call(&client, &ep, "crash", "c9").await["taskId"].as_str().unwrap().to_owned();
    shared.release("c9");
    let failed = until_status(&client, &ep, &crashed, "failed").await;
    assert_eq!(failed["statusMessage"], failed["error"]["message"], "{failed}");
    eventually("the ends of both tasks measured", WITHIN, async || {
        let metrics = scrape(&agent).await;
        match (calls_counted(&metrics, "work", Some("CANCELLED")), calls_counted(&metrics, "crash", Some("HANDLER_DROPPED"))) {
            (1, 1) => Ok(()),
            _ => Err(metrics),
        }
    })
    .await;

    // Listening needs the extension, and names the tasks to follow.
    let (status, refused) = modern(&client, &ep, "subscriptions/listen", None, json!({"notifications": {"taskIds": [task]}})).await;
    assert_eq!((status, refused["error"]["code"].as_i64()), (400, Some(-32021)), "{refused}");
    let (_, refused) = modern(&client, &ep, "subscriptions/listen", None, negotiating(json!({"notifications": {"taskIds": [1]}}))).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    agent.shutdown().await;
}

/// POSTs `subscriptions/listen` with `params`, handing `chunks` each piece of the event stream.
async fn listen(client: &HttpsClient, ep: &str, mut params: Value, chunks: mpsc::UnboundedSender<bytes::Bytes>) {
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(MODERN);
    let body = json!({"jsonrpc": "2.0", "id": "1", "method": "subscriptions/listen", "params": params});
    let request = http::Request::builder()
        .method("POST")
        .uri(ep)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "subscriptions/listen")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let mut observe = |chunk: &bytes::Bytes| {
        let _ = chunks.send(chunk.clone());
    };
    let response = client.send_observed(request, Some(&mut observe)).await.unwrap();
    assert_eq!(response.status(), 200);
}

/// How many requests of methods outside the counted set (`tasks/get`, `tasks/cancel`) the agent answered.
fn others_counted(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("mcp_server_operation_duration_seconds_count{mcp_method_name=\"_OTHER\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn a_mesh_call_to_a_tool_that_runs_only_as_a_task_follows_the_task_to_its_result() {
    let pki = Pki::new();
    let (agent, shared, mut cancelled) = start_with(&pki, &[("health_port", "0")]).await;
    let client = toolmesh_core::mcp::client::McpClient::new(&pki.identity("caller")).unwrap();
    let ep = agent.endpoint().to_owned();
    let context = toolmesh_core::context::RequestContext::default();

    // Refused without the extension, called again with it, and answered within the immediate window.
    let fast = client.call_tool(&ep, "only_task", &json!({"label": "m0"}), &context).await.unwrap();
    assert_eq!(fast, json!({"label": "m0"}));

    // Past the window: a task, which the client polls until it completes.
    let call = {
        let (client, ep, context) = (client.clone(), ep.clone(), context.clone());
        tokio::spawn(async move { client.call_tool(&ep, "slow_task", &json!({"label": "m1"}), &context).await })
    };
    eventually("the client polls its task", WITHIN, async || match others_counted(&scrape(&agent).await) {
        0 => Err("no tasks/get yet".to_owned()),
        _ => Ok(()),
    })
    .await;
    shared.release("m1");
    let value = tokio::time::timeout(WITHIN, call).await.expect("the call ends once its task does").unwrap().unwrap();
    assert_eq!(value, json!({"label": "m1"}));

    // A call dropped while its task runs (its deadline, its caller gone) cancels the task.
    let call = {
        let (client, ep, context) = (client.clone(), ep.clone(), context.clone());
        tokio::spawn(async move { client.call_tool(&ep, "slow_task", &json!({"label": "m2"}), &context).await })
    };
    let polled = others_counted(&scrape(&agent).await);
    eventually("the client polls its second task", WITHIN, async || match others_counted(&scrape(&agent).await) > polled {
        false => Err("no tasks/get yet".to_owned()),
        true => Ok(()),
    })
    .await;
    call.abort();
    let told = tokio::time::timeout(WITHIN, cancelled.recv()).await.expect("the task's handler is cancelled");
    assert_eq!(told.as_deref(), Some("m2"));
    agent.shutdown().await;
}

/// Calls through core's call policy, as an agent's dependency call does.
struct Mesh<'c>(&'c toolmesh_core::mcp::McpClient);

impl toolmesh_core::pipeline::Transport for Mesh<'_> {
    fn send<'a>(
        &'a self,
        provider: &'a toolmesh_core::registry_api::Provider,
        arguments: &'a Value,
        context: &'a toolmesh_core::context::RequestContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, toolmesh_core::client::RequestError>> + Send + 'a>> {
        Box::pin(self.0.call_provider(provider, arguments, context, toolmesh_core::mcp::ResultShape::Value))
    }
}

#[tokio::test]
async fn a_task_stays_with_the_provider_that_created_it_and_is_lost_with_it() {
    use toolmesh_core::pipeline::{Pipeline, Target};
    use toolmesh_core::registry_api::Provider;
    let pki = Pki::new();
    let (holder, holder_shared, _) = start_with(&pki, &[("health_port", "0")]).await;
    let (other, _, _) = start_with(&pki, &[("health_port", "0")]).await;
    let slow_task = tools().into_iter().find(|t| t.name == "slow_task").unwrap();
    let providers: Vec<Provider> =
        [&holder, &other].iter().map(|agent| Provider::of(agent.agent_id(), "tasker", agent.endpoint(), &slow_task)).collect();
    let client = toolmesh_core::mcp::McpClient::new(&pki.identity("caller")).unwrap();
    let context = toolmesh_core::context::RequestContext::default();
    let call = |label: &'static str| {
        let (client, providers, context) = (client.clone(), providers.clone(), context.clone());
        tokio::spawn(async move {
            let target = Target { key: "slow_task", capability: "slow_task", providers: &providers, timeout: WITHIN };
            Pipeline::new().call(&Mesh(&client), target, json!({"label": label}), &context).await
        })
    };

    // Status and result come from the provider that created the task, though another serves the tool.
    let first = call("p1");
    eventually("the caller polls the holder", WITHIN, async || match others_counted(&scrape(&holder).await) {
        0 => Err("no tasks/get yet".to_owned()),
        _ => Ok(()),
    })
    .await;
    holder_shared.release("p1");
    assert_eq!(tokio::time::timeout(WITHIN, first).await.unwrap().unwrap().unwrap(), json!({"label": "p1"}));
    assert_eq!(others_counted(&scrape(&other).await), 0, "the other provider saw no task method");
    assert_eq!(calls_counted(&scrape(&other).await, "slow_task", None), 0);

    // The holder goes away while the task runs: the call fails naming the lost task, and is not
    // made again at the other provider (the tool may have acted).
    let second = call("p2");
    let polled = others_counted(&scrape(&holder).await);
    eventually("the caller polls the second task", WITHIN, async || match others_counted(&scrape(&holder).await) > polled {
        false => Err("no tasks/get yet".to_owned()),
        true => Ok(()),
    })
    .await;
    holder.shutdown().await;
    let error = tokio::time::timeout(WITHIN, second).await.expect("the call ends once its holder is gone").unwrap().unwrap_err();
    assert!(error.message().contains("task") && error.message().contains("is lost"), "{error}");
    assert!(error.message().contains(holder.endpoint()), "{error}");
    let seen_by_other = scrape(&other).await;
    assert_eq!(
        calls_counted(&seen_by_other, "slow_task", None) + calls_counted(&seen_by_other, "slow_task", Some("cancelled")),
        0,
        "{seen_by_other}"
    );
    other.shutdown().await;
}

#[tokio::test]
async fn task_notification_streams_count_against_the_bound_on_listens_per_identity() {
    let pki = Pki::new();
    let (agent, shared, _) = start(&pki).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint().to_owned();
    let task = call(&client, &ep, "work", "l1").await["taskId"].as_str().unwrap().to_owned();
    let listen_to = |client: &HttpsClient, task: &str| {
        let (chunks, mut received) = mpsc::unbounded_channel::<bytes::Bytes>();
        let (client, ep) = (client.clone(), ep.clone());
        let params = negotiating(json!({"notifications": {"taskIds": [task]}}));
        let stream = tokio::spawn(async move { listen(&client, &ep, params, chunks).await });
        async move {
            let first = tokio::time::timeout(WITHIN, received.recv()).await.expect("the acknowledgement").expect("the stream is open");
            assert!(std::str::from_utf8(&first).unwrap().contains("acknowledged"));
            (stream, received)
        }
    };

    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(listen_to(&client, &task).await);
    }
    let seventeenth =
        modern(&client, &ep, "subscriptions/listen", None, negotiating(json!({"notifications": {"taskIds": [task.clone()]}})));
    let (status, refused) = tokio::time::timeout(WITHIN, seventeenth).await.expect("the 17th is refused, not opened");
    assert_eq!((status, refused["error"]["code"].as_i64()), (429, Some(-32600)), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("may hold 16 open"), "{refused}");
    // Another identity's streams are its own (it follows no task of the caller's, so its stream ends at once).
    let other = HttpsClient::new(&pki.identity("other")).unwrap();
    drop(listen_to(&other, &task).await);

    // The task ends, and with it every stream that followed it: their places are free again.
    shared.release("l1");
    for (stream, _) in open {
        tokio::time::timeout(WITHIN, stream).await.expect("a stream ends with its task").unwrap();
    }
    // A listen of the ended task is acknowledged, told the end, and closed at once.
    eventually("a listen is accepted again", WITHIN, async || {
        let params = negotiating(json!({"notifications": {"taskIds": [task.clone()]}}));
        match modern(&client, &ep, "subscriptions/listen", None, params).await {
            (200, _) => Ok(()),
            (status, answer) => Err(format!("{status}: {answer}")),
        }
    })
    .await;
    agent.shutdown().await;
}
