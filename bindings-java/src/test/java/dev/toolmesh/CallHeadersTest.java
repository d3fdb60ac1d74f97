package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import dev.toolmesh.testkit.Registry;
import dev.toolmesh.testkit.Wait;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Headers the caller's code sets on purpose with {@link Toolmesh#withCallHeaders}: seen by the
 * handler the call reaches whatever its allow-list, forwarded no further unless allow-listed. Real
 * agents, a real registry, mTLS; every agent's allow-list names only x-tenant.
 */
class CallHeadersTest {
    private static final Duration SETTLE = Duration.ofSeconds(20);

    @TempDir
    static Path workDir;

    private static Mesh mesh;
    private static Certs certs;
    private static Registry registry;
    private static Mcp operator;

    @BeforeAll
    static void startRegistry() {
        mesh = new Mesh(workDir);
        certs = mesh.certs("alpha", "beta", "gamma");
        registry = mesh.startRegistry();
        operator = new Mcp(certs.clientContext("operator"));
    }

    @AfterAll
    static void stopProcesses() {
        mesh.close();
    }

    private static AgentBuilder agent(String name) {
        return Toolmesh.agent(name)
                .options(certs.options(name))
                .option("registry_url", registry.url())
                .option("heartbeat_interval_ms", Mesh.HEARTBEAT_MS)
                .option("propagate_headers", "x-tenant");
    }

    public static class Back {
        @MeshTool(capability = "inspect")
        public Map<String, String> inspect() {
            return Toolmesh.headers();
        }
    }

    /** What a hop saw, and what the hop after it saw. */
    public record Onward(Map<String, String> seen, Map<String, String> next) {}

    public static class Middle {
        @MeshTool(capability = "inspect-onward", dependencies = {"inspect"})
        public CompletableFuture<Onward> inspectOnward(MeshProxy inspect) {
            Map<String, String> seen = Toolmesh.headers();
            return inspect.call(null).thenApply(next -> new Onward(seen, Json.MAPPER.convertValue(next, Map.class)));
        }
    }

    public static class Front {
        @MeshTool(capability = "inspect-here", dependencies = {"inspect"})
        public CompletableFuture<Onward> inspectHere(MeshProxy inspect) {
            return new Middle().inspectOnward(inspect);
        }

        @MeshTool(dependencies = {"inspect-onward"})
        public CompletableFuture<Map<String, Object>> nested(MeshProxy onward) {
            CompletableFuture<JsonNode> inner;
            CompletableFuture<JsonNode> outer;
            try (var outerScope = Toolmesh.withCallHeaders(ordered("X-Scoped", "outer", "x-plan", "gold"))) {
                try (var innerScope = Toolmesh.withCallHeaders(ordered("x-scoped", "inner", "x-tenant", "t-override"))) {
                    inner = onward.call(null);
                }
                outer = onward.call(null);
            }
            CompletableFuture<JsonNode> after = onward.call(null);
            Map<String, String> own = Toolmesh.headers();
            return inner.thenCompose(i -> outer.thenCombine(after, (o, a) -> Map.of("inner", i, "outer", o, "after", a, "own", own)));
        }

        @MeshTool(dependencies = {"inspect-here"})
        public CompletableFuture<JsonNode> inProcess(MeshProxy here) {
            try (var scope = Toolmesh.withCallHeaders(Map.of("x-scoped", "local"))) {
                return here.call(null);
            }
        }

        @MeshTool(dependencies = {"inspect-onward"})
        public Map<String, Object> refused(MeshProxy onward) {
            Map<String, Object> outcomes = new LinkedHashMap<>();
            for (List<String> header : List.of(List.of("content-type", "text/plain"), List.of("x bad", "v"), List.of("x-note", "line\nbreak"))) {
                CompletableFuture<JsonNode> call;
                try (var scope = Toolmesh.withCallHeaders(Map.of(header.get(0), header.get(1)))) {
                    call = onward.call(null);
                }
                CompletionException failed = assertThrows(CompletionException.class, call::join);
                ToolmeshException error = (ToolmeshException) failed.getCause();
                outcomes.put(header.get(0), Map.of("code", error.code(), "kind", error.kind(), "message", error.getMessage()));
            }
            return outcomes;
        }
    }

    private static Map<String, String> ordered(String... pairs) {
        Map<String, String> map = new LinkedHashMap<>();
        for (int i = 0; i < pairs.length; i += 2) {
            map.put(pairs[i], pairs[i + 1]);
        }
        return map;
    }

    private static JsonNode json(Object value) {
        return Json.MAPPER.valueToTree(value);
    }

    @Test
    void callHeadersReachTheNextHandlerOnly() {
        try (MeshAgent back = agent("gamma").register(new Back()).start();
                MeshAgent middle = agent("beta").register(new Middle()).start();
                MeshAgent front = agent("alpha").register(new Front()).start()) {
            JsonNode result = Wait.eventually(SETTLE, "nested to answer",
                    () -> operator.call(front.endpoint(), "nested", Map.of(), Map.of("X-Tenant", "t-1")));
            assertEquals(json(new Onward(Map.of("x-tenant", "t-override", "x-plan", "gold", "x-scoped", "inner"),
                    Map.of("x-tenant", "t-override"))), result.get("inner"), "allow-listed goes on; the rest stops at the middle");
            assertEquals(json(new Onward(Map.of("x-tenant", "t-1", "x-scoped", "outer", "x-plan", "gold"), Map.of("x-tenant", "t-1"))),
                    result.get("outer"));
            assertEquals(json(new Onward(Map.of("x-tenant", "t-1"), Map.of("x-tenant", "t-1"))), result.get("after"), "the scope was closed");
            assertEquals(json(Map.of("x-tenant", "t-1")), result.get("own"), "a scope changes the calls, not the handler's own context");
            // A dependency the agent serves itself gets the same rule as one across the network.
            assertEquals(json(new Onward(Map.of("x-scoped", "local"), Map.of())),
                    Wait.eventually(SETTLE, "inProcess to answer", () -> operator.call(front.endpoint(), "inProcess", Map.of(), Map.of())));
            assertEquals(json(Map.of(
                    "content-type", Map.of("code", 5003, "kind", "INVALID_ARGUMENTS", "message",
                            "call header 'content-type' cannot be set: the request sets it itself (hop-by-hop, body, protocol, trace "
                                    + "and toolmesh headers never are); use another name"),
                    "x bad", Map.of("code", 5003, "kind", "INVALID_ARGUMENTS", "message",
                            "call header 'x bad' is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
                    "x-note", Map.of("code", 5003, "kind", "INVALID_ARGUMENTS", "message",
                            "the value of call header 'x-note' is not a valid HTTP header value (visible ASCII, spaces and tabs only)"))),
                    operator.call(front.endpoint(), "refused", Map.of(), Map.of()));
        }
    }

    @Test
    void scopesNestAndRestoreOnClose() {
        assertEquals(0, CallHeaders.current().length);
        try (var outer = Toolmesh.withCallHeaders(Map.of("x-a", "1"))) {
            try (var inner = Toolmesh.withCallHeaders(Map.of("x-b", "2"))) {
                assertEquals(List.of("x-a", "1", "x-b", "2"), List.of(CallHeaders.current()));
            }
            assertEquals(List.of("x-a", "1"), List.of(CallHeaders.current()));
        }
        assertEquals(0, CallHeaders.current().length);
    }
}
