/* sse: see include/sse.h.
 *
 * One pass per feed: memchr finds the next CR and LF, a line lying wholly
 * inside the feed is parsed where it lies, and only the unfinished tail of a
 * feed is copied into p->line. Field values are appended to p->data and
 * p->event, which keep their allocations across events, so a stream of
 * events allocates nothing once the buffers have grown. */
#include "sse.h"

#include <string.h>

static const unsigned char sse__bom[3] = { 0xef, 0xbb, 0xbf };

void sse_init(struct sse_parser *p, size_t max_line)
{
	p->max_line = max_line;
	buf_init(&p->line);
	buf_init(&p->data);
	buf_init(&p->event);
	p->have_data = false;
	p->bom_checked = false;
	p->last_was_cr = false;
	p->failed = false;
}

void sse_free(struct sse_parser *p)
{
	buf_free(&p->line);
	buf_free(&p->data);
	buf_free(&p->event);
}

static void sse__clear_event(struct sse_parser *p)
{
	buf_reset(&p->data);
	buf_reset(&p->event);
	p->have_data = false;
}

static int sse__dispatch(struct sse_parser *p, sse_event_cb cb, void *ud)
{
	struct sse_event ev;
	int rc;

	if (!p->have_data) {
		buf_reset(&p->event);
		return 0;
	}
	/* Every data line appended its value and a LF; the last LF goes. */
	p->data.len--;
	p->data.data[p->data.len] = '\0';
	ev.data = p->data.data;
	ev.data_len = p->data.len;
	ev.event = p->event.data ? p->event.data : "";
	ev.event_len = p->event.len;
	rc = cb(ud, &ev);
	sse__clear_event(p);
	return rc;
}

static int sse__fail(struct sse_parser *p)
{
	p->failed = true;
	buf_reset(&p->line);
	sse__clear_event(p);
	return SSE_ERR_LINE_TOO_LONG;
}

/* Handles one complete line (terminator excluded). */
static int sse__line(struct sse_parser *p, const char *s, size_t n, sse_event_cb cb, void *ud)
{
	const char *colon, *val;
	size_t flen, vlen;

	if (n == 0)
		return sse__dispatch(p, cb, ud);
	if (s[0] == ':')
		return 0;
	colon = memchr(s, ':', n);
	if (colon) {
		flen = (size_t)(colon - s);
		val = colon + 1;
		vlen = n - flen - 1;
		if (vlen && *val == ' ') {
			val++;
			vlen--;
		}
	} else {
		flen = n;
		val = s + n;
		vlen = 0;
	}
	/* llama.cpp's server reports a failure mid-stream as an "error:" field
	 * rather than a data line. Unknown fields are otherwise ignored, but
	 * losing the backend's error message helps nobody: carry its value as
	 * the data of an event typed "error". */
	bool is_error = flen == 5 && !memcmp(s, "error", 5);
	if (is_error) {
		buf_reset(&p->event);
		buf_append(&p->event, "error", 5);
	}
	if (is_error || (flen == 4 && !memcmp(s, "data", 4))) {
		/* The joined data may not exceed max_line either; data.len
		 * counts the LF of every earlier line, which the joined value
		 * keeps. */
		if (vlen > p->max_line || p->data.len > p->max_line - vlen)
			return sse__fail(p);
		buf_reserve(&p->data, vlen + 1);
		memcpy(p->data.data + p->data.len, val, vlen);
		p->data.len += vlen;
		p->data.data[p->data.len++] = '\n';
		p->data.data[p->data.len] = '\0';
		p->have_data = true;
	} else if (flen == 5 && !memcmp(s, "event", 5)) {
		buf_reset(&p->event);
		buf_append(&p->event, val, vlen);
	}
	/* id, retry and unknown fields mean nothing to a one-shot stream. */
	return 0;
}

/* Consumes the start of the stream while it may still be a BOM. Bytes of a
 * partial BOM wait in p->line; if the stream then diverges they stay there
 * as the start of the first line, exactly as if no check had happened. */
static size_t sse__skip_bom(struct sse_parser *p, const char *s, size_t len)
{
	size_t i = 0;

	while (!p->bom_checked && i < len) {
		if ((unsigned char)s[i] != sse__bom[p->line.len]) {
			p->bom_checked = true;
			break;
		}
		buf_append_char(&p->line, s[i++]);
		if (p->line.len == sizeof(sse__bom)) {
			buf_reset(&p->line);
			p->bom_checked = true;
		}
	}
	return i;
}

int sse_feed(struct sse_parser *p, const char *bytes, size_t len, sse_event_cb cb, void *ud)
{
	const char *s = bytes, *end, *lf, *cr;

	if (p->failed)
		return SSE_ERR_LINE_TOO_LONG;
	if (len == 0)
		return 0;
	end = bytes + len;
	if (!p->bom_checked) {
		s += sse__skip_bom(p, s, len);
		if (s == end)
			return 0;
	}
	if (p->last_was_cr) {
		p->last_was_cr = false;
		if (*s == '\n' && ++s == end)
			return 0;
	}
	/* Both positions are cached across lines so a stream that uses only
	 * one kind of line end is still scanned once. */
	lf = memchr(s, '\n', (size_t)(end - s));
	cr = memchr(s, '\r', (size_t)(end - s));
	while (s < end) {
		const char *eol;
		size_t n = 0;
		int rc;

		if (lf && lf < s)
			lf = memchr(s, '\n', (size_t)(end - s));
		if (cr && cr < s)
			cr = memchr(s, '\r', (size_t)(end - s));
		eol = !lf ? cr : !cr ? lf : lf < cr ? lf : cr;
		if (!eol) {
			n = (size_t)(end - s);
			if (p->line.len + n > p->max_line)
				return sse__fail(p);
			buf_append(&p->line, s, n);
			return 0;
		}
		n = (size_t)(eol - s);
		if (p->line.len + n > p->max_line)
			return sse__fail(p);
		if (p->line.len) {
			buf_append(&p->line, s, n);
			rc = sse__line(p, p->line.data, p->line.len, cb, ud);
			buf_reset(&p->line);
		} else {
			rc = sse__line(p, s, n, cb, ud);
		}
		s = eol + 1;
		if (*eol == '\r') {
			if (s == end)
				p->last_was_cr = true;
			else if (*s == '\n')
				s++;
		}
		if (rc)
			return rc;
	}
	return 0;
}

int sse_finish(struct sse_parser *p, sse_event_cb cb, void *ud)
{
	int rc = 0;

	if (p->failed)
		return SSE_ERR_LINE_TOO_LONG;
	/* A last line without a line end still counts, and so does an event
	 * without its blank line: real bodies end "data: [DONE]\n". */
	if (p->line.len) {
		rc = sse__line(p, p->line.data, p->line.len, cb, ud);
		buf_reset(&p->line);
	}
	if (!rc && !p->failed)
		rc = sse__dispatch(p, cb, ud);
	if (p->failed)
		rc = SSE_ERR_LINE_TOO_LONG;
	/* Ready for another stream, buffers kept. */
	sse__clear_event(p);
	buf_reset(&p->line);
	p->bom_checked = false;
	p->last_was_cr = false;
	return rc;
}
