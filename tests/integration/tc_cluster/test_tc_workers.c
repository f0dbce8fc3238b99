/*
 * The coordinator's leader-only workers and phase-2 service (tc/worker.c), end to end: three
 * sinter-tc processes on loopback, a TM driven through the client wire protocol, and a tiny fake
 * RM (a thread per node, on the transport client) that registers as RM on every node, long-polls
 * every node with Phase2Poll and answers each work item with Phase2Report to the node that
 * delivered it, behaving by resource id:
 *   ok-*    done at once                     flaky  retryable on attempt 1, then done
 *   hang    silent on attempt 1 (the lease   dead   always retryable (deadline)
 *           expires), then done
 *   bad-c   commit unretryable until the     bad-r  rollback always unretryable
 *           test "fixes" it, then done
 * Covered: commit and rollback of two branches driven to Committed / Rollbacked; a retryable
 * outcome retried (attempt 2); a lease expiry redelivered; the deadline ending in
 * CommitRetryTimeout; duplicate and wrong-side reports; Phase2Poll needs RegisterRM; GlobalReport;
 * WAIT_PHASE2 replies with the final status; timeout rollback of a Begin global and a late register
 * refused; kill -9 of the leader between begin and commit and between decision and phase 2 (the
 * new leader finishes; nothing lost; no branch both committed and rolled back); retention GC
 * removes a finished global (status then Finished) but never the failed one. The admin API's
 * successful paths on really failed globals, through the real sinterctl binary (issue 5): a
 * CommitFailed global (one branch unretryable) re-driven at the leader goes to CommitRetrying, its
 * failed branch is delivered again and the global ends Committed; a RollbackFailed global resolved
 * (at a follower, following the 421) to rollbacked ends Rollbacked; the other side's target on
 * another one is a 409 (exit 1) that changes nothing; /metrics counts the unretryable reports.
 *
 * Small timings from the config file (lease 1 s, backoff 100..400 ms, commit deadline 4 s,
 * retention 8 s): every wait polls for its condition with a generous bound. The cluster and the
 * raw protocol clients (the TM's and the fake RM's) come from tests/lib (tccluster.h, tcproto.h).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "promtext.h"
#include "tccluster.h"
#include "tcproto.h"
#include "testproc.h"

#include "sinter/error.h"
#include "sinter/types.h"

#define NODES   3
#define GROUPS  2
#define WAIT_MS 30000
#define SECRET  "s3cret-for-tests"

static const char *g_bin;
static const char *g_ctl; /* sinterctl */
static struct sinter_tcc C;
static struct sinter_raw P;           /* the TM */
static struct sinter_raw R;           /* the fake RM (its threads call it concurrently) */
static atomic_int g_alive[NODES + 1]; /* read by the fake RM's threads (not C's pids) */

/* ---- processes ------------------------------------------------------------------------------ */

static void start_node(int i)
{
    assert_int_equal(sinter_tcc_start(&C, i), 0);
    atomic_store(&g_alive[i], 1);
}

static void kill9(int i)
{
    atomic_store(&g_alive[i], 0);
    sinter_tcc_kill9(&C, i);
}

static void stop_node(int i)
{
    atomic_store(&g_alive[i], 0);
    sinter_tcc_stop(&C, i);
}

/* ---- calls (asserting wrappers of tcproto.h) ------------------------------------------------ */

static struct sinter_xid begin_timeout(uint32_t timeout_ms)
{
    struct sinter_xid x = {0, 0};
    assert_int_equal(sinter_raw_begin(&P, 0, timeout_ms, &x, NULL), SINTER_OK);
    assert_true(x.index > 0);
    return x;
}

static struct sinter_xid begin(void)
{
    return begin_timeout(600000);
}

static int register_branch(struct sinter_xid x, const char *res, uint64_t *branch)
{
    return sinter_raw_branch_register(&P, x, res, 0, branch);
}

static void report_done(struct sinter_xid x, uint64_t branch, const char *res)
{
    assert_int_equal(sinter_raw_branch_report(&P, x, branch, res, SINTER_BS_PHASE1_DONE, 0),
                     SINTER_OK);
}

/* GlobalCommit / GlobalRollback with flags: result code, *status the global's status. */
static int end_global_f(struct sinter_xid x, bool commit, uint32_t flags, uint32_t wait_ms,
                        uint32_t *status)
{
    return sinter_raw_end(&P, x, commit, flags, wait_ms, 0, status);
}

