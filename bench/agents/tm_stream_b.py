"""Middle hop of the streaming chain, toolmesh: `stream_b` only calls `stream_c` (core relays its progress)."""

import os

import toolmesh


@toolmesh.tool(capability="stream_b", dependencies=["stream_c"])
async def stream_b(n: int, hang: float = 0, stream_c: toolmesh.Proxy = None) -> int:
    return await stream_c(n=n, hang=hang)


if __name__ == "__main__":
    toolmesh.run(name=os.environ.get("BENCH_AGENT_NAME", "stream-b"))
