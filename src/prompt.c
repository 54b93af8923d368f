/* prompt: see include/prompt.h.
 *
 * The template is expanded in a single pass over the template text only, so
 * placeholder-like text inside the profile or a fact ("{facts}") reaches the
 * backend verbatim and is never expanded again. */
#include "prompt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PROMPT__PH_PROFILE "{profile}"
#define PROMPT__PH_FACTS "{facts}"

static bool prompt__has(const char *p, size_t n, const char *needle)
{
	return memmem(p, n, needle, strlen(needle)) != NULL;
}

/* Appends one template line with its placeholders replaced. */
static void prompt__expand_line(struct buf *out, const char *p, size_t n, const char *profile,
				const struct buf *facts)
{
	static const size_t plen = sizeof(PROMPT__PH_PROFILE) - 1;
	static const size_t flen = sizeof(PROMPT__PH_FACTS) - 1;
	size_t i = 0, lit = 0;

	while (i < n) {
		if (p[i] == '{' && n - i >= plen && !memcmp(p + i, PROMPT__PH_PROFILE, plen)) {
			buf_append(out, p + lit, i - lit);
			buf_append_str(out, profile);
			i += plen;
			lit = i;
		} else if (p[i] == '{' && n - i >= flen && !memcmp(p + i, PROMPT__PH_FACTS, flen)) {
			buf_append(out, p + lit, i - lit);
			buf_append(out, facts->data, facts->len);
			i += flen;
			lit = i;
		} else {
			i++;
		}
	}
	buf_append(out, p + lit, n - lit);
}

char *prompt_render_memory(const char *memory_template, const char *profile, json_t *facts)
{
	const char *tpl = memory_template && *memory_template ? memory_template : PROMPT_DEFAULT_MEMORY_TEMPLATE;
	bool has_profile = profile && *profile;
	struct buf fb, out;
	size_t i;
	json_t *f;

	buf_init(&fb);
	json_array_foreach(facts, i, f) {
		if (!json_is_string(f) || json_string_length(f) == 0)
			continue;
		if (fb.len)
			buf_append_char(&fb, '\n');
		buf_append_str(&fb, "- ");
		buf_append(&fb, json_string_value(f), json_string_length(f));
	}
	bool has_facts = fb.len > 0;
	if (!has_profile && !has_facts) {
		buf_free(&fb);
		return NULL;
	}

	buf_init(&out);
	bool first = true;
	for (const char *line = tpl;;) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		bool drop = (!has_profile && prompt__has(line, n, PROMPT__PH_PROFILE)) ||
			    (!has_facts && prompt__has(line, n, PROMPT__PH_FACTS));
		if (!drop) {
			if (!first)
				buf_append_char(&out, '\n');
			prompt__expand_line(&out, line, n, has_profile ? profile : "", &fb);
			first = false;
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	buf_free(&fb);
	if (out.len == 0) {
		buf_free(&out);
		return NULL;
	}
	return out.data;
}

/* A JSON string of s; invalid UTF-8 (possible in a system prompt taken from
 * the environment) becomes U+FFFD rather than losing the whole text. */
static json_t *prompt__string(const char *s, size_t n)
{
	json_t *v = json_stringn(s, n);
	struct buf b;

	if (v)
		return v;
	buf_init(&b);
	for (size_t i = 0; i < n;) {
		size_t k = util_utf8_seqlen(s + i, n - i);
		if (k == 1 && (unsigned char)s[i] >= 0x80)
			buf_append(&b, "\xef\xbf\xbd", 3);
		else
			buf_append(&b, s + i, k);
		i += k;
	}
	v = json_stringn(b.data ? b.data : "", b.len);
	buf_free(&b);
	return v;
}

static void prompt__part(struct buf *sys, const char *s)
{
	if (!s || !*s)
		return;
	if (sys->len)
		buf_append_str(sys, "\n\n");
	buf_append_str(sys, s);
}

/* Copies only the fields the upstream needs; values are shared by reference
 * (the tree is read-only from here on and lives on one thread). */
static json_t *prompt__copy_message(json_t *m)
{
	static const char *const extra[] = { "name", "tool_call_id", "tool_calls" };
	json_t *c = json_object();
	json_t *content = json_object_get(m, "content");

	json_object_set(c, "role", json_object_get(m, "role"));
	json_object_set_new(c, "content", content ? json_incref(content) : json_null());
	for (size_t k = 0; k < UTIL_ARRAY_LEN(extra); k++) {
		json_t *v = json_object_get(m, extra[k]);
		if (v && !json_is_null(v))
			json_object_set(c, extra[k], v);
	}
	return c;
}

json_t *prompt_build(const char *system_prompt, const char *memory_template, json_t *messages,
		     const char *profile, json_t *facts)
{
	json_t *arr = json_array();
	json_t *first_sys = NULL;
	struct buf sys;
	size_t i;
	json_t *m;

	json_array_foreach(messages, i, m) {
		json_t *role = json_object_get(m, "role");
		if (json_is_string(role) && !strcmp(json_string_value(role), "system")) {
			first_sys = m;
			break;
		}
	}

	buf_init(&sys);
	char *memory = prompt_render_memory(memory_template, profile, facts);
	prompt__part(&sys, system_prompt);
	prompt__part(&sys, memory);
	free(memory);
	json_t *sys_content = first_sys ? json_object_get(first_sys, "content") : NULL;
	if (json_is_string(sys_content))
		prompt__part(&sys, json_string_value(sys_content));
	if (json_is_array(sys_content)) {
		/* Content parts: ours become the first text part, the request's
		 * parts follow as they are (the contract lets only text parts into
		 * system messages, so every backend reads them as one text). */
		json_t *parts = json_array();
		if (sys.len)
			json_array_append_new(parts, json_pack("{s:s, s:o}", "type", "text", "text",
							       prompt__string(sys.data, sys.len)));
		json_array_extend(parts, sys_content);
		json_array_append_new(arr, json_pack("{s:s, s:o}", "role", "system", "content", parts));
	} else if (sys.len) {
		json_t *msg = json_object();
		json_object_set_new(msg, "role", json_string("system"));
		json_object_set_new(msg, "content", prompt__string(sys.data, sys.len));
		json_array_append_new(arr, msg);
	}
	buf_free(&sys);

	json_array_foreach(messages, i, m) {
		if (m != first_sys)
			json_array_append_new(arr, prompt__copy_message(m));
	}
	return arr;
}
