/*
 * sinter/rm_xa.h — XA branches on PostgreSQL, wired to the RM client (sinter/rm.h): the glue
 * between the libpq layer (sinter/xa.h, whose coordinator calls are hooks) and the network
 * client. Seata's XA mode: the RM registers the branch with the local transaction id, the
 * service runs its SQL, the RM prepares; phase 2 arrives on the RM's worker threads and runs
 * COMMIT PREPARED / ROLLBACK PREPARED on a connection of a small pool; at registration and then
 * every recovery_interval_ms (on the RM's maintenance thread, once sinter_rm_start ran) the RM
 * scans pg_prepared_xacts for its own gids and settles each against the coordinator, so a
 * branch left prepared by a crashed instance of the resource, or one whose phase 2 the
 * coordinator gave up on, is settled without a restart (the races with phase 2 that runs at the
 * same time: rm/rm_xa.c).
 *
 *   service thread                         RM worker thread (phase 2)
 *   sinter_rm_xa_begin(x, conn, xid, &br)  handler for (resource_id, SINTER_BT_XA):
 *   ... service SQL on conn ...              pooled conn -> sinter_xa_commit_prepared /
 *   sinter_rm_xa_end(x, conn, &br, ok)       _rollback_prepared(gid, w->xa_local_xid)
 *                                            -> the outcome is the reported BranchStatus
 *
 * The hooks: register_branch -> sinter_rm_branch_register(SINTER_BT_XA, local xid), which the
 * coordinator keeps as the branch's xa info "pg_xact:<id>" and hands back with every phase-2
 * delivery (sinter_rm_work.xa_local_xid); report -> sinter_rm_branch_report (with the local xid
 * again); global_status -> sinter_rm_global_status (the late-prepare guard).
 */
#ifndef SINTER_RM_XA_H
#define SINTER_RM_XA_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "sinter/rm.h"
#include "sinter/xa.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sinter_rm_xa;

struct sinter_rm_xa_opts {
    /* Resource id branches register with; list it in sinter_rm_opts.resources so this process
     * receives its phase 2. Required, 1..255 bytes. */
    const char *resource_id;
    /* Gid namespace (sinter/xa.h): unique per resource on a PostgreSQL server, stable across
     * restarts (the recovery scan finds the resource's prepared transactions by it). Required. */
    const char *ns;
    /* libpq connection string of the resource's database: phase 2 and recovery open their own
     * connections with it (with connect_timeout=5 unless it sets its own). Required. */
    const char *conninfo;
    /* Passed to sinter_xa_config (0 = that layer's default). */
    uint32_t statement_timeout_ms;
    uint32_t lock_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t call_timeout_ms;
    /* Idle phase-2 connections kept open; 0 = 4. More are opened while more workers need one,
     * and closed when returned to a full pool. */
    uint32_t pool_size;
    /* true: no recovery scan at registration (call sinter_rm_xa_recover yourself). The periodic
     * scans are governed by recovery_interval_ms alone. */
    bool skip_recovery;
    /* The periodic recovery scan's interval, run on the RM's maintenance thread (so only while
     * the RM is started), the first one this long after registration; 0 = 60000, UINT32_MAX =
     * never (only the scan at registration and sinter_rm_xa_recover calls). Each scan costs one
     * query plus one GlobalStatus call per prepared gid of the namespace, in flight ones
     * included. */
    uint32_t recovery_interval_ms;
    /* true: a prepared branch whose global the coordinator no longer knows (GlobalStatus
     * Finished) is left prepared for an operator instead of rolled back. */
    bool leave_unknown;
    /* true: sinter_rm_xa_end(ok) returns SINTER_OK as soon as PREPARE TRANSACTION succeeded and
     * the PhaseOne_Done report goes out on the resource's own sender threads (one coordinator
     * round trip less on the caller's path per branch: a 2-branch global does 4 sequential
     * coordinator writes instead of 6). The late-prepare guard is kept, it only runs later: a
     * refused report (the global left Begin first) makes the sender ask GlobalStatus and, on the
     * rollback side, ROLLBACK PREPARED the branch at once on a pooled connection; an unanswered
     * one is resent (a bounded number of times) and then left to the coordinator's phase 2 and
     * the recovery scan, which settle a registered, prepared branch either way. Trade-off: the
     * caller usually no longer learns from sinter_rm_xa_end that its global was rolled back
     * meanwhile; its TM commit is then refused instead, and the rolled back branch is undone by
     * the guard or phase 2. SINTER_ESTATE / SINTER_ETIMEOUT still come from sinter_rm_xa_end
     * whenever the report falls back to synchronous (queue full, closing, no memory, or the
     * rollback already seen: report_delay_ms below), so callers keep handling them. A
     * commit may overtake the report (the coordinator commits Registered branches: Seata's
     * client.rm.reportSuccessEnable=false default). When the queue is full (more than
     * SINTER_RM_XA_ASYNC_QUEUE reports pending) a report is sent synchronously as without the
     * option. The sender threads start at registration (phase-one calls work before
     * sinter_rm_start). sinter_rm_close starts the send of every queued report (one send each,
     * no resends) until deadline_ms after it began and abandons the rest (safe: such a branch
     * is registered and prepared, and phase 2 or the recovery scan settles it); a send started
     * just before that may still run its report (<= deadline_ms), GlobalStatus (<= deadline_ms)
     * and the guard's connect (<= 5 s) and ROLLBACK PREPARED (<= call_timeout_ms plus the
     * cancel grace, then a PhaseOne_Failed report <= deadline_ms and, on "no such prepared
     * transaction", a pg_xact_status <= call_timeout_ms), so close can take about
     * 4 x deadline_ms + 5 s + 2 x (call_timeout_ms + cancel grace). The
     * correctness argument: rm/xa.c "Asynchronous PhaseOne_Done". false: every report is
     * synchronous (the default; sinter/xa.h sinter_xa_prepare's table). */
    bool async_report;
    /* async_report: sender threads (they block on the network, not the CPU); 0 = 16, at most
     * SINTER_RM_XA_REPORT_THREADS_MAX (more: SINTER_EINVAL). Each sender may open one PostgreSQL
     * connection beyond pool_size while its guard rolls a branch back (none is idle then). */
    uint32_t report_threads;
    /* async_report: how long a queued report waits before it is sent; 0 = at once, at most
     * SINTER_RM_XA_REPORT_DELAY_MAX_MS (more: SINTER_EINVAL). A phase-2 delivery that ends the
     * branch on this RM meanwhile (COMMIT PREPARED / ROLLBACK PREPARED done, or found done)
     * makes the report pointless -- the decision it guards against is made and the branch is
     * no longer prepared -- so it is dropped and freed (counted `superseded`): with a delay
     * longer than the usual commit + phase-2 time, most globals cost the coordinator two writes
     * and up to two reads less. What the delay costs: the coordinator learns PhaseOne_Done
     * later, and a branch that PREPAREs after its global was rolled back can stay prepared,
     * holding its row locks, for up to the delay before its guard rolls it back -- but only
     * when no phase-2 rollback delivery reached this RM before: one that found the branch still
     * in progress (the usual case of a late PREPARE) makes its report skip the delay (reported
     * synchronously, the guard rolling back on the caller's connection at once, or sent at
     * once if already queued; counted `expedited`), and one after PREPARE rolls it back itself.
     * Such a sighting is kept for 120 s and for the latest 256 branches, and only by the
     * instance that received the delivery: with several instances of the resource, a rollback
     * delivered to another one leaves this branch's guard waiting up to the delay. */
    uint32_t report_delay_ms;
};

