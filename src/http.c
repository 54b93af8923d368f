/* http: see include/http.h. The pattern is curl's docs/examples/multi-uv.c:
 * curl tells us which sockets to watch (socket callback) and when to call it
 * back (timer callback); libuv tells us when a socket is ready, and we hand
 * that to curl_multi_socket_action, then collect finished transfers. */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define HTTP_SWEEP_MS 100
#define HTTP_IDLE_CONNECTIONS 4096L

/* Easy handles kept for the next transfer (http_easy/http_release):
 * curl_easy_init and curl_easy_cleanup cost a 5 KB calloc and about 14 k
 * instructions per request; a reset handle costs a fraction of that. */
#define HTTP_EASY_POOL 32

struct http {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	uv_timer_t sweep;
	int running;
	int nactive;
	struct http_xfer *active; /* list of running transfers */
	int open_handles; /* the timers not yet closed */
	struct http_sock **socks; /* connections' sockets by fd */
	size_t nsocks;
	CURL *idle[HTTP_EASY_POOL]; /* reset easy handles, ready for a transfer */
	int nidle;
};

static void http__unlink(struct http *h, struct http_xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		h->active = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
	x->active = 0;
	if (--h->nactive == 0)
		uv_timer_stop(&h->sweep);
}

static void http__on_sweep(uv_timer_t *t)
{
	struct http *h = t->data;
	unsigned long long now = uv_now(h->loop);
	struct http_xfer *x, *next, *expired = NULL;

	/* Detach the expired transfers first, then call their owners: a
	 * callback may free its transfer, and the list walk must not care. */
	for (x = h->active; x; x = next) {
		next = x->next;
		if (x->deadline_ms && now >= x->deadline_ms) {
			http_abort(x);
			x->next = expired;
			expired = x;
		}
	}
	for (x = expired; x; x = next) {
		next = x->next;
		x->next = NULL;
		x->expired(x);
	}
}

/* One per socket curl asks us to watch. A connection's socket (opened by
 * http__open_socket) lives as long as the connection: curl keeps idle
 * connections for the next transfer, and a poll handle made afresh for each
 * transfer costs six epoll_ctl and an ioctl (libuv checks the fd, sets it
 * non-blocking, deletes before every start). Between transfers it stays
 * watched for reading, which costs nothing until the peer closes or sends
 * something unasked; then it is stopped. Other sockets (the resolver's) come
 * and go with curl's REMOVE. */
struct http_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	int events;  /* what the poll handle watches now */
	bool inited; /* poll initialised */
	bool conn;   /* a connection's socket: freed when curl closes it */
	bool wanted; /* curl watches it now */
	struct http *http;
};

static struct http_sock *http__sock_find(struct http *h, curl_socket_t fd)
{
	return fd >= 0 && (size_t)fd < h->nsocks ? h->socks[fd] : NULL;
}

static void http__sock_closed(uv_handle_t *hd)
{
	free(hd->data);
}

static void http__sock_free(struct http_sock *s)
{
	if (s->inited)
		uv_close((uv_handle_t *)&s->poll, http__sock_closed);
	else
		free(s);
}

static void http__check_done(struct http *h)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *easy = m->easy_handle;
		CURLcode res = m->data.result;
		struct http_xfer *x = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(h->multi, easy);
		http__unlink(h, x);
		/* m is invalid after remove; everything needed was copied above. */
		x->done(x, res);
	}
}

static void http__action(struct http *h, curl_socket_t fd, int flags)
{
	curl_multi_socket_action(h->multi, fd, flags, &h->running);
	http__check_done(h);
}

static void http__on_poll(uv_poll_t *p, int status, int events)
{
	struct http_sock *s = p->data;
	int flags = 0;

	if (!s->wanted) {
		/* An idle connection woke: the peer closed it (or sent what
		 * nobody asked for). curl finds out when it tries to reuse it. */
		uv_poll_stop(p);
		s->events = 0;
		return;
	}
	if (status < 0) {
		/* A socket error (a peer's reset) comes alone, with the handle
		 * stopped by libuv, though what the peer sent before it may be
		 * unread: CURL_CSELECT_ERR would make curl fail the transfer
		 * ("Failed sending data") without reading it. So curl reads
		 * (and writes) as it would, meets the error itself, and the
		 * handle watches again until curl says otherwise. */
		int want = s->events;
		s->events = 0;
		http__action(s->http, s->fd, CURL_CSELECT_IN | CURL_CSELECT_OUT);
		if (!uv_is_closing((uv_handle_t *)p) && s->wanted && !s->events && want) {
			uv_poll_start(p, want, http__on_poll);
			s->events = want;
		}
		return;
	}
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	http__action(s->http, s->fd, flags);
}

