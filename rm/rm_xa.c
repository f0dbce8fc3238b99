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
#include <time.h>

#include "rm_int.h"
#include "sinter/rm_xa.h"

#define XA_POOL_DEFAULT        4u
#define XA_CONNECT_TIMEOUT_S   5u      /* libpq connect_timeout of the pool's connections */
#define XA_RECOVERY_DEFAULT_MS 60000u  /* recovery_interval_ms 0 */
#define XA_SENDERS_DEFAULT     16u     /* report_threads 0 */
#define XA_ASYNC_BUCKETS       1024u   /* hash of queued reports by branch (a power of 2) */
#define XA_REPORT_SENDS        3u      /* async PhaseOne_Done: sends of one report at most */
#define XA_RESEND_STEP_MS      100u    /* pause before resend k: k * this */
#define XA_SEEN_SLOTS          256u    /* branches a phase-2 rollback found not prepared yet */
#define XA_SEEN_TTL_MS         120000u /* how long such a sighting expedites the report */

/* Test-only (rm_int.h). Not compiled out: it is as inert in production as the existing
 * sinter_rm_fault_thread_create hook beside it (a hidden symbol nothing but a test sets). */
atomic_bool sinter_rm_xa_test_hold_reports = false;
atomic_bool sinter_rm_xa_test_hold_queue = false;
atomic_uint sinter_rm_xa_test_queue_cap = 0;

/* One asynchronous PhaseOne_Done report: a copy of the branch as sinter_xa_prepare left it. */
struct xa_async {
    struct xa_async *next, *prev; /* the queue, in due order (one delay for all: FIFO) */
    struct xa_async *hnext;       /* its hash bucket, while queued */
    uint64_t due_ms;              /* sinter_client_now_ms() from which it is sent */
    bool expedited;               /* made due by async_rollback_seen: the test-only queue hold
                                     (sinter_rm_xa_test_hold_queue) lets it go */
    struct sinter_xa_branch br;
};

/* A phase-2 rollback delivery that found its branch not prepared yet (or busy). */
struct xa_seen {
    struct sinter_xid xid;
    uint64_t branch_id; /* 0: free */
    uint64_t until_ms;  /* sinter_client_now_ms() after which it no longer counts */
};

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

    /* async_report: the queue of PhaseOne_Done reports and its sender threads ("Asynchronous
     * reports" below). Under amu. */
    bool async;
    uint32_t delay_ms; /* report_delay_ms */
    pthread_mutex_t amu;
    pthread_cond_t acv; /* queue not empty, head due, or closing */
    pthread_cond_t pcv; /* only the pauses (resend, test hold) wait on it: close broadcasts it,
                           so a signal of acv always reaches a sender that waits for work */
    struct xa_async *ahead, *atail;
    struct xa_async *abucket[XA_ASYNC_BUCKETS]; /* the queued ones by (xid, branch id) */
    uint32_t aqueued, abusy;
    struct xa_seen aseen[XA_SEEN_SLOTS]; /* a ring, the oldest overwritten */
    uint32_t aseen_next;
    bool atimer; /* a sender waits for the head's due time (the others wait untimed) */
    bool aclosing;
    uint64_t aclose_deadline; /* sinter_client_now_ms(): after it, queued reports are dropped */
    pthread_t *senders;
    uint32_t n_senders;
    struct sinter_rm_xa_report_stats ast;
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

/* ---- asynchronous PhaseOne_Done reports ---- */

