/* Unit tests for the tool-call side of openai (issue #12): tool-call pieces
 * of single chunks on both decoder paths, the bounds, the fast path against
 * jansson, and the request builder forwarding tools and response_format.
 * Whole streams with tool calls are test_openai_tool_streams.c's. Links
 * util, openai and sse, as unit_openai does. */
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

/* decode_ok, and the fast path and jansson agree on s. */
static void decode_agree(struct openai_decoder *d, const char *s, struct openai_chunk *c)
{
	decode_ok(d, s, c);
	const char *why = openai_agree(s, strlen(s));
	if (why)
		print_error("paths disagree on %s for: %s\n", why, s);
	assert_null(why);
}

/* One field of a piece; NULL wants it absent. */
static void assert_field(const char *got, size_t got_len, const char *want)
{
	if (!want) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_int_equal(got_len, strlen(want));
	assert_memory_equal(got, want, got_len);
}

/* Compares one piece; NULL wants the field absent. */
static void assert_piece(const struct contract_tool_call *tc, int index, const char *id, const char *name,
			 const char *args)
{
	assert_int_equal(tc->index, index);
	assert_field(tc->id, tc->id_len, id);
	assert_field(tc->name, tc->name_len, name);
	assert_field(tc->arguments, tc->arguments_len, args);
}

/* ---- single chunks ---- */

static void test_piece_shapes(void **state)
{
	struct openai_decoder d;
	struct openai_chunk c;

	(void)state;
	openai_decoder_init(&d);
	/* OpenAI's first delta of a call: id and name, arguments "". */
	decode_agree(&d, "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
		      "[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"read_file\","
		      "\"arguments\":\"\"}}],\"refusal\":null},\"finish_reason\":null}]}", &c);
	assert_int_equal(c.ntool_calls, 1);
	assert_piece(&c.tool_calls[0], 0, "call_1", "read_file", NULL);
	assert_null(c.content);
	/* A fragment: index and arguments only; escapes decoded. */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":"
		      "\"{\\\"a\\\":\\\"\\u00e9\\\\\"}}]}}]}", &c);
	assert_int_equal(c.ntool_calls, 1);
	assert_piece(&c.tool_calls[0], 1, NULL, NULL, "{\"a\":\"\xc3\xa9\\");
	/* Several entries in one chunk: one piece each, in array order (not by
	 * index). */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":2,\"function\":{\"arguments\":\"x\"}},"
		      "{\"index\":0,\"id\":\"c0\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}", &c);
	assert_int_equal(c.ntool_calls, 2);
	assert_piece(&c.tool_calls[0], 2, NULL, NULL, "x");
	assert_piece(&c.tool_calls[1], 0, "c0", "f", "{}");
	/* Text and a call in one chunk, and the finish reason with the last
	 * fragment (vLLM). */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"content\":\"ok\",\"tool_calls\":[{\"index\":0,\"function\":"
		      "{\"arguments\":\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}", &c);
	assert_non_null(c.content);
	assert_int_equal(c.ntool_calls, 1);
	assert_piece(&c.tool_calls[0], 0, NULL, NULL, "}");
	assert_string_equal(c.finish_reason, "tool_calls");
	/* null fields (as some servers serialise absent ones) are absent. */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":null,\"type\":null,"
		      "\"function\":{\"name\":null,\"arguments\":\"{\\\"\"}}]}}]}", &c);
	assert_int_equal(c.ntool_calls, 1);
	assert_piece(&c.tool_calls[0], 0, NULL, NULL, "{\"");
	/* A NUL inside the arguments is kept; the length says where they end. */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
		      "{\"arguments\":\"a\\u0000b\"}}]}}]}", &c);
	assert_int_equal(c.ntool_calls, 1);
	assert_int_equal(c.tool_calls[0].arguments_len, 3);
	assert_memory_equal(c.tool_calls[0].arguments, "a\0b", 3);
	openai_decoder_free(&d);
}

