/* Unit tests for openai: the chunk decoder against hand-written chunks of
 * every provider shape we know, the request builder, the HTTP error message,
 * and the recorded provider streams in shared/sse-corpus run through sse and
 * the decoder at every split point. */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "openai.h"
#include "../openai_agree.h"
#include "sse.h"

#define S(lit) lit, sizeof(lit) - 1

static const char *test_argv0 = "";

static void decode_ok(struct openai_decoder *d, const char *s, struct openai_chunk *c)
{
	char err[128] = "";
	int rc = openai_decode(d, s, strlen(s), c, err, sizeof(err));
	if (rc)
		print_error("decode failed: %s\n", err);
	assert_int_equal(rc, 0);
}

static void assert_str_n(const char *got, size_t got_len, const char *want)
{
	assert_non_null(got);
	assert_int_equal(got_len, strlen(want));
	assert_memory_equal(got, want, got_len);
}

static void assert_empty_chunk(const struct openai_chunk *c)
{
	assert_false(c->done);
	assert_null(c->content);
	assert_null(c->reasoning);
	assert_null(c->finish_reason);
	assert_false(c->has_usage);
	assert_false(c->is_error);
	assert_null(c->error_message);
}

static void test_content(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	decode_ok(&d, "{\"id\":\"x\",\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"H\\u00e9\"},"
		      "\"finish_reason\":null}],\"usage\":null}", &c);
	assert_str_n(c.content, c.content_len, "H\xc3\xa9");
	assert_null(c.reasoning);
	assert_null(c.finish_reason);
	assert_string_equal(c.model, "gpt-4.1");
	assert_false(c.has_usage);
	assert_false(c.is_error);
	assert_false(c.done);

	/* Empty and null content carry nothing. */
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"content\":\"\"}}]}", &c);
	assert_null(c.content);
	assert_null(c.model);
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"content\":null}}]}", &c);
	assert_empty_chunk(&c);

	/* A NUL inside content is kept; the length says where it ends. */
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}", &c);
	assert_int_equal(c.content_len, 3);
	assert_memory_equal(c.content, "a\0b", 3);
	openai_decoder_free(&d);
	openai_decoder_free(&d);
}

static void test_reasoning(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	/* DeepSeek, vLLM. */
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"content\":null,\"reasoning_content\":\"think\"}}]}", &c);
	assert_null(c.content);
	assert_str_n(c.reasoning, c.reasoning_len, "think");
	/* Newer vLLM and OpenRouter. */
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"reasoning\":\"hmm\"}}]}", &c);
	assert_str_n(c.reasoning, c.reasoning_len, "hmm");
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"reasoning_content\":\"a\",\"reasoning\":\"b\"}}]}", &c);
	assert_str_n(c.reasoning, c.reasoning_len, "a");
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"reasoning_content\":\"\",\"reasoning\":\"b\"}}]}", &c);
	assert_str_n(c.reasoning, c.reasoning_len, "b");
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"reasoning_content\":null,\"content\":\"x\"}}]}", &c);
	assert_null(c.reasoning);
	assert_str_n(c.content, c.content_len, "x");
	openai_decoder_free(&d);
}

static void test_finish_reason(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	decode_ok(&d, "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", &c);
	assert_string_equal(c.finish_reason, "stop");
	assert_null(c.content);
	decode_ok(&d, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}", &c);
	assert_string_equal(c.finish_reason, "length");
	decode_ok(&d, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"\"}]}", &c);
	assert_null(c.finish_reason);
	openai_decoder_free(&d);
}

static void test_usage(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	/* OpenAI's include_usage chunk: choices empty. */
	decode_ok(&d, "{\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":238,\"total_tokens\":257,"
		      "\"prompt_tokens_details\":{\"cached_tokens\":0}}}", &c);
	assert_true(c.has_usage);
	assert_int_equal(c.usage.prompt_tokens, 19);
	assert_int_equal(c.usage.completion_tokens, 238);
	assert_int_equal(c.usage.total_tokens, 257);
	assert_null(c.content);
	assert_null(c.finish_reason);

	/* A missing total is the sum. */
	decode_ok(&d, "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}", &c);
	assert_true(c.has_usage);
	assert_int_equal(c.usage.total_tokens, 7);
	/* Groq's top-level usage mixes timing floats with the counts. */
	decode_ok(&d, "{\"usage\":{\"queue_time\":0.04,\"prompt_tokens\":45,\"prompt_time\":0.003,"
		      "\"completion_tokens\":662.0,\"total_tokens\":707}}", &c);
	assert_true(c.has_usage);
	assert_int_equal(c.usage.prompt_tokens, 45);
	assert_int_equal(c.usage.completion_tokens, 662);
	assert_int_equal(c.usage.total_tokens, 707);
	/* usage: null on every OpenAI chunk, and usage without counts. */
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}", &c);
	assert_false(c.has_usage);
	decode_ok(&d, "{\"usage\":{\"queue_time\":1.5}}", &c);
	assert_false(c.has_usage);
	/* Counts come from the peer: the sum saturates instead of wrapping. */
	decode_ok(&d, "{\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":5}}", &c);
	assert_true(c.has_usage);
	assert_true(c.usage.total_tokens == LLONG_MAX);
	openai_decoder_free(&d);
}

