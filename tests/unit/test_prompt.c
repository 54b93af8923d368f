/* Unit tests for prompt: memory rendering through the template and the
 * upstream messages array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "prompt.h"

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);

	if (!v)
		fail_msg("bad test JSON (%s): %s", jerr.text, text);
	return v;
}

static void assert_render(const char *tpl, const char *profile, const char *facts_json, const char *want)
{
	json_t *facts = facts_json ? load(facts_json) : NULL;
	char *got = prompt_render_memory(tpl, profile, facts);

	if (!want && got)
		fail_msg("want no memory block, got \"%s\"", got);
	if (want && !got)
		fail_msg("want \"%s\", got NULL", want);
	if (want)
		assert_string_equal(got, want);
	free(got);
	json_decref(facts);
}

static void test_render_default(void **state)
{
	(void)state;
	assert_render(NULL, "姓名: 老王; 爱好: 钓鱼", "[\"住在杭州\",\"有一只猫\"]",
		      "What you know about the user:\nProfile: 姓名: 老王; 爱好: 钓鱼\n- 住在杭州\n- 有一只猫");
	/* "" means "not configured", like NULL. */
	assert_render("", "p", "[\"f\"]", "What you know about the user:\nProfile: p\n- f");
	assert_render(PROMPT_DEFAULT_MEMORY_TEMPLATE, "p", "[\"f\"]",
		      "What you know about the user:\nProfile: p\n- f");
}

static void test_render_missing_parts(void **state)
{
	(void)state;
	/* The line of a placeholder without a value is dropped; other lines stay. */
	assert_render(NULL, "p", NULL, "What you know about the user:\nProfile: p");
	assert_render(NULL, "p", "[]", "What you know about the user:\nProfile: p");
	assert_render(NULL, NULL, "[\"a\",\"b\"]", "What you know about the user:\n- a\n- b");
	/* Empty profile and empty facts count as absent. */
	assert_render(NULL, "", "[\"a\"]", "What you know about the user:\n- a");
	assert_render(NULL, "p", "[\"\"]", "What you know about the user:\nProfile: p");
	assert_render(NULL, "p", "[\"\",\"b\"]", "What you know about the user:\nProfile: p\n- b");
	/* No memory at all: no block. */
	assert_render(NULL, NULL, NULL, NULL);
	assert_render(NULL, "", "[]", NULL);
	assert_render(NULL, "", "[\"\"]", NULL);
	assert_render("no placeholders", NULL, NULL, NULL);
	/* Everything dropped renders nothing. */
	assert_render("{facts}", "p", NULL, NULL);
}

static void test_render_verbatim(void **state)
{
	const char *profile = "He said \"hi\"\\n\n{facts} and {profile} 中文 😀\ttab {prof";
	json_t *facts = load("[\"likes {profile}\",\"multi\\nline\",\"q\\\"uote\"]");
	char *got;

	(void)state;
	got = prompt_render_memory(NULL, profile, facts);
	assert_string_equal(got, "What you know about the user:\nProfile: He said \"hi\"\\n\n{facts} and {profile} "
				 "中文 😀\ttab {prof\n- likes {profile}\n- multi\nline\n- q\"uote");
	free(got);

	/* Profile only: the literal "{facts}" inside it survives too. */
	got = prompt_render_memory("{profile}", profile, NULL);
	assert_string_equal(got, profile);
	free(got);
	json_decref(facts);
}

static void test_render_custom_templates(void **state)
{
	(void)state;
	/* No placeholders: used as-is when memory exists. */
	assert_render("Remember the user.", "p", NULL, "Remember the user.");
	assert_render("Remember the user.", NULL, "[\"f\"]", "Remember the user.");
	/* Both on one line; the line needs both values. */
	assert_render("A\n[{profile}|{facts}]\nB", "p", "[\"f\"]", "A\n[p|- f]\nB");
	assert_render("A\n[{profile}|{facts}]\nB", "p", NULL, "A\nB");
	/* Adjacent and repeated placeholders. */
	assert_render("{profile}{profile}{facts}", "x", "[\"y\"]", "xx- y");
	/* Unknown or broken placeholders are literal text. */
	assert_render("{name} {profile} {profile {facts", "p", NULL, "{name} p {profile {facts");
	/* Blank lines and a trailing newline are kept. */
	assert_render("\nP={profile}\n\nF:\n{facts}\n", "p", NULL, "\nP=p\n\nF:\n");
	assert_render("User profile:\n{profile}", "line1\nline2", NULL, "User profile:\nline1\nline2");
}

