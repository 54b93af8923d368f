/* request: see include/request.h.
 *
 *   submit --> validate --> [busy / bad_request: ack + error event]
 *                 |
 *                 v  accepted (ack), snapshot of the model config taken
 *       no ready model: REQ_STUB          ready: REQ_ATTEMPT (attempt n, nothing relayed yet)
 *                 |                              |  failed, request_may_retry --> REQ_ATTEMPT (n+1)
 *                 |                              |  first delta
 *                 |                              v
 *                 |                       REQ_STREAMING (this attempt is the last)
 *                 v                              v
 *   end / cancel / timeout / shutdown --> request__finish --> REQ_ENDED, freed
 *
 * request__finish is the only function that publishes a terminal event, and
 * it runs once per request: it removes the request from the table first. */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "modelcfg.h"
#include "openai.h"
#include "pool.h"
#include "prompt.h"
#include "stub.h"

enum request_state {
	REQ_ATTEMPT,   /* an upstream attempt runs and nothing was relayed: a retry may follow */
	REQ_STREAMING, /* deltas went out: the attempt in progress is the last */
	REQ_STUB,      /* the stub streams (no ready model) */
	REQ_ENDED,     /* the terminal event is out */
};

struct request {
	struct request *hnext;       /* hash chain */
	struct request *prev, *next; /* list of all requests in flight */
	struct requests *rq;
	enum request_state state;
	char rid[CONTRACT_RID_MAX + 1];
	char *subject; /* <prefix>.chat.stream.<rid> */
	unsigned long long seq;
	struct modelcfg *model; /* snapshot taken at accept; NULL for the stub */
	struct upstream *up;    /* REQ_ATTEMPT, REQ_STREAMING */
	struct stub *stub;      /* REQ_STUB */
	unsigned long long started_ms;
	unsigned long long deltas;

	/* Upstream attempts. */
	struct rcstr *body;   /* the upstream request body, kept for retries until the first delta */
	struct pool_ep *ep;   /* health slot of the current attempt */
	int ep_index;         /* endpoint of the current (or last) attempt */
	int attempts;
	uint64_t tried;       /* bit i: endpoint i was tried */
};

struct requests {
	const struct request_ops *ops;
	const struct contract_subjects *subjects;
	struct modelcfg_store *models;
	struct pool *pool;
	const struct config *cfg;
	struct metrics_hist *chunk_latency;

	struct request **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
	struct request *all;

	struct buf ev; /* scratch for encoding one event; the loop is single-threaded */
	bool draining;
	void (*on_idle)(void *ud);
	void *idle_ud;
};

static const struct upstream_cbs request__cbs;

static unsigned long long request__now(const struct requests *rq)
{
	return rq->ops->now_ms(rq->ops->ud);
}

static size_t request__hash(const char *s)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct request *request__find(struct requests *rq, const char *rid)
{
	struct request *r = rq->buckets[request__hash(rid) & (rq->nbuckets - 1)];
	while (r && strcmp(r->rid, rid))
		r = r->hnext;
	return r;
}

static void request__grow(struct requests *rq)
{
	size_t n = rq->nbuckets * 2;
	struct request **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < rq->nbuckets; i++) {
		struct request *r = rq->buckets[i], *next;
		for (; r; r = next) {
			next = r->hnext;
			size_t k = request__hash(r->rid) & (n - 1);
			r->hnext = b[k];
			b[k] = r;
		}
	}
	free(rq->buckets);
	rq->buckets = b;
	rq->nbuckets = n;
}

static void request__insert(struct requests *rq, struct request *r)
{
	if (rq->count >= rq->nbuckets)
		request__grow(rq);
	size_t k = request__hash(r->rid) & (rq->nbuckets - 1);
	r->hnext = rq->buckets[k];
	rq->buckets[k] = r;
	r->prev = NULL;
	r->next = rq->all;
	if (rq->all)
		rq->all->prev = r;
	rq->all = r;
	rq->count++;
}

static void request__remove(struct requests *rq, struct request *r)
{
	struct request **pp = &rq->buckets[request__hash(r->rid) & (rq->nbuckets - 1)];
	while (*pp != r)
		pp = &(*pp)->hnext;
	*pp = r->hnext;
	if (r->prev)
		r->prev->next = r->next;
	else
		rq->all = r->next;
	if (r->next)
		r->next->prev = r->prev;
	rq->count--;
}

static void request__publish(struct requests *rq, const char *subject)
{
	/* A failed publish is logged by the bus; the stream goes on so the
	 * terminal event still has its chance. */
	rq->ops->publish(rq->ops->ud, subject, rq->ev.data, rq->ev.len);
}

