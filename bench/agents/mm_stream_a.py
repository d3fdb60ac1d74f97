"""First hop of the streaming chain, MCP Mesh: `stream_a` re-yields `stream_b`'s chunks (`dep.stream()`)."""

import os

import mesh
from fastmcp import FastMCP

app = FastMCP("stream-a")


@app.tool()
@mesh.tool(capability="stream_a", dependencies=["stream_b"])
async def stream_a(n: int, hang: float = 0, stream_b: mesh.McpMeshTool = None) -> mesh.Stream[str]:
    async for chunk in stream_b.stream(n=n, hang=hang):
        yield chunk


@mesh.agent(name=os.environ.get("BENCH_AGENT_NAME", "stream-a"), http_port=int(os.environ["BENCH_PORT"]), auto_run=True)
class StreamA:
    pass
