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

#include "support.h"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-to" } } };

/* Runs request rid against a daemon with the given timeouts, the mock's next
 * answer scripted (unless script is NULL), and checks it ends with
 * upstream_timeout between min_ms and max_ms after the submit. Returns the
 * number of token events before the error. */
static size_t expect_timeout(struct h_client *c, const char *rid, const char *script, unsigned long long min_ms,
			     unsigned long long max_ms)
{
	if (script)
		h_mock_next(mock, "%s", script);
	struct h_stream *s = h_stream_open(c, rid);
	unsigned long long t0 = util_now_ms();
	h_submit_simple(c, rid, "hi");
	assert_true(h_stream_wait_terminal(s, (int)max_ms + 3000));
	unsigned long long dt = util_now_ms() - t0;
	json_t *t = h_stream_expect_error(s, "upstream_timeout", 1000);
	h_log("%s: upstream_timeout after %llu ms (%s)", rid, dt, h_jstr(t, "error.message"));
	assert_in_range(dt, min_ms, max_ms);
	return h_stream_count(s) - 1;
}

static struct h_daemon *start(const char *timeouts, struct h_client **c, bool on_mock)
{
	char *o = xasprintf("{\"timeouts\":%s}", timeouts);
	struct h_daemon *d = h_daemon_start_client(nats, o, c);
	free(o);
	if (on_mock)
		h_use_mock(*c, d, mock, "m-to", "", -1);
	return d;
}

/* A stream that must end well: the slow ones just inside a limit. */
static void expect_done(struct h_client *c, const char *rid, const char *script)
{
	h_mock_next(mock, "%s", script);
	h_stream_done(h_stream_submit(c, rid, "hi"), 5000);
}

static void test_first_token_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"first_token_ms\":400,\"idle_ms\":10000,\"total_ms\":20000}", &c, true);
	assert_int_equal(expect_timeout(c, "r-ttft-1", "{\"mode\":\"stall\",\"after_headers\":true}", 350, 2500), 0);
	assert_int_equal(expect_timeout(c, "r-ttft-2", "{\"mode\":\"stall\",\"after_headers\":false}", 350, 2500), 0);
	/* A slow first token inside the limit is fine. */
	expect_done(c, "r-ttft-ok", "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":150,\"inter_ms\":0}");
	assert_int_equal(h_mock_wait_stat(mock, "client_aborts", 2, 3000), 2);
	h_daemon_stop_ok(d);
}

static void test_idle_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"first_token_ms\":5000,\"idle_ms\":300,\"total_ms\":20000}", &c, true);
	size_t tokens =
		expect_timeout(c, "r-idle", "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":1500}", 250, 1500);
	assert_int_equal(tokens, 1);
	/* Chunks just inside the idle limit keep the stream alive. */
	expect_done(c, "r-idle-ok", "{\"mode\":\"stream\",\"tokens\":6,\"ttft_ms\":0,\"inter_ms\":100}");
	h_daemon_stop_ok(d);
}

static void test_total_timeout(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start("{\"first_token_ms\":5000,\"idle_ms\":5000,\"total_ms\":800}", &c, true);
	size_t tokens =
		expect_timeout(c, "r-total", "{\"mode\":\"stream\",\"tokens\":100,\"ttft_ms\":0,\"inter_ms\":50}", 700, 2500);
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
	h_use_url(c, d, url, "m-bh", "", -1);
	expect_timeout(c, "r-connect", NULL, 250, 2500);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_timeouts", &bed, H_TEST(test_first_token_timeout), H_TEST(test_idle_timeout),
       H_TEST(test_total_timeout), H_TEST(test_connect_timeout))
