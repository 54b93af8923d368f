/* Unit tests for pool: balancing, ejection, half-open trials, Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "modelcfg.h"
#include "pool.h"

static struct modelcfg *two(int wa, int wb)
{
	char body[256];
	char err[128];

	snprintf(body, sizeof(body),
		 "{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a/v1\",\"weight\":%d},"
		 "{\"base_url\":\"http://b/v1\",\"weight\":%d}]}",
		 wa, wb);
	struct modelcfg *c = modelcfg_parse(body, strlen(body), err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(c->nendpoints, 2);
	return c;
}

static void test_weights_without_load(void **state)
{
	struct modelcfg *c = two(3, 1);
	struct pool *p = pool_new(3);
	struct pool_ep *ep;
	int n[2] = { 0, 0 };

	(void)state;
	for (int i = 0; i < 400; i++) {
		int k = pool_pick(p, c, 0, 1000, &ep);
		assert_true(k == 0 || k == 1);
		n[k]++;
		pool_release(p, ep, POOL_SUCCESS, 0, 1000);
	}
	assert_int_equal(n[0], 300);
	assert_int_equal(n[1], 100);
	pool_free(p);
	modelcfg_unref(c);
}

static void test_least_outstanding(void **state)
{
	struct modelcfg *c = two(1, 1);
	struct pool *p = pool_new(3);
	struct pool_ep *held[10], *ep;

	(void)state;
	/* Endpoint a is busy with 10 requests: new ones should mostly go to b. */
	for (int i = 0; i < 10; i++) {
		int k;
		do {
			k = pool_pick(p, c, 2 /* exclude b */, 0, &held[i]);
		} while (0);
		assert_int_equal(k, 0);
	}
	int nb = 0;
	for (int i = 0; i < 20; i++) {
		int k = pool_pick(p, c, 0, 0, &ep);
		nb += k == 1;
		pool_release(p, ep, POOL_SUCCESS, 0, 0);
	}
	assert_true(nb >= 18);
	for (int i = 0; i < 10; i++)
		pool_release(p, held[i], POOL_SUCCESS, 0, 0);
	pool_free(p);
	modelcfg_unref(c);
}

static void test_eject_and_recover(void **state)
{
	struct modelcfg *c = two(1, 1);
	struct pool *p = pool_new(3);
	struct pool_ep *ep, *a;
	uint64_t now = 10000;

	(void)state;
	/* Three failures on a eject it for 1 s. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pool_pick(p, c, 2, now, &ep), 0);
		pool_release(p, ep, POOL_FAILURE, 0, now);
	}
	a = pool_find(p, "http://a/v1");
	assert_non_null(a);
	assert_int_equal(a->ejected_until, now + 1000);
	/* While ejected, every pick goes to b. */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(pool_pick(p, c, 0, now + 500, &ep), 1);
		pool_release(p, ep, POOL_SUCCESS, 0, now + 500);
	}
	/* Cooled down: a gets exactly one trial; it fails: 2 s now. */
	int trials = 0;
	struct pool_ep *trial = NULL;
	for (int i = 0; i < 4; i++) {
		int k = pool_pick(p, c, 0, now + 1000, &ep);
		if (k == 0) {
			trials++;
			trial = ep;
		} else {
			pool_release(p, ep, POOL_SUCCESS, 0, now + 1000);
		}
	}
	assert_int_equal(trials, 1);
	pool_release(p, trial, POOL_FAILURE, 0, now + 1000);
	assert_int_equal(a->ejected_until, now + 1000 + 2000);
	/* Next trial succeeds: back in rotation, cooldown reset. */
	do {
		int k = pool_pick(p, c, 0, now + 3000, &ep);
		if (k == 0)
			break;
		pool_release(p, ep, POOL_SUCCESS, 0, now + 3000);
	} while (1);
	pool_release(p, ep, POOL_SUCCESS, 0, now + 3000);
	assert_int_equal(a->ejected_until, 0);
	assert_int_equal(a->ejections, 0);
	pool_free(p);
	modelcfg_unref(c);
}

static void test_cooldown_caps_at_60s(void **state)
{
	struct modelcfg *c = two(1, 1);
	struct pool *p = pool_new(1);
	struct pool_ep *ep;
	uint64_t now = 0;

	(void)state;
	for (int i = 0; i < 10; i++) {
		/* Force a trial on a (b excluded) once a has cooled down. */
		struct pool_ep *a = pool_find(p, "http://a/v1");
		if (a && a->ejected_until)
			now = a->ejected_until;
		assert_int_equal(pool_pick(p, c, 2, now, &ep), 0);
		pool_release(p, ep, POOL_FAILURE, 0, now);
	}
	struct pool_ep *a = pool_find(p, "http://a/v1");
	assert_int_equal(a->ejected_until - now, 60000);
	pool_free(p);
	modelcfg_unref(c);
}

