/*
 * TCC fence storage on PostgreSQL through libpq (the SQL half of rm/fence.c).
 *
 * Why concurrent calls for one branch are safe (two service instances, or a phase-2 delivery
 * racing a slow try; PostgreSQL's default READ COMMITTED isolation):
 *
 *  - The primary key (xid, branch_id) is the arbiter. Both try (TRIED) and an empty cancel
 *    (SUSPENDED) claim the branch with INSERT ... ON CONFLICT DO NOTHING. When the other side's
 *    insert of the same key is still uncommitted, PostgreSQL makes the second insert WAIT for that
 *    transaction: if it commits, the second insert does nothing (0 rows), if it rolls back, the
 *    second insert proceeds. So exactly one of them owns the branch, and the loser learns it from
 *    the row count, never from an error (no 23505 reaches us, and the transaction stays usable).
 *      try loses   -> SINTER_EFENCE, its business try is rolled back with it (anti-suspension);
 *      cancel loses -> it re-reads the row (a new statement sees the committed TRIED row under
 *                      READ COMMITTED), then compensates the try that really happened.
 *    Hence never "a TRIED/COMMITTED row and a business cancel that undid nothing", and never "a
 *    business try after a recorded cancel".
 *  - confirm / cancel read the row with SELECT ... FOR UPDATE. A second delivery of the same
 *    phase 2 blocks on the row lock until the first commits; READ COMMITTED then re-evaluates the
 *    locked row's newest version, sees the end state and does nothing: the hook runs once.
 *    The status change is also a compare-and-set (WHERE status = TRIED), as in Seata.
 *    FOR UPDATE does not wait for a row it cannot see: a confirm that arrives while its try's
 *    TRIED insert is still uncommitted finds no row, and fence.c answers SINTER_EBUSY (retry)
 *    without writing anything, so the try is not blocked and the redelivery confirms it.
 *  - Under REPEATABLE READ or SERIALIZABLE sessions the same races surface as serialization
 *    failures (SQLSTATE 40001); deadlocks (40P01, e.g. between business hooks), lock timeouts
 *    (55P03) and statement timeouts (57014) likewise: the transaction is rolled back and
 *    SINTER_EBUSY tells the caller to retry (the coordinator redelivers phase 2).
 *    Classification is by SQLSTATE only, never by message text, which is translated
 *    (lc_messages).
 *
 * Parameters are always bound (PQexecParams, text format); no data is ever spliced into SQL.
 * Times are the server's now() (the transaction's start).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fence_backend.h"
#include "rm/fence_sql.h"
#include "sinter/error.h"

/* Records libpq's message for a failed command and classifies it by SQLSTATE. Frees r. */
static int fail(PGconn *c, PGresult *r, const char *what)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r != NULL ? PQresultErrorMessage(r) : NULL;
    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(c);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    sinter_fence_set_errmsg("postgres: %s: %.*s%s%s%s", what, (int)n, msg,
                            state != NULL ? " (SQLSTATE " : "", state != NULL ? state : "",
                            state != NULL ? ")" : "");
    int rc = SINTER_EDB;
    if (state != NULL && (strcmp(state, "40001") == 0 || /* serialization_failure */
                          strcmp(state, "40P01") == 0 || /* deadlock_detected */
                          strcmp(state, "55P03") == 0 || /* lock_not_available */
                          strcmp(state, "57014") == 0))  /* query_canceled: statement_timeout */
        rc = SINTER_EBUSY;
    PQclear(r);
    return rc;
}

/* Runs one statement with text parameters; *out gets the result on success (caller clears). */
static int run(PGconn *c, const char *sql, int n, const char *const *params, const char *what,
               ExecStatusType want, PGresult **out)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (r == NULL || PQresultStatus(r) != want)
        return fail(c, r, what);
    if (out != NULL)
        *out = r;
    else
        PQclear(r);
    return SINTER_OK;
}

