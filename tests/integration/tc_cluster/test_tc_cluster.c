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
 *   - a node stopped right after its restart exits cleanly (three times);
 *   - restart of all three: every global is where it was, and a retried begin still returns its
 *     first xid; at the end each replica holds exactly the globals begun (no duplicate);
 *   - snapshots of the coordinator's state at the new leaders' no-op entries: restarted with
 *     snapshot_every = 1, every node snapshots every group after the elections, and again after
 *     the leader of group 0 is stopped and another elected on the idle group; no snapshot fails
 *     anywhere in the whole run (before the host handed no-op entries to the state machine, the
 *     fsm refused every copy taken at a no-op index and the host retried on every loop pass).
 *
 * The cluster and the raw protocol client come from tests/lib (tccluster.h, tcproto.h).
 * Processes are stopped by PID (SIGTERM, SIGKILL after a bound); every wait is bounded. Node
 * logs stay in the temp dir, printed on failure (kept on success too with SINTER_TEST_KEEP=1).
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sqlite3.h>

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
static struct sinter_tcc C;
static struct sinter_raw P;

/* ---- calls (asserting wrappers of tcproto.h) ------------------------------------------------ */

static struct sinter_xid begin_seq(uint64_t seq)
{
    struct sinter_xid x = {0, 0};
    assert_int_equal(sinter_raw_begin(&P, seq, 600000, &x, NULL), SINTER_OK);
    assert_true(x.index > 0);
    return x;
}

static void report_done(struct sinter_xid x, uint64_t branch, const char *res)
{
    assert_int_equal(sinter_raw_branch_report(&P, x, branch, res, SINTER_BS_PHASE1_DONE, 0),
                     SINTER_OK);
}

static uint32_t global_status(struct sinter_xid x)
{
    uint32_t st = 0;
    assert_int_equal(sinter_raw_status(&P, x, 0, &st), SINTER_OK);
    return st;
}

static int leader_of(uint32_t group)
{
    int i = sinter_raw_leader_of(&P, group);
    assert_true(i != 0);
    return i;
}

/* Counts the globals in node i's state databases (node stopped). */
static long count_globals(int i)
{
    long total = 0;
    for (int g = 0; g < GROUPS; g++) {
        char path[512];
        snprintf(path, sizeof path, "%s/group-%d/tc.sqlite", C.node[i].dir, g);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000); /* the node may be writing (wait_counts) */
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

/* Waits (bounded) until every node holds want globals. A follower applies the last entries only
 * once a later AppendEntries or heartbeat carries the leader's commit index (Raft paper section
 * 5.3), which on a loaded machine can take longer than any fixed pause. */
static void wait_counts(long want)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    for (;;) {
        bool all = true;
        for (int i = 1; i <= NODES && all; i++) {
            all = count_globals(i) == want;
        }
        if (all || sinter_test_now_ms() > end) {
            return; /* the caller's assertions report a node that never caught up */
        }
        sinter_test_sleep_ms(50);
    }
}

/* ---- node logs ------------------------------------------------------------------------------ */

static long log_size(int i)
{
    char path[400];
    return sinter_test_file_size(sinter_tcc_log_path(&C, i, path, sizeof path));
}

/* Lines of node i's log from byte `from` on that contain a and b (b may be NULL). */
static int log_count(int i, long from, const char *a, const char *b)
{
    char path[400];
    return sinter_test_count_lines(sinter_tcc_log_path(&C, i, path, sizeof path), from, a, b);
}

/* Waits until every live node logged a snapshot taken for every group in `groups` (bitmask)
 * since from[i]. */
