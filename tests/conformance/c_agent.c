/*
 * The official MCP conformance suite's fixtures on a C agent (`scripts/conformance.sh --agent c`):
 * the same tools, resources and prompts as core's `conformance_agent` example, written with the C
 * ABI (include/toolmesh.h) only, so the suite judges what a C author gets. JSON with jansson.
 *
 * Configured like any agent, through `TOOLMESH_*` variables, and given the path of
 * tests/conformance/schemas.json; prints `endpoint <url>` once it listens and serves until its
 * standard input closes.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolmesh.h"

/* A 1x1 red PNG and a minimal WAV, the suite's own samples, base64 as MCP carries them. */
static const char PNG[] = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
static const char WAV[] = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
static const char EMPTY[] = "{\"type\": \"object\", \"properties\": {}}";
/* The schemas every language's fixture agent shares (tests/conformance/schemas.json, argv[1]). */
static json_t *schemas;

static json_t *schema(const char *name) {
  json_t *found = json_object_get(schemas, name);
  if (found == NULL) {
    fprintf(stderr, "c_agent: schemas.json has no %s\n", name);
    abort();
  }
  return found;
}

/* ---- declarations ---- */

static json_t *parsed(const char *text) {
  json_error_t problem;
  json_t *value = json_loads(text, 0, &problem);
  if (value == NULL) {
    fprintf(stderr, "c_agent: a fixture's JSON does not parse: %s\n", problem.text);
    abort();
  }
  return value;
}

static void declare_schema(json_t *tools, const char *name, const char *description, json_t *input_schema) {
  json_array_append_new(tools, json_pack("{s:s, s:s, s:o}", "name", name, "description", description, "input_schema", input_schema));
}

static void declare(json_t *tools, const char *name, const char *description, const char *input_schema) {
  declare_schema(tools, name, description, parsed(input_schema));
}

static void declare_task(json_t *tools, const char *name, const char *task_support, const char *description, const char *input_schema) {
  declare(tools, name, description, input_schema);
  json_object_set_new(json_array_get(tools, json_array_size(tools) - 1), "task_support", json_string(task_support));
}

