/*
 * The coordinator's leader-only workers and phase-2 service (tc/worker.c), end to end: three
 * sinter-tc processes on loopback, a TM driven through the client wire protocol, and a tiny fake
 * RM (a thread per node, on the transport client) that registers as RM on every node, long-polls
 * every node with Phase2Poll and answers each work item with Phase2Report to the node that
 * delivered it, behaving by resource id:
 *   ok-*    done at once                     flaky  retryable on attempt 1, then done
 *   hang    silent on attempt 1 (the lease   dead   always retryable (deadline)
 *           expires), then done
 * Covered: commit and rollback of two branches driven to Committed / Rollbacked; a retryable
 * outcome retried (attempt 2); a lease expiry redelivered; the deadline ending in
 * CommitRetryTimeout; duplicate and wrong-side reports; Phase2Poll needs RegisterRM; GlobalReport;
 * WAIT_PHASE2 replies with the final status; timeout rollback of a Begin global and a late register
 * refused; kill -9 of the leader between begin and commit and between decision and phase 2 (the
 * new leader finishes; nothing lost; no branch both committed and rolled back); retention GC
 * removes a finished global (status then Finished) but never the failed one.
 *
 * Small timings from the config file (lease 1 s, backoff 100..400 ms, commit deadline 4 s,
 * retention 3 s): every wait polls for its condition with a generous bound.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "testproc.h"

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/transport.h"
#include "sinter/types.h"

#define NODES   3
#define GROUPS  2
#define WAIT_MS 30000
#define SECRET  "s3cret-for-tests"

struct node {
    uint64_t id;
    int raft_port, client_port;
    char client_url[64];
    pid_t pid;
    char dir[400];
    struct sinter_transport_client *cl;
};

static const char *g_bin;
static char g_tmp[256];
static struct node N[NODES + 1]; /* 1..NODES */
static uint64_t g_client;        /* our client id */
static uint64_t g_seq;
static int g_guess = 1; /* node we believe leads */
static int g_bad_exits;
static atomic_int g_alive[NODES + 1]; /* read by the fake RM's threads */

/* ---- processes ------------------------------------------------------------------------------ */

static void spawn(struct node *n)
{
    char *argv[64];
    char bufs[40][700];
    int a = 0, b = 0;
    argv[a++] = (char *)g_bin;
#define ARG(...)                                                                                   \
    do {                                                                                           \
        snprintf(bufs[b], sizeof bufs[b], __VA_ARGS__);                                            \
        argv[a++] = bufs[b++];                                                                     \
    } while (0)
    /* The file carries the cluster-wide part, flags the per-node part (flags override). */
    ARG("--config");
    ARG("%s/cluster.ini", g_tmp);
    ARG("--id");
    ARG("%" PRIu64, n->id);
    ARG("--raft-listen");
    ARG("tcp://127.0.0.1:%d", n->raft_port);
    ARG("--client-listen");
    ARG("%s", n->client_url);
    ARG("--data-dir");
    ARG("%s", n->dir);
    for (int i = 1; i <= NODES; i++) {
        if (&N[i] != n) {
            ARG("--peer");
            ARG("%" PRIu64 "=tcp://127.0.0.1:%d,%s", N[i].id, N[i].raft_port, N[i].client_url);
        }
    }
    argv[a] = NULL;
#undef ARG
    char logp[400];
    snprintf(logp, sizeof logp, "%s/node%" PRIu64 ".log", g_tmp, n->id);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        execv(g_bin, argv);
        _exit(127);
    }
    n->pid = pid;
    atomic_store(&g_alive[n - N], 1);
}

static void kill9(struct node *n)
{
    atomic_store(&g_alive[n - N], 0);
    sinter_test_kill9(&n->pid);
}

/* A graceful stop must end in exit status 0: anything else (a crash, a sanitizer report, a node
 * that ignored SIGTERM for 30 s and was killed) counts against the run. */
static void stop_node(struct node *n)
{
    atomic_store(&g_alive[n - N], 0);
    int ws = sinter_test_stop(&n->pid, 30000);
    if (ws != 0) {
        fprintf(stderr, "node %" PRIu64 " did not exit cleanly (status %d)\n", n->id, ws);
        g_bad_exits++;
    }
}

