/* harness: what every integration test needs to run the real daemon against a
 * real nats-server and the mock backend. Child processes (spawned by fork and
 * exec, logs in a per-run temporary directory, stopped by pid), HTTP calls to
 * the mock's control endpoints, and a blocking nats.c client that collects
 * stream events. Every wait is bounded. Failures go through cmocka, which
 * prints both values. Objects made inside a test are torn down by
 * h_test_teardown even when an assertion fails half way. */
#ifndef SUNDYNIX_TEST_HARNESS_H
#define SUNDYNIX_TEST_HARNESS_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* Per-program init: temporary directory, signal and atexit cleanup. Call
 * first in main(). */
void h_init(void);
const char *h_tmpdir(void);
/* $BUILD or "build". */
const char *h_build(void);
/* A unique subject prefix "t<pid>x<n>". Returns a static-lifetime string. */
const char *h_prefix(void);
/* Prints a line to stderr prefixed with the elapsed time, for test narration. */
void h_log(const char *fmt, ...) UTIL_PRINTF(1, 2);
void h_sleep_ms(int ms);

/* cmocka fixtures: objects created between setup and teardown are destroyed by
 * the teardown (in reverse order), whatever the test did. */
int h_test_setup(void **state);
int h_test_teardown(void **state);

/* ---- processes ---- */
struct h_proc {
	pid_t pid;
	char *name;
	char *log_path;
	int status; /* raw waitpid status once reaped */
	bool reaped;
};

/* argv[0] is the program; stdout and stderr go to <tmpdir>/<name>.log
 * (appended, so a restarted process keeps one log). */
struct h_proc *h_spawn(const char *name, char *const argv[]);
/* SIGTERM, waits up to timeout_ms, then SIGKILL. Returns the exit status,
 * or 128 + signal when killed by a signal. Idempotent. */
int h_proc_stop(struct h_proc *p, int timeout_ms);
void h_proc_kill(struct h_proc *p); /* SIGKILL and reap */
bool h_proc_alive(struct h_proc *p);
void h_proc_free(struct h_proc *p);

/* File helpers; the returned string is malloc'ed (NULL if unreadable). */
char *h_read_file(const char *path, size_t *len);
void h_write_file(const char *path, const char *data, size_t len);
bool h_file_contains(const char *path, const char *needle);
size_t h_file_count(const char *path, const char *needle);
/* Waits until the file contains needle at least n times. */
bool h_wait_file_count(const char *path, const char *needle, size_t n, int timeout_ms);
bool h_wait_file(const char *path, const char *needle, int timeout_ms);
bool h_wait_port(int port, int timeout_ms);
/* A free loopback port (bind :0, getsockname, close; a small race accepted). */
int h_free_port(void);

/* ---- nats-server ---- */
struct h_nats {
	struct h_proc *proc;
	int port;
	char url[64];
	char *conf_path; /* NULL without a config file */
};
/* conf: optional nats-server config text (may be NULL). */
struct h_nats *h_nats_start(const char *conf);
void h_nats_stop(struct h_nats *n);
/* Stops and starts again on the same port. */
void h_nats_restart(struct h_nats *n);

/* ---- mock backend ---- */
struct h_mock {
	struct h_proc *proc;
	int port;
	char base_url[96]; /* http://127.0.0.1:PORT/v1 */
	char *name;
	char *port_file;
};
/* extra_args: NULL-terminated, may be NULL. */
struct h_mock *h_mock_start(const char *name, const char *const *extra_args);
void h_mock_stop(struct h_mock *m); /* asserts a clean exit (status 0, no sanitizer report) */
void h_mock_kill(struct h_mock *m); /* SIGKILL, no checks */
/* The control endpoints. Return the parsed answer (caller owns), failing the
 * test on a transport error or a non-2xx status. */
