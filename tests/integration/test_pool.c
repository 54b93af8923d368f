/* Integration: the LLM pool against several mock replicas. Weighted
 * balancing, ejection of a replica that refuses connections and its return,
 * retries before the first token (503, 429 with Retry-After, a stall), no
 * retry after tokens or on a 4xx, the probe subject, the active probe and
 * connection reuse. Requests run sequentially unless a test says otherwise,
 * so which replica a request reached can be told from the mocks' counters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define KEY "sk-pool-SECRETkey0123456789abcdef"
#define FAST_SCRIPT "{\"mode\":\"stream\",\"tokens\":2,\"ttft_ms\":0,\"inter_ms\":0}"

static struct h_nats *nats;
static struct h_mock *ma, *mb;
static const struct h_bed bed = { .nats = &nats,
				  .mocks = { { &ma, "mock-pool-a" }, { &mb, "mock-pool-b" } },
				  .script = FAST_SCRIPT };

/* Applies ModelConfig model with two equal replicas, and KEY when key is set. */
static void use_two(struct h_client *c, struct h_daemon *d, const char *model, const char *a, const char *b, bool key)
{
	h_apply_config(c, d, model, "{\"model\":\"%s\",%s\"endpoints\":[{\"base_url\":\"%s\"},{\"base_url\":\"%s\"}]}",
		       model, key ? "\"api_key\":\"" KEY "\"," : "", a, b);
}

static char *dead_url(int port)
{
	return xasprintf("http://127.0.0.1:%d/v1", port);
}

/* One request, start to end, its stream checked with only a short wait for
 * strays, so that hundreds of requests stay fast. Returns the terminal event
 * (caller owns) and, when text is given, the concatenated token deltas. */
static json_t *run_one(struct h_client *c, const char *rid, char **text)
{
	struct h_stream *s = h_stream_submit(c, rid, "hello");
	json_t *t = json_incref(h_stream_settle(s, 15000, 20));
	if (text)
		*text = h_stream_text(s, "token");
	h_stream_close(s);
	return t;
}

static void expect_route(json_t *t, const char *type, long long attempts, const char *endpoint)
{
	char *d = json_dumps(t, JSON_COMPACT);
	if (strcmp(h_jstr(t, "type"), type) || h_jint(t, "attempts") != attempts ||
	    strcmp(h_jstr(t, "endpoint"), endpoint))
		fail_msg("expected %s with attempts %lld on %s, got %s", type, attempts, endpoint, d);
	free(d);
}

/* 1. Weights 3:1, 400 requests, 20 in flight at a time. */
static void test_weights(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	h_apply_config(c, d, "m-w",
		       "{\"provider\":\"vllm\",\"model\":\"m-w\",\"api_key\":\"%s\",\"endpoints\":["
		       "{\"base_url\":\"%s\",\"weight\":3},{\"base_url\":\"%s\",\"weight\":1}]}",
		       KEY, ma->base_url, mb->base_url);
	enum { N = 400, CONC = 20 };
	int on_a = 0, on_b = 0;
	for (int base = 0; base < N; base += CONC) {
		struct h_stream *s[CONC];
		char rid[CONC][32];
		for (int k = 0; k < CONC; k++) {
			snprintf(rid[k], sizeof(rid[k]), "w-%d", base + k);
			s[k] = h_stream_submit(c, rid[k], "hi");
		}
		for (int k = 0; k < CONC; k++)
			if (!h_stream_wait_terminal(s[k], 15000))
				fail_msg("%s: no terminal event", rid[k]);
		h_sleep_ms(30);
		for (int k = 0; k < CONC; k++) {
			json_t *t = h_stream_settle(s[k], 0, 0);
			h_stream_expect_text(s[k], "tok0 tok1 ");
			const char *ep = h_jstr(t, "endpoint");
			expect_route(t, "done", 1, !strcmp(ep, ma->base_url) ? ma->base_url : mb->base_url);
			if (!strcmp(ep, ma->base_url))
				on_a++;
			else
				on_b++;
			h_stream_close(s[k]);
		}
	}
	long long ra = h_mock_stat(ma, "requests"), rb = h_mock_stat(mb, "requests");
	h_log("weights 3:1: mock A %lld, mock B %lld requests; events name A %d, B %d", ra, rb, on_a, on_b);
	assert_int_equal(ra + rb, N);
	assert_int_equal(on_a, ra);
	assert_int_equal(on_b, rb);
	assert_in_range(ra, 270, 330);
	assert_in_range(rb, 70, 130);
	h_daemon_stop_ok(d);
}

