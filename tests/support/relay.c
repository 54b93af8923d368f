/* relay: see relay.h. nats.c's two delivery threads (the stream wildcard and
 * the inbox) and its reconnect thread touch the relay only under its mutex
 * (the reconnect count is atomic); the test thread ticks. Publishing happens
 * outside the lock: the tick collects what to send first. */
#include "relay.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"
#include "gateway.h"
#include "util.h"

/* After a replay answer, the events it sent may still be on the stream
 * subscription's thread: holes are judged this much later. */
#define H__RELAY_GRACE_MS 250
#define H__RELAY_TICK_MS 20

struct h__req {
	struct h_relay_info in;
	json_t *events;                 /* by seq; null where not held */
	unsigned long long *arrival;    /* by seq; 0 where not held */
	size_t cap;                     /* of arrival */
	long long max_live;             /* highest seq of a live (not replayed) event, -1 */
	size_t contig;                  /* seq 0..contig-1 are held */
	int ack_timeout_ms;
	/* The replay in progress. */
	bool asking, for_silence, answered, no_answer;
	unsigned attempt;
	unsigned tries; /* replays asked from asked_from in a row */
	size_t asked_from;
	unsigned long long asked_at, judge_at;
	int seen_reconnects;
};

struct h_relay {
	natsConnection *nc;
	natsSubscription *events_sub, *inbox_sub;
	char *prefix, *tag, *name, *inbox;
	int keepalive_ms;
	atomic_int reconnects;
	pthread_mutex_t mu;
	struct h__req **reqs; /* guarded by mu, as is everything in them */
	size_t n, cap;
	size_t strays, late_acks;
};

static struct h__req *h__relay_find(struct h_relay *r, const char *rid)
{
	size_t tl = strlen(r->tag);
	char *end;
	if (!rid || strncmp(rid, r->tag, tl) || !rid[tl])
		return NULL;
	unsigned long long i = strtoull(rid + tl, &end, 10);
	if (*end || i >= r->n)
		return NULL;
	return r->reqs[i];
}

static unsigned long long h__max(unsigned long long a, unsigned long long b)
{
	return a > b ? a : b;
}

static bool h__is_terminal(const char *type)
{
	return type && (!strcmp(type, "done") || !strcmp(type, "error"));
}

/* Places event e (owned) at seq in q; mu held. */
static void h__req_place(struct h__req *q, json_t *e, size_t seq, bool replay, unsigned long long now)
{
	const char *type = json_string_value(json_object_get(e, "type"));

	if (!replay) {
		if ((long long)seq <= q->max_live)
			q->in.anomalies++; /* a live event repeated or out of order */
		else
			q->max_live = (long long)seq;
	}
	if (seq < json_array_size(q->events) && !json_is_null(json_array_get(q->events, seq))) {
		if (replay)
			q->in.repeats_dropped++;
		json_decref(e);
		return;
	}
	while (json_array_size(q->events) <= seq)
		json_array_append_new(q->events, json_null());
	if (seq >= q->cap) {
		size_t cap = q->cap ? q->cap : 64;
		while (cap <= seq)
			cap *= 2;
		q->arrival = xrealloc(q->arrival, cap * sizeof(*q->arrival));
		memset(q->arrival + q->cap, 0, (cap - q->cap) * sizeof(*q->arrival));
		q->cap = cap;
	}
	q->arrival[seq] = now;
	if (replay)
		q->in.replay_filled++;
	q->in.held++;
	if ((long long)seq > q->in.max_seq)
		q->in.max_seq = (long long)seq;
	if (type && !strcmp(type, "keepalive"))
		q->in.keepalives++;
	if (h__is_terminal(type)) {
		if (q->in.terminals++ == 0) {
			q->in.terminal_seq = (long long)seq;
			snprintf(q->in.terminal_type, sizeof(q->in.terminal_type), "%s", type);
			const char *code = json_string_value(json_object_get(json_object_get(e, "error"), "code"));
			snprintf(q->in.error_code, sizeof(q->in.error_code), "%s", code ? code : "");
		}
	}
	json_array_set_new(q->events, seq, e);
	while (q->contig < json_array_size(q->events) && !json_is_null(json_array_get(q->events, q->contig)))
		q->contig++;
}

