/*
 * Loopback cluster of three sinter-tc processes (tc/), driven through the client wire protocol
 * (sinter/transport.h) like a TM / RM would:
 *
 *   - registration with the shared secret: a wrong secret is refused (SINTER_EAUTH) and that
 *     client's other requests are refused too;
 *   - the leader is found through ClusterMeta (any node) and not-leader redirects carrying the
 *     leader's client URL;
 *   - begin, two branches, phase-one reports, commit (durable decision: Committing), status;
 *     a retried begin / register with the same (client id, seq) returns the first answer;
 *   - kill -9 of the leader between begin and commit: the new leader has the global in Begin and
 *     the commit succeeds there;
 *   - a register after a rollback is refused with SINTER_ESTATE;
 *   - restart of all three: every global is where it was, and a retried begin still returns its
 *     first xid; at the end each replica holds exactly the globals begun (no duplicate);
 *   - snapshots of the coordinator's state at the new leaders' no-op entries: restarted with
 *     snapshot_every = 1, every node snapshots every group after the elections, and again after
 *     the leader of group 0 is stopped and another elected on the idle group; no snapshot fails
 *     anywhere in the whole run (before the host handed no-op entries to the state machine, the
 *     fsm refused every copy taken at a no-op index and the host retried on every loop pass).
 *
 * Processes are stopped by PID (SIGTERM, SIGKILL after a bound); every wait is bounded. Node
 * logs stay in the temp dir, printed on failure (kept on success too with SINTER_TEST_KEEP=1).
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

#include <sqlite3.h>

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
static unsigned g_snap_every; /* 0: the config file's */

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
    if (g_snap_every != 0) {
        ARG("--snapshot-every");
        ARG("%u", g_snap_every);
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
}

static void kill9(struct node *n)
{
    sinter_test_kill9(&n->pid);
}

/* A graceful stop must end in exit status 0: anything else (a crash, a sanitizer report, a node
 * that ignored SIGTERM for 30 s and was killed) counts against the run. */
static void stop_node(struct node *n)
{
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
    return sinter_transport_call(N[i].cl, m, 2000, out);
}

static int register_with(int i, uint64_t client, const char *secret)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_REGISTER_TM, client, 0);
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

static struct sinter_xid begin_seq(uint64_t seq, int *served_by)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_GLOBAL_BEGIN, g_client, seq);
    m.u.global_begin.application_id = sinter_proto_str_c("tc-cluster-test");
    m.u.global_begin.transaction_name = sinter_proto_str_c("transfer");
    m.u.global_begin.timeout_ms = 600000;
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

/* GlobalCommit / GlobalRollback: result code, *status the global's status. */
static int end_global(struct sinter_xid x, bool commit, uint32_t *status)
{
    struct sinter_proto_msg m;
    req_init(&m, commit ? SINTER_MSG_GLOBAL_COMMIT : SINTER_MSG_GLOBAL_ROLLBACK, g_client, ++g_seq);
    m.u.global_end.xid = x;
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r, NULL);
    assert_int_equal(rm->code,
                     commit ? SINTER_MSG_GLOBAL_COMMIT_RESULT : SINTER_MSG_GLOBAL_ROLLBACK_RESULT);
    int rc = rm->rs.result;
    *status = rm->u.global_status_result.global_status;
    sinter_transport_reply_free(r);
    return rc;
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

