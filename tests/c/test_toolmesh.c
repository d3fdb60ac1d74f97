/*
 * The C ABI suite: a registry process, C agents in this process talking mTLS to each other,
 * and the C example agent as a child process. Every wait is bounded.
 *
 * Environment: TOOLMESH_BIN (the toolmesh CLI) and TOOLMESH_EXAMPLE (the squares example
 * binary), both required: a suite that skipped the example would pass without testing it;
 * TOOLMESH_EXAMPLE_WRAPPER (words put before the example, e.g. a valgrind command line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../examples/c/json_fields.h"
#include "harness.h"
#include "toolmesh.h"

/* Generous: under valgrind, TLS handshakes and start-up are tens of times slower. */
enum { WAIT_MS = 60000, HEARTBEAT_MS = 1000 };

/* The CLOCK_REALTIME instant WAIT_MS from now, for pthread_cond_timedwait. */
static struct timespec wait_deadline(void) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += WAIT_MS / 1000;
  return deadline;
}

static const char *toolmesh_bin;
static char scratch[512];
static char registry_url[256];
static struct child registry;
static bool registry_running;

/* ---- paths and configuration ---- */

static const char *cert_path(const char *set, const char *file) {
  static _Thread_local char path[8][768];
  static _Thread_local int next;
  char *out = path[next++ % 8];
  snprintf(out, sizeof path[0], "%s/%s/%s", scratch, set, file);
  return out;
}

/* A configuration for identity `name` of the certificate set `set` (a directory made by
 * `toolmesh certs init`), registered with the test registry. */
static toolmesh_config *agent_config(const char *name, const char *set) {
  toolmesh_config *config = NULL;
  toolmesh_error *error = NULL;
  if (toolmesh_config_new(name, &config, &error) != TOOLMESH_OK) {
    fprintf(stderr, "  config: %s\n", toolmesh_error_message(error));
    toolmesh_error_free(error);
    return NULL;
  }
  char file[64];
  const char *settings[][2] = {
      {"tls_cert", (snprintf(file, sizeof file, "%s.pem", name), cert_path(set, file))},
      {"tls_key", (snprintf(file, sizeof file, "%s.key", name), cert_path(set, file))},
      {"tls_ca", cert_path("certs", "ca.pem")},
      {"registry_url", registry_url},
      {"heartbeat_interval_ms", "1000"},
      {"propagate_headers", "x-tenant-id"},
  };
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
    toolmesh_result code = toolmesh_config_set(config, settings[i][0], settings[i][1], &error);
    if (code != TOOLMESH_OK) {
      fprintf(stderr, "  config %s: %s\n", settings[i][0], toolmesh_error_message(error));
      toolmesh_error_free(error);
    }
  }
  return config;
}

/* ---- the agents' handler ---- */

/* The handler's userdata: one per agent. */
struct agent_state {
  _Atomic(toolmesh_agent *) agent;
};

static atomic_int handlers_released;
/* An invocation of back's `hold` with a != 0, kept unanswered for the test to answer. */
static _Atomic(toolmesh_invocation *) held_invocation;

static void release_state(void *userdata) {
  free(userdata);
  atomic_fetch_add(&handlers_released, 1);
}

static void complete_json(toolmesh_invocation *invocation, const char *json) {
  toolmesh_result code = toolmesh_invocation_complete(invocation, json, NULL);
  if (code != TOOLMESH_OK) fprintf(stderr, "  cannot complete: %s\n", toolmesh_result_name(code));
}

/* What a dependency call's completion needs to answer the invocation that made it. */
struct pending {
  toolmesh_invocation *invocation;
  long long add;
  char tenant[64];
  char scoped[64];
  char trace_id[64];
};

static void finish_sum3(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  if (code == TOOLMESH_OK) {
    char json[32];
    snprintf(json, sizeof json, "%lld", strtoll(text, NULL, 10) + pending->add);
    complete_json(pending->invocation, json);
  } else {
    toolmesh_invocation_fail_with_error(pending->invocation, error, NULL);
  }
  free(pending);
}

/* Lets the dependency's error escape intact: a tool error keeps its code, message and data. */
static void finish_reraise(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  if (code == TOOLMESH_OK) {
    complete_json(pending->invocation, text);
  } else {
    toolmesh_invocation_fail_with_error(pending->invocation, error, NULL);
  }
  free(pending);
}

/* Answers with both hops' view of the request context: the trace must be the same one. */
static void finish_relay(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct pending *pending = userdata;
  char back_tenant[64] = "", back_scoped[64] = "", back_trace[64] = "";
  if (code == TOOLMESH_OK && json_string(text, "tenant", back_tenant, sizeof back_tenant) &&
      json_string(text, "scoped", back_scoped, sizeof back_scoped) && json_string(text, "trace_id", back_trace, sizeof back_trace)) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"tenant_front\": \"%s\", \"tenant_back\": \"%s\", \"scoped_front\": \"%s\", \"scoped_back\": \"%s\", "
             "\"trace_continues\": %s}",
             pending->tenant, back_tenant, pending->scoped, back_scoped,
             pending->trace_id[0] && strcmp(pending->trace_id, back_trace) == 0 ? "true" : "false");
    complete_json(pending->invocation, json);
  } else if (error != NULL) {
    toolmesh_invocation_fail_with_error(pending->invocation, error, NULL);
  } else {
    toolmesh_invocation_fail(pending->invocation, "echo_context answered without a tenant or trace", NULL);
  }
  free(pending);
}

static void call_dependency(struct agent_state *state, toolmesh_invocation *invocation, const char *tool, const char *arguments,
                            toolmesh_call_callback callback, struct pending *pending) {
  toolmesh_error *error = NULL;
  toolmesh_result code = toolmesh_agent_call(atomic_load(&state->agent), invocation, tool, 0, arguments, callback, pending, &error);
  if (code != TOOLMESH_OK) {
    /* The call never started, so its callback never runs: answer here. */
    toolmesh_invocation_fail_with_error(invocation, error, NULL);
    toolmesh_error_free(error);
    free(pending);
  }
}

static void invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  struct agent_state *state = userdata;
  long long a = 0, b = 0, c = 0;
  json_int(arguments_json, "a", &a);
  json_int(arguments_json, "b", &b);
  json_int(arguments_json, "c", &c);
  const char *tenant = toolmesh_invocation_header(invocation, "X-Tenant-Id");
  const char *scoped = toolmesh_invocation_header(invocation, "x-scoped"); /* set on purpose by a caller */
  const char *trace_id = toolmesh_invocation_trace_id(invocation);
  if (strcmp(tool, "add") == 0 || strcmp(tool, "nope") == 0) {
    char json[32];
    snprintf(json, sizeof json, "%lld", a + b);
    complete_json(invocation, json);
  } else if (strcmp(tool, "echo_context") == 0) {
    char json[256];
    snprintf(json, sizeof json, "{\"tenant\": \"%s\", \"scoped\": \"%s\", \"trace_id\": \"%s\"}", tenant ? tenant : "",
             scoped ? scoped : "", trace_id ? trace_id : "");
    complete_json(invocation, json);
  } else if (strcmp(tool, "fail") == 0) {
    toolmesh_invocation_fail(invocation, "boom", NULL);
  } else if (strcmp(tool, "refuse") == 0) {
    /* An expected failure of the tool's domain: its own code, message and data. */
    toolmesh_result code = toolmesh_invocation_fail_tool_error(invocation, "unknown_sku", "no such sku: X", "{\"sku\": \"X\"}", NULL);
    CHECK(code == TOOLMESH_OK, "a valid tool error is accepted");
  } else if (strcmp(tool, "refuse_via") == 0) {
    struct pending *pending = calloc(1, sizeof *pending);
    pending->invocation = invocation;
    call_dependency(state, invocation, tool, "{}", finish_reraise, pending);
  } else if (strcmp(tool, "gives_up") == 0) {
    toolmesh_invocation_free(invocation); /* no answer: the caller must still hear, once */
  } else if (strcmp(tool, "hold") == 0) {
    if (a == 0) {
      complete_json(invocation, "\"not held\"");
    } else {
      atomic_store(&held_invocation, invocation); /* the test answers it */
    }
  } else if (strcmp(tool, "sum3") == 0 || strcmp(tool, "relay") == 0) {
    struct pending *pending = calloc(1, sizeof *pending);
    pending->invocation = invocation;
    pending->add = c;
    snprintf(pending->tenant, sizeof pending->tenant, "%s", tenant ? tenant : "");
    snprintf(pending->scoped, sizeof pending->scoped, "%s", scoped ? scoped : "");
    snprintf(pending->trace_id, sizeof pending->trace_id, "%s", trace_id ? trace_id : "");
    char arguments[96];
    snprintf(arguments, sizeof arguments, "{\"a\": %lld, \"b\": %lld}", a, b);
    bool sum3 = strcmp(tool, "sum3") == 0;
    call_dependency(state, invocation, tool, sum3 ? arguments : "{}", sum3 ? finish_sum3 : finish_relay, pending);
  } else {
    toolmesh_invocation_fail(invocation, "no such tool here", NULL);
  }
}

