/*
 * XA branches on PostgreSQL end to end: libsinter-tm, libsinter-rm with the XA resource
 * (sinter/rm_xa.h) and three real sinter-tc processes on loopback, against the real PostgreSQL
 * of the "pg" ctest fixture (max_prepared_transactions = 64). Two databases, xa_e2e_a and
 * xa_e2e_b, each with account 1; every global moves money from A to B, so A + B is conserved.
 *
 * Scenarios (the list), each followed by check_clean(): none of the test's gids is left
 * in pg_prepared_xacts and A + B is unchanged.
 *   commit            two branches prepared, TM commit -> COMMIT PREPARED on the RM's workers
 *   rollback          second branch fails, TM rollback -> first branch ROLLBACK PREPARED
 *   repeated commit   COMMIT PREPARED of a committed branch again (a duplicate delivery): 42704
 *                     resolved by pg_xact_status -> PhaseTwo_Committed, balances moved once;
 *                     the same for a rollback, and a repeated TM commit answers Committed
 *   timeout           a prepared branch whose global is never committed: the coordinator's
 *                     timeout rollback removes it
 *   same row          two branches of one global update the same row: the second waits for
 *                     the first's PREPARED transaction (PostgreSQL cannot see that wait as a
 *                     deadlock); the coordinator's timeout rollback releases it, the late
 *                     branch is rolled back by the late-prepare guard, nothing hangs
 *   RM killed         an RM process (xa_rm_helper) prepares two branches and is SIGKILLed;
 *                     the TM commits; the restarted RM's recovery scan commits both
 *   leader killed     branches prepared, TM commit decided, the group's leader SIGKILLed
 *                     before any phase 2 ran (nobody served the resources yet); the new leader
 *                     drives phase 2 once an RM serves them
 *
 * args: sinter-tc binary, the fixture's conninfo file, the xa_rm_helper binary.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "tccluster.h"
#include "testproc.h"

#include "pgtest.h"
#include "sinter/client.h"
#include "sinter/rm.h"
#include "sinter/rm_xa.h"
#include "sinter/tm.h"
#include "sinter/types.h"

#define SECRET  "xa-e2e-secret"
#define NODES   3
#define WAIT_MS 60000
#define TOTAL   2000 /* A + B */

static const char *g_tc_bin, *g_helper;
static char g_base[512]; /* the fixture's conninfo */
static struct sinter_tcc g_c;
static struct sinter_tm *g_tm;
static struct sinter_rm *g_rm;
static struct sinter_rm_xa *g_xa, *g_xb;

/* ---- PostgreSQL helpers ---- */

static PGconn *db(const char *name)
{
    PGconn *c = sinter_test_pg_connect(g_base, name);
    assert_non_null(c);
    return c;
}

static void sql_ok(PGconn *c, const char *sql)
{
    assert_int_equal(sinter_test_pg_exec(c, sql), 0);
}

static long long query_ll(const char *dbname, const char *sql)
{
    long long v = 0;
    assert_int_equal(sinter_test_pg_query_ll(g_base, dbname, sql, &v), 0);
    return v;
}

static long long bal(const char *dbname)
{
    return query_ll(dbname, "SELECT balance FROM accounts WHERE id = 1");
}

/* This test's prepared transactions, in every database of the server (the view is
 * cluster-wide); every namespace the test uses starts with "e2e". */
static long long prepared_left(void)
{
    return query_ll("postgres",
                    "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, 'sntr:e2e')");
}

/* Polls until no gid of ours is prepared (phase 2 runs asynchronously), then checks A + B. */
static void check_clean(void)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (prepared_left() != 0 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(100);
    }
    assert_int_equal(prepared_left(), 0);
    assert_int_equal(bal("xa_e2e_a") + bal("xa_e2e_b"), TOTAL);
}

