/* Integration: what an operator sees, from the real daemon against a real
 * nats-server and the mock. The metrics listener: /metrics counted by
 * outcome after known chats and accepted by `promtool check metrics`,
 * /healthz, /readyz going 503 while NATS is down and 200 once it is back.
 * The NATS services protocol: two dispatchers both answer $SRV.PING (every
 * body checked against the schema's required fields), INFO and STATS by
 * instance, `sundynixctl ping` and `stats` list both, and the shipped NATS
 * permissions allow it. The one log line per request in json: done, error
 * and cancelled, every field, and no key, prompt or delta text anywhere. */
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

#define KEY "sk-obs-SECRETmiddle0123456789abcdefXYZ"
#define KEY_PART "SECRETmiddle"
#define PROMPT "PROMPT-zebra-7b1e unique words"
#define FAST_SCRIPT "{\"mode\":\"stream\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}"
#define FAIL_500 "{\"mode\":\"status\",\"status\":500,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"boom\\\"}}\"}"

static struct h_mock *mock;

/* Free ports for the metrics listener, whatever the environment says. */
static int obs_setup(void)
{
	setenv("SUNDYNIX_METRICS_LISTEN", "127.0.0.1:0", 1);
	return 0;
}

static const struct h_bed bed = {
	.mocks = { { &mock, "mock-observe" } },
	.script = FAST_SCRIPT,
	.setup = obs_setup,
	.hard_exit = true,
};

/* ---- helpers of this file: daemon overrides, scrape parsing ---- */

/* h_daemon_spawn with the overrides as a JSON value. */
static struct h_daemon *spawn_json(struct h_nats *n, const char *prefix, json_t *ov, const struct h_daemon_opts *o)
{
	char *text = json_dumps(ov, JSON_COMPACT);
	struct h_daemon *d = h_daemon_spawn(n, prefix, text, o);
	free(text);
	return d;
}

/* The value of the sample whose name and labels are exactly series, or -1. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return atof(p + n + 1);
	return -1;
}

static void expect_sample(const char *text, const char *series, double want)
{
	double got = sample(text, series);
	if (got != want)
		fail_msg("%s: %g, expected %g", series, got, want);
}

static void chat_expect(struct h_client *c, const char *rid, const char *want)
{
	h_chat_expect(c, rid, PROMPT, want);
}

/* Submits a body the contract refuses (bad_request) and checks the ack. */
static void submit_bad(struct h_client *c, const char *rid)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"request_id\":\"%s\",\"messages\":[]}", rid);
	json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
	assert_false(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);
}

/* ---- /metrics, /healthz, /readyz ---- */

