"""JSON in and out of tools: what Python values cross the native boundary as."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

try:
    import pydantic
except ImportError:  # pragma: no cover - depends on the environment
    pydantic = None


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
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
