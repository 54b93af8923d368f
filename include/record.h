/* record: the per-request record of what was sent on a stream. Every event
 * takes the next seq here; the record keeps, in one buffer, what is needed to
 * send each event again: the text of token and reasoning deltas, nothing for
 * keepalives, and the encoded JSON of every other event (the terminal one
 * included). It serves gap repair (replay from a seq) and failover (the
 * answer and reasoning produced so far). Bounded: past `limit` bytes the
 * oldest entries are dropped, and the record says so. Pure: no I/O. */
#ifndef SUNDYNIX_RECORD_H
#define SUNDYNIX_RECORD_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

enum record_kind {
	RECORD_TOKEN,     /* data: the delta text */
	RECORD_REASONING, /* data: the delta text */
	RECORD_KEEPALIVE, /* no data */
	RECORD_JSON,      /* data: the event as it was published */
};

struct record {
	struct buf buf;               /* entries: kind and length (1 byte, 5 from 63 bytes of data on), data */
	unsigned long long first_seq; /* seq of the first entry kept */
	unsigned long long next_seq;  /* seq of the next event */
	size_t limit;                 /* bytes of entries kept at most; 0: none kept */
	bool dropped;                 /* entries were dropped: the text so far is incomplete */
};

void record_init(struct record *r, unsigned long long first_seq, size_t limit);
void record_free(struct record *r);
/* Records the next event; returns its seq. */
unsigned long long record_add(struct record *r, enum record_kind kind, const char *data, size_t len);

/* Gives back the buffer's slack (a finished stream's record lingers). */
void record_compact(struct record *r);

/* Calls cb for every kept event with seq >= from, in order. Returns the seq
 * of the first one sent (first_seq when from is older than what is kept, so
 * the caller can tell the gap that cannot be repaired). */
typedef void (*record_cb)(void *ud, unsigned long long seq, enum record_kind kind, const char *data, size_t len);
unsigned long long record_replay(const struct record *r, unsigned long long from, record_cb cb, void *ud);

/* Appends the concatenated data of every kept entry of kind (RECORD_TOKEN:
 * the answer so far; RECORD_REASONING: the reasoning) to out. Complete only
 * when !r->dropped. */
void record_text(const struct record *r, enum record_kind kind, struct buf *out);

#endif
