/*
 * rm/rm_int.h — the RM handle's internals shared by rm/rm.c (phase one, pollers, workers) and
 * rm/tcc.c (the TCC layer). Not a public interface.
 */
#ifndef SINTER_RM_INT_H
#define SINTER_RM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sinter/client.h"
#include "sinter/rm.h"

#define RM_MAX_HANDLERS 128u

struct rm_handler {
    char *resource; /* NULL: any resource */
    uint32_t type;
    sinter_rm_phase2_fn fn;
    void *arg;
};

struct rm_item;      /* one queued work item (rm.c) */
struct rm_report;    /* one finished item's outcome, to be reported (rm.c) */
struct tcc_action;   /* rm/tcc.c */
struct sinter_rm_xa; /* rm/rm_xa.c */

struct sinter_rm {
    struct sinter_client *cl;
    struct sinter_rm_opts o; /* copy; the strings below are the handle's */
    char *app_id;
    char **resources;
    uint32_t n_resources;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;   /* queue not empty, or stopping */
    pthread_cond_t space_cv;  /* queue has room, or stopping */
    pthread_cond_t stop_cv;   /* stopping (interruptible sleeps) */
    pthread_cond_t report_cv; /* report queued, or reporters_done */
    struct rm_item *head, *tail;
    uint32_t queued, running;
    struct rm_report *rhead, *rtail;
    uint32_t reporting;  /* reports queued or being sent; count against queue_capacity */
    bool reporters_done; /* close joined the workers: reporters drain the queue and exit */
    bool started;
    atomic_bool stopping;

    pthread_t *workers;
    uint32_t n_workers;
    pthread_t *reporters;
    uint32_t n_reporters;
    atomic_bool no_batch[SINTER_CLIENT_MAX_NODES]; /* node refused Phase2ReportBatch */
    pthread_t pollers[SINTER_CLIENT_MAX_NODES];
    size_t n_pollers;
    pthread_t maint;
    bool maint_started;

    pthread_rwlock_t hlock;
    struct rm_handler handlers[RM_MAX_HANDLERS];
    uint32_t n_handlers;

    struct tcc_action *actions; /* guarded by hlock */
    struct sinter_rm_xa *xas;   /* XA resources (rm/rm_xa.c); guarded by hlock */

    struct sinter_rm_stats st; /* counters, under mu */
};

/* rm/tcc.c: one cleanup pass over every action's fence (maintenance thread), and freeing the
 * actions at close (after every worker has been joined). */
void sinter_rm_tcc_cleanup_all(struct sinter_rm *rm);
void sinter_rm_tcc_free_all(struct sinter_rm *rm);

/* rm/rm_xa.c: frees the XA resources and their pooled connections at close (after every worker
 * has been joined). */
void sinter_rm_xa_free_all(struct sinter_rm *rm);

/* rm/rm_xa.c: runs the periodic recovery scan of every XA resource whose interval has come
 * (maintenance thread); returns when the next one is due (sinter_client_now_ms() time),
 * UINT64_MAX when no resource scans periodically. Stops early once rm->stopping is set. */
uint64_t sinter_rm_xa_scan_due(struct sinter_rm *rm);

/* Test-only fault injection, not an API (hidden, declared only here): while > 0 it counts down
 * at every thread sinter_rm_start creates, and the creation that brings it to 0 fails as if
 * pthread_create had (tests/integration/clients_cluster/test_tcc_pg_cluster.c uses it to prove
 * that a failed start can be retried). 0, the default, is off. */
#pragma GCC visibility push(hidden)
extern atomic_int sinter_rm_fault_thread_create;
/* Test-only, not an API (hidden, declared only here): while true, the XA resources' async
 * PhaseOne_Done senders (rm/rm_xa.c, async_report) hold every report before its first send, so
 * a test can decide the global (rollback, timeout) or close the RM between PREPARE and the
 * report (tests/integration/xa_e2e/test_xa_async_report.c). A held report of a resource that is
 * being closed is abandoned. false, the default, is off. Compiled in like
 * sinter_rm_fault_thread_create above (the tree gates no test hook behind a define): inert
 * unless a test sets it, one atomic load per report. */
extern atomic_bool sinter_rm_xa_test_hold_reports;
/* Test-only likewise: while true, no queued report is due (the senders leave them in the queue,
 * where a phase-2 delivery can supersede them), except while closing and except a report that
 * a phase-2 rollback delivery expedited (made due at once, async_rollback_seen): that one is
 * sent, so a test can hold the rest and watch the expedited report settle. */
extern atomic_bool sinter_rm_xa_test_hold_queue;
/* Test-only likewise: when non-zero, the async queue's capacity in place of
 * SINTER_RM_XA_ASYNC_QUEUE, so a test can fill it with a few branches and see the synchronous
 * fallback (a real 4096 would need as many prepared transactions). 0, the default, is off. */
extern atomic_uint sinter_rm_xa_test_queue_cap;
/* Test-only likewise: rm/rm_xa.c's async_rollback_seen, what a phase-2 rollback delivery does
 * when it finds branch (xid, branch_id) of x not prepared yet or busy (SINTER_EBUSY): a queued
 * report of it becomes due at once (expedited), or else the sighting is remembered so that the
 * branch's later PREPARE reports synchronously. Here because a test cannot make a real delivery
 * find a branch busy after its PREPARE on demand. x stays the caller's; no errors. */
void sinter_rm_xa_test_rollback_seen(struct sinter_rm_xa *x, const struct sinter_xid *xid,
                                     uint64_t branch_id);
/* rm/rm_xa.c's phase-2 handler: whether a delivery's result (rc, the outcome it reports) ended
 * the branch on this RM, so that a queued asynchronous PhaseOne_Done report of it is dropped.
 * Not an API; here for its unit test. */
bool sinter_rm_xa_phase2_ended(int rc, uint32_t outcome);
#pragma GCC visibility pop

#endif /* SINTER_RM_INT_H */