/* Starts an agent; NULL (with the code and message in *code and message) when it fails. */
static toolmesh_agent *start_agent(const char *name, const char *set, const char *tools_json, toolmesh_result *code, char *message,
                                   size_t message_size) {
  toolmesh_config *config = agent_config(name, set);
  struct agent_state *state = calloc(1, sizeof *state);
  toolmesh_handler handler = {.userdata = state, .invoke = invoke, .free_userdata = release_state};
  toolmesh_agent *agent = NULL;
  toolmesh_error *error = NULL;
  /* `state` belongs to toolmesh from here on, whatever the outcome. */
  *code = toolmesh_agent_start(config, tools_json, handler, &agent, &error);
  toolmesh_config_free(config);
  if (*code != TOOLMESH_OK) {
    if (message) snprintf(message, message_size, "%s", toolmesh_error_message(error));
    toolmesh_error_free(error);
    return NULL;
  }
  atomic_store(&state->agent, agent);
  return agent;
}

static toolmesh_agent *start_registered(const char *name, const char *tools_json) {
  toolmesh_result code;
  char message[512] = "";
  toolmesh_agent *agent = start_agent(name, "certs", tools_json, &code, message, sizeof message);
  if (!CHECK(agent != NULL, "the agent starts") ) {
    fprintf(stderr, "  [%d %s] %s\n", code, toolmesh_result_name(code), message);
    return NULL;
  }
  toolmesh_error *error = NULL;
  toolmesh_result registered = toolmesh_agent_wait_registered(agent, WAIT_MS, &error);
  if (!CHECK(registered == TOOLMESH_OK, "the registry accepts the agent")) {
    fprintf(stderr, "  [%d %s] %s\n", registered, toolmesh_result_name(registered), toolmesh_error_message(error));
  }
  toolmesh_error_free(error);
  return agent;
}

/* ---- synchronous calls for the tests ---- */

struct outcome {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  int deliveries;
  toolmesh_result code;
  char text[1024];
};

/* Records the code and text; for a tool error "<app code>: <message> <data>". */
static void record_outcome(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct outcome *outcome = userdata;
  pthread_mutex_lock(&outcome->lock);
  outcome->deliveries++;
  outcome->code = code;
  CHECK((code == TOOLMESH_OK) == (error == NULL), "a failure, and only a failure, comes with its error");
  CHECK(error == NULL || (toolmesh_error_code(error) == code && strcmp(toolmesh_error_message(error), text) == 0),
        "the error is the one reported");
  const char *app_code = toolmesh_error_app_code(error);
  if (app_code != NULL) {
    const char *data = toolmesh_error_data_json(error);
    snprintf(outcome->text, sizeof outcome->text, "%s: %s %s", app_code, text, data ? data : "(no data)");
  } else {
    snprintf(outcome->text, sizeof outcome->text, "%s", text);
  }
  pthread_cond_broadcast(&outcome->changed);
  pthread_mutex_unlock(&outcome->lock);
}

/* Calls dependency `index` of `tool` with `headers` set on purpose (NULL: none) and waits for the
 * outcome. toolmesh delivers it exactly once, within the call's timeout; the wait is bounded all
 * the same. */
static toolmesh_result call_with_headers(toolmesh_agent *agent, const toolmesh_call_headers *headers, const char *tool, size_t index,
                                         const char *arguments, char *text, size_t size) {
  struct outcome *outcome = calloc(1, sizeof *outcome);
  pthread_mutex_init(&outcome->lock, NULL);
  pthread_cond_init(&outcome->changed, NULL);
  toolmesh_error *error = NULL;
  toolmesh_result code = headers == NULL
                             ? toolmesh_agent_call(agent, NULL, tool, index, arguments, record_outcome, outcome, &error)
                             : toolmesh_agent_call_with_headers(agent, NULL, headers, tool, index, arguments, record_outcome, outcome, &error);
  if (code != TOOLMESH_OK) {
    snprintf(text, size, "%s", toolmesh_error_message(error));
    toolmesh_error_free(error);
    free(outcome);
    return code;
  }
  struct timespec deadline = wait_deadline();
  pthread_mutex_lock(&outcome->lock);
  while (outcome->deliveries == 0 && pthread_cond_timedwait(&outcome->changed, &outcome->lock, &deadline) == 0) {
  }
  int deliveries = outcome->deliveries;
  code = outcome->code;
  snprintf(text, size, "%s", outcome->text);
  pthread_mutex_unlock(&outcome->lock);
  if (!CHECK(deliveries == 1, "the completion arrives within the wait")) {
    /* Still owed a completion: leaked on purpose rather than freed under it. */
    return -1;
  }
  usleep(20 * 1000); /* a second delivery would come right after the first */
  pthread_mutex_lock(&outcome->lock);
  CHECK(outcome->deliveries == 1, "the completion is delivered exactly once");
  pthread_mutex_unlock(&outcome->lock);
  pthread_cond_destroy(&outcome->changed);
  pthread_mutex_destroy(&outcome->lock);
  free(outcome);
  return code;
}

static toolmesh_result call(toolmesh_agent *agent, const char *tool, size_t index, const char *arguments, char *text, size_t size) {
  return call_with_headers(agent, NULL, tool, index, arguments, text, size);
}

/* Calls until the dependency resolves (the caller learns of providers with the next heartbeat). */
static toolmesh_result call_when_resolved(toolmesh_agent *agent, const char *tool, size_t index, const char *arguments, char *text,
                                          size_t size) {
  toolmesh_result code = TOOLMESH_DEPENDENCY_UNRESOLVED;
  for (int waited = 0; waited <= WAIT_MS && code == TOOLMESH_DEPENDENCY_UNRESOLVED; waited += 100) {
    code = call(agent, tool, index, arguments, text, size);
    if (code == TOOLMESH_DEPENDENCY_UNRESOLVED) usleep(100 * 1000);
  }
  return code;
}

/* ---- the tests ---- */

static const char BACK_TOOLS[] =
    "[{\"name\": \"add\", \"capability\": \"add\"},"
    " {\"name\": \"echo_context\", \"capability\": \"echo_context\"},"
    " {\"name\": \"fail\", \"capability\": \"fail\"},"
    " {\"name\": \"gives_up\", \"capability\": \"gives_up\"},"
    " {\"name\": \"refuse\", \"capability\": \"refuse\"},"
    " {\"name\": \"hold\", \"capability\": \"hold\"}]";
static const char FRONT_TOOLS[] =
    "[{\"name\": \"sum3\", \"capability\": \"sum3\", \"dependencies\": [\"add\"]},"
    " {\"name\": \"relay\", \"capability\": \"relay\", \"dependencies\": [\"echo_context\"]},"
    " {\"name\": \"refuse_via\", \"capability\": \"refuse_via\", \"dependencies\": [\"refuse\"]},"
    " {\"name\": \"client\", \"capability\": \"client\","
    "  \"dependencies\": [\"sum3\", \"nothing-provides-this\", \"fail\", \"gone\", \"gives_up\", \"refuse\", \"refuse_via\", \"relay\"]}]";
/* The dependencies of front's `client`, by index. */
enum {
  CLIENT_SUM3 = 0,
  CLIENT_UNRESOLVED = 1,
  CLIENT_FAIL = 2,
  CLIENT_GONE = 3,
  CLIENT_GIVES_UP = 4,
  CLIENT_REFUSE = 5,
  CLIENT_REFUSE_VIA = 6,
  CLIENT_RELAY = 7
};

static toolmesh_agent *front, *back;

static void test_result_names(void) {
  CHECK_STR(toolmesh_result_name(TOOLMESH_OK), "OK");
  CHECK_STR(toolmesh_result_name(5002), "UNKNOWN_TOOL");
  CHECK_STR(toolmesh_result_name(TOOLMESH_DEPENDENCY_UNRESOLVED), "DEPENDENCY_UNRESOLVED");
  CHECK_STR(toolmesh_result_name(TOOLMESH_NULL_ARGUMENT), "NULL_ARGUMENT");
  CHECK_STR(toolmesh_result_name(-7), "UNKNOWN");
}

static void test_result_messages(void) {
  CHECK_STR(toolmesh_result_message(TOOLMESH_OK), "Success.");
  CHECK_STR(toolmesh_result_message(5002), "The remote agent has no tool by that name.");
  CHECK_STR(toolmesh_result_message(TOOLMESH_HANDLER_DROPPED), "The host dropped the completion without answering.");
  CHECK_STR(toolmesh_result_message(TOOLMESH_WRONG_THREAD),
            "A blocking function was called on a toolmesh runtime thread, where it could deadlock.");
  CHECK_STR(toolmesh_result_message(-7), "unknown result code");
  CHECK_STR(toolmesh_result_message(4999), "unknown result code");
  /* Every code in the header's ranges has a message of its own, static (same pointer twice). */
  for (toolmesh_result code = 0; code < 10000; code++) {
    const char *message = toolmesh_result_message(code);
    bool known = strcmp(toolmesh_result_name(code), "UNKNOWN") != 0;
    if (!CHECK(known == (strcmp(message, "unknown result code") != 0), "a name exactly when a message")) {
      fprintf(stderr, "  code %d\n", code);
    }
    CHECK(message == toolmesh_result_message(code), "static");
  }
}

