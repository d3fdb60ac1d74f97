package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import dev.toolmesh.testkit.Registry;
import dev.toolmesh.testkit.Wait;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Rich tool results (§1 of docs/mcp-features.md), resources, resource templates and prompts (§2),
 * declared in Java and read over MCP from a real agent over mTLS, as a client outside the mesh.
 */
class RichResultsAndCatalogTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
    private static final byte[] PNG = Base64.getDecoder().decode(PNG_BASE64);

    @TempDir
    static Path workDir;

    private static Mesh mesh;
    private static Mcp operator;
    private static MeshAgent agent;
    private static MeshAgent reader;

    @BeforeAll
    static void startAgent() {
        mesh = new Mesh(workDir);
        Certs certs = mesh.certs("writer", "reader");
        Registry registry = mesh.startRegistry();
        operator = new Mcp(certs.clientContext("operator"));
        agent = Toolmesh.agent("writer").options(certs.options("writer"))
                .option("registry_url", registry.url()).option("heartbeat_interval_ms", Mesh.HEARTBEAT_MS)
                .tool(ToolDefinition.builder("picture").handler(call -> ToolResult.builder()
                        .text("a red pixel")
                        .image(PNG, "image/png")
                        .resourceLink("file:///pictures/red.png", "red.png", "image/png")
                        .embeddedText("test://meta", "application/json", "{\"w\":1}")
                        .build()).build())
                .tool(ToolDefinition.builder("counted").handler(call -> CompletableFuture.supplyAsync(() -> ToolResult.builder()
                        .structured(Map.of("count", 3)).build())).build())
                .tool(ToolDefinition.builder("declined").handler(call -> ToolResult.builder().text("not today").error(true).build()).build())
                .tool(ToolDefinition.builder("broken").handler(call -> ToolResult.builder()
                        .text("fine")
                        .item(Map.of("type", "image", "data", "not base64!", "mimeType", "image/png"))
                        .build()).build())
                .resource(Resource.builder("test://static-text", "static-text").mimeType("text/plain")
                        .text("This is the content of the static text resource.").build())
                .resource(Resource.builder("test://static-binary", "static-binary").mimeType("image/png").blob(PNG).build())
                .resource(Resource.builder("test://empty", "empty").handler(read -> Map.of("contents", List.of())).build())
                .resourceTemplate(ResourceTemplate.builder("test://template/{id}/data", "template-data").mimeType("application/json")
                        .description("Data for an id").handler(read -> {
                            assertTrue(Thread.currentThread().getName().startsWith("toolmesh-writer-"), Thread.currentThread().getName());
                            return "{\"id\":\"" + read.variable("id") + "\",\"template\":\"" + read.uriTemplate() + "\"}";
                        }).build())
                .resourceTemplate(ResourceTemplate.builder("test://bytes/{n}", "bytes").handler(read ->
                        CompletableFuture.completedFuture(read.variable("n").getBytes(StandardCharsets.UTF_8))).build())
                .prompt(Prompt.builder("test_simple_prompt").description("A simple prompt").handler(get -> "Hello").build())
                .prompt(Prompt.builder("forecast").argument("city", null, true, List.of("Paris", "Pamplona", "Berlin"))
                        .handler(get -> "x").build())
                .prompt(Prompt.builder("test_prompt_with_arguments").description("Two arguments")
                        .argument("arg1", "first", true).argument("arg2", null, false)
                        .handler(get -> PromptResult.builder().description("with " + get.argument("arg1"))
                                .user("Prompt with arguments: arg1='" + get.argument("arg1") + "', arg2='" + get.argument("arg2") + "'")
                                .message("assistant", Map.of("type", "image", "data", PNG_BASE64, "mimeType", "image/png"))
                                .build())
                        .build())
                .prompt(Prompt.builder("failing").handler(get -> {
                    throw new IllegalStateException("no prompt today");
                }).build())
                .register(new Annotated())
                .start();
        // A Java agent calling the rich tools through the mesh, as a proxy caller sees them.
        reader = Toolmesh.agent("reader").options(certs.options("reader"))
                .option("registry_url", registry.url()).option("heartbeat_interval_ms", Mesh.HEARTBEAT_MS)
                .tool(ToolDefinition.builder("look").dependsOn("counted").dependsOn("declined").handler(call -> {
                    JsonNode counted = call.proxy("counted").call(Map.of()).join();
                    String declined = call.proxy("declined").call(Map.of()).handle((v, thrown) -> String.valueOf(thrown.getCause())).join();
                    return Map.of("counted", counted, "declined", declined);
                }).build())
                // The whole result of a dependency, answered as it came.
                .tool(ToolDefinition.builder("relay_picture").dependsOn("picture").handler(call -> call.proxy("picture").callResult(Map.of()))
                        .build())
                .start();
    }

    /** The same declarations by annotation: parameters are template variables and prompt arguments, by name. */
    public static class Annotated {
        @MeshResource(uri = "test://annotated/{kind}/{id}", name = "annotated", mimeType = "text/plain")
        public String item(String kind, String id) {
            return kind + ":" + id;
        }

        @MeshResource(uri = "test://annotated-plain", description = "read through the method")
        public CompletableFuture<String> plain(ResourceRead read) {
            return CompletableFuture.completedFuture("read " + read.uri() + " as " + read.name());
        }

        @MeshPrompt(description = "Greets someone")
        public String greet(String name, Optional<String> style) {
            return "Say hello to " + name + style.map(s -> " in a " + s + " way").orElse("");
        }
    }

    @AfterAll
    static void stop() {
        if (reader != null) {
            reader.close();
        }
        if (agent != null) {
            agent.close();
        }
        mesh.close();
    }

    private static JsonNode json(String text) {
        try {
            return JSON.readTree(text);
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    private static JsonNode request(String method, Object params, String mcpName) {
        return operator.request(agent.endpoint(), method, params, mcpName);
    }

    @Test
    void aToolReturningAnImageAndTextAnswersEveryItemAsGiven() {
        JsonNode result = operator.callResult(agent.endpoint(), "picture", Map.of());
        assertEquals(json("""
                [{"type": "text", "text": "a red pixel"},
                 {"type": "image", "data": "%s", "mimeType": "image/png"},
                 {"type": "resource_link", "uri": "file:///pictures/red.png", "name": "red.png", "mimeType": "image/png"},
                 {"type": "resource", "resource": {"uri": "test://meta", "mimeType": "application/json", "text": "{\\"w\\":1}"}}]
                """.formatted(PNG_BASE64)), result.get("content"), result.toString());
        assertEquals(false, result.path("isError").asBoolean(true), result.toString());
    }

    @Test
    void aToolReturningStructuredContentGetsItsTextRenderingToo() {
        JsonNode result = operator.callResult(agent.endpoint(), "counted", Map.of());
        assertEquals(json("{\"count\": 3}"), result.get("structuredContent"), result.toString());
        assertEquals(json("[{\"type\": \"text\", \"text\": \"{\\\"count\\\":3}\"}]"), result.get("content"), result.toString());
    }

    @Test
    void aToolResultMarkedAsAnErrorIsTheToolsOwnAnswerNotAMeshError() {
        JsonNode result = operator.callResult(agent.endpoint(), "declined", Map.of());
        assertEquals(json("{\"content\": [{\"type\": \"text\", \"text\": \"not today\"}], \"isError\": true}"),
                ((com.fasterxml.jackson.databind.node.ObjectNode) result.deepCopy()).without(List.of("_meta", "resultType")), result.toString());
        assertTrue(result.path("_meta").path("dev.toolmesh/error").isMissingNode(), result.toString());
    }

    @Test
    void aJavaCallerThroughTheMeshGetsTheStructuredContentOrTheToolsOwnFailure() {
        JsonNode seen = Wait.eventually(Duration.ofSeconds(20), "look to answer", () -> operator.call(reader.endpoint(), "look", Map.of(), Map.of()));
        // The structuredContent; and a result the tool marked isError is a failure, with its text.
        assertEquals(json("{\"count\": 3}"), seen.get("counted"), seen.toString());
        assertEquals("dev.toolmesh.ToolmeshException: [5001 TOOL_FAILED] tool 'declined' failed: not today", seen.path("declined").asText(), seen.toString());
    }

    @Test
    void aDependencysWholeResultPassesThroughAJavaHandlerUnchanged() {
        JsonNode direct = operator.callResult(agent.endpoint(), "picture", Map.of());
        JsonNode relayed = Wait.eventually(Duration.ofSeconds(20), "relay_picture to answer",
                () -> {
                    JsonNode answer = operator.callResult(reader.endpoint(), "relay_picture", Map.of());
                    return answer.path("isError").asBoolean() ? null : answer; // until the registry names the provider
                });
        assertEquals(direct.get("content"), relayed.get("content"), relayed.toString());
        assertEquals(4, relayed.get("content").size(), relayed.toString());
        ToolResult parsed = ToolResult.fromJson(relayed.toString());
        assertEquals("image", parsed.content().get(1).path("type").asText());
        assertEquals(null, parsed.structured());
    }

    @Test
    void completionOffersTheValuesAnArgumentDeclares() {
        JsonNode answer = request("completion/complete",
                Map.of("ref", Map.of("type", "ref/prompt", "name", "forecast"), "argument", Map.of("name", "city", "value", "pa")), null);
        assertEquals(json("{\"values\": [\"Paris\", \"Pamplona\"], \"total\": 2, \"hasMore\": false}"),
                answer.path("result").path("completion"), answer.toString());
    }

    @Test
    void anInvalidToolResultIsTheCallersHandlerResultNamingTheItem() {
        JsonNode error = operator.callError(agent.endpoint(), "broken", Map.of());
        assertEquals("HANDLER_RESULT", error.path("name").asText(), error.toString());
        assertEquals("tool 'broken' returned an invalid tool result: content[1]: image 'data' is not base64 (standard alphabet, padded)",
                error.path("message").asText(), error.toString());
    }

    @Test
    void resourcesAndTemplatesAreListedInDeclarationOrder() {
        JsonNode resources = request("resources/list", Map.of(), null).path("result").path("resources");
        assertEquals(json("""
                [{"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain"},
                 {"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png"},
                 {"uri": "test://empty", "name": "empty"},
                 {"uri": "test://annotated-plain", "name": "plain", "description": "read through the method"}]
                """), resources);
        JsonNode templates = request("resources/templates/list", Map.of(), null).path("result").path("resourceTemplates");
        assertEquals(json("""
                [{"uriTemplate": "test://template/{id}/data", "name": "template-data", "description": "Data for an id", "mimeType": "application/json"},
                 {"uriTemplate": "test://bytes/{n}", "name": "bytes"},
                 {"uriTemplate": "test://annotated/{kind}/{id}", "name": "annotated", "mimeType": "text/plain"}]
                """), templates);
    }

    @Test
    void staticResourcesAreAnsweredByCore() {
        JsonNode text = request("resources/read", Map.of("uri", "test://static-text"), "test://static-text");
        assertEquals(json("""
                [{"uri": "test://static-text", "mimeType": "text/plain", "text": "This is the content of the static text resource."}]
                """), text.path("result").path("contents"), text.toString());
        JsonNode binary = request("resources/read", Map.of("uri", "test://static-binary"), "test://static-binary");
        assertEquals(json("[{\"uri\": \"test://static-binary\", \"mimeType\": \"image/png\", \"blob\": \"" + PNG_BASE64 + "\"}]"),
                binary.path("result").path("contents"), binary.toString());
    }

    @Test
    void aTemplateResourceIsReadThroughItsHandlerWithItsVariable() {
        JsonNode read = request("resources/read", Map.of("uri", "test://template/42/data"), "test://template/42/data");
        assertEquals(json("""
                [{"uri": "test://template/42/data", "mimeType": "application/json",
                  "text": "{\\"id\\":\\"42\\",\\"template\\":\\"test://template/{id}/data\\"}"}]
                """), read.path("result").path("contents"), read.toString());
        JsonNode bytes = request("resources/read", Map.of("uri", "test://bytes/abc"), "test://bytes/abc");
        assertEquals(json("[{\"uri\": \"test://bytes/abc\", \"blob\": \"YWJj\"}]"), bytes.path("result").path("contents"), bytes.toString());
    }

    @Test
    void anEmptyReadAnswerIsAHandlerResultError() {
        JsonNode read = request("resources/read", Map.of("uri", "test://empty"), "test://empty");
        assertEquals(-32603, read.path("error").path("code").asInt(), read.toString());
        assertEquals("HANDLER_RESULT", read.path("error").path("data").path("name").asText(), read.toString());
        assertTrue(read.path("error").path("message").asText().contains("contents"), read.toString());
    }

    @Test
    void promptsAreListedAndGotWithTheirArguments() {
        JsonNode prompts = request("prompts/list", Map.of(), null).path("result").path("prompts");
        assertEquals(json("""
                [{"name": "test_simple_prompt", "description": "A simple prompt"},
                 {"name": "forecast", "arguments": [{"name": "city", "required": true}]},
                 {"name": "test_prompt_with_arguments", "description": "Two arguments", "arguments": [
                    {"name": "arg1", "description": "first", "required": true}, {"name": "arg2", "required": false}]},
                 {"name": "failing"},
                 {"name": "greet", "description": "Greets someone", "arguments": [
                    {"name": "name", "required": true}, {"name": "style", "required": false}]}]
                """), prompts);

        JsonNode simple = request("prompts/get", Map.of("name", "test_simple_prompt"), "test_simple_prompt");
        assertEquals(json("[{\"role\": \"user\", \"content\": {\"type\": \"text\", \"text\": \"Hello\"}}]"),
                simple.path("result").path("messages"), simple.toString());

        JsonNode got = request("prompts/get", Map.of("name", "test_prompt_with_arguments", "arguments", Map.of("arg1", "a", "arg2", "b")),
                "test_prompt_with_arguments");
        assertEquals("with a", got.path("result").path("description").asText(), got.toString());
        assertEquals(json("""
                [{"role": "user", "content": {"type": "text", "text": "Prompt with arguments: arg1='a', arg2='b'"}},
                 {"role": "assistant", "content": {"type": "image", "data": "%s", "mimeType": "image/png"}}]
                """.formatted(PNG_BASE64)), got.path("result").path("messages"), got.toString());

        JsonNode missing = request("prompts/get", Map.of("name", "test_prompt_with_arguments"), "test_prompt_with_arguments");
        assertEquals(-32602, missing.path("error").path("code").asInt(), missing.toString());
        assertTrue(missing.path("error").path("message").asText().contains("arg1"), missing.toString());
    }

    @Test
    void annotatedMethodsReadResourcesAndGetPrompts() {
        JsonNode item = request("resources/read", Map.of("uri", "test://annotated/fruit/7"), "test://annotated/fruit/7");
        assertEquals(json("[{\"uri\": \"test://annotated/fruit/7\", \"mimeType\": \"text/plain\", \"text\": \"fruit:7\"}]"),
                item.path("result").path("contents"), item.toString());
        JsonNode plain = request("resources/read", Map.of("uri", "test://annotated-plain"), "test://annotated-plain");
        assertEquals(json("[{\"uri\": \"test://annotated-plain\", \"text\": \"read test://annotated-plain as plain\"}]"),
                plain.path("result").path("contents"), plain.toString());
        JsonNode greet = request("prompts/get", Map.of("name", "greet", "arguments", Map.of("name", "Ada", "style", "kind")), "greet");
        assertEquals(json("[{\"role\": \"user\", \"content\": {\"type\": \"text\", \"text\": \"Say hello to Ada in a kind way\"}}]"),
                greet.path("result").path("messages"), greet.toString());
        JsonNode plainGreet = request("prompts/get", Map.of("name", "greet", "arguments", Map.of("name", "Bo")), "greet");
        assertEquals("Say hello to Bo", plainGreet.path("result").path("messages").path(0).path("content").path("text").asText(), plainGreet.toString());
    }

    public static class WrongParameter {
        @MeshPrompt
        public String count(int times) {
            return "x".repeat(times);
        }
    }

    @Test
    void aPromptParameterThatIsNoStringIsRefusedWhenRegistered() {
        IllegalArgumentException refused = assertThrows(IllegalArgumentException.class, () -> Toolmesh.agent("x").register(new WrongParameter()));
        assertEquals("@MeshPrompt WrongParameter.count: parameter 'times' must be a String (a required argument), an Optional<String> or a PromptGet",
                refused.getMessage());
    }

    @Test
    void aPromptHandlerThatThrowsIsHandlerFailedWithItsMessage() {
        JsonNode failed = request("prompts/get", Map.of("name", "failing"), "failing");
        assertEquals("HANDLER_FAILED", failed.path("error").path("data").path("name").asText(), failed.toString());
        assertTrue(failed.path("error").path("message").asText().contains("no prompt today"), failed.toString());
    }

    @Test
    void anInvalidCatalogIsRefusedByCoreNamingTheEntry() {
        ToolmeshException refused = assertThrows(ToolmeshException.class, () -> Toolmesh.agent("writer")
                .options(mesh.certs().options("writer"))
                .resourceTemplate(ResourceTemplate.builder("test://{a}{b}", "pair").handler(read -> "x").build())
                .start());
        assertEquals("INVALID_CONFIG", refused.kind());
        assertTrue(refused.getMessage().contains("resourceTemplates[0].uriTemplate 'test://{a}{b}'"), refused.getMessage());
    }
}
