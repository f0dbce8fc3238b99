/*
 * libsinter-rm's phase-2 machinery and the TCC layer against a fake coordinator node
 * (fake_tc.h) that serves RegisterRM, Phase2Poll (held until work is queued), Phase2Report,
 * BranchRegister and BranchReport per docs/phase2-protocol.md:
 *   - poll -> handler -> report: the handler sees the item's fields; OK maps to
 *     PhaseTwo_Committed / _Rollbacked, SINTER_EBUSY to *_Retryable, SINTER_ESTATE to
 *     *_Unretryable, an explicit status is reported as set, an item without handler is
 *     retryable; the report goes out with the RM's client id;
 *   - close while a handler runs: close waits for it and for its report;
 *   - close while a poll is parked at the node (a 30 s long poll): the poller's waiting call
 *     is woken at once (sinter_client_wake), close does not wait for the poll to end;
 *   - reports do not block workers: with one worker and the coordinator answering every report
 *     EBUSY, the worker runs the next item while the earlier reports are still retried; reports
 *     in flight count against queue_capacity (no item beyond it is polled); once the reports
 *     are accepted the next item comes; close with a report still refused returns after that
 *     report's deadline and counts it failed;
 *   - TCC on the real SQLite fence: try registers the branch with its arguments, the confirm
 *     runs in ANOTHER RM instance from the arguments the coordinator delivered; a duplicate
 *     delivery runs the confirm hook once; a cancel before the try is an empty rollback and the
 *     later try is refused (SINTER_EFENCE) and reported PhaseOne_Failed;
 *   - TCC with the caller's connection factory (a pool): connect / disconnect once per delivery;
 *     a confirm without a fence row and a pooled connection handed out inside a transaction are
 *     reported *_Retryable (never Unretryable), the redelivery confirms; a try whose hook fails
 *     returns the hook's code and reports PhaseOne_Failed.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "fake_tc.h"
#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/rm.h"
#include "sinter/tcc.h"
#include "sinter/types.h"
#include "testproc.h"

#define SECRET  "unit-secret"
#define WAIT_MS 20000u

static struct sinter_rm *open_rm(struct fake_tc *f, const char *const *res, uint32_t n)
{
    const char *addrs[1] = {f->url};
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = 1;
    o.secret = SECRET;
    o.application_id = "unit-rm";
    o.resources = res;
    o.n_resources = n;
    o.workers = 2;
    o.poll_wait_ms = 500;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    return rm;
}

static struct fake_item item(uint16_t code, uint64_t index, uint64_t branch, uint32_t type,
                             const char *res, const char *data)
{
    struct fake_item it;
    memset(&it, 0, sizeof it);
    it.code = code;
    it.xid = (struct sinter_xid){0, index};
    it.branch_id = branch;
    it.branch_type = type;
    snprintf(it.resource, sizeof it.resource, "%s", res);
    it.data_len = data != NULL ? (uint32_t)strlen(data) : 0;
    if (it.data_len > 0) {
        memcpy(it.data, data, it.data_len);
    }
    it.attempt = 1;
    return it;
}

static const struct fake_report *report_of(struct fake_tc *f, uint64_t branch, int nth)
{
    int k = 0;
    for (int i = 0; i < f->n_reports; i++) {
        if (f->reports[i].branch_id == branch && k++ == nth) {
            return &f->reports[i];
        }
    }
    return NULL;
}

/* ---- mapping -------------------------------------------------------------------------------- */

struct seen {
    atomic_int calls;
    char xid[SINTER_XID_STRLEN];
    char data[64];
    uint64_t xa;
    uint32_t attempt;
};

static int acct_handler(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    struct seen *s = arg;
    (void)status;
    atomic_fetch_add(&s->calls, 1);
    if (w->branch_id == 1) {
        snprintf(s->xid, sizeof s->xid, "%s", w->xid_text);
        snprintf(s->data, sizeof s->data, "%.*s", (int)w->app_data_len, (const char *)w->app_data);
        s->attempt = w->attempt;
        return SINTER_OK;
    }
    if (w->branch_id == 3) {
        return SINTER_EBUSY;
    }
    if (w->branch_id == 4) {
        return SINTER_ESTATE;
    }
    return SINTER_OK;
}

