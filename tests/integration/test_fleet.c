/* Integration: a fleet as docs/fleet.md runs it. Three dispatchers on a
 * three-node NATS cluster (every dispatcher given all three URLs), the mock
 * backend behind them, and a gateway (support/relay.h) that follows the
 * gateway checklist: admission (full dispatchers step out of the submit
 * queue group), a dispatcher killed (the keepalive rule finds its streams),
 * a NATS node killed (clients move, replays repair the gaps), a rolling
 * restart under load. stream.keepalive_ms is 500 here, so the rule's
 * 2 x keepalive is one second. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define KEEPALIVE_MS 500
#define FLEET_N 3
#define ACK_TIMEOUT_MS 2000

static struct h_nats_cluster *cluster;
static struct h_mock *mock;

static int fleet_bed_setup(void)
{
	cluster = h_nats_cluster_start(3);
	return 0;
}

static const struct h_bed bed = { .mocks = { { &mock, "mock-fleet" } }, .setup = fleet_bed_setup };

struct fleet {
	const char *prefix;
	char overrides[1024]; /* each dispatcher's config overrides, nats.servers included */
	struct h_daemon *d[FLEET_N];
	int node[FLEET_N]; /* the cluster node each dispatcher is connected to */
};

/* Starts the fleet on a fresh prefix with model served by the mock: a
 * control plane answers the dispatchers' startup request for it, so a
 * dispatcher started later (a restart) gets it too. */
static void fleet_up(struct fleet *f, const char *model, const char *overrides)
{
	h_nats_cluster_resume(cluster); /* after a test that failed with a node down */
	f->prefix = h_prefix();
	json_t *o = h_json_parse(overrides), *s = json_pack("{s:{s:s}}", "nats", "servers", cluster->urls);
	h_json_merge(o, s);
	char *text = json_dumps(o, JSON_COMPACT);
	snprintf(f->overrides, sizeof(f->overrides), "%s", text);
	free(text);
	json_decref(s);
	json_decref(o);

	struct h_client *ctl = h_client_connect(cluster->nodes[0], f->prefix);
	char *cfg = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"model\":\"%s\"}", mock->base_url, model);
	h_responder_start(ctl, cfg, 0);
	free(cfg);
	h_daemon_start_fleet(f->d, FLEET_N, f->prefix, f->overrides);
	char needle[128], name[192];
	snprintf(needle, sizeof(needle), "model config applied: model=%s ", model);
	for (int k = 0; k < FLEET_N; k++) {
		h_daemon_expect_log(f->d[k], needle, 5000);
		snprintf(name, sizeof(name), "sundynix-dispatcher %s", f->d[k]->name);
		f->node[k] = h_nats_cluster_node_of(cluster, name, 3000);
		h_log("%s is on node %d", f->d[k]->name, f->node[k]);
	}
}

static int fleet_owner(struct fleet *f, const char *instance)
{
	for (int k = 0; k < FLEET_N; k++)
		if (!strcmp(f->d[k]->name, instance))
			return k;
	return -1;
}

/* Submits n requests, at most window of them unanswered at once (1: one
 * after the other; n: a burst). Returns the index of the first. */
static size_t submit_n(struct h_relay *r, size_t n, size_t window)
{
	size_t first = h_relay_count(r);
	for (size_t i = 0; i < n; i++) {
		h_relay_submit(r, "hello", ACK_TIMEOUT_MS);
		h_relay_wait_acks(r, window - 1, 10000);
	}
	h_relay_wait_acks(r, 0, 10000);
	return first;
}

/* Fails unless every accepted stream of r ended complete with done and the
 * mock's full text of tokens. */
static void expect_all_done(struct h_relay *r, int tokens)
{
	char *want = h_mock_tokens(tokens);
	size_t bad = 0;
	for (size_t i = 0; i < h_relay_count(r); i++) {
		struct h_relay_info in = h_relay_info(r, i);
		if (in.ack != H_RELAY_ACCEPTED)
			continue;
		char *text = h_relay_text(r, i);
		if (!in.complete || strcmp(in.terminal_type, "done") || strcmp(text, want)) {
			if (bad++ < 3)
				h_relay_dump(r, i);
		}
		free(text);
	}
	free(want);
	assert_int_equal(bad, 0);
}