static void h__relay_event_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct h_relay *r = ud;
	(void)nc;
	(void)sub;
	unsigned long long now = util_now_ms();
	json_t *e = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	const char *rid = json_string_value(json_object_get(e, "request_id"));
	json_t *seq = json_object_get(e, "seq");

	pthread_mutex_lock(&r->mu);
	struct h__req *q = h__relay_find(r, rid);
	if (!q) {
		r->strays++;
		json_decref(e);
	} else {
		q->in.last_event_ms = now;
		if (!json_is_integer(seq) || json_integer_value(seq) < 0 || json_integer_value(seq) > 1000000) {
			q->in.anomalies++;
			json_decref(e);
		} else {
			h__req_place(q, e, (size_t)json_integer_value(seq), json_is_true(json_object_get(e, "replay")),
				     now);
		}
	}
	pthread_mutex_unlock(&r->mu);
	natsMsg_Destroy(msg);
}

/* An ack ("<inbox>.s.<i>") or a replay answer ("<inbox>.r.<i>.<attempt>"). */
static void h__relay_inbox_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct h_relay *r = ud;
	(void)nc;
	(void)sub;
	unsigned long long now = util_now_ms();
	const char *subj = natsMsg_GetSubject(msg) + strlen(r->inbox);
	bool none = natsMsg_IsNoResponders(msg);
	json_t *j = none ? NULL : json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	char kind = 0;
	unsigned long long i = 0, attempt = 0;
	int fields = sscanf(subj, ".%c.%llu.%llu", &kind, &i, &attempt);

	pthread_mutex_lock(&r->mu);
	struct h__req *q = fields >= 2 && i < r->n ? r->reqs[i] : NULL;
	if (q && kind == 's') {
		if (q->in.ack != H_RELAY_PENDING) {
			r->late_acks++;
		} else if (none) {
			q->in.ack = H_RELAY_NO_RESPONDERS;
		} else if (json_is_true(json_object_get(j, "accepted"))) {
			q->in.ack = H_RELAY_ACCEPTED;
		} else {
			const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
			q->in.ack = H_RELAY_REFUSED;
			snprintf(q->in.code, sizeof(q->in.code), "%s", code ? code : "?");
		}
		const char *inst = json_string_value(json_object_get(j, "instance"));
		if (inst && !q->in.instance[0])
			snprintf(q->in.instance, sizeof(q->in.instance), "%s", inst);
		if (!q->in.acked_ms)
			q->in.acked_ms = now;
	} else if (q && kind == 'r' && fields == 3 && q->asking && attempt == q->attempt) {
		/* Any answer means the owner is alive; no responders means
		 * nobody holds its replay subject. */
		if (none || !json_is_object(j))
			q->no_answer = true;
		else
			q->answered = true;
	} else {
		r->strays++;
	}
	pthread_mutex_unlock(&r->mu);
	json_decref(j);
	natsMsg_Destroy(msg);
}

static void h__relay_reconnected_cb(natsConnection *nc, void *ud)
{
	struct h_relay *r = ud;
	(void)nc;
	atomic_fetch_add(&r->reconnects, 1);
}

static void h__relay_cleanup(void *p)
{
	struct h_relay *r = p;
	h__forget(r);
	h__sub_stop(r->events_sub);
	h__sub_stop(r->inbox_sub);
	natsConnection_Destroy(r->nc);
	for (size_t i = 0; i < r->n; i++) {
		json_decref(r->reqs[i]->events);
		free(r->reqs[i]->arrival);
		free(r->reqs[i]);
	}
	free(r->reqs);
	pthread_mutex_destroy(&r->mu);
	free(r->prefix);
	free(r->tag);
	free(r->name);
	free(r->inbox);
	free(r);
}

struct h_relay *h_relay_open(const char *url, const char *prefix, const char *tag, int keepalive_ms)
{
	static int seq;
	natsOptions *o = NULL;
	natsInbox *inbox = NULL;
	struct h_relay *r = xcalloc(1, sizeof(*r));

	r->prefix = xstrdup(prefix);
	r->tag = xstrdup(tag);
	r->name = xasprintf("h-relay-%d-%d-%s", (int)getpid(), ++seq, tag);
	r->keepalive_ms = keepalive_ms;
	atomic_init(&r->reconnects, 0);
	pthread_mutex_init(&r->mu, NULL);
	assert_int_equal(natsOptions_Create(&o), NATS_OK);
	/* nats.c takes one URL per entry. */
	char *urls = xstrdup(url), *save = NULL;
	const char *servers[16];
	int ns = 0;
	for (char *u = strtok_r(urls, ",", &save); u && ns < 16; u = strtok_r(NULL, ",", &save))
		servers[ns++] = u;
	assert_int_equal(natsOptions_SetServers(o, servers, ns), NATS_OK);
	free(urls);
	assert_int_equal(natsOptions_SetName(o, r->name), NATS_OK);
	h_client_options_reconnect(o);
	assert_int_equal(natsOptions_SetReconnectedCB(o, h__relay_reconnected_cb, r), NATS_OK);
	natsStatus s = natsConnection_Connect(&r->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK)
		fail_msg("relay: connect to %s: %s", url, natsStatus_GetText(s));
	h__push(h__relay_cleanup, r);
	assert_int_equal(natsInbox_Create(&inbox), NATS_OK);
	r->inbox = xstrdup(inbox);
	natsInbox_Destroy(inbox);

