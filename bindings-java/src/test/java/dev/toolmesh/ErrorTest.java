package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.toolmesh.testkit.Mesh;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Errors come from core with its codes and messages, as {@link ToolmeshException}s. */
class ErrorTest {
    private static final ToolDefinition ONE = ToolDefinition.builder("one").handler(call -> 1).build();

    private static ToolmeshException startFails(AgentBuilder agent) {
        return assertThrows(ToolmeshException.class, () -> agent.tool(ONE).start().close());
    }

    @Test
    void badOptionsAreRefusedByCore() {
        ToolmeshException notHttps = startFails(Toolmesh.agent("errors").option("registry_url", "http://127.0.0.1:1"));
        assertEquals(1004, notHttps.code());
        assertEquals("REGISTRY_URL_NOT_HTTPS", notHttps.kind());

        ToolmeshException unknown = startFails(Toolmesh.agent("errors").option("colour", "blue"));
        assertEquals(1001, unknown.code());
        assertEquals("INVALID_CONFIG", unknown.kind());
        assertTrue(unknown.getMessage().startsWith("unknown option 'colour'; the options are: name, registry_url"), unknown.getMessage());
        assertEquals("dev.toolmesh.ToolmeshException: [1001 INVALID_CONFIG] " + unknown.getMessage(), unknown.toString());

        ToolmeshException port = startFails(Toolmesh.agent("errors").option("port", "http"));
        assertEquals("port 'http' is not a number from 0 to 65535 (0 picks a free port)", port.getMessage());
    }

    @Test
    void aMissingIdentitySaysHowToCreateOne(@TempDir Path dir) {
        ToolmeshException missing = startFails(Toolmesh.agent("lonely"));
        assertEquals("CERTIFICATE_FILE", missing.kind());
        assertTrue(missing.getMessage().contains("TOOLMESH_TLS_CERT") && missing.getMessage().contains("toolmesh certs init"), missing.getMessage());

        ToolmeshException unreadable = startFails(Toolmesh.agent("lonely").options(Map.of(
                "tls_cert", dir.resolve("none.pem"), "tls_key", dir.resolve("none.key"), "tls_ca", dir.resolve("ca.pem"))));
        assertEquals(1002, unreadable.code());
    }

    @Test
    void invalidToolsAreRefusedByCore() {
        ToolDefinition spaced = ToolDefinition.builder("no spaces").handler(call -> 1).build();
        ToolmeshException error = assertThrows(ToolmeshException.class, () -> Toolmesh.agent("errors").tool(spaced).start());
        assertEquals("INVALID_CONFIG", error.kind());
        assertTrue(error.getMessage().startsWith("tool name 'no spaces' is not valid"), error.getMessage());

        ToolmeshException twice = assertThrows(ToolmeshException.class, () -> Toolmesh.agent("errors").tool(ONE).tool(ONE).start());
        assertEquals("two tools are named 'one'; tool names must be unique", twice.getMessage());
    }

    @Test
    void theEnvironmentIsReadByCore(@TempDir Path dir) {
        try (Mesh mesh = new Mesh(dir)) {
            var process = mesh.spawn("from-env", List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-cp", System.getProperty("java.class.path"), StartFromEnvironment.class.getName()),
                    Map.of("TOOLMESH_CALL_TIMEOUT_MS", "soon"));
            var reported = process.waitForLine(java.util.regex.Pattern.compile("start failed: (.*)"), java.time.Duration.ofSeconds(30));
            assertEquals("[1001 INVALID_CONFIG] environment variable TOOLMESH_CALL_TIMEOUT_MS: "
                    + "call_timeout_ms 'soon' must be a positive number of milliseconds", reported.group(1));
        }
    }

    /** Run in a child JVM whose environment the test sets. */
    static final class StartFromEnvironment {
        public static void main(String[] args) {
            try {
                Toolmesh.agent("from-env").tool(ONE).start().close();
                System.out.println("started");
            } catch (ToolmeshException e) {
                System.out.println("start failed: [" + e.code() + " " + e.kind() + "] " + e.getMessage());
            }
        }
    }
}
