/*
 * Asynchronous PhaseOne_Done reports of an XA resource (sinter_rm_xa_opts.async_report; the
 * argument: rm/xa.c "Asynchronous PhaseOne_Done"), against three real sinter-tc processes on
 * loopback and the real PostgreSQL of the "pg" ctest fixture. The test-only hold
 * (sinter_rm_xa_test_hold_reports, rm/rm_int.h) keeps the reports back so a decision can come
 * between PREPARE and the report.
 *
 *   accepted, commit     two branches end (SINTER_OK at once), both reports are accepted, the
 *                        TM commits: Committed, nothing prepared, both rows debited.
 *   commit overtakes     reports held, the TM commits (phase 2 commits the Registered
 *                        branch); released, the report is refused, GlobalStatus says commit
 *                        side: left alone. Committed, the row debited once.
 *   rollback, guard      reports held, the RM NOT started (no phase 2 here), the TM rolls back;
 *                        released, the refused report makes the guard ROLLBACK PREPARED at once
 *                        on a pooled connection: nothing prepared, balance unchanged. The RM is
 *                        then started: phase 2's ROLLBACK PREPARED finds 42704, pg_xact_status
 *                        'aborted', Rollbacked.
 *   rollback, phase 2    reports held, the RM started, the TM rolls back and phase 2 ends the
 *                        prepared branch; released, the guard's ROLLBACK PREPARED finds it done.
 *   timeout, guard       a 5 s global, reports held until the coordinator's timeout rollback;
 *                        the guard rolls the branch back; the TM's commit is refused.
 *   timeout races        rounds of 3 s globals whose branch prepares (and reports, and the
 *                        TM commits) at varying times around the timeout, the reports not
 *                        held: every global ends on one side, nothing stays prepared, the
 *                        balance counts exactly the commits.
 *   superseded           report_delay_ms 1000 and the queue held (sinter_rm_xa_test_hold_queue):
 *                        phase 2 commits (rolls back) the branch first and the queued report is
 *                        dropped and freed, never sent.
 *   queue full           the queue's capacity made 1 (sinter_rm_xa_test_queue_cap) and held:
 *                        the second branch's report goes out synchronously (sync_fallbacks),
 *                        both globals commit, nothing stays prepared.
 *   rollback seen        report_delay_ms 1000; the TM rolls back while the branch's transaction
 *                        is open, so phase 2's ROLLBACK PREPARED finds it 'in progress'; the
 *                        late PREPARE then skips the delay: sinter_rm_xa_end reports at once,
 *                        the refusal makes the guard roll back on the caller's connection, and
 *                        it returns SINTER_ESTATE (expedited; nothing queued).
 *   queued, expedited    report_delay_ms 1000, the queue held, the RM not started: the
 *                        report is queued, the TM rolls back, and a phase-2 rollback
 *                        delivery that finds the branch busy (its handler called directly:
 *                        sinter_rm_xa_test_rollback_seen) makes it due at once; sent despite
 *                        the hold, refused, the guard rolls back (expedited 1).
 *   close drains         report_delay_ms 1000, the queue held, the TM rolls back, the RM
 *                        (never started) is closed: the drain sends the report, the guard
 *                        rolls the branch back before close returns; a new handle's phase 2
 *                        ends the global Rollbacked.
 *   option bounds        report_threads 257 / report_delay_ms 1001: SINTER_EINVAL.
 *   closed in flight     a second RM handle prepares with its report held and is closed (the
 *                        report abandoned); a new handle of the resource starts, its recovery
 *                        scan leaves the Begin global alone, the TM commits and phase 2 commits
 *                        the unreported branch.
 *   coordinator down     (last) a held report is released while every sinter-tc node is
 *                        stopped, with the RM's deadline_ms 2000: sent 3 times (resent 2), lost,
 *                        GlobalStatus fails too, left prepared (last_error says why); the nodes
 *                        restart and the TM commits: phase 2 commits the branch.
 *
 * Each scenario with a held report waits until a sender holds it (in_flight) before deciding:
 * otherwise a phase 2 that ends the branch first would (correctly) drop the still queued report
 * and the scenario would test something else.
 *
 * args: sinter-tc binary, the fixture's conninfo file.
 */
#include <inttypes.h>
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