/* Counts the globals in node i's state databases (node stopped). */
static long count_globals(int i)
{
    long total = 0;
    for (int g = 0; g < GROUPS; g++) {
        char path[512];
        snprintf(path, sizeof path, "%s/group-%d/tc.sqlite", N[i].dir, g);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM globals", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        total += sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    return total;
}

/* ---- node logs ------------------------------------------------------------------------------ */

static void log_path(int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/node%" PRIu64 ".log", g_tmp, N[i].id);
}

static long log_size(int i)
{
    char path[400];
    log_path(i, path, sizeof path);
    return sinter_test_file_size(path);
}

/* Lines of node i's log from byte `from` on that contain a and b (b may be NULL). */
static int log_count(int i, long from, const char *a, const char *b)
{
    char path[400];
    log_path(i, path, sizeof path);
    return sinter_test_count_lines(path, from, a, b);
}

/* Waits until every live node logged a snapshot taken for every group in `groups` (bitmask)
 * since from[i]. */
static bool wait_snapshots(const long *from, unsigned groups)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (sinter_test_now_ms() < end) {
        bool all = true;
        for (int i = 1; i <= NODES && all; i++) {
            for (unsigned g = 0; g < GROUPS && all && N[i].pid > 0; g++) {
                char pat[64];
                snprintf(pat, sizeof pat, "group=%u msg=\"raft: snapshot taken at ", g);
                all = (groups & (1u << g)) == 0 || log_count(i, from[i], pat, NULL) > 0;
            }
        }
        if (all) {
            return true;
        }
        sinter_test_sleep_ms(100);
    }
    return false;
}

/* ---- the scenario --------------------------------------------------------------------------- */

