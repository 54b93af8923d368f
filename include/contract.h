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

/* Error codes of the contract. CONTRACT_OK is "no error" and never appears
 * on the wire; contract_code_name gives the wire spelling of the others. */
enum contract_code {
	CONTRACT_OK = 0,
	CONTRACT_BAD_REQUEST,
	CONTRACT_BUSY,
	CONTRACT_CANCELLED,
	CONTRACT_UPSTREAM_UNAVAILABLE,
	CONTRACT_UPSTREAM_HTTP,
	CONTRACT_UPSTREAM_PROTOCOL,
	CONTRACT_UPSTREAM_TIMEOUT,
	CONTRACT_SHUTTING_DOWN,
	CONTRACT_INTERNAL,
	CONTRACT_UNKNOWN_REQUEST,  /* replay: no such stream here (never seen, or past its linger) */
	CONTRACT_REPLAY_TRUNCATED, /* replay: the oldest events asked for were dropped (limits.replay_bytes) */
	CONTRACT_CODE_COUNT,
};

/* "bad_request", "busy", ...; "internal" for anything out of range. */
const char *contract_code_name(enum contract_code code);

/* Every subject of the contract, built once from the subject prefix. */
struct contract_subjects {
	char *submit;         /* <prefix>.chat.submit (queue group) */
	char *cancel;         /* <prefix>.chat.cancel */
	char *stream_prefix;  /* <prefix>.chat.stream. (+ request_id) */
	char *config_get;     /* <prefix>.config.model.get */
	char *config_updated; /* <prefix>.config.model.updated */
	char *probe;          /* <prefix>.dispatcher.probe (queue group) */
	char *reply_prefix;   /* <prefix>.dispatcher.reply. (+ a unique token): our request replies */
	char *replay_prefix;  /* <prefix>.chat.replay. (+ the instance id of the stream's owner) */
};

void contract_subjects_init(struct contract_subjects *s, const char *prefix);
void contract_subjects_free(struct contract_subjects *s);
/* <prefix>.chat.stream.<rid> and <prefix>.chat.replay.<instance> (malloc'd). */
char *contract_stream_subject(const struct contract_subjects *s, const char *rid);
char *contract_replay_subject(const struct contract_subjects *s, const char *instance);

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
	const char *last_user;  /* content of the last "user" message (its first
				 * text part when content is an array), or NULL */
	/* "resume": continue an answer another dispatcher started. */
	bool resume;
	const char *resume_text; /* the answer so far ("" when absent) */
	size_t resume_text_len;
	const char *resume_reasoning; /* the reasoning so far ("" when absent) */
	size_t resume_reasoning_len;
	unsigned long long resume_next_seq; /* the seq the first event must have */
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
 * system/user/assistant/tool and content a string or a non-empty array of
 * content parts ({"type":"text","text":string}, and in user messages also
 * {"type":"image_url","image_url":{"url":non-empty string, "detail":
 * auto/low/high}}), optional string name and tool_call_id; an assistant
 * message may instead carry a non-empty "tool_calls" array with content null
 * or absent (tool_calls is refused on other roles); memory an object if
 * present with profile a string and facts an array of strings; params an
 * object if present, whose forwarded keys are shape-checked (temperature,
 * top_p, presence_penalty, frequency_penalty numbers; max_tokens a positive
 * integer; seed an integer; stop a string or array of strings; tools a
 * non-empty array of {"type":"function","function":{"name":non-empty string,
 * "description":string, "parameters":object}}; tool_choice "auto", "none",
 * "required" or {"type":"function","function":{"name":non-empty string}};
 * parallel_tool_calls a boolean; response_format {"type":"text"},
 * {"type":"json_object"} or {"type":"json_schema","json_schema":{"name":
 * non-empty string, "schema":object, "strict":boolean}}). Beyond these
 * shapes the values are not interpreted: they are forwarded as they are;
 * resume an object if present, with text and reasoning strings (optional)
 * and next_seq an integer from 0 to 2^53-1. For every optional field JSON null means absent; unknown fields are
 * ignored. Returns 0 and fills out, or -1 and fills err (out is then empty
 * and owns nothing). err->message names the field and never quotes the body
 * (invalid JSON reports only line and column). */
