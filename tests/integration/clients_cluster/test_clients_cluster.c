/*
 * libsinter-tm and libsinter-rm against a real three-node sinter-tc cluster on loopback:
 *
 *   - the TM is given ONE node's address (the leader of group 0, killed later), the RM another's:
 *     both find the leaders and the other members themselves (ClusterMeta, redirects) and
 *     register with every node they use;
 *   - begin / branch register / phase-one report / status / commit / rollback, the coordinator's
 *     answers surfacing as the documented codes: a register after the commit is SINTER_ESTATE,
 *     a rollback after the commit is SINTER_ESTATE with the commit-side status, an unknown xid
 *     is Finished (status) and SINTER_ENOTFOUND (commit);
 *   - the leader of group 0 is killed with SIGKILL while a thread runs a loop of begins, each
 *     with a distinct transaction name: every begin returns an xid or an error; every returned
 *     xid is known to the cluster afterwards (status Begin); the xids are distinct; and in the
 *     surviving replicas' state no transaction name occurs twice — a begin retried across the
 *     failover (same client id and seq) never became a second global.
 *
 * The cluster comes from tests/lib/tccluster.h. Nodes are stopped by PID; every wait is bounded
 * and polls. Node logs stay in the temp dir and are printed on failure.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "tccluster.h"
#include "testproc.h"

#include "sinter/client.h"
#include "sinter/error.h"
#include "sinter/rm.h"
#include "sinter/tm.h"
#include "sinter/types.h"

#define NODES   3
#define GROUPS  2
#define WAIT_MS 30000
#define SECRET  "clients-secret"
#define LOOP_N  60
#define KILL_AT 15

static const char *g_bin;
static struct sinter_tcc C;

/* ---- the loop of begins -------------------------------------------------------------------- */

struct loop {
    struct sinter_tm *tm;
    atomic_int done;
    int rc[LOOP_N];
    char xid[LOOP_N][SINTER_XID_STRLEN];
};

static void *begin_loop(void *arg)
{
    struct loop *l = arg;
    for (int i = 0; i < LOOP_N; i++) {
        char name[32];
        snprintf(name, sizeof name, "loop-%d", i);
        l->rc[i] = sinter_tm_begin(l->tm, name, 600000, l->xid[i]);
        if (l->rc[i] != SINTER_OK) {
            fprintf(stderr, "begin %s: %s (%s)\n", name, sinter_errname(l->rc[i]),
                    sinter_tm_errmsg());
        }
        atomic_fetch_add(&l->done, 1);
    }
    return NULL;
}

