"""The exception hierarchy, and errors that come from core unchanged."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys

import pytest

import toolmesh
from toolmesh._errors import error_from_native


@pytest.mark.parametrize(
    ("code", "name", "cls"),
    [
        (1004, "REGISTRY_URL_NOT_HTTPS", toolmesh.ConfigError),
        (2002, "CERTIFICATE_EXPIRED", toolmesh.TlsError),
        (3001, "DEPENDENCY_UNRESOLVED", toolmesh.DiscoveryError),
        (4001, "CONNECT_FAILED", toolmesh.TransportError),
        (4002, "TIMEOUT", toolmesh.TimeoutError),
        (5001, "TOOL_FAILED", toolmesh.RemoteToolError),
        (6001, "HANDLER_FAILED", toolmesh.HandlerError),
        (7001, "CALL_DENIED", toolmesh.AuthorizationError),
        (7002, "RATE_LIMITED", toolmesh.RateLimitedError),
        (9001, "INTERNAL", toolmesh.ToolmeshError),
    ],
)
def test_codes_map_to_their_group_class(code: int, name: str, cls: type) -> None:
    error = error_from_native(code, name, "what happened")
    assert type(error) is cls
    assert isinstance(error, toolmesh.ToolmeshError)
    assert (error.code, error.name, error.message) == (code, name, "what happened")
    assert str(error) == f"[{code} {name}] what happened"


def test_a_tool_error_carries_its_application_code_and_data() -> None:
    error = error_from_native(5005, "TOOL_ERROR", "no such sku: X", "unknown_sku", '{"sku": "X"}')
    assert type(error) is toolmesh.ToolError and isinstance(error, toolmesh.RemoteToolError)
    assert (error.code, error.name, error.app_code, error.message, error.data) == (
        5005, "TOOL_ERROR", "unknown_sku", "no such sku: X", {"sku": "X"})
    assert str(error) == "[5005 TOOL_ERROR unknown_sku] no such sku: X"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.app_code, copy.data, str(copy)) == (toolmesh.ToolError, "unknown_sku", {"sku": "X"}, str(error))
    raised = toolmesh.ToolError("out_of_stock", "none left")
    assert (raised.code, raised.app_code, raised.data) == (5005, "out_of_stock", None)


def test_timeout_is_a_transport_error_and_errors_survive_pickling() -> None:
    error = error_from_native(4002, "TIMEOUT", "no answer within 10 ms")
    assert isinstance(error, toolmesh.TransportError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is toolmesh.TimeoutError and str(copy) == str(error)


def start(name: str = "errors", **options: object) -> toolmesh.Agent:
    async def go() -> toolmesh.Agent:
        agent = toolmesh.Agent(name, **options)
        agent.tool(lambda: 1, name="one")
        return await agent.start()

    return asyncio.run(asyncio.wait_for(go(), 30))


def test_bad_options_raise_config_errors_from_core() -> None:
    with pytest.raises(toolmesh.ConfigError) as raised:
        start(registry_url="http://127.0.0.1:1")
    assert (raised.value.code, raised.value.name) == (1004, "REGISTRY_URL_NOT_HTTPS")

    with pytest.raises(toolmesh.ConfigError, match=r"^\[1001 INVALID_CONFIG\] unknown option 'colour'"):
        start(colour="blue")

    with pytest.raises(toolmesh.ConfigError, match="port 'http' is not a number"):
        start(port="http")


def test_environment_options_are_read_by_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLMESH_CALL_TIMEOUT_MS", "soon")
    with pytest.raises(toolmesh.ConfigError, match="environment variable TOOLMESH_CALL_TIMEOUT_MS"):
        start()


def test_a_missing_identity_says_how_to_create_one(tmp_path) -> None:
    with pytest.raises(toolmesh.ConfigError) as raised:
        start("lonely")
    assert raised.value.name == "CERTIFICATE_FILE"
    assert "TOOLMESH_TLS_CERT" in raised.value.message and "toolmesh certs init" in raised.value.message

    with pytest.raises(toolmesh.ConfigError, match="CERTIFICATE_FILE"):
        start("lonely", tls_cert=tmp_path / "none.pem", tls_key=tmp_path / "none.key", tls_ca=tmp_path / "ca.pem")


def test_invalid_tools_are_refused_by_core() -> None:
    with pytest.raises(toolmesh.ConfigError, match="tool name 'no spaces' is not valid"):
        async def go() -> None:
            agent = toolmesh.Agent("errors")
            agent.tool(lambda: 1, name="no spaces")
            await agent.start()

        asyncio.run(go())


def test_run_reports_a_start_up_error_and_exits_2_every_time(tmp_path) -> None:
    """The interpreter exits while the dispatch thread may still be settling the failed start:
    exiting must never crash (it once did, about every other time)."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import toolmesh\n"
        "toolmesh.tool(lambda: 1, name='one')\n"
        f"toolmesh.run(name='broken', tls_cert={str(tmp_path / 'none.pem')!r}, tls_key='k', tls_ca='c')\n"
    )
    for _ in range(10):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("toolmesh: error [1002 CERTIFICATE_FILE]: cannot read"), done.stderr
