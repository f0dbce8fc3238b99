/*
 * The TCC fence: makes a service's try / confirm / cancel hooks safe against the three anomalies
 * of TCC (Seata's TCCFenceHandler: "idempotent, non_rollback, suspend"):
 *
 *   - duplicate phase-2 delivery: confirm and cancel are idempotent; a second delivery does
 *     nothing and reports success;
 *   - empty rollback: a cancel that arrives before (or without) its try is recorded as SUSPENDED
 *     and the business cancel hook is not run (there is nothing to undo);
 *   - suspension: a try that arrives after its cancel is refused (SINTER_EFENCE), so no resource
 *     is reserved for a global that has already rolled back.
 *
 * The fence is one row per (xid, branch_id) in table sinter_tcc_fence of the SERVICE'S OWN
 * database (schemas: sql/tcc_fence_sqlite.sql, sql/tcc_fence_postgres.sql). Each call runs ONE
 * local transaction on the caller's connection that both changes the fence row and runs the
 * caller's hook, which must do its business change on the same connection: the business change
 * and the fence row commit together or not at all.
 *
 * State table (status codes are Seata's TCCFenceConstant values):
 *
 *   call      no row                 TRIED                  COMMITTED      ROLLBACKED/SUSPENDED
 *   try       insert TRIED, run hook EFENCE                 EFENCE         EFENCE
 *   confirm   EBUSY, nothing written run hook -> COMMITTED  OK, no hook    ESTATE
 *             (retry: try in flight)
 *   cancel    insert SUSPENDED,      run hook -> ROLLBACKED ESTATE         OK, no hook
 *             no hook (empty rb.)
 *
 * A hook returning non-zero rolls the whole local transaction back (business change and fence
 * change alike) and the call returns the hook's code unchanged; the coordinator retries phase 2.
 *
 * Why a confirm without a row is retryable and a cancel without a row is not: the coordinator
 * can deliver its decision while the branch's try is still running (the try registered the
 * branch, then the service went on before the try's local transaction committed). On PostgreSQL
 * the uncommitted TRIED row is invisible to the confirm's connection and SELECT ... FOR UPDATE
 * does not wait for it, so "no row" may mean "not yet". The confirm then changes nothing and
 * returns SINTER_EBUSY; the coordinator retries with backoff and the retry after the try's commit
 * runs the business confirm. If the try never happens, the retries run out and the global ends in
 * CommitRetryTimeout, visible to an operator: never a silent success. (SQLite behaves the same
 * for consistency.) A cancel without a row, by contrast, is the empty rollback: it records
 * SUSPENDED, which also refuses the try should it still come.
 *
 * Backends: SQLite (sqlite3 *) and PostgreSQL (libpq PGconn *). Connections are the caller's:
 * the fence never opens, closes or configures them, and must be given a connection that is not
 * inside a transaction. A connection is used by one thread at a time (the usual SQLite / libpq
 * rule); different connections may run fence calls concurrently, and on PostgreSQL concurrent
 * calls for the same branch from different connections are safe (see rm/fence_pg.c).
 *
 * Errors, for every function below: SINTER_EINVAL (bad argument), SINTER_ESTATE (ONLY as in the
 * state table: the fence row's state refuses the call for good), SINTER_EFENCE (try refused),
 * SINTER_EDB (the database reported an error, or a hook ended the fence's transaction itself;
 * sinter_fence_errmsg() has the message), SINTER_EBUSY (retryable: the connection is not idle
 * (already inside a transaction: nothing was done, hand over an idle connection), SQLite
 * busy/locked, PostgreSQL serialization failure 40001, deadlock 40P01, lock timeout 55P03 or
 * statement timeout / cancel 57014, or a confirm that found no fence row; the local transaction
 * was rolled back, try again), SINTER_ENOMEM, or whatever a hook returned. None of these but
 * SINTER_ESTATE and SINTER_EFENCE is a verdict on the branch: phase 2 reports them retryable.
 */
#ifndef SINTER_FENCE_H
#define SINTER_FENCE_H

#include <stdint.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fence row status, as stored in the status column. Numbers are Seata's; never renumber. */
enum sinter_fence_status {
    SINTER_FENCE_NONE = 0, /* no row (only ever returned by sinter_fence_status) */
    SINTER_FENCE_TRIED = 1,
    SINTER_FENCE_COMMITTED = 2,
    SINTER_FENCE_ROLLBACKED = 3,
    SINTER_FENCE_SUSPENDED = 4,
};

