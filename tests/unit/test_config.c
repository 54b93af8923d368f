/* Unit tests for config: the table, the loader's messages and lines, the
 * environment, secrets from files, cross-field checks, diff and the docs.
 * Run from the repository root (reads config/dispatcher.json and
 * docs/config.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sys/socket.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define SECRET "hunter2-Zq9-very-secret"

static char tmpdir[] = "/tmp/sundynix-config-XXXXXX";

static const char *const env_vars[] = {
	"SUNDYNIX_NATS_URL",     "SUNDYNIX_SUBJECT_PREFIX",	"SUNDYNIX_QUEUE_GROUP",
	"SUNDYNIX_INSTANCE_ID",  "SUNDYNIX_STUB_TTFT_MS",	"SUNDYNIX_STUB_INTER_TOKEN_MS",
	"SUNDYNIX_LOG_LEVEL",    "SUNDYNIX_SYSTEM_PROMPT",	"CREDENTIALS_DIRECTORY",
	"SUNDYNIX_METRICS_LISTEN", "SUNDYNIX_LOG_FORMAT",
};

static void clear_env(void)
{
	for (size_t i = 0; i < UTIL_ARRAY_LEN(env_vars); i++)
		unsetenv(env_vars[i]);
}

static int setup(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to tmpdir/name and returns the path (static storage, one at
 * a time is enough for these tests). */
static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	return path;
}

/* Loads text as a config file; returns config_load's result. */
static int load_text(const char *text, struct config *out, char *err, size_t errlen, char *pathout)
{
	const char *p = write_file("test.json", text);
	if (pathout)
		strcpy(pathout, p);
	return config_load(p, out, err, errlen);
}

/* Expects loading text to fail with a message that equals
 * "<file>:<want>" (the file's path is prepended here). */
static void expect_error(const char *text, const char *want)
{
	struct config c;
	char err[1024], path[512], full[1600];

	memset(&c, 0x5a, sizeof(c));
	assert_int_equal(load_text(text, &c, err, sizeof(err), path), -1);
	snprintf(full, sizeof(full), "%s%s", path, want);
	assert_string_equal(err, full);
	assert_null(strstr(err, SECRET));
}

static void expect_error_contains(const char *text, const char *want)
{
	struct config c;
	char err[1024];

	assert_int_equal(load_text(text, &c, err, sizeof(err), NULL), -1);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
	assert_null(strstr(err, SECRET));
}

static void load_ok(const char *text, struct config *out)
{
	char err[1024] = "";
	int rc = load_text(text, out, err, sizeof(err), NULL);
	if (rc != 0)
		fail_msg("load failed: %s", err);
}

/* ---- config_diff collection ---- */

struct diffs {
	char keys[64][64];
	bool live[64];
	size_t n;
};

static void collect(void *ud, const char *key, bool live)
{
	struct diffs *d = ud;
	assert_true(d->n < 64);
	snprintf(d->keys[d->n], sizeof(d->keys[0]), "%s", key);
	d->live[d->n++] = live;
}

/* ---- tests ---- */

