/* Integration: recorded provider streams (../shared/sse-corpus, read at test
 * time, never copied into the repository) served byte for byte by the mock,
 * whole and in small pieces; the daemon's events must add up to what each
 * case's .json expects. Skipped when the corpus is absent. */
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-corpus" } } };

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Case names (without extension), sorted; caller frees. */
static char **list_cases(const char *dir, size_t *n)
{
	DIR *dp = opendir(dir);
	char **names = NULL;
	struct dirent *de;
	*n = 0;
	assert_non_null(dp);
	while ((de = readdir(dp))) {
		size_t len = strlen(de->d_name);
		if (len > 5 && !strcmp(de->d_name + len - 5, ".json")) {
			names = xrealloc(names, (*n + 1) * sizeof(*names));
			names[(*n)++] = xstrndup(de->d_name, len - 5);
		}
	}
	closedir(dp);
	if (*n)
		qsort(names, *n, sizeof(*names), cmp_str);
	return names;
}

static size_t failures;

#define CHECK(cond, ...)                                                                                             \
	do {                                                                                                         \
		if (!(cond)) {                                                                                       \
			fprintf(stderr, "FAIL %s (chunk %d): ", name, chunk);                                        \
			fprintf(stderr, __VA_ARGS__);                                                                \
			fprintf(stderr, "\n");                                                                       \
			failures++;                                                                                  \
		}                                                                                                    \
	} while (0)

static void run_case(struct h_client *c, const char *dir, const char *name, int chunk, int n)
{
	char path[PATH_MAX], sse[PATH_MAX], abs[PATH_MAX], rid[128];
	json_error_t err;
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	snprintf(sse, sizeof(sse), "%s/%s.sse", dir, name);
	json_t *meta = json_load_file(path, 0, &err);
	if (!meta)
		fail_msg("%s: %s", path, err.text);
	if (!realpath(sse, abs))
		fail_msg("realpath %s failed", sse);
	json_t *expect = json_object_get(meta, "expect");
	json_t *script = json_pack("{s:s,s:I,s:s,s:s}", "mode", "raw", "status", h_jint(meta, "http_status"),
				   "content_type", h_jstr(meta, "content_type"), "raw_file", abs);
	if (chunk > 0)
		json_object_set_new(script, "chunk", json_integer(chunk));
	char *sd = json_dumps(script, JSON_COMPACT);
	h_mock_next(mock, "%s", sd);
	free(sd);
	json_decref(script);

	snprintf(rid, sizeof(rid), "r-corpus-%d", n);
	struct h_stream *s = h_stream_submit(c, rid, "replay");
	json_t *t = h_stream_finish(s, 30000);
	char *td = json_dumps(t, JSON_COMPACT);
	h_log("%s chunk %d: %zu events, terminal %.300s", name, chunk, h_stream_count(s), td);

	char *text = h_stream_text(s, "token");
	const char *want_text = h_jstr(expect, "text");
	CHECK(!strcmp(text, want_text), "text differs:\n got  \"%s\"\n want \"%s\"", text, want_text);
	free(text);
	json_t *want_reasoning = json_object_get(expect, "reasoning");
	if (json_is_string(want_reasoning)) {
		char *r = h_stream_text(s, "reasoning");
		CHECK(!strcmp(r, json_string_value(want_reasoning)), "reasoning differs:\n got  \"%s\"\n want \"%s\"", r,
		      json_string_value(want_reasoning));
		free(r);
	}

	json_t *want_err = json_object_get(expect, "error");
	if (json_is_object(want_err)) {
		CHECK(!strcmp(h_jstr(t, "type"), "error"), "expected an error event, got %s", td);
		json_t *msg = h_jpath(t, "error.message");
		const char *contains = h_jstr(want_err, "message_contains");
		CHECK(json_is_string(msg) && strstr(json_string_value(msg), contains),
		      "error message should contain \"%s\": %s", contains, td);
		long long status = h_jint(want_err, "status");
		if (status >= 400) {
			char st[32];
			snprintf(st, sizeof(st), "%lld", status);
			CHECK(json_is_string(h_jpath(t, "error.code")) &&
				      !strcmp(json_string_value(h_jpath(t, "error.code")), "upstream_http"),
			      "expected code upstream_http: %s", td);
			CHECK(json_is_string(msg) && strstr(json_string_value(msg), st),
			      "error message should carry the status %s: %s", st, td);
		}
	} else {
		CHECK(!strcmp(h_jstr(t, "type"), "done"), "expected done, got %s", td);
		json_t *fr = json_object_get(expect, "finish_reason");
		if (json_is_string(fr))
			CHECK(json_is_string(json_object_get(t, "finish_reason")) &&
				      !strcmp(json_string_value(json_object_get(t, "finish_reason")), json_string_value(fr)),
			      "finish_reason should be \"%s\": %s", json_string_value(fr), td);
		json_t *wu = json_object_get(expect, "usage");
		json_t *gu = json_object_get(t, "usage");
		if (json_is_object(wu)) {
			static const char *const keys[] = { "prompt_tokens", "completion_tokens", "total_tokens" };
			for (size_t i = 0; i < UTIL_ARRAY_LEN(keys); i++)
				CHECK(json_is_integer(json_object_get(gu, keys[i])) &&
					      json_integer_value(json_object_get(gu, keys[i])) ==
						      json_integer_value(json_object_get(wu, keys[i])),
				      "usage.%s should be %lld: %s", keys[i],
				      (long long)json_integer_value(json_object_get(wu, keys[i])), td);
		} else {
			CHECK(!gu || json_is_null(gu), "expected no usage: %s", td);
		}
	}
	free(td);
	h_stream_close(s);
	json_decref(meta);
}

static void test_corpus_replay(void **state)
{
	(void)state;
	const char *dir = h_corpus_dir();
	if (!dir) {
		h_log("SSE corpus not found (../shared/sse-corpus or $SSE_CORPUS): skipped");
		skip();
	}
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);
	h_use_mock(c, d, mock, "m-corpus", "sk-corpus-0123456789", -1);
	size_t n;
	char **names = list_cases(dir, &n);
	assert_true(n > 0);
	int k = 0;
	failures = 0;
	for (size_t i = 0; i < n; i++) {
		char sse[PATH_MAX];
		struct stat st;
		snprintf(sse, sizeof(sse), "%s/%s.sse", dir, names[i]);
		if (stat(sse, &st) != 0) {
			h_log("%s: no .sse beside the .json, skipped", names[i]);
			continue;
		}
		run_case(c, dir, names[i], 0, k++);
		/* Byte by byte for the short ones, odd 7-byte pieces for the rest. */
		run_case(c, dir, names[i], st.st_size <= 8192 ? 1 : 7, k++);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	assert_int_equal(failures, 0);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_corpus", &bed, H_TEST(test_corpus_replay))