static void request__ack(struct requests *rq, const char *reply, const char *rid, enum contract_code code,
			 const char *msg)
{
	if (!reply || !*reply)
		return;
	buf_reset(&rq->ev);
	contract_encode_ack(&rq->ev, rid, code, msg);
	request__publish(rq, reply);
}

/* An error event for a request that never started (seq 0). */
static void request__reject_event(struct requests *rq, const char *rid, enum contract_code code, const char *msg)
{
	char *subject = contract_stream_subject(rq->subjects, rid);
	buf_reset(&rq->ev);
	contract_encode_error(&rq->ev, rid, 0, code, msg, NULL);
	request__publish(rq, subject);
	free(subject);
}

static void request__free(struct request *r)
{
	if (r->model)
		modelcfg_unref(r->model);
	rcstr_unref(r->body);
	free(r->subject);
	free(r);
}

/* Ends the current attempt's hold on its endpoint's health. */
static void request__release_ep(struct request *r, enum pool_outcome o, unsigned long long retry_after_ms)
{
	if (!r->ep)
		return;
	pool_release(r->rq->pool, r->ep, o, retry_after_ms, request__now(r->rq));
	r->ep = NULL;
}

/* The one exit of a request. res->code CONTRACT_OK means done. The source
 * must already be stopped or finished. */
static void request__finish(struct request *r, const struct upstream_result *res)
{
	struct requests *rq = r->rq;
	unsigned long long ms = request__now(rq) - r->started_ms;

	if (r->state == REQ_ENDED)
		return;
	r->state = REQ_ENDED;
	r->up = NULL;
	r->stub = NULL;
	request__remove(rq, r);

	char endpoint[512];
	struct contract_route route = { r->attempts, NULL }, *rt = NULL;
	if (r->model && r->attempts) {
		util_url_strip_userinfo(r->model->endpoints[r->ep_index].base_url, endpoint, sizeof(endpoint));
		route.endpoint = endpoint;
		rt = &route;
	}
	buf_reset(&rq->ev);
	if (res->code != CONTRACT_OK) {
		contract_encode_error(&rq->ev, r->rid, r->seq++, res->code, res->message, rt);
		log_info(r->rid, "failed after %llu ms, %llu deltas: %s: %s", ms, r->deltas,
			 contract_code_name(res->code), res->message);
	} else {
		const char *model = res->model ? res->model : r->model ? r->model->model : "stub";
		contract_encode_done(&rq->ev, r->rid, r->seq++, res->finish_reason, model,
				     res->has_usage ? &res->usage : NULL, rt);
		log_info(r->rid, "done in %llu ms, %llu deltas, finish=%s", ms, r->deltas, res->finish_reason);
	}
	request__publish(rq, r->subject);
	request__free(r);

	if (rq->draining && rq->count == 0 && rq->on_idle) {
		void (*cb)(void *) = rq->on_idle;
		rq->on_idle = NULL;
		cb(rq->idle_ud);
	}
}

static void request__on_delta(void *ud, enum contract_delta kind, const char *text, size_t len)
{
	struct request *r = ud;
	struct requests *rq = r->rq;

	if (r->state == REQ_ATTEMPT) {
		/* A delta went out: no retry can follow, so only the attempt
		 * needs the body now. */
		r->state = REQ_STREAMING;
		rcstr_unref(r->body);
		r->body = NULL;
	}
	r->deltas++;
	buf_reset(&rq->ev);
	contract_encode_delta(&rq->ev, r->rid, r->seq++, kind, text, len);
	request__publish(rq, r->subject);
}

/* A tool-call piece is relayed as a delta is, and like one it ends the
 * chance of a retry. */
static void request__on_tool_call(void *ud, const struct contract_tool_call *tc)
{
	struct request *r = ud;
	struct requests *rq = r->rq;

	if (r->state == REQ_ATTEMPT) {
		r->state = REQ_STREAMING;
		rcstr_unref(r->body);
		r->body = NULL;
	}
	r->deltas++;
	buf_reset(&rq->ev);
	contract_encode_tool_call(&rq->ev, r->rid, r->seq++, tc);
	request__publish(rq, r->subject);
}

bool request_may_retry(const struct request_retry_facts *f)
{
	return f->code != CONTRACT_OK && f->retryable && f->deltas == 0 && f->attempts < f->max_attempts &&
	       f->tried < f->nendpoints && f->elapsed_ms < (unsigned long long)f->total_ms;
}

static int request__start_attempt(struct request *r);

