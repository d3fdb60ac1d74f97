"""The Python hop of the install test (scripts/install-test.sh): agent install-python serving
py_chain(n) = node_step(n) + 3, where node_step is the Node agent's tool. Run by a fresh venv
that installed only the wheel from dist/python."""

import toolmesh


@toolmesh.tool(capability="py_chain", dependencies=["node_step"])
async def py_chain(n: int, node_step: toolmesh.Proxy = None) -> int:
    return await node_step(n=n) + 3


if __name__ == "__main__":
    toolmesh.run(name="install-python")
