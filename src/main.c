/* main: argv, startup order, the model config from the control plane, signals
 * and shutdown. Everything runs on one libuv loop:
 *
 *   bus (NATS) --submit/cancel--> request --> upstream (curl multi) | stub
 *              --config update/reply--> modelcfg store (snapshots for new requests)
 *   signals: SIGTERM/SIGINT drain, SIGHUP reload
 *
 * Startup: load config, connect and subscribe (bus), and once the server has
 * confirmed the subscriptions ask the control plane for the active model,
 * retrying with backoff until an answer or a broadcast arrives. */
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "config.h"
#include "contract.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "modelcfg.h"
#include "pool.h"
#include "probe.h"
#include "request.h"

#define MAIN_CONFIG_DEFAULT "/etc/sundynix/dispatcher.json"
#define MAIN_CONFIG_BACKOFF_MAX_MS 30000

enum main_phase { PHASE_STARTING, PHASE_RUNNING, PHASE_DRAINING, PHASE_CLOSING };

static struct dispatcher {
	uv_loop_t *loop;
	const char *config_path;
	struct config cfg;
	struct modelcfg_store models;
	struct pool *pool;
	struct bus *bus;
	struct http *http;
	struct requests *requests;
	enum main_phase phase;
	int exit_status;
	bool verbose; /* -v: debug level whatever the config says, also after a reload */

	bool model_known; /* an answer or a broadcast arrived */
	bool joined;      /* the submit queue group was joined */
	uint64_t config_backoff_ms;
	uv_timer_t config_timer;
	uv_timer_t grace_timer;
	uv_timer_t watchdog_timer;
	uv_timer_t status_timer;
	uv_timer_t probe_timer;
	uv_idle_t shutdown_idle; /* runs the next shutdown step outside any callback chain */
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
	char last_status[256];
} d;

static void main__drain(void);
static void main__join(void);

static void main__usage(FILE *f)
{
	fprintf(f, "usage: sundynix-dispatcher [-c FILE] [--check-config] [-v] [--version] [-h]\n"
		   "  -c, --config FILE   configuration file (default " MAIN_CONFIG_DEFAULT " if it exists)\n"
		   "      --check-config  validate the configuration and exit (0 valid, 2 invalid)\n"
		   "  -v, --verbose       log at debug level\n"
		   "      --version       print the version and exit\n"
		   "      --config-reference  print every config key as a Markdown table\n"
		   "  -h, --help          this help\n");
}

static void main__describe_model(const struct modelcfg *m, char *out, size_t outlen)
{
	char key[32], url[512], rev[32];

	if (!m->ready) {
		snprintf(out, outlen, "none (stub)");
		return;
	}
	util_mask_secret(m->api_key, key, sizeof(key));
	util_url_strip_userinfo(m->base_url, url, sizeof(url));
	if (m->has_revision)
		snprintf(rev, sizeof(rev), "%lld", m->revision);
	else
		snprintf(rev, sizeof(rev), "none");
	snprintf(out, outlen, "model=%s base_url=%s revision=%s provider=%s api_key=%s", m->model, url, rev,
		 *m->provider ? m->provider : "openai", key);
}