/*
 * With async_report the libpq layer hands each PhaseOne_Done report to hook_report_async right
 * after PREPARE and returns to the service; sender threads of the resource send it and apply
 * the late-prepare guard to the answer (sinter_xa_report_settle; why the branch is safe in
 * every interleaving: rm/xa.c "Asynchronous PhaseOne_Done"):
 *   accepted          nothing more: the coordinator recorded it while the global was Begin;
 *   refused           (SINTER_ESTATE, SINTER_ENOTFOUND: the global left Begin, or is gone)
 *                     GlobalStatus; rollback side -> ROLLBACK PREPARED at once, on a connection
 *                     of the phase-2 pool taken only then (never the service's, which it owns
 *                     again), 42704 meaning phase 2 did it first; commit side -> nothing, phase
 *                     2 commits the registered branch;
 *   no answer         resent up to XA_REPORT_SENDS times in all (each send is itself a client
 *                     call whose retries until deadline_ms share one seq; a resend is a new
 *                     call with a new seq, accepted because the coordinator takes a repeated
 *                     status again: tc/fsm.c do_report), then the same as refused: the guard
 *                     rolls back if the rollback side is already known, otherwise the branch
 *                     is left to the coordinator's phase 2 and the recovery scan.
 * With report_delay_ms a report waits that long in the queue first; a phase-2 delivery that
 * ends its branch on this RM meanwhile (xa_phase2 -> async_supersede) drops it unsent: the
 * decision it would race is made and the branch is no longer prepared, so the refusal and the
 * GlobalStatus read it would cost the coordinator buy nothing. Queued reports are found by
 * (xid, branch id) in a small hash table. The other way round, a phase-2 ROLLBACK delivery that
 * finds its branch not prepared yet ('in progress') makes the branch's report skip the delay
 * (async_rollback_seen), so the delay does not postpone the guard's rollback of a late PREPARE
 * whose rollback delivery reached THIS instance; one that reached another instance of the
 * resource (DESIGN.md: phase 2 goes to any live instance), or a sighting pushed out of the ring
 * (256 branches, 120 s), leaves the late PREPARE holding its locks for up to the delay (1 s at
 * most) before the report's refusal rolls it back.
 * The threads are the resource's own, started at registration (phase-one calls work before
 * sinter_rm_start, so the reports must too) and joined by sinter_rm_close. Close drains the
 * queue (one send per report, no resends) until deadline_ms after it began and abandons what is
 * left: abandoning is safe because a queued report's branch is registered with its local xid
 * and prepared, the coordinator does not wait for its report (a commit proceeds with Registered
 * branches, tc/fsm.c DECIDE) and phase 2 delivers either decision to it, at any instance of the
 * resource, while every start's recovery scan settles it by GlobalStatus. All that is lost is
 * the guard's immediate ROLLBACK PREPARED: the rollback then comes from phase 2.
 */

static PGconn *src_get(void *arg)
{
    PGconn *c = NULL;
    return pool_get(arg, &c) == SINTER_OK ? c : NULL;
}

static void src_put(void *arg, PGconn *c, int rc)
{
    pool_put(arg, c, rc);
}

static uint32_t async_bucket(const struct sinter_xid *xid, uint64_t branch_id)
{
    uint64_t h = (branch_id ^ ((uint64_t)xid->group << 48) ^ xid->index) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 54) & (XA_ASYNC_BUCKETS - 1u);
}

static void async_unhash_locked(struct sinter_rm_xa *x, struct xa_async *a)
{
    struct xa_async **pp = &x->abucket[async_bucket(&a->br.xid, a->br.branch_id)];
    while (*pp != NULL && *pp != a) {
        pp = &(*pp)->hnext;
    }
    if (*pp == a) {
        *pp = a->hnext;
    }
    a->hnext = NULL;
}

static bool same_branch(const struct sinter_xid *a, uint64_t ab, const struct sinter_xid *b,
                        uint64_t bb)
{
    return ab == bb && a->group == b->group && a->index == b->index;
}

/* The queued report of (xid, branch_id), or NULL; amu held. */
static struct xa_async *async_find_locked(struct sinter_rm_xa *x, const struct sinter_xid *xid,
                                          uint64_t branch_id)
{
    for (struct xa_async *a = x->abucket[async_bucket(xid, branch_id)]; a != NULL; a = a->hnext) {
        if (same_branch(&a->br.xid, a->br.branch_id, xid, branch_id)) {
            return a;
        }
    }
    return NULL;
}