static void test_metrics_counts_and_promtool(void **state)
{
	(void)state;
	struct h_nats *nats = h_nats_start(NULL);
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	struct h_client *c = h_client_connect(nats, prefix);
	int port = h_daemon_metrics_port(d);
	long status;

	h_use_mock(c, d, mock, "m-obs", KEY, 7);
	h_chat_expect_n(c, "obs-ok", 3, PROMPT, mock, NULL, "done");
	h_chat_expect_n(c, "obs-500", 2, PROMPT, mock, FAIL_500, "upstream_http");
	submit_bad(c, "obs-bad-0");

	char *text = h_http_get(port, "/metrics", &status);
	assert_int_equal(status, 200);
	expect_sample(text, "sundynix_requests_total{outcome=\"done\"}", 3);
	expect_sample(text, "sundynix_requests_total{outcome=\"upstream_http\"}", 2);
	expect_sample(text, "sundynix_requests_total{outcome=\"bad_request\"}", 1);
	expect_sample(text, "sundynix_requests_total{outcome=\"cancelled\"}", 0);
	expect_sample(text, "sundynix_requests_accepted_total", 5);
	expect_sample(text, "sundynix_requests_in_flight", 0);
	expect_sample(text, "sundynix_deltas_relayed_total{kind=\"token\"}", 9);
	expect_sample(text, "sundynix_time_to_first_token_seconds_count", 3);
	expect_sample(text, "sundynix_request_duration_seconds_count", 5);
	/* Sampled (one curl write callback in 16): the first write of the first
	 * stream is timed, and never more deltas than were relayed. */
	double chunks = sample(text, "sundynix_chunk_overhead_seconds_count");
	if (chunks < 1 || chunks > 9)
		fail_msg("sundynix_chunk_overhead_seconds_count: %g, expected 1..9", chunks);
	expect_sample(text, "sundynix_model_ready", 1);
	expect_sample(text, "sundynix_model_info{model=\"m-obs\",provider=\"openai\"}", 1);
	expect_sample(text, "sundynix_model_config_revision", 7);
	expect_sample(text, "sundynix_model_config_updates_total{result=\"applied\"}", 1);
	expect_sample(text, "sundynix_nats_connected", 1);
	expect_sample(text, "sundynix_nats_submit_queue_joined", 1);
	char series[256];
	snprintf(series, sizeof(series), "sundynix_endpoint_attempts_total{model=\"m-obs\",endpoint=\"%s\"}",
		 mock->base_url);
	expect_sample(text, series, 5);
	snprintf(series, sizeof(series), "sundynix_endpoint_requests_total{model=\"m-obs\",endpoint=\"%s\"}",
		 mock->base_url);
	expect_sample(text, series, 5);
	snprintf(series, sizeof(series), "sundynix_endpoint_ejected{model=\"m-obs\",endpoint=\"%s\"}", mock->base_url);
	expect_sample(text, series, 0);
	assert_true(sample(text, "sundynix_backend_received_bytes_total") > 0);
	assert_true(sample(text, "process_resident_memory_bytes") > 0);
	assert_true(sample(text, "process_open_fds") > 0);
	assert_true(sample(text, "process_max_fds") > 0);
	assert_true(sample(text, "process_start_time_seconds") > 1.7e9);
	/* Never a key, a prompt or a request id. */
	H_ASSERT_NOT_CONTAINS(text, KEY_PART);
	H_ASSERT_NOT_CONTAINS(text, "zebra");
	H_ASSERT_NOT_CONTAINS(text, "obs-ok-");

	/* docs/observability.md names every family the scrape has. */
	char *docs = h_read_file("docs/observability.md", NULL);
	assert_non_null(docs);
	for (const char *p = strstr(text, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
		char name[128], quoted[140];
		if (sscanf(p, "# TYPE %127s", name) != 1)
			fail_msg("bad TYPE line");
		snprintf(quoted, sizeof(quoted), "`%s`", name);
		if (!strstr(docs, quoted))
			fail_msg("docs/observability.md does not list %s", name);
	}
	free(docs);

	/* promtool, as Prometheus's own linter, on the real scrape. */
	char *path = xasprintf("%s/scrape.txt", h_tmpdir());
	h_write_file(path, text, strlen(text));
	h_sh("promtool", "promtool check metrics <'%s'", path);
	free(path);
	free(text);

	text = h_http_get(port, "/healthz", &status);
	assert_int_equal(status, 200);
	free(text);
	text = h_http_get(port, "/readyz", &status);
	assert_int_equal(status, 200);
	free(text);
	text = h_http_get(port, "/nope", &status);
	assert_int_equal(status, 404);
	free(text);
	h_daemon_stop_ok(d);
}

/* Polls /readyz until its status is want; returns the last body. */
static char *wait_ready_status(int port, long want, int timeout_ms)
{
	long status = 0;
	char *body = NULL;
	for (int waited = 0;; waited += 50) {
		free(body);
		body = h_http_get(port, "/readyz", &status);
		if (status == want || waited >= timeout_ms)
			break;
		h_sleep_ms(50);
	}
	if (status != want)
		fail_msg("/readyz answered %ld (%s), expected %ld", status, body, want);
	return body;
}

static void test_readyz_follows_nats(void **state)
{
	(void)state;
	struct h_nats *nats = h_nats_start(NULL);
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, "{\"nats\":{\"reconnect_wait_ms\":100}}");
	int port = h_daemon_metrics_port(d);

	free(wait_ready_status(port, 200, 5000));
	h_nats_halt(nats);
	char *why = wait_ready_status(port, 503, 10000);
	H_ASSERT_CONTAINS(why, "NATS is not connected");
	assert_int_equal(strchr(why, '\n') - why, (long)strlen(why) - 1); /* one line */
	free(why);
	long status;
	char *text = h_http_get(port, "/healthz", &status);
	assert_int_equal(status, 200); /* the loop is alive all the same */
	free(text);
	text = h_http_get(port, "/metrics", &status);
	expect_sample(text, "sundynix_nats_connected", 0);
	free(text);

	h_nats_resume(nats);
	free(wait_ready_status(port, 200, 15000));
	text = h_http_get(port, "/metrics", &status);
	expect_sample(text, "sundynix_nats_connected", 1);
	expect_sample(text, "sundynix_nats_reconnects_total", 1);
	free(text);
	h_daemon_stop_ok(d);
}

