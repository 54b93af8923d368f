/* request: the lifecycle of chat requests. Owns the in-flight table (by
 * request_id), capacity, cancel, drain, and the one place where a request's
 * single terminal event is sent. Feeds each request from an upstream call or,
 * with no ready model, the stub. Wire formats live in contract; transport in
 * bus. Loop thread only. */
#ifndef SUNDYNIX_REQUEST_H
#define SUNDYNIX_REQUEST_H

#include <stddef.h>
#include <uv.h>

struct bus;
struct config;
struct http;
struct modelcfg_store;
struct pool;
struct requests;

struct requests *requests_new(uv_loop_t *loop, struct http *http, struct bus *bus, struct modelcfg_store *models,
			      struct pool *pool, const struct config *cfg);
/* Frees the table; every request must have ended (requests_end_all). */
void requests_free(struct requests *rq);
/* The daemon config new requests read. A request keeps the model snapshot it
 * started with; its retries read the current pool.max_attempts and timeouts. */
void requests_set_config(struct requests *rq, const struct config *cfg);

/* A submit message: validates, acks on reply (may be NULL), starts the stream. */
void requests_submit(struct requests *rq, const char *data, size_t len, const char *reply);
/* A cancel broadcast; unknown ids are ignored. */
void requests_cancel(struct requests *rq, const char *data, size_t len);
/* Stops taking new requests; on_idle runs once no request is left in flight
 * (at once if none is). */
void requests_drain(struct requests *rq, void (*on_idle)(void *ud), void *ud);
/* Ends every request in flight with an error event of the given code. */
void requests_end_all(struct requests *rq, const char *code, const char *message);
size_t requests_inflight(const struct requests *rq);

#endif
