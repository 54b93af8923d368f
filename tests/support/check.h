/* check: assertions that print both sides, and JSON lookups that fail the
 * test (through cmocka) instead of returning NULL. Pure helpers: no state,
 * no processes, no I/O beyond the failure message. */
#ifndef SUNDYNIX_TEST_CHECK_H
#define SUNDYNIX_TEST_CHECK_H

#include <jansson.h>

#define H_ASSERT_CONTAINS(hay, needle) h_assert_contains((hay), (needle), __FILE__, __LINE__)
#define H_ASSERT_NOT_CONTAINS(hay, needle) h_assert_not_contains((hay), (needle), __FILE__, __LINE__)
void h_assert_contains(const char *hay, const char *needle, const char *file, int line);
void h_assert_not_contains(const char *hay, const char *needle, const char *file, int line);

/* Dotted path lookup ("error.code", "body.messages"); NULL when absent. */
json_t *h_jpath(json_t *obj, const char *path);
/* The string or integer at path; fails the test when it is absent or of
 * another type. */
const char *h_jstr(json_t *obj, const char *path);
long long h_jint(json_t *obj, const char *path);
/* Parses any JSON value; fails the test on bad JSON. Caller owns. */
json_t *h_json_parse(const char *text);
/* Merges src into dst: objects recursively, anything else replaced. */
void h_json_merge(json_t *dst, json_t *src);

#endif
