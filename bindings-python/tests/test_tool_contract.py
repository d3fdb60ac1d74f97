"""What a Python tool declares about its answers and its clients, seen by the pinned official MCP
client over mTLS: ``output_schema`` (a TypedDict here) is listed and an answer that breaks it is
refused; ``required_client_capabilities`` refuses a modern client that did not declare one; and
the handler's context names the caller and the capabilities its client declared."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from meshkit import Certs

import toolmesh


class Count(TypedDict):
    count: int


def contract_agent(certs: Certs, seen: list[dict[str, Any]]) -> toolmesh.Agent:
    agent = toolmesh.Agent("contract", **certs.options("alpha"))

    @agent.tool(output_schema=Count)
    def counted(honest: bool) -> Any:
        return {"count": 3} if honest else {"count": "three"}

    @agent.tool(required_client_capabilities=["sampling"])
    def sampler() -> str:
        ctx = toolmesh.context()
        seen.append({"caller": ctx.caller, "client_capabilities": ctx.client_capabilities})
        return "sampled"

    return agent


async def with_client(certs: Certs, agent: toolmesh.Agent, scenario: Any, **options: Any) -> Any:
    async with httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30)) as http:
        async with Client(streamable_http_client(agent.endpoint, http_client=http), mode="2026-07-28", **options) as client:
            return await scenario(client)


def test_an_output_schema_is_listed_and_held_to(certs: Certs) -> None:
    agent = contract_agent(certs, [])

    async def scenario(client: Client) -> Any:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        good = await client.call_tool("counted", {"honest": True})
        bad = await client.call_tool("counted", {"honest": False})
        return tools, good, bad

    async def run() -> Any:
        async with agent:
            return await with_client(certs, agent, scenario)

    tools, good, bad = asyncio.run(asyncio.wait_for(run(), 60))
    assert tools["counted"].output_schema == {
        "type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}
    assert tools["sampler"].output_schema is None
    assert not good.is_error and good.structured_content == {"count": 3}, good
    assert bad.is_error, bad
    assert bad.content[0].text == ("tool 'counted' returned structuredContent that does not match its outputSchema: "
                                   "member 'count' must be of type integer, got string")


def test_a_client_without_a_required_capability_is_refused_and_one_with_it_is_seen(certs: Certs) -> None:
    seen: list[dict[str, Any]] = []
    agent = contract_agent(certs, seen)

    async def sample(context: Any, params: Any) -> Any:
        raise AssertionError("the tool never asks")

    async def attempt(client: Client) -> Any:
        try:
            return await client.call_tool("sampler", {})
        except MCPError as error:
            return error

    async def run() -> Any:
        async with agent:
            refused = await with_client(certs, agent, attempt)
            served = await with_client(certs, agent, attempt, sampling_callback=sample)
            return refused, served

    refused, served = asyncio.run(asyncio.wait_for(run(), 60))
    assert isinstance(refused, MCPError), refused
    assert refused.error.code == -32021, refused.error
    assert refused.error.data == {"requiredCapabilities": {"sampling": {}}}, refused.error
    assert not served.is_error and served.content[0].text == "sampled", served
    assert seen == [{"caller": "spiffe://toolmesh.local/operator/operator", "client_capabilities": {"sampling": {}}}]


def test_a_declaration_core_refuses_names_the_tool(certs: Certs) -> None:
    agent = toolmesh.Agent("contract", **certs.options("alpha"))

    @agent.tool(required_client_capabilities=["telepathy"])
    def odd() -> str:
        return "never"

    async def run() -> None:
        async with agent:
            pass

    with pytest.raises(toolmesh.ToolmeshError, match="tool 'odd': required_client_capabilities\\[0\\]: \"telepathy\" is not a capability"):
        asyncio.run(run())
    with pytest.raises(TypeError, match="required_client_capabilities is a list"):
        agent.tool(required_client_capabilities="sampling")(lambda: None)
    with pytest.raises(TypeError, match="output_schema is a JSON Schema dict or a TypedDict"):
        agent.tool(output_schema=object)(lambda: None)


def test_a_tool_asks_the_official_client_for_input_and_gets_the_answer_and_its_state(certs: Certs) -> None:
    from mcp.types import ElicitResult

    agent = toolmesh.Agent("asker", **certs.options("alpha"))
    seen: list[Any] = []

    @agent.tool
    def greet() -> Any:
        ctx = toolmesh.context()
        seen.append((ctx.input_responses, ctx.request_state))
        answer = (ctx.input_responses or {}).get("name")
        if answer is None or ctx.request_state != {"asked": "name"}:
            return toolmesh.InputRequired(
                {"name": {"method": "elicitation/create", "params": {
                    "message": "Who are you?",
                    "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}},
                state={"asked": "name"})
        return f"Hello, {answer['content']['name']}!"

    async def elicit(context: Any, params: Any) -> Any:
        assert params.message == "Who are you?"
        return ElicitResult(action="accept", content={"name": "Ada"})

    async def run() -> Any:
        async with agent:
            return await with_client(certs, agent, lambda client: client.call_tool("greet", {}), elicitation_callback=elicit)

    result = asyncio.run(asyncio.wait_for(run(), 60))
    assert not result.is_error and result.content[0].text == "Hello, Ada!", result
    assert seen[0] == (None, None)
    assert seen[1] == ({"name": {"action": "accept", "content": {"name": "Ada"}}}, {"asked": "name"}), seen


def test_an_input_schema_written_out_is_listed_as_given_and_held_to(certs: Certs) -> None:
    """``input_schema=`` replaces the schema the type hints would give: listed verbatim (here a
    property mirrored in an ``Mcp-Param-Region`` header), and core checks calls against it."""
    agent = toolmesh.Agent("contract", **certs.options("alpha"))
    schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"},
                                               "limit": {"type": "integer"}},
              "required": ["region"], "additionalProperties": False}

    @agent.tool(input_schema=schema)
    def weather(**arguments: Any) -> str:
        return f"weather in {arguments['region']} (limit {arguments.get('limit', 'none')})"

    async def scenario(client: Client) -> Any:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        good = await client.call_tool("weather", {"region": "eu", "limit": 2})
        try:
            bad: Any = await client.call_tool("weather", {"region": "eu", "limit": "two"})
        except MCPError as error:
            bad = error
        return tools, good, bad

    async def run() -> Any:
        async with agent:
            return await with_client(certs, agent, scenario)

    tools, good, bad = asyncio.run(asyncio.wait_for(run(), 60))
    assert tools["weather"].input_schema == schema
    assert not good.is_error and good.content[0].text == "weather in eu (limit 2)", good
    refusal = bad.error.message if isinstance(bad, MCPError) else bad.content[0].text
    assert "'limit' must be of type integer" in refusal, refusal
    with pytest.raises(TypeError, match="input_schema is a JSON Schema dict"):
        agent.tool(input_schema="object")(lambda: None)
