/* Integration: request validation (a table of malformed submits), duplicate
 * in-flight ids, and capacity (busy). */
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
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-req" } } };

#define OKMSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

struct bad_case {
	const char *body; /* NULL: built by the test (the oversized one) */
	const char *rid;  /* the usable request_id, or NULL when none */
	const char *field; /* the ack's error message must contain it */
};

static const struct bad_case bad_cases[] = {
	{ "this is not json", NULL, "body" },
	{ "{\"request_id\":\"r-x\",", NULL, "body" },
	{ "[1,2,3]", NULL, "body" },
	{ "\"just a string\"", NULL, "body" },
	{ "", NULL, "body" },
	{ NULL, NULL, "body" }, /* larger than limits.max_request_bytes */
	{ "{" OKMSG "}", NULL, "request_id" },
	{ "{\"request_id\":123," OKMSG "}", NULL, "request_id" },
	{ "{\"request_id\":\"\"," OKMSG "}", NULL, "request_id" },
	{ "{\"request_id\":\"r 1\"," OKMSG "}", NULL, "request_id" },
	{ "{\"request_id\":\"r.1\"," OKMSG "}", NULL, "request_id" },
	{ "{\"request_id\":\"r*\"," OKMSG "}", NULL, "request_id" },
	{ "{\"request_id\":\"r-\\u00e9\"," OKMSG "}", NULL, "request_id" },
	{ "@LONGID", NULL, "request_id" }, /* 129 characters, built below */
	{ "{\"request_id\":\"b-nomsgs\"}", "b-nomsgs", "messages" },
	{ "{\"request_id\":\"b-empty\",\"messages\":[]}", "b-empty", "messages" },
	{ "{\"request_id\":\"b-notarr\",\"messages\":{\"role\":\"user\",\"content\":\"hi\"}}", "b-notarr", "messages" },
	{ "{\"request_id\":\"b-elem\",\"messages\":[\"hi\"]}", "b-elem", "messages[0]" },
	{ "{\"request_id\":\"b-role\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "b-role",
	  "messages[0].role" },
	{ "{\"request_id\":\"b-norole\",\"messages\":[{\"content\":\"hi\"}]}", "b-norole", "messages[0].role" },
	{ "{\"request_id\":\"b-content\",\"messages\":[{\"role\":\"user\",\"content\":\"ok\"},"
	  "{\"role\":\"user\",\"content\":42}]}",
	  "b-content", "messages[1].content" },
	{ "{\"request_id\":\"b-mem\"," OKMSG ",\"memory\":\"profile\"}", "b-mem", "memory" },
	{ "{\"request_id\":\"b-prof\"," OKMSG ",\"memory\":{\"profile\":7}}", "b-prof", "memory.profile" },
	{ "{\"request_id\":\"b-facts\"," OKMSG ",\"memory\":{\"facts\":\"lives in Hangzhou\"}}", "b-facts",
	  "memory.facts" },
	{ "{\"request_id\":\"b-facts2\"," OKMSG ",\"memory\":{\"facts\":[\"ok\",1]}}", "b-facts2", "memory.facts" },
	{ "{\"request_id\":\"b-params\"," OKMSG ",\"params\":[0.7]}", "b-params", "params" },
	{ "{\"request_id\":\"b-sess\"," OKMSG ",\"session_id\":5}", "b-sess", "session_id" },
};

