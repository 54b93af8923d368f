/* openai: see include/openai.h.
 *
 * Chunks are parsed with JSON_ALLOW_NUL: a model may emit U+0000 inside a
 * content delta, and without the flag jansson rejects the whole chunk, which
 * would turn one odd token into a failed stream. Lengths therefore come from
 * json_string_length, never strlen. Every field is looked up with type checks
 * so that a provider's surprise (a number where a string was, a tool-call
 * entry that is not an object, extension objects) costs at most that field. */
#include "openai.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forwarded as they are; contract_decode_submit checked their shapes. */
static const char *const openai__params[] = {
	"temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty",
	"tools", "tool_choice", "parallel_tool_calls", "response_format",
};

void openai_decoder_init(struct openai_decoder *d)
{
	d->last = NULL;
	buf_init(&d->strs);
	d->calls = NULL;
	d->calls_cap = 0;
	d->fast = d->slow = d->same = 0;
	buf_init(&d->shape);
	d->shape_pre = d->shape_suf = 0;
	d->shape_model = false;
}

void openai_decoder_free(struct openai_decoder *d)
{
	json_decref(d->last);
	d->last = NULL;
	buf_free(&d->strs);
	buf_free(&d->shape);
	d->shape_pre = 0;
	free(d->calls);
	d->calls = NULL;
	d->calls_cap = 0;
}

/* Room for n tool-call pieces. Grows rarely: the array is kept for the
 * decoder's life, so a stream of tool-call chunks allocates once. */
static void openai__calls_reserve(struct openai_decoder *d, size_t n)
{
	if (n <= d->calls_cap)
		return;
	size_t cap = d->calls_cap ? d->calls_cap : OPENAI_FAST_TOOL_CALLS;
	while (cap < n)
		cap *= 2;
	d->calls = xrealloc(d->calls, cap * sizeof(*d->calls));
	d->calls_cap = cap;
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

static bool openai__usage(json_t *u, struct contract_usage *out)
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

/* delta.tool_calls as openai.h describes it. -1 past OPENAI_MAX_TOOL_CALLS. */
static int openai__tool_calls(struct openai_decoder *d, json_t *delta, struct openai_chunk *out)
{
	json_t *calls = json_object_get(delta, "tool_calls");
	size_t i, n = 0;
	json_t *e;

	if (!json_is_array(calls))
		return 0;
	json_array_foreach(calls, i, e) {
		struct contract_tool_call tc = { 0 };
		json_t *ix, *fn;

		if (!json_is_object(e))
			continue;
		ix = json_object_get(e, "index");
		if (json_is_integer(ix) && json_integer_value(ix) >= 0 && json_integer_value(ix) <= INT_MAX)
			tc.index = (int)json_integer_value(ix);
		else
			tc.index = i <= INT_MAX ? (int)i : INT_MAX;
		tc.id = openai__str(e, "id", &tc.id_len);
		fn = json_object_get(e, "function");
		if (json_is_object(fn)) {
			tc.name = openai__str(fn, "name", &tc.name_len);
			tc.arguments = openai__str(fn, "arguments", &tc.arguments_len);
		}
		if (!tc.id && !tc.name && !tc.arguments)
			continue;
		if (n == OPENAI_MAX_TOOL_CALLS)
			return -1;
		openai__calls_reserve(d, n + 1);
		d->calls[n++] = tc;
	}
	out->tool_calls = n ? d->calls : NULL;
	out->ntool_calls = n;
	return 0;
}

static int openai__choice(struct openai_decoder *d, json_t *choices, struct openai_chunk *out)
{
	json_t *c0, *delta;

	if (!json_is_array(choices) || json_array_size(choices) == 0)
		return 0;
	c0 = json_array_get(choices, 0);
	if (!json_is_object(c0))
		return 0;
	out->finish_reason = openai__str(c0, "finish_reason", NULL);
	delta = json_object_get(c0, "delta");
	if (!json_is_object(delta))
		return 0;
	out->content = openai__str(delta, "content", &out->content_len);
	out->reasoning = openai__str(delta, "reasoning_content", &out->reasoning_len);
	if (!out->reasoning)
		out->reasoning = openai__str(delta, "reasoning", &out->reasoning_len);
	return openai__tool_calls(d, delta, out);
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
		   json_string_length(json_object_get(root, "object")) == 5 &&
		   !memcmp(json_string_value(json_object_get(root, "object")), "error", 5)) {
		/* Older vLLM streams its ErrorResponse bare. */
		out->is_error = true;
		out->error_message = openai__str(root, "message", NULL);
	}
	if (out->is_error && !out->error_message)
		out->error_message = "upstream error without a message";
}

