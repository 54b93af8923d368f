/* Unit tests for request: what keeps a stream whole (keepalives, replay and
 * the linger, admission by capacity, failover to another replica and a
 * submit's resume), with the fakes of fake_request.h. */
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

/* The lingering records together stay within stream.replay_linger_bytes:
 * the oldest go first. */
static void test_linger_budget(void **state)
{
	struct fake *f = fake_new(NULL);
	char rid[16], body[64];

	(void)state;
	f->cfg.stream_replay_linger_ms = 30000;
	f->cfg.stream_replay_linger_bytes = 1000;
	for (int i = 0; i < 10; i++) {
		snprintf(rid, sizeof(rid), "r%d", i);
		submit(f, rid);
		delta(&f->src[i], "some words of an answer");
		end_ok(&f->src[i]);
	}
	snprintf(body, sizeof(body), "{\"request_id\":\"r0\"}");
	replay(f, body);
	assert_string_equal(last_answer(f).code, "unknown_request");
	snprintf(body, sizeof(body), "{\"request_id\":\"r9\"}");
	replay(f, body);
	assert_true(last_answer(f).ok);
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

/* A continuation that cannot even start: the stream ends as it broke, and
 * says no resume happened. */
static void test_failover_start_fails(void **state)
{
	struct fake *f = fake_new(VLLM_PAIR);
	struct contract_event ev[8];

	(void)state;
	submit(f, "r1");
	delta(&f->src[0], "x");
	f->refuse_start = true;
	end_broken(&f->src[0]);
	int n = stream_of(f, "r1", ev, 8);
	assert_int_equal(n, 2);
	assert_string_equal(ev[1].error_code, "upstream_protocol");
	assert_null(json_object_get(ev[1].root, "resumed"));
	events_free(ev, n);
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
		cmocka_unit_test(test_ack_names_instance),
		cmocka_unit_test(test_keepalive_when_silent),
		cmocka_unit_test(test_replay_live_and_after_end),
		cmocka_unit_test(test_replay_refusals),
		cmocka_unit_test(test_replay_truncated),
		cmocka_unit_test(test_resubmit_replaces_lingering),
		cmocka_unit_test(test_linger_budget),
		cmocka_unit_test(test_admission_hysteresis),
		cmocka_unit_test(test_admission_endpoint_caps),
		cmocka_unit_test(test_no_admission_calls_while_draining),
		cmocka_unit_test(test_may_resume_table),
		cmocka_unit_test(test_failover_continues),
		cmocka_unit_test(test_no_failover_cases),
		cmocka_unit_test(test_failover_start_fails),
		cmocka_unit_test(test_resume_submit),
	};
	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

