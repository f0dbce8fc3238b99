/*
 * Phase2ReportBatch (docs/phase2-protocol.md "Reports") against one real sinter-tc process, with
 * a raw RM (tests/lib/tcproto.h) so every reply is seen as the coordinator sent it:
 *   - a committed global's two branches are delivered; one batch answers them (one done, one
 *     retryable) together with a wrong-side outcome and one of a group the node does not have:
 *     the reply holds one result per outcome, in order (OK, OK, EINVAL, ENOTFOUND);
 *   - the done branch is not delivered again; the retryable one is (attempt + 1), because its
 *     report answered the delivery in flight; a batch of one then ends the global (Committed);
 *   - the same batch resent (the branch ended) is answered OK per outcome (a repeated delivery's
 *     report is done) and reschedules nothing;
 *   - a TM session (no RegisterRM) is refused SINTER_EAUTH;
 *   - one batch with the outcomes of two globals in two groups raises each group's raft commit
 *     index (the node's /metrics) by exactly one entry (BRANCH_RESULTS), not one per outcome, when
 *     no delivery's lease expired meanwhile (else plus at most one PHASE2_START per expired
 *     lease), and counts every outcome in sinter_phase2_reports_total as before;
 *   - restarted with --batch-branch-results false (rolling upgrade), the same batch costs one
 *     BRANCH_RESULT entry per outcome again, with the same answers (that node serves its clients
 *     through nng, --client-transport nng, and the native-engine clients do not notice).
 * Small timings from the config (lease 1 s, backoff 100..400 ms); every wait polls with a
 * generous bound.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "promtext.h"
#include "tccluster.h"
#include "tcproto.h"
#include "testproc.h"

#include "sinter/error.h"
#include "sinter/types.h"

#define GROUPS  2
#define WAIT_MS 30000
#define SECRET  "s3cret-for-tests"

static const char *g_bin;
static struct sinter_tcc C;
static struct sinter_raw P; /* the TM */
static struct sinter_raw R; /* the raw RM */
static const char *const RESOURCES[] = {"res-a", "res-b"};

struct got {
    struct sinter_xid xid;
    uint64_t branch;
    uint16_t code;
    uint32_t attempt;
};

/* Polls node 1 until `want` items arrived or wait_ms passed; returns how many. */
static size_t poll_items(struct got *out, size_t want, uint32_t wait_ms)
{
    size_t n = 0;
    uint64_t end = sinter_test_now_ms() + wait_ms;
    while (n < want && sinter_test_now_ms() < end) {
        struct sinter_proto_msg m;
        sinter_raw_req(&R, &m, SINTER_MSG_PHASE2_POLL, 0);
        m.u.phase2_poll.n_resources = 2;
        m.u.phase2_poll.resource_ids[0] = sinter_proto_str_c(RESOURCES[0]);
        m.u.phase2_poll.resource_ids[1] = sinter_proto_str_c(RESOURCES[1]);
        m.u.phase2_poll.max_items = 16;
        m.u.phase2_poll.wait_ms = 300;
        struct sinter_transport_reply_msg *r = NULL;
        if (sinter_raw_call(&R, 1, &m, &r) != SINTER_OK) {
            sinter_test_sleep_ms(50);
            continue;
        }
        const struct sinter_proto_msg *a = sinter_transport_reply_get(r);
        if (a->code == SINTER_MSG_PHASE2_POLL_RESULT && a->rs.result == SINTER_OK) {
            for (uint32_t k = 0; k < a->u.phase2_poll_result.n_items && n < 16; k++) {
                const struct sinter_proto_phase2_item *it = &a->u.phase2_poll_result.items[k];
                out[n++] =
                    (struct got){it->work.xid, it->work.branch_id, it->code, it->work.attempt};
            }
        }
        sinter_transport_reply_free(r);
    }
    return n;
}

/* Polls until `want` DISTINCT branches arrived or wait_ms passed; returns how many. A delivery
 * whose 1 s lease expired while this (slow, e.g. sanitized) test was busy comes again with the
 * next attempt: it replaces the earlier copy, so each branch is reported once, at its newest
 * attempt. */