static void test_x_groq_usage(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	decode_ok(&d, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_1\","
		      "\"usage\":{\"prompt_tokens\":45,\"completion_tokens\":662,\"total_tokens\":707,"
		      "\"total_time\":2.6}}}", &c);
	assert_true(c.has_usage);
	assert_int_equal(c.usage.prompt_tokens, 45);
	assert_int_equal(c.usage.completion_tokens, 662);
	assert_int_equal(c.usage.total_tokens, 707);
	assert_string_equal(c.finish_reason, "stop");
	/* The first Groq chunk has x_groq without usage. */
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"x_groq\":{\"id\":\"r\"}}", &c);
	assert_empty_chunk(&c);
	/* Top-level usage wins over x_groq's. */
	decode_ok(&d, "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3},"
		      "\"x_groq\":{\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9,\"total_tokens\":18}}}", &c);
	assert_int_equal(c.usage.total_tokens, 3);
	openai_decoder_free(&d);
}

static void test_error(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	decode_ok(&d, "{\"error\": {\"message\": \"The server had an error\", \"type\": \"server_error\"}}", &c);
	assert_true(c.is_error);
	assert_string_equal(c.error_message, "The server had an error");
	assert_null(c.content);
	decode_ok(&d, "{\"error\":\"overloaded\"}", &c);
	assert_true(c.is_error);
	assert_string_equal(c.error_message, "overloaded");
	/* Without a message there is still one to report. */
	decode_ok(&d, "{\"error\":{\"code\":500}}", &c);
	assert_true(c.is_error);
	assert_non_null(c.error_message);
	assert_true(strlen(c.error_message) > 0);
	decode_ok(&d, "{\"error\":\"\"}", &c);
	assert_true(c.is_error);
	assert_non_null(c.error_message);
	/* Older vLLM sends its ErrorResponse bare. */
	decode_ok(&d, "{\"object\":\"error\",\"message\":\"bad request\",\"code\":400}", &c);
	assert_true(c.is_error);
	assert_string_equal(c.error_message, "bad request");
	/* "error": null is no error. */
	decode_ok(&d, "{\"error\":null,\"choices\":[{\"delta\":{\"content\":\"a\"}}]}", &c);
	assert_false(c.is_error);
	assert_null(c.error_message);
	assert_str_n(c.content, c.content_len, "a");
	openai_decoder_free(&d);
}

static void test_done(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;
	char err[64];

	openai_decoder_init(&d);
	decode_ok(&d, "[DONE]", &c);
	assert_true(c.done);
	assert_null(c.content);
	decode_ok(&d, " \t[DONE]\r\n", &c);
	assert_true(c.done);
	assert_int_equal(openai_decode(&d, S("[DONE]x"), &c, err, sizeof(err)), -1);
	assert_false(c.done);
	assert_int_equal(openai_decode(&d, S("[done]"), &c, err, sizeof(err)), -1);
	assert_int_equal(openai_decode(&d, S("[DONE"), &c, err, sizeof(err)), -1);
	openai_decoder_free(&d);
}

static void test_azure_empty_first_chunk(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	decode_ok(&d, "{\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":"
		      "[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":"
		      "\"safe\"}}}]}", &c);
	assert_empty_chunk(&c);
	assert_null(c.model);
	decode_ok(&d, "{\"id\":\"x\",\"object\":\"chat.completion.chunk\"}", &c);
	assert_empty_chunk(&c);
	openai_decoder_free(&d);
}