/* Whether the daemon logged needle; fails the test once end (util_now_ms)
 * passed without it. */
static bool logged_by(struct h_daemon *d, const char *needle, unsigned long long end)
{
	if (h_daemon_log_contains(d, needle))
		return true;
	if (util_now_ms() > end) {
		h_daemon_dump_log(d);
		fail_msg("no \"%s\"", needle);
	}
	return false;
}

/* 2. A replica that refuses connections: every request still succeeds, the
 * first few after a retry; after eject_after failures it is ejected, the
 * trial after the cooldown fails and doubles it; once something listens
 * there again it returns to rotation. */
static void test_refused_eject_and_return(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	int port = h_free_port();
	char *dead = dead_url(port);
	use_two(c, d, "m-dead", dead, ma->base_url, true);
	char ejected[256], ejected2[256], back[256];
	snprintf(ejected, sizeof(ejected), "pool: endpoint %s ejected for 1000 ms after 3 consecutive failures",
		 dead);
	snprintf(ejected2, sizeof(ejected2), "pool: endpoint %s ejected for 2000 ms", dead);
	snprintf(back, sizeof(back), "pool: endpoint %s is back in rotation", dead);

	int n = 0, retried = 0;
	unsigned long long last_submit = 0;
	char rid[32];
	while (!h_daemon_log_contains(d, ejected)) {
		if (n >= 20) {
			h_daemon_dump_log(d);
			fail_msg("no \"%s\" after %d requests", ejected, n);
		}
		snprintf(rid, sizeof(rid), "dead-%d", n++);
		last_submit = util_now_ms();
		json_t *t = run_one(c, rid, NULL);
		expect_route(t, "done", h_jint(t, "attempts"), ma->base_url);
		if (h_jint(t, "attempts") == 2)
			retried++;
		else
			assert_int_equal(h_jint(t, "attempts"), 1);
		json_decref(t);
	}
	h_log("ejected after %d requests, %d of them retried", n, retried);
	assert_int_equal(retried, 3);

	/* Within the cooldown every request goes straight to the healthy one. */
	int straight = 0;
	while (util_now_ms() < last_submit + 850) {
		snprintf(rid, sizeof(rid), "dead-%d", n++);
		json_t *t = run_one(c, rid, NULL);
		expect_route(t, "done", 1, ma->base_url);
		json_decref(t);
		straight++;
	}
	h_log("%d requests went straight to the healthy replica during the cooldown", straight);
	assert_true(straight >= 3);

	/* The trial after the cooldown fails (nothing listens yet): twice as long. */
	unsigned long long end = util_now_ms() + 4000;
	bool saw_trial_retry = false;
	while (!logged_by(d, ejected2, end)) {
		snprintf(rid, sizeof(rid), "dead-%d", n++);
		json_t *t = run_one(c, rid, NULL);
		expect_route(t, "done", h_jint(t, "attempts"), ma->base_url);
		saw_trial_retry |= h_jint(t, "attempts") == 2;
		json_decref(t);
		h_sleep_ms(20);
	}
	assert_true(saw_trial_retry);

	/* Recovery: a replica on the dead port; its trial succeeds. */
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	const char *args[] = { "--port", portstr, "--tokens", "2", "--ttft-ms", "0", "--inter-ms", "0", NULL };
	struct h_mock *revived = h_mock_start("mock-pool-revived", args);
	assert_int_equal(revived->port, port);
	end = util_now_ms() + 6000;
	while (!logged_by(d, back, end)) {
		snprintf(rid, sizeof(rid), "dead-%d", n++);
		json_t *t = run_one(c, rid, NULL);
		assert_string_equal(h_jstr(t, "type"), "done");
		json_decref(t);
		h_sleep_ms(20);
	}
	long long before = h_mock_stat(revived, "requests");
	int served_by_revived = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(rid, sizeof(rid), "dead-%d", n++);
		json_t *t = run_one(c, rid, NULL);
		assert_string_equal(h_jstr(t, "type"), "done");
		assert_int_equal(h_jint(t, "attempts"), 1);
		served_by_revived += !strcmp(h_jstr(t, "endpoint"), dead);
		json_decref(t);
	}
	long long after = h_mock_stat(revived, "requests");
	h_log("back in rotation: the revived replica served %d of 20 (mock counted %lld)", served_by_revived,
	      after - before);
	assert_int_equal(after - before, served_by_revived);
	assert_in_range(served_by_revived, 5, 15);
	h_mock_stop(revived);
	free(dead);
	h_daemon_stop_ok(d);
}

