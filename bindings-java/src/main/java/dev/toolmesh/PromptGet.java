package dev.toolmesh;

import java.util.Map;

/**
 * One {@code prompts/get} handed to a {@link PromptHandler}, its arguments checked by core.
 *
 * @param name the prompt's name
 * @param arguments the arguments given (strings)
 * @param context the request context (also {@link Toolmesh#context()} on the handler's thread)
 */
public record PromptGet(String name, Map<String, String> arguments, RequestContext context) {
    /** The value of argument {@code name}; null when it was not given. */
    public String argument(String name) {
        return arguments.get(name);
    }
}
