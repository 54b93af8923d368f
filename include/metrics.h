/* metrics: the daemon's own measurements, in one struct metrics that main owns
 * and hands to whoever records (request, upstream, control). Plain counters
 * and fixed-bucket histograms, updated on the loop thread: no locks, O(1) and
 * no allocation per token. Read at scrape time by prom (the Prometheus text)
 * and srv (the $SRV answers). Also writes the one log line per finished
 * request (through log). Knows nothing of HTTP, NATS or the pool: a request's
 * figures come in through the calls below. Pure: no I/O but the log line. */
#ifndef SUNDYNIX_METRICS_H
#define SUNDYNIX_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contract.h"
#include "util.h"

#define METRICS_BUCKETS 40 /* bucket i counts samples in [2^i, 2^(i+1)) ns */

/* A log2 histogram in nanoseconds (the per-chunk overhead). */
struct metrics_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t max_ns; /* since the last SIGUSR1 report (main resets it) */
	uint64_t buckets[METRICS_BUCKETS];
};

void metrics_record(struct metrics_hist *h, uint64_t ns);
/* The q-quantile (0..1) in ns, interpolated inside its bucket. */
uint64_t metrics_quantile(const struct metrics_hist *h, double q);
/* "count=N mean=..us p50=..us p90=..us p99=..us max=..us | <1us:N <2us:N ..." */
void metrics_format(const struct metrics_hist *h, struct buf *out);
/* out = now - then (count, sum, buckets); max is now's. For reports that
 * cover the time since the previous one while the counts keep growing. */
void metrics_hist_diff(struct metrics_hist *out, const struct metrics_hist *now, const struct metrics_hist *then);

/* A histogram over fixed upper bounds in milliseconds (Prometheus "le",
 * exported in seconds). buckets[i] counts samples <= bounds[i] and above the
 * previous bound (not cumulative); count - sum of buckets is the +Inf rest. */
#define METRICS_MS_BUCKETS 14
struct metrics_mshist {
	const unsigned *bounds; /* METRICS_MS_BUCKETS ascending bounds, ms */
	uint64_t count;
	uint64_t sum_ms;
	uint64_t buckets[METRICS_MS_BUCKETS];
};

/* A Prometheus outcome of a request: "done", or an error code's name. */
#define METRICS_OUTCOMES CONTRACT_CODE_COUNT /* index CONTRACT_OK is "done" */

/* Requests per endpoint (a base URL without userinfo): the figures the pool
 * does not keep. A short list; endpoints leave it with the model config. */
struct metrics_ep {
	struct metrics_ep *next;
	char *endpoint;
	uint64_t requests; /* requests that ended with their last attempt here */
	uint64_t retries;  /* attempts here that failed and were retried elsewhere */
};

/* The $SRV figures of one service endpoint (ADR-32 stats). */
struct metrics_srv {
	uint64_t requests;
	uint64_t errors;
	uint64_t processing_ns;
	char last_error[256];
};

struct metrics {
	uint64_t accepted;
	uint64_t outcomes[METRICS_OUTCOMES]; /* requests ended, refusals included */
	uint64_t busy;                       /* refusals because full or draining */
	uint64_t tokens, reasoning;          /* deltas relayed */
	uint64_t backend_bytes;              /* response bytes read from backends */
	struct metrics_mshist ttft;          /* accept to first delta */
	struct metrics_mshist duration;      /* accept to terminal event */
	struct metrics_hist chunk;           /* curl write callback to NATS publish, sampled */
	uint64_t chunk_writes;               /* curl write callbacks: picks the sampled ones */
	struct metrics_ep *eps;
	struct metrics_srv submit, probe;    /* $SRV endpoint stats */
};

/* What one request keeps for its figures and its log line; embedded in the
 * request, zeroed with it. Small on purpose: ended requests linger for
 * replays (stream.replay_linger_ms), tens of thousands of them under load. */
struct metrics_req {
	uint32_t tokens, reasoning;
	uint32_t ttft_ms;            /* valid once first is set */
	bool first;                  /* a delta was relayed */
	char *session_id;            /* a copy (at most 128 bytes), NULL when absent;
				      * metrics_request_end frees it */
};

/* How a request ended, as request__finish knows it. */
struct metrics_end {
	enum contract_code code;     /* CONTRACT_OK: done */
	const char *message;         /* error text (bounded, redacted); NULL when done */
	const char *model;           /* the configured model, or "stub" */
	const char *endpoint;        /* base URL without userinfo; NULL if no backend was tried */
	int attempts;
	uint64_t duration_ms;
	const char *finish_reason;   /* done: as the backend said */
	const struct contract_usage *usage; /* may be NULL */
};

void metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);

/* The calls request makes. m may be NULL (unit tests): then only the
 * request's own figures and the log line are kept. */
void metrics_request_accepted(struct metrics *m, struct metrics_req *q, const char *session_id);
/* A submit refused before it started (bad_request, busy): counted under
 * its code; busy also in m->busy. */
void metrics_request_refused(struct metrics *m, enum contract_code code, const char *message);
/* Every delta relayed (inline, below); since_start_ms is the time from
 * accept to this delta. */
/* An attempt on endpoint failed and the request tries another replica. */
void metrics_request_retry(struct metrics *m, const char *endpoint);
/* The request ended: counts it and writes its one log line (info level:
 * request_id, session_id, model, endpoint, attempts, ttft_ms, duration_ms,
 * tokens, reasoning, outcome, code, message, usage). Never a prompt, a
 * delta or a key. */
void metrics_request_end(struct metrics *m, struct metrics_req *q, const char *rid, const struct metrics_end *e);

/* A probe request answered (ok or not) after ns; error NULL when ok. */
void metrics_probe(struct metrics *m, uint64_t ns, const char *error);
/* Forgets the per-endpoint figures of endpoints for which keep returns false. */
void metrics_prune_endpoints(struct metrics *m, bool (*keep)(void *ud, const char *endpoint), void *ud);
const struct metrics_ep *metrics_find_endpoint(const struct metrics *m, const char *endpoint);
/* "done" for CONTRACT_OK, else contract_code_name. */
const char *metrics_outcome_name(enum contract_code code);
/* Whether a request can end with this outcome (replay-only codes cannot). */
bool metrics_outcome_used(enum contract_code code);
void metrics_mshist_record(struct metrics_mshist *h, uint64_t ms);

/* Per delta: two increments and, once, the first-token histogram. */
static inline void metrics_request_delta(struct metrics *m, struct metrics_req *q, enum contract_delta kind,
					 uint64_t since_start_ms)
{
	if (kind == CONTRACT_REASONING)
		q->reasoning++;
	else
		q->tokens++;
	if (!q->first) {
		q->first = true;
		q->ttft_ms = since_start_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)since_start_ms;
		if (m)
			metrics_mshist_record(&m->ttft, since_start_ms);
	}
	if (m) {
		if (kind == CONTRACT_REASONING)
			m->reasoning++;
		else
			m->tokens++;
	}
}

#endif
