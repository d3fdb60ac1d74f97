import dev.toolmesh.MeshProxy;
import dev.toolmesh.MeshTool;
import dev.toolmesh.Toolmesh;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * The Java hop of the install test (scripts/install-test.sh): agent install-java serving
 * java_step(n) = c_square(n) + 1, where c_square is the C agent's tool. Built by a fresh Maven
 * project that gets dev.toolmesh:toolmesh only from the file repository dist/maven.
 */
public class JavaStep {
    @MeshTool(capability = "java_step", dependencies = {"c_square"})
    public CompletableFuture<Long> javaStep(long n, MeshProxy cSquare) {
        return cSquare.call(Map.of("n", n), Long.class).thenApply(square -> square + 1);
    }

    public static void main(String[] args) throws Exception {
        try (var agent = Toolmesh.agent("install-java").register(new JavaStep()).start()) {
            System.out.println("toolmesh agent install-java serving " + agent.endpoint() + " (id " + agent.agentId() + ")");
            agent.awaitShutdown();
        }
    }
}
