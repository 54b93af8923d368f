/* contract: the JSON of wire contract v1 (docs/protocol.md). Decodes and
 * validates chat submits and cancels; encodes acks and stream events. Event
 * encoding is hand-written (no JSON tree) because it runs once per token.
 * Pure: no I/O. */
#ifndef SUNDYNIX_CONTRACT_H
#define SUNDYNIX_CONTRACT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define CONTRACT_RID_MAX 128

/* Error codes of the contract, as they appear on the wire. */
#define CONTRACT_E_BAD_REQUEST "bad_request"
#define CONTRACT_E_BUSY "busy"
#define CONTRACT_E_CANCELLED "cancelled"
#define CONTRACT_E_UPSTREAM_UNAVAILABLE "upstream_unavailable"
#define CONTRACT_E_UPSTREAM_HTTP "upstream_http"
#define CONTRACT_E_UPSTREAM_PROTOCOL "upstream_protocol"
#define CONTRACT_E_UPSTREAM_TIMEOUT "upstream_timeout"
#define CONTRACT_E_SHUTTING_DOWN "shutting_down"
#define CONTRACT_E_INTERNAL "internal"

/* A decoded, validated chat submit. Owns root; every other pointer borrows
 * from it and lives as long as the submit. */
struct contract_submit {
	json_t *root;
	char request_id[CONTRACT_RID_MAX + 1];
	const char *session_id; /* NULL when absent */
	const char *user_id;    /* NULL when absent */
	json_t *messages;       /* non-empty array, validated */
	const char *profile;    /* memory.profile, NULL when absent */
	json_t *facts;          /* memory.facts (array of strings), NULL when absent */
	json_t *params;         /* params object, NULL when absent */
	const char *last_user;  /* content of the last "user" message, or NULL */
};

/* Why a submit was refused. request_id is set (non-empty) whenever the body
 * carried a valid one, so the caller can also send an error event. */
struct contract_error {
	char request_id[CONTRACT_RID_MAX + 1];
	char message[256]; /* names the field, e.g. "messages[2].role: must be one of ..." */
};

bool contract_valid_request_id(const char *s, size_t len);

/* Validates and decodes a submit body of len bytes (max_bytes is the limit).
 * Rules: body <= max_bytes (checked before parsing); a JSON object without
 * duplicate keys; request_id 1-128 of [A-Za-z0-9_-]; session_id/user_id
 * strings if present; messages a non-empty array of objects with role in
 * system/user/assistant/tool and string content, optional string name and
 * tool_call_id; an assistant message may instead carry a non-empty
 * "tool_calls" array with content null or absent (tool_calls is refused on
 * other roles); memory an object if present with profile a string and facts
 * an array of strings; params an object if present, whose forwarded keys are
 * type-checked (temperature, top_p, presence_penalty, frequency_penalty
 * numbers; max_tokens a positive integer; seed an integer; stop a string or
 * array of strings). For every optional field JSON null means absent; unknown
 * fields are ignored. Returns 0 and fills out, or -1 and fills err (out is
 * then empty and owns nothing). err->message names the field and never
 * quotes the body (invalid JSON reports only line and column). */
int contract_decode_submit(const char *body, size_t len, size_t max_bytes, struct contract_submit *out,
			   struct contract_error *err) UTIL_WUR;
void contract_submit_free(struct contract_submit *s);

/* Decodes {"request_id":"..."} (other fields ignored, at most 64 KiB);
 * returns 0 with rid filled, -1 (rid "") if invalid. */
int contract_decode_cancel(const char *body, size_t len, char rid[CONTRACT_RID_MAX + 1]) UTIL_WUR;

/* Encoders append to out (they do not reset it). A NULL or "" rid is encoded
 * as "request_id":null; a NULL error code as "internal", a NULL message as "".
 * Strings are escaped with buf_append_json_str (invalid UTF-8 -> U+FFFD). */
void contract_encode_ack(struct buf *out, const char *rid, bool accepted, const char *code, const char *message);
/* type is "token" or "reasoning". */
void contract_encode_delta(struct buf *out, const char *rid, unsigned long long seq, const char *type,
			   const char *delta, size_t delta_len);
struct contract_usage {
	long long prompt_tokens;
	long long completion_tokens;
	long long total_tokens;
};
/* Which replica served a request and after how many attempts; terminal
 * events carry it as "attempts" and "endpoint" (a URL without userinfo). */
struct contract_route {
	int attempts;
	const char *endpoint;
};
/* usage may be NULL (then "usage" is omitted), and so may model (then
 * "model" is omitted); finish_reason NULL -> "stop". route may be NULL (the
 * stub, or a request that never reached a backend). */
void contract_encode_done(struct buf *out, const char *rid, unsigned long long seq, const char *finish_reason,
			  const char *model, const struct contract_usage *usage, const struct contract_route *route);
void contract_encode_error(struct buf *out, const char *rid, unsigned long long seq, const char *code,
			   const char *message, const struct contract_route *route);
/* The startup config request body {"component":"dispatcher","instance":"<id>"}. */
void contract_encode_config_request(struct buf *out, const char *instance);

#endif
