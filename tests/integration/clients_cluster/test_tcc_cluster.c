/*
 * A full TCC round trip against three real sinter-tc processes on loopback (tests/lib/tccluster.h):
 * libsinter-tm begins and ends the globals, libsinter-rm runs the try on the service's SQLite
 * connection and the confirm / cancel on its phase-2 workers, delivered by the coordinator's
 * phase-2 driver (tc/worker.c):
 *   - begin -> try -> commit: confirm runs once, the fence row ends COMMITTED, the global reaches
 *     Committed;
 *   - begin -> try -> rollback: cancel runs once, ROLLBACKED, the global reaches Rollbacked;
 *   - begin -> try -> commit, the confirm held back (it answers SINTER_EBUSY: retryable) while
 *     the leader of the global's group is killed with SIGKILL after the decision: the new
 *     leader delivers the confirm and the global still reaches Committed;
 *   - the same commit and rollback for an action whose phase 2 borrows from the caller's pool
 *     (connect + disconnect), whose connections carry fence statement caches, as the tries'
 *     connection does: every borrow is given back idle, and once the caches are freed every
 *     connection closes (SQLITE_OK, nothing leaked under ASan).
 * Every wait is bounded and polls; nodes are stopped by PID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>

#include "sinter/client.h"
#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/rm.h"
#include "sinter/tcc.h"
#include "sinter/tm.h"
#include "sinter/types.h"
#include "tccluster.h"
#include "testproc.h"

#define SECRET  "tcc-cluster-secret"
#define WAIT_MS 60000u

static const char *g_bin;
static struct sinter_tcc g_c;

struct acct {
    atomic_int tries, confirms, cancels;
    atomic_int hold; /* 1: the confirm answers SINTER_EBUSY (the coordinator retries) */
    atomic_int held; /* confirms refused while holding */
};

static int exec_sql(const struct sinter_tcc_ctx *ctx, const char *what)
{
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO ledger(entry) VALUES('%s %s %llu')", what, ctx->xid,
             (unsigned long long)ctx->branch_id);
    return sqlite3_exec(ctx->db->sqlite, sql, NULL, NULL, NULL) == SQLITE_OK ? SINTER_OK
                                                                             : SINTER_EDB;
}

static int acct_try(const struct sinter_tcc_ctx *ctx)
{
    struct acct *a = ctx->user;
    atomic_fetch_add(&a->tries, 1);
    return exec_sql(ctx, "try");
}

static int acct_confirm(const struct sinter_tcc_ctx *ctx)
{
    struct acct *a = ctx->user;
    if (atomic_load(&a->hold)) {
        atomic_fetch_add(&a->held, 1);
        return SINTER_EBUSY;
    }
    atomic_fetch_add(&a->confirms, 1);
    return exec_sql(ctx, "confirm");
}

static int acct_cancel(const struct sinter_tcc_ctx *ctx)
{
    struct acct *a = ctx->user;
    atomic_fetch_add(&a->cancels, 1);
    return exec_sql(ctx, "cancel");
}

/* The caller's pool for the connect factory (sinter/tcc.h): SQLite connections to the service's
 * file, each with its fence statement cache, borrowed per delivery and given back after it. */
#define POOL_MAX 8
struct pool {
    pthread_mutex_t mu;
    const char *path;
    struct sinter_fence_db idle[POOL_MAX];
    int n_idle, opened, borrowed, returned, returned_busy;
    atomic_int close_failed; /* counted, asserted on the test's thread (not an RM worker's) */
};

static int pool_connect(void *arg, struct sinter_fence_db *db)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    p->borrowed++;
    if (p->n_idle > 0) {
        *db = p->idle[--p->n_idle];
        pthread_mutex_unlock(&p->mu);
        return SINTER_OK;
    }
    p->opened++;
    pthread_mutex_unlock(&p->mu);
    sqlite3 *s = NULL;
    if (sqlite3_open(p->path, &s) != SQLITE_OK) {
        sqlite3_close(s);
        return SINTER_EDB;
    }
    sqlite3_busy_timeout(s, 5000);
    *db = sinter_fence_db_sqlite(s);
    int rc = sinter_fence_cache_new(db, &db->cache);
    if (rc != SINTER_OK) {
        sqlite3_close(s);
    }
    return rc;
}