json_t *h_mock_get(struct h_mock *m, const char *path);
json_t *h_mock_post(struct h_mock *m, const char *path, const char *body);
/* POST /_mock/script or /_mock/next with a JSON text built by printf. */
void h_mock_script(struct h_mock *m, const char *fmt, ...) UTIL_PRINTF(2, 3);
void h_mock_next(struct h_mock *m, const char *fmt, ...) UTIL_PRINTF(2, 3);
void h_mock_reset(struct h_mock *m);
json_t *h_mock_requests(struct h_mock *m);
long long h_mock_stat(struct h_mock *m, const char *key);
/* Waits until stats[key] >= want. Returns the last value. */
long long h_mock_wait_stat(struct h_mock *m, const char *key, long long want, int timeout_ms);

/* ---- daemon ---- */
struct h_daemon {
	struct h_proc *proc;
	char *cfg_path;
	char *prefix;
	char *log_path;
	char *name;
};
/* Writes a config (config/dispatcher.json, then the test defaults: this
 * nats, prefix, small stub timings and timeouts, then overrides merged in
 * recursively; overrides is borrowed and may be NULL), starts
 * `$BUILD/sundynix-dispatcher -c FILE -v` and waits for "dispatcher ready". */
struct h_daemon *h_daemon_start(struct h_nats *n, const char *prefix, json_t *overrides);
/* Same, overrides as JSON text (NULL for none). */
struct h_daemon *h_daemon_startf(struct h_nats *n, const char *prefix, const char *overrides_json);
/* SIGTERM; returns the exit status (or 128 + signal). Fails the test if the
 * log holds a sanitizer report. */
int h_daemon_stop(struct h_daemon *d);
/* h_daemon_stop and assert exit status 0. */
void h_daemon_stop_ok(struct h_daemon *d);
bool h_daemon_wait_log(struct h_daemon *d, const char *needle, int timeout_ms);
bool h_daemon_log_contains(struct h_daemon *d, const char *needle);
size_t h_daemon_log_count(struct h_daemon *d, const char *needle);
/* Prints the daemon's log to stderr (for failure diagnosis). */
void h_daemon_dump_log(struct h_daemon *d);
/* Checks a log for sanitizer reports; fails the test when one is present. */
void h_assert_no_sanitizer_report(const char *log_path);

/* ---- NATS client ---- */
struct h_client {
	natsConnection *nc;
	char *prefix;
};
struct h_client *h_client_connect(struct h_nats *n, const char *prefix);
void h_client_close(struct h_client *c);
/* Submits body (a JSON text) and returns the ack (caller owns); fails the
 * test on timeout. */
json_t *h_submit_raw(struct h_client *c, const char *body, size_t len, int timeout_ms);
json_t *h_submit(struct h_client *c, json_t *req, int timeout_ms); /* req borrowed */
/* Submits a simple request {"request_id":rid,"messages":[{"role":"user","content":text}]}
 * and asserts it is accepted. */
void h_submit_simple(struct h_client *c, const char *rid, const char *text);
void h_publish(struct h_client *c, const char *subject_suffix, const char *body);
void h_publish_config(struct h_client *c, const char *body);
/* Publishes an update pointing at the mock (model, revision; revision < 0
 * omits it) and waits for the daemon to log it applied. */
void h_use_mock(struct h_client *c, struct h_daemon *d, struct h_mock *m, const char *model,
		const char *api_key, long long revision);
void h_cancel(struct h_client *c, const char *rid);
void h_flush(struct h_client *c);

/* Answers <prefix>.config.model.get with body after delay_ms, and counts the
 * requests it saw. */
struct h_responder;
struct h_responder *h_responder_start(struct h_client *c, const char *body, int delay_ms);
int h_responder_count(struct h_responder *r);
void h_responder_free(struct h_responder *r);

