/* Unit tests for openai on the recorded provider streams in
 * shared/sse-corpus: each run through sse and the decoder whole, a byte at a
 * time, in network-sized reads and at every split point, checked against its
 * .json; and the fast path checked against jansson on every event. */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "openai.h"
#include "../openai_agree.h"
#include "openai_test.h"
#include "sse.h"

static const char *test_argv0 = "";

/* ---- the recorded streams ---- */

struct outcome {
	struct openai_decoder dec;
	struct buf text;
	struct buf reasoning;
	struct buf finish; /* the last non-null finish_reason */
	bool has_finish;
	bool has_usage;
	struct contract_usage usage;
	struct buf error;
	bool is_error;
	bool in_finish;
	bool done_feed;   /* [DONE] dispatched by sse_feed: strict WHATWG */
	bool done_finish; /* [DONE] dispatched only by sse_finish */
	int decode_failures;
	int events;
};

static void outcome_init(struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	openai_decoder_init(&o->dec);
	buf_append(&o->text, "", 0);
	buf_append(&o->reasoning, "", 0);
	buf_append(&o->finish, "", 0);
	buf_append(&o->error, "", 0);
}

static void outcome_free(struct outcome *o)
{
	openai_decoder_free(&o->dec);
	buf_free(&o->text);
	buf_free(&o->reasoning);
	buf_free(&o->finish);
	buf_free(&o->error);
}

static int outcome_cb(void *ud, const struct sse_event *ev)
{
	struct outcome *o = ud;
	struct openai_chunk c;
	char err[128];

	o->events++;
	if (openai_decode(&o->dec, ev->data, ev->data_len, &c, err, sizeof(err))) {
		print_error("event %d: %s\n", o->events, err);
		o->decode_failures++;
		return 0;
	}
	if (c.done) {
		if (o->in_finish)
			o->done_finish = true;
		else
			o->done_feed = true;
	}
	if (c.content)
		buf_append(&o->text, c.content, c.content_len);
	if (c.reasoning)
		buf_append(&o->reasoning, c.reasoning, c.reasoning_len);
	if (c.finish_reason) {
		buf_reset(&o->finish);
		buf_append_str(&o->finish, c.finish_reason);
		o->has_finish = true;
	}
	if (c.has_usage) {
		o->has_usage = true;
		o->usage = c.usage;
	}
	if (c.is_error) {
		o->is_error = true;
		buf_reset(&o->error);
		buf_append_str(&o->error, c.error_message);
	}
	return 0;
}

/* Feeds body in chunks of `step` bytes (0: whole), or as two feeds split at
 * `split` when step is SIZE_MAX, then finishes. */
static void corpus_run(const char *body, size_t len, size_t step, size_t split, struct outcome *o)
{
	struct sse_parser p;

	outcome_init(o);
	sse_init(&p, 65536);
	if (step == SIZE_MAX) {
		assert_int_equal(sse_feed(&p, body, split, outcome_cb, o), 0);
		assert_int_equal(sse_feed(&p, body + split, len - split, outcome_cb, o), 0);
	} else if (step == 0) {
		assert_int_equal(sse_feed(&p, body, len, outcome_cb, o), 0);
	} else {
		for (size_t off = 0; off < len; off += step) {
			size_t n = len - off < step ? len - off : step;
			assert_int_equal(sse_feed(&p, body + off, n, outcome_cb, o), 0);
		}
	}
	o->in_finish = true;
	assert_int_equal(sse_finish(&p, outcome_cb, o), 0);
	sse_free(&p);
}

