import dev.toolmesh.MeshProxy;
import dev.toolmesh.MeshTool;
import dev.toolmesh.Toolmesh;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * A calculator agent: {@code add}, and {@code sum3}, which calls {@code add} through the mesh.
 *
 * <pre>
 * bash scripts/dist.sh                     # dist/maven, this project's repository (or scripts/java-env.sh: ~/.m2)
 * toolmesh certs init --dir certs --agents calc,stats
 * toolmesh registry --tls-cert certs/registry.pem --tls-key certs/registry.key --tls-ca certs/ca.pem &amp;
 * TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443 TOOLMESH_TLS_CERT=certs/calc.pem \
 * TOOLMESH_TLS_KEY=certs/calc.key TOOLMESH_TLS_CA=certs/ca.pem mvn -q -f examples/java/pom.xml compile exec:java
 * </pre>
 *
 * Then {@code examples/python/stats.py} (mean3, which calls sum3) works against it unchanged.
 */
public class Calc {
    @MeshTool(capability = "add", version = "1.0.0", tags = {"math"})
    public int add(int a, int b) { return a + b; }

    @MeshTool(capability = "sum3", dependencies = {"add"})
    public CompletableFuture<Integer> sum3(int a, int b, int c, MeshProxy add) {
        return add.call(Map.of("a", a, "b", b), Integer.class)
                  .thenCompose(ab -> add.call(Map.of("a", ab, "b", c), Integer.class));
    }

    public static void main(String[] args) throws Exception {
        try (var agent = Toolmesh.agent("calc").register(new Calc()).start()) {
            agent.awaitShutdown();
        }
    }
}