static void test_malformed_table(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, "{\"limits\":{\"max_request_bytes\":4096}}", &c);
	/* Everything the daemon publishes on any stream subject of this prefix:
	 * requests without a usable id must not produce events anywhere. */
	struct h_stream *all = h_stream_open(c, ">");
	size_t failures = 0, events_expected = 0;

	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_cases); i++) {
		const struct bad_case *bc = &bad_cases[i];
		char *body;
		if (bc->body && !strcmp(bc->body, "@LONGID")) {
			char id[130];
			memset(id, 'a', 129);
			id[129] = '\0';
			body = xasprintf("{\"request_id\":\"%s\"," OKMSG "}", id);
		} else if (bc->body) {
			body = xstrdup(bc->body);
		} else {
			struct buf b;
			buf_init(&b);
			buf_append_str(&b, "{\"request_id\":\"b-huge\",\"messages\":[{\"role\":\"user\",\"content\":\"");
			for (int k = 0; k < 6000; k++)
				buf_append_char(&b, 'x');
			buf_append_str(&b, "\"}]}");
			body = b.data;
		}
		struct h_stream *s = bc->rid ? h_stream_open(c, bc->rid) : NULL;
		/* For the oversized body the daemon may or may not dig the id out. */
		struct h_stream *huge = bc->body ? NULL : h_stream_open(c, "b-huge");
		json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
		char *ackd = json_dumps(ack, JSON_COMPACT);
		h_log("case %zu: %.60s -> %s", i, body, ackd);
		bool ok = json_is_false(json_object_get(ack, "accepted")) &&
			  json_is_string(h_jpath(ack, "error.code")) &&
			  !strcmp(json_string_value(h_jpath(ack, "error.code")), "bad_request") &&
			  json_is_string(h_jpath(ack, "error.message")) &&
			  strstr(json_string_value(h_jpath(ack, "error.message")), bc->field);
		json_t *ackrid = json_object_get(ack, "request_id");
		if (bc->rid)
			ok = ok && json_is_string(ackrid) && !strcmp(json_string_value(ackrid), bc->rid);
		else if (bc->body)
			ok = ok && json_is_null(ackrid);
		if (!ok) {
			fprintf(stderr, "FAIL case %zu: body %.200s\n  ack %s\n  expected accepted:false, bad_request, "
					"message naming \"%s\", request_id %s\n",
				i, body, ackd, bc->field, bc->rid ? bc->rid : "null");
			failures++;
		}
		if (s) {
			events_expected++;
			json_t *t = h_stream_finish(s, 3000);
			if (h_stream_count(s) != 1 || strcmp(h_jstr(t, "type"), "error") ||
			    strcmp(h_jstr(t, "error.code"), "bad_request")) {
				char *td = json_dumps(t, JSON_COMPACT);
				fprintf(stderr, "FAIL case %zu: expected one bad_request error event, got %zu events, last %s\n",
					i, h_stream_count(s), td);
				free(td);
				failures++;
			}
			h_stream_close(s);
		}
		if (huge) {
			h_sleep_ms(200);
			if (json_is_string(ackrid)) {
				events_expected++;
				json_t *t = h_stream_finish(huge, 3000);
				assert_string_equal(h_jstr(t, "error.code"), "bad_request");
			} else {
				assert_int_equal(h_stream_count(huge), 0);
			}
			h_stream_close(huge);
		}
		free(ackd);
		json_decref(ack);
		free(body);
	}
	h_sleep_ms(200);
	if (h_stream_count(all) != events_expected) {
		json_t *ev = h_stream_events(all);
		char *dump = json_dumps(ev, JSON_COMPACT);
		fprintf(stderr, "FAIL: expected %zu error events in all, got %s\n", events_expected, dump);
		free(dump);
		json_decref(ev);
		failures++;
	}
	h_stream_close(all);
	assert_int_equal(failures, 0);
	assert_true(UTIL_ARRAY_LEN(bad_cases) >= 15);

	/* Still serving, and 128 characters is the longest valid id. */
	char id[129];
	memset(id, 'a', 128);
	id[128] = '\0';
	h_stream_done(h_stream_submit(c, id, "still there?"), 10000);
	h_daemon_stop_ok(d);
}