/* Names of loop globals in node i's state: *dups gets how many occur more than once. */
static long loop_globals(int i, long *dups)
{
    long total = 0;
    *dups = 0;
    for (int g = 0; g < GROUPS; g++) {
        char path[512];
        snprintf(path, sizeof path, "%s/group-%d/tc.sqlite", C.node[i].dir, g);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT count(*), count(DISTINCT tx_name) FROM globals "
                                            "WHERE tx_name LIKE 'loop-%'",
                                            -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        long n = sqlite3_column_int64(st, 0), d = sqlite3_column_int64(st, 1);
        total += n;
        *dups += n - d;
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    return total;
}

/* ---- the scenario -------------------------------------------------------------------------- */

static void clients_cluster(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_init(&C, g_bin, "clients", NODES, GROUPS, SECRET,
                                     "[tc]\ndefault_timeout_ms = 600000\n"),
                     0);
    assert_int_equal(sinter_tcc_start_all(&C), 0);
    int first = sinter_tcc_meta_leader(&C, SECRET, 0, WAIT_MS);
    assert_true(first != 0);

    /* The TM knows only the node that leads group 0 now (the one killed below, so the TM must
     * have learnt the others from ClusterMeta), the RM only another node. */
    const char *tm_addr[1] = {C.node[first].client_url};
    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = tm_addr;
    to.n_addresses = 1;
    to.secret = SECRET;
    to.application_id = "clients-test";
    to.deadline_ms = 20000;
    to.attempt_timeout_ms = 2000;
    struct sinter_tm *tm = NULL;
    assert_int_equal(sinter_tm_open(&tm, &to), SINTER_OK);

    const char *rm_addr[1] = {C.node[first % NODES + 1].client_url};
    const char *res[1] = {"acct"};
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = rm_addr;
    ro.n_addresses = 1;
    ro.secret = SECRET;
    ro.application_id = "clients-test-rm";
    ro.resources = res;
    ro.n_resources = 1;
    ro.deadline_ms = 20000;
    struct sinter_rm *rm = NULL;
    assert_int_equal(sinter_rm_open(&rm, &ro), SINTER_OK);

    /* Begin, a branch, its phase-one report, commit. */
    char x1[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "transfer", 600000, x1), SINTER_OK);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_status(tm, x1, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_BEGIN);
    uint64_t b1 = 0, b2 = 0;
    assert_int_equal(
        sinter_rm_branch_register(rm, x1, SINTER_BT_TCC, "acct", "alice:30", 8, 0, &b1), SINTER_OK);
    assert_true(b1 > 0);
    assert_int_equal(
        sinter_rm_branch_report(rm, x1, b1, SINTER_BT_TCC, "acct", SINTER_BS_PHASE1_DONE, 0),
        SINTER_OK);
    assert_int_equal(sinter_rm_global_status(rm, x1, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_BEGIN);
    assert_int_equal(sinter_tm_commit(tm, x1, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTING); /* the branch still needs phase 2 */
    assert_int_equal(sinter_tm_commit(tm, x1, 0, &st), SINTER_OK); /* repeated: current status */
    assert_true(sinter_global_status_is_commit_side(st));
    assert_int_equal(sinter_rm_branch_register(rm, x1, SINTER_BT_TCC, "acct", NULL, 0, 0, &b2),
                     SINTER_ESTATE);
    assert_true(strlen(sinter_rm_errmsg()) > 0);
    assert_int_equal(sinter_tm_rollback(tm, x1, 0, &st), SINTER_ESTATE);
    assert_true(sinter_global_status_is_commit_side(st));
    assert_int_equal(sinter_rm_global_status(rm, x1, &st), SINTER_OK);
    assert_true(sinter_global_status_is_commit_side(st));

    /* Rollback of a global without branches settles at once. */
    char x2[SINTER_XID_STRLEN];
    assert_int_equal(sinter_tm_begin(tm, "cancelled", 0, x2), SINTER_OK);
    assert_int_equal(sinter_tm_rollback(tm, x2, 10000, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_ROLLBACKED);
    assert_int_equal(sinter_rm_branch_register(rm, x2, SINTER_BT_TCC, "acct", NULL, 0, 0, &b2),
                     SINTER_ESTATE);

    /* Unknown xids. */
    assert_int_equal(sinter_tm_status(tm, "0:999999", 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_FINISHED);
    assert_int_equal(sinter_tm_commit(tm, "1:999999", 0, &st), SINTER_ENOTFOUND);
    assert_int_equal(st, SINTER_GS_FINISHED);

    /* The leader of group 0 killed in the middle of a loop of begins. */
    struct loop *l = calloc(1, sizeof *l);
    assert_non_null(l);
    l->tm = tm;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, begin_loop, l), 0);
    uint64_t end = sinter_test_now_ms() + 120000;
    while (atomic_load(&l->done) < KILL_AT && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(5);
    }
    int victim = sinter_tcc_meta_leader(&C, SECRET, 0, WAIT_MS);
    assert_true(victim != 0);
    sinter_tcc_kill9(&C, victim);
    fprintf(stderr, "killed node %d (leader of group 0) after %d begins\n", victim,
            atomic_load(&l->done));
    pthread_join(th, NULL);
    int ok = 0;
    for (int i = 0; i < LOOP_N; i++) {
        if (l->rc[i] != SINTER_OK) {
            assert_int_equal(l->rc[i], SINTER_ETIMEOUT); /* the only failure allowed */
            continue;
        }
        ok++;
        assert_int_equal(sinter_tm_status(tm, l->xid[i], 0, &st), SINTER_OK);
        assert_int_equal(st, SINTER_GS_BEGIN); /* the cluster knows it */
        for (int k = 0; k < i; k++) {
            assert_true(l->rc[k] != SINTER_OK || strcmp(l->xid[k], l->xid[i]) != 0);
        }
    }
    fprintf(stderr, "%d of %d begins returned an xid\n", ok, LOOP_N);
    assert_true(ok >= KILL_AT); /* the ones before the kill at least */
    free(l);
    sinter_rm_close(rm);
    sinter_tm_close(tm);

    /* No logical begin became two globals, on any surviving replica. */
    sinter_test_sleep_ms(1000); /* followers apply the last commits */
    sinter_tcc_stop_all(&C);
    assert_int_equal(C.bad_exits, 0);
    long most = 0;
    for (int i = 1; i <= NODES; i++) {
        if (i == victim) {
            continue;
        }
        long dups = 0;
        long n = loop_globals(i, &dups);
        fprintf(stderr, "node %d: %ld loop globals, %ld duplicates\n", i, n, dups);
        assert_int_equal(dups, 0);
        most = n > most ? n : most;
    }
    assert_true(most >= ok);
    assert_true(most <= LOOP_N);
}

static int teardown(void **state)
{
    (void)state;
    sinter_tcc_stop_all(&C);
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
        cmocka_unit_test_teardown(clients_cluster, teardown),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, NULL, NULL));
}
