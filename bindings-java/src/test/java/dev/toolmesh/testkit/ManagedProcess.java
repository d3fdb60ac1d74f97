package dev.toolmesh.testkit;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A child process whose stdout and stderr go to files (never a pipe that could fill up). */
public final class ManagedProcess {
    private final List<String> argv;
    private final Path stdout;
    private final Path stderr;
    private final Process process;

    ManagedProcess(List<String> argv, Map<String, String> env, Path logPrefix) {
        this.argv = argv;
        this.stdout = logPrefix.resolveSibling(logPrefix.getFileName() + ".out");
        this.stderr = logPrefix.resolveSibling(logPrefix.getFileName() + ".err");
        ProcessBuilder builder = new ProcessBuilder(argv)
                .redirectOutput(stdout.toFile())
                .redirectError(stderr.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        builder.environment().putAll(env);
        try {
            this.process = builder.start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start " + argv, e);
        }
    }

    /** Both logs, for assertion messages. */
    public String output() {
        return "--- stdout of " + argv + "\n" + read(stdout) + "--- stderr\n" + read(stderr);
    }

    /** Waits for a line matching {@code pattern} on stdout or stderr; fails if the process exits first. */
    public Matcher waitForLine(Pattern pattern, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            for (Path log : List.of(stdout, stderr)) {
                Matcher matcher = pattern.matcher(read(log));
                if (matcher.find()) {
                    return matcher;
                }
            }
            if (!process.isAlive()) {
                throw new AssertionError(argv + " exited with " + process.exitValue() + " before it was ready\n" + output());
            }
            Wait.sleep(Duration.ofMillis(50));
        }
        throw new AssertionError(argv + " was not ready within " + timeout + "\n" + output());
    }

    /** Waits for the process to exit by itself; its exit status, or an AssertionError if it is still running. */
    public int waitForExit(Duration timeout) {
        try {
            if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError(argv + " did not exit within " + timeout + "\n" + output());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
        return process.exitValue();
    }

    /** SIGTERM, then SIGKILL if it has not exited within {@code grace}; returns the exit status. */
    public int stop(Duration grace) {
        process.destroy();
        try {
            if (!process.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
        return process.isAlive() ? -1 : process.exitValue();
    }

    void kill() {
        process.destroyForcibly();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String read(Path log) {
        try {
            return Files.exists(log) ? Files.readString(log, StandardCharsets.UTF_8) : "";
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
