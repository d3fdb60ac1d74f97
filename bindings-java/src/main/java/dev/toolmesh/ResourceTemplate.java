package dev.toolmesh;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Objects;

/**
 * A family of resources named by an RFC 6570 level-1 URI template ({@code test://template/{id}/data}),
 * listed by {@code resources/templates/list}; a {@code resources/read} of a URI it expands calls its
 * {@link ResourceHandler} with the variables' values ({@link ResourceRead#variable}). Core checks
 * the template when the agent starts.
 */
public final class ResourceTemplate {
    private final String uriTemplate;
    private final ObjectNode info;
    private final ResourceHandler handler;

    private ResourceTemplate(Builder builder) {
        this.uriTemplate = builder.uriTemplate;
        this.info = builder.info.deepCopy();
        this.handler = Objects.requireNonNull(builder.handler, () -> "resource template '" + uriTemplate + "' has no handler");
    }

    public static Builder builder(String uriTemplate, String name) {
        return new Builder(uriTemplate, name);
    }

    public String uriTemplate() {
        return uriTemplate;
    }

    ObjectNode info() {
        return info;
    }

    ResourceHandler handler() {
        return handler;
    }

    String mimeType() {
        return info.hasNonNull("mimeType") ? info.get("mimeType").asText() : null;
    }

    public static final class Builder {
        private final String uriTemplate;
        private final ObjectNode info = Json.MAPPER.createObjectNode();
        private ResourceHandler handler;

        private Builder(String uriTemplate, String name) {
            this.uriTemplate = Objects.requireNonNull(uriTemplate, "uriTemplate");
            info.put("uriTemplate", uriTemplate).put("name", Objects.requireNonNull(name, "name"));
        }

        public Builder title(String title) {
            info.put("title", title);
            return this;
        }

        public Builder description(String description) {
            info.put("description", description);
            return this;
        }

        /** The MIME type of its resources; a handler answering a String or bytes gets it on its item. */
        public Builder mimeType(String mimeType) {
            info.put("mimeType", mimeType);
            return this;
        }

        /**
         * The values variable {@code variable} may take, which core offers to
         * {@code completion/complete} (those starting with what the user typed, ignoring case).
         */
        public Builder completions(String variable, List<String> values) {
            ObjectNode completions = info.has("completions") ? (ObjectNode) info.get("completions") : info.putObject("completions");
            values.forEach(completions.putArray(Objects.requireNonNull(variable, "variable"))::add);
            return this;
        }

        public Builder handler(ResourceHandler handler) {
            this.handler = Objects.requireNonNull(handler, "handler");
            return this;
        }

        public ResourceTemplate build() {
            return new ResourceTemplate(this);
        }
    }
}
