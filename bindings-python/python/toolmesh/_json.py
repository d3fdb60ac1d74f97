"""JSON in and out of tools: what Python values cross the native boundary as."""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import json
import sys
import types
import typing
from typing import Any, Optional


def loaded_pydantic() -> Optional[types.ModuleType]:
    """pydantic, when the program has imported it. A model class or instance can only exist
    after that, so toolmesh never imports pydantic itself: an agent that does not use it does
    not pay for it (about 5 MiB of RSS)."""
    return sys.modules.get("pydantic")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    pydantic = loaded_pydantic()
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(value: Any) -> str:
    """JSON text of a tool's arguments or result; dataclasses, pydantic models, enums and sets
    are converted. Raises TypeError or ValueError for anything JSON cannot hold."""
    return json.dumps(value, default=_jsonable, allow_nan=False)


_MAPS = (dict, collections.abc.Mapping)


def decode(hint: Any, value: Any) -> Any:
    """Turns the JSON ``value`` of an argument into what its type hint names: dataclasses,
    enums and pydantic models are built, also inside lists, dicts and Optionals. Anything else
    is passed as it came."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return decode(args[0], value)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return decode(options[0], value) if len(options) == 1 else value
    if origin in (list, set, frozenset) and args and isinstance(value, list):
        return origin(decode(args[0], item) for item in value)
    if origin in _MAPS and len(args) == 2 and isinstance(value, dict):
        return {key: decode(args[1], item) for key, item in value.items()}
    if not isinstance(hint, type):
        return value
    pydantic = loaded_pydantic()
    if pydantic is not None and issubclass(hint, pydantic.BaseModel):
        return hint.model_validate(value)
    if issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        fields = typing.get_type_hints(hint)
        return hint(**{name: decode(fields.get(name, Any), item) for name, item in value.items()})
    return value
