package dev.toolmesh;

import java.lang.ref.Cleaner;

/**
 * The answer channel of one tool call. The native side answers at most once; if this object is
 * collected unanswered (a handler's future that never completes), the call is released and core
 * reports {@code HANDLER_DROPPED} to the caller instead of leaving it waiting.
 */
final class Responder {
    private final long completion;
    private final Cleaner.Cleanable release;

    Responder(long completion) {
        this.completion = completion;
        this.release = Native.CLEANER.register(this, () -> Native.releaseCompletion(completion));
    }

    void ok(String resultJson) {
        Native.complete(completion, resultJson);
        release.clean();
    }

    /** A result in MCP's {@code CallToolResult} shape, which core checks. */
    void result(String tool, String resultJson) {
        Native.completeResult(completion, tool, resultJson);
        release.clean();
    }

    /** The result is not JSON: the caller gets core's HANDLER_RESULT error, the same in every language. */
    void notJson(String reason) {
        Native.notJson(completion, reason);
        release.clean();
    }

    /** An argument did not decode into the handler's type: core words the caller's INVALID_ARGUMENTS, as in every language. */
    void argumentNotDecoded(String argument, String typeName, String reason) {
        Native.argumentNotDecoded(completion, argument, typeName, reason);
        release.clean();
    }

    /** The handler failed: the caller gets {@code HANDLER_FAILED} with this message. */
    void fail(String message) {
        fail(Native.HANDLER_FAILED, message);
    }

    /** The handler failed with a mesh error: the caller gets its code and message unchanged. */
    void fail(int code, String message) {
        Native.fail(completion, code, message);
        release.clean();
    }

    /** The handler threw a {@link ToolException}: the caller gets {@code TOOL_ERROR} with its code, message and data. */
    void failToolError(String appCode, String message, String dataJson) {
        Native.failToolError(completion, appCode, message, dataJson);
        release.clean();
    }

    /** The data of the handler's {@link ToolException} is not JSON; {@code reason} in Jackson's words. */
    void failToolErrorDataNotJson(String appCode, String reason) {
        Native.failToolErrorDataNotJson(completion, appCode, reason);
        release.clean();
    }

    /** Gives the call up unanswered. */
    void release() {
        release.clean();
    }
}