static char *tools_json(void) {
  json_t *tools = json_array();
  declare(tools, "test_simple_text", "Returns a simple text response", EMPTY);
  declare(tools, "test_error_handling", "Always fails, to test error reporting", EMPTY);
  declare(tools, "test_image_content", "Returns an image", EMPTY);
  declare(tools, "test_audio_content", "Returns audio", EMPTY);
  declare(tools, "test_embedded_resource", "Returns an embedded resource", EMPTY);
  declare(tools, "test_multiple_content_types", "Returns text, an image and an embedded resource", EMPTY);
  declare(tools, "test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", EMPTY);
  declare(tools, "test_tool_with_logging", "Logs three messages at info level", EMPTY);
  declare(tools, "test_logging_tool", "Logs a message (sent only to a client that asked for a level)", EMPTY);
  declare_schema(tools, "json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", json_incref(schema("json_schema_2020_12_tool")));
  declare(tools, "greet", "Says hello (synchronous, no task support)",
          "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}}, \"required\": [\"name\"]}");
  /* The tasks extension (SEP-2663): these run as tasks for a client that negotiated it. */
  declare_task(tools, "slow_compute", "optional", "Sleeps the given seconds, then answers with its label",
               "{\"type\": \"object\", \"properties\": {\"seconds\": {\"type\": \"number\", \"minimum\": 0}, \"label\": {\"type\": \"string\"}}}");
  declare_task(tools, "failing_job", "required", "Works for a second, then reports a tool error", EMPTY);
  declare_task(tools, "protocol_error_job", "optional", "Works for a second, then ends without an answer", EMPTY);
  declare_task(tools, "confirm_delete", "optional", "Looks the file up, asks the client to confirm, then deletes it",
               "{\"type\": \"object\", \"properties\": {\"filename\": {\"type\": \"string\"}}}");
  declare_task(tools, "multi_input", "optional", "Asks two questions at once, then answers with both", EMPTY);
  declare_task(tools, "test_tool_with_task", "required", "Asks for the user's name in the call itself, then greets them from a task", EMPTY);
  declare(tools, "test_missing_capability", "Needs the client's sampling capability", EMPTY);
  json_object_set_new(json_array_get(tools, json_array_size(tools) - 1), "required_client_capabilities", json_pack("[s]", "sampling"));
  declare(tools, "test_headers", "Echoes a parameter that callers mirror in the Mcp-Param-Region header",
          "{\"type\": \"object\", \"properties\": {\"region\": {\"type\": \"string\", \"x-mcp-header\": \"Region\"}},"
          " \"required\": [\"region\"]}");
  declare(tools, "test_input_required_result_elicitation", "Asks the client for the user's name", EMPTY);
  declare(tools, "test_streaming_elicitation", "Asks the client for the user's name, on the request's stream", EMPTY);
  declare(tools, "test_input_required_result_sampling", "Asks the client's model a question", EMPTY);
  declare(tools, "test_input_required_result_list_roots", "Asks the client for its roots", EMPTY);
  declare(tools, "test_input_required_result_request_state", "Asks for a confirmation, with state to get back", EMPTY);
  declare(tools, "test_input_required_result_multiple_inputs", "Asks for a name, a greeting and the roots at once", EMPTY);
  declare(tools, "test_input_required_result_multi_round", "Asks for a name, then a colour", EMPTY);
  declare(tools, "test_input_required_result_tampered_state", "Asks with state that core seals", EMPTY);
  declare(tools, "test_input_required_result_capabilities", "Asks only what the client declared it can answer", EMPTY);
  /* Legacy (2025-11-25) clients get these requests on the call's stream (core sends them). */
  declare(tools, "test_elicitation", "Asks the user for a name and an email",
          "{\"type\": \"object\", \"properties\": {\"message\": {\"type\": \"string\"}}, \"required\": [\"message\"]}");
  declare(tools, "test_sampling", "Asks the client's model to answer a prompt",
          "{\"type\": \"object\", \"properties\": {\"prompt\": {\"type\": \"string\"}}, \"required\": [\"prompt\"]}");
  declare(tools, "test_elicitation_sep1034_defaults", "Asks with a default for every primitive type", EMPTY);
  declare(tools, "test_elicitation_sep1330_enums", "Asks with every kind of enum", EMPTY);
  char *text = json_dumps(tools, JSON_COMPACT);
  json_decref(tools);
  return text;
}

static char *catalog_json(void) {
  json_t *catalog = json_pack(
      "{s:[{s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}],"
      " s:[{s:s, s:s, s:s, s:s}],"
      " s:[{s:s, s:s}, {s:s, s:s, s:[{s:s, s:s, s:b}, {s:s, s:s, s:b}]}, {s:s, s:s, s:[{s:s, s:s, s:b}]}, {s:s, s:s}, {s:s, s:s}]}",
      "resources",
      "uri", "test://static-text", "name", "static-text", "description", "A static text resource", "mimeType", "text/plain",
      "text", "This is the content of the static text resource.",
      "uri", "test://static-binary", "name", "static-binary", "description", "A static binary resource (a PNG)", "mimeType",
      "image/png", "blob", PNG,
      "uri", "test://watched-resource", "name", "watched-resource", "description", "A resource a client may watch", "mimeType",
      "text/plain", "text", "Watched resource content.",
      "resourceTemplates",
      "uriTemplate", "test://template/{id}/data", "name", "template-data", "description", "Data for an id, read through the handler",
      "mimeType", "application/json",
      "prompts",
      "name", "test_simple_prompt", "description", "A simple prompt without arguments",
      "name", "test_prompt_with_arguments", "description", "A prompt with two required arguments", "arguments",
      "name", "arg1", "description", "First test argument", "required", 1,
      "name", "arg2", "description", "Second test argument", "required", 1,
      "name", "test_prompt_with_embedded_resource", "description", "A prompt embedding a resource", "arguments",
      "name", "resourceUri", "description", "URI of the resource to embed", "required", 1,
      "name", "test_prompt_with_image", "description", "A prompt with an image",
      "name", "test_input_required_result_prompt", "description", "Asks the client for context before it answers");
  if (catalog == NULL) abort();
  char *text = json_dumps(catalog, JSON_COMPACT);
  json_decref(catalog);
  return text;
}

