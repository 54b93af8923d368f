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

#include "harness.h"

static struct h_nats *nats;
static struct h_mock *mock;

static int group_setup(void **state)
{
	(void)state;
	nats = h_nats_start(NULL);
	mock = h_mock_start("mock-svc", NULL);
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
	h_nats_resume(nats); /* after a test that failed with it halted */
	h_mock_reset(mock);
	return 0;
}

static unsigned long long mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
}

static char *notify_expect(struct h_notify *nf, struct h_daemon *d, const char *line, int timeout_ms)
{
	char *dg = h_notify_wait(nf, line, timeout_ms);
	if (!dg) {
		h_daemon_dump_log(d);
		fail_msg("no \"%s\" on the notify socket within %d ms; received:\n%s", line, timeout_ms,
			 h_notify_seen(nf));
	}
	return dg;
}

/* h_daemon_spawn with the overrides as JSON text. */
static struct h_daemon *spawn(const char *prefix, const char *overrides, const struct h_daemon_opts *o)
{
	json_t *j = overrides ? h_json_parse(overrides) : NULL;
	struct h_daemon *d = h_daemon_spawn(nats, prefix, j, o);
	json_decref(j);
	return d;
}

static void rewrite(struct h_daemon *d, const char *overrides)
{
	json_t *j = h_json_parse(overrides);
	h_daemon_rewrite_config(d, j);
	json_decref(j);
}

static void wait_log(struct h_daemon *d, const char *needle, int timeout_ms)
{
	if (!h_daemon_wait_log(d, needle, timeout_ms)) {
		h_daemon_dump_log(d);
		fail_msg("no \"%s\" in the daemon log within %d ms", needle, timeout_ms);
	}
}

/* READY=1 only once NATS is connected and the subscriptions confirmed: the
 * daemon starts while no server runs, and the server comes later. */
static void test_notify_ready_waits_for_nats(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_notify *nf = h_notify_open("notify-late");
	char *env_sock = xasprintf("NOTIFY_SOCKET=%s", h_notify_path(nf));
	const char *env[] = { env_sock, NULL };
	struct h_daemon_opts o = { .env = env };

	h_nats_halt(nats);
	struct h_daemon *d = spawn(prefix, "{\"nats\":{\"reconnect_wait_ms\":100}}", &o);
	char *dg = h_notify_wait(nf, "READY=1", 1000);
	if (dg)
		fail_msg("READY=1 while no NATS server runs: %s", dg);
	assert_true(h_proc_alive(d->proc));
	assert_false(h_daemon_log_contains(d, "dispatcher ready"));

	h_nats_resume(nats);
	free(notify_expect(nf, d, "READY=1", 10000));
	assert_true(h_daemon_log_contains(d, "dispatcher ready: subscriptions confirmed"));
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_stream *s = h_stream_open(c, "r-late-1");
	h_submit_simple(c, "r-late-1", "x");
	assert_string_equal(h_jstr(h_stream_finish(s, 10000), "type"), "done");
	h_daemon_signal(d, SIGTERM);
	free(notify_expect(nf, d, "STOPPING=1", 3000));
	assert_int_equal(h_daemon_wait_exit(d, 10000), 0);
	free(env_sock);
}

static void test_notify(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_notify *nf = h_notify_open("notify");
	char *env_sock = xasprintf("NOTIFY_SOCKET=%s", h_notify_path(nf));
	const char *env[] = { env_sock, "WATCHDOG_USEC=400000", NULL };
	struct h_daemon_opts o = { .env = env };

	struct h_daemon *d = spawn(prefix, "{\"stub\":{\"inter_token_ms\":50}}", &o);
	char *dg;
	dg = notify_expect(nf, d, "READY=1", 10000);
	free(dg);
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
	struct h_stream *s = h_stream_open(c, "r-notify-1");
	h_submit_simple(c, "r-notify-1", "a long answer please, one that streams for several seconds");
	dg = notify_expect(nf, d, "STATUS=serving: stub, 1 requests in flight", 5000);
	free(dg);
	h_cancel(c, "r-notify-1");
	h_stream_expect_error(s, "cancelled", 5000);
	dg = notify_expect(nf, d, "STATUS=serving: stub, 0 requests in flight", 5000);
	free(dg);

	/* A model from the control plane shows in STATUS at once. */
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-status\"}",
			       mock->base_url);
	h_publish_config(c, body);
	free(body);
	dg = notify_expect(nf, d, "STATUS=serving: m-status, 0 requests in flight", 3000);
	free(dg);

	/* Reload: RELOADING=1 with the monotonic time of the reload, then READY=1. */
	unsigned long long before = mono_usec();
	h_daemon_signal(d, SIGHUP);
	dg = notify_expect(nf, d, "RELOADING=1", 3000);
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
	dg = notify_expect(nf, d, "READY=1", 3000);
	free(dg);

	/* A stream in flight: STOPPING=1 and STATUS says draining. */
	struct h_stream *s2 = h_stream_open(c, "r-notify-2");
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":40,\"ttft_ms\":0,\"inter_ms\":20}");
	h_submit_simple(c, "r-notify-2", "x");
	assert_true(h_stream_wait_count(s2, 2, 5000));
	h_daemon_signal(d, SIGTERM);
	dg = notify_expect(nf, d, "STOPPING=1", 3000);
	free(dg);
	dg = notify_expect(nf, d, "STATUS=draining: m-status, 1 requests in flight", 3000);
	free(dg);
	assert_string_equal(h_jstr(h_stream_finish(s2, 10000), "type"), "done");
	assert_int_equal(h_daemon_wait_exit(d, 10000), 0);
	h_log("notify datagrams:\n%s", h_notify_seen(nf));
	free(env_sock);
}

