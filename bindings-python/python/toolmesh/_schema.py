"""JSON Schema for a tool's input, derived from the function's type hints.

Only the Python-specific half lives here (reading annotations); the schema is handed to core as
plain JSON and served by it unchanged.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import json
import types
import typing
from typing import Any, Callable, Mapping, Optional

from ._json import loaded_pydantic  # pydantic models are supported once the program imports pydantic

_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bytes: {"type": "string"},
    type(None): {"type": "null"},
}
_ARRAYS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set, collections.abc.Iterable)
_OBJECTS = (dict, collections.abc.Mapping)


def input_schema(fn: Callable[..., Any], skip: typing.Collection[str] = ()) -> dict[str, Any]:
    """The input schema of ``fn``: one property per parameter except those named in ``skip``."""
    hints = typing.get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    defs: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = type_schema(hints.get(param.name, Any), defs)
        if param.default is param.empty:
            required.append(param.name)
        elif _is_json(param.default):
            schema = {**schema, "default": param.default}
        properties[param.name] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    if defs:
        result["$defs"] = defs
    return result


def output_schema(declared: Any) -> Optional[dict[str, Any]]:
    """A tool's ``output_schema=``: a JSON Schema dict as given, or the schema of a structured
    type (a TypedDict, dataclass or pydantic model); core checks that it describes an object."""
    if declared is None or isinstance(declared, Mapping):
        return None if declared is None else dict(declared)
    defs: dict[str, Any] = {}
    schema = type_schema(declared, defs)
    if not schema:
        raise TypeError(
            f"output_schema is a JSON Schema dict or a TypedDict, dataclass or pydantic model, not {declared!r}"
        )
    return {**schema, "$defs": defs} if defs else schema


def type_schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one annotation; named sub-schemas of pydantic models are collected in ``defs``."""
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if origin is typing.Annotated:
        schema = type_schema(args[0], defs)
        described = next((m for m in args[1:] if isinstance(m, str)), None)
        return {**schema, "description": described} if described else schema
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if origin is typing.Union or origin is types.UnionType:
        return _union_schema(args, defs)
    if origin is typing.Literal:
        return _enum_schema(list(args))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([member.value for member in hint])
    if hint in _ARRAYS or origin in _ARRAYS:
        return _array_schema(origin or hint, args, defs)
    if hint in _OBJECTS or origin in _OBJECTS:
        schema: dict[str, Any] = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = type_schema(args[1], defs)
        return schema
    if typing.is_typeddict(hint):
        return _typeddict_schema(hint, defs)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass_schema(hint, defs)
    pydantic = loaded_pydantic()
    if pydantic is not None and isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return _model_schema(hint, defs)
    # Unknown classes accept any JSON: the tool still works, it just documents less.
    return {}


def _union_schema(args: tuple[Any, ...], defs: dict[str, Any]) -> dict[str, Any]:
    options = [type_schema(a, defs) for a in args]
    if {} in options:
        return {}
    simple = [o.get("type") for o in options if set(o) == {"type"} and isinstance(o.get("type"), str)]
    if len(simple) == len(options):  # Optional[int] -> {"type": ["integer", "null"]}
        return {"type": simple}
    return {"anyOf": options}


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": values}
    kinds = {_SCALARS[type(v)]["type"] for v in values if type(v) in _SCALARS}
    if len(kinds) == 1 and len(values) == sum(type(v) in _SCALARS for v in values):
        schema["type"] = kinds.pop()
    return schema


def _array_schema(container: Any, args: tuple[Any, ...], defs: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    if container is tuple and args and args[-1] is not Ellipsis:  # tuple[int, str]: fixed items
        schema["prefixItems"] = [type_schema(a, defs) for a in args]
        schema["minItems"] = schema["maxItems"] = len(args)
        return schema
    if args and args[0] is not Any:
        schema["items"] = type_schema(args[0], defs)
    if container in (set, frozenset, collections.abc.Set):
        schema["uniqueItems"] = True
    return schema


def _object_schema(hints: dict[str, Any], required: list[str], defs: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {k: type_schema(v, defs) for k, v in hints.items()}}
    if required:
        schema["required"] = required
    return schema


def _typeddict_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    required_keys = getattr(cls, "__required_keys__", frozenset(hints))
    return _object_schema(hints, [k for k in hints if k in required_keys], defs)


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    required = [
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return _object_schema({f.name: hints.get(f.name, Any) for f in fields}, required, defs)


def _model_schema(model: type, defs: dict[str, Any]) -> dict[str, Any]:
    # pydantic writes "#/$defs/Name" references; hoisting its $defs to the root keeps them valid.
    schema = model.model_json_schema()
    defs.update(schema.pop("$defs", {}))
    return schema


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
