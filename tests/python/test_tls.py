"""Who may talk to an agent: only clients holding a certificate from the mesh CA, over TLS."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import Chain
from meshkit import Certs, call_tool, certs_init


def address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "", parts.port or 0


def test_the_operator_certificate_is_accepted(certs: Certs, chain: Chain) -> None:
    assert call_tool(chain.back.endpoint, certs.client_context(), "add", {"a": 20, "b": 22}) == 42


def test_a_client_without_a_certificate_is_refused(certs: Certs, chain: Chain) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        call_tool(chain.back.endpoint, certs.client_context(None), "add", {"a": 1, "b": 2})


def test_a_certificate_from_another_ca_is_refused(certs: Certs, chain: Chain, tmp_path: Path) -> None:
    foreign = certs_init(tmp_path / "foreign", ["intruder"])
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.ca))  # trusts the agent...
    context.load_cert_chain(str(foreign.pem("operator")), str(foreign.key("operator")))  # ...which must not trust us
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        call_tool(chain.back.endpoint, context, "add", {"a": 1, "b": 2})


def test_the_client_refuses_an_agent_from_another_ca(certs: Certs, chain: Chain, tmp_path: Path) -> None:
    foreign = certs_init(tmp_path / "foreign", [])
    with pytest.raises(ssl.SSLCertVerificationError):
        call_tool(chain.back.endpoint, foreign.client_context(), "add", {"a": 1, "b": 2})


def test_plaintext_http_gets_a_clear_answer(chain: Chain) -> None:
    host, port = address(chain.back.endpoint)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", "/mcp", body="{}", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()
    assert response.status == 400
    assert "TLS" in body, body