/* Runs requests until mock m counted want requests; returns the terminal
 * event of the request that made it so (caller owns). */
static json_t *run_until_hit(struct h_client *c, struct h_mock *m, long long want, const char *tag, int *n)
{
	char rid[48];
	for (int i = 0; i < 8; i++) {
		snprintf(rid, sizeof(rid), "%s-%d", tag, (*n)++);
		json_t *t = run_one(c, rid, NULL);
		if (h_mock_stat(m, "requests") >= want)
			return t;
		json_decref(t);
	}
	fail_msg("%s: mock %s never reached %lld requests", tag, m->name, want);
	return NULL;
}

/* 3a. 503 once, then 200: retried on the other replica; the next request
 * that reaches the first replica is served by it. */
static void test_503_then_200(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	use_two(c, d, "m-503", ma->base_url, mb->base_url, true);
	h_mock_next(ma, "{\"mode\":\"status\",\"status\":503,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"overloaded\\\"}}\"}");
	int n = 0;
	json_t *t = run_until_hit(c, ma, 1, "r503", &n);
	expect_route(t, "done", 2, mb->base_url);
	json_decref(t);
	char needle[256];
	snprintf(needle, sizeof(needle), "attempt 1 on %s failed (upstream_http: HTTP 503: overloaded); retrying",
		 ma->base_url);
	assert_true(h_daemon_log_contains(d, needle));
	t = run_until_hit(c, ma, 2, "r503", &n);
	expect_route(t, "done", 1, ma->base_url);
	json_decref(t);
	assert_false(h_daemon_log_contains(d, "ejected"));
	h_daemon_stop_ok(d);
}

/* 3b. 429 with Retry-After: 2 from a replica (the mock cannot send headers,
 * so a raw server answers): retried elsewhere, and the replica stays out of
 * rotation for about 2 s although it failed only once (eject_after 3). */
static void test_429_retry_after(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	char *resp = h_http_response(429, "Retry-After: 2\r\n", "application/json",
				     "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}");
	struct h_rawsrv *raw = h_rawsrv_start(resp);
	free(resp);
	char *raw_url = dead_url(h_rawsrv_port(raw));
	use_two(c, d, "m-429", raw_url, mb->base_url, true);
	int n = 0;
	char rid[32];
	unsigned long long hit_at = 0;
	json_t *t = NULL;
	for (; n < 8 && h_rawsrv_count(raw) == 0; n++) {
		snprintf(rid, sizeof(rid), "r429-%d", n);
		hit_at = util_now_ms();
		json_decref(t);
		t = run_one(c, rid, NULL);
	}
	assert_int_equal(h_rawsrv_count(raw), 1);
	expect_route(t, "done", 2, mb->base_url);
	json_decref(t);
	/* With equal weights the next pick would be the raw server again, but
	 * Retry-After keeps it out. */
	int straight = 0;
	while (util_now_ms() < hit_at + 1700) {
		snprintf(rid, sizeof(rid), "r429-%d", n++);
		t = run_one(c, rid, NULL);
		expect_route(t, "done", 1, mb->base_url);
		json_decref(t);
		straight++;
		h_sleep_ms(20);
	}
	h_log("%d requests avoided the replica during its Retry-After", straight);
	assert_true(straight >= 3);
	assert_int_equal(h_rawsrv_count(raw), 1);
	/* Afterwards it is tried again. */
	unsigned long long end = util_now_ms() + 4000;
	while (h_rawsrv_count(raw) < 2 && util_now_ms() < end) {
		snprintf(rid, sizeof(rid), "r429-%d", n++);
		t = run_one(c, rid, NULL);
		assert_string_equal(h_jstr(t, "type"), "done");
		json_decref(t);
		h_sleep_ms(50);
	}
	assert_int_equal(h_rawsrv_count(raw), 2);
	free(raw_url);
	h_daemon_stop_ok(d);
}

/* 4. A replica that stalls before the first token: the first-token timeout
 * ends the attempt, the request is retried elsewhere and succeeds; the
 * stalled replica sees the client go away. */
