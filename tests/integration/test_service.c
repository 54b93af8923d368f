/* Integration: the daemon as a systemd service. sd_notify (READY only once
 * NATS is up, STATUS, WATCHDOG, RELOADING, STOPPING) through a datagram socket
 * the test owns, the drain on SIGTERM, and the reload on SIGHUP. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-svc" } } };

static unsigned long long mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
}

/* READY=1 only once NATS is connected and the subscriptions confirmed: the
 * daemon starts while no server runs, and the server comes later. */
static void test_notify_ready_waits_for_nats(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_notify *nf = h_notify_open("notify-late");
	const char *env[] = { h_notify_env(nf), NULL };
	struct h_daemon_opts o = { .env = env };

	h_nats_halt(nats);
	struct h_daemon *d = h_daemon_spawn(nats, prefix, "{\"nats\":{\"reconnect_wait_ms\":100}}", &o);
	char *dg = h_notify_wait(nf, "READY=1", 1000);
	if (dg)
		fail_msg("READY=1 while no NATS server runs: %s", dg);
	assert_true(h_proc_alive(d->proc));
	assert_false(h_daemon_log_contains(d, "dispatcher ready"));

	h_nats_resume(nats);
	free(h_notify_expect(nf, d, "READY=1", 10000));
	assert_true(h_daemon_log_contains(d, "dispatcher ready: subscriptions confirmed"));
	struct h_client *c = h_client_connect(nats, prefix);
	h_stream_done(h_stream_submit(c, "r-late-1", "x"), 10000);
	h_daemon_signal(d, SIGTERM);
	free(h_notify_expect(nf, d, "STOPPING=1", 3000));
	assert_int_equal(h_daemon_wait_exit(d, 10000), 0);
}

static void test_notify(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_notify *nf = h_notify_open("notify");
	const char *env[] = { h_notify_env(nf), "WATCHDOG_USEC=400000", NULL };
	struct h_daemon_opts o = { .env = env };

	struct h_daemon *d = h_daemon_spawn(nats, prefix, "{\"stub\":{\"inter_token_ms\":50}}", &o);
	char *dg;
	free(h_notify_expect(nf, d, "READY=1", 10000));
	/* The log line is written before READY=1 is sent. */
	assert_true(h_daemon_log_contains(d, "dispatcher ready: subscriptions confirmed"));

	/* 400 ms interval: a ping every 200 ms, so about five in one second. */
	size_t pings = h_notify_count_for(nf, "WATCHDOG=1", 1000);
	h_log("WATCHDOG=1 %zu times in 1000 ms", pings);
	if (pings < 2 || pings > 8)
		fail_msg("expected 2..8 WATCHDOG=1 in 1000 ms at WATCHDOG_USEC=400000, got %zu; received:\n%s", pings,
			 h_notify_seen(nf));

	/* STATUS names the stub and counts what is in flight. */
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_stream *s = h_stream_submit(c, "r-notify-1", "a long answer please, one that streams for several seconds");
	free(h_notify_expect(nf, d, "STATUS=serving: stub, 1 requests in flight", 5000));
	h_cancel(c, "r-notify-1");
	h_stream_expect_error(s, "cancelled", 5000);
	free(h_notify_expect(nf, d, "STATUS=serving: stub, 0 requests in flight", 5000));

	/* A model from the control plane shows in STATUS at once. */
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-status\"}",
			       mock->base_url);
	h_publish_config(c, body);
	free(body);
	free(h_notify_expect(nf, d, "STATUS=serving: m-status, 0 requests in flight", 3000));

	/* Reload: RELOADING=1 with the monotonic time of the reload, then READY=1. */
	unsigned long long before = mono_usec();
	h_daemon_signal(d, SIGHUP);
	dg = h_notify_expect(nf, d, "RELOADING=1", 3000);
	unsigned long long after = mono_usec();
	const char *mu = strstr(dg, "MONOTONIC_USEC=");
	if (!mu)
		fail_msg("RELOADING=1 without MONOTONIC_USEC=: \"%s\"", dg);
	unsigned long long usec = strtoull(mu + strlen("MONOTONIC_USEC="), NULL, 10);
	h_log("RELOADING=1 MONOTONIC_USEC=%llu (test clock %llu..%llu)", usec, before, after);
	if (usec < before || usec > after)
		fail_msg("MONOTONIC_USEC=%llu is not CLOCK_MONOTONIC between SIGHUP (%llu) and receipt (%llu)", usec,
			 before, after);
	free(dg);
	free(h_notify_expect(nf, d, "READY=1", 3000));

	/* A stream in flight: STOPPING=1 and STATUS says draining. */
	struct h_stream *s2 = h_stream_open(c, "r-notify-2");
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":20}");
	h_submit_simple(c, "r-notify-2", "x");
	assert_true(h_stream_wait_count(s2, 2, 5000));
	h_daemon_signal(d, SIGTERM);
	free(h_notify_expect(nf, d, "STOPPING=1", 3000));
	free(h_notify_expect(nf, d, "STATUS=draining: m-status, 1 requests in flight", 3000));
	h_stream_done(s2, 10000);
	assert_int_equal(h_daemon_wait_exit(d, 10000), 0);
	h_log("notify datagrams:\n%s", h_notify_seen(nf));
}

