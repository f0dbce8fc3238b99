/* The TCC fence on a real PostgreSQL server (the ctest fixture "pg", tests/integration/pg):
 * the same scenarios as the SQLite unit test (tests/unit/rm_fence/fence_scenarios.c), then the
 * PostgreSQL-only behaviour: SQLSTATE classification (lock timeout, serialization failure, an
 * aborted transaction inside a hook), a cancel and a confirm overtaking a try still in flight,
 * and races between connections on many branches:
 * try vs cancel, confirm vs confirm, cancel vs cancel, each checked against the fence's
 * invariants (hook runs, final states, balances).
 *
 * usage: test_fence_pg CONNINFO_FILE   (the file the fixture wrote; we use our own database) */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <cmocka.h>

#include "../../unit/rm_fence/fence_scenarios.h"
#include "pgtest.h"
#include "sinter/error.h"

#define TEST_DB "sinter_fence_test"
#define RACE_N  120 /* branches per race: bounded, a few seconds in total */

static char conninfo[1024]; /* the fixture's, plus dbname=TEST_DB */

static PGconn *connect_db(void)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
    return c;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    struct sinter_fence_db *db = calloc(1, sizeof *db);
    assert_non_null(db);
    *db = sinter_fence_db_pg(connect_db());
    assert_int_equal(sinter_fence_init(db), SINTER_OK);
    fence_reset(db);
    *state = db;
    return 0;
}

static int teardown(void **state)
{
    struct sinter_fence_db *db = *state;
    sinter_fence_cache_free(db->cache); /* before the connection goes (sinter/fence.h) */
    PQfinish(db->pg);
    free(db);
    return 0;
}

/* With a statement cache: accepted on PostgreSQL (nothing cached yet), same semantics. */
static int setup_cached(void **state)
{
    setup(state);
    struct sinter_fence_db *db = *state;
    assert_int_equal(sinter_fence_cache_new(db, &db->cache), SINTER_OK);
    return 0;
}

/* A cache belongs to the connection it was made for: another connection's is refused
 * (SINTER_EINVAL) before anything runs. */
static void t_pg_cache_bound_to_connection(void **state)
{
    struct sinter_fence_db *db = *state;
    struct sinter_fence_db other = sinter_fence_db_pg(connect_db());
    other.cache = db->cache;
    assert_int_equal(sinter_fence_try(&other, "40:1", 1, "transfer", NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, "40:1", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "40:1", 1, NULL, NULL), SINTER_OK);
    PQfinish(other.pg);
}

static int status_of(const struct sinter_fence_db *db, const char *xid, uint64_t branch)
{
    int st = -1;
    assert_int_equal(sinter_fence_status(db, xid, branch, &st), SINTER_OK);
    return st;
}

/* ---- SQLSTATE classification ---- */

static int hook_bad_sql(const struct sinter_fence_db *db, void *arg)
{
    (void)arg;
    (void)fx_exec(db, "UPDATE no_such_table SET x = 1", 0, NULL, NULL);
    return 0; /* ignores the failure: the fence must not report success */
}

static void t_pg_aborted_hook_is_not_success(void **state)
{
    struct sinter_fence_db *db = *state;
    assert_int_equal(sinter_fence_try(db, "30:1", 1, "a", hook_bad_sql, NULL), SINTER_EDB);
    assert_non_null(strstr(sinter_fence_errmsg(), "aborted"));
    assert_int_equal(PQtransactionStatus(db->pg), PQTRANS_IDLE);
    assert_int_equal(status_of(db, "30:1", 1), SINTER_FENCE_NONE);
    assert_int_equal(sinter_fence_try(db, "30:1", 1, "a", NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "30:1", 1, hook_bad_sql, NULL), SINTER_EDB);
    assert_int_equal(status_of(db, "30:1", 1), SINTER_FENCE_TRIED);
}

/* Another connection holds the row lock; with lock_timeout the confirm gets 55P03: SINTER_EBUSY
 * (retryable), and the redelivery after the lock is gone succeeds. */
