/* contract: see include/contract.h.
 *
 * Error messages are built only from field names and indexes we generate, so
 * no byte a client sent (request ids included) can reach a reply or a log line
 * through them. */
#include "contract.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cancel carries one short field; anything this large is not one. */
#define CONTRACT__CANCEL_MAX_BYTES 65536

static const char *const contract__roles[] = { "system", "user", "assistant", "tool" };
static const char *const contract__image_details[] = { "auto", "low", "high" };
static const char *const contract__tool_choices[] = { "auto", "none", "required" };
static const char *const contract__formats[] = { "text", "json_object", "json_schema" };

static const char *const contract__codes[CONTRACT_CODE_COUNT] = {
	[CONTRACT_OK] = "ok", /* never on the wire */
	[CONTRACT_BAD_REQUEST] = "bad_request",
	[CONTRACT_BUSY] = "busy",
	[CONTRACT_CANCELLED] = "cancelled",
	[CONTRACT_UPSTREAM_UNAVAILABLE] = "upstream_unavailable",
	[CONTRACT_UPSTREAM_HTTP] = "upstream_http",
	[CONTRACT_UPSTREAM_PROTOCOL] = "upstream_protocol",
	[CONTRACT_UPSTREAM_TIMEOUT] = "upstream_timeout",
	[CONTRACT_SHUTTING_DOWN] = "shutting_down",
	[CONTRACT_INTERNAL] = "internal",
	[CONTRACT_UNKNOWN_REQUEST] = "unknown_request",
	[CONTRACT_REPLAY_TRUNCATED] = "replay_truncated",
};

const char *contract_code_name(enum contract_code code)
{
	return (unsigned)code < CONTRACT_CODE_COUNT && code != CONTRACT_OK ? contract__codes[code] : "internal";
}

void contract_subjects_init(struct contract_subjects *s, const char *p)
{
	s->submit = xasprintf("%s.chat.submit", p);
	s->cancel = xasprintf("%s.chat.cancel", p);
	s->stream_prefix = xasprintf("%s.chat.stream.", p);
	s->config_get = xasprintf("%s.config.model.get", p);
	s->config_updated = xasprintf("%s.config.model.updated", p);
	s->probe = xasprintf("%s.dispatcher.probe", p);
	s->reply_prefix = xasprintf("%s.dispatcher.reply.", p);
	s->replay_prefix = xasprintf("%s.chat.replay.", p);
}

void contract_subjects_free(struct contract_subjects *s)
{
	free(s->submit);
	free(s->cancel);
	free(s->stream_prefix);
	free(s->config_get);
	free(s->config_updated);
	free(s->probe);
	free(s->reply_prefix);
	free(s->replay_prefix);
	memset(s, 0, sizeof(*s));
}

char *contract_stream_subject(const struct contract_subjects *s, const char *rid)
{
	return xasprintf("%s%s", s->stream_prefix, rid);
}

char *contract_replay_subject(const struct contract_subjects *s, const char *instance)
{
	return xasprintf("%s%s", s->replay_prefix, instance);
}