/* sd_watchdog_enabled(3): WATCHDOG_PID names the process meant; another
 * process must not send pings. */
static void test_watchdog_pid(void **state)
{
	(void)state;
	struct h_notify *nf_self = h_notify_open("notify-self");
	struct h_notify *nf_other = h_notify_open("notify-other");
	const char *e_self[] = { h_notify_env(nf_self), "WATCHDOG_USEC=400000", NULL };
	const char *e_other[] = { h_notify_env(nf_other), "WATCHDOG_USEC=400000", "WATCHDOG_PID=1", NULL };
	struct h_daemon_opts o_self = { .env = e_self, .watchdog_pid_self = true };
	struct h_daemon_opts o_other = { .env = e_other };

	struct h_daemon *self = h_daemon_spawn(nats, h_prefix(), NULL, &o_self);
	struct h_daemon *other = h_daemon_spawn(nats, h_prefix(), NULL, &o_other);
	assert_true(h_daemon_wait_ready(self, 15000));
	assert_true(h_daemon_wait_ready(other, 15000));
	free(h_notify_expect(nf_other, other, "READY=1", 3000));
	size_t pings_self = h_notify_count_for(nf_self, "WATCHDOG=1", 1000);
	size_t pings_other = h_notify_count_for(nf_other, "WATCHDOG=1", 200);
	h_log("WATCHDOG=1: %zu with WATCHDOG_PID=self, %zu with WATCHDOG_PID=1", pings_self, pings_other);
	if (pings_self < 2)
		fail_msg("WATCHDOG_PID=<own pid>: expected >= 2 WATCHDOG=1 in 1000 ms, got %zu; received:\n%s",
			 pings_self, h_notify_seen(nf_self));
	if (pings_other != 0)
		fail_msg("WATCHDOG_PID=1: expected no WATCHDOG=1, got %zu; received:\n%s", pings_other,
			 h_notify_seen(nf_other));
	h_daemon_stop_ok(self);
	h_daemon_stop_ok(other);
}

/* A daemon with shutdown.grace_ms, serving model m-<tag> from the mock
 * (tokens 50 ms apart), and n streams r-<tag>-<i> that each got their first
 * events. */
static struct h_daemon *start_streams(int grace_ms, int tokens, const char *tag, const char *text,
				      struct h_stream **s, int n, struct h_client **c)
{
	char over[64], name[64];
	snprintf(over, sizeof(over), "{\"shutdown\":{\"grace_ms\":%d}}", grace_ms);
	struct h_daemon *d = h_daemon_start_client(nats, over, c);
	snprintf(name, sizeof(name), "m-%s", tag);
	h_use_mock(*c, d, mock, name, "", -1);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":%d,\"ttft_ms\":0,\"inter_ms\":50}", tokens);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "r-%s-%d", tag, i);
		s[i] = h_stream_submit(*c, name, text);
	}
	for (int i = 0; i < n; i++)
		if (!h_stream_wait_count(s[i], 2, 10000))
			fail_msg("stream %d has %zu events, expected >= 2", i, h_stream_count(s[i]));
	return d;
}

