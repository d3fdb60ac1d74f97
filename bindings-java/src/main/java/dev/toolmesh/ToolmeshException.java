package dev.toolmesh;

/**
 * A toolmesh error, with the core's stable numeric {@link #code()} and symbolic {@link #kind()}
 * (e.g. {@code 3001}, {@code "DEPENDENCY_UNRESOLVED"}); {@link #getMessage()} is the core's message.
 * The same failure has the same code and message in every language toolmesh supports.
 *
 * <p>Codes are grouped by subsystem: 1xxx configuration, 2xxx TLS and identity, 3xxx discovery,
 * 4xxx transport, 5xxx remote tool, 6xxx local handler, 7xxx authorization, 9xxx internal.
 */
public class ToolmeshException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int code;
    private final String kind;

    public ToolmeshException(int code, String kind, String message) {
        super(message);
        this.code = code;
        this.kind = kind;
    }

    /** The stable numeric code, e.g. 3001. */
    public int code() {
        return code;
    }

    /** The stable symbolic name, e.g. {@code "DEPENDENCY_UNRESOLVED"}. */
    public String kind() {
        return kind;
    }

    /** As the core prints an error: {@code [3001 DEPENDENCY_UNRESOLVED] message}, after the class name. */
    @Override
    public String toString() {
        return getClass().getName() + ": [" + code + " " + kind + "] " + getMessage();
    }
}
