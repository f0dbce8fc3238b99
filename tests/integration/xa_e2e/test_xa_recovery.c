/*
 * The XA resource's periodic recovery scan and its phase 2 under a database outage, against
 * three real sinter-tc processes on loopback and the real PostgreSQL of the "pg" ctest fixture.
 *
 *   orphan, commit    a second RM handle of resource rec_a prepares a branch and is closed
 *                     before phase 2. While the global is Begin the first handle's periodic
 *                     scans leave it alone (counted `left`). The TM commits; the first handle's
 *                     phase 2 for rec_a fails every time (its handler is replaced by one that
 *                     answers SINTER_ETRANSPORT, as if its database were unreachable), so the
 *                     coordinator retries and finally gives up (CommitRetryTimeout); the
 *                     periodic scan of the first handle — never reopened — commits the branch.
 *   orphan, rollback  the same with a TM rollback: the scan rolls the branch back, the global
 *                     ends RollbackRetryTimeout, the money is where it was.
 *   scan races        resource rec_b with its real phase-2 handler, scanned every 20 ms by the
 *                     maintenance thread and in a tight loop by a test thread, while globals
 *                     commit and roll back one after another: every global ends Committed /
 *                     Rollbacked (a delivery that loses the race to a scan reports correctly),
 *                     nothing stays prepared, the balance counts every commit once.
 *   database down     resource rec_c on its own database; the database stops accepting
 *                     connections (ALLOW_CONNECTIONS false) and its pooled connections are
 *                     terminated, then the TM commits: the deliveries fail (connection lost,
 *                     connection refused) and are reported retryable — the global stays
 *                     Committing / CommitRetrying, never CommitFailed — and once the database
 *                     accepts connections again the next delivery commits: Committed.
 *   coordinator down  (last: stops the cluster) three prepared branches of rec_d, every node
 *                     stopped: a scan asks about the first, gets no answer within the handle's
 *                     deadline and ends the round there (found 1, failed 1, "ended early"),
 *                     touching nothing.
 *
 * args: sinter-tc binary, the fixture's conninfo file.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "pgtest.h"
#include "sinter/rm.h"
#include "sinter/rm_xa.h"
#include "sinter/tm.h"
#include "sinter/types.h"
#include "tccluster.h"
#include "testproc.h"

#define SECRET  "xa-recovery-secret"
#define NODES   3
#define WAIT_MS 90000u
#define DB_MAIN "xa_rec"
#define DB_DOWN "xa_rec_down"

static const char *g_tc_bin;
static char g_base[512];
static struct sinter_tcc g_c;
static struct sinter_tm *g_tm;

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

static long long bal(const char *dbname, int id)
{
    char sql[100];
    snprintf(sql, sizeof sql, "SELECT balance FROM accounts WHERE id = %d", id);
    return query_ll(dbname, sql);
}

/* Prepared transactions of namespace ns (the view is server-wide). */
static long long prepared(const char *ns)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, 'sntr:%s:')", ns);
    return query_ll("postgres", sql);
}

static bool wait_prepared(const char *ns, long long want)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (prepared(ns) != want && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(50);
    }
    return prepared(ns) == want;
}

/* Lets DB_DOWN accept connections again (also after an interrupted earlier run). */
static void allow_connections(bool allow)
{
    PGconn *c = db("postgres");
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS %s", DB_DOWN,
             allow ? "true" : "false");
    PGresult *r = PQexec(c, sql);
    if (allow && PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* Absent before the first run: fine. */
    } else if (!allow && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
}

/* ---- RM helpers ---- */

static uint32_t g_deadline_ms = 30000; /* of the RM handles rm_open makes */

static struct sinter_rm *rm_open(const char *const *res, uint32_t n)
{
    const char *urls[SINTER_TCC_MAX_NODES];
    int nu = sinter_tcc_client_urls(&g_c, urls);
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = urls;
    o.n_addresses = (size_t)nu;
    o.secret = SECRET;
    o.application_id = "xa-recovery";
    o.resources = res;
    o.n_resources = n;
    o.deadline_ms = g_deadline_ms;
    o.poll_wait_ms = 1000;
    o.workers = 2;
    o.reporters = 2;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    return rm;
}

static struct sinter_rm_xa *xa_reg(struct sinter_rm *rm, const char *res, const char *ns,
                                   const char *dbname, uint32_t interval_ms, bool skip)
{
    char ci[700];
    snprintf(ci, sizeof ci, "%s dbname=%s", g_base, dbname);
    struct sinter_rm_xa_opts xo = {.resource_id = res,
                                   .ns = ns,
                                   .conninfo = ci,
                                   .pool_size = 2,
                                   .skip_recovery = skip,
                                   .recovery_interval_ms = interval_ms};
    struct sinter_rm_xa *x = NULL;
    int rc = sinter_rm_xa_register(rm, &xo, &x, NULL);
    if (rc != SINTER_OK) {
        fail_msg("xa register %s: %s (%s)", res, sinter_strerror(rc), sinter_rm_errmsg());
    }
    return x;
}

