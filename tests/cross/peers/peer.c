/*
 * The C peer of the cross-language suite: the twin of peer.py (see there for the roles).
 *   peer ROLE CASES_JSON
 * JSON (the table, tool definitions, results) is read and written with jansson.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolmesh.h"

static const char LANGUAGE[] = "c";
static json_t *table;

/* ---- the table ---- */

static const char *setting(const char *key) {
  return json_string_value(json_object_get(json_object_get(table, "callee"), key));
}

/* The tag of `language`'s callee agent of `kind` ("agent", "misnamed", "replaced"); the caller
 * frees it. */
static char *tag(const char *kind, const char *language) {
  const char *pattern = json_string_value(json_object_get(json_object_get(json_object_get(table, "callee"), "tags"), kind));
  const char *at = strstr(pattern, "{language}");
  char *out = NULL;
  if (asprintf(&out, "%.*s%s%s", (int)(at - pattern), pattern, language, at + strlen("{language}")) < 0) abort();
  return out;
}

/* The next language after ours in the chain, or NULL when we are its end. */
static const char *next_hop(void) {
  json_t *hops = json_object_get(json_object_get(table, "chain"), "languages");
  for (size_t i = 0; i + 1 < json_array_size(hops); i++) {
    if (strcmp(json_string_value(json_array_get(hops, i)), LANGUAGE) == 0) return json_string_value(json_array_get(hops, i + 1));
  }
  return NULL;
}

/* The next language after ours in the rich chain, or NULL when we are its end. */
static const char *rich_next_hop(void) {
  json_t *hops = json_object_get(json_object_get(table, "rich_chain"), "languages");
  for (size_t i = 0; i + 1 < json_array_size(hops); i++) {
    if (strcmp(json_string_value(json_array_get(hops, i)), LANGUAGE) == 0) return json_string_value(json_array_get(hops, i + 1));
  }
  return NULL;
}

/* The language after ours in the chain, the last one wrapping round to the first. */
static const char *following(void) {
  json_t *hops = json_object_get(json_object_get(table, "chain"), "languages");
  for (size_t i = 0; i < json_array_size(hops); i++) {
    if (strcmp(json_string_value(json_array_get(hops, i)), LANGUAGE) == 0) {
      return json_string_value(json_array_get(hops, (i + 1) % json_array_size(hops)));
    }
  }
  abort();
}

/* {"capability": capability, "tags": [tag]}, or just the capability when `tag` is NULL. */
static json_t *dependency(const char *capability, char *tag) {
  if (tag == NULL) return json_string(capability);
  json_t *selector = json_pack("{s:s, s:[s]}", "capability", capability, "tags", tag);
  free(tag);
  return selector;
}

/* A tool definition; `tag` (freed here) and `dependency` (taken over) may be NULL. Without a
 * capability, as in every peer: core makes it the tool's name. */
static json_t *tool(const char *name, char *tag, json_t *dependency) {
  json_t *definition = json_pack("{s:s, s:[]}", "name", name, "tags");
  if (tag) json_array_append_new(json_object_get(definition, "tags"), json_string(tag));
  free(tag);
  if (dependency) json_object_set_new(definition, "dependencies", json_pack("[o]", dependency));
  return definition;
}

/* ---- answering invocations ---- */

static void complete(toolmesh_invocation *invocation, json_t *result) {
  char *text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(result);
  toolmesh_result code = toolmesh_invocation_complete(invocation, text, NULL);
  if (code != TOOLMESH_OK) fprintf(stderr, "peer: cannot complete: %s\n", toolmesh_result_name(code));
  free(text);
}

/* What a handler sees of its request. C asks for headers by name: the table names them. */
static json_t *here(const toolmesh_invocation *invocation) {
  json_t *headers = json_object();
  size_t index;
  json_t *name;
  json_array_foreach(json_object_get(json_object_get(table, "callee"), "echo_headers"), index, name) {
    const char *value = toolmesh_invocation_header(invocation, json_string_value(name));
    if (value) json_object_set_new(headers, json_string_value(name), json_string(value));
  }
  const char *trace_id = toolmesh_invocation_trace_id(invocation);
  return json_pack("{s:s, s:o, s:o}", "language", LANGUAGE, "headers", headers, "trace_id",
                   trace_id ? json_string(trace_id) : json_null());
}