static void test_null_arguments(void) {
  toolmesh_error *error = NULL;
  toolmesh_config *config = NULL;
  toolmesh_agent *agent = NULL;
  CHECK(toolmesh_config_new(NULL, &config, &error) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_error_code(error) == TOOLMESH_NULL_ARGUMENT);
  CHECK_STR(toolmesh_error_message(error), "the argument 'name' is NULL");
  toolmesh_error_free(error);
  CHECK(config == NULL, "no output on failure");
  CHECK(toolmesh_config_new("x", NULL, NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_config_set(NULL, "port", "1", NULL) == TOOLMESH_NULL_ARGUMENT);
  toolmesh_handler no_invoke = {.userdata = NULL, .invoke = NULL, .free_userdata = NULL};
  CHECK(toolmesh_agent_start(NULL, "[]", no_invoke, &agent, NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(agent == NULL, "no output on failure");
  CHECK(toolmesh_agent_stop(NULL, NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_agent_wait_registered(NULL, 10, &error) == TOOLMESH_NULL_ARGUMENT);
  CHECK_STR(toolmesh_error_message(error), "the argument 'agent' is NULL");
  toolmesh_error_free(error);
  CHECK(toolmesh_agent_id(NULL) == NULL);
  CHECK(toolmesh_agent_endpoint(NULL) == NULL);
  CHECK(toolmesh_agent_call(NULL, NULL, "t", 0, "{}", record_outcome, NULL, NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_invocation_header(NULL, "x") == NULL);
  CHECK(toolmesh_invocation_trace_id(NULL) == NULL);
  CHECK(toolmesh_invocation_complete(NULL, "1", NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_invocation_fail(NULL, "m", NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_invocation_fail_with_code(NULL, 5002, "m", NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_invocation_fail_tool_error(NULL, "unknown_sku", "m", NULL, NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_invocation_fail_with_error(NULL, NULL, NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK(toolmesh_error_app_code(NULL) == NULL);
  CHECK(toolmesh_error_data_json(NULL) == NULL);
  CHECK(toolmesh_error_code(NULL) == TOOLMESH_NULL_ARGUMENT);
  CHECK_STR(toolmesh_error_message(NULL), "");
  toolmesh_error_free(NULL);
  toolmesh_config_free(NULL);
  toolmesh_agent_free(NULL);
}

static void test_configuration_errors(void) {
  toolmesh_config *config = agent_config("front", "certs");
  REQUIRE(config != NULL);
  toolmesh_error *error = NULL;
  CHECK(toolmesh_config_set(config, "port", "http", &error) == TOOLMESH_INVALID_CONFIG);
  CHECK_STR(toolmesh_error_message(error), "port 'http' is not a number from 0 to 65535 (0 picks a free port)");
  toolmesh_error_free(error);
  error = NULL;
  CHECK(toolmesh_config_set(config, "registry_url", "http://127.0.0.1:1", &error) == TOOLMESH_REGISTRY_URL_NOT_HTTPS);
  toolmesh_error_free(error);
  CHECK(toolmesh_config_set(config, "name", "\xff", NULL) == TOOLMESH_INVALID_UTF8);
  toolmesh_config_free(config);
}

/* A start that fails reports the core's code and message, and still releases the handler. */
static void expect_start_failure(const char *name, const char *set, const char *cert, const char *key, toolmesh_result expected,
                                 const char *message_part) {
  toolmesh_config *config = agent_config(name, set);
  if (cert) toolmesh_config_set(config, "tls_cert", cert, NULL);
  if (key) toolmesh_config_set(config, "tls_key", key, NULL);
  int released_before = atomic_load(&handlers_released);
  struct agent_state *state = calloc(1, sizeof *state);
  toolmesh_handler handler = {.userdata = state, .invoke = invoke, .free_userdata = release_state};
  toolmesh_agent *agent = NULL;
  toolmesh_error *error = NULL;
  toolmesh_result code = toolmesh_agent_start(config, BACK_TOOLS, handler, &agent, &error);
  toolmesh_config_free(config);
  CHECK(code == expected, "the start fails with the expected code");
  CHECK(agent == NULL, "no agent on failure");
  CHECK(toolmesh_error_code(error) == code);
  const char *message = toolmesh_error_message(error);
  fprintf(stderr, "  [%d %s] %s\n", code, toolmesh_result_name(code), message);
  CHECK(strstr(message, message_part) != NULL, "the core's message");
  toolmesh_error_free(error);
  for (int waited = 0; waited < WAIT_MS && atomic_load(&handlers_released) == released_before; waited += 10) usleep(10 * 1000);
  CHECK(atomic_load(&handlers_released) == released_before + 1, "the handler is released once");
}

static void test_bad_certificates(void) {
  expect_start_failure("front", "certs", cert_path("certs", "missing.pem"), NULL, TOOLMESH_CERTIFICATE_FILE, "missing.pem");
  expect_start_failure("front", "certs", NULL, cert_path("certs", "back.key"), TOOLMESH_KEY_MISMATCH, "does not belong");
  /* A certificate of another mesh's CA: it does not chain to this mesh's CA. */
  expect_start_failure("front", "foreign", NULL, NULL, TOOLMESH_CERTIFICATE_UNTRUSTED, "is not signed by the CA");
}

static void test_start_two_agents(void) {
  back = start_registered("back", BACK_TOOLS);
  front = start_registered("front", FRONT_TOOLS);
  REQUIRE(front != NULL && back != NULL);
  CHECK(strncmp(toolmesh_agent_endpoint(front), "https://127.0.0.1:", 18) == 0);
  CHECK(strncmp(toolmesh_agent_id(front), "front-", 6) == 0);
}

static void test_chained_call(void) {
  REQUIRE(front != NULL && back != NULL);
  char text[1024];
  /* this process -> front's sum3 (in process) -> back's add (mTLS) */
  toolmesh_result code = call_when_resolved(front, "client", CLIENT_SUM3, "{\"a\": 1, \"b\": 2, \"c\": 3}", text, sizeof text);
  CHECK(code == TOOLMESH_OK, "the chained call succeeds");
  CHECK_STR(text, "6");
}

static void test_errors_are_the_cores(void) {
  REQUIRE(front != NULL && back != NULL);
  char text[1024];
  CHECK(call(front, "client", CLIENT_UNRESOLVED, "{}", text, sizeof text) == TOOLMESH_DEPENDENCY_UNRESOLVED);
  CHECK(strstr(text, "nothing-provides-this") != NULL, "names the capability");
  CHECK(call_when_resolved(front, "client", CLIENT_FAIL, "{}", text, sizeof text) == TOOLMESH_TOOL_FAILED);
  CHECK_STR(text, "tool 'fail' failed: boom");
  CHECK(call(front, "client", 99, "{}", text, sizeof text) == TOOLMESH_UNKNOWN_DEPENDENCY);
  /* back's handler frees the invocation unanswered (the core's HANDLER_DROPPED there): over
   * mTLS, front's caller gets a tool failure saying so, exactly once (`call` checks). */
  CHECK(call_when_resolved(front, "client", CLIENT_GIVES_UP, "{}", text, sizeof text) == TOOLMESH_TOOL_FAILED);
  CHECK_STR(text, "tool 'gives_up' ended without an answer");
  CHECK(call(front, "client", CLIENT_SUM3, "{not json", text, sizeof text) == TOOLMESH_INVALID_JSON);
  /* A tool error reaches the caller with its application code and data, over mTLS, and intact
   * through front's refuse_via, which re-raises the error its own call got. */
  CHECK(call_when_resolved(front, "client", CLIENT_REFUSE, "{}", text, sizeof text) == TOOLMESH_TOOL_ERROR);
  CHECK_STR(text, "unknown_sku: no such sku: X {\"sku\":\"X\"}");
  CHECK(call_when_resolved(front, "client", CLIENT_REFUSE_VIA, "{}", text, sizeof text) == TOOLMESH_TOOL_ERROR);
  CHECK_STR(text, "unknown_sku: no such sku: X {\"sku\":\"X\"}");
  CHECK(strcmp(toolmesh_result_name(TOOLMESH_TOOL_ERROR), "TOOL_ERROR") == 0);
}

/* Answers the held invocation a moment after the agent starts being freed. */
static void *answer_held_later(void *unused) {
  (void)unused;
  usleep(300 * 1000);
  complete_json(atomic_load(&held_invocation), "\"late\"");
  return NULL;
}

/* A dependency call over mTLS still in flight while its agent is stopped and freed: the
 * completion runs exactly once, with the late result or TOOLMESH_SHUTDOWN. */
static void test_call_in_flight_while_the_agent_is_freed(void) {
  REQUIRE(back != NULL);
  toolmesh_agent *impatient = start_registered("spare", "[{\"name\": \"impatient\", \"capability\": \"impatient\","
                                                         " \"dependencies\": [\"hold\"]}]");
  REQUIRE(impatient != NULL);
  char text[1024];
  REQUIRE(call_when_resolved(impatient, "impatient", 0, "{\"a\": 0}", text, sizeof text) == TOOLMESH_OK, "hold resolves");
  CHECK_STR(text, "\"not held\"");

  struct outcome *outcome = calloc(1, sizeof *outcome);
  pthread_mutex_init(&outcome->lock, NULL);
  pthread_cond_init(&outcome->changed, NULL);
  atomic_store(&held_invocation, NULL);
  REQUIRE(toolmesh_agent_call(impatient, NULL, "impatient", 0, "{\"a\": 1}", record_outcome, outcome, NULL) == TOOLMESH_OK);
  for (int waited = 0; waited < WAIT_MS && atomic_load(&held_invocation) == NULL; waited += 10) usleep(10 * 1000);
  REQUIRE(atomic_load(&held_invocation) != NULL, "back holds the call");

  pthread_t answerer;
  pthread_create(&answerer, NULL, answer_held_later, NULL);
  toolmesh_agent_free(impatient);
  pthread_join(answerer, NULL);

  struct timespec deadline = wait_deadline();
  pthread_mutex_lock(&outcome->lock);
  while (outcome->deliveries == 0 && pthread_cond_timedwait(&outcome->changed, &outcome->lock, &deadline) == 0) {
  }
  pthread_mutex_unlock(&outcome->lock);
  usleep(200 * 1000); /* room for a second delivery */
  pthread_mutex_lock(&outcome->lock);
  int deliveries = outcome->deliveries;
  toolmesh_result code = outcome->code;
  fprintf(stderr, "  [%d %s] %s\n", code, toolmesh_result_name(code), outcome->text);
  CHECK(deliveries == 1, "delivered exactly once");
  CHECK(code == TOOLMESH_OK || code == TOOLMESH_SHUTDOWN, "the late result, or SHUTDOWN");
  if (code == TOOLMESH_OK) CHECK_STR(outcome->text, "\"late\"");
  pthread_mutex_unlock(&outcome->lock);
  if (deliveries == 1) {
    pthread_cond_destroy(&outcome->changed);
    pthread_mutex_destroy(&outcome->lock);
    free(outcome);
  }
}

/* An operator call with a header, through front's C handler, to back's: the header is
 * propagated and both hops see one trace. */
static void test_headers_and_trace_propagate(void) {
  REQUIRE(front != NULL && back != NULL);
  char text[1024];
  /* front learns of back's echo_context first */
  REQUIRE(call_when_resolved(front, "relay", 0, "{}", text, sizeof text) == TOOLMESH_OK);
  char *argv[] = {(char *)toolmesh_bin, "call", "relay", "{}", "--header", "x-tenant-id=acme", "--registry", registry_url,
                  "--tls-cert", (char *)cert_path("certs", "operator.pem"), "--tls-key", (char *)cert_path("certs", "operator.key"),
                  "--tls-ca", (char *)cert_path("certs", "ca.pem"), NULL};
  char output[2048];
  CHECK(run_command(argv, output, sizeof output, WAIT_MS) == 0, "toolmesh call succeeds");
  char tenant_front[64] = "", tenant_back[64] = "";
  CHECK(json_string(output, "tenant_front", tenant_front, sizeof tenant_front));
  CHECK(json_string(output, "tenant_back", tenant_back, sizeof tenant_back));
  CHECK_STR(tenant_front, "acme");
  CHECK_STR(tenant_back, "acme");
  const char *continues = json_field(output, "trace_continues");
  CHECK(continues != NULL && strncmp(continues, "true", 4) == 0, "one trace across both hops");
}

/* Headers a C caller sets on purpose (toolmesh_call_headers): the handler the call reaches sees
 * them though its allow-list (x-tenant-id) does not name them; they go no further. */
static void test_call_headers_reach_the_next_handler_only(void) {
  REQUIRE(front != NULL && back != NULL);
  toolmesh_call_headers *headers = NULL;
  toolmesh_error *error = NULL;
  REQUIRE(toolmesh_call_headers_new(&headers, NULL) == TOOLMESH_OK);
  CHECK(toolmesh_call_headers_set(headers, "X-Scoped", "first", NULL) == TOOLMESH_OK);
  CHECK(toolmesh_call_headers_set(headers, "x-scoped", "from-c", NULL) == TOOLMESH_OK, "a name set again takes the new value");
  CHECK(toolmesh_call_headers_set(headers, "x-tenant-id", "acme", NULL) == TOOLMESH_OK);
  CHECK(toolmesh_call_headers_set(headers, "traceparent", "00-x", &error) == TOOLMESH_INVALID_ARGUMENTS);
  CHECK_STR(toolmesh_error_message(error),
            "call header 'traceparent' cannot be set: the request sets it itself (hop-by-hop, body, protocol, trace and toolmesh "
            "headers never are); use another name");
  toolmesh_error_free(error);
  char text[1024];
  /* front -> back's echo_context, from outside a handler */
  REQUIRE(call_when_resolved(front, "relay", 0, "{}", text, sizeof text) == TOOLMESH_OK);
  REQUIRE(call_with_headers(front, headers, "relay", 0, "{}", text, sizeof text) == TOOLMESH_OK);
  char scoped[64] = "", tenant[64] = "";
  CHECK(json_string(text, "scoped", scoped, sizeof scoped) && json_string(text, "tenant", tenant, sizeof tenant));
  CHECK_STR(scoped, "from-c");
  CHECK_STR(tenant, "acme");
  /* front's own relay (in-process), whose handler calls back's echo_context */
  REQUIRE(call_with_headers(front, headers, "client", CLIENT_RELAY, "{}", text, sizeof text) == TOOLMESH_OK);
  char scoped_front[64] = "", scoped_back[64] = "x", tenant_back[64] = "";
  CHECK(json_string(text, "scoped_front", scoped_front, sizeof scoped_front));
  CHECK(json_string(text, "scoped_back", scoped_back, sizeof scoped_back));
  CHECK(json_string(text, "tenant_back", tenant_back, sizeof tenant_back));
  CHECK_STR(scoped_front, "from-c");
  CHECK_STR(scoped_back, ""); /* not allow-listed: it stopped at front's relay */
  CHECK_STR(tenant_back, "acme"); /* allow-listed: it went on */
  toolmesh_call_headers_free(headers);
}

/* The example agent, as a separate process (under the same checker as this suite). */
static void test_example_agent(void) {
  const char *example = getenv("TOOLMESH_EXAMPLE"); /* main checked it is set */
  char wrapper[1024] = "";
  snprintf(wrapper, sizeof wrapper, "%s", getenv("TOOLMESH_EXAMPLE_WRAPPER") ? getenv("TOOLMESH_EXAMPLE_WRAPPER") : "");
  char *argv[64];
  int argc = 0;
  for (char *word = strtok(wrapper, " "); word != NULL && argc < 60; word = strtok(NULL, " ")) argv[argc++] = word;
  argv[argc++] = (char *)example;
  argv[argc] = NULL;

  setenv("TOOLMESH_REGISTRY_URL", registry_url, 1);
  setenv("TOOLMESH_TLS_CERT", cert_path("certs", "squares.pem"), 1);
  setenv("TOOLMESH_TLS_KEY", cert_path("certs", "squares.key"), 1);
  setenv("TOOLMESH_TLS_CA", cert_path("certs", "ca.pem"), 1);
  struct child squares;
  bool started = child_start(&squares, argv, NULL);
  unsetenv("TOOLMESH_REGISTRY_URL");
  REQUIRE(started);
  char serving[512];
  if (CHECK(child_wait_line(&squares, "toolmesh agent squares serving ", serving, sizeof serving, WAIT_MS))) {
    char *call_argv[] = {(char *)toolmesh_bin, "call", "square_sum", "{\"a\": 3, \"b\": 4}", "--registry", registry_url,
                         "--tls-cert", (char *)cert_path("certs", "operator.pem"), "--tls-key",
                         (char *)cert_path("certs", "operator.key"), "--tls-ca", (char *)cert_path("certs", "ca.pem"), NULL};
    char output[256] = "";
    int status = -1;
    for (int waited = 0; waited < WAIT_MS; waited += 200) {
      if ((status = run_command(call_argv, output, sizeof output, WAIT_MS)) == 0) break;
      usleep(200 * 1000); /* until the registry knows the agent */
    }
    CHECK(status == 0, "toolmesh call square_sum succeeds");
    CHECK(strtoll(output, NULL, 10) == 25, "3*3 + 4*4");
  }
  int status = child_stop(&squares, SIGTERM, WAIT_MS);
  CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the example exits cleanly (no leak, no error)");
}

/* ---- rich tool results, resources and prompts, over MCP ---- */

/* A 1x1 red PNG, standard base64. */
#define PNG "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="

static const char MEDIA_TOOLS[] =
    "[{\"name\": \"picture\", \"capability\": \"picture\"},"
    " {\"name\": \"counted\", \"capability\": \"counted\"},"
    " {\"name\": \"bad_picture\", \"capability\": \"bad_picture\"},"
    " {\"name\": \"reporter\", \"capability\": \"reporter\"},"
    " {\"name\": \"watcher\", \"capability\": \"watcher\"},"
    " {\"name\": \"observer\", \"capability\": \"observer\", \"dependencies\": [\"reporter\"]},"
    " {\"name\": \"whoami\", \"capability\": \"whoami\", \"required_client_capabilities\": [\"roots\"],"
    "  \"output_schema\": {\"type\": \"object\", \"properties\": {\"caller\": {\"type\": \"string\"}}, \"required\": [\"caller\"]}}]";
static const char MEDIA_CATALOG[] =
    "{\"resources\": [{\"uri\": \"test://static-text\", \"name\": \"static-text\", \"mimeType\": \"text/plain\", \"text\": \"static text\"},"
    "                 {\"uri\": \"test://empty\", \"name\": \"empty\"}, {\"uri\": \"test://broken\", \"name\": \"broken\"}],"
    " \"resourceTemplates\": [{\"uriTemplate\": \"test://template/{id}/data\", \"name\": \"template-data\","
    "                         \"mimeType\": \"application/json\"}],"
    " \"prompts\": [{\"name\": \"test_prompt_with_arguments\", \"description\": \"two arguments\","
    "              \"arguments\": [{\"name\": \"arg1\", \"required\": true}, {\"name\": \"arg2\", \"required\": true}]}]}";

/* What media's handlers saw and were told, for the tests to check. */
static pthread_mutex_t media_lock = PTHREAD_MUTEX_INITIALIZER;
/* Signalled when bad_picture's handler has recorded what it was told: the caller can read the
 * refusal before the handler thread gets back from toolmesh_invocation_complete_result. */
static pthread_cond_t media_told = PTHREAD_COND_INITIALIZER;
static char media_last_request[1024];
static toolmesh_result media_bad_picture_code = -1;
static char media_bad_picture_message[512];
/* What reporter's handler was told by the calls it got wrong on purpose. */
static toolmesh_result media_bad_level_code = -1, media_bad_data_code = -1, media_null_code = -1;
static char media_bad_level_message[256];

/* Set by watcher's cancel callback (on a toolmesh thread), waited for by its handler. */
static bool watcher_told;
static pthread_cond_t watcher_cancelled = PTHREAD_COND_INITIALIZER;

static void watcher_on_cancel(void *user_data) {
  (void)user_data;
  pthread_mutex_lock(&media_lock);
  watcher_told = true;
  pthread_cond_broadcast(&watcher_cancelled);
  pthread_mutex_unlock(&media_lock);
}

static toolmesh_agent *media;

/* observer's call of reporter: the reports it was handed (a JSON array in the making), in order. */
struct observed {
  toolmesh_invocation *invocation;
  char updates[4096];
};

/* Each report of reporter: kept, and its first progress re-emitted, transformed. */
static void observed_update(void *userdata, const char *update_json) {
  struct observed *observed = userdata;
  size_t used = strlen(observed->updates);
  snprintf(observed->updates + used, sizeof observed->updates - used, "%s%s", used > 1 ? "," : "", update_json);
  if (strstr(update_json, "\"kind\":\"progress\"") && strstr(update_json, "\"message\":\"half\""))
    toolmesh_invocation_progress(observed->invocation, 10, 20, "observer saw half", NULL);
}

static void finish_observed(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  struct observed *observed = userdata;
  if (code == TOOLMESH_OK) {
    char json[4200];
    snprintf(json, sizeof json, "{\"updates\": %s], \"result\": %s}", observed->updates, text);
    complete_json(observed->invocation, json);
  } else {
    toolmesh_invocation_fail_with_error(observed->invocation, error, NULL);
  }
  free(observed);
}

static void media_invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  (void)userdata;
  (void)arguments_json;
  if (strcmp(tool, "picture") == 0) {
    toolmesh_invocation_complete_result(
        invocation,
        "{\"content\": [{\"type\": \"text\", \"text\": \"a red pixel\"}, {\"type\": \"image\", \"data\": \"" PNG "\", \"mimeType\": \"image/png\"}]}",
        NULL);
  } else if (strcmp(tool, "counted") == 0) {
    toolmesh_invocation_complete_result(invocation, "{\"structuredContent\": {\"count\": 3}}", NULL);
  } else if (strcmp(tool, "bad_picture") == 0) {
    toolmesh_error *error = NULL;
    toolmesh_result code = toolmesh_invocation_complete_result(
        invocation,
        "{\"content\": [{\"type\": \"text\", \"text\": \"ok\"}, {\"type\": \"image\", \"data\": \"not base64!\", \"mimeType\": \"image/png\"}]}",
        &error);
    pthread_mutex_lock(&media_lock);
    media_bad_picture_code = code;
    snprintf(media_bad_picture_message, sizeof media_bad_picture_message, "%s", toolmesh_error_message(error));
    pthread_cond_broadcast(&media_told);
    pthread_mutex_unlock(&media_lock);
    toolmesh_error_free(error);
  } else if (strcmp(tool, "reporter") == 0) {
    /* Sent only as far as the request asked: progress needs its token, a legacy request gets info and up. */
    toolmesh_invocation_progress(invocation, 1, 2, "half", NULL);
    toolmesh_invocation_progress(invocation, 2, NAN, NULL, NULL);
    toolmesh_invocation_log(invocation, "debug", NULL, "\"below the level\"", NULL);
    toolmesh_invocation_log(invocation, "warning", "c-agent", "{\"disk\": 91}", NULL);
    toolmesh_error *error = NULL;
    toolmesh_result bad_level = toolmesh_invocation_log(invocation, "loud", NULL, "1", &error);
    pthread_mutex_lock(&media_lock);
    media_bad_level_code = bad_level;
    snprintf(media_bad_level_message, sizeof media_bad_level_message, "%s", toolmesh_error_message(error));
    media_bad_data_code = toolmesh_invocation_log(invocation, "info", NULL, "{not json", NULL);
    media_null_code = toolmesh_invocation_progress(NULL, 1, NAN, NULL, NULL);
    pthread_mutex_unlock(&media_lock);
    toolmesh_error_free(error);
    complete_json(invocation, "\"reported\"");
  } else if (strcmp(tool, "watcher") == 0) {
    /* Waits (on its host thread, which may block) until its request is cancelled: here by its
     * deadline. The callback only signals; the handler answers. */
    bool before = toolmesh_invocation_cancelled(invocation);
    pthread_mutex_lock(&media_lock);
    watcher_told = false;
    pthread_mutex_unlock(&media_lock);
    toolmesh_invocation_on_cancel(invocation, watcher_on_cancel, NULL, NULL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&media_lock);
    while (!watcher_told && pthread_cond_timedwait(&watcher_cancelled, &media_lock, &until) == 0) {
    }
    bool told = watcher_told;
    pthread_mutex_unlock(&media_lock);
    char answer[96];
    snprintf(answer, sizeof answer, "{\"before\": %s, \"callback\": %s, \"flag\": %s}", before ? "true" : "false",
             told ? "true" : "false", toolmesh_invocation_cancelled(invocation) ? "true" : "false");
    complete_json(invocation, answer);
  } else if (strcmp(tool, "observer") == 0) {
    struct observed *observed = calloc(1, sizeof *observed);
    observed->invocation = invocation;
    strcpy(observed->updates, "[");
    toolmesh_error *error = NULL;
    if (toolmesh_agent_call_observed(media, invocation, NULL, tool, 0, "{}", observed_update, finish_observed, observed, &error) !=
        TOOLMESH_OK) {
      toolmesh_invocation_fail_with_error(invocation, error, NULL); /* never started: no callback */
      toolmesh_error_free(error);
      free(observed);
    }
  } else if (strcmp(tool, "whoami") == 0) {
    const char *capabilities = toolmesh_invocation_client_capabilities(invocation);
    char json[512];
    snprintf(json, sizeof json, "{\"caller\": \"%s\", \"capabilities\": %s}", toolmesh_invocation_caller(invocation),
             capabilities ? capabilities : "null");
    complete_json(invocation, json);
  } else {
    toolmesh_invocation_fail(invocation, "no such tool here", NULL);
  }
}

static void media_catalog(void *userdata, const char *request_json, toolmesh_invocation *invocation) {
  (void)userdata;
  pthread_mutex_lock(&media_lock);
  snprintf(media_last_request, sizeof media_last_request, "%s", request_json);
  pthread_mutex_unlock(&media_lock);
  char kind[32] = "", uri[256] = "", id[64] = "", arg1[64] = "", arg2[64] = "";
  json_string(request_json, "kind", kind, sizeof kind);
  char answer[1024];
  if (strcmp(kind, "readResource") == 0 && json_string(request_json, "uri", uri, sizeof uri)) {
    if (strcmp(uri, "test://empty") == 0) {
      complete_json(invocation, "{\"contents\": []}"); /* invalid: never an empty contents */
      return;
    }
    if (strcmp(uri, "test://broken") == 0) {
      complete_json(invocation, "{\"contents\": [{\"uri\": \"test://broken\", \"blob\": \"not base64!\"}]}");
      return;
    }
    json_string(request_json, "id", id, sizeof id);
    snprintf(answer, sizeof answer,
             "{\"contents\": [{\"uri\": \"%s\", \"mimeType\": \"application/json\", \"text\": \"{\\\"id\\\": \\\"%s\\\"}\"}]}", uri, id);
    complete_json(invocation, answer);
  } else if (strcmp(kind, "getPrompt") == 0) {
    json_string(request_json, "arg1", arg1, sizeof arg1);
    json_string(request_json, "arg2", arg2, sizeof arg2);
    snprintf(answer, sizeof answer,
             "{\"description\": \"two arguments\", \"messages\": [{\"role\": \"user\", \"content\": {\"type\": \"text\", \"text\":"
             " \"Prompt with arguments: arg1='%s', arg2='%s'\"}}]}",
             arg1, arg2);
    complete_json(invocation, answer);
  } else {
    toolmesh_invocation_fail(invocation, "unexpected catalog request", NULL);
  }
}


/* POSTs one MCP request to `agent` with curl over mTLS, as the operator; the response body in
 * `output`. `modern_name` NULL: a legacy-era request; else a 2026-07-28 one, with the headers
 * naming the method and `modern_name` (params_json then carries the required `_meta`). */
static bool mcp_request_in(toolmesh_agent *agent, const char *method, const char *modern_name, const char *params_json, char *output,
                           size_t size) {
  char body[2048], method_header[128], name_header[128];
  snprintf(body, sizeof body, "{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"%s\", \"params\": %s}", method, params_json);
  snprintf(method_header, sizeof method_header, "mcp-method: %s", method);
  snprintf(name_header, sizeof name_header, "mcp-name: %s", modern_name ? modern_name : "");
  char *argv[] = {"curl", "--silent", "--show-error", "--max-time", "60", "--cert", (char *)cert_path("certs", "operator.pem"),
                  "--key", (char *)cert_path("certs", "operator.key"), "--cacert", (char *)cert_path("certs", "ca.pem"),
                  "--header", "content-type: application/json", "--header", "accept: application/json, text/event-stream",
                  "--data-binary", body, (char *)toolmesh_agent_endpoint(agent),
                  /* the modern era's headers; a legacy request's arguments end before them */
                  modern_name ? "--header" : NULL, "mcp-protocol-version: 2026-07-28", "--header", method_header, "--header", name_header,
                  NULL};
  output[0] = '\0';
  int status = run_command(argv, output, size, WAIT_MS);
  if (status != 0) fprintf(stderr, "  curl %s exited with %d: %s\n", method, status, output);
  return status == 0;
}

static bool mcp_request(toolmesh_agent *agent, const char *method, const char *params_json, char *output, size_t size) {
  return mcp_request_in(agent, method, NULL, params_json, output, size);
}

/* Checks that `haystack` contains `needle`, printing both when it does not. */
#define CHECK_HAS(haystack, needle)                                                                   \
  do {                                                                                                \
    if (!CHECK(strstr((haystack), (needle)) != NULL, "contains " #needle)) fprintf(stderr, "  in: %s\n", (haystack)); \
  } while (0)

static void test_catalog_start_errors(void) {
  toolmesh_config *config = agent_config("media", "certs");
  REQUIRE(config != NULL);
  toolmesh_agent *agent = NULL;
  toolmesh_error *error = NULL;
  toolmesh_handler no_catalog = {.userdata = calloc(1, sizeof(struct agent_state)), .invoke = media_invoke, .free_userdata = release_state};
  CHECK(toolmesh_agent_start_with_catalog(config, MEDIA_TOOLS, MEDIA_CATALOG, no_catalog, &agent, &error) == TOOLMESH_NULL_ARGUMENT,
        "a catalog read through the handler needs invoke_catalog");
  CHECK_STR(toolmesh_error_message(error),
            "the argument 'handler.invoke_catalog' is NULL, but the catalog's resource 'test://empty' is answered by it; set it, or "
            "give the resource static 'text' or 'blob'");
  toolmesh_error_free(error);
  error = NULL;
  toolmesh_handler misspelt = {
      .userdata = calloc(1, sizeof(struct agent_state)), .invoke = media_invoke, .free_userdata = release_state, .invoke_catalog = media_catalog};
  CHECK(toolmesh_agent_start_with_catalog(config, MEDIA_TOOLS, "{\"resources\": [{\"uri\": \"a://b\", \"name\": \"b\", \"mimetype\": \"x\"}]}",
                                          misspelt, &agent, &error) == TOOLMESH_INVALID_CONFIG,
        "a misspelt member is refused");
  CHECK(strstr(toolmesh_error_message(error), "mimetype") != NULL, "names the member");
  toolmesh_error_free(error);
  error = NULL;
  toolmesh_handler null_catalog = {.userdata = NULL, .invoke = media_invoke, .invoke_catalog = media_catalog};
  CHECK(toolmesh_agent_start_with_catalog(config, MEDIA_TOOLS, NULL, null_catalog, &agent, &error) == TOOLMESH_NULL_ARGUMENT);
  CHECK_STR(toolmesh_error_message(error), "the argument 'catalog_json' is NULL");
  toolmesh_error_free(error);
  CHECK(agent == NULL, "no output on failure");
  toolmesh_config_free(config);
}

static void test_catalog_agent_starts(void) {
  toolmesh_config *config = agent_config("media", "certs");
  REQUIRE(config != NULL);
  toolmesh_error *error = NULL;
  toolmesh_handler handler = {
      .userdata = calloc(1, sizeof(struct agent_state)), .invoke = media_invoke, .free_userdata = release_state, .invoke_catalog = media_catalog};
  toolmesh_result code = toolmesh_agent_start_with_catalog(config, MEDIA_TOOLS, MEDIA_CATALOG, handler, &media, &error);
  toolmesh_config_free(config);
  if (!CHECK(code == TOOLMESH_OK, "the agent with a catalog starts")) fprintf(stderr, "  %s\n", toolmesh_error_message(error));
  toolmesh_error_free(error);
}

/* A tool answering an image and a text, one answering only structuredContent, and an invalid
 * image: over MCP, the content items exactly; the error names the item. */
static void test_rich_tool_results(void) {
  REQUIRE(media != NULL);
  char output[8192];
  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"picture\", \"arguments\": {}}", output, sizeof output));
  CHECK_STR(output, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"text\":\"a red pixel\",\"type\":\"text\"},{\"data\":\"" PNG
                    "\",\"mimeType\":\"image/png\",\"type\":\"image\"}],\"isError\":false}}");

  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"counted\", \"arguments\": {}}", output, sizeof output));
  CHECK_HAS(output, "\"structuredContent\":{\"count\":3}");
  /* the spec's back-compat rule: the serialized structuredContent as a text item */
  CHECK_HAS(output, "\"content\":[{\"text\":\"{\\\"count\\\":3}\",\"type\":\"text\"}]");

  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"bad_picture\", \"arguments\": {}}", output, sizeof output));
  CHECK_HAS(output, "tool 'bad_picture' returned an invalid tool result: content[1]: image 'data' is not base64");
  CHECK_HAS(output, "\"name\":\"HANDLER_RESULT\"");
  pthread_mutex_lock(&media_lock);
  struct timespec deadline = wait_deadline();
  while (media_bad_picture_code == -1 && pthread_cond_timedwait(&media_told, &media_lock, &deadline) == 0) {
  }
  CHECK(media_bad_picture_code == TOOLMESH_HANDLER_RESULT, "the handler is told too");
  CHECK(strstr(media_bad_picture_message, "content[1]: image 'data' is not base64") != NULL, "naming the item");
  pthread_mutex_unlock(&media_lock);
}

/* A handler sees its caller's verified identity and the capabilities its client declared; a tool
 * declared (as JSON) to need one refuses a modern client without it, and its output schema is
 * listed. */
static void test_caller_and_client_capabilities(void) {
  REQUIRE(media != NULL);
  char output[4096];
  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"whoami\", \"arguments\": {}}", output, sizeof output));
  CHECK_HAS(output, "\"structuredContent\":{\"caller\":\"spiffe://toolmesh.local/operator/operator\",\"capabilities\":null}");

#define MODERN_META(capabilities)                                                                            \
  "\"_meta\": {\"io.modelcontextprotocol/protocolVersion\": \"2026-07-28\", \"io.modelcontextprotocol/clientCapabilities\": " \
  capabilities "}"
  REQUIRE(mcp_request_in(media, "tools/call", "whoami", "{\"name\": \"whoami\", \"arguments\": {}, " MODERN_META("{}") "}", output,
                         sizeof output));
  CHECK_HAS(output, "\"code\":-32021");
  CHECK_HAS(output, "\"requiredCapabilities\":{\"roots\":{}}");
  REQUIRE(mcp_request_in(media, "tools/call", "whoami",
                         "{\"name\": \"whoami\", \"arguments\": {}, " MODERN_META("{\"roots\": {\"listChanged\": true}}") "}", output,
                         sizeof output));
  CHECK_HAS(output, "\"capabilities\":{\"roots\":{\"listChanged\":true}}");
#undef MODERN_META

  REQUIRE(mcp_request(media, "tools/list", "{}", output, sizeof output));
  CHECK_HAS(output, "\"outputSchema\":{\"properties\":{\"caller\":{\"type\":\"string\"}},\"required\":[\"caller\"],\"type\":\"object\"}");
  CHECK(toolmesh_invocation_caller(NULL) == NULL && toolmesh_invocation_client_capabilities(NULL) == NULL, "NULL for a NULL invocation");
}

/* Progress and log messages from a C handler reach an MCP client as events before the result,
 * as far as the request asked; the calls that are wrong say why. */
static void test_progress_and_logs(void) {
  REQUIRE(media != NULL);
  char output[8192];
  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"reporter\", \"arguments\": {}, \"_meta\": {\"progressToken\": \"c-1\"}}", output,
                      sizeof output));
  const char *first = strstr(output, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"c-1\","
                                     "\"progress\":1.0,\"total\":2.0,\"message\":\"half\"}}");
  const char *second = strstr(output, "\"params\":{\"progressToken\":\"c-1\",\"progress\":2.0}}");
  const char *log = strstr(output, "\"method\":\"notifications/message\",\"params\":{\"level\":\"warning\",\"logger\":\"c-agent\","
                                   "\"data\":{\"disk\":91}}}");
  const char *result = strstr(output, "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"reported\"}]");
  if (!CHECK(first && second && log && result && first < second && second < log && log < result, "the events in order, the result last"))
    fprintf(stderr, "  in: %s\n", output);
  CHECK(strstr(output, "below the level") == NULL, "a debug message is not sent to a legacy request");

  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"reporter\", \"arguments\": {}}", output, sizeof output));
  CHECK(strstr(output, "notifications/progress") == NULL, "no progress without a token");
  CHECK_HAS(output, "notifications/message");

  pthread_mutex_lock(&media_lock);
  CHECK(media_bad_level_code == TOOLMESH_INVALID_ARGUMENTS, "a level MCP does not name");
  CHECK_STR(media_bad_level_message, "log level \"loud\" is not one of debug, info, notice, warning, error, critical, alert, emergency");
  CHECK(media_bad_data_code == TOOLMESH_INVALID_JSON, "data that is not JSON");
  CHECK(media_null_code == TOOLMESH_NULL_ARGUMENT, "a NULL invocation");
  pthread_mutex_unlock(&media_lock);
}

