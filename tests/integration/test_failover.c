/* Integration: failover inside one dispatcher (docs/pool.md, "Failover").
 * Two mock replicas; the first (weight 1000 to 1, so a fresh daemon picks it
 * first) dies after k tokens: its connection ends without a finish, is
 * reset, goes silent past timeouts.idle_ms, or its process is killed. The
 * stream must go on from the second replica as one answer: contiguous seq,
 * the exact scripted text, "resumed":1, "attempts":2 and the second replica
 * as endpoint; and the second replica must get the same request with the
 * answer so far as the assistant's last message, in its provider's dialect
 * (the mock refuses any other: its script key "continue"). Then what does
 * not fail over (a provider that cannot continue, pool.resume false, no
 * record), a second failover, a continuation retried before its first token,
 * and the deepseek, llama.cpp and Ollama dialects. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define MODEL "m-fo"
#define N 8            /* tokens of the scripted answer */
#define MAX_TOKENS 100 /* the request's params.max_tokens */

static struct h_nats *nats;
static struct h_mock *ma, *mb;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &ma, "mock-fo-a" }, { &mb, "mock-fo-b" } } };

/* What a stream that broke off on one replica and went on on another must
 * show. */
struct want {
	const char *dialect;  /* the continuation's: "vllm", "deepseek" or "trailing" */
	const char *path;     /* where the continuation went */
	int reasoning;        /* reasoning tokens of the script (before the answer) */
	const char *a_url;    /* the replica that broke off */
	struct h_mock *b;     /* the replica that finished */
	json_t *orig;         /* the body the first replica got; NULL when it cannot tell (killed) */
	int attempts, resumed;
	int broke;            /* the attempt that broke off last */
	int before;           /* deltas relayed by the attempts before that one */
};

/* A daemon whose model has replica a (weight 1000) and b (weight 1), given
 * as URLs so a test can use a mock of its own. */
static struct h_daemon *start_pair(const char *overrides, const char *provider, const char *a, const char *b,
				   struct h_client **c)
{
	struct h_daemon *d = h_daemon_start_client(nats, overrides, c);
	h_apply_config(*c, d, MODEL,
		       "{\"provider\":\"%s\",\"model\":\"" MODEL "\",\"endpoints\":["
		       "{\"base_url\":\"%s\",\"weight\":1000},{\"base_url\":\"%s\",\"weight\":1}]}",
		       provider, a, b);
	return d;
}

/* The script of a replica that answers in full and continues in dialect. */
static void script_full(struct h_mock *m, const char *dialect, int reasoning)
{
	h_mock_script(m, "{\"tokens\":%d,\"reasoning_tokens\":%d,\"ttft_ms\":0,\"inter_ms\":0,\"continue\":\"%s\"}", N,
		      reasoning, dialect);
}

/* Submits "hello" with params.max_tokens, the stream open first. */
static struct h_stream *submit(struct h_client *c, const char *rid)
{
	struct h_stream *s = h_stream_open(c, rid);
	json_t *req = json_pack("{s:s,s:[{s:s,s:s}],s:{s:i}}", "request_id", rid, "messages", "role", "user",
				"content", "hello", "params", "max_tokens", MAX_TOKENS);
	json_t *ack = h_submit(c, req, 5000);
	json_decref(req);
	if (!json_is_true(json_object_get(ack, "accepted"))) {
		char *dump = json_dumps(ack, JSON_COMPACT);
		fail_msg("%s not accepted: %s", rid, dump);
	}
	json_decref(ack);
	return s;
}

/* How many whole mock words ("tok3 ") s is, failing unless s is exactly the
 * first ones of what make spells. */
static int count_words(const char *s, char *(*make)(int), const char *what)
{
	int n = 0;
	for (const char *p = s; (p = strchr(p, ' ')); p++)
		n++;
	char *want = make(n);
	if (strcmp(s, want))
		fail_msg("%s so far: \"%s\" is not the script's \"%s\"", what, s, want);
	free(want);
	return n;
}

/* Checks the continuation request r (a recorded request of w->b) and returns
 * how many deltas were relayed before it (reasoning ones included); *answer
 * gets how many of them were answer tokens. */