static void UTIL_PRINTF(2, 3) contract__fail(struct contract_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

bool contract_valid_request_id(const char *s, size_t len)
{
	if (!s || len == 0 || len > CONTRACT_RID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* Copies the request id of v into rid if it is a valid one. */
static bool contract__take_rid(json_t *v, char rid[CONTRACT_RID_MAX + 1])
{
	if (!json_is_string(v) || !contract_valid_request_id(json_string_value(v), json_string_length(v)))
		return false;
	memcpy(rid, json_string_value(v), json_string_length(v) + 1);
	return true;
}

/* An optional field: absent and JSON null both read as absent (NULL). */
static json_t *contract__opt(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

static bool contract__one_of(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, names[i]))
			return true;
	return false;
}

static bool contract__valid_role(const char *role)
{
	return contract__one_of(role, contract__roles, UTIL_ARRAY_LEN(contract__roles));
}

/* A string value equal to lit. */
static bool contract__is(json_t *v, const char *lit)
{
	return json_is_string(v) && !strcmp(json_string_value(v), lit);
}

static bool contract__nonempty_str(json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0;
}

/* messages[i].content: a string, or a non-empty array of content parts,
 * forwarded as they are. Only the shapes every backend we front accepts pass:
 * text parts anywhere, image_url parts in user messages. *text gets the
 * string, or the first text part's text (NULL when there is none). */
static int contract__check_content(json_t *content, size_t i, bool user, const char **text,
				   struct contract_error *err)
{
	size_t k;
	json_t *part;

	*text = NULL;
	if (json_is_string(content)) {
		*text = json_string_value(content);
		return 0;
	}
	if (!json_is_array(content) || json_array_size(content) == 0) {
		contract__fail(err, "messages[%zu].content: must be a string or a non-empty array of content parts", i);
		return -1;
	}
	json_array_foreach(content, k, part) {
		if (!json_is_object(part)) {
			contract__fail(err, "messages[%zu].content[%zu]: must be an object", i, k);
			return -1;
		}
		json_t *type = json_object_get(part, "type");
		if (contract__is(type, "text")) {
			json_t *t = json_object_get(part, "text");
			if (!json_is_string(t)) {
				contract__fail(err, "messages[%zu].content[%zu].text: must be a string", i, k);
				return -1;
			}
			if (!*text)
				*text = json_string_value(t);
		} else if (contract__is(type, "image_url")) {
			if (!user) {
				contract__fail(err, "messages[%zu].content[%zu]: image_url parts are allowed only in user messages",
					       i, k);
				return -1;
			}
			json_t *img = json_object_get(part, "image_url");
			if (!json_is_object(img)) {
				contract__fail(err, "messages[%zu].content[%zu].image_url: must be an object", i, k);
				return -1;
			}
			if (!contract__nonempty_str(json_object_get(img, "url"))) {
				contract__fail(err, "messages[%zu].content[%zu].image_url.url: must be a non-empty string", i,
					       k);
				return -1;
			}
			json_t *detail = contract__opt(img, "detail");
			if (detail && (!json_is_string(detail) ||
				       !contract__one_of(json_string_value(detail), contract__image_details,
							 UTIL_ARRAY_LEN(contract__image_details)))) {
				contract__fail(err, "messages[%zu].content[%zu].image_url.detail: must be one of auto, low, high",
					       i, k);
				return -1;
			}
		} else {
			contract__fail(err, "messages[%zu].content[%zu].type: must be text or image_url", i, k);
			return -1;
		}
	}
	return 0;
}

static int contract__check_messages(struct contract_submit *out, struct contract_error *err)
{
	json_t *msgs = json_object_get(out->root, "messages");
	size_t i;
	json_t *m;

	if (!msgs) {
		contract__fail(err, "messages: required");
		return -1;
	}
	if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
		contract__fail(err, "messages: must be a non-empty array");
		return -1;
	}
	json_array_foreach(msgs, i, m) {
		if (!json_is_object(m)) {
			contract__fail(err, "messages[%zu]: must be an object", i);
			return -1;
		}
		json_t *role = json_object_get(m, "role");
		if (!json_is_string(role) || !contract__valid_role(json_string_value(role))) {
			contract__fail(err, "messages[%zu].role: must be one of system, user, assistant, tool", i);
			return -1;
		}
		bool assistant = !strcmp(json_string_value(role), "assistant");
		json_t *calls = contract__opt(m, "tool_calls");
		if (calls && (!assistant || !json_is_array(calls))) {
			contract__fail(err, "messages[%zu].tool_calls: allowed only on assistant messages, as an array",
				       i);
			return -1;
		}
		json_t *content = json_object_get(m, "content");
		/* An assistant turn that only called tools has no text (OpenAI
		 * sends content null there); it must then carry the calls. */
		bool calls_only = assistant && calls && json_array_size(calls) > 0 && (!content || json_is_null(content));
		bool user = !strcmp(json_string_value(role), "user");
		const char *text = NULL;
		if (!calls_only && contract__check_content(content, i, user, &text, err))
			return -1;
		static const char *const strs[] = { "name", "tool_call_id" };
		for (size_t k = 0; k < UTIL_ARRAY_LEN(strs); k++) {
			json_t *v = contract__opt(m, strs[k]);
			if (v && !json_is_string(v)) {
				contract__fail(err, "messages[%zu].%s: must be a string", i, strs[k]);
				return -1;
			}
		}
		if (user)
			out->last_user = text;
	}
	out->messages = msgs;
	return 0;
}

static int contract__check_memory(struct contract_submit *out, struct contract_error *err)
{
	json_t *mem = contract__opt(out->root, "memory");
	size_t i;
	json_t *f;

	if (!mem)
		return 0;
	if (!json_is_object(mem)) {
		contract__fail(err, "memory: must be an object");
		return -1;
	}
	json_t *profile = contract__opt(mem, "profile");
	if (profile && !json_is_string(profile)) {
		contract__fail(err, "memory.profile: must be a string");
		return -1;
	}
	json_t *facts = contract__opt(mem, "facts");
	if (facts && !json_is_array(facts)) {
		contract__fail(err, "memory.facts: must be an array of strings");
		return -1;
	}
	json_array_foreach(facts, i, f) {
		if (!json_is_string(f)) {
			contract__fail(err, "memory.facts[%zu]: must be a string", i);
			return -1;
		}
	}
	out->profile = profile ? json_string_value(profile) : NULL;
	out->facts = facts;
	return 0;
}

/* params.tools, params.tool_choice, params.parallel_tool_calls: the shapes
 * OpenAI's API documents, which every backend we front accepts. */
static int contract__check_tools(json_t *params, struct contract_error *err)
{
	json_t *tools = contract__opt(params, "tools");
	size_t i;
	json_t *t;

	if (tools && (!json_is_array(tools) || json_array_size(tools) == 0)) {
		contract__fail(err, "params.tools: must be a non-empty array of tools");
		return -1;
	}
	json_array_foreach(tools, i, t) {
		if (!json_is_object(t)) {
			contract__fail(err, "params.tools[%zu]: must be an object", i);
			return -1;
		}
		if (!contract__is(json_object_get(t, "type"), "function")) {
			contract__fail(err, "params.tools[%zu].type: must be \"function\"", i);
			return -1;
		}
		json_t *fn = json_object_get(t, "function");
		if (!json_is_object(fn)) {
			contract__fail(err, "params.tools[%zu].function: must be an object", i);
			return -1;
		}
		if (!contract__nonempty_str(json_object_get(fn, "name"))) {
			contract__fail(err, "params.tools[%zu].function.name: must be a non-empty string", i);
			return -1;
		}
		json_t *v = contract__opt(fn, "description");
		if (v && !json_is_string(v)) {
			contract__fail(err, "params.tools[%zu].function.description: must be a string", i);
			return -1;
		}
		v = contract__opt(fn, "parameters");
		if (v && !json_is_object(v)) {
			contract__fail(err, "params.tools[%zu].function.parameters: must be an object", i);
			return -1;
		}
	}

	json_t *choice = contract__opt(params, "tool_choice");
	if (json_is_string(choice) &&
	    !contract__one_of(json_string_value(choice), contract__tool_choices, UTIL_ARRAY_LEN(contract__tool_choices))) {
		contract__fail(err, "params.tool_choice: must be one of auto, none, required, or an object");
		return -1;
	} else if (json_is_object(choice)) {
		if (!contract__is(json_object_get(choice, "type"), "function")) {
			contract__fail(err, "params.tool_choice.type: must be \"function\"");
			return -1;
		}
		json_t *fn = json_object_get(choice, "function");
		if (!json_is_object(fn)) {
			contract__fail(err, "params.tool_choice.function: must be an object");
			return -1;
		}
		if (!contract__nonempty_str(json_object_get(fn, "name"))) {
			contract__fail(err, "params.tool_choice.function.name: must be a non-empty string");
			return -1;
		}
	} else if (choice && !json_is_string(choice)) {
		contract__fail(err, "params.tool_choice: must be one of auto, none, required, or an object");
		return -1;
	}

	json_t *v = contract__opt(params, "parallel_tool_calls");
	if (v && !json_is_boolean(v)) {
		contract__fail(err, "params.parallel_tool_calls: must be a boolean");
		return -1;
	}
	return 0;
}

/* params.response_format: text, json_object, or json_schema with its schema. */
static int contract__check_format(json_t *params, struct contract_error *err)
{
	json_t *rf = contract__opt(params, "response_format");

	if (!rf)
		return 0;
	if (!json_is_object(rf)) {
		contract__fail(err, "params.response_format: must be an object");
		return -1;
	}
	json_t *type = json_object_get(rf, "type");
	if (!json_is_string(type) ||
	    !contract__one_of(json_string_value(type), contract__formats, UTIL_ARRAY_LEN(contract__formats))) {
		contract__fail(err, "params.response_format.type: must be one of text, json_object, json_schema");
		return -1;
	}
	if (!contract__is(type, "json_schema"))
		return 0;
	json_t *js = json_object_get(rf, "json_schema");
	if (!json_is_object(js)) {
		contract__fail(err, "params.response_format.json_schema: must be an object");
		return -1;
	}
	if (!contract__nonempty_str(json_object_get(js, "name"))) {
		contract__fail(err, "params.response_format.json_schema.name: must be a non-empty string");
		return -1;
	}
	json_t *v = contract__opt(js, "schema");
	if (v && !json_is_object(v)) {
		contract__fail(err, "params.response_format.json_schema.schema: must be an object");
		return -1;
	}
	v = contract__opt(js, "strict");
	if (v && !json_is_boolean(v)) {
		contract__fail(err, "params.response_format.json_schema.strict: must be a boolean");
		return -1;
	}
	return 0;
}

/* Only the parameters the upstream request forwards are type-checked, so a
 * client learns about a wrong type here instead of from an upstream 400. */
static int contract__check_params(struct contract_submit *out, struct contract_error *err)
{
	static const char *const numbers[] = { "temperature", "top_p", "presence_penalty", "frequency_penalty" };
	json_t *params = contract__opt(out->root, "params");

	if (!params)
		return 0;
	if (!json_is_object(params)) {
		contract__fail(err, "params: must be an object");
		return -1;
	}
	for (size_t k = 0; k < UTIL_ARRAY_LEN(numbers); k++) {
		json_t *v = contract__opt(params, numbers[k]);
		if (v && !json_is_number(v)) {
			contract__fail(err, "params.%s: must be a number", numbers[k]);
			return -1;
		}
	}
	json_t *v = contract__opt(params, "max_tokens");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1)) {
		contract__fail(err, "params.max_tokens: must be a positive integer");
		return -1;
	}
	v = contract__opt(params, "seed");
	if (v && !json_is_integer(v)) {
		contract__fail(err, "params.seed: must be an integer");
		return -1;
	}
	v = contract__opt(params, "stop");
	if (v && !json_is_string(v)) {
		size_t i;
		json_t *s;
		bool ok = json_is_array(v);
		json_array_foreach(v, i, s) {
			if (!json_is_string(s))
				ok = false;
		}
		if (!ok) {
			contract__fail(err, "params.stop: must be a string or an array of strings");
			return -1;
		}
	}
	if (contract__check_tools(params, err) || contract__check_format(params, err))
		return -1;
	out->params = params;
	return 0;
}

