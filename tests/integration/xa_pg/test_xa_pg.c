/* The XA resource (rm/xa.c, include/sinter/xa.h) on a real PostgreSQL server (the ctest fixture
 * "pg"), with a fake coordinator behind the hooks: gids, commit and rollback paths, duplicate
 * and contradictory phase-2 deliveries resolved by pg_xact_status, empty rollback, a killed RM
 * recovered from another connection, the late-prepare guard and its return codes, a rollback of a
 * registered branch still in progress, the asynchronous report hook and the guard applied to
 * its answer later (sinter_xa_report_settle), two branches of one global on the
 * same row (bounded, no hang), the client-side deadline. After every test no prepared
 * transaction of our database is left (checked, and cleaned up even when a test failed).
 *
 * usage: test_xa_pg CONNINFO_FILE   (the file the fixture wrote; we use our own database) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include <cmocka.h>

#include "pgtest.h"
#include "sinter/error.h"
#include "sinter/xa.h"

#define TEST_DB "sinter_xa_test"
#define NS      "xatest"
/* Hang guard only (not a performance assertion): a bounded wait ends well inside this. */
#define HANG_GUARD_MS 30000

static char conninfo[1024];

/* ---- a fake coordinator ---- */

struct fake_tc {
    uint64_t next_branch;
    uint32_t gs; /* what global_status answers */
    int gs_rc;   /* non-zero: global_status fails with it */
    int register_rc;
    int report_rc;            /* non-zero: returned by report(PhaseOne_Done); otherwise the
                                 report is refused (ESTATE) unless gs is Begin, as the real
                                 coordinator does (the late-prepare guard relies on it) */
    uint32_t gs_after_report; /* non-zero: gs becomes this when a PhaseOne_Done report comes */
    int gs_rc_after_report;   /* non-zero: gs_rc becomes this when a PhaseOne_Done report comes */
    int registers, guards, done, failed;
    struct sinter_xa_branch last;     /* the last reported branch */
    uint64_t reg_local_xid;           /* what the last register_branch was told */
    PGconn *watch;                    /* if set: the branch connection, checked at register */
    int reg_in_txn;                   /* watch was inside a transaction at the last register */
    int async_rc;                     /* what report_async answers */
    int asyncs;                       /* report_async calls */
    struct sinter_xa_branch async_br; /* the branch report_async was handed (a copy) */
};

static int fake_register(void *arg, const struct sinter_xid *xid, const char *rid,
                         uint64_t local_xid, uint64_t *b)
{
    struct fake_tc *tc = arg;
    (void)xid;
    assert_string_equal(rid, "pg://test/" NS);
    tc->registers++;
    tc->reg_local_xid = local_xid;
    /* No I/O on the connection (the hooks must not use it): libpq's local state only. */
    tc->reg_in_txn = tc->watch != NULL && PQtransactionStatus(tc->watch) == PQTRANS_INTRANS;
    if (tc->register_rc != SINTER_OK)
        return tc->register_rc;
    *b = ++tc->next_branch;
    return SINTER_OK;
}

static int fake_report(void *arg, const struct sinter_xa_branch *br, uint32_t status)
{
    struct fake_tc *tc = arg;
    tc->last = *br;
    if (status == SINTER_BS_PHASE1_DONE) {
        tc->done++;
        int rc = tc->report_rc != SINTER_OK  ? tc->report_rc
                 : tc->gs != SINTER_GS_BEGIN ? SINTER_ESTATE
                                             : SINTER_OK;
        if (tc->gs_after_report != 0)
            tc->gs = tc->gs_after_report;
        if (tc->gs_rc_after_report != 0)
            tc->gs_rc = tc->gs_rc_after_report;
        return rc;
    }
    assert_int_equal(status, SINTER_BS_PHASE1_FAILED);
    tc->failed++;
    return SINTER_OK;
}

static int fake_report_async(void *arg, const struct sinter_xa_branch *br)
{
    struct fake_tc *tc = arg;
    tc->asyncs++;
    tc->async_br = *br;
    return tc->async_rc;
}

static int fake_status(void *arg, const struct sinter_xid *xid, uint32_t *gs)
{
    struct fake_tc *tc = arg;
    (void)xid;
    tc->guards++;
    if (tc->gs_rc != SINTER_OK)
        return tc->gs_rc;
    *gs = tc->gs;
    return SINTER_OK;
}

/* ---- fixture ---- */

struct fx {
    PGconn *c;     /* the branch connection */
    PGconn *admin; /* checks and cleanup */
    struct fake_tc tc;
    struct sinter_xa_resource *res;
};

static PGconn *connect_db(void)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* Runs sql and returns its SQLSTATE ("" on success) in st[6]. */
static void exec_state(PGconn *c, const char *sql, char st[6])
{
    PGresult *r = PQexec(c, sql);
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(st, 6, "%s", s != NULL ? s : "");
    PQclear(r);
}

static long long q1(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static long long prepared_count(PGconn *admin)
{
    return q1(admin, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
}

/* Rolls back every prepared transaction of our database (whatever a failed test left). */
static void cleanup_prepared(PGconn *admin)
{
    PGresult *r =
        PQexec(admin, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r); i++) {
            char *lit = PQescapeLiteral(admin, PQgetvalue(r, i, 0), strlen(PQgetvalue(r, i, 0)));
            char sql[512];
            snprintf(sql, sizeof sql, "ROLLBACK PREPARED %s", lit);
            PQfreemem(lit);
            PQclear(PQexec(admin, sql));
        }
    }
    PQclear(r);
}

static struct sinter_xa_config make_cfg(struct fake_tc *tc)
{
    struct sinter_xa_config cfg = {
        .ns = NS,
        .resource_id = "pg://test/" NS,
        .statement_timeout_ms = 10000,
        .lock_timeout_ms = 500, /* short: the same-row test waits this long */
        .call_timeout_ms = 10000,
        .hooks = {.register_branch = fake_register,
                  .report = fake_report,
                  .global_status = fake_status,
                  .arg = tc},
    };
    return cfg;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->c = connect_db();
    f->admin = connect_db();
    f->tc.gs = SINTER_GS_BEGIN;
    cleanup_prepared(f->admin);
    exec_ok(f->admin, "DROP TABLE IF EXISTS acct");
    exec_ok(f->admin, "CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL)");
    exec_ok(f->admin, "INSERT INTO acct VALUES (1, 100), (2, 100)");
    struct sinter_xa_config cfg = make_cfg(&f->tc);
    char err[256];
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &f->res, err, sizeof err), SINTER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f == NULL)
        return 0;
    long long left = prepared_count(f->admin);
    cleanup_prepared(f->admin); /* also after a failure, so the next test starts clean */
    sinter_xa_resource_close(f->res);
    PQfinish(f->c);
    PQfinish(f->admin);
    free(f);
    if (left != 0) {
        fprintf(stderr, "%lld prepared transaction(s) left behind\n", left);
        return -1;
    }
    return 0;
}

static const struct sinter_xid XID1 = {7, 1001};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Begin a branch on c, set acct row id to v, prepare: the common phase one. */
static void branch_update_prepare(struct fx *f, PGconn *c, const struct sinter_xid *xid, int id,
                                  int v, struct sinter_xa_branch *br)
{
    assert_int_equal(sinter_xa_begin(f->res, c, xid, br), SINTER_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE acct SET v = %d WHERE id = %d", v, id);
    exec_ok(c, sql);
    assert_int_equal(sinter_xa_prepare(f->res, c, br), SINTER_OK);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
}

static long long acct_v(PGconn *c, int id)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT v FROM acct WHERE id = %d", id);
    return q1(c, sql);
}

