/* Unit tests for contract: submit validation, cancel decoding, and every
 * encoder parsed back with jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define LIMIT 1048576

#define OK_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static int decode(const char *body, struct contract_submit *s, struct contract_error *e)
{
	return contract_decode_submit(body, strlen(body), LIMIT, s, e);
}

static json_t *parse(const struct buf *b)
{
	json_error_t jerr;
	json_t *v = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);

	if (!v)
		fail_msg("encoder output is not JSON (%s): %s", jerr.text, b->data);
	assert_true(json_is_object(v));
	return v;
}

static void assert_str_field(json_t *o, const char *key, const char *want)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		fail_msg("field %s is not a string", key);
	assert_string_equal(json_string_value(v), want);
}

static void assert_int_field(json_t *o, const char *key, long long want)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		fail_msg("field %s is not an integer", key);
	assert_int_equal(json_integer_value(v), want);
}

/* ---- submits ---- */

static const struct bad_case {
	const char *body;
	const char *message; /* exact error message */
	const char *rid;     /* expected err.request_id ("" when none) */
} bad_cases[] = {
	{ "", "body: empty", "" },
	{ "{\"request_id\":", "body: invalid JSON at line 1 column 14", "" },
	{ "nope", "body: invalid JSON at line 1 column 4", "" },
	{ "{\"request_id\":\"r\",\"request_id\":\"s\"," OK_MSGS "}", NULL, "" },
	{ "[]", "body: must be a JSON object", "" },
	{ "\"str\"", "body: must be a JSON object", "" },
	{ "null", "body: must be a JSON object", "" },
	{ "12", "body: must be a JSON object", "" },
	{ "{" OK_MSGS "}", "request_id: required", "" },
	{ "{\"request_id\":\"\"," OK_MSGS "}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]", "" },
	{ "{\"request_id\":42," OK_MSGS "}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]", "" },
	{ "{\"request_id\":null," OK_MSGS "}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]", "" },
	{ "{\"request_id\":\"a b\"," OK_MSGS "}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]", "" },
	{ "{\"request_id\":\"a.b\"," OK_MSGS "}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]", "" },
	{ "{\"request_id\":\"r\\u00e9\"," OK_MSGS "}", "request_id: must be 1-128 characters of [A-Za-z0-9_-]",
	  "" },
	{ "{\"request_id\":\"r-1\",\"session_id\":5," OK_MSGS "}", "session_id: must be a string", "r-1" },
	{ "{\"request_id\":\"r-1\",\"user_id\":[]," OK_MSGS "}", "user_id: must be a string", "r-1" },
	{ "{\"request_id\":\"r-1\"}", "messages: required", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[]}", "messages: must be a non-empty array", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":{}}", "messages: must be a non-empty array", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":null}", "messages: must be a non-empty array", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[\"hi\"]}", "messages[0]: must be an object", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	  "{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"admin\",\"content\":\"c\"}]}",
	  "messages[2].role: must be one of system, user, assistant, tool", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"content\":\"a\"}]}",
	  "messages[0].role: must be one of system, user, assistant, tool", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":1,\"content\":\"a\"}]}",
	  "messages[0].role: must be one of system, user, assistant, tool", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"User\",\"content\":\"a\"}]}",
	  "messages[0].role: must be one of system, user, assistant, tool", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\"}]}",
	  "messages[0].content: must be a string or a non-empty array of content parts", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":null}]}",
	  "messages[0].content: must be a string or a non-empty array of content parts", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
	  "messages[0].content[0].text: must be a string", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"assistant\",\"content\":null}]}",
	  "messages[0].content: must be a string or a non-empty array of content parts", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]}",
	  "messages[0].content: must be a string or a non-empty array of content parts", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[{}]}]}",
	  "messages[0].tool_calls: allowed only on assistant messages, as an array", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":{}}]}",
	  "messages[0].tool_calls: allowed only on assistant messages, as an array", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"name\":7}]}",
	  "messages[0].name: must be a string", "r-1" },
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"tool\",\"content\":\"a\",\"tool_call_id\":7}]}",
	  "messages[0].tool_call_id: must be a string", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"memory\":\"x\"}", "memory: must be an object", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"memory\":[]}", "memory: must be an object", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"memory\":{\"profile\":1}}", "memory.profile: must be a string",
	  "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"memory\":{\"profile\":{}}}", "memory.profile: must be a string",
	  "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"memory\":{\"facts\":\"x\"}}",
	  "memory.facts: must be an array of strings", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"memory\":{\"facts\":[\"a\",\"b\",3]}}",
	  "memory.facts[2]: must be a string", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":[]}", "params: must be an object", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":\"hot\"}", "params: must be an object", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":{\"temperature\":\"0.7\"}}",
	  "params.temperature: must be a number", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":{\"max_tokens\":0}}",
	  "params.max_tokens: must be a positive integer", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":{\"max_tokens\":1.5}}",
	  "params.max_tokens: must be a positive integer", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":{\"stop\":[\"a\",1]}}",
	  "params.stop: must be a string or an array of strings", "r-1" },
	{ "{\"request_id\":\"r-1\"," OK_MSGS ",\"params\":{\"seed\":\"1\"}}", "params.seed: must be an integer",
	  "r-1" },
	/* \u0000 inside a string would cut C strings short; jansson refuses it. */
	{ "{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", NULL, "" },
};

