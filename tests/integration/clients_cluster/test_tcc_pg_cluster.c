/*
 * TCC with the caller's connection factory (struct sinter_tcc_action connect / disconnect, a
 * user's pool of PostgreSQL connections) against three real sinter-tc processes on loopback and
 * the real PostgreSQL of the "pg" ctest fixture:
 *   - a failed sinter_rm_start can be retried on the same handle: every thread creation of the
 *     start fails once in turn (the test-only hook of rm/rm_int.h), each failure stops what it
 *     had started (no thread is left behind) and the handle starts afterwards;
 *   - begin -> try (on the service's own connection) -> commit: the confirm runs once, on a
 *     connection the pool handed out, the fence row ends COMMITTED, the global Committed;
 *   - begin -> try -> rollback: the cancel runs once on a pool connection, ROLLBACKED;
 *   - the pool refuses the first connects of a delivery (its connect hook fails): the delivery
 *     is retryable, the coordinator delivers again and the global still ends Committed;
 *   - every connection the library borrowed went back to the pool (connect / disconnect calls
 *     balance, nothing lent at the end), also for the registration's fence-table check.
 * Every wait is bounded and polls; nodes are stopped by PID.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "../../../rm/rm_int.h" /* sinter_rm_fault_thread_create: test-only */
#include "pgtest.h"
#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/rm.h"
#include "sinter/tcc.h"
#include "sinter/tm.h"
#include "sinter/types.h"
#include "tccluster.h"
#include "testproc.h"

#define SECRET   "tcc-pg-cluster-secret"
#define TEST_DB  "sinter_tcc_pg_cluster"
#define WAIT_MS  60000u
#define ACTION   "pool_acct"
#define POOL_MAX 32

static const char *g_bin;
static char g_base[512], g_conninfo[1024];
static struct sinter_tcc g_c;

/* ---- the user's pool ---- */

struct pool {
    pthread_mutex_t mu;
    PGconn *idle[POOL_MAX];
    int n_idle;
    PGconn *all[POOL_MAX]; /* every connection it opened, to tell a hook's db is from here */
    int n_all;
    int lent;
    atomic_int connects, disconnects, refused, replaced;
    atomic_int fail_next; /* > 0: that many connect calls fail (SINTER_EDB) */
};

