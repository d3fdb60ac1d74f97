"""The Python peer of the cross-language suite (peer.mjs, Peer.java and peer.c are its twins).

    peer.py ROLE CASES_JSON

ROLE is one of
  caller     agent caller-python: one probe tool per call case and callee language, which calls
             the case's dependency through a toolmesh.Proxy and answers {"ok": result} or
             {"error": {code, name, message}} as caught here (a tool error also
             with app_code and data);
  callee     agent callee-python serving the callee tools of the table, and agents
             misnamed-python (on the table's misnamed host), replaced-python and aloof-python
             (admitting only the table's aloof_allowed_ids) serving echo;
  restarted  agent callee-python again, without the table's vanishing tool;
  impostor   agent replaced-python again (started with another CA's identity);
  guarded    agent guarded-python serving the table's guarded tools (echo each), and agent
             relay-python serving relay, which calls relayed of guarded-python; both enforce the
             policy the harness names in TOOLMESH_POLICY_FILE;
  squat      agent squatter-python serving echo, under an identity that does not carry its name
             (the registry refuses it: core logs why);
  start      starts agent starter-python and prints {"ok": "started"} or the {"error": ...} it
             caught, as one JSON line on stdout.
Everything else (identity, registry, port, propagated headers) comes from TOOLMESH_* variables.
Each agent prints `toolmesh agent NAME serving ENDPOINT (id ID)` on stderr once it serves.
"""

import asyncio
import enum
import json
import os
import signal
import sys
from typing import Any, Optional

import toolmesh

LANGUAGE = "python"


class Colour(enum.Enum):
    """paint's parameter: its schema lists these values, and decoding builds the enum."""

    red = "red"
    green = "green"
    blue = "blue"


def caught(error: toolmesh.ToolmeshError) -> dict:
    reported = {"code": error.code, "name": error.name, "message": error.message}
    if isinstance(error, toolmesh.ToolError):
        reported.update(app_code=error.app_code, data=error.data)
    return {"error": reported}


def here() -> dict:
    return {"language": LANGUAGE, "headers": toolmesh.headers(), "trace_id": toolmesh.trace_id()}


def tag(table: dict, kind: str, language: str) -> str:
    """The tag of ``language``'s callee agent of ``kind`` ("agent", "misnamed", "replaced")."""
    return table["callee"]["tags"][kind].replace("{language}", language)


def add_probe(agent: toolmesh.Agent, name: str, selector: Any, timeout_ms: Optional[int], arguments: dict,
              call_headers: dict[str, str]) -> None:
    async def probe(dependency: toolmesh.Proxy = None) -> dict:
        try:
            with toolmesh.call_headers(call_headers):  # the case's headers, set on purpose in code
                return {"ok": await dependency(**arguments)}
        except toolmesh.ToolmeshError as error:
            return caught(error)

    agent.tool(probe, name=name, dependencies=[selector], timeout_ms=timeout_ms)


def caller(table: dict) -> toolmesh.Agent:
    agent = toolmesh.Agent(f"caller-{LANGUAGE}")
    for case in table["calls"]:
        arguments = json.loads(case.get("arguments_json", "{}"))  # Python's int is exact at any size
        call_headers = case.get("call_headers", {})
        if case["callee"] is None:
            add_probe(agent, case["case"], case["tool"], case.get("timeout_ms"), arguments, call_headers)
            continue
        for callee in table["languages"]:
            selector = {"capability": case["tool"], "tags": [tag(table, case["callee"], callee)]}
            add_probe(agent, f"{case['case']}__{callee}", selector, case.get("timeout_ms"), arguments, call_headers)
    return agent


def add_echo(agent: toolmesh.Agent, name: str, tags: list[str]) -> None:
    async def echo() -> dict:
        return here()

    agent.tool(echo, name=name, tags=tags)


