/* gateway: see gateway.h. */
#include "gateway.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "check.h"
#include "fixture.h"
#include "nats_server.h"
#include "util.h"

static void h__client_cleanup(void *p)
{
	struct h_client *c = p;
	h__forget(c);
	natsConnection_Destroy(c->nc);
	free(c->prefix);
	free(c);
}

struct h_client *h_client_connect(struct h_nats *n, const char *prefix)
{
	return h_client_connect_auth(n, prefix, NULL);
}

void h_client_options_reconnect(natsOptions *o)
{
	assert_int_equal(natsOptions_SetAllowReconnect(o, true), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(o, 50), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectJitter(o, 0, 0), NATS_OK);
	assert_int_equal(natsOptions_SetTimeout(o, 2000), NATS_OK);
}

struct h_client *h_client_connect_auth(struct h_nats *n, const char *prefix, const struct h_client_auth *a)
{
	natsOptions *o = NULL;
	struct h_client *c = xcalloc(1, sizeof(*c));
	c->prefix = xstrdup(prefix);
	assert_int_equal(natsOptions_Create(&o), NATS_OK);
	assert_int_equal(natsOptions_SetURL(o, n->url), NATS_OK);
	h_client_options_reconnect(o);
	if (a && a->user)
		assert_int_equal(natsOptions_SetUserInfo(o, a->user, a->password), NATS_OK);
	if (a && a->token)
		assert_int_equal(natsOptions_SetToken(o, a->token), NATS_OK);
	if (a && a->ca_file) {
		assert_int_equal(natsOptions_SetSecure(o, true), NATS_OK);
		assert_int_equal(natsOptions_LoadCATrustedCertificates(o, a->ca_file), NATS_OK);
	}
	if (a && a->cert_file)
		assert_int_equal(natsOptions_LoadCertificatesChain(o, a->cert_file, a->key_file), NATS_OK);
	natsStatus s = natsConnection_Connect(&c->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		free(c->prefix);
		free(c);
		fail_msg("connect to %s%s%s: %s", n->url, a && a->user ? " as " : "", a && a->user ? a->user : "",
			 natsStatus_GetText(s));
	}
	h__push(h__client_cleanup, c);
	return c;
}

void h_client_close(struct h_client *c)
{
	h__client_cleanup(c);
}

void h_flush(struct h_client *c)
{
	natsStatus s = natsConnection_FlushTimeout(c->nc, 5000);
	if (s != NATS_OK)
		fail_msg("flush: %s", natsStatus_GetText(s));
}

json_t *h_submit_raw(struct h_client *c, const char *body, size_t len, int timeout_ms)
{
	natsMsg *reply = NULL;
	char subj[256];
	snprintf(subj, sizeof(subj), "%s.chat.submit", c->prefix);
	natsStatus s = natsConnection_Request(&reply, c->nc, subj, body, (int)len, timeout_ms);
	if (s != NATS_OK)
		fail_msg("submit on %s: %s (no ack within %d ms)", subj, natsStatus_GetText(s), timeout_ms);
	char *text = xstrndup(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
	natsMsg_Destroy(reply);
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);
	if (!j)
		fail_msg("ack is not JSON: %s", text);
	free(text);
	return j;
}

json_t *h_submit(struct h_client *c, json_t *req, int timeout_ms)
{
	char *body = json_dumps(req, JSON_COMPACT);
	json_t *ack = h_submit_raw(c, body, strlen(body), timeout_ms);
	free(body);
	return ack;
}

void h_submit_simple(struct h_client *c, const char *rid, const char *text)
{
	json_t *req = json_pack("{s:s,s:[{s:s,s:s}]}", "request_id", rid, "messages", "role", "user", "content", text);
	json_t *ack = h_submit(c, req, 5000);
	json_decref(req);
	if (!json_is_true(json_object_get(ack, "accepted"))) {
		char *d = json_dumps(ack, JSON_COMPACT);
		fail_msg("request %s not accepted: %s", rid, d);
	}
	assert_string_equal(h_jstr(ack, "request_id"), rid);
	json_decref(ack);
}

void h_publish(struct h_client *c, const char *subject_suffix, const char *body)
{
	char subj[256];
	snprintf(subj, sizeof(subj), "%s.%s", c->prefix, subject_suffix);
	natsStatus s = natsConnection_PublishString(c->nc, subj, body);
	if (s != NATS_OK)
		fail_msg("publish %s: %s", subj, natsStatus_GetText(s));
	h_flush(c);
}

void h_cancel(struct h_client *c, const char *rid)
{
	char *body = xasprintf("{\"request_id\":\"%s\"}", rid);
	h_publish(c, "chat.cancel", body);
	free(body);
}

natsStatus h_request(struct h_client *c, const char *subject_suffix, const char *body, int timeout_ms,
		     char **reply)
{
	natsMsg *msg = NULL;
	char subj[256];
	snprintf(subj, sizeof(subj), "%s.%s", c->prefix, subject_suffix);
	*reply = NULL;
	natsStatus s = natsConnection_RequestString(&msg, c->nc, subj, body, timeout_ms);
	if (s == NATS_OK) {
		*reply = xstrndup(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
		natsMsg_Destroy(msg);
	}
	return s;
}

void h__sub_stop(natsSubscription *sub)
{
	if (natsSubscription_Drain(sub) == NATS_OK)
		natsSubscription_WaitForDrainCompletion(sub, 3000);
	else
		natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
}
