package dev.toolmesh;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Objects;

/**
 * A prompt the agent serves over MCP ({@code prompts/list}, {@code prompts/get}). Core checks a
 * {@code prompts/get}'s arguments (strings, the required ones present) before its
 * {@link PromptHandler} runs on the agent's executor.
 *
 * <pre>{@code
 * Prompt.builder("greeting").description("Greets someone").argument("name", "who to greet", true)
 *     .handler(get -> "Say hello to " + get.argument("name")).build();
 * }</pre>
 */
public final class Prompt {
    private final String name;
    private final ObjectNode info;
    private final PromptHandler handler;

    private Prompt(Builder builder) {
        this.name = builder.name;
        this.info = builder.info.deepCopy();
        this.handler = Objects.requireNonNull(builder.handler, () -> "prompt '" + name + "' has no handler");
    }

    public static Builder builder(String name) {
        return new Builder(name);
    }

    public String name() {
        return name;
    }

    ObjectNode info() {
        return info;
    }

    PromptHandler handler() {
        return handler;
    }

    public static final class Builder {
        private final String name;
        private final ObjectNode info = Json.MAPPER.createObjectNode();
        private ArrayNode arguments;
        private PromptHandler handler;

        private Builder(String name) {
            this.name = Objects.requireNonNull(name, "name");
            info.put("name", name);
        }

        public Builder title(String title) {
            info.put("title", title);
            return this;
        }

        public Builder description(String description) {
            info.put("description", description);
            return this;
        }

        /** An argument (a string); {@code description} may be null. */
        public Builder argument(String name, String description, boolean required) {
            return argument(name, description, required, List.of());
        }

        /**
         * An argument (a string) and the values it may take, which core offers to
         * {@code completion/complete} (those starting with what the user typed, ignoring case).
         */
        public Builder argument(String name, String description, boolean required, List<String> completions) {
            if (arguments == null) {
                arguments = info.putArray("arguments");
            }
            ObjectNode argument = arguments.addObject().put("name", Objects.requireNonNull(name, "name"));
            if (description != null) {
                argument.put("description", description);
            }
            argument.put("required", required);
            if (!completions.isEmpty()) {
                completions.forEach(argument.putArray("completions")::add);
            }
            return this;
        }

        public Builder handler(PromptHandler handler) {
            this.handler = Objects.requireNonNull(handler, "handler");
            return this;
        }

        public Prompt build() {
            return new Prompt(this);
        }
    }
}
