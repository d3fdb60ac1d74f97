package dev.toolmesh;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A scope whose dependency calls carry headers set on purpose; made by
 * {@link Toolmesh#withCallHeaders(Map)} and closed by try-with-resources:
 *
 * <pre>{@code
 * try (var scope = Toolmesh.withCallHeaders(Map.of("x-tenant", "acme"))) {
 *     add.call(Map.of("a", 1, "b", 2)).join();
 * }
 * }</pre>
 *
 * <p>The handler each call reaches sees them whatever its agent's allow-list
 * ({@code TOOLMESH_PROPAGATE_HEADERS}); they go further only where allow-lists name them. Inside a
 * tool call they are added to the headers the handler sends onward. The scope belongs to the
 * thread that opened it: {@link MeshProxy} calls started on that thread while it is open carry
 * its headers (continuations that run later on an executor start their own scope if they need
 * one). Scopes nest: an inner scope's value of a header wins. Core checks the headers when a
 * call is made: a name that is not a header name, a value that is not a header value, or a
 * header the request sets itself ({@code content-type}, {@code traceparent}, ...) fails the
 * call's future with a {@link ToolmeshException} {@code INVALID_ARGUMENTS} naming the header.
 */
public final class CallHeaders implements AutoCloseable {
    /** The headers of this thread's open scopes, name and value alternating, outer scopes first. */
    private static final ThreadLocal<String[]> CURRENT = new ThreadLocal<>();

    private final Thread owner = Thread.currentThread();
    private final String[] previous;
    private boolean closed;

    CallHeaders(Map<String, String> headers) {
        previous = CURRENT.get();
        List<String> pairs = new ArrayList<>(previous == null ? List.of() : List.of(previous));
        headers.forEach((name, value) -> {
            if (name == null || value == null) {
                throw new NullPointerException("withCallHeaders takes non-null names and values; got " + name + ": " + value);
            }
            pairs.add(name);
            pairs.add(value);
        });
        CURRENT.set(pairs.toArray(String[]::new));
    }

    /** This thread's call headers, name and value alternating, outer scopes first (empty outside a scope). */
    static String[] current() {
        String[] pairs = CURRENT.get();
        return pairs == null ? new String[0] : pairs;
    }

    /** Ends the scope: calls made after it no longer carry its headers. Closing twice does nothing. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        if (Thread.currentThread() != owner) {
            throw new IllegalStateException("a call-headers scope is closed on the thread that opened it (" + owner.getName() + ")");
        }
        closed = true;
        if (previous == null) {
            CURRENT.remove();
        } else {
            CURRENT.set(previous);
        }
    }
}