/* ---- $SRV ---- */

/* Asks subject with an empty request and gathers the answers for wait_ms
 * (caller owns the array). */
static json_t *srv_gather(struct h_client *c, const char *subject, int wait_ms)
{
	natsSubscription *sub = NULL;
	natsInbox *inbox = NULL;
	json_t *all = json_array();

	assert_int_equal(natsInbox_Create(&inbox), NATS_OK);
	assert_int_equal(natsConnection_SubscribeSync(&sub, c->nc, inbox), NATS_OK);
	assert_int_equal(natsConnection_PublishRequest(c->nc, subject, inbox, "", 0), NATS_OK);
	unsigned long long end = util_now_ms() + (unsigned long long)wait_ms;
	for (;;) {
		unsigned long long now = util_now_ms();
		natsMsg *m = NULL;
		if (now >= end || natsSubscription_NextMsg(&m, sub, (int64_t)(end - now)) != NATS_OK)
			break;
		json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		if (!j)
			fail_msg("%s: an answer is not JSON: %.*s", subject, natsMsg_GetDataLength(m), natsMsg_GetData(m));
		json_array_append_new(all, j);
		natsMsg_Destroy(m);
	}
	natsSubscription_Destroy(sub);
	natsInbox_Destroy(inbox);
	return all;
}

/* The required fields of io.nats.micro.v1.<kind>_response, with their types. */
static void check_srv_body(json_t *b, const char *kind)
{
	char type[64];
	snprintf(type, sizeof(type), "io.nats.micro.v1.%s_response", kind);
	char *dump = json_dumps(b, JSON_COMPACT);
	h_log("%s", dump);
	assert_string_equal(h_jstr(b, "type"), type);
	assert_string_equal(h_jstr(b, "name"), "sundynix-dispatcher");
	assert_true(strlen(h_jstr(b, "id")) > 0);
	assert_string_equal(h_jstr(b, "version"), "0.1.0");
	json_t *md = json_object_get(b, "metadata");
	assert_true(json_is_object(md) || json_is_null(md));
	if (!strcmp(kind, "info")) {
		assert_true(json_is_string(json_object_get(b, "description")));
		json_t *eps = json_object_get(b, "endpoints"), *ep;
		size_t i;
		assert_int_equal(json_array_size(eps), 2);
		json_array_foreach(eps, i, ep) {
			assert_true(json_is_string(json_object_get(ep, "name")));
			assert_true(json_is_string(json_object_get(ep, "subject")));
		}
	}
	if (!strcmp(kind, "stats")) {
		assert_true(json_is_string(json_object_get(b, "started")));
		json_t *eps = json_object_get(b, "endpoints"), *ep;
		size_t i;
		assert_int_equal(json_array_size(eps), 2);
		json_array_foreach(eps, i, ep) {
			assert_true(json_is_string(json_object_get(ep, "name")));
			assert_true(json_is_string(json_object_get(ep, "subject")));
			assert_true(json_is_integer(json_object_get(ep, "num_requests")));
			assert_true(json_is_integer(json_object_get(ep, "num_errors")));
			assert_true(json_is_string(json_object_get(ep, "last_error")));
			assert_true(json_is_integer(json_object_get(ep, "processing_time")));
			assert_true(json_is_integer(json_object_get(ep, "average_processing_time")));
		}
	}
	free(dump);
}

static bool has_id(json_t *answers, const char *id)
{
	json_t *a;
	size_t i;
	json_array_foreach(answers, i, a)
		if (!strcmp(h_jstr(a, "id"), id))
			return true;
	return false;
}

static struct h_cmd *ctl(struct h_nats *n, const char *prefix, const char *cmd, const char *extra)
{
	char *bin = xasprintf("%s/sundynixctl", h_build());
	char *const argv[] = { bin, "--nats", n->url, "--prefix", (char *)prefix, (char *)cmd, (char *)extra, NULL };
	struct h_cmd *c = h_cmd_run(cmd, 10000, argv);
	free(bin);
	return c;
}

