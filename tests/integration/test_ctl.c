/* Integration: sundynixctl as a child process against a real nats-server and
 * the real daemon. Chat on the stub and on the mock, config set / clear /
 * serve, an upstream error, cancel, usage errors, the chat timeout and no
 * dispatcher. Every run is bounded by a timeout, and the api key must never
 * reach the ctl's output or the daemon's log. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define KEY "sk-ctl-SECRETmiddle0123456789abcdefXYZ"
#define KEY_PART "SECRETmiddle"
#define STUB_HELLO_ALICE                                                                                 \
	"Hello, Alice! You said: \"Hello\". No model is configured yet, so this is a placeholder reply from " \
	"sundynix-dispatcher.\n"
#define STUB_HELLO                                                                                   \
	"Hello! You said: \"Hello\". No model is configured yet, so this is a placeholder reply from " \
	"sundynix-dispatcher.\n"
#define FAST_SCRIPT "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-ctl" } }, .script = FAST_SCRIPT };

/* The ctl's output never holds the api key, whatever the command. */
static void expect_no_key(struct h_cmd *c)
{
	H_ASSERT_NOT_CONTAINS(c->out, KEY_PART);
	H_ASSERT_NOT_CONTAINS(c->err, KEY_PART);
}

static void expect_log_no_key(struct h_daemon *d)
{
	h_daemon_assert_log_lacks(d, KEY_PART);
}

static void wait_log(struct h_daemon *d, const char *needle, size_t count)
{
	h_daemon_expect_log_count(d, needle, count, 5000);
}

/* `config set` pointing the daemon at the mock as model with revision rev. */
static void ctl_set_model(const char *prefix, struct h_daemon *d, const char *model, const char *rev)
{
	char needle[256];
	snprintf(needle, sizeof(needle), "model config applied: model=%s base_url=%s revision=%s ", model,
		 mock->base_url, rev);
	size_t before = h_daemon_log_count(d, needle);
	struct h_cmd *c = h_ctl_run(nats, prefix, 10000, "config", "set", "--base-url", mock->base_url, "--model", model,
				  "--api-key", KEY, "--revision", rev, NULL);
	h_cmd_expect(c, 0);
	expect_no_key(c);
	char want[512];
	snprintf(want, sizeof(want), "broadcast on %s.config.model.updated: model=%s base_url=%s revision=%s\n",
		 prefix, model, mock->base_url, rev);
	assert_string_equal(c->out, want);
	assert_string_equal(c->err, "");
	h_cmd_free(c);
	wait_log(d, needle, before + 1);
}

/* 1. chat on the stub: the reply on stdout, the summary on stderr. */
static void test_chat_stub(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);

	struct h_cmd *c = h_ctl_run(nats, prefix, 20000, "chat", "--profile", "name: Alice; hobby: fishing", "--fact",
				  "lives in Hangzhou", "Hello", NULL);
	h_cmd_expect(c, 0);
	assert_string_equal(c->out, STUB_HELLO_ALICE);
	H_ASSERT_CONTAINS(c->err, "[done: finish=stop model=stub ");
	/* Nothing else on stderr: the summary is its only line. */
	assert_int_equal(strncmp(c->err, "[done: finish=stop model=stub ", 30), 0);
	const char *nl = strchr(c->err, '\n');
	assert_non_null(nl);
	assert_string_equal(nl, "\n");
	h_log("ctl chat on the stub: %s", c->err);
	h_daemon_stop_ok(d);
}

/* 2 and 3. config set reaches the daemon and the mock gets the key; a stale
 * clear is ignored, a newer one brings the stub back. */
