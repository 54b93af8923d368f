/* loadgen: the benchmark's gateway. It keeps --streams requests in flight
 * until --requests are done and checks every stream, so a fast wrong answer
 * cannot pass: each event's seq must be the previous one plus one (from 0),
 * exactly one terminal event must arrive, and with --expect-tokens the number
 * of token events must match.
 *
 *   NATS mode (default): one wildcard subscription <prefix>.chat.stream.> and,
 *   unless --no-acks, one on <inbox>.* for the submit acks. Submits are
 *   published without waiting; the delivery thread of the stream subscription
 *   publishes the next submit when a stream ends. Request ids are "b<index>",
 *   so the state of a request is found by parsing the index out of the
 *   subject, with no hash table.
 *
 *   Direct mode (--direct URL): the floor. The same load straight to the
 *   backend over HTTP with libcurl multi on epoll (curl's socket API, so the
 *   cost does not grow with the number of open streams), one thread.
 *
 * TTFT is the time from submit (publish or curl_multi_add_handle) to the first
 * token event. Events are decoded by a small scanner of the top-level JSON
 * object; --validate also parses each one with jansson and counts any
 * disagreement as a bad event. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define LG_EXIT_OK 0
#define LG_EXIT_FAIL 1
#define LG_EXIT_USAGE 2

/* Error codes of the wire contract, then the loadgen's own failure kinds. */
static const char *const lg_codes[] = {
	"bad_request",	       "busy",	     "cancelled",	"upstream_unavailable",
	"upstream_http",       "upstream_protocol", "upstream_timeout", "shutting_down",
	"internal",	       "other",	     "transport",	"http_status",
	"missing_done",	       "no_responders",
};
enum {
	LG_CODE_OTHER = 9,
	LG_CODE_TRANSPORT = 10,
	LG_CODE_HTTP_STATUS = 11,
	LG_CODE_MISSING_DONE = 12,
	LG_CODE_NO_RESPONDERS = 13,
};
#define LG_NCODES UTIL_ARRAY_LEN(lg_codes)

enum lg_state { LG_UNSENT, LG_INFLIGHT, LG_ENDED };

struct lg_req {
	uint64_t submit_ns;
	uint64_t first_ns; /* 0 until the first token */
	uint32_t next_seq;
	uint32_t tokens;
	uint8_t state;
	bool failed;
};

struct lg_opts {
	const char *nats_url;
	const char *prefix;
	const char *direct;
	const char *label;
	const char *message;
	const char *model;
	long streams;
	long requests;
	long expect_tokens; /* -1: unknown */
	double timeout_s;
	bool json;
	bool acks;
	bool validate;
};

/* Everything the run shares; the NATS callbacks hold mu while they touch it. */
struct lg_run {
	struct lg_opts o;
	struct lg_req *reqs;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	long next;  /* index of the next request to submit */
	long ended; /* requests with a terminal outcome */
	bool stop;  /* set when the result is taken; callbacks then do nothing */
	uint64_t start_ns;
	uint64_t last_end_ns;

	/* Results. */
	long ok;
	long errors[LG_NCODES];
	long order_violations;
	long after_terminal; /* events after the terminal one (incl. a second terminal) */
	long token_mismatch;
	long bad_events;     /* unparseable, unknown index or request_id mismatch */
	long rejected_acks;
	long no_responders;  /* submits no dispatcher received */
	long async_errors;   /* nats.c async errors, e.g. slow consumer */
	long submit_errors;
	uint64_t tokens;
	uint64_t events;
	long active;      /* streams between their first token and their end */
	long peak_active; /* how many streams were really open at once */

	/* NATS mode. */
	natsConnection *nc;
	char stream_prefix[256]; /* "<prefix>.chat.stream." */
	char submit_subject[256];
	char inbox[128];
	char body_head[64]; /* the submit body up to the request id */
	char *body_tail;    /* the rest, after the id */
};

static uint64_t lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- event scanner ---------------------------------------------------- */

struct lg_event {
	long long seq; /* -1 when absent */
	const char *type;
	size_t type_len;
	const char *rid;
	size_t rid_len;
	const char *code; /* error.code */
	size_t code_len;
};

