/* Unit tests for contract: what keeps a stream whole and the client side:
 * the owner's instance in the ack, keepalive events, replay requests and
 * answers, events decoded back, a submit's resume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_check.h"

/* An input that must be refused, and the exact message. */
struct refusal {
	const char *in;
	const char *msg;
};

static void test_ack_instance(void **state)
{
	struct buf b;
	struct contract_ack ack;

	(void)state;
	buf_init(&b);
	contract_encode_ack(&b, "r-1", "node-7_3", CONTRACT_OK, NULL);
	json_t *v = parse(&b);
	assert_str_field(v, "instance", "node-7_3");
	assert_true(json_is_true(json_object_get(v, "accepted")));
	json_decref(v);
	assert_int_equal(contract_decode_ack(b.data, b.len, &ack), 0);
	assert_true(ack.accepted);
	assert_string_equal(ack.instance, "node-7_3");
	buf_reset(&b);
	contract_encode_ack(&b, "r-1", "n", CONTRACT_BUSY, "full");
	assert_int_equal(contract_decode_ack(b.data, b.len, &ack), 0);
	assert_false(ack.accepted);
	assert_string_equal(ack.code, "busy");
	assert_string_equal(ack.message, "full");
	buf_free(&b);
}

static void test_keepalive_and_replay_mark(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	contract_encode_keepalive(&b, "r-1", 41);
	json_t *v = parse(&b);
	assert_int_equal(json_object_size(v), 3);
	assert_str_field(v, "type", "keepalive");
	assert_int_field(v, "seq", 41);
	json_decref(v);
	contract_mark_replay(&b, 0);
	v = parse(&b);
	assert_true(json_is_true(json_object_get(v, "replay")));
	assert_int_equal(json_object_size(v), 4);
	json_decref(v);
	/* Only the event that starts at start is marked. */
	buf_reset(&b);
	buf_append_str(&b, "x");
	size_t start = b.len;
	contract_encode_delta(&b, "r", 3, CONTRACT_TOKEN, "}", 1);
	contract_mark_replay(&b, start);
	assert_string_equal(b.data + start, "{\"request_id\":\"r\",\"seq\":3,\"type\":\"token\",\"delta\":\"}\",\"replay\":true}");
	buf_free(&b);
}

static void test_decode_replay(void **state)
{
	char rid[CONTRACT_RID_MAX + 1];
	unsigned long long from;
	struct contract_error err;

	(void)state;
	const char *ok1 = "{\"request_id\":\"r-1\",\"from_seq\":12}", *ok2 = "{\"request_id\":\"r-1\"}";
	assert_int_equal(contract_decode_replay(ok1, strlen(ok1), rid, &from, &err), 0);
	assert_string_equal(rid, "r-1");
	assert_int_equal(from, 12);
	assert_int_equal(contract_decode_replay(ok2, strlen(ok2), rid, &from, &err), 0);
	assert_int_equal(from, 0);
	static const struct refusal bad[] = {
		{ "[]", "replay: body must be a JSON object" },
		{ "{\"from_seq\":1}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]" },
		{ "{\"request_id\":\"a b\"}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]" },
		{ "{\"request_id\":\"r\",\"from_seq\":-1}", "from_seq: must be a non-negative integer" },
		{ "{\"request_id\":\"r\",\"from_seq\":\"3\"}", "from_seq: must be a non-negative integer" },
		{ "", "replay: body must be a JSON object of at most 65536 bytes" },
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		assert_int_equal(contract_decode_replay(bad[i].in, strlen(bad[i].in), rid, &from, &err), -1);
		assert_string_equal(err.message, bad[i].msg);
	}
}

static void test_replay_answer_round_trip(void **state)
{
	struct buf b;
	struct contract_replay_answer a;

	(void)state;
	buf_init(&b);
	contract_encode_replay_answer(&b, "r", CONTRACT_OK, NULL, 3, 9);
	assert_int_equal(contract_decode_replay_answer(b.data, b.len, &a), 0);
	assert_true(a.ok);
	assert_int_equal(a.first_seq, 3);
	assert_int_equal(a.next_seq, 9);
	assert_string_equal(a.code, "");
	buf_reset(&b);
	contract_encode_replay_answer(&b, NULL, CONTRACT_REPLAY_TRUNCATED, "dropped", 5, 9);
	json_t *v = parse(&b);
	assert_true(json_is_null(json_object_get(v, "request_id")));
	json_decref(v);
	assert_int_equal(contract_decode_replay_answer(b.data, b.len, &a), 0);
	assert_false(a.ok);
	assert_string_equal(a.code, "replay_truncated");
	assert_string_equal(contract_code_name(CONTRACT_UNKNOWN_REQUEST), "unknown_request");
	assert_string_equal(contract_code_name(CONTRACT_OK), "internal");
	buf_free(&b);
}