/* Accepted and busy answers of requests [from, to) per dispatcher. */
static void count_by_owner(struct h_relay *r, struct fleet *f, size_t from, size_t to, size_t accepted[],
			   size_t busy[])
{
	for (int k = 0; k < FLEET_N; k++)
		accepted[k] = busy[k] = 0;
	for (size_t i = from; i < to; i++) {
		struct h_relay_info in = h_relay_info(r, i);
		int k = fleet_owner(f, in.instance);
		if (k >= 0 && in.ack == H_RELAY_ACCEPTED)
			accepted[k]++;
		if (k >= 0 && in.ack == H_RELAY_REFUSED && !strcmp(in.code, "busy"))
			busy[k]++;
	}
	for (int k = 0; k < FLEET_N; k++)
		h_log("  %s: %zu accepted, %zu busy", f->d[k]->name, accepted[k], busy[k]);
}

/* Waits until every dispatcher that left the submit queue group rejoined
 * it, then a moment for the cluster to carry the subscriptions. */
static void fleet_wait_rejoined(struct fleet *f)
{
	for (int k = 0; k < FLEET_N; k++) {
		size_t left = h_daemon_log_count(f->d[k], "leaving the submit queue group");
		h_daemon_expect_log_count(f->d[k], "rejoining the submit queue group", left, 5000);
	}
	h_sleep_ms(100);
}

/* One round of admission: n submits at most window at a time to a fleet of
 * 3 x 50 whose streams outlast the submitting. Every submit is answered
 * within ACK_TIMEOUT_MS; nothing is accepted beyond a dispatcher's 50; a
 * busy only comes from a dispatcher that was full and left the group (a
 * submit NATS routed to it before the leave took effect); every accepted
 * stream completes; a busy refusal also ends its stream with a busy
 * event. Returns the relay for round-specific checks. */
static struct h_relay *admission_round(struct fleet *f, const char *tag, size_t n, size_t window)
{
	size_t acc[FLEET_N], busy[FLEET_N];
	char label[64];
	size_t leaves[FLEET_N];
	struct h_relay *r = h_relay_open(cluster->urls, f->prefix, tag, KEEPALIVE_MS);

	for (int k = 0; k < FLEET_N; k++)
		leaves[k] = h_daemon_log_count(f->d[k], "leaving the submit queue group");
	submit_n(r, n, window);
	snprintf(label, sizeof(label), "%zu submits, %zu at a time", n, window);
	h_relay_log_stats(r, label);
	struct h_relay_stats st = h_relay_stats(r);
	count_by_owner(r, f, 0, n, acc, busy);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.refused_other, 0);
	assert_int_equal(st.accepted + st.busy + st.no_responders, n);
	for (int k = 0; k < FLEET_N; k++) {
		assert_true(acc[k] <= 50);
		if (busy[k])
			h_daemon_expect_log_count(f->d[k], "leaving the submit queue group", leaves[k] + 1, 1000);
	}
	assert_true(h_relay_run_until_ended(r, 20000));
	h_relay_run_for(r, 200); /* the busy events follow their acks */
	expect_all_done(r, 20);
	for (size_t i = 0; i < n; i++) {
		struct h_relay_info in = h_relay_info(r, i);
		if (in.ack == H_RELAY_REFUSED) {
			assert_int_equal(in.held, 1);
			assert_string_equal(in.error_code, "busy");
		}
		if (in.ack == H_RELAY_NO_RESPONDERS)
			assert_int_equal(in.held, 0);
	}
	fleet_wait_rejoined(f);
	return r;
}

/* Issue #10: with room in the fleet, a full dispatcher steps out of the
 * submit queue group and nobody gets busy; with the fleet full, the rest
 * are refused at once. One after the other a submit can never race a leave
 * (the dispatcher leaves before it acks the request that filled it); in a
 * burst it can, and that busy is counted and retried. */