static void run_stall(bool after_headers)
{
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, "{\"timeouts\":{\"first_token_ms\":400}}", &c);
	use_two(c, d, "m-stall", ma->base_url, mb->base_url, false);
	h_mock_script(ma, "{\"mode\":\"stall\",\"after_headers\":%s}", after_headers ? "true" : "false");
	int n = 0;
	char rid[32];
	json_t *t = NULL;
	unsigned long long took = 0;
	for (; n < 8 && h_mock_stat(ma, "requests") == 0; n++) {
		snprintf(rid, sizeof(rid), "stall-%d", n);
		unsigned long long t0 = util_now_ms();
		json_decref(t);
		t = run_one(c, rid, NULL);
		took = util_now_ms() - t0;
	}
	assert_int_equal(h_mock_stat(ma, "requests"), 1);
	expect_route(t, "done", 2, mb->base_url);
	json_decref(t);
	h_log("stall (after_headers %d): retried, took %llu ms", after_headers, took);
	assert_in_range(took, 400, 5000);
	char needle[256];
	snprintf(needle, sizeof(needle), "attempt 1 on %s failed (upstream_timeout: no first token within 400 ms)",
		 ma->base_url);
	assert_true(h_daemon_log_contains(d, needle));
	assert_true(h_mock_wait_stat(ma, "client_aborts", 1, 3000) >= 1);
	assert_int_equal(h_mock_stat(ma, "active"), 0);
	h_daemon_stop_ok(d);
}

static void test_stall_before_first_token(void **state)
{
	(void)state;
	run_stall(false);
}

static void test_stall_after_headers(void **state)
{
	(void)state;
	run_stall(true);
}

/* 5. A replica that dies after tokens went out: an error, no retry, the
 * tokens exactly once. */
static void test_close_after_tokens(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	use_two(c, d, "m-close", ma->base_url, mb->base_url, false);
	h_mock_script(ma, "{\"mode\":\"close\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":5}");
	int errors = 0, dones = 0;
	for (int i = 0; i < 6; i++) {
		char rid[32], *text;
		snprintf(rid, sizeof(rid), "close-%d", i);
		json_t *t = run_one(c, rid, &text);
		if (!strcmp(h_jstr(t, "type"), "error")) {
			expect_route(t, "error", 1, ma->base_url);
			assert_string_equal(h_jstr(t, "error.code"), "upstream_protocol");
			assert_string_equal(text, "tok0 tok1 tok2 ");
			assert_int_equal(h_jint(t, "seq"), 3);
			errors++;
		} else {
			expect_route(t, "done", 1, mb->base_url);
			assert_string_equal(text, "tok0 tok1 ");
			dones++;
		}
		free(text);
		json_decref(t);
	}
	h_log("close after tokens: %d errors, %d done", errors, dones);
	assert_true(errors >= 2);
	assert_true(dones >= 2);
	assert_int_equal(h_mock_stat(ma, "requests"), errors);
	assert_int_equal(h_mock_stat(mb, "requests"), dones);
	assert_false(h_daemon_log_contains(d, "retrying"));
	h_daemon_stop_ok(d);
}

/* 6. A 4xx is the request's fault: no retry, no ejection. */
static void run_4xx(int status, const char *message)
{
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	use_two(c, d, "m-4xx", ma->base_url, mb->base_url, true);
	h_mock_script(ma,
		      "{\"mode\":\"status\",\"status\":%d,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"%s\\\","
		      "\\\"type\\\":\\\"invalid_request_error\\\"}}\"}",
		      status, message);
	char expect_msg[256];
	snprintf(expect_msg, sizeof(expect_msg), "HTTP %d: %s", status, message);
	int errors = 0, dones = 0;
	for (int i = 0; i < 8; i++) {
		char rid[32];
		snprintf(rid, sizeof(rid), "c4xx-%d-%d", status, i);
		json_t *t = run_one(c, rid, NULL);
		if (!strcmp(h_jstr(t, "type"), "error")) {
			expect_route(t, "error", 1, ma->base_url);
			assert_string_equal(h_jstr(t, "error.code"), "upstream_http");
			assert_string_equal(h_jstr(t, "error.message"), expect_msg);
			errors++;
		} else {
			expect_route(t, "done", 1, mb->base_url);
			dones++;
		}
		json_decref(t);
	}
	h_log("HTTP %d: %d errors, %d done", status, errors, dones);
	/* Never ejected, so the replicas keep alternating. */
	assert_int_equal(errors, 4);
	assert_int_equal(dones, 4);
	assert_int_equal(h_mock_stat(ma, "requests") + h_mock_stat(mb, "requests"), 8);
	assert_false(h_daemon_log_contains(d, "ejected"));
	assert_false(h_daemon_log_contains(d, "retrying"));
	h_daemon_stop_ok(d);
}

