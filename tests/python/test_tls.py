"""Who may talk to an agent: only clients holding a certificate from the mesh CA, over TLS."""

from __future__ import annotations

import http.client
import socket
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


def tls_alert(endpoint: str, context: ssl.SSLContext) -> str:
    """Connects with ``context`` and returns the TLS alert the agent ends the connection with
    (in TLS 1.3 a refused client certificate is reported after the client's handshake is done).
    Nothing is sent: data the agent leaves unread would make its close a reset, which can
    destroy the alert before it is read."""
    with socket.create_connection(address(endpoint), timeout=30) as raw, context.wrap_socket(raw, server_hostname=address(endpoint)[0]) as tls:
        try:
            received = tls.recv(1)
        except ssl.SSLError as error:
            return str(error.reason)
    raise AssertionError(f"{endpoint} did not refuse the connection (it sent {received!r})")


def assert_still_serving(certs: Certs, chain: Chain) -> None:
    """The refusal was the agent's answer, not its crash: it still serves a client it trusts."""
    assert call_tool(chain.back.endpoint, certs.client_context(), "add", {"a": 1, "b": 2}) == 3


def test_a_client_without_a_certificate_is_refused(certs: Certs, chain: Chain) -> None:
    assert tls_alert(chain.back.endpoint, certs.client_context(None)) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert_still_serving(certs, chain)


def test_a_certificate_from_another_ca_is_refused(certs: Certs, chain: Chain, tmp_path: Path) -> None:
    foreign = certs_init(tmp_path / "foreign", ["intruder"])
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.ca))  # trusts the agent...
    context.load_cert_chain(str(foreign.pem("operator")), str(foreign.key("operator")))  # ...which must not trust us
    assert tls_alert(chain.back.endpoint, context) == "TLSV1_ALERT_UNKNOWN_CA"
    assert_still_serving(certs, chain)


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
