"""Agent B of the Python chain, MCP Mesh: `add` (as in the side-by-side reference)."""

import os

import mesh
from fastmcp import FastMCP

app = FastMCP("agent-b")


@app.tool()
@mesh.tool(capability="add")
def add(a: int, b: int) -> int:
    return a + b


@mesh.agent(name=os.environ.get("BENCH_AGENT_NAME", "agent-b"), http_port=int(os.environ["BENCH_PORT"]), auto_run=True)
class AgentB:
    pass