static int expect_continuation(json_t *r, const struct want *w, int *answer)
{
	assert_string_equal(h_jstr(r, "path"), w->path);
	json_t *body = json_deep_copy(json_object_get(r, "body"));
	json_t *msgs = json_object_get(body, "messages");
	size_t n = json_array_size(msgs);
	assert_true(n >= 2);
	json_t *last = json_incref(json_array_get(msgs, n - 1));
	json_array_remove(msgs, n - 1);
	assert_string_equal(h_jstr(last, "role"), "assistant");
	bool rc = json_object_get(last, "reasoning_content") != NULL;
	int jr = rc ? count_words(h_jstr(last, "reasoning_content"), h_mock_reasoning, "reasoning") : 0;
	int jc = count_words(h_jstr(last, "content"), h_mock_tokens, "answer");
	if (jc > 0)
		assert_int_equal(jr, w->reasoning); /* the answer follows the whole reasoning */
	else if (jr == 0)
		fail_msg("a continuation with neither answer nor reasoning so far");
	int produced = jr + jc;
	assert_int_equal(h_jint(body, "max_tokens"), MAX_TOKENS - produced);

	bool vllm = !strcmp(w->dialect, "vllm"), deepseek = !strcmp(w->dialect, "deepseek");
	json_t *cfm = json_object_get(body, "continue_final_message");
	json_t *agp = json_object_get(body, "add_generation_prompt");
	assert_true(vllm ? json_is_true(cfm) && json_is_false(agp) : !cfm && !agp);
	json_t *prefix = json_object_get(last, "prefix");
	assert_true(deepseek ? json_is_true(prefix) : !prefix);
	/* The rest is the request as it was first sent. */
	if (w->orig) {
		json_object_del(body, "continue_final_message");
		json_object_del(body, "add_generation_prompt");
		json_object_set_new(body, "max_tokens", json_integer(MAX_TOKENS));
		if (!json_equal(body, w->orig)) {
			char *a = json_dumps(w->orig, JSON_COMPACT), *b = json_dumps(body, JSON_COMPACT);
			fail_msg("the continuation is not the first request plus the answer so far:\nfirst: %s\nthen:  %s",
				 a, b);
		}
	} else {
		assert_string_equal(h_jstr(json_array_get(msgs, n - 2), "content"), "hello");
	}
	json_decref(last);
	json_decref(body);
	if (answer)
		*answer = jc;
	return produced;
}

/* No reasoning event after the first answer token: the mock reasons first,
 * and a continuation must not make it look otherwise. */
static void expect_reasoning_first(struct h_stream *s)
{
	json_t *ev = h_stream_events(s);
	bool answering = false;
	for (size_t i = 0; i < json_array_size(ev); i++) {
		const char *type = h_jstr(json_array_get(ev, i), "type");
		if (!strcmp(type, "reasoning") && answering)
			fail_msg("a reasoning event (seq %zu) after the answer began", i);
		answering |= !strcmp(type, "token");
	}
	json_decref(ev);
}

/* The stream is one answer of w->reasoning reasoning and N answer tokens
 * that finished on w->b; returns the deltas the attempt that broke off last
 * had relayed, read from the continuation w->b received last. */