static void test_submit_bad_table(void **state)
{
	(void)state;
	assert_true(UTIL_ARRAY_LEN(bad_cases) >= 20);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct contract_submit s;
		struct contract_error e;

		if (decode(c->body, &s, &e) != -1)
			fail_msg("case %zu accepted: %s", i, c->body);
		if (c->message ? strcmp(e.message, c->message) : strncmp(e.message, "body: invalid JSON at line ", 27))
			fail_msg("case %zu: message \"%s\", want \"%s\"", i, e.message,
				 c->message ? c->message : "body: invalid JSON at ...");
		if (strcmp(e.request_id, c->rid))
			fail_msg("case %zu: request_id \"%s\", want \"%s\"", i, e.request_id, c->rid);
		/* A failed decode leaves nothing to free. */
		assert_null(s.root);
		assert_null(s.messages);
		assert_string_equal(s.request_id, "");
	}
}

static void test_submit_never_echoes(void **state)
{
	/* Hostile text in a bad request id or a bad field must not come back. */
	static const char *const bodies[] = {
		"{\"request_id\":\"EVIL<script>\"," OK_MSGS "}",
		"{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"EVIL\",\"content\":\"x\"}]}",
		"{\"request_id\":\"r-1\",\"EVIL\":1," OK_MSGS ",\"memory\":{\"profile\":[\"EVIL\"]}}",
		"{\"EVIL\"",
		"{\"request_id\":\"r-1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"params\":\"EVIL\"}",
	};
	(void)state;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bodies); i++) {
		struct contract_submit s;
		struct contract_error e;

		assert_int_equal(decode(bodies[i], &s, &e), -1);
		if (strstr(e.message, "EVIL"))
			fail_msg("error echoes input: %s", e.message);
	}
}

static void test_submit_full(void **state)
{
	const char *body = "{\"request_id\":\"r-123\",\"session_id\":\"s-1\",\"user_id\":\"u-1\","
			   "\"messages\":[{\"role\":\"system\",\"content\":\"be nice\"},"
			   "{\"role\":\"user\",\"content\":\"first\"},"
			   "{\"role\":\"assistant\",\"content\":\"ok\"},"
			   "{\"role\":\"user\",\"content\":\"你好\"},"
			   "{\"role\":\"assistant\",\"content\":\"later\"}],"
			   "\"memory\":{\"profile\":\"姓名: 老王; 爱好: 钓鱼\",\"facts\":[\"住在杭州\"]},"
			   "\"params\":{\"temperature\":0.7,\"max_tokens\":512,\"stop\":[\"x\"],\"whatever\":{}},"
			   "\"future_field\":true}";
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	assert_int_equal(decode(body, &s, &e), 0);
	assert_string_equal(s.request_id, "r-123");
	assert_string_equal(s.session_id, "s-1");
	assert_string_equal(s.user_id, "u-1");
	assert_int_equal(json_array_size(s.messages), 5);
	assert_string_equal(s.last_user, "你好");
	assert_string_equal(s.profile, "姓名: 老王; 爱好: 钓鱼");
	assert_int_equal(json_array_size(s.facts), 1);
	assert_string_equal(json_string_value(json_array_get(s.facts, 0)), "住在杭州");
	assert_non_null(s.params);
	assert_int_equal(json_integer_value(json_object_get(s.params, "max_tokens")), 512);
	contract_submit_free(&s);
	assert_null(s.root);
}

static void test_submit_minimal(void **state)
{
	const char *body = "{\"request_id\":\"r\",\"messages\":[{\"role\":\"assistant\",\"content\":\"hi\"}]}";
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	assert_int_equal(decode(body, &s, &e), 0);
	assert_string_equal(s.request_id, "r");
	assert_null(s.session_id);
	assert_null(s.user_id);
	assert_null(s.profile);
	assert_null(s.facts);
	assert_null(s.params);
	assert_null(s.last_user);
	contract_submit_free(&s);
}

