"""What @tool records: names, metadata, dependencies and their injection."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from typing import Optional

import pytest

import toolmesh
from meshkit import Certs
from toolmesh._json import decode


def test_defaults_come_from_the_function() -> None:
    agent = toolmesh.Agent("declare")

    @agent.tool
    async def greet(name: str) -> str:
        """Says hello.

        Politely."""
        return f"hello {name}"

    (spec,) = agent.tools
    assert spec.info() == {
        "name": "greet",  # and no capability: core makes it the name
        "version": "1.0.0",
        "tags": [],
        "description": "Says hello.\n\nPolitely.",
        "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        "dependencies": [],
    }


def test_explicit_metadata_and_dependency_selectors() -> None:
    agent = toolmesh.Agent("declare")
    selector = {"capability": "add", "tags": ["math", "+fast", ["a", "b"]], "version": ">=1.0"}

    @agent.tool(name="total", capability="sum", version="2.1.0", tags=["math"], description="Adds.",
                dependencies=[selector, "log"], timeout_ms=1500)
    def anything(a: int, add: toolmesh.Proxy = None, log: toolmesh.Proxy = None) -> int:
        return a

    info = agent.tools[0].info()
    assert (info["name"], info["capability"], info["version"], info["tags"]) == ("total", "sum", "2.1.0", ["math"])
    assert info["description"] == "Adds."
    assert info["dependencies"] == [selector, "log"]
    assert info["timeout_ms"] == 1500
    assert "annotations" not in info


def test_mcp_annotations_are_declared_as_given_and_checked_by_core(certs: Certs) -> None:
    agent = toolmesh.Agent("declare")

    @agent.tool(annotations={"readOnlyHint": True, "idempotentHint": True})
    def lookup(key: str) -> str:
        return key

    assert agent.tools[0].info()["annotations"] == {"readOnlyHint": True, "idempotentHint": True}
    with pytest.raises(TypeError, match="annotations is a dict"):
        agent.tool(annotations=["idempotentHint"])(lookup)

    misspelt = toolmesh.Agent("alpha", **certs.options("alpha"))
    misspelt.tool(annotations={"idempotent": True})(lookup)
    with pytest.raises(toolmesh.ConfigError, match="unknown tool annotation 'idempotent'"):
        asyncio.run(misspelt.start())


def test_the_decorator_returns_the_function_unchanged() -> None:
    agent = toolmesh.Agent("declare")

    def plain(a: int) -> int:
        return a + 1

    assert agent.tool(capability="inc")(plain) is plain
    assert plain(1) == 2


def test_module_level_tools_are_kept_apart_from_agent_tools() -> None:
    from toolmesh._agent import _default_tools

    before = len(_default_tools)
    agent = toolmesh.Agent("declare")
    agent.tool(lambda: None)
    assert len(_default_tools) == before
    assert len(agent.tools) == 1


def test_proxies_match_a_capability_by_parameter_name_first_then_by_position() -> None:
    agent = toolmesh.Agent("declare")

    @agent.tool(dependencies=["mul", "add", {"capability": "log-sink"}])
    async def f(x: int, first: toolmesh.Proxy = None, add: Optional[toolmesh.Proxy] = None,
                sink: toolmesh.Proxy | None = None) -> int:
        return x

    assert dict(agent.tools[0].proxy_params) == {"add": 1, "first": 0, "sink": 2}


def test_more_proxies_than_dependencies_is_an_error() -> None:
    with pytest.raises(TypeError, match="2 toolmesh.Proxy parameters but declares 1 dependencies"):
        @toolmesh.Agent("declare").tool(dependencies=["add"])
        async def f(add: toolmesh.Proxy = None, other: toolmesh.Proxy = None) -> None: ...


def test_misuse_is_reported_at_declaration() -> None:
    agent = toolmesh.Agent("declare")
    with pytest.raises(TypeError, match=r"tags is a list, e\.g\. tags=\['math'\]"):
        agent.tool(tags="math")(lambda: None)
    with pytest.raises(TypeError, match="dependencies is a list"):
        agent.tool(dependencies="add")(lambda: None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'capabilty'"):
        agent.tool(capabilty="add")(lambda: None)


class Unit(enum.Enum):
    KG = "kg"


@dataclasses.dataclass
class Item:
    mass: float
    unit: Unit
    parts: Optional[list[Item]] = None


def test_arguments_are_decoded_into_the_objects_their_hints_name() -> None:
    item = decode(Item, {"mass": 1, "unit": "kg", "parts": [{"mass": 2, "unit": "kg"}]})
    assert item == Item(1, Unit.KG, [Item(2, Unit.KG)])
    assert decode(dict[str, Unit], {"a": "kg"}) == {"a": Unit.KG}
    assert decode(set[Unit], ["kg"]) == {Unit.KG}
    assert decode(int | str, 5) == 5 and decode(list, [1]) == [1]
