"""Resources and prompts: the ``@resource``/``@prompt`` declarations and how their functions'
answers become MCP's JSON. Core checks the declarations (at start) and the answers (at each
read or get); this module only maps Python idioms onto MCP's member names."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import functools
import inspect
import typing
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

from ._content import CONTENT_TYPES, ContentItem, EmbeddedResource, InputRequired, _base64, content_item


async def _run(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Runs ``fn`` as a tool runs: coroutines on the loop, plain functions in a worker thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    call = functools.partial(contextvars.copy_context().run, fn, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


def _optional_members(**members: Any) -> dict[str, Any]:
    return {key: value for key, value in members.items() if value is not None}


def _choices(fn: Optional[Callable[..., Any]]) -> dict[str, list[str]]:
    """The values each parameter of ``fn`` may take, where its annotation says (``Literal`` of
    strings, or a ``str``-valued ``Enum``): what core offers to ``completion/complete``."""
    try:
        hints = typing.get_type_hints(fn) if fn is not None else {}
    except Exception:  # an annotation that does not resolve offers nothing to complete
        return {}
    choices: dict[str, list[str]] = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is Literal:
            values = [value for value in typing.get_args(hint) if isinstance(value, str)]
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            values = [member.value for member in hint if isinstance(member.value, str)]
        else:
            continue
        if values:
            choices[name] = values
    return choices


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """A declared resource (``uri``) or resource template (a ``uri`` with ``{variables}``).
    ``fn`` reads it; a static resource has ``text`` or ``blob`` instead, served by core."""

    uri: str
    name: str
    fn: Optional[Callable[..., Any]] = None
    title: Optional[str] = None
    description: Optional[str] = None
    mime_type: Optional[str] = None
    size: Optional[int] = None
    annotations: Optional[Mapping[str, Any]] = None
    text: Optional[str] = None
    blob: Optional[bytes] = None

    @property
    def is_template(self) -> bool:
        # A literal brace is not allowed in a URI, so braces can only be RFC 6570 variables.
        return "{" in self.uri

    def info(self) -> dict[str, Any]:
        """The entry of core's catalog JSON (``resources`` or ``resourceTemplates``)."""
        entry = {"uriTemplate" if self.is_template else "uri": self.uri, "name": self.name}
        entry.update(_optional_members(title=self.title, description=self.description, mimeType=self.mime_type,
                                       size=self.size, text=self.text))
        if self.annotations:
            entry["annotations"] = dict(self.annotations)
        if self.blob is not None:
            entry["blob"] = _base64(self.blob)
        if self.is_template:
            completions = {name: values for name, values in _choices(self.fn).items() if "{" + name + "}" in self.uri}
            if completions:
                entry["completions"] = completions
        return entry

    async def read(self, uri: str, variables: Mapping[str, str]) -> dict[str, Any]:
        """Calls the reader with the template's variables (and ``uri`` if it takes one) and
        returns its answer as a ``ReadResourceResult``."""
        assert self.fn is not None  # core reads static resources itself
        kwargs = dict(variables)
        if "uri" in inspect.signature(self.fn).parameters:
            kwargs["uri"] = uri
        return self._read_result(uri, await _run(self.fn, kwargs))

    def _read_result(self, uri: str, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return dict(value)  # a ReadResourceResult written out; core checks it
        if isinstance(value, str):
            return {"contents": [{"uri": uri, **_optional_members(mimeType=self.mime_type), "text": value}]}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"contents": [{"uri": uri, **_optional_members(mimeType=self.mime_type), "blob": _base64(value)}]}
        items = [value] if isinstance(value, EmbeddedResource) else value
        if isinstance(items, (list, tuple)) and all(isinstance(item, EmbeddedResource) for item in items):
            return {"contents": [item.contents() for item in items]}
        raise TypeError(
            f"resource {uri!r}: a reader returns str, bytes, toolmesh.EmbeddedResource (or a list of them) "
            f"or a ReadResourceResult dict, not {type(value).__name__}"
        )


