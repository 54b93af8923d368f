/* Integration: model config over NATS. The startup request, no answer,
 * updates (also while streaming), stale revisions and null. */
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
static struct h_mock *mock_a, *mock_b;
static const struct h_bed bed = { .nats = &nats,
				  .mocks = { { &mock_a, "mock-a" }, { &mock_b, "mock-b" } },
				  .script = "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}" };

static void test_startup_answer(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	const char *key = "sk-startup-0123456789abcdef";
	struct h_client *c = h_client_connect(nats, prefix);
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"%s\",\"model\":\"m-start\","
			       "\"revision\":1}",
			       mock_a->base_url, key);
	struct h_responder *r = h_responder_start(c, body, 0);
	free(body);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	char needle[256];
	snprintf(needle, sizeof(needle), "model config applied: model=m-start base_url=%s revision=1", mock_a->base_url);
	h_daemon_expect_log(d, needle, 5000);
	assert_true(h_responder_count(r) >= 1);

	h_chat(c, "r-start-1", "m-start");
	assert_int_equal(h_mock_request_count(mock_a), 1);
	json_t *rec = h_mock_chat_request(mock_a, 0, "sk-startup-0123456789abcdef");
	assert_string_equal(h_jstr(rec, "body.model"), "m-start");
	json_decref(rec);
	assert_int_equal(h_mock_request_count(mock_b), 0);
	h_daemon_stop_ok(d);
	assert_false(h_daemon_log_contains(d, key));
}

static void test_no_answer_then_update(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	h_chat(c, "r-noans-1", "stub");
	assert_int_equal(h_mock_request_count(mock_a), 0);

	h_use_mock(c, d, mock_a, "m-upd", "sk-upd-0123456789abcdef", 1);
	h_chat(c, "r-noans-2", "m-upd");
	assert_int_equal(h_mock_request_count(mock_a), 1);
	h_daemon_stop_ok(d);
}

static void test_answer_null_is_stub(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_client *c = h_client_connect(nats, prefix);
	h_responder_start(c, "null", 0);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	h_daemon_expect_log(d, "model config applied: none (stub)", 5000);
	h_chat(c, "r-null-ans", "stub");
	h_daemon_stop_ok(d);
}

static void test_update_while_streaming(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_on_mock(nats, NULL, &c, mock_a,
						     "{\"mode\":\"stream\",\"tokens\":20,\"ttft_ms\":0,\"inter_ms\":50}", "m-a", 1);

	struct h_stream *s1 = h_stream_submit(c, "r-uws-1", "slow please");
	assert_true(h_stream_wait_count(s1, 3, 5000));
	h_use_mock(c, d, mock_b, "m-b", "", 2);
	/* The old stream is still running on A. */
	assert_true(h_stream_count(s1) < 21);

	h_chat(c, "r-uws-2", "m-b");

	assert_string_equal(h_jstr(h_stream_done(s1, 10000), "model"), "m-a");
	h_stream_expect_mock_tokens(s1, 20);
	assert_int_equal(h_mock_request_count(mock_a), 1);
	assert_int_equal(h_mock_request_count(mock_b), 1);
	assert_int_equal(h_mock_stat(mock_a, "client_aborts"), 0);
	h_daemon_stop_ok(d);
}

static void test_stale_revision(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	h_use_mock(c, d, mock_a, "m-rev5", "", 5);
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-rev3\","
			       "\"revision\":3}",
			       mock_b->base_url);
	h_publish_config(c, body);
	free(body);
	h_daemon_expect_log(d, "model config ignored: stale revision 3 < 5", 5000);
	assert_false(h_daemon_log_contains(d, "model=m-rev3"));
	h_chat(c, "r-stale-1", "m-rev5");
	assert_int_equal(h_mock_request_count(mock_a), 1);
	assert_int_equal(h_mock_request_count(mock_b), 0);
	/* A newer revision still applies. */
	h_use_mock(c, d, mock_b, "m-rev6", "", 6);
	h_chat(c, "r-stale-2", "m-rev6");
	h_daemon_stop_ok(d);
}

static void test_null_update_back_to_stub(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	h_use_mock(c, d, mock_a, "m-before-null", "", -1);
	h_chat(c, "r-nul-1", "m-before-null");
	size_t before = h_daemon_log_count(d, "model config applied: none (stub)");
	h_publish_config(c, "null");
	h_daemon_expect_log_count(d, "model config applied: none (stub)", before + 1, 5000);
	h_chat(c, "r-nul-2", "stub");
	assert_int_equal(h_mock_request_count(mock_a), 1);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_config", &bed, H_TEST(test_startup_answer), H_TEST(test_no_answer_then_update),
       H_TEST(test_answer_null_is_stub), H_TEST(test_update_while_streaming), H_TEST(test_stale_revision),
       H_TEST(test_null_update_back_to_stub))