static void test_submit_nulls_are_absent(void **state)
{
	const char *body = "{\"request_id\":\"r\",\"session_id\":null,\"user_id\":null,"
			   "\"messages\":[{\"role\":\"user\",\"content\":\"\",\"name\":null}],"
			   "\"memory\":{\"profile\":null,\"facts\":null},\"params\":null}";
	const char *body2 = "{\"request_id\":\"r\"," OK_MSGS ",\"memory\":null}";
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	assert_int_equal(decode(body, &s, &e), 0);
	assert_null(s.session_id);
	assert_null(s.profile);
	assert_null(s.facts);
	assert_null(s.params);
	assert_string_equal(s.last_user, "");
	contract_submit_free(&s);
	assert_int_equal(decode(body2, &s, &e), 0);
	assert_null(s.profile);
	contract_submit_free(&s);
}

static void test_submit_tool_calls(void **state)
{
	const char *body = "{\"request_id\":\"r\",\"messages\":["
			   "{\"role\":\"user\",\"content\":\"weather?\"},"
			   "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\"}]},"
			   "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c2\"}]},"
			   "{\"role\":\"tool\",\"content\":\"sunny\",\"tool_call_id\":\"c1\"}]}";
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	assert_int_equal(decode(body, &s, &e), 0);
	assert_string_equal(s.last_user, "weather?");
	contract_submit_free(&s);
}

static void test_rid_edges(void **state)
{
	char rid[CONTRACT_RID_MAX + 2];
	char body[512];
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	memset(rid, 'a', sizeof(rid));
	rid[CONTRACT_RID_MAX] = '\0';
	snprintf(body, sizeof(body), "{\"request_id\":\"%s\"," OK_MSGS "}", rid);
	assert_int_equal(decode(body, &s, &e), 0);
	assert_int_equal(strlen(s.request_id), 128);
	assert_string_equal(s.request_id, rid);
	contract_submit_free(&s);

	rid[CONTRACT_RID_MAX] = 'a';
	rid[CONTRACT_RID_MAX + 1] = '\0';
	snprintf(body, sizeof(body), "{\"request_id\":\"%s\"," OK_MSGS "}", rid);
	assert_int_equal(decode(body, &s, &e), -1);
	assert_string_equal(e.message, "request_id: must be 1-128 characters of [A-Za-z0-9_-]");
	assert_string_equal(e.request_id, "");

	assert_true(contract_valid_request_id("aZ09_-", 6));
	assert_true(contract_valid_request_id("x", 1));
	assert_false(contract_valid_request_id("", 0));
	assert_false(contract_valid_request_id(NULL, 0));
	assert_false(contract_valid_request_id("a/b", 3));
	assert_false(contract_valid_request_id("a*", 2));
	assert_false(contract_valid_request_id("a\nb", 3));
	assert_false(contract_valid_request_id("ab\0c", 4));
	assert_false(contract_valid_request_id("\xe4\xbd\xa0", 3));
}

static void test_size_limit(void **state)
{
	const char *body = "{\"request_id\":\"r\"," OK_MSGS "}";
	size_t n = strlen(body);
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	assert_int_equal(contract_decode_submit(body, n, n, &s, &e), 0);
	contract_submit_free(&s);
	assert_int_equal(contract_decode_submit(body, n, n - 1, &s, &e), -1);
	char want[128];
	snprintf(want, sizeof(want), "body: %zu bytes exceeds limit of %zu", n, n - 1);
	assert_string_equal(e.message, want);
	/* The length is checked before parsing: the bytes are never read. */
	assert_int_equal(contract_decode_submit(NULL, 2000000, 1048576, &s, &e), -1);
	assert_string_equal(e.message, "body: 2000000 bytes exceeds limit of 1048576");
	assert_string_equal(e.request_id, "");
}

static void test_invalid_json_position(void **state)
{
	const char *body = "{\n  \"request_id\": \"r\",\n  \"messages\": [,]\n}";
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	assert_int_equal(decode(body, &s, &e), -1);
	assert_string_equal(e.message, "body: invalid JSON at line 3 column 16");
}

/* ---- cancel ---- */

