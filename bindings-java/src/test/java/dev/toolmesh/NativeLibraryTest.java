package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.toolmesh.testkit.ManagedProcess;
import dev.toolmesh.testkit.Mesh;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Where {@code libtoolmesh_jni} is loaded from, as the JVM's own memory map says: a directory on
 * {@code java.library.path} that holds it wins; otherwise the copy the jar carries is extracted.
 * Both child JVMs have the bundled copy on their class path, so only the map tells them apart.
 */
class NativeLibraryTest {
    private static final Pattern LOADED = Pattern.compile("loaded from: (.*)");

    @Test
    void aLibraryOnTheLibraryPathWinsOverTheBundledOne(@TempDir Path dir) throws IOException {
        Path libraryDir = Files.createDirectories(dir.resolve("lib"));
        try (InputStream bundled = NativeLibrary.class.getResourceAsStream("/native/" + NativeLibrary.platform() + "/libtoolmesh_jni.so")) {
            Files.copy(bundled, libraryDir.resolve("libtoolmesh_jni.so"));
        }
        assertEquals(libraryDir.resolve("libtoolmesh_jni.so").toString(), loadedFrom(dir, "-Djava.library.path=" + libraryDir));
    }

    @Test
    void otherwiseTheBundledLibraryIsExtracted(@TempDir Path dir) throws IOException {
        Path temp = Files.createDirectories(dir.resolve("tmp"));
        Path empty = Files.createDirectories(dir.resolve("empty"));
        String loaded = loadedFrom(dir, "-Djava.io.tmpdir=" + temp, "-Djava.library.path=" + empty);
        // Deleted once loaded: the mapping stays, the file does not.
        assertTrue(loaded.matches(Pattern.quote(temp + "/libtoolmesh_jni-") + "\\d+\\.so \\(deleted\\)"), loaded);
    }

    private static String loadedFrom(Path dir, String... properties) {
        try (Mesh mesh = new Mesh(dir)) {
            List<String> argv = new java.util.ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
            argv.addAll(List.of(properties));
            argv.addAll(List.of("-cp", System.getProperty("java.class.path"), WhereLoaded.class.getName()));
            ManagedProcess jvm = mesh.spawn("where", argv, Map.of());
            assertEquals(0, jvm.waitForExit(Duration.ofSeconds(60)), jvm.output());
            return jvm.waitForLine(LOADED, Duration.ofSeconds(1)).group(1);
        }
    }

    /** The child JVM: loads the library and prints the file its mapping comes from. */
    static final class WhereLoaded {
        public static void main(String[] args) throws IOException {
            NativeTesting.threadsAttached();
            List<String> mapped = Files.readAllLines(Path.of("/proc/self/maps")).stream()
                    .filter(line -> line.contains("libtoolmesh_jni"))
                    .map(line -> line.replaceFirst("^(\\S+\\s+){5}", ""))
                    .distinct()
                    .toList();
            if (mapped.size() != 1) {
                throw new IllegalStateException("expected one mapped libtoolmesh_jni, got " + mapped);
            }
            System.out.println("loaded from: " + mapped.get(0));
        }
    }
}
