/* control: see include/control.h.
 *
 *   BUS_CONNECTED --> ask (config_get) --> answer or broadcast --> store --> hooks.applied
 *        |                 ^                       |
 *        |  no answer: backoff 1 s .. 30 s         +--> hooks.known (join the queue groups)
 *        +-----------------+
 *   BUS_PROBE --> modelcfg_parse --> probe_config --> reply */
#include "control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "config.h"
#include "contract.h"
#include "log.h"
#include "metrics.h"
#include "modelcfg.h"
#include "pool.h"
#include "probe.h"

#define CONTROL_BACKOFF_FIRST_MS 1000
#define CONTROL_BACKOFF_MAX_MS 30000

struct control {
	uv_loop_t *loop;
	struct bus *bus;
	struct probe *probe;
	struct pool *pool;
	struct modelcfg_store *models;
	const struct config *cfg;
	struct control_hooks hooks;
	struct metrics *metrics;
	bool serving;
	bool known;           /* an answer or a broadcast arrived */
	uint64_t backoff_ms;  /* 0 until the first request went unanswered */
	uv_timer_t ask_timer;
	uv_timer_t probe_timer;
	int open_handles;
};

void control_describe_model(const struct modelcfg *m, char *out, size_t outlen)
{
	char key[32], url[512], rev[32];

	if (!m->ready) {
		snprintf(out, outlen, "none (stub)");
		return;
	}
	util_mask_secret(m->api_key, key, sizeof(key));
	util_url_strip_userinfo(m->base_url, url, sizeof(url));
	if (m->has_revision)
		snprintf(rev, sizeof(rev), "%lld", m->revision);
	else
		snprintf(rev, sizeof(rev), "none");
	snprintf(out, outlen, "model=%s base_url=%s revision=%s provider=%s api_key=%s", m->model, url, rev,
		 *m->provider ? m->provider : "openai", key);
}

static void control__ask(struct control *c)
{
	struct buf b;

	buf_init(&b);
	contract_encode_config_request(&b, c->cfg->instance_id);
	(void)!bus_config_request(c->bus, b.data, b.len);
	buf_free(&b);
}

static void control__on_ask_timer(uv_timer_t *t)
{
	struct control *c = t->data;

	if (c->known)
		return;
	c->hooks.known(c->hooks.ud);
	if (c->backoff_ms == 0) {
		log_warn(NULL, "no answer from the control plane within %lld ms; serving with the stub until it answers",
			 c->cfg->timeouts_config_request_ms);
		c->backoff_ms = CONTROL_BACKOFF_FIRST_MS;
	} else if (c->backoff_ms < CONTROL_BACKOFF_MAX_MS) {
		c->backoff_ms *= 2;
		if (c->backoff_ms > CONTROL_BACKOFF_MAX_MS)
			c->backoff_ms = CONTROL_BACKOFF_MAX_MS;
	}
	log_debug(NULL, "asking the control plane for the model config again");
	control__ask(c);
	uv_timer_start(&c->ask_timer, control__on_ask_timer, c->backoff_ms, 0);
}

void control_connected(struct control *c)
{
	log_info(NULL, "nats: connected; asking the control plane for the model");
	control__ask(c);
	uv_timer_start(&c->ask_timer, control__on_ask_timer, (uint64_t)c->cfg->timeouts_config_request_ms, 0);
}

void control_reconnected(struct control *c)
{
	/* A broadcast may have been missed while disconnected; the revision
	 * rule makes asking again safe. */
	if (c->serving)
		control__ask(c);
}

void control_model(struct control *c, const char *data, size_t len, const char *source)
{
	char err[256], desc[768];
	struct modelcfg *m = modelcfg_parse(data, len, err, sizeof(err));

	if (!m) {
		log_warn(NULL, "model config from %s ignored: %s", source, err);
		(void)modelcfg_store_apply(c->models, NULL); /* counted as invalid */
		return;
	}
	c->known = true;
	uv_timer_stop(&c->ask_timer);
	c->hooks.known(c->hooks.ud);
	control_describe_model(m, desc, sizeof(desc));
	if (m->kind == PROVIDER_UNKNOWN)
		log_warn(NULL, "unknown provider \"%s\": treating it as OpenAI-compatible", m->provider);
	long long rev = m->revision;
	switch (modelcfg_store_apply(c->models, m)) {
	case MODELCFG_APPLIED:
		pool_prune(c->pool, c->models->active);
		log_info(NULL, "model config applied: %s (from %s)", desc, source);
		c->hooks.applied(c->hooks.ud);
		break;
	case MODELCFG_STALE:
		log_info(NULL, "model config ignored: stale revision %lld < %lld (from %s)", rev, c->models->revision,
			 source);
		break;
	case MODELCFG_INVALID:
		break; /* m was parsed: cannot happen */
	}
}

