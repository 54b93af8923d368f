/* prom: see include/prom.h. Every family gets its HELP and TYPE lines, even
 * with no sample yet, so a dashboard finds it from the first scrape. */
#include "prom.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bus.h"
#include "metrics.h"
#include "modelcfg.h"
#include "pool.h"

static void prom__family(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom__u64(struct buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	prom__family(out, name, type, help);
	buf_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

void prom_label_value(struct buf *out, const char *v)
{
	buf_append_char(out, '"');
	for (; *v; v++) {
		if (*v == '\\')
			buf_append_str(out, "\\\\");
		else if (*v == '"')
			buf_append_str(out, "\\\"");
		else if (*v == '\n')
			buf_append_str(out, "\\n");
		else
			buf_append_char(out, *v);
	}
	buf_append_char(out, '"');
}

static void prom__mshist(struct buf *out, const char *name, const char *help, const struct metrics_mshist *h)
{
	uint64_t cum = 0;

	prom__family(out, name, "histogram", help);
	for (int i = 0; i < METRICS_MS_BUCKETS; i++) {
		cum += h->buckets[i];
		buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i] / 1000.0, (unsigned long long)cum);
	}
	buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.3f\n%s_count %llu\n", name,
		   (unsigned long long)h->count, name, (double)h->sum_ms / 1000.0, name,
		   (unsigned long long)h->count);
}

/* The log2 nanosecond histogram, from 256 ns to about 134 ms; the buckets
 * below and above fold into the first and +Inf. */
static void prom__nshist(struct buf *out, const char *name, const char *help, const struct metrics_hist *h)
{
	uint64_t cum = 0;

	prom__family(out, name, "histogram", help);
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		cum += h->buckets[b];
		if (b < 7 || b > 26)
			continue;
		buf_printf(out, "%s_bucket{le=\"%.9g\"} %llu\n", name, (double)(1ull << (b + 1)) / 1e9,
			   (unsigned long long)cum);
	}
	buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
		   (unsigned long long)h->count, name, (double)h->sum_ns / 1e9, name, (unsigned long long)h->count);
}

static void prom__requests(struct buf *out, const struct prom_sources *s)
{
	const struct metrics *m = s->metrics;

	prom__family(out, "sundynix_requests_total", "counter",
		     "Chat submits answered, by how they ended: done, or the error code (refusals included).");
	for (int c = 0; c < METRICS_OUTCOMES; c++)
		if (metrics_outcome_used((enum contract_code)c))
			buf_printf(out, "sundynix_requests_total{outcome=\"%s\"} %llu\n",
				   metrics_outcome_name((enum contract_code)c), (unsigned long long)m->outcomes[c]);
	prom__u64(out, "sundynix_requests_accepted_total", "counter", "Chat submits accepted (acked).", m->accepted);
	prom__u64(out, "sundynix_requests_in_flight", "gauge", "Requests accepted and not yet ended.", s->in_flight);
	prom__u64(out, "sundynix_busy_refusals_total", "counter",
		  "Submits refused with busy (full, or draining); also in sundynix_requests_total{outcome=\"busy\"}.",
		  m->busy);
	prom__mshist(out, "sundynix_time_to_first_token_seconds",
		     "From accepting a request to relaying its first token or reasoning delta.", &m->ttft);
	prom__mshist(out, "sundynix_request_duration_seconds",
		     "From accepting a request to its terminal event (done or error).", &m->duration);
	prom__family(out, "sundynix_deltas_relayed_total", "counter", "Stream events relayed, by kind.");
	buf_printf(out, "sundynix_deltas_relayed_total{kind=\"token\"} %llu\n", (unsigned long long)m->tokens);
	buf_printf(out, "sundynix_deltas_relayed_total{kind=\"reasoning\"} %llu\n", (unsigned long long)m->reasoning);
	prom__u64(out, "sundynix_backend_received_bytes_total", "counter",
		  "Response bytes read from backends (streams and error bodies).", m->backend_bytes);
	prom__nshist(out, "sundynix_chunk_overhead_seconds",
		     "Per relayed delta: from the curl write callback receiving its bytes to the NATS publish.",
		     &m->chunk);
	prom__u64(out, "sundynix_probe_requests_total", "counter", "Probe subject requests answered.",
		  m->probe.requests);
	prom__u64(out, "sundynix_probe_errors_total", "counter",
		  "Probe subject requests answered not ok (refused, or an endpoint failed).", m->probe.errors);
}

/* One series per distinct endpoint label of the active model; two base
 * URLs that differ only in userinfo share a label, and their figures add. */
struct prom__ep {
	char label[512];
	uint64_t attempts, failures, ejections, requests, retries;
	long outstanding;
	int ejected, probe; /* probe: -1 never probed */
};

