"""Rich tool results: MCP content items as Python objects.

A handler that returns a ``ToolResult``, one content item or a list of content items is answered
in MCP's ``CallToolResult`` shape; core reads and checks that JSON (a refusal names the item at
fault). The only thing done here is turning bytes into base64 (standard alphabet, padded), and back for
a dependency's result (``Proxy.call_result``): members MCP adds that a class does not model
(``_meta``, ``icons``...) ride along in ``extra``, so such a result passes on unchanged.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, Mapping, Optional, Sequence, Union


def _base64(data: bytes) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"binary content is bytes, not {type(data).__name__}")
    return base64.b64encode(bytes(data)).decode("ascii")


def _with_annotations(item: dict[str, Any], annotations: Optional[Mapping[str, Any]],
                      extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    if annotations:
        item["annotations"] = dict(annotations)
    for key, value in (extra or {}).items():
        item.setdefault(key, value)
    return item


def _extra() -> Any:
    """The ``extra`` field: MCP members the class does not model, sent as they are."""
    return dataclasses.field(default=None, repr=False, kw_only=True)


def _rest(item: Mapping[str, Any], modelled: tuple[str, ...]) -> Optional[dict[str, Any]]:
    rest = {key: value for key, value in item.items() if key not in modelled}
    return rest or None


@dataclasses.dataclass(frozen=True)
class Text:
    """A text content item."""

    text: str
    annotations: Optional[Mapping[str, Any]] = None
    extra: Optional[Mapping[str, Any]] = _extra()

    def to_mcp(self) -> dict[str, Any]:
        return _with_annotations({"type": "text", "text": self.text}, self.annotations, self.extra)


@dataclasses.dataclass(frozen=True)
class Image:
    """An image content item: ``toolmesh.Image(png_bytes, "image/png")``."""

    data: bytes
    mime_type: str
    annotations: Optional[Mapping[str, Any]] = None
    extra: Optional[Mapping[str, Any]] = _extra()

    def to_mcp(self) -> dict[str, Any]:
        item = {"type": "image", "data": _base64(self.data), "mimeType": self.mime_type}
        return _with_annotations(item, self.annotations, self.extra)


@dataclasses.dataclass(frozen=True)
class Audio:
    """An audio content item: ``toolmesh.Audio(wav_bytes, "audio/wav")``."""

    data: bytes
    mime_type: str
    annotations: Optional[Mapping[str, Any]] = None
    extra: Optional[Mapping[str, Any]] = _extra()

    def to_mcp(self) -> dict[str, Any]:
        item = {"type": "audio", "data": _base64(self.data), "mimeType": self.mime_type}
        return _with_annotations(item, self.annotations, self.extra)


@dataclasses.dataclass(frozen=True)
class ResourceLink:
    """A link to a resource the client may read: ``toolmesh.ResourceLink("file:///a.txt", "a.txt")``."""

    uri: str
    name: str
    title: Optional[str] = None
    description: Optional[str] = None
    mime_type: Optional[str] = None
    size: Optional[int] = None
    annotations: Optional[Mapping[str, Any]] = None
    extra: Optional[Mapping[str, Any]] = _extra()

    def to_mcp(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "resource_link", "uri": self.uri, "name": self.name}
        for key, value in (("title", self.title), ("description", self.description), ("mimeType", self.mime_type),
                           ("size", self.size)):
            if value is not None:
                item[key] = value
        return _with_annotations(item, self.annotations, self.extra)


@dataclasses.dataclass(frozen=True)
class EmbeddedResource:
    """A resource's contents, embedded: ``text=`` or ``blob=`` (bytes), not both. Also what a
    ``@toolmesh.resource`` reader may return, one or a list of them."""

    uri: str
    text: Optional[str] = None
    blob: Optional[bytes] = None
    mime_type: Optional[str] = None
    annotations: Optional[Mapping[str, Any]] = None
    extra: Optional[Mapping[str, Any]] = _extra()
    #: Members of the inner ``resource`` object not modelled here (its ``_meta``...).
    resource_extra: Optional[Mapping[str, Any]] = _extra()

    def contents(self) -> dict[str, Any]:
        """The ``{uri, mimeType?, text | blob}`` object (a ``ReadResourceResult`` item)."""
        contents: dict[str, Any] = {"uri": self.uri}
        if self.mime_type is not None:
            contents["mimeType"] = self.mime_type
        if self.text is not None:
            contents["text"] = self.text
        if self.blob is not None:
            contents["blob"] = _base64(self.blob)
        for key, value in (self.resource_extra or {}).items():
            contents.setdefault(key, value)
        return contents

    def to_mcp(self) -> dict[str, Any]:
        return _with_annotations({"type": "resource", "resource": self.contents()}, self.annotations, self.extra)


ContentItem = Union[Text, Image, Audio, ResourceLink, EmbeddedResource]
CONTENT_TYPES = (Text, Image, Audio, ResourceLink, EmbeddedResource)


def content_item(item: Union[str, ContentItem]) -> dict[str, Any]:
    """One content item as MCP's JSON; a ``str`` is a text item."""
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, CONTENT_TYPES):
        return item.to_mcp()
    raise TypeError(
        f"a content item is a str, toolmesh.Text, Image, Audio, ResourceLink or EmbeddedResource, not {type(item).__name__}"
    )


