/* mock-backend: a scriptable OpenAI-compatible HTTP/1.1 server for the
 * integration tests, the demo and the benchmark. One libuv loop, no threads,
 * bound to 127.0.0.1 only. The interface is the one in the test plan
 * (modes stream, echo, status, close, stall, raw, tools; /_mock/ control
 * endpoints).
 *
 *   accept -> struct conn (tcp + timer handle, both embedded)
 *   read   -> conn->in; conn_process parses one request at a time, so
 *             pipelined requests wait in conn->in while a response runs
 *   route  -> control endpoints answer at once; a chat request takes a script
 *             (head of the one-shot FIFO, else the default) into conn->resp
 *   pump   -> resp_pump writes one batch, then waits on conn->timer
 *             (inter_ms > 0) or on that write's callback (inter_ms == 0)
 *   finish -> resp_finish counts the response and resumes conn_process.
 *
 * A connection owns everything hanging off it except write buffers, which
 * belong to their uv_write request and are freed in its callback. It is freed
 * in the close callback of the last of its two handles. */
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#define MOCK_MAX_HEAD (64u * 1024u)
#define MOCK_MAX_BODY (8u * 1024u * 1024u)
/* Past this much unprocessed input we stop reading until the response ends. */
#define MOCK_MAX_BUFFERED (MOCK_MAX_HEAD + MOCK_MAX_BODY + 64u * 1024u)
#define MOCK_MAX_RAW_FILE (64l * 1024 * 1024)
#define MOCK_READ_SIZE (64u * 1024u)
#define MOCK_MAX_MS 3600000ll
#define MOCK_MAX_TOKENS 100000000ll

enum mock_mode {
	MOCK_STREAM,
	MOCK_ECHO,
	MOCK_STATUS,
	MOCK_CLOSE,
	MOCK_STALL,
	MOCK_RAW,
	MOCK_TOOLS,
};

static const char *const mock_mode_names[] = {
	[MOCK_STREAM] = "stream", [MOCK_ECHO] = "echo", [MOCK_STATUS] = "status",
	[MOCK_CLOSE] = "close",	  [MOCK_STALL] = "stall", [MOCK_RAW] = "raw",
	[MOCK_TOOLS] = "tools",
};

enum resp_state {
	RESP_IDLE,   /* no response in progress: requests are parsed */
	RESP_TTFT,   /* headers sent, the timer runs ttft_ms */
	RESP_STREAM, /* events are pumped, one batch per step */
	RESP_RAW,    /* raw body pieces are pumped */
	RESP_STALL,  /* never says anything more; ends when the client leaves */
};

/* One chat response. Lives inside its connection; the script reference keeps
 * token, reasoning, finish and raw (when from "raw") valid. */
struct resp {
	enum resp_state state;
	enum mock_mode mode;
	bool keep_alive;
	bool wait_write; /* the next step runs from the write callback */
	unsigned inter_ms;
	size_t per_write;
	size_t n_reasoning, n_content, next;
	size_t prompt_tokens;
	bool usage;
	json_t *script;
	const char *token, *reasoning;
	const char *finish; /* NULL: finish_reason is null */
	char *model_json;   /* the model, already a JSON string literal */
	char *text;	    /* echo: the sentence whose words are the tokens */
	size_t text_pos;
	const char *raw;
	size_t raw_len, raw_pos, chunk;
	char *raw_owned;
	size_t stall_after; /* "stall_after": go silent after this many tokens (0: never) */
	bool reset;         /* "reset": a close mode ends with a TCP reset, not a FIN */
	size_t skipped;     /* a continuation: content tokens the client already has */
};

/* The request being parsed; head fields are valid once head_len != 0. */
struct req {
	size_t head_len;
	size_t body_len;
	char method[8];
	char *path; /* without the query string */
	char *auth;
	bool keep_alive;
	bool expect_continue;
	bool sent_continue;
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct conn *prev, *next;
	struct buf in;
	size_t scan; /* where the search for the end of the head resumes */
	struct req req;
	struct resp resp;
	unsigned pending_writes;
	int handles; /* open handles; the conn is freed when this reaches 0 */
	bool closing, in_process, close_when_drained, reading;
	bool reset_on_close;
};

struct mock_write {
	uv_write_t req;
	char data[];
};

static struct {
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_signal_t sigterm, sigint;
	struct conn *conns;
	json_t *cli_script; /* the default built from the command line */
	json_t *script;	    /* the current default */
	json_t *fifo;	    /* one-shot scripts */
	json_t *requests;   /* recorded chat requests */
	unsigned long long connections, requests_n, active, completed, aborts, continuations;
	/* Command line defaults for keys a script leaves out. */
	long long tokens, ttft_ms, inter_ms, per_write;
	bool quiet;
	/* Scratch buffers reused by every response; never held across calls. */
	struct buf out, ev, tok;
	char readbuf[MOCK_READ_SIZE];
} mock;

static void conn_process(struct conn *c);
static void conn_close(struct conn *c, bool abort);
static void resp_pump(struct conn *c);
static void resp_timer_cb(uv_timer_t *t);
static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *ub);
static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub);
static bool resp_start_tools(struct conn *c, const json_t *script, const json_t *body);

/* ---- small helpers ---- */

static const char *mock_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

static bool mock_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool mock_ieq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Appends one HTTP/1.1 chunk. */
static void mock_http_chunk(struct buf *b, const char *p, size_t n)
{
	buf_printf(b, "%zx\r\n", n);
	buf_append(b, p, n);
	buf_append(b, "\r\n", 2);
}

