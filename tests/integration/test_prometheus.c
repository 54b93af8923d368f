/* Integration: Debian's Prometheus server scrapes the real daemon. Known
 * chats (done, failed with a backend 500, refused as bad_request,
 * cancelled) go through the daemon first; then prometheus starts on a free
 * loopback port with its own data directory, scrapes every second and loads
 * config/prometheus-alerts.yml; its HTTP API must report
 * sundynix_requests_total by outcome exactly as sent, the target up, and the
 * four alert rules loaded and healthy. Skipped (said so) only when the
 * prometheus binary is not installed (scripts/install-deps.sh installs it). */
#include <curl/curl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define PROMETHEUS "/usr/bin/prometheus"
#define FAIL_500 "{\"mode\":\"status\",\"status\":500,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"boom\\\"}}\"}"

/* The instant query's result as {outcome: value}, or NULL on no answer. */
static json_t *query_by_outcome(int port)
{
	long status;
	char *body = h_http_get(port, "/api/v1/query?query=sundynix_requests_total", &status);
	json_t *j = status == 200 ? json_loads(body, 0, NULL) : NULL;
	free(body);
	if (!j)
		return NULL;
	json_t *out = json_object(), *r;
	size_t i;
	json_array_foreach(h_jpath(j, "data.result"), i, r) {
		const char *outcome = json_string_value(json_object_get(json_object_get(r, "metric"), "outcome"));
		const char *v = json_string_value(json_array_get(json_object_get(r, "value"), 1));
		if (outcome && v)
			json_object_set_new(out, outcome, json_integer(atoll(v)));
	}
	json_decref(j);
	return out;
}

