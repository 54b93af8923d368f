/* Unit tests for request: the lifecycle and the retry policy, with fakes for
 * the bus, the upstream and the stub (struct request_ops). No NATS, no curl,
 * no backend: every event the request publishes is decoded and checked, and
 * every path must end with exactly one terminal event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "contract.h"
#include "log.h"
#include "modelcfg.h"
#include "pool.h"
#include "request.h"

#define MAX_EVENTS 128
#define MAX_ATTEMPTS 32

/* One upstream attempt or stub run the request started. */
struct fake_source {
	bool stub;
	char base_url[128];
	long long total_ms;
	char body[2048];
	bool continuation;
	const struct upstream_cbs *cbs;
	void *cb_ud;
	bool cancelled;
};

struct fake {
	uint64_t now;
	struct {
		char subject[160];
		char data[1024];
	} pub[MAX_EVENTS];
	int npub;
	struct fake_source src[MAX_ATTEMPTS];
	int nsrc;
	bool refuse_start; /* upstream_start returns NULL */
	int idle_calls;
	int admission_calls;
	bool admission_open;

	struct config cfg;
	struct contract_subjects subj;
	struct modelcfg_store models;
	struct pool *pool;
	struct request_ops ops;
	struct requests *rq;
};

static uint64_t fake_now(void *ud)
{
	return ((struct fake *)ud)->now;
}

static void fake_publish(void *ud, const char *subject, const char *data, size_t len)
{
	struct fake *f = ud;

	assert_true(f->npub < MAX_EVENTS);
	assert_true(len < sizeof(f->pub[0].data));
	snprintf(f->pub[f->npub].subject, sizeof(f->pub[0].subject), "%s", subject);
	memcpy(f->pub[f->npub].data, data, len);
	f->pub[f->npub].data[len] = '\0';
	f->npub++;
}

static struct fake_source *fake_add(struct fake *f, const struct upstream_cbs *cbs, void *cb_ud)
{
	assert_true(f->nsrc < MAX_ATTEMPTS);
	struct fake_source *s = &f->src[f->nsrc++];
	memset(s, 0, sizeof(*s));
	s->cbs = cbs;
	s->cb_ud = cb_ud;
	return s;
}

static struct upstream *fake_upstream_start(void *ud, struct upstream_params *p, const struct upstream_cbs *cbs,
					    void *cb_ud)
{
	struct fake *f = ud;

	if (f->refuse_start)
		return NULL;
	struct fake_source *s = fake_add(f, cbs, cb_ud);
	snprintf(s->base_url, sizeof(s->base_url), "%s", p->base_url);
	s->total_ms = p->total_ms;
	assert_non_null(p->body);
	assert_true(p->body->len < sizeof(s->body));
	memcpy(s->body, p->body->data, p->body->len + 1);
	s->continuation = p->continuation;
	return (struct upstream *)s;
}

static void fake_upstream_cancel(void *ud, struct upstream *u)
{
	(void)ud;
	((struct fake_source *)u)->cancelled = true;
}

static struct stub *fake_stub_start(void *ud, char *text, long long ttft_ms, long long inter_ms,
				    const struct upstream_cbs *cbs, void *cb_ud)
{
	(void)ttft_ms;
	(void)inter_ms;
	free(text);
	struct fake_source *s = fake_add(ud, cbs, cb_ud);
	s->stub = true;
	return (struct stub *)s;
}

static void fake_stub_cancel(void *ud, struct stub *st)
{
	(void)ud;
	((struct fake_source *)st)->cancelled = true;
}

static void fake_admission(void *ud, bool open)
{
	struct fake *f = ud;

	f->admission_calls++;
	f->admission_open = open;
}

static void fake_on_idle(void *ud)
{
	((struct fake *)ud)->idle_calls++;
}

static const char TWO_REPLICAS[] =
	"{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a/v1\"},{\"base_url\":\"http://b/v1\"}]}";

/* model: a ModelConfig, or NULL for the stub. */
static struct fake *fake_new(const char *model)
{
	struct fake *f = calloc(1, sizeof(*f));
	char err[128];

	assert_non_null(f);
	config_defaults(&f->cfg);
	f->cfg.pool_max_attempts = 3;
	f->cfg.timeouts_total_ms = 10000;
	f->cfg.stream_keepalive_ms = 0; /* the keepalive tests turn them on */
	free(f->cfg.instance_id);
	f->cfg.instance_id = strdup("inst-1");
	contract_subjects_init(&f->subj, "t");
	modelcfg_store_init(&f->models);
	if (model) {
		struct modelcfg *m = modelcfg_parse(model, strlen(model), err, sizeof(err));
		assert_non_null(m);
		assert_int_equal(modelcfg_store_apply(&f->models, m), MODELCFG_APPLIED);
	}
	f->pool = pool_new(3);
	f->now = 1000;
	f->ops = (struct request_ops){ fake_now,	    fake_publish,     fake_upstream_start, fake_upstream_cancel,
				       fake_stub_start, fake_stub_cancel, fake_admission,  f };
	f->rq = requests_new(&f->ops, &f->subj, &f->models, f->pool, &f->cfg, NULL);
	return f;
}