/* ---- answering ---- */

static void report(const char *what, toolmesh_result code, toolmesh_error *error) {
  if (code != TOOLMESH_OK) fprintf(stderr, "c_agent: %s: %s\n", what, error ? toolmesh_error_message(error) : toolmesh_result_name(code));
  toolmesh_error_free(error);
}

/* Answers with a plain JSON value (`value`, taken over). */
static void answer_value(toolmesh_invocation *invocation, json_t *value) {
  char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(value);
  toolmesh_error *error = NULL;
  report("complete", toolmesh_invocation_complete(invocation, text, &error), error);
  free(text);
}

/* Answers with a document in MCP's CallToolResult (or input-required) shape, taken over. */
static void answer_result(toolmesh_invocation *invocation, json_t *document) {
  char *text = json_dumps(document, JSON_COMPACT);
  json_decref(document);
  toolmesh_error *error = NULL;
  report("complete_result", toolmesh_invocation_complete_result(invocation, text, &error), error);
  free(text);
}

static void sleep_ms(long ms) {
  struct timespec pause = {0, ms * 1000000L};
  nanosleep(&pause, NULL);
}

/* An elicitation request for `requested_schema` (taken over). */
static json_t *elicit_with(const char *message, json_t *requested_schema) {
  return json_pack("{s:s, s:{s:s, s:o}}", "method", "elicitation/create", "params", "message", message, "requestedSchema", requested_schema);
}

static json_t *elicit(const char *message, const char *field) {
  return elicit_with(message, json_pack("{s:s, s:{s:{s:s}}, s:[s]}", "type", "object", "properties", field, "type", "string", "required", field));
}

/* "<prefix>action=<action as JSON>, content=<content as JSON>", as the suite's fixtures word it. */
static json_t *action_and_content(const char *prefix, json_t *answer) {
  char *action = json_dumps(json_object_get(answer, "action"), JSON_COMPACT | JSON_ENCODE_ANY);
  char *content = json_dumps(json_object_get(answer, "content"), JSON_COMPACT | JSON_ENCODE_ANY);
  char *text = NULL;
  if (asprintf(&text, "%saction=%s, content=%s", prefix, action ? action : "null", content ? content : "null") < 0) abort();
  json_t *value = json_string(text);
  free(action);
  free(content);
  free(text);
  return value;
}

static json_t *sample(const char *question, int max_tokens) {
  return json_pack("{s:s, s:{s:[{s:s, s:{s:s, s:s}}], s:i}}", "method", "sampling/createMessage", "params", "messages", "role", "user",
                   "content", "type", "text", "text", question, "maxTokens", max_tokens);
}

static json_t *roots(void) { return json_pack("{s:s, s:{}}", "method", "roots/list", "params"); }

/* {"resultType": "input_required", "inputRequests": requests, "requestState": state}; both taken
 * over, `state` may be NULL. */
static json_t *input_required(json_t *requests, json_t *state) {
  json_t *document = json_pack("{s:s, s:o}", "resultType", "input_required", "inputRequests", requests);
  if (state) json_object_set_new(document, "requestState", state);
  return document;
}

/* The client's answers to an earlier call's input requests ({"responses", "state"}), or NULL;
 * the caller frees it. */
static json_t *input_of(const toolmesh_invocation *invocation) {
  const char *text = toolmesh_invocation_input(invocation);
  return text ? json_loads(text, 0, NULL) : NULL;
}

static json_t *response(json_t *input, const char *key) { return json_object_get(json_object_get(input, "responses"), key); }

static const char *string_at(json_t *value, const char *a, const char *b) {
  const char *text = json_string_value(json_object_get(json_object_get(value, a), b));
  return text ? text : "";
}

