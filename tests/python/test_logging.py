"""Core's log lines reach an agent written with the bindings: on stderr, chosen by TOOLMESH_LOG
(then RUST_LOG), and by default only warnings, so a failing registry is visible in production."""

from __future__ import annotations

import re
import socket
import threading

import pytest
from meshkit import Mesh, Registry, call_tool, wait_until

# tracing-subscriber's plain format: "<time>  LEVEL target: message".
CORE_LINE = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR) (toolmesh_core::\S+): (.*)$", re.MULTILINE)


def core_lines(text: str) -> list[tuple[str, str, str]]:
    return CORE_LINE.findall(text)


@pytest.fixture
def no_log_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents inherit the test's environment: make sure neither variable comes from it."""
    monkeypatch.delenv("TOOLMESH_LOG", raising=False)
    monkeypatch.delenv("RUST_LOG", raising=False)


def unused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{probe.getsockname()[1]}"


def test_toolmesh_log_debug_shows_registration_and_calls(mesh: Mesh, registry: Registry, no_log_env: None) -> None:
    agent = mesh.start_agent("back.py", "back", registry, {"TOOLMESH_LOG": "debug"})
    stderr = agent.process.stderr_path
    wait_until(lambda: any(level == "INFO" and msg.startswith("registered") for level, _, msg in core_lines(stderr.read_text())) or None,
               20, "core's 'registered' info line on the agent's stderr")
    assert call_tool(agent.endpoint, mesh.certs.client_context(), "add", {"a": 2, "b": 3}) == 5
    wait_until(lambda: any(level == "DEBUG" and "tools/call" in msg for level, _, msg in core_lines(stderr.read_text())) or None,
               20, "core's 'tools/call' debug line on the agent's stderr")
    text = stderr.read_text()
    assert "PRIVATE KEY" not in text, text
    assert "\x1b[" not in text, "no colours when stderr is not a terminal"


class SilentRegistry:
    """A registry address that accepts connections and closes them at once, counting them: a
    registration that is tried and fails (with a warning, at the default level)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            connection.close()
            self.connections += 1

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("registry_kind", ["unused port", "silent registry"])
def test_by_default_a_warning_shows_and_nothing_chattier(mesh: Mesh, no_log_env: None, registry_kind: str) -> None:
    silent = SilentRegistry() if registry_kind == "silent registry" else None
    unreachable = Registry(None, silent.url if silent else unused_url())  # type: ignore[arg-type]
    try:
        agent = mesh.start_agent("back.py", "back", unreachable)
        stderr = agent.process.stderr_path
        try:
            # Other warnings may come first (the span exporter finding the same registry dead).
            warning = wait_until(
                lambda: next((line for line in core_lines(stderr.read_text())
                              if line[0] == "WARN" and line[2].startswith("cannot register with the registry")), None),
                20, "core's 'cannot register' warning on the agent's stderr")
        except AssertionError as timed_out:
            tried = f"; the registry saw {silent.connections} connections" if silent else ""
            raise AssertionError(f"{timed_out}{tried}\n{agent.process.output()}") from None
    finally:
        if silent:
            silent.close()
    assert unreachable.url in warning[2], warning
    assert {level for level, _, _ in core_lines(stderr.read_text())} == {"WARN"}, stderr.read_text()


def test_toolmesh_log_wins_over_rust_log(mesh: Mesh, no_log_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUST_LOG", "debug")
    silent = SilentRegistry()
    try:
        agent = mesh.start_agent("back.py", "back", Registry(None, silent.url), {"TOOLMESH_LOG": "error"})  # type: ignore[arg-type]
        # A second attempt comes only after the first failed, whose warning (and RUST_LOG's debug
        # lines) would be on stderr by then: the silence below is the filter's, not the agent's.
        wait_until(lambda: silent.connections >= 2, 20, "the agent trying to register twice")
        assert agent.process.popen.poll() is None, agent.process.output()
        assert core_lines(agent.process.stderr_path.read_text()) == [], agent.process.output()
    finally:
        silent.close()
