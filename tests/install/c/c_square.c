/*
 * The C hop of the install test (scripts/install-test.sh): agent install-c serving c_square(n) = n*n.
 * Compiled against dist/c only: cc c_square.c $(pkg-config --cflags --libs toolmesh).
 * Configured by the TOOLMESH_* environment; prints the agent ready line on stdout, runs until
 * SIGINT or SIGTERM, then deregisters and exits.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <toolmesh.h>

static const char TOOLS[] =
    "[{\"name\": \"c_square\", \"capability\": \"c_square\","
    "  \"input_schema\": {\"type\": \"object\", \"required\": [\"n\"],"
    "    \"properties\": {\"n\": {\"type\": \"integer\"}}}}]";

static void invoke(void *userdata, const char *tool, const char *arguments_json, toolmesh_invocation *invocation) {
  (void)userdata;
  (void)tool;
  /* The input schema makes n a required integer (core checked it): its digits follow "n": */
  const char *field = strstr(arguments_json, "\"n\"");
  const char *colon = field ? strchr(field, ':') : NULL;
  if (colon == NULL) {
    toolmesh_invocation_fail(invocation, "no n in the arguments", NULL);
    return;
  }
  long long n = strtoll(colon + 1, NULL, 10);
  char result[32];
  snprintf(result, sizeof result, "%lld", n * n);
  toolmesh_invocation_complete(invocation, result, NULL);
}

static int fail(const char *what, toolmesh_result code, toolmesh_error *error) {
  fprintf(stderr, "install-c: %s: error [%d %s]: %s\n", what, code, toolmesh_result_name(code), toolmesh_error_message(error));
  toolmesh_error_free(error);
  return 1;
}

int main(void) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  toolmesh_error *error = NULL;
  toolmesh_config *config = NULL;
  toolmesh_result code = toolmesh_config_new("install-c", &config, &error);
  if (code != TOOLMESH_OK) return fail("configuration", code, error);
  toolmesh_handler handler = {.userdata = NULL, .invoke = invoke, .free_userdata = NULL};
  toolmesh_agent *agent = NULL;
  code = toolmesh_agent_start(config, TOOLS, handler, &agent, &error);
  toolmesh_config_free(config);
  if (code != TOOLMESH_OK) return fail("start", code, error);
  printf("toolmesh agent install-c serving %s (id %s)\n", toolmesh_agent_endpoint(agent), toolmesh_agent_id(agent));
  fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  code = toolmesh_agent_stop(agent, &error);
  if (code != TOOLMESH_OK) fail("stop", code, error);
  toolmesh_agent_free(agent);
  return code == TOOLMESH_OK ? 0 : 1;
}
