/* Integration: no token lost when NATS restarts (issue 13). A gateway that
 * reconnects later than the daemon misses what the daemon published in
 * between: core NATS delivers at most once. The gateway rule repairs it:
 * on a seq gap (or a missing terminal event) ask the stream's owner for a
 * replay from the first missing seq. Also replay within and after the
 * linger, past limits.replay_bytes, for an unknown id, and a flood of replay
 * requests that must not disturb other streams. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-replay" } } };

#define GW_MAX_STREAMS 256
#define GW_MAX_EVENTS 64

/* ---- a gateway that sees every stream of a prefix, and repairs gaps ---- */

struct gw_stream {
	char rid[32];
	char instance[80];
	bool have[GW_MAX_EVENTS];
	char *delta[GW_MAX_EVENTS]; /* token deltas by seq */
	char type[GW_MAX_EVENTS][12];
	int terminal;               /* seq of the terminal event, -1 before it */
	unsigned long long replayed; /* events that came again marked replay */
	unsigned long long dup_unmarked;
};

struct gw {
	natsConnection *nc;
	natsSubscription *sub;
	char prefix[64];
	pthread_mutex_t lock;
	struct gw_stream s[GW_MAX_STREAMS];
	int n;
};

static struct gw_stream *gw_find(struct gw *g, const char *rid)
{
	for (int i = 0; i < g->n; i++)
		if (!strcmp(g->s[i].rid, rid))
			return &g->s[i];
	return NULL;
}

/* Events marked replay seen so far on stream i (the delivery thread counts
 * them under the lock). */
static unsigned long long gw_replayed(struct gw *g, int i)
{
	pthread_mutex_lock(&g->lock);
	unsigned long long n = g->s[i].replayed;
	pthread_mutex_unlock(&g->lock);
	return n;
}

static void gw_on_event(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
	struct gw *g = ud;
	json_t *ev = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
	const char *rid = json_string_value(json_object_get(ev, "request_id"));
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_int_t seq = json_integer_value(json_object_get(ev, "seq"));

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&g->lock);
	struct gw_stream *s = rid ? gw_find(g, rid) : NULL;
	if (s && type && seq >= 0 && seq < GW_MAX_EVENTS) {
		if (json_is_true(json_object_get(ev, "replay")))
			s->replayed++;
		if (!s->have[seq]) {
			s->have[seq] = true;
			snprintf(s->type[seq], sizeof(s->type[seq]), "%s", type);
			if (!strcmp(type, "token"))
				s->delta[seq] = xstrdup(json_string_value(json_object_get(ev, "delta")));
			if (!strcmp(type, "done") || !strcmp(type, "error"))
				s->terminal = (int)seq;
		} else if (!json_is_true(json_object_get(ev, "replay"))) {
			s->dup_unmarked++;
		}
	}
	pthread_mutex_unlock(&g->lock);
	json_decref(ev);
	natsMsg_Destroy(m);
}

