/* metrics: the daemon's own measurements, kept as log2 histograms (no
 * allocation, O(1) per sample) and reported in log lines. Today: the
 * per-chunk overhead, from the curl write callback receiving bytes to the
 * NATS publish of the event they produced. The owner of a histogram (main)
 * hands it to whoever records into it. Loop thread only. */
#ifndef SUNDYNIX_METRICS_H
#define SUNDYNIX_METRICS_H

#include <stdint.h>

#include "util.h"

#define METRICS_BUCKETS 40 /* bucket i counts samples in [2^i, 2^(i+1)) ns */

struct metrics_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t max_ns;
	uint64_t buckets[METRICS_BUCKETS];
};

void metrics_record(struct metrics_hist *h, uint64_t ns);
/* The q-quantile (0..1) in ns, interpolated inside its bucket. */
uint64_t metrics_quantile(const struct metrics_hist *h, double q);
/* "count=N mean=..us p50=..us p90=..us p99=..us max=..us | <1us:N <2us:N ..." */
void metrics_format(const struct metrics_hist *h, struct buf *out);

#endif
