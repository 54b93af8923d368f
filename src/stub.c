/* stub: see include/stub.h. */
#include "stub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define STUB_ECHO_MAX 200
#define STUB_NAME_MAX 64

struct stub {
	uv_timer_t timer;
	char *text;
	size_t len, pos;
	long long inter_ms;
	long long chars;
	const struct upstream_cbs *cbs;
	void *ud;
};

/* Keys that introduce a name in a profile, most specific first. */
static const char *const stub__name_keys[] = { "姓名", "名字", "称呼", "name", "Name", "NAME" };

int stub_profile_name(const char *profile, char *out, size_t outlen)
{
	if (!profile)
		return -1;
	for (size_t k = 0; k < UTIL_ARRAY_LEN(stub__name_keys); k++) {
		const char *key = stub__name_keys[k];
		size_t klen = strlen(key);
		for (const char *p = strstr(profile, key); p; p = strstr(p + 1, key)) {
			/* ASCII keys must start a word: "username" is not "name". */
			if (p > profile && (p[-1] == '_' || ((p[-1] | 0x20) >= 'a' && (p[-1] | 0x20) <= 'z')))
				continue;
			const char *v = p + klen;
			while (*v == ' ')
				v++;
			if (*v == ':')
				v++;
			else if (!strncmp(v, "：", 3))
				v += 3;
			else
				continue;
			while (*v == ' ' || *v == '\t')
				v++;
			size_t n = 0;
			/* Up to the next separator: ; , newline or their full-width forms. */
			while (v[n] && !strchr(";,\n\r|", v[n]) && strncmp(v + n, "；", 3) &&
			       strncmp(v + n, "，", 3) && strncmp(v + n, "。", 3))
				n++;
			while (n && v[n - 1] == ' ')
				n--;
			if (!n)
				continue;
			if (n > STUB_NAME_MAX)
				n = STUB_NAME_MAX;
			snprintf(out, outlen, "%.*s", (int)n, v);
			util_utf8_truncate(out, n);
			return 0;
		}
	}
	return -1;
}

char *stub_reply(const char *profile, const char *last_user)
{
	char name[STUB_NAME_MAX + 1];
	struct buf b;

	buf_init(&b);
	if (stub_profile_name(profile, name, sizeof(name)) == 0)
		buf_printf(&b, "Hello, %s! ", name);
	else
		buf_append_str(&b, "Hello! ");
	if (last_user && *last_user) {
		char echo[STUB_ECHO_MAX + 1];
		snprintf(echo, sizeof(echo), "%s", last_user);
		util_utf8_truncate(echo, STUB_ECHO_MAX);
		buf_printf(&b, "You said: \"%s%s\". ", echo, strlen(last_user) > strlen(echo) ? "..." : "");
	}
	buf_append_str(&b, "No model is configured yet, so this is a placeholder reply from sundynix-dispatcher.");
	return b.data;
}

static void stub__closed(uv_handle_t *h)
{
	struct stub *s = h->data;
	free(s->text);
	free(s);
}

static void stub__tick(uv_timer_t *t)
{
	struct stub *s = t->data;

	if (s->pos < s->len) {
		size_t n = util_utf8_seqlen(s->text + s->pos, s->len - s->pos);
		s->chars++;
		s->cbs->delta(s->ud, CONTRACT_TOKEN, s->text + s->pos, n);
		s->pos += n;
		uv_timer_start(&s->timer, stub__tick, (uint64_t)s->inter_ms, 0);
		return;
	}
	struct upstream_result r = { 0 };
	r.finish_reason = "stop";
	r.model = "stub";
	r.has_usage = true;
	r.usage.completion_tokens = s->chars;
	r.usage.total_tokens = s->chars;
	uv_close((uv_handle_t *)&s->timer, stub__closed);
	s->cbs->end(s->ud, &r);
}

struct stub *stub_start(uv_loop_t *loop, char *text, long long ttft_ms, long long inter_ms,
			const struct upstream_cbs *cbs, void *ud)
{
	struct stub *s = xcalloc(1, sizeof(*s));

	s->text = text;
	s->len = strlen(text);
	s->inter_ms = inter_ms;
	s->cbs = cbs;
	s->ud = ud;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	uv_timer_start(&s->timer, stub__tick, (uint64_t)ttft_ms, 0);
	return s;
}

void stub_cancel(struct stub *s)
{
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, stub__closed);
}