static long long script_int(const json_t *s, const char *key, long long def)
{
	const json_t *v = json_object_get(s, key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

static const char *script_str(const json_t *s, const char *key, const char *def)
{
	const json_t *v = json_object_get(s, key);
	return json_is_string(v) ? json_string_value(v) : def;
}

static bool script_bool(const json_t *s, const char *key, bool def)
{
	const json_t *v = json_object_get(s, key);
	return json_is_boolean(v) ? json_is_true(v) : def;
}

static enum mock_mode script_mode(const json_t *s)
{
	const char *m = script_str(s, "mode", "stream");

	for (size_t i = 0; i < UTIL_ARRAY_LEN(mock_mode_names); i++)
		if (!strcmp(m, mock_mode_names[i]))
			return (enum mock_mode)i;
	return MOCK_STREAM;
}

/* Returns NULL when s is a usable script, else why not. Checking at POST time
 * means a bad script fails the test that sent it, not a later request. */
static const char *script_check(const json_t *s)
{
	static const struct {
		const char *key;
		long long min, max;
	} ints[] = {
		{ "tokens", 0, MOCK_MAX_TOKENS },	 { "ttft_ms", 0, MOCK_MAX_MS },
		{ "inter_ms", 0, MOCK_MAX_MS },		 { "reasoning_tokens", 0, MOCK_MAX_TOKENS },
		{ "tokens_per_write", 0, 1000000 },	 { "status", 100, 599 },
		{ "chunk", 0, MOCK_MAX_RAW_FILE },	 { "stall_after", 0, MOCK_MAX_TOKENS },
	};
	static const char *const strs[] = { "token", "reasoning_token", "content_type", "raw",
					    "raw_file", "continue" };
	static const char *const bools[] = { "usage", "after_headers", "reset" };
	const json_t *v;

	if (!json_is_object(s))
		return "a script must be a JSON object";
	v = json_object_get(s, "mode");
	if (v) {
		bool known = false;
		for (size_t i = 0; json_is_string(v) && i < UTIL_ARRAY_LEN(mock_mode_names); i++)
			known |= !strcmp(json_string_value(v), mock_mode_names[i]);
		if (!known)
			return "mode must be one of stream, echo, status, close, stall, raw, tools";
	}
	for (size_t i = 0; i < UTIL_ARRAY_LEN(ints); i++) {
		v = json_object_get(s, ints[i].key);
		if (v && (!json_is_integer(v) || json_integer_value(v) < ints[i].min ||
			  json_integer_value(v) > ints[i].max))
			return "an integer key is not an integer or out of range";
	}
	for (size_t i = 0; i < UTIL_ARRAY_LEN(strs); i++) {
		v = json_object_get(s, strs[i]);
		if (v && !json_is_string(v))
			return "a string key is not a string";
	}
	for (size_t i = 0; i < UTIL_ARRAY_LEN(bools); i++) {
		v = json_object_get(s, bools[i]);
		if (v && !json_is_boolean(v))
			return "a boolean key is not a boolean";
	}
	v = json_object_get(s, "finish_reason");
	if (v && !json_is_string(v) && !json_is_null(v))
		return "finish_reason must be a string or null";
	v = json_object_get(s, "body");
	if (v && !json_is_string(v) && !json_is_object(v) && !json_is_array(v))
		return "body must be a string or JSON";
	return NULL;
}

/* The text of a message's content: a string, or the "text" of its parts. */
static void mock_content_text(const json_t *msg, struct buf *b)
{
	const json_t *content = json_object_get(msg, "content");
	size_t i;
	const json_t *part;

	if (json_is_string(content)) {
		buf_append(b, json_string_value(content), json_string_length(content));
		return;
	}
	json_array_foreach(content, i, part) {
		const json_t *t = json_object_get(part, "text");
		if (json_is_string(t))
			buf_append(b, json_string_value(t), json_string_length(t));
	}
}

/* ---- writing ---- */

static void conn_write_cb(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	free(req);
	c->pending_writes--;
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c, true);
		return;
	}
	if (c->close_when_drained) {
		if (!c->pending_writes)
			conn_close(c, false);
		return;
	}
	if (c->resp.wait_write) {
		c->resp.wait_write = false;
		resp_pump(c);
	}
}

/* Copies p into a write request that owns it until the callback. On failure
 * the connection is closed; callers check c->closing afterwards. */
static void conn_write(struct conn *c, const char *p, size_t n)
{
	struct mock_write *w;
	uv_buf_t ub;

	if (!n || c->closing)
		return;
	w = xmalloc(sizeof(*w) + n);
	memcpy(w->data, p, n);
	w->req.data = c;
	ub = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, conn_write_cb) < 0) {
		free(w);
		conn_close(c, true);
		return;
	}
	c->pending_writes++;
}

/* A complete response with Content-Length. */
static void conn_reply(struct conn *c, int status, const char *ctype, const char *body, size_t n,
		       bool keep_alive)
{
	struct buf *b = &mock.out;

	buf_reset(b);
	buf_printf(b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
		   mock_reason(status), ctype, n, keep_alive ? "" : "Connection: close\r\n");
	buf_append(b, body, n);
	if (!keep_alive)
		c->close_when_drained = true;
	conn_write(c, b->data, b->len);
	buf_reset(b);
	if (!keep_alive && !c->closing && !c->pending_writes)
		conn_close(c, false);
}

static void conn_reply_json(struct conn *c, int status, const char *json)
{
	conn_reply(c, status, "application/json", json, strlen(json), c->req.keep_alive);
}

/* Answers a protocol error and closes once it is written. */
static void conn_fail(struct conn *c, int status, const char *why)
{
	struct buf b;

	buf_init(&b);
	buf_append_str(&b, "{\"error\":{\"message\":");
	buf_append_json_str(&b, why, strlen(why));
	buf_append_str(&b, ",\"type\":\"invalid_request_error\"}}");
	conn_reply(c, status, "application/json", b.data, b.len, false);
	buf_free(&b);
}

/* ---- responses ---- */

static void resp_clear(struct resp *rs)
{
	json_decref(rs->script);
	free(rs->model_json);
	free(rs->text);
	free(rs->raw_owned);
	memset(rs, 0, sizeof(*rs));
}

/* The response has said all it will: count it and go on with the connection. */
static void resp_finish(struct conn *c)
{
	struct resp *rs = &c->resp;

	if (rs->mode == MOCK_CLOSE || !rs->keep_alive)
		c->close_when_drained = true;
	mock.active--;
	mock.completed++;
	resp_clear(rs);
	if (c->close_when_drained) {
		if (!c->pending_writes)
			conn_close(c, false);
		return;
	}
	if (!c->in_process)
		conn_process(c);
}

/* Expands "{i}" in tpl into mock.tok. */
static void resp_expand(const char *tpl, size_t i)
{
	struct buf *t = &mock.tok;
	const char *p;

	buf_reset(t);
	while ((p = strstr(tpl, "{i}"))) {
		buf_append(t, tpl, (size_t)(p - tpl));
		buf_printf(t, "%zu", i);
		tpl = p + 3;
	}
	buf_append_str(t, tpl);
}

