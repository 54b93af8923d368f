/* Integration: the support library itself, against nats-server only (no
 * daemon), so a support bug is not mistaken for a daemon bug. */
#include <curl/curl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

static void pub_event(struct h_client *c, const char *rid, int seq, const char *type, const char *extra)
{
	char subj[256];
	char *suffix = xasprintf("chat.stream.%s", rid);
	char *body = xasprintf("{\"request_id\":\"%s\",\"seq\":%d,\"type\":\"%s\"%s}", rid, seq, type, extra);
	snprintf(subj, sizeof(subj), "%s", suffix);
	h_publish(c, subj, body);
	free(body);
	free(suffix);
}

static void test_collector_and_restart(void **state)
{
	(void)state;
	struct h_nats *n = h_nats_start(NULL);
	const char *prefix = h_prefix();
	struct h_client *sub = h_client_connect(n, prefix);
	struct h_client *pub = h_client_connect(n, prefix);
	struct h_stream *s = h_stream_open(sub, "r-1");

	pub_event(pub, "r-1", 0, "token", ",\"delta\":\"he\"");
	pub_event(pub, "r-1", 1, "token", ",\"delta\":\"llo\"");
	assert_true(h_stream_wait_count(s, 2, 2000));

	h_nats_restart(n);
	/* Both clients reconnect (wait 50 ms) and the subscription is replayed. */
	unsigned long long end = util_now_ms() + 5000;
	while (natsConnection_Status(sub->nc) != NATS_CONN_STATUS_CONNECTED ||
	       natsConnection_Status(pub->nc) != NATS_CONN_STATUS_CONNECTED) {
		assert_true(util_now_ms() < end);
		h_sleep_ms(10);
	}
	h_flush(sub);
	pub_event(pub, "r-1", 2, "done", ",\"finish_reason\":\"stop\"");
	json_t *t = h_stream_finish(s, 3000);
	assert_string_equal(h_jstr(t, "type"), "done");
	h_stream_expect_text(s, "hello");
}

static void test_blackhole_connect_times_out(void **state)
{
	(void)state;
	int port = h_blackhole_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", port);
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 300L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	unsigned long long t0 = util_now_ms();
	CURLcode rc = curl_easy_perform(e);
	unsigned long long dt = util_now_ms() - t0;
	curl_easy_cleanup(e);
	assert_int_equal(rc, CURLE_OPERATION_TIMEDOUT);
	assert_in_range(dt, 250, 2000);
}

static void test_proc_stop_reports_status(void **state)
{
	(void)state;
	char *argv[] = { "sh", "-c", "echo hello-from-child; exit 3", NULL };
	struct h_proc *p = h_spawn("sh-exit3", argv);
	assert_true(h_wait_file(p->log_path, "hello-from-child", 5000));
	h_sleep_ms(50);
	assert_int_equal(h_proc_stop(p, 2000), 3);
	char *argv2[] = { "sleep", "30", NULL };
	struct h_proc *q = h_spawn("sleep", argv2);
	assert_int_equal(h_proc_stop(q, 2000), 128 + 15);
}

H_MAIN("integ_harness", NULL, H_TEST(test_proc_stop_reports_status), H_TEST(test_collector_and_restart),
       H_TEST(test_blackhole_connect_times_out))