static int end_global(struct sinter_xid x, bool commit, uint32_t *status)
{
    return end_global_f(x, commit, 0, 0, status);
}

static uint32_t global_status(struct sinter_xid x)
{
    uint32_t st = 0;
    assert_int_equal(sinter_raw_status(&P, x, 0, &st), SINTER_OK);
    return st;
}

/* Every group has an agreed live leader. */
static void wait_leaders(void)
{
    assert_true(sinter_raw_leader_of(&P, 0) != 0 && sinter_raw_leader_of(&P, 1) != 0);
}

/* ---- the fake RM ----------------------------------------------------------------------------- */

#define MAX_DELIV 4096

struct delivery {
    uint64_t xid_index;
    uint32_t group;
    uint64_t branch;
    uint16_t code;
    uint32_t attempt;
    int node;
    uint64_t at_ms;
};

static pthread_mutex_t g_rm_mu = PTHREAD_MUTEX_INITIALIZER;
static struct delivery g_deliv[MAX_DELIV];
static size_t g_n_deliv;
static atomic_int g_rm_paused; /* 1: no polls (work piles up at the leader) */
static atomic_int g_rm_stop;
static atomic_int g_rm_busy;      /* RM threads inside a poll (or handling its items) */
static atomic_uint g_report_fail; /* reports not answered OK (other than not-leader) */
static atomic_int g_bad_c_fixed;  /* 1: the operator fixed bad-c (its commits succeed) */

static const char *const RESOURCES[] = {"ok-a", "ok-b", "flaky", "hang", "dead", "bad-c", "bad-r"};
#define N_RESOURCES (sizeof RESOURCES / sizeof RESOURCES[0])

/* RegisterRM with node i for every resource (R's reg_code and resources); failures are left to
 * the next poll's SINTER_EAUTH. */
static void rm_register(int i)
{
    (void)sinter_raw_register(&R, i, 0);
}

/* The outcome the fake RM reports for an item, 0 for none (silent). */
static uint32_t rm_outcome(const struct sinter_proto_phase2_item *it)
{
    bool commit = it->code == SINTER_MSG_BRANCH_COMMIT;
    uint32_t done = commit ? SINTER_BS_PHASE2_COMMITTED : SINTER_BS_PHASE2_ROLLBACKED;
    uint32_t retry = commit ? SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE
                            : SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
    struct sinter_proto_str res = it->work.resource_id;
    if (sinter_proto_str_eq(res, "flaky")) {
        return it->work.attempt == 1 ? retry : done;
    }
    if (sinter_proto_str_eq(res, "hang")) {
        return it->work.attempt == 1 ? 0 : done;
    }
    if (sinter_proto_str_eq(res, "dead")) {
        return retry;
    }
    /* Unretryable ends the branch at once (Seata's PhaseTwo_*Failed_Unretryable): the global
     * goes to CommitFailed / RollbackFailed and waits for the operator. */
    if (sinter_proto_str_eq(res, "bad-c") && commit && !atomic_load(&g_bad_c_fixed)) {
        return SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE;
    }
    if (sinter_proto_str_eq(res, "bad-r") && !commit) {
        return SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE;
    }
    return done;
}

static int rm_report(int i, uint16_t phase, struct sinter_xid x, uint64_t branch, uint32_t status,
                     uint32_t attempt)
{
    struct sinter_proto_msg m;
    sinter_raw_req(&R, &m, SINTER_MSG_PHASE2_REPORT, 0);
    m.u.phase2_report.phase = phase;
    m.u.phase2_report.outcome.xid = x;
    m.u.phase2_report.outcome.branch_id = branch;
    m.u.phase2_report.outcome.branch_status = status;
    m.u.phase2_report.attempt = attempt; /* the answered delivery (docs/phase2-protocol.md) */
    return sinter_raw_result(&R, i, &m);
}

