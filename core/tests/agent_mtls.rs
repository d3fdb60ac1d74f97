//! Agents serving and calling over real mTLS on loopback, in process.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::{RequestContext, TraceContext};
use toolmesh_core::mcp::McpClient;
use toolmesh_core::tls::Identity;
use toolmesh_core::ErrorKind;

async fn call(client: &McpClient, endpoint: &str, tool: &str, args: Value) -> Result<Value, toolmesh_core::Error> {
    client.call_tool(endpoint, tool, &args, &RequestContext::default()).await.map_err(|e| e.error)
}

#[tokio::test]
async fn a_tool_is_called_over_mtls() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = McpClient::new(&pki.identity("operator")).unwrap();
    assert_eq!(call(&client, agent.endpoint(), "add", json!({"a": 2, "b": 40})).await.unwrap(), json!(42));
    // The pooled connection is reused for the next calls.
    for i in 0..20 {
        assert_eq!(call(&client, agent.endpoint(), "add", json!({"a": i, "b": 1})).await.unwrap(), json!(i + 1));
    }
    agent.shutdown().await;
    agent.shutdown().await; // twice is harmless
}

#[tokio::test]
async fn a_dependency_on_the_same_agent_is_called_in_process() {
    let pki = Pki::new();
    // The agent listens on 127.0.0.1:P but advertises 127.0.0.2:P, where a relay counts what
    // dials it: a dependency on itself that went over the network would pass the relay.
    let files = pki.issue_with("calc", |r| r.ip_addresses.push("127.0.0.2".parse().unwrap()));
    let (agent, relay) = loop {
        let relay_listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = relay_listener.local_addr().unwrap().port();
        let slot = Arc::new(std::sync::OnceLock::new());
        let mut c = config("calc", &files);
        c.set("port", &port.to_string()).unwrap();
        c.set("advertise_host", "127.0.0.2").unwrap();
        match toolmesh_core::agent::Agent::start(c, standard_tools(), handler(slot.clone())).await {
            Ok(agent) => {
                let _ = slot.set(agent.clone());
                let relay = CountingRelay::spawn(relay_listener, agent.local_addr());
                break (agent, relay);
            }
            // P was free on 127.0.0.2 but not on 127.0.0.1: draw another.
            Err(e) if e.kind() == ErrorKind::AddressInUse => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(agent.endpoint(), format!("https://127.0.0.2:{}/mcp", relay.addr.port()));
    let client = McpClient::new(&pki.identity("operator")).unwrap();
    // The relay sees a call made to the advertised endpoint…
    assert_eq!(call(&client, agent.endpoint(), "add", json!({"a": 1, "b": 1})).await.unwrap(), json!(2));
    assert_eq!(relay.connections(), 1);
    // …but not the two calls of `add` that `sum3` makes, called on the listener itself.
    let listener = format!("https://{}/mcp", agent.local_addr());
    assert_eq!(call(&client, &listener, "sum3", json!({"a": 1, "b": 2, "c": 3})).await.unwrap(), json!(6));
    // Directly from the host side too, with the same checks as a remote call.
    assert_eq!(agent.call("sum3", 0, json!({"a": 4, "b": 5}), None).await.unwrap(), json!(9));
    assert_eq!(relay.connections(), 1, "a dependency on the agent itself went over the network");
    let e = agent.call("sum3", 0, json!({"a": "x", "b": 1}), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArguments);
    assert_eq!(e.message(), "tool 'add': argument 'a' must be of type integer, got string");
    let e = agent.call("sum3", 5, json!({}), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownDependency);
    agent.shutdown().await;
}

#[tokio::test]
async fn allow_listed_headers_and_the_trace_reach_the_handler() {
    let pki = Pki::new();
    let agent = start_agent("a", &pki.issue("a"), standard_tools(), |c| {
        c.set("propagate_headers", "x-tenant-id, x-audit-*").unwrap();
    })
    .await;
    let client = McpClient::new(&pki.identity("operator")).unwrap();
    let root = TraceContext::new_root();
    let ctx = RequestContext {
        headers: vec![("x-tenant-id".into(), "acme".into()), ("x-audit-user".into(), "u1".into()), ("x-secret".into(), "nope".into())],
        trace: Some(root.clone()),
        ..RequestContext::default()
    };
    let seen = client.call_tool(agent.endpoint(), "echo_context", &json!({}), &ctx).await.unwrap();
    assert_eq!(seen["headers"], json!({"x-audit-user": "u1", "x-tenant-id": "acme"}));
    assert_eq!(seen["trace_id"], json!(root.trace_id()));
    assert_ne!(seen["span_id"], json!(root.span_id()));
    agent.shutdown().await;
}

#[tokio::test]
async fn propagating_every_header_still_makes_a_working_chained_call() {
    // operator -> front (relay, propagates "*") -> back (echo_context, propagates "*"). With "*",
    // front's inbound request offers host, content-length, content-type, accept, mcp-* and
    // traceparent too; only the call's own headers may reach back.
    let pki = Pki::new();
    let back = start_agent("back", &pki.issue("back"), standard_tools(), |c| c.set("propagate_headers", "*").unwrap()).await;
    let onward = McpClient::new(&pki.identity("front")).unwrap();
    let relay = toolmesh_core::host::FnHandler(move |inv: toolmesh_core::host::ToolInvocation, done: toolmesh_core::host::Completion| {
        let onward = onward.clone();
        tokio::spawn(async move {
            let endpoint = inv.arguments["endpoint"].as_str().unwrap_or_default().to_owned();
            match onward.call_tool(&endpoint, "echo_context", &json!({}), &inv.context).await {
                Ok(v) => done.ok(json!({"front_saw": inv.context.headers, "back_saw": v})),
                Err(e) => done.err(e.error.to_string()),
            }
        });
    });
    let mut c = config("front", &pki.issue("front"));
    c.set("propagate_headers", "*").unwrap();
    let tools = vec![tool("relay", "relay", json!({"type": "object"}), json!([]))];
    let front = toolmesh_core::agent::Agent::start(c, tools, Arc::new(relay)).await.unwrap();

    let client = McpClient::new(&pki.identity("operator")).unwrap();
    let ctx = RequestContext {
        headers: vec![("x-tenant".into(), "acme".into()), ("content-length".into(), "1".into()), ("mcp-name".into(), "evil".into())],
        trace: Some(TraceContext::new_root()),
        ..RequestContext::default()
    };
    let seen = client.call_tool(front.endpoint(), "relay", &json!({"endpoint": back.endpoint()}), &ctx).await.map_err(|e| e.error).unwrap();
    assert_eq!(seen["front_saw"], json!([["x-tenant", "acme"]]), "{seen}");
    assert_eq!(seen["back_saw"]["headers"], json!({"x-tenant": "acme"}), "{seen}");
    assert_eq!(seen["back_saw"]["trace_id"], json!(ctx.trace.unwrap().trace_id()));
    front.shutdown().await;
    back.shutdown().await;
}

#[tokio::test]
async fn failures_have_stable_kinds_and_messages() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = McpClient::new(&pki.identity("operator")).unwrap();
    let e = call(&client, agent.endpoint(), "nope", json!({})).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::UnknownTool, "Unknown tool: nope"));
    let e = call(&client, agent.endpoint(), "fail", json!({})).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::ToolFailed, "tool 'fail' failed: boom"));
    let e = call(&client, agent.endpoint(), "add", json!({"a": 1})).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::InvalidArguments, "tool 'add': missing required argument(s): b"));
    agent.shutdown().await;
}

