"""Agents: a set of tools served by one native core agent on an asyncio loop."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import weakref
from typing import Any, Callable, Iterable, Optional, TypeVar

from . import _json, _native
from ._catalog import PromptSpec, ResourceSpec, catalog_info, declare_prompt, declare_resource
from ._content import as_tool_result
from ._context import _current
from ._errors import ToolError, ToolmeshError
from ._tools import ArgumentNotDecoded, Proxy, ToolSpec, declare, dependency_capability

F = TypeVar("F", bound=Callable[..., Any])

_log = logging.getLogger("toolmesh")

# Tools declared with the module-level ``@toolmesh.tool``; ``toolmesh.run``/``start`` serve them.
_default_tools: list[ToolSpec] = []
# Resources and prompts declared with ``@toolmesh.resource``/``@toolmesh.prompt``/``toolmesh.add_resource``.
_default_resources: list[ResourceSpec] = []
_default_prompts: list[PromptSpec] = []


class Agent:
    """One mesh agent: its tools, its options, and once started, the native agent serving them.

    Options are core's (``registry_url``, ``tls_cert``, ``tls_key``, ``tls_ca``, ``host``,
    ``advertise_host``, ``port``, ``propagate_headers``, ``heartbeat_interval_ms``,
    ``call_timeout_ms``) and override the ``TOOLMESH_*`` environment; core validates them.
    """

    def __init__(self, name: str, *, tools: Iterable[ToolSpec] = (), resources: Iterable[ResourceSpec] = (),
                 prompts: Iterable[PromptSpec] = (), **options: Any) -> None:
        self.name = name
        self._tools: list[ToolSpec] = list(tools)
        self._resources: list[ResourceSpec] = list(resources)
        self._prompts: list[PromptSpec] = list(prompts)
        self._readers: dict[str, ResourceSpec] = {}
        self._prompt_specs: dict[str, PromptSpec] = {}
        self._options = options
        self._native: Optional[_native.NativeAgent] = None
        self._running = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._specs: dict[str, ToolSpec] = {}
        self._proxies: dict[str, dict[str, Proxy]] = {}
        self._handler_tasks: set[asyncio.Task] = set()

    def tool(self, fn: Optional[F] = None, **metadata: Any) -> Any:
        """Declares a tool of this agent; the same arguments as ``toolmesh.tool``."""
        return _decorator(self._tools.append, fn, **metadata)

    def resource(self, uri: str, **metadata: Any) -> Callable[[F], F]:
        """Declares a resource of this agent read by the decorated function; the same arguments
        as ``toolmesh.resource``."""
        return _resource_decorator(self._resources.append, uri, **metadata)

    def add_resource(self, uri: str, **metadata: Any) -> None:
        """Declares a static resource (``text=`` or ``blob=``) of this agent; the same
        arguments as ``toolmesh.add_resource``."""
        self._resources.append(declare_resource(uri, **metadata))

    def prompt(self, fn: Optional[F] = None, **metadata: Any) -> Any:
        """Declares a prompt of this agent; the same arguments as ``toolmesh.prompt``."""
        return _prompt_decorator(self._prompts.append, fn, **metadata)

    @property
    def tools(self) -> list[ToolSpec]:
        return list(self._tools)

    @property
    def agent_id(self) -> str:
        return self._require_native().agent_id

    @property
    def endpoint(self) -> str:
        """``https://host:port/mcp``"""
        return self._require_native().endpoint

    @property
    def port(self) -> int:
        return self._require_native().port

    def notify_resource_updated(self, uri: str) -> int:
        """Announces that the resource at ``uri`` changed: the MCP clients subscribed to it get
        ``notifications/resources/updated``. Returns how many subscription streams it went out on;
        raises ``ConfigError`` for a URI that is none of this agent's resources."""
        return self._require_native().notify_resource_updated(uri)

    async def start(self) -> "Agent":
        """Starts serving and registers in the background; raises a ``ToolmeshError`` (e.g.
        ``ConfigError``, ``TlsError``) when the options, certificates or tools are wrong."""
        if self._loop is not None:
            raise RuntimeError(f"agent {self.name!r} is already started")
        self._loop = asyncio.get_running_loop()
        self._specs = {spec.name: spec for spec in self._tools}
        self._proxies = {
            spec.name: {
                param: Proxy(self, spec.name, index, dependency_capability(spec.dependencies[index]))
                for param, index in spec.proxy_params.items()
            }
            for spec in self._tools
        }
        # Core hands over the template a read matched, else the declared URI: they are unique
        # (names need not be), so they pick the reader.
        self._readers = {spec.uri: spec for spec in self._resources if spec.fn is not None}
        self._prompt_specs = {spec.name: spec for spec in self._prompts}
        started = self._loop.create_future()
        tools_json = json.dumps([spec.info() for spec in self._tools])
        catalog_json = json.dumps(catalog_info(self._resources, self._prompts))
        try:
            _native.start(self.name, _option_pairs(self._options), tools_json, catalog_json, _weakly(self._on_invoke),
                          _weakly(self._on_catalog), started)
            self._native = await started
            self._running = True
        except BaseException:
            self._loop = None
            raise
        return self

    async def stop(self) -> None:
        """Deregisters, lets in-flight calls finish and stops serving. Idempotent."""
        native = self._native
        if native is None or not self._running:
            return
        stopped = asyncio.get_running_loop().create_future()
        native.stop(stopped)
        await stopped
        # The stopped native agent stays, so a late proxy call gets core's SHUTDOWN error as in
        # every other language; it holds this object only weakly (see `_weakly`).
        self._running = False
        self._loop = None

    async def __aenter__(self) -> "Agent":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    def run(self) -> None:
        """Serves until SIGINT/SIGTERM, then stops cleanly. A start-up error is printed as
        ``toolmesh: error [CODE NAME]: message`` and exits with status 2 (configuration or TLS)
        or 1 (anything else)."""
        try:
            asyncio.run(self._serve_until_signalled())
        except ToolmeshError as error:
            line, status = _native.start_failure(error.code, error.name, error.message)
            print(line, file=sys.stderr, flush=True)
            raise SystemExit(status) from None

    async def _serve_until_signalled(self) -> None:
        # Handlers first: a signal sent right after the ready line must stop the agent cleanly.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        try:
            # One write: print() writes the text and its newline apart, and core's log lines,
            # written to the same stderr from other threads, could land between them.
            sys.stderr.write(f"{self._require_native().ready_line}\n")
            sys.stderr.flush()
            sys.stdout.flush()
            await stop.wait()
        finally:
            await self.stop()

    def _require_native(self) -> _native.NativeAgent:
        if self._native is None or not self._running:
            raise RuntimeError(f"agent {self.name!r} is not running; start it with `await agent.start()`")
        return self._native

    def _native_for_calls(self) -> _native.NativeAgent:
        """The native agent, stopped or not: core answers calls on a stopped one with SHUTDOWN."""
        if self._native is None:
            raise RuntimeError(f"agent {self.name!r} is not started; start it with `await agent.start()`")
        return self._native

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"agent {self.name!r} is not running")
        return self._loop

    def _on_invoke(self, tool: str, arguments_json: str, context: Any, responder: Any) -> None:
        """Called on this agent's loop for every inbound call (from the native dispatch thread)."""
        task = asyncio.get_running_loop().create_task(self._answer(tool, arguments_json, context, responder))
        # The loop keeps only weak references to tasks.
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _answer(self, tool: str, arguments_json: str, context: Any, responder: Any) -> None:
        _current.set(context)  # this task's own copy of the context: visible to the handler only
        _cancel_with_request(context)
        spec = self._specs[tool]  # core invokes only the tools it was given, and refuses others itself
        try:
            result = await spec.invoke(json.loads(arguments_json), self._proxies.get(tool, {}))
        except ToolError as error:
            # The tool's own error (or one a proxy call raised, passed on): an answer, not a bug,
            # so no traceback; core logs one line for it, the same in every language.
            try:
                data_json = None if error.data is None else _json.encode(error.data)
            except (TypeError, ValueError) as problem:
                responder.fail_tool_error_data_not_json(error.app_code, str(problem))
                return
            responder.fail_tool_error(error.app_code, error.message, data_json)
            return
        except ArgumentNotDecoded as error:
            # The caller's mistake: core words its INVALID_ARGUMENTS, the same in every language.
            responder.argument_not_decoded(error.argument, error.type_name, error.reason)
            return
        except ToolmeshError as error:
            # A mesh call the handler awaited failed: the caller gets that error, code and all.
            responder.fail_mesh(error.code, error.message)
            return
        except asyncio.CancelledError:
            responder.fail(f"tool {tool!r} was cancelled")
            raise
        except Exception as error:
            # The caller sees the exception's own message, as in every language; its type and
            # traceback stay in this agent's log.
            _log.warning("tool %r raised", tool, exc_info=True)
            responder.fail(str(error))
            return
        rich = as_tool_result(result)
        try:
            payload = _json.encode(result if rich is None else rich.to_mcp())
        except (TypeError, ValueError) as error:
            # Core tells the caller, in the same words as every language, and logs the reason.
            responder.not_json(str(error))
            return
        if rich is None:
            responder.ok(payload)
        else:
            responder.ok_result(payload)  # core checks it; a refusal names the item at fault

    def _on_catalog(self, request_json: str, context: Any, responder: Any) -> None:
        """Called on this agent's loop for every resource read and prompt get core hands over."""
        task = asyncio.get_running_loop().create_task(self._answer_catalog(json.loads(request_json), context, responder))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _answer_catalog(self, request: dict[str, Any], context: Any, responder: Any) -> None:
        _current.set(context)
        _cancel_with_request(context)
        what = f"resource {request.get('uri')!r}" if request["kind"] == "readResource" else f"prompt {request['name']!r}"
        try:
            if request["kind"] == "readResource":
                # core hands over only resources and templates it was given, read by a function
                reader = self._readers[request.get("template") or request["uri"]]
                answer = await reader.read(request["uri"], request["variables"])
            else:
                answer = await self._prompt_specs[request["name"]].get(request["arguments"])
        except ToolmeshError as error:
            responder.fail_mesh(error.code, error.message)
            return
        except asyncio.CancelledError:
            responder.fail(f"{what} was cancelled")
            raise
        except Exception as error:
            _log.warning("%s raised", what, exc_info=True)
            responder.fail(str(error))
            return
        try:
            payload = _json.encode(answer)
        except (TypeError, ValueError) as error:
            responder.not_json(str(error))
            return
        responder.ok(payload)  # core checks the shape; a refusal names the item at fault