static void *rm_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    while (!atomic_load(&g_rm_stop)) {
        atomic_fetch_add(&g_rm_busy, 1);
        if (atomic_load(&g_rm_paused) || !atomic_load(&g_alive[i])) {
            atomic_fetch_sub(&g_rm_busy, 1);
            sinter_test_sleep_ms(20);
            continue;
        }
        struct sinter_proto_msg m;
        sinter_raw_req(&R, &m, SINTER_MSG_PHASE2_POLL, 0);
        m.u.phase2_poll.n_resources = (uint32_t)N_RESOURCES;
        for (size_t k = 0; k < N_RESOURCES; k++) {
            m.u.phase2_poll.resource_ids[k] = sinter_proto_str_c(RESOURCES[k]);
        }
        m.u.phase2_poll.max_items = 16;
        m.u.phase2_poll.wait_ms = 500;
        struct sinter_transport_reply_msg *r = NULL;
        if (sinter_raw_call(&R, i, &m, &r) != SINTER_OK) {
            atomic_fetch_sub(&g_rm_busy, 1);
            sinter_test_sleep_ms(50);
            continue;
        }
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        if (rm->code == SINTER_MSG_ERROR && rm->rs.result == SINTER_EAUTH) {
            sinter_transport_reply_free(r);
            rm_register(i); /* the node restarted or forgot us */
            atomic_fetch_sub(&g_rm_busy, 1);
            continue;
        }
        if (rm->code != SINTER_MSG_PHASE2_POLL_RESULT || rm->rs.result != SINTER_OK) {
            sinter_transport_reply_free(r);
            atomic_fetch_sub(&g_rm_busy, 1);
            sinter_test_sleep_ms(50);
            continue;
        }
        const struct sinter_proto_phase2_poll_result *pr = &rm->u.phase2_poll_result;
        for (uint32_t k = 0; k < pr->n_items; k++) {
            const struct sinter_proto_phase2_item *it = &pr->items[k];
            pthread_mutex_lock(&g_rm_mu);
            if (g_n_deliv < MAX_DELIV) {
                g_deliv[g_n_deliv++] = (struct delivery){it->work.xid.index,  it->work.xid.group,
                                                         it->work.branch_id,  it->code,
                                                         it->work.attempt,    i,
                                                         sinter_test_now_ms()};
            }
            pthread_mutex_unlock(&g_rm_mu);
            uint32_t out = rm_outcome(it);
            if (out == 0) {
                continue;
            }
            int rc =
                rm_report(i, it->code, it->work.xid, it->work.branch_id, out, it->work.attempt);
            /* Not-leader: dropped, the new leader redelivers (the contract). */
            if (rc != SINTER_OK && rc != SINTER_ENOTLEADER && rc != SINTER_ETIMEOUT &&
                rc != SINTER_ETRANSPORT && rc != SINTER_ESHUTDOWN) {
                fprintf(stderr, "fake RM: report of %u:%" PRIu64 "/%" PRIu64 " -> %s\n",
                        it->work.xid.group, it->work.xid.index, it->work.branch_id,
                        sinter_errname(rc));
                atomic_fetch_add(&g_report_fail, 1);
            }
        }
        sinter_transport_reply_free(r);
        atomic_fetch_sub(&g_rm_busy, 1);
    }
    return NULL;
}

/* Deliveries of (xid, branch) so far; *max_attempt the highest attempt, *codes a bitmask of
 * 1 = commit, 2 = rollback delivered. */
static size_t deliveries(struct sinter_xid x, uint64_t branch, uint32_t *max_attempt,
                         unsigned *codes, uint64_t *first_ms)
{
    size_t n = 0;
    *max_attempt = 0;
    *codes = 0;
    if (first_ms != NULL) {
        *first_ms = 0;
    }
    pthread_mutex_lock(&g_rm_mu);
    for (size_t k = 0; k < g_n_deliv; k++) {
        const struct delivery *d = &g_deliv[k];
        if (d->xid_index == x.index && d->group == x.group &&
            (branch == 0 || d->branch == branch)) {
            n++;
            *max_attempt = d->attempt > *max_attempt ? d->attempt : *max_attempt;
            *codes |= d->code == SINTER_MSG_BRANCH_COMMIT ? 1u : 2u;
            if (first_ms != NULL && (*first_ms == 0 || d->at_ms < *first_ms)) {
                *first_ms = d->at_ms;
            }
        }
    }
    pthread_mutex_unlock(&g_rm_mu);
    return n;
}

/* The lowest attempt number among the deliveries of (xid, branch) so far (0: none). */
static uint32_t min_attempt(struct sinter_xid x, uint64_t branch)
{
    uint32_t min = 0;
    pthread_mutex_lock(&g_rm_mu);
    for (size_t k = 0; k < g_n_deliv; k++) {
        const struct delivery *d = &g_deliv[k];
        if (d->xid_index == x.index && d->group == x.group && d->branch == branch &&
            (min == 0 || d->attempt < min)) {
            min = d->attempt;
        }
    }
    pthread_mutex_unlock(&g_rm_mu);
    return min;
}

