package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.concurrent.Executor;

/** One call of a local tool, on the agent's executor. */
final class Invocation implements ToolCall {

    private final long agent;
    private final ToolDefinition tool;
    private final JsonNode arguments;
    private final RequestContext context;
    private final Executor executor;

    Invocation(long agent, ToolDefinition tool, JsonNode arguments, RequestContext context, Executor executor) {
        this.agent = agent;
        this.tool = tool;
        this.arguments = arguments;
        this.context = context;
        this.executor = executor;
    }

    @Override
    public JsonNode arguments() {
        return arguments;
    }

    @Override
    public <T> T argument(String name, Class<T> type) {
        return argument(name, Json.MAPPER.constructType(type));
    }

    @Override
    public <T> T argument(String name, TypeReference<T> type) {
        return argument(name, Json.MAPPER.constructType(type));
    }

    <T> T argument(String name, JavaType type) {
        JsonNode value = arguments.get(name);
        if (value == null || value.isNull()) {
            return null;
        }
        try {
            return Json.MAPPER.treeToValue(value, type);
        } catch (JsonProcessingException e) {
            // Core checked the argument's JSON type; what is inside it is checked here, as it is decoded.
            // Escaping the handler, it reaches core as what it is, and core words the caller's error.
            ArgumentNotDecodedException rejected = new ArgumentNotDecodedException(tool.name(), name, type.toCanonical(), e.getOriginalMessage());
            rejected.initCause(e);
            throw rejected;
        }
    }

    @Override
    public MeshProxy proxy(String capability) {
        int index = tool.dependencyCapabilities().indexOf(capability);
        if (index < 0) {
            throw new IllegalArgumentException("tool '" + tool.name() + "' declares no dependency on '" + capability + "'");
        }
        return proxy(index);
    }

    @Override
    public MeshProxy proxy(int index) {
        List<String> capabilities = tool.dependencyCapabilities();
        if (index < 0 || index >= capabilities.size()) {
            throw new IllegalArgumentException("tool '" + tool.name() + "' declares " + capabilities.size()
                    + " dependencies; there is no dependency #" + index);
        }
        return new MeshProxy(agent, tool.name(), index, capabilities.get(index), context, executor);
    }

    @Override
    public RequestContext context() {
        return context;
    }
}
