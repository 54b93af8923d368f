/* Unit tests for whole tool-call streams through openai (issue #12):
 * provider streams with tool calls replayed through sse and the decoder at
 * every split point and reassembled per index as a gateway does, and the
 * recorded corpus streams with tool calls. Single chunks are
 * test_openai_tools.c's. Links util, openai and sse, as unit_openai does. */
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
#include "openai_test.h"
#include "sse.h"

static const char *test_argv0 = "";

/* ---- whole streams, as a gateway reassembles them ---- */

#define MAX_CALLS 8

struct want_call {
	int index;
	const char *id, *name, *arguments;
};

/* A tool-call stream in one provider's wire shape: its envelope, key order
 * and framing, with tool-call arguments split the way each provider does
 * and at awkward places (inside a \" escape, inside \u escapes and a
 * surrogate pair of the arguments text, between two multi-byte characters;
 * the replay at every split point then cuts the bytes inside every
 * character too). */
struct provider_stream {
	const char *name, *provider;
	const char *body;
	const char *text, *finish;
	bool has_usage;
	struct contract_usage usage;
	size_t ncalls;
	struct want_call calls[MAX_CALLS];
};

static const struct provider_stream provider_streams[] = {
	{
		"openai_text_then_call", "OpenAI",
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me check\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" the weather.\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_Ho3kVq2mXr8LpT7w\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"location\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"Paris \\\\\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Left Bank\\\\\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\",\\\"unit\\\":\\\"c\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"elsius\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[],\"usage\":{\"prompt_tokens\":82,\"completion_tokens\":31,\"total_tokens\":113,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n"
		"data: [DONE]\n\n",
		"Let me check the weather.", "tool_calls",
		true, { 82, 31, 113 },
		1,
		{
			{ 0, "call_Ho3kVq2mXr8LpT7w", "get_weather", "{\"location\":\"Paris \\\"Left Bank\\\"\",\"unit\":\"celsius\"}" },
		},
	},
	{
		"openai_parallel", "OpenAI",
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_A1b2C3d4E5f6G7h8\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"杭\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"州\\\",\\\"note\\\":\\\"Montr\\\\u00\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"e9al\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\\ud83c\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\\udf27\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_Z9y8X7w6V5u4T3s2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"tz\\\":\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"Asia/Shang\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"hai\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":58,\"total_tokens\":178,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		true, { 120, 58, 178 },
		2,
		{
			{ 0, "call_A1b2C3d4E5f6G7h8", "get_weather", "{\"city\":\"杭州\",\"note\":\"Montr\\u00e9al \\ud83c\\udf27\"}" },
			{ 1, "call_Z9y8X7w6V5u4T3s2", "get_time", "{\"tz\":\"Asia/Shanghai\"}" },
		},
	},
	{
		"vllm_parallel", "vLLM",
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"chatcmpl-tool-8a3f51c2d4e64b0f\",\"type\":\"function\",\"index\":0,\"function\":{\"name\":\"get_weather\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"Ber\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"lin\\\", \\\"unit\\\": \\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"celsius\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"chatcmpl-tool-2b7e90d1f3c84a65\",\"type\":\"function\",\"index\":1,\"function\":{\"name\":\"get_time\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"Ber\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"lin\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\",\"stop_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-6c1f0e9a2b8d4e57\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[],\"usage\":{\"prompt_tokens\":312,\"total_tokens\":370,\"completion_tokens\":58}}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		true, { 312, 58, 370 },
		2,
		{
			{ 0, "chatcmpl-tool-8a3f51c2d4e64b0f", "get_weather", "{\"city\": \"Berlin\", \"unit\": \"celsius\"}" },
			{ 1, "chatcmpl-tool-2b7e90d1f3c84a65", "get_time", "{\"city\": \"Berlin\"}" },
		},
	},
	{
		"ollama_whole_calls", "Ollama",
		"data: {\"id\":\"chatcmpl-738\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"qwen2.5:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_9x4hdk2q\",\"index\":0,\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"杭州\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-738\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"qwen2.5:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_m3n7p1zt\",\"index\":1,\"type\":\"function\",\"function\":{\"name\":\"get_forecast\",\"arguments\":\"{\\\"city\\\":\\\"Hangzhou\\\",\\\"days\\\":3}\"}}]},\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-738\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"qwen2.5:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"tool_calls\"}]}\n\n"
		"data: {\"id\":\"chatcmpl-738\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"qwen2.5:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{\"prompt_tokens\":150,\"completion_tokens\":40,\"total_tokens\":190}}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		true, { 150, 40, 190 },
		2,
		{
			{ 0, "call_9x4hdk2q", "get_weather", "{\"city\":\"杭州\"}" },
			{ 1, "call_m3n7p1zt", "get_forecast", "{\"city\":\"Hangzhou\",\"days\":3}" },
		},
	},
	{
		"ollama_two_in_one_chunk", "Ollama",
		"data: {\"id\":\"chatcmpl-738\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"qwen2.5:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_9x4hdk2q\",\"index\":0,\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"杭州\\\"}\"}},{\"id\":\"call_m3n7p1zt\",\"index\":1,\"type\":\"function\",\"function\":{\"name\":\"get_forecast\",\"arguments\":\"{\\\"city\\\":\\\"Hangzhou\\\",\\\"days\\\":3}\"}}]},\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-738\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"qwen2.5:7b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"tool_calls\"}]}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		false, { 0, 0, 0 },
		2,
		{
			{ 0, "call_9x4hdk2q", "get_weather", "{\"city\":\"杭州\"}" },
			{ 1, "call_m3n7p1zt", "get_forecast", "{\"city\":\"Hangzhou\",\"days\":3}" },
		},
	},
	{
		"llamacpp_text_then_call", "llama.cpp",
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"I'll\"}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\" read it.\"}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"R2pX8fLw0qZyVn5mT4sKc7HbJ1aD9eGu\",\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"path\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":\\\"\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"/tmp/\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"données\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\".txt\\\"}\"}}]}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\"}\n\n"
		"data: {\"choices\":[{\"finish_reason\":\"tool_calls\",\"index\":0,\"delta\":{}}],\"created\":1737000000,\"id\":\"chatcmpl-Xk2f9QbN7rT1vW3y\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b4820-1a24c462\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":30,\"prompt_tokens\":220,\"total_tokens\":250},\"timings\":{\"prompt_n\":220,\"prompt_ms\":85.213,\"prompt_per_token_ms\":0.387,\"prompt_per_second\":2581.7,\"predicted_n\":30,\"predicted_ms\":412.9,\"predicted_per_token_ms\":13.76,\"predicted_per_second\":72.65}}\n\n"
		"data: [DONE]\n\n",
		"I'll read it.", "tool_calls",
		true, { 220, 30, 250 },
		1,
		{
			{ 0, "R2pX8fLw0qZyVn5mT4sKc7HbJ1aD9eGu", "read_file", "{\"path\":\"/tmp/données.txt\"}" },
		},
	},
	{
		"deepseek_parallel", "DeepSeek",
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_0_8f1c2b7e-5a44-4d41-9f3e-2c6b1e0d9a77\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"location\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"Shang\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"hai\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_1_3e9d0a4b-77c2-4f15-8b2a-6c0e5d9f1a23\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"location\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\":\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"Beijing\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"0b3c5e7a-1f2d-4c8b-9a6e-3d4f5a6b7c8d\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_3a5770e1b4_prod0225\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":204,\"completion_tokens\":47,\"total_tokens\":251,\"prompt_tokens_details\":{\"cached_tokens\":192},\"prompt_cache_hit_tokens\":192,\"prompt_cache_miss_tokens\":12}}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		true, { 204, 47, 251 },
		2,
		{
			{ 0, "call_0_8f1c2b7e-5a44-4d41-9f3e-2c6b1e0d9a77", "get_weather", "{\"location\":\"Shanghai\"}" },
			{ 1, "call_1_3e9d0a4b-77c2-4f15-8b2a-6c0e5d9f1a23", "get_weather", "{\"location\":\"Beijing\"}" },
		},
	},
	{
		"azure_one_call", "Azure",
		"data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":null,\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":\"\",\"name\":\"get_weather\"},\"id\":\"call_Uv1r7Kq3Mn8Pz2Lx\",\"index\":0,\"type\":\"function\"}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"\"},\"index\":0}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"location\"},\"index\":0}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"\\\":\\\"\"},\"index\":0}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"Seattle\"},\"index\":0}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\", WA\\\"}\"},\"index\":0}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"tool_calls\",\"index\":0,\"logprobs\":null}],\"created\":1737000000,\"id\":\"chatcmpl-AzQ7rLm2Kp\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\"}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		false, { 0, 0, 0 },
		1,
		{
			{ 0, "call_Uv1r7Kq3Mn8Pz2Lx", "get_weather", "{\"location\":\"Seattle, WA\"}" },
		},
	},
	{
		"interleaved_by_index", "OpenAI-compatible proxy",
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_I0\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}},{\"index\":1,\"id\":\"call_I1\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"q\\\":\\\"\"}},{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1,\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"y\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"b\\\":\\\"x\\\"}\"}},{\"index\":1,\"function\":{\"arguments\":\"\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
		"data: {\"id\":\"chatcmpl-B9Xq2tZkLm\",\"object\":\"chat.completion.chunk\",\"created\":1737000000,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n"
		"data: [DONE]\n\n",
		"", "tool_calls",
		false, { 0, 0, 0 },
		2,
		{
			{ 0, "call_I0", "f", "{\"a\":1,\"b\":\"x\"}" },
			{ 1, "call_I1", "g", "{\"q\":\"y\"}" },
		},
	},
};

