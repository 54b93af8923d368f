/* Unit tests for sse: one test per WHATWG rule we rely on, and a property
 * test that every way of cutting a stream into feeds yields the same events.
 * Events are rendered as text ("event|data;" with bytes escaped) so a
 * mismatch prints both sides in full. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"

#define S(lit) lit, sizeof(lit) - 1

struct rec {
	struct buf out;
	int n;
	int stop_at; /* return stop_rc from the stop_at-th event (1-based) */
	int stop_rc;
};

static void rec_init(struct rec *r)
{
	buf_init(&r->out);
	buf_append(&r->out, "", 0);
	r->n = 0;
	r->stop_at = 0;
	r->stop_rc = 0;
}

static void render(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n')
			buf_append_str(b, "\\n");
		else if (c == '\r')
			buf_append_str(b, "\\r");
		else if (c < 0x20 || c == 0x7f || c == '\\' || c == '|' || c == ';')
			buf_printf(b, "\\x%02x", c);
		else
			buf_append_char(b, (char)c);
	}
}

static int rec_cb(void *ud, const struct sse_event *ev)
{
	struct rec *r = ud;

	/* The header promises NUL-terminated fields and "" for no event. */
	assert_non_null(ev->data);
	assert_non_null(ev->event);
	assert_int_equal(ev->data[ev->data_len], '\0');
	assert_int_equal(ev->event[ev->event_len], '\0');
	render(&r->out, ev->event, ev->event_len);
	buf_append_char(&r->out, '|');
	render(&r->out, ev->data, ev->data_len);
	buf_append_char(&r->out, ';');
	r->n++;
	return r->n == r->stop_at ? r->stop_rc : 0;
}

/* Feeds s in chunks of the given sizes (one feed of everything when nsizes
 * is 0), then finishes; returns the rendering, with "F:" before the events
 * that sse_finish dispatched and "!rc" for a nonzero return. Caller frees. */
static char *run(const char *s, size_t n, size_t max_line, const size_t *sizes, size_t nsizes, int stop_at)
{
	struct sse_parser p;
	struct rec r;
	size_t off = 0;
	int rc = 0;

	sse_init(&p, max_line);
	rec_init(&r);
	r.stop_at = stop_at;
	r.stop_rc = 77;
	if (nsizes == 0) {
		rc = sse_feed(&p, s, n, rec_cb, &r);
		off = n;
	}
	for (size_t i = 0; i < nsizes && !rc; i++) {
		assert_true(off + sizes[i] <= n);
		rc = sse_feed(&p, s + off, sizes[i], rec_cb, &r);
		off += sizes[i];
	}
	if (!rc) {
		assert_int_equal(off, n);
		buf_append_str(&r.out, "F:");
		rc = sse_finish(&p, rec_cb, &r);
	}
	if (rc)
		buf_printf(&r.out, "!%d", rc);
	sse_free(&p);
	return r.out.data;
}

static char *run_whole(const char *s, size_t n, size_t max_line)
{
	return run(s, n, max_line, NULL, 0, 0);
}

static char *run_bytes(const char *s, size_t n, size_t max_line)
{
	size_t *sizes = xmalloc((n ? n : 1) * sizeof(*sizes));
	for (size_t i = 0; i < n; i++)
		sizes[i] = 1;
	char *out = run(s, n, max_line, sizes, n, 0);
	free(sizes);
	return out;
}

static char *run_split2(const char *s, size_t n, size_t max_line, size_t k)
{
	size_t sizes[2] = { k, n - k };
	return run(s, n, max_line, sizes, 2, 0);
}

static uint64_t rng_next(uint64_t *st)
{
	uint64_t x = *st;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *st = x;
}

/* Random chunk sizes, including empty feeds, from a fixed seed. */
static char *run_random(const char *s, size_t n, size_t max_line, uint64_t seed)
{
	size_t *sizes = xmalloc((2 * n + 2) * sizeof(*sizes));
	size_t k = 0, left = n;
	uint64_t st = seed * 2654435761u + 1;

	while (left) {
		uint64_t r = rng_next(&st);
		size_t sz = r % 8 == 0 ? 0 : r % 8 == 1 ? 1 + (size_t)(r >> 8) % 64 : 1 + (size_t)(r >> 8) % 5;
		if (sz > left)
			sz = left;
		if (sz == 0 && k >= n)
			sz = 1; /* at most n empty feeds, so sizes cannot overflow */
		sizes[k++] = sz;
		left -= sz;
	}
	char *out = run(s, n, max_line, sizes, k, 0);
	free(sizes);
	return out;
}