/* Every request must have ended: one terminal event each, checked here. */
static void fake_free(struct fake *f)
{
	assert_int_equal(requests_inflight(f->rq), 0);
	requests_free(f->rq);
	pool_free(f->pool);
	modelcfg_store_free(&f->models);
	contract_subjects_free(&f->subj);
	config_free(&f->cfg);
	free(f);
}

static void submit(struct fake *f, const char *rid)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"request_id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		 rid);
	requests_submit(f->rq, body, strlen(body), "reply.1");
}

static void delta(struct fake_source *s, const char *text)
{
	s->cbs->delta(s->cb_ud, CONTRACT_TOKEN, text, strlen(text));
}

static void end_ok(struct fake_source *s)
{
	struct upstream_result r = { .code = CONTRACT_OK, .finish_reason = "stop", .got_token = true };
	s->cbs->end(s->cb_ud, &r);
}

static void end_err(struct fake_source *s, enum contract_code code, bool retryable, bool got_token)
{
	struct upstream_result r = { .code = code, .retryable = retryable, .got_token = got_token,
				     .message = "it broke" };
	s->cbs->end(s->cb_ud, &r);
}

/* The replica dies mid-stream (reset, drop, idle). */
static void end_broken(struct fake_source *s)
{
	struct upstream_result r = { .code = CONTRACT_UPSTREAM_PROTOCOL, .got_token = true, .broken = true,
				     .message = "stream from the backend broke off" };
	s->cbs->end(s->cb_ud, &r);
}

static void end_ok_usage(struct fake_source *s, long long completion)
{
	struct upstream_result r = { .code = CONTRACT_OK, .finish_reason = "stop", .got_token = true,
				     .has_usage = true, .usage = { 10, completion, 10 + completion } };
	s->cbs->end(s->cb_ud, &r);
}

/* The events published on rid's stream, decoded; checks seq is contiguous
 * from 0 and that exactly one terminal event ends them. Returns the count. */
static int stream_of(struct fake *f, const char *rid, struct contract_event *ev, int max)
{
	char subject[160], err[128];
	int n = 0, terminal = 0;

	snprintf(subject, sizeof(subject), "t.chat.stream.%s", rid);
	for (int i = 0; i < f->npub; i++) {
		if (strcmp(f->pub[i].subject, subject))
			continue;
		assert_true(n < max);
		assert_int_equal(contract_decode_event(f->pub[i].data, strlen(f->pub[i].data), &ev[n], err, sizeof(err)),
				 0);
		assert_string_equal(ev[n].request_id, rid);
		assert_int_equal(ev[n].seq, n);
		assert_int_equal(terminal, 0); /* nothing after the terminal event */
		if (ev[n].type == CONTRACT_EV_DONE || ev[n].type == CONTRACT_EV_ERROR)
			terminal++;
		n++;
	}
	assert_int_equal(terminal, 1);
	return n;
}

static void events_free(struct contract_event *ev, int n)
{
	for (int i = 0; i < n; i++)
		contract_event_free(&ev[i]);
}

/* The ack on the reply subject for the i-th publish. */
static void assert_ack(struct fake *f, int i, bool accepted, const char *code)
{
	struct contract_ack ack;

	assert_string_equal(f->pub[i].subject, "reply.1");
	assert_int_equal(contract_decode_ack(f->pub[i].data, strlen(f->pub[i].data), &ack), 0);
	assert_int_equal(ack.accepted, accepted);
	assert_string_equal(ack.code, code);
}

static long long int_field(const struct contract_event *ev, const char *key)
{
	return json_integer_value(json_object_get(ev->root, key));
}

/* ---- the retry policy, as a pure function ---- */