static const char *lg__ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at the opening quote; returns past the closing one, NULL if unterminated. */
static const char *lg__string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *lg__value(const char *p, const char *end)
{
	int depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return lg__string(p, end);
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
			p++;
		return p;
	}
	while (p < end) {
		if (*p == '"') {
			p = lg__string(p, end);
			if (!p)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

static bool lg__key_is(const char *k, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(k, want, n) == 0;
}

/* Walks the members of the object at p; for each, calls back with the key
 * (without quotes, escapes left alone: our keys have none) and the value span. */
typedef void (*lg_member_fn)(const char *k, size_t kn, const char *v, const char *vend, void *arg);

static int lg__object(const char *p, const char *end, lg_member_fn fn, void *arg)
{
	p = lg__ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	p = lg__ws(p + 1, end);
	if (p < end && *p == '}')
		return 0;
	for (;;) {
		if (p >= end || *p != '"')
			return -1;
		const char *k = p + 1;
		const char *kend = lg__string(p, end);
		if (!kend)
			return -1;
		p = lg__ws(kend, end);
		if (p >= end || *p != ':')
			return -1;
		p = lg__ws(p + 1, end);
		const char *v = p;
		p = lg__value(p, end);
		if (!p)
			return -1;
		fn(k, (size_t)(kend - 1 - k), v, p, arg);
		p = lg__ws(p, end);
		if (p < end && *p == ',') {
			p = lg__ws(p + 1, end);
			continue;
		}
		return p < end && *p == '}' ? 0 : -1;
	}
}

static void lg__error_member(const char *k, size_t kn, const char *v, const char *vend, void *arg)
{
	struct lg_event *ev = arg;

	if (lg__key_is(k, kn, "code") && *v == '"') {
		ev->code = v + 1;
		ev->code_len = (size_t)(vend - v - 2);
	}
}

static void lg__event_member(const char *k, size_t kn, const char *v, const char *vend, void *arg)
{
	struct lg_event *ev = arg;

	if (lg__key_is(k, kn, "seq")) {
		long long n = 0;
		const char *p = v;
		for (; p < vend && *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (*p - '0');
		ev->seq = (p == v || p != vend) ? -2 : n;
	} else if (lg__key_is(k, kn, "type") && *v == '"') {
		ev->type = v + 1;
		ev->type_len = (size_t)(vend - v - 2);
	} else if (lg__key_is(k, kn, "request_id") && *v == '"') {
		ev->rid = v + 1;
		ev->rid_len = (size_t)(vend - v - 2);
	} else if (lg__key_is(k, kn, "error") && *v == '{') {
		if (lg__object(v, vend, lg__error_member, ev) < 0)
			ev->code = NULL;
	}
}

static int lg_scan_event(const char *data, size_t len, struct lg_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->seq = -1;
	if (lg__object(data, data + len, lg__event_member, ev) < 0)
		return -1;
	return ev->seq >= 0 && ev->type && ev->rid ? 0 : -1;
}

static bool lg__span_eq(const char *s, size_t n, const char *z)
{
	return z && strlen(z) == n && memcmp(s, z, n) == 0;
}

/* The jansson cross-check of --validate: true when both decoders agree. */
static bool lg_validate_event(const char *data, size_t len, const struct lg_event *ev)
{
	json_t *root = json_loadb(data, len, 0, NULL);
	bool same = false;

	if (!root)
		return false;
	json_t *seq = json_object_get(root, "seq");
	json_t *err = json_object_get(root, "error");
	const char *code = json_string_value(json_object_get(err, "code"));
	same = json_is_integer(seq) && json_integer_value(seq) == ev->seq &&
	       lg__span_eq(ev->type, ev->type_len, json_string_value(json_object_get(root, "type"))) &&
	       lg__span_eq(ev->rid, ev->rid_len, json_string_value(json_object_get(root, "request_id"))) &&
	       (ev->code ? lg__span_eq(ev->code, ev->code_len, code) : code == NULL);
	json_decref(root);
	return same;
}

static int lg_code_index(const char *s, size_t n)
{
	for (size_t i = 0; i < LG_CODE_OTHER; i++)
		if (lg__span_eq(s, n, lg_codes[i]))
			return (int)i;
	return LG_CODE_OTHER;
}

/* ---- per-request bookkeeping (both modes; NATS callers hold mu) -------- */

/* Ends a request once: counts it and records the outcome. */
static void lg_end(struct lg_run *r, struct lg_req *q, int code, uint64_t now)
{
	q->state = LG_ENDED;
	if (q->first_ns)
		r->active--;
	if (code >= 0) {
		q->failed = true;
		r->errors[code]++;
	} else if (r->o.expect_tokens >= 0 && q->tokens != (uint64_t)r->o.expect_tokens) {
		q->failed = true;
		r->token_mismatch++;
	}
	if (!q->failed)
		r->ok++;
	r->ended++;
	r->last_end_ns = now;
}

static void lg_token(struct lg_run *r, struct lg_req *q, uint64_t now)
{
	q->tokens++;
	r->tokens++;
	if (!q->first_ns) {
		q->first_ns = now;
		if (++r->active > r->peak_active)
			r->peak_active = r->active;
	}
}

/* ---- NATS mode -------------------------------------------------------- */

static void lg_nats_submit(struct lg_run *r)
{
	char subj_reply[160];
	char body[512];
	long idx = r->next++;
	struct lg_req *q = &r->reqs[idx];
	int n = snprintf(body, sizeof(body), "%s\"b%ld\"%s", r->body_head, idx, r->body_tail);
	natsStatus s;

	q->state = LG_INFLIGHT;
	q->submit_ns = lg_now_ns();
	if (!r->start_ns)
		r->start_ns = q->submit_ns;
	if (r->o.acks) {
		snprintf(subj_reply, sizeof(subj_reply), "%s.%ld", r->inbox, idx);
		s = natsConnection_PublishRequest(r->nc, r->submit_subject, subj_reply, body, n);
	} else {
		s = natsConnection_Publish(r->nc, r->submit_subject, body, n);
	}
	if (s != NATS_OK) {
		r->submit_errors++;
		lg_end(r, q, LG_CODE_TRANSPORT, lg_now_ns());
	}
}

static void lg_maybe_finish(struct lg_run *r)
{
	if (r->ended == r->o.requests)
		pthread_cond_signal(&r->cv);
}

static long lg_index_of(const char *s, long n)
{
	long idx = 0;

	if (*s++ != 'b' || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || idx > n)
			return -1;
		idx = idx * 10 + (*s - '0');
	}
	return idx < n ? idx : -1;
}

static void lg_on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct lg_run *r = arg;
	const char *subj = natsMsg_GetSubject(msg);
	const char *data = natsMsg_GetData(msg);
	size_t len = (size_t)natsMsg_GetDataLength(msg);
	size_t plen = strlen(r->stream_prefix);
	uint64_t now = lg_now_ns();
	struct lg_event ev;
	long idx;

	(void)nc;
	(void)sub;
	idx = strncmp(subj, r->stream_prefix, plen) == 0 ? lg_index_of(subj + plen, r->o.requests) : -1;
	int rc = lg_scan_event(data, len, &ev);

	pthread_mutex_lock(&r->mu);
	if (r->stop)
		goto out;
	r->events++;
	if (idx < 0 || rc < 0 || !lg__span_eq(ev.rid, ev.rid_len, subj + plen) ||
	    (r->o.validate && !lg_validate_event(data, len, &ev))) {
		r->bad_events++;
		goto out;
	}
	struct lg_req *q = &r->reqs[idx];
	if (q->state != LG_INFLIGHT) {
		r->after_terminal++;
		goto out;
	}
	if ((unsigned long long)ev.seq != q->next_seq) {
		r->order_violations++;
		q->failed = true;
	}
	q->next_seq = (uint32_t)ev.seq + 1;
	if (lg__span_eq(ev.type, ev.type_len, "token")) {
		lg_token(r, q, now);
	} else if (lg__span_eq(ev.type, ev.type_len, "done")) {
		lg_end(r, q, -1, now);
	} else if (lg__span_eq(ev.type, ev.type_len, "error")) {
		lg_end(r, q, ev.code ? lg_code_index(ev.code, ev.code_len) : LG_CODE_OTHER, now);
	} else if (!lg__span_eq(ev.type, ev.type_len, "reasoning")) {
		r->bad_events++;
	}
	if (q->state == LG_ENDED) {
		if (r->next < r->o.requests)
			lg_nats_submit(r);
		lg_maybe_finish(r);
	}
out:
	pthread_mutex_unlock(&r->mu);
	natsMsg_Destroy(msg);
}

/* Acks only count rejections: a rejected request also gets its error event on
 * the stream, which is what ends it. A "no responders" status means no
 * dispatcher took the submit, so that request ends here. */
static void lg_on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct lg_run *r = arg;
	const char *data = natsMsg_GetData(msg);
	int len = natsMsg_GetDataLength(msg);
	size_t ilen = strlen(r->inbox);
	const char *subj = natsMsg_GetSubject(msg);
	bool none = natsMsg_IsNoResponders(msg);

	(void)nc;
	(void)sub;
	if (!none && memmem(data, (size_t)len, "\"accepted\":true", 15))
		goto out;
	pthread_mutex_lock(&r->mu);
	if (r->stop) {
		pthread_mutex_unlock(&r->mu);
		goto out;
	}
	if (!none) {
		r->rejected_acks++;
	} else {
		long idx = -1;
		r->no_responders++;
		/* The reply subject is "<inbox>.<index>"; reuse the "b<index>" parser. */
		if (strncmp(subj, r->inbox, ilen) == 0 && subj[ilen] == '.') {
			char id[32];
			snprintf(id, sizeof(id), "b%s", subj + ilen + 1);
			idx = lg_index_of(id, r->o.requests);
		}
		if (idx >= 0 && r->reqs[idx].state == LG_INFLIGHT) {
			lg_end(r, &r->reqs[idx], LG_CODE_NO_RESPONDERS, lg_now_ns());
			if (r->next < r->o.requests)
				lg_nats_submit(r);
			lg_maybe_finish(r);
		}
	}
	pthread_mutex_unlock(&r->mu);
out:
	natsMsg_Destroy(msg);
}

