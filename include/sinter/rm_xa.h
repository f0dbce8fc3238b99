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
};

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
 * valid until then). Errors: SINTER_EINVAL, SINTER_ENOMEM, SINTER_EDB (cannot connect),
 * SINTER_ENOPREPARED, SINTER_ECONFIG (server too old), SINTER_EBUSY (handler table full), the
 * scan's database errors. */
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
 * "the coordinator decides" (sinter/xa.h). Ownership: borrows everything. */
int sinter_rm_xa_end(struct sinter_rm_xa *x, PGconn *conn, struct sinter_xa_branch *br, bool ok);

/* The underlying libpq-layer resource (for sinter_xa_* calls). Ownership: owned by x. */
const struct sinter_xa_resource *sinter_rm_xa_resource(const struct sinter_rm_xa *x);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RM_XA_H */
