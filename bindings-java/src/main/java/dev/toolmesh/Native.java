package dev.toolmesh;

import java.lang.ref.Cleaner;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.LongConsumer;

/**
 * The native library's methods, and the one method it calls back with the results of dependency
 * calls. Native objects are named by {@code long} handles; a stale handle is refused, never used.
 */
final class Native {
    /** Releases native objects whose Java owner was collected without releasing them. */
    static final Cleaner CLEANER = Cleaner.create();

    /** Not a mesh error code: the caller gets HANDLER_FAILED with the message. */
    static final int HANDLER_FAILED = 0;

    /**
     * Runs what an agent's executor would have run on the core thread handing it over (an executor
     * such as {@code Runnable::run}, or a pool saturated under {@code CallerRunsPolicy}), and what
     * a shut-down executor refuses: handlers and continuations never run on core's threads.
     */
    private static final ExecutorService FALLBACK = fallbackPool();

    private static final ConcurrentHashMap<Long, PendingCall> PENDING = new ConcurrentHashMap<>();
    private static final AtomicLong NEXT_CALL_ID = new AtomicLong();

    static {
        NativeLibrary.load();
        initialize();
    }

    private Native() {}

    /** Loads the library (by initializing this class); for classes that declare natives of their own. */
    static void ensureLoaded() {}

