package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
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
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Agents in this JVM, serving and calling each other through a real registry over mTLS. */
class AgentTest {
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
        certs = mesh.certs("alpha", "beta");
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
                .option("heartbeat_interval_ms", Mesh.HEARTBEAT_MS);
    }

    /** Calls a tool from outside, retrying until the agent's dependencies are known to it. */
    private static JsonNode call(MeshAgent target, String tool, Object arguments, Map<String, String> headers) {
        return Wait.eventually(SETTLE, tool + " to answer", () -> operator.call(target.endpoint(), tool, arguments, headers));
    }

    public static class Beta {
        @MeshTool(capability = "add")
        public int add(int a, int b) {
            // The agent's own pool; core's threads are named toolmesh-worker-N.
            assertTrue(Thread.currentThread().getName().startsWith("toolmesh-beta-"), Thread.currentThread().getName());
            return a + b;
        }

        @MeshTool(capability = "mul")
        public CompletableFuture<Integer> mul(int a, int b) {
            return CompletableFuture.supplyAsync(() -> a * b);
        }

        @MeshTool(name = "calc_twice", capability = "calc-twice", dependencies = {"calc"})
        public CompletableFuture<Integer> calcTwice(int x, MeshProxy calc) {
            return calc.call(Map.of("a", x, "b", x), Sums.class)
                    .thenCompose(first -> calc.call(Map.of("a", first.sum(), "b", first.product()), Sums.class))
                    .thenApply(Sums::sum);
        }
    }

    public record Sums(int sum, int product) {}

    public static class Alpha {
        @MeshTool(capability = "calc", dependencies = {"add", "mul"})
        public Sums calc(int a, int b, MeshProxy mul, MeshProxy add) {
            // Named like their capabilities: mul gets "mul" although it comes first.
            return new Sums(add.call(Map.of("a", a, "b", b), Integer.class).join(), mul.call(Map.of("a", a, "b", b), Integer.class).join());
        }
    }

    @Test
    void twoAgentsCallEachOtherThroughTheRegistry() {
        try (MeshAgent beta = agent("beta").register(new Beta()).start();
                MeshAgent alpha = agent("alpha").register(new Alpha()).start()) {
            assertTrue(alpha.endpoint().startsWith("https://127.0.0.1:") && alpha.endpoint().endsWith("/mcp"), alpha.endpoint());
            assertTrue(alpha.agentId().startsWith("alpha-"), alpha.agentId());
            assertEquals(alpha.port(), Integer.parseInt(alpha.endpoint().replaceAll(".*:(\\d+)/mcp", "$1")));
            assertEquals(Json.MAPPER.valueToTree(new Sums(7, 12)), call(alpha, "calc", Map.of("a", 3, "b", 4), Map.of()));
            // beta -> alpha -> beta: 3+3=6, 3*3=9, then 6+9
            assertEquals(15, call(beta, "calc_twice", Map.of("x", 3), Map.of()).asInt());
        }
    }

    /** What a handler reports about a mesh error it caught. */
    public record Caught(String type, int code, String kind, String message, String text) {
        static Caught of(Throwable thrown) {
            Throwable cause = thrown.getCause() != null ? thrown.getCause() : thrown;
            ToolmeshException error = (ToolmeshException) cause;
            return new Caught(cause.getClass().getSimpleName(), error.code(), error.kind(), error.getMessage(), error.toString());
        }
    }

    public static class Failing {
        @MeshTool(capability = "explode")
        public int explode() {
            throw new IllegalStateException("boom");
        }

        @MeshTool(capability = "slow")
        public int slow(int ms) throws InterruptedException {
            Thread.sleep(ms);
            return ms;
        }
    }

    public static class Catching {
        @MeshTool(dependencies = {"explode"})
        public CompletableFuture<Caught> catchFailure(MeshProxy explode) {
            return explode.call(null).handle((value, thrown) -> Caught.of(thrown));
        }

        @MeshTool(dependencies = {"slow"}, timeoutMs = 200)
        public CompletableFuture<Caught> catchTimeout(MeshProxy slow) {
            return slow.call(Map.of("ms", 2000)).handle((value, thrown) -> Caught.of(thrown));
        }

        @MeshTool(dependencies = {"nobody-provides-this"})
        public CompletableFuture<JsonNode> unresolved(MeshProxy missing) {
            return missing.call(Map.of());
        }

        @MeshTool(dependencies = {"nobody-provides-this"})
        public JsonNode unresolvedJoined(MeshProxy missing) {
            return missing.call(Map.of()).join();
        }

        @MeshTool
        public Object notJson() {
            return new Object();
        }
    }

    @Test
    void errorsKeepTheirCodeAcrossAgents() {
        try (MeshAgent beta = agent("beta").register(new Failing()).start();
                MeshAgent alpha = agent("alpha").register(new Catching()).start()) {
            JsonNode failure = call(alpha, "catchFailure", Map.of(), Map.of());
            assertEquals("ToolmeshException", failure.get("type").asText());
            assertEquals(5001, failure.get("code").asInt());
            assertEquals("TOOL_FAILED", failure.get("kind").asText());
            // The exception's own message; its class is logged by beta, not sent.
            assertEquals("tool 'explode' failed: boom", failure.get("message").asText());
            assertEquals("dev.toolmesh.ToolmeshException: [5001 TOOL_FAILED] " + failure.get("message").asText(), failure.get("text").asText());

            JsonNode timeout = call(alpha, "catchTimeout", Map.of(), Map.of());
            assertEquals(4002, timeout.get("code").asInt());
            assertEquals("TIMEOUT", timeout.get("kind").asText());

            // Not caught by the handler: the caller sees the mesh error, not a handler failure,
            // whether the future failed or join() threw.
            for (String tool : List.of("unresolved", "unresolvedJoined")) {
                JsonNode error = operator.callError(alpha.endpoint(), tool, Map.of());
                assertEquals(3001, error.get("code").asInt(), error.toString());
                assertEquals("DEPENDENCY_UNRESOLVED", error.get("name").asText());
                assertTrue(error.get("message").asText().contains("nobody-provides-this"), error.toString());
            }

            JsonNode notJson = operator.callError(alpha.endpoint(), "notJson", Map.of());
            assertEquals(6002, notJson.get("code").asInt(), notJson.toString());
            assertEquals("tool 'notJson' returned a value that is not JSON; the agent serving it logs why", notJson.get("message").asText());
        }
    }

    public static class Shop {
        @MeshTool(capability = "lookup")
        public Object lookup(String sku) {
            throw new ToolException("unknown_sku", "no such sku: " + sku, Map.of("sku", sku, "near", List.of("X1")));
        }

        @MeshTool(name = "badData", capability = "bad-data")
        public Object badData() {
            throw new ToolException("unknown_sku", "m", new Object());
        }
    }

    public static class ShopFront {
        @MeshTool(name = "catchLookup", capability = "catch-lookup", dependencies = {"lookup"})
        public Map<String, Object> catchLookup(MeshProxy lookup) {
            try {
                lookup.call(Map.of("sku", "X"), JsonNode.class).join();
            } catch (java.util.concurrent.CompletionException e) {
                ToolException error = (ToolException) e.getCause();
                return Map.of("code", error.code(), "kind", error.kind(), "appCode", error.appCode(), "message", error.getMessage(),
                        "data", error.data(), "text", error.toString());
            }
            throw new AssertionError("the tool error was not thrown");
        }

        /** Lets its dependency's tool error escape: the caller gets it intact. */
        @MeshTool(capability = "rethrow", dependencies = {"lookup"})
        public CompletableFuture<JsonNode> rethrow(MeshProxy lookup) {
            return lookup.call(Map.of("sku", "Y"), JsonNode.class);
        }
    }

    @Test
    void aToolErrorReachesCallersIntactWithoutAStackTraceInTheLog() {
        java.util.logging.Logger logger = java.util.logging.Logger.getLogger("dev.toolmesh");
        List<java.util.logging.LogRecord> logged = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.logging.Handler capture = new java.util.logging.Handler() {
            @Override
            public void publish(java.util.logging.LogRecord record) {
                logged.add(record);
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        logger.addHandler(capture);
        try (MeshAgent beta = agent("beta").register(new Shop()).start();
                MeshAgent alpha = agent("alpha").register(new ShopFront()).start()) {
            JsonNode caught = call(alpha, "catchLookup", Map.of(), Map.of());
            assertEquals(5005, caught.get("code").asInt());
            assertEquals("TOOL_ERROR", caught.get("kind").asText());
            assertEquals("unknown_sku", caught.get("appCode").asText());
            assertEquals("no such sku: X", caught.get("message").asText());
            assertEquals(Json.MAPPER.valueToTree(Map.of("sku", "X", "near", List.of("X1"))), caught.get("data"));
            assertEquals("dev.toolmesh.ToolException: [5005 TOOL_ERROR unknown_sku] no such sku: X", caught.get("text").asText());

            JsonNode error = operator.callError(alpha.endpoint(), "rethrow", Map.of());
            assertEquals(5005, error.get("code").asInt(), error.toString());
            assertEquals("unknown_sku", error.get("appCode").asText());
            assertEquals("no such sku: Y", error.get("message").asText());
            assertEquals("Y", error.get("data").get("sku").asText());

            JsonNode bad = operator.callError(beta.endpoint(), "badData", Map.of());
            assertEquals(6001, bad.get("code").asInt(), bad.toString());
            assertEquals("tool 'badData' failed: it raised a tool error (\"unknown_sku\") whose data is not JSON; the agent serving it logs why",
                    bad.get("message").asText());
        } finally {
            logger.removeHandler(capture);
        }
        assertTrue(logged.stream().noneMatch(r -> r.getThrown() instanceof ToolException), "an expected tool error logged a stack trace");
    }

    @Test
    void aDenialOfTheCalleesPolicyArrivesWithItsCodeKindAndMessage() throws Exception {
        // beta's own policy file: deny by default, allow only an agent that is not alpha.
        Path policy = workDir.resolve("beta-deny.json");
        java.nio.file.Files.writeString(policy, "{\"default\": \"deny\", \"rules\": [{\"name\": \"only-gamma\", "
                + "\"source\": {\"agents\": [\"gamma\"]}}]}");
        try (MeshAgent beta = agent("beta").option("policy_file", policy).register(new Failing()).start();
                MeshAgent alpha = agent("alpha").register(new Catching()).start()) {
            JsonNode denied = Wait.eventually(SETTLE, "alpha to reach beta", () -> {
                JsonNode caught = operator.call(alpha.endpoint(), "catchFailure", Map.of(), Map.of());
                if (caught.get("code").asInt() == 3001) {
                    throw new IllegalStateException("not resolved yet: " + caught);
                }
                return caught;
            });
            // Java has one exception class for every code: code, kind and message come from core unchanged.
            assertEquals("ToolmeshException", denied.get("type").asText());
            assertEquals(7001, denied.get("code").asInt(), denied.toString());
            assertEquals("CALL_DENIED", denied.get("kind").asText());
            // The operator's call started the chain: alpha calls on its behalf.
            String message = "spiffe://toolmesh.local/agent/alpha on behalf of spiffe://toolmesh.local/operator/operator "
                    + "may not call tool 'explode' of agent 'beta' (policy rule 'default: deny'); "
                    + "an operator can allow it with a rule (toolmesh policy apply)";
            assertEquals(message, denied.get("message").asText());
            assertEquals("dev.toolmesh.ToolmeshException: [7001 CALL_DENIED] " + message, denied.get("text").asText());
        }
    }

    /** What one hop saw of its request context. */
    public record Seen(Map<String, String> headers, String traceId, String spanId, String thread, Long remainingMs) {
        static Seen here() {
            RequestContext context = Toolmesh.context().orElseThrow();
            assertEquals("00-" + context.traceId() + "-" + context.spanId() + "-01", context.traceparent());
            assertTrue(context.sampled());
            Long remaining = context.remainingMillis().isPresent() ? context.remainingMillis().getAsLong() : null;
            return new Seen(Toolmesh.headers(), Toolmesh.traceId(), context.spanId(), Thread.currentThread().getName(), remaining);
        }
    }

    public record Hops(Seen alpha, Seen beta, Seen afterCall) {}

    public static class Inspected {
        @MeshTool(capability = "inspect")
        public Seen inspect() {
            return Seen.here();
        }
    }

    public static class Hopping {
        @MeshTool(dependencies = {"inspect"})
        public CompletableFuture<Hops> hop(MeshProxy inspect) {
            Seen here = Seen.here();
            // The continuation runs on another thread, with this call's context re-established.
            return inspect.call(null, Seen.class).thenApply(beta -> new Hops(here, beta, Seen.here()));
        }
    }

    @Test
    void handlersSeeTheirRequestContextAndPassItOn() throws Exception {
        assertEquals(Map.of(), Toolmesh.headers());
        assertNull(Toolmesh.traceId());
        assertTrue(Toolmesh.context().isEmpty());
        ExecutorService handlers = Executors.newFixedThreadPool(4, task -> new Thread(task, "user-pool"));
        try (MeshAgent beta = agent("beta").option("propagate_headers", "x-tenant").register(new Inspected()).start();
                MeshAgent alpha = agent("alpha").option("propagate_headers", List.of("x-tenant", "x-audit-*"))
                        .executor(handlers).register(new Hopping()).start()) {
            String traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            Map<String, String> headers = Map.of("X-Tenant", "t-42", "X-Audit-User", "ann", "X-Secret", "s3", "traceparent", traceparent);
            Hops hops = Json.MAPPER.treeToValue(Wait.eventually(SETTLE, "hop to answer",
                    () -> operator.call(alpha.endpoint(), "hop", Map.of(), headers, Duration.ofSeconds(20))), Hops.class);
            assertEquals(Map.of("x-tenant", "t-42", "x-audit-user", "ann"), hops.alpha().headers());
            assertEquals(hops.alpha().headers(), hops.afterCall().headers());
            // beta's own allow-list drops x-audit-user: core filters on every hop
            assertEquals(Map.of("x-tenant", "t-42"), hops.beta().headers());
            for (Seen seen : List.of(hops.alpha(), hops.beta(), hops.afterCall())) {
                assertEquals("4bf92f3577b34da6a3ce929d0e0e4736", seen.traceId());
            }
            assertNotEquals(hops.alpha().spanId(), hops.beta().spanId());
            assertEquals(hops.alpha().spanId(), hops.afterCall().spanId());
            // The caller's deadline reaches both hops, shrinking on the way.
            assertTrue(hops.alpha().remainingMs() > 0 && hops.alpha().remainingMs() <= 20_000, hops.alpha().toString());
            assertTrue(hops.beta().remainingMs() > 0 && hops.beta().remainingMs() <= hops.alpha().remainingMs(), hops.toString());
            assertEquals("user-pool", hops.alpha().thread());
            assertEquals("user-pool", hops.afterCall().thread());
            assertTrue(hops.beta().thread().startsWith("toolmesh-beta-"), hops.beta().thread());

            Hops fresh = Json.MAPPER.treeToValue(operator.call(alpha.endpoint(), "hop", Map.of(), Map.of("X-Tenant", "t-7")), Hops.class);
            assertEquals(32, fresh.alpha().traceId().length());
            assertEquals(fresh.alpha().traceId(), fresh.beta().traceId());
            assertNotEquals("4bf92f3577b34da6a3ce929d0e0e4736", fresh.alpha().traceId());
            assertNull(fresh.alpha().remainingMs());
        } finally {
            handlers.shutdownNow();
        }
        assertTrue(Toolmesh.context().isEmpty());
    }

    private static void assertOnFallbackThread(String what) {
        String thread = Thread.currentThread().getName();
        assertTrue(thread.startsWith("toolmesh-fallback-"), what + " ran on " + thread);
    }

    public static class InPlace {
        @MeshTool(capability = "add")
        public int add(int a, int b) {
            assertOnFallbackThread("add");
            return a + b;
        }

        /** Blocks on its dependency call, which a core thread must never do. */
        @MeshTool(dependencies = {"add"})
        public int blockingSum(int a, int b, MeshProxy add) {
            assertOnFallbackThread("blockingSum");
            return add.call(Map.of("a", a, "b", b), Integer.class).thenApply(sum -> {
                assertOnFallbackThread("the continuation");
                return sum;
            }).join();
        }
    }

    @Test
    void anExecutorThatRunsInPlaceNeverRunsHandlersOnCoreThreads() {
        // Runnable::run would run each handler, and each dependency result, on the core thread handing it over.
        try (MeshAgent alpha = agent("alpha").executor(Runnable::run).register(new InPlace()).start()) {
            assertEquals(7, call(alpha, "blockingSum", Map.of("a", 3, "b", 4), Map.of()).asInt());
        }
    }

    public static class One {
        @MeshTool
        public int one() {
            return 1;
        }
    }

    @Test
    void startAndCloseAreRefusedOnCoreThreads() throws Exception {
        try (MeshAgent alpha = agent("alpha").register(new One()).start()) {
            CompletableFuture<List<String>> seen = new CompletableFuture<>();
            NativeTesting.runOnCoreThread(() -> {
                try {
                    String thread = Thread.currentThread().getName();
                    String close = assertThrows(IllegalStateException.class, alpha::close).getMessage();
                    String start = assertThrows(IllegalStateException.class, () -> agent("beta").register(new One()).start()).getMessage();
                    seen.complete(List.of(thread, close, start));
                } catch (Throwable thrown) {
                    seen.completeExceptionally(thrown);
                }
            });
            List<String> refused = seen.get(10, TimeUnit.SECONDS);
            assertTrue(refused.get(0).matches("toolmesh-worker-\\d+"), refused.get(0));
            assertEquals("MeshAgent.close() blocks and cannot be called on a toolmesh runtime thread; call it from a thread of your own", refused.get(1));
            assertEquals("AgentBuilder.start() blocks and cannot be called on a toolmesh runtime thread; call it from a thread of your own", refused.get(2));
            // The refused close left the agent serving; closing it here works.
            assertEquals(1, operator.call(alpha.endpoint(), "one", Map.of(), Map.of()).asInt());
        }
    }

    public static class Forgetful {
        @MeshTool
        public CompletableFuture<Integer> forget() {
            return new CompletableFuture<>(); // never completed, and soon unreachable
        }
    }

    @Test
    void aCallWhoseHandlerForgetsItIsAnsweredOnceTheFutureIsCollected() throws Exception {
        try (MeshAgent alpha = agent("alpha").register(new Forgetful()).start()) {
            CompletableFuture<JsonNode> answer = CompletableFuture.supplyAsync(() -> operator.callError(alpha.endpoint(), "forget", Map.of()));
            JsonNode error = Wait.eventually(SETTLE, "the dropped call to be answered", () -> {
                System.gc();
                return answer.isDone() ? answer.join() : null;
            });
            assertEquals(6003, error.get("code").asInt(), error.toString());
            assertEquals("HANDLER_DROPPED", error.get("name").asText());
        }
    }

    public static class Closing {
        static final CompletableFuture<MeshProxy> kept = new CompletableFuture<>();

        @MeshTool(dependencies = {"nobody-provides-this"})
        public int keep(MeshProxy missing) {
            kept.complete(missing);
            return 1;
        }
    }

    @Test
    void closingTwiceIsHarmlessAndCallsAfterCloseAreRefused() throws Exception {
        MeshAgent alpha = agent("alpha").register(new Closing()).start();
        assertEquals(1, operator.call(alpha.endpoint(), "keep", Map.of(), Map.of()).asInt());
        alpha.close();
        alpha.close();
        var refused = Closing.kept.get(5, TimeUnit.SECONDS).call(Map.of()).handle((v, thrown) -> thrown).get(5, TimeUnit.SECONDS);
        ToolmeshException error = (ToolmeshException) (refused.getCause() != null ? refused.getCause() : refused);
        assertEquals(4005, error.code());
        assertEquals("SHUTDOWN", error.kind());
        assertThrows(AssertionError.class, () -> operator.call(alpha.endpoint(), "keep", Map.of(), Map.of()));
        // The closed agent's name can be served again.
        try (MeshAgent again = agent("alpha").register(new Closing()).start()) {
            assertEquals(1, operator.call(again.endpoint(), "keep", Map.of(), Map.of()).asInt());
        }
    }

    @Test
    void awaitShutdownReturnsWhenAnotherThreadCloses() throws Exception {
        MeshAgent alpha = agent("alpha").register(new Forgetful()).start();
        CompletableFuture<Void> serving = CompletableFuture.runAsync(() -> {
            try {
                alpha.awaitShutdown();
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        mesh.awaitListed(registry, Set.of("alpha"));
        assertFalse(serving.isDone());
        alpha.close();
        serving.get(10, TimeUnit.SECONDS);
        Wait.eventually(SETTLE, "alpha to leave the registry", () -> {
            var listed = mesh.cli(registry, "list", "--json");
            return listed.stdout().contains(alpha.agentId()) ? null : listed;
        });
    }
}