static int expect_resumed(struct h_daemon *d, struct h_stream *s, const struct want *w)
{
	json_t *t = h_stream_done(s, 20000);
	char *text = h_stream_text(s, "token"), *reasoning = h_stream_text(s, "reasoning");
	char *want_text = h_mock_tokens(N), *want_reasoning = h_mock_reasoning(w->reasoning);
	assert_string_equal(text, want_text);
	assert_string_equal(reasoning, want_reasoning);
	expect_reasoning_first(s);
	assert_int_equal(h_jint(t, "seq"), w->reasoning + N);
	assert_int_equal(h_jint(t, "attempts"), w->attempts);
	assert_int_equal(h_jint(t, "resumed"), w->resumed);
	assert_string_equal(h_jstr(t, "endpoint"), w->b->base_url);
	assert_string_equal(h_jstr(t, "finish_reason"), "stop");

	json_t *reqs = h_mock_requests(w->b);
	json_t *r = json_array_get(reqs, json_array_size(reqs) - 1);
	assert_non_null(r);
	int answer, produced = expect_continuation(r, w, &answer);
	/* Usage adds up the attempts: a broken one counts a token per delta
	 * (the mock sent no usage before dying), the last one what the mock
	 * counts itself, the answer tokens it sent. */
	assert_int_equal(h_jint(t, "usage.completion_tokens"), produced + N - answer);
	assert_int_equal(h_jint(t, "usage.prompt_tokens"),
			 (long long)json_array_size(json_object_get(json_object_get(r, "body"), "messages")));
	json_decref(reqs);

	int k = produced - w->before;
	char needle[256];
	snprintf(needle, sizeof(needle), "attempt %d on %s broke off after %d deltas (", w->broke, w->a_url, k);
	h_daemon_expect_log(d, needle, 1000);
	free(text);
	free(reasoning);
	free(want_text);
	free(want_reasoning);
	return k;
}

/* One request, the mocks reset: ma breaks off as a_script says, mb
 * finishes in vLLM's dialect. Checks the stream, that ma saw the original
 * request once and mb the continuation once, and returns the deltas ma had
 * relayed. */
static int run_break(struct h_daemon *d, struct h_client *c, const char *rid, const char *a_script)
{
	h_mock_reset(ma);
	h_mock_reset(mb);
	h_mock_script(ma, "%s", a_script);
	script_full(mb, "vllm", 0);
	struct h_stream *s = submit(c, rid);
	h_stream_wait_terminal(s, 20000);
	json_t *orig = h_mock_last_body(ma);
	struct want w = { "vllm", "/v1/chat/completions", 0, ma->base_url, mb, orig, 2, 1, 1, 0 };
	int seen = expect_resumed(d, s, &w);
	json_decref(orig);
	assert_int_equal(h_mock_stat(ma, "requests"), 1);
	assert_int_equal(h_mock_stat(mb, "requests"), 1);
	assert_int_equal(h_mock_stat(mb, "continuations"), 1);
	h_stream_close(s);
	return seen;
}

/* run_break with ma's script built by printf, and the rid tag-k. */
static int run_break_k(struct h_daemon *d, struct h_client *c, const char *tag, int k, const char *fmt, ...)
	UTIL_PRINTF(5, 6);
static int run_break_k(struct h_daemon *d, struct h_client *c, const char *tag, int k, const char *fmt, ...)
{
	char rid[64], script[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(script, sizeof(script), fmt, ap);
	va_end(ap);
	snprintf(rid, sizeof(rid), "%s-%d", tag, k);
	return run_break(d, c, rid, script);
}

/* 1a. The replica closes its connection after k tokens, without a finish:
 * k = 1, 2, half, all but one, and all of them (it died before the finish;
 * the continuation only finishes). */
static void test_vllm_close_after_k(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_pair(NULL, "vllm", ma->base_url, mb->base_url, &c);
	static const int ks[] = { 1, 2, N / 2, N - 1, N };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(ks); i++) {
		int k = run_break_k(d, c, "close", ks[i], "{\"mode\":\"close\",\"tokens\":%d,\"ttft_ms\":0,\"inter_ms\":0}",
				    ks[i]);
		assert_int_equal(k, ks[i]);
		h_log("closed after %d of %d tokens: continued on the second replica", k, N);
	}
	h_daemon_stop_ok(d);
}

/* 1b. The replica resets its connection (TCP RST) after k tokens. */
static void test_vllm_reset_after_k(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_pair(NULL, "vllm", ma->base_url, mb->base_url, &c);
	static const int ks[] = { 1, N - 1 };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(ks); i++) {
		int k = run_break_k(d, c, "reset", ks[i],
				    "{\"mode\":\"close\",\"tokens\":%d,\"reset\":true,\"ttft_ms\":0,\"inter_ms\":0}", ks[i]);
		assert_int_equal(k, ks[i]);
	}
	/* curl's words for a reset, not for an end of body (a FIN). */
	h_daemon_expect_log_count(d, "broke off: Failure when receiving data from the peer); continuing", 2, 1000);
	h_daemon_assert_log_lacks(d, "failed after");
	h_daemon_stop_ok(d);
}