static void test_srv_two_instances(void **state)
{
	(void)state;
	struct h_nats *nats = h_nats_start(NULL);
	const char *prefix = h_prefix();
	struct h_daemon *d1 = h_daemon_start(nats, prefix, "{\"instance_id\":\"obs-one\"}");
	struct h_daemon *d2 = h_daemon_start(nats, prefix, "{\"instance_id\":\"obs-two\"}");
	struct h_client *c = h_client_connect(nats, prefix);

	h_use_mock(c, d1, mock, "m-srv", KEY, 3);
	assert_true(h_daemon_wait_log(d2, "model config applied: model=m-srv", 5000));
	chat_expect(c, "srv-1", "done");
	h_mock_next(mock, FAIL_500); /* whichever instance takes it */
	chat_expect(c, "srv-2", "upstream_http");

	static const char *const subjects[] = { "$SRV.PING", "$SRV.PING.sundynix-dispatcher" };
	for (size_t s = 0; s < UTIL_ARRAY_LEN(subjects); s++) {
		json_t *all = srv_gather(c, subjects[s], 1000);
		assert_int_equal(json_array_size(all), 2);
		assert_true(has_id(all, "obs-one"));
		assert_true(has_id(all, "obs-two"));
		json_t *a;
		size_t i;
		json_array_foreach(all, i, a) {
			check_srv_body(a, "ping");
			assert_string_equal(h_jstr(json_object_get(a, "metadata"), "subject_prefix"), prefix);
		}
		json_decref(all);
	}
	/* By instance: one answer. */
	json_t *one = srv_gather(c, "$SRV.INFO.sundynix-dispatcher.obs-two", 500);
	assert_int_equal(json_array_size(one), 1);
	check_srv_body(json_array_get(one, 0), "info");
	assert_string_equal(h_jstr(json_array_get(one, 0), "id"), "obs-two");
	char *submit = xasprintf("%s.chat.submit", prefix);
	json_t *ep0 = json_array_get(json_object_get(json_array_get(one, 0), "endpoints"), 0);
	assert_string_equal(h_jstr(ep0, "subject"), submit);
	assert_string_equal(h_jstr(ep0, "queue_group"), "sundynix-dispatcher");
	free(submit);
	json_decref(one);

	json_t *stats = srv_gather(c, "$SRV.STATS.sundynix-dispatcher", 1000);
	assert_int_equal(json_array_size(stats), 2);
	long long requests = 0, errors = 0;
	json_t *a;
	size_t i;
	json_array_foreach(stats, i, a) {
		check_srv_body(a, "stats");
		json_t *sub = json_array_get(json_object_get(a, "endpoints"), 0);
		assert_string_equal(h_jstr(sub, "name"), "submit");
		requests += h_jint(sub, "num_requests");
		errors += h_jint(sub, "num_errors");
		json_t *data = json_object_get(sub, "data");
		assert_string_equal(h_jstr(data, "model"), "m-srv");
		assert_int_equal(h_jint(data, "revision"), 3);
		assert_int_equal(h_jint(data, "in_flight"), 0);
		if (h_jint(sub, "num_errors"))
			H_ASSERT_CONTAINS(h_jstr(sub, "last_error"), "upstream_http");
	}
	assert_int_equal(requests, 2);
	assert_int_equal(errors, 1);
	json_decref(stats);
	/* Another instance id: nobody. */
	json_t *none = srv_gather(c, "$SRV.PING.sundynix-dispatcher.obs-three", 300);
	assert_int_equal(json_array_size(none), 0);
	json_decref(none);

	/* sundynixctl ping and stats list both. */
	struct h_cmd *p = ctl(nats, prefix, "ping", NULL);
	h_cmd_expect(p, 0);
	H_ASSERT_CONTAINS(p->out, "obs-one");
	H_ASSERT_CONTAINS(p->out, "obs-two");
	H_ASSERT_CONTAINS(p->out, " ms\n");
	struct h_cmd *st = ctl(nats, prefix, "stats", NULL);
	h_cmd_expect(st, 0);
	H_ASSERT_CONTAINS(st->out, "INSTANCE");
	H_ASSERT_CONTAINS(st->out, "obs-one");
	H_ASSERT_CONTAINS(st->out, "obs-two");
	H_ASSERT_CONTAINS(st->out, "m-srv");
	H_ASSERT_CONTAINS(st->out, "serving");
	struct h_cmd *sj = ctl(nats, prefix, "stats", "--json");
	h_cmd_expect(sj, 0);
	char *line2 = strchr(sj->out, '\n');
	assert_non_null(line2);
	json_t *first = json_loadb(sj->out, (size_t)(line2 - sj->out), 0, NULL);
	assert_non_null(first);
	check_srv_body(first, "stats");
	json_decref(first);
	/* Another prefix: nobody, said on stderr, exit 1. */
	struct h_cmd *other = ctl(nats, "no-such-prefix", "ping", NULL);
	h_cmd_expect(other, 1);
	H_ASSERT_CONTAINS(other->err, "2 of other prefixes did");

	h_daemon_stop_ok(d1);
	h_daemon_stop_ok(d2);
}

