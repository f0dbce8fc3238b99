/*
 * Internal contract between the fence's front end (fence.c: argument checks, the state machine,
 * transaction control around the hook) and its two storage backends (fence_sqlite.c,
 * fence_pg.c: SQL only). Not installed. Every function returns a Sinter error code and, on
 * failure, has already recorded a message with sinter_fence_set_errmsg().
 */
#ifndef SINTER_RM_FENCE_BACKEND_H
#define SINTER_RM_FENCE_BACKEND_H

#include <stdint.h>

#include "sinter/fence.h"

struct sinter_fence_ops {
    /* Run the embedded schema script (create the table and index if missing) in one transaction. */
    int (*create)(const struct sinter_fence_db *db);
    /* OR of sinter_fence_column_bit() over the table's columns (0: no such table). */
    int (*columns)(const struct sinter_fence_db *db, unsigned *found);
    /* True when the connection is inside a transaction (the caller's or ours). */
    int (*in_txn)(const struct sinter_fence_db *db);
    /* After a hook returned 0: SINTER_OK when our transaction is still open and healthy. */
    int (*txn_ok)(const struct sinter_fence_db *db);
    /* Begin a local transaction that will write the fence row. */
    int (*begin)(const struct sinter_fence_db *db);
    /* Commit; on failure the transaction is rolled back before returning. */
    int (*commit)(const struct sinter_fence_db *db);
    /* Roll back; never fails (errors are ignored: the transaction is gone either way). */
    void (*rollback)(const struct sinter_fence_db *db);
    /* Read the row's status (SINTER_FENCE_NONE if absent), locking it against concurrent fence
     * calls until the end of the transaction. */
    int (*lock_row)(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                    int *status);
    /* Insert the row with status unless a row with that key exists; *inserted = 1 or 0. */
    int (*insert)(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                  const char *action, int status, int *inserted);
    /* Compare-and-set the status (from -> to) and touch modified_at; *changed = rows changed. */
    int (*set_status)(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                      int from, int to, int *changed);
    /* Plain read, no lock, no transaction of ours. */
    int (*read_status)(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                       int *status);
    /* One autocommit DELETE of at most max_rows ended rows older than older_than_ms. */
    int (*cleanup)(const struct sinter_fence_db *db, int64_t older_than_ms, uint32_t max_rows,
                   uint32_t *deleted);
};

/* The statements a cache holds (SQLite): the ones every try / confirm / cancel runs. The rare
 * ones (init, cleanup) are prepared per call. */
enum sinter_fence_cached {
    SINTER_FC_SELECT,
    SINTER_FC_INSERT,
    SINTER_FC_UPDATE,
    SINTER_FC_BEGIN,
    SINTER_FC_COMMIT,
    SINTER_FC_N
};

/* sinter/fence.h's opaque cache: bound to one connection (kind + the matching handle), which a
 * fence call checks against its struct sinter_fence_db. A NULL slot is prepared on first use. */
struct sinter_fence_cache {
    enum sinter_fence_backend kind;
    sqlite3 *sqlite;
    PGconn *pg;
    sqlite3_stmt *st[SINTER_FC_N];
};

extern const struct sinter_fence_ops sinter_fence_ops_sqlite;
extern const struct sinter_fence_ops sinter_fence_ops_pg;

/* Finalizes and clears the cache's SQLite statements (fence_sqlite.c). */
void sinter_fence_sqlite_cache_clear(struct sinter_fence_cache *c);

/* Records the calling thread's error message (printf format), returned by sinter_fence_errmsg. */
void sinter_fence_set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bit of a column the fence needs (0 for any other name). */
unsigned sinter_fence_column_bit(const char *name);

#endif /* SINTER_RM_FENCE_BACKEND_H */
