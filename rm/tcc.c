/*
 * TCC on the RM (sinter/tcc.h): try runs on the caller's connection, confirm / cancel on a
 * per-worker-thread connection the library opens (or the caller's factory hands out), each
 * inside the fence (sinter/fence.h).
 *
 * Per-thread connections (sqlite_path, pg_conninfo): a pthread key per action holds the worker
 * thread's connection; the key's destructor closes it when the worker exits (sinter_rm_close joins
 * the workers before the actions are freed, so every destructor has run by then). One connection
 * per worker and action keeps the fence's rule "one thread per connection" without a pool. The
 * caller's factory (connect + disconnect) is called once per delivery instead: the connection goes
 * back to the caller's pool at the end of each delivery.
 *
 * Statement caches (sinter/fence.h): the library's SQLite connections carry one, freed right
 * before the connection is closed; a factory's connection carries whatever cache the factory put
 * into db->cache (the pool's, passed through untouched).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rm_int.h"
#include "sinter/fence.h"
#include "sinter/tcc.h"

#define SQLITE_BUSY_MS 5000
/* PostgreSQL defaults (sinter/tcc.h): the lock wait matches SQLite's busy timeout; a statement
 * ends before the coordinator's default 10 s lease would redeliver the branch meanwhile. */
#define PG_CONNECT_TIMEOUT_MS   5000u
#define PG_LOCK_TIMEOUT_MS      5000u
#define PG_STATEMENT_TIMEOUT_MS 8000u

struct tcc_action {
    struct tcc_action *next;
    struct sinter_tcc_action a; /* strings below are the action's own copies */
    char *name, *sqlite_path, *pg_conninfo;
    pthread_key_t key;
    bool key_ok;
};

struct tconn {
    struct tcc_action *act;
    struct sinter_fence_db db;
};

/* ---- connections ----------------------------------------------------------------------------- */

static int conn_open(struct tcc_action *t, struct sinter_fence_db *db)
{
    memset(db, 0, sizeof *db);
    if (t->a.connect != NULL) {
        int rc = t->a.connect(t->a.connect_arg, db);
        if (rc != SINTER_OK) {
            sinter_client_set_errmsg("tcc action '%s': connect hook failed: %s", t->name,
                                     sinter_strerror(rc));
        }
        return rc;
    }
    if (t->sqlite_path != NULL) {
        sqlite3 *s = NULL;
        int src =
            sqlite3_open_v2(t->sqlite_path, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
        if (src != SQLITE_OK) {
            sinter_client_set_errmsg("tcc action '%s': cannot open %s: %s", t->name, t->sqlite_path,
                                     s ? sqlite3_errmsg(s) : "out of memory");
            sqlite3_close(s);
            return SINTER_EDB;
        }
        /* Several workers (and the service's own threads) write the same file: wait for the
         * lock a while instead of failing at once with SQLITE_BUSY. */
        sqlite3_busy_timeout(s, SQLITE_BUSY_MS);
        *db = sinter_fence_db_sqlite(s);
        /* The library owns this connection, so it can own a statement cache for it too and
         * finalize it before the close (conn_close): the fence's statements are prepared once
         * per worker, not per delivery (sinter/fence.h). */
        int rc = sinter_fence_cache_new(db, &db->cache);
        if (rc != SINTER_OK) {
            sqlite3_close(s);
            memset(db, 0, sizeof *db);
            sinter_client_set_errmsg("tcc action '%s': %s", t->name, sinter_strerror(rc));
        }
        return rc;
    }
    /* libpq waits forever for a connection by default; connect_timeout bounds it. It goes
     * BEFORE the expanded conninfo, so a connect_timeout there wins (libpq keeps the last value
     * of a repeated keyword). */
    uint32_t cto = t->a.pg_connect_timeout_ms ? t->a.pg_connect_timeout_ms : PG_CONNECT_TIMEOUT_MS;
    char cts[16];
    snprintf(cts, sizeof cts, "%u", cto / 1000u + (cto % 1000u != 0));
    const char *kw[] = {"connect_timeout", "dbname", NULL};
    const char *val[] = {cts, t->pg_conninfo, NULL};
    size_t skip = cto == UINT32_MAX ? 1 : 0;
    PGconn *pg = PQconnectdbParams(kw + skip, val + skip, 1);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        sinter_client_set_errmsg("tcc action '%s': cannot connect to PostgreSQL: %s", t->name,
                                 pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        return SINTER_EDB;
    }
    /* Session bounds on lock and statement waits (0 = default, UINT32_MAX = leave the server's). */
    uint32_t lto = t->a.pg_lock_timeout_ms ? t->a.pg_lock_timeout_ms : PG_LOCK_TIMEOUT_MS;
    uint32_t sto =
        t->a.pg_statement_timeout_ms ? t->a.pg_statement_timeout_ms : PG_STATEMENT_TIMEOUT_MS;
    char set[128] = "";
    size_t n = 0;
    if (lto != UINT32_MAX) {
        n += (size_t)snprintf(set + n, sizeof set - n, "SET lock_timeout = %u;", lto);
    }
    if (sto != UINT32_MAX) {
        n += (size_t)snprintf(set + n, sizeof set - n, "SET statement_timeout = %u;", sto);
    }
    if (n > 0) {
        PGresult *r = PQexec(pg, set);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            sinter_client_set_errmsg("tcc action '%s': %s failed: %s", t->name, set,
                                     PQerrorMessage(pg));
            PQfinish(pg);
            return SINTER_EDB;
        }
    }
    *db = sinter_fence_db_pg(pg);
    return SINTER_OK;
}

