package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.OptionalLong;

/**
 * The request context of the tool call being handled: the propagated headers (allow-listed by the
 * agent's {@code propagate_headers}, lowercase names) and the W3C trace context. Core captured it;
 * dependency calls hand it back to core, which propagates the headers and continues the trace.
 * Handlers reach it through {@link Toolmesh#context()}, {@link Toolmesh#headers()} and
 * {@link Toolmesh#traceId()}.
 */
public final class RequestContext {
    private static final ThreadLocal<RequestContext> CURRENT = new ThreadLocal<>();

    private final long handle;
    private final String json;
    private final long receivedNanos = System.nanoTime();
    private JsonNode parsed;

    /** Made on a core thread when the call arrives, so only cheap work here; the JSON is read on first use. */
    RequestContext(long handle, String json) {
        this.handle = handle;
        this.json = json;
        Native.CLEANER.register(this, () -> Native.releaseContext(handle));
    }

    static RequestContext current() {
        return CURRENT.get();
    }

    /** Runs {@code action} with {@code context} as this thread's current context, then restores the previous one. */
    static void runWith(RequestContext context, Runnable action) {
        RequestContext previous = CURRENT.get();
        CURRENT.set(context);
        try {
            action.run();
        } finally {
            if (previous == null) {
                CURRENT.remove();
            } else {
                CURRENT.set(previous);
            }
        }
    }

    long handle() {
        return handle;
    }

    /** The propagated headers, lowercase names; a new modifiable map each time. */
    public Map<String, String> headers() {
        Map<String, String> headers = new LinkedHashMap<>();
        fields().path("headers").fields().forEachRemaining(h -> headers.put(h.getKey(), h.getValue().asText()));
        return headers;
    }

    /** The trace id (32 lowercase hex digits). */
    public String traceId() {
        return text("trace_id");
    }

    /** The span of the handler that is running; the calls it makes become its children. */
    public String spanId() {
        return text("span_id");
    }

    public boolean sampled() {
        return fields().path("sampled").asBoolean();
    }

    /** {@code 00-<trace id>-<span id>-<flags>} */
    public String traceparent() {
        return text("traceparent");
    }

    /** The W3C {@code tracestate}, or null. */
    public String tracestate() {
        return text("tracestate");
    }

    /** The caller's verified identity (its certificate's SPIFFE ID), or null outside a served call. */
    public String caller() {
        return text("caller");
    }

    /**
     * The capabilities the MCP client declared ({@code {"sampling": {}}}), or null when unknown (a
     * legacy-era request declares them only in its session's {@code initialize}).
     */
    public JsonNode clientCapabilities() {
        JsonNode declared = fields().path("client_capabilities");
        return declared.isObject() ? declared.deepCopy() : null;
    }

    /** The client's answers to this tool's earlier {@link InputRequired}, by request key; null when none. */
    public JsonNode inputResponses() {
        JsonNode answers = fields().path("input_responses");
        return answers.isObject() ? answers.deepCopy() : null;
    }

    /** The state of this tool's earlier {@link InputRequired}, checked by core; null when none. */
    public JsonNode requestState() {
        JsonNode state = fields().path("request_state");
        return state.isMissingNode() || state.isNull() ? null : state.deepCopy();
    }

    /** Milliseconds left before the inbound call's deadline, if it has one. */
    public OptionalLong remainingMillis() {
        JsonNode remaining = fields().path("remaining_ms");
        if (!remaining.isNumber()) {
            return OptionalLong.empty();
        }
        long elapsed = (System.nanoTime() - receivedNanos) / 1_000_000;
        return OptionalLong.of(Math.max(0, remaining.asLong() - elapsed));
    }

    /**
     * Reports the handler's progress to its caller: {@code progress} so far, of {@code total}
     * ({@link Double#NaN}: unknown), with an optional {@code message} (null: none). Core sends it
     * only when the caller asked for progress and is still waiting.
     *
     * @return whether it was sent
     */
    public boolean progress(double progress, double total, String message) {
        return Native.progress(handle, progress, total, message);
    }

    /** {@link #progress(double, double, String)} without a total or a message. */
    public boolean progress(double progress) {
        return progress(progress, Double.NaN, null);
    }

    /**
     * Sends {@code data} (encoded as JSON, as tool results are) as a log message at {@code level},
     * one of MCP's "debug", "info", "notice", "warning", "error", "critical", "alert",
     * "emergency", from {@code logger} (null: none). Core sends it only at or above the level the
     * caller opted into (a legacy MCP client gets "info" and up) while it is still waiting.
     *
     * @return whether it was sent
     * @throws ToolmeshException {@code INVALID_ARGUMENTS} for a level MCP does not name
     * @throws IllegalArgumentException when {@code data} cannot be encoded as JSON
     */
    public boolean log(String level, Object data, String logger) {
        String dataJson;
        try {
            dataJson = Json.MAPPER.writeValueAsString(data);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("the log message is not JSON: " + e.getOriginalMessage(), e);
        }
        return Native.log(handle, level, logger, dataJson);
    }

    /** {@link #log(String, Object, String)} without a logger name. */
    public boolean log(String level, Object data) {
        return log(level, data, null);
    }

    /**
     * Whether the request was cancelled: its caller closed the stream or sent
     * {@code notifications/cancelled}, or its deadline passed. Reports are dropped from then on,
     * and the dependency calls it makes fail with {@code CANCELLED}.
     */
    public boolean cancelled() {
        return Native.cancelled(handle);
    }

    /**
     * Runs {@code action} once when the request is cancelled (at once if it already is), on a
     * toolmesh pool thread. The agent already does this for every handler: a handler's thread is
     * interrupted while it runs, and the {@code CompletableFuture} it returned is cancelled; use
     * this for anything else the handler started. Closing the returned watch forgets it.
     */
    public AutoCloseable onCancel(Runnable action) {
        return Native.watchCancel(handle, action);
    }

    @Override
    public String toString() {
        return "RequestContext[traceparent=" + traceparent() + ", headers=" + headers() + "]";
    }

    private String text(String field) {
        JsonNode value = fields().path(field);
        return value.isTextual() ? value.asText() : null;
    }

    private synchronized JsonNode fields() {
        if (parsed == null) {
            try {
                parsed = Json.MAPPER.readTree(json);
            } catch (JsonProcessingException e) {
                throw new IllegalStateException("the native library sent a request context that is not JSON: " + json, e);
            }
        }
        return parsed;
    }
}