/* sd_watchdog_enabled(3): WATCHDOG_PID names the process meant; another
 * process must not send pings. */
static void test_watchdog_pid(void **state)
{
	(void)state;
	struct h_notify *nf_self = h_notify_open("notify-self");
	struct h_notify *nf_other = h_notify_open("notify-other");
	char *env_self = xasprintf("NOTIFY_SOCKET=%s", h_notify_path(nf_self));
	char *env_other = xasprintf("NOTIFY_SOCKET=%s", h_notify_path(nf_other));
	const char *e_self[] = { env_self, "WATCHDOG_USEC=400000", NULL };
	const char *e_other[] = { env_other, "WATCHDOG_USEC=400000", "WATCHDOG_PID=1", NULL };
	struct h_daemon_opts o_self = { .env = e_self, .watchdog_pid_self = true };
	struct h_daemon_opts o_other = { .env = e_other };

	struct h_daemon *self = h_daemon_spawn(nats, h_prefix(), NULL, &o_self);
	struct h_daemon *other = h_daemon_spawn(nats, h_prefix(), NULL, &o_other);
	assert_true(h_daemon_wait_ready(self, 15000));
	assert_true(h_daemon_wait_ready(other, 15000));
	free(notify_expect(nf_other, other, "READY=1", 3000));
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
	free(env_self);
	free(env_other);
}

/* Waits until every stream saw at least n events. */
static void wait_all_count(struct h_stream **s, size_t count, size_t n)
{
	for (size_t i = 0; i < count; i++)
		if (!h_stream_wait_count(s[i], n, 10000))
			fail_msg("stream %zu has %zu events, expected >= %zu", i, h_stream_count(s[i]), n);
}

#define DRAIN_STREAMS 20

static void test_drain_all_done(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_startf(nats, prefix, "{\"shutdown\":{\"grace_ms\":20000}}");
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_stream *s[DRAIN_STREAMS];
	char rid[64];

	h_use_mock(c, d, mock, "m-drain", "", -1);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":30,\"ttft_ms\":0,\"inter_ms\":50}");
	for (int i = 0; i < DRAIN_STREAMS; i++) {
		snprintf(rid, sizeof(rid), "r-drain-%d", i);
		s[i] = h_stream_open(c, rid);
		h_submit_simple(c, rid, "slow stream");
	}
	wait_all_count(s, DRAIN_STREAMS, 2);
	unsigned long long t0 = util_now_ms();
	h_daemon_signal(d, SIGTERM);
	wait_log(d, "draining: left the queue group", 3000);

	/* This dispatcher left the queue group and there is no other. */
	h_sleep_ms(200);
	char *reply = NULL;
	natsStatus st = h_request(c, "chat.submit",
				  "{\"request_id\":\"r-drain-late\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
				  1000, &reply);
	if (st != NATS_NO_RESPONDERS && st != NATS_TIMEOUT)
		fail_msg("a submit after SIGTERM was answered (%s): %s", natsStatus_GetText(st), reply ? reply : "");
	h_log("submit after SIGTERM: %s", natsStatus_GetText(st));

	for (int i = 0; i < DRAIN_STREAMS; i++) {
		json_t *t = h_stream_finish(s[i], 15000);
		char *dump = json_dumps(t, JSON_COMPACT);
		if (strcmp(h_jstr(t, "type"), "done"))
			fail_msg("stream %d did not end with done during the drain: %s", i, dump);
		free(dump);
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
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_startf(nats, prefix, "{\"shutdown\":{\"grace_ms\":500}}");
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_stream *s[3];
	char rid[64];

	h_use_mock(c, d, mock, "m-grace", "", -1);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":200,\"ttft_ms\":0,\"inter_ms\":50}");
	for (int i = 0; i < 3; i++) {
		snprintf(rid, sizeof(rid), "r-grace-%d", i);
		s[i] = h_stream_open(c, rid);
		h_submit_simple(c, rid, "longer than the grace period");
	}
	wait_all_count(s, 3, 2);
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
	wait_log(d, "grace period of 500 ms over", 0);
}

