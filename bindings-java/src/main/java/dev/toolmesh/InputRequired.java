package dev.toolmesh;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Map;
import java.util.Objects;

/**
 * Asks the MCP client for input instead of answering (MCP 2026-07-28): MCP's requests by key
 * ({@code {"method": "elicitation/create", "params": {...}}}, or {@code sampling/createMessage},
 * {@code roots/list}) and a state, any value the next call gets back (core seals it, so the client
 * can neither read nor change it). A tool's or a prompt's handler returns one (or a
 * {@code CompletionStage} of one); the client calls again with its answers:
 * {@link RequestContext#inputResponses()} and {@link RequestContext#requestState()}.
 *
 * <pre>{@code
 * return InputRequired.of(Map.of("name", Map.of("method", "elicitation/create",
 *         "params", Map.of("message", "Who are you?", "requestedSchema", schema))), Map.of("asked", "name"));
 * }</pre>
 */
public final class InputRequired {
    private final ObjectNode json;

    private InputRequired(ObjectNode json) {
        this.json = json;
    }

    /** The requests by key, and the state to get back ({@code null}: none). */
    public static InputRequired of(Map<String, ?> requests, Object state) {
        ObjectNode json = Json.MAPPER.createObjectNode().put("resultType", "input_required");
        json.set("inputRequests", Json.MAPPER.valueToTree(Objects.requireNonNull(requests, "requests")));
        if (state != null) {
            json.set("requestState", Json.MAPPER.valueToTree(state));
        }
        return new InputRequired(json);
    }

    /** The answer as MCP's {@code InputRequiredResult} JSON, as core reads it. */
    String toJson() {
        return json.toString();
    }

    /** The same, as a tree (a prompt's answer is written with the others). */
    ObjectNode tree() {
        return json.deepCopy();
    }

    @Override
    public String toString() {
        return "InputRequired" + json;
    }
}
