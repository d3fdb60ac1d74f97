package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a Java tool declares about its answers and its clients, read over MCP from a real agent
 * over mTLS: an output schema (from a record) is listed and every answer held to it; a tool that
 * needs a client capability refuses a modern client that did not declare it (-32021); and the
 * handler's context names the caller and the capabilities its client declared.
 */
class ToolContractTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path workDir;

    private static MeshAgent agent;
    private static Mcp operator;
    private static Certs certs;
    private static final List<Object> seen = new CopyOnWriteArrayList<>();

    public record Count(int count) {}

    public static final class Tools {
        @MeshTool(outputSchema = Count.class)
        public Object counted(boolean honest) {
            return honest ? new Count(3) : Map.of("count", "three");
        }

        @MeshTool(requiredClientCapabilities = "sampling")
        public String sampler() {
            RequestContext context = Toolmesh.context().orElseThrow();
            seen.add(context.caller());
            seen.add(context.clientCapabilities());
            return "sampled";
        }
    }

    public static final class Asker {
        @MeshTool
        public Object greet() {
            RequestContext context = Toolmesh.context().orElseThrow();
            seen.add(java.util.Arrays.asList(context.inputResponses(), context.requestState()));
            JsonNode answers = context.inputResponses();
            if (answers == null || !answers.has("name")) {
                return InputRequired.of(Map.of("name", Map.of("method", "elicitation/create",
                        "params", Map.of("message", "Who are you?", "requestedSchema", Map.of("type", "object")))),
                        Map.of("asked", "name"));
            }
            return "Hello, " + answers.path("name").path("content").path("name").asText() + "!";
        }
    }

    @BeforeAll
    static void startAgent() {
        Mesh mesh = new Mesh(workDir);
        certs = mesh.certs("contract");
        operator = new Mcp(certs.clientContext("operator"));
        agent = Toolmesh.agent("contract").options(certs.options("contract")).register(new Tools()).register(new Asker()).start();
    }

    @AfterAll
    static void stopAgent() {
        if (agent != null) {
            agent.close();
        }
    }

    @Test
    void anOutputSchemaIsListedAndEveryAnswerIsHeldToIt() {
        JsonNode listed = operator.request(agent.endpoint(), "tools/list", Map.of(), null);
        JsonNode counted = null;
        for (JsonNode tool : listed.path("result").path("tools")) {
            if (tool.path("name").asText().equals("counted")) {
                counted = tool;
            }
        }
        assertEquals(JSON.valueToTree(Map.of("type", "object", "properties", Map.of("count", Map.of("type", "integer")),
                "required", List.of("count"))), counted.path("outputSchema"), String.valueOf(counted));
        assertEquals(3, operator.call(agent.endpoint(), "counted", Map.of("honest", true), Map.of()).path("count").asInt());
        JsonNode refused = operator.callResult(agent.endpoint(), "counted", Map.of("honest", false));
        assertTrue(refused.path("isError").asBoolean(), refused::toString);
        assertEquals("tool 'counted' returned structuredContent that does not match its outputSchema: "
                + "member 'count' must be of type integer, got string", refused.path("content").get(0).path("text").asText());
    }

    @Test
    void aModernClientWithoutARequiredCapabilityIsRefusedAndOneWithItIsSeen() {
        seen.clear();
        JsonNode refused = operator.messages(agent.endpoint(), "sampler", Map.of(), Map.of()).get(0);
        assertEquals(-32021, refused.path("error").path("code").asInt(), refused::toString);
        assertEquals(JSON.valueToTree(Map.of("requiredCapabilities", Map.of("sampling", Map.of()))), refused.path("error").path("data"));

        Map<String, Object> declared = Map.of("sampling", Map.of());
        JsonNode served = operator.messages(agent.endpoint(), "sampler", Map.of(),
                Map.of("io.modelcontextprotocol/clientCapabilities", declared)).get(0);
        assertEquals("sampled", served.path("result").path("structuredContent").asText(), served::toString);
        assertEquals(List.of("spiffe://toolmesh.local/operator/operator", JSON.valueToTree(declared)), seen);
    }

    @Test
    void aToolAsksTheClientForInputAndTheSecondCallBringsTheAnswersAndTheState() {
        seen.clear();
        Map<String, Object> elicitation = Map.of("io.modelcontextprotocol/clientCapabilities", Map.of("elicitation", Map.of()));
        JsonNode first = operator.messages(agent.endpoint(), "greet", Map.of(), elicitation).get(0).path("result");
        assertEquals("input_required", first.path("resultType").asText(), first::toString);
        assertEquals("elicitation/create", first.path("inputRequests").path("name").path("method").asText());
        Map<String, Object> answers = Map.of("name", Map.of("action", "accept", "content", Map.of("name", "Ada")));
        JsonNode second = operator.request(agent.endpoint(), "tools/call", Map.of("name", "greet", "arguments", Map.of(),
                "inputResponses", answers, "requestState", first.path("requestState").asText()), "greet");
        assertEquals("Hello, Ada!", second.path("result").path("structuredContent").asText(), second::toString);
        // JSON trees compare as JSON: the order of an object's members does not matter.
        assertEquals(List.of(java.util.Arrays.asList(null, null),
                List.of(JSON.valueToTree(answers), JSON.valueToTree(Map.of("asked", "name")))), seen);
    }

    @Test
    void anInputSchemaWrittenOutIsListedAsGivenAndHeldTo() throws Exception {
        String schema = "{\"type\": \"object\", \"properties\": {\"region\": {\"type\": \"string\"}, "
                + "\"limit\": {\"type\": \"integer\"}}, \"required\": [\"region\"], \"additionalProperties\": false}";
        ToolDefinition weather = ToolDefinition.builder("weather").inputSchema(schema)
                .handler(call -> "weather in " + call.argument("region", String.class)).build();
        try (MeshAgent served = Toolmesh.agent("weather").options(certs.options("contract")).tool(weather).start()) {
            JsonNode listed = operator.request(served.endpoint(), "tools/list", Map.of(), null).path("result").path("tools").get(0);
            assertEquals(JSON.readTree(schema), listed.path("inputSchema"), listed::toString);
            assertEquals("weather in eu", operator.call(served.endpoint(), "weather", Map.of("region", "eu", "limit", 2), Map.of()).asText());
            JsonNode refused = operator.callError(served.endpoint(), "weather", Map.of("region", "eu", "limit", "two"));
            assertTrue(refused.path("message").asText().contains("'limit' must be of type integer"), refused::toString);
        }
        assertThrows(IllegalArgumentException.class, () -> ToolDefinition.builder("bad").inputSchema("[1]"));
        assertThrows(IllegalStateException.class, () -> ToolDefinition.builder("both").parameter("a", int.class)
                .inputSchema("{\"type\": \"object\"}").handler(call -> null).build());
    }

    @Test
    void aDeclarationCoreRefusesNamesTheTool() {
        ToolmeshException e = assertThrows(ToolmeshException.class, () -> Toolmesh.agent("odd")
                .options(certs.options("contract"))
                .tool(ToolDefinition.builder("odd").requiresClientCapabilities("telepathy").handler(call -> "never").build())
                .start());
        assertTrue(e.getMessage().contains("tool 'odd': required_client_capabilities[0]: \"telepathy\" is not a capability a client can declare"),
                e::getMessage);
        assertThrows(IllegalArgumentException.class, () -> ToolDefinition.builder("bad").outputSchema("{not json"));
    }
}