/* Takes a off the queue and its hash bucket; amu held. */
static void async_unlink_locked(struct sinter_rm_xa *x, struct xa_async *a)
{
    if (a->prev != NULL) {
        a->prev->next = a->next;
    } else {
        x->ahead = a->next;
    }
    if (a->next != NULL) {
        a->next->prev = a->prev;
    } else {
        x->atail = a->prev;
    }
    a->next = a->prev = NULL;
    async_unhash_locked(x, a);
    x->aqueued--;
}

/* Whether a phase-2 rollback delivery found branch (xid, branch_id) not prepared yet within
 * XA_SEEN_TTL_MS (async_rollback_seen); the sighting is used up. amu held. */
static bool async_seen_take_locked(struct sinter_rm_xa *x, const struct sinter_xid *xid,
                                   uint64_t branch_id)
{
    uint64_t now = sinter_client_now_ms();
    for (uint32_t i = 0; i < XA_SEEN_SLOTS; i++) {
        struct xa_seen *e = &x->aseen[i];
        if (e->branch_id != 0 && e->until_ms >= now &&
            same_branch(&e->xid, e->branch_id, xid, branch_id)) {
            e->branch_id = 0;
            return true;
        }
    }
    return false;
}

static int hook_report_async(void *arg, const struct sinter_xa_branch *br)
{
    struct sinter_rm_xa *x = arg;
    struct xa_async *a = malloc(sizeof *a);
    pthread_mutex_lock(&x->amu);
    if (x->delay_ms > 0 && async_seen_take_locked(x, &br->xid, br->branch_id)) {
        /* The global is already on the rollback side (phase 2 delivered its rollback while the
         * transaction was still open): issue #7 wants a late PREPARE rolled back at once, not
         * after report_delay_ms. sinter_xa_prepare reports synchronously, the report is
         * refused, and its guard rolls the branch back on the caller's connection now. */
        x->ast.expedited++;
        pthread_mutex_unlock(&x->amu);
        free(a);
        return SINTER_EBUSY;
    }
    uint32_t cap = atomic_load(&sinter_rm_xa_test_queue_cap);
    cap = cap != 0 ? cap : SINTER_RM_XA_ASYNC_QUEUE;
    if (a == NULL || x->aclosing || x->aqueued + x->abusy >= cap) {
        x->ast.sync_fallbacks++;
        pthread_mutex_unlock(&x->amu);
        free(a);
        return SINTER_EBUSY; /* sinter_xa_prepare reports synchronously */
    }
    a->next = NULL;
    a->prev = x->atail;
    a->br = *br;
    a->due_ms = sinter_client_now_ms() + x->delay_ms;
    a->expedited = false;
    uint32_t b = async_bucket(&br->xid, br->branch_id);
    a->hnext = x->abucket[b];
    x->abucket[b] = a;
    if (x->atail != NULL) {
        x->atail->next = a;
    } else {
        x->ahead = a;
    }
    x->atail = a;
    x->aqueued++;
    x->ast.queued++;
    pthread_cond_signal(&x->acv);
    pthread_mutex_unlock(&x->amu);
    return SINTER_OK;
}

/* Phase 2 ended branch (xid, branch_id) on this RM (COMMIT PREPARED / ROLLBACK PREPARED done,
 * or found done): a PhaseOne_Done report of it still queued has nothing left to guard. The
 * decision it would have raced is made (phase 2 runs only after one), the branch is no longer
 * prepared, and the report would only be refused (one coordinator write) and then followed by a
 * GlobalStatus read: it is dropped, and freed at once so that it takes no room in the queue
 * (SINTER_RM_XA_ASYNC_QUEUE) while its delay would have run. A report a sender has already taken
 * is sent and settled as usual. */
static void async_supersede(struct sinter_rm_xa *x, const struct sinter_xid *xid,
                            uint64_t branch_id)
{
    pthread_mutex_lock(&x->amu);
    struct xa_async *a = async_find_locked(x, xid, branch_id);
    if (a != NULL) {
        async_unlink_locked(x, a);
        x->ast.superseded++;
        free(a);
        pthread_cond_signal(&x->acv); /* it may have been the head a sender sleeps on */
    }
    pthread_mutex_unlock(&x->amu);
}

