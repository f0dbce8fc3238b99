/*
 * TCC fence storage on SQLite (the SQL half of rm/fence.c).
 *
 * Locking: every fence transaction starts with BEGIN IMMEDIATE, which takes SQLite's write lock
 * before the first read. Two connections therefore never interleave a read-check-write on the
 * fence row (SQLite has no row locks; this is its "SELECT ... FOR UPDATE"), and lock contention
 * shows up as SQLITE_BUSY at BEGIN, where the connection's busy timeout applies, instead of as an
 * unresolvable deferred-transaction upgrade deadlock later.
 *
 * Times are ms since the Unix epoch from the service's CLOCK_REALTIME, bound as parameters.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fence_backend.h"
#include "rm/fence_sql.h"
#include "sinter/error.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Maps an SQLite result code to a Sinter code and records the connection's message. BUSY and
 * LOCKED are contention: retryable. */
static int fail(sqlite3 *db, int src, const char *what)
{
    sinter_fence_set_errmsg("sqlite: %s: %s", what, sqlite3_errmsg(db));
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return SINTER_EBUSY;
    case SQLITE_NOMEM:
        return SINTER_ENOMEM;
    default:
        return SINTER_EDB;
    }
}

static int exec(sqlite3 *db, const char *sql, const char *what)
{
    int src = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return src == SQLITE_OK ? SINTER_OK : fail(db, src, what);
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    int src = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    return src == SQLITE_OK ? SINTER_OK : fail(db, src, "prepare");
}

/* The statements of every try / confirm / cancel, by enum sinter_fence_cached. */
static const char *const cached_sql[SINTER_FC_N] = {
    [SINTER_FC_SELECT] = "SELECT status FROM sinter_tcc_fence WHERE xid = ?1 AND branch_id = ?2",
    /* ON CONFLICT DO NOTHING, not INSERT OR IGNORE: only the key conflict is expected; a NOT
     * NULL or CHECK violation must still fail loudly. */
    /* Parenthesised: clang's -Wstring-concatenation (the fuzz build) takes adjacent literals in
     * an array initializer for a missing comma. */
    [SINTER_FC_INSERT] = ("INSERT INTO sinter_tcc_fence (xid, branch_id, action_name, status, "
                          "created_at, modified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) "
                          "ON CONFLICT (xid, branch_id) DO NOTHING"),
    [SINTER_FC_UPDATE] = ("UPDATE sinter_tcc_fence SET status = ?3, modified_at = ?4 "
                          "WHERE xid = ?1 AND branch_id = ?2 AND status = ?5"),
    [SINTER_FC_BEGIN] = "BEGIN IMMEDIATE",
    [SINTER_FC_COMMIT] = "COMMIT",
};

/* Statement i: the connection's cached one, prepared on first use, or (no cache) a fresh one.
 * Cached statements are prepared with sqlite3_prepare_v3, which like _v2 re-prepares them by
 * itself when the schema changed (SQLITE_SCHEMA never reaches us), so a cached statement stays
 * valid across DDL, even a dropped and re-created fence table; PERSISTENT tells SQLite it is
 * kept. */
static int stmt_get(const struct sinter_fence_db *d, enum sinter_fence_cached i, sqlite3_stmt **st)
{
    struct sinter_fence_cache *c = d->cache;
    if (c == NULL)
        return prepare(d->sqlite, cached_sql[i], st);
    if (c->st[i] == NULL) {
        int src = sqlite3_prepare_v3(d->sqlite, cached_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                     &c->st[i], NULL);
        if (src != SQLITE_OK) {
            c->st[i] = NULL;
            return fail(d->sqlite, src, "prepare");
        }
    }
    *st = c->st[i];
    return SINTER_OK;
}

/* Ends a statement's use: a cached one is reset (no read transaction or lock left behind, so a
 * COMMIT or a later close is never blocked by it) and its bindings cleared (xid was bound
 * SQLITE_STATIC: the pointer must not outlive the call); an uncached one is finalized. */
static void stmt_put(const struct sinter_fence_db *d, sqlite3_stmt *st)
{
    if (d->cache == NULL) {
        sqlite3_finalize(st);
        return;
    }
    (void)sqlite3_reset(st); /* returns the last step's error again: already reported */
    (void)sqlite3_clear_bindings(st);
}