static int pg_in_txn(const struct sinter_fence_db *d)
{
    PGTransactionStatusType t = PQtransactionStatus(d->pg);
    /* PQTRANS_UNKNOWN (connection lost) is not "inside a transaction": BEGIN will report it. */
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static int pg_txn_ok(const struct sinter_fence_db *d)
{
    switch (PQtransactionStatus(d->pg)) {
    case PQTRANS_INTRANS:
        return SINTER_OK;
    case PQTRANS_INERROR:
        /* COMMIT would silently turn into ROLLBACK: refuse to report success. */
        sinter_fence_set_errmsg("a statement of the hook failed and aborted the transaction, "
                                "but the hook returned 0: %s",
                                PQerrorMessage(d->pg));
        return SINTER_EDB;
    case PQTRANS_IDLE:
        sinter_fence_set_errmsg("the hook ended the fence's transaction (it must not commit or "
                                "roll back)");
        /* EDB, not ESTATE: a broken hook is no verdict on the branch's fence row, and the
         * row's state is unknown here; a retry reads it again (sinter/fence.h). */
        return SINTER_EDB;
    default:
        sinter_fence_set_errmsg("postgres: connection not usable after the hook: %s",
                                PQerrorMessage(d->pg));
        return SINTER_EDB;
    }
}

static int pg_begin(const struct sinter_fence_db *d)
{
    return run(d->pg, "BEGIN", 0, NULL, "begin", PGRES_COMMAND_OK, NULL);
}

static void pg_rollback(const struct sinter_fence_db *d)
{
    if (PQtransactionStatus(d->pg) != PQTRANS_IDLE)
        PQclear(PQexec(d->pg, "ROLLBACK"));
}

static int pg_commit(const struct sinter_fence_db *d)
{
    PGresult *r = NULL;
    int rc = run(d->pg, "COMMIT", 0, NULL, "commit", PGRES_COMMAND_OK, &r);
    if (rc == SINTER_OK) {
        /* An aborted transaction "commits" as ROLLBACK without an error: catch it. */
        if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
            sinter_fence_set_errmsg("postgres: commit: the transaction was rolled back (%s)",
                                    PQcmdStatus(r));
            rc = SINTER_EDB;
        }
        PQclear(r);
    }
    if (rc != SINTER_OK)
        pg_rollback(d);
    return rc;
}

static int select_status(PGconn *c, const char *sql, const char *xid, uint64_t branch_id,
                         int *status)
{
    char b[24];
    snprintf(b, sizeof b, "%" PRIu64, branch_id);
    const char *p[2] = {xid, b};
    PGresult *r = NULL;
    int rc = run(c, sql, 2, p, "select fence row", PGRES_TUPLES_OK, &r);
    if (rc != SINTER_OK)
        return rc;
    *status = PQntuples(r) > 0 ? atoi(PQgetvalue(r, 0, 0)) : SINTER_FENCE_NONE;
    PQclear(r);
    return SINTER_OK;
}

static int pg_lock_row(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                       int *status)
{
    return select_status(d->pg,
                         "SELECT status FROM sinter_tcc_fence WHERE xid = $1 AND branch_id = $2 "
                         "FOR UPDATE",
                         xid, branch_id, status);
}

static int pg_read_status(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                          int *status)
{
    return select_status(d->pg,
                         "SELECT status FROM sinter_tcc_fence WHERE xid = $1 AND branch_id = $2",
                         xid, branch_id, status);
}

static int pg_insert(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                     const char *action, int status, int *inserted)
{
    char b[24], s[8];
    snprintf(b, sizeof b, "%" PRIu64, branch_id);
    snprintf(s, sizeof s, "%d", status);
    const char *p[4] = {xid, b, action, s};
    PGresult *r = NULL;
    /* Waits for a concurrent uncommitted insert of the same key, then inserts or does nothing:
     * see the file comment. The conflict target names the key so that any other unique
     * violation would still be an error. */
    int rc = run(d->pg,
                 "INSERT INTO sinter_tcc_fence (xid, branch_id, action_name, status) "
                 "VALUES ($1, $2, $3, $4) ON CONFLICT (xid, branch_id) DO NOTHING",
                 4, p, "insert fence row", PGRES_COMMAND_OK, &r);
    if (rc != SINTER_OK)
        return rc;
    *inserted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return SINTER_OK;
}

static int pg_set_status(const struct sinter_fence_db *d, const char *xid, uint64_t branch_id,
                         int from, int to, int *changed)
{
    char b[24], f[8], t[8];
    snprintf(b, sizeof b, "%" PRIu64, branch_id);
    snprintf(f, sizeof f, "%d", from);
    snprintf(t, sizeof t, "%d", to);
    const char *p[4] = {xid, b, t, f};
    PGresult *r = NULL;
    int rc = run(d->pg,
                 "UPDATE sinter_tcc_fence SET status = $3, modified_at = now() "
                 "WHERE xid = $1 AND branch_id = $2 AND status = $4",
                 4, p, "update fence status", PGRES_COMMAND_OK, &r);
    if (rc != SINTER_OK)
        return rc;
    *changed = atoi(PQcmdTuples(r));
    PQclear(r);
    return SINTER_OK;
}