/* A phase-2 rollback delivery found branch (xid, branch_id) still in progress (not prepared
 * yet) or busy: the global is on the rollback side, so the branch's report must not wait for
 * report_delay_ms before its guard rolls the branch back (issue #7: a late PREPARE is "refused
 * or immediately rolled back"; phase 2's own next delivery may be up to retry_max_ms away, and
 * none comes after RollbackRetryTimeout). A queued report becomes due now (moved to the head:
 * its due time is then the smallest); a report still to come (the usual case: PREPARE has not
 * happened) is remembered for XA_SEEN_TTL_MS so that hook_report_async sends it synchronously. */
static void async_rollback_seen(struct sinter_rm_xa *x, const struct sinter_xid *xid,
                                uint64_t branch_id)
{
    pthread_mutex_lock(&x->amu);
    x->ast.early_rollbacks++;
    struct xa_async *a = async_find_locked(x, xid, branch_id);
    if (a != NULL) {
        async_unlink_locked(x, a);
        uint32_t b = async_bucket(xid, branch_id);
        a->hnext = x->abucket[b];
        x->abucket[b] = a;
        a->due_ms = sinter_client_now_ms();
        a->expedited = true;
        a->next = x->ahead;
        if (x->ahead != NULL) {
            x->ahead->prev = a;
        } else {
            x->atail = a;
        }
        x->ahead = a;
        x->aqueued++;
        x->ast.expedited++;
        pthread_cond_signal(&x->acv);
    } else {
        struct xa_seen *e = NULL;
        for (uint32_t i = 0; i < XA_SEEN_SLOTS && e == NULL; i++) {
            if (x->aseen[i].branch_id != 0 &&
                same_branch(&x->aseen[i].xid, x->aseen[i].branch_id, xid, branch_id)) {
                e = &x->aseen[i]; /* a repeated delivery: refresh it */
            }
        }
        if (e == NULL) {
            e = &x->aseen[x->aseen_next];
            x->aseen_next = (x->aseen_next + 1u) % XA_SEEN_SLOTS;
        }
        e->xid = *xid;
        e->branch_id = branch_id;
        e->until_ms = sinter_client_now_ms() + XA_SEEN_TTL_MS;
    }
    pthread_mutex_unlock(&x->amu);
}

void sinter_rm_xa_test_rollback_seen(struct sinter_rm_xa *x, const struct sinter_xid *xid,
                                     uint64_t branch_id)
{
    async_rollback_seen(x, xid, branch_id);
}

bool sinter_rm_xa_phase2_ended(int rc, uint32_t outcome)
{
    /* Only a finished COMMIT PREPARED / ROLLBACK PREPARED (or one found finished: 42704 resolved
     * by pg_xact_status) ends the branch. A retryable result ('in progress', 55000 busy, a
     * timeout, a lost connection) leaves it prepared or still to prepare: its report and guard
     * are still needed. */
    return rc == SINTER_OK &&
           (outcome == SINTER_BS_PHASE2_COMMITTED || outcome == SINTER_BS_PHASE2_ROLLBACKED);
}

/* Waits ms on cv unless the resource is closing; amu held. */
static void async_wait_locked(struct sinter_rm_xa *x, pthread_cond_t *cv, uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (!x->aclosing) {
        (void)pthread_cond_timedwait(cv, &x->amu, &ts);
    }
}

/* The next report to send, NULL when closing with the queue empty; amu held. The head is taken
 * once due (at once while closing). One sender at a time sleeps until the head's due time
 * (atimer), the others wait untimed, so a long delay does not wake every sender at every due
 * time. */
