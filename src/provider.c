/* provider: see include/provider.h. */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static const char *const provider__names[] = {
	[PROVIDER_OPENAI] = "openai",     [PROVIDER_VLLM] = "vllm",         [PROVIDER_OLLAMA] = "ollama",
	[PROVIDER_LLAMACPP] = "llamacpp", [PROVIDER_DEEPSEEK] = "deepseek", [PROVIDER_AZURE] = "azure",
	[PROVIDER_OPENROUTER] = "openrouter", [PROVIDER_UNKNOWN] = "unknown",
};

enum provider_kind provider_from_name(const char *name)
{
	if (!name || !*name)
		return PROVIDER_OPENAI;
	for (size_t i = 0; i < PROVIDER_UNKNOWN; i++)
		if (!strcmp(name, provider__names[i]))
			return (enum provider_kind)i;
	return PROVIDER_UNKNOWN;
}

const char *provider_name(enum provider_kind kind)
{
	return (unsigned)kind < UTIL_ARRAY_LEN(provider__names) ? provider__names[kind] : "unknown";
}

static const char *provider__api_version(const char *v)
{
	return v && *v ? v : PROVIDER_AZURE_API_VERSION;
}

char *provider_chat_url(enum provider_kind kind, const char *base_url, const char *model, const char *api_version,
			bool continuation)
{
	if (kind == PROVIDER_AZURE) {
		char *dep = curl_easy_escape(NULL, model, 0);
		if (!dep)
			util_oom();
		char *url = xasprintf("%s/deployments/%s/chat/completions?api-version=%s", base_url, dep,
				      provider__api_version(api_version));
		curl_free(dep);
		return url;
	}
	if (kind == PROVIDER_DEEPSEEK && continuation) {
		/* Chat prefix completion is a beta feature: https://api.deepseek.com/beta.
		 * A base_url ending in /v1 (the OpenAI-style alias) swaps it. */
		size_t n = strlen(base_url);
		if (n >= 3 && !strcmp(base_url + n - 3, "/v1"))
			return xasprintf("%.*s/beta/chat/completions", (int)(n - 3), base_url);
		if (n >= 5 && !strcmp(base_url + n - 5, "/beta"))
			return xasprintf("%s/chat/completions", base_url);
		return xasprintf("%s/beta/chat/completions", base_url);
	}
	return xasprintf("%s/chat/completions", base_url);
}

char *provider_models_url(enum provider_kind kind, const char *base_url, const char *api_version)
{
	if (kind == PROVIDER_AZURE)
		return xasprintf("%s/models?api-version=%s", base_url, provider__api_version(api_version));
	return xasprintf("%s/models", base_url);
}

struct curl_slist *provider_auth_header(struct curl_slist *headers, enum provider_kind kind, const char *api_key)
{
	char *auth;

	if (!*api_key)
		return headers;
	auth = kind == PROVIDER_AZURE ? xasprintf("api-key: %s", api_key)
				      : xasprintf("Authorization: Bearer %s", api_key);
	headers = curl_slist_append(headers, auth);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	if (!headers)
		util_oom();
	return headers;
}

bool provider_can_continue(enum provider_kind kind)
{
	switch (kind) {
	case PROVIDER_VLLM:
	case PROVIDER_DEEPSEEK:
	case PROVIDER_LLAMACPP:
	case PROVIDER_OLLAMA:
		return true;
	default:
		return false;
	}
}

int provider_continue_body(enum provider_kind kind, json_t *body, const char *text, size_t text_len,
			   const char *reasoning, size_t reasoning_len, long long produced)
{
	json_t *msgs = json_object_get(body, "messages"), *max = json_object_get(body, "max_tokens");
	json_t *m;

	if (!provider_can_continue(kind) || !json_is_array(msgs))
		return -1;
	if (json_is_integer(max)) {
		if (json_integer_value(max) - produced < 1)
			return -1;
		json_object_set_new(body, "max_tokens", json_integer(json_integer_value(max) - produced));
	}
	json_t *content = json_stringn(text ? text : "", text_len);
	if (!content)
		return -1; /* not valid UTF-8: cannot happen, deltas are */
	m = json_object();
	json_object_set_new(m, "role", json_string("assistant"));
	json_object_set_new(m, "content", content);
	if (reasoning_len)
		json_object_set_new(m, "reasoning_content", json_stringn(reasoning, reasoning_len));
	switch (kind) {
	case PROVIDER_VLLM:
		/* The chat template leaves the last message open instead of
		 * starting a new assistant turn. */
		json_object_set_new(body, "continue_final_message", json_true());
		json_object_set_new(body, "add_generation_prompt", json_false());
		break;
	case PROVIDER_DEEPSEEK:
		json_object_set_new(m, "prefix", json_true());
		break;
	default:
		break; /* llama.cpp and Ollama continue a trailing assistant message as it is */
	}
	json_array_append_new(msgs, m);
	return 0;
}

void provider_easy(CURL *e, const char *url)
{
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	if (!strncasecmp(url, "https:", 6)) {
		/* HTTP/2 where the server offers it (ALPN), and a new stream waits
		 * for a connection that may multiplex instead of opening its own:
		 * thousands of streams then share a few connections. */
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	}
}