/* One branch of xid on resource (res, ns) running sql, prepared, by a second RM handle that is
 * closed right after (it never serves phase 2): the prepared transaction is left behind. */
static void orphan_branch(const char *res, const char *ns, const char *xid, const char *sql)
{
    struct sinter_rm *rm2 = rm_open(NULL, 0);
    struct sinter_rm_xa *x2 = xa_reg(rm2, res, ns, DB_MAIN, UINT32_MAX, true);
    PGconn *c = db(DB_MAIN);
    struct sinter_xa_branch br;
    int rc = sinter_rm_xa_begin(x2, c, xid, &br);
    if (rc != SINTER_OK) {
        fail_msg("xa begin: %s (%s / %s)", sinter_strerror(rc), sinter_xa_errmsg(),
                 sinter_rm_errmsg());
    }
    sql_ok(c, sql);
    assert_int_equal(sinter_rm_xa_end(x2, c, &br, true), SINTER_OK);
    sinter_rm_close(rm2);
    PQfinish(c);
}

/* The first handle's phase 2 for rec_a: always fails as an unreachable database would. */
static atomic_int g_failed_deliveries;

static int failing_phase2(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    (void)arg;
    (void)w;
    (void)status;
    atomic_fetch_add(&g_failed_deliveries, 1);
    return SINTER_ETRANSPORT;
}

static uint64_t scans_of(struct sinter_rm_xa *x, struct sinter_rm_xa_recovery *sum)
{
    uint64_t n = 0;
    sinter_rm_xa_recovery_totals(x, sum, &n);
    return n;
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    /* The coordinator gives up on a branch after 15 s of failed deliveries: long enough for the
     * outage scenario to see retries, short enough for the give-up scenarios. */
    static const char extra[] = "[tc]\n"
                                "default_timeout_ms = 120000\n"
                                "retry_initial_ms = 50\n"
                                "retry_max_ms = 500\n"
                                "phase2_lease_ms = 5000\n"
                                "max_commit_retry_ms = 15000\n"
                                "max_rollback_retry_ms = 15000\n";
    if (sinter_tcc_init(&g_c, g_tc_bin, "xa-recovery", NODES, 1, SECRET, extra) != 0 ||
        sinter_tcc_start_all(&g_c) != 0 || sinter_tcc_wait_leaders(&g_c, 1, WAIT_MS) != 0) {
        return -1;
    }
    allow_connections(true);
    static const char *const dbs[] = {DB_MAIN, DB_DOWN};
    for (int i = 0; i < 2; i++) {
        char ci[700];
        if (sinter_test_pg_fresh_db(g_base, dbs[i], ci, sizeof ci) != 0) {
            return -1;
        }
        PGconn *d = db(dbs[i]);
        sql_ok(d, "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
        sql_ok(d, "INSERT INTO accounts VALUES (1, 1000), (2, 1000)");
        PQfinish(d);
    }
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
    return 0;
}

/* ---- scenarios ---- */

static const char DEBIT1[] = "UPDATE accounts SET balance = balance - 100 WHERE id = 1";

static void test_orphans_settled_by_periodic_scan(void **state)
{
    (void)state;
    static const char *const res[] = {"rec_a"};
    struct sinter_rm *rm = rm_open(res, 1);
    struct sinter_rm_xa *x = xa_reg(rm, "rec_a", "recA", DB_MAIN, 1000, false);
    assert_int_equal(sinter_rm_set_handler(rm, "rec_a", SINTER_BT_XA, failing_phase2, NULL),
                     SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(DB_MAIN, 1);

    /* Commit side. */
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "orphan-commit", 0, xid), SINTER_OK);
    orphan_branch("rec_a", "recA", xid, DEBIT1);
    assert_int_equal(prepared("recA"), 1);
    /* Begin: two periodic scans after the prepare see it and leave it to the coordinator. */
    struct sinter_rm_xa_recovery sum;
    uint64_t s0 = scans_of(x, &sum);
    uint32_t left0 = sum.left;
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (scans_of(x, &sum) < s0 + 2 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(50);
    }
    assert_true(scans_of(x, &sum) >= s0 + 2);
    assert_true(sum.left >= left0 + 1);
    assert_int_equal(prepared("recA"), 1);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_commit_side(st));
    /* Nothing but the first handle's scan can commit it: its phase 2 always fails. */
    assert_true(wait_prepared("recA", 0));
    assert_int_equal(bal(DB_MAIN, 1), b0 - 100);
    scans_of(x, &sum);
    assert_true(sum.committed >= 1);
    /* The coordinator's deliveries kept failing: it gave up, the global stays visible. */
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    assert_true(atomic_load(&g_failed_deliveries) >= 1);

    /* Rollback side. */
    assert_int_equal(sinter_tm_begin(g_tm, "orphan-rollback", 0, xid), SINTER_OK);
    orphan_branch("rec_a", "recA", xid, DEBIT1);
    assert_int_equal(prepared("recA"), 1);
    uint32_t rb0 = sum.rolled_back;
    assert_int_equal(sinter_tm_rollback(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_rollback_side(st));
    assert_true(wait_prepared("recA", 0));
    assert_int_equal(bal(DB_MAIN, 1), b0 - 100); /* unchanged by the rolled back branch */
    scans_of(x, &sum);
    assert_true(sum.rolled_back >= rb0 + 1);
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    fprintf(stderr,
            "rec_a: %" PRIu64 " scans: found %u committed %u rolled_back %u left %u failed %u; "
            "%d failed deliveries\n",
            scans_of(x, &sum), sum.found, sum.committed, sum.rolled_back, sum.left, sum.failed,
            atomic_load(&g_failed_deliveries));
    sinter_rm_close(rm);
}

