/* metrics: see include/metrics.h. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void metrics_record(struct metrics_hist *h, uint64_t ns)
{
	int b = ns ? 63 - __builtin_clzll(ns) : 0;

	if (b >= METRICS_BUCKETS)
		b = METRICS_BUCKETS - 1;
	h->buckets[b]++;
	h->count++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

uint64_t metrics_quantile(const struct metrics_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (!h->count)
		return 0;
	rank = (uint64_t)(q * (double)(h->count - 1)) + 1;
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		if (seen + h->buckets[b] >= rank) {
			uint64_t lo = b ? 1ull << b : 0, hi = 1ull << (b + 1);
			double frac = (double)(rank - seen) / (double)h->buckets[b];
			uint64_t v = lo + (uint64_t)(frac * (double)(hi - lo));
			return v < h->max_ns ? v : h->max_ns;
		}
		seen += h->buckets[b];
	}
	return h->max_ns;
}

void metrics_format(const struct metrics_hist *h, struct buf *out)
{
	buf_printf(out, "count=%llu mean=%.2fus p50=%.2fus p90=%.2fus p99=%.2fus max=%.2fus |",
		   (unsigned long long)h->count, h->count ? (double)h->sum_ns / (double)h->count / 1000.0 : 0.0,
		   (double)metrics_quantile(h, 0.50) / 1000.0, (double)metrics_quantile(h, 0.90) / 1000.0,
		   (double)metrics_quantile(h, 0.99) / 1000.0, (double)h->max_ns / 1000.0);
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		if (!h->buckets[b])
			continue;
		uint64_t hi = 1ull << (b + 1);
		if (hi < 1000)
			buf_printf(out, " <%lluns:%llu", (unsigned long long)hi, (unsigned long long)h->buckets[b]);
		else
			buf_printf(out, " <%.1fus:%llu", (double)hi / 1000.0, (unsigned long long)h->buckets[b]);
	}
}

void metrics_hist_diff(struct metrics_hist *out, const struct metrics_hist *now, const struct metrics_hist *then)
{
	out->count = now->count - then->count;
	out->sum_ns = now->sum_ns - then->sum_ns;
	out->max_ns = now->max_ns;
	for (int b = 0; b < METRICS_BUCKETS; b++)
		out->buckets[b] = now->buckets[b] - then->buckets[b];
}

/* Prometheus-style bounds: time to first token spans milliseconds to a
 * minute; a whole request up to timeouts.total_ms (10 minutes). */
static const unsigned metrics__ttft_bounds[METRICS_MS_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
};
static const unsigned metrics__duration_bounds[METRICS_MS_BUCKETS] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 1800000,
};

void metrics_mshist_record(struct metrics_mshist *h, uint64_t ms)
{
	h->count++;
	h->sum_ms += ms;
	for (int i = 0; i < METRICS_MS_BUCKETS; i++) {
		if (ms <= h->bounds[i]) {
			h->buckets[i]++;
			return;
		}
	}
}

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->ttft.bounds = metrics__ttft_bounds;
	m->duration.bounds = metrics__duration_bounds;
}

void metrics_free(struct metrics *m)
{
	struct metrics_ep *e, *next;

	for (e = m->eps; e; e = next) {
		next = e->next;
		free(e->endpoint);
		free(e);
	}
	m->eps = NULL;
}

const char *metrics_outcome_name(enum contract_code code)
{
	return code == CONTRACT_OK ? "done" : contract_code_name(code);
}

bool metrics_outcome_used(enum contract_code code)
{
	return code != CONTRACT_UNKNOWN_REQUEST && code != CONTRACT_REPLAY_TRUNCATED && code < CONTRACT_CODE_COUNT;
}

static void metrics__outcome(struct metrics *m, enum contract_code code)
{
	m->outcomes[(unsigned)code < METRICS_OUTCOMES ? code : CONTRACT_INTERNAL]++;
}

const struct metrics_ep *metrics_find_endpoint(const struct metrics *m, const char *endpoint)
{
	for (const struct metrics_ep *e = m->eps; e; e = e->next)
		if (!strcmp(e->endpoint, endpoint))
			return e;
	return NULL;
}