static void main__update_status(void)
{
	char status[256];
	struct modelcfg *m = d.models.active;

	static const char *const phases[] = { "starting", "serving", "draining", "stopping" };
	char model[128];

	/* The model name comes from the control plane; a newline in it would
	 * start another sd_notify field. */
	snprintf(model, sizeof(model), "%s", m->ready ? m->model : "stub");
	for (char *p = model; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	snprintf(status, sizeof(status), "STATUS=%s: %s, %zu requests in flight", phases[d.phase], model,
		 d.requests ? requests_inflight(d.requests) : 0);
	if (strcmp(status, d.last_status)) {
		sd_notify(0, status);
		snprintf(d.last_status, sizeof(d.last_status), "%s", status);
	}
}

static void main__on_status_timer(uv_timer_t *t)
{
	(void)t;
	main__update_status();
}

/* A model config from a reply or a broadcast. */
static void main__apply_model(const char *data, size_t len, const char *source)
{
	char err[256], desc[768];
	struct modelcfg *m = modelcfg_parse(data, len, err, sizeof(err));

	if (!m) {
		log_warn(NULL, "model config from %s ignored: %s", source, err);
		return;
	}
	d.model_known = true;
	uv_timer_stop(&d.config_timer);
	main__join();
	if (m->has_revision && d.models.have_revision && m->revision < d.models.revision) {
		log_info(NULL, "model config ignored: stale revision %lld < %lld (from %s)", m->revision,
			 d.models.revision, source);
		modelcfg_unref(m);
		return;
	}
	main__describe_model(m, desc, sizeof(desc));
	if (m->kind == PROVIDER_UNKNOWN)
		log_warn(NULL, "unknown provider \"%s\": treating it as OpenAI-compatible", m->provider);
	if (modelcfg_store_apply(&d.models, m)) {
		pool_prune(d.pool, d.models.active);
		log_info(NULL, "model config applied: %s (from %s)", desc, source);
		main__update_status();
	}
}

/* Takes requests only once the model is known (or the control plane did
 * not answer in time): before that a submit would get the stub. */
static void main__join(void)
{
	if (d.joined || d.phase != PHASE_STARTING)
		return;
	d.joined = true;
	if (bus_join_queue(d.bus) < 0) {
		d.exit_status = 1;
		main__drain();
	}
}

static void main__send_config_request(void)
{
	struct buf b;

	buf_init(&b);
	contract_encode_config_request(&b, d.cfg.instance_id);
	(void)!bus_config_request(d.bus, b.data, b.len);
	buf_free(&b);
}

static void main__on_config_timer(uv_timer_t *t)
{
	(void)t;
	if (d.model_known)
		return;
	main__join();
	if (d.config_backoff_ms == 0) {
		log_warn(NULL, "no answer from the control plane within %lld ms; serving with the stub until it answers",
			 d.cfg.timeouts_config_request_ms);
		d.config_backoff_ms = 1000;
	} else if (d.config_backoff_ms < MAIN_CONFIG_BACKOFF_MAX_MS) {
		d.config_backoff_ms *= 2;
		if (d.config_backoff_ms > MAIN_CONFIG_BACKOFF_MAX_MS)
			d.config_backoff_ms = MAIN_CONFIG_BACKOFF_MAX_MS;
	}
	log_debug(NULL, "asking the control plane for the model config again");
	main__send_config_request();
	uv_timer_start(&d.config_timer, main__on_config_timer, d.config_backoff_ms, 0);
}

static void main__teardown(void);
static void main__log_metrics(void);

static void main__on_probe_answer(void *ud, const char *json, size_t len)
{
	char *reply = ud;

	/* json is NULL when the probe was cancelled at shutdown. */
	if (json && d.bus)
		(void)!bus_publish(d.bus, reply, json, len);
	free(reply);
}

/* A probe request: test the candidate config from where the traffic flows. */
static void main__probe(natsMsg *msg)
{
	const char *reply = natsMsg_GetReply(msg);
	char err[256];
	struct modelcfg *m;

	if (!reply || !*reply)
		return;
	if (d.phase != PHASE_RUNNING) {
		static const char busy[] = "{\"ok\":false,\"error\":\"the dispatcher is not serving (starting or "
					   "stopping)\",\"endpoints\":[]}";
		(void)!bus_publish(d.bus, reply, busy, sizeof(busy) - 1);
		return;
	}
	m = modelcfg_parse(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), err, sizeof(err));
	if (!m) {
		struct buf b;
		buf_init(&b);
		buf_append_str(&b, "{\"ok\":false,\"error\":");
		buf_append_json_str(&b, err, strlen(err));
		buf_append_str(&b, ",\"endpoints\":[]}");
		(void)!bus_publish(d.bus, reply, b.data, b.len);
		buf_free(&b);
		return;
	}
	log_info(NULL, "probe: testing %zu endpoints of model %s", m->nendpoints, m->model);
	probe_config(d.http, m, d.cfg.pool_probe_timeout_ms, main__on_probe_answer, xstrdup(reply));
	modelcfg_unref(m);
}

static void main__on_probe_timer(uv_timer_t *t)
{
	(void)t;
	if (d.cfg.pool_probe_interval_ms > 0 && d.phase == PHASE_RUNNING)
		probe_health(d.http, d.pool, d.models.active, d.cfg.pool_probe_timeout_ms);
	if (d.cfg.pool_probe_interval_ms > 0)
		uv_timer_start(&d.probe_timer, main__on_probe_timer, (uint64_t)d.cfg.pool_probe_interval_ms, 0);
}

