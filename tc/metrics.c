/* Counters and histograms of sinter-tc (see tc/metrics.h). */
#include "tc/metrics.h"

static const uint64_t bounds[SINTER_TC_HIST_N - 1] = SINTER_TC_HIST_BOUNDS;

const uint64_t *sinter_tc_hist_bounds(void)
{
    return bounds;
}

void sinter_tc_hist_observe(struct sinter_tc_hist *h, uint64_t ms)
{
    unsigned i = 0;
    while (i < SINTER_TC_HIST_N - 1 && ms > bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ms, ms, memory_order_relaxed);
}