static void test_cancel(void **state)
{
	char rid[CONTRACT_RID_MAX + 1];
	static const char *const bad[] = {
		"", "{}", "[]", "null", "{\"request_id\":\"\"}", "{\"request_id\":5}", "{\"request_id\":\"a b\"}",
		"{\"request_id\":\"r\"", "{\"request_id\":\"a\",\"request_id\":\"b\"}",
	};

	(void)state;
	const char *ok = "{\"request_id\":\"r-123\"}";
	assert_int_equal(contract_decode_cancel(ok, strlen(ok), rid), 0);
	assert_string_equal(rid, "r-123");
	ok = "{\"reason\":\"user\",\"request_id\":\"Z_9\"}";
	assert_int_equal(contract_decode_cancel(ok, strlen(ok), rid), 0);
	assert_string_equal(rid, "Z_9");
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		if (contract_decode_cancel(bad[i], strlen(bad[i]), rid) != -1)
			fail_msg("cancel case %zu accepted: %s", i, bad[i]);
		assert_string_equal(rid, "");
	}
}

/* ---- encoders ---- */

static void test_encode_ack(void **state)
{
	struct buf b;
	json_t *v, *err;

	(void)state;
	buf_init(&b);
	contract_encode_ack(&b, "r-123", CONTRACT_OK, NULL);
	assert_string_equal(b.data, "{\"request_id\":\"r-123\",\"accepted\":true}");
	v = parse(&b);
	assert_true(json_is_true(json_object_get(v, "accepted")));
	assert_null(json_object_get(v, "error"));
	json_decref(v);

	buf_reset(&b);
	contract_encode_ack(&b, "r-123", CONTRACT_BUSY, "too many \"requests\"\n");
	v = parse(&b);
	assert_str_field(v, "request_id", "r-123");
	assert_true(json_is_false(json_object_get(v, "accepted")));
	err = json_object_get(v, "error");
	assert_str_field(err, "code", "busy");
	assert_str_field(err, "message", "too many \"requests\"\n");
	json_decref(v);

	/* An unusable id is encoded as null. */
	for (int i = 0; i < 2; i++) {
		buf_reset(&b);
		contract_encode_ack(&b, i ? "" : NULL, CONTRACT_BAD_REQUEST, "request_id: bad");
		v = parse(&b);
		assert_true(json_is_null(json_object_get(v, "request_id")));
		assert_str_field(json_object_get(v, "error"), "code", "bad_request");
		json_decref(v);
	}
	buf_free(&b);
}

static const struct {
	const char *in;
	size_t len;
	const char *want;
} deltas[] = {
	{ "你", 3, "你" },
	{ "", 0, "" },
	{ "say \"hi\"", 8, "say \"hi\"" },
	{ "back\\slash", 10, "back\\slash" },
	{ "line1\nline2\r\n", 13, "line1\nline2\r\n" },
	{ "\t\b\f\x01\x1f\x7f", 6, "\t\b\f\x01\x1f\x7f" },
	{ "emoji 😀🎉", 14, "emoji 😀🎉" },
	{ "中文，标点。", 18, "中文，标点。" },
	{ "bad \xff byte", 10, "bad \xef\xbf\xbd byte" },
	{ "cut \xe4\xbd", 6, "cut \xef\xbf\xbd\xef\xbf\xbd" },
	{ "surrogate \xed\xa0\x80", 13, "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
	{ "</script>\u2028", 12, "</script>\u2028" },
};

static void test_encode_delta(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(deltas); i++) {
		const char *type = i % 2 ? "reasoning" : "token";

		buf_reset(&b);
		contract_encode_delta(&b, "r-123", 1000000000000ull + i, i % 2 ? CONTRACT_REASONING : CONTRACT_TOKEN, deltas[i].in, deltas[i].len);
		json_t *v = parse(&b);
		assert_int_equal(json_object_size(v), 4);
		assert_str_field(v, "request_id", "r-123");
		assert_int_field(v, "seq", 1000000000000ll + (long long)i);
		assert_str_field(v, "type", type);
		assert_str_field(v, "delta", deltas[i].want);
		json_decref(v);
	}
	/* An embedded NUL survives as \u0000. */
	buf_reset(&b);
	contract_encode_delta(&b, "r", 0, CONTRACT_TOKEN, "a\0b", 3);
	json_t *v = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
	assert_non_null(v);
	json_t *d = json_object_get(v, "delta");
	assert_int_equal(json_string_length(d), 3);
	assert_memory_equal(json_string_value(d), "a\0b", 3);
	json_decref(v);
	/* Encoders append: two events back to back. */
	buf_reset(&b);
	contract_encode_delta(&b, "r", 0, CONTRACT_TOKEN, "a", 1);
	size_t first = b.len;
	contract_encode_delta(&b, "r", 1, CONTRACT_TOKEN, "b", 1);
	assert_string_equal(b.data + first, "{\"request_id\":\"r\",\"seq\":1,\"type\":\"token\",\"delta\":\"b\"}");
	buf_free(&b);
}