static void prom__endpoints(struct buf *out, const struct prom_sources *s)
{
	const struct modelcfg *cfg = s->models->active;
	size_t n = cfg->ready ? cfg->nendpoints : 0, k = 0;
	struct prom__ep *eps = n ? xcalloc(n, sizeof(*eps)) : NULL;

	for (size_t i = 0; i < n; i++) {
		char label[512];
		size_t j;
		util_url_strip_userinfo(cfg->endpoints[i].base_url, label, sizeof(label));
		for (j = 0; j < k && strcmp(eps[j].label, label); j++)
			;
		struct prom__ep *e = &eps[j];
		if (j == k) {
			k++;
			snprintf(e->label, sizeof(e->label), "%s", label);
			e->probe = -1;
			const struct metrics_ep *me = metrics_find_endpoint(s->metrics, label);
			if (me) {
				e->requests = me->requests;
				e->retries = me->retries;
			}
		}
		/* The same base_url twice in a config is one pool entry. */
		bool seen = false;
		for (size_t p = 0; p < i && !seen; p++)
			seen = !strcmp(cfg->endpoints[p].base_url, cfg->endpoints[i].base_url);
		struct pool_ep *pe = seen ? NULL : pool_find(s->pool, cfg->endpoints[i].base_url);
		if (!pe)
			continue;
		e->attempts += pe->picks;
		e->failures += pe->failures;
		e->ejections += pe->ejections_total;
		e->outstanding += pe->outstanding;
		if (pe->ejected_until > s->now_ms)
			e->ejected = 1;
		if (pe->last_probe != POOL_PROBE_NONE)
			e->probe = (e->probe == 0 ? 0 : 1) & (pe->last_probe == POOL_PROBE_OK);
	}

	static const struct {
		const char *name, *type, *help;
	} fam[] = {
		{ "sundynix_endpoint_requests_total", "counter", "Requests whose last attempt went to this endpoint." },
		{ "sundynix_endpoint_attempts_total", "counter", "Attempts sent to this endpoint (retries included)." },
		{ "sundynix_endpoint_retries_total", "counter",
		  "Attempts on this endpoint that failed before any token and were retried on another." },
		{ "sundynix_endpoint_failures_total", "counter",
		  "Attempts and active probes that failed (connect, 5xx, 429, no first token)." },
		{ "sundynix_endpoint_outstanding", "gauge", "Attempts in progress on this endpoint." },
		{ "sundynix_endpoint_ejected", "gauge", "1 while the endpoint is out of rotation after failures." },
		{ "sundynix_endpoint_ejections_total", "counter", "Times the endpoint was taken out of rotation." },
		{ "sundynix_endpoint_probe_up", "gauge",
		  "The active probe's last verdict: 1 answered, 0 failed (absent until probed)." },
	};
	for (size_t f = 0; f < UTIL_ARRAY_LEN(fam); f++) {
		prom__family(out, fam[f].name, fam[f].type, fam[f].help);
		for (size_t j = 0; j < k; j++) {
			const struct prom__ep *e = &eps[j];
			long long v;
			switch (f) {
			case 0: v = (long long)e->requests; break;
			case 1: v = (long long)e->attempts; break;
			case 2: v = (long long)e->retries; break;
			case 3: v = (long long)e->failures; break;
			case 4: v = e->outstanding; break;
			case 5: v = e->ejected; break;
			case 6: v = (long long)e->ejections; break;
			default:
				if (e->probe < 0)
					continue;
				v = e->probe;
			}
			buf_printf(out, "%s{model=", fam[f].name);
			prom_label_value(out, cfg->model);
			buf_append_str(out, ",endpoint=");
			prom_label_value(out, e->label);
			buf_printf(out, "} %lld\n", v);
		}
	}
	free(eps);
}

static void prom__model(struct buf *out, const struct prom_sources *s)
{
	const struct modelcfg_store *st = s->models;
	const struct modelcfg *m = st->active;

	prom__u64(out, "sundynix_model_ready", "gauge",
		  "1 when a model config is in force, 0 when requests get the stub.", m->ready ? 1 : 0);
	prom__family(out, "sundynix_model_info", "gauge", "The model config in force (only while one is).");
	if (m->ready) {
		buf_append_str(out, "sundynix_model_info{model=");
		prom_label_value(out, m->model);
		buf_append_str(out, ",provider=");
		prom_label_value(out, *m->provider ? m->provider : "openai");
		buf_append_str(out, "} 1\n");
	}
	prom__family(out, "sundynix_model_config_revision", "gauge",
		     "The highest model config revision applied (absent until one with a revision).");
	if (st->have_revision)
		buf_printf(out, "sundynix_model_config_revision %lld\n", st->revision);
	prom__family(out, "sundynix_model_config_updates_total", "counter",
		     "Model configs received (startup answers and broadcasts), by what became of them.");
	buf_printf(out, "sundynix_model_config_updates_total{result=\"applied\"} %llu\n", st->applied);
	buf_printf(out, "sundynix_model_config_updates_total{result=\"stale\"} %llu\n", st->stale);
	buf_printf(out, "sundynix_model_config_updates_total{result=\"invalid\"} %llu\n", st->invalid);
}