#[tokio::test]
async fn a_tool_error_reaches_the_caller_with_its_code_and_data_and_passes_through_a_relay() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = McpClient::new(&pki.identity("operator")).unwrap();
    let expected = |e: &toolmesh_core::Error| {
        assert_eq!(
            (e.kind(), e.message(), e.app_code(), e.data()),
            (ErrorKind::ToolError, "no such sku: X", Some("unknown_sku"), Some(&json!({"sku": "X"})))
        )
    };
    // Over the network, directly and through a handler that re-raises its dependency's error
    // (in process), and from the host side.
    expected(&call(&client, agent.endpoint(), "refuse", json!({})).await.unwrap_err());
    expected(&call(&client, agent.endpoint(), "refuse_via", json!({})).await.unwrap_err());
    expected(&agent.call("refuse_via", 0, json!({}), None).await.unwrap_err());
    // A code core refuses is the handler's bug: an unexpected failure that says why.
    let e = call(&client, agent.endpoint(), "refuse", json!({"code": "no spaces"})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ToolFailed);
    assert_eq!(
        e.message(),
        "tool 'refuse' failed: it raised a tool error whose code is refused: the error code \"no spaces\" is not valid: an application error code is 1 to 64 characters among A-Z a-z 0-9 _ . : - (e.g. \"unknown_sku\")"
    );
    // A client that does not read toolmesh's _meta still sees the code and the data.
    let https = HttpsClient::new(&pki.identity("operator")).unwrap();
    let (status, reply) = post(
        &https,
        agent.endpoint(),
        &[("mcp-protocol-version", "2025-06-18")],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refuse","arguments":{}}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let result = &reply["result"];
    assert_eq!(result["isError"], json!(true));
    assert_eq!(result["content"], json!([{"type": "text", "text": "unknown_sku: no such sku: X"}]));
    assert_eq!(result["structuredContent"], json!({"error": {"code": "unknown_sku", "message": "no such sku: X", "data": {"sku": "X"}}}));
    assert_eq!(
        result["_meta"]["dev.toolmesh/error"],
        json!({"code": 5005, "name": "TOOL_ERROR", "message": "no such sku: X", "appCode": "unknown_sku", "data": {"sku": "X"}})
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn a_dependency_timeout_is_reported_as_timeout() {
    let pki = Pki::new();
    let mut tools = standard_tools();
    tools.push(tool("wait", "wait", json!({"type": "object"}), json!(["slow"])));
    tools.last_mut().unwrap().timeout_ms = Some(200);
    let agent = start_agent("t", &pki.issue("t"), tools, |_| {}).await;
    let started = std::time::Instant::now();
    let e = agent.call("wait", 0, json!({"ms": 5000}), None).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::Timeout, "no answer from a provider of 'slow' within 200 ms"));
    assert!(started.elapsed() < Duration::from_secs(3));
    agent.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_a_foreign_ca_is_refused() {
    let mesh = Pki::new();
    let foreign = Pki::new();
    let agent = start_agent("b", &mesh.issue("b"), standard_tools(), |_| {}).await;
    // The intruder trusts the mesh CA (so it accepts the server) but holds a foreign certificate.
    let files = foreign.issue("intruder");
    let bundle = format!("{}{}", read(&files.ca), read(&mesh.path("ca.pem")));
    let intruder = Identity::from_pem(&read(&files.cert), &read(&files.key), &bundle).unwrap();
    let e = call(&McpClient::new(&intruder).unwrap(), agent.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerRejectedCertificate, "{e}");
    // A client that trusts only its own CA refuses the mesh server.
    let e = call(&McpClient::new(&foreign.identity("other")).unwrap(), agent.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerCertificateUntrusted, "{e}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_not_naming_the_host_fails_hostname_verification() {
    let pki = Pki::new();
    let files = pki.issue_with("elsewhere", |r| {
        r.dns_names = vec!["elsewhere.example".into()];
        r.ip_addresses.clear();
    });
    let agent = start_agent("elsewhere", &files, standard_tools(), |_| {}).await;
    let e = call(&McpClient::new(&pki.identity("operator")).unwrap(), agent.endpoint(), "add", json!({"a": 1, "b": 2})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerHostnameMismatch, "{e}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let identity = pki.identity("operator");
    let config = rustls::ClientConfig::builder_with_provider(toolmesh_core::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(identity.roots())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(agent.local_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let outcome = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
        tls.write_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n").await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map(|_| buf)
    }
    .await;
    let err = outcome.expect_err("the server must not answer a client without a certificate");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_request_gets_a_clear_answer() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(agent.local_addr()).await.unwrap();
    tcp.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.ends_with(toolmesh_core::server::PLAINTEXT_ANSWER), "{answer}");
    agent.shutdown().await;
}

/// Raw JSON-RPC over the pooled mTLS client, for protocol-level checks.
async fn post(client: &HttpsClient, endpoint: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut all = vec![("content-type", "application/json"), ("accept", "application/json, text/event-stream")];
    all.extend_from_slice(headers);
    send(client, "POST", endpoint, &all, body.to_owned()).await
}

/// A request with exactly `headers` (beside those hyper adds: host, content-length).
async fn send(client: &HttpsClient, method: &str, endpoint: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> (u16, Value) {
    let mut request = http::Request::builder().method(method).uri(endpoint);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client.send(request.body(Full::new(body.into())).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(response.body()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn both_protocol_eras_are_served_statelessly_with_the_spec_status_codes() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let modern = [("mcp-protocol-version", "2026-07-28")];

    // Legacy: initialize echoes a supported version, then tools/list and tools/call without a session.
    let (s, v) = post(&client, ep, &[], r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#).await;
    assert_eq!((s, v["result"]["protocolVersion"].clone()), (200, json!("2025-06-18")));
    let (s, _) =
        post(&client, ep, &[("mcp-protocol-version", "2025-06-18")], r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    assert_eq!(s, 202);
    let (_, v) = post(&client, ep, &[("mcp-protocol-version", "2025-06-18")], r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).await;
    let names: Vec<&str> = v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["add", "echo_context", "fail", "refuse", "refuse_via", "slow", "sum3"]);
    assert_eq!(v["result"]["tools"][0]["inputSchema"], ab_schema());
    let (_, v) =
        post(&client, ep, &[], r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#).await;
    assert_eq!(v["result"]["structuredContent"], json!({"result": 5}));
    assert_eq!(v["result"]["content"][0]["text"], json!("5"));
    let (_, v) = post(&client, ep, &[], r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#).await;
    assert_eq!(v["result"], json!({}));

    // Modern: server/discover, header validation, _meta requirements.
    let (s, v) = post(
        &client,
        ep,
        &[modern[0], ("mcp-method", "server/discover")],
        &format!(r#"{{"jsonrpc":"2.0","id":5,"method":"server/discover","params":{{{meta}}}}}"#),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["result"]["resultType"], json!("complete"));
    assert_eq!(v["result"]["supportedVersions"][0], json!("2026-07-28"));
    assert_eq!(v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], json!("b"));
    let call = format!(r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":1}},{meta}}}}}"#);
    let (s, v) = post(&client, ep, &[modern[0], ("mcp-method", "tools/call"), ("mcp-name", "other")], &call).await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32020)));
    let (s, v) = post(&client, ep, &[modern[0], ("mcp-method", "tools/call"), ("mcp-name", "add")], &call).await;
    assert_eq!((s, v["result"]["structuredContent"].clone()), (200, json!(2)));
    let (s, v) =
        post(&client, ep, &[modern[0], ("mcp-method", "tools/list")], r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}"#)
            .await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32602)));
    let (s, v) = post(&client, ep, &[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")],
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#).await;
    assert_eq!((s, v["error"]["code"].clone(), v["error"]["data"]["requested"].clone()), (400, json!(-32022), json!("2099-01-01")));
    let (s, v) = post(
        &client,
        ep,
        &[modern[0], ("mcp-method", "nope/nope")],
        &format!(r#"{{"jsonrpc":"2.0","id":9,"method":"nope/nope","params":{{{meta}}}}}"#),
    )
    .await;
    assert_eq!((s, v["error"]["code"].clone()), (404, json!(-32601)));

    // Both eras: malformed input.
    let (s, v) = post(&client, ep, &[], "{not json").await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32700)));
    let (s, v) = post(&client, ep, &[], r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!((s, v["error"]["code"].clone()), (400, json!(-32600)));
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (s, v) = post(&client, ep, &[("origin", "https://evil.example")], ping).await;
    assert_eq!((s, v["error"]["code"].clone()), (403, json!(-32600)));
    let (s, _) = post(&client, ep, &[("origin", "http://127.0.0.1:9")], ping).await;
    assert_eq!(s, 200);

    // Both eras: the HTTP rules (§7.3). Accept must cover JSON and SSE; wildcards count.
    let json_type = ("content-type", "application/json");
    for accept in [None, Some("application/json"), Some("text/event-stream"), Some("application/json, text/event-stream;q=0")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().chain([json_type]).collect();
        let (s, v) = send(&client, "POST", ep, &headers, ping).await;
        assert_eq!((s, v["error"]["code"].clone()), (406, json!(-32600)), "{accept:?}");
    }
    for accept in ["*/*", "application/*, text/*", "text/event-stream, application/json"] {
        let (s, v) = send(&client, "POST", ep, &[("accept", accept), json_type], ping).await;
        assert_eq!((s, v["result"].clone()), (200, json!({})), "{accept}");
    }
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let headers: Vec<(&str, &str)> = content_type.map(|t| ("content-type", t)).into_iter().chain([("accept", "*/*")]).collect();
        let (s, v) = send(&client, "POST", ep, &headers, ping).await;
        assert_eq!((s, v["error"]["code"].clone()), (415, json!(-32600)), "{content_type:?}");
    }
    // A body over the limit is refused (413) and one just at it is read (and is then bad JSON-RPC).
    let limit = toolmesh_core::mcp::server::MAX_BODY_BYTES;
    let (s, _) = post(&client, ep, &[], &" ".repeat(limit + 1)).await;
    assert_eq!(s, 413);
    let (s, v) = post(&client, ep, &[], &format!("{ping}{}", " ".repeat(limit - ping.len()))).await;
    assert_eq!((s, v["result"].clone()), (200, json!({})));
    // Stateless: no GET stream and no session to DELETE.
    for method in ["GET", "DELETE", "PUT"] {
        let (s, _) = send(&client, method, ep, &[("accept", "application/json, text/event-stream")], Bytes::new()).await;
        assert_eq!(s, 405, "{method}");
    }
    agent.shutdown().await;
}

/// A P-256 key encrypted with `openssl pkey -aes256` (PKCS#8), and with `-traditional` (PEM headers).
const ENCRYPTED_PKCS8_KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjFhfp3O/H+bwICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEELSSk3/v7NqEQgqRZZMWrSkEgZBS
yTLuaPWx3PXBY7VQZ0cNK9UR3VhRF+7nsJ7bVwDHX/ipe3EQCKFeiTm0y0ns/vzb
ivZb8i8ULVgLRUjCNVZcRlYSYCZfS64solJpX/lUnszNJwRDGzonAA3WDraitFHc
KIuqt+HNRovfXc4/21P8b1FN1uPKcD3uSCDfLwIcL5zU2xUAvwRl8uz1kf5oMYo=
-----END ENCRYPTED PRIVATE KEY-----\n";
const ENCRYPTED_LEGACY_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-256-CBC,01C69C7D4DF483CABFAA763CE2EC0A72

O1FAuyUmVsQr5oGmgK4xPBKRmCIdo+HsD5aZt1bLpm7yt83yEhLPMuZTyzC/Dp4r
FlngHOXGrGFNOkHZanVOZjcbmY/zU7r67odkVIx7PqNjlGB1435N9BjLYqE2a0Io
y4RyCKFiYuHY5msJeJ+FV+m17vUuQNnMWPAwZ4mnmM8=
-----END EC PRIVATE KEY-----\n";

#[tokio::test]
async fn bad_identities_stop_start_up_with_a_message_naming_the_fix() {
    let pki = Pki::new();
    let other = Pki::new();
    let start = |files: toolmesh_core::tls::TlsFiles| async move {
        let slot = Arc::new(std::sync::OnceLock::new());
        toolmesh_core::agent::Agent::start(config("x", &files), standard_tools(), handler(slot)).await.err().expect("start must fail")
    };
    let good = pki.issue("good");
    let mut missing = good.clone();
    missing.cert = pki.path("missing.pem");
    let e = start(missing).await;
    assert_eq!(e.kind(), ErrorKind::CertificateFile);
    assert!(e.message().contains("missing.pem") && e.message().contains("TOOLMESH_TLS_CERT"), "{e}");

    // A key or certificate that is missing, a directory, garbage or encrypted: the file, the
    // variable and the fix are named.
    let mut missing_key = good.clone();
    missing_key.key = pki.path("missing.key");
    let dir = pki.path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let mut dir_key = good.clone();
    dir_key.key = dir.clone();
    let mut dir_cert = good.clone();
    dir_cert.cert = dir.clone();
    for (files, names) in [
        (missing_key, ["missing.key", "TOOLMESH_TLS_KEY"]),
        (dir_key, ["a-directory", "TOOLMESH_TLS_KEY"]),
        (dir_cert, ["a-directory", "TOOLMESH_TLS_CERT"]),
    ] {
        let e = start(files).await;
        assert_eq!(e.kind(), ErrorKind::CertificateFile, "{e}");
        assert!(names.iter().all(|n| e.message().contains(n)) && e.message().contains("cannot read the TLS"), "{e}");
    }
    let with_key = |name: &str, pem: &str| {
        let mut files = good.clone();
        files.key = pki.path(name);
        std::fs::write(&files.key, pem).unwrap();
        files
    };
    let e = start(with_key("garbage.key", "not a key at all\n")).await;
    assert_eq!(e.kind(), ErrorKind::CertificateFile, "{e}");
    let garbage = pki.path("garbage.key").display().to_string();
    assert!(e.message().starts_with(&format!("the key file '{garbage}' holds no PEM private key")), "{e}");
    assert!(e.message().contains("point TOOLMESH_TLS_KEY") && e.message().contains("toolmesh certs issue"), "{e}");
    for (name, pem) in [("pkcs8-encrypted.key", ENCRYPTED_PKCS8_KEY), ("legacy-encrypted.key", ENCRYPTED_LEGACY_KEY)] {
        let e = start(with_key(name, pem)).await;
        let path = pki.path(name).display().to_string();
        assert_eq!(e.kind(), ErrorKind::CertificateFile, "{e}");
        assert_eq!(
            e.message(),
            format!(
                "the key file '{path}' is an encrypted private key; toolmesh needs it unencrypted (decrypt it with \
                 `openssl pkey -in {path} -out {path}.plain`, keep that file readable by the agent only, and point TOOLMESH_TLS_KEY at it)"
            )
        );
    }

    let mut mismatched = good.clone();
    mismatched.key = pki.issue("another").key;
    let e = start(mismatched).await;
    assert_eq!(e.kind(), ErrorKind::KeyMismatch, "{e}");
    assert!(e.message().contains("does not belong to the certificate"), "{e}");

    let mut foreign = other.issue("foreign");
    foreign.ca = good.ca.clone();
    let e = start(foreign).await;
    assert_eq!(e.kind(), ErrorKind::CertificateUntrusted, "{e}");
    assert!(e.message().contains("is not signed by the CA"), "{e}");

    let e = start(pki.issue_expired("old")).await;
    assert_eq!(e.kind(), ErrorKind::CertificateExpired, "{e}");
    assert!(e.message().contains("expired at"), "{e}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let slot = Arc::new(std::sync::OnceLock::new());
    let mut c = config("x", &good);
    c.set("port", &port.to_string()).unwrap();
    let e = toolmesh_core::agent::Agent::start(c, standard_tools(), handler(slot)).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::AddressInUse, "{e}");
    assert!(e.message().contains("already in use"), "{e}");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = McpClient::new(&pki.identity("operator")).unwrap();
    let endpoint = agent.endpoint().to_owned();
    let in_flight = tokio::spawn(async move { call(&client, &endpoint, "slow", json!({"ms": 300, "tag": "in flight at shutdown"})).await });
    until_slow_call_started("in flight at shutdown").await;
    agent.shutdown().await;
    assert_eq!(in_flight.await.unwrap().unwrap(), json!("done"));
}

/// Sends each attempt of the pipeline as a real MCP call over mTLS.
struct Mcp(McpClient);

impl toolmesh_core::pipeline::Transport for Mcp {
    fn send<'a>(
        &'a self,
        provider: &'a toolmesh_core::registry_api::Provider,
        arguments: &'a Value,
        context: &'a RequestContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, toolmesh_core::client::RequestError>> + Send + 'a>> {
        Box::pin(self.0.call_provider(provider, arguments, context, toolmesh_core::mcp::ResultShape::Value))
    }
}

fn provider_of(agent: &toolmesh_core::agent::Agent, name: &str) -> toolmesh_core::registry_api::Provider {
    serde_json::from_value(json!({
        "agent_id": name, "agent_name": name, "endpoint": agent.endpoint(),
        "tool": "add", "capability": "add", "version": "1.0.0",
    }))
    .unwrap()
}

#[tokio::test]
async fn a_provider_whose_certificate_fails_verification_is_skipped_like_an_unreachable_one() {
    let mesh = Pki::new();
    let foreign = Pki::new();
    let healthy = start_agent("calc", &mesh.issue("calc"), standard_tools(), |_| {}).await;
    // An impostor with a foreign CA's certificate (it trusts the mesh CA, so it serves mesh callers).
    let mut impostor_files = foreign.issue("calc");
    let bundle = foreign.path("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", read(&impostor_files.ca), read(&mesh.path("ca.pem")))).unwrap();
    impostor_files.ca = bundle;
    let impostor = start_agent("calc", &impostor_files, standard_tools(), |_| {}).await;
    // A mesh certificate that does not name the host it is reached at.
    let elsewhere = mesh.issue_with("elsewhere", |r| {
        r.dns_names = vec!["elsewhere.example".into()];
        r.ip_addresses.clear();
    });
    let misnamed = start_agent("elsewhere", &elsewhere, standard_tools(), |_| {}).await;

    let providers = [provider_of(&impostor, "impostor"), provider_of(&misnamed, "misnamed"), provider_of(&healthy, "calc")];
    let transport = Mcp(McpClient::new(&mesh.identity("caller")).unwrap());
    let pipeline = toolmesh_core::pipeline::Pipeline::new();
    for i in 0..12 {
        let target =
            toolmesh_core::pipeline::Target { key: "add", capability: "add", providers: &providers, timeout: Duration::from_secs(10) };
        let answer = pipeline.call(&transport, target, json!({"a": i, "b": 1}), &RequestContext::default()).await;
        assert_eq!(answer.unwrap(), json!(i + 1), "call {i} must reach the healthy provider");
    }
    let counts = pipeline.failovers();
    assert!(counts.refused_certificate >= 2, "each refused provider is counted: {counts:?}");
    assert_eq!(counts.unreachable, 0, "{counts:?}");

    // With only refused providers, the call fails with the first refusal's code, no retry loop.
    let refused_only = [provider_of(&impostor, "impostor"), provider_of(&misnamed, "misnamed")];
    let target =
        toolmesh_core::pipeline::Target { key: "bad", capability: "add", providers: &refused_only, timeout: Duration::from_secs(10) };
    let e = pipeline.call(&transport, target, json!({"a": 1, "b": 1}), &RequestContext::default()).await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::PeerCertificateUntrusted | ErrorKind::PeerHostnameMismatch), "{e}");
    for agent in [healthy, impostor, misnamed] {
        agent.shutdown().await;
    }
}
