"""Test agent of the parity checks, the Python twin of parity.mjs: the same tools failing the
same way, so that what each language reports can be compared."""

import os

import toolmesh


def report(error: toolmesh.ToolmeshError) -> dict:
    return {"class": type(error).__name__, "code": error.code, "kind": error.name, "message": error.message, "string": str(error)}


@toolmesh.tool(dependencies=["nobody-provides-this"])
async def caught_unresolved(missing: toolmesh.Proxy = None) -> dict:
    try:
        await missing()
    except toolmesh.ToolmeshError as error:
        return report(error)
    raise AssertionError("the unresolved dependency did not fail")


@toolmesh.tool(dependencies=["nobody-provides-this"])
async def unresolved(missing: toolmesh.Proxy = None) -> None:
    await missing()


if __name__ == "__main__":
    toolmesh.run(name=os.environ["TOOLMESH_TEST_AGENT_NAME"])