static void gw_cleanup(void *p)
{
	struct gw *g = p;
	h__forget(g);
	if (g->sub)
		h__sub_stop(g->sub);
	natsConnection_Destroy(g->nc);
	for (int i = 0; i < g->n; i++)
		for (int k = 0; k < GW_MAX_EVENTS; k++)
			free(g->s[i].delta[k]);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* reconnect_ms: how long this gateway waits before reconnecting. */
static struct gw *gw_open(const char *prefix, int reconnect_ms)
{
	struct gw *g = xcalloc(1, sizeof(*g));
	natsOptions *o = NULL;
	char subj[128];

	pthread_mutex_init(&g->lock, NULL);
	snprintf(g->prefix, sizeof(g->prefix), "%s", prefix);
	assert_int_equal(natsOptions_Create(&o), NATS_OK);
	assert_int_equal(natsOptions_SetURL(o, nats->url), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(o, reconnect_ms), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectJitter(o, 0, 0), NATS_OK);
	assert_int_equal(natsConnection_Connect(&g->nc, o), NATS_OK);
	natsOptions_Destroy(o);
	h__push(gw_cleanup, g);
	snprintf(subj, sizeof(subj), "%s.chat.stream.*", prefix);
	assert_int_equal(natsConnection_Subscribe(&g->sub, g->nc, subj, gw_on_event, g), NATS_OK);
	assert_int_equal(natsSubscription_SetPendingLimits(g->sub, -1, -1), NATS_OK);
	assert_int_equal(natsConnection_Flush(g->nc), NATS_OK);
	return g;
}

static void gw_submit(struct gw *g, const char *rid)
{
	char subj[128], body[256];
	natsMsg *reply = NULL;

	assert_true(g->n < GW_MAX_STREAMS);
	pthread_mutex_lock(&g->lock);
	struct gw_stream *s = &g->s[g->n++];
	snprintf(s->rid, sizeof(s->rid), "%s", rid);
	s->terminal = -1;
	pthread_mutex_unlock(&g->lock);
	snprintf(subj, sizeof(subj), "%s.chat.submit", g->prefix);
	snprintf(body, sizeof(body), "{\"request_id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"go\"}]}", rid);
	assert_int_equal(natsConnection_Request(&reply, g->nc, subj, body, (int)strlen(body), 5000), NATS_OK);
	json_t *ack = h_json_parse(natsMsg_GetData(reply));
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	snprintf(s->instance, sizeof(s->instance), "%s", h_jstr(ack, "instance"));
	json_decref(ack);
	natsMsg_Destroy(reply);
}

/* The first seq a stream lacks (below its terminal event), or -1 when it is
 * whole. A stream without its terminal event lacks what follows its last. */
static int gw_first_missing(struct gw *g, struct gw_stream *s)
{
	int missing = -1;

	pthread_mutex_lock(&g->lock);
	int end = s->terminal >= 0 ? s->terminal : GW_MAX_EVENTS;
	for (int k = 0; k < end; k++)
		if (!s->have[k]) {
			missing = k;
			break;
		}
	pthread_mutex_unlock(&g->lock);
	return missing;
}

static int gw_count_missing(struct gw *g, int *streams)
{
	int total = 0;

	*streams = 0;
	pthread_mutex_lock(&g->lock);
	for (int i = 0; i < g->n; i++) {
		struct gw_stream *s = &g->s[i];
		int lost = 0;
		for (int k = 0; k < (s->terminal >= 0 ? s->terminal : 41); k++)
			lost += !s->have[k];
		lost += s->terminal < 0;
		total += lost;
		*streams += lost > 0;
	}
	pthread_mutex_unlock(&g->lock);
	return total;
}

/* Asks the owner to replay from seq; returns its answer (caller owns). */
static json_t *gw_replay(struct gw *g, const char *rid, const char *instance, int from)
{
	char subj[160], body[160];
	natsMsg *reply = NULL;

	snprintf(subj, sizeof(subj), "%s.chat.replay.%s", g->prefix, instance);
	snprintf(body, sizeof(body), "{\"request_id\":\"%s\",\"from_seq\":%d}", rid, from);
	natsStatus st = natsConnection_Request(&reply, g->nc, subj, body, (int)strlen(body), 5000);
	if (st != NATS_OK)
		fail_msg("replay request for %s: %s", rid, natsStatus_GetText(st));
	json_t *ans = h_json_parse(natsMsg_GetData(reply));
	natsMsg_Destroy(reply);
	return ans;
}

/* The gateway rule: every stream with a hole asks for a replay from it. */
static int gw_repair(struct gw *g)
{
	int asked = 0;

	for (int i = 0; i < g->n; i++) {
		struct gw_stream *s = &g->s[i];
		int from = gw_first_missing(g, s);
		if (from < 0)
			continue;
		json_t *ans = gw_replay(g, s->rid, s->instance, from);
		assert_true(json_is_true(json_object_get(ans, "ok")));
		json_decref(ans);
		asked++;
	}
	/* The replayed events precede each answer on one connection. */
	assert_int_equal(natsConnection_Flush(g->nc), NATS_OK);
	return asked;
}

/* A daemon (overrides may be NULL) serving 40-token answers from the mock,
 * a client and a gateway on its prefix, and stream rid run to its end. */
static struct gw *gw_one_stream(const char *overrides, const char *rid, struct h_daemon **d, struct h_client **c)
{
	const char *prefix = h_prefix();

	*d = h_daemon_start(nats, prefix, overrides);
	*c = h_client_connect(nats, prefix);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":0}");
	h_use_mock(*c, *d, mock, "m-replay", "", -1);
	struct gw *g = gw_open(prefix, 50);
	gw_submit(g, rid);
	for (int i = 0; i < 100 && gw_first_missing(g, &g->s[0]) != -1; i++)
		h_sleep_ms(50);
	assert_int_equal(g->s[0].terminal, 40);
	return g;
}