static void test_admission(void **state)
{
	(void)state;
	struct fleet f;
	size_t acc[FLEET_N], busy[FLEET_N];

	/* 1 s to the first token and 20 tokens 100 ms apart: every stream
	 * outlasts the submitting of a round. */
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":20,\"ttft_ms\":1000,\"inter_ms\":100}");
	fleet_up(&f, "m-adm", "{\"limits\":{\"max_inflight\":50},\"stream\":{\"keepalive_ms\":500}}");

	/* 140 of 150, one after the other: none busy, none without a responder. */
	struct h_relay *r = admission_round(&f, "seq140-", 140, 1);
	struct h_relay_stats st = h_relay_stats(r);
	assert_int_equal(st.accepted, 140);
	assert_int_equal(st.busy, 0);

	/* 140 of 150 in one burst: a busy only from the leave race; retried
	 * one after the other, every one finds room. */
	r = admission_round(&f, "burst140-", 140, 140);
	st = h_relay_stats(r);
	assert_int_equal(st.no_responders, 0);
	if (st.busy) {
		size_t first = submit_n(r, st.busy, 1);
		h_log("retried the %zu busy ones", st.busy);
		count_by_owner(r, &f, first, first + st.busy, acc, busy);
		assert_int_equal(acc[0] + acc[1] + acc[2], st.busy);
		assert_true(h_relay_run_until_ended(r, 20000));
		expect_all_done(r, 20);
		fleet_wait_rejoined(&f);
	}

	/* 200 of 150, one after the other: once all three are full, nobody
	 * is in the group and NATS answers no responders at once. */
	r = admission_round(&f, "seq200-", 200, 1);
	st = h_relay_stats(r);
	count_by_owner(r, &f, 0, 200, acc, busy);
	assert_int_equal(st.accepted, 150);
	assert_int_equal(st.busy, 0);
	assert_int_equal(st.no_responders, 50);

	/* 200 of 150 in one burst: the 50 beyond are refused, busy or no
	 * responders, all within ACK_TIMEOUT_MS. */
	r = admission_round(&f, "burst200-", 200, 200);
	st = h_relay_stats(r);
	assert_int_equal(st.accepted, 150);
	assert_int_equal(st.busy + st.no_responders, 50);
	for (int k = 0; k < FLEET_N; k++)
		h_daemon_stop_ok(f.d[k]);
}

/* Ticks r until every accepted stream holds at least n events. */
static void wait_all_streaming(struct h_relay *r, size_t n, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		size_t behind = 0;
		for (size_t i = 0; i < h_relay_count(r); i++) {
			struct h_relay_info in = h_relay_info(r, i);
			behind += in.ack == H_RELAY_ACCEPTED && in.held < n;
		}
		if (!behind)
			return;
		if (util_now_ms() >= end)
			fail_msg("%zu streams hold fewer than %zu events after %d ms", behind, n, timeout_ms);
		h_relay_run_for(r, 20);
	}
}

/* A dispatcher killed with streams in flight: the gateway rule (no event
 * for 2 x keepalive, then a replay request to the owner gets no responders)
 * finds every stream of the dead one within 2 x keepalive of the kill, plus
 * a margin; the other dispatchers' streams never notice. */
static void test_dispatcher_killed(void **state)
{
	(void)state;
	struct fleet f;
	size_t acc[FLEET_N], busy[FLEET_N];

	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":100}");
	fleet_up(&f, "m-kill", "{\"stream\":{\"keepalive_ms\":500}}");
	struct h_relay *r = h_relay_open(cluster->urls, f.prefix, "kill-", KEEPALIVE_MS);
	submit_n(r, 100, 10);
	assert_int_equal(h_relay_stats(r).accepted, 100);
	wait_all_streaming(r, 3, 10000);
	count_by_owner(r, &f, 0, 100, acc, busy);
	int victim = 0;
	for (int k = 1; k < FLEET_N; k++)
		if (acc[k] > acc[victim])
			victim = k;
	h_log("kill -9 %s with %zu streams", f.d[victim]->name, acc[victim]);
	unsigned long long killed = util_now_ms();
	h_proc_kill(f.d[victim]->proc);

	assert_true(h_relay_run_until_ended(r, 15000));
	h_relay_log_stats(r, "after the kill");
	char *want = h_mock_tokens(40);
	unsigned long long lo = ~0ull, hi = 0;
	size_t found = 0;
	for (size_t i = 0; i < 100; i++) {
		struct h_relay_info in = h_relay_info(r, i);
		char *text = h_relay_text(r, i);
		bool ok;
		if (fleet_owner(&f, in.instance) == victim) {
			unsigned long long t = in.lost_ms - killed;
			ok = in.lost && in.terminals == 0 && t <= 2 * KEEPALIVE_MS + 1000;
			found += in.lost;
			lo = t < lo ? t : lo;
			hi = t > hi ? t : hi;
		} else {
			ok = !in.lost && in.complete && !strcmp(in.terminal_type, "done") && !strcmp(text, want);
		}
		free(text);
		if (!ok)
			h_relay_dump(r, i);
		assert_true(ok);
	}
	free(want);
	h_log("dispatcher_lost for all %zu streams of the dead one, %llu..%llu ms after the kill "
	      "(keepalive %d ms); the other %zu streams completed",
	      found, lo, hi, KEEPALIVE_MS, 100 - found);
	assert_int_equal(found, acc[victim]);
	for (int k = 0; k < FLEET_N; k++)
		if (k != victim)
			h_daemon_stop_ok(f.d[k]);
}