/* What a gateway keeps of one stream: text, reasoning, finish, usage, and
 * the calls reassembled by index (in order of first appearance). */
struct assembled {
	struct openai_decoder dec;
	struct buf text, reasoning;
	char finish[64];
	bool has_usage;
	struct contract_usage usage;
	size_t ncalls;
	struct {
		int index;
		struct buf id, name, args;
	} calls[MAX_CALLS];
	int failures;
	int bad; /* a call's id or name changed, or too many calls */
};

static void assembled_init(struct assembled *a)
{
	memset(a, 0, sizeof(*a));
	openai_decoder_init(&a->dec);
	buf_append(&a->text, "", 0);
	buf_append(&a->reasoning, "", 0);
}

static void assembled_free(struct assembled *a)
{
	openai_decoder_free(&a->dec);
	buf_free(&a->text);
	buf_free(&a->reasoning);
	for (size_t i = 0; i < a->ncalls; i++) {
		buf_free(&a->calls[i].id);
		buf_free(&a->calls[i].name);
		buf_free(&a->calls[i].args);
	}
}

/* id and name are set once per call; a different one later is an error. */
static void set_once(struct assembled *a, struct buf *b, const char *s, size_t n)
{
	if (!s)
		return;
	if (b->len && (b->len != n || memcmp(b->data, s, n)))
		a->bad++;
	buf_reset(b);
	buf_append(b, s, n);
}