def _option_pairs(options: dict[str, Any]) -> list[tuple[str, str]]:
    """Options as the strings core parses: lists are comma-joined, None leaves the default."""
    pairs = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        pairs.append((key, str(value)))
    return pairs


def _decorator(register: Callable[[ToolSpec], None], fn: Optional[F], **metadata: Any) -> Any:
    def decorate(function: F) -> F:
        register(declare(function, **metadata))
        return function

    return decorate(fn) if fn is not None else decorate


def _resource_decorator(register: Callable[[ResourceSpec], None], uri: str, **metadata: Any) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        register(declare_resource(uri, function, **metadata))
        return function

    if callable(uri):
        raise TypeError("@toolmesh.resource takes the URI: @toolmesh.resource('test://template/{id}/data')")
    return decorate


def _prompt_decorator(register: Callable[[PromptSpec], None], fn: Optional[F], **metadata: Any) -> Any:
    def decorate(function: F) -> F:
        register(declare_prompt(function, **metadata))
        return function

    return decorate(fn) if fn is not None else decorate


def resource(uri: str, **metadata: Any) -> Callable[[F], F]:
    """Declares a resource read by the decorated function: ``@toolmesh.resource("file:///notes.txt")``.
    A URI with ``{variables}`` (RFC 6570 level 1) declares a resource template, and each
    variable's value is passed as a keyword argument (a str, as it appears in the URI); a
    parameter named ``uri`` receives the URI read. Keyword arguments: ``name`` (default the
    function's name), ``title``, ``description`` (default the docstring), ``mime_type``, ``size``,
    ``annotations``. The function returns a str (text), bytes (a blob), ``toolmesh.EmbeddedResource``
    items, or a ``ReadResourceResult`` dict; core checks the answer.
    """
    return _resource_decorator(_default_resources.append, uri, **metadata)