#include "../../../rm/rm_int.h" /* sinter_rm_xa_test_hold_reports: test-only */
#include "pgtest.h"
#include "sinter/rm.h"
#include "sinter/rm_xa.h"
#include "sinter/tm.h"
#include "sinter/types.h"
#include "tccluster.h"
#include "testproc.h"

#define SECRET  "xa-async-secret"
#define NODES   3
#define WAIT_MS 90000u
#define DB      "xa_async"

static const char *g_tc_bin;
static char g_base[512];
static struct sinter_tcc g_c;
static struct sinter_tm *g_tm;

/* ---- PostgreSQL helpers ---- */

static PGconn *db(void)
{
    PGconn *c = sinter_test_pg_connect(g_base, DB);
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

static long long bal(int id)
{
    char sql[100];
    snprintf(sql, sizeof sql, "SELECT balance FROM accounts WHERE id = %d", id);
    return query_ll(DB, sql);
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

/* ---- RM helpers ---- */

static struct sinter_rm *rm_open_dl(const char *res, uint32_t deadline_ms)
{
    const char *urls[SINTER_TCC_MAX_NODES];
    int nu = sinter_tcc_client_urls(&g_c, urls);
    const char *resources[1] = {res};
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = urls;
    o.n_addresses = (size_t)nu;
    o.secret = SECRET;
    o.application_id = "xa-async";
    o.resources = resources;
    o.n_resources = 1;
    o.deadline_ms = deadline_ms;
    o.poll_wait_ms = 1000;
    o.workers = 2;
    o.reporters = 2;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    return rm;
}

static struct sinter_rm *rm_open(const char *res)
{
    return rm_open_dl(res, 30000);
}

static uint32_t g_delay_ms; /* report_delay_ms of the resources xa_reg registers */

static struct sinter_rm_xa *xa_reg(struct sinter_rm *rm, const char *res, const char *ns,
                                   struct sinter_rm_xa_recovery *rec)
{
    char ci[700];
    snprintf(ci, sizeof ci, "%s dbname=%s", g_base, DB);
    struct sinter_rm_xa_opts xo = {.resource_id = res,
                                   .ns = ns,
                                   .conninfo = ci,
                                   .pool_size = 2,
                                   .recovery_interval_ms = UINT32_MAX,
                                   .async_report = true,
                                   .report_threads = 2,
                                   .report_delay_ms = g_delay_ms};
    struct sinter_rm_xa *x = NULL;
    int rc = sinter_rm_xa_register(rm, &xo, &x, rec);
    if (rc != SINTER_OK) {
        fail_msg("xa register %s: %s (%s)", res, sinter_strerror(rc), sinter_rm_errmsg());
    }
    return x;
}

/* One branch of xid on x running sql, then (after pause_ms, the transaction open) ended with
 * ok: SINTER_OK right after PREPARE. The connection is the caller's again at once: closed here,
 * while the report may be in flight. */
static void branch_after(struct sinter_rm_xa *x, const char *xid, const char *sql,
                         uint32_t pause_ms)
{
    PGconn *c = db();
    struct sinter_xa_branch br;
    int rc = sinter_rm_xa_begin(x, c, xid, &br);
    if (rc != SINTER_OK) {
        fail_msg("xa begin: %s (%s / %s)", sinter_strerror(rc), sinter_xa_errmsg(),
                 sinter_rm_errmsg());
    }
    sql_ok(c, sql);
    sinter_test_sleep_ms(pause_ms);
    rc = sinter_rm_xa_end(x, c, &br, true);
    if (rc != SINTER_OK) {
        fail_msg("xa end: %s (%s / %s)", sinter_strerror(rc), sinter_xa_errmsg(),
                 sinter_rm_errmsg());
    }
    PQfinish(c);
}

static void branch(struct sinter_rm_xa *x, const char *xid, const char *sql)
{
    branch_after(x, xid, sql, 0);
}

static struct sinter_rm_xa_report_stats stats(struct sinter_rm_xa *x)
{
    struct sinter_rm_xa_report_stats s;
    sinter_rm_xa_report_stats(x, &s);
    return s;
}

/* Waits until every queued report of x has been answered and settled. */
static struct sinter_rm_xa_report_stats settled(struct sinter_rm_xa *x)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    struct sinter_rm_xa_report_stats s = stats(x);
    while ((s.pending != 0 || s.accepted + s.refused + s.lost + s.superseded < s.queued) &&
           sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(20);
        s = stats(x);
    }
    assert_int_equal(s.pending, 0);
    fprintf(stderr,
            "reports: queued %" PRIu64 " accepted %" PRIu64 " refused %" PRIu64 " lost %" PRIu64
            " guard_rollbacks %" PRIu64 " left %" PRIu64 " resent %" PRIu64 " abandoned %" PRIu64
            " superseded %" PRIu64 " sync_fallbacks %" PRIu64 "\n",
            s.queued, s.accepted, s.refused, s.lost, s.guard_rollbacks, s.left, s.resent,
            s.abandoned, s.superseded, s.sync_fallbacks);
    return s;
}

static void hold(bool on)
{
    atomic_store(&sinter_rm_xa_test_hold_reports, on);
}

/* Waits until n reports of x are taken by a sender (held there while hold(true)). */
static void wait_in_flight(struct sinter_rm_xa *x, uint32_t n)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (stats(x).in_flight != n && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(10);
    }
    assert_int_equal(stats(x).in_flight, n);
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    static const char extra[] = "[tc]\n"
                                "default_timeout_ms = 120000\n"
                                "retry_initial_ms = 50\n"
                                "retry_max_ms = 500\n"
                                "phase2_lease_ms = 5000\n";
    if (sinter_tcc_init(&g_c, g_tc_bin, "xa-async", NODES, 1, SECRET, extra) != 0 ||
        sinter_tcc_start_all(&g_c) != 0 || sinter_tcc_wait_leaders(&g_c, 1, WAIT_MS) != 0) {
        return -1;
    }
    char ci[700];
    if (sinter_test_pg_fresh_db(g_base, DB, ci, sizeof ci) != 0) {
        return -1;
    }
    PGconn *d = db();
    sql_ok(d, "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
    sql_ok(d, "INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 14) g");
    PQfinish(d);
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

/* Before each scenario: no hold left over by one that failed half-way. */
static int reset_holds(void **state)
{
    (void)state;
    hold(false);
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    atomic_store(&sinter_rm_xa_test_queue_cap, 0u);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hold(false);
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    atomic_store(&sinter_rm_xa_test_queue_cap, 0u);
    sinter_tm_close(g_tm);
    return 0;
}

/* ---- scenarios ---- */

static void test_accepted_then_commit(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_a");
    struct sinter_rm_xa *x = xa_reg(rm, "as_a", "asA", NULL);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b1 = bal(1), b2 = bal(2);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-accepted", 0, xid), SINTER_OK);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 1");
    branch(x, xid, "UPDATE accounts SET balance = balance + 10 WHERE id = 2");
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.accepted, 2); /* the global was Begin: both recorded */
    assert_int_equal(s.refused + s.lost + s.guard_rollbacks + s.sync_fallbacks, 0);
    assert_int_equal(prepared("asA"), 2);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_true(wait_prepared("asA", 0));
    assert_int_equal(bal(1), b1 - 10);
    assert_int_equal(bal(2), b2 + 10);
    sinter_rm_close(rm);
}

