#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int tests_passed, tests_failed;
static bool current_failed;

bool check_that(bool condition, const char *file, int line, const char *expression, const char *note) {
  if (!condition) {
    fprintf(stderr, "  FAILED %s:%d: %s%s%s\n", file, line, expression, *note ? " -- " : "", note);
    current_failed = true;
  }
  return condition;
}

bool check_str(const char *actual, const char *expected, const char *file, int line, const char *expression) {
  bool equal = actual != NULL && expected != NULL ? strcmp(actual, expected) == 0 : actual == expected;
  if (!equal) {
    fprintf(stderr, "  FAILED %s:%d: %s is \"%s\", expected \"%s\"\n", file, line, expression, actual ? actual : "(NULL)",
            expected ? expected : "(NULL)");
    current_failed = true;
  }
  return equal;
}

void run_test(const char *name, void (*test)(void)) {
  current_failed = false;
  fprintf(stderr, "test %s ...\n", name);
  test();
  fprintf(stderr, "test %s: %s\n", name, current_failed ? "FAILED" : "ok");
  if (current_failed) {
    tests_failed++;
  } else {
    tests_passed++;
  }
}

int finish_tests(void) {
  printf("%d passed, %d failed\n", tests_passed, tests_failed);
  fflush(stdout);
  return tests_failed == 0 && tests_passed > 0 ? 0 : 1;
}

static long long now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

bool child_start(struct child *child, char *const argv[], char *const environment[]) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return false;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  /* The child starts with no signal blocked, whatever this process blocks. */
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  int failed = posix_spawnp(&child->pid, argv[0], &actions, &attributes, argv, environment ? environment : environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (failed) {
    fprintf(stderr, "  cannot start %s: %s\n", argv[0], strerror(failed));
    close(pipe_fds[0]);
    return false;
  }
  child->stdout_fd = pipe_fds[0];
  return true;
}

/* Reads one line of at most size-1 bytes (byte by byte: the rest of the output stays in the
 * pipe for later). False at the deadline or end of output. */
static bool read_line(int fd, char *line, size_t size, long long deadline) {
  size_t length = 0;
  while (length + 1 < size) {
    int left = (int)(deadline - now_ms());
    struct pollfd readable = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&readable, 1, left) <= 0) return false;
    char byte;
    ssize_t got = read(fd, &byte, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    if (byte == '\n') break;
    line[length++] = byte;
  }
  line[length] = '\0';
  return true;
}

bool child_wait_line(struct child *child, const char *prefix, char *rest, size_t rest_size, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  char line[1024];
  while (read_line(child->stdout_fd, line, sizeof line, deadline)) {
    if (strncmp(line, prefix, strlen(prefix)) == 0) {
      snprintf(rest, rest_size, "%s", line + strlen(prefix));
      return true;
    }
  }
  fprintf(stderr, "  no line starting with \"%s\" within %d ms\n", prefix, timeout_ms);
  return false;
}

int child_stop(struct child *child, int signal_number, int timeout_ms) {
  kill(child->pid, signal_number);
  long long deadline = now_ms() + timeout_ms;
  int status = 0;
  while (waitpid(child->pid, &status, WNOHANG) == 0) {
    if (now_ms() >= deadline) {
      fprintf(stderr, "  pid %d did not exit within %d ms; killing it\n", (int)child->pid, timeout_ms);
      kill(child->pid, SIGKILL);
      waitpid(child->pid, &status, 0);
      status = -1;
      break;
    }
    usleep(10 * 1000);
  }
  close(child->stdout_fd);
  return status;
}

int run_command(char *const argv[], char *output, size_t output_size, int timeout_ms) {
  struct child child;
  if (!child_start(&child, argv, NULL)) return -1;
  long long deadline = now_ms() + timeout_ms;
  size_t length = 0;
  bool timed_out = true;
  for (;;) {
    int left = (int)(deadline - now_ms());
    struct pollfd readable = {.fd = child.stdout_fd, .events = POLLIN};
    if (left <= 0 || poll(&readable, 1, left) <= 0) break;
    char buffer[512];
    ssize_t got = read(child.stdout_fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      timed_out = false;
      break;
    }
    size_t keep = (size_t)got < output_size - 1 - length ? (size_t)got : output_size - 1 - length;
    memcpy(output + length, buffer, keep);
    length += keep;
  }
  output[length] = '\0';
  int left = (int)(deadline - now_ms());
  int status = child_stop(&child, timed_out ? SIGKILL : 0, left > 1000 ? left : 1000);
  if (timed_out || status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

bool scratch_create(char *path, size_t size) {
  const char *tmp = getenv("TMPDIR");
  snprintf(path, size, "%s/toolmesh-c-tests-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  return mkdtemp(path) != NULL;
}

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk) {
  (void)info, (void)type, (void)walk;
  return remove(path);
}

void scratch_remove(const char *path) {
  nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
