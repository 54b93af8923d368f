/* Integration: provider conformance. Each provider's stream format, written
 * here by hand byte for byte (role-only first deltas, usage chunks with empty
 * choices, Azure's prompt_filter_results chunk, reasoning deltas, tool_call
 * deltas, keep-alive comments, error objects inside the stream, 4xx/5xx JSON
 * bodies), is served by the mock's raw mode whole, one byte per HTTP chunk
 * (curl hands each chunk to the daemon on its own, so every byte boundary is
 * a read boundary), in a few other piece sizes, and once one byte per write
 * with a pause between writes so TCP splits it too. The events must add up to
 * the same answer every time. Also: Azure's path, query and api-key header,
 * and an unknown provider. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define KEY "sk-prov-SECRETkey9876543210fedcba"

static struct h_nats *nats;
static struct h_mock *mock;
static struct h_daemon *daemon_;
static struct h_client *client;
static int rid_n;

/* One daemon serves every test; each applies its provider's config. */
static int start_daemon(void)
{
	daemon_ = h_daemon_start_client(nats, "{\"timeouts\":{\"first_token_ms\":10000,\"idle_ms\":10000}}", &client);
	return 0;
}

static int stop_daemon(void)
{
	bool leaked = h_daemon_log_contains(daemon_, KEY);
	if (leaked)
		fprintf(stderr, "the daemon log contains the api key\n");
	int code = h_daemon_stop(daemon_);
	return code != 0 || leaked;
}

static const struct h_bed bed = { .nats = &nats,
				  .mocks = { { &mock, "mock-providers" } },
				  .setup = start_daemon,
				  .teardown = stop_daemon };

/* Applies a config for provider at base_url (the mock's unless given). */
static void use_provider(const char *provider, const char *model, const char *base_url, const char *extra)
{
	h_apply_config(client, daemon_, model,
		       "{\"provider\":\"%s\",\"model\":\"%s\",\"base_url\":\"%s\",\"api_key\":\"%s\"%s}", provider, model,
		       base_url ? base_url : mock->base_url, KEY, extra ? extra : "");
}

/* What a served stream must add up to. */
struct expect {
	const char *type; /* "done" or "error" */
	const char *tokens;
	const char *reasoning;
	const char *finish;  /* done */
	const char *model;   /* done; NULL: not checked */
	long long prompt, completion, total; /* done; prompt < 0: usage absent */
	const char *code;    /* error */
	const char *message; /* error, exact */
};

/* Serves raw (status, content type) once with the given piece size and
 * pause, runs one request through it and checks its events. */
static void serve_once(const char *name, const char *raw, int status, const char *ctype, int chunk, int inter_ms,
		       const struct expect *x)
{
	char rid[64], what[160];
	snprintf(rid, sizeof(rid), "prov-%d", rid_n++);
	snprintf(what, sizeof(what), "%s (chunk %d, inter_ms %d, %s)", name, chunk, inter_ms, rid);

	json_t *script = json_pack("{s:s,s:i,s:s,s:s,s:i,s:i}", "mode", "raw", "status", status, "content_type", ctype,
				   "raw", raw, "chunk", chunk, "inter_ms", inter_ms);
	assert_non_null(script);
	char *text = json_dumps(script, JSON_COMPACT);
	json_decref(script);
	h_mock_next(mock, "%s", text);
	free(text);

	long long before = h_mock_stat(mock, "requests");
	struct h_stream *s = h_stream_submit(client, rid, "hello");
	/* The order of the events (seq, terminal last, types) is checked here. */
	json_t *t = h_stream_settle(s, 20000, 10);
	json_t *ev = h_stream_events(s);
	char *all = json_dumps(ev, JSON_COMPACT);
	H_ASSERT_NOT_CONTAINS(all, KEY);
	char *tokens = h_stream_text(s, "token"), *reasoning = h_stream_text(s, "reasoning");
	if (strcmp(h_jstr(t, "type"), x->type) || strcmp(tokens, x->tokens) ||
	    strcmp(reasoning, x->reasoning ? x->reasoning : ""))
		fail_msg("%s: expected %s, tokens \"%s\", reasoning \"%s\"; got tokens \"%s\", reasoning \"%s\": %s",
			 what, x->type, x->tokens, x->reasoning ? x->reasoning : "", tokens, reasoning, all);
	if (!strcmp(x->type, "done")) {
		if (strcmp(h_jstr(t, "finish_reason"), x->finish) || (x->model && strcmp(h_jstr(t, "model"), x->model)))
			fail_msg("%s: expected finish %s, model %s: %s", what, x->finish, x->model ? x->model : "-", all);
		json_t *u = json_object_get(t, "usage");
		if (x->prompt < 0) {
			if (u)
				fail_msg("%s: expected no usage: %s", what, all);
		} else if (h_jint(t, "usage.prompt_tokens") != x->prompt ||
			   h_jint(t, "usage.completion_tokens") != x->completion ||
			   h_jint(t, "usage.total_tokens") != x->total) {
			fail_msg("%s: expected usage %lld/%lld/%lld: %s", what, x->prompt, x->completion, x->total, all);
		}
	} else if (strcmp(h_jstr(t, "error.code"), x->code) || strcmp(h_jstr(t, "error.message"), x->message)) {
		fail_msg("%s: expected error %s \"%s\": %s", what, x->code, x->message, all);
	}
	/* One endpoint: whatever happened, exactly one backend call. */
	if (h_jint(t, "attempts") != 1 || strcmp(h_jstr(t, "endpoint"), mock->base_url))
		fail_msg("%s: expected attempts 1 on %s: %s", what, mock->base_url, all);
	assert_int_equal(h_mock_stat(mock, "requests"), before + 1);
	free(tokens);
	free(reasoning);
	free(all);
	json_decref(ev);
	h_stream_close(s);
}

