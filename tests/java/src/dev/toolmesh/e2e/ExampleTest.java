package dev.toolmesh.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mesh;
import dev.toolmesh.testkit.Registry;
import dev.toolmesh.testkit.Wait;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README demo: examples/java's Calc as its own JVM (the native library taken from
 * java.library.path this time) and examples/python/stats.py, whose mean3 calls Calc's sum3.
 */
class ExampleTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void pythonStatsUsesTheJavaCalculator(@TempDir Path dir) throws Exception {
        Path classes = dir.resolve("classes");
        Path source = Mesh.repo().resolve("examples/java/src/main/java/Calc.java");
        int compiled = ToolProvider.getSystemJavaCompiler().run(null, null, null,
                "-parameters", "-classpath", System.getProperty("java.class.path"), "-d", classes.toString(), source.toString());
        assertEquals(0, compiled);

        try (Mesh mesh = new Mesh(dir)) {
            Certs certs = mesh.certs("calc", "stats");
            Registry registry = mesh.startRegistry();
            Map<String, String> env = new HashMap<>(certs.env("calc"));
            env.put("TOOLMESH_REGISTRY_URL", registry.url());
            env.put("TOOLMESH_HEARTBEAT_INTERVAL_MS", String.valueOf(Mesh.HEARTBEAT_MS));
            // The cargo output the jar's copy came from (NativeLibraryTest checks this path is the one loaded).
            Path libraryDir = Path.of(System.getProperty("toolmesh.nativeLibraryDir", Mesh.repo().resolve("target/debug").toString()));
            Mesh.Agent calc = mesh.startAgent("calc", List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Djava.library.path=" + libraryDir, "-cp", classes + java.io.File.pathSeparator + System.getProperty("java.class.path"), "Calc"), env);
            mesh.startScriptAgent(Mesh.python("examples/python/stats.py"), "stats", registry, Map.of());
            mesh.awaitListed(registry, Set.of("calc", "stats"));

            assertEquals(6, call(mesh, registry, "sum3", "{\"a\": 1, \"b\": 2, \"c\": 3}"));
            assertEquals(3.0, call(mesh, registry, "mean3", "{\"a\": 1, \"b\": 2, \"c\": 6}"));

            // 128 + SIGTERM: the JVM ran its shutdown hook, which closed the agent.
            assertEquals(143, calc.process().stop(Duration.ofSeconds(20)), calc.process().output());
        }
    }

    private static double call(Mesh mesh, Registry registry, String capability, String arguments) {
        return Wait.eventually(Duration.ofSeconds(20), capability + " through the CLI", () -> {
            var done = mesh.cli(registry, "call", capability, arguments);
            if (done.status() != 0) {
                throw new AssertionError(done.toString());
            }
            return JSON.readTree(done.stdout()).asDouble();
        });
    }
}