static size_t poll_distinct(struct got *out, size_t want, uint32_t wait_ms)
{
    size_t n = 0;
    uint64_t end = sinter_test_now_ms() + wait_ms;
    while (n < want && sinter_test_now_ms() < end) {
        struct got g[16];
        size_t k = poll_items(g, 1, (uint32_t)(end - sinter_test_now_ms()));
        for (size_t i = 0; i < k; i++) {
            size_t j = 0;
            /* Branch ids are unique within a raft group only: key on the xid's group too. */
            while (j < n && (out[j].branch != g[i].branch || out[j].xid.group != g[i].xid.group)) {
                j++;
            }
            if (j == n && n < 16) {
                out[n++] = g[i];
            } else if (j < n && g[i].attempt > out[j].attempt) {
                out[j] = g[i];
            }
        }
    }
    return n;
}

static void set_report(struct sinter_proto_phase2_report *p, uint16_t phase, struct sinter_xid x,
                       uint64_t branch, uint32_t status, uint32_t attempt)
{
    p->phase = phase;
    p->outcome.xid = x;
    p->outcome.branch_id = branch;
    p->outcome.branch_status = status;
    p->attempt = attempt;
}

/* Sends batch m to node 1; checks the reply's type and result count; copies the results. */
static void send_batch(struct sinter_raw *p, const struct sinter_proto_msg *m, int32_t *res)
{
    struct sinter_transport_reply_msg *r = NULL;
    int rc = sinter_raw_call(p, 1, m, &r);
    if (rc != SINTER_OK) {
        fail_msg("Phase2ReportBatch: %s", sinter_errname(rc));
    }
    const struct sinter_proto_msg *a = sinter_transport_reply_get(r);
    if (a->code != SINTER_MSG_PHASE2_REPORT_BATCH_RESULT) {
        fail_msg("reply %s result %s: %.*s", sinter_proto_code_name(a->code),
                 sinter_errname(a->rs.result), (int)a->rs.message.len, a->rs.message.ptr);
    }
    assert_int_equal(a->rs.result, SINTER_OK);
    assert_int_equal(a->u.phase2_report_batch_result.n_results, m->u.phase2_report_batch.n_reports);
    memcpy(res, a->u.phase2_report_batch_result.results,
           m->u.phase2_report_batch.n_reports * sizeof *res);
    sinter_transport_reply_free(r);
}

static uint32_t wait_status(struct sinter_xid x, uint32_t want)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    uint32_t st = 0;
    while (sinter_test_now_ms() < end) {
        assert_int_equal(sinter_raw_status(&P, x, 0, &st), SINTER_OK);
        if (st == want) {
            break;
        }
        sinter_test_sleep_ms(50);
    }
    return st;
}

/* GET /metrics of node 1 (HTTP/1.0: the server closes after the answer); the body, malloc'ed. */
static char *get_metrics(void)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)C.node[1].http_port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
            write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
            close(fd);
            sinter_test_sleep_ms(100);
            continue;
        }
        size_t cap = 1 << 16, len = 0;
        char *buf = malloc(cap);
        assert_non_null(buf);
        for (;;) {
            if (len + 1 >= cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
            ssize_t r = read(fd, buf + len, cap - len - 1);
            if (r <= 0) {
                break;
            }
            len += (size_t)r;
        }
        close(fd);
        buf[len] = '\0';
        char *body = strstr(buf, "\r\n\r\n");
        if (strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 ") != NULL && body != NULL) {
            char *out = strdup(body + 4);
            free(buf);
            assert_non_null(out);
            return out;
        }
        free(buf);
        sinter_test_sleep_ms(100);
    }
    fail_msg("GET /metrics of node 1: no answer");
    return NULL;
}

static uint64_t metric(const char *text, const char *series)
{
    double v = -1;
    if (prom_value(text, series, &v) != 0 || v < 0) {
        fail_msg("/metrics: no series %s", series);
    }
    return (uint64_t)v;
}

struct counters {
    uint64_t commit[GROUPS];
    uint64_t lease_expired;
    uint64_t committed_reports;
};

static struct counters read_counters(void)
{
    char *t = get_metrics();
    struct counters c;
    for (int g = 0; g < GROUPS; g++) {
        char series[64];
        snprintf(series, sizeof series, "sinter_raft_commit_index{group=\"%d\"}", g);
        c.commit[g] = metric(t, series);
    }
    c.lease_expired = metric(t, "sinter_phase2_lease_expired_total");
    c.committed_reports = metric(t, "sinter_phase2_reports_total{status=\"PhaseTwo_Committed\"}");
    free(t);
    return c;
}