/* Submits a valid request for rid that must be refused with code. */
static void expect_refused(struct h_client *c, const char *rid, const char *code)
{
	char *body = xasprintf("{\"request_id\":\"%s\"," OKMSG "}", rid);
	json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
	char *ackd = json_dumps(ack, JSON_COMPACT);
	h_log("ack of %s: %s", rid, ackd);
	free(ackd);
	free(body);
	assert_true(json_is_false(json_object_get(ack, "accepted")));
	assert_string_equal(h_jstr(ack, "error.code"), code);
	assert_string_equal(h_jstr(ack, "request_id"), rid);
	if (!strcmp(code, "bad_request"))
		H_ASSERT_CONTAINS(h_jstr(ack, "error.message"), "request_id");
	json_decref(ack);
}

static void test_duplicate_in_flight(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_on_mock(nats, NULL, &c, mock,
						     "{\"mode\":\"stream\",\"tokens\":20,\"ttft_ms\":0,\"inter_ms\":30}", "m-dup", -1);
	struct h_stream *s = h_stream_submit(c, "r-dup", "first");
	assert_true(h_stream_wait_count(s, 2, 5000));
	expect_refused(c, "r-dup", "bad_request");
	/* The running stream is untouched: seq intact, one terminal, all tokens. */
	h_stream_done(s, 10000);
	assert_int_equal(h_stream_count(s), 21);
	assert_int_equal(h_mock_request_count(mock), 1);
	/* Once finished, the id can be used again. */
	h_stream_close(s);
	h_stream_done(h_stream_submit(c, "r-dup", "again"), 10000);
	h_daemon_stop_ok(d);
}

/* A full dispatcher steps out of the submit queue group (docs/pool.md,
 * "Caps and admission"): with it the only one, NATS answers a further submit
 * with no responders at once; one that raced the leave is refused busy, with
 * its error event. It rejoins once streams finish. */
static void test_busy(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_on_mock(nats, "{\"limits\":{\"max_inflight\":2}}", &c, mock,
						     "{\"mode\":\"stream\",\"tokens\":20,\"ttft_ms\":0,\"inter_ms\":40}", "m-busy", -1);
	struct h_stream *s1 = h_stream_open(c, "r-busy-1");
	struct h_stream *s2 = h_stream_open(c, "r-busy-2");
	struct h_stream *s3 = h_stream_open(c, "r-busy-3");
	h_submit_simple(c, "r-busy-1", "one");
	h_submit_simple(c, "r-busy-2", "two");
	h_daemon_expect_log(d, "leaving the submit queue group", 3000);
	char *body = xasprintf("{\"request_id\":\"r-busy-3\"," OKMSG "}");
	natsStatus st = NATS_OK;
	for (int i = 0; i < 40; i++) {
		char *reply = NULL;
		st = h_request(c, "chat.submit", body, 2000, &reply);
		if (st != NATS_OK)
			break;
		/* Routed here before the server had the leave: busy. */
		json_t *ack = h_json_parse(reply);
		h_log("ack before the leave took effect: %s", reply);
		assert_string_equal(h_jstr(ack, "error.code"), "busy");
		h_stream_expect_error(s3, "busy", 3000);
		json_decref(ack);
		free(reply);
		h_sleep_ms(50);
	}
	free(body);
	assert_int_equal(st, NATS_NO_RESPONDERS);
	/* The two running ones are not disturbed. */
	assert_true(h_stream_count(s1) < 21);
	h_stream_done(s1, 10000);
	h_stream_done(s2, 10000);
	assert_int_equal(h_stream_count(s1), 21);
	assert_int_equal(h_stream_count(s2), 21);
	/* Capacity is back: it rejoined. */
	h_daemon_expect_log(d, "rejoining the submit queue group", 3000);
	h_stream_done(h_stream_submit(c, "r-busy-4", "four"), 10000);
	assert_int_equal(h_mock_request_count(mock), 3);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_requests", &bed, H_TEST(test_malformed_table), H_TEST(test_duplicate_in_flight),
       H_TEST(test_busy))
