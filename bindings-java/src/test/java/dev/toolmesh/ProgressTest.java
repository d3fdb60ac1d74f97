package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
 * Progress and log messages from a Java handler ({@code RequestContext.progress} and {@code .log},
 * §3 of docs/mcp-features.md), read over MCP from a real agent over mTLS: events before the
 * result, as far as the request asked.
 */
class ProgressTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path workDir;

    private static MeshAgent agent;
    private static Mcp operator;
    private static final List<Object> seen = new CopyOnWriteArrayList<>();

    @BeforeAll
    static void startAgent() {
        Mesh mesh = new Mesh(workDir);
        Certs certs = mesh.certs("reporter");
        operator = new Mcp(certs.clientContext("operator"));
        agent = Toolmesh.agent("reporter").options(certs.options("reporter"))
                .tool(ToolDefinition.builder("crunch").handler(call -> {
                    RequestContext context = Toolmesh.context().orElseThrow();
                    seen.add(context.progress(1, 2, "half"));
                    seen.add(context.log("debug", "below the level"));
                    seen.add(context.log("warning", Map.of("disk", 91), "store"));
                    context.progress(2, 2, null);
                    ToolmeshException refused = assertThrows(ToolmeshException.class, () -> context.log("loud", 1));
                    seen.add(refused.kind() + ": " + refused.getMessage());
                    seen.add(context.cancelled());
                    return "crunched";
                }).build())
                .start();
    }

    @AfterAll
    static void stopAgent() {
        if (agent != null) {
            agent.close();
        }
    }

    @Test
    void progressAndLogMessagesReachTheClientBeforeTheResult() {
        seen.clear();
        List<JsonNode> messages = operator.messages(agent.endpoint(), "crunch", Map.of(),
                Map.of("progressToken", "j-1", "io.modelcontextprotocol/logLevel", "info"));
        assertEquals(List.of(
                JSON.valueToTree(Map.of("jsonrpc", "2.0", "method", "notifications/progress",
                        "params", Map.of("progressToken", "j-1", "progress", 1.0, "total", 2.0, "message", "half"))),
                JSON.valueToTree(Map.of("jsonrpc", "2.0", "method", "notifications/message",
                        "params", Map.of("level", "warning", "logger", "store", "data", Map.of("disk", 91)))),
                JSON.valueToTree(Map.of("jsonrpc", "2.0", "method", "notifications/progress",
                        "params", Map.of("progressToken", "j-1", "progress", 2.0, "total", 2.0)))),
                messages.subList(0, 3));
        assertEquals("crunched", messages.get(3).path("result").path("structuredContent").asText());
        assertEquals(4, messages.size());
        assertEquals(List.of(true, false, true,
                "INVALID_ARGUMENTS: log level \"loud\" is not one of debug, info, notice, warning, error, critical, alert, emergency",
                false), seen);
    }

    @Test
    void aRequestThatAskedForNothingGetsOneJsonAnswer() {
        List<JsonNode> messages = operator.messages(agent.endpoint(), "crunch", Map.of(), Map.of());
        assertEquals(1, messages.size());
        assertEquals("crunched", messages.get(0).path("result").path("structuredContent").asText());
        assertFalse(messages.get(0).has("method"));
    }
}
