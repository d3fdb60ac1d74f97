/*
 * A tiny test harness for the C ABI suite: checks that count, child processes with bounded
 * waits, and a scratch directory. The last line a run prints is "N passed, N failed".
 */
#ifndef TOOLMESH_TEST_HARNESS_H
#define TOOLMESH_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Fails the running test (and goes on) when `condition` is false. */
#define CHECK(condition, ...) check_that((condition), __FILE__, __LINE__, #condition, "" __VA_ARGS__)
/* Fails the running test and leaves it when `condition` is false. */
#define REQUIRE(condition, ...)                                                          \
  do {                                                                                   \
    if (!check_that((condition), __FILE__, __LINE__, #condition, "" __VA_ARGS__)) return; \
  } while (0)
/* Checks that two strings (either may be NULL) are equal. */
#define CHECK_STR(actual, expected) check_str((actual), (expected), __FILE__, __LINE__, #actual)

bool check_that(bool condition, const char *file, int line, const char *expression, const char *note);
bool check_str(const char *actual, const char *expected, const char *file, int line, const char *expression);
/* Runs one test and counts it as passed or failed. */
void run_test(const char *name, void (*test)(void));
/* Prints the summary line; the exit status for the run. */
int finish_tests(void);

/* A child process whose standard output is a pipe we read from. */
struct child {
  pid_t pid;
  int stdout_fd;
};

/* Starts argv[0] (found on PATH if it has no slash) with `environment` (NULL: ours), its
 * standard output on a pipe and its standard error passed through. */
bool child_start(struct child *child, char *const argv[], char *const environment[]);
/* Reads lines until one starts with `prefix`; copies the rest of that line into `rest`.
 * False after `timeout_ms` or at end of output. */
bool child_wait_line(struct child *child, const char *prefix, char *rest, size_t rest_size, int timeout_ms);
/* Sends `signal_number` and waits up to `timeout_ms` for the exit (then kills it); the exit
 * status as from waitpid, or -1 when it had to be killed. */
int child_stop(struct child *child, int signal_number, int timeout_ms);
/* Runs a command to completion within `timeout_ms`, its standard output into `output`; the
 * exit code, or -1 when it timed out or did not exit normally. */
int run_command(char *const argv[], char *output, size_t output_size, int timeout_ms);

/* A new directory under $TMPDIR (or /tmp); `scratch_remove` deletes it and its contents. */
bool scratch_create(char *path, size_t size);
void scratch_remove(const char *path);

#endif