/* Puts the next echo word, plus a space unless it is the last, in mock.tok. */
static void resp_next_word(struct resp *rs)
{
	const char *s = rs->text + rs->text_pos;
	size_t n;

	buf_reset(&mock.tok);
	while (*s == ' ')
		s++;
	n = strcspn(s, " ");
	buf_append(&mock.tok, s, n);
	if (rs->next + 1 < rs->n_reasoning + rs->n_content)
		buf_append_char(&mock.tok, ' ');
	rs->text_pos = (size_t)(s + n - rs->text);
}

static void resp_event_begin(const struct resp *rs, struct buf *e)
{
	buf_reset(e);
	buf_append_str(e, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
			  "\"created\":0,\"model\":");
	buf_append_str(e, rs->model_json);
}

/* Appends the event for token index rs->next (reasoning first, then content). */
static void resp_event_token(struct resp *rs, struct buf *b)
{
	struct buf *e = &mock.ev;
	bool reasoning = rs->next < rs->n_reasoning;

	if (reasoning)
		resp_expand(rs->reasoning, rs->next);
	else if (rs->mode == MOCK_ECHO)
		resp_next_word(rs);
	else
		resp_expand(rs->token, rs->next - rs->n_reasoning);
	resp_event_begin(rs, e);
	buf_append_str(e, reasoning ? ",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":"
				    : ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
	buf_append_json_str(e, mock.tok.data, mock.tok.len);
	buf_append_str(e, "},\"finish_reason\":null}]}\n\n");
	mock_http_chunk(b, e->data, e->len);
}

/* Finish chunk, usage chunk, [DONE] and the end of the chunked body. */
static void resp_event_tail(struct resp *rs, struct buf *b)
{
	struct buf *e = &mock.ev;

	resp_event_begin(rs, e);
	buf_append_str(e, ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":");
	if (rs->finish)
		buf_append_json_str(e, rs->finish, strlen(rs->finish));
	else
		buf_append_str(e, "null");
	buf_append_str(e, "}]}\n\n");
	mock_http_chunk(b, e->data, e->len);
	if (rs->usage) {
		resp_event_begin(rs, e);
		buf_printf(e,
			   ",\"choices\":[],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
			   "\"total_tokens\":%zu}}\n\n",
			   rs->prompt_tokens, rs->n_content - rs->skipped, rs->prompt_tokens + rs->n_content - rs->skipped);
		mock_http_chunk(b, e->data, e->len);
	}
	mock_http_chunk(b, "data: [DONE]\n\n", 14);
	buf_append_str(b, "0\r\n\r\n");
}

/* Appends one batch; returns true when the response has nothing more. */
static bool resp_fill_stream(struct resp *rs, struct buf *b)
{
	size_t total = rs->n_reasoning + rs->n_content;

	if (rs->stall_after && rs->stall_after < total)
		total = rs->stall_after;
	for (size_t k = 0; rs->next < total && k < rs->per_write; k++, rs->next++)
		resp_event_token(rs, b);
	if (rs->next < total)
		return false;
	if (rs->stall_after && rs->next == rs->stall_after) {
		rs->state = RESP_STALL; /* a replica that hangs mid-answer */
		return false;
	}
	if (rs->mode != MOCK_CLOSE)
		resp_event_tail(rs, b);
	return true;
}

static bool resp_fill_raw(struct resp *rs, struct buf *b)
{
	size_t left = rs->raw_len - rs->raw_pos;
	size_t n = rs->chunk && rs->chunk < left ? rs->chunk : left;

	if (n)
		mock_http_chunk(b, rs->raw + rs->raw_pos, n);
	rs->raw_pos += n;
	if (rs->raw_pos < rs->raw_len)
		return false;
	buf_append_str(b, "0\r\n\r\n");
	return true;
}

/* One step: writes whatever mock.out already holds plus the next batch, then
 * arranges the following step. */
static void resp_pump(struct conn *c)
{
	struct resp *rs = &c->resp;
	struct buf *b = &mock.out;
	bool last = rs->state == RESP_RAW ? resp_fill_raw(rs, b) : resp_fill_stream(rs, b);

	conn_write(c, b->data, b->len);
	buf_reset(b);
	if (c->closing || rs->state == RESP_STALL)
		return;
	if (last && rs->mode == MOCK_CLOSE && rs->reset)
		c->reset_on_close = true; /* a replica that dies: the peer sees a reset, not an end */
	if (last)
		resp_finish(c);
	else if (!rs->inter_ms && c->pending_writes)
		rs->wait_write = true;
	else
		uv_timer_start(&c->timer, resp_timer_cb, rs->inter_ms, 0);
}

static void resp_timer_cb(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->closing)
		return;
	if (c->resp.state == RESP_TTFT)
		c->resp.state = RESP_STREAM;
	resp_pump(c);
}

/* Reads a whole file into *out; false if it cannot. */
static bool mock_read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[16384];
	size_t n;

	if (!f)
		return false;
	buf_init(&b);
	buf_reserve(&b, 0);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0 && b.len <= (size_t)MOCK_MAX_RAW_FILE)
		buf_append(&b, tmp, n);
	if (ferror(f) || b.len > (size_t)MOCK_MAX_RAW_FILE) {
		fclose(f);
		buf_free(&b);
		return false;
	}
	fclose(f);
	*out = b.data;
	*len = b.len;
	return true;
}

static void resp_start_status(struct conn *c, const json_t *script)
{
	int status = (int)script_int(script, "status", 500);
	const char *ctype = script_str(script, "content_type", "application/json");
	const json_t *body = json_object_get(script, "body");

	if (json_is_string(body)) {
		conn_reply(c, status, ctype, json_string_value(body), json_string_length(body),
			   c->resp.keep_alive);
	} else if (body) {
		char *s = json_dumps(body, JSON_COMPACT);
		conn_reply(c, status, ctype, s, strlen(s), c->resp.keep_alive);
		free(s);
	} else {
		static const char def[] = "{\"error\":{\"message\":\"mock error\",\"type\":\"server_error\"}}";
		conn_reply(c, status, ctype, def, sizeof(def) - 1, c->resp.keep_alive);
	}
	if (!c->closing)
		resp_finish(c);
}