/* Polls the global's status until it is `want` (or WAIT_MS passes); returns the last status. */
static uint32_t wait_status(struct sinter_xid x, uint32_t want)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    uint32_t st = 0;
    while (sinter_test_now_ms() < end) {
        st = global_status(x);
        if (st == want) {
            break;
        }
        sinter_test_sleep_ms(50);
    }
    return st;
}

/* Begin + branches on the given resources (phase one done). */
static struct sinter_xid tx(const char *r1, const char *r2, uint64_t *b1, uint64_t *b2)
{
    struct sinter_xid x = begin();
    assert_int_equal(register_branch(x, r1, b1), SINTER_OK);
    report_done(x, *b1, r1);
    if (r2 != NULL) {
        assert_int_equal(register_branch(x, r2, b2), SINTER_OK);
        report_done(x, *b2, r2);
    }
    return x;
}

/* The node that leads xid's group. */
static int leader_of(struct sinter_xid x)
{
    int i = sinter_raw_leader_of(&P, x.group);
    assert_true(i != 0);
    return i;
}

/* ---- sinterctl ------------------------------------------------------------------------------ */

#define ARGS(...) ((char *const[]){__VA_ARGS__, NULL})

/* Runs sinterctl --http <node i's HTTP URL> args (secret NULL: none); checks its exit code and
 * that its stdout (exit 0) or stderr (otherwise) contains want. Returns the output (the caller
 * frees it with sinter_test_output_free). */
static struct sinter_test_output ctl(int i, const char *secret, int want_exit, const char *want,
                                     char *const args[])
{
    struct sinter_test_output o;
    assert_int_equal(sinter_tcc_ctl(g_ctl, C.node[i].http_url, secret, args, &o), 0);
    const char *text = want_exit == 0 ? o.out : o.err;
    if (o.exit_code != want_exit || strstr(text, want) == NULL) {
        fail_msg("sinterctl %s %s: exit %d (want %d and \"%s\")\nstdout:\n%s\nstderr:\n%s", args[0],
                 args[1] ? args[1] : "", o.exit_code, want_exit, want, o.out, o.err);
    }
    return o;
}

static void ctl_check(int i, const char *secret, int want_exit, const char *want,
                      char *const args[])
{
    struct sinter_test_output o = ctl(i, secret, want_exit, want, args);
    sinter_test_output_free(&o);
}

/* The admin API's view of x (GET /api/v1/globals/{xid} through sinterctl --json show) names
 * status `name`. */
static void show_status(int i, const char *xs, const char *name)
{
    char want[80];
    snprintf(want, sizeof want, "\"status\":\"%s\"", name);
    ctl_check(i, NULL, 0, want, ARGS("--json", "show", (char *)xs));
}

/* The sum over the running nodes of one /metrics series (sinterctl metrics; each node counts
 * the reports it received, and they went to whichever node led at the time). */
static double metric_sum(const char *series)
{
    double sum = 0;
    for (int i = 1; i <= NODES; i++) {
        if (!atomic_load(&g_alive[i])) {
            continue;
        }
        struct sinter_test_output o =
            ctl(i, NULL, 0, "sinter_phase2_reports_total", ARGS("metrics"));
        char err[512];
        if (prom_check(o.out, err, sizeof err) != 0) {
            fail_msg("node %d /metrics: %s", i, err);
        }
        double v = 0;
        if (prom_value(o.out, series, &v) == 0) {
            sum += v;
        }
        sinter_test_output_free(&o);
    }
    return sum;
}

/* ---- the scenario --------------------------------------------------------------------------- */

