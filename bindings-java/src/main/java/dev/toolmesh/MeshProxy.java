package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.Consumer;

/**
 * A callable stand-in for one declared dependency of a tool, handed to each call of that tool.
 * {@code call(arguments)} calls a provider chosen by the mesh (discovery, balancing, failover,
 * timeouts and mTLS are core's) and completes with the remote tool's result; a failure completes
 * it exceptionally with a {@link ToolmeshException}. The request context of the call being
 * handled (propagated headers, trace) flows into the call, and the future completes on the
 * agent's executor with that context current, so what a continuation calls carries it too.
 */
public final class MeshProxy {
    private final long agent;
    private final String tool;
    private final int index;
    private final String capability;
    private final RequestContext context;
    private final Executor executor;

    MeshProxy(long agent, String tool, int index, String capability, RequestContext context, Executor executor) {
        this.agent = agent;
        this.tool = tool;
        this.index = index;
        this.capability = capability;
        this.context = context;
        this.executor = executor;
    }

    /** The capability this proxy calls. */
    public String capability() {
        return capability;
    }

    /** Calls the dependency with {@code arguments} (a map, record or POJO; null for none). */
    public CompletableFuture<JsonNode> call(Object arguments) {
        return call(arguments, Json.MAPPER.constructType(JsonNode.class));
    }

    /** Calls the dependency and decodes its result into {@code type}. */
    public <T> CompletableFuture<T> call(Object arguments, Class<T> type) {
        return call(arguments, Json.MAPPER.constructType(type));
    }

    /** Calls the dependency and decodes its result into a generic type, e.g. {@code new TypeReference<List<Integer>>() {}}. */
    public <T> CompletableFuture<T> call(Object arguments, TypeReference<T> type) {
        return call(arguments, Json.MAPPER.constructType(type));
    }

    /**
     * Calls the dependency like {@link #call(Object)}; {@code onUpdate} receives what its callee
     * reports while it runs ({@link CalleeUpdate.Progress}, {@link CalleeUpdate.Log}), in order, on
     * the agent's executor with the handler's request context current, all before the future
     * completes. Such a call's reports are the handler's to re-emit or transform (for example with
     * {@code call.context().progress(...)}): core does not relay them to the handler's own caller
     * as it does for a plain call.
     */
    public CompletableFuture<JsonNode> stream(Object arguments, Consumer<CalleeUpdate> onUpdate) {
        Objects.requireNonNull(onUpdate, "onUpdate");
        return send(arguments, false, onUpdate).thenApply(resultJson -> decode(resultJson, Json.MAPPER.constructType(JsonNode.class)));
    }

    /**
     * Calls the dependency and completes with its whole result: every content item as the callee
     * sent it (images, audio, resource links, embedded resources, text) and its
     * {@code structuredContent}. A handler that returns it answers its own caller with the same
     * result, unchanged.
     */
    public CompletableFuture<ToolResult> callResult(Object arguments) {
        return send(arguments, true, null).thenApply(ToolResult::fromJson);
    }

    private <T> CompletableFuture<T> call(Object arguments, JavaType resultType) {
        return send(arguments, false, null).thenApply(resultJson -> decode(resultJson, resultType));
    }

    private CompletableFuture<String> send(Object arguments, boolean whole, Consumer<CalleeUpdate> onUpdate) {
        String argumentsJson;
        try {
            argumentsJson = Json.MAPPER.writeValueAsString(arguments == null ? Map.of() : arguments);
        } catch (JsonProcessingException e) {
            return CompletableFuture.failedFuture(
                    new IllegalArgumentException("the arguments for '" + capability + "' are not JSON: " + e.getOriginalMessage(), e));
        }
        return Native.callDependency(agent, tool, index, argumentsJson, whole, onUpdate, context, executor);
    }

    private <T> T decode(String json, JavaType type) {
        try {
            return Json.MAPPER.readValue(json, type);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException("the result of '" + capability + "' is not a valid " + type.toCanonical() + ": "
                    + e.getOriginalMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "MeshProxy[" + capability + ", dependency #" + index + " of '" + tool + "']";
    }
}