/* 1c. The replica goes silent after k tokens: timeouts.idle_ms ends the
 * attempt, which the replica sees as its client leaving. */
static void test_vllm_idle_stall_after_k(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_pair("{\"timeouts\":{\"idle_ms\":500}}", "vllm", ma->base_url, mb->base_url, &c);
	static const int ks[] = { 1, N - 1 };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(ks); i++) {
		unsigned long long t0 = util_now_ms();
		int k = run_break_k(d, c, "stall", ks[i], "{\"tokens\":%d,\"stall_after\":%d,\"ttft_ms\":0,\"inter_ms\":0}",
				    N, ks[i]);
		assert_int_equal(k, ks[i]);
		assert_true(util_now_ms() - t0 >= 500);
		assert_true(h_mock_wait_stat(ma, "client_aborts", 1, 3000) >= 1);
	}
	h_daemon_expect_log_count(d, "(upstream_timeout: no data from backend for 500 ms); continuing on another replica",
				  2, 1000);
	h_daemon_stop_ok(d);
}

/* 1d. The replica's process is killed (SIGKILL) while it streams, after at
 * least three tokens reached the gateway. Its tokens come 250 ms apart, so
 * the kill lands well before its answer would end, even on a busy machine. */
static void test_vllm_replica_killed(void **state)
{
	(void)state;
	struct h_mock *mk = h_mock_start("mock-fo-killed", NULL);
	struct h_client *c;
	struct h_daemon *d = start_pair(NULL, "vllm", mk->base_url, mb->base_url, &c);
	h_mock_script(mk, "{\"tokens\":%d,\"ttft_ms\":0,\"inter_ms\":250}", N);
	script_full(mb, "vllm", 0);
	struct h_stream *s = submit(c, "killed");
	if (!h_stream_wait_count(s, 3, 10000))
		fail_msg("fewer than 3 events within 10 s");
	h_mock_kill(mk);
	struct want w = { "vllm", "/v1/chat/completions", 0, mk->base_url, mb, NULL, 2, 1, 1, 0 };
	int k = expect_resumed(d, s, &w);
	h_log("the replica was killed after %d of %d tokens reached the gateway", k, N);
	assert_in_range(k, 3, N - 1);
	assert_int_equal(h_mock_stat(mb, "continuations"), 1);
	h_daemon_stop_ok(d);
}

/* 2. No failover: a provider that cannot continue, pool.resume false, and
 * a record that keeps nothing (limits.replay_bytes 0): the error as before
 * the feature, after the tokens, on the first replica only. */
