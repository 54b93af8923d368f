/* stream: see stream.h. The nats.c delivery thread touches only the
 * collector it was handed, under its mutex; the test thread waits on its
 * condition variable. */
#include "stream.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "check.h"
#include "fixture.h"
#include "gateway.h"
#include "mock.h"
#include "util.h"

struct h_stream {
	natsSubscription *sub;
	char *rid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	json_t *events;   /* array, guarded by mu */
	size_t terminals; /* guarded by mu */
	size_t bad_json;  /* guarded by mu */
};

static bool h__is_terminal(json_t *ev)
{
	const char *t = json_string_value(json_object_get(ev, "type"));
	return t && (!strcmp(t, "done") || !strcmp(t, "error"));
}

static void h__stream_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct h_stream *s = ud;
	(void)nc;
	(void)sub;
	json_t *ev = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	pthread_mutex_lock(&s->mu);
	if (!ev) {
		s->bad_json++;
		ev = json_stringn(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
		if (!ev)
			ev = json_string("(invalid UTF-8)");
	}
	if (h__is_terminal(ev))
		s->terminals++;
	json_array_append_new(s->events, ev);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	natsMsg_Destroy(msg);
}

static void h__stream_cleanup(void *p)
{
	struct h_stream *s = p;
	h__forget(s);
	h__sub_stop(s->sub);
	json_decref(s->events);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->rid);
	free(s);
}

/* Waits use CLOCK_MONOTONIC deadlines, immune to clock steps. */
static void h__cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

struct h_stream *h_stream_open(struct h_client *c, const char *rid)
{
	struct h_stream *s = xcalloc(1, sizeof(*s));
	char subj[512];
	s->rid = xstrdup(rid);
	s->events = json_array();
	pthread_mutex_init(&s->mu, NULL);
	h__cond_init_monotonic(&s->cv);
	snprintf(subj, sizeof(subj), "%s.chat.stream.%s", c->prefix, rid);
	natsStatus st = natsConnection_Subscribe(&s->sub, c->nc, subj, h__stream_cb, s);
	if (st != NATS_OK)
		fail_msg("subscribe %s: %s", subj, natsStatus_GetText(st));
	/* Unlimited pending: a long stream must never be dropped by the client. */
	natsSubscription_SetPendingLimits(s->sub, -1, -1);
	h__push(h__stream_cleanup, s);
	h_flush(c);
	return s;
}

struct h_stream *h_stream_submit(struct h_client *c, const char *rid, const char *text)
{
	struct h_stream *s = h_stream_open(c, rid);
	h_submit_simple(c, rid, text);
	return s;
}

/* Waits (mu held) until pred holds or the deadline passes. */
static bool h__stream_wait(struct h_stream *s, bool (*pred)(struct h_stream *, size_t), size_t arg, int timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	long long ns = (long long)dl.tv_nsec + (long long)timeout_ms * 1000000LL;
	dl.tv_sec += (time_t)(ns / 1000000000LL);
	dl.tv_nsec = (long)(ns % 1000000000LL);
	pthread_mutex_lock(&s->mu);
	bool ok;
	while (!(ok = pred(s, arg)))
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
			ok = pred(s, arg);
			break;
		}
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static bool h__has_terminal(struct h_stream *s, size_t arg)
{
	(void)arg;
	return s->terminals > 0;
}

static bool h__has_count(struct h_stream *s, size_t n)
{
	return json_array_size(s->events) >= n;
}

bool h_stream_wait_terminal(struct h_stream *s, int timeout_ms)
{
	return h__stream_wait(s, h__has_terminal, 0, timeout_ms);
}

bool h_stream_wait_count(struct h_stream *s, size_t n, int timeout_ms)
{
	return h__stream_wait(s, h__has_count, n, timeout_ms);
}

size_t h_stream_count(struct h_stream *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = json_array_size(s->events);
	pthread_mutex_unlock(&s->mu);
	return n;
}

json_t *h_stream_events(struct h_stream *s)
{
	pthread_mutex_lock(&s->mu);
	json_t *copy = json_deep_copy(s->events);
	pthread_mutex_unlock(&s->mu);
	return copy;
}

static void h__stream_summary(struct h_stream *s, char *out, size_t outlen)
{
	json_t *ev = h_stream_events(s);
	size_t n = json_array_size(ev), off = 0;
	off += (size_t)snprintf(out, outlen, "%zu events", n);
	/* The first few and the last few are enough to see what went wrong. */
	for (size_t i = 0; i < n && off < outlen; i++) {
		if (i >= 5 && i + 5 < n) {
			if (i == 5)
				off += (size_t)snprintf(out + off, outlen - off, "\n  ...");
			continue;
		}
		char *d = json_dumps(json_array_get(ev, i), JSON_COMPACT | JSON_ENCODE_ANY);
		off += (size_t)snprintf(out + off, outlen - off, "\n  %s", d);
		free(d);
	}
	json_decref(ev);
}

/* The event types of a stream besides the terminal ones (docs/protocol.md). */
static bool h__is_known_delta(const char *type)
{
	static const char *const types[] = { "token", "reasoning", "tool_call", "keepalive" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(types); i++)
		if (!strcmp(type, types[i]))
			return true;
	return false;
}