/* Asserts that s (whole, byte by byte, at every two-feed split and in random
 * chunks) renders as want. */
static void check_all(const char *s, size_t n, size_t max_line, const char *want)
{
	char *got = run_whole(s, n, max_line);
	assert_string_equal(got, want);
	free(got);
	got = run_bytes(s, n, max_line);
	assert_string_equal(got, want);
	free(got);
	for (size_t k = 0; k <= n; k++) {
		got = run_split2(s, n, max_line, k);
		if (strcmp(got, want))
			print_error("split at %zu of %zu\n", k, n);
		assert_string_equal(got, want);
		free(got);
	}
	for (uint64_t seed = 1; seed <= 20; seed++) {
		got = run_random(s, n, max_line, seed);
		if (strcmp(got, want))
			print_error("random chunking, seed %llu\n", (unsigned long long)seed);
		assert_string_equal(got, want);
		free(got);
	}
}

#define CHECK(lit, want) check_all(S(lit), 4096, want)

static void test_lf(void **state)
{
	(void)state;
	CHECK("data: a\n\ndata: b\n\n", "|a;|b;F:");
}

static void test_cr(void **state)
{
	(void)state;
	CHECK("data: a\r\rdata: b\r\r", "|a;|b;F:");
}

static void test_crlf(void **state)
{
	(void)state;
	CHECK("data: a\r\n\r\ndata: b\r\n\r\n", "|a;|b;F:");
}

static void test_lf_cr_is_two_line_ends(void **state)
{
	(void)state;
	/* LF then CR is two line ends: the CR line is blank and dispatches. */
	CHECK("data: a\n\rdata: b\r\n\n", "|a;|b;F:");
}

static void test_cr_lf_split_across_feeds(void **state)
{
	(void)state;
	/* If the LF opening the second feed were a line end of its own, the
	 * blank line would dispatch "a" alone. */
	size_t sizes[] = { 8, 21 };
	const char s[] = "data: a\r\ndata: b\r\n\r\ndata: c\r\n";
	char *got = run(s, sizeof(s) - 1, 4096, sizes, 2, 0);
	assert_string_equal(got, "|a\\nb;F:|c;");
	free(got);

	/* A CR at the end of a feed followed by a feed of only LF. */
	size_t sizes2[] = { 8, 1, 8, 1, 1 };
	const char s2[] = "data: a\r\ndata: b\r\r\n";
	got = run(s2, sizeof(s2) - 1, 4096, sizes2, 5, 0);
	assert_string_equal(got, "|a\\nb;F:");
	free(got);
	CHECK("data: a\r\ndata: b\r\n\r\ndata: c\r\n", "|a\\nb;F:|c;");
}

static void test_bom(void **state)
{
	(void)state;
	CHECK("\xef\xbb\xbf" "data: a\n\n", "|a;F:");
	/* Only one BOM, and only at the very start. */
	CHECK("\xef\xbb\xbf\xef\xbb\xbf" "data: a\n\ndata: b\n\n", "|b;F:");
	CHECK("data: a\n\n\xef\xbb\xbf" "data: b\n\n", "|a;F:");
	/* A BOM that is no BOM: its bytes stay the start of the first line. */
	CHECK("\xef\xbb" "data: a\n\ndata: b\n\n", "|b;F:");
	CHECK("\xef\n" "data: a\n\n", "|a;F:");
	CHECK("\xef\xbb\xbf", "F:");
	CHECK("\xef\xbb\xbf\n\ndata: x\n\n", "|x;F:");
}

static void test_bom_split(void **state)
{
	(void)state;
	const char s[] = "\xef\xbb\xbf" "data: a\n\n";
	size_t sizes[] = { 1, 1, 1, 9 };
	char *got = run(s, sizeof(s) - 1, 4096, sizes, 4, 0);
	assert_string_equal(got, "|a;F:");
	free(got);
	size_t sizes2[] = { 2, 10 };
	got = run(s, sizeof(s) - 1, 4096, sizes2, 2, 0);
	assert_string_equal(got, "|a;F:");
	free(got);
}

static void test_data_space(void **state)
{
	(void)state;
	CHECK("data:a\n\n", "|a;F:");
	CHECK("data: a\n\n", "|a;F:");
	/* Only one space goes. */
	CHECK("data:  a \n\n", "| a ;F:");
	CHECK("data:\ta\n\n", "|\\x09a;F:");
}

