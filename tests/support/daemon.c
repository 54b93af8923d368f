/* daemon: see daemon.h. */
#include "daemon.h"

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "check.h"
#include "file.h"
#include "fixture.h"
#include "gateway.h"
#include "nats_server.h"
#include "proc.h"
#include "util.h"

extern char **environ;

static void h__daemon_cleanup(void *p)
{
	struct h_daemon *d = p;
	h__forget(d);
	h__proc_end(&d->proc, 10000);
	free(d);
}

/* Writes d's config file: the example config, the test defaults, overrides. */
static void h__daemon_write_config(struct h_daemon *d, struct h_nats *n, const char *overrides_json)
{
	json_error_t err;
	json_t *cfg = json_load_file("config/dispatcher.json", 0, &err);
	if (!cfg)
		fail_msg("config/dispatcher.json: %s (tests run from the repository root)", err.text);
	/* The metrics listener on a free port: many daemons run at once. */
	json_t *defs = json_pack("{s:{s:i,s:i},s:s,s:s,s:{s:i},s:{s:i,s:i},s:{s:i},s:{s:s}}", "nats",
				 "reconnect_wait_ms", 1000, "connect_timeout_ms", 2000, "subject_prefix", d->prefix,
				 "instance_id", d->name, "timeouts", "config_request_ms", 300, "stub", "ttft_ms", 50,
				 "inter_token_ms", 5, "shutdown", "grace_ms", 3000, "metrics", "listen", "127.0.0.1:0");
	assert_non_null(defs);
	if (n)
		json_object_set_new(json_object_get(defs, "nats"), "servers", json_pack("[s]", n->url));
	h_json_merge(cfg, defs);
	json_decref(defs);
	if (overrides_json) {
		json_t *o = h_json_parse(overrides_json);
		h_json_merge(cfg, o);
		json_decref(o);
	}
	if (json_dump_file(cfg, d->cfg_path, JSON_INDENT(2)) != 0)
		fail_msg("cannot write %s", d->cfg_path);
	json_decref(cfg);
}

/* The test's environment less what systemd would hand a service, which the
 * daemon must only get when a test sets it. */
static bool h__env_inherited(const char *entry)
{
	static const char *const drop[] = { "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
					    "CREDENTIALS_DIRECTORY=", "JOURNAL_STREAM=" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(drop); i++)
		if (!strncmp(entry, drop[i], strlen(drop[i])))
			return false;
	return true;
}

struct h_daemon *h_daemon_spawn(struct h_nats *n, const char *prefix, const char *overrides_json,
				const struct h_daemon_opts *o)
{
	static int seq;
	static const struct h_daemon_opts none;
	struct h_daemon *d = xcalloc(1, sizeof(*d));
	/* Filled in by the child itself: only async-signal-safe code runs
	 * between fork and exec. */
	char pidvar[40] = "WATCHDOG_PID=";

	if (!o)
		o = &none;
	h__push(h__daemon_cleanup, d);
	snprintf(d->prefix, sizeof(d->prefix), "%s", prefix);
	snprintf(d->name, sizeof(d->name), "daemon-%s-s%d", prefix, ++seq);
	snprintf(d->cfg_path, sizeof(d->cfg_path), "%s/%s.json", h_tmpdir(), d->name);
	h__daemon_write_config(d, n, overrides_json);

	char *bin = xasprintf("%s/sundynix-dispatcher", h_build());
	if (access(bin, X_OK) != 0) {
		free(bin);
		fail_msg("%s/sundynix-dispatcher is missing (make all)", h_build());
	}
	size_t ne = 0, cap = 8;
	for (char **e = environ; *e; e++)
		cap++;
	for (size_t i = 0; o->env && o->env[i]; i++)
		cap++;
	char **envp = xcalloc(cap, sizeof(*envp));
	for (char **e = environ; *e; e++)
		if (h__env_inherited(*e))
			envp[ne++] = *e;
	for (size_t i = 0; o->env && o->env[i]; i++)
		envp[ne++] = (char *)o->env[i];
	if (o->watchdog_pid_self)
		envp[ne++] = pidvar;
	envp[ne] = NULL;
	char *argv[] = { bin, "-c", d->cfg_path, o->quiet ? NULL : "-v", NULL };
	d->proc = h__proc_spawn(d->name, argv, envp, o->watchdog_pid_self ? pidvar : NULL);
	free(envp);
	free(bin);
	d->log_path = d->proc->log_path;
	return d;
}

bool h_daemon_wait_ready(struct h_daemon *d, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	while (!h_file_contains(d->log_path, "dispatcher ready")) {
		if (util_now_ms() >= end || !h_proc_alive(d->proc)) {
			h_daemon_dump_log(d);
			return false;
		}
		h_sleep_ms(10);
	}
	return true;
}

