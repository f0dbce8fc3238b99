/*
 * The coordinator's transaction state machine over SQLite (see tc/fsm.h for the contract).
 *
 * Rules, and the Seata behaviour each follows (io.seata.server.coordinator.DefaultCore and
 * AbstractCore, io.seata.server.session.GlobalSession):
 *
 * BEGIN            creates the global in Begin; xid = {group, entry index}; begin time and the
 *                  deadline (begin + timeout) come from the leader's now_ms in the command.
 * REGISTER_BRANCH  only while the global is Begin (Seata's AbstractCore.globalSessionStatusCheck
 *                  refuses with GlobalTransactionStatusInvalid, "... while expecting Begin");
 *                  a late register -> ESTATE with the global's current status.
 * REPORT_BRANCH    phase-one result (PhaseOne_Done / PhaseOne_Failed) of a Registered branch while
 *                  Begin (Seata's branchReport); repeating the recorded status is accepted.
 * DECIDE           the only way out of Begin. Commit from Begin -> Committing; a repeated commit
 *                  on the commit side returns the current status (Seata's commit() returns
 *                  globalSession.getStatus() when not Begin); rollback likewise on the rollback
 *                  side. Asking for the other side -> ESTATE with the current status, so the
 *                  commit side never reaches the rollback side. A timeout decision re-checks the
 *                  deadline with the leader's now (Seata's isTimeout(): now - begin > timeout).
 *                  A commit is refused (ESTATE, the global stays Begin) while any branch reported
 *                  PhaseOne_Failed: the TM must roll back, so the global keeps one atomic
 *                  outcome. Seata differs: its commit() accepts and doGlobalCommit drops the
 *                  PhaseOne_Failed branch and commits the others. Registered branches that never
 *                  reported do not block a commit (a TCC try need not report).
 *                  If no branch needs phase 2 the global settles at once (Seata ends a global
 *                  with no branches as Committed / Rollbacked in the same call).
 * BRANCH_RESULTS   n (1..64) outcomes in one entry (the outcomes of one Phase2ReportBatch for this
 *                  group), each applied as its own BRANCH_RESULT, in order (do_branch_results).
 * BRANCH_RESULT    records one phase-2 outcome. Like Seata's doGlobalCommit / doGlobalRollback:
 *                  PhaseTwo_Committed / _Rollbacked is done; *_Retryable moves the global to
 *                  CommitRetrying / RollbackRetrying / TimeoutRollbackRetrying (queueToRetry*);
 *                  *_Unretryable makes the global fail. Unlike Seata, which stops at the first
 *                  unretryable branch, the global keeps being driven until every branch has an
 *                  end, so the other branches still release their resources; it then settles to
 *                  CommitFailed / RollbackFailed / TimeoutRollbackFailed. Every branch without a
 *                  phase-2 end needs a delivery, PhaseOne_Failed and Registered ones included;
 *                  on the rollback side the global settles only when each branch has a rollback
 *                  result. Seata differs: doGlobalRollback removes PhaseOne_Failed branches
 *                  without delivering. But a "failed" phase one may hide a PREPARE or a try whose
 *                  commit outcome is unknown (connection lost during COMMIT / PREPARE); the RM
 *                  makes the extra rollback safe (TCC fence: empty rollback; XA: 42704 resolved
 *                  with pg_xact_status), while skipping it could leave a prepared transaction
 *                  or a tried reservation behind. A result equal to the recorded end is accepted
 *                  as done (deduplicated retry); any other result for a branch that already ended
 *                  is refused.
 * RETRY_TIMEOUT    the phase-2 deadline counts from the first phase-2 attempt (PHASE2_START or the
 *                  first BRANCH_RESULT); past it the global ends CommitRetryTimeout or
 *                  RollbackRetryTimeout (Seata's MAX_COMMIT_RETRY_TIMEOUT /
 *                  MAX_ROLLBACK_RETRY_TIMEOUT) and stays for an operator.
 * GC               removes Committed / Rollbacked / TimeoutRollbacked globals whose end time is
 *                  before the cutoff; CommitFailed, RollbackFailed, TimeoutRollbackFailed and
 *                  *RetryTimeout are never removed automatically.
 *
 * Client sessions: a command with a client id and seq first looks up (client id, seq). A stored
 * answer is returned as is (duplicate), refusals included, so a retry gets its first answer. A seq
 * older than the client's window whose answer is gone is refused with ESTALE instead of being
 * applied again. Sessions expire deterministically: by the GC command's session cutoff (leader time
 * carried in the entry) and by the per-client window (SINTER_TC_SESSION_WINDOW seqs). The client
 * row (highest seq, floor) is what refuses a forgotten seq, so GC keeps it far longer: only past
 * the GC command's separate client cutoff, only once no answer is left, and never in the pass that
 * raised its floor.
 */
#include "tc/fsm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sinter/crc32c.h"
#include "sinter/error.h"
#include "sinter/types.h"
#include "tc/command.h"
#include "tc/fsm_vfs.h"
#include "tc/tc_schema_sql.h" /* generated from sql/tc_schema.sql: sinter_tc_schema_sql[] */

#define SCHEMA_VERSION 1

/* ---- prepared statements ---- */

enum st_id {
    ST_TX_BEGIN,
    ST_TX_COMMIT,
    ST_TX_ROLLBACK,
    ST_META_GET,
    ST_META_SET,
    ST_G_GET,
    ST_G_INSERT,
    ST_G_DECIDE,
    ST_G_SET_STATUS,
    ST_G_SET_P2FIRST,
    ST_G_DELETE,
    ST_B_GET,
    ST_B_INSERT,
    ST_B_SET_STATUS,
    ST_B_SET_APP_DATA,
    ST_B_SET_XA_INFO,
    ST_B_RESULT,
    ST_B_SUMMARY,
    ST_B_REDRIVE,
    ST_B_DELETE_XID,
    ST_GC_GLOBALS,
    ST_S_GET,
    ST_S_INSERT,
    ST_S_PRUNE,
    ST_S_DELETE,
    ST_GC_SESSIONS,
    ST_C_GET,
    ST_C_UPSERT,
    ST_C_FLOOR,
    ST_GC_CLIENTS,
    ST_Q_GLOBAL,
    ST_Q_BRANCHES,
    ST_Q_LIST_STATUS,
    ST_Q_LIST_TIMED_OUT,
    ST_Q_LIST_PHASE2,
    ST_Q_COUNTS,
    ST_COUNT
};

static const char *const st_sql[ST_COUNT] = {
    /* Every applied batch is one transaction: cached like the rest, so a batch does not parse
     * BEGIN / COMMIT again through sqlite3_exec (a prepare, a step and a finalize each). */
    [ST_TX_BEGIN] = "BEGIN IMMEDIATE",
    [ST_TX_COMMIT] = "COMMIT",
    [ST_TX_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_G_GET] = "SELECT status, decision, deadline_ms, phase2_first_ms FROM globals "
                 "WHERE xid_index = ?1",
    [ST_G_INSERT] = "INSERT INTO globals(xid_index, status, decision, app_id, tx_name, client_id, "
                    "timeout_ms, begin_ms, deadline_ms, app_data) "
                    "VALUES(?1, 1, 0, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_G_DECIDE] = "UPDATE globals SET status = ?2, decision = ?2, decided_ms = ?3 "
                    "WHERE xid_index = ?1",
    [ST_G_SET_STATUS] = "UPDATE globals SET status = ?2, end_ms = ?3 WHERE xid_index = ?1",
    [ST_G_SET_P2FIRST] = "UPDATE globals SET phase2_first_ms = ?2 WHERE xid_index = ?1",
    [ST_G_DELETE] = "DELETE FROM globals WHERE xid_index = ?1",
    [ST_B_GET] = "SELECT xid_index, status FROM branches WHERE branch_id = ?1",
    [ST_B_INSERT] = "INSERT INTO branches(branch_id, xid_index, branch_type, resource_id, "
                    "client_id, status, app_data, xa_info, register_ms) "
                    "VALUES(?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8)",
    [ST_B_SET_STATUS] = "UPDATE branches SET status = ?2 WHERE branch_id = ?1",
    [ST_B_SET_APP_DATA] = "UPDATE branches SET app_data = ?2 WHERE branch_id = ?1",
    [ST_B_SET_XA_INFO] = "UPDATE branches SET xa_info = ?2 WHERE branch_id = ?1",
    [ST_B_RESULT] = "UPDATE branches SET status = ?2, phase2_results = phase2_results + 1, "
                    "last_result_ms = ?3 WHERE branch_id = ?1",
    /* The statuses of a global's branches, which branch_summary counts (pending, failed,
     * PhaseOne_Failed). Counted in C rather than with sum(...) in SQL: the aggregate's VDBE
     * program cost about as much again as the rows' lookups, and this runs for every commit
     * decision and every phase-2 outcome. */
    [ST_B_SUMMARY] = "SELECT status FROM branches WHERE xid_index = ?1",
    [ST_B_REDRIVE] = "UPDATE branches SET status = ?3 WHERE xid_index = ?1 AND status = ?2",
    [ST_B_DELETE_XID] = "DELETE FROM branches WHERE xid_index = ?1",
    /* INDEXED BY: without statistics the planner prefers globals_status (status = ?) and sorts
     * every finished global in a temporary b-tree (EXPLAIN QUERY PLAN), a cost growing with the
     * retention on every replica's apply path; globals_ended yields the same rows already in
     * order. The status condition is the index's own expression, spelled the same way: SQLite
     * uses a partial index only for a WHERE that contains its condition (it would not see that
     * IN (9, 11, 13) implies the OR). The result does not depend on the plan (ORDER BY names a
     * unique key). */
    [ST_GC_GLOBALS] = "SELECT xid_index FROM globals INDEXED BY globals_ended "
                      "WHERE (status = 9 OR status = 11 OR status = 13) AND end_ms < ?1 "
                      "ORDER BY end_ms, xid_index LIMIT ?2",
    [ST_S_GET] = "SELECT body_crc, rc, status, branch_status, xid_index, branch_id FROM sessions "
                 "WHERE client_id = ?1 AND seq = ?2",
    [ST_S_INSERT] = "INSERT INTO sessions(client_id, seq, body_crc, rc, status, branch_status, "
                    "xid_index, branch_id, created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_S_PRUNE] = "DELETE FROM sessions WHERE client_id = ?1 AND seq <= ?2",
    [ST_S_DELETE] = "DELETE FROM sessions WHERE client_id = ?1 AND seq = ?2",
    [ST_GC_SESSIONS] = "SELECT client_id, seq FROM sessions WHERE created_ms < ?1 "
                       "ORDER BY created_ms, client_id, seq LIMIT ?2",
    [ST_C_GET] = "SELECT max_seq, floor_seq FROM clients WHERE client_id = ?1",
    [ST_C_UPSERT] = "INSERT INTO clients(client_id, max_seq, floor_seq, last_seen_ms) "
                    "VALUES(?1, ?2, 0, ?3) ON CONFLICT(client_id) DO UPDATE SET "
                    "max_seq = max(max_seq, excluded.max_seq), "
                    "last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
    [ST_C_FLOOR] = "UPDATE clients SET floor_seq = max(floor_seq, ?2) WHERE client_id = ?1",
    /* Run before the pass removes any answer (do_gc), so a client whose floor this pass raises
     * still holds that answer here and is never forgotten in the same pass. */
    [ST_GC_CLIENTS] = "DELETE FROM clients WHERE client_id IN (SELECT c.client_id FROM clients c "
                      "WHERE c.last_seen_ms < ?1 AND NOT EXISTS (SELECT 1 FROM sessions s "
                      "WHERE s.client_id = c.client_id) "
                      "ORDER BY c.last_seen_ms, c.client_id LIMIT ?2)",
    [ST_Q_GLOBAL] = "SELECT status, decision, app_id, tx_name, client_id, timeout_ms, begin_ms, "
                    "deadline_ms, decided_ms, phase2_first_ms, end_ms, app_data FROM globals "
                    "WHERE xid_index = ?1",
    [ST_Q_BRANCHES] = "SELECT branch_id, branch_type, status, resource_id, client_id, "
                      "register_ms, phase2_results, last_result_ms, app_data, xa_info "
                      "FROM branches WHERE xid_index = ?1 ORDER BY branch_id",
    [ST_Q_LIST_STATUS] = "SELECT xid_index FROM globals WHERE status = ?1 AND xid_index > ?2 "
                         "ORDER BY xid_index LIMIT ?3",
    [ST_Q_LIST_TIMED_OUT] = "SELECT xid_index FROM globals WHERE status = 1 AND deadline_ms < ?1 "
                            "ORDER BY deadline_ms, xid_index LIMIT ?2",
    [ST_Q_LIST_PHASE2] = "SELECT xid_index FROM globals WHERE status IN (2, 3, 4, 5, 6, 7) "
                         "AND xid_index > ?1 ORDER BY xid_index LIMIT ?2",
    [ST_Q_COUNTS] = "SELECT status, count(*) FROM globals GROUP BY status ORDER BY status",
};