	char *subj = xasprintf("%s.chat.stream.*", prefix), *isubj = xasprintf("%s.>", r->inbox);
	s = natsConnection_Subscribe(&r->events_sub, r->nc, subj, h__relay_event_cb, r);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&r->inbox_sub, r->nc, isubj, h__relay_inbox_cb, r);
	if (s != NATS_OK)
		fail_msg("relay: subscribe %s: %s", subj, natsStatus_GetText(s));
	/* Unlimited pending: the relay must never be the one dropping events. */
	natsSubscription_SetPendingLimits(r->events_sub, -1, -1);
	natsSubscription_SetPendingLimits(r->inbox_sub, -1, -1);
	free(subj);
	free(isubj);
	if ((s = natsConnection_FlushTimeout(r->nc, 5000)) != NATS_OK)
		fail_msg("relay: flush: %s", natsStatus_GetText(s));
	return r;
}

void h_relay_close(struct h_relay *r)
{
	h__relay_cleanup(r);
}

const char *h_relay_name(struct h_relay *r)
{
	return r->name;
}

size_t h_relay_submit(struct h_relay *r, const char *text, int ack_timeout_ms)
{
	struct h__req *q = xcalloc(1, sizeof(*q));
	q->events = json_array();
	q->max_live = -1;
	q->in.max_seq = -1;
	q->in.terminal_seq = -1;
	q->ack_timeout_ms = ack_timeout_ms;
	q->in.submitted_ms = util_now_ms();

	pthread_mutex_lock(&r->mu);
	size_t i = r->n;
	snprintf(q->in.rid, sizeof(q->in.rid), "%s%zu", r->tag, i);
	q->seen_reconnects = atomic_load(&r->reconnects);
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		r->reqs = xrealloc(r->reqs, r->cap * sizeof(*r->reqs));
	}
	r->reqs[r->n++] = q;
	pthread_mutex_unlock(&r->mu);

	json_t *req = json_pack("{s:s,s:[{s:s,s:s}]}", "request_id", q->in.rid, "messages", "role", "user", "content",
				text);
	char *body = json_dumps(req, JSON_COMPACT);
	char *subj = xasprintf("%s.chat.submit", r->prefix), *reply = xasprintf("%s.s.%zu", r->inbox, i);
	natsStatus s = natsConnection_PublishRequestString(r->nc, subj, reply, body);
	if (s != NATS_OK)
		fail_msg("relay: submit %s: %s", q->in.rid, natsStatus_GetText(s));
	free(reply);
	free(subj);
	free(body);
	json_decref(req);
	return i;
}

/* Whether accepted stream q is over; mu held. */
static bool h__req_ended(const struct h__req *q)
{
	return q->in.lost || (q->in.terminals > 0 && !q->asking &&
			      (q->contig > (size_t)q->in.terminal_seq || q->in.gave_up));
}

static bool h__req_complete(const struct h__req *q)
{
	return q->in.terminals == 1 && q->in.max_seq == q->in.terminal_seq &&
	       q->contig == (size_t)q->in.terminal_seq + 1 && q->in.anomalies == 0;
}

/* One step of the gateway rule for accepted stream q; mu held. Returns true
 * when a replay request from q->asked_from should go out. */
