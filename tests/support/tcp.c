/* tcp: see tcp.h. The raw server's thread touches only its own struct, under
 * its mutex. */
#include "tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"
#include "util.h"

#define H__RAWSRV_MAX 256

/* 127.0.0.1 on port (0: any). */
static struct sockaddr_in h__loopback(int port)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

/* A socket bound to a free loopback port, listening with backlog unless it
 * is negative; *sa gets the address. */
static int h__bound_socket(int backlog, struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t sl = sizeof(*sa);
	*sa = h__loopback(0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	if (backlog >= 0)
		assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &sl), 0);
	return fd;
}

int h_free_port(void)
{
	struct sockaddr_in sa;
	close(h__bound_socket(-1, &sa));
	return ntohs(sa.sin_port);
}

bool h_wait_port(int port, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	struct sockaddr_in sa = h__loopback(port);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (rc == 0)
			return true;
		if (util_now_ms() >= end)
			return false;
		h_sleep_ms(10);
	}
}

static void h__close_fd(void *p)
{
	int *fd = p;
	close(*fd);
	h__forget(p);
	free(fd);
}

static void h__keep_fd(int fd)
{
	int *p = xmalloc(sizeof(*p));
	*p = fd;
	h__push(h__close_fd, p);
}

int h_blackhole_port(void)
{
	struct sockaddr_in sa;
	/* Backlog 0 holds one established connection; once it is full the
	 * kernel drops further SYNs, so a client's connect hangs. */
	h__keep_fd(h__bound_socket(0, &sa));
	for (int i = 0; i < 3; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
			fail_msg("filler connect: %s", strerror(errno));
		h__keep_fd(fd);
	}
	h_sleep_ms(50);
	return ntohs(sa.sin_port);
}

/* ---- the raw HTTP server ---- */

struct h_rawsrv {
	int lfd;
	int port;
	char *response;
	pthread_t thread;
	pthread_mutex_t mu;
	bool stop;                  /* guarded by mu */
	char *heads[H__RAWSRV_MAX]; /* guarded by mu */
	int nheads;                 /* guarded by mu */
};

static bool h__rawsrv_stopping(struct h_rawsrv *s)
{
	pthread_mutex_lock(&s->mu);
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* Reads one request (head, then Content-Length bytes of body), each read
 * bounded by 2 s; records the head and answers. */
static void h__rawsrv_serve(struct h_rawsrv *s, int fd)
{
	struct buf in;
	char tmp[4096];
	size_t head_len = 0, need = 0;

	buf_init(&in);
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 2000) <= 0)
			break;
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			break;
		buf_append(&in, tmp, (size_t)n);
		if (!head_len) {
			char *end = strstr(in.data, "\r\n\r\n");
			if (!end)
				continue;
			head_len = (size_t)(end - in.data) + 4;
			const char *cl = strcasestr(in.data, "\r\ncontent-length:");
			need = head_len + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
		}
		if (in.len >= need)
			break;
	}
	if (head_len) {
		pthread_mutex_lock(&s->mu);
		if (s->nheads < H__RAWSRV_MAX)
			s->heads[s->nheads++] = xstrndup(in.data, head_len);
		pthread_mutex_unlock(&s->mu);
		size_t off = 0, len = strlen(s->response);
		while (off < len) {
			ssize_t w = write(fd, s->response + off, len - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		shutdown(fd, SHUT_WR);
		/* Let the client read the answer before the socket goes. */
		struct pollfd pfd = { fd, POLLIN, 0 };
		while (poll(&pfd, 1, 500) > 0 && read(fd, tmp, sizeof(tmp)) > 0)
			;
	}
	buf_free(&in);
	close(fd);
}

static void *h__rawsrv_main(void *ud)
{
	struct h_rawsrv *s = ud;

	while (!h__rawsrv_stopping(s)) {
		struct pollfd pfd = { s->lfd, POLLIN, 0 };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			h__rawsrv_serve(s, fd);
	}
	return NULL;
}

static void h__rawsrv_cleanup(void *p)
{
	struct h_rawsrv *s = p;
	h__forget(s);
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	for (int i = 0; i < s->nheads; i++)
		free(s->heads[i]);
	pthread_mutex_destroy(&s->mu);
	free(s->response);
	free(s);
}

struct h_rawsrv *h_rawsrv_start(const char *response)
{
	struct h_rawsrv *s = xcalloc(1, sizeof(*s));
	struct sockaddr_in sa;

	s->response = xstrdup(response);
	pthread_mutex_init(&s->mu, NULL);
	s->lfd = h__bound_socket(64, &sa);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, h__rawsrv_main, s), 0);
	h__push(h__rawsrv_cleanup, s);
	return s;
}

int h_rawsrv_port(struct h_rawsrv *s)
{
	return s->port;
}

int h_rawsrv_count(struct h_rawsrv *s)
{
	pthread_mutex_lock(&s->mu);
	int n = s->nheads;
	pthread_mutex_unlock(&s->mu);
	return n;
}

char *h_rawsrv_head(struct h_rawsrv *s, int i)
{
	char *h = NULL;
	pthread_mutex_lock(&s->mu);
	if (i >= 0 && i < s->nheads)
		h = xstrdup(s->heads[i]);
	pthread_mutex_unlock(&s->mu);
	return h;
}

char *h_http_response(int status, const char *extra_headers, const char *ctype, const char *body)
{
	return xasprintf("HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n%s",
			 status, ctype, strlen(body), extra_headers, body);
}