static void ask_name(toolmesh_invocation *invocation, json_t *input) {
  json_t *given = response(input, "user_name");
  if (given == NULL) {
    answer_result(invocation, input_required(json_pack("{s:o}", "user_name", elicit("What is your name?", "name")), NULL));
    return;
  }
  const char *name = json_string_value(json_object_get(json_object_get(given, "content"), "name"));
  char *text = NULL;
  if (asprintf(&text, "Hello, %s!", name ? name : "stranger") < 0) abort();
  answer_value(invocation, json_string(text));
  free(text);
}

static void confirm(toolmesh_invocation *invocation, json_t *input) {
  const char *asked = json_string_value(json_object_get(json_object_get(input, "state"), "asked"));
  if (response(input, "confirm") && asked && strcmp(asked, "confirm") == 0) {
    answer_value(invocation, json_string("Confirmed: state-ok"));
    return;
  }
  json_t *request = json_pack("{s:s, s:{s:s, s:{s:s, s:{s:{s:s}}, s:[s]}}}", "method", "elicitation/create", "params", "message",
                              "Please confirm", "requestedSchema", "type", "object", "properties", "ok", "type", "boolean", "required", "ok");
  answer_result(invocation, input_required(json_pack("{s:o}", "confirm", request), json_pack("{s:s}", "asked", "confirm")));
}

