/* check: see check.h. */
#include "check.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

void h_assert_contains(const char *hay, const char *needle, const char *file, int line)
{
	if (!hay || !strstr(hay, needle))
		fail_msg("%s:%d: expected \"%s\" to contain \"%s\"", file, line, hay ? hay : "(null)", needle);
}

void h_assert_not_contains(const char *hay, const char *needle, const char *file, int line)
{
	if (hay && strstr(hay, needle))
		fail_msg("%s:%d: expected \"%s\" NOT to contain \"%s\"", file, line, hay, needle);
}

json_t *h_jpath(json_t *obj, const char *path)
{
	char *copy = xstrdup(path), *save = NULL;
	json_t *cur = obj;
	for (char *tok = strtok_r(copy, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
		cur = json_is_object(cur) ? json_object_get(cur, tok) : NULL;
	free(copy);
	return cur;
}

/* The value at path when it has the type wanted, else fails the test. */
static json_t *h__jtyped(json_t *obj, const char *path, json_type type, const char *what)
{
	json_t *v = h_jpath(obj, path);
	if (!v || json_typeof(v) != type) {
		char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
		fail_msg("expected %s at \"%s\" in %s", what, path, dump ? dump : "(null)");
	}
	return v;
}

const char *h_jstr(json_t *obj, const char *path)
{
	return json_string_value(h__jtyped(obj, path, JSON_STRING, "string"));
}

long long h_jint(json_t *obj, const char *path)
{
	return json_integer_value(h__jtyped(obj, path, JSON_INTEGER, "integer"));
}

json_t *h_json_parse(const char *text)
{
	json_error_t err;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
	if (!j)
		fail_msg("bad JSON (%s at %d:%d): %s", err.text, err.line, err.column, text);
	return j;
}

void h_json_merge(json_t *dst, json_t *src)
{
	if (json_object_update_recursive(dst, src) != 0)
		fail_msg("cannot merge JSON objects");
}