static void test_drain_second_signal(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_startf(nats, prefix, "{\"shutdown\":{\"grace_ms\":30000}}");
	struct h_client *c = h_client_connect(nats, prefix);
	struct h_stream *s[3];
	char rid[64];

	h_use_mock(c, d, mock, "m-second", "", -1);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":400,\"ttft_ms\":0,\"inter_ms\":50}");
	for (int i = 0; i < 3; i++) {
		snprintf(rid, sizeof(rid), "r-second-%d", i);
		s[i] = h_stream_open(c, rid);
		h_submit_simple(c, rid, "a twenty second stream");
	}
	wait_all_count(s, 3, 2);
	h_daemon_signal(d, SIGTERM);
	wait_log(d, "draining: left the queue group", 3000);
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
	wait_log(d, "second stop signal", 0);
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
	json_t *t = h_stream_finish(s, 20000);
	assert_string_equal(h_jstr(t, "type"), "done");
	assert_string_equal(h_jstr(t, "model"), "stub");
	h_stream_close(s);
	return ms;
}

static void test_reload(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon_opts quiet = { .quiet = true };
	struct h_daemon *d = spawn(prefix, "{\"log\":{\"level\":\"info\"},\"stub\":{\"ttft_ms\":50,\"inter_token_ms\":5}}",
				   &quiet);
	assert_true(h_daemon_wait_ready(d, 15000));
	struct h_client *c = h_client_connect(nats, prefix);

	unsigned long long ms = stub_first_token_ms(c, "r-reload-1");
	h_log("first token after %llu ms at stub.ttft_ms 50", ms);
	/* A malformed cancel is logged at debug level only. */
	h_publish(c, "chat.cancel", "not json");
	h_sleep_ms(300);
	assert_false(h_daemon_log_contains(d, "ignored a malformed cancel"));

	/* A stream running across the reload keeps going. */
	rewrite(d, "{\"stub\":{\"inter_token_ms\":30}}");
	h_daemon_signal(d, SIGHUP);
	wait_log(d, "reload: configuration re-read", 3000);
	struct h_stream *across = h_stream_open(c, "r-reload-across");
	h_submit_simple(c, "r-reload-across", "a stream that outlives a reload of the configuration file");
	assert_true(h_stream_wait_count(across, 3, 5000));

	rewrite(d, "{\"log\":{\"level\":\"debug\"},\"stub\":{\"ttft_ms\":400,\"inter_token_ms\":5},"
		   "\"prompt\":{\"system\":\"be brief\"}}");
	h_daemon_signal(d, SIGHUP);
	wait_log(d, "reload: log.level changed", 3000);
	wait_log(d, "reload: stub.ttft_ms changed", 3000);
	assert_int_equal(h_daemon_log_count(d, "reload: configuration re-read"), 2);
	assert_string_equal(h_jstr(h_stream_finish(across, 20000), "type"), "done");

	h_publish(c, "chat.cancel", "not json");
	wait_log(d, "ignored a malformed cancel", 3000);
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
	wait_log(d, "reload failed, keeping the running configuration", 3000);
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
	rewrite(d, text);
	free(text);
	h_daemon_signal(d, SIGHUP);
	wait_log(d, "reload: subject_prefix changed but needs a restart", 3000);
	assert_int_equal(h_daemon_log_count(d, "reload: configuration re-read"), 3);
	ms = stub_first_token_ms(c, "r-reload-4");
	assert_true(ms >= 400);
	struct h_client *c2 = h_client_connect(nats, newprefix);
	char *reply = NULL;
	natsStatus st = h_request(c2, "chat.submit",
				  "{\"request_id\":\"r-newprefix\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
				  1000, &reply);
	if (st != NATS_NO_RESPONDERS && st != NATS_TIMEOUT)
		fail_msg("the new subject_prefix was applied live (%s): %s", natsStatus_GetText(st), reply ? reply : "");
	h_daemon_stop_ok(d);
}

int main(void)
{
	h_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_notify, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_notify_ready_waits_for_nats, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_pid, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_drain_all_done, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_drain_grace, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_drain_second_signal, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, h_test_teardown),
	};
	return cmocka_run_group_tests_name("integ_service", tests, group_setup, group_teardown);
}
