package dev.toolmesh;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Objects;

/**
 * A prompt's messages in MCP's {@code GetPromptResult} shape:
 *
 * <pre>{@code
 * PromptResult.builder().description("a greeting").user("Say hello to Ada").assistant("Hello, Ada!").build();
 * }</pre>
 */
public final class PromptResult {
    private final ObjectNode json;

    private PromptResult(ObjectNode json) {
        this.json = json;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The result as MCP's JSON, as core reads it. */
    ObjectNode toJson() {
        return json;
    }

    @Override
    public String toString() {
        return "PromptResult" + json;
    }

    public static final class Builder {
        private final ObjectNode json = Json.MAPPER.createObjectNode();
        private final ArrayNode messages = json.putArray("messages");

        private Builder() {}

        public Builder description(String description) {
            json.put("description", description);
            return this;
        }

        /** A user message of text. */
        public Builder user(String text) {
            return message("user", textItem(text));
        }

        /** An assistant message of text. */
        public Builder assistant(String text) {
            return message("assistant", textItem(text));
        }

        /**
         * A message whose content is a content item in MCP's shape (as a {@link ToolResult} item:
         * image, audio, resource...), given as a {@code Map}, record or {@code JsonNode}.
         */
        public Builder message(String role, Object content) {
            ObjectNode message = messages.addObject().put("role", Objects.requireNonNull(role, "role"));
            message.set("content", Json.MAPPER.valueToTree(Objects.requireNonNull(content, "content")));
            return this;
        }

        private static ObjectNode textItem(String text) {
            return Json.MAPPER.createObjectNode().put("type", "text").put("text", Objects.requireNonNull(text, "text"));
        }

        public PromptResult build() {
            return new PromptResult(json.deepCopy());
        }
    }
}