static void t_pg_lock_timeout_is_busy(void **state)
{
    struct sinter_fence_db *db = *state;
    assert_int_equal(sinter_fence_try(db, "31:1", 1, "a", NULL, NULL), SINTER_OK);
    struct sinter_fence_db other = sinter_fence_db_pg(connect_db());
    assert_int_equal(fx_exec(&other, "BEGIN", 0, NULL, NULL), SINTER_OK);
    assert_int_equal(fx_exec(&other, "SELECT 1 FROM sinter_tcc_fence WHERE xid = '31:1' FOR UPDATE",
                             0, NULL, NULL),
                     SINTER_OK);
    assert_int_equal(fx_exec(db, "SET lock_timeout = '100ms'", 0, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "31:1", 1, NULL, NULL), SINTER_EBUSY);
    assert_non_null(strstr(sinter_fence_errmsg(), "55P03"));
    assert_int_equal(PQtransactionStatus(db->pg), PQTRANS_IDLE);
    assert_int_equal(fx_exec(&other, "ROLLBACK", 0, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "31:1", 1, NULL, NULL), SINTER_OK);
    assert_int_equal(status_of(db, "31:1", 1), SINTER_FENCE_COMMITTED);
    PQfinish(other.pg);
}

struct bg_call {
    struct sinter_fence_db db;
    int rc;
    char msg[512];
};

static void *bg_confirm(void *p)
{
    struct bg_call *b = p;
    b->rc = sinter_fence_confirm(&b->db, "32:1", 1, NULL, NULL);
    snprintf(b->msg, sizeof b->msg, "%s", sinter_fence_errmsg());
    return NULL;
}

/* A REPEATABLE READ session whose row is changed by a concurrent transaction gets a
 * serialization failure (40001): SINTER_EBUSY, nothing written, and the retry sees the truth. */
static void t_pg_serialization_failure_is_busy(void **state)
{
    struct sinter_fence_db *db = *state;
    assert_int_equal(sinter_fence_try(db, "32:1", 1, "a", NULL, NULL), SINTER_OK);
    /* The "other delivery" changes the row and holds its transaction open. */
    assert_int_equal(fx_exec(db, "BEGIN", 0, NULL, NULL), SINTER_OK);
    assert_int_equal(
        fx_exec(db, "UPDATE sinter_tcc_fence SET status = 2 WHERE xid = '32:1'", 0, NULL, NULL),
        SINTER_OK);
    struct bg_call b = {sinter_fence_db_pg(connect_db()), -1, ""};
    assert_int_equal(
        fx_exec(&b.db, "SET default_transaction_isolation = 'repeatable read'", 0, NULL, NULL),
        SINTER_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_confirm, &b), 0);
    sleep_us(300000); /* let the confirm block on the row lock */
    assert_int_equal(fx_exec(db, "COMMIT", 0, NULL, NULL), SINTER_OK);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (b.rc == SINTER_EBUSY) {
        assert_non_null(strstr(b.msg, "40001"));
    } else {
        /* Only if the confirm started after the COMMIT (a very slow machine): then it simply
         * saw COMMITTED. Either way it never ran a hook on a changed row. */
        assert_int_equal(b.rc, SINTER_OK);
    }
    assert_int_equal(sinter_fence_confirm(&b.db, "32:1", 1, NULL, NULL), SINTER_OK);
    PQfinish(b.db.pg);
}

/* ---- a cancel that overtakes a try still in flight ---- */

struct inflight {
    struct sinter_fence_db db;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_hook, release, rc, cancel_done, hook_runs;
};

static int inflight_try_hook(const struct sinter_fence_db *db, void *p)
{
    struct inflight *f = p;
    (void)db;
    pthread_mutex_lock(&f->mu);
    f->in_hook = 1; /* the TRIED row is inserted, not committed */
    pthread_cond_broadcast(&f->cv);
    while (!f->release)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    return SINTER_OK;
}

static int inflight_cancel_hook(const struct sinter_fence_db *db, void *p)
{
    struct inflight *f = p;
    (void)db;
    f->hook_runs++;
    return SINTER_OK;
}