/* [DONE], or an empty payload: 1 (out filled), else 0. */
static int openai__trivial(const char *data, size_t len, struct openai_chunk *out)
{
	size_t a = 0, b = len;

	while (a < b && openai__is_space(data[a]))
		a++;
	while (b > a && openai__is_space(data[b - 1]))
		b--;
	if (b - a == 6 && !memcmp(data + a, "[DONE]", 6)) {
		out->done = true;
		return 1;
	}
	/* An empty payload ("data:" alone, a keep-alive some proxies send)
	 * carries nothing and is not worth failing a stream over. */
	return a == b;
}

int openai_decode_json(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out,
		       char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;

	memset(out, 0, sizeof(*out));
	json_decref(d->last);
	d->last = NULL;
	if (openai__trivial(data, len, out))
		return 0;
	d->slow++;
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
	if (openai__choice(d, json_object_get(root, "choices"), out) < 0) {
		memset(out, 0, sizeof(*out));
		if (err && errlen)
			snprintf(err, errlen, "chunk has more than %d tool calls", OPENAI_MAX_TOOL_CALLS);
		return -1;
	}
	out->has_usage = openai__usage(json_object_get(root, "usage"), &out->usage);
	if (!out->has_usage) {
		json_t *xg = json_object_get(root, "x_groq");
		if (json_is_object(xg))
			out->has_usage = openai__usage(json_object_get(xg, "usage"), &out->usage);
	}
	openai__error(root, out);
	return 0;
}

/* ---- The fast path ----
 *
 * A strict JSON scanner that walks the whole chunk once, validating it as
 * jansson would, and copies out only the fields the dispatcher relays. It
 * gives up ("declines") on anything whose jansson result it does not mirror
 * exactly: real numbers, very long integers, deep nesting, a NUL in a key,
 * an unpaired surrogate, a repeated key among those it reads, more than
 * OPENAI_FAST_TOOL_CALLS tool-call entries. Declining is always safe: the
 * caller then asks jansson. Tool-call chunks take this path too: arguments
 * stream about as fast as text, one piece per chunk. */

enum fp_ctx {
	FP_SKIP,
	FP_ROOT,
	FP_CHOICES,
	FP_CHOICE0,
	FP_DELTA,
	FP_USAGE,
	FP_XGROQ,
	FP_ERROR,
	FP_TOOLS, /* delta.tool_calls */
	FP_TOOL,  /* one of its entries */
	FP_FUNC,  /* an entry's "function" */
	FP_NCTX
};

enum fp_field {
	FPF_MODEL,
	FPF_FINISH,
	FPF_CONTENT,
	FPF_REASONING_CONTENT,
	FPF_REASONING,
	FPF_ERROR_STR,
	FPF_ERROR_MSG,
	FPF_OBJECT,
	FPF_MESSAGE,
	FPF_COUNT,
	/* Strings of the tool-call entry being read: stored in its slot. */
	FPF_TOOL_ID = FPF_COUNT,
	FPF_TOOL_NAME,
	FPF_TOOL_ARGS,
};

/* One tool-call entry that is an object: offsets into strs (-1: absent or
 * not a string), its "index" (-1: absent or not in 0..INT_MAX) and its
 * position in the array. */
struct fp_tool {
	long off[3];
	size_t len[3];
	long long index;
	int pos;
};

#define FP_MAX_DEPTH 32

