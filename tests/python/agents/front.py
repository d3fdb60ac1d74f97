"""Test agent: calls its dependencies (`add`, `probe`, `who`) through injected proxies."""

import os

import toolmesh

NAME = os.environ["TOOLMESH_TEST_AGENT_NAME"]


@toolmesh.tool(capability="sum3", dependencies=["add"])
async def sum3(a: int, b: int, c: int, add: toolmesh.Proxy = None) -> int:
    return await add(a=await add(a=a, b=b), b=c)


@toolmesh.tool(capability="hops", dependencies=["probe"])
async def hops(probe: toolmesh.Proxy = None) -> dict:
    here = {"agent": NAME, "headers": toolmesh.headers(), "trace_id": toolmesh.trace_id()}
    return {"front": here, "back": await probe()}


@toolmesh.tool(capability="relay-who", dependencies=["who"])
async def relay_who(who: toolmesh.Proxy = None) -> str:
    return await who()


if __name__ == "__main__":
    toolmesh.run(name=NAME)