static void test_config_set_clear(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);

	ctl_set_model(prefix, d, "m", "3");
	struct h_cmd *c = h_ctl_run(nats, prefix, 20000, "chat", "Hi", NULL);
	h_cmd_expect(c, 0);
	expect_no_key(c);
	assert_string_equal(c->out, "tok0 tok1 tok2 \n");
	assert_string_equal(c->err, "[done: finish=stop model=m prompt=1 completion=3 total=4]\n");
	h_cmd_free(c);

	assert_int_equal(h_mock_request_count(mock), 1);
	json_t *r0 = h_mock_chat_request(mock, 0, KEY);
	assert_string_equal(h_jstr(r0, "body.model"), "m");
	json_decref(r0);

	/* Stale: ignored, the mock still answers. */
	c = h_ctl_run(nats, prefix, 10000, "config", "clear", "--revision", "2", NULL);
	h_cmd_expect(c, 0);
	char want[256];
	snprintf(want, sizeof(want), "broadcast on %s.config.model.updated: no model (stub) revision=2\n", prefix);
	assert_string_equal(c->out, want);
	h_cmd_free(c);
	wait_log(d, "model config ignored: stale revision 2 < 3 (from broadcast)", 1);
	c = h_ctl_run(nats, prefix, 20000, "chat", "Hi", NULL);
	h_cmd_expect(c, 0);
	assert_string_equal(c->out, "tok0 tok1 tok2 \n");
	h_cmd_free(c);

	/* Newer: the stub again, and the mock hears nothing more. */
	c = h_ctl_run(nats, prefix, 10000, "config", "clear", "--revision", "4", NULL);
	h_cmd_expect(c, 0);
	h_cmd_free(c);
	wait_log(d, "model config applied: none (stub) (from broadcast)", 1);
	c = h_ctl_run(nats, prefix, 20000, "chat", "Hello", NULL);
	h_cmd_expect(c, 0);
	assert_string_equal(c->out, STUB_HELLO);
	H_ASSERT_CONTAINS(c->err, "[done: finish=stop model=stub ");
	h_cmd_free(c);
	assert_int_equal(h_mock_stat(mock, "requests"), 2);

	expect_log_no_key(d);
	h_daemon_stop_ok(d);
	expect_log_no_key(d);
}

/* Writes body to path and starts `sundynixctl config serve` of it, waiting
 * until it serves. */
static struct h_cmd *config_serve(const char *prefix, const char *path, const char *body)
{
	h_write_file(path, body, strlen(body));
	struct h_cmd *serve = h_ctl_start(nats, prefix, "config", "serve", path, NULL);
	if (!h_wait_file(serve->err_path, "sundynixctl: serving ", 10000)) {
		h_cmd_stop(serve, 5000);
		fail_msg("config serve did not start: %s", serve->err);
	}
	return serve;
}

/* 4. config serve, started before the daemon, answers its startup request. */
static void test_config_serve(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	char *path = xasprintf("%s/modelcfg-%s.json", h_tmpdir(), prefix);
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"%s\",\"model\":\"m-served\","
			       "\"revision\":7}\n",
			       mock->base_url, KEY);
	struct h_cmd *serve = config_serve(prefix, path, body);
	free(body);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	wait_log(d, "(from control plane reply)", 1);
	char needle[256];
	snprintf(needle, sizeof(needle), "model config applied: model=m-served base_url=%s revision=7 ", mock->base_url);
	char *line = h_file_line(d->log_path, needle);
	if (!line) {
		h_daemon_dump_log(d);
		fail_msg("no \"%s\" in the daemon log", needle);
	}
	h_log("daemon: %s", line);
	H_ASSERT_CONTAINS(line, "(from control plane reply)");
	free(line);
	assert_true(h_wait_file(serve->err_path, "sundynixctl: answered a config request", 3000));

	struct h_cmd *c = h_ctl_run(nats, prefix, 20000, "chat", "Hi", NULL);
	h_cmd_expect(c, 0);
	assert_string_equal(c->out, "tok0 tok1 tok2 \n");
	H_ASSERT_CONTAINS(c->err, "[done: finish=stop model=m-served ");
	h_cmd_free(c);

	assert_true(h_proc_alive(serve->proc));
	h_cmd_stop(serve, 5000);
	h_cmd_expect(serve, 0);
	expect_no_key(serve);
	H_ASSERT_CONTAINS(serve->err, "model=m-served");
	expect_log_no_key(d);
	h_daemon_stop_ok(d);
	free(path);
}

