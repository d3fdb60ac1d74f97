package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.UndeclaredThrowableException;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;

/** Runs an agent's tools: the native library hands it every call, and it answers each exactly once. */
final class ToolDispatcher {
    private static final System.Logger LOG = System.getLogger("dev.toolmesh");

    private final Map<String, ToolDefinition> tools;
    private final Executor executor;

    ToolDispatcher(Map<String, ToolDefinition> tools, Executor executor) {
        this.tools = tools;
        this.executor = executor;
    }

    /**
     * Called by the native library on a core thread, which must never run a handler: takes
     * ownership of the native handles and enqueues the call onto the agent's executor (or a
     * fallback pool, if that executor would run it right here).
     */
    void dispatch(long agent, String tool, String argumentsJson, String contextJson, long context, long completion) {
        Responder responder = new Responder(completion);
        RequestContext requestContext = new RequestContext(context, contextJson);
        try {
            Native.executeOffCoreThread(executor, () -> RequestContext.runWith(requestContext, () -> run(agent, tool, argumentsJson, requestContext, responder)));
        } catch (RuntimeException rejected) {
            LOG.log(System.Logger.Level.WARNING, "the executor refused a call of tool ''{0}''", tool);
            responder.release();
        }
    }

    private void run(long agent, String name, String argumentsJson, RequestContext context, Responder responder) {
        Object result;
        try {
            ToolDefinition tool = tools.get(name); // core invokes only the tools it was given, and refuses others itself
            JsonNode arguments = Json.MAPPER.readTree(argumentsJson);
            result = tool.handler().handle(new Invocation(agent, tool, arguments, context, executor));
        } catch (Throwable thrown) {
            fail(name, responder, thrown);
            return;
        }
        if (result instanceof CompletionStage<?> stage) {
            stage.whenComplete((value, thrown) -> {
                if (thrown != null) {
                    fail(name, responder, thrown);
                } else {
                    answer(name, responder, value);
                }
            });
        } else {
            answer(name, responder, result);
        }
    }

    private static void answer(String tool, Responder responder, Object value) {
        String json;
        try {
            json = Json.MAPPER.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            // Core tells the caller, in the same words as every language, and logs the reason.
            responder.notJson(e.getOriginalMessage());
            return;
        }
        responder.ok(json);
    }

    private static void fail(String tool, Responder responder, Throwable thrown) {
        Throwable cause = unwrap(thrown);
        if (cause instanceof ToolException toolError) {
            // The tool's own error (or one a dependency call threw, passed on): an answer, not a
            // bug, so no stack trace; core logs one line for it, the same in every language.
            String dataJson;
            try {
                dataJson = toolError.dataJson();
            } catch (JsonProcessingException | IllegalArgumentException notJson) {
                responder.failToolErrorDataNotJson(toolError.appCode(), String.valueOf(notJson.getMessage()));
                return;
            }
            responder.failToolError(toolError.appCode(), String.valueOf(toolError.getMessage()), dataJson);
            return;
        }
        if (cause instanceof ArgumentNotDecodedException rejected) {
            // The caller's mistake: core words its INVALID_ARGUMENTS, the same in every language.
            responder.argumentNotDecoded(rejected.argument(), rejected.typeName(), rejected.reason());
            return;
        }
        if (cause instanceof ToolmeshException mesh) {
            // A mesh call the handler made failed: the caller gets that error, code and all.
            responder.fail(mesh.code(), mesh.getMessage());
            return;
        }
        // The caller sees the exception's own message, as in every language; its class and
        // stack trace stay in this agent's log.
        LOG.log(System.Logger.Level.WARNING, "tool '" + tool + "' failed", cause);
        String message = cause.getMessage();
        responder.fail(message == null ? "" : message);
    }

    /** The exception a handler really threw, out of the wrappers futures and reflection put around it. */
    private static Throwable unwrap(Throwable thrown) {
        Throwable cause = thrown;
        while ((cause instanceof CompletionException
                        || cause instanceof ExecutionException
                        || cause instanceof InvocationTargetException
                        || cause instanceof UndeclaredThrowableException)
                && cause.getCause() != null) {
            cause = cause.getCause();
        }
        return cause;
    }
}
