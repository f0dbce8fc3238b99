/*
 * XA on the RM client (sinter/rm_xa.h): the libpq layer's coordinator hooks on the network
 * client, the phase-2 handler on a small connection pool, and the recovery scan (at registration
 * and then periodically on the RM's maintenance thread).
 *
 * Pool: a mutex-guarded stack of idle connections. A worker takes one (or opens a new one when
 * none is idle, so phase 2 never waits for another worker's connection) and gives it back; a
 * connection that broke, is not idle, or whose call hit the client-side deadline (its state is
 * unknown: sinter/xa.h "Hang protection") is closed instead, so the next delivery reconnects.
 * New connections get libpq's connect_timeout (XA_CONNECT_TIMEOUT_S unless the conninfo sets
 * one): libpq waits forever by default, and a database host that does not answer must fail a
 * phase-2 delivery as retryable well within the coordinator's lease, not park the worker.
 *
 * Periodic recovery. Seata's XA RM and DTM settle orphaned prepared transactions continuously,
 * not only at start: a branch prepared by ANOTHER instance of the resource that crashed before
 * phase 2, or one whose phase 2 the coordinator gave up on (*RetryTimeout after the database was
 * down for longer than max_commit_retry_ms), must be settled without restarting anything. So
 * the maintenance thread (rm.c) runs the scan of every resource every recovery_interval_ms. It
 * only ever looks at gids of the resource's own namespace ("sntr:<ns>:", sinter_xa_recover),
 * and for each asks the coordinator for the global's status, then acts as at registration. Why
 * that is safe while the normal path runs at the same time:
 *   - a branch in the middle of phase one (PREPAREd, its PhaseOne_Done report not yet
 *     accepted): the coordinator answers Begin, and Begin is left alone. If a decision came
 *     first, the scan applies it (commit side: COMMIT PREPARED, which is what phase 2 would do;
 *     rollback side: ROLLBACK PREPARED, which is what the late-prepare guard does next): the
 *     guard's own ROLLBACK PREPARED then finds 42704, pg_xact_status says aborted, and it
 *     answers SINTER_ESTATE as it would have anyway (if both meet at the same instant, the
 *     guard's sees 55000, leaves the branch to the scan that holds it, and still answers
 *     SINTER_ESTATE). The side never flips (compare-and-set decisions), so the scan and the
 *     guard never disagree.
 *   - a phase-2 delivery running on a worker right now: both run COMMIT PREPARED (or both
 *     ROLLBACK PREPARED: the scan follows the same decision the delivery carries). PostgreSQL
 *     lets one backend hold a prepared transaction: the loser gets 55000 ("is busy": the
 *     worker reports *_Retryable and the coordinator's next delivery finds 42704) or, once the
 *     winner is done, 42704, which pg_xact_status of the branch's local xid resolves to
 *     committed / aborted: the worker reports PhaseTwo_Committed / Rollbacked, exactly what it
 *     would have reported had it won. A scan that loses counts the gid as `failed` (55000) or
 *     as settled (42704 resolved); it never changes the outcome. A gid is never reused (it
 *     names xid and branch id), so a gid listed by the scan and settled meanwhile cannot come
 *     back as another transaction.
 *   - a global the coordinator already removed (Finished): a branch still prepared under it is
 *     a leftover of a rollback (sinter_rm_xa_recover's comment) and is rolled back, unless
 *     leave_unknown. A worker cannot be committing it at the same time: the coordinator removes
 *     a commit-side global only after every branch reported PhaseTwo_Committed, i.e. after its
 *     COMMIT PREPARED, and then the gid is no longer prepared (the scan's ROLLBACK PREPARED
 *     finds 42704, pg_xact_status committed: refused, counted failed, nothing changes).
 * The scan does not take the lease of the coordinator's phase 2 and does not report to it: the
 * coordinator's next delivery (if any) finds the work done and reports it as such. A periodic
 * scan stops between gids when the RM is closing (close waits for at most the one status call
 * in flight, bounded by deadline_ms).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rm_int.h"
#include "sinter/rm_xa.h"

#define XA_POOL_DEFAULT        4u
#define XA_CONNECT_TIMEOUT_S   5u     /* libpq connect_timeout of the pool's connections */
#define XA_RECOVERY_DEFAULT_MS 60000u /* recovery_interval_ms 0 */