static void assemble_piece(struct assembled *a, const struct contract_tool_call *tc)
{
	size_t i = 0;

	while (i < a->ncalls && a->calls[i].index != tc->index)
		i++;
	if (i == a->ncalls) {
		if (i == MAX_CALLS) {
			a->bad++;
			return;
		}
		a->ncalls++;
		a->calls[i].index = tc->index;
		buf_append(&a->calls[i].id, "", 0);
		buf_append(&a->calls[i].name, "", 0);
		buf_append(&a->calls[i].args, "", 0);
	}
	set_once(a, &a->calls[i].id, tc->id, tc->id_len);
	set_once(a, &a->calls[i].name, tc->name, tc->name_len);
	if (tc->arguments)
		buf_append(&a->calls[i].args, tc->arguments, tc->arguments_len);
}

static int assemble_cb(void *ud, const struct sse_event *ev)
{
	struct assembled *a = ud;
	struct openai_chunk c;
	char err[128];

	if (openai_decode(&a->dec, ev->data, ev->data_len, &c, err, sizeof(err))) {
		print_error("decode: %s\n", err);
		a->failures++;
		return 0;
	}
	if (c.reasoning)
		buf_append(&a->reasoning, c.reasoning, c.reasoning_len);
	if (c.content)
		buf_append(&a->text, c.content, c.content_len);
	for (size_t i = 0; i < c.ntool_calls; i++)
		assemble_piece(a, &c.tool_calls[i]);
	if (c.finish_reason)
		snprintf(a->finish, sizeof(a->finish), "%s", c.finish_reason);
	if (c.has_usage) {
		a->has_usage = true;
		a->usage = c.usage;
	}
	return 0;
}