struct fp {
	const unsigned char *p, *end;
	struct buf *strs;
	int depth;
	/* Offsets into strs (-1: absent or not a string) and lengths. */
	long off[FPF_COUNT];
	size_t len[FPF_COUNT];
	long long counts[2][3]; /* usage, x_groq.usage: prompt, completion, total; -1 absent */
	bool usage_obj[2];      /* the usage object was there */
	bool is_obj[FP_NCTX];   /* a value of that context was an object */
	int tool_pos;           /* position in tool_calls of the element being read */
	int ntools;             /* slots used in tools */
	const unsigned char *content_at, *content_end; /* content's raw string: opening quote, past closing */
	/* Last, and not cleared per chunk: a slot is set up when used, so text
	 * chunks pay nothing for it. */
	struct fp_tool tools[OPENAI_FAST_TOOL_CALLS];
};

static bool fp__ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline __attribute__((always_inline)) void fp__skip_ws(struct fp *f)
{
	while (f->p < f->end && fp__ws(*f->p))
		f->p++;
}

static int fp__hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v |= (c | 0x20) - 'a' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void fp__put_utf8(struct buf *b, unsigned cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(b, u, n);
}

/* Byte classes inside a JSON string: 0 copies as is; 1 ends a run (quote,
 * backslash, control byte); 2 starts a UTF-8 sequence to validate. */
static const unsigned char fp__class[256] = {
	[0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 2,
};

/* A string at f->p (on the opening quote). With dst, its decoded bytes are
 * appended there (plus a NUL) and *n gets their count. key: a NUL decoded
 * inside is a decline (jansson refuses NUL in keys). 0, or -1 to decline. */
static int fp__string(struct fp *f, struct buf *dst, size_t *n, bool key)
{
	const unsigned char *p = f->p + 1;
	size_t start = dst ? dst->len : 0;

	for (;;) {
		const unsigned char *run = p;
		while (p < f->end && !fp__class[*p])
			p++;
		if (dst && p > run)
			buf_append(dst, run, (size_t)(p - run));
		if (p >= f->end)
			return -1;
		unsigned char c = *p;
		if (c == '"')
			break;
		if (c < 0x20)
			return -1;
		if (c >= 0x80) {
			size_t sl = util_utf8_seqlen((const char *)p, (size_t)(f->end - p));
			if (sl == 1)
				return -1; /* invalid UTF-8: jansson rejects it */
			if (dst)
				buf_append(dst, p, sl);
			p += sl;
			continue;
		}
		/* A backslash escape. */
		if (f->end - p < 2)
			return -1;
		char e = (char)p[1];
		static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
		const char *hit = strchr(from, e);
		if (e && hit) {
			if (dst)
				buf_append_char(dst, to[hit - from]);
			p += 2;
			continue;
		}
		if (e != 'u' || f->end - p < 6)
			return -1;
		unsigned cp, lo;
		if (fp__hex4(p + 2, &cp) < 0)
			return -1;
		p += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return -1;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (f->end - p < 6 || p[0] != '\\' || p[1] != 'u' || fp__hex4(p + 2, &lo) < 0 || lo < 0xdc00 ||
			    lo > 0xdfff)
				return -1;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			p += 6;
		}
		if (cp == 0 && key)
			return -1;
		if (dst)
			fp__put_utf8(dst, cp);
	}
	f->p = p + 1;
	if (dst) {
		*n = dst->len - start;
		buf_append_char(dst, '\0');
	}
	return 0;
}

/* A number; *ival gets an integer's value. Reals decline (see above). */
static int fp__number(struct fp *f, long long *ival)
{
	const unsigned char *p = f->p;
	bool neg = false;
	long long v = 0;
	int digits = 0;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (p >= f->end || *p < '0' || *p > '9')
		return -1;
	if (*p == '0' && p + 1 < f->end && p[1] >= '0' && p[1] <= '9')
		return -1; /* leading zero: invalid JSON */
	while (p < f->end && *p >= '0' && *p <= '9') {
		if (++digits > 18)
			return -1;
		v = v * 10 + (*p - '0');
		p++;
	}
	if (p < f->end && (*p == '.' || *p == 'e' || *p == 'E'))
		return -1;
	f->p = p;
	*ival = neg ? -v : v;
	return 0;
}

static int fp__value(struct fp *f, enum fp_ctx ctx, int field, int count);

/* Which field or child context a key (raw bytes, no escapes) selects in ctx;
 * bit is its "seen" bit. One small table per context, so a key is compared
 * with at most a handful of names, length first. */