/* One branch on db with sql, ended with ok; returns sinter_rm_xa_end's code. */
static int branch(struct sinter_rm_xa *x, PGconn *c, const char *xid, const char *sql, bool ok,
                  struct sinter_xa_branch *br)
{
    int rc = sinter_rm_xa_begin(x, c, xid, br);
    if (rc != SINTER_OK) {
        fail_msg("xa begin: %s (%s / %s)", sinter_strerror(rc), sinter_xa_errmsg(),
                 sinter_rm_errmsg());
    }
    sql_ok(c, sql);
    return sinter_rm_xa_end(x, c, br, ok);
}

static const char DEBIT[] = "UPDATE accounts SET balance = balance - 100 WHERE id = 1";
static const char CREDIT[] = "UPDATE accounts SET balance = balance + 100 WHERE id = 1";

static uint32_t wait_final(const char *xid)
{
    uint32_t st = 0;
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    return st;
}

/* ---- cluster helpers ---- */

static struct sinter_rm *rm_open(const char *const *res, uint32_t n)
{
    const char *urls[SINTER_TCC_MAX_NODES];
    int nu = sinter_tcc_client_urls(&g_c, urls);
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = urls;
    o.n_addresses = (size_t)nu;
    o.secret = SECRET;
    o.application_id = "xa-e2e";
    o.resources = res;
    o.n_resources = n;
    o.deadline_ms = 30000;
    o.poll_wait_ms = 1000;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    return rm;
}

static struct sinter_rm_xa *xa_reg(struct sinter_rm *rm, const char *res, const char *ns,
                                   const char *dbname, uint32_t lock_timeout_ms)
{
    char ci[700];
    snprintf(ci, sizeof ci, "%s dbname=%s", g_base, dbname);
    struct sinter_rm_xa_opts xo = {.resource_id = res,
                                   .ns = ns,
                                   .conninfo = ci,
                                   .lock_timeout_ms = lock_timeout_ms,
                                   .pool_size = 2};
    struct sinter_rm_xa *x = NULL;
    int rc = sinter_rm_xa_register(rm, &xo, &x, NULL);
    if (rc != SINTER_OK) {
        fail_msg("xa register %s: %s (%s)", res, sinter_strerror(rc), sinter_rm_errmsg());
    }
    return x;
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    static const char extra[] = "[tc]\n"
                                "default_timeout_ms = 60000\n"
                                "retry_initial_ms = 50\n"
                                "retry_max_ms = 500\n"
                                "phase2_lease_ms = 5000\n";
    if (sinter_tcc_init(&g_c, g_tc_bin, "xa-e2e", NODES, 1, SECRET, extra) != 0 ||
        sinter_tcc_start_all(&g_c) != 0 || sinter_tcc_wait_leaders(&g_c, 1, WAIT_MS) != 0) {
        return -1;
    }
    /* Fresh databases (prepared transactions an interrupted run left in them rolled back). */
    static const char *const dbs[] = {"xa_e2e_a", "xa_e2e_b"};
    for (int i = 0; i < 2; i++) {
        char ci[700];
        if (sinter_test_pg_fresh_db(g_base, dbs[i], ci, sizeof ci) != 0) {
            return -1;
        }
        PGconn *d = db(dbs[i]);
        sql_ok(d, "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
        sql_ok(d, "INSERT INTO accounts VALUES (1, 1000)");
        PQfinish(d);
    }
    static const char *const res[] = {"db_a", "db_b"};
    g_rm = rm_open(res, 2);
    /* lock_timeout far above the globals' timeouts: in the same-row case it is the
     * coordinator's timeout rollback that must end the wait, not PostgreSQL's bound. */
    g_xa = xa_reg(g_rm, "db_a", "e2ea", "xa_e2e_a", 120000);
    g_xb = xa_reg(g_rm, "db_b", "e2eb", "xa_e2e_b", 120000);
    assert_int_equal(sinter_rm_start(g_rm), SINTER_OK);
    const char *urls[SINTER_TCC_MAX_NODES];
    int nu = sinter_tcc_client_urls(&g_c, urls);
    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = urls;
    to.n_addresses = (size_t)nu;
    to.secret = SECRET;
    to.deadline_ms = 30000;
    return sinter_tm_open(&g_tm, &to) == SINTER_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sinter_tm_close(g_tm);
    sinter_rm_close(g_rm);
    return 0;
}

/* ---- scenarios ---- */

static void test_commit(void **state)
{
    (void)state;
    long long a0 = bal("xa_e2e_a"), b0 = bal("xa_e2e_b");
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "commit", 0, xid), SINTER_OK);
    PGconn *ca = db("xa_e2e_a"), *cb = db("xa_e2e_b");
    struct sinter_xa_branch ba, bb;
    assert_int_equal(branch(g_xa, ca, xid, DEBIT, true, &ba), SINTER_OK);
    assert_int_equal(branch(g_xb, cb, xid, CREDIT, true, &bb), SINTER_OK);
    assert_int_equal(prepared_left(), 2);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    check_clean();
    assert_int_equal(bal("xa_e2e_a"), a0 - 100);
    assert_int_equal(bal("xa_e2e_b"), b0 + 100);

    /* Repeated COMMIT PREPARED deliveries: what a worker runs for a duplicate delivery (lost
     * report, expired lease). 42704 is resolved with pg_xact_status(local xid) = committed. */
    for (int i = 0; i < 2; i++) {
        uint32_t out = 0;
        assert_int_equal(
            sinter_xa_commit_prepared(sinter_rm_xa_resource(g_xa), ca, ba.gid, ba.local_xid, &out),
            SINTER_OK);
        assert_int_equal(out, SINTER_BS_PHASE2_COMMITTED);
        /* The same duplicate as a rollback delivery can never be turned into "rolled back". */
        assert_int_equal(sinter_xa_rollback_prepared(sinter_rm_xa_resource(g_xa), ca, ba.gid,
                                                     ba.local_xid, &out),
                         SINTER_ESTATE);
        assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE);
    }
    /* A repeated TM commit answers the current status. */
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(bal("xa_e2e_a"), a0 - 100);
    PQfinish(ca);
    PQfinish(cb);
}