static void main__on_shutdown_idle(uv_idle_t *h)
{
	uv_idle_stop(h);
	/* All terminal events are published; get them to the server, then close. */
	d.phase = PHASE_CLOSING;
	bus_flush(d.bus, 5000);
}

static void main__on_drained(void *ud)
{
	(void)ud;
	/* Possibly inside a curl callback: continue from the loop. */
	uv_idle_start(&d.shutdown_idle, main__on_shutdown_idle);
}

static void main__on_grace(uv_timer_t *t)
{
	(void)t;
	log_warn(NULL, "grace period of %lld ms over; ending %zu requests", d.cfg.shutdown_grace_ms,
		 requests_inflight(d.requests));
	requests_end_all(d.requests, CONTRACT_E_SHUTTING_DOWN, "the dispatcher is shutting down");
}

static void main__drain(void)
{
	if (d.phase == PHASE_DRAINING || d.phase == PHASE_CLOSING) {
		/* A second signal ends at once. */
		log_warn(NULL, "second stop signal: ending %zu requests now", requests_inflight(d.requests));
		uv_timer_stop(&d.grace_timer);
		requests_end_all(d.requests, CONTRACT_E_SHUTTING_DOWN, "the dispatcher is shutting down");
		return;
	}
	d.phase = PHASE_DRAINING;
	sd_notify(0, "STOPPING=1");
	log_info(NULL, "draining: left the queue group, %zu requests in flight, grace %lld ms",
		 requests_inflight(d.requests), d.cfg.shutdown_grace_ms);
	bus_leave_queue(d.bus);
	main__update_status();
	uv_timer_start(&d.grace_timer, main__on_grace, (uint64_t)d.cfg.shutdown_grace_ms, 0);
	requests_drain(d.requests, main__on_drained, NULL);
}

static void main__on_reload_key(void *ud, const char *key, bool live)
{
	(void)ud;
	if (live)
		log_info(NULL, "reload: %s changed", key);
	else
		log_warn(NULL, "reload: %s changed but needs a restart; keeping the running value", key);
}

static void main__reload(void)
{
	struct config next;
	char err[512];
	uint64_t now_us;

	now_us = uv_hrtime() / 1000;
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_us);
	if (config_load(d.config_path, &next, err, sizeof(err)) < 0) {
		log_error(NULL, "reload failed, keeping the running configuration: %s", err);
	} else {
		config_diff(&d.cfg, &next, main__on_reload_key, NULL);
		config_keep_restart_keys(&next, &d.cfg);
		config_free(&d.cfg);
		d.cfg = next;
		log_set_level(d.verbose ? LOG_LVL_DEBUG : d.cfg.log_level);
		pool_set_eject_after(d.pool, (int)d.cfg.pool_eject_after);
		uv_timer_stop(&d.probe_timer);
		if (d.cfg.pool_probe_interval_ms > 0)
			uv_timer_start(&d.probe_timer, main__on_probe_timer, (uint64_t)d.cfg.pool_probe_interval_ms, 0);
		requests_set_config(d.requests, &d.cfg);
		log_info(NULL, "reload: configuration re-read from %s", d.config_path ? d.config_path : "(defaults)");
	}
	sd_notify(0, "READY=1");
	main__update_status();
}

static void main__on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	if (signum == SIGHUP)
		main__reload();
	else if (signum == SIGUSR1)
		main__log_metrics();
	else
		main__drain();
}

static void main__on_watchdog(uv_timer_t *t)
{
	(void)t;
	sd_notify(0, "WATCHDOG=1");
}

