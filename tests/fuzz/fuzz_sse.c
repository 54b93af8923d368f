/* libFuzzer target for sse: the input is one stream, parsed as one feed, byte
 * by byte, split in two, and in chunks drawn from the input's hash; every way
 * must give the same events and the same return code, or we abort. The cap
 * and an optional callback stop are drawn from the hash too, so the error and
 * stop paths are exercised alongside the chunking. See README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rec {
	struct buf out;
	size_t max_line;
	int n;
	int stop_at;
};

static int rec_cb(void *ud, const struct sse_event *ev)
{
	struct rec *r = ud;

	if (ev->data[ev->data_len] != '\0' || ev->event[ev->event_len] != '\0' || ev->data_len > r->max_line ||
	    ev->event_len > r->max_line)
		abort();
	buf_printf(&r->out, "%zu:", ev->event_len);
	buf_append(&r->out, ev->event, ev->event_len);
	buf_printf(&r->out, "%zu:", ev->data_len);
	buf_append(&r->out, ev->data, ev->data_len);
	return ++r->n == r->stop_at ? 99 : 0;
}

static uint64_t next(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

/* mode 0: whole; 1: byte by byte; 2: two feeds at split; 3: random chunks. */
static void run(const char *s, size_t n, size_t max_line, int stop_at, int mode, size_t split, uint64_t seed,
		struct buf *out)
{
	struct sse_parser p;
	struct rec r = { .max_line = max_line, .stop_at = stop_at };
	size_t off = 0;
	int rc = 0;

	buf_init(&r.out);
	sse_init(&p, max_line);
	while (off < n && !rc) {
		size_t sz;
		if (mode == 0)
			sz = n;
		else if (mode == 1)
			sz = 1;
		else if (mode == 2)
			sz = off < split ? split - off : n - off;
		else
			sz = next(&seed) % 4 == 0 ? 0 : 1 + next(&seed) % 97;
		if (sz > n - off)
			sz = n - off;
		rc = sse_feed(&p, s + off, sz, rec_cb, &r);
		off += sz;
	}
	if (!rc) {
		buf_append_str(&r.out, "F");
		rc = sse_finish(&p, rec_cb, &r);
	}
	buf_printf(&r.out, "rc=%d", rc);
	sse_free(&p);
	*out = r.out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	uint64_t h = 1469598103934665603ull;
	struct buf want, got;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ull;
	size_t max_line = h % 2 ? 65536 : 1 + (h >> 1) % 300;
	int stop_at = (h >> 12) % 4 ? 0 : 1 + (int)((h >> 16) % 8);
	uint64_t seed = h | 1;

	run(s, size, max_line, stop_at, 0, 0, 0, &want);
	for (int mode = 1; mode <= 3; mode++) {
		run(s, size, max_line, stop_at, mode, size ? (h >> 24) % (size + 1) : 0, seed, &got);
		if (got.len != want.len || memcmp(got.data, want.data, want.len)) {
			fprintf(stderr, "mode %d differs (max_line %zu, stop_at %d)\nwhole: %s\nother: %s\n", mode,
				max_line, stop_at, want.data, got.data);
			abort();
		}
		buf_free(&got);
	}
	buf_free(&want);
	return 0;
}