def declare_resource(
    uri: str,
    fn: Optional[Callable[..., Any]] = None,
    *,
    name: Optional[str] = None,
    title: Optional[str] = None,
    description: Optional[str] = None,
    mime_type: Optional[str] = None,
    size: Optional[int] = None,
    annotations: Optional[Mapping[str, Any]] = None,
    text: Optional[str] = None,
    blob: Optional[bytes] = None,
) -> ResourceSpec:
    if not isinstance(uri, str):
        raise TypeError(f"a resource's URI is a str, e.g. @toolmesh.resource('file:///notes.txt'), not {uri!r}")
    if fn is None and text is None and blob is None:
        raise TypeError(f"resource {uri!r} needs a reader function (@toolmesh.resource) or text= or blob= content")
    if fn is not None and not callable(fn):
        raise TypeError(f"@toolmesh.resource decorates a function, not {fn!r}")
    if name is None:
        name = fn.__name__ if fn is not None else uri
    if description is None and fn is not None and fn.__doc__:
        description = inspect.cleandoc(fn.__doc__)
    return ResourceSpec(uri=uri, name=name, fn=fn, title=title, description=description, mime_type=mime_type, size=size,
                        annotations=annotations, text=text, blob=blob)


@dataclasses.dataclass(frozen=True)
class PromptMessage:
    """One message of a prompt: ``role`` is ``"user"`` or ``"assistant"``; ``content`` a str
    (text) or a content item (``toolmesh.Image``, ``EmbeddedResource``, ...)."""

    role: str
    content: Union[str, ContentItem]

    def to_mcp(self) -> dict[str, Any]:
        return {"role": self.role, "content": content_item(self.content)}


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    """A declared prompt; its arguments are the function's parameters (strings; required
    unless they have a default)."""

    fn: Callable[..., Any]
    name: str
    title: Optional[str]
    description: str
    arguments: tuple[tuple[str, bool], ...]

    def info(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name}
        entry.update(_optional_members(title=self.title, description=self.description or None))
        choices = _choices(self.fn)
        entry["arguments"] = [{"name": name, "required": required, **({"completions": choices[name]} if name in choices else {})}
                              for name, required in self.arguments]
        return entry

    async def get(self, arguments: Mapping[str, str]) -> dict[str, Any]:
        """Calls the function with the arguments (core checked them) and returns its answer
        as a ``GetPromptResult``."""
        return _prompt_result(self.name, await _run(self.fn, arguments))


def _prompt_result(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, InputRequired):
        return value.to_mcp()  # asks the client first (2026-07-28); core seals the state
    if isinstance(value, Mapping):
        return dict(value)  # a GetPromptResult written out; core checks it
    items: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
    messages = []
    for item in items:
        if isinstance(item, PromptMessage):
            messages.append(item.to_mcp())
        elif isinstance(item, (str, *CONTENT_TYPES)):
            messages.append({"role": "user", "content": content_item(item)})
        else:
            raise TypeError(
                f"prompt {name!r}: a prompt returns str, a content item, toolmesh.PromptMessage (or a list of them) "
                f"or a GetPromptResult dict, not {type(item).__name__}"
            )
    return {"messages": messages}


def declare_prompt(
    fn: Callable[..., Any], *, name: Optional[str] = None, title: Optional[str] = None, description: Optional[str] = None
) -> PromptSpec:
    if not callable(fn):
        raise TypeError(f"@toolmesh.prompt decorates a function, not {fn!r}")
    parameters = inspect.signature(fn).parameters.values()
    arguments = tuple(
        (p.name, p.default is inspect.Parameter.empty)
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    return PromptSpec(fn=fn, name=name or fn.__name__, title=title, description=inspect.cleandoc(description or fn.__doc__ or ""),
                      arguments=arguments)


def catalog_info(resources: Sequence[ResourceSpec], prompts: Sequence[PromptSpec]) -> dict[str, Any]:
    """Core's catalog JSON: ``{"resources", "resourceTemplates", "prompts"}``."""
    return {
        "resources": [r.info() for r in resources if not r.is_template],
        "resourceTemplates": [r.info() for r in resources if r.is_template],
        "prompts": [p.info() for p in prompts],
    }