/* A handler that observes its dependency's call gets every report of the callee, in order, before
 * the result, and they are its own to re-emit: only its transformed progress reaches its caller. */
static void test_observed_dependency_call(void) {
  REQUIRE(media != NULL);
  char output[16384];
  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"observer\", \"arguments\": {}, \"_meta\": {\"progressToken\": \"o-1\"}}", output,
                      sizeof output));
  CHECK_HAS(output, "\"params\":{\"progressToken\":\"o-1\",\"progress\":10.0,\"total\":20.0,\"message\":\"observer saw half\"}}");
  CHECK(strstr(output, "\"params\":{\"progressToken\":\"o-1\",\"progress\":1.0") == NULL, "the callee's own progress is not relayed");
  const char *structured = strstr(output, "\"structuredContent\":");
  REQUIRE(structured != NULL);
  const char *half = strstr(structured, "\"message\":\"half\"");
  const char *second = strstr(structured, "\"progress\":2");
  const char *debug = strstr(structured, "below the level");
  const char *warning = strstr(structured, "\"disk\":91");
  if (!CHECK(half && second && debug && warning && half < second && second < debug && debug < warning,
             "every report, every level, in the order reported"))
    fprintf(stderr, "  in: %s\n", structured);
  CHECK_HAS(structured, "\"result\":\"reported\"");

  toolmesh_error *error = NULL;
  CHECK(toolmesh_agent_call_observed(media, NULL, NULL, "observer", 0, "{}", NULL, finish_observed, NULL, &error) == TOOLMESH_NULL_ARGUMENT,
        "a NULL on_update is refused, and nothing is called back");
  CHECK_HAS(toolmesh_error_message(error), "on_update");
  toolmesh_error_free(error);
}