/* Most asynchronous PhaseOne_Done reports of one resource queued or in flight; beyond it they
 * are sent synchronously (back-pressure instead of unbounded memory). */
#define SINTER_RM_XA_ASYNC_QUEUE 4096u
/* Bounds of sinter_rm_xa_opts.report_threads and report_delay_ms. */
#define SINTER_RM_XA_REPORT_THREADS_MAX  256u
#define SINTER_RM_XA_REPORT_DELAY_MAX_MS 1000u
/* Size of sinter_rm_xa_report_stats.last_error, the NUL included. */
#define SINTER_RM_XA_ERRLEN 256u

/* Counters of a resource's asynchronous PhaseOne_Done reports (async_report). */
struct sinter_rm_xa_report_stats {
    uint64_t queued;          /* reports taken off the caller's path */
    uint64_t sync_fallbacks;  /* sent synchronously instead: queue full, closing, or no
                                 memory */
    uint64_t accepted;        /* recorded by the coordinator while the global was Begin */
    uint64_t refused;         /* refused: the global had left Begin (decided) first, or the
                                 coordinator no longer knows it (SINTER_ENOTFOUND) */
    uint64_t resent;          /* resends after no answer (counted when sent) */
    uint64_t lost;            /* still no answer after every resend */
    uint64_t guard_rollbacks; /* refused or lost, global on the rollback side: the branch was
                                 rolled back by the guard's ROLLBACK PREPARED (or found rolled
                                 back already by phase 2 / a recovery scan) */
    uint64_t left;            /* refused or lost and left prepared for the coordinator (commit
                                 side, still Begin, side unknown, or the guard's ROLLBACK
                                 PREPARED failed): phase 2 / the recovery scan settle it */
    uint64_t abandoned;       /* not sent because the resource was closed (the branch is
                                 registered and prepared: phase 2 / recovery settle it) */
    uint64_t superseded;      /* not sent: phase 2 had ended the branch here first
                                 (report_delay_ms) */
    uint64_t early_rollbacks; /* phase-2 rollback deliveries that found their branch not
                                 prepared yet or busy (report_delay_ms > 0) */
    uint64_t expedited;       /* reports that skipped report_delay_ms after such a delivery:
                                 sent synchronously by sinter_rm_xa_end (not in `queued`) or
                                 made due at once */
    uint32_t pending;         /* queued or being sent now */
    uint32_t in_flight;       /* of those, taken by a sender and not settled yet */
    char last_error[SINTER_RM_XA_ERRLEN]; /* what the guard found for the latest report that
                                             was not accepted (refused or lost: the side, the
                                             ROLLBACK PREPARED's failure, ...), with its gid;
                                             "" before any */
};

