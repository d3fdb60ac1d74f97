"""Tool declarations: the ``@tool`` decorator, the metadata it records, and dependency proxies."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import json
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Union

from . import _json, _native
from ._content import ToolResult
from ._context import _call_headers, _current
from ._schema import input_schema as derived_input_schema
from ._schema import output_schema as declared_output_schema

DependencyDecl = Union[str, Mapping[str, Any]]


class ProxyHost(Protocol):
    """What a proxy needs of the agent it calls through (``toolmesh.Agent`` is one); named here
    so that this module does not depend on the agent's, which depends on it."""

    def _native_for_calls(self) -> _native.NativeAgent: ...

    def _require_loop(self) -> asyncio.AbstractEventLoop: ...


class Proxy:
    """A callable stand-in for one declared dependency of a tool.

    Annotate a tool parameter with ``toolmesh.Proxy`` (default ``None``) and the mesh passes a
    proxy for the matching dependency; ``await proxy(a=1)`` or ``await proxy.call({"a": 1})``
    calls a provider chosen by core and returns the remote tool's result. Failures raise
    ``toolmesh.ToolmeshError`` subclasses. The request context of the call being handled
    (propagated headers, trace) flows into the call automatically, and so do the headers of the
    ``toolmesh.call_headers`` scopes the call is made in.
    """

    def __init__(self, agent: ProxyHost, tool: str, index: int, capability: str) -> None:
        self._agent = agent
        self._tool = tool
        self._index = index
        self.capability = capability

    async def __call__(self, **arguments: Any) -> Any:
        return await self.call(arguments)

    async def call(self, arguments: Optional[Mapping[str, Any]] = None) -> Any:
        """Calls the dependency with ``arguments`` (a dict) and returns the decoded result."""
        future = asyncio.get_running_loop().create_future()
        native = self._agent._native_for_calls()
        native.call(self._tool, self._index, _json.encode(arguments or {}), _current.get(), _call_headers.get(), future)
        return json.loads(await future)

    async def call_result(self, arguments: Optional[Mapping[str, Any]] = None) -> ToolResult:
        """Calls the dependency like ``call`` and returns its whole result, a
        ``toolmesh.ToolResult``: every content item (``Text``, ``Image``, ``Audio``,
        ``ResourceLink``, ``EmbeddedResource``) and the ``structured`` content, as the callee sent
        them. A handler that returns it answers its own caller with the same result, unchanged."""
        future = asyncio.get_running_loop().create_future()
        native = self._agent._native_for_calls()
        native.call(self._tool, self._index, _json.encode(arguments or {}), _current.get(), _call_headers.get(), future,
                    None, True)
        return ToolResult.from_mcp(json.loads(await future))

    def stream(self, **arguments: Any) -> "StreamedCall":
        """Calls the dependency and yields what its callee reports while it runs, as
        ``toolmesh.Progress`` and ``toolmesh.LogMessage``; awaiting the call gives its result::

            call = fetch.stream(url=url)
            async for update in call:
                if isinstance(update, toolmesh.Progress):
                    toolmesh.context().report_progress(update.progress / 2, total=1)
            page = await call

        Such a call's reports are the handler's to re-emit or transform: core does not relay
        them to the handler's own caller as it does for ``await proxy(...)``.
        """
        return StreamedCall(self, arguments)

    def call_sync(self, **arguments: Any) -> Any:
        """Blocking form for synchronous tools, which run in a worker thread: runs the call on
        the agent's loop and waits for it (core's call timeout bounds the wait)."""
        loop = self._agent._require_loop()
        try:
            on_the_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_the_loop = False
        if on_the_loop:
            raise RuntimeError("call_sync would block the event loop it waits for; use `await proxy(...)`")
        # The task inherits this thread's context (call_soon_threadsafe copies it), and with it
        # the request context of the tool call being handled.
        return asyncio.run_coroutine_threadsafe(self.call(arguments), loop).result()

    def __repr__(self) -> str:
        return f"<toolmesh.Proxy {self.capability!r} (dependency #{self._index} of {self._tool!r})>"


