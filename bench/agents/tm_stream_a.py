"""First hop of the streaming chain, toolmesh: `stream_a` only calls `stream_b` (core relays its progress)."""

import os

import toolmesh


@toolmesh.tool(capability="stream_a", dependencies=["stream_b"])
async def stream_a(n: int, hang: float = 0, stream_b: toolmesh.Proxy = None) -> int:
    return await stream_b(n=n, hang=hang)


if __name__ == "__main__":
    toolmesh.run(name=os.environ.get("BENCH_AGENT_NAME", "stream-a"))