struct fp_route {
	const char *key;
	size_t len;
	int field;
	enum fp_ctx child;
	int count;
};

#define R(key, fl, ch, cn) { key, sizeof(key) - 1, fl, ch, cn }
static const struct fp_route fp__root[] = {
	R("model", FPF_MODEL, FP_SKIP, -1),   R("choices", -1, FP_CHOICES, -1),
	R("usage", -1, FP_USAGE, 0),          R("x_groq", -1, FP_XGROQ, -1),
	R("error", FPF_ERROR_STR, FP_ERROR, -1), R("object", FPF_OBJECT, FP_SKIP, -1),
	R("message", FPF_MESSAGE, FP_SKIP, -1),
};
static const struct fp_route fp__choice0[] = {
	R("finish_reason", FPF_FINISH, FP_SKIP, -1),
	R("delta", -1, FP_DELTA, -1),
};
static const struct fp_route fp__delta[] = {
	R("content", FPF_CONTENT, FP_SKIP, -1),
	R("reasoning_content", FPF_REASONING_CONTENT, FP_SKIP, -1),
	R("reasoning", FPF_REASONING, FP_SKIP, -1),
	R("tool_calls", -1, FP_TOOLS, -1),
};
/* "index" is read as a number, as the usage counts are (count 0). */
static const struct fp_route fp__tool[] = {
	R("index", -1, FP_SKIP, 0),
	R("id", FPF_TOOL_ID, FP_SKIP, -1),
	R("function", -1, FP_FUNC, -1),
};
static const struct fp_route fp__func[] = {
	R("name", FPF_TOOL_NAME, FP_SKIP, -1),
	R("arguments", FPF_TOOL_ARGS, FP_SKIP, -1),
};
static const struct fp_route fp__usage[] = {
	R("prompt_tokens", -1, FP_SKIP, 0),
	R("completion_tokens", -1, FP_SKIP, 1),
	R("total_tokens", -1, FP_SKIP, 2),
};
static const struct fp_route fp__xgroq[] = { R("usage", -1, FP_USAGE, 1) };
static const struct fp_route fp__error[] = { R("message", FPF_ERROR_MSG, FP_SKIP, -1) };
#undef R

static const struct {
	const struct fp_route *r;
	size_t n;
} fp__routes[FP_NCTX] = {
	[FP_ROOT] = { fp__root, UTIL_ARRAY_LEN(fp__root) },
	[FP_CHOICE0] = { fp__choice0, UTIL_ARRAY_LEN(fp__choice0) },
	[FP_DELTA] = { fp__delta, UTIL_ARRAY_LEN(fp__delta) },
	[FP_USAGE] = { fp__usage, UTIL_ARRAY_LEN(fp__usage) },
	[FP_XGROQ] = { fp__xgroq, UTIL_ARRAY_LEN(fp__xgroq) },
	[FP_ERROR] = { fp__error, UTIL_ARRAY_LEN(fp__error) },
	[FP_TOOL] = { fp__tool, UTIL_ARRAY_LEN(fp__tool) },
	[FP_FUNC] = { fp__func, UTIL_ARRAY_LEN(fp__func) },
};

static const struct fp_route *fp__route(enum fp_ctx ctx, const unsigned char *k, size_t klen, int *bit)
{
	const struct fp_route *r = fp__routes[ctx].r;

	for (size_t i = 0; i < fp__routes[ctx].n; i++) {
		if (r[i].len == klen && r[i].key[0] == k[0] && !memcmp(r[i].key, k, klen)) {
			*bit = (int)i;
			return &r[i];
		}
	}
	return NULL;
}

/* After a member or element: 1 past a ',', 0 past the close, -1 on
 * anything else. */
static inline int fp__next(struct fp *f, char close)
{
	fp__skip_ws(f);
	if (f->p >= f->end)
		return -1;
	if (*f->p == ',') {
		f->p++;
		return 1;
	}
	if (*f->p == (unsigned char)close) {
		f->p++;
		return 0;
	}
	return -1;
}