static bool wait_snapshots(const long *from, unsigned groups)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (sinter_test_now_ms() < end) {
        bool all = true;
        for (int i = 1; i <= NODES && all; i++) {
            for (unsigned g = 0; g < GROUPS && all && C.node[i].pid > 0; g++) {
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

static void stop_all_clean(void)
{
    sinter_tcc_stop_all(&C);
    assert_int_equal(C.bad_exits, 0);
}

/* ---- the scenario --------------------------------------------------------------------------- */

static void tc_cluster(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_init(&C, g_bin, "tc-cluster", NODES, GROUPS, SECRET,
                                     "[raft]\nsnapshot_every = 8\n"
                                     "[tc]\ndefault_timeout_ms = 600000\n"),
                     0);
    assert_int_equal(sinter_raw_open(&P, &C, SECRET, "tc-cluster-test", NULL), SINTER_OK);
    /* The checks below are single calls to one node, right after the cluster started: a node slow
     * to answer (sanitizer start-up, its first snapshot, a disk stall) must not turn the expected
     * answer into SINTER_ETIMEOUT. */
    P.call_ms = 10000;
    assert_int_equal(sinter_tcc_start_all(&C), 0);
    assert_true(leader_of(0) != 0);

    /* Registration: a wrong secret is refused, and so is anything that client asks next. */
    uint64_t intruder = P.client ^ 0x5555aaaa5555aaaaull;
    struct sinter_proto_msg m;
    sinter_raw_register_req(&P, &m);
    m.rq.client_id = intruder;
    m.u.reg.credential = sinter_proto_str_c("wrong");
    assert_int_equal(sinter_raw_result(&P, 1, &m), SINTER_EAUTH);
    sinter_raw_req(&P, &m, SINTER_MSG_GLOBAL_BEGIN, 1);
    m.rq.client_id = intruder;
    m.u.global_begin.application_id = sinter_proto_str_c("intruder");
    assert_int_equal(sinter_raw_result(&P, 1, &m), SINTER_EAUTH);
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(sinter_raw_register(&P, i, WAIT_MS), SINTER_OK);
    }

    /* Begin, retried with the same seq: the same xid. */
    uint64_t begin1_seq = ++P.seq;
    struct sinter_xid x1 = begin_seq(begin1_seq);
    struct sinter_xid again = begin_seq(begin1_seq);
    assert_int_equal(again.group, x1.group);
    assert_int_equal(again.index, x1.index);
    long begun = 1;

    /* Two branches; a retried register returns the first branch id. */
    uint64_t b1 = 0, b2 = 0, b1again = 0;
    uint64_t reg1_seq = ++P.seq;
    assert_int_equal(sinter_raw_branch_register(&P, x1, "account-a", reg1_seq, &b1), SINTER_OK);
    assert_int_equal(sinter_raw_branch_register(&P, x1, "account-a", reg1_seq, &b1again),
                     SINTER_OK);
    assert_int_equal(b1again, b1);
    assert_int_equal(sinter_raw_branch_register(&P, x1, "account-b", 0, &b2), SINTER_OK);
    assert_true(b1 > x1.index && b2 > b1);
    report_done(x1, b1, "account-a");
    report_done(x1, b2, "account-b");
    assert_int_equal(global_status(x1), SINTER_GS_BEGIN);

    /* Commit: durable decision; both branches still need phase 2, so Committing. */
    uint32_t st = 0;
    assert_int_equal(sinter_raw_end(&P, x1, true, 0, 0, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING);
    assert_true(sinter_global_status_is_commit_side(global_status(x1)));
    assert_int_equal(sinter_raw_end(&P, x1, true, 0, 0, 0, &st), SINTER_OK); /* repeated */
    assert_int_equal(st, SINTER_GS_COMMITTING);
    /* Never the other side. */
    assert_int_equal(sinter_raw_end(&P, x1, false, 0, 0, 0, &st), SINTER_ESTATE);
    assert_int_equal(st, SINTER_GS_COMMITTING);
    uint64_t late = 0;
    assert_int_equal(sinter_raw_branch_register(&P, x1, "account-c", 0, &late), SINTER_ESTATE);

    /* Unknown xid: Finished (Seata's answer). */
    assert_int_equal(global_status((struct sinter_xid){x1.group, x1.index + 100000}),
                     SINTER_GS_FINISHED);
    /* A group this cluster does not have is an error, never Finished: an XA RM's recovery scan
     * rolls back a prepared branch whose global is Finished. */
    {
        struct sinter_proto_msg sq;
        sinter_raw_req(&P, &sq, SINTER_MSG_GLOBAL_STATUS, 900001);
        sq.u.global_status.xid = (struct sinter_xid){GROUPS, 5};
        struct sinter_transport_reply_msg *r = NULL;
        assert_int_equal(sinter_raw_leader(&P, &sq, &r, NULL), SINTER_OK);
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        assert_int_equal(rm->code, SINTER_MSG_ERROR);
        assert_int_equal(rm->rs.result, SINTER_ENOTFOUND);
        sinter_transport_reply_free(r);
    }

    /* kill -9 the leader of x2's group between begin and commit. */
    struct sinter_xid x2 = begin_seq(0);
    begun++;
    uint64_t b3 = 0;
    assert_int_equal(sinter_raw_branch_register(&P, x2, "account-a", 0, &b3), SINTER_OK);
    int victim = leader_of(x2.group);
    sinter_tcc_kill9(&C, victim);
    assert_int_equal(global_status(x2), SINTER_GS_BEGIN); /* the new leader kept it in Begin */
    assert_int_equal(sinter_raw_end(&P, x2, true, 0, 0, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING);
    assert_int_equal(sinter_tcc_start(&C, victim), 0);
    assert_true(leader_of(0) != 0);

    /* A register after the rollback is refused. */
    struct sinter_xid x3 = begin_seq(0);
    begun++;
    assert_int_equal(sinter_raw_end(&P, x3, false, 0, 0, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED); /* no branch: settles at once */
    assert_int_equal(sinter_raw_branch_register(&P, x3, "account-a", 0, &late), SINTER_ESTATE);

    /* A node stopped right after a (re)start exits cleanly, three times over: the stop waits
     * until it serves (a SIGTERM landing before sinter-tc's main() blocked it killed the node
     * half-started: test_xa_e2e failed so under ASan, restarting its victim just before the
     * teardown). */
    for (int k = 0; k < 3; k++) {
        sinter_tcc_stop(&C, victim);
        assert_int_equal(sinter_tcc_start(&C, victim), 0);
    }
    sinter_tcc_stop(&C, victim);
    assert_int_equal(C.bad_exits, 0);
    assert_int_equal(sinter_tcc_start(&C, victim), 0);

    /* Restart all three: state recovered, sessions too. */
    stop_all_clean();
    assert_int_equal(sinter_tcc_start_all(&C), 0);
    assert_true(leader_of(0) != 0);
    assert_int_equal(global_status(x1), SINTER_GS_COMMITTING);
    assert_int_equal(global_status(x2), SINTER_GS_COMMITTING);
    assert_int_equal(global_status(x3), SINTER_GS_ROLLBACKED);
    again = begin_seq(begin1_seq);
    assert_int_equal(again.group, x1.group);
    assert_int_equal(again.index, x1.index);

    /* Let every replica catch up, stop, and count: exactly the globals begun on each. */
    (void)begin_seq(0);
    begun++;
    wait_counts(begun);
    stop_all_clean();
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(count_globals(i), begun);
    }

    /* Snapshots at no-op entries: with a snapshot due after every entry, each new leader's no-op
     * is snapshotted on every node, by a state machine that refuses a copy older than the index
     * asked for. */
    static const char *const snap_every_1[] = {"--snapshot-every", "1", NULL};
    long from[NODES + 1];
    for (int i = 1; i <= NODES; i++) {
        C.node[i].extra_args = snap_every_1;
        from[i] = log_size(i);
    }
    assert_int_equal(sinter_tcc_start_all(&C), 0);
    assert_true(leader_of(0) != 0);
    assert_true(wait_snapshots(from, (1u << GROUPS) - 1));
    /* Another election on an idle group: the only new entry is the new leader's no-op. */
    int old = leader_of(0);
    sinter_test_sleep_ms(200); /* the snapshot of the current no-op is not what is tested next */
    for (int i = 1; i <= NODES; i++) {
        from[i] = log_size(i);
    }
    sinter_tcc_stop(&C, old);
    int nl = leader_of(0);
    assert_true(nl != old);
    assert_true(wait_snapshots(from, 1u));
    stop_all_clean();
    for (int i = 1; i <= NODES; i++) {
        int failed = log_count(i, 0, "snapshot at ", " failed") +
                     log_count(i, 0, "snapshot for index ", "SINTER_E");
        if (failed != 0) {
            fprintf(stderr, "node %d logged %d failed snapshots\n", i, failed);
        }
        assert_int_equal(failed, 0);
    }
}

static int teardown(void **state)
{
    (void)state;
    sinter_tcc_stop_all(&C);
    sinter_raw_close(&P);
    return 0;
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
        cmocka_unit_test_teardown(tc_cluster, teardown),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, NULL, NULL));
}