static void lg_on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	struct lg_run *r = arg;

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&r->mu);
	if (r->async_errors++ == 0)
		fprintf(stderr, "loadgen: nats async error: %s\n", natsStatus_GetText(err));
	pthread_mutex_unlock(&r->mu);
}

static void lg__nats_fail(const char *what, natsStatus s)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, natsStatus_GetText(s));
	nats_PrintLastErrorStack(stderr);
}

static int lg_run_nats(struct lg_run *r)
{
	natsOptions *opts = NULL;
	natsSubscription *events = NULL, *acks = NULL;
	natsInbox *inbox = NULL;
	natsStatus s;
	int rc = -1;

	snprintf(r->stream_prefix, sizeof(r->stream_prefix), "%s.chat.stream.", r->o.prefix);
	snprintf(r->submit_subject, sizeof(r->submit_subject), "%s.chat.submit", r->o.prefix);
	snprintf(r->body_head, sizeof(r->body_head), "{\"request_id\":");
	struct buf tail;
	buf_init(&tail);
	buf_append_str(&tail, ",\"session_id\":\"s-bench\",\"user_id\":\"u-bench\","
			      "\"messages\":[{\"role\":\"user\",\"content\":");
	buf_append_json_str(&tail, r->o.message, strlen(r->o.message));
	buf_append_str(&tail, "}],\"memory\":{\"profile\":\"name: Bench\",\"facts\":[]}}");
	r->body_tail = tail.data;

	if ((s = natsOptions_Create(&opts)) != NATS_OK || (s = natsOptions_SetURL(opts, r->o.nats_url)) != NATS_OK ||
	    (s = natsOptions_SetAllowReconnect(opts, false)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(opts, 5000)) != NATS_OK ||
	    (s = natsOptions_SetIOBufSize(opts, 1 << 20)) != NATS_OK ||
	    /* A gateway wants its submit on the wire now: nats.c's flusher
	     * thread otherwise waits a millisecond to batch, which would count
	     * as dispatcher latency in the TTFT figures. */
	    (s = natsOptions_SetSendAsap(opts, true)) != NATS_OK ||
	    (s = natsOptions_SetErrorHandler(opts, lg_on_async_error, r)) != NATS_OK) {
		lg__nats_fail("options", s);
		goto out;
	}
	if ((s = natsConnection_Connect(&r->nc, opts)) != NATS_OK) {
		lg__nats_fail("connect", s);
		goto out;
	}
	char subj[300];
	snprintf(subj, sizeof(subj), "%s>", r->stream_prefix);
	/* No pending limit: a dropped event would look like a dispatcher bug. */
	if ((s = natsConnection_Subscribe(&events, r->nc, subj, lg_on_event, r)) != NATS_OK ||
	    (s = natsSubscription_SetPendingLimits(events, -1, -1)) != NATS_OK) {
		lg__nats_fail("subscribe", s);
		goto out;
	}
	if (r->o.acks) {
		if ((s = natsInbox_Create(&inbox)) != NATS_OK) {
			lg__nats_fail("inbox", s);
			goto out;
		}
		snprintf(r->inbox, sizeof(r->inbox), "%s", (const char *)inbox);
		snprintf(subj, sizeof(subj), "%s.*", r->inbox);
		if ((s = natsConnection_Subscribe(&acks, r->nc, subj, lg_on_ack, r)) != NATS_OK ||
		    (s = natsSubscription_SetPendingLimits(acks, -1, -1)) != NATS_OK) {
			lg__nats_fail("subscribe acks", s);
			goto out;
		}
	}
	if ((s = natsConnection_FlushTimeout(r->nc, 5000)) != NATS_OK) {
		lg__nats_fail("flush", s);
		goto out;
	}

	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)r->o.timeout_s;
	deadline.tv_nsec += (long)((r->o.timeout_s - (double)(time_t)r->o.timeout_s) * 1e9);
	if (deadline.tv_nsec >= 1000000000l) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000l;
	}

	pthread_mutex_lock(&r->mu);
	while (r->next < r->o.streams && r->next < r->o.requests)
		lg_nats_submit(r);
	while (r->ended < r->o.requests)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT)
			break;
	r->stop = true;
	pthread_mutex_unlock(&r->mu);
	rc = 0;