/* An object; count is the usage slot when ctx is FP_USAGE. */
static int fp__object(struct fp *f, enum fp_ctx ctx, int count)
{
	uint64_t seen = 0;

	f->p++;
	fp__skip_ws(f);
	if (f->p < f->end && *f->p == '}') {
		f->p++;
		return 0;
	}
	for (;;) {
		int field = -1, bit = -1, cnt = -1;
		enum fp_ctx child = FP_SKIP;

		fp__skip_ws(f);
		if (f->p >= f->end || *f->p != '"')
			return -1;
		const unsigned char *k = f->p + 1, *q = k;
		while (q < f->end && !fp__class[*q])
			q++;
		if (q < f->end && *q == '"') {
			/* The common case: a plain ASCII key, matched in place. */
			const struct fp_route *r;
			if (ctx != FP_SKIP && q > k && (r = fp__route(ctx, k, (size_t)(q - k), &bit))) {
				field = r->field;
				child = r->child;
				cnt = r->count;
			}
			f->p = q + 1;
		} else {
			if (fp__string(f, NULL, NULL, true) < 0)
				return -1;
			/* An escaped key could still spell one of ours. */
			if (ctx != FP_SKIP && memchr(k, '\\', (size_t)(f->p - 1 - k)))
				return -1;
		}
		if (bit >= 0) {
			if (seen & (1ull << bit))
				return -1; /* jansson keeps the last; do not guess */
			seen |= 1ull << bit;
		}
		fp__skip_ws(f);
		if (f->p >= f->end || *f->p != ':')
			return -1;
		f->p++;
		fp__skip_ws(f);
		if ((ctx == FP_USAGE || ctx == FP_TOOL) && cnt >= 0) {
			/* A count or a tool call's index: an integer (negative:
			 * absent); reals decline. */
			if (f->p < f->end && (*f->p == '-' || (*f->p >= '0' && *f->p <= '9'))) {
				long long v;
				if (fp__number(f, &v) < 0)
					return -1;
				if (ctx == FP_USAGE)
					f->counts[count][cnt] = v >= 0 ? v : -1;
				else
					f->tools[f->ntools - 1].index = v >= 0 && v <= INT_MAX ? v : -1;
			} else if (fp__value(f, FP_SKIP, -1, -1) < 0) {
				return -1;
			}
		} else if (fp__value(f, child, field, cnt) < 0) {
			return -1;
		}
		int more = fp__next(f, '}');
		if (more <= 0)
			return more;
	}
}

/* An array whose first element is read in context first, the others in
 * rest. */
static int fp__array(struct fp *f, enum fp_ctx first, enum fp_ctx rest)
{
	f->p++;
	fp__skip_ws(f);
	if (f->p < f->end && *f->p == ']') {
		f->p++;
		return 0;
	}
	for (int i = 0;; i++) {
		if (rest == FP_TOOL)
			f->tool_pos = i;
		if (fp__value(f, i == 0 ? first : rest, -1, -1) < 0)
			return -1;
		int more = fp__next(f, ']');
		if (more <= 0)
			return more;
		fp__skip_ws(f);
	}
}

static int fp__literal(struct fp *f, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(f->end - f->p) < n || memcmp(f->p, lit, n))
		return -1;
	f->p += n;
	return 0;
}

static int fp__decode(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out);
static void openai__shape_keep(struct openai_decoder *d, const char *data, size_t len, const struct fp *f,
			       const struct openai_chunk *out);

/* One value. ctx says what it is to us when it is an object (or, for
 * FP_CHOICE0, an array whose first element is the choice); field, when it is
 * a string we keep. */