/* ---- gids ---- */

static void t_gid_format_and_parse(void **state)
{
    (void)state;
    char g[SINTER_XA_GID_LEN];
    struct sinter_xid x = {3, 42};
    assert_int_equal(sinter_xa_gid("orders", &x, 9, g), strlen("sntr:orders:3:42:9"));
    assert_string_equal(g, "sntr:orders:3:42:9");
    struct sinter_xid px;
    uint64_t pb;
    assert_int_equal(sinter_xa_gid_parse(g, "orders", &px, &pb), SINTER_OK);
    assert_int_equal(px.group, 3);
    assert_int_equal(px.index, 42);
    assert_int_equal(pb, 9);
    assert_int_equal(sinter_xa_gid_parse(g, NULL, &px, &pb), SINTER_OK);

    /* Maximum values: the longest gid is well under PostgreSQL's 200-byte limit. */
    char ns[SINTER_XA_NS_MAX + 1];
    memset(ns, 'n', SINTER_XA_NS_MAX);
    ns[SINTER_XA_NS_MAX] = '\0';
    struct sinter_xid mx = {UINT32_MAX, UINT64_MAX};
    size_t n = sinter_xa_gid(ns, &mx, UINT64_MAX, g);
    assert_int_equal(n, SINTER_XA_GID_MAXLEN);
    assert_true(n < SINTER_XA_GID_LEN);
    assert_int_equal(strlen(g), n);
    assert_int_equal(sinter_xa_gid_parse(g, ns, &px, &pb), SINTER_OK);
    assert_int_equal(px.group, UINT32_MAX);
    assert_true(px.index == UINT64_MAX && pb == UINT64_MAX);

    /* Invalid inputs to the builder. */
    char longns[SINTER_XA_NS_MAX + 2];
    memset(longns, 'n', SINTER_XA_NS_MAX + 1);
    longns[SINTER_XA_NS_MAX + 1] = '\0';
    struct sinter_xid zero = {1, 0};
    assert_int_equal(sinter_xa_gid(longns, &x, 1, g), 0);
    assert_string_equal(g, "");
    assert_int_equal(sinter_xa_gid("", &x, 1, g), 0);
    assert_int_equal(sinter_xa_gid("a'b", &x, 1, g), 0);
    assert_int_equal(sinter_xa_gid("a:b", &x, 1, g), 0);
    assert_int_equal(sinter_xa_gid("a%b", &x, 1, g), 0);
    assert_int_equal(sinter_xa_gid(NULL, &x, 1, g), 0);
    assert_int_equal(sinter_xa_gid("a", &zero, 1, g), 0);
    assert_int_equal(sinter_xa_gid("a", &x, 0, g), 0);
    assert_int_equal(sinter_xa_gid("a_b.c-D9", &x, 1, g), strlen("sntr:a_b.c-D9:3:42:1"));

    /* The parser accepts exactly what the builder makes. */
    const char *bad[] = {"",
                         "sntr:",
                         "sntr:orders",
                         "sntr:orders:",
                         "sntr:orders:3:42",
                         "sntr:orders:3:42:",
                         "sntr:orders:3:42:09",
                         "sntr:orders:3:042:9",
                         "sntr:orders:03:42:9",
                         "sntr:orders:3:0:9",
                         "sntr:orders:3:42:0",
                         "sntr:orders:3:42:9:1",
                         "sntr:orders:3:42:9 ",
                         "sntr:orders:3:42:-9",
                         "sntr:orders:4294967296:42:9",
                         "sntr:orders:3:42:18446744073709551616",
                         "sntr::3:42:9",
                         "sntr:or'ders:3:42:9",
                         "SNTR:orders:3:42:9",
                         "xx:orders:3:42:9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (sinter_xa_gid_parse(bad[i], NULL, &px, &pb) != SINTER_EINVAL)
            fail_msg("parsed '%s'", bad[i]);
    /* Namespaces never match by prefix: "order" is not "orders". */
    assert_int_equal(sinter_xa_gid_parse("sntr:orders:3:42:9", "order", &px, &pb), SINTER_EINVAL);
}

/* The longest gid is accepted by PostgreSQL itself: prepare and roll back a real branch. */
static void t_gid_max_on_server(void **state)
{
    struct fx *f = *state;
    char ns[SINTER_XA_NS_MAX + 1];
    memset(ns, 'z', SINTER_XA_NS_MAX);
    ns[SINTER_XA_NS_MAX] = '\0';
    struct sinter_xa_config cfg = make_cfg(&f->tc);
    cfg.ns = ns;
    cfg.resource_id = "pg://test/" NS;
    struct sinter_xa_resource *res = NULL;
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, NULL, 0), SINTER_OK);
    f->tc.next_branch = UINT64_MAX - 1;
    struct sinter_xid mx = {UINT32_MAX, UINT64_MAX};
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(res, f->c, &mx, &br), SINTER_OK);
    assert_int_equal(strlen(br.gid), SINTER_XA_GID_MAXLEN);
    exec_ok(f->c, "UPDATE acct SET v = 1 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '%s'", br.gid);
    assert_int_equal(q1(f->admin, sql), 1);
    uint32_t out = 0;
    assert_int_equal(sinter_xa_rollback_prepared(res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(acct_v(f->admin, 1), 100);
    sinter_xa_resource_close(res);
}

static void t_resource_open_validates(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_config cfg = make_cfg(&f->tc);
    struct sinter_xa_resource *res = NULL;
    char err[256];
    assert_int_equal(sinter_xa_check_server(f->c, err, sizeof err), SINTER_OK);
    cfg.ns = "bad ns";
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, err, sizeof err), SINTER_EINVAL);
    assert_null(res);
    assert_non_null(strstr(err, "ns"));
    cfg = make_cfg(&f->tc);
    cfg.hooks.global_status = NULL; /* the late-prepare guard is not optional */
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, err, sizeof err), SINTER_EINVAL);
    cfg = make_cfg(&f->tc);
    assert_int_equal(sinter_xa_resource_open(&cfg, NULL, &res, err, sizeof err), SINTER_EINVAL);
    assert_string_equal(sinter_xa_resource_ns(f->res), NS);
    /* Classification helper. */
    assert_int_equal(sinter_xa_sqlstate_rc("55P03"), SINTER_EBUSY);
    assert_int_equal(sinter_xa_sqlstate_rc("57014"), SINTER_EBUSY);
    assert_int_equal(sinter_xa_sqlstate_rc("55000"), SINTER_EBUSY);
    assert_int_equal(sinter_xa_sqlstate_rc("40P01"), SINTER_EBUSY);
    assert_int_equal(sinter_xa_sqlstate_rc("08006"), SINTER_ETRANSPORT);
    assert_int_equal(sinter_xa_sqlstate_rc("57P01"), SINTER_ETRANSPORT);
    assert_int_equal(sinter_xa_sqlstate_rc("42704"), SINTER_EDB);
    assert_int_equal(sinter_xa_sqlstate_rc(NULL), SINTER_EDB);
}

/* ---- phase one and two, the happy paths ---- */