/* ---- calls ---------------------------------------------------------------------------------- */

static void req_init(struct sinter_proto_msg *m, uint16_t code, uint64_t client, uint64_t seq)
{
    memset(m, 0, sizeof *m);
    m->code = code;
    m->rq.client_id = client;
    m->rq.seq = seq;
}

/* One call to node i; rc of the transport, reply owned by the caller. */
static int call_node(int i, const struct sinter_proto_msg *m,
                     struct sinter_transport_reply_msg **out)
{
    *out = NULL;
    if (N[i].pid <= 0) {
        return SINTER_ETRANSPORT;
    }
    /* A WAIT_PHASE2 commit may be held up to its wait_ms (the tests use at most 20 s). */
    return sinter_transport_call(N[i].cl, m, 25000, out);
}

static int register_as(int i, uint64_t client, const char *secret, uint16_t code)
{
    struct sinter_proto_msg m;
    req_init(&m, code, client, 0);
    if (code == SINTER_MSG_REGISTER_RM) {
        m.u.reg.n_resources = 1;
        m.u.reg.resource_ids[0] = sinter_proto_str_c("ok-a");
    }
    m.u.reg.client_version = sinter_proto_str_c("test/1");
    m.u.reg.application_id = sinter_proto_str_c("tc-cluster-test");
    m.u.reg.credential = sinter_proto_str_c(secret);
    struct sinter_transport_reply_msg *r = NULL;
    int rc = call_node(i, &m, &r);
    if (rc == SINTER_OK) {
        rc = sinter_transport_reply_get(r)->rs.result;
        sinter_transport_reply_free(r);
    }
    return rc;
}

static int register_with(int i, uint64_t client, const char *secret)
{
    return register_as(i, client, secret, SINTER_MSG_REGISTER_TM);
}

static int node_by_url(struct sinter_proto_str url)
{
    for (int i = 1; i <= NODES; i++) {
        if (sinter_proto_str_eq(url, N[i].client_url)) {
            return i;
        }
    }
    return 0;
}

/* Sends m where it must go: follows not-leader redirects, moves on from dead nodes, registers
 * again with a node that forgot us (restart). Returns the final reply (never a not-leader). */
static const struct sinter_proto_msg *call_leader(const struct sinter_proto_msg *m,
                                                  struct sinter_transport_reply_msg **out,
                                                  int *served_by)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    int i = g_guess;
    while (sinter_test_now_ms() < end) {
        struct sinter_transport_reply_msg *r = NULL;
        int rc = call_node(i, m, &r);
        if (rc != SINTER_OK) {
            i = i % NODES + 1;
            sinter_test_sleep_ms(50);
            continue;
        }
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        if (rm->code == SINTER_MSG_ERROR && rm->rs.result == SINTER_ENOTLEADER) {
            int next = node_by_url(rm->u.error.leader_addr);
            sinter_transport_reply_free(r);
            if (next != 0 && next != i && N[next].pid > 0) {
                i = next; /* redirected: go straight there */
            } else {
                i = i % NODES + 1; /* election in progress: look around */
                sinter_test_sleep_ms(100);
            }
            continue;
        }
        if (rm->code == SINTER_MSG_ERROR && rm->rs.result == SINTER_EAUTH) {
            sinter_transport_reply_free(r);
            assert_int_equal(register_with(i, g_client, SECRET), SINTER_OK);
            continue;
        }
        if (rm->code == SINTER_MSG_ERROR &&
            (rm->rs.result == SINTER_ETIMEOUT || rm->rs.result == SINTER_ESHUTDOWN)) {
            sinter_transport_reply_free(r); /* outcome unknown: retry with the same seq */
            sinter_test_sleep_ms(100);
            continue;
        }
        g_guess = i;
        if (served_by != NULL) {
            *served_by = i;
        }
        *out = r;
        return rm;
    }
    fail_msg("no leader answered %s within %d ms", sinter_proto_code_name(m->code), WAIT_MS);
    return NULL;
}

