/* main: argv, startup order, signals, sd_notify and shutdown; it wires the
 * modules together and owns what they share. Everything runs on one libuv
 * loop:
 *
 *   bus (NATS) --submit/cancel--> request --> upstream (curl multi) | stub
 *              --config, probe--> control --> modelcfg store, pool, probe
 *   signals: SIGTERM/SIGINT drain, SIGHUP reload, SIGUSR1 latency histogram
 *   httpd (/metrics, /healthz, /readyz) --> prom <-- metrics, pool, bus, models
 *   bus $SRV.> --> srv (PING, INFO, STATS answered on the reply subject)
 *
 * Startup: load config, connect and subscribe (bus); control asks for the
 * model once the server confirmed the subscriptions, and the queue groups
 * are joined when the model is known. */
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "config.h"
#include "contract.h"
#include "control.h"
#include "http.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "modelcfg.h"
#include "pool.h"
#include "probe.h"
#include "prom.h"
#include "request.h"
#include "srv.h"
#include "stub.h"
#include "upstream.h"

#define MAIN_CONFIG_DEFAULT "/etc/sundynix/dispatcher.json"

enum main_phase { PHASE_STARTING, PHASE_RUNNING, PHASE_DRAINING, PHASE_CLOSING };

/* Everything main wires together. One instance, on main's stack. */
struct dispatcher {
	uv_loop_t *loop;
	const char *config_path;
	struct config *cfg; /* in force; a reload swaps in a new one */
	struct modelcfg_store models;
	struct metrics metrics;               /* every figure that is counted */
	struct metrics_hist chunk_reported;   /* the chunk histogram at the last SIGUSR1 report */
	struct httpd *httpd;                  /* NULL when metrics.listen is "" */
	double start_time;                    /* wall clock at start, seconds */
	char started[40];                     /* the same, RFC 3339 */
	struct pool *pool;
	struct bus *bus;
	struct http *http;
	struct probe *probe;
	struct control *control;
	struct requests *requests;
	struct request_ops ops;
	enum main_phase phase;
	int exit_status;
	bool verbose; /* -v: debug level whatever the config says, also after a reload */
	bool joined;  /* the submit queue group was joined */
	bool torn_down;

	uv_timer_t tick_timer; /* requests_tick: keepalives, record lingers */
	uv_timer_t grace_timer;
	uv_timer_t watchdog_timer;
	uv_timer_t status_timer;
	uv_idle_t shutdown_idle; /* runs the next shutdown step outside any callback chain */
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
	char last_status[256];
};

static void main__drain(struct dispatcher *d);
static void main__teardown(struct dispatcher *d);

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

static const char *main__phase_name(const struct dispatcher *d)
{
	static const char *const phases[] = { "starting", "serving", "draining", "stopping" };
	return phases[d->phase];
}

