//! Authorization at the callee, over real mTLS between real agents: calls and lists decided by
//! policy, the origin of a chain across hops (forged and widened origins refused), rate limits,
//! and a policy change under load.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::context::RequestContext;
use toolmesh_core::error::ErrorKind;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::policy::Policy;
use toolmesh_core::tls::Identity;

const TD: &str = "spiffe://toolmesh.local/agent";

async fn call(client: &McpClient, endpoint: &str, tool: &str, arguments: Value) -> Result<Value, toolmesh_core::Error> {
    client.call_tool(endpoint, tool, &arguments, &RequestContext::default()).await.map_err(|e| e.error)
}

fn policy_file(pki: &Pki, name: &str, yaml: &str) -> String {
    let path = pki.path(name);
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_owned()
}

const FRONT_ADDS: &str = r#"
apiVersion: toolmesh.dev/v1alpha1
kind: AccessPolicy
default: deny
rules:
  - name: front-adds
    source: { agents: [front] }
    target: { tools: [add] }
"#;

#[tokio::test]
async fn a_callee_decides_calls_and_lists_by_the_callers_certificate() {
    let pki = Pki::new();
    let file = policy_file(&pki, "policy.yaml", FRONT_ADDS);
    let calc = start_agent("calc", &pki.issue("calc"), standard_tools(), |c| c.set("policy_file", &file).unwrap()).await;
    let front = McpClient::new(&pki.identity("front")).unwrap();
    let intruder = McpClient::new(&pki.identity("intruder")).unwrap();

    assert_eq!(call(&front, calc.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap(), json!(3));
    let denied = call(&front, calc.endpoint(), "echo_context", json!({})).await.unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::CallDenied);
    assert_eq!(
        denied.message(),
        format!("{TD}/front may not call tool 'echo_context' of agent 'calc' (policy rule 'default: deny'); an operator can allow it with a rule (toolmesh policy apply)")
    );
    // A valid mesh certificate is not enough: the compromised agent's calls are refused.
    let e = call(&intruder, calc.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CallDenied);

    // tools/list shows each caller what it may call, and nothing else.
    let names = |tools: Vec<Value>| tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(front.list_tools(calc.endpoint(), &RequestContext::default()).await.unwrap()), ["add"]);
    assert!(intruder.list_tools(calc.endpoint(), &RequestContext::default()).await.unwrap().is_empty());
    calc.shutdown().await;
}

