/* gateway: a blocking nats.c client playing the gateway (and, with
 * control.h, the control plane) on one subject prefix: submit and wait for
 * the ack, publish, cancel, plain requests. Reconnects quickly (50 ms) after
 * a server restart. Closed at teardown. Stream events are stream.h's. */
#ifndef SUNDYNIX_TEST_GATEWAY_H
#define SUNDYNIX_TEST_GATEWAY_H

#include <jansson.h>
#include <nats/nats.h>
#include <stddef.h>

struct h_nats;

struct h_client {
	natsConnection *nc;
	char *prefix;
};

/* Sets o to reconnect as every test client does: forever, 50 ms apart, no
 * jitter, with a 2 s connect timeout. */
void h_client_options_reconnect(natsOptions *o);
struct h_client *h_client_connect(struct h_nats *n, const char *prefix);
/* A client that authenticates; any field may be NULL. A ca_file turns TLS on. */
struct h_client_auth {
	const char *user, *password, *token;
	const char *ca_file, *cert_file, *key_file;
};
struct h_client *h_client_connect_auth(struct h_nats *n, const char *prefix, const struct h_client_auth *a);
void h_client_close(struct h_client *c);
/* Fails the test unless the server saw everything published so far. */
void h_flush(struct h_client *c);

/* Submits body (a JSON text) and returns the ack (caller owns); fails the
 * test on timeout. */
json_t *h_submit_raw(struct h_client *c, const char *body, size_t len, int timeout_ms);
json_t *h_submit(struct h_client *c, json_t *req, int timeout_ms); /* req borrowed */
/* Submits {"request_id":rid,"messages":[{"role":"user","content":text}]} and
 * asserts it is accepted. */
void h_submit_simple(struct h_client *c, const char *rid, const char *text);
/* Publishes on <prefix>.<subject_suffix> and flushes. */
void h_publish(struct h_client *c, const char *subject_suffix, const char *body);
void h_cancel(struct h_client *c, const char *rid);
/* A request on <prefix>.<subject_suffix> that may fail: returns the status,
 * and on NATS_OK the reply text in *reply (caller frees). */
natsStatus h_request(struct h_client *c, const char *subject_suffix, const char *body, int timeout_ms,
		     char **reply);

/* ---- for the other support modules ---- */

/* Drains and destroys an asynchronous subscription: returns once its
 * callbacks in progress returned, so what they use can be freed. */
void h__sub_stop(natsSubscription *sub);

#endif