static void test_index_rules(void **state)
{
	struct openai_decoder d;
	struct openai_chunk c;

	(void)state;
	openai_decoder_init(&d);
	/* No index, or one that is not an integer in 0..INT_MAX: the entry's
	 * position in the array (entries that are not objects count). */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\"},7,{\"id\":\"b\",\"index\":\"5\"},"
		      "{\"id\":\"c\",\"index\":-1},{\"id\":\"d\",\"index\":2147483648},{\"id\":\"e\",\"index\":2147483647},"
		      "{\"id\":\"f\",\"index\":true},{\"id\":\"g\",\"index\":null},{\"id\":\"h\",\"index\":-0}]}}]}", &c);
	assert_int_equal(c.ntool_calls, 8);
	assert_piece(&c.tool_calls[0], 0, "a", NULL, NULL);
	assert_piece(&c.tool_calls[1], 2, "b", NULL, NULL);
	assert_piece(&c.tool_calls[2], 3, "c", NULL, NULL);
	assert_piece(&c.tool_calls[3], 4, "d", NULL, NULL);
	assert_piece(&c.tool_calls[4], INT_MAX, "e", NULL, NULL);
	assert_piece(&c.tool_calls[5], 6, "f", NULL, NULL);
	assert_piece(&c.tool_calls[6], 7, "g", NULL, NULL);
	assert_piece(&c.tool_calls[7], 0, "h", NULL, NULL);
	/* A real index is not an integer: the fast path declines, jansson uses
	 * the position. */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"index\":1.0}]}}]}", &c);
	assert_piece(&c.tool_calls[0], 0, "a", NULL, NULL);
	openai_decoder_free(&d);
}

static void test_pieces_that_carry_nothing(void **state)
{
	static const char *const none[] = {
		/* Anthropic-compat sends empty argument fragments. */
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\"}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"type\":\"function\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":null}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":{\"index\":0,\"id\":\"a\"}}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":\"call\"}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[1,\"x\",null,[{\"id\":\"nested\"}]]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":{\"a\":1},\"name\":5}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":\"f\",\"id\":3}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":[{\"name\":\"f\"}]}]}}]}",
		/* Only choices[0] counts, and only its delta. */
		"{\"choices\":[{\"delta\":{}},{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\"}]}}]}",
		"{\"choices\":[{\"message\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\"}]}}]}",
		"{\"tool_calls\":[{\"index\":0,\"id\":\"a\"}]}",
	};
	struct openai_decoder d;
	struct openai_chunk c;

	(void)state;
	openai_decoder_init(&d);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(none); i++) {
		decode_agree(&d, none[i], &c);
		if (c.ntool_calls)
			print_error("input %zu: %zu pieces, want none\n", i, c.ntool_calls);
		assert_int_equal(c.ntool_calls, 0);
		assert_null(c.tool_calls);
	}
	/* function not an object: the id still counts. */
	decode_agree(&d, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":\"f\"}]}}]}", &c);
	assert_int_equal(c.ntool_calls, 1);
	assert_piece(&c.tool_calls[0], 0, "a", NULL, NULL);
	openai_decoder_free(&d);
}

/* A chunk with n tool-call entries, each with an id "c<i>". */
static char *many_calls(int n)
{
	struct buf b;

	buf_init(&b);
	buf_append_str(&b, "{\"choices\":[{\"delta\":{\"tool_calls\":[");
	for (int i = 0; i < n; i++)
		buf_printf(&b, "%s{\"index\":%d,\"id\":\"c%d\",\"function\":{\"arguments\":\"{}\"}}", i ? "," : "", i, i);
	buf_append_str(&b, "]}}]}");
	return b.data;
}

static void test_bounds(void **state)
{
	static const int counts[] = { 1, OPENAI_FAST_TOOL_CALLS, OPENAI_FAST_TOOL_CALLS + 1, 40,
				      OPENAI_MAX_TOOL_CALLS };
	struct openai_decoder d;
	struct openai_chunk c;
	char err[128], id[16];

	(void)state;
	openai_decoder_init(&d);
	for (size_t k = 0; k < UTIL_ARRAY_LEN(counts); k++) {
		char *s = many_calls(counts[k]);
		unsigned long long fast = d.fast;
		decode_agree(&d, s, &c);
		/* Up to the fast bound the fast path reads them; past it, jansson. */
		assert_int_equal(d.fast - fast, counts[k] <= OPENAI_FAST_TOOL_CALLS);
		assert_int_equal(c.ntool_calls, counts[k]);
		for (int i = 0; i < counts[k]; i++) {
			snprintf(id, sizeof(id), "c%d", i);
			assert_piece(&c.tool_calls[i], i, id, NULL, "{}");
		}
		free(s);
	}
	/* Past the hard bound the chunk is refused, with nothing half-filled. */
	char *s = many_calls(OPENAI_MAX_TOOL_CALLS + 1);
	err[0] = '\0';
	assert_int_equal(openai_decode(&d, s, strlen(s), &c, err, sizeof(err)), -1);
	assert_string_equal(err, "chunk has more than 128 tool calls");
	assert_int_equal(c.ntool_calls, 0);
	assert_null(c.tool_calls);
	assert_null(openai_agree(s, strlen(s)));
	free(s);
	/* Entries that carry nothing do not count towards it. */
	struct buf b;
	buf_init(&b);
	buf_append_str(&b, "{\"choices\":[{\"delta\":{\"tool_calls\":[");
	for (int i = 0; i < 300; i++)
		buf_printf(&b, "{\"index\":%d,\"function\":{\"arguments\":\"\"}},", i);
	buf_append_str(&b, "{\"index\":0,\"id\":\"last\"}]}}]}");
	decode_agree(&d, b.data, &c);
	assert_int_equal(c.ntool_calls, 1);
	assert_piece(&c.tool_calls[0], 0, "last", NULL, NULL);
	buf_free(&b);
	openai_decoder_free(&d);
}

/* Tool-call shapes where the fast path must agree with jansson, or decline. */
static void test_fast_path_agrees(void **state)
{
	static const char *const inputs[] = {
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"index\":1}]}}]}", /* duplicate key */
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"a\",\"name\":\"b\"}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{},\"function\":{\"name\":\"b\"}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[],\"tool_calls\":[{\"id\":\"x\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"i\\u006edex\":3,\"id\":\"esc key\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"\\u0069d\":\"esc key\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_c\\u0061lls\":[{\"index\":0,\"id\":\"x\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"\\ud83d\"}]}}]}",   /* lone surrogate */
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"\xe6\x9d\"}]}}]}",  /* cut UTF-8 */
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\ud83c\"}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\ud83c\\udf27\"}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\\ud83c\"}}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":01,\"id\":\"x\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1e0,\"id\":\"x\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":99999999999999999999,\"id\":\"x\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-9223372036854775808,\"id\":\"x\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\"},]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\"}}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[ {\"index\" : 3 , \"id\" : \"sp\" } , { } ]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"extra\":{\"id\":\"no\",\"function\":{\"name\":\"no\"}},"
		"\"id\":\"yes\"}]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}]}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\"}]},\"finish_reason\":\"tool_calls\"}],"
		"\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}",
		"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\"}]}}],\"timings\":{\"prompt_ms\":1.5}}",
		"{\"error\":{\"message\":\"m\"},\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\"}]}}]}",
	};

	(void)state;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(inputs); i++) {
		const char *why = openai_agree(inputs[i], strlen(inputs[i]));
		if (why)
			print_error("input %zu (%s): paths disagree on %s\n", i, inputs[i], why);
		assert_null(why);
	}
}
/* ---- the request ---- */

