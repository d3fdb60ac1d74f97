"""A call from outside into agent `front`, which calls agent `back` through an injected proxy."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import httpx2
import pytest
from conftest import Chain
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from meshkit import Certs, Mesh, call_tool, wait_until


def test_the_cli_calls_through_the_chain(session_mesh: Mesh, chain: Chain) -> None:
    def sum3() -> Any:
        done = session_mesh.cli("call", "sum3", '{"a": 1, "b": 2, "c": 3}', registry=chain.registry)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # front's topology may lag its listing by a heartbeat
    assert wait_until(lambda: sum3() == 6, timeout=15, what="sum3 through the chain")


async def list_and_call(endpoint: str, context: ssl.SSLContext, mode: str) -> tuple[dict[str, Any], Any]:
    async with httpx2.AsyncClient(verify=context, timeout=httpx2.Timeout(10, read=30)) as http:
        async with Client(streamable_http_client(endpoint, http_client=http), mode=mode) as client:
            listed = await client.list_tools(cursor=None)
            result = await client.call_tool("sum3", {"a": 2, "b": 3, "c": 4})
    return {tool.name: tool for tool in listed.tools}, result


# The legacy revisions need an object as structuredContent, so core wraps other results there:
# what comes back shows which era the client really spoke.
@pytest.mark.parametrize(("mode", "structured"), [("2026-07-28", 9), ("auto", 9), ("legacy", {"result": 9})])
def test_the_official_mcp_client_lists_and_calls_tools(certs: Certs, chain: Chain, mode: str, structured: Any) -> None:
    tools, result = asyncio.run(asyncio.wait_for(list_and_call(chain.front.endpoint, certs.client_context(), mode), 60))
    assert set(tools) == {"sum3", "hops", "relay_who"}
    assert tools["sum3"].input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}},
        "required": ["a", "b", "c"],
    }
    assert not result.is_error, result
    assert result.structured_content == structured
    assert result.content[0].text == "9"


def test_allow_listed_headers_and_one_trace_cross_the_hops(certs: Certs, chain: Chain) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"X-Tenant": "acme", "X-Secret": "do-not-forward", "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    hops = call_tool(chain.front.endpoint, certs.client_context(), "hops", {}, headers)
    assert hops["front"]["agent"] == "front" and hops["back"]["agent"] == "back"
    assert hops["front"]["headers"] == {"x-tenant": "acme"}
    assert hops["back"]["headers"] == {"x-tenant": "acme"}
    assert hops["front"]["trace_id"] == hops["back"]["trace_id"] == trace_id


def test_a_new_trace_starts_when_the_caller_sends_none(certs: Certs, chain: Chain, session_mesh: Mesh) -> None:
    done = session_mesh.cli("call", "hops", "--header", "X-Tenant=cli", registry=chain.registry)
    assert done.returncode == 0, done.stderr
    hops = json.loads(done.stdout)
    assert hops["back"]["headers"] == {"x-tenant": "cli"}
    assert len(hops["front"]["trace_id"]) == 32
    assert hops["front"]["trace_id"] == hops["back"]["trace_id"]