out:
	if (acks)
		natsSubscription_Unsubscribe(acks);
	if (events)
		natsSubscription_Unsubscribe(events);
	natsSubscription_Destroy(acks);
	natsSubscription_Destroy(events);
	natsConnection_Destroy(r->nc);
	natsOptions_Destroy(opts);
	natsInbox_Destroy(inbox);
	buf_free(&tail);
	r->body_tail = NULL;
	return rc;
}

/* ---- direct mode (the floor) ------------------------------------------ */

struct lg_stream {
	CURL *easy;
	long idx;
	struct buf line; /* a partial SSE line carried between writes */
	bool saw_done;
	struct lg_run *run;
};

struct lg_direct {
	CURLM *multi;
	int epfd;
	uint64_t timer_ns; /* when curl's timer fires (from its timer callback); 0: none */
};

static int lg_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct lg_direct *d = userp;
	struct epoll_event ev = { 0 };

	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
	ev.data.fd = s;
	if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
		epoll_ctl(d->epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int lg_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct lg_direct *d = userp;

	(void)multi;
	d->timer_ns = timeout_ms < 0 ? 0 : lg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	return 0;
}

static void lg_sse_line(struct lg_stream *st, const char *p, size_t n)
{
	struct lg_run *r = st->run;
	struct lg_req *q = &r->reqs[st->idx];

	if (n && p[n - 1] == '\r')
		n--;
	if (n < 6 || memcmp(p, "data: ", 6) != 0)
		return;
	p += 6;
	n -= 6;
	r->events++;
	if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
		if (st->saw_done)
			r->after_terminal++;
		st->saw_done = true;
		return;
	}
	const char *c = memmem(p, n, "\"content\":\"", 11);
	if (c && c + 11 < p + n && c[11] != '"')
		lg_token(r, q, lg_now_ns());
}