/* The input-required fixtures; false when `tool` is none of them. */
static int answer_input_fixture(const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  json_t *input = input_of(invocation);
  json_t *arguments = json_loads(arguments_json, 0, NULL);
  int handled = 1;
  char *text = NULL;
  if (strcmp(tool, "test_input_required_result_elicitation") == 0 || strcmp(tool, "test_streaming_elicitation") == 0) {
    ask_name(invocation, input);
  } else if (strcmp(tool, "test_input_required_result_sampling") == 0) {
    json_t *given = response(input, "capital_question");
    if (given == NULL) {
      answer_result(invocation, input_required(json_pack("{s:o}", "capital_question", sample("What is the capital of France?", 100)), NULL));
    } else {
      if (asprintf(&text, "The model answered: %s", string_at(given, "content", "text")) < 0) abort();
      answer_value(invocation, json_string(text));
    }
  } else if (strcmp(tool, "test_input_required_result_list_roots") == 0) {
    json_t *given = response(input, "client_roots");
    if (given == NULL) {
      answer_result(invocation, input_required(json_pack("{s:o}", "client_roots", roots()), NULL));
    } else {
      size_t index;
      json_t *root;
      size_t length = 0;
      char listed[1024] = "";
      json_array_foreach(json_object_get(given, "roots"), index, root) {
        const char *uri = json_string_value(json_object_get(root, "uri"));
        length += (size_t)snprintf(listed + length, length < sizeof listed ? sizeof listed - length : 0, "%s%s", index ? ", " : "",
                                   uri ? uri : "");
      }
      if (asprintf(&text, "The client's roots: %s", listed) < 0) abort();
      answer_value(invocation, json_string(text));
    }
  } else if (strcmp(tool, "test_input_required_result_request_state") == 0 || strcmp(tool, "test_input_required_result_tampered_state") == 0) {
    confirm(invocation, input);
  } else if (strcmp(tool, "test_input_required_result_multiple_inputs") == 0) {
    int all = response(input, "user_name") && response(input, "greeting") && response(input, "client_roots");
    json_t *state = json_object_get(input, "state");
    if (all && state && !json_is_null(state)) {
      answer_value(invocation, json_string("Received a name, a greeting and the roots"));
    } else {
      answer_result(invocation, input_required(json_pack("{s:o, s:o, s:o}", "user_name", elicit("What is your name?", "name"), "greeting",
                                                         sample("Generate a greeting", 50), "client_roots", roots()),
                                               json_pack("{s:s}", "asked", "all three")));
    }
  } else if (strcmp(tool, "test_input_required_result_multi_round") == 0) {
    json_int_t round = json_integer_value(json_object_get(json_object_get(input, "state"), "round"));
    if (round == 2 && response(input, "step2")) {
      if (asprintf(&text, "Favourite colour: %s", string_at(response(input, "step2"), "content", "color")) < 0) abort();
      answer_value(invocation, json_string(text));
    } else if (round == 1 && response(input, "step1")) {
      answer_result(invocation, input_required(json_pack("{s:o}", "step2", elicit("Step 2: What is your favorite color?", "color")),
                                               json_pack("{s:i, s:s}", "round", 2, "name", string_at(response(input, "step1"), "content", "name"))));
    } else {
      answer_result(invocation,
                    input_required(json_pack("{s:o}", "step1", elicit("Step 1: What is your name?", "name")), json_pack("{s:i}", "round", 1)));
    }
  } else if (strcmp(tool, "test_elicitation") == 0) {
    json_t *given = response(input, "user_info");
    if (given == NULL) {
      const char *message = json_string_value(json_object_get(arguments, "message"));
      json_t *request = elicit_with(message ? message : "", json_incref(schema("elicit_user_info")));
      answer_result(invocation, input_required(json_pack("{s:o}", "user_info", request), NULL));
    } else {
      answer_value(invocation, action_and_content("User response: ", given));
    }
  } else if (strcmp(tool, "test_sampling") == 0) {
    json_t *given = response(input, "completion");
    if (given == NULL) {
      const char *prompt = json_string_value(json_object_get(arguments, "prompt"));
      answer_result(invocation, input_required(json_pack("{s:o}", "completion", sample(prompt ? prompt : "", 100)), NULL));
    } else {
      if (asprintf(&text, "LLM response: %s", string_at(given, "content", "text")) < 0) abort();
      answer_value(invocation, json_string(text));
    }
  } else if (strcmp(tool, "test_elicitation_sep1034_defaults") == 0 || strcmp(tool, "test_elicitation_sep1330_enums") == 0) {
    json_t *given = response(input, "form");
    if (given == NULL) {
      const char *name = strstr(tool, "defaults") ? "elicit_sep1034_defaults" : "elicit_sep1330_enums";
      json_t *request = elicit_with("Please fill in the form", json_incref(schema(name)));
      answer_result(invocation, input_required(json_pack("{s:o}", "form", request), NULL));
    } else {
      answer_value(invocation, action_and_content("Elicitation completed: ", given));
    }
  } else if (strcmp(tool, "test_input_required_result_capabilities") == 0) {
    const char *declared_text = toolmesh_invocation_client_capabilities(invocation);
    json_t *declared = declared_text ? json_loads(declared_text, 0, NULL) : NULL;
    json_t *requests = json_object();
    if (json_object_get(declared, "sampling")) json_object_set_new(requests, "capital_question", sample("What is the capital of France?", 100));
    if (json_object_get(declared, "elicitation")) json_object_set_new(requests, "user_name", elicit("What is your name?", "name"));
    json_decref(declared);
    if (json_object_size(requests) > 0 && input == NULL) {
      answer_result(invocation, input_required(requests, NULL));
    } else {
      json_decref(requests);
      answer_value(invocation, json_string("Asked only what the client can answer"));
    }
  } else {
    handled = 0;
  }
  free(text);
  json_decref(input);
  json_decref(arguments);
  return handled;
}

/* Past core's 100 ms window for a direct answer, so the call becomes a task. */
static const long WORK_MS = 400;

/* Works for `ms`, or until the call is cancelled (tasks/cancel): then frees the invocation
 * unanswered and returns false, as nobody waits for an answer any more. */
static int work(toolmesh_invocation *invocation, long ms) {
  for (long slept = 0; slept < ms; slept += 20) {
    if (toolmesh_invocation_cancelled(invocation)) {
      toolmesh_invocation_free(invocation);
      return 0;
    }
    sleep_ms(ms - slept < 20 ? ms - slept : 20);
  }
  return 1;
}

