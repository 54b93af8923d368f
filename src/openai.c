/* openai: see include/openai.h.
 *
 * Chunks are parsed with JSON_ALLOW_NUL: a model may emit U+0000 inside a
 * content delta, and without the flag jansson rejects the whole chunk, which
 * would turn one odd token into a failed stream. Lengths therefore come from
 * json_string_length, never strlen. Every field is looked up with type checks
 * so that a provider's surprise (a number where a string was, tool_call
 * deltas, extension objects) costs at most that field. */
#include "openai.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *const openai__params[] = {
	"temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty",
};

void openai_decoder_init(struct openai_decoder *d)
{
	d->last = NULL;
}

void openai_decoder_free(struct openai_decoder *d)
{
	json_decref(d->last);
	d->last = NULL;
}

static bool openai__is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A non-empty string's value and length, or NULL. */
static const char *openai__str(json_t *obj, const char *key, size_t *len)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || json_string_length(v) == 0)
		return NULL;
	if (len)
		*len = json_string_length(v);
	return json_string_value(v);
}

/* A token count: a non-negative integer (or a float holding one, as some
 * proxies send), else -1. */
static long long openai__count(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		return json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
	if (json_is_real(v)) {
		double x = json_real_value(v);
		if (x >= 0 && x < 9e15 && x == (double)(long long)x)
			return (long long)x;
	}
	return -1;
}

static bool openai__usage(json_t *u, struct openai_usage *out)
{
	long long p, c, t;

	if (!json_is_object(u))
		return false;
	p = openai__count(u, "prompt_tokens");
	c = openai__count(u, "completion_tokens");
	t = openai__count(u, "total_tokens");
	if (p < 0 && c < 0 && t < 0)
		return false;
	out->prompt_tokens = p < 0 ? 0 : p;
	out->completion_tokens = c < 0 ? 0 : c;
	if (t < 0) {
		/* The sum, saturated: the counts come from the peer. */
		long long room = LLONG_MAX - out->completion_tokens;
		t = out->prompt_tokens > room ? LLONG_MAX : out->prompt_tokens + out->completion_tokens;
	}
	out->total_tokens = t;
	return true;
}

static void openai__choice(json_t *choices, struct openai_chunk *out)
{
	json_t *c0, *delta;

	if (!json_is_array(choices) || json_array_size(choices) == 0)
		return;
	c0 = json_array_get(choices, 0);
	if (!json_is_object(c0))
		return;
	out->finish_reason = openai__str(c0, "finish_reason", NULL);
	delta = json_object_get(c0, "delta");
	if (!json_is_object(delta))
		return;
	out->content = openai__str(delta, "content", &out->content_len);
	out->reasoning = openai__str(delta, "reasoning_content", &out->reasoning_len);
	if (!out->reasoning)
		out->reasoning = openai__str(delta, "reasoning", &out->reasoning_len);
}

static void openai__error(json_t *root, struct openai_chunk *out)
{
	json_t *e = json_object_get(root, "error");

	if (json_is_object(e)) {
		out->is_error = true;
		out->error_message = openai__str(e, "message", NULL);
	} else if (json_is_string(e)) {
		out->is_error = true;
		out->error_message = openai__str(root, "error", NULL);
	} else if (json_is_string(json_object_get(root, "object")) &&
		   !strcmp(json_string_value(json_object_get(root, "object")), "error")) {
		/* Older vLLM streams its ErrorResponse bare. */
		out->is_error = true;
		out->error_message = openai__str(root, "message", NULL);
	}
	if (out->is_error && !out->error_message)
		out->error_message = "upstream error without a message";
}