/* ---- tests ---- */

/* nats-server SIGKILLed and restarted five times under 200 streams: the
 * gateway (reconnecting after 700 ms, the daemon after 50 ms) misses events;
 * its replay requests fill every hole. */
static void test_nats_kills_under_load(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix,
					    "{\"nats\":{\"reconnect_wait_ms\":50},"
					    "\"stream\":{\"replay_linger_ms\":120000}}");
	struct h_client *c = h_client_connect(nats, prefix);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":100}");
	h_use_mock(c, d, mock, "m-replay", "", -1);
	h_client_close(c);

	struct gw *g = gw_open(prefix, 700);
	char rid[32];
	for (int i = 0; i < 200; i++) {
		snprintf(rid, sizeof(rid), "r-kill-%d", i);
		gw_submit(g, rid);
	}
	h_log("200 streams submitted");
	for (int k = 0; k < 5; k++) {
		h_sleep_ms(400);
		h_nats_kill(nats);
		h_sleep_ms(100);
		h_nats_resume(nats);
		h_log("nats-server killed and back (%d of 5)", k + 1);
	}
	/* Every backend answer is out; give the last publishes time to land. */
	assert_true(h_mock_wait_stat(mock, "completed", 200, 60000) >= 200);
	h_sleep_ms(1500);

	int streams, missing = gw_count_missing(g, &streams);
	h_log("before repair: %d events missing in %d of 200 streams", missing, streams);
	/* The loss is real: without replays the gateway has holes. */
	assert_true(missing > 0);

	for (int round = 0; round < 5 && gw_count_missing(g, &streams); round++) {
		int asked = gw_repair(g);
		h_sleep_ms(300);
		h_log("repair round %d: %d replay requests, %d events still missing", round + 1, asked,
		      gw_count_missing(g, &streams));
	}
	assert_int_equal(gw_count_missing(g, &streams), 0);

	char *want = h_mock_tokens(40);
	unsigned long long replayed = 0;
	pthread_mutex_lock(&g->lock);
	for (int i = 0; i < g->n; i++) {
		struct gw_stream *s = &g->s[i];
		struct buf text;
		buf_init(&text);
		assert_int_equal(s->terminal, 40);
		assert_string_equal(s->type[40], "done");
		for (int k = 0; k < 40; k++)
			if (s->delta[k])
				buf_append_str(&text, s->delta[k]);
		if (strcmp(text.data ? text.data : "", want))
			fail_msg("stream %s: text \"%s\", want \"%s\"", s->rid, text.data, want);
		assert_int_equal(s->dup_unmarked, 0);
		replayed += s->replayed;
		buf_free(&text);
	}
	pthread_mutex_unlock(&g->lock);
	free(want);
	h_log("after repair: every stream whole, %llu events came again as replays", replayed);
	h_daemon_stop_ok(d);
}