/* The task fixtures; false when `tool` is none of them. */
static int answer_task_fixture(const char *tool, json_t *arguments, toolmesh_invocation *invocation) {
  json_t *input = input_of(invocation);
  char *text = NULL;
  int handled = 1;
  if (strcmp(tool, "slow_compute") == 0) {
    double seconds = json_number_value(json_object_get(arguments, "seconds"));
    if (seconds < 0) seconds = 0;
    const char *label = json_string_value(json_object_get(arguments, "label"));
    if (work(invocation, (long)(seconds * 1000))) {
      if (asprintf(&text, "computed %s in %g s", label ? label : "", seconds) < 0) abort();
      answer_value(invocation, json_string(text));
    }
  } else if (strcmp(tool, "failing_job") == 0) {
    if (work(invocation, WORK_MS)) {
      toolmesh_error *error = NULL;
      report("fail", toolmesh_invocation_fail(invocation, "failing_job failed, as it always does", &error), error);
    }
  } else if (strcmp(tool, "protocol_error_job") == 0) {
    /* Ends without an answer: core fails the task with a protocol error. */
    if (work(invocation, WORK_MS)) toolmesh_invocation_free(invocation);
  } else if (strcmp(tool, "confirm_delete") == 0) {
    const char *filename = json_string_value(json_object_get(arguments, "filename"));
    filename = filename ? filename : "";
    if (work(invocation, WORK_MS)) {
      json_t *given = response(input, "confirm");
      if (given == NULL) {
        if (asprintf(&text, "Delete %s?", filename) < 0) abort();
        answer_result(invocation, input_required(json_pack("{s:o}", "confirm", elicit(text, "confirm")), NULL));
      } else {
        const char *action = json_string_value(json_object_get(given, "action"));
        if (asprintf(&text, "%s %s", action && strcmp(action, "accept") == 0 ? "deleted" : "kept", filename) < 0) abort();
        answer_value(invocation, json_string(text));
      }
    }
  } else if (strcmp(tool, "multi_input") == 0) {
    if (work(invocation, WORK_MS)) {
      json_t *first = response(input, "first"), *second = response(input, "second");
      if (first == NULL || second == NULL) {
        answer_result(invocation, input_required(json_pack("{s:o, s:o}", "first", elicit("First question: your name?", "name"), "second",
                                                           elicit("Second question: your name again?", "name")),
                                                 NULL));
      } else {
        char *a = json_dumps(json_object_get(json_object_get(first, "content"), "name"), JSON_ENCODE_ANY);
        char *b = json_dumps(json_object_get(json_object_get(second, "content"), "name"), JSON_ENCODE_ANY);
        if (asprintf(&text, "got %s and %s", a ? a : "null", b ? b : "null") < 0) abort();
        free(a);
        free(b);
        answer_value(invocation, json_string(text));
      }
    }
  } else if (strcmp(tool, "test_tool_with_task") == 0) {
    json_t *given = response(input, "user_name");
    if (given == NULL) { /* at once, so core answers directly */
      answer_result(invocation, input_required(json_pack("{s:o}", "user_name", elicit("What is your name?", "name")), NULL));
    } else if (work(invocation, WORK_MS)) {
      const char *name = json_string_value(json_object_get(json_object_get(given, "content"), "name"));
      if (asprintf(&text, "Hello, %s!", name ? name : "stranger") < 0) abort();
      answer_value(invocation, json_string(text));
    }
  } else {
    handled = 0;
  }
  free(text);
  json_decref(input);
  return handled;
}

static void log_three(toolmesh_invocation *invocation) {
  const char *messages[] = {"\"Tool execution started\"", "\"Tool processing data\"", "\"Tool execution completed\""};
  for (int i = 0; i < 3; i++) {
    if (i > 0) sleep_ms(50);
    toolmesh_error *error = NULL;
    report("log", toolmesh_invocation_log(invocation, "info", NULL, messages[i], &error), error);
  }
  answer_value(invocation, json_string("Logged three messages at info level"));
}