static void corpus_check(const char *name, const char *how, const char *body, size_t len, json_t *expect,
			 const struct outcome *o)
{
	json_t *v;

	if (strcmp(how, "two feeds"))
		print_message("  %s (%s): %d events\n", name, how, o->events);
	assert_int_equal(o->decode_failures, 0);
	assert_string_equal(o->text.data, json_string_value(json_object_get(expect, "text")));
	v = json_object_get(expect, "reasoning");
	assert_string_equal(o->reasoning.data, json_is_string(v) ? json_string_value(v) : "");

	v = json_object_get(expect, "finish_reason");
	if (json_is_string(v)) {
		assert_true(o->has_finish);
		assert_string_equal(o->finish.data, json_string_value(v));
	} else {
		assert_false(o->has_finish);
	}

	v = json_object_get(expect, "usage");
	if (json_is_object(v)) {
		assert_true(o->has_usage);
		assert_int_equal(o->usage.prompt_tokens, json_integer_value(json_object_get(v, "prompt_tokens")));
		assert_int_equal(o->usage.completion_tokens,
				 json_integer_value(json_object_get(v, "completion_tokens")));
		assert_int_equal(o->usage.total_tokens, json_integer_value(json_object_get(v, "total_tokens")));
	} else {
		assert_false(o->has_usage);
	}

	v = json_object_get(expect, "error");
	if (json_is_object(v)) {
		const char *want = json_string_value(json_object_get(v, "message_contains"));
		assert_true(o->is_error);
		assert_non_null(want);
		if (!strstr(o->error.data, want))
			print_error("error message '%s' lacks '%s'\n", o->error.data, want);
		assert_non_null(strstr(o->error.data, want));
	} else {
		assert_false(o->is_error);
	}

	/* expect.done_marker follows WHATWG strictly: an event without its
	 * blank line is never dispatched. sse_finish dispatches it anyway, so
	 * a body ending "data: [DONE]\n" shows [DONE] only at finish. */
	v = json_object_get(expect, "done_marker");
	if (json_is_boolean(v))
		assert_int_equal(o->done_feed, json_is_true(v));
	bool has_done = memmem(body, len, "data: [DONE]", 12) != NULL;
	assert_int_equal(o->done_feed || o->done_finish, has_done);
	assert_false(o->done_feed && o->done_finish);
}

/* The events of one parse, each as its data bytes, for comparing splits
 * against the whole-body parse without decoding every time. */
struct evlist {
	struct buf bytes;
	size_t *off;
	size_t n, cap;
	size_t next;   /* comparing: the event expected next */
	bool mismatch; /* comparing: an event differed or was extra */
};

static int evlist_record(void *ud, const struct sse_event *ev)
{
	struct evlist *l = ud;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->off = xrealloc(l->off, (l->cap + 1) * sizeof(*l->off));
	}
	if (l->n == 0)
		l->off[0] = 0;
	buf_append(&l->bytes, ev->data, ev->data_len);
	l->off[++l->n] = l->bytes.len;
	return 0;
}

static int evlist_compare(void *ud, const struct sse_event *ev)
{
	struct evlist *l = ud;
	size_t i = l->next++;

	if (i >= l->n || l->off[i + 1] - l->off[i] != ev->data_len ||
	    memcmp(l->bytes.data + l->off[i], ev->data, ev->data_len))
		l->mismatch = true;
	return 0;
}

static void corpus_splits(const char *name, const char *body, size_t len)
{
	struct evlist ref = { 0 };
	struct sse_parser p;

	sse_init(&p, 65536);
	assert_int_equal(sse_feed(&p, body, len, evlist_record, &ref), 0);
	assert_int_equal(sse_finish(&p, evlist_record, &ref), 0);
	for (size_t k = 0; k <= len; k++) {
		ref.next = 0;
		ref.mismatch = false;
		assert_int_equal(sse_feed(&p, body, k, evlist_compare, &ref), 0);
		assert_int_equal(sse_feed(&p, body + k, len - k, evlist_compare, &ref), 0);
		assert_int_equal(sse_finish(&p, evlist_compare, &ref), 0);
		if (ref.mismatch || ref.next != ref.n)
			print_error("%s: split at %zu of %zu: %zu events, want %zu\n", name, k, len, ref.next, ref.n);
		assert_false(ref.mismatch);
		assert_int_equal(ref.next, ref.n);
	}
	print_message("  %s: %zu split points agree (%zu events)\n", name, len + 1, ref.n);
	sse_free(&p);
	buf_free(&ref.bytes);
	free(ref.off);
}

static int json_name_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return n > 5 && !strcmp(e->d_name + n - 5, ".json");
}