/* The NATS node that the gateway and at least one dispatcher use is killed
 * with streams in flight. Clients move to the other nodes; the gateway asks
 * for replays after its reconnect and for every gap. Every stream ends:
 * complete with contiguous seq and the full text, or with exactly one
 * terminal event as its last; none hangs and none is taken for lost. */
static void test_node_killed(void **state)
{
	(void)state;
	struct fleet f;
	int on[3] = { 0, 0, 0 }, victim = 0;

	/* Tokens 20 ms apart: enough traffic that the moment a client moves
	 * to another node usually costs the gateway some events. */
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":200,\"ttft_ms\":0,\"inter_ms\":20}");
	fleet_up(&f, "m-node", "{\"nats\":{\"reconnect_wait_ms\":100},\"stream\":{\"keepalive_ms\":500}}");
	for (int k = 0; k < FLEET_N; k++)
		if (f.node[k] >= 0)
			on[f.node[k]]++;
	for (int i = 1; i < 3; i++)
		if (on[i] > on[victim])
			victim = i;
	struct h_relay *r = h_relay_open(cluster->nodes[victim]->url, f.prefix, "node-", KEEPALIVE_MS);
	assert_int_equal(h_nats_cluster_node_of(cluster, h_relay_name(r), 3000), victim);
	submit_n(r, 60, 10);
	assert_int_equal(h_relay_stats(r).accepted, 60);
	wait_all_streaming(r, 3, 10000);
	h_log("kill -9 node %d: the gateway and %d dispatchers are on it", victim, on[victim]);
	h_nats_cluster_kill(cluster, victim);

	bool ended = h_relay_run_until_ended(r, 20000);
	h_relay_run_for(r, 300); /* anything that still comes */
	h_relay_log_stats(r, "after the node died");
	char *want = h_mock_tokens(200);
	size_t complete = 0, other = 0, bad = 0;
	for (size_t i = 0; i < 60; i++) {
		struct h_relay_info in = h_relay_info(r, i);
		char *text = h_relay_text(r, i);
		if (in.lost) {
			h_relay_dump(r, i);
			bad++;
		} else if (in.complete && !strcmp(in.terminal_type, "done") && !strcmp(text, want)) {
			complete++;
		} else if (in.terminals == 1 && in.max_seq == in.terminal_seq) {
			h_log("%s ended otherwise: %s %s, %zu events held of %lld, gap given up %d", in.rid,
			      in.terminal_type, in.error_code, in.held, in.terminal_seq + 1, (int)in.gave_up);
			other++;
		} else {
			h_relay_dump(r, i);
			bad++;
		}
		free(text);
	}
	free(want);
	for (int k = 0; k < FLEET_N; k++) {
		char name[192];
		snprintf(name, sizeof(name), "sundynix-dispatcher %s", f.d[k]->name);
		h_log("%s: node %d, now node %d", f.d[k]->name, f.node[k], h_nats_cluster_node_of(cluster, name, 3000));
	}
	h_log("%zu streams complete, %zu ended otherwise with one terminal event, %zu neither", complete, other, bad);
	assert_true(ended);
	assert_int_equal(bad, 0);
	h_nats_cluster_resume(cluster);
	for (int k = 0; k < FLEET_N; k++)
		h_daemon_stop_ok(f.d[k]);
}

/* Keeps about n streams going: submits while fewer are in flight. */
static void keep_load(struct h_relay *r, size_t n)
{
	struct h_relay_stats st = h_relay_stats(r);
	for (size_t k = st.active + st.pending; k < n; k++)
		h_relay_submit(r, "hello", ACK_TIMEOUT_MS);
}