def add_resource(uri: str, **metadata: Any) -> None:
    """Declares a static resource, served by core without calling Python: ``text=`` or
    ``blob=`` (bytes), and ``name`` (default the URI), ``mime_type``, ``title``, ..."""
    _default_resources.append(declare_resource(uri, **metadata))


def prompt(fn: Optional[F] = None, **metadata: Any) -> Any:
    """Declares a prompt, bare (``@toolmesh.prompt``) or with ``name``, ``title``, ``description``.
    Its arguments are the function's parameters (strings, required unless they have a default).
    It returns a str (one user message), a content item, ``toolmesh.PromptMessage`` items, or a
    ``GetPromptResult`` dict.
    """
    return _prompt_decorator(_default_prompts.append, fn, **metadata)


def tool(fn: Optional[F] = None, **metadata: Any) -> Any:
    """Declares a tool served by ``toolmesh.run``/``toolmesh.start``; use it bare (``@tool``) or
    with keyword arguments: ``name``, ``capability``, ``version`` (default ``"1.0.0"``),
    ``tags``, ``description``, ``dependencies``, ``timeout_ms``, ``annotations``,
    ``output_schema``, ``required_client_capabilities``, ``input_schema``, ``task_support``.

    ``name`` defaults to the function's name, ``capability`` to the name, ``description`` to
    the docstring. ``dependencies`` are capabilities (``"add"``) or selectors
    (``{"capability": "add", "tags": ["math", "+fast"], "version": ">=1"}``); each is injected
    into a ``toolmesh.Proxy``-annotated parameter. The input schema comes from the type hints,
    unless ``input_schema`` gives one (a JSON Schema dict, served as given: JSON Schema 2020-12
    features, or ``"x-mcp-header": "Region"`` on a property, which modern MCP clients mirror in an
    ``Mcp-Param-Region`` header); the function then takes the arguments as keywords.
    ``annotations`` are MCP's tool annotations, listed by ``tools/list`` and kept by the registry
    (``{"readOnlyHint": True}``, ``{"idempotentHint": True}``, ...): a call to a read-only or
    idempotent tool is also retried on another provider when the connection breaks after the
    provider received it.
    ``output_schema`` (MCP's ``outputSchema``) is a JSON Schema dict or a TypedDict, dataclass or
    pydantic model; every answer's structured content is checked against it.
    ``required_client_capabilities`` (``["sampling"]``, ``"elicitation"``, ``"roots"``): a modern
    MCP client that did not declare one is refused (-32021) before the function runs.
    ``task_support`` (``"optional"``, ``"required"``; MCP's ``execution.taskSupport``): a call from
    a client that negotiated the MCP tasks extension runs as a task, which core keeps and the
    client polls; ``"required"`` refuses other clients (-32021).
    Works on async and plain functions (plain ones run in a worker thread).
    """
    return _decorator(_default_tools.append, fn, **metadata)


