"""Middle hop of the streaming chain, MCP Mesh: `stream_b` re-yields `stream_c`'s chunks
(`dep.stream()`, MCP Mesh's documented way to consume a streaming dependency)."""

import os

import mesh
from fastmcp import FastMCP

app = FastMCP("stream-b")


@app.tool()
@mesh.tool(capability="stream_b", dependencies=["stream_c"])
async def stream_b(n: int, hang: float = 0, stream_c: mesh.McpMeshTool = None) -> mesh.Stream[str]:
    async for chunk in stream_c.stream(n=n, hang=hang):
        yield chunk


@mesh.agent(name=os.environ.get("BENCH_AGENT_NAME", "stream-b"), http_port=int(os.environ["BENCH_PORT"]), auto_run=True)
class StreamB:
    pass