enum sinter_fence_backend {
    SINTER_FENCE_SQLITE = 1,
    SINTER_FENCE_POSTGRES = 2,
};

/* A statement cache for ONE connection (sinter_fence_cache_new below). Opaque. */
struct sinter_fence_cache;

/* A borrowed database connection and which backend it is. Build it with one of the two
 * constructors below, or zero it first and then set kind and the matching connection field: every
 * field is read (a cache left uninitialised would be dereferenced). The fence never frees the
 * connection. cache is optional (NULL: none): the connection's statement cache, see
 * sinter_fence_cache_new. */
struct sinter_fence_db {
    enum sinter_fence_backend kind;
    sqlite3 *sqlite; /* kind == SINTER_FENCE_SQLITE */
    PGconn *pg;      /* kind == SINTER_FENCE_POSTGRES */
    struct sinter_fence_cache *cache;
};

static inline struct sinter_fence_db sinter_fence_db_sqlite(sqlite3 *db)
{
    struct sinter_fence_db d = {SINTER_FENCE_SQLITE, db, NULL, NULL};
    return d;
}

static inline struct sinter_fence_db sinter_fence_db_pg(PGconn *conn)
{
    struct sinter_fence_db d = {SINTER_FENCE_POSTGRES, NULL, conn, NULL};
    return d;
}

/* A business hook. It runs inside the fence's local transaction and must do its work on db (the
 * same connection the fence call got), must not begin, commit or roll back a transaction itself,
 * and returns 0 on success or any non-zero code to roll everything back (that code is returned to
 * the fence's caller). arg is the caller's, passed through untouched. */
typedef int (*sinter_fence_hook)(const struct sinter_fence_db *db, void *arg);

/* Limits on the text arguments (bytes, without the NUL), as in Seata's tcc_fence_log. */
#define SINTER_FENCE_XID_MAX    128
#define SINTER_FENCE_ACTION_MAX 64

/* Creates table sinter_tcc_fence and its index if missing (in one local transaction), then checks
 * that the table has every column the fence uses. Call once per database at service start;
 * calling it again is harmless. On PostgreSQL the table goes into the connection's current schema.
 * Ownership: borrows db. Errors: SINTER_EINVAL, SINTER_EBUSY (connection inside a transaction,
 * or database contention), SINTER_ECONFIG (a table of that name exists without the expected
 * columns), SINTER_EDB. */
int sinter_fence_init(const struct sinter_fence_db *db);

/* Phase one. In one local transaction: insert the row (xid, branch_id) as TRIED, run hook (may be
 * NULL: nothing to run), commit. If a row for the branch already exists, in any state (SUSPENDED:
 * the cancel came first; or a duplicate try), nothing runs and SINTER_EFENCE is returned: the
 * service must then fail its phase one. Seata's prepareFence, except that the refused branch's
 * SUSPENDED row is kept until cleanup, so a third, even later try is refused too.
 * Ownership: borrows db, xid, action and arg for the call. xid: 1..SINTER_FENCE_XID_MAX bytes;
 * action: 1..SINTER_FENCE_ACTION_MAX bytes; branch_id <= INT64_MAX.
 * Errors: SINTER_EFENCE, the hook's code, and the common ones (file comment). */
int sinter_fence_try(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                     const char *action, sinter_fence_hook hook, void *arg);

/* Phase two, commit side. In one local transaction, with the row locked: TRIED -> run hook (may
 * be NULL), set COMMITTED, commit; COMMITTED -> nothing, SINTER_OK (duplicate delivery).
 * No row -> nothing written, no hook, SINTER_EBUSY: the try has not committed yet (a commit
 * decision overtook it) or never happened; the coordinator retries, and the retry after the try's
 * commit confirms it (see "Why" above). ROLLBACKED or SUSPENDED -> SINTER_ESTATE: a confirm can
 * never follow a cancel. Seata's commitFence fails on a missing row; we do not, because the row
 * may only be invisible yet. Ownership: borrows db, xid and arg.
 * Errors: SINTER_EBUSY (also: no row yet), SINTER_ESTATE, the hook's code, common. */
int sinter_fence_confirm(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                         sinter_fence_hook hook, void *arg);

