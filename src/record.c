/* record: see include/record.h.
 *
 * One buffer per stream, not one allocation per event: an entry is a 5-byte
 * header and the data. Dropping old entries moves the rest down once per
 * quarter of the limit, not once per event. */
#include "record.h"

#include <stdint.h>
#include <string.h>

#define RECORD__HDR 5
#define RECORD__FIRST 240

static size_t record__entry_len(const char *p)
{
	uint32_t len;

	memcpy(&len, p + 1, sizeof(len));
	return RECORD__HDR + len;
}

void record_init(struct record *r, unsigned long long first_seq, size_t limit)
{
	buf_init(&r->buf);
	r->first_seq = r->next_seq = first_seq;
	r->limit = limit;
	r->dropped = false;
}

void record_free(struct record *r)
{
	buf_free(&r->buf);
}

/* Drops the oldest entries until at most keep bytes are left. */
static void record__drop(struct record *r, size_t keep)
{
	size_t off = 0;

	while (r->buf.len - off > keep) {
		off += record__entry_len(r->buf.data + off);
		r->first_seq++;
	}
	memmove(r->buf.data, r->buf.data + off, r->buf.len - off);
	r->buf.len -= off;
	r->buf.data[r->buf.len] = '\0';
	r->dropped = true;
}

unsigned long long record_add(struct record *r, enum record_kind kind, const char *data, size_t len)
{
	uint32_t n = (uint32_t)len;
	char hdr[RECORD__HDR];

	if (kind == RECORD_KEEPALIVE)
		n = 0;
	if (r->limit == 0 || RECORD__HDR + (size_t)n > r->limit) {
		/* Nothing kept, or an event larger than the whole record: what
		 * was kept before it can no longer be replayed in order. */
		buf_reset(&r->buf);
		r->first_seq = r->next_seq + 1;
		r->dropped = true;
		return r->next_seq++;
	}
	if (r->buf.len + RECORD__HDR + n > r->limit) {
		/* Make room for this entry and a quarter of the limit more. */
		size_t room = r->limit - (RECORD__HDR + n);
		record__drop(r, room > r->limit / 4 ? room - r->limit / 4 : 0);
	}
	hdr[0] = (char)kind;
	memcpy(hdr + 1, &n, sizeof(n));
	/* One allocation holds a typical short answer. */
	buf_reserve(&r->buf, r->buf.cap ? RECORD__HDR + n : RECORD__FIRST + n);
	buf_append(&r->buf, hdr, RECORD__HDR);
	if (n)
		buf_append(&r->buf, data, n);
	return r->next_seq++;
}

void record_compact(struct record *r)
{
	if (r->buf.cap > r->buf.len + 1) {
		r->buf.data = xrealloc(r->buf.data, r->buf.len + 1);
		r->buf.cap = r->buf.len + 1;
	}
}

unsigned long long record_replay(const struct record *r, unsigned long long from, record_cb cb, void *ud)
{
	unsigned long long seq = r->first_seq, first = from < r->first_seq ? r->first_seq : from;

	for (size_t off = 0; off < r->buf.len; off += record__entry_len(r->buf.data + off), seq++) {
		if (seq < first)
			continue;
		const char *p = r->buf.data + off;
		cb(ud, seq, (enum record_kind)p[0], p + RECORD__HDR, record__entry_len(p) - RECORD__HDR);
	}
	return first;
}

void record_text(const struct record *r, enum record_kind kind, struct buf *out)
{
	for (size_t off = 0; off < r->buf.len; off += record__entry_len(r->buf.data + off)) {
		const char *p = r->buf.data + off;
		if ((enum record_kind)p[0] == kind)
			buf_append(out, p + RECORD__HDR, record__entry_len(p) - RECORD__HDR);
	}
}
