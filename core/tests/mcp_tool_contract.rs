//! What a tool declares about its answers and its clients, over real mTLS to a real agent: an
//! `outputSchema` is listed and every answer's `structuredContent` is held to it; a tool that
//! needs a client capability is refused to a modern client that did not declare it (-32021);
//! and a handler sees its caller's verified identity and the capabilities its client declared.

mod common;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use toolmesh_core::agent::Agent;
use toolmesh_core::client::HttpsClient;
use toolmesh_core::context::RequestContext;
use toolmesh_core::error::ErrorKind;
use toolmesh_core::host::{Completion, FnHandler, LocalTools, ToolInvocation, ToolOutput};
use toolmesh_core::registry_api::ToolInfo;

/// The identity the test's client presents.
const OPERATOR: &str = "spiffe://toolmesh.local/agent/operator";

fn count_schema() -> Value {
    json!({"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]})
}

fn tools() -> Vec<ToolInfo> {
    let answers = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
    vec![
        ToolInfo { output_schema: Some(count_schema()), ..tool("counted", "counted", answers, json!([])) },
        ToolInfo {
            required_client_capabilities: vec!["sampling".into()],
            ..tool("sampler", "sampler", json!({"type": "object"}), json!([]))
        },
    ]
}

/// `counted` answers as `answer` says; `sampler` answers what its context holds.
fn handler() -> Arc<FnHandler<impl Fn(ToolInvocation, Completion) + Send + Sync>> {
    Arc::new(FnHandler(|call: ToolInvocation, done: Completion| match call.tool.as_str() {
        "sampler" => done.ok(call.context.view_json()),
        _ => match call.arguments["answer"].as_str().unwrap_or_default() {
            "plain" => done.ok(json!({"count": 3})),
            "wrong-type" => done.ok(json!({"count": "three"})),
            "scalar" => done.ok(json!(3)),
            "text-only" => done.result(ToolOutput::from_json(json!({"content": [{"type": "text", "text": "3"}]})).unwrap()),
            "failed" => done.result(ToolOutput::from_json(json!({"content": [{"type": "text", "text": "no"}], "isError": true})).unwrap()),
            _ => done.result(ToolOutput::from_json(json!({"structuredContent": {"count": 4}})).unwrap()),
        },
    }))
}

async fn start(pki: &Pki, tools: Vec<ToolInfo>) -> Result<Agent, toolmesh_core::error::Error> {
    let mut config = config("contract", &pki.issue("contract"));
    config.set("health_port", "off").unwrap();
    Agent::start(config, tools, handler()).await
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_output_schema_is_listed_verbatim_and_every_answer_is_held_to_it() {
    let pki = Pki::new();
    let agent = start(&pki, tools()).await.unwrap();
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let listed = legacy_ok(&client, ep, "tools/list", json!({})).await;
    let counted = listed["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "counted").unwrap();
    assert_eq!(counted["outputSchema"], count_schema());
    let sampler = listed["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "sampler").unwrap();
    assert!(sampler.get("outputSchema").is_none(), "{sampler}");

    for answer in ["plain", "structured"] {
        let result = legacy_ok(&client, ep, "tools/call", json!({"name": "counted", "arguments": {"answer": answer}})).await;
        assert_eq!(result["result"]["isError"], json!(false), "{answer}: {result}");
        assert!(result["result"]["structuredContent"]["count"].is_i64(), "{answer}: {result}");
    }
    // A tool error needs no structured content.
    let failed = legacy_ok(&client, ep, "tools/call", json!({"name": "counted", "arguments": {"answer": "failed"}})).await;
    assert_eq!((failed["result"]["isError"].clone(), text(&failed["result"])), (json!(true), "no"));

    let refusals = [
        ("wrong-type", "member 'count' must be of type integer, got string"),
        ("scalar", "it must be an object, got integer"),
        ("text-only", "it has none"),
    ];
    for (answer, problem) in refusals {
        let expected = format!("tool 'counted' returned structuredContent that does not match its outputSchema: {problem}");
        for modern_era in [false, true] {
            let params = json!({"name": "counted", "arguments": {"answer": answer}});
            let result = if modern_era {
                let (status, v) = modern(&client, ep, "tools/call", Some("counted"), params).await;
                assert_eq!(status, 200, "{v}");
                v["result"].clone()
            } else {
                legacy_ok(&client, ep, "tools/call", params).await["result"].clone()
            };
            assert_eq!(result["isError"], json!(true), "{answer}: {result}");
            assert_eq!(text(&result), expected);
            assert_eq!(result["_meta"]["dev.toolmesh/error"]["name"], json!("HANDLER_RESULT"), "{result}");
        }
    }

    agent.shutdown().await;

    // An in-process caller (a dependency on the agent itself) gets the same refusal as an error.
    let local = LocalTools::new(tools(), handler());
    let e = local.invoke("counted", json!({"answer": "wrong-type"}), Arc::new(RequestContext::default())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HandlerResult, "{e}");
    assert!(e.message().ends_with("member 'count' must be of type integer, got string"), "{e}");
}

#[tokio::test]
async fn a_tool_that_needs_a_client_capability_is_refused_to_a_modern_client_that_did_not_declare_it() {
    let pki = Pki::new();
    let agent = start(&pki, tools()).await.unwrap();
    let client = HttpsClient::new(&pki.identity("operator")).unwrap();
    let ep = agent.endpoint();

    let (status, refused) = modern(&client, ep, "tools/call", Some("sampler"), json!({"name": "sampler", "arguments": {}})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], json!(-32021));
    assert_eq!(refused["error"]["data"]["requiredCapabilities"], json!({"sampling": {}}));
    assert!(refused["error"]["message"].as_str().unwrap().contains("tool 'sampler' needs sampling"), "{refused}");

    let declared = json!({"sampling": {}, "roots": {"listChanged": true}});
    let params = json!({"name": "sampler", "arguments": {}, "_meta": {"io.modelcontextprotocol/clientCapabilities": declared}});
    let (status, served) = modern(&client, ep, "tools/call", Some("sampler"), params).await;
    assert_eq!(status, 200, "{served}");
    let seen = &served["result"]["structuredContent"];
    assert_eq!(seen["client_capabilities"], declared);
    assert_eq!(seen["caller"], json!(OPERATOR));

    // A legacy request declares its capabilities only in an initialize a stateless agent does not
    // keep: the tool runs, and its handler is told they are unknown.
    let served = legacy_ok(&client, ep, "tools/call", json!({"name": "sampler", "arguments": {}})).await;
    let seen = &served["result"]["structuredContent"];
    assert_eq!((seen["client_capabilities"].clone(), seen["caller"].clone()), (Value::Null, json!(OPERATOR)));
    agent.shutdown().await;
}

#[tokio::test]
async fn a_declaration_no_client_could_satisfy_is_refused_at_start() {
    let pki = Pki::new();
    let cases = [
        (
            ToolInfo { output_schema: Some(json!({"type": "array"})), ..tool("t", "t", json!({"type": "object"}), json!([])) },
            "tool 't': output_schema.type must be \"object\"",
        ),
        (
            ToolInfo { required_client_capabilities: vec!["telepathy".into()], ..tool("t", "t", json!({"type": "object"}), json!([])) },
            "tool 't': required_client_capabilities[0]: \"telepathy\" is not a capability a client can declare; use elicitation, roots, sampling",
        ),
        (
            ToolInfo {
                required_client_capabilities: vec!["roots".into(), "roots".into()],
                ..tool("t", "t", json!({"type": "object"}), json!([]))
            },
            "tool 't': required_client_capabilities[1]: \"roots\" is listed twice",
        ),
    ];
    for (declared, message) in cases {
        let e = start(&pki, vec![declared]).await.err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().starts_with(message), "{}", e.message());
    }
    // What a binding hands over as JSON is read by core, which names the tool and the values.
    for (declared, says) in [(json!("sometimes"), "got \"sometimes\""), (json!(true), "got true")] {
        let json = json!([{"name": "t", "task_support": declared}]).to_string();
        let e = toolmesh_core::agent::parse_tools(&json).expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let expected = "the tool definitions are not valid: tool 't': task_support must be \"forbidden\", \"optional\" or \"required\"";
        assert!(e.message().starts_with(expected) && e.message().ends_with(says), "{}", e.message());
    }
    let json = json!([{"name": "t", "task_support": "required"}, {"name": "u", "task_support": null}]).to_string();
    let parsed = toolmesh_core::agent::parse_tools(&json).unwrap();
    assert_eq!(parsed.iter().map(|t| t.task_support.as_str()).collect::<Vec<_>>(), ["required", "forbidden"]);
}