static void test_prometheus_counts_by_outcome(void **state)
{
	(void)state;
	if (access(PROMETHEUS, X_OK) != 0) {
		h_log("SKIP: %s is not installed (Debian package prometheus; scripts/install-deps.sh installs it)",
		      PROMETHEUS);
		skip();
	}
	struct h_nats *nats = h_nats_start(NULL);
	struct h_mock *mock = h_mock_start("mock-prom", NULL);
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	struct h_client *c = h_client_connect(nats, prefix);
	int mport = h_daemon_metrics_port(d);
	h_mock_script(mock, "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}");
	h_use_mock(c, d, mock, "m-prom", "", 1);

	/* What is sent: 4 done, 3 upstream_http, 2 bad_request, 1 cancelled. */
	h_chat_expect_n(c, "prom-ok", 4, "hello", mock, NULL, "done");
	h_chat_expect_n(c, "prom-500", 3, "hello", mock, FAIL_500, "upstream_http");
	for (int i = 0; i < 2; i++) {
		char body[128];
		snprintf(body, sizeof(body), "{\"request_id\":\"prom-bad-%d\",\"messages\":[]}", i);
		json_decref(h_submit_raw(c, body, strlen(body), 5000));
	}
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":500,\"ttft_ms\":0,\"inter_ms\":20}");
	struct h_stream *s = h_stream_open(c, "prom-cancel");
	h_submit_simple(c, "prom-cancel", "long");
	assert_true(h_stream_wait_count(s, 2, 5000));
	h_cancel(c, "prom-cancel");
	h_stream_expect_error(s, "cancelled", 5000);

	/* Prometheus on loopback, its own data directory, scraping every second. */
	int pport = h_free_port();
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	char *conf = xasprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
			       "rule_files:\n  - %s/config/prometheus-alerts.yml\n"
			       "scrape_configs:\n  - job_name: sundynix-dispatcher\n    static_configs:\n"
			       "      - targets: ['127.0.0.1:%d']\n",
			       cwd, mport);
	char *conf_path = xasprintf("%s/prometheus.yml", h_tmpdir());
	h_write_file(conf_path, conf, strlen(conf));
	char *a_conf = xasprintf("--config.file=%s", conf_path);
	char *a_data = xasprintf("--storage.tsdb.path=%s/prometheus-data", h_tmpdir());
	char *a_listen = xasprintf("--web.listen-address=127.0.0.1:%d", pport);
	char *const argv[] = { PROMETHEUS, a_conf, a_data, a_listen, "--log.level=warn", NULL };
	unsigned long long t0 = util_now_ms();
	struct h_proc *prom = h_spawn("prometheus", argv);
	long status = 0;
	for (int waited = 0; waited < 30000 && status != 200; waited += 100) {
		h_sleep_ms(100);
		free(h_http_get(pport, "/-/ready", &status));
		if (!h_proc_alive(prom))
			fail_msg("prometheus exited; see %s", prom->log_path);
	}
	if (status != 200)
		fail_msg("prometheus not ready within 30 s; see %s", prom->log_path);
	h_log("prometheus ready after %llu ms", util_now_ms() - t0);

	json_t *got = NULL;
	for (int waited = 0; waited < 30000; waited += 250) {
		json_decref(got);
		got = query_by_outcome(pport);
		if (got && json_object_size(got) > 0)
			break;
		h_sleep_ms(250);
	}
	assert_non_null(got);
	char *dump = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
	h_log("sundynix_requests_total as Prometheus has it: %s (after %llu ms)", dump, util_now_ms() - t0);
	static const struct {
		const char *outcome;
		long long n;
	} want[] = {
		{ "done", 4 }, { "upstream_http", 3 }, { "bad_request", 2 }, { "cancelled", 1 }, { "busy", 0 },
		{ "upstream_unavailable", 0 }, { "upstream_timeout", 0 }, { "internal", 0 },
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(want); i++) {
		json_t *v = json_object_get(got, want[i].outcome);
		if (!v || json_integer_value(v) != want[i].n)
			fail_msg("outcome %s: Prometheus has %s, expected %lld", want[i].outcome, dump, want[i].n);
	}
	free(dump);
	json_decref(got);

	char *up = h_http_get(pport, "/api/v1/query?query=up", &status);
	assert_int_equal(status, 200);
	H_ASSERT_CONTAINS(up, "\"job\":\"sundynix-dispatcher\"");
	H_ASSERT_CONTAINS(up, "\"1\"]");
	free(up);

	/* The alert rules of docs/observability.md load and evaluate. */
	json_t *rules = NULL;
	size_t healthy = 0;
	for (int waited = 0; waited < 15000 && healthy < 4; waited += 250) {
		char *body = h_http_get(pport, "/api/v1/rules", &status);
		json_decref(rules);
		rules = json_loads(body, 0, NULL);
		free(body);
		healthy = 0;
		json_t *g, *r;
		size_t gi, ri;
		json_array_foreach(h_jpath(rules, "data.groups"), gi, g)
			json_array_foreach(json_object_get(g, "rules"), ri, r)
				healthy += !strcmp(h_jstr(r, "health"), "ok");
		if (healthy < 4)
			h_sleep_ms(250);
	}
	if (healthy != 4) {
		char *rd = json_dumps(rules, JSON_COMPACT);
		fail_msg("expected 4 healthy rules: %s", rd);
	}
	json_decref(rules);

	assert_int_equal(h_proc_stop(prom, 15000), 0);
	h_log("prometheus part took %llu ms", util_now_ms() - t0);
	h_daemon_stop_ok(d);
	h_mock_stop(mock);
	free(conf);
	free(conf_path);
	free(a_conf);
	free(a_data);
	free(a_listen);
}

static void test_promtool_rules(void **state)
{
	(void)state;
	if (access("/usr/bin/promtool", X_OK) != 0) {
		h_log("SKIP: promtool is not installed (Debian package prometheus)");
		skip();
	}
	h_sh("promtool-rules", "promtool check rules config/prometheus-alerts.yml");
}

int main(void)
{
	h_init();
	setenv("SUNDYNIX_METRICS_LISTEN", "127.0.0.1:0", 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_promtool_rules, h_test_setup, h_test_teardown),
		cmocka_unit_test_setup_teardown(test_prometheus_counts_by_outcome, h_test_setup, h_test_teardown),
	};
	h_exit(cmocka_run_group_tests_name("integ_prometheus", tests, NULL, NULL));
}