static void main__update_status(struct dispatcher *d)
{
	struct modelcfg *m = d->models.active;
	char status[256], model[128];

	/* The model name comes from the control plane; a newline in it would
	 * start another sd_notify field. */
	snprintf(model, sizeof(model), "%s", m->ready ? m->model : "stub");
	for (char *p = model; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	snprintf(status, sizeof(status), "STATUS=%s: %s, %zu requests in flight", main__phase_name(d), model,
		 d->requests ? requests_inflight(d->requests) : 0);
	if (strcmp(status, d->last_status)) {
		sd_notify(0, status);
		snprintf(d->last_status, sizeof(d->last_status), "%s", status);
	}
}

static void main__on_status_timer(uv_timer_t *t)
{
	main__update_status(t->data);
}

/* control: the model is known (or the control plane did not answer in
 * time). Takes requests only from then on: before, a submit would get the
 * stub. */
static void main__on_model_known(void *ud)
{
	struct dispatcher *d = ud;

	if (d->joined || d->phase != PHASE_STARTING)
		return;
	d->joined = true;
	if (bus_join_queue(d->bus) < 0) {
		d->exit_status = 1;
		main__drain(d);
	}
}

/* metrics_prune_endpoints: keeps the endpoints of the model in force. */
static bool main__endpoint_named(void *ud, const char *endpoint)
{
	const struct modelcfg *m = ud;
	char url[512];

	for (size_t i = 0; i < m->nendpoints; i++) {
		util_url_strip_userinfo(m->endpoints[i].base_url, url, sizeof(url));
		if (!strcmp(url, endpoint))
			return true;
	}
	return false;
}

static void main__on_model_applied(void *ud)
{
	struct dispatcher *d = ud;

	metrics_prune_endpoints(&d->metrics, main__endpoint_named, d->models.active);

	if (d->requests)
		requests_check_admission(d->requests); /* the model's capacity may differ */
	main__update_status(d);
}

static void main__log_metrics(struct dispatcher *d)
{
	struct metrics_hist since;
	struct buf b;

	/* Each report covers the time since the previous one (SIGUSR1); the
	 * histogram itself keeps counting for /metrics. */
	metrics_hist_diff(&since, &d->metrics.chunk, &d->chunk_reported);
	buf_init(&b);
	metrics_format(&since, &b);
	log_notice(NULL, "chunk-latency histogram (curl write callback to NATS publish): %s", b.data);
	buf_free(&b);
	d->chunk_reported = d->metrics.chunk;
	d->metrics.chunk.max_ns = 0;
}

static void main__on_shutdown_idle(uv_idle_t *h)
{
	struct dispatcher *d = h->data;

	uv_idle_stop(h);
	/* All terminal events are published; get them to the server, then close. */
	d->phase = PHASE_CLOSING;
	bus_flush(d->bus, 5000);
}

static void main__on_drained(void *ud)
{
	struct dispatcher *d = ud;

	/* Possibly inside a curl callback: continue from the loop. */
	uv_idle_start(&d->shutdown_idle, main__on_shutdown_idle);
}

static void main__on_grace(uv_timer_t *t)
{
	struct dispatcher *d = t->data;

	log_warn(NULL, "grace period of %lld ms over; ending %zu requests", d->cfg->shutdown_grace_ms,
		 requests_inflight(d->requests));
	requests_end_all(d->requests, CONTRACT_SHUTTING_DOWN, "the dispatcher is shutting down");
}

static void main__drain(struct dispatcher *d)
{
	if (d->phase == PHASE_DRAINING || d->phase == PHASE_CLOSING) {
		/* A second signal ends at once. */
		log_warn(NULL, "second stop signal: ending %zu requests now", requests_inflight(d->requests));
		uv_timer_stop(&d->grace_timer);
		requests_end_all(d->requests, CONTRACT_SHUTTING_DOWN, "the dispatcher is shutting down");
		return;
	}
	d->phase = PHASE_DRAINING;
	control_set_serving(d->control, false);
	sd_notify(0, "STOPPING=1");
	log_info(NULL, "draining: left the queue group, %zu requests in flight, grace %lld ms",
		 requests_inflight(d->requests), d->cfg->shutdown_grace_ms);
	bus_leave_queue(d->bus);
	main__update_status(d);
	uv_timer_start(&d->grace_timer, main__on_grace, (uint64_t)d->cfg->shutdown_grace_ms, 0);
	requests_drain(d->requests, main__on_drained, d);
}

/* Keepalives go out between keepalive_ms and keepalive_ms + a tenth of it. */
static uint64_t main__tick_ms(const struct config *c)
{
	long long ms = c->stream_keepalive_ms ? c->stream_keepalive_ms / 10 : 1000;

	return (uint64_t)(ms < 10 ? 10 : ms > 1000 ? 1000 : ms);
}

static void main__on_tick(uv_timer_t *t)
{
	struct dispatcher *d = t->data;

	if (d->requests)
		requests_tick(d->requests);
}

static void main__on_reload_key(void *ud, const char *key, bool live)
{
	(void)ud;
	if (live)
		log_info(NULL, "reload: %s changed", key);
	else
		log_warn(NULL, "reload: %s changed but needs a restart; keeping the running value", key);
}

/* SIGHUP: a new config replaces the one in force (never written over it), and
 * every module that reads it is handed the new one before the old is freed. */
static void main__reload(struct dispatcher *d)
{
	struct config *next = xcalloc(1, sizeof(*next));
	char err[512];

	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(uv_hrtime() / 1000));
	if (config_load(d->config_path, next, err, sizeof(err)) < 0) {
		log_error(NULL, "reload failed, keeping the running configuration: %s", err);
		free(next);
	} else {
		struct config *old = d->cfg;
		config_diff(old, next, main__on_reload_key, NULL);
		config_keep_restart_keys(next, old);
		d->cfg = next;
		log_set_level(d->verbose ? LOG_LVL_DEBUG : next->log_level);
		log_set_format((enum log_format)log_format_parse(next->log_format));
		pool_set_eject_after(d->pool, (int)next->pool_eject_after);
		control_set_config(d->control, next);
		requests_set_config(d->requests, next);
		requests_check_admission(d->requests);
		uv_timer_start(&d->tick_timer, main__on_tick, main__tick_ms(next), main__tick_ms(next));
		config_free(old);
		free(old);
		log_info(NULL, "reload: configuration re-read from %s", d->config_path ? d->config_path : "(defaults)");
	}
	sd_notify(0, "READY=1");
	main__update_status(d);
}

