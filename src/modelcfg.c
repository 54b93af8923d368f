/* modelcfg: see include/modelcfg.h.
 *
 * Parse errors name the field and the expected type only; they never quote a
 * value, so the api_key cannot leak through them. */
#include "modelcfg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct modelcfg *modelcfg__new(void)
{
	struct modelcfg *c = xcalloc(1, sizeof(*c));

	c->refs = 1;
	c->provider = xstrdup("");
	c->base_url = xstrdup("");
	c->api_key = xstrdup("");
	c->model = xstrdup("");
	return c;
}

static void modelcfg__free(struct modelcfg *c)
{
	free(c->provider);
	free(c->base_url);
	free(c->api_key);
	free(c->model);
	free(c);
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
	    modelcfg__str(root, "model", &c->model, err, errlen))
		goto fail;
	json_t *rev = json_object_get(root, "revision");
	if (rev && !json_is_null(rev)) {
		if (!json_is_integer(rev)) {
			snprintf(err, errlen, "revision: must be an integer");
			goto fail;
		}
		c->has_revision = true;
		c->revision = json_integer_value(rev);
	}
	/* Callers append "/chat/completions"; a trailing slash would double it. */
	size_t n = strlen(c->base_url);
	while (n > 0 && c->base_url[n - 1] == '/')
		c->base_url[--n] = '\0';
	c->ready = c->base_url[0] && c->model[0];
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

bool modelcfg_store_apply(struct modelcfg_store *s, struct modelcfg *c)
{
	if (!c)
		return false;
	if (c->has_revision && s->have_revision && c->revision < s->revision) {
		modelcfg_unref(c);
		return false;
	}
	if (c->has_revision) {
		s->have_revision = true;
		s->revision = c->revision;
	}
	/* Requests in flight hold their own references; this drops only the
	 * store's, so their snapshot lives on until they finish. */
	modelcfg_unref(s->active);
	s->active = c;
	return true;
}

struct modelcfg *modelcfg_store_get(struct modelcfg_store *s)
{
	return modelcfg_ref(s->active);
}
