/* probe: see include/probe.h. Each check is one curl transfer on the shared
 * multi handle; a probe run counts its outstanding checks and answers when
 * the last one is in. */
#include "probe.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "http.h"
#include "log.h"
#include "modelcfg.h"
#include "openai.h"
#include "pool.h"
#include "provider.h"
#include "util.h"

#define PROBE_BODY_MAX (64 * 1024)

struct probe {
	struct http *http;
	/* Everything in flight, so shutdown can free what curl still holds. */
	struct probe_run *runs;
	struct probe_check *checks;
};

struct probe_run {
	struct probe *probe;
	struct modelcfg *cfg;
	struct pool *pool; /* active probe: where results go; NULL for the subject */
	probe_done_cb done;
	void *ud;
	int pending;
	struct contract_probe_result *results; /* one per endpoint, in endpoint order */
	struct probe_run *prev, *next;
};

struct probe_check {
	struct http_xfer x;
	struct probe_check *prev, *next; /* every check in flight */
	struct probe_run *run;
	size_t index;
	struct curl_slist *headers;
	char *body;
	struct buf resp;
	unsigned long long started;
	long long timeout_ms;
};

static size_t probe__on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct probe_check *c = ud;
	size_t n = size * nmemb, room = PROBE_BODY_MAX - c->resp.len;

	buf_append(&c->resp, ptr, n < room ? n : room);
	return n;
}

static void probe__run_free(struct probe_run *run)
{
	if (run->prev)
		run->prev->next = run->next;
	else
		run->probe->runs = run->next;
	if (run->next)
		run->next->prev = run->prev;
	for (size_t i = 0; i < run->cfg->nendpoints; i++) {
		free((char *)run->results[i].base_url);
		free((char *)run->results[i].error);
	}
	free(run->results);
	modelcfg_unref(run->cfg);
	free(run);
}

static void probe__check_free(struct probe_check *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->run->probe->checks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	http_release(&c->x);
	curl_slist_free_all(c->headers);
	free(c->body);
	buf_free(&c->resp);
	free(c);
}

/* Records one endpoint's outcome; the last one answers. */
static void probe__finish(struct probe_check *c, long status, const char *error)
{
	struct probe_run *run = c->run;
	const struct modelcfg_endpoint *e = &run->cfg->endpoints[c->index];
	unsigned long long latency = http_now(c->x.http) - c->started;
	char url[512], msg[600];
	bool ok = !error;

	util_url_strip_userinfo(e->base_url, url, sizeof(url));
	if (error) {
		snprintf(msg, sizeof(msg), "%s", error);
		util_redact(msg, e->api_key);
		util_utf8_truncate(msg, 512);
	}
	if (run->pool) {
		/* Health: unreachable, 5xx and 429 are failures; a 4xx (a wrong
		 * key, a /models the server lacks) proves the replica answers
		 * and says nothing of its health, like a 4xx to a request. */
		bool failed = !status || status >= 500 || status == 429;
		struct pool_ep *ep = pool_get(run->pool, e->base_url);
		ep->last_probe = failed ? POOL_PROBE_FAILED : POOL_PROBE_OK;
		if (ok || failed)
			pool_observe(run->pool, ep, ok ? POOL_SUCCESS : POOL_FAILURE, http_now(c->x.http));
	} else {
		struct contract_probe_result *r = &run->results[c->index];
		r->base_url = xstrdup(url);
		r->ok = ok;
		r->latency_ms = (long long)latency;
		r->status = status;
		r->error = ok ? NULL : xstrdup(msg);
	}
	probe__check_free(c);
	if (--run->pending)
		return;
	if (run->done) {
		struct buf b;
		buf_init(&b);
		contract_encode_probe_answer(&b, NULL, run->results, run->cfg->nendpoints);
		run->done(run->ud, b.data, b.len);
		buf_free(&b);
	}
	probe__run_free(run);
}

static void probe__on_done(struct http_xfer *x, CURLcode rc)
{
	struct probe_check *c = (struct probe_check *)x;
	long status = 0;
	char err[600];

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK) {
		snprintf(err, sizeof(err), "cannot reach the backend: %s", curl_easy_strerror(rc));
		probe__finish(c, status, err);
	} else if (status >= 400) {
		char text[513];
		openai_error_message(c->resp.data ? c->resp.data : "", c->resp.len, text, sizeof(text));
		snprintf(err, sizeof(err), "HTTP %ld: %s", status, text);
		probe__finish(c, status, err);
	} else {
		probe__finish(c, status, NULL);
	}
}

