"""The one-flag path end to end in real processes: `toolmesh registry --tls-auto`, the calculator
example started with TOOLMESH_TLS=auto and a join token (from a file, or from the environment),
an operator calling it. The agent's key lives in memory only: no private key appears under its
HOME, TMPDIR or working directory, nor in its logs."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from meshkit import AGENT_READY, HEARTBEAT_MS, REGISTRY_READY, ROOT, Process, cli_binary, wait_until

CALC = ROOT / "examples" / "python" / "calc.py"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TOOLMESH_* setting of the caller, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TOOLMESH_")}, **extra}


def files_with_private_keys(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
                found.append(path)
    return found


@pytest.mark.parametrize("token_from", ["TOOLMESH_JOIN_TOKEN_FILE", "TOOLMESH_JOIN_TOKEN"])
def test_an_auto_tls_agent_joins_serves_and_keeps_its_key_in_memory(tmp_path: Path, token_from: str) -> None:
    home, tmpdir, workdir, state, logs = (tmp_path / d for d in ("home", "tmp", "work", "state", "logs"))
    for directory in (home, tmpdir, workdir, logs):
        directory.mkdir()
    registry = Process([str(cli_binary()), "registry", "--tls-auto", "--state-dir", str(state), "--port", "0",
                        "--heartbeat-interval-ms", str(HEARTBEAT_MS)], clean_env(), logs / "registry")
    processes = [registry]
    try:
        url = registry.wait_for_line(REGISTRY_READY, timeout=30).group(1)
        token_file = state / "join-token"
        token = token_file.read_text().strip()
        env = clean_env(TOOLMESH_TLS="auto", TOOLMESH_REGISTRY_URL=url, HOME=str(home), TMPDIR=str(tmpdir),
                        RUST_LOG="debug", TOOLMESH_HEARTBEAT_INTERVAL_MS=str(HEARTBEAT_MS))
        env[token_from] = str(token_file) if token_from == "TOOLMESH_JOIN_TOKEN_FILE" else token
        agent = subprocess.Popen([sys.executable, str(CALC)], env=env, cwd=workdir,
                                 stdout=open(logs / "calc.out", "wb"), stderr=open(logs / "calc.err", "wb"),
                                 stdin=subprocess.DEVNULL)
        try:
            def ready() -> bool:
                assert agent.poll() is None, (logs / "calc.err").read_text()
                return bool(AGENT_READY.search((logs / "calc.out").read_text() + (logs / "calc.err").read_text()))
            wait_until(ready, 30, "the auto-TLS calculator's ready line")
            endpoint = AGENT_READY.search((logs / "calc.out").read_text() + (logs / "calc.err").read_text()).group(2)
            # What it serves with: a certificate from the registry's CA for the agent, short-lived (24 h).
            context = ssl.create_default_context(cafile=str(state / "ca.pem"))
            context.load_cert_chain(str(state / "operator.pem"), str(state / "operator.key"))
            host, port = endpoint.removeprefix("https://").split("/", 1)[0].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as tcp, context.wrap_socket(tcp, server_hostname=host) as tls:
                peer = tls.getpeercert()
            assert ("URI", "spiffe://toolmesh.local/agent/calc") in peer["subjectAltName"], peer
            lifetime = ssl.cert_time_to_seconds(peer["notAfter"]) - time.time()
            assert 23 * 3600 < lifetime <= 24 * 3600, peer["notAfter"]

            def call(tool: str, arguments: str) -> subprocess.CompletedProcess[str]:
                # The operator identity the --tls-auto registry wrote to its state directory.
                return subprocess.run([str(cli_binary()), "call", tool, arguments, "--tls-auto", "--state-dir", str(state),
                                       "--registry", url], env=clean_env(), capture_output=True, text=True, timeout=30)
            # sum3 calls add through the mesh: agent to agent, both ends on certificates from bootstrap.
            done = wait_until(lambda: (lambda d: d if d.returncode == 0 else None)(call("sum3", '{"a": 1, "b": 2, "c": 3}')),
                              20, "a call to sum3")
            assert done.stdout.strip() == "6", done
            done = call("add", '{"a": 20, "b": 22}')
            assert (done.returncode, done.stdout.strip()) == (0, "42"), done
            listed = subprocess.run([str(cli_binary()), "list", "--json", "--tls-auto", "--state-dir", str(state), "--registry", url],
                                    env=clean_env(), capture_output=True, text=True, timeout=30)
            assert '"name": "calc"' in listed.stdout, listed
        finally:
            agent.terminate()
            agent.wait(timeout=15)
        assert files_with_private_keys(home, tmpdir, workdir) == [], "the agent's key touched the disk"
        agent_logs = (logs / "calc.out").read_bytes() + (logs / "calc.err").read_bytes()
        assert b"PRIVATE KEY" not in agent_logs
        assert token.rsplit(".", 1)[1].encode() not in agent_logs, "the join token's secret in the agent's logs"
        # The registry's own state directory is where its keys belong, and the only place.
        assert {p.name for p in files_with_private_keys(state)} == {"registry-state.json", "operator.key"}
    finally:
        for process in processes:
            process.stop()