static void test_may_retry_table(void **state)
{
	const struct request_retry_facts base = {
		.code = CONTRACT_UPSTREAM_UNAVAILABLE, .retryable = true, .deltas = 0, .attempts = 1,
		.max_attempts = 3, .tried = 1, .nendpoints = 2, .elapsed_ms = 10, .total_ms = 1000,
	};
	struct request_retry_facts f;

	(void)state;
	assert_true(request_may_retry(&base));
	f = base, f.code = CONTRACT_OK;
	assert_false(request_may_retry(&f));
	f = base, f.retryable = false;
	assert_false(request_may_retry(&f));
	f = base, f.deltas = 1;
	assert_false(request_may_retry(&f));
	f = base, f.attempts = 3;
	assert_false(request_may_retry(&f));
	f = base, f.tried = 2;
	assert_false(request_may_retry(&f));
	f = base, f.elapsed_ms = 1000;
	assert_false(request_may_retry(&f));
	f = base, f.elapsed_ms = 999;
	assert_true(request_may_retry(&f));
}

/* ---- the lifecycle ---- */

static void test_done_on_first_attempt(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	assert_ack(f, 0, true, "");
	assert_int_equal(f->nsrc, 1);
	delta(&f->src[0], "Hel");
	delta(&f->src[0], "lo");
	end_ok(&f->src[0]);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 3);
	assert_string_equal(ev[0].delta, "Hel");
	assert_int_equal(ev[2].type, CONTRACT_EV_DONE);
	assert_int_equal(int_field(&ev[2], "attempts"), 1);
	events_free(ev, n);
	fake_free(f);
}

static void test_retry_before_first_token(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	end_err(&f->src[0], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	assert_int_equal(f->nsrc, 2);
	assert_string_not_equal(f->src[0].base_url, f->src[1].base_url);
	delta(&f->src[1], "ok");
	end_ok(&f->src[1]);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 2);
	assert_int_equal(ev[1].type, CONTRACT_EV_DONE);
	assert_int_equal(int_field(&ev[1], "attempts"), 2);
	assert_string_equal(json_string_value(json_object_get(ev[1].root, "endpoint")), f->src[1].base_url);
	events_free(ev, n);
	fake_free(f);
}

static void test_no_retry_after_first_token(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	delta(&f->src[0], "partial");
	end_err(&f->src[0], CONTRACT_UPSTREAM_PROTOCOL, false, true);
	assert_int_equal(f->nsrc, 1);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 2);
	assert_int_equal(ev[1].type, CONTRACT_EV_ERROR);
	assert_string_equal(ev[1].error_code, "upstream_protocol");
	events_free(ev, n);
	fake_free(f);
}

static void test_4xx_not_retried(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	end_err(&f->src[0], CONTRACT_UPSTREAM_HTTP, false, false); /* a 400: upstream says not retryable */
	assert_int_equal(f->nsrc, 1);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].error_code, "upstream_http");
	assert_int_equal(int_field(&ev[0], "attempts"), 1);
	events_free(ev, n);
	fake_free(f);
}

static void test_retries_bounded(void **state)
{
	struct fake *f = fake_new("{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a\"},{\"base_url\":\"http://b\"},"
				  "{\"base_url\":\"http://c\"},{\"base_url\":\"http://d\"}]}");
	struct contract_event ev[8];

	(void)state;
	f->cfg.pool_max_attempts = 3;
	submit(f, "r1");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(f->nsrc, i + 1);
		end_err(&f->src[i], CONTRACT_UPSTREAM_TIMEOUT, true, false);
	}
	assert_int_equal(f->nsrc, 3); /* max_attempts, though a fourth replica is untried */
	int n = stream_of(f, "r1", ev, 8);
	assert_string_equal(ev[n - 1].error_code, "upstream_timeout");
	assert_int_equal(int_field(&ev[n - 1], "attempts"), 3);
	events_free(ev, n);
	fake_free(f);
}