static void probe__on_expired(struct http_xfer *x)
{
	struct probe_check *c = (struct probe_check *)x;
	char err[64];

	snprintf(err, sizeof(err), "no answer within %lld ms", c->timeout_ms);
	probe__finish(c, 0, err);
}

static void probe__start_check(struct probe_run *run, size_t i, long long timeout_ms)
{
	struct probe *p = run->probe;
	const struct modelcfg_endpoint *e = &run->cfg->endpoints[i];
	struct probe_check *c = xcalloc(1, sizeof(*c));
	char *url;
	CURL *easy;

	c->run = run;
	c->index = i;
	c->next = p->checks;
	if (p->checks)
		p->checks->prev = c;
	p->checks = c;
	c->timeout_ms = timeout_ms;
	buf_init(&c->resp);
	if (run->pool)
		url = provider_models_url(run->cfg->kind, e->base_url, run->cfg->api_version);
	else
		url = provider_chat_url(run->cfg->kind, e->base_url, run->cfg->model, run->cfg->api_version, false);
	c->headers = provider_auth_header(c->headers, run->cfg->kind, e->api_key);
	easy = c->x.easy = http_easy(p->http);
	c->x.http = p->http; /* http_release finds the pool even if the start fails */
	provider_easy(easy, url);
	if (!run->pool) {
		c->body = openai_build_probe(run->cfg->model);
		c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, c->body);
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, probe__on_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
	/* The sweep enforces timeout_ms ("no answer within"); curl's own
	 * connect timeout only backs it up. */
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms + 1000);
	free(url);
	c->x.done = probe__on_done;
	c->x.expired = probe__on_expired;
	c->started = http_now(p->http);
	c->x.deadline_ms = c->started + (unsigned long long)timeout_ms;
	if (http_start(p->http, &c->x) < 0)
		probe__finish(c, 0, "cannot start the transfer");
}

static struct probe_run *probe__run_new(struct probe *p, struct modelcfg *cfg, struct pool *pool, probe_done_cb done,
				       void *ud)
{
	struct probe_run *run = xcalloc(1, sizeof(*run));

	run->probe = p;
	run->cfg = modelcfg_ref(cfg);
	run->pool = pool;
	run->done = done;
	run->ud = ud;
	run->results = xcalloc(cfg->nendpoints, sizeof(*run->results));
	run->pending = (int)cfg->nendpoints;
	run->next = p->runs;
	if (p->runs)
		p->runs->prev = run;
	p->runs = run;
	return run;
}

/* Starts a check per endpoint. A check that cannot start finishes at once,
 * so the run may be over (and freed) on return. */
static void probe__run_start(struct probe_run *run, long long timeout_ms)
{
	size_t n = run->cfg->nendpoints;

	for (size_t i = 0; i < n; i++)
		probe__start_check(run, i, timeout_ms);
}

struct probe *probe_new(struct http *h)
{
	struct probe *p = xcalloc(1, sizeof(*p));

	p->http = h;
	return p;
}

void probe_config(struct probe *p, struct modelcfg *cfg, long long timeout_ms, probe_done_cb done, void *ud)
{
	if (!cfg->ready) {
		struct buf b;
		buf_init(&b);
		contract_encode_probe_answer(&b, "the config is not ready: it needs model and a base_url", NULL, 0);
		done(ud, b.data, b.len);
		buf_free(&b);
		return;
	}
	probe__run_start(probe__run_new(p, cfg, NULL, done, ud), timeout_ms);
}

void probe_health(struct probe *p, struct pool *pool, struct modelcfg *cfg, long long timeout_ms)
{
	if (cfg->ready)
		probe__run_start(probe__run_new(p, cfg, pool, NULL, NULL), timeout_ms);
}

void probe_free(struct probe *p)
{
	if (!p)
		return;
	while (p->checks) {
		struct probe_check *c = p->checks;
		http_abort(&c->x);
		probe__check_free(c);
	}
	while (p->runs) {
		/* Lets the owner free what ud holds. */
		if (p->runs->done)
			p->runs->done(p->runs->ud, NULL, 0);
		probe__run_free(p->runs);
	}
	free(p);
}
