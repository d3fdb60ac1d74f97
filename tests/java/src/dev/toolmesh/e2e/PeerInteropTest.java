package dev.toolmesh.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

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
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A Java agent (in this JVM) and a Python agent (a process running tests/java/agents/py_agent.py)
 * calling each other over mTLS through a registry process: results, propagated headers, one trace
 * across hops, and the same error codes and messages for the same failures.
 */
class PythonInteropTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration SETTLE = Duration.ofSeconds(20);
    /** Agents of this suite propagate it (TOOLMESH_PROPAGATE_HEADERS / propagate_headers). */
    private static final String PROPAGATED = "x-tenant";

    @TempDir
    static Path workDir;

    private static Mesh mesh;
    private static Registry registry;
    private static MeshAgent java;
    private static Mesh.Agent python;
    private static Mcp operator;

    @BeforeAll
    static void startMesh() {
        mesh = new Mesh(workDir);
        Certs certs = mesh.certs("java", "py");
        registry = mesh.startRegistry();
        python = mesh.startPythonAgent("tests/java/agents/py_agent.py", "py", registry, Map.of("TOOLMESH_PROPAGATE_HEADERS", PROPAGATED));
        java = Toolmesh.agent("java")
                .options(certs.options("java"))
                .option("registry_url", registry.url())
                .option("heartbeat_interval_ms", Mesh.HEARTBEAT_MS)
                .option("propagate_headers", PROPAGATED)
                .register(new JavaTools())
                .start();
        mesh.awaitListed(registry, Set.of("java", "py"));
        operator = new Mcp(certs.clientContext("operator"));
    }

    @AfterAll
    static void stopMesh() {
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

        @MeshTool(capability = "j-sum3", dependencies = {"py-add"})
        public CompletableFuture<Integer> sum3(int a, int b, int c, MeshProxy add) {
            return add.call(Map.of("a", a, "b", b), Integer.class).thenCompose(ab -> add.call(Map.of("a", ab, "b", c), Integer.class));
        }

        /** Java -> Python -> Java. */
        @MeshTool(capability = "j-chain", dependencies = {"py-hops"})
        public CompletableFuture<Map<String, Object>> chain(MeshProxy hops) {
            Map<String, Object> java = here();
            return hops.call(null).thenApply(rest -> Map.of("java", java, "python", rest.get("python"), "java_again", rest.get("java")));
        }

        @MeshTool(capability = "j-missing", dependencies = {"nobody-provides-this"})
        public CompletableFuture<Map<String, Object>> missing(MeshProxy dependency) {
            return dependency.call(null).handle((value, thrown) -> report(thrown));
        }

        @MeshTool(capability = "j-bad-add", dependencies = {"py-add"})
        public CompletableFuture<Map<String, Object>> badAdd(MeshProxy add) {
            return add.call(Map.of("a", "x", "b", 1)).handle((value, thrown) -> report(thrown));
        }

        @MeshTool(capability = "j-call-fail", dependencies = {"py-fail"})
        public CompletableFuture<Map<String, Object>> callFail(MeshProxy fail) {
            return fail.call(null).handle((value, thrown) -> report(thrown));
        }
    }

    private static JsonNode callJava(String tool, Map<String, String> headers) {
        return Wait.eventually(SETTLE, tool + " to answer", () -> operator.call(java.endpoint(), tool, Map.of(), headers));
    }

    private static JsonNode callPython(String tool) {
        return Wait.eventually(SETTLE, tool + " to answer", () -> operator.call(python.endpoint(), tool, Map.of(), Map.of()));
    }

    @Test
    void javaCallsPythonTools() {
        JsonNode sum = Wait.eventually(SETTLE, "j-sum3", () -> operator.call(java.endpoint(), "sum3", Map.of("a", 1, "b", 2, "c", 3), Map.of()));
        assertEquals(6, sum.asInt());
    }

    @Test
    void pythonCallsJavaToolsThroughTheCli() {
        JsonNode sum = Wait.eventually(SETTLE, "py-sum3 through the CLI", () -> {
            var done = mesh.cli(registry, "call", "py-sum3", "{\"a\": 4, \"b\": 5, \"c\": 6}");
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
        for (String hop : new String[] {"java", "python", "java_again"}) {
            assertEquals(traceId, hops.path(hop).path("trace_id").asText(), hops.toString());
            assertEquals(JSON.valueToTree(Map.of("x-tenant", "acme")), hops.path(hop).path("headers"), hops.toString());
        }
        assertEquals("py", hops.path("python").path("agent").asText());
        assertEquals("java", hops.path("java_again").path("agent").asText());

        // Started by Python, through Java: the trace Python began continues in Java.
        JsonNode fromPython = callPython("hops");
        assertEquals(32, fromPython.path("python").path("trace_id").asText().length());
        assertEquals(fromPython.path("python").path("trace_id"), fromPython.path("java").path("trace_id"));
    }

    @Test
    void theSameFailureGivesTheSameErrorInJavaAndPython() {
        // Nobody provides the dependency: core's answer, in both languages.
        JsonNode javaMissing = callJava("missing", Map.of());
        assertEquals(3001, javaMissing.get("code").asInt(), javaMissing.toString());
        assertEquals("DEPENDENCY_UNRESOLVED", javaMissing.get("name").asText());
        assertEquals(callPython("missing"), javaMissing);

        // A bad argument for `add`: Java calling Python's, Python calling Java's.
        JsonNode javaBadAdd = callJava("badAdd", Map.of());
        assertEquals("INVALID_ARGUMENTS", javaBadAdd.get("name").asText(), javaBadAdd.toString());
        assertEquals(callPython("bad_add"), javaBadAdd);

        // A remote handler that throws: the same code; the message names the exception of its language.
        JsonNode javaCallFail = callJava("callFail", Map.of());
        JsonNode pythonCallFail = callPython("call_fail");
        assertEquals(5001, javaCallFail.get("code").asInt());
        assertEquals(javaCallFail.get("code"), pythonCallFail.get("code"));
        assertEquals("tool 'fail' failed: ValueError: boom", javaCallFail.get("message").asText());
        assertEquals("tool 'fail' failed: IllegalStateException: boom", pythonCallFail.get("message").asText());
        assertNotEquals(javaCallFail, pythonCallFail);
    }
}
