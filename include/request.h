/* request: the lifecycle of chat requests. Owns the in-flight table (by
 * request_id), the ended streams' linger entries (what a replay needs, kept
 * stream.replay_linger_ms after the end), capacity, cancel, drain, the retry decision, and the one place
 * where a request's single terminal event is sent. Feeds each request from an
 * upstream call or, with no ready model, the stub. Reaches the bus, the
 * upstream and the stub only through struct request_ops, so the lifecycle
 * runs in unit tests with fakes. Wire formats live in contract; transport in
 * bus. Loop thread only. */
#ifndef SUNDYNIX_REQUEST_H
#define SUNDYNIX_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contract.h"
#include "upstream.h"

struct config;
struct metrics;
struct modelcfg_store;
struct pool;
struct requests;
struct stub;

/* Everything with I/O that a request uses. main wires the real ones; tests
 * wire fakes. ud is passed back to each. */
struct request_ops {
	uint64_t (*now_ms)(void *ud); /* the loop's clock */
	void (*publish)(void *ud, const char *subject, const char *data, size_t len);
	/* NULL when the transfer cannot start (then no callback follows). */
	struct upstream *(*upstream_start)(void *ud, struct upstream_params *p, const struct upstream_cbs *cbs,
					   void *cb_ud);
	void (*upstream_cancel)(void *ud, struct upstream *u);
	/* Takes ownership of text. */
	struct stub *(*stub_start)(void *ud, char *text, long long ttft_ms, long long inter_ms,
				   const struct upstream_cbs *cbs, void *cb_ud);
	void (*stub_cancel)(void *ud, struct stub *s);
	/* Admission: false when this dispatcher is full (leave the submit queue
	 * group so NATS routes new submits elsewhere), true when it has room
	 * again (rejoin). Called on changes only, never while draining. */
	void (*admission)(void *ud, bool open);
	void *ud;
};

/* What the retry decision looks at when an attempt failed. */
struct request_retry_facts {
	enum contract_code code;    /* how the attempt ended */
	bool retryable;             /* a failure another replica might not share */
	unsigned long long deltas;  /* events already relayed to the client */
	int attempts;               /* made so far, the failed one included */
	long long max_attempts;     /* pool.max_attempts */
	size_t tried;               /* distinct endpoints tried */
	size_t nendpoints;
	unsigned long long elapsed_ms;
	long long total_ms;         /* timeouts.total_ms */
};

/* The retry policy (docs/pool.md): only failures, only retryable ones, only
 * while the client has seen nothing, within max_attempts, on a replica not
 * tried yet, and within the request's total deadline. Pure. */
bool request_may_retry(const struct request_retry_facts *f);

/* What the resume decision looks at when an attempt that relayed deltas
 * broke off (failover, docs/pool.md). */
struct request_resume_facts {
	enum contract_code code;   /* how the attempt ended */
	bool broken;               /* it broke off the way a dying replica does */
	bool resumable;            /* the provider continues partial answers, pool.resume is on */
	bool complete;             /* the record holds the whole answer so far, all of it text */
	int attempts;
	long long max_attempts;
	size_t tried;
	size_t nendpoints;
	unsigned long long elapsed_ms;
	long long total_ms;
};

/* The failover policy: a broken stream whose provider can continue it, with
 * its whole text at hand, is continued on a replica not tried yet, within
 * max_attempts and the total deadline. Pure. */
bool request_may_resume(const struct request_resume_facts *f);

/* subjects, models, pool and metrics (may be NULL) must outlive the
 * table; cfg is the daemon config new requests read (see requests_set_config). */
struct requests *requests_new(const struct request_ops *ops, const struct contract_subjects *subjects,
			      struct modelcfg_store *models, struct pool *pool, const struct config *cfg,
			      struct metrics *metrics);
/* Frees the table; every request must have ended (requests_end_all). The
 * records still lingering go with it. */
void requests_free(struct requests *rq);
/* A reload's new config: new requests use it, and so do the retries and
 * deadlines of requests in flight. The caller keeps cfg alive until the next
 * call (or requests_free). A request keeps the model snapshot it started with. */
void requests_set_config(struct requests *rq, const struct config *cfg);

/* A submit message: validates, acks on reply (may be NULL), starts the stream. */
void requests_submit(struct requests *rq, const char *data, size_t len, const char *reply);
/* A cancel broadcast; unknown ids are ignored. */
void requests_cancel(struct requests *rq, const char *data, size_t len);
/* A replay request (gap repair): publishes the recorded events from
 * from_seq on, marked "replay":true, on the stream subject, then answers on
 * reply (may be NULL). A stream can be replayed while it runs and for
 * stream.replay_linger_ms after its terminal event. */
void requests_replay(struct requests *rq, const char *data, size_t len, const char *reply);
/* Call periodically (requests_tick_ms apart): sends a keepalive on every
 * stream silent for stream.keepalive_ms and forgets the records whose linger
 * is over. Touches only the streams that are due. */
void requests_tick(struct requests *rq);
/* Shutdown (the caller left the queue groups): submits NATS still routes
 * here are served, and once no request is left in flight (at once if none
 * is) on_idle runs and every later submit is refused busy. */
void requests_drain(struct requests *rq, void (*on_idle)(void *ud), void *ud);
/* Re-evaluates admission after something that changes capacity outside a
 * request (a new model config, a reload). Full is limits.max_inflight
 * requests, or the model's capacity (the sum of its endpoints'
 * max_inflight) when smaller; room again is at most limits.rejoin_below_pct
 * of that. */
void requests_check_admission(struct requests *rq);
/* Ends every request in flight with an error event of the given code. */
void requests_end_all(struct requests *rq, enum contract_code code, const char *message);
size_t requests_inflight(const struct requests *rq);

#endif
