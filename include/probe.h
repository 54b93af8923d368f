/* probe: one-shot checks of replicas. The probe subject asks "would this
 * ModelConfig work from here?": every endpoint gets a one-token,
 * non-streaming chat request and the answer lists ok / latency / error per
 * endpoint. The optional active probe sends GET {base_url}/models to every
 * replica of the active model and reports the outcome to the pool's health.
 * Knows nothing of NATS; the caller publishes the answer. */
#ifndef SUNDYNIX_PROBE_H
#define SUNDYNIX_PROBE_H

#include <stddef.h>

struct http;
struct metrics_hist;
struct modelcfg;
struct pool;
struct probe;

/* Called once with the answer JSON (valid only during the call), or with
 * json NULL when the probe is cancelled (probe_cancel_all). */
typedef void (*probe_done_cb)(void *ud, const char *json, size_t len);

struct probe *probe_new(struct http *h);
/* Cancels every probe in flight (their callbacks get json NULL) and frees. */
void probe_free(struct probe *p);
/* Probes every endpoint of cfg (takes its own reference). A config that is
 * not ready is answered at once with an error. */
void probe_config(struct probe *p, struct modelcfg *cfg, long long timeout_ms, probe_done_cb done, void *ud);
/* The active probe: GET {base_url}/models on every endpoint of cfg; each
 * result goes to the pool as a success or a failure. */
void probe_health(struct probe *p, struct pool *pool, struct modelcfg *cfg, long long timeout_ms);

#endif