static void *inflight_try(void *p)
{
    struct inflight *f = p;
    f->rc = sinter_fence_try(&f->db, "33:1", 1, "a", inflight_try_hook, f);
    return NULL;
}

static void *inflight_cancel(void *p)
{
    struct inflight *f = p;
    f->rc = sinter_fence_cancel(&f->db, "33:1", 1, "a", inflight_cancel_hook, f);
    pthread_mutex_lock(&f->mu);
    f->cancel_done = 1;
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Deterministic form of the race: the try has inserted TRIED and sits in its hook when the
 * cancel arrives. The cancel finds no committed row, its SUSPENDED insert waits for the try's
 * transaction, gets nothing when the try commits, re-reads TRIED and compensates: ROLLBACKED,
 * cancel hook once. (Recording SUSPENDED here would leave a business try nobody undoes.) */
static void t_pg_cancel_waits_for_inflight_try(void **state)
{
    struct sinter_fence_db *db = *state;
    struct inflight t = {.db = sinter_fence_db_pg(connect_db())};
    struct inflight c = {.db = sinter_fence_db_pg(connect_db())};
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    pthread_t tt, ct;
    assert_int_equal(pthread_create(&tt, NULL, inflight_try, &t), 0);
    pthread_mutex_lock(&t.mu);
    while (!t.in_hook)
        pthread_cond_wait(&t.cv, &t.mu);
    pthread_mutex_unlock(&t.mu);
    assert_int_equal(pthread_create(&ct, NULL, inflight_cancel, &c), 0);
    sleep_us(300000);
    pthread_mutex_lock(&c.mu);
    int early = c.cancel_done;
    pthread_mutex_unlock(&c.mu);
    assert_false(early); /* blocked on the try's uncommitted key */
    pthread_mutex_lock(&t.mu);
    t.release = 1;
    pthread_cond_broadcast(&t.cv);
    pthread_mutex_unlock(&t.mu);
    assert_int_equal(pthread_join(tt, NULL), 0);
    assert_int_equal(pthread_join(ct, NULL), 0);
    assert_int_equal(t.rc, SINTER_OK);
    assert_int_equal(c.rc, SINTER_OK);
    assert_int_equal(c.hook_runs, 1);
    assert_int_equal(status_of(db, "33:1", 1), SINTER_FENCE_ROLLBACKED);
    PQfinish(t.db.pg);
    PQfinish(c.db.pg);
    pthread_mutex_destroy(&t.mu);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

/* ---- a confirm that overtakes a try still in flight ---- */

struct early_confirm {
    struct sinter_fence_db other; /* the coordinator's delivery: another connection */
    int rc, hook_runs;
    char msg[512];
};

static int early_confirm_hook(const struct sinter_fence_db *db, void *p)
{
    struct early_confirm *e = p;
    (void)db;
    e->hook_runs++;
    return SINTER_OK;
}

/* The try's hook runs while its TRIED row is inserted but not committed: from inside it, the
 * confirm arrives on another connection (same thread: deterministic, no timing). */
static int early_try_hook(const struct sinter_fence_db *db, void *p)
{
    struct early_confirm *e = p;
    (void)db;
    e->rc = sinter_fence_confirm(&e->other, "34:1", 1, early_confirm_hook, e);
    snprintf(e->msg, sizeof e->msg, "%s", sinter_fence_errmsg());
    return SINTER_OK;
}

/* A commit decision can reach a branch whose try is still in flight: SELECT ... FOR UPDATE does
 * not wait for a row it cannot see, so the confirm finds no row. It must be retryable (EBUSY),
 * leave nothing behind and not block the try; the coordinator's retry after the try committed
 * runs the confirm once. (SINTER_ESTATE here would fail a branch that is about to be fine.) */
static void t_pg_confirm_of_inflight_try_is_busy(void **state)
{
    struct sinter_fence_db *db = *state;
    struct early_confirm e = {.other = sinter_fence_db_pg(connect_db()), .rc = -1};
    assert_int_equal(sinter_fence_try(db, "34:1", 1, "a", early_try_hook, &e), SINTER_OK);
    assert_int_equal(e.rc, SINTER_EBUSY);
    assert_non_null(strstr(e.msg, "no fence row"));
    assert_int_equal(e.hook_runs, 0);
    assert_int_equal(PQtransactionStatus(e.other.pg), PQTRANS_IDLE);
    assert_int_equal(status_of(db, "34:1", 1), SINTER_FENCE_TRIED);
    /* The redelivery, now that the try committed. */
    assert_int_equal(sinter_fence_confirm(&e.other, "34:1", 1, early_confirm_hook, &e), SINTER_OK);
    assert_int_equal(e.hook_runs, 1);
    assert_int_equal(status_of(db, "34:1", 1), SINTER_FENCE_COMMITTED);
    assert_int_equal(sinter_fence_confirm(db, "34:1", 1, early_confirm_hook, &e), SINTER_OK);
    assert_int_equal(e.hook_runs, 1);
    PQfinish(e.other.pg);
}

/* ---- races between connections ---- */

struct race {
    pthread_barrier_t bar;
    int mode; /* 0 try/cancel, 1 confirm/confirm, 2 cancel/cancel */
    int rc[2][RACE_N];
    atomic_int try_runs[RACE_N], confirm_runs[RACE_N], cancel_runs[RACE_N];
    atomic_int bad_cancel; /* a cancel hook that found no tried business row */
    atomic_int busy_retries;
};

struct worker {
    struct race *r;
    int side; /* 0 or 1 */
};

static void xid_of(char *buf, size_t n, int mode)
{
    snprintf(buf, n, "40:%d", mode + 1);
}

struct hook_arg {
    struct race *r;
    int i;
};

static int sql_i(const struct sinter_fence_db *db, const char *sql, int i, long long *changes)
{
    char b[16];
    snprintf(b, sizeof b, "%d", i);
    const char *p[1] = {b};
    return fx_exec(db, sql, 1, p, changes);
}

static int race_try_hook(const struct sinter_fence_db *db, void *p)
{
    struct hook_arg *a = p;
    atomic_fetch_add(&a->r->try_runs[a->i], 1);
    int rc = sql_i(db, "INSERT INTO biz (branch, state) VALUES ($1, 'tried')", a->i, NULL);
    if (rc == SINTER_OK)
        rc = fx_exec(db, "UPDATE acct SET balance = balance - 1 WHERE name = 'alice'", 0, NULL,
                     NULL);
    if (a->i % 3 == 0)
        sleep_us(3000); /* keep the TRIED insert uncommitted while the cancel arrives */
    return rc;
}

static int race_cancel_hook(const struct sinter_fence_db *db, void *p)
{
    struct hook_arg *a = p;
    atomic_fetch_add(&a->r->cancel_runs[a->i], 1);
    long long n = 0;
    int rc = sql_i(db, "UPDATE biz SET state = 'cancelled' WHERE branch = $1 AND state = 'tried'",
                   a->i, &n);
    if (rc == SINTER_OK && n != 1) {
        /* The business cancel ran without a committed business try to undo: the fence failed. */
        atomic_fetch_add(&a->r->bad_cancel, 1);
        rc = SINTER_EINTERNAL;
    }
    if (rc == SINTER_OK)
        rc = fx_exec(db, "UPDATE acct SET balance = balance + 1 WHERE name = 'alice'", 0, NULL,
                     NULL);
    return rc;
}

static int race_confirm_hook(const struct sinter_fence_db *db, void *p)
{
    struct hook_arg *a = p;
    atomic_fetch_add(&a->r->confirm_runs[a->i], 1);
    if (a->i % 2 == 0)
        sleep_us(2000); /* hold the row lock while the duplicate arrives */
    return fx_exec(db, "UPDATE acct SET balance = balance + 1 WHERE name = 'bob'", 0, NULL, NULL);
}

static void *race_worker(void *p)
{
    struct worker *w = p;
    struct race *r = w->r;
    /* Not connect_db(): cmocka's failures must not be raised from this thread. */
    struct sinter_fence_db db = sinter_fence_db_pg(PQconnectdb(conninfo));
    if (PQstatus(db.pg) != CONNECTION_OK) {
        fprintf(stderr, "worker connect: %s", PQerrorMessage(db.pg));
        abort();
    }
    char xid[32];
    xid_of(xid, sizeof xid, r->mode);
    for (int i = 0; i < RACE_N; i++) {
        struct hook_arg a = {r, i};
        pthread_barrier_wait(&r->bar);
        /* Vary who starts first: on every third branch the try side waits a little. */
        if (r->mode == 0 && w->side == 0 && i % 3 == 1)
            sleep_us(1000);
        int rc;
        int tries = 0;
        do {
            if (r->mode == 0 && w->side == 0)
                rc = sinter_fence_try(&db, xid, (uint64_t)i + 1, "race", race_try_hook, &a);
            else if (r->mode == 1)
                rc = sinter_fence_confirm(&db, xid, (uint64_t)i + 1, race_confirm_hook, &a);
            else
                rc = sinter_fence_cancel(&db, xid, (uint64_t)i + 1, "race", race_cancel_hook, &a);
            if (rc == SINTER_EBUSY)
                atomic_fetch_add(&r->busy_retries, 1);
        } while (rc == SINTER_EBUSY && ++tries < 50); /* the coordinator's redelivery */
        if (rc != SINTER_OK && rc != SINTER_EFENCE)
            fprintf(stderr, "race mode %d side %d branch %d: %s: %s\n", r->mode, w->side, i,
                    sinter_errname(rc), sinter_fence_errmsg());
        r->rc[w->side][i] = rc;
    }
    PQfinish(db.pg);
    return NULL;
}

static struct race *run_race(const struct sinter_fence_db *db, int mode)
{
    struct race *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->mode = mode;
    assert_int_equal(pthread_barrier_init(&r->bar, NULL, 2), 0);
    assert_int_equal(fx_exec(db, "DROP TABLE IF EXISTS biz", 0, NULL, NULL), SINTER_OK);
    assert_int_equal(fx_exec(db, "CREATE TABLE biz (branch INT PRIMARY KEY, state TEXT NOT NULL)",
                             0, NULL, NULL),
                     SINTER_OK);
    struct worker w[2] = {{r, 0}, {r, 1}};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, race_worker, &w[k]), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    pthread_barrier_destroy(&r->bar);
    return r;
}

static long long biz_state(const struct sinter_fence_db *db, int i, const char *state)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM biz WHERE branch = %d AND state = '%s'", i,
             state);
    return fx_q1(db, sql);
}

