//! The agent `scripts/conformance.sh` runs the official MCP conformance suite against: a real
//! toolmesh agent (mTLS, the agent's own gate and MCP server) serving the suite's fixture tools
//! that a toolmesh handler can express today. Configured like any agent, through `TOOLMESH_*`
//! variables (`TOOLMESH_TLS_CERT`, `TOOLMESH_TLS_KEY`, `TOOLMESH_TLS_CA`, `TOOLMESH_PORT`);
//! prints `endpoint <url>` once it listens and serves until its standard input closes.
//!
//! Results beyond one value (images, audio, embedded resources, several items) are answered in
//! MCP's own shape through `Completion::result`. The suite's resources and prompts are declared
//! in a `Catalog`: the static resources are answered by core, the template and the prompts by
//! this handler (`invoke_catalog`). Progress and log messages go through the request context
//! (`RequestContext::progress`, `::log`), which sends what the request lets through. Fixtures
//! that need what a handler cannot do yet (input requests) are left out rather than faked: the
//! suite reports them as missing.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::host::{Catalog, CatalogInvocation, CatalogRequest, Completion, FnCatalogHandler, ToolInvocation, ToolOutput};
use toolmesh_core::registry_api::ToolInfo;
use toolmesh_core::report::LogLevel;

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
        tool("test_multiple_content_types", "Returns text, an image and an embedded resource", empty.clone()),
        tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", empty.clone()),
        tool("test_tool_with_logging", "Logs three messages at info level", empty.clone()),
        tool("test_logging_tool", "Logs a message (sent only to a client that asked for a level)", empty.clone()),
        tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", json_schema_2020_12()),
        // The tasks extension's synchronous fixture.
        tool(
            "greet",
            "Says hello (synchronous, no task support)",
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        ),
        // SEP-2575: a modern call from a client that did not declare `sampling` is refused (-32021).
        ToolInfo {
            required_client_capabilities: vec!["sampling".into()],
            ..tool("test_missing_capability", "Needs the client's sampling capability", empty)
        },
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
    let context = invocation.context.clone();
    match invocation.tool.as_str() {
        "test_tool_with_progress" => {
            tokio::spawn(async move {
                for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    context.progress(progress, Some(100.0), None);
                }
                done.ok(json!("Progress reported: 0, 50 and 100 of 100"));
            });
        }
        "test_tool_with_logging" | "test_logging_tool" => {
            tokio::spawn(async move {
                for (i, message) in ["Tool execution started", "Tool processing data", "Tool execution completed"].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    context.log(LogLevel::Info, &json!(message), None);
                }
                done.ok(json!("Logged three messages at info level"));
            });
        }
        "test_simple_text" => done.ok(json!("This is a simple text response for testing.")),
        "test_error_handling" => done.err("This tool intentionally returns an error for testing"),
        "greet" => done.ok(json!(format!("Hello, {}!", invocation.arguments["name"].as_str().unwrap_or_default()))),
        "test_headers" => done.ok(json!(format!("region {}", invocation.arguments["region"]))),
        "test_missing_capability" => done.ok(json!("The client declared sampling")),
        "json_schema_2020_12_tool" => done.ok(json!(format!("received {}", invocation.arguments))),
        other => done.err(format!("no such tool {other}")),
    }
}

/// The suite's resources (`resources-*`, `caching`) and prompts (`prompts-*`), in MCP's shape.
fn catalog() -> Catalog {
    let catalog = json!({
        "resources": [
            {"uri": "test://static-text", "name": "static-text", "description": "A static text resource",
             "mimeType": "text/plain", "text": "This is the content of the static text resource."},
            {"uri": "test://static-binary", "name": "static-binary", "description": "A static binary resource (a PNG)",
             "mimeType": "image/png", "blob": PNG},
            {"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource a client may watch",
             "mimeType": "text/plain", "text": "Watched resource content."},
        ],
        "resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template-data",
             "description": "Data for an id, read through the handler", "mimeType": "application/json"},
        ],
        "prompts": [
            {"name": "test_simple_prompt", "description": "A simple prompt without arguments"},
            {"name": "test_prompt_with_arguments", "description": "A prompt with two required arguments", "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true}]},
            {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource", "arguments": [
                {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
            {"name": "test_prompt_with_image", "description": "A prompt with an image"},
        ],
    });
    Catalog::parse(&catalog.to_string()).expect("the fixture catalog is valid")
}

fn handle_catalog(invocation: CatalogInvocation, done: Completion) {
    let text = |text: &str| json!({"role": "user", "content": {"type": "text", "text": text}});
    match invocation.request {
        CatalogRequest::ReadResource { uri, variables, .. } => {
            let id = variables.get("id").and_then(Value::as_str).unwrap_or_default();
            let data = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            done.ok(json!({"contents": [{"uri": uri, "mimeType": "application/json", "text": data.to_string()}]}))
        }
        CatalogRequest::GetPrompt { name, arguments } => {
            let argument = |key: &str| arguments.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            let messages = match name.as_str() {
                "test_simple_prompt" => json!([text("This is a simple prompt for testing.")]),
                "test_prompt_with_arguments" => {
                    json!([text(&format!("Prompt with arguments: arg1='{}', arg2='{}'", argument("arg1"), argument("arg2")))])
                }
                "test_prompt_with_embedded_resource" => json!([
                    {"role": "user", "content": {"type": "resource", "resource": {
                        "uri": argument("resourceUri"), "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
                    text("Please process the embedded resource above."),
                ]),
                "test_prompt_with_image" => json!([
                    {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                    text("Please analyze the image above."),
                ]),
                other => return done.err(format!("no such prompt {other}")),
            };
            done.ok(json!({"messages": messages}))
        }
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
    let handler = Arc::new(FnCatalogHandler(handle, handle_catalog));
    let agent = match Agent::start_with_catalog(config, tools(), catalog(), handler).await {
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
