/* Integration: limits.max_connections_per_endpoint. With a limit of 2, ten
 * concurrent slow streams to one backend all complete over at most two
 * connections (curl queues the rest); with no limit the same load opens more. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

/* One stream takes at least TTFT + (TOKENS - 1) * INTER ms at the mock. */
#define TOKENS 8
#define TTFT_MS 100
#define INTER_MS 50
#define STREAM_MIN_MS (TTFT_MS + (TOKENS - 1) * INTER_MS)
#define NREQ 10

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-limits" } } };

struct load_result {
	long long conns; /* TCP connections the daemon opened to the mock */
	unsigned long long took_ms;
};

/* NREQ concurrent streams through a daemon with the given limit. */
static struct load_result run_load(int limit)
{
	struct load_result res;
	char overrides[128];
	struct h_client *c;

	snprintf(overrides, sizeof(overrides), "{\"limits\":{\"max_connections_per_endpoint\":%d}}", limit);
	struct h_daemon *d = h_daemon_start_client(nats, overrides, &c);
	h_use_mock(c, d, mock, "m-limits", NULL, -1);
	h_mock_reset(mock);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":%d,\"ttft_ms\":%d,\"inter_ms\":%d}", TOKENS, TTFT_MS,
		      INTER_MS);
	/* Each control call is a connection of its own, counted like the
	 * daemon's: the difference of two readings, less the second reading's
	 * own connection, is what the daemon opened. */
	long long before = h_mock_stat(mock, "connections");

	struct h_stream *s[NREQ];
	char rid[NREQ][32];
	unsigned long long t0 = util_now_ms();
	for (int i = 0; i < NREQ; i++) {
		snprintf(rid[i], sizeof(rid[i]), "lim%d-%d", limit, i);
		s[i] = h_stream_submit(c, rid[i], "hello");
	}
	char *want = h_mock_tokens(TOKENS);
	for (int i = 0; i < NREQ; i++)
		if (!h_stream_wait_terminal(s[i], 20000))
			fail_msg("%s: no terminal event within 20 s", rid[i]);
	res.took_ms = util_now_ms() - t0;
	for (int i = 0; i < NREQ; i++) {
		h_stream_done(s[i], 20000);
		h_stream_expect_text(s[i], want);
	}
	free(want);
	res.conns = h_mock_stat(mock, "connections") - before - 1;
	assert_int_equal(h_mock_stat(mock, "requests"), NREQ);
	assert_int_equal(h_mock_stat(mock, "completed"), NREQ);
	h_log("limit %d: %d concurrent streams took %llu ms over %lld connections", limit, NREQ, res.took_ms,
	      res.conns);
	h_daemon_stop_ok(d);
	return res;
}

static void test_limit_two(void **state)
{
	(void)state;
	struct load_result r = run_load(2);
	assert_in_range(r.conns, 1, 2);
	/* Two connections carry ten streams one after another, so one of them
	 * carries at least five: proof that the rest waited (no limit takes
	 * about one STREAM_MIN_MS). Four, for slack in the mock's timers. */
	assert_true(r.took_ms >= 4 * STREAM_MIN_MS);
}

static void test_no_limit(void **state)
{
	(void)state;
	struct load_result r = run_load(0);
	assert_in_range(r.conns, 3, NREQ);
}

H_MAIN("integ_limits", &bed, H_TEST(test_limit_two), H_TEST(test_no_limit))
