"""toolmesh: a service mesh inside MCP agents.

Declare tools with ``@toolmesh.tool``, depend on other agents' capabilities through injected
``toolmesh.Proxy`` parameters, and serve them with ``toolmesh.run(name=...)``. Discovery, mTLS,
MCP, header propagation and tracing all happen in the shared Rust core.
"""

from . import _bridge  # noqa: F401 - hands the native module the Python functions it calls
from ._agent import Agent, add_resource, prompt, resource, run, start, tool
from ._catalog import PromptMessage
from ._content import Audio, EmbeddedResource, Image, InputRequired, ResourceLink, Text, ToolResult
from ._context import ToolContext, call_headers, context, current_context, headers, trace_id
from ._errors import (
    AuthorizationError,
    ConfigError,
    DiscoveryError,
    HandlerError,
    RateLimitedError,
    RemoteToolError,
    TimeoutError,
    TlsError,
    ToolError,
    ToolmeshError,
    TransportError,
)
from ._native import RequestContext
from ._tools import LogMessage, Progress, Proxy, StreamedCall, ToolSpec

__all__ = [
    "Agent",
    "Audio",
    "EmbeddedResource",
    "Image",
    "InputRequired",
    "LogMessage",
    "Progress",
    "PromptMessage",
    "ResourceLink",
    "Text",
    "ToolResult",
    "add_resource",
    "prompt",
    "resource",
    "AuthorizationError",
    "ConfigError",
    "DiscoveryError",
    "HandlerError",
    "Proxy",
    "RateLimitedError",
    "RemoteToolError",
    "RequestContext",
    "StreamedCall",
    "TimeoutError",
    "TlsError",
    "ToolError",
    "ToolContext",
    "ToolSpec",
    "ToolmeshError",
    "TransportError",
    "call_headers",
    "context",
    "current_context",
    "headers",
    "run",
    "start",
    "tool",
    "trace_id",
]
