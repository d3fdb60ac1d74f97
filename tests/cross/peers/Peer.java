import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.toolmesh.AgentBuilder;
import dev.toolmesh.InputRequired;
import dev.toolmesh.MeshAgent;
import dev.toolmesh.RequestContext;
import dev.toolmesh.ToolCall;
import dev.toolmesh.ToolDefinition;
import dev.toolmesh.Toolmesh;
import dev.toolmesh.ToolException;
import dev.toolmesh.ToolResult;
import dev.toolmesh.ToolmeshException;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;

/**
 * The Java peer of the cross-language suite: the twin of peer.py (see there for the roles).
 * {@code java -cp ... Peer ROLE CASES_JSON}
 */
public final class Peer {
    private static final String LANGUAGE = "java";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final JsonNode table;

    private Peer(JsonNode table) {
        this.table = table;
    }

    public static void main(String[] args) throws IOException, InterruptedException {
        Peer peer = new Peer(JSON.readTree(new File(args[1])));
        String role = args[0];
        if (role.equals("start")) {
            peer.startOnce();
            return;
        }
        List<AgentBuilder> agents = switch (role) {
            case "caller" -> List.of(peer.caller());
            case "callee" -> List.of(peer.callee(true),
                    peer.echoOnly("misnamed").option("host", peer.table.path("callee").path("misnamed_host").asText()),
                    peer.echoOnly("replaced"),
                    peer.echoOnly("aloof").option("tls_allowed_ids", peer.table.path("callee").path("aloof_allowed_ids").asText()));
            case "restarted" -> List.of(peer.callee(false));
            case "impostor" -> List.of(peer.echoOnly("replaced"));
            case "guarded" -> List.of(peer.guarded(), peer.relay());
            case "squat" -> List.of(peer.echoOnly("squatter"));
            default -> throw new IllegalArgumentException("unknown role " + role);
        };
        // Closed by their shutdown hooks when SIGINT or SIGTERM ends the JVM.
        for (AgentBuilder builder : agents) {
            MeshAgent agent = builder.start();
            System.err.println("toolmesh agent " + agent.name() + " serving " + agent.endpoint() + " (id " + agent.agentId() + ")");
        }
        System.err.flush();
        Thread.currentThread().join();
    }

    private static Map<String, Object> caught(ToolmeshException error) {
        Map<String, Object> reported = new LinkedHashMap<>();
        reported.put("code", error.code());
        reported.put("name", error.kind());
        reported.put("message", error.getMessage());
        if (error instanceof ToolException toolError) {
            reported.put("app_code", toolError.appCode());
            reported.put("data", toolError.data());
        }
        return Map.of("error", reported);
    }

    /** What a handler sees of its request (a map that allows the null of a missing trace). */
    private static Map<String, Object> here() {
        Map<String, Object> seen = new LinkedHashMap<>();
        seen.put("language", LANGUAGE);
        seen.put("headers", Toolmesh.headers());
        seen.put("trace_id", Toolmesh.traceId());
        return seen;
    }

    /** What a chain hop saw: what a handler sees, and the milliseconds its request had left. */
    private static Map<String, Object> chainHop(ToolCall call) {
        Map<String, Object> seen = here();
        OptionalLong remaining = call.context().remainingMillis();
        seen.put("remaining_ms", remaining.isPresent() ? remaining.getAsLong() : null);
        return seen;
    }

    /** The tag of {@code language}'s callee agent of {@code kind} ("agent", "misnamed", "replaced"). */
    private String tag(String kind, String language) {
        return table.path("callee").path("tags").path(kind).asText().replace("{language}", language);
    }

    /** A probe calling {@code capability}, from the provider tagged {@code tag} (null: any provider). */
    private static ToolDefinition probe(
            String name, String capability, String tag, JsonNode timeoutMs, JsonNode arguments, Map<String, String> callHeaders) {
        ToolDefinition.Builder probe = ToolDefinition.builder(name);
        if (tag == null) {
            probe.dependsOn(capability);
        } else {
            probe.dependsOn(capability, "", tag);
        }
        if (timeoutMs.isNumber()) {
            probe.timeoutMs(timeoutMs.asLong());
        }
        return probe.handler(call -> started(call.proxy(0), arguments, callHeaders).handle((value, thrown) -> {
            if (thrown == null) {
                return Map.of("ok", value);
            }
            Throwable cause = thrown instanceof CompletionException && thrown.getCause() != null ? thrown.getCause() : thrown;
            if (cause instanceof ToolmeshException error) {
                return caught(error);
            }
            throw new CompletionException(cause);
        })).build();
    }

    /** Calls {@code proxy} in a scope of the case's headers, set on purpose in code. */
    @SuppressWarnings("try") // the scope is used by being open, not by name
    private static CompletableFuture<JsonNode> started(dev.toolmesh.MeshProxy proxy, JsonNode arguments, Map<String, String> callHeaders) {
        try (var scope = Toolmesh.withCallHeaders(callHeaders)) {
            return proxy.call(arguments);
        }
    }

