/* Unit tests for record: seq numbering, replay from any seq, the text so far,
 * and the bound (oldest entries dropped, and said so). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "record.h"

struct seen {
	unsigned long long seq[64];
	enum record_kind kind[64];
	char data[64][64];
	int n;
};

static void collect(void *ud, unsigned long long seq, enum record_kind kind, const char *data, size_t len)
{
	struct seen *s = ud;

	assert_true(s->n < 64 && len < 64);
	s->seq[s->n] = seq;
	s->kind[s->n] = kind;
	memcpy(s->data[s->n], data, len);
	s->data[s->n][len] = '\0';
	s->n++;
}

static void test_seq_and_replay(void **state)
{
	struct record r;
	struct seen s = { 0 };

	(void)state;
	record_init(&r, 0, 4096);
	assert_int_equal(record_add(&r, RECORD_REASONING, "think", 5), 0);
	assert_int_equal(record_add(&r, RECORD_TOKEN, "Hel", 3), 1);
	assert_int_equal(record_add(&r, RECORD_KEEPALIVE, "ignored", 7), 2);
	assert_int_equal(record_add(&r, RECORD_TOKEN, "lo", 2), 3);
	assert_int_equal(record_add(&r, RECORD_JSON, "{\"type\":\"done\"}", 15), 4);
	assert_int_equal(r.next_seq, 5);

	assert_int_equal(record_replay(&r, 2, collect, &s), 2);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.seq[0], 2);
	assert_int_equal(s.kind[0], RECORD_KEEPALIVE);
	assert_string_equal(s.data[0], "");
	assert_string_equal(s.data[1], "lo");
	assert_int_equal(s.kind[2], RECORD_JSON);
	assert_string_equal(s.data[2], "{\"type\":\"done\"}");

	s.n = 0;
	assert_int_equal(record_replay(&r, 5, collect, &s), 5);
	assert_int_equal(s.n, 0);

	struct buf t;
	buf_init(&t);
	record_text(&r, RECORD_TOKEN, &t);
	assert_string_equal(t.data, "Hello");
	buf_reset(&t);
	record_text(&r, RECORD_REASONING, &t);
	assert_string_equal(t.data, "think");
	buf_free(&t);
	assert_false(r.dropped);
	record_free(&r);
}

static void test_first_seq_offset(void **state)
{
	struct record r;
	struct seen s = { 0 };

	(void)state;
	record_init(&r, 7, 4096); /* a resumed stream numbers from where the gateway left */
	assert_int_equal(record_add(&r, RECORD_TOKEN, "a", 1), 7);
	assert_int_equal(record_replay(&r, 0, collect, &s), 7);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.seq[0], 7);
	record_free(&r);
}

static void test_bound_drops_oldest(void **state)
{
	struct record r;
	struct seen s = { 0 };
	char d[16];

	(void)state;
	record_init(&r, 0, 100); /* 16 entries of 1 + 5 bytes fit */
	for (int i = 0; i < 30; i++) {
		snprintf(d, sizeof(d), "t%04d", i);
		assert_int_equal(record_add(&r, RECORD_TOKEN, d, 5), (unsigned long long)i);
		assert_true(r.buf.len <= 100);
	}
	assert_true(r.dropped);
	assert_true(r.first_seq > 0 && r.first_seq < 30);
	/* A replay from before what is kept starts at the first kept seq. */
	unsigned long long first = record_replay(&r, 0, collect, &s);
	assert_int_equal(first, r.first_seq);
	assert_int_equal(s.n, 30 - (int)first);
	for (int i = 0; i < s.n; i++) {
		snprintf(d, sizeof(d), "t%04d", (int)first + i);
		assert_int_equal(s.seq[i], first + (unsigned long long)i);
		assert_string_equal(s.data[i], d);
	}
	record_free(&r);
}

