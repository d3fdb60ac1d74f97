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
//! (`RequestContext::progress`, `::log`), which sends what the request lets through. Input
//! requests (2026-07-28) are answered with `Completion::input_required`, the client's answers read
//! from the context (`RequestContext::input`), the handler's state sealed and checked by core.
//! A legacy (2025-11-25) client gets the same input requests as requests of the server's own on
//! the call's stream, sent by core. A prompt asks for input the same way a tool does.
//! The schemas every language's fixture agent shares are in `tests/conformance/schemas.json`.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use toolmesh_core::agent::Agent;
use toolmesh_core::config::AgentConfig;
use toolmesh_core::context::RequestContext;
use toolmesh_core::host::{
    Catalog, CatalogInvocation, CatalogRequest, Completion, FnCatalogHandler, InputRequired, ToolInvocation, ToolOutput,
};
use toolmesh_core::registry_api::{TaskSupport, ToolInfo};
use toolmesh_core::report::LogLevel;

/// The schemas the fixture agents of every language share (`tests/conformance/schemas.json`).
fn schema(name: &str) -> Value {
    static SCHEMAS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::from_str(include_str!("../../tests/conformance/schemas.json")).expect("tests/conformance/schemas.json is JSON")
    });
    SCHEMAS.get(name).cloned().unwrap_or_else(|| panic!("tests/conformance/schemas.json has no {name}"))
}

fn tool(name: &str, description: &str, input_schema: Value) -> ToolInfo {
    serde_json::from_value(json!({
        "name": name, "capability": name, "description": description, "input_schema": input_schema,
    }))
    .expect("a fixture tool is a valid ToolInfo")
}

fn task_tool(name: &str, task_support: TaskSupport, description: &str, input_schema: Value) -> ToolInfo {
    ToolInfo { task_support, ..tool(name, description, input_schema) }
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
        tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", schema("json_schema_2020_12_tool")),
        // The tasks extension (SEP-2663): `greet` is synchronous only; the others run as tasks for
        // a client that negotiated the extension (and answer directly within core's immediate
        // window, as `slow_compute` with `seconds: 0` does).
        tool(
            "greet",
            "Says hello (synchronous, no task support)",
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        ),
        task_tool(
            "slow_compute",
            TaskSupport::Optional,
            "Sleeps the given seconds, then answers with its label",
            json!({"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}, "label": {"type": "string"}}}),
        ),
        task_tool("failing_job", TaskSupport::Required, "Works for a second, then reports a tool error", empty.clone()),
        task_tool("protocol_error_job", TaskSupport::Optional, "Works for a second, then ends without an answer", empty.clone()),
        task_tool(
            "confirm_delete",
            TaskSupport::Optional,
            "Looks the file up, asks the client to confirm, then deletes it",
            json!({"type": "object", "properties": {"filename": {"type": "string"}}}),
        ),
        task_tool("multi_input", TaskSupport::Optional, "Asks two questions at once, then answers with both", empty.clone()),
        task_tool(
            "test_tool_with_task",
            TaskSupport::Required,
            "Asks for the user's name in the call itself, then greets them from a task",
            empty.clone(),
        ),
        // SEP-2575: a modern call from a client that did not declare `sampling` is refused (-32021).
        ToolInfo {
            required_client_capabilities: vec!["sampling".into()],
            ..tool("test_missing_capability", "Needs the client's sampling capability", empty.clone())
        },
        // SEP-2322: input requests, answered by the client in a second (or third) call.
        tool("test_input_required_result_elicitation", "Asks the client for the user's name", empty.clone()),
        tool("test_streaming_elicitation", "Asks the client for the user's name, on the request's stream", empty.clone()),
        tool("test_input_required_result_sampling", "Asks the client's model a question", empty.clone()),
        tool("test_input_required_result_list_roots", "Asks the client for its roots", empty.clone()),
        tool("test_input_required_result_request_state", "Asks for a confirmation, with state to get back", empty.clone()),
        tool("test_input_required_result_multiple_inputs", "Asks for a name, a greeting and the roots at once", empty.clone()),
        tool("test_input_required_result_multi_round", "Asks for a name, then a colour", empty.clone()),
        tool("test_input_required_result_tampered_state", "Asks with state that core seals", empty.clone()),
        tool("test_input_required_result_capabilities", "Asks only what the client declared it can answer", empty.clone()),
        // Legacy (2025-11-25) clients get these requests on the call's stream (core sends them).
        tool(
            "test_elicitation",
            "Asks the user for a name and an email",
            json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
        ),
        tool(
            "test_sampling",
            "Asks the client's model to answer a prompt",
            json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}),
        ),
        tool("test_elicitation_sep1034_defaults", "Asks with a default for every primitive type", empty.clone()),
        tool("test_elicitation_sep1330_enums", "Asks with every kind of enum", empty),
        // SEP-2243: a modern call mirrors `region` in an `Mcp-Param-Region` header.
        tool(
            "test_headers",
            "Echoes a parameter that callers mirror in the Mcp-Param-Region header",
            json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}, "required": ["region"]}),
        ),
    ]
}