class ArgumentNotDecoded(Exception):
    """An argument passed core's schema check but did not decode into its parameter's type
    hint (a model's validator, a dataclass's fields, an enum's values): the caller's mistake.
    The agent reports it to core, which words the caller's INVALID_ARGUMENTS as in every language."""

    def __init__(self, argument: str, type_name: str, reason: str) -> None:
        super().__init__(f"argument {argument!r} is not a valid {type_name}: {reason}")
        self.argument = argument
        self.type_name = type_name
        self.reason = reason


def _type_name(hint: Any) -> str:
    """A type hint as its author wrote it: ``Item``, ``list[Item]``, ``Optional[Unit]``."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return repr(hint).replace("typing.", "")


def _decode_argument(name: str, hint: Any, value: Any) -> Any:
    try:
        return _json.decode(hint, value)
    except (TypeError, ValueError) as error:
        # What the hint's type refused (pydantic's ValidationError is a ValueError): one line.
        raise ArgumentNotDecoded(name, _type_name(hint), " ".join(str(error).split()) or type(error).__name__) from error


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """A declared tool: what core is told about it, and how to call the Python function."""

    fn: Callable[..., Any]
    name: str
    capability: Optional[str]
    version: str
    tags: tuple[str, ...]
    description: str
    dependencies: tuple[DependencyDecl, ...]
    timeout_ms: Optional[int]
    # MCP's tool annotations ({"idempotentHint": True, ...}); core checks the names
    annotations: Mapping[str, Any]
    # MCP's outputSchema, or None; core holds every answer to it
    output_schema: Optional[dict[str, Any]]
    # client capabilities the tool needs ("sampling", ...); core refuses clients without them
    required_client_capabilities: tuple[str, ...]
    # MCP's execution.taskSupport ("forbidden", "optional", "required"), or None; core checks it
    task_support: Optional[str]
    input_schema: dict[str, Any]
    # parameter name -> index of the dependency whose proxy it receives
    proxy_params: Mapping[str, int]
    # parameter name -> type hint, to decode JSON arguments into the objects the hints name
    param_hints: Mapping[str, Any]

    def info(self) -> dict[str, Any]:
        """The tool as core's JSON tool definition."""
        info: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "tags": list(self.tags),
            "description": self.description,
            "input_schema": self.input_schema,
            "dependencies": [d if isinstance(d, str) else dict(d) for d in self.dependencies],
        }
        if self.capability:  # else core takes the name, as in every language
            info["capability"] = self.capability
        if self.timeout_ms is not None:
            info["timeout_ms"] = self.timeout_ms
        if self.annotations:
            info["annotations"] = dict(self.annotations)
        if self.output_schema is not None:
            info["output_schema"] = self.output_schema
        if self.required_client_capabilities:
            info["required_client_capabilities"] = list(self.required_client_capabilities)
        if self.task_support is not None:
            info["task_support"] = self.task_support
        return info

    async def invoke(self, arguments: dict[str, Any], proxies: Mapping[str, Proxy]) -> Any:
        """Runs the function with JSON ``arguments`` and the proxies of its dependencies.
        Synchronous functions run in the loop's default executor, in the caller's context."""
        kwargs = {name: _decode_argument(name, self.param_hints.get(name, Any), v) for name, v in arguments.items()}
        kwargs.update(proxies)
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        call = functools.partial(contextvars.copy_context().run, self.fn, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, call)


