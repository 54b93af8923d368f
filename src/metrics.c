/* metrics: see include/metrics.h. */
#include "metrics.h"

void metrics_record(struct metrics_hist *h, uint64_t ns)
{
	int b = ns ? 63 - __builtin_clzll(ns) : 0;

	if (b >= METRICS_BUCKETS)
		b = METRICS_BUCKETS - 1;
	h->buckets[b]++;
	h->count++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

uint64_t metrics_quantile(const struct metrics_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (!h->count)
		return 0;
	rank = (uint64_t)(q * (double)(h->count - 1)) + 1;
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		if (seen + h->buckets[b] >= rank) {
			uint64_t lo = b ? 1ull << b : 0, hi = 1ull << (b + 1);
			double frac = (double)(rank - seen) / (double)h->buckets[b];
			uint64_t v = lo + (uint64_t)(frac * (double)(hi - lo));
			return v < h->max_ns ? v : h->max_ns;
		}
		seen += h->buckets[b];
	}
	return h->max_ns;
}

void metrics_format(const struct metrics_hist *h, struct buf *out)
{
	buf_printf(out, "count=%llu mean=%.2fus p50=%.2fus p90=%.2fus p99=%.2fus max=%.2fus |",
		   (unsigned long long)h->count, h->count ? (double)h->sum_ns / (double)h->count / 1000.0 : 0.0,
		   (double)metrics_quantile(h, 0.50) / 1000.0, (double)metrics_quantile(h, 0.90) / 1000.0,
		   (double)metrics_quantile(h, 0.99) / 1000.0, (double)h->max_ns / 1000.0);
	for (int b = 0; b < METRICS_BUCKETS; b++) {
		if (!h->buckets[b])
			continue;
		uint64_t hi = 1ull << (b + 1);
		if (hi < 1000)
			buf_printf(out, " <%lluns:%llu", (unsigned long long)hi, (unsigned long long)h->buckets[b]);
		else
			buf_printf(out, " <%.1fus:%llu", (double)hi / 1000.0, (unsigned long long)h->buckets[b]);
	}
}
