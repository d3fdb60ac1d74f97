/*
 * squares: a toolmesh agent written in C.
 *
 * Tools: add(a, b), mul(a, b), and square_sum(a, b) = a*a + b*b, which calls mul and add
 * through the mesh: in process when this agent is their only provider, over mTLS when another
 * agent (in any language) provides them too.
 *
 *   toolmesh certs init --dir certs --agents squares
 *   toolmesh registry --tls-cert certs/registry.pem --tls-key certs/registry.key --tls-ca certs/ca.pem &
 *   make -C examples/c
 *   TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443 TOOLMESH_TLS_CERT=certs/squares.pem \
 *   TOOLMESH_TLS_KEY=certs/squares.key TOOLMESH_TLS_CA=certs/ca.pem examples/c/squares
 *   toolmesh call square_sum '{"a": 3, "b": 4}' ...      # prints 25
 *
 * Runs until SIGINT or SIGTERM, then deregisters and exits.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_fields.h"
#include "toolmesh.h"

static const char TOOLS[] =
    "[{\"name\": \"add\", \"capability\": \"add\", \"tags\": [\"math\", \"c\"],"
    "  \"input_schema\": {\"type\": \"object\", \"required\": [\"a\", \"b\"],"
    "    \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}}},"
    " {\"name\": \"mul\", \"capability\": \"mul\", \"tags\": [\"math\", \"c\"],"
    "  \"input_schema\": {\"type\": \"object\", \"required\": [\"a\", \"b\"],"
    "    \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}}},"
    " {\"name\": \"square_sum\", \"capability\": \"square_sum\", \"dependencies\": [\"mul\", \"add\"],"
    "  \"input_schema\": {\"type\": \"object\", \"required\": [\"a\", \"b\"],"
    "    \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}}}]";

/* square_sum's dependencies, in declaration order. */
enum { DEPENDENCY_MUL = 0, DEPENDENCY_ADD = 1 };

/* Set once toolmesh_agent_start returns; an invocation may arrive a moment before that. */
static _Atomic(toolmesh_agent *) running_agent;

/* A dependency call made synchronously: handlers run on toolmesh host threads, which may block. */
struct sync_call {
  pthread_mutex_t lock;
  pthread_cond_t done_changed;
  int done;
  toolmesh_result code;
  char *text; /* the result JSON or the error message */
};

static void sync_call_done(void *userdata, toolmesh_result code, const char *text, const toolmesh_error *error) {
  (void)error; /* the text is the error's message; a tool error's code and data are not used here */
  struct sync_call *call = userdata;
  pthread_mutex_lock(&call->lock);
  call->code = code;
  call->text = strdup(text);
  call->done = 1;
  pthread_cond_signal(&call->done_changed);
  pthread_mutex_unlock(&call->lock);
}

/* Calls a dependency of square_sum and waits for it. toolmesh completes every call exactly
 * once, within the call's timeout, so the wait ends. On success *result holds the integer. */
static toolmesh_result call_dependency(toolmesh_invocation *invocation, size_t dependency, long long a, long long b,
                                       long long *result, char **error_message) {
  struct sync_call call = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, TOOLMESH_OK, NULL};
  char arguments[96];
  snprintf(arguments, sizeof arguments, "{\"a\": %lld, \"b\": %lld}", a, b);
  toolmesh_error *error = NULL;
  toolmesh_result code = toolmesh_agent_call(atomic_load(&running_agent), invocation, "square_sum", dependency, arguments,
                                             sync_call_done, &call, &error);
  if (code != TOOLMESH_OK) {
    *error_message = strdup(toolmesh_error_message(error));
    toolmesh_error_free(error);
    return code;
  }
  pthread_mutex_lock(&call.lock);
  while (!call.done) pthread_cond_wait(&call.done_changed, &call.lock);
  pthread_mutex_unlock(&call.lock);
  if (call.code == TOOLMESH_OK) {
    *result = strtoll(call.text, NULL, 10);
    free(call.text);
  } else {
    *error_message = call.text;
  }
  return call.code;
}

static void answer(toolmesh_invocation *invocation, long long value) {
  char json[32];
  snprintf(json, sizeof json, "%lld", value);
  toolmesh_invocation_complete(invocation, json, NULL);
}

static void square_sum(toolmesh_invocation *invocation, long long a, long long b) {
  long long a2 = 0, b2 = 0, sum = 0;
  char *message = NULL;
  toolmesh_result code = call_dependency(invocation, DEPENDENCY_MUL, a, a, &a2, &message);
  if (code == TOOLMESH_OK) code = call_dependency(invocation, DEPENDENCY_MUL, b, b, &b2, &message);
  if (code == TOOLMESH_OK) code = call_dependency(invocation, DEPENDENCY_ADD, a2, b2, &sum, &message);
  if (code == TOOLMESH_OK) {
    answer(invocation, sum);
  } else {
    /* The caller sees the dependency's own error, as if it had made that call. */
    toolmesh_invocation_fail_with_code(invocation, code, message, NULL);
    free(message);
  }
}

static void invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  (void)userdata;
  long long a = 0, b = 0;
  /* The input schemas make a and b required integers; core checked them already. */
  json_int(arguments_json, "a", &a);
  json_int(arguments_json, "b", &b);
  if (strcmp(tool, "add") == 0) {
    answer(invocation, a + b);
  } else if (strcmp(tool, "mul") == 0) {
    answer(invocation, a * b);
  } else if (strcmp(tool, "square_sum") == 0 && atomic_load(&running_agent) != NULL) {
    square_sum(invocation, a, b);
  } else {
    toolmesh_invocation_fail(invocation, "not ready for this tool yet", NULL);
  }
}

static int fail(const char *what, toolmesh_result code, toolmesh_error *error) {
  fprintf(stderr, "squares: %s: error [%d %s]: %s\n", what, code, toolmesh_result_name(code), toolmesh_error_message(error));
  toolmesh_error_free(error);
  return 1;
}

int main(void) {
  /* Blocked before toolmesh starts its threads, which inherit the mask: only sigwait sees them. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  toolmesh_error *error = NULL;
  toolmesh_config *config = NULL;
  toolmesh_result code = toolmesh_config_new("squares", &config, &error);
  if (code != TOOLMESH_OK) return fail("configuration", code, error);

  toolmesh_handler handler = {.userdata = NULL, .invoke = invoke, .free_userdata = NULL};
  toolmesh_agent *agent = NULL;
  code = toolmesh_agent_start(config, TOOLS, handler, &agent, &error);
  toolmesh_config_free(config);
  if (code != TOOLMESH_OK) return fail("start", code, error);
  atomic_store(&running_agent, agent);
  printf("toolmesh agent squares serving %s (id %s)\n", toolmesh_agent_endpoint(agent), toolmesh_agent_id(agent));
  fflush(stdout);
  /* Registration runs in the background; this only reports how it went. Without a registry
   * (TOOLMESH_REGISTRY_URL unset) the agent serves but nobody finds it: the error says so. */
  code = toolmesh_agent_wait_registered(agent, 10000, &error);
  if (code == TOOLMESH_OK) {
    printf("squares: registered\n");
  } else {
    fprintf(stderr, "squares: not registered [%d %s]: %s\n", code, toolmesh_result_name(code), toolmesh_error_message(error));
    toolmesh_error_free(error);
    error = NULL;
  }
  fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  printf("squares: %s: stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  code = toolmesh_agent_stop(agent, &error);
  if (code != TOOLMESH_OK) fail("stop", code, error);
  atomic_store(&running_agent, NULL);
  toolmesh_agent_free(agent);
  return code == TOOLMESH_OK ? 0 : 1;
}
