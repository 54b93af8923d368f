/* provider: everything that differs between the OpenAI-compatible backends we
 * front: the names a ModelConfig may give, the chat-completions and models
 * URLs, the credentials header, and the options every easy handle to a
 * backend gets. Adding a provider touches this module and its tests only.
 * Knows nothing of NATS, requests or the SSE stream. */
#ifndef SUNDYNIX_PROVIDER_H
#define SUNDYNIX_PROVIDER_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The providers whose quirks we know. Anything else is treated as OpenAI. */
enum provider_kind {
	PROVIDER_OPENAI,
	PROVIDER_VLLM,
	PROVIDER_OLLAMA,
	PROVIDER_LLAMACPP,
	PROVIDER_DEEPSEEK,
	PROVIDER_AZURE,
	PROVIDER_OPENROUTER,
	PROVIDER_UNKNOWN,
};

/* Azure's api-version when the ModelConfig names none. */
#define PROVIDER_AZURE_API_VERSION "2024-10-21"

/* The kind for a ModelConfig's "provider" ("" or NULL is openai). */
enum provider_kind provider_from_name(const char *name);
/* The canonical name ("unknown" for PROVIDER_UNKNOWN). */
const char *provider_name(enum provider_kind kind);

/* Where an endpoint is asked (malloc'd): the chat-completions URL (azure names
 * the deployment in the path and versions its API; deepseek continues a
 * partial answer only on its beta API, which continuation selects) and the
 * models list the active probe asks. api_version "" means the default. */
char *provider_chat_url(enum provider_kind kind, const char *base_url, const char *model, const char *api_version,
			bool continuation);
char *provider_models_url(enum provider_kind kind, const char *base_url, const char *api_version);
/* Appends the credentials header (Bearer, or azure's api-key) when api_key is
 * non-empty; the formatted header is wiped from our memory after the copy. */
struct curl_slist *provider_auth_header(struct curl_slist *headers, enum provider_kind kind, const char *api_key);
/* Whether the provider continues a partial assistant message when it is the
 * last message of a chat request (docs/pool.md, "Failover"): vllm
 * (continue_final_message), deepseek (prefix: true on its beta API),
 * llamacpp and ollama (a trailing assistant message is continued). openai,
 * azure, openrouter and unknown providers do not. */
bool provider_can_continue(enum provider_kind kind);
/* Turns a chat request body (an object; modified in place) into one that
 * continues the answer so far: appends the assistant message holding text
 * (and reasoning, as reasoning_content, when not empty) with the provider's
 * marks, and shrinks max_tokens by produced (at least 1 is left). Returns
 * -1 when the provider cannot continue, or max_tokens is already spent
 * (then the answer was complete as far as its budget goes). */
int provider_continue_body(enum provider_kind kind, json_t *body, const char *text, size_t text_len,
			   const char *reasoning, size_t reasoning_len, long long produced);

/* Sets on a clean easy handle (http_easy) url and the options every call to
 * a backend gets: http/https only, no redirects, TLS verification, no
 * signals, and for https HTTP/2 with PIPEWAIT so streams share multiplexed
 * connections. */
void provider_easy(CURL *e, const char *url);

#endif