static struct xa_async *async_take_locked(struct sinter_rm_xa *x)
{
    for (;;) {
        struct xa_async *a = x->ahead;
        if (a == NULL) {
            if (x->aclosing) {
                return NULL;
            }
            pthread_cond_wait(&x->acv, &x->amu);
            continue;
        }
        uint64_t now = sinter_client_now_ms();
        bool held = atomic_load(&sinter_rm_xa_test_hold_queue);
        if (x->aclosing || (a->due_ms <= now && (!held || a->expedited))) {
            async_unlink_locked(x, a);
            if (x->ahead != NULL) {
                pthread_cond_signal(&x->acv); /* someone for the next one */
            }
            return a;
        }
        if (held) {
            async_wait_locked(x, &x->pcv, 5); /* test only: polls, leaves acv to the others */
            continue;
        }
        if (x->atimer) {
            pthread_cond_wait(&x->acv, &x->amu);
            continue;
        }
        x->atimer = true;
        uint64_t wait = a->due_ms - now;
        async_wait_locked(x, &x->acv, wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait);
        x->atimer = false;
    }
}

/* A send worth repeating: no answer (or not from a leader) within the client's deadline. A
 * resend carries a new seq, which is fine: the coordinator accepts the same status again
 * (tc/fsm.c REPORT_BRANCH "repeating the recorded status is accepted"). */
static bool resend_worthy(int rc)
{
    return rc == SINTER_ETIMEOUT || rc == SINTER_ETRANSPORT || rc == SINTER_ENOTLEADER ||
           rc == SINTER_EBUSY || rc == SINTER_ENOMEM;
}

static void async_send(struct sinter_rm_xa *x, const struct sinter_xa_branch *br)
{
    pthread_mutex_lock(&x->amu);
    while (atomic_load(&sinter_rm_xa_test_hold_reports) && !x->aclosing) {
        async_wait_locked(x, &x->pcv, 5);
    }
    if (x->aclosing && (atomic_load(&sinter_rm_xa_test_hold_reports) ||
                        sinter_client_now_ms() > x->aclose_deadline)) {
        x->ast.abandoned++; /* safe: see the comment above hook_report_async */
        pthread_mutex_unlock(&x->amu);
        return;
    }
    pthread_mutex_unlock(&x->amu);
    int rrc = SINTER_OK;
    for (uint32_t n = 1;; n++) {
        rrc = hook_report(x, br, SINTER_BS_PHASE1_DONE);
        pthread_mutex_lock(&x->amu);
        bool again = resend_worthy(rrc) && n < XA_REPORT_SENDS && !x->aclosing;
        if (again) {
            async_wait_locked(x, &x->pcv, n * XA_RESEND_STEP_MS);
            again = !x->aclosing;
            if (again) {
                x->ast.resent++; /* counted only when it goes out */
            }
        }
        pthread_mutex_unlock(&x->amu);
        if (!again) {
            break;
        }
    }
    if (rrc == SINTER_OK) {
        pthread_mutex_lock(&x->amu);
        x->ast.accepted++;
        pthread_mutex_unlock(&x->amu);
        return;
    }
    bool refused = rrc == SINTER_ESTATE || rrc == SINTER_ENOTFOUND;
    const struct sinter_xa_conn_source src = {.get = src_get, .put = src_put, .arg = x};
    bool rolled_back = false;
    int grc = sinter_xa_report_settle(x->res, &src, br, rrc, &rolled_back);
    pthread_mutex_lock(&x->amu);
    if (refused) {
        x->ast.refused++;
    } else {
        x->ast.lost++;
    }
    if (grc == SINTER_ESTATE && rolled_back) {
        x->ast.guard_rollbacks++;
    } else {
        x->ast.left++;
    }
    /* The sender has no log: what the settle found (sinter_xa_errmsg() is this thread's) is
     * kept for sinter_rm_xa_report_stats. */
    snprintf(x->ast.last_error, sizeof x->ast.last_error, "%s", sinter_xa_errmsg());
    pthread_mutex_unlock(&x->amu);
}

static void *sender_main(void *arg)
{
    struct sinter_rm_xa *x = arg;
    pthread_mutex_lock(&x->amu);
    for (;;) {
        struct xa_async *a = async_take_locked(x);
        if (a == NULL) {
            break; /* closing and drained */
        }
        x->abusy++;
        pthread_mutex_unlock(&x->amu);
        async_send(x, &a->br);
        free(a);
        pthread_mutex_lock(&x->amu);
        x->abusy--;
    }
    pthread_mutex_unlock(&x->amu);
    return NULL;
}