def content_from_mcp(item: Mapping[str, Any]) -> ContentItem:
    """One content item of MCP's JSON (as core checked it) as its class."""
    kind = item.get("type")
    if kind == "text":
        return Text(item["text"], item.get("annotations"), extra=_rest(item, ("type", "text", "annotations")))
    if kind in ("image", "audio"):
        cls = Image if kind == "image" else Audio
        return cls(base64.b64decode(item["data"]), item["mimeType"], item.get("annotations"),
                   extra=_rest(item, ("type", "data", "mimeType", "annotations")))
    if kind == "resource_link":
        return ResourceLink(item["uri"], item["name"], item.get("title"), item.get("description"), item.get("mimeType"),
                            item.get("size"), item.get("annotations"),
                            extra=_rest(item, ("type", "uri", "name", "title", "description", "mimeType", "size",
                                               "annotations")))
    if kind == "resource":
        resource = item["resource"]
        blob = resource.get("blob")
        return EmbeddedResource(resource["uri"], resource.get("text"), None if blob is None else base64.b64decode(blob),
                                resource.get("mimeType"), item.get("annotations"),
                                extra=_rest(item, ("type", "resource", "annotations")),
                                resource_extra=_rest(resource, ("uri", "text", "blob", "mimeType")))
    raise ValueError(f"unknown content type {kind!r} (text, image, audio, resource_link, resource)")


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """A tool's answer in MCP's ``CallToolResult`` shape: ``content`` items (``str`` is text),
    ``structured`` (any JSON value: the ``structuredContent``) and ``is_error`` (a failure the
    tool words itself; not a mesh error)."""

    content: Sequence[Union[str, ContentItem]] = ()
    structured: Any = None
    is_error: bool = False

    @classmethod
    def from_mcp(cls, result: Mapping[str, Any]) -> "ToolResult":
        """A ``CallToolResult`` of MCP's JSON, each content item as its class."""
        return cls(content=[content_from_mcp(item) for item in result.get("content", [])],
                   structured=result.get("structuredContent"), is_error=bool(result.get("isError", False)))

    def to_mcp(self) -> dict[str, Any]:
        if isinstance(self.content, (str, bytes)) or not isinstance(self.content, Sequence):
            raise TypeError("ToolResult(content=...) is a list of content items")
        result: dict[str, Any] = {"content": [content_item(item) for item in self.content]}
        if self.structured is not None:
            result["structuredContent"] = self.structured
        if self.is_error:
            result["isError"] = True
        return result


@dataclasses.dataclass(frozen=True)
class InputRequired:
    """Asks the MCP client for input instead of answering (MCP 2026-07-28): ``requests`` by key,
    each MCP's request (``{"method": "elicitation/create", "params": {...}}``, or
    ``sampling/createMessage``, ``roots/list``), and ``state``, any JSON value the next call gets
    back (core seals it, so the client can neither read nor change it). The client calls the tool
    again with its answers: ``toolmesh.context().input_responses`` and ``.request_state``."""

    requests: Mapping[str, Mapping[str, Any]]
    state: Any = None

    def to_mcp(self) -> dict[str, Any]:
        if not isinstance(self.requests, Mapping):
            raise TypeError("InputRequired(requests=...) is a dict of MCP requests by key")
        result: dict[str, Any] = {
            "resultType": "input_required",
            "inputRequests": {key: dict(request) for key, request in self.requests.items()},
        }
        if self.state is not None:
            result["requestState"] = self.state
        return result


def as_tool_result(value: Any) -> Optional[Union[ToolResult, InputRequired]]:
    """The MCP document a handler's return value stands for: a ToolResult or InputRequired
    itself, one content item, or a non-empty list of content items; None for a plain value
    (answered as today)."""
    if isinstance(value, (ToolResult, InputRequired)):
        return value
    if isinstance(value, CONTENT_TYPES):
        return ToolResult(content=[value])
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, CONTENT_TYPES) for item in value):
        return ToolResult(content=list(value))
    return None
