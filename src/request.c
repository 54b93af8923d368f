/* request: see include/request.h.
 *
 *   submit --> validate --> [busy / bad_request: ack + error event]
 *                 |
 *                 v  accepted (ack), snapshot of the model config taken
 *       no ready model: REQ_STUB          ready: REQ_ATTEMPT (attempt n, nothing relayed by it yet)
 *                 |                              |  failed, request_may_retry --> REQ_ATTEMPT (n+1)
 *                 |                              |  first delta           ^
 *                 |                              v                        |  broke off,
 *                 |                       REQ_STREAMING ------------------+  request_may_resume:
 *                 |                              |                           continue on another
 *                 v                              v                           replica (failover)
 *   end / cancel / timeout / shutdown --> request__finish --> freed; what a replay
 *                                                  needs lingers in a small entry
 *
 * request__finish is the only function that publishes a terminal event, and
 * it runs once per request: it moves the request out of the live table first.
 *
 * Every event goes out through request__emit, which numbers it in the
 * request's record (what replay sends again, what failover continues from)
 * and notes when the stream last spoke; the tick walks the live streams and
 * sends a keepalive on those silent too long. Per event that is a copy into
 * one buffer and a store, nothing more. */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "modelcfg.h"
#include "openai.h"
#include "pool.h"
#include "prompt.h"
#include "record.h"
#include "stub.h"

enum request_state {
	REQ_ATTEMPT,   /* an upstream attempt runs and has relayed nothing: a retry may follow */
	REQ_STREAMING, /* the attempt relayed deltas: only a resume (failover) may follow */
	REQ_STUB,      /* the stub streams (no ready model) */
	REQ_ENDED,     /* the terminal event is out (the request is being freed) */
};

/* What the tables and lists hold: the first member of a request and of a
 * linger entry. */
struct rnode {
	struct rnode *hnext;       /* hash chain */
	struct rnode *prev, *next; /* list */
	const char *rid;           /* the owner's request_id */
};

/* A hash table by request_id. */
struct rtable {
	struct rnode **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

/* A list, oldest first. */
struct rlist {
	struct rnode *head, *tail;
};

/* An ended stream, lingering for replays (stream.replay_linger_ms): only
 * what a replay needs, the request itself is freed at its end. The stream
 * subject is derived from the rid again when a replay asks. */
struct lingering {
	struct rnode node;         /* in rq->ended and rq->ended_list */
	struct record rec;         /* compacted; owns the seqs */
	unsigned long long end_ms; /* when the terminal event went out */
	char rid[];
};

struct request {
	struct rnode node; /* in rq->live and rq->live_list */
	struct requests *rq;
	enum request_state state;
	char *subject; /* <prefix>.chat.stream.<rid>; node.rid points into it */
	struct record rec;                 /* what was sent; owns the seq */
	unsigned long long last_event_ms;  /* the last event (the terminal one once ended) */
	struct modelcfg *model; /* snapshot taken at accept; NULL for the stub */
	struct upstream *up;    /* REQ_ATTEMPT, REQ_STREAMING */
	struct stub *stub;      /* REQ_STUB */
	unsigned long long started_ms;
	unsigned long long deltas;

	/* Upstream attempts. */
	struct rcstr *body;   /* the upstream request body: kept for retries, and for resumes when
			       * the provider can continue; otherwise dropped at the first delta */
	struct rcstr *cont;   /* the body that continues the answer so far (after a resume) */
	bool resumable;       /* the provider continues partial answers and pool.resume is on */
	bool opaque;          /* an event that is not text went out (a tool call): no resume */
	int resumed;          /* times the stream was continued on another replica */
	unsigned long long attempt_deltas; /* relayed by the current attempt */
	bool have_usage;      /* usage of earlier attempts (failover), summed */
	struct contract_usage usage;
	/* A submit's "resume": what another dispatcher had sent before it died. */
	char *prefix_text, *prefix_reasoning;
	size_t prefix_text_len, prefix_reasoning_len;
	struct pool_ep *ep;   /* health slot of the current attempt */
	int ep_index;         /* endpoint of the current (or last) attempt */
	int attempts;
	uint64_t tried;       /* bit i: endpoint i was tried */
	struct metrics_req obs; /* figures for metrics and the log line */
};

struct requests {
	const struct request_ops *ops;
	const struct contract_subjects *subjects;
	struct modelcfg_store *models;
	struct pool *pool;
	const struct config *cfg;
	struct metrics *metrics;