static struct sinter_xid begin_timeout(uint64_t seq, uint32_t timeout_ms, int *served_by)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_GLOBAL_BEGIN, g_client, seq);
    m.u.global_begin.application_id = sinter_proto_str_c("tc-workers-test");
    m.u.global_begin.transaction_name = sinter_proto_str_c("transfer");
    m.u.global_begin.timeout_ms = timeout_ms;
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r, served_by);
    assert_int_equal(rm->code, SINTER_MSG_GLOBAL_BEGIN_RESULT);
    assert_int_equal(rm->rs.result, SINTER_OK);
    struct sinter_xid x = rm->u.global_begin_result.xid;
    assert_true(x.index > 0);
    sinter_transport_reply_free(r);
    return x;
}

/* BranchRegister: returns the result code, *branch the id. */
static int register_branch_seq(struct sinter_xid x, const char *res, uint64_t seq, uint64_t *branch)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_BRANCH_REGISTER, g_client, seq);
    m.u.branch_register.xid = x;
    m.u.branch_register.branch_type = SINTER_BT_TCC;
    m.u.branch_register.resource_id = sinter_proto_str_c(res);
    m.u.branch_register.application_data = (struct sinter_proto_bytes){(const uint8_t *)"{}", 2};
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r, NULL);
    assert_int_equal(rm->code, SINTER_MSG_BRANCH_REGISTER_RESULT);
    int rc = rm->rs.result;
    *branch = rm->u.branch_register_result.branch_id;
    sinter_transport_reply_free(r);
    return rc;
}

static void report_done(struct sinter_xid x, uint64_t branch, const char *res)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_BRANCH_REPORT, g_client, ++g_seq);
    m.u.branch_report.xid = x;
    m.u.branch_report.branch_id = branch;
    m.u.branch_report.branch_type = SINTER_BT_TCC;
    m.u.branch_report.branch_status = SINTER_BS_PHASE1_DONE;
    m.u.branch_report.resource_id = sinter_proto_str_c(res);
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r, NULL);
    assert_int_equal(rm->code, SINTER_MSG_BRANCH_REPORT_RESULT);
    assert_int_equal(rm->rs.result, SINTER_OK);
    sinter_transport_reply_free(r);
}

static struct sinter_xid begin_seq(uint64_t seq, int *served_by)
{
    return begin_timeout(seq, 600000, served_by);
}

/* GlobalCommit / GlobalRollback with flags: result code, *status the global's status. */
static int end_global_f(struct sinter_xid x, bool commit, uint32_t flags, uint32_t wait_ms,
                        uint32_t *status)
{
    struct sinter_proto_msg m;
    req_init(&m, commit ? SINTER_MSG_GLOBAL_COMMIT : SINTER_MSG_GLOBAL_ROLLBACK, g_client, ++g_seq);
    m.u.global_end.xid = x;
    m.u.global_end.flags = flags;
    m.u.global_end.wait_ms = wait_ms;
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r, NULL);
    assert_int_equal(rm->code,
                     commit ? SINTER_MSG_GLOBAL_COMMIT_RESULT : SINTER_MSG_GLOBAL_ROLLBACK_RESULT);
    int rc = rm->rs.result;
    *status = rm->u.global_status_result.global_status;
    sinter_transport_reply_free(r);
    return rc;
}

static int end_global(struct sinter_xid x, bool commit, uint32_t *status)
{
    return end_global_f(x, commit, 0, 0, status);
}

static uint32_t global_status(struct sinter_xid x)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_GLOBAL_STATUS, g_client, ++g_seq);
    m.u.global_status.xid = x;
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r, NULL);
    assert_int_equal(rm->code, SINTER_MSG_GLOBAL_STATUS_RESULT);
    assert_int_equal(rm->rs.result, SINTER_OK);
    uint32_t st = rm->u.global_status_result.global_status;
    sinter_transport_reply_free(r);
    return st;
}

/* ClusterMeta from node i until every group has a leader all live nodes agree on; returns the
 * leader id of group g (0 on timeout). */
