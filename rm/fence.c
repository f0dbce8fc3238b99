/*
 * The TCC fence's front end: argument checks, the state machine of include/sinter/fence.h and the
 * transaction around the user's hook. The SQL lives in the backends (fence_sqlite.c, fence_pg.c)
 * so both databases follow exactly the same rules.
 *
 * The rules are Seata's TCCFenceHandler (prepareFence / commitFence / rollbackFence):
 *   - try inserts TRIED and runs the business try in the same local transaction; a duplicate key
 *     means the cancel (or another try) came first, so the try is refused;
 *   - confirm / cancel lock the row, return success without running anything when the branch
 *     already reached their end state, and otherwise compare-and-set TRIED -> end state and run
 *     the business hook in the same local transaction;
 *   - a cancel that finds no row records SUSPENDED and runs nothing (empty rollback).
 * Where we differ: Seata deletes the SUSPENDED row as soon as it refused a late try; we keep it
 * until the retention cleanup, so a second late try is refused too. And a confirm that finds no
 * row is retryable (SINTER_EBUSY), not a failure as in Seata's commitFence: the commit decision
 * can overtake a try whose local transaction has not committed yet.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fence_backend.h"
#include "sinter/error.h"

/* ---- per-thread error message ---- */

static _Thread_local char fence_errbuf[512];

void sinter_fence_set_errmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fence_errbuf, sizeof fence_errbuf, fmt, ap);
    va_end(ap);
}

const char *sinter_fence_errmsg(void)
{
    return fence_errbuf;
}

const char *sinter_fence_status_name(int status)
{
    switch (status) {
    case SINTER_FENCE_NONE:
        return "NONE";
    case SINTER_FENCE_TRIED:
        return "TRIED";
    case SINTER_FENCE_COMMITTED:
        return "COMMITTED";
    case SINTER_FENCE_ROLLBACKED:
        return "ROLLBACKED";
    case SINTER_FENCE_SUSPENDED:
        return "SUSPENDED";
    default:
        return "UNKNOWN";
    }
}

/* ---- table columns, checked by the backends' init ---- */

static const char *const fence_columns[] = {"xid",    "branch_id",  "action_name",
                                            "status", "created_at", "modified_at"};

unsigned sinter_fence_column_bit(const char *name)
{
    for (unsigned i = 0; i < sizeof fence_columns / sizeof fence_columns[0]; i++)
        if (strcmp(name, fence_columns[i]) == 0)
            return 1u << i;
    return 0;
}

#define COLUMNS_ALL ((1u << (sizeof fence_columns / sizeof fence_columns[0])) - 1)

/* An older or foreign table of the same name would make every later call fail obscurely (or the
 * schema script fail on its index): refuse it up front and name the missing column. */
static int check_columns(unsigned found)
{
    if (found == COLUMNS_ALL)
        return SINTER_OK;
    const char *missing = "";
    for (unsigned i = 0; i < sizeof fence_columns / sizeof fence_columns[0]; i++)
        if (!(found & (1u << i))) {
            missing = fence_columns[i];
            break;
        }
    sinter_fence_set_errmsg("table sinter_tcc_fence exists without column %s: not a Sinter fence "
                            "table (see sql/tcc_fence_*.sql)",
                            missing);
    return SINTER_ECONFIG;
}

/* ---- argument checks ---- */

/* The backend for db, or NULL for a bad db: no connection, or a statement cache made for
 * another connection (its statements would run on the wrong database, or after that connection
 * was closed: sinter/fence.h). */
static const struct sinter_fence_ops *backend(const struct sinter_fence_db *db)
{
    if (db == NULL)
        return NULL;
    const struct sinter_fence_cache *c = db->cache;
    if (db->kind == SINTER_FENCE_SQLITE && db->sqlite != NULL &&
        (c == NULL || (c->kind == SINTER_FENCE_SQLITE && c->sqlite == db->sqlite)))
        return &sinter_fence_ops_sqlite;
    if (db->kind == SINTER_FENCE_POSTGRES && db->pg != NULL &&
        (c == NULL || (c->kind == SINTER_FENCE_POSTGRES && c->pg == db->pg)))
        return &sinter_fence_ops_pg;
    return NULL;
}