static void test_defaults_match_example(void **state)
{
	struct config d, c;
	struct diffs diffs = { .n = 0 };
	char err[1024] = "";
	char expect_id[300], host[256] = "";

	(void)state;
	config_defaults(&d);
	if (config_load("config/dispatcher.json", &c, err, sizeof(err)) != 0)
		fail_msg("config/dispatcher.json: %s", err);
	config_diff(&d, &c, collect, &diffs);
	for (size_t i = 0; i < diffs.n; i++)
		if (strcmp(diffs.keys[i], "instance_id"))
			fail_msg("default of %s differs from config/dispatcher.json", diffs.keys[i]);

	assert_int_equal(d.nats_servers.n, 1);
	assert_string_equal(d.nats_servers.v[0], "nats://127.0.0.1:4222");
	assert_null(d.nats_servers.v[1]);
	assert_string_equal(d.nats_user, "");
	assert_string_equal(d.nats_password, "");
	assert_string_equal(d.nats_token, "");
	assert_string_equal(d.subject_prefix, "sundynix");
	assert_string_equal(d.queue_group, "sundynix-dispatcher");
	assert_int_equal(d.limits_max_inflight, 1024);
	assert_int_equal(d.timeouts_total_ms, 600000);
	assert_int_equal(d.stub_ttft_ms, 700);
	assert_int_equal(d.log_level, LOG_LVL_INFO);
	assert_int_equal(d.shutdown_grace_ms, 30000);
	assert_string_equal(d.prompt_memory_template,
			    "What you know about the user:\nProfile: {profile}\n{facts}");
	/* "" in the file means <hostname>-<pid>, the host name's first label
	 * (the id is a subject token: no dots). */
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	host[strcspn(host, ".")] = '\0';
	snprintf(expect_id, sizeof(expect_id), "%s-%ld", host, (long)getpid());
	assert_string_equal(d.instance_id, expect_id);
	assert_string_equal(c.instance_id, expect_id);
	config_free(&d);
	config_free(&c);
}

static void test_null_path_is_defaults(void **state)
{
	struct config d, c;
	struct diffs diffs = { .n = 0 };
	char err[256];

	(void)state;
	config_defaults(&d);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), 0);
	config_diff(&d, &c, collect, &diffs);
	assert_int_equal(diffs.n, 0);
	config_free(&d);
	config_free(&c);
}

static void test_missing_file(void **state)
{
	struct config c;
	char err[1024], path[600], want[700];

	(void)state;
	snprintf(path, sizeof(path), "%s/does-not-exist.json", tmpdir);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	assert_string_equal(err, want);
}