static int pg_cleanup(const struct sinter_fence_db *d, int64_t older_than_ms, uint32_t max_rows,
                      uint32_t *deleted)
{
    char cut[24], lim[16];
    snprintf(cut, sizeof cut, "%" PRId64, older_than_ms);
    snprintf(lim, sizeof lim, "%" PRIu32, max_rows);
    const char *p[2] = {cut, lim};
    PGresult *r = NULL;
    /* One autocommit statement per batch. SKIP LOCKED: a row that a fence call holds (a duplicate
     * confirm reading a COMMITTED row) is left for the next round instead of blocking cleanup
     * behind service traffic. TRIED (1) is never selected. */
    int rc = run(d->pg,
                 "DELETE FROM sinter_tcc_fence WHERE (xid, branch_id) IN ("
                 "SELECT xid, branch_id FROM sinter_tcc_fence "
                 "WHERE status IN (2, 3, 4) "
                 "AND modified_at < 'epoch'::timestamptz + $1::bigint * interval '1 millisecond' "
                 "LIMIT $2::bigint FOR UPDATE SKIP LOCKED)",
                 2, p, "delete ended fence rows", PGRES_COMMAND_OK, &r);
    if (rc != SINTER_OK)
        return rc;
    *deleted = (uint32_t)strtoul(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return SINTER_OK;
}

static int pg_create(const struct sinter_fence_db *d)
{
    PGconn *c = d->pg;
    PGresult *r = NULL;
    /* One transaction for the whole script. SET LOCAL keeps the "relation already exists,
     * skipping" NOTICEs of every later start away from the caller's notice processor (stderr by
     * default) without touching the caller's settings beyond this transaction. The script has no
     * parameters and several statements, so it goes through PQexec (simple query protocol). */
    int rc = run(c, "BEGIN", 0, NULL, "begin", PGRES_COMMAND_OK, NULL);
    if (rc == SINTER_OK)
        rc = run(c, "SET LOCAL client_min_messages = warning", 0, NULL, "set", PGRES_COMMAND_OK,
                 NULL);
    if (rc == SINTER_OK) {
        r = PQexec(c, sinter_fence_postgres_sql);
        if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *st = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
            /* Two services creating the table at the same moment: IF NOT EXISTS is not atomic
             * in PostgreSQL, the loser gets unique_violation (23505, on the catalog) or
             * duplicate_table (42P07). The table exists then: go on to the column check. */
            if (st != NULL && (strcmp(st, "23505") == 0 || strcmp(st, "42P07") == 0))
                PQclear(r);
            else
                rc = fail(c, r, "create fence table");
        } else {
            PQclear(r);
        }
    }
    if (rc == SINTER_OK && PQtransactionStatus(c) == PQTRANS_INTRANS)
        rc = pg_commit(d);
    pg_rollback(d);
    return rc;
}

static int pg_columns(const struct sinter_fence_db *d, unsigned *found)
{
    const char *p[1] = {"sinter_tcc_fence"};
    PGresult *r = NULL;
    int rc = run(d->pg,
                 "SELECT column_name FROM information_schema.columns "
                 "WHERE table_schema = current_schema() AND table_name = $1",
                 1, p, "read fence table columns", PGRES_TUPLES_OK, &r);
    if (rc != SINTER_OK)
        return rc;
    *found = 0;
    for (int i = 0; i < PQntuples(r); i++)
        *found |= sinter_fence_column_bit(PQgetvalue(r, i, 0));
    PQclear(r);
    return SINTER_OK;
}

const struct sinter_fence_ops sinter_fence_ops_pg = {
    .create = pg_create,
    .columns = pg_columns,
    .in_txn = pg_in_txn,
    .txn_ok = pg_txn_ok,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .lock_row = pg_lock_row,
    .insert = pg_insert,
    .set_status = pg_set_status,
    .read_status = pg_read_status,
    .cleanup = pg_cleanup,
};