static void test_empty_data_dispatches(void **state)
{
	(void)state;
	/* WHATWG checks for an empty buffer before dropping the final LF, so
	 * a lone empty data line is an event with empty data. */
	CHECK("data:\n\n", "|;F:");
	CHECK("data: \n\n", "|;F:");
	CHECK("\n\n\n", "F:");
}

static void test_multiline_data(void **state)
{
	(void)state;
	CHECK("data: a\ndata:\ndata: b\n\n", "|a\\n\\nb;F:");
	CHECK("data: {\"x\":\ndata: 1}\n\n", "|{\"x\":\\n1};F:");
}

static void test_comments(void **state)
{
	(void)state;
	CHECK(": keep-alive\n\n: hi\ndata: a\n:data: b\n\n", "|a;F:");
	CHECK(":\n\n", "F:");
}

static void test_event_field(void **state)
{
	(void)state;
	/* The type applies to one event and a blank line clears it, even when
	 * nothing was dispatched. */
	CHECK("event: ping\ndata: x\n\ndata: y\n\n", "ping|x;|y;F:");
	CHECK("event: e\n\ndata: z\n\n", "|z;F:");
	CHECK("event: a\nevent: b\ndata: z\n\n", "b|z;F:");
	CHECK("event:error\ndata: z\n\n", "error|z;F:");
}

static void test_ignored_fields(void **state)
{
	(void)state;
	CHECK("id: 5\nretry: 100\nfoo: bar\ndata: x\n\n", "|x;F:");
	/* Field names are case-sensitive and exact. */
	CHECK("Data: x\ndata : y\ndatas: z\n\n", "F:");
	CHECK("id\nretry\n\ndata: w\n\n", "|w;F:");
}

static void test_field_without_colon(void **state)
{
	(void)state;
	CHECK("data\n\n", "|;F:");
	CHECK("data\ndata: x\n\n", "|\\nx;F:");
	CHECK("event: e\nevent\ndata: x\n\n", "|x;F:");
}

static void test_utf8_split(void **state)
{
	(void)state;
	CHECK("data: h\xc3\xa9llo \xf0\x9f\x98\x80\n\n", "|h\xc3\xa9llo \xf0\x9f\x98\x80;F:");
	CHECK("event: \xe2\x82\xac\ndata: \xe2\x82\xac\n\n", "\xe2\x82\xac|\xe2\x82\xac;F:");
}

static void test_nul_in_data(void **state)
{
	(void)state;
	CHECK("data: a\0b\n\n", "|a\\x00b;F:");
}

static void test_line_too_long(void **state)
{
	(void)state;
	/* "data: 0123456789" is 16 bytes: exactly at the cap is fine. */
	check_all(S("data: 0123456789\n\n"), 16, "|0123456789;F:");
	check_all(S("data: a\n\ndata: 01234567890\n\ndata: b\n\n"), 16, "|a;!-1");
	/* Comments and unknown fields count too; an unterminated line fails
	 * as soon as it grows past the cap. */
	check_all(S(": 0123456789abcdef\n"), 16, "!-1");
	check_all(S("data: 01234567890"), 16, "!-1");
	check_all(S("data: 0123456789"), 16, "F:|0123456789;");
}

static void test_line_too_long_sticky_and_bounded(void **state)
{
	(void)state;
	struct sse_parser p;
	struct rec r;
	char chunk[4096];

	memset(chunk, 'x', sizeof(chunk));
	sse_init(&p, 1000);
	rec_init(&r);
	assert_int_equal(sse_feed(&p, S("data: a\n\n"), rec_cb, &r), SSE_OK);
	int rc = 0;
	for (int i = 0; i < 2560 && !rc; i++) /* 10 MiB offered */
		rc = sse_feed(&p, chunk, sizeof(chunk), rec_cb, &r);
	assert_int_equal(rc, SSE_ERR_LINE_TOO_LONG);
	/* It stopped at the first chunk that crossed the cap. */
	assert_true(p.line.cap <= 2048);
	assert_int_equal(sse_feed(&p, S("\n\ndata: b\n\n"), rec_cb, &r), SSE_ERR_LINE_TOO_LONG);
	assert_int_equal(sse_finish(&p, rec_cb, &r), SSE_ERR_LINE_TOO_LONG);
	assert_string_equal(r.out.data, "|a;");
	sse_free(&p);
	buf_free(&r.out);

	/* Byte at a time the line buffer never holds more than the cap. */
	sse_init(&p, 1000);
	rec_init(&r);
	rc = 0;
	for (int i = 0; i < 5000 && !rc; i++)
		rc = sse_feed(&p, "y", 1, rec_cb, &r);
	assert_int_equal(rc, SSE_ERR_LINE_TOO_LONG);
	assert_true(p.line.cap <= 2048);
	sse_free(&p);
	buf_free(&r.out);
}