static void tc_cluster(void **state)
{
    (void)state;
    char ini[400];
    snprintf(ini, sizeof ini, "%s/cluster.ini", g_tmp);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f,
            "; shared by the three test nodes\n[raft]\ngroups = %d\ntick_ms = 20\n"
            "snapshot_every = 8\n[tc]\nsecret = " SECRET "\ndefault_timeout_ms = 600000\n",
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
    }
    for (int i = 1; i <= NODES; i++) {
        spawn(&N[i]);
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    g_client = ((uint64_t)rand() << 32 | (uint64_t)rand()) | 1u;
    assert_true(wait_leaders(0) != 0);

    /* Registration: a wrong secret is refused, and so is anything that client asks next. */
    uint64_t intruder = g_client ^ 0x5555aaaa5555aaaaull;
    assert_int_equal(register_with(1, intruder, "wrong"), SINTER_EAUTH);
    {
        struct sinter_proto_msg m;
        req_init(&m, SINTER_MSG_GLOBAL_BEGIN, intruder, 1);
        m.u.global_begin.application_id = sinter_proto_str_c("intruder");
        struct sinter_transport_reply_msg *r = NULL;
        assert_int_equal(call_node(1, &m, &r), SINTER_OK);
        assert_int_equal(sinter_transport_reply_get(r)->rs.result, SINTER_EAUTH);
        sinter_transport_reply_free(r);
    }
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(register_with(i, g_client, SECRET), SINTER_OK);
    }

    /* Begin, retried with the same seq: the same xid. */
    uint64_t begin1_seq = ++g_seq;
    struct sinter_xid x1 = begin_seq(begin1_seq, NULL);
    struct sinter_xid again = begin_seq(begin1_seq, NULL);
    assert_int_equal(again.group, x1.group);
    assert_int_equal(again.index, x1.index);
    long begun = 1;

    /* Two branches; a retried register returns the first branch id. */
    uint64_t b1 = 0, b2 = 0, b1again = 0;
    uint64_t reg1_seq = ++g_seq;
    assert_int_equal(register_branch_seq(x1, "account-a", reg1_seq, &b1), SINTER_OK);
    assert_int_equal(register_branch_seq(x1, "account-a", reg1_seq, &b1again), SINTER_OK);
    assert_int_equal(b1again, b1);
    assert_int_equal(register_branch_seq(x1, "account-b", ++g_seq, &b2), SINTER_OK);
    assert_true(b1 > x1.index && b2 > b1);
    report_done(x1, b1, "account-a");
    report_done(x1, b2, "account-b");
    assert_int_equal(global_status(x1), SINTER_GS_BEGIN);

    /* Commit: durable decision; both branches still need phase 2, so Committing. */
    uint32_t st = 0;
    assert_int_equal(end_global(x1, true, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING);
    assert_true(sinter_global_status_is_commit_side(global_status(x1)));
    assert_int_equal(end_global(x1, true, &st), SINTER_OK); /* repeated: current status */
    assert_int_equal(st, SINTER_GS_COMMITTING);
    assert_int_equal(end_global(x1, false, &st), SINTER_ESTATE); /* never the other side */
    assert_int_equal(st, SINTER_GS_COMMITTING);
    uint64_t late = 0;
    assert_int_equal(register_branch_seq(x1, "account-c", ++g_seq, &late), SINTER_ESTATE);

    /* Unknown xid: Finished (Seata's answer). */
    assert_int_equal(global_status((struct sinter_xid){x1.group, x1.index + 100000}),
                     SINTER_GS_FINISHED);

    /* kill -9 the leader of x2's group between begin and commit. */
    struct sinter_xid x2 = begin_seq(++g_seq, NULL);
    begun++;
    uint64_t b3 = 0;
    assert_int_equal(register_branch_seq(x2, "account-a", ++g_seq, &b3), SINTER_OK);
    int victim = node_of_id(wait_leaders(x2.group));
    assert_true(victim != 0);
    kill9(&N[victim]);
    assert_int_equal(global_status(x2), SINTER_GS_BEGIN); /* the new leader kept it in Begin */
    assert_int_equal(end_global(x2, true, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING);
    spawn(&N[victim]);
    assert_true(wait_leaders(0) != 0);

    /* A register after the rollback is refused. */
    struct sinter_xid x3 = begin_seq(++g_seq, NULL);
    begun++;
    assert_int_equal(end_global(x3, false, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED); /* no branch: settles at once */
    assert_int_equal(register_branch_seq(x3, "account-a", ++g_seq, &late), SINTER_ESTATE);

    /* Restart all three: state recovered, sessions too. */
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
    }
    assert_int_equal(g_bad_exits, 0);
    for (int i = 1; i <= NODES; i++) {
        spawn(&N[i]);
    }
    assert_true(wait_leaders(0) != 0);
    assert_int_equal(global_status(x1), SINTER_GS_COMMITTING);
    assert_int_equal(global_status(x2), SINTER_GS_COMMITTING);
    assert_int_equal(global_status(x3), SINTER_GS_ROLLBACKED);
    again = begin_seq(begin1_seq, NULL);
    assert_int_equal(again.group, x1.group);
    assert_int_equal(again.index, x1.index);

    /* Let every replica catch up, stop, and count: exactly the globals begun on each. */
    struct sinter_xid x4 = begin_seq(++g_seq, NULL);
    begun++;
    (void)x4;
    sinter_test_sleep_ms(1500);
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
    }
    assert_int_equal(g_bad_exits, 0);
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(count_globals(i), begun);
    }

    /* Snapshots at no-op entries: with a snapshot due after every entry, each new leader's no-op
     * is snapshotted on every node, by a state machine that refuses a copy older than the index
     * asked for. */
    g_snap_every = 1;
    long from[NODES + 1];
    for (int i = 1; i <= NODES; i++) {
        from[i] = log_size(i);
        spawn(&N[i]);
    }
    assert_true(wait_leaders(0) != 0);
    assert_true(wait_snapshots(from, (1u << GROUPS) - 1));
    /* Another election on an idle group: the only new entry is the new leader's no-op. */
    int old = node_of_id(wait_leaders(0));
    assert_true(old != 0);
    sinter_test_sleep_ms(200); /* the snapshot of the current no-op is not what is tested next */
    for (int i = 1; i <= NODES; i++) {
        from[i] = log_size(i);
    }
    stop_node(&N[old]);
    uint64_t nl = wait_leaders(0);
    assert_true(nl != 0 && nl != N[old].id);
    assert_true(wait_snapshots(from, 1u));
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
    }
    assert_int_equal(g_bad_exits, 0);
    for (int i = 1; i <= NODES; i++) {
        int failed = log_count(i, 0, "snapshot at ", " failed") +
                     log_count(i, 0, "snapshot for index ", "SINTER_E");
        if (failed != 0) {
            fprintf(stderr, "node %d logged %d failed snapshots\n", i, failed);
        }
        assert_int_equal(failed, 0);
    }
    g_snap_every = 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
        sinter_transport_client_close(N[i].cl);
        N[i].cl = NULL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/sinter-tc\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sinter-tc-cluster-XXXXXX");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(tc_cluster, teardown),
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
