/* openai_test: what the openai unit tests (test_openai*.c) share: one chunk
 * decoded or the test fails, a whole file read, and where the recorded SSE
 * corpus is. Static inline with short names, as contract_check.h is for the
 * contract tests; include after cmocka.h. */
#ifndef SUNDYNIX_TEST_OPENAI_TEST_H
#define SUNDYNIX_TEST_OPENAI_TEST_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "openai.h"
#include "util.h"

/* Decodes s into c; fails the test, with the decoder's message, unless it
 * decodes. */
static inline void decode_ok(struct openai_decoder *d, const char *s, struct openai_chunk *c)
{
	char err[128] = "";
	int rc = openai_decode(d, s, strlen(s), c, err, sizeof(err));

	if (rc)
		print_error("decode failed: %s\n", err);
	assert_int_equal(rc, 0);
}

/* The regular file at path, NUL-terminated (caller frees), its length in
 * *len; NULL when it cannot be read. */
static inline char *read_whole_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;

	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
		fclose(f);
		return NULL;
	}
	char *data = xmalloc((size_t)st.st_size + 1);
	*len = fread(data, 1, (size_t)st.st_size, f);
	data[*len] = '\0';
	fclose(f);
	return data;
}

static inline bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* SSE_CORPUS_DIR, else ../shared/sse-corpus from the repository root, else
 * the same found by walking up from the test binary argv0 (build/tests or
 * build/asan/tests). Caller frees; NULL when there is none. */
static inline char *corpus_dir(const char *argv0)
{
	const char *env = getenv("SSE_CORPUS_DIR");
	const char *slash = strrchr(argv0, '/');
	char path[PATH_MAX];

	if (env && *env)
		return is_dir(env) ? xstrdup(env) : NULL;
	if (is_dir("../shared/sse-corpus"))
		return xstrdup("../shared/sse-corpus");
	for (int up = 1; slash && up <= 5; up++) {
		struct buf b;
		buf_init(&b);
		buf_printf(&b, "%.*s", (int)(slash - argv0), argv0);
		for (int i = 0; i < up; i++)
			buf_append_str(&b, "/..");
		buf_append_str(&b, "/shared/sse-corpus");
		if (b.len < sizeof(path) && is_dir(b.data)) {
			char *r = xstrdup(realpath(b.data, path) ? path : b.data);
			buf_free(&b);
			return r;
		}
		buf_free(&b);
	}
	return NULL;
}

#endif
