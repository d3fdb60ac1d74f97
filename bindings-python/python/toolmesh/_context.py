"""The request context of the tool call being handled, in a contextvar.

Core captures the allow-listed headers and the trace context of each inbound call into a native
context object; the binding only makes it ambient, so that handlers can read it and proxies can
hand it back to core for the calls they make.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ._native import RequestContext

_current: contextvars.ContextVar[Optional["RequestContext"]] = contextvars.ContextVar(
    "toolmesh_request_context", default=None
)


def current_context() -> Optional["RequestContext"]:
    """The context of the request being handled (``headers``, ``trace_id``, ``span_id``,
    ``traceparent``, ``sampled``, ``tracestate``, ``remaining_ms``), or None outside a tool call."""
    return _current.get()


def headers() -> dict[str, str]:
    """The propagated headers (lowercase names) of the request being handled; {} outside a call."""
    context = _current.get()
    return context.headers if context is not None else {}


def trace_id() -> Optional[str]:
    """The trace id of the request being handled, or None outside a tool call."""
    context = _current.get()
    return context.trace_id if context is not None else None
