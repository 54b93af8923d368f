/* mock: see mock.h. One blocking HTTP request (http.h) per control call. */
#include "mock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "check.h"
#include "file.h"
#include "fixture.h"
#include "http.h"
#include "proc.h"

static void h__mock_cleanup(void *p)
{
	struct h_mock *m = p;
	h__forget(m);
	h__proc_end(&m->proc, 5000);
	free(m);
}

/* Waits for the port file the mock writes once it listens. */
static void h__mock_wait_port(struct h_mock *m)
{
	unsigned long long end = util_now_ms() + 10000;
	for (;;) {
		char *s = h_read_file(m->port_file, NULL);
		if (s && strchr(s, '\n')) {
			m->port = atoi(s);
			free(s);
			return;
		}
		free(s);
		if (util_now_ms() >= end || !h_proc_alive(m->proc)) {
			char *log = h_read_file(m->proc->log_path, NULL);
			fail_msg("mock %s did not write its port file: %s", m->name, log ? log : "");
		}
		h_sleep_ms(10);
	}
}

struct h_mock *h_mock_start(const char *name, const char *const *extra_args)
{
	struct h_mock *m = xcalloc(1, sizeof(*m));
	h__push(h__mock_cleanup, m);
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->port_file, sizeof(m->port_file), "%s/%s.port", h_tmpdir(), name);
	unlink(m->port_file);
	char *bin = xasprintf("%s/tools/mock-backend", h_build());
	const char *argv[32];
	size_t n = 0;
	argv[n++] = bin;
	argv[n++] = "--port-file";
	argv[n++] = m->port_file;
	argv[n++] = "--quiet";
	for (size_t i = 0; extra_args && extra_args[i] && n < UTIL_ARRAY_LEN(argv) - 1; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	if (access(bin, X_OK) != 0)
		fail_msg("%s is missing (make %s)", bin, bin);
	m->proc = h__proc_spawn(name, (char *const *)argv, NULL, NULL);
	free(bin);
	h__mock_wait_port(m);
	snprintf(m->base_url, sizeof(m->base_url), "http://127.0.0.1:%d/v1", m->port);
	return m;
}

void h_mock_stop(struct h_mock *m)
{
	int code = h_proc_stop(m->proc, 5000);
	h_assert_no_sanitizer_report(m->proc->log_path);
	assert_int_equal(code, 0);
}

void h_mock_kill(struct h_mock *m)
{
	h_proc_kill(m->proc);
}

static json_t *h__mock_http(struct h_mock *m, const char *path, const char *body)
{
	const char *method = body ? "POST" : "GET", *error;
	long status;
	char *out = h_http(m->port, path, body, 5000, &status, &error);
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", out);
	json_t *j = error ? NULL : json_loads(out, JSON_DECODE_ANY, NULL);
	free(out);
	if (error)
		fail_msg("mock %s 127.0.0.1:%d%s: %s", method, m->port, path, error);
	if (status < 200 || status > 299)
		fail_msg("mock %s 127.0.0.1:%d%s: HTTP %ld: %s", method, m->port, path, status, msg);
	if (!j)
		fail_msg("mock 127.0.0.1:%d%s: answer is not JSON: %s", m->port, path, msg);
	return j;
}

json_t *h_mock_get(struct h_mock *m, const char *path)
{
	return h__mock_http(m, path, NULL);
}

json_t *h_mock_post(struct h_mock *m, const char *path, const char *body)
{
	return h__mock_http(m, path, body);
}

static void __attribute__((format(printf, 3, 0)))
h__mock_postv(struct h_mock *m, const char *path, const char *fmt, va_list ap)
{
	struct buf b;
	va_list ap2;
	buf_init(&b);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	assert_true(n >= 0);
	buf_reserve(&b, (size_t)n);
	vsnprintf(b.data, (size_t)n + 1, fmt, ap);
	b.len = (size_t)n;
	json_t *body = h_json_parse(b.data); /* catches typos in test scripts early */
	json_decref(body);
	json_t *ans = h_mock_post(m, path, b.data);
	buf_free(&b);
	if (!json_is_true(json_object_get(ans, "ok"))) {
		char *d = json_dumps(ans, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("mock %s refused the script: %s", path, d);
	}
	json_decref(ans);
}

void h_mock_script(struct h_mock *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	h__mock_postv(m, "/_mock/script", fmt, ap);
	va_end(ap);
}

void h_mock_next(struct h_mock *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	h__mock_postv(m, "/_mock/next", fmt, ap);
	va_end(ap);
}

void h_mock_reset(struct h_mock *m)
{
	json_decref(h_mock_post(m, "/_mock/reset", "{}"));
}

json_t *h_mock_requests(struct h_mock *m)
{
	json_t *j = h_mock_get(m, "/_mock/requests");
	if (!json_is_array(j))
		fail_msg("/_mock/requests did not answer an array");
	return j;
}

size_t h_mock_request_count(struct h_mock *m)
{
	json_t *r = h_mock_requests(m);
	size_t n = json_array_size(r);
	json_decref(r);
	return n;
}

json_t *h_mock_request(struct h_mock *m, size_t i)
{
	json_t *reqs = h_mock_requests(m);
	if (i >= json_array_size(reqs))
		fail_msg("mock %s recorded %zu requests, no request %zu", m->name, json_array_size(reqs), i);
	json_t *r = json_incref(json_array_get(reqs, i));
	json_decref(reqs);
	return r;
}

json_t *h_mock_chat_request(struct h_mock *m, size_t i, const char *key)
{
	json_t *r = h_mock_request(m, i);
	char *bearer = xasprintf("Bearer %s", key);
	assert_string_equal(h_jstr(r, "path"), "/v1/chat/completions");
	assert_string_equal(h_jstr(r, "authorization"), bearer);
	free(bearer);
	return r;
}

json_t *h_mock_last_body(struct h_mock *m)
{
	json_t *reqs = h_mock_requests(m);
	assert_true(json_array_size(reqs) >= 1);
	json_t *body = json_incref(json_object_get(json_array_get(reqs, json_array_size(reqs) - 1), "body"));
	json_decref(reqs);
	if (!json_is_object(body))
		fail_msg("the mock recorded a body that is not a JSON object");
	return body;
}

long long h_mock_stat(struct h_mock *m, const char *key)
{
	json_t *j = h_mock_get(m, "/_mock/stats");
	long long v = h_jint(j, key);
	json_decref(j);
	return v;
}

long long h_mock_wait_stat(struct h_mock *m, const char *key, long long want, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		long long v = h_mock_stat(m, key);
		if (v >= want || util_now_ms() >= end)
			return v;
		h_sleep_ms(20);
	}
}

/* n expansions of the mock's default template word ("tok", "think"). */
static char *h__mock_words(const char *word, int n)
{
	struct buf b;
	buf_init(&b);
	buf_reserve(&b, 0);
	b.data[0] = '\0';
	for (int i = 0; i < n; i++)
		buf_printf(&b, "%s%d ", word, i);
	return b.data;
}

char *h_mock_tokens(int n)
{
	return h__mock_words("tok", n);
}

char *h_mock_reasoning(int n)
{
	return h__mock_words("think", n);
}
