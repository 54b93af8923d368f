/* Integration: failover across dispatchers (docs/pool.md, "Failover",
 * "Across dispatchers"; docs/protocol.md, gateway checklist item 6). Three
 * dispatchers share one nats-server, one prefix and the submit queue group;
 * sundynixctl chat is the gateway. The dispatcher that owns a slow stream is
 * killed (SIGKILL) in the middle of the answer: the stream falls silent, its
 * owner answers no replay, and ctl resubmits with "resume" so another
 * dispatcher continues the answer. A test subscription on the stream subject
 * sees every event of both dispatchers and checks they are one stream. Where
 * the others cannot continue (no model, or a provider that cannot), the
 * resume is refused and ctl reports dispatcher_lost. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define MODEL "m-fleet"
#define N 30 /* tokens of the scripted answer, one per 100 ms */
#define FLEET 3
/* The dispatchers' keepalive and ctl's --keepalive-ms: ctl takes a stream
 * silent for twice that as a sign its dispatcher may be gone. */
#define KEEPALIVE_MS "500"
#define FLEET_CONFIG "{\"stream\":{\"keepalive_ms\":" KEEPALIVE_MS "},\"stub\":{\"inter_token_ms\":100}}"

static struct h_nats *nats;
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-fleet" } } };

struct fleet {
	const char *prefix;
	struct h_client *c;
	struct h_daemon *d[FLEET];
};

/* Three dispatchers on one prefix; with provider set, each applies the
 * ModelConfig broadcast once (one message, every dispatcher hears it). */
static void fleet_start(struct fleet *f, const char *provider)
{
	f->prefix = h_prefix();
	for (int i = 0; i < FLEET; i++)
		f->d[i] = h_daemon_start(nats, f->prefix, FLEET_CONFIG);
	f->c = h_client_connect(nats, f->prefix);
	if (!provider)
		return;
	char *body = xasprintf("{\"provider\":\"%s\",\"model\":\"" MODEL "\",\"base_url\":\"%s\"}", provider,
			       mock->base_url);
	h_publish_config(f->c, body);
	free(body);
	for (int i = 0; i < FLEET; i++)
		h_daemon_expect_log(f->d[i], "model config applied: model=" MODEL " ", 5000);
}

/* The dispatcher that logged needle (an "accepted" line, say), waiting up
 * to 10 s; fails unless exactly one did. skip may be NULL. */
static int fleet_find(struct fleet *f, const char *needle, struct h_daemon *skip)
{
	unsigned long long end = util_now_ms() + 10000;
	for (;;) {
		int found = -1, n = 0;
		for (int i = 0; i < FLEET; i++)
			if (f->d[i] != skip && h_daemon_log_contains(f->d[i], needle)) {
				found = i;
				n++;
			}
		if (n > 1)
			fail_msg("%d dispatchers logged \"%s\"", n, needle);
		if (n == 1)
			return found;
		if (util_now_ms() > end) {
			for (int i = 0; i < FLEET; i++)
				h_daemon_dump_log(f->d[i]);
			fail_msg("no dispatcher logged \"%s\"", needle);
		}
		h_sleep_ms(20);
	}
}

/* Starts `sundynixctl chat` for rid with the test listening on its stream,
 * waits until min_events reached the test, and kills the owner of the
 * stream. Returns the owner's index; *s and *ctl get the stream and ctl. */
static int chat_and_kill_owner(struct fleet *f, const char *rid, size_t min_events, struct h_stream **s,
			       struct h_cmd **ctl)
{
	*s = h_stream_open(f->c, rid);
	*ctl = h_ctl_start(nats, f->prefix, "chat", "--keepalive-ms", KEEPALIVE_MS, "--request-id", rid, "--timeout",
			   "60", "hello", NULL);
	char needle[128];
	snprintf(needle, sizeof(needle), "[%s] accepted: ", rid);
	int owner = fleet_find(f, needle, NULL);
	if (!h_stream_wait_count(*s, min_events, 10000))
		fail_msg("%s: fewer than %zu events within 10 s", rid, min_events);
	h_daemon_signal(f->d[owner], SIGKILL);
	assert_int_equal(h_daemon_wait_exit(f->d[owner], 5000), 128 + SIGKILL);
	h_log("%s: killed dispatcher %d (%s) after %zu events", rid, owner, f->d[owner]->name, h_stream_count(*s));
	return owner;
}

static void fleet_stop(struct fleet *f, int killed)
{
	for (int i = 0; i < FLEET; i++)
		if (i != killed)
			h_daemon_stop_ok(f->d[i]);
}

/* 1. vLLM behind every dispatcher: another one continues the answer; ctl
 * prints it whole and exits 0, and the stream is one stream across both
 * dispatchers. */