static void t_commit_path(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    assert_int_equal(f->tc.registers, 1);
    assert_int_equal(f->tc.guards, 0); /* the accepted report is the guard: no status read */
    assert_int_equal(f->tc.done, 1);
    assert_int_equal(f->tc.failed, 0);
    assert_int_equal(f->tc.last.branch_id, br.branch_id);
    assert_int_equal(f->tc.last.local_xid, br.local_xid);
    assert_true(br.local_xid > 0);
    assert_string_equal(br.gid, "sntr:" NS ":7:1001:1");
    /* Prepared: invisible to others, listed under our gid with our transaction id. */
    assert_int_equal(acct_v(f->admin, 1), 100);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '%s' AND "
             "transaction::text::bigint = %llu %% 4294967296",
             br.gid, (unsigned long long)br.local_xid);
    assert_int_equal(q1(f->admin, sql), 1);
    /* Phase 2 from another connection. */
    uint32_t out = 0;
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(acct_v(f->admin, 1), 150);
    assert_int_equal(prepared_count(f->admin), 0);
    /* The branch connection is reusable for the next branch. */
    struct sinter_xid x2 = {7, 1002};
    struct sinter_xa_branch br2;
    branch_update_prepare(f, f->c, &x2, 2, 7, &br2);
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->c, br2.gid, br2.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 2), 7);
}

static void t_rollback_path(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    uint32_t out = 0;
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(acct_v(f->admin, 1), 100);
    /* A repeated rollback: 42704, pg_xact_status 'aborted' -> Rollbacked. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(prepared_count(f->admin), 0);
}

static void t_abort_path(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 0 WHERE id = 1");
    assert_int_equal(sinter_xa_abort(f->res, f->c, &br), SINTER_OK);
    assert_int_equal(f->tc.failed, 1);
    assert_int_equal(f->tc.done, 0);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(acct_v(f->admin, 1), 100);
    /* Abort twice, or prepare after abort: harmless / refused. */
    assert_int_equal(sinter_xa_abort(f->res, f->c, &br), SINTER_OK);
    assert_int_equal(f->tc.failed, 1);
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ESTATE);
    assert_int_equal(prepared_count(f->admin), 0);
    /* The TC's rollback of this never-prepared branch is an empty rollback. */
    uint32_t out = 0;
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
}

/* A statement of the service failed: nothing is prepared, PhaseOne_Failed, connection idle. */
static void t_failed_statement_fails_phase_one(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    char st[6];
    exec_state(f->c, "INSERT INTO acct VALUES (1, 1)", st); /* duplicate key */
    assert_string_equal(st, "23505");
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_EDB);
    assert_non_null(strstr(sinter_xa_errmsg(), "aborted"));
    assert_int_equal(f->tc.failed, 1);
    assert_int_equal(f->tc.done, 0);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(prepared_count(f->admin), 0);
    /* The service committing on its own is refused too (ESTATE), and reported. */
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "COMMIT");
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ESTATE);
    assert_int_equal(f->tc.failed, 2);
}

static void t_begin_preconditions(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    exec_ok(f->c, "BEGIN");
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_ESTATE);
    assert_int_equal(f->tc.registers, 0); /* refused before registering */
    exec_ok(f->c, "ROLLBACK");
    /* Late register: the coordinator refuses; the branch transaction it was asked from is
     * rolled back, nothing is left open and nothing reported. */
    f->tc.register_rc = SINTER_ESTATE;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_ESTATE);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(f->tc.failed, 0);
    f->tc.register_rc = SINTER_OK;
    struct sinter_xid bad = {1, 0};
    assert_int_equal(sinter_xa_begin(f->res, f->c, &bad, &br), SINTER_EINVAL);
    /* The bounds are SET LOCAL: inside the branch they apply, after it the session's are back. */
    long long before = q1(f->c, "SELECT setting::bigint FROM pg_settings "
                                "WHERE name = 'lock_timeout'");
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    assert_int_equal(q1(f->c, "SELECT setting::bigint FROM pg_settings "
                              "WHERE name = 'lock_timeout'"),
                     500);
    assert_int_equal(q1(f->c, "SELECT setting::bigint FROM pg_settings "
                              "WHERE name = 'statement_timeout'"),
                     10000);
    assert_int_equal(sinter_xa_abort(f->res, f->c, &br), SINTER_OK);
    assert_int_equal(q1(f->c, "SELECT setting::bigint FROM pg_settings "
                              "WHERE name = 'lock_timeout'"),
                     before);
}

/* ---- phase 2 deliveries: duplicates, contradictions, unknown gids ---- */

static void t_commit_twice_is_deduplicated(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    uint32_t out = 0;
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    /* The retry (the first reply was lost): 42704, resolved by pg_xact_status = committed. */
    for (int i = 0; i < 3; i++) {
        out = 0;
        assert_int_equal(sinter_xa_commit_prepared(f->res, f->c, br.gid, br.local_xid, &out),
                         SINTER_OK);
        assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    }
    assert_int_equal(acct_v(f->admin, 1), 150);
    /* Without the recorded id the same retry cannot be told from a lost branch: never
     * "success" on a guess. */
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->c, br.gid, 0, &out), SINTER_ENOTFOUND);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    /* A rollback of a committed branch: unretryable, never Rollbacked. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->c, br.gid, br.local_xid, &out),
                     SINTER_ESTATE);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE);
}

/* A commit of a branch whose transaction was rolled back: the branch is lost for the commit,
 * reported unretryable, never success. */
static void t_commit_after_rollback_is_unretryable(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    uint32_t out = 0;
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_ESTATE);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    assert_non_null(strstr(sinter_xa_errmsg(), "aborted"));
    assert_int_equal(acct_v(f->admin, 1), 100);
    /* Without a recorded id: still not success. */
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, 0, &out),
                     SINTER_ENOTFOUND);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
}

static void t_rollback_of_unknown_gid(void **state)
{
    struct fx *f = *state;
    uint32_t out = 0;
    /* Never prepared, no recorded id: an empty rollback. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, "sntr:" NS ":9:99:5", 0, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    /* An id too far ahead ("in the future", 22023): its transaction never ran here. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, "sntr:" NS ":9:99:5",
                                                 (uint64_t)1 << 50, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(
        sinter_xa_commit_prepared(f->res, f->admin, "sntr:" NS ":9:99:5", (uint64_t)1 << 50, &out),
        SINTER_ENOTFOUND);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    /* A gid that is not ours (other namespace, or unsafe): refused, unretryable. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, "sntr:other:9:99:5", 0, &out),
                     SINTER_EINVAL);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE);
    assert_int_equal(
        sinter_xa_commit_prepared(f->res, f->admin, "x'; DROP TABLE acct; --", 0, &out),
        SINTER_EINVAL);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    /* A connection inside a transaction cannot run COMMIT PREPARED: retryable elsewhere. */
    exec_ok(f->admin, "BEGIN");
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, "sntr:" NS ":9:99:5", 0, &out),
                     SINTER_ESTATE);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    exec_ok(f->admin, "ROLLBACK");
}

/* Phase 2 on a connection that died: retryable; the retry on a live one commits. */
static void t_phase2_on_dead_connection_is_retryable(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    PGconn *doomed = connect_db();
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(doomed));
    exec_ok(f->admin, sql);
    uint32_t out = 0;
    int rc = sinter_xa_commit_prepared(f->res, doomed, br.gid, br.local_xid, &out);
    assert_int_equal(rc, SINTER_ETRANSPORT);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    PQfinish(doomed);
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(acct_v(f->admin, 1), 150);
}

/* The same COMMIT PREPARED delivered by two RM instances at once, on many branches: each
 * answer is Committed (the winner, or the loser resolved by pg_xact_status) or retryable
 * (55000 "is busy" while the winner is finishing), never unretryable; the retry commits. */
#define DUP_N 40

struct dup {
    const struct sinter_xa_resource *res;
    pthread_barrier_t bar;
    struct sinter_xa_branch br[DUP_N];
    int rc[2][DUP_N];
    uint32_t out[2][DUP_N];
    int side;
};