static int xa_handler(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    struct seen *s = arg;
    atomic_fetch_add(&s->calls, 1);
    s->xa = w->xa_local_xid;
    *status = SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE; /* e.g. sinter_xa_rollback_prepared */
    return SINTER_EBUSY;
}

static void phase2_mapping(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    const char *res[] = {"acct", "orders-db", "nohandler"};
    struct sinter_rm *rm = open_rm(&f, res, 3);
    struct seen acct, xa;
    memset(&acct, 0, sizeof acct);
    memset(&xa, 0, sizeof xa);
    assert_int_equal(sinter_rm_set_handler(rm, "acct", SINTER_BT_TCC, acct_handler, &acct),
                     SINTER_OK);
    assert_int_equal(sinter_rm_set_handler(rm, NULL, SINTER_BT_XA, xa_handler, &xa), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_ESTATE);

    struct fake_item it = item(SINTER_MSG_BRANCH_COMMIT, 9, 1, SINTER_BT_TCC, "acct", "args-1");
    it.attempt = 3;
    fake_tc_push(&f, &it);
    it = item(SINTER_MSG_BRANCH_ROLLBACK, 9, 2, SINTER_BT_TCC, "acct", NULL);
    fake_tc_push(&f, &it);
    it = item(SINTER_MSG_BRANCH_COMMIT, 9, 3, SINTER_BT_TCC, "acct", NULL);
    fake_tc_push(&f, &it);
    it = item(SINTER_MSG_BRANCH_COMMIT, 9, 4, SINTER_BT_TCC, "acct", NULL);
    fake_tc_push(&f, &it);
    it = item(SINTER_MSG_BRANCH_ROLLBACK, 9, 5, SINTER_BT_XA, "orders-db", NULL);
    it.xa_local_xid = 777;
    fake_tc_push(&f, &it);
    it = item(SINTER_MSG_BRANCH_COMMIT, 9, 6, SINTER_BT_TCC, "nohandler", NULL);
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 6, WAIT_MS), 6);

    pthread_mutex_lock(&f.mu);
    assert_int_equal(report_of(&f, 1, 0)->status, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(report_of(&f, 1, 0)->phase, SINTER_MSG_BRANCH_COMMIT);
    assert_int_equal(report_of(&f, 1, 0)->client_id, sinter_rm_client_id(rm));
    assert_int_equal(report_of(&f, 1, 0)->xid.index, 9);
    assert_int_equal(report_of(&f, 2, 0)->status, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(report_of(&f, 2, 0)->phase, SINTER_MSG_BRANCH_ROLLBACK);
    assert_int_equal(report_of(&f, 3, 0)->status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_int_equal(report_of(&f, 4, 0)->status, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    assert_int_equal(report_of(&f, 5, 0)->status, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE);
    assert_int_equal(report_of(&f, 6, 0)->status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    pthread_mutex_unlock(&f.mu);
    assert_int_equal(atomic_load(&acct.calls), 4);
    assert_int_equal(atomic_load(&xa.calls), 1);
    assert_string_equal(acct.xid, "0:9");
    assert_string_equal(acct.data, "args-1");
    assert_int_equal(acct.attempt, 3);
    assert_int_equal(xa.xa, 777);
    assert_true(f.n_register_calls >= 1);
    struct sinter_rm_stats st;
    sinter_rm_stats(rm, &st);
    assert_int_equal(st.items, 6);
    assert_int_equal(st.reports_ok, 6);
    sinter_rm_close(rm);
    fake_tc_stop(&f);

    /* The mapping on its own. */
    assert_int_equal(sinter_rm_phase2_status(true, SINTER_EFENCE, 0),
                     SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
    assert_int_equal(sinter_rm_phase2_status(false, SINTER_EDB, 0),
                     SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE);
    /* A status of the wrong side is ignored: the code decides. */
    assert_int_equal(sinter_rm_phase2_status(false, SINTER_OK, SINTER_BS_PHASE2_COMMITTED),
                     SINTER_BS_PHASE2_ROLLBACKED);
}

/* ---- close while a poll is parked ---------------------------------------------------------- */

static void close_wakes_parked_poll(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    const char *res[1] = {"acct"};
    const char *addrs[1] = {f.url};
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = 1;
    o.secret = SECRET;
    o.application_id = "unit-rm";
    o.resources = res;
    o.n_resources = 1;
    o.workers = 2;
    o.poll_wait_ms = 30000; /* the node holds the poll this long (its maximum): close must not
                               wait for it */
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    int parked = 0;
    while (parked == 0 && sinter_test_now_ms() < end) {
        pthread_mutex_lock(&f.mu);
        parked = f.n_polls;
        pthread_mutex_unlock(&f.mu);
        if (parked == 0) {
            sinter_test_sleep_ms(10);
        }
    }
    assert_true(parked > 0);
    uint64_t t0 = sinter_test_now_ms();
    sinter_rm_close(rm);
    /* Not a performance bound: a poller that missed the wake-up would sit out the whole
     * 30 s poll; half of it is far beyond any scheduling delay. */
    assert_true(sinter_test_now_ms() - t0 < 15000);
    fake_tc_stop(&f);
}

/* ---- close while a handler runs ---------------------------------------------------------- */

struct slow {
    atomic_int entered;
    atomic_int release;
    atomic_int finished;
};

static int slow_handler(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    (void)w;
    (void)status;
    struct slow *s = arg;
    atomic_store(&s->entered, 1);
    while (!atomic_load(&s->release)) {
        sinter_test_sleep_ms(5);
    }
    atomic_store(&s->finished, 1);
    return SINTER_OK;
}

struct closer {
    struct sinter_rm *rm;
    atomic_int done;
};

static void *close_thread(void *arg)
{
    struct closer *c = arg;
    sinter_rm_close(c->rm);
    atomic_store(&c->done, 1);
    return NULL;
}

static void close_waits_for_running_handler(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    const char *res[] = {"slow"};
    struct sinter_rm *rm = open_rm(&f, res, 1);
    struct slow s;
    memset(&s, 0, sizeof s);
    assert_int_equal(sinter_rm_set_handler(rm, "slow", SINTER_BT_TCC, slow_handler, &s), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    struct fake_item it = item(SINTER_MSG_BRANCH_COMMIT, 3, 50, SINTER_BT_TCC, "slow", NULL);
    fake_tc_push(&f, &it);
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (!atomic_load(&s.entered) && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(5);
    }
    assert_true(atomic_load(&s.entered));
    struct closer c = {rm, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, close_thread, &c), 0);
    sinter_test_sleep_ms(300);
    assert_int_equal(atomic_load(&c.done), 0); /* still waiting for the handler */
    atomic_store(&s.release, 1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&s.finished), 1);
    /* Its report went out before close returned. */
    assert_int_equal(fake_tc_wait_reports(&f, 1, 0), 1);
    assert_int_equal(f.reports[0].branch_id, 50);
    assert_int_equal(f.reports[0].status, SINTER_BS_PHASE2_COMMITTED);
    fake_tc_stop(&f);
}

static int count_handler(void *arg, const struct sinter_rm_work *w, uint32_t *status)
{
    (void)w;
    (void)status;
    atomic_fetch_add((atomic_int *)arg, 1);
    return SINTER_OK;
}

static void set_report_result(struct fake_tc *f, int rc)
{
    pthread_mutex_lock(&f->mu);
    f->report_result = rc;
    pthread_mutex_unlock(&f->mu);
}

static bool wait_calls(atomic_int *calls, int n)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (atomic_load(calls) < n && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(5);
    }
    return atomic_load(calls) >= n;
}

static void reports_do_not_block_workers(void **state)
{
    (void)state;
    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    set_report_result(&f, SINTER_EBUSY); /* retryable: the reporter keeps resending */
    const char *addrs[1] = {f.url};
    const char *res[] = {"acct"};
    struct sinter_rm_opts o;
    sinter_rm_opts_default(&o);
    o.addresses = addrs;
    o.n_addresses = 1;
    o.secret = SECRET;
    o.resources = res;
    o.n_resources = 1;
    o.workers = 1;
    o.queue_capacity = 2;
    o.poll_wait_ms = 500;
    o.report_timeout_ms = 60000; /* outlives the test's waits: only an accept ends a report */
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    atomic_int calls;
    atomic_init(&calls, 0);
    assert_int_equal(sinter_rm_set_handler(rm, "acct", SINTER_BT_TCC, count_handler, &calls),
                     SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    for (uint64_t b = 1; b <= 3; b++) {
        struct fake_item it = item(SINTER_MSG_BRANCH_COMMIT, 4, b, SINTER_BT_TCC, "acct", NULL);
        fake_tc_push(&f, &it);
    }
    /* The single worker ran two items although no report has been accepted: it did not wait. */
    assert_true(wait_calls(&calls, 2));
    struct sinter_rm_stats st;
    sinter_rm_stats(rm, &st);
    assert_int_equal(st.reports_ok + st.reports_failed, 0);
    /* Two reports in flight fill queue_capacity 2: the third item is not polled. */
    sinter_test_sleep_ms(300);
    assert_int_equal(atomic_load(&calls), 2);
    /* The coordinator accepts now: the resends go through and make room for the third item. */
    set_report_result(&f, SINTER_OK);
    assert_true(wait_calls(&calls, 3));
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    do {
        sinter_rm_stats(rm, &st);
        if (st.reports_ok == 3) {
            break;
        }
        sinter_test_sleep_ms(5);
    } while (sinter_test_now_ms() < end);
    assert_int_equal(st.reports_ok, 3);
    assert_int_equal(st.reports_failed, 0);
    sinter_rm_close(rm);
    fake_tc_stop(&f);

    /* Close with a report the coordinator keeps refusing: sent until its deadline, then
     * dropped; close returns (no hang). A fresh fake: the old one may still hold the closed
     * handle's last poll and would hand it the item. */
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    set_report_result(&f, SINTER_EBUSY);
    addrs[0] = f.url;
    o.queue_capacity = 0;
    o.report_timeout_ms = 1500;
    assert_int_equal(sinter_rm_open(&rm, &o), SINTER_OK);
    atomic_init(&calls, 0);
    assert_int_equal(sinter_rm_set_handler(rm, "acct", SINTER_BT_TCC, count_handler, &calls),
                     SINTER_OK);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    int before = fake_tc_wait_reports(&f, 0, 0);
    struct fake_item it = item(SINTER_MSG_BRANCH_COMMIT, 5, 9, SINTER_BT_TCC, "acct", NULL);
    fake_tc_push(&f, &it);
    assert_true(wait_calls(&calls, 1));
    struct closer c = {rm, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, close_thread, &c), 0);
    end = sinter_test_now_ms() + WAIT_MS;
    while (atomic_load(&c.done) == 0 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(10);
    }
    assert_int_equal(atomic_load(&c.done), 1);
    pthread_join(th, NULL);
    /* The refused report was resent until its deadline (the fake logged each try). */
    assert_true(fake_tc_wait_reports(&f, 0, 0) >= before + 2);
    fake_tc_stop(&f);
}

/* ---- TCC on the SQLite fence --------------------------------------------------------------- */

struct bank {
    atomic_int tries, confirms, cancels;
};

/* try: reserve the amount in the args ("<account>:<amount>") */
static int bank_try(const struct sinter_tcc_ctx *ctx)
{
    struct bank *b = ctx->user;
    atomic_fetch_add(&b->tries, 1);
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO holds(xid, branch, args) VALUES('%s', %llu, '%.*s')",
             ctx->xid, (unsigned long long)ctx->branch_id, (int)ctx->args_len,
             (const char *)ctx->args);
    return sqlite3_exec(ctx->db->sqlite, sql, NULL, NULL, NULL) == SQLITE_OK ? SINTER_OK
                                                                             : SINTER_EDB;
}

static int bank_confirm(const struct sinter_tcc_ctx *ctx)
{
    struct bank *b = ctx->user;
    atomic_fetch_add(&b->confirms, 1);
    /* Uses only what the coordinator delivered: the args, xid and branch id. */
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO ledger(entry) VALUES('confirm %s %llu %.*s')", ctx->xid,
             (unsigned long long)ctx->branch_id, (int)ctx->args_len, (const char *)ctx->args);
    return sqlite3_exec(ctx->db->sqlite, sql, NULL, NULL, NULL) == SQLITE_OK ? SINTER_OK
                                                                             : SINTER_EDB;
}

static int bank_cancel(const struct sinter_tcc_ctx *ctx)
{
    struct bank *b = ctx->user;
    atomic_fetch_add(&b->cancels, 1);
    return SINTER_OK;
}

static long count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void tcc_on_sqlite(void **state)
{
    (void)state;
    char dir[] = "/tmp/sinter-rm-tcc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/service.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE holds(xid TEXT, branch INTEGER, args TEXT);"
                                  "CREATE TABLE ledger(entry TEXT);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);

    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    const char *res[] = {"transfer-out"};
    struct bank b;
    memset(&b, 0, sizeof b);
    struct sinter_tcc_action a;
    memset(&a, 0, sizeof a);
    a.name = "transfer-out";
    a.try_fn = bank_try;
    a.confirm_fn = bank_confirm;
    a.cancel_fn = bank_cancel;
    a.user = &b;
    a.sqlite_path = path;
    /* Instance 1 runs the tries only (never started); instance 2 runs phase 2. */
    struct sinter_rm *rm1 = open_rm(&f, res, 1);
    struct sinter_rm *rm2 = open_rm(&f, res, 1);
    assert_int_equal(sinter_tcc_register(rm1, &a), SINTER_OK);
    assert_int_equal(sinter_tcc_register(rm1, &a), SINTER_EEXIST);
    assert_int_equal(sinter_tcc_register(rm2, &a), SINTER_OK);
    assert_int_equal(sinter_rm_start(rm2), SINTER_OK);
    struct sinter_fence_db fdb = sinter_fence_db_sqlite(db);

    /* Try: branch registered with the args, the hold written with the fence row. */
    uint64_t br = 0;
    assert_int_equal(sinter_tcc_try(rm1, "transfer-out", "0:11", "alice:30", 8, &fdb, &br),
                     SINTER_OK);
    assert_int_equal(br, 100);
    struct fake_branch fb;
    assert_true(fake_tc_branch(&f, br, &fb));
    assert_int_equal(fb.data_len, 8);
    assert_memory_equal(fb.data, "alice:30", 8);
    assert_int_equal(fb.phase1, 0); /* no PhaseOne_Done report by default */
    assert_int_equal(count_rows(db, "SELECT count(*) FROM holds"), 1);
    int fs = 0;
    assert_int_equal(sinter_fence_status(&fdb, "0:11", br, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_TRIED);

    /* Commit delivered twice (a redelivery): the confirm hook runs once, both report done. */
    struct fake_item it =
        item(SINTER_MSG_BRANCH_COMMIT, 11, br, SINTER_BT_TCC, "transfer-out", NULL);
    memcpy(it.data, fb.data, fb.data_len);
    it.data_len = fb.data_len;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 1, WAIT_MS), 1);
    it.attempt = 2;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 2, WAIT_MS), 2);
    assert_int_equal(f.reports[0].status, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(f.reports[1].status, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(atomic_load(&b.confirms), 1);
    assert_int_equal(
        count_rows(db, "SELECT count(*) FROM ledger WHERE entry = 'confirm 0:11 100 alice:30'"), 1);
    assert_int_equal(sinter_fence_status(&fdb, "0:11", br, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_COMMITTED);

    /* A cancel of a committed branch can never succeed: unretryable. */
    it.code = SINTER_MSG_BRANCH_ROLLBACK;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 3, WAIT_MS), 3);
    assert_int_equal(f.reports[2].status, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE);
    assert_int_equal(atomic_load(&b.cancels), 0);

    /* Cancel before try: the next branch id is 101; its rollback arrives first. */
    it = item(SINTER_MSG_BRANCH_ROLLBACK, 12, 101, SINTER_BT_TCC, "transfer-out", "bob:5");
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 4, WAIT_MS), 4);
    assert_int_equal(f.reports[3].status, SINTER_BS_PHASE2_ROLLBACKED);
    assert_int_equal(atomic_load(&b.cancels), 0); /* empty rollback: no hook */
    assert_int_equal(sinter_fence_status(&fdb, "0:12", 101, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_SUSPENDED);
    int tries = atomic_load(&b.tries);
    assert_int_equal(sinter_tcc_try(rm1, "transfer-out", "0:12", "bob:5", 5, &fdb, &br),
                     SINTER_EFENCE);
    assert_int_equal(br, 101);
    assert_int_equal(atomic_load(&b.tries), tries); /* the try's hook never ran */
    assert_true(fake_tc_branch(&f, 101, &fb));
    assert_int_equal(fb.phase1, SINTER_BS_PHASE1_FAILED);
    assert_int_equal(count_rows(db, "SELECT count(*) FROM holds"), 1);

    /* A try whose hook fails: rolled back with its fence row, reported failed. */
    a.try_fn = NULL;
    assert_int_equal(sinter_tcc_try(rm1, "no-such-action", "0:13", NULL, 0, &fdb, &br),
                     SINTER_ENOTFOUND);

    sinter_rm_close(rm2);
    sinter_rm_close(rm1);
    fake_tc_stop(&f);
    sqlite3_close(db);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- TCC with the caller's connection factory ----------------------------------------------- */

struct pool {
    sqlite3 *conn; /* the one pooled connection */
    atomic_int connects, disconnects, repaired;
};

static int pool_connect(void *arg, struct sinter_fence_db *db)
{
    struct pool *p = arg;
    atomic_fetch_add(&p->connects, 1);
    *db = sinter_fence_db_sqlite(p->conn);
    return SINTER_OK;
}

/* A pool checks what it gets back: a connection left inside a transaction is rolled back. */
static void pool_disconnect(void *arg, struct sinter_fence_db *db)
{
    struct pool *p = arg;
    if (!sqlite3_get_autocommit(db->sqlite)) {
        sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL);
        atomic_fetch_add(&p->repaired, 1);
    }
    atomic_fetch_add(&p->disconnects, 1);
}