static void test_tool_call_and_role_deltas(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	decode_ok(&d, "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
		      "[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"read_file\","
		      "\"arguments\":\"\"}}],\"refusal\":null},\"finish_reason\":null}]}", &c);
	assert_empty_chunk(&c);
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"\"}}]}}]}",
		  &c);
	assert_empty_chunk(&c);
	decode_ok(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":null}}]}", &c);
	assert_empty_chunk(&c);
	decode_ok(&d, "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}", &c);
	assert_empty_chunk(&c);
	openai_decoder_free(&d);
}

static void test_not_an_object(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"choices\":[", "{\"content\":\"sk-SECRETSECRET\"", "not json sk-SECRETSECRET", "[1,2]", "\"str\"",
		"42", "null", "true", "{\"a\":1}{\"b\":2}", "{\"a\":\"\xff\"}",
	};
	struct openai_decoder d;
	struct openai_chunk c;
	char err[128];

	openai_decoder_init(&d);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		err[0] = '\0';
		assert_int_equal(openai_decode(&d, bad[i], strlen(bad[i]), &c, err, sizeof(err)), -1);
		assert_true(strlen(err) > 0);
		/* The reason quotes none of the payload. */
		assert_null(strstr(err, "SECRET"));
		assert_null(strstr(err, "not json"));
		assert_empty_chunk(&c);
	}
	/* err may be NULL. */
	assert_int_equal(openai_decode(&d, S("{"), &c, NULL, 0), -1);
	openai_decoder_free(&d);
}

static void test_empty_payload(void **state)
{
	(void)state;
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	assert_int_equal(openai_decode(&d, "", 0, &c, NULL, 0), 0);
	assert_empty_chunk(&c);
	assert_int_equal(openai_decode(&d, S(" \r\n"), &c, NULL, 0), 0);
	assert_empty_chunk(&c);
	openai_decoder_free(&d);
}

static void test_wrong_types(void **state)
{
	(void)state;
	static const char *const odd[] = {
		"{\"choices\":{\"0\":{}}}",
		"{\"choices\":[1]}",
		"{\"choices\":[null]}",
		"{\"choices\":[{\"delta\":\"hi\"}]}",
		"{\"choices\":[{\"delta\":[1]}]}",
		"{\"choices\":[{\"delta\":{\"content\":5,\"reasoning_content\":[],\"reasoning\":{}},\"finish_reason\":3}]}",
		"{\"choices\":\"x\",\"usage\":\"x\",\"model\":7,\"error\":5,\"x_groq\":1}",
		"{\"usage\":{\"prompt_tokens\":\"5\",\"completion_tokens\":null,\"total_tokens\":true}}",
		"{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":1e300,\"total_tokens\":0.5}}",
		"{\"x_groq\":{\"usage\":3}}",
		"{\"x_groq\":{\"usage\":[]}}",
		"{\"error\":[\"x\"],\"object\":5}",
		"{\"object\":\"error\",\"message\":5}",
		"{}",
	};
	struct openai_decoder d;
	struct openai_chunk c;

	openai_decoder_init(&d);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(odd); i++) {
		decode_ok(&d, odd[i], &c);
		assert_null(c.content);
		assert_null(c.reasoning);
		assert_null(c.finish_reason);
		assert_null(c.model);
		assert_false(c.has_usage);
		assert_false(c.done);
		/* Only a bare {"object":"error"} counts as an error here. */
		assert_int_equal(c.is_error, strstr(odd[i], "\"object\":\"error\"") != NULL);
		assert_true(!c.is_error || c.error_message);
	}
	openai_decoder_free(&d);
}