static void conn_close(struct tcc_action *t, struct sinter_fence_db *db)
{
    if (t->a.disconnect != NULL) {
        t->a.disconnect(t->a.connect_arg, db);
    } else if (db->kind == SINTER_FENCE_SQLITE) {
        /* Cached statements first: sqlite3_close refuses a connection that still has some. */
        sinter_fence_cache_free(db->cache);
        sqlite3_close(db->sqlite);
    } else if (db->kind == SINTER_FENCE_POSTGRES) {
        PQfinish(db->pg);
    }
    memset(db, 0, sizeof *db);
}

static void tconn_destroy(void *p)
{
    struct tconn *tc = p;
    conn_close(tc->act, &tc->db);
    free(tc);
}

/* The calling worker's connection for t, opened on first use. */
static int worker_conn(struct tcc_action *t, struct tconn **out)
{
    struct tconn *tc = pthread_getspecific(t->key);
    if (tc == NULL) {
        tc = calloc(1, sizeof *tc);
        if (tc == NULL) {
            return SINTER_ENOMEM;
        }
        tc->act = t;
        int rc = conn_open(t, &tc->db);
        if (rc != SINTER_OK) {
            free(tc);
            return rc;
        }
        pthread_setspecific(t->key, tc);
    }
    *out = tc;
    return SINTER_OK;
}

/* After every delivery: a connection that is not idle is rolled back or dropped, so the next
 * delivery on this worker (maybe for another global) starts from a clean connection. A
 * connection left inside a transaction (a hook that misbehaved, a COMMIT that failed half-way,
 * a PostgreSQL query still ACTIVE) would otherwise make every later fence call on this worker
 * refuse with "not idle", for unrelated branches too. PostgreSQL: anything but an OK, IDLE
 * connection is closed (reconnect is cheap next to a stuck worker); SQLite: a ROLLBACK, and the
 * connection is reopened if that does not bring it back to autocommit. */
static void worker_conn_check(struct tcc_action *t, struct tconn *tc)
{
    bool drop = false;
    if (tc->db.kind == SINTER_FENCE_POSTGRES) {
        drop =
            PQstatus(tc->db.pg) != CONNECTION_OK || PQtransactionStatus(tc->db.pg) != PQTRANS_IDLE;
    } else if (tc->db.kind == SINTER_FENCE_SQLITE && !sqlite3_get_autocommit(tc->db.sqlite)) {
        (void)sqlite3_exec(tc->db.sqlite, "ROLLBACK", NULL, NULL, NULL);
        drop = !sqlite3_get_autocommit(tc->db.sqlite);
    }
    if (drop) {
        pthread_setspecific(t->key, NULL);
        tconn_destroy(tc);
    }
}

/* ---- hooks ----------------------------------------------------------------------------------- */

struct hook_call {
    sinter_tcc_hook fn;
    struct sinter_tcc_ctx ctx;
};

static int fence_hook(const struct sinter_fence_db *db, void *arg)
{
    struct hook_call *hc = arg;
    if (hc->fn == NULL) {
        return SINTER_OK;
    }
    hc->ctx.db = db;
    return hc->fn(&hc->ctx);
}