static void *dup_worker(void *p)
{
    struct dup *d = p;
    int side = __atomic_fetch_add(&d->side, 1, __ATOMIC_SEQ_CST);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "worker connect: %s", PQerrorMessage(c));
        abort();
    }
    for (int i = 0; i < DUP_N; i++) {
        pthread_barrier_wait(&d->bar);
        d->rc[side][i] = sinter_xa_commit_prepared(d->res, c, d->br[i].gid, d->br[i].local_xid,
                                                   &d->out[side][i]);
    }
    PQfinish(c);
    return NULL;
}

static void t_concurrent_duplicate_commits(void **state)
{
    struct fx *f = *state;
    struct dup *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->res = f->res;
    exec_ok(f->admin, "CREATE TABLE dup (id int PRIMARY KEY)");
    for (int i = 0; i < DUP_N; i++) {
        struct sinter_xid x = {9, (uint64_t)i + 1};
        assert_int_equal(sinter_xa_begin(f->res, f->c, &x, &d->br[i]), SINTER_OK);
        char sql[64];
        snprintf(sql, sizeof sql, "INSERT INTO dup VALUES (%d)", i);
        exec_ok(f->c, sql);
        assert_int_equal(sinter_xa_prepare(f->res, f->c, &d->br[i]), SINTER_OK);
    }
    assert_int_equal(pthread_barrier_init(&d->bar, NULL, 2), 0);
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, dup_worker, d), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    pthread_barrier_destroy(&d->bar);
    int busy = 0;
    for (int i = 0; i < DUP_N; i++) {
        int committed = 0;
        for (int k = 0; k < 2; k++) {
            if (d->rc[k][i] == SINTER_OK) {
                assert_int_equal(d->out[k][i], SINTER_BS_PHASE2_COMMITTED);
                committed++;
            } else {
                assert_int_equal(d->rc[k][i], SINTER_EBUSY);
                assert_int_equal(d->out[k][i], SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
                busy++;
            }
        }
        assert_true(committed >= 1);
        uint32_t out = 0;
        assert_int_equal(
            sinter_xa_commit_prepared(f->res, f->admin, d->br[i].gid, d->br[i].local_xid, &out),
            SINTER_OK);
        assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    }
    printf("duplicate commits: %d of %d answered 'busy' (retryable)\n", busy, 2 * DUP_N);
    assert_int_equal(q1(f->admin, "SELECT count(*) FROM dup"), DUP_N);
    exec_ok(f->admin, "DROP TABLE dup");
    free(d);
}

/* ---- a killed RM and recovery ---- */

struct found {
    int n;
    struct sinter_xa_prepared p[8];
};

static int collect(void *arg, PGconn *conn, const struct sinter_xa_prepared *p)
{
    struct found *fd = arg;
    (void)conn;
    if (fd->n < 8)
        fd->p[fd->n] = *p;
    fd->n++;
    return SINTER_OK;
}

struct resolve_arg {
    const struct sinter_xa_resource *res;
    uint32_t gs;
    int n;
    uint32_t outcome[8];
};

static int resolve_each(void *arg, PGconn *conn, const struct sinter_xa_prepared *p)
{
    struct resolve_arg *a = arg;
    uint32_t out = 0;
    int rc = sinter_xa_resolve(a->res, conn, p, a->gs, &out);
    if (a->n < 8)
        a->outcome[a->n] = out;
    a->n++;
    return rc == SINTER_OK ? SINTER_OK : rc;
}

static void t_killed_rm_recovered_elsewhere(void **state)
{
    struct fx *f = *state;
    /* Three prepared branches on a connection that then dies (the RM process is killed). */
    PGconn *rm = connect_db();
    struct sinter_xa_branch b1, b2, b3;
    struct sinter_xid x2 = {7, 1002}, x3 = {8, 5};
    branch_update_prepare(f, rm, &XID1, 1, 150, &b1);
    branch_update_prepare(f, rm, &x2, 2, 250, &b2);
    assert_int_equal(sinter_xa_begin(f->res, rm, &x3, &b3), SINTER_OK);
    exec_ok(rm, "INSERT INTO acct VALUES (3, 3)");
    assert_int_equal(sinter_xa_prepare(f->res, rm, &b3), SINTER_OK);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(rm));
    exec_ok(f->admin, sql);
    PQfinish(rm);

    /* Another resource's branch on the same database: not ours, never listed. */
    struct fake_tc other_tc = {.gs = SINTER_GS_BEGIN};
    struct sinter_xa_config ocfg = make_cfg(&other_tc);
    ocfg.ns = "xatest_other"; /* '_' would be a LIKE wildcard: the scan does not use LIKE */
    struct sinter_xa_resource *other = NULL;
    assert_int_equal(sinter_xa_resource_open(&ocfg, f->admin, &other, NULL, 0), SINTER_OK);
    struct sinter_xa_config lcfg = make_cfg(&other_tc);
    lcfg.ns = "xates"; /* a prefix of ours: must not see ours either */
    struct sinter_xa_resource *shorter = NULL;
    assert_int_equal(sinter_xa_resource_open(&lcfg, f->admin, &shorter, NULL, 0), SINTER_OK);
    PGconn *oc = connect_db();
    struct sinter_xa_branch ob;
    assert_int_equal(sinter_xa_begin(other, oc, &XID1, &ob), SINTER_OK);
    exec_ok(oc, "INSERT INTO acct VALUES (4, 4)");
    assert_int_equal(sinter_xa_prepare(other, oc, &ob), SINTER_OK);
    PQfinish(oc);

    /* The restarted RM scans from a new connection. */
    PGconn *fresh = connect_db();
    struct found fd = {0};
    assert_int_equal(sinter_xa_recover(f->res, fresh, collect, &fd), SINTER_OK);
    assert_int_equal(fd.n, 3);
    struct sinter_xa_branch *want[3] = {&b1, &b2, &b3};
    for (int i = 0; i < 3; i++) { /* oldest first */
        assert_string_equal(fd.p[i].gid, want[i]->gid);
        assert_int_equal(fd.p[i].xid.group, want[i]->xid.group);
        assert_int_equal(fd.p[i].xid.index, want[i]->xid.index);
        assert_int_equal(fd.p[i].branch_id, want[i]->branch_id);
        assert_int_equal(fd.p[i].local_xid, want[i]->local_xid); /* widened back to xid8 */
        assert_string_equal(fd.p[i].owner, "postgres");
        assert_true(fd.p[i].prepared_ms > 1600000000000LL);
    }
    struct found none = {0};
    assert_int_equal(sinter_xa_recover(shorter, fresh, collect, &none), SINTER_OK);
    assert_int_equal(none.n, 0);

    /* The coordinator's answers: b1 committing, b2 rolled back, b3 still Begin (left). */
    uint32_t out = 0;
    assert_int_equal(sinter_xa_resolve(f->res, fresh, &fd.p[0], SINTER_GS_COMMITTING, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(
        sinter_xa_resolve(f->res, fresh, &fd.p[1], SINTER_GS_TIMEOUT_ROLLBACKING, &out), SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(sinter_xa_resolve(f->res, fresh, &fd.p[2], SINTER_GS_BEGIN, &out), SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE1_DONE);
    /* Unknown to the coordinator: left for an operator, said so. */
    assert_int_equal(sinter_xa_resolve(f->res, fresh, &fd.p[2], SINTER_GS_FINISHED, &out),
                     SINTER_ENOTFOUND);
    assert_non_null(strstr(sinter_xa_errmsg(), fd.p[2].gid));
    assert_int_equal(acct_v(f->admin, 1), 150);
    assert_int_equal(acct_v(f->admin, 2), 100);
    /* The commit is delivered again by the coordinator (its reply was lost): deduplicated. */
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, b1.gid, fd.p[0].local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);

    /* Later the global of b3 commits: the scan + resolve loop finishes it. */
    struct resolve_arg ra = {.res = f->res, .gs = SINTER_GS_COMMITTED};
    assert_int_equal(sinter_xa_recover(f->res, fresh, resolve_each, &ra), SINTER_OK);
    assert_int_equal(ra.n, 1);
    assert_int_equal(ra.outcome[0], SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(q1(f->admin, "SELECT count(*) FROM acct WHERE id = 3"), 1);

    /* The other resource's branch is still there, untouched; its owner finishes it. */
    struct found ofd = {0};
    assert_int_equal(sinter_xa_recover(other, fresh, collect, &ofd), SINTER_OK);
    assert_int_equal(ofd.n, 1);
    assert_string_equal(ofd.p[0].gid, ob.gid);
    assert_int_equal(sinter_xa_resolve(other, fresh, &ofd.p[0], SINTER_GS_ROLLBACKING, &out),
                     SINTER_OK);
    assert_int_equal(q1(f->admin, "SELECT count(*) FROM acct WHERE id = 4"), 0);
    assert_int_equal(prepared_count(f->admin), 0);
    PQfinish(fresh);
    sinter_xa_resource_close(other);
    sinter_xa_resource_close(shorter);
}

/* Phase 2 with the recorded id lost (0): looked up in pg_prepared_xacts before committing, so
 * the retry is still deduplicated. */
static void t_commit_without_recorded_id(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    uint32_t out = 0;
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, 0, &out), SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(acct_v(f->admin, 1), 150);
}

/* ---- the late-prepare guard ---- */

static void t_late_prepare_after_rollback(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 0 WHERE id = 1");
    /* Meanwhile the global times out; the coordinator's rollback delivery arrives before the
     * branch prepared. With the recorded id (given at registration) it sees the transaction
     * running: retryable. */
    f->tc.gs = SINTER_GS_TIMEOUT_ROLLBACKING;
    uint32_t out = 0;
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_EBUSY);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE);
    /* Without it (a coordinator that lost the id; registration always carries it): nothing
     * prepared, an empty rollback, and only the guard below protects the late PREPARE. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, 0, &out), SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    /* Now the late PREPARE: its PhaseOne_Done is refused (the global is no longer Begin), the
     * guard sees the rollback and undoes it at once. */
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ESTATE);
    assert_non_null(strstr(sinter_xa_errmsg(), "late prepare"));
    assert_int_equal(f->tc.done, 1); /* the refused report */
    assert_int_equal(f->tc.guards, 1);
    assert_int_equal(f->tc.failed, 1);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(prepared_count(f->admin), 0);
    /* Its row lock is gone: another transaction updates the row without waiting. */
    exec_ok(f->admin, "SET lock_timeout = '1s'");
    exec_ok(f->admin, "UPDATE acct SET v = 101 WHERE id = 1");
    assert_int_equal(acct_v(f->admin, 1), 101);
    /* The coordinator's retry now finds the transaction aborted: Rollbacked. */
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
}