static int fp__value(struct fp *f, enum fp_ctx ctx, int field, int count)
{
	int rc;

	if (f->p >= f->end)
		return -1;
	if (++f->depth > FP_MAX_DEPTH)
		return -1;
	switch (*f->p) {
	case '{':
		if (ctx == FP_CHOICES || ctx == FP_TOOLS) {
			rc = fp__object(f, FP_SKIP, -1); /* both count only as arrays */
			break;
		}
		if (ctx == FP_TOOL) {
			if (f->ntools == OPENAI_FAST_TOOL_CALLS) {
				rc = -1; /* many calls in one chunk: jansson reads any count */
				break;
			}
			struct fp_tool *t = &f->tools[f->ntools++];
			t->off[0] = t->off[1] = t->off[2] = -1;
			t->len[0] = t->len[1] = t->len[2] = 0;
			t->index = -1;
			t->pos = f->tool_pos;
		}
		f->is_obj[ctx] = true;
		if (ctx == FP_USAGE)
			f->usage_obj[count] = true;
		rc = fp__object(f, ctx, count);
		break;
	case '[':
		/* Only choices[0] matters, and only if it is an object; every
		 * element of tool_calls does. */
		if (ctx == FP_CHOICES)
			rc = fp__array(f, FP_CHOICE0, FP_SKIP);
		else if (ctx == FP_TOOLS)
			rc = fp__array(f, FP_TOOL, FP_TOOL);
		else
			rc = fp__array(f, FP_SKIP, FP_SKIP);
		break;
	case '"':
		if (field >= FPF_TOOL_ID) {
			struct fp_tool *t = &f->tools[f->ntools - 1];
			t->off[field - FPF_TOOL_ID] = (long)f->strs->len;
			rc = fp__string(f, f->strs, &t->len[field - FPF_TOOL_ID], false);
		} else if (field >= 0) {
			size_t n;
			if (field == FPF_CONTENT)
				f->content_at = f->p;
			f->off[field] = (long)f->strs->len;
			rc = fp__string(f, f->strs, &n, false);
			f->len[field] = n;
			if (field == FPF_CONTENT)
				f->content_end = f->p;
		} else {
			rc = fp__string(f, NULL, NULL, false);
		}
		break;
	case 't':
		rc = fp__literal(f, "true");
		break;
	case 'f':
		rc = fp__literal(f, "false");
		break;
	case 'n':
		rc = fp__literal(f, "null");
		break;
	default: {
		long long v;
		rc = fp__number(f, &v);
	}
	}
	f->depth--;
	return rc;
}

/* Takes root's reference. json_dumps fails only when memory does (every
 * value was built by jansson itself), and out of memory is fatal. */
static char *openai__dump(json_t *root)
{
	char *s = json_dumps(root, JSON_COMPACT);

	json_decref(root);
	if (!s)
		util_oom();
	return s;
}

/* v as compact JSON text, as json_dumps(v, JSON_COMPACT) writes it (keys in
 * insertion order) but written straight into b: the request body is built
 * once per request, and jansson's dump (a callback per piece, a tree for the
 * body around the messages) cost about as much as reading the submit. The
 * one difference, \u escapes of control characters in lower-case hex, means
 * the same to any JSON reader. Reals go through jansson, for its format. */
static void openai__dump_into(struct buf *b, json_t *v)
{
	const char *key;
	json_t *x;
	size_t i;
	bool first = true;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		buf_append_char(b, '{');
		json_object_foreach(v, key, x) {
			if (!first)
				buf_append_char(b, ',');
			first = false;
			buf_append_json_str(b, key, strlen(key));
			buf_append_char(b, ':');
			openai__dump_into(b, x);
		}
		buf_append_char(b, '}');
		break;
	case JSON_ARRAY:
		buf_append_char(b, '[');
		json_array_foreach(v, i, x) {
			if (i)
				buf_append_char(b, ',');
			openai__dump_into(b, x);
		}
		buf_append_char(b, ']');
		break;
	case JSON_STRING:
		buf_append_json_str(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER: {
		char n[24];
		snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		buf_append_str(b, n);
		break;
	}
	case JSON_REAL: {
		char *r = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!r)
			util_oom();
		buf_append_str(b, r);
		free(r);
		break;
	}
	case JSON_TRUE:
		buf_append_str(b, "true");
		break;
	case JSON_FALSE:
		buf_append_str(b, "false");
		break;
	case JSON_NULL:
		buf_append_str(b, "null");
		break;
	}
}