static void resp_start_raw(struct conn *c, const json_t *script)
{
	struct resp *rs = &c->resp;
	const char *file = script_str(script, "raw_file", NULL);
	int status = (int)script_int(script, "status", 200);

	if (file) {
		if (!mock_read_file(file, &rs->raw_owned, &rs->raw_len)) {
			static const char err[] = "{\"error\":{\"message\":\"mock: cannot read raw_file\","
						  "\"type\":\"server_error\"}}";
			conn_reply(c, 500, "application/json", err, sizeof(err) - 1, rs->keep_alive);
			if (!c->closing)
				resp_finish(c);
			return;
		}
		rs->raw = rs->raw_owned;
	} else {
		const json_t *raw = json_object_get(script, "raw");
		rs->raw = json_is_string(raw) ? json_string_value(raw) : "";
		rs->raw_len = json_is_string(raw) ? json_string_length(raw) : 0;
	}
	rs->chunk = (size_t)script_int(script, "chunk", 0);
	rs->inter_ms = (unsigned)script_int(script, "inter_ms", 0);
	rs->state = RESP_RAW;
	buf_printf(&mock.out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
			      "Transfer-Encoding: chunked\r\n%s\r\n",
		   status, mock_reason(status), script_str(script, "content_type", "text/event-stream"),
		   rs->keep_alive ? "" : "Connection: close\r\n");
	resp_pump(c);
}

/* Builds the echo sentence from the request and counts its words. */
static void resp_echo_text(struct resp *rs, const json_t *body)
{
	const json_t *msgs = json_object_get(body, "messages");
	const json_t *sys = NULL, *user = NULL, *m;
	struct buf b;
	size_t i;

	json_array_foreach(msgs, i, m) {
		const char *role = script_str(m, "role", "");
		if (!sys && !strcmp(role, "system"))
			sys = m;
		if (!strcmp(role, "user"))
			user = m;
	}
	buf_init(&b);
	buf_append_str(&b, "Echo. System: ");
	if (sys)
		mock_content_text(sys, &b);
	else
		buf_append_str(&b, "(none)");
	buf_append_str(&b, " | User: ");
	if (user)
		mock_content_text(user, &b);
	/* Embedded NULs would desynchronise the word count from the words. */
	for (i = 0; i < b.len; i++)
		if (!b.data[i])
			b.data[i] = ' ';
	rs->text = b.data;
	for (const char *s = rs->text; *s;) {
		while (*s == ' ')
			s++;
		if (!*s)
			break;
		rs->n_content++;
		s += strcspn(s, " ");
	}
}

/* The scripted text of tokens [0, n) of template tpl, in out. */
static void resp_script_text(const char *tpl, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		resp_expand(tpl, i);
		buf_append(out, mock.tok.data, mock.tok.len);
	}
}

/* How many whole tokens of tpl (at most n) make exactly text; -1 if none do. */
static long resp_script_prefix(const char *tpl, size_t n, const char *text, size_t len)
{
	size_t at = 0;

	for (size_t i = 0; i <= n; i++) {
		if (at == len)
			return (long)i;
		if (i == n)
			break;
		resp_expand(tpl, i);
		if (at + mock.tok.len > len || memcmp(text + at, mock.tok.data, mock.tok.len))
			return -1;
		at += mock.tok.len;
	}
	return -1;
}

/* A request whose last message is the assistant's asks to continue it (as
 * vLLM, DeepSeek, llama.cpp and Ollama do): skip the scripted tokens the
 * client already has, in the dialect the script names ("continue": "vllm"
 * needs continue_final_message, "deepseek" needs "prefix": true, "trailing"
 * nothing more; absent: any). Returns why not, or NULL. */
static const char *resp_continue(struct resp *rs, const json_t *script, const json_t *body)
{
	const json_t *msgs = json_object_get(body, "messages");
	const json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
	const char *dialect = script_str(script, "continue", "");
	const json_t *content = json_object_get(last, "content"), *rc = json_object_get(last, "reasoning_content");
	bool vllm = json_is_true(json_object_get(body, "continue_final_message")) &&
		    json_is_false(json_object_get(body, "add_generation_prompt"));
	bool prefix = json_is_true(json_object_get(last, "prefix"));
	long k, j;

	if (!last || strcmp(script_str(last, "role", ""), "assistant"))
		return NULL;
	if ((!strcmp(dialect, "vllm") && !vllm) || (!strcmp(dialect, "deepseek") && !prefix) ||
	    (!strcmp(dialect, "trailing") && (vllm || prefix)))
		return "continuation: the request does not speak this backend's dialect";
	const char *text = json_is_string(content) ? json_string_value(content) : "";
	size_t len = json_is_string(content) ? json_string_length(content) : 0;
	const char *rtext = json_is_string(rc) ? json_string_value(rc) : "";
	size_t rlen = json_is_string(rc) ? json_string_length(rc) : 0;
	if (len == 0) {
		/* Cut off inside the reasoning. */
		if ((j = resp_script_prefix(rs->reasoning, rs->n_reasoning, rtext, rlen)) < 0)
			return "continuation: the reasoning so far is not a prefix of the script";
		rs->next = (size_t)j;
	} else {
		struct buf r;
		buf_init(&r);
		resp_script_text(rs->reasoning, rs->n_reasoning, &r);
		bool reasoning_ok = rlen == 0 || (rlen == r.len && !memcmp(rtext, r.data ? r.data : "", rlen));
		buf_free(&r);
		if (!reasoning_ok)
			return "continuation: the reasoning so far is not the script's";
		if ((k = resp_script_prefix(rs->token, rs->n_content, text, len)) < 0)
			return "continuation: the answer so far is not a prefix of the script";
		rs->next = rs->n_reasoning + (size_t)k;
		rs->skipped = (size_t)k;
	}
	mock.continuations++;
	return NULL;
}

