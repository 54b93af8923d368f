/* Integration: the stub (no model configured), its stream, and cancel on it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

static struct h_nats *nats;
static const struct h_bed bed = { .nats = &nats };

static void submit_with_profile(struct h_client *c, const char *rid, const char *profile, const char *text)
{
	json_t *req = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s}],s:{s:s,s:[s]}}", "request_id", rid, "session_id", "s-1",
				"user_id", "u-1", "messages", "role", "user", "content", text, "memory", "profile",
				profile, "facts", "住在杭州");
	json_t *ack = h_submit(c, req, 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	assert_string_equal(h_jstr(ack, "request_id"), rid);
	json_decref(ack);
	json_decref(req);
}

static void test_stub_stream(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, NULL, &c);

	struct h_stream *s = h_stream_open(c, "r-stub-1");
	submit_with_profile(c, "r-stub-1", "姓名: 老王; 爱好: 钓鱼", "今天天气怎么样");
	json_t *t = h_stream_done(s, 20000);
	assert_string_equal(h_jstr(t, "model"), "stub");
	char *text = h_stream_text(s, "token");
	h_log("stub reply: %s", text);
	H_ASSERT_CONTAINS(text, "老王");
	H_ASSERT_CONTAINS(text, "今天天气怎么样");
	/* One UTF-8 character per token. */
	json_t *ev = h_stream_events(s);
	for (size_t i = 0; i + 1 < json_array_size(ev); i++) {
		const char *delta = h_jstr(json_array_get(ev, i), "delta");
		size_t len = strlen(delta);
		assert_true(len >= 1);
		assert_int_equal(util_utf8_seqlen(delta, len), len);
	}
	json_decref(ev);
	free(text);

	struct h_stream *s2 = h_stream_open(c, "r-stub-2");
	submit_with_profile(c, "r-stub-2", "name: Alice; hobby: chess", "hello there");
	h_stream_done(s2, 20000);
	text = h_stream_text(s2, "token");
	H_ASSERT_CONTAINS(text, "Alice");
	H_ASSERT_CONTAINS(text, "hello there");
	free(text);

	h_daemon_stop_ok(d);
}

static void test_stub_cancel(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, "{\"stub\":{\"ttft_ms\":20,\"inter_token_ms\":20}}", &c);
	struct h_stream *s = h_stream_submit(c, "r-stub-cancel", "please say something long enough to be cancelled");
	assert_true(h_stream_wait_count(s, 2, 5000));
	h_cancel(c, "r-stub-cancel");
	h_stream_expect_error(s, "cancelled", 3000);
	/* The daemon still serves. */
	h_stream_done(h_stream_submit(c, "r-stub-after", "x"), 20000);
	/* Unknown ids are ignored. */
	h_cancel(c, "r-no-such-request");
	h_daemon_stop_ok(d);
}

H_MAIN("integ_stub", &bed, H_TEST(test_stub_stream), H_TEST(test_stub_cancel))