/* Fails unless event i of n is in its place. */
static void h__stream_check_event(struct h_stream *s, json_t *e, size_t i, size_t n)
{
	json_t *seq = json_object_get(e, "seq");
	const char *rid = json_string_value(json_object_get(e, "request_id"));
	const char *type = json_string_value(json_object_get(e, "type"));
	if (!json_is_integer(seq) || (size_t)json_integer_value(seq) != i || !rid || strcmp(rid, s->rid) ||
	    !type || (!h__is_terminal(e) && !h__is_known_delta(type)) ||
	    (h__is_terminal(e) != (i == n - 1))) {
		char summary[8192];
		char *d = json_dumps(e, JSON_COMPACT);
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: event %zu is wrong (expected seq %zu, request_id %s, terminal only last): "
			 "%s\nall: %s",
			 s->rid, i, i, s->rid, d, summary);
	}
}

json_t *h_stream_settle(struct h_stream *s, int timeout_ms, int linger_ms)
{
	char summary[8192];
	if (!h_stream_wait_terminal(s, timeout_ms)) {
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: no terminal event within %d ms; got %s", s->rid, timeout_ms, summary);
	}
	/* Anything sent after the terminal event would arrive right behind it. */
	h_sleep_ms(linger_ms);
	pthread_mutex_lock(&s->mu);
	size_t n = json_array_size(s->events), terminals = s->terminals, bad = s->bad_json;
	pthread_mutex_unlock(&s->mu);
	if (bad) {
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: %zu events were not JSON: %s", s->rid, bad, summary);
	}
	if (terminals != 1) {
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: expected exactly 1 terminal event, got %zu: %s", s->rid, terminals, summary);
	}
	json_t *ev = h_stream_events(s);
	for (size_t i = 0; i < n; i++)
		h__stream_check_event(s, json_array_get(ev, i), i, n);
	json_decref(ev);
	pthread_mutex_lock(&s->mu);
	json_t *last = json_array_get(s->events, n - 1);
	pthread_mutex_unlock(&s->mu);
	return last;
}

json_t *h_stream_finish(struct h_stream *s, int timeout_ms)
{
	return h_stream_settle(s, timeout_ms, 200);
}

json_t *h_stream_done(struct h_stream *s, int timeout_ms)
{
	json_t *t = h_stream_finish(s, timeout_ms);
	if (strcmp(h_jstr(t, "type"), "done")) {
		char *d = json_dumps(t, JSON_COMPACT);
		fail_msg("stream %s did not end with done: %s", s->rid, d);
	}
	return t;
}

json_t *h_stream_expect_error(struct h_stream *s, const char *code, int timeout_ms)
{
	json_t *t = h_stream_finish(s, timeout_ms);
	char *d = json_dumps(t, JSON_COMPACT);
	if (strcmp(h_jstr(t, "type"), "error") || !json_is_string(h_jpath(t, "error.code")) ||
	    strcmp(h_jstr(t, "error.code"), code))
		fail_msg("stream %s: expected an error event with code \"%s\", got %s", s->rid, code, d);
	free(d);
	return t;
}

char *h_stream_text(struct h_stream *s, const char *type)
{
	struct buf b;
	buf_init(&b);
	buf_reserve(&b, 0);
	b.data[0] = '\0';
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < json_array_size(s->events); i++) {
		json_t *e = json_array_get(s->events, i);
		const char *t = json_string_value(json_object_get(e, "type"));
		json_t *d = json_object_get(e, "delta");
		if (t && !strcmp(t, type) && json_is_string(d))
			buf_append(&b, json_string_value(d), json_string_length(d));
	}
	pthread_mutex_unlock(&s->mu);
	return b.data;
}

void h_stream_close(struct h_stream *s)
{
	h__stream_cleanup(s);
}

void h_chat(struct h_client *c, const char *rid, const char *model)
{
	struct h_stream *s = h_stream_submit(c, rid, "hello");
	assert_string_equal(h_jstr(h_stream_done(s, 15000), "model"), model);
	h_stream_close(s);
}

void h_chat_expect(struct h_client *c, const char *rid, const char *text, const char *want)
{
	struct h_stream *s = h_stream_submit(c, rid, text);
	json_t *t = h_stream_finish(s, 15000);
	const char *got = strcmp(h_jstr(t, "type"), "done") ? h_jstr(h_jpath(t, "error"), "code") : "done";
	assert_string_equal(got, want);
	h_stream_close(s);
}

void h_chat_expect_n(struct h_client *c, const char *rid_prefix, int n, const char *text, struct h_mock *m,
		     const char *next_script, const char *want)
{
	for (int i = 0; i < n; i++) {
		char rid[64];
		snprintf(rid, sizeof(rid), "%s-%d", rid_prefix, i);
		if (next_script)
			h_mock_next(m, "%s", next_script);
		h_chat_expect(c, rid, text, want);
	}
}

void h_stream_expect_text(struct h_stream *s, const char *want)
{
	char *text = h_stream_text(s, "token");
	assert_string_equal(text, want);
	free(text);
}

void h_stream_expect_mock_tokens(struct h_stream *s, int n)
{
	char *want = h_mock_tokens(n);
	h_stream_expect_text(s, want);
	free(want);
}