	struct rtable live;         /* requests by request_id */
	struct rtable ended;        /* linger entries by request_id */
	struct rlist live_list;     /* requests by start */
	struct rlist ended_list;    /* linger entries by end */
	size_t ended_bytes;         /* the ended records' buffers, together */

	struct buf ev; /* scratch for encoding one event; the loop is single-threaded */
	bool full;     /* admission closed: out of the submit queue group */
	bool draining; /* out of the queue groups for good; what NATS still routes here is served */
	bool closed;   /* drained: everything is refused (the process is about to exit) */
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

static void rtable_init(struct rtable *t)
{
	t->nbuckets = 256;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->count = 0;
}

static struct rnode *rtable_find(const struct rtable *t, const char *rid)
{
	struct rnode *n = t->buckets[request__hash(rid) & (t->nbuckets - 1)];
	while (n && strcmp(n->rid, rid))
		n = n->hnext;
	return n;
}

static void rtable_grow(struct rtable *t)
{
	size_t n = t->nbuckets * 2;
	struct rnode **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < t->nbuckets; i++) {
		struct rnode *r = t->buckets[i], *next;
		for (; r; r = next) {
			next = r->hnext;
			size_t k = request__hash(r->rid) & (n - 1);
			r->hnext = b[k];
			b[k] = r;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

static void rtable_insert(struct rtable *t, struct rnode *r)
{
	if (t->count >= t->nbuckets)
		rtable_grow(t);
	size_t k = request__hash(r->rid) & (t->nbuckets - 1);
	r->hnext = t->buckets[k];
	t->buckets[k] = r;
	t->count++;
}

static void rtable_remove(struct rtable *t, struct rnode *r)
{
	struct rnode **pp = &t->buckets[request__hash(r->rid) & (t->nbuckets - 1)];
	while (*pp != r)
		pp = &(*pp)->hnext;
	*pp = r->hnext;
	t->count--;
}

static void rlist_append(struct rlist *l, struct rnode *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void rlist_remove(struct rlist *l, struct rnode *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
}

/* The node is the first member of both. */
static struct request *request__of(struct rnode *n)
{
	return (struct request *)n;
}

static struct lingering *lingering__of(struct rnode *n)
{
	return (struct lingering *)n;
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
	contract_encode_ack(&rq->ev, rid, rq->cfg->instance_id, code, msg);
	request__publish(rq, reply);
}

/* An error event for a request that never started: seq 0, or the seq a
 * resumed stream was to go on from. */
static void request__reject_event(struct requests *rq, const char *rid, unsigned long long seq, enum contract_code code,
				  const char *msg)
{
	char *subject = contract_stream_subject(rq->subjects, rid);
	buf_reset(&rq->ev);
	contract_encode_error(&rq->ev, rid, seq, code, msg, NULL);
	request__publish(rq, subject);
	free(subject);
}

/* What only a running request needs: the model snapshot and the bodies. */
static void request__release_running(struct request *r)
{
	if (r->model)
		modelcfg_unref(r->model);
	r->model = NULL;
	rcstr_unref(r->body);
	r->body = NULL;
	rcstr_unref(r->cont);
	r->cont = NULL;
}

static void request__free(struct request *r)
{
	request__release_running(r);
	record_free(&r->rec);
	free(r->prefix_text);
	free(r->prefix_reasoning);
	free(r->subject);
	free(r);
}

/* An ended stream leaves for good: its replays are over. */
static void request__forget(struct requests *rq, struct lingering *l)
{
	rtable_remove(&rq->ended, &l->node);
	rlist_remove(&rq->ended_list, &l->node);
	rq->ended_bytes -= l->rec.buf.cap;
	record_free(&l->rec);
	free(l);
}

/* Moves what a replay needs out of the ended request r, which the caller
 * frees next, into a linger entry. */
static void request__linger(struct requests *rq, struct request *r)
{
	size_t n = strlen(r->node.rid) + 1;
	struct lingering *l = xmalloc(sizeof(*l) + n);

	memcpy(l->rid, r->node.rid, n);
	l->node.rid = l->rid;
	l->rec = r->rec;
	record_init(&r->rec, 0, 0); /* the buffer is the entry's now */
	record_compact(&l->rec);
	l->end_ms = r->last_event_ms;
	rtable_insert(&rq->ended, &l->node);
	rlist_append(&rq->ended_list, &l->node);
	rq->ended_bytes += l->rec.buf.cap;
	/* Past the budget the oldest records go first. */
	while (rq->ended_bytes > (size_t)rq->cfg->stream_replay_linger_bytes && rq->ended_list.head != &l->node)
		request__forget(rq, lingering__of(rq->ended_list.head));
}

/* Publishes the event in rq->ev, which the caller encoded with seq
 * r->rec.next_seq: records it (kind and data say what replay needs) and
 * moves the request to the tail of the live list. */
static void request__emit(struct request *r, enum record_kind kind, const char *data, size_t len)
{
	struct requests *rq = r->rq;

	record_add(&r->rec, kind, data, len);
	if (kind == RECORD_JSON && r->state != REQ_ENDED)
		r->opaque = true; /* a tool call, say: a continuation could not repeat it */
	request__publish(rq, r->subject);
	r->last_event_ms = request__now(rq);
}

/* Ends the current attempt's hold on its endpoint's health. */
static void request__release_ep(struct request *r, enum pool_outcome o, unsigned long long retry_after_ms)
{
	if (!r->ep)
		return;
	pool_release(r->rq->pool, r->ep, o, retry_after_ms, request__now(r->rq));
	r->ep = NULL;
}

/* ---- admission ---- */

/* Requests this dispatcher takes at once: limits.max_inflight, or fewer when
 * every endpoint of the model has a max_inflight. */
static size_t request__capacity(const struct requests *rq)
{
	size_t max = (size_t)rq->cfg->limits_max_inflight;
	const struct modelcfg *m = rq->models->active;

	if (m->ready && m->capacity > 0 && (size_t)m->capacity < max)
		max = (size_t)m->capacity;
	return max;
}

void requests_check_admission(struct requests *rq)
{
	size_t max = request__capacity(rq), n = rq->live.count;
	size_t low = max * (size_t)rq->cfg->limits_rejoin_below_pct / 100;

	if (rq->draining)
		return;
	if (low >= max)
		low = max - 1; /* rejoin below full, at least */
	if (!rq->full && n >= max) {
		rq->full = true;
		log_info(NULL, "full (%zu requests in flight, capacity %zu): leaving the submit queue group", n, max);
		rq->ops->admission(rq->ops->ud, false);
	} else if (rq->full && n <= low) {
		rq->full = false;
		log_info(NULL, "room again (%zu in flight, capacity %zu): rejoining the submit queue group", n, max);
		rq->ops->admission(rq->ops->ud, true);
	}
}

/* The last request of a drain ended: from now on every submit is refused. */
static void request__drained(struct requests *rq)
{
	void (*cb)(void *) = rq->on_idle;

	rq->closed = true;
	rq->on_idle = NULL;
	cb(rq->idle_ud);
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
	rtable_remove(&rq->live, &r->node);
	rlist_remove(&rq->live_list, &r->node);

	char endpoint[512];
	struct contract_route route = { r->attempts, NULL, r->resumed }, *rt = NULL;
	if (r->model && r->attempts) {
		util_url_strip_userinfo(r->model->endpoints[r->ep_index].base_url, endpoint, sizeof(endpoint));
		route.endpoint = endpoint;
		rt = &route;
	}
	buf_reset(&rq->ev);
	if (res->code != CONTRACT_OK) {
		contract_encode_error(&rq->ev, r->node.rid, r->rec.next_seq, res->code, res->message, rt);
	} else {
		const char *model = res->model ? res->model : r->model ? r->model->model : "stub";
		struct contract_usage u = res->usage;
		if (res->has_usage && r->have_usage) {
			/* A failover: the answer's usage is every attempt's. */
			u.prompt_tokens += r->usage.prompt_tokens;
			u.completion_tokens += r->usage.completion_tokens;
			u.total_tokens += r->usage.total_tokens;
		}
		contract_encode_done(&rq->ev, r->node.rid, r->rec.next_seq, res->finish_reason, model,
				     res->has_usage ? &u : NULL, rt);
	}
	metrics_request_end(rq->metrics, &r->obs, r->node.rid,
			    &(struct metrics_end){ res->code, res->message, r->model ? r->model->model : "stub",
						   route.endpoint, r->attempts, ms, res->finish_reason,
						   res->has_usage ? &res->usage : NULL });
	request__emit(r, RECORD_JSON, rq->ev.data, rq->ev.len);
	/* What a replay needs is kept for the linger; the rest goes now. */
	if (rq->cfg->stream_replay_linger_ms > 0 && r->rec.buf.len)
		request__linger(rq, r);
	request__free(r);

	requests_check_admission(rq);
	if (rq->draining && rq->live.count == 0 && rq->on_idle)
		request__drained(rq);
}

/* The attempt relayed something to the client: no retry can follow it, so
 * only the attempt needs the body now, unless a resume may. */
static void request__relayed(struct request *r)
{
	if (r->state == REQ_ATTEMPT) {
		r->state = REQ_STREAMING;
		if (!r->resumable) {
			rcstr_unref(r->body);
			r->body = NULL;
		}
	}
	r->deltas++;
	r->attempt_deltas++;
}

static void request__on_delta(void *ud, enum contract_delta kind, const char *text, size_t len)
{
	struct request *r = ud;
	struct requests *rq = r->rq;

	request__relayed(r);
	buf_reset(&rq->ev);
	contract_encode_delta(&rq->ev, r->node.rid, r->rec.next_seq, kind, text, len);
	request__emit(r, kind == CONTRACT_REASONING ? RECORD_REASONING : RECORD_TOKEN, text, len);
	metrics_request_delta(rq->metrics, &r->obs, kind, r->last_event_ms - r->started_ms);
}

/* A tool-call piece is relayed as a delta is. It is recorded as the event
 * itself (replay sends it again), which also rules out a resume: a
 * continuation could not repeat it. */
static void request__on_tool_call(void *ud, const struct contract_tool_call *tc)
{
	struct request *r = ud;
	struct requests *rq = r->rq;

	request__relayed(r);
	buf_reset(&rq->ev);
	contract_encode_tool_call(&rq->ev, r->node.rid, r->rec.next_seq, tc);
	request__emit(r, RECORD_JSON, rq->ev.data, rq->ev.len);
}

bool request_may_retry(const struct request_retry_facts *f)
{
	return f->code != CONTRACT_OK && f->retryable && f->deltas == 0 && f->attempts < f->max_attempts &&
	       f->tried < f->nendpoints && f->elapsed_ms < (unsigned long long)f->total_ms;
}

bool request_may_resume(const struct request_resume_facts *f)
{
	return f->code != CONTRACT_OK && f->broken && f->resumable && f->complete && f->attempts < f->max_attempts &&
	       f->tried < f->nendpoints && f->elapsed_ms < (unsigned long long)f->total_ms;
}

static int request__start_attempt(struct request *r);

/* The answer (kind RECORD_TOKEN) or reasoning so far: what another
 * dispatcher sent before (a submit's resume) and what we sent. */
static void request__so_far(const struct request *r, enum record_kind kind, struct buf *out)
{
	if (kind == RECORD_TOKEN && r->prefix_text)
		buf_append(out, r->prefix_text, r->prefix_text_len);
	if (kind == RECORD_REASONING && r->prefix_reasoning)
		buf_append(out, r->prefix_reasoning, r->prefix_reasoning_len);
	record_text(&r->rec, kind, out);
}

/* Makes r->cont, the body that continues the answer so far. */
static int request__build_continuation(struct request *r)
{
	json_t *root = json_loadb(r->body->data, r->body->len, 0, NULL);
	struct buf text, reasoning;
	int rc = -1;

	buf_init(&text);
	buf_init(&reasoning);
	request__so_far(r, RECORD_TOKEN, &text);
	request__so_far(r, RECORD_REASONING, &reasoning);
	/* Tokens produced: one per delta, as backends stream them (the
	 * backend's own usage counts the same way for one-token chunks). */
	if (root && provider_continue_body(r->model->kind, root, text.data, text.len, reasoning.data, reasoning.len,
					   (long long)r->deltas) == 0) {
		char *s = json_dumps(root, JSON_COMPACT);
		if (!s)
			util_oom();
		rcstr_unref(r->cont);
		r->cont = rcstr_new(s, strlen(s));
		free(s);
		rc = 0;
	}
	json_decref(root);
	buf_free(&text);
	buf_free(&reasoning);
	return rc;
}

/* An attempt that had relayed deltas ended: done, or continued elsewhere. */
static void request__on_end_streaming(struct request *r, const struct upstream_result *res)
{
	const struct config *cfg = r->rq->cfg;
	struct request_resume_facts f = {
		.code = res->code,
		.broken = res->broken,
		.resumable = r->resumable && cfg->pool_resume,
		.complete = !r->rec.dropped && !r->opaque,
		.attempts = r->attempts,
		.max_attempts = cfg->pool_max_attempts,
		.tried = (size_t)__builtin_popcountll(r->tried),
		.nendpoints = r->model ? r->model->nendpoints : 0,
		.elapsed_ms = request__now(r->rq) - r->started_ms,
		.total_ms = cfg->timeouts_total_ms,
	};

	/* Tokens came: a success for the replica's health, as before. */
	request__release_ep(r, POOL_SUCCESS, 0);
	if (request_may_resume(&f) && request__build_continuation(r) == 0) {
		char url[512];
		util_url_strip_userinfo(r->model->endpoints[r->ep_index].base_url, url, sizeof(url));
		log_info(r->node.rid, "attempt %d on %s broke off after %llu deltas (%s: %s); continuing on another replica",
			 r->attempts, url, r->attempt_deltas, contract_code_name(res->code), res->message);
		/* Usage of the broken attempt: its own, or one token a delta. */
		struct contract_usage u = res->has_usage ? res->usage : (struct contract_usage){ 0, 0, 0 };
		if (!res->has_usage)
			u.completion_tokens = u.total_tokens = (long long)r->attempt_deltas;
		if (request__start_attempt(r) == 0) {
			r->resumed++;
			r->have_usage = true;
			r->usage.prompt_tokens += u.prompt_tokens;
			r->usage.completion_tokens += u.completion_tokens;
			r->usage.total_tokens += u.total_tokens;
			return;
		}
	}
	request__finish(r, res);
}

static void request__on_end(void *ud, const struct upstream_result *res)
{
	struct request *r = ud;
	enum pool_outcome o = POOL_NEUTRAL;

	switch (r->state) {
	case REQ_STUB:
		request__finish(r, res);
		return;
	case REQ_STREAMING:
		r->up = NULL;
		request__on_end_streaming(r, res);
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
		.deltas = r->attempt_deltas,
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
		log_info(r->node.rid, "attempt %d on %s failed (%s: %s); retrying", r->attempts, url,
			 contract_code_name(res->code), res->message);
		metrics_request_retry(r->rq->metrics, url);
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
	r->attempt_deltas = 0;
	if (i < 64)
		r->tried |= 1ull << i;
	const struct modelcfg_endpoint *e = &r->model->endpoints[i];
	struct upstream_params p = {
		.rid = r->node.rid,
		.base_url = e->base_url,
		.api_key = e->api_key,
		.provider = r->model->kind,
		.model = r->model->model,
		.api_version = r->model->api_version,
		.body = r->cont ? r->cont : r->body,
		.continuation = r->cont != NULL,
		.connect_timeout_ms = cfg->timeouts_connect_ms,
		.first_token_ms = cfg->timeouts_first_token_ms,
		.idle_ms = cfg->timeouts_idle_ms,
		/* The total deadline belongs to the request, across attempts. */
		.total_ms = cfg->timeouts_total_ms > (long long)elapsed ? cfg->timeouts_total_ms - (long long)elapsed : 1,
		.max_line = (size_t)cfg->limits_max_sse_line_bytes,
		.metrics = rq->metrics,
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
	r->resumable = provider_can_continue(r->model->kind) && cfg->pool_resume;
	if (sub->resume) {
		/* Another dispatcher's answer goes on from where it stopped. */
		r->prefix_text = xstrndup(sub->resume_text, sub->resume_text_len);
		r->prefix_text_len = sub->resume_text_len;
		r->prefix_reasoning = xstrndup(sub->resume_reasoning, sub->resume_reasoning_len);
		r->prefix_reasoning_len = sub->resume_reasoning_len;
		r->resumed = 1;
		if (request__build_continuation(r) < 0)
			return -1;
	}
	return request__start_attempt(r);
}

/* Why a submit's resume cannot be served here, or NULL. */
static const char *request__resume_refusal(struct requests *rq)
{
	const struct modelcfg *m = rq->models->active;

	if (!m->ready)
		return "resume: no model is configured here (the stub cannot continue an answer)";
	if (!provider_can_continue(m->kind))
		return "resume: the model's provider cannot continue a partial answer (docs/pool.md)";
	if (!rq->cfg->pool_resume)
		return "resume: turned off here (pool.resume)";
	return NULL;
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
		metrics_request_refused(rq->metrics, CONTRACT_BAD_REQUEST, err.message);
		request__ack(rq, reply, rid, CONTRACT_BAD_REQUEST, err.message);
		/* The stream of a request in flight with this id is not ours to end. */
		if (rid && !rtable_find(&rq->live, rid))
			request__reject_event(rq, rid, 0, CONTRACT_BAD_REQUEST, err.message);
		return;
	}
	if (rtable_find(&rq->live, sub.request_id)) {
		log_info(sub.request_id, "rejected: request_id already in flight");
		metrics_request_refused(rq->metrics, CONTRACT_BAD_REQUEST, "request_id: already in flight");
		request__ack(rq, reply, sub.request_id, CONTRACT_BAD_REQUEST, "request_id: already in flight");
		goto out;
	}
	/* While draining, a submit NATS routed here before the leave took
	 * effect is served like any other (within the grace period): refusing
	 * it would only send the gateway elsewhere. */
	if (rq->closed || rq->live.count >= request__capacity(rq)) {
		const char *msg = rq->closed ? "dispatcher is shutting down" : "too many requests in flight";
		log_info(sub.request_id, "rejected: busy: %s (%zu in flight)", msg, rq->live.count);
		metrics_request_refused(rq->metrics, CONTRACT_BUSY, msg);
		request__ack(rq, reply, sub.request_id, CONTRACT_BUSY, msg);
		request__reject_event(rq, sub.request_id, sub.resume_next_seq, CONTRACT_BUSY, msg);
		goto out;
	}

	if (sub.resume) {
		const char *why = request__resume_refusal(rq);
		if (why) {
			log_info(sub.request_id, "rejected: bad_request: %s", why);
			request__ack(rq, reply, sub.request_id, CONTRACT_BAD_REQUEST, why);
			request__reject_event(rq, sub.request_id, sub.resume_next_seq, CONTRACT_BAD_REQUEST, why);
			goto out;
		}
	}
	/* A new stream with the id of one that ended: the old record goes. */
	struct rnode *old = rtable_find(&rq->ended, sub.request_id);
	if (old)
		request__forget(rq, lingering__of(old));
	r = xcalloc(1, sizeof(*r));
	r->rq = rq;
	r->subject = contract_stream_subject(rq->subjects, sub.request_id);
	r->node.rid = r->subject + strlen(rq->subjects->stream_prefix);
	r->started_ms = r->last_event_ms = request__now(rq);
	record_init(&r->rec, sub.resume_next_seq, (size_t)cfg->limits_replay_bytes);
	metrics_request_accepted(rq->metrics, &r->obs, sub.session_id);
	rtable_insert(&rq->live, &r->node);
	rlist_append(&rq->live_list, &r->node);
	requests_check_admission(rq);
	request__ack(rq, reply, r->node.rid, CONTRACT_OK, NULL);

	struct modelcfg *m = modelcfg_store_get(rq->models);
	if (m->ready) {
		r->model = m;
		log_info(r->node.rid, "accepted: model=%s, %zu messages", m->model, json_array_size(sub.messages));
		if (request__start_upstream(rq, r, &sub) < 0) {
			struct upstream_result res = { .code = CONTRACT_INTERNAL,
						       .message = "cannot start the upstream call" };
			request__finish(r, &res);
		}
	} else {
		modelcfg_unref(m);
		log_info(r->node.rid, "accepted: stub (no model configured), %zu messages",
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
	struct rnode *n;

	if (contract_decode_cancel(data, len, rid) < 0) {
		log_debug(NULL, "ignored a malformed cancel");
		return;
	}
	if (!(n = rtable_find(&rq->live, rid)))
		return;
	log_info(rid, "cancel requested");
	request__abort(request__of(n), CONTRACT_CANCELLED, "cancelled by the client");
}

void requests_end_all(struct requests *rq, enum contract_code code, const char *message)
{
	while (rq->live_list.head)
		request__abort(request__of(rq->live_list.head), code, message);
}

void requests_drain(struct requests *rq, void (*on_idle)(void *ud), void *ud)
{
	rq->draining = true;
	rq->on_idle = on_idle;
	rq->idle_ud = ud;
	if (rq->live.count == 0)
		request__drained(rq);
}

size_t requests_inflight(const struct requests *rq)
{
	return rq->live.count;
}

/* ---- replay ---- */

struct request_replay {
	struct requests *rq;
	const char *rid;
	const char *subject;
};

static void request__replay_one(void *ud, unsigned long long seq, enum record_kind kind, const char *data, size_t len)
{
	struct request_replay *rp = ud;
	struct requests *rq = rp->rq;

	buf_reset(&rq->ev);
	switch (kind) {
	case RECORD_TOKEN:
	case RECORD_REASONING:
		contract_encode_delta(&rq->ev, rp->rid, seq, kind == RECORD_TOKEN ? CONTRACT_TOKEN : CONTRACT_REASONING,
				      data, len);
		break;
	case RECORD_KEEPALIVE:
		contract_encode_keepalive(&rq->ev, rp->rid, seq);
		break;
	case RECORD_JSON:
		buf_append(&rq->ev, data, len);
		break;
	}
	contract_mark_replay(&rq->ev, 0);
	request__publish(rq, rp->subject);
}

void requests_replay(struct requests *rq, const char *data, size_t len, const char *reply)
{
	char rid[CONTRACT_RID_MAX + 1];
	unsigned long long from;
	struct contract_error err;
	struct rnode *live = NULL, *ended = NULL;
	enum contract_code code = CONTRACT_OK;
	const char *msg = NULL;
	unsigned long long first = 0, next = 0;

	if (contract_decode_replay(data, len, rid, &from, &err) < 0) {
		log_debug(NULL, "replay refused: %s", err.message);
		code = CONTRACT_BAD_REQUEST;
		msg = err.message;
		memcpy(rid, err.request_id, sizeof(rid));
	} else if (!(live = rtable_find(&rq->live, rid)) && !(ended = rtable_find(&rq->ended, rid))) {
		code = CONTRACT_UNKNOWN_REQUEST;
		msg = "no stream with this request_id here (never seen, or past stream.replay_linger_ms)";
	} else {
		/* A live stream, or one lingering after its end (its subject is
		 * derived again: the entry does not keep it). */
		const struct record *rec = live ? &request__of(live)->rec : &lingering__of(ended)->rec;
		char *subject = live ? NULL : contract_stream_subject(rq->subjects, rid);
		struct request_replay rp = { rq, rid, live ? request__of(live)->subject : subject };
		next = rec->next_seq;
		first = record_replay(rec, from, request__replay_one, &rp);
		free(subject);
		if (first > from) {
			code = CONTRACT_REPLAY_TRUNCATED;
			msg = "the oldest events asked for were dropped (limits.replay_bytes); sent from first_seq";
		}
		log_info(rid, "replayed events %llu..%llu (asked from %llu)", first, next, from);
	}
	if (!reply)
		return;
	buf_reset(&rq->ev);
	contract_encode_replay_answer(&rq->ev, rid[0] ? rid : NULL, code, msg, first, next);
	request__publish(rq, reply);
}

/* ---- the tick: keepalives and the end of lingers ---- */

static void request__keepalive(struct request *r)
{
	struct requests *rq = r->rq;

	buf_reset(&rq->ev);
	contract_encode_keepalive(&rq->ev, r->node.rid, r->rec.next_seq);
	request__emit(r, RECORD_KEEPALIVE, NULL, 0);
}

void requests_tick(struct requests *rq)
{
	unsigned long long now = request__now(rq);
	unsigned long long keepalive = (unsigned long long)rq->cfg->stream_keepalive_ms;
	unsigned long long linger = (unsigned long long)rq->cfg->stream_replay_linger_ms;
	struct rnode *n;

	/* Every live stream is looked at (a load and a compare each): cheaper
	 * than keeping the list in last-event order on every event. */
	if (keepalive) {
		for (n = rq->live_list.head; n; n = n->next)
			if (now - request__of(n)->last_event_ms >= keepalive)
				request__keepalive(request__of(n));
	}
	while ((n = rq->ended_list.head) && now - lingering__of(n)->end_ms >= linger)
		request__forget(rq, lingering__of(n));
}

struct requests *requests_new(const struct request_ops *ops, const struct contract_subjects *subjects,
			      struct modelcfg_store *models, struct pool *pool, const struct config *cfg,
			      struct metrics *metrics)
{
	struct requests *rq = xcalloc(1, sizeof(*rq));

	rq->ops = ops;
	rq->subjects = subjects;
	rq->models = models;
	rq->pool = pool;
	rq->cfg = cfg;
	rq->metrics = metrics;
	rtable_init(&rq->live);
	rtable_init(&rq->ended);
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
	while (rq->ended_list.head)
		request__forget(rq, lingering__of(rq->ended_list.head));
	free(rq->live.buckets);
	free(rq->ended.buckets);
	buf_free(&rq->ev);
	free(rq);
}