static void test_deadline_stops_retries(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	assert_int_equal(f->src[0].total_ms, 10000);
	f->now += 10000; /* the whole budget spent on the first attempt */
	end_err(&f->src[0], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	assert_int_equal(f->nsrc, 1);
	int n = stream_of(f, "r1", ev, 8);
	assert_string_equal(ev[0].error_code, "upstream_unavailable");
	events_free(ev, n);
	fake_free(f);
}

static void test_retry_gets_remaining_deadline(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);

	(void)state;
	submit(f, "r1");
	f->now += 4000;
	end_err(&f->src[0], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	assert_int_equal(f->nsrc, 2);
	assert_int_equal(f->src[1].total_ms, 6000);
	end_ok(&f->src[1]);
	fake_free(f);
}

static void test_cancel_in_every_state(void **state)
{
	struct contract_event ev[8];

	(void)state;
	/* While the first attempt waits for its first token. */
	struct fake *f = fake_new(TWO_REPLICAS);
	submit(f, "r1");
	requests_cancel(f->rq, "{\"request_id\":\"r1\"}", 19);
	assert_true(f->src[0].cancelled);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].error_code, "cancelled");
	events_free(ev, n);
	fake_free(f);

	/* While streaming. */
	f = fake_new(TWO_REPLICAS);
	submit(f, "r2");
	delta(&f->src[0], "a");
	requests_cancel(f->rq, "{\"request_id\":\"r2\"}", 19);
	requests_cancel(f->rq, "{\"request_id\":\"r2\"}", 19); /* again: unknown now, ignored */
	assert_true(f->src[0].cancelled);
	n = stream_of(f, "r2", ev, 8);
	assert_int_equal(n, 2);
	assert_string_equal(ev[1].error_code, "cancelled");
	events_free(ev, n);
	fake_free(f);

	/* While a retry runs. */
	f = fake_new(TWO_REPLICAS);
	submit(f, "r3");
	end_err(&f->src[0], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	requests_cancel(f->rq, "{\"request_id\":\"r3\"}", 19);
	assert_false(f->src[0].cancelled); /* it had ended by itself */
	assert_true(f->src[1].cancelled);
	n = stream_of(f, "r3", ev, 8);
	assert_int_equal(n, 1);
	events_free(ev, n);
	fake_free(f);

	/* The stub. */
	f = fake_new(NULL);
	submit(f, "r4");
	assert_true(f->src[0].stub);
	delta(&f->src[0], "H");
	requests_cancel(f->rq, "{\"request_id\":\"r4\"}", 19);
	assert_true(f->src[0].cancelled);
	n = stream_of(f, "r4", ev, 8);
	assert_int_equal(n, 2);
	assert_string_equal(ev[1].error_code, "cancelled");
	events_free(ev, n);
	fake_free(f);
}

static void test_stub_done(void **state)
{
	struct fake *f = fake_new(NULL);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	delta(&f->src[0], "Hi");
	end_ok(&f->src[0]);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 2);
	assert_string_equal(ev[1].model, "stub");
	assert_null(json_object_get(ev[1].root, "attempts")); /* the stub has no route */
	events_free(ev, n);
	fake_free(f);
}

static void test_start_failure_is_internal(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	f->refuse_start = true;
	submit(f, "r1");
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].error_code, "internal");
	events_free(ev, n);
	fake_free(f);
}

static void test_refusals(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	f->cfg.limits_max_inflight = 1;
	submit(f, "r1");
	submit(f, "r1"); /* duplicate in flight: refused, and r1's stream untouched */
	assert_ack(f, 1, false, "bad_request");
	submit(f, "r2"); /* over capacity */
	assert_ack(f, 2, false, "busy");
	int n = stream_of(f, "r2", ev, 8);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].error_code, "busy");
	events_free(ev, n);
	const char *bad = "{\"request_id\":\"r3\",\"messages\":[]}";
	requests_submit(f->rq, bad, strlen(bad), "reply.1");
	assert_ack(f, 4, false, "bad_request");
	n = stream_of(f, "r3", ev, 8);
	assert_string_equal(ev[0].error_code, "bad_request");
	events_free(ev, n);
	end_ok(&f->src[0]);
	n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 1);
	events_free(ev, n);
	fake_free(f);
}

static void test_end_all_and_drain(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	submit(f, "r2");
	delta(&f->src[1], "x");
	requests_drain(f->rq, fake_on_idle, f);
	assert_int_equal(f->idle_calls, 0);
	submit(f, "r3"); /* draining: busy */
	assert_ack(f, f->npub - 2, false, "busy");
	requests_end_all(f->rq, CONTRACT_SHUTTING_DOWN, "bye");
	assert_int_equal(f->idle_calls, 1);
	assert_true(f->src[0].cancelled && f->src[1].cancelled);
	const char *rids[] = { "r1", "r2" };
	for (int i = 0; i < 2; i++) {
		int n = stream_of(f, rids[i], ev, 8);
		assert_string_equal(ev[n - 1].error_code, "shutting_down");
		events_free(ev, n);
	}
	fake_free(f);
}

static void test_drain_when_idle(void **state)
{
	struct fake *f = fake_new(NULL);

	(void)state;
	requests_drain(f->rq, fake_on_idle, f);
	assert_int_equal(f->idle_calls, 1);
	fake_free(f);
}

/* ---- keepalives, replay and the linger ---- */

static void test_ack_names_instance(void **state)
{
	struct fake *f = fake_new(NULL);
	struct contract_ack ack;

	(void)state;
	submit(f, "r1");
	assert_int_equal(contract_decode_ack(f->pub[0].data, strlen(f->pub[0].data), &ack), 0);
	assert_string_equal(ack.instance, "inst-1");
	end_ok(&f->src[0]);
	fake_free(f);
}

