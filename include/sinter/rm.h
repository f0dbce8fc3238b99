/*
 * sinter/rm.h — libsinter-rm, the resource manager client (Seata's ResourceManager): registers
 * the resources this process serves, registers branches of global transactions and reports their
 * phase-one results, and runs phase 2 — commit / rollback of a branch, decided by the
 * coordinator — on the library's own threads by calling the user's handlers.
 *
 * Connection, leader following, registration (RegisterRM with the resource ids, again after a
 * node restarted) and idempotent retries (same client id and seq) are the shared client core's
 * (sinter/client.h), as in libsinter-tm.
 *
 * Phase 2 follows docs/phase2-protocol.md: one poller thread per cluster node keeps one
 * Phase2Poll outstanding there (the nodes given plus the members ClusterMeta lists, refreshed
 * every meta_refresh_ms); the work items it receives go to a bounded queue served by a pool of
 * worker threads; a worker calls the handler registered for the item's (resource id, branch
 * type) and sends one Phase2Report with the outcome to the node that delivered the item. The
 * pollers only ask for as many items as the queue has room for (back-pressure). A handler that
 * fails is reported *_Retryable and the coordinator delivers the branch again later, with
 * backoff (possibly to another instance serving the same resource).
 *
 * Handler result -> reported BranchStatus (Seata's): the table after this comment.
 */
/* clang-format off */
/*
 *  handler                                  commit delivery            rollback delivery
 *  sets *status to a phase-2 status of the  that status                that status
 *    delivery's side (e.g. from sinter_xa_*)
 *  returns SINTER_OK                        PhaseTwo_Committed (5)     PhaseTwo_Rollbacked (8)
 *  returns SINTER_ESTATE or SINTER_EFENCE   CommitFailed_Unretryable   RollbackFailed_Unretryable
 *    ("can never succeed": e.g. a confirm   (7)                        (10)
 *    after a cancel, sinter/fence.h)
 *  returns anything else (SINTER_EBUSY,     CommitFailed_Retryable (6) RollbackFailed_Retryable (9)
 *    EDB, ETIMEOUT, ...)
 *  no handler for the item                  CommitFailed_Retryable (6) RollbackFailed_Retryable (9)
 */
/* clang-format on */
/*
 * A handler runs at least once per decided branch and may run more than once (a lost report, a
 * lease that expired, an overlap across a leader change): it must be idempotent. The TCC layer
 * (sinter/tcc.h) gets that from the fence; XA from pg_xact_status (sinter/xa.h).
 *
 * Lifecycle: sinter_rm_open (no threads yet; phase-one calls work at once), register handlers
 * (sinter_rm_set_handler, sinter_tcc_register, sinter_rm_xa_register), sinter_rm_start
 * (pollers, workers, reporters and the maintenance thread; retry it after a failure), ...,
 * sinter_rm_close (stops polling, waits for running handlers, then sends every queued report, each
 * until report_timeout_ms after its handler returned; queued, not yet started items are dropped:
 * their leases expire and the coordinator redelivers them).
 *
 * Thread-safe: every function may be called from any thread, except that sinter_rm_close must
 * not race other calls on the same handle, nor be called from a handler.
 */
#ifndef SINTER_RM_H
#define SINTER_RM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sinter_rm;

