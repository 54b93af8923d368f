/* Unit tests for modelcfg: parsing, the revision rule, and snapshot lifetimes
 * (run under ASan to prove every snapshot is freed at its last unref). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "modelcfg.h"

#define KEY "sk-SECRETKEY-0123456789abcdef"

static struct modelcfg *parse(const char *json, char *err, size_t errlen)
{
	return modelcfg_parse(json, strlen(json), err, errlen);
}

static struct modelcfg *must_parse(const char *json)
{
	char err[256];
	struct modelcfg *c = parse(json, err, sizeof(err));

	if (!c)
		fail_msg("parse failed (%s): %s", err, json);
	return c;
}

static void assert_empty(const struct modelcfg *c)
{
	assert_int_equal(c->refs, 1);
	assert_string_equal(c->provider, "");
	assert_string_equal(c->base_url, "");
	assert_string_equal(c->api_key, "");
	assert_string_equal(c->model, "");
	assert_false(c->has_revision);
	assert_false(c->ready);
}

static void test_parse_full(void **state)
{
	struct modelcfg *c;

	(void)state;
	c = must_parse("{\"provider\":\"openai\",\"base_url\":\"http://127.0.0.1:8000/v1\",\"api_key\":\"" KEY
		       "\",\"model\":\"qwen2.5-7b\",\"revision\":7}");
	assert_int_equal(c->refs, 1);
	assert_string_equal(c->provider, "openai");
	assert_string_equal(c->base_url, "http://127.0.0.1:8000/v1");
	assert_string_equal(c->api_key, KEY);
	assert_string_equal(c->model, "qwen2.5-7b");
	assert_true(c->has_revision);
	assert_int_equal(c->revision, 7);
	assert_true(c->ready);
	modelcfg_unref(c);
}

static void test_parse_empty_forms(void **state)
{
	/* All of these mean "no model active". */
	static const char *const forms[] = { "null", "{}", "", "  \n\t", " null ", "{\"revision\":null}" };
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct modelcfg *c = parse(forms[i], err, sizeof(err));
		if (!c)
			fail_msg("form %zu rejected: %s", i, err);
		assert_empty(c);
		modelcfg_unref(c);
	}
	struct modelcfg *c = modelcfg_parse(NULL, 0, err, sizeof(err));
	assert_non_null(c);
	assert_empty(c);
	modelcfg_unref(c);
}

static void test_parse_not_ready(void **state)
{
	struct modelcfg *c;

	(void)state;
	c = must_parse("{\"provider\":\"openai\",\"base_url\":\"http://x/v1\",\"revision\":3}");
	assert_false(c->ready);
	assert_true(c->has_revision);
	assert_int_equal(c->revision, 3);
	modelcfg_unref(c);
	c = must_parse("{\"model\":\"m\"}");
	assert_false(c->ready);
	modelcfg_unref(c);
	c = must_parse("{\"model\":\"m\",\"base_url\":\"\"}");
	assert_false(c->ready);
	modelcfg_unref(c);
	/* A base_url of only slashes strips to nothing. */
	c = must_parse("{\"model\":\"m\",\"base_url\":\"//\"}");
	assert_string_equal(c->base_url, "");
	assert_false(c->ready);
	modelcfg_unref(c);
	/* No key is fine (a local backend). */
	c = must_parse("{\"model\":\"m\",\"base_url\":\"http://x\",\"api_key\":null}");
	assert_true(c->ready);
	assert_string_equal(c->api_key, "");
	modelcfg_unref(c);
}

static void test_parse_trailing_slash_and_unknown(void **state)
{
	struct modelcfg *c;

	(void)state;
	c = must_parse("{\"base_url\":\"http://h:1/v1/\",\"model\":\"m\",\"extra\":{\"nested\":[1,2]},\"x\":1.5,"
		       "\"revision\":-2}");
	assert_string_equal(c->base_url, "http://h:1/v1");
	assert_true(c->ready);
	assert_int_equal(c->revision, -2);
	modelcfg_unref(c);
	c = must_parse("{\"base_url\":\"http://h:1/v1///\",\"model\":\"m\"}");
	assert_string_equal(c->base_url, "http://h:1/v1");
	modelcfg_unref(c);
}

