package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;

/**
 * A tool's own error ({@code 5005 TOOL_ERROR}): an expected failure of its domain, with an
 * application code, a message and optional data.
 *
 * <p>Throw it from a handler — {@code throw new ToolException("unknown_sku", "no such sku: " + sku,
 * Map.of("sku", sku))} — and every caller, in every language, gets code 5005 with this
 * {@link #appCode()}, message (word for word) and {@link #data()}. A caller catches it as
 * {@code ToolException} (a {@link ToolmeshException}); rethrowing it from a handler passes it on
 * intact. Unchecked, like every toolmesh exception, so handler methods need not declare it.
 *
 * <p>The application code is 1 to 64 characters among {@code A-Z a-z 0-9 _ . : -}; the core refuses
 * any other (the caller then gets 5001 {@code TOOL_FAILED} saying why). The data is anything
 * Jackson can write as JSON. No stack trace is logged for it: it is an answer, not a bug.
 */
public class ToolException extends ToolmeshException {
    private static final long serialVersionUID = 1L;

    /** The stable code of a tool error. */
    public static final int CODE = 5005;
    /** The stable name of a tool error's code. */
    public static final String KIND = "TOOL_ERROR";

    private final String appCode;
    /** As the handler gave it (any Jackson-writable value), or as a caller received it (a JsonNode). */
    private final transient Object data;

    public ToolException(String appCode, String message) {
        this(appCode, message, null);
    }

    public ToolException(String appCode, String message, Object data) {
        super(CODE, KIND, message);
        this.appCode = appCode;
        this.data = data;
    }

    /** The exception a caller gets for a tool error that arrived from the mesh. */
    static ToolException fromNative(String appCode, String message, String dataJson) {
        JsonNode data = null;
        if (dataJson != null) {
            try {
                data = Json.MAPPER.readTree(dataJson);
            } catch (JsonProcessingException impossible) {
                // Core hands over only JSON it parsed itself.
                throw new IllegalStateException("toolmesh handed over data that is not JSON", impossible);
            }
        }
        return new ToolException(appCode, message, data);
    }

    /** The tool's own code, e.g. {@code "unknown_sku"}. */
    public String appCode() {
        return appCode;
    }

    /** The tool's data about the error as a JSON tree, or null when it gave none. */
    public JsonNode data() {
        return data == null || data instanceof JsonNode ? (JsonNode) data : Json.MAPPER.valueToTree(data);
    }

    /** The data converted to {@code type} (e.g. a record), or null when the tool gave none. */
    public <T> T data(Class<T> type) {
        return data == null ? null : Json.MAPPER.convertValue(data, type);
    }

    /** The data as JSON text, or null. */
    String dataJson() throws JsonProcessingException {
        return data == null ? null : Json.MAPPER.writeValueAsString(data);
    }

    /** As the core prints a tool error: {@code [5005 TOOL_ERROR unknown_sku] message}, after the class name. */
    @Override
    public String toString() {
        return getClass().getName() + ": [" + code() + " " + kind() + " " + appCode + "] " + getMessage();
    }
}