static void main__on_bus(void *ud, enum bus_event ev, natsMsg *msg)
{
	(void)ud;
	switch (ev) {
	case BUS_SUBMIT:
		if (d.phase == PHASE_CLOSING)
			break;
		requests_submit(d.requests, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
				natsMsg_GetReply(msg));
		break;
	case BUS_CANCEL:
		requests_cancel(d.requests, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
		break;
	case BUS_CONFIG_UPDATE:
		main__apply_model(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), "broadcast");
		break;
	case BUS_PROBE:
		main__probe(msg);
		break;
	case BUS_CONFIG_REPLY:
		main__apply_model(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), "control plane reply");
		break;
	case BUS_CONNECTED:
		log_info(NULL, "nats: connected; asking the control plane for the model");
		main__send_config_request();
		uv_timer_start(&d.config_timer, main__on_config_timer, (uint64_t)d.cfg.timeouts_config_request_ms, 0);
		break;
	case BUS_READY:
		if (d.phase != PHASE_STARTING)
			break; /* a stop came first: stay stopping */
		log_info(NULL, "dispatcher ready: subscriptions confirmed by the NATS server");
		d.phase = PHASE_RUNNING;
		sd_notify(0, "READY=1");
		main__update_status();
		break;
	case BUS_DISCONNECTED:
		log_warn(NULL, "nats: disconnected; events are buffered until the reconnect");
		break;
	case BUS_RECONNECTED:
		log_info(NULL, "nats: reconnected");
		/* A model broadcast may have been missed while disconnected; the
		 * revision rule makes asking again safe. */
		if (d.phase == PHASE_RUNNING)
			main__send_config_request();
		break;
	case BUS_FATAL:
		log_error(NULL, "cannot start: %s", bus_fatal_reason(d.bus));
		d.exit_status = 1;
		main__teardown();
		break;
	case BUS_CLOSED:
		if (d.phase != PHASE_CLOSING) {
			log_error(NULL, "nats: connection closed for good (check credentials and permissions); exiting");
			d.exit_status = 1;
			requests_end_all(d.requests, CONTRACT_E_SHUTTING_DOWN, "the dispatcher lost NATS");
			main__teardown();
		}
		break;
	case BUS_FLUSHED:
		if (d.phase == PHASE_CLOSING)
			main__teardown();
		break;
	}
}

static void main__close_cb(uv_handle_t *h)
{
	(void)h;
}

static void main__log_metrics(void)
{
	struct buf b;

	buf_init(&b);
	metrics_format(&metrics_chunk_latency, &b);
	log_notice(NULL, "chunk-latency histogram (curl write callback to NATS publish): %s", b.data);
	buf_free(&b);
	/* Each report covers the time since the previous one (SIGUSR1). */
	memset(&metrics_chunk_latency, 0, sizeof(metrics_chunk_latency));
}

static void main__teardown(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	d.phase = PHASE_CLOSING;
	uv_close((uv_handle_t *)&d.config_timer, main__close_cb);
	uv_close((uv_handle_t *)&d.grace_timer, main__close_cb);
	uv_close((uv_handle_t *)&d.watchdog_timer, main__close_cb);
	uv_close((uv_handle_t *)&d.status_timer, main__close_cb);
	uv_close((uv_handle_t *)&d.probe_timer, main__close_cb);
	uv_close((uv_handle_t *)&d.shutdown_idle, main__close_cb);
	uv_close((uv_handle_t *)&d.sig_term, main__close_cb);
	uv_close((uv_handle_t *)&d.sig_int, main__close_cb);
	uv_close((uv_handle_t *)&d.sig_hup, main__close_cb);
	uv_close((uv_handle_t *)&d.sig_usr1, main__close_cb);
	requests_free(d.requests);
	d.requests = NULL;
	probe_cancel_all();
	http_free(d.http);
	d.http = NULL;
	bus_close(d.bus);
	d.bus = NULL;
	main__log_metrics();
	log_info(NULL, "stopped");
}