static void test_build_request_forwards(void **state)
{
	json_t *params = json_loads(
		"{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\","
		"\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]},"
		"\"strict\":true}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
		"\"parallel_tool_calls\":false,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\","
		"\"schema\":{\"type\":\"object\"}}},\"functions\":[{\"name\":\"legacy\"}],\"temperature\":null}",
		0, NULL);
	json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
				  "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA==\","
				  "\"detail\":\"high\"}}]}]",
				  0, NULL);

	(void)state;
	assert_non_null(params);
	assert_non_null(msgs);
	char *body = openai_build_request("m", msgs, params);
	json_t *root = json_loads(body, 0, NULL);
	assert_non_null(root);
	static const char *const fwd[] = { "tools", "tool_choice", "parallel_tool_calls", "response_format" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(fwd); i++) {
		if (!json_equal(json_object_get(root, fwd[i]), json_object_get(params, fwd[i])))
			fail_msg("%s not forwarded as it was: %s", fwd[i], body);
	}
	assert_true(json_equal(json_object_get(root, "messages"), msgs));
	assert_null(json_object_get(root, "functions"));
	assert_null(json_object_get(root, "temperature"));
	/* model, messages, stream, stream_options and the four. */
	assert_int_equal(json_object_size(root), 8);
	json_decref(root);
	free(body);
	json_decref(params);
	json_decref(msgs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_piece_shapes),
		cmocka_unit_test(test_index_rules),
		cmocka_unit_test(test_pieces_that_carry_nothing),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_fast_path_agrees),
		cmocka_unit_test(test_build_request_forwards),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