/* Collects every event of <prefix>.chat.stream.<rid>, thread-safely. */
struct h_stream;
struct h_stream *h_stream_open(struct h_client *c, const char *rid);
/* Waits for a done or error event; true when one came. */
bool h_stream_wait_terminal(struct h_stream *s, int timeout_ms);
/* Waits until at least n events arrived. */
bool h_stream_wait_count(struct h_stream *s, size_t n, int timeout_ms);
size_t h_stream_count(struct h_stream *s);
/* A copy of the events so far (caller owns). */
json_t *h_stream_events(struct h_stream *s);
/* Waits for the terminal event, then a little more for strays, then asserts:
 * request_id right on every event, seq 0..n-1 in order without gaps or
 * duplicates, exactly one terminal event and it is the last. Returns the
 * terminal event (owned by the stream). */
json_t *h_stream_finish(struct h_stream *s, int timeout_ms);
/* The concatenated deltas of type ("token" or "reasoning"); caller frees. */
char *h_stream_text(struct h_stream *s, const char *type);
/* After h_stream_finish: asserts the terminal is an error with code. */
void h_stream_expect_error(struct h_stream *s, const char *code, int timeout_ms);
void h_stream_close(struct h_stream *s);

/* ---- assertions and helpers ---- */
#define H_ASSERT_CONTAINS(hay, needle) h_assert_contains((hay), (needle), __FILE__, __LINE__)
#define H_ASSERT_NOT_CONTAINS(hay, needle) h_assert_not_contains((hay), (needle), __FILE__, __LINE__)
void h_assert_contains(const char *hay, const char *needle, const char *file, int line);
void h_assert_not_contains(const char *hay, const char *needle, const char *file, int line);
/* json_string_value of obj[key] ("" -> fails when absent) */
const char *h_jstr(json_t *obj, const char *key);
long long h_jint(json_t *obj, const char *key);
/* Dotted path lookup: "error.code", "body.messages". */
json_t *h_jpath(json_t *obj, const char *path);
json_t *h_json_parse(const char *text); /* fails the test on bad JSON */
/* The directory of the SSE corpus (../shared/sse-corpus or $SSE_CORPUS), or NULL. */
const char *h_corpus_dir(void);

/* A loopback listener that never completes a TCP handshake (backlog full),
 * for connect timeouts. Returns the port; the fds are closed at teardown. */
int h_blackhole_port(void);

/* ==== service and NATS auth (test_service.c, test_natsauth.c) ==== */

/* How h_daemon_spawn runs the daemon. */
struct h_daemon_opts {
	const char *const *env; /* extra "NAME=value" entries, NULL-terminated; may be NULL */
	bool watchdog_pid_self; /* add WATCHDOG_PID=<the daemon's own pid> */
	bool quiet;		/* no -v: the config's log.level rules */
};
/* Like h_daemon_start (same generated config; n may be NULL when overrides
 * set nats.servers) but does not wait for "dispatcher ready". The daemon
 * never inherits NOTIFY_SOCKET, WATCHDOG_*, CREDENTIALS_DIRECTORY or
 * JOURNAL_STREAM from the test; o->env sets them. o may be NULL. */
struct h_daemon *h_daemon_spawn(struct h_nats *n, const char *prefix, json_t *overrides,
				const struct h_daemon_opts *o);
/* Waits for "dispatcher ready" in the log; dumps the log on failure. */
bool h_daemon_wait_ready(struct h_daemon *d, int timeout_ms);
void h_daemon_signal(struct h_daemon *d, int sig);
/* Waits for the daemon to exit by itself. Returns its exit status (or 128 +
 * signal), -1 when it is still running after timeout_ms. Fails the test on a
 * sanitizer report. */
int h_daemon_wait_exit(struct h_daemon *d, int timeout_ms);
/* Rewrites the daemon's config file: what it holds now with overrides merged
 * in (borrowed). */
void h_daemon_rewrite_config(struct h_daemon *d, json_t *overrides);

/* Stops nats-server but keeps its port, so it can come back with
 * h_nats_resume. */
void h_nats_halt(struct h_nats *n);
void h_nats_resume(struct h_nats *n);

