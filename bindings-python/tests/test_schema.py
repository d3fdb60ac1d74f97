"""Input schemas derived from type hints."""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Any, Literal, Optional, TypedDict, Union

import pydantic

import toolmesh
from toolmesh._schema import input_schema


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(TypedDict):
    x: float
    y: float


class Labelled(TypedDict, total=False):
    label: str


@dataclasses.dataclass
class Box:
    width: int
    height: int = 1
    tags: list[str] = dataclasses.field(default_factory=list)


class Order(pydantic.BaseModel):
    item: str
    quantity: int = 1
    box: Optional["BoxModel"] = None


class BoxModel(pydantic.BaseModel):
    side: float


Order.model_rebuild()


def properties(fn: Any) -> dict[str, Any]:
    return input_schema(fn)["properties"]


def test_scalars_map_to_json_types_and_parameters_without_defaults_are_required() -> None:
    def f(i: int, x: float, s: str, flag: bool, anything, limit: int = 10) -> None: ...

    schema = input_schema(f)
    assert schema["type"] == "object"
    assert schema["properties"] == {
        "i": {"type": "integer"},
        "x": {"type": "number"},
        "s": {"type": "string"},
        "flag": {"type": "boolean"},
        "anything": {},
        "limit": {"type": "integer", "default": 10},
    }
    assert schema["required"] == ["i", "x", "s", "flag", "anything"]


def test_containers() -> None:
    def f(a: list[int], b: dict, c: dict[str, float], d: tuple[int, str], e: tuple[str, ...], g: set[str], h: list) -> None: ...

    assert properties(f) == {
        "a": {"type": "array", "items": {"type": "integer"}},
        "b": {"type": "object"},
        "c": {"type": "object", "additionalProperties": {"type": "number"}},
        "d": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
        "e": {"type": "array", "items": {"type": "string"}},
        "g": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "h": {"type": "array"},
    }


def test_optional_union_literal_enum_and_annotated() -> None:
    def f(
        a: Optional[int],
        b: str | None,
        c: Union[int, list[str]],
        d: Literal["asc", "desc"] = "asc",
        e: Color = Color.RED,
        n: Annotated[int, "how many"] = 3,
        m: Literal[1, "x"] = 1,
    ) -> None: ...

    props = properties(f)
    assert props["a"] == {"type": ["integer", "null"]}
    assert props["b"] == {"type": ["string", "null"]}
    assert props["c"] == {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}}]}
    assert props["d"] == {"enum": ["asc", "desc"], "type": "string", "default": "asc"}
    assert props["e"] == {"enum": ["red", "green"], "type": "string"}  # an Enum default is not JSON
    assert props["n"] == {"type": "integer", "description": "how many", "default": 3}
    assert props["m"] == {"enum": [1, "x"], "default": 1}


def test_typeddict_and_dataclass_become_objects() -> None:
    def f(p: Point, box: Box, extra: Labelled) -> None: ...

    props = properties(f)
    assert props["p"] == {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
        "required": ["x", "y"],
    }
    assert props["box"] == {
        "type": "object",
        "properties": {"width": {"type": "integer"}, "height": {"type": "integer"},
                       "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["width"],
    }
    assert props["extra"] == {"type": "object", "properties": {"label": {"type": "string"}}}


def test_pydantic_models_keep_their_schema_with_definitions_at_the_root() -> None:
    def f(order: Order) -> None: ...

    schema = input_schema(f)
    order = schema["properties"]["order"]
    assert order["required"] == ["item"]
    assert order["properties"]["quantity"]["type"] == "integer"
    assert "BoxModel" in schema["$defs"]
    assert "$defs" not in order


def test_proxy_parameters_and_star_arguments_are_not_inputs() -> None:
    agent = toolmesh.Agent("schema")

    @agent.tool(dependencies=["add"])
    def uses(a: int, add: toolmesh.Proxy = None, *rest: Any, **options: Any) -> int: ...

    assert agent.tools[0].input_schema == {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
