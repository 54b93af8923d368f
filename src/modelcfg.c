/* modelcfg: see include/modelcfg.h.
 *
 * Parse errors name the field and the expected type only; they never quote a
 * value, so the api_key cannot leak through them. */
#include "modelcfg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct modelcfg *modelcfg__new(void)
{
	struct modelcfg *c = xcalloc(1, sizeof(*c));

	c->refs = 1;
	c->provider = xstrdup("");
	c->base_url = xstrdup("");
	c->api_key = xstrdup("");
	c->model = xstrdup("");
	c->api_version = xstrdup("");
	return c;
}

static void modelcfg__free(struct modelcfg *c)
{
	for (size_t i = 0; i < c->nendpoints; i++) {
		free(c->endpoints[i].base_url);
		explicit_bzero(c->endpoints[i].api_key, strlen(c->endpoints[i].api_key));
		free(c->endpoints[i].api_key);
	}
	free(c->endpoints);
	explicit_bzero(c->api_key, strlen(c->api_key));
	free(c->api_key);
	free(c->provider);
	free(c->base_url);
	free(c->model);
	free(c->api_version);
	free(c);
}

static void modelcfg__strip_slash(char *url)
{
	/* Callers append "/chat/completions"; a trailing slash would double it. */
	size_t n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
}

/* Only http and https reach a backend (curl is limited to them too): a
 * config naming anything else is refused whole, not applied to fail later. */
static bool modelcfg__scheme_ok(const char *url)
{
	return !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
}

static void modelcfg__add_endpoint(struct modelcfg *c, const char *url, const char *key, int weight, int max_inflight)
{
	struct modelcfg_endpoint *e;

	c->endpoints = xrealloc(c->endpoints, (c->nendpoints + 1) * sizeof(*c->endpoints));
	e = &c->endpoints[c->nendpoints++];
	e->base_url = xstrdup(url);
	modelcfg__strip_slash(e->base_url);
	e->api_key = xstrdup(key);
	e->weight = weight;
	e->max_inflight = max_inflight;
}

/* "endpoints": an array of {"base_url": string, "api_key": string?, "weight": 1..1000?}. */
static int modelcfg__endpoints(struct modelcfg *c, json_t *arr, char *err, size_t errlen)
{
	size_t i;
	json_t *e;

	if (!json_is_array(arr)) {
		snprintf(err, errlen, "endpoints: must be an array");
		return -1;
	}
	if (json_array_size(arr) > MODELCFG_MAX_ENDPOINTS) {
		snprintf(err, errlen, "endpoints: at most %d entries", MODELCFG_MAX_ENDPOINTS);
		return -1;
	}
	json_array_foreach(arr, i, e) {
		json_t *url = json_object_get(e, "base_url"), *key = json_object_get(e, "api_key");
		json_t *w = json_object_get(e, "weight"), *mi = json_object_get(e, "max_inflight");
		if (!json_is_object(e)) {
			snprintf(err, errlen, "endpoints[%zu]: must be an object", i);
			return -1;
		}
		if (!json_is_string(url) || !json_string_length(url)) {
			snprintf(err, errlen, "endpoints[%zu].base_url: must be a non-empty string", i);
			return -1;
		}
		if (!modelcfg__scheme_ok(json_string_value(url))) {
			snprintf(err, errlen, "endpoints[%zu].base_url: must be an http:// or https:// URL", i);
			return -1;
		}
		if (key && !json_is_null(key) && !json_is_string(key)) {
			snprintf(err, errlen, "endpoints[%zu].api_key: must be a string", i);
			return -1;
		}
		if (w && !json_is_null(w) &&
		    (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > 1000)) {
			snprintf(err, errlen, "endpoints[%zu].weight: must be an integer from 1 to 1000", i);
			return -1;
		}
		if (mi && !json_is_null(mi) &&
		    (!json_is_integer(mi) || json_integer_value(mi) < 1 || json_integer_value(mi) > 1000000)) {
			snprintf(err, errlen, "endpoints[%zu].max_inflight: must be an integer from 1 to 1000000", i);
			return -1;
		}
		/* An endpoint without its own key uses the config's api_key. */
		modelcfg__add_endpoint(c, json_string_value(url), json_is_string(key) ? json_string_value(key) : c->api_key,
				       json_is_integer(w) ? (int)json_integer_value(w) : 1,
				       json_is_integer(mi) ? (int)json_integer_value(mi) : 0);
	}
	return 0;
}

static bool modelcfg__blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