    /** The case's call_headers, else none. */
    private static Map<String, String> callHeaders(JsonNode call) {
        Map<String, String> headers = new LinkedHashMap<>();
        call.path("call_headers").fields().forEachRemaining(header -> headers.put(header.getKey(), header.getValue().asText()));
        return headers;
    }

    private AgentBuilder caller() {
        AgentBuilder agent = Toolmesh.agent("caller-" + LANGUAGE);
        for (JsonNode call : table.path("calls")) {
            String name = call.path("case").asText();
            String tool = call.path("tool").asText();
            JsonNode arguments = arguments(call);
            if (call.path("callee").isNull()) {
                agent.tool(probe(name, tool, null, call.path("timeout_ms"), arguments, callHeaders(call)));
                continue;
            }
            for (JsonNode callee : table.path("languages")) {
                String tag = tag(call.path("callee").asText(), callee.asText());
                agent.tool(probe(name + "__" + callee.asText(), tool, tag, call.path("timeout_ms"), arguments, callHeaders(call)));
            }
        }
        return agent;
    }

    /** The case's arguments_json as Jackson reads it (a BigInteger past 64 bits), else {}. */
    private static JsonNode arguments(JsonNode call) {
        try {
            return JSON.readTree(call.path("arguments_json").asText("{}"));
        } catch (IOException e) {
            throw new IllegalArgumentException("arguments_json of " + call.path("case").asText(), e);
        }
    }

    private static ToolDefinition echo(String name, String tag) {
        return ToolDefinition.builder(name).tags(tag).handler(call -> here()).build();
    }

    /** paint's parameter: its schema lists these values, and decoding builds the enum. */
    enum Colour { red, green, blue }

    private AgentBuilder callee(boolean vanishing) {
        JsonNode settings = table.path("callee");
        String tag = tag("agent", LANGUAGE);
        AgentBuilder agent = Toolmesh.agent("callee-" + LANGUAGE).tool(echo("echo", tag));
        if (vanishing) {
            agent.tool(echo(settings.path("vanishing_tool").asText(), tag));
        }
        agent.tool(ToolDefinition.builder("fail").tags(tag).handler(call -> {
            throw new IllegalStateException(settings.path("fail_message").asText());
        }).build());
        agent.tool(ToolDefinition.builder("fail_without_message").tags(tag).handler(call -> {
            throw new IllegalStateException();
        }).build());
        JsonNode refusal = settings.path("tool_error");
        agent.tool(ToolDefinition.builder("refuse").tags(tag).handler(call -> {
            throw new ToolException(refusal.path("app_code").asText(), refusal.path("message").asText(), refusal.path("data"));
        }).build());
        List<String> chainHops = new ArrayList<>();
        table.path("chain").path("languages").forEach(hop -> chainHops.add(hop.asText()));
        String following = chainHops.get((chainHops.indexOf(LANGUAGE) + 1) % chainHops.size());
        // The future fails with the ToolException of refuse: our caller gets it unchanged.
        agent.tool(ToolDefinition.builder("refuse_via").tags(tag).dependsOn("refuse", "", tag("agent", following))
                .handler(call -> call.proxy(0).call(null)).build());
        agent.tool(ToolDefinition.builder("echo_via").tags(tag).dependsOn("echo", "", tag("agent", following)).handler(call -> {
            Map<String, Object> seen = here();
            return call.proxy(0).call(null).thenApply(next -> {
                seen.put("next", next);
                return seen;
            });
        }).build());
        // Jackson serializes no plain Object (it has no properties).
        agent.tool(ToolDefinition.builder("not_json").tags(tag).handler(call -> new Object()).build());
        agent.tool(ToolDefinition.builder("count").tags(tag).parameter("n", long.class).readOnlyHint(true).idempotentHint(true)
                .handler(call -> Map.of("n", call.arguments().path("n"))).build());
        agent.tool(ToolDefinition.builder("paint").tags(tag).parameter("colour", Colour.class)
                .handler(call -> Map.of("colour", call.argument("colour", Colour.class).name())).build());
        agent.tool(ToolDefinition.builder("slow").tags(tag).handler(call -> {
            // A caller that asked for progress learns that the call is under way (the cancelled case).
            call.context().progress(0, 1, "slow started");
            Map<String, Object> seen = here();
            return CompletableFuture.supplyAsync(() -> seen,
                    CompletableFuture.delayedExecutor(settings.path("slow_ms").asLong(), TimeUnit.MILLISECONDS));
        }).build());

        agent.tool(ToolDefinition.builder("job").tags(tag).taskSupport("required").handler(call -> {
            Map<String, Object> seen = here();
            return CompletableFuture.supplyAsync(() -> seen,
                    CompletableFuture.delayedExecutor(settings.path("job_ms").asLong(), TimeUnit.MILLISECONDS));
        }).build());

        List<String> hops = new ArrayList<>();
        table.path("chain").path("languages").forEach(hop -> hops.add(hop.asText()));
        int next = hops.indexOf(LANGUAGE) + 1;
        ToolDefinition.Builder chain = ToolDefinition.builder("chain").tags(tag);
        if (next < hops.size()) {
            chain.dependsOn("chain", "", tag("agent", hops.get(next))).handler(call -> {
                Map<String, Object> seen = chainHop(call);
                JsonNode budget = table.path("chain").path("budget");
                long spendMs = budget.path("tenant").asText().equals(Toolmesh.headers().get("x-tenant")) ? budget.path("spend_ms").asLong() : 0;
                CompletableFuture<Void> spent = CompletableFuture.runAsync(() -> {}, CompletableFuture.delayedExecutor(spendMs, TimeUnit.MILLISECONDS));
                return spent.thenCompose(ignored -> call.proxy(0).call(null)).thenApply(rest -> {
                    seen.put("next", rest);
                    return seen;
                });
            });
        } else {
            chain.handler(call -> {
                Map<String, Object> seen = chainHop(call);
                seen.put("next", null);
                return seen;
            });
        }
        agent.tool(chain.build());

        JsonNode asking = table.path("input_required");
        agent.tool(ToolDefinition.builder("ask").tags(tag).handler(call -> {
            RequestContext context = call.context();
            if (context.inputResponses() == null) {
                return InputRequired.of(JSON.convertValue(asking.path("requests"), new TypeReference<Map<String, Object>>() {}),
                        Map.of("asked", LANGUAGE));
            }
            Map<String, Object> answer = new LinkedHashMap<>();
            answer.put("language", LANGUAGE);
            answer.put("hello", context.inputResponses().path("name").path("content").path("name").asText());
            answer.put("state", context.requestState());
            return answer;
        }).build());
        // One dependency per language (all of capability ask), in the table's order; "to" picks one.
        List<String> languages = new ArrayList<>();
        table.path("languages").forEach(language -> languages.add(language.asText()));
        ToolDefinition.Builder askVia = ToolDefinition.builder("ask_via").tags(tag);
        for (String language : languages) {
            askVia.dependsOn("ask", "", tag("agent", language));
        }
        agent.tool(askVia.handler(call -> call.proxy(languages.indexOf(call.arguments().path("to").asText())).call(null)).build());

        List<String> richHops = new ArrayList<>();
        table.path("rich_chain").path("languages").forEach(hop -> richHops.add(hop.asText()));
        int richNext = richHops.indexOf(LANGUAGE) + 1;
        ToolDefinition.Builder richChain = ToolDefinition.builder("rich_chain").tags(tag);
        if (richNext < richHops.size()) {
            richChain.dependsOn("rich_chain", "", tag("agent", richHops.get(richNext))).handler(call -> call.proxy(0).callResult(null));
        } else {
            JsonNode result = table.path("rich_chain").path("result");
            richChain.handler(call -> {
                ToolResult.Builder answer = ToolResult.builder().structured(result.get("structuredContent"));
                result.path("content").forEach(answer::item);
                return answer.build();
            });
        }
        return agent.tool(richChain.build());
    }