/* Try and cancel of the same branch on two connections at once. Whatever the interleaving:
 * either the try won and the cancel compensated it (ROLLBACKED, both hooks once, business row
 * cancelled) or the cancel won as an empty rollback and the try was refused (SUSPENDED, no hook
 * at all, no business row). Never a TRIED row left, never a cancel without its try. */
static void t_pg_race_try_vs_cancel(void **state)
{
    struct sinter_fence_db *db = *state;
    struct race *r = run_race(db, 0);
    int rolledback = 0, suspended = 0;
    for (int i = 0; i < RACE_N; i++) {
        int st = status_of(db, "40:1", (uint64_t)i + 1);
        assert_int_equal(r->rc[1][i], SINTER_OK); /* a cancel always succeeds */
        if (st == SINTER_FENCE_ROLLBACKED) {
            rolledback++;
            assert_int_equal(r->rc[0][i], SINTER_OK);
            assert_int_equal(biz_state(db, i, "cancelled"), 1);
            assert_int_equal(atomic_load(&r->cancel_runs[i]), atomic_load(&r->try_runs[i]));
        } else if (st == SINTER_FENCE_SUSPENDED) {
            suspended++;
            assert_int_equal(r->rc[0][i], SINTER_EFENCE);
            assert_int_equal(biz_state(db, i, "tried") + biz_state(db, i, "cancelled"), 0);
            assert_int_equal(atomic_load(&r->cancel_runs[i]), 0);
        } else {
            fail_msg("branch %d ended %s", i, sinter_fence_status_name(st));
        }
    }
    assert_int_equal(atomic_load(&r->bad_cancel), 0);
    assert_int_equal(fx_q1(db, "SELECT balance FROM acct WHERE name = 'alice'"), 100);
    assert_int_equal(fx_q1(db, "SELECT count(*) FROM sinter_tcc_fence WHERE status = 1"), 0);
    printf("try vs cancel: %d ROLLBACKED (try first), %d SUSPENDED (cancel first), %d busy "
           "retries\n",
           rolledback, suspended, atomic_load(&r->busy_retries));
    free(r);
}