static uint64_t wait_leaders(uint32_t want_group)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (sinter_test_now_ms() < end) {
        uint64_t leaders[GROUPS] = {0};
        bool ok = true;
        for (int i = 1; i <= NODES && ok; i++) {
            if (N[i].pid <= 0) {
                continue;
            }
            struct sinter_proto_msg m;
            req_init(&m, SINTER_MSG_CLUSTER_META, g_client, 0);
            struct sinter_transport_reply_msg *r = NULL;
            if (call_node(i, &m, &r) != SINTER_OK) {
                ok = false;
                break;
            }
            const struct sinter_proto_cluster_meta_result *cm =
                &sinter_transport_reply_get(r)->u.cluster_meta_result;
            assert_int_equal(sinter_transport_reply_get(r)->code, SINTER_MSG_CLUSTER_META_RESULT);
            assert_int_equal(cm->node_id, N[i].id);
            assert_int_equal(cm->n_members, NODES);
            assert_int_equal(cm->n_groups, GROUPS);
            for (uint32_t k = 0; k < cm->n_members; k++) {
                int j = node_by_url(cm->members[k].addr);
                assert_true(j != 0);
                assert_int_equal(cm->members[k].id, N[j].id);
            }
            for (uint32_t g = 0; g < GROUPS; g++) {
                uint64_t l = cm->groups[g].leader_id;
                bool live = false;
                for (int j = 1; j <= NODES; j++) {
                    live = live || (N[j].id == l && N[j].pid > 0);
                }
                if (!live || (leaders[g] != 0 && leaders[g] != l)) {
                    ok = false;
                }
                leaders[g] = l;
            }
            sinter_transport_reply_free(r);
        }
        if (ok) {
            return leaders[want_group];
        }
        sinter_test_sleep_ms(100);
    }
    return 0;
}

static int node_of_id(uint64_t id)
{
    for (int i = 1; i <= NODES; i++) {
        if (N[i].id == id) {
            return i;
        }
    }
    return 0;
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
static uint64_t g_rm;          /* the RM's client id */
static atomic_int g_rm_paused; /* 1: no polls (work piles up at the leader) */
static atomic_int g_rm_stop;
static atomic_int g_rm_busy;      /* RM threads inside a poll (or handling its items) */
static atomic_uint g_report_fail; /* reports not answered OK (other than not-leader) */
static struct sinter_transport_client *g_rm_cl[NODES + 1];

static const char *const RESOURCES[] = {"ok-a", "ok-b", "flaky", "hang", "dead"};
#define N_RESOURCES (sizeof RESOURCES / sizeof RESOURCES[0])

static int rm_call(int i, const struct sinter_proto_msg *m, uint32_t timeout,
                   struct sinter_transport_reply_msg **out)
{
    *out = NULL;
    return sinter_transport_call(g_rm_cl[i], m, timeout, out);
}

static void rm_register(int i)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_REGISTER_RM, g_rm, 0);
    m.u.reg.client_version = sinter_proto_str_c("fake-rm/1");
    m.u.reg.application_id = sinter_proto_str_c("tc-workers-test");
    m.u.reg.credential = sinter_proto_str_c(SECRET);
    m.u.reg.n_resources = (uint32_t)N_RESOURCES;
    for (size_t k = 0; k < N_RESOURCES; k++) {
        m.u.reg.resource_ids[k] = sinter_proto_str_c(RESOURCES[k]);
    }
    struct sinter_transport_reply_msg *r = NULL;
    if (rm_call(i, &m, 3000, &r) == SINTER_OK) {
        sinter_transport_reply_free(r);
    }
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
    return done;
}

