"""Agent B of the Python chain, toolmesh: `add`. Same code shape as mm_agent_b.py."""

import os

import toolmesh


@toolmesh.tool(capability="add")
def add(a: int, b: int) -> int:
    return a + b


if __name__ == "__main__":
    toolmesh.run(name=os.environ.get("BENCH_AGENT_NAME", "agent-b"))