/* The same confirm delivered twice at once: the hook runs once, both report success. */
static void t_pg_race_confirm_vs_confirm(void **state)
{
    struct sinter_fence_db *db = *state;
    for (int i = 0; i < RACE_N; i++)
        assert_int_equal(sinter_fence_try(db, "40:2", (uint64_t)i + 1, "race", NULL, NULL),
                         SINTER_OK);
    struct race *r = run_race(db, 1);
    for (int i = 0; i < RACE_N; i++) {
        assert_int_equal(r->rc[0][i], SINTER_OK);
        assert_int_equal(r->rc[1][i], SINTER_OK);
        assert_int_equal(status_of(db, "40:2", (uint64_t)i + 1), SINTER_FENCE_COMMITTED);
        /* Counts every run, even one whose transaction was then rolled back; READ COMMITTED
         * needs no retries here (asserted below), so exactly once. */
        assert_int_equal(atomic_load(&r->confirm_runs[i]), 1);
    }
    assert_int_equal(atomic_load(&r->busy_retries), 0);
    assert_int_equal(fx_q1(db, "SELECT balance FROM acct WHERE name = 'bob'"), RACE_N);
    free(r);
}

/* Two cancels of a branch whose try never came, at once: one records SUSPENDED, the other waits
 * for its insert, re-reads and reports success; no business cancel runs. */