/* Reads an optional string field into *dst (null counts as absent). */
static int modelcfg__str(json_t *root, const char *key, char **dst, char *err, size_t errlen)
{
	json_t *v = json_object_get(root, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s: must be a string", key);
		return -1;
	}
	free(*dst);
	*dst = xstrndup(json_string_value(v), json_string_length(v));
	return 0;
}

struct modelcfg *modelcfg_parse(const char *json, size_t len, char *err, size_t errlen)
{
	struct modelcfg *c = modelcfg__new();
	json_error_t jerr;
	json_t *root = NULL;

	if (errlen)
		err[0] = '\0';
	/* An empty body reads as null: "no model active", like a publisher
	 * that clears the config by sending nothing. */
	if (!json || modelcfg__blank(json, len))
		return c;
	root = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jerr.text can quote the input (the key, say): position only. */
		snprintf(err, errlen, "config: invalid JSON at line %d column %d", jerr.line, jerr.column);
		goto fail;
	}
	if (json_is_null(root))
		return c;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "config: must be a JSON object or null");
		goto fail;
	}
	if (modelcfg__str(root, "provider", &c->provider, err, errlen) ||
	    modelcfg__str(root, "base_url", &c->base_url, err, errlen) ||
	    modelcfg__str(root, "api_key", &c->api_key, err, errlen) ||
	    modelcfg__str(root, "model", &c->model, err, errlen) ||
	    modelcfg__str(root, "api_version", &c->api_version, err, errlen))
		goto fail;
	c->kind = provider_from_name(c->provider);
	modelcfg__strip_slash(c->base_url);
	json_t *eps = json_object_get(root, "endpoints");
	if (eps && !json_is_null(eps)) {
		if (modelcfg__endpoints(c, eps, err, errlen) < 0)
			goto fail;
	} else if (c->base_url[0]) {
		if (!modelcfg__scheme_ok(c->base_url)) {
			snprintf(err, errlen, "base_url: must be an http:// or https:// URL");
			goto fail;
		}
		modelcfg__add_endpoint(c, c->base_url, c->api_key, 1, 0);
	}
	if (c->nendpoints && !c->base_url[0]) {
		free(c->base_url);
		free(c->api_key);
		c->base_url = xstrdup(c->endpoints[0].base_url);
		c->api_key = xstrdup(c->endpoints[0].api_key);
	}
	json_t *rev = json_object_get(root, "revision");
	if (rev && !json_is_null(rev)) {
		if (!json_is_integer(rev)) {
			snprintf(err, errlen, "revision: must be an integer");
			goto fail;
		}
		if (json_integer_value(rev) > MODELCFG_REVISION_MAX || json_integer_value(rev) < -MODELCFG_REVISION_MAX) {
			snprintf(err, errlen, "revision: must be within +-(2^53-1), the integers every JSON client keeps exact");
			goto fail;
		}
		c->has_revision = true;
		c->revision = json_integer_value(rev);
	}
	c->ready = c->nendpoints > 0 && c->model[0];
	for (size_t i = 0; i < c->nendpoints; i++) {
		if (!c->endpoints[i].max_inflight) {
			c->capacity = 0;
			break;
		}
		c->capacity += c->endpoints[i].max_inflight;
	}
	json_decref(root);
	return c;

fail:
	json_decref(root);
	modelcfg__free(c);
	return NULL;
}

struct modelcfg *modelcfg_ref(struct modelcfg *c)
{
	c->refs++;
	return c;
}

void modelcfg_unref(struct modelcfg *c)
{
	if (c && --c->refs == 0)
		modelcfg__free(c);
}

void modelcfg_store_init(struct modelcfg_store *s)
{
	s->active = modelcfg__new();
	s->have_revision = false;
	s->revision = 0;
}

void modelcfg_store_free(struct modelcfg_store *s)
{
	modelcfg_unref(s->active);
	s->active = NULL;
}

enum modelcfg_verdict modelcfg_store_apply(struct modelcfg_store *s, struct modelcfg *c)
{
	if (!c) {
		s->invalid++;
		return MODELCFG_INVALID;
	}
	if (c->has_revision && s->have_revision && c->revision < s->revision) {
		modelcfg_unref(c);
		s->stale++;
		return MODELCFG_STALE;
	}
	s->applied++;
	if (c->has_revision) {
		s->have_revision = true;
		s->revision = c->revision;
	}
	/* Requests in flight hold their own references; this drops only the
	 * store's, so their snapshot lives on until they finish. */
	modelcfg_unref(s->active);
	s->active = c;
	return MODELCFG_APPLIED;
}

struct modelcfg *modelcfg_store_get(struct modelcfg_store *s)
{
	return modelcfg_ref(s->active);
}