static bool h__req_rule(struct h_relay *r, struct h__req *q, unsigned long long now, int reconnects)
{
	bool holes = (long long)q->contig <= q->in.max_seq;

	if (q->asking) {
		if (q->answered) {
			q->asking = false;
			q->in.last_event_ms = now; /* the owner is alive */
			q->judge_at = now + H__RELAY_GRACE_MS;
		} else if (q->no_answer || now - q->asked_at >= H_RELAY_REPLAY_WAIT_MS) {
			q->asking = false;
			if (q->for_silence && !holes) {
				q->in.lost = true;
				q->in.lost_ms = now;
			} else if (holes && q->tries >= 3) {
				q->in.gave_up = true; /* nobody could fill the gap */
			} else {
				/* The owner may be reconnecting itself: ask again. */
				q->judge_at = now + H__RELAY_GRACE_MS;
			}
		}
		return false;
	}
	if (q->judge_at) {
		if (now < q->judge_at)
			return false;
		q->judge_at = 0;
		if (q->contig <= q->asked_from && holes && q->tries >= 3) {
			q->in.gave_up = true; /* answered three times, yet the hole stayed */
			return false;
		}
	}
	if (h__req_ended(q))
		return false;
	if (holes && !q->in.gave_up)
		q->for_silence = false;
	else if (q->seen_reconnects != reconnects)
		q->for_silence = false;
	else if (r->keepalive_ms > 0 && now - h__max(q->in.last_event_ms, q->in.acked_ms) >=
						2ull * (unsigned long long)r->keepalive_ms)
		q->for_silence = true;
	else
		return false;
	q->seen_reconnects = reconnects;
	q->asking = true;
	q->answered = q->no_answer = false;
	q->attempt++;
	q->tries = q->asked_from == q->contig ? q->tries + 1 : 1;
	q->asked_from = q->contig;
	q->asked_at = now;
	q->in.replays_asked++;
	return true;
}

void h_relay_tick(struct h_relay *r)
{
	struct ask {
		size_t i;
		unsigned attempt;
		size_t from;
		char rid[64], instance[72];
	} *asks = NULL;
	size_t nask = 0;
	unsigned long long now = util_now_ms();
	int reconnects = atomic_load(&r->reconnects);

	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++) {
		struct h__req *q = r->reqs[i];
		if (q->in.ack == H_RELAY_PENDING && now - q->in.submitted_ms >= (unsigned long long)q->ack_timeout_ms)
			q->in.ack = H_RELAY_TIMEOUT;
		if (q->in.ack != H_RELAY_ACCEPTED || !h__req_rule(r, q, now, reconnects))
			continue;
		asks = xrealloc(asks, (nask + 1) * sizeof(*asks));
		asks[nask] = (struct ask){ .i = i, .attempt = q->attempt, .from = q->asked_from };
		memcpy(asks[nask].rid, q->in.rid, sizeof(asks[nask].rid));
		memcpy(asks[nask].instance, q->in.instance, sizeof(asks[nask].instance));
		nask++;
	}
	pthread_mutex_unlock(&r->mu);

	for (size_t k = 0; k < nask; k++) {
		char *subj = xasprintf("%s.chat.replay.%s", r->prefix, asks[k].instance);
		char *reply = xasprintf("%s.r.%zu.%u", r->inbox, asks[k].i, asks[k].attempt);
		char *body = xasprintf("{\"request_id\":\"%s\",\"from_seq\":%zu}", asks[k].rid, asks[k].from);
		/* A failure (disconnected, buffer full) shows as no answer. */
		natsConnection_PublishRequestString(r->nc, subj, reply, body);
		free(body);
		free(reply);
		free(subj);
	}
	free(asks);
}

void h_relay_run_for(struct h_relay *r, int ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)ms;
	do {
		h_relay_tick(r);
		h_sleep_ms(H__RELAY_TICK_MS);
	} while (util_now_ms() < end);
}

static size_t h__relay_pending(struct h_relay *r)
{
	size_t n = 0;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++)
		n += r->reqs[i]->in.ack == H_RELAY_PENDING;
	pthread_mutex_unlock(&r->mu);
	return n;
}

void h_relay_wait_acks(struct h_relay *r, size_t max_pending, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		h_relay_tick(r);
		size_t n = h__relay_pending(r);
		if (n <= max_pending)
			return;
		if (util_now_ms() >= end)
			fail_msg("relay: %zu submits still unanswered after %d ms", n, timeout_ms);
		h_sleep_ms(1);
	}
}

bool h_relay_run_until_ended(struct h_relay *r, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		h_relay_tick(r);
		struct h_relay_stats st = h_relay_stats(r);
		if (st.pending == 0 && st.active == 0)
			return true;
		if (util_now_ms() >= end)
			return false;
		h_sleep_ms(H__RELAY_TICK_MS);
	}
}