def run(name: str, **options: Any) -> None:
    """Serves every ``@toolmesh.tool`` of the program as agent ``name`` until SIGINT/SIGTERM."""
    Agent(name, tools=_default_tools, resources=_default_resources, prompts=_default_prompts, **options).run()


async def start(name: str, **options: Any) -> Agent:
    """Starts an agent serving every ``@toolmesh.tool`` on the running loop; ``await
    agent.stop()`` stops it."""
    return await Agent(name, tools=_default_tools, resources=_default_resources, prompts=_default_prompts,
                       **options).start()


def _weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, held weakly: the native agent keeps its handler, and the handler must not keep
    the Python agent alive (that cycle runs through native code the garbage collector cannot
    see). An invocation arriving after the agent is gone is left unanswered, and core answers
    the caller HANDLER_DROPPED."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        target = ref()
        return None if target is None else target(*args)

    return call


def _cancel_with_request(context: Any) -> None:
    """The running handler task is cancelled (``asyncio.CancelledError`` in the handler) when the
    request it serves is: its caller went away, sent ``notifications/cancelled``, or its deadline
    passed. Core decides when; this only names the task."""
    task = asyncio.current_task()
    if task is None:
        return
    # Weakly: core holds the callback as long as the request's context, which the task's own
    # context variables hold; a strong reference would make a cycle through Rust that Python's
    # collector cannot see, and keep every finished task alive.
    task_ref = weakref.ref(task)

    def cancel() -> None:
        running = task_ref()
        if running is not None:
            running.cancel()

    context.on_cancel(cancel, task.get_loop())
