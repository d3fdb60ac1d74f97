//! Bounded fuzzing of the MCP request reader (`McpServer::handle_message`, which turns a POST body
//! into a JSON-RPC request and answers it), run by `cargo test` in CI in a few seconds: arbitrary
//! bytes, and JSON-RPC envelopes built from odd member values then damaged byte by byte. Every
//! body gets an answer, never a panic: 202 with no body (a notification or a response), or a
//! JSON-RPC 2.0 response object carrying the request's id (or null) and exactly one of `result`
//! and `error`; a body that is not JSON is a parse error (-32700, HTTP 400).
//!
//! A longer run: `TOOLMESH_FUZZ_CASES=100000 cargo test -p toolmesh-core --test fuzz_mcp_reader`.

use http::HeaderMap;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
use toolmesh_core::authorize::Gate;
use toolmesh_core::context::HeaderAllowList;
use toolmesh_core::host::{Completion, FnHandler, LocalTools, ToolInvocation};
use toolmesh_core::mcp::{McpServer, ServerInfo, HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, MODERN_VERSION};
use toolmesh_core::policy::Policy;
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::server::PeerInfo;
use toolmesh_core::tls::Identity;

fn cases(default: u32) -> u32 {
    std::env::var("TOOLMESH_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn server() -> McpServer {
    let tool = |name: &str, schema: Value| {
        let mut tool: ToolInfo = serde_json::from_value(json!({"name": name, "capability": name})).expect("tool");
        tool.input_schema = schema;
        tool
    };
    let tools = vec![
        tool("echo", json!({"type": "object"})),
        tool("add", json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})),
    ];
    let handler = FnHandler(|call: ToolInvocation, done: Completion| match call.tool.as_str() {
        "echo" => done.ok(call.arguments),
        _ => done.err("refused"),
    });
    let ca = CertificateAuthority::generate("fuzz CA", 1).expect("CA");
    let issued = ca.issue(&LeafRequest::new("fuzz", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).expect("certificate");
    let identity = Identity::from_pem(&issued.cert_pem, &issued.key_pem, ca.cert_pem()).expect("identity");
    let gate = Arc::new(Gate::new(identity, "fuzz", Policy::allow_mesh()));
    McpServer::new(
        ServerInfo { name: "fuzz".into(), version: "1.0.0".into() },
        Arc::new(LocalTools::new(tools, Arc::new(handler))),
        HeaderAllowList::default(),
        gate,
    )
}

/// Odd JSON values for any member.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        ".{0,12}".prop_map(Value::String),
        select(vec![
            "2.0",
            "tools/call",
            "tools/list",
            "initialize",
            "ping",
            "server/discover",
            "echo",
            "add",
            MODERN_VERSION,
            "\u{0}",
            "\u{1b}[2J\n"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON-RPC envelope: mostly well-formed members, each sometimes replaced by an odd value.
fn envelope() -> impl Strategy<Value = Value> {
    let member = |likely: Value| prop_oneof![4 => Just(Some(likely)), 1 => odd_value().prop_map(Some), 1 => Just(None)];
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "dev.toolmesh/deadlineMs": 5000,
    });
    let params = (member(json!("echo")), member(json!({"a": 1, "b": 2})), member(meta), member(json!(null)), member(json!("2025-06-18")))
        .prop_map(|(name, arguments, meta, cursor, version)| {
            let mut p = Map::new();
            for (key, value) in
                [("name", name), ("arguments", arguments), ("_meta", meta), ("cursor", cursor), ("protocolVersion", version)]
            {
                if let Some(value) = value {
                    p.insert(key.to_owned(), value);
                }
            }
            Value::Object(p)
        });
    let method = select(vec!["tools/call", "tools/list", "initialize", "ping", "server/discover", "notifications/initialized", "nope"]);
    (
        member(json!("2.0")),
        member(json!(1)),
        method,
        prop_oneof![4 => params.prop_map(Some), 1 => odd_value().prop_map(Some), 1 => Just(None)],
        proptest::option::of((".{1,6}", odd_value())),
    )
        .prop_map(|(jsonrpc, id, method, params, extra)| {
            let mut e = Map::new();
            if let Some(v) = jsonrpc {
                e.insert("jsonrpc".into(), v);
            }
            if let Some(v) = id {
                e.insert("id".into(), v);
            }
            e.insert("method".into(), json!(method));
            if let Some(v) = params {
                e.insert("params".into(), v);
            }
            if let Some((k, v)) = extra {
                e.insert(k, v);
            }
            Value::Object(e)
        })
}

