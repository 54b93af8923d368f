/* probe: see include/probe.h. Each check is one curl transfer on the shared
 * multi handle; a probe run counts its outstanding checks and answers when
 * the last one is in. */
#include "probe.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "modelcfg.h"
#include "openai.h"
#include "pool.h"
#include "provider.h"
#include "util.h"

#define PROBE_BODY_MAX (64 * 1024)

struct probe_run {
	struct modelcfg *cfg;
	struct pool *pool; /* active probe: where results go; NULL for the subject */
	probe_done_cb done;
	void *ud;
	int pending;
	json_t *results; /* array, one object per endpoint, in endpoint order */
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

/* Everything in flight, so shutdown can free what curl still holds. */
static struct probe_run *probe__runs;
static struct probe_check *probe__checks;

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
		probe__runs = run->next;
	if (run->next)
		run->next->prev = run->prev;
	modelcfg_unref(run->cfg);
	json_decref(run->results);
	free(run);
}

static void probe__check_free(struct probe_check *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		probe__checks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	curl_easy_cleanup(c->x.easy);
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
		if (ok || failed)
			pool_observe(run->pool, pool_get(run->pool, e->base_url), ok ? POOL_SUCCESS : POOL_FAILURE,
				     http_now(c->x.http));
	} else {
		json_t *r = json_pack("{s:s, s:b, s:I, s:I}", "base_url", url, "ok", ok, "latency_ms",
				      (json_int_t)latency, "status", (json_int_t)status);
		json_object_set_new(r, "error", ok ? json_null() : json_string(msg));
		json_array_set_new(run->results, c->index, r);
	}
	probe__check_free(c);
	if (--run->pending)
		return;
	if (run->done) {
		json_t *answer = json_pack("{s:b, s:O}", "ok", 1, "endpoints", run->results);
		size_t i;
		json_t *r;
		json_array_foreach(run->results, i, r)
			if (!json_is_true(json_object_get(r, "ok")))
				json_object_set_new(answer, "ok", json_false());
		char *s = json_dumps(answer, JSON_COMPACT);
		run->done(run->ud, s, strlen(s));
		free(s);
		json_decref(answer);
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

static void probe__start_check(struct http *h, struct probe_run *run, size_t i, long long timeout_ms)
{
	const struct modelcfg_endpoint *e = &run->cfg->endpoints[i];
	struct probe_check *c = xcalloc(1, sizeof(*c));
	char *url;
	CURL *easy;

	c->run = run;
	c->index = i;
	c->next = probe__checks;
	if (probe__checks)
		probe__checks->prev = c;
	probe__checks = c;
	c->timeout_ms = timeout_ms;
	buf_init(&c->resp);
	if (run->pool)
		url = provider_models_url(run->cfg->kind, e->base_url, run->cfg->api_version);
	else
		url = provider_chat_url(run->cfg->kind, e->base_url, run->cfg->model, run->cfg->api_version);
	c->headers = provider_auth_header(c->headers, run->cfg->kind, e->api_key);
	easy = c->x.easy = provider_easy(url);
	if (!run->pool) {
		json_t *b = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", run->cfg->model, "messages", "role",
				      "user", "content", "ping", "max_tokens", 1, "stream", 0);
		c->body = json_dumps(b, JSON_COMPACT);
		json_decref(b);
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
	c->started = http_now(h);
	c->x.deadline_ms = c->started + (unsigned long long)timeout_ms;
	if (http_start(h, &c->x) < 0)
		abort(); /* only on out of memory inside curl */
}

static struct probe_run *probe__run_new(struct modelcfg *cfg, struct pool *pool, probe_done_cb done, void *ud)
{
	struct probe_run *run = xcalloc(1, sizeof(*run));

	run->cfg = modelcfg_ref(cfg);
	run->pool = pool;
	run->done = done;
	run->ud = ud;
	run->results = json_array();
	for (size_t i = 0; i < cfg->nendpoints; i++)
		json_array_append_new(run->results, json_null());
	run->pending = (int)cfg->nendpoints;
	run->next = probe__runs;
	if (probe__runs)
		probe__runs->prev = run;
	probe__runs = run;
	return run;
}

void probe_config(struct http *h, struct modelcfg *cfg, long long timeout_ms, probe_done_cb done, void *ud)
{
	if (!cfg->ready) {
		static const char answer[] =
			"{\"ok\":false,\"error\":\"the config is not ready: it needs model and a base_url\",\"endpoints\":[]}";
		done(ud, answer, sizeof(answer) - 1);
		return;
	}
	struct probe_run *run = probe__run_new(cfg, NULL, done, ud);
	for (size_t i = 0; i < cfg->nendpoints; i++)
		probe__start_check(h, run, i, timeout_ms);
}

void probe_health(struct http *h, struct pool *pool, struct modelcfg *cfg, long long timeout_ms)
{
	if (!cfg->ready)
		return;
	struct probe_run *run = probe__run_new(cfg, pool, NULL, NULL);
	for (size_t i = 0; i < cfg->nendpoints; i++)
		probe__start_check(h, run, i, timeout_ms);
}

void probe_cancel_all(void)
{
	while (probe__checks) {
		struct probe_check *c = probe__checks;
		http_abort(&c->x);
		probe__check_free(c);
	}
	while (probe__runs) {
		/* Lets the owner free what ud holds. */
		if (probe__runs->done)
			probe__runs->done(probe__runs->ud, NULL, 0);
		probe__run_free(probe__runs);
	}
}
