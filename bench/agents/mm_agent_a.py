"""Agent A of the Python chain, MCP Mesh: `add_via_mesh` calls B's `add` through the mesh."""

import os

import mesh
from fastmcp import FastMCP

app = FastMCP("agent-a")


@app.tool()
@mesh.tool(capability="add_via_mesh", dependencies=["add"])
async def add_via_mesh(a: int, b: int, add: mesh.McpMeshTool = None) -> int:
    return await add(a=a, b=b)


@mesh.agent(name=os.environ.get("BENCH_AGENT_NAME", "agent-a"), http_port=int(os.environ["BENCH_PORT"]), auto_run=True)
class AgentA:
    pass
