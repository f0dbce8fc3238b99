/* TCC fence scenarios run on both backends: see fence_scenarios.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fence_scenarios.h"
#include "sinter/error.h"

/* ---- backend-neutral SQL helpers ---- */

int64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int sqlite_exec(sqlite3 *db, const char *sql, int n, const char *const *params,
                       long long *changes)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite prepare %s: %s\n", sql, sqlite3_errmsg(db));
        return SINTER_EDB;
    }
    /* $1..$n are named parameters to SQLite, numbered by first appearance: bind by name. */
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "$%d", i + 1);
        int idx = sqlite3_bind_parameter_index(st, name);
        if (idx > 0)
            sqlite3_bind_text(st, idx, params[i], -1, SQLITE_TRANSIENT);
    }
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    if (src != SQLITE_DONE) {
        fprintf(stderr, "sqlite %s: %s\n", sql, sqlite3_errmsg(db));
        return SINTER_EDB;
    }
    if (changes != NULL)
        *changes = sqlite3_changes(db);
    return SINTER_OK;
}

static int pg_exec(PGconn *c, const char *sql, int n, const char *const *params, long long *changes)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        fprintf(stderr, "postgres %s: %s\n", sql, PQresultErrorMessage(r));
        PQclear(r);
        return SINTER_EDB;
    }
    if (changes != NULL)
        *changes = atoll(PQcmdTuples(r));
    PQclear(r);
    return SINTER_OK;
}

int fx_exec(const struct sinter_fence_db *db, const char *sql, int n, const char *const *params,
            long long *changes)
{
    return db->kind == SINTER_FENCE_SQLITE ? sqlite_exec(db->sqlite, sql, n, params, changes)
                                           : pg_exec(db->pg, sql, n, params, changes);
}

long long fx_q1(const struct sinter_fence_db *db, const char *sql)
{
    long long v = -1;
    if (db->kind == SINTER_FENCE_SQLITE) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db->sqlite, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    } else {
        PGresult *r = PQexec(db->pg, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        if (PQntuples(r) > 0)
            v = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return v;
}

static void must(const struct sinter_fence_db *db, const char *sql)
{
    assert_int_equal(fx_exec(db, sql, 0, NULL, NULL), SINTER_OK);
}

void fence_reset(const struct sinter_fence_db *db)
{
    must(db, "DELETE FROM sinter_tcc_fence");
    must(db, "DROP TABLE IF EXISTS acct");
    must(db, "CREATE TABLE acct (name TEXT PRIMARY KEY, balance BIGINT NOT NULL, "
             "frozen BIGINT NOT NULL)");
    must(db, "INSERT INTO acct VALUES ('alice', 100, 0), ('bob', 0, 0)");
}

static long long balance(const struct sinter_fence_db *db, const char *who)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT balance FROM acct WHERE name = '%s'", who);
    return fx_q1(db, sql);
}

static long long frozen(const struct sinter_fence_db *db, const char *who)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT frozen FROM acct WHERE name = '%s'", who);
    return fx_q1(db, sql);
}

static int status_of(const struct sinter_fence_db *db, const char *xid, uint64_t branch)
{
    int st = -1;
    assert_int_equal(sinter_fence_status(db, xid, branch, &st), SINTER_OK);
    return st;
}

static long long rows_in(const struct sinter_fence_db *db, int status)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM sinter_tcc_fence WHERE status = %d", status);
    return fx_q1(db, sql);
}

/* ---- business hooks: a TCC transfer alice -> bob ----
 * try freezes the amount on alice, confirm moves it to bob, cancel unfreezes it. Each hook counts
 * its runs and can be told to fail after doing its SQL (so the rollback must undo that SQL). */

struct biz {
    long long amount;
    int runs;
    int fail_rc; /* returned after the SQL when non-zero */
};

static int biz_sql(const struct sinter_fence_db *db, const char *sql, const char *who,
                   long long amount, int need_row)
{
    char a[24];
    snprintf(a, sizeof a, "%lld", amount);
    const char *p[2] = {who, a};
    long long n = 0;
    int rc = fx_exec(db, sql, 2, p, &n);
    if (rc == SINTER_OK && need_row && n != 1)
        rc = SINTER_ESTATE; /* e.g. insufficient funds */
    return rc;
}

