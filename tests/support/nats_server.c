/* nats_server: see nats_server.h. */
#include "nats_server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "file.h"
#include "fixture.h"
#include "proc.h"
#include "tcp.h"
#include "util.h"

static void h__nats_spawn(struct h_nats *n)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", n->port);
	char *argv[] = { "nats-server", "-a", "127.0.0.1", "-p", port, NULL, NULL, NULL };
	if (n->conf_path) {
		argv[5] = "-c";
		argv[6] = n->conf_path;
	}
	char name[64];
	snprintf(name, sizeof(name), "nats-%d", n->port);
	n->proc = h__proc_spawn(name, argv, NULL, NULL);
	if (!h_wait_port(n->port, 10000)) {
		char *log = h_read_file(n->proc->log_path, NULL);
		fail_msg("nats-server did not listen on %d: %s", n->port, log ? log : "");
	}
}

static void h__nats_cleanup(void *p)
{
	struct h_nats *n = p;
	h__forget(n);
	h_nats_halt(n);
	free(n->conf_path);
	free(n);
}

struct h_nats *h_nats_start(const char *conf)
{
	struct h_nats *n = xcalloc(1, sizeof(*n));
	h__push(h__nats_cleanup, n);
	n->port = h_free_port();
	snprintf(n->url, sizeof(n->url), "nats://127.0.0.1:%d", n->port);
	if (conf) {
		n->conf_path = xasprintf("%s/nats-%d.conf", h_tmpdir(), n->port);
		h_write_file(n->conf_path, conf, strlen(conf));
	}
	h__nats_spawn(n);
	return n;
}

void h_nats_stop(struct h_nats *n)
{
	h__nats_cleanup(n);
}

void h_nats_halt(struct h_nats *n)
{
	h__proc_end(&n->proc, 5000);
}

void h_nats_resume(struct h_nats *n)
{
	if (!n->proc)
		h__nats_spawn(n);
}

void h_nats_kill(struct h_nats *n)
{
	if (!n->proc)
		return;
	h_proc_kill(n->proc);
	h_proc_free(n->proc);
	n->proc = NULL;
}

void h_nats_restart(struct h_nats *n)
{
	h_nats_halt(n);
	h__nats_spawn(n);
}