/* ---- statement cache ---- */

int sinter_fence_cache_new(const struct sinter_fence_db *db, struct sinter_fence_cache **out)
{
    fence_errbuf[0] = '\0';
    if (out == NULL)
        return SINTER_EINVAL;
    *out = NULL;
    if (db == NULL ||
        (db->kind == SINTER_FENCE_SQLITE ? db->sqlite == NULL
                                         : db->kind != SINTER_FENCE_POSTGRES || db->pg == NULL)) {
        sinter_fence_set_errmsg("invalid argument");
        return SINTER_EINVAL;
    }
    struct sinter_fence_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return SINTER_ENOMEM;
    c->kind = db->kind;
    if (db->kind == SINTER_FENCE_SQLITE)
        c->sqlite = db->sqlite;
    else
        c->pg = db->pg; /* nothing cached on PostgreSQL yet (sinter/fence.h) */
    *out = c;
    return SINTER_OK;
}

void sinter_fence_cache_free(struct sinter_fence_cache *c)
{
    if (c == NULL)
        return;
    if (c->kind == SINTER_FENCE_SQLITE)
        sinter_fence_sqlite_cache_clear(c);
    free(c);
}

static int text_ok(const char *s, size_t max)
{
    if (s == NULL)
        return 0;
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max;
}

/* Common entry: clears the thread's message, validates, and refuses a connection that is already
 * inside a transaction: our BEGIN would fail (SQLite) or be ignored with a warning (PostgreSQL,
 * and then our COMMIT would commit the caller's half-done work), so the fence's all-or-nothing
 * promise could not hold. The refusal is SINTER_EBUSY, not SINTER_ESTATE: it says nothing about
 * the branch (the RM reports ESTATE as "can never succeed"), only that this connection is not
 * idle; the same call on an idle connection may succeed. */
static int enter(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                 const char *action, const struct sinter_fence_ops **ops)
{
    fence_errbuf[0] = '\0';
    *ops = backend(db);
    if (*ops == NULL || !text_ok(xid, SINTER_FENCE_XID_MAX) || branch_id > (uint64_t)INT64_MAX ||
        (action != NULL && !text_ok(action, SINTER_FENCE_ACTION_MAX))) {
        sinter_fence_set_errmsg("invalid argument");
        return SINTER_EINVAL;
    }
    if ((*ops)->in_txn(db)) {
        sinter_fence_set_errmsg("the connection is already inside a transaction");
        return SINTER_EBUSY;
    }
    return SINTER_OK;
}

/* Runs the hook inside our transaction. A non-zero code from the hook is returned as is (the
 * caller rolls back). A hook that returned 0 but broke the transaction (its SQL failed and left a
 * PostgreSQL transaction aborted, or it committed / rolled back on its own) must not be reported
 * as success: COMMIT of an aborted PostgreSQL transaction silently rolls back. */
static int run_hook(const struct sinter_fence_ops *ops, const struct sinter_fence_db *db,
                    sinter_fence_hook hook, void *arg)
{
    if (hook == NULL)
        return SINTER_OK;
    int rc = hook(db, arg);
    if (rc != SINTER_OK) {
        if (fence_errbuf[0] == '\0')
            sinter_fence_set_errmsg("hook failed: %s", sinter_strerror(rc));
        return rc;
    }
    return ops->txn_ok(db);
}

/* ---- the state machine ---- */

