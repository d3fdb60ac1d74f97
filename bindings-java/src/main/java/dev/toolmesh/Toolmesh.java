package dev.toolmesh;

import java.util.Map;
import java.util.Optional;

/**
 * toolmesh for Java: MCP agents in a service mesh. Discovery, mutual TLS, MCP, header propagation
 * and tracing all happen in the shared native core; this package turns Java methods into tools.
 *
 * <pre>{@code
 * try (var agent = Toolmesh.agent("calc").register(new Calc()).start()) {
 *     agent.awaitShutdown();
 * }
 * }</pre>
 *
 * <p>Inside a tool call, {@link #headers()}, {@link #traceId()} and {@link #context()} describe
 * the request being handled, on the handler's thread and in the continuations of the
 * {@link MeshProxy} calls it makes.
 */
public final class Toolmesh {
    private Toolmesh() {}

    /** A new agent named {@code name}, configured by the {@code TOOLMESH_*} environment and {@link AgentBuilder#option}. */
    public static AgentBuilder agent(String name) {
        return new AgentBuilder(name);
    }

    /** The context of the request being handled on this thread, if any. */
    public static Optional<RequestContext> context() {
        return Optional.ofNullable(RequestContext.current());
    }

    /** The propagated headers (lowercase names) of the request being handled; empty outside a call. */
    public static Map<String, String> headers() {
        RequestContext context = RequestContext.current();
        return context == null ? Map.of() : context.headers();
    }

    /**
     * Opens a scope in which the {@link MeshProxy} calls this thread makes carry {@code headers},
     * set on purpose: the handler each call reaches sees them whatever its allow-list. Close it
     * with try-with-resources; see {@link CallHeaders}.
     */
    public static CallHeaders withCallHeaders(Map<String, String> headers) {
        return new CallHeaders(headers);
    }

    /** The trace id of the request being handled, or null outside a call. */
    public static String traceId() {
        RequestContext context = RequestContext.current();
        return context == null ? null : context.traceId();
    }
}