/* resume: {"text": string, "reasoning": string?, "next_seq": integer >= 0}. */
static int contract__check_resume(struct contract_submit *out, struct contract_error *err)
{
	json_t *r = contract__opt(out->root, "resume"), *text, *reasoning, *next;

	if (!r)
		return 0;
	if (!json_is_object(r)) {
		contract__fail(err, "resume: must be an object");
		return -1;
	}
	text = contract__opt(r, "text");
	reasoning = contract__opt(r, "reasoning");
	next = json_object_get(r, "next_seq");
	if (text && !json_is_string(text)) {
		contract__fail(err, "resume.text: must be a string");
		return -1;
	}
	if (reasoning && !json_is_string(reasoning)) {
		contract__fail(err, "resume.reasoning: must be a string");
		return -1;
	}
	if (!json_is_integer(next) || json_integer_value(next) < 0 || json_integer_value(next) > 9007199254740991LL) {
		contract__fail(err, "resume.next_seq: must be an integer from 0 to 2^53-1");
		return -1;
	}
	out->resume = true;
	out->resume_text = text ? json_string_value(text) : "";
	out->resume_text_len = text ? json_string_length(text) : 0;
	out->resume_reasoning = reasoning ? json_string_value(reasoning) : "";
	out->resume_reasoning_len = reasoning ? json_string_length(reasoning) : 0;
	out->resume_next_seq = (unsigned long long)json_integer_value(next);
	return 0;
}