static void test_commit_overtakes_report(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_b");
    struct sinter_rm_xa *x = xa_reg(rm, "as_b", "asB", NULL);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(3);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-overtaken", 0, xid), SINTER_OK);
    hold(true);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 3");
    wait_in_flight(x, 1);
    /* The branch is Registered, never reported: the commit proceeds and phase 2 commits it. */
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_true(wait_prepared("asB", 0));
    hold(false);
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.refused, 1); /* the global had left Begin */
    assert_int_equal(s.left, 1);    /* commit side: nothing to undo */
    assert_int_equal(s.guard_rollbacks, 0);
    assert_int_equal(bal(3), b0 - 10); /* committed once */
    assert_int_equal(sinter_tm_status(g_tm, xid, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    sinter_rm_close(rm);
}

static void test_rollback_before_report_guard(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_c");
    struct sinter_rm_xa *x = xa_reg(rm, "as_c", "asC", NULL);
    /* Not started: no phase 2 reaches this resource, so only the guard can end the branch. */
    long long b0 = bal(4);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-guard", 0, xid), SINTER_OK);
    hold(true);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 4");
    wait_in_flight(x, 1);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_rollback(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_rollback_side(st));
    assert_int_equal(prepared("asC"), 1); /* still holding its row lock */
    hold(false);
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.refused, 1);
    assert_int_equal(s.guard_rollbacks, 1);
    assert_int_equal(prepared("asC"), 0); /* rolled back at once by the guard */
    assert_int_equal(bal(4), b0);
    /* The coordinator's phase 2 still delivers its rollback: 42704, pg_xact_status 'aborted',
     * reported Rollbacked. */
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(bal(4), b0);
    sinter_rm_close(rm);
}