/* A committed global in each group (begins land in the group their (client, seq) hashes to:
 * begin until both groups have one) with NB0 / NB1 branches; one batch reports every outcome.
 * batched: each group's commit index rises by exactly one entry (BRANCH_RESULTS) when no lease
 * expired meanwhile, plus at most one PHASE2_START per expired lease otherwise; not batched: by
 * one entry per outcome (plus the same). A delivery redelivered after its lease expired is
 * reported once, at its newest attempt (poll_distinct). Metrics count every outcome either way. */
static void entries_per_batch(bool batched)
{
    struct got g[16];
    struct sinter_proto_msg m;
    int32_t res[SINTER_PROTO_MAX_REPORTS];
    uint32_t st = 0;
    struct sinter_proto_phase2_report *rp = m.u.phase2_report_batch.reports;
    enum { NB0 = 6, NB1 = 3 };
    const int nb[GROUPS] = {NB0, NB1};
    struct sinter_xid gx[GROUPS] = {{0, 0}, {0, 0}};
    for (int tries = 0; tries < 64 && (gx[0].index == 0 || gx[1].index == 0); tries++) {
        struct sinter_xid y = {0, 0};
        assert_int_equal(sinter_raw_begin(&P, 0, 600000, &y, NULL), SINTER_OK);
        assert_true(y.group < GROUPS);
        if (gx[y.group].index == 0) {
            gx[y.group] = y; /* the others stay Begin, far from their timeout: no entries */
        }
    }
    assert_true(gx[0].index != 0 && gx[1].index != 0);
    uint64_t bids[GROUPS][NB0];
    for (int gi = 0; gi < GROUPS; gi++) {
        for (int k = 0; k < nb[gi]; k++) {
            assert_int_equal(
                sinter_raw_branch_register(&P, gx[gi], RESOURCES[k % 2], 0, &bids[gi][k]),
                SINTER_OK);
        }
        assert_int_equal(sinter_raw_end(&P, gx[gi], true, 0, 0, 0, &st), SINTER_OK);
        assert_int_equal(st, SINTER_GS_COMMITTING);
    }
    /* Read before the deliveries start: a lease that expires from here on is counted. */
    struct counters before = read_counters();
    /* Normally every delivery arrives within the first window and one batch reports all of them.
     * On a slow (sanitized, loaded) run some may come later: each window's deliveries are then
     * reported as their own batch, as an RM does, before their 1 s leases can expire, and the
     * expected entries add up per batch (batched: one per group present in it). */
    uint64_t want[GROUPS] = {0, 0};
    struct got done[NB0 + NB1];
    size_t n_done = 0;
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (n_done < NB0 + NB1 && sinter_test_now_ms() < end) {
        size_t n = poll_distinct(g, NB0 + NB1 - n_done, 700);
        sinter_raw_req(&R, &m, SINTER_MSG_PHASE2_REPORT_BATCH, 0);
        uint32_t nr = 0;
        bool present[GROUPS] = {false, false};
        for (size_t k = 0; k < n; k++) {
            bool seen = false;
            for (size_t j = 0; j < n_done; j++) {
                seen =
                    seen || (done[j].branch == g[k].branch && done[j].xid.group == g[k].xid.group);
            }
            if (seen) {
                continue; /* a redelivery that crossed our report */
            }
            /* The items' order, which interleaves the groups' outcomes in the request. */
            assert_true(g[k].xid.group < GROUPS);
            int owner = (int)g[k].xid.group;
            assert_true(g[k].xid.index == gx[owner].index);
            assert_int_equal(g[k].code, SINTER_MSG_BRANCH_COMMIT);
            set_report(&rp[nr++], SINTER_MSG_BRANCH_COMMIT, gx[owner], g[k].branch,
                       SINTER_BS_PHASE2_COMMITTED, g[k].attempt);
            done[n_done++] = g[k];
            want[owner] += batched ? (present[owner] ? 0 : 1) : 1;
            present[owner] = true;
        }
        if (nr == 0) {
            continue;
        }
        m.u.phase2_report_batch.n_reports = nr;
        send_batch(&R, &m, res);
        for (uint32_t k = 0; k < nr; k++) {
            assert_int_equal(res[k], SINTER_OK);
        }
    }
    assert_int_equal(n_done, NB0 + NB1);
    /* A single node: the reply left after the entries were committed and applied. But the
     * commit index /metrics shows is the host's published status, which the raft loop refreshes
     * at the end of the pass that applied the entries, while the reply is written during that
     * pass (the native transport writes it on the loop thread at once): read until it has caught
     * up (it lags by at most one loop pass), then compare exactly. */
    struct counters after = read_counters();
    for (int tries = 0; tries < 500; tries++) {
        bool caught_up = true;
        for (int gi = 0; gi < GROUPS; gi++) {
            caught_up = caught_up && after.commit[gi] - before.commit[gi] >= want[gi];
        }
        if (caught_up) {
            break;
        }
        usleep(20 * 1000);
        after = read_counters();
    }
    for (int gi = 0; gi < GROUPS; gi++) {
        uint64_t d = after.commit[gi] - before.commit[gi];
        if (after.lease_expired == before.lease_expired) {
            assert_true(d == want[gi]);
        } else {
            /* + at most one PHASE2_START per expired lease */
            assert_true(d >= want[gi] &&
                        d <= want[gi] + (after.lease_expired - before.lease_expired));
        }
        assert_int_equal(wait_status(gx[gi], SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
    }
    /* Metrics count each outcome, as they did with one entry per outcome. */
    assert_true(after.committed_reports - before.committed_reports == NB0 + NB1);
}

static void report_batch(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_start(&C, 1), 0);
    assert_int_equal(sinter_raw_open(&P, &C, SECRET, "report-batch-test", NULL), SINTER_OK);
    P.call_ms = 25000;
    assert_int_equal(sinter_raw_open(&R, &C, SECRET, "report-batch-test", NULL), SINTER_OK);
    R.reg_code = SINTER_MSG_REGISTER_RM;
    R.resources = RESOURCES;
    R.n_resources = 2;
    R.call_ms = 10000;
    assert_true(sinter_raw_leader_of(&P, 0) == 1 && sinter_raw_leader_of(&P, 1) == 1);
    assert_int_equal(sinter_raw_register(&P, 1, WAIT_MS), SINTER_OK);
    assert_int_equal(sinter_raw_register(&R, 1, WAIT_MS), SINTER_OK);

    /* A TM session may not report. */
    struct sinter_proto_msg m;
    sinter_raw_req(&P, &m, SINTER_MSG_PHASE2_REPORT_BATCH, 0);
    m.u.phase2_report_batch.n_reports = 1;
    set_report(&m.u.phase2_report_batch.reports[0], SINTER_MSG_BRANCH_COMMIT,
               (struct sinter_xid){0, 1}, 1, SINTER_BS_PHASE2_COMMITTED, 1);
    assert_int_equal(sinter_raw_result(&P, 1, &m), SINTER_EAUTH);

    /* A committed global with two branches. */
    struct sinter_xid x = {0, 0};
    assert_int_equal(sinter_raw_begin(&P, 0, 600000, &x, NULL), SINTER_OK);
    uint64_t ba = 0, bb = 0;
    assert_int_equal(sinter_raw_branch_register(&P, x, RESOURCES[0], 0, &ba), SINTER_OK);
    assert_int_equal(sinter_raw_branch_register(&P, x, RESOURCES[1], 0, &bb), SINTER_OK);
    assert_int_equal(sinter_raw_branch_report(&P, x, ba, RESOURCES[0], SINTER_BS_PHASE1_DONE, 0),
                     SINTER_OK);
    assert_int_equal(sinter_raw_branch_report(&P, x, bb, RESOURCES[1], SINTER_BS_PHASE1_DONE, 0),
                     SINTER_OK);
    uint32_t st = 0;
    assert_int_equal(sinter_raw_end(&P, x, true, 0, 0, 0, &st), SINTER_OK);
    assert_true(st == SINTER_GS_COMMITTING || st == SINTER_GS_COMMITTED);

    struct got g[16];
    assert_int_equal(poll_items(g, 2, WAIT_MS), 2);
    uint32_t att_a = 0, att_b = 0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(g[k].code, SINTER_MSG_BRANCH_COMMIT);
        if (g[k].branch == ba) {
            att_a = g[k].attempt;
        } else {
            assert_int_equal(g[k].branch, bb);
            att_b = g[k].attempt;
        }
    }
    assert_true(att_a >= 1 && att_b >= 1);

    /* One batch: a done, b retryable, a wrong-side outcome, a group the node does not have. */
    sinter_raw_req(&R, &m, SINTER_MSG_PHASE2_REPORT_BATCH, 0);
    m.u.phase2_report_batch.n_reports = 4;
    struct sinter_proto_phase2_report *rp = m.u.phase2_report_batch.reports;
    set_report(&rp[0], SINTER_MSG_BRANCH_COMMIT, x, ba, SINTER_BS_PHASE2_COMMITTED, att_a);
    set_report(&rp[1], SINTER_MSG_BRANCH_COMMIT, x, bb, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE,
               att_b);
    set_report(&rp[2], SINTER_MSG_BRANCH_ROLLBACK, x, ba, SINTER_BS_PHASE2_COMMITTED, att_a);
    set_report(&rp[3], SINTER_MSG_BRANCH_COMMIT, (struct sinter_xid){GROUPS + 5, x.index}, ba,
               SINTER_BS_PHASE2_COMMITTED, 1);
    int32_t res[SINTER_PROTO_MAX_REPORTS];
    send_batch(&R, &m, res);
    assert_int_equal(res[0], SINTER_OK);
    assert_int_equal(res[1], SINTER_OK);
    assert_int_equal(res[2], SINTER_EINVAL);
    assert_int_equal(res[3], SINTER_ENOTFOUND);

    /* The retryable branch comes back with the next attempt; the done one does not. */
    size_t n = poll_items(g, 1, WAIT_MS);
    assert_int_equal(n, 1);
    assert_int_equal(g[0].branch, bb);
    assert_int_equal(g[0].attempt, att_b + 1);

    /* A batch of one ends it. */
    struct sinter_proto_msg m2;
    sinter_raw_req(&R, &m2, SINTER_MSG_PHASE2_REPORT_BATCH, 0);
    m2.u.phase2_report_batch.n_reports = 1;
    set_report(&m2.u.phase2_report_batch.reports[0], SINTER_MSG_BRANCH_COMMIT, x, bb,
               SINTER_BS_PHASE2_COMMITTED, att_b + 1);
    send_batch(&R, &m2, res);
    assert_int_equal(res[0], SINTER_OK);
    assert_int_equal(wait_status(x, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);

    /* The first batch again (a late resend): both branches ended, so OK per outcome, and
     * nothing is delivered any more (past a lease plus the largest backoff). */
    m.rq.seq = ++R.seq; /* the same outcomes (reports[0..1]) as a new request */
    m.u.phase2_report_batch.n_reports = 2;
    send_batch(&R, &m, res);
    assert_int_equal(res[0], SINTER_OK);
    assert_int_equal(res[1], SINTER_OK);
    assert_int_equal(poll_items(g, 1, 2500), 0);
    assert_int_equal(wait_status(x, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);

    entries_per_batch(true);

    /* tc.batch_branch_results = false (a rolling upgrade from a version without BRANCH_RESULTS,
     * docs/operations.md "Upgrades"): one BRANCH_RESULT per outcome again, same answers. The
     * restarted node also serves clients through nng's REP socket (tc.client_transport = nng,
     * the operators' way back from the native engine): the raw clients, on the native engine,
     * talk to it unchanged. */
    sinter_tcc_stop(&C, 1);
    static const char *const off[] = {"--batch-branch-results", "false", "--client-transport",
                                      "nng", NULL};
    C.node[1].extra_args = off;
    assert_int_equal(sinter_tcc_start(&C, 1), 0);
    assert_true(sinter_raw_leader_of(&P, 0) == 1 && sinter_raw_leader_of(&P, 1) == 1);
    assert_int_equal(sinter_raw_register(&P, 1, WAIT_MS), SINTER_OK);
    assert_int_equal(sinter_raw_register(&R, 1, WAIT_MS), SINTER_OK);
    entries_per_batch(false);

    sinter_tcc_stop(&C, 1);
    sinter_raw_close(&P);
    sinter_raw_close(&R);
    assert_int_equal(C.bad_exits, 0);
}

static int setup(void **state)
{
    (void)state;
    return sinter_tcc_init(&C, g_bin, "tc-rbatch", 1, GROUPS, SECRET,
                           "[tc]\ndefault_timeout_ms = 600000\nretry_initial_ms = 100\n"
                           "retry_max_ms = 400\nphase2_lease_ms = 1000\n"
                           "max_commit_retry_ms = 600000\nmax_rollback_retry_ms = 600000\n"
                           "max_clock_skew_ms = 200\ngc_interval_ms = 3600000\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/sinter-tc\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(report_batch),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, setup, NULL));
}
