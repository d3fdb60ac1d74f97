"""A statistics agent that depends on the calculator's `sum3` (run calc.py too).

    TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443 TOOLMESH_TLS_CERT=certs/stats.pem \
    TOOLMESH_TLS_KEY=certs/stats.key TOOLMESH_TLS_CA=certs/ca.pem python examples/python/stats.py
    toolmesh call mean3 '{"a": 1, "b": 2, "c": 6}'     # with the operator certificate: 3.0
"""

import toolmesh


@toolmesh.tool(capability="mean3", dependencies=[{"capability": "sum3", "version": ">=1.0"}])
async def mean3(a: int, b: int, c: int, sum3: toolmesh.Proxy = None) -> float:
    """The mean of three numbers."""
    return await sum3(a=a, b=b, c=c) / 3


if __name__ == "__main__":
    toolmesh.run(name="stats")