static void t_guard_failure_and_refused_report(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    uint32_t out = 0;
    /* The coordinator's status cannot be read, but the report is accepted: the accepted
     * PhaseOne_Done is the guard, nothing else is asked and the branch stays prepared. */
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 0 WHERE id = 1");
    f->tc.gs_rc = SINTER_ETRANSPORT;
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_OK);
    assert_int_equal(f->tc.guards, 0);
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(prepared_count(f->admin), 0);
    f->tc.gs_rc = SINTER_OK;
    /* The rollback decision lands before the report: the report is refused, the guard sees the
     * rollback side and undoes the branch at once. */
    struct sinter_xid x2 = {7, 1002};
    assert_int_equal(sinter_xa_begin(f->res, f->c, &x2, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 0 WHERE id = 1");
    f->tc.report_rc = SINTER_ESTATE;
    f->tc.gs_after_report = SINTER_GS_ROLLBACKING;
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ESTATE);
    assert_int_equal(prepared_count(f->admin), 0);
    assert_int_equal(f->tc.guards, 1);
    assert_int_equal(f->tc.failed, 1);
    /* A report lost in transit while the global is Begin: the branch stays prepared, the
     * coordinator drives it. */
    f->tc.report_rc = SINTER_ETIMEOUT;
    f->tc.gs_after_report = 0;
    f->tc.gs = SINTER_GS_BEGIN;
    struct sinter_xid x3 = {7, 1003};
    assert_int_equal(sinter_xa_begin(f->res, f->c, &x3, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 33 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ETIMEOUT);
    assert_int_equal(f->tc.guards, 2);
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 1), 33);
    /* A report lost in transit while the global went to the rollback side: rolled back at once,
     * never left holding its locks. */
    f->tc.gs_after_report = SINTER_GS_TIMEOUT_ROLLBACKING;
    struct sinter_xid x4 = {7, 1004};
    assert_int_equal(sinter_xa_begin(f->res, f->c, &x4, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 44 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ESTATE);
    assert_non_null(strstr(sinter_xa_errmsg(), "late prepare"));
    assert_int_equal(f->tc.guards, 3);
    assert_int_equal(f->tc.failed, 2);
    assert_int_equal(prepared_count(f->admin), 0);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(acct_v(f->admin, 1), 33);
    f->tc.gs_after_report = 0;
    f->tc.report_rc = SINTER_OK;
    f->tc.gs = SINTER_GS_BEGIN;
}

/* Without a report hook nothing tells the coordinator the branch prepared, so the guard asks
 * the global's status right after PREPARE: Begin keeps the branch prepared, the rollback side
 * or a status that cannot be read rolls it back at once. */