int contract_decode_submit(const char *body, size_t len, size_t max_bytes, struct contract_submit *out,
			   struct contract_error *err) UTIL_WUR;
void contract_submit_free(struct contract_submit *s);

/* Decodes {"request_id":"..."} (other fields ignored, at most 64 KiB);
 * returns 0 with rid filled, -1 (rid "") if invalid. */
int contract_decode_cancel(const char *body, size_t len, char rid[CONTRACT_RID_MAX + 1]) UTIL_WUR;

/* Encoders append to out (they do not reset it). A NULL or "" rid is encoded
 * as "request_id":null; a NULL message as "".
 * Strings are escaped with buf_append_json_str (invalid UTF-8 -> U+FFFD). */
/* code CONTRACT_OK: accepted. instance (may be NULL) names the dispatcher that
 * owns the stream: replays go to it. */
void contract_encode_ack(struct buf *out, const char *rid, const char *instance, enum contract_code code,
			 const char *message);
enum contract_delta { CONTRACT_TOKEN, CONTRACT_REASONING };
void contract_encode_delta(struct buf *out, const char *rid, unsigned long long seq, enum contract_delta kind,
			   const char *delta, size_t delta_len);
/* One piece of a tool call as the backend streamed it: a "tool_call" event.
 * index says which call of the answer it belongs to (a gateway appends the
 * arguments of every piece with the same index); id and name usually come
 * with a call's first piece only; arguments is the next piece of the call's
 * JSON arguments text. A NULL id or name is omitted from the event, a NULL
 * arguments is encoded as "". Strings may hold NUL bytes: lengths rule. */
struct contract_tool_call {
	int index; /* >= 0 */
	const char *id;
	size_t id_len;
	const char *name;
	size_t name_len;
	const char *arguments;
	size_t arguments_len;
};
void contract_encode_tool_call(struct buf *out, const char *rid, unsigned long long seq,
			       const struct contract_tool_call *tc);
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
	int resumed; /* times the stream was continued on another replica; omitted when 0 */
};
/* usage may be NULL (then "usage" is omitted), and so may model (then
 * "model" is omitted); finish_reason NULL -> "stop". route may be NULL (the
 * stub, or a request that never reached a backend). */
void contract_encode_done(struct buf *out, const char *rid, unsigned long long seq, const char *finish_reason,
			  const char *model, const struct contract_usage *usage, const struct contract_route *route);
void contract_encode_error(struct buf *out, const char *rid, unsigned long long seq, enum contract_code code,
			   const char *message, const struct contract_route *route);
/* {"request_id":..,"seq":n,"type":"keepalive"}: the stream is alive. */
void contract_encode_keepalive(struct buf *out, const char *rid, unsigned long long seq);
/* Marks the event that ends out (from offset start) as a replay: inserts
 * ,"replay":true before its closing brace. */
void contract_mark_replay(struct buf *out, size_t start);

/* A replay request {"request_id":..,"from_seq":N} (at most 64 KiB; from_seq
 * a non-negative integer, 0 when absent). Returns 0, or -1 with err filled. */
int contract_decode_replay(const char *body, size_t len, char rid[CONTRACT_RID_MAX + 1], unsigned long long *from_seq,
			   struct contract_error *err) UTIL_WUR;
/* The answer to a replay request: {"request_id":..,"ok":..,"first_seq":F,
 * "next_seq":N[,"error":{..}]}: events first_seq..next_seq-1 were published
 * again on the stream subject before this answer. code CONTRACT_OK: ok. */
void contract_encode_replay_answer(struct buf *out, const char *rid, enum contract_code code, const char *message,
				   unsigned long long first_seq, unsigned long long next_seq);