static void test_resume_on_another_dispatcher(void **state)
{
	(void)state;
	struct fleet f;
	fleet_start(&f, "vllm");
	h_mock_script(mock, "{\"tokens\":%d,\"ttft_ms\":0,\"inter_ms\":100,\"continue\":\"vllm\"}", N);
	struct h_stream *s;
	struct h_cmd *ctl;
	int owner = chat_and_kill_owner(&f, "fleet-1", 5, &s, &ctl);

	h_cmd_wait(ctl, 30000);
	h_cmd_expect(ctl, 0);
	char *want = h_mock_tokens(N), *want_out = xasprintf("%s\n", want);
	assert_string_equal(ctl->out, want_out);
	H_ASSERT_CONTAINS(ctl->err, "resubmitting to continue the answer");
	H_ASSERT_CONTAINS(ctl->err, "[done: finish=stop model=" MODEL " ");
	H_ASSERT_NOT_CONTAINS(ctl->err, "warning");

	/* Every event of both dispatchers, in order: seq 0..n-1, one done. */
	json_t *t = h_stream_done(s, 5000);
	char *text = h_stream_text(s, "token");
	assert_string_equal(text, want);
	assert_int_equal(h_jint(t, "resumed"), 1);
	assert_int_equal(h_jint(t, "attempts"), 1);
	assert_string_equal(h_jstr(t, "endpoint"), mock->base_url);

	/* The continuation came from one of the others, which received it as
	 * a resume and sent the answer so far to the replica. */
	int heir = fleet_find(&f, "[fleet-1] accepted: ", f.d[owner]);
	h_daemon_expect_log(f.d[heir], "[fleet-1] request done", 1000);
	assert_false(h_daemon_log_contains(f.d[owner], "[fleet-1] request done"));
	assert_int_equal(h_mock_stat(mock, "requests"), 2);
	assert_int_equal(h_mock_stat(mock, "continuations"), 1);
	json_t *r = h_mock_request(mock, 1);
	json_t *msgs = h_jpath(r, "body.messages");
	json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
	assert_string_equal(h_jstr(last, "role"), "assistant");
	const char *so_far = h_jstr(last, "content");
	size_t j = 0;
	for (const char *p = so_far; (p = strchr(p, ' ')); p++)
		j++;
	char *want_so_far = h_mock_tokens((int)j);
	assert_string_equal(so_far, want_so_far);
	assert_in_range(j, 5, N - 1);
	assert_true(json_is_true(h_jpath(r, "body.continue_final_message")));
	/* The heir's first event is the token after what ctl had. */
	json_t *ev = h_stream_events(s);
	char next[32];
	snprintf(next, sizeof(next), "tok%zu ", j);
	assert_string_equal(h_jstr(json_array_get(ev, j), "delta"), next);
	json_decref(ev);
	h_log("resumed after %zu tokens on dispatcher %d", j, heir);
	json_decref(r);
	free(want_so_far);
	free(text);
	free(want);
	free(want_out);
	fleet_stop(&f, owner);
}

/* 2. Where the others cannot continue the resume is refused at once
 * (bad_request, also as the stream's terminal event at the next seq), and
 * ctl ends with dispatcher_lost: on the stub (no model anywhere), and with a
 * provider that cannot continue (openai). */
static void test_resume_refused(void **state)
{
	(void)state;
	static const struct {
		const char *provider, *why;
	} cases[] = {
		{ NULL, "resume: no model is configured here (the stub cannot continue an answer)" },
		{ "openai", "resume: the model's provider cannot continue a partial answer" },
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		struct fleet f;
		fleet_start(&f, cases[i].provider);
		h_mock_reset(mock);
		h_mock_script(mock, "{\"tokens\":%d,\"ttft_ms\":0,\"inter_ms\":100}", N);
		char rid[32];
		snprintf(rid, sizeof(rid), "refused-%zu", i);
		struct h_stream *s;
		struct h_cmd *ctl;
		int owner = chat_and_kill_owner(&f, rid, 5, &s, &ctl);

		h_cmd_wait(ctl, 30000);
		h_cmd_expect(ctl, 1);
		H_ASSERT_CONTAINS(ctl->err, "resubmitting to continue the answer");
		H_ASSERT_CONTAINS(ctl->err, cases[i].why);
		H_ASSERT_CONTAINS(ctl->err, "error: dispatcher_lost: ");
		json_t *t = h_stream_expect_error(s, "bad_request", 5000);
		H_ASSERT_CONTAINS(h_jstr(t, "error.message"), cases[i].why);
		char *text = h_stream_text(s, "token");
		/* ctl printed what the dead dispatcher sent, no more. */
		char *out = xasprintf("%s\n", text);
		assert_string_equal(ctl->out, out);
		h_log("%s: refused after %lld events: %s", rid, h_jint(t, "seq"), h_jstr(t, "error.message"));
		free(out);
		free(text);
		char needle[128];
		snprintf(needle, sizeof(needle), "[%s] rejected: bad_request: resume: ", rid);
		fleet_find(&f, needle, f.d[owner]);
		assert_int_equal(h_mock_stat(mock, "requests"), cases[i].provider ? 1 : 0);
		fleet_stop(&f, owner);
	}
}

H_MAIN("integ_failover_fleet", &bed, H_TEST(test_resume_on_another_dispatcher), H_TEST(test_resume_refused))