static void invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  (void)userdata;
  if (answer_input_fixture(tool, arguments_json, invocation)) return;
  json_t *arguments = json_loads(arguments_json, 0, NULL);
  if (answer_task_fixture(tool, arguments, invocation)) {
    json_decref(arguments);
    return;
  }
  json_t *image = json_pack("{s:s, s:s, s:s}", "type", "image", "data", PNG, "mimeType", "image/png");
  char *text = NULL;
  if (strcmp(tool, "test_simple_text") == 0) {
    answer_value(invocation, json_string("This is a simple text response for testing."));
  } else if (strcmp(tool, "test_error_handling") == 0) {
    toolmesh_error *error = NULL;
    report("fail", toolmesh_invocation_fail(invocation, "This tool intentionally returns an error for testing", &error), error);
  } else if (strcmp(tool, "test_image_content") == 0) {
    answer_result(invocation, json_pack("{s:[O]}", "content", image));
  } else if (strcmp(tool, "test_audio_content") == 0) {
    answer_result(invocation, json_pack("{s:[{s:s, s:s, s:s}]}", "content", "type", "audio", "data", WAV, "mimeType", "audio/wav"));
  } else if (strcmp(tool, "test_embedded_resource") == 0) {
    answer_result(invocation, json_pack("{s:[{s:s, s:{s:s, s:s, s:s}}]}", "content", "type", "resource", "resource", "uri",
                                        "test://embedded-resource", "mimeType", "text/plain", "text", "This is an embedded resource content."));
  } else if (strcmp(tool, "test_multiple_content_types") == 0) {
    answer_result(invocation, json_pack("{s:[{s:s, s:s}, O, {s:s, s:{s:s, s:s, s:s}}]}", "content", "type", "text", "text",
                                        "Multiple content types test:", image, "type", "resource", "resource", "uri",
                                        "test://mixed-content-resource", "mimeType", "application/json", "text",
                                        "{\"test\":\"data\",\"value\":123}"));
  } else if (strcmp(tool, "test_tool_with_progress") == 0) {
    const double steps[] = {0, 50, 100};
    for (int i = 0; i < 3; i++) {
      if (i > 0) sleep_ms(50);
      toolmesh_error *error = NULL;
      report("progress", toolmesh_invocation_progress(invocation, steps[i], 100, NULL, &error), error);
    }
    answer_value(invocation, json_string("Progress reported: 0, 50 and 100 of 100"));
  } else if (strcmp(tool, "test_tool_with_logging") == 0 || strcmp(tool, "test_logging_tool") == 0) {
    log_three(invocation);
  } else if (strcmp(tool, "greet") == 0) {
    if (asprintf(&text, "Hello, %s!", json_string_value(json_object_get(arguments, "name"))) < 0) abort();
    answer_value(invocation, json_string(text));
  } else if (strcmp(tool, "test_headers") == 0) {
    if (asprintf(&text, "region \"%s\"", json_string_value(json_object_get(arguments, "region"))) < 0) abort();
    answer_value(invocation, json_string(text));
  } else if (strcmp(tool, "test_missing_capability") == 0) {
    answer_value(invocation, json_string("The client declared sampling"));
  } else if (strcmp(tool, "json_schema_2020_12_tool") == 0) {
    if (asprintf(&text, "received %s", arguments_json) < 0) abort();
    answer_value(invocation, json_string(text));
  } else {
    toolmesh_error *error = NULL;
    report("fail", toolmesh_invocation_fail(invocation, "no such tool", &error), error);
  }
  free(text);
  json_decref(arguments);
  json_decref(image);
}

static json_t *user_text(const char *text) {
  return json_pack("{s:s, s:{s:s, s:s}}", "role", "user", "content", "type", "text", "text", text);
}