struct sinter_rm_opts {
    const char *const *addresses; /* client URLs of cluster nodes; one is enough */
    size_t n_addresses;
    const char *secret;           /* the cluster's shared secret; required */
    const char *application_id;   /* NULL = "unknown" */
    const char *const *resources; /* resource ids whose phase 2 this process runs (TCC action
                                     names, XA resource ids); 0..64 of them; copied */
    uint32_t n_resources;
    uint32_t deadline_ms;        /* bound of each phase-one call, retries included; 0 = 10000 */
    uint32_t attempt_timeout_ms; /* one attempt on one node; 0 = 3000 */
    uint32_t workers;            /* phase-2 worker threads; 0 = 4 */
    uint32_t queue_capacity;     /* work items queued or running at most; 0 = 256 */
    uint32_t poll_wait_ms;       /* Phase2Poll wait_ms (server clamps to 1..30000); 0 = 10000 */
    uint32_t poll_max_items;     /* items asked per poll; 0 = 16 */
    uint32_t report_timeout_ms;  /* bound of one Phase2Report with its retries, counted from
                                    the handler's return; 0 = 10000 */
    uint32_t meta_refresh_ms;    /* ClusterMeta refresh (new members get a poller); 0 = 10000 */
    /* TCC fence cleanup (sinter/tcc.h), run on the maintenance thread for every registered
     * action: ended fence rows older than fence_retention_ms are deleted in batches of
     * fence_cleanup_batch every fence_cleanup_interval_ms. The retention MUST exceed the
     * coordinator's phase-2 retry deadline (tc max_commit_retry_ms / max_rollback_retry_ms,
     * default 24 h) plus the longest global timeout: a deleted SUSPENDED row no longer refuses a
     * very late try, a deleted COMMITTED row makes a very late duplicate confirm look like "try
     * not done yet" (sinter/fence.h). */
    uint32_t fence_cleanup_interval_ms; /* 0 = 60000; UINT32_MAX = never */
    uint64_t fence_retention_ms;        /* 0 = 7 days */
    uint32_t fence_cleanup_batch;       /* 0 = 1000 */
    /* Reporter threads sending the Phase2Reports of finished items, so a worker goes on to its
     * next item at once instead of waiting for the outcome to commit; 0 = 16. They block on the
     * network, not the CPU. */
    uint32_t reporters;
};

/* Fills defaults (zero / NULL: see the fields). Ownership: writes *o only. */
void sinter_rm_opts_default(struct sinter_rm_opts *o);

/* Opens a handle; starts no thread and sends nothing yet. Ownership: opts and its strings are
 * copied; *out is the caller's, released with sinter_rm_close().
 * Errors: SINTER_EINVAL (no address or secret, more than 64 resources, empty or over-long
 * strings), SINTER_ECONFIG (bad address), SINTER_ENOMEM, SINTER_ETRANSPORT. */
int sinter_rm_open(struct sinter_rm **out, const struct sinter_rm_opts *opts);

/* Starts phase-2 delivery: the maintenance thread (ClusterMeta refresh, TCC fence cleanup, XA
 * recovery scans), the workers, the reporters, and a poller per known node (when the process
 * serves at least one resource). Register handlers first: an item with no handler is reported
 * retryable. Errors: SINTER_ESTATE (already started or closing), SINTER_ENOMEM,
 * SINTER_EINTERNAL (a thread could not be created; sinter_rm_errmsg says so). After a
 * failure the threads it did start are stopped and joined before it returns (work items they
 * had received are dropped, and redelivered by the coordinator after their lease) and the handle
 * is unstarted again: phase-one calls still work, and sinter_rm_start may simply be called
 * again (or sinter_rm_close). */
int sinter_rm_start(struct sinter_rm *rm);

/* Stops the pollers, waits for the handlers that are running and for their reports, stops the
 * threads, frees everything (TCC actions included). NULL is a no-op. */
void sinter_rm_close(struct sinter_rm *rm);

/* ---- phase one ---- */

/* Registers a branch of global xid (text form, from the TM or the caller's RPC header) for
 * resource_id with branch_type (SINTER_BT_TCC or SINTER_BT_XA). app_data (len bytes, up to
 * 64 KiB; may be NULL when len is 0) is stored with the branch at the coordinator and handed to
 * every phase-2 delivery (for TCC: the try's arguments). xa_local_xid: XA's
 * pg_current_xact_id() of the branch's local transaction (0 if none). Writes the branch id.
 * Retried idempotently: a retry after a lost reply returns the same branch id.
 * Ownership: borrows everything; writes *branch_id on success.
 * Errors: SINTER_EINVAL, SINTER_ESTATE (the global is no longer Begin: late register),
 * SINTER_ENOTFOUND (unknown xid), SINTER_ETIMEOUT (outcome unknown: if a branch was registered
 * the coordinator rolls it back with the global), SINTER_EAUTH, SINTER_ENOMEM. */
int sinter_rm_branch_register(struct sinter_rm *rm, const char *xid, uint32_t branch_type,
                              const char *resource_id, const void *app_data, size_t len,
                              uint64_t xa_local_xid, uint64_t *branch_id);

