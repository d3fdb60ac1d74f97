"""Rich tool results, resources and prompts of a Python agent, seen by a raw MCP client over mTLS
(modern revision): the content items exactly as the handlers built them, and core's errors
naming the item at fault when an answer is invalid."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
from typing import Any, Literal, Optional

import pytest
from meshkit import Certs, mcp_post

import toolmesh

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
PNG_BASE64 = base64.b64encode(PNG).decode()


async def post(certs: Certs, agent: toolmesh.Agent, method: str, params: dict[str, Any],
               mcp_name: Optional[str] = None) -> tuple[int, dict[str, Any]]:
    """One raw MCP request (in a thread: this loop serves the agent)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {"Mcp-Name": mcp_name} if mcp_name is not None else None
    return await asyncio.to_thread(mcp_post, agent.endpoint, certs.client_context(), body, headers)


async def result_of(certs: Certs, agent: toolmesh.Agent, method: str, params: dict[str, Any],
                    mcp_name: Optional[str] = None) -> dict[str, Any]:
    status, answer = await post(certs, agent, method, params, mcp_name)
    assert status == 200 and "result" in answer, (status, answer)
    return answer["result"]


async def read(certs: Certs, agent: toolmesh.Agent, uri: str) -> tuple[int, dict[str, Any]]:
    return await post(certs, agent, "resources/read", {"uri": uri}, mcp_name=uri)


def without_meta(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in entry.items() if k != "_meta"} for entry in entries]


def rich_agent(certs: Certs) -> toolmesh.Agent:
    agent = toolmesh.Agent("alpha", **certs.options("alpha"))

    @agent.tool
    async def picture(caption: str) -> toolmesh.ToolResult:
        return toolmesh.ToolResult(content=[toolmesh.Image(PNG, "image/png"), caption])

    @agent.tool
    def chart() -> toolmesh.ToolResult:  # synchronous handlers answer rich results too
        return toolmesh.ToolResult(
            content=[toolmesh.Text("2 points", annotations={"audience": ["user"]})],
            structured={"points": [1, 2]},
        )

    @agent.tool
    async def only_structured() -> toolmesh.ToolResult:
        return toolmesh.ToolResult(structured={"total": 3})

    @agent.tool
    async def everything() -> list[Any]:
        return [
            toolmesh.Audio(b"RIFF", "audio/wav"),
            toolmesh.ResourceLink("test://notes", "notes", mime_type="text/plain", size=5),
            toolmesh.EmbeddedResource("test://inline", text="inline", mime_type="text/plain"),
            toolmesh.EmbeddedResource("test://bin", blob=b"\x00\x01"),
        ]

    @agent.tool
    async def plain() -> list[int]:  # a list of plain values stays a plain value
        return [1, 2]

    @agent.tool
    async def refused() -> toolmesh.ToolResult:
        return toolmesh.ToolResult(content=["fine", toolmesh.Image(PNG, "")])

    @agent.tool
    async def self_failed() -> toolmesh.ToolResult:
        return toolmesh.ToolResult(content=["no such chart"], is_error=True)

    return agent


def test_rich_tool_results_reach_the_client_as_built(certs: Certs) -> None:
    agent = rich_agent(certs)

    async def call(tool: str) -> dict[str, Any]:
        result = await result_of(certs, agent, "tools/call", {"name": tool, "arguments": {}})
        result.pop("_meta", None)
        return result

    async def scenario() -> None:
        async with agent:
            picture = await result_of(certs, agent, "tools/call", {"name": "picture", "arguments": {"caption": "a dot"}})
            assert picture["content"] == [
                {"type": "image", "data": PNG_BASE64, "mimeType": "image/png"},
                {"type": "text", "text": "a dot"},
            ], picture
            assert "structuredContent" not in picture and not picture.get("isError"), picture

            chart = await call("chart")
            assert chart["content"] == [{"type": "text", "text": "2 points", "annotations": {"audience": ["user"]}}], chart
            assert chart["structuredContent"] == {"points": [1, 2]}, chart

            structured = await call("only_structured")
            assert structured["structuredContent"] == {"total": 3}, structured
            # core's back-compat rule: the serialized structuredContent becomes the text item
            assert [item["type"] for item in structured["content"]] == ["text"], structured
            assert json.loads(structured["content"][0]["text"]) == {"total": 3}, structured

            everything = await call("everything")
            assert everything["content"] == [
                {"type": "audio", "data": base64.b64encode(b"RIFF").decode(), "mimeType": "audio/wav"},
                {"type": "resource_link", "uri": "test://notes", "name": "notes", "mimeType": "text/plain", "size": 5},
                {"type": "resource", "resource": {"uri": "test://inline", "mimeType": "text/plain", "text": "inline"}},
                {"type": "resource", "resource": {"uri": "test://bin", "blob": "AAE="}},
            ], everything

            assert (await call("plain"))["structuredContent"] == [1, 2]

            failed = await call("self_failed")
            assert failed["isError"] is True and failed["content"] == [{"type": "text", "text": "no such chart"}], failed

            refused = await call("refused")
            assert refused["isError"] is True, refused
            status, answer = await post(certs, agent, "tools/call", {"name": "refused", "arguments": {}})
            error = answer["result"]["_meta"]["dev.toolmesh/error"]
            assert error["name"] == "HANDLER_RESULT", error
            assert error["message"].startswith("tool 'refused' returned an invalid tool result: content[1]"), error
            assert "mimeType" in error["message"], error

    asyncio.run(asyncio.wait_for(scenario(), 60))


