package dev.toolmesh.e2e;

import dev.toolmesh.testkit.Mesh;
import java.util.List;

/** Java and Python agents calling each other. */
class PythonInteropTest extends PeerInteropTest {
    @Override
    List<String> peerCommand() {
        return Mesh.python("tests/java/agents/peer.py");
    }
}