#[tokio::test]
async fn without_a_policy_the_mesh_may_call_everything() {
    let pki = Pki::new();
    let calc = start_agent("calc", &pki.issue("calc"), standard_tools(), |_| {}).await;
    let anyone = McpClient::new(&pki.identity("anyone")).unwrap();
    assert_eq!(call(&anyone, calc.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap(), json!(3));
    assert_eq!(anyone.list_tools(calc.endpoint(), &RequestContext::default()).await.unwrap().len(), standard_tools().len());
    calc.shutdown().await;
}

/// An agent whose `relay` tool calls `echo_context` at `endpoint` with the context it runs in.
async fn relay_agent(pki: &Pki, name: &str) -> Agent {
    let onward = McpClient::new(&pki.identity(name)).unwrap();
    let relay = FnHandler(move |inv: ToolInvocation, done: Completion| {
        let onward = onward.clone();
        tokio::spawn(async move {
            let endpoint = inv.arguments["endpoint"].as_str().unwrap_or_default().to_owned();
            match onward.call_tool(&endpoint, "echo_context", &json!({}), &inv.context).await {
                Ok(v) => done.ok(v),
                Err(e) => {
                    done.complete(Err(toolmesh_core::host::HostError { message: e.error.message().into(), mesh_error: Some(e.error) }))
                }
            }
        });
    });
    let tools = vec![tool("relay", "relay", json!({"type": "object"}), json!([]))];
    Agent::start(config(name, &pki.issue(name)), tools, Arc::new(relay)).await.unwrap()
}

#[tokio::test]
async fn the_origin_of_a_chain_decides_at_the_end_of_it() {
    // bank pays only for billing acting on behalf of frontdoor; billing alone, or on behalf of
    // anyone else, may not.
    let pki = Pki::new();
    let file = policy_file(
        &pki,
        "bank.yaml",
        r#"
default: deny
rules:
  - name: pay-for-frontdoor
    source: { agents: [billing] }
    origin: { agents: [frontdoor] }
    target: { tools: [echo_context] }
"#,
    );
    let bank = start_agent("bank", &pki.issue("bank"), standard_tools(), |c| c.set("policy_file", &file).unwrap()).await;
    let billing = relay_agent(&pki, "billing").await;
    let to_bank = json!({"endpoint": bank.endpoint()});

    let frontdoor = McpClient::new(&pki.identity("frontdoor")).unwrap();
    let seen = call(&frontdoor, billing.endpoint(), "relay", to_bank.clone()).await.unwrap();
    assert_eq!(seen["origin"], json!({"identity": format!("{TD}/frontdoor"), "signed": true}));

    let mallory = McpClient::new(&pki.identity("mallory")).unwrap();
    let e = call(&mallory, billing.endpoint(), "relay", to_bank.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CallDenied, "{e}");
    assert!(e.message().contains(&format!("{TD}/billing on behalf of {TD}/mallory may not call tool 'echo_context'")), "{e}");

    // billing on its own behalf.
    let as_billing = McpClient::new(&pki.identity("billing")).unwrap();
    assert_eq!(call(&as_billing, bank.endpoint(), "echo_context", json!({})).await.unwrap_err().kind(), ErrorKind::CallDenied);
    bank.shutdown().await;
    billing.shutdown().await;
}

#[tokio::test]
async fn a_forged_origin_is_refused_and_a_vouched_one_grants_nothing() {
    use toolmesh_core::origin::Origins;
    let pki = Pki::new();
    let file = policy_file(&pki, "bank2.yaml", "default: deny\nrules:\n  - name: pay-for-frontdoor\n    source: { agents: [billing] }\n    origin: { agents: [frontdoor] }\n    target: { tools: [echo_context] }\n");
    let bank = start_agent("bank", &pki.issue("bank"), standard_tools(), |c| c.set("policy_file", &file).unwrap()).await;
    let billing_identity = pki.identity("billing");
    let billing = Origins::new(billing_identity.clone());
    let http = toolmesh_core::client::HttpsClient::new(&billing_identity).unwrap();

    let send = |origin: String| {
        let (http, endpoint) = (http.clone(), bank.endpoint().to_owned());
        async move { call_with_origin(&http, &endpoint, &origin).await["_meta"]["dev.toolmesh/error"].clone() }
    };
    // billing signs a first link claiming to be frontdoor.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forged = billing.sign(format!("{TD}/frontdoor"), format!("{TD}/frontdoor"), now + 30, vec!["*".into()], "").unwrap();
    let forged = base64_url(&serde_json::to_vec(&[forged]).unwrap());
    let error = send(forged).await;
    assert_eq!(error["code"], json!(7003), "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&format!("last signed by {TD}/frontdoor, but the caller is {TD}/billing")), "{error}");
    // billing vouches that frontdoor called it: the origin is frontdoor, but vouched grants nothing.
    let vouched = billing.outbound(None, Some(&format!("{TD}/frontdoor"))).unwrap().to_str().unwrap().to_owned();
    let error = send(vouched).await;
    assert_eq!(error["code"], json!(7001), "{error}");
    // Garbage in the header.
    assert_eq!(send("e30".into()).await["code"], json!(7003));
    bank.shutdown().await;
}

/// Over real mTLS: the origin header leaves out its newest link's certificate, so the callee
/// verifies that link with the certificate of the connection it came on. The same header sent
/// by another certificate under the same name (a stolen header, or a replica's) is refused,
/// also once the first sender's header has been verified and cached.
#[tokio::test]
async fn a_header_without_its_certificate_holds_only_on_its_signers_connection() {
    use toolmesh_core::origin::Origins;
    let pki = Pki::new();
    let bank = start_agent("bank", &pki.issue("bank"), standard_tools(), |_| {}).await;
    let billing = pki.identity("billing");
    let replica = Identity::load(&pki.issue_with("billing-replica", |request| {
        request.common_name = "billing".into();
        request.uris = vec![format!("{TD}/billing")];
    }))
    .unwrap();
    assert_eq!(replica.name(), billing.name());
    let header = Origins::new(billing.clone()).outbound(None, None).unwrap().to_str().unwrap().to_owned();
    let send = |identity: &Arc<Identity>| {
        let http = toolmesh_core::client::HttpsClient::new(identity).unwrap();
        let (endpoint, header) = (bank.endpoint().to_owned(), header.clone());
        async move { call_with_origin(&http, &endpoint, &header).await }
    };
    for _ in 0..2 {
        let answered = send(&billing).await;
        assert_eq!(answered["isError"], json!(false), "{answered}");
        let refused = &send(&replica).await["_meta"]["dev.toolmesh/error"];
        assert_eq!(refused["code"], json!(7003), "{refused}");
        assert!(refused["message"].as_str().unwrap().contains("the signature does not verify"), "{refused}");
    }
    bank.shutdown().await;
}

/// A `tools/call` of `echo_context` at `endpoint` carrying the origin chain `origin`, sent as it
/// is written (not as an agent would build it); the reply's `result`.
async fn call_with_origin(http: &toolmesh_core::client::HttpsClient, endpoint: &str, origin: &str) -> Value {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo_context","arguments":{}}}"#;
    let request = http::Request::post(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("toolmesh-origin", origin)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = http.send(request).await.map_err(|e| e.error).unwrap();
    serde_json::from_slice::<Value>(response.body()).unwrap()["result"].clone()
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_delegation_reaches_no_further_than_its_scope() {
    use toolmesh_core::origin::Origins;
    let pki = Pki::new();
    let bank = start_agent("bank", &pki.issue("bank"), standard_tools(), |_| {}).await;
    let front_identity = pki.identity("front");
    let front = Origins::new(front_identity.clone());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let narrow = front.sign(format!("{TD}/front"), format!("{TD}/front"), now + 30, vec!["add".into()], "").unwrap();
    let header = base64_url(&serde_json::to_vec(&[narrow]).unwrap());
    let http = toolmesh_core::client::HttpsClient::new(&front_identity).unwrap();
    let reply = call_with_origin(&http, bank.endpoint(), &header).await;
    let error = &reply["_meta"]["dev.toolmesh/error"];
    assert_eq!(error["code"], json!(7003), "{reply}");
    assert!(error["message"].as_str().unwrap().contains("reaches only [add]; tool 'echo_context' is outside it"), "{reply}");
    bank.shutdown().await;
}

#[tokio::test]
async fn limits_answer_rate_limited_with_when_to_retry() {
    let pki = Pki::new();
    let file = policy_file(
        &pki,
        "limits.yaml",
        "rules:\n  - name: slow-down\n    target: { tools: [add] }\n    limits: { ratePerSecond: 1, burst: 2 }\n",
    );
    let calc = start_agent("calc", &pki.issue("calc"), standard_tools(), |c| c.set("policy_file", &file).unwrap()).await;
    let front = McpClient::new(&pki.identity("front")).unwrap();
    let other = McpClient::new(&pki.identity("other")).unwrap();
    for _ in 0..2 {
        call(&front, calc.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap();
    }
    let e = call(&front, calc.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.message().contains("more than 1 times per second, the rate policy rule 'slow-down' allows; retry after"), "{e}");
    // Per caller: another identity has its own budget.
    call(&other, calc.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap();
    calc.shutdown().await;
}

#[tokio::test]
async fn revoking_an_allow_rule_under_load_stops_new_calls_and_fails_no_allowed_one() {
    let pki = Pki::new();
    let calc = start_agent("calc", &pki.issue("calc"), standard_tools(), |_| {}).await;
    calc.replace_policy(Policy::parse(FRONT_ADDS, 1).unwrap());
    let front = McpClient::new(&pki.identity("front")).unwrap();
    let revoked_at = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
    // How many workers had a call allowed: the revocation comes once each has.
    let allowed_workers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (front, endpoint, revoked_at, allowed_workers) =
            (front.clone(), calc.endpoint().to_owned(), revoked_at.clone(), allowed_workers.clone());
        workers.push(tokio::spawn(async move {
            let (mut allowed, mut denied) = (0, 0);
            loop {
                let started = tokio::time::Instant::now();
                let result = call(&front, &endpoint, "add", json!({"a": 1, "b": 2})).await;
                let revoked_before_start = revoked_at.lock().unwrap().is_some_and(|at| at <= started);
                match result {
                    Ok(v) => {
                        assert_eq!(v, json!(3));
                        assert!(!revoked_before_start, "a call started after the revocation was allowed");
                        if allowed == 0 {
                            allowed_workers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        allowed += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::CallDenied, "an allowed call failed: {e}");
                        denied += 1;
                        if denied == 20 {
                            return (allowed, denied);
                        }
                    }
                }
            }
        }));
    }
    wait_until("each worker had a call allowed before the revocation", Duration::from_secs(10), || {
        allowed_workers.load(std::sync::atomic::Ordering::Relaxed) == 4
    })
    .await;
    calc.replace_policy(Policy::parse("default: deny", 2).unwrap());
    *revoked_at.lock().unwrap() = Some(tokio::time::Instant::now());
    for worker in workers {
        let (allowed, denied) = worker.await.unwrap();
        assert!(allowed > 0 && denied == 20, "allowed {allowed}, denied {denied}");
    }
    calc.shutdown().await;
}
