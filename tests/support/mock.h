/* mock: the mock OpenAI-compatible backend ($BUILD/tools/mock-backend, built
 * from tools/mock_backend.c) as a child on a free loopback port, and its
 * control endpoints over HTTP: scripts for the next or every request, the
 * requests it recorded, its counters. Every call fails the test on a
 * transport error or a non-2xx answer. What the daemon does with the mock is
 * for the tests to check. */
#ifndef SUNDYNIX_TEST_MOCK_H
#define SUNDYNIX_TEST_MOCK_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

struct h_mock {
	struct h_proc *proc;
	int port;
	char base_url[96]; /* http://127.0.0.1:PORT/v1 */
	char name[64];
	char port_file[320]; /* where it writes its port once it listens */
};

/* extra_args: NULL-terminated, may be NULL. */
struct h_mock *h_mock_start(const char *name, const char *const *extra_args);
void h_mock_stop(struct h_mock *m); /* asserts a clean exit (status 0, no sanitizer report) */
void h_mock_kill(struct h_mock *m); /* SIGKILL, no checks */
/* The control endpoints; return the parsed answer (caller owns). */
json_t *h_mock_get(struct h_mock *m, const char *path);
json_t *h_mock_post(struct h_mock *m, const char *path, const char *body);
/* POST /_mock/script (every request) or /_mock/next (the next one) with a
 * JSON text built by printf; fails unless the mock took it. */
void h_mock_script(struct h_mock *m, const char *fmt, ...) UTIL_PRINTF(2, 3);
void h_mock_next(struct h_mock *m, const char *fmt, ...) UTIL_PRINTF(2, 3);
/* Counters to zero, requests forgotten, the default script again. */
void h_mock_reset(struct h_mock *m);
/* The chat requests recorded since the last reset (caller owns), and their
 * number. */
json_t *h_mock_requests(struct h_mock *m);
size_t h_mock_request_count(struct h_mock *m);
/* Recorded request i (caller owns); fails when there are fewer. */
json_t *h_mock_request(struct h_mock *m, size_t i);
/* h_mock_request, checked to be on the OpenAI chat path with
 * "Authorization: Bearer <key>". */
json_t *h_mock_chat_request(struct h_mock *m, size_t i, const char *key);
/* The body of the last recorded request (caller owns); fails when there is
 * none or it is not an object. */
json_t *h_mock_last_body(struct h_mock *m);
long long h_mock_stat(struct h_mock *m, const char *key);
/* Waits until stats[key] >= want. Returns the last value. */
long long h_mock_wait_stat(struct h_mock *m, const char *key, long long want, int timeout_ms);
/* What n tokens of the stream mode add up to: "tok0 tok1 ... tok<n-1> "
 * (caller frees). */
char *h_mock_tokens(int n);
/* The same for n reasoning tokens: "think0 think1 ... think<n-1> ". */
char *h_mock_reasoning(int n);

#endif