static void test_oversized_and_zero_limit(void **state)
{
	struct record r;
	struct seen s = { 0 };

	(void)state;
	record_init(&r, 0, 16);
	record_add(&r, RECORD_TOKEN, "ab", 2);
	assert_int_equal(record_add(&r, RECORD_TOKEN, "this is longer than the limit", 29), 1);
	assert_true(r.dropped);
	assert_int_equal(record_add(&r, RECORD_TOKEN, "c", 1), 2);
	assert_int_equal(record_replay(&r, 0, collect, &s), 2);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.data[0], "c");
	record_free(&r);

	record_init(&r, 0, 0);
	assert_int_equal(record_add(&r, RECORD_TOKEN, "x", 1), 0);
	assert_int_equal(record_add(&r, RECORD_TOKEN, "y", 1), 1);
	s.n = 0;
	assert_int_equal(record_replay(&r, 0, collect, &s), 2);
	assert_int_equal(s.n, 0);
	assert_int_equal(r.buf.len, 0);
	record_free(&r);
}

/* Entry headers are 1 byte below 63 bytes of data and 5 from 63 on: every
 * length around and past the switch comes back whole, with its kind. */
struct lens {
	size_t len[16];
	enum record_kind kind[16];
	int n;
	int bad; /* entries whose data differs from fill(len) */
};

static void fill(char *p, size_t len, size_t salt)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (char)('a' + (i + salt) % 26);
}

static void collect_lens(void *ud, unsigned long long seq, enum record_kind kind, const char *data, size_t len)
{
	struct lens *l = ud;
	static char want[70000];

	(void)seq;
	assert_true(l->n < 16 && len <= sizeof(want));
	fill(want, len, len);
	if (memcmp(want, data, len))
		l->bad++;
	l->len[l->n] = len;
	l->kind[l->n] = kind;
	l->n++;
}

static void test_entry_lengths(void **state)
{
	static const size_t lens[] = { 0, 1, 62, 63, 64, 300, 65535, 65536, 69999 };
	static char data[70000];
	enum record_kind kinds[] = { RECORD_TOKEN, RECORD_REASONING, RECORD_JSON };
	struct record r;
	struct lens l = { 0 };
	size_t n = sizeof(lens) / sizeof(lens[0]), reasoning = 0;

	(void)state;
	record_init(&r, 0, 1 << 20);
	for (size_t i = 0; i < n; i++) {
		fill(data, lens[i], lens[i]);
		assert_int_equal(record_add(&r, kinds[i % 3], data, lens[i]), i);
		if (kinds[i % 3] == RECORD_REASONING)
			reasoning += lens[i];
	}
	assert_int_equal(record_add(&r, RECORD_KEEPALIVE, "x", 1), n);
	assert_int_equal(record_replay(&r, 0, collect_lens, &l), 0);
	assert_int_equal(l.n, (int)n + 1);
	assert_int_equal(l.bad, 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(l.len[i], lens[i]);
		assert_int_equal(l.kind[i], kinds[i % 3]);
	}
	assert_int_equal(l.kind[n], RECORD_KEEPALIVE);
	assert_int_equal(l.len[n], 0);
	struct buf t;
	buf_init(&t);
	record_text(&r, RECORD_REASONING, &t);
	assert_int_equal(t.len, reasoning);
	buf_free(&t);
	assert_false(r.dropped);
	record_free(&r);

	/* Past the bound, long and short entries are dropped whole. */
	record_init(&r, 0, 400);
	for (size_t i = 0; i < 40; i++) {
		size_t len = i % 2 ? 3 : 100;
		fill(data, len, len);
		record_add(&r, RECORD_TOKEN, data, len);
		assert_true(r.buf.len <= 400);
	}
	assert_true(r.dropped);
	l = (struct lens){ 0 };
	unsigned long long first = record_replay(&r, 0, collect_lens, &l);
	assert_int_equal(l.n, 40 - (int)first);
	assert_int_equal(l.bad, 0);
	for (int i = 0; i < l.n; i++)
		assert_int_equal(l.len[i], (first + (unsigned long long)i) % 2 ? 3 : 100);
	record_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seq_and_replay),
		cmocka_unit_test(test_first_seq_offset),
		cmocka_unit_test(test_bound_drops_oldest),
		cmocka_unit_test(test_oversized_and_zero_limit),
		cmocka_unit_test(test_entry_lengths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