static int failing_try(const struct sinter_tcc_ctx *ctx)
{
    (void)ctx;
    return SINTER_EDB;
}

static void tcc_pool_and_retryable_results(void **state)
{
    (void)state;
    char dir[] = "/tmp/sinter-rm-pool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/service.db", dir);
    sqlite3 *db = NULL, *pooled = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_open(path, &pooled), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_busy_timeout(pooled, 5000);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE ledger(entry TEXT);", NULL, NULL, NULL),
                     SQLITE_OK);

    struct fake_tc f;
    assert_int_equal(fake_tc_start(&f, SECRET), SINTER_OK);
    const char *res[] = {"pay"};
    struct bank b;
    memset(&b, 0, sizeof b);
    struct pool p;
    memset(&p, 0, sizeof p);
    p.conn = pooled;
    struct sinter_tcc_action a;
    memset(&a, 0, sizeof a);
    a.name = "pay";
    a.confirm_fn = bank_confirm;
    a.cancel_fn = bank_cancel;
    a.user = &b;
    a.connect = pool_connect;
    a.disconnect = pool_disconnect;
    a.connect_arg = &p;
    struct sinter_rm *rm = open_rm(&f, res, 1);
    assert_int_equal(sinter_tcc_register(rm, &a), SINTER_OK);
    assert_int_equal(atomic_load(&p.connects), 1); /* the fence table check */
    assert_int_equal(atomic_load(&p.disconnects), 1);
    assert_int_equal(sinter_rm_start(rm), SINTER_OK);
    struct sinter_fence_db fdb = sinter_fence_db_sqlite(db);

    /* A confirm with no fence row (the try has not committed, or never ran): retryable, the
     * confirm hook does not run, and the pooled connection goes back after the delivery. */
    struct fake_item it = item(SINTER_MSG_BRANCH_COMMIT, 21, 100, SINTER_BT_TCC, "pay", "x:1");
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 1, WAIT_MS), 1);
    assert_int_equal(f.reports[0].status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_int_equal(atomic_load(&b.confirms), 0);
    assert_int_equal(atomic_load(&p.connects), 2);
    assert_int_equal(atomic_load(&p.disconnects), 2);

    /* Now the try: the branch registered is 100 (the fake's first id). */
    uint64_t br = 0;
    assert_int_equal(sinter_tcc_try(rm, "pay", "0:21", "x:1", 3, &fdb, &br), SINTER_OK);
    assert_int_equal(br, 100);

    /* The pool hands out a connection left inside a transaction: the delivery is retryable
     * (the connection is not idle; nothing is wrong with the branch), never Unretryable. */
    assert_int_equal(sqlite3_exec(pooled, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    it.attempt = 2;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 2, WAIT_MS), 2);
    assert_int_equal(f.reports[1].status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    assert_int_equal(atomic_load(&b.confirms), 0);
    /* ... and given back at once, so the pool repaired it. */
    assert_int_equal(atomic_load(&p.disconnects), atomic_load(&p.connects));
    assert_int_equal(atomic_load(&p.repaired), 1);

    /* The redelivery gets a clean connection and confirms. */
    it.attempt = 3;
    fake_tc_push(&f, &it);
    assert_int_equal(fake_tc_wait_reports(&f, 3, WAIT_MS), 3);
    assert_int_equal(f.reports[2].status, SINTER_BS_PHASE2_COMMITTED);
    assert_int_equal(atomic_load(&b.confirms), 1);
    assert_int_equal(atomic_load(&p.disconnects), atomic_load(&p.connects));
    assert_int_equal(
        count_rows(db, "SELECT count(*) FROM ledger WHERE entry = 'confirm 0:21 100 x:1'"), 1);

    /* A try whose hook fails: the hook's code comes back, nothing is left in the fence, and the
     * branch is reported PhaseOne_Failed so the global cannot commit. */
    struct sinter_tcc_action a2 = a;
    a2.name = "pay-fails";
    a2.try_fn = failing_try;
    assert_int_equal(sinter_tcc_register(rm, &a2), SINTER_OK);
    assert_int_equal(sinter_tcc_try(rm, "pay-fails", "0:22", "y:2", 3, &fdb, &br), SINTER_EDB);
    assert_int_equal(br, 101);
    struct fake_branch fb;
    assert_true(fake_tc_branch(&f, 101, &fb));
    assert_int_equal(fb.phase1, SINTER_BS_PHASE1_FAILED);
    int fs = -1;
    assert_int_equal(sinter_fence_status(&fdb, "0:22", 101, &fs), SINTER_OK);
    assert_int_equal(fs, SINTER_FENCE_NONE);

    sinter_rm_close(rm);
    assert_int_equal(atomic_load(&p.disconnects), atomic_load(&p.connects));
    fake_tc_stop(&f);
    sqlite3_close(pooled);
    sqlite3_close(db);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(phase2_mapping),
        cmocka_unit_test(close_waits_for_running_handler),
        cmocka_unit_test(close_wakes_parked_poll),
        cmocka_unit_test(reports_do_not_block_workers),
        cmocka_unit_test(tcc_on_sqlite),
        cmocka_unit_test(tcc_pool_and_retryable_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