/* Starts the response to a chat request; takes its own script reference. */
static void resp_start(struct conn *c, json_t *script, const json_t *body, bool keep_alive)
{
	struct resp *rs = &c->resp;
	const json_t *model = json_object_get(body, "model");
	const json_t *fin = json_object_get(script, "finish_reason");
	struct buf b;
	long long ttft;

	memset(rs, 0, sizeof(*rs));
	rs->mode = script_mode(script);
	rs->script = json_incref(script);
	rs->keep_alive = keep_alive;
	rs->state = RESP_STREAM;
	mock.active++;
	switch (rs->mode) {
	case MOCK_STATUS:
		resp_start_status(c, script);
		return;
	case MOCK_RAW:
		resp_start_raw(c, script);
		return;
	case MOCK_TOOLS:
		if (resp_start_tools(c, script, body))
			return;
		break; /* no tools in the request: a plain stream */
	case MOCK_STALL:
		rs->state = RESP_STALL;
		if (script_bool(script, "after_headers", false)) {
			static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
						  "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
			conn_write(c, hdr, sizeof(hdr) - 1);
		}
		return;
	default:
		break;
	}

	buf_init(&b);
	if (json_is_string(model))
		buf_append_json_str(&b, json_string_value(model), json_string_length(model));
	else
		buf_append_str(&b, "\"mock-model\"");
	rs->model_json = b.data;
	rs->prompt_tokens = json_array_size(json_object_get(body, "messages"));
	rs->token = script_str(script, "token", "tok{i} ");
	rs->reasoning = script_str(script, "reasoning_token", "think{i} ");
	rs->finish = json_is_null(fin) ? NULL : script_str(script, "finish_reason", "stop");
	rs->usage = script_bool(script, "usage", true);
	rs->n_reasoning = (size_t)script_int(script, "reasoning_tokens", 0);
	if (rs->mode == MOCK_ECHO)
		resp_echo_text(rs, body);
	else
		rs->n_content = (size_t)script_int(script, "tokens", mock.tokens);
	rs->stall_after = (size_t)script_int(script, "stall_after", 0);
	rs->reset = script_bool(script, "reset", false);
	if (rs->mode != MOCK_ECHO) {
		const char *why = resp_continue(rs, script, body);
		if (why) {
			mock.active--;
			resp_clear(rs);
			conn_fail(c, 400, why);
			return;
		}
	}
	ttft = script_int(script, "ttft_ms", mock.ttft_ms);
	rs->inter_ms = (unsigned)script_int(script, "inter_ms", mock.inter_ms);
	rs->per_write = (size_t)script_int(script, "tokens_per_write", mock.per_write);
	if (!rs->per_write)
		rs->per_write = rs->inter_ms ? 1 : 16;

	buf_printf(&mock.out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n%s\r\n",
		   keep_alive ? "" : "Connection: close\r\n");
	if (ttft > 0) {
		rs->state = RESP_TTFT;
		conn_write(c, mock.out.data, mock.out.len);
		buf_reset(&mock.out);
		if (!c->closing)
			uv_timer_start(&c->timer, resp_timer_cb, (uint64_t)ttft, 0);
		return;
	}
	resp_pump(c);
}

/* ---- request parsing ---- */

static void req_reset(struct req *r)
{
	free(r->path);
	free(r->auth);
	memset(r, 0, sizeof(*r));
}

/* Parses the head p[0..n) (ending in the blank line) into r. On error sets
 * *status and *why and returns false. */
static bool req_parse_head(struct req *r, const char *p, size_t n, int *status, const char **why)
{
	const char *end = p + n - 2; /* the blank line's CRLF */
	const char *eol, *sp1, *sp2, *line, *q;
	bool have_cl = false;
	unsigned long long cl = 0;

	*status = 400;
	eol = memmem(p, n, "\r\n", 2);
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || sp1 == p || (size_t)(sp1 - p) >= sizeof(r->method))
		return *why = "malformed request line", false;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
		return *why = "malformed request line", false;
	for (q = p; q < sp1; q++)
		if (*q < 'A' || *q > 'Z')
			return *why = "malformed method", false;
	memcpy(r->method, p, (size_t)(sp1 - p));
	r->method[sp1 - p] = '\0';
	if (mock_ieq(sp2 + 1, (size_t)(eol - sp2 - 1), "HTTP/1.1"))
		r->keep_alive = true;
	else if (mock_ieq(sp2 + 1, (size_t)(eol - sp2 - 1), "HTTP/1.0"))
		r->keep_alive = false;
	else
		return *why = "unsupported HTTP version", false;
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	r->path = xstrndup(sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1));

	for (line = eol + 2; line < end; line = eol + 2) {
		const char *colon, *v, *ve;

		eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		if (*line == ' ' || *line == '\t')
			return *why = "folded header lines are not supported", false;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon || colon == line)
			return *why = "malformed header line", false;
		for (q = line; q < colon; q++)
			if (*q == ' ' || *q == '\t')
				return *why = "malformed header name", false;
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		size_t name_len = (size_t)(colon - line), vlen = (size_t)(ve - v);
		if (mock_ieq(line, name_len, "content-length")) {
			unsigned long long x = 0;
			if (!vlen)
				return *why = "malformed Content-Length", false;
			for (q = v; q < ve; q++) {
				if (*q < '0' || *q > '9')
					return *why = "malformed Content-Length", false;
				x = x * 10 + (unsigned)(*q - '0');
				if (x > MOCK_MAX_BODY) {
					*status = 413;
					return *why = "request body too large", false;
				}
			}
			if (have_cl && x != cl)
				return *why = "conflicting Content-Length", false;
			have_cl = true;
			cl = x;
		} else if (mock_ieq(line, name_len, "transfer-encoding")) {
			return *why = "chunked request bodies are not supported", false;
		} else if (mock_ieq(line, name_len, "connection")) {
			for (q = v; q < ve;) {
				const char *te = memchr(q, ',', (size_t)(ve - q));
				const char *t = q, *tend = te ? te : ve;
				while (t < tend && *t == ' ')
					t++;
				while (tend > t && tend[-1] == ' ')
					tend--;
				if (mock_ieq(t, (size_t)(tend - t), "close"))
					r->keep_alive = false;
				else if (mock_ieq(t, (size_t)(tend - t), "keep-alive"))
					r->keep_alive = true;
				q = te ? te + 1 : ve;
			}
		} else if (mock_ieq(line, name_len, "authorization")) {
			free(r->auth);
			r->auth = xstrndup(v, vlen);
		} else if (mock_ieq(line, name_len, "expect")) {
			r->expect_continue = mock_ieq(v, vlen, "100-continue");
		}
	}
	if (!strcmp(r->method, "POST") && !have_cl)
		return *why = "POST needs a Content-Length", false;
	r->body_len = (size_t)cl;
	return true;
}

/* Returns 1 when a whole request is in c->in, 0 when more is needed, -1 after
 * answering an error (the connection then closes). */
