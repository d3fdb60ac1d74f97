package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.toolmesh.testkit.ManagedProcess;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Hundreds of calls in a JVM run with {@code -Xcheck:jni}, which reports JNI misuse: local
 * references piling up on core's long-lived threads, calls with an exception pending, bad
 * signatures. Every upcall and native method is exercised: invocations, answers, dependency calls
 * and their results, failures.
 */
class JniCheckTest {
    private static final int ROUNDS = 300;

    @Test
    void manyCallsLeaveNoJniWarnings(@TempDir Path dir) {
        try (Mesh mesh = new Mesh(dir)) {
            var certs = mesh.certs("alpha");
            ManagedProcess jvm = mesh.spawn("xcheck", List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xcheck:jni", "-cp", System.getProperty("java.class.path"), Checked.class.getName()), certs.env("alpha"));
            var done = jvm.waitForLine(Pattern.compile("rounds done: (\\d+) (\\d+)"), Duration.ofSeconds(180));
            assertEquals(String.valueOf(ROUNDS * (ROUNDS + 1) / 2), done.group(1), jvm.output());
            assertEquals(String.valueOf(ROUNDS), done.group(2), jvm.output());
            // Resource reads (invoke_catalog's upcall) and rich results (completeResult), valid and refused.
            var catalog = jvm.waitForLine(Pattern.compile("resources read, pictures, refusals: (\\d+) (\\d+) (\\d+)"), Duration.ofSeconds(1));
            assertEquals(List.of(String.valueOf(ROUNDS), String.valueOf(ROUNDS), String.valueOf(ROUNDS)),
                    List.of(catalog.group(1), catalog.group(2), catalog.group(3)), jvm.output());
            // 128 + SIGTERM: the JVM ran its shutdown hooks (closing the agent) and exited.
            assertEquals(143, jvm.stop(Duration.ofSeconds(30)), jvm.output());
            assertFalse(jvm.output().contains("WARNING in native method"), jvm.output());
            assertFalse(jvm.output().contains("JNI local refs"), jvm.output());
            // Core's threads are attached once, on their first upcall, and stay attached: as many
            // after the last round as after the first, each named in Java, and never more than core has.
            var attached = jvm.waitForLine(Pattern.compile("attached after the first round: (\\d+), after the last: (\\d+), named: (\\d+)"),
                    Duration.ofSeconds(1));
            int first = Integer.parseInt(attached.group(1));
            assertTrue(first >= 1 && first <= 4, attached.group());
            assertEquals(attached.group(1), attached.group(2), attached.group());
            assertEquals(attached.group(2), attached.group(3), attached.group());
        }
    }

    public static class Tools {
        @MeshTool(capability = "add")
        public int add(int a, int b) {
            return a + b;
        }

        @MeshTool(capability = "fail")
        public int fail() {
            throw new IllegalStateException("expected");
        }

        /** 1 + 2 + ... + n, one dependency call per term. */
        @MeshTool(dependencies = {"add"})
        public CompletableFuture<Integer> triangle(int n, MeshProxy add) {
            CompletableFuture<Integer> total = CompletableFuture.completedFuture(0);
            for (int i = 1; i <= n; i++) {
                int term = i;
                total = total.thenCompose(sum -> add.call(Map.of("a", sum, "b", term), Integer.class));
            }
            return total;
        }

        /** How many of {@code n} calls failed as they should. */
        @MeshTool(dependencies = {"fail"})
        public int failures(int n, MeshProxy fail) {
            int failed = 0;
            for (int i = 0; i < n; i++) {
                if (fail.call(null).handle((v, thrown) -> thrown instanceof ToolmeshException || thrown.getCause() instanceof ToolmeshException).join()) {
                    failed++;
                }
            }
            return failed;
        }
    }

    /** The checked JVM: a standalone agent calling itself, then exiting. */
    static final class Checked {
        public static void main(String[] args) throws Exception {
            try (MeshAgent agent = Toolmesh.agent("alpha").register(new Tools())
                    .tool(ToolDefinition.builder("picture").handler(call -> ToolResult.builder().text("one").image(new byte[] {1, 2}, "image/png").build()).build())
                    .tool(ToolDefinition.builder("broken").handler(call -> ToolResult.builder().item(Map.of("type", "video")).build()).build())
                    .resourceTemplate(ResourceTemplate.builder("test://item/{n}", "item").handler(read -> "item " + read.variable("n")).build())
                    .start()) {
                var certs = new dev.toolmesh.testkit.Certs(Path.of(System.getenv("TOOLMESH_TLS_CA")).getParent());
                Mcp operator = new Mcp(certs.clientContext("operator"));
                int sum = operator.call(agent.endpoint(), "triangle", Map.of("n", ROUNDS), Map.of()).asInt();
                int failed = operator.call(agent.endpoint(), "failures", Map.of("n", ROUNDS), Map.of()).asInt();
                long afterFirst = NativeTesting.threadsAttached();
                operator.call(agent.endpoint(), "triangle", Map.of("n", ROUNDS), Map.of());
                operator.call(agent.endpoint(), "failures", Map.of("n", ROUNDS), Map.of());
                long afterLast = NativeTesting.threadsAttached();
                long named = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().matches("toolmesh-worker-\\d+")).count();
                System.out.println("attached after the first round: " + afterFirst + ", after the last: " + afterLast + ", named: " + named);
                int read = 0;
                int pictures = 0;
                int refused = 0;
                for (int i = 0; i < ROUNDS; i++) {
                    String uri = "test://item/" + i;
                    if (operator.request(agent.endpoint(), "resources/read", Map.of("uri", uri), uri)
                            .path("result").path("contents").path(0).path("text").asText().equals("item " + i)) {
                        read++;
                    }
                    if (operator.callResult(agent.endpoint(), "picture", Map.of()).path("content").size() == 2) {
                        pictures++;
                    }
                    if (operator.callError(agent.endpoint(), "broken", Map.of()).path("name").asText().equals("HANDLER_RESULT")) {
                        refused++;
                    }
                }
                System.out.println("resources read, pictures, refusals: " + read + " " + pictures + " " + refused);
                System.out.println("rounds done: " + sum + " " + failed);
                agent.awaitShutdown();
            }
        }
    }
}