struct h_daemon *h_daemon_start_opts(struct h_nats *n, const char *prefix, const char *overrides_json,
				     const struct h_daemon_opts *o)
{
	struct h_daemon *d = h_daemon_spawn(n, prefix, overrides_json, o);

	if (!h_daemon_wait_ready(d, 15000))
		fail_msg("daemon %s did not log \"dispatcher ready\" (%s)", d->name,
			 h_proc_alive(d->proc) ? "timeout" : "it exited");
	return d;
}

struct h_daemon *h_daemon_start(struct h_nats *n, const char *prefix, const char *overrides_json)
{
	return h_daemon_start_opts(n, prefix, overrides_json, NULL);
}

struct h_daemon *h_daemon_start_client(struct h_nats *n, const char *overrides_json, struct h_client **c)
{
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(n, prefix, overrides_json);
	*c = h_client_connect(n, prefix);
	return d;
}

void h_daemon_start_fleet(struct h_daemon **d, int n, const char *prefix, const char *overrides_json)
{
	static const struct h_daemon_opts quiet = { .quiet = true };
	for (int i = 0; i < n; i++)
		d[i] = h_daemon_spawn(NULL, prefix, overrides_json, &quiet);
	for (int i = 0; i < n; i++)
		if (!h_daemon_wait_ready(d[i], 15000))
			fail_msg("daemon %s did not log \"dispatcher ready\" (%s)", d[i]->name,
				 h_proc_alive(d[i]->proc) ? "timeout" : "it exited");
}

int h_daemon_stop(struct h_daemon *d)
{
	int code = h_proc_stop(d->proc, 10000);
	h_assert_no_sanitizer_report(d->log_path);
	if (code != 0)
		h_daemon_dump_log(d);
	return code;
}

void h_daemon_stop_ok(struct h_daemon *d)
{
	assert_int_equal(h_daemon_stop(d), 0);
}

void h_daemon_signal(struct h_daemon *d, int sig)
{
	if (d->proc->reaped)
		fail_msg("daemon %s already exited; cannot send signal %d", d->name, sig);
	kill(d->proc->pid, sig);
}

int h_daemon_wait_exit(struct h_daemon *d, int timeout_ms)
{
	int code = h_proc_wait(d->proc, timeout_ms);
	if (code >= 0)
		h_assert_no_sanitizer_report(d->log_path);
	return code;
}

void h_daemon_rewrite_config(struct h_daemon *d, const char *overrides_json)
{
	json_error_t err;
	json_t *cfg = json_load_file(d->cfg_path, 0, &err);
	if (!cfg)
		fail_msg("%s: %s", d->cfg_path, err.text);
	json_t *o = h_json_parse(overrides_json);
	h_json_merge(cfg, o);
	json_decref(o);
	char *tmp = xasprintf("%s.new", d->cfg_path);
	if (json_dump_file(cfg, tmp, JSON_INDENT(2)) != 0 || rename(tmp, d->cfg_path) != 0)
		fail_msg("cannot rewrite %s", d->cfg_path);
	free(tmp);
	json_decref(cfg);
}

bool h_daemon_wait_log(struct h_daemon *d, const char *needle, int timeout_ms)
{
	return h_wait_file(d->log_path, needle, timeout_ms);
}

void h_daemon_expect_log_count(struct h_daemon *d, const char *needle, size_t count, int timeout_ms)
{
	if (!h_wait_file_count(d->log_path, needle, count, timeout_ms)) {
		h_daemon_dump_log(d);
		fail_msg("daemon did not log \"%s\" (%zu times) within %d ms", needle, count, timeout_ms);
	}
}

void h_daemon_expect_log(struct h_daemon *d, const char *needle, int timeout_ms)
{
	h_daemon_expect_log_count(d, needle, 1, timeout_ms);
}

bool h_daemon_log_contains(struct h_daemon *d, const char *needle)
{
	return h_file_contains(d->log_path, needle);
}

size_t h_daemon_log_count(struct h_daemon *d, const char *needle)
{
	return h_file_count(d->log_path, needle);
}

void h_daemon_assert_log_lacks(struct h_daemon *d, const char *secret)
{
	if (h_file_contains(d->log_path, secret))
		fail_msg("%s contains the secret \"%s\"", d->log_path, secret);
}

void h_daemon_dump_log(struct h_daemon *d)
{
	size_t len = 0;
	char *log = h_read_file(d->log_path, &len);
	/* The tail is what matters; keep failure output readable. */
	const char *start = log ? log : "";
	if (len > 12000)
		start = log + len - 12000;
	fprintf(stderr, "---- %s (tail) ----\n%s---- end ----\n", d->log_path, start);
	free(log);
}

int h_daemon_metrics_port(struct h_daemon *d)
{
	const char *needle = "metrics listener: http://127.0.0.1:";
	if (!h_daemon_wait_log(d, needle, 5000)) {
		h_daemon_dump_log(d);
		fail_msg("the daemon did not log its metrics listener");
	}
	char *log = h_read_file(d->log_path, NULL);
	int port = atoi(strstr(log, needle) + strlen(needle));
	free(log);
	assert_true(port > 0);
	return port;
}