static void test_rollback(void **state)
{
    (void)state;
    long long a0 = bal("xa_e2e_a"), b0 = bal("xa_e2e_b");
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "rollback", 0, xid), SINTER_OK);
    PGconn *ca = db("xa_e2e_a"), *cb = db("xa_e2e_b");
    struct sinter_xa_branch ba, bb;
    assert_int_equal(branch(g_xa, ca, xid, DEBIT, true, &ba), SINTER_OK);
    /* The credit fails in the service: its branch is rolled back and reported failed. */
    assert_int_equal(branch(g_xb, cb, xid, CREDIT, false, &bb), SINTER_OK);
    assert_int_equal(prepared_left(), 1);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_rollback(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    check_clean();
    assert_int_equal(bal("xa_e2e_a"), a0);
    assert_int_equal(bal("xa_e2e_b"), b0);
    /* A duplicate rollback delivery: 42704, aborted -> Rollbacked again, nothing changes. */
    uint32_t out = 0;
    assert_int_equal(
        sinter_xa_rollback_prepared(sinter_rm_xa_resource(g_xa), ca, ba.gid, ba.local_xid, &out),
        SINTER_OK);
    assert_int_equal(out, SINTER_BS_PHASE2_ROLLBACKED);
    /* ... and a commit of it is unretryable, never success. */
    assert_int_equal(
        sinter_xa_commit_prepared(sinter_rm_xa_resource(g_xa), ca, ba.gid, ba.local_xid, &out),
        SINTER_ESTATE);
    assert_int_equal(out, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    PQfinish(ca);
    PQfinish(cb);
}

static void test_timeout_rollback(void **state)
{
    (void)state;
    long long a0 = bal("xa_e2e_a"), b0 = bal("xa_e2e_b");
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "timeout", 4000, xid), SINTER_OK);
    PGconn *ca = db("xa_e2e_a"), *cb = db("xa_e2e_b");
    struct sinter_xa_branch ba, bb;
    assert_int_equal(branch(g_xa, ca, xid, DEBIT, true, &ba), SINTER_OK);
    assert_int_equal(branch(g_xb, cb, xid, CREDIT, true, &bb), SINTER_OK);
    /* The TM never commits: the coordinator's timeout rolls both prepared branches back. */
    uint32_t st = wait_final(xid);
    assert_int_equal(st, SINTER_GS_TIMEOUT_ROLLBACKED);
    check_clean();
    assert_int_equal(bal("xa_e2e_a"), a0);
    assert_int_equal(bal("xa_e2e_b"), b0);
    /* The late commit is refused. */
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_ESTATE);
    PQfinish(ca);
    PQfinish(cb);
}

