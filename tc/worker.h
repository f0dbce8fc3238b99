/*
 * tc/worker.h — the coordinator's leader-only workers and the RM-facing phase-2 service (internal
 * to tc/; docs/phase2-protocol.md is the contract with RMs).
 *
 * Per raft group, while this node leads it (started from the host's on_role, dropped when the
 * node stops leading; everything on the raft loop thread, which owns the group's fsm):
 *   - timeout rollback: Begin globals past begin + timeout + max_clock_skew_ms get DECIDE
 *     TimeoutRollbacking, and a new leader first waits max_clock_skew_ms (docs/architecture.md
 *     "Time");
 *   - phase-2 driver: branches of decided globals are handed to polling RMs under a lease, retried
 *     with backoff and jitter, and their globals ended in *RetryTimeout past the deadline; the
 *     scheduling decisions are in tc/phase2_sched.c (pure). Event-driven from applied results (a
 *     DECIDE makes its branches due at once, a BRANCH_RESULT ends or reschedules its branch) plus a
 *     cursor-based rescan of the decided globals (list_phase2 pages) after every leadership change
 *     and every SCAN_PERIOD_MS, so a new leader continues where the old one stood;
 *   - retention GC: GC commands with cutoffs now - retention_ms / now - client_retention_ms, in
 *     batches, repeated while a batch was full.
 * Per node: Phase2Poll waiters (held up to wait_ms, answered with items of the groups this node
 * leads as soon as there are some), GlobalCommit / GlobalRollback replies parked for
 * SINTER_PROTO_END_WAIT_PHASE2 until their global ends, and the registry's idle sweep.
 */
#ifndef SINTER_TC_WORKER_H
#define SINTER_TC_WORKER_H

#include <stdint.h>

#include "sinter/proto.h"
#include "sinter/transport.h"
#include "tc/fsm.h"
#include "tc/server_int.h"

/* Default bound of a WAIT_PHASE2 wait (wait_ms 0) and the largest accepted. */
#define SINTER_TC_END_WAIT_DEFAULT_MS 30000u
#define SINTER_TC_END_WAIT_MAX_MS     600000u
/* Phase2Poll wait_ms is clamped to 1..this (docs/phase2-protocol.md). */
#define SINTER_TC_POLL_WAIT_MAX_MS 30000u

/* Wall clock in ms (CLOCK_REALTIME): what the leader stamps into commands, and what is compared
 * with replicated times (timeouts, retention cutoffs, the phase-2 deadline). Any thread. */
uint64_t sinter_tc_wall_ms(void);

/* Monotonic clock in ms (CLOCK_MONOTONIC, never 0): every in-memory timer (leases, backoff,
 * Phase2Poll and WAIT_PHASE2 deadlines, "led for max_clock_skew_ms", GC and scan periods, the
 * registry's idle sweep), so an NTP step neither expires them all at once nor freezes them.
 * Any thread. */
uint64_t sinter_tc_mono_ms(void);

/* The same clock in ns (CLOCK_MONOTONIC): durations for the metrics. Any thread. */
uint64_t sinter_tc_mono_ns(void);

/* The host reported a role for g (loop thread): starts g's workers when this node became leader
 * (or leader of a new term), drops them otherwise. Failure to start (ENOMEM) is logged and
 * retried on the next tick. A group whose store or apply failed is reported as a follower
 * (sinter/raft_host.h): its workers stop, and its parked WAIT_PHASE2 replies are answered with
 * the group's error (found with a sinter_raft_host_call, which fails with it). */
void sinter_tc_worker_role(struct tc_group *g, uint32_t role, uint64_t term);

/* A Phase2Report proposed on this node was applied (loop thread, from the proposal's
 * completion): a retryable outcome reschedules its branch only when it answers the delivery in
 * flight (attempt matches the leased branch's); a late or repeated report changes nothing here
 * (the state machine recorded it). Reads p. */
void sinter_tc_worker_reported(struct tc_group *g, const struct sinter_proto_phase2_report *p);

/* The fsm applied entries e[0..n) with results r[0..n) (loop thread, every replica): wakes parked
 * WAIT_PHASE2 replies whose global ended, and on the leader feeds the phase-2 scheduler and hands
 * new work to parked pollers. */
void sinter_tc_worker_applied(struct tc_group *g, const struct sinter_tc_entry *e,
                              const struct sinter_tc_result *r, size_t n);

/* One tick of g (loop thread, from the host's on_tick): the leader's timers (leases, backoff,
 * deadlines, rescan, timeout scan, GC) and, once per tick round, the node's parked requests'
 * expiry and the registry sweep. */
void sinter_tc_worker_tick(struct tc_group *g);

/* Phase2Poll from an RPC thread: takes req (replied exactly once, possibly much later). The
 * caller checked the client is registered as RM. Errors are replied to the client. */
void sinter_tc_poll_submit(struct sinter_tc_server *s, struct sinter_transport_request *req,
                           const struct sinter_proto_msg *m);

/* Parks the reply of a GlobalCommit / GlobalRollback (code) for xid until the global reaches a
 * final status or wait_ms (0: default) passes, then replies with the status it has then (loop
 * thread). Takes req. */
void sinter_tc_end_wait(struct tc_group *g, struct sinter_transport_request *req, uint16_t code,
                        struct sinter_xid xid, uint32_t wait_ms);

/* After the raft host stopped (no loop thread any more): answers every parked request with
 * SINTER_ESHUTDOWN and frees every worker. */
void sinter_tc_workers_shutdown(struct sinter_tc_server *s);

#endif /* SINTER_TC_WORKER_H */
