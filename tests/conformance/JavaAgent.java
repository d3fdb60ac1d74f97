import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.toolmesh.InputRequired;
import dev.toolmesh.MeshAgent;
import dev.toolmesh.Prompt;
import dev.toolmesh.PromptResult;
import dev.toolmesh.RequestContext;
import dev.toolmesh.Resource;
import dev.toolmesh.ResourceTemplate;
import dev.toolmesh.ToolCall;
import dev.toolmesh.ToolDefinition;
import dev.toolmesh.ToolHandler;
import dev.toolmesh.ToolResult;
import dev.toolmesh.Toolmesh;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The official MCP conformance suite's fixtures on a Java agent ({@code scripts/conformance.sh
 * --agent java}, run as a source file against the installed jar): the same tools, resources and
 * prompts as core's {@code conformance_agent} example, written with the Java binding's public API
 * only, so the suite judges what a Java author gets.
 *
 * <p>Configured like any agent, through {@code TOOLMESH_*} variables, and given the path of
 * {@code tests/conformance/schemas.json}; prints {@code endpoint <url>} once it listens and serves
 * until its standard input closes.
 */
public final class JavaAgent {
    // A 1x1 red PNG and a minimal WAV, the suite's own samples.
    private static final byte[] PNG = Base64.getDecoder().decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==");
    private static final byte[] WAV = Base64.getDecoder().decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=");
    private static final String EMPTY = "{\"type\": \"object\", \"properties\": {}}";
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The schemas every language's fixture agent shares (tests/conformance/schemas.json, the first argument). */
    private final JsonNode schemas;
    private static final Map<String, Object> ROOTS = Map.of("method", "roots/list", "params", Map.of());

    private final List<ToolDefinition> tools = new ArrayList<>();

    private JavaAgent(JsonNode schemas) {
        this.schemas = schemas;
    }

    private void tool(String name, String description, ToolHandler handler) {
        tool(name, description, EMPTY, handler);
    }

    private void tool(String name, String description, String inputSchema, ToolHandler handler) {
        tools.add(ToolDefinition.builder(name).description(description).inputSchema(inputSchema).handler(handler).build());
    }

    // --- Tools answering text, errors and rich content -----------------------------------------