/* A handler sees its request cancelled, here at its deadline: by toolmesh_invocation_on_cancel's
 * callback and by the toolmesh_invocation_cancelled flag, which was false before. */
static void test_cancellation(void) {
  REQUIRE(media != NULL);
  char output[4096];
  REQUIRE(mcp_request(media, "tools/call", "{\"name\": \"watcher\", \"arguments\": {}, \"_meta\": {\"dev.toolmesh/deadlineMs\": 200}}",
                      output, sizeof output));
  CHECK_HAS(output, "\"before\":false");
  CHECK_HAS(output, "\"callback\":true");
  CHECK_HAS(output, "\"flag\":true");
  CHECK(toolmesh_invocation_cancelled(NULL) == false, "NULL is not cancelled");
  CHECK(toolmesh_invocation_on_cancel(NULL, watcher_on_cancel, NULL, NULL) == TOOLMESH_NULL_ARGUMENT, "a NULL invocation");
}

/* resources/list, a static resource (core answers), a template read through invoke_catalog with
 * its variable, an invalid answer (empty contents) naming the problem. */
static void test_resources(void) {
  REQUIRE(media != NULL);
  char output[8192];
  REQUIRE(mcp_request(media, "resources/list", "{}", output, sizeof output));
  CHECK_HAS(output, "\"uri\":\"test://static-text\"");
  CHECK_HAS(output, "\"uri\":\"test://empty\"");
  CHECK(strstr(output, "static text") == NULL, "content is never listed");
  REQUIRE(mcp_request(media, "resources/templates/list", "{}", output, sizeof output));
  CHECK_HAS(output, "\"uriTemplate\":\"test://template/{id}/data\"");

  media_last_request[0] = '\0';
  REQUIRE(mcp_request(media, "resources/read", "{\"uri\": \"test://static-text\"}", output, sizeof output));
  CHECK_HAS(output, "\"contents\":[{\"mimeType\":\"text/plain\",\"text\":\"static text\",\"uri\":\"test://static-text\"}]");
  pthread_mutex_lock(&media_lock);
  CHECK_STR(media_last_request, ""); /* static content: the handler is not asked */
  pthread_mutex_unlock(&media_lock);

  REQUIRE(mcp_request(media, "resources/read", "{\"uri\": \"test://template/42/data\"}", output, sizeof output));
  CHECK_HAS(output, "\"contents\":[{\"mimeType\":\"application/json\",\"text\":\"{\\\"id\\\": \\\"42\\\"}\",\"uri\":\"test://template/42/data\"}]");
  pthread_mutex_lock(&media_lock);
  CHECK_STR(media_last_request, "{\"kind\":\"readResource\",\"uri\":\"test://template/42/data\",\"name\":\"template-data\","
                                "\"template\":\"test://template/{id}/data\",\"variables\":{\"id\":\"42\"}}");
  pthread_mutex_unlock(&media_lock);

  REQUIRE(mcp_request(media, "resources/read", "{\"uri\": \"test://empty\"}", output, sizeof output));
  CHECK_HAS(output, "\"code\":-32603");
  CHECK_HAS(output, "\"name\":\"HANDLER_RESULT\"");
  CHECK_HAS(output, "resource 'test://empty'");
  CHECK_HAS(output, "'contents' is empty");

  REQUIRE(mcp_request(media, "resources/read", "{\"uri\": \"test://broken\"}", output, sizeof output));
  CHECK_HAS(output, "\"name\":\"HANDLER_RESULT\"");
  CHECK_HAS(output, "contents[0]");
  CHECK_HAS(output, "not base64");
}