/* A submit that no dispatcher may answer (within a second). */
static void expect_unanswered(struct h_client *c, const char *rid, const char *what)
{
	char *reply = NULL;
	char *body = xasprintf("{\"request_id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", rid);
	natsStatus st = h_request(c, "chat.submit", body, 1000, &reply);
	free(body);
	if (st != NATS_NO_RESPONDERS && st != NATS_TIMEOUT)
		fail_msg("%s was answered (%s): %s", what, natsStatus_GetText(st), reply ? reply : "");
	h_log("%s: %s", what, natsStatus_GetText(st));
}

#define DRAIN_STREAMS 20

static void test_drain_all_done(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_stream *s[DRAIN_STREAMS];
	struct h_daemon *d = start_streams(20000, 30, "drain", "slow stream", s, DRAIN_STREAMS, &c);
	unsigned long long t0 = util_now_ms();
	h_daemon_signal(d, SIGTERM);
	h_daemon_expect_log(d, "draining: left the queue group", 3000);

	/* This dispatcher left the queue group and there is no other. */
	h_sleep_ms(200);
	expect_unanswered(c, "r-drain-late", "a submit after SIGTERM");

	for (int i = 0; i < DRAIN_STREAMS; i++) {
		h_stream_done(s[i], 15000);
		char *text = h_stream_text(s[i], "token");
		assert_int_equal(strlen(text), strlen("tok0 ") * 10 + strlen("tok10 ") * 20);
		free(text);
	}
	assert_int_equal(h_daemon_wait_exit(d, 10000), 0);
	h_log("drained %d streams and exited %llu ms after SIGTERM", DRAIN_STREAMS, util_now_ms() - t0);
	assert_true(h_daemon_log_contains(d, "stopped"));
	assert_false(h_daemon_log_contains(d, "grace period"));
	assert_int_equal(h_mock_stat(mock, "client_aborts"), 0);
}

static void test_drain_grace(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_stream *s[3];
	struct h_daemon *d = start_streams(500, 200, "grace", "longer than the grace period", s, 3, &c);
	unsigned long long t0 = util_now_ms();
	h_daemon_signal(d, SIGTERM);
	for (int i = 0; i < 3; i++)
		h_stream_expect_error(s[i], "shutting_down", 10000);
	unsigned long long ended = util_now_ms() - t0;
	h_log("streams cut %llu ms after SIGTERM (grace 500 ms)", ended);
	/* A lower bound only: they ran on through the grace period. */
	if (ended < 400)
		fail_msg("streams were cut %llu ms after SIGTERM, before the 500 ms grace period", ended);
	for (int i = 0; i < 3; i++)
		assert_true(h_stream_count(s[i]) > 3);
	assert_int_equal(h_daemon_wait_exit(d, 10000), 0);
	h_daemon_expect_log(d, "grace period of 500 ms over", 0);
}

static void test_drain_second_signal(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_stream *s[3];
	struct h_daemon *d = start_streams(30000, 400, "second", "a twenty second stream", s, 3, &c);
	h_daemon_signal(d, SIGTERM);
	h_daemon_expect_log(d, "draining: left the queue group", 3000);
	h_sleep_ms(300);
	for (int i = 0; i < 3; i++)
		assert_int_equal(h_stream_wait_terminal(s[i], 0), false);
	unsigned long long t0 = util_now_ms();
	h_daemon_signal(d, SIGTERM);
	/* At once means well within the 30 s grace period. */
	for (int i = 0; i < 3; i++)
		h_stream_expect_error(s[i], "shutting_down", 5000);
	int code = h_daemon_wait_exit(d, 5000);
	h_log("second SIGTERM: streams ended and the daemon exited (status %d) within %llu ms", code,
	      util_now_ms() - t0);
	assert_int_equal(code, 0);
	h_daemon_expect_log(d, "second stop signal", 0);
}

/* Submits a stub request and returns the milliseconds from the submit to its
 * first event. */
static unsigned long long stub_first_token_ms(struct h_client *c, const char *rid)
{
	struct h_stream *s = h_stream_open(c, rid);
	unsigned long long t0 = util_now_ms();
	h_submit_simple(c, rid, "hi");
	if (!h_stream_wait_count(s, 1, 10000))
		fail_msg("stream %s: no first event within 10 s", rid);
	unsigned long long ms = util_now_ms() - t0;
	assert_string_equal(h_jstr(h_stream_done(s, 20000), "model"), "stub");
	h_stream_close(s);
	return ms;
}

