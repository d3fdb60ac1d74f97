"""The official MCP conformance suite's fixtures on a Python agent (`scripts/conformance.sh
--agent python`): the same tools, resources and prompts as core's `conformance_agent` example,
written with the Python binding's public API only, so the suite judges what a Python author gets.

Configured like any agent, through `TOOLMESH_*` variables; prints `endpoint <url>` once it listens
and serves until its standard input closes."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any, Optional

import toolmesh

# A 1x1 red PNG and a minimal WAV, the suite's own samples.
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
PNG = base64.b64decode(PNG_BASE64)
# The schemas every language's fixture agent shares.
SCHEMAS = json.loads((Path(__file__).parent / "schemas.json").read_text())

agent = toolmesh.Agent("conformance")


# --- Tools answering text, errors and rich content ---------------------------------------------

@agent.tool
def test_simple_text() -> str:
    """Returns a simple text response"""
    return "This is a simple text response for testing."


@agent.tool
def test_error_handling() -> str:
    """Always fails, to test error reporting"""
    raise RuntimeError("This tool intentionally returns an error for testing")


@agent.tool
def test_image_content() -> toolmesh.Image:
    """Returns an image"""
    return toolmesh.Image(PNG, "image/png")


@agent.tool
def test_audio_content() -> toolmesh.Audio:
    """Returns audio"""
    return toolmesh.Audio(base64.b64decode(WAV_BASE64), "audio/wav")


@agent.tool
def test_embedded_resource() -> toolmesh.EmbeddedResource:
    """Returns an embedded resource"""
    return toolmesh.EmbeddedResource("test://embedded-resource", text="This is an embedded resource content.",
                                     mime_type="text/plain")


@agent.tool
def test_multiple_content_types() -> list:
    """Returns text, an image and an embedded resource"""
    return [
        toolmesh.Text("Multiple content types test:"),
        toolmesh.Image(PNG, "image/png"),
        toolmesh.EmbeddedResource("test://mixed-content-resource", text='{"test":"data","value":123}',
                                  mime_type="application/json"),
    ]


@agent.tool
async def test_tool_with_progress() -> str:
    """Reports progress 0, 50 and 100 of 100"""
    context = toolmesh.context()
    for step, progress in enumerate((0, 50, 100)):
        if step:
            await asyncio.sleep(0.05)
        context.report_progress(progress, 100)
    return "Progress reported: 0, 50 and 100 of 100"


async def _log_three() -> str:
    context = toolmesh.context()
    for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if step:
            await asyncio.sleep(0.05)
        context.log("info", message)
    return "Logged three messages at info level"


@agent.tool
async def test_tool_with_logging() -> str:
    """Logs three messages at info level"""
    return await _log_three()


@agent.tool
async def test_logging_tool() -> str:
    """Logs a message (sent only to a client that asked for a level)"""
    return await _log_three()


@agent.tool(input_schema=SCHEMAS["json_schema_2020_12_tool"])
def json_schema_2020_12_tool(**arguments: Any) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return f"received {arguments}"


@agent.tool
def greet(name: str) -> str:
    """Says hello (synchronous, no task support)"""
    return f"Hello, {name}!"


# --- The tasks extension (SEP-2663): these run as tasks for a client that negotiated it --------

WORK = 0.4  # seconds: past core's 100 ms window for a direct answer, so the call becomes a task


@agent.tool(task_support="optional",
            input_schema={"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0},
                                                           "label": {"type": "string"}}})
async def slow_compute(seconds: float = 0, label: str = "") -> str:
    """Sleeps the given seconds, then answers with its label"""
    seconds = max(float(seconds), 0.0)
    await asyncio.sleep(seconds)  # tasks/cancel cancels the coroutine here
    return f"computed {label} in {seconds} s"


@agent.tool(task_support="required")
async def failing_job() -> str:
    """Works for a second, then reports a tool error"""
    await asyncio.sleep(WORK)
    raise RuntimeError("failing_job failed, as it always does")


@agent.tool(task_support="optional")
async def protocol_error_job() -> Any:
    """Works for a second, then ends without an answer"""
    await asyncio.sleep(WORK)
    return object()  # not JSON: core fails the task with a protocol error


@agent.tool(task_support="optional")
async def confirm_delete(filename: str = "") -> Any:
    """Looks the file up, asks the client to confirm, then deletes it"""
    await asyncio.sleep(WORK)
    given = answer("confirm")
    if given is None:
        return toolmesh.InputRequired({"confirm": elicit(f"Delete {filename}?", "confirm")})
    return f"deleted {filename}" if given.get("action") == "accept" else f"kept {filename}"


@agent.tool(task_support="optional")
async def multi_input() -> Any:
    """Asks two questions at once, then answers with both"""
    await asyncio.sleep(WORK)
    first, second = answer("first"), answer("second")
    if first is None or second is None:
        return toolmesh.InputRequired({"first": elicit("First question: your name?", "name"),
                                       "second": elicit("Second question: your name again?", "name")})
    return f"got {js(first['content'].get('name'))} and {js(second['content'].get('name'))}"


@agent.tool(task_support="required")
async def test_tool_with_task() -> Any:
    """Asks for the user's name in the call itself, then greets them from a task"""
    given = answer("user_name")
    if given is None:  # at once, so core answers directly
        return toolmesh.InputRequired({"user_name": elicit("What is your name?", "name")})
    await asyncio.sleep(WORK)
    return f"Hello, {given['content'].get('name', 'stranger')}!"