static void test_build_request(void **state)
{
	(void)state;
	json_error_t jerr;
	json_t *messages = json_pack("[{s:s,s:s}]", "role", "user", "content", "hi");
	json_t *params = json_pack("{s:f,s:f,s:i,s:[s],s:i,s:f,s:f,s:b,s:s,s:i,s:[],s:s,s:{},s:n}", "temperature", 0.5,
				   "top_p", 0.9, "max_tokens", 100, "stop", "END", "seed", 7, "presence_penalty", 0.25,
				   "frequency_penalty", -0.5, "stream", 0, "model", "other", "n", 3, "functions",
				   "api_key", "sk-x", "logit_bias", "user");
	assert_non_null(messages);
	assert_non_null(params);

	char *body = openai_build_request("gpt-4.1", messages, params);
	assert_non_null(body);
	/* Compact: no space after separators. */
	assert_null(strstr(body, ", "));
	assert_null(strstr(body, "\": "));
	json_t *root = json_loads(body, 0, &jerr);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "model")), "gpt-4.1");
	assert_true(json_equal(json_object_get(root, "messages"), messages));
	assert_true(json_is_true(json_object_get(root, "stream")));
	assert_true(json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage")));
	assert_true(json_real_value(json_object_get(root, "temperature")) == 0.5);
	assert_true(json_real_value(json_object_get(root, "top_p")) == 0.9);
	assert_int_equal(json_integer_value(json_object_get(root, "max_tokens")), 100);
	assert_string_equal(json_string_value(json_array_get(json_object_get(root, "stop"), 0)), "END");
	assert_int_equal(json_integer_value(json_object_get(root, "seed")), 7);
	assert_true(json_real_value(json_object_get(root, "presence_penalty")) == 0.25);
	assert_true(json_real_value(json_object_get(root, "frequency_penalty")) == -0.5);
	/* Exactly those keys: model, messages, stream, stream_options, and 7. */
	assert_int_equal(json_object_size(root), 11);
	assert_null(json_object_get(root, "n"));
	assert_null(json_object_get(root, "functions"));
	assert_null(json_object_get(root, "api_key"));
	assert_null(strstr(body, "sk-x"));
	json_decref(root);
	free(body);

	/* The caller's objects are not consumed. */
	assert_int_equal(messages->refcount, 1);
	assert_int_equal(params->refcount, 1);

	/* No params, params of the wrong type, a null param, no messages. */
	json_t *nullparam = json_pack("{s:n}", "temperature");
	const char *want = "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
	body = openai_build_request("m", NULL, NULL);
	assert_string_equal(body, want);
	free(body);
	json_t *arr = json_array();
	body = openai_build_request("m", NULL, arr);
	assert_string_equal(body, want);
	free(body);
	body = openai_build_request("m", NULL, nullparam);
	assert_string_equal(body, want);
	free(body);
	json_decref(arr);
	json_decref(nullparam);
	json_decref(messages);
	json_decref(params);
}

static void check_errmsg(const char *body, size_t len, size_t outlen, const char *want)
{
	char out[512];

	assert_true(outlen <= sizeof(out));
	memset(out, 'Z', sizeof(out));
	openai_error_message(body, len, out, outlen);
	assert_string_equal(out, want);
}

#define ERRMSG(lit, want) check_errmsg(S(lit), 256, want)

static void test_error_message(void **state)
{
	(void)state;
	ERRMSG("{\"error\":{\"message\":\"Invalid API key\",\"type\":\"invalid_request_error\",\"code\":null}}",
	       "Invalid API key");
	ERRMSG("{\n  \"error\": {\n    \"message\": \"Input tokens exceed\",\n    \"type\": \"x\"\n  }\n}",
	       "Input tokens exceed");
	ERRMSG("{\"error\":\"model not found\"}", "model not found");
	ERRMSG("{\"message\":\"rate limited\"}", "rate limited");
	ERRMSG("{\"detail\":\"Not Found\"}", "Not Found");
	ERRMSG("{\"detail\":[{\"loc\":[\"body\",\"model\"],\"msg\":\"field required\",\"type\":\"missing\"}]}",
	       "field required");
	/* A message that is not a string falls through to the next source. */
	ERRMSG("{\"error\":{\"message\":5},\"message\":\"outer\"}", "outer");
	ERRMSG("{\"error\":{\"code\":5}}", "{\"error\":{\"code\":5}}");
	/* Not JSON: the body itself, as one clean line. */
	ERRMSG("Bad Gateway\r\n", "Bad Gateway");
	ERRMSG("<html>\n<body>\n  <h1>502</h1>\n</body></html>\n", "<html> <body> <h1>502</h1> </body></html>");
	ERRMSG("  a\tb\x01" "c\x7f" "d  ", "a b c d");
	ERRMSG("{\"error\":{\"message\":\"line1\\nline2\\u0000x\"}}", "line1 line2 x");
	ERRMSG("a\xff" "b", "a?b");
	ERRMSG("", "");
	check_errmsg("x", 1, 1, "");
	char one = 'Z';
	openai_error_message("x", 1, &one, 0);
	assert_int_equal(one, 'Z');
}