static void prom__nats(struct buf *out, const struct bus_stats *b)
{
	static const struct bus_stats none;

	if (!b)
		b = &none;
	prom__u64(out, "sundynix_nats_connected", "gauge", "1 while the NATS connection is up.", b->connected);
	prom__u64(out, "sundynix_nats_submit_queue_joined", "gauge",
		  "1 while in the submit queue group (confirmed by the server; 0 when full, starting or draining).",
		  b->joined);
	prom__u64(out, "sundynix_nats_reconnects_total", "counter", "Reconnects to NATS.", b->reconnects);
	prom__u64(out, "sundynix_nats_publish_errors_total", "counter", "Publishes nats.c refused.", b->publish_errors);
	prom__u64(out, "sundynix_nats_reconnect_buffer_bytes", "gauge",
		  "Bytes published while disconnected, waiting in the reconnect buffer.", (uint64_t)b->buffered);
	prom__u64(out, "sundynix_nats_submit_queue_leaves_total", "counter",
		  "Times the dispatcher left the submit queue group because it was full.", b->admission_leaves);
	prom__u64(out, "sundynix_nats_submit_queue_rejoins_total", "counter",
		  "Times it rejoined the submit queue group below limits.rejoin_below_pct.", b->admission_rejoins);
	prom__family(out, "sundynix_nats_messages_total", "counter", "NATS messages, by direction.");
	buf_printf(out, "sundynix_nats_messages_total{direction=\"in\"} %llu\n", b->in_msgs);
	buf_printf(out, "sundynix_nats_messages_total{direction=\"out\"} %llu\n", b->out_msgs);
	prom__family(out, "sundynix_nats_bytes_total", "counter", "NATS payload bytes, by direction.");
	buf_printf(out, "sundynix_nats_bytes_total{direction=\"in\"} %llu\n", b->in_bytes);
	buf_printf(out, "sundynix_nats_bytes_total{direction=\"out\"} %llu\n", b->out_bytes);
}

/* /proc/self/stat: utime (14), stime (15), vsize (23), rss (24), counted
 * from after the command name, which may hold blanks and parentheses. */
static void prom__process(struct buf *out, const struct prom_sources *s)
{
	char text[1024];
	unsigned long long utime = 0, stime = 0, vsize = 0;
	long long rss = 0;
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/proc/self/stat", "re");

	if (f) {
		size_t n = fread(text, 1, sizeof(text) - 1, f);
		text[n] = '\0';
		fclose(f);
		char *p = strrchr(text, ')');
		/* Fields 3..: state ppid pgrp session tty tpgid flags minflt
		 * cminflt majflt cmajflt utime stime cutime cstime priority nice
		 * threads itrealvalue starttime vsize rss */
		if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
					"%*u %llu %lld", &utime, &stime, &vsize, &rss) != 4)
			utime = stime = vsize = 0, rss = 0;
	}
	size_t fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				fds++;
		closedir(d);
		fds--; /* the directory's own descriptor */
	}
	struct rlimit rl = { 0, 0 };
	getrlimit(RLIMIT_NOFILE, &rl);

	prom__family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
	buf_printf(out, "process_cpu_seconds_total %.2f\n", ticks > 0 ? (double)(utime + stime) / (double)ticks : 0.0);
	prom__u64(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
		  (uint64_t)(rss > 0 ? rss : 0) * (uint64_t)(page > 0 ? page : 4096));
	prom__u64(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
	prom__u64(out, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
	prom__family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
	buf_printf(out, "process_max_fds %.0f\n", rl.rlim_cur == RLIM_INFINITY ? 1e18 : (double)rl.rlim_cur);
	prom__family(out, "process_start_time_seconds", "gauge",
		     "Start time of the process since unix epoch in seconds.");
	buf_printf(out, "process_start_time_seconds %.3f\n", s->start_time);
}

void prom_write(struct buf *out, const struct prom_sources *s)
{
	prom__family(out, "sundynix_build_info", "gauge", "The dispatcher's version (always 1).");
	buf_append_str(out, "sundynix_build_info{version=");
	prom_label_value(out, s->version);
	buf_append_str(out, "} 1\n");
	prom__requests(out, s);
	prom__endpoints(out, s);
	prom__model(out, s);
	prom__nats(out, s->bus);
	prom__process(out, s);
}
