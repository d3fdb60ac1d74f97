"""Test helpers shared by the Python suites: certificates from the toolmesh CLI, registry and
agent processes, and TLS clients. Every wait is bounded; every process is killed at teardown."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT_READY = re.compile(r"toolmesh agent (\S+) serving (https://\S+) \(id (\S+)\)")
REGISTRY_READY = re.compile(r"toolmesh registry listening on (https://\S+)")
# Every identity the suites use, issued once per session.
IDENTITIES = ["alpha", "beta", "front", "back", "back2", "calc", "stats"]
# The registry's heartbeat interval in tests: short, so that topology changes and re-registration
# after a registry restart happen within a second or two.
HEARTBEAT_MS = 300

T = TypeVar("T")


def cli_binary() -> Path:
    """The `toolmesh` CLI: $TOOLMESH_BIN, else the debug build in the cargo target dir."""
    if "TOOLMESH_BIN" in os.environ:
        return Path(os.environ["TOOLMESH_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "debug" / "toolmesh"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: build it with `cargo build -p toolmesh-cli`")
    return binary


def wait_until(probe: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.1) -> T:
    """Polls ``probe`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # the condition may throw until it holds (e.g. not listening yet)
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@dataclass(frozen=True)
class Certs:
    """A directory written by `toolmesh certs init`."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def pem(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def options(self, name: str) -> dict[str, str]:
        """Agent options (``toolmesh.Agent(..., **options)``) for identity ``name``."""
        return {"tls_cert": str(self.pem(name)), "tls_key": str(self.key(name)), "tls_ca": str(self.ca)}

    def env(self, name: str) -> dict[str, str]:
        """The same as TOOLMESH_* environment variables."""
        return {f"TOOLMESH_{k.upper()}": v for k, v in self.options(name).items()}

    def client_context(self, name: Optional[str] = "operator") -> ssl.SSLContext:
        """A TLS client trusting the mesh CA and presenting identity ``name`` (None: no certificate)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        if name is not None:
            context.load_cert_chain(str(self.pem(name)), str(self.key(name)))
        return context


def certs_init(directory: Path, agents: list[str]) -> Certs:
    argv = [str(cli_binary()), "certs", "init", "--dir", str(directory)]
    if agents:
        argv += ["--agents", ",".join(agents)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return Certs(directory)


def issue_expired(certs: Certs, name: str) -> Certs:
    """Issues ``name`` from the CA of ``certs``, valid from ten to two days ago, into a subdirectory
    (with a copy of the CA), like `certs init` would have issued it back then."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.key("ca").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.UniformResourceIdentifier(f"spiffe://toolmesh.local/agent/{name}")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = certs.dir / "expired"
    out.mkdir(exist_ok=True)
    (out / "ca.pem").write_bytes(certs.ca.read_bytes())
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = out / f"{name}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Certs(out)


class Process:
    """A child process whose stdout and stderr go to files (never a pipe that could fill up)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_prefix: Path) -> None:
        self.argv = argv
        self.stdout_path = log_prefix.with_suffix(".out")
        self.stderr_path = log_prefix.with_suffix(".err")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return f"--- stdout\n{self.stdout_path.read_text(errors='replace')}--- stderr\n{self.stderr_path.read_text(errors='replace')}"

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Waits for a line matching ``pattern`` on stdout or stderr; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in (self.stdout_path, self.stderr_path):
                match = pattern.search(path.read_text(errors="replace"))
                if match:
                    return match
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.argv} exited with {self.popen.returncode} before it was ready\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.argv} was not ready within {timeout}s\n{self.output()}")

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signals the process and waits for it; kills it if it does not exit in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


@dataclass
class Agent:
    process: Process
    name: str
    endpoint: str
    agent_id: str


@dataclass
class Registry:
    process: Process
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


class Mesh:
    """Starts registries, agents and CLI commands for one test or module; ``close`` kills them all."""

    def __init__(self, certs: Certs, log_dir: Path) -> None:
        self.certs = certs
        self.log_dir = log_dir
        self._processes: list[Process] = []

    def spawn(self, argv: list[str], env: dict[str, str], label: str) -> Process:
        process = Process(argv, env, self.log_dir / f"{label}-{len(self._processes)}")
        self._processes.append(process)
        return process

    def start_registry(self, port: int = 0, *options: str) -> Registry:
        """Runs `toolmesh registry` on ``port`` with more command-line ``options``."""
        argv = [str(cli_binary()), "registry", "--port", str(port), "--heartbeat-interval-ms", str(HEARTBEAT_MS),
                "--tls-cert", str(self.certs.pem("registry")), "--tls-key", str(self.certs.key("registry")),
                "--tls-ca", str(self.certs.ca), *options]
        process = self.spawn(argv, {}, "registry")
        return Registry(process, process.wait_for_line(REGISTRY_READY, timeout=30).group(1))

    def start_agent(self, script: str, name: str, registry: Optional[Registry],
                    env: Optional[dict[str, str]] = None) -> Agent:
        """Runs ``script`` as agent ``name`` with the certificate of that name, and waits for its
        ready line."""
        process = self.spawn_agent(script, name, registry, env)
        match = process.wait_for_line(AGENT_READY, timeout=30)
        return Agent(process, match.group(1), match.group(2), match.group(3))

    def spawn_agent(self, script: str, name: str, registry: Optional[Registry],
                    env: Optional[dict[str, str]] = None) -> Process:
        """Runs ``script`` (relative to tests/python/agents, or absolute) without waiting."""
        agent_env = {**self.certs.env(name), "TOOLMESH_TEST_AGENT_NAME": name,
                     "TOOLMESH_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS)}
        if registry is not None:
            agent_env["TOOLMESH_REGISTRY_URL"] = registry.url
        agent_env.update(env or {})
        script_path = ROOT / "tests" / "python" / "agents" / script
        return self.spawn([sys.executable, str(script_path)], agent_env, name)

    def cli(self, *args: str, registry: Optional[Registry] = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Runs the CLI as the operator."""
        env = {**os.environ, **self.certs.env("operator")}
        if registry is not None:
            env["TOOLMESH_REGISTRY_URL"] = registry.url
        return subprocess.run([str(cli_binary()), *args], env=env, capture_output=True, text=True, timeout=timeout)

    def list_agents(self, registry: Registry) -> list[dict[str, Any]]:
        done = self.cli("list", "--json", registry=registry)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["agents"]

    def wait_listed(self, registry: Registry, names: set[str], timeout: float = 20) -> list[dict[str, Any]]:
        """Waits until every agent in ``names`` is registered and healthy."""
        def listed() -> Optional[list[dict[str, Any]]]:
            agents = self.list_agents(registry)
            healthy = {a["name"] for a in agents if a["status"] == "healthy"}
            return agents if names <= healthy else None
        return wait_until(listed, timeout, f"agents {sorted(names)} to be listed")

    def close(self) -> None:
        for process in self._processes:
            process.stop(signal.SIGKILL, timeout=10)


def mcp_post(endpoint: str, context: ssl.SSLContext, body: dict[str, Any], headers: Optional[dict[str, str]] = None,
             timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """One modern-revision (2026-07-28) MCP request over HTTPS with the stdlib client."""
    url = endpoint.removeprefix("https://")
    host_port, path = url.split("/", 1)
    host, port = host_port.rsplit(":", 1)
    params = body.setdefault("params", {})
    params.setdefault("_meta", {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    })
    request_headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": body["method"],
        **({"Mcp-Name": params["name"]} if "name" in params else {}),
        **(headers or {}),
    }
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=timeout)
    try:
        connection.request("POST", "/" + path, body=json.dumps(body), headers=request_headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def call_tool(endpoint: str, context: ssl.SSLContext, tool: str, arguments: dict[str, Any],
              headers: Optional[dict[str, str]] = None) -> Any:
    """Calls ``tool`` with a raw MCP request and returns its structured result; fails on any error."""
    status, answer = mcp_post(endpoint, context, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                  "params": {"name": tool, "arguments": arguments}}, headers)
    assert status == 200 and "result" in answer, (status, answer)
    result = answer["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]


# Fixtures shared by the suites' conftest.py files (imported there by name).


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return certs_init(tmp_path_factory.mktemp("certs"), IDENTITIES)


@pytest.fixture(scope="session")
def session_mesh(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """Processes that live for the whole session (the shared registry)."""
    mesh = Mesh(certs, tmp_path_factory.mktemp("session-logs"))
    yield mesh
    mesh.close()


@pytest.fixture(scope="session")
def registry(session_mesh: Mesh) -> Registry:
    return session_mesh.start_registry()


@pytest.fixture
def mesh(certs: Certs, tmp_path: Path) -> Iterator[Mesh]:
    """Processes that live for one test."""
    mesh = Mesh(certs, tmp_path)
    yield mesh
    mesh.close()