static int conn_parse(struct conn *c)
{
	struct req *r = &c->req;

	if (!r->head_len) {
		const char *end;
		const char *why;
		int status;

		/* Tolerate the empty lines some clients send between requests. */
		while (c->in.len >= 2 && c->in.data[0] == '\r' && c->in.data[1] == '\n') {
			memmove(c->in.data, c->in.data + 2, c->in.len - 2);
			c->in.len -= 2;
			c->scan = 0;
		}
		if (c->in.len < 4)
			return 0;
		end = memmem(c->in.data + c->scan, c->in.len - c->scan, "\r\n\r\n", 4);
		if (!end || (size_t)(end + 4 - c->in.data) > MOCK_MAX_HEAD) {
			if (c->in.len > MOCK_MAX_HEAD) {
				conn_fail(c, 400, "request head too large");
				return -1;
			}
			c->scan = c->in.len - 3;
			return 0;
		}
		if (!req_parse_head(r, c->in.data, (size_t)(end + 4 - c->in.data), &status, &why)) {
			conn_fail(c, status, why);
			return -1;
		}
		r->head_len = (size_t)(end + 4 - c->in.data);
	}
	if (c->in.len - r->head_len < r->body_len) {
		if (r->expect_continue && !r->sent_continue) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			r->sent_continue = true;
			conn_write(c, cont, sizeof(cont) - 1);
		}
		return 0;
	}
	return 1;
}

/* ---- endpoints ---- */

static void mock_record(const struct req *r, const json_t *body, const char *raw, size_t n)
{
	json_t *rec = json_object();
	json_t *b = body ? json_incref((json_t *)body) : json_stringn(raw, n);

	if (!b) {
		/* Not UTF-8: keep a sanitised copy rather than nothing. */
		struct buf tmp;
		buf_init(&tmp);
		buf_append_json_str(&tmp, raw, n);
		b = json_loadb(tmp.data, tmp.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		buf_free(&tmp);
	}
	json_object_set_new(rec, "path", json_string(r->path));
	json_object_set_new(rec, "authorization", r->auth ? json_string(r->auth) : json_null());
	json_object_set_new(rec, "body", b ? b : json_null());
	json_array_append_new(mock.requests, rec);
}

static void mock_chat(struct conn *c, const char *raw, size_t n)
{
	json_t *body = json_loadb(raw, n, 0, NULL);
	json_t *script;

	mock_record(&c->req, body, raw, n);
	mock.requests_n++;
	if (json_array_size(mock.fifo)) {
		script = json_incref(json_array_get(mock.fifo, 0));
		json_array_remove(mock.fifo, 0);
	} else {
		script = json_incref(mock.script);
	}
	if (!mock.quiet)
		fprintf(stderr, "mock-backend: POST %s -> %s\n", c->req.path,
			mock_mode_names[script_mode(script)]);
	resp_start(c, script, body, c->req.keep_alive);
	json_decref(script);
	json_decref(body);
}

static void mock_ctl_script(struct conn *c, const char *raw, size_t n, bool next)
{
	json_error_t err;
	json_t *s = json_loadb(raw, n, 0, &err);
	const char *why = s ? script_check(s) : "body is not valid JSON";

	if (why) {
		struct buf b;
		buf_init(&b);
		buf_append_str(&b, "{\"ok\":false,\"error\":");
		buf_append_json_str(&b, why, strlen(why));
		buf_append_char(&b, '}');
		conn_reply(c, 400, "application/json", b.data, b.len, c->req.keep_alive);
		buf_free(&b);
		json_decref(s);
		return;
	}
	if (next) {
		json_array_append_new(mock.fifo, s);
	} else {
		json_decref(mock.script);
		mock.script = s;
	}
	conn_reply_json(c, 200, "{\"ok\":true}");
}

static void mock_ctl_stats(struct conn *c)
{
	char s[256];

	snprintf(s, sizeof(s),
		 "{\"connections\":%llu,\"requests\":%llu,\"active\":%llu,\"completed\":%llu,"
		 "\"client_aborts\":%llu,\"continuations\":%llu}",
		 mock.connections, mock.requests_n, mock.active, mock.completed, mock.aborts, mock.continuations);
	conn_reply_json(c, 200, s);
}

static void mock_ctl_requests(struct conn *c)
{
	char *s = json_dumps(mock.requests, JSON_COMPACT);

	conn_reply_json(c, 200, s);
	free(s);
}

/* Open connections and responses in progress stay; so does "active", which
 * counts them. */
static void mock_ctl_reset(struct conn *c)
{
	json_array_clear(mock.requests);
	json_array_clear(mock.fifo);
	json_decref(mock.script);
	mock.script = json_incref(mock.cli_script);
	mock.connections = mock.requests_n = mock.completed = mock.aborts = mock.continuations = 0;
	conn_reply_json(c, 200, "{\"ok\":true}");
}

static void mock_route(struct conn *c, const char *body, size_t n)
{
	const char *m = c->req.method, *path = c->req.path;
	bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
	static const char not_found[] =
		"{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}";
	static const char bad_method[] =
		"{\"error\":{\"message\":\"method not allowed\",\"type\":\"invalid_request_error\"}}";

	if (!strncmp(path, "/_mock/", 7)) {
		const char *op = path + 7;
		bool is_post = !strcmp(op, "script") || !strcmp(op, "next") || !strcmp(op, "reset");
		bool is_get = !strcmp(op, "requests") || !strcmp(op, "stats");

		if (!is_post && !is_get)
			conn_reply_json(c, 404, not_found);
		else if ((is_post && !post) || (is_get && !get))
			conn_reply_json(c, 405, bad_method);
		else if (!strcmp(op, "script") || !strcmp(op, "next"))
			mock_ctl_script(c, body, n, op[0] == 'n');
		else if (!strcmp(op, "reset"))
			mock_ctl_reset(c);
		else if (!strcmp(op, "requests"))
			mock_ctl_requests(c);
		else
			mock_ctl_stats(c);
	} else if (mock_ends_with(path, "/chat/completions")) {
		if (post)
			mock_chat(c, body, n);
		else
			conn_reply_json(c, 405, bad_method);
	} else if (mock_ends_with(path, "/models")) {
		if (get)
			conn_reply_json(c, 200, "{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\","
						"\"object\":\"model\"}]}");
		else
			conn_reply_json(c, 405, bad_method);
	} else {
		conn_reply_json(c, 404, not_found);
	}
}

/* ---- connections ---- */

/* Handles every complete request in c->in while no response is running. */
static void conn_process(struct conn *c)
{
	c->in_process = true;
	while (!c->closing && !c->close_when_drained && c->resp.state == RESP_IDLE) {
		size_t used;

		if (conn_parse(c) <= 0)
			break;
		used = c->req.head_len + c->req.body_len;
		mock_route(c, c->in.data + c->req.head_len, c->req.body_len);
		memmove(c->in.data, c->in.data + used, c->in.len - used);
		c->in.len -= used;
		c->scan = 0;
		req_reset(&c->req);
	}
	c->in_process = false;
	if (c->closing)
		return;
	/* Idle keep-alive connections hold no input buffer. */
	if (!c->in.len)
		buf_free(&c->in);
	if (!c->reading && c->resp.state == RESP_IDLE && !c->close_when_drained) {
		c->reading = true;
		uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
	}
}

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->handles)
		return;
	buf_free(&c->in);
	req_reset(&c->req);
	free(c);
}