static void test_keepalive_when_silent(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[16];

	(void)state;
	f->cfg.stream_keepalive_ms = 1000;
	submit(f, "r1");
	submit(f, "r2");
	f->now += 999;
	requests_tick(f->rq);
	int before = f->npub;
	delta(&f->src[1], "x"); /* r2 speaks: only r1 is due */
	f->now += 1;
	requests_tick(f->rq);
	assert_int_equal(f->npub, before + 2); /* r2's token, r1's keepalive */
	f->now += 500;
	requests_tick(f->rq); /* nobody is due: r1 just had its keepalive, r2 its token */
	assert_int_equal(f->npub, before + 2);
	f->now += 500;
	requests_tick(f->rq); /* both silent for 1000 ms now */
	assert_int_equal(f->npub, before + 4);
	/* A retry under way keeps the keepalives coming; they are not deltas. */
	end_err(&f->src[0], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	assert_int_equal(f->nsrc, 3);
	delta(&f->src[2], "late");
	end_ok(&f->src[2]);
	end_ok(&f->src[1]);
	int n = stream_of(f, "r1", ev, 16);
	assert_int_equal(n, 4);
	assert_int_equal(ev[0].type, CONTRACT_EV_KEEPALIVE);
	assert_int_equal(ev[1].type, CONTRACT_EV_KEEPALIVE);
	assert_string_equal(ev[2].delta, "late");
	assert_int_equal(int_field(&ev[3], "attempts"), 2);
	events_free(ev, n);
	n = stream_of(f, "r2", ev, 16);
	assert_int_equal(n, 3);
	events_free(ev, n);
	fake_free(f);
}

/* The replayed events of rid (after publish index from), decoded. */
static int replayed(struct fake *f, int from, const char *rid, struct contract_event *ev, int max)
{
	char subject[160], err[128];
	int n = 0;

	snprintf(subject, sizeof(subject), "t.chat.stream.%s", rid);
	for (int i = from; i < f->npub; i++) {
		if (strcmp(f->pub[i].subject, subject))
			continue;
		assert_true(n < max);
		assert_int_equal(contract_decode_event(f->pub[i].data, strlen(f->pub[i].data), &ev[n], err, sizeof(err)), 0);
		assert_true(ev[n].replay);
		n++;
	}
	return n;
}

static void replay(struct fake *f, const char *body)
{
	requests_replay(f->rq, body, strlen(body), "reply.2");
}

static struct contract_replay_answer last_answer(struct fake *f)
{
	struct contract_replay_answer a;

	assert_string_equal(f->pub[f->npub - 1].subject, "reply.2");
	assert_int_equal(contract_decode_replay_answer(f->pub[f->npub - 1].data, strlen(f->pub[f->npub - 1].data), &a), 0);
	return a;
}

static void test_replay_live_and_after_end(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[16];
	struct contract_replay_answer a;

	(void)state;
	f->cfg.stream_replay_linger_ms = 30000;
	submit(f, "r1");
	delta(&f->src[0], "a");
	delta(&f->src[0], "b");
	delta(&f->src[0], "c");
	int mark = f->npub;
	replay(f, "{\"request_id\":\"r1\",\"from_seq\":1}");
	int n = replayed(f, mark, "r1", ev, 16);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].seq, 1);
	assert_string_equal(ev[0].delta, "b");
	assert_string_equal(ev[1].delta, "c");
	events_free(ev, n);
	a = last_answer(f);
	assert_true(a.ok);
	assert_int_equal(a.first_seq, 1);
	assert_int_equal(a.next_seq, 3);

	end_ok(&f->src[0]);
	assert_int_equal(requests_inflight(f->rq), 0);
	/* Within the linger: the terminal event comes again too. */
	f->now += 29999;
	requests_tick(f->rq);
	mark = f->npub;
	replay(f, "{\"request_id\":\"r1\",\"from_seq\":2}");
	n = replayed(f, mark, "r1", ev, 16);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].delta, "c");
	assert_int_equal(ev[1].type, CONTRACT_EV_DONE);
	assert_int_equal(int_field(&ev[1], "attempts"), 1);
	events_free(ev, n);
	/* After it: a clear error. */
	f->now += 1;
	requests_tick(f->rq);
	mark = f->npub;
	replay(f, "{\"request_id\":\"r1\",\"from_seq\":0}");
	assert_int_equal(f->npub, mark + 1);
	a = last_answer(f);
	assert_false(a.ok);
	assert_string_equal(a.code, "unknown_request");
	fake_free(f);
}