int sinter_fence_init(const struct sinter_fence_db *db)
{
    fence_errbuf[0] = '\0';
    const struct sinter_fence_ops *ops = backend(db);
    if (ops == NULL) {
        sinter_fence_set_errmsg("invalid argument");
        return SINTER_EINVAL;
    }
    if (ops->in_txn(db)) {
        sinter_fence_set_errmsg("the connection is already inside a transaction");
        return SINTER_EBUSY;
    }
    unsigned found = 0;
    int rc = ops->columns(db, &found);
    if (rc == SINTER_OK && found != 0)
        rc = check_columns(found);
    if (rc == SINTER_OK)
        rc = ops->create(db);
    if (rc == SINTER_OK)
        rc = ops->columns(db, &found);
    if (rc == SINTER_OK)
        rc = check_columns(found);
    return rc;
}

int sinter_fence_try(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                     const char *action, sinter_fence_hook hook, void *arg)
{
    const struct sinter_fence_ops *ops;
    int rc = enter(db, xid, branch_id, action, &ops);
    if (rc == SINTER_OK && action == NULL) {
        sinter_fence_set_errmsg("invalid argument: action is required");
        rc = SINTER_EINVAL;
    }
    if (rc != SINTER_OK)
        return rc;
    if ((rc = ops->begin(db)) != SINTER_OK)
        return rc;
    /* The primary key is the fence: the insert of TRIED succeeds only if nothing (no cancel, no
     * other try) claimed the branch first. On PostgreSQL a concurrent uncommitted cancel makes
     * this insert wait for it and then do nothing, so the two can never both win. */
    int inserted = 0;
    rc = ops->insert(db, xid, branch_id, action, SINTER_FENCE_TRIED, &inserted);
    if (rc == SINTER_OK && !inserted) {
        int st = SINTER_FENCE_NONE;
        (void)ops->read_status(db, xid, branch_id, &st); /* for the message only */
        sinter_fence_set_errmsg(
            "try refused for %s/%llu: fence row already %s%s", xid, (unsigned long long)branch_id,
            sinter_fence_status_name(st),
            st == SINTER_FENCE_SUSPENDED ? " (its cancel arrived first: anti-suspension)" : "");
        rc = SINTER_EFENCE;
    }
    if (rc == SINTER_OK)
        rc = run_hook(ops, db, hook, arg);
    if (rc != SINTER_OK) {
        ops->rollback(db);
        return rc;
    }
    return ops->commit(db);
}