/* Every piece size, plus one slow run (one byte per write, 1 ms apart) when
 * slow is set. */
static void serve_all(const char *name, const char *raw, int status, const char *ctype, bool slow,
		      const struct expect *x)
{
	static const int chunks[] = { 0, 1, 2, 3, 5, 7, 13, 64 };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(chunks); i++)
		serve_once(name, raw, status, ctype, chunks[i], 0, x);
	if (slow)
		serve_once(name, raw, status, ctype, 1, 1, x);
}

static void serve_stream(const char *name, const char *raw, bool slow, const struct expect *x)
{
	serve_all(name, raw, 200, "text/event-stream", slow, x);
}

static void serve_error_body(const char *name, int status, const char *body, const char *message)
{
	struct expect x = { .type = "error", .tokens = "", .code = "upstream_http", .message = message };
	serve_all(name, body, status, "application/json", false, &x);
}

/* ---- OpenAI ---- */

#define OAI_HEAD "{\"id\":\"chatcmpl-AX1b2c3d4\",\"object\":\"chat.completion.chunk\",\"created\":1732590000," \
		 "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\","

static const char openai_stream[] =
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
	"\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,"
	"\"finish_reason\":null}],\"usage\":null}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"! 你好\"},\"logprobs\":null,"
	"\"finish_reason\":null}],\"usage\":null}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \\ud83d\\ude00\\n\"},\"logprobs\":null,"
	"\"finish_reason\":null}],\"usage\":null}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
	"\"usage\":null}\n\n"
	"data: " OAI_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":4,\"total_tokens\":23,"
	"\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":"
	"{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
	"\"rejected_prediction_tokens\":0}}}\n\n"
	"data: [DONE]\n\n";

