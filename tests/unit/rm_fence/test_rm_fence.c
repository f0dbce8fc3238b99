/* Unit tests for the TCC fence (include/sinter/fence.h) on SQLite, in a temporary database file:
 * every state transition, empty rollback, anti-suspension, duplicate deliveries, failing hooks,
 * batched cleanup and a business table moved in the same transaction (fence_scenarios.c, shared
 * with the PostgreSQL integration test), plus SQLite's busy handling; all of it once without and
 * once with a statement cache (sinter_fence_cache_new), plus the cache's own rules: reuse, schema
 * changes, close order, ownership, hooks leaving statements pending, error paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fence_scenarios.h"
#include "sinter/error.h"

struct fx {
    struct sinter_fence_db db; /* first: the scenarios take *state as a struct sinter_fence_db* */
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/sinter-fence-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/service.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    f->db = sinter_fence_db_sqlite(db);
    assert_int_equal(sinter_fence_init(&f->db), SINTER_OK);
    fence_reset(&f->db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sinter_fence_cache_free(f->db.cache); /* before the close, which must then succeed */
    assert_int_equal(sqlite3_close(f->db.sqlite), SQLITE_OK);
    char p[160];
    snprintf(p, sizeof p, "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", f->path);
    unlink(p);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Another connection holds the write lock: the fence reports SINTER_EBUSY (retryable) with
 * SQLite's message, leaves nothing behind, and works once the lock is gone. */
static void t_sqlite_busy_is_retryable(void **state)
{
    struct fx *f = *state;
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(f->db.sqlite, 0), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sinter_fence_try(&f->db, "20:1", 1, "transfer", NULL, NULL), SINTER_EBUSY);
    assert_non_null(strstr(sinter_fence_errmsg(), "locked"));
    assert_int_equal(sinter_fence_cancel(&f->db, "20:1", 1, "transfer", NULL, NULL), SINTER_EBUSY);
    assert_int_equal(sinter_fence_cleanup(&f->db, 0, 10, NULL), SINTER_EBUSY);
    assert_int_equal(sqlite3_get_autocommit(f->db.sqlite), 1);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sinter_fence_try(&f->db, "20:1", 1, "transfer", NULL, NULL), SINTER_OK);
    int st;
    assert_int_equal(sinter_fence_status(&f->db, "20:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_TRIED);
    sqlite3_close(other);
}

/* On SQLite a failed statement inside a transaction only undoes itself: a hook that ignores it
 * and returns 0 commits the rest, as the hook decided. (PostgreSQL aborts the whole
 * transaction; the fence_pg test checks that it is reported.) */
static int hook_bad_sql(const struct sinter_fence_db *db, void *arg)
{
    (void)arg;
    (void)fx_exec(db, "UPDATE no_such_table SET x = 1", 0, NULL, NULL);
    return 0;
}

static void t_sqlite_hook_statement_error(void **state)
{
    struct fx *f = *state;
    assert_int_equal(sinter_fence_try(&f->db, "21:1", 1, "transfer", hook_bad_sql, NULL),
                     SINTER_OK);
    int st;
    assert_int_equal(sinter_fence_status(&f->db, "21:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_TRIED);
}

/* ---- statement cache (sinter_fence_cache_new) ---- */

static int setup_cached(void **state)
{
    setup(state);
    struct fx *f = *state;
    assert_int_equal(sinter_fence_cache_new(&f->db, &f->db.cache), SINTER_OK);
    return 0;
}

/* Prepared statements on a connection, and how many of them are mid-execution. */
static int stmts_on(sqlite3 *db, int *busy)
{
    int n = 0;
    *busy = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st != NULL;
         st = sqlite3_next_stmt(db, st)) {
        n++;
        *busy += sqlite3_stmt_busy(st) != 0;
    }
    return n;
}

/* The cache prepares each statement once: the connection's statement count stops growing after
 * the first calls, and between calls every cached statement is reset (none busy: no read
 * transaction or lock is held, so another connection can write). */
static void t_cache_reuses_idle_statements(void **state)
{
    struct fx *f = *state;
    int busy = 0;
    assert_int_equal(stmts_on(f->db.sqlite, &busy), 0);
    assert_int_equal(sinter_fence_try(&f->db, "30:1", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(&f->db, "30:1", 1, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_cancel(&f->db, "30:2", 2, "transfer", NULL, NULL), SINTER_OK);
    int n = stmts_on(f->db.sqlite, &busy);
    assert_int_equal(n, 5); /* SELECT, INSERT, UPDATE, BEGIN IMMEDIATE, COMMIT */
    assert_int_equal(busy, 0);
    for (int i = 0; i < 20; i++) {
        char xid[32];
        snprintf(xid, sizeof xid, "31:%d", i);
        assert_int_equal(sinter_fence_try(&f->db, xid, 1, "transfer", NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_confirm(&f->db, xid, 1, NULL, NULL), SINTER_OK);
        assert_int_equal(sinter_fence_confirm(&f->db, xid, 1, NULL, NULL), SINTER_OK); /* dup */
        assert_int_equal(sinter_fence_try(&f->db, xid, 1, "transfer", NULL, NULL), SINTER_EFENCE);
    }
    assert_int_equal(stmts_on(f->db.sqlite, &busy), n);
    assert_int_equal(busy, 0);
    /* Idle statements block no writer: another connection takes the write lock at once. */
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE; DELETE FROM sinter_tcc_fence; COMMIT",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);
    int st = -1;
    assert_int_equal(sinter_fence_status(&f->db, "30:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_NONE);
}

/* Schema changes under cached statements: other DDL (SQLITE_SCHEMA, re-prepared by SQLite),
 * then the fence table dropped (the calls fail with SINTER_EDB and leave the connection idle)
 * and re-created by sinter_fence_init (the same cached statements work on the new table), also
 * when the drop came from another connection. */
static void t_cache_survives_schema_changes(void **state)
{
    struct fx *f = *state;
    assert_int_equal(sinter_fence_try(&f->db, "32:1", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sqlite3_exec(f->db.sqlite,
                                  "CREATE TABLE unrelated (x INTEGER); CREATE INDEX fence_extra ON "
                                  "sinter_tcc_fence (created_at)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sinter_fence_confirm(&f->db, "32:1", 1, NULL, NULL), SINTER_OK);
    int st = -1;
    assert_int_equal(sinter_fence_status(&f->db, "32:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_COMMITTED);

    assert_int_equal(sqlite3_exec(f->db.sqlite, "DROP TABLE sinter_tcc_fence", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sinter_fence_try(&f->db, "32:2", 1, "transfer", NULL, NULL), SINTER_EDB);
    assert_non_null(strstr(sinter_fence_errmsg(), "no such table"));
    assert_int_equal(sqlite3_get_autocommit(f->db.sqlite), 1);
    assert_int_equal(sinter_fence_status(&f->db, "32:2", 1, &st), SINTER_EDB);
    assert_int_equal(sinter_fence_init(&f->db), SINTER_OK);
    assert_int_equal(sinter_fence_try(&f->db, "32:2", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_confirm(&f->db, "32:2", 1, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_status(&f->db, "32:2", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_COMMITTED);
    assert_int_equal(sinter_fence_status(&f->db, "32:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_NONE); /* the old table's row went with it */

    /* Dropped and re-created by another connection between two calls. */
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "DROP TABLE sinter_tcc_fence", NULL, NULL, NULL),
                     SQLITE_OK);
    struct sinter_fence_db odb = sinter_fence_db_sqlite(other);
    assert_int_equal(sinter_fence_init(&odb), SINTER_OK);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);
    assert_int_equal(sinter_fence_cancel(&f->db, "32:3", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_status(&f->db, "32:3", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_SUSPENDED);
    assert_int_equal(sinter_fence_try(&f->db, "32:3", 1, "transfer", NULL, NULL), SINTER_EFENCE);
    int busy = 0;
    assert_int_equal(stmts_on(f->db.sqlite, &busy), 5);
    assert_int_equal(busy, 0);
}

/* Why the cache must be freed before the close: SQLite refuses to close a connection with
 * prepared statements. Freed first, the close succeeds (teardown asserts it too; ASan checks
 * that nothing leaks). A cache is bound to its connection: with another one, EINVAL. */
static void t_cache_close_and_ownership(void **state)
{
    struct fx *f = *state;
    sqlite3 *c2;
    assert_int_equal(sqlite3_open(f->path, &c2), SQLITE_OK);
    struct sinter_fence_db d2 = sinter_fence_db_sqlite(c2);
    assert_int_equal(sinter_fence_cache_new(&d2, &d2.cache), SINTER_OK);
    assert_int_equal(sinter_fence_try(&d2, "33:1", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sqlite3_close(c2), SQLITE_BUSY); /* still open and usable */
    assert_int_equal(sinter_fence_confirm(&d2, "33:1", 1, NULL, NULL), SINTER_OK);

    /* Another connection's cache is refused before anything runs. */
    struct sinter_fence_db mixed = f->db;
    mixed.cache = d2.cache;
    assert_int_equal(sinter_fence_try(&mixed, "33:2", 1, "transfer", NULL, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_status(&mixed, "33:1", 1, &(int){0}), SINTER_EINVAL);
    assert_int_equal(sinter_fence_cleanup(&mixed, 0, 10, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_fence_init(&mixed), SINTER_EINVAL);
    mixed.kind = SINTER_FENCE_POSTGRES; /* a SQLite cache on a "PostgreSQL" db */
    mixed.pg = (PGconn *)(void *)c2;
    assert_int_equal(sinter_fence_try(&mixed, "33:2", 1, "transfer", NULL, NULL), SINTER_EINVAL);
    int st = -1;
    assert_int_equal(sinter_fence_status(&f->db, "33:2", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_NONE);

    sinter_fence_cache_free(d2.cache);
    assert_int_equal(sqlite3_close(c2), SQLITE_OK);

    /* A cache that never prepared anything, and NULL, free cleanly too. */
    struct sinter_fence_cache *c = NULL;
    assert_int_equal(sinter_fence_cache_new(&f->db, &c), SINTER_OK);
    sinter_fence_cache_free(c);
    sinter_fence_cache_free(NULL);
    struct sinter_fence_db none = sinter_fence_db_sqlite(NULL);
    c = (struct sinter_fence_cache *)&none; /* must be overwritten */
    assert_int_equal(sinter_fence_cache_new(&none, &c), SINTER_EINVAL);
    assert_null(c);
    assert_int_equal(sinter_fence_cache_new(NULL, &c), SINTER_EINVAL);
    assert_int_equal(sinter_fence_cache_new(&f->db, NULL), SINTER_EINVAL);
}

/* A hook that leaves its own statement mid-execution (stepped, not reset or finalized) when it
 * returns. A pending write makes SQLite's COMMIT fail ("SQL statements in progress", SQLITE_BUSY):
 * the fence reports it retryable and rolls everything back, leaving the connection idle and
 * the cached statements reusable once the hook's statement is gone. A pending read does not stop
 * the COMMIT. Same results with and without a cache. */
struct pending {
    const char *sql;
    sqlite3_stmt *st;
    int fail; /* return this code after leaving the statement pending */
};

static int hook_leaves_pending(const struct sinter_fence_db *db, void *arg)
{
    struct pending *p = arg;
    assert_int_equal(sqlite3_prepare_v2(db->sqlite, p->sql, -1, &p->st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(p->st), SQLITE_ROW);
    return p->fail;
}

static void t_hook_leaves_statement_pending(void **state)
{
    struct fx *f = *state;
    int st = -1;
    struct pending w = {
        "UPDATE acct SET frozen = frozen + 10 WHERE name = 'alice' RETURNING frozen", NULL, 0};
    int rc = sinter_fence_try(&f->db, "34:1", 1, "transfer", hook_leaves_pending, &w);
    assert_int_equal(rc, SINTER_EBUSY);
    assert_non_null(strstr(sinter_fence_errmsg(), "commit"));
    assert_int_equal(sqlite3_get_autocommit(f->db.sqlite), 1);
    sqlite3_finalize(w.st);
    assert_int_equal(sinter_fence_status(&f->db, "34:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_NONE);
    assert_int_equal(fx_q1(&f->db, "SELECT frozen FROM acct WHERE name = 'alice'"), 0);

    /* The retry, with a well-behaved hook, goes through on the same connection and cache. */
    assert_int_equal(sinter_fence_try(&f->db, "34:1", 1, "transfer", NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_fence_status(&f->db, "34:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_TRIED);

    /* A pending read: the confirm commits. */
    struct pending r = {"SELECT name FROM acct ORDER BY name", NULL, 0};
    assert_int_equal(sinter_fence_confirm(&f->db, "34:1", 1, hook_leaves_pending, &r), SINTER_OK);
    sqlite3_finalize(r.st);
    assert_int_equal(sinter_fence_status(&f->db, "34:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_COMMITTED);

    /* A failing hook with a pending write: its code comes back, nothing is kept. */
    struct pending e = {"UPDATE acct SET balance = balance - 1 WHERE name = 'alice' RETURNING 1",
                        NULL, SINTER_ENOTFOUND};
    assert_int_equal(sinter_fence_try(&f->db, "34:2", 1, "transfer", hook_leaves_pending, &e),
                     SINTER_ENOTFOUND);
    assert_int_equal(sqlite3_get_autocommit(f->db.sqlite), 1);
    sqlite3_finalize(e.st);
    assert_int_equal(fx_q1(&f->db, "SELECT balance FROM acct WHERE name = 'alice'"), 100);
    assert_int_equal(sinter_fence_status(&f->db, "34:2", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_NONE);
    int busy = 0;
    (void)stmts_on(f->db.sqlite, &busy);
    assert_int_equal(busy, 0);
}

/* Errors around cached statements leave the cache usable: a busy database at BEGIN (try and
 * confirm), a hook's own failing statement, a caller's open transaction. */
static void t_cache_error_paths(void **state)
{
    struct fx *f = *state;
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(f->db.sqlite, 0), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sinter_fence_try(&f->db, "35:1", 1, "transfer", NULL, NULL), SINTER_EBUSY);
    assert_int_equal(sinter_fence_confirm(&f->db, "35:1", 1, NULL, NULL), SINTER_EBUSY);
    assert_int_equal(sqlite3_get_autocommit(f->db.sqlite), 1);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(other), SQLITE_OK);
    assert_int_equal(sinter_fence_try(&f->db, "35:1", 1, "transfer", hook_bad_sql, NULL),
                     SINTER_OK);
    assert_int_equal(sinter_fence_confirm(&f->db, "35:1", 1, NULL, NULL), SINTER_OK);
    int st = -1;
    assert_int_equal(sinter_fence_status(&f->db, "35:1", 1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_FENCE_COMMITTED);
    /* A transaction the caller left open is refused without touching the cache's statements. */
    assert_int_equal(sqlite3_exec(f->db.sqlite, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sinter_fence_cancel(&f->db, "35:2", 1, "transfer", NULL, NULL), SINTER_EBUSY);
    assert_int_equal(sqlite3_exec(f->db.sqlite, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sinter_fence_cancel(&f->db, "35:2", 1, "transfer", NULL, NULL), SINTER_OK);
}

int main(void)
{
    /* Every scenario without and with a statement cache: the cache must not change semantics. */
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown),
#define C(fn) cmocka_unit_test_setup_teardown(fn, setup_cached, teardown),
    const struct CMUnitTest plain[] = {
        FENCE_SCENARIO_LIST(T) T(t_sqlite_busy_is_retryable) T(t_sqlite_hook_statement_error)
            T(t_hook_leaves_statement_pending) T(t_cache_close_and_ownership)};
    const struct CMUnitTest cached[] = {
        FENCE_SCENARIO_LIST(C) C(t_sqlite_busy_is_retryable) C(t_sqlite_hook_statement_error)
            C(t_hook_leaves_statement_pending) C(t_cache_reuses_idle_statements)
                C(t_cache_survives_schema_changes) C(t_cache_error_paths)};
#undef C
#undef T
    int rc = cmocka_run_group_tests_name("rm_fence_sqlite", plain, NULL, NULL);
    rc |= cmocka_run_group_tests_name("rm_fence_sqlite_cached", cached, NULL, NULL);
    return rc;
}
