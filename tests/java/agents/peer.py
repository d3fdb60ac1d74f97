"""Python agent of the Java end-to-end suite: `py-*` tools that Java agents call, and tools that
call the Java agent's `j-*` tools. Its name comes from TOOLMESH_TEST_AGENT_NAME; everything else
from TOOLMESH_* variables."""

import os

import toolmesh

NAME = os.environ["TOOLMESH_TEST_AGENT_NAME"]


def here() -> dict:
    return {"agent": NAME, "headers": toolmesh.headers(), "trace_id": toolmesh.trace_id()}


def report(error: toolmesh.ToolmeshError) -> dict:
    return {"code": error.code, "name": error.name, "message": error.message}


# Named `add` like the Java agent's: the same bad call then gets the same message from both.
@toolmesh.tool(capability="py-add")
async def add(a: int, b: int) -> int:
    return a + b


@toolmesh.tool(capability="py-probe")
async def probe() -> dict:
    return here()


@toolmesh.tool(capability="py-fail")
async def fail() -> None:
    raise ValueError("boom")


@toolmesh.tool(capability="py-sum3", dependencies=["j-add"])
async def sum3(a: int, b: int, c: int, add: toolmesh.Proxy = None) -> int:
    return await add(a=await add(a=a, b=b), b=c)


@toolmesh.tool(capability="py-hops", dependencies=["j-probe"])
async def hops(probe: toolmesh.Proxy = None) -> dict:
    return {"python": here(), "java": await probe()}


@toolmesh.tool(capability="py-missing", dependencies=["nobody-provides-this"])
async def missing(dependency: toolmesh.Proxy = None) -> dict:
    try:
        await dependency()
    except toolmesh.ToolmeshError as error:
        return report(error)
    raise AssertionError("a dependency nobody provides was called")


@toolmesh.tool(capability="py-bad-add", dependencies=["j-add"])
async def bad_add(add: toolmesh.Proxy = None) -> dict:
    try:
        await add(a="x", b=1)
    except toolmesh.ToolmeshError as error:
        return report(error)
    raise AssertionError("a bad argument was accepted")


@toolmesh.tool(capability="py-call-fail", dependencies=["j-fail"])
async def call_fail(fail: toolmesh.Proxy = None) -> dict:
    try:
        await fail()
    except toolmesh.ToolmeshError as error:
        return report(error)
    raise AssertionError("a failing tool succeeded")


if __name__ == "__main__":
    toolmesh.run(name=NAME)
