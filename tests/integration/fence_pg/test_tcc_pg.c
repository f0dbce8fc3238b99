/*
 * TCC phase 2 on a real PostgreSQL (the ctest fixture "pg") through libsinter-rm, with a fake
 * coordinator node (tests/unit/clients/fake_tc.h) delivering the branches:
 *   - a fence row locked by another session: the confirm gives up after the action's
 *     pg_lock_timeout_ms (SQLSTATE 55P03) and is reported CommitFailed_Retryable instead of
 *     parking the worker; once the lock is gone the redelivery confirms;
 *   - a hook statement running past pg_statement_timeout_ms (57014): retryable too, and the
 *     worker's next delivery (another global) confirms on the same worker;
 *   - the session settings are the action's (SHOW lock_timeout / statement_timeout in a hook).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "../../unit/clients/fake_tc.h"
#include "pgtest.h"
#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/rm.h"
#include "sinter/tcc.h"
#include "sinter/types.h"

#define SECRET  "pg-secret"
#define TEST_DB "sinter_tcc_pg_test"
#define WAIT_MS 30000u

static char conninfo[1024];

static PGconn *connect_db(void)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
    return c;
}

static void must(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

struct hooks {
    atomic_int confirms;
    atomic_int slow; /* 1: the confirm sleeps 3 s (past the statement timeout) */
    char lock_timeout[32], statement_timeout[32];
};

static int confirm_hook(const struct sinter_tcc_ctx *ctx)
{
    struct hooks *h = ctx->user;
    PGconn *c = ctx->db->pg;
    PGresult *r = PQexec(c, "SHOW lock_timeout");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        snprintf(h->lock_timeout, sizeof h->lock_timeout, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = PQexec(c, "SHOW statement_timeout");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        snprintf(h->statement_timeout, sizeof h->statement_timeout, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (atomic_load(&h->slow)) {
        r = PQexec(c, "SELECT pg_sleep(3)");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (!ok)
            return SINTER_EDB; /* the fence classifies the aborted transaction */
    }
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO ledger(entry) VALUES('confirm %s %llu')", ctx->xid,
             (unsigned long long)ctx->branch_id);
    r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    atomic_fetch_add(&h->confirms, 1);
    return ok ? SINTER_OK : SINTER_EDB;
}

static long ledger_rows(PGconn *c, const char *xid)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ledger WHERE entry LIKE 'confirm %s %%'", xid);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static struct fake_item commit_item(uint64_t index, uint64_t branch, uint32_t attempt)
{
    struct fake_item it;
    memset(&it, 0, sizeof it);
    it.code = SINTER_MSG_BRANCH_COMMIT;
    it.xid = (struct sinter_xid){0, index};
    it.branch_id = branch;
    it.branch_type = SINTER_BT_TCC;
    snprintf(it.resource, sizeof it.resource, "pg-pay");
    it.attempt = attempt;
    return it;
}

static void bounded_waits(void **state)
{
    (void)state;
    PGconn *svc = connect_db(); /* the service's connection for the tries */
    PGconn *locker = connect_db();
    must(svc, "CREATE TABLE ledger(entry TEXT)");

    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    const char *addrs[1] = {f.url};
    const char *res[1] = {"pg-pay"};
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = 1;
    o.secret = SECRET;
    o.resources = res;
    o.n_resources = 1;
    o.workers = 1; /* every delivery on the same worker connection */
    o.poll_wait_ms = 500;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    struct hooks h;
    memset(&h, 0, sizeof h);
    struct sinter_tcc_action a;
    memset(&a, 0, sizeof a);
    a.name = "pg-pay";
    a.confirm_fn = confirm_hook;
    a.user = &h;
    a.pg_conninfo = conninfo;
    a.pg_lock_timeout_ms = 300;
    a.pg_statement_timeout_ms = 1000;
    assert_int_equal(sinter_tcc_register(rm, &a), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    struct sinter_fence_db fdb = sinter_fence_db_pg(svc);

    uint64_t b1 = 0, b2 = 0;
    assert_int_equal(sinter_tcc_try(rm, "pg-pay", "0:31", NULL, 0, &fdb, &b1), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "pg-pay", "0:32", NULL, 0, &fdb, &b2), SINTER_OK);

    /* Another session holds the fence row: the confirm's SELECT ... FOR UPDATE would wait
     * forever without a lock timeout (and no report would ever come). */
    must(locker, "BEGIN");
    must(locker, "SELECT * FROM sinter_tcc_fence WHERE xid = '0:31' FOR UPDATE");
    struct fake_item it = commit_item(31, b1, 1);
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 1, WAIT_MS), 1);
    must(locker, "ROLLBACK");
    assert_int_equal(f.reports[0].status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_int_equal(ledger_rows(svc, "0:31"), 0);
    it.attempt = 2;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 2, WAIT_MS), 2);
    assert_int_equal(f.reports[1].status, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(ledger_rows(svc, "0:31"), 1);
    assert_string_equal(h.lock_timeout, "300ms");
    assert_string_equal(h.statement_timeout, "1s");

    /* A hook statement past the statement timeout: retryable, and the worker goes on. */
    atomic_store(&h.slow, 1);
    it = commit_item(32, b2, 1);
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 3, WAIT_MS), 3);
    assert_int_equal(f.reports[2].status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_int_equal(ledger_rows(svc, "0:32"), 0);
    atomic_store(&h.slow, 0);
    it.attempt = 2;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 4, WAIT_MS), 4);
    assert_int_equal(f.reports[3].status, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(ledger_rows(svc, "0:32"), 1);

    sinter_rm_close(rm);
    fake_tc_stop(&f);
    PQfinish(locker);
    PQfinish(svc);
}

static void prepare_database(const char *file)
{
    char base[800];
    if (sinter_test_pg_conninfo(file, base, sizeof base) != 0 ||
        sinter_test_pg_fresh_db(base, TEST_DB, conninfo, sizeof conninfo) != 0) {
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    prepare_database(argv[1]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(bounded_waits)};
    return cmocka_run_group_tests_name("tcc_pg", tests, NULL, NULL);
}