/* Phase two, rollback side. In one local transaction, with the row locked: no row -> insert it
 * as SUSPENDED and run NO hook (empty rollback; action names the row for operators), SINTER_OK;
 * TRIED -> run hook (may be NULL), set ROLLBACKED, commit; ROLLBACKED or SUSPENDED -> nothing,
 * SINTER_OK (duplicate delivery); COMMITTED -> SINTER_ESTATE. Seata's rollbackFence.
 * Ownership: borrows db, xid, action and arg. Errors: SINTER_ESTATE, the hook's code, common. */
int sinter_fence_cancel(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                        const char *action, sinter_fence_hook hook, void *arg);

/* Reads the branch's fence status into *status (SINTER_FENCE_NONE when there is no row), without
 * locking; inside the caller's transaction, if one is open, else on its own. For operators and
 * tests. Ownership: borrows db and xid; writes *status only on success. Errors: SINTER_EINVAL,
 * SINTER_EDB, SINTER_EBUSY. */
int sinter_fence_status(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                        int *status);

/* Deletes at most max_rows (> 0) rows in an ended state (COMMITTED, ROLLBACKED, SUSPENDED) whose
 * last change is older than older_than_ms (ms since the Unix epoch), in one local transaction;
 * TRIED rows are never deleted (their branch is still undecided). *deleted (may be NULL) gets the
 * count. Call repeatedly until *deleted < max_rows to clear a backlog in batches (Seata deletes
 * 1000 per statement), keeping each transaction short. On PostgreSQL rows locked by a running
 * fence call are skipped, not waited for.
 * The retention (now - older_than_ms) must exceed the coordinator's phase-2 retry deadline and the
 * longest global timeout: a deleted SUSPENDED row no longer refuses a very late try, and a deleted
 * COMMITTED row turns a very late duplicate confirm into SINTER_EBUSY (no row) until the
 * coordinator's retry deadline.
 * Ownership: borrows db; writes *deleted. Errors: common ones. */
int sinter_fence_cleanup(const struct sinter_fence_db *db, int64_t older_than_ms, uint32_t max_rows,
                         uint32_t *deleted);

/* Statement cache (opt-in). Without one, every fence call prepares its few statements (and
 * parses BEGIN / COMMIT) again: on SQLite a large share of a fence call's CPU. With
 * one, they are prepared once per connection and reused: after a call the cached statements are
 * reset (idle: they hold no lock, no read transaction and no bound argument), but they stay
 * PREPARED on the connection, and SQLite's sqlite3_close() refuses a connection with prepared
 * statements (SQLITE_BUSY, and the connection leaks). Hence the ownership rules:
 *   - a cache belongs to the one connection it was made for and lives no longer than it: call
 *     sinter_fence_cache_free BEFORE closing the connection (a pool keeps the pair together);
 *   - set db->cache only on a struct sinter_fence_db for that same connection (a fence call with
 *     another connection's cache fails with SINTER_EINVAL); the rule "one thread at a time per
 *     connection" covers the cache too;
 *   - schema changes are fine: SQLite re-prepares a cached statement when the schema changed
 *     (sqlite3_prepare_v2 semantics), also after the fence table was dropped and created again.
 * The library's own connections (sinter/tcc.h: sqlite_path) get a cache automatically; a
 * connect factory may hand one out in db->cache with its connection (it stays the pool's).
 * PostgreSQL connections are accepted and nothing is cached for them yet (every statement is one
 * PQexecParams round trip either way). */

/* Makes an empty cache for db's connection (db->cache is ignored; set it yourself afterwards).
 * Ownership: *out is the caller's, freed with sinter_fence_cache_free; db's connection is
 * borrowed for the cache's life. Errors: SINTER_EINVAL (no connection), SINTER_ENOMEM. */
int sinter_fence_cache_new(const struct sinter_fence_db *db, struct sinter_fence_cache **out);

/* Finalizes the cache's statements and frees it; NULL is a no-op. Call it before closing the
 * connection, outside any fence call. Ownership: takes c. Errors: none. */
void sinter_fence_cache_free(struct sinter_fence_cache *c);

/* The calling thread's message for the last fence call that failed with SINTER_EDB, SINTER_EBUSY,
 * SINTER_ECONFIG or SINTER_ESTATE (the database's own text where there is one); "" after a call
 * that succeeded. Ownership: thread-local buffer owned by the library, valid until the thread's
 * next fence call; never NULL. */
const char *sinter_fence_errmsg(void);

/* "TRIED", "COMMITTED", "ROLLBACKED", "SUSPENDED", "NONE"; "UNKNOWN" for other values.
 * Ownership: static string. */
const char *sinter_fence_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_FENCE_H */