static int hook_try(const struct sinter_fence_db *db, void *arg)
{
    struct biz *b = arg;
    b->runs++;
    int rc = biz_sql(db,
                     "UPDATE acct SET balance = balance - $2, frozen = frozen + $2 "
                     "WHERE name = $1 AND balance >= $2",
                     "alice", b->amount, 1);
    return rc != SINTER_OK ? rc : b->fail_rc;
}

static int hook_confirm(const struct sinter_fence_db *db, void *arg)
{
    struct biz *b = arg;
    b->runs++;
    int rc =
        biz_sql(db, "UPDATE acct SET frozen = frozen - $2 WHERE name = $1", "alice", b->amount, 1);
    if (rc == SINTER_OK)
        rc = biz_sql(db, "UPDATE acct SET balance = balance + $2 WHERE name = $1", "bob", b->amount,
                     1);
    return rc != SINTER_OK ? rc : b->fail_rc;
}

static int hook_cancel(const struct sinter_fence_db *db, void *arg)
{
    struct biz *b = arg;
    b->runs++;
    int rc = biz_sql(db,
                     "UPDATE acct SET balance = balance + $2, frozen = frozen - $2 "
                     "WHERE name = $1",
                     "alice", b->amount, 1);
    return rc != SINTER_OK ? rc : b->fail_rc;
}

#define ACTION "transfer"

/* ---- scenarios ---- */

void t_init_is_idempotent(void **state)
{
    const struct sinter_fence_db *db = *state;
    assert_int_equal(sinter_fence_init(db), SINTER_OK);
    assert_int_equal(sinter_fence_init(db), SINTER_OK);
    assert_string_equal(sinter_fence_errmsg(), "");
    assert_int_equal(fx_q1(db, "SELECT count(*) FROM sinter_tcc_fence"), 0);
}