static struct metrics_ep *metrics__endpoint(struct metrics *m, const char *endpoint)
{
	struct metrics_ep *e = (struct metrics_ep *)metrics_find_endpoint(m, endpoint);

	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->endpoint = xstrdup(endpoint);
		e->next = m->eps;
		m->eps = e;
	}
	return e;
}

void metrics_prune_endpoints(struct metrics *m, bool (*keep)(void *ud, const char *endpoint), void *ud)
{
	struct metrics_ep **pp = &m->eps;

	while (*pp) {
		struct metrics_ep *e = *pp;
		if (keep(ud, e->endpoint)) {
			pp = &e->next;
		} else {
			*pp = e->next;
			free(e->endpoint);
			free(e);
		}
	}
}

static void metrics__srv_error(struct metrics_srv *s, const char *code, const char *message)
{
	s->errors++;
	snprintf(s->last_error, sizeof(s->last_error), "%s%s%s", code, message && *message ? ": " : "",
		 message ? message : "");
	util_utf8_truncate(s->last_error, sizeof(s->last_error) - 1);
}

void metrics_request_accepted(struct metrics *m, struct metrics_req *q, const char *session_id)
{
	if (session_id && *session_id) {
		/* xstrndup copies exactly n bytes. */
		q->session_id = xstrndup(session_id, strnlen(session_id, CONTRACT_RID_MAX));
		util_utf8_truncate(q->session_id, CONTRACT_RID_MAX);
	}
	if (m) {
		m->accepted++;
		m->submit.requests++;
	}
}

void metrics_request_refused(struct metrics *m, enum contract_code code, const char *message)
{
	if (!m)
		return;
	metrics__outcome(m, code);
	if (code == CONTRACT_BUSY)
		m->busy++;
	m->submit.requests++;
	metrics__srv_error(&m->submit, contract_code_name(code), message);
}

void metrics_request_retry(struct metrics *m, const char *endpoint)
{
	if (m && endpoint)
		metrics__endpoint(m, endpoint)->retries++;
}

void metrics_request_end(struct metrics *m, struct metrics_req *q, const char *rid, const struct metrics_end *e)
{
	bool done = e->code == CONTRACT_OK;

	if (m) {
		metrics__outcome(m, e->code);
		metrics_mshist_record(&m->duration, e->duration_ms);
		if (e->endpoint)
			metrics__endpoint(m, e->endpoint)->requests++;
		m->submit.processing_ns += e->duration_ms * 1000000ull;
		/* A client's cancel is not the dispatcher's error. */
		if (!done && e->code != CONTRACT_CANCELLED)
			metrics__srv_error(&m->submit, contract_code_name(e->code), e->message);
	}
	struct log_field f[] = {
		LOG_FSTR("session_id", q->session_id),
		LOG_FSTR("model", e->model),
		LOG_FSTR("endpoint", e->endpoint),
		LOG_FINT("attempts", e->attempts),
		q->first ? (struct log_field)LOG_FINT("ttft_ms", q->ttft_ms) : (struct log_field)LOG_FNULL("ttft_ms"),
		LOG_FINT("duration_ms", e->duration_ms),
		LOG_FINT("tokens", q->tokens),
		LOG_FINT("reasoning", q->reasoning),
		LOG_FSTR("outcome", done ? "done" : "error"),
		LOG_FSTR("code", done ? NULL : contract_code_name(e->code)),
		LOG_FSTR("message", done ? NULL : e->message ? e->message : ""),
		LOG_FSTR("finish_reason", done ? e->finish_reason : NULL),
		e->usage ? (struct log_field)LOG_FINT("prompt_tokens", e->usage->prompt_tokens)
			 : (struct log_field)LOG_FNULL("prompt_tokens"),
		e->usage ? (struct log_field)LOG_FINT("completion_tokens", e->usage->completion_tokens)
			 : (struct log_field)LOG_FNULL("completion_tokens"),
	};
	log_fields(LOG_LVL_INFO, rid, done ? "request done" : "request failed", f, UTIL_ARRAY_LEN(f));
	free(q->session_id);
	q->session_id = NULL;
}

void metrics_probe(struct metrics *m, uint64_t ns, const char *error)
{
	if (!m)
		return;
	m->probe.requests++;
	m->probe.processing_ns += ns;
	if (error)
		metrics__srv_error(&m->probe, "probe", error);
}
