use super::era::*;
use super::http_checks::*;
use super::request::*;
use super::*;
use crate::host::{Completion, FnHandler, ToolInvocation};
use crate::registry_api::ToolInfo;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::borrow::Cow;

fn tool(name: &str, input_schema: Value) -> ToolInfo {
    ToolInfo {
        name: name.into(),
        capability: name.into(),
        version: "1.0.0".into(),
        tags: vec![],
        description: String::new(),
        input_schema,
        dependencies: vec![],
        timeout_ms: None,
        annotations: Default::default(),
        output_schema: None,
        required_client_capabilities: vec![],
        task_support: Default::default(),
    }
}

/// `add` (a + b), `echo` (its arguments), `context` (what the handler's context holds), `fail`.
fn server() -> McpServer {
    let ab = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]});
    let any = json!({"type": "object"});
    let tools = vec![tool("add", ab), tool("echo", any.clone()), tool("context", any.clone()), tool("fail", any)];
    let handler = FnHandler(|call: ToolInvocation, done: Completion| match call.tool.as_str() {
        "add" => done.ok(json!(call.arguments["a"].as_i64().unwrap() + call.arguments["b"].as_i64().unwrap())),
        "echo" => done.ok(call.arguments),
        "context" => done.ok(json!({
            "trace_id": call.context.trace_id(),
            "has_deadline": call.context.deadline.is_some(),
        })),
        _ => done.err("boom"),
    });
    let info = ServerInfo { name: "srv".into(), version: "9.9".into() };
    let gate = Arc::new(Gate::new(test_identity(), "srv", crate::policy::Policy::allow_mesh()));
    McpServer::new(info, Arc::new(LocalTools::new(tools, Arc::new(handler))), HeaderAllowList::default(), gate)
}

/// One mesh identity for every server of these tests (key generation is not free).
fn test_identity() -> Arc<crate::tls::Identity> {
    use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};
    static IDENTITY: std::sync::OnceLock<Arc<crate::tls::Identity>> = std::sync::OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let ca = CertificateAuthority::generate("mcp server test CA", 1).unwrap();
            let issued = ca.issue(&LeafRequest::new("srv", Role::Agent, DEFAULT_TRUST_DOMAIN, 1)).unwrap();
            crate::tls::Identity::from_pem(&issued.cert_pem, &issued.key_pem, ca.cert_pem()).unwrap()
        })
        .clone()
}

