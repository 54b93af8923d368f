/* Unit tests for request: the lifecycle and the retry policy (retry before
 * the first token, never after, 4xx, the deadline, cancel in every state,
 * refusals, drain), with the fakes of fake_request.h: no NATS, no curl, no
 * backend. Every path must end with exactly one terminal event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_request.h"
#include "log.h"

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
	/* Routed here before the leave took effect: served, not refused. */
	submit(f, "r3");
	assert_ack(f, f->npub - 1, true, "");
	requests_end_all(f->rq, CONTRACT_SHUTTING_DOWN, "bye");
	assert_int_equal(f->idle_calls, 1);
	assert_true(f->src[0].cancelled && f->src[1].cancelled && f->src[2].cancelled);
	/* Drained: from now on everything is refused. */
	submit(f, "r4");
	assert_ack(f, f->npub - 2, false, "busy");
	const char *rids[] = { "r1", "r2", "r3" };
	for (int i = 0; i < 3; i++) {
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
	submit(f, "r1");
	assert_ack(f, 0, false, "busy");
	assert_int_equal(f->nsrc, 0);
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

