"""Last hop of the streaming chain, MCP Mesh: `stream_c` yields n chunks (each sent as
notifications/progress; the answer is their joined text).

With `hang` (seconds), it yields once and waits: to BENCH_CANCEL_FILE, where the bench's client
reads it, it writes `cancelled T` when its call is cancelled, or `finished T` when the wait ran out
(T: time.monotonic(), i.e. CLOCK_MONOTONIC seconds).
"""

import asyncio
import os
import time

import mesh
from fastmcp import FastMCP

app = FastMCP("stream-c")


def mark(what: str) -> None:
    with open(os.environ["BENCH_CANCEL_FILE"], "w") as f:
        f.write(f"{what} {time.monotonic()}\n")


@app.tool()
@mesh.tool(capability="stream_c")
async def stream_c(n: int, hang: float = 0) -> mesh.Stream[str]:
    if hang:
        yield "."
        try:
            await asyncio.sleep(hang)
        except (asyncio.CancelledError, GeneratorExit):
            mark("cancelled")
            raise
        mark("finished")
        return
    for _ in range(n):
        yield "."


@mesh.agent(name=os.environ.get("BENCH_AGENT_NAME", "stream-c"), http_port=int(os.environ["BENCH_PORT"]), auto_run=True)
class StreamC:
    pass
