package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.ManagedProcess;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A Rust panic never kills the JVM: in a native method it is thrown as {@code INTERNAL}, in a core
 * task it fails the Java future waiting for it, and the library serves on afterwards. The panics
 * are real, made by the library's testing hooks ({@link NativeTesting}).
 */
class PanicTest {
    @Test
    void panicsBecomeInternalErrorsAndAgentsServeOn(@TempDir Path dir) throws Exception {
        try (Mesh mesh = new Mesh(dir)) {
            panicThenServe(mesh.certs("alpha"));
        }
    }

    /** The same under -Xcheck:jni, in a JVM that must then exit normally. */
    @Test
    void panicsLeaveNoJniWarnings(@TempDir Path dir) {
        try (Mesh mesh = new Mesh(dir)) {
            Certs certs = mesh.certs("alpha");
            ManagedProcess jvm = mesh.spawn("panicking", List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xcheck:jni", "-cp", System.getProperty("java.class.path"), Panicking.class.getName(), certs.dir().toString()), Map.of());
            assertEquals(0, jvm.waitForExit(Duration.ofSeconds(120)), jvm.output());
            assertTrue(jvm.output().contains("panics survived"), jvm.output());
            assertFalse(jvm.output().contains("WARNING in native method"), jvm.output());
        }
    }

    static void panicThenServe(Certs certs) throws Exception {
        ToolmeshException direct = assertThrows(ToolmeshException.class, NativeTesting::panicInEntry);
        assertEquals(9001, direct.code());
        assertEquals("INTERNAL", direct.kind());
        assertEquals("toolmesh panicked: a test panic in a native method; this is a bug in toolmesh, please report it", direct.getMessage());

        CompletableFuture<String> inTask = Native.pendingCall(null, Runnable::run, null, NativeTesting::panicInTask);
        Throwable failed = assertThrows(ExecutionException.class, () -> inTask.get(10, TimeUnit.SECONDS)).getCause();
        ToolmeshException task = (ToolmeshException) failed;
        assertEquals(9001, task.code());
        assertEquals("INTERNAL", task.kind());
        assertTrue(task.getMessage().startsWith("a toolmesh task failed: ") && task.getMessage().contains("a test panic in a core task"),
                task.getMessage());

        ToolDefinition add = ToolDefinition.builder("add").parameter("a", int.class).parameter("b", int.class)
                .handler(call -> call.argument("a", Integer.class) + call.argument("b", Integer.class)).build();
        try (MeshAgent alpha = Toolmesh.agent("alpha").options(certs.options("alpha")).tool(add).start()) {
            assertEquals(5, new Mcp(certs.clientContext("operator")).call(alpha.endpoint(), "add", Map.of("a", 2, "b", 3), Map.of()).asInt());
        }
    }

    /** The child JVM: argument 0 is the certificates' directory. */
    static final class Panicking {
        public static void main(String[] args) throws Exception {
            panicThenServe(new Certs(Path.of(args[0])));
            System.out.println("panics survived");
        }
    }
}
