/* Integration: each upstream timeout (connect, first token, idle, total)
 * ends the stream with upstream_timeout, in about the configured time. */
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
static struct h_mock *mock;

static int group_setup(void **state)
{
	(void)state;
	nats = h_nats_start(NULL);
	mock = h_mock_start("mock-to", NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	h_mock_stop(mock);
	return 0;
}

static int setup(void **state)
{
	h_test_setup(state);
	h_mock_reset(mock);
	return 0;
}

/* Runs request rid against a daemon with the given timeouts and checks it ends
 * with upstream_timeout between min_ms and max_ms after the submit. Returns
 * the number of token events before the error. */
static size_t expect_timeout(struct h_client *c, const char *rid, unsigned long long min_ms, unsigned long long max_ms)
{
	struct h_stream *s = h_stream_open(c, rid);
	unsigned long long t0 = util_now_ms();
	h_submit_simple(c, rid, "hi");
	assert_true(h_stream_wait_terminal(s, (int)max_ms + 3000));
	unsigned long long dt = util_now_ms() - t0;
	h_stream_expect_error(s, "upstream_timeout", 1000);
	json_t *ev = h_stream_events(s);
	h_log("%s: upstream_timeout after %llu ms (%s)", rid, dt,
	      h_jstr(json_array_get(ev, json_array_size(ev) - 1), "error.message"));
	json_decref(ev);
	assert_in_range(dt, min_ms, max_ms);
	return h_stream_count(s) - 1;
}

static struct h_daemon *start(const char *timeouts, struct h_client **c, bool on_mock)
{
	const char *prefix = h_prefix();
	char *o = xasprintf("{\"timeouts\":%s}", timeouts);
	struct h_daemon *d = h_daemon_startf(nats, prefix, o);
	free(o);
	*c = h_client_connect(nats, prefix);
	if (on_mock)
		h_use_mock(*c, d, mock, "m-to", "", -1);
	return d;
}

static void test_first_token_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"first_token_ms\":400,\"idle_ms\":10000,\"total_ms\":20000}", &c, true);
	h_mock_next(mock, "{\"mode\":\"stall\",\"after_headers\":true}");
	assert_int_equal(expect_timeout(c, "r-ttft-1", 350, 2500), 0);
	h_mock_next(mock, "{\"mode\":\"stall\",\"after_headers\":false}");
	assert_int_equal(expect_timeout(c, "r-ttft-2", 350, 2500), 0);
	/* A slow first token inside the limit is fine. */
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":150,\"inter_ms\":0}");
	struct h_stream *s = h_stream_open(c, "r-ttft-ok");
	h_submit_simple(c, "r-ttft-ok", "hi");
	assert_string_equal(h_jstr(h_stream_finish(s, 5000), "type"), "done");
	assert_int_equal(h_mock_wait_stat(mock, "client_aborts", 2, 3000), 2);
	h_daemon_stop_ok(d);
}

static void test_idle_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"first_token_ms\":5000,\"idle_ms\":300,\"total_ms\":20000}", &c, true);
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":1500}");
	size_t tokens = expect_timeout(c, "r-idle", 250, 1500);
	assert_int_equal(tokens, 1);
	/* Chunks just inside the idle limit keep the stream alive. */
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":6,\"ttft_ms\":0,\"inter_ms\":100}");
	struct h_stream *s = h_stream_open(c, "r-idle-ok");
	h_submit_simple(c, "r-idle-ok", "hi");
	assert_string_equal(h_jstr(h_stream_finish(s, 5000), "type"), "done");
	h_daemon_stop_ok(d);
}

static void test_total_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"first_token_ms\":5000,\"idle_ms\":5000,\"total_ms\":800}", &c, true);
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":100,\"ttft_ms\":0,\"inter_ms\":50}");
	size_t tokens = expect_timeout(c, "r-total", 700, 2500);
	assert_in_range(tokens, 5, 30);
	h_daemon_stop_ok(d);
}

static void test_connect_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"connect_ms\":300,\"first_token_ms\":10000,\"idle_ms\":10000,\"total_ms\":20000}",
				   &c, false);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", h_blackhole_port());
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-bh\"}", url);
	char needle[128];
	snprintf(needle, sizeof(needle), "model config applied: model=m-bh base_url=%s", url);
	h_publish_config(c, body);
	free(body);
	assert_true(h_daemon_wait_log(d, needle, 5000));
	expect_timeout(c, "r-connect", 250, 2500);
	h_daemon_stop_ok(d);
}

int main(void)
{
	h_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_token_timeout, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_total_timeout, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_connect_timeout, setup, h_test_teardown),
	};
	return cmocka_run_group_tests_name("integ_timeouts", tests, group_setup, group_teardown);
}
