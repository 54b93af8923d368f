/* srv: the NATS services protocol (ADR-32, "micro" v1) for the dispatcher,
 * which nats.c 3.4 lacks. Every instance answers $SRV.PING, $SRV.INFO and
 * $SRV.STATS, each also with ".sundynix-dispatcher" and
 * ".sundynix-dispatcher.<instance_id>" appended, with the io.nats.micro.v1
 * ping/info/stats_response bodies. The endpoints are the submit and probe
 * subjects with their queue group. Pure: decides and encodes; the bus
 * subscribes ($SRV.>) and main publishes the answer. */
#ifndef SUNDYNIX_SRV_H
#define SUNDYNIX_SRV_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct metrics;

#define SRV_NAME "sundynix-dispatcher"

enum srv_verb { SRV_NONE, SRV_PING, SRV_INFO, SRV_STATS };

/* Which verb subject asks, or SRV_NONE when it is not addressed to this
 * instance (another service, another id, an unknown verb). */
enum srv_verb srv_match(const char *subject, const char *instance_id);

/* What does not change while the process runs. */
struct srv_identity {
	const char *id;             /* instance_id */
	const char *version;        /* semver */
	const char *started;        /* RFC 3339, UTC */
	const char *subject_prefix;
	const char *queue_group;
	const char *submit_subject;
	const char *probe_subject;
};

/* The dispatcher's own figures, carried in the stats' submit endpoint data. */
struct srv_figures {
	const char *state;   /* starting, serving, draining, stopping */
	size_t in_flight;
	const char *model;   /* "" when none (stub) */
	const char *provider;
	bool has_revision;
	long long revision;
};

/* Appends the answer of verb (not SRV_NONE) to out. m and f are read for
 * STATS only and may be NULL otherwise. */
void srv_encode(struct buf *out, enum srv_verb verb, const struct srv_identity *id, const struct metrics *m,
		const struct srv_figures *f);
/* Writes t (seconds since the epoch, with a fraction) as RFC 3339 UTC with
 * milliseconds: "2026-11-26T12:00:00.123Z". */
void srv_rfc3339(double t, char *out, size_t outlen);

#endif
