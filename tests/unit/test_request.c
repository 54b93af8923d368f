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

#define MAX_EVENTS 64
#define MAX_ATTEMPTS 8

/* One upstream attempt or stub run the request started. */
struct fake_source {
	bool stub;
	char base_url[128];
	long long total_ms;
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
				       fake_stub_start, fake_stub_cancel, f };
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

/* ---- tool calls (issue #12) ---- */

/* A tool-call piece is relayed as a tool_call event and, like a token, ends
 * the chance of a retry: the client has seen part of this answer. */
static void test_tool_call_relayed_and_not_retried(void **state)
{
	struct fake *f = fake_new(TWO_REPLICAS);
	struct contract_event ev[8];
	const struct contract_tool_call tc = { 1, "call_1", 6, "get_weather", 11, "{\"ci", 4 };

	(void)state;
	submit(f, "r1");
	f->src[0].cbs->tool_call(f->src[0].cb_ud, &tc);
	end_err(&f->src[0], CONTRACT_UPSTREAM_UNAVAILABLE, true, false);
	assert_int_equal(f->nsrc, 1);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].type, CONTRACT_EV_TOOL_CALL);
	assert_int_equal(ev[0].tool_call.index, 1);
	assert_string_equal(ev[0].tool_call.id, "call_1");
	assert_string_equal(ev[0].tool_call.name, "get_weather");
	assert_string_equal(ev[0].tool_call.arguments, "{\"ci");
	assert_int_equal(ev[1].type, CONTRACT_EV_ERROR);
	assert_string_equal(ev[1].error_code, "upstream_unavailable");
	events_free(ev, n);
	fake_free(f);
}

/* ---- end of the issue #12 block ---- */

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
		cmocka_unit_test(test_tool_call_relayed_and_not_retried),
	};
	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
