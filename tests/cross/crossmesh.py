"""The mesh of the cross-language suite: a registry process and, per language, a caller peer
and a callee peer (tests/cross/peers), all reading tests/cross/cases.json. Built on the helpers
of tests/python/meshkit.py; every wait is bounded and every process is killed at teardown."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from meshkit import HEARTBEAT_MS, ROOT, Certs, Mesh, Process, Registry, call_tool, certs_init, issue_expired, mcp_post, wait_until  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.json"
TABLE: dict[str, Any] = json.loads(CASES.read_text())
LANGUAGES: list[str] = TABLE["languages"]
# The phases of the call cases, in the order the mesh goes through them (none comes back).
PHASES = ["live", "registry_policy", "registry_down", "callee_restarted"]
UNRESOLVED = 3001
# The agents of a callee process, by the kind a call case names (cases.json "callee").
CALLEE_AGENTS = {"agent": "callee", "misnamed": "misnamed", "replaced": "replaced", "aloof": "aloof"}
# The agents of a guarded process (role guarded, under the table's guarded policy), by kind.
GUARDED_AGENTS = {"guarded": "guarded", "relay": "relay"}
# Core's warning when the registry refuses a registration (tracing's plain format).
REFUSED_LINE = re.compile(r"WARN toolmesh_core::discovery: cannot register with the registry: \[(\d+) ([A-Z_]+)\] (.*); retrying in the background$",
                          re.MULTILINE)


def peers_build_dir() -> Path:
    """Where scripts/cross-tests.sh built the Java and C peers."""
    default = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "cross-peers"
    build = Path(os.environ.get("TOOLMESH_CROSS_PEERS", default))
    if not (build / "peer").exists() or not (build / "java" / "Peer.class").exists():
        raise RuntimeError(f"the C and Java peers are not built in {build}: run scripts/cross-tests.sh")
    return build


def peer_command(language: str, role: str) -> list[str]:
    build = peers_build_dir()
    program = {
        "python": [sys.executable, str(HERE / "peers" / "peer.py")],
        "node": ["node", str(HERE / "peers" / "peer.mjs")],
        # Tiered compilation stops at C1: the peers start faster and take less of two shared cores.
        "java": ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                 "-cp", f"{build / 'java'}:{(build / 'java.classpath').read_text().strip()}", "Peer"],
        "c": [str(build / "peer")],
    }[language]
    return [*program, role, str(CASES)]


def fill(expected: Any, **values: str) -> Any:
    """``expected`` from the table with its {placeholders} replaced, at every depth."""
    if isinstance(expected, str):
        for key, value in values.items():
            expected = expected.replace("{" + key + "}", value)
        return expected
    if isinstance(expected, dict):
        return {key: fill(value, **values) for key, value in expected.items()}
    if isinstance(expected, list):
        return [fill(value, **values) for value in expected]
    return expected


def normalised(outcome: Any) -> Any:
    """An outcome with what is bound to differ between two runs written as a constant: a port in a
    loopback address (picked at random) as PORT, the clock's reading "(now TIME)" as NOW, a rate
    limit's "retry after MS ms" as N. Nothing else in a message may differ between languages."""
    if isinstance(outcome, dict) and "error" in outcome:
        message = re.sub(r"(127\.0\.0\.\d+):\d+", r"\1:PORT", outcome["error"]["message"])
        message = re.sub(r"\(now \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", "(now NOW)", message)
        message = re.sub(r"retry after \d+ ms", "retry after N ms", message)
        return {**outcome, "error": {**outcome["error"], "message": message}}
    return outcome


@dataclass
class Peer:
    """A peer process and the endpoints of its agents, by agent name."""

    process: Process
    endpoints: dict[str, str]


def ready_line(agent: str) -> re.Pattern[str]:
    return re.compile(rf"toolmesh agent {re.escape(agent)} serving (https://\S+) \(id \S+\)")