/* Transaction control: cached like the others (parsing "BEGIN IMMEDIATE" per call is most of
 * sqlite3_exec's cost), or sqlite3_exec without a cache. */
static int exec_ctl(const struct sinter_fence_db *d, enum sinter_fence_cached i, const char *what)
{
    if (d->cache == NULL)
        return exec(d->sqlite, cached_sql[i], what);
    sqlite3_stmt *st;
    int rc = stmt_get(d, i, &st);
    if (rc != SINTER_OK)
        return rc;
    int src = sqlite3_step(st);
    rc = src == SQLITE_DONE ? SINTER_OK : fail(d->sqlite, src, what);
    stmt_put(d, st);
    return rc;
}

void sinter_fence_sqlite_cache_clear(struct sinter_fence_cache *c)
{
    for (int i = 0; i < SINTER_FC_N; i++) {
        sqlite3_finalize(c->st[i]); /* NULL is a no-op */
        c->st[i] = NULL;
    }
}

/* Binds (xid, branch_id) as ?1, ?2: every statement below keys on them. */
static int bind_key(sqlite3 *db, sqlite3_stmt *st, const char *xid, uint64_t branch_id)
{
    int src = sqlite3_bind_text(st, 1, xid, -1, SQLITE_STATIC);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(st, 2, (sqlite3_int64)branch_id);
    return src == SQLITE_OK ? SINTER_OK : fail(db, src, "bind");
}

/* Steps a statement that returns no rows (the caller puts it back). */
static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int src = sqlite3_step(st);
    return src == SQLITE_DONE ? SINTER_OK : fail(db, src, what);
}

static int sq_in_txn(const struct sinter_fence_db *d)
{
    return !sqlite3_get_autocommit(d->sqlite);
}

static int sq_txn_ok(const struct sinter_fence_db *d)
{
    if (sqlite3_get_autocommit(d->sqlite)) {
        sinter_fence_set_errmsg("the hook ended the fence's transaction (it must not commit or "
                                "roll back)");
        /* EDB, not ESTATE: a broken hook is no verdict on the branch's fence row, and the
         * row's state is unknown here; a retry reads it again (sinter/fence.h). */
        return SINTER_EDB;
    }
    return SINTER_OK;
}

static int sq_begin(const struct sinter_fence_db *d)
{
    return exec_ctl(d, SINTER_FC_BEGIN, "begin");
}

static void sq_rollback(const struct sinter_fence_db *d)
{
    /* After some errors (SQLITE_FULL, IOERR, BUSY during COMMIT) SQLite has already rolled back
     * on its own; only roll back what is still open. */
    if (!sqlite3_get_autocommit(d->sqlite))
        (void)sqlite3_exec(d->sqlite, "ROLLBACK", NULL, NULL, NULL); /* rare: not cached */
}

static int sq_commit(const struct sinter_fence_db *d)
{
    int rc = exec_ctl(d, SINTER_FC_COMMIT, "commit");
    if (rc != SINTER_OK)
        sq_rollback(d);
    return rc;
}

static int sq_read(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                   int *status)
{
    sqlite3 *db = d->sqlite;
    sqlite3_stmt *st;
    int rc = stmt_get(d, SINTER_FC_SELECT, &st);
    if (rc != SINTER_OK)
        return rc;
    if ((rc = bind_key(db, st, xid, branch_id)) == SINTER_OK) {
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            *status = sqlite3_column_int(st, 0);
        else if (src == SQLITE_DONE)
            *status = SINTER_FENCE_NONE;
        else
            rc = fail(db, src, "select status");
    }
    stmt_put(d, st);
    return rc;
}

/* Inside BEGIN IMMEDIATE the whole database is write-locked already: a plain read suffices. */
static int sq_lock_row(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                       int *status)
{
    return sq_read(d, xid, branch_id, status);
}

static int sq_read_status(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                          int *status)
{
    return sq_read(d, xid, branch_id, status);
}