static void test_encode_done(void **state)
{
	struct contract_usage u = { 12, 9, 21 };
	struct buf b;
	json_t *v, *usage;

	(void)state;
	buf_init(&b);
	contract_encode_done(&b, "r-123", 9, "stop", "qwen2.5-7b", &u, NULL);
	assert_string_equal(b.data, "{\"request_id\":\"r-123\",\"seq\":9,\"type\":\"done\",\"finish_reason\":\"stop\","
				    "\"model\":\"qwen2.5-7b\",\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,"
				    "\"total_tokens\":21}}");
	v = parse(&b);
	assert_str_field(v, "type", "done");
	assert_int_field(v, "seq", 9);
	assert_str_field(v, "finish_reason", "stop");
	assert_str_field(v, "model", "qwen2.5-7b");
	usage = json_object_get(v, "usage");
	assert_int_field(usage, "prompt_tokens", 12);
	assert_int_field(usage, "completion_tokens", 9);
	assert_int_field(usage, "total_tokens", 21);
	json_decref(v);

	/* Defaults: finish_reason "stop", model and usage omitted. */
	buf_reset(&b);
	contract_encode_done(&b, "r", 0, NULL, NULL, NULL, NULL);
	v = parse(&b);
	assert_str_field(v, "finish_reason", "stop");
	assert_null(json_object_get(v, "model"));
	assert_null(json_object_get(v, "usage"));
	json_decref(v);

	/* Extreme numbers and a model name needing escapes. */
	struct contract_usage big = { 0, -1, 9223372036854775807ll };
	buf_reset(&b);
	contract_encode_done(&b, "r", 18446744073709551615ull, NULL, NULL, NULL, NULL);
	assert_string_equal(b.data, "{\"request_id\":\"r\",\"seq\":18446744073709551615,\"type\":\"done\","
				    "\"finish_reason\":\"stop\"}");
	buf_reset(&b);
	contract_encode_done(&b, "r", 9223372036854775807ull, "length", "m\"\\\n", &big, NULL);
	assert_non_null(strstr(b.data, "\"completion_tokens\":-1,"));
	v = parse(&b);
	assert_int_field(v, "seq", 9223372036854775807ll);
	assert_str_field(v, "finish_reason", "length");
	assert_str_field(v, "model", "m\"\\\n");
	usage = json_object_get(v, "usage");
	assert_int_field(usage, "prompt_tokens", 0);
	assert_int_field(usage, "total_tokens", 9223372036854775807ll);
	json_decref(v);
	buf_free(&b);
}

static void test_encode_error(void **state)
{
	struct buf b;
	json_t *v, *err;

	(void)state;
	buf_init(&b);
	contract_encode_error(&b, "r-123", 4, CONTRACT_UPSTREAM_HTTP, "HTTP 500: \"boom\"\n\x01 \xc3", NULL);
	v = parse(&b);
	assert_int_equal(json_object_size(v), 4);
	assert_str_field(v, "request_id", "r-123");
	assert_int_field(v, "seq", 4);
	assert_str_field(v, "type", "error");
	err = json_object_get(v, "error");
	assert_int_equal(json_object_size(err), 2);
	assert_str_field(err, "code", "upstream_http");
	assert_str_field(err, "message", "HTTP 500: \"boom\"\n\x01 \xef\xbf\xbd");
	json_decref(v);
	buf_free(&b);
}