/* Rolling restart under load, as docs/fleet.md describes it: one dispatcher
 * at a time gets SIGTERM, drains and exits, and its replacement is ready
 * before the next goes. About 100 streams stay in flight all along, a new
 * one submitted as one finishes (or is refused). No submit goes unanswered
 * or finds nobody, and every accepted stream completes. A busy can only
 * come from a submit NATS routed to a dispatcher in the moment it started
 * draining (the drain answers those busy); it is counted, and the load
 * submits another in its place, as a gateway retries a busy. */
static void test_rolling_restart(void **state)
{
	(void)state;
	static const struct h_daemon_opts quiet = { .quiet = true };
	struct fleet f;
	enum { TERM, EXITING, STARTING } step = TERM;
	char stopped[FLEET_N][128] = { "" };
	unsigned long long end = util_now_ms() + 60000, next = util_now_ms() + 1000;

	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":20,\"ttft_ms\":0,\"inter_ms\":100}");
	fleet_up(&f, "m-roll", "{\"shutdown\":{\"grace_ms\":15000},\"stream\":{\"keepalive_ms\":500}}");
	struct h_relay *r = h_relay_open(cluster->urls, f.prefix, "roll-", KEEPALIVE_MS);
	for (int k = 0; k < FLEET_N;) {
		keep_load(r, 100);
		h_relay_tick(r);
		h_sleep_ms(20);
		if (util_now_ms() >= end)
			fail_msg("the rolling restart took more than 60 s (at dispatcher %d, step %d)", k, (int)step);
		if (step == TERM && util_now_ms() >= next) {
			struct h_relay_stats st = h_relay_stats(r);
			h_log("SIGTERM %s, %zu streams in flight", f.d[k]->name, st.active);
			snprintf(stopped[k], sizeof(stopped[k]), "%s", f.d[k]->name);
			h_daemon_signal(f.d[k], SIGTERM);
			step = EXITING;
		} else if (step == EXITING) {
			int code = h_daemon_wait_exit(f.d[k], 0);
			if (code < 0)
				continue;
			if (code != 0)
				h_daemon_dump_log(f.d[k]);
			assert_int_equal(code, 0);
			h_log("%s exited; starting its replacement", f.d[k]->name);
			f.d[k] = h_daemon_spawn(NULL, f.prefix, f.overrides, &quiet);
			step = STARTING;
		} else if (step == STARTING && h_daemon_log_contains(f.d[k], "dispatcher ready")) {
			h_log("%s ready", f.d[k]->name);
			k++;
			step = TERM;
			next = util_now_ms() + 500; /* the load spreads over the new one */
		}
	}
	h_relay_run_for(r, 1000);
	assert_true(h_relay_run_until_ended(r, 20000));
	h_relay_log_stats(r, "rolling restart");
	struct h_relay_stats st = h_relay_stats(r);
	assert_int_equal(st.no_responders, 0);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.refused_other, 0);
	assert_int_equal(st.accepted + st.busy, st.submitted);
	for (size_t i = 0; i < st.submitted; i++) {
		struct h_relay_info in = h_relay_info(r, i);
		if (in.ack != H_RELAY_REFUSED)
			continue;
		h_log("%s: busy from %s", in.rid, in.instance);
		bool draining = false;
		for (int k = 0; k < FLEET_N; k++)
			draining = draining || !strcmp(in.instance, stopped[k]);
		assert_true(draining);
	}
	expect_all_done(r, 20);
	for (int k = 0; k < FLEET_N; k++)
		h_daemon_stop_ok(f.d[k]);
}

/* A backend that takes 3 x keepalive to its first token: the stream gets
 * keepalives about keepalive_ms apart (never early, never 2 x keepalive
 * late, so the gateway rule never fires), counted in seq, then its tokens. */
