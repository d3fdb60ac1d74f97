package dev.toolmesh.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.toolmesh.MeshAgent;
import dev.toolmesh.MeshProxy;
import dev.toolmesh.MeshTool;
import dev.toolmesh.Toolmesh;
import dev.toolmesh.ToolmeshException;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import dev.toolmesh.testkit.Registry;
import dev.toolmesh.testkit.Wait;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;

/**
 * A Java agent (in this JVM) and a peer agent in another language (a process running
 * tests/java/agents/peer.py or its Node twin peer.mjs) calling each other over mTLS through a
 * registry process: results, propagated headers, one trace across hops, and the same error codes
 * and messages for the same failures.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class PeerInteropTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration SETTLE = Duration.ofSeconds(20);
    /** Agents of this suite propagate it (TOOLMESH_PROPAGATE_HEADERS / propagate_headers). */
    private static final String PROPAGATED = "x-tenant";

    private Mesh mesh;
    private Registry registry;
    private MeshAgent java;
    private Mesh.Agent peer;
    private Mcp operator;

    /** The command that runs the peer agent script. */
    abstract List<String> peerCommand();

    @BeforeAll
    void startMesh(@TempDir Path workDir) {
        mesh = new Mesh(workDir);
        Certs certs = mesh.certs("java", "peer");
        registry = mesh.startRegistry();
        peer = mesh.startScriptAgent(peerCommand(), "peer", registry, Map.of("TOOLMESH_PROPAGATE_HEADERS", PROPAGATED));
        java = Toolmesh.agent("java")
                .options(certs.options("java"))
                .option("registry_url", registry.url())
                .option("heartbeat_interval_ms", Mesh.HEARTBEAT_MS)
                .option("propagate_headers", PROPAGATED)
                .register(new JavaTools())
                .start();
        mesh.awaitListed(registry, Set.of("java", "peer"));
        operator = new Mcp(certs.clientContext("operator"));
    }

    @AfterAll
    void stopMesh() {
        if (java != null) {
            java.close();
        }
        mesh.close();
    }

    static Map<String, Object> here() {
        return Map.of("agent", "java", "headers", Toolmesh.headers(), "trace_id", Toolmesh.traceId());
    }

    static Map<String, Object> report(Throwable thrown) {
        ToolmeshException error = (ToolmeshException) (thrown.getCause() != null ? thrown.getCause() : thrown);
        return Map.of("code", error.code(), "name", error.kind(), "message", error.getMessage());
    }

    public static class JavaTools {
        @MeshTool(capability = "j-add")
        public int add(int a, int b) {
            return a + b;
        }

        @MeshTool(capability = "j-probe")
        public Map<String, Object> probe() {
            return here();
        }

        @MeshTool(capability = "j-fail")
        public int fail() {
            throw new IllegalStateException("boom");
        }

        @MeshTool(capability = "j-sum3", dependencies = {"peer-add"})
        public CompletableFuture<Integer> sum3(int a, int b, int c, MeshProxy add) {
            return add.call(Map.of("a", a, "b", b), Integer.class).thenCompose(ab -> add.call(Map.of("a", ab, "b", c), Integer.class));
        }

        /** Java -> Python -> Java. */
        @MeshTool(capability = "j-chain", dependencies = {"peer-hops"})
        public CompletableFuture<Map<String, Object>> chain(MeshProxy hops) {
            Map<String, Object> java = here();
            return hops.call(null).thenApply(rest -> Map.of("java", java, "peer", rest.get("peer"), "java_again", rest.get("java")));
        }

        @MeshTool(capability = "j-missing", dependencies = {"nobody-provides-this"})
        public CompletableFuture<Map<String, Object>> missing(MeshProxy dependency) {
            return dependency.call(null).handle((value, thrown) -> report(thrown));
        }

        @MeshTool(capability = "j-bad-add", dependencies = {"peer-add"})
        public CompletableFuture<Map<String, Object>> badAdd(MeshProxy add) {
            return add.call(Map.of("a", "x", "b", 1)).handle((value, thrown) -> report(thrown));
        }

        @MeshTool(capability = "j-call-fail", dependencies = {"peer-fail"})
        public CompletableFuture<Map<String, Object>> callFail(MeshProxy fail) {
            return fail.call(null).handle((value, thrown) -> report(thrown));
        }
    }

    private JsonNode callJava(String tool, Map<String, String> headers) {
        return Wait.eventually(SETTLE, tool + " to answer", () -> operator.call(java.endpoint(), tool, Map.of(), headers));
    }

    private JsonNode callPeer(String tool) {
        return Wait.eventually(SETTLE, tool + " to answer", () -> operator.call(peer.endpoint(), tool, Map.of(), Map.of()));
    }

    @Test
    void javaCallsPeerTools() {
        JsonNode sum = Wait.eventually(SETTLE, "j-sum3", () -> operator.call(java.endpoint(), "sum3", Map.of("a", 1, "b", 2, "c", 3), Map.of()));
        assertEquals(6, sum.asInt());
    }

    @Test
    void peerCallsJavaToolsThroughTheCli() {
        JsonNode sum = Wait.eventually(SETTLE, "peer-sum3 through the CLI", () -> {
            var done = mesh.cli(registry, "call", "peer-sum3", "{\"a\": 4, \"b\": 5, \"c\": 6}");
            if (done.status() != 0) {
                throw new AssertionError(done.toString());
            }
            return JSON.readTree(done.stdout());
        });
        assertEquals(15, sum.asInt());
    }

    @Test
    void allowListedHeadersAndOneTraceCrossEveryHop() {
        String traceId = "0af7651916cd43dd8448eb211c80319c";
        JsonNode hops = callJava("chain", Map.of("X-Tenant", "acme", "X-Secret", "do-not-forward",
                "traceparent", "00-" + traceId + "-b7ad6b7169203331-01"));
        for (String hop : new String[] {"java", "peer", "java_again"}) {
            assertEquals(traceId, hops.path(hop).path("trace_id").asText(), hops.toString());
            assertEquals(JSON.valueToTree(Map.of("x-tenant", "acme")), hops.path(hop).path("headers"), hops.toString());
        }
        assertEquals("peer", hops.path("peer").path("agent").asText());
        assertEquals("java", hops.path("java_again").path("agent").asText());

        // Started by the peer, through Java: the trace the peer began continues in Java.
        JsonNode fromPeer = callPeer("hops");
        assertEquals(32, fromPeer.path("peer").path("trace_id").asText().length());
        assertEquals(fromPeer.path("peer").path("trace_id"), fromPeer.path("java").path("trace_id"));
    }

    @Test
    void theSameFailureGivesTheSameErrorInJavaAndThePeer() {
        // Nobody provides the dependency: core's answer, in both languages.
        JsonNode javaMissing = callJava("missing", Map.of());
        assertEquals(3001, javaMissing.get("code").asInt(), javaMissing.toString());
        assertEquals("DEPENDENCY_UNRESOLVED", javaMissing.get("name").asText());
        assertEquals(callPeer("missing"), javaMissing);

        // A bad argument for `add`: Java calling the peer's, the peer calling Java's.
        JsonNode javaBadAdd = callJava("badAdd", Map.of());
        assertEquals("INVALID_ARGUMENTS", javaBadAdd.get("name").asText(), javaBadAdd.toString());
        assertEquals(callPeer("bad_add"), javaBadAdd);

        // A remote handler that throws: the same code and message, the exception's own.
        JsonNode javaCallFail = callJava("callFail", Map.of());
        assertEquals(5001, javaCallFail.get("code").asInt(), javaCallFail.toString());
        assertEquals("tool 'fail' failed: boom", javaCallFail.get("message").asText());
        assertEquals(callPeer("call_fail"), javaCallFail);
    }
}
