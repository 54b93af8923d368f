/* Integration: the upstream call. What reaches the backend (prompt, memory,
 * params, key), cancel, HTTP errors and their redaction, a backend that dies,
 * refuses connections or answers something that is not a finished SSE stream. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define KEY "sk-proj-SECRETabcdef0123456789XYZ"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats,
				  .mocks = { { &mock, "mock-up" } },
				  .script = "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}" };

/* A daemon on this test's prefix, pointed at the mock with KEY. */
static struct h_daemon *start_on_mock(const char *overrides, struct h_client **c)
{
	struct h_daemon *d = h_daemon_start_client(nats, overrides, c);
	h_use_mock(*c, d, mock, "m-up", KEY, 1);
	return d;
}

/* The key must never leave the daemon: not in events, not in its log. */
static void assert_no_key(struct h_stream *s, struct h_daemon *d)
{
	json_t *ev = h_stream_events(s);
	char *all = json_dumps(ev, JSON_COMPACT);
	H_ASSERT_NOT_CONTAINS(all, KEY);
	H_ASSERT_NOT_CONTAINS(all, "SECRETabcdef");
	free(all);
	json_decref(ev);
	h_daemon_assert_log_lacks(d, KEY);
	h_daemon_assert_log_lacks(d, "SECRETabcdef");
}

static void test_memory_reaches_backend(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock("{\"prompt\":{\"system\":\"You are Sundynix, a kind assistant.\"}}", &c);
	const char *profile = "姓名: 老王; 爱好: 钓鱼; quote: \"a\\b\" {profile} 100%";
	json_t *req = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}],s:{s:s,s:[s,s]}}", "request_id",
				"r-mem-1", "session_id", "s-1", "user_id", "u-1", "messages", "role", "user", "content",
				"你好", "role", "assistant", "content", "你好！", "role", "user", "content", "我住哪里？",
				"memory", "profile", profile, "facts", "住在杭州", "养了一只猫");
	struct h_stream *s = h_stream_open(c, "r-mem-1");
	json_t *ack = h_submit(c, req, 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);
	json_decref(req);
	json_t *t = h_stream_done(s, 10000);
	assert_string_equal(h_jstr(t, "finish_reason"), "stop");
	assert_int_equal(h_jint(t, "usage.completion_tokens"), 5);
	assert_int_equal(h_jint(t, "usage.prompt_tokens"), 4); /* the mock counts the messages it got */
	assert_int_equal(h_jint(t, "usage.total_tokens"), 9);
	h_stream_expect_text(s, "tok0 tok1 tok2 tok3 tok4 ");

	json_t *body = h_mock_last_body(mock);
	assert_string_equal(h_jstr(body, "model"), "m-up");
	assert_true(json_is_true(json_object_get(body, "stream")));
	assert_true(json_is_true(h_jpath(body, "stream_options.include_usage")));
	json_t *msgs = json_object_get(body, "messages");
	assert_int_equal(json_array_size(msgs), 4);
	json_t *sys = json_array_get(msgs, 0);
	assert_string_equal(h_jstr(sys, "role"), "system");
	const char *content = h_jstr(sys, "content");
	h_log("system message sent upstream: %s", content);
	assert_true(strncmp(content, "You are Sundynix, a kind assistant.", 35) == 0);
	H_ASSERT_CONTAINS(content, profile);
	H_ASSERT_CONTAINS(content, "住在杭州");
	H_ASSERT_CONTAINS(content, "养了一只猫");
	assert_true(strstr(content, "住在杭州") < strstr(content, "养了一只猫"));
	assert_string_equal(h_jstr(json_array_get(msgs, 1), "role"), "user");
	assert_string_equal(h_jstr(json_array_get(msgs, 1), "content"), "你好");
	assert_string_equal(h_jstr(json_array_get(msgs, 2), "role"), "assistant");
	assert_string_equal(h_jstr(json_array_get(msgs, 2), "content"), "你好！");
	assert_string_equal(h_jstr(json_array_get(msgs, 3), "content"), "我住哪里？");
	json_decref(body);

	/* The request's own system message: one system message upstream, ours first. */
	req = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:{s:s}}", "request_id", "r-mem-2", "messages", "role", "system",
			"content", "Answer in one sentence.", "role", "user", "content", "hi", "memory", "profile",
			"name: Alice");
	s = h_stream_open(c, "r-mem-2");
	ack = h_submit(c, req, 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);
	json_decref(req);
	h_stream_done(s, 10000);
	body = h_mock_last_body(mock);
	msgs = json_object_get(body, "messages");
	assert_int_equal(json_array_size(msgs), 2);
	content = h_jstr(json_array_get(msgs, 0), "content");
	assert_string_equal(h_jstr(json_array_get(msgs, 0), "role"), "system");
	assert_true(strncmp(content, "You are Sundynix, a kind assistant.", 35) == 0);
	H_ASSERT_CONTAINS(content, "Answer in one sentence.");
	H_ASSERT_CONTAINS(content, "name: Alice");
	assert_string_equal(h_jstr(json_array_get(msgs, 1), "role"), "user");
	json_decref(body);
	h_daemon_stop_ok(d);
}