static void test_keepalive_before_first_token(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_on_mock(cluster->nodes[0], "{\"stream\":{\"keepalive_ms\":500}}", &c, mock,
						     "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":1500,\"inter_ms\":50}", "m-ka", -1);
	struct h_relay *r = h_relay_open(cluster->nodes[0]->url, c->prefix, "ka-", KEEPALIVE_MS);

	size_t i = h_relay_submit(r, "wait for it", 5000);
	assert_true(h_relay_run_until_ended(r, 10000));
	struct h_relay_info in = h_relay_info(r, i);
	char *text = h_relay_text(r, i), *want = h_mock_tokens(5);
	if (!in.complete)
		h_relay_dump(r, i);
	assert_true(in.complete);
	assert_string_equal(in.terminal_type, "done");
	assert_string_equal(text, want);
	free(want);
	free(text);
	assert_int_equal(in.replays_asked, 0);

	/* Keepalives first, then the five tokens and done. */
	json_t *ev = h_relay_events(r, i);
	size_t n = json_array_size(ev), k = 0;
	unsigned long long prev = in.acked_ms;
	while (k < n && !strcmp(h_jstr(json_array_get(ev, k), "type"), "keepalive")) {
		unsigned long long t = h_relay_arrival(r, i, k), gap = t - prev;
		h_log("keepalive seq %zu arrived %llu ms after the %s", k, gap, k ? "previous one" : "ack");
		assert_true(gap >= KEEPALIVE_MS * 8 / 10);
		assert_true(gap < 2 * KEEPALIVE_MS);
		prev = t;
		k++;
	}
	unsigned long long first = h_relay_arrival(r, i, k);
	h_log("%zu keepalives; the first token (seq %zu) came %llu ms after the last one, %llu ms after the ack", k,
	      k, first - prev, first - in.acked_ms);
	assert_true(k >= 2 && k <= 3);
	assert_true(first - prev < 2 * KEEPALIVE_MS);
	assert_int_equal(n, k + 6);
	for (size_t j = k; j < k + 5; j++)
		assert_string_equal(h_jstr(json_array_get(ev, j), "type"), "token");
	json_decref(ev);
	assert_int_equal(in.keepalives, k);
	h_daemon_stop_ok(d);
}

/* Waits until the command has printed needle on stdout. */
static void wait_output(struct h_cmd *cmd, const char *needle, int timeout_ms)
{
	if (!h_wait_file(cmd->out_path, needle, timeout_ms)) {
		char *out = h_read_file(cmd->out_path, NULL), *err = h_read_file(cmd->err_path, NULL);
		fail_msg("%s: no \"%s\" on stdout within %d ms; stdout: %s\nstderr: %s", cmd->cmdline, needle,
			 timeout_ms, out ? out : "", err ? err : "");
	}
}

/* sundynixctl chat, its dispatcher killed mid-stream: silent for
 * 2 x --keepalive-ms, no answer to its replay request, so it reports
 * dispatcher_lost and exits 1, with --no-resume at once, without it after
 * a resubmit nobody takes. */
static void test_ctl_dispatcher_lost(void **state)
{
	(void)state;
	struct h_client *c;
	const char *const variants[][2] = { { "--no-resume", "dispatcher_lost" }, { NULL, "resubmitting" } };

	for (size_t v = 0; v < UTIL_ARRAY_LEN(variants); v++) {
		struct h_daemon *d = h_daemon_start_client(cluster->nodes[0], "{\"stream\":{\"keepalive_ms\":500}}", &c);
		h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":100,\"ttft_ms\":0,\"inter_ms\":100}");
		h_use_mock(c, d, mock, "m-lost", "", -1);
		struct h_cmd *ctl = h_ctl_start(cluster->nodes[0], c->prefix, "chat", "--keepalive-ms", "500", "--timeout", "60",
						"hello", variants[v][0], NULL);
		wait_output(ctl, "tok3 ", 10000);
		unsigned long long killed = util_now_ms();
		h_proc_kill(d->proc);
		int code = h_cmd_wait(ctl, 10000);
		unsigned long long took = util_now_ms() - killed;
		h_log("sundynixctl chat %s: exit %d %llu ms after the kill; stderr: %s", variants[v][0] ? variants[v][0] : "",
		      code, took, ctl->err);
		h_cmd_expect(ctl, 1);
		H_ASSERT_CONTAINS(ctl->err, "error: dispatcher_lost");
		H_ASSERT_CONTAINS(ctl->err, variants[v][1]);
		H_ASSERT_CONTAINS(ctl->out, "tok0 tok1 tok2 tok3 ");
		/* 2 x keepalive of silence, then at most the replay wait. */
		assert_true(took < 2 * KEEPALIVE_MS + 2000 + 2000);
		h_cmd_free(ctl);
	}
}

H_MAIN("integ_fleet", &bed, H_TEST(test_admission), H_TEST(test_dispatcher_killed), H_TEST(test_node_killed),
       H_TEST(test_rolling_restart), H_TEST(test_keepalive_before_first_token), H_TEST(test_ctl_dispatcher_lost))
