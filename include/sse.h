/* sse: a WHATWG event-stream parser. Bytes in, events out, no I/O and no JSON.
 * Handles LF/CR/CRLF (including a CR at the end of one feed and LF at the start
 * of the next), a leading BOM, "data:" with or without the space, multi-line
 * data joined with "\n", comments, event/id/retry/unknown fields, and a line
 * cap. One extension: an "error:" field (llama.cpp's server sends its
 * mid-stream failures so) counts as a data line and types the event "error". Feeding one byte at a time yields exactly the events of one big feed.
 * As WHATWG says, a lone "data:" line is an event with empty data, and a
 * blank line with no data line before it dispatches nothing.
 * The parser owns its buffers; event pointers are valid only during the
 * callback. Memory is bounded: no line, and no event's joined data, may
 * exceed max_line bytes (line ends excluded). */
#ifndef SUNDYNIX_SSE_H
#define SUNDYNIX_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct sse_event {
	const char *data; /* NUL-terminated, data_len bytes */
	size_t data_len;
	const char *event; /* "" when no event: field was seen */
	size_t event_len;
};

/* Return 0 to keep going, nonzero to stop parsing; sse_feed then returns
 * that value and drops the rest of that feed. */
typedef int (*sse_event_cb)(void *ud, const struct sse_event *ev);

enum {
	SSE_OK = 0,
	SSE_ERR_LINE_TOO_LONG = -1,
};

struct sse_parser {
	size_t max_line;
	struct buf line;  /* the current, incomplete line */
	struct buf data;  /* data field of the event being built */
	struct buf event; /* event field of the event being built */
	bool have_data;
	bool bom_checked;
	bool last_was_cr; /* a CR ended the previous feed: skip a leading LF */
	bool failed;
};

void sse_init(struct sse_parser *p, size_t max_line);
void sse_free(struct sse_parser *p);
/* Returns SSE_OK, SSE_ERR_LINE_TOO_LONG (a line or an event's data over
 * max_line; sticky), or the callback's nonzero return value. */
int sse_feed(struct sse_parser *p, const char *bytes, size_t len, sse_event_cb cb, void *ud) UTIL_WUR;
/* End of stream. A last line without a line end is taken as a line, and an
 * event whose data was seen but whose blank line never came (a body ending
 * "data: [DONE]\n") is dispatched, as common clients do; strict WHATWG would
 * drop both. Returns as sse_feed, and leaves the parser ready for another
 * stream (BOM check included) with its buffers kept. */
int sse_finish(struct sse_parser *p, sse_event_cb cb, void *ud) UTIL_WUR;

#endif