static void test_same_row(void **state)
{
    (void)state;
    long long a0 = bal("xa_e2e_a"), b0 = bal("xa_e2e_b");
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "same-row", 4000, xid), SINTER_OK);
    PGconn *c1 = db("xa_e2e_a"), *c2 = db("xa_e2e_a");
    struct sinter_xa_branch b1, b2;
    assert_int_equal(branch(g_xa, c1, xid, DEBIT, true, &b1), SINTER_OK);
    /* Branch 2 of the same global on the same row: its UPDATE waits for branch 1's prepared
     * transaction, a wait no deadlock detector sees. lock_timeout is 120 s: the coordinator's
     * timeout (4 s) must end it, by rolling branch 1 back. */
    assert_int_equal(sinter_rm_xa_begin(g_xa, c2, xid, &b2), SINTER_OK);
    uint64_t t0 = sinter_test_now_ms();
    PGresult *r = PQexec(c2, DEBIT);
    uint64_t waited = sinter_test_now_ms() - t0;
    fprintf(stderr, "same row: second UPDATE returned after %" PRIu64 " ms: %s\n", waited,
            PQresStatus(PQresultStatus(r)));
    /* It returned (no hang): released when the coordinator rolled branch 1 back, long before
     * the 120 s lock_timeout. */
    assert_true(waited < 100000);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    /* Its PREPARE meets the late-prepare guard: the global is on the rollback side now. */
    assert_int_equal(sinter_rm_xa_end(g_xa, c2, &b2, true), SINTER_ESTATE);
    uint32_t st = wait_final(xid);
    assert_int_equal(st, SINTER_GS_TIMEOUT_ROLLBACKED);
    check_clean();
    assert_int_equal(bal("xa_e2e_a"), a0);
    assert_int_equal(bal("xa_e2e_b"), b0);
    assert_int_equal(PQtransactionStatus(c1), PQTRANS_IDLE);
    assert_int_equal(PQtransactionStatus(c2), PQTRANS_IDLE);
    PQfinish(c1);
    PQfinish(c2);
}

/* Starts the helper with args; its stdout goes to out_path. */
static pid_t helper(const char *mode, const char *xid, const char *out_path)
{
    const char *urls[SINTER_TCC_MAX_NODES];
    int nu = sinter_tcc_client_urls(&g_c, urls);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0) {
            _exit(127);
        }
        char *argv[16];
        int a = 0;
        argv[a++] = (char *)g_helper;
        argv[a++] = (char *)mode;
        argv[a++] = g_base;
        argv[a++] = (char *)SECRET;
        argv[a++] = (char *)xid;
        for (int i = 0; i < nu; i++) {
            argv[a++] = (char *)urls[i];
        }
        argv[a] = NULL;
        execv(g_helper, argv);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

static bool file_has(const char *path, const char *needle, char *line, size_t cap)
{
    FILE *f = fopen(path, "r");
    bool found = false;
    if (f != NULL) {
        while (!found && fgets(line, (int)cap, f) != NULL) {
            found = strstr(line, needle) != NULL;
        }
        fclose(f);
    }
    return found;
}