struct sinter_rm_xa {
    struct sinter_rm_xa *next; /* rm->xas */
    struct sinter_rm *rm;
    struct sinter_xa_resource *res;
    char *resource_id, *ns, *conninfo;
    bool leave_unknown;
    uint32_t interval_ms;  /* periodic scan; UINT32_MAX = none */
    uint64_t next_scan_ms; /* sinter_client_now_ms() of the next periodic scan (maintenance
                              thread only, after registration) */
    pthread_mutex_t mu;    /* the pool and the totals */
    PGconn **idle;
    uint32_t n_idle, cap;
    struct sinter_rm_xa_recovery total; /* summed over every scan */
    uint64_t scans;
};

/* ---- hooks: the libpq layer's coordinator calls on the RM client ---- */

static int hook_register(void *arg, const struct sinter_xid *xid, const char *resource_id,
                         uint64_t local_xid, uint64_t *branch_id)
{
    struct sinter_rm_xa *x = arg;
    char t[SINTER_XID_STRLEN];
    sinter_xid_format(xid, t);
    /* The local xid goes with the registration (not only with the report): a rollback that
     * reaches the branch before it prepared is then answered "in progress, retry" by
     * pg_xact_status instead of an empty rollback (sinter/xa.h register_branch). */
    return sinter_rm_branch_register(x->rm, t, SINTER_BT_XA, resource_id, NULL, 0, local_xid,
                                     branch_id);
}

static int hook_report(void *arg, const struct sinter_xa_branch *br, uint32_t status)
{
    struct sinter_rm_xa *x = arg;
    char t[SINTER_XID_STRLEN];
    sinter_xid_format(&br->xid, t);
    return sinter_rm_branch_report(x->rm, t, br->branch_id, SINTER_BT_XA, x->resource_id, status,
                                   br->local_xid);
}

static int hook_status(void *arg, const struct sinter_xid *xid, uint32_t *status)
{
    struct sinter_rm_xa *x = arg;
    char t[SINTER_XID_STRLEN];
    sinter_xid_format(xid, t);
    return sinter_rm_global_status(x->rm, t, status);
}

/* ---- pool ---- */

