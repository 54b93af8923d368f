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

#include "harness.h"

static struct h_nats *nats;
static struct h_mock *mock_a, *mock_b;

static int group_setup(void **state)
{
	(void)state;
	nats = h_nats_start(NULL);
	mock_a = h_mock_start("mock-a", NULL);
	mock_b = h_mock_start("mock-b", NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	h_mock_stop(mock_a);
	h_mock_stop(mock_b);
	return 0;
}

static int setup(void **state)
{
	h_test_setup(state);
	h_mock_reset(mock_a);
	h_mock_reset(mock_b);
	h_mock_script(mock_a, "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}");
	h_mock_script(mock_b, "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}");
	return 0;
}

static size_t mock_request_count(struct h_mock *m)
{
	json_t *r = h_mock_requests(m);
	size_t n = json_array_size(r);
	json_decref(r);
	return n;
}

/* Runs one request to its end and returns the done event's model (caller frees). */
static char *run_request(struct h_client *c, const char *rid)
{
	struct h_stream *s = h_stream_open(c, rid);
	h_submit_simple(c, rid, "hello");
	json_t *t = h_stream_finish(s, 15000);
	char *d = json_dumps(t, JSON_COMPACT);
	if (strcmp(h_jstr(t, "type"), "done"))
		fail_msg("request %s did not end with done: %s", rid, d);
	free(d);
	char *model = xstrdup(h_jstr(t, "model"));
	h_stream_close(s);
	return model;
}

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
	if (!h_daemon_wait_log(d, needle, 5000)) {
		h_daemon_dump_log(d);
		fail_msg("no \"%s\" in the daemon log", needle);
	}
	assert_true(h_responder_count(r) >= 1);

	char *model = run_request(c, "r-start-1");
	assert_string_equal(model, "m-start");
	free(model);
	json_t *reqs = h_mock_requests(mock_a);
	assert_int_equal(json_array_size(reqs), 1);
	json_t *rec = json_array_get(reqs, 0);
	assert_string_equal(h_jstr(rec, "authorization"), "Bearer sk-startup-0123456789abcdef");
	assert_string_equal(h_jstr(rec, "path"), "/v1/chat/completions");
	assert_string_equal(h_jstr(rec, "body.model"), "m-start");
	json_decref(reqs);
	assert_int_equal(mock_request_count(mock_b), 0);
	h_daemon_stop_ok(d);
	assert_false(h_daemon_log_contains(d, key));
}

static void test_no_answer_then_update(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	char *model = run_request(c, "r-noans-1");
	assert_string_equal(model, "stub");
	free(model);
	assert_int_equal(mock_request_count(mock_a), 0);

	h_use_mock(c, d, mock_a, "m-upd", "sk-upd-0123456789abcdef", 1);
	model = run_request(c, "r-noans-2");
	assert_string_equal(model, "m-upd");
	free(model);
	assert_int_equal(mock_request_count(mock_a), 1);
	h_daemon_stop_ok(d);
}

static void test_answer_null_is_stub(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_client *c = h_client_connect(nats, prefix);
	h_responder_start(c, "null", 0);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	if (!h_daemon_wait_log(d, "model config applied: none (stub)", 5000)) {
		h_daemon_dump_log(d);
		fail_msg("no \"model config applied: none (stub)\" after a null answer");
	}
	char *model = run_request(c, "r-null-ans");
	assert_string_equal(model, "stub");
	free(model);
	h_daemon_stop_ok(d);
}

static void test_update_while_streaming(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	h_mock_script(mock_a, "{\"mode\":\"stream\",\"tokens\":20,\"ttft_ms\":0,\"inter_ms\":50}");
	h_use_mock(c, d, mock_a, "m-a", "", 1);

	struct h_stream *s1 = h_stream_open(c, "r-uws-1");
	h_submit_simple(c, "r-uws-1", "slow please");
	assert_true(h_stream_wait_count(s1, 3, 5000));
	h_use_mock(c, d, mock_b, "m-b", "", 2);
	/* The old stream is still running on A. */
	assert_true(h_stream_count(s1) < 21);

	char *model = run_request(c, "r-uws-2");
	assert_string_equal(model, "m-b");
	free(model);

	json_t *t = h_stream_finish(s1, 10000);
	assert_string_equal(h_jstr(t, "type"), "done");
	assert_string_equal(h_jstr(t, "model"), "m-a");
	char *text = h_stream_text(s1, "token");
	struct buf want;
	buf_init(&want);
	for (int i = 0; i < 20; i++)
		buf_printf(&want, "tok%d ", i);
	assert_string_equal(text, want.data);
	buf_free(&want);
	free(text);
	assert_int_equal(mock_request_count(mock_a), 1);
	assert_int_equal(mock_request_count(mock_b), 1);
	assert_int_equal(h_mock_stat(mock_a, "client_aborts"), 0);
	h_daemon_stop_ok(d);
}

static void test_stale_revision(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	h_use_mock(c, d, mock_a, "m-rev5", "", 5);
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-rev3\","
			       "\"revision\":3}",
			       mock_b->base_url);
	h_publish_config(c, body);
	free(body);
	if (!h_daemon_wait_log(d, "model config ignored: stale revision 3 < 5", 5000)) {
		h_daemon_dump_log(d);
		fail_msg("no \"model config ignored: stale revision 3 < 5\" in the log");
	}
	assert_false(h_daemon_log_contains(d, "model=m-rev3"));
	char *model = run_request(c, "r-stale-1");
	assert_string_equal(model, "m-rev5");
	free(model);
	assert_int_equal(mock_request_count(mock_a), 1);
	assert_int_equal(mock_request_count(mock_b), 0);
	/* A newer revision still applies. */
	h_use_mock(c, d, mock_b, "m-rev6", "", 6);
	model = run_request(c, "r-stale-2");
	assert_string_equal(model, "m-rev6");
	free(model);
	h_daemon_stop_ok(d);
}

static void test_null_update_back_to_stub(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	h_use_mock(c, d, mock_a, "m-before-null", "", -1);
	char *model = run_request(c, "r-nul-1");
	assert_string_equal(model, "m-before-null");
	free(model);
	size_t before = h_daemon_log_count(d, "model config applied: none (stub)");
	h_publish_config(c, "null");
	if (!h_wait_file_count(d->log_path, "model config applied: none (stub)", before + 1, 5000)) {
		h_daemon_dump_log(d);
		fail_msg("no \"model config applied: none (stub)\" after a null update");
	}
	model = run_request(c, "r-nul-2");
	assert_string_equal(model, "stub");
	free(model);
	assert_int_equal(mock_request_count(mock_a), 1);
	h_daemon_stop_ok(d);
}

int main(void)
{
	h_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_startup_answer, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_no_answer_then_update, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_answer_null_is_stub, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_update_while_streaming, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_stale_revision, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_null_update_back_to_stub, setup, h_test_teardown),
	};
	return cmocka_run_group_tests_name("integ_config", tests, group_setup, group_teardown);
}