static void test_event_round_trip(void **state)
{
	struct buf b;
	struct contract_event ev;
	char err[128];
	const struct contract_usage u = { 1, 2, 3 };
	const struct contract_route route = { 2, "http://h/v1", 0 };

	(void)state;
	buf_init(&b);
	contract_encode_delta(&b, "r", 0, CONTRACT_REASONING, "hm", 2);
	assert_int_equal(contract_decode_event(b.data, b.len, &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, CONTRACT_EV_REASONING);
	assert_string_equal(ev.delta, "hm");
	assert_false(ev.replay);
	contract_event_free(&ev);
	buf_reset(&b);
	contract_encode_done(&b, "r", 5, "length", "m", &u, &route);
	assert_int_equal(contract_decode_event(b.data, b.len, &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, CONTRACT_EV_DONE);
	assert_int_equal(ev.seq, 5);
	assert_string_equal(ev.finish_reason, "length");
	assert_true(ev.has_usage);
	assert_int_equal(ev.usage.total_tokens, 3);
	contract_event_free(&ev);
	buf_reset(&b);
	contract_encode_error(&b, "r", 6, CONTRACT_CANCELLED, "bye", NULL);
	contract_mark_replay(&b, 0);
	assert_int_equal(contract_decode_event(b.data, b.len, &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, CONTRACT_EV_ERROR);
	assert_string_equal(ev.error_code, "cancelled");
	assert_true(ev.replay);
	contract_event_free(&ev);
	const char *no_rid = "{\"seq\":1}", *no_delta = "{\"request_id\":\"r\",\"seq\":1,\"type\":\"token\"}",
		   *future = "{\"request_id\":\"r\",\"seq\":1,\"type\":\"future\"}";
	assert_int_equal(contract_decode_event(no_rid, strlen(no_rid), &ev, err, sizeof(err)), -1);
	assert_int_equal(contract_decode_event(no_delta, strlen(no_delta), &ev, err, sizeof(err)), -1);
	assert_string_equal(err, "token event seq 1 has no delta");
	assert_int_equal(contract_decode_event(future, strlen(future), &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, CONTRACT_EV_OTHER);
	contract_event_free(&ev);
	buf_free(&b);
}

static void test_decode_resume(void **state)
{
	struct contract_submit sub;
	struct contract_error err;
	struct buf b;
	const char *const facts[] = { "f" };
	const struct contract_chat chat = { .request_id = "r", .message = "hi", .facts = facts, .nfacts = 1,
					    .resume = true, .resume_text = "Hel\"lo", .resume_text_len = 6,
					    .resume_reasoning = "r", .resume_reasoning_len = 1, .resume_next_seq = 12 };

	(void)state;
	buf_init(&b);
	contract_encode_chat(&b, &chat);
	assert_int_equal(contract_decode_submit(b.data, b.len, 1 << 20, &sub, &err), 0);
	assert_true(sub.resume);
	assert_string_equal(sub.resume_text, "Hel\"lo");
	assert_int_equal(sub.resume_text_len, 6);
	assert_string_equal(sub.resume_reasoning, "r");
	assert_int_equal(sub.resume_next_seq, 12);
	contract_submit_free(&sub);
	static const struct refusal bad[] = {
		{ "[]", "resume: must be an object" },
		{ "{\"text\":1,\"next_seq\":0}", "resume.text: must be a string" },
		{ "{\"reasoning\":[],\"next_seq\":0}", "resume.reasoning: must be a string" },
		{ "{\"text\":\"a\"}", "resume.next_seq: must be an integer from 0 to 2^53-1" },
		{ "{\"text\":\"a\",\"next_seq\":-1}", "resume.next_seq: must be an integer from 0 to 2^53-1" },
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		buf_reset(&b);
		buf_printf(&b, "{\"request_id\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"resume\":%s}",
			   bad[i].in);
		assert_int_equal(contract_decode_submit(b.data, b.len, 1 << 20, &sub, &err), -1);
		assert_string_equal(err.message, bad[i].msg);
		assert_string_equal(err.request_id, "r");
	}
	/* resumed is in the route only when a stream was continued. */
	const struct contract_route route = { 3, "http://h", 2 };
	buf_reset(&b);
	contract_encode_done(&b, "r", 1, NULL, NULL, NULL, &route);
	json_t *v = parse(&b);
	assert_int_field(v, "resumed", 2);
	json_decref(v);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ack_instance),
		cmocka_unit_test(test_keepalive_and_replay_mark),
		cmocka_unit_test(test_decode_replay),
		cmocka_unit_test(test_replay_answer_round_trip),
		cmocka_unit_test(test_event_round_trip),
		cmocka_unit_test(test_decode_resume),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