/* 5. An upstream 401: exit 1, the error on stderr, nothing on stdout. */
static void test_upstream_401(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	ctl_set_model(prefix, d, "m-401", "1");
	h_mock_script(mock, "{\"mode\":\"status\",\"status\":401,\"body\":\"{\\\"error\\\":{\\\"message\\\":"
			    "\\\"Invalid API key\\\",\\\"type\\\":\\\"invalid_request_error\\\"}}\","
			    "\"content_type\":\"application/json\"}");
	struct h_cmd *c = h_ctl_run(nats, prefix, 20000, "chat", "Hi", NULL);
	h_cmd_expect(c, 1);
	assert_string_equal(c->out, "");
	H_ASSERT_CONTAINS(c->err, "error: upstream_http: HTTP 401: ");
	assert_string_equal(c->err, "error: upstream_http: HTTP 401: Invalid API key\n");
	expect_no_key(c);
	h_daemon_stop_ok(d);
}

/* 6. cancel from a second ctl ends a running chat. */
static void test_cancel(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	ctl_set_model(prefix, d, "m-slow", "1");
	/* 100 tokens 50 ms apart: five seconds unless cancelled. */
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":100,\"ttft_ms\":0,\"inter_ms\":50}");

	struct h_cmd *chat = h_ctl_start(nats, prefix, "chat", "--request-id", "r-ctl-1", "talk for a while", NULL);
	if (!h_wait_file(chat->out_path, "tok1 ", 10000)) {
		h_cmd_stop(chat, 5000);
		fail_msg("the chat printed no tokens: stdout \"%s\" stderr \"%s\"", chat->out, chat->err);
	}
	unsigned long long t0 = util_now_ms();
	struct h_cmd *c = h_ctl_run(nats, prefix, 10000, "cancel", "r-ctl-1", NULL);
	h_cmd_expect(c, 0);
	assert_string_equal(c->out, "");
	assert_string_equal(c->err, "");
	h_cmd_wait(chat, 5000);
	unsigned long long took = util_now_ms() - t0;
	h_log("chat ended %llu ms after the cancel started: %s", took, chat->err);
	h_cmd_expect(chat, 1);
	H_ASSERT_CONTAINS(chat->err, "error: cancelled");
	assert_int_equal(strncmp(chat->out, "tok0 tok1 ", 10), 0);
	H_ASSERT_NOT_CONTAINS(chat->out, "tok99 ");
	assert_true(took < 4000);
	assert_true(h_daemon_log_contains(d, "cancel requested"));
	assert_true(h_mock_wait_stat(mock, "client_aborts", 1, 3000) >= 1);
	assert_int_equal(h_mock_stat(mock, "completed"), 0);
	h_daemon_stop_ok(d);
}

static void expect_usage(const char *prefix, const char *msg, ...)
{
	va_list ap;
	va_start(ap, msg);
	struct h_cmd *c = h_ctl_startv(nats, prefix, ap);
	va_end(ap);
	h_cmd_wait(c, 10000);
	h_cmd_expect(c, 2);
	assert_string_equal(c->out, "");
	H_ASSERT_CONTAINS(c->err, msg);
	H_ASSERT_CONTAINS(c->err, "Try 'sundynixctl --help'.");
	h_cmd_free(c);
}

/* 7a. Usage errors exit 2 before touching the network. */
static void test_usage_errors(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	expect_usage(prefix, "unknown command 'frobnicate'", "frobnicate", NULL);
	expect_usage(prefix, "chat: expected one MESSAGE argument", "chat", NULL);
	expect_usage(prefix, "chat: expected one MESSAGE argument", "chat", "--profile", "name: Bob", NULL);
	expect_usage(prefix, "missing command", NULL);
	expect_usage(prefix, "config: unknown action 'bogus'", "config", "bogus", NULL);
	expect_usage(prefix, "option '--model' does not apply to 'chat'", "chat", "--model", "x", "hi", NULL);
	expect_usage(prefix, "--timeout: expected seconds", "chat", "--timeout", "0", "hi", NULL);
	expect_usage(prefix, "cancel: expected one REQUEST_ID argument", "cancel", NULL);
	expect_usage(prefix, "config set: --base-url and --model are required", "config", "set", "--model", "m", NULL);

	struct h_cmd *c = h_ctl_run(nats, prefix, 10000, "--help", NULL);
	h_cmd_expect(c, 0);
	H_ASSERT_CONTAINS(c->out, "Usage: sundynixctl");
	assert_string_equal(c->err, "");
}

/* 7b. --timeout on a stalled backend: exit 1 with a message, and the
 * request is cancelled so the backend sees the client go. */
