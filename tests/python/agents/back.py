"""Test agent: a provider of `add`, `probe` (what a handler sees) and `who` (which agent answered).
Its name comes from TOOLMESH_TEST_AGENT_NAME; everything else from TOOLMESH_* variables."""

import os

import toolmesh

NAME = os.environ["TOOLMESH_TEST_AGENT_NAME"]


@toolmesh.tool(capability="add", tags=["math"])
async def add(a: int, b: int) -> int:
    return a + b


@toolmesh.tool(capability="probe")
async def probe() -> dict:
    return {"agent": NAME, "headers": toolmesh.headers(), "trace_id": toolmesh.trace_id()}


@toolmesh.tool(capability="who")
def who() -> str:
    return NAME


if __name__ == "__main__":
    toolmesh.run(name=NAME)