static void test_parse_wrong_types(void **state)
{
	static const struct {
		const char *json;
		const char *err;
	} cases[] = {
		{ "{\"base_url\":5,\"api_key\":\"" KEY "\"}", "base_url: must be a string" },
		{ "{\"api_key\":\"" KEY "\",\"model\":[\"" KEY "\"]}", "model: must be a string" },
		{ "{\"api_key\":\"" KEY "\",\"provider\":true}", "provider: must be a string" },
		{ "{\"api_key\":{\"v\":\"" KEY "\"}}", "api_key: must be a string" },
		{ "{\"api_key\":\"" KEY "\",\"revision\":\"7\"}", "revision: must be an integer" },
		{ "{\"api_key\":\"" KEY "\",\"revision\":7.5}", "revision: must be an integer" },
		{ "[\"" KEY "\"]", "config: must be a JSON object or null" },
		{ "\"" KEY "\"", "config: must be a JSON object or null" },
		{ "42", "config: must be a JSON object or null" },
		{ "{\"api_key\":\"" KEY "\",", NULL },
		{ "{\"api_key\":\"" KEY "\" \"model\":1}", NULL },
		{ "{\"api_key\":\"" KEY "\",\"api_key\":\"" KEY "\"}", NULL },
		{ "\"" KEY, NULL },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(err, 'X', sizeof(err));
		struct modelcfg *c = parse(cases[i].json, err, sizeof(err));
		if (c)
			fail_msg("case %zu accepted: %s", i, cases[i].json);
		if (cases[i].err ? strcmp(err, cases[i].err) : strncmp(err, "config: invalid JSON at line 1 column ", 38))
			fail_msg("case %zu: err \"%s\", want \"%s\"", i, err,
				 cases[i].err ? cases[i].err : "config: invalid JSON at line 1 column N");
		/* Neither the key nor any part of it may appear. */
		if (strstr(err, "SECRET") || strstr(err, "sk-"))
			fail_msg("case %zu: err leaks the key: %s", i, err);
	}
	/* A tiny err buffer is still terminated. */
	char small[8];
	assert_null(parse("{\"model\":1}", small, sizeof(small)));
	assert_string_equal(small, "model: ");
}

/* Applies json to s and checks the outcome, then the recorded revision and
 * the active model. */
static void apply_expect(struct modelcfg_store *s, const char *json, enum modelcfg_verdict want, long long revision,
			 const char *model)
{
	assert_int_equal(modelcfg_store_apply(s, must_parse(json)), want);
	assert_int_equal(s->revision, revision);
	assert_string_equal(s->active->model, model);
}

static void test_store_revisions(void **state)
{
	struct modelcfg_store s;
	struct modelcfg *c;

	(void)state;
	modelcfg_store_init(&s);
	c = modelcfg_store_get(&s);
	assert_false(c->ready);
	modelcfg_unref(c);
	assert_false(s.have_revision);

	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"base_url\":\"http://a\",\"model\":\"m5\",\"revision\":5}")), MODELCFG_APPLIED);
	assert_true(s.have_revision);
	assert_int_equal(s.revision, 5);
	assert_string_equal(s.active->model, "m5");

	/* Higher applies. */
	apply_expect(&s, "{\"base_url\":\"http://a\",\"model\":\"m7\",\"revision\":7}", MODELCFG_APPLIED, 7, "m7");

	/* Lower is stale and ignored (and freed: ASan checks). */
	apply_expect(&s, "{\"base_url\":\"http://a\",\"model\":\"m6\",\"revision\":6}", MODELCFG_STALE, 7, "m7");

	/* Equal applies (idempotent rebroadcast, or a correction). */
	apply_expect(&s, "{\"base_url\":\"http://a\",\"model\":\"m7b\",\"revision\":7}", MODELCFG_APPLIED, 7, "m7b");

	/* No revision always applies and keeps the recorded revision. */
	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"base_url\":\"http://a\",\"model\":\"norev\"}")), MODELCFG_APPLIED);
	assert_true(s.have_revision);
	assert_int_equal(s.revision, 7);
	assert_string_equal(s.active->model, "norev");

	/* So a later lower revision is still stale. */
	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"base_url\":\"http://a\",\"model\":\"m3\",\"revision\":3}")), MODELCFG_STALE);
	assert_string_equal(s.active->model, "norev");

	/* null deactivates the model. */
	assert_int_equal(modelcfg_store_apply(&s, must_parse("null")), MODELCFG_APPLIED);
	assert_false(s.active->ready);
	assert_int_equal(s.revision, 7);

	assert_int_equal(modelcfg_store_apply(&s, NULL), MODELCFG_INVALID);
	modelcfg_store_free(&s);
	assert_null(s.active);
}

static void test_store_first_revision_any(void **state)
{
	struct modelcfg_store s;

	(void)state;
	modelcfg_store_init(&s);
	/* With nothing recorded, any revision applies, even a negative one. */
	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"model\":\"m\",\"revision\":-1}")), MODELCFG_APPLIED);
	assert_int_equal(s.revision, -1);
	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"model\":\"m\",\"revision\":0}")), MODELCFG_APPLIED);
	assert_int_equal(s.revision, 0);
	modelcfg_store_free(&s);
}

