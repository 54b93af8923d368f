/* nats_server: see nats_server.h. */
#include "nats_server.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "http.h"
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

char *h_nats_permissions_conf(const char *disp_pw, const char *gw_pw, const char *ctl_pw)
{
	char *text = h_read_file("config/nats-permissions.conf", NULL);
	if (!text)
		fail_msg("cannot read config/nats-permissions.conf (tests run from the repository root)");
	static const char *const from[] = { "CHANGE-ME-dispatcher", "CHANGE-ME-gateway", "CHANGE-ME-control" };
	const char *to[] = { disp_pw, gw_pw, ctl_pw };
	for (size_t i = 0; i < 3; i++) {
		char *at = strstr(text, from[i]);
		if (!at)
			fail_msg("config/nats-permissions.conf has no \"%s\" placeholder", from[i]);
		struct buf b;
		buf_init(&b);
		buf_append(&b, text, (size_t)(at - text));
		buf_append_str(&b, to[i]);
		buf_append_str(&b, at + strlen(from[i]));
		free(text);
		text = b.data;
		if (strstr(text, from[i]))
			fail_msg("\"%s\" appears twice in config/nats-permissions.conf", from[i]);
	}
	return text;
}

/* ---- cluster ---- */

/* GET http://127.0.0.1:<mon_port><path> as JSON (caller owns), or NULL when
 * the node does not answer (it may be starting or dead). */
static json_t *h__nats_monitor(struct h_nats *n, const char *path)
{
	long status;
	char *out = h_http(n->mon_port, path, NULL, 2000, &status, NULL);
	json_t *j = status == 200 && *out ? json_loads(out, 0, NULL) : NULL;

	free(out);
	return j;
}

static void h__cluster_cleanup(void *p)
{
	struct h_nats_cluster *c = p;
	h__forget(c);
	for (int i = 0; i < c->n; i++)
		if (c->nodes[i])
			h_nats_stop(c->nodes[i]);
	free(c->nodes);
	free(c->name);
	free(c->urls);
	free(c);
}

struct h_nats_cluster *h_nats_cluster_start(int n)
{
	static int seq;
	struct h_nats_cluster *c = xcalloc(1, sizeof(*c));
	int *route_ports = xcalloc((size_t)n, sizeof(*route_ports));
	struct buf routes, urls;

	assert_true(n >= 1);
	c->n = n;
	c->nodes = xcalloc((size_t)n, sizeof(*c->nodes));
	c->name = xasprintf("c%dx%d", (int)getpid(), ++seq);
	h__push(h__cluster_cleanup, c);
	buf_init(&routes);
	buf_init(&urls);
	for (int i = 0; i < n; i++) {
		route_ports[i] = h_free_port();
		buf_printf(&routes, "%s\"nats-route://127.0.0.1:%d\"", i ? ", " : "", route_ports[i]);
	}
	/* Every node lists every route, itself included (nats-server skips a
	 * route to itself), so a node that comes back alone finds the rest. */
	for (int i = 0; i < n; i++) {
		int mon = h_free_port();
		char *conf = xasprintf("server_name: \"%s-n%d\"\nhttp: \"127.0.0.1:%d\"\n"
				       "cluster {\n  name: \"%s\"\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
				       c->name, i, mon, c->name, route_ports[i], routes.data);
		c->nodes[i] = h_nats_start(conf);
		h__forget(c->nodes[i]); /* the cluster owns its nodes */
		c->nodes[i]->mon_port = mon;
		free(conf);
		buf_printf(&urls, "%s%s", i ? "," : "", c->nodes[i]->url);
	}
	c->urls = urls.data;
	buf_free(&routes);
	free(route_ports);
	h_nats_cluster_wait_routes(c, 15000);
	return c;
}

void h_nats_cluster_stop(struct h_nats_cluster *c)
{
	h__cluster_cleanup(c);
}

/* True when every running node has a route to every other running node. */
static bool h__cluster_routed(struct h_nats_cluster *c)
{
	json_t **rz = xcalloc((size_t)c->n, sizeof(*rz));
	bool ok = true;

	for (int i = 0; i < c->n && ok; i++)
		if (c->nodes[i]->proc && !(rz[i] = h__nats_monitor(c->nodes[i], "/routez")))
			ok = false;
	for (int i = 0; i < c->n && ok; i++) {
		for (int j = 0; j < c->n && ok && rz[i]; j++) {
			if (j == i || !rz[j])
				continue;
			const char *id = json_string_value(json_object_get(rz[j], "server_id"));
			json_t *routes = json_object_get(rz[i], "routes"), *r;
			size_t k;
			bool found = false;
			json_array_foreach(routes, k, r)
			{
				const char *rid = json_string_value(json_object_get(r, "remote_id"));
				found = found || (id && rid && !strcmp(id, rid));
			}
			ok = found;
		}
	}
	for (int i = 0; i < c->n; i++)
		json_decref(rz[i]);
	free(rz);
	return ok;
}

void h_nats_cluster_wait_routes(struct h_nats_cluster *c, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	while (!h__cluster_routed(c)) {
		if (util_now_ms() >= end)
			fail_msg("cluster %s: the nodes did not route to each other within %d ms", c->name,
				 timeout_ms);
		h_sleep_ms(20);
	}
}

void h_nats_cluster_kill(struct h_nats_cluster *c, int i)
{
	assert_true(i >= 0 && i < c->n);
	h_nats_kill(c->nodes[i]);
}

void h_nats_cluster_resume(struct h_nats_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		h_nats_resume(c->nodes[i]);
	h_nats_cluster_wait_routes(c, 15000);
}

int h_nats_cluster_node_of(struct h_nats_cluster *c, const char *client_name, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		for (int i = 0; i < c->n; i++) {
			if (!c->nodes[i]->proc)
				continue;
			json_t *cz = h__nats_monitor(c->nodes[i], "/connz?limit=4096"), *conn;
			size_t k;
			bool found = false;
			json_array_foreach(json_object_get(cz, "connections"), k, conn)
			{
				const char *name = json_string_value(json_object_get(conn, "name"));
				found = found || (name && !strcmp(name, client_name));
			}
			json_decref(cz);
			if (found)
				return i;
		}
		if (util_now_ms() >= end)
			return -1;
		h_sleep_ms(20);
	}
}