static void test_rm_killed(void **state)
{
    (void)state;
    long long a0 = bal("xa_e2e_a"), b0 = bal("xa_e2e_b");
    char xid[SINTER_XID_STRLEN], out[512], line[512];
    snprintf(out, sizeof out, "%s/helper.out", g_c.tmp);
    assert_int_equal(sinter_tm_begin(g_tm, "rm-killed", 0, xid), SINTER_OK);
    pid_t pid = helper("prepare", xid, out);
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (!file_has(out, "PREPARED", line, sizeof line) && sinter_test_now_ms() < end) {
        int ws = 0;
        if (waitpid(pid, &ws, WNOHANG) == pid) {
            fail_msg("helper exited before preparing (status %d)", ws);
        }
        sinter_test_sleep_ms(50);
    }
    assert_true(file_has(out, "PREPARED", line, sizeof line));
    /* Killed between PREPARE and COMMIT PREPARED. */
    sinter_test_kill9(&pid);
    assert_int_equal(prepared_left(), 2);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_commit_side(st));
    /* Nobody serves helper_a / helper_b now: both branches stay prepared. */
    assert_int_equal(prepared_left(), 2);
    pid = helper("recover", xid, out);
    int ws = 0;
    end = sinter_test_now_ms() + 2 * WAIT_MS;
    pid_t w = 0;
    while ((w = waitpid(pid, &ws, WNOHANG)) == 0 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(100);
    }
    if (w == 0) {
        sinter_test_kill9(&pid);
        fail_msg("recovering helper did not finish");
    }
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    /* The restarted RM's recovery scan committed each branch (commit side). */
    assert_true(file_has(out, "RECOVERED helper_a found=1 committed=1", line, sizeof line));
    assert_true(file_has(out, "RECOVERED helper_b found=1 committed=1", line, sizeof line));
    char want[64];
    snprintf(want, sizeof want, "STATUS %d", SINTER_GS_COMMITTED);
    assert_true(file_has(out, want, line, sizeof line));
    check_clean();
    assert_int_equal(bal("xa_e2e_a"), a0 - 100);
    assert_int_equal(bal("xa_e2e_b"), b0 + 100);
}

static void test_leader_killed(void **state)
{
    (void)state;
    long long a0 = bal("xa_e2e_a"), b0 = bal("xa_e2e_b");
    /* An RM for resources nobody serves yet: phase one now, phase 2 only after the kill. */
    static const char *const res[] = {"late_a", "late_b"};
    struct sinter_rm *rm = rm_open(res, 2);
    struct sinter_rm_xa *xa = xa_reg(rm, "late_a", "e2ela", "xa_e2e_a", 0);
    struct sinter_rm_xa *xb = xa_reg(rm, "late_b", "e2elb", "xa_e2e_b", 0);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "leader-killed", 0, xid), SINTER_OK);
    PGconn *ca = db("xa_e2e_a"), *cb = db("xa_e2e_b");
    struct sinter_xa_branch ba, bb;
    assert_int_equal(branch(xa, ca, xid, DEBIT, true, &ba), SINTER_OK);
    assert_int_equal(branch(xb, cb, xid, CREDIT, true, &bb), SINTER_OK);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_commit_side(st));
    int victim = sinter_tcc_meta_leader(&g_c, SECRET, 0, WAIT_MS);
    assert_true(victim > 0);
    sinter_tcc_kill9(&g_c, victim);
    fprintf(stderr, "leader killed: node %d, after the decision, before phase 2\n", victim);
    assert_int_equal(prepared_left(), 2);
    /* Now an RM serves the resources: the new leader delivers the commits. */
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    st = wait_final(xid);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    check_clean();
    assert_int_equal(bal("xa_e2e_a"), a0 - 100);
    assert_int_equal(bal("xa_e2e_b"), b0 + 100);
    sinter_rm_close(rm);
    PQfinish(ca);
    PQfinish(cb);
    assert_int_equal(sinter_tcc_start(&g_c, victim), 0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s SINTER_TC CONNINFO_FILE XA_RM_HELPER\n", argv[0]);
        return 2;
    }
    g_tc_bin = argv[1];
    g_helper = argv[3];
    if (sinter_test_pg_conninfo(argv[2], g_base, sizeof g_base) != 0) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit),           cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_timeout_rollback), cmocka_unit_test(test_same_row),
        cmocka_unit_test(test_rm_killed),        cmocka_unit_test(test_leader_killed),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return sinter_tcc_finish(&g_c, rc);
}