struct sinter_tc_fsm {
    sqlite3 *db; /* NULL after a failed install: every call then fails with SINTER_EDB */
    char *path;
    uint32_t group;
    uint64_t last_applied;
    uint64_t last_term;
    sqlite3_stmt *st[ST_COUNT];
    char errmsg[512]; /* the last install error (sinter_tc_fsm_errmsg) */
    /* The outcomes' results of the BRANCH_RESULTS entries in the last applied batch, in entry
     * order; each such entry's result points at its slice (sinter_tc_result.sub). */
    struct sinter_tc_result *sub;
    size_t n_sub, cap_sub;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
set_err(struct sinter_tc_fsm *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->errmsg, sizeof f->errmsg, fmt, ap);
    va_end(ap);
}

const char *sinter_tc_fsm_errmsg(const struct sinter_tc_fsm *fsm)
{
    return fsm != NULL ? fsm->errmsg : "";
}

/* ---- SQLite helpers ---- */

static int map_sqlite(int src)
{
    switch (src & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return SINTER_OK;
    case SQLITE_NOMEM:
        return SINTER_ENOMEM;
    case SQLITE_FULL:
        return SINTER_ENOSPC;
    case SQLITE_IOERR:
        return SINTER_EIO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return SINTER_ECORRUPT;
    default:
        return SINTER_EDB;
    }
}

/* Returns the cached statement id, reset and with bindings cleared, or NULL (rc set). */
static sqlite3_stmt *stmt(struct sinter_tc_fsm *f, enum st_id id, int *rc)
{
    if (f->db == NULL) {
        *rc = SINTER_EDB;
        return NULL;
    }
    if (f->st[id] == NULL) {
        int src =
            sqlite3_prepare_v3(f->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &f->st[id], NULL);
        if (src != SQLITE_OK) {
            *rc = map_sqlite(src);
            f->st[id] = NULL;
            return NULL;
        }
    } else {
        sqlite3_reset(f->st[id]);
        sqlite3_clear_bindings(f->st[id]);
    }
    *rc = SINTER_OK;
    return f->st[id];
}

static void finalize_all(struct sinter_tc_fsm *f)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(f->st[i]);
        f->st[i] = NULL;
    }
}

static int bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
    return sqlite3_bind_int64(s, i, (sqlite3_int64)v);
}

/* Ids and names are stored as TEXT; BINARY collation compares bytes, so any byte string works. */
static int bind_text(sqlite3_stmt *s, int i, const struct sinter_tc_bytes *b)
{
    return sqlite3_bind_text(s, i, b->len > 0 ? (const char *)b->p : "", (int)b->len,
                             SQLITE_STATIC);
}

static int bind_blob(sqlite3_stmt *s, int i, const struct sinter_tc_bytes *b)
{
    /* Zero-length blobs are stored as X'' (never NULL) so the NOT NULL columns hold. */
    return sqlite3_bind_blob(s, i, b->len > 0 ? (const void *)b->p : "", (int)b->len,
                             SQLITE_STATIC);
}

/* Runs a statement that returns no rows. */
static int run(sqlite3_stmt *s)
{
    int src = sqlite3_step(s);
    int rc = src == SQLITE_DONE ? SINTER_OK : map_sqlite(src);
    if (src == SQLITE_ROW) {
        rc = SINTER_EINTERNAL;
    }
    sqlite3_reset(s);
    return rc;
}

/* Steps a query: 1 = a row is ready, 0 = done, -1 = error (rc set). */
static int next_row(sqlite3_stmt *s, int *rc)
{
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        return 1;
    }
    if (src == SQLITE_DONE) {
        return 0;
    }
    *rc = map_sqlite(src);
    return -1;
}

static uint64_t col_u64(sqlite3_stmt *s, int i)
{
    return (uint64_t)sqlite3_column_int64(s, i);
}

static uint32_t col_u32(sqlite3_stmt *s, int i)
{
    return (uint32_t)sqlite3_column_int64(s, i);
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    return map_sqlite(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != SINTER_OK) {                                                                    \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

#define BINDS(x)                                                                                   \
    do {                                                                                           \
        if ((x) != SQLITE_OK) {                                                                    \
            return SINTER_EDB;                                                                     \
        }                                                                                          \
    } while (0)

static int meta_get(struct sinter_tc_fsm *f, const char *key, uint64_t *v, bool *found)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_META_GET, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC));
    int r = next_row(s, &rc);
    if (r < 0) {
        return rc;
    }
    *found = r == 1;
    *v = r == 1 ? col_u64(s, 0) : 0;
    sqlite3_reset(s);
    return SINTER_OK;
}

/* Runs one of the cached transaction statements (ST_TX_*). */
static int tx(struct sinter_tc_fsm *f, enum st_id id)
{
    int rc;
    sqlite3_stmt *s = stmt(f, id, &rc);
    if (s == NULL) {
        return rc;
    }
    return run(s);
}

static int meta_set(struct sinter_tc_fsm *f, const char *key, uint64_t v)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_META_SET, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC));
    BINDS(bind_u64(s, 2, v));
    return run(s);
}

/* ---- open / close ---- */

/* The retention GC's partial index as sql/tc_schema.sql creates it, for open_db to add to a file
 * of a version that had globals_gc, its IN (9, 11, 13) spelling. test_tc_fsm's
 * previous_index_set_opens checks that the two definitions are the same. */
#define GLOBALS_ENDED_SQL                                                                          \
    "CREATE INDEX IF NOT EXISTS globals_ended ON globals (end_ms, xid_index) "                     \
    "WHERE status = 9 OR status = 11 OR status = 13"