static size_t lg_on_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct lg_stream *st = arg;
	size_t len = size * nmemb;
	const char *p = data, *end = data + len, *nl;

	if (st->line.len) {
		nl = memchr(p, '\n', len);
		if (!nl) {
			buf_append(&st->line, p, len);
			return len;
		}
		buf_append(&st->line, p, (size_t)(nl - p));
		lg_sse_line(st, st->line.data, st->line.len);
		buf_reset(&st->line);
		p = nl + 1;
	}
	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p)))) {
		lg_sse_line(st, p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (p < end)
		buf_append(&st->line, p, (size_t)(end - p));
	return len;
}

static void lg_direct_submit(struct lg_run *r, struct lg_direct *d, struct lg_stream *st)
{
	st->idx = r->next++;
	st->saw_done = false;
	buf_reset(&st->line);
	struct lg_req *q = &r->reqs[st->idx];
	q->state = LG_INFLIGHT;
	q->submit_ns = lg_now_ns();
	if (!r->start_ns)
		r->start_ns = q->submit_ns;
	curl_multi_add_handle(d->multi, st->easy);
}

static void lg_direct_done(struct lg_run *r, struct lg_direct *d, CURLMsg *m)
{
	struct lg_stream *st;
	long status = 0;
	int code = -1;

	curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&st);
	curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(d->multi, m->easy_handle);
	if (m->data.result != CURLE_OK) {
		code = LG_CODE_TRANSPORT;
		if (r->errors[LG_CODE_TRANSPORT] == 0)
			fprintf(stderr, "loadgen: transfer b%ld: %s\n", st->idx, curl_easy_strerror(m->data.result));
	} else if (status != 200) {
		code = LG_CODE_HTTP_STATUS;
	} else if (!st->saw_done) {
		code = LG_CODE_MISSING_DONE;
	}
	lg_end(r, &r->reqs[st->idx], code, lg_now_ns());
	if (r->next < r->o.requests)
		lg_direct_submit(r, d, st);
}

