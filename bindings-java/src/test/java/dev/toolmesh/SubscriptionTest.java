package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import dev.toolmesh.testkit.Wait;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Resource subscriptions of a Java agent: {@link MeshAgent#notifyResourceUpdated} reaches a
 * client's {@code subscriptions/listen} stream over mTLS (core serves the stream; the binding
 * passes the announcement through), and a URI the agent does not serve is refused.
 */
class SubscriptionTest {
    private static final String WATCHED = "test://watched";

    @TempDir
    static Path workDir;

    @Test
    void announcementsReachTheListenStreamWhichClosingTheAgentEnds() throws Exception {
        Mesh mesh = new Mesh(workDir);
        Certs certs = mesh.certs("watcher");
        Mcp operator = new Mcp(certs.clientContext("operator"));
        MeshAgent agent = Toolmesh.agent("watcher").options(certs.options("watcher"))
                .resource(Resource.builder(WATCHED, "watched").mimeType("text/plain").text("v1").build())
                .start();
        boolean closed = false;
        try {
            CompletableFuture<List<JsonNode>> stream = operator.stream(agent.endpoint(), 7, "subscriptions/listen",
                    Map.of("notifications", Map.of("resourceSubscriptions", List.of(WATCHED))));
            // Announcements before the subscription is in place reach no one (0), and are not queued.
            Wait.eventually(Duration.ofSeconds(10), "the listen stream to take an update",
                    () -> agent.notifyResourceUpdated(WATCHED) == 1 ? true : null);
            ToolmeshException refused = assertThrows(ToolmeshException.class, () -> agent.notifyResourceUpdated("test://nope"));
            assertEquals("INVALID_CONFIG", refused.kind());
            assertTrue(refused.getMessage().contains("'test://nope' is not a resource this agent serves"), refused.getMessage());
            agent.close();
            closed = true;
            List<JsonNode> messages = stream.get(10, TimeUnit.SECONDS);
            assertEquals(3, messages.size(), messages.toString());
            assertEquals("notifications/subscriptions/acknowledged", messages.get(0).path("method").asText());
            assertEquals(WATCHED, messages.get(0).path("params").path("notifications").path("resourceSubscriptions").path(0).asText());
            JsonNode update = messages.get(1);
            assertEquals("notifications/resources/updated", update.path("method").asText());
            assertEquals(WATCHED, update.path("params").path("uri").asText());
            assertEquals(7, update.path("params").path("_meta").path("io.modelcontextprotocol/subscriptionId").asInt());
            assertEquals(7, messages.get(2).path("id").asInt());
            assertEquals("complete", messages.get(2).path("result").path("resultType").asText());
        } finally {
            if (!closed) {
                agent.close();
            }
        }
    }
}