static void test_replay_refusals(void **state)
{
	struct fake *f = fake_new(NULL);
	struct contract_replay_answer a;

	(void)state;
	replay(f, "{\"request_id\":\"nope\",\"from_seq\":0}");
	a = last_answer(f);
	assert_false(a.ok);
	assert_string_equal(a.code, "unknown_request");
	replay(f, "{\"request_id\":\"r.1\"}");
	assert_string_equal(last_answer(f).code, "bad_request");
	replay(f, "{\"request_id\":\"r1\",\"from_seq\":-1}");
	assert_string_equal(last_answer(f).code, "bad_request");
	replay(f, "not json");
	assert_string_equal(last_answer(f).code, "bad_request");
	int before = f->npub;
	requests_replay(f->rq, "{\"request_id\":\"x\"}", 18, NULL); /* no reply subject: nothing */
	assert_int_equal(f->npub, before);
	fake_free(f);
}

static void test_replay_truncated(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[64];
	char text[32];

	(void)state;
	f->cfg.limits_replay_bytes = 200;
	submit(f, "r1");
	for (int i = 0; i < 40; i++) {
		snprintf(text, sizeof(text), "tok%02d", i);
		delta(&f->src[0], text);
	}
	int mark = f->npub;
	replay(f, "{\"request_id\":\"r1\",\"from_seq\":0}");
	struct contract_replay_answer a = last_answer(f);
	assert_false(a.ok);
	assert_string_equal(a.code, "replay_truncated");
	assert_true(a.first_seq > 0);
	assert_int_equal(a.next_seq, 40);
	int n = replayed(f, mark, "r1", ev, 64);
	assert_int_equal(n, 40 - (int)a.first_seq);
	snprintf(text, sizeof(text), "tok%02d", (int)a.first_seq);
	assert_string_equal(ev[0].delta, text);
	events_free(ev, n);
	end_ok(&f->src[0]);
	fake_free(f);
}

static void test_resubmit_replaces_lingering(void **state)
{
	struct fake *f = fake_new(NULL);
	struct contract_event ev[8];

	(void)state;
	f->cfg.stream_replay_linger_ms = 30000;
	submit(f, "r1");
	end_ok(&f->src[0]);
	submit(f, "r1"); /* the same id again, after its end: a new stream */
	assert_int_equal(requests_inflight(f->rq), 1);
	end_ok(&f->src[1]);
	int mark = f->npub;
	replay(f, "{\"request_id\":\"r1\",\"from_seq\":0}");
	int n = replayed(f, mark, "r1", ev, 8);
	assert_int_equal(n, 1); /* the second stream's done only */
	events_free(ev, n);
	fake_free(f);
}

/* ---- admission ---- */

static void test_admission_hysteresis(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	char rid[16];

	(void)state;
	f->cfg.limits_max_inflight = 10;
	f->cfg.limits_rejoin_below_pct = 70;
	for (int i = 0; i < 9; i++) {
		snprintf(rid, sizeof(rid), "r%d", i);
		submit(f, rid);
	}
	assert_int_equal(f->admission_calls, 0);
	submit(f, "r9"); /* the tenth: full */
	assert_int_equal(f->admission_calls, 1);
	assert_false(f->admission_open);
	submit(f, "r10"); /* routed here before the leave took effect: busy */
	assert_ack(f, f->npub - 2, false, "busy");
	/* 9 and 8 in flight: above the low mark (70% of 10), stay out. */
	end_ok(&f->src[0]);
	end_ok(&f->src[1]);
	assert_int_equal(f->admission_calls, 1);
	f->cfg.limits_rejoin_below_pct = 80; /* a reload moves the mark to 8 */
	requests_check_admission(f->rq);
	assert_int_equal(f->admission_calls, 2);
	assert_true(f->admission_open);
	for (int i = 2; i < 10; i++)
		end_ok(&f->src[i]);
	assert_int_equal(f->admission_calls, 2); /* no flapping on the way down */
	fake_free(f);
}

static void test_admission_endpoint_caps(void **state)
{
	struct fake *f = fake_new("{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a\",\"max_inflight\":2},"
				  "{\"base_url\":\"http://b\",\"max_inflight\":1}]}");

	(void)state;
	submit(f, "r1");
	submit(f, "r2");
	assert_int_equal(f->admission_calls, 0);
	submit(f, "r3"); /* 2 + 1: every endpoint at its cap */
	assert_int_equal(f->admission_calls, 1);
	assert_false(f->admission_open);
	int a = 0, b = 0;
	for (int i = 0; i < 3; i++)
		*(strcmp(f->src[i].base_url, "http://a") ? &b : &a) += 1;
	assert_int_equal(a, 2); /* the pool never put a third on a */
	assert_int_equal(b, 1);
	submit(f, "r4");
	assert_ack(f, f->npub - 2, false, "busy");
	for (int i = 0; i < 3; i++)
		end_ok(&f->src[i]);
	assert_true(f->admission_open);
	fake_free(f);
}

