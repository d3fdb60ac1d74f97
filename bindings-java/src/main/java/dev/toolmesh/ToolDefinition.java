package dev.toolmesh;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A tool: what the mesh is told about it (name, capability, version, tags, description, input
 * schema, dependencies) and the handler that runs it. Made from {@link MeshTool} methods by
 * {@link AgentBuilder#register(Object)}, or without annotations by {@link #builder(String)}:
 *
 * <pre>{@code
 * ToolDefinition.builder("add").tags("math")
 *     .parameter("a", int.class).parameter("b", int.class)
 *     .handler(call -> call.argument("a", Integer.class) + call.argument("b", Integer.class))
 *     .build();
 * }</pre>
 */
public final class ToolDefinition {
    private final String name;
    private final String capability;
    private final String version;
    private final List<String> tags;
    private final String description;
    private final ObjectNode inputSchema;
    /** As core reads them: a capability name, or an object with capability, tags and version. */
    private final List<JsonNode> dependencies;
    private final List<String> dependencyCapabilities;
    private final long timeoutMs;
    /** MCP's tool annotations, with MCP's member names; empty when none are set. */
    private final ObjectNode annotations;
    /** MCP's outputSchema; null when the tool declares none. */
    private final JsonNode outputSchema;
    private final List<String> requiredClientCapabilities;
    /** MCP's execution.taskSupport; null when the tool declares none. */
    private final String taskSupport;
    private final ToolHandler handler;

    private ToolDefinition(Builder builder, ObjectNode inputSchema) {
        this.name = builder.name;
        this.capability = builder.capability; // when null, core takes the name
        this.version = builder.version;
        this.tags = List.copyOf(builder.tags);
        this.description = builder.description;
        this.inputSchema = inputSchema;
        this.dependencies = List.copyOf(builder.dependencies);
        this.dependencyCapabilities = dependencies.stream().map(d -> d.isTextual() ? d.asText() : d.path("capability").asText()).toList();
        this.timeoutMs = builder.timeoutMs;
        this.annotations = builder.annotations.deepCopy();
        this.outputSchema = builder.outputSchema;
        this.requiredClientCapabilities = List.copyOf(builder.requiredClientCapabilities);
        this.taskSupport = builder.taskSupport;
        this.handler = Objects.requireNonNull(builder.handler, () -> "tool '" + builder.name + "' has no handler");
    }

    public static Builder builder(String name) {
        return new Builder(name);
    }

    public String name() {
        return name;
    }

    /** The capability set with {@link Builder#capability}; null when unset, and core then takes the name. */
    public String capability() {
        return capability;
    }

    /** The JSON Schema of the tool's arguments. */
    public String inputSchema() {
        return inputSchema.toString();
    }

    List<String> dependencyCapabilities() {
        return dependencyCapabilities;
    }

    ToolHandler handler() {
        return handler;
    }

    /** The tool as core's JSON tool definition. */
    ObjectNode info() {
        ObjectNode info = Json.MAPPER.createObjectNode().put("name", name);
        if (capability != null) {
            info.put("capability", capability); // absent: core takes the name
        }
        info.put("version", version).put("description", description);
        info.set("tags", Json.MAPPER.valueToTree(tags));
        info.set("input_schema", inputSchema);
        info.putArray("dependencies").addAll(dependencies);
        if (timeoutMs > 0) {
            info.put("timeout_ms", timeoutMs);
        }
        if (!annotations.isEmpty()) {
            info.set("annotations", annotations);
        }
        if (outputSchema != null) {
            info.set("output_schema", outputSchema);
        }
        if (!requiredClientCapabilities.isEmpty()) {
            info.set("required_client_capabilities", Json.MAPPER.valueToTree(requiredClientCapabilities));
        }
        if (taskSupport != null) {
            info.put("task_support", taskSupport);
        }
        return info;
    }

    @Override
    public String toString() {
        return "ToolDefinition" + info();
    }

    public static final class Builder {
        private final String name;
        private String capability;
        private String version = "1.0.0";
        private final List<String> tags = new ArrayList<>();
        private String description = "";
        private final List<Schemas.Parameter> parameters = new ArrayList<>();
        private final List<JsonNode> dependencies = new ArrayList<>();
        private long timeoutMs;
        private final ObjectNode annotations = Json.MAPPER.createObjectNode();
        private JsonNode outputSchema;
        /** Set by {@link #inputSchema(String)}; else the schema comes from the parameters. */
        private ObjectNode inputSchema;
        private final List<String> requiredClientCapabilities = new ArrayList<>();
        private String taskSupport;
        private ToolHandler handler;

        private Builder(String name) {
            this.name = Objects.requireNonNull(name, "name");
        }

        /** The capability the tool provides; its name by default. */
        public Builder capability(String capability) {
            this.capability = capability;
            return this;
        }

        public Builder version(String version) {
            this.version = version;
            return this;
        }

        public Builder tags(String... tags) {
            this.tags.addAll(List.of(tags));
            return this;
        }

        public Builder description(String description) {
            this.description = description;
            return this;
        }

        /** A required argument; its schema comes from {@code type} (a class or a generic type). */
        public Builder parameter(String name, Type type) {
            parameters.add(new Schemas.Parameter(name, type, true));
            return this;
        }

        /** An argument callers may leave out. */
        public Builder optionalParameter(String name, Type type) {
            parameters.add(new Schemas.Parameter(name, type, false));
            return this;
        }

        /**
         * The input schema written out, as a JSON Schema document of an object, instead of
         * {@link #parameter}s: served as given (JSON Schema 2020-12 features, or
         * {@code "x-mcp-header": "Region"} on a property, which modern MCP clients mirror in an
         * {@code Mcp-Param-Region} header), and core checks every call's arguments against it.
         */
        public Builder inputSchema(String jsonSchema) {
            JsonNode schema;
            try {
                schema = Json.MAPPER.readTree(jsonSchema);
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new IllegalArgumentException("tool '" + name + "': the input schema is not JSON: " + e.getOriginalMessage(), e);
            }
            if (!(schema instanceof ObjectNode object)) {
                throw new IllegalArgumentException("tool '" + name + "': the input schema is a JSON object, e.g. {\"type\": \"object\"}");
            }
            this.inputSchema = object;
            return this;
        }

        /** A dependency on {@code capability}, any version and tags. */
        public Builder dependsOn(String capability) {
            dependencies.add(Json.MAPPER.getNodeFactory().textNode(capability));
            return this;
        }

        /**
         * A dependency narrowed by a semver constraint ({@code ""} for any) and tags
         * ({@code "fast"} required, {@code "+fast"} preferred, {@code "-slow"} excluded).
         */
        public Builder dependsOn(String capability, String version, String... tags) {
            ObjectNode selector = Json.MAPPER.createObjectNode().put("capability", capability);
            if (tags.length > 0) {
                selector.set("tags", Json.MAPPER.valueToTree(tags));
            }
            if (!version.isEmpty()) {
                selector.put("version", version);
            }
            dependencies.add(selector);
            return this;
        }

        /** Timeout of each dependency call; the agent's {@code call_timeout_ms} by default. */
        public Builder timeoutMs(long timeoutMs) {
            this.timeoutMs = timeoutMs;
            return this;
        }

        /**
         * MCP's {@code readOnlyHint}: the tool does not change its environment. A call to a
         * read-only (or idempotent) tool is also retried on another provider when the connection
         * breaks after the provider received it.
         */
        public Builder readOnlyHint(boolean readOnly) {
            return hint("readOnlyHint", readOnly);
        }

        /** MCP's {@code idempotentHint}: calling it again with the same arguments has no further effect (see {@link #readOnlyHint}). */
        public Builder idempotentHint(boolean idempotent) {
            return hint("idempotentHint", idempotent);
        }

        /** MCP's {@code destructiveHint}: the tool may perform destructive updates. */
        public Builder destructiveHint(boolean destructive) {
            return hint("destructiveHint", destructive);
        }

        /** MCP's {@code openWorldHint}: the tool interacts with an open world of external entities. */
        public Builder openWorldHint(boolean openWorld) {
            return hint("openWorldHint", openWorld);
        }

        /** MCP's {@code title} annotation: a human-readable title for the tool. */
        public Builder title(String title) {
            annotations.put("title", title);
            return this;
        }

        /**
         * MCP's {@code outputSchema}, from a record or POJO type: {@code tools/list} shows it, and
         * core checks every answer's structured content against it (HANDLER_RESULT when it breaks it).
         */
        public Builder outputSchema(Type type) {
            this.outputSchema = Schemas.typeSchema(type);
            return this;
        }

        /** MCP's {@code outputSchema} as a JSON Schema document (of an object). */
        public Builder outputSchema(String jsonSchema) {
            try {
                this.outputSchema = Json.MAPPER.readTree(jsonSchema);
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new IllegalArgumentException("tool '" + name + "': the output schema is not JSON: " + e.getOriginalMessage(), e);
            }
            return this;
        }

        /**
         * Client capabilities the tool needs ({@code "sampling"}, {@code "elicitation"},
         * {@code "roots"}): a modern MCP client that did not declare one is refused (400 / -32021)
         * before the handler runs.
         */
        public Builder requiresClientCapabilities(String... capabilities) {
            requiredClientCapabilities.addAll(List.of(capabilities));
            return this;
        }

        /**
         * Whether a call may run as a task (the MCP tasks extension): {@code "forbidden"} (the
         * default), {@code "optional"} (a call from a client that negotiated the extension runs
         * as a task unless the handler answers at once) or {@code "required"} (any other client
         * is refused with -32021). Core checks the value when the agent starts, and runs the task.
         */
        public Builder taskSupport(String taskSupport) {
            this.taskSupport = Objects.requireNonNull(taskSupport, "taskSupport");
            return this;
        }

        /** Sets one of MCP's boolean tool hints, by its MCP member name. */
        private Builder hint(String member, boolean value) {
            annotations.put(member, value);
            return this;
        }

        public Builder handler(ToolHandler handler) {
            this.handler = handler;
            return this;
        }

        public ToolDefinition build() {
            if (inputSchema != null && !parameters.isEmpty()) {
                throw new IllegalStateException("tool '" + name + "' has both parameters and a written-out input schema: declare one or the other");
            }
            return new ToolDefinition(this, inputSchema != null ? inputSchema : Schemas.inputSchema(parameters));
        }
    }
}