static void main__on_signal(uv_signal_t *s, int signum)
{
	struct dispatcher *d = s->data;

	if (signum == SIGHUP)
		main__reload(d);
	else if (signum == SIGUSR1)
		main__log_metrics(d);
	else
		main__drain(d);
}

static void main__on_watchdog(uv_timer_t *t)
{
	(void)t;
	sd_notify(0, "WATCHDOG=1");
}

/* $SRV.PING / INFO / STATS: answered by every instance, whatever its phase. */
static void main__srv(struct dispatcher *d, const struct bus_msg *msg)
{
	enum srv_verb verb = srv_match(msg->subject, d->cfg->instance_id);
	const struct contract_subjects *s = bus_subjects(d->bus);
	const struct modelcfg *m = d->models.active;

	if (verb == SRV_NONE || !msg->reply)
		return;
	const struct srv_identity id = {
		.id = d->cfg->instance_id,
		.version = SUNDYNIX_VERSION,
		.started = d->started,
		.subject_prefix = d->cfg->subject_prefix,
		.queue_group = d->cfg->queue_group,
		.submit_subject = s->submit,
		.probe_subject = s->probe,
	};
	const struct srv_figures f = {
		.state = main__phase_name(d),
		.in_flight = d->requests ? requests_inflight(d->requests) : 0,
		.model = m->ready ? m->model : "",
		.provider = m->ready ? (*m->provider ? m->provider : "openai") : "",
		.has_revision = d->models.have_revision,
		.revision = d->models.revision,
	};
	struct buf b;
	buf_init(&b);
	srv_encode(&b, verb, &id, &d->metrics, &f);
	(void)!bus_publish(d->bus, msg->reply, b.data, b.len);
	buf_free(&b);
}

/* httpd: GET /metrics. */
static void main__prom(void *ud, struct buf *out)
{
	struct dispatcher *d = ud;
	struct bus_stats bs;

	bus_get_stats(d->bus, &bs);
	const struct prom_sources src = {
		.metrics = &d->metrics,
		.bus = &bs,
		.pool = d->pool,
		.models = &d->models,
		.in_flight = d->requests ? requests_inflight(d->requests) : 0,
		.now_ms = uv_now(d->loop),
		.start_time = d->start_time,
		.version = SUNDYNIX_VERSION,
	};
	prom_write(out, &src);
}