static void test_rollback_before_report_phase2(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_d");
    struct sinter_rm_xa *x = xa_reg(rm, "as_d", "asD", NULL);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(5);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-phase2", 0, xid), SINTER_OK);
    hold(true);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 5");
    wait_in_flight(x, 1);
    uint32_t st = 0;
    /* Phase 2 rolls the prepared, Registered branch back while its report is held. */
    assert_int_equal(sinter_tm_rollback(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(prepared("asD"), 0);
    hold(false);
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.refused, 1);
    /* The guard's ROLLBACK PREPARED found it done (42704 resolved as aborted). */
    assert_int_equal(s.guard_rollbacks, 1);
    assert_int_equal(bal(5), b0);
    sinter_rm_close(rm);
}

static void test_timeout_before_report_guard(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_e");
    struct sinter_rm_xa *x = xa_reg(rm, "as_e", "asE", NULL);
    long long b0 = bal(6);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-timeout", 5000, xid), SINTER_OK);
    hold(true);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 6");
    wait_in_flight(x, 1);
    /* The coordinator's own timeout rollback, while the report is held. */
    uint32_t st = 0;
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    do {
        sinter_test_sleep_ms(100);
        assert_int_equal(sinter_tm_status(g_tm, xid, 0, &st), SINTER_OK);
    } while (st == SINTER_GS_BEGIN && sinter_test_now_ms() < end);
    assert_true(sinter_global_status_is_rollback_side(st));
    assert_int_equal(prepared("asE"), 1);
    hold(false);
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.refused, 1);
    assert_int_equal(s.guard_rollbacks, 1);
    assert_int_equal(prepared("asE"), 0);
    assert_int_equal(bal(6), b0);
    /* The service's late commit is refused: nobody is told "committed". */
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_ESTATE);
    sinter_rm_close(rm);
}

static void test_timeout_races_report(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_f");
    struct sinter_rm_xa *x = xa_reg(rm, "as_f", "asF", NULL);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(7);
    int commits = 0, rollbacks = 0;
    enum { ROUNDS = 10, TIMEOUT_MS = 3000 };
    char xid[ROUNDS][SINTER_XID_STRLEN];
    for (int i = 0; i < ROUNDS; i++) {
        assert_int_equal(sinter_tm_begin(g_tm, "async-race", TIMEOUT_MS, xid[i]), SINTER_OK);
        /* PREPARE (and so the report) comes somewhere between well before and well after the
         * timeout, the commit right after it: the timeout rollback races the report and the
         * commit. After the timeout, phase 2's rollback meets the open transaction ('in
         * progress': retryable) until it prepares. */
        branch_after(x, xid[i], "UPDATE accounts SET balance = balance + 1 WHERE id = 7",
                     (uint32_t)(i * (2 * TIMEOUT_MS / ROUNDS)));
        uint32_t st = 0;
        int rc = sinter_tm_commit(g_tm, xid[i], 0, &st);
        if (rc == SINTER_OK) {
            assert_true(sinter_global_status_is_commit_side(st));
            commits++;
        } else {
            assert_int_equal(rc, SINTER_ESTATE);
            assert_true(sinter_global_status_is_rollback_side(st));
            rollbacks++;
        }
        /* Every report of the round is accounted for once settled: sent and answered, or
         * dropped because phase 2 ended its branch first. None may vanish unsent (nor be
         * lost: every coordinator node is up). */
        uint64_t end = sinter_test_now_ms() + WAIT_MS;
        struct sinter_rm_xa_report_stats s = stats(x);
        while ((s.pending != 0 || s.in_flight != 0) && sinter_test_now_ms() < end) {
            sinter_test_sleep_ms(20);
            s = stats(x);
        }
        assert_int_equal(s.pending, 0);
        assert_int_equal(s.in_flight, 0);
        assert_int_equal(s.queued, (uint64_t)i + 1u);
        assert_int_equal(s.accepted + s.refused + s.superseded, s.queued);
        assert_int_equal(s.lost + s.abandoned, 0);
    }
    for (int i = 0; i < ROUNDS; i++) {
        uint32_t st = 0;
        assert_int_equal(sinter_tm_status(g_tm, xid[i], WAIT_MS, &st), SINTER_OK);
        assert_true(st == SINTER_GS_COMMITTED || st == SINTER_GS_TIMEOUT_ROLLBACKED);
    }
    assert_true(wait_prepared("asF", 0));
    struct sinter_rm_xa_report_stats s = settled(x);
    fprintf(stderr, "timeout races: %d committed, %d timed out\n", commits, rollbacks);
    assert_int_equal(bal(7), b0 + commits);
    assert_int_equal(s.queued, ROUNDS);
    sinter_rm_close(rm);
}

