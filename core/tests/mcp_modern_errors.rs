//! The modern era's error precedence, over real mTLS to a real agent, as the official conformance
//! suite (`server-stateless`) and the Python reference server expect it:
//! - `initialize` carrying the modern `_meta` is a removed method: 404 / -32601, never a legacy
//!   handshake;
//! - a `MCP-Protocol-Version` header that disagrees with `_meta`'s version is a HeaderMismatch
//!   (-32020) before the version itself is judged (-32022).

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use toolmesh_core::client::HttpsClient;

fn meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "conformance-probe", "version": "0"},
    })
}

#[tokio::test]
async fn an_initialize_with_modern_meta_is_a_removed_method_not_a_legacy_handshake() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let modern_initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"_meta": meta(MODERN)}});
    let (status, v) = post(&client, ep, &[("mcp-protocol-version", MODERN), ("mcp-method", "initialize")], modern_initialize).await;
    assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "{v}");
    assert!(v.get("result").is_none(), "{v}");
    // `ping`, removed too, is answered alike.
    let modern_ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"_meta": meta(MODERN)}});
    let (status, v) = post(&client, ep, &[("mcp-protocol-version", MODERN), ("mcp-method", "ping")], modern_ping).await;
    assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "{v}");

    // A legacy initialize (no modern _meta) is still the handshake.
    let legacy_initialize = json!({"jsonrpc": "2.0", "id": 3, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let (status, v) = post(&client, ep, &[], legacy_initialize).await;
    assert_eq!((status, &v["result"]["protocolVersion"]), (200, &json!("2025-11-25")), "{v}");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_header_that_disagrees_with_the_body_version_is_a_mismatch_before_the_version_is_judged() {
    let pki = Pki::new();
    let agent = start_agent("b", &pki.issue("b"), standard_tools(), |_| {}).await;
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();
    let discover = |version: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta(version)}});

    // Header 2026-07-28, body v999.0.0: the two disagree, and that is reported first.
    let (status, v) = post(&client, ep, &[("mcp-protocol-version", MODERN), ("mcp-method", "server/discover")], discover("v999.0.0")).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "{v}");
    // No header at all is a mismatch too.
    let (status, v) = post(&client, ep, &[("mcp-method", "server/discover")], discover("v999.0.0")).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!(-32020)), "{v}");
    // Header and body agree on a version this server lacks: UnsupportedProtocolVersion, with data.
    let (status, v) =
        post(&client, ep, &[("mcp-protocol-version", "v999.0.0"), ("mcp-method", "server/discover")], discover("v999.0.0")).await;
    assert_eq!((status, &v["error"]["code"], &v["error"]["data"]["requested"]), (400, &json!(-32022), &json!("v999.0.0")), "{v}");
    assert!(v["error"]["data"]["supported"].as_array().unwrap().contains(&json!(MODERN)), "{v}");
    // And agreeing on the modern version is served.
    let (status, v) = post(&client, ep, &[("mcp-protocol-version", MODERN), ("mcp-method", "server/discover")], discover(MODERN)).await;
    assert_eq!((status, &v["result"]["resultType"]), (200, &json!("complete")), "{v}");
    agent.shutdown().await;
}
