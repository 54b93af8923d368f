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

#include "contract_check.h"

/* ---- submits ---- */

static const struct bad_case bad_cases[] = {
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
	expect_bad_cases(bad_cases, UTIL_ARRAY_LEN(bad_cases));
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
	contract_encode_ack(&b, "r-123", NULL, CONTRACT_OK, NULL);
	assert_string_equal(b.data, "{\"request_id\":\"r-123\",\"accepted\":true}");
	v = parse(&b);
	assert_true(json_is_true(json_object_get(v, "accepted")));
	assert_null(json_object_get(v, "error"));
	json_decref(v);

	buf_reset(&b);
	contract_encode_ack(&b, "r-123", NULL, CONTRACT_BUSY, "too many \"requests\"\n");
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
		contract_encode_ack(&b, i ? "" : NULL, NULL, CONTRACT_BAD_REQUEST, "request_id: bad");
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
	struct contract_route route = { 2, "http://10.0.0.2:8000/v1", 0 };
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