static void test_error_message_truncation(void **state)
{
	(void)state;
	/* Five two-byte characters into five bytes: two whole ones fit. */
	check_errmsg(S("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), 6, "\xc3\xa9\xc3\xa9");
	check_errmsg(S("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), 7, "\xc3\xa9\xc3\xa9\xc3\xa9");
	check_errmsg(S("{\"error\":{\"message\":\"ab\xf0\x9f\x98\x80" "cd\"}}"), 6, "ab");
	check_errmsg(S("{\"error\":{\"message\":\"ab\xf0\x9f\x98\x80" "cd\"}}"), 7, "ab\xf0\x9f\x98\x80");
	check_errmsg(S("abcdef"), 4, "abc");
	/* A long body is cut, never overrun. */
	char big[2000];
	memset(big, 'q', sizeof(big));
	char out[101];
	openai_error_message(big, sizeof(big), out, sizeof(out));
	assert_int_equal(strlen(out), 100);
}

/* ---- the recorded streams ---- */

struct outcome {
	struct openai_decoder dec;
	struct buf text;
	struct buf reasoning;
	struct buf finish; /* the last non-null finish_reason */
	bool has_finish;
	bool has_usage;
	struct contract_usage usage;
	struct buf error;
	bool is_error;
	bool in_finish;
	bool done_feed;   /* [DONE] dispatched by sse_feed: strict WHATWG */
	bool done_finish; /* [DONE] dispatched only by sse_finish */
	int decode_failures;
	int events;
};

static void outcome_init(struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	openai_decoder_init(&o->dec);
	buf_append(&o->text, "", 0);
	buf_append(&o->reasoning, "", 0);
	buf_append(&o->finish, "", 0);
	buf_append(&o->error, "", 0);
}

static void outcome_free(struct outcome *o)
{
	openai_decoder_free(&o->dec);
	buf_free(&o->text);
	buf_free(&o->reasoning);
	buf_free(&o->finish);
	buf_free(&o->error);
}

static int outcome_cb(void *ud, const struct sse_event *ev)
{
	struct outcome *o = ud;
	struct openai_chunk c;
	char err[128];

	o->events++;
	if (openai_decode(&o->dec, ev->data, ev->data_len, &c, err, sizeof(err))) {
		print_error("event %d: %s\n", o->events, err);
		o->decode_failures++;
		return 0;
	}
	if (c.done) {
		if (o->in_finish)
			o->done_finish = true;
		else
			o->done_feed = true;
	}
	if (c.content)
		buf_append(&o->text, c.content, c.content_len);
	if (c.reasoning)
		buf_append(&o->reasoning, c.reasoning, c.reasoning_len);
	if (c.finish_reason) {
		buf_reset(&o->finish);
		buf_append_str(&o->finish, c.finish_reason);
		o->has_finish = true;
	}
	if (c.has_usage) {
		o->has_usage = true;
		o->usage = c.usage;
	}
	if (c.is_error) {
		o->is_error = true;
		buf_reset(&o->error);
		buf_append_str(&o->error, c.error_message);
	}
	return 0;
}

/* Feeds body in chunks of `step` bytes (0: whole), or as two feeds split at
 * `split` when step is SIZE_MAX, then finishes. */
static void corpus_run(const char *body, size_t len, size_t step, size_t split, struct outcome *o)
{
	struct sse_parser p;

	outcome_init(o);
	sse_init(&p, 65536);
	if (step == SIZE_MAX) {
		assert_int_equal(sse_feed(&p, body, split, outcome_cb, o), 0);
		assert_int_equal(sse_feed(&p, body + split, len - split, outcome_cb, o), 0);
	} else if (step == 0) {
		assert_int_equal(sse_feed(&p, body, len, outcome_cb, o), 0);
	} else {
		for (size_t off = 0; off < len; off += step) {
			size_t n = len - off < step ? len - off : step;
			assert_int_equal(sse_feed(&p, body + off, n, outcome_cb, o), 0);
		}
	}
	o->in_finish = true;
	assert_int_equal(sse_finish(&p, outcome_cb, o), 0);
	sse_free(&p);
}

static void corpus_check(const char *name, const char *how, const char *body, size_t len, json_t *expect,
			 const struct outcome *o)
{
	json_t *v;

	if (strcmp(how, "two feeds"))
		print_message("  %s (%s): %d events\n", name, how, o->events);
	assert_int_equal(o->decode_failures, 0);
	assert_string_equal(o->text.data, json_string_value(json_object_get(expect, "text")));
	v = json_object_get(expect, "reasoning");
	assert_string_equal(o->reasoning.data, json_is_string(v) ? json_string_value(v) : "");

	v = json_object_get(expect, "finish_reason");
	if (json_is_string(v)) {
		assert_true(o->has_finish);
		assert_string_equal(o->finish.data, json_string_value(v));
	} else {
		assert_false(o->has_finish);
	}

	v = json_object_get(expect, "usage");
	if (json_is_object(v)) {
		assert_true(o->has_usage);
		assert_int_equal(o->usage.prompt_tokens, json_integer_value(json_object_get(v, "prompt_tokens")));
		assert_int_equal(o->usage.completion_tokens,
				 json_integer_value(json_object_get(v, "completion_tokens")));
		assert_int_equal(o->usage.total_tokens, json_integer_value(json_object_get(v, "total_tokens")));
	} else {
		assert_false(o->has_usage);
	}

	v = json_object_get(expect, "error");
	if (json_is_object(v)) {
		const char *want = json_string_value(json_object_get(v, "message_contains"));
		assert_true(o->is_error);
		assert_non_null(want);
		if (!strstr(o->error.data, want))
			print_error("error message '%s' lacks '%s'\n", o->error.data, want);
		assert_non_null(strstr(o->error.data, want));
	} else {
		assert_false(o->is_error);
	}

	/* expect.done_marker follows WHATWG strictly: an event without its
	 * blank line is never dispatched. sse_finish dispatches it anyway, so
	 * a body ending "data: [DONE]\n" shows [DONE] only at finish. */
	v = json_object_get(expect, "done_marker");
	if (json_is_boolean(v))
		assert_int_equal(o->done_feed, json_is_true(v));
	bool has_done = memmem(body, len, "data: [DONE]", 12) != NULL;
	assert_int_equal(o->done_feed || o->done_finish, has_done);
	assert_false(o->done_feed && o->done_finish);
}

/* The events of one parse, each as its data bytes, for comparing splits
 * against the whole-body parse without decoding every time. */
struct evlist {
	struct buf bytes;
	size_t *off;
	size_t n, cap;
	size_t next;   /* comparing: the event expected next */
	bool mismatch; /* comparing: an event differed or was extra */
};

static int evlist_record(void *ud, const struct sse_event *ev)
{
	struct evlist *l = ud;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->off = xrealloc(l->off, (l->cap + 1) * sizeof(*l->off));
	}
	if (l->n == 0)
		l->off[0] = 0;
	buf_append(&l->bytes, ev->data, ev->data_len);
	l->off[++l->n] = l->bytes.len;
	return 0;
}

static int evlist_compare(void *ud, const struct sse_event *ev)
{
	struct evlist *l = ud;
	size_t i = l->next++;

	if (i >= l->n || l->off[i + 1] - l->off[i] != ev->data_len ||
	    memcmp(l->bytes.data + l->off[i], ev->data, ev->data_len))
		l->mismatch = true;
	return 0;
}

static void corpus_splits(const char *name, const char *body, size_t len)
{
	struct evlist ref = { 0 };
	struct sse_parser p;

	sse_init(&p, 65536);
	assert_int_equal(sse_feed(&p, body, len, evlist_record, &ref), 0);
	assert_int_equal(sse_finish(&p, evlist_record, &ref), 0);
	for (size_t k = 0; k <= len; k++) {
		ref.next = 0;
		ref.mismatch = false;
		assert_int_equal(sse_feed(&p, body, k, evlist_compare, &ref), 0);
		assert_int_equal(sse_feed(&p, body + k, len - k, evlist_compare, &ref), 0);
		assert_int_equal(sse_finish(&p, evlist_compare, &ref), 0);
		if (ref.mismatch || ref.next != ref.n)
			print_error("%s: split at %zu of %zu: %zu events, want %zu\n", name, k, len, ref.next, ref.n);
		assert_false(ref.mismatch);
		assert_int_equal(ref.next, ref.n);
	}
	print_message("  %s: %zu split points agree (%zu events)\n", name, len + 1, ref.n);
	sse_free(&p);
	buf_free(&ref.bytes);
	free(ref.off);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[65536];
	size_t n;

	if (!f)
		return NULL;
	buf_init(&b);
	buf_append(&b, "", 0);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	*len = b.len;
	return b.data;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* SSE_CORPUS_DIR, else ../shared/sse-corpus from the repository root, else
 * the same found by walking up from the test binary (build/tests or
 * build/asan/tests). */
static char *corpus_dir(void)
{
	const char *env = getenv("SSE_CORPUS_DIR");
	char path[PATH_MAX];

	if (env && *env)
		return is_dir(env) ? xstrdup(env) : NULL;
	if (is_dir("../shared/sse-corpus"))
		return xstrdup("../shared/sse-corpus");
	const char *slash = strrchr(test_argv0, '/');
	if (!slash)
		return NULL;
	int dlen = (int)(slash - test_argv0);
	for (int up = 1; up <= 5; up++) {
		struct buf b;
		buf_init(&b);
		buf_printf(&b, "%.*s", dlen, test_argv0);
		for (int i = 0; i < up; i++)
			buf_append_str(&b, "/..");
		buf_append_str(&b, "/shared/sse-corpus");
		bool ok = b.len < sizeof(path) && is_dir(b.data);
		if (ok) {
			char *r = realpath(b.data, path) ? xstrdup(path) : xstrdup(b.data);
			buf_free(&b);
			return r;
		}
		buf_free(&b);
	}
	return NULL;
}

static int json_name_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return n > 5 && !strcmp(e->d_name + n - 5, ".json");
}

static void test_corpus(void **state)
{
	(void)state;
	char *dir = corpus_dir();
	struct dirent **names;
	int count, cases = 0;

	if (!dir) {
		print_message("sse corpus not found (set SSE_CORPUS_DIR or check out ../shared/sse-corpus), skipped\n");
		skip();
		return;
	}
	print_message("sse corpus: %s\n", dir);
	count = scandir(dir, &names, json_name_filter, alphasort);
	assert_true(count > 0);
	for (int i = 0; i < count; i++) {
		char *jpath = xasprintf("%s/%s", dir, names[i]->d_name);
		char *spath = xasprintf("%s/%.*s.sse", dir, (int)(strlen(names[i]->d_name) - 5), names[i]->d_name);
		const char *name = names[i]->d_name;
		json_error_t jerr;
		json_t *meta = json_load_file(jpath, 0, &jerr);
		size_t len = 0;
		char *body = read_all(spath, &len);

		if (!meta || !body)
			print_error("cannot load %s or %s\n", jpath, spath);
		assert_non_null(meta);
		assert_non_null(body);
		json_t *expect = json_object_get(meta, "expect");
		json_int_t status = json_integer_value(json_object_get(meta, "http_status"));
		assert_true(json_is_object(expect));

		if (status == 200) {
			struct outcome o;
			corpus_run(body, len, 0, 0, &o);
			corpus_check(name, "whole", body, len, expect, &o);
			outcome_free(&o);
			corpus_run(body, len, 1, 0, &o);
			corpus_check(name, "byte at a time", body, len, expect, &o);
			outcome_free(&o);
			corpus_run(body, len, 1460, 0, &o);
			corpus_check(name, "1460-byte reads", body, len, expect, &o);
			outcome_free(&o);
			/* Small bodies get the full decode at every split; all
			 * get the event comparison at every split, which implies
			 * the same decoded result. */
			if (len <= 4096) {
				for (size_t k = 0; k <= len; k++) {
					corpus_run(body, len, SIZE_MAX, k, &o);
					corpus_check(name, "two feeds", body, len, expect, &o);
					outcome_free(&o);
				}
			}
			corpus_splits(name, body, len);
		} else {
			char msg[512];
			json_t *e = json_object_get(expect, "error");
			const char *want = json_string_value(json_object_get(e, "message_contains"));
			assert_non_null(want);
			assert_int_equal(json_integer_value(json_object_get(e, "status")), status);
			openai_error_message(body, len, msg, sizeof(msg));
			print_message("  %s: HTTP %d: %s\n", name, (int)status, msg);
			if (!strstr(msg, want))
				print_error("'%s' lacks '%s'\n", msg, want);
			assert_non_null(strstr(msg, want));
		}
		cases++;
		json_decref(meta);
		free(body);
		free(jpath);
		free(spath);
		free(names[i]);
	}
	free(names);
	free(dir);
	print_message("sse corpus: %d cases\n", cases);
}

/* The fast path must agree with jansson on tricky inputs... */
static void test_fast_path_agrees(void **state)
{
	static const char *const inputs[] = {
		"{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"a\\n\\\"b\\u00e9\\ud83d\\ude00\\u0000c\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"\\ud83d\"}}]}",          /* lone surrogate */
		"{\"choices\":[{\"delta\":{\"content\":\"\\udc00x\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",               /* invalid UTF-8 */
		"{\"choices\":[{\"delta\":{\"content\":\"\xe4\xbd\xa0\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"a\tb\"}}]}",               /* raw control char */
		"{\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"y\"}}]}", /* duplicate key */
		"{\"choices\":[{\"delta\":{\"con\\u0074ent\":\"esc key\"}}]}",
		"{\"choices\":[{\"delta\":{\"\\u0000\":1}}]}",
		"{\"choices\":{\"delta\":{\"content\":\"not an array\"}}}",
		"{\"choices\":[1,{\"delta\":{\"content\":\"second\"}}]}",
		"{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}",
		"{\"choices\":[],\"usage\":{\"prompt_tokens\":3.0,\"completion_tokens\":4}}",
		"{\"usage\":{\"prompt_tokens\":-1}}",
		"{\"usage\":{\"prompt_tokens\":99999999999999999999}}",
		"{\"usage\":null,\"x_groq\":{\"usage\":{\"total_tokens\":7}}}",
		"{\"usage\":{},\"x_groq\":{\"usage\":{\"total_tokens\":7}}}",
		"{\"error\":{\"message\":\"boom\"}}",
		"{\"error\":\"plain\"}",
		"{\"error\":\"\"}",
		"{\"error\":5}",
		"{\"object\":\"error\",\"message\":\"old vllm\"}",
		"{\"object\":\"error\\u0000x\",\"message\":\"m\"}", /* found in review: NUL inside */
		"{\"model\":\"\",\"choices\":[{\"finish_reason\":\"\",\"delta\":{}}]}",
		"{\"model\":7,\"choices\":[{\"finish_reason\":null,\"delta\":[]}]}",
		"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
		"{\"a\":01}",
		"{\"a\":1.5e3,\"choices\":[{\"delta\":{\"content\":\"r\"}}]}",
		"{\"a\":-}",
		"{\"a\":tru}",
		"{\"a\":1,}",
		"{\"a\" 1}",
		"{} x",
		"[1,2]",
		"\"str\"",
		"{",
		"  {\"choices\":[{\"delta\":{\"reasoning\":\"r\",\"reasoning_content\":\"\"}}]}  ",
		"{\"choices\":[{\"delta\":{\"reasoning_content\":\"rc\",\"reasoning\":\"r\"}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
		"{\"abcdefghijklmnopqrstuvwxyz0123456789\":1,\"model\":\"m\"}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		const char *why = openai_agree(inputs[i], strlen(inputs[i]));
		if (why)
			print_error("input %zu (%s): paths disagree on %s\n", i, inputs[i], why);
		assert_null(why);
	}
}

/* ...and on every event of the recorded streams, where it must also be the
 * path actually taken (else it buys nothing). */
static int agree_cb(void *ud, const struct sse_event *ev)
{
	struct openai_decoder *d = ud;
	struct openai_chunk c;
	const char *why = openai_agree(ev->data, ev->data_len);

	if (why)
		print_error("paths disagree on %s for: %.200s\n", why, ev->data);
	assert_null(why);
	(void)!openai_decode(d, ev->data, ev->data_len, &c, NULL, 0);
	return 0;
}

static void test_fast_path_corpus(void **state)
{
	char *dir = corpus_dir();
	struct dirent **names;
	int count;
	struct openai_decoder d;

	(void)state;
	if (!dir) {
		print_message("sse corpus not found, skipped\n");
		skip();
		return;
	}
	openai_decoder_init(&d);
	count = scandir(dir, &names, json_name_filter, alphasort);
	for (int i = 0; i < count; i++) {
		char *spath = xasprintf("%s/%.*s.sse", dir, (int)(strlen(names[i]->d_name) - 5), names[i]->d_name);
		size_t len = 0;
		char *body = read_all(spath, &len);
		struct sse_parser p;
		sse_init(&p, 1 << 20);
		assert_int_equal(sse_feed(&p, body, len, agree_cb, &d), SSE_OK);
		(void)!sse_finish(&p, agree_cb, &d);
		sse_free(&p);
		free(body);
		free(spath);
		free(names[i]);
	}
	free(names);
	free(dir);
	print_message("fast path: %llu chunks, jansson: %llu\n", d.fast, d.slow);
	assert_true(d.fast > 0);
	assert_true(d.slow * 20 < d.fast); /* the common shapes take the fast path */
	openai_decoder_free(&d);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content),
		cmocka_unit_test(test_reasoning),
		cmocka_unit_test(test_finish_reason),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_x_groq_usage),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_done),
		cmocka_unit_test(test_azure_empty_first_chunk),
		cmocka_unit_test(test_tool_call_and_role_deltas),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_empty_payload),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_build_request),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_error_message_truncation),
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_fast_path_agrees),
		cmocka_unit_test(test_fast_path_corpus),
	};
	(void)argc;
	test_argv0 = argv[0];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