int contract_decode_submit(const char *body, size_t len, size_t max_bytes, struct contract_submit *out,
			   struct contract_error *err)
{
	json_error_t jerr;

	memset(out, 0, sizeof(*out));
	memset(err, 0, sizeof(*err));
	if (len > max_bytes) {
		contract__fail(err, "body: %zu bytes exceeds limit of %zu", len, max_bytes);
		return -1;
	}
	if (len == 0) {
		contract__fail(err, "body: empty");
		return -1;
	}
	/* Duplicate keys are refused: two readers could disagree on which wins. */
	out->root = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!out->root) {
		/* jerr.text may quote the body, so only the position is reported. */
		contract__fail(err, "body: invalid JSON at line %d column %d", jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(out->root)) {
		contract__fail(err, "body: must be a JSON object");
		goto fail;
	}

	json_t *rid = json_object_get(out->root, "request_id");
	if (!rid) {
		contract__fail(err, "request_id: required");
		goto fail;
	}
	if (!contract__take_rid(rid, out->request_id)) {
		contract__fail(err, "request_id: must be 1-%d characters of [A-Za-z0-9_-]", CONTRACT_RID_MAX);
		goto fail;
	}
	memcpy(err->request_id, out->request_id, sizeof(err->request_id));

	static const char *const ids[] = { "session_id", "user_id" };
	for (size_t k = 0; k < UTIL_ARRAY_LEN(ids); k++) {
		json_t *v = contract__opt(out->root, ids[k]);
		if (v && !json_is_string(v)) {
			contract__fail(err, "%s: must be a string", ids[k]);
			goto fail;
		}
		const char *s = v ? json_string_value(v) : NULL;
		if (k == 0)
			out->session_id = s;
		else
			out->user_id = s;
	}
	if (contract__check_messages(out, err) || contract__check_memory(out, err) ||
	    contract__check_params(out, err) || contract__check_resume(out, err))
		goto fail;
	return 0;

fail:
	json_decref(out->root);
	memset(out, 0, sizeof(*out));
	return -1;
}

void contract_submit_free(struct contract_submit *s)
{
	json_decref(s->root);
	memset(s, 0, sizeof(*s));
}

int contract_decode_cancel(const char *body, size_t len, char rid[CONTRACT_RID_MAX + 1])
{
	json_t *root;
	int rc = -1;

	rid[0] = '\0';
	if (len == 0 || len > CONTRACT__CANCEL_MAX_BYTES)
		return -1;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (json_is_object(root) && contract__take_rid(json_object_get(root, "request_id"), rid))
		rc = 0;
	json_decref(root);
	return rc;
}

