/* cmd: see cmd.h. */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "file.h"
#include "fixture.h"
#include "nats_server.h"
#include "proc.h"

static void h__cmd_cleanup(void *p)
{
	struct h_cmd *c = p;
	h__forget(c);
	h_proc_free(c->proc); /* SIGKILL and reap when still running */
	free(c->out);
	free(c->err);
	free(c);
}

struct h_cmd *h_cmd_start(const char *name, char *const argv[])
{
	static int seq;
	struct h_cmd *c = xcalloc(1, sizeof(*c));
	size_t len = 0;

	for (size_t i = 0; argv[i] && len < sizeof(c->cmdline); i++)
		len += (size_t)snprintf(c->cmdline + len, sizeof(c->cmdline) - len, "%s'%s'", i ? " " : "", argv[i]);
	c->code = -1;
	seq++;
	snprintf(c->out_path, sizeof(c->out_path), "%s/%s-%d.out", h_tmpdir(), name, seq);
	snprintf(c->err_path, sizeof(c->err_path), "%s/%s-%d.err", h_tmpdir(), name, seq);
	int out = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0 || err < 0)
		fail_msg("open %s: %s", c->out_path, strerror(errno));
	char *pname = xasprintf("%s-%d", name, seq);
	c->proc = h__proc_spawn_fds(pname, c->err_path, argv, out, err);
	free(pname);
	close(out);
	close(err);
	h__push(h__cmd_cleanup, c);
	return c;
}

static int h__cmd_collect(struct h_cmd *c)
{
	free(c->out);
	free(c->err);
	c->out = h_read_file(c->out_path, NULL);
	c->err = h_read_file(c->err_path, NULL);
	if (!c->out)
		c->out = xstrdup("");
	if (!c->err)
		c->err = xstrdup("");
	h_assert_no_sanitizer_report(c->err_path);
	return c->code;
}

int h_cmd_wait(struct h_cmd *c, int timeout_ms)
{
	c->code = h_proc_wait(c->proc, timeout_ms);
	if (c->code < 0) {
		h_log("%s (pid %d) still running after %d ms; SIGKILL", c->proc->name, (int)c->proc->pid,
		      timeout_ms);
		h_proc_kill(c->proc);
	}
	return h__cmd_collect(c);
}

int h_cmd_stop(struct h_cmd *c, int timeout_ms)
{
	if (!c->proc->reaped)
		kill(c->proc->pid, SIGTERM);
	return h_cmd_wait(c, timeout_ms);
}

struct h_cmd *h_cmd_run(const char *name, int timeout_ms, char *const argv[])
{
	struct h_cmd *c = h_cmd_start(name, argv);
	h_cmd_wait(c, timeout_ms);
	return c;
}

void h_cmd_expect(struct h_cmd *c, int want)
{
	if (c->code != want)
		fail_msg("%s: exit status %d, expected %d\n---- stdout ----\n%s---- stderr ----\n%s---- end ----",
			 c->cmdline, c->code, want, c->out ? c->out : "", c->err ? c->err : "");
}

void h_cmd_free(struct h_cmd *c)
{
	h__cmd_cleanup(c);
}

struct h_cmd *h_ctl_startv(struct h_nats *n, const char *prefix, va_list ap)
{
	const char *argv[32];
	size_t na = 0;
	char *bin = xasprintf("%s/sundynixctl", h_build());

	if (access(bin, X_OK) != 0)
		fail_msg("%s is missing (make %s)", bin, bin);
	argv[na++] = bin;
	argv[na++] = "--nats";
	argv[na++] = n->url;
	argv[na++] = "--prefix";
	argv[na++] = prefix;
	for (const char *a; (a = va_arg(ap, const char *));) {
		assert_true(na < UTIL_ARRAY_LEN(argv) - 1);
		argv[na++] = a;
	}
	argv[na] = NULL;
	struct h_cmd *c = h_cmd_start("ctl", (char *const *)argv);
	free(bin);
	return c;
}

struct h_cmd *h_ctl_start(struct h_nats *n, const char *prefix, ...)
{
	va_list ap;
	va_start(ap, prefix);
	struct h_cmd *c = h_ctl_startv(n, prefix, ap);
	va_end(ap);
	return c;
}

struct h_cmd *h_ctl_run(struct h_nats *n, const char *prefix, int timeout_ms, ...)
{
	va_list ap;
	va_start(ap, timeout_ms);
	struct h_cmd *c = h_ctl_startv(n, prefix, ap);
	va_end(ap);
	h_cmd_wait(c, timeout_ms);
	return c;
}

void h_sh(const char *log_name, const char *fmt, ...)
{
	va_list ap;
	char cmd[4096];

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	char *log = xasprintf("%s/%s.log", h_tmpdir(), log_name);
	char *full = xasprintf("(%s) >>'%s' 2>&1", cmd, log);
	int rc = system(full);
	free(full);
	if (rc != 0) {
		char *out = h_read_file(log, NULL);
		fprintf(stderr, "---- %s ----\n%s---- end ----\n", log, out ? out : "");
		free(out);
		free(log);
		fail_msg("command failed (status %d): %s", rc, cmd);
	}
	free(log);
}