/* *found: the database has an index called name. */
static int has_index(sqlite3 *db, const char *name, bool *found)
{
    sqlite3_stmt *q = NULL;
    int src = sqlite3_prepare_v2(
        db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?1", -1, &q, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    }
    if (src == SQLITE_OK) {
        src = sqlite3_step(q);
    }
    *found = src == SQLITE_ROW && sqlite3_column_int64(q, 0) > 0;
    sqlite3_finalize(q);
    return src == SQLITE_ROW ? SINTER_OK : map_sqlite(src);
}

/* Opens f->path into f->db and loads meta, creating the schema on a new database. */
static int open_db(struct sinter_tc_fsm *f)
{
    /* The apply connection gathers each commit's WAL frames into one write (tc/fsm_vfs.c); the
     * other connections (snapshot source, validation) only read and use the default VFS. */
    int src = sqlite3_open_v2(f->path, &f->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                              sinter_tc_fsm_vfs());
    if (src != SQLITE_OK) {
        sqlite3_close(f->db);
        f->db = NULL;
        return map_sqlite(src);
    }
    sqlite3_extended_result_codes(f->db, 0);
    /* WAL: readers (queries, the snapshot connection) never block apply and apply never blocks
     * them. synchronous=NORMAL: a commit is not fsynced, only the WAL before each checkpoint, so a
     * power loss can lose the last applied batches but never corrupts the file. That is enough
     * because the raft log, fsynced before anything is acknowledged, is the durable source of
     * truth: on restart the host re-applies the entries after last_applied_index, which was
     * written in the same SQLite transaction as their changes, so nothing is applied twice or
     * missed. The host must only compact its log up to a durable snapshot
     * (sinter_tc_fsm_snapshot_to fsyncs), never up to an unsynced applied index. */
    int rc = exec_sql(f->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                             "PRAGMA foreign_keys=OFF; PRAGMA busy_timeout=5000");
    if (rc != SINTER_OK) {
        return rc;
    }
    sqlite3_stmt *q = NULL;
    src = sqlite3_prepare_v2(f->db, "SELECT count(*) FROM sqlite_schema WHERE name = 'meta'", -1,
                             &q, NULL);
    if (src != SQLITE_OK) {
        return map_sqlite(src);
    }
    src = sqlite3_step(q);
    int64_t has_meta = src == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    if (has_meta < 0) {
        return map_sqlite(src);
    }
    if (has_meta == 0) {
        CHECK(exec_sql(f->db, "BEGIN IMMEDIATE"));
        rc = exec_sql(f->db, sinter_tc_schema_sql);
        if (rc == SINTER_OK) {
            rc = meta_set(f, "schema_version", SCHEMA_VERSION);
        }
        if (rc == SINTER_OK) {
            rc = meta_set(f, "group_id", f->group);
        }
        if (rc == SINTER_OK) {
            rc = meta_set(f, "last_applied_index", 0);
        }
        if (rc == SINTER_OK) {
            rc = meta_set(f, "last_applied_term", 0);
        }
        if (rc == SINTER_OK) {
            rc = exec_sql(f->db, "COMMIT");
        }
        if (rc != SINTER_OK) {
            exec_sql(f->db, "ROLLBACK");
            return rc;
        }
    }
    uint64_t version = 0;
    uint64_t group = 0;
    bool found_v = false;
    bool found_g = false;
    bool found_i = false;
    bool found_t = false;
    CHECK(meta_get(f, "schema_version", &version, &found_v));
    CHECK(meta_get(f, "group_id", &group, &found_g));
    CHECK(meta_get(f, "last_applied_index", &f->last_applied, &found_i));
    CHECK(meta_get(f, "last_applied_term", &f->last_term, &found_t));
    if (!found_v || !found_g || !found_i || !found_t || version != SCHEMA_VERSION) {
        return SINTER_ECORRUPT;
    }
    if (group != f->group) {
        return SINTER_ECONFIG;
    }
    /* Indexes of an older file that this version no longer keeps, and the ones it added
     * (sql/tc_schema.sql): an index changes no row, so a data directory or snapshot of the
     * previous version opens with the same state (digest) and only its index set brought up to
     * date. Only once the file is known to be this group's state; one transaction, so a crash
     * leaves the old or the new set (and the next open finishes the job either way). */
    bool has_ended = false;
    CHECK(has_index(f->db, "globals_ended", &has_ended));
    bool has_deadline = false;
    CHECK(has_index(f->db, "globals_begin_deadline", &has_deadline));
    bool has_gc = false;
    CHECK(has_index(f->db, "globals_gc", &has_gc));
    if (has_ended && !has_deadline && !has_gc) {
        return SINTER_OK;
    }
    CHECK(exec_sql(f->db, "BEGIN IMMEDIATE"));
    rc = exec_sql(f->db, "DROP INDEX IF EXISTS globals_begin_deadline; "
                         "DROP INDEX IF EXISTS globals_gc; " GLOBALS_ENDED_SQL "; COMMIT");
    if (rc != SINTER_OK && !sqlite3_get_autocommit(f->db)) {
        exec_sql(f->db, "ROLLBACK");
    }
    return rc;
}

static void close_db(struct sinter_tc_fsm *f)
{
    finalize_all(f);
    if (f->db != NULL) {
        sqlite3_close(f->db);
        f->db = NULL;
    }
}

int sinter_tc_fsm_open(struct sinter_tc_fsm **out, const char *path, uint32_t group)
{
    if (out == NULL || path == NULL) {
        return SINTER_EINVAL;
    }
    *out = NULL;
    struct sinter_tc_fsm *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return SINTER_ENOMEM;
    }
    f->path = strdup(path);
    if (f->path == NULL) {
        free(f);
        return SINTER_ENOMEM;
    }
    f->group = group;
    int rc = open_db(f);
    if (rc != SINTER_OK) {
        sinter_tc_fsm_close(f);
        return rc;
    }
    *out = f;
    return SINTER_OK;
}

void sinter_tc_fsm_close(struct sinter_tc_fsm *fsm)
{
    if (fsm == NULL) {
        return;
    }
    close_db(fsm);
    free(fsm->sub);
    free(fsm->path);
    free(fsm);
}

uint32_t sinter_tc_fsm_group(const struct sinter_tc_fsm *fsm)
{
    return fsm->group;
}

uint64_t sinter_tc_fsm_last_applied(const struct sinter_tc_fsm *fsm)
{
    return fsm->last_applied;
}

uint64_t sinter_tc_fsm_last_applied_term(const struct sinter_tc_fsm *fsm)
{
    return fsm->last_term;
}

/* ---- state helpers ---- */

struct gstate {
    uint64_t xid_index;
    uint32_t status;
    uint32_t decision;
    uint64_t deadline_ms;
    uint64_t phase2_first_ms;
};

/* Loads a global; *found false when unknown (including another group's xid). */
static int load_global(struct sinter_tc_fsm *f, const struct sinter_xid *xid, struct gstate *g,
                       bool *found)
{
    *found = false;
    if (xid->group != f->group) {
        return SINTER_OK;
    }
    int rc;
    sqlite3_stmt *s = stmt(f, ST_G_GET, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, xid->index));
    int r = next_row(s, &rc);
    if (r < 0) {
        return rc;
    }
    if (r == 1) {
        *found = true;
        g->xid_index = xid->index;
        g->status = col_u32(s, 0);
        g->decision = col_u32(s, 1);
        g->deadline_ms = col_u64(s, 2);
        g->phase2_first_ms = col_u64(s, 3);
    }
    sqlite3_reset(s);
    return SINTER_OK;
}

/* Loads a branch of global xid_index; *found false when unknown or owned by another global. */
static int load_branch(struct sinter_tc_fsm *f, uint64_t xid_index, uint64_t branch_id,
                       uint32_t *status, bool *found)
{
    *found = false;
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_GET, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, branch_id));
    int r = next_row(s, &rc);
    if (r < 0) {
        return rc;
    }
    if (r == 1 && col_u64(s, 0) == xid_index) {
        *found = true;
        *status = col_u32(s, 1);
    }
    sqlite3_reset(s);
    return SINTER_OK;
}

static int set_global_status(struct sinter_tc_fsm *f, struct gstate *g, uint32_t status,
                             uint64_t end_ms)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_G_SET_STATUS, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, g->xid_index));
    BINDS(sqlite3_bind_int(s, 2, (int)status));
    BINDS(bind_u64(s, 3, end_ms));
    CHECK(run(s));
    g->status = status;
    return SINTER_OK;
}

static int set_phase2_first(struct sinter_tc_fsm *f, struct gstate *g, uint64_t ms)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_G_SET_P2FIRST, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, g->xid_index));
    BINDS(bind_u64(s, 2, ms));
    CHECK(run(s));
    g->phase2_first_ms = ms;
    return SINTER_OK;
}

struct bsummary {
    uint64_t pending;   /* branches that still need a phase-2 delivery */
    uint64_t failed;    /* branches that ended unretryable */
    uint64_t p1_failed; /* branches that reported PhaseOne_Failed */
};

static int branch_summary(struct sinter_tc_fsm *f, uint64_t xid_index, struct bsummary *sum)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_SUMMARY, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, xid_index));
    memset(sum, 0, sizeof *sum);
    int r;
    while ((r = next_row(s, &rc)) == 1) {
        /* pending: still needs a phase-2 delivery (every status but a phase-2 end: Registered,
         * PhaseOne_Done, PhaseOne_Failed and the retryable failures; branch_needs_phase2);
         * failed: ended unretryable; p1_failed: reported PhaseOne_Failed (a commit is
         * refused). Exactly the sets the former SQL aggregate counted. */
        switch (sqlite3_column_int64(s, 0)) {
        case SINTER_BS_REGISTERED:
        case SINTER_BS_PHASE1_DONE:
        case SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE:
        case SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE:
            sum->pending++;
            break;
        case SINTER_BS_PHASE1_FAILED:
            sum->pending++;
            sum->p1_failed++;
            break;
        case SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE:
        case SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE:
            sum->failed++;
            break;
        default:
            break;
        }
    }
    sqlite3_reset(s);
    return r < 0 ? rc : SINTER_OK;
}

/* Decided but not ended: Committing .. TimeoutRollbackRetrying. */
static bool in_phase2(uint32_t s)
{
    return s >= SINTER_GS_COMMITTING && s <= SINTER_GS_TIMEOUT_ROLLBACK_RETRYING;
}

/* Ended by failure: an operator must look; never removed by GC. */
static bool is_failed(uint32_t s)
{
    return s == SINTER_GS_COMMIT_FAILED || s == SINTER_GS_ROLLBACK_FAILED ||
           s == SINTER_GS_TIMEOUT_ROLLBACK_FAILED || s == SINTER_GS_COMMIT_RETRY_TIMEOUT ||
           s == SINTER_GS_ROLLBACK_RETRY_TIMEOUT;
}

/* The end statuses of a decision: success, failure, and the retrying status. */
static uint32_t success_end(uint32_t decision)
{
    switch (decision) {
    case SINTER_GS_COMMITTING:
        return SINTER_GS_COMMITTED;
    case SINTER_GS_ROLLBACKING:
        return SINTER_GS_ROLLBACKED;
    default:
        return SINTER_GS_TIMEOUT_ROLLBACKED;
    }
}

static uint32_t failure_end(uint32_t decision)
{
    switch (decision) {
    case SINTER_GS_COMMITTING:
        return SINTER_GS_COMMIT_FAILED;
    case SINTER_GS_ROLLBACKING:
        return SINTER_GS_ROLLBACK_FAILED;
    default:
        return SINTER_GS_TIMEOUT_ROLLBACK_FAILED;
    }
}

/* Committing -> CommitRetrying, Rollbacking -> RollbackRetrying, TimeoutRollbacking ->
 * TimeoutRollbackRetrying: Seata numbers each retrying status right after its *ing status. */
static uint32_t retrying_of(uint32_t decision)
{
    return decision + 1;
}

static bool outcome_is_commit(uint32_t b)
{
    return b >= SINTER_BS_PHASE2_COMMITTED && b <= SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE;
}

static bool outcome_is_retryable(uint32_t b)
{
    return b == SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE ||
           b == SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
}

/* A branch status that needs no further phase-2 delivery: a phase-2 end. PhaseOne_Failed is not
 * one (see sinter_tc_branch_needs_phase2 in fsm.h); branch_summary counts the same set. */
static bool branch_ended(uint32_t b)
{
    return b == SINTER_BS_PHASE2_COMMITTED || b == SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE ||
           b == SINTER_BS_PHASE2_ROLLBACKED || b == SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE;
}

bool sinter_tc_branch_needs_phase2(uint32_t branch_status)
{
    return sinter_branch_status_valid(branch_status) && !branch_ended(branch_status);
}

