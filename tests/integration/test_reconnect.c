/* Integration: nats-server restarted in the middle of a stream. The daemon
 * reconnects, nats.c's reconnect buffer carries what it published while
 * disconnected, and the stream completes with no event lost or duplicated.
 * The test client reconnects within 50 ms, well before the daemon (1 s
 * reconnect wait), so its subscription is back before the buffer is flushed. */
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
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-rc" } } };

static void test_nats_restart_mid_stream(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_on_mock(nats, "{\"nats\":{\"reconnect_wait_ms\":1000}}", &c, mock,
						     "{\"mode\":\"stream\",\"tokens\":60,\"ttft_ms\":0,\"inter_ms\":40}", "m-rc", -1);

	struct h_stream *s = h_stream_submit(c, "r-rc", "keep going");
	assert_true(h_stream_wait_count(s, 5, 5000));
	h_log("restarting nats-server after %zu events", h_stream_count(s));
	assert_true(h_stream_count(s) < 30);
	h_nats_restart(nats);
	h_log("nats-server is back after %zu events", h_stream_count(s));
	/* The restart really happened in the middle of the stream. */
	assert_false(h_stream_wait_terminal(s, 0));

	h_stream_done(s, 20000);
	assert_int_equal(h_stream_count(s), 61);
	h_stream_expect_mock_tokens(s, 60);
	if (!h_daemon_log_contains(d, "reconnect"))
		h_log("note: the daemon did not log a line containing \"reconnect\"");

	/* And it keeps serving after the reconnect. */
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
	h_stream_done(h_stream_submit(c, "r-rc-2", "again"), 10000);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_reconnect", &bed, H_TEST(test_nats_restart_mid_stream))