/* A client that authenticates; any field may be NULL. A ca_file turns TLS on. */
struct h_client_auth {
	const char *user, *password, *token;
	const char *ca_file, *cert_file, *key_file;
};
struct h_client *h_client_connect_auth(struct h_nats *n, const char *prefix, const struct h_client_auth *a);
/* A request on <prefix>.<subject_suffix> that may fail: returns the status,
 * and on NATS_OK the reply text in *reply (caller frees). */
natsStatus h_request(struct h_client *c, const char *subject_suffix, const char *body, int timeout_ms,
		     char **reply);

/* An AF_UNIX datagram socket in the temporary directory standing in for
 * systemd's notify socket. Every datagram received is kept (see
 * h_notify_seen), with its arrival time. */
struct h_notify;
struct h_notify *h_notify_open(const char *name);
const char *h_notify_path(struct h_notify *nf);
/* Reads datagrams until one has a line starting with line_prefix; returns a
 * copy of that datagram (caller frees) or NULL after timeout_ms. The
 * datagrams read before it are consumed. */
char *h_notify_wait(struct h_notify *nf, const char *line_prefix, int timeout_ms);
/* Reads for window_ms and counts the datagrams having a line starting with
 * line_prefix. */
size_t h_notify_count_for(struct h_notify *nf, const char *line_prefix, int window_ms);
/* Everything received so far, one "[ms] text" line per datagram (newlines in
 * a datagram shown as '|'). Owned by nf. */
const char *h_notify_seen(struct h_notify *nf);
void h_notify_close(struct h_notify *nf);

/* Runs a shell command (sh -c) with output to <tmpdir>/<log_name>.log; fails
 * the test unless it exits 0. */
void h_sh(const char *log_name, const char *fmt, ...) UTIL_PRINTF(2, 3);

/* Cleans up as at exit (processes, temporary directory) and _exits with rc,
 * skipping nats_Close and the atexit handlers: libnats 3.4 frees OpenSSL's
 * compression methods in nats_Close without clearing them, so OpenSSL's own
 * atexit cleanup then crashes in any process that used TLS
 * (nats-io/nats.c#904). */
void h_exit(int rc) __attribute__((noreturn));

/* ==== end of service and NATS auth ==== */

#endif

/* ==== appended for test_pool / test_providers (issue 4) ==== */

/* A loopback HTTP server on its own thread that answers every request with
 * `response` verbatim (status line, headers and body, so any header can be
 * sent, e.g. Retry-After or Connection: close) and then closes the
 * connection. It records each request's head (request line and headers), so
 * a test can check headers and query strings the mock does not record.
 * Stopped at teardown. */
struct h_rawsrv;
struct h_rawsrv *h_rawsrv_start(const char *response);
int h_rawsrv_port(struct h_rawsrv *s);
/* Requests whose head was read so far. */
int h_rawsrv_count(struct h_rawsrv *s);
/* A copy of request i's head (caller frees), or NULL. */
char *h_rawsrv_head(struct h_rawsrv *s, int i);
/* An HTTP/1.1 response with the given status, extra header lines (each
 * ending in \r\n, may be ""), content type and body, with Content-Length
 * and Connection: close. Caller frees. */
char *h_http_response(int status, const char *extra_headers, const char *ctype, const char *body);

/* ==== end of the issue 4 block ==== */

/* ==== command runs (test_ctl.c, test_limits.c) ==== */

/* A command run as a child with stdin from /dev/null and stdout and stderr
 * captured in two files of the temporary directory, so a test can check each
 * exactly. Destroyed at teardown (killed if still running). */
struct h_cmd {
	struct h_proc *proc;
	char *cmdline;	 /* for failure messages */
	char *out_path, *err_path;
	char *out, *err; /* what it wrote; filled by h_cmd_wait and h_cmd_stop */
	int code;	 /* exit status, 128 + signal, or -1 when killed at the timeout */
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

/* ==== end of command runs ==== */
