package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.UndeclaredThrowableException;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;

/** Runs an agent's tools: the native library hands it every call, and it answers each exactly once. */
final class ToolDispatcher {
    private static final System.Logger LOG = System.getLogger("dev.toolmesh");

    private final Map<String, ToolDefinition> tools;
    private final Map<String, Resource> resources;
    private final Map<String, ResourceTemplate> resourceTemplates;
    private final Map<String, Prompt> prompts;
    private final Executor executor;

    ToolDispatcher(
            Map<String, ToolDefinition> tools,
            Map<String, Resource> resources,
            Map<String, ResourceTemplate> resourceTemplates,
            Map<String, Prompt> prompts,
            Executor executor) {
        this.tools = tools;
        this.resources = resources;
        this.resourceTemplates = resourceTemplates;
        this.prompts = prompts;
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

    /**
     * Called by the native library on a core thread for a {@code resources/read} or
     * {@code prompts/get} core hands the host ({@code requestJson}: core's request,
     * {@code {"kind": "readResource" | "getPrompt", ...}}); like {@link #dispatch}, only enqueues it.
     */
    void dispatchCatalog(long agent, String requestJson, String contextJson, long context, long completion) {
        Responder responder = new Responder(completion);
        RequestContext requestContext = new RequestContext(context, contextJson);
        try {
            Native.executeOffCoreThread(executor, () -> RequestContext.runWith(requestContext, () -> runCatalog(requestJson, requestContext, responder)));
        } catch (RuntimeException rejected) {
            LOG.log(System.Logger.Level.WARNING, "the executor refused a resource read or prompt get");
            responder.release();
        }
    }

    private void runCatalog(String requestJson, RequestContext context, Responder responder) {
        String what = "a resource or prompt";
        try {
            JsonNode request = Json.MAPPER.readTree(requestJson);
            if (request.path("kind").asText().equals("readResource")) {
                String uri = request.path("uri").asText();
                what = "resource '" + uri + "'";
                String uriTemplate = request.hasNonNull("template") ? request.get("template").asText() : null;
                ResourceHandler handler;
                String mimeType;
                if (uriTemplate != null) {
                    ResourceTemplate template = resourceTemplates.get(uriTemplate);
                    handler = template.handler();
                    mimeType = template.mimeType();
                } else {
                    Resource resource = resources.get(uri);
                    handler = resource.handler();
                    mimeType = resource.mimeType();
                }
                ResourceRead read = new ResourceRead(uri, request.path("name").asText(), uriTemplate, strings(request.path("variables")), context);
                settle(what, handler.read(read), responder, value -> readResult(uri, mimeType, value));
            } else {
                String name = request.path("name").asText();
                what = "prompt '" + name + "'";
                PromptGet get = new PromptGet(name, strings(request.path("arguments")), context);
                settle(what, prompts.get(name).handler().get(get), responder, ToolDispatcher::promptResult);
            }
        } catch (Throwable thrown) {
            fail(what, responder, thrown);
        }
    }

    /** Answers {@code responder} with {@code result} (or what its stage completes with), turned into MCP's JSON by {@code shape}. */
    private static void settle(String what, Object result, Responder responder, java.util.function.Function<Object, Object> shape) {
        if (result instanceof CompletionStage<?> stage) {
            stage.whenComplete((value, thrown) -> {
                if (thrown != null) {
                    fail(what, responder, thrown);
                } else {
                    answer(what, responder, shape.apply(value));
                }
            });
        } else {
            answer(what, responder, shape.apply(result));
        }
    }

    /** A handler's String or bytes as MCP's one-item {@code ReadResourceResult}; anything else as it is. */
    private static Object readResult(String uri, String mimeType, Object value) {
        ObjectNode item = Json.MAPPER.createObjectNode().put("uri", uri);
        if (value instanceof String text) {
            item.put("text", text);
        } else if (value instanceof byte[] bytes) {
            item.put("blob", ToolResult.base64(bytes));
        } else {
            return value;
        }
        if (mimeType != null) {
            item.put("mimeType", mimeType);
        }
        ObjectNode result = Json.MAPPER.createObjectNode();
        result.putArray("contents").add(item);
        return result;
    }

    /** A handler's String as one user message; a {@link PromptResult} or {@link InputRequired} as its JSON; anything else as it is. */
    private static Object promptResult(Object value) {
        if (value instanceof String text) {
            return PromptResult.builder().user(text).build().toJson();
        }
        if (value instanceof PromptResult result) {
            return result.toJson();
        }
        if (value instanceof InputRequired input) {
            return input.tree(); // asks the client first (2026-07-28); core seals the state
        }
        return value;
    }

    private static Map<String, String> strings(JsonNode object) {
        Map<String, String> values = new LinkedHashMap<>();
        object.fields().forEachRemaining(field -> values.put(field.getKey(), field.getValue().asText()));
        return values;
    }

    private void run(long agent, String name, String argumentsJson, RequestContext context, Responder responder) {
        Object result;
        Cancellation cancellation = new Cancellation(Thread.currentThread());
        AutoCloseable watch = context.onCancel(cancellation::cancel);
        try {
            ToolDefinition tool = tools.get(name); // core invokes only the tools it was given, and refuses others itself
            JsonNode arguments = Json.MAPPER.readTree(argumentsJson);
            result = tool.handler().handle(new Invocation(agent, tool, arguments, context, executor));
        } catch (Throwable thrown) {
            cancellation.returned(null);
            close(watch);
            fail("tool '" + name + "'", responder, thrown);
            return;
        }
        if (result instanceof CompletionStage<?> stage) {
            cancellation.returned(stage.toCompletableFuture());
            stage.whenComplete((value, thrown) -> {
                close(watch);
                if (thrown != null) {
                    fail("tool '" + name + "'", responder, thrown);
                } else {
                    answer(name, responder, value);
                }
            });
        } else {
            cancellation.returned(null);
            close(watch);
            answer(name, responder, result);
        }
    }

    private static void close(AutoCloseable watch) {
        try {
            watch.close();
        } catch (Exception cannotHappen) {
            throw new IllegalStateException(cannotHappen);
        }
    }

    /**
     * What a cancelled request stops: the handler's thread while the handler runs on it
     * (interrupted), then the future it returned (cancelled). The interrupt never reaches the
     * thread after the handler returned: both happen under one lock, and the thread's interrupt
     * status is cleared as it leaves, so the executor's next task does not inherit it. The future
     * is held weakly: a handler that forgets its future still gets HANDLER_DROPPED once it is
     * collected (this watch, a few bytes, stays registered until the request ends).
     */
    private static final class Cancellation {
        private Thread running;
        private java.lang.ref.WeakReference<java.util.concurrent.CompletableFuture<?>> future;
        private boolean cancelled;

        Cancellation(Thread running) {
            this.running = running;
        }

        synchronized void cancel() {
            cancelled = true;
            if (running != null) {
                running.interrupt();
            } else if (future != null && future.get() != null) {
                future.get().cancel(true);
            }
        }

        synchronized void returned(java.util.concurrent.CompletableFuture<?> returned) {
            if (running == Thread.currentThread()) {
                Thread.interrupted();
            }
            running = null;
            if (returned == null) {
                return;
            }
            future = new java.lang.ref.WeakReference<>(returned);
            if (cancelled) {
                returned.cancel(true);
            }
        }
    }

    private static void answer(String tool, Responder responder, Object value) {
        if (value instanceof ToolResult result) {
            responder.result(tool, result.toJson());
            return;
        }
        if (value instanceof InputRequired input) {
            responder.result(tool, input.toJson()); // core tells a tool result from input requests
            return;
        }
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

    /** {@code what}: the tool, resource or prompt, for the log ({@code tool 'x'}). */
    private static void fail(String what, Responder responder, Throwable thrown) {
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
        if (cause instanceof java.util.concurrent.CancellationException) {
            // The request was cancelled and its future with it: no one waits for this answer,
            // and it is no bug to log.
            responder.fail(what + " was cancelled");
            return;
        }
        // The caller sees the exception's own message, as in every language; its class and
        // stack trace stay in this agent's log.
        LOG.log(System.Logger.Level.WARNING, what + " failed", cause);
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