/// Damage to a serialized body: none, a truncation, a flipped, inserted or removed byte, or a
/// member repeated.
fn damaged(body: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = body.len();
    (0..6u8, 0..=len, any::<u8>()).prop_map(move |(how, at, byte)| {
        let mut b = body.clone();
        let at = at.min(b.len());
        match how {
            0 | 1 => {}
            2 => b.truncate(at),
            3 if at < b.len() => b[at] ^= byte | 1,
            4 => b.insert(at, byte),
            5 if at < b.len() => {
                b.remove(at);
            }
            _ => {
                // A member repeated: `{"id":1,` prefixed to the object.
                if b.first() == Some(&b'{') {
                    b.splice(1..1, br#""id":2,"#.iter().copied());
                }
            }
        }
        b
    })
}

/// The headers a request travels with: none (legacy), or the modern ones for a tool call.
fn headers(modern: bool) -> HeaderMap {
    let mut map = HeaderMap::new();
    if modern {
        map.insert(HEADER_PROTOCOL_VERSION, MODERN_VERSION.parse().expect("header"));
        map.insert(HEADER_METHOD, "tools/call".parse().expect("header"));
        map.insert(HEADER_NAME, "echo".parse().expect("header"));
    }
    map
}

/// Sends `body`, checks the answer's shape; answers the status and the parsed body.
fn check(runtime: &tokio::runtime::Runtime, server: &McpServer, body: &[u8], modern: bool) -> Result<(u16, Value), TestCaseError> {
    let peer = PeerInfo::new("fuzz", "127.0.0.1:1".parse().expect("addr"), vec![]);
    let (status, bytes) = runtime.block_on(async {
        let response = server.handle_message(&headers(modern), body, &peer).await;
        let status = response.status().as_u16();
        (status, response.into_body().collect().await.expect("an in-memory body").to_bytes())
    });
    let shown = || String::from_utf8_lossy(body).into_owned();
    if status == 202 {
        prop_assert!(bytes.is_empty(), "202 with a body for {:?}", shown());
        return Ok((status, Value::Null));
    }
    prop_assert!(matches!(status, 200 | 400 | 404 | 406 | 415), "status {} for {:?}", status, shown());
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("not JSON ({e}) for {:?}", shown())))?;
    prop_assert_eq!(&answer["jsonrpc"], &json!("2.0"), "for {:?}: {}", shown(), answer);
    prop_assert!(answer.get("result").is_some() != answer.get("error").is_some(), "exactly one of result and error: {}", answer);
    prop_assert!(answer["id"].is_null() || answer["id"].is_string() || answer["id"].is_number(), "{}", answer);
    if let Some(error) = answer.get("error") {
        prop_assert!(error["code"].is_i64() && error["message"].is_string(), "{}", answer);
    }
    if status == 400 {
        prop_assert!(answer.get("error").is_some(), "400 without an error: {}", answer);
    }
    Ok((status, answer))
}

#[test]
fn arbitrary_bytes_get_a_json_rpc_answer_never_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let server = server();
    let mut runner = TestRunner::new(Config { cases: cases(512), failure_persistence: None, ..Config::default() });
    let bytes = prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), "\\PC{0,64}".prop_map(String::into_bytes)];
    runner
        .run(&(bytes, any::<bool>()), |(body, modern)| {
            let (status, answer) = check(&runtime, &server, &body, modern)?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
                prop_assert_eq!(
                    (status, &answer["error"]["code"]),
                    (400, &json!(-32700)),
                    "not JSON: {:?}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn damaged_json_rpc_envelopes_get_a_json_rpc_answer_never_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let server = server();
    let mut runner = TestRunner::new(Config { cases: cases(1024), failure_persistence: None, ..Config::default() });
    let bodies = envelope().prop_flat_map(|e| damaged(serde_json::to_vec(&e).expect("serializes")));
    runner
        .run(&(bodies, any::<bool>()), |(body, modern)| {
            check(&runtime, &server, &body, modern)?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
