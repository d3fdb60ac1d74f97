package dev.toolmesh;

/**
 * Reads a {@link Resource} or a {@link ResourceTemplate}'s resource, on the agent's executor. Returns
 * a {@code String} (one text item with the URI read and the declared MIME type), a {@code byte[]}
 * (one blob item, base64-encoded for MCP), anything else Jackson writes as MCP's
 * {@code ReadResourceResult} ({@code {"contents": [{"uri", "mimeType"?, "text" | "blob"}]}}),
 * or a {@code CompletionStage} of one of these. Core checks the answer: an invalid one (e.g. empty
 * {@code contents}) reaches the client as {@code HANDLER_RESULT} naming the item; throwing is
 * {@code HANDLER_FAILED} with the exception's message.
 */
@FunctionalInterface
public interface ResourceHandler {
    Object read(ResourceRead read) throws Exception;
}