/* What a chain hop saw: what a handler sees, and the milliseconds its request had left. */
static json_t *chain_hop(const toolmesh_invocation *invocation) {
  json_t *seen = here(invocation);
  int64_t remaining = toolmesh_invocation_remaining_ms(invocation);
  json_object_set_new(seen, "remaining_ms", remaining < 0 ? json_null() : json_integer(remaining));
  return seen;
}

/* A dependency call in flight: the invocation it answers, and for a chain hop what it saw. */
struct pending {
  toolmesh_invocation *invocation;
  json_t *seen;
};

/* A probe answers what the call gave: {"ok": result} or {"error": {code, name, message}}, a tool
 * error also with app_code and data. */
static void finish_probe(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  if (code == TOOLMESH_OK) {
    json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);
    if (value) {
      complete(pending->invocation, json_pack("{s:o}", "ok", value));
    } else {
      toolmesh_invocation_fail(pending->invocation, "the dependency answered something that is not JSON", NULL);
    }
  } else {
    json_t *reported = json_pack("{s:i, s:s, s:s}", "code", code, "name", toolmesh_result_name(code), "message", text);
    const char *app_code = toolmesh_error_app_code(error);
    if (app_code != NULL) {
      const char *data_json = toolmesh_error_data_json(error);
      json_object_set_new(reported, "app_code", json_string(app_code));
      json_object_set_new(reported, "data", data_json ? json_loads(data_json, JSON_DECODE_ANY, NULL) : json_null());
    }
    complete(pending->invocation, json_pack("{s:o}", "error", reported));
  }
  free(pending);
}

/* A chain hop answers what it saw and what the rest of the chain answered; a failure of the
 * rest goes to its caller unchanged. */
static void finish_hop(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  json_t *rest = code == TOOLMESH_OK ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
  if (rest) {
    json_object_set_new(pending->seen, "next", rest);
    complete(pending->invocation, pending->seen);
  } else {
    toolmesh_invocation_fail_with_error(pending->invocation, error, NULL);
    json_decref(pending->seen);
  }
  free(pending);
}

/* A relay answers what its dependency answered; a failure (a tool error with its code and data)
 * goes to its caller unchanged. */
static void finish_relay(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  if (code == TOOLMESH_OK) {
    toolmesh_invocation_complete(pending->invocation, text, NULL);
  } else {
    toolmesh_invocation_fail_with_error(pending->invocation, error, NULL);
  }
  free(pending);
}

/* A rich chain hop answers its dependency's whole result as it came; a failure goes to its caller
 * unchanged. */
static void finish_rich(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  if (code == TOOLMESH_OK) {
    toolmesh_invocation_complete_result(pending->invocation, text, NULL);
  } else {
    toolmesh_invocation_fail_with_error(pending->invocation, error, NULL);
  }
  free(pending);
}

enum kind { CALLER, CALLEE, RELAY };

/* The handler's userdata: one per agent. */
struct agent_state {
  enum kind kind;
  _Atomic(toolmesh_agent *) agent;
};

/* Calls the tool's dependency; `headers` (NULL: none) are set on purpose, borrowed for the call. */
static void call_dependency(struct agent_state *state, toolmesh_invocation *invocation, const char *tool, const char *arguments_json,
                            const toolmesh_call_headers *headers, toolmesh_call_callback callback, json_t *seen) {
  struct pending *pending = malloc(sizeof *pending);
  *pending = (struct pending){.invocation = invocation, .seen = seen};
  toolmesh_error *error = NULL;
  toolmesh_result code = toolmesh_agent_call_with_headers(atomic_load(&state->agent), invocation, headers, tool, 0, arguments_json,
                                                          callback, pending, &error);
  if (code != TOOLMESH_OK) {
    /* The call never started, so its callback never runs: answer here. */
    toolmesh_invocation_fail_with_error(invocation, error, NULL);
    toolmesh_error_free(error);
    json_decref(seen);
    free(pending);
  }
}

/* The call case whose probe is `probe` (CASE or CASE__LANGUAGE), else NULL. */
static json_t *probed_case(const char *probe) {
  size_t index;
  json_t *call;
  json_array_foreach(json_object_get(table, "calls"), index, call) {
    const char *name = json_string_value(json_object_get(call, "case"));
    size_t length = strlen(name);
    if (strncmp(probe, name, length) == 0 && (probe[length] == '\0' || strncmp(probe + length, "__", 2) == 0)) return call;
  }
  return NULL;
}

