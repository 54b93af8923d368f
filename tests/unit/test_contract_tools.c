/* Unit tests for contract: tools, structured output and content parts in a
 * submit (their shapes), the tool_call event, and a client's chat with
 * params (issue #12). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_check.h"

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
	expect_bad_cases(tool_bad_cases, UTIL_ARRAY_LEN(tool_bad_cases));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_submit_tool_shapes_bad),
		cmocka_unit_test(test_submit_tool_shapes_good),
		cmocka_unit_test(test_encode_tool_call),
		cmocka_unit_test(test_encode_chat_params),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

