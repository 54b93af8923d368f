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

#include "harness.h"

static void test_nats_restart_mid_stream(void **state)
{
	(void)state;
	struct h_nats *nats = h_nats_start(NULL);
	struct h_mock *mock = h_mock_start("mock-rc", NULL);
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_startf(nats, prefix, "{\"nats\":{\"reconnect_wait_ms\":1000}}");
	struct h_client *c = h_client_connect(nats, prefix);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":60,\"ttft_ms\":0,\"inter_ms\":40}");
	h_use_mock(c, d, mock, "m-rc", "", -1);

	struct h_stream *s = h_stream_open(c, "r-rc");
	h_submit_simple(c, "r-rc", "keep going");
	assert_true(h_stream_wait_count(s, 5, 5000));
	h_log("restarting nats-server after %zu events", h_stream_count(s));
	assert_true(h_stream_count(s) < 30);
	h_nats_restart(nats);
	h_log("nats-server is back after %zu events", h_stream_count(s));
	/* The restart really happened in the middle of the stream. */
	assert_false(h_stream_wait_terminal(s, 0));

	json_t *t = h_stream_finish(s, 20000);
	assert_string_equal(h_jstr(t, "type"), "done");
	assert_int_equal(h_stream_count(s), 61);
	char *text = h_stream_text(s, "token");
	struct buf want;
	buf_init(&want);
	for (int i = 0; i < 60; i++)
		buf_printf(&want, "tok%d ", i);
	assert_string_equal(text, want.data);
	buf_free(&want);
	free(text);
	if (!h_daemon_log_contains(d, "reconnect"))
		h_log("note: the daemon did not log a line containing \"reconnect\"");

	/* And it keeps serving after the reconnect. */
	struct h_stream *s2 = h_stream_open(c, "r-rc-2");
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
	h_submit_simple(c, "r-rc-2", "again");
	assert_string_equal(h_jstr(h_stream_finish(s2, 10000), "type"), "done");
	h_daemon_stop_ok(d);
	h_mock_stop(mock);
}

int main(void)
{
	h_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nats_restart_mid_stream, h_test_setup, h_test_teardown),
	};
	return cmocka_run_group_tests_name("integ_reconnect", tests, NULL, NULL);
}
