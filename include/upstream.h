/* upstream: one streaming chat-completions call. Builds the curl easy handle,
 * feeds the response through the SSE parser and the OpenAI chunk decoder, keeps
 * the first-token / idle / total deadlines, and maps every way a call can end
 * to a contract error code. Knows nothing of NATS or of requests. */
#ifndef SUNDYNIX_UPSTREAM_H
#define SUNDYNIX_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "openai.h"
#include "provider.h"

struct http;
struct metrics;
struct upstream;

struct upstream_result {
	enum contract_code code;   /* CONTRACT_OK on success */
	long http_status;          /* 0 if no response came */
	bool got_token;            /* a delta or tool-call piece was delivered */
	/* Failed before any token in a way another replica might not:
	 * connect error, 5xx, 408, 429, timeout before the first token. */
	bool retryable;
	/* Broke off after tokens went out, the way a dying replica does: the
	 * connection dropped or reset, went idle, or the body ended without a
	 * finish. Another replica may continue the answer. */
	bool broken;
	unsigned long long retry_after_ms; /* Retry-After of a 429/503, else 0 */
	const char *message;       /* error text: bounded, redacted */
	const char *finish_reason; /* success: as the backend sent it ("stop" if none) */
	const char *model;         /* success: the backend's model name, may be NULL */
	bool has_usage;
	struct contract_usage usage;
};

struct upstream_cbs {
	void (*delta)(void *ud, enum contract_delta kind, const char *text, size_t len);
	/* One piece of a tool call, in the order the backend sent them (a
	 * chunk's text and reasoning come before its tool calls). Like delta,
	 * it counts as a token (first-token deadline, retries). tc and its
	 * strings are valid during the call only. The stub never calls it. */
	void (*tool_call)(void *ud, const struct contract_tool_call *tc);
	/* Called exactly once, unless upstream_cancel came first. After it the
	 * caller must forget the upstream: it frees itself once curl is done. */
	void (*end)(void *ud, const struct upstream_result *res);
};

struct upstream_params {
	const char *rid;      /* for log lines */
	const char *base_url; /* without trailing '/' */
	const char *api_key;  /* "" for none */
	enum provider_kind provider; /* selects URL and auth quirks */
	const char *model;    /* azure: the deployment, part of the path */
	const char *api_version; /* azure: api-version ("" = default) */
	bool continuation;    /* the body continues a partial answer (selects deepseek's beta URL) */
	struct rcstr *body;   /* request body; the upstream takes its own reference */
	long long connect_timeout_ms;
	long long first_token_ms;
	long long idle_ms;
	long long total_ms;
	size_t max_line;
	struct metrics *metrics; /* per-chunk overhead and bytes read are recorded here; may be NULL */
};

struct upstream *upstream_start(struct http *h, struct upstream_params *p, const struct upstream_cbs *cbs,
				void *ud);
/* Aborts the transfer (the backend sees the disconnect) and frees the
 * upstream; no callback follows. Only before end, never from a callback. */
void upstream_cancel(struct upstream *u);

#endif
