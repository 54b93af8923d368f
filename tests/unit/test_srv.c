/* Unit tests for srv: which $SRV subjects an instance answers, and that each
 * body carries the fields the io.nats.micro.v1 schemas require, with their
 * types (ADR-32). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "metrics.h"
#include "srv.h"

static void test_match(void **state)
{
	static const struct {
		const char *subject;
		enum srv_verb verb;
	} cases[] = {
		{ "$SRV.PING", SRV_PING },
		{ "$SRV.INFO", SRV_INFO },
		{ "$SRV.STATS", SRV_STATS },
		{ "$SRV.PING.sundynix-dispatcher", SRV_PING },
		{ "$SRV.STATS.sundynix-dispatcher", SRV_STATS },
		{ "$SRV.INFO.sundynix-dispatcher.d-1", SRV_INFO },
		{ "$SRV.INFO.sundynix-dispatcher.d-2", SRV_NONE },
		{ "$SRV.INFO.sundynix-dispatcher.d-1.x", SRV_NONE },
		{ "$SRV.PING.other-service", SRV_NONE },
		{ "$SRV.PING.sundynix-dispatcherX", SRV_NONE },
		{ "$SRV.PINGS", SRV_NONE },
		{ "$SRV.SCHEMA", SRV_NONE },
		{ "sundynix.chat.submit", SRV_NONE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(srv_match(cases[i].subject, "d-1"), cases[i].verb);
}

static const struct srv_identity id = {
	.id = "d-1",
	.version = "0.1.0",
	.started = "2026-11-26T12:00:00.123Z",
	.subject_prefix = "acme",
	.queue_group = "qg",
	.submit_subject = "acme.chat.submit",
	.probe_subject = "acme.dispatcher.probe",
};

static json_t *encode(enum srv_verb v, const struct metrics *m, const struct srv_figures *f)
{
	struct buf b;
	json_error_t err;

	buf_init(&b);
	srv_encode(&b, v, &id, m, f);
	json_t *j = json_loads(b.data, 0, &err);
	if (!j)
		fail_msg("not JSON (%s): %s", err.text, b.data);
	buf_free(&b);
	return j;
}

static void check_head(json_t *j, const char *type)
{
	assert_string_equal(json_string_value(json_object_get(j, "type")), type);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "sundynix-dispatcher");
	assert_string_equal(json_string_value(json_object_get(j, "id")), "d-1");
	assert_string_equal(json_string_value(json_object_get(j, "version")), "0.1.0");
	json_t *md = json_object_get(j, "metadata");
	assert_true(json_is_object(md));
	const char *k;
	json_t *v;
	json_object_foreach(md, k, v)
		assert_true(json_is_string(v)); /* metadata values are strings */
	assert_string_equal(json_string_value(json_object_get(md, "subject_prefix")), "acme");
}

static void test_ping_info(void **state)
{
	(void)state;
	json_t *p = encode(SRV_PING, NULL, NULL);
	check_head(p, "io.nats.micro.v1.ping_response");
	json_decref(p);

	json_t *i = encode(SRV_INFO, NULL, NULL);
	check_head(i, "io.nats.micro.v1.info_response");
	assert_true(json_is_string(json_object_get(i, "description")));
	json_t *eps = json_object_get(i, "endpoints");
	assert_int_equal(json_array_size(eps), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(eps, 0), "name")), "submit");
	assert_string_equal(json_string_value(json_object_get(json_array_get(eps, 0), "subject")), "acme.chat.submit");
	assert_string_equal(json_string_value(json_object_get(json_array_get(eps, 0), "queue_group")), "qg");
	assert_string_equal(json_string_value(json_object_get(json_array_get(eps, 1), "name")), "probe");
	assert_string_equal(json_string_value(json_object_get(json_array_get(eps, 1), "subject")),
			    "acme.dispatcher.probe");
	json_decref(i);
}

static void test_stats(void **state)
{
	struct metrics m;
	struct metrics_req q = { 0 };

	(void)state;
	metrics_init(&m);
	metrics_request_accepted(&m, &q, NULL);
	metrics_request_refused(&m, CONTRACT_BUSY, "too many requests in flight");
	metrics_probe(&m, 2000, NULL);
	m.submit.processing_ns = 3000;
	const struct srv_figures f = { "serving", 3, "qwen", "vllm", true, 42 };
	json_t *s = encode(SRV_STATS, &m, &f);
	check_head(s, "io.nats.micro.v1.stats_response");
	assert_string_equal(json_string_value(json_object_get(s, "started")), "2026-11-26T12:00:00.123Z");
	json_t *eps = json_object_get(s, "endpoints");
	assert_int_equal(json_array_size(eps), 2);
	static const char *const required[] = { "name", "subject", "num_requests", "num_errors", "last_error",
						"processing_time", "average_processing_time" };
	for (size_t e = 0; e < 2; e++) {
		json_t *ep = json_array_get(eps, e);
		for (size_t k = 0; k < UTIL_ARRAY_LEN(required); k++)
			if (!json_object_get(ep, required[k]))
				fail_msg("endpoint %zu lacks %s", e, required[k]);
		assert_true(json_is_object(json_object_get(ep, "data")));
	}
	json_t *sub = json_array_get(eps, 0);
	assert_int_equal(json_integer_value(json_object_get(sub, "num_requests")), 2);
	assert_int_equal(json_integer_value(json_object_get(sub, "num_errors")), 1);
	assert_int_equal(json_integer_value(json_object_get(sub, "processing_time")), 3000);
	assert_int_equal(json_integer_value(json_object_get(sub, "average_processing_time")), 1500);
	assert_string_equal(json_string_value(json_object_get(sub, "last_error")), "busy: too many requests in flight");
	json_t *data = json_object_get(sub, "data");
	assert_int_equal(json_integer_value(json_object_get(data, "in_flight")), 3);
	assert_string_equal(json_string_value(json_object_get(data, "model")), "qwen");
	assert_int_equal(json_integer_value(json_object_get(data, "revision")), 42);
	assert_string_equal(json_string_value(json_object_get(data, "state")), "serving");
	json_t *probe = json_array_get(eps, 1);
	assert_int_equal(json_integer_value(json_object_get(probe, "num_requests")), 1);
	assert_int_equal(json_integer_value(json_object_get(probe, "processing_time")), 2000);
	json_decref(s);

	/* No revision: null, still valid JSON. */
	const struct srv_figures g = { "starting", 0, "", "", false, 0 };
	s = encode(SRV_STATS, &m, &g);
	assert_true(json_is_null(json_object_get(json_object_get(json_array_get(json_object_get(s, "endpoints"), 0),
								 "data"),
					       "revision")));
	json_decref(s);
	metrics_free(&m);
}

static void test_rfc3339(void **state)
{
	char out[40];

	(void)state;
	srv_rfc3339(1764590400.25, out, sizeof(out));
	assert_string_equal(out, "2025-12-01T12:00:00.250Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_ping_info),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_rfc3339),
	};
	return cmocka_run_group_tests_name("unit_srv", tests, NULL, NULL);
}
