"""Peer agent of the Java end-to-end suite, in Python (peer.mjs is its Node twin): `peer-*` tools
that the Java agent calls, and tools that call the Java agent's `j-*` tools. Its name comes from
TOOLMESH_TEST_AGENT_NAME; everything else from TOOLMESH_* variables."""

import os

import toolmesh

NAME = os.environ["TOOLMESH_TEST_AGENT_NAME"]


def here() -> dict:
    return {"agent": NAME, "headers": toolmesh.headers(), "trace_id": toolmesh.trace_id()}


async def failure_of(dependency: toolmesh.Proxy, **arguments: object) -> dict:
    """Calls ``dependency`` expecting it to fail; answers what the mesh reported."""
    try:
        await dependency(**arguments)
    except toolmesh.ToolmeshError as error:
        return {"code": error.code, "name": error.name, "message": error.message}
    raise AssertionError("the call did not fail")


# Named `add` like the Java agent's: the same bad call then gets the same message from both.
@toolmesh.tool(capability="peer-add")
async def add(a: int, b: int) -> int:
    return a + b


@toolmesh.tool(capability="peer-probe")
async def probe() -> dict:
    return here()


@toolmesh.tool(capability="peer-fail")
async def fail() -> None:
    raise ValueError("boom")


@toolmesh.tool(capability="peer-sum3", dependencies=["j-add"])
async def sum3(a: int, b: int, c: int, add: toolmesh.Proxy = None) -> int:
    return await add(a=await add(a=a, b=b), b=c)


@toolmesh.tool(capability="peer-hops", dependencies=["j-probe"])
async def hops(probe: toolmesh.Proxy = None) -> dict:
    return {"peer": here(), "java": await probe()}


@toolmesh.tool(capability="peer-missing", dependencies=["nobody-provides-this"])
async def missing(dependency: toolmesh.Proxy = None) -> dict:
    return await failure_of(dependency)


@toolmesh.tool(capability="peer-bad-add", dependencies=["j-add"])
async def bad_add(add: toolmesh.Proxy = None) -> dict:
    return await failure_of(add, a="x", b=1)


@toolmesh.tool(capability="peer-call-fail", dependencies=["j-fail"])
async def call_fail(fail: toolmesh.Proxy = None) -> dict:
    return await failure_of(fail)


if __name__ == "__main__":
    toolmesh.run(name=NAME)
