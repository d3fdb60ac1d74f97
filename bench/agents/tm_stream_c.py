"""Last hop of the streaming chain, toolmesh: `stream_c` reports progress n times, then answers n.

With `hang` (seconds), it reports once and waits: to BENCH_CANCEL_FILE, where the bench's client
reads it, it writes `cancelled T` when its call is cancelled, or `finished T` when the wait ran out
(T: time.monotonic(), i.e. CLOCK_MONOTONIC seconds).
"""

import asyncio
import os
import time

import toolmesh


def mark(what: str) -> None:
    with open(os.environ["BENCH_CANCEL_FILE"], "w") as f:
        f.write(f"{what} {time.monotonic()}\n")


@toolmesh.tool(capability="stream_c")
async def stream_c(n: int, hang: float = 0) -> int:
    ctx = toolmesh.context()
    if hang:
        ctx.report_progress(0, 1)
        try:
            await asyncio.sleep(hang)
        except asyncio.CancelledError:
            mark("cancelled")
            raise
        mark("finished")
        return 0
    for i in range(1, n + 1):
        ctx.report_progress(i, n)
    return n


if __name__ == "__main__":
    toolmesh.run(name=os.environ.get("BENCH_AGENT_NAME", "stream-c"))
