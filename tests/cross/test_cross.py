"""Identical behaviour, proven: every row of cases.json, run with the caller and the callee in
each of Python, Node, Java and C, must give every language the same outcome — the same error
code and the same message, or the same result. A failing row names its languages in its id,
e.g. `test_call[tool_raises:python->java]`.

The only normalisation (crossmesh.normalised): a port in a loopback address is written PORT (the
ports are random), the clock's reading in a message NOW, and a rate limit's time to retry N."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any, Iterator, Optional

import time

import pytest
from crossmesh import LANGUAGES, TABLE, CrossMesh, fill, normalised, plaintext_answer, tls_refusal
from cryptography import x509

TRACE_ID = TABLE["request"]["trace_id"]
RATE_LIMITED = 7002


# Here rather than in a conftest.py: tests/python imports its conftest by that name, and a second
# one would shadow it when both directories are collected together.
@pytest.fixture(scope="session")
def cross(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrossMesh]:
    """One mesh for the whole session: the registry and every language's caller and callee."""
    mesh = CrossMesh(Path(tmp_path_factory.mktemp("cross")))
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.close()


def rows(cases: list[dict[str, Any]], dimension: str) -> list[Any]:
    """One pytest row per case and language, named CASE:LANGUAGE (the ``dimension`` it varies)."""
    return [pytest.param(case, language, id=f"{case['case']}:{dimension}={language}") for case in cases for language in LANGUAGES]


def call_rows() -> list[Any]:
    """One pytest row per call case and (caller, callee) pair, named CASE:CALLER->CALLEE; a case
    without a callee varies the caller only."""
    params = []
    for case in TABLE["calls"]:
        for caller in LANGUAGES:
            for callee in LANGUAGES if case["callee"] else [None]:
                pair = f"{caller}->{callee}" if callee else f"{caller}"
                params.append(pytest.param(case, caller, callee, id=f"{case['case']}:{pair}"))
    return params


