package dev.toolmesh;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Objects;

/**
 * A resource the agent serves over MCP ({@code resources/list}, {@code resources/read}): either
 * with fixed content ({@link Builder#text}, {@link Builder#blob}), which core answers itself, or
 * read through a {@link ResourceHandler} on the agent's executor. Resources are not registered
 * with the registry; the callee's policy decides who may list and read them, by name, as for tools.
 *
 * <pre>{@code
 * Resource.builder("test://static-text", "static-text").mimeType("text/plain").text("hello").build();
 * Resource.builder("test://clock", "clock").handler(read -> Instant.now().toString()).build();
 * }</pre>
 */
public final class Resource {
    private final String uri;
    private final ObjectNode info;
    private final ResourceHandler handler;

    private Resource(Builder builder) {
        this.uri = builder.uri;
        this.info = builder.info.deepCopy();
        this.handler = builder.handler;
        if (handler == null && !info.has("text") && !info.has("blob")) {
            throw new IllegalArgumentException("resource '" + uri + "' has neither content (text or blob) nor a handler");
        }
        if (handler != null && (info.has("text") || info.has("blob"))) {
            throw new IllegalArgumentException("resource '" + uri + "' has both fixed content and a handler; give one");
        }
    }

    public static Builder builder(String uri, String name) {
        return new Builder(uri, name);
    }

    public String uri() {
        return uri;
    }

    /** The declaration in MCP's member names, as core reads it. */
    ObjectNode info() {
        return info;
    }

    /** Null for a resource with fixed content. */
    ResourceHandler handler() {
        return handler;
    }

    String mimeType() {
        return info.hasNonNull("mimeType") ? info.get("mimeType").asText() : null;
    }

    public static final class Builder {
        private final String uri;
        private final ObjectNode info = Json.MAPPER.createObjectNode();
        private ResourceHandler handler;

        private Builder(String uri, String name) {
            this.uri = Objects.requireNonNull(uri, "uri");
            info.put("uri", uri).put("name", Objects.requireNonNull(name, "name"));
        }

        public Builder title(String title) {
            info.put("title", title);
            return this;
        }

        public Builder description(String description) {
            info.put("description", description);
            return this;
        }

        public Builder mimeType(String mimeType) {
            info.put("mimeType", mimeType);
            return this;
        }

        /** Fixed text content, answered by core without calling Java. */
        public Builder text(String text) {
            info.put("text", Objects.requireNonNull(text, "text"));
            return this;
        }

        /** Fixed binary content (base64-encoded for MCP), answered by core without calling Java. */
        public Builder blob(byte[] data) {
            info.put("blob", ToolResult.base64(data));
            return this;
        }

        /** Reads the resource on each {@code resources/read}. */
        public Builder handler(ResourceHandler handler) {
            this.handler = Objects.requireNonNull(handler, "handler");
            return this;
        }

        public Resource build() {
            return new Resource(this);
        }
    }
}
