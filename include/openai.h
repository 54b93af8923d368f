/* openai: the OpenAI chat-completions wire format. Builds the streaming request
 * body and decodes one SSE data payload ("chunk") into what the dispatcher
 * relays: content and reasoning deltas, tool-call pieces, finish_reason,
 * usage, in-stream errors and the [DONE] marker. Also extracts the message
 * from an HTTP error body. Pure: no I/O. */
#ifndef SUNDYNIX_OPENAI_H
#define SUNDYNIX_OPENAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "contract.h"
#include "util.h"

/* Tool-call entries in one chunk's delta: the fast path reads up to
 * OPENAI_FAST_TOOL_CALLS and leaves a longer array to jansson, which reads up
 * to OPENAI_MAX_TOOL_CALLS; a chunk carrying more pieces than that is refused
 * as an invalid chunk (upstream_protocol). Backends send one or a few per
 * chunk; the cap bounds the decoder's memory whatever a peer sends. */
#define OPENAI_FAST_TOOL_CALLS 8
#define OPENAI_MAX_TOOL_CALLS 128

/* What one chunk carried. String pointers point into decoder-owned memory and
 * stay valid until the next openai_decode or openai_decoder_free. */
struct openai_chunk {
	bool done;              /* the payload was [DONE] */
	const char *content;    /* choices[0].delta.content, NULL if absent/null/"" */
	size_t content_len;
	const char *reasoning;  /* choices[0].delta.reasoning_content (or .reasoning) */
	size_t reasoning_len;
	/* choices[0].delta.tool_calls, when an array: one piece per entry that
	 * is an object carrying a non-empty id, function.name or
	 * function.arguments string, in array order (the others carry nothing
	 * and are skipped). index is the entry's "index" when that is an
	 * integer in 0..INT_MAX, else the entry's position in the array. id,
	 * name, arguments: NULL when absent, null, "" or not a string. */
	const struct contract_tool_call *tool_calls;
	size_t ntool_calls;
	const char *finish_reason; /* NULL if absent/null/"" */
	const char *model;      /* top-level "model", NULL if absent or "" */
	/* "usage" object with at least one count, else "x_groq.usage"; counts
	 * may be integral floats; a missing one is 0, a missing total the sum. */
	bool has_usage;
	struct contract_usage usage; /* the backend's counts, as the contract relays them */
	bool is_error;          /* top-level "error" object or string, or a bare
				 * {"object":"error","message":..} (older vLLM) */
	const char *error_message; /* its "message" (or the string), never NULL if is_error */
};

struct openai_decoder {
	json_t *last;     /* the tree the previous chunk's pointers point into */
	struct buf strs;  /* the fast path's strings, NUL-terminated, reused */
	struct contract_tool_call *calls; /* a chunk's tool-call pieces, reused */
	size_t calls_cap;
	unsigned long long fast, slow; /* chunks decoded by each path */
	unsigned long long same;       /* of the fast ones, read as the previous chunk's shape */
	/* The previous text chunk's shape (see openai.c): its bytes through the
	 * content string's opening quote, those after its closing quote, and
	 * the model (NUL-terminated, when there was one). shape_pre 0: none. */
	struct buf shape;
	size_t shape_pre, shape_suf;
	bool shape_model;
};

void openai_decoder_init(struct openai_decoder *d);
void openai_decoder_free(struct openai_decoder *d);
/* Returns 0, or -1 when the payload is not a JSON object (nor [DONE]) or
 * carries more than OPENAI_MAX_TOOL_CALLS tool-call pieces; then err (if
 * non-NULL) gets a short reason that quotes none of the payload, and out is
 * empty.
 * An empty or all-blank payload returns 0 with nothing set. */
int openai_decode(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out,
		  char *err, size_t errlen) UTIL_WUR;
/* The same, always through jansson. openai_decode first tries a hand-written
 * scanner that handles the common chunk shapes without building a tree or
 * allocating, and falls back to this for anything it does not handle; the
 * two must agree on every input (tests and the fuzzer check it). */
int openai_decode_json(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out,
		       char *err, size_t errlen) UTIL_WUR;

/* Request body: {"model":..,"messages":..,"stream":true,
 * "stream_options":{"include_usage":true}, <allowed params from params>}.
 * Allowed: temperature, top_p, max_tokens, stop, seed, presence_penalty,
 * frequency_penalty, tools, tool_choice, parallel_tool_calls,
 * response_format (copied as they are); anything else in params, and null
 * values, are dropped.
 * params and messages may be NULL. Returns a malloc'd string owned by the
 * caller (free()). */
char *openai_build_request(const char *model, json_t *messages, json_t *params);
/* The probe's request: one "ping" user message, max_tokens 1, not streamed. */
char *openai_build_probe(const char *model);

/* Message of an HTTP error body: error.message, error (string), message,
 * detail (or detail[0].msg), or the body text itself; one line of at most
 * outlen - 1 bytes, never cut inside a UTF-8 character, control characters
 * and white space runs become one space, invalid UTF-8 bytes become '?'.
 * Always NUL-terminates when outlen > 0; "" for an empty body. */
void openai_error_message(const char *body, size_t len, char *out, size_t outlen);

#endif
