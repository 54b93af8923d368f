/* modelcfg: the active model config as an immutable, reference-counted
 * snapshot, and the revision rule that orders updates. A request holds a
 * reference for its whole life, so a hot update never changes a stream in
 * flight. Pure: no I/O, single-threaded (loop thread only). */
#ifndef SUNDYNIX_MODELCFG_H
#define SUNDYNIX_MODELCFG_H

#include <stdbool.h>
#include <stddef.h>

#include "provider.h"
#include "util.h"

#define MODELCFG_MAX_ENDPOINTS 64
/* 2^53-1: the largest integer every JSON client represents exactly. A larger
 * revision would make every later config look stale to some of them. */
#define MODELCFG_REVISION_MAX 9007199254740991LL

/* One replica serving the model. */
struct modelcfg_endpoint {
	char *base_url; /* trailing '/' removed; never NULL */
	char *api_key;  /* "" when absent */
	int weight;     /* >= 1 */
	int max_inflight; /* attempts in progress at most, from this dispatcher; 0: no cap */
};

struct modelcfg {
	int refs;
	char *provider; /* "" when absent; never NULL */
	enum provider_kind kind;
	char *base_url; /* "" when absent, trailing '/' removed; the first endpoint's */
	char *api_key;  /* "" when absent; the first endpoint's */
	char *model;    /* "" when absent */
	char *api_version; /* azure: the api-version query parameter ("" = default) */
	/* "endpoints":[{"base_url","api_key","weight"}], or the single
	 * base_url/api_key as one endpoint of weight 1. */
	struct modelcfg_endpoint *endpoints;
	size_t nendpoints;
	bool has_revision;
	long long revision;
	bool ready; /* model non-empty and at least one endpoint */
	/* The sum of the endpoints' max_inflight when every endpoint has one:
	 * requests this dispatcher can send at once; 0 when unbounded. */
	long capacity;
};

/* Parses a ModelConfig message body: an object, `null`, `{}`, or an empty or
 * all-whitespace body (the last three give a non-ready config). Unknown fields
 * are ignored and a null field counts as absent; the string fields must be
 * strings, every base_url an http:// or https:// URL, and revision an
 * integer within +-MODELCFG_REVISION_MAX. Returns a config with refs = 1, or
 * NULL with a reason naming the field in err (which never quotes a value, so
 * never the api_key). */
struct modelcfg *modelcfg_parse(const char *json, size_t len, char *err, size_t errlen) UTIL_WUR;
struct modelcfg *modelcfg_ref(struct modelcfg *c);
void modelcfg_unref(struct modelcfg *c);

/* The config in force plus the highest revision applied so far. */
struct modelcfg_store {
	struct modelcfg *active; /* never NULL after modelcfg_store_init */
	bool have_revision;
	long long revision;
	/* modelcfg_store_apply's verdicts so far, for metrics. */
	unsigned long long applied, stale, invalid;
};

void modelcfg_store_init(struct modelcfg_store *s);
void modelcfg_store_free(struct modelcfg_store *s);
enum modelcfg_verdict {
	MODELCFG_APPLIED,
	MODELCFG_STALE,   /* its revision is below the highest applied (s->revision) */
	MODELCFG_INVALID, /* no config: modelcfg_parse refused it */
};

/* Takes ownership of c's reference (NULL, a config that did not parse, is
 * MODELCFG_INVALID). Applies c unless it carries a revision
 * lower than the highest applied one (stale), and says which. A config
 * without a revision always applies and leaves the recorded revision as is. */
enum modelcfg_verdict modelcfg_store_apply(struct modelcfg_store *s, struct modelcfg *c);
/* The snapshot new requests use, with a new reference for the caller. */
struct modelcfg *modelcfg_store_get(struct modelcfg_store *s);

#endif
