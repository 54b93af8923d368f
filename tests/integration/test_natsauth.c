/* Integration: NATS authentication against a real nats-server configured for
 * it: user/password (from $CREDENTIALS_DIRECTORY, as LoadCredential= gives
 * it), token, mutual TLS with certificates made here by the openssl CLI, a
 * wrong password, and config/nats-permissions.conf as shipped. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

static struct h_mock *mock;
static char *pki; /* directory of the generated certificates */

static int group_setup(void **state)
{
	(void)state;
	mock = h_mock_start("mock-auth", NULL);
	pki = xasprintf("%s/pki", h_tmpdir());
	mkdir(pki, 0700);
	/* P-256 keys: quick to make. The server certificate names 127.0.0.1 and
	 * localhost in subjectAltName, as clients check the SAN, not the CN. */
	h_sh("openssl",
	     "cd '%s' && "
	     "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem "
	     "-days 2 -subj /CN=sundynix-test-ca && "
	     "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr "
	     "-subj /CN=localhost && "
	     "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' >server.ext && "
	     "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
	     "-extfile server.ext && "
	     "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout client.key -out client.csr "
	     "-subj /CN=sundynix-dispatcher && "
	     "printf 'extendedKeyUsage=clientAuth\\n' >client.ext && "
	     "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 "
	     "-extfile client.ext",
	     pki);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	h_mock_stop(mock);
	free(pki);
	return 0;
}

static int setup(void **state)
{
	h_test_setup(state);
	h_mock_reset(mock);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}");
	return 0;
}

static struct h_daemon *spawn(struct h_nats *n, const char *prefix, const char *overrides, const char *const *env)
{
	struct h_daemon_opts o = { .env = env };
	json_t *j = overrides ? h_json_parse(overrides) : NULL;
	struct h_daemon *d = h_daemon_spawn(n, prefix, j, &o);
	json_decref(j);
	if (!h_daemon_wait_ready(d, 15000))
		fail_msg("daemon %s did not become ready", d->name);
	return d;
}

/* One request to its end; returns the done event's model (caller frees). */
static char *chat(struct h_client *c, const char *rid)
{
	struct h_stream *s = h_stream_open(c, rid);
	h_submit_simple(c, rid, "hello");
	json_t *t = h_stream_finish(s, 15000);
	char *dump = json_dumps(t, JSON_COMPACT);
	if (strcmp(h_jstr(t, "type"), "done"))
		fail_msg("request %s did not end with done: %s", rid, dump);
	free(dump);
	char *model = xstrdup(h_jstr(t, "model"));
	h_stream_close(s);
	return model;
}

static void expect_stub_chat(struct h_client *c, const char *rid)
{
	char *model = chat(c, rid);
	assert_string_equal(model, "stub");
	free(model);
}

static void assert_log_lacks(const char *path, const char *secret)
{
	if (h_file_contains(path, secret))
		fail_msg("%s contains the secret \"%s\"", path, secret);
}

static void test_user_password_credentials_dir(void **state)
{
	(void)state;
	const char *pw = "pw-4f1c9e2b7a";
	struct h_nats *n = h_nats_start("authorization {\n  users = [\n    { user: \"svc-disp\", password: "
					"\"pw-4f1c9e2b7a\" }\n    { user: \"svc-gw\", password: \"pw-gw-55\" }\n  ]\n}\n");
	char *dir = xasprintf("%s/credentials-up", h_tmpdir());
	mkdir(dir, 0700);
	char *file = xasprintf("%s/nats-password", dir);
	char *content = xasprintf("%s\n", pw);
	h_write_file(file, content, strlen(content));
	char *env_dir = xasprintf("CREDENTIALS_DIRECTORY=%s", dir);
	const char *env[] = { env_dir, NULL };
	const char *prefix = h_prefix();

	/* A relative password_file resolves against $CREDENTIALS_DIRECTORY. */
	struct h_daemon *d =
		spawn(n, prefix, "{\"nats\":{\"user\":\"svc-disp\",\"password_file\":\"nats-password\"}}", env);
	struct h_client_auth a = { .user = "svc-gw", .password = "pw-gw-55" };
	struct h_client *c = h_client_connect_auth(n, prefix, &a);
	expect_stub_chat(c, "r-up-1");
	h_daemon_stop_ok(d);
	assert_log_lacks(d->log_path, pw);
	free(env_dir);
	free(content);
	free(file);
	free(dir);
}

static void test_token(void **state)
{
	(void)state;
	const char *token = "tok-8d0a6c1f3e";
	struct h_nats *n = h_nats_start("authorization {\n  token: \"tok-8d0a6c1f3e\"\n}\n");
	char *file = xasprintf("%s/nats-token", h_tmpdir());
	h_write_file(file, token, strlen(token));
	char *over = xasprintf("{\"nats\":{\"token_file\":\"%s\"}}", file);
	const char *prefix = h_prefix();
	struct h_daemon *d = spawn(n, prefix, over, NULL);
	struct h_client_auth a = { .token = token };
	struct h_client *c = h_client_connect_auth(n, prefix, &a);
	expect_stub_chat(c, "r-token-1");
	h_daemon_stop_ok(d);
	assert_log_lacks(d->log_path, token);
	free(over);
	free(file);
}