/* report_delay_ms with the queue held: phase 2 ends each branch first, and the queued report
 * is dropped unsent (superseded), for a commit and for a rollback. */
static void test_delayed_report_superseded(void **state)
{
    (void)state;
    g_delay_ms = SINTER_RM_XA_REPORT_DELAY_MAX_MS;
    struct sinter_rm *rm = rm_open("as_h");
    struct sinter_rm_xa *x = xa_reg(rm, "as_h", "asH", NULL);
    g_delay_ms = 0;
    /* However long commit + phase 2 take on a loaded machine, the reports stay queued. */
    atomic_store(&sinter_rm_xa_test_hold_queue, true);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(9);
    char xid[2][SINTER_XID_STRLEN];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sinter_tm_begin(g_tm, "async-superseded", 0, xid[i]), SINTER_OK);
        branch(x, xid[i], "UPDATE accounts SET balance = balance - 10 WHERE id = 9");
        uint32_t st = 0;
        if (i == 0) {
            assert_int_equal(sinter_tm_commit(g_tm, xid[i], WAIT_MS, &st), SINTER_OK);
            assert_int_equal(st, SINTER_GS_COMMITTED);
        } else {
            assert_int_equal(sinter_tm_rollback(g_tm, xid[i], WAIT_MS, &st), SINTER_OK);
            assert_int_equal(st, SINTER_GS_ROLLBACKED);
        }
        assert_int_equal(prepared("asH"), 0);
        /* Dropped and freed at once: no room taken in the queue. */
        assert_int_equal(stats(x).pending, 0);
    }
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.superseded, 2);
    assert_int_equal(s.accepted + s.refused + s.lost, 0); /* nothing sent */
    assert_int_equal(bal(9), b0 - 10);                    /* the commit only */
    sinter_rm_close(rm);
}

/* A full queue (its capacity made 1 by sinter_rm_xa_test_queue_cap, the queue held so the
 * first report stays in it): the next branch's report is sent synchronously before
 * sinter_rm_xa_end returns, as without async_report, and both globals still commit. */