char *openai_build_request(const char *model, json_t *messages, json_t *params)
{
	struct buf b;

	buf_init(&b);
	buf_reserve(&b, 1024);
	buf_append_str(&b, "{\"model\":");
	buf_append_json_str(&b, model, strlen(model));
	buf_append_str(&b, ",\"messages\":");
	if (messages)
		openai__dump_into(&b, messages);
	else
		buf_append_str(&b, "[]");
	buf_append_str(&b, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	if (json_is_object(params)) {
		for (size_t i = 0; i < UTIL_ARRAY_LEN(openai__params); i++) {
			json_t *v = json_object_get(params, openai__params[i]);
			if (v && !json_is_null(v)) {
				buf_append_char(&b, ',');
				buf_append_json_str(&b, openai__params[i], strlen(openai__params[i]));
				buf_append_char(&b, ':');
				openai__dump_into(&b, v);
			}
		}
	}
	buf_append_char(&b, '}');
	return b.data;
}

char *openai_build_probe(const char *model)
{
	return openai__dump(json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", model, "messages", "role", "user",
				      "content", "ping", "max_tokens", 1, "stream", 0));
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

/* The slots' pieces, as openai__tool_calls gives them. */
static void fp__tool_calls(struct openai_decoder *d, const struct fp *f, struct openai_chunk *out)
{
	size_t n = 0;

	openai__calls_reserve(d, (size_t)f->ntools);
	for (int i = 0; i < f->ntools; i++) {
		const struct fp_tool *t = &f->tools[i];
		struct contract_tool_call *tc = &d->calls[n];
		const char *s[3];

		for (int k = 0; k < 3; k++)
			s[k] = t->off[k] >= 0 && t->len[k] ? d->strs.data + t->off[k] : NULL;
		if (!s[0] && !s[1] && !s[2])
			continue;
		tc->index = t->index >= 0 ? (int)t->index : t->pos;
		tc->id = s[0];
		tc->id_len = s[0] ? t->len[0] : 0;
		tc->name = s[1];
		tc->name_len = s[1] ? t->len[1] : 0;
		tc->arguments = s[2];
		tc->arguments_len = s[2] ? t->len[2] : 0;
		n++;
	}
	out->tool_calls = n ? d->calls : NULL;
	out->ntool_calls = n;
}

/* The fast path's answer, in openai__choice/openai__usage/openai__error's
 * terms. 0, or -1 to decline (out untouched but for zeroes). */
static int fp__decode(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out)
{
	struct fp f;

	memset(&f, 0, offsetof(struct fp, tools));
	f.p = (const unsigned char *)data;
	f.end = f.p + len;
	f.strs = &d->strs;
	buf_reset(&d->strs);
	for (int i = 0; i < FPF_COUNT; i++)
		f.off[i] = -1;
	memset(f.counts, 0xff, sizeof(f.counts)); /* -1 everywhere */
	fp__skip_ws(&f);
	if (f.p >= f.end || *f.p != '{')
		return -1; /* not an object: jansson words the error */
	f.is_obj[FP_ROOT] = true;
	if (fp__object(&f, FP_ROOT, -1) < 0)
		return -1;
	fp__skip_ws(&f);
	if (f.p != f.end)
		return -1;

	/* Strings are NUL-terminated in strs; "" counts as absent. */
#define FP_STR(i) (f.off[i] >= 0 && f.len[i] ? d->strs.data + f.off[i] : NULL)
	out->model = FP_STR(FPF_MODEL);
	if (f.is_obj[FP_CHOICE0]) {
		out->finish_reason = FP_STR(FPF_FINISH);
		if (f.is_obj[FP_DELTA]) {
			out->content = FP_STR(FPF_CONTENT);
			out->content_len = out->content ? f.len[FPF_CONTENT] : 0;
			out->reasoning = FP_STR(FPF_REASONING_CONTENT);
			out->reasoning_len = out->reasoning ? f.len[FPF_REASONING_CONTENT] : 0;
			if (!out->reasoning) {
				out->reasoning = FP_STR(FPF_REASONING);
				out->reasoning_len = out->reasoning ? f.len[FPF_REASONING] : 0;
			}
		}
	}
	if (f.ntools)
		fp__tool_calls(d, &f, out);
	for (int u = 0; u < 2 && !out->has_usage; u++) {
		long long p = f.counts[u][0], c = f.counts[u][1], t = f.counts[u][2];
		if (!f.usage_obj[u] || (p < 0 && c < 0 && t < 0))
			continue;
		out->has_usage = true;
		out->usage.prompt_tokens = p < 0 ? 0 : p;
		out->usage.completion_tokens = c < 0 ? 0 : c;
		if (t < 0) {
			long long room = LLONG_MAX - out->usage.completion_tokens;
			t = out->usage.prompt_tokens > room ? LLONG_MAX
							    : out->usage.prompt_tokens + out->usage.completion_tokens;
		}
		out->usage.total_tokens = t;
	}
	if (f.is_obj[FP_ERROR]) {
		out->is_error = true;
		out->error_message = FP_STR(FPF_ERROR_MSG);
	} else if (f.off[FPF_ERROR_STR] >= 0) {
		out->is_error = true;
		out->error_message = FP_STR(FPF_ERROR_STR);
	} else if (f.off[FPF_OBJECT] >= 0 && !strcmp(d->strs.data + f.off[FPF_OBJECT], "error") &&
		   f.len[FPF_OBJECT] == 5) {
		out->is_error = true;
		out->error_message = FP_STR(FPF_MESSAGE);
	}
	if (out->is_error && !out->error_message)
		out->error_message = "upstream error without a message";
#undef FP_STR
	openai__shape_keep(d, data, len, &f, out);
	return 0;
}

/* ---- same shape as the previous chunk ----
 *
 * A stream's text chunks differ only in the content string: the id, the
 * model, the timestamp, every key and its order repeat byte for byte. So when
 * the fast path has read a chunk that carries text and nothing else (no
 * finish, tool call, usage, error or reasoning), the decoder keeps its bytes
 * before the content string (through the opening quote) and after it (from
 * past the closing quote), and the model. A next chunk that starts with the
 * same prefix, has a well-formed string there, and ends with the same suffix
 * parses exactly as the previous one did, but for that string: JSON is read
 * left to right, and the string token's extent is fixed by its own bytes. So
 * only the string is read (two memcmp and the string scan instead of the
 * whole chunk). Anything else goes to the full fast path, which sets the
 * shape again or drops it. */

#define OPENAI_SHAPE_MAX 1024 /* longer chunks are not kept (memory per stream) */

static void openai__shape_keep(struct openai_decoder *d, const char *data, size_t len, const struct fp *f,
			       const struct openai_chunk *out)
{
	d->shape_pre = 0;
	if (len > OPENAI_SHAPE_MAX || !out->content || out->reasoning || out->finish_reason || out->ntool_calls ||
	    out->has_usage || out->is_error || !f->content_at || !f->content_end)
		return;
	size_t pre = (size_t)(f->content_at - (const unsigned char *)data) + 1;
	size_t suf = len - (size_t)(f->content_end - (const unsigned char *)data);
	size_t mlen = out->model ? strlen(out->model) : 0;
	buf_reset(&d->shape);
	buf_append(&d->shape, data, pre);
	buf_append(&d->shape, (const char *)f->content_end, suf);
	if (out->model)
		buf_append(&d->shape, out->model, mlen + 1);
	d->shape_pre = pre;
	d->shape_suf = suf;
	d->shape_model = out->model != NULL;
}

static int openai__shape_decode(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out)
{
	size_t pre = d->shape_pre, suf = d->shape_suf;
	struct fp f;
	size_t n;

	if (!pre || len < pre + 1 + suf || memcmp(data, d->shape.data, pre))
		return -1;
	f.p = (const unsigned char *)data + pre - 1;
	f.end = (const unsigned char *)data + len;
	buf_reset(&d->strs);
	if (fp__string(&f, &d->strs, &n, false) < 0 || (size_t)(f.end - f.p) != suf ||
	    memcmp(f.p, d->shape.data + pre, suf))
		return -1;
	out->content = n ? d->strs.data : NULL;
	out->content_len = n;
	out->model = d->shape_model ? d->shape.data + pre + suf : NULL;
	return 0;
}

int openai_decode(struct openai_decoder *d, const char *data, size_t len, struct openai_chunk *out, char *err,
		  size_t errlen)
{
	memset(out, 0, sizeof(*out));
	json_decref(d->last);
	d->last = NULL;
	if (openai__trivial(data, len, out))
		return 0;
	if (openai__shape_decode(d, data, len, out) == 0) {
		d->fast++;
		d->same++;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	if (fp__decode(d, data, len, out) == 0) {
		d->fast++;
		return 0;
	}
	d->shape_pre = 0;
	return openai_decode_json(d, data, len, out, err, errlen);
}