/* prompts/list, and prompts/get with its arguments through invoke_catalog. */
static void test_prompts(void) {
  REQUIRE(media != NULL);
  char output[8192];
  REQUIRE(mcp_request(media, "prompts/list", "{}", output, sizeof output));
  CHECK_HAS(output, "\"name\":\"test_prompt_with_arguments\"");
  CHECK_HAS(output, "\"arguments\":[{\"name\":\"arg1\",\"required\":true},{\"name\":\"arg2\",\"required\":true}]");

  REQUIRE(mcp_request(media, "prompts/get",
                      "{\"name\": \"test_prompt_with_arguments\", \"arguments\": {\"arg1\": \"first\", \"arg2\": \"second\"}}", output,
                      sizeof output));
  CHECK_HAS(output, "\"messages\":[{\"content\":{\"text\":\"Prompt with arguments: arg1='first', arg2='second'\",\"type\":\"text\"},"
                    "\"role\":\"user\"}]");
  pthread_mutex_lock(&media_lock);
  CHECK_STR(media_last_request,
            "{\"kind\":\"getPrompt\",\"name\":\"test_prompt_with_arguments\",\"arguments\":{\"arg1\":\"first\",\"arg2\":\"second\"}}");
  pthread_mutex_unlock(&media_lock);

  REQUIRE(mcp_request(media, "prompts/get", "{\"name\": \"test_prompt_with_arguments\", \"arguments\": {\"arg1\": \"first\"}}", output,
                      sizeof output));
  CHECK_HAS(output, "\"code\":-32602");
  CHECK_HAS(output, "arg2");
  toolmesh_agent_free(media);
  media = NULL;
}