static void test_replay_linger_bounds_and_unknown(void **state)
{
	(void)state;
	struct h_daemon *d;
	struct h_client *c;
	struct gw *g = gw_one_stream("{\"stream\":{\"replay_linger_ms\":1500},\"limits\":{\"replay_bytes\":400}}",
				     "r-linger", &d, &c);

	/* Within the linger, from a seq still kept: the rest, terminal included. */
	json_t *ans = gw_replay(g, "r-linger", g->s[0].instance, 38);
	assert_true(json_is_true(json_object_get(ans, "ok")));
	assert_int_equal(h_jint(ans, "first_seq"), 38);
	assert_int_equal(h_jint(ans, "next_seq"), 41);
	json_decref(ans);
	assert_int_equal(natsConnection_Flush(g->nc), NATS_OK);
	for (int i = 0; i < 40 && gw_replayed(g, 0) < 3; i++)
		h_sleep_ms(25);
	assert_int_equal(gw_replayed(g, 0), 3);

	/* Past limits.replay_bytes the oldest are gone: a clear error, and what
	 * is kept. */
	ans = gw_replay(g, "r-linger", g->s[0].instance, 0);
	assert_false(json_is_true(json_object_get(ans, "ok")));
	assert_string_equal(h_jstr(ans, "error.code"), "replay_truncated");
	assert_true(h_jint(ans, "first_seq") > 0);
	json_decref(ans);

	/* An id this dispatcher never had. */
	ans = gw_replay(g, "r-never", g->s[0].instance, 0);
	assert_string_equal(h_jstr(ans, "error.code"), "unknown_request");
	json_decref(ans);

	/* After the linger: gone, and said so. */
	h_sleep_ms(2000);
	ans = gw_replay(g, "r-linger", g->s[0].instance, 0);
	assert_string_equal(h_jstr(ans, "error.code"), "unknown_request");
	json_decref(ans);
	h_client_close(c);
	h_daemon_stop_ok(d);
}

/* 1,000 replay requests for one stream while another streams: the other
 * one still gets every event, in order. */
static void test_replay_flood(void **state)
{
	(void)state;
	struct h_daemon *d;
	struct h_client *c;
	struct gw *g = gw_one_stream(NULL, "r-flooded", &d, &c);

	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":50}");
	struct h_stream *other = h_stream_submit(c, "r-other", "keep going");
	char subj[160], body[128];
	snprintf(subj, sizeof(subj), "%s.chat.replay.%s", g->prefix, g->s[0].instance);
	snprintf(body, sizeof(body), "{\"request_id\":\"r-flooded\",\"from_seq\":0}");
	for (int i = 0; i < 1000; i++)
		assert_int_equal(natsConnection_PublishRequestString(c->nc, subj, "_INBOX.flood", body), NATS_OK);
	h_flush(c);
	h_stream_done(other, 20000);
	assert_int_equal(h_stream_count(other), 41);
	h_stream_expect_mock_tokens(other, 40);
	/* Each replay sent the whole flooded stream again. */
	for (int i = 0; i < 200 && gw_replayed(g, 0) < 41000; i++)
		h_sleep_ms(50);
	h_log("the flooded stream's events came again %llu times", gw_replayed(g, 0));
	assert_int_equal(gw_replayed(g, 0), 41000);
	h_daemon_stop_ok(d);
}

/* sundynixctl chat is the reference gateway: across two nats-server kills
 * (it reconnects after 250 ms, the daemon after 50 ms) it repairs its gaps
 * and shows the exact answer, with no warning. */
static void test_ctl_repairs_gaps(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, "{\"nats\":{\"reconnect_wait_ms\":50}}");
	struct h_client *c = h_client_connect(nats, prefix);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":60}");
	h_use_mock(c, d, mock, "m-ctl", "", -1);
	h_client_close(c);
	struct h_cmd *ctl = h_ctl_start(nats, prefix, "chat", "--timeout", "60", "hello", NULL);
	h_sleep_ms(600);
	for (int k = 0; k < 2; k++) {
		h_nats_kill(nats);
		h_sleep_ms(100);
		h_nats_resume(nats);
		h_sleep_ms(500);
	}
	assert_int_equal(h_cmd_wait(ctl, 60000), 0);
	char *want = h_mock_tokens(40);
	assert_true(strncmp(ctl->out, want, strlen(want)) == 0);
	assert_string_equal(ctl->out + strlen(want), "\n");
	free(want);
	H_ASSERT_NOT_CONTAINS(ctl->err, "events lost");
	H_ASSERT_NOT_CONTAINS(ctl->err, "anomalies");
	H_ASSERT_CONTAINS(ctl->err, "[done: finish=stop");
	/* It did have to ask. */
	assert_true(h_daemon_log_count(d, "replayed events") > 0);
	h_log("sundynixctl asked for %zu replays", h_daemon_log_count(d, "replayed events"));
	h_daemon_stop_ok(d);
}

H_MAIN("integ_replay", &bed, H_TEST(test_nats_kills_under_load), H_TEST(test_replay_linger_bounds_and_unknown),
       H_TEST(test_replay_flood), H_TEST(test_ctl_repairs_gaps))
