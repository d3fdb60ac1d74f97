package dev.toolmesh;

/**
 * An argument that passed core's schema check but did not decode into the type the handler asked
 * for: the caller's mistake, {@code INVALID_ARGUMENTS}. Escaping the handler, it is reported to
 * core as an argument that did not decode, and core words the caller's error as in every language;
 * its message here says the same for a handler that catches it.
 */
final class ArgumentNotDecodedException extends ToolmeshException {
    private static final long serialVersionUID = 1L;

    /** Core's INVALID_ARGUMENTS. */
    private static final int INVALID_ARGUMENTS = 5003;

    private final String argument;
    private final String typeName;
    private final String reason;

    ArgumentNotDecodedException(String tool, String argument, String typeName, String reason) {
        super(INVALID_ARGUMENTS, "INVALID_ARGUMENTS", "tool '" + tool + "': argument '" + argument + "' is not a valid " + typeName + ": " + reason);
        this.argument = argument;
        this.typeName = typeName;
        this.reason = reason;
    }

    String argument() {
        return argument;
    }

    String typeName() {
        return typeName;
    }

    String reason() {
        return reason;
    }
}