static json_t *build(const char *sys, const char *tpl, const char *msgs_json, const char *profile,
		     const char *facts_json)
{
	json_t *msgs = load(msgs_json);
	json_t *facts = facts_json ? load(facts_json) : NULL;
	json_t *out = prompt_build(sys, tpl, msgs, profile, facts);

	/* The result must outlive the request's tree it was built from. */
	json_decref(msgs);
	json_decref(facts);
	assert_true(json_is_array(out));
	return out;
}

/* Compares out with the JSON text want (object key order does not matter). */
static void assert_json(json_t *out, const char *want)
{
	json_t *w = load(want);

	if (!json_equal(out, w)) {
		char *got = json_dumps(out, JSON_COMPACT);
		fail_msg("got  %s\nwant %s", got, want);
	}
	json_decref(w);
}

static void test_build_full(void **state)
{
	json_t *out;

	(void)state;
	out = build("You are helpful.", NULL,
		    "[{\"role\":\"system\",\"content\":\"Answer in Chinese.\"},"
		    "{\"role\":\"user\",\"content\":\"q1\",\"name\":\"wang\",\"extra\":1},"
		    "{\"role\":\"assistant\",\"content\":\"a1\"},"
		    "{\"role\":\"system\",\"content\":\"Later system note.\"},"
		    "{\"role\":\"user\",\"content\":\"q2\"}]",
		    "姓名: 老王", "[\"住在杭州\"]");
	assert_json(out, "[{\"role\":\"system\",\"content\":\"You are helpful.\\n\\nWhat you know about the user:\\n"
			 "Profile: 姓名: 老王\\n- 住在杭州\\n\\nAnswer in Chinese.\"},"
			 "{\"role\":\"user\",\"content\":\"q1\",\"name\":\"wang\"},"
			 "{\"role\":\"assistant\",\"content\":\"a1\"},"
			 "{\"role\":\"system\",\"content\":\"Later system note.\"},"
			 "{\"role\":\"user\",\"content\":\"q2\"}]");
	json_decref(out);
}