static void invoke_catalog(void *userdata, const char *request_json, toolmesh_invocation *invocation) {
  (void)userdata;
  json_t *request = json_loads(request_json, 0, NULL);
  const char *kind = json_string_value(json_object_get(request, "kind"));
  const char *name = json_string_value(json_object_get(request, "name"));
  json_t *arguments = json_object_get(request, "arguments");
  char *text = NULL;
  if (strcmp(kind, "readResource") == 0) {
    const char *id = string_at(request, "variables", "id");
    json_t *data = json_pack("{s:s, s:b, s:s+}", "id", id, "templateTest", 1, "data", "Data for ID: ", id);
    char *data_text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    answer_value(invocation, json_pack("{s:[{s:s, s:s, s:s}]}", "contents", "uri", json_string_value(json_object_get(request, "uri")),
                                       "mimeType", "application/json", "text", data_text));
    free(data_text);
  } else if (strcmp(name, "test_simple_prompt") == 0) {
    answer_value(invocation, json_pack("{s:[o]}", "messages", user_text("This is a simple prompt for testing.")));
  } else if (strcmp(name, "test_prompt_with_arguments") == 0) {
    if (asprintf(&text, "Prompt with arguments: arg1='%s', arg2='%s'", json_string_value(json_object_get(arguments, "arg1")),
                 json_string_value(json_object_get(arguments, "arg2"))) < 0)
      abort();
    answer_value(invocation, json_pack("{s:[o]}", "messages", user_text(text)));
  } else if (strcmp(name, "test_prompt_with_embedded_resource") == 0) {
    answer_value(invocation, json_pack("{s:[{s:s, s:{s:s, s:{s:s, s:s, s:s}}}, o]}", "messages", "role", "user", "content", "type", "resource",
                                       "resource", "uri", json_string_value(json_object_get(arguments, "resourceUri")), "mimeType",
                                       "text/plain", "text", "Embedded resource content for testing.",
                                       user_text("Please process the embedded resource above.")));
  } else if (strcmp(name, "test_prompt_with_image") == 0) {
    answer_value(invocation, json_pack("{s:[{s:s, s:{s:s, s:s, s:s}}, o]}", "messages", "role", "user", "content", "type", "image", "data",
                                       PNG, "mimeType", "image/png", user_text("Please analyze the image above.")));
  } else if (strcmp(name, "test_input_required_result_prompt") == 0) {
    json_t *input = input_of(invocation);
    json_t *given = response(input, "user_context");
    if (given == NULL) {
      answer_value(invocation, input_required(json_pack("{s:o}", "user_context", elicit("What context should the prompt use?", "context")), NULL));
    } else {
      if (asprintf(&text, "Prompt with context: %s", string_at(given, "content", "context")) < 0) abort();
      answer_value(invocation, json_pack("{s:[o]}", "messages", user_text(text)));
    }
    json_decref(input);
  } else {
    toolmesh_error *error = NULL;
    report("fail", toolmesh_invocation_fail(invocation, "no such prompt", &error), error);
  }
  free(text);
  json_decref(request);
}

int main(int argc, char **argv) {
  json_error_t problem;
  schemas = argc == 2 ? json_load_file(argv[1], 0, &problem) : NULL;
  if (schemas == NULL) {
    fprintf(stderr, "usage: c_agent tests/conformance/schemas.json (%s)\n", argc == 2 ? problem.text : "no path given");
    return 2;
  }
  toolmesh_error *error = NULL;
  toolmesh_config *config = NULL;
  toolmesh_agent *agent = NULL;
  char *tools = tools_json(), *catalog = catalog_json();
  toolmesh_handler handler = {.userdata = NULL, .invoke = invoke, .free_userdata = NULL, .invoke_catalog = invoke_catalog};
  int status = 0;
  if (toolmesh_config_new("conformance", &config, &error) != TOOLMESH_OK ||
      toolmesh_agent_start_with_catalog(config, tools, catalog, handler, &agent, &error) != TOOLMESH_OK) {
    fprintf(stderr, "c_agent: %s\n", toolmesh_error_message(error));
    status = 1;
  } else {
    printf("endpoint %s\n", toolmesh_agent_endpoint(agent));
    fflush(stdout);
    /* Serve until the script that started us closes our standard input (or dies). */
    char sink[256];
    while (fread(sink, 1, sizeof sink, stdin) > 0) {
    }
  }
  toolmesh_agent_free(agent);
  toolmesh_config_free(config);
  toolmesh_error_free(error);
  free(tools);
  free(catalog);
  json_decref(schemas);
  return status;
}