/* A provider restarts without a tool while the registry is down: front's cached topology still
 * names the tool, and the new process answers as any MCP server would. Runs last: it stops the
 * registry. */
static void test_unknown_tool_after_a_provider_restart(void) {
  REQUIRE(front != NULL);
  toolmesh_result code;
  char message[512] = "";
  toolmesh_agent *spare = start_agent("spare", "certs", "[{\"name\": \"nope\", \"capability\": \"gone\"}]", &code, message,
                                      sizeof message);
  REQUIRE(spare != NULL, "the spare agent starts");
  CHECK(toolmesh_agent_wait_registered(spare, WAIT_MS, NULL) == TOOLMESH_OK);
  char port[16];
  snprintf(port, sizeof port, "%s", strrchr(toolmesh_agent_endpoint(spare), ':') + 1);
  *strchr(port, '/') = '\0';
  char text[1024];
  CHECK(call_when_resolved(front, "client", CLIENT_GONE, "{\"a\": 1, \"b\": 1}", text, sizeof text) == TOOLMESH_OK);

  registry_running = false;
  int status = child_stop(&registry, SIGTERM, WAIT_MS);
  CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the registry stops cleanly");
  toolmesh_agent_free(spare);

  toolmesh_config *config = agent_config("spare", "certs");
  toolmesh_config_set(config, "port", port, NULL);
  toolmesh_config_set(config, "registry_url", "", NULL);
  struct agent_state *state = calloc(1, sizeof *state);
  toolmesh_handler handler = {.userdata = state, .invoke = invoke, .free_userdata = release_state};
  toolmesh_agent *restarted = NULL;
  code = toolmesh_agent_start(config, "[{\"name\": \"other\", \"capability\": \"other\"}]", handler, &restarted, NULL);
  toolmesh_config_free(config);
  REQUIRE(code == TOOLMESH_OK, "the spare restarts on its port");
  toolmesh_error *error = NULL;
  CHECK(toolmesh_agent_wait_registered(restarted, 10, &error) == TOOLMESH_INVALID_CONFIG, "no registry: it never registers");
  CHECK(strstr(toolmesh_error_message(error), "registry_url") != NULL, "names the option to set");
  toolmesh_error_free(error);
  CHECK(call(front, "client", CLIENT_GONE, "{\"a\": 1, \"b\": 1}", text, sizeof text) == TOOLMESH_UNKNOWN_TOOL);
  CHECK_STR(text, "Unknown tool: nope");
  toolmesh_agent_free(restarted);
}

static void test_stop_and_free(void) {
  toolmesh_error *error = NULL;
  CHECK(toolmesh_agent_stop(front, &error) == TOOLMESH_OK);
  char text[256];
  CHECK(call(front, "client", CLIENT_SUM3, "{}", text, sizeof text) == TOOLMESH_SHUTDOWN, "no calls after stop");
  CHECK(toolmesh_agent_wait_registered(front, 10, NULL) == TOOLMESH_SHUTDOWN, "a stopped agent no longer registers");
  toolmesh_agent_free(front);
  toolmesh_agent_free(back);
  front = back = NULL;
}

/* Every handler given to toolmesh_agent_start was released exactly once. */
static void test_every_handler_released(void) {
  /* 3 failed starts, front, back, spare three times (impatient, then before and after its
   * restart), 2 failed starts with a catalog, media */
  int released = atomic_load(&handlers_released);
  if (!CHECK(released == 11, "eleven handlers released")) fprintf(stderr, "  released: %d\n", released);
}


