/* Unit tests for provider: names, URLs, credentials headers, easy handles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "provider.h"

static void test_names_round_trip(void **state)
{
	(void)state;
	for (int k = PROVIDER_OPENAI; k < PROVIDER_UNKNOWN; k++)
		assert_int_equal(provider_from_name(provider_name((enum provider_kind)k)), k);
	assert_int_equal(provider_from_name(""), PROVIDER_OPENAI);
	assert_int_equal(provider_from_name(NULL), PROVIDER_OPENAI);
	assert_int_equal(provider_from_name("vllm"), PROVIDER_VLLM);
	assert_int_equal(provider_from_name("VLLM"), PROVIDER_UNKNOWN);
	assert_int_equal(provider_from_name("unknown"), PROVIDER_UNKNOWN);
	assert_int_equal(provider_from_name("anthropic"), PROVIDER_UNKNOWN);
	assert_string_equal(provider_name(PROVIDER_UNKNOWN), "unknown");
	assert_string_equal(provider_name((enum provider_kind)99), "unknown");
}

/* provider_chat_url(kind, base, model, version, cont) is want. */
static void expect_url(enum provider_kind kind, const char *base, const char *model, const char *version, bool cont,
		       const char *want)
{
	char *u = provider_chat_url(kind, base, model, version, cont);
	assert_string_equal(u, want);
	free(u);
}

static void test_chat_url(void **state)
{
	(void)state;
	expect_url(PROVIDER_VLLM, "http://gpu:8000/v1", "Qwen/Qwen2.5", "", false,
		   "http://gpu:8000/v1/chat/completions");
	expect_url(PROVIDER_AZURE, "https://r.openai.azure.com/openai", "gpt 4o/mini", "", false,
		   "https://r.openai.azure.com/openai/deployments/gpt%204o%2Fmini/chat/completions"
		   "?api-version=" PROVIDER_AZURE_API_VERSION);
	expect_url(PROVIDER_AZURE, "https://r/openai", "d", "2025-01-01-preview", false,
		   "https://r/openai/deployments/d/chat/completions?api-version=2025-01-01-preview");
}

static void test_continuation(void **state)
{
	json_t *b;

	(void)state;
	expect_url(PROVIDER_DEEPSEEK, "https://api.deepseek.com", "deepseek-chat", "", true,
		   "https://api.deepseek.com/beta/chat/completions");
	expect_url(PROVIDER_DEEPSEEK, "https://api.deepseek.com/v1", "deepseek-chat", "", true,
		   "https://api.deepseek.com/beta/chat/completions");
	expect_url(PROVIDER_DEEPSEEK, "https://api.deepseek.com/beta", "deepseek-chat", "", true,
		   "https://api.deepseek.com/beta/chat/completions");
	expect_url(PROVIDER_VLLM, "http://h/v1", "m", "", true,
		   "http://h/v1/chat/completions");

	assert_true(provider_can_continue(PROVIDER_VLLM) && provider_can_continue(PROVIDER_DEEPSEEK) &&
		    provider_can_continue(PROVIDER_LLAMACPP) && provider_can_continue(PROVIDER_OLLAMA));
	assert_false(provider_can_continue(PROVIDER_OPENAI) || provider_can_continue(PROVIDER_AZURE) ||
		     provider_can_continue(PROVIDER_OPENROUTER) || provider_can_continue(PROVIDER_UNKNOWN));

	static const char req[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":10}";
	b = json_loads(req, 0, NULL);
	assert_int_equal(provider_continue_body(PROVIDER_VLLM, b, "Hel", 3, "", 0, 4), 0);
	char *s = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"add_generation_prompt\":false,\"continue_final_message\":true,\"max_tokens\":6,"
			       "\"messages\":[{\"content\":\"hi\",\"role\":\"user\"},{\"content\":\"Hel\",\"role\":\"assistant\"}],"
			       "\"model\":\"m\"}");
	free(s);
	json_decref(b);
	b = json_loads(req, 0, NULL);
	assert_int_equal(provider_continue_body(PROVIDER_DEEPSEEK, b, "A", 1, "think", 5, 2), 0);
	json_t *last = json_array_get(json_object_get(b, "messages"), 1);
	assert_true(json_is_true(json_object_get(last, "prefix")));
	assert_string_equal(json_string_value(json_object_get(last, "reasoning_content")), "think");
	assert_null(json_object_get(b, "continue_final_message"));
	json_decref(b);
	b = json_loads(req, 0, NULL);
	assert_int_equal(provider_continue_body(PROVIDER_LLAMACPP, b, "x", 1, NULL, 0, 9), 0);
	assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 1);
	assert_int_equal(json_array_size(json_object_get(b, "messages")), 2);
	json_decref(b);
	/* The budget is spent, or the provider cannot continue. */
	b = json_loads(req, 0, NULL);
	assert_int_equal(provider_continue_body(PROVIDER_OLLAMA, b, "x", 1, NULL, 0, 10), -1);
	assert_int_equal(provider_continue_body(PROVIDER_OPENAI, b, "x", 1, NULL, 0, 0), -1);
	json_decref(b);
}

static void test_models_url(void **state)
{
	char *u;

	(void)state;
	u = provider_models_url(PROVIDER_OLLAMA, "http://127.0.0.1:11434/v1", "");
	assert_string_equal(u, "http://127.0.0.1:11434/v1/models");
	free(u);
	u = provider_models_url(PROVIDER_AZURE, "https://r/openai", "");
	assert_string_equal(u, "https://r/openai/models?api-version=" PROVIDER_AZURE_API_VERSION);
	free(u);
}

static void test_auth_header(void **state)
{
	struct curl_slist *h;

	(void)state;
	assert_null(provider_auth_header(NULL, PROVIDER_OPENAI, ""));
	h = provider_auth_header(NULL, PROVIDER_OPENAI, "sk-abc");
	assert_string_equal(h->data, "Authorization: Bearer sk-abc");
	assert_null(h->next);
	curl_slist_free_all(h);
	h = curl_slist_append(NULL, "Accept: text/event-stream");
	h = provider_auth_header(h, PROVIDER_AZURE, "k1");
	assert_string_equal(h->next->data, "api-key: k1");
	curl_slist_free_all(h);
}

static void test_easy_handle(void **state)
{
	CURL *e;
	char *url = NULL;

	(void)state;
	e = curl_easy_init();
	assert_non_null(e);
	provider_easy(e, "https://example.invalid/v1/chat/completions");
	assert_int_equal(curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url), CURLE_OK);
	assert_string_equal(url, "https://example.invalid/v1/chat/completions");
	curl_easy_cleanup(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_round_trip), cmocka_unit_test(test_chat_url),
		cmocka_unit_test(test_models_url),       cmocka_unit_test(test_auth_header),
		cmocka_unit_test(test_easy_handle),   cmocka_unit_test(test_continuation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
