package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A running agent: serving its tools over mTLS and registered with the registry (when one is
 * configured). {@link #close()} deregisters, lets in-flight calls finish and stops serving; it is
 * also run when the JVM shuts down (SIGINT, SIGTERM), so a killed agent leaves the mesh cleanly.
 */
public final class MeshAgent implements AutoCloseable {
    private final String name;
    private final long handle;
    private final String agentId;
    private final String endpoint;
    /** What {@link #awaitShutdown} prints, in core's words. */
    private final String readyLine;
    private final int port;
    private final ExecutorService ownExecutor;
    private final AtomicBoolean closed = new AtomicBoolean();
    private final CountDownLatch stopped = new CountDownLatch(1);
    private final Thread closeAtExit;

    MeshAgent(String name, long handle, String descriptionJson, ExecutorService ownExecutor) {
        this.name = name;
        this.handle = handle;
        this.ownExecutor = ownExecutor;
        JsonNode description;
        try {
            description = Json.MAPPER.readTree(descriptionJson);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("the native library described the agent in something that is not JSON", e);
        }
        this.agentId = description.path("agent_id").asText();
        this.endpoint = description.path("endpoint").asText();
        this.readyLine = description.path("ready_line").asText();
        this.port = description.path("port").asInt();
        this.closeAtExit = new Thread(this::close, "toolmesh-close-" + name);
        Runtime.getRuntime().addShutdownHook(closeAtExit);
    }

    public String name() {
        return name;
    }

    /** The id the registry knows this agent by: its name and a random suffix. */
    public String agentId() {
        return agentId;
    }

    /** {@code https://host:port/mcp} */
    public String endpoint() {
        return endpoint;
    }

    /** The port it listens on (useful with {@code port} 0, the default). */
    public int port() {
        return port;
    }

    /**
     * Announces that the resource at {@code uri} changed: the MCP clients subscribed to it get
     * {@code notifications/resources/updated}.
     *
     * @return how many subscription streams it went out on
     * @throws ToolmeshException {@code INVALID_CONFIG} for a URI that is none of this agent's resources
     */
    public int notifyResourceUpdated(String uri) {
        return Native.notifyResourceUpdated(handle, uri);
    }

    /**
     * Serves until the agent is closed, by another thread or at JVM shutdown (SIGINT, SIGTERM).
     * Prints {@code toolmesh agent NAME serving ENDPOINT (id ID)} to stderr first.
     */
    public void awaitShutdown() throws InterruptedException {
        System.err.println(readyLine);
        System.err.flush();
        stopped.await();
    }

    /**
     * Deregisters, lets in-flight calls finish (up to a few seconds) and stops serving. Idempotent.
     *
     * @throws IllegalStateException on one of core's threads, where it would block the runtime it waits for
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        boolean refused = false;
        try {
            Native.stop(handle);
        } catch (IllegalStateException onCoreThread) {
            // Refused before anything stopped: the agent still serves, and can be closed from another thread.
            refused = true;
            closed.set(false);
            throw onCoreThread;
        } finally {
            if (!refused) {
                if (ownExecutor != null) {
                    ownExecutor.shutdown();
                }
                if (Thread.currentThread() != closeAtExit) {
                    Runtime.getRuntime().removeShutdownHook(closeAtExit);
                }
                stopped.countDown();
            }
        }
    }

    @Override
    public String toString() {
        return "MeshAgent[" + agentId + " at " + endpoint + "]";
    }
}
