"""A Python tool that declares task support (``task_support="optional"``) runs as a task, over real
mTLS, for a client that negotiated the MCP tasks extension: the call is answered with the task,
``tasks/get`` follows it to the function's result, and ``tasks/cancel`` cancels the coroutine. A
value core does not know is refused at start, naming the tool."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Optional

import pytest
from meshkit import Certs, mcp_post

import toolmesh

TASKS = "io.modelcontextprotocol/tasks"
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
}


async def request(certs: Certs, agent: toolmesh.Agent, method: str, params: dict[str, Any],
                  name: Optional[str] = None) -> dict[str, Any]:
    """One modern request that negotiates tasks (in a thread: this loop serves the agent); ``name``
    is what ``Mcp-Name`` repeats (a tools/call's tool is repeated by ``mcp_post``)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    headers = {"Mcp-Name": name} if name is not None else None
    status, answer = await asyncio.to_thread(mcp_post, agent.endpoint, certs.client_context(), body, headers)
    assert status == 200 and "result" in answer, (method, status, answer)
    return answer["result"]


async def task_get(certs: Certs, agent: toolmesh.Agent, task: str) -> dict[str, Any]:
    return await request(certs, agent, "tasks/get", {"taskId": task}, task)


async def until_status(certs: Certs, agent: toolmesh.Agent, task: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        got = await task_get(certs, agent, task)
        if got["status"] == status:
            return got
        assert time.monotonic() < deadline, f"task {task} never became {status}: {got}"
        await asyncio.sleep(0.02)


def test_a_task_supporting_python_tool_runs_as_a_task(certs: Certs) -> None:
    agent = toolmesh.Agent("tasker", **certs.options("alpha"))
    released = asyncio.Event()
    cancelled: list[str] = []

    @agent.tool(task_support="optional")
    async def brew(kind: str) -> str:
        try:
            await released.wait()
        except asyncio.CancelledError:
            cancelled.append(kind)
            raise
        return f"{kind} is ready"

    async def scenario() -> None:
        listed = await request(certs, agent, "tools/list", {})
        assert [t.get("execution") for t in listed["tools"]] == [{"taskSupport": "optional"}]

        created = await request(certs, agent, "tools/call", {"name": "brew", "arguments": {"kind": "tea"}})
        assert created["resultType"] == "task" and created["status"] == "working", created
        task = created["taskId"]
        assert (await task_get(certs, agent, task))["status"] == "working"
        released.set()
        done = await until_status(certs, agent, task, "completed")
        assert done["result"]["content"] == [{"type": "text", "text": "tea is ready"}], done

        released.clear()
        coffee = (await request(certs, agent, "tools/call", {"name": "brew", "arguments": {"kind": "coffee"}}))["taskId"]
        ack = await request(certs, agent, "tasks/cancel", {"taskId": coffee}, coffee)
        assert ack["resultType"] == "complete" and "status" not in ack, ack
        assert (await task_get(certs, agent, coffee))["status"] == "cancelled"
        deadline = time.monotonic() + 10
        while cancelled != ["coffee"]:
            assert time.monotonic() < deadline, "the coroutine of a cancelled task was never cancelled"
            await asyncio.sleep(0.02)

    async def run() -> None:
        async with agent:
            await scenario()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_an_unknown_task_support_is_refused_at_start(certs: Certs) -> None:
    agent = toolmesh.Agent("tasker", **certs.options("alpha"))

    @agent.tool(task_support="sometimes")
    def odd() -> str:
        return "never"

    async def run() -> None:
        async with agent:
            pass

    says = re.escape('tool \'odd\': task_support must be "forbidden", "optional" or "required"')
    with pytest.raises(toolmesh.ToolmeshError, match=says + r'.* got "sometimes"'):
        asyncio.run(asyncio.wait_for(run(), 60))