/* config/nats-permissions.conf lets the dispatcher answer $SRV and the
 * control user ask it. */
static void test_srv_under_permissions(void **state)
{
	(void)state;
	/* The gateway user is not used here. */
	char *text = h_nats_permissions_conf("pw-obs-disp", "pw-obs-gw", "pw-obs-ctl");
	struct h_nats *n = h_nats_start(text);
	free(text);
	struct h_client_auth ca = { .user = "sundynix-control", .password = "pw-obs-ctl" };
	struct h_client *ctlc = h_client_connect_auth(n, "sundynix", &ca);
	json_t *ov = h_json_parse("{\"nats\":{\"user\":\"sundynix-dispatcher\",\"password\":\"pw-obs-disp\"},"
				  "\"queue_group\":\"sundynix-dispatcher\",\"instance_id\":\"obs-perm\"}");
	struct h_daemon *d = spawn_json(n, "sundynix", ov, NULL);
	json_decref(ov);
	assert_true(h_daemon_wait_ready(d, 15000));
	json_t *all = srv_gather(ctlc, "$SRV.STATS.sundynix-dispatcher.obs-perm", 1000);
	assert_int_equal(json_array_size(all), 1);
	check_srv_body(json_array_get(all, 0), "stats");
	json_decref(all);
	h_daemon_stop_ok(d);
	h_flush(ctlc);
	char *nlog = h_read_file(n->proc->log_path, NULL);
	H_ASSERT_NOT_CONTAINS(nlog, "Permissions Violation");
	free(nlog);
	assert_false(h_daemon_log_contains(d, "asynchronous error"));
}

/* ---- the one log line per request ---- */

/* The json line of rid's end ("request done" or "request failed"). Every
 * line of the log must be a JSON object. Caller owns the result. */
static json_t *request_line(const char *log, const char *rid)
{
	json_t *found = NULL;
	for (const char *p = log; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_error_t err;
		json_t *j = json_loadb(p, len, 0, &err);
		if (!j || !json_is_object(j))
			fail_msg("a log line is not a JSON object (%s): %.*s", err.text, (int)len, p);
		const char *msg = json_string_value(json_object_get(j, "msg"));
		const char *r = json_string_value(json_object_get(j, "request_id"));
		if (r && !strcmp(r, rid) && msg && (!strcmp(msg, "request done") || !strcmp(msg, "request failed"))) {
			assert_null(found); /* one line per request */
			found = j;
		} else {
			json_decref(j);
		}
		p += len + (nl ? 1 : 0);
	}
	if (!found)
		fail_msg("no end line for %s", rid);
	return found;
}

static void check_common_fields(json_t *j, const char *endpoint)
{
	static const char *const keys[] = { "ts",    "level",      "request_id", "msg",	     "session_id",
					    "model", "endpoint",   "attempts",   "ttft_ms",     "duration_ms",
					    "tokens", "reasoning", "outcome",    "code",	    "message" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(keys); i++)
		if (!json_object_get(j, keys[i]))
			fail_msg("the request line lacks %s", keys[i]);
	assert_string_equal(h_jstr(j, "level"), "info");
	assert_string_equal(h_jstr(j, "session_id"), "sess-obs");
	assert_string_equal(h_jstr(j, "model"), "m-log");
	assert_string_equal(h_jstr(j, "endpoint"), endpoint);
	assert_int_equal(h_jint(j, "attempts"), 1);
	assert_true(json_is_integer(json_object_get(j, "duration_ms")));
}

static void submit_with_session(struct h_client *c, const char *rid)
{
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"request_id\":\"%s\",\"session_id\":\"sess-obs\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
		 rid, PROMPT);
	json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);
}