static void tc_workers(void **state)
{
    (void)state;
    /* The TM: a WAIT_PHASE2 commit may be held up to its wait_ms (the tests use at most 20 s). */
    assert_int_equal(sinter_raw_open(&P, &C, SECRET, "tc-workers-test", NULL), SINTER_OK);
    P.call_ms = 25000;
    assert_int_equal(sinter_raw_open(&R, &C, SECRET, "tc-workers-test", NULL), SINTER_OK);
    R.reg_code = SINTER_MSG_REGISTER_RM;
    R.resources = RESOURCES;
    R.n_resources = (uint32_t)N_RESOURCES;
    R.call_ms = 5000;
    for (int i = 1; i <= NODES; i++) {
        start_node(i);
    }
    wait_leaders();
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(sinter_raw_register(&P, i, 0), SINTER_OK);
    }

    /* Phase-2 messages need RegisterRM on that node: the TM client is refused. */
    {
        struct sinter_proto_msg m;
        sinter_raw_req(&P, &m, SINTER_MSG_PHASE2_POLL, 0);
        m.u.phase2_poll.n_resources = 1;
        m.u.phase2_poll.resource_ids[0] = sinter_proto_str_c("ok-a");
        m.u.phase2_poll.max_items = 1;
        m.u.phase2_poll.wait_ms = 10;
        assert_int_equal(sinter_raw_result(&P, 1, &m), SINTER_EAUTH);
    }

    pthread_t th[NODES + 1];
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, rm_thread, (void *)(intptr_t)i), 0);
    }

    /* 1. Commit with two branches: both delivered (attempt 1), reported, Committed. */
    uint64_t b1 = 0, b2 = 0, bx = 0;
    struct sinter_xid xc = tx("ok-a", "ok-b", &b1, &b2);
    uint32_t st = 0;
    assert_int_equal(end_global(xc, true, &st), SINTER_OK);
    assert_true(st == SINTER_GS_COMMITTING || st == SINTER_GS_COMMITTED);
    assert_int_equal(wait_status(xc, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
    uint32_t att = 0;
    unsigned codes = 0;
    assert_true(deliveries(xc, b1, &att, &codes, NULL) >= 1);
    /* The first delivery is attempt 1. Not necessarily the only one: with the 1 s lease, a report
     * slow to commit on a loaded machine, or a leader change, redelivers it as attempt 2. */
    assert_int_equal(min_attempt(xc, b1), 1);
    assert_true(att >= 1);
    assert_int_equal(codes, 1u);
    assert_true(deliveries(xc, b2, &att, &codes, NULL) >= 1);
    assert_int_equal(codes, 1u);
    /* Repeated commit: the current status. */
    assert_int_equal(end_global(xc, true, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);

    /* Duplicate report of a recorded end: OK; wrong side for the phase: EINVAL. */
    int ld = leader_of(xc);
    rm_register(ld);
    assert_int_equal(rm_report(ld, SINTER_MSG_BRANCH_COMMIT, xc, b1, SINTER_BS_PHASE2_COMMITTED, 1),
                     SINTER_OK);
    assert_int_equal(
        rm_report(ld, SINTER_MSG_BRANCH_COMMIT, xc, b1, SINTER_BS_PHASE2_ROLLBACKED, 1),
        SINTER_EINVAL);
    assert_int_equal(rm_report(ld, SINTER_MSG_BRANCH_COMMIT,
                               (struct sinter_xid){xc.group, xc.index + 99999}, 1,
                               SINTER_BS_PHASE2_COMMITTED, 1),
                     SINTER_ENOTFOUND);

    /* 2. Rollback with two branches: Rollbacked, only rollback deliveries. */
    struct sinter_xid xr = tx("ok-a", "ok-b", &b1, &b2);
    assert_int_equal(end_global(xr, false, &st), SINTER_OK);
    assert_int_equal(wait_status(xr, SINTER_GS_ROLLBACKED), SINTER_GS_ROLLBACKED);
    assert_true(deliveries(xr, 0, &att, &codes, NULL) >= 2);
    assert_int_equal(codes, 2u);

    /* 3. WAIT_PHASE2 + a retryable outcome: the reply is the final status; the flaky branch was
     * delivered twice (attempt 2 after the backoff). */
    struct sinter_xid xf = tx("flaky", "ok-b", &b1, &b2);
    assert_int_equal(end_global_f(xf, true, SINTER_PROTO_END_WAIT_PHASE2, 20000, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_true(deliveries(xf, b1, &att, &codes, NULL) >= 2);
    assert_true(att >= 2);

    /* 4. Lease expiry: the RM stays silent on attempt 1; redelivered after the lease. */
    struct sinter_xid xh = tx("hang", NULL, &b1, NULL);
    uint64_t t0 = sinter_test_now_ms();
    assert_int_equal(end_global_f(xh, true, SINTER_PROTO_END_WAIT_PHASE2, 20000, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_true(deliveries(xh, b1, &att, &codes, NULL) >= 2);
    assert_true(att >= 2);
    assert_true(sinter_test_now_ms() - t0 >= 1000); /* not before the 1 s lease ended */

    /* 5. GlobalReport: a reported commit is a commit decision; anything else is refused. */
    {
        struct sinter_xid xg = begin();
        struct sinter_proto_msg m;
        sinter_raw_req(&P, &m, SINTER_MSG_GLOBAL_REPORT, ++P.seq);
        m.u.global_report.xid = xg;
        m.u.global_report.global_status = SINTER_GS_BEGIN;
        struct sinter_transport_reply_msg *r;
        assert_int_equal(sinter_raw_leader(&P, &m, &r, NULL), SINTER_OK);
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        assert_int_equal(rm->rs.result, SINTER_EINVAL);
        sinter_transport_reply_free(r);
        sinter_raw_req(&P, &m, SINTER_MSG_GLOBAL_REPORT, ++P.seq);
        m.u.global_report.xid = xg;
        m.u.global_report.global_status = SINTER_GS_COMMITTED;
        assert_int_equal(sinter_raw_leader(&P, &m, &r, NULL), SINTER_OK);
        rm = sinter_transport_reply_get(r);
        assert_int_equal(rm->code, SINTER_MSG_GLOBAL_REPORT_RESULT);
        assert_int_equal(rm->rs.result, SINTER_OK);
        assert_int_equal(rm->u.global_status_result.global_status, SINTER_GS_COMMITTED);
        sinter_transport_reply_free(r);
    }

    /* 6. Deadline: a branch that always fails retryably ends in CommitRetryTimeout. */
    struct sinter_xid xd = tx("dead", NULL, &b1, NULL);
    assert_int_equal(end_global(xd, true, &st), SINTER_OK);
    assert_int_equal(wait_status(xd, SINTER_GS_COMMIT_RETRY_TIMEOUT),
                     SINTER_GS_COMMIT_RETRY_TIMEOUT);
    assert_true(deliveries(xd, b1, &att, &codes, NULL) >= 2);

    /* 6b. Re-drive and resolve of failed globals through sinterctl (docs/operations.md). */
    {
        char xs[48];
        /* CommitFailed: bad-c answers unretryable, ok-b Committed. */
        struct sinter_xid xcf = tx("bad-c", "ok-b", &b1, &b2);
        assert_int_equal(end_global(xcf, true, &st), SINTER_OK);
        assert_int_equal(wait_status(xcf, SINTER_GS_COMMIT_FAILED), SINTER_GS_COMMIT_FAILED);
        uint32_t att_before = 0;
        assert_true(deliveries(xcf, b1, &att_before, &codes, NULL) >= 1);
        assert_int_equal(codes, 1u);
        assert_true(deliveries(xcf, b2, &att, &codes, NULL) >= 1);
        snprintf(xs, sizeof xs, "%u:%" PRIu64, xcf.group, xcf.index);
        int lc = leader_of(xcf);
        show_status(lc, xs, "CommitFailed");
        /* The operator fixes bad-c and re-drives at the leader: back to CommitRetrying (the
         * answer is the status the command left), bad-c delivered again, then Committed. */
        atomic_store(&g_bad_c_fixed, 1);
        ctl_check(lc, SECRET, 0, "CommitRetrying", ARGS("--secret", SECRET, "redrive", xs));
        assert_int_equal(wait_status(xcf, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
        size_t nb = deliveries(xcf, b1, &att, &codes, NULL);
        assert_true(nb >= 2);
        assert_true(att > att_before);
        assert_int_equal(codes, 1u);
        show_status(lc, xs, "Committed");

        /* Two RollbackFailed globals (bad-r always unretryable, ok-b Rollbacked). */
        struct sinter_xid xrf[2];
        for (int k = 0; k < 2; k++) {
            xrf[k] = tx("bad-r", "ok-b", &b1, &b2);
            assert_int_equal(end_global(xrf[k], false, &st), SINTER_OK);
        }
        for (int k = 0; k < 2; k++) {
            assert_int_equal(wait_status(xrf[k], SINTER_GS_ROLLBACK_FAILED),
                             SINTER_GS_ROLLBACK_FAILED);
        }
        /* Resolved to rollbacked at a follower: sinterctl follows the 421 to the leader. */
        snprintf(xs, sizeof xs, "%u:%" PRIu64, xrf[0].group, xrf[0].index);
        int lr = leader_of(xrf[0]);
        show_status(lr, xs, "RollbackFailed");
        ctl_check(lr % NODES + 1, SECRET, 0, "Rollbacked",
                  ARGS("--secret", SECRET, "resolve", xs, "--target", "rollbacked"));
        st = global_status(xrf[0]);
        assert_true(st == SINTER_GS_ROLLBACKED || st == SINTER_GS_FINISHED); /* GC after 8 s */
        /* The other side's target on the second: 409 naming the status, nothing changes. */
        snprintf(xs, sizeof xs, "%u:%" PRIu64, xrf[1].group, xrf[1].index);
        struct sinter_test_output o =
            ctl(leader_of(xrf[1]), SECRET, 1, "HTTP 409",
                ARGS("--secret", SECRET, "resolve", xs, "--target", "committed"));
        assert_non_null(strstr(o.err, "RollbackFailed"));
        sinter_test_output_free(&o);
        assert_int_equal(global_status(xrf[1]), SINTER_GS_ROLLBACK_FAILED);
        show_status(leader_of(xrf[1]), xs, "RollbackFailed");

        /* /metrics: the phase-2 reports by status, the unretryable ones included (bad-c once,
         * bad-r once per global; the counters are per process and no node restarted yet). */
        assert_true(metric_sum("sinter_phase2_reports_total{status=\"PhaseTwo_CommitFailed_"
                               "Unretryable\"}") >= 1);
        assert_true(metric_sum("sinter_phase2_reports_total{status=\"PhaseTwo_RollbackFailed_"
                               "Unretryable\"}") >= 2);
        assert_true(metric_sum("sinter_phase2_reports_total{status=\"PhaseTwo_Committed\"}") >= 3);
        assert_true(metric_sum("sinter_phase2_reports_total{status=\"PhaseTwo_Rollbacked\"}") >= 2);
    }

    /* 7. Timeout rollback: a Begin global past its timeout is rolled back (its branch gets a
     * rollback delivery) and a late register is refused. */
    uint64_t t_begin = sinter_test_now_ms();
    struct sinter_xid xt = begin_timeout(1500);
    assert_int_equal(register_branch(xt, "ok-a", &b1), SINTER_OK);
    /* Lower bound: begin_ms >= t_begin, and the leader decides only past begin + timeout + skew
     * (1500 + 200): any status read that completed before t_begin + 1700 must still be Begin. */
    for (;;) {
        uint32_t early = global_status(xt);
        uint64_t t_after = sinter_test_now_ms();
        if (t_after >= t_begin + 1500 + 200) {
            break;
        }
        assert_int_equal(early, SINTER_GS_BEGIN);
        sinter_test_sleep_ms(50);
    }
    assert_int_equal(wait_status(xt, SINTER_GS_TIMEOUT_ROLLBACKED), SINTER_GS_TIMEOUT_ROLLBACKED);
    assert_int_equal(register_branch(xt, "ok-b", &bx), SINTER_ESTATE);
    deliveries(xt, b1, &att, &codes, NULL);
    assert_int_equal(codes, 2u);

    /* 8. kill -9 the leader between begin and commit: the new leader commits and finishes. */
    struct sinter_xid xk1 = tx("ok-a", "ok-b", &b1, &b2);
    int victim = leader_of(xk1);
    kill9(victim);
    assert_int_equal(end_global(xk1, true, &st), SINTER_OK);
    assert_int_equal(wait_status(xk1, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
    start_node(victim);
    wait_leaders();
    assert_int_equal(sinter_raw_register(&P, victim, 0), SINTER_OK);

    /* 9. kill -9 the leader between the decision and phase 2 (the RM is not polling): the new
     * leader delivers every branch. */
    atomic_store(&g_rm_paused, 1);
    uint64_t quiet = sinter_test_now_ms() + WAIT_MS;
    while (atomic_load(&g_rm_busy) > 0 && sinter_test_now_ms() < quiet) {
        sinter_test_sleep_ms(20); /* polls in flight end (wait_ms 500) */
    }
    assert_int_equal(atomic_load(&g_rm_busy), 0);
    struct sinter_xid xk2 = tx("ok-a", "ok-b", &b1, &b2);
    assert_int_equal(end_global(xk2, true, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING);
    assert_int_equal(deliveries(xk2, 0, &att, &codes, NULL), 0);
    victim = leader_of(xk2);
    kill9(victim);
    atomic_store(&g_rm_paused, 0);
    assert_int_equal(wait_status(xk2, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
    assert_true(deliveries(xk2, b1, &att, &codes, NULL) >= 1);
    assert_true(deliveries(xk2, b2, &att, &codes, NULL) >= 1);
    start_node(victim);
    wait_leaders();

    /* 10. Retention: finished globals go (Finished), the failed one stays. */
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (sinter_test_now_ms() < end && global_status(xc) != SINTER_GS_FINISHED) {
        sinter_test_sleep_ms(200);
    }
    assert_int_equal(global_status(xc), SINTER_GS_FINISHED);
    assert_int_equal(wait_status(xk1, SINTER_GS_FINISHED), SINTER_GS_FINISHED);
    assert_int_equal(global_status(xd), SINTER_GS_COMMIT_RETRY_TIMEOUT);
    /* A repeated commit of a removed global: Finished (Seata's answer for an unknown xid). */
    assert_int_equal(end_global(xc, true, &st), SINTER_ENOTFOUND);
    assert_int_equal(st, SINTER_GS_FINISHED);

    atomic_store(&g_rm_stop, 1);
    for (int i = 1; i <= NODES; i++) {
        pthread_join(th[i], NULL);
    }
    /* Nothing both committed and rolled back; every report the RM sent was accepted. */
    pthread_mutex_lock(&g_rm_mu);
    for (size_t a = 0; a < g_n_deliv; a++) {
        for (size_t b = a + 1; b < g_n_deliv; b++) {
            if (g_deliv[a].xid_index == g_deliv[b].xid_index &&
                g_deliv[a].group == g_deliv[b].group) {
                assert_int_equal(g_deliv[a].code, g_deliv[b].code);
            }
        }
    }
    fprintf(stderr, "fake RM saw %zu deliveries\n", g_n_deliv);
    pthread_mutex_unlock(&g_rm_mu);
    assert_int_equal(atomic_load(&g_report_fail), 0);
    for (int i = 1; i <= NODES; i++) {
        stop_node(i);
    }
    assert_int_equal(C.bad_exits, 0);
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&g_rm_stop, 1);
    for (int i = 1; i <= NODES; i++) {
        stop_node(i);
    }
    sinter_raw_close(&P);
    sinter_raw_close(&R);
    return 0;
}

/* Review item 6: a retry deadline so large that first attempt + deadline would wrap is refused at
 * start, with the key named (exit 2, nothing served). */
static void huge_retry_deadline_refused(void **state)
{
    (void)state;
    const char *keys[] = {"max_commit_retry_ms", "max_rollback_retry_ms"};
    for (int k = 0; k < 2; k++) {
        char ini[300], dir[300];
        snprintf(ini, sizeof ini, "%s/huge.ini", C.tmp);
        snprintf(dir, sizeof dir, "%s/huge", C.tmp);
        FILE *f = fopen(ini, "w");
        assert_non_null(f);
        fprintf(f, "[tc]\nsecret = s3cret-s3cret-s3cret\n%s = 18446744073709551615\n", keys[k]);
        fclose(f);
        char *argv[] = {(char *)g_bin,
                        "--config",
                        ini,
                        "--id",
                        "1",
                        "--raft-listen",
                        "tcp://127.0.0.1:1",
                        "--client-listen",
                        "tcp://127.0.0.1:4",
                        "--data-dir",
                        dir,
                        "--peer",
                        "2=tcp://127.0.0.1:2,tcp://127.0.0.1:3",
                        NULL};
        struct sinter_test_output o;
        assert_int_equal(sinter_test_run(argv, NULL, NULL, 30000, &o), 0);
        if (o.exit_code != 2 || strstr(o.err, keys[k]) == NULL) {
            fail_msg("%s = UINT64_MAX: exit %d (want 2), stderr should name the key:\n%s", keys[k],
                     o.exit_code, o.err);
        }
        sinter_test_output_free(&o);
    }
}

/* The cluster's temp dir and config exist before the first test (which writes into the dir). */
static int setup(void **state)
{
    (void)state;
    return sinter_tcc_init(
        &C, g_bin, "tc-workers", NODES, GROUPS, SECRET,
        "[tc]\ndefault_timeout_ms = 600000\nretry_initial_ms = 100\n"
        "retry_max_ms = 400\nphase2_lease_ms = 1000\nmax_commit_retry_ms = 4000\n"
        "max_rollback_retry_ms = 600000\nmax_clock_skew_ms = 200\n"
        /* Retention 8 s: after a global ends the test still makes a few calls and runs
         * sinterctl (a sanitizer binary on a loaded machine) to show it Committed; 3 s was short
         * enough for the GC to remove it first (the show then answers Finished). Step 10 waits
         * for the GC with WAIT_MS. client_retention_ms must be >= retention_ms. */
        "retention_ms = 8000\nclient_retention_ms = 16000\ngc_interval_ms = 300\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s path/to/sinter-tc path/to/sinterctl\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    g_ctl = argv[2];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(huge_retry_deadline_refused),
        cmocka_unit_test_teardown(tc_workers, teardown),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, setup, NULL));
}