static const char openai_tools_stream[] =
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
	"[{\"index\":0,\"id\":\"call_DdmO9pD3xa9XTPNJ32zg2hcA\",\"type\":\"function\",\"function\":{\"name\":"
	"\"get_weather\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	"{\"arguments\":\"{\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	"{\"arguments\":\"location\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	"{\"arguments\":\"\\\":\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n"
	"data: [DONE]\n\n";

static void test_openai(void **state)
{
	(void)state;
	use_provider("openai", "gpt-4o-mini", NULL, NULL);
	struct expect x = { "done", "Hello! 你好 😀\n", NULL, "stop", "gpt-4o-mini-2024-07-18", 19, 4, 23, NULL, NULL };
	serve_stream("openai", openai_stream, true, &x);
	struct expect tools = { "done", "", NULL, "tool_calls", "gpt-4o-mini-2024-07-18", -1, 0, 0, NULL, NULL };
	serve_stream("openai tool_calls", openai_tools_stream, false, &tools);
	serve_error_body("openai 401",
			 401,
			 "{\n    \"error\": {\n        \"message\": \"Incorrect API key provided: sk-prov-****cdba. You can "
			 "find your API key at https://platform.openai.com/account/api-keys.\",\n        \"type\": "
			 "\"invalid_request_error\",\n        \"param\": null,\n        \"code\": \"invalid_api_key\"\n    "
			 "}\n}\n",
			 "HTTP 401: Incorrect API key provided: sk-prov-****cdba. You can find your API key at "
			 "https://platform.openai.com/account/api-keys.");
	serve_error_body("openai 500",
			 500,
			 "{\"error\":{\"message\":\"The server had an error while processing your request. Sorry about "
			 "that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}",
			 "HTTP 500: The server had an error while processing your request. Sorry about that!");
	/* A backend that echoes the whole key: the message must not carry it. */
	char redacted[128] = "HTTP 401: Incorrect API key provided: ";
	size_t off = strlen(redacted);
	memset(redacted + off, '*', strlen(KEY));
	redacted[off + strlen(KEY)] = '\0';
	serve_error_body("openai 401 echoing the key", 401,
			 "{\"error\":{\"message\":\"Incorrect API key provided: " KEY "\",\"type\":"
			 "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
			 redacted);
	/* The request itself: Bearer, the OpenAI path. */
	json_t *r0 = h_mock_chat_request(mock, 0, KEY);
	assert_true(json_is_true(h_jpath(r0, "body.stream")));
	assert_true(json_is_true(h_jpath(r0, "body.stream_options.include_usage")));
	json_decref(r0);
}

/* ---- vLLM ---- */

#define VLLM_HEAD "{\"id\":\"chatcmpl-9f3e2b7c41d04a5c\",\"object\":\"chat.completion.chunk\",\"created\":1732590001," \
		  "\"model\":\"Qwen/QwQ-32B\","

static const char vllm_stream[] =
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Let me think\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\" about it.\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The answer\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" is 42.\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,"
	"\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":20,"
	"\"completion_tokens\":8}}\n\n"
	"data: [DONE]\n\n";

static const char vllm_error_stream[] =
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " VLLM_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: {\"error\": {\"object\": \"error\", \"message\": \"The engine is dead: CUDA error: out of memory\", "
	"\"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n"
	"data: [DONE]\n\n";

static void test_vllm(void **state)
{
	(void)state;
	use_provider("vllm", "qwq", NULL, NULL);
	struct expect x = { "done", "The answer is 42.", "Let me think about it.", "length", "Qwen/QwQ-32B", 12, 8, 20,
			    NULL, NULL };
	serve_stream("vllm", vllm_stream, true, &x);
	struct expect e = { "error", "Par", NULL, NULL, NULL, 0, 0, 0, "upstream_http",
			    "backend error in stream: The engine is dead: CUDA error: out of memory" };
	serve_stream("vllm error in stream", vllm_error_stream, false, &e);
	serve_error_body("vllm 400", 400,
			 "{\"object\":\"error\",\"message\":\"This model's maximum context length is 32768 tokens. "
			 "However, you requested 40000 tokens (39000 in the messages, 1000 in the completion). Please "
			 "reduce the length of the messages or completion.\",\"type\":\"BadRequestError\",\"param\":null,"
			 "\"code\":400}",
			 "HTTP 400: This model's maximum context length is 32768 tokens. However, you requested 40000 "
			 "tokens (39000 in the messages, 1000 in the completion). Please reduce the length of the "
			 "messages or completion.");
	serve_error_body("vllm 404", 404,
			 "{\"object\":\"error\",\"message\":\"The model `qwq` does not exist.\",\"type\":"
			 "\"NotFoundError\",\"param\":null,\"code\":404}",
			 "HTTP 404: The model `qwq` does not exist.");
}

/* ---- Ollama ---- */

#define OLLAMA_HEAD "{\"id\":\"chatcmpl-412\",\"object\":\"chat.completion.chunk\",\"created\":1732590002," \
		    "\"model\":\"llama3.2\",\"system_fingerprint\":\"fp_ollama\","

static const char ollama_stream[] =
	"data: " OLLAMA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
	"\"finish_reason\":null}]}\n\n"
	"data: " OLLAMA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" there\"},"
	"\"finish_reason\":null}]}\n\n"
	"data: " OLLAMA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"finish_reason\":\"stop\"}]}\n\n"
	"data: " OLLAMA_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":26,\"completion_tokens\":3,"
	"\"total_tokens\":29}}\n\n"
	"data: [DONE]\n\n";

static const char ollama_tools_stream[] =
	"data: " OLLAMA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
	"\"tool_calls\":[{\"id\":\"call_k3v1x0ab\",\"index\":0,\"type\":\"function\",\"function\":{\"name\":"
	"\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
	"data: " OLLAMA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"finish_reason\":\"tool_calls\"}]}\n\n"
	"data: [DONE]\n\n";

static const char ollama_error_stream[] =
	"data: " OLLAMA_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Once\"},"
	"\"finish_reason\":null}]}\n\n"
	"data: {\"error\":{\"message\":\"an error was encountered while running the model: unexpected EOF\","
	"\"type\":\"api_error\",\"param\":null,\"code\":null}}\n\n";

static void test_ollama(void **state)
{
	(void)state;
	use_provider("ollama", "llama3.2", NULL, NULL);
	struct expect x = { "done", "Hi there", NULL, "stop", "llama3.2", 26, 3, 29, NULL, NULL };
	serve_stream("ollama", ollama_stream, true, &x);
	struct expect tools = { "done", "", NULL, "tool_calls", "llama3.2", -1, 0, 0, NULL, NULL };
	serve_stream("ollama tool_calls", ollama_tools_stream, false, &tools);
	struct expect e = { "error", "Once", NULL, NULL, NULL, 0, 0, 0, "upstream_http",
			    "backend error in stream: an error was encountered while running the model: unexpected EOF" };
	serve_stream("ollama error in stream", ollama_error_stream, false, &e);
	serve_error_body("ollama 404", 404,
			 "{\"error\":{\"message\":\"model \\\"llama9\\\" not found, try pulling it first\",\"type\":"
			 "\"api_error\",\"param\":null,\"code\":null}}",
			 "HTTP 404: model \"llama9\" not found, try pulling it first");
}

/* ---- llama.cpp (llama-server) ---- */

#define LCPP_TAIL ",\"created\":1732590003,\"id\":\"chatcmpl-Qm3xYz\",\"model\":\"gpt-3.5-turbo\"," \
		  "\"system_fingerprint\":\"b4291-ce8784bd\",\"object\":\"chat.completion.chunk\""

static const char llamacpp_stream[] =
	"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]"
	LCPP_TAIL "}\n\n"
	"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"Bonjour\"}}]" LCPP_TAIL "}\n\n"
	"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\" le monde\"}}]" LCPP_TAIL
	"}\n\n"
	"data: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}]" LCPP_TAIL ",\"usage\":"
	"{\"completion_tokens\":3,\"prompt_tokens\":11,\"total_tokens\":14},\"timings\":{\"prompt_n\":11,"
	"\"prompt_ms\":20.113,\"prompt_per_token_ms\":1.828,\"prompt_per_second\":546.9,\"predicted_n\":3,"
	"\"predicted_ms\":30.52,\"predicted_per_token_ms\":10.17,\"predicted_per_second\":98.3}}\n\n"
	"data: [DONE]\n\n";

/* llama-server reports a failure after the headers as an SSE line of its own
 * field name "error" (which plain SSE readers ignore), then ends the body;
 * the dispatcher's parser carries it as an "error" event. */
static const char llamacpp_error_stream[] =
	"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"Bon\"}}]" LCPP_TAIL "}\n\n"
	"error: {\"code\":500,\"message\":\"context shift is disabled\",\"type\":\"server_error\"}\n\n";

static void test_llamacpp(void **state)
{
	(void)state;
	use_provider("llamacpp", "local", NULL, NULL);
	struct expect x = { "done", "Bonjour le monde", NULL, "stop", "gpt-3.5-turbo", 11, 3, 14, NULL, NULL };
	serve_stream("llamacpp", llamacpp_stream, true, &x);
	/* llama.cpp's own message reaches the client. */
	struct expect e = { "error", "Bon", NULL, NULL, NULL, 0, 0, 0, "upstream_http",
			    "backend error in stream: context shift is disabled" };
	serve_stream("llamacpp error line", llamacpp_error_stream, false, &e);
	serve_error_body("llamacpp 503 loading", 503,
			 "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}",
			 "HTTP 503: Loading model");
	serve_error_body("llamacpp 400", 400,
			 "{\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, try "
			 "increasing it\",\"type\":\"exceed_context_size_error\",\"n_prompt_tokens\":9000,\"n_ctx\":4096}}",
			 "HTTP 400: the request exceeds the available context size, try increasing it");
}

/* ---- DeepSeek ---- */

#define DS_HEAD "{\"id\":\"5f0e9c1a-2b7d-4e3f-9a61-0c8d7e6f5a4b\",\"object\":\"chat.completion.chunk\"," \
		"\"created\":1732590004,\"model\":\"deepseek-reasoner\",\"system_fingerprint\":\"fp_7e73fd9a08\","

static const char deepseek_stream[] =
	"data: " DS_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
	"\"reasoning_content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " DS_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"reasoning_content\":\"嗯，用户\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	": keep-alive\n\n"
	"data: " DS_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"reasoning_content\":\"在打招呼。\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " DS_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"你好\",\"reasoning_content\":null},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " DS_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"！\",\"reasoning_content\":null},"
	"\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	"data: " DS_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\",\"reasoning_content\":null},"
	"\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":25,"
	"\"total_tokens\":35,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":"
	"{\"reasoning_tokens\":21},\"prompt_cache_hit_tokens\":0,\"prompt_cache_miss_tokens\":10}}\n\n"
	"data: [DONE]\n\n";

static void test_deepseek(void **state)
{
	(void)state;
	use_provider("deepseek", "deepseek-reasoner", NULL, NULL);
	struct expect x = { "done", "你好！", "嗯，用户在打招呼。", "stop", "deepseek-reasoner", 10, 25, 35, NULL, NULL };
	serve_stream("deepseek", deepseek_stream, true, &x);
	serve_error_body("deepseek 402", 402,
			 "{\"error\":{\"message\":\"Insufficient Balance\",\"type\":\"unknown_error\",\"param\":null,"
			 "\"code\":\"invalid_request_error\"}}",
			 "HTTP 402: Insufficient Balance");
	serve_error_body("deepseek 503", 503,
			 "{\"error\":{\"message\":\"Service is too busy. Please try again later.\",\"type\":"
			 "\"service_unavailable_error\",\"param\":null,\"code\":\"server_busy\"}}",
			 "HTTP 503: Service is too busy. Please try again later.");
}

/* ---- Azure OpenAI ---- */

#define AZ_CFR "{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false," \
	       "\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":" \
	       "{\"filtered\":false,\"severity\":\"safe\"}}"
#define AZ_TAIL ",\"created\":1732590005,\"id\":\"chatcmpl-AzR7q\",\"model\":\"gpt-4o-2024-08-06\"," \
		"\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_04751d0b65\"}"

static const char azure_stream[] =
	"data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":"
	"[{\"prompt_index\":0,\"content_filter_results\":" AZ_CFR "}]}\n\n"
	"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"refusal\":null,\"role\":"
	"\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}]" AZ_TAIL "\n\n"
	"data: {\"choices\":[{\"content_filter_results\":" AZ_CFR ",\"delta\":{\"content\":\"Sure\"},"
	"\"finish_reason\":null,\"index\":0,\"logprobs\":null}]" AZ_TAIL "\n\n"
	"data: {\"choices\":[{\"content_filter_results\":" AZ_CFR ",\"delta\":{\"content\":\", here.\"},"
	"\"finish_reason\":null,\"index\":0,\"logprobs\":null}]" AZ_TAIL "\n\n"
	"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,"
	"\"logprobs\":null}]" AZ_TAIL "\n\n"
	"data: {\"choices\":[],\"created\":1732590005,\"id\":\"chatcmpl-AzR7q\",\"model\":\"gpt-4o-2024-08-06\","
	"\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_04751d0b65\",\"usage\":"
	"{\"completion_tokens\":3,\"prompt_tokens\":14,\"total_tokens\":17}}\n\n"
	"data: [DONE]\n\n";

static const char azure_filtered_stream[] =
	"data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":"
	"[{\"prompt_index\":0,\"content_filter_results\":" AZ_CFR "}]}\n\n"
	"data: {\"choices\":[{\"content_filter_results\":" AZ_CFR ",\"delta\":{\"content\":\"I\",\"role\":"
	"\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}]" AZ_TAIL "\n\n"
	"data: {\"choices\":[{\"content_filter_results\":{\"violence\":{\"filtered\":true,\"severity\":\"medium\"}},"
	"\"delta\":{},\"finish_reason\":\"content_filter\",\"index\":0,\"logprobs\":null}]" AZ_TAIL "\n\n"
	"data: [DONE]\n\n";

static void test_azure(void **state)
{
	(void)state;
	char *base = xasprintf("http://127.0.0.1:%d/openai", mock->port);
	use_provider("azure", "gpt-4o-deploy", base, NULL);
	/* serve_once checks the endpoint against the mock's /v1 URL; Azure's
	 * base_url differs, so these runs check their own route. */
	struct expect x = { "done", "Sure, here.", NULL, "stop", "gpt-4o-2024-08-06", 14, 3, 17, NULL, NULL };
	char *saved = xstrdup(mock->base_url);
	snprintf(mock->base_url, sizeof(mock->base_url), "%s", base);
	serve_stream("azure", azure_stream, true, &x);
	struct expect f = { "done", "I", NULL, "content_filter", "gpt-4o-2024-08-06", -1, 0, 0, NULL, NULL };
	serve_stream("azure content_filter", azure_filtered_stream, false, &f);
	serve_error_body("azure 400 content_filter", 400,
			 "{\"error\":{\"message\":\"The response was filtered due to the prompt triggering Azure "
			 "OpenAI's content management policy. Please modify your prompt and retry.\",\"type\":null,"
			 "\"param\":\"prompt\",\"code\":\"content_filter\",\"status\":400,\"innererror\":{\"code\":"
			 "\"ResponsibleAIPolicyViolation\",\"content_filter_result\":{\"hate\":{\"filtered\":true,"
			 "\"severity\":\"high\"}}}}}",
			 "HTTP 400: The response was filtered due to the prompt triggering Azure OpenAI's content "
			 "management policy. Please modify your prompt and retry.");
	serve_error_body("azure 429", 429,
			 "{\"error\":{\"code\":\"429\",\"message\":\"Requests to the ChatCompletions_Create Operation "
			 "under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current "
			 "OpenAI S0 pricing tier. Please retry after 6 seconds.\"}}",
			 "HTTP 429: Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
			 "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
			 "after 6 seconds.");
	snprintf(mock->base_url, sizeof(mock->base_url), "%s", saved);
	free(saved);

	/* The mock records the path (without the query) and only the
	 * Authorization header: the deployment is in the path and no Bearer
	 * goes out. */
	json_t *r0 = h_mock_request(mock, 0);
	assert_string_equal(h_jstr(r0, "path"), "/openai/deployments/gpt-4o-deploy/chat/completions");
	assert_true(json_is_null(json_object_get(r0, "authorization")));
	json_decref(r0);
	free(base);
}

/* Azure's query string and api-key header, seen by a raw server that records
 * whole request heads. */
static void test_azure_headers(void **state)
{
	(void)state;
	char *resp = h_http_response(200, "", "text/event-stream", azure_stream);
	struct h_rawsrv *raw = h_rawsrv_start(resp);
	free(resp);
	char *base = xasprintf("http://127.0.0.1:%d/openai", h_rawsrv_port(raw));

	use_provider("azure", "my deploy/x", base, NULL);
	h_submit_simple(client, "az-h-1", "hi");
	use_provider("azure", "gpt-4o-deploy", base, ",\"api_version\":\"2025-01-01-preview\"");
	struct h_stream *s = h_stream_submit(client, "az-h-2", "hi");
	h_stream_done(s, 10000);
	h_stream_expect_text(s, "Sure, here.");

	assert_int_equal(h_rawsrv_count(raw), 2);
	char *h1 = h_rawsrv_head(raw, 0), *h2 = h_rawsrv_head(raw, 1);
	/* The deployment name is escaped into one path segment; the default
	 * api-version applies. */
	H_ASSERT_CONTAINS(h1, "POST /openai/deployments/my%20deploy%2Fx/chat/completions?api-version=2024-10-21 "
			      "HTTP/1.1\r\n");
	H_ASSERT_CONTAINS(h2, "POST /openai/deployments/gpt-4o-deploy/chat/completions?api-version=2025-01-01-preview "
			      "HTTP/1.1\r\n");
	H_ASSERT_CONTAINS(h2, "\r\napi-key: " KEY "\r\n");
	if (strcasestr(h2, "\r\nauthorization:"))
		fail_msg("azure request carries an Authorization header: %s", h2);
	free(h1);
	free(h2);

	/* The same server as an OpenAI backend: Bearer, the plain path. */
	char *v1 = xasprintf("http://127.0.0.1:%d/v1", h_rawsrv_port(raw));
	use_provider("openai", "gpt-4o-mini", v1, NULL);
	h_stream_done(h_stream_submit(client, "az-h-3", "hi"), 10000);
	char *h3 = h_rawsrv_head(raw, 2);
	H_ASSERT_CONTAINS(h3, "POST /v1/chat/completions HTTP/1.1\r\n");
	H_ASSERT_CONTAINS(h3, "\r\nAuthorization: Bearer " KEY "\r\n");
	if (strcasestr(h3, "\r\napi-key:"))
		fail_msg("openai request carries an api-key header: %s", h3);
	free(h3);
	free(v1);
	free(base);
}

/* ---- OpenRouter ---- */

#define OR_HEAD "{\"id\":\"gen-1732590006-Xk2pQ9rT\",\"provider\":\"Anthropic\",\"model\":" \
		"\"anthropic/claude-3.5-sonnet\",\"object\":\"chat.completion.chunk\",\"created\":1732590006,"

static const char openrouter_stream[] =
	": OPENROUTER PROCESSING\n\n"
	": OPENROUTER PROCESSING\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]}\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"reasoning\":"
	"\"Greet back.\"},\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]}\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hey\"},"
	"\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]}\n\n"
	": OPENROUTER PROCESSING\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" you\"},"
	"\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]}\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"finish_reason\":\"stop\",\"native_finish_reason\":\"end_turn\",\"logprobs\":null}]}\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}],\"usage\":{\"prompt_tokens\":13,"
	"\"completion_tokens\":2,\"total_tokens\":15,\"cost\":0.000069,\"is_byok\":false}}\n\n"
	"data: [DONE]\n\n";

static const char openrouter_error_stream[] =
	": OPENROUTER PROCESSING\n\n"
	"data: " OR_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hey\"},"
	"\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]}\n\n"
	"data: " OR_HEAD "\"error\":{\"code\":\"server_error\",\"message\":\"Provider disconnected unexpectedly\"},"
	"\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n"
	"data: [DONE]\n\n";

static void test_openrouter(void **state)
{
	(void)state;
	use_provider("openrouter", "anthropic/claude-3.5-sonnet", NULL, NULL);
	struct expect x = { "done", "Hey you", "Greet back.", "stop", "anthropic/claude-3.5-sonnet", 13, 2, 15, NULL,
			    NULL };
	serve_stream("openrouter", openrouter_stream, true, &x);
	struct expect e = { "error", "Hey", NULL, NULL, NULL, 0, 0, 0, "upstream_http",
			    "backend error in stream: Provider disconnected unexpectedly" };
	serve_stream("openrouter error in stream", openrouter_error_stream, false, &e);
	serve_error_body("openrouter 402", 402,
			 "{\"error\":{\"code\":402,\"message\":\"Insufficient credits. Add more using "
			 "https://openrouter.ai/settings/credits\"}}",
			 "HTTP 402: Insufficient credits. Add more using https://openrouter.ai/settings/credits");
	serve_error_body("openrouter 502", 502,
			 "{\"error\":{\"code\":502,\"message\":\"Provider returned error\",\"metadata\":{\"raw\":"
			 "\"upstream connect error\",\"provider_name\":\"Anthropic\"}}}",
			 "HTTP 502: Provider returned error");
}

/* ---- unknown provider ---- */

static void test_unknown_provider(void **state)
{
	(void)state;
	use_provider("acme-llm", "acme-1", NULL, NULL);
	assert_true(h_daemon_log_contains(daemon_,
					  "unknown provider \"acme-llm\": treating it as OpenAI-compatible"));
	struct expect x = { "done", "Hello! 你好 😀\n", NULL, "stop", "gpt-4o-mini-2024-07-18", 19, 4, 23, NULL, NULL };
	serve_once("unknown provider", openai_stream, 200, "text/event-stream", 0, 0, &x);
	json_t *r0 = h_mock_chat_request(mock, 0, KEY);
	assert_string_equal(h_jstr(r0, "body.model"), "acme-1");
	json_decref(r0);
}

H_MAIN("integ_providers", &bed, H_TEST(test_openai), H_TEST(test_vllm), H_TEST(test_ollama),
       H_TEST(test_llamacpp), H_TEST(test_deepseek), H_TEST(test_azure), H_TEST(test_azure_headers),
       H_TEST(test_openrouter), H_TEST(test_unknown_provider))