static void test_data_cap(void **state)
{
	(void)state;
	/* The joined data of one event is capped at max_line as well. */
	check_all(S("data: 0123456789\ndata: 01234\n\n"), 16, "|0123456789\\n01234;F:");
	check_all(S("data: 0123456789\ndata: 012345\n\n"), 16, "!-1");
	check_all(S("data\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata"
		    "\ndata\ndata\ndata\ndata\n\n"),
		  16, "!-1");
}

static void test_finish_pending(void **state)
{
	(void)state;
	/* A real body ends "data: [DONE]\n" with no blank line. */
	CHECK("data: a\n\ndata: [DONE]\n", "|a;F:|[DONE];");
	CHECK("data: [DONE]\r\n", "F:|[DONE];");
	/* A last line without any line end counts as well. */
	CHECK("data: a\n\ndata: [DONE]", "|a;F:|[DONE];");
	CHECK("data: a\ndata: b", "F:|a\\nb;");
	CHECK("data: a\n\n", "|a;F:");
	CHECK("event: x\n", "F:");
}

static void test_finish_resets(void **state)
{
	(void)state;
	struct sse_parser p;
	struct rec r;

	sse_init(&p, 100);
	rec_init(&r);
	assert_int_equal(sse_feed(&p, S("\xef\xbb\xbf" "data: a\r"), rec_cb, &r), 0);
	assert_int_equal(sse_finish(&p, rec_cb, &r), 0);
	assert_int_equal(sse_finish(&p, rec_cb, &r), 0);
	/* A new stream may start with its own BOM, and its leading LF is not
	 * the tail of the old CR. */
	assert_int_equal(sse_feed(&p, S("\xef\xbb\xbf" "data: b\n\n"), rec_cb, &r), 0);
	assert_int_equal(sse_feed(&p, S("\ndata: c\n\n"), rec_cb, &r), 0);
	assert_string_equal(r.out.data, "|a;|b;|c;");
	sse_free(&p);
	buf_free(&r.out);
}

static void test_stop(void **state)
{
	(void)state;
	const char s[] = "data: a\n\ndata: b\n\ndata: c\n\n";
	char *got = run(s, sizeof(s) - 1, 100, NULL, 0, 2);
	assert_string_equal(got, "|a;|b;!77");
	free(got);
	size_t sizes[] = { 3, 3, 3, 3, 3, 3, 3, 3, 3 };
	got = run(s, sizeof(s) - 1, 100, sizes, 9, 2);
	assert_string_equal(got, "|a;|b;!77");
	free(got);

	/* sse_finish passes the callback's value on as well. */
	struct sse_parser p;
	struct rec r;
	sse_init(&p, 100);
	rec_init(&r);
	r.stop_at = 1;
	r.stop_rc = -5;
	assert_int_equal(sse_feed(&p, S("data: [DONE]\n"), rec_cb, &r), 0);
	assert_int_equal(sse_finish(&p, rec_cb, &r), -5);
	sse_free(&p);
	buf_free(&r.out);
}

static void test_empty_feeds(void **state)
{
	(void)state;
	struct sse_parser p;
	struct rec r;

	sse_init(&p, 100);
	rec_init(&r);
	assert_int_equal(sse_feed(&p, NULL, 0, rec_cb, &r), 0);
	assert_int_equal(sse_feed(&p, S("data: a\r"), rec_cb, &r), 0);
	assert_int_equal(sse_feed(&p, "", 0, rec_cb, &r), 0);
	assert_int_equal(sse_feed(&p, S("\n\n"), rec_cb, &r), 0);
	assert_string_equal(r.out.data, "|a;");
	sse_free(&p);
	buf_free(&r.out);
}

/* Streams for the property test: whole, byte by byte, every two-feed split
 * and random chunkings must all render alike. */