/* abort: the client went away, so a response in progress counts as aborted. */
static void conn_close(struct conn *c, bool abort)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->resp.state != RESP_IDLE) {
		mock.active--;
		if (abort)
			mock.aborts++;
		resp_clear(&c->resp);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		mock.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_close_cb);
	if (!c->reset_on_close || uv_tcp_close_reset(&c->tcp, conn_close_cb) != 0)
		uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

/* Reads land in one shared buffer: the loop is single-threaded and read_cb
 * copies out before the next read. */
static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *ub)
{
	(void)h;
	(void)hint;
	*ub = uv_buf_init(mock.readbuf, sizeof(mock.readbuf));
}

/* A FIN counts as the client leaving: no HTTP client we serve half-closes,
 * and treating it so makes client_aborts immediate for tests. */
static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub)
{
	struct conn *c = s->data;

	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		conn_close(c, true);
		return;
	}
	if (c->close_when_drained)
		return;
	buf_append(&c->in, ub->base, (size_t)nread);
	if (c->resp.state == RESP_IDLE) {
		conn_process(c);
	} else if (c->in.len > MOCK_MAX_BUFFERED) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void mock_on_connection(uv_stream_t *server, int status)
{
	struct conn *c;

	if (status < 0)
		return;
	c = xcalloc(1, sizeof(*c));
	uv_tcp_init(&mock.loop, &c->tcp);
	uv_timer_init(&mock.loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	c->next = mock.conns;
	if (mock.conns)
		mock.conns->prev = c;
	mock.conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c, false);
		return;
	}
	mock.connections++;
	uv_tcp_nodelay(&c->tcp, 1);
	c->reading = true;
	uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
}

/* ---- process ---- */

static void mock_stop(void)
{
	if (uv_is_closing((uv_handle_t *)&mock.listener))
		return;
	uv_close((uv_handle_t *)&mock.listener, NULL);
	uv_close((uv_handle_t *)&mock.sigterm, NULL);
	uv_close((uv_handle_t *)&mock.sigint, NULL);
	while (mock.conns)
		conn_close(mock.conns, false);
}

static void mock_on_signal(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	mock_stop();
}

static bool mock_write_port_file(const char *path, int port)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	bool ok = f && fprintf(f, "%d\n", port) > 0;

	if (f && fclose(f) != 0)
		ok = false;
	if (ok && rename(tmp, path) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "mock-backend: cannot write %s: %s\n", path, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	return ok;
}

static void mock_usage(FILE *f)
{
	fprintf(f, "usage: mock-backend [--port N] [--port-file PATH] [--mode stream|echo] [--tokens N]\n"
		   "                    [--ttft-ms N] [--inter-ms N] [--tokens-per-write N] [--quiet]\n");
}