/* Copies the resource's asynchronous report counters and last error text. Thread-safe.
 * Ownership: writes *st; a NULL x gives zeros. */
void sinter_rm_xa_report_stats(struct sinter_rm_xa *x, struct sinter_rm_xa_report_stats *st);

/* What one recovery scan did. */
struct sinter_rm_xa_recovery {
    uint32_t found;       /* prepared transactions of this resource */
    uint32_t committed;   /* COMMIT PREPARED (global on the commit side) */
    uint32_t rolled_back; /* ROLLBACK PREPARED (rollback side, or unknown global) */
    uint32_t left;        /* left prepared: global still Begin (the coordinator drives it), or
                             unknown with leave_unknown */
    uint32_t failed;      /* could not be settled now (coordinator unreachable, busy, ...): the
                             coordinator's phase 2 or a later scan finishes it */
};

/* Registers an XA resource with rm: connects with o->conninfo, checks the server
 * (sinter_xa_check_server: max_prepared_transactions = 0 fails HERE with SINTER_ENOPREPARED and
 * a message naming the setting, in sinter_rm_errmsg()), sets the phase-2 handler for
 * (resource_id, SINTER_BT_XA), and unless skip_recovery runs the recovery scan (rec, may be
 * NULL, gets its counts; branches that cannot be settled now do not fail the registration).
 * Call it before sinter_rm_start so no delivery finds the resource without its handler.
 * Ownership: o's strings are copied; *out is owned by rm and freed by sinter_rm_close (it stays
 * valid until then). Errors: SINTER_EINVAL (also report_threads or
 * report_delay_ms above their bounds), SINTER_ENOMEM, SINTER_EDB (cannot connect),
 * SINTER_ENOPREPARED, SINTER_ECONFIG (server too old), SINTER_EBUSY (handler table full),
 * SINTER_EINTERNAL (async_report: a sender thread could not be created), the scan's database
 * errors. */
int sinter_rm_xa_register(struct sinter_rm *rm, const struct sinter_rm_xa_opts *o,
                          struct sinter_rm_xa **out, struct sinter_rm_xa_recovery *rec);

/* The recovery scan (sinter_xa_recover on a pooled connection), each prepared gid settled with
 * the coordinator's GlobalStatus of its xid: commit side -> COMMIT PREPARED; rollback side ->
 * ROLLBACK PREPARED; Begin -> left for the coordinator; Finished (unknown xid) -> ROLLBACK
 * PREPARED unless leave_unknown (why that is safe: rm/README.md "Recovery"). The same scan the
 * registration and the periodic rounds run. Safe to run while phase 2 runs: a concurrent COMMIT
 * PREPARED of the same gid makes one of them see 55000 (busy, retried) or 42704, resolved by
 * pg_xact_status (the full reasoning: rm/rm_xa.c). Ownership: writes *rec (may be NULL).
 * Errors: the scan's (SINTER_EDB, SINTER_ETRANSPORT, SINTER_ETIMEOUT, ...). */
int sinter_rm_xa_recover(struct sinter_rm_xa *x, struct sinter_rm_xa_recovery *rec);

/* The counts of every recovery scan of x so far (registration, periodic, sinter_rm_xa_recover)
 * summed into *sum, and how many scans ran into *scans (a scan that failed counts too).
 * Thread-safe. Ownership: writes *sum and *scans, either may be NULL; a NULL x gives zeros. */
void sinter_rm_xa_recovery_totals(struct sinter_rm_xa *x, struct sinter_rm_xa_recovery *sum,
                                  uint64_t *scans);

/* Starts a branch of global xid (text form) on the service's idle connection conn
 * (sinter_xa_begin: BEGIN, local xid, register). Ownership: borrows everything; writes *br.
 * Errors: SINTER_EINVAL (bad xid), those of sinter_xa_begin (message in sinter_xa_errmsg() or,
 * for the coordinator's part, sinter_rm_errmsg()). */
int sinter_rm_xa_begin(struct sinter_rm_xa *x, PGconn *conn, const char *xid,
                       struct sinter_xa_branch *br);

/* Ends the branch: ok -> sinter_xa_prepare (PREPARE TRANSACTION, late-prepare guard, report
 * PhaseOne_Done), otherwise sinter_xa_abort (ROLLBACK, report PhaseOne_Failed). Returns theirs:
 * with ok, SINTER_OK means prepared and recorded, SINTER_ESTATE rolled back, SINTER_ETIMEOUT
 * "the coordinator decides" (sinter/xa.h). With async_report, SINTER_OK means prepared, its
 * report queued (the guard runs on the sender thread; conn is the caller's again at once).
 * PhaseOne_Failed reports are always synchronous. Ownership: borrows everything. */
int sinter_rm_xa_end(struct sinter_rm_xa *x, PGconn *conn, struct sinter_xa_branch *br, bool ok);

/* The underlying libpq-layer resource (for sinter_xa_* calls). Ownership: owned by x. */
const struct sinter_xa_resource *sinter_rm_xa_resource(const struct sinter_rm_xa *x);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RM_XA_H */