/* httpd: GET /readyz. Ready: serving, NATS connected, in the submit queue
 * group as the server confirmed. */
static bool main__ready(void *ud, struct buf *why)
{
	struct dispatcher *d = ud;
	struct bus_stats bs;

	if (d->phase != PHASE_RUNNING) {
		buf_printf(why, "not ready: %s", d->phase == PHASE_STARTING ? "starting (waiting for NATS and the model config)"
									   : "shutting down");
		return false;
	}
	bus_get_stats(d->bus, &bs);
	if (!bs.connected) {
		buf_append_str(why, "not ready: NATS is not connected");
		return false;
	}
	if (!bs.joined) {
		buf_printf(why, "not ready: not in the submit queue group (full: %zu requests in flight)",
			   requests_inflight(d->requests));
		return false;
	}
	return true;
}

static void main__on_bus(void *ud, enum bus_event ev, const struct bus_msg *msg)
{
	struct dispatcher *d = ud;

	switch (ev) {
	case BUS_SUBMIT:
		/* Also while closing: refused busy, never left unanswered. */
		if (d->requests)
			requests_submit(d->requests, msg->data, msg->len, msg->reply);
		break;
	case BUS_CANCEL:
		requests_cancel(d->requests, msg->data, msg->len);
		break;
	case BUS_REPLAY:
		requests_replay(d->requests, msg->data, msg->len, msg->reply);
		break;
	case BUS_CONFIG_UPDATE:
		control_model(d->control, msg->data, msg->len, "broadcast");
		break;
	case BUS_CONFIG_REPLY:
		control_model(d->control, msg->data, msg->len, "control plane reply");
		break;
	case BUS_PROBE:
		control_probe(d->control, msg);
		break;
	case BUS_CONNECTED:
		control_connected(d->control);
		break;
	case BUS_READY:
		if (d->phase != PHASE_STARTING)
			break; /* a stop came first: stay stopping */
		log_info(NULL, "dispatcher ready: subscriptions confirmed by the NATS server");
		d->phase = PHASE_RUNNING;
		control_set_serving(d->control, true);
		sd_notify(0, "READY=1");
		main__update_status(d);
		break;
	case BUS_DISCONNECTED:
		log_warn(NULL, "nats: disconnected; events are buffered until the reconnect");
		break;
	case BUS_RECONNECTED:
		log_info(NULL, "nats: reconnected");
		control_reconnected(d->control);
		break;
	case BUS_FATAL:
		log_error(NULL, "cannot start: %s", bus_fatal_reason(d->bus));
		d->exit_status = 1;
		main__teardown(d);
		break;
	case BUS_CLOSED:
		if (d->phase != PHASE_CLOSING) {
			log_error(NULL, "nats: connection closed for good (check credentials and permissions); exiting");
			d->exit_status = 1;
			requests_end_all(d->requests, CONTRACT_SHUTTING_DOWN, "the dispatcher lost NATS");
			main__teardown(d);
		}
		break;
	case BUS_FLUSHED:
		if (d->phase == PHASE_CLOSING)
			main__teardown(d);
		break;
	case BUS_SRV:
		main__srv(d, msg);
		break;
	}
}

/* The real request_ops: the bus, curl and the stub on the loop. */
static uint64_t main__op_now(void *ud)
{
	return uv_now(((struct dispatcher *)ud)->loop);
}

static void main__op_publish(void *ud, const char *subject, const char *data, size_t len)
{
	(void)!bus_publish(((struct dispatcher *)ud)->bus, subject, data, len);
}

static struct upstream *main__op_upstream_start(void *ud, struct upstream_params *p, const struct upstream_cbs *cbs,
						void *cb_ud)
{
	return upstream_start(((struct dispatcher *)ud)->http, p, cbs, cb_ud);
}

