package dev.toolmesh;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;

/** One call of a tool declared with {@link ToolDefinition#builder(String)}, as its {@link ToolHandler} sees it. */
public interface ToolCall {
    /** The call's arguments, a JSON object already checked against the tool's input schema. */
    JsonNode arguments();

    /**
     * One argument decoded into {@code type} (a boxed primitive, string, record, POJO...); null
     * when absent. Throws a {@link ToolmeshException} {@code INVALID_ARGUMENTS} when it does not fit,
     * which the caller receives as it is.
     */
    <T> T argument(String name, Class<T> type);

    /** One argument decoded into a generic type, e.g. {@code new TypeReference<List<Integer>>() {}}; null when absent. */
    <T> T argument(String name, TypeReference<T> type);

    /** The proxy of the first declared dependency on {@code capability}. */
    MeshProxy proxy(String capability);

    /** The proxy of the {@code index}-th declared dependency. */
    MeshProxy proxy(int index);

    /** The request context (also {@link Toolmesh#context()} on the handler's thread). */
    RequestContext context();
}