struct hammer {
    struct sinter_rm_xa *x;
    atomic_bool stop;
    atomic_int scans;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        (void)sinter_rm_xa_recover(h->x, NULL);
        atomic_fetch_add(&h->scans, 1);
    }
    return NULL;
}

static void test_scan_races_phase2(void **state)
{
    (void)state;
    static const char *const res[] = {"rec_b"};
    struct sinter_rm *rm = rm_open(res, 1);
    /* No scan at registration: every scan counted below is periodic or the test thread's. */
    struct sinter_rm_xa *x = xa_reg(rm, "rec_b", "recB", DB_MAIN, 20, true);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    struct hammer h = {.x = x};
    atomic_init(&h.stop, false);
    atomic_init(&h.scans, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hammer_main, &h), 0);
    long long b0 = bal(DB_MAIN, 2);
    int commits = 0;
    enum { ROUNDS = 24 };
    for (int i = 0; i < ROUNDS; i++) {
        char xid[SINTER_XID_STRLEN];
        assert_int_equal(sinter_tm_begin(g_tm, "race", 0, xid), SINTER_OK);
        PGconn *c = db(DB_MAIN);
        struct sinter_xa_branch br;
        assert_int_equal(sinter_rm_xa_begin(x, c, xid, &br), SINTER_OK);
        sql_ok(c, "UPDATE accounts SET balance = balance + 1 WHERE id = 2");
        assert_int_equal(sinter_rm_xa_end(x, c, &br, true), SINTER_OK);
        PQfinish(c);
        uint32_t st = 0;
        if (i % 3 != 2) {
            assert_int_equal(sinter_tm_commit(g_tm, xid, WAIT_MS, &st), SINTER_OK);
            assert_int_equal(st, SINTER_GS_COMMITTED);
            commits++;
        } else {
            assert_int_equal(sinter_tm_rollback(g_tm, xid, WAIT_MS, &st), SINTER_OK);
            assert_int_equal(st, SINTER_GS_ROLLBACKED);
        }
    }
    atomic_store(&h.stop, true);
    pthread_join(t, NULL);
    assert_true(wait_prepared("recB", 0));
    assert_int_equal(bal(DB_MAIN, 2), b0 + commits);
    struct sinter_rm_xa_recovery sum;
    uint64_t n = scans_of(x, &sum);
    fprintf(stderr,
            "rec_b: %" PRIu64 " scans (%d by the test thread): found %u committed %u "
            "rolled_back %u left %u failed %u\n",
            n, atomic_load(&h.scans), sum.found, sum.committed, sum.rolled_back, sum.left,
            sum.failed);
    /* The periodic scans ran (every 20 ms over the whole loop: many more than two)... */
    assert_true(n >= (uint64_t)atomic_load(&h.scans) + 2);
    /* ...and the scans ran while branches were prepared (how many they settled before phase 2
     * did depends on scheduling: printed above, not asserted). */
    assert_true(sum.found >= 1);
    sinter_rm_close(rm);
}

