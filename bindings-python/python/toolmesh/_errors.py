"""The mesh's error model as Python exceptions.

Every error comes from core with a stable numeric code and name; the class is picked by the
code's group, so ``except toolmesh.DiscoveryError`` catches every 3xxx error.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from . import _native


class ToolmeshError(Exception):
    """A toolmesh error: ``code`` (int), ``name`` (e.g. ``"DEPENDENCY_UNRESOLVED"``), ``message``."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message

    def __str__(self) -> str:
        # The same text as core's Display, so every language prints an error the same way.
        return f"[{self.code} {self.name}] {self.message}"

    def __reduce__(self):  # keep pickling (multiprocessing, concurrent.futures) working
        return (type(self), (self.code, self.name, self.message))


class ConfigError(ToolmeshError):
    """1xxx: a configuration value, file or address is wrong."""


class TlsError(ToolmeshError):
    """2xxx: a certificate or TLS handshake problem."""


class DiscoveryError(ToolmeshError):
    """3xxx: the registry or a dependency's providers cannot be found."""


class TransportError(ToolmeshError):
    """4xxx: the connection to a peer failed."""


class TimeoutError(TransportError):  # noqa: A001 - toolmesh.TimeoutError, as the API names it
    """4002: a call did not complete before its deadline."""


class RemoteToolError(ToolmeshError):
    """5xxx: the remote tool ran and failed, or rejected the call."""


class ToolError(RemoteToolError):
    """5005 ``TOOL_ERROR``: a tool's own error, an expected failure of its domain.

    Raise it in a handler — ``raise toolmesh.ToolError("unknown_sku", f"no such sku: {sku}",
    data={"sku": sku})`` — and every caller, in every language, gets code 5005 with this
    ``app_code``, ``message`` (word for word) and ``data`` (any JSON value, or ``None``). A caller
    catches it as ``toolmesh.ToolError``; re-raising it from a handler passes it on intact. The
    application code is 1 to 64 characters among ``A-Z a-z 0-9 _ . : -``; the core refuses any
    other (the caller then gets 5001 ``TOOL_FAILED`` saying why). No traceback is logged for it:
    it is an answer, not a bug.
    """

    CODE = 5005
    NAME = "TOOL_ERROR"

    def __init__(self, app_code: str, message: str, data: Any = None) -> None:
        super().__init__(self.CODE, self.NAME, message)
        self.args = (app_code, message, data)
        self.app_code = app_code
        self.data = data

    def __str__(self) -> str:
        return f"[{self.code} {self.name} {self.app_code}] {self.message}"

    def __reduce__(self):  # keep pickling working
        return (type(self), (self.app_code, self.message, self.data))


class HandlerError(ToolmeshError):
    """6xxx: a local tool handler failed."""


class AuthorizationError(ToolmeshError):
    """7xxx: policy refused a call, a registration or an origin, or a limit was reached."""


class RateLimitedError(AuthorizationError):
    """7002: a rate or concurrency limit of the callee's policy was reached; retry later."""


# The classes core's rule (error_class) names, by name.
_CLASSES: dict[str, type[ToolmeshError]] = {
    cls.__name__: cls
    for cls in (ToolmeshError, ConfigError, TlsError, DiscoveryError, TransportError, TimeoutError, RemoteToolError,
                HandlerError, AuthorizationError, RateLimitedError)
}


def error_from_native(
    code: int, name: str, message: str, app_code: Optional[str] = None, data_json: Optional[str] = None
) -> ToolmeshError:
    """Builds the exception for a core error (called by the native module)."""
    if app_code is not None:
        return ToolError(app_code, message, None if data_json is None else json.loads(data_json))
    return _CLASSES[_native.error_class(code)](code, name, message)