static bool pool_owns(struct pool *p, PGconn *c)
{
    pthread_mutex_lock(&p->mu);
    bool found = false;
    for (int i = 0; i < p->n_all && !found; i++) {
        found = p->all[i] == c;
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

static int pool_connect(void *arg, struct sinter_fence_db *db)
{
    struct pool *p = arg;
    atomic_fetch_add(&p->connects, 1);
    int f = atomic_load(&p->fail_next);
    while (f > 0 && !atomic_compare_exchange_weak(&p->fail_next, &f, f - 1)) {
    }
    if (f > 0) {
        atomic_fetch_add(&p->refused, 1);
        return SINTER_EDB; /* "pool exhausted / database down" */
    }
    pthread_mutex_lock(&p->mu);
    PGconn *c = p->n_idle > 0 ? p->idle[--p->n_idle] : NULL;
    if (c == NULL && p->n_all < POOL_MAX) {
        c = PQconnectdb(g_conninfo);
        if (PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        } else {
            p->all[p->n_all++] = c;
        }
    }
    if (c != NULL) {
        p->lent++;
    }
    pthread_mutex_unlock(&p->mu);
    if (c == NULL) {
        return SINTER_EDB;
    }
    *db = sinter_fence_db_pg(c);
    return SINTER_OK;
}

static void pool_disconnect(void *arg, struct sinter_fence_db *db)
{
    struct pool *p = arg;
    atomic_fetch_add(&p->disconnects, 1);
    PGconn *c = db->pg;
    /* A pool checks what it gets back: a connection left inside a transaction is rolled back. */
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        atomic_fetch_add(&p->replaced, 1);
        PQclear(PQexec(c, "ROLLBACK"));
    }
    pthread_mutex_lock(&p->mu);
    p->lent--;
    p->idle[p->n_idle++] = c;
    pthread_mutex_unlock(&p->mu);
}

static void pool_free(struct pool *p)
{
    for (int i = 0; i < p->n_all; i++) {
        PQfinish(p->all[i]);
    }
    pthread_mutex_destroy(&p->mu);
}

/* ---- the service's hooks ---- */

struct svc {
    struct pool *pool;
    PGconn *own; /* the service's connection: tries run here */
    atomic_int tries, confirms, cancels;
    atomic_int phase2_not_from_pool; /* confirm / cancel on a connection the pool never lent */
    atomic_int try_not_own;
};

static int ledger(const struct sinter_tcc_ctx *ctx, const char *what)
{
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO ledger(entry) VALUES('%s %s %llu')", what, ctx->xid,
             (unsigned long long)ctx->branch_id);
    PGresult *r = PQexec(ctx->db->pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? SINTER_OK : SINTER_EDB;
}

static int svc_try(const struct sinter_tcc_ctx *ctx)
{
    struct svc *s = ctx->user;
    atomic_fetch_add(&s->tries, 1);
    if (ctx->db->pg != s->own) {
        atomic_fetch_add(&s->try_not_own, 1);
    }
    return ledger(ctx, "try");
}

static int svc_phase2(const struct sinter_tcc_ctx *ctx, const char *what, atomic_int *count)
{
    struct svc *s = ctx->user;
    atomic_fetch_add(count, 1);
    if (!pool_owns(s->pool, ctx->db->pg) || ctx->db->pg == s->own) {
        atomic_fetch_add(&s->phase2_not_from_pool, 1);
    }
    return ledger(ctx, what);
}

static int svc_confirm(const struct sinter_tcc_ctx *ctx)
{
    return svc_phase2(ctx, "confirm", &((struct svc *)ctx->user)->confirms);
}

static int svc_cancel(const struct sinter_tcc_ctx *ctx)
{
    return svc_phase2(ctx, "cancel", &((struct svc *)ctx->user)->cancels);
}

/* ---- helpers ---- */

static void must(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
}

static long ledger_rows(PGconn *c, const char *what, const char *xid)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ledger WHERE entry LIKE '%s %s %%'", what, xid);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static int fence_state(PGconn *c, const char *xid, uint64_t branch)
{
    struct sinter_fence_db fdb = sinter_fence_db_pg(c);
    int fs = 0;
    assert_int_equal(sinter_fence_status(&fdb, xid, branch, &fs), SINTER_OK);
    return fs;
}

/* Every borrow given back (refused connects borrow nothing). Polled: a duplicate delivery (an
 * expired lease on a loaded machine) may still hold a connection for a moment. */
static bool balanced(struct pool *p)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    for (;;) {
        bool ok =
            atomic_load(&p->connects) == atomic_load(&p->disconnects) + atomic_load(&p->refused);
        if (ok || sinter_test_now_ms() >= end) {
            return ok;
        }
        sinter_test_sleep_ms(20);
    }
}

/* Threads of this process now (/proc/self/task entries). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* thread_count() once it equals want, polled: pthread_join returns when the kernel clears the
 * thread's tid, a moment before the thread leaves /proc/self/task. */
static int thread_count_settled(int want)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    int n = thread_count();
    while (n != want && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(10);
        n = thread_count();
    }
    return n;
}