static void test_encode_route(void **state)
{
	struct contract_route route = { 2, "http://10.0.0.2:8000/v1" };
	struct buf b;
	json_t *j;

	(void)state;
	buf_init(&b);
	contract_encode_done(&b, "r", 3, "stop", "m", NULL, &route);
	j = json_loads(b.data, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
	assert_string_equal(json_string_value(json_object_get(j, "endpoint")), "http://10.0.0.2:8000/v1");
	json_decref(j);
	buf_reset(&b);
	contract_encode_error(&b, "r", 0, CONTRACT_UPSTREAM_UNAVAILABLE, "down", &route);
	j = json_loads(b.data, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
			    "upstream_unavailable");
	json_decref(j);
	buf_free(&b);
}

static void test_encode_config_request(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	contract_encode_config_request(&b, "host-1\"x");
	json_t *v = parse(&b);
	assert_int_equal(json_object_size(v), 2);
	assert_str_field(v, "component", "dispatcher");
	assert_str_field(v, "instance", "host-1\"x");
	json_decref(v);
	buf_free(&b);
}

/* ---- tools, structured output, content parts (issue #12) ---- */

#define TOOLS_BODY(params) "{\"request_id\":\"r-t\"," OK_MSGS ",\"params\":" params "}"
#define PARTS_BODY(msgs) "{\"request_id\":\"r-t\",\"messages\":" msgs "}"
#define WEATHER "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}"

static const struct bad_case tool_bad_cases[] = {
	{ TOOLS_BODY("{\"tools\":{}}"), "params.tools: must be a non-empty array of tools", "r-t" },
	{ TOOLS_BODY("{\"tools\":[]}"), "params.tools: must be a non-empty array of tools", "r-t" },
	{ TOOLS_BODY("{\"tools\":\"get_weather\"}"), "params.tools: must be a non-empty array of tools", "r-t" },
	{ TOOLS_BODY("{\"tools\":[" WEATHER ",7]}"), "params.tools[1]: must be an object", "r-t" },
	{ TOOLS_BODY("{\"tools\":[{\"function\":{\"name\":\"f\"}}]}"), "params.tools[0].type: must be \"function\"",
	  "r-t" },
	{ TOOLS_BODY("{\"tools\":[{\"type\":\"retrieval\",\"function\":{\"name\":\"f\"}}]}"),
	  "params.tools[0].type: must be \"function\"", "r-t" },
	{ TOOLS_BODY("{\"tools\":[{\"type\":\"function\"}]}"), "params.tools[0].function: must be an object", "r-t" },
	{ TOOLS_BODY("{\"tools\":[" WEATHER ",{\"type\":\"function\",\"function\":{\"name\":\"\"}}]}"),
	  "params.tools[1].function.name: must be a non-empty string", "r-t" },
	{ TOOLS_BODY("{\"tools\":[" WEATHER ",{\"type\":\"function\",\"function\":{\"description\":\"d\"}}]}"),
	  "params.tools[1].function.name: must be a non-empty string", "r-t" },
	{ TOOLS_BODY("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":7}}]}"),
	  "params.tools[0].function.name: must be a non-empty string", "r-t" },
	{ TOOLS_BODY("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":1}}]}"),
	  "params.tools[0].function.description: must be a string", "r-t" },
	{ TOOLS_BODY("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":\"{}\"}}]}"),
	  "params.tools[0].function.parameters: must be an object", "r-t" },
	{ TOOLS_BODY("{\"tool_choice\":\"any\"}"), "params.tool_choice: must be one of auto, none, required, or an object",
	  "r-t" },
	{ TOOLS_BODY("{\"tool_choice\":true}"), "params.tool_choice: must be one of auto, none, required, or an object",
	  "r-t" },
	{ TOOLS_BODY("{\"tool_choice\":{\"function\":{\"name\":\"f\"}}}"), "params.tool_choice.type: must be \"function\"",
	  "r-t" },
	{ TOOLS_BODY("{\"tool_choice\":{\"type\":\"function\",\"function\":\"f\"}}"),
	  "params.tool_choice.function: must be an object", "r-t" },
	{ TOOLS_BODY("{\"tool_choice\":{\"type\":\"function\",\"function\":{}}}"),
	  "params.tool_choice.function.name: must be a non-empty string", "r-t" },
	{ TOOLS_BODY("{\"parallel_tool_calls\":\"yes\"}"), "params.parallel_tool_calls: must be a boolean", "r-t" },
	{ TOOLS_BODY("{\"response_format\":\"json\"}"), "params.response_format: must be an object", "r-t" },
	{ TOOLS_BODY("{\"response_format\":{}}"),
	  "params.response_format.type: must be one of text, json_object, json_schema", "r-t" },
	{ TOOLS_BODY("{\"response_format\":{\"type\":\"xml\"}}"),
	  "params.response_format.type: must be one of text, json_object, json_schema", "r-t" },
	{ TOOLS_BODY("{\"response_format\":{\"type\":\"json_schema\"}}"),
	  "params.response_format.json_schema: must be an object", "r-t" },
	{ TOOLS_BODY("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{}}}}"),
	  "params.response_format.json_schema.name: must be a non-empty string", "r-t" },
	{ TOOLS_BODY("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":[]}}}"),
	  "params.response_format.json_schema.schema: must be an object", "r-t" },
	{ TOOLS_BODY("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"strict\":1}}}"),
	  "params.response_format.json_schema.strict: must be a boolean", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[]}]"),
	  "messages[0].content: must be a string or a non-empty array of content parts", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":{\"type\":\"text\",\"text\":\"a\"}}]"),
	  "messages[0].content: must be a string or a non-empty array of content parts", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[\"hi\"]}]"), "messages[0].content[0]: must be an object", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"text\":\"b\"}]}]"),
	  "messages[0].content[1].type: must be text or image_url", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}]"),
	  "messages[0].content[0].type: must be text or image_url", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":5}]}]"),
	  "messages[0].content[0].text: must be a string", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"http://x/a.png\"}]}]"),
	  "messages[0].content[0].image_url: must be an object", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"\"}}]}]"),
	  "messages[0].content[0].image_url.url: must be a non-empty string", "r-t" },
	{ PARTS_BODY("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\","
		     "\"detail\":\"max\"}}]}]"),
	  "messages[0].content[0].image_url.detail: must be one of auto, low, high", "r-t" },
	{ PARTS_BODY("[{\"role\":\"system\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}}]},"
		     "{\"role\":\"user\",\"content\":\"hi\"}]"),
	  "messages[0].content[0]: image_url parts are allowed only in user messages", "r-t" },
};

