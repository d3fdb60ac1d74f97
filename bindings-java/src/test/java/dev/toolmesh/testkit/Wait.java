package dev.toolmesh.testkit;

import java.time.Duration;
import java.util.concurrent.Callable;

/** Bounded waiting. */
public final class Wait {
    private Wait() {}

    /**
     * Retries {@code attempt} until it returns without throwing (an assertion or anything else) and
     * with a non-null value, for at most {@code timeout}; then fails with the last problem.
     */
    public static <T> T eventually(Duration timeout, String what, Callable<T> attempt) {
        long deadline = System.nanoTime() + timeout.toNanos();
        Throwable last = null;
        while (true) {
            try {
                T value = attempt.call();
                if (value != null) {
                    return value;
                }
            } catch (Exception | AssertionError problem) {
                last = problem;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what + (last == null ? "" : ": " + last), last);
            }
            sleep(Duration.ofMillis(100));
        }
    }

    static void sleep(Duration duration) {
        try {
            Thread.sleep(duration.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}