static bool mock_parse_num(const char *s, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'f' },
		{ "mode", required_argument, NULL, 'm' },
		{ "tokens", required_argument, NULL, 'n' },
		{ "ttft-ms", required_argument, NULL, 't' },
		{ "inter-ms", required_argument, NULL, 'i' },
		{ "tokens-per-write", required_argument, NULL, 'k' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *port_file = NULL, *mode = "stream";
	long long port = 0;
	struct sockaddr_in addr;
	struct sockaddr_storage bound;
	int len = sizeof(bound), rc, opt, status = 0;
	struct rlimit rl;

	mock.tokens = 16;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool ok = true;
		switch (opt) {
		case 'p': ok = mock_parse_num(optarg, 65535, &port); break;
		case 'f': port_file = optarg; break;
		case 'm':
			mode = optarg;
			ok = !strcmp(mode, "stream") || !strcmp(mode, "echo");
			break;
		case 'n': ok = mock_parse_num(optarg, MOCK_MAX_TOKENS, &mock.tokens); break;
		case 't': ok = mock_parse_num(optarg, MOCK_MAX_MS, &mock.ttft_ms); break;
		case 'i': ok = mock_parse_num(optarg, MOCK_MAX_MS, &mock.inter_ms); break;
		case 'k': ok = mock_parse_num(optarg, 1000000, &mock.per_write); break;
		case 'q': mock.quiet = true; break;
		case 'h': mock_usage(stdout); return 0;
		default: ok = false;
		}
		if (!ok) {
			mock_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		mock_usage(stderr);
		return 2;
	}

	/* The benchmark holds 10,000 connections open at once. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);

	mock.cli_script = json_pack("{s:s, s:I, s:I, s:I}", "mode", mode, "tokens",
				    (json_int_t)mock.tokens, "ttft_ms", (json_int_t)mock.ttft_ms,
				    "inter_ms", (json_int_t)mock.inter_ms);
	if (mock.per_write)
		json_object_set_new(mock.cli_script, "tokens_per_write", json_integer(mock.per_write));
	mock.script = json_incref(mock.cli_script);
	mock.fifo = json_array();
	mock.requests = json_array();

	uv_loop_init(&mock.loop);
	uv_tcp_init(&mock.loop, &mock.listener);
	uv_signal_init(&mock.loop, &mock.sigterm);
	uv_signal_init(&mock.loop, &mock.sigint);
	uv_ip4_addr("127.0.0.1", (int)port, &addr);
	rc = uv_tcp_bind(&mock.listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&mock.listener, 4096, mock_on_connection);
	if (rc == 0)
		rc = uv_tcp_getsockname(&mock.listener, (struct sockaddr *)&bound, &len);
	if (rc != 0) {
		fprintf(stderr, "mock-backend: cannot listen on 127.0.0.1:%lld: %s\n", port,
			uv_strerror(rc));
		status = 1;
	} else {
		port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
		if (port_file && !mock_write_port_file(port_file, (int)port))
			status = 1;
	}
	if (status) {
		mock_stop();
	} else {
		uv_signal_start(&mock.sigterm, mock_on_signal, SIGTERM);
		uv_signal_start(&mock.sigint, mock_on_signal, SIGINT);
		printf("mock-backend listening on 127.0.0.1:%lld\n", port);
		fflush(stdout);
	}
	uv_run(&mock.loop, UV_RUN_DEFAULT);
	uv_loop_close(&mock.loop);

	json_decref(mock.cli_script);
	json_decref(mock.script);
	json_decref(mock.fifo);
	json_decref(mock.requests);
	buf_free(&mock.out);
	buf_free(&mock.ev);
	buf_free(&mock.tok);
	return status;
}

/* ---- mode "tools" (issue #12) ----
 *
 * A request with a non-empty "tools" array is answered as a model calling
 * them: a text delta "Checking.", then one call per tool (the first
 * MOCK_TOOL_CALLS), named after the request's tools, with ids "call_mock_<i>"
 * and the arguments of mock_tool_arguments. Both calls start in one chunk's
 * tool_calls array; their arguments follow interleaved by index, three
 * characters per piece (so pieces end inside \" and \u escapes), every third
 * step with both calls' pieces in one chunk. Then finish_reason "tool_calls",
 * a usage chunk and [DONE]. The body goes out as raw bytes in writes of
 * "chunk" bytes (default 61), inter_ms apart, so HTTP chunks cut events at
 * arbitrary places too. A request without tools gets the "stream" answer. */

#define MOCK_TOOL_CALLS 2
#define MOCK_TOOL_PIECE_CHARS 3

/* The JSON arguments text of call i (tests parse it back). */
static char *mock_tool_arguments(size_t i)
{
	return xasprintf("{\"city\":\"杭州 \\\"West Lake\\\"\",\"call\":%zu,\"sky\":\"\\ud83c\\udf27\"}", i);
}

static void mock_tools_event(struct buf *b, const char *model_json, const char *delta, const char *finish)
{
	buf_append_str(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":");
	buf_append_str(b, model_json);
	buf_append_str(b, ",\"choices\":[{\"index\":0,\"delta\":");
	buf_append_str(b, delta);
	buf_append_str(b, ",\"finish_reason\":");
	buf_append_str(b, finish ? finish : "null");
	buf_append_str(b, "}]}\n\n");
}

/* Appends {"index":i,"function":{"arguments":<the next piece of call i>}}
 * and advances *pos; false when call i has nothing left. */
static bool mock_tools_piece(struct buf *d, size_t i, const char *args, size_t *pos)
{
	size_t len = strlen(args), end = *pos;

	if (*pos >= len)
		return false;
	for (int k = 0; k < MOCK_TOOL_PIECE_CHARS && end < len; k++)
		end += util_utf8_seqlen(args + end, len - end);
	buf_printf(d, "{\"index\":%zu,\"function\":{\"arguments\":", i);
	buf_append_json_str(d, args + *pos, end - *pos);
	buf_append_str(d, "}}");
	*pos = end;
	return true;
}

static bool resp_start_tools(struct conn *c, const json_t *script, const json_t *body)
{
	const json_t *tools = json_object_get(body, "tools");
	const json_t *model = json_object_get(body, "model");
	struct resp *rs = &c->resp;
	size_t n = json_array_size(tools), pos[MOCK_TOOL_CALLS] = { 0 };
	char *args[MOCK_TOOL_CALLS];
	struct buf m, out, d;

	if (n == 0)
		return false;
	if (n > MOCK_TOOL_CALLS)
		n = MOCK_TOOL_CALLS;
	buf_init(&m);
	buf_init(&out);
	buf_init(&d);
	if (json_is_string(model))
		buf_append_json_str(&m, json_string_value(model), json_string_length(model));
	else
		buf_append_str(&m, "\"mock-model\"");

	mock_tools_event(&out, m.data, "{\"role\":\"assistant\",\"content\":\"Checking.\"}", NULL);
	buf_append_str(&d, "{\"tool_calls\":[");
	for (size_t i = 0; i < n; i++) {
		const json_t *name = json_object_get(json_object_get(json_array_get(tools, i), "function"), "name");
		args[i] = mock_tool_arguments(i);
		buf_printf(&d, "%s{\"index\":%zu,\"id\":\"call_mock_%zu\",\"type\":\"function\",\"function\":{\"name\":",
			   i ? "," : "", i, i);
		if (json_is_string(name))
			buf_append_json_str(&d, json_string_value(name), json_string_length(name));
		else
			buf_append_str(&d, "\"tool\"");
		buf_append_str(&d, ",\"arguments\":\"\"}}");
	}
	buf_append_str(&d, "]}");
	mock_tools_event(&out, m.data, d.data, NULL);
	for (size_t step = 0, more = 1; more; step++) {
		more = 0;
		for (size_t i = 0; i < n; i++) {
			buf_reset(&d);
			buf_append_str(&d, "{\"tool_calls\":[");
			if (!mock_tools_piece(&d, i, args[i], &pos[i]))
				continue;
			/* Every third step, the next call's piece joins this chunk. */
			if (step % 3 == 2 && i + 1 < n) {
				size_t before = d.len;
				buf_append_char(&d, ',');
				if (!mock_tools_piece(&d, i + 1, args[i + 1], &pos[i + 1]))
					d.len = before;
				i++;
			}
			buf_append_str(&d, "]}");
			mock_tools_event(&out, m.data, d.data, NULL);
			more = 1;
		}
	}
	mock_tools_event(&out, m.data, "{}", "\"tool_calls\"");
	buf_append_str(&out, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":");
	buf_append_str(&out, m.data);
	size_t prompt = json_array_size(json_object_get(body, "messages"));
	buf_printf(&out, ",\"choices\":[],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
			 "\"total_tokens\":%zu}}\n\n",
		   prompt, 10 * n, prompt + 10 * n);
	buf_append_str(&out, "data: [DONE]\n\n");
	for (size_t i = 0; i < n; i++)
		free(args[i]);
	buf_free(&m);
	buf_free(&d);

	rs->raw_owned = out.data;
	rs->raw = out.data;
	rs->raw_len = out.len;
	rs->chunk = (size_t)script_int(script, "chunk", 61);
	rs->inter_ms = (unsigned)script_int(script, "inter_ms", 0);
	rs->state = RESP_RAW;
	buf_printf(&mock.out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
			      "Transfer-Encoding: chunked\r\n%s\r\n",
		   rs->keep_alive ? "" : "Connection: close\r\n");
	resp_pump(c);
	return true;
}

/* ==== end of mode "tools" ==== */