    private void richTools() {
        tool("test_simple_text", "Returns a simple text response", call -> "This is a simple text response for testing.");
        tool("test_error_handling", "Always fails, to test error reporting", call -> {
            throw new IllegalStateException("This tool intentionally returns an error for testing");
        });
        tool("test_image_content", "Returns an image", call -> ToolResult.builder().image(PNG, "image/png").build());
        tool("test_audio_content", "Returns audio", call -> ToolResult.builder().audio(WAV, "audio/wav").build());
        tool("test_embedded_resource", "Returns an embedded resource", call -> ToolResult.builder()
                .embeddedText("test://embedded-resource", "text/plain", "This is an embedded resource content.").build());
        tool("test_multiple_content_types", "Returns text, an image and an embedded resource", call -> ToolResult.builder()
                .text("Multiple content types test:")
                .image(PNG, "image/png")
                .embeddedText("test://mixed-content-resource", "application/json", "{\"test\":\"data\",\"value\":123}")
                .build());
        tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", call -> {
            double[] steps = {0, 50, 100};
            for (int i = 0; i < steps.length; i++) {
                if (i > 0) {
                    Thread.sleep(50);
                }
                call.context().progress(steps[i], 100, null);
            }
            return "Progress reported: 0, 50 and 100 of 100";
        });
        tool("test_tool_with_logging", "Logs three messages at info level", JavaAgent::logThree);
        tool("test_logging_tool", "Logs a message (sent only to a client that asked for a level)", JavaAgent::logThree);
        tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", schemas.get("json_schema_2020_12_tool").toString(),
                call -> "received " + call.arguments());
        tool("greet", "Says hello (synchronous, no task support)",
                "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}}, \"required\": [\"name\"]}",
                call -> "Hello, " + call.argument("name", String.class) + "!");
        tools.add(ToolDefinition.builder("test_missing_capability").description("Needs the client's sampling capability")
                .inputSchema(EMPTY).requiresClientCapabilities("sampling").handler(call -> "The client declared sampling").build());
        tool("test_headers", "Echoes a parameter that callers mirror in the Mcp-Param-Region header",
                "{\"type\": \"object\", \"properties\": {\"region\": {\"type\": \"string\", \"x-mcp-header\": \"Region\"}},"
                        + " \"required\": [\"region\"]}",
                call -> "region \"" + call.argument("region", String.class) + "\"");
    }

    // --- The tasks extension (SEP-2663): these run as tasks for a client that negotiated it ----

    /** Past core's 100 ms window for a direct answer, so the call becomes a task. */
    private static final long WORK_MS = 400;

    private void task(String name, String taskSupport, String description, String inputSchema, ToolHandler handler) {
        tools.add(ToolDefinition.builder(name).description(description).inputSchema(inputSchema).taskSupport(taskSupport).handler(handler).build());
    }

    private void taskTools() {
        task("slow_compute", "optional", "Sleeps the given seconds, then answers with its label",
                "{\"type\": \"object\", \"properties\": {\"seconds\": {\"type\": \"number\", \"minimum\": 0}, \"label\": {\"type\": \"string\"}}}",
                call -> {
                    double seconds = Math.max(call.arguments().path("seconds").asDouble(0), 0);
                    Thread.sleep((long) (seconds * 1000)); // tasks/cancel interrupts it
                    return "computed " + call.arguments().path("label").asText("") + " in " + seconds + " s";
                });
        task("failing_job", "required", "Works for a second, then reports a tool error", EMPTY, call -> {
            Thread.sleep(WORK_MS);
            throw new IllegalStateException("failing_job failed, as it always does");
        });
        task("protocol_error_job", "optional", "Works for a second, then ends without an answer", EMPTY, call -> {
            Thread.sleep(WORK_MS);
            Map<String, Object> cycle = new java.util.HashMap<>();
            cycle.put("self", cycle);
            return cycle; // not JSON: core fails the task with a protocol error
        });
        task("confirm_delete", "optional", "Looks the file up, asks the client to confirm, then deletes it",
                "{\"type\": \"object\", \"properties\": {\"filename\": {\"type\": \"string\"}}}", call -> {
                    Thread.sleep(WORK_MS);
                    String filename = call.arguments().path("filename").asText("");
                    JsonNode given = answer(call, "confirm");
                    if (given == null) {
                        return InputRequired.of(Map.of("confirm", elicit("Delete " + filename + "?", "confirm")), null);
                    }
                    return (given.path("action").asText().equals("accept") ? "deleted " : "kept ") + filename;
                });
        task("multi_input", "optional", "Asks two questions at once, then answers with both", EMPTY, call -> {
            Thread.sleep(WORK_MS);
            JsonNode first = answer(call, "first");
            JsonNode second = answer(call, "second");
            if (first == null || second == null) {
                return InputRequired.of(Map.of("first", elicit("First question: your name?", "name"),
                        "second", elicit("Second question: your name again?", "name")), null);
            }
            return "got " + first.path("content").path("name") + " and " + second.path("content").path("name");
        });
        task("test_tool_with_task", "required", "Asks for the user's name in the call itself, then greets them from a task", EMPTY, call -> {
            JsonNode given = answer(call, "user_name");
            if (given == null) { // at once, so core answers directly
                return InputRequired.of(Map.of("user_name", elicit("What is your name?", "name")), null);
            }
            Thread.sleep(WORK_MS);
            return "Hello, " + given.path("content").path("name").asText("stranger") + "!";
        });
    }

    private static Object logThree(ToolCall call) throws InterruptedException {
        String[] messages = {"Tool execution started", "Tool processing data", "Tool execution completed"};
        for (int i = 0; i < messages.length; i++) {
            if (i > 0) {
                Thread.sleep(50);
            }
            call.context().log("info", messages[i]);
        }
        return "Logged three messages at info level";
    }

    // --- Input requests (SEP-2322): answered by the client in a later call ---------------------

    private static Map<String, Object> elicit(String message, String field) {
        return elicitWith(message, Map.of("type", "object", "properties", Map.of(field, Map.of("type", "string")), "required", List.of(field)));
    }

    private static Map<String, Object> elicitWith(String message, Object requestedSchema) {
        return Map.of("method", "elicitation/create", "params", Map.of("message", message, "requestedSchema", requestedSchema));
    }

    private static Map<String, Object> sample(String question, int maxTokens) {
        return Map.of("method", "sampling/createMessage", "params", Map.of("messages",
                List.of(Map.of("role", "user", "content", Map.of("type", "text", "text", question))), "maxTokens", maxTokens));
    }

    /** The client's answer to request {@code key}, or null. */
    private static JsonNode answer(ToolCall call, String key) {
        JsonNode answers = call.context().inputResponses();
        return answers == null || !answers.has(key) ? null : answers.get(key);
    }

    private static int round(ToolCall call) {
        JsonNode state = call.context().requestState();
        return state == null ? 0 : state.path("round").asInt(0);
    }

    private static Object askName(ToolCall call) {
        JsonNode given = answer(call, "user_name");
        if (given == null) {
            return InputRequired.of(Map.of("user_name", elicit("What is your name?", "name")), null);
        }
        return "Hello, " + given.path("content").path("name").asText("stranger") + "!";
    }

    private static Object confirm(ToolCall call) {
        JsonNode state = call.context().requestState();
        if (answer(call, "confirm") != null && state != null && state.path("asked").asText().equals("confirm")) {
            return "Confirmed: state-ok";
        }
        return InputRequired.of(Map.of("confirm", Map.of("method", "elicitation/create", "params", Map.of("message", "Please confirm",
                "requestedSchema", Map.of("type", "object", "properties", Map.of("ok", Map.of("type", "boolean")), "required", List.of("ok"))))),
                Map.of("asked", "confirm"));
    }

    private void inputTools() {
        tool("test_input_required_result_elicitation", "Asks the client for the user's name", JavaAgent::askName);
        tool("test_streaming_elicitation", "Asks the client for the user's name, on the request's stream", JavaAgent::askName);
        tool("test_input_required_result_sampling", "Asks the client's model a question", call -> {
            JsonNode given = answer(call, "capital_question");
            if (given == null) {
                return InputRequired.of(Map.of("capital_question", sample("What is the capital of France?", 100)), null);
            }
            return "The model answered: " + given.path("content").path("text").asText();
        });
        tool("test_input_required_result_list_roots", "Asks the client for its roots", call -> {
            JsonNode given = answer(call, "client_roots");
            if (given == null) {
                return InputRequired.of(Map.of("client_roots", ROOTS), null);
            }
            List<String> uris = new ArrayList<>();
            given.path("roots").forEach(root -> uris.add(root.path("uri").asText()));
            return "The client's roots: " + String.join(", ", uris);
        });
        tool("test_input_required_result_request_state", "Asks for a confirmation, with state to get back", JavaAgent::confirm);
        tool("test_input_required_result_tampered_state", "Asks with state that core seals", JavaAgent::confirm);
        tool("test_input_required_result_multiple_inputs", "Asks for a name, a greeting and the roots at once", call -> {
            boolean all = answer(call, "user_name") != null && answer(call, "greeting") != null && answer(call, "client_roots") != null;
            if (all && call.context().requestState() != null) {
                return "Received a name, a greeting and the roots";
            }
            return InputRequired.of(Map.of("user_name", elicit("What is your name?", "name"),
                    "greeting", sample("Generate a greeting", 50), "client_roots", ROOTS), Map.of("asked", "all three"));
        });
        tool("test_input_required_result_multi_round", "Asks for a name, then a colour", call -> {
            if (round(call) == 2 && answer(call, "step2") != null) {
                return "Favourite colour: " + answer(call, "step2").path("content").path("color").asText();
            }
            if (round(call) == 1 && answer(call, "step1") != null) {
                String name = answer(call, "step1").path("content").path("name").asText();
                return InputRequired.of(Map.of("step2", elicit("Step 2: What is your favorite color?", "color")),
                        Map.of("round", 2, "name", name));
            }
            return InputRequired.of(Map.of("step1", elicit("Step 1: What is your name?", "name")), Map.of("round", 1));
        });
        tool("test_input_required_result_capabilities", "Asks only what the client declared it can answer", call -> {
            RequestContext context = call.context();
            JsonNode declared = context.clientCapabilities();
            Map<String, Object> requests = new LinkedHashMap<>();
            if (declared != null && declared.has("sampling")) {
                requests.put("capital_question", sample("What is the capital of France?", 100));
            }
            if (declared != null && declared.has("elicitation")) {
                requests.put("user_name", elicit("What is your name?", "name"));
            }
            if (!requests.isEmpty() && context.inputResponses() == null) {
                return InputRequired.of(requests, null);
            }
            return "Asked only what the client can answer";
        });
    }

    /** Legacy (2025-11-25) clients get these requests on the call's stream (core sends them). */
    private void legacyTools() {
        tool("test_elicitation", "Asks the user for a name and an email",
                "{\"type\": \"object\", \"properties\": {\"message\": {\"type\": \"string\"}}, \"required\": [\"message\"]}", call -> {
                    JsonNode given = answer(call, "user_info");
                    if (given == null) {
                        return InputRequired.of(Map.of("user_info", elicitWith(call.argument("message", String.class), schemas.get("elicit_user_info"))), null);
                    }
                    return "User response: action=" + given.path("action") + ", content=" + given.path("content");
                });
        tool("test_sampling", "Asks the client's model to answer a prompt",
                "{\"type\": \"object\", \"properties\": {\"prompt\": {\"type\": \"string\"}}, \"required\": [\"prompt\"]}", call -> {
                    JsonNode given = answer(call, "completion");
                    if (given == null) {
                        return InputRequired.of(Map.of("completion", sample(call.argument("prompt", String.class), 100)), null);
                    }
                    return "LLM response: " + given.path("content").path("text").asText();
                });
        tool("test_elicitation_sep1034_defaults", "Asks with a default for every primitive type", call -> form(call, "elicit_sep1034_defaults"));
        tool("test_elicitation_sep1330_enums", "Asks with every kind of enum", call -> form(call, "elicit_sep1330_enums"));
    }

    private Object form(ToolCall call, String schema) {
        JsonNode given = answer(call, "form");
        if (given == null) {
            return InputRequired.of(Map.of("form", elicitWith("Please fill in the form", schemas.get(schema))), null);
        }
        return "Elicitation completed: action=" + given.path("action") + ", content=" + given.path("content");
    }

    // --- Resources and prompts -----------------------------------------------------------------

    public static void main(String[] args) throws Exception {
        JavaAgent fixtures = new JavaAgent(JSON.readTree(Path.of(args[0]).toFile()));
        fixtures.richTools();
        fixtures.inputTools();
        fixtures.legacyTools();
        fixtures.taskTools();
        var builder = Toolmesh.agent("conformance");
        fixtures.tools.forEach(builder::tool);
        builder.resource(Resource.builder("test://static-text", "static-text").description("A static text resource")
                .mimeType("text/plain").text("This is the content of the static text resource.").build());
        builder.resource(Resource.builder("test://static-binary", "static-binary").description("A static binary resource (a PNG)")
                .mimeType("image/png").blob(PNG).build());
        builder.resource(Resource.builder("test://watched-resource", "watched-resource").description("A resource a client may watch")
                .mimeType("text/plain").text("Watched resource content.").build());
        builder.resourceTemplate(ResourceTemplate.builder("test://template/{id}/data", "template-data")
                .description("Data for an id, read through the handler").mimeType("application/json")
                .handler(read -> {
                    String id = read.variable("id");
                    String data = "{\"id\":\"" + id + "\",\"templateTest\":true,\"data\":\"Data for ID: " + id + "\"}";
                    return Map.of("contents", List.of(Map.of("uri", read.uri(), "mimeType", "application/json", "text", data)));
                }).build());
        builder.prompt(Prompt.builder("test_simple_prompt").description("A simple prompt without arguments")
                .handler(get -> "This is a simple prompt for testing.").build());
        builder.prompt(Prompt.builder("test_prompt_with_arguments").description("A prompt with two required arguments")
                .argument("arg1", "First test argument", true).argument("arg2", "Second test argument", true)
                .handler(get -> "Prompt with arguments: arg1='" + get.argument("arg1") + "', arg2='" + get.argument("arg2") + "'").build());
        builder.prompt(Prompt.builder("test_prompt_with_embedded_resource").description("A prompt embedding a resource")
                .argument("resourceUri", "URI of the resource to embed", true)
                .handler(get -> PromptResult.builder()
                        .message("user", Map.of("type", "resource", "resource", Map.of("uri", get.argument("resourceUri"),
                                "mimeType", "text/plain", "text", "Embedded resource content for testing.")))
                        .user("Please process the embedded resource above.").build()).build());
        builder.prompt(Prompt.builder("test_prompt_with_image").description("A prompt with an image")
                .handler(get -> PromptResult.builder()
                        .message("user", Map.of("type", "image", "data", Base64.getEncoder().encodeToString(PNG), "mimeType", "image/png"))
                        .user("Please analyze the image above.").build()).build());
        builder.prompt(Prompt.builder("test_input_required_result_prompt").description("Asks the client for context before it answers")
                .handler(get -> {
                    JsonNode answers = get.context().inputResponses();
                    if (answers == null || !answers.has("user_context")) {
                        return InputRequired.of(Map.of("user_context", elicit("What context should the prompt use?", "context")), null);
                    }
                    return "Prompt with context: " + answers.path("user_context").path("content").path("context").asText();
                }).build());
        try (MeshAgent agent = builder.start()) {
            System.out.println("endpoint " + agent.endpoint());
            System.out.flush();
            // Serve until the script that started us closes our standard input (or dies).
            System.in.transferTo(java.io.OutputStream.nullOutputStream());
        }
    }
}