static int tcc_phase2(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    (void)status; /* the fence's codes map through sinter_rm_phase2_status */
    struct tcc_action *t = arg;
    struct tconn *tc = NULL;
    struct tconn lent; /* the caller's factory: one connection per delivery */
    int rc;
    if (t->a.connect != NULL) {
        /* A pool's connection is borrowed for this delivery only and given back after it,
         * whatever the outcome, so the pool can check, repair or replace it (sinter/tcc.h). */
        memset(&lent, 0, sizeof lent);
        lent.act = t;
        rc = conn_open(t, &lent.db);
        tc = &lent;
    } else {
        rc = worker_conn(t, &tc);
    }
    if (rc != SINTER_OK) {
        return rc; /* retryable: the database may be back by the next delivery */
    }
    struct hook_call hc;
    memset(&hc, 0, sizeof hc);
    hc.fn = w->commit ? t->a.confirm_fn : t->a.cancel_fn;
    hc.ctx.xid = w->xid_text;
    hc.ctx.branch_id = w->branch_id;
    hc.ctx.action = t->name;
    hc.ctx.args = w->app_data;
    hc.ctx.args_len = w->app_data_len;
    hc.ctx.user = t->a.user;
    hc.ctx.attempt = w->attempt;
    if (w->commit) {
        rc = sinter_fence_confirm(&tc->db, w->xid_text, w->branch_id, fence_hook, &hc);
    } else {
        rc = sinter_fence_cancel(&tc->db, w->xid_text, w->branch_id, t->name, fence_hook, &hc);
    }
    if (tc == &lent) {
        conn_close(t, &lent.db);
    } else {
        worker_conn_check(t, tc);
    }
    return rc;
}

/* ---- registration ---------------------------------------------------------------------------- */

static void action_free(struct tcc_action *t)
{
    if (t == NULL) {
        return;
    }
    if (t->key_ok) {
        pthread_key_delete(t->key);
    }
    free(t->name);
    free(t->sqlite_path);
    free(t->pg_conninfo);
    free(t);
}

static struct tcc_action *find_action(struct sinter_rm *rm, const char *name)
{
    for (struct tcc_action *t = rm->actions; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            return t;
        }
    }
    return NULL;
}

int sinter_tcc_register(struct sinter_rm *rm, const struct sinter_tcc_action *a)
{
    if (rm == NULL || a == NULL || a->name == NULL || a->name[0] == '\0' ||
        strlen(a->name) > SINTER_FENCE_ACTION_MAX) {
        return SINTER_EINVAL;
    }
    int sources = (a->sqlite_path != NULL) + (a->pg_conninfo != NULL) +
                  (a->connect != NULL || a->disconnect != NULL);
    if (sources != 1 || (a->connect != NULL) != (a->disconnect != NULL)) {
        sinter_client_set_errmsg("tcc action needs exactly one of sqlite_path, pg_conninfo, "
                                 "connect+disconnect");
        return SINTER_EINVAL;
    }
    struct tcc_action *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return SINTER_ENOMEM;
    }
    t->a = *a;
    t->name = strdup(a->name);
    t->sqlite_path = a->sqlite_path ? strdup(a->sqlite_path) : NULL;
    t->pg_conninfo = a->pg_conninfo ? strdup(a->pg_conninfo) : NULL;
    if (t->name == NULL || (a->sqlite_path && !t->sqlite_path) ||
        (a->pg_conninfo && !t->pg_conninfo)) {
        action_free(t);
        return SINTER_ENOMEM;
    }
    t->a.name = t->name;
    t->a.sqlite_path = t->sqlite_path;
    t->a.pg_conninfo = t->pg_conninfo;
    if (pthread_key_create(&t->key, tconn_destroy) != 0) {
        action_free(t);
        return SINTER_ENOMEM;
    }
    t->key_ok = true;
    /* Check the database now, not at the first delivery: a wrong path or conninfo is a
     * configuration error the service should see at start. */
    struct sinter_fence_db db;
    int rc = conn_open(t, &db);
    if (rc == SINTER_OK) {
        rc = sinter_fence_init(&db);
        if (rc != SINTER_OK) {
            sinter_client_set_errmsg("tcc action '%s': fence table: %s", t->name,
                                     sinter_fence_errmsg());
        }
        conn_close(t, &db);
    }
    if (rc != SINTER_OK) {
        action_free(t);
        return rc;
    }
    pthread_rwlock_wrlock(&rm->hlock);
    if (find_action(rm, t->name) != NULL) {
        rc = SINTER_EEXIST;
    } else {
        t->next = rm->actions;
        rm->actions = t;
    }
    pthread_rwlock_unlock(&rm->hlock);
    if (rc != SINTER_OK) {
        action_free(t);
        return rc;
    }
    /* The action stays in the list even if this fails: it is freed at close either way. */
    return sinter_rm_set_handler(rm, t->name, SINTER_BT_TCC, tcc_phase2, t);
}

