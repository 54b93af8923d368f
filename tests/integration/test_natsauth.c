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

#include "support.h"

static struct h_mock *mock;
static char *pki; /* directory of the generated certificates */

static int make_certificates(void)
{
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

static int free_certificates(void)
{
	free(pki);
	return 0;
}

static const struct h_bed bed = { .mocks = { { &mock, "mock-auth" } },
				  .script = "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}",
				  .setup = make_certificates,
				  .teardown = free_certificates,
				  .hard_exit = true };

static struct h_daemon *spawn(struct h_nats *n, const char *prefix, const char *overrides, const char *const *env)
{
	struct h_daemon_opts o = { .env = env };
	return h_daemon_start_opts(n, prefix, overrides, &o);
}

/* A nats-server requiring TLS with client certificates from pki. */
static struct h_nats *tls_nats(void)
{
	char *conf = xasprintf("tls {\n  cert_file: \"%s/server.pem\"\n  key_file: \"%s/server.key\"\n"
			       "  ca_file: \"%s/ca.pem\"\n  verify: true\n  timeout: 5\n}\n",
			       pki, pki, pki);
	struct h_nats *n = h_nats_start(conf);
	free(conf);
	return n;
}

/* A credentials directory as systemd's LoadCredential= makes it, holding
 * nats-password; returns "CREDENTIALS_DIRECTORY=<dir>" (caller frees). */
static char *credentials_env(const char *name, const char *password)
{
	char *dir = xasprintf("%s/%s", h_tmpdir(), name);
	mkdir(dir, 0700);
	char *file = xasprintf("%s/nats-password", dir);
	char *content = xasprintf("%s\n", password);
	h_write_file(file, content, strlen(content));
	char *env = xasprintf("CREDENTIALS_DIRECTORY=%s", dir);
	free(content);
	free(file);
	free(dir);
	return env;
}

/* A daemon that must give up: exit non-zero within timeout_ms, never ready. */
static struct h_daemon *expect_start_failure(struct h_nats *n, const char *overrides, int timeout_ms, const char *why)
{
	unsigned long long t0 = util_now_ms();
	struct h_daemon *d = h_daemon_spawn(n, h_prefix(), overrides, NULL);
	int code = h_daemon_wait_exit(d, timeout_ms);
	h_log("%s: exit status %d after %llu ms", why, code, util_now_ms() - t0);
	if (code <= 0) {
		h_daemon_dump_log(d);
		fail_msg("%s: expected the daemon to exit non-zero within %d ms, got %d (-1: still running)", why,
			 timeout_ms, code);
	}
	assert_false(h_daemon_log_contains(d, "dispatcher ready"));
	return d;
}

static void test_user_password_credentials_dir(void **state)
{
	(void)state;
	const char *pw = "pw-4f1c9e2b7a";
	struct h_nats *n = h_nats_start("authorization {\n  users = [\n    { user: \"svc-disp\", password: "
					"\"pw-4f1c9e2b7a\" }\n    { user: \"svc-gw\", password: \"pw-gw-55\" }\n  ]\n}\n");
	char *env_dir = credentials_env("credentials-up", pw);
	const char *env[] = { env_dir, NULL };
	const char *prefix = h_prefix();

	/* A relative password_file resolves against $CREDENTIALS_DIRECTORY. */
	struct h_daemon *d =
		spawn(n, prefix, "{\"nats\":{\"user\":\"svc-disp\",\"password_file\":\"nats-password\"}}", env);
	struct h_client_auth a = { .user = "svc-gw", .password = "pw-gw-55" };
	struct h_client *c = h_client_connect_auth(n, prefix, &a);
	h_chat(c, "r-up-1", "stub");
	h_daemon_stop_ok(d);
	h_daemon_assert_log_lacks(d, pw);
	free(env_dir);
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
	h_chat(c, "r-token-1", "stub");
	h_daemon_stop_ok(d);
	h_daemon_assert_log_lacks(d, token);
	free(over);
	free(file);
}

static void test_tls_mutual(void **state)
{
	(void)state;
	struct h_nats *n = tls_nats();
	char *ca = xasprintf("%s/ca.pem", pki), *cert = xasprintf("%s/client.pem", pki),
	     *key = xasprintf("%s/client.key", pki);
	char *over = xasprintf("{\"nats\":{\"tls\":{\"ca_file\":\"%s\",\"cert_file\":\"%s\",\"key_file\":\"%s\"}}}", ca,
			       cert, key);
	const char *prefix = h_prefix();
	struct h_daemon *d = spawn(n, prefix, over, NULL);
	struct h_client_auth a = { .ca_file = ca, .cert_file = cert, .key_file = key };
	struct h_client *c = h_client_connect_auth(n, prefix, &a);
	h_chat(c, "r-tls-1", "stub");
	/* And a model behind it. */
	h_use_mock(c, d, mock, "m-tls", "", -1);
	h_chat(c, "r-tls-2", "m-tls");
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
	struct h_nats *n = tls_nats();
	char *over = xasprintf("{\"nats\":{\"tls\":{\"ca_file\":\"%s/ca.pem\"},\"connect_timeout_ms\":2000}}", pki);
	expect_start_failure(n, over, 15000, "without a client certificate");
	free(over);
}

static void test_wrong_password(void **state)
{
	(void)state;
	const char *wrong = "pw-WRONG-31337";
	char *over = xasprintf("{\"nats\":{\"user\":\"svc-disp\",\"password\":\"%s\"}}", wrong);
	struct h_nats *n = h_nats_start("authorization {\n  users = [\n    { user: \"svc-disp\", password: "
					"\"pw-right-1\" }\n  ]\n}\n");
	struct h_daemon *d = expect_start_failure(n, over, 10000, "wrong password");
	free(over);
	h_daemon_dump_log(d);
	/* A line an operator understands. */
	if (!h_daemon_log_contains(d, "Authorization") && !h_daemon_log_contains(d, "authorization"))
		fail_msg("the log does not say the NATS authorization failed");
	h_daemon_assert_log_lacks(d, wrong);
}

static void test_permissions(void **state)
{
	(void)state;
	/* The file grants subjects under the default prefix and queue group. */
	const char *prefix = "sundynix";
	char *conf = h_nats_permissions_conf("pw-disp-7e3", "pw-gw-9a1", "pw-ctl-2c5");
	struct h_nats *n = h_nats_start(conf);
	free(conf);
	char *env_dir = credentials_env("credentials-perm", "pw-disp-7e3");
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
	h_daemon_expect_log(d, "model config applied: model=m-perm-1", 5000);
	assert_true(h_responder_count(r) >= 1);

	/* Chat through the gateway: mock, then cancel. */
	h_chat(gw, "r-perm-1", "m-perm-1");
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":200,\"ttft_ms\":0,\"inter_ms\":20}");
	struct h_stream *s = h_stream_submit(gw, "r-perm-cancel", "long");
	assert_true(h_stream_wait_count(s, 2, 5000));
	h_cancel(gw, "r-perm-cancel");
	h_stream_expect_error(s, "cancelled", 5000);

	/* A broadcast from the control plane: back to the stub. */
	size_t before = h_daemon_log_count(d, "model config applied: none (stub)");
	h_publish_config(ctl, "null");
	h_daemon_expect_log_count(d, "model config applied: none (stub)", before + 1, 5000);
	h_chat(gw, "r-perm-stub", "stub");

	/* The probe: a candidate config tested by the dispatcher. */
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0}");
	char *probe = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"\",\"model\":\"m-probe\"}",
				mock->base_url);
	json_t *ans = h_probe(ctl, probe);
	free(probe);
	char *dump = json_dumps(ans, JSON_COMPACT);
	h_log("probe answer: %s", dump);
	if (!json_is_true(json_object_get(ans, "ok")))
		fail_msg("probe answered not ok: %s", dump);
	free(dump);
	json_decref(ans);

	h_daemon_stop_ok(d);
	h_flush(gw);
	char *nlog = h_read_file(n->proc->log_path, NULL);
	H_ASSERT_NOT_CONTAINS(nlog, "Permissions Violation");
	H_ASSERT_NOT_CONTAINS(nlog, "Authorization Violation");
	free(nlog);
	assert_false(h_daemon_log_contains(d, "asynchronous error"));
	h_daemon_assert_log_lacks(d, "pw-disp-7e3");
	free(env_dir);
}

/* The test's own TLS client would crash this process in OpenSSL's atexit
 * cleanup (nats-io/nats.c#904): this bed ends the program with h_exit. */
H_MAIN("integ_natsauth", &bed, H_TEST(test_user_password_credentials_dir), H_TEST(test_token),
       H_TEST(test_tls_mutual), H_TEST(test_tls_without_client_cert_fails), H_TEST(test_wrong_password),
       H_TEST(test_permissions))
