package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
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
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
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
    private static final BlockingQueue<String> cancellations = new LinkedBlockingQueue<>();
    private static final List<CalleeUpdate> updates = new CopyOnWriteArrayList<>();

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
                // Blocks its thread until the request is cancelled (its deadline, below).
                .tool(ToolDefinition.builder("sleeps").handler(call -> {
                    long started = System.nanoTime();
                    try {
                        Thread.sleep(30_000);
                        cancellations.add("slept through");
                    } catch (InterruptedException interrupted) {
                        cancellations.add("interrupted after " + (System.nanoTime() - started) / 1_000_000 + " ms, cancelled "
                                + Toolmesh.context().orElseThrow().cancelled());
                    }
                    return "woke";
                }).build())
                // Returns a future no one completes: the request's cancellation cancels it.
                .tool(ToolDefinition.builder("pends").handler(call -> {
                    CompletableFuture<String> never = new CompletableFuture<>();
                    long started = System.nanoTime();
                    never.whenComplete((value, thrown) -> cancellations.add(
                            (never.isCancelled() ? "future cancelled after " : "future completed after ")
                                    + (System.nanoTime() - started) / 1_000_000 + " ms"));
                    return never;
                }).build())
                // Consumes its dependency's reports as a listener and re-emits its progress, transformed.
                .tool(ToolDefinition.builder("outer").dependsOn("crunch").handler(call -> call.proxy("crunch").stream(Map.of(), update -> {
                    updates.add(update);
                    if (update instanceof CalleeUpdate.Progress progress) {
                        call.context().progress(progress.progress() * 10, 20, "outer saw " + progress.message());
                    }
                }).thenApply(result -> "outer: " + result.asText())).build())
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
    void aDependencysReportsReachTheHandlersListenerInOrderAndAreItsToReEmit() {
        updates.clear();
        List<JsonNode> messages = operator.messages(agent.endpoint(), "outer", Map.of(), Map.of("progressToken", "o-1"));
        assertEquals(List.of(
                new CalleeUpdate.Progress(1, 2.0, "half"),
                new CalleeUpdate.Log("debug", JSON.valueToTree("below the level"), null), // a listener gets every level
                new CalleeUpdate.Log("warning", JSON.valueToTree(Map.of("disk", 91)), "store"),
                new CalleeUpdate.Progress(2, 2.0, null)), updates);
        // Only what the handler re-emitted reaches its caller: crunch's own reports are not relayed.
        assertEquals(List.of(
                JSON.valueToTree(Map.of("jsonrpc", "2.0", "method", "notifications/progress",
                        "params", Map.of("progressToken", "o-1", "progress", 10.0, "total", 20.0, "message", "outer saw half"))),
                JSON.valueToTree(Map.of("jsonrpc", "2.0", "method", "notifications/progress",
                        "params", Map.of("progressToken", "o-1", "progress", 20.0, "total", 20.0, "message", "outer saw null")))),
                messages.subList(0, 2));
        assertEquals("outer: crunched", messages.get(2).path("result").path("structuredContent").asText());
        assertEquals(3, messages.size());
    }

    @Test
    void aRequestThatAskedForNothingGetsOneJsonAnswer() {
        List<JsonNode> messages = operator.messages(agent.endpoint(), "crunch", Map.of(), Map.of());
        assertEquals(1, messages.size());
        assertEquals("crunched", messages.get(0).path("result").path("structuredContent").asText());
        assertFalse(messages.get(0).has("method"));
    }

    /** How many milliseconds a cancellation note says it took. */
    private static long millis(String note) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("after (\\d+) ms").matcher(note);
        assertTrue(m.find(), note);
        return Long.parseLong(m.group(1));
    }

    @Test
    void aHandlersThreadIsInterruptedWhenItsRequestsDeadlinePasses() throws InterruptedException {
        cancellations.clear();
        List<JsonNode> messages = operator.messages(agent.endpoint(), "sleeps", Map.of(), Map.of("dev.toolmesh/deadlineMs", 300));
        assertEquals("woke", messages.get(messages.size() - 1).path("result").path("structuredContent").asText());
        String note = cancellations.poll(10, TimeUnit.SECONDS);
        assertTrue(note != null && note.startsWith("interrupted after ") && note.endsWith("cancelled true"), String.valueOf(note));
        long waited = millis(note);
        // The deadline's clock starts when core reads the request, the handler's a little later
        // (tens of ms on a loaded machine): not cancelled early, and not long after.
        assertTrue(waited >= 150 && waited < 400, note);
    }

    @Test
    void theFutureAHandlerReturnedIsCancelledWithItsRequest() throws InterruptedException {
        cancellations.clear();
        List<JsonNode> messages = operator.messages(agent.endpoint(), "pends", Map.of(), Map.of("dev.toolmesh/deadlineMs", 300));
        assertTrue(messages.get(messages.size() - 1).path("result").path("isError").asBoolean(), messages.toString());
        String note = cancellations.poll(10, TimeUnit.SECONDS);
        assertTrue(note != null && note.startsWith("future cancelled after "), String.valueOf(note));
        long waited = millis(note);
        // The deadline's clock starts when core reads the request, the handler's a little later
        // (tens of ms on a loaded machine): not cancelled early, and not long after.
        assertTrue(waited >= 150 && waited < 400, note);
    }
}
