"""Agent A of the Python chain, toolmesh: `add_via_mesh` calls B's `add` through the mesh."""

import os

import toolmesh


@toolmesh.tool(capability="add_via_mesh", dependencies=["add"])
async def add_via_mesh(a: int, b: int, add: toolmesh.Proxy = None) -> int:
    return await add(a=a, b=b)


if __name__ == "__main__":
    toolmesh.run(name=os.environ.get("BENCH_AGENT_NAME", "agent-a"))