static void test_timeout(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	ctl_set_model(prefix, d, "m-stall", "1");
	h_mock_script(mock, "{\"mode\":\"stall\",\"after_headers\":false}");
	unsigned long long t0 = util_now_ms();
	struct h_cmd *c = h_ctl_run(nats, prefix, 10000, "chat", "--timeout", "1", "--request-id", "r-ctl-to", "Hi", NULL);
	unsigned long long took = util_now_ms() - t0;
	h_log("chat --timeout 1 took %llu ms: %s", took, c->err);
	h_cmd_expect(c, 1);
	assert_string_equal(c->out, "");
	H_ASSERT_CONTAINS(c->err, "timed out after 1 s waiting for the stream of r-ctl-to");
	assert_in_range(took, 1000, 6000);
	wait_log(d, "cancel requested", 1);
	assert_true(h_mock_wait_stat(mock, "client_aborts", 1, 3000) >= 1);
	h_daemon_stop_ok(d);
}

/* 7c. Nobody to talk to: no dispatcher on the prefix, or no NATS at all. */
static void test_no_dispatcher(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	struct h_cmd *c = h_ctl_run(nats, prefix, 15000, "chat", "Hi", NULL);
	h_cmd_expect(c, 1);
	assert_string_equal(c->out, "");
	char want[256];
	snprintf(want, sizeof(want), "no dispatcher is listening on %s.chat.submit", prefix);
	H_ASSERT_CONTAINS(c->err, want);
	h_cmd_free(c);

	char url[64];
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", h_free_port());
	/* The later --nats wins. */
	c = h_ctl_run(nats, prefix, 15000, "--nats", url, "chat", "Hi", NULL);
	h_cmd_expect(c, 1);
	assert_string_equal(c->out, "");
	H_ASSERT_CONTAINS(c->err, "cannot connect to NATS at ");
	H_ASSERT_CONTAINS(c->err, url);
}

/* sundynixctl reads a ModelConfig with the daemon's own parser: a config
 * that names its replicas only in endpoints is served (it used to say "no
 * model (stub)"), a negative revision is taken as the daemon takes it, and
 * a config the daemon would refuse is refused before anything is sent. */
static void test_config_serve_endpoints_only(void **state)
{
	(void)state;
	const char *prefix = h_prefix();
	char *path = xasprintf("%s/endpoints-%s.json", h_tmpdir(), prefix);
	char *body = xasprintf("{\"provider\":\"vllm\",\"model\":\"m-eps\",\"revision\":-3,"
			       "\"endpoints\":[{\"base_url\":\"%s\",\"weight\":2}]}\n",
			       mock->base_url);
	struct h_cmd *serve = config_serve(prefix, path, body);
	free(body);
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	wait_log(d, "model config applied: model=m-eps", 1);
	struct h_cmd *c = h_ctl_run(nats, prefix, 20000, "chat", "Hi", NULL);
	h_cmd_expect(c, 0);
	H_ASSERT_CONTAINS(c->err, "[done: finish=stop model=m-eps ");
	h_cmd_free(c);
	h_cmd_stop(serve, 5000);
	h_cmd_expect(serve, 0);
	H_ASSERT_CONTAINS(serve->err, "model=m-eps");
	H_ASSERT_CONTAINS(serve->err, "revision=-3");
	H_ASSERT_NOT_CONTAINS(serve->err, "no model (stub)");
	h_cmd_free(serve);

	/* What the daemon refuses, sundynixctl refuses, saying why, before sending. */
	body = xasprintf("{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"ftp://h/v1\"}]}");
	h_write_file(path, body, strlen(body));
	free(body);
	c = h_ctl_run(nats, prefix, 10000, "config", "serve", path, NULL);
	assert_int_not_equal(c->code, 0);
	H_ASSERT_CONTAINS(c->err, "endpoints[0].base_url: must be an http:// or https:// URL");
	h_cmd_free(c);
	h_daemon_stop_ok(d);
	free(path);
}

H_MAIN("integ_ctl", &bed, H_TEST(test_chat_stub), H_TEST(test_config_set_clear), H_TEST(test_config_serve),
       H_TEST(test_config_serve_endpoints_only),
       H_TEST(test_upstream_401), H_TEST(test_cancel), H_TEST(test_usage_errors), H_TEST(test_timeout),
       H_TEST(test_no_dispatcher))