/* A probe calls its case's dependency with the case's arguments_json (C hands the dependency the
 * JSON text as written, digits and all) and its call_headers, set on purpose in code. */
static void call_probed(struct agent_state *state, const char *probe, toolmesh_invocation *invocation) {
  json_t *call = probed_case(probe);
  json_t *arguments = json_object_get(call, "arguments_json");
  toolmesh_call_headers *headers = NULL;
  toolmesh_error *error = NULL;
  toolmesh_result code = toolmesh_call_headers_new(&headers, &error);
  const char *name;
  json_t *value;
  json_object_foreach(json_object_get(call, "call_headers"), name, value) {
    if (code == TOOLMESH_OK) code = toolmesh_call_headers_set(headers, name, json_string_value(value), &error);
  }
  if (code == TOOLMESH_OK) {
    call_dependency(state, invocation, probe, arguments ? json_string_value(arguments) : "{}", headers, finish_probe, NULL);
  } else {
    toolmesh_invocation_fail_with_error(invocation, error, NULL);
    toolmesh_error_free(error);
  }
  toolmesh_call_headers_free(headers); /* the call keeps what it needs */
}

static void invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  struct agent_state *state = userdata;
  if (state->kind == CALLER) {
    call_probed(state, tool, invocation);
  } else if (state->kind == RELAY) {
    call_dependency(state, invocation, tool, "{}", NULL, finish_relay, NULL);
  } else if (strcmp(tool, "count") == 0) {
    json_t *arguments = json_loads(arguments_json, 0, NULL);
    complete(invocation, json_pack("{s:O}", "n", json_object_get(arguments, "n")));
    json_decref(arguments);
  } else if (strcmp(tool, "paint") == 0) {
    json_t *arguments = json_loads(arguments_json, 0, NULL);
    complete(invocation, json_pack("{s:O}", "colour", json_object_get(arguments, "colour")));
    json_decref(arguments);
  } else if (strcmp(tool, "fail") == 0) {
    toolmesh_invocation_fail(invocation, setting("fail_message"), NULL);
  } else if (strcmp(tool, "fail_without_message") == 0) {
    toolmesh_invocation_fail(invocation, NULL, NULL);
  } else if (strcmp(tool, "refuse") == 0) {
    json_t *refusal = json_object_get(json_object_get(table, "callee"), "tool_error");
    char *data_json = json_dumps(json_object_get(refusal, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
    toolmesh_invocation_fail_tool_error(invocation, json_string_value(json_object_get(refusal, "app_code")),
                                        json_string_value(json_object_get(refusal, "message")), data_json, NULL);
    free(data_json);
  } else if (strcmp(tool, "refuse_via") == 0) {
    call_dependency(state, invocation, tool, "{}", NULL, finish_relay, NULL); /* refuse's tool error goes on unchanged */
  } else if (strcmp(tool, "echo_via") == 0) {
    call_dependency(state, invocation, tool, "{}", NULL, finish_hop, here(invocation)); /* answers like a chain hop */
  } else if (strcmp(tool, "not_json") == 0) {
    /* C hands over JSON text; text that is not JSON is C's value that is not JSON. */
    toolmesh_invocation_complete(invocation, "{not json", NULL);
  } else if (strcmp(tool, "slow") == 0) {
    /* Handlers run on toolmesh host threads, which may block. */
    long long slow_ms = json_integer_value(json_object_get(json_object_get(table, "callee"), "slow_ms"));
    /* A caller that asked for progress learns that the call is under way (the cancelled case). */
    toolmesh_invocation_progress(invocation, 0, 1, "slow started", NULL);
    nanosleep(&(struct timespec){.tv_sec = slow_ms / 1000, .tv_nsec = slow_ms % 1000 * 1000000}, NULL);
    complete(invocation, here(invocation));
  } else if (strcmp(tool, "job") == 0) {
    long long job_ms = json_integer_value(json_object_get(json_object_get(table, "callee"), "job_ms"));
    nanosleep(&(struct timespec){.tv_sec = job_ms / 1000, .tv_nsec = job_ms % 1000 * 1000000}, NULL);
    complete(invocation, here(invocation));
  } else if (strcmp(tool, "ask") == 0) {
    const char *input = toolmesh_invocation_input(invocation);
    if (input == NULL) {
      json_t *asking = json_pack("{s:s, s:O, s:{s:s}}", "resultType", "input_required", "inputRequests",
                                 json_object_get(json_object_get(table, "input_required"), "requests"), "requestState", "asked", LANGUAGE);
      char *text = json_dumps(asking, JSON_COMPACT);
      json_decref(asking);
      toolmesh_invocation_complete_result(invocation, text, NULL);
      free(text);
    } else {
      json_t *answers = json_loads(input, 0, NULL);
      json_t *name = json_object_get(json_object_get(json_object_get(json_object_get(answers, "responses"), "name"), "content"), "name");
      complete(invocation, json_pack("{s:s, s:O, s:O}", "language", LANGUAGE, "hello", name, "state", json_object_get(answers, "state")));
      json_decref(answers);
    }
  } else if (strcmp(tool, "ask_via") == 0) {
    /* One dependency per language (all of capability ask), in the table's order; "to" picks one. */
    json_t *arguments = json_loads(arguments_json, 0, NULL);
    const char *to = json_string_value(json_object_get(arguments, "to"));
    json_t *languages = json_object_get(table, "languages");
    size_t index = json_array_size(languages);
    for (size_t i = 0; to && i < json_array_size(languages); i++) {
      if (strcmp(json_string_value(json_array_get(languages, i)), to) == 0) index = i;
    }
    json_decref(arguments);
    struct pending *pending = malloc(sizeof *pending);
    *pending = (struct pending){.invocation = invocation, .seen = NULL};
    toolmesh_error *error = NULL;
    if (toolmesh_agent_call(atomic_load(&state->agent), invocation, tool, index, "{}", finish_relay, pending, &error) != TOOLMESH_OK) {
      toolmesh_invocation_fail_with_error(invocation, error, NULL); /* never started: no callback */
      toolmesh_error_free(error);
      free(pending);
    }
  } else if (strcmp(tool, "rich_chain") == 0 && rich_next_hop() != NULL) {
    struct pending *pending = malloc(sizeof *pending);
    *pending = (struct pending){.invocation = invocation, .seen = NULL};
    toolmesh_error *error = NULL;
    if (toolmesh_agent_call_for_result(atomic_load(&state->agent), invocation, NULL, tool, 0, "{}", finish_rich, pending, &error) !=
        TOOLMESH_OK) {
      toolmesh_invocation_fail_with_error(invocation, error, NULL); /* never started: no callback */
      toolmesh_error_free(error);
      free(pending);
    }
  } else if (strcmp(tool, "rich_chain") == 0) {
    char *result = json_dumps(json_object_get(json_object_get(table, "rich_chain"), "result"), JSON_COMPACT);
    toolmesh_invocation_complete_result(invocation, result, NULL);
    free(result);
  } else if (strcmp(tool, "chain") == 0 && next_hop() != NULL) {
    json_t *seen = chain_hop(invocation);
    json_t *budget = json_object_get(json_object_get(table, "chain"), "budget");
    const char *tenant = toolmesh_invocation_header(invocation, "x-tenant");
    if (tenant && strcmp(tenant, json_string_value(json_object_get(budget, "tenant"))) == 0) {
      long long spend_ms = json_integer_value(json_object_get(budget, "spend_ms"));
      nanosleep(&(struct timespec){.tv_sec = spend_ms / 1000, .tv_nsec = spend_ms % 1000 * 1000000}, NULL);
    }
    call_dependency(state, invocation, tool, "{}", NULL, finish_hop, seen);
  } else if (strcmp(tool, "chain") == 0) {
    /* The end of the chain reports progress; core relays it to the first caller, through hops
     * that do nothing for it. A chain entered with x-tenant "hang" waits here until the first
     * caller goes away: core cancels every hop down to this one. */
    toolmesh_invocation_progress(invocation, 1, 1, "the end of the chain", NULL);
    const char *tenant = toolmesh_invocation_header(invocation, "x-tenant");
    if (tenant && strcmp(tenant, "hang") == 0) {
      while (!toolmesh_invocation_cancelled(invocation)) nanosleep(&(struct timespec){.tv_nsec = 5 * 1000000}, NULL);
      fprintf(stderr, "chain: cancelled\n");
      fflush(stderr);
      toolmesh_invocation_fail(invocation, "cancelled", NULL);
      return;
    }
    json_t *seen = chain_hop(invocation);
    json_object_set_new(seen, "next", json_null());
    complete(invocation, seen);
  } else {
    complete(invocation, here(invocation)); /* echo and the vanishing tool */
  }
}

/* ---- agents ---- */

static void release_state(void *userdata) { free(userdata); }

/* Starts agent `name` (options from the TOOLMESH_* environment, plus `host` and the option
 * tls_allowed_ids `allowed_ids` when not NULL). NULL on failure, with the error in *error. */
static toolmesh_agent *start(const char *name, const char *host, const char *allowed_ids, enum kind kind, json_t *tools,
                             toolmesh_error **error) {
  char *tools_json = json_dumps(tools, JSON_COMPACT);
  json_decref(tools);
  toolmesh_config *config = NULL;
  /* TOOLMESH_CROSS_CERTS holds one certificate per agent: the registry takes an agent's name from it. */
  const char *certs = getenv("TOOLMESH_CROSS_CERTS");
  char cert[512] = "", key[512] = "";
  if (certs && *certs) {
    snprintf(cert, sizeof cert, "%s/%s.pem", certs, name);
    snprintf(key, sizeof key, "%s/%s.key", certs, name);
  }
  if (toolmesh_config_new(name, &config, error) != TOOLMESH_OK || (host && toolmesh_config_set(config, "host", host, error) != TOOLMESH_OK) ||
      (allowed_ids && toolmesh_config_set(config, "tls_allowed_ids", allowed_ids, error) != TOOLMESH_OK) ||
      (*cert && (toolmesh_config_set(config, "tls_cert", cert, error) != TOOLMESH_OK ||
                 toolmesh_config_set(config, "tls_key", key, error) != TOOLMESH_OK))) {
    toolmesh_config_free(config);
    free(tools_json);
    return NULL;
  }
  struct agent_state *state = calloc(1, sizeof *state);
  state->kind = kind;
  toolmesh_handler handler = {.userdata = state, .invoke = invoke, .free_userdata = release_state};
  toolmesh_agent *agent = NULL;
  /* `state` belongs to toolmesh from here on, whatever the outcome. */
  toolmesh_agent_start(config, tools_json, handler, &agent, error);
  free(tools_json);
  toolmesh_config_free(config);
  if (agent) atomic_store(&state->agent, agent);
  return agent;
}

/* A probe of call case `call`: it calls the case's capability, from the provider tagged `tag`
 * (freed here; NULL: any provider). */
static json_t *probe(const char *name, json_t *call, char *tag) {
  json_t *definition = tool(name, NULL, dependency(json_string_value(json_object_get(call, "tool")), tag));
  json_t *timeout_ms = json_object_get(call, "timeout_ms");
  if (timeout_ms) json_object_set(definition, "timeout_ms", timeout_ms);
  return definition;
}

static json_t *caller_tools(void) {
  json_t *tools = json_array();
  size_t index, language;
  json_t *call, *callee;
  json_array_foreach(json_object_get(table, "calls"), index, call) {
    const char *name = json_string_value(json_object_get(call, "case"));
    if (json_is_null(json_object_get(call, "callee"))) {
      json_array_append_new(tools, probe(name, call, NULL));
      continue;
    }
    json_array_foreach(json_object_get(table, "languages"), language, callee) {
      char *probe_name = NULL;
      if (asprintf(&probe_name, "%s__%s", name, json_string_value(callee)) < 0) abort();
      char *callee_tag = tag(json_string_value(json_object_get(call, "callee")), json_string_value(callee));
      json_array_append_new(tools, probe(probe_name, call, callee_tag));
      free(probe_name);
    }
  }
  return tools;
}

static json_t *callee_tools(int vanishing) {
  const char *names[] = {"echo", "fail", "fail_without_message", "not_json", "slow", vanishing ? setting("vanishing_tool") : NULL};
  json_t *tools = json_array();
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (names[i]) json_array_append_new(tools, tool(names[i], tag("agent", LANGUAGE), NULL));
  }
  json_t *count = tool("count", tag("agent", LANGUAGE), NULL);
  json_object_set_new(count, "input_schema", json_pack("{s:s, s:{s:{s:s}}, s:[s]}", "type", "object", "properties", "n", "type", "integer",
                                                       "required", "n"));
  json_object_set_new(count, "annotations", json_pack("{s:b, s:b}", "readOnlyHint", 1, "idempotentHint", 1));
  json_array_append_new(tools, count);
  json_t *paint = tool("paint", tag("agent", LANGUAGE), NULL);
  json_object_set_new(paint, "input_schema", json_pack("{s:s, s:{s:{s:s, s:[s,s,s]}}, s:[s]}", "type", "object", "properties", "colour", "type",
                                                       "string", "enum", "red", "green", "blue", "required", "colour"));
  json_array_append_new(tools, paint);
  json_t *job = tool("job", tag("agent", LANGUAGE), NULL);
  json_object_set_new(job, "task_support", json_string("required"));
  json_array_append_new(tools, job);
  json_array_append_new(tools, tool("refuse", tag("agent", LANGUAGE), NULL));
  json_array_append_new(tools, tool("refuse_via", tag("agent", LANGUAGE), dependency("refuse", tag("agent", following()))));
  json_array_append_new(tools, tool("echo_via", tag("agent", LANGUAGE), dependency("echo", tag("agent", following()))));
  const char *next = next_hop();
  json_array_append_new(tools, tool("chain", tag("agent", LANGUAGE), next ? dependency("chain", tag("agent", next)) : NULL));
  json_array_append_new(tools, tool("ask", tag("agent", LANGUAGE), NULL));
  json_t *ask_via = tool("ask_via", tag("agent", LANGUAGE), NULL);
  json_t *asks = json_array();
  size_t index;
  json_t *language;
  json_array_foreach(json_object_get(table, "languages"), index, language) {
    json_array_append_new(asks, dependency("ask", tag("agent", json_string_value(language))));
  }
  json_object_set_new(ask_via, "dependencies", asks);
  json_array_append_new(tools, ask_via);
  const char *rich_next = rich_next_hop();
  json_array_append_new(tools, tool("rich_chain", tag("agent", LANGUAGE), rich_next ? dependency("rich_chain", tag("agent", rich_next)) : NULL));
  return tools;
}