static void test_snapshot_lifetime(void **state)
{
	struct modelcfg_store s;
	struct modelcfg *req1, *req2;

	(void)state;
	modelcfg_store_init(&s);
	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"base_url\":\"http://old/v1\",\"api_key\":\"" KEY
							     "\",\"model\":\"old\",\"revision\":1}")),
			 MODELCFG_APPLIED);
	/* A "request" takes a snapshot... */
	req1 = modelcfg_store_get(&s);
	assert_int_equal(req1->refs, 2);

	/* ...a hot update replaces the store's config... */
	assert_int_equal(modelcfg_store_apply(&s, must_parse("{\"base_url\":\"http://new/v1\",\"model\":\"new\",\"revision\":2}")), MODELCFG_APPLIED);
	req2 = modelcfg_store_get(&s);
	assert_true(req1 != req2);
	assert_int_equal(req1->refs, 1);
	assert_int_equal(req2->refs, 2);

	/* ...and the old snapshot is intact for the request in flight. */
	assert_string_equal(req1->model, "old");
	assert_string_equal(req1->base_url, "http://old/v1");
	assert_string_equal(req1->api_key, KEY);
	assert_string_equal(req2->model, "new");

	/* The store goes away first; both requests still hold valid configs. */
	modelcfg_store_free(&s);
	assert_int_equal(req2->refs, 1);
	assert_string_equal(req2->base_url, "http://new/v1");

	/* The last unref frees each (a leak or double free fails under ASan). */
	modelcfg_unref(req1);
	modelcfg_unref(req2);
	modelcfg_unref(NULL);
}

static struct modelcfg *parse_ok(const char *j)
{
	char err[256] = "";
	struct modelcfg *c = modelcfg_parse(j, strlen(j), err, sizeof(err));
	if (!c)
		print_error("parse failed: %s\n", err);
	assert_non_null(c);
	return c;
}

static void parse_bad(const char *j, const char *want)
{
	char err[256] = "";
	struct modelcfg *c = modelcfg_parse(j, strlen(j), err, sizeof(err));
	assert_null(c);
	assert_string_equal(err, want);
	assert_null(strstr(err, "sk-"));
}

static void test_endpoints(void **state)
{
	struct modelcfg *c;

	(void)state;
	/* The single form is one endpoint of weight 1. */
	c = parse_ok("{\"model\":\"m\",\"base_url\":\"http://a/v1/\",\"api_key\":\"sk-a\"}");
	assert_int_equal(c->nendpoints, 1);
	assert_string_equal(c->endpoints[0].base_url, "http://a/v1");
	assert_string_equal(c->endpoints[0].api_key, "sk-a");
	assert_int_equal(c->endpoints[0].weight, 1);
	assert_true(c->ready);
	modelcfg_unref(c);
	/* endpoints: own key or the top-level one, weights, slashes stripped. */
	c = parse_ok("{\"model\":\"m\",\"api_key\":\"sk-top\",\"provider\":\"vllm\",\"endpoints\":["
		     "{\"base_url\":\"http://a/v1/\",\"weight\":3},"
		     "{\"base_url\":\"http://b/v1\",\"api_key\":\"sk-b\",\"weight\":null}]}");
	assert_int_equal(c->nendpoints, 2);
	assert_string_equal(c->endpoints[0].base_url, "http://a/v1");
	assert_string_equal(c->endpoints[0].api_key, "sk-top");
	assert_int_equal(c->endpoints[0].weight, 3);
	assert_string_equal(c->endpoints[1].api_key, "sk-b");
	assert_int_equal(c->endpoints[1].weight, 1);
	assert_string_equal(c->base_url, "http://a/v1"); /* the first endpoint's */
	assert_int_equal(c->kind, PROVIDER_VLLM);
	assert_true(c->ready);
	modelcfg_unref(c);
	/* No endpoint: not ready. An unknown provider is kept, flagged. */
	c = parse_ok("{\"model\":\"m\",\"endpoints\":[],\"provider\":\"acme\"}");
	assert_false(c->ready);
	assert_int_equal(c->kind, PROVIDER_UNKNOWN);
	modelcfg_unref(c);

	parse_bad("{\"endpoints\":{}}", "endpoints: must be an array");
	parse_bad("{\"endpoints\":[1]}", "endpoints[0]: must be an object");
	parse_bad("{\"endpoints\":[{\"base_url\":\"\"}]}", "endpoints[0].base_url: must be a non-empty string");
	parse_bad("{\"endpoints\":[{\"base_url\":\"http://a\",\"api_key\":5}]}",
		  "endpoints[0].api_key: must be a string");
	parse_bad("{\"endpoints\":[{\"base_url\":\"http://a\",\"weight\":0}]}",
		  "endpoints[0].weight: must be an integer from 1 to 1000");
	parse_bad("{\"endpoints\":[{\"base_url\":\"http://a\",\"weight\":1.5}]}",
		  "endpoints[0].weight: must be an integer from 1 to 1000");
	char big[8192];
	size_t n = (size_t)snprintf(big, sizeof(big), "{\"endpoints\":[");
	for (int i = 0; i < MODELCFG_MAX_ENDPOINTS + 1; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"base_url\":\"http://h%d\"}", i ? "," : "", i);
	snprintf(big + n, sizeof(big) - n, "]}");
	parse_bad(big, "endpoints: at most 64 entries");
}