static int rm_report(int i, uint16_t phase, struct sinter_xid x, uint64_t branch, uint32_t status,
                     uint32_t attempt)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_PHASE2_REPORT, g_rm, 0);
    m.u.phase2_report.phase = phase;
    m.u.phase2_report.outcome.xid = x;
    m.u.phase2_report.outcome.branch_id = branch;
    m.u.phase2_report.outcome.branch_status = status;
    m.u.phase2_report.attempt = attempt; /* the answered delivery (docs/phase2-protocol.md) */
    struct sinter_transport_reply_msg *r = NULL;
    int rc = rm_call(i, &m, 5000, &r);
    if (rc == SINTER_OK) {
        rc = sinter_transport_reply_get(r)->rs.result;
        sinter_transport_reply_free(r);
    }
    return rc;
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
        req_init(&m, SINTER_MSG_PHASE2_POLL, g_rm, 0);
        m.u.phase2_poll.n_resources = (uint32_t)N_RESOURCES;
        for (size_t k = 0; k < N_RESOURCES; k++) {
            m.u.phase2_poll.resource_ids[k] = sinter_proto_str_c(RESOURCES[k]);
        }
        m.u.phase2_poll.max_items = 16;
        m.u.phase2_poll.wait_ms = 500;
        struct sinter_transport_reply_msg *r = NULL;
        if (rm_call(i, &m, 5000, &r) != SINTER_OK) {
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
    struct sinter_xid x = begin_seq(++g_seq, NULL);
    assert_int_equal(register_branch_seq(x, r1, ++g_seq, b1), SINTER_OK);
    report_done(x, *b1, r1);
    if (r2 != NULL) {
        assert_int_equal(register_branch_seq(x, r2, ++g_seq, b2), SINTER_OK);
        report_done(x, *b2, r2);
    }
    return x;
}

/* The node that leads xid's group (registered TM there too). */
static int leader_of(struct sinter_xid x)
{
    int i = node_of_id(wait_leaders(x.group));
    assert_true(i != 0);
    return i;
}

/* ---- the scenario --------------------------------------------------------------------------- */