static const struct {
	const char *s;
	size_t n;
	size_t max_line;
} prop_streams[] = {
	{ S("data: a\n\ndata: b\n\n"), 4096 },
	{ S("\xef\xbb\xbf" ": c\r\nevent: x\r\ndata: 1\r\ndata:2\r\n\r\ndata: [DONE]\r\n"), 4096 },
	{ S("\r\r\n\n\r\ndata\rdata:\n\rdata: \xf0\x9f\x98\x80\r\r"), 4096 },
	{ S("data: {\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9\"}}]}\n\n: keep-alive\n\nid: 1\nretry: 5\n"
	    "data: [DONE]\n"), 4096 },
	{ S("\xef\xbb" "data: a\n\n\xef\xbb\xbf" "data: b\n\ndata: c\n\n"), 4096 },
	{ S("data: short\n\ndata: this line is far too long\n\ndata: x\n\n"), 16 },
	{ S("data: 0123456789\ndata: 0123\n\ndata: 0123456789\ndata: 01234\n\n"), 16 },
	{ S("event\nevent: e\n\nevent: f\ndata\n\n:\n:x\r\n\r"), 4096 },
	{ S("data: a\0b\r\n\r\ndata:\0\n\n"), 4096 },
	{ S("data: unterminated"), 4096 },
	{ S("\n"), 4096 },
	{ S(""), 4096 },
};

static void test_property_chunking(void **state)
{
	(void)state;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(prop_streams); i++) {
		char *want = run_whole(prop_streams[i].s, prop_streams[i].n, prop_streams[i].max_line);
		check_all(prop_streams[i].s, prop_streams[i].n, prop_streams[i].max_line, want);
		free(want);
	}
}

/* Random streams over a small alphabet rich in line ends, colons and field
 * names, so the chunking property meets cases no one wrote by hand. */
static void test_property_random_streams(void **state)
{
	(void)state;
	static const char *const atoms[] = {
		"\n", "\r", "\r\n", "data", "data:", "data: ", "event:", ":", " ", "x", "\xc3\xa9", "\xef\xbb\xbf", "id: 1",
	};
	uint64_t st = 0x5eed;
	char s[256];

	for (int iter = 0; iter < 300; iter++) {
		size_t n = 0;
		size_t natoms = 1 + rng_next(&st) % 40;
		for (size_t a = 0; a < natoms; a++) {
			const char *t = atoms[rng_next(&st) % UTIL_ARRAY_LEN(atoms)];
			size_t tl = strlen(t);
			if (n + tl > sizeof(s))
				break;
			memcpy(s + n, t, tl);
			n += tl;
		}
		size_t max_line = iter % 3 ? 4096 : 4 + iter % 13;
		char *want = run_whole(s, n, max_line);
		check_all(s, n, max_line, want);
		free(want);
	}
}

/* llama.cpp's "error:" field is carried as the data of an "error" event. */
static int err_cb(void *ud, const struct sse_event *ev)
{
	int *seen = ud;
	assert_int_equal(ev->event_len, 5);
	assert_memory_equal(ev->event, "error", 5);
	assert_string_equal(ev->data, "{\"message\":\"boom\"}");
	(*seen)++;
	return 0;
}

static void test_error_field(void **state)
{
	static const char in[] = "error: {\"message\":\"boom\"}\n\n";
	struct sse_parser p;
	int seen = 0;

	(void)state;
	sse_init(&p, 1024);
	assert_int_equal(sse_feed(&p, in, sizeof(in) - 1, err_cb, &seen), SSE_OK);
	assert_int_equal(seen, 1);
	sse_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_field),
		cmocka_unit_test(test_lf),
		cmocka_unit_test(test_cr),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_lf_cr_is_two_line_ends),
		cmocka_unit_test(test_cr_lf_split_across_feeds),
		cmocka_unit_test(test_bom),
		cmocka_unit_test(test_bom_split),
		cmocka_unit_test(test_data_space),
		cmocka_unit_test(test_empty_data_dispatches),
		cmocka_unit_test(test_multiline_data),
		cmocka_unit_test(test_comments),
		cmocka_unit_test(test_event_field),
		cmocka_unit_test(test_ignored_fields),
		cmocka_unit_test(test_field_without_colon),
		cmocka_unit_test(test_utf8_split),
		cmocka_unit_test(test_nul_in_data),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_line_too_long_sticky_and_bounded),
		cmocka_unit_test(test_data_cap),
		cmocka_unit_test(test_finish_pending),
		cmocka_unit_test(test_finish_resets),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_empty_feeds),
		cmocka_unit_test(test_property_chunking),
		cmocka_unit_test(test_property_random_streams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
