/* control: see control.h. The responder's callback runs on a nats.c thread;
 * of its responder it only reads what was set before the subscription, and
 * bumps an atomic counter. */
#include "control.h"

#include <nats/nats.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "check.h"
#include "daemon.h"
#include "fixture.h"
#include "gateway.h"
#include "mock.h"

void h_publish_config(struct h_client *c, const char *body)
{
	h_publish(c, "config.model.updated", body);
}

/* Publishes body and waits for one more log line holding needle. */
static void h__apply(struct h_client *c, struct h_daemon *d, const char *needle, const char *body)
{
	size_t before = h_daemon_log_count(d, needle);
	h_publish_config(c, body);
	h_daemon_expect_log_count(d, needle, before + 1, 5000);
}

void h_use_url(struct h_client *c, struct h_daemon *d, const char *url, const char *model, const char *api_key,
	       long long revision)
{
	char needle[256], rev[32] = "";
	snprintf(needle, sizeof(needle), "model config applied: model=%s base_url=%s", model, url);
	if (revision >= 0)
		snprintf(rev, sizeof(rev), ",\"revision\":%lld", revision);
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"%s\",\"model\":\"%s\"%s}",
			       url, api_key ? api_key : "", model, rev);
	h__apply(c, d, needle, body);
	free(body);
}

void h_use_mock(struct h_client *c, struct h_daemon *d, struct h_mock *m, const char *model,
		const char *api_key, long long revision)
{
	h_use_url(c, d, m->base_url, model, api_key, revision);
}

struct h_daemon *h_daemon_start_on_mock(struct h_nats *n, const char *overrides_json, struct h_client **c,
					struct h_mock *m, const char *script, const char *model, long long revision)
{
	struct h_daemon *d = h_daemon_start_client(n, overrides_json, c);
	h_mock_script(m, "%s", script);
	h_use_mock(*c, d, m, model, "", revision);
	return d;
}

void h_apply_config(struct h_client *c, struct h_daemon *d, const char *model, const char *fmt, ...)
{
	char needle[256];
	va_list ap;

	snprintf(needle, sizeof(needle), "model config applied: model=%s ", model);
	va_start(ap, fmt);
	int len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(len >= 0);
	char *body = xmalloc((size_t)len + 1);
	va_start(ap, fmt);
	vsnprintf(body, (size_t)len + 1, fmt, ap);
	va_end(ap);
	json_decref(h_json_parse(body));
	h__apply(c, d, needle, body);
	free(body);
}

json_t *h_probe(struct h_client *c, const char *body)
{
	char *reply = NULL;
	natsStatus st = h_request(c, "dispatcher.probe", body, 10000, &reply);
	if (st != NATS_OK)
		fail_msg("probe request: %s", natsStatus_GetText(st));
	json_t *j = h_json_parse(reply);
	free(reply);
	return j;
}

/* ---- config responder ---- */

struct h_responder {
	natsSubscription *sub;
	int delay_ms;
	atomic_int count; /* bumped on nats.c's thread */
	char body[];
};

static void h__responder_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct h_responder *r = ud;
	(void)sub;
	if (r->delay_ms > 0)
		h_sleep_ms(r->delay_ms);
	if (natsMsg_GetReply(msg))
		natsConnection_PublishString(nc, natsMsg_GetReply(msg), r->body);
	atomic_fetch_add(&r->count, 1);
	natsMsg_Destroy(msg);
}

static void h__responder_cleanup(void *p)
{
	h__forget(p);
	h__sub_stop(((struct h_responder *)p)->sub);
	free(p);
}

struct h_responder *h_responder_start(struct h_client *c, const char *body, int delay_ms)
{
	size_t len = strlen(body);
	struct h_responder *r = xcalloc(1, sizeof(*r) + len + 1);
	char subj[256];
	memcpy(r->body, body, len + 1);
	r->delay_ms = delay_ms;
	atomic_init(&r->count, 0);
	snprintf(subj, sizeof(subj), "%s.config.model.get", c->prefix);
	natsStatus s = natsConnection_Subscribe(&r->sub, c->nc, subj, h__responder_cb, r);
	if (s != NATS_OK)
		fail_msg("subscribe %s: %s", subj, natsStatus_GetText(s));
	h__push(h__responder_cleanup, r);
	h_flush(c);
	return r;
}

int h_responder_count(struct h_responder *r)
{
	return atomic_load(&r->count);
}

void h_responder_free(struct h_responder *r)
{
	h__responder_cleanup(r);
}