/* Feeds body whole (split == len), or as two feeds split at split, or one
 * byte at a time (split == SIZE_MAX). */
static void assemble(const char *body, size_t len, size_t split, struct assembled *a)
{
	struct sse_parser p;

	assembled_init(a);
	sse_init(&p, 65536);
	if (split == SIZE_MAX) {
		for (size_t i = 0; i < len; i++)
			assert_int_equal(sse_feed(&p, body + i, 1, assemble_cb, a), 0);
	} else {
		assert_int_equal(sse_feed(&p, body, split, assemble_cb, a), 0);
		assert_int_equal(sse_feed(&p, body + split, len - split, assemble_cb, a), 0);
	}
	assert_int_equal(sse_finish(&p, assemble_cb, a), 0);
	sse_free(&p);
}

/* The reassembled calls against the expected ones; each call's arguments
 * must parse as JSON, as a gateway will parse them. */
static void check_calls(const char *name, const struct assembled *a, const struct want_call *want, size_t n)
{
	if (a->ncalls != n)
		print_error("%s: %zu calls, want %zu\n", name, a->ncalls, n);
	assert_int_equal(a->bad, 0);
	assert_int_equal(a->ncalls, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a->calls[i].index, want[i].index);
		assert_string_equal(a->calls[i].id.data, want[i].id);
		assert_string_equal(a->calls[i].name.data, want[i].name);
		assert_string_equal(a->calls[i].args.data, want[i].arguments);
		json_error_t jerr;
		json_t *v = json_loads(a->calls[i].args.data, 0, &jerr);
		if (!v)
			print_error("%s: call %zu: arguments are not JSON: %s\n", name, i, jerr.text);
		assert_true(json_is_object(v));
		json_decref(v);
	}
}

static void check_stream(const struct provider_stream *s, const struct assembled *a)
{
	assert_int_equal(a->failures, 0);
	assert_string_equal(a->text.data, s->text);
	assert_string_equal(a->reasoning.data, "");
	assert_string_equal(a->finish, s->finish);
	assert_int_equal(a->has_usage, s->has_usage);
	if (s->has_usage) {
		assert_int_equal(a->usage.prompt_tokens, s->usage.prompt_tokens);
		assert_int_equal(a->usage.completion_tokens, s->usage.completion_tokens);
		assert_int_equal(a->usage.total_tokens, s->usage.total_tokens);
	}
	check_calls(s->name, a, s->calls, s->ncalls);
}

static void test_provider_streams(void **state)
{
	(void)state;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(provider_streams); i++) {
		const struct provider_stream *s = &provider_streams[i];
		size_t len = strlen(s->body);
		struct assembled a;

		assemble(s->body, len, SIZE_MAX, &a);
		check_stream(s, &a);
		assembled_free(&a);
		for (size_t k = 0; k <= len; k++) {
			assemble(s->body, len, k, &a);
			check_stream(s, &a);
			assembled_free(&a);
		}
		print_message("  %s (%s): %zu calls, %zu split points agree\n", s->name, s->provider, s->ncalls, len + 1);
	}
}

/* Tool-call chunks take the fast path: arguments stream like text. */
static int count_cb(void *ud, const struct sse_event *ev)
{
	struct openai_chunk c;

	(void)!openai_decode(ud, ev->data, ev->data_len, &c, NULL, 0);
	return 0;
}