int openai_decode(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out,
		  char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	size_t a = 0, b = len;

	memset(out, 0, sizeof(*out));
	json_decref(d->last);
	d->last = NULL;

	while (a < b && openai__is_space(data[a]))
		a++;
	while (b > a && openai__is_space(data[b - 1]))
		b--;
	if (b - a == 6 && !memcmp(data + a, "[DONE]", 6)) {
		out->done = true;
		return 0;
	}
	/* An empty payload ("data:" alone, a keep-alive some proxies send)
	 * carries nothing and is not worth failing a stream over. */
	if (a == b)
		return 0;
	root = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
	if (!root) {
		/* jerr.text may quote the payload; give only the position. */
		if (err && errlen)
			snprintf(err, errlen, "chunk is not valid JSON (line %d, column %d)", jerr.line,
				 jerr.column);
		return -1;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		if (err && errlen)
			snprintf(err, errlen, "chunk is JSON but not an object");
		return -1;
	}
	d->last = root;

	out->model = openai__str(root, "model", NULL);
	openai__choice(json_object_get(root, "choices"), out);
	out->has_usage = openai__usage(json_object_get(root, "usage"), &out->usage);
	if (!out->has_usage) {
		json_t *xg = json_object_get(root, "x_groq");
		if (json_is_object(xg))
			out->has_usage = openai__usage(json_object_get(xg, "usage"), &out->usage);
	}
	openai__error(root, out);
	return 0;
}

char *openai_build_request(const char *model, json_t *messages, json_t *params)
{
	json_t *root = json_object();
	json_t *opts = json_object();
	char *s;

	json_object_set_new(root, "model", json_string(model));
	json_object_set_new(root, "messages", messages ? json_incref(messages) : json_array());
	json_object_set_new(root, "stream", json_true());
	json_object_set_new(opts, "include_usage", json_true());
	json_object_set_new(root, "stream_options", opts);
	if (json_is_object(params)) {
		for (size_t i = 0; i < UTIL_ARRAY_LEN(openai__params); i++) {
			json_t *v = json_object_get(params, openai__params[i]);
			if (v && !json_is_null(v))
				json_object_set(root, openai__params[i], v);
		}
	}
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	/* json_dumps fails only when memory does (every value was built by
	 * jansson itself), and out of memory is fatal here. */
	if (!s)
		s = xstrdup("");
	return s;
}

/* Appends s[0..n) to out as one line of text: control characters and runs
 * of white space become one space, invalid UTF-8 becomes '?', and nothing
 * is cut inside a character. Returns the new length. */
static size_t openai__clean(const char *s, size_t n, char *out, size_t max)
{
	size_t o = 0, i = 0;
	bool space = true; /* swallows leading white space */

	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t sl;

		if (c < 0x20 || c == ' ' || c == 0x7f) {
			i++;
			if (!space && o < max) {
				out[o++] = ' ';
				space = true;
			}
			continue;
		}
		space = false;
		sl = util_utf8_seqlen(s + i, n - i);
		if (c >= 0x80 && sl == 1) {
			if (o + 1 > max)
				break;
			out[o++] = '?';
			i++;
			continue;
		}
		if (o + sl > max)
			break;
		memcpy(out + o, s + i, sl);
		o += sl;
		i += sl;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	return o;
}

void openai_error_message(const char *body, size_t len, char *out, size_t outlen)
{
	json_t *root, *e, *v = NULL;
	const char *msg = body;
	size_t mlen = len;

	if (outlen == 0)
		return;
	root = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
	if (json_is_object(root)) {
		e = json_object_get(root, "error");
		if (json_is_object(e))
			v = json_object_get(e, "message");
		if (!json_is_string(v) && json_is_string(e))
			v = e;
		if (!json_is_string(v))
			v = json_object_get(root, "message");
		if (!json_is_string(v)) {
			/* FastAPI: "detail" is a string, or a list of {msg}. */
			v = json_object_get(root, "detail");
			if (json_is_array(v) && json_is_object(json_array_get(v, 0)))
				v = json_object_get(json_array_get(v, 0), "msg");
		}
		if (json_is_string(v) && json_string_length(v) > 0) {
			msg = json_string_value(v);
			mlen = json_string_length(v);
		}
	}
	out[openai__clean(msg, mlen, out, outlen - 1)] = '\0';
	json_decref(root);
}