static int lg_run_direct(struct lg_run *r)
{
	struct lg_direct d = { .timer_ns = 0 };
	struct curl_slist *hdrs = NULL;
	struct lg_stream *streams = NULL;
	long nstreams = r->o.streams < r->o.requests ? r->o.streams : r->o.requests;
	struct buf url, body;
	int rc = -1;

	buf_init(&url);
	buf_init(&body);
	buf_append_str(&url, r->o.direct);
	if (url.len >= 17 && strcmp(url.data + url.len - 17, "/chat/completions") == 0)
		;
	else
		buf_append_str(&url, url.len && url.data[url.len - 1] == '/' ? "chat/completions" : "/chat/completions");
	buf_printf(&body, "{\"model\":\"%s\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a bench.\"},"
			  "{\"role\":\"user\",\"content\":", r->o.model);
	buf_append_json_str(&body, r->o.message, strlen(r->o.message));
	buf_append_str(&body, "}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");

	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	d.multi = curl_multi_init();
	curl_multi_setopt(d.multi, CURLMOPT_SOCKETFUNCTION, lg_on_socket);
	curl_multi_setopt(d.multi, CURLMOPT_SOCKETDATA, &d);
	curl_multi_setopt(d.multi, CURLMOPT_TIMERFUNCTION, lg_on_timer);
	curl_multi_setopt(d.multi, CURLMOPT_TIMERDATA, &d);
	curl_multi_setopt(d.multi, CURLMOPT_MAXCONNECTS, nstreams + 16);
	curl_multi_setopt(d.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);

	streams = xcalloc((size_t)nstreams, sizeof(*streams));
	for (long i = 0; i < nstreams; i++) {
		struct lg_stream *st = &streams[i];
		st->run = r;
		buf_init(&st->line);
		st->easy = curl_easy_init();
		curl_easy_setopt(st->easy, CURLOPT_URL, url.data);
		curl_easy_setopt(st->easy, CURLOPT_POSTFIELDS, body.data);
		curl_easy_setopt(st->easy, CURLOPT_POSTFIELDSIZE, (long)body.len);
		curl_easy_setopt(st->easy, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(st->easy, CURLOPT_WRITEFUNCTION, lg_on_write);
		curl_easy_setopt(st->easy, CURLOPT_WRITEDATA, st);
		curl_easy_setopt(st->easy, CURLOPT_PRIVATE, st);
		curl_easy_setopt(st->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(st->easy, CURLOPT_CONNECTTIMEOUT_MS, 20000L);
	}

	uint64_t deadline = lg_now_ns() + (uint64_t)(r->o.timeout_s * 1e9);
	for (long i = 0; i < nstreams; i++)
		lg_direct_submit(r, &d, &streams[i]);

	struct epoll_event evs[256];
	int running = 0;
	while (r->ended < r->o.requests) {
		uint64_t now = lg_now_ns();
		if (now >= deadline)
			break;
		uint64_t until = d.timer_ns && d.timer_ns < deadline ? d.timer_ns : deadline;
		int wait_ms = until > now ? (int)((until - now + 999999ull) / 1000000ull) : 0;
		int n = epoll_wait(d.epfd, evs, (int)UTIL_ARRAY_LEN(evs), wait_ms);
		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			goto out;
		}
		/* Checked on every turn, not only when epoll is idle: under constant
		 * traffic a new transfer would otherwise wait for a quiet moment. */
		if (d.timer_ns && lg_now_ns() >= d.timer_ns) {
			d.timer_ns = 0;
			curl_multi_socket_action(d.multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		for (int i = 0; i < n; i++) {
			int flags = (evs[i].events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
				    (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
				    (evs[i].events & EPOLLERR ? CURL_CSELECT_ERR : 0);
			curl_multi_socket_action(d.multi, evs[i].data.fd, flags, &running);
		}
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(d.multi, &left)))
			if (m->msg == CURLMSG_DONE)
				lg_direct_done(r, &d, m);
	}
	rc = 0;
out:
	for (long i = 0; i < nstreams; i++) {
		curl_multi_remove_handle(d.multi, streams[i].easy);
		curl_easy_cleanup(streams[i].easy);
		buf_free(&streams[i].line);
	}
	free(streams);
	curl_multi_cleanup(d.multi);
	close(d.epfd);
	curl_slist_free_all(hdrs);
	buf_free(&url);
	buf_free(&body);
	return rc;
}

/* ---- results ---------------------------------------------------------- */

static int lg_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in ms. */
static double lg_pct_ms(const uint64_t *v, size_t n, double pct)
{
	if (!n)
		return 0;
	size_t rank = (size_t)(pct / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e6;
}

static int lg_report(struct lg_run *r)
{
	uint64_t *ttft = xmalloc(sizeof(*ttft) * (size_t)r->o.requests);
	size_t nt = 0;
	long missing = 0, no_first = 0, unsent = 0;

	for (long i = 0; i < r->o.requests; i++) {
		const struct lg_req *q = &r->reqs[i];
		if (q->state == LG_INFLIGHT) {
			missing++;
			no_first += !q->first_ns;
		} else if (q->state == LG_UNSENT) {
			unsent++;
		}
		if (q->first_ns)
			ttft[nt++] = q->first_ns - q->submit_ns;
	}
	qsort(ttft, nt, sizeof(*ttft), lg_cmp_u64);
	double wall = r->start_ns && r->last_end_ns > r->start_ns ? (double)(r->last_end_ns - r->start_ns) / 1e9 : 0;
	double p50 = lg_pct_ms(ttft, nt, 50), p99 = lg_pct_ms(ttft, nt, 99);
	double tps = wall > 0 ? (double)r->tokens / wall : 0;
	bool ok = r->ok == r->o.requests && !r->order_violations && !r->after_terminal && !r->bad_events &&
		  !r->async_errors;
	struct rusage ru;
	struct buf j;

	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		     (double)ru.ru_stime.tv_usec / 1e6;
	buf_init(&j);
	buf_append_str(&j, "{\"label\":");
	buf_append_json_str(&j, r->o.label, strlen(r->o.label));
	buf_printf(&j, ",\"mode\":\"%s\",\"streams\":%ld,\"requests\":%ld,\"ok_requests\":%ld,\"errors\":{",
		   r->o.direct ? "direct" : "nats", r->o.streams, r->o.requests, r->ok);
	bool first = true;
	for (size_t i = 0; i < LG_NCODES; i++) {
		if (!r->errors[i])
			continue;
		buf_printf(&j, "%s\"%s\":%ld", first ? "" : ",", lg_codes[i], r->errors[i]);
		first = false;
	}
	buf_printf(&j, "},\"missing_terminal\":%ld,\"missing_first_token\":%ld,\"unsent\":%ld,"
		       "\"order_violations\":%ld,\"after_terminal\":%ld,\"token_mismatch\":%ld,\"bad_events\":%ld,"
		       "\"rejected_acks\":%ld,\"no_responders\":%ld,\"async_errors\":%ld,\"events\":%llu,\"tokens\":%llu,"
		       "\"wall_s\":%.3f,\"tokens_per_s\":%.0f,\"ttft_p50_ms\":%.3f,\"ttft_p99_ms\":%.3f,"
		       "\"ttft_samples\":%zu,\"peak_active_streams\":%ld,\"loadgen_cpu_s\":%.3f,\"ok\":%s}",
		   missing, no_first, unsent, r->order_violations, r->after_terminal, r->token_mismatch,
		   r->bad_events, r->rejected_acks, r->no_responders, r->async_errors, (unsigned long long)r->events,
		   (unsigned long long)r->tokens, wall, tps, p50, p99, nt, r->peak_active, cpu, ok ? "true" : "false");
	if (r->o.json) {
		printf("%s\n", j.data);
	} else {
		printf("%s (%s): %ld/%ld requests ok, %llu tokens in %.3f s = %.0f tokens/s\n", r->o.label,
		       r->o.direct ? "direct" : "nats", r->ok, r->o.requests, (unsigned long long)r->tokens, wall, tps);
		printf("  TTFT p50 %.3f ms, p99 %.3f ms (%zu samples)\n", p50, p99, nt);
		printf("  %s\n", j.data);
	}
	fflush(stdout);
	buf_free(&j);
	free(ttft);
	return ok ? LG_EXIT_OK : LG_EXIT_FAIL;
}

/* ---- main ------------------------------------------------------------- */

static const char lg_usage[] =
	"Usage: loadgen [--nats URL] [--prefix P] [--streams C] [--requests N] [--timeout S]\n"
	"               [--direct BASE_URL] [--model NAME] [--expect-tokens T] [--message TEXT]\n"
	"               [--no-acks] [--validate] [--json] [--label NAME]\n"
	"Keeps C requests in flight until N are done and checks every stream.\n"
	"Exit 0 only when every request ended with done (and T tokens when given)\n"
	"and no stream broke the seq order or terminal rules.\n";

static bool lg_parse_long(const char *s, long min, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min)
		return false;
	*out = v;
	return true;
}

/* 10k streams want 10k sockets in direct mode. */
static void lg_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "nats", required_argument, NULL, 'n' },     { "prefix", required_argument, NULL, 'p' },
		{ "streams", required_argument, NULL, 'c' },  { "requests", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },  { "direct", required_argument, NULL, 'd' },
		{ "model", required_argument, NULL, 'm' },    { "expect-tokens", required_argument, NULL, 'e' },
		{ "message", required_argument, NULL, 'M' },  { "no-acks", no_argument, NULL, 'A' },
		{ "validate", no_argument, NULL, 'V' },	      { "json", no_argument, NULL, 'j' },
		{ "label", required_argument, NULL, 'l' },    { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lg_run *r = xcalloc(1, sizeof(*r));
	struct lg_opts *o = &r->o;
	int c, rc;

	*o = (struct lg_opts){
		.nats_url = "nats://127.0.0.1:4222",
		.prefix = "sundynix",
		.label = "bench",
		.message = "Hello, how are you today?",
		.model = "mock-model",
		.streams = 100,
		.requests = 1000,
		.expect_tokens = -1,
		.timeout_s = 60,
		.acks = true,
	};
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		bool good = true;
		switch (c) {
		case 'n': o->nats_url = optarg; break;
		case 'p': o->prefix = optarg; break;
		case 'c': good = lg_parse_long(optarg, 1, &o->streams); break;
		case 'r': good = lg_parse_long(optarg, 1, &o->requests); break;
		case 't': o->timeout_s = atof(optarg); good = o->timeout_s > 0; break;
		case 'd': o->direct = optarg; break;
		case 'm': o->model = optarg; break;
		case 'e': good = lg_parse_long(optarg, 0, &o->expect_tokens); break;
		case 'M': o->message = optarg; break;
		case 'A': o->acks = false; break;
		case 'V': o->validate = true; break;
		case 'j': o->json = true; break;
		case 'l': o->label = optarg; break;
		case 'h': fputs(lg_usage, stdout); free(r); return LG_EXIT_OK;
		default: good = false; break;
		}
		if (!good) {
			fprintf(stderr, "loadgen: bad option value\n%s", lg_usage);
			free(r);
			return LG_EXIT_USAGE;
		}
	}
	if (optind != argc || strlen(o->prefix) > 100) {
		fputs(lg_usage, stderr);
		free(r);
		return LG_EXIT_USAGE;
	}

	lg_raise_nofile();
	r->reqs = xcalloc((size_t)o->requests, sizeof(*r->reqs));
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);

	if (o->direct) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = lg_run_direct(r);
		curl_global_cleanup();
	} else {
		rc = lg_run_nats(r);
		nats_CloseAndWait(5000);
	}
	rc = rc < 0 ? LG_EXIT_FAIL : lg_report(r);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->reqs);
	free(r);
	return rc;
}