/* Reports a branch's phase-one result: status SINTER_BS_PHASE1_DONE or SINTER_BS_PHASE1_FAILED
 * (a failed branch blocks the global's commit and gets a rollback delivery). xa_local_xid: sent
 * when non-zero (XA). Ownership: borrows everything.
 * Errors: SINTER_EINVAL, SINTER_ESTATE (the global is no longer Begin), SINTER_ENOTFOUND,
 * SINTER_ETIMEOUT, SINTER_EAUTH, SINTER_ENOMEM. */
int sinter_rm_branch_report(struct sinter_rm *rm, const char *xid, uint64_t branch_id,
                            uint32_t branch_type, const char *resource_id, uint32_t status,
                            uint64_t xa_local_xid);

/* The global's status (SINTER_GS_FINISHED when the coordinator does not know the xid), e.g. for
 * XA's late-prepare guard and recovery. Ownership: borrows xid; writes *status on success.
 * Errors: SINTER_EINVAL, SINTER_ETIMEOUT, SINTER_EAUTH, SINTER_ENOMEM. */
int sinter_rm_global_status(struct sinter_rm *rm, const char *xid, uint32_t *status);

/* ---- phase two ---- */

/* One phase-2 work item, as the handler sees it. Valid for the handler call only. */
struct sinter_rm_work {
    bool commit; /* true: BranchCommit (confirm, COMMIT PREPARED); false: rollback */
    struct sinter_xid xid;
    char xid_text[SINTER_XID_STRLEN];
    uint64_t branch_id;
    uint32_t branch_type;    /* SINTER_BT_TCC or SINTER_BT_XA */
    const char *resource_id; /* NUL-terminated */
    const uint8_t *app_data; /* stored at register (TCC: the try's arguments); may be NULL */
    size_t app_data_len;
    uint64_t xa_local_xid; /* 0 if none */
    uint32_t attempt;      /* 1 for the first delivery */
    const char *node_url;  /* the node that delivered it (for logs) */
};

/* A phase-2 handler. Runs on a worker thread; may block (database work) but should finish well
 * within the coordinator's lease (phase2_lease_ms, default 10 s) or the branch is delivered
 * again meanwhile. *status is 0 on entry; the handler may set it to the BranchStatus to report
 * (a PhaseTwo_* value of the item's side); otherwise its return code is mapped as in the table
 * at the top. arg is the one given to sinter_rm_set_handler. */
typedef int (*sinter_rm_phase2_fn)(void *arg, const struct sinter_rm_work *w, uint32_t *status);

/* Sets the handler for branches of branch_type on resource_id (NULL: every resource of that
 * type without a handler of its own). Replaces an earlier one; fn NULL removes it. May be called
 * before or after sinter_rm_start. At most 128 handlers.
 * Ownership: resource_id copied, arg borrowed until replaced or the handle is closed.
 * Errors: SINTER_EINVAL, SINTER_ENOMEM, SINTER_EBUSY (table full). */
int sinter_rm_set_handler(struct sinter_rm *rm, const char *resource_id, uint32_t branch_type,
                          sinter_rm_phase2_fn fn, void *arg);

/* The BranchStatus a handler result maps to (the table at the top): commit says which side,
 * rc and status are what the handler returned and set. Exposed for tests and for layers that
 * report by themselves. */
uint32_t sinter_rm_phase2_status(bool commit, int rc, uint32_t status);

struct sinter_rm_stats {
    uint64_t polls;          /* Phase2Poll answers received */
    uint64_t items;          /* work items received */
    uint64_t handled;        /* handler calls finished */
    uint64_t reports_ok;     /* reports the coordinator accepted */
    uint64_t reports_failed; /* reports dropped (not leader, unknown branch, no answer) */
    uint64_t dropped;        /* items dropped unstarted at close */
    uint64_t report_msgs;    /* Phase2Report / Phase2ReportBatch requests (resends not counted):
                                reports_ok / report_msgs is the mean batch size */
    uint32_t pollers;        /* poller threads running */
};

/* Copies the counters. Thread-safe. Ownership: writes *st only. */
void sinter_rm_stats(struct sinter_rm *rm, struct sinter_rm_stats *st);

/* The handle's client id (random, non-zero). */
uint64_t sinter_rm_client_id(const struct sinter_rm *rm);

/* The calling thread's detail for its last sinter_rm_* / sinter_tcc_* call: "" after success.
 * Ownership: thread-local, owned by the library, valid until the thread's next call. */
const char *sinter_rm_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RM_H */
