/* notify: see notify.h. */
#include "notify.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon.h"
#include "fixture.h"
#include "util.h"

struct h_notify {
	int fd;
	char *path;
	char *env;
	struct buf seen;
};

static void h__notify_cleanup(void *p)
{
	struct h_notify *nf = p;
	h__forget(nf);
	close(nf->fd);
	unlink(nf->path);
	free(nf->path);
	free(nf->env);
	buf_free(&nf->seen);
	free(nf);
}

struct h_notify *h_notify_open(const char *name)
{
	struct h_notify *nf = xcalloc(1, sizeof(*nf));
	struct sockaddr_un sa;

	nf->path = xasprintf("%s/%s.sock", h_tmpdir(), name);
	if (strlen(nf->path) >= sizeof(sa.sun_path))
		fail_msg("notify socket path too long: %s", nf->path);
	nf->env = xasprintf("NOTIFY_SOCKET=%s", nf->path);
	buf_init(&nf->seen);
	buf_reserve(&nf->seen, 0);
	nf->seen.data[0] = '\0';
	nf->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(nf->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", nf->path);
	unlink(nf->path);
	if (bind(nf->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("bind %s: %s", nf->path, strerror(errno));
	h__push(h__notify_cleanup, nf);
	return nf;
}

const char *h_notify_path(struct h_notify *nf)
{
	return nf->path;
}

const char *h_notify_env(struct h_notify *nf)
{
	return nf->env;
}

/* One datagram within timeout_ms (malloc'ed text), or NULL. */
static char *h__notify_recv(struct h_notify *nf, int timeout_ms)
{
	struct pollfd pfd = { .fd = nf->fd, .events = POLLIN };
	char data[4096];

	if (timeout_ms < 0)
		timeout_ms = 0;
	int r = poll(&pfd, 1, timeout_ms);
	if (r <= 0)
		return NULL;
	ssize_t n = recv(nf->fd, data, sizeof(data) - 1, 0);
	if (n < 0)
		return NULL;
	data[n] = '\0';
	buf_printf(&nf->seen, "[%llu] ", h__elapsed_ms());
	for (ssize_t i = 0; i < n; i++)
		buf_append_char(&nf->seen, data[i] == '\n' ? '|' : data[i]);
	buf_append_char(&nf->seen, '\n');
	return xstrndup(data, (size_t)n);
}

static bool h__has_line(const char *text, const char *prefix)
{
	size_t pl = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, pl))
			return true;
	return false;
}

/* Reads for timeout_ms. Without count: returns the first datagram that has
 * a line starting with line_prefix (NULL if none came). With count: counts
 * them all until the time is up, and returns NULL. */
static char *h__notify_scan(struct h_notify *nf, const char *line_prefix, int timeout_ms, size_t *count)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (unsigned long long now; (now = util_now_ms()) < end;) {
		char *dg = h__notify_recv(nf, (int)(end - now));
		if (dg && h__has_line(dg, line_prefix)) {
			if (!count)
				return dg;
			(*count)++;
		}
		free(dg);
	}
	return NULL;
}

char *h_notify_wait(struct h_notify *nf, const char *line_prefix, int timeout_ms)
{
	return h__notify_scan(nf, line_prefix, timeout_ms, NULL);
}

char *h_notify_expect(struct h_notify *nf, struct h_daemon *d, const char *line_prefix, int timeout_ms)
{
	char *dg = h_notify_wait(nf, line_prefix, timeout_ms);
	if (!dg) {
		h_daemon_dump_log(d);
		fail_msg("no \"%s\" on the notify socket within %d ms; received:\n%s", line_prefix, timeout_ms,
			 h_notify_seen(nf));
	}
	return dg;
}

size_t h_notify_count_for(struct h_notify *nf, const char *line_prefix, int window_ms)
{
	size_t n = 0;
	h__notify_scan(nf, line_prefix, window_ms, &n);
	return n;
}

const char *h_notify_seen(struct h_notify *nf)
{
	return nf->seen.data;
}

void h_notify_close(struct h_notify *nf)
{
	h__notify_cleanup(nf);
}