static void pool_disconnect(void *arg, struct sinter_fence_db *db)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    p->returned++;
    p->returned_busy += !sqlite3_get_autocommit(db->sqlite);
    if (p->n_idle < POOL_MAX && sqlite3_get_autocommit(db->sqlite)) {
        p->idle[p->n_idle++] = *db;
        db->sqlite = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (db->sqlite != NULL) {
        (void)sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL);
        sinter_fence_cache_free(db->cache);
        if (sqlite3_close(db->sqlite) != SQLITE_OK) {
            atomic_fetch_add(&p->close_failed, 1);
        }
    }
}

static long count_rows(sqlite3 *db, const char *what, const char *xid)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ledger WHERE entry LIKE '%s %s %%'", what, xid);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The node (1..n) leading group, asked through a client core handle (ClusterMeta / answers). */
static int leader_node(uint32_t group, const char *xid)
{
    const char *urls[SINTER_TCC_MAX_NODES];
    int n = sinter_tcc_client_urls(&g_c, urls);
    struct sinter_client_opts o;
    sinter_client_opts_default(&o);
    o.urls = urls;
    o.n_urls = (size_t)n;
    o.secret = SECRET;
    struct sinter_client *cl = NULL;
    assert_int_equal(sinter_client_open(&cl, &o), SINTER_OK);
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_STATUS;
    assert_int_equal(sinter_xid_parse(&m.u.global_status.xid, xid, strlen(xid)), SINTER_OK);
    struct sinter_transport_reply_msg *r = NULL;
    assert_int_equal(sinter_client_call(cl, &m, group, WAIT_MS, &r), SINTER_OK);
    sinter_transport_reply_free(r);
    int idx = sinter_client_leader(cl, group);
    assert_true(idx >= 0);
    const char *url = sinter_client_node_url(cl, (size_t)idx);
    int found = 0;
    for (int i = 1; i <= g_c.n; i++) {
        if (strcmp(g_c.node[i].client_url, url) == 0) {
            found = i;
        }
    }
    sinter_client_close(cl);
    assert_true(found > 0);
    return found;
}