/* Phase two, both sides: lock the row, then act on its state. */
static int phase2(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                  const char *action, int commit, sinter_fence_hook hook, void *arg)
{
    const struct sinter_fence_ops *ops;
    int rc = enter(db, xid, branch_id, action, &ops);
    if (rc != SINTER_OK)
        return rc;
    if ((rc = ops->begin(db)) != SINTER_OK)
        return rc;
    const int target = commit ? SINTER_FENCE_COMMITTED : SINTER_FENCE_ROLLBACKED;
    /* Bounded re-read: a cancel that found no row and then lost the insert to a concurrent try
     * (PostgreSQL: the try committed between our SELECT and our INSERT) reads the row again and
     * then sees TRIED. Two attempts always suffice unless cleanup deletes the row in between,
     * which only happens to ended rows past their retention; then report busy and let the
     * coordinator retry. */
    for (int attempt = 0; attempt < 3; attempt++) {
        int st = SINTER_FENCE_NONE;
        if ((rc = ops->lock_row(db, xid, branch_id, &st)) != SINTER_OK)
            break;
        if (st == target || (!commit && st == SINTER_FENCE_SUSPENDED)) {
            /* Duplicate delivery: already at its end; report success, run nothing. */
            ops->rollback(db);
            return SINTER_OK;
        }
        if (st == SINTER_FENCE_TRIED) {
            int changed = 0;
            rc = ops->set_status(db, xid, branch_id, SINTER_FENCE_TRIED, target, &changed);
            if (rc == SINTER_OK && changed != 1) {
                /* Impossible while we hold the row lock. */
                sinter_fence_set_errmsg("fence row of %s/%llu changed under its lock", xid,
                                        (unsigned long long)branch_id);
                rc = SINTER_EINTERNAL;
            }
            if (rc == SINTER_OK)
                rc = run_hook(ops, db, hook, arg);
            if (rc != SINTER_OK)
                break;
            return ops->commit(db);
        }
        if (st == SINTER_FENCE_NONE && !commit) {
            /* Empty rollback: the try never ran (or has not run yet). Record SUSPENDED so a late
             * try is refused, and run no business cancel: there is nothing to undo. */
            int inserted = 0;
            rc = ops->insert(db, xid, branch_id, action, SINTER_FENCE_SUSPENDED, &inserted);
            if (rc != SINTER_OK)
                break;
            if (inserted)
                return ops->commit(db);
            continue; /* a concurrent try won the key: read its row */
        }
        if (st == SINTER_FENCE_NONE) {
            /* Confirm without a row: the try has not committed yet (on PostgreSQL its TRIED row
             * is invisible to us and FOR UPDATE does not wait for a row it cannot see) or never
             * ran. Retryable: nothing is recorded, the coordinator redelivers with backoff, and a
             * try that never comes ends the global in CommitRetryTimeout, visible to an operator.
             * Never success: the business confirm has not run. */
            sinter_fence_set_errmsg("confirm of %s/%llu found no fence row: its try has not "
                                    "committed (yet); retry later",
                                    xid, (unsigned long long)branch_id);
            rc = SINTER_EBUSY;
            break;
        }
        /* confirm: ROLLBACKED or SUSPENDED; cancel: COMMITTED. The coordinator decides one side
         * per global, so this is someone else's bug: refuse loudly. */
        sinter_fence_set_errmsg("%s refused for %s/%llu: fence row is %s",
                                commit ? "confirm" : "cancel", xid, (unsigned long long)branch_id,
                                sinter_fence_status_name(st));
        rc = SINTER_ESTATE;
        break;
    }
    if (rc == SINTER_OK) {
        sinter_fence_set_errmsg("fence row of %s/%llu keeps changing (concurrent cleanup)", xid,
                                (unsigned long long)branch_id);
        rc = SINTER_EBUSY;
    }
    ops->rollback(db);
    return rc;
}

int sinter_fence_confirm(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                         sinter_fence_hook hook, void *arg)
{
    return phase2(db, xid, branch_id, NULL, 1, hook, arg);
}

int sinter_fence_cancel(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                        const char *action, sinter_fence_hook hook, void *arg)
{
    if (action == NULL) {
        fence_errbuf[0] = '\0';
        sinter_fence_set_errmsg("invalid argument: action is required");
        return SINTER_EINVAL;
    }
    return phase2(db, xid, branch_id, action, 0, hook, arg);
}

int sinter_fence_status(const struct sinter_fence_db *db, const char *xid, uint64_t branch_id,
                        int *status)
{
    fence_errbuf[0] = '\0';
    const struct sinter_fence_ops *ops = backend(db);
    if (ops == NULL || status == NULL || !text_ok(xid, SINTER_FENCE_XID_MAX) ||
        branch_id > (uint64_t)INT64_MAX) {
        sinter_fence_set_errmsg("invalid argument");
        return SINTER_EINVAL;
    }
    return ops->read_status(db, xid, branch_id, status);
}

int sinter_fence_cleanup(const struct sinter_fence_db *db, int64_t older_than_ms, uint32_t max_rows,
                         uint32_t *deleted)
{
    fence_errbuf[0] = '\0';
    const struct sinter_fence_ops *ops = backend(db);
    if (deleted != NULL)
        *deleted = 0;
    if (ops == NULL || max_rows == 0 || max_rows > INT32_MAX) {
        sinter_fence_set_errmsg("invalid argument");
        return SINTER_EINVAL;
    }
    if (ops->in_txn(db)) {
        sinter_fence_set_errmsg("the connection is already inside a transaction");
        return SINTER_EBUSY;
    }
    uint32_t n = 0;
    int rc = ops->cleanup(db, older_than_ms, max_rows, &n);
    if (rc == SINTER_OK && deleted != NULL)
        *deleted = n;
    return rc;
}