/* The encoders below run per token: they only append to out, whose
 * allocation the caller reuses, and format numbers without stdio. */

static void contract__append_ull(struct buf *out, unsigned long long v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(out, tmp + i, sizeof(tmp) - i);
}

static void contract__append_ll(struct buf *out, long long v)
{
	if (v < 0) {
		buf_append_char(out, '-');
		/* Negating in unsigned arithmetic is defined even for LLONG_MIN. */
		contract__append_ull(out, 0ull - (unsigned long long)v);
	} else {
		contract__append_ull(out, (unsigned long long)v);
	}
}

static void contract__append_str(struct buf *out, const char *s)
{
	buf_append_json_str(out, s, strlen(s));
}

/* {"request_id":<rid>, with null for a missing id. */
static void contract__open(struct buf *out, const char *rid)
{
	buf_append_str(out, "{\"request_id\":");
	if (rid && *rid)
		contract__append_str(out, rid);
	else
		buf_append_str(out, "null");
}

static void contract__open_event(struct buf *out, const char *rid, unsigned long long seq, const char *type)
{
	contract__open(out, rid);
	buf_append_str(out, ",\"seq\":");
	contract__append_ull(out, seq);
	buf_append_str(out, ",\"type\":");
	contract__append_str(out, type);
}

static void contract__append_error(struct buf *out, enum contract_code code, const char *message)
{
	buf_append_str(out, ",\"error\":{\"code\":");
	contract__append_str(out, contract_code_name(code));
	buf_append_str(out, ",\"message\":");
	contract__append_str(out, message ? message : "");
	buf_append_char(out, '}');
}

void contract_encode_ack(struct buf *out, const char *rid, const char *instance, enum contract_code code,
			 const char *message)
{
	contract__open(out, rid);
	buf_append_str(out, code == CONTRACT_OK ? ",\"accepted\":true" : ",\"accepted\":false");
	if (instance) {
		buf_append_str(out, ",\"instance\":");
		contract__append_str(out, instance);
	}
	if (code != CONTRACT_OK)
		contract__append_error(out, code, message);
	buf_append_char(out, '}');
}

/* The one event per token: its fixed parts are copied in one go (a request
 * id never needs escaping once valid), which is most of its cost. */
void contract_encode_delta(struct buf *out, const char *rid, unsigned long long seq, enum contract_delta kind,
			   const char *delta, size_t delta_len)
{
	static const char head[] = "{\"request_id\":\"", mid[] = "\",\"seq\":";
	static const char tok[] = ",\"type\":\"token\",\"delta\":", rsn[] = ",\"type\":\"reasoning\",\"delta\":";
	const char *type = kind == CONTRACT_REASONING ? rsn : tok;
	size_t tl = kind == CONTRACT_REASONING ? sizeof(rsn) - 1 : sizeof(tok) - 1;
	size_t rl = rid ? strlen(rid) : 0;
	char num[24];
	size_t i = sizeof(num);

	if (!contract_valid_request_id(rid, rl)) {
		contract__open_event(out, rid, seq, kind == CONTRACT_REASONING ? "reasoning" : "token");
		buf_append_str(out, ",\"delta\":");
	} else {
		do {
			num[--i] = (char)('0' + seq % 10);
			seq /= 10;
		} while (seq);
		size_t nl = sizeof(num) - i;
		buf_reserve(out, sizeof(head) - 1 + rl + sizeof(mid) - 1 + nl + tl);
		char *o = out->data + out->len;
		memcpy(o, head, sizeof(head) - 1);
		o += sizeof(head) - 1;
		memcpy(o, rid, rl);
		o += rl;
		memcpy(o, mid, sizeof(mid) - 1);
		o += sizeof(mid) - 1;
		memcpy(o, num + i, nl);
		o += nl;
		memcpy(o, type, tl);
		o += tl;
		out->len = (size_t)(o - out->data);
	}
	buf_append_json_str(out, delta ? delta : "", delta ? delta_len : 0);
	buf_append_char(out, '}');
}

void contract_encode_tool_call(struct buf *out, const char *rid, unsigned long long seq,
			       const struct contract_tool_call *tc)
{
	contract__open_event(out, rid, seq, "tool_call");
	buf_append_str(out, ",\"index\":");
	contract__append_ll(out, tc->index);
	if (tc->id) {
		buf_append_str(out, ",\"id\":");
		buf_append_json_str(out, tc->id, tc->id_len);
	}
	if (tc->name) {
		buf_append_str(out, ",\"name\":");
		buf_append_json_str(out, tc->name, tc->name_len);
	}
	buf_append_str(out, ",\"arguments\":");
	buf_append_json_str(out, tc->arguments ? tc->arguments : "", tc->arguments ? tc->arguments_len : 0);
	buf_append_char(out, '}');
}