/* ---- phase one ------------------------------------------------------------------------------- */

int sinter_tcc_try(struct sinter_rm *rm, const char *action, const char *xid, const void *args,
                   size_t len, const struct sinter_fence_db *db, uint64_t *branch_id)
{
    if (rm == NULL || action == NULL || xid == NULL || db == NULL || (args == NULL && len > 0)) {
        return SINTER_EINVAL;
    }
    pthread_rwlock_rdlock(&rm->hlock);
    struct tcc_action *t = find_action(rm, action); /* actions live until close */
    pthread_rwlock_unlock(&rm->hlock);
    if (t == NULL) {
        sinter_client_set_errmsg("no TCC action '%s' registered", action);
        return SINTER_ENOTFOUND;
    }
    /* Register first, then try (DESIGN.md "TCC"): the branch exists at the coordinator before
     * any business change, so a rollback reaches it even if this process dies mid-try. */
    uint64_t bid = 0;
    int rc = sinter_rm_branch_register(rm, xid, SINTER_BT_TCC, action, args, len, 0, &bid);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (branch_id != NULL) {
        *branch_id = bid;
    }
    struct hook_call hc;
    memset(&hc, 0, sizeof hc);
    hc.fn = t->a.try_fn;
    hc.ctx.xid = xid;
    hc.ctx.branch_id = bid;
    hc.ctx.action = t->name;
    hc.ctx.args = args;
    hc.ctx.args_len = len;
    hc.ctx.user = t->a.user;
    rc = sinter_fence_try(db, xid, bid, t->name, fence_hook, &hc);
    if (rc != SINTER_OK) {
        char why[300];
        snprintf(why, sizeof why, "try of '%s' failed: %s%s%s", t->name, sinter_errname(rc),
                 sinter_fence_errmsg()[0] ? ": " : "", sinter_fence_errmsg());
        /* The global must not commit with this branch: tell the coordinator (best effort; if the
         * report is lost, confirm finds no fence row and retries until the deadline, and a
         * rollback finds the SUSPENDED or no row and ends empty). */
        (void)sinter_rm_branch_report(rm, xid, bid, SINTER_BT_TCC, t->name, SINTER_BS_PHASE1_FAILED,
                                      0);
        sinter_client_set_errmsg("%s", why);
        return rc;
    }
    if (t->a.report_phase1_done) {
        return sinter_rm_branch_report(rm, xid, bid, SINTER_BT_TCC, t->name, SINTER_BS_PHASE1_DONE,
                                       0);
    }
    return SINTER_OK;
}

/* ---- rm internals ---------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sinter_rm_tcc_cleanup_all(struct sinter_rm *rm)
{
    pthread_rwlock_rdlock(&rm->hlock);
    struct tcc_action *list = rm->actions;
    pthread_rwlock_unlock(&rm->hlock);
    int64_t cutoff = wall_ms() - (int64_t)rm->o.fence_retention_ms;
    for (struct tcc_action *t = list; t != NULL && !atomic_load(&rm->stopping); t = t->next) {
        struct sinter_fence_db db;
        if (conn_open(t, &db) != SINTER_OK) {
            continue; /* next interval */
        }
        /* Batches keep each delete transaction short (Seata deletes 1000 per statement). */
        uint32_t deleted = 0;
        do {
            deleted = 0;
            if (sinter_fence_cleanup(&db, cutoff, rm->o.fence_cleanup_batch, &deleted) !=
                SINTER_OK) {
                break;
            }
        } while (deleted == rm->o.fence_cleanup_batch && !atomic_load(&rm->stopping));
        conn_close(t, &db);
    }
}

void sinter_rm_tcc_free_all(struct sinter_rm *rm)
{
    while (rm->actions != NULL) {
        struct tcc_action *t = rm->actions;
        rm->actions = t->next;
        action_free(t);
    }
}