def callee(table: dict, vanishing: bool) -> toolmesh.Agent:
    settings = table["callee"]
    agent = toolmesh.Agent(f"callee-{LANGUAGE}")
    tags = [tag(table, "agent", LANGUAGE)]
    add_echo(agent, "echo", tags)
    if vanishing:
        add_echo(agent, settings["vanishing_tool"], tags)

    @agent.tool(tags=tags)
    async def fail() -> None:
        raise RuntimeError(settings["fail_message"])

    @agent.tool(tags=tags)
    async def fail_without_message() -> None:
        raise RuntimeError()

    refusal = settings["tool_error"]

    @agent.tool(tags=tags)
    async def refuse() -> None:
        raise toolmesh.ToolError(refusal["app_code"], refusal["message"], data=refusal["data"])

    hops = table["chain"]["languages"]
    following = hops[(hops.index(LANGUAGE) + 1) % len(hops)]

    @agent.tool(tags=tags, dependencies=[{"capability": "refuse", "tags": [tag(table, "agent", following)]}])
    async def refuse_via(refuse: toolmesh.Proxy = None) -> dict:
        return await refuse()  # its ToolError goes to our caller unchanged

    @agent.tool(tags=tags, dependencies=[{"capability": "echo", "tags": [tag(table, "agent", following)]}])
    async def echo_via(echo: toolmesh.Proxy = None) -> dict:
        return {**here(), "next": await echo()}

    @agent.tool(tags=tags)
    async def not_json() -> object:
        return object()  # JSON has no such value

    @agent.tool(tags=tags, annotations={"readOnlyHint": True, "idempotentHint": True})
    async def count(n: int) -> dict:
        return {"n": n}

    @agent.tool(tags=tags)
    async def paint(colour: Colour) -> dict:
        return {"colour": colour.value}

    @agent.tool(tags=tags)
    async def slow() -> dict:
        # A caller that asked for progress learns that the call is under way (the cancelled case).
        toolmesh.context().report_progress(0, total=1, message="slow started")
        await asyncio.sleep(settings["slow_ms"] / 1000)
        return here()

    @agent.tool(tags=tags, task_support="required")
    async def job() -> dict:
        await asyncio.sleep(settings["job_ms"] / 1000)
        return here()

    hops, budget = table["chain"]["languages"], table["chain"]["budget"]
    rest = hops[hops.index(LANGUAGE) + 1:]
    if rest:
        @agent.tool(tags=tags, dependencies=[{"capability": "chain", "tags": [tag(table, "agent", rest[0])]}])
        async def chain(next_hop: toolmesh.Proxy = None) -> dict:
            seen = {**here(), "remaining_ms": toolmesh.current_context().remaining_ms}
            if toolmesh.headers().get("x-tenant") == budget["tenant"]:
                await asyncio.sleep(budget["spend_ms"] / 1000)
            return {**seen, "next": await next_hop()}
    else:
        @agent.tool(tags=tags)
        async def chain() -> dict:
            return {**here(), "remaining_ms": toolmesh.current_context().remaining_ms, "next": None}

    asking = table["input_required"]

    @agent.tool(tags=tags)
    async def ask() -> Any:
        context = toolmesh.context()
        if context.input_responses is None:
            return toolmesh.InputRequired(asking["requests"], state={"asked": LANGUAGE})
        name = context.input_responses["name"]["content"]["name"]
        return {"language": LANGUAGE, "hello": name, "state": context.request_state}

    # One dependency per language (all of capability ask), in the table's order; "to" picks one.
    languages = table["languages"]
    ask_dependencies = [{"capability": "ask", "tags": [tag(table, "agent", language)]} for language in languages]

    @agent.tool(tags=tags, dependencies=ask_dependencies)
    async def ask_via(to: str, p0: toolmesh.Proxy = None, p1: toolmesh.Proxy = None, p2: toolmesh.Proxy = None,
                      p3: toolmesh.Proxy = None) -> Any:
        return await (p0, p1, p2, p3)[languages.index(to)]()

    rich = table["rich_chain"]
    after = rich["languages"][rich["languages"].index(LANGUAGE) + 1:]
    if after:
        @agent.tool(tags=tags, dependencies=[{"capability": "rich_chain", "tags": [tag(table, "agent", after[0])]}])
        async def rich_chain(next_hop: toolmesh.Proxy = None) -> toolmesh.ToolResult:
            return await next_hop.call_result()
    else:
        @agent.tool(tags=tags)
        async def rich_chain() -> toolmesh.ToolResult:
            return toolmesh.ToolResult.from_mcp(rich["result"])

    return agent