/* If every branch of a global in phase 2 has ended, moves it to its end status (failure if any
 * branch ended unretryable). *settled tells whether it moved. */
static int settle_with(struct sinter_tc_fsm *f, struct gstate *g, uint64_t now_ms,
                       const struct bsummary *known, bool *settled)
{
    *settled = false;
    if (!in_phase2(g->status)) {
        return SINTER_OK;
    }
    struct bsummary sum;
    if (known != NULL) {
        sum = *known;
    } else {
        CHECK(branch_summary(f, g->xid_index, &sum));
    }
    /* A PhaseOne_Failed branch counts as pending, so a commit-side global holding one (which
     * DECIDE never lets happen) would stay for an operator rather than end Committed. */
    if (sum.pending > 0) {
        return SINTER_OK;
    }
    *settled = true;
    return set_global_status(
        f, g, sum.failed > 0 ? failure_end(g->decision) : success_end(g->decision), now_ms);
}

static int settle(struct sinter_tc_fsm *f, struct gstate *g, uint64_t now_ms, bool *settled)
{
    return settle_with(f, g, now_ms, NULL, settled);
}

/* ---- command handlers ---- */
/* Each handler validates first and writes only when the command is accepted, so a refusal leaves
 * no trace but its answer. A non-OK return value is an internal failure that aborts the batch. */

static void not_found(struct sinter_tc_result *res)
{
    res->rc = SINTER_ENOTFOUND;
    res->status = SINTER_GS_FINISHED;
}

/* Loads the global a command names and starts its answer the same way for every command:
 * unknown xid -> Finished (Seata's answer for a forgotten or never-issued xid), otherwise
 * res->status is the current status. *ok is false when the command stops there. */
static int load_global_answer(struct sinter_tc_fsm *f, const struct sinter_xid *xid,
                              struct gstate *g, struct sinter_tc_result *res, bool *ok)
{
    bool found;
    *ok = false;
    CHECK(load_global(f, xid, g, &found));
    if (!found) {
        not_found(res);
        return SINTER_OK;
    }
    res->status = g->status;
    *ok = true;
    return SINTER_OK;
}

/* The same for a branch-level command, adding: unknown branch -> SINTER_ENOTFOUND. */
static int load_global_branch(struct sinter_tc_fsm *f, const struct sinter_xid *xid,
                              uint64_t branch_id, struct gstate *g, uint32_t *bs,
                              struct sinter_tc_result *res, bool *ok)
{
    bool found;
    CHECK(load_global_answer(f, xid, g, res, ok));
    if (!*ok) {
        return SINTER_OK;
    }
    *ok = false;
    res->branch_id = branch_id;
    CHECK(load_branch(f, g->xid_index, branch_id, bs, &found));
    if (!found) {
        res->rc = SINTER_ENOTFOUND;
        return SINTER_OK;
    }
    res->branch_status = *bs;
    *ok = true;
    return SINTER_OK;
}

static int do_begin(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c, uint64_t index,
                    struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_begin *b = &c->u.begin;
    int rc;
    sqlite3_stmt *s = stmt(f, ST_G_INSERT, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, index));
    BINDS(bind_text(s, 2, &b->app_id));
    BINDS(bind_text(s, 3, &b->tx_name));
    BINDS(bind_text(s, 4, &c->client_id));
    BINDS(bind_u64(s, 5, b->timeout_ms));
    BINDS(bind_u64(s, 6, c->now_ms));
    BINDS(bind_u64(s, 7, c->now_ms + b->timeout_ms));
    BINDS(bind_blob(s, 8, &b->app_data));
    CHECK(run(s));
    res->status = SINTER_GS_BEGIN;
    res->xid.group = f->group;
    res->xid.index = index;
    return SINTER_OK;
}

static int do_register(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c, uint64_t index,
                       struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_register *r = &c->u.reg;
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &r->xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (g.status != SINTER_GS_BEGIN) {
        res->rc = SINTER_ESTATE; /* late register: the global was decided */
        return SINTER_OK;
    }
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_INSERT, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, index));
    BINDS(bind_u64(s, 2, g.xid_index));
    BINDS(sqlite3_bind_int(s, 3, r->branch_type));
    BINDS(bind_text(s, 4, &r->resource_id));
    BINDS(bind_text(s, 5, &c->client_id));
    BINDS(bind_blob(s, 6, &r->app_data));
    BINDS(bind_blob(s, 7, &r->xa_info));
    BINDS(bind_u64(s, 8, c->now_ms));
    CHECK(run(s));
    res->branch_id = index;
    res->branch_status = SINTER_BS_REGISTERED;
    return SINTER_OK;
}

static int update_branch_blob(struct sinter_tc_fsm *f, enum st_id id, uint64_t branch_id,
                              const struct sinter_tc_bytes *b)
{
    int rc;
    sqlite3_stmt *s = stmt(f, id, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, branch_id));
    BINDS(bind_blob(s, 2, b));
    return run(s);
}

static int do_report(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                     struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_report *p = &c->u.report;
    struct gstate g;
    bool ok;
    uint32_t bs = 0;
    CHECK(load_global_branch(f, &p->xid, p->branch_id, &g, &bs, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (bs == p->status) {
        return SINTER_OK; /* the same report again: already recorded */
    }
    if (g.status != SINTER_GS_BEGIN || bs != SINTER_BS_REGISTERED) {
        res->rc = SINTER_ESTATE;
        return SINTER_OK;
    }
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_SET_STATUS, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, p->branch_id));
    BINDS(sqlite3_bind_int(s, 2, p->status));
    CHECK(run(s));
    if (p->has & SINTER_TC_REPORT_HAS_APP_DATA) {
        CHECK(update_branch_blob(f, ST_B_SET_APP_DATA, p->branch_id, &p->app_data));
    }
    if (p->has & SINTER_TC_REPORT_HAS_XA_INFO) {
        CHECK(update_branch_blob(f, ST_B_SET_XA_INFO, p->branch_id, &p->xa_info));
    }
    res->branch_status = p->status;
    return SINTER_OK;
}

static int do_decide(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                     struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_decide *d = &c->u.decide;
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &d->xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (g.status != SINTER_GS_BEGIN) {
        /* Already decided: the same way again returns the current status (Seata's repeated
         * commit / rollback); the other way is refused, whatever the status now is. */
        bool same;
        switch (d->target) {
        case SINTER_GS_COMMITTING:
            same = g.decision == SINTER_GS_COMMITTING;
            break;
        case SINTER_GS_ROLLBACKING:
            same =
                g.decision == SINTER_GS_ROLLBACKING || g.decision == SINTER_GS_TIMEOUT_ROLLBACKING;
            break;
        default:
            same = g.decision == SINTER_GS_TIMEOUT_ROLLBACKING;
            break;
        }
        res->rc = same ? SINTER_OK : SINTER_ESTATE;
        return SINTER_OK;
    }
    if (d->target == SINTER_GS_TIMEOUT_ROLLBACKING && !(c->now_ms > g.deadline_ms)) {
        res->rc = SINTER_ESTATE; /* not timed out by the leader's clock in this entry */
        return SINTER_OK;
    }
    struct bsummary sum;
    bool have_sum = false;
    if (d->target == SINTER_GS_COMMITTING) {
        /* One atomic outcome: a branch that reported PhaseOne_Failed did not do its part, so the
         * global cannot commit; the TM must roll back (the global stays Begin). Seata instead
         * commits the others and drops the failed branch (DefaultCore.doGlobalCommit removes
         * PhaseOne_Failed branches), which DESIGN.md's atomicity rules out. Registered branches
         * that never reported do not block a commit: a TCC try need not report, and the RM
         * treats a confirm that finds no fence row as retryable. */
        CHECK(branch_summary(f, g.xid_index, &sum));
        if (sum.p1_failed > 0) {
            res->rc = SINTER_ESTATE;
            return SINTER_OK;
        }
        have_sum = true;
    }
    int rc;
    sqlite3_stmt *s = stmt(f, ST_G_DECIDE, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, g.xid_index));
    BINDS(sqlite3_bind_int(s, 2, d->target));
    BINDS(bind_u64(s, 3, c->now_ms));
    CHECK(run(s));
    g.status = d->target;
    g.decision = d->target;
    /* The decision changed no branch: the summary read for the commit check still holds, so
     * settling does not read the branches a second time. */
    bool settled;
    CHECK(settle_with(f, &g, c->now_ms, have_sum ? &sum : NULL, &settled));
    res->status = g.status;
    return SINTER_OK;
}

static int do_phase2_start(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                           struct sinter_tc_result *res)
{
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &c->u.x.xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (!in_phase2(g.status)) {
        res->rc = SINTER_ESTATE;
        return SINTER_OK;
    }
    if (g.phase2_first_ms == 0) {
        CHECK(set_phase2_first(f, &g, c->now_ms));
    }
    return SINTER_OK;
}

/* One phase-2 outcome at the leader's time now_ms: a BRANCH_RESULT, or one outcome of a
 * BRANCH_RESULTS. */
static int apply_result(struct sinter_tc_fsm *f, const struct sinter_tc_cmd_branch_result *b,
                        uint64_t now_ms, struct sinter_tc_result *res)
{
    struct gstate g;
    bool ok;
    uint32_t bs = 0;
    CHECK(load_global_branch(f, &b->xid, b->branch_id, &g, &bs, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    bool commit_outcome = outcome_is_commit(b->outcome);
    if (g.decision == 0 || commit_outcome != (g.decision == SINTER_GS_COMMITTING)) {
        res->rc = SINTER_ESTATE; /* undecided, or an outcome of the other side */
        return SINTER_OK;
    }
    if (branch_ended(bs)) {
        /* A repeat of the recorded end is a deduplicated retry: done. */
        res->rc = bs == b->outcome ? SINTER_OK : SINTER_ESTATE;
        return SINTER_OK;
    }
    /* The branch still needs phase 2. When the global already ended without it (RetryTimeout,
     * or an operator's RESOLVE) this is a delivery that was in flight: the branch outcome is
     * recorded for the operator and the global is left as it is. */
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_RESULT, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, b->branch_id));
    BINDS(sqlite3_bind_int(s, 2, b->outcome));
    BINDS(bind_u64(s, 3, now_ms));
    CHECK(run(s));
    res->branch_status = b->outcome;
    if (!in_phase2(g.status)) {
        return SINTER_OK;
    }
    if (g.phase2_first_ms == 0) {
        CHECK(set_phase2_first(f, &g, b->first_attempt_ms != 0 ? b->first_attempt_ms : now_ms));
    }
    if (outcome_is_retryable(b->outcome) && g.status == g.decision) {
        CHECK(set_global_status(f, &g, retrying_of(g.decision), 0));
    }
    bool settled;
    CHECK(settle(f, &g, now_ms, &settled));
    res->status = g.status;
    return SINTER_OK;
}

