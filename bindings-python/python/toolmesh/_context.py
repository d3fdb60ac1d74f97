"""The request context of the tool call being handled, in a contextvar.

Core captures the allow-listed headers and the trace context of each inbound call into a native
context object; the binding only makes it ambient, so that handlers can read it and proxies can
hand it back to core for the calls they make.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from ._json import encode

if TYPE_CHECKING:
    from ._native import RequestContext

_current: contextvars.ContextVar[Optional["RequestContext"]] = contextvars.ContextVar(
    "toolmesh_request_context", default=None
)


def current_context() -> Optional["RequestContext"]:
    """The context of the request being handled (``headers``, ``trace_id``, ``span_id``,
    ``traceparent``, ``sampled``, ``tracestate``, ``remaining_ms``), or None outside a tool call."""
    return _current.get()


class ToolContext:
    """The tool call being handled, as its handler reports from it (``toolmesh.context()``).
    Reads like the call's ``RequestContext`` (``headers``, ``trace_id``, ...), plus:

    - ``report_progress(progress, total=None, message=None)``: reaches the caller only when it
      asked for progress;
    - ``log(level, data, logger=None)``: ``data`` is any value a tool may return (dataclasses,
      pydantic models, ...); ``level`` one of ``debug`` … ``emergency`` (ValueError otherwise);
      reaches the caller only at or above the level it opted into (a legacy MCP client gets
      ``info`` and up);
    - ``cancelled``: true once the caller went away; nothing is sent after;
    - ``caller``: the caller's verified identity (its certificate's SPIFFE ID);
    - ``client_capabilities``: what the MCP client declared (``{"sampling": {}, ...}``), or None
      when unknown (a legacy-era request declares them only in its session's ``initialize``).

    Both methods return whether the message was sent; core decides (the answer then streams as
    server-sent events)."""

    __slots__ = ("_request",)

    def __init__(self, request: "RequestContext") -> None:
        self._request = request

    def report_progress(self, progress: float, total: Optional[float] = None, message: Optional[str] = None) -> bool:
        return self._request.report_progress(progress, total, message)

    def log(self, level: str, data: Any, logger: Optional[str] = None) -> bool:
        return self._request.log_json(level, encode(data), logger)

    @property
    def cancelled(self) -> bool:
        return self._request.cancelled

    @property
    def client_capabilities(self) -> Optional[dict[str, Any]]:
        declared = self._request.client_capabilities_json
        return None if declared is None else json.loads(declared)

    @property
    def request(self) -> "RequestContext":
        """The request context itself (what ``current_context()`` returns)."""
        return self._request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def context() -> ToolContext:
    """The tool call being handled, to report from it::

        ctx = toolmesh.context()
        ctx.report_progress(1, total=3, message="fetched")
        ctx.log("info", {"rows": 120}, logger="loader")

    Raises RuntimeError outside a tool call. See ``ToolContext``."""
    request = _current.get()
    if request is None:
        raise RuntimeError("toolmesh.context() was called outside a tool call; call it from a @toolmesh.tool handler")
    return ToolContext(request)


def headers() -> dict[str, str]:
    """The propagated headers (lowercase names) of the request being handled; {} outside a call."""
    context = _current.get()
    return context.headers if context is not None else {}


def trace_id() -> Optional[str]:
    """The trace id of the request being handled, or None outside a tool call."""
    context = _current.get()
    return context.trace_id if context is not None else None


# The headers of the call_headers scopes being run, outer scopes first; core merges them.
_call_headers: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "toolmesh_call_headers", default=()
)


@contextlib.contextmanager
def call_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """Calls made in this scope carry ``headers``, set on purpose::

        with toolmesh.call_headers({"x-tenant": "acme"}):
            await calc.add(a=1, b=2)

    The handler each call reaches sees them whatever its agent's allow-list
    (``TOOLMESH_PROPAGATE_HEADERS``); they go further only where allow-lists name them. Inside a
    tool call they are added to the headers the handler sends onward. Scopes nest (an inner
    scope's value of a header wins) and follow the code like any contextvar (into tasks it
    creates, into ``Proxy.call_sync``). Core checks them when a call is made: a name that is not
    a header name, a value that is not a header value, or a header the request sets itself
    (``content-type``, ``traceparent``, ...) fails the call with ``toolmesh.ToolmeshError``
    ``INVALID_ARGUMENTS`` naming the header."""
    pairs = tuple(headers.items())
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"call_headers takes str names and values; got {name!r}: {value!r}")
    token = _call_headers.set(_call_headers.get() + pairs)
    try:
        yield
    finally:
        _call_headers.reset(token)