static void test_all_ejected_uses_least_recent(void **state)
{
	struct modelcfg *c = two(1, 1);
	struct pool *p = pool_new(1);
	struct pool_ep *ep;

	(void)state;
	assert_int_equal(pool_pick(p, c, 2, 100, &ep), 0);
	pool_release(p, ep, POOL_FAILURE, 0, 100); /* a ejected at 100 */
	assert_int_equal(pool_pick(p, c, 1, 200, &ep), 1);
	pool_release(p, ep, POOL_FAILURE, 0, 200); /* b ejected at 200 */
	/* Both out: a was ejected longer ago, so a serves. */
	assert_int_equal(pool_pick(p, c, 0, 300, &ep), 0);
	pool_release(p, ep, POOL_SUCCESS, 0, 300);
	pool_free(p);
	modelcfg_unref(c);
}

static void test_retry_after(void **state)
{
	struct modelcfg *c = two(1, 1);
	struct pool *p = pool_new(3);
	struct pool_ep *ep;

	(void)state;
	assert_int_equal(pool_pick(p, c, 2, 0, &ep), 0);
	/* One 429 with Retry-After: 5 is below eject_after but still honoured. */
	pool_release(p, ep, POOL_FAILURE, 5000, 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(pool_pick(p, c, 0, 4000, &ep), 1);
		pool_release(p, ep, POOL_SUCCESS, 0, 4000);
	}
	pool_free(p);
	modelcfg_unref(c);
}

static void test_tried_is_avoided(void **state)
{
	struct modelcfg *c = two(100, 1);
	struct pool *p = pool_new(3);
	struct pool_ep *ep;

	(void)state;
	/* A retry after a failed a goes to b even though a weighs 100x. */
	assert_int_equal(pool_pick(p, c, 1, 0, &ep), 1);
	pool_release(p, ep, POOL_SUCCESS, 0, 0);
	pool_free(p);
	modelcfg_unref(c);
}

static void test_prune_keeps_held(void **state)
{
	struct modelcfg *c = two(1, 1);
	struct pool *p = pool_new(3);
	struct pool_ep *ep;
	char err[64];
	struct modelcfg *other = modelcfg_parse("{\"model\":\"m\",\"base_url\":\"http://c/v1\"}", 38, err, sizeof(err));

	(void)state;
	assert_non_null(other);
	assert_int_equal(pool_pick(p, c, 2, 0, &ep), 0); /* a held */
	pool_pick(p, c, 1, 0, &ep);                      /* b held */
	pool_release(p, ep, POOL_SUCCESS, 0, 0);         /* b released */
	pool_prune(p, other);
	assert_non_null(pool_find(p, "http://a/v1"));
	assert_null(pool_find(p, "http://b/v1"));
	pool_release(p, pool_find(p, "http://a/v1"), POOL_SUCCESS, 0, 0);
	pool_free(p);
	modelcfg_unref(c);
	modelcfg_unref(other);
}

static void test_caps_skip_full_endpoints(void **state)
{
	char err[128];
	const char *body = "{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a/v1\",\"max_inflight\":1},"
			   "{\"base_url\":\"http://b/v1\",\"max_inflight\":2}]}";
	struct modelcfg *c = modelcfg_parse(body, strlen(body), err, sizeof(err));
	struct pool *p = pool_new(3);
	struct pool_ep *ep[4];
	int got[2] = { 0, 0 };

	(void)state;
	assert_non_null(c);
	for (int i = 0; i < 3; i++) {
		int k = pool_pick(p, c, 0, 0, &ep[i]);
		assert_true(k == 0 || k == 1);
		got[k]++;
	}
	assert_int_equal(got[0], 1);
	assert_int_equal(got[1], 2);
	/* Every endpoint at its cap: none, also when the tried ones are reset. */
	assert_int_equal(pool_pick(p, c, 3, 0, &ep[3]), -1);
	assert_int_equal(pool_pick(p, c, 0, 0, &ep[3]), -1);
	pool_release(p, ep[0], POOL_SUCCESS, 0, 0);
	assert_int_equal(pool_pick(p, c, 0, 0, &ep[3]), 0);
	pool_release(p, ep[3], POOL_SUCCESS, 0, 0);
	for (int i = 1; i < 3; i++)
		pool_release(p, ep[i], POOL_SUCCESS, 0, 0);
	pool_free(p);
	modelcfg_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_weights_without_load),
		cmocka_unit_test(test_least_outstanding),
		cmocka_unit_test(test_eject_and_recover),
		cmocka_unit_test(test_cooldown_caps_at_60s),
		cmocka_unit_test(test_all_ejected_uses_least_recent),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_tried_is_avoided),
		cmocka_unit_test(test_prune_keeps_held),
		cmocka_unit_test(test_caps_skip_full_endpoints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