static void test_params_pass_through(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	const char *req = "{\"request_id\":\"r-params\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			  "\"params\":{\"temperature\":0.25,\"top_p\":0.9,\"max_tokens\":77,\"stop\":[\"END\",\"STOP\"],"
			  "\"seed\":42,\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,"
			  "\"model\":\"evil-model\",\"stream\":false,\"n\":3,\"logit_bias\":{\"1\":5},\"user\":\"x\","
			  "\"functions\":[],\"api_key\":\"nope\"}}";
	struct h_stream *s = h_stream_open(c, "r-params");
	json_t *ack = h_submit_raw(c, req, strlen(req), 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);
	h_stream_done(s, 10000);
	json_t *body = h_mock_last_body(mock);
	char *dump = json_dumps(body, JSON_COMPACT);
	h_log("upstream body: %s", dump);
	assert_true(json_real_value(json_object_get(body, "temperature")) == 0.25);
	assert_true(json_real_value(json_object_get(body, "top_p")) == 0.9);
	assert_int_equal(h_jint(body, "max_tokens"), 77);
	assert_int_equal(h_jint(body, "seed"), 42);
	assert_true(json_real_value(json_object_get(body, "presence_penalty")) == 0.5);
	assert_true(json_real_value(json_object_get(body, "frequency_penalty")) == -0.5);
	json_t *stop = json_object_get(body, "stop");
	assert_int_equal(json_array_size(stop), 2);
	assert_string_equal(json_string_value(json_array_get(stop, 0)), "END");
	assert_string_equal(h_jstr(body, "model"), "m-up");
	assert_true(json_is_true(json_object_get(body, "stream")));
	static const char *const dropped[] = { "n", "logit_bias", "user", "functions", "api_key", "params" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(dropped); i++)
		if (json_object_get(body, dropped[i]))
			fail_msg("param \"%s\" reached the backend: %s", dropped[i], dump);
	free(dump);
	json_decref(body);
	h_daemon_stop_ok(d);
}

static void test_reasoning_events(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":2,\"reasoning_tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
	struct h_stream *s = h_stream_submit(c, "r-reason", "think");
	h_stream_done(s, 10000);
	json_t *ev = h_stream_events(s);
	assert_int_equal(json_array_size(ev), 6);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(h_jstr(json_array_get(ev, i), "type"), "reasoning");
	assert_string_equal(h_jstr(json_array_get(ev, 3), "type"), "token");
	json_decref(ev);
	h_daemon_stop_ok(d);
}

static void test_cancel_mid_stream(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":200,\"ttft_ms\":0,\"inter_ms\":20}");
	struct h_stream *s = h_stream_submit(c, "r-cancel", "long one");
	assert_true(h_stream_wait_count(s, 3, 5000));
	h_cancel(c, "r-cancel");
	h_stream_expect_error(s, "cancelled", 3000);
	assert_true(h_stream_count(s) < 150);
	assert_int_equal(h_mock_wait_stat(mock, "client_aborts", 1, 3000), 1);
	assert_int_equal(h_mock_stat(mock, "completed"), 0);
	h_daemon_stop_ok(d);
}

static void check_http_error(int status, const char *backend_msg)
{
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	/* OpenAI echoes (part of) the key in its 401 message; the daemon must not. */
	h_mock_next(mock,
		    "{\"mode\":\"status\",\"status\":%d,\"content_type\":\"application/json\","
		    "\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"%s: " KEY
		    "\\\",\\\"type\\\":\\\"invalid_request_error\\\"}}\"}",
		    status, backend_msg);
	char rid[32];
	snprintf(rid, sizeof(rid), "r-http-%d", status);
	struct h_stream *s = h_stream_submit(c, rid, "hi");
	const char *msg = h_jstr(h_stream_expect_error(s, "upstream_http", 10000), "error.message");
	h_log("error message: %s", msg);
	char st[16];
	snprintf(st, sizeof(st), "%d", status);
	H_ASSERT_CONTAINS(msg, st);
	H_ASSERT_CONTAINS(msg, backend_msg);
	assert_true(strlen(msg) <= 512);
	json_decref(h_mock_chat_request(mock, 0, KEY));
	h_daemon_stop_ok(d);
	assert_no_key(s, d);
}

static void test_http_401(void **state)
{
	(void)state;
	check_http_error(401, "Incorrect API key provided");
}

static void test_http_500(void **state)
{
	(void)state;
	check_http_error(500, "The server is overloaded");
}