static void contract__append_route(struct buf *out, const struct contract_route *route)
{
	if (!route)
		return;
	buf_append_str(out, ",\"attempts\":");
	contract__append_ll(out, route->attempts);
	if (route->resumed) {
		buf_append_str(out, ",\"resumed\":");
		contract__append_ll(out, route->resumed);
	}
	if (route->endpoint) {
		buf_append_str(out, ",\"endpoint\":");
		contract__append_str(out, route->endpoint);
	}
}

void contract_encode_done(struct buf *out, const char *rid, unsigned long long seq, const char *finish_reason,
			  const char *model, const struct contract_usage *usage, const struct contract_route *route)
{
	contract__open_event(out, rid, seq, "done");
	buf_append_str(out, ",\"finish_reason\":");
	contract__append_str(out, finish_reason ? finish_reason : "stop");
	if (model) {
		buf_append_str(out, ",\"model\":");
		contract__append_str(out, model);
	}
	if (usage) {
		buf_append_str(out, ",\"usage\":{\"prompt_tokens\":");
		contract__append_ll(out, usage->prompt_tokens);
		buf_append_str(out, ",\"completion_tokens\":");
		contract__append_ll(out, usage->completion_tokens);
		buf_append_str(out, ",\"total_tokens\":");
		contract__append_ll(out, usage->total_tokens);
		buf_append_char(out, '}');
	}
	contract__append_route(out, route);
	buf_append_char(out, '}');
}

void contract_encode_error(struct buf *out, const char *rid, unsigned long long seq, enum contract_code code,
			   const char *message, const struct contract_route *route)
{
	contract__open_event(out, rid, seq, "error");
	contract__append_error(out, code, message);
	contract__append_route(out, route);
	buf_append_char(out, '}');
}

void contract_encode_keepalive(struct buf *out, const char *rid, unsigned long long seq)
{
	contract__open_event(out, rid, seq, "keepalive");
	buf_append_char(out, '}');
}

void contract_mark_replay(struct buf *out, size_t start)
{
	if (out->len <= start || out->data[out->len - 1] != '}')
		return;
	out->len--;
	buf_append_str(out, ",\"replay\":true}");
}

int contract_decode_replay(const char *body, size_t len, char rid[CONTRACT_RID_MAX + 1], unsigned long long *from_seq,
			   struct contract_error *err)
{
	json_t *root, *from;
	int rc = -1;

	rid[0] = '\0';
	*from_seq = 0;
	memset(err, 0, sizeof(*err));
	if (len == 0 || len > CONTRACT__CANCEL_MAX_BYTES) {
		contract__fail(err, "replay: body must be a JSON object of at most %d bytes", CONTRACT__CANCEL_MAX_BYTES);
		return -1;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root)) {
		contract__fail(err, "replay: body must be a JSON object");
	} else if (!contract__take_rid(json_object_get(root, "request_id"), rid)) {
		contract__fail(err, "request_id: must be 1-%d characters of [A-Za-z0-9_-]", CONTRACT_RID_MAX);
	} else if ((from = contract__opt(root, "from_seq")) && (!json_is_integer(from) || json_integer_value(from) < 0)) {
		memcpy(err->request_id, rid, sizeof(err->request_id));
		contract__fail(err, "from_seq: must be a non-negative integer");
	} else {
		*from_seq = from ? (unsigned long long)json_integer_value(from) : 0;
		rc = 0;
	}
	json_decref(root);
	return rc;
}

void contract_encode_replay_answer(struct buf *out, const char *rid, enum contract_code code, const char *message,
				   unsigned long long first_seq, unsigned long long next_seq)
{
	contract__open(out, rid);
	buf_append_str(out, code == CONTRACT_OK ? ",\"ok\":true" : ",\"ok\":false");
	buf_append_str(out, ",\"first_seq\":");
	contract__append_ull(out, first_seq);
	buf_append_str(out, ",\"next_seq\":");
	contract__append_ull(out, next_seq);
	if (code != CONTRACT_OK)
		contract__append_error(out, code, message);
	buf_append_char(out, '}');
}

void contract_encode_config_request(struct buf *out, const char *instance)
{
	buf_append_str(out, "{\"component\":\"dispatcher\",\"instance\":");
	contract__append_str(out, instance ? instance : "");
	buf_append_char(out, '}');
}

void contract_encode_probe_answer(struct buf *out, const char *error, const struct contract_probe_result *r,
				  size_t n)
{
	bool ok = !error;

	for (size_t i = 0; i < n && ok; i++)
		ok = r[i].ok;
	buf_append_str(out, ok ? "{\"ok\":true" : "{\"ok\":false");
	if (error) {
		buf_append_str(out, ",\"error\":");
		contract__append_str(out, error);
		n = 0;
	}
	buf_append_str(out, ",\"endpoints\":[");
	for (size_t i = 0; i < n; i++) {
		buf_append_str(out, i ? ",{\"base_url\":" : "{\"base_url\":");
		contract__append_str(out, r[i].base_url);
		buf_append_str(out, r[i].ok ? ",\"ok\":true" : ",\"ok\":false");
		buf_append_str(out, ",\"latency_ms\":");
		contract__append_ll(out, r[i].latency_ms);
		buf_append_str(out, ",\"status\":");
		contract__append_ll(out, r[i].status);
		buf_append_str(out, ",\"error\":");
		if (r[i].error)
			contract__append_str(out, r[i].error);
		else
			buf_append_str(out, "null");
		buf_append_char(out, '}');
	}
	buf_append_str(out, "]}");
}

