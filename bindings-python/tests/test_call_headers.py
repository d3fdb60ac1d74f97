"""Headers the caller's code sets on purpose with ``toolmesh.call_headers``: seen by the handler
the call reaches whatever its allow-list, forwarded no further unless allow-listed. Real agents,
a real registry, mTLS; every agent's allow-list names only x-tenant."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest
from meshkit import Certs, Registry
from test_agents import agent, call, eventually, run

import toolmesh


def test_call_headers_reach_the_next_handler_only(certs: Certs, registry: Registry) -> None:
    front = agent("front", certs, registry, propagate_headers="x-tenant")
    middle = agent("alpha", certs, registry, propagate_headers="x-tenant")
    back = agent("back", certs, registry, propagate_headers="x-tenant")

    @back.tool(capability="inspect")
    async def inspect() -> dict[str, str]:
        return toolmesh.headers()

    @middle.tool(capability="inspect-onward", dependencies=["inspect"])
    async def inspect_onward(inspect: toolmesh.Proxy = None) -> dict[str, Any]:
        return {"seen": toolmesh.headers(), "next": await inspect()}

    @front.tool(capability="inspect-here", dependencies=["inspect"])
    async def inspect_here(inspect: toolmesh.Proxy = None) -> dict[str, Any]:
        return {"seen": toolmesh.headers(), "next": await inspect()}

    @front.tool(dependencies=["inspect-onward"])
    async def nested(onward: toolmesh.Proxy = None) -> dict[str, Any]:
        with toolmesh.call_headers({"X-Scoped": "outer", "x-plan": "gold"}):
            with toolmesh.call_headers({"x-scoped": "inner", "x-tenant": "t-override"}):
                inner = await onward()
            outer = await onward()
        after = await onward()
        return {"inner": inner, "outer": outer, "after": after, "own": toolmesh.headers()}

    @front.tool(dependencies=["inspect-onward"])
    def in_a_thread(onward: toolmesh.Proxy = None) -> dict[str, Any]:
        with toolmesh.call_headers({"x-scoped": "sync"}):
            return onward.call_sync()

    @front.tool(dependencies=["inspect-here"])
    async def in_process(here: toolmesh.Proxy = None) -> dict[str, Any]:
        with toolmesh.call_headers({"x-scoped": "local"}):
            return await here()

    @front.tool(dependencies=["inspect-onward"])
    async def refused(onward: toolmesh.Proxy = None) -> dict[str, Any]:
        outcomes = {}
        for name, value in [("content-type", "text/plain"), ("x bad", "v"), ("x-note", "line\nbreak")]:
            with toolmesh.call_headers({name: value}):
                try:
                    await onward()
                except toolmesh.ToolmeshError as error:
                    outcomes[name] = {"code": error.code, "name": error.name, "message": error.message}
        return outcomes

    async def scenario() -> None:
        async with back, middle, front:
            result = await eventually(lambda: call(certs, front, "nested", {}, {"X-Tenant": "t-1"}))
            assert result["inner"] == {
                "seen": {"x-tenant": "t-override", "x-plan": "gold", "x-scoped": "inner"},
                "next": {"x-tenant": "t-override"},  # allow-listed: goes on; the rest stops at middle
            }
            assert result["outer"] == {"seen": {"x-tenant": "t-1", "x-scoped": "outer", "x-plan": "gold"}, "next": {"x-tenant": "t-1"}}
            assert result["after"] == {"seen": {"x-tenant": "t-1"}, "next": {"x-tenant": "t-1"}}, "the scope ended with the with block"
            assert result["own"] == {"x-tenant": "t-1"}, "a scope changes the calls, not the handler's own context"

            assert await call(certs, front, "in_a_thread", {}) == {"seen": {"x-scoped": "sync"}, "next": {}}
            # A dependency the agent serves itself gets the same rule as one across the network.
            assert await eventually(lambda: call(certs, front, "in_process", {})) == {"seen": {"x-scoped": "local"}, "next": {}}

            refusals = await call(certs, front, "refused", {})
            assert refusals == {
                "content-type": {"code": 5003, "name": "INVALID_ARGUMENTS", "message":
                                 "call header 'content-type' cannot be set: the request sets it itself (hop-by-hop, body, "
                                 "protocol, trace and toolmesh headers never are); use another name"},
                "x bad": {"code": 5003, "name": "INVALID_ARGUMENTS", "message":
                          "call header 'x bad' is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"},
                "x-note": {"code": 5003, "name": "INVALID_ARGUMENTS", "message":
                           "the value of call header 'x-note' is not a valid HTTP header value (visible ASCII, spaces and tabs only)"},
            }

    run(scenario())


def test_call_headers_take_strings_and_restore_on_exit() -> None:
    with pytest.raises(TypeError, match="call_headers takes str names and values"):
        with toolmesh.call_headers({"x-count": 3}):  # type: ignore[dict-item]
            pass
    from toolmesh._context import _call_headers

    async def scoped() -> tuple[Any, ...]:
        with toolmesh.call_headers({"x-a": "1"}):
            with toolmesh.call_headers({"x-a": "2", "x-b": "3"}):
                inside: Optional[tuple[Any, ...]] = await asyncio.create_task(asyncio.sleep(0, _call_headers.get()))
        return (inside, _call_headers.get())

    assert asyncio.run(scoped()) == (((("x-a", "1"), ("x-a", "2"), ("x-b", "3"))), ())