static void t_guard_without_report_hook(void **state)
{
    struct fx *f = *state;
    struct fake_tc tc = {.gs = SINTER_GS_BEGIN};
    struct sinter_xa_config cfg = make_cfg(&tc);
    cfg.hooks.report = NULL;
    struct sinter_xa_resource *res = NULL;
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, NULL, 0), SINTER_OK);
    struct sinter_xa_branch br;
    uint32_t out = 0;
    assert_int_equal(sinter_xa_begin(res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 5 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    assert_int_equal(tc.guards, 1);
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(sinter_xa_commit_prepared(res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 1), 5);
    tc.gs = SINTER_GS_ROLLBACKING;
    struct sinter_xid x2 = {7, 1002};
    assert_int_equal(sinter_xa_begin(res, f->c, &x2, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 6 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_ESTATE);
    assert_non_null(strstr(sinter_xa_errmsg(), "late prepare"));
    assert_int_equal(tc.guards, 2);
    assert_int_equal(prepared_count(f->admin), 0);
    tc.gs = SINTER_GS_BEGIN;
    tc.gs_rc = SINTER_ETRANSPORT;
    struct sinter_xid x3 = {7, 1003};
    assert_int_equal(sinter_xa_begin(res, f->c, &x3, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 7 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_ETRANSPORT);
    assert_int_equal(prepared_count(f->admin), 0);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(acct_v(f->admin, 1), 5);
    assert_int_equal(tc.done + tc.failed, 0); /* no hook: nothing reported */
    sinter_xa_resource_close(res);
}

/* The coordinator knows a branch from its registration on, before any report: the branch
 * id and, since begin registers after BEGIN, the local transaction id. A rollback delivered to
 * a Registered branch whose transaction is still running (a global timeout while the service
 * works) must be retryable: the transaction may still prepare. Once it has ended the retry is
 * an empty rollback. */
static void t_rollback_of_registered_branch_in_progress(void **state)
{
    struct fx *f = *state;
    f->tc.watch = f->c;
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 0 WHERE id = 1");
    f->tc.gs = SINTER_GS_TIMEOUT_ROLLBACKING;
    /* Phase 2 with what the coordinator holds: the gid and the id given at registration. */
    uint32_t out = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            sinter_xa_rollback_prepared(f->res, f->admin, br.gid, f->tc.reg_local_xid, &out),
            SINTER_EBUSY);
        assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE);
        assert_non_null(strstr(sinter_xa_errmsg(), "in progress"));
    }
    /* Registered from inside the branch transaction, with its id. */
    assert_int_equal(f->tc.registers, 1);
    assert_true(f->tc.reg_in_txn);
    assert_true(br.local_xid > 0);
    assert_int_equal(f->tc.reg_local_xid, br.local_xid);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_INTRANS); /* untouched by phase 2 */
    /* The service gives up: its transaction ends, and the retry is an empty rollback. */
    assert_int_equal(sinter_xa_abort(f->res, f->c, &br), SINTER_OK);
    assert_int_equal(
        sinter_xa_rollback_prepared(f->res, f->admin, br.gid, f->tc.reg_local_xid, &out),
        SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(acct_v(f->admin, 1), 100);
    /* The same when the transaction ends with its session (the RM died mid-branch). */
    PGconn *doomed = connect_db();
    struct sinter_xid x2 = {7, 1002};
    assert_int_equal(sinter_xa_begin(f->res, doomed, &x2, &br), SINTER_OK);
    exec_ok(doomed, "UPDATE acct SET v = 0 WHERE id = 2");
    uint64_t lx = f->tc.reg_local_xid;
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, lx, &out), SINTER_EBUSY);
    PQfinish(doomed);
    int rc = SINTER_EBUSY;
    /* The backend exits asynchronously: bounded by a deadline, not a count of 20 ms sleeps (2 s
     * was short for a starved 2-core machine). */
    int64_t until = mono_ms() + 30000;
    while (rc == SINTER_EBUSY && mono_ms() < until) {
        rc = sinter_xa_rollback_prepared(f->res, f->admin, br.gid, lx, &out);
        if (rc == SINTER_EBUSY) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(rc, SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(acct_v(f->admin, 2), 100);
    /* A register that fails leaves no transaction behind, and nothing is reported. */
    f->tc.register_rc = SINTER_ETRANSPORT;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &x2, &br), SINTER_ETRANSPORT);
    assert_true(f->tc.reg_in_txn);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(f->tc.failed, 1); /* the abort above, nothing more */
    assert_int_equal(sinter_xa_abort(f->res, f->c, &br), SINTER_ESTATE); /* never begun */
}

/* The commit decision overtakes a branch (the TM committed while this service was still in
 * phase one). The coordinator's first COMMIT PREPARED finds the transaction running: retryable.
 * Then the branch prepares; the coordinator refuses its PhaseOne_Done (the global is no longer
 * Begin) and the guard sees the commit side: the branch stays PREPARED for the coordinator to
 * commit, and prepare says so with SINTER_ETIMEOUT ("outcome decided by the coordinator"), never
 * with SINTER_ESTATE, which means "rolled back". */
static void t_refused_report_on_commit_side_stays_prepared(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 42 WHERE id = 1");
    f->tc.gs = SINTER_GS_COMMITTING;
    f->tc.report_rc = SINTER_ESTATE;
    uint32_t out = 0;
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, f->tc.reg_local_xid, &out),
                     SINTER_EBUSY);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ETIMEOUT);
    assert_non_null(strstr(sinter_xa_errmsg(), "Committing"));
    assert_non_null(strstr(sinter_xa_errmsg(), "stays prepared"));
    assert_int_equal(f->tc.done, 1);
    assert_int_equal(f->tc.failed, 0);
    assert_int_equal(f->tc.guards, 1); /* only after the refusal */
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(prepared_count(f->admin), 1);
    /* The coordinator's retry commits it. */
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, f->tc.reg_local_xid, &out),
                     SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(acct_v(f->admin, 1), 42);

    /* Still Begin and the report accepted: plain success (a coordinator refuses PhaseOne_Done
     * on the commit side, so "commit side, accepted" cannot happen). */
    f->tc.report_rc = SINTER_OK;
    f->tc.gs = SINTER_GS_BEGIN;
    struct sinter_xid x2 = {7, 1002};
    branch_update_prepare(f, f->c, &x2, 2, 7, &br);
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);

    /* Refused, and the second guard cannot ask: the refusal already proves a decision, which may
     * be commit, so the branch is not undone; the coordinator decides. */
    f->tc.report_rc = SINTER_ESTATE;
    f->tc.gs_rc_after_report = SINTER_ETRANSPORT;
    struct sinter_xid x3 = {7, 1003};
    assert_int_equal(sinter_xa_begin(f->res, f->c, &x3, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 3 WHERE id = 2");
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ETIMEOUT);
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(f->tc.failed, 0);
    assert_int_equal(sinter_xa_commit_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 2), 3);

    /* A report that fails otherwise (lost in transit): the same code, the report's in the
     * message; the branch stays prepared. */
    f->tc.gs_rc = SINTER_OK;
    f->tc.gs_rc_after_report = 0;
    f->tc.gs = SINTER_GS_BEGIN;
    f->tc.report_rc = SINTER_ETRANSPORT;
    struct sinter_xid x4 = {7, 1004};
    assert_int_equal(sinter_xa_begin(f->res, f->c, &x4, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 4 WHERE id = 2");
    assert_int_equal(sinter_xa_prepare(f->res, f->c, &br), SINTER_ETIMEOUT);
    assert_non_null(strstr(sinter_xa_errmsg(), "SINTER_ETRANSPORT"));
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(f->tc.failed, 0);
    assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 2), 3);
}

/* The report_async hook and sinter_xa_report_settle (the RM's async_report, rm/xa.c
 * "Asynchronous PhaseOne_Done"): prepare returns SINTER_OK without reporting; the guard applied
 * later to the report's answer takes a connection from the source only when it has something to
 * roll back, never the branch's. */
struct fake_src {
    PGconn *give; /* handed out by get (NULL: "cannot connect") */
    int gets, puts;
};

static PGconn *fake_get(void *arg)
{
    struct fake_src *s = arg;
    s->gets++;
    return s->give;
}

static void fake_put(void *arg, PGconn *c, int rc)
{
    struct fake_src *s = arg;
    (void)rc;
    assert_ptr_equal(c, s->give);
    s->puts++;
}

