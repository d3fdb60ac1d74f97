package dev.toolmesh;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Base64;
import java.util.Objects;

/**
 * A tool result in MCP's own shape ({@code CallToolResult}): several content items (text, images,
 * audio, resource links, embedded resources), a {@code structuredContent} beside them, or a result
 * the tool marks as an error itself. A handler returns one (or a {@code CompletionStage} of one)
 * where a single JSON value is not enough; core checks it and the caller gets it item for item.
 *
 * <pre>{@code
 * return ToolResult.builder().text("the chart").image(png, "image/png").structured(Map.of("points", 3)).build();
 * }</pre>
 *
 * <p>Bytes are base64-encoded here (standard alphabet, padded); everything else (a known item
 * type, a non-empty MIME type, exactly one of text and blob) is checked by core, and a result it
 * refuses reaches the caller as {@code HANDLER_RESULT} naming the item, e.g.
 * {@code content[1]: image 'data' is not base64 (standard alphabet, padded)}.
 */
public final class ToolResult {
    private final ObjectNode json;

    private ToolResult(ObjectNode json) {
        this.json = json;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The result as MCP's {@code CallToolResult} JSON, as core reads it. */
    String toJson() {
        return json.toString();
    }

    /** A dependency's whole result, as core hands it over ({@link MeshProxy#callResult}): a JSON object. */
    static ToolResult fromJson(String resultJson) {
        try {
            return new ToolResult(Json.MAPPER.readValue(resultJson, ObjectNode.class));
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new java.io.UncheckedIOException("a dependency's tool result is not a JSON object: " + e.getOriginalMessage(), e);
        }
    }

    /** The content items in MCP's shape ({@code type}, and {@code data} base64, {@code uri}...), read-only. */
    public java.util.List<JsonNode> content() {
        java.util.List<JsonNode> items = new java.util.ArrayList<>();
        json.path("content").forEach(item -> items.add(item.deepCopy()));
        return java.util.List.copyOf(items);
    }

    /** The {@code structuredContent}, or null when there is none. */
    public JsonNode structured() {
        JsonNode structured = json.get("structuredContent");
        return structured == null ? null : structured.deepCopy();
    }

    @Override
    public String toString() {
        return "ToolResult" + json;
    }

    static String base64(byte[] data) {
        return Base64.getEncoder().encodeToString(Objects.requireNonNull(data, "data"));
    }

    public static final class Builder {
        private final ArrayNode content = Json.MAPPER.createArrayNode();
        private JsonNode structured;
        private boolean isError;

        private Builder() {}

        public Builder text(String text) {
            content.addObject().put("type", "text").put("text", Objects.requireNonNull(text, "text"));
            return this;
        }

        /** An image ({@code data} is base64-encoded for MCP). */
        public Builder image(byte[] data, String mimeType) {
            content.addObject().put("type", "image").put("data", base64(data)).put("mimeType", mimeType);
            return this;
        }

        /** Audio ({@code data} is base64-encoded for MCP). */
        public Builder audio(byte[] data, String mimeType) {
            content.addObject().put("type", "audio").put("data", base64(data)).put("mimeType", mimeType);
            return this;
        }

        /** A link to a resource the client may read; {@code mimeType} may be null. */
        public Builder resourceLink(String uri, String name, String mimeType) {
            ObjectNode link = content.addObject().put("type", "resource_link").put("uri", uri).put("name", name);
            if (mimeType != null) {
                link.put("mimeType", mimeType);
            }
            return this;
        }

        public Builder resourceLink(String uri, String name) {
            return resourceLink(uri, name, null);
        }

        /** A resource embedded as text; {@code mimeType} may be null. */
        public Builder embeddedText(String uri, String mimeType, String text) {
            embedded(uri, mimeType).put("text", text);
            return this;
        }

        /** A resource embedded as bytes (base64-encoded for MCP); {@code mimeType} may be null. */
        public Builder embeddedBlob(String uri, String mimeType, byte[] data) {
            embedded(uri, mimeType).put("blob", base64(data));
            return this;
        }

        private ObjectNode embedded(String uri, String mimeType) {
            ObjectNode resource = content.addObject().put("type", "resource").putObject("resource").put("uri", uri);
            if (mimeType != null) {
                resource.put("mimeType", mimeType);
            }
            return resource;
        }

        /**
         * A content item in MCP's own shape (a {@code Map}, record or {@code JsonNode}), passed as it
         * is, for members this builder has no method for ({@code annotations}, {@code _meta}...).
         */
        public Builder item(Object item) {
            content.add(Json.MAPPER.valueToTree(Objects.requireNonNull(item, "item")));
            return this;
        }

        /** {@code structuredContent}: any value Jackson writes as JSON. */
        public Builder structured(Object value) {
            this.structured = Json.MAPPER.valueToTree(value);
            return this;
        }

        /** Marks the result as the tool's own error report (MCP's {@code isError}); callers over the mesh get it as a failure. */
        public Builder error(boolean isError) {
            this.isError = isError;
            return this;
        }

        public ToolResult build() {
            ObjectNode json = Json.MAPPER.createObjectNode();
            json.set("content", content.deepCopy());
            if (structured != null) {
                json.set("structuredContent", structured);
            }
            if (isError) {
                json.put("isError", true);
            }
            return new ToolResult(json);
        }
    }
}
