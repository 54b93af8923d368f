/* srv: see include/srv.h. The bodies follow the JSON schemas of
 * io.nats.micro.v1.{ping,info,stats}_response: name, id, version, metadata
 * (strings only) in all three; description and endpoints[{name, subject,
 * queue_group, metadata}] in info; started and endpoints[{name, subject,
 * queue_group, num_requests, num_errors, last_error, processing_time,
 * average_processing_time (nanoseconds), data}] in stats. */
#include "srv.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "metrics.h"

#define SRV__PREFIX "$SRV."

enum srv_verb srv_match(const char *subject, const char *instance_id)
{
	static const struct {
		const char *word;
		enum srv_verb verb;
	} verbs[] = { { "PING", SRV_PING }, { "INFO", SRV_INFO }, { "STATS", SRV_STATS } };
	size_t plen = strlen(SRV__PREFIX), nlen = strlen(SRV_NAME);

	if (strncmp(subject, SRV__PREFIX, plen))
		return SRV_NONE;
	subject += plen;
	for (size_t i = 0; i < UTIL_ARRAY_LEN(verbs); i++) {
		size_t wlen = strlen(verbs[i].word);
		if (strncmp(subject, verbs[i].word, wlen))
			continue;
		const char *rest = subject + wlen;
		if (!*rest)
			return verbs[i].verb;
		if (*rest != '.' || strncmp(rest + 1, SRV_NAME, nlen))
			return SRV_NONE;
		rest += 1 + nlen;
		if (!*rest)
			return verbs[i].verb;
		if (*rest == '.' && !strcmp(rest + 1, instance_id))
			return verbs[i].verb;
		return SRV_NONE;
	}
	return SRV_NONE;
}

void srv_rfc3339(double t, char *out, size_t outlen)
{
	time_t sec = (time_t)t;
	long ms = (long)((t - (double)sec) * 1000.0);
	struct tm tm;
	char stamp[32];

	gmtime_r(&sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, outlen, "%s.%03ldZ", stamp, ms < 0 ? 0 : ms > 999 ? 999 : ms);
}

static void srv__str(struct buf *out, const char *key, const char *val)
{
	buf_append_json_str(out, key, strlen(key));
	buf_append_char(out, ':');
	buf_append_json_str(out, val, strlen(val));
}

static void srv__head(struct buf *out, const char *type, const struct srv_identity *id)
{
	buf_append_char(out, '{');
	srv__str(out, "type", type);
	buf_append_char(out, ',');
	srv__str(out, "name", SRV_NAME);
	buf_append_char(out, ',');
	srv__str(out, "id", id->id);
	buf_append_char(out, ',');
	srv__str(out, "version", id->version);
	buf_append_str(out, ",\"metadata\":{");
	srv__str(out, "subject_prefix", id->subject_prefix);
	buf_append_char(out, ',');
	srv__str(out, "queue_group", id->queue_group);
	buf_append_char(out, '}');
}

/* name, subject, queue_group of endpoint i (0 submit, 1 probe). */
static void srv__endpoint_head(struct buf *out, const struct srv_identity *id, int i)
{
	buf_append_char(out, '{');
	srv__str(out, "name", i == 0 ? "submit" : "probe");
	buf_append_char(out, ',');
	srv__str(out, "subject", i == 0 ? id->submit_subject : id->probe_subject);
	buf_append_char(out, ',');
	srv__str(out, "queue_group", id->queue_group);
}

static void srv__endpoint_stats(struct buf *out, const struct metrics_srv *s)
{
	buf_printf(out, ",\"num_requests\":%llu,\"num_errors\":%llu,", (unsigned long long)s->requests,
		   (unsigned long long)s->errors);
	srv__str(out, "last_error", s->last_error);
	buf_printf(out, ",\"processing_time\":%llu,\"average_processing_time\":%llu",
		   (unsigned long long)s->processing_ns,
		   (unsigned long long)(s->requests ? s->processing_ns / s->requests : 0));
}

void srv_encode(struct buf *out, enum srv_verb verb, const struct srv_identity *id, const struct metrics *m,
		const struct srv_figures *f)
{
	switch (verb) {
	case SRV_NONE:
		return;
	case SRV_PING:
		srv__head(out, "io.nats.micro.v1.ping_response", id);
		buf_append_char(out, '}');
		return;
	case SRV_INFO:
		srv__head(out, "io.nats.micro.v1.info_response", id);
		buf_append_char(out, ',');
		srv__str(out, "description", "sundynix chat dispatcher: NATS chat submits streamed from an "
					     "OpenAI-compatible backend");
		buf_append_str(out, ",\"endpoints\":[");
		for (int i = 0; i < 2; i++) {
			if (i)
				buf_append_char(out, ',');
			srv__endpoint_head(out, id, i);
			buf_append_str(out, ",\"metadata\":null}");
		}
		buf_append_str(out, "]}");
		return;
	case SRV_STATS:
		srv__head(out, "io.nats.micro.v1.stats_response", id);
		buf_append_char(out, ',');
		srv__str(out, "started", id->started);
		buf_append_str(out, ",\"endpoints\":[");
		srv__endpoint_head(out, id, 0);
		srv__endpoint_stats(out, &m->submit);
		buf_append_str(out, ",\"data\":{");
		srv__str(out, "state", f->state);
		buf_printf(out, ",\"in_flight\":%zu,\"accepted\":%llu,\"busy\":%llu,", f->in_flight,
			   (unsigned long long)m->accepted, (unsigned long long)m->busy);
		srv__str(out, "model", f->model);
		buf_append_char(out, ',');
		srv__str(out, "provider", f->provider);
		if (f->has_revision)
			buf_printf(out, ",\"revision\":%lld", f->revision);
		else
			buf_append_str(out, ",\"revision\":null");
		buf_printf(out, ",\"tokens\":%llu,\"reasoning\":%llu}},", (unsigned long long)m->tokens,
			   (unsigned long long)m->reasoning);
		srv__endpoint_head(out, id, 1);
		srv__endpoint_stats(out, &m->probe);
		buf_append_str(out, ",\"data\":{}}]}");
		return;
	}
}