static void test_broken_json_line(void **state)
{
	(void)state;
	/* The missing comma is noticed at the key on line 4, column 3. */
	expect_error_contains("{\n  \"limits\": {\n    \"max_inflight\": 5\n    \"max_request_bytes\": 2048\n  }\n}\n",
			      ":4:");
	expect_error_contains("{\n  \"limits\": {\n    \"max_inflight\": 5\n    \"max_request_bytes\": 2048\n  }\n}\n",
			      ": invalid JSON: '}' expected");
	expect_error_contains("{\n\n\n  \"queue_group\": \"a\",\n  \"queue_group\": \"b\"\n}\n", ":5:");
	expect_error_contains("", ":1:");
	/* jansson quotes the text near the error; a password must not leak. */
	expect_error_contains("{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET "\n\"}}", ":1:");
	expect_error_contains("{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET, ": invalid JSON: premature end of input");
	expect_error("[1, 2]", ":1: expected a JSON object at the top level");
}

static void test_unknown_key_line(void **state)
{
	(void)state;
	expect_error("{\n"
		     "  \"nats\": {\n"
		     "    \"servers\": [\"nats://127.0.0.1:4222\"]\n"
		     "  },\n"
		     "  \"limits\": {\n"
		     "    \"max_inflight\": 10,\n"
		     "    \"max_inflihgt\": 20\n"
		     "  }\n"
		     "}\n",
		     ":7: unknown key 'limits.max_inflihgt' (did you mean 'limits.max_inflight'?)");
	expect_error("{\n\"queue_group\": \"q\", \"frobnicate\": 1}", ":2: unknown key 'frobnicate'");
}

static void test_nested_unknown_key(void **state)
{
	(void)state;
	expect_error("{\"nats\": {\"servers\": \"nats://x:1\",\n"
		     "  \"tls\": {\"ca_file\": \"\",\n"
		     "           \"key_fiel\": \"\"}}}",
		     ":3: unknown key 'nats.tls.key_fiel' (did you mean 'nats.tls.key_file'?)");
	/* A key in an array's object, or a string value that looks like a key,
	 * must not confuse the line scanner. */
	expect_error("{\"prompt\": {\"system\": \"{\\\"log\\\": 1}\",\n"
		     "\"memory_template\": \"x\"},\n"
		     "\"log\": {\"level\": \"info\", \"x\": [{\"a\": 1}],\n"
		     "\"lvl\": 1}}",
		     ":3: unknown key 'log.x'");
	expect_error("{\"limits.max_inflight\": 5}",
		     ":1: key 'limits.max_inflight': dots are not allowed in key names; nest objects");
	/* An escaped key is matched by its decoded name. */
	expect_error("{\"l\\u0069mits\": {\n\"m\\u0061x\": 1}}", ":2: unknown key 'limits.max'");
}

static void test_wrong_types(void **state)
{
	(void)state;
	/* string */
	expect_error("{\n\"queue_group\": 5}", ":2: key 'queue_group': expected a string");
	/* string list */
	expect_error("{\"nats\": {\n\"servers\": 5}}", ":2: key 'nats.servers': expected a string or an array of strings");
	expect_error("{\"nats\": {\"servers\": [\"nats://a:1\", 7]}}", ":1: key 'nats.servers': element 1: expected a string");
	expect_error("{\"nats\": {\"servers\": []}}", ":1: key 'nats.servers': must name at least one server");
	expect_error("{\"nats\": {\"servers\": \"nats://a:1,,nats://b:2\"}}", ":1: key 'nats.servers': empty entry");
	/* integer */
	expect_error("{\"limits\": {\"max_inflight\": \"10\"}}", ":1: key 'limits.max_inflight': expected an integer");
	expect_error("{\"limits\": {\"max_inflight\": 1.5}}", ":1: key 'limits.max_inflight': expected an integer");
	expect_error("{\"limits\": {\"max_inflight\": true}}", ":1: key 'limits.max_inflight': expected an integer");
	/* log level */
	expect_error("{\"log\": {\"level\": 3}}",
		     ":1: key 'log.level': expected a string (one of error, warn, notice, info, debug)");
	expect_error("{\"log\": {\"level\": \"loud\"}}",
		     ":1: key 'log.level': must be one of error, warn, notice, info, debug");
	/* secret string: the value is never quoted */
	expect_error("{\"nats\": {\"password\": 12345}}", ":1: key 'nats.password': expected a string");
	/* secret file */
	expect_error("{\"nats\": {\"token_file\": false}}", ":1: key 'nats.token_file': expected a string");
	/* file path */
	expect_error("{\"nats\": {\"credentials_file\": []}}", ":1: key 'nats.credentials_file': expected a string");
	/* section */
	expect_error("{\"limits\": 5}", ":1: key 'limits': expected an object");
	expect_error("{\"nats\": {\"tls\": null}}", ":1: key 'nats.tls': expected an object");
}

static void test_out_of_bounds(void **state)
{
	struct config c;

	(void)state;
	expect_error("{\"limits\": {\"max_inflight\": 0}}", ":1: key 'limits.max_inflight': must be between 1 and 1000000");
	expect_error("{\"limits\": {\"max_inflight\": 1000001}}",
		     ":1: key 'limits.max_inflight': must be between 1 and 1000000");
	expect_error("{\"stub\": {\"ttft_ms\": -1}}", ":1: key 'stub.ttft_ms': must be between 0 and 600000");
	load_ok("{\"limits\": {\"max_inflight\": 1000000}, \"stub\": {\"ttft_ms\": 0}}", &c);
	assert_int_equal(c.limits_max_inflight, 1000000);
	assert_int_equal(c.stub_ttft_ms, 0);
	config_free(&c);
}

static void test_servers_forms(void **state)
{
	struct config c;

	(void)state;
	load_ok("{\"nats\": {\"servers\": \"nats://a:1, nats://b:2 ,nats://c:3\"}}", &c);
	assert_int_equal(c.nats_servers.n, 3);
	assert_string_equal(c.nats_servers.v[0], "nats://a:1");
	assert_string_equal(c.nats_servers.v[1], "nats://b:2");
	assert_string_equal(c.nats_servers.v[2], "nats://c:3");
	assert_null(c.nats_servers.v[3]);
	config_free(&c);
	load_ok("{\"nats\": {\"servers\": [\"nats://a:1\", \"tls://b:2\"]}}", &c);
	assert_int_equal(c.nats_servers.n, 2);
	assert_string_equal(c.nats_servers.v[1], "tls://b:2");
	config_free(&c);
	/* A URL may carry a password: never quote it. */
	expect_error("{\"nats\": {\"servers\": [\"nats://u:" SECRET "@a b:1\"]}}",
		     ":1: key 'nats.servers': entry 1 contains blanks or control characters");
}

static void test_env_overrides(void **state)
{
	struct config c;
	char err[512];

	(void)state;
	setenv("SUNDYNIX_NATS_URL", "nats://x:1,nats://y:2", 1);
	setenv("SUNDYNIX_SUBJECT_PREFIX", "acme.prod", 1);
	setenv("SUNDYNIX_QUEUE_GROUP", "qg", 1);
	setenv("SUNDYNIX_INSTANCE_ID", "node-7", 1);
	setenv("SUNDYNIX_STUB_TTFT_MS", "5", 1);
	setenv("SUNDYNIX_STUB_INTER_TOKEN_MS", "0", 1);
	setenv("SUNDYNIX_LOG_LEVEL", "debug", 1);
	setenv("SUNDYNIX_SYSTEM_PROMPT", "Be brief.", 1);
	/* The environment wins over the file. */
	load_ok("{\"subject_prefix\": \"file\", \"stub\": {\"ttft_ms\": 100}}", &c);
	assert_int_equal(c.nats_servers.n, 2);
	assert_string_equal(c.nats_servers.v[0], "nats://x:1");
	assert_string_equal(c.nats_servers.v[1], "nats://y:2");
	assert_string_equal(c.subject_prefix, "acme.prod");
	assert_string_equal(c.queue_group, "qg");
	assert_string_equal(c.instance_id, "node-7");
	assert_int_equal(c.stub_ttft_ms, 5);
	assert_int_equal(c.stub_inter_token_ms, 0);
	assert_int_equal(c.log_level, LOG_LVL_DEBUG);
	assert_string_equal(c.prompt_system, "Be brief.");
	config_free(&c);

	/* An empty variable counts as unset. */
	clear_env();
	setenv("SUNDYNIX_STUB_TTFT_MS", "", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(c.stub_ttft_ms, 700);
	config_free(&c);

	static const struct {
		const char *value, *err;
	} bad_ttft[] = {
		{ "abc", "environment SUNDYNIX_STUB_TTFT_MS: expected an integer" },
		{ "12x", "environment SUNDYNIX_STUB_TTFT_MS: expected an integer" },
		{ "600001", "environment SUNDYNIX_STUB_TTFT_MS: must be between 0 and 600000" },
		{ "99999999999999999999999", "environment SUNDYNIX_STUB_TTFT_MS: must be between 0 and 600000" },
	};
	for (size_t i = 0; i < sizeof(bad_ttft) / sizeof(bad_ttft[0]); i++) {
		setenv("SUNDYNIX_STUB_TTFT_MS", bad_ttft[i].value, 1);
		assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
		assert_string_equal(err, bad_ttft[i].err);
	}
	clear_env();

	setenv("SUNDYNIX_LOG_LEVEL", "chatty", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_string_equal(err, "environment SUNDYNIX_LOG_LEVEL: must be one of error, warn, notice, info, debug");
	clear_env();

	setenv("SUNDYNIX_SUBJECT_PREFIX", "a.*", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "environment SUNDYNIX_SUBJECT_PREFIX: 'a.*' is not a valid subject prefix"));
	clear_env();

	setenv("SUNDYNIX_NATS_URL", "nats://a:1,", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_string_equal(err, "environment SUNDYNIX_NATS_URL: empty entry");
}

static void test_password_file_credentials_directory(void **state)
{
	struct config c;
	char dir[600], text[1400];

	(void)state;
	snprintf(dir, sizeof(dir), "%s/creds", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	write_file("creds/nats-pass", SECRET "\n");
	write_file("creds/nats-token", "tok-" SECRET "\r\n");
	write_file("creds/user.creds", "-----BEGIN NATS USER JWT-----\n");
	setenv("CREDENTIALS_DIRECTORY", dir, 1);

	load_ok("{\"nats\": {\"user\": \"svc\", \"password_file\": \"nats-pass\","
		" \"token_file\": \"nats-token\", \"credentials_file\": \"user.creds\"}}",
		&c);
	assert_string_equal(c.nats_user, "svc");
	/* Exactly one trailing newline is stripped. */
	assert_string_equal(c.nats_password, SECRET);
	assert_string_equal(c.nats_token, "tok-" SECRET);
	snprintf(text, sizeof(text), "%s/user.creds", dir);
	assert_string_equal(c.nats_credentials_file, text);
	config_free(&c);

	/* Absolute paths ignore CREDENTIALS_DIRECTORY. */
	snprintf(text, sizeof(text), "{\"nats\": {\"user\": \"svc\", \"password_file\": \"%s/creds/nats-pass\"}}",
		 tmpdir);
	unsetenv("CREDENTIALS_DIRECTORY");
	load_ok(text, &c);
	assert_string_equal(c.nats_password, SECRET);
	config_free(&c);

	/* Without CREDENTIALS_DIRECTORY a relative path resolves against the
	 * current directory. */
	char cwd[1024];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	struct config c2;
	char err[1024] = "";
	int rc = load_text("{\"nats\": {\"user\": \"svc\", \"password_file\": \"nats-pass\","
			   " \"nkey_seed_file\": \"user.creds\", \"nkey\": \"UABC\"}}",
			   &c2, err, sizeof(err), NULL);
	assert_int_equal(chdir(cwd), 0);
	if (rc)
		fail_msg("load failed: %s", err);
	assert_string_equal(c2.nats_password, SECRET);
	snprintf(text, sizeof(text), "%s/user.creds", dir);
	assert_string_equal(c2.nats_nkey_seed_file, text);
	config_free(&c2);

	/* Missing files name the resolved path, never a content. */
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	snprintf(text, sizeof(text), ":1: key 'nats.password_file': cannot read '%s/missing': No such file or directory",
		 dir);
	expect_error("{\"nats\": {\"user\": \"svc\", \"password_file\": \"missing\"}}", text);
	snprintf(text, sizeof(text),
		 ":1: key 'nats.credentials_file': cannot read '%s/missing.creds': No such file or directory", dir);
	expect_error("{\"nats\": {\"credentials_file\": \"missing.creds\"}}", text);
	expect_error("{\"nats\": {\"token_file\": \"/dev/zero\"}}",
		     ":1: key 'nats.token_file': cannot read '/dev/zero': File too large");
	write_file("creds/empty", "\n");
	snprintf(text, sizeof(text), ":1: key 'nats.token_file': '%s/empty' is empty", dir);
	expect_error("{\"nats\": {\"token_file\": \"empty\"}}", text);
}

static void test_secret_and_secret_file_conflict(void **state)
{
	(void)state;
	write_file("pw", SECRET);
	char text[1200];
	snprintf(text, sizeof(text), "{\"nats\": {\"user\": \"u\",\n\"password\": \"" SECRET "\",\n"
		 "\"password_file\": \"%s/pw\"}}", tmpdir);
	expect_error(text, ":3: key 'nats.password_file': nats.password is set as well; use only one of them");
	snprintf(text, sizeof(text), "{\"nats\": {\"token\": \"" SECRET "\", \"token_file\": \"%s/pw\"}}", tmpdir);
	expect_error(text, ":1: key 'nats.token_file': nats.token is set as well; use only one of them");
}

static void test_cross_field(void **state)
{
	struct config c;
	char text[1200];

	(void)state;
	expect_error("{\"nats\": {\n\"user\": \"u\"}}",
		     ":2: key 'nats.user': is set but neither nats.password nor nats.password_file is");
	expect_error("{\"nats\": {\n\"password\": \"" SECRET "\"}}", ":2: key 'nats.password': is set but nats.user is not");
	write_file("pw2", SECRET "\n");
	snprintf(text, sizeof(text), "{\"nats\": {\"password_file\": \"%s/pw2\"}}", tmpdir);
	expect_error(text, ":1: key 'nats.password_file': is set but nats.user is not");
	write_file("cert.pem", "x");
	snprintf(text, sizeof(text), "{\"nats\": {\"tls\": {\"cert_file\": \"%s/cert.pem\"}}}", tmpdir);
	expect_error(text, ":1: key 'nats.tls.cert_file': nats.tls.cert_file and nats.tls.key_file must be set together");
	snprintf(text, sizeof(text), "{\"nats\": {\"credentials_file\": \"%s/cert.pem\", \"nkey_seed_file\": \"%s/cert.pem\"}}",
		 tmpdir, tmpdir);
	expect_error(text, ":1: key 'nats.nkey_seed_file': nats.credentials_file is set as well; use only one of them");

	static const char *const bad_prefixes[] = { "", "a..b", "a.*", ">", "a.>", "a b", ".a", "a.", "a\\tb", "é" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_prefixes); i++) {
		snprintf(text, sizeof(text), "{\"subject_prefix\": \"%s\"}", bad_prefixes[i]);
		expect_error_contains(text, "key 'subject_prefix': '");
		expect_error_contains(text, "' is not a valid subject prefix");
	}
	load_ok("{\"subject_prefix\": \"Acme_1.prod-eu.x\"}", &c);
	assert_string_equal(c.subject_prefix, "Acme_1.prod-eu.x");
	config_free(&c);

	expect_error("{\"queue_group\": \"a b\"}", ":1: key 'queue_group': must be non-empty and without blanks");
	expect_error("{\"queue_group\": \"\"}", ":1: key 'queue_group': must be non-empty and without blanks");
	expect_error("{\"instance_id\": \"a\\nb\"}",
		     ":1: key 'instance_id': must be 1-64 characters of A-Z a-z 0-9 _ - (it is a NATS subject token)");
	expect_error("{\"instance_id\": \"host.example\"}",
		     ":1: key 'instance_id': must be 1-64 characters of A-Z a-z 0-9 _ - (it is a NATS subject token)");

	load_ok("{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET "\"}, \"log\": {\"level\": \"warn\"}}", &c);
	assert_string_equal(c.nats_password, SECRET);
	assert_int_equal(c.log_level, LOG_LVL_WARN);
	config_free(&c);
}

static void test_secret_never_in_messages(void **state)
{
	struct config c;
	char err[1024];

	(void)state;
	/* Every error path that sees a password: broken JSON around it, wrong
	 * types nearby, a missing user, and an inline+file conflict. */
	static const char *const texts[] = {
		"{\"nats\": {\"password\": \"" SECRET "\"}}",
		"{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET "\", \"x\": 1}}",
		"{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET "\" \"token\": \"\"}}",
		"{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET "\001\"}}",
		"{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET "\\q\"}}",
		"{\"nats\": {\"user\": \"u\", \"password\": \"" SECRET,
		"{\"nats\": {\"token\": \"" SECRET "\", \"token_file\": \"/nonexistent\"}}",
		"{\"nats\": {\"servers\": \"nats://u:" SECRET "@host:1,\"}}",
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(texts); i++) {
		assert_int_equal(load_text(texts[i], &c, err, sizeof(err), NULL), -1);
		if (strstr(err, SECRET))
			fail_msg("case %zu: message leaks the secret: %s", i, err);
	}
	/* Environment URL with userinfo. */
	setenv("SUNDYNIX_NATS_URL", "nats://u:" SECRET "@h:1, ", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_null(strstr(err, SECRET));
	setenv("SUNDYNIX_NATS_URL", "nats://u:" SECRET "@h 1", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_null(strstr(err, SECRET));
}

static void test_diff(void **state)
{
	struct config a, b;
	struct diffs d = { .n = 0 };

	(void)state;
	load_ok("{\"nats\": {\"user\": \"u\", \"password\": \"p1\"}, \"limits\": {\"max_inflight\": 10}}", &a);
	load_ok("{\"nats\": {\"user\": \"u\", \"password\": \"p2\", \"servers\": [\"nats://127.0.0.1:4222\", \"nats://b:1\"]},"
		" \"limits\": {\"max_inflight\": 11}, \"log\": {\"level\": \"debug\"},"
		" \"subject_prefix\": \"other\", \"prompt\": {\"system\": \"hi\"}}",
		&b);
	config_diff(&a, &b, collect, &d);
	static const struct {
		const char *key;
		bool live;
	} want[] = {
		{ "nats.servers", false }, { "nats.password", false }, { "subject_prefix", false },
		{ "limits.max_inflight", true }, { "prompt.system", true }, { "log.level", true },
	};
	assert_int_equal(d.n, UTIL_ARRAY_LEN(want));
	for (size_t i = 0; i < UTIL_ARRAY_LEN(want); i++) {
		assert_string_equal(d.keys[i], want[i].key);
		assert_int_equal(d.live[i], want[i].live);
	}
	d.n = 0;
	config_diff(&a, &a, collect, &d);
	assert_int_equal(d.n, 0);
	config_free(&a);
	config_free(&b);

	/* Same servers, different count. */
	load_ok("{\"nats\": {\"servers\": \"nats://a:1\"}}", &a);
	load_ok("{\"nats\": {\"servers\": \"nats://a:1,nats://a:1\"}}", &b);
	d.n = 0;
	config_diff(&a, &b, collect, &d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.keys[0], "nats.servers");
	config_free(&a);
	config_free(&b);
}

static void test_error_leaves_out_untouched(void **state)
{
	struct config c, saved;
	char err[1024];

	(void)state;
	load_ok("{\"queue_group\": \"keep\"}", &c);
	saved = c;
	assert_int_equal(load_text("{\"queue_group\": \"new\", \"limits\": {\"max_inflight\": 0}}", &c, err,
				   sizeof(err), NULL),
			 -1);
	assert_memory_equal(&c, &saved, sizeof(c));
	assert_string_equal(c.queue_group, "keep");
	setenv("SUNDYNIX_STUB_TTFT_MS", "-5", 1);
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_memory_equal(&c, &saved, sizeof(c));
	config_free(&c);
}

/* Every row config_print_reference writes must appear verbatim in
 * docs/config.md, so the docs cannot drift from the table. */
static void test_docs_match_table(void **state)
{
	char path[600], line[4096];
	FILE *ref, *docs;
	char *doc;
	long n;
	int rows = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/reference.md", tmpdir);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	ref = fopen(path, "w+");
	assert_non_null(ref);
	assert_int_equal(dup2(fileno(ref), STDOUT_FILENO), STDOUT_FILENO);
	config_print_reference();
	fflush(stdout);
	assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);

	docs = fopen("docs/config.md", "r");
	if (!docs)
		fail_msg("docs/config.md not found; run the tests from the repository root");
	assert_int_equal(fseek(docs, 0, SEEK_END), 0);
	n = ftell(docs);
	rewind(docs);
	doc = malloc((size_t)n + 1);
	assert_int_equal(fread(doc, 1, (size_t)n, docs), (size_t)n);
	doc[n] = '\0';
	fclose(docs);

	rewind(ref);
	while (fgets(line, sizeof(line), ref)) {
		if (strncmp(line, "| `", 3))
			continue;
		rows++;
		if (!strstr(doc, line))
			fail_msg("docs/config.md lacks this row of config_print_reference:\n%s", line);
	}
	fclose(ref);
	free(doc);
	assert_true(rows >= 30);
}

/* A reload keeps the running value of every key that needs a restart. */
static void test_keep_restart_keys(void **state)
{
	struct config cur, next;

	(void)state;
	load_ok("{\"nats\": {\"servers\": [\"nats://a:1\"], \"user\": \"u\", \"password\": \"p1\"},"
		" \"subject_prefix\": \"old\", \"limits\": {\"max_connections_per_endpoint\": 4},"
		" \"stub\": {\"ttft_ms\": 10}}",
		&cur);
	load_ok("{\"nats\": {\"servers\": [\"nats://b:1\", \"nats://c:1\"], \"user\": \"u\", \"password\": \"p2\"},"
		" \"subject_prefix\": \"new\", \"limits\": {\"max_connections_per_endpoint\": 9},"
		" \"stub\": {\"ttft_ms\": 20}}",
		&next);
	config_keep_restart_keys(&next, &cur);
	/* next: the running values of restart keys, the new live ones. */
	assert_string_equal(next.subject_prefix, "old");
	assert_int_equal(next.nats_servers.n, 1);
	assert_string_equal(next.nats_servers.v[0], "nats://a:1");
	assert_string_equal(next.nats_password, "p1");
	assert_int_equal(next.limits_max_connections_per_endpoint, 4);
	assert_int_equal(next.stub_ttft_ms, 20);
	/* cur holds the rest, and both free cleanly (ASan checks). */
	assert_string_equal(cur.subject_prefix, "new");
	assert_int_equal(cur.nats_servers.n, 2);
	assert_string_equal(cur.nats_password, "p2");
	config_free(&cur);
	config_free(&next);
}

/* metrics.listen: address literals and a port, or "" (off); log.format. */
static void test_metrics_listen_and_log_format(void **state)
{
	struct config c;
	struct sockaddr_storage ss;
	unsigned len;
	char text[256];

	(void)state;
	static const char *const good[] = { "127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464", "[::]:65535" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(good); i++) {
		snprintf(text, sizeof(text), "{\"metrics\": {\"listen\": \"%s\"}}", good[i]);
		load_ok(text, &c);
		assert_string_equal(c.metrics_listen, good[i]);
		config_free(&c);
		assert_int_equal(config_listen_addr(good[i], &ss, &len), 0);
	}
	assert_int_equal(config_listen_addr("[::1]:9464", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	load_ok("{\"metrics\": {\"listen\": \"\"}}", &c);
	assert_string_equal(c.metrics_listen, "");
	config_free(&c);
	static const char *const bad[] = { "localhost:9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
					   "::1:9464", "[::1]9464", "127.0.0.1:94a", ":9464", "[127.0.0.1]:1" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		snprintf(text, sizeof(text), "{\"metrics\": {\"listen\": \"%s\"}}", bad[i]);
		expect_error_contains(text, "key 'metrics.listen': '");
		expect_error_contains(text, "' is not IPv4:PORT or [IPv6]:PORT");
	}
	setenv("SUNDYNIX_METRICS_LISTEN", "127.0.0.1:0", 1);
	load_ok("{}", &c);
	assert_string_equal(c.metrics_listen, "127.0.0.1:0");
	config_free(&c);
	unsetenv("SUNDYNIX_METRICS_LISTEN");

	load_ok("{\"log\": {\"format\": \"json\"}}", &c);
	assert_string_equal(c.log_format, "json");
	config_free(&c);
	expect_error("{\"log\": {\n\"format\": \"xml\"}}", ":2: key 'log.format': must be text or json");
	setenv("SUNDYNIX_LOG_FORMAT", "json", 1);
	load_ok("{}", &c);
	assert_string_equal(c.log_format, "json");
	config_free(&c);
	unsetenv("SUNDYNIX_LOG_FORMAT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keep_restart_keys),
		cmocka_unit_test_setup_teardown(test_defaults_match_example, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_path_is_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_json_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_unknown_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_servers_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_overrides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_password_file_credentials_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_and_secret_file_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cross_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_never_in_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_diff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_leaves_out_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_docs_match_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_listen_and_log_format, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