static void test_submit_tool_shapes_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(tool_bad_cases); i++) {
		const struct bad_case *c = &tool_bad_cases[i];
		struct contract_submit s;
		struct contract_error e;

		if (decode(c->body, &s, &e) != -1)
			fail_msg("case %zu accepted: %s", i, c->body);
		if (strcmp(e.message, c->message))
			fail_msg("case %zu: message \"%s\", want \"%s\"", i, e.message, c->message);
		assert_string_equal(e.request_id, c->rid);
		assert_null(s.root);
	}
}

static void test_submit_tool_shapes_good(void **state)
{
	static const char *const good[] = {
		TOOLS_BODY("{\"tools\":[" WEATHER ",{\"type\":\"function\",\"function\":{\"name\":\"get_time\","
			   "\"description\":\"d\",\"parameters\":{\"type\":\"object\"},\"strict\":true}}],"
			   "\"tool_choice\":\"auto\",\"parallel_tool_calls\":false}"),
		TOOLS_BODY("{\"tools\":[" WEATHER "],\"tool_choice\":{\"type\":\"function\","
			   "\"function\":{\"name\":\"get_weather\"}}}"),
		TOOLS_BODY("{\"tools\":null,\"tool_choice\":null,\"parallel_tool_calls\":null,\"response_format\":null}"),
		TOOLS_BODY("{\"tool_choice\":\"none\",\"response_format\":{\"type\":\"text\"}}"),
		TOOLS_BODY("{\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}"),
		TOOLS_BODY("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":"
			   "{\"type\":\"object\"},\"strict\":true,\"description\":\"x\"}}}"),
		PARTS_BODY("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"be brief\"}]},"
			   "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA==\","
			   "\"detail\":\"low\"}},{\"type\":\"text\",\"text\":\"what is this?\"},{\"type\":\"text\",\"text\":\"x\"}]},"
			   "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a cat\"}]},"
			   "{\"role\":\"tool\",\"content\":[{\"type\":\"text\",\"text\":\"r\"}],\"tool_call_id\":\"c\"}]"),
	};
	struct contract_submit s;
	struct contract_error e;

	(void)state;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(good); i++) {
		if (decode(good[i], &s, &e) != 0)
			fail_msg("case %zu refused: %s", i, e.message);
		contract_submit_free(&s);
	}
	/* The stub echoes the last user message: its first text part. */
	assert_int_equal(decode(good[UTIL_ARRAY_LEN(good) - 1], &s, &e), 0);
	assert_string_equal(s.last_user, "what is this?");
	contract_submit_free(&s);
	assert_int_equal(decode(PARTS_BODY("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":"
					   "[{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]"),
			       &s, &e),
			 0);
	assert_null(s.last_user);
	contract_submit_free(&s);
}

