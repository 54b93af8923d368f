/* util: see include/util.h. */
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void __attribute__((noreturn)) util__oom(size_t n)
{
	fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
	abort();
}

void util_oom(void)
{
	fprintf(stderr, "fatal: out of memory inside a library\n");
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		util__oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t n)
{
	void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
	if (!p)
		util__oom(nmemb * n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		util__oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b);
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	buf_reserve(&b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b.data, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return b.data;
}

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_append_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_append_char(struct buf *b, char c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0) {
		buf_reserve(b, 0); /* keep the NUL-termination promise */
		b->data[b->len] = '\0';
		return;
	}
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Returns the length of a valid UTF-8 sequence at s, or 0 if invalid. */
static size_t util__utf8_valid(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

size_t util_utf8_seqlen(const char *s, size_t avail)
{
	size_t n = util__utf8_valid((const unsigned char *)s, avail);
	return n ? n : 1;
}

void buf_append_json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	/* 0: copy; 1: needs an escape; 2: non-ASCII, validate. */
	static const unsigned char cls[256] = {
		[0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 2,
	};
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	char *o;

	/* Reserve for the worst case (every byte a \u00XX escape) once, so the
	 * loop below writes without a bounds check per byte. */
	buf_reserve(b, 6 * n + 2);
	o = b->data + b->len;
	*o++ = '"';
	while (p < end) {
		const unsigned char *run = p;
		while (p < end && !cls[*p])
			p++;
		if (p > run) {
			memcpy(o, run, (size_t)(p - run));
			o += p - run;
			continue;
		}
		unsigned char c = *p;
		if (cls[c] == 2) {
			size_t len = util__utf8_valid(p, (size_t)(end - p));
			if (len) {
				memcpy(o, p, len);
				o += len;
				p += len;
			} else {
				/* U+FFFD: 3 bytes for 1, within the 6-per-byte budget. */
				memcpy(o, "\xef\xbf\xbd", 3);
				o += 3;
				p++;
			}
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 0xf];
		}
		p++;
	}
	*o++ = '"';
	b->len = (size_t)(o - b->data);
	b->data[b->len] = '\0';
}

struct rcstr *rcstr_new(const char *s, size_t len)
{
	struct rcstr *r = xmalloc(sizeof(*r) + len + 1);

	r->refs = 1;
	r->len = len;
	memcpy(r->data, s, len);
	r->data[len] = '\0';
	return r;
}

struct rcstr *rcstr_ref(struct rcstr *r)
{
	r->refs++;
	return r;
}

void rcstr_unref(struct rcstr *r)
{
	if (r && --r->refs == 0)
		free(r);
}

void util_mask_secret(const char *key, char *out, size_t outlen)
{
	size_t n = key ? strlen(key) : 0;

	if (outlen == 0)
		return;
	if (n == 0)
		snprintf(out, outlen, "(none)");
	else if (n < 16)
		/* Too short to show 7 characters of it. */
		snprintf(out, outlen, "***");
	else
		snprintf(out, outlen, "%.3s...%s", key, key + n - 4);
}

void util_url_strip_userinfo(const char *url, char *out, size_t outlen)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	const char *end = host + strcspn(host, "/?#");
	const char *at = NULL;

	for (const char *p = host; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at) {
		snprintf(out, outlen, "%s", url);
		return;
	}
	snprintf(out, outlen, "%.*s%s", (int)(host - url), url, at + 1);
}

void util_redact(char *s, const char *secret)
{
	size_t n, len;

	if (!s || !secret || !(n = strlen(secret)))
		return;
	for (char *p = strstr(s, secret); p; p = strstr(p + n, secret))
		memset(p, '*', n);
	/* Text cut short elsewhere may end inside the secret: mask a tail
	 * that is a prefix of it (four characters or more: "sk-" says
	 * nothing). */
	len = strlen(s);
	for (size_t k = n - 1 < len ? n - 1 : len; k >= 4; k--) {
		if (!memcmp(s + len - k, secret, k)) {
			memset(s + len - k, '*', k);
			break;
		}
	}
}

void util_utf8_truncate(char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return;
	/* Step back over continuation bytes so no sequence is cut. */
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	s[max] = '\0';
}

unsigned long long util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}