static void test_tls_mutual(void **state)
{
	(void)state;
	char *conf = xasprintf("tls {\n  cert_file: \"%s/server.pem\"\n  key_file: \"%s/server.key\"\n"
			       "  ca_file: \"%s/ca.pem\"\n  verify: true\n  timeout: 5\n}\n",
			       pki, pki, pki);
	struct h_nats *n = h_nats_start(conf);
	free(conf);
	char *ca = xasprintf("%s/ca.pem", pki), *cert = xasprintf("%s/client.pem", pki),
	     *key = xasprintf("%s/client.key", pki);
	char *over = xasprintf("{\"nats\":{\"tls\":{\"ca_file\":\"%s\",\"cert_file\":\"%s\",\"key_file\":\"%s\"}}}", ca,
			       cert, key);
	const char *prefix = h_prefix();
	struct h_daemon *d = spawn(n, prefix, over, NULL);
	struct h_client_auth a = { .ca_file = ca, .cert_file = cert, .key_file = key };
	struct h_client *c = h_client_connect_auth(n, prefix, &a);
	expect_stub_chat(c, "r-tls-1");
	/* And a model behind it. */
	h_use_mock(c, d, mock, "m-tls", "", -1);
	char *model = chat(c, "r-tls-2");
	assert_string_equal(model, "m-tls");
	free(model);
	h_daemon_stop_ok(d);
	free(over);
	free(ca);
	free(cert);
	free(key);
}

/* Without the client certificate the server (verify: true) refuses us. */
static void test_tls_without_client_cert_fails(void **state)
{
	(void)state;
	char *conf = xasprintf("tls {\n  cert_file: \"%s/server.pem\"\n  key_file: \"%s/server.key\"\n"
			       "  ca_file: \"%s/ca.pem\"\n  verify: true\n  timeout: 5\n}\n",
			       pki, pki, pki);
	struct h_nats *n = h_nats_start(conf);
	free(conf);
	char *over = xasprintf("{\"nats\":{\"tls\":{\"ca_file\":\"%s/ca.pem\"},\"connect_timeout_ms\":2000}}", pki);
	struct h_daemon_opts o = { 0 };
	json_t *j = h_json_parse(over);
	struct h_daemon *d = h_daemon_spawn(n, h_prefix(), j, &o);
	json_decref(j);
	free(over);
	int code = h_daemon_wait_exit(d, 15000);
	h_log("without a client certificate: exit status %d", code);
	if (code <= 0) {
		h_daemon_dump_log(d);
		fail_msg("expected the daemon to exit non-zero within 15 s, got %d (-1: still running)", code);
	}
	assert_false(h_daemon_log_contains(d, "dispatcher ready"));
}

static void test_wrong_password(void **state)
{
	(void)state;
	const char *wrong = "pw-WRONG-31337";
	struct h_nats *n = h_nats_start("authorization {\n  users = [\n    { user: \"svc-disp\", password: "
					"\"pw-right-1\" }\n  ]\n}\n");
	char *over = xasprintf("{\"nats\":{\"user\":\"svc-disp\",\"password\":\"%s\"}}", wrong);
	struct h_daemon_opts o = { 0 };
	json_t *j = h_json_parse(over);
	unsigned long long t0 = util_now_ms();
	struct h_daemon *d = h_daemon_spawn(n, h_prefix(), j, &o);
	json_decref(j);
	free(over);
	int code = h_daemon_wait_exit(d, 10000);
	h_log("wrong password: exit status %d after %llu ms", code, util_now_ms() - t0);
	if (code <= 0) {
		h_daemon_dump_log(d);
		fail_msg("expected the daemon to exit non-zero within 10 s with a wrong password, got %d "
			 "(-1: still running)",
			 code);
	}
	h_daemon_dump_log(d);
	/* A line an operator understands. */
	if (!h_daemon_log_contains(d, "Authorization") && !h_daemon_log_contains(d, "authorization"))
		fail_msg("the log does not say the NATS authorization failed");
	assert_false(h_daemon_log_contains(d, "dispatcher ready"));
	assert_log_lacks(d->log_path, wrong);
}

/* config/nats-permissions.conf with only its passwords replaced. */
static char *permissions_conf(const char *disp_pw, const char *gw_pw, const char *ctl_pw)
{
	char *text = h_read_file("config/nats-permissions.conf", NULL);
	if (!text)
		fail_msg("cannot read config/nats-permissions.conf (tests run from the repository root)");
	static const char *const from[] = { "CHANGE-ME-dispatcher", "CHANGE-ME-gateway", "CHANGE-ME-control" };
	const char *to[] = { disp_pw, gw_pw, ctl_pw };
	for (size_t i = 0; i < 3; i++) {
		char *at = strstr(text, from[i]);
		if (!at)
			fail_msg("config/nats-permissions.conf has no \"%s\" placeholder", from[i]);
		struct buf b;
		buf_init(&b);
		buf_append(&b, text, (size_t)(at - text));
		buf_append_str(&b, to[i]);
		buf_append_str(&b, at + strlen(from[i]));
		free(text);
		text = b.data;
		if (strstr(text, from[i]))
			fail_msg("\"%s\" appears twice in config/nats-permissions.conf", from[i]);
	}
	return text;
}

