"""A calculator agent: `add`, and `sum3`, which calls `add` through the mesh.

    toolmesh certs init --dir certs --agents calc,stats
    toolmesh registry --tls-cert certs/registry.pem --tls-key certs/registry.key --tls-ca certs/ca.pem &
    TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443 TOOLMESH_TLS_CERT=certs/calc.pem \
    TOOLMESH_TLS_KEY=certs/calc.key TOOLMESH_TLS_CA=certs/ca.pem python examples/python/calc.py
"""

import toolmesh


@toolmesh.tool(capability="add", version="1.0.0", tags=["math"])
async def add(a: int, b: int) -> int:
    return a + b


@toolmesh.tool(capability="sum3", dependencies=["add"])
async def sum3(a: int, b: int, c: int, add: toolmesh.Proxy = None) -> int:
    return await add(a=await add(a=a, b=b), b=c)


if __name__ == "__main__":
    toolmesh.run(name="calc")
