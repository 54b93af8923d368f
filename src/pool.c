/* pool: see include/pool.h.
 *
 * The policy is weighted least-outstanding-requests, as Envoy's least-request
 * balancer does it with unequal weights: each endpoint in rotation gets the
 * effective weight weight / (outstanding + 1), and picks follow smooth
 * weighted round-robin (nginx's algorithm) over those effective weights. With
 * nothing in flight the split is exactly the configured weights (3:1 gives
 * A A B A ...); under load an endpoint with more requests in flight gets
 * proportionally fewer new ones. Equal scores go to the first in a scan that
 * starts one further each pick, so ties are round-robin. An endpoint is out of rotation while ejected;
 * when its cooldown ends it gets exactly one trial request, and that trial's
 * outcome puts it back (success) or ejects it again for twice as long. If
 * every endpoint is out, the least recently ejected one is used anyway:
 * a request that might succeed beats one that surely fails. */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "modelcfg.h"
#include "util.h"

struct pool {
	struct pool_ep *eps; /* list; a handful of entries */
	int eject_after;
	unsigned rr;
};

struct pool *pool_new(int eject_after)
{
	struct pool *p = xcalloc(1, sizeof(*p));
	p->eject_after = eject_after > 0 ? eject_after : 1;
	return p;
}

void pool_free(struct pool *p)
{
	struct pool_ep *e, *next;

	if (!p)
		return;
	for (e = p->eps; e; e = next) {
		next = e->next;
		free(e->base_url);
		free(e);
	}
	free(p);
}

void pool_set_eject_after(struct pool *p, int eject_after)
{
	p->eject_after = eject_after > 0 ? eject_after : 1;
}

struct pool_ep *pool_find(struct pool *p, const char *base_url)
{
	for (struct pool_ep *e = p->eps; e; e = e->next)
		if (!strcmp(e->base_url, base_url))
			return e;
	return NULL;
}

struct pool_ep *pool_get(struct pool *p, const char *base_url)
{
	struct pool_ep *e = pool_find(p, base_url);

	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->base_url = xstrdup(base_url);
		e->next = p->eps;
		p->eps = e;
	}
	return e;
}

/* In rotation: not ejected, or cooled down with its trial not yet out. */
static bool pool__available(const struct pool_ep *e, uint64_t now)
{
	if (!e->ejected_until)
		return true;
	return now >= e->ejected_until && !e->trial_busy;
}

int pool_pick(struct pool *p, const struct modelcfg *cfg, uint64_t tried, uint64_t now, struct pool_ep **out)
{
	size_t n = cfg->nendpoints;
	int best = -1, fallback = -1;
	long total = 0;
	struct pool_ep *best_ep = NULL, *fallback_ep = NULL;

	if (n == 0)
		return -1;
	/* Only when every endpoint was tried may a tried one be tried again. */
	uint64_t all = n >= 64 ? ~0ull : (1ull << n) - 1;
	if ((tried & all) == all)
		tried = 0;
	unsigned start = p->rr++;
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		const struct modelcfg_endpoint *ce = &cfg->endpoints[i];
		struct pool_ep *e = pool_get(p, ce->base_url);
		if (ce->max_inflight && e->outstanding >= ce->max_inflight)
			continue; /* at its cap: not even as a fallback */
		if (i < 64 && (tried >> i) & 1)
			continue;
		if (!pool__available(e, now)) {
			if (!fallback_ep || e->last_ejected < fallback_ep->last_ejected) {
				fallback = (int)i;
				fallback_ep = e;
			}
			continue;
		}
		long eff = (long)ce->weight * 1000 / (e->outstanding + 1);
		e->current += eff;
		total += eff;
		if (!best_ep || e->current > best_ep->current) {
			best = (int)i;
			best_ep = e;
		}
	}
	if (best_ep)
		best_ep->current -= total;
	if (!best_ep) {
		if (!fallback_ep) {
			/* Every endpoint was excluded as tried: start over; or
			 * every one is at its cap: none now. */
			return tried ? pool_pick(p, cfg, 0, now, out) : -1;
		}
		best = fallback;
		best_ep = fallback_ep;
	}
	if (best_ep->ejected_until) {
		/* Cooled down (or the fallback): this request is its trial. */
		best_ep->trial_busy = true;
		best_ep->trial = true;
	}
	best_ep->outstanding++;
	best_ep->picks++;
	*out = best_ep;
	return best;
}

static void pool__eject(struct pool *p, struct pool_ep *e, uint64_t now)
{
	uint64_t cooldown = POOL_COOLDOWN_MIN_MS;

	for (int i = 0; i < e->ejections && cooldown < POOL_COOLDOWN_MAX_MS; i++)
		cooldown *= 2;
	if (cooldown > POOL_COOLDOWN_MAX_MS)
		cooldown = POOL_COOLDOWN_MAX_MS;
	e->ejections++;
	e->ejections_total++;
	e->ejected_until = now + cooldown;
	e->last_ejected = now;
	char url[512];

	util_url_strip_userinfo(e->base_url, url, sizeof(url));
	log_warn(NULL, "pool: endpoint %s ejected for %llu ms after %d consecutive failures", url,
		 (unsigned long long)cooldown, e->consecutive_failures);
	(void)p;
}

static void pool__outcome(struct pool *p, struct pool_ep *e, enum pool_outcome o, bool trial, uint64_t now)
{
	switch (o) {
	case POOL_SUCCESS:
		if (e->ejected_until) {
			char url[512];
			util_url_strip_userinfo(e->base_url, url, sizeof(url));
			log_info(NULL, "pool: endpoint %s is back in rotation", url);
		}
		e->consecutive_failures = 0;
		e->ejections = 0;
		e->ejected_until = 0;
		break;
	case POOL_FAILURE:
		e->failures++;
		e->consecutive_failures++;
		if (trial || e->consecutive_failures >= p->eject_after)
			pool__eject(p, e, now);
		break;
	case POOL_NEUTRAL:
		break;
	}
}

void pool_observe(struct pool *p, struct pool_ep *e, enum pool_outcome o, uint64_t now)
{
	/* A failed probe counts like a failed request; a good one only clears
	 * the failure streak, the ejection ends with a real trial. */
	if (o == POOL_SUCCESS) {
		e->consecutive_failures = 0;
		return;
	}
	pool__outcome(p, e, o, false, now);
}

void pool_release(struct pool *p, struct pool_ep *e, enum pool_outcome o, uint64_t retry_after_ms, uint64_t now)
{
	bool trial = e->trial && e->trial_busy;

	e->outstanding--;
	if (trial) {
		e->trial_busy = false;
		e->trial = false;
	}
	pool__outcome(p, e, o, trial, now);
	if (retry_after_ms && now + retry_after_ms > e->ejected_until) {
		/* The backend said when to come back; believe it. */
		e->ejected_until = now + retry_after_ms;
		e->last_ejected = now;
	}
}

void pool_prune(struct pool *p, const struct modelcfg *active)
{
	struct pool_ep **pp = &p->eps;

	while (*pp) {
		struct pool_ep *e = *pp;
		bool named = false;
		for (size_t i = 0; active && i < active->nendpoints && !named; i++)
			named = !strcmp(active->endpoints[i].base_url, e->base_url);
		if (!named && e->outstanding == 0) {
			*pp = e->next;
			free(e->base_url);
			free(e);
		} else {
			pp = &e->next;
		}
	}
}