static void t_pg_race_empty_cancel_vs_cancel(void **state)
{
    struct sinter_fence_db *db = *state;
    struct race *r = run_race(db, 2);
    for (int i = 0; i < RACE_N; i++) {
        assert_int_equal(r->rc[0][i], SINTER_OK);
        assert_int_equal(r->rc[1][i], SINTER_OK);
        assert_int_equal(status_of(db, "40:3", (uint64_t)i + 1), SINTER_FENCE_SUSPENDED);
        assert_int_equal(atomic_load(&r->cancel_runs[i]), 0);
    }
    assert_int_equal(fx_q1(db, "SELECT balance FROM acct WHERE name = 'alice'"), 100);
    free(r);
}

/* ---- main: our own database on the fixture's server ---- */

static void prepare_database(const char *file)
{
    char base[800];
    if (sinter_test_pg_conninfo(file, base, sizeof base) != 0 ||
        sinter_test_pg_fresh_db(base, TEST_DB, conninfo, sizeof conninfo) != 0) {
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    if (!PQisthreadsafe()) {
        fprintf(stderr, "libpq is not thread-safe\n");
        return 1;
    }
    prepare_database(argv[1]);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown),
    const struct CMUnitTest tests[] = {
        FENCE_SCENARIO_LIST(T) T(t_pg_aborted_hook_is_not_success) T(t_pg_lock_timeout_is_busy)
            T(t_pg_serialization_failure_is_busy) T(t_pg_cancel_waits_for_inflight_try)
                T(t_pg_confirm_of_inflight_try_is_busy) T(t_pg_race_try_vs_cancel)
                    T(t_pg_race_confirm_vs_confirm) T(t_pg_race_empty_cancel_vs_cancel)};
#define C(fn) cmocka_unit_test_setup_teardown(fn, setup_cached, teardown),
    const struct CMUnitTest cached[] = {FENCE_SCENARIO_LIST(C) C(t_pg_aborted_hook_is_not_success)
                                            C(t_pg_cache_bound_to_connection)};
#undef C
#undef T
    int rc = cmocka_run_group_tests_name("fence_pg", tests, NULL, NULL);
    rc |= cmocka_run_group_tests_name("fence_pg_cached", cached, NULL, NULL);
    return rc;
}