static void test_provider_streams_fast(void **state)
{
	struct openai_decoder d;

	(void)state;
	openai_decoder_init(&d);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(provider_streams); i++) {
		struct sse_parser p;
		sse_init(&p, 65536);
		assert_int_equal(sse_feed(&p, provider_streams[i].body, strlen(provider_streams[i].body), count_cb, &d), 0);
		assert_int_equal(sse_finish(&p, count_cb, &d), 0);
		sse_free(&p);
	}
	print_message("fast path: %llu chunks, jansson: %llu\n", d.fast, d.slow);
	/* Only llama.cpp's finish chunk (timings are reals) needs jansson. */
	assert_int_equal(d.slow, 1);
	openai_decoder_free(&d);
}

/* ---- the recorded corpus streams with tool calls ---- */

static const char *const corpus_tool_streams[] = {
	"openai_tool_calls",
	"deepseek_reasoner_tool_call",
	"anthropic_compat_text_then_tool_idx1",
};

static void test_corpus_tool_calls(void **state)
{
	char *dir = corpus_dir(test_argv0);
	int cases = 0;

	(void)state;
	if (!dir) {
		print_message("sse corpus not found (set SSE_CORPUS_DIR or check out ../shared/sse-corpus), skipped\n");
		skip();
		return;
	}
	for (size_t i = 0; i < UTIL_ARRAY_LEN(corpus_tool_streams); i++) {
		const char *name = corpus_tool_streams[i];
		char *jpath = xasprintf("%s/%s.json", dir, name);
		char *spath = xasprintf("%s/%s.sse", dir, name);
		json_error_t jerr;
		json_t *meta = json_load_file(jpath, 0, &jerr);
		size_t len = 0;
		char *body = read_whole_file(spath, &len);

		if (!meta || !body) {
			/* An older corpus without this stream: nothing to check. */
			print_message("  %s: not in the corpus, skipped\n", name);
			json_decref(meta);
			free(body);
			free(jpath);
			free(spath);
			continue;
		}
		json_t *expect = json_object_get(meta, "expect");
		json_t *wcalls = json_object_get(expect, "tool_calls");
		struct want_call want[MAX_CALLS];
		size_t n = json_array_size(wcalls);
		assert_true(n > 0 && n <= MAX_CALLS);
		for (size_t k = 0; k < n; k++) {
			json_t *w = json_array_get(wcalls, k);
			want[k].index = (int)json_integer_value(json_object_get(w, "index"));
			want[k].id = json_string_value(json_object_get(w, "id"));
			want[k].name = json_string_value(json_object_get(w, "name"));
			want[k].arguments = json_string_value(json_object_get(w, "arguments"));
			assert_non_null(want[k].id);
			assert_non_null(want[k].name);
			assert_non_null(want[k].arguments);
		}
		const char *text = json_string_value(json_object_get(expect, "text"));
		json_t *r = json_object_get(expect, "reasoning");
		const char *reasoning = json_is_string(r) ? json_string_value(r) : "";
		const char *finish = json_string_value(json_object_get(expect, "finish_reason"));
		assert_non_null(text);
		assert_non_null(finish);

		for (size_t k = 0; k <= len + 1; k++) {
			struct assembled a;
			assemble(body, len, k <= len ? k : SIZE_MAX, &a);
			assert_int_equal(a.failures, 0);
			assert_string_equal(a.text.data, text);
			assert_string_equal(a.reasoning.data, reasoning);
			assert_string_equal(a.finish, finish);
			check_calls(name, &a, want, n);
			assembled_free(&a);
		}
		print_message("  %s: %zu calls, %zu split points agree\n", name, n, len + 1);
		cases++;
		json_decref(meta);
		free(body);
		free(jpath);
		free(spath);
	}
	free(dir);
	print_message("sse corpus: %d tool-call streams\n", cases);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_provider_streams),
		cmocka_unit_test(test_provider_streams_fast),
		cmocka_unit_test(test_corpus_tool_calls),
	};
	(void)argc;
	test_argv0 = argv[0];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
