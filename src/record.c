/* record: see include/record.h.
 *
 * One buffer per stream, not one allocation per event: an entry is a header
 * and the data. The header is one byte, the kind in the low 2 bits and the
 * length above them, when the length is below RECORD__LONG (a token is a few
 * bytes: most entries); otherwise that byte says RECORD__LONG and the length
 * follows in 4 bytes. Dropping old entries moves the rest down once per
 * quarter of the limit, not once per event. */
#include "record.h"

#include <stdint.h>
#include <string.h>

#define RECORD__LONG 63u /* the largest value of the 6 length bits: a 4-byte length follows */
#define RECORD__FIRST 240

_Static_assert(RECORD_JSON <= 3, "a record kind fits the header's low 2 bits");

static size_t record__hdr_len(uint32_t n)
{
	return n < RECORD__LONG ? 1 : 1 + sizeof(uint32_t);
}

/* The entry at p: its header's length in *hdr, its data's in *len. */
static void record__entry(const char *p, size_t *hdr, size_t *len)
{
	uint32_t n = (unsigned char)p[0] >> 2;

	*hdr = 1;
	if (n == RECORD__LONG) {
		memcpy(&n, p + 1, sizeof(n));
		*hdr += sizeof(n);
	}
	*len = n;
}

static size_t record__entry_len(const char *p)
{
	size_t hdr, len;

	record__entry(p, &hdr, &len);
	return hdr + len;
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
	char hdr[1 + sizeof(uint32_t)];
	size_t hlen;

	if (kind == RECORD_KEEPALIVE)
		n = 0;
	hlen = record__hdr_len(n);
	if (r->limit == 0 || hlen + (size_t)n > r->limit) {
		/* Nothing kept, or an event larger than the whole record: what
		 * was kept before it can no longer be replayed in order. */
		buf_reset(&r->buf);
		r->first_seq = r->next_seq + 1;
		r->dropped = true;
		return r->next_seq++;
	}
	if (r->buf.len + hlen + n > r->limit) {
		/* Make room for this entry and a quarter of the limit more. */
		size_t room = r->limit - (hlen + n);
		record__drop(r, room > r->limit / 4 ? room - r->limit / 4 : 0);
	}
	if (hlen == 1) {
		hdr[0] = (char)((unsigned char)kind | n << 2);
	} else {
		hdr[0] = (char)((unsigned char)kind | RECORD__LONG << 2);
		memcpy(hdr + 1, &n, sizeof(n));
	}
	/* One allocation holds a typical short answer. */
	buf_reserve(&r->buf, r->buf.cap ? hlen + n : RECORD__FIRST + n);
	buf_append(&r->buf, hdr, hlen);
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

	for (size_t off = 0, hdr, len; off < r->buf.len; off += hdr + len, seq++) {
		const char *p = r->buf.data + off;
		record__entry(p, &hdr, &len);
		if (seq >= first)
			cb(ud, seq, (enum record_kind)(p[0] & 3), p + hdr, len);
	}
	return first;
}

void record_text(const struct record *r, enum record_kind kind, struct buf *out)
{
	for (size_t off = 0, hdr, len; off < r->buf.len; off += hdr + len) {
		const char *p = r->buf.data + off;
		record__entry(p, &hdr, &len);
		if ((enum record_kind)(p[0] & 3) == kind)
			buf_append(out, p + hdr, len);
	}
}