static void test_queue_full_reports_synchronously(void **state)
{
    (void)state;
    g_delay_ms = SINTER_RM_XA_REPORT_DELAY_MAX_MS;
    struct sinter_rm *rm = rm_open("as_q");
    struct sinter_rm_xa *x = xa_reg(rm, "as_q", "asQ", NULL);
    g_delay_ms = 0;
    atomic_store(&sinter_rm_xa_test_queue_cap, 1u);
    atomic_store(&sinter_rm_xa_test_hold_queue, true);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0[2] = {bal(13), bal(14)};
    char xid[2][SINTER_XID_STRLEN];
    for (int i = 0; i < 2; i++) {
        char sql[96];
        /* A row each: the first branch, prepared, keeps its row locked. */
        snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + 1 WHERE id = %d",
                 13 + i);
        assert_int_equal(sinter_tm_begin(g_tm, "async-queue-full", 0, xid[i]), SINTER_OK);
        branch(x, xid[i], sql);
    }
    struct sinter_rm_xa_report_stats s = stats(x);
    assert_int_equal(s.queued, 1); /* the first one, held in the queue */
    assert_int_equal(s.pending, 1);
    assert_int_equal(s.sync_fallbacks, 1); /* the second found no room: reported already */
    assert_int_equal(prepared("asQ"), 2);
    for (int i = 0; i < 2; i++) {
        uint32_t st = 0;
        assert_int_equal(sinter_tm_commit(g_tm, xid[i], WAIT_MS, &st), SINTER_OK);
        assert_int_equal(st, SINTER_GS_COMMITTED);
    }
    /* Phase 2 commits both branches; the held report is then dropped unsent (superseded). */
    assert_true(wait_prepared("asQ", 0));
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    s = settled(x);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.sync_fallbacks, 1);
    assert_int_equal(s.superseded, 1);
    assert_int_equal(s.accepted + s.refused + s.lost, 0); /* the queued one never went out */
    assert_int_equal(bal(13), b0[0] + 1);
    assert_int_equal(bal(14), b0[1] + 1);
    sinter_rm_close(rm);
}

/* Issue #7 with report_delay_ms: a rollback decided while the branch's transaction is open
 * reaches this RM's phase 2 first ('in progress', retryable); the late PREPARE must then be
 * rolled back at once, not after the delay. */
static void test_rollback_seen_skips_delay(void **state)
{
    (void)state;
    g_delay_ms = SINTER_RM_XA_REPORT_DELAY_MAX_MS;
    struct sinter_rm *rm = rm_open("as_i");
    struct sinter_rm_xa *x = xa_reg(rm, "as_i", "asI", NULL);
    g_delay_ms = 0;
    /* Whatever the delay, a report taken through the queue would not be sent during the test:
     * only the expedited path can end the branch before sinter_rm_xa_end returns. */
    atomic_store(&sinter_rm_xa_test_hold_queue, true);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(10);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-rollback-seen", 0, xid), SINTER_OK);
    PGconn *c = db();
    struct sinter_xa_branch br;
    assert_int_equal(sinter_rm_xa_begin(x, c, xid, &br), SINTER_OK);
    sql_ok(c, "UPDATE accounts SET balance = balance - 10 WHERE id = 10");
    uint32_t st = 0;
    assert_int_equal(sinter_tm_rollback(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_rollback_side(st));
    /* Phase 2's ROLLBACK PREPARED meets the open transaction: retryable, and recorded. */
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (stats(x).early_rollbacks == 0 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(20);
    }
    assert_true(stats(x).early_rollbacks >= 1);
    /* The late PREPARE: reported at once, refused, rolled back by the guard on c. */
    int rc = sinter_rm_xa_end(x, c, &br, true);
    if (rc != SINTER_ESTATE) {
        fail_msg("xa end: %s, want ESTATE (%s)", sinter_strerror(rc), sinter_xa_errmsg());
    }
    PQfinish(c);
    struct sinter_rm_xa_report_stats s = stats(x);
    assert_int_equal(s.expedited, 1);
    assert_int_equal(s.queued, 0); /* never waited in the queue */
    assert_true(wait_prepared("asI", 0));
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(bal(10), b0);
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    sinter_rm_close(rm);
}

/* Review 2, finding 2: a report already queued (report_delay_ms) when a phase-2 rollback
 * delivery finds its branch busy is made due at once (moved to the head: `expedited`), so its
 * guard does not wait for the delay. A real delivery cannot be made to find the branch busy
 * right after its PREPARE on demand, so the test calls what that delivery calls
 * (sinter_rm_xa_test_rollback_seen, rm/rm_int.h). The queue stays held, which lets only an
 * expedited report go; the RM is not started, so no phase 2 supersedes the report. */
static void test_queued_report_expedited(void **state)
{
    (void)state;
    g_delay_ms = SINTER_RM_XA_REPORT_DELAY_MAX_MS;
    struct sinter_rm *rm = rm_open("as_l");
    struct sinter_rm_xa *x = xa_reg(rm, "as_l", "asL", NULL);
    g_delay_ms = 0;
    atomic_store(&sinter_rm_xa_test_hold_queue, true);
    long long b0 = bal(11);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-expedited", 0, xid), SINTER_OK);
    PGconn *c = db();
    struct sinter_xa_branch br;
    assert_int_equal(sinter_rm_xa_begin(x, c, xid, &br), SINTER_OK);
    sql_ok(c, "UPDATE accounts SET balance = balance - 10 WHERE id = 11");
    assert_int_equal(sinter_rm_xa_end(x, c, &br, true), SINTER_OK);
    PQfinish(c);
    struct sinter_rm_xa_report_stats s = stats(x);
    assert_int_equal(s.queued, 1); /* waiting in the queue, not sent synchronously */
    assert_int_equal(s.pending, 1);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.expedited, 0);
    assert_int_equal(prepared("asL"), 1);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_rollback(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_rollback_side(st));
    /* The delivery that finds the branch busy: the queued report becomes due now and is sent
     * despite the hold, refused, and the guard rolls the branch back. */
    sinter_rm_xa_test_rollback_seen(x, &br.xid, br.branch_id);
    s = settled(x);
    assert_int_equal(s.early_rollbacks, 1);
    assert_int_equal(s.expedited, 1);
    assert_int_equal(s.refused, 1);
    assert_int_equal(s.guard_rollbacks, 1);
    assert_int_equal(s.accepted + s.lost + s.superseded + s.abandoned + s.left, 0);
    assert_int_equal(prepared("asL"), 0);
    assert_int_equal(bal(11), b0);
    /* Phase 2 still delivers its rollback: 42704, pg_xact_status 'aborted', Rollbacked. */
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(bal(11), b0);
    sinter_rm_close(rm);
}

