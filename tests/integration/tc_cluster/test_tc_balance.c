/*
 * [raft] balance_leaders (tc/config.h) in real sinter-tc processes:
 *
 *   - `sinter-tc --balance-leaders maybe` is refused before anything starts: exit 2 and the
 *     error names raft.balance_leaders;
 *   - three nodes, three groups, balance_leaders = true from the cluster INI: nodes 1 and 2 start
 *     first, so group 2 can only be led by one of them; once node 3 starts, group g ends up led
 *     by node g + 1 (voters sorted by id, position g mod 3; node i has id i), agreed by every
 *     node's ClusterMeta, within 60 s. Group 2 can only reach node 3 by a handover: node 3 joins
 *     with the shortest log of its group, so it cannot win an election there. A node's log says
 *     the host started that handover;
 *   - then one global begun in each group (the seq is chosen so that the group, a function of
 *     (client id, seq), is g) is answered by node g + 1 and commits.
 * Every wait polls with a generous bound (slow, sanitized CI).
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

#include "tccluster.h"
#include "tcproto.h"
#include "testproc.h"

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/types.h"

#define NODES      3
#define GROUPS     3
#define WAIT_MS    30000
#define BALANCE_MS 60000
#define SECRET     "s3cret-for-tests"

static const char *g_bin;
static struct sinter_tcc C;
static struct sinter_raw P;

static void bad_flag_refused(void **state)
{
    (void)state;
    char *const argv[] = {(char *)g_bin, "--balance-leaders", "maybe", NULL};
    struct sinter_test_output o;
    assert_int_equal(sinter_test_run(argv, NULL, NULL, 30000, &o), 0);
    if (o.exit_code != 2 || strstr(o.err, "raft.balance_leaders") == NULL) {
        fprintf(stderr, "exit %d, stderr: %s\n", o.exit_code, o.err);
    }
    assert_int_equal(o.exit_code, 2);
    assert_non_null(strstr(o.err, "raft.balance_leaders"));
    sinter_test_output_free(&o);
}

/* True when every running node agrees that group g is led by node g + 1, for every group. */
static bool balanced(void)
{
    for (uint32_t g = 0; g < GROUPS; g++) {
        if (sinter_raw_leader_of(&P, g) != (int)g + 1) {
            return false;
        }
    }
    return true;
}

static int handovers_logged(void)
{
    int n = 0;
    for (int i = 1; i <= NODES; i++) {
        char path[400];
        n += sinter_test_count_lines(sinter_tcc_log_path(&C, i, path, sizeof path), 0,
                                     "balance_leaders: transferring leadership", NULL);
    }
    return n;
}

static void leaders_follow_ids(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_init(&C, g_bin, "tc-balance", NODES, GROUPS, SECRET,
                                     "[raft]\nbalance_leaders = true\n"),
                     0);
    assert_int_equal(sinter_raw_open(&P, &C, SECRET, "tc-balance-test", NULL), SINTER_OK);
    P.call_ms = 10000; /* a node slow to answer (sanitizer start-up) is not an error here */
    P.wait_ms = WAIT_MS;
    assert_int_equal(sinter_tcc_start(&C, 1), 0);
    assert_int_equal(sinter_tcc_start(&C, 2), 0);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(sinter_raw_register(&P, i, WAIT_MS), SINTER_OK);
    }
    /* Every group has a leader among nodes 1 and 2 (a majority of 3) before node 3 exists. */
    int g2 = sinter_raw_leader_of(&P, 2);
    assert_true(g2 == 1 || g2 == 2);

    assert_int_equal(sinter_tcc_start(&C, 3), 0);
    assert_int_equal(sinter_raw_register(&P, 3, WAIT_MS), SINTER_OK);
    uint64_t end = sinter_test_now_ms() + BALANCE_MS;
    bool ok = false;
    P.wait_ms = 5000; /* one ClusterMeta round per poll; the deadline is BALANCE_MS */
    while (!(ok = balanced()) && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(200);
    }
    if (!ok) {
        for (uint32_t g = 0; g < GROUPS; g++) {
            fprintf(stderr, "group %u: led by node %d, want %u\n", g, sinter_raw_leader_of(&P, g),
                    g + 1);
        }
    }
    assert_true(ok);
    assert_true(handovers_logged() >= 1);

    /* A global in each group: begun and committed on its preferred leader. */
    P.wait_ms = WAIT_MS;
    for (uint32_t g = 0; g < GROUPS; g++) {
        uint64_t seq = P.seq + 1;
        while (sinter_proto_begin_group(P.client, seq, GROUPS) != g) {
            seq++;
        }
        P.seq = seq; /* later requests take seqs after it */
        struct sinter_xid x = {0, 0};
        int by = 0;
        assert_int_equal(sinter_raw_begin(&P, seq, 600000, &x, &by), SINTER_OK);
        assert_int_equal(x.group, g);
        assert_true(x.index > 0);
        assert_int_equal(by, (int)g + 1);
        uint32_t st = 0;
        assert_int_equal(sinter_raw_end(&P, x, true, 0, 0, 0, &st), SINTER_OK);
        assert_int_equal(st, SINTER_GS_COMMITTED); /* no branch: settles at once */
    }

    sinter_tcc_stop_all(&C);
    assert_int_equal(C.bad_exits, 0);
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
        cmocka_unit_test(bad_flag_refused),
        cmocka_unit_test_teardown(leaders_follow_ids, teardown),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, NULL, NULL));
}