static int do_branch_result(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                            struct sinter_tc_result *res)
{
    return apply_result(f, &c->u.result, c->now_ms, res);
}

/* BRANCH_RESULTS: each outcome exactly as its own BRANCH_RESULT would be, in entry order, with
 * the same time: outcome i sees what outcomes 0..i-1 wrote (the batch is one SQLite transaction
 * read through the same connection), so the second branch of a global settles it and a repeated
 * outcome is the deduplicated retry it would be in a later entry. A refused outcome writes
 * nothing (every handler validates before it writes) and does not stop the ones after it. The
 * entry itself is answered SINTER_OK; its outcomes' answers are in res->sub[0..n). */
static int do_branch_results(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                             struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_branch_results *bs = &c->u.results;
    if (f->cap_sub - f->n_sub < bs->n) {
        size_t cap = f->cap_sub > 0 ? f->cap_sub : SINTER_TC_MAX_RESULTS;
        while (cap - f->n_sub < bs->n) {
            cap *= 2;
        }
        struct sinter_tc_result *ns = realloc(f->sub, cap * sizeof *ns);
        if (ns == NULL) {
            return SINTER_ENOMEM;
        }
        f->sub = ns;
        f->cap_sub = cap;
    }
    for (uint32_t i = 0; i < bs->n; i++) {
        struct sinter_tc_result *r = &f->sub[f->n_sub + i];
        memset(r, 0, sizeof *r);
        r->xid = bs->r[i].xid;
        CHECK(apply_result(f, &bs->r[i], c->now_ms, r));
    }
    f->n_sub += bs->n;
    res->n_sub = bs->n; /* res->sub is set once the batch is done (f->sub may still move) */
    return SINTER_OK;
}

static int do_end(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                  struct sinter_tc_result *res)
{
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &c->u.x.xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (sinter_global_status_is_final(g.status)) {
        return SINTER_OK; /* already ended: idempotent */
    }
    if (!in_phase2(g.status)) {
        res->rc = SINTER_ESTATE;
        return SINTER_OK;
    }
    bool settled;
    CHECK(settle(f, &g, c->now_ms, &settled));
    res->status = g.status;
    res->rc = settled ? SINTER_OK : SINTER_ESTATE;
    return SINTER_OK;
}

static int do_retry_timeout(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                            struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_retry_timeout *t = &c->u.retry_timeout;
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &t->xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (g.status == SINTER_GS_COMMIT_RETRY_TIMEOUT ||
        g.status == SINTER_GS_ROLLBACK_RETRY_TIMEOUT) {
        return SINTER_OK;
    }
    /* Not in phase 2, no attempt recorded yet (the deadline counts from the first attempt), or
     * the deadline not passed by this entry's clock. */
    if (!in_phase2(g.status) || g.phase2_first_ms == 0 ||
        !(c->now_ms > g.phase2_first_ms + t->max_retry_ms)) {
        res->rc = SINTER_ESTATE;
        return SINTER_OK;
    }
    CHECK(set_global_status(f, &g,
                            g.decision == SINTER_GS_COMMITTING ? SINTER_GS_COMMIT_RETRY_TIMEOUT
                                                               : SINTER_GS_ROLLBACK_RETRY_TIMEOUT,
                            c->now_ms));
    res->status = g.status;
    return SINTER_OK;
}

static int delete_global(struct sinter_tc_fsm *f, uint64_t xid_index)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_DELETE_XID, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, xid_index));
    CHECK(run(s));
    s = stmt(f, ST_G_DELETE, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, xid_index));
    return run(s);
}

struct session_key {
    char id[SINTER_TC_MAX_CLIENT_ID + 1];
    int len;
    uint64_t seq;
};

static int do_gc(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                 struct sinter_tc_result *res)
{
    const struct sinter_tc_cmd_gc *g = &c->u.gc;
    int rc = SINTER_OK;
    /* Collect first, then delete: never modify a table under an open cursor on it. */
    uint64_t *xids = malloc(sizeof *xids * g->max_items);
    struct session_key *keys = malloc(sizeof *keys * g->max_items);
    size_t nx = 0;
    size_t nk = 0;
    if (xids == NULL || keys == NULL) {
        rc = SINTER_ENOMEM;
        goto out;
    }
    sqlite3_stmt *s = stmt(f, ST_GC_GLOBALS, &rc);
    if (s == NULL) {
        goto out;
    }
    if (bind_u64(s, 1, g->global_cutoff_ms) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, g->max_items) != SQLITE_OK) {
        rc = SINTER_EDB;
        goto out;
    }
    int r;
    while ((r = next_row(s, &rc)) == 1 && nx < g->max_items) {
        xids[nx++] = col_u64(s, 0);
    }
    sqlite3_reset(s);
    if (r < 0) {
        goto out;
    }
    for (size_t i = 0; i < nx && rc == SINTER_OK; i++) {
        rc = delete_global(f, xids[i]);
    }
    if (rc != SINTER_OK) {
        goto out;
    }
    res->removed = nx;

    /* Clients silent since the client cutoff with no answers left are forgotten, their floor with
     * them. This runs before any answer is removed below, so a client whose floor this pass
     * raises still has that answer now and is kept: its floor refuses a retry of the forgotten
     * seq (ESTALE) for at least the client retention, which the decoder keeps >= the session
     * retention. Never forgetting clients would keep that promise forever, but a client row
     * (id <= 128 bytes and three integers) per client process start would then pile up without
     * bound in the state and every snapshot; a client retention far longer than any client's
     * retry horizon bounds it (SINTER_TC_DEFAULT_CLIENT_RETENTION_MS). */
    s = stmt(f, ST_GC_CLIENTS, &rc);
    if (s == NULL) {
        goto out;
    }
    if (bind_u64(s, 1, g->client_cutoff_ms) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, g->max_items) != SQLITE_OK) {
        rc = SINTER_EDB;
        goto out;
    }
    rc = run(s);
    if (rc != SINTER_OK) {
        goto out;
    }
    res->clients_removed = (uint64_t)sqlite3_changes(f->db);

    s = stmt(f, ST_GC_SESSIONS, &rc);
    if (s == NULL) {
        goto out;
    }
    if (bind_u64(s, 1, g->session_cutoff_ms) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, g->max_items) != SQLITE_OK) {
        rc = SINTER_EDB;
        goto out;
    }
    while ((r = next_row(s, &rc)) == 1 && nk < g->max_items) {
        int n = sqlite3_column_bytes(s, 0);
        const unsigned char *t = sqlite3_column_text(s, 0);
        if (t == NULL || n < 0 || n > SINTER_TC_MAX_CLIENT_ID) {
            r = -1;
            rc = SINTER_ECORRUPT;
            break;
        }
        memcpy(keys[nk].id, t, (size_t)n);
        keys[nk].len = n;
        keys[nk].seq = col_u64(s, 1);
        nk++;
    }
    sqlite3_reset(s);
    if (r < 0) {
        goto out;
    }
    for (size_t i = 0; i < nk && rc == SINTER_OK; i++) {
        /* Raise the client's floor first: a retry of a forgotten seq must be refused, never
         * applied a second time. */
        s = stmt(f, ST_C_FLOOR, &rc);
        if (s == NULL) {
            break;
        }
        if (sqlite3_bind_text(s, 1, keys[i].id, keys[i].len, SQLITE_STATIC) != SQLITE_OK ||
            bind_u64(s, 2, keys[i].seq) != SQLITE_OK) {
            rc = SINTER_EDB;
            break;
        }
        rc = run(s);
        if (rc != SINTER_OK) {
            break;
        }
        s = stmt(f, ST_S_DELETE, &rc);
        if (s == NULL) {
            break;
        }
        if (sqlite3_bind_text(s, 1, keys[i].id, keys[i].len, SQLITE_STATIC) != SQLITE_OK ||
            bind_u64(s, 2, keys[i].seq) != SQLITE_OK) {
            rc = SINTER_EDB;
            break;
        }
        rc = run(s);
    }
    if (rc != SINTER_OK) {
        goto out;
    }
    res->sessions_removed = nk;
out:
    free(xids);
    free(keys);
    return rc;
}

static int do_redrive(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                      struct sinter_tc_result *res)
{
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &c->u.x.xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (!is_failed(g.status)) {
        res->rc = SINTER_ESTATE;
        return SINTER_OK;
    }
    /* Back to retrying on the same side; branches that ended unretryable get another chance
     * (the operator fixed the cause); the retry deadline restarts now. */
    uint32_t from = g.decision == SINTER_GS_COMMITTING
                        ? SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE
                        : SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE;
    int rc;
    sqlite3_stmt *s = stmt(f, ST_B_REDRIVE, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, g.xid_index));
    BINDS(sqlite3_bind_int(s, 2, (int)from));
    BINDS(sqlite3_bind_int(s, 3, (int)from - 1)); /* *_Unretryable - 1 = *_Retryable */
    CHECK(run(s));
    CHECK(set_global_status(f, &g, retrying_of(g.decision), 0));
    CHECK(set_phase2_first(f, &g, c->now_ms));
    bool settled;
    CHECK(settle(f, &g, c->now_ms, &settled));
    res->status = g.status;
    return SINTER_OK;
}

static int do_resolve(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                      struct sinter_tc_result *res)
{
    struct gstate g;
    bool ok;
    CHECK(load_global_answer(f, &c->u.resolve.xid, &g, res, &ok));
    if (!ok) {
        return SINTER_OK;
    }
    if (g.status == c->u.resolve.target) {
        return SINTER_OK;
    }
    if (!is_failed(g.status) || c->u.resolve.target != success_end(g.decision)) {
        res->rc = SINTER_ESTATE; /* only a failed global, only to its own side's success */
        return SINTER_OK;
    }
    CHECK(set_global_status(f, &g, c->u.resolve.target, c->now_ms));
    res->status = g.status;
    return SINTER_OK;
}