static int pool_get(struct sinter_rm_xa *x, PGconn **out)
{
    pthread_mutex_lock(&x->mu);
    PGconn *c = x->n_idle > 0 ? x->idle[--x->n_idle] : NULL;
    pthread_mutex_unlock(&x->mu);
    if (c != NULL) {
        *out = c;
        return SINTER_OK;
    }
    /* connect_timeout goes BEFORE the expanded conninfo, so one set there wins (libpq keeps the
     * last value of a repeated keyword). */
    char cts[16];
    snprintf(cts, sizeof cts, "%u", XA_CONNECT_TIMEOUT_S);
    const char *kw[] = {"connect_timeout", "dbname", NULL};
    const char *val[] = {cts, x->conninfo, NULL};
    c = PQconnectdbParams(kw, val, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        sinter_client_set_errmsg("xa resource '%s': cannot connect to PostgreSQL: %s",
                                 x->resource_id, c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return c == NULL ? SINTER_ENOMEM : SINTER_ETRANSPORT;
    }
    *out = c;
    return SINTER_OK;
}

/* rc: the last call's result on c. */
static void pool_put(struct sinter_rm_xa *x, PGconn *c, int rc)
{
    bool keep = rc != SINTER_ETIMEOUT && rc != SINTER_ETRANSPORT && PQstatus(c) == CONNECTION_OK &&
                PQtransactionStatus(c) == PQTRANS_IDLE;
    if (keep) {
        pthread_mutex_lock(&x->mu);
        if (x->n_idle < x->cap) {
            x->idle[x->n_idle++] = c;
            c = NULL;
        }
        pthread_mutex_unlock(&x->mu);
    }
    PQfinish(c);
}

/* ---- phase 2 ---- */

static int xa_phase2(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    struct sinter_rm_xa *x = arg;
    char gid[SINTER_XA_GID_LEN];
    if (sinter_xa_gid(x->ns, &w->xid, w->branch_id, gid) == 0) {
        return SINTER_ESTATE; /* cannot name the branch: never retryable into success */
    }
    PGconn *c = NULL;
    int rc = pool_get(x, &c);
    if (rc != SINTER_OK) {
        /* Database down or refusing connections (SINTER_ETRANSPORT): *status stays 0, so the
         * code maps to *_Retryable (sinter/rm.h) and the coordinator delivers again with backoff
         * until its retry deadline; never a final failure for an outage. */
        return rc;
    }
    uint32_t outcome = 0;
    rc = w->commit ? sinter_xa_commit_prepared(x->res, c, gid, w->xa_local_xid, &outcome)
                   : sinter_xa_rollback_prepared(x->res, c, gid, w->xa_local_xid, &outcome);
    pool_put(x, c, rc);
    *status = outcome; /* the layer's BranchStatus is the report (rm/README.md tables) */
    return rc;
}

/* ---- recovery ---- */

struct rec_ctx {
    struct sinter_rm_xa *x;
    struct sinter_rm_xa_recovery r;
    const atomic_bool *cancel; /* periodic scans: the RM's `stopping` */
    int coord_rc;              /* why the round ended early: the coordinator was unreachable */
};

static int rec_one(void *arg, PGconn *conn, const struct sinter_xa_prepared *p)
{
    struct rec_ctx *rc_ = arg;
    struct sinter_rm_xa *x = rc_->x;
    if (rc_->cancel != NULL && atomic_load(rc_->cancel)) {
        return SINTER_ESHUTDOWN; /* closing: the rest waits for the next start's scans */
    }
    rc_->r.found++;
    char t[SINTER_XID_STRLEN];
    sinter_xid_format(&p->xid, t);
    uint32_t gs = 0;
    int src = sinter_rm_global_status(x->rm, t, &gs);
    if (src != SINTER_OK) {
        rc_->r.failed++; /* the coordinator drives it, or the next scan settles it */
        /* Coordinator unreachable: every further gid would wait its whole deadline too, and a
         * periodic scan runs on the maintenance thread (metadata refresh, fence cleanup), so
         * end this round now; the next one starts over. */
        bool unreachable = src == SINTER_ETIMEOUT || src == SINTER_ETRANSPORT ||
                           src == SINTER_ENOTLEADER || src == SINTER_ESHUTDOWN;
        if (unreachable) {
            rc_->coord_rc = src;
            return src;
        }
        return 0;
    }
    uint32_t outcome = 0;
    int rc;
    if (gs == SINTER_GS_FINISHED) {
        if (x->leave_unknown) {
            rc_->r.left++;
            return 0;
        }
        /* The coordinator no longer knows the global. A commit-side global ends on its own only
         * after every branch reported PhaseTwo_Committed (and a CommitRetryTimeout global is
         * kept for an operator: DESIGN.md "Nothing failed is ever silently deleted"), so a
         * branch still prepared is the leftover of a rollback (e.g. a PREPARE that the RM's
         * crash kept from its late-prepare guard), and keeping it would hold its locks forever.
         * Seata's XA RM rolls such branches back likewise. One exception, by an operator: a
         * failed commit-side global RESOLVEd to Committed while a branch of it was still
         * prepared is then removed by retention GC like any Committed one; while it exists,
         * any scan of the resource commits that branch (status Committed), so this goes wrong
         * only if no instance of the resource scanned during the whole retention
         * (docs/operations.md "resolve" says so). Statuses of groups a node does not serve are
         * errors, never Finished (tc/server.c handle_status). */
        rc = sinter_xa_rollback_prepared(x->res, conn, p->gid, p->local_xid, &outcome);
    } else {
        rc = sinter_xa_resolve(x->res, conn, p, gs, &outcome);
    }
    if (rc != SINTER_OK) {
        rc_->r.failed++;
    } else if (outcome == SINTER_BS_PHASE2_COMMITTED) {
        rc_->r.committed++;
    } else if (outcome == SINTER_BS_PHASE2_ROLLBACKED) {
        rc_->r.rolled_back++;
    } else {
        rc_->r.left++;
    }
    return 0;
}

static int recover(struct sinter_rm_xa *x, struct sinter_rm_xa_recovery *rec,
                   const atomic_bool *cancel)
{
    struct rec_ctx ctx = {.x = x, .cancel = cancel};
    PGconn *c = NULL;
    int rc = pool_get(x, &c);
    if (rc == SINTER_OK) {
        rc = sinter_xa_recover(x->res, c, rec_one, &ctx);
        if (ctx.coord_rc != 0) {
            sinter_client_set_errmsg("xa resource '%s': recovery scan ended early: the "
                                     "coordinator did not answer a status query (%s)",
                                     x->resource_id, sinter_errname(ctx.coord_rc));
        } else if (rc != SINTER_OK && rc != SINTER_ESHUTDOWN) {
            sinter_client_set_errmsg("xa resource '%s': recovery scan: %s", x->resource_id,
                                     sinter_xa_errmsg());
        }
        pool_put(x, c, rc);
    }
    pthread_mutex_lock(&x->mu);
    x->scans++;
    x->total.found += ctx.r.found;
    x->total.committed += ctx.r.committed;
    x->total.rolled_back += ctx.r.rolled_back;
    x->total.left += ctx.r.left;
    x->total.failed += ctx.r.failed;
    pthread_mutex_unlock(&x->mu);
    if (rec != NULL) {
        *rec = ctx.r;
    }
    return rc;
}

int sinter_rm_xa_recover(struct sinter_rm_xa *x, struct sinter_rm_xa_recovery *rec)
{
    if (x == NULL) {
        return SINTER_EINVAL;
    }
    return recover(x, rec, NULL);
}

void sinter_rm_xa_recovery_totals(struct sinter_rm_xa *x, struct sinter_rm_xa_recovery *sum,
                                  uint64_t *scans)
{
    if (x == NULL) { /* as the other entry points: a NULL handle is no crash */
        if (sum != NULL) {
            memset(sum, 0, sizeof *sum);
        }
        if (scans != NULL) {
            *scans = 0;
        }
        return;
    }
    pthread_mutex_lock(&x->mu);
    if (sum != NULL) {
        *sum = x->total;
    }
    if (scans != NULL) {
        *scans = x->scans;
    }
    pthread_mutex_unlock(&x->mu);
}

uint64_t sinter_rm_xa_scan_due(struct sinter_rm *rm)
{
    /* Resources are only ever added (at the head) until close, which joins this thread before
     * freeing them: the list read under the lock stays valid without it. */
    pthread_rwlock_rdlock(&rm->hlock);
    struct sinter_rm_xa *list = rm->xas;
    pthread_rwlock_unlock(&rm->hlock);
    uint64_t next = UINT64_MAX;
    for (struct sinter_rm_xa *x = list; x != NULL && !atomic_load(&rm->stopping); x = x->next) {
        if (x->interval_ms == UINT32_MAX) {
            continue;
        }
        if (sinter_client_now_ms() >= x->next_scan_ms) {
            /* Failures are counted in the totals (failed) or left for the next round: the
             * coordinator's phase 2 goes on meanwhile. */
            (void)recover(x, NULL, &rm->stopping);
            x->next_scan_ms = sinter_client_now_ms() + x->interval_ms;
        }
        if (x->next_scan_ms < next) {
            next = x->next_scan_ms;
        }
    }
    return next;
}

/* ---- registration ---- */

static void xa_free(struct sinter_rm_xa *x)
{
    if (x == NULL) {
        return;
    }
    for (uint32_t i = 0; i < x->n_idle; i++) {
        PQfinish(x->idle[i]);
    }
    free(x->idle);
    sinter_xa_resource_close(x->res);
    pthread_mutex_destroy(&x->mu);
    free(x->resource_id);
    free(x->ns);
    free(x->conninfo);
    free(x);
}

void sinter_rm_xa_free_all(struct sinter_rm *rm)
{
    while (rm->xas != NULL) {
        struct sinter_rm_xa *x = rm->xas;
        rm->xas = x->next;
        xa_free(x);
    }
}

int sinter_rm_xa_register(struct sinter_rm *rm, const struct sinter_rm_xa_opts *o,
                          struct sinter_rm_xa **out, struct sinter_rm_xa_recovery *rec)
{
    if (rec != NULL) {
        memset(rec, 0, sizeof *rec);
    }
    if (rm == NULL || o == NULL || out == NULL || o->resource_id == NULL || o->ns == NULL ||
        o->conninfo == NULL || o->resource_id[0] == '\0' || strlen(o->resource_id) > 255) {
        sinter_client_set_errmsg("xa resource: resource_id, ns and conninfo are required");
        return SINTER_EINVAL;
    }
    struct sinter_rm_xa *x = calloc(1, sizeof *x);
    if (x == NULL) {
        return SINTER_ENOMEM;
    }
    pthread_mutex_init(&x->mu, NULL);
    x->rm = rm;
    x->leave_unknown = o->leave_unknown;
    x->interval_ms =
        o->recovery_interval_ms != 0 ? o->recovery_interval_ms : XA_RECOVERY_DEFAULT_MS;
    x->next_scan_ms = sinter_client_now_ms() + (x->interval_ms != UINT32_MAX ? x->interval_ms : 0);
    x->cap = o->pool_size != 0 ? o->pool_size : XA_POOL_DEFAULT;
    x->resource_id = strdup(o->resource_id);
    x->ns = strdup(o->ns);
    x->conninfo = strdup(o->conninfo);
    x->idle = calloc(x->cap, sizeof *x->idle);
    if (x->resource_id == NULL || x->ns == NULL || x->conninfo == NULL || x->idle == NULL) {
        xa_free(x);
        return SINTER_ENOMEM;
    }
    PGconn *c = NULL;
    int rc = pool_get(x, &c);
    if (rc != SINTER_OK) {
        xa_free(x);
        return rc == SINTER_ETRANSPORT ? SINTER_EDB : rc;
    }
    struct sinter_xa_config cfg = {
        .ns = x->ns,
        .resource_id = x->resource_id,
        .statement_timeout_ms = o->statement_timeout_ms,
        .lock_timeout_ms = o->lock_timeout_ms,
        .idle_timeout_ms = o->idle_timeout_ms,
        .call_timeout_ms = o->call_timeout_ms,
        .hooks = {.register_branch = hook_register,
                  .report = hook_report,
                  .global_status = hook_status,
                  .arg = x},
    };
    char err[512] = "";
    /* The server check runs here (sinter_xa_resource_open), so max_prepared_transactions = 0
     * is refused at registration with the setting's name, not by the first PREPARE. */
    rc = sinter_xa_resource_open(&cfg, c, &x->res, err, sizeof err);
    pool_put(x, c, rc);
    if (rc != SINTER_OK) {
        sinter_client_set_errmsg("xa resource '%s': %s", o->resource_id,
                                 err[0] != '\0' ? err : sinter_strerror(rc));
        xa_free(x);
        return rc;
    }
    rc = sinter_rm_set_handler(rm, x->resource_id, SINTER_BT_XA, xa_phase2, x);
    if (rc != SINTER_OK) {
        xa_free(x);
        return rc;
    }
    pthread_rwlock_wrlock(&rm->hlock);
    x->next = rm->xas;
    rm->xas = x;
    pthread_rwlock_unlock(&rm->hlock);
    *out = x;
    if (!o->skip_recovery) {
        rc = sinter_rm_xa_recover(x, rec);
        if (rc != SINTER_OK) {
            /* The handler stays registered with x (owned by rm now); the caller sees the
             * scan's failure and may retry it with sinter_rm_xa_recover. */
            return rc;
        }
    }
    return SINTER_OK;
}

/* ---- phase one convenience ---- */

int sinter_rm_xa_begin(struct sinter_rm_xa *x, PGconn *conn, const char *xid,
                       struct sinter_xa_branch *br)
{
    struct sinter_xid id;
    if (x == NULL || xid == NULL || sinter_xid_parse(&id, xid, strlen(xid)) != SINTER_OK) {
        sinter_client_set_errmsg("xa begin: invalid xid");
        return SINTER_EINVAL;
    }
    return sinter_xa_begin(x->res, conn, &id, br);
}

int sinter_rm_xa_end(struct sinter_rm_xa *x, PGconn *conn, struct sinter_xa_branch *br, bool ok)
{
    if (x == NULL) {
        return SINTER_EINVAL;
    }
    return ok ? sinter_xa_prepare(x->res, conn, br) : sinter_xa_abort(x->res, conn, br);
}

const struct sinter_xa_resource *sinter_rm_xa_resource(const struct sinter_rm_xa *x)
{
    return x->res;
}