/// An elicitation request for one string property.
fn elicit(message: &str, property: &str) -> Value {
    elicit_with(message, json!({"type": "object", "properties": {property: {"type": "string"}}, "required": [property]}))
}

fn elicit_with(message: &str, requested_schema: Value) -> Value {
    json!({"method": "elicitation/create", "params": {"message": message, "requestedSchema": requested_schema}})
}

fn sample(question: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": question}}], "maxTokens": max_tokens}})
}

/// The suite's input-required fixtures: the input requests to answer with, or the final text.
fn input_required(tool: &str, arguments: &Value, context: &RequestContext) -> Option<Result<String, InputRequired>> {
    let answers = context.input.as_deref();
    let response = |key: &str| answers.and_then(|a| a.responses.get(key));
    let state = answers.and_then(|a| a.state.as_ref());
    let ask = |requests: Value, state: Option<Value>| {
        Err(InputRequired::from_json(json!({"inputRequests": requests, "requestState": state})).expect("a fixture asks validly"))
    };
    let roots = json!({"method": "roots/list", "params": {}});
    Some(match tool {
        // SEP-2575's stream check: a modern answer that needs input is a result on the request's
        // own stream, never a request of the server's.
        "test_input_required_result_elicitation" | "test_streaming_elicitation" => match response("user_name") {
            Some(answer) => Ok(format!("Hello, {}!", answer["content"]["name"].as_str().unwrap_or("stranger"))),
            None => ask(json!({"user_name": elicit("What is your name?", "name")}), None),
        },
        "test_input_required_result_sampling" => match response("capital_question") {
            Some(answer) => Ok(format!("The model answered: {}", answer["content"]["text"].as_str().unwrap_or_default())),
            None => ask(json!({"capital_question": sample("What is the capital of France?", 100)}), None),
        },
        "test_input_required_result_list_roots" => match response("client_roots") {
            Some(answer) => {
                let uris: Vec<&str> = answer["roots"].as_array().into_iter().flatten().filter_map(|r| r["uri"].as_str()).collect();
                Ok(format!("The client's roots: {}", uris.join(", ")))
            }
            None => ask(json!({"client_roots": roots}), None),
        },
        "test_input_required_result_request_state" | "test_input_required_result_tampered_state" => match (response("confirm"), state) {
            (Some(_), Some(state)) if state["asked"] == "confirm" => Ok("Confirmed: state-ok".to_owned()),
            _ => ask(
                json!({"confirm": {"method": "elicitation/create", "params": {"message": "Please confirm", "requestedSchema": {
                        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}}),
                Some(json!({"asked": "confirm"})),
            ),
        },
        "test_input_required_result_multiple_inputs" => {
            let all = ["user_name", "greeting", "client_roots"].iter().all(|key| response(key).is_some());
            match (all, state) {
                (true, Some(_)) => Ok("Received a name, a greeting and the roots".to_owned()),
                _ => ask(
                    json!({"user_name": elicit("What is your name?", "name"), "greeting": sample("Generate a greeting", 50),
                           "client_roots": roots}),
                    Some(json!({"asked": "all three"})),
                ),
            }
        }
        "test_input_required_result_multi_round" => match (state.and_then(|s| s["round"].as_u64()), response("step1"), response("step2")) {
            (Some(2), _, Some(color)) => Ok(format!("Favourite colour: {}", color["content"]["color"].as_str().unwrap_or_default())),
            (Some(1), Some(name), _) => {
                let name = name["content"]["name"].as_str().unwrap_or_default();
                ask(json!({"step2": elicit("Step 2: What is your favorite color?", "color")}), Some(json!({"round": 2, "name": name})))
            }
            _ => ask(json!({"step1": elicit("Step 1: What is your name?", "name")}), Some(json!({"round": 1}))),
        },
        "test_elicitation" => match response("user_info") {
            Some(answer) => Ok(format!("User response: action={}, content={}", answer["action"], answer["content"])),
            None => {
                ask(json!({"user_info": elicit_with(arguments["message"].as_str().unwrap_or_default(), schema("elicit_user_info"))}), None)
            }
        },
        "test_sampling" => match response("completion") {
            Some(answer) => Ok(format!("LLM response: {}", answer["content"]["text"].as_str().unwrap_or_default())),
            None => ask(json!({"completion": sample(arguments["prompt"].as_str().unwrap_or_default(), 100)}), None),
        },
        "test_elicitation_sep1034_defaults" | "test_elicitation_sep1330_enums" => match response("form") {
            Some(answer) => Ok(format!("Elicitation completed: action={}, content={}", answer["action"], answer["content"])),
            None => {
                let name = if tool.ends_with("defaults") { "elicit_sep1034_defaults" } else { "elicit_sep1330_enums" };
                ask(json!({"form": elicit_with("Please fill in the form", schema(name))}), None)
            }
        },
        "test_input_required_result_capabilities" => {
            // Only what the client declared it can answer (core would refuse the rest).
            let declared = |capability: &str| context.client_capabilities.as_deref().is_some_and(|c| c.get(capability).is_some());
            let mut requests = serde_json::Map::new();
            if declared("sampling") {
                requests.insert("capital_question".into(), sample("What is the capital of France?", 100));
            }
            if declared("elicitation") {
                requests.insert("user_name".into(), elicit("What is your name?", "name"));
            }
            match (requests.is_empty(), answers) {
                (false, None) => ask(Value::Object(requests), None),
                _ => Ok("Asked only what the client can answer".to_owned()),
            }
        }
        _ => return None,
    })
}

/// How long the task fixtures work before they answer or ask: longer than core's immediate
/// window, so that a call from a client that negotiated tasks becomes a task.
const WORK: Duration = Duration::from_millis(400);

/// The tasks extension's fixtures that run as tasks; any other tool's completion is given back.
fn task_fixture(invocation: &ToolInvocation, done: Completion) -> Result<(), Completion> {
    let context = invocation.context.clone();
    let response = move |key: &str| context.input.as_deref().and_then(|a| a.responses.get(key).cloned());
    let arguments = invocation.arguments.clone();
    let (work, answer): (Duration, Box<dyn FnOnce(Completion) + Send>) = match invocation.tool.as_str() {
        "slow_compute" => {
            let seconds = arguments["seconds"].as_f64().unwrap_or(0.0).max(0.0);
            let label = arguments["label"].as_str().unwrap_or_default().to_owned();
            (Duration::from_secs_f64(seconds), Box::new(move |done| done.ok(json!(format!("computed {label} in {seconds} s")))))
        }
        "failing_job" => (WORK, Box::new(|done| done.err("failing_job failed, as it always does"))),
        // Drops its completion: the handler ended without an answer, a protocol-level failure.
        "protocol_error_job" => (WORK, Box::new(drop)),
        "confirm_delete" => {
            let filename = arguments["filename"].as_str().unwrap_or_default().to_owned();
            let answer = response("confirm");
            (
                WORK,
                Box::new(move |done| match answer {
                    Some(answer) if answer["action"] == "accept" => done.ok(json!(format!("deleted {filename}"))),
                    Some(_) => done.ok(json!(format!("kept {filename}"))),
                    None => done.input_required(ask(json!({"confirm": elicit(&format!("Delete {filename}?"), "confirm")}))),
                }),
            )
        }
        "multi_input" => {
            let (first, second) = (response("first"), response("second"));
            (
                WORK,
                Box::new(move |done| match (first, second) {
                    (Some(first), Some(second)) => {
                        done.ok(json!(format!("got {} and {}", first["content"]["name"], second["content"]["name"])))
                    }
                    _ => done.input_required(ask(json!({
                        "first": elicit("First question: your name?", "name"),
                        "second": elicit("Second question: your name again?", "name")}))),
                }),
            )
        }
        // Asks in the call itself (at once, so core answers directly), then works as a task.
        "test_tool_with_task" => match response("user_name") {
            None => {
                done.input_required(ask(json!({"user_name": elicit("What is your name?", "name")})));
                return Ok(());
            }
            Some(answer) => {
                let name = answer["content"]["name"].as_str().unwrap_or("stranger").to_owned();
                (WORK, Box::new(move |done| done.ok(json!(format!("Hello, {name}!")))))
            }
        },
        _ => return Err(done),
    };
    let context = invocation.context.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(work) => answer(done),
            // Cancelled (`tasks/cancel`): nobody waits for an answer any more.
            () = context.cancelled() => {}
        }
    });
    Ok(())
}

fn ask(requests: Value) -> InputRequired {
    InputRequired::from_json(json!({"inputRequests": requests})).expect("a fixture asks validly")
}

fn handle(invocation: ToolInvocation, done: Completion) {
    let Err(done) = task_fixture(&invocation, done) else { return };
    if let Some(answer) = input_required(&invocation.tool, &invocation.arguments, &invocation.context) {
        return match answer {
            Ok(text) => done.ok(json!(text)),
            Err(input) => done.input_required(input),
        };
    }
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
            {"name": "test_input_required_result_prompt", "description": "Asks the client for context before it answers"},
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
                "test_input_required_result_prompt" => {
                    let given = invocation.context.input.as_deref().and_then(|a| a.responses.get("user_context"));
                    match given {
                        Some(answer) => {
                            json!([text(&format!("Prompt with context: {}", answer["content"]["context"].as_str().unwrap_or_default()))])
                        }
                        None => {
                            let request = elicit("What context should the prompt use?", "context");
                            return done.input_required(ask(json!({"user_context": request})));
                        }
                    }
                }
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
