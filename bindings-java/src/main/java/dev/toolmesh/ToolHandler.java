package dev.toolmesh;

/**
 * The body of a tool declared with {@link ToolDefinition#builder(String)}. Returns the result (any
 * value Jackson can write as JSON) or a {@link java.util.concurrent.CompletionStage} of it. Runs
 * on the agent's executor; throwing fails the call ({@code HANDLER_FAILED}), and a
 * {@link ToolmeshException} from a dependency call is passed to the caller unchanged.
 */
@FunctionalInterface
public interface ToolHandler {
    Object handle(ToolCall call) throws Exception;
}
