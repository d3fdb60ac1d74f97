package dev.toolmesh;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads {@code libtoolmesh_jni}: from {@code java.library.path} when it is there, else the copy
 * the jar carries under {@code /native/<os>-<arch>/}, extracted to a temporary file.
 */
final class NativeLibrary {
    private static final String NAME = "toolmesh_jni";

    private NativeLibrary() {}

    static void load() {
        String fileName = System.mapLibraryName(NAME);
        for (String directory : System.getProperty("java.library.path", "").split(File.pathSeparator)) {
            File candidate = new File(directory, fileName);
            if (!directory.isEmpty() && candidate.isFile()) {
                System.load(candidate.getAbsolutePath());
                return;
            }
        }
        String resource = "/native/" + platform() + "/" + fileName;
        try (InputStream bundled = NativeLibrary.class.getResourceAsStream(resource)) {
            if (bundled == null) {
                throw new UnsatisfiedLinkError("toolmesh has no native library for " + platform() + ": " + fileName
                        + " is neither on java.library.path nor in the toolmesh jar at " + resource);
            }
            Path extracted = Files.createTempFile("libtoolmesh_jni-", ".so");
            try {
                Files.copy(bundled, extracted, StandardCopyOption.REPLACE_EXISTING);
                System.load(extracted.toAbsolutePath().toString());
            } finally {
                // Once loaded the library stays mapped; the file is not needed any more.
                Files.deleteIfExists(extracted);
            }
        } catch (IOException e) {
            UnsatisfiedLinkError error = new UnsatisfiedLinkError("cannot extract the toolmesh native library: " + e);
            error.initCause(e);
            throw error;
        }
    }

    /** {@code linux-x86_64}, {@code linux-aarch64}, ... */
    static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT).split(" ")[0];
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        if (arch.equals("amd64")) {
            arch = "x86_64";
        }
        return os + "-" + arch;
    }
}