static void tc_workers(void **state)
{
    (void)state;
    char ini[400];
    snprintf(ini, sizeof ini, "%s/cluster.ini", g_tmp);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f,
            "; shared by the three test nodes\n[raft]\ngroups = %d\ntick_ms = 20\n"
            "[tc]\nsecret = " SECRET "\ndefault_timeout_ms = 600000\nretry_initial_ms = 100\n"
            "retry_max_ms = 400\nphase2_lease_ms = 1000\nmax_commit_retry_ms = 4000\n"
            "max_rollback_retry_ms = 600000\nmax_clock_skew_ms = 200\nretention_ms = 3000\n"
            "client_retention_ms = 6000\ngc_interval_ms = 300\n",
            GROUPS);
    fclose(f);
    for (int i = 1; i <= NODES; i++) {
        N[i].id = (uint64_t)i;
        N[i].raft_port = sinter_test_free_port();
        N[i].client_port = sinter_test_free_port();
        snprintf(N[i].client_url, sizeof N[i].client_url, "tcp://127.0.0.1:%d", N[i].client_port);
        snprintf(N[i].dir, sizeof N[i].dir, "%s/n%d", g_tmp, i);
        struct sinter_transport_client_opts co;
        sinter_transport_client_opts_default(&co);
        co.url = N[i].client_url;
        assert_int_equal(sinter_transport_client_open(&N[i].cl, &co), SINTER_OK);
        assert_int_equal(sinter_transport_client_open(&g_rm_cl[i], &co), SINTER_OK);
    }
    for (int i = 1; i <= NODES; i++) {
        spawn(&N[i]);
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    g_client = ((uint64_t)rand() << 32 | (uint64_t)rand()) | 1u;
    g_rm = g_client ^ 0x0f0f0f0f0f0f0f0full;
    assert_true(wait_leaders(0) != 0 && wait_leaders(1) != 0);
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(register_with(i, g_client, SECRET), SINTER_OK);
    }

    /* Phase-2 messages need RegisterRM on that node: the TM client is refused. */
    {
        struct sinter_proto_msg m;
        req_init(&m, SINTER_MSG_PHASE2_POLL, g_client, 0);
        m.u.phase2_poll.n_resources = 1;
        m.u.phase2_poll.resource_ids[0] = sinter_proto_str_c("ok-a");
        m.u.phase2_poll.max_items = 1;
        m.u.phase2_poll.wait_ms = 10;
        struct sinter_transport_reply_msg *r = NULL;
        assert_int_equal(call_node(1, &m, &r), SINTER_OK);
        assert_int_equal(sinter_transport_reply_get(r)->rs.result, SINTER_EAUTH);
        sinter_transport_reply_free(r);
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
    assert_int_equal(att, 1);
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
        struct sinter_xid xg = begin_seq(++g_seq, NULL);
        struct sinter_proto_msg m;
        req_init(&m, SINTER_MSG_GLOBAL_REPORT, g_client, ++g_seq);
        m.u.global_report.xid = xg;
        m.u.global_report.global_status = SINTER_GS_BEGIN;
        struct sinter_transport_reply_msg *r;
        const struct sinter_proto_msg *rm = call_leader(&m, &r, NULL);
        assert_int_equal(rm->rs.result, SINTER_EINVAL);
        sinter_transport_reply_free(r);
        req_init(&m, SINTER_MSG_GLOBAL_REPORT, g_client, ++g_seq);
        m.u.global_report.xid = xg;
        m.u.global_report.global_status = SINTER_GS_COMMITTED;
        rm = call_leader(&m, &r, NULL);
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

    /* 7. Timeout rollback: a Begin global past its timeout is rolled back (its branch gets a
     * rollback delivery) and a late register is refused. */
    uint64_t t_begin = sinter_test_now_ms();
    struct sinter_xid xt = begin_timeout(++g_seq, 1500, NULL);
    assert_int_equal(register_branch_seq(xt, "ok-a", ++g_seq, &b1), SINTER_OK);
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
    assert_int_equal(register_branch_seq(xt, "ok-b", ++g_seq, &bx), SINTER_ESTATE);
    deliveries(xt, b1, &att, &codes, NULL);
    assert_int_equal(codes, 2u);

    /* 8. kill -9 the leader between begin and commit: the new leader commits and finishes. */
    struct sinter_xid xk1 = tx("ok-a", "ok-b", &b1, &b2);
    int victim = leader_of(xk1);
    kill9(&N[victim]);
    assert_int_equal(end_global(xk1, true, &st), SINTER_OK);
    assert_int_equal(wait_status(xk1, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
    spawn(&N[victim]);
    assert_true(wait_leaders(0) != 0 && wait_leaders(1) != 0);
    assert_int_equal(register_with(victim, g_client, SECRET), SINTER_OK);

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
    kill9(&N[victim]);
    atomic_store(&g_rm_paused, 0);
    assert_int_equal(wait_status(xk2, SINTER_GS_COMMITTED), SINTER_GS_COMMITTED);
    assert_true(deliveries(xk2, b1, &att, &codes, NULL) >= 1);
    assert_true(deliveries(xk2, b2, &att, &codes, NULL) >= 1);
    spawn(&N[victim]);
    assert_true(wait_leaders(0) != 0 && wait_leaders(1) != 0);

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
        stop_node(&N[i]);
    }
    assert_int_equal(g_bad_exits, 0);
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&g_rm_stop, 1);
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
        sinter_transport_client_close(N[i].cl);
        N[i].cl = NULL;
        sinter_transport_client_close(g_rm_cl[i]);
        g_rm_cl[i] = NULL;
    }
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
        snprintf(ini, sizeof ini, "%s/huge.ini", g_tmp);
        snprintf(dir, sizeof dir, "%s/huge", g_tmp);
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/sinter-tc\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sinter-tc-workers-XXXXXX");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(huge_retry_deadline_refused),
        cmocka_unit_test_teardown(tc_workers, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -q -e 'Sanitizer' -e 'runtime error:' %s/node*.log", g_tmp);
    if (system(cmd) == 0) {
        fprintf(stderr, "a node log holds a sanitizer report\n");
        rc = 1;
    }
    if (rc == 0 && getenv("SINTER_TEST_KEEP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    } else if (rc == 0) {
        snprintf(cmd, sizeof cmd, "echo 'kept %s' 1>&2", g_tmp);
    } else {
        snprintf(cmd, sizeof cmd, "tail -n 40 %s/node*.log 1>&2; echo 'kept %s' 1>&2", g_tmp,
                 g_tmp);
    }
    if (system(cmd) != 0) {
        fprintf(stderr, "could not run: %s\n", cmd);
    }
    return rc;
}