    /** Agent KIND-java, serving echo tagged as the table says for {@code kind}, with its own certificate. */
    private AgentBuilder echoOnly(String kind) {
        return ownAgent(kind).tool(echo("echo", tag(kind, LANGUAGE)));
    }

    /** Agent KIND-java, with its own certificate when TOOLMESH_CROSS_CERTS names their directory. */
    private static AgentBuilder ownAgent(String kind) {
        String name = kind + "-" + LANGUAGE;
        AgentBuilder agent = Toolmesh.agent(name);
        // TOOLMESH_CROSS_CERTS holds one certificate per agent: the registry takes an agent's name from it.
        String directory = System.getenv("TOOLMESH_CROSS_CERTS");
        if (directory != null && !directory.isEmpty()) {
            agent = agent.option("tls_cert", directory + "/" + name + ".pem").option("tls_key", directory + "/" + name + ".key");
        }
        return agent;
    }

    /** Agent guarded-java, serving the table's guarded tools (each answers like echo). */
    private AgentBuilder guarded() {
        AgentBuilder agent = ownAgent("guarded");
        for (JsonNode tool : table.path("guarded").path("tools")) {
            agent.tool(echo(tool.asText(), tag("guarded", LANGUAGE)));
        }
        return agent;
    }

    /** Agent relay-java: relay calls relayed of guarded-java on behalf of its own caller; a failure goes to that caller unchanged. */
    private AgentBuilder relay() {
        ToolDefinition relay = ToolDefinition.builder("relay").tags(tag("relay", LANGUAGE))
                .dependsOn(table.path("guarded").path("relayed_tool").asText(), "", tag("guarded", LANGUAGE))
                .handler(call -> call.proxy(0).call(null))
                .build();
        return ownAgent("relay").tool(relay);
    }

    private void startOnce() throws IOException {
        MeshAgent agent;
        try {
            agent = Toolmesh.agent("starter-" + LANGUAGE).tool(echo("echo", tag("agent", LANGUAGE))).start();
        } catch (ToolmeshException error) {
            System.out.println(JSON.writeValueAsString(caught(error)));
            return;
        }
        System.out.println(JSON.writeValueAsString(Map.of("ok", "started")));
        agent.close();
    }
}