static void test_no_failover(void **state)
{
	(void)state;
	static const struct {
		const char *provider, *overrides;
	} cases[] = {
		{ "openai", NULL },
		{ "vllm", "{\"pool\":{\"resume\":false}}" },
		{ "vllm", "{\"limits\":{\"replay_bytes\":0}}" },
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		struct h_client *c;
		struct h_daemon *d = start_pair(cases[i].overrides, cases[i].provider, ma->base_url, mb->base_url, &c);
		h_mock_reset(ma);
		h_mock_reset(mb);
		h_mock_script(ma, "{\"mode\":\"close\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
		script_full(mb, "vllm", 0);
		char rid[32];
		snprintf(rid, sizeof(rid), "nofo-%zu", i);
		struct h_stream *s = submit(c, rid);
		json_t *t = h_stream_expect_error(s, "upstream_protocol", 15000);
		h_stream_expect_text(s, "tok0 tok1 tok2 ");
		assert_int_equal(h_jint(t, "seq"), 3);
		assert_int_equal(h_jint(t, "attempts"), 1);
		assert_string_equal(h_jstr(t, "endpoint"), ma->base_url);
		assert_null(json_object_get(t, "resumed"));
		h_log("%s %s: %s", cases[i].provider, cases[i].overrides ? cases[i].overrides : "(defaults)",
		      h_jstr(t, "error.message"));
		assert_int_equal(h_mock_stat(mb, "requests"), 0);
		assert_false(h_daemon_log_contains(d, "continuing on another replica"));
		h_daemon_stop_ok(d);
	}
}

/* Three replicas by weight 1000, 10, 1, so a fresh daemon tries them in
 * that order, and pool.max_attempts attempts. */
static struct h_daemon *start_three(struct h_mock *mc, int max_attempts, struct h_client **c)
{
	char o[64];
	snprintf(o, sizeof(o), "{\"pool\":{\"max_attempts\":%d}}", max_attempts);
	struct h_daemon *d = h_daemon_start_client(nats, o, c);
	h_apply_config(*c, d, MODEL,
		       "{\"provider\":\"vllm\",\"model\":\"" MODEL "\",\"endpoints\":[{\"base_url\":\"%s\",\"weight\":1000},"
		       "{\"base_url\":\"%s\",\"weight\":10},{\"base_url\":\"%s\",\"weight\":1}]}",
		       ma->base_url, mb->base_url, mc->base_url);
	return d;
}

/* 3. The continuation dies too: with a third replica and max_attempts 3 the
 * stream goes on there ("resumed":2), the third request holding everything
 * both replicas sent; with max_attempts 2 it ends with the error, after
 * everything both sent, "resumed":1. */
static void test_second_failover(void **state)
{
	(void)state;
	struct h_mock *mc = h_mock_start("mock-fo-c", NULL);
	for (int max = 3; max >= 2; max--) {
		struct h_client *c;
		struct h_daemon *d = start_three(mc, max, &c);
		h_mock_reset(ma);
		h_mock_reset(mb);
		h_mock_reset(mc);
		h_mock_script(ma, "{\"mode\":\"close\",\"tokens\":2,\"ttft_ms\":0,\"inter_ms\":0}");
		h_mock_script(mb, "{\"mode\":\"close\",\"tokens\":5,\"ttft_ms\":0,\"inter_ms\":0,\"continue\":\"vllm\"}");
		script_full(mc, "vllm", 0);
		struct h_stream *s = submit(c, max == 3 ? "twice" : "twice-capped");
		h_stream_wait_terminal(s, 20000);
		json_t *orig = h_mock_last_body(ma);
		struct want w = { "vllm", "/v1/chat/completions", 0, mb->base_url, mc, orig, 3, 2, 2, 2 };
		if (max == 3) {
			assert_int_equal(expect_resumed(d, s, &w), 3); /* tok2..tok4 from the second */
		} else {
			json_t *t = h_stream_expect_error(s, "upstream_protocol", 1000);
			h_stream_expect_text(s, "tok0 tok1 tok2 tok3 tok4 ");
			assert_int_equal(h_jint(t, "attempts"), 2);
			assert_int_equal(h_jint(t, "resumed"), 1);
			assert_string_equal(h_jstr(t, "endpoint"), mb->base_url);
			assert_int_equal(h_mock_stat(mc, "requests"), 0);
		}
		/* The second replica continued from the first one's two tokens. */
		w.b = mb;
		w.a_url = ma->base_url;
		json_t *r = h_mock_request(mb, 0);
		assert_int_equal(expect_continuation(r, &w, NULL), 2);
		json_decref(r);
		json_decref(orig);
		h_daemon_stop_ok(d);
	}
}

/* 4. A continuation that fails before its own first token (503) is retried
 * like any attempt, on the third replica. */
static void test_continuation_retried(void **state)
{
	(void)state;
	struct h_mock *mc = h_mock_start("mock-fo-c2", NULL);
	struct h_client *c;
	struct h_daemon *d = start_three(mc, 3, &c);
	h_mock_script(ma, "{\"mode\":\"close\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
	h_mock_script(mb, "{\"mode\":\"status\",\"status\":503}");
	script_full(mc, "vllm", 0);
	struct h_stream *s = submit(c, "cont-503");
	h_stream_wait_terminal(s, 20000);
	json_t *orig = h_mock_last_body(ma);
	struct want w = { "vllm", "/v1/chat/completions", 0, ma->base_url, mc, orig, 3, 1, 1, 0 };
	assert_int_equal(expect_resumed(d, s, &w), 3);
	/* The failed continuation carried the same answer so far. */
	json_t *r = h_mock_request(mb, 0);
	assert_int_equal(expect_continuation(r, &w, NULL), 3);
	json_decref(r);
	char needle[256];
	snprintf(needle, sizeof(needle), "attempt 2 on %s failed (upstream_http: HTTP 503", mb->base_url);
	h_daemon_expect_log(d, needle, 1000);
	json_decref(orig);
	h_daemon_stop_ok(d);
}

/* 5. DeepSeek: the continuation is a prefix completion (the assistant's
 * message with "prefix": true) on the beta API, {base_url} with /v1 swapped
 * for /beta, carrying the reasoning so far as reasoning_content. A replica
 * dies inside the reasoning, then one dies in the answer after it; both
 * times the reasoning and the answer come out whole. */
static void test_deepseek_reasoning(void **state)
{
	(void)state;
	enum { R = 4 };
	static const struct {
		int reasoning, tokens; /* what the dying replica sends */
	} cases[] = { { 2, 0 }, { R, 3 } };
	struct h_client *c;
	struct h_daemon *d = start_pair(NULL, "deepseek", ma->base_url, mb->base_url, &c);
	for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		h_mock_reset(ma);
		h_mock_reset(mb);
		h_mock_script(ma, "{\"mode\":\"close\",\"reasoning_tokens\":%d,\"tokens\":%d,\"ttft_ms\":0,\"inter_ms\":0}",
			      cases[i].reasoning, cases[i].tokens);
		script_full(mb, "deepseek", R);
		char rid[32];
		snprintf(rid, sizeof(rid), "deepseek-%zu", i);
		struct h_stream *s = submit(c, rid);
		h_stream_wait_terminal(s, 20000);
		json_t *first = h_mock_request(ma, 0);
		assert_string_equal(h_jstr(first, "path"), "/v1/chat/completions");
		struct want w = { "deepseek", "/beta/chat/completions", R, ma->base_url, mb, json_object_get(first, "body"),
				  2, 1, 1, 0 };
		assert_int_equal(expect_resumed(d, s, &w), cases[i].reasoning + cases[i].tokens);
		assert_int_equal(h_mock_stat(mb, "continuations"), 1);
		json_decref(first);
		h_stream_close(s);
	}
	h_daemon_stop_ok(d);
}

/* 6. llama.cpp and Ollama continue a trailing assistant message as it is:
 * no vLLM flags, no prefix, the usual path. */
static void test_trailing_dialects(void **state)
{
	(void)state;
	static const char *const providers[] = { "llamacpp", "ollama" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(providers); i++) {
		struct h_client *c;
		struct h_daemon *d = start_pair(NULL, providers[i], ma->base_url, mb->base_url, &c);
		h_mock_reset(ma);
		h_mock_reset(mb);
		h_mock_script(ma, "{\"mode\":\"close\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
		script_full(mb, "trailing", 0);
		struct h_stream *s = submit(c, providers[i]);
		h_stream_wait_terminal(s, 20000);
		json_t *orig = h_mock_last_body(ma);
		struct want w = { "trailing", "/v1/chat/completions", 0, ma->base_url, mb, orig, 2, 1, 1, 0 };
		assert_int_equal(expect_resumed(d, s, &w), 3);
		assert_int_equal(h_mock_stat(mb, "continuations"), 1);
		json_decref(orig);
		h_daemon_stop_ok(d);
	}
}

H_MAIN("integ_failover", &bed, H_TEST(test_vllm_close_after_k), H_TEST(test_vllm_reset_after_k),
       H_TEST(test_vllm_idle_stall_after_k), H_TEST(test_vllm_replica_killed), H_TEST(test_no_failover),
       H_TEST(test_second_failover), H_TEST(test_continuation_retried), H_TEST(test_deepseek_reasoning),
       H_TEST(test_trailing_dialects))
