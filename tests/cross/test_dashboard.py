"""The registry's dashboard in a real headless Chromium: a registry (its health listener on every
address), three real Python agents (examples/python: `stats` calling `sum3` on two calculators)
kept calling, and the page opened from the health listener. It must show the running agents and
the call edge with its numbers, update in place when a calculator dies, say "no traces yet"
while the trace routes answer 404, lay out a trace as a waterfall, and open a listed trace (the
trace routes' answers given by the page's fetch until the registry's trace store serves them). The access rule of
docs/dashboard.md is checked over real sockets: loopback only on the plain port (by address and
by Host), operators only on the mTLS port.

With TOOLMESH_DASHBOARD_SCREENSHOT=path the page is also saved as a PNG once it shows the edge
(scripts/dashboard-screenshot.sh)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from chromium import Chromium  # noqa: E402
from meshkit import AGENT_READY, HEARTBEAT_MS, ROOT, Agent, Certs, Mesh, Registry, call_tool, certs_init, wait_until  # noqa: E402

AGENTS = ["calc-a", "calc-b", "stats"]
EXAMPLES = ROOT / "examples" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def non_loopback_address() -> Optional[str]:
    """An IPv4 address of this machine that is not loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


class Dashboard:
    """The mesh under the page: registry, agents, a caller thread, and the browser."""

    def __init__(self, work: Path) -> None:
        self.certs: Certs = certs_init(work / "certs", AGENTS)
        self.mesh = Mesh(self.certs, work)
        self.health_port = free_port()
        # Bound to every address, as for a cluster's probes: the dashboard must still be local-only.
        self.registry: Registry = self.mesh.start_registry(0, "--health-host", "0.0.0.0", "--health-port", str(self.health_port))
        self.agents: dict[str, Agent] = {}
        for name, script in [("calc-a", "calc.py"), ("calc-b", "calc.py"), ("stats", "stats.py")]:
            env = {**self.certs.env(name), "TOOLMESH_NAME": name, "TOOLMESH_REGISTRY_URL": self.registry.url,
                   "TOOLMESH_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS), "TOOLMESH_HEALTH_PORT": "off", "TOOLMESH_PORT": "0"}
            process = self.mesh.spawn([sys.executable, str(EXAMPLES / script)], env, name)
            match = process.wait_for_line(AGENT_READY, timeout=60)
            self.agents[name] = Agent(process, match.group(1), match.group(2), match.group(3))
        self.mesh.wait_listed(self.registry, set(AGENTS), timeout=30)
        self.operator = self.certs.client_context("operator")
        wait_until(lambda: self.mean3() == 3.0, 30, "stats to resolve sum3")
        self.stop_calls = threading.Event()
        self.caller = threading.Thread(target=self._keep_calling, daemon=True)
        self.caller.start()
        self.browser = Chromium(work)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/dashboard/"

    def mean3(self) -> Any:
        return call_tool(self.agents["stats"].endpoint, self.operator, "mean3", {"a": 1, "b": 2, "c": 6})

    def _keep_calling(self) -> None:
        while not self.stop_calls.wait(0.05):
            try:
                self.mean3()
            except (AssertionError, OSError):
                pass  # a calculator being killed: the next call goes to the other

    def plain_get(self, path: str, host: Optional[str] = None, source: str = "127.0.0.1") -> tuple[int, bytes, dict[str, str]]:
        """GET on the health listener from ``source``, with ``host`` as the Host header."""
        connection = http.client.HTTPConnection(source, self.health_port, timeout=10, source_address=(source, 0))
        try:
            connection.request("GET", path, headers={"Host": host or f"127.0.0.1:{self.health_port}"})
            response = connection.getresponse()
            return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def mtls_get(self, path: str, identity: str) -> tuple[int, Any]:
        host, port = self.registry.url.removeprefix("https://").rsplit(":", 1)
        connection = http.client.HTTPSConnection(host, int(port), context=self.certs.client_context(identity), timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def close(self) -> None:
        self.stop_calls.set()
        self.caller.join(timeout=15)
        self.browser.close()
        self.mesh.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    board = Dashboard(Path(tmp_path_factory.mktemp("dashboard")))
    try:
        yield board
    finally:
        board.close()


# What the page shows, read from its DOM.
ROWS = "[...document.querySelectorAll('#agents tr[data-agent-id]')].map(r => ({name: r.dataset.name, id: r.dataset.agentId, health: r.dataset.health, text: r.innerText}))"
EDGES = ("[...document.querySelectorAll('#graph g.edge')].map(g => ({from: g.dataset.fromName, to: g.dataset.toName, "
         "calls: Number(g.dataset.calls), label: g.querySelector('text').textContent}))")


def test_the_page_shows_the_running_agents_and_the_calls_between_them(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    browser.navigate(dashboard.url)
    rows = browser.wait_for(ROWS, 30, "the three agents, healthy",
                            lambda rows: sorted((r["name"], r["health"]) for r in rows) == [(n, "healthy") for n in AGENTS])
    by_name = {r["name"]: r for r in rows}
    assert by_name["stats"]["id"] == dashboard.agents["stats"].agent_id
    assert "mean3@1.0.0" in by_name["stats"]["text"] and "sum3@" in by_name["calc-a"]["text"], rows
    assert "spiffe://toolmesh.local/agent/calc-b" in by_name["calc-b"]["text"], rows
    assert re.search(r"\bin \d+ (d|h|min|s)\b", by_name["calc-a"]["text"]), f"a certificate expiry ('in N d'): {rows}"
    edges = browser.wait_for(EDGES, 30, "an edge with calls from stats to a calculator",
                             lambda edges: any(e["from"] == "stats" and e["to"] in ("calc-a", "calc-b") and e["calls"] > 0 for e in edges))
    label = next(e["label"] for e in edges if e["from"] == "stats" and e["calls"] > 0)
    assert "/s" in label and "% err" in label and ("ms" in label or "µs" in label), label
    assert browser.evaluate("document.getElementById('status').dataset.state") == "ok"
    screenshot = os.environ.get("TOOLMESH_DASHBOARD_SCREENSHOT")
    if screenshot:
        # Both calculators called, so the picture shows the spread.
        browser.wait_for(EDGES, 30, "calls to both calculators",
                         lambda edges: {e["to"] for e in edges if e["from"] == "stats" and e["calls"] > 0} == {"calc-a", "calc-b"})
        open_a_mean3_trace(browser)  # and one trace open, as a waterfall
        browser.screenshot(Path(screenshot))


def test_the_snapshot_numbers_are_the_calls_made(dashboard: Dashboard) -> None:
    status, body, headers = dashboard.plain_get("/dashboard/state.json")
    assert status == 200, body
    assert headers["cache-control"] == "no-store" and "default-src 'none'" in headers["content-security-policy"], headers
    state = json.loads(body)
    ids = {a["name"]: a["agent_id"] for a in state["agents"]}
    edges = [e for e in state["edges"] if e["from"] == ids["stats"]]
    # stats depends on sum3, which both calculators provide.
    assert sorted((e["to"], e["declared"]) for e in edges) == sorted([(ids["calc-a"], True), (ids["calc-b"], True)]), state["edges"]
    edges = [e for e in edges if e["calls"] > 0]
    assert edges, state["edges"]
    for edge in edges:
        assert edge["calls"] > 0 and edge["errors"] == 0 and edge["error_rate"] == 0, edge
        assert 0 < edge["mean_latency_ms"] < 5000 and edge["calls_per_second"] > 0, edge
    # Each calculator's sum3 calls add, on itself or the other one.
    assert any(e["from"] in (ids["calc-a"], ids["calc-b"]) for e in state["edges"]), state["edges"]
    assert all(a["certificate_not_after"] > state["time_unix_ms"] / 1000 for a in state["agents"]), state["agents"]


def test_the_traces_panel_lists_the_agents_traces_and_draws_a_waterfall(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    browser.navigate(dashboard.url)
    browser.wait_for("document.getElementById('status').dataset.state", 30, "the first poll", lambda s: s == "ok")
    # The agents name no OTLP collector, so their spans (stats' mean3 calls) go to the registry's
    # trace store, which the panel lists (every 5 s an agent exports, every 2 s the page polls).
    status, body, _ = dashboard.plain_get("/dashboard/traces.json?last=20")
    assert status == 200 and isinstance(json.loads(body)["traces"], list), body
    listed = browser.wait_for("[...document.querySelectorAll('#traces-list tr')].map(r => r.innerText)", 30,
                              "the agents' traces listed", lambda rows: any("mean3" in r for r in rows))
    assert any("stats" in r for r in listed), listed
    assert browser.evaluate("document.getElementById('traces-empty').hidden") is True
    ms = 1_000_000
    t0 = 1_796_601_600_000 * ms
    trace = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "spans": [
        {"span_id": "c3", "parent_span_id": "b2", "name": "tools/call sum3", "service": "calc-a", "kind": "SERVER",
         "start_unix_nano": t0 + 2 * ms, "end_unix_nano": t0 + 8 * ms, "error": "TOOL_FAILED", "attributes": {"gen_ai.tool.name": "sum3"}},
        {"span_id": "a1", "parent_span_id": None, "name": "tools/call mean3", "service": "stats", "kind": "SERVER",
         "start_unix_nano": t0, "end_unix_nano": t0 + 10 * ms, "error": None, "attributes": {}},
        {"span_id": "b2", "parent_span_id": "a1", "name": "tools/call sum3", "service": "stats", "kind": "CLIENT",
         "start_unix_nano": t0 + 1 * ms, "end_unix_nano": t0 + 9 * ms, "error": None, "attributes": {}},
    ]}
    rows = browser.evaluate(f"""(() => {{
        const box = renderWaterfall({json.dumps(trace)});
        return [...box.querySelectorAll('.wf-row')].map(r => {{
            const bar = r.querySelector('.wf-bar');
            return {{id: r.dataset.spanId, depth: Number(r.dataset.depth), left: parseFloat(bar.style.left),
                     width: parseFloat(bar.style.width), error: bar.classList.contains('error'), label: r.innerText}};
        }});
    }})()""")
    assert [(r["id"], r["depth"], round(r["left"]), round(r["width"]), r["error"]) for r in rows] == [
        ("a1", 0, 0, 100, False), ("b2", 1, 10, 80, False), ("c3", 2, 20, 60, True)], rows
    assert "calc-a" in rows[2]["label"] and "tools/call sum3" in rows[2]["label"], rows


# A listed trace of a mean3 call: the page draws what the store holds of it and draws it again as
# its last hops' spans arrive (they export a few seconds after the first).
MEAN3_TRACE = "[...document.querySelectorAll('#traces-list tr')].find(r => r.innerText.includes('mean3'))?.dataset.traceId"
WATERFALL = "[...document.querySelectorAll('#waterfall .wf-row')].map(r => [Number(r.dataset.depth), r.innerText])"


def open_a_mean3_trace(browser: Any) -> tuple[str, list[Any]]:
    """Clicks a listed trace of stats' mean3 call (from the registry's own trace store) and waits
    for its waterfall: stats' span, its call to sum3, and a calculator serving it."""
    trace_id = browser.wait_for(MEAN3_TRACE, 30, "a trace of stats' mean3 call listed")
    browser.evaluate(f"document.querySelector('#traces-list tr[data-trace-id=\"{trace_id}\"]').click(), true")
    rows = browser.wait_for(WATERFALL, 30, "the trace's waterfall, three hops deep",
                            lambda rows: len(rows) >= 3 and max(depth for depth, _ in rows) >= 2)
    return trace_id, rows


def test_a_listed_trace_opens_as_a_waterfall(dashboard: Dashboard) -> None:
    """The panel's list and click path against the registry's trace store: a real trace of stats'
    mean3 call opens as its call tree, one row per span the store holds."""
    browser = dashboard.browser
    browser.navigate(dashboard.url)
    trace_id, _ = open_a_mean3_trace(browser)

    def drawn_as_held() -> Optional[list[Any]]:
        # The page draws the trace again as more of its spans arrive: wait for it to catch up.
        status, body, _ = dashboard.plain_get(f"/dashboard/traces/{trace_id}.json")
        assert status == 200, body
        rows = browser.evaluate(WATERFALL)
        return rows if len(rows) == len(json.loads(body)["spans"]) else None
    rows = wait_until(drawn_as_held, 30, "the waterfall to draw every span the store holds of the trace")
    assert rows[0][0] == 0 and any("mean3" in label and "stats" in label for _, label in rows), rows
    assert any("sum3" in label and "calc-" in label for _, label in rows), rows


def test_only_this_machine_and_operators_may_open_it(dashboard: Dashboard) -> None:
    status, body, _ = dashboard.plain_get("/dashboard/", host=f"localhost:{dashboard.health_port}")
    assert status == 200 and b"renderWaterfall" in body
    status, body, _ = dashboard.plain_get("/dashboard/state.json", host=f"rebind.example:{dashboard.health_port}")
    assert status == 403 and b"DNS rebinding" in body, body
    # Over mTLS: an operator certificate reads it, an agent's is refused.
    status, state = dashboard.mtls_get("/dashboard/state.json", "operator")
    assert status == 200 and {a["name"] for a in state["agents"]} >= set(AGENTS), state
    status, refusal = dashboard.mtls_get("/dashboard/state.json", "calc-a")
    assert status == 403 and "admin" in refusal["message"], refusal
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    status, body, _ = dashboard.plain_get("/dashboard/state.json", host=f"127.0.0.1:{dashboard.health_port}", source=address)
    assert status == 403 and b"served to this machine only" in body, body
    # The same listener still answers probes from anywhere.
    assert dashboard.plain_get("/health", source=address)[0] == 200


def test_the_open_page_follows_an_agent_that_dies(dashboard: Dashboard) -> None:
    browser = dashboard.browser
    browser.navigate(dashboard.url)
    browser.wait_for(ROWS, 30, "calc-b healthy", lambda rows: any(r["name"] == "calc-b" and r["health"] == "healthy" for r in rows))
    dashboard.agents["calc-b"].process.stop(signal.SIGKILL)
    # Without a reload: the page's own polling shows calc-b unhealthy, then gone once evicted.
    rows = browser.wait_for(ROWS, 30, "calc-b not healthy or gone",
                            lambda rows: not any(r["name"] == "calc-b" and r["health"] == "healthy" for r in rows))
    assert {r["name"]: r["health"] for r in rows if r["name"] != "calc-b"} == {"calc-a": "healthy", "stats": "healthy"}, rows
    browser.wait_for(ROWS, 30, "calc-b evicted", lambda rows: "calc-b" not in {r["name"] for r in rows})
    browser.wait_for(EDGES, 30, "no edge to calc-b", lambda edges: all(e["to"] != "calc-b" for e in edges))
