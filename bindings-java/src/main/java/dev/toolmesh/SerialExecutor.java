package dev.toolmesh;

import java.util.ArrayDeque;
import java.util.concurrent.Executor;

/**
 * Runs its tasks one after another, in the order given, each on {@code target}: a dependency's
 * reports reach the handler's listener in order, and its result only after them.
 */
final class SerialExecutor implements Executor {
    private static final System.Logger LOG = System.getLogger("dev.toolmesh");

    private final Executor target;
    private final ArrayDeque<Runnable> queue = new ArrayDeque<>();
    private boolean running;

    SerialExecutor(Executor target) {
        this.target = target;
    }

    @Override
    public void execute(Runnable task) {
        synchronized (queue) {
            queue.add(task);
            if (running) {
                return;
            }
            running = true;
        }
        target.execute(this::drain);
    }

    private void drain() {
        while (true) {
            Runnable next;
            synchronized (queue) {
                next = queue.poll();
                if (next == null) {
                    running = false;
                    return;
                }
            }
            try {
                next.run();
            } catch (RuntimeException | Error bug) {
                // One task's failure must not stop the ones after it (the call's result among them).
                LOG.log(System.Logger.Level.WARNING, "a dependency's report listener threw", bug);
            }
        }
    }
}