class CrossMesh:
    """The registry and the peers (a caller and a callee process per language), moved through the
    phases of the table's call cases."""

    def __init__(self, work: Path) -> None:
        # One certificate per agent: the registry takes an agent's name from its certificate.
        agents = ["caller", *CALLEE_AGENTS.values(), *GUARDED_AGENTS.values()]
        self.certs = certs_init(work / "certs", [f"{agent}-{language}" for agent in agents for language in LANGUAGES] + ["starter"])
        # Identities that the mesh must refuse: from another CA, and from its own CA but expired.
        self.foreign = certs_init(work / "foreign", ["starter", "impostor"])
        self.expired = issue_expired(self.certs, "starter")
        issue_expired(self.certs, "operator")  # into the same directory: self.expired has both
        self.mesh = Mesh(self.certs, work)
        self.operator = self.certs.client_context()
        self.phase = 0
        self.callees: dict[str, Peer] = {}
        self.callers: dict[str, Peer] = {}
        self.guarded: dict[str, Peer] = {}
        # The guarded processes' policy, as a file (TOOLMESH_POLICY_FILE).
        self.policy_file = work / "guarded-policy.json"
        self.policy_file.write_text(json.dumps(TABLE["guarded"]["policy"]))

    def start(self) -> None:
        """Starts the registry, then every peer at once; waits for them to serve and for the
        callers to know the callees."""
        self.registry: Registry = self.mesh.start_registry()
        callees = {language: self._spawn(language, "callee", {**self._member(f"callee-{language}"), "TOOLMESH_CROSS_CERTS": str(self.certs.dir)})
                   for language in LANGUAGES}
        guarded = {language: self._spawn(language, "guarded", {**self._member(f"guarded-{language}"), "TOOLMESH_CROSS_CERTS": str(self.certs.dir),
                                                               "TOOLMESH_POLICY_FILE": str(self.policy_file)})
                   for language in LANGUAGES}
        callers = {language: self._spawn(language, "caller", self._member(f"caller-{language}")) for language in LANGUAGES}
        for language, process in callees.items():
            self.callees[language] = self._ready(process, [f"{agent}-{language}" for agent in CALLEE_AGENTS.values()])
        for language, process in guarded.items():
            self.guarded[language] = self._ready(process, [f"{agent}-{language}" for agent in GUARDED_AGENTS.values()])
        for language, process in callers.items():
            self.callers[language] = self._ready(process, [f"caller-{language}"])
        self.mesh.wait_listed(self.registry, {f"{agent}-{language}" for agent in ["caller", *CALLEE_AGENTS.values(), *GUARDED_AGENTS.values()]
                                              for language in LANGUAGES})
        self._settle()

    def close(self) -> None:
        self.mesh.close()

    def _member(self, identity: str) -> dict[str, str]:
        """The environment of a mesh member: its identity from the mesh CA, and the registry."""
        return {**self.certs.env(identity), "TOOLMESH_REGISTRY_URL": self.registry.url}

    def _spawn(self, language: str, role: str, identity: dict[str, str], port: int = 0) -> Process:
        env = {
            **identity,
            "TOOLMESH_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS),
            "TOOLMESH_PROPAGATE_HEADERS": TABLE["propagate_headers"],
            "TOOLMESH_HEALTH_PORT": "off",
            "TOOLMESH_PORT": str(port),
        }
        return self.mesh.spawn(peer_command(language, role), env, f"{role}-{language}")

    @staticmethod
    def _ready(process: Process, agents: list[str]) -> Peer:
        return Peer(process, {agent: process.wait_for_line(ready_line(agent), timeout=60).group(1) for agent in agents})

    def _settle(self) -> None:
        """Waits until every caller has learned every agent of every callee from the registry, and
        every hop of the chain the next one: the first calls may precede a heartbeat's news. One
        case per callee agent tells, as each agent registers all its tools at once."""
        case_per_agent = {case["callee"]: case["case"] for case in TABLE["calls"] if case["callee"] and not case.get("pending")}
        for caller in LANGUAGES:
            for callee in LANGUAGES:
                for case in case_per_agent.values():
                    wait_until(lambda: self.probe(caller, case, callee).get("error", {}).get("code") != UNRESOLVED, 30,
                               f"{caller} to resolve the dependency of {case} on {callee}")
        wait_until(self.call_chain, 30, "the chain to resolve every hop")

    # ---- calls ----

    def request_headers(self, caller_headers: Optional[str] = TABLE["request"]["caller_headers"]) -> dict[str, str]:
        """The table's request headers; ``caller_headers`` lists those set on purpose (None: none)."""
        request = TABLE["request"]
        listed = {} if caller_headers is None else {"toolmesh-caller-headers": caller_headers}
        return {**request["headers"], **listed, "traceparent": f"00-{request['trace_id']}-b7ad6b7169203331-01"}

    def echo(self, language: str, caller_headers: Optional[str]) -> dict[str, Any]:
        """Calls echo of callee-``language`` directly: what its handler saw."""
        return call_tool(self.callee_endpoint(language), self.operator, "echo", {}, self.request_headers(caller_headers))

    def tool_annotations(self, language: str, tool: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``tool``'s annotations as callee-``language`` lists them and as the registry keeps them."""
        status, answer = mcp_post(self.callee_endpoint(language), self.operator,
                                  {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        assert status == 200 and "result" in answer, (status, answer)
        listed = next(t for t in answer["result"]["tools"] if t["name"] == tool).get("annotations", {})
        agents = self.mesh.list_agents(self.registry)
        record = next(t for a in agents if a["name"] == f"callee-{language}" for t in a["tools"] if t["name"] == tool)
        return listed, record.get("annotations", {})

    def probe(self, caller: str, case: str, callee: Optional[str]) -> dict[str, Any]:
        """Calls the caller's probe of ``case`` (towards ``callee``): what that language caught."""
        tool = case if callee is None else f"{case}__{callee}"
        return call_tool(self.callers[caller].endpoints[f"caller-{caller}"], self.operator, tool, {}, self.request_headers())

    def probe_cancelled(self, caller: str, case: str, callee: str) -> dict[str, Any]:
        """Calls the caller's probe of ``case`` (towards ``callee``) as a legacy request asking for
        progress; once the callee's first progress shows its dependency call under way, sends
        ``notifications/cancelled`` naming that request (from the same identity, on another
        connection), and reads the answer the cancelled request still gets, as a probe reports one."""
        endpoint = self.callers[caller].endpoints[f"caller-{caller}"]
        host_port, path = endpoint.removeprefix("https://").split("/", 1)
        host, port = host_port.rsplit(":", 1)
        request_id = f"cancel-{case}-{caller}-{callee}"
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": f"{case}__{callee}", "arguments": {}, "_meta": {"progressToken": request_id}}}
        # Legacy requests: no protocol-version header, no modern _meta.
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        connection = http.client.HTTPSConnection(host, int(port), context=self.operator, timeout=30)
        canceller = http.client.HTTPSConnection(host, int(port), context=self.operator, timeout=30)
        try:
            connection.request("POST", "/" + path, body=json.dumps(body), headers={**self.request_headers(), **headers})
            response = connection.getresponse()
            assert response.getheader("content-type") == "text/event-stream", (response.status, response.read()[:500])
            messages = (json.loads(line[len(b"data: "):]) for line in response if line.startswith(b"data: "))
            first = next(messages)
            assert first.get("method") == "notifications/progress", first
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id, "reason": "the test gave up"}}
            canceller.request("POST", "/" + path, body=json.dumps(cancel), headers=headers)
            accepted = canceller.getresponse()
            assert accepted.status == 202, (accepted.status, accepted.read()[:500])
            answer = next(m for m in messages if m.get("id") == request_id)
        finally:
            connection.close()
            canceller.close()
        result = answer["result"]
        if not result.get("isError"):
            return result["structuredContent"]
        error = result["_meta"]["dev.toolmesh/error"]
        return {"error": {key: error[key] for key in ("code", "name", "message")}}

    def call_chain(self) -> dict[str, Any]:
        """Calls the chain tool of the chain's first language, which calls the next one's, and so on."""
        return call_tool(self.callee_endpoint(TABLE["chain"]["languages"][0]), self.operator, "chain", {}, self.request_headers())

    def call_chain_on_a_budget(self) -> dict[str, Any]:
        """Calls the chain as its ``budget`` says: its tenant, its deadline (``dev.toolmesh/deadlineMs``)."""
        budget = TABLE["chain"]["budget"]
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {},
                "dev.toolmesh/deadlineMs": budget["deadline_ms"]}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "chain", "arguments": {}, "_meta": meta}}
        headers = {**self.request_headers(), "X-Tenant": budget["tenant"]}
        status, answer = mcp_post(self.callee_endpoint(TABLE["chain"]["languages"][0]), self.operator, body, headers)
        assert status == 200 and not answer.get("result", {}).get("isError", True), (status, answer)
        return answer["result"]["structuredContent"]

    def call_rich_chain(self) -> dict[str, Any]:
        """Calls the rich_chain tool of its first language; returns the whole tools/call result."""
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "rich_chain", "arguments": {}}}
        status, answer = mcp_post(self.callee_endpoint(TABLE["rich_chain"]["languages"][0]), self.operator, body)
        assert status == 200 and "result" in answer, (status, answer)
        return answer["result"]

    def callee_endpoint(self, language: str, kind: str = "agent") -> str:
        if kind in GUARDED_AGENTS:
            return self.guarded[language].endpoints[f"{GUARDED_AGENTS[kind]}-{language}"]
        return self.callees[language].endpoints[f"{CALLEE_AGENTS[kind]}-{language}"]

    def list_tools(self, language: str, kind: str, identity: str) -> list[str]:
        """The names ``tools/list`` of ``language``'s agent of ``kind`` answers identity ``identity``."""
        status, answer = mcp_post(self.callee_endpoint(language, kind), self.certs.client_context(identity),
                                  {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        assert status == 200 and "result" in answer, (status, answer)
        return sorted(tool["name"] for tool in answer["result"]["tools"])

    def squat(self, language: str, identity: str) -> dict[str, Any]:
        """Runs ``language``'s peer in role `squat` (agent squatter-LANGUAGE) with the certificate of
        ``identity`` and the registry; returns the refusal core logged: {"error": {code, name, message}}."""
        process = self._spawn(language, "squat", {**self.certs.env(identity), "TOOLMESH_REGISTRY_URL": self.registry.url, "TOOLMESH_LOG": "warn"})
        try:
            process.wait_for_line(ready_line(f"squatter-{language}"), timeout=60)
            found = wait_until(lambda: REFUSED_LINE.search(process.stderr_path.read_text()), 30,
                               f"the {language} squatter's registration to be refused")
            return {"error": {"code": int(found.group(1)), "name": found.group(2), "message": found.group(3)}}
        finally:
            process.stop(signal.SIGKILL)

    def client_context(self, client: str) -> ssl.SSLContext:
        """A TLS client that trusts the mesh CA and presents identity `operator` of ``client``
        ("foreign", "expired"), or no certificate ("none")."""
        context = self.certs.client_context(None)
        if client != "none":
            identity = {"foreign": self.foreign, "expired": self.expired}[client]
            context.load_cert_chain(str(identity.pem("operator")), str(identity.key("operator")))
        return context

    def start_alone(self, language: str, identity: Certs) -> dict[str, Any]:
        """Runs ``language``'s peer in role `start` with identity `starter` of ``identity`` (and
        the mesh CA); returns what it printed: {"ok": ...} or the {"error": ...} it caught."""
        env = {**os.environ, **identity.env("starter"), "TOOLMESH_TLS_CA": str(self.certs.ca), "TOOLMESH_REGISTRY_URL": "",
               "TOOLMESH_HEALTH_PORT": "off"}
        done = subprocess.run(peer_command(language, "start"), env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip(), f"{language}: {done}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    # ---- phases ----

    def enter(self, phase: str) -> None:
        """Moves the mesh forward to ``phase``; a phase once left does not come back, so the
        tests run in the table's order (pytest's order)."""
        target = PHASES.index(phase)
        assert target >= self.phase, f"phase {phase} requested after {PHASES[self.phase]}: run the tests in file order"
        transitions: dict[str, Callable[[], None]] = {
            "registry_policy": self._apply_registry_policy,
            "registry_down": self._stop_registry,
            "callee_restarted": self._restart_callees,
        }
        while self.phase < target:
            self.phase += 1
            transitions[PHASES[self.phase]]()

    def _apply_registry_policy(self) -> None:
        """An operator applies the table's registry policy at the registry (`toolmesh policy
        apply`). Every agent follows it from its next heartbeat, in place of its own policy file,
        so the guarded rows (phase live) are behind us."""
        policy = [case["registry_policy"] for case in TABLE["calls"] if case["phase"] == "registry_policy"][0]
        path = self.policy_file.with_name("registry-policy.json")
        path.write_text(json.dumps(policy))
        done = self.mesh.cli("policy", "apply", str(path), registry=self.registry)
        assert done.returncode == 0, f"toolmesh policy apply: {done.stdout}{done.stderr}"
        # Heartbeats carry the news: give every agent a few.
        time.sleep(3 * HEARTBEAT_MS / 1000)

    def _stop_registry(self) -> None:
        # First, with everything up, every call of the later phases works from every caller to
        # every callee: so what fails later fails because of the phase, and the callers' cached
        # topology holds every callee tool those calls need.
        for case in TABLE["calls"]:
            if PHASES.index(case["phase"]) > PHASES.index("registry_policy"):
                for caller in LANGUAGES:
                    for callee in LANGUAGES:
                        outcome = self.probe(caller, case["case"], callee)
                        assert "ok" in outcome, f"{case['case']} {caller}->{callee} before the registry stops: {outcome}"
        self.registry.process.stop(signal.SIGKILL)
        # Several heartbeat intervals without a registry before any call.
        time.sleep(4 * HEARTBEAT_MS / 1000)

    def _restart_callees(self) -> None:
        """Every callee process dies. On the port of its agent callee-LANGUAGE, a new one starts
        without the vanishing tool; on the port of replaced-LANGUAGE, an impostor with an identity
        from another CA (and no registry)."""
        before = {language: self.callees[language].endpoints for language in LANGUAGES}
        for language in LANGUAGES:
            self.callees[language].process.stop(signal.SIGKILL)
        impostor = {**self.foreign.env("impostor"), "TOOLMESH_REGISTRY_URL": ""}
        started = {
            language: (
                self._spawn(language, "restarted", self._member(f"callee-{language}"), address(self.callee_endpoint(language))[1]),
                self._spawn(language, "impostor", impostor, address(self.callee_endpoint(language, "replaced"))[1]),
            )
            for language in LANGUAGES
        }
        for language, (restarted, impostor_process) in started.items():
            self.callees[language] = Peer(restarted, {
                **self._ready(restarted, [f"callee-{language}"]).endpoints,
                **self._ready(impostor_process, [f"replaced-{language}"]).endpoints,
            })
            assert self.callees[language].endpoints.items() <= before[language].items(), f"{language} restarted on other ports"


def address(endpoint: str) -> tuple[str, int]:
    """The host and port of ``https://HOST:PORT/mcp``."""
    host, port = endpoint.removeprefix("https://").split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def tls_refusal(endpoint: str, context: ssl.SSLContext) -> str:
    """Connects with ``context`` and returns the reason of the TLS error that ends the connection:
    the alert the agent sent. Nothing is sent after the handshake: data the agent leaves unread
    would make its close a reset, which can destroy the alert before it is read."""
    host, port = address(endpoint)
    with socket.create_connection((host, port), timeout=30) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        try:
            received = tls.recv(1)
        except ssl.SSLError as error:
            return str(error.reason)
    raise AssertionError(f"{endpoint} did not refuse the connection (it sent {received!r})")


def plaintext_answer(endpoint: str) -> tuple[int, str]:
    """The status and body a plain HTTP request to ``endpoint``'s port gets."""
    connection = http.client.HTTPConnection(*address(endpoint), timeout=30)
    try:
        connection.request("POST", "/mcp", body="{}", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()
