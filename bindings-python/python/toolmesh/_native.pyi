"""Type stub of the native module (src/*.rs). JSON crosses as str; asynchronous results arrive
through the asyncio future passed in, settled on that future's own loop."""

import asyncio
from typing import Any, Callable, Optional

class RequestContext:
    headers: dict[str, str]
    trace_id: Optional[str]
    span_id: Optional[str]
    sampled: bool
    traceparent: Optional[str]
    tracestate: Optional[str]
    remaining_ms: Optional[int]
    caller: Optional[str]
    client_capabilities_json: Optional[str]
    input_json: Optional[str]
    cancelled: bool
    def report_progress(self, progress: float, total: Optional[float] = None, message: Optional[str] = None) -> bool: ...
    def log_json(self, level: str, data_json: str, logger: Optional[str] = None) -> bool: ...
    def on_cancel(self, callback: Callable[[], Any], event_loop: asyncio.AbstractEventLoop) -> None: ...

class Responder:
    def ok(self, result_json: str) -> None: ...
    def ok_result(self, call_tool_result_json: str) -> None: ...
    def fail(self, message: str) -> None: ...
    def fail_mesh(self, code: int, message: str) -> None: ...
    def fail_tool_error(self, app_code: str, message: str, data_json: Optional[str] = None) -> None: ...
    def fail_tool_error_data_not_json(self, app_code: str, reason: str) -> None: ...
    def not_json(self, reason: str) -> None: ...
    def argument_not_decoded(self, argument: str, type_name: str, reason: str) -> None: ...

class NativeAgent:
    agent_id: str
    endpoint: str
    port: int
    ready_line: str
    def call(
        self,
        tool: str,
        dependency: int,
        arguments_json: str,
        context: Optional[RequestContext],
        call_headers: tuple[tuple[str, str], ...],
        future: asyncio.Future[str],
        on_notification: Optional[Callable[[str], None]] = None,
        whole: bool = False,
    ) -> None: ...
    def stop(self, future: asyncio.Future[None]) -> None: ...

def start(
    name: str,
    options: list[tuple[str, str]],
    tools_json: str,
    catalog_json: str,
    on_invoke: Callable[[str, str, RequestContext, Responder], Any],
    on_catalog: Callable[[str, RequestContext, Responder], Any],
    future: asyncio.Future[NativeAgent],
) -> None: ...
def close_dispatch() -> None: ...
def install_bridge(
    run_batch: Callable[[list[tuple[Callable[..., Any], tuple[Any, ...]]]], None],
    settle_future: Callable[[asyncio.Future[Any], Any, Optional[BaseException]], None],
    error_from_native: Callable[..., BaseException],
) -> None: ...
def assign_proxy_parameters(parameters: list[str], capabilities: list[str]) -> Optional[list[int]]: ...
def error_class(code: int) -> str: ...
def start_failure(code: int, name: str, message: str) -> tuple[str, int]: ...
