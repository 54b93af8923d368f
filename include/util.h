/* util: the allocation family (out of memory is fatal), a growable byte
 * buffer, JSON string escaping and secret redaction helpers.
 * Owns nothing beyond what callers hand it; no I/O except the abort message. */
#ifndef SUNDYNIX_UTIL_H
#define SUNDYNIX_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define UTIL_WUR __attribute__((warn_unused_result))
#define UTIL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t nmemb, size_t n) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));
char *xasprintf(const char *fmt, ...) UTIL_PRINTF(1, 2) __attribute__((returns_nonnull));
/* A library reported that it could not allocate (curl_easy_init returned
 * NULL, say): the same policy as the x* family, fatal. */
void util_oom(void) __attribute__((noreturn));

/* A growable byte buffer. Always NUL-terminated after any append (the NUL is
 * not counted in len), so data can be handed to C string functions. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the allocation */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_append_char(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) UTIL_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included. Invalid UTF-8 bytes
 * become U+FFFD so the output is always valid JSON. */
void buf_append_json_str(struct buf *b, const char *s, size_t n);

/* An immutable, reference-counted byte string (NUL-terminated): one upstream
 * request body shared by the request, which keeps it for retries, and the
 * attempt that curl is sending. Loop thread only. */
struct rcstr {
	int refs;
	size_t len;
	char data[];
};

struct rcstr *rcstr_new(const char *s, size_t len) __attribute__((returns_nonnull));
struct rcstr *rcstr_ref(struct rcstr *r);
void rcstr_unref(struct rcstr *r); /* NULL is fine */

/* Writes key masked as "abc...wxyz" (first 3 and last 4 characters); keys of
 * fewer than 16 characters become "***". An empty key becomes "(none)". */
void util_mask_secret(const char *key, char *out, size_t outlen);
/* Copies one url into out without any "user:pass@" userinfo (one URL: split
 * comma-separated server lists first). */
void util_url_strip_userinfo(const char *url, char *out, size_t outlen);
/* Replaces every occurrence of secret (if non-empty) in s, in place, with '*'
 * characters, so text from a peer can never carry a key into a log or event;
 * also a tail of s that is the start of the secret (text truncated earlier
 * may end inside it). */
void util_redact(char *s, const char *secret);
/* Truncates s to at most max bytes without cutting a UTF-8 sequence. */
void util_utf8_truncate(char *s, size_t max);
/* Length in bytes of the UTF-8 sequence starting at s (1 for invalid bytes). */
size_t util_utf8_seqlen(const char *s, size_t avail);
/* Monotonic milliseconds. */
unsigned long long util_now_ms(void);

#endif