static void test_permissions(void **state)
{
	(void)state;
	/* The file grants subjects under the default prefix and queue group. */
	const char *prefix = "sundynix";
	char *conf = permissions_conf("pw-disp-7e3", "pw-gw-9a1", "pw-ctl-2c5");
	struct h_nats *n = h_nats_start(conf);
	free(conf);
	char *dir = xasprintf("%s/credentials-perm", h_tmpdir());
	mkdir(dir, 0700);
	char *file = xasprintf("%s/nats-password", dir);
	h_write_file(file, "pw-disp-7e3\n", strlen("pw-disp-7e3\n"));
	char *env_dir = xasprintf("CREDENTIALS_DIRECTORY=%s", dir);
	const char *env[] = { env_dir, NULL };

	struct h_client_auth ga = { .user = "sundynix-gateway", .password = "pw-gw-9a1" };
	struct h_client_auth ca = { .user = "sundynix-control", .password = "pw-ctl-2c5" };
	struct h_client *gw = h_client_connect_auth(n, prefix, &ga);
	struct h_client *ctl = h_client_connect_auth(n, prefix, &ca);

	/* The control plane answers the startup request. */
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-perm-1\","
			       "\"revision\":1}",
			       mock->base_url);
	struct h_responder *r = h_responder_start(ctl, body, 0);
	free(body);
	struct h_daemon *d = spawn(n, prefix,
				   "{\"nats\":{\"user\":\"sundynix-dispatcher\",\"password_file\":\"nats-password\"},"
				   "\"queue_group\":\"sundynix-dispatcher\"}",
				   env);
	if (!h_daemon_wait_log(d, "model config applied: model=m-perm-1", 5000)) {
		h_daemon_dump_log(d);
		fail_msg("the startup config request was not answered under the permissions");
	}
	assert_true(h_responder_count(r) >= 1);

	/* Chat through the gateway: mock, then cancel. */
	char *model = chat(gw, "r-perm-1");
	assert_string_equal(model, "m-perm-1");
	free(model);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":200,\"ttft_ms\":0,\"inter_ms\":20}");
	struct h_stream *s = h_stream_open(gw, "r-perm-cancel");
	h_submit_simple(gw, "r-perm-cancel", "long");
	assert_true(h_stream_wait_count(s, 2, 5000));
	h_cancel(gw, "r-perm-cancel");
	h_stream_expect_error(s, "cancelled", 5000);

	/* A broadcast from the control plane: back to the stub. */
	size_t before = h_daemon_log_count(d, "model config applied: none (stub)");
	h_publish_config(ctl, "null");
	if (!h_wait_file_count(d->log_path, "model config applied: none (stub)", before + 1, 5000)) {
		h_daemon_dump_log(d);
		fail_msg("the control plane's broadcast was not applied");
	}
	expect_stub_chat(gw, "r-perm-stub");

	/* The probe: a candidate config tested by the dispatcher. */
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}");
	char *probe = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-probe\"}",
				mock->base_url);
	char *reply = NULL;
	natsStatus st = h_request(ctl, "dispatcher.probe", probe, 10000, &reply);
	free(probe);
	if (st != NATS_OK)
		fail_msg("probe request: %s", natsStatus_GetText(st));
	h_log("probe answer: %s", reply);
	json_t *ans = h_json_parse(reply);
	free(reply);
	if (!json_is_true(json_object_get(ans, "ok"))) {
		char *dump = json_dumps(ans, JSON_COMPACT);
		fail_msg("probe answered not ok: %s", dump);
	}
	json_decref(ans);

	h_daemon_stop_ok(d);
	h_flush(gw);
	char *nlog = h_read_file(n->proc->log_path, NULL);
	H_ASSERT_NOT_CONTAINS(nlog, "Permissions Violation");
	H_ASSERT_NOT_CONTAINS(nlog, "Authorization Violation");
	free(nlog);
	assert_false(h_daemon_log_contains(d, "asynchronous error"));
	assert_log_lacks(d->log_path, "pw-disp-7e3");
	free(env_dir);
	free(file);
	free(dir);
}

int main(void)
{
	h_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_user_password_credentials_dir, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_token, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_tls_mutual, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_tls_without_client_cert_fails, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_wrong_password, setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_permissions, setup, h_test_teardown),
	};
	/* The test's own TLS client would crash this process in OpenSSL's
	 * atexit cleanup (nats-io/nats.c#904); see h_exit. */
	h_exit(cmocka_run_group_tests_name("integ_natsauth", tests, group_setup, group_teardown));
}