static void test_4xx_not_retried(void **state)
{
	(void)state;
	run_4xx(401, "Invalid API key");
	h_mock_reset(ma);
	h_mock_reset(mb);
	h_mock_script(mb, FAST_SCRIPT);
	run_4xx(400, "max_tokens is too large");
}

/* 7. The probe subject: its answer never carries the key. */
static json_t *probe(struct h_client *c, const char *body)
{
	json_t *j = h_probe(c, body);
	char *text = json_dumps(j, JSON_COMPACT);
	H_ASSERT_NOT_CONTAINS(text, KEY);
	H_ASSERT_NOT_CONTAINS(text, "SECRETkey");
	free(text);
	return j;
}

static void test_probe_subject(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, "{\"pool\":{\"probe_timeout_ms\":1500}}", &c);
	int port = h_free_port();
	char *dead = dead_url(port);
	char *hole = dead_url(h_blackhole_port());

	char *body = xasprintf("{\"provider\":\"openai\",\"model\":\"m-probe\",\"api_key\":\"%s\",\"endpoints\":["
			       "{\"base_url\":\"%s\"},{\"base_url\":\"%s\"},{\"base_url\":\"%s\"}]}",
			       KEY, ma->base_url, dead, hole);
	unsigned long long t0 = util_now_ms();
	json_t *a = probe(c, body);
	unsigned long long took = util_now_ms() - t0;
	free(body);
	char *dump = json_dumps(a, JSON_COMPACT);
	h_log("probe answer after %llu ms: %s", took, dump);
	free(dump);
	assert_true(json_is_false(json_object_get(a, "ok")));
	json_t *eps = json_object_get(a, "endpoints");
	assert_int_equal(json_array_size(eps), 3);
	json_t *e0 = json_array_get(eps, 0), *e1 = json_array_get(eps, 1), *e2 = json_array_get(eps, 2);
	assert_string_equal(h_jstr(e0, "base_url"), ma->base_url);
	assert_true(json_is_true(json_object_get(e0, "ok")));
	assert_true(h_jint(e0, "latency_ms") >= 0);
	assert_int_equal(h_jint(e0, "status"), 200);
	assert_true(json_is_null(json_object_get(e0, "error")));
	assert_string_equal(h_jstr(e1, "base_url"), dead);
	assert_true(json_is_false(json_object_get(e1, "ok")));
	assert_int_equal(h_jint(e1, "status"), 0);
	H_ASSERT_CONTAINS(h_jstr(e1, "error"), "cannot reach the backend");
	assert_string_equal(h_jstr(e2, "base_url"), hole);
	assert_true(json_is_false(json_object_get(e2, "ok")));
	/* curl's connect timeout (set to the probe timeout) fires first. */
	assert_true(strlen(h_jstr(e2, "error")) > 0);
	assert_in_range(h_jint(e2, "latency_ms"), 1400, 4000);
	json_decref(a);

	/* What the healthy one received: a one-token, non-streaming request. */
	assert_int_equal(h_mock_request_count(ma), 1);
	json_t *r0 = h_mock_chat_request(ma, 0, KEY);
	assert_int_equal(h_jint(r0, "body.max_tokens"), 1);
	assert_true(json_is_false(h_jpath(r0, "body.stream")));
	assert_string_equal(h_jstr(r0, "body.model"), "m-probe");
	json_decref(r0);

	/* All healthy: ok. */
	body = xasprintf("{\"model\":\"m-probe\",\"endpoints\":[{\"base_url\":\"%s\"},{\"base_url\":\"%s\"}]}",
			 ma->base_url, mb->base_url);
	a = probe(c, body);
	free(body);
	assert_true(json_is_true(json_object_get(a, "ok")));
	assert_int_equal(json_array_size(json_object_get(a, "endpoints")), 2);
	json_decref(a);

	/* A 401 whose body echoes the key: reported, the key redacted. */
	h_mock_next(ma, "{\"mode\":\"status\",\"status\":401,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"Incorrect API key "
			"provided: %s\\\"}}\"}",
		    KEY);
	body = xasprintf("{\"model\":\"m-probe\",\"base_url\":\"%s\",\"api_key\":\"%s\"}", ma->base_url, KEY);
	a = probe(c, body);
	free(body);
	assert_true(json_is_false(json_object_get(a, "ok")));
	json_t *e = json_array_get(json_object_get(a, "endpoints"), 0);
	assert_int_equal(h_jint(e, "status"), 401);
	H_ASSERT_CONTAINS(h_jstr(e, "error"), "HTTP 401: Incorrect API key provided");
	json_decref(a);

	/* Not ready, not JSON, wrong types: ok false with an error, no endpoints. */
	static const char *const bad[] = { "{\"model\":\"m-probe\"}", "{}", "null", "not json",
					   "{\"model\":\"m\",\"base_url\":42}",
					   "{\"model\":\"m\",\"api_key\":\"" KEY "\",\"base_url\":7}" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		a = probe(c, bad[i]);
		assert_true(json_is_false(json_object_get(a, "ok")));
		assert_true(strlen(h_jstr(a, "error")) > 0);
		assert_int_equal(json_array_size(json_object_get(a, "endpoints")), 0);
		json_decref(a);
	}
	/* The probe is not applied. */
	assert_false(h_daemon_log_contains(d, "model config applied: model=m-probe"));
	h_daemon_assert_log_lacks(d, KEY);
	free(dead);
	free(hole);
	h_daemon_stop_ok(d);
}