static void test_build_parts(void **state)
{
	json_t *out;

	(void)state;
	/* Nothing to say: no system message at all. */
	out = build(NULL, NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, NULL);
	assert_json(out, "[{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);
	out = build("", "", "[{\"role\":\"user\",\"content\":\"hi\"}]", "", "[]");
	assert_json(out, "[{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);

	/* System prompt only. */
	out = build("S", NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);

	/* Memory only. */
	out = build(NULL, "Known: {profile}", "[{\"role\":\"user\",\"content\":\"hi\"}]", "p", NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":\"Known: p\"},{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);

	/* The request's own system message only; it moves to the front even
	 * when it is not first. */
	out = build(NULL, NULL,
		    "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"system\",\"content\":\"R\"},"
		    "{\"role\":\"user\",\"content\":\"again\"}]",
		    NULL, NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":\"R\"},{\"role\":\"user\",\"content\":\"hi\"},"
			 "{\"role\":\"user\",\"content\":\"again\"}]");
	json_decref(out);

	/* An empty request system message contributes nothing and is consumed. */
	out = build(NULL, NULL, "[{\"role\":\"system\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"hi\"}]",
		    NULL, NULL);
	assert_json(out, "[{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);
	out = build("S", NULL, "[{\"role\":\"system\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"hi\"}]",
		    NULL, NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);

	/* System prompt and request system message, no memory. */
	out = build("S", NULL, "[{\"role\":\"system\",\"content\":\"R\"},{\"role\":\"user\",\"content\":\"hi\"}]",
		    NULL, NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":\"S\\n\\nR\"},{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);
}

static void test_build_tools(void **state)
{
	json_t *out;

	(void)state;
	out = build(NULL, NULL,
		    "[{\"role\":\"user\",\"content\":\"weather?\"},"
		    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
		    "\"function\":{\"name\":\"w\",\"arguments\":\"{}\"}}]},"
		    "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c2\"}]},"
		    "{\"role\":\"tool\",\"content\":\"sunny\",\"tool_call_id\":\"c1\",\"name\":null}]",
		    NULL, NULL);
	assert_json(out, "[{\"role\":\"user\",\"content\":\"weather?\"},"
			 "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
			 "\"function\":{\"name\":\"w\",\"arguments\":\"{}\"}}]},"
			 "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c2\"}]},"
			 "{\"role\":\"tool\",\"content\":\"sunny\",\"tool_call_id\":\"c1\"}]");
	json_decref(out);
}

static void test_build_profile_verbatim_on_wire(void **state)
{
	const char *profile = "quote \" backslash \\ newline\n{facts} {profile} 中文";
	json_t *out, *back;
	char *wire;

	(void)state;
	out = build(NULL, "P:{profile}", "[{\"role\":\"user\",\"content\":\"hi\"}]", profile, "[\"f\"]");
	/* Serialise as the upstream request would, and read it back. */
	wire = json_dumps(out, JSON_COMPACT);
	assert_non_null(wire);
	back = load(wire);
	const char *sys = json_string_value(json_object_get(json_array_get(back, 0), "content"));
	assert_non_null(sys);
	assert_int_equal(strncmp(sys, "P:", 2), 0);
	assert_string_equal(sys + 2, profile);
	free(wire);
	json_decref(back);
	json_decref(out);
}

static void test_build_invalid_utf8_system_prompt(void **state)
{
	json_t *out;

	(void)state;
	out = build("bad \xff end \xe4\xbd", NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":\"bad \xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd\"},"
			 "{\"role\":\"user\",\"content\":\"hi\"}]");
	json_decref(out);
}

/* ---- content parts (issue #12) ---- */

static void test_build_content_parts(void **state)
{
	(void)state;
	json_t *msgs = load("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Be brief.\"},"
			    "{\"type\":\"text\",\"text\":\"Use metric units.\"}]},"
			    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"
			    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA==\",\"detail\":\"low\"}}]}]");
	json_t *facts = load("[\"lives in Hangzhou\"]");

	/* The merged system text first, the request's parts after it as they are;
	 * other messages' parts untouched. */
	json_t *out = prompt_build("You are Sundynix.", NULL, msgs, "Alice", facts);
	assert_json(out, "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"You are Sundynix.\\n\\n"
			 "What you know about the user:\\nProfile: Alice\\n- lives in Hangzhou\"},"
			 "{\"type\":\"text\",\"text\":\"Be brief.\"},{\"type\":\"text\",\"text\":\"Use metric units.\"}]},"
			 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"
			 "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA==\",\"detail\":\"low\"}}]}]");
	json_decref(out);

	/* Nothing of ours to add: the parts alone. */
	out = prompt_build(NULL, NULL, msgs, NULL, NULL);
	assert_json(out, "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Be brief.\"},"
			 "{\"type\":\"text\",\"text\":\"Use metric units.\"}]},"
			 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"
			 "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA==\",\"detail\":\"low\"}}]}]");
	json_decref(out);
	json_decref(msgs);
	json_decref(facts);

	/* The request's messages are not modified, and the result outlives them. */
	msgs = load("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"s\"}]},"
		    "{\"role\":\"user\",\"content\":\"u\"}]");
	out = prompt_build("P", NULL, msgs, NULL, NULL);
	assert_json(msgs, "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"s\"}]},"
			  "{\"role\":\"user\",\"content\":\"u\"}]");
	json_decref(msgs);
	assert_json(out, "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"P\"},"
			 "{\"type\":\"text\",\"text\":\"s\"}]},"
			 "{\"role\":\"user\",\"content\":\"u\"}]");
	json_decref(out);
}

/* ---- end of the issue #12 block ---- */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_default),
		cmocka_unit_test(test_render_missing_parts),
		cmocka_unit_test(test_render_verbatim),
		cmocka_unit_test(test_render_custom_templates),
		cmocka_unit_test(test_build_full),
		cmocka_unit_test(test_build_parts),
		cmocka_unit_test(test_build_tools),
		cmocka_unit_test(test_build_profile_verbatim_on_wire),
		cmocka_unit_test(test_build_invalid_utf8_system_prompt),
		cmocka_unit_test(test_build_content_parts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