# Start-up: each language starts an agent with a bad certificate (its own language's error).
@pytest.mark.parametrize(("case", "language"), rows(TABLE["startup"], "agent"))
def test_startup_refused(cross: CrossMesh, case: dict[str, Any], language: str) -> None:
    identity = {"foreign": cross.foreign, "expired": cross.expired}[case["identity"]]
    certificate = x509.load_pem_x509_certificate(identity.pem("starter").read_bytes())
    expected = fill(case["expect"], cert=str(identity.pem("starter")), ca=str(cross.certs.ca),
                    not_after=certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"))
    outcome = normalised(cross.start_alone(language, identity))
    assert outcome == expected, f"a {language} agent starting with the {case['identity']} certificate"


# TLS refusals: the test is the client, each language's agent the server that refuses it.
@pytest.mark.parametrize(("case", "callee"), rows(TABLE["tls"], "callee"))
def test_tls_refused(cross: CrossMesh, case: dict[str, Any], callee: str) -> None:
    cross.enter("live")
    endpoint = cross.callee_endpoint(callee)
    if case["client"] == "plaintext":
        status, body = plaintext_answer(endpoint)
        assert {"status": status, "body": body} == case["expect"], f"plain HTTP to the {callee} agent"
    else:
        alert = tls_refusal(endpoint, cross.client_context(case["client"]))
        assert {"alert": alert} == case["expect"], f"a client with certificate '{case['client']}' to the {callee} agent"


def test_one_trace_and_the_allowed_header_cross_every_language(cross: CrossMesh) -> None:
    cross.enter("live")
    hops = []
    hop: Optional[dict[str, Any]] = cross.call_chain()
    while hop is not None:
        hops.append({key: value for key, value in hop.items() if key not in ("next", "remaining_ms")})
        hop = hop["next"]
    chain = TABLE["chain"]
    # The first hop also sees the header the test set on purpose; no hop forwards it.
    expected = [fill(chain["expect_first_hop" if i == 0 else "expect_hop"], hop=language, trace_id=TRACE_ID)
                for i, language in enumerate(chain["languages"])]
    assert hops == expected


def test_the_deadline_shrinks_hop_by_hop_through_every_language(cross: CrossMesh) -> None:
    """The first caller gives the chain a deadline; each hop's handler reads what is left of it in
    its language (Python remaining_ms, Node remainingMs, Java remainingMillis(), C
    toolmesh_invocation_remaining_ms) and spends some before calling the next: each hop sees at
    least that much less than the one before."""
    cross.enter("live")
    budget = TABLE["chain"]["budget"]
    budget_ms, spend_ms = budget["deadline_ms"], budget["spend_ms"]
    hop: Optional[dict[str, Any]] = cross.call_chain_on_a_budget()
    seen = []
    while hop is not None:
        seen.append((hop["language"], hop["remaining_ms"]))
        hop = hop["next"]
    assert [language for language, _ in seen] == TABLE["chain"]["languages"]
    remaining = [ms for _, ms in seen]
    assert all(isinstance(ms, int) for ms in remaining), seen
    assert budget_ms >= remaining[0] and all(a - b >= spend_ms for a, b in zip(remaining, remaining[1:])), seen
    # The caller's budget, not another one: four hops on loopback spend well under half of it.
    assert remaining[-1] > budget_ms / 2, seen


def chain_events(cross: CrossMesh, tenant: str) -> Iterator[dict[str, Any]]:
    """Calls the chain (Python → Node → Java → C) asking for progress, and yields the JSON-RPC
    messages of its event stream as they arrive; closing the generator closes the connection."""
    endpoint = cross.callee_endpoint(TABLE["chain"]["languages"][0])
    host_port, path = endpoint.removeprefix("https://").split("/", 1)
    host, port = host_port.rsplit(":", 1)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "chain", "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {},
        "progressToken": "cross-1"}}}
    headers = {**cross.request_headers(), "X-Tenant": tenant, "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
               "Mcp-Method": "tools/call", "Mcp-Name": "chain"}
    connection = http.client.HTTPSConnection(host, int(port), context=cross.operator, timeout=30)
    try:
        connection.request("POST", "/" + path, body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        assert response.getheader("content-type") == "text/event-stream", response.getheader("content-type")
        for line in response:
            if line.startswith(b"data: "):
                yield json.loads(line[len(b"data: "):])
    finally:
        connection.close()


def test_the_last_hops_progress_reaches_the_first_caller_through_every_language(cross: CrossMesh) -> None:
    cross.enter("live")
    messages = list(chain_events(cross, "acme"))
    progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    assert progress == [{"progressToken": "cross-1", "progress": 1.0, "total": 1.0, "message": "the end of the chain"}]
    hop, languages = messages[-1]["result"]["structuredContent"], []
    while hop is not None:
        languages.append(hop["language"])
        hop = hop["next"]
    assert languages == TABLE["chain"]["languages"]


def test_a_first_caller_that_goes_away_cancels_the_last_hop_through_every_language(cross: CrossMesh) -> None:
    cross.enter("live")
    last = cross.callees[TABLE["chain"]["languages"][-1]].process
    events = chain_events(cross, "hang")
    first = next(events)  # the last hop's progress: every hop is waiting on the next
    assert first.get("method") == "notifications/progress", first
    closed = time.monotonic()
    events.close()
    last.wait_for_line(re.compile(r"^chain: cancelled$", re.MULTILINE), timeout=10)
    # Three hops to cross, 100 ms each at most; the log line is polled every 50 ms.
    assert time.monotonic() - closed < 0.3 + 0.1, f"cancelled after {time.monotonic() - closed:.3f} s"


def test_a_rich_result_crosses_every_language_unchanged(cross: CrossMesh) -> None:
    cross.enter("live")
    rich = TABLE["rich_chain"]
    result = cross.call_rich_chain()
    assert not result.get("isError"), result
    assert {key: result.get(key) for key in rich["result"]} == rich["result"], " → ".join(rich["languages"])


# Headers a caller sets on purpose: the test calls each language's echo itself.
@pytest.mark.parametrize(("case", "callee"), rows(TABLE["first_hop_headers"], "callee"))
def test_first_hop_headers(cross: CrossMesh, case: dict[str, Any], callee: str) -> None:
    cross.enter("live")
    seen = cross.echo(callee, case["caller_headers"])
    assert seen == fill(case["expect"], callee=callee, trace_id=TRACE_ID), f"the {callee} handler ({case['about']})"


# Tool annotations declared in each language reach tools/list and the registry.
@pytest.mark.parametrize(("case", "callee"), rows(TABLE["annotations"], "callee"))
def test_annotations(cross: CrossMesh, case: dict[str, Any], callee: str) -> None:
    cross.enter("live")
    listed, recorded = cross.tool_annotations(callee, case["tool"])
    assert {"tools/list": listed, "registry": recorded} == {"tools/list": case["expect"], "registry": case["expect"]}, case["about"]


def pair_rows(cases: list[dict[str, Any]]) -> list[Any]:
    """One pytest row per case and (caller, callee) pair, named CASE:CALLER->CALLEE."""
    return [pytest.param(case, caller, callee, id=f"{case['case']}:{caller}->{callee}")
            for case in cases for caller in LANGUAGES for callee in LANGUAGES]


# Lists: the test asks each callee language's guarded agents for tools/list as each caller.
@pytest.mark.parametrize(("case", "caller", "callee"), pair_rows(TABLE["lists"]))
def test_list_filtered(cross: CrossMesh, case: dict[str, Any], caller: str, callee: str) -> None:
    cross.enter("live")
    identity = fill(case["as"], caller=caller)
    listed = {kind: cross.list_tools(callee, kind, identity) for kind in case["expect"]}
    assert listed == case["expect"], f"tools/list of the {callee} agents as {identity} ({case['about']})"


# Registration: each language's agent asks the registry for a name its certificate does not carry.
@pytest.mark.parametrize(("case", "language"), rows(TABLE["registration"], "agent"))
def test_registration_refused(cross: CrossMesh, case: dict[str, Any], language: str) -> None:
    cross.enter("live")
    outcome = normalised(cross.squat(language, case["identity"]))
    assert outcome == fill(case["expect"], language=language, registry=cross.registry.url), f"a {language} agent squatting ({case['about']})"


@pytest.mark.parametrize(("case", "caller", "callee"), call_rows())
def test_call(cross: CrossMesh, case: dict[str, Any], caller: str, callee: Optional[str]) -> None:
    if case.get("pending"):
        pytest.skip(f"pending: {case['pending']}")
    cross.enter(case["phase"])
    hops = TABLE["chain"]["languages"]
    following = hops[(hops.index(callee) + 1) % len(hops)] if callee else ""
    values = {"caller": caller, "callee": callee or "", "following": following, "trace_id": TRACE_ID}
    for _ in range(case.get("calls_in_a_row", 1) - 1):
        first = normalised(cross.probe(caller, case["case"], callee))
        if first.get("error", {}).get("code") == RATE_LIMITED and first != fill(case["expect_first"], **values):
            # An earlier call (the suite's settling) may still hold the limit: wait it out once.
            time.sleep(1.1)
            first = normalised(cross.probe(caller, case["case"], callee))
        assert first == fill(case["expect_first"], **values), f"{caller} calling {callee}, the first of a row ({case['about']})"
    if case.get("cancelled_after_first_progress"):
        outcome = normalised(cross.probe_cancelled(caller, case["case"], callee))
    else:
        outcome = normalised(cross.probe(caller, case["case"], callee))
    expected = fill(case["expect"], **values)
    assert outcome == expected, f"{caller} calling {callee or 'nobody'} ({case['about']})"
