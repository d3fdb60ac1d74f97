package dev.toolmesh.testkit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * Certificates from the toolmesh CLI, a registry process, agent processes and CLI commands for
 * one test class; {@link #close()} kills every process it started. Every wait is bounded.
 */
public final class Mesh implements AutoCloseable {
    public static final Pattern AGENT_READY = Pattern.compile("toolmesh agent (\\S+) serving (https://\\S+) \\(id (\\S+)\\)");
    private static final Pattern REGISTRY_READY = Pattern.compile("toolmesh registry listening on (https://\\S+)");
    /** Short, so topology changes reach agents within a second. */
    public static final int HEARTBEAT_MS = 300;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path workDir;
    private final List<ManagedProcess> processes = new ArrayList<>();
    /** Kills the processes if the test JVM is stopped before {@link #close()} runs. */
    private final Thread killAtExit = new Thread(this::killAll, "mesh-kill-at-exit");
    private Certs certs;

    public Mesh(Path workDir) {
        this.workDir = workDir;
        Runtime.getRuntime().addShutdownHook(killAtExit);
    }

    /** The repository's root (set by the Maven build; the working directory's parent otherwise). */
    public static Path repo() {
        return Path.of(System.getProperty("toolmesh.repo", "..")).toAbsolutePath().normalize();
    }

    /** The {@code toolmesh} CLI: $TOOLMESH_BIN, else the debug build in the cargo target dir. */
    public static Path cli() {
        String explicit = System.getenv("TOOLMESH_BIN");
        Path binary = explicit != null && !explicit.isEmpty()
                ? Path.of(explicit)
                : Path.of(System.getProperty("toolmesh.cargoTargetDir", repo().resolve("target").toString()), "debug", "toolmesh");
        if (!Files.isExecutable(binary)) {
            throw new IllegalStateException(binary + " is missing: build it with `cargo build -p toolmesh-cli` (scripts/java-env.sh does)");
        }
        return binary.toAbsolutePath();
    }

    /** {@code toolmesh certs init} for {@code agents} (plus the operator and the registry), once per mesh. */
    public Certs certs(String... agents) {
        if (certs == null) {
            Path dir = workDir.resolve("certs");
            CommandResult done = run(List.of(cli().toString(), "certs", "init", "--dir", dir.toString(), "--agents", String.join(",", agents)), Map.of());
            if (done.status() != 0) {
                throw new AssertionError("toolmesh certs init failed: " + done);
            }
            certs = new Certs(dir);
        }
        return certs;
    }

    public synchronized ManagedProcess spawn(String label, List<String> argv, Map<String, String> env) {
        ManagedProcess process = new ManagedProcess(argv, env, workDir.resolve(label + "-" + processes.size()));
        processes.add(process);
        return process;
    }

    public Registry startRegistry() {
        Certs certs = requireCerts();
        ManagedProcess process = spawn("registry", List.of(cli().toString(), "registry", "--port", "0",
                "--heartbeat-interval-ms", String.valueOf(HEARTBEAT_MS),
                "--tls-cert", certs.pem("registry").toString(), "--tls-key", certs.key("registry").toString(),
                "--tls-ca", certs.ca().toString()), Map.of());
        return new Registry(process, process.waitForLine(REGISTRY_READY, Duration.ofSeconds(30)).group(1));
    }

    /** The command that runs the Python agent script {@code script} (from the repository root) with the repository's .venv. */
    public static List<String> python(String script) {
        Path python = repo().resolve(".venv/bin/python");
        if (!Files.isExecutable(python)) {
            throw new IllegalStateException(python + " is missing: run scripts/python-env.sh first");
        }
        return List.of(python.toString(), repo().resolve(script).toString());
    }

    /** The command that runs the Node agent script {@code script} (from the repository root) against bindings-node's build. */
    public static List<String> node(String script) {
        if (!Files.exists(repo().resolve("bindings-node/dist/index.js"))) {
            throw new IllegalStateException("bindings-node is not built: run scripts/node-env.sh first");
        }
        return List.of("node", repo().resolve(script).toString());
    }

    /**
     * Runs an agent script ({@link #python} or {@link #node}) as agent {@code name} with identity
     * {@code name}, registered with {@code registry}, and waits until it serves.
     */
    public Agent startScriptAgent(List<String> command, String name, Registry registry, Map<String, String> env) {
        Map<String, String> agentEnv = new HashMap<>(requireCerts().env(name));
        agentEnv.put("TOOLMESH_TEST_AGENT_NAME", name);
        agentEnv.put("TOOLMESH_REGISTRY_URL", registry.url());
        agentEnv.put("TOOLMESH_HEARTBEAT_INTERVAL_MS", String.valueOf(HEARTBEAT_MS));
        agentEnv.putAll(env);
        return startAgent(name, command, agentEnv);
    }

    /** Starts an agent process and waits for its ready line. */
    public Agent startAgent(String name, List<String> argv, Map<String, String> env) {
        ManagedProcess process = spawn(name, argv, env);
        var ready = process.waitForLine(AGENT_READY, Duration.ofSeconds(60));
        return new Agent(process, ready.group(1), ready.group(2), ready.group(3));
    }

    /** A running agent process. */
    public record Agent(ManagedProcess process, String name, String endpoint, String agentId) {}

    /** Runs the CLI as the operator. */
    public CommandResult cli(Registry registry, String... args) {
        Map<String, String> env = new HashMap<>(requireCerts().env("operator"));
        env.put("TOOLMESH_REGISTRY_URL", registry.url());
        List<String> argv = new ArrayList<>(List.of(cli().toString()));
        argv.addAll(List.of(args));
        return run(argv, env);
    }

    /** Waits until every agent in {@code names} is registered and healthy. */
    public void awaitListed(Registry registry, Set<String> names) {
        Wait.eventually(Duration.ofSeconds(30), "agents " + names + " to be listed", () -> {
            CommandResult listed = cli(registry, "list", "--json");
            if (listed.status() != 0) {
                throw new AssertionError("toolmesh list failed: " + listed);
            }
            Set<String> healthy = new HashSet<>();
            for (JsonNode agent : JSON.readTree(listed.stdout()).path("agents")) {
                if (agent.path("status").asText().equals("healthy")) {
                    healthy.add(agent.path("name").asText());
                }
            }
            return healthy.containsAll(names) ? healthy : null;
        });
    }

    /** The outcome of a finished command. */
    public record CommandResult(int status, String stdout, String stderr) {}

    private CommandResult run(List<String> argv, Map<String, String> env) {
        ProcessBuilder builder = new ProcessBuilder(argv);
        builder.environment().putAll(env);
        try {
            Path out = Files.createTempFile(workDir, "cmd", ".out");
            Path err = Files.createTempFile(workDir, "cmd", ".err");
            Process process = builder.redirectOutput(out.toFile()).redirectError(err.toFile()).start();
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                throw new AssertionError(argv + " did not finish within 60 s");
            }
            return new CommandResult(process.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    private Certs requireCerts() {
        if (certs == null) {
            throw new IllegalStateException("call certs(...) first");
        }
        return certs;
    }

    @Override
    public void close() {
        killAll();
        Runtime.getRuntime().removeShutdownHook(killAtExit);
    }

    private synchronized void killAll() {
        processes.forEach(ManagedProcess::kill);
    }
}