static void request__on_end(void *ud, const struct upstream_result *res)
{
	struct request *r = ud;
	enum pool_outcome o = POOL_NEUTRAL;

	switch (r->state) {
	case REQ_STUB:
	case REQ_STREAMING:
		r->up = NULL;
		request__release_ep(r, POOL_SUCCESS, 0);
		request__finish(r, res);
		return;
	case REQ_ATTEMPT:
		break;
	case REQ_ENDED:
		return;
	}
	r->up = NULL;
	if (res->code == CONTRACT_OK || res->got_token)
		o = POOL_SUCCESS;
	else if (res->retryable)
		o = POOL_FAILURE;
	request__release_ep(r, o, res->retry_after_ms);

	const struct config *cfg = r->rq->cfg;
	struct request_retry_facts f = {
		.code = res->code,
		.retryable = res->retryable,
		.deltas = r->deltas,
		.attempts = r->attempts,
		.max_attempts = cfg->pool_max_attempts,
		.tried = (size_t)__builtin_popcountll(r->tried),
		.nendpoints = r->model->nendpoints,
		.elapsed_ms = request__now(r->rq) - r->started_ms,
		.total_ms = cfg->timeouts_total_ms,
	};
	if (request_may_retry(&f)) {
		char url[512];
		util_url_strip_userinfo(r->model->endpoints[r->ep_index].base_url, url, sizeof(url));
		log_info(r->rid, "attempt %d on %s failed (%s: %s); retrying", r->attempts, url,
			 contract_code_name(res->code), res->message);
		if (request__start_attempt(r) == 0)
			return;
	}
	request__finish(r, res);
}

static const struct upstream_cbs request__cbs = {
	.delta = request__on_delta,
	.tool_call = request__on_tool_call,
	.end = request__on_end,
};

/* Stops the source without a callback, then ends the request with code. */
static void request__abort(struct request *r, enum contract_code code, const char *message)
{
	struct upstream_result res = { .code = code, .message = message };
	const struct request_ops *ops = r->rq->ops;

	switch (r->state) {
	case REQ_ATTEMPT:
	case REQ_STREAMING:
		if (r->up)
			ops->upstream_cancel(ops->ud, r->up);
		r->up = NULL;
		request__release_ep(r, POOL_NEUTRAL, 0);
		break;
	case REQ_STUB:
		ops->stub_cancel(ops->ud, r->stub);
		r->stub = NULL;
		break;
	case REQ_ENDED:
		return;
	}
	request__finish(r, &res);
}

/* Starts the next attempt on the endpoint the pool picks. */
static int request__start_attempt(struct request *r)
{
	struct requests *rq = r->rq;
	const struct config *cfg = rq->cfg;
	unsigned long long now = request__now(rq);
	unsigned long long elapsed = now - r->started_ms;
	int i = pool_pick(rq->pool, r->model, r->tried, now, &r->ep);

	if (i < 0)
		return -1;
	r->ep_index = i;
	r->attempts++;
	if (i < 64)
		r->tried |= 1ull << i;
	const struct modelcfg_endpoint *e = &r->model->endpoints[i];
	struct upstream_params p = {
		.rid = r->rid,
		.base_url = e->base_url,
		.api_key = e->api_key,
		.provider = r->model->kind,
		.model = r->model->model,
		.api_version = r->model->api_version,
		.body = r->body,
		.connect_timeout_ms = cfg->timeouts_connect_ms,
		.first_token_ms = cfg->timeouts_first_token_ms,
		.idle_ms = cfg->timeouts_idle_ms,
		/* The total deadline belongs to the request, across attempts. */
		.total_ms = cfg->timeouts_total_ms > (long long)elapsed ? cfg->timeouts_total_ms - (long long)elapsed : 1,
		.max_line = (size_t)cfg->limits_max_sse_line_bytes,
		.chunk_latency = rq->chunk_latency,
	};
	r->state = REQ_ATTEMPT;
	r->up = rq->ops->upstream_start(rq->ops->ud, &p, &request__cbs, r);
	if (!r->up) {
		request__release_ep(r, POOL_NEUTRAL, 0);
		return -1;
	}
	return 0;
}

static int request__start_upstream(struct requests *rq, struct request *r, struct contract_submit *sub)
{
	const struct config *cfg = rq->cfg;
	json_t *msgs = prompt_build(cfg->prompt_system, cfg->prompt_memory_template, sub->messages, sub->profile,
				    sub->facts);

	char *body = openai_build_request(r->model->model, msgs, sub->params);
	json_decref(msgs);
	r->body = rcstr_new(body, strlen(body));
	free(body);
	return request__start_attempt(r);
}

