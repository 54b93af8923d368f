/* prom: the Prometheus text exposition (format 0.0.4) of everything the
 * dispatcher measures, built at scrape time: the counters and histograms of
 * metrics, the pool's health per endpoint of the active model, the model
 * config, the bus, and the process (from /proc/self, as the Prometheus client
 * libraries name those figures). Label values are bounded: outcomes, kinds,
 * the active model's endpoints (base URLs without userinfo), never a request
 * id or a key. Reads only; loop thread. */
#ifndef SUNDYNIX_PROM_H
#define SUNDYNIX_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct bus_stats;
struct metrics;
struct modelcfg_store;
struct pool;

struct prom_sources {
	const struct metrics *metrics;
	const struct bus_stats *bus; /* NULL before the bus exists */
	struct pool *pool;
	const struct modelcfg_store *models;
	size_t in_flight;
	uint64_t now_ms;   /* the pool's clock (loop ms), for ejections */
	double start_time; /* seconds since the epoch */
	const char *version;
};

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

void prom_write(struct buf *out, const struct prom_sources *s);
/* Appends v as a label value: backslash, double quote and newline escaped. */
void prom_label_value(struct buf *out, const char *v);

#endif