static void test_no_admission_calls_while_draining(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);

	(void)state;
	f->cfg.limits_max_inflight = 1;
	submit(f, "r1");
	assert_int_equal(f->admission_calls, 1);
	requests_drain(f->rq, fake_on_idle, f);
	end_ok(&f->src[0]);
	assert_int_equal(f->admission_calls, 1); /* shutting down: it left for good */
	assert_int_equal(f->idle_calls, 1);
	fake_free(f);
}

/* ---- failover: continue a broken stream on another replica ---- */

static const char VLLM_PAIR[] = "{\"provider\":\"vllm\",\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a/v1\"},"
				"{\"base_url\":\"http://b/v1\"},{\"base_url\":\"http://c/v1\"}]}";

static void test_may_resume_table(void **state)
{
	const struct request_resume_facts base = {
		.code = CONTRACT_UPSTREAM_PROTOCOL, .broken = true, .resumable = true, .complete = true,
		.attempts = 1, .max_attempts = 3, .tried = 1, .nendpoints = 2, .elapsed_ms = 5, .total_ms = 100,
	};
	struct request_resume_facts f;

	(void)state;
	assert_true(request_may_resume(&base));
	f = base, f.code = CONTRACT_OK;
	assert_false(request_may_resume(&f));
	f = base, f.broken = false;
	assert_false(request_may_resume(&f));
	f = base, f.resumable = false;
	assert_false(request_may_resume(&f));
	f = base, f.complete = false;
	assert_false(request_may_resume(&f));
	f = base, f.attempts = 3;
	assert_false(request_may_resume(&f));
	f = base, f.tried = 2;
	assert_false(request_may_resume(&f));
	f = base, f.elapsed_ms = 100;
	assert_false(request_may_resume(&f));
}

static void test_failover_continues(void **state)
{
	struct fake *f = fake_new(VLLM_PAIR);
	struct contract_event ev[16];
	const char *body = "{\"request_id\":\"r1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			   "\"params\":{\"max_tokens\":50}}";

	(void)state;
	requests_submit(f->rq, body, strlen(body), "reply.1");
	f->src[0].cbs->delta(f->src[0].cb_ud, CONTRACT_REASONING, "hmm", 3);
	delta(&f->src[0], "Hel");
	delta(&f->src[0], "lo, ");
	end_broken(&f->src[0]);
	assert_int_equal(f->nsrc, 2);
	assert_true(f->src[1].continuation);
	assert_string_not_equal(f->src[1].base_url, f->src[0].base_url);
	json_t *b = json_loads(f->src[1].body, 0, NULL);
	assert_non_null(b);
	assert_true(json_is_true(json_object_get(b, "continue_final_message")));
	assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 47); /* 50 - 3 deltas */
	json_t *msgs = json_object_get(b, "messages");
	json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "role")), "assistant");
	assert_string_equal(json_string_value(json_object_get(last, "content")), "Hello, ");
	assert_string_equal(json_string_value(json_object_get(last, "reasoning_content")), "hmm");
	json_decref(b);
	/* It may break again before its first token: a retry, still continuing. */
	end_err(&f->src[1], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	assert_int_equal(f->nsrc, 3);
	assert_true(f->src[2].continuation);
	delta(&f->src[2], "world");
	end_ok_usage(&f->src[2], 1);
	int n = stream_of(f, "r1", ev, 16);
	assert_int_equal(n, 5); /* seq 0..4, contiguous: checked by stream_of */
	assert_string_equal(ev[3].delta, "world");
	assert_int_equal(ev[4].type, CONTRACT_EV_DONE);
	assert_int_equal(int_field(&ev[4], "attempts"), 3);
	assert_int_equal(int_field(&ev[4], "resumed"), 1);
	assert_string_equal(json_string_value(json_object_get(ev[4].root, "endpoint")), f->src[2].base_url);
	/* 1 from the last attempt, 3 deltas estimated for the broken one. */
	assert_int_equal(ev[4].usage.completion_tokens, 4);
	events_free(ev, n);
	fake_free(f);
}