/* Stops the senders: drain until deadline_ms from now, abandon the rest, join (close). */
static void async_stop(struct sinter_rm_xa *x)
{
    uint32_t dl =
        x->rm->o.deadline_ms != 0 ? x->rm->o.deadline_ms : SINTER_CLIENT_DEFAULT_DEADLINE_MS;
    pthread_mutex_lock(&x->amu);
    x->aclosing = true;
    x->aclose_deadline = sinter_client_now_ms() + dl;
    pthread_cond_broadcast(&x->acv);
    pthread_cond_broadcast(&x->pcv);
    pthread_mutex_unlock(&x->amu);
    for (uint32_t i = 0; i < x->n_senders; i++) {
        pthread_join(x->senders[i], NULL);
    }
    x->n_senders = 0;
    /* Only when no sender could be started. */
    while (x->ahead != NULL) {
        struct xa_async *a = x->ahead;
        async_unlink_locked(x, a);
        x->ast.abandoned++;
        free(a);
    }
}

void sinter_rm_xa_report_stats(struct sinter_rm_xa *x, struct sinter_rm_xa_report_stats *st)
{
    if (st == NULL) {
        return;
    }
    if (x == NULL) {
        memset(st, 0, sizeof *st);
        return;
    }
    pthread_mutex_lock(&x->amu);
    *st = x->ast;
    st->pending = x->aqueued + x->abusy;
    st->in_flight = x->abusy;
    pthread_mutex_unlock(&x->amu);
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
    if (x->async && sinter_rm_xa_phase2_ended(rc, outcome)) {
        async_supersede(x, &w->xid, w->branch_id); /* the branch is ended: nothing to guard */
    } else if (x->async && x->delay_ms > 0 && !w->commit && rc == SINTER_EBUSY) {
        async_rollback_seen(x, &w->xid, w->branch_id); /* its guard must not wait */
    }
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
    /* First: the senders may still use the pool, the client and the resource. */
    async_stop(x);
    free(x->senders);
    for (uint32_t i = 0; i < x->n_idle; i++) {
        PQfinish(x->idle[i]);
    }
    free(x->idle);
    sinter_xa_resource_close(x->res);
    pthread_cond_destroy(&x->acv);
    pthread_cond_destroy(&x->pcv);
    pthread_mutex_destroy(&x->amu);
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
    if (o->report_threads > SINTER_RM_XA_REPORT_THREADS_MAX ||
        o->report_delay_ms > SINTER_RM_XA_REPORT_DELAY_MAX_MS) {
        sinter_client_set_errmsg("xa resource: report_threads at most %u, report_delay_ms at "
                                 "most %u",
                                 SINTER_RM_XA_REPORT_THREADS_MAX, SINTER_RM_XA_REPORT_DELAY_MAX_MS);
        return SINTER_EINVAL;
    }
    struct sinter_rm_xa *x = calloc(1, sizeof *x);
    if (x == NULL) {
        return SINTER_ENOMEM;
    }
    pthread_mutex_init(&x->mu, NULL);
    pthread_mutex_init(&x->amu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* async_pause_locked's clock */
    pthread_cond_init(&x->acv, &ca);
    pthread_cond_init(&x->pcv, &ca);
    pthread_condattr_destroy(&ca);
    x->rm = rm;
    x->async = o->async_report;
    x->delay_ms = o->report_delay_ms;
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
                  .report_async = x->async ? hook_report_async : NULL,
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
    if (x->async) {
        uint32_t n = o->report_threads != 0 ? o->report_threads : XA_SENDERS_DEFAULT;
        x->senders = calloc(n, sizeof *x->senders);
        if (x->senders == NULL) {
            xa_free(x);
            return SINTER_ENOMEM;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (pthread_create(&x->senders[i], NULL, sender_main, x) != 0) {
                sinter_client_set_errmsg("xa resource '%s': a report sender thread could not "
                                         "be created",
                                         o->resource_id);
                xa_free(x); /* joins the ones started */
                return SINTER_EINTERNAL;
            }
            x->n_senders = i + 1;
        }
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
