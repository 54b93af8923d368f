/* pool: the replicas behind the active model. Picks an endpoint per attempt
 * by weighted least-outstanding-requests (smooth weighted round-robin over
 * weight / (outstanding + 1), ties round-robin) and keeps passive
 * health per endpoint: consecutive failures eject an endpoint for a cooldown
 * that doubles (1 s .. 60 s), after which one trial request (half-open)
 * decides. Health is keyed by base_url and survives model config updates.
 * Pure bookkeeping: no I/O, loop thread only. */
#ifndef SUNDYNIX_POOL_H
#define SUNDYNIX_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct modelcfg;

#define POOL_COOLDOWN_MIN_MS 1000
#define POOL_COOLDOWN_MAX_MS 60000

/* The health of one base_url. Owned by the pool; stays valid while a request
 * holds it (outstanding > 0), across config updates. */
struct pool_ep {
	struct pool_ep *next;
	char *base_url;
	int outstanding;          /* attempts in progress */
	long current;             /* smooth weighted round-robin state */
	int consecutive_failures;
	int ejections;            /* in a row; sets the cooldown */
	uint64_t ejected_until;   /* loop ms; 0 when in rotation */
	uint64_t last_ejected;
	bool trial_busy;          /* half-open: the one trial is out */
	bool trial;               /* the next pick is the half-open trial */
	uint64_t picks, failures; /* totals, for logs, tests and metrics */
	uint64_t ejections_total; /* every ejection so far (ejections resets) */
	int last_probe;           /* the active probe's last verdict: POOL_PROBE_* */
};

enum { POOL_PROBE_NONE, POOL_PROBE_OK, POOL_PROBE_FAILED };

enum pool_outcome {
	POOL_SUCCESS, /* a token arrived, or the call completed */
	POOL_FAILURE, /* connect error, 5xx, 429, timeout before the first token */
	POOL_NEUTRAL, /* the client's fault or ours (4xx, cancel): says nothing of health */
};

struct pool;

struct pool *pool_new(int eject_after);
void pool_free(struct pool *p);
void pool_set_eject_after(struct pool *p, int eject_after);

/* Picks an endpoint index of cfg for a new attempt, preferring those whose bit
 * is not set in tried (bit i = endpoint i) and skipping those at their
 * max_inflight. Takes an outstanding slot on the chosen endpoint's health,
 * returned in *ep; release it with pool_release. Returns -1 if cfg has no
 * endpoints or every one is at its cap. */
int pool_pick(struct pool *p, const struct modelcfg *cfg, uint64_t tried, uint64_t now, struct pool_ep **ep);
/* Ends an attempt. retry_after_ms (from a 429/503 Retry-After, else 0) keeps
 * the endpoint out of rotation at least that long. */
void pool_release(struct pool *p, struct pool_ep *ep, enum pool_outcome o, uint64_t retry_after_ms, uint64_t now);
/* A health observation outside any request (the active probe). */
void pool_observe(struct pool *p, struct pool_ep *ep, enum pool_outcome o, uint64_t now);
/* Forgets the health of base_urls that the active config no longer names
 * and that no request holds. */
void pool_prune(struct pool *p, const struct modelcfg *active);
/* The health entry for a base_url, or NULL (for tests and status). */
struct pool_ep *pool_find(struct pool *p, const char *base_url);
/* The health entry for a base_url, made on first use (the active probe
 * observes replicas no request has used yet). */
struct pool_ep *pool_get(struct pool *p, const char *base_url);

#endif
