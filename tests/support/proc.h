/* proc: child processes. Spawned by fork and exec with stdin from /dev/null
 * and output in a log of the temporary directory, killed with the test
 * program if it dies, stopped by pid (SIGTERM, then SIGKILL after a bounded
 * wait) and reaped. Also the check for sanitizer reports in a child's log.
 * What a child is (nats-server, mock, daemon, command) is for the modules
 * that start them. */
#ifndef SUNDYNIX_TEST_PROC_H
#define SUNDYNIX_TEST_PROC_H

#include <stdbool.h>
#include <sys/types.h>

struct h_proc {
	pid_t pid;
	char *name;
	char *log_path;
	int status; /* raw waitpid status once reaped */
	bool reaped;
};

/* argv[0] is the program; stdout and stderr go to <tmpdir>/<name>.log
 * (appended, so a restarted process keeps one log). Stopped at teardown. */
struct h_proc *h_spawn(const char *name, char *const argv[]);
/* SIGTERM, waits up to timeout_ms, then SIGKILL. Returns the exit status,
 * or 128 + signal when killed by a signal. Idempotent. */
int h_proc_stop(struct h_proc *p, int timeout_ms);
/* Waits up to timeout_ms for the child to exit by itself. Returns what
 * h_proc_stop does, or -1 when it is still running. */
int h_proc_wait(struct h_proc *p, int timeout_ms);
void h_proc_kill(struct h_proc *p); /* SIGKILL and reap */
bool h_proc_alive(struct h_proc *p);
void h_proc_free(struct h_proc *p); /* kills it first when still running */

/* Fails the test, printing the log, when it holds an ASan, LSan, TSan or
 * UBSan report. */
void h_assert_no_sanitizer_report(const char *log_path);

/* ---- for the other support modules ---- */

/* Like h_spawn without the cleanup entry (the owner stops it). envp NULL
 * keeps the environment; pidvar, when given, is an entry of envp (such as
 * "WATCHDOG_PID=") that the child completes with its own pid. */
struct h_proc *h__proc_spawn(const char *name, char *const argv[], char *const envp[], char *pidvar);
/* The same with stdout and stderr on two descriptors of the caller's;
 * log_path names the one that holds stderr. */
struct h_proc *h__proc_spawn_fds(const char *name, const char *log_path, char *const argv[], int out_fd, int err_fd);
/* Stops *p as h_proc_stop does, frees it and clears *p; nothing when NULL. */
void h__proc_end(struct h_proc **p, int timeout_ms);

#endif