    private static ExecutorService fallbackPool() {
        AtomicInteger count = new AtomicInteger();
        return Executors.newCachedThreadPool(task -> {
            Thread thread = new Thread(task, "toolmesh-fallback-" + count.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        });
    }

    private static native void initialize();

    /**
     * Starts an agent (blocks until it serves); {@code options} is key, value, key, value...;
     * {@code catalogJson} its resources, resource templates and prompts, in MCP's member names.
     */
    static native long start(String name, String[] options, String toolsJson, String catalogJson, ToolDispatcher dispatcher);

    /**
     * The dependency index of each proxy parameter ({@code parameters}: their names in order) of a
     * tool whose dependencies have {@code capabilities}; null when there are more parameters than
     * dependencies. Core's rule for every language.
     */
    static native int[] assignProxyParameters(String[] parameters, String[] capabilities);

    /** {@code {"agent_id": ..., "endpoint": ..., "port": ...}} */
    static native String describe(long agent);

    /**
     * Answers through {@link #onCallDone} with {@code callId}; {@code callHeaders} are the open
     * {@link CallHeaders} scopes' headers (name, value, ..., outer scopes first), merged in by core.
     * With {@code whole}, the result is the callee's whole tool result (MCP's {@code CallToolResult});
     * with {@code observed}, the callee's reports come to {@link #onCallUpdate} instead of being
     * relayed to the handler's own caller.
     */
    private static native void call(
            long agent, String tool, int dependency, String argumentsJson, long context, String[] callHeaders, boolean whole,
            boolean observed, long callId);

    /** Deregisters, drains and stops; blocks until done. */
    static native void stop(long agent);

    static native boolean complete(long completion, String resultJson);

    /** A {@link ToolResult} of {@code tool} in MCP's shape; core checks it (HANDLER_RESULT naming the item at fault). */
    static native boolean completeResult(long completion, String tool, String resultJson);

    /** The result is not JSON, for {@code reason}: core words the caller's HANDLER_RESULT error. */
    static native boolean notJson(long completion, String reason);

    /** An argument did not decode into {@code typeName}: core words the caller's INVALID_ARGUMENTS. */
    static native boolean argumentNotDecoded(long completion, String argument, String typeName, String reason);

    /** {@code code}: the mesh error's, or {@link #HANDLER_FAILED} for a handler that threw. */
    static native boolean fail(long completion, int code, String message);

    /** {@code dataJson}: the tool error's data as JSON text, or null for none. */
    static native boolean failToolError(long completion, String appCode, String message, String dataJson);

    static native boolean failToolErrorDataNotJson(long completion, String appCode, String reason);

    static native void releaseCompletion(long completion);

    static native void releaseContext(long context);

    /** Reports progress ({@code total} NaN: none; {@code message} null: none); whether core sent it. */
    static native boolean progress(long context, double progress, double total, String message);

    /** Sends a log message ({@code logger} null: none); whether core sent it. */
    static native boolean log(long context, String level, String logger, String dataJson);

    static native boolean cancelled(long context);

    /** Watches {@code context}'s request; false when the context is released. */
    private static native boolean onCancel(long context, long watchId);

    private static final ConcurrentHashMap<Long, Runnable> CANCEL_WATCHES = new ConcurrentHashMap<>();
    private static final AtomicLong NEXT_WATCH = new AtomicLong();

    /**
     * Runs {@code action} off core's threads once the request behind {@code context} is cancelled
     * (at once if it is); the returned watch, closed, forgets it.
     */
    static AutoCloseable watchCancel(long context, Runnable action) {
        long id = NEXT_WATCH.incrementAndGet();
        CANCEL_WATCHES.put(id, action);
        if (!onCancel(context, id)) {
            CANCEL_WATCHES.remove(id);
        }
        return () -> CANCEL_WATCHES.remove(id);
    }

    /** Called by the native library on a core thread: only hands the watch's action to a pool. */
    static void onCancelled(long watchId) {
        Runnable action = CANCEL_WATCHES.remove(watchId);
        if (action != null) {
            FALLBACK.execute(action);
        }
    }

    /**
     * Calls a dependency; the future completes on {@code executor}, with {@code context} as the
     * thread's current request context, so continuations see it and the calls they make carry it.
     */
    static CompletableFuture<String> callDependency(
            long agent,
            String tool,
            int dependency,
            String argumentsJson,
            boolean whole,
            Consumer<CalleeUpdate> onUpdate,
            RequestContext context,
            Executor executor) {
        try {
            String[] callHeaders = CallHeaders.current();
            return pendingCall(
                    context,
                    executor,
                    onUpdate,
                    callId -> call(agent, tool, dependency, argumentsJson, context.handle(), callHeaders, whole, onUpdate != null, callId));
        } finally {
            // The native side has taken its own reference to the context by now.
            java.lang.ref.Reference.reachabilityFence(context);
        }
    }

    /**
     * A future that {@link #onCallDone} completes on {@code executor} once {@code start} has set
     * the native side going with the call's id; failed at once if {@code start} throws.
     */
    static CompletableFuture<String> pendingCall(
            RequestContext context, Executor executor, Consumer<CalleeUpdate> onUpdate, LongConsumer start) {
        CompletableFuture<String> result = new CompletableFuture<>();
        long callId = NEXT_CALL_ID.incrementAndGet();
        // An observed call's reports and result are delivered one after another, in order.
        Executor delivery = onUpdate == null ? executor : new SerialExecutor(task -> deliverOffCoreThread(executor, task));
        PENDING.put(callId, new PendingCall(result, context, delivery, onUpdate));
        try {
            start.accept(callId);
        } catch (RuntimeException refused) {
            PENDING.remove(callId);
            result.completeExceptionally(refused);
        }
        return result;
    }

    /**
     * Called on a core thread, which must not run {@code task}: hands it to {@code executor}, or
     * to a fallback pool if the executor runs it right here on the calling thread. Throws what
     * the executor throws when it refuses the task.
     */
    static void executeOffCoreThread(Executor executor, Runnable task) {
        Thread coreThread = Thread.currentThread();
        executor.execute(() -> {
            if (Thread.currentThread() == coreThread) {
                FALLBACK.execute(task);
            } else {
                task.run();
            }
        });
    }

    /** Called by the native library on a core thread: only hands the result to the caller's executor. */
    static void onCallDone(long callId, String resultJson, int code, String kind, String message, String appCode, String dataJson) {
        PendingCall pending = PENDING.remove(callId);
        if (pending == null) {
            return;
        }
        Runnable settle = () -> RequestContext.runWith(pending.context, () -> {
            if (code == 0) {
                pending.result.complete(resultJson);
            } else {
                pending.result.completeExceptionally(
                        appCode != null ? ToolException.fromNative(appCode, message, dataJson) : new ToolmeshException(code, kind, message));
            }
        });
        deliverOffCoreThread(pending.executor, settle);
    }

    /** Called by the native library on a core thread: only queues the report for the call's listener. */
    static void onCallUpdate(long callId, String updateJson) {
        PendingCall pending = PENDING.get(callId);
        if (pending == null || pending.onUpdate == null) {
            return;
        }
        CalleeUpdate update = CalleeUpdate.fromJson(updateJson);
        deliverOffCoreThread(pending.executor, () -> RequestContext.runWith(pending.context, () -> pending.onUpdate.accept(update)));
    }

    /** {@link #executeOffCoreThread}, and on the fallback pool when the executor is shut down. */
    private static void deliverOffCoreThread(Executor executor, Runnable task) {
        try {
            executeOffCoreThread(executor, task);
        } catch (RejectedExecutionException executorClosed) {
            // The agent's executor is shut down; the answer still reaches the caller, never on a core thread.
            FALLBACK.execute(task);
        }
    }

    /** A call in flight; {@code executor} delivers its outcome (and {@code onUpdate}'s reports, when observed). */
    private record PendingCall(
            CompletableFuture<String> result, RequestContext context, Executor executor, Consumer<CalleeUpdate> onUpdate) {}
}