static void test_no_failover_cases(void **state)
{
	struct contract_event ev[8];
	int n;

	(void)state;
	/* A provider that cannot continue: today's error. */
	struct fake *f = fake_new(TWO_REPLICAS);
	submit(f, "r1");
	delta(&f->src[0], "x");
	end_broken(&f->src[0]);
	assert_int_equal(f->nsrc, 1);
	n = stream_of(f, "r1", ev, 8);
	assert_string_equal(ev[n - 1].error_code, "upstream_protocol");
	events_free(ev, n);
	fake_free(f);
	/* pool.resume false. */
	f = fake_new(VLLM_PAIR);
	f->cfg.pool_resume = 0;
	submit(f, "r1");
	delta(&f->src[0], "x");
	end_broken(&f->src[0]);
	assert_int_equal(f->nsrc, 1);
	fake_free(f);
	/* A failure that is not a dying replica (an error the backend sent). */
	f = fake_new(VLLM_PAIR);
	submit(f, "r1");
	delta(&f->src[0], "x");
	end_err(&f->src[0], CONTRACT_UPSTREAM_HTTP, false, true);
	assert_int_equal(f->nsrc, 1);
	fake_free(f);
	/* The record no longer holds the whole answer. */
	f = fake_new(VLLM_PAIR);
	f->cfg.limits_replay_bytes = 20;
	submit(f, "r1");
	for (int i = 0; i < 10; i++)
		delta(&f->src[0], "abcdef");
	end_broken(&f->src[0]);
	assert_int_equal(f->nsrc, 1);
	fake_free(f);
}

static void test_resume_submit(void **state)
{
	struct fake *f = fake_new(VLLM_PAIR);
	struct contract_event ev[8];
	const char *body = "{\"request_id\":\"r1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			   "\"resume\":{\"text\":\"Hello, \",\"reasoning\":\"hmm\",\"next_seq\":7}}";

	(void)state;
	requests_submit(f->rq, body, strlen(body), "reply.1");
	assert_ack(f, 0, true, "");
	assert_true(f->src[0].continuation);
	json_t *b = json_loads(f->src[0].body, 0, NULL);
	json_t *msgs = json_object_get(b, "messages");
	json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "content")), "Hello, ");
	json_decref(b);
	delta(&f->src[0], "world");
	end_ok(&f->src[0]);
	/* Events number on from 7. */
	char subject[64];
	int n = 0;
	snprintf(subject, sizeof(subject), "t.chat.stream.r1");
	for (int i = 0; i < f->npub; i++) {
		char err[128];
		if (strcmp(f->pub[i].subject, subject))
			continue;
		assert_int_equal(contract_decode_event(f->pub[i].data, strlen(f->pub[i].data), &ev[n], err, sizeof(err)), 0);
		assert_int_equal(ev[n].seq, 7 + n);
		n++;
	}
	assert_int_equal(n, 2);
	assert_int_equal(int_field(&ev[1], "resumed"), 1);
	events_free(ev, n);
	fake_free(f);

	/* A provider that cannot continue, and the stub: bad_request at once. */
	const char *models[] = { TWO_REPLICAS, NULL };
	for (int k = 0; k < 2; k++) {
		f = fake_new(models[k]);
		requests_submit(f->rq, body, strlen(body), "reply.1");
		assert_ack(f, 0, false, "bad_request");
		assert_int_equal(f->nsrc, 0);
		assert_int_equal(contract_decode_event(f->pub[1].data, strlen(f->pub[1].data), &ev[0], subject, sizeof(subject)),
				 0);
		assert_int_equal(ev[0].seq, 7);
		assert_string_equal(ev[0].error_code, "bad_request");
		events_free(ev, 1);
		fake_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_may_retry_table),
		cmocka_unit_test(test_done_on_first_attempt),
		cmocka_unit_test(test_retry_before_first_token),
		cmocka_unit_test(test_no_retry_after_first_token),
		cmocka_unit_test(test_4xx_not_retried),
		cmocka_unit_test(test_retries_bounded),
		cmocka_unit_test(test_deadline_stops_retries),
		cmocka_unit_test(test_retry_gets_remaining_deadline),
		cmocka_unit_test(test_cancel_in_every_state),
		cmocka_unit_test(test_stub_done),
		cmocka_unit_test(test_start_failure_is_internal),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_end_all_and_drain),
		cmocka_unit_test(test_drain_when_idle),
		cmocka_unit_test(test_ack_names_instance),
		cmocka_unit_test(test_keepalive_when_silent),
		cmocka_unit_test(test_replay_live_and_after_end),
		cmocka_unit_test(test_replay_refusals),
		cmocka_unit_test(test_replay_truncated),
		cmocka_unit_test(test_resubmit_replaces_lingering),
		cmocka_unit_test(test_admission_hysteresis),
		cmocka_unit_test(test_admission_endpoint_caps),
		cmocka_unit_test(test_no_admission_calls_while_draining),
		cmocka_unit_test(test_may_resume_table),
		cmocka_unit_test(test_failover_continues),
		cmocka_unit_test(test_no_failover_cases),
		cmocka_unit_test(test_resume_submit),
	};
	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