static void test_database_down_is_retryable(void **state)
{
    (void)state;
    static const char *const res[] = {"rec_c"};
    struct sinter_rm *rm = rm_open(res, 1);
    /* No periodic scan: only phase 2 may settle the branch here. */
    struct sinter_rm_xa *x = xa_reg(rm, "rec_c", "recC", DB_DOWN, UINT32_MAX, false);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(DB_DOWN, 1);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "db-down", 0, xid), SINTER_OK);
    PGconn *c = db(DB_DOWN);
    struct sinter_xa_branch br;
    assert_int_equal(sinter_rm_xa_begin(x, c, xid, &br), SINTER_OK);
    sql_ok(c, DEBIT1);
    assert_int_equal(sinter_rm_xa_end(x, c, &br, true), SINTER_OK);
    PQfinish(c);
    assert_int_equal(prepared("recC"), 1);

    /* The database goes away: no new connection, and the pooled ones are cut. */
    allow_connections(false);
    PGconn *admin = db("postgres");
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' AND "
             "pid <> pg_backend_pid()",
             DB_DOWN);
    sql_ok(admin, sql);
    PQfinish(admin);

    struct sinter_rm_stats s0, s;
    sinter_rm_stats(rm, &s0);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_commit_side(st));
    /* Several deliveries fail while it is down, each reported retryable: the coordinator keeps
     * the global on Committing / CommitRetrying (a final failure would end it CommitFailed). */
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    do {
        sinter_test_sleep_ms(50);
        sinter_rm_stats(rm, &s);
    } while (s.reports_ok < s0.reports_ok + 3 && sinter_test_now_ms() < end);
    assert_true(s.reports_ok >= s0.reports_ok + 3);
    assert_int_equal(sinter_tm_status(g_tm, xid, 0, &st), SINTER_OK);
    fprintf(stderr, "database down: %" PRIu64 " reports accepted, global %s\n",
            s.reports_ok - s0.reports_ok, sinter_global_status_name(st));
    assert_true(st == SINTER_GS_COMMITTING || st == SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(prepared("recC"), 1);

    /* Back: the next delivery commits. */
    allow_connections(true);
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(prepared("recC"), 0);
    assert_int_equal(bal(DB_DOWN, 1), b0 - 100);
    sinter_rm_close(rm);
}

/* Rolls back every prepared transaction of namespace ns (the test's own leftovers). */
static void rollback_ns(const char *ns)
{
    PGconn *c = db("postgres");
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, 'sntr:%s:')", ns);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) {
        char *lit = PQescapeLiteral(c, PQgetvalue(r, i, 0), strlen(PQgetvalue(r, i, 0)));
        assert_non_null(lit);
        char rb[300];
        snprintf(rb, sizeof rb, "ROLLBACK PREPARED %s", lit);
        PQfreemem(lit);
        PGconn *dc = db(DB_MAIN); /* a prepared transaction is settled from its own database */
        sql_ok(dc, rb);
        PQfinish(dc);
    }
    PQclear(r);
    PQfinish(c);
}

/* Runs last: it stops the cluster. Three prepared branches, the coordinator down: a scan round
 * asks about the first, gets no answer within the handle's deadline, and ends there instead of
 * waiting a deadline per branch (a periodic scan runs on the RM's maintenance thread). */
static void test_coordinator_down_ends_round(void **state)
{
    (void)state;
    static const char *const res[] = {"rec_d"};
    char xid[3][SINTER_XID_STRLEN];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sinter_tm_begin(g_tm, "coordinator-down", 0, xid[i]), SINTER_OK);
        orphan_branch("rec_d", "recD", xid[i], "SELECT 1"); /* read-only: no row locks */
    }
    assert_int_equal(prepared("recD"), 3);
    g_deadline_ms = 1500;
    struct sinter_rm *rm = rm_open(res, 1);
    g_deadline_ms = 30000;
    struct sinter_rm_xa *x = xa_reg(rm, "rec_d", "recD", DB_MAIN, UINT32_MAX, true);
    sinter_tcc_stop_all(&g_c);
    struct sinter_rm_xa_recovery rec;
    memset(&rec, 0, sizeof rec);
    int rc = sinter_rm_xa_recover(x, &rec);
    fprintf(stderr, "coordinator down: %s, found %u failed %u: %s\n", sinter_errname(rc), rec.found,
            rec.failed, sinter_rm_errmsg());
    assert_true(rc == SINTER_ETIMEOUT || rc == SINTER_ETRANSPORT || rc == SINTER_ENOTLEADER);
    assert_int_equal(rec.found, 1); /* asked about one branch, not three */
    assert_int_equal(rec.failed, 1);
    assert_non_null(strstr(sinter_rm_errmsg(), "ended early"));
    assert_int_equal(prepared("recD"), 3); /* nothing was guessed */
    sinter_rm_close(rm);
    rollback_ns("recD");
    assert_int_equal(prepared("recD"), 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SINTER_TC CONNINFO_FILE\n", argv[0]);
        return 2;
    }
    g_tc_bin = argv[1];
    if (sinter_test_pg_conninfo(argv[2], g_base, sizeof g_base) != 0) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orphans_settled_by_periodic_scan),
        cmocka_unit_test(test_scan_races_phase2), cmocka_unit_test(test_database_down_is_retryable),
        cmocka_unit_test(test_coordinator_down_ends_round), /* last: stops the cluster */
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    allow_connections(true); /* also after a failure: the next run's fresh-db needs it */
    return sinter_tcc_finish(&g_c, rc);
}