/* Starts an agent and says so on stderr: its ready line, or the error; NULL on failure. */
static toolmesh_agent *start_reported(const char *name, const char *host, const char *allowed_ids, enum kind kind, json_t *tools) {
  toolmesh_error *error = NULL;
  toolmesh_agent *agent = start(name, host, allowed_ids, kind, tools, &error);
  if (agent) {
    fprintf(stderr, "toolmesh agent %s serving %s (id %s)\n", name, toolmesh_agent_endpoint(agent), toolmesh_agent_id(agent));
  } else {
    fprintf(stderr, "toolmesh: error [%d %s]: %s\n", toolmesh_error_code(error), toolmesh_result_name(toolmesh_error_code(error)),
            toolmesh_error_message(error));
    toolmesh_error_free(error);
  }
  return agent;
}

/* Agent KIND-c, serving echo tagged as the table says for `kind`; NULL when it fails to start. */
static toolmesh_agent *start_echo_only(const char *kind, const char *host) {
  char name[64];
  snprintf(name, sizeof name, "%s-%s", kind, LANGUAGE);
  return start_reported(name, host, NULL, CALLEE, json_pack("[o]", tool("echo", tag(kind, LANGUAGE), NULL)));
}

/* Agent aloof-c, serving echo but admitting only the table's aloof_allowed_ids. */
static toolmesh_agent *start_aloof(void) {
  char name[64];
  snprintf(name, sizeof name, "aloof-%s", LANGUAGE);
  return start_reported(name, NULL, setting("aloof_allowed_ids"), CALLEE, json_pack("[o]", tool("echo", tag("aloof", LANGUAGE), NULL)));
}

