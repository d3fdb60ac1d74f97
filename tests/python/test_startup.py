"""Bad input at start-up: the agent exits with status 2 and core's message, before serving."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from typing import Iterator

import pytest
from meshkit import AGENT_READY, Mesh, certs_init, issue_expired

ERROR_LINE = re.compile(r"^toolmesh: error \[(\d{4}) ([A-Z_]+)\]: (.+)$", re.MULTILINE)


def failed_start(mesh: Mesh, env: dict[str, str]) -> tuple[int, str, str]:
    """Starts agent `back` with ``env`` over its valid identity; returns (code, name, message)."""
    process = mesh.spawn_agent("back.py", "back", None, env)
    assert process.wait(timeout=30) == 2, process.output()
    stderr = process.stderr_path.read_text()
    assert not AGENT_READY.search(stderr), stderr
    assert "Traceback" not in stderr, stderr
    match = ERROR_LINE.search(stderr)
    assert match, stderr
    return int(match.group(1)), match.group(2), match.group(3)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_missing_certificate(mesh: Mesh, tmp_path: Path) -> None:
    code, name, message = failed_start(mesh, {"TOOLMESH_TLS_CERT": str(tmp_path / "nowhere.pem")})
    assert (code, name) == (1002, "CERTIFICATE_FILE")
    assert "nowhere.pem" in message


@pytest.mark.parametrize("variable", ["TOOLMESH_TLS_KEY", "TOOLMESH_TLS_CERT"])
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_an_unreadable_key_or_certificate(mesh: Mesh, tmp_path: Path, variable: str, kind: str) -> None:
    # A directory stands for an unreadable file: CI runs as root, where chmod 000 still reads.
    path = tmp_path / "nowhere.pem" if kind == "missing" else tmp_path
    code, name, message = failed_start(mesh, {variable: str(path)})
    assert (code, name) == (1002, "CERTIFICATE_FILE")
    assert f"'{path}'" in message and f"Set {variable}" in message and "readable PEM file" in message, message


def test_a_key_file_that_holds_no_key(mesh: Mesh, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("this is not a key\n")
    code, name, message = failed_start(mesh, {"TOOLMESH_TLS_KEY": str(garbage)})
    assert (code, name) == (1002, "CERTIFICATE_FILE")
    assert message.startswith(f"the key file '{garbage}' holds no PEM private key"), message
    assert "point TOOLMESH_TLS_KEY" in message and "toolmesh certs issue" in message, message


@pytest.mark.parametrize("form", ["pkcs8", "traditional"])
def test_an_encrypted_key_is_refused_by_name(mesh: Mesh, tmp_path: Path, form: str) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(mesh.certs.key("back").read_bytes(), password=None)
    encoding = serialization.PrivateFormat.PKCS8 if form == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, encoding, serialization.BestAvailableEncryption(b"secret")))
    assert b"ENCRYPTED" in encrypted.read_bytes()
    code, name, message = failed_start(mesh, {"TOOLMESH_TLS_KEY": str(encrypted)})
    assert (code, name) == (1002, "CERTIFICATE_FILE")
    assert message == (
        f"the key file '{encrypted}' is an encrypted private key; toolmesh needs it unencrypted (decrypt it with "
        f"`openssl pkey -in {encrypted} -out {encrypted}.plain`, keep that file readable by the agent only, and point "
        "TOOLMESH_TLS_KEY at it)"
    )


def test_a_key_that_does_not_match_the_certificate(mesh: Mesh) -> None:
    code, name, _ = failed_start(mesh, {"TOOLMESH_TLS_KEY": str(mesh.certs.key("front"))})
    assert (code, name) == (1003, "KEY_MISMATCH")


def test_a_certificate_from_another_ca(mesh: Mesh, tmp_path: Path) -> None:
    foreign = certs_init(tmp_path / "foreign", ["back"])
    code, name, _ = failed_start(mesh, {"TOOLMESH_TLS_CERT": str(foreign.pem("back")),
                                        "TOOLMESH_TLS_KEY": str(foreign.key("back"))})
    assert (code, name) == (2001, "CERTIFICATE_UNTRUSTED")


def test_an_expired_certificate(mesh: Mesh) -> None:
    expired = issue_expired(mesh.certs, "back")
    code, name, message = failed_start(mesh, expired.env("back"))
    assert (code, name) == (2002, "CERTIFICATE_EXPIRED")
    assert "expired" in message


def test_a_plaintext_registry_url(mesh: Mesh) -> None:
    code, name, message = failed_start(mesh, {"TOOLMESH_REGISTRY_URL": "http://127.0.0.1:8443"})
    assert (code, name) == (1004, "REGISTRY_URL_NOT_HTTPS")
    assert "https://" in message


def test_a_port_in_use(mesh: Mesh, busy_port: int) -> None:
    code, name, message = failed_start(mesh, {"TOOLMESH_PORT": str(busy_port)})
    assert (code, name) == (1005, "ADDRESS_IN_USE")
    assert str(busy_port) in message


def test_sigint_stops_a_running_agent_cleanly(mesh: Mesh) -> None:
    agent = mesh.start_agent("back.py", "back", None)
    assert agent.process.stop(signal.SIGINT) == 0, agent.process.output()
    assert "Traceback" not in agent.process.output()