static void test_json_request_lines(void **state)
{
	(void)state;
	struct h_nats *nats = h_nats_start(NULL);
	const char *prefix = h_prefix();
	json_t *ov = h_json_parse("{\"log\":{\"format\":\"json\"}}");
	const struct h_daemon_opts o = { .quiet = true };
	struct h_daemon *d = spawn_json(nats, prefix, ov, &o);
	json_decref(ov);
	assert_true(h_daemon_wait_ready(d, 15000));
	struct h_client *c = h_client_connect(nats, prefix);
	h_use_mock(c, d, mock, "m-log", KEY, -1);

	struct h_stream *s = h_stream_open(c, "log-done");
	submit_with_session(c, "log-done");
	assert_string_equal(h_jstr(h_stream_finish(s, 10000), "type"), "done");
	h_mock_next(mock, FAIL_500);
	s = h_stream_open(c, "log-fail");
	submit_with_session(c, "log-fail");
	h_stream_expect_error(s, "upstream_http", 10000);
	h_mock_next(mock, "{\"mode\":\"stream\",\"tokens\":500,\"ttft_ms\":0,\"inter_ms\":20}");
	s = h_stream_open(c, "log-cancel");
	submit_with_session(c, "log-cancel");
	assert_true(h_stream_wait_count(s, 2, 5000));
	h_cancel(c, "log-cancel");
	h_stream_expect_error(s, "cancelled", 5000);
	assert_true(h_wait_file(d->log_path, "\"request_id\":\"log-cancel\",\"msg\":\"request failed\"", 5000));
	h_daemon_stop_ok(d);

	char *log = h_read_file(d->log_path, NULL);
	json_t *j = request_line(log, "log-done");
	check_common_fields(j, mock->base_url);
	assert_string_equal(h_jstr(j, "outcome"), "done");
	assert_true(json_is_null(json_object_get(j, "code")));
	assert_int_equal(h_jint(j, "tokens"), 3);
	assert_true(json_is_integer(json_object_get(j, "ttft_ms")));
	json_decref(j);
	j = request_line(log, "log-fail");
	check_common_fields(j, mock->base_url);
	assert_string_equal(h_jstr(j, "outcome"), "error");
	assert_string_equal(h_jstr(j, "code"), "upstream_http");
	assert_int_equal(h_jint(j, "tokens"), 0);
	assert_true(json_is_null(json_object_get(j, "ttft_ms")));
	json_decref(j);
	j = request_line(log, "log-cancel");
	check_common_fields(j, mock->base_url);
	assert_string_equal(h_jstr(j, "outcome"), "error");
	assert_string_equal(h_jstr(j, "code"), "cancelled");
	assert_true(h_jint(j, "tokens") >= 2);
	json_decref(j);
	/* No key, no prompt, no delta text in any line. */
	H_ASSERT_NOT_CONTAINS(log, KEY_PART);
	H_ASSERT_NOT_CONTAINS(log, "zebra");
	H_ASSERT_NOT_CONTAINS(log, "tok1 ");
	free(log);
}

/* Waits until the one dispatcher answering $SRV.STATS says it serves. */
static void wait_serving(struct h_client *c, int timeout_ms)
{
	/* By the clock: before the daemon subscribes, the server answers "no
	 * responders" at once and a gather returns early. */
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	while (util_now_ms() < end) {
		unsigned long long t0 = util_now_ms();
		json_t *all = srv_gather(c, "$SRV.STATS.sundynix-dispatcher", 200);
		json_t *sub = json_array_get(json_object_get(json_array_get(all, 0), "endpoints"), 0);
		const char *st = json_string_value(json_object_get(json_object_get(sub, "data"), "state"));
		bool serving = st && !strcmp(st, "serving");
		json_decref(all);
		if (serving)
			return;
		if (util_now_ms() - t0 < 100)
			h_sleep_ms(100);
	}
	fail_msg("no dispatcher serving within %d ms", timeout_ms);
}

/* log.level warn: no per-request line. */
static void test_warn_level_has_no_request_lines(void **state)
{
	(void)state;
	struct h_nats *nats = h_nats_start(NULL);
	const char *prefix = h_prefix();
	json_t *ov = h_json_parse("{\"log\":{\"level\":\"warn\"}}");
	const struct h_daemon_opts o = { .quiet = true };
	struct h_daemon *d = spawn_json(nats, prefix, ov, &o);
	json_decref(ov);
	struct h_client *c = h_client_connect(nats, prefix);
	/* "dispatcher ready" is an info line: ask $SRV until it serves. */
	wait_serving(c, 10000);
	chat_expect(c, "warn-1", "done");
	h_daemon_stop_ok(d);
	assert_false(h_daemon_log_contains(d, "request done"));
}

H_MAIN("integ_observe", &bed, H_TEST(test_metrics_counts_and_promtool), H_TEST(test_readyz_follows_nats),
       H_TEST(test_srv_two_instances), H_TEST(test_srv_under_permissions), H_TEST(test_json_request_lines),
       H_TEST(test_warn_level_has_no_request_lines))