def catalog_agent(certs: Certs) -> toolmesh.Agent:
    agent = toolmesh.Agent("alpha", **certs.options("alpha"))
    agent.add_resource("test://static-text", name="static-text", mime_type="text/plain", text="static text")
    agent.add_resource("test://static-binary", name="static-binary", mime_type="image/png", blob=PNG)

    @agent.resource("test://template/{id}/data", mime_type="application/json", description="one item's data")
    async def template_data(id: str, uri: str) -> str:
        assert toolmesh.current_context() is not None  # the read runs in its request context
        return json.dumps({"id": id, "uri": uri})

    @agent.resource("test://bytes/{name}", name="template_data")  # names may repeat: URIs pick the reader
    def raw_bytes(name: str) -> bytes:  # synchronous readers run in a worker thread
        return name.encode()

    @agent.resource("test://bad-base64")
    async def bad_base64() -> dict[str, Any]:
        return {"contents": [{"uri": "test://bad-base64", "blob": "not base64!"}]}

    @agent.resource("test://empty")
    async def empty() -> list[toolmesh.EmbeddedResource]:
        return []

    @agent.resource("test://failing")
    async def failing() -> str:
        raise RuntimeError("the disk is on fire")

    @agent.prompt(title="With arguments")
    async def test_prompt_with_arguments(arg1: str, arg2: str = "two") -> list[Any]:
        """A prompt that takes arguments."""
        return [
            f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'",
            toolmesh.PromptMessage("assistant", toolmesh.Image(PNG, "image/png")),
        ]

    @agent.prompt(name="bad_role")
    def bad_role_prompt() -> toolmesh.PromptMessage:
        return toolmesh.PromptMessage("system", "who am I")

    return agent