size_t h_relay_count(struct h_relay *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->n;
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* mu held. */
static struct h_relay_info h__req_info(const struct h__req *q)
{
	struct h_relay_info in = q->in;
	in.ended = q->in.ack == H_RELAY_ACCEPTED && h__req_ended(q);
	in.complete = h__req_complete(q);
	return in;
}

struct h_relay_info h_relay_info(struct h_relay *r, size_t i)
{
	pthread_mutex_lock(&r->mu);
	if (i >= r->n) {
		pthread_mutex_unlock(&r->mu);
		fail_msg("relay: no request %zu (%zu submitted)", i, r->n);
	}
	struct h_relay_info in = h__req_info(r->reqs[i]);
	pthread_mutex_unlock(&r->mu);
	return in;
}

struct h_relay_stats h_relay_stats(struct h_relay *r)
{
	struct h_relay_stats st = { 0 };
	pthread_mutex_lock(&r->mu);
	st.submitted = r->n;
	st.strays = r->strays;
	st.late_acks = r->late_acks;
	for (size_t i = 0; i < r->n; i++) {
		struct h_relay_info in = h__req_info(r->reqs[i]);
		switch (in.ack) {
		case H_RELAY_PENDING: st.pending++; break;
		case H_RELAY_ACCEPTED: st.accepted++; break;
		case H_RELAY_REFUSED: *(strcmp(in.code, "busy") ? &st.refused_other : &st.busy) += 1; break;
		case H_RELAY_NO_RESPONDERS: st.no_responders++; break;
		case H_RELAY_TIMEOUT: st.timeouts++; break;
		}
		if (in.acked_ms && in.acked_ms - in.submitted_ms > st.max_ack_ms)
			st.max_ack_ms = in.acked_ms - in.submitted_ms;
		st.replays_asked += in.replays_asked;
		st.replay_filled += in.replay_filled;
		st.repeats_dropped += in.repeats_dropped;
		st.anomalies += in.anomalies;
		if (in.ack != H_RELAY_ACCEPTED)
			continue;
		if (!in.ended)
			st.active++;
		else if (in.lost)
			st.lost++;
		else if (!in.complete)
			st.incomplete++;
		if (in.complete) {
			st.complete++;
			*(strcmp(in.terminal_type, "done") ? &st.error : &st.done) += 1;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return st;
}

void h_relay_log_stats(struct h_relay *r, const char *label)
{
	struct h_relay_stats st = h_relay_stats(r);
	h_log("%s: %zu submitted: %zu accepted, %zu busy, %zu refused otherwise, %zu no responders, %zu timeouts "
	      "(%zu pending, %zu late acks, slowest ack %llu ms); streams: %zu complete (%zu done, %zu error), "
	      "%zu lost, %zu incomplete, %zu active; replays: %zu asked, %zu events filled, %zu repeats dropped; "
	      "%zu anomalies, %zu strays",
	      label, st.submitted, st.accepted, st.busy, st.refused_other, st.no_responders, st.timeouts, st.pending,
	      st.late_acks, st.max_ack_ms, st.complete, st.done, st.error, st.lost, st.incomplete, st.active,
	      st.replays_asked, st.replay_filled, st.repeats_dropped, st.anomalies, st.strays);
}

json_t *h_relay_events(struct h_relay *r, size_t i)
{
	pthread_mutex_lock(&r->mu);
	json_t *copy = i < r->n ? json_deep_copy(r->reqs[i]->events) : json_array();
	pthread_mutex_unlock(&r->mu);
	return copy;
}

unsigned long long h_relay_arrival(struct h_relay *r, size_t i, size_t seq)
{
	pthread_mutex_lock(&r->mu);
	unsigned long long t = i < r->n && seq < r->reqs[i]->cap ? r->reqs[i]->arrival[seq] : 0;
	pthread_mutex_unlock(&r->mu);
	return t;
}

char *h_relay_text(struct h_relay *r, size_t i)
{
	json_t *ev = h_relay_events(r, i), *e;
	struct buf b;
	size_t k;

	buf_init(&b);
	buf_append(&b, "", 0);
	json_array_foreach(ev, k, e)
	{
		json_t *d = json_object_get(e, "delta");
		const char *t = json_string_value(json_object_get(e, "type"));
		if (t && !strcmp(t, "token") && json_is_string(d))
			buf_append(&b, json_string_value(d), json_string_length(d));
	}
	json_decref(ev);
	return b.data;
}

void h_relay_dump(struct h_relay *r, size_t i)
{
	struct h_relay_info in = h_relay_info(r, i);
	json_t *ev = h_relay_events(r, i);
	char *d = json_dumps(ev, JSON_COMPACT);
	fprintf(stderr,
		"relay %s: ack %d (%s) instance %s, %zu held, max seq %lld, terminal %s at %lld (%zu terminals), "
		"%zu anomalies, %zu replays asked, gave up %d, lost %d\n  events: %.3000s\n",
		in.rid, (int)in.ack, in.code, in.instance, in.held, in.max_seq, in.terminal_type, in.terminal_seq,
		in.terminals, in.anomalies, in.replays_asked, (int)in.gave_up, (int)in.lost, d ? d : "");
	free(d);
	json_decref(ev);
}
