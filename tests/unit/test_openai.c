/* Unit tests for openai: the chunk decoder against hand-written chunks of
 * every provider shape we know, the request builder, the HTTP error message,
 * and the fast path against jansson on tricky inputs. The recorded provider
 * streams are test_openai_corpus.c's. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "openai.h"
#include "../openai_agree.h"
#include "openai_test.h"
#include "sse.h"

#define S(lit) lit, sizeof(lit) - 1

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
/* The body is written without jansson's dump: it must read back as the
 * same JSON jansson would have written, for every kind of value, and be
 * byte-for-byte jansson's text where no control character needs a \u
 * escape (those are lower-case hex here, upper-case there). */
static void test_build_request_as_jansson(void **state)
{
	static const char *const messages[] = {
		"[{\"role\":\"user\",\"content\":\"plain\"}]",
		"[{\"role\":\"system\",\"content\":\"s\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ / \\b\\f\\n\\r\\t \\u0001 \\u001f \\u007f\"},"
		" {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"t\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\",\"detail\":\"low\"}}]},"
		" {\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
		" {\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"nul \\u0000 inside\"}]",
		"[]",
		"[{\"role\":\"user\",\"content\":\"\",\"name\":\"n\"}]",
	};
	static const char *const params[] = {
		"{}",
		"{\"temperature\":0.1,\"top_p\":1e-7,\"max_tokens\":9007199254740991,\"stop\":[\"a\",\"\\n\"],\"seed\":-3,"
		" \"presence_penalty\":1.5e300,\"frequency_penalty\":-0.0,\"parallel_tool_calls\":false}",
		"{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
		" \"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"enum\":[1,2.5,true,null,{},[]]}}}}}}],"
		" \"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
		" \"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"const\":\"\\u00ff\"}}}}",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
		for (size_t j = 0; j < sizeof(params) / sizeof(params[0]); j++) {
			json_error_t jerr;
			json_t *m = json_loads(messages[i], JSON_ALLOW_NUL, &jerr);
			json_t *p = json_loads(params[j], 0, &jerr);
			assert_non_null(m);
			assert_non_null(p);
			char *body = openai_build_request("m\"odel", m, p);

			/* What jansson would write. */
			json_t *want = json_object();
			json_object_set_new(want, "model", json_string("m\"odel"));
			json_object_set(want, "messages", m);
			json_object_set_new(want, "stream", json_true());
			json_object_set_new(want, "stream_options", json_pack("{s:b}", "include_usage", 1));
			const char *key;
			json_t *v;
			json_object_foreach(p, key, v)
				json_object_set(want, key, v);
			char *text = json_dumps(want, JSON_COMPACT);

			json_t *got = json_loads(body, JSON_ALLOW_NUL, &jerr);
			if (!got || !json_equal(got, want))
				fail_msg("messages %zu, params %zu: %s\nwant %s", i, j, body, text);
			if (i != 1) /* no control character to \u-escape: the very same bytes */
				assert_string_equal(body, text);
			json_decref(got);
			json_decref(want);
			free(text);
			free(body);
			json_decref(m);
			json_decref(p);
		}
	}
}

/* A text chunk's shape is reused for the next (see openai.c): every
 * variation of the next chunk must still agree with jansson, and the
 * shortcut must actually be taken when only the text differs. */
#define SHAPE_PRE "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
#define SHAPE_SUF "},\"finish_reason\":null}]}"

static void test_same_shape(void **state)
{
	static const char *const prev[] = {
		SHAPE_PRE "\"a\"" SHAPE_SUF,
		SHAPE_PRE "\"\\u0000\"" SHAPE_SUF,
		"{\"choices\":[{\"delta\":{\"content\":\"x\",\"reasoning\":\"r\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"total_tokens\":3}}",
		"{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
	};
	static const char *const next[] = {
		SHAPE_PRE "\"b\"" SHAPE_SUF,
		SHAPE_PRE "\"\"" SHAPE_SUF,
		SHAPE_PRE "\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00 \xc3\xa9\"" SHAPE_SUF,
		SHAPE_PRE "\"a\\\"},\\\"finish_reason\\\":\\\"stop\"" SHAPE_SUF,
		SHAPE_PRE "\"\\u0000\"" SHAPE_SUF,
		SHAPE_PRE "\"unterminated" SHAPE_SUF,
		SHAPE_PRE "\"bad escape \\x\"" SHAPE_SUF,
		SHAPE_PRE "\"lone \\udc00\"" SHAPE_SUF,
		SHAPE_PRE "\"ctl \x01\"" SHAPE_SUF,
		SHAPE_PRE "\"utf8 \xc3\"" SHAPE_SUF,
		SHAPE_PRE "\"a\"" "},\"finish_reason\":\"stop\"}]}",
		SHAPE_PRE "\"a\"" SHAPE_SUF " x",
		SHAPE_PRE "\"a\"" SHAPE_SUF " ",
		SHAPE_PRE "\"a\" " SHAPE_SUF,
		SHAPE_PRE "null" SHAPE_SUF,
		SHAPE_PRE "\"a\"",
		SHAPE_PRE,
		"{\"id\":\"c1\"}",
		"",
		"[DONE]",
		"{\"choices\":[{\"delta\":{\"content\":\"y\",\"reasoning\":\"r\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"y\"},\"finish_reason\":\"stop\"}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"y\"}}],\"usage\":{\"total_tokens\":3}}",
		"{\"choices\":[{\"delta\":{\"content\":\"y\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"y\"}}]}{",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(prev) / sizeof(prev[0]); i++) {
		for (size_t j = 0; j < sizeof(next) / sizeof(next[0]); j++) {
			const char *why = openai_agree_after(prev[i], strlen(prev[i]), next[j], strlen(next[j]));
			if (why)
				print_error("after %zu, input %zu (%s): paths disagree on %s\n", i, j, next[j], why);
			assert_null(why);
		}
	}

	/* Taken when only the text differs, and only then. */
	struct openai_decoder d;
	struct openai_chunk c;
	openai_decoder_init(&d);
	assert_int_equal(openai_decode(&d, prev[0], strlen(prev[0]), &c, NULL, 0), 0);
	assert_int_equal(d.same, 0);
	assert_int_equal(openai_decode(&d, next[2], strlen(next[2]), &c, NULL, 0), 0);
	assert_int_equal(d.same, 1);
	assert_string_equal(c.model, "m1");
	assert_int_equal(c.content_len, strlen("q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80 \xc3\xa9"));
	assert_memory_equal(c.content, "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80 \xc3\xa9", c.content_len);
	assert_null(c.finish_reason);
	assert_int_equal(openai_decode(&d, next[10], strlen(next[10]), &c, NULL, 0), 0); /* finish: full path */
	assert_int_equal(d.same, 1);
	assert_string_equal(c.finish_reason, "stop");
	assert_int_equal(openai_decode(&d, next[0], strlen(next[0]), &c, NULL, 0), 0); /* no shape kept after it */
	assert_int_equal(d.same, 1);
	assert_int_equal(openai_decode(&d, next[1], strlen(next[1]), &c, NULL, 0), 0);
	assert_int_equal(d.same, 2);
	assert_null(c.content); /* "" is no text, as on the full path */
	openai_decoder_free(&d);
}

int main(void)
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
		cmocka_unit_test(test_fast_path_agrees),
		cmocka_unit_test(test_same_shape),
		cmocka_unit_test(test_build_request_as_jansson),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
