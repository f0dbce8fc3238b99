/* Unit tests for the TCC fence (include/sinter/fence.h) on SQLite, in a temporary database file:
 * every state transition, empty rollback, anti-suspension, duplicate deliveries, failing hooks,
 * batched cleanup and a business table moved in the same transaction (fence_scenarios.c, shared
 * with the PostgreSQL integration test), plus SQLite's busy handling. */
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

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown),
    const struct CMUnitTest tests[] = {FENCE_SCENARIO_LIST(T) T(t_sqlite_busy_is_retryable)
                                           T(t_sqlite_hook_statement_error)};
#undef T
    return cmocka_run_group_tests_name("rm_fence_sqlite", tests, NULL, NULL);
}