static void main__raise_nofile(void)
{
	struct rlimit rl;

	/* 10k streams need 10k+ sockets; take what the hard limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn(NULL, "cannot raise the open file limit");
	}
}

static void main__log_startup(const struct bus_subjects *s)
{
	struct buf servers;
	char desc[768];

	buf_init(&servers);
	for (size_t i = 0; i < d.cfg.nats_servers_count; i++) {
		char url[512];
		util_url_strip_userinfo(d.cfg.nats_servers[i], url, sizeof(url));
		buf_printf(&servers, "%s%s", i ? "," : "", url);
	}
	main__describe_model(d.models.active, desc, sizeof(desc));
	log_info(NULL,
		 "sundynix-dispatcher %s starting: instance=%s nats=%s submit=%s queue=%s cancel=%s stream=%s<request_id> "
		 "config=%s,%s model: %s",
		 SUNDYNIX_VERSION, d.cfg.instance_id, servers.data, s->submit, d.cfg.queue_group, s->cancel,
		 s->stream_prefix, s->config_get, s->config_updated, desc);
	buf_free(&servers);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' }, { "check-config", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },      { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },         { "config-reference", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	bool check_only = false, verbose = false;

	/* libnats 3.4 frees TLS state that OpenSSL's atexit handler frees again
	 * (nats-io/nats.c#904): once NATS TLS was used, exit crashed. OpenSSL
	 * must not register that handler; the process is ending anyway. */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	char err[1024];
	uint64_t wd_usec = 0;
	int opt;

	while ((opt = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': d.config_path = optarg; break;
		case 'C': check_only = true; break;
		case 'v': verbose = true; break;
		case 'V': printf("sundynix-dispatcher %s\n", SUNDYNIX_VERSION); return 0;
		case 'h': main__usage(stdout); return 0;
		case 'R': config_print_reference(); return 0; /* the table in docs/config.md */
		default: main__usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		main__usage(stderr);
		return 2;
	}
	if (!d.config_path && access(MAIN_CONFIG_DEFAULT, F_OK) == 0)
		d.config_path = MAIN_CONFIG_DEFAULT;

	log_init();
	if (config_load(d.config_path, &d.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "sundynix-dispatcher: configuration error: %s\n", err);
		return 2;
	}
	if (check_only) {
		printf("%s: configuration OK\n", d.config_path ? d.config_path : "(built-in defaults)");
		config_free(&d.cfg);
		return 0;
	}
	d.verbose = verbose;
	log_set_level(verbose ? LOG_LVL_DEBUG : d.cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	main__raise_nofile();

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "sundynix-dispatcher: cannot initialise libcurl\n");
		return 1;
	}
	d.loop = uv_default_loop();
	modelcfg_store_init(&d.models);
	d.http = http_new(d.loop, (long)d.cfg.limits_max_connections_per_endpoint);
	d.pool = pool_new((int)d.cfg.pool_eject_after);
	uv_timer_init(d.loop, &d.config_timer);
	uv_timer_init(d.loop, &d.grace_timer);
	uv_timer_init(d.loop, &d.watchdog_timer);
	uv_timer_init(d.loop, &d.status_timer);
	uv_timer_init(d.loop, &d.probe_timer);
	uv_idle_init(d.loop, &d.shutdown_idle);
	uv_signal_init(d.loop, &d.sig_term);
	uv_signal_init(d.loop, &d.sig_int);
	uv_signal_init(d.loop, &d.sig_hup);
	uv_signal_start(&d.sig_term, main__on_signal, SIGTERM);
	uv_signal_start(&d.sig_int, main__on_signal, SIGINT);
	uv_signal_start(&d.sig_hup, main__on_signal, SIGHUP);
	uv_signal_init(d.loop, &d.sig_usr1);
	uv_signal_start(&d.sig_usr1, main__on_signal, SIGUSR1);

	d.bus = bus_open(d.loop, &d.cfg, main__on_bus, NULL, err, sizeof(err));
	if (!d.bus) {
		log_error(NULL, "cannot start: %s", err);
		d.exit_status = 1;
		main__teardown();
		goto out;
	}
	d.requests = requests_new(d.loop, d.http, d.bus, &d.models, d.pool, &d.cfg);
	main__log_startup(bus_subjects(d.bus));

	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0)
		uv_timer_start(&d.watchdog_timer, main__on_watchdog, wd_usec / 2000, wd_usec / 2000);
	uv_timer_start(&d.status_timer, main__on_status_timer, 2000, 2000);
	if (d.cfg.pool_probe_interval_ms > 0)
		uv_timer_start(&d.probe_timer, main__on_probe_timer, (uint64_t)d.cfg.pool_probe_interval_ms, 0);

out:
	uv_run(d.loop, UV_RUN_DEFAULT);
	uv_loop_close(d.loop);
	modelcfg_store_free(&d.models);
	pool_free(d.pool);
	config_free(&d.cfg);
	curl_global_cleanup();
	return d.exit_status;
}
