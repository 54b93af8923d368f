/* cmd: commands run to completion, chiefly $BUILD/sundynixctl. Stdin from
 * /dev/null, stdout and stderr captured in two files of the temporary
 * directory so a test can check each exactly, every wait bounded (SIGKILL
 * at the timeout), a sanitizer report on stderr fails the test. Also shell
 * commands for setup work (h_sh). Killed at teardown if still running.
 * What a command should print is for the tests. */
#ifndef SUNDYNIX_TEST_CMD_H
#define SUNDYNIX_TEST_CMD_H

#include <stdarg.h>

#include "util.h"

struct h_nats;

struct h_cmd {
	struct h_proc *proc;
	char *out, *err; /* what it wrote; filled by h_cmd_wait and h_cmd_stop */
	int code;        /* exit status, 128 + signal, or -1 when killed at the timeout */
	char out_path[320], err_path[320];
	char cmdline[1024]; /* for failure messages (may be cut short) */
};
struct h_cmd *h_cmd_start(const char *name, char *const argv[]);
/* Waits up to timeout_ms for the exit (SIGKILL after that: code -1), reads
 * out and err, and fails the test on a sanitizer report in err. Returns code. */
int h_cmd_wait(struct h_cmd *c, int timeout_ms);
/* SIGTERM, then as h_cmd_wait. */
int h_cmd_stop(struct h_cmd *c, int timeout_ms);
/* h_cmd_start + h_cmd_wait. */
struct h_cmd *h_cmd_run(const char *name, int timeout_ms, char *const argv[]);
/* Fails the test, printing the command line, stdout and stderr, unless the
 * command exited with want. */
void h_cmd_expect(struct h_cmd *c, int want);
void h_cmd_free(struct h_cmd *c);

/* Starts `$BUILD/sundynixctl --nats URL --prefix PREFIX ARGS...` (the
 * arguments NULL-terminated). */
struct h_cmd *h_ctl_startv(struct h_nats *n, const char *prefix, va_list ap);
struct h_cmd *h_ctl_start(struct h_nats *n, const char *prefix, ...);
/* h_ctl_start and h_cmd_wait. */
struct h_cmd *h_ctl_run(struct h_nats *n, const char *prefix, int timeout_ms, ...);

/* Runs a shell command (sh -c) with output appended to
 * <tmpdir>/<log_name>.log; fails the test, showing the log, unless it exits 0. */
void h_sh(const char *log_name, const char *fmt, ...) UTIL_PRINTF(2, 3);

#endif