/* ---- the client side ---- */

static void contract__append_kv(struct buf *out, const char *key, const char *value)
{
	if (!value)
		return;
	buf_append_char(out, ',');
	contract__append_str(out, key);
	buf_append_char(out, ':');
	contract__append_str(out, value);
}

/* "key":<v as compact JSON>. Client side only: not on any hot path. */
static void contract__append_value(struct buf *out, const char *key, json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s)
		util_oom(); /* the value came from jansson: only memory can fail */
	contract__append_str(out, key);
	buf_append_char(out, ':');
	buf_append_str(out, s);
	free(s);
}

void contract_encode_chat(struct buf *out, const struct contract_chat *c)
{
	contract__open(out, c->request_id);
	contract__append_kv(out, "session_id", c->session_id);
	contract__append_kv(out, "user_id", c->user_id);
	buf_append_str(out, ",\"messages\":[");
	if (c->system) {
		buf_append_str(out, "{\"role\":\"system\",\"content\":");
		contract__append_str(out, c->system);
		buf_append_str(out, "},");
	}
	buf_append_str(out, "{\"role\":\"user\",\"content\":");
	contract__append_str(out, c->message ? c->message : "");
	buf_append_str(out, "}]");
	if (c->resume) {
		buf_append_str(out, ",\"resume\":{\"text\":");
		buf_append_json_str(out, c->resume_text ? c->resume_text : "", c->resume_text_len);
		if (c->resume_reasoning_len) {
			buf_append_str(out, ",\"reasoning\":");
			buf_append_json_str(out, c->resume_reasoning, c->resume_reasoning_len);
		}
		buf_append_str(out, ",\"next_seq\":");
		contract__append_ull(out, c->resume_next_seq);
		buf_append_char(out, '}');
	}
	if (c->profile || c->nfacts) {
		buf_append_str(out, ",\"memory\":{");
		if (c->profile) {
			buf_append_str(out, "\"profile\":");
			contract__append_str(out, c->profile);
		}
		if (c->nfacts) {
			buf_append_str(out, c->profile ? ",\"facts\":[" : "\"facts\":[");
			for (size_t i = 0; i < c->nfacts; i++) {
				if (i)
					buf_append_char(out, ',');
				contract__append_str(out, c->facts[i]);
			}
			buf_append_char(out, ']');
		}
		buf_append_char(out, '}');
	}
	if (c->tools || c->response_format) {
		buf_append_str(out, ",\"params\":{");
		if (c->tools)
			contract__append_value(out, "tools", c->tools);
		if (c->tools && c->response_format)
			buf_append_char(out, ',');
		if (c->response_format)
			contract__append_value(out, "response_format", c->response_format);
		buf_append_char(out, '}');
	}
	buf_append_char(out, '}');
}

void contract_encode_cancel(struct buf *out, const char *rid)
{
	contract__open(out, rid);
	buf_append_char(out, '}');
}

void contract_encode_replay(struct buf *out, const char *rid, unsigned long long from_seq)
{
	contract__open(out, rid);
	buf_append_str(out, ",\"from_seq\":");
	contract__append_ull(out, from_seq);
	buf_append_char(out, '}');
}