/* Only http and https reach a backend: any other scheme, at the top level or
 * in endpoints[], refuses the whole config (issue 13). */
static void test_refused_schemes(void **state)
{
	static const char *const urls[] = { "ftp://h/v1", "file:///etc/passwd", "gopher://h:70/", "h:8000/v1",
					    "//h/v1", "httpx://h", "javascript:alert(1)", " http://h" };
	char body[512], err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		snprintf(body, sizeof(body), "{\"model\":\"m\",\"base_url\":\"%s\"}", urls[i]);
		assert_null(parse(body, err, sizeof(err)));
		assert_string_equal(err, "base_url: must be an http:// or https:// URL");
		snprintf(body, sizeof(body),
			 "{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://ok/v1\"},{\"base_url\":\"%s\"}]}",
			 urls[i]);
		assert_null(parse(body, err, sizeof(err)));
		assert_string_equal(err, "endpoints[1].base_url: must be an http:// or https:// URL");
	}
	struct modelcfg *c = must_parse("{\"model\":\"m\",\"base_url\":\"HTTPS://h/v1\"}");
	assert_true(c->ready);
	modelcfg_unref(c);
}

static void test_revision_bounds(void **state)
{
	char err[256];
	struct modelcfg *c;

	(void)state;
	c = must_parse("{\"revision\":9007199254740991}");
	assert_int_equal(c->revision, MODELCFG_REVISION_MAX);
	modelcfg_unref(c);
	c = must_parse("{\"revision\":-9007199254740991}");
	modelcfg_unref(c);
	static const char *const bad[] = { "{\"revision\":9007199254740992}", "{\"revision\":9223372036854775807}",
					   "{\"revision\":-9007199254740992}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(parse(bad[i], err, sizeof(err)));
		assert_string_equal(err, "revision: must be within +-(2^53-1), the integers every JSON client keeps exact");
	}
}

static void test_endpoint_caps(void **state)
{
	char err[256];
	struct modelcfg *c;

	(void)state;
	c = must_parse("{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a\",\"max_inflight\":3},"
		       "{\"base_url\":\"http://b\",\"max_inflight\":5}]}");
	assert_int_equal(c->endpoints[0].max_inflight, 3);
	assert_int_equal(c->capacity, 8);
	modelcfg_unref(c);
	/* One endpoint without a cap: the model is not bounded. */
	c = must_parse("{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a\",\"max_inflight\":3},"
		       "{\"base_url\":\"http://b\",\"max_inflight\":null}]}");
	assert_int_equal(c->endpoints[1].max_inflight, 0);
	assert_int_equal(c->capacity, 0);
	modelcfg_unref(c);
	c = must_parse("{\"model\":\"m\",\"base_url\":\"http://a\"}");
	assert_int_equal(c->capacity, 0);
	modelcfg_unref(c);
	static const char *const bad[] = { "0", "-1", "1.5", "\"2\"", "1000001" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[256];
		snprintf(body, sizeof(body), "{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a\",\"max_inflight\":%s}]}",
			 bad[i]);
		assert_null(parse(body, err, sizeof(err)));
		assert_string_equal(err, "endpoints[0].max_inflight: must be an integer from 1 to 1000000");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full),
		cmocka_unit_test(test_parse_empty_forms),
		cmocka_unit_test(test_parse_not_ready),
		cmocka_unit_test(test_parse_trailing_slash_and_unknown),
		cmocka_unit_test(test_parse_wrong_types),
		cmocka_unit_test(test_store_revisions),
		cmocka_unit_test(test_store_first_revision_any),
		cmocka_unit_test(test_snapshot_lifetime),
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_refused_schemes),
		cmocka_unit_test(test_revision_bounds),
		cmocka_unit_test(test_endpoint_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
