"""Progress and log messages from a Python handler (``toolmesh.context().report_progress`` and
``.log``), received by the pinned official MCP client over mTLS in both protocol eras; and what
the context refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from meshkit import Certs

import toolmesh


def reporting_agent(certs: Certs, sent: list[tuple[bool, ...]]) -> toolmesh.Agent:
    agent = toolmesh.Agent("reporter", **certs.options("alpha"))

    @agent.tool
    async def crunch(rows: int) -> str:
        ctx = toolmesh.context()
        sent.append((
            ctx.report_progress(0, total=rows, message="starting"),
            ctx.log("debug", "below info"),
            ctx.log("info", {"rows": rows}, logger="cruncher"),
        ))
        await asyncio.sleep(0)  # reports go out while the handler still runs
        ctx.report_progress(rows, total=rows)
        ctx.log("warning", "done crunching")
        return f"crunched {rows}"

    return agent


async def call_with_official_client(certs: Certs, agent: toolmesh.Agent, mode: str) -> tuple[Any, list[Any], list[Any]]:
    progress: list[tuple[float, Any, Any]] = []
    logs: list[tuple[str, Any, Any]] = []

    async def on_progress(value: float, total: Any, message: Any) -> None:
        progress.append((value, total, message))

    async def on_log(params: Any) -> None:
        logs.append((params.level, params.data, params.logger))

    async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
        options: dict[str, Any] = {"mode": mode, "logging_callback": on_log}
        if mode != "legacy":
            options["log_level"] = "info"
        async with Client(streamable_http_client(agent.endpoint, http_client=http), **options) as client:
            result = await client.call_tool("crunch", {"rows": 3}, progress_callback=on_progress)
    return result, progress, logs


# The modern client opts into info and up; a legacy request always gets info and up (a stateless
# server cannot keep a logging/setLevel level).
@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
def test_the_official_client_receives_progress_and_log_messages(certs: Certs, mode: str) -> None:
    sent: list[tuple[bool, ...]] = []
    agent = reporting_agent(certs, sent)

    async def scenario() -> tuple[Any, list[Any], list[Any]]:
        async with agent:
            return await call_with_official_client(certs, agent, mode)

    result, progress, logs = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not result.is_error and result.content[0].text == "crunched 3", result
    assert progress == [(0, 3, "starting"), (3, 3, None)]
    assert logs == [("info", {"rows": 3}, "cruncher"), ("warning", "done crunching", None)]
    assert sent == [(True, False, True)], "report_progress and log say whether they sent"


def test_the_context_is_a_tool_calls_and_refuses_what_mcp_cannot_carry(certs: Certs) -> None:
    with pytest.raises(RuntimeError, match=r"toolmesh.context\(\) was called outside a tool call"):
        toolmesh.context()
    agent = toolmesh.Agent("reporter", **certs.options("alpha"))
    seen: dict[str, Any] = {}

    @agent.tool
    async def wrong() -> str:
        ctx = toolmesh.context()
        seen["cancelled"] = ctx.cancelled
        # A caller that asked for nothing: nothing is sent, and that is no error.
        seen["progress"] = ctx.report_progress(1)
        for level, data in [("loud", "x"), ("info", object())]:
            try:
                ctx.log(level, data)
            except (ValueError, TypeError) as error:
                seen[level] = str(error)
        return "ok"

    async def scenario() -> None:
        async with agent:
            async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
                async with Client(streamable_http_client(agent.endpoint, http_client=http), mode="2026-07-28") as client:
                    await client.call_tool("wrong", {})

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen["cancelled"] is False and seen["progress"] is False, seen
    assert seen["loud"].startswith('log level "loud" is not one of debug, info'), seen
    assert "not JSON serializable" in seen["info"], seen


def relaying_agent(certs: Certs, events: dict[str, asyncio.Event]) -> toolmesh.Agent:
    """``outer`` only calls ``inner`` (served by the same agent, so in process): core relays
    inner's progress to outer's caller, and cancels inner with outer's request."""
    agent = toolmesh.Agent("relay", **certs.options("alpha"))

    @agent.tool
    async def inner(hang: bool) -> str:
        ctx = toolmesh.context()
        ctx.report_progress(1, total=2, message="inner halfway")
        ctx.log("info", "inner says hello", logger="inner")
        if not hang:
            ctx.report_progress(2, total=2)
            return "inner done"
        events["started"].set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events["cancelled"].set()
            raise
        return "never"

    @agent.tool(dependencies=["inner"])
    async def outer(hang: bool, inner: toolmesh.Proxy = None) -> str:
        return await inner(hang=hang)

    return agent


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
def test_the_official_client_receives_progress_relayed_from_the_handlers_dependency(certs: Certs, mode: str) -> None:
    events: dict[str, asyncio.Event] = {}

    async def scenario() -> tuple[Any, list[Any], list[Any]]:
        events.update(started=asyncio.Event(), cancelled=asyncio.Event())
        agent = relaying_agent(certs, events)
        progress: list[tuple[float, Any, Any]] = []
        logs: list[tuple[str, Any, Any]] = []

        async def on_progress(value: float, total: Any, message: Any) -> None:
            progress.append((value, total, message))

        async def on_log(params: Any) -> None:
            logs.append((params.level, params.data, params.logger))

        async with agent:
            async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
                options: dict[str, Any] = {"mode": mode, "logging_callback": on_log}
                if mode != "legacy":
                    options["log_level"] = "info"
                async with Client(streamable_http_client(agent.endpoint, http_client=http), **options) as client:
                    result = await client.call_tool("outer", {"hang": False}, progress_callback=on_progress)
        return result, progress, logs

    result, progress, logs = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not result.is_error and result.content[0].text == "inner done", result
    assert progress == [(1, 2, "inner halfway"), (2, 2, None)]
    assert logs == [("info", "inner says hello", "inner")]


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
def test_a_caller_that_gives_up_cancels_the_handler_task_and_its_dependencys(certs: Certs, mode: str) -> None:
    """The official client, its call's task cancelled, closes the stream (and, in the legacy era,
    sends notifications/cancelled): outer's dependency call is cancelled in core, and inner's
    task sees CancelledError."""
    events: dict[str, asyncio.Event] = {}

    async def scenario() -> None:
        events.update(started=asyncio.Event(), cancelled=asyncio.Event())
        agent = relaying_agent(certs, events)
        async with agent:
            async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
                async with Client(streamable_http_client(agent.endpoint, http_client=http), mode=mode) as client:

                    async def ignore(*_: Any) -> None:
                        pass

                    call = asyncio.create_task(client.call_tool("outer", {"hang": True}, progress_callback=ignore))
                    await asyncio.wait_for(events["started"].wait(), 10)
                    call.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await call
                    await asyncio.wait_for(events["cancelled"].wait(), 5)
                    assert len(agent._handler_tasks) <= 1  # only outer's, finishing with its call's CANCELLED
                    for _ in range(100):
                        if not agent._handler_tasks:
                            break
                        await asyncio.sleep(0.01)
                    assert not agent._handler_tasks, "every handler task ended"

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_finished_handler_task_is_collected(certs: Certs) -> None:
    """The cancellation callback core holds for a handler refers to its task weakly: a finished
    task (and the context its variables hold) is freed, not kept by a cycle through Rust."""
    import gc
    import weakref

    agent = toolmesh.Agent("collected", **certs.options("alpha"))
    tasks: list[Any] = []

    @agent.tool
    async def note() -> str:
        tasks.append(weakref.ref(asyncio.current_task()))
        return "noted"

    async def scenario() -> None:
        async with agent:
            async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
                async with Client(streamable_http_client(agent.endpoint, http_client=http), mode="2026-07-28") as client:
                    await client.call_tool("note", {})
            for _ in range(100):
                gc.collect()
                if tasks and tasks[0]() is None:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the finished handler task is still alive")

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_handler_consumes_its_dependencys_progress_as_an_async_iterator_and_re_emits_it(certs: Certs) -> None:
    """``proxy.stream`` yields the callee's reports in order and turns core's relay off for that
    call: the official client sees only what the handler re-emitted, transformed."""
    agent = toolmesh.Agent("streamer", **certs.options("alpha"))
    seen: list[Any] = []

    @agent.tool
    async def inner() -> str:
        ctx = toolmesh.context()
        ctx.report_progress(1, total=2, message="inner halfway")
        ctx.log("warning", {"disk": 91}, logger="inner")
        ctx.report_progress(2, total=2)
        return "inner done"

    @agent.tool(dependencies=["inner"])
    async def outer(inner: toolmesh.Proxy = None) -> str:
        call = inner.stream()
        async for update in call:
            seen.append(update)
            if isinstance(update, toolmesh.Progress):
                toolmesh.context().report_progress(update.progress * 10, total=20, message=f"outer saw {update.message}")
        return "outer: " + await call

    async def scenario() -> tuple[Any, list[Any]]:
        progress: list[Any] = []

        async def on_progress(value: float, total: Any, message: Any) -> None:
            progress.append((value, total, message))

        async with agent:
            async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
                async with Client(streamable_http_client(agent.endpoint, http_client=http), mode="2026-07-28") as client:
                    result = await client.call_tool("outer", {}, progress_callback=on_progress)
        return result, progress

    result, progress = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not result.is_error and result.content[0].text == "outer: inner done", result
    assert seen == [
        toolmesh.Progress(1, 2, "inner halfway"),
        toolmesh.LogMessage("warning", {"disk": 91}, "inner"),
        toolmesh.Progress(2, 2, None),
    ]
    assert progress == [(10, 20, "outer saw inner halfway"), (20, 20, "outer saw None")]