static void test_corpus(void **state)
{
	(void)state;
	char *dir = corpus_dir(test_argv0);
	struct dirent **names;
	int count, cases = 0;

	if (!dir) {
		print_message("sse corpus not found (set SSE_CORPUS_DIR or check out ../shared/sse-corpus), skipped\n");
		skip();
		return;
	}
	print_message("sse corpus: %s\n", dir);
	count = scandir(dir, &names, json_name_filter, alphasort);
	assert_true(count > 0);
	for (int i = 0; i < count; i++) {
		char *jpath = xasprintf("%s/%s", dir, names[i]->d_name);
		char *spath = xasprintf("%s/%.*s.sse", dir, (int)(strlen(names[i]->d_name) - 5), names[i]->d_name);
		const char *name = names[i]->d_name;
		json_error_t jerr;
		json_t *meta = json_load_file(jpath, 0, &jerr);
		size_t len = 0;
		char *body = read_whole_file(spath, &len);

		if (!meta || !body)
			print_error("cannot load %s or %s\n", jpath, spath);
		assert_non_null(meta);
		assert_non_null(body);
		json_t *expect = json_object_get(meta, "expect");
		json_int_t status = json_integer_value(json_object_get(meta, "http_status"));
		assert_true(json_is_object(expect));

		if (status == 200) {
			struct outcome o;
			corpus_run(body, len, 0, 0, &o);
			corpus_check(name, "whole", body, len, expect, &o);
			outcome_free(&o);
			corpus_run(body, len, 1, 0, &o);
			corpus_check(name, "byte at a time", body, len, expect, &o);
			outcome_free(&o);
			corpus_run(body, len, 1460, 0, &o);
			corpus_check(name, "1460-byte reads", body, len, expect, &o);
			outcome_free(&o);
			/* Small bodies get the full decode at every split; all
			 * get the event comparison at every split, which implies
			 * the same decoded result. */
			if (len <= 4096) {
				for (size_t k = 0; k <= len; k++) {
					corpus_run(body, len, SIZE_MAX, k, &o);
					corpus_check(name, "two feeds", body, len, expect, &o);
					outcome_free(&o);
				}
			}
			corpus_splits(name, body, len);
		} else {
			char msg[512];
			json_t *e = json_object_get(expect, "error");
			const char *want = json_string_value(json_object_get(e, "message_contains"));
			assert_non_null(want);
			assert_int_equal(json_integer_value(json_object_get(e, "status")), status);
			openai_error_message(body, len, msg, sizeof(msg));
			print_message("  %s: HTTP %d: %s\n", name, (int)status, msg);
			if (!strstr(msg, want))
				print_error("'%s' lacks '%s'\n", msg, want);
			assert_non_null(strstr(msg, want));
		}
		cases++;
		json_decref(meta);
		free(body);
		free(jpath);
		free(spath);
		free(names[i]);
	}
	free(names);
	free(dir);
	print_message("sse corpus: %d cases\n", cases);
}

/* ...and on every event of the recorded streams, each read after the one
 * before it (the decoder reuses a text chunk's shape for the next), where
 * the fast path must also be the path actually taken (else it buys nothing). */
struct agree_walk {
	struct openai_decoder d;
	struct buf prev;
	bool have_prev;
};

static int agree_cb(void *ud, const struct sse_event *ev)
{
	struct agree_walk *w = ud;
	struct openai_chunk c;
	const char *why = openai_agree_after(w->have_prev ? w->prev.data : NULL, w->prev.len, ev->data, ev->data_len);

	if (why)
		print_error("paths disagree on %s for: %.200s\n", why, ev->data);
	assert_null(why);
	(void)!openai_decode(&w->d, ev->data, ev->data_len, &c, NULL, 0);
	buf_reset(&w->prev);
	buf_append(&w->prev, ev->data, ev->data_len);
	w->have_prev = true;
	return 0;
}

static void test_fast_path_corpus(void **state)
{
	char *dir = corpus_dir(test_argv0);
	struct dirent **names;
	int count;
	struct agree_walk w;

	(void)state;
	if (!dir) {
		print_message("sse corpus not found, skipped\n");
		skip();
		return;
	}
	openai_decoder_init(&w.d);
	buf_init(&w.prev);
	count = scandir(dir, &names, json_name_filter, alphasort);
	for (int i = 0; i < count; i++) {
		char *spath = xasprintf("%s/%.*s.sse", dir, (int)(strlen(names[i]->d_name) - 5), names[i]->d_name);
		size_t len = 0;
		char *body = read_whole_file(spath, &len);
		struct sse_parser p;
		w.have_prev = false;
		sse_init(&p, 1 << 20);
		assert_int_equal(sse_feed(&p, body, len, agree_cb, &w), SSE_OK);
		(void)!sse_finish(&p, agree_cb, &w);
		sse_free(&p);
		free(body);
		free(spath);
		free(names[i]);
	}
	free(names);
	free(dir);
	print_message("fast path: %llu chunks (%llu as the previous shape), jansson: %llu\n", w.d.fast, w.d.same,
		      w.d.slow);
	assert_true(w.d.fast > 0);
	assert_true(w.d.slow * 20 < w.d.fast); /* the common shapes take the fast path */
	assert_true(w.d.same * 2 > w.d.fast);  /* and most text chunks repeat the one before */
	buf_free(&w.prev);
	openai_decoder_free(&w.d);
}
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_fast_path_corpus),
	};
	(void)argc;
	test_argv0 = argv[0];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
