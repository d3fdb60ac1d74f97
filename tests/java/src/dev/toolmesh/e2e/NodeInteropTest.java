package dev.toolmesh.e2e;

import dev.toolmesh.testkit.Mesh;
import java.util.List;

/** Java and Node agents calling each other. */
class NodeInteropTest extends PeerInteropTest {
    @Override
    List<String> peerCommand() {
        return Mesh.node("tests/java/agents/peer.mjs");
    }
}