static bool is_upstream_failure(const char *code)
{
	return !strcmp(code, "upstream_protocol") || !strcmp(code, "upstream_unavailable") ||
	       !strcmp(code, "upstream_http");
}

static void test_backend_closes_mid_stream(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	h_mock_next(mock, "{\"mode\":\"close\",\"tokens\":4,\"ttft_ms\":0,\"inter_ms\":10}");
	struct h_stream *s = h_stream_submit(c, "r-close", "hi");
	json_t *t = h_stream_finish(s, 10000);
	char *dump = json_dumps(t, JSON_COMPACT);
	h_log("terminal after close: %s", dump);
	if (strcmp(h_jstr(t, "type"), "error") || !is_upstream_failure(h_jstr(t, "error.code")))
		fail_msg("expected an upstream error event, got %s", dump);
	free(dump);
	h_stream_expect_text(s, "tok0 tok1 tok2 tok3 ");
	h_daemon_stop_ok(d);
}

static void test_backend_killed_mid_stream(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	const char *args[] = { "--tokens", "500", "--inter-ms", "20", NULL };
	struct h_mock *victim = h_mock_start("mock-victim", args);
	h_use_mock(c, d, victim, "m-victim", KEY, 1);
	struct h_stream *s = h_stream_submit(c, "r-killed", "hi");
	assert_true(h_stream_wait_count(s, 3, 5000));
	h_mock_kill(victim);
	json_t *t = h_stream_finish(s, 10000);
	char *dump = json_dumps(t, JSON_COMPACT);
	h_log("terminal after kill: %s", dump);
	if (strcmp(h_jstr(t, "type"), "error") || !is_upstream_failure(h_jstr(t, "error.code")))
		fail_msg("expected an upstream error event, got %s", dump);
	free(dump);
	/* The next request finds nothing listening. */
	struct h_stream *s2 = h_stream_submit(c, "r-killed-2", "hi");
	h_stream_expect_error(s2, "upstream_unavailable", 10000);
	h_daemon_stop_ok(d);
}

static void test_connection_refused(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", h_free_port());
	h_use_url(c, d, url, "m-refused", KEY, -1);
	struct h_stream *s = h_stream_submit(c, "r-refused", "hi");
	h_stream_expect_error(s, "upstream_unavailable", 10000);
	h_daemon_stop_ok(d);
	assert_no_key(s, d);
}

static void test_not_sse(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	h_mock_next(mock, "{\"mode\":\"raw\",\"status\":200,\"content_type\":\"application/json\","
			  "\"raw\":\"{\\\"id\\\":\\\"x\\\",\\\"object\\\":\\\"chat.completion\\\",\\\"choices\\\":"
			  "[{\\\"index\\\":0,\\\"message\\\":{\\\"role\\\":\\\"assistant\\\",\\\"content\\\":\\\"hi\\\"},"
			  "\\\"finish_reason\\\":\\\"stop\\\"}]}\"}");
	struct h_stream *s = h_stream_submit(c, "r-notsse", "hi");
	h_stream_expect_error(s, "upstream_protocol", 10000);
	h_daemon_stop_ok(d);
}

static void test_stream_without_end(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(NULL, &c);
	h_mock_next(mock, "{\"mode\":\"raw\",\"status\":200,\"content_type\":\"text/event-stream\","
			  "\"raw\":\"data: {\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{\\\"content\\\":\\\"A\\\"},"
			  "\\\"finish_reason\\\":null}]}\\n\\n"
			  "data: {\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{\\\"content\\\":\\\"B\\\"},"
			  "\\\"finish_reason\\\":null}]}\\n\\n\"}");
	struct h_stream *s = h_stream_submit(c, "r-noend", "hi");
	h_stream_expect_error(s, "upstream_protocol", 10000);
	h_stream_expect_text(s, "AB");

	/* A broken JSON chunk is a protocol error too. */
	h_mock_next(mock, "{\"mode\":\"raw\",\"status\":200,\"content_type\":\"text/event-stream\","
			  "\"raw\":\"data: {\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{\\\"content\\\"\\n\\n"
			  "data: [DONE]\\n\\n\"}");
	struct h_stream *s2 = h_stream_submit(c, "r-badjson", "hi");
	h_stream_expect_error(s2, "upstream_protocol", 10000);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_upstream", &bed, H_TEST(test_memory_reaches_backend), H_TEST(test_params_pass_through),
       H_TEST(test_reasoning_events), H_TEST(test_cancel_mid_stream), H_TEST(test_http_401),
       H_TEST(test_http_500), H_TEST(test_backend_closes_mid_stream), H_TEST(test_backend_killed_mid_stream),
       H_TEST(test_connection_refused), H_TEST(test_not_sse), H_TEST(test_stream_without_end))