/* ---- SIGPIPE ---- */

static char *self_path; /* this program, for the child modes below */

/* SIGPIPE's handler as sigaction reports it. */
static void (*sigpipe_disposition(void))(int) {
  struct sigaction current;
  sigaction(SIGPIPE, NULL, &current);
  return current.sa_handler;
}

/* The first start in a process whose SIGPIPE has its default action (main resets it so) makes
 * it ignored: a peer that goes away mid-write must not kill the host. */
static void test_sigpipe_is_ignored_after_start(void) {
  REQUIRE(front != NULL);
  CHECK(sigpipe_disposition() == SIG_IGN, "SIGPIPE is ignored once an agent started");
}

static void host_sigpipe_handler(int signal_number) { (void)signal_number; }
static void sigpipe_host_invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation);

/* In a child: starts agent "piper" (no registry, no tools); 0, or the child's exit status. */
static int start_piper(toolmesh_agent **agent) {
  toolmesh_config *config = NULL;
  if (toolmesh_config_new("piper", &config, NULL) != TOOLMESH_OK) return 2;
  toolmesh_config_set(config, "registry_url", "", NULL);
  toolmesh_handler handler = {.userdata = NULL, .invoke = sigpipe_host_invoke, .free_userdata = NULL};
  toolmesh_result code = toolmesh_agent_start(config, "[]", handler, agent, NULL);
  toolmesh_config_free(config);
  return code == TOOLMESH_OK ? 0 : 3;
}

/* The identity the "piper" children start with, passed to them through the environment. */
static void use_piper_certificates(void) {
  setenv("TOOLMESH_TLS_CERT", cert_path("certs", "piper.pem"), 1);
  setenv("TOOLMESH_TLS_KEY", cert_path("certs", "piper.key"), 1);
  setenv("TOOLMESH_TLS_CA", cert_path("certs", "ca.pem"), 1);
}

/* Child mode "--sigpipe-handler": the host installed its own handler before the first start;
 * the start must leave it in place. Exit status 0 when it did. */
static int sigpipe_handler_child(void) {
  struct sigaction own = {0};
  own.sa_handler = host_sigpipe_handler;
  sigemptyset(&own.sa_mask);
  sigaction(SIGPIPE, &own, NULL);
  toolmesh_agent *agent = NULL;
  int failed = start_piper(&agent);
  if (failed) return failed;
  bool kept = sigpipe_disposition() == host_sigpipe_handler;
  toolmesh_agent_free(agent);
  printf("sigpipe handler %s\n", kept ? "kept" : "replaced");
  return kept ? 0 : 1;
}

static void test_sigpipe_host_handler_survives_start(void) {
  char *argv[] = {self_path, "--sigpipe-handler", NULL};
  use_piper_certificates();
  char output[256] = "";
  int status = run_command(argv, output, sizeof output, WAIT_MS);
  CHECK(status == 0, "the host's SIGPIPE handler is still installed after the start");
  fprintf(stderr, "  child: %s", output);
}

/* Child mode "--sigpipe-host": a host whose SIGPIPE has its default action starts an agent,
 * then writes to a pipe nobody reads any more, as toolmesh's writev does when a peer has gone
 * mid-answer. Exit status 0 when it lives on (the write fails with EPIPE); killed by SIGPIPE
 * otherwise. */
static int sigpipe_host_child(void) {
  signal(SIGPIPE, SIG_DFL);
  toolmesh_agent *agent = NULL;
  int failed = start_piper(&agent);
  if (failed) return failed;
  int fds[2];
  if (pipe(fds) != 0) return 4;
  close(fds[0]);
  ssize_t written = write(fds[1], "x", 1);
  bool epipe = written == -1 && errno == EPIPE;
  close(fds[1]);
  toolmesh_agent_free(agent);
  printf("write to a gone peer: %s\n", epipe ? "EPIPE" : "unexpected");
  return epipe ? 0 : 1;
}

/* A write to a peer that went away raises SIGPIPE, whose default action kills the process:
 * after the first start it must only fail. (A real client resetting its connection mid-answer
 * was tried as well: hyper drops the connection on the reset without writing to it again, so
 * toolmesh's own sockets could not be made to raise SIGPIPE deterministically here.) */
static void test_sigpipe_write_to_a_gone_peer(void) {
  char *argv[] = {self_path, "--sigpipe-host", NULL};
  use_piper_certificates();
  struct child host;
  REQUIRE(child_start(&host, argv, NULL));
  char rest[64];
  CHECK(child_wait_line(&host, "write to a gone peer: ", rest, sizeof rest, WAIT_MS), "the host lives on after the write");
  CHECK_STR(rest, "EPIPE");
  int status = child_stop(&host, 0, WAIT_MS);
  if (!CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the host was not killed by SIGPIPE")) {
    fprintf(stderr, "  status %d: %s %d\n", status, WIFSIGNALED(status) ? "signal" : "exit",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  }
}

static void sigpipe_host_invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  (void)userdata, (void)tool, (void)arguments_json;
  toolmesh_invocation_fail(invocation, "no tools here", NULL);
}

/* ---- set-up ---- */

static bool certs_init(const char *set, const char *agents) {
  char dir[768];
  snprintf(dir, sizeof dir, "%s/%s", scratch, set);
  char *argv[] = {(char *)toolmesh_bin, "certs", "init", "--dir", dir, "--agents", (char *)agents, NULL};
  char output[4096];
  return run_command(argv, output, sizeof output, WAIT_MS) == 0;
}

static bool start_registry(void) {
  char *argv[] = {(char *)toolmesh_bin, "registry", "--port", "0", "--heartbeat-interval-ms", "1000",
                  "--tls-cert", (char *)cert_path("certs", "registry.pem"), "--tls-key", (char *)cert_path("certs", "registry.key"),
                  "--tls-ca", (char *)cert_path("certs", "ca.pem"), NULL};
  if (!child_start(&registry, argv, NULL)) return false;
  registry_running = child_wait_line(&registry, "toolmesh registry listening on ", registry_url, sizeof registry_url, WAIT_MS);
  if (!registry_running) child_stop(&registry, SIGKILL, WAIT_MS);
  return registry_running;
}

int main(int argc, char **argv) {
  self_path = argv[0];
  if (argc > 1 && strcmp(argv[1], "--sigpipe-handler") == 0) return sigpipe_handler_child();
  if (argc > 1 && strcmp(argv[1], "--sigpipe-host") == 0) return sigpipe_host_child();
  /* As a C program starts, whatever the shell that ran this did: toolmesh must change it. */
  signal(SIGPIPE, SIG_DFL);
  toolmesh_bin = getenv("TOOLMESH_BIN");
  if (toolmesh_bin == NULL || access(toolmesh_bin, X_OK) != 0) {
    fprintf(stderr, "set TOOLMESH_BIN to the toolmesh CLI (cargo build -p toolmesh-cli)\n");
    return 2;
  }
  const char *example = getenv("TOOLMESH_EXAMPLE");
  if (example == NULL || access(example, X_OK) != 0) {
    fprintf(stderr, "set TOOLMESH_EXAMPLE to the squares example binary (scripts/c-tests.sh builds it and sets it)\n");
    return 2;
  }
  if (!scratch_create(scratch, sizeof scratch) || !certs_init("certs", "front,back,spare,squares,piper,media") ||
      !certs_init("foreign", "front") || !start_registry()) {
    fprintf(stderr, "set-up failed\n");
    scratch_remove(scratch);
    return 2;
  }
  fprintf(stderr, "registry at %s, certificates in %s\n", registry_url, scratch);

  run_test("result_names", test_result_names);
  run_test("result_messages", test_result_messages);
  run_test("null_arguments", test_null_arguments);
  run_test("configuration_errors", test_configuration_errors);
  run_test("bad_certificates", test_bad_certificates);
  run_test("start_two_agents", test_start_two_agents);
  run_test("chained_call", test_chained_call);
  run_test("errors_are_the_cores", test_errors_are_the_cores);
  run_test("headers_and_trace_propagate", test_headers_and_trace_propagate);
  run_test("call_headers_reach_the_next_handler_only", test_call_headers_reach_the_next_handler_only);
  run_test("call_in_flight_while_the_agent_is_freed", test_call_in_flight_while_the_agent_is_freed);
  run_test("example_agent", test_example_agent);
  run_test("catalog_start_errors", test_catalog_start_errors);
  run_test("catalog_agent_starts", test_catalog_agent_starts);
  run_test("rich_tool_results", test_rich_tool_results);
  run_test("progress_and_logs", test_progress_and_logs);
  run_test("observed_dependency_call", test_observed_dependency_call);
  run_test("cancellation", test_cancellation);
  run_test("caller_and_client_capabilities", test_caller_and_client_capabilities);
  run_test("resources", test_resources);
  run_test("prompts", test_prompts);
  run_test("sigpipe_is_ignored_after_start", test_sigpipe_is_ignored_after_start);
  run_test("sigpipe_host_handler_survives_start", test_sigpipe_host_handler_survives_start);
  run_test("sigpipe_write_to_a_gone_peer", test_sigpipe_write_to_a_gone_peer);
  run_test("unknown_tool_after_a_provider_restart", test_unknown_tool_after_a_provider_restart);
  run_test("stop_and_free", test_stop_and_free);
  run_test("every_handler_released", test_every_handler_released);

  if (registry_running) child_stop(&registry, SIGTERM, WAIT_MS);
  scratch_remove(scratch);
  return finish_tests();
}