static void contract__copy(char *dst, size_t n, json_t *v)
{
	snprintf(dst, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

int contract_decode_ack(const char *data, size_t len, struct contract_ack *out)
{
	json_t *root = json_loadb(data, len, 0, NULL);
	json_t *acc = json_object_get(root, "accepted");
	json_t *err = json_object_get(root, "error");

	memset(out, 0, sizeof(*out));
	if (!json_is_object(root) || !json_is_boolean(acc)) {
		json_decref(root);
		return -1;
	}
	out->accepted = json_is_true(acc);
	contract__copy(out->instance, sizeof(out->instance), json_object_get(root, "instance"));
	contract__copy(out->code, sizeof(out->code), json_object_get(err, "code"));
	contract__copy(out->message, sizeof(out->message), json_object_get(err, "message"));
	json_decref(root);
	return 0;
}

static const char *const contract__event_types[] = {
	[CONTRACT_EV_TOKEN] = "token", [CONTRACT_EV_REASONING] = "reasoning",
	[CONTRACT_EV_DONE] = "done",   [CONTRACT_EV_ERROR] = "error",
	[CONTRACT_EV_KEEPALIVE] = "keepalive",
	[CONTRACT_EV_TOOL_CALL] = "tool_call",
};

int contract_decode_event(const char *data, size_t len, struct contract_event *ev, char *err, size_t errlen)
{
	json_t *seq, *type, *rid;

	memset(ev, 0, sizeof(*ev));
	ev->root = json_loadb(data, len, 0, NULL);
	seq = json_object_get(ev->root, "seq");
	type = json_object_get(ev->root, "type");
	rid = json_object_get(ev->root, "request_id");
	if (!json_is_object(ev->root) || !json_is_integer(seq) || json_integer_value(seq) < 0 ||
	    !json_is_string(type) || !json_is_string(rid)) {
		snprintf(err, errlen, "not an event (%zu bytes): needs request_id, seq and type", len);
		goto fail;
	}
	ev->request_id = json_string_value(rid);
	ev->seq = (unsigned long long)json_integer_value(seq);
	ev->type_name = json_string_value(type);
	ev->type = CONTRACT_EV_OTHER;
	ev->replay = json_is_true(json_object_get(ev->root, "replay"));
	for (size_t i = 0; i < UTIL_ARRAY_LEN(contract__event_types); i++)
		if (!strcmp(ev->type_name, contract__event_types[i]))
			ev->type = (enum contract_event_type)i;
	if (ev->type == CONTRACT_EV_TOKEN || ev->type == CONTRACT_EV_REASONING) {
		json_t *d = json_object_get(ev->root, "delta");
		if (!json_is_string(d)) {
			snprintf(err, errlen, "%s event seq %llu has no delta", ev->type_name, ev->seq);
			goto fail;
		}
		ev->delta = json_string_value(d);
		ev->delta_len = json_string_length(d);
	} else if (ev->type == CONTRACT_EV_DONE) {
		json_t *u = json_object_get(ev->root, "usage");
		ev->finish_reason = json_string_value(json_object_get(ev->root, "finish_reason"));
		ev->model = json_string_value(json_object_get(ev->root, "model"));
		if (json_is_object(u)) {
			ev->has_usage = true;
			ev->usage.prompt_tokens = json_integer_value(json_object_get(u, "prompt_tokens"));
			ev->usage.completion_tokens = json_integer_value(json_object_get(u, "completion_tokens"));
			ev->usage.total_tokens = json_integer_value(json_object_get(u, "total_tokens"));
		}
	} else if (ev->type == CONTRACT_EV_ERROR) {
		json_t *e = json_object_get(ev->root, "error");
		ev->error_code = json_string_value(json_object_get(e, "code"));
		ev->error_message = json_string_value(json_object_get(e, "message"));
	} else if (ev->type == CONTRACT_EV_TOOL_CALL) {
		struct contract_tool_call *tc = &ev->tool_call;
		json_t *ix = json_object_get(ev->root, "index");
		json_t *id = contract__opt(ev->root, "id");
		json_t *name = contract__opt(ev->root, "name");
		json_t *args = contract__opt(ev->root, "arguments");
		if (!json_is_integer(ix) || json_integer_value(ix) < 0 || json_integer_value(ix) > INT_MAX ||
		    (id && !json_is_string(id)) || (name && !json_is_string(name)) || (args && !json_is_string(args))) {
			snprintf(err, errlen, "tool_call event seq %llu is malformed", ev->seq);
			goto fail;
		}
		tc->index = (int)json_integer_value(ix);
		tc->id = id ? json_string_value(id) : NULL;
		tc->id_len = id ? json_string_length(id) : 0;
		tc->name = name ? json_string_value(name) : NULL;
		tc->name_len = name ? json_string_length(name) : 0;
		tc->arguments = args ? json_string_value(args) : "";
		tc->arguments_len = args ? json_string_length(args) : 0;
	}
	return 0;
fail:
	contract_event_free(ev);
	return -1;
}

void contract_event_free(struct contract_event *ev)
{
	json_decref(ev->root);
	memset(ev, 0, sizeof(*ev));
}

int contract_decode_replay_answer(const char *data, size_t len, struct contract_replay_answer *out)
{
	json_t *root = json_loadb(data, len, 0, NULL);
	json_t *ok = json_object_get(root, "ok"), *first = json_object_get(root, "first_seq"),
	       *next = json_object_get(root, "next_seq");

	memset(out, 0, sizeof(*out));
	if (!json_is_object(root) || !json_is_boolean(ok)) {
		json_decref(root);
		return -1;
	}
	out->ok = json_is_true(ok);
	out->first_seq = json_is_integer(first) ? (unsigned long long)json_integer_value(first) : 0;
	out->next_seq = json_is_integer(next) ? (unsigned long long)json_integer_value(next) : 0;
	contract__copy(out->code, sizeof(out->code), json_object_get(json_object_get(root, "error"), "code"));
	json_decref(root);
	return 0;
}
