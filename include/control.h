/* control: the control-plane side of the dispatcher. Asks the control plane
 * for the active model once NATS is up (again with backoff until an answer
 * or a broadcast arrives, and after every reconnect), applies answers and
 * broadcasts through the modelcfg store (which alone decides what is stale),
 * prunes the pool's health to the new config, answers the probe subject and
 * runs the active probe. Knows nothing of requests or of HTTP (probe does
 * the checks, bus the messaging). Loop thread only. */
#ifndef SUNDYNIX_CONTROL_H
#define SUNDYNIX_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct bus;
struct bus_msg;
struct config;
struct control;
struct metrics;
struct modelcfg;
struct modelcfg_store;
struct pool;
struct probe;

/* What main hears from control. */
struct control_hooks {
	/* The model is known (an answer or a broadcast arrived), or the control
	 * plane did not answer in time: time to take requests. May repeat. */
	void (*known)(void *ud);
	/* A new model config is in force. */
	void (*applied)(void *ud);
	void *ud;
};

/* metrics (may be NULL) gets the probe subject's figures. */
struct control *control_new(uv_loop_t *loop, struct bus *bus, struct probe *probe, struct pool *pool,
			    struct modelcfg_store *models, const struct config *cfg, const struct control_hooks *hooks,
			    struct metrics *metrics);
/* Closes the timers (the loop must run once more) and frees. */
void control_close(struct control *c);
/* A reload's new config (the caller keeps it alive until the next call). */
void control_set_config(struct control *c, const struct config *cfg);
/* Whether the dispatcher serves: probes are answered and the active probe
 * runs only then. */
void control_set_serving(struct control *c, bool serving);

/* Bus events. */
void control_connected(struct control *c);
void control_reconnected(struct control *c);
/* A ModelConfig from the startup answer or a broadcast; source names it in logs. */
void control_model(struct control *c, const char *data, size_t len, const char *source);
void control_probe(struct control *c, const struct bus_msg *msg);

/* One line for logs: model, base_url without userinfo, revision, provider
 * and the key masked; "none (stub)" when not ready. */
void control_describe_model(const struct modelcfg *m, char *out, size_t outlen);

#endif