/// Posts `body` to the server with `headers`; the HTTP status and the raw response body.
async fn post(server: &McpServer, headers: &[(&'static str, &str)], body: impl AsRef<[u8]>) -> (u16, String) {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().unwrap());
    }
    let peer = PeerInfo::new("test", "127.0.0.1:1".parse().unwrap(), vec![]);
    let response = server.handle_message(&map, body.as_ref(), &peer).await;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Like [`post`], with the answer parsed.
async fn answer(server: &McpServer, headers: &[(&'static str, &str)], body: &str) -> (u16, Value) {
    let (status, text) = post(server, headers, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const MODERN_META: &str =
    r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

fn modern_call_headers(name: &str) -> [(&'static str, &str); 3] {
    [(HEADER_PROTOCOL_VERSION, MODERN_VERSION), (HEADER_METHOD, "tools/call"), (HEADER_NAME, name)]
}

#[test]
fn loopback_origins_only() {
    assert!(is_loopback_origin("http://127.0.0.1:8080"));
    assert!(is_loopback_origin("https://localhost"));
    assert!(is_loopback_origin("http://[::1]:9"));
    assert!(!is_loopback_origin("https://evil.example"));
    assert!(!is_loopback_origin("http://localhost.evil.example"));
    assert!(!is_loopback_origin("null"));
}

#[test]
fn accept_must_cover_json_and_sse_and_content_type_must_be_json() {
    let status = |accept: Option<&str>, content_type: &str| {
        let mut h = HeaderMap::new();
        if let Some(accept) = accept {
            h.insert(http::header::ACCEPT, accept.parse().unwrap());
        }
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        check_http_headers(&h).map_or(200, |e| e.status.as_u16())
    };
    for ok in [
        "application/json, text/event-stream",
        "text/event-stream;q=0.5,APPLICATION/JSON",
        "*/*",
        "application/*, text/*",
        "application/json, */*;q=0.1",
    ] {
        assert_eq!(status(Some(ok), "application/json"), 200, "{ok}");
    }
    for bad in ["application/json", "text/event-stream", "", "text/html", "application/json, text/event-stream;q=0", "*/*;q=0"] {
        assert_eq!(status(Some(bad), "application/json"), 406, "{bad}");
    }
    assert_eq!(status(None, "application/json"), 406);
    // Both types may come in separate Accept headers.
    let mut h = HeaderMap::new();
    h.append(http::header::ACCEPT, "application/json".parse().unwrap());
    h.append(http::header::ACCEPT, "text/event-stream".parse().unwrap());
    h.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
    assert!(check_http_headers(&h).is_none());
    assert_eq!(status(Some("*/*"), "application/json; charset=utf-8"), 200);
    assert_eq!(status(Some("*/*"), "text/plain"), 415);
    assert_eq!(status(Some("*/*"), ""), 415);
}

#[test]
fn era_follows_meta_then_header() {
    fn meta(body: &str) -> RequestMeta<'_> {
        serde_json::from_str(body).unwrap()
    }
    let mut h = HeaderMap::new();
    assert_eq!(era_of("tools/list", &h, None), Era::Legacy);
    assert_eq!(era_of("initialize", &h, None), Era::Legacy);
    h.insert(HEADER_PROTOCOL_VERSION, "2025-06-18".parse().unwrap());
    assert_eq!(era_of("tools/list", &h, None), Era::Legacy);
    h.insert(HEADER_PROTOCOL_VERSION, "bogus".parse().unwrap());
    assert_eq!(era_of("tools/list", &h, None), Era::Modern);
    let with_version = format!(r#"{{"{META_PROTOCOL_VERSION}":"2026-07-28"}}"#);
    assert_eq!(era_of("tools/list", &HeaderMap::new(), Some(&meta(&with_version))), Era::Modern);
    // `initialize` is legacy only without the modern `_meta`: with it, it is a removed method.
    assert_eq!(era_of("initialize", &HeaderMap::new(), Some(&meta(&with_version))), Era::Modern);
    // Present but null still claims the modern era (and is then refused as missing).
    let null_version = format!(r#"{{"{META_PROTOCOL_VERSION}":null}}"#);
    assert_eq!(era_of("tools/list", &HeaderMap::new(), Some(&meta(&null_version))), Era::Modern);
    assert_eq!(era_of("tools/list", &HeaderMap::new(), Some(&meta("{}"))), Era::Legacy);
}

#[test]
fn the_request_meta_uses_the_protocol_key_names() {
    let body = json!({
        META_PROTOCOL_VERSION: "v",
        META_CLIENT_CAPABILITIES: {},
        META_DEADLINE_MS: 5,
        "traceparent": "tp",
        "tracestate": "ts",
    })
    .to_string();
    let meta: RequestMeta = serde_json::from_str(&body).unwrap();
    assert_eq!(meta.protocol_version.and_then(Raw::as_str).as_deref(), Some("v"));
    assert!(meta.client_capabilities.is_some_and(Raw::is_object));
    assert_eq!(meta.deadline_ms.and_then(Raw::as_u64), Some(5));
    assert_eq!(meta.traceparent.and_then(Raw::as_str).as_deref(), Some("tp"));
    assert_eq!(meta.tracestate.and_then(Raw::as_str).as_deref(), Some("ts"));
}

#[test]
fn raw_members_read_as_their_type_or_not_at_all() {
    let raw = |json: &'static str| Raw(serde_json::from_str::<&RawValue>(json).unwrap());
    assert!(matches!(raw(r#""plain""#).as_str(), Some(Cow::Borrowed("plain"))));
    assert_eq!(raw(r#""a\u0062\"c""#).as_str().as_deref(), Some("ab\"c"));
    assert_eq!(raw("5").as_str(), None);
    assert_eq!(raw("5").as_u64(), Some(5));
    assert_eq!(raw("5.5").as_u64(), None);
    assert_eq!(raw(r#""5""#).as_u64(), None);
    assert!(raw("{}").is_object() && !raw("[]").is_object());
    for id in [r#""x""#, "0", "-1", "1.5e3"] {
        assert!(raw(id).is_string_or_number(), "{id}");
    }
    for id in ["null", "true", "{}", "[]"] {
        assert!(!raw(id).is_string_or_number(), "{id}");
    }
}

#[tokio::test]
async fn ids_are_echoed_verbatim_and_must_be_strings_or_numbers() {
    let s = server();
    for id in ["7", "-1.5e3", r#""a\u0062""#, r#""call-1""#] {
        let (status, text) = post(&s, &[], &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)).await;
        assert_eq!(status, 200);
        assert!(text.contains(&format!(r#""id":{id},"#)), "{text}");
    }
    for id in ["null", "true", "[1]", "{}"] {
        let (status, v) = answer(&s, &[], &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)).await;
        assert_eq!((status, &v["error"]["code"], &v["id"]), (400, &json!(-32600), &Value::Null), "{id}");
        assert_eq!(v["error"]["message"], json!("Invalid Request: id must be a string or an integer"));
    }
    // No id: a notification, which gets no answer.
    let (status, text) = post(&s, &[], r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add"}}"#).await;
    assert_eq!((status, text.as_str()), (202, ""));
}

#[tokio::test]
async fn malformed_envelopes_get_their_json_rpc_errors() {
    let s = server();
    let cases = [
        ("{not json", 400, -32700),
        (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#, 400, -32700),
        ("[]", 400, -32600),
        ("5", 400, -32600),
        (r#"{"jsonrpc":2,"id":1,"method":"ping"}"#, 400, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#, 400, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#, 200, -32601),
    ];
    for (body, status, code) in cases {
        let (s_, v) = answer(&s, &[], body).await;
        assert_eq!((s_, &v["error"]["code"]), (status, &json!(code)), "{body}: {v}");
    }
    let (_, v) = answer(&s, &[], "{not json").await;
    assert_eq!(v["error"]["message"], json!("Parse error: key must be a string at line 1 column 2"));
    // Invalid UTF-8 is a parse error, with serde_json's position of it.
    let (status, text) = post(&s, &[], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffing\"}").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, &v["error"]["message"]), (400, &json!("Parse error: invalid unicode code point at line 1 column 36")));
    let (_, v) = answer(&s, &[], "[1]").await;
    assert_eq!(v["error"]["message"], json!("Invalid Request: JSON-RPC batches are not supported"));
    let (_, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":"x","method":"ping","params":7}"#).await;
    assert_eq!((&v["id"], &v["error"]["message"]), (&json!("x"), &json!("Invalid params: params must be an object")));
    // A response that answers no request of the server's (even with a null result) is accepted
    // and dropped; one with neither or both of result and error, or no id, is not a response.
    assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","id":1,"result":null}"#).await.0, 202);
    assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","id":"toolmesh-0-0","error":{"code":1,"message":"no"}}"#).await.0, 202);
    assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","id":1}"#).await.0, 400);
    assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#).await.0, 400);
    assert_eq!(post(&s, &[], r#"{"jsonrpc":"2.0","result":{}}"#).await.0, 400);
}

#[tokio::test]
async fn legacy_tool_calls_wrap_non_objects_and_carry_no_modern_members() {
    let s = server();
    let (status, v) =
        answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}, "isError": false}})
    );
    let (_, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":"y"}}}"#).await;
    assert_eq!(v["result"]["structuredContent"], json!({"x": "y"}));
    assert_eq!(v["result"]["content"][0]["text"], json!(r#"{"x":"y"}"#));
}

#[tokio::test]
async fn modern_tool_calls_carry_result_type_and_server_info() {
    let s = server();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":1}},{MODERN_META}}}}}"#
    );
    let (status, v) = answer(&s, &modern_call_headers("add"), &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["result"],
        json!({"content": [{"type": "text", "text": "2"}], "structuredContent": 2, "isError": false, "resultType": "complete",
               "_meta": {META_SERVER_INFO: {"name": "srv", "version": "9.9"}}})
    );
    let failed = format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"fail",{MODERN_META}}}}}"#);
    let (_, v) = answer(&s, &modern_call_headers("fail"), &failed).await;
    assert_eq!(v["result"]["isError"], json!(true));
    assert_eq!(v["result"]["content"][0]["text"], json!("tool 'fail' failed: boom"));
    assert_eq!(v["result"]["_meta"][META_ERROR], json!({"code": 6001, "name": "HANDLER_FAILED", "message": "tool 'fail' failed: boom"}));
    assert_eq!(v["result"]["_meta"][META_SERVER_INFO]["name"], json!("srv"));
    assert!(v["result"].get("structuredContent").is_none());
    // An escaped name is the same name, in the body and against the Mcp-Name header.
    let escaped = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools\/call","params":{{"name":"a\u0064d","arguments":{{"a":1,"b":2}},{MODERN_META}}}}}"#
    );
    let (status, v) = answer(&s, &modern_call_headers("add"), &escaped).await;
    assert_eq!((status, &v["result"]["structuredContent"]), (200, &json!(3)), "{v}");
    let (status, v) = answer(&s, &modern_call_headers("other"), &body).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)));
}

#[tokio::test]
async fn arguments_absent_or_null_are_empty_and_other_values_are_refused() {
    let s = server();
    for arguments in ["", r#","arguments":null"#] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo"{arguments}}}}}"#);
        let (_, v) = answer(&s, &[], &body).await;
        assert_eq!(v["result"]["structuredContent"], json!({}), "{arguments}");
    }
    for arguments in ["[1]", r#""x""#, "5"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{arguments}}}}}"#);
        let (status, v) = answer(&s, &[], &body).await;
        assert_eq!((status, &v["result"]["isError"]), (200, &json!(true)), "{arguments}");
        assert_eq!(v["result"]["_meta"][META_ERROR]["name"], json!("INVALID_ARGUMENTS"));
        assert_eq!(v["result"]["content"][0]["text"], json!("tool 'echo': arguments must be a JSON object"));
    }
    let (_, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("tool 'add': missing required argument(s): b"));
}

#[tokio::test]
async fn a_call_without_a_usable_name_or_tool_is_invalid_params() {
    let s = server();
    for params in ["", r#","params":null"#, r#","params":{}"#, r#","params":{"name":5}"#] {
        let (status, v) = answer(&s, &[], &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call"{params}}}"#)).await;
        assert_eq!((status, &v["error"]["code"]), (200, &json!(-32602)), "{params}");
        assert_eq!(v["error"]["message"], json!("Invalid params: tools/call needs a string 'name'"));
    }
    let (status, v) = answer(&s, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#).await;
    assert_eq!((status, &v["error"]["code"], &v["error"]["message"]), (200, &json!(-32602), &json!("Unknown tool: nope")));
    assert_eq!(v["error"]["data"], json!({"code": 5002, "name": "UNKNOWN_TOOL", "message": "Unknown tool: nope"}));
}

#[tokio::test]
async fn the_caller_trace_and_deadline_reach_the_handler_and_odd_types_are_ignored() {
    let s = server();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let meta = format!(
        r#""_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}},"traceparent":"00-{trace}-b7ad6b7169203331-01","dev.toolmesh/deadlineMs":5000}}"#
    );
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"context",{meta}}}}}"#);
    let (_, v) = answer(&s, &modern_call_headers("context"), &body).await;
    assert_eq!(v["result"]["structuredContent"], json!({"trace_id": trace, "has_deadline": true}));
    let odd = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"context","_meta":{"traceparent":5,"dev.toolmesh/deadlineMs":"5"}}}"#;
    let (_, v) = answer(&s, &[], odd).await;
    assert_eq!(v["result"]["structuredContent"]["has_deadline"], json!(false));
    assert_ne!(v["result"]["structuredContent"]["trace_id"], json!(trace));
}

#[tokio::test]
async fn modern_requests_need_their_meta() {
    let s = server();
    let headers = [(HEADER_PROTOCOL_VERSION, MODERN_VERSION), (HEADER_METHOD, "tools/list")];
    let (status, v) = answer(&s, &headers, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32602)));
    let no_caps = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":[]}}}"#;
    let (status, v) = answer(&s, &headers, no_caps).await;
    assert_eq!((status, &v["error"]["message"]), (400, &json!(format!("Invalid params: missing _meta[\"{META_CLIENT_CAPABILITIES}\"]"))));
    let (status, v) =
        answer(&s, &headers, &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{MODERN_META}}}}}"#)).await;
    assert_eq!((status, &v["result"]["resultType"], &v["result"]["tools"][0]["name"]), (200, &json!("complete"), &json!("add")));
}
