"""One trace across four languages, in a real Jaeger: a real Jaeger v1.75.0 (built by
scripts/jaeger.sh) on loopback ports, and the callee peers of Python, Node, Java and C exporting to
its OTLP/HTTP port through the standard OTEL_* variables. The test calls Python's chain tool under a
traceparent of its own; the call goes Python → Node → Java → C, and Jaeger's query API must then
hold that one trace: a server and a client span per hop but the last, each the child of the one
before, named and attributed by the OpenTelemetry MCP conventions."""

from __future__ import annotations

import json
import os
import secrets
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from crossmesh import LANGUAGES, TABLE, CrossMesh
from meshkit import Process, call_tool, wait_until

JAEGER = Path(os.environ.get("TOOLMESH_JAEGER", Path.home() / ".cache/toolmesh/jaeger/jaeger-1.75.0"))
CHAIN = TABLE["chain"]["languages"]
SPIFFE = "spiffe://toolmesh.local/agent/"
# The test calls as the operator, whose certificate names an operator.
OPERATOR = "spiffe://toolmesh.local/operator/operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Jaeger:
    """Jaeger all-in-one with in-memory storage, its OTLP/HTTP receiver and query API on loopback."""

    def __init__(self, work: Path, spawn: Any) -> None:
        if not JAEGER.exists():
            raise RuntimeError(f"no Jaeger at {JAEGER}: run scripts/jaeger.sh (or set TOOLMESH_JAEGER)")
        self.otlp_port, self.query_port, grpc_port = free_port(), free_port(), free_port()
        config = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": [], "exporters": ["jaeger_storage_exporter"]}},
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memory": {"memory": {"max_traces": 10000}}}},
                "jaeger_query": {"storage": {"traces": "memory"},
                                 "http": {"endpoint": f"127.0.0.1:{self.query_port}"},
                                 "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}},
            },
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{self.otlp_port}"}}}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory"}},
        }
        path = work / "jaeger.json"  # JSON is YAML
        path.write_text(json.dumps(config))
        self.process: Process = spawn([str(JAEGER), "--config", str(path)], {}, "jaeger")
        wait_until(self._ready, 60, "Jaeger to answer its query API and accept OTLP")

    @property
    def otlp_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    def _ready(self) -> Optional[bool]:
        if self.process.popen.poll() is not None:
            raise AssertionError(f"Jaeger exited with {self.process.popen.returncode}\n{self.process.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.otlp_port), timeout=1):
                pass
            return self.get("/api/services") is not None or None
        except OSError:
            return None

    def get(self, path: str) -> Optional[dict[str, Any]]:
        """The query API's JSON answer, or None for a 404 (a trace not stored yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.query_port}{path}", timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def spans(self, trace_id: str, count: int) -> list[dict[str, Any]]:
        """The spans of ``trace_id`` once Jaeger holds ``count`` of them, each with its process's
        service name and tags (as `service` and `resource`) and its tags as a dict."""
        def stored() -> Optional[list[dict[str, Any]]]:
            answer = self.get(f"/api/traces/{trace_id}")
            if not answer or not answer.get("data"):
                return None
            trace = answer["data"][0]
            spans = trace["spans"]
            for span in spans:
                process = trace["processes"][span["processID"]]
                span["service"] = process["serviceName"]
                span["resource"] = {t["key"]: t["value"] for t in process.get("tags", [])}
                span["attributes"] = {t["key"]: t["value"] for t in span["tags"]}
            return spans if len(spans) >= count else None
        return wait_until(stored, 60, f"Jaeger to hold {count} spans of trace {trace_id}")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CrossMesh, Jaeger]]:
    """Jaeger, the registry, and every language's callee peer exporting to Jaeger."""
    work = Path(tmp_path_factory.mktemp("tracing"))
    cross = CrossMesh(work)
    try:
        jaeger = Jaeger(work, cross.mesh.spawn)
        cross.registry = cross.mesh.start_registry()
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        processes = {language: cross._spawn(language, "callee", {**cross._member(f"callee-{language}"), **otel,
                                                                  "TOOLMESH_CROSS_CERTS": str(cross.certs.dir)})
                     for language in LANGUAGES}
        for language, process in processes.items():
            cross.callees[language] = CrossMesh._ready(process, [f"callee-{language}"])
        cross.mesh.wait_listed(cross.registry, {f"callee-{language}" for language in LANGUAGES})
        # Until every hop knows the next (a heartbeat's news), with no trace of the test's.
        wait_until(lambda: _chain(cross, None), 60, "the chain to resolve every hop")
        yield cross, jaeger
    finally:
        cross.close()


def _chain(cross: CrossMesh, traceparent: Optional[str]) -> Optional[dict[str, Any]]:
    headers = {"traceparent": traceparent} if traceparent else {}
    try:
        return call_tool(cross.callee_endpoint(CHAIN[0]), cross.operator, "chain", {}, headers)
    except AssertionError:
        return None


def test_a_chain_across_four_languages_is_one_trace_in_jaeger(traced: tuple[CrossMesh, Jaeger]) -> None:
    cross, jaeger = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    assert _chain(cross, f"00-{trace_id}-{caller_span}-01") is not None

    # Per hop a server span, and but for the last hop the client span of its call to the next.
    spans = jaeger.spans(trace_id, 2 * len(CHAIN) - 1)
    assert len(spans) == 2 * len(CHAIN) - 1, [(s["service"], s["operationName"]) for s in spans]
    by_id = {span["spanID"]: span for span in spans}

    def parent(span: dict[str, Any]) -> str:
        refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        assert len(refs) == 1 and refs[0]["traceID"] == trace_id, span
        return refs[0]["spanID"]

    expected_parent, previous_identity = caller_span, OPERATOR
    for i, language in enumerate(CHAIN):
        agent = f"callee-{language}"
        server = [s for s in spans if s["service"] == agent and s["attributes"].get("span.kind") == "server"]
        assert len(server) == 1, f"{agent}: {spans}"
        server = server[0]
        assert server["operationName"] == "tools/call chain"
        assert parent(server) == expected_parent, f"{agent}'s server span is not the child of the call that reached it"
        attributes = server["attributes"]
        assert attributes["mcp.method.name"] == "tools/call" and attributes["gen_ai.tool.name"] == "chain", attributes
        assert attributes["mcp.protocol.version"] == "2026-07-28", attributes
        assert attributes["toolmesh.peer.identity"] == previous_identity, attributes
        assert attributes["client.address"] == "127.0.0.1", attributes
        assert "error" not in attributes and "error.type" not in attributes, attributes
        assert server["resource"]["toolmesh.identity"] == SPIFFE + agent, server["resource"]
        if i == len(CHAIN) - 1:
            break
        client = [s for s in spans if s["service"] == agent and s["attributes"].get("span.kind") == "client"]
        assert len(client) == 1, f"{agent}: {spans}"
        client = client[0]
        assert client["operationName"] == "tools/call chain"
        assert parent(client) == server["spanID"], f"{agent}'s client span is not the child of its server span"
        next_endpoint = cross.callee_endpoint(CHAIN[i + 1])
        assert client["attributes"]["server.port"] == int(next_endpoint.rsplit(":", 1)[1].split("/")[0]), client["attributes"]
        assert client["attributes"]["server.address"] == "127.0.0.1"
        assert client["attributes"]["toolmesh.peer.agent"] == f"callee-{CHAIN[i + 1]}"
        # And the identity the callee's certificate proved in the handshake, in every language.
        assert client["attributes"]["toolmesh.peer.identity"] == SPIFFE + f"callee-{CHAIN[i + 1]}", client["attributes"]
        # The client span contains the server span it caused (one clock: one machine).
        child = next(s for s in spans if parent(s) == client["spanID"])
        assert client["startTime"] <= child["startTime"] and child["startTime"] + child["duration"] <= client["startTime"] + client["duration"]
        expected_parent, previous_identity = client["spanID"], SPIFFE + agent
    assert set(by_id) == {s["spanID"] for s in spans}
