/* relay: the gateway side of many streams at once, following the gateway
 * checklist of docs/protocol.md. Its own nats.c connection (named, so a
 * cluster's /connz can tell which node it is on; reconnecting within 50 ms)
 * with one wildcard subscription on <prefix>.chat.stream.* and one inbox for
 * acks and replay answers. Submits go out without waiting for their ack, so
 * a window of them can be in flight at once. Events are held by seq with
 * their arrival times; replayed ones fill holes and repeats are dropped. On
 * each tick the rule runs for every accepted stream: a seq gap, the relay's
 * own reconnect, or no event for 2 x keepalive asks the stream's owner (the
 * ack's instance) for a replay; no answer to the one asked for silence (no
 * responders, or 2 s without an answer) reports the dispatcher lost. No
 * resubmits. The numbers (who got busy, what completed) are the tests'
 * business; the relay records them. Closed at teardown. */
#ifndef SUNDYNIX_TEST_RELAY_H
#define SUNDYNIX_TEST_RELAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* How long a replay request may go unanswered before the relay gives up on
 * it (the checklist's "a couple of seconds"). */
#define H_RELAY_REPLAY_WAIT_MS 2000

struct h_relay;

enum h_relay_ack {
	H_RELAY_PENDING,       /* submitted, no answer yet */
	H_RELAY_ACCEPTED,      /* ack accepted:true */
	H_RELAY_REFUSED,       /* ack accepted:false; code says why (busy, ...) */
	H_RELAY_NO_RESPONDERS, /* NATS answered: nobody in the submit queue group */
	H_RELAY_TIMEOUT,       /* no answer within the submit's timeout */
};

/* What the relay knows of one request, copied under its lock. Times are
 * util_now_ms() values; 0 when it did not happen. */
struct h_relay_info {
	char rid[64];
	char instance[72]; /* the ack's instance: the stream's owner */
	enum h_relay_ack ack;
	char code[32]; /* refused: the ack's error code */
	unsigned long long submitted_ms, acked_ms;
	size_t held;             /* events held (distinct seq) */
	long long max_seq;       /* highest seq held, -1 when none */
	long long terminal_seq;  /* seq of the (first) terminal event, -1 when none */
	char terminal_type[8];   /* "done" or "error" */
	char error_code[32];     /* the error event's code */
	size_t terminals;        /* terminal events held */
	size_t anomalies;        /* malformed events, live events repeated or out of order */
	size_t replays_asked;    /* replay requests sent */
	size_t replay_filled;    /* holes filled by replayed events */
	size_t repeats_dropped;  /* replayed events already held */
	size_t keepalives;       /* keepalive events held */
	bool gave_up;            /* a gap the owner could not fill */
	bool lost;               /* reported dispatcher_lost, at lost_ms */
	unsigned long long lost_ms, last_event_ms;
	bool ended;    /* accepted and over: complete, gap given up, or lost */
	bool complete; /* seq 0..terminal_seq all held, one terminal, last, no anomalies */
};

/* Counts over every request. */
struct h_relay_stats {
	size_t submitted, pending, accepted, busy, refused_other, no_responders, timeouts, late_acks;
	size_t active, complete, done, error, lost, incomplete; /* incomplete: ended otherwise */
	size_t replays_asked, replay_filled, repeats_dropped, anomalies, strays;
	unsigned long long max_ack_ms;
};

/* url: one URL or several, comma-separated. Request ids are "<tag><n>". */
struct h_relay *h_relay_open(const char *url, const char *prefix, const char *tag, int keepalive_ms);
void h_relay_close(struct h_relay *r);
/* The name the relay's connection gives the server. */
const char *h_relay_name(struct h_relay *r);

/* Submits {"request_id":"<tag><n>","messages":[{"role":"user","content":text}]}
 * and returns n, the request's index; its ack counts as a timeout after
 * ack_timeout_ms. */
size_t h_relay_submit(struct h_relay *r, const char *text, int ack_timeout_ms);
/* Ticks until at most max_pending submits are unanswered; fails the test
 * after timeout_ms. */
void h_relay_wait_acks(struct h_relay *r, size_t max_pending, int timeout_ms);
/* The gateway rule, once, for every accepted stream (see above). */
void h_relay_tick(struct h_relay *r);
/* Ticks every 20 ms for ms. */
void h_relay_run_for(struct h_relay *r, int ms);
/* Ticks until every accepted stream ended; false when some had not after
 * timeout_ms. */
bool h_relay_run_until_ended(struct h_relay *r, int timeout_ms);

size_t h_relay_count(struct h_relay *r);
struct h_relay_info h_relay_info(struct h_relay *r, size_t i);
struct h_relay_stats h_relay_stats(struct h_relay *r);
/* Prints the stats on one line, after label. */
void h_relay_log_stats(struct h_relay *r, const char *label);
/* Request i's events by seq, JSON null for a seq not held (caller owns). */
json_t *h_relay_events(struct h_relay *r, size_t i);
/* Arrival time (util_now_ms) of request i's event seq, 0 when not held. */
unsigned long long h_relay_arrival(struct h_relay *r, size_t i, size_t seq);
/* Request i's token deltas in seq order (caller frees). */
char *h_relay_text(struct h_relay *r, size_t i);
/* Prints what the relay holds of request i to stderr (failure diagnosis). */
void h_relay_dump(struct h_relay *r, size_t i);

#endif
