/* Unit tests for metrics and the log formats it writes through: the
 * per-request figures (accept, deltas, first token, refusals, retries, end),
 * the histograms, and the one log line per finished request in text and in
 * json (every field, JSON-escaped, no delta text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "metrics.h"
#include "stderr_capture.h"

static struct stderr_capture cap;

static int setup(void **state)
{
	(void)state;
	unsetenv("JOURNAL_STREAM");
	log_init();
	log_set_level(LOG_LVL_INFO);
	log_set_format(LOG_FORMAT_TEXT);
	return 0;
}

static void test_mshist_bounds(void **state)
{
	struct metrics m;

	(void)state;
	metrics_init(&m);
	metrics_mshist_record(&m.ttft, 0);
	metrics_mshist_record(&m.ttft, 5);    /* le 0.005 */
	metrics_mshist_record(&m.ttft, 6);    /* le 0.01 */
	metrics_mshist_record(&m.ttft, 999999); /* +Inf */
	assert_int_equal(m.ttft.count, 4);
	assert_int_equal(m.ttft.buckets[0], 2);
	assert_int_equal(m.ttft.buckets[1], 1);
	uint64_t in = 0;
	for (int i = 0; i < METRICS_MS_BUCKETS; i++)
		in += m.ttft.buckets[i];
	assert_int_equal(in, 3);
	assert_int_equal(m.ttft.sum_ms, 1000010);
	metrics_free(&m);
}

static void test_hist_diff(void **state)
{
	struct metrics_hist a = { 0 }, b, d;

	(void)state;
	metrics_record(&a, 300);
	metrics_record(&a, 5000);
	b = a;
	metrics_record(&a, 600);
	metrics_hist_diff(&d, &a, &b);
	assert_int_equal(d.count, 1);
	assert_int_equal(d.sum_ns, 600);
	assert_int_equal(d.buckets[9], 1); /* 600 ns is in [512, 1024) */
	assert_int_equal(d.buckets[8], 0);
}

static void test_request_lifecycle(void **state)
{
	struct metrics m;
	struct metrics_req q = { 0 };

	(void)state;
	metrics_init(&m);
	metrics_request_accepted(&m, &q, "sess-1");
	metrics_request_delta(&m, &q, CONTRACT_REASONING, 40);
	metrics_request_delta(&m, &q, CONTRACT_TOKEN, 55);
	metrics_request_delta(&m, &q, CONTRACT_TOKEN, 60);
	metrics_request_retry(&m, "http://a:1/v1");
	const struct metrics_end e = { CONTRACT_OK, NULL, "m1", "http://b:2/v1", 2, 300, "stop", NULL };
	log_set_level(LOG_LVL_WARN); /* the line is tested below */
	metrics_request_end(&m, &q, "r1", &e);
	log_set_level(LOG_LVL_INFO);
	assert_int_equal(m.accepted, 1);
	assert_int_equal(m.outcomes[CONTRACT_OK], 1);
	assert_int_equal(m.tokens, 2);
	assert_int_equal(m.reasoning, 1);
	assert_int_equal(q.ttft_ms, 40);
	assert_int_equal(m.ttft.count, 1);
	assert_int_equal(m.duration.count, 1);
	assert_int_equal(m.duration.sum_ms, 300);
	assert_int_equal(metrics_find_endpoint(&m, "http://a:1/v1")->retries, 1);
	assert_int_equal(metrics_find_endpoint(&m, "http://a:1/v1")->requests, 0);
	assert_int_equal(metrics_find_endpoint(&m, "http://b:2/v1")->requests, 1);
	assert_int_equal(m.submit.requests, 1);
	assert_int_equal(m.submit.errors, 0);
	assert_int_equal(m.submit.processing_ns, 300000000ull);

	/* Refusals count under their code; busy also on its own; both are
	 * $SRV errors. A cancel is not. */
	metrics_request_refused(&m, CONTRACT_BUSY, "too many requests in flight");
	metrics_request_refused(&m, CONTRACT_BAD_REQUEST, "messages: required");
	assert_int_equal(m.outcomes[CONTRACT_BUSY], 1);
	assert_int_equal(m.outcomes[CONTRACT_BAD_REQUEST], 1);
	assert_int_equal(m.busy, 1);
	assert_int_equal(m.submit.errors, 2);
	assert_string_equal(m.submit.last_error, "bad_request: messages: required");
	struct metrics_req q2 = { 0 };
	metrics_request_accepted(&m, &q2, NULL);
	const struct metrics_end c = { CONTRACT_CANCELLED, "cancelled by the client", "m1", NULL, 1, 10, NULL, NULL };
	log_set_level(LOG_LVL_WARN);
	metrics_request_end(&m, &q2, "r2", &c);
	log_set_level(LOG_LVL_INFO);
	assert_int_equal(m.outcomes[CONTRACT_CANCELLED], 1);
	assert_int_equal(m.submit.errors, 2);
	assert_int_equal(m.ttft.count, 1); /* no delta: no first token */
	metrics_free(&m);
}

static bool keep_b(void *ud, const char *endpoint)
{
	(void)ud;
	return !strcmp(endpoint, "http://b:2/v1");
}

static void test_prune(void **state)
{
	struct metrics m;

	(void)state;
	metrics_init(&m);
	metrics_request_retry(&m, "http://a:1/v1");
	metrics_request_retry(&m, "http://b:2/v1");
	metrics_prune_endpoints(&m, keep_b, NULL);
	assert_null(metrics_find_endpoint(&m, "http://a:1/v1"));
	assert_non_null(metrics_find_endpoint(&m, "http://b:2/v1"));
	metrics_free(&m);
}