/* Agent guarded-c, serving the table's guarded tools (each answers like echo). */
static toolmesh_agent *start_guarded(void) {
  char name[64];
  snprintf(name, sizeof name, "guarded-%s", LANGUAGE);
  json_t *tools = json_array();
  size_t index;
  json_t *tool_name;
  json_array_foreach(json_object_get(json_object_get(table, "guarded"), "tools"), index, tool_name) {
    json_array_append_new(tools, tool(json_string_value(tool_name), tag("guarded", LANGUAGE), NULL));
  }
  return start_reported(name, NULL, NULL, CALLEE, tools);
}

/* Agent relay-c: relay calls relayed of guarded-c on behalf of its own caller. */
static toolmesh_agent *start_relay(void) {
  char name[64];
  snprintf(name, sizeof name, "relay-%s", LANGUAGE);
  const char *relayed = json_string_value(json_object_get(json_object_get(table, "guarded"), "relayed_tool"));
  return start_reported(name, NULL, NULL, RELAY,
                        json_pack("[o]", tool("relay", tag("relay", LANGUAGE), dependency(relayed, tag("guarded", LANGUAGE)))));
}

/* Serves the role's agents until SIGINT or SIGTERM; the exit status. */
static int serve(const char *role) {
  /* Blocked here, before any toolmesh thread exists, so every thread inherits the mask and
   * sigwait below receives them. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  toolmesh_agent *agents[4] = {NULL, NULL, NULL, NULL};
  size_t wanted = 0, started = 0;
  char name[64];
  if (strcmp(role, "caller") == 0) {
    snprintf(name, sizeof name, "caller-%s", LANGUAGE);
    agents[wanted++] = start_reported(name, NULL, NULL, CALLER, caller_tools());
  } else if (strcmp(role, "callee") == 0 || strcmp(role, "restarted") == 0) {
    int first_start = strcmp(role, "callee") == 0;
    snprintf(name, sizeof name, "callee-%s", LANGUAGE);
    agents[wanted++] = start_reported(name, NULL, NULL, CALLEE, callee_tools(first_start));
    if (first_start) {
      agents[wanted++] = start_echo_only("misnamed", setting("misnamed_host"));
      agents[wanted++] = start_echo_only("replaced", NULL);
      agents[wanted++] = start_aloof();
    }
  } else if (strcmp(role, "impostor") == 0) {
    agents[wanted++] = start_echo_only("replaced", NULL);
  } else if (strcmp(role, "guarded") == 0) {
    agents[wanted++] = start_guarded();
    agents[wanted++] = start_relay();
  } else if (strcmp(role, "squat") == 0) {
    agents[wanted++] = start_echo_only("squatter", NULL);
  } else {
    fprintf(stderr, "peer: unknown role %s\n", role);
  }
  for (size_t i = 0; i < wanted; i++) started += agents[i] != NULL;
  int status = wanted > 0 && started == wanted ? 0 : 2;
  if (status == 0) {
    int received;
    sigwait(&stop_signals, &received);
  }
  for (size_t i = 0; i < wanted; i++) toolmesh_agent_free(agents[i]);
  return status;
}

static int start_once(void) {
  char name[64];
  snprintf(name, sizeof name, "starter-%s", LANGUAGE);
  toolmesh_error *error = NULL;
  toolmesh_agent *agent = start(name, NULL, NULL, CALLEE, json_pack("[o]", tool("echo", tag("agent", LANGUAGE), NULL)), &error);
  json_t *outcome = agent ? json_pack("{s:s}", "ok", "started")
                          : json_pack("{s:{s:i, s:s, s:s}}", "error", "code", toolmesh_error_code(error), "name",
                                      toolmesh_result_name(toolmesh_error_code(error)), "message", toolmesh_error_message(error));
  char *text = json_dumps(outcome, JSON_COMPACT);
  printf("%s\n", text);
  free(text);
  json_decref(outcome);
  toolmesh_error_free(error);
  toolmesh_agent_free(agent);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s caller|callee|restarted|impostor|guarded|squat|start CASES_JSON\n", argv[0]);
    return 2;
  }
  json_error_t problem;
  table = json_load_file(argv[2], 0, &problem);
  if (table == NULL) {
    fprintf(stderr, "peer: %s:%d: %s\n", argv[2], problem.line, problem.text);
    return 2;
  }
  int status = strcmp(argv[1], "start") == 0 ? start_once() : serve(argv[1]);
  json_decref(table);
  return status;
}