def declare(
    fn: Callable[..., Any],
    *,
    name: Optional[str] = None,
    capability: Optional[str] = None,
    version: str = "1.0.0",
    tags: Iterable[str] = (),
    description: Optional[str] = None,
    dependencies: Iterable[DependencyDecl] = (),
    timeout_ms: Optional[int] = None,
    annotations: Optional[Mapping[str, Any]] = None,
    output_schema: Any = None,
    required_client_capabilities: Iterable[str] = (),
    input_schema: Optional[Mapping[str, Any]] = None,
    task_support: Optional[str] = None,
) -> ToolSpec:
    """Reads a function's signature into a ToolSpec (see ``toolmesh.tool`` for the arguments)."""
    if not callable(fn):
        raise TypeError(f"@toolmesh.tool decorates a function, not {fn!r}")
    lists = (("tags", tags, "['math']"), ("dependencies", dependencies, "['add']"),
             ("required_client_capabilities", required_client_capabilities, "['sampling']"))
    for argument, given, example in lists:
        if isinstance(given, (str, Mapping)):
            raise TypeError(f"{argument} is a list, e.g. {argument}={example}")
    if annotations is not None and not isinstance(annotations, Mapping):
        raise TypeError("annotations is a dict of MCP tool annotations, e.g. annotations={'idempotentHint': True}")
    if input_schema is not None and not isinstance(input_schema, Mapping):
        raise TypeError("input_schema is a JSON Schema dict, e.g. input_schema={'type': 'object', 'properties': {...}}")
    tool_name = name or fn.__name__
    dependencies = tuple(dependencies)
    hints = typing.get_type_hints(fn, include_extras=True)
    proxy_names = [p for p in inspect.signature(fn).parameters if _is_proxy_hint(hints.get(p))]
    capabilities = [dependency_capability(d) for d in dependencies]
    proxy_params = _assign_dependencies(tool_name, proxy_names, capabilities)
    skip = set(proxy_params)
    return ToolSpec(
        fn=fn,
        name=tool_name,
        capability=capability,  # core defaults it to the name
        version=version,
        tags=tuple(tags),
        description=inspect.cleandoc(description or fn.__doc__ or ""),
        dependencies=dependencies,
        timeout_ms=timeout_ms,
        annotations=dict(annotations or {}),
        output_schema=declared_output_schema(output_schema),
        required_client_capabilities=tuple(required_client_capabilities),
        task_support=task_support,
        # A schema written out is served as given (core checks it); else the type hints say it.
        input_schema=dict(input_schema) if input_schema is not None else derived_input_schema(fn, skip=skip),
        proxy_params=proxy_params,
        param_hints={p: h for p, h in hints.items() if p not in skip and p != "return"},
    )


def dependency_capability(declared: DependencyDecl) -> str:
    return declared if isinstance(declared, str) else str(declared.get("capability", ""))


def _assign_dependencies(tool: str, proxy_names: list[str], capabilities: list[str]) -> dict[str, int]:
    """Proxy parameter -> dependency index, by core's rule for every language: a parameter named
    like a declared capability gets that dependency; the others take the remaining dependencies
    in declaration order."""
    assigned = _native.assign_proxy_parameters(proxy_names, capabilities)
    if assigned is None:
        raise TypeError(
            f"tool {tool!r} has {len(proxy_names)} toolmesh.Proxy parameters but declares "
            f"{len(capabilities)} dependencies; add them with dependencies=[...]"
        )
    return dict(zip(proxy_names, assigned))


def _is_proxy_hint(hint: Any) -> bool:
    """``Proxy``, ``Optional[Proxy]`` or ``Proxy | None``."""
    if hint is Proxy:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return Proxy in typing.get_args(hint)
    return False


@dataclasses.dataclass(frozen=True)
class Progress:
    """Progress a dependency's callee reported: ``progress`` so far, of ``total`` if known."""

    progress: float
    total: Optional[float] = None
    message: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class LogMessage:
    """A log message a dependency's callee sent: MCP's ``level``, any JSON ``data``, a ``logger``."""

    level: str
    data: Any
    logger: Optional[str] = None


class StreamedCall:
    """A dependency call in flight (``Proxy.stream``): an async iterator of its callee's
    reports, in order, ending when the call ends; awaited, the call's result (or its error)."""

    def __init__(self, proxy: Proxy, arguments: Mapping[str, Any]) -> None:
        self._updates: asyncio.Queue[Optional[str]] = asyncio.Queue()
        self._future = asyncio.get_running_loop().create_future()
        native = proxy._agent._native_for_calls()
        native.call(proxy._tool, proxy._index, _json.encode(dict(arguments)), _current.get(), _call_headers.get(), self._future,
                    self._updates.put_nowait)
        # Core hands over every report before the result, on this loop: the end comes last.
        self._future.add_done_callback(lambda _: self._updates.put_nowait(None))
        self._ended = False

    def __aiter__(self) -> "StreamedCall":
        return self

    async def __anext__(self) -> "Progress | LogMessage":
        if self._ended:
            raise StopAsyncIteration
        update = await self._updates.get()
        if update is None:
            self._ended = True
            raise StopAsyncIteration
        fields = json.loads(update)
        if fields.pop("kind") == "progress":
            return Progress(**fields)
        return LogMessage(**fields)

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        return json.loads(await self._future)
