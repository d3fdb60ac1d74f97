//! The agent `scripts/conformance.sh` runs the official MCP conformance suite against: a real
//! toolmesh agent (mTLS, the agent's own gate and MCP server) serving the suite's fixture tools
//! that a toolmesh handler can express today. Configured like any agent, through `TOOLMESH_*`
//! variables (`TOOLMESH_TLS_CERT`, `TOOLMESH_TLS_KEY`, `TOOLMESH_TLS_CA`, `TOOLMESH_PORT`);
//! prints `endpoint <url>` once it listens and serves until its standard input closes.
//!
//! Results beyond one value (images, audio, embedded resources, several items) are answered in
//! MCP's own shape through `Completion::result`. Fixtures that need what a handler cannot do yet
//! (progress, logging, prompts, resources, input requests) are left out rather than faked: the
//! suite reports them as missing.

use serde_json::{json, Value};
use std::sync::Arc;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Completion, FnHandler, ToolInvocation, ToolOutput};
use toolmesh_core::registry_api::ToolInfo;

/// The suite's `json-schema-2020-12` fixture: its input schema must be listed verbatim.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addressDef", "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"}
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false
    })
}

fn tool(name: &str, description: &str, input_schema: Value) -> ToolInfo {
    serde_json::from_value(json!({
        "name": name, "capability": name, "description": description, "input_schema": input_schema,
    }))
    .expect("a fixture tool is a valid ToolInfo")
}

/// A 1×1 red PNG and a minimal WAV, the suite's own samples.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// The result of a fixture tool that answers in MCP's own shape, if `tool` is one.
fn rich_result(tool: &str) -> Option<Value> {
    let image = json!({"type": "image", "data": PNG, "mimeType": "image/png"});
    Some(match tool {
        "test_image_content" => json!({"content": [image]}),
        "test_audio_content" => json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}),
        "test_embedded_resource" => json!({"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}}]}),
        "test_multiple_content_types" => json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            image,
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": "{\"test\":\"data\",\"value\":123}"}},
        ]}),
        _ => return None,
    })
}

fn tools() -> Vec<ToolInfo> {
    let empty = json!({"type": "object", "properties": {}});
    vec![
        tool("test_simple_text", "Returns a simple text response", empty.clone()),
        tool("test_error_handling", "Always fails, to test error reporting", empty.clone()),
        tool("test_image_content", "Returns an image", empty.clone()),
        tool("test_audio_content", "Returns audio", empty.clone()),
        tool("test_embedded_resource", "Returns an embedded resource", empty.clone()),
        tool("test_multiple_content_types", "Returns text, an image and an embedded resource", empty),
        tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", json_schema_2020_12()),
        // The tasks extension's synchronous fixture.
        tool(
            "greet",
            "Says hello (synchronous, no task support)",
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        ),
        // SEP-2243: a modern call mirrors `region` in an `Mcp-Param-Region` header.
        tool(
            "test_headers",
            "Echoes a parameter that callers mirror in the Mcp-Param-Region header",
            json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}, "required": ["region"]}),
        ),
    ]
}

fn handle(invocation: ToolInvocation, done: Completion) {
    if let Some(result) = rich_result(&invocation.tool) {
        return match ToolOutput::from_json(result) {
            Ok(output) => done.result(output),
            Err(problem) => done.err(problem),
        };
    }
    match invocation.tool.as_str() {
        "test_simple_text" => done.ok(json!("This is a simple text response for testing.")),
        "test_error_handling" => done.err("This tool intentionally returns an error for testing"),
        "greet" => done.ok(json!(format!("Hello, {}!", invocation.arguments["name"].as_str().unwrap_or_default()))),
        "test_headers" => done.ok(json!(format!("region {}", invocation.arguments["region"]))),
        "json_schema_2020_12_tool" => done.ok(json!(format!("received {}", invocation.arguments))),
        other => done.err(format!("no such tool {other}")),
    }
}

#[tokio::main]
async fn main() {
    let config = match AgentConfig::from_env("conformance") {
        Ok(config) => config,
        Err(e) => {
            eprintln!("conformance_agent: {e}");
            std::process::exit(2);
        }
    };
    let agent = match Agent::start(config, tools(), Arc::new(FnHandler(handle))).await {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("conformance_agent: {e}");
            std::process::exit(1);
        }
    };
    println!("endpoint {}", agent.endpoint());
    // Serve until the script that started us closes our standard input (or dies).
    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
    agent.shutdown().await;
}