static void t_async_report_settle(void **state)
{
    struct fx *f = *state;
    struct sinter_xa_config cfg = make_cfg(&f->tc);
    cfg.hooks.report_async = fake_report_async;
    struct sinter_xa_resource *res = NULL;
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, NULL, 0), SINTER_OK);
    PGconn *pool = connect_db();
    struct fake_src fs = {.give = pool};
    const struct sinter_xa_conn_source src = {.get = fake_get, .put = fake_put, .arg = &fs};
    uint32_t out = 0;
    bool rb = true;

    /* Taken by the hook: OK at once, nothing reported, no status asked, the branch prepared and
     * the caller's connection idle (its own again). */
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(res, f->c, &XID1, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 11 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    assert_int_equal(f->tc.asyncs, 1);
    assert_int_equal(f->tc.done + f->tc.guards, 0);
    assert_string_equal(f->tc.async_br.gid, br.gid);
    assert_int_equal(f->tc.async_br.local_xid, br.local_xid);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(prepared_count(f->admin), 1);
    /* Accepted: nothing to do. */
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_OK, &rb),
                     SINTER_OK);
    assert_false(rb);
    assert_int_equal(f->tc.guards + fs.gets, 0);
    /* Refused on the commit side (a commit overtook the report): left prepared, no connection
     * taken; the coordinator's phase 2 commits it. */
    f->tc.gs = SINTER_GS_COMMITTING;
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_ESTATE, &rb),
                     SINTER_ETIMEOUT);
    assert_false(rb);
    assert_int_equal(f->tc.guards, 1);
    assert_int_equal(fs.gets, 0);
    assert_int_equal(f->tc.failed, 0);
    assert_int_equal(prepared_count(f->admin), 1);
    /* Lost while the global is still Begin: left too. */
    f->tc.gs = SINTER_GS_BEGIN;
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_ETIMEOUT, &rb),
                     SINTER_ETIMEOUT);
    assert_int_equal(fs.gets, 0);
    assert_int_equal(sinter_xa_commit_prepared(res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 1), 11);

    /* Refused on the rollback side: ROLLBACK PREPARED at once on the source's connection,
     * PhaseOne_Failed reported; again (as when phase 2 did it first): 42704, aborted, done. */
    f->tc.gs = SINTER_GS_BEGIN;
    struct sinter_xid x2 = {7, 1002};
    assert_int_equal(sinter_xa_begin(res, f->c, &x2, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 12 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    f->tc.gs = SINTER_GS_ROLLBACKING;
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_ESTATE, &rb),
                     SINTER_ESTATE);
    assert_true(rb);
    assert_int_equal(fs.gets, 1);
    assert_int_equal(fs.puts, 1);
    assert_int_equal(f->tc.failed, 1);
    assert_int_equal(prepared_count(f->admin), 0);
    assert_int_equal(acct_v(f->admin, 1), 11);
    rb = false;
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_ESTATE, &rb),
                     SINTER_ESTATE);
    assert_true(rb);
    /* Lost, and the global turned out timed out: rolled back the same way. */
    f->tc.gs = SINTER_GS_BEGIN;
    struct sinter_xid x3 = {7, 1003};
    assert_int_equal(sinter_xa_begin(res, f->c, &x3, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 13 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    f->tc.gs = SINTER_GS_TIMEOUT_ROLLBACKING;
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_ETRANSPORT, &rb),
                     SINTER_ESTATE);
    assert_true(rb);
    assert_int_equal(prepared_count(f->admin), 0);
    /* No connection to be had: still ESTATE (rollback side), not rolled back here, left to the
     * rollback's phase 2. */
    f->tc.gs = SINTER_GS_BEGIN;
    struct sinter_xid x4 = {7, 1004};
    assert_int_equal(sinter_xa_begin(res, f->c, &x4, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 14 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    f->tc.gs = SINTER_GS_ROLLBACKING;
    fs.give = NULL;
    assert_int_equal(sinter_xa_report_settle(res, &src, &f->tc.async_br, SINTER_ESTATE, &rb),
                     SINTER_ESTATE);
    assert_false(rb);
    assert_non_null(strstr(sinter_xa_errmsg(), "no connection"));
    assert_int_equal(prepared_count(f->admin), 1);
    assert_int_equal(sinter_xa_rollback_prepared(res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    assert_int_equal(acct_v(f->admin, 1), 11);

    /* The hook declines (queue full): reported synchronously, as without it. */
    f->tc.gs = SINTER_GS_BEGIN;
    f->tc.async_rc = SINTER_EBUSY;
    int done0 = f->tc.done;
    struct sinter_xid x5 = {7, 1005};
    assert_int_equal(sinter_xa_begin(res, f->c, &x5, &br), SINTER_OK);
    exec_ok(f->c, "UPDATE acct SET v = 15 WHERE id = 1");
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_OK);
    assert_int_equal(f->tc.done, done0 + 1);
    assert_int_equal(sinter_xa_rollback_prepared(res, f->admin, br.gid, br.local_xid, &out),
                     SINTER_OK);
    /* Invalid arguments. */
    assert_int_equal(sinter_xa_report_settle(res, NULL, &br, SINTER_ESTATE, &rb), SINTER_EINVAL);
    assert_int_equal(sinter_xa_report_settle(NULL, &src, &br, SINTER_ESTATE, &rb), SINTER_EINVAL);
    PQfinish(pool);
    sinter_xa_resource_close(res);
}

/* ---- hang protection ---- */

/* Two branches of one global update the same row. The second waits for the first's lock, which
 * only the coordinator's phase 2 releases, and PostgreSQL sees no deadlock: lock_timeout ends
 * the wait (55P03, retryable), the branch fails phase one, the global rolls back. Once with the
 * first branch still active, once with it prepared (a prepared transaction keeps its locks). */
static void t_same_row_two_branches_bounded(void **state)
{
    struct fx *f = *state;
    for (int prepared = 0; prepared < 2; prepared++) {
        PGconn *c2 = connect_db();
        struct sinter_xa_branch b1, b2;
        assert_int_equal(sinter_xa_begin(f->res, f->c, &XID1, &b1), SINTER_OK);
        exec_ok(f->c, "UPDATE acct SET v = v - 10 WHERE id = 1");
        if (prepared)
            assert_int_equal(sinter_xa_prepare(f->res, f->c, &b1), SINTER_OK);
        assert_int_equal(sinter_xa_begin(f->res, c2, &XID1, &b2), SINTER_OK);
        int64_t t0 = mono_ms();
        char st[6];
        exec_state(c2, "UPDATE acct SET v = v + 10 WHERE id = 1", st);
        int64_t waited = mono_ms() - t0;
        assert_string_equal(st, "55P03");
        assert_int_equal(sinter_xa_sqlstate_rc(st), SINTER_EBUSY);
        assert_true(waited < HANG_GUARD_MS);
        printf("same row, first branch %s: second waited %lld ms, then 55P03\n",
               prepared ? "prepared" : "active", (long long)waited);
        /* The service ends phase one: prepare refuses the aborted transaction. */
        assert_int_equal(sinter_xa_prepare(f->res, c2, &b2), SINTER_EDB);
        assert_int_equal(PQtransactionStatus(c2), PQTRANS_IDLE);
        /* The TM rolls the global back. */
        uint32_t out = 0;
        if (prepared) {
            assert_int_equal(
                sinter_xa_rollback_prepared(f->res, f->admin, b1.gid, b1.local_xid, &out),
                SINTER_OK);
        } else {
            assert_int_equal(sinter_xa_abort(f->res, f->c, &b1), SINTER_OK);
        }
        assert_int_equal(sinter_xa_rollback_prepared(f->res, f->admin, b2.gid, b2.local_xid, &out),
                         SINTER_OK);
        assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
        assert_int_equal(acct_v(f->admin, 1), 100);
        PQfinish(c2);
    }
    assert_int_equal(prepared_count(f->admin), 0);
}

/* A service statement running too long is ended by the branch's statement_timeout (57014). */
static void t_statement_timeout_bounds_service_sql(void **state)
{
    struct fx *f = *state;
    struct fake_tc tc = {.gs = SINTER_GS_BEGIN};
    struct sinter_xa_config cfg = make_cfg(&tc);
    cfg.statement_timeout_ms = 300;
    struct sinter_xa_resource *res = NULL;
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, NULL, 0), SINTER_OK);
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(res, f->c, &XID1, &br), SINTER_OK);
    int64_t t0 = mono_ms();
    char st[6];
    exec_state(f->c, "SELECT pg_sleep(20)", st);
    assert_true(mono_ms() - t0 < HANG_GUARD_MS);
    assert_string_equal(st, "57014");
    assert_int_equal(sinter_xa_sqlstate_rc(st), SINTER_EBUSY);
    assert_int_equal(sinter_xa_abort(res, f->c, &br), SINTER_OK);
    assert_int_equal(tc.failed, 1);
    sinter_xa_resource_close(res);
}

