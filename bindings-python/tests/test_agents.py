"""Agents in this process, serving and calling each other through a real registry over mTLS."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import threading
import time
import warnings
from typing import Any, Awaitable, Callable, Optional, TypeVar

import pydantic
import pytest
from meshkit import Certs, Registry, call_tool, mcp_post

import toolmesh

T = TypeVar("T")


def run(scenario: Awaitable[T], timeout: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(scenario, timeout))


def agent(name: str, certs: Certs, registry: Optional[Registry], **options: Any) -> toolmesh.Agent:
    if registry is not None:
        options["registry_url"] = registry.url
    return toolmesh.Agent(name, heartbeat_interval_ms=300, **certs.options(name), **options)


async def call(certs: Certs, target: toolmesh.Agent, tool: str, arguments: dict[str, Any],
               headers: Optional[dict[str, str]] = None) -> Any:
    """Calls a tool the way a remote MCP client does (in a thread: this loop serves the agents)."""
    return await asyncio.to_thread(call_tool, target.endpoint, certs.client_context(), tool, arguments, headers)


async def call_error(certs: Certs, target: toolmesh.Agent, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Calls a tool that must fail; returns the mesh error it reported."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    status, answer = await asyncio.to_thread(mcp_post, target.endpoint, certs.client_context(), body)
    assert status == 200 and answer["result"]["isError"], answer
    return answer["result"]["_meta"]["dev.toolmesh/error"]


async def eventually(attempt: Callable[[], Awaitable[T]], timeout: float = 15) -> T:
    """Retries until the registry has told the caller about its providers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await attempt()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_two_agents_call_each_other_through_the_registry(certs: Certs, registry: Registry) -> None:
    beta = agent("beta", certs, registry)
    alpha = agent("alpha", certs, registry)

    @beta.tool(capability="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @beta.tool(capability="mul")
    def mul(a: int, b: int) -> int:  # synchronous: runs in a worker thread
        assert threading.current_thread() is not threading.main_thread()
        return a * b

    @alpha.tool(capability="calc", dependencies=["add", "mul"])
    async def calc(a: int, b: int, add: toolmesh.Proxy = None, mul: toolmesh.Proxy = None) -> dict[str, int]:
        return {"sum": await add(a=a, b=b), "product": await mul.call({"a": a, "b": b})}

    @beta.tool(capability="calc-twice", dependencies=["calc"])
    async def calc_twice(x: int, calc: toolmesh.Proxy = None) -> int:
        first = await calc(a=x, b=x)
        return (await calc(a=first["sum"], b=first["product"]))["sum"]

    async def scenario() -> None:
        async with beta, alpha:
            assert alpha.endpoint.startswith("https://127.0.0.1:") and alpha.endpoint.endswith("/mcp")
            assert alpha.agent_id.startswith("alpha-")
            assert await eventually(lambda: call(certs, alpha, "calc", {"a": 3, "b": 4})) == {"sum": 7, "product": 12}
            # beta -> alpha -> beta: 3+3=6, 3*3=9, then 6+9
            assert await eventually(lambda: call(certs, beta, "calc_twice", {"x": 3})) == 15

    run(scenario())


def test_errors_keep_their_code_across_agents(certs: Certs, registry: Registry) -> None:
    beta = agent("beta", certs, registry)
    alpha = agent("alpha", certs, registry)

    @beta.tool(capability="explode")
    async def explode() -> None:
        raise ValueError("boom")

    @beta.tool(capability="slow")
    async def slow(ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    def report(error: toolmesh.ToolmeshError) -> dict[str, Any]:
        return {"class": type(error).__name__, "code": error.code, "name": error.name, "message": error.message, "str": str(error)}

    @alpha.tool(dependencies=["explode"])
    async def catch_failure(explode: toolmesh.Proxy = None) -> dict[str, Any]:
        try:
            await explode()
        except toolmesh.RemoteToolError as error:
            return report(error)
        raise AssertionError("the remote failure was not raised")

    @alpha.tool(dependencies=["slow"], timeout_ms=200)
    async def catch_timeout(slow: toolmesh.Proxy = None) -> dict[str, Any]:
        try:
            await slow(ms=2000)
        except toolmesh.TransportError as error:
            return report(error)
        raise AssertionError("the timeout was not raised")

    @alpha.tool(dependencies=["nobody-provides-this"])
    async def unresolved(missing: toolmesh.Proxy = None) -> None:
        await missing()

    @alpha.tool
    async def not_json() -> object:
        return object()

    async def scenario() -> None:
        async with beta, alpha:
            failure = await eventually(lambda: call(certs, alpha, "catch_failure", {}))
            assert failure["class"] == "RemoteToolError"
            assert (failure["code"], failure["name"]) == (5001, "TOOL_FAILED")
            # The exception's own message; its type is logged by beta, not sent.
            assert failure["message"] == "tool 'explode' failed: boom"
            assert failure["str"] == f"[5001 TOOL_FAILED] {failure['message']}"

            timeout = await eventually(lambda: call(certs, alpha, "catch_timeout", {}))
            assert (timeout["class"], timeout["code"], timeout["name"]) == ("TimeoutError", 4002, "TIMEOUT")

            # Not caught by the handler: the caller sees the mesh error, not a handler failure.
            error = await call_error(certs, alpha, "unresolved", {})
            assert (error["code"], error["name"]) == (3001, "DEPENDENCY_UNRESOLVED")
            assert "nobody-provides-this" in error["message"]

            error = await call_error(certs, alpha, "not_json", {})
            assert (error["code"], error["name"]) == (6002, "HANDLER_RESULT")

    run(scenario())


def test_a_tool_error_reaches_callers_intact_and_logs_no_traceback(
    certs: Certs, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    beta = agent("beta", certs, registry)
    alpha = agent("alpha", certs, registry)

    @beta.tool(capability="lookup")
    async def lookup(sku: str) -> dict[str, Any]:
        raise toolmesh.ToolError("unknown_sku", f"no such sku: {sku}", data={"sku": sku, "near": ["X1"]})

    @beta.tool(capability="bad_data")
    async def bad_data() -> None:
        raise toolmesh.ToolError("unknown_sku", "m", data=object())

    @alpha.tool(dependencies=["lookup"])
    async def catch_lookup(lookup: toolmesh.Proxy = None) -> dict[str, Any]:
        try:
            await lookup(sku="X")
        except toolmesh.ToolError as error:
            return {"class": type(error).__name__, "code": error.code, "name": error.name, "app_code": error.app_code,
                    "message": error.message, "data": error.data, "str": str(error),
                    "remote": isinstance(error, toolmesh.RemoteToolError)}
        raise AssertionError("the tool error was not raised")

    @alpha.tool(dependencies=["lookup"])
    async def reraise(lookup: toolmesh.Proxy = None) -> None:
        await lookup(sku="Y")

    async def scenario() -> None:
        async with beta, alpha:
            caught = await eventually(lambda: call(certs, alpha, "catch_lookup", {}))
            assert caught == {"class": "ToolError", "code": 5005, "name": "TOOL_ERROR", "app_code": "unknown_sku",
                              "message": "no such sku: X", "data": {"sku": "X", "near": ["X1"]},
                              "str": "[5005 TOOL_ERROR unknown_sku] no such sku: X", "remote": True}
            # Let through by alpha's handler: intact for alpha's caller.
            error = await call_error(certs, alpha, "reraise", {})
            assert error == {"code": 5005, "name": "TOOL_ERROR", "message": "no such sku: Y", "appCode": "unknown_sku",
                             "data": {"sku": "Y", "near": ["X1"]}}
            error = await call_error(certs, beta, "bad_data", {})
            assert (error["code"], error["message"]) == (
                6001, "tool 'bad_data' failed: it raised a tool error (\"unknown_sku\") whose data is not JSON; the agent serving it logs why")

    with caplog.at_level("DEBUG", logger="toolmesh"):
        run(scenario())
    assert not [r for r in caplog.records if r.exc_info], "an expected tool error logged a traceback"


def test_handlers_see_their_request_context(certs: Certs, registry: Registry) -> None:
    beta = agent("beta", certs, registry, propagate_headers="x-tenant")
    alpha = agent("alpha", certs, registry, propagate_headers=["x-tenant", "x-audit-*"])

    def seen() -> dict[str, Any]:
        context = toolmesh.current_context()
        assert context is not None
        assert context.traceparent == f"00-{context.trace_id}-{context.span_id}-01"
        return {"headers": toolmesh.headers(), "trace_id": toolmesh.trace_id(), "span_id": context.span_id}

    @beta.tool(capability="inspect")
    async def inspect_async() -> dict[str, Any]:
        return seen()

    @beta.tool(capability="inspect-sync")
    def inspect_sync() -> dict[str, Any]:  # a worker thread sees the context too
        return seen()

    @alpha.tool(dependencies=["inspect", "inspect-sync"])
    async def hop(inspect: toolmesh.Proxy = None, inspect_sync: toolmesh.Proxy = None) -> dict[str, Any]:
        here = seen()
        return {"alpha": here, "beta": await inspect(), "beta_sync": await inspect_sync()}

    @alpha.tool(dependencies=["inspect"])
    def hop_sync(inspect: toolmesh.Proxy = None) -> dict[str, Any]:
        return {"alpha": seen(), "beta": inspect.call_sync()}

    @alpha.tool(dependencies=["inspect"])
    async def blocks_its_loop(inspect: toolmesh.Proxy = None) -> None:
        inspect.call_sync()

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"X-Tenant": "t-42", "X-Audit-User": "ann", "X-Secret": "s3", "traceparent": traceparent}

    async def scenario() -> None:
        assert toolmesh.headers() == {} and toolmesh.trace_id() is None and toolmesh.current_context() is None
        async with beta, alpha:
            hops = await eventually(lambda: call(certs, alpha, "hop", {}, headers))
            assert hops["alpha"]["headers"] == {"x-tenant": "t-42", "x-audit-user": "ann"}
            # beta's own allow-list drops x-audit-user: core filters on every hop
            assert hops["beta"]["headers"] == hops["beta_sync"]["headers"] == {"x-tenant": "t-42"}
            trace_ids = {hops[h]["trace_id"] for h in ("alpha", "beta", "beta_sync")}
            assert trace_ids == {"4bf92f3577b34da6a3ce929d0e0e4736"}
            assert len({hops[h]["span_id"] for h in ("alpha", "beta", "beta_sync")}) == 3

            hops = await call(certs, alpha, "hop_sync", {}, {"X-Tenant": "t-7"})
            assert hops["alpha"]["headers"] == hops["beta"]["headers"] == {"x-tenant": "t-7"}
            assert hops["alpha"]["trace_id"] == hops["beta"]["trace_id"]

            error = await call_error(certs, alpha, "blocks_its_loop", {})
            assert error["name"] == "HANDLER_FAILED" and "call_sync would block" in error["message"]

    run(scenario())


def test_the_gil_is_free_while_a_call_is_in_flight(certs: Certs, registry: Registry) -> None:
    beta = agent("beta", certs, registry)
    alpha = agent("alpha", certs, registry)

    @beta.tool(capability="nap")
    def nap(ms: int) -> int:
        time.sleep(ms / 1000)
        return ms

    @alpha.tool(dependencies=["nap"])
    async def wait_for_nap(ms: int, nap: toolmesh.Proxy = None) -> int:
        return await nap(ms=ms)

    async def scenario() -> None:
        async with beta, alpha:
            await eventually(lambda: call(certs, alpha, "wait_for_nap", {"ms": 1}))
            counted = 0
            running = threading.Event()
            running.set()

            def count() -> None:  # pure Python: progresses only while nobody else holds the GIL
                nonlocal counted
                while running.is_set():
                    counted += 1

            counter = threading.Thread(target=count)
            counter.start()
            try:
                started = time.monotonic()
                assert await call(certs, alpha, "wait_for_nap", {"ms": 500}) == 500
                elapsed = time.monotonic() - started
            finally:
                running.clear()
                counter.join(timeout=5)
            assert elapsed >= 0.5
            assert counted > 100_000, counted

    run(scenario())


def test_a_forked_child_runs_its_own_agent(certs: Certs) -> None:
    """The dispatch thread and core's runtime do not survive fork(); the child gets new ones."""
    gamma = agent("alpha", certs, None)

    @gamma.tool(capability="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @gamma.tool(dependencies=["add"])  # served by this same agent: no registry needed
    async def sum3(a: int, b: int, c: int, add: toolmesh.Proxy = None) -> int:
        return await add(a=await add(a=a, b=b), b=c)

    async def serve_once() -> int:
        async with gamma:
            return await call(certs, gamma, "sum3", {"a": 1, "b": 2, "c": 3})

    assert run(serve_once()) == 6  # the parent has used the dispatch thread before forking
    with warnings.catch_warnings():  # forking a threaded process is exactly what is tested here
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        try:
            os._exit(0 if run(serve_once(), timeout=30) == 6 else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child did not finish within 45 s")


def test_a_proxy_used_after_stop_gets_cores_shutdown_error(certs: Certs) -> None:
    """The same answer as in every other language: [4005 SHUTDOWN], from core."""
    delta = agent("alpha", certs, None)
    kept: list[toolmesh.Proxy] = []

    @delta.tool(capability="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @delta.tool(dependencies=["add"])
    async def keep(add: toolmesh.Proxy = None) -> int:
        kept.append(add)
        return await add(a=1, b=1)

    async def scenario() -> None:
        async with delta:
            assert await call(certs, delta, "keep", {}) == 2
        with pytest.raises(toolmesh.TransportError) as raised:
            await kept[0](a=1, b=2)
        assert (raised.value.code, raised.value.name) == (4005, "SHUTDOWN")

    run(scenario())


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@dataclasses.dataclass
class Parcel:
    weight: float
    size: Size


class Quote(pydantic.BaseModel):
    price: float = pydantic.Field(ge=0)  # a bound core does not check: pydantic does, decoding
    express: bool = False


def test_module_level_tools_and_rich_values(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    """``@toolmesh.tool`` + ``toolmesh.start``; dataclass, enum and pydantic values in and out."""
    monkeypatch.setattr(toolmesh._agent, "_default_tools", [])  # keep this test's tools to itself

    @toolmesh.tool(capability="quote")
    def quote(parcel: Parcel, express: bool = False) -> Quote:
        assert isinstance(parcel, Parcel) and isinstance(parcel.size, Size)
        return Quote(price=parcel.weight * (3 if parcel.size is Size.LARGE else 1), express=express)

    @toolmesh.tool
    async def echo(quote: Quote, size: Size) -> dict[str, Any]:
        return {"quote": quote, "size": size, "parcel": Parcel(1.5, size)}

    async def scenario() -> None:
        agent = await toolmesh.start(name="alpha", **certs.options("alpha"))
        try:
            assert [t.name for t in agent.tools] == ["quote", "echo"]
            priced = await call(certs, agent, "quote", {"parcel": {"weight": 2.0, "size": "l"}, "express": True})
            assert priced == {"price": 6.0, "express": True}
            echoed = await call(certs, agent, "echo", {"quote": {"price": 1}, "size": "s"})
            assert echoed == {"quote": {"price": 1.0, "express": False}, "size": "s",
                              "parcel": {"weight": 1.5, "size": "s"}}
            # A value the JSON Schema's enum does not allow: core refuses it, as for every language.
            error = await call_error(certs, agent, "echo", {"quote": {"price": 1}, "size": "xl"})
            assert (error["code"], error["name"], error["message"]) == (
                5003, "INVALID_ARGUMENTS", "tool 'echo': argument 'size' must be one of \"s\", \"l\", got \"xl\"")
            # Right JSON types, but the model's own check refuses it: still the caller's mistake.
            error = await call_error(certs, agent, "echo", {"quote": {"price": -1}, "size": "s"})
            assert (error["code"], error["name"]) == (5003, "INVALID_ARGUMENTS"), error
            assert error["message"].startswith("tool 'echo': argument 'quote' is not a valid Quote: 1 validation error for Quote price "), error
        finally:
            await agent.stop()
        await agent.stop()  # idempotent
        with pytest.raises(RuntimeError, match="not running"):
            agent.endpoint

    run(scenario())


def test_a_dependencys_whole_result_passes_through_unchanged(certs: Certs, registry: Registry) -> None:
    """``Proxy.call_result`` gives the callee's every content item as its class, members the class
    does not model included; a handler returning it answers with the very same result."""
    beta = agent("beta", certs, registry)
    alpha = agent("alpha", certs, registry)
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    link = toolmesh.ResourceLink("file:///report.pdf", "report.pdf", mime_type="application/pdf", size=9,
                                 extra={"icons": [{"src": "https://example.com/pdf.png"}], "_meta": {"origin": "beta"}})

    @beta.tool(capability="picture")
    async def picture() -> toolmesh.ToolResult:
        return toolmesh.ToolResult(
            content=[toolmesh.Image(png, "image/png", annotations={"audience": ["user"]}), link,
                     toolmesh.EmbeddedResource("test://inline", text="inline", resource_extra={"_meta": {"v": 1}})],
            structured={"pages": 3})

    seen: list[toolmesh.ToolResult] = []

    @alpha.tool(dependencies=["picture"])
    async def relay_picture(picture: toolmesh.Proxy = None) -> toolmesh.ToolResult:
        result = await picture.call_result()
        seen.append(result)
        return result

    async def whole(target: toolmesh.Agent, tool: str) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
        status, answer = await asyncio.to_thread(mcp_post, target.endpoint, certs.client_context(), body)
        assert status == 200 and "result" in answer and not answer["result"].get("isError"), answer
        return {key: answer["result"][key] for key in ("content", "structuredContent")}

    async def scenario() -> None:
        async with beta, alpha:
            direct = await whole(beta, "picture")
            relayed = await eventually(lambda: whole(alpha, "relay_picture"))
            assert relayed == direct
            assert direct["content"][1] == {"type": "resource_link", "uri": "file:///report.pdf", "name": "report.pdf",
                                            "mimeType": "application/pdf", "size": 9,
                                            "icons": [{"src": "https://example.com/pdf.png"}], "_meta": {"origin": "beta"}}
            # The fourth item is core's text rendering of the structuredContent.
            image, got_link, embedded, rendering = seen[0].content
            assert rendering == toolmesh.Text('{"pages":3}'), rendering
            assert (image.data, image.mime_type) == (png, "image/png") and got_link == link, seen[0]
            assert embedded.resource_extra == {"_meta": {"v": 1}} and seen[0].structured == {"pages": 3}

    run(scenario())