@agent.tool(required_client_capabilities=["sampling"])
def test_missing_capability() -> str:
    """Needs the client's sampling capability"""
    return "The client declared sampling"


@agent.tool(input_schema={"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                          "required": ["region"]})
def test_headers(region: str) -> str:
    """Echoes a parameter that callers mirror in the Mcp-Param-Region header"""
    return f'region "{region}"'


# --- Input requests (SEP-2322): answered by the client in a later call -------------------------

def elicit(message: str, field: str) -> dict[str, Any]:
    return elicit_with(message, {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]})


def elicit_with(message: str, requested_schema: dict[str, Any]) -> dict[str, Any]:
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": requested_schema}}


def sample(question: str, max_tokens: int) -> dict[str, Any]:
    return {"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": question}}], "maxTokens": max_tokens}}


ROOTS = {"method": "roots/list", "params": {}}


def answer(key: str) -> Optional[dict[str, Any]]:
    return (toolmesh.context().input_responses or {}).get(key)


def ask_name() -> Any:
    given = answer("user_name")
    if given is None:
        return toolmesh.InputRequired({"user_name": elicit("What is your name?", "name")})
    return f"Hello, {given['content'].get('name', 'stranger')}!"


@agent.tool
def test_input_required_result_elicitation() -> Any:
    """Asks the client for the user's name"""
    return ask_name()


@agent.tool
def test_streaming_elicitation() -> Any:
    """Asks the client for the user's name, on the request's stream"""
    return ask_name()


@agent.tool
def test_input_required_result_sampling() -> Any:
    """Asks the client's model a question"""
    given = answer("capital_question")
    if given is None:
        return toolmesh.InputRequired({"capital_question": sample("What is the capital of France?", 100)})
    return f"The model answered: {given['content'].get('text', '')}"


@agent.tool
def test_input_required_result_list_roots() -> Any:
    """Asks the client for its roots"""
    given = answer("client_roots")
    if given is None:
        return toolmesh.InputRequired({"client_roots": ROOTS})
    return "The client's roots: " + ", ".join(root["uri"] for root in given.get("roots", []))


