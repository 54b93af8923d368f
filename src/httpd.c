/* httpd: see include/httpd.h.
 *
 *   listen socket (ours) -> MHD (MHD_USE_EPOLL, no internal thread)
 *   MHD's epoll fd -> uv_poll_t readable -> MHD_run -> handler -> hooks
 *   MHD_get_timeout -> uv_timer_t -> MHD_run (idle connections, and data
 *   MHD left unprocessed)
 *
 * The socket is made here (bind, listen) rather than by MHD, so a port in
 * use reports its errno and port 0 reads back the port the kernel chose. */
#include "httpd.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "prom.h"

/* A scrape is one small request at a time; nothing here needs more. */
#define HTTPD_MAX_CONNECTIONS 16
#define HTTPD_CONNECTION_TIMEOUT_S 10

struct httpd {
	uv_loop_t *loop;
	char *listen;
	struct httpd_hooks hooks;
	struct MHD_Daemon *mhd;
	int port;
	bool polling;    /* poll is initialised */
	bool warned;     /* the bind failure was logged at error level */
	bool closing;
	int open_handles;
	uv_poll_t poll;
	uv_timer_t timer; /* MHD's timeout, or the bind retry */
	struct buf body;  /* reused for every answer */
};

static void httpd__log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void httpd__log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn(NULL, "metrics listener: %s", msg);
}

static enum MHD_Result httpd__answer(struct MHD_Connection *c, unsigned status, const char *ctype,
				     const struct buf *body)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(body->len, body->data ? body->data : (void *)"", MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result httpd__handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				     const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct httpd *h = cls;
	const char *text = "text/plain; charset=utf-8";

	(void)version;
	(void)upload;
	/* The first call for a request only announces it; answer on the next. */
	if (!*con_cls) {
		*con_cls = h;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* a body is not wanted: drop it */
		return MHD_YES;
	}
	buf_reset(&h->body);
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		buf_append_str(&h->body, "only GET\n");
		return httpd__answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, &h->body);
	}
	if (!strcmp(url, "/metrics")) {
		h->hooks.metrics(h->hooks.ud, &h->body);
		return httpd__answer(c, MHD_HTTP_OK, PROM_CONTENT_TYPE, &h->body);
	}
	if (!strcmp(url, "/healthz")) {
		/* Answered from the loop: the loop is alive. */
		buf_append_str(&h->body, "ok\n");
		return httpd__answer(c, MHD_HTTP_OK, text, &h->body);
	}
	if (!strcmp(url, "/readyz")) {
		bool ready = h->hooks.ready(h->hooks.ud, &h->body);
		if (ready)
			buf_append_str(&h->body, "ready");
		buf_append_char(&h->body, '\n');
		return httpd__answer(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, &h->body);
	}
	buf_append_str(&h->body, "not found: try /metrics, /healthz or /readyz\n");
	return httpd__answer(c, MHD_HTTP_NOT_FOUND, text, &h->body);
}

static void httpd__on_timer(uv_timer_t *t);

/* Runs MHD and arms the timer for what it wants next. */
static void httpd__run(struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	MHD_run(h->mhd);
	if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
		uv_timer_start(&h->timer, httpd__on_timer, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

static void httpd__on_poll(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	httpd__run(p->data);
}

static int httpd__listen_socket(struct httpd *h, int *err)
{
	struct sockaddr_storage ss;
	unsigned len;
	int one = 1;

	if (config_listen_addr(h->listen, &ss, &len) < 0) {
		*err = EINVAL;
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, (socklen_t *)&len) == 0)
		h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							  : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Binds and starts MHD; on failure arms the retry. */
static void httpd__try_start(struct httpd *h)
{
	int err = 0, fd = httpd__listen_socket(h, &err);

	if (fd >= 0) {
		/* The logger first, so MHD's own messages go through it too. */
		h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, httpd__handler, h,
					  MHD_OPTION_EXTERNAL_LOGGER, httpd__log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
					  MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTPD_MAX_CONNECTIONS,
					  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_CONNECTION_TIMEOUT_S,
					  MHD_OPTION_END);
		if (!h->mhd) {
			close(fd);
			err = EIO;
		}
	}
	if (!h->mhd) {
		h->port = 0;
		if (!h->warned)
			log_error(NULL, "metrics listener: cannot listen on %s: %s; retrying every %d s (serving goes on)",
				  h->listen, strerror(err), HTTPD_RETRY_MS / 1000);
		h->warned = true;
		uv_timer_start(&h->timer, httpd__on_timer, HTTPD_RETRY_MS, 0);
		return;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	uv_poll_init(h->loop, &h->poll, info->epoll_fd);
	h->poll.data = h;
	h->polling = true;
	h->open_handles++;
	uv_poll_start(&h->poll, UV_READABLE, httpd__on_poll);
	const char *colon = strrchr(h->listen, ':');
	log_info(NULL, "metrics listener: http://%.*s:%d/metrics (and /healthz, /readyz)",
		 (int)(colon - h->listen), h->listen, h->port);
	httpd__run(h);
}

static void httpd__on_timer(uv_timer_t *t)
{
	struct httpd *h = t->data;

	if (h->mhd)
		httpd__run(h);
	else
		httpd__try_start(h);
}

struct httpd *httpd_start(uv_loop_t *loop, const char *listen, const struct httpd_hooks *hooks)
{
	struct httpd *h = xcalloc(1, sizeof(*h));

	h->loop = loop;
	h->listen = xstrdup(listen);
	h->hooks = *hooks;
	buf_init(&h->body);
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	h->open_handles = 1;
	httpd__try_start(h);
	return h;
}

int httpd_port(const struct httpd *h)
{
	return h && h->mhd ? h->port : 0;
}

static void httpd__close_cb(uv_handle_t *handle)
{
	struct httpd *h = handle->data;

	if (--h->open_handles)
		return;
	buf_free(&h->body);
	free(h->listen);
	free(h);
}

void httpd_close(struct httpd *h)
{
	if (!h || h->closing)
		return;
	h->closing = true;
	if (h->polling) {
		uv_poll_stop(&h->poll);
		uv_close((uv_handle_t *)&h->poll, httpd__close_cb);
	}
	/* MHD closes the listen socket and every connection, and its epoll fd
	 * (after the poll handle stopped watching it). */
	if (h->mhd)
		MHD_stop_daemon(h->mhd);
	h->mhd = NULL;
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, httpd__close_cb);
}