struct control_reply {
	struct bus *bus;
	struct metrics *metrics;
	uint64_t t0; /* uv_hrtime at the request */
	char subject[];
};

static void control__on_probe_answer(void *ud, const char *json, size_t len)
{
	struct control_reply *r = ud;

	/* json is NULL when the probe was cancelled at shutdown. */
	if (json) {
		(void)!bus_publish(r->bus, r->subject, json, len);
		json_t *ans = json_loadb(json, len, 0, NULL);
		bool ok = json_is_true(json_object_get(ans, "ok"));
		json_decref(ans);
		metrics_probe(r->metrics, uv_hrtime() - r->t0, ok ? NULL : "an endpoint failed the probe");
	}
	free(r);
}

static void control__probe_refuse(struct control *c, const char *reply, const char *why)
{
	struct buf b;

	metrics_probe(c->metrics, 0, why);
	buf_init(&b);
	contract_encode_probe_answer(&b, why, NULL, 0);
	(void)!bus_publish(c->bus, reply, b.data, b.len);
	buf_free(&b);
}

void control_probe(struct control *c, const struct bus_msg *msg)
{
	char err[256];
	struct modelcfg *m;
	struct control_reply *r;

	if (!msg->reply)
		return;
	if (!c->serving) {
		control__probe_refuse(c, msg->reply, "the dispatcher is not serving (starting or stopping)");
		return;
	}
	if (!(m = modelcfg_parse(msg->data, msg->len, err, sizeof(err)))) {
		control__probe_refuse(c, msg->reply, err);
		return;
	}
	log_info(NULL, "probe: testing %zu endpoints of model %s", m->nendpoints, m->model);
	r = xmalloc(sizeof(*r) + strlen(msg->reply) + 1);
	r->bus = c->bus;
	r->metrics = c->metrics;
	r->t0 = uv_hrtime();
	strcpy(r->subject, msg->reply);
	probe_config(c->probe, m, c->cfg->pool_probe_timeout_ms, control__on_probe_answer, r);
	modelcfg_unref(m);
}

static void control__on_probe_timer(uv_timer_t *t)
{
	struct control *c = t->data;

	if (c->serving)
		probe_health(c->probe, c->pool, c->models->active, c->cfg->pool_probe_timeout_ms);
	if (c->cfg->pool_probe_interval_ms > 0)
		uv_timer_start(&c->probe_timer, control__on_probe_timer, (uint64_t)c->cfg->pool_probe_interval_ms, 0);
}

void control_set_config(struct control *c, const struct config *cfg)
{
	c->cfg = cfg;
	uv_timer_stop(&c->probe_timer);
	if (cfg->pool_probe_interval_ms > 0)
		uv_timer_start(&c->probe_timer, control__on_probe_timer, (uint64_t)cfg->pool_probe_interval_ms, 0);
}

void control_set_serving(struct control *c, bool serving)
{
	c->serving = serving;
}

struct control *control_new(uv_loop_t *loop, struct bus *bus, struct probe *probe, struct pool *pool,
			    struct modelcfg_store *models, const struct config *cfg, const struct control_hooks *hooks,
			    struct metrics *metrics)
{
	struct control *c = xcalloc(1, sizeof(*c));

	c->metrics = metrics;
	c->loop = loop;
	c->bus = bus;
	c->probe = probe;
	c->pool = pool;
	c->models = models;
	c->hooks = *hooks;
	uv_timer_init(loop, &c->ask_timer);
	uv_timer_init(loop, &c->probe_timer);
	c->ask_timer.data = c->probe_timer.data = c;
	c->open_handles = 2;
	control_set_config(c, cfg);
	return c;
}

static void control__close_cb(uv_handle_t *h)
{
	struct control *c = h->data;

	if (--c->open_handles == 0)
		free(c);
}

void control_close(struct control *c)
{
	if (!c)
		return;
	uv_close((uv_handle_t *)&c->ask_timer, control__close_cb);
	uv_close((uv_handle_t *)&c->probe_timer, control__close_cb);
}