static int sq_insert(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                     const char *action, int status, int *inserted)
{
    sqlite3 *db = d->sqlite;
    sqlite3_stmt *st;
    int rc = stmt_get(d, SINTER_FC_INSERT, &st);
    if (rc != SINTER_OK)
        return rc;
    rc = bind_key(db, st, xid, branch_id);
    if (rc == SINTER_OK) {
        int src = sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
        if (src == SQLITE_OK)
            src = sqlite3_bind_int(st, 4, status);
        if (src == SQLITE_OK)
            src = sqlite3_bind_int64(st, 5, now_ms());
        if (src != SQLITE_OK)
            rc = fail(db, src, "bind");
    }
    if (rc == SINTER_OK)
        rc = step_done(db, st, "insert fence row");
    if (rc == SINTER_OK)
        *inserted = sqlite3_changes(db) == 1;
    stmt_put(d, st);
    return rc;
}

static int sq_set_status(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                         int from, int to, int *changed)
{
    sqlite3 *db = d->sqlite;
    sqlite3_stmt *st;
    int rc = stmt_get(d, SINTER_FC_UPDATE, &st);
    if (rc != SINTER_OK)
        return rc;
    rc = bind_key(db, st, xid, branch_id);
    if (rc == SINTER_OK) {
        int src = sqlite3_bind_int(st, 3, to);
        if (src == SQLITE_OK)
            src = sqlite3_bind_int64(st, 4, now_ms());
        if (src == SQLITE_OK)
            src = sqlite3_bind_int(st, 5, from);
        if (src != SQLITE_OK)
            rc = fail(db, src, "bind");
    }
    if (rc == SINTER_OK)
        rc = step_done(db, st, "update fence status");
    if (rc == SINTER_OK)
        *changed = sqlite3_changes(db);
    stmt_put(d, st);
    return rc;
}

static int sq_cleanup(const struct sinter_fence_db *d, int64_t older_than_ms, uint32_t max_rows,
                      uint32_t *deleted)
{
    sqlite3 *db = d->sqlite;
    sqlite3_stmt *st;
    /* One statement, so one implicit transaction: the batch is all-or-nothing and short. The
     * subquery walks the (status, modified_at) index. TRIED (1) is never selected. */
    int rc = prepare(db,
                     "DELETE FROM sinter_tcc_fence WHERE (xid, branch_id) IN ("
                     "SELECT xid, branch_id FROM sinter_tcc_fence "
                     "WHERE status IN (2, 3, 4) AND modified_at < ?1 LIMIT ?2)",
                     &st);
    if (rc != SINTER_OK)
        return rc;
    int src = sqlite3_bind_int64(st, 1, older_than_ms);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(st, 2, max_rows);
    if (src != SQLITE_OK) {
        sqlite3_finalize(st);
        return fail(db, src, "bind");
    }
    rc = step_done(db, st, "delete ended fence rows");
    if (rc == SINTER_OK)
        *deleted = (uint32_t)sqlite3_changes(db);
    sqlite3_finalize(st);
    return rc;
}

static int sq_create(const struct sinter_fence_db *d)
{
    sqlite3 *db = d->sqlite;
    int rc = exec(db, "BEGIN IMMEDIATE", "begin");
    if (rc == SINTER_OK)
        rc = exec(db, sinter_fence_sqlite_sql, "create fence table");
    if (rc == SINTER_OK)
        rc = exec(db, "COMMIT", "commit");
    sq_rollback(d);
    return rc;
}

static int sq_columns(const struct sinter_fence_db *d, unsigned *found)
{
    sqlite3 *db = d->sqlite;
    sqlite3_stmt *st;
    int rc = prepare(db, "SELECT name FROM pragma_table_info('sinter_tcc_fence')", &st);
    if (rc != SINTER_OK)
        return rc;
    *found = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(st, 0);
        if (name != NULL)
            *found |= sinter_fence_column_bit((const char *)name);
    }
    if (src != SQLITE_DONE)
        rc = fail(db, src, "table_info");
    sqlite3_finalize(st);
    return rc;
}

const struct sinter_fence_ops sinter_fence_ops_sqlite = {
    .create = sq_create,
    .columns = sq_columns,
    .in_txn = sq_in_txn,
    .txn_ok = sq_txn_ok,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .lock_row = sq_lock_row,
    .insert = sq_insert,
    .set_status = sq_set_status,
    .read_status = sq_read_status,
    .cleanup = sq_cleanup,
};
