"""`/metrics` of a real registry and real Python agents, read by the official Prometheus parser
(`prometheus_client.parser`): the exposition parses, and its numbers follow the calls made."""

from __future__ import annotations

import http.client
import socket
from typing import Optional

from meshkit import Mesh, call_tool, mcp_post, wait_until
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> tuple[dict[str, str], Samples]:
    """The metric families (name -> type) and samples at ``/metrics`` on ``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    finally:
        connection.close()
    families = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no {name}{labels} among {sorted(n for n, _ in samples)}"
    return samples[key]


def test_agents_and_the_registry_expose_metrics_the_prometheus_parser_reads(mesh: Mesh) -> None:
    registry_health, back_health, front_health = free_port(), free_port(), free_port()
    registry = mesh.start_registry(0, "--health-port", str(registry_health))
    mesh.start_agent("back.py", "back", registry, {"TOOLMESH_HEALTH_PORT": str(back_health)})
    front = mesh.start_agent("front.py", "front", registry, {"TOOLMESH_HEALTH_PORT": str(front_health)})
    mesh.wait_listed(registry, {"front", "back"})
    operator = mesh.certs.client_context()

    # front -> back over mTLS, once front's topology holds back.
    summed = wait_until(lambda: call_tool(front.endpoint, operator, "sum3", {"a": 1, "b": 2, "c": 3}), 20, "front to reach back")
    assert summed == 6
    # A tool front does not have: an error, counted under `_OTHER` (never the name asked for).
    status, answer = mcp_post(front.endpoint, operator, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                                         "params": {"name": "no-such-tool", "arguments": {}}})
    assert status == 200 and "error" in answer, answer

    families, samples = scrape(front_health)
    assert families["mcp_server_operation_duration_seconds"] == "histogram"
    assert families["mcp_client_operation_duration_seconds"] == "histogram"
    assert families["toolmesh_tls_handshakes"] == "counter"
    assert families["toolmesh_certificate_expiry_seconds"] == "gauge"
    call = {"mcp_method_name": "tools/call"}
    assert value(samples, "mcp_server_operation_duration_seconds_count", **call, gen_ai_tool_name="sum3") == 1
    assert value(samples, "mcp_server_operation_duration_seconds_count", **call, gen_ai_tool_name="_OTHER",
                 error_type="UNKNOWN_TOOL") == 1
    # sum3 adds twice through back.
    client = {**call, "peer_agent": "back", "gen_ai_tool_name": "add"}
    assert value(samples, "mcp_client_operation_duration_seconds_count", **client) == 2
    assert value(samples, "mcp_client_operation_duration_seconds_bucket", **client, le="+Inf") == 2
    assert value(samples, "mcp_client_operation_duration_seconds_sum", **client) > 0
    assert value(samples, "toolmesh_client_calls_in_flight") == 0
    assert value(samples, "toolmesh_client_failovers_total", reason="unreachable") == 0
    assert value(samples, "toolmesh_tls_handshakes_total", side="client") >= 1
    assert value(samples, "toolmesh_topology_providers") == 1
    assert value(samples, "toolmesh_certificate_expiry_seconds") > 0

    families, samples = scrape(back_health)
    assert value(samples, "mcp_server_operation_duration_seconds_count", **call, gen_ai_tool_name="add") == 2
    assert value(samples, "toolmesh_tls_handshakes_total", side="server") >= 1
    assert value(samples, "toolmesh_server_requests_in_flight") == 0

    def after_a_heartbeat() -> Optional[tuple[dict[str, str], Samples]]:
        families, samples = scrape(registry_health)
        return (families, samples) if samples.get(("toolmesh_registry_heartbeats_total", frozenset()), 0) >= 1 else None
    families, samples = wait_until(after_a_heartbeat, 10, "a heartbeat")
    assert families["toolmesh_registry_agents"] == "gauge"
    assert families["toolmesh_registry_heartbeats"] == "counter"
    # Whatever their health: a heartbeat late on a busy machine makes an agent stale for a moment.
    assert sum(value(samples, "toolmesh_registry_agents", health=h) for h in ("healthy", "stale", "unreachable")) == 2
    assert value(samples, "toolmesh_registry_evictions_total", reason="heartbeats_stopped") == 0
    assert value(samples, "toolmesh_registry_long_poll_waiters") >= 0
    assert value(samples, "toolmesh_tls_handshakes_total", side="server") >= 2