static void tcc_round_trips(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_init(&g_c, g_bin, "tcc-cluster", 3, 1, SECRET,
                                     "[tc]\nretry_initial_ms = 50\nretry_max_ms = 300\n"
                                     "phase2_lease_ms = 3000\n"),
                     0);
    assert_int_equal(sinter_tcc_start_all(&g_c), 0);
    assert_int_equal(sinter_tcc_wait_leaders(&g_c, 1, WAIT_MS), 0);

    char path[400];
    snprintf(path, sizeof path, "%s/service.db", g_c.tmp);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE ledger(entry TEXT)", NULL, NULL, NULL),
                     SQLITE_OK);
    struct sinter_fence_db fdb = sinter_fence_db_sqlite(db);
    /* The tries' connection carries a statement cache (freed before the close, at the end). */
    assert_int_equal(sinter_fence_cache_new(&fdb, &fdb.cache), SINTER_OK);

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
    const char *res[2] = {"acct", "acct-pool"};
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = urls;
    ro.n_addresses = (size_t)n;
    ro.secret = SECRET;
    ro.resources = res;
    ro.n_resources = 2;
    ro.deadline_ms = WAIT_MS;
    ro.poll_wait_ms = 1000;
    ro.meta_refresh_ms = 1000;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &ro), SINTER_OK);
    struct acct a;
    memset(&a, 0, sizeof a);
    struct sinter_tcc_action act;
    memset(&act, 0, sizeof act);
    act.name = "acct";
    act.try_fn = acct_try;
    act.confirm_fn = acct_confirm;
    act.cancel_fn = acct_cancel;
    act.user = &a;
    act.sqlite_path = path;
    assert_int_equal(sinter_tcc_register(rm, &act), SINTER_OK);
    struct acct pa;
    memset(&pa, 0, sizeof pa);
    struct pool pool;
    memset(&pool, 0, sizeof pool);
    pthread_mutex_init(&pool.mu, NULL);
    pool.path = path;
    act.name = "acct-pool";
    act.user = &pa;
    act.sqlite_path = NULL;
    act.connect = pool_connect;
    act.disconnect = pool_disconnect;
    act.connect_arg = &pool;
    assert_int_equal(sinter_tcc_register(rm, &act), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);

    /* Commit: confirm once, Committed. */
    char x1[SINTER_XID_STRLEN];
    uint64_t b1 = 0;
    uint32_t st = 0;
    assert_int_equal(sinter_tm_begin(tm, "tcc-commit", 0, x1), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "acct", x1, "a:1", 3, &fdb, &b1), SINTER_OK);
    assert_int_equal(sinter_tm_commit(tm, x1, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(count_rows(db, "confirm", x1), 1);
    assert_int_equal(count_rows(db, "cancel", x1), 0);
    int fs = 0;
    assert_int_equal(sinter_fence_status(&fdb, x1, b1, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_COMMITTED);

    /* Rollback: cancel once, Rollbacked. */
    char x2[SINTER_XID_STRLEN];
    uint64_t b2 = 0;
    assert_int_equal(sinter_tm_begin(tm, "tcc-rollback", 0, x2), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "acct", x2, "a:2", 3, &fdb, &b2), SINTER_OK);
    assert_int_equal(sinter_tm_rollback(tm, x2, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(count_rows(db, "cancel", x2), 1);
    assert_int_equal(count_rows(db, "confirm", x2), 0);
    assert_int_equal(sinter_fence_status(&fdb, x2, b2, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_ROLLBACKED);

    /* Failover after the decision: the confirm is held back (retryable) until the leader is
     * gone, then the new leader's delivery confirms. */
    char x3[SINTER_XID_STRLEN];
    uint64_t b3 = 0;
    assert_int_equal(sinter_tm_begin(tm, "tcc-failover", 0, x3), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "acct", x3, "a:3", 3, &fdb, &b3), SINTER_OK);
    atomic_store(&a.hold, 1);
    assert_int_equal(sinter_tm_commit(tm, x3, 0, &st), SINTER_OK); /* durable decision */
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (atomic_load(&a.held) == 0 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(20);
    }
    assert_true(atomic_load(&a.held) > 0); /* the old leader delivered; it was refused */
    int victim = leader_node(0, x3);
    sinter_tcc_kill9(&g_c, victim);
    atomic_store(&a.hold, 0);
    assert_int_equal(sinter_tm_status(tm, x3, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(count_rows(db, "confirm", x3), 1);
    assert_int_equal(sinter_fence_status(&fdb, x3, b3, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_COMMITTED);
    /* Hooks ran once per branch in total: fenced against the redeliveries. */
    assert_int_equal(atomic_load(&a.confirms), 2);
    assert_int_equal(atomic_load(&a.cancels), 1);
    assert_int_equal(atomic_load(&a.tries), 3);

    /* The pooled action: commit and rollback, the hooks once each. */
    char x4[SINTER_XID_STRLEN], x5[SINTER_XID_STRLEN];
    uint64_t b4 = 0, b5 = 0;
    assert_int_equal(sinter_tm_begin(tm, "tcc-pool-commit", 0, x4), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "acct-pool", x4, "p:4", 3, &fdb, &b4), SINTER_OK);
    assert_int_equal(sinter_tm_commit(tm, x4, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(sinter_tm_begin(tm, "tcc-pool-rollback", 0, x5), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "acct-pool", x5, "p:5", 3, &fdb, &b5), SINTER_OK);
    assert_int_equal(sinter_tm_rollback(tm, x5, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(count_rows(db, "confirm", x4), 1);
    assert_int_equal(count_rows(db, "cancel", x5), 1);
    assert_int_equal(sinter_fence_status(&fdb, x4, b4, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_COMMITTED);
    assert_int_equal(sinter_fence_status(&fdb, x5, b5, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_ROLLBACKED);
    assert_int_equal(atomic_load(&pa.confirms), 1);
    assert_int_equal(atomic_load(&pa.cancels), 1);
    assert_int_equal(atomic_load(&pa.tries), 2);

    sinter_rm_close(rm);
    sinter_tm_close(tm);
    /* Every borrow (registration's, both deliveries', maybe a cleanup round's) came back idle;
     * the pool's connections close once their caches are freed. */
    assert_true(pool.borrowed >= 3);
    assert_int_equal(pool.returned, pool.borrowed);
    assert_int_equal(pool.returned_busy, 0);
    assert_int_equal(pool.n_idle, pool.opened);
    assert_int_equal(atomic_load(&pool.close_failed), 0);
    while (pool.n_idle > 0) {
        struct sinter_fence_db *d = &pool.idle[--pool.n_idle];
        sinter_fence_cache_free(d->cache);
        assert_int_equal(sqlite3_close(d->sqlite), SQLITE_OK);
    }
    pthread_mutex_destroy(&pool.mu);
    sinter_fence_cache_free(fdb.cache);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int teardown(void **state)
{
    (void)state;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SINTER_TC_BINARY\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test_teardown(tcc_round_trips, teardown)};
    int rc = cmocka_run_group_tests_name("tcc_cluster", tests, NULL, NULL);
    return sinter_tcc_finish(&g_c, rc);
}
