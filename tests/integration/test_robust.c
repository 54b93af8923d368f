/* Integration: bad input from the wire (issue 13). A ModelConfig naming a
 * scheme other than http or https, or a revision past 2^53-1, is refused
 * whole and the model in force keeps serving; a probe of such a config is
 * answered with the reason. And every malformed submit or probe that
 * reaches the daemon with a reply subject gets an answer. */
#include <pthread.h>
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
static struct h_mock *mock;
static const struct h_bed bed = { .nats = &nats, .mocks = { { &mock, "mock-robust" } } };

static void test_bad_configs_refused(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_on_mock(nats, NULL, &c, mock,
						     "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}", "m-good", 3);

	static const char *const urls[] = { "ftp://127.0.0.1/v1", "file:///etc/passwd", "gopher://127.0.0.1:70/" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(urls); i++) {
		char body[256];
		snprintf(body, sizeof(body), "{\"model\":\"m-bad\",\"base_url\":\"%s\",\"revision\":4}", urls[i]);
		h_publish_config(c, body);
		h_daemon_expect_log_count(d, "ignored: base_url: must be an http:// or https:// URL", i + 1, 5000);
		/* ... and as one of several endpoints. */
		snprintf(body, sizeof(body),
			 "{\"model\":\"m-bad\",\"endpoints\":[{\"base_url\":\"%s\"},{\"base_url\":\"%s\"}],\"revision\":4}",
			 mock->base_url, urls[i]);
		h_publish_config(c, body);
		h_daemon_expect_log_count(d, "ignored: endpoints[1].base_url: must be an http:// or https:// URL", i + 1,
					  5000);
		/* A probe of it says why at once. */
		json_t *ans = h_probe(c, body);
		assert_true(json_is_false(json_object_get(ans, "ok")));
		H_ASSERT_CONTAINS(h_jstr(ans, "error"), "must be an http:// or https:// URL");
		json_decref(ans);
	}
	/* A revision no JSON client keeps exact would freeze the order. */
	char *big = xasprintf("{\"model\":\"m-big\",\"base_url\":\"%s\",\"revision\":9223372036854775807}", mock->base_url);
	h_publish_config(c, big);
	free(big);
	h_daemon_expect_log(d, "ignored: revision: must be within +-(2^53-1)", 5000);
	/* The model in force never changed, and a later revision still applies. */
	h_chat(c, "r-still-good", "m-good");
	h_apply_config(c, d, "m-next", "{\"model\":\"m-next\",\"base_url\":\"%s\",\"revision\":5}", mock->base_url);
	h_chat(c, "r-next", "m-next");
	h_daemon_stop_ok(d);
}

/* ---- every malformed message with a reply subject is answered ---- */

#define FLOOD_N 2000

struct flood {
	pthread_mutex_t lock;
	unsigned char got[FLOOD_N];
};

static void flood_on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
	struct flood *f = ud;
	const char *subj = natsMsg_GetSubject(m);
	long i = strtol(strrchr(subj, '.') + 1, NULL, 10);

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&f->lock);
	if (i >= 0 && i < FLOOD_N && f->got[i] < 255)
		f->got[i]++;
	pthread_mutex_unlock(&f->lock);
	natsMsg_Destroy(m);
}

static int flood_missing(struct flood *f, int *first)
{
	int n = 0;

	*first = -1;
	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < FLOOD_N; i++)
		if (!f->got[i]) {
			if (*first < 0)
				*first = i;
			n++;
		}
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* A deterministic mutation of a valid body: a byte changed, the body cut,
 * bytes swapped for noise, or nothing. */
static size_t flood_mutate(char *b, size_t len, unsigned *seed)
{
	switch (rand_r(seed) % 5) {
	case 0: b[rand_r(seed) % len] = (char)(rand_r(seed) % 256); break;
	case 1: len = (size_t)rand_r(seed) % len; break;
	case 2:
		for (int k = 0; k < 4; k++)
			b[rand_r(seed) % len] = (char)(rand_r(seed) % 256);
		break;
	case 3:
		len = (size_t)rand_r(seed) % 48;
		for (size_t k = 0; k < len; k++)
			b[k] = (char)(rand_r(seed) % 256);
		break;
	default: break;
	}
	return len;
}

/* Valid submits and probes, and a few that are wrong in one field. */
static size_t flood_seed(char *b, size_t n, int k, int i)
{
	switch (k) {
	case 0:
		return (size_t)snprintf(b, n, "{\"request_id\":\"f%d\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
					  "\"params\":{\"max_tokens\":4}}", i);
	case 1:
		return (size_t)snprintf(b, n, "{\"request_id\":\"f%d\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", i);
	case 2:
		return (size_t)snprintf(b, n, "{\"request_id\":\"f%d\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
					  "\"resume\":{\"next_seq\":-%d}}", i, i);
	case 3:
		return (size_t)snprintf(b, n, "{\"model\":\"m\",\"base_url\":\"http://127.0.0.1:1/v1\",\"revision\":%d}", i);
	default:
		return (size_t)snprintf(b, n, "{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"ftp://x/%d\",\"weight\":0}]}", i);
	}
}

static void test_every_request_answered(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = h_daemon_start_client(nats, "{\"limits\":{\"max_request_bytes\":4096},"
						     "\"pool\":{\"probe_timeout_ms\":2000}}", &c);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":2,\"ttft_ms\":0,\"inter_ms\":0}");
	h_use_mock(c, d, mock, "m-flood", "", -1);
	struct flood *f = xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	natsSubscription *sub = NULL;
	char inbox[64], subj[128], reply[128], body[8192];
	snprintf(inbox, sizeof(inbox), "flood.%s.>", c->prefix);
	assert_int_equal(natsConnection_Subscribe(&sub, c->nc, inbox, flood_on_reply, f), NATS_OK);
	assert_int_equal(natsSubscription_SetPendingLimits(sub, -1, -1), NATS_OK);
	h_flush(c);

	unsigned seed = 13;
	for (int i = 0; i < FLOOD_N; i++) {
		int k = i % 5;
		size_t len = flood_seed(body, sizeof(body), k, i);
		len = flood_mutate(body, len, &seed);
		if (i % 97 == 0) { /* now and then one over max_request_bytes */
			memset(body, 'x', 6000);
			len = 6000;
		}
		snprintf(subj, sizeof(subj), "%s.%s", c->prefix, k >= 3 ? "dispatcher.probe" : "chat.submit");
		snprintf(reply, sizeof(reply), "flood.%s.%d", c->prefix, i);
		assert_int_equal(natsConnection_PublishRequest(c->nc, subj, reply, body, (int)len), NATS_OK);
		if (i % 200 == 199)
			h_flush(c);
	}
	h_flush(c);
	int first, missing = FLOOD_N;
	for (int t = 0; t < 150 && (missing = flood_missing(f, &first)); t++)
		h_sleep_ms(100);
	if (missing)
		fail_msg("%d of %d messages with a reply subject got no answer (the first: #%d)", missing, FLOOD_N,
			 first);
	h_log("%d submits and probes, malformed most of them: every one answered", FLOOD_N);
	/* Nothing broke: the daemon still serves. */
	h_chat(c, "r-after-flood", "m-flood");
	h__sub_stop(sub);
	pthread_mutex_destroy(&f->lock);
	free(f);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_robust", &bed, H_TEST(test_bad_configs_refused), H_TEST(test_every_request_answered))