void t_try_then_confirm(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {10, 0, 0}, c = {10, 0, 0};
    assert_int_equal(sinter_fence_try(db, "1:100", 1, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(t.runs, 1);
    assert_int_equal(status_of(db, "1:100", 1), SINTER_FENCE_TRIED);
    assert_int_equal(balance(db, "alice"), 90);
    assert_int_equal(frozen(db, "alice"), 10);

    assert_int_equal(sinter_fence_confirm(db, "1:100", 1, hook_confirm, &c), SINTER_OK);
    assert_int_equal(c.runs, 1);
    assert_int_equal(status_of(db, "1:100", 1), SINTER_FENCE_COMMITTED);
    /* Duplicate deliveries: success, no second run. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sinter_fence_confirm(db, "1:100", 1, hook_confirm, &c), SINTER_OK);
    assert_int_equal(c.runs, 1);
    assert_int_equal(balance(db, "alice"), 90);
    assert_int_equal(frozen(db, "alice"), 0);
    assert_int_equal(balance(db, "bob"), 10);
    /* Other branches of the same global are independent rows. */
    assert_int_equal(status_of(db, "1:100", 2), SINTER_FENCE_NONE);
}

void t_try_then_cancel(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {30, 0, 0}, c = {30, 0, 0};
    assert_int_equal(sinter_fence_try(db, "1:200", 7, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(sinter_fence_cancel(db, "1:200", 7, ACTION, hook_cancel, &c), SINTER_OK);
    assert_int_equal(c.runs, 1);
    assert_int_equal(status_of(db, "1:200", 7), SINTER_FENCE_ROLLBACKED);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sinter_fence_cancel(db, "1:200", 7, ACTION, hook_cancel, &c), SINTER_OK);
    assert_int_equal(c.runs, 1);
    assert_int_equal(balance(db, "alice"), 100);
    assert_int_equal(frozen(db, "alice"), 0);
    assert_int_equal(balance(db, "bob"), 0);
    /* A try after its own cancel is refused too. */
    assert_int_equal(sinter_fence_try(db, "1:200", 7, ACTION, hook_try, &t), SINTER_EFENCE);
    assert_int_equal(t.runs, 1);
}

void t_empty_rollback_then_late_try(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {5, 0, 0}, c = {5, 0, 0}, k = {5, 0, 0};
    /* The cancel overtakes the try: recorded as SUSPENDED, business cancel NOT run. */
    assert_int_equal(sinter_fence_cancel(db, "2:300", 1, ACTION, hook_cancel, &c), SINTER_OK);
    assert_int_equal(c.runs, 0);
    assert_int_equal(status_of(db, "2:300", 1), SINTER_FENCE_SUSPENDED);
    assert_int_equal(balance(db, "alice"), 100);
    /* The late try is refused and runs nothing (anti-suspension), twice. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sinter_fence_try(db, "2:300", 1, ACTION, hook_try, &t), SINTER_EFENCE);
        assert_non_null(strstr(sinter_fence_errmsg(), "SUSPENDED"));
    }
    assert_int_equal(t.runs, 0);
    assert_int_equal(balance(db, "alice"), 100);
    assert_int_equal(frozen(db, "alice"), 0);
    /* Duplicate cancel: success, nothing run; a confirm can never follow. */
    assert_int_equal(sinter_fence_cancel(db, "2:300", 1, ACTION, hook_cancel, &c), SINTER_OK);
    assert_int_equal(c.runs, 0);
    assert_int_equal(sinter_fence_confirm(db, "2:300", 1, hook_confirm, &k), SINTER_ESTATE);
    assert_int_equal(k.runs, 0);
    assert_int_equal(status_of(db, "2:300", 1), SINTER_FENCE_SUSPENDED);
    assert_int_equal(rows_in(db, SINTER_FENCE_TRIED), 0);
}

void t_duplicate_try_is_refused(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {1, 0, 0};
    assert_int_equal(sinter_fence_try(db, "3:1", 1, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(sinter_fence_try(db, "3:1", 1, ACTION, hook_try, &t), SINTER_EFENCE);
    assert_int_equal(t.runs, 1);
    assert_int_equal(balance(db, "alice"), 99);
    assert_int_equal(status_of(db, "3:1", 1), SINTER_FENCE_TRIED);
    /* NULL hooks are allowed: the fence alone. */
    assert_int_equal(sinter_fence_try(db, "3:1", 2, ACTION, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "3:1", 2, NULL, NULL), SINTER_OK);
    assert_int_equal(status_of(db, "3:1", 2), SINTER_FENCE_COMMITTED);
}

void t_confirm_without_try(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {1, 0, 0}, c = {1, 0, 0};
    /* No row: the try has not committed yet (or never ran). Retryable, never a success and
     * never a refusal: nothing runs, nothing is recorded, so the try can still land. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sinter_fence_confirm(db, "4:1", 1, hook_confirm, &c), SINTER_EBUSY);
        assert_non_null(strstr(sinter_fence_errmsg(), "no fence row"));
    }
    assert_int_equal(c.runs, 0);
    assert_int_equal(status_of(db, "4:1", 1), SINTER_FENCE_NONE); /* nothing recorded */
    assert_int_equal(balance(db, "bob"), 0);
    /* The slow try lands; the coordinator's next retry of the confirm goes through, once. */
    assert_int_equal(sinter_fence_try(db, "4:1", 1, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "4:1", 1, hook_confirm, &c), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "4:1", 1, hook_confirm, &c), SINTER_OK);
    assert_int_equal(c.runs, 1);
    assert_int_equal(status_of(db, "4:1", 1), SINTER_FENCE_COMMITTED);
    assert_int_equal(balance(db, "alice"), 99);
    assert_int_equal(frozen(db, "alice"), 0);
    assert_int_equal(balance(db, "bob"), 1);
    /* A cancel without a try is unchanged: an empty rollback. */
    assert_int_equal(sinter_fence_cancel(db, "4:1", 2, ACTION, hook_cancel, &c), SINTER_OK);
    assert_int_equal(status_of(db, "4:1", 2), SINTER_FENCE_SUSPENDED);
    assert_int_equal(c.runs, 1);
}

void t_opposite_phase2_refused(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {1, 0, 0}, c = {1, 0, 0}, k = {1, 0, 0};
    /* Confirmed: a cancel is refused and runs nothing. */
    assert_int_equal(sinter_fence_try(db, "5:1", 1, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "5:1", 1, hook_confirm, &c), SINTER_OK);
    assert_int_equal(sinter_fence_cancel(db, "5:1", 1, ACTION, hook_cancel, &k), SINTER_ESTATE);
    assert_int_equal(k.runs, 0);
    assert_int_equal(status_of(db, "5:1", 1), SINTER_FENCE_COMMITTED);
    /* Rolled back: a confirm is refused and runs nothing. */
    assert_int_equal(sinter_fence_try(db, "5:1", 2, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(sinter_fence_cancel(db, "5:1", 2, ACTION, hook_cancel, &k), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(db, "5:1", 2, hook_confirm, &c), SINTER_ESTATE);
    assert_int_equal(c.runs, 1);
    assert_int_equal(k.runs, 1);
    assert_int_equal(status_of(db, "5:1", 2), SINTER_FENCE_ROLLBACKED);
    assert_int_equal(balance(db, "alice"), 99);
    assert_int_equal(balance(db, "bob"), 1);
    assert_int_equal(frozen(db, "alice"), 0);
}

void t_failing_try_hook_leaves_nothing(void **state)
{
    const struct sinter_fence_db *db = *state;
    /* The hook does its UPDATE, then fails: neither the UPDATE nor the fence row survive, and
     * the hook's own code comes back. */
    struct biz t = {20, 0, 12345};
    assert_int_equal(sinter_fence_try(db, "6:1", 1, ACTION, hook_try, &t), 12345);
    assert_int_equal(t.runs, 1);
    assert_int_equal(status_of(db, "6:1", 1), SINTER_FENCE_NONE);
    assert_int_equal(balance(db, "alice"), 100);
    assert_int_equal(frozen(db, "alice"), 0);
    /* A business refusal (insufficient funds: the UPDATE matches no row). */
    struct biz big = {1000, 0, 0};
    assert_int_equal(sinter_fence_try(db, "6:1", 2, ACTION, hook_try, &big), SINTER_ESTATE);
    assert_int_equal(status_of(db, "6:1", 2), SINTER_FENCE_NONE);
    /* Since nothing was recorded, the branch's cancel is an empty rollback. */
    struct biz c = {20, 0, 0};
    assert_int_equal(sinter_fence_cancel(db, "6:1", 1, ACTION, hook_cancel, &c), SINTER_OK);
    assert_int_equal(c.runs, 0);
    assert_int_equal(status_of(db, "6:1", 1), SINTER_FENCE_SUSPENDED);
    /* Error codes from hooks pass through unchanged, SINTER_EFENCE included. */
    t.fail_rc = SINTER_EFENCE;
    assert_int_equal(sinter_fence_try(db, "6:1", 3, ACTION, hook_try, &t), SINTER_EFENCE);
    assert_int_equal(status_of(db, "6:1", 3), SINTER_FENCE_NONE);
    assert_int_equal(balance(db, "alice"), 100);
}

void t_failing_phase2_hook_leaves_tried(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {10, 0, 0};
    assert_int_equal(sinter_fence_try(db, "7:1", 1, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(sinter_fence_try(db, "7:1", 2, ACTION, hook_try, &t), SINTER_OK);
    assert_int_equal(balance(db, "alice"), 80);

    /* Confirm fails after its SQL: row stays TRIED, money not moved; the redelivery succeeds. */
    struct biz c = {10, 0, SINTER_EBUSY};
    assert_int_equal(sinter_fence_confirm(db, "7:1", 1, hook_confirm, &c), SINTER_EBUSY);
    assert_int_equal(status_of(db, "7:1", 1), SINTER_FENCE_TRIED);
    assert_int_equal(balance(db, "bob"), 0);
    assert_int_equal(frozen(db, "alice"), 20);
    c.fail_rc = 0;
    assert_int_equal(sinter_fence_confirm(db, "7:1", 1, hook_confirm, &c), SINTER_OK);
    assert_int_equal(c.runs, 2);
    assert_int_equal(balance(db, "bob"), 10);

    /* Same for cancel. */
    struct biz k = {10, 0, 777};
    assert_int_equal(sinter_fence_cancel(db, "7:1", 2, ACTION, hook_cancel, &k), 777);
    assert_int_equal(status_of(db, "7:1", 2), SINTER_FENCE_TRIED);
    assert_int_equal(balance(db, "alice"), 80);
    k.fail_rc = 0;
    assert_int_equal(sinter_fence_cancel(db, "7:1", 2, ACTION, hook_cancel, &k), SINTER_OK);
    assert_int_equal(status_of(db, "7:1", 2), SINTER_FENCE_ROLLBACKED);
    assert_int_equal(balance(db, "alice"), 90);
    assert_int_equal(frozen(db, "alice"), 0);
    assert_int_equal(rows_in(db, SINTER_FENCE_TRIED), 0);
}

void t_money_moves_exactly_once(void **state)
{
    const struct sinter_fence_db *db = *state;
    /* Ten transfers of 7: even branches commit, odd ones roll back, three of them as empty
     * rollbacks whose late try is refused. Every phase 2 is delivered three times, and the
     * refused tries are retried too. Money moves exactly once per committed branch. */
    struct biz t = {7, 0, 0}, c = {7, 0, 0}, k = {7, 0, 0};
    for (uint64_t b = 1; b <= 10; b++) {
        int empty = b == 3 || b == 7 || b == 9;
        if (!empty)
            assert_int_equal(sinter_fence_try(db, "8:1", b, ACTION, hook_try, &t), SINTER_OK);
        for (int d = 0; d < 3; d++) {
            if (b % 2 == 0)
                assert_int_equal(sinter_fence_confirm(db, "8:1", b, hook_confirm, &c), SINTER_OK);
            else
                assert_int_equal(sinter_fence_cancel(db, "8:1", b, ACTION, hook_cancel, &k),
                                 SINTER_OK);
        }
        if (empty)
            for (int d = 0; d < 2; d++)
                assert_int_equal(sinter_fence_try(db, "8:1", b, ACTION, hook_try, &t),
                                 SINTER_EFENCE);
    }
    assert_int_equal(t.runs, 7);
    assert_int_equal(c.runs, 5);
    assert_int_equal(k.runs, 2);
    assert_int_equal(balance(db, "alice"), 100 - 5 * 7);
    assert_int_equal(frozen(db, "alice"), 0);
    assert_int_equal(balance(db, "bob"), 5 * 7);
    assert_int_equal(rows_in(db, SINTER_FENCE_TRIED), 0); /* no TRIED row for the ended global */
    assert_int_equal(rows_in(db, SINTER_FENCE_COMMITTED), 5);
    assert_int_equal(rows_in(db, SINTER_FENCE_ROLLBACKED), 2);
    assert_int_equal(rows_in(db, SINTER_FENCE_SUSPENDED), 3);
}

void t_cleanup_in_batches(void **state)
{
    const struct sinter_fence_db *db = *state;
    /* Old rows: 10 COMMITTED, 10 ROLLBACKED, 5 SUSPENDED (25 ended) and 5 TRIED. */
    for (uint64_t b = 1; b <= 10; b++) {
        assert_int_equal(sinter_fence_try(db, "9:1", b, ACTION, NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_confirm(db, "9:1", b, NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_try(db, "9:2", b, ACTION, NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_cancel(db, "9:2", b, ACTION, NULL, NULL), SINTER_OK);
    }
    for (uint64_t b = 1; b <= 5; b++) {
        assert_int_equal(sinter_fence_cancel(db, "9:3", b, ACTION, NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_try(db, "9:4", b, ACTION, NULL, NULL), SINTER_OK);
    }
    /* The cutoff falls between the old rows and 3 new ended rows. */
    sleep_ms(60);
    int64_t cutoff = fx_now_ms();
    sleep_ms(60);
    for (uint64_t b = 1; b <= 3; b++) {
        assert_int_equal(sinter_fence_try(db, "9:5", b, ACTION, NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_confirm(db, "9:5", b, NULL, NULL), SINTER_OK);
    }
    assert_int_equal(fx_q1(db, "SELECT count(*) FROM sinter_tcc_fence"), 33);

    uint32_t n = 99, total = 0;
    const uint32_t want[] = {7, 7, 7, 4, 0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(sinter_fence_cleanup(db, cutoff, 7, &n), SINTER_OK);
        assert_int_equal(n, want[i]);
        total += n;
    }
    assert_int_equal(total, 25);
    assert_int_equal(rows_in(db, SINTER_FENCE_TRIED), 5); /* never deleted */
    assert_int_equal(rows_in(db, SINTER_FENCE_COMMITTED), 3);

    /* A cutoff in the future takes the new ended rows, still never the TRIED ones. */
    assert_int_equal(sinter_fence_cleanup(db, fx_now_ms() + 3600000, 100, &n), SINTER_OK);
    assert_int_equal(n, 3);
    assert_int_equal(fx_q1(db, "SELECT count(*) FROM sinter_tcc_fence"), 5);
    assert_int_equal(rows_in(db, SINTER_FENCE_TRIED), 5);
    assert_int_equal(sinter_fence_cleanup(db, fx_now_ms() + 3600000, 100, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_cleanup(db, 0, 0, &n), SINTER_EINVAL);
}

void t_invalid_arguments(void **state)
{
    const struct sinter_fence_db *db = *state;
    char longx[SINTER_FENCE_XID_MAX + 2], longa[SINTER_FENCE_ACTION_MAX + 2];
    memset(longx, 'x', sizeof longx - 1);
    longx[sizeof longx - 1] = '\0';
    memset(longa, 'a', sizeof longa - 1);
    longa[sizeof longa - 1] = '\0';
    struct sinter_fence_db none = {SINTER_FENCE_SQLITE, NULL, NULL, NULL};
    struct sinter_fence_db bad = *db;
    bad.kind = (enum sinter_fence_backend)9;
    int st;

    assert_int_equal(sinter_fence_init(NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_init(&none), SINTER_EINVAL);
    assert_int_equal(sinter_fence_init(&bad), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(NULL, "1:1", 1, ACTION, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, NULL, 1, ACTION, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, "", 1, ACTION, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, longx, 1, ACTION, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, "1:1", 1, NULL, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, "1:1", 1, longa, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_try(db, "1:1", UINT64_MAX, ACTION, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_confirm(db, longx, 1, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_cancel(db, "1:1", 1, NULL, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_cancel(&none, "1:1", 1, ACTION, NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_status(db, "1:1", 1, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_status(db, "", 1, &st), SINTER_EINVAL);
    assert_int_equal(sinter_fence_cleanup(&none, 0, 1, NULL), SINTER_EINVAL);
    assert_string_equal(sinter_fence_errmsg(), "invalid argument");
    /* The largest branch id and the longest texts are fine. */
    longx[SINTER_FENCE_XID_MAX] = '\0';
    longa[SINTER_FENCE_ACTION_MAX] = '\0';
    assert_int_equal(sinter_fence_try(db, longx, INT64_MAX, longa, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_cancel(db, longx, INT64_MAX, longa, NULL, NULL), SINTER_OK);
    assert_int_equal(status_of(db, longx, INT64_MAX), SINTER_FENCE_ROLLBACKED);
    assert_int_equal(fx_q1(db, "SELECT count(*) FROM sinter_tcc_fence"), 1);
}

void t_connection_inside_transaction(void **state)
{
    const struct sinter_fence_db *db = *state;
    struct biz t = {1, 0, 0};
    /* Retryable (EBUSY), never ESTATE: phase 2 reports ESTATE as "can never succeed", and a
     * connection left busy says nothing about the branch. */
    must(db, "BEGIN");
    assert_int_equal(sinter_fence_try(db, "10:1", 1, ACTION, hook_try, &t), SINTER_EBUSY);
    assert_int_equal(sinter_fence_confirm(db, "10:1", 1, NULL, NULL), SINTER_EBUSY);
    assert_int_equal(sinter_fence_cancel(db, "10:1", 1, ACTION, NULL, NULL), SINTER_EBUSY);
    assert_int_equal(sinter_fence_cleanup(db, 0, 1, NULL), SINTER_EBUSY);
    assert_int_equal(sinter_fence_init(db), SINTER_EBUSY);
    assert_non_null(strstr(sinter_fence_errmsg(), "inside a transaction"));
    assert_int_equal(t.runs, 0);
    /* The caller's transaction is left alone: still open, still the caller's to end. */
    must(db, "ROLLBACK");
    assert_int_equal(status_of(db, "10:1", 1), SINTER_FENCE_NONE);
}

static int hook_commits(const struct sinter_fence_db *db, void *arg)
{
    (void)arg;
    return fx_exec(db, "COMMIT", 0, NULL, NULL);
}

void t_hook_that_commits_is_caught(void **state)
{
    const struct sinter_fence_db *db = *state;
    /* Misuse: the hook ends the fence's transaction itself. The call must not claim success. */
    assert_int_equal(sinter_fence_try(db, "11:1", 1, ACTION, hook_commits, NULL), SINTER_EDB);
    assert_non_null(strstr(sinter_fence_errmsg(), "hook ended"));
    /* The connection is usable afterwards (no transaction left open). */
    assert_int_equal(sinter_fence_try(db, "11:1", 2, ACTION, NULL, NULL), SINTER_OK);
}

void t_wrong_table_and_db_errors(void **state)
{
    const struct sinter_fence_db *db = *state;
    /* No table: a database error with the database's message. */
    must(db, "DROP TABLE sinter_tcc_fence");
    assert_int_equal(sinter_fence_try(db, "12:1", 1, ACTION, NULL, NULL), SINTER_EDB);
    assert_non_null(strstr(sinter_fence_errmsg(), "sinter_tcc_fence"));
    int st;
    assert_int_equal(sinter_fence_status(db, "12:1", 1, &st), SINTER_EDB);
    assert_int_equal(sinter_fence_cleanup(db, 0, 10, NULL), SINTER_EDB);
    /* A foreign table of that name is refused by init, naming the missing column. */
    must(db, "CREATE TABLE sinter_tcc_fence (xid TEXT, branch_id BIGINT, status SMALLINT)");
    assert_int_equal(sinter_fence_init(db), SINTER_ECONFIG);
    assert_non_null(strstr(sinter_fence_errmsg(), "action_name"));
    must(db, "DROP TABLE sinter_tcc_fence");
    assert_int_equal(sinter_fence_init(db), SINTER_OK);
    assert_int_equal(sinter_fence_try(db, "12:1", 1, ACTION, NULL, NULL), SINTER_OK);
    assert_string_equal(sinter_fence_errmsg(), "");
}

void t_status_names(void **state)
{
    (void)state;
    assert_string_equal(sinter_fence_status_name(SINTER_FENCE_NONE), "NONE");
    assert_string_equal(sinter_fence_status_name(SINTER_FENCE_TRIED), "TRIED");
    assert_string_equal(sinter_fence_status_name(SINTER_FENCE_COMMITTED), "COMMITTED");
    assert_string_equal(sinter_fence_status_name(SINTER_FENCE_ROLLBACKED), "ROLLBACKED");
    assert_string_equal(sinter_fence_status_name(SINTER_FENCE_SUSPENDED), "SUSPENDED");
    assert_string_equal(sinter_fence_status_name(5), "UNKNOWN");
    /* Seata's TCCFenceConstant numbers. */
    assert_int_equal(SINTER_FENCE_TRIED, 1);
    assert_int_equal(SINTER_FENCE_COMMITTED, 2);
    assert_int_equal(SINTER_FENCE_ROLLBACKED, 3);
    assert_int_equal(SINTER_FENCE_SUSPENDED, 4);
}
