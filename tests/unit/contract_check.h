/* contract_check: what the contract unit tests share: the limit, a valid
 * messages array, decoding a submit, parsing an encoder's output back, field
 * assertions, and the shape of a bad-input case and its check. Included by
 * tests/unit/test_contract*.c only. */
#ifndef SUNDYNIX_CONTRACT_CHECK_H
#define SUNDYNIX_CONTRACT_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define LIMIT 1048576

#define OK_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static inline int decode(const char *body, struct contract_submit *s, struct contract_error *e)
{
	return contract_decode_submit(body, strlen(body), LIMIT, s, e);
}

static inline json_t *parse(const struct buf *b)
{
	json_error_t jerr;
	json_t *v = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);

	if (!v)
		fail_msg("encoder output is not JSON (%s): %s", jerr.text, b->data);
	assert_true(json_is_object(v));
	return v;
}

static inline void assert_str_field(json_t *o, const char *key, const char *want)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		fail_msg("field %s is not a string", key);
	assert_string_equal(json_string_value(v), want);
}

static inline void assert_int_field(json_t *o, const char *key, long long want)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		fail_msg("field %s is not an integer", key);
	assert_int_equal(json_integer_value(v), want);
}

/* A submit that must be refused, and how. */
struct bad_case {
	const char *body;
	const char *message; /* exact error message; NULL: invalid JSON at some position */
	const char *rid;     /* expected err.request_id ("" when none) */
};

/* Decodes each of the n cases, which must fail with its message and
 * request_id and leave nothing to free. */
static inline void expect_bad_cases(const struct bad_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct bad_case *c = &cases[i];
		struct contract_submit s;
		struct contract_error e;

		if (decode(c->body, &s, &e) != -1)
			fail_msg("case %zu accepted: %s", i, c->body);
		if (c->message ? strcmp(e.message, c->message) : strncmp(e.message, "body: invalid JSON at line ", 27))
			fail_msg("case %zu: message \"%s\", want \"%s\"", i, e.message,
				 c->message ? c->message : "body: invalid JSON at ...");
		if (strcmp(e.request_id, c->rid))
			fail_msg("case %zu: request_id \"%s\", want \"%s\"", i, e.request_id, c->rid);
		assert_null(s.root);
		assert_null(s.messages);
		assert_string_equal(s.request_id, "");
	}
}

#endif