static const struct sinter_xid *cmd_xid(const struct sinter_tc_cmd *c)
{
    switch (c->type) {
    case SINTER_TC_CMD_REGISTER_BRANCH:
        return &c->u.reg.xid;
    case SINTER_TC_CMD_REPORT_BRANCH:
        return &c->u.report.xid;
    case SINTER_TC_CMD_DECIDE:
        return &c->u.decide.xid;
    case SINTER_TC_CMD_PHASE2_START:
    case SINTER_TC_CMD_END:
    case SINTER_TC_CMD_REDRIVE:
        return &c->u.x.xid;
    case SINTER_TC_CMD_BRANCH_RESULT:
        return &c->u.result.xid;
    case SINTER_TC_CMD_RETRY_TIMEOUT:
        return &c->u.retry_timeout.xid;
    case SINTER_TC_CMD_RESOLVE:
        return &c->u.resolve.xid;
    default:
        return NULL;
    }
}

static int dispatch(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c, uint64_t index,
                    struct sinter_tc_result *res)
{
    const struct sinter_xid *x = cmd_xid(c);
    if (x != NULL) {
        res->xid = *x;
    }
    switch (c->type) {
    case SINTER_TC_CMD_BEGIN:
        return do_begin(f, c, index, res);
    case SINTER_TC_CMD_REGISTER_BRANCH:
        return do_register(f, c, index, res);
    case SINTER_TC_CMD_REPORT_BRANCH:
        return do_report(f, c, res);
    case SINTER_TC_CMD_DECIDE:
        return do_decide(f, c, res);
    case SINTER_TC_CMD_PHASE2_START:
        return do_phase2_start(f, c, res);
    case SINTER_TC_CMD_BRANCH_RESULT:
        return do_branch_result(f, c, res);
    case SINTER_TC_CMD_END:
        return do_end(f, c, res);
    case SINTER_TC_CMD_RETRY_TIMEOUT:
        return do_retry_timeout(f, c, res);
    case SINTER_TC_CMD_GC:
        return do_gc(f, c, res);
    case SINTER_TC_CMD_REDRIVE:
        return do_redrive(f, c, res);
    case SINTER_TC_CMD_RESOLVE:
        return do_resolve(f, c, res);
    case SINTER_TC_CMD_BRANCH_RESULTS:
        return do_branch_results(f, c, res);
    default:
        return SINTER_EINTERNAL; /* the decoder admits no other type */
    }
}

/* ---- client sessions ---- */

/* Looks up (client, seq). *answered: a stored answer was copied into res (or the seq is refused);
 * the command must not be applied. */
static int session_lookup(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                          struct sinter_tc_result *res, bool *answered)
{
    *answered = false;
    int rc;
    sqlite3_stmt *s = stmt(f, ST_S_GET, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_text(s, 1, &c->client_id));
    BINDS(bind_u64(s, 2, c->seq));
    int r = next_row(s, &rc);
    if (r < 0) {
        return rc;
    }
    if (r == 1) {
        *answered = true;
        if (col_u32(s, 0) != c->body_crc) {
            /* Same (client, seq), different request: a client bug; refuse, answer nothing. */
            res->rc = SINTER_EINVAL;
        } else {
            res->rc = sqlite3_column_int(s, 1);
            res->status = col_u32(s, 2);
            res->branch_status = col_u32(s, 3);
            res->xid.index = col_u64(s, 4);
            res->xid.group = res->xid.index != 0 ? f->group : 0;
            res->branch_id = col_u64(s, 5);
            res->duplicate = true;
        }
        sqlite3_reset(s);
        return SINTER_OK;
    }
    sqlite3_reset(s);
    s = stmt(f, ST_C_GET, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_text(s, 1, &c->client_id));
    r = next_row(s, &rc);
    if (r < 0) {
        return rc;
    }
    if (r == 1) {
        uint64_t max_seq = col_u64(s, 0);
        uint64_t floor_seq = col_u64(s, 1);
        if (c->seq <= floor_seq || c->seq + SINTER_TC_SESSION_WINDOW <= max_seq) {
            *answered = true;
            res->rc = SINTER_ESTALE; /* its answer is forgotten; applying it again is unsafe */
        }
    }
    sqlite3_reset(s);
    return SINTER_OK;
}

static int session_record(struct sinter_tc_fsm *f, const struct sinter_tc_cmd *c,
                          const struct sinter_tc_result *res)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_S_INSERT, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_text(s, 1, &c->client_id));
    BINDS(bind_u64(s, 2, c->seq));
    BINDS(bind_u64(s, 3, c->body_crc));
    BINDS(sqlite3_bind_int(s, 4, res->rc));
    BINDS(sqlite3_bind_int64(s, 5, res->status));
    BINDS(sqlite3_bind_int64(s, 6, res->branch_status));
    BINDS(bind_u64(s, 7, res->xid.group == f->group ? res->xid.index : 0));
    BINDS(bind_u64(s, 8, res->branch_id));
    BINDS(bind_u64(s, 9, c->now_ms));
    CHECK(run(s));
    s = stmt(f, ST_C_UPSERT, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_text(s, 1, &c->client_id));
    BINDS(bind_u64(s, 2, c->seq));
    BINDS(bind_u64(s, 3, c->now_ms));
    CHECK(run(s));
    if (c->seq > SINTER_TC_SESSION_WINDOW) {
        /* Answers below the window can never be asked for again (lookup refuses them). */
        s = stmt(f, ST_S_PRUNE, &rc);
        if (s == NULL) {
            return rc;
        }
        BINDS(bind_text(s, 1, &c->client_id));
        BINDS(bind_u64(s, 2, c->seq - SINTER_TC_SESSION_WINDOW));
        CHECK(run(s));
    }
    return SINTER_OK;
}

static int apply_one(struct sinter_tc_fsm *f, const struct sinter_tc_entry *e,
                     struct sinter_tc_result *res)
{
    struct sinter_tc_cmd c;
    int drc = sinter_tc_cmd_decode(&c, e->data, e->len);
    if (drc == SINTER_EBADVERSION && c.version > SINTER_TC_CMD_VERSION) {
        /* A newer leader's format: refusing it here while upgraded replicas apply it would make
         * the replicas diverge, so this replica stops until it is upgraded. */
        return drc;
    }
    if (drc != SINTER_OK) {
        res->rc = SINTER_EINVAL;
        return SINTER_OK;
    }
    if (c.seq != 0) {
        bool answered;
        CHECK(session_lookup(f, &c, res, &answered));
        if (answered) {
            return SINTER_OK;
        }
    }
    CHECK(dispatch(f, &c, e->index, res));
    if (c.seq != 0) {
        CHECK(session_record(f, &c, res));
    }
    return SINTER_OK;
}

int sinter_tc_fsm_apply_batch(struct sinter_tc_fsm *fsm, const struct sinter_tc_entry *entries,
                              size_t n, struct sinter_tc_result *results)
{
    if (fsm == NULL || (n > 0 && (entries == NULL || results == NULL))) {
        return SINTER_EINVAL;
    }
    if (fsm->db == NULL) {
        return SINTER_EDB;
    }
    for (size_t i = 0; i < n; i++) {
        if (entries[i].index == 0 || entries[i].index > (uint64_t)INT64_MAX ||
            (i > 0 && entries[i].index <= entries[i - 1].index) ||
            (entries[i].len > 0 && entries[i].data == NULL)) {
            return SINTER_EINVAL;
        }
    }
    if (n == 0) {
        return SINTER_OK;
    }
    CHECK(tx(fsm, ST_TX_BEGIN));
    fsm->n_sub = 0;
    uint64_t last = fsm->last_applied;
    uint64_t term = fsm->last_term;
    int rc = SINTER_OK;
    for (size_t i = 0; i < n && rc == SINTER_OK; i++) {
        struct sinter_tc_result *res = &results[i];
        memset(res, 0, sizeof *res);
        if (entries[i].index <= last) {
            res->rc = SINTER_ESTALE;
            res->skipped = true;
            continue;
        }
        if (entries[i].len > 0) {
            rc = apply_one(fsm, &entries[i], res);
        }
        last = entries[i].index;
        term = entries[i].term;
    }
    if (rc == SINTER_OK && last != fsm->last_applied) {
        rc = meta_set(fsm, "last_applied_index", last);
        if (rc == SINTER_OK) {
            rc = meta_set(fsm, "last_applied_term", term);
        }
    }
    if (rc == SINTER_OK) {
        rc = tx(fsm, ST_TX_COMMIT);
    }
    if (rc != SINTER_OK) {
        if (!sqlite3_get_autocommit(fsm->db)) {
            (void)tx(fsm, ST_TX_ROLLBACK);
        }
        return rc;
    }
    fsm->last_applied = last;
    fsm->last_term = term;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (results[i].n_sub > 0) {
            results[i].sub = fsm->sub + off;
            off += results[i].n_sub;
        }
    }
    return SINTER_OK;
}

/* ---- queries ---- */

static void copy_text(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    if (t == NULL) {
        n = 0;
    }
    if (n >= cap) {
        n = cap - 1;
    }
    if (n > 0) {
        memcpy(dst, t, n);
    }
    dst[n] = '\0';
}

static int copy_blob(uint8_t **dst, uint32_t *len, sqlite3_stmt *s, int col)
{
    const void *p = sqlite3_column_blob(s, col);
    int n = sqlite3_column_bytes(s, col);
    *dst = NULL;
    *len = 0;
    if (p == NULL || n <= 0) {
        return SINTER_OK;
    }
    *dst = malloc((size_t)n);
    if (*dst == NULL) {
        return SINTER_ENOMEM;
    }
    memcpy(*dst, p, (size_t)n);
    *len = (uint32_t)n;
    return SINTER_OK;
}

void sinter_tc_global_free(struct sinter_tc_global *g)
{
    if (g != NULL) {
        free(g->app_data);
        g->app_data = NULL;
        g->app_data_len = 0;
    }
}

void sinter_tc_branches_free(struct sinter_tc_branch *branches, size_t n)
{
    if (branches == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(branches[i].app_data);
        free(branches[i].xa_info);
    }
    free(branches);
}

