/* daemon: the real $BUILD/sundynix-dispatcher as a child. Writes its config
 * (config/dispatcher.json, then test defaults: the given nats-server, the
 * prefix, short stub timings and timeouts, then the test's overrides merged
 * in), starts it with a controlled environment, waits for "dispatcher ready",
 * signals it, reads and checks its log, and stops it by pid: a sanitizer
 * report in its log fails the test. Stopped at teardown. Talking to it over
 * NATS is gateway.h's and control.h's business. */
#ifndef SUNDYNIX_TEST_DAEMON_H
#define SUNDYNIX_TEST_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

struct h_client;
struct h_nats;

struct h_daemon {
	struct h_proc *proc;
	const char *log_path; /* proc's */
	char name[128];
	char prefix[64];
	char cfg_path[320];
};

/* How h_daemon_spawn runs the daemon. */
struct h_daemon_opts {
	const char *const *env; /* extra "NAME=value" entries, NULL-terminated; may be NULL */
	bool watchdog_pid_self; /* add WATCHDOG_PID=<the daemon's own pid> */
	bool quiet;             /* no -v: the config's log.level rules */
};

/* Writes the config (n may be NULL when the overrides set nats.servers;
 * overrides_json is an object as JSON text, or NULL) and starts
 * `$BUILD/sundynix-dispatcher -c FILE -v` without waiting. The daemon never
 * inherits NOTIFY_SOCKET, WATCHDOG_*, CREDENTIALS_DIRECTORY or JOURNAL_STREAM
 * from the test; o->env sets them. o may be NULL. */
struct h_daemon *h_daemon_spawn(struct h_nats *n, const char *prefix, const char *overrides_json,
				const struct h_daemon_opts *o);
/* Waits for "dispatcher ready" in the log; dumps the log on failure. */
bool h_daemon_wait_ready(struct h_daemon *d, int timeout_ms);
/* h_daemon_spawn and h_daemon_wait_ready; fails the test unless ready. */
struct h_daemon *h_daemon_start(struct h_nats *n, const char *prefix, const char *overrides_json);
struct h_daemon *h_daemon_start_opts(struct h_nats *n, const char *prefix, const char *overrides_json,
				     const struct h_daemon_opts *o);
/* h_daemon_start on a fresh prefix, and a client connected on that prefix in
 * *c. */
struct h_daemon *h_daemon_start_client(struct h_nats *n, const char *overrides_json, struct h_client **c);

/* A fleet: n dispatchers on one prefix (overrides_json sets nats.servers,
 * e.g. a cluster's URLs), at log level info (no -v: many streams would
 * drown the log), spawned together, then each waited for; fails the test
 * unless all are ready. */
void h_daemon_start_fleet(struct h_daemon **d, int n, const char *prefix, const char *overrides_json);

/* SIGTERM; returns the exit status (or 128 + signal). Fails the test if the
 * log holds a sanitizer report. */
int h_daemon_stop(struct h_daemon *d);
/* h_daemon_stop and assert exit status 0. */
void h_daemon_stop_ok(struct h_daemon *d);
void h_daemon_signal(struct h_daemon *d, int sig);
/* Waits for the daemon to exit by itself. Returns its exit status (or 128 +
 * signal), -1 when it is still running after timeout_ms. Fails the test on a
 * sanitizer report. */
int h_daemon_wait_exit(struct h_daemon *d, int timeout_ms);
/* Rewrites the config file: what it holds now with the overrides merged in.
 * Written aside and renamed, so the daemon never reads half a file. */
void h_daemon_rewrite_config(struct h_daemon *d, const char *overrides_json);

/* The log. The expect functions dump it and fail the test when the text
 * does not show up (count times) within timeout_ms. */
bool h_daemon_wait_log(struct h_daemon *d, const char *needle, int timeout_ms);
void h_daemon_expect_log(struct h_daemon *d, const char *needle, int timeout_ms);
void h_daemon_expect_log_count(struct h_daemon *d, const char *needle, size_t count, int timeout_ms);
bool h_daemon_log_contains(struct h_daemon *d, const char *needle);
size_t h_daemon_log_count(struct h_daemon *d, const char *needle);
/* Fails the test if the log holds secret. */
void h_daemon_assert_log_lacks(struct h_daemon *d, const char *secret);
/* Prints the tail of the log to stderr (for failure diagnosis). */
void h_daemon_dump_log(struct h_daemon *d);
/* The port of the metrics listener the daemon logged ("metrics listener:
 * http://127.0.0.1:PORT/"); fails the test, with the log, unless it logs one
 * within 5 s. */
int h_daemon_metrics_port(struct h_daemon *d);

#endif