def own_certificate(name: str) -> dict[str, str]:
    """The certificate of agent ``name`` when TOOLMESH_CROSS_CERTS names the directory holding
    one per agent (the registry takes an agent's name from its certificate); else nothing."""
    directory = os.environ.get("TOOLMESH_CROSS_CERTS")
    return {"tls_cert": f"{directory}/{name}.pem", "tls_key": f"{directory}/{name}.key"} if directory else {}


def echo_only(table: dict, kind: str, **options: Any) -> toolmesh.Agent:
    """Agent KIND-python, serving echo tagged as the table says for ``kind``, with its own certificate."""
    name = f"{kind}-{LANGUAGE}"
    agent = toolmesh.Agent(name, **own_certificate(name), **options)
    add_echo(agent, "echo", [tag(table, kind, LANGUAGE)])
    return agent


def guarded(table: dict) -> toolmesh.Agent:
    """Agent guarded-python, serving the table's guarded tools (each answers like echo)."""
    name = f"guarded-{LANGUAGE}"
    agent = toolmesh.Agent(name, **own_certificate(name))
    for tool in table["guarded"]["tools"]:
        add_echo(agent, tool, [tag(table, "guarded", LANGUAGE)])
    return agent


def relay(table: dict) -> toolmesh.Agent:
    """Agent relay-python: relay calls relayed of guarded-python on behalf of its own caller; a
    failure goes to that caller unchanged."""
    name = f"relay-{LANGUAGE}"
    agent = toolmesh.Agent(name, **own_certificate(name))
    dependency = {"capability": table["guarded"]["relayed_tool"], "tags": [tag(table, "guarded", LANGUAGE)]}

    @agent.tool(name="relay", tags=[tag(table, "relay", LANGUAGE)], dependencies=[dependency])
    async def relay_tool(relayed: toolmesh.Proxy = None) -> dict:
        return await relayed()

    return agent


async def serve(agents: list[toolmesh.Agent]) -> None:
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        for agent in agents:
            await agent.start()
            print(f"toolmesh agent {agent.name} serving {agent.endpoint} (id {agent.agent_id})", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for agent in agents:
            await agent.stop()


async def start_once(table: dict) -> None:
    agent = toolmesh.Agent(f"starter-{LANGUAGE}")
    add_echo(agent, "echo", [tag(table, "agent", LANGUAGE)])
    try:
        await agent.start()
    except toolmesh.ToolmeshError as error:
        print(json.dumps(caught(error)), flush=True)
        return
    print(json.dumps({"ok": "started"}), flush=True)
    await agent.stop()


def main() -> None:
    role, cases = sys.argv[1], sys.argv[2]
    with open(cases, encoding="utf-8") as file:
        table = json.load(file)
    if role == "start":
        asyncio.run(start_once(table))
        return
    agents = {
        "caller": lambda: [caller(table)],
        "callee": lambda: [callee(table, vanishing=True), echo_only(table, "misnamed", host=table["callee"]["misnamed_host"]),
                           echo_only(table, "replaced"),
                           echo_only(table, "aloof", tls_allowed_ids=table["callee"]["aloof_allowed_ids"])],
        "restarted": lambda: [callee(table, vanishing=False)],
        "impostor": lambda: [echo_only(table, "replaced")],
        "guarded": lambda: [guarded(table), relay(table)],
        "squat": lambda: [echo_only(table, "squatter")],
    }[role]()
    asyncio.run(serve(agents))


if __name__ == "__main__":
    main()