static int read_branches(struct sinter_tc_fsm *f, uint64_t xid_index, struct sinter_tc_branch **out,
                         size_t *n_out)
{
    int rc;
    sqlite3_stmt *s = stmt(f, ST_Q_BRANCHES, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, xid_index));
    struct sinter_tc_branch *arr = NULL;
    size_t n = 0;
    size_t cap = 0;
    int r;
    while ((r = next_row(s, &rc)) == 1) {
        if (n == cap) {
            size_t ncap = cap == 0 ? 4 : cap * 2;
            struct sinter_tc_branch *na = realloc(arr, ncap * sizeof *na);
            if (na == NULL) {
                rc = SINTER_ENOMEM;
                r = -1;
                break;
            }
            arr = na;
            cap = ncap;
        }
        struct sinter_tc_branch *b = &arr[n];
        memset(b, 0, sizeof *b);
        n++;
        b->branch_id = col_u64(s, 0);
        b->branch_type = col_u32(s, 1);
        b->status = col_u32(s, 2);
        copy_text(b->resource_id, sizeof b->resource_id, s, 3);
        copy_text(b->client_id, sizeof b->client_id, s, 4);
        b->register_ms = col_u64(s, 5);
        b->phase2_results = col_u32(s, 6);
        b->last_result_ms = col_u64(s, 7);
        rc = copy_blob(&b->app_data, &b->app_data_len, s, 8);
        if (rc == SINTER_OK) {
            rc = copy_blob(&b->xa_info, &b->xa_info_len, s, 9);
        }
        if (rc != SINTER_OK) {
            r = -1;
            break;
        }
    }
    sqlite3_reset(s);
    if (r < 0) {
        sinter_tc_branches_free(arr, n);
        return rc;
    }
    *out = arr;
    *n_out = n;
    return SINTER_OK;
}

int sinter_tc_fsm_get_global(struct sinter_tc_fsm *fsm, uint64_t xid_index,
                             struct sinter_tc_global *g, struct sinter_tc_branch **branches,
                             size_t *n_branches)
{
    if (fsm == NULL || g == NULL || (branches != NULL && n_branches == NULL)) {
        return SINTER_EINVAL;
    }
    memset(g, 0, sizeof *g);
    if (branches != NULL) {
        *branches = NULL;
        *n_branches = 0;
    }
    if (xid_index == 0 || xid_index > (uint64_t)INT64_MAX) {
        return SINTER_ENOTFOUND;
    }
    int rc;
    sqlite3_stmt *s = stmt(fsm, ST_Q_GLOBAL, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, xid_index));
    int r = next_row(s, &rc);
    if (r <= 0) {
        sqlite3_reset(s);
        return r == 0 ? SINTER_ENOTFOUND : rc;
    }
    g->xid.group = fsm->group;
    g->xid.index = xid_index;
    g->status = col_u32(s, 0);
    g->decision = col_u32(s, 1);
    copy_text(g->app_id, sizeof g->app_id, s, 2);
    copy_text(g->tx_name, sizeof g->tx_name, s, 3);
    copy_text(g->client_id, sizeof g->client_id, s, 4);
    g->timeout_ms = col_u64(s, 5);
    g->begin_ms = col_u64(s, 6);
    g->deadline_ms = col_u64(s, 7);
    g->decided_ms = col_u64(s, 8);
    g->phase2_first_ms = col_u64(s, 9);
    g->end_ms = col_u64(s, 10);
    rc = copy_blob(&g->app_data, &g->app_data_len, s, 11);
    sqlite3_reset(s);
    if (rc == SINTER_OK && branches != NULL) {
        rc = read_branches(fsm, xid_index, branches, n_branches);
    }
    if (rc != SINTER_OK) {
        sinter_tc_global_free(g);
    }
    return rc;
}

int sinter_tc_fsm_status(struct sinter_tc_fsm *fsm, uint64_t xid_index, uint32_t *status)
{
    if (fsm == NULL || status == NULL) {
        return SINTER_EINVAL;
    }
    struct sinter_xid x = {fsm->group, xid_index};
    struct gstate g;
    bool found = false;
    *status = SINTER_GS_FINISHED;
    if (xid_index == 0 || xid_index > (uint64_t)INT64_MAX) {
        return SINTER_ENOTFOUND;
    }
    CHECK(load_global(fsm, &x, &g, &found));
    if (!found) {
        return SINTER_ENOTFOUND;
    }
    *status = g.status;
    return SINTER_OK;
}

/* Runs a bound single-column xid listing into out. */
static int collect_xids(sqlite3_stmt *s, uint64_t *out, size_t max, size_t *n)
{
    int rc = SINTER_OK;
    int r;
    *n = 0;
    while (*n < max && (r = next_row(s, &rc)) == 1) {
        out[(*n)++] = col_u64(s, 0);
    }
    sqlite3_reset(s);
    return rc;
}

static int64_t clamp_limit(size_t max)
{
    return max > (size_t)INT32_MAX ? INT32_MAX : (int64_t)max;
}

int sinter_tc_fsm_list_by_status(struct sinter_tc_fsm *fsm, uint32_t status, uint64_t after,
                                 uint64_t *out, size_t max, size_t *n)
{
    if (fsm == NULL || n == NULL || (out == NULL && max > 0) || status > SINTER_GS_MAX) {
        return SINTER_EINVAL;
    }
    int rc;
    sqlite3_stmt *s = stmt(fsm, ST_Q_LIST_STATUS, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(sqlite3_bind_int64(s, 1, status));
    BINDS(bind_u64(s, 2, after > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : after));
    BINDS(sqlite3_bind_int64(s, 3, clamp_limit(max)));
    return collect_xids(s, out, max, n);
}

int sinter_tc_fsm_list_timed_out(struct sinter_tc_fsm *fsm, uint64_t now_ms, uint64_t *out,
                                 size_t max, size_t *n)
{
    if (fsm == NULL || n == NULL || (out == NULL && max > 0)) {
        return SINTER_EINVAL;
    }
    int rc;
    sqlite3_stmt *s = stmt(fsm, ST_Q_LIST_TIMED_OUT, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, now_ms > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : now_ms));
    BINDS(sqlite3_bind_int64(s, 2, clamp_limit(max)));
    return collect_xids(s, out, max, n);
}

int sinter_tc_fsm_list_phase2(struct sinter_tc_fsm *fsm, uint64_t after, uint64_t *out, size_t max,
                              size_t *n)
{
    if (fsm == NULL || n == NULL || (out == NULL && max > 0)) {
        return SINTER_EINVAL;
    }
    int rc;
    sqlite3_stmt *s = stmt(fsm, ST_Q_LIST_PHASE2, &rc);
    if (s == NULL) {
        return rc;
    }
    BINDS(bind_u64(s, 1, after > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : after));
    BINDS(sqlite3_bind_int64(s, 2, clamp_limit(max)));
    return collect_xids(s, out, max, n);
}

int sinter_tc_fsm_count_by_status(struct sinter_tc_fsm *fsm, uint64_t counts[SINTER_GS_MAX + 1])
{
    if (fsm == NULL || counts == NULL) {
        return SINTER_EINVAL;
    }
    memset(counts, 0, sizeof(uint64_t) * (SINTER_GS_MAX + 1));
    int rc;
    sqlite3_stmt *s = stmt(fsm, ST_Q_COUNTS, &rc);
    if (s == NULL) {
        return rc;
    }
    int r;
    while ((r = next_row(s, &rc)) == 1) {
        uint32_t st = col_u32(s, 0);
        if (st <= SINTER_GS_MAX) {
            counts[st] = col_u64(s, 1);
        }
    }
    sqlite3_reset(s);
    return rc;
}

/* Hashes every column of every row, with its storage class, in key order. */
int sinter_tc_fsm_digest(struct sinter_tc_fsm *fsm, uint32_t *crc_out)
{
    static const char *const dumps[] = {
        "SELECT * FROM meta ORDER BY key",
        "SELECT * FROM globals ORDER BY xid_index",
        "SELECT * FROM branches ORDER BY branch_id",
        "SELECT * FROM clients ORDER BY client_id",
        "SELECT * FROM sessions ORDER BY client_id, seq",
    };
    if (fsm == NULL || crc_out == NULL) {
        return SINTER_EINVAL;
    }
    if (fsm->db == NULL) {
        return SINTER_EDB;
    }
    uint32_t crc = 0;
    for (size_t t = 0; t < sizeof dumps / sizeof dumps[0]; t++) {
        sqlite3_stmt *s = NULL;
        int src = sqlite3_prepare_v2(fsm->db, dumps[t], -1, &s, NULL);
        if (src != SQLITE_OK) {
            return map_sqlite(src);
        }
        uint8_t tag = (uint8_t)(0xA0u + t);
        crc = sinter_crc32c(crc, &tag, 1);
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            int ncol = sqlite3_column_count(s);
            for (int i = 0; i < ncol; i++) {
                uint8_t type = (uint8_t)sqlite3_column_type(s, i);
                crc = sinter_crc32c(crc, &type, 1);
                if (type == SQLITE_INTEGER) {
                    uint64_t v = (uint64_t)sqlite3_column_int64(s, i);
                    uint8_t le[8];
                    for (int k = 0; k < 8; k++) {
                        le[k] = (uint8_t)(v >> (8 * k));
                    }
                    crc = sinter_crc32c(crc, le, 8);
                } else if (type != SQLITE_NULL) {
                    const void *p = sqlite3_column_blob(s, i);
                    uint32_t len = (uint32_t)sqlite3_column_bytes(s, i);
                    uint8_t le[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                                     (uint8_t)(len >> 24)};
                    crc = sinter_crc32c(crc, le, 4);
                    crc = sinter_crc32c(crc, p, len);
                }
            }
        }
        sqlite3_finalize(s);
        if (src != SQLITE_DONE) {
            return map_sqlite(src);
        }
    }
    *crc_out = crc;
    return SINTER_OK;
}

/* ---- snapshots ---- */

static int fsync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        return SINTER_EIO;
    }
    int r = fsync(fd);
    close(fd);
    return r == 0 ? SINTER_OK : SINTER_EIO;
}

