/*
 * tc/metrics.h — the coordinator's counters and latency histograms (internal to tc/).
 *
 * Plain C11 atomics, updated from any thread with relaxed ordering (a scrape may see one counter a
 * moment before another; Prometheus tolerates that) and rendered in Prometheus text format by the
 * HTTP endpoint. Gauges that live in the replicated state (globals by status) or in the raft host
 * (term, commit and apply index) are read at scrape time instead, not duplicated here.
 */
#ifndef SINTER_TC_METRICS_H
#define SINTER_TC_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "tc/config.h"

/* Upper bounds (ms) of the histogram buckets; the last bucket is +Inf. Spaced for phase 2, whose
 * latency runs from a millisecond (an RM polling already) to hours (retries with backoff). */
#define SINTER_TC_HIST_BOUNDS                                                                      \
    {                                                                                              \
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 60000, 600000                 \
    }
#define SINTER_TC_HIST_N 16 /* 15 bounds + the +Inf bucket */

struct sinter_tc_hist {
    _Atomic uint64_t bucket[SINTER_TC_HIST_N]; /* NOT cumulative: bucket i counts bound[i-1] < v
                                                  <= bound[i]; rendering accumulates */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ms;
};

struct sinter_tc_metrics {
    /* Client requests handled, by message code (index = code, codes >= 256 not counted). */
    _Atomic uint64_t requests[256];
    /* Requests answered with an error, by result code. */
    _Atomic uint64_t errors[SINTER_ERROR_COUNT];
    /* Phase 2 (leader's driver): work items handed to RMs, retries scheduled (retryable outcome
     * or expired lease), leases that expired, Phase2Reports received by BranchStatus (index =
     * status, counted on the node that received them, before they are applied). */
    _Atomic uint64_t phase2_deliveries;
    _Atomic uint64_t phase2_retries;
    _Atomic uint64_t phase2_lease_expired;
    _Atomic uint64_t phase2_reports[SINTER_BS_MAX + 1];
    /* From the decision applied to the global's final status, per global (leader's view). */
    struct sinter_tc_hist phase2_latency;
    /* Leader-only workers: timeout decisions applied (Begin -> TimeoutRollbacking), globals ended
     * in *RetryTimeout, globals removed by retention GC (counted by the leader that proposed). */
    _Atomic uint64_t timeouts;
    _Atomic uint64_t retry_timeouts;
    _Atomic uint64_t gc_removed;
    /* Client writes answered from their proposal's completion with the result (the plain reply
     * path), and the sum of their time on this node: handler start (request decoded) -> reply
     * written. Against sinter_raft_proposal_*_seconds_total it shows what the RPC layer adds. */
    _Atomic uint64_t write_replies;
    _Atomic uint64_t write_reply_ns;
    /* Leadership changes seen per group (a new non-zero leader reported by the host). */
    _Atomic uint64_t leader_changes[SINTER_TC_MAX_GROUPS];
};

/* Adds one observation of ms to h. Any thread. */
void sinter_tc_hist_observe(struct sinter_tc_hist *h, uint64_t ms);

/* The bucket bounds (SINTER_TC_HIST_N - 1 of them, ascending). Static array. */
const uint64_t *sinter_tc_hist_bounds(void);

#endif /* SINTER_TC_METRICS_H */
