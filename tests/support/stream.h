/* stream: collects every event the daemon publishes on
 * <prefix>.chat.stream.<rid> (a nats.c callback thread appends them under a
 * mutex), waits for them with bounded waits, and checks the stream contract:
 * request_id on every event, seq 0..n-1 without gaps or duplicates, exactly
 * one terminal event and it is the last, no event types but token,
 * reasoning, keepalive and the terminal ones. What the events say is for the
 * tests. Closed at teardown. */
#ifndef SUNDYNIX_TEST_STREAM_H
#define SUNDYNIX_TEST_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct h_client;
struct h_mock;
struct h_stream;

struct h_stream *h_stream_open(struct h_client *c, const char *rid);
/* h_stream_open, then h_submit_simple(c, rid, text). */
struct h_stream *h_stream_submit(struct h_client *c, const char *rid, const char *text);
/* Waits for a done or error event; true when one came. */
bool h_stream_wait_terminal(struct h_stream *s, int timeout_ms);
/* Waits until at least n events arrived. */
bool h_stream_wait_count(struct h_stream *s, size_t n, int timeout_ms);
size_t h_stream_count(struct h_stream *s);
/* A copy of the events so far (caller owns). */
json_t *h_stream_events(struct h_stream *s);
/* Waits for the terminal event (failing after timeout_ms), then linger_ms
 * more for strays, then checks the contract. Returns the terminal event
 * (owned by the stream). */
json_t *h_stream_settle(struct h_stream *s, int timeout_ms, int linger_ms);
/* h_stream_settle with 200 ms for strays. */
json_t *h_stream_finish(struct h_stream *s, int timeout_ms);
/* h_stream_finish, and fails unless the terminal event is done. */
json_t *h_stream_done(struct h_stream *s, int timeout_ms);
/* h_stream_finish, and fails unless the terminal event is an error with
 * code. Returns it (owned by the stream). */
json_t *h_stream_expect_error(struct h_stream *s, const char *code, int timeout_ms);
/* The concatenated deltas of type ("token" or "reasoning"); caller frees. */
char *h_stream_text(struct h_stream *s, const char *type);
/* Fails unless the stream's token text is want. */
void h_stream_expect_text(struct h_stream *s, const char *want);
/* Fails unless the stream's token text is the mock's first n tokens
 * (h_mock_tokens). */
void h_stream_expect_mock_tokens(struct h_stream *s, int n);
void h_stream_close(struct h_stream *s);

/* One simple request ("hello") that must end with done from model within
 * 15 s. */
void h_chat(struct h_client *c, const char *rid, const char *model);
/* One request with text that must end, within 15 s, with done (want
 * "done") or an error whose code is want. */
void h_chat_expect(struct h_client *c, const char *rid, const char *text, const char *want);
/* n of h_chat_expect, request ids "<rid_prefix>-0" on; with next_script, the
 * mock m is scripted that way (h_mock_next) before each. */
void h_chat_expect_n(struct h_client *c, const char *rid_prefix, int n, const char *text, struct h_mock *m,
		     const char *next_script, const char *want);

#endif