void requests_submit(struct requests *rq, const char *data, size_t len, const char *reply)
{
	const struct config *cfg = rq->cfg;
	struct contract_submit sub;
	struct contract_error err;
	struct request *r;

	if (contract_decode_submit(data, len, (size_t)cfg->limits_max_request_bytes, &sub, &err) < 0) {
		const char *rid = err.request_id[0] ? err.request_id : NULL;
		log_info(rid, "rejected: bad_request: %s", err.message);
		request__ack(rq, reply, rid, CONTRACT_BAD_REQUEST, err.message);
		/* The stream of a request in flight with this id is not ours to end. */
		if (rid && !request__find(rq, rid))
			request__reject_event(rq, rid, CONTRACT_BAD_REQUEST, err.message);
		return;
	}
	if (request__find(rq, sub.request_id)) {
		log_info(sub.request_id, "rejected: request_id already in flight");
		request__ack(rq, reply, sub.request_id, CONTRACT_BAD_REQUEST, "request_id: already in flight");
		goto out;
	}
	if (rq->draining || rq->count >= (size_t)cfg->limits_max_inflight) {
		const char *msg = rq->draining ? "dispatcher is shutting down" : "too many requests in flight";
		log_info(sub.request_id, "rejected: busy: %s (%zu in flight)", msg, rq->count);
		request__ack(rq, reply, sub.request_id, CONTRACT_BUSY, msg);
		request__reject_event(rq, sub.request_id, CONTRACT_BUSY, msg);
		goto out;
	}

	r = xcalloc(1, sizeof(*r));
	r->rq = rq;
	memcpy(r->rid, sub.request_id, sizeof(r->rid));
	r->subject = contract_stream_subject(rq->subjects, r->rid);
	r->started_ms = request__now(rq);
	request__insert(rq, r);
	request__ack(rq, reply, r->rid, CONTRACT_OK, NULL);

	struct modelcfg *m = modelcfg_store_get(rq->models);
	if (m->ready) {
		r->model = m;
		log_info(r->rid, "accepted: model=%s, %zu messages", m->model, json_array_size(sub.messages));
		if (request__start_upstream(rq, r, &sub) < 0) {
			struct upstream_result res = { .code = CONTRACT_INTERNAL,
						       .message = "cannot start the upstream call" };
			request__finish(r, &res);
		}
	} else {
		modelcfg_unref(m);
		log_info(r->rid, "accepted: stub (no model configured), %zu messages",
			 json_array_size(sub.messages));
		r->state = REQ_STUB;
		r->stub = rq->ops->stub_start(rq->ops->ud, stub_reply(sub.profile, sub.last_user), cfg->stub_ttft_ms,
					      cfg->stub_inter_token_ms, &request__cbs, r);
	}
out:
	contract_submit_free(&sub);
}

void requests_cancel(struct requests *rq, const char *data, size_t len)
{
	char rid[CONTRACT_RID_MAX + 1];
	struct request *r;

	if (contract_decode_cancel(data, len, rid) < 0) {
		log_debug(NULL, "ignored a malformed cancel");
		return;
	}
	if (!(r = request__find(rq, rid)))
		return;
	log_info(rid, "cancel requested");
	request__abort(r, CONTRACT_CANCELLED, "cancelled by the client");
}

void requests_end_all(struct requests *rq, enum contract_code code, const char *message)
{
	while (rq->all)
		request__abort(rq->all, code, message);
}

void requests_drain(struct requests *rq, void (*on_idle)(void *ud), void *ud)
{
	rq->draining = true;
	if (rq->count == 0) {
		on_idle(ud);
		return;
	}
	rq->on_idle = on_idle;
	rq->idle_ud = ud;
}

size_t requests_inflight(const struct requests *rq)
{
	return rq->count;
}

struct requests *requests_new(const struct request_ops *ops, const struct contract_subjects *subjects,
			      struct modelcfg_store *models, struct pool *pool, const struct config *cfg,
			      struct metrics_hist *chunk_latency)
{
	struct requests *rq = xcalloc(1, sizeof(*rq));

	rq->ops = ops;
	rq->subjects = subjects;
	rq->models = models;
	rq->pool = pool;
	rq->cfg = cfg;
	rq->chunk_latency = chunk_latency;
	rq->nbuckets = 256;
	rq->buckets = xcalloc(rq->nbuckets, sizeof(*rq->buckets));
	buf_init(&rq->ev);
	return rq;
}

void requests_set_config(struct requests *rq, const struct config *cfg)
{
	rq->cfg = cfg;
}

void requests_free(struct requests *rq)
{
	if (!rq)
		return;
	free(rq->buckets);
	buf_free(&rq->ev);
	free(rq);
}