static void test_reload(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon_opts quiet = { .quiet = true };
	struct h_daemon *d = h_daemon_spawn(
		nats, prefix, "{\"log\":{\"level\":\"info\"},\"stub\":{\"ttft_ms\":50,\"inter_token_ms\":5}}", &quiet);
	assert_true(h_daemon_wait_ready(d, 15000));
	struct h_client *c = h_client_connect(nats, prefix);

	unsigned long long ms = stub_first_token_ms(c, "r-reload-1");
	h_log("first token after %llu ms at stub.ttft_ms 50", ms);
	/* A malformed cancel is logged at debug level only. */
	h_publish(c, "chat.cancel", "not json");
	h_sleep_ms(300);
	assert_false(h_daemon_log_contains(d, "ignored a malformed cancel"));

	/* A stream running across the reload keeps going. */
	h_daemon_rewrite_config(d, "{\"stub\":{\"inter_token_ms\":30}}");
	h_daemon_signal(d, SIGHUP);
	h_daemon_expect_log(d, "reload: configuration re-read", 3000);
	struct h_stream *across =
		h_stream_submit(c, "r-reload-across", "a stream that outlives a reload of the configuration file");
	assert_true(h_stream_wait_count(across, 3, 5000));

	h_daemon_rewrite_config(d, "{\"log\":{\"level\":\"debug\"},\"stub\":{\"ttft_ms\":400,\"inter_token_ms\":5},"
				   "\"prompt\":{\"system\":\"be brief\"}}");
	h_daemon_signal(d, SIGHUP);
	h_daemon_expect_log(d, "reload: log.level changed", 3000);
	h_daemon_expect_log(d, "reload: stub.ttft_ms changed", 3000);
	assert_int_equal(h_daemon_log_count(d, "reload: configuration re-read"), 2);
	h_stream_done(across, 20000);

	h_publish(c, "chat.cancel", "not json");
	h_daemon_expect_log(d, "ignored a malformed cancel", 3000);
	ms = stub_first_token_ms(c, "r-reload-2");
	h_log("first token after %llu ms at stub.ttft_ms 400", ms);
	if (ms < 400)
		fail_msg("first token after %llu ms; stub.ttft_ms 400 was not applied", ms);

	/* A broken file: the running configuration stays. */
	size_t good_len = 0;
	char *good = h_read_file(d->cfg_path, &good_len);
	assert_non_null(good);
	h_write_file(d->cfg_path, "{\"stub\": {\"ttft_ms\": 50,", strlen("{\"stub\": {\"ttft_ms\": 50,"));
	h_daemon_signal(d, SIGHUP);
	h_daemon_expect_log(d, "reload failed, keeping the running configuration", 3000);
	assert_true(h_proc_alive(d->proc));
	ms = stub_first_token_ms(c, "r-reload-3");
	h_log("first token after %llu ms after a failed reload", ms);
	if (ms < 400)
		fail_msg("first token after %llu ms; the failed reload changed stub.ttft_ms", ms);

	/* A key that needs a restart is reported and not applied. */
	const char *newprefix = h_prefix();
	h_write_file(d->cfg_path, good, good_len);
	free(good);
	char *text = xasprintf("{\"subject_prefix\":\"%s\"}", newprefix);
	h_daemon_rewrite_config(d, text);
	free(text);
	h_daemon_signal(d, SIGHUP);
	h_daemon_expect_log(d, "reload: subject_prefix changed but needs a restart", 3000);
	assert_int_equal(h_daemon_log_count(d, "reload: configuration re-read"), 3);
	ms = stub_first_token_ms(c, "r-reload-4");
	assert_true(ms >= 400);
	struct h_client *c2 = h_client_connect(nats, newprefix);
	expect_unanswered(c2, "r-newprefix", "a submit on the new subject_prefix (applied live?)");
	h_daemon_stop_ok(d);
}

H_MAIN("integ_service", &bed, H_TEST(test_notify), H_TEST(test_notify_ready_waits_for_nats),
       H_TEST(test_watchdog_pid), H_TEST(test_drain_all_done), H_TEST(test_drain_grace),
       H_TEST(test_drain_second_signal), H_TEST(test_reload))