static void main__op_upstream_cancel(void *ud, struct upstream *u)
{
	(void)ud;
	upstream_cancel(u);
}

static struct stub *main__op_stub_start(void *ud, char *text, long long ttft_ms, long long inter_ms,
					const struct upstream_cbs *cbs, void *cb_ud)
{
	return stub_start(((struct dispatcher *)ud)->loop, text, ttft_ms, inter_ms, cbs, cb_ud);
}

static void main__op_stub_cancel(void *ud, struct stub *s)
{
	(void)ud;
	stub_cancel(s);
}

static void main__op_admission(void *ud, bool open)
{
	bus_set_admission(((struct dispatcher *)ud)->bus, open);
}

static void main__close_cb(uv_handle_t *h)
{
	(void)h;
}

static void main__teardown(struct dispatcher *d)
{
	if (d->torn_down)
		return;
	d->torn_down = true;
	d->phase = PHASE_CLOSING;
	uv_handle_t *handles[] = {
		(uv_handle_t *)&d->tick_timer,    (uv_handle_t *)&d->grace_timer,   (uv_handle_t *)&d->watchdog_timer,
		(uv_handle_t *)&d->status_timer,
		(uv_handle_t *)&d->shutdown_idle, (uv_handle_t *)&d->sig_term,      (uv_handle_t *)&d->sig_int,
		(uv_handle_t *)&d->sig_hup,       (uv_handle_t *)&d->sig_usr1,
	};
	for (size_t i = 0; i < UTIL_ARRAY_LEN(handles); i++)
		uv_close(handles[i], main__close_cb);
	requests_free(d->requests);
	d->requests = NULL;
	control_close(d->control);
	d->control = NULL;
	probe_free(d->probe);
	d->probe = NULL;
	http_free(d->http);
	d->http = NULL;
	httpd_close(d->httpd);
	d->httpd = NULL;
	bus_close(d->bus);
	main__log_metrics(d);
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

static void main__log_startup(struct dispatcher *d)
{
	const struct contract_subjects *s = bus_subjects(d->bus);
	struct buf servers;
	char desc[768];

	buf_init(&servers);
	for (size_t i = 0; i < d->cfg->nats_servers.n; i++) {
		char url[512];
		util_url_strip_userinfo(d->cfg->nats_servers.v[i], url, sizeof(url));
		buf_printf(&servers, "%s%s", i ? "," : "", url);
	}
	control_describe_model(d->models.active, desc, sizeof(desc));
	log_info(NULL,
		 "sundynix-dispatcher %s starting: instance=%s nats=%s submit=%s queue=%s cancel=%s stream=%s<request_id> "
		 "config=%s,%s model: %s",
		 SUNDYNIX_VERSION, d->cfg->instance_id, servers.data, s->submit, d->cfg->queue_group, s->cancel,
		 s->stream_prefix, s->config_get, s->config_updated, desc);
	buf_free(&servers);
}

static void main__init_handles(struct dispatcher *d)
{
	uv_timer_init(d->loop, &d->tick_timer);
	uv_timer_init(d->loop, &d->grace_timer);
	uv_timer_init(d->loop, &d->watchdog_timer);
	uv_timer_init(d->loop, &d->status_timer);
	uv_idle_init(d->loop, &d->shutdown_idle);
	d->tick_timer.data = d->grace_timer.data = d->watchdog_timer.data = d->status_timer.data = d;
	d->shutdown_idle.data = d;
	struct {
		uv_signal_t *h;
		int signum;
	} sigs[] = { { &d->sig_term, SIGTERM }, { &d->sig_int, SIGINT }, { &d->sig_hup, SIGHUP }, { &d->sig_usr1, SIGUSR1 } };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(sigs); i++) {
		uv_signal_init(d->loop, sigs[i].h);
		sigs[i].h->data = d;
		uv_signal_start(sigs[i].h, main__on_signal, sigs[i].signum);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' }, { "check-config", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },      { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },         { "config-reference", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	struct dispatcher dd = { 0 }, *d = &dd;
	bool check_only = false, verbose = false;
	char err[1024];
	uint64_t wd_usec = 0;
	int opt;

	/* libnats 3.4 frees TLS state that OpenSSL's atexit handler frees again
	 * (nats-io/nats.c#904): once NATS TLS was used, exit crashed. OpenSSL
	 * must not register that handler; the process is ending anyway. */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	while ((opt = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': d->config_path = optarg; break;
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
	if (!d->config_path && access(MAIN_CONFIG_DEFAULT, F_OK) == 0)
		d->config_path = MAIN_CONFIG_DEFAULT;

	log_init();
	d->cfg = xcalloc(1, sizeof(*d->cfg));
	if (config_load(d->config_path, d->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "sundynix-dispatcher: configuration error: %s\n", err);
		free(d->cfg);
		return 2;
	}
	if (check_only) {
		printf("%s: configuration OK\n", d->config_path ? d->config_path : "(built-in defaults)");
		config_free(d->cfg);
		free(d->cfg);
		return 0;
	}
	d->verbose = verbose;
	log_set_level(verbose ? LOG_LVL_DEBUG : d->cfg->log_level);
	log_set_format((enum log_format)log_format_parse(d->cfg->log_format));
	signal(SIGPIPE, SIG_IGN);
	main__raise_nofile();

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "sundynix-dispatcher: cannot initialise libcurl\n");
		return 1;
	}
	d->loop = uv_default_loop();
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	d->start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	srv_rfc3339(d->start_time, d->started, sizeof(d->started));
	metrics_init(&d->metrics);
	modelcfg_store_init(&d->models);
	d->http = http_new(d->loop, (long)d->cfg->limits_max_connections_per_endpoint);
	d->probe = probe_new(d->http);
	d->pool = pool_new((int)d->cfg->pool_eject_after);
	main__init_handles(d);

	d->bus = bus_open(d->loop, d->cfg, main__on_bus, d, err, sizeof(err));
	if (!d->bus) {
		log_error(NULL, "cannot start: %s", err);
		d->exit_status = 1;
		main__teardown(d);
		goto out;
	}
	const struct control_hooks hooks = { main__on_model_known, main__on_model_applied, d };
	d->control = control_new(d->loop, d->bus, d->probe, d->pool, &d->models, d->cfg, &hooks, &d->metrics);
	d->ops = (struct request_ops){
		.now_ms = main__op_now,
		.publish = main__op_publish,
		.upstream_start = main__op_upstream_start,
		.upstream_cancel = main__op_upstream_cancel,
		.stub_start = main__op_stub_start,
		.stub_cancel = main__op_stub_cancel,
		.admission = main__op_admission,
		.ud = d,
	};
	d->requests = requests_new(&d->ops, bus_subjects(d->bus), &d->models, d->pool, d->cfg, &d->metrics);
	main__log_startup(d);
	if (*d->cfg->metrics_listen) {
		const struct httpd_hooks hh = { main__prom, main__ready, d };
		d->httpd = httpd_start(d->loop, d->cfg->metrics_listen, &hh);
	}

	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0)
		uv_timer_start(&d->watchdog_timer, main__on_watchdog, wd_usec / 2000, wd_usec / 2000);
	uv_timer_start(&d->status_timer, main__on_status_timer, 2000, 2000);
	uv_timer_start(&d->tick_timer, main__on_tick, main__tick_ms(d->cfg), main__tick_ms(d->cfg));

out:
	uv_run(d->loop, UV_RUN_DEFAULT);
	uv_loop_close(d->loop);
	bus_free(d->bus);
	modelcfg_store_free(&d->models);
	pool_free(d->pool);
	metrics_free(&d->metrics);
	config_free(d->cfg);
	free(d->cfg);
	curl_global_cleanup();
	return d->exit_status;
}