def test_resources_and_prompts_are_listed_read_and_got(certs: Certs) -> None:
    agent = catalog_agent(certs)

    async def scenario() -> None:
        async with agent:
            listed = await result_of(certs, agent, "resources/list", {})
            assert without_meta(listed["resources"]) == [
                {"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain"},
                {"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png"},
                {"uri": "test://bad-base64", "name": "bad_base64"},
                {"uri": "test://empty", "name": "empty"},
                {"uri": "test://failing", "name": "failing"},
            ], listed
            templates = await result_of(certs, agent, "resources/templates/list", {})
            assert without_meta(templates["resourceTemplates"]) == [
                {"uriTemplate": "test://template/{id}/data", "name": "template_data", "description": "one item's data",
                 "mimeType": "application/json"},
                {"uriTemplate": "test://bytes/{name}", "name": "template_data"},
            ], templates

            status, answer = await read(certs, agent, "test://static-text")
            assert answer["result"]["contents"] == [{"uri": "test://static-text", "mimeType": "text/plain", "text": "static text"}]
            status, answer = await read(certs, agent, "test://static-binary")
            assert answer["result"]["contents"] == [{"uri": "test://static-binary", "mimeType": "image/png", "blob": PNG_BASE64}]
            status, answer = await read(certs, agent, "test://template/123/data")
            assert answer["result"]["contents"] == [{
                "uri": "test://template/123/data", "mimeType": "application/json",
                "text": json.dumps({"id": "123", "uri": "test://template/123/data"}),
            }], answer
            status, answer = await read(certs, agent, "test://bytes/hi")
            assert answer["result"]["contents"] == [{"uri": "test://bytes/hi", "blob": base64.b64encode(b"hi").decode()}], answer

            prompts = await result_of(certs, agent, "prompts/list", {})
            assert without_meta(prompts["prompts"])[0] == {
                "name": "test_prompt_with_arguments", "title": "With arguments", "description": "A prompt that takes arguments.",
                "arguments": [{"name": "arg1", "required": True}, {"name": "arg2", "required": False}],
            }, prompts
            got = await result_of(certs, agent, "prompts/get",
                                  {"name": "test_prompt_with_arguments", "arguments": {"arg1": "one"}})
            assert got["messages"] == [
                {"role": "user", "content": {"type": "text", "text": "Prompt with arguments: arg1='one', arg2='two'"}},
                {"role": "assistant", "content": {"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}},
            ], got
            status, answer = await post(certs, agent, "prompts/get", {"name": "test_prompt_with_arguments", "arguments": {}})
            assert answer["error"]["code"] == -32602 and "arg1" in answer["error"]["message"], answer

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize("uri, name, words", [
    ("test://bad-base64", "HANDLER_RESULT", "contents[0] 'blob' is not base64"),
    ("test://empty", "HANDLER_RESULT", "'contents' is empty"),
    ("test://failing", "HANDLER_FAILED", "resource 'test://failing' failed: the disk is on fire"),
])
def test_an_invalid_read_is_the_handlers_error_naming_the_item(certs: Certs, uri: str, name: str, words: str) -> None:
    agent = catalog_agent(certs)

    async def scenario() -> None:
        async with agent:
            status, answer = await read(certs, agent, uri)
            assert answer["error"]["code"] == -32603 and answer["error"]["data"]["name"] == name, answer
            assert words in answer["error"]["message"], answer
            status, answer = await post(certs, agent, "prompts/get", {"name": "bad_role", "arguments": {}})
            assert answer["error"]["data"]["name"] == "HANDLER_RESULT", answer
            assert "messages[0]: 'role' must be" in answer["error"]["message"], answer

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_declarations_are_checked_by_core_at_start(certs: Certs) -> None:
    agent = toolmesh.Agent("alpha", **certs.options("alpha"))

    @agent.resource("test://{a}{b}")
    def side_by_side(a: str, b: str) -> str:
        return a + b

    with pytest.raises(toolmesh.ConfigError, match="two variables side by side"):
        asyncio.run(agent.start())
    with pytest.raises(TypeError, match="needs a reader function"):
        agent.add_resource("test://nothing")
    with pytest.raises(TypeError, match="takes the URI"):
        agent.resource(side_by_side)  # type: ignore[arg-type]


class Season(enum.Enum):
    SPRING = "spring"
    SUMMER = "summer"
    AUTUMN = "autumn"


def test_literal_and_enum_parameters_are_offered_to_completion(certs: Certs) -> None:
    """A prompt argument or template variable annotated with a ``Literal`` of strings or a
    ``str``-valued ``Enum`` declares its values; core offers those starting with what was typed."""
    agent = toolmesh.Agent("alpha", **certs.options("alpha"))

    @agent.prompt
    async def forecast(city: Literal["Paris", "Pamplona", "Berlin"], season: Season = Season.SUMMER, note: str = "") -> str:
        return f"{city} in {season}"

    @agent.resource("weather://{city}/{season}")
    async def weather(city: str, season: Season) -> str:
        return f"{city}: {season}"

    async def complete(reference: dict[str, Any], name: str, value: str) -> dict[str, Any]:
        params = {"ref": reference, "argument": {"name": name, "value": value}}
        return (await result_of(certs, agent, "completion/complete", params))["completion"]

    async def scenario() -> None:
        async with agent:
            prompt = {"type": "ref/prompt", "name": "forecast"}
            assert await complete(prompt, "city", "pa") == {"values": ["Paris", "Pamplona"], "total": 2, "hasMore": False}
            assert (await complete(prompt, "season", ""))["values"] == ["spring", "summer", "autumn"]
            assert (await complete(prompt, "note", ""))["values"] == []
            template = {"type": "ref/resource", "uri": "weather://{city}/{season}"}
            assert (await complete(template, "season", "SU"))["values"] == ["summer"]
            assert (await complete(template, "city", ""))["values"] == []
            listed = await result_of(certs, agent, "prompts/list", {})
            assert "completions" not in json.dumps(listed), listed

    asyncio.run(asyncio.wait_for(scenario(), 60))