/* The startup config request body {"component":"dispatcher","instance":"<id>"}. */
void contract_encode_config_request(struct buf *out, const char *instance);

/* The answer to a probe: {"ok":..,"error":..,"endpoints":[{"base_url","ok",
 * "latency_ms","status","error"}]}. With error non-NULL the probe could not
 * run at all ("ok":false, no endpoints); otherwise "ok" is true when every
 * endpoint is, and "error" is omitted. */
struct contract_probe_result {
	const char *base_url; /* without userinfo */
	bool ok;
	long long latency_ms;
	long status;       /* HTTP status, 0 when none came */
	const char *error; /* NULL when ok; redacted by the caller */
};
void contract_encode_probe_answer(struct buf *out, const char *error, const struct contract_probe_result *r,
				  size_t n);

/* ---- the client side (sundynixctl, and any C gateway) ---- */

/* A chat submit as a client sends it: one optional system message, one user
 * message, the memory, and optionally params.tools and
 * params.response_format (borrowed JSON values, sent as they are). NULL
 * fields are omitted. */
struct contract_chat {
	const char *request_id;
	const char *session_id;
	const char *user_id;
	const char *system;
	const char *message;
	const char *profile;
	const char *const *facts;
	size_t nfacts;
	bool resume; /* continue an answer: resume_text, resume_reasoning, resume_next_seq */
	const char *resume_text;
	size_t resume_text_len;
	const char *resume_reasoning;
	size_t resume_reasoning_len;
	unsigned long long resume_next_seq;
	json_t *tools;
	json_t *response_format;
};
void contract_encode_chat(struct buf *out, const struct contract_chat *c);
void contract_encode_cancel(struct buf *out, const char *rid);
void contract_encode_replay(struct buf *out, const char *rid, unsigned long long from_seq);

/* An ack as the dispatcher sends it. */
struct contract_ack {
	bool accepted;
	char instance[CONTRACT_RID_MAX + 1]; /* the owner's instance id, "" when absent */
	char code[32];     /* the error code when refused, "" otherwise */
	char message[512]; /* the error message when refused */
};
int contract_decode_ack(const char *data, size_t len, struct contract_ack *out) UTIL_WUR;

/* One stream event as the dispatcher sends it. Owns root; the strings borrow
 * from it. Unknown types decode as CONTRACT_EV_OTHER: the contract may grow. */
enum contract_event_type {
	CONTRACT_EV_TOKEN,
	CONTRACT_EV_REASONING,
	CONTRACT_EV_DONE,
	CONTRACT_EV_ERROR,
	CONTRACT_EV_KEEPALIVE,
	CONTRACT_EV_TOOL_CALL,
	CONTRACT_EV_OTHER,
};
struct contract_event {
	json_t *root;
	const char *request_id;
	unsigned long long seq;
	enum contract_event_type type;
	const char *type_name;
	bool replay; /* sent again on request (gap repair) */
	const char *delta; /* token, reasoning */
	size_t delta_len;
	const char *finish_reason; /* done; NULL when absent */
	const char *model;         /* done; NULL when absent */
	bool has_usage;            /* done */
	struct contract_usage usage;
	const char *error_code;    /* error */
	const char *error_message; /* error */
	struct contract_tool_call tool_call; /* tool_call; arguments never NULL */
};
/* Returns 0, or -1 with a short reason in err when the body is not an event
 * (not an object, no request_id, seq or type, a delta that is not a string,
 * a tool_call without a non-negative integer index or with an id, name or
 * arguments that is not a string). */
int contract_decode_event(const char *data, size_t len, struct contract_event *ev, char *err, size_t errlen) UTIL_WUR;
void contract_event_free(struct contract_event *ev);
/* A replay answer, as a client reads it. */
struct contract_replay_answer {
	bool ok;
	char code[32];
	unsigned long long first_seq, next_seq;
};
int contract_decode_replay_answer(const char *data, size_t len, struct contract_replay_answer *out) UTIL_WUR;

#endif