/* A statement of the layer itself that does not return (here PREPARE TRANSACTION, held up by a
 * deferred trigger; it could be a stalled network) is ended by the client-side deadline: the
 * layer cancels it (57014), nothing is prepared, the connection stays usable. */
static void t_client_deadline_cancels(void **state)
{
    struct fx *f = *state;
    exec_ok(f->admin, "DROP TABLE IF EXISTS slow");
    exec_ok(f->admin, "CREATE TABLE slow (id int)");
    exec_ok(f->admin, "CREATE OR REPLACE FUNCTION slow_trg() RETURNS trigger LANGUAGE plpgsql "
                      "AS $$BEGIN PERFORM pg_sleep(20); RETURN NULL; END$$");
    exec_ok(f->admin, "CREATE CONSTRAINT TRIGGER slow_at_prepare AFTER INSERT ON slow "
                      "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_trg()");
    struct fake_tc tc = {.gs = SINTER_GS_BEGIN};
    struct sinter_xa_config cfg = make_cfg(&tc);
    cfg.statement_timeout_ms = UINT32_MAX; /* unbounded on the server: only our deadline */
    cfg.call_timeout_ms = 300;
    struct sinter_xa_resource *res = NULL;
    assert_int_equal(sinter_xa_resource_open(&cfg, f->c, &res, NULL, 0), SINTER_OK);
    struct sinter_xa_branch br;
    assert_int_equal(sinter_xa_begin(res, f->c, &XID1, &br), SINTER_OK);
    assert_int_equal(q1(f->c, "SELECT setting::bigint FROM pg_settings "
                              "WHERE name = 'statement_timeout'"),
                     0);
    exec_ok(f->c, "INSERT INTO slow VALUES (1)");
    int64_t t0 = mono_ms();
    assert_int_equal(sinter_xa_prepare(res, f->c, &br), SINTER_ETIMEOUT);
    int64_t took = mono_ms() - t0;
    printf("PREPARE held by a deferred trigger: cancelled after %lld ms: %s\n", (long long)took,
           sinter_xa_errmsg());
    assert_true(took < HANG_GUARD_MS);
    assert_non_null(strstr(sinter_xa_errmsg(), "57014"));
    assert_int_equal(tc.failed, 1);
    assert_int_equal(tc.done, 0);
    assert_int_equal(PQstatus(f->c), CONNECTION_OK);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
    assert_int_equal(q1(f->c, "SELECT count(*) FROM slow"), 0);
    assert_int_equal(prepared_count(f->admin), 0);
    sinter_xa_resource_close(res);
    exec_ok(f->admin, "DROP TABLE slow");
    exec_ok(f->admin, "DROP FUNCTION slow_trg()");
}

/* The worst case: the server does not answer at all, not even the cancel (here its backend
 * process is stopped with SIGSTOP; in production a stalled network or host). The call still
 * returns within deadline + grace, retryable, and says the connection must be discarded. */
static void t_unanswered_cancel_gives_up(void **state)
{
    struct fx *f = *state;
    struct fake_tc tc = {.gs = SINTER_GS_BEGIN};
    struct sinter_xa_config cfg = make_cfg(&tc);
    cfg.call_timeout_ms = 300;
    struct sinter_xa_resource *res = NULL;
    assert_int_equal(sinter_xa_resource_open(&cfg, f->admin, &res, NULL, 0), SINTER_OK);
    struct sinter_xa_branch br;
    branch_update_prepare(f, f->c, &XID1, 1, 150, &br);
    PGconn *stuck = connect_db();
    pid_t pid = (pid_t)PQbackendPID(stuck);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint32_t out = 0;
    int64_t t0 = mono_ms();
    int rc = sinter_xa_commit_prepared(res, stuck, br.gid, br.local_xid, &out);
    int64_t took = mono_ms() - t0;
    assert_int_equal(kill(pid, SIGCONT), 0);
    printf("stopped backend: gave up after %lld ms: %s\n", (long long)took, sinter_xa_errmsg());
    assert_int_equal(rc, SINTER_ETIMEOUT);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_non_null(strstr(sinter_xa_errmsg(), "discard"));
    assert_true(took < HANG_GUARD_MS);
    PQfinish(stuck);
    /* Whatever the resumed backend did with the COMMIT PREPARED (it may have run it before the
     * cancel landed), the coordinator's retry gets the right answer. */
    /* 55000 "is busy" while the resumed backend commits: it needs the CPU first, so a deadline
     * rather than a count of 50 ms sleeps (5 s was short for a starved 2-core machine). */
    for (int64_t until = mono_ms() + 30000; mono_ms() < until;) {
        rc = sinter_xa_commit_prepared(res, f->admin, br.gid, br.local_xid, &out);
        if (rc != SINTER_EBUSY)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(rc, SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(acct_v(f->admin, 1), 150);
    sinter_xa_resource_close(res);
}

/* ---- main: our own database on the fixture's server ---- */

static void prepare_database(const char *file)
{
    char base[800];
    if (sinter_test_pg_conninfo(file, base, sizeof base) != 0 ||
        sinter_test_pg_fresh_db(base, TEST_DB, conninfo, sizeof conninfo) != 0) {
        exit(1);
    }
}

/* At the very end: nothing prepared anywhere in our database, and the database is dropped. */
static int final_check(void)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "final check: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    /* Our database only: the server is shared with other tests (tests/integration/pg). */
    PGresult *r =
        PQexec(c, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()");
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    cleanup_prepared(c);
    PQfinish(c);
    if (n != 0) {
        fprintf(stderr, "final check: pg_prepared_xacts has %lld row(s)\n", n);
        return 1;
    }
    printf("final check: pg_prepared_xacts has no row of " TEST_DB "\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    prepare_database(argv[1]);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_gid_format_and_parse),
        T(t_gid_max_on_server),
        T(t_resource_open_validates),
        T(t_commit_path),
        T(t_rollback_path),
        T(t_abort_path),
        T(t_failed_statement_fails_phase_one),
        T(t_begin_preconditions),
        T(t_commit_twice_is_deduplicated),
        T(t_commit_after_rollback_is_unretryable),
        T(t_rollback_of_unknown_gid),
        T(t_phase2_on_dead_connection_is_retryable),
        T(t_concurrent_duplicate_commits),
        T(t_killed_rm_recovered_elsewhere),
        T(t_commit_without_recorded_id),
        T(t_late_prepare_after_rollback),
        T(t_guard_failure_and_refused_report),
        T(t_guard_without_report_hook),
        T(t_rollback_of_registered_branch_in_progress),
        T(t_refused_report_on_commit_side_stays_prepared),
        T(t_async_report_settle),
        T(t_same_row_two_branches_bounded),
        T(t_statement_timeout_bounds_service_sql),
        T(t_client_deadline_cancels),
        T(t_unanswered_cancel_gives_up),
    };
#undef T
    int failed = cmocka_run_group_tests_name("xa_pg", tests, NULL, NULL);
    return failed != 0 ? failed : final_check();
}