/* The active probe (pool.probe_interval_ms): a replica that refuses
 * connections is ejected by probes alone. */
static void test_active_probe(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d =
		h_daemon_start_client(nats, "{\"pool\":{\"probe_interval_ms\":150,\"probe_timeout_ms\":500}}", &c);
	int port = h_free_port();
	char *dead = dead_url(port);
	use_two(c, d, "m-active", ma->base_url, dead, false);
	char ejected[256];
	snprintf(ejected, sizeof(ejected), "pool: endpoint %s ejected", dead);
	/* Docs: "every replica of the active model gets GET {base_url}/models
	 * that often; a failed probe counts as a failure (and can eject)". */
	if (!h_daemon_wait_log(d, ejected, 3000)) {
		h_daemon_dump_log(d);
		fail_msg("the active probe did not eject %s before any request used it", dead);
	}
	/* The healthy replica got GET /models, which are not chat requests. */
	assert_int_equal(h_mock_stat(ma, "requests"), 0);
	json_t *t;
	for (int i = 1; i <= 5; i++) {
		char rid[32];
		snprintf(rid, sizeof(rid), "active-%d", i);
		t = run_one(c, rid, NULL);
		expect_route(t, "done", 1, ma->base_url);
		json_decref(t);
	}
	free(dead);
	h_daemon_stop_ok(d);
}

/* 8. Keep-alive: sequential requests to one replica share a connection. */
static void test_connection_reuse(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	h_apply_config(c, d, "m-reuse", "{\"model\":\"m-reuse\",\"api_key\":\"%s\",\"endpoints\":[{\"base_url\":\"%s\"}]}",
		       KEY, ma->base_url);
	h_mock_reset(ma);
	h_mock_script(ma, FAST_SCRIPT);
	for (int i = 0; i < 50; i++) {
		char rid[32];
		snprintf(rid, sizeof(rid), "reuse-%d", i);
		json_t *t = run_one(c, rid, NULL);
		expect_route(t, "done", 1, ma->base_url);
		json_decref(t);
	}
	long long conns = h_mock_stat(ma, "connections"), reqs = h_mock_stat(ma, "requests");
	h_log("50 sequential requests used %lld connections", conns);
	assert_int_equal(reqs, 50);
	assert_in_range(conns, 1, 5);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_pool", &bed, H_TEST(test_weights), H_TEST(test_refused_eject_and_return),
       H_TEST(test_503_then_200), H_TEST(test_429_retry_after), H_TEST(test_stall_before_first_token),
       H_TEST(test_stall_after_headers), H_TEST(test_close_after_tokens), H_TEST(test_4xx_not_retried),
       H_TEST(test_probe_subject), H_TEST(test_active_probe), H_TEST(test_connection_reuse))