static void round_trips(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_init(&g_c, g_bin, "tcc-pg-cluster", 3, 1, SECRET,
                                     "[tc]\nretry_initial_ms = 50\nretry_max_ms = 300\n"
                                     "phase2_lease_ms = 3000\n"),
                     0);
    assert_int_equal(sinter_tcc_start_all(&g_c), 0);
    assert_int_equal(sinter_tcc_wait_leaders(&g_c, 1, WAIT_MS), 0);
    assert_int_equal(sinter_test_pg_fresh_db(g_base, TEST_DB, g_conninfo, sizeof g_conninfo), 0);

    struct svc s;
    memset(&s, 0, sizeof s);
    struct pool pool;
    memset(&pool, 0, sizeof pool);
    pthread_mutex_init(&pool.mu, NULL);
    s.pool = &pool;
    s.own = PQconnectdb(g_conninfo);
    assert_int_equal(PQstatus(s.own), CONNECTION_OK);
    must(s.own, "CREATE TABLE ledger(entry TEXT)");
    struct sinter_fence_db own = sinter_fence_db_pg(s.own);

    const char *urls[SINTER_TCC_MAX_NODES];
    int n = sinter_tcc_client_urls(&g_c, urls);
    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = urls;
    to.n_addresses = (size_t)n;
    to.secret = SECRET;
    to.deadline_ms = WAIT_MS;
    struct sinter_tm *tm = NULL;
    assert_int_equal(sinter_tm_open(&tm, &to), SINTER_OK);
    const char *res[1] = {ACTION};
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = urls;
    ro.n_addresses = (size_t)n;
    ro.secret = SECRET;
    ro.resources = res;
    ro.n_resources = 1;
    ro.deadline_ms = WAIT_MS;
    ro.poll_wait_ms = 1000;
    ro.meta_refresh_ms = 1000;
    ro.workers = 2;
    ro.reporters = 2;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &ro), SINTER_OK);

    struct sinter_tcc_action act;
    memset(&act, 0, sizeof act);
    act.name = ACTION;
    act.try_fn = svc_try;
    act.confirm_fn = svc_confirm;
    act.cancel_fn = svc_cancel;
    act.user = &s;
    act.connect = pool_connect;
    act.disconnect = pool_disconnect;
    act.connect_arg = &pool;
    assert_int_equal(sinter_tcc_register(rm, &act), SINTER_OK);
    /* The registration borrowed one connection to create the fence table, and gave it back. */
    assert_int_equal(atomic_load(&pool.connects), 1);
    assert_int_equal(atomic_load(&pool.disconnects), 1);

    /* ---- a failed start, retried on the same handle ---- */
    /* Network once first, so the transport's own threads exist before counting ours. */
    uint32_t gs = 0;
    assert_int_equal(sinter_rm_global_status(rm, "0:1", &gs), SINTER_OK);
    int threads0 = thread_count();
    /* 2 reporters + 2 workers + 3 pollers + the maintenance thread: fail each creation once. */
    const int creations = 2 + 2 + 3 + 1;
    for (int k = 1; k <= creations; k++) {
        atomic_store(&sinter_rm_fault_thread_create, k);
        assert_int_equal(sinter_rm_start(rm), SINTER_EINTERNAL);
        assert_int_equal(atomic_load(&sinter_rm_fault_thread_create), 0); /* it was hit */
        assert_non_null(strstr(sinter_rm_errmsg(), "thread"));
        struct sinter_rm_stats st;
        sinter_rm_stats(rm, &st);
        assert_int_equal(st.pollers, 0);
        /* Everything it had started is joined (pollers woken from their long poll). */
        assert_int_equal(thread_count_settled(threads0), threads0);
        /* Phase one still works on the handle. */
        assert_int_equal(sinter_rm_global_status(rm, "0:1", &gs), SINTER_OK);
    }
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_ESTATE);
    struct sinter_rm_stats st;
    sinter_rm_stats(rm, &st);
    assert_true(st.pollers >= 3);
    assert_int_equal(thread_count(), threads0 + creations);

    /* ---- commit: the confirm runs on a pool connection ---- */
    char x1[SINTER_XID_STRLEN];
    uint64_t b1 = 0;
    uint32_t gst = 0;
    assert_int_equal(sinter_tm_begin(tm, "pool-commit", 0, x1), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, ACTION, x1, "a:1", 3, &own, &b1), SINTER_OK);
    assert_int_equal(fence_state(s.own, x1, b1), SINTER_FENCE_TRIED);
    int c0 = atomic_load(&pool.connects);
    assert_int_equal(sinter_tm_commit(tm, x1, WAIT_MS, &gst), SINTER_OK);
    assert_int_equal(gst, SINTER_GS_COMMITTED);
    assert_int_equal(atomic_load(&s.confirms), 1);
    assert_int_equal(atomic_load(&s.cancels), 0);
    assert_int_equal(ledger_rows(s.own, "try", x1), 1);
    assert_int_equal(ledger_rows(s.own, "confirm", x1), 1);
    assert_int_equal(fence_state(s.own, x1, b1), SINTER_FENCE_COMMITTED);
    /* One borrow per delivery, given back before the report (so before Committed). */
    assert_true(atomic_load(&pool.connects) >= c0 + 1);
    assert_true(balanced(&pool));

    /* ---- rollback: the cancel runs on a pool connection ---- */
    char x2[SINTER_XID_STRLEN];
    uint64_t b2 = 0;
    assert_int_equal(sinter_tm_begin(tm, "pool-rollback", 0, x2), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, ACTION, x2, "a:2", 3, &own, &b2), SINTER_OK);
    c0 = atomic_load(&pool.connects);
    assert_int_equal(sinter_tm_rollback(tm, x2, WAIT_MS, &gst), SINTER_OK);
    assert_int_equal(gst, SINTER_GS_ROLLBACKED);
    assert_int_equal(atomic_load(&s.cancels), 1);
    assert_int_equal(atomic_load(&s.confirms), 1);
    assert_int_equal(ledger_rows(s.own, "cancel", x2), 1);
    assert_int_equal(ledger_rows(s.own, "confirm", x2), 0);
    assert_int_equal(fence_state(s.own, x2, b2), SINTER_FENCE_ROLLBACKED);
    assert_true(atomic_load(&pool.connects) >= c0 + 1);
    assert_true(balanced(&pool));

    /* ---- the pool refuses: retryable, delivered again, Committed ---- */
    char x3[SINTER_XID_STRLEN];
    uint64_t b3 = 0;
    assert_int_equal(sinter_tm_begin(tm, "pool-refuses", 0, x3), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, ACTION, x3, "a:3", 3, &own, &b3), SINTER_OK);
    atomic_store(&pool.fail_next, 3);
    assert_int_equal(sinter_tm_commit(tm, x3, WAIT_MS, &gst), SINTER_OK);
    assert_int_equal(gst, SINTER_GS_COMMITTED);
    assert_int_equal(atomic_load(&pool.refused), 3); /* three deliveries were refused first */
    assert_int_equal(atomic_load(&s.confirms), 2);
    assert_int_equal(ledger_rows(s.own, "confirm", x3), 1);
    assert_int_equal(fence_state(s.own, x3, b3), SINTER_FENCE_COMMITTED);

    assert_int_equal(atomic_load(&s.tries), 3);
    assert_int_equal(atomic_load(&s.try_not_own), 0);
    assert_int_equal(atomic_load(&s.phase2_not_from_pool), 0);
    sinter_rm_close(rm);
    sinter_tm_close(tm);
    /* Every borrow was given back; no connection came back inside a transaction. */
    assert_true(balanced(&pool));
    assert_int_equal(pool.lent, 0);
    assert_int_equal(atomic_load(&pool.replaced), 0);
    fprintf(stderr, "pool: %d connects (%d refused), %d connections opened\n",
            atomic_load(&pool.connects), atomic_load(&pool.refused), pool.n_all);
    pool_free(&pool);
    PQfinish(s.own);
}

static int teardown(void **state)
{
    (void)state;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SINTER_TC_BINARY CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    if (sinter_test_pg_conninfo(argv[2], g_base, sizeof g_base) != 0) {
        return 2;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test_teardown(round_trips, teardown)};
    int rc = cmocka_run_group_tests_name("tcc_pg_cluster", tests, NULL, NULL);
    return sinter_tcc_finish(&g_c, rc);
}
