package dev.toolmesh;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * Declares an agent: its tools, its options and the executor its handlers run on.
 *
 * <p>Options are the core's and override the {@code TOOLMESH_*} environment: {@code registry_url},
 * {@code tls_cert}, {@code tls_key}, {@code tls_ca}, {@code host}, {@code advertise_host},
 * {@code port}, {@code propagate_headers}, {@code heartbeat_interval_ms}, {@code call_timeout_ms}.
 * Core validates them when the agent starts.
 */
public final class AgentBuilder {
    private final String name;
    private final Map<String, String> options = new LinkedHashMap<>();
    private final List<ToolDefinition> tools = new ArrayList<>();
    private final List<Resource> resources = new ArrayList<>();
    private final List<ResourceTemplate> resourceTemplates = new ArrayList<>();
    private final List<Prompt> prompts = new ArrayList<>();
    private Executor executor;

    AgentBuilder(String name) {
        this.name = Objects.requireNonNull(name, "name");
    }

    /** Sets a core option; a collection becomes a comma-separated list, null keeps the default. */
    public AgentBuilder option(String key, Object value) {
        if (value == null) {
            options.remove(key);
        } else if (value instanceof Collection<?> values) {
            options.put(key, values.stream().map(String::valueOf).collect(Collectors.joining(",")));
        } else {
            options.put(key, String.valueOf(value));
        }
        return this;
    }

    public AgentBuilder options(Map<String, ?> options) {
        options.forEach(this::option);
        return this;
    }

    /** Serves the {@link MeshTool}, {@link MeshResource} and {@link MeshPrompt} methods of {@code target}. */
    public AgentBuilder register(Object target) {
        List<ToolDefinition> methodTools = MethodTools.of(target);
        MethodCatalog catalog = MethodCatalog.of(target);
        if (methodTools.isEmpty() && catalog.isEmpty()) {
            throw new IllegalArgumentException(target.getClass().getName() + " has no @MeshTool, @MeshResource or @MeshPrompt methods");
        }
        tools.addAll(methodTools);
        resources.addAll(catalog.resources);
        resourceTemplates.addAll(catalog.templates);
        prompts.addAll(catalog.prompts);
        return this;
    }

    /** Serves a tool declared without annotations. */
    public AgentBuilder tool(ToolDefinition tool) {
        tools.add(Objects.requireNonNull(tool, "tool"));
        return this;
    }

    /** Serves a resource over MCP (with fixed content, or read through its handler). */
    public AgentBuilder resource(Resource resource) {
        resources.add(Objects.requireNonNull(resource, "resource"));
        return this;
    }

    /** Serves the resources a URI template expands to, read through its handler. */
    public AgentBuilder resourceTemplate(ResourceTemplate template) {
        resourceTemplates.add(Objects.requireNonNull(template, "template"));
        return this;
    }

    /** Serves a prompt over MCP. */
    public AgentBuilder prompt(Prompt prompt) {
        prompts.add(Objects.requireNonNull(prompt, "prompt"));
        return this;
    }

    /**
     * The executor handlers run on, and dependency calls complete on. By default each agent has
     * its own cached pool of daemon threads, shut down with the agent. A handler that blocks on a
     * dependency call needs a second thread to complete it, so do not pass a single-thread executor.
     * Handlers never run on core's threads: what this executor would run in place on one (it is
     * {@code Runnable::run}, or a pool saturated under {@code CallerRunsPolicy}) runs on a shared
     * fallback pool of daemon threads ({@code toolmesh-fallback-N}) instead.
     */
    public AgentBuilder executor(Executor executor) {
        this.executor = Objects.requireNonNull(executor, "executor");
        return this;
    }

    /**
     * Starts serving (blocks until the agent listens) and registers in the background.
     *
     * @throws ToolmeshException when the options, certificates, tools, resources or prompts are wrong
     *     (core checks them, naming the entry at fault), e.g.
     *     {@code CERTIFICATE_FILE} without a TLS identity
     * @throws IllegalStateException on one of core's threads, where it would block the runtime it waits for
     */
    public MeshAgent start() {
        Map<String, ToolDefinition> byName = new LinkedHashMap<>();
        tools.forEach(tool -> byName.putIfAbsent(tool.name(), tool));
        String toolsJson = Json.MAPPER.createArrayNode().addAll(tools.stream().map(ToolDefinition::info).toList()).toString();
        ObjectNode catalog = Json.MAPPER.createObjectNode();
        catalog.putArray("resources").addAll(resources.stream().map(Resource::info).toList());
        catalog.putArray("resourceTemplates").addAll(resourceTemplates.stream().map(ResourceTemplate::info).toList());
        catalog.putArray("prompts").addAll(prompts.stream().map(Prompt::info).toList());
        // Core refuses duplicates by name when it reads the catalog; the first one declared answers until then.
        Map<String, Resource> resourcesByUri = new LinkedHashMap<>();
        resources.forEach(resource -> resourcesByUri.putIfAbsent(resource.uri(), resource));
        Map<String, ResourceTemplate> templatesByUri = new LinkedHashMap<>();
        resourceTemplates.forEach(template -> templatesByUri.putIfAbsent(template.uriTemplate(), template));
        Map<String, Prompt> promptsByName = new LinkedHashMap<>();
        prompts.forEach(prompt -> promptsByName.putIfAbsent(prompt.name(), prompt));
        String[] pairs = options.entrySet().stream().flatMap(o -> Stream.of(o.getKey(), o.getValue())).toArray(String[]::new);
        ExecutorService ownExecutor = executor == null ? Executors.newCachedThreadPool(handlerThreads(name)) : null;
        ToolDispatcher dispatcher = new ToolDispatcher(
                byName, resourcesByUri, templatesByUri, promptsByName, executor != null ? executor : ownExecutor);
        try {
            long handle = Native.start(name, pairs, toolsJson, catalog.toString(), dispatcher);
            return new MeshAgent(name, handle, Native.describe(handle), ownExecutor);
        } catch (RuntimeException failed) {
            if (ownExecutor != null) {
                ownExecutor.shutdown();
            }
            throw failed;
        }
    }

    private static ThreadFactory handlerThreads(String agent) {
        AtomicInteger count = new AtomicInteger();
        return task -> {
            Thread thread = new Thread(task, "toolmesh-" + agent + "-" + count.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        };
    }
}