static void http__on_timer(uv_timer_t *t)
{
	http__action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int http__timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;

	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&h->timer);
	else
		/* Even a 0 timeout goes through the loop: calling socket_action
		 * from inside this callback would re-enter curl. */
		uv_timer_start(&h->timer, http__on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

static int http__socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http *h = userp;
	struct http_sock *s = socketp;
	int events = 0;

	(void)easy;
	if (!s && (s = http__sock_find(h, fd)))
		curl_multi_assign(h->multi, fd, s); /* a kept connection, used again */
	if (what == CURL_POLL_REMOVE) {
		if (!s)
			return 0;
		curl_multi_assign(h->multi, fd, NULL);
		s->wanted = false;
		if (!s->conn) {
			http__sock_free(s);
		} else if (s->events & UV_WRITABLE) {
			/* Writable would wake the loop at once, and for nothing. */
			uv_poll_stop(&s->poll);
			s->events = 0;
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->http = h;
		curl_multi_assign(h->multi, fd, s);
	}
	if (!s->inited) {
		if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
			curl_multi_assign(h->multi, fd, NULL);
			if (!s->conn)
				free(s);
			return -1;
		}
		s->poll.data = s;
		s->inited = true;
	}
	s->wanted = true;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	/* curl repeats itself; uv_poll_start always deletes the fd from epoll
	 * and adds it back, two syscalls per call, so skip the no-ops. */
	if (events != s->events) {
		uv_poll_start(&s->poll, events, http__on_poll);
		s->events = events;
	}
	return 0;
}

/* curl opens and closes every connection's socket through these, so a
 * connection's http_sock can outlive its transfers (see struct http_sock). */
static curl_socket_t http__open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct http *h = clientp;
	curl_socket_t fd = socket(a->family, a->socktype, a->protocol);

	(void)purpose;
	if (fd < 0)
		return CURL_SOCKET_BAD;
	if ((size_t)fd >= h->nsocks) {
		size_t n = h->nsocks ? h->nsocks : 64;
		while (n <= (size_t)fd)
			n *= 2;
		h->socks = xrealloc(h->socks, n * sizeof(*h->socks));
		memset(h->socks + h->nsocks, 0, (n - h->nsocks) * sizeof(*h->socks));
		h->nsocks = n;
	}
	struct http_sock *s = xcalloc(1, sizeof(*s));
	s->fd = fd;
	s->http = h;
	s->conn = true;
	h->socks[fd] = s;
	return fd;
}

static int http__close_socket(void *clientp, curl_socket_t fd)
{
	struct http *h = clientp;
	struct http_sock *s = http__sock_find(h, fd);

	if (s) {
		/* Before close: libuv must drop the fd while it is still this
		 * socket (a new one may get the same number at once). */
		h->socks[fd] = NULL;
		http__sock_free(s);
	}
	return close(fd);
}

struct http *http_new(uv_loop_t *loop, long max_conns_per_host)
{
	struct http *h = xcalloc(1, sizeof(*h));

	h->loop = loop;
	h->multi = curl_multi_init();
	if (!h->multi) {
		log_error(NULL, "curl: cannot create a multi handle");
		abort();
	}
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	uv_timer_init(loop, &h->sweep);
	h->open_handles = 2;
	h->sweep.data = h;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http__socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http__timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	/* curl's default cache holds 4 idle connections per easy handle still
	 * added; after a burst of finished streams it closes most of them, and
	 * the next burst reconnects. Keep enough for a whole burst. */
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, HTTP_IDLE_CONNECTIONS);
	if (max_conns_per_host > 0)
		curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_conns_per_host);
	return h;
}

static void http__free_cb(uv_handle_t *hd)
{
	struct http *h = hd->data;
	if (--h->open_handles == 0) {
		free(h->socks);
		free(h);
	}
}

void http_free(struct http *h)
{
	if (!h)
		return;
	/* Cleanup closes every connection through http__close_socket, which
	 * closes their poll handles (and REMOVE closes any other socket's). */
	/* What is left is owned by nobody but its transfer (an upstream that
	 * ended at [DONE] and was draining the body): expiring frees it. */
	while (h->active) {
		struct http_xfer *x = h->active;
		http_abort(x);
		x->expired(x);
	}
	while (h->nidle)
		curl_easy_cleanup(h->idle[--h->nidle]);
	curl_multi_cleanup(h->multi);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, http__free_cb);
	uv_close((uv_handle_t *)&h->sweep, http__free_cb);
}

int http_start(struct http *h, struct http_xfer *x)
{
	x->http = h;
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, http__open_socket);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, h);
	curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, http__close_socket);
	curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, h);
	if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK)
		return -1;
	x->active = 1;
	x->prev = NULL;
	x->next = h->active;
	if (h->active)
		h->active->prev = x;
	h->active = x;
	if (h->nactive++ == 0)
		uv_timer_start(&h->sweep, http__on_sweep, HTTP_SWEEP_MS, HTTP_SWEEP_MS);
	return 0;
}

CURL *http_easy(struct http *h)
{
	CURL *e = h->nidle ? h->idle[--h->nidle] : curl_easy_init();

	if (!e)
		util_oom();
	return e;
}

void http_release(struct http_xfer *x)
{
	struct http *h = x->http;

	if (!x->easy)
		return;
	http_abort(x);
	if (h && h->nidle < HTTP_EASY_POOL) {
		curl_easy_reset(x->easy); /* back to a new handle's options; connections stay in the multi */
		h->idle[h->nidle++] = x->easy;
	} else {
		curl_easy_cleanup(x->easy);
	}
	x->easy = NULL;
}

void http_abort(struct http_xfer *x)
{
	if (!x->active)
		return;
	curl_multi_remove_handle(x->http->multi, x->easy);
	http__unlink(x->http, x);
}

unsigned long long http_now(const struct http *h)
{
	return uv_now(h->loop);
}
