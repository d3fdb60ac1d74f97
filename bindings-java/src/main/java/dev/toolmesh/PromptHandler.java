package dev.toolmesh;

/**
 * Gets a {@link Prompt}, on the agent's executor. Returns a {@code String} (one user message of that
 * text), a {@link PromptResult}, anything else Jackson writes as MCP's {@code GetPromptResult}
 * ({@code {"description"?, "messages": [{"role", "content"}]}}), or a {@code CompletionStage} of
 * one of these. Core checks the answer ({@code HANDLER_RESULT} naming the item); throwing is
 * {@code HANDLER_FAILED} with the exception's message.
 */
@FunctionalInterface
public interface PromptHandler {
    Object get(PromptGet get) throws Exception;
}