/* Review 2, finding 4: closing drains a queued report that is not due yet (report_delay_ms,
 * the queue held: closing overrides both) by sending it, rather than abandoning it. The global
 * is rolled back first and the RM never started (no phase 2 here), so only a sent, refused
 * report can end the branch: its guard's ROLLBACK PREPARED, before sinter_rm_close returns
 * (close joins the senders). An abandoned report would leave the branch prepared. */
static void test_close_drains_delayed_report(void **state)
{
    (void)state;
    g_delay_ms = SINTER_RM_XA_REPORT_DELAY_MAX_MS;
    struct sinter_rm *rm = rm_open("as_m");
    struct sinter_rm_xa *x = xa_reg(rm, "as_m", "asM", NULL);
    g_delay_ms = 0;
    atomic_store(&sinter_rm_xa_test_hold_queue, true);
    long long b0 = bal(12);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-close-drain", 0, xid), SINTER_OK);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 12");
    struct sinter_rm_xa_report_stats s = stats(x);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.pending, 1);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_rollback(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(sinter_global_status_is_rollback_side(st));
    assert_int_equal(prepared("asM"), 1);
    sinter_rm_close(rm); /* drains: sends the report */
    atomic_store(&sinter_rm_xa_test_hold_queue, false);
    assert_int_equal(prepared("asM"), 0);
    assert_int_equal(bal(12), b0);
    /* A new handle: phase 2's rollback finds the branch done (42704, 'aborted'): Rollbacked. */
    rm = rm_open("as_m");
    struct sinter_rm_xa_recovery rec;
    x = xa_reg(rm, "as_m", "asM", &rec);
    assert_int_equal(rec.found, 0);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    assert_int_equal(sinter_tm_status(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(bal(12), b0);
    assert_int_equal(stats(x).queued, 0);
    sinter_rm_close(rm);
}

static void test_option_bounds(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open("as_k");
    char ci[700];
    snprintf(ci, sizeof ci, "%s dbname=%s", g_base, DB);
    struct sinter_rm_xa_opts xo = {.resource_id = "as_k",
                                   .ns = "asK",
                                   .conninfo = ci,
                                   .async_report = true,
                                   .report_threads = SINTER_RM_XA_REPORT_THREADS_MAX + 1};
    struct sinter_rm_xa *x = NULL;
    assert_int_equal(sinter_rm_xa_register(rm, &xo, &x, NULL), SINTER_EINVAL);
    xo.report_threads = 0;
    xo.report_delay_ms = SINTER_RM_XA_REPORT_DELAY_MAX_MS + 1;
    assert_int_equal(sinter_rm_xa_register(rm, &xo, &x, NULL), SINTER_EINVAL);
    assert_null(x);
    sinter_rm_close(rm);
}

static void test_closed_with_report_in_flight(void **state)
{
    (void)state;
    long long b0 = bal(8);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-closed", 0, xid), SINTER_OK);
    struct sinter_rm *rm = rm_open("as_g");
    struct sinter_rm_xa *x = xa_reg(rm, "as_g", "asG", NULL);
    hold(true);
    branch(x, xid, "UPDATE accounts SET balance = balance - 10 WHERE id = 8");
    wait_in_flight(x, 1);
    sinter_rm_close(rm); /* the held report is abandoned */
    hold(false);
    assert_int_equal(prepared("asG"), 1);
    /* "Restart": a new handle of the resource. Its recovery scan leaves the Begin global to the
     * coordinator. */
    rm = rm_open("as_g");
    struct sinter_rm_xa_recovery rec;
    x = xa_reg(rm, "as_g", "asG", &rec);
    assert_int_equal(rec.found, 1);
    assert_int_equal(rec.left, 1);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    /* The branch was never reported: the commit proceeds and phase 2 commits it. */
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_true(wait_prepared("asG", 0));
    assert_int_equal(bal(8), b0 - 10);
    assert_int_equal(stats(x).queued, 0);
    sinter_rm_close(rm);
}

/* Last: it stops and restarts every coordinator node. */
static void test_coordinator_down_report_lost(void **state)
{
    (void)state;
    struct sinter_rm *rm = rm_open_dl("as_j", 2000);
    struct sinter_rm_xa *x = xa_reg(rm, "as_j", "asJ", NULL);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    long long b0 = bal(1);
    char xid[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(g_tm, "async-lost", 0, xid), SINTER_OK);
    hold(true);
    branch(x, xid, "UPDATE accounts SET balance = balance - 1 WHERE id = 1");
    wait_in_flight(x, 1);
    sinter_tcc_stop_all(&g_c);
    hold(false);
    struct sinter_rm_xa_report_stats s = settled(x);
    assert_int_equal(s.resent, 2); /* three sends in all */
    assert_int_equal(s.lost, 1);
    assert_int_equal(s.left, 1); /* GlobalStatus unanswered too: left to phase 2 / recovery */
    assert_int_equal(s.refused + s.accepted + s.guard_rollbacks, 0);
    fprintf(stderr, "last_error: %s\n", s.last_error);
    assert_non_null(strstr(s.last_error, "stays prepared"));
    assert_int_equal(prepared("asJ"), 1);
    assert_int_equal(sinter_tcc_start_all(&g_c), 0);
    assert_int_equal(sinter_tcc_wait_leaders(&g_c, 1, WAIT_MS), 0);
    /* The branch is Registered (never reported): the commit proceeds, phase 2 commits it. */
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, WAIT_MS, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_true(wait_prepared("asJ", 0));
    assert_int_equal(bal(1), b0 - 1);
    sinter_rm_close(rm);
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
        cmocka_unit_test_setup(test_accepted_then_commit, reset_holds),
        cmocka_unit_test_setup(test_commit_overtakes_report, reset_holds),
        cmocka_unit_test_setup(test_rollback_before_report_guard, reset_holds),
        cmocka_unit_test_setup(test_rollback_before_report_phase2, reset_holds),
        cmocka_unit_test_setup(test_timeout_before_report_guard, reset_holds),
        cmocka_unit_test_setup(test_timeout_races_report, reset_holds),
        cmocka_unit_test_setup(test_delayed_report_superseded, reset_holds),
        cmocka_unit_test_setup(test_queue_full_reports_synchronously, reset_holds),
        cmocka_unit_test_setup(test_rollback_seen_skips_delay, reset_holds),
        cmocka_unit_test_setup(test_queued_report_expedited, reset_holds),
        cmocka_unit_test_setup(test_close_drains_delayed_report, reset_holds),
        cmocka_unit_test_setup(test_option_bounds, reset_holds),
        cmocka_unit_test_setup(test_closed_with_report_in_flight, reset_holds),
        cmocka_unit_test_setup(test_coordinator_down_report_lost, reset_holds),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return sinter_tcc_finish(&g_c, rc);
}
