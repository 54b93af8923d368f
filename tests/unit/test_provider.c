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

static void test_chat_url(void **state)
{
	char *u;

	(void)state;
	u = provider_chat_url(PROVIDER_VLLM, "http://gpu:8000/v1", "Qwen/Qwen2.5", "");
	assert_string_equal(u, "http://gpu:8000/v1/chat/completions");
	free(u);
	u = provider_chat_url(PROVIDER_AZURE, "https://r.openai.azure.com/openai", "gpt 4o/mini", "");
	assert_string_equal(u, "https://r.openai.azure.com/openai/deployments/gpt%204o%2Fmini/chat/completions"
			       "?api-version=" PROVIDER_AZURE_API_VERSION);
	free(u);
	u = provider_chat_url(PROVIDER_AZURE, "https://r/openai", "d", "2025-01-01-preview");
	assert_string_equal(u, "https://r/openai/deployments/d/chat/completions?api-version=2025-01-01-preview");
	free(u);
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
	e = provider_easy("https://example.invalid/v1/chat/completions");
	assert_non_null(e);
	assert_int_equal(curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url), CURLE_OK);
	assert_string_equal(url, "https://example.invalid/v1/chat/completions");
	curl_easy_cleanup(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_round_trip), cmocka_unit_test(test_chat_url),
		cmocka_unit_test(test_models_url),       cmocka_unit_test(test_auth_header),
		cmocka_unit_test(test_easy_handle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