/* fsyncs the directory holding path (so a rename in it is durable). */
static int fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        return fsync_path(".", true);
    }
    if (slash == path) {
        return fsync_path("/", true);
    }
    size_t n = (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (dir == NULL) {
        return SINTER_ENOMEM;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    int rc = fsync_path(dir, true);
    free(dir);
    return rc;
}

static char *path_with(const char *path, const char *suffix)
{
    size_t a = strlen(path);
    size_t b = strlen(suffix);
    char *p = malloc(a + b + 1);
    if (p != NULL) {
        memcpy(p, path, a);
        memcpy(p + a, suffix, b + 1);
    }
    return p;
}

/* Reads last_applied_index / _term through connection db (inside its read transaction). */
static int read_applied(sqlite3 *db, uint64_t *index, uint64_t *term, uint64_t *group,
                        uint64_t *version)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db, "SELECT key, value FROM meta", -1, &s, NULL);
    if (src != SQLITE_OK) {
        return map_sqlite(src);
    }
    int seen = 0;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(s, 0);
        uint64_t v = (uint64_t)sqlite3_column_int64(s, 1);
        if (k == NULL) {
            continue;
        }
        if (strcmp(k, "last_applied_index") == 0) {
            *index = v;
            seen |= 1;
        } else if (strcmp(k, "last_applied_term") == 0) {
            *term = v;
            seen |= 2;
        } else if (strcmp(k, "group_id") == 0) {
            *group = v;
            seen |= 4;
        } else if (strcmp(k, "schema_version") == 0) {
            *version = v;
            seen |= 8;
        }
    }
    sqlite3_finalize(s);
    if (src != SQLITE_DONE) {
        return map_sqlite(src);
    }
    return seen == 15 ? SINTER_OK : SINTER_ECORRUPT;
}

int sinter_tc_fsm_snapshot_to(struct sinter_tc_fsm *fsm, const char *path, uint64_t *index,
                              uint64_t *term, sinter_tc_snapshot_step_fn step, void *step_arg)
{
    if (fsm == NULL || path == NULL) {
        return SINTER_EINVAL;
    }
    if (fsm->db == NULL) {
        return SINTER_EDB;
    }
    char *tmp = path_with(path, ".tmp");
    if (tmp == NULL) {
        return SINTER_ENOMEM;
    }
    sqlite3 *src = NULL;
    sqlite3 *dst = NULL;
    sqlite3_backup *bk = NULL;
    uint64_t idx = 0;
    uint64_t trm = 0;
    uint64_t grp = 0;
    uint64_t ver = 0;
    int rc = SINTER_OK;
    unlink(tmp);
    int s = sqlite3_open_v2(fsm->path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (s != SQLITE_OK) {
        rc = map_sqlite(s);
        goto out;
    }
    sqlite3_busy_timeout(src, 5000);
    /* The read transaction pins one WAL snapshot for the whole copy: apply goes on committing on
     * the main connection meanwhile, and the copy is the state as of one last_applied_index. */
    rc = exec_sql(src, "BEGIN");
    if (rc == SINTER_OK) {
        rc = read_applied(src, &idx, &trm, &grp, &ver);
    }
    if (rc != SINTER_OK) {
        goto out;
    }
    s = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL);
    if (s != SQLITE_OK) {
        rc = map_sqlite(s);
        goto out;
    }
    bk = sqlite3_backup_init(dst, "main", src, "main");
    if (bk == NULL) {
        rc = map_sqlite(sqlite3_errcode(dst));
        goto out;
    }
    /* 256 pages (1 MiB at 4 KiB pages) per step: the copy yields between chunks. */
    for (;;) {
        s = sqlite3_backup_step(bk, 256);
        if (s == SQLITE_DONE) {
            break;
        }
        if (s != SQLITE_OK && s != SQLITE_BUSY && s != SQLITE_LOCKED) {
            rc = map_sqlite(s);
            goto out;
        }
        if (s != SQLITE_OK) {
            sqlite3_sleep(1);
        }
        if (step != NULL) {
            step(step_arg);
        }
    }
    s = sqlite3_backup_finish(bk);
    bk = NULL;
    if (s != SQLITE_OK) {
        rc = map_sqlite(s);
        goto out;
    }
    /* The copy carries the source's WAL flag in its header; a snapshot is one self-contained
     * file, so switch it to a rollback journal (this also checkpoints anything pending). */
    rc = exec_sql(dst, "PRAGMA journal_mode=DELETE");
    if (rc != SINTER_OK) {
        goto out;
    }
    s = sqlite3_close(dst);
    dst = NULL;
    if (s != SQLITE_OK) {
        rc = map_sqlite(s);
        goto out;
    }
    rc = fsync_path(tmp, false);
    if (rc == SINTER_OK && rename(tmp, path) != 0) {
        rc = SINTER_EIO;
    }
    if (rc == SINTER_OK) {
        rc = fsync_parent(path);
    }
out:
    if (bk != NULL) {
        sqlite3_backup_finish(bk);
    }
    if (dst != NULL) {
        sqlite3_close(dst);
    }
    if (src != NULL) {
        exec_sql(src, "COMMIT");
        sqlite3_close(src);
    }
    if (rc != SINTER_OK) {
        unlink(tmp);
    } else {
        if (index != NULL) {
            *index = idx;
        }
        if (term != NULL) {
            *term = trm;
        }
    }
    free(tmp);
    return rc;
}

/* Checks that path is a state snapshot of this group; on failure a message goes to f->errmsg. */
static int validate_snapshot(struct sinter_tc_fsm *f, const char *path)
{
    sqlite3 *db = NULL;
    int s = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (s != SQLITE_OK) {
        set_err(f, "snapshot %s: cannot open: %s", path,
                db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(s));
        sqlite3_close(db);
        return SINTER_ECORRUPT;
    }
    int rc = SINTER_OK;
    sqlite3_stmt *q = NULL;
    s = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &q, NULL);
    if (s == SQLITE_OK) {
        s = sqlite3_step(q);
    }
    if (s != SQLITE_ROW) {
        set_err(f, "snapshot %s: quick_check failed: %s", path, sqlite3_errmsg(db));
        rc = SINTER_ECORRUPT;
    } else {
        /* NULL when SQLite could not convert the value (out of memory): not a verdict of "ok". */
        const char *verdict = (const char *)sqlite3_column_text(q, 0);
        if (verdict == NULL) {
            set_err(f, "snapshot %s: quick_check gave no verdict: %s", path, sqlite3_errmsg(db));
            rc = SINTER_EDB; /* no verdict is not a verdict of corruption either */
        } else if (strcmp(verdict, "ok") != 0) {
            set_err(f, "snapshot %s: quick_check: %.200s", path, verdict);
            rc = SINTER_ECORRUPT;
        }
    }
    sqlite3_finalize(q);
    uint64_t idx = 0;
    uint64_t trm = 0;
    uint64_t grp = 0;
    uint64_t ver = 0;
    if (rc == SINTER_OK && read_applied(db, &idx, &trm, &grp, &ver) != SINTER_OK) {
        set_err(f, "snapshot %s: meta table missing or incomplete", path);
        rc = SINTER_ECORRUPT;
    }
    if (rc == SINTER_OK && ver != SCHEMA_VERSION) {
        set_err(f, "snapshot %s: schema version %" PRIu64 ", expected %d", path, ver,
                SCHEMA_VERSION);
        rc = SINTER_ECORRUPT;
    }
    if (rc == SINTER_OK && grp != f->group) {
        set_err(f, "snapshot %s: belongs to group %" PRIu64 ", not %" PRIu32, path, grp, f->group);
        rc = SINTER_ECONFIG;
    }
    sqlite3_close(db);
    return rc;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return SINTER_EIO;
    }
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return SINTER_EIO;
    }
    int rc = SINTER_OK;
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = SINTER_EIO;
            break;
        }
        if (n == 0) {
            break;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = write(out, buf + off, (size_t)n - off);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w < 0) {
                rc = errno == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
                break;
            }
            off += (size_t)w;
        }
        if (rc != SINTER_OK) {
            break;
        }
    }
    if (rc == SINTER_OK && fsync(out) != 0) {
        rc = SINTER_EIO;
    }
    close(in);
    if (close(out) != 0 && rc == SINTER_OK) {
        rc = SINTER_EIO;
    }
    return rc;
}

int sinter_tc_fsm_install_from(struct sinter_tc_fsm *fsm, const char *path)
{
    if (fsm == NULL || path == NULL) {
        return SINTER_EINVAL;
    }
    fsm->errmsg[0] = '\0';
    int rc = validate_snapshot(fsm, path);
    if (rc != SINTER_OK) {
        return rc;
    }
    char *tmp = path_with(fsm->path, ".install");
    char *wal = path_with(fsm->path, "-wal");
    char *shm = path_with(fsm->path, "-shm");
    if (tmp == NULL || wal == NULL || shm == NULL) {
        set_err(fsm, "install %s: out of memory", path);
        rc = SINTER_ENOMEM;
        goto out;
    }
    rc = copy_file(path, tmp);
    if (rc != SINTER_OK) {
        set_err(fsm, "install %s: cannot copy to %s: %s", path, tmp, sinter_strerror(rc));
        unlink(tmp);
        goto out;
    }
    /* Fold the WAL into the old file before closing, so a crash anywhere below leaves either the
     * complete old state (the host re-installs) or the complete new one. The WAL is only removed
     * once every frame of it is in the database file: if the checkpoint cannot finish (a reader
     * still uses the WAL: SQLITE_BUSY after the busy timeout; an I/O error), removing it would
     * drop committed entries from the old state, which stays in use after a failed install; so the
     * install stops here and the old database is left as it was. */
    if (fsm->db != NULL) {
        int log_frames = -1;
        int ckpt_frames = -1;
        int src = sqlite3_wal_checkpoint_v2(fsm->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
                                            &ckpt_frames);
        if (src != SQLITE_OK) {
            set_err(fsm,
                    "install %s: cannot checkpoint the WAL of %s (%d of %d frames): %s; the old "
                    "state is kept",
                    path, fsm->path, ckpt_frames, log_frames, sqlite3_errmsg(fsm->db));
            rc = SINTER_EDB;
            unlink(tmp);
            goto out;
        }
    }
    close_db(fsm);
    unlink(wal);
    unlink(shm);
    if (rename(tmp, fsm->path) != 0) {
        set_err(fsm, "install %s: cannot rename %s over %s: %s; the old state is kept", path, tmp,
                fsm->path, strerror(errno));
        rc = SINTER_EIO;
        unlink(tmp);
        /* The old file is still there: reopen it so the fsm stays usable. */
        if (open_db(fsm) != SINTER_OK) {
            close_db(fsm);
        }
        goto out;
    }
    rc = fsync_parent(fsm->path);
    if (rc != SINTER_OK) {
        set_err(fsm, "install %s: cannot fsync the directory of %s", path, fsm->path);
    } else {
        rc = open_db(fsm);
        if (rc != SINTER_OK) {
            set_err(fsm, "install %s: cannot open the installed %s: %s", path, fsm->path,
                    sinter_strerror(rc));
        }
    }
    if (rc != SINTER_OK) {
        close_db(fsm);
    }
out:
    free(tmp);
    free(wal);
    free(shm);
    return rc;
}