def confirm() -> Any:
    state = toolmesh.context().request_state
    if answer("confirm") is not None and isinstance(state, dict) and state.get("asked") == "confirm":
        return "Confirmed: state-ok"
    return toolmesh.InputRequired(
        {"confirm": {"method": "elicitation/create", "params": {"message": "Please confirm", "requestedSchema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}},
        state={"asked": "confirm"})


@agent.tool
def test_input_required_result_request_state() -> Any:
    """Asks for a confirmation, with state to get back"""
    return confirm()


@agent.tool
def test_input_required_result_tampered_state() -> Any:
    """Asks with state that core seals"""
    return confirm()


@agent.tool
def test_input_required_result_multiple_inputs() -> Any:
    """Asks for a name, a greeting and the roots at once"""
    keys = ("user_name", "greeting", "client_roots")
    if all(answer(key) is not None for key in keys) and toolmesh.context().request_state is not None:
        return "Received a name, a greeting and the roots"
    return toolmesh.InputRequired(
        {"user_name": elicit("What is your name?", "name"), "greeting": sample("Generate a greeting", 50),
         "client_roots": ROOTS},
        state={"asked": "all three"})


@agent.tool
def test_input_required_result_multi_round() -> Any:
    """Asks for a name, then a colour"""
    state = toolmesh.context().request_state
    round_ = state.get("round") if isinstance(state, dict) else None
    if round_ == 2 and answer("step2") is not None:
        return f"Favourite colour: {answer('step2')['content'].get('color', '')}"  # type: ignore[index]
    if round_ == 1 and answer("step1") is not None:
        name = answer("step1")["content"].get("name", "")  # type: ignore[index]
        return toolmesh.InputRequired({"step2": elicit("Step 2: What is your favorite color?", "color")},
                                      state={"round": 2, "name": name})
    return toolmesh.InputRequired({"step1": elicit("Step 1: What is your name?", "name")}, state={"round": 1})


@agent.tool
def test_input_required_result_capabilities() -> Any:
    """Asks only what the client declared it can answer"""
    context = toolmesh.context()
    declared = context.client_capabilities or {}
    requests = {}
    if "sampling" in declared:
        requests["capital_question"] = sample("What is the capital of France?", 100)
    if "elicitation" in declared:
        requests["user_name"] = elicit("What is your name?", "name")
    if requests and context.input_responses is None:
        return toolmesh.InputRequired(requests)
    return "Asked only what the client can answer"


# Legacy (2025-11-25) clients get these requests on the call's stream (core sends them).

def js(value: Any) -> str:
    """A value as the suite's JavaScript renders JSON (compact)."""
    return json.dumps(value, separators=(",", ":"))


@agent.tool
def test_elicitation(message: str) -> Any:
    """Asks the user for a name and an email"""
    given = answer("user_info")
    if given is None:
        return toolmesh.InputRequired({"user_info": elicit_with(message, SCHEMAS["elicit_user_info"])})
    return f"User response: action={js(given.get('action'))}, content={js(given.get('content'))}"


@agent.tool
def test_sampling(prompt: str) -> Any:
    """Asks the client's model to answer a prompt"""
    given = answer("completion")
    if given is None:
        return toolmesh.InputRequired({"completion": sample(prompt, 100)})
    return f"LLM response: {given['content'].get('text', '')}"


def form(schema: str) -> Any:
    given = answer("form")
    if given is None:
        return toolmesh.InputRequired({"form": elicit_with("Please fill in the form", SCHEMAS[schema])})
    return f"Elicitation completed: action={js(given.get('action'))}, content={js(given.get('content'))}"


@agent.tool
def test_elicitation_sep1034_defaults() -> Any:
    """Asks with a default for every primitive type"""
    return form("elicit_sep1034_defaults")


@agent.tool
def test_elicitation_sep1330_enums() -> Any:
    """Asks with every kind of enum"""
    return form("elicit_sep1330_enums")


# --- Resources and prompts ---------------------------------------------------------------------

agent.add_resource("test://static-text", name="static-text", description="A static text resource",
                   mime_type="text/plain", text="This is the content of the static text resource.")
agent.add_resource("test://static-binary", name="static-binary", description="A static binary resource (a PNG)",
                   mime_type="image/png", blob=PNG)
agent.add_resource("test://watched-resource", name="watched-resource", description="A resource a client may watch",
                   mime_type="text/plain", text="Watched resource content.")


@agent.resource("test://template/{id}/data", name="template-data", mime_type="application/json",
                description="Data for an id, read through the handler")
def template_data(id: str) -> dict[str, Any]:  # noqa: A002 - the template's variable is named id
    data = {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}
    return {"contents": [{"uri": f"test://template/{id}/data", "mimeType": "application/json", "text": json.dumps(data)}]}


@agent.prompt
def test_simple_prompt() -> str:
    """A simple prompt without arguments"""
    return "This is a simple prompt for testing."


@agent.prompt
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments"""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@agent.prompt
def test_prompt_with_embedded_resource(resourceUri: str) -> list:  # noqa: N803 - the suite's argument name
    """A prompt embedding a resource"""
    return [toolmesh.EmbeddedResource(resourceUri, text="Embedded resource content for testing.", mime_type="text/plain"),
            "Please process the embedded resource above."]


@agent.prompt
def test_prompt_with_image() -> list:
    """A prompt with an image"""
    return [toolmesh.Image(PNG, "image/png"), "Please analyze the image above."]


@agent.prompt
def test_input_required_result_prompt() -> Any:
    """Asks the client for context before it answers"""
    given = answer("user_context")
    if given is None:
        return toolmesh.InputRequired({"user_context": elicit("What context should the prompt use?", "context")})
    return f"Prompt with context: {given['content'].get('context', '')}"


async def main() -> None:
    async with agent:
        print(f"endpoint {agent.endpoint}", flush=True)
        # Serve until the script that started us closes our standard input (or dies).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