static void test_encode_tool_call(void **state)
{
	struct contract_tool_call tc = { 3, "call_abc", 8, "get_weather", 11, "{\"city\":\"杭", 12 };
	struct contract_event ev;
	char err[128];
	struct buf b;

	(void)state;
	buf_init(&b);
	contract_encode_tool_call(&b, "r-1", 4, &tc);
	assert_string_equal(b.data, "{\"request_id\":\"r-1\",\"seq\":4,\"type\":\"tool_call\",\"index\":3,\"id\":\"call_abc\","
				    "\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"杭\"}");
	assert_int_equal(contract_decode_event(b.data, b.len, &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, CONTRACT_EV_TOOL_CALL);
	assert_string_equal(ev.type_name, "tool_call");
	assert_int_equal(ev.seq, 4);
	assert_int_equal(ev.tool_call.index, 3);
	assert_string_equal(ev.tool_call.id, "call_abc");
	assert_string_equal(ev.tool_call.name, "get_weather");
	assert_int_equal(ev.tool_call.arguments_len, 12);
	assert_memory_equal(ev.tool_call.arguments, "{\"city\":\"杭", 12);
	contract_event_free(&ev);

	/* A later piece: no id, no name; NULL arguments read as "". */
	struct contract_tool_call piece = { 0, NULL, 0, NULL, 0, NULL, 0 };
	buf_reset(&b);
	contract_encode_tool_call(&b, "r-1", 5, &piece);
	assert_string_equal(b.data,
			    "{\"request_id\":\"r-1\",\"seq\":5,\"type\":\"tool_call\",\"index\":0,\"arguments\":\"\"}");
	assert_int_equal(contract_decode_event(b.data, b.len, &ev, err, sizeof(err)), 0);
	assert_null(ev.tool_call.id);
	assert_null(ev.tool_call.name);
	assert_string_equal(ev.tool_call.arguments, "");
	contract_event_free(&ev);

	/* Lengths rule: a NUL inside survives; invalid UTF-8 becomes U+FFFD. */
	struct contract_tool_call odd = { 1, "a\0b", 3, "n\xff", 2, "x", 1 };
	buf_reset(&b);
	contract_encode_tool_call(&b, "r-1", 6, &odd);
	json_t *v = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
	assert_non_null(v);
	assert_int_equal(json_string_length(json_object_get(v, "id")), 3);
	assert_string_equal(json_string_value(json_object_get(v, "name")), "n\xef\xbf\xbd");
	json_decref(v);

	static const char *const malformed[] = {
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"arguments\":\"x\"}",
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"index\":-1}",
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"index\":\"0\"}",
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"index\":0,\"arguments\":{}}",
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"index\":0,\"id\":7}",
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"index\":0,\"name\":[]}",
		"{\"request_id\":\"r\",\"seq\":1,\"type\":\"tool_call\",\"index\":4294967296}",
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(malformed); i++) {
		err[0] = '\0';
		if (contract_decode_event(malformed[i], strlen(malformed[i]), &ev, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", malformed[i]);
		assert_string_equal(err, "tool_call event seq 1 is malformed");
		assert_null(ev.root);
	}
	buf_free(&b);
}

static void test_encode_chat_params(void **state)
{
	json_t *tools = json_loads("[" WEATHER "]", 0, NULL);
	json_t *rf = json_loads("{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":{}}}", 0, NULL);
	struct contract_chat chat = { .request_id = "r-c", .message = "hi", .tools = tools, .response_format = rf };
	struct contract_submit s;
	struct contract_error e;
	struct buf b;

	(void)state;
	buf_init(&b);
	contract_encode_chat(&b, &chat);
	/* What a client sends, the dispatcher takes. */
	if (contract_decode_submit(b.data, b.len, LIMIT, &s, &e))
		fail_msg("refused: %s: %s", e.message, b.data);
	assert_true(json_equal(json_object_get(s.params, "tools"), tools));
	assert_true(json_equal(json_object_get(s.params, "response_format"), rf));
	contract_submit_free(&s);
	/* Either one alone. */
	chat.tools = NULL;
	buf_reset(&b);
	contract_encode_chat(&b, &chat);
	assert_non_null(strstr(b.data, ",\"params\":{\"response_format\":"));
	chat.tools = tools;
	chat.response_format = NULL;
	buf_reset(&b);
	contract_encode_chat(&b, &chat);
	assert_non_null(strstr(b.data, ",\"params\":{\"tools\":[{"));
	buf_free(&b);
	json_decref(tools);
	json_decref(rf);
}

/* ---- end of the issue #12 block ---- */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_submit_bad_table),
		cmocka_unit_test(test_submit_never_echoes),
		cmocka_unit_test(test_submit_full),
		cmocka_unit_test(test_submit_minimal),
		cmocka_unit_test(test_submit_nulls_are_absent),
		cmocka_unit_test(test_submit_tool_calls),
		cmocka_unit_test(test_rid_edges),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_invalid_json_position),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_encode_ack),
		cmocka_unit_test(test_encode_delta),
		cmocka_unit_test(test_encode_done),
		cmocka_unit_test(test_encode_route),
		cmocka_unit_test(test_encode_error),
		cmocka_unit_test(test_encode_config_request),
		cmocka_unit_test(test_submit_tool_shapes_bad),
		cmocka_unit_test(test_submit_tool_shapes_good),
		cmocka_unit_test(test_encode_tool_call),
		cmocka_unit_test(test_encode_chat_params),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