static void test_null_metrics(void **state)
{
	struct metrics_req q = { 0 };

	(void)state;
	/* request's unit tests run without metrics: the request's own figures
	 * and the log line still work. */
	metrics_request_accepted(NULL, &q, "s");
	metrics_request_delta(NULL, &q, CONTRACT_TOKEN, 7);
	metrics_request_refused(NULL, CONTRACT_BUSY, "x");
	metrics_request_retry(NULL, "http://a/v1");
	metrics_probe(NULL, 1, "x");
	assert_int_equal(q.tokens, 1);
	assert_int_equal(q.ttft_ms, 7);
	capture_begin(&cap);
	const struct metrics_end e = { CONTRACT_UPSTREAM_HTTP, "HTTP 500: boom", "m", "http://a/v1", 1, 20, NULL, NULL };
	metrics_request_end(NULL, &q, "r", &e);
	char *out = capture_end(&cap);
	assert_non_null(strstr(out, "request failed"));
	free(out);
}

static void test_log_line_text(void **state)
{
	struct metrics_req q = { 0 };

	(void)state;
	metrics_request_accepted(NULL, &q, "s 1");
	metrics_request_delta(NULL, &q, CONTRACT_TOKEN, 12);
	const struct contract_usage u = { 3, 4, 7 };
	const struct metrics_end e = { CONTRACT_OK, NULL, "qwen", "http://gpu:8000/v1", 1, 99, "stop", &u };
	capture_begin(&cap);
	metrics_request_end(NULL, &q, "req-1", &e);
	char *out = capture_end(&cap);
	if (!strstr(out, " info [req-1] request done session_id=\"s 1\" model=qwen endpoint=http://gpu:8000/v1 "
			 "attempts=1 ttft_ms=12 duration_ms=99 tokens=1 reasoning=0 outcome=done finish_reason=stop "
			 "prompt_tokens=3 completion_tokens=4\n"))
		fail_msg("unexpected line: %s", out);
	free(out);
}

static void test_log_line_json(void **state)
{
	struct metrics_req q = { 0 };

	(void)state;
	log_set_format(LOG_FORMAT_JSON);
	/* A session id with a quote and a newline cannot break the line. */
	metrics_request_accepted(NULL, &q, "s\"\n2");
	const struct metrics_end e = { CONTRACT_UPSTREAM_TIMEOUT, "no first token within 60000 ms", "qwen", NULL, 2,
				       60001, NULL, NULL };
	capture_begin(&cap);
	metrics_request_end(NULL, &q, "req-2", &e);
	log_info(NULL, "plain \"line\"");
	char *out = capture_end(&cap);
	log_set_format(LOG_FORMAT_TEXT);

	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	*nl = '\0';
	json_error_t err;
	json_t *j = json_loads(out, 0, &err);
	if (!j)
		fail_msg("not JSON (%s): %s", err.text, out);
	assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-2");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "request failed");
	assert_string_equal(json_string_value(json_object_get(j, "session_id")), "s\"\n2");
	assert_string_equal(json_string_value(json_object_get(j, "model")), "qwen");
	assert_true(json_is_null(json_object_get(j, "endpoint")));
	assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
	assert_true(json_is_null(json_object_get(j, "ttft_ms")));
	assert_int_equal(json_integer_value(json_object_get(j, "duration_ms")), 60001);
	assert_int_equal(json_integer_value(json_object_get(j, "tokens")), 0);
	assert_string_equal(json_string_value(json_object_get(j, "outcome")), "error");
	assert_string_equal(json_string_value(json_object_get(j, "code")), "upstream_timeout");
	assert_string_equal(json_string_value(json_object_get(j, "message")), "no first token within 60000 ms");
	assert_non_null(json_object_get(j, "ts"));
	json_decref(j);

	/* Every other line is JSON too. */
	j = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &err);
	if (!j)
		fail_msg("second line not JSON (%s): %s", err.text, nl + 1);
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "plain \"line\"");
	assert_null(json_object_get(j, "request_id"));
	json_decref(j);
	free(out);
}

static void test_outcome_names(void **state)
{
	(void)state;
	assert_string_equal(metrics_outcome_name(CONTRACT_OK), "done");
	assert_string_equal(metrics_outcome_name(CONTRACT_BUSY), "busy");
	assert_true(metrics_outcome_used(CONTRACT_SHUTTING_DOWN));
	assert_false(metrics_outcome_used(CONTRACT_UNKNOWN_REQUEST));
	assert_false(metrics_outcome_used(CONTRACT_REPLAY_TRUNCATED));
	assert_int_equal(log_format_parse("json"), LOG_FORMAT_JSON);
	assert_int_equal(log_format_parse("text"), LOG_FORMAT_TEXT);
	assert_int_equal(log_format_parse("JSON"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_mshist_bounds, setup),
		cmocka_unit_test_setup(test_hist_diff, setup),
		cmocka_unit_test_setup(test_request_lifecycle, setup),
		cmocka_unit_test_setup(test_prune, setup),
		cmocka_unit_test_setup(test_null_metrics, setup),
		cmocka_unit_test_setup(test_log_line_text, setup),
		cmocka_unit_test_setup(test_log_line_json, setup),
		cmocka_unit_test_setup(test_outcome_names, setup),
	};
	return cmocka_run_group_tests_name("unit_metrics", tests, NULL, NULL);
}
