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
 * Nodes are stopped by PID; every wait is bounded and polls. Node logs stay in the temp dir and
 * are printed on failure.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sqlite3.h>

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

struct node {
    uint64_t id;
    int raft_port, client_port;
    char client_url[64];
    pid_t pid;
    char dir[400];
};

static const char *g_bin;
static char g_tmp[256];
static struct node N[NODES + 1];
static int g_bad_exits;

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
}

static void stop_node(struct node *n)
{
    int ws = sinter_test_stop(&n->pid, 30000);
    if (ws != 0) {
        fprintf(stderr, "node %" PRIu64 " did not exit cleanly (status %d)\n", n->id, ws);
        g_bad_exits++;
    }
}

static int node_by_url(const char *url)
{
    for (int i = 1; i <= NODES; i++) {
        if (url != NULL && strcmp(url, N[i].client_url) == 0) {
            return i;
        }
    }
    return 0;
}

/* Waits until ClusterMeta names a live leader for every group; returns the node (1..NODES)
 * leading `group`, 0 on timeout. */
static int wait_leader(uint32_t group)
{
    const char *urls[NODES];
    int n = 0;
    for (int i = 1; i <= NODES; i++) {
        if (N[i].pid > 0) {
            urls[n++] = N[i].client_url;
        }
    }
    struct sinter_client_opts o;
    sinter_client_opts_default(&o);
    o.urls = urls;
    o.n_urls = (size_t)n;
    o.secret = SECRET;
    struct sinter_client *c = NULL;
    assert_int_equal(sinter_client_open(&c, &o), SINTER_OK);
    int found = 0;
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (found == 0 && sinter_test_now_ms() < end) {
        if (sinter_client_refresh(c, 2000) == SINTER_OK) {
            bool all = true;
            int want = 0;
            for (uint32_t g = 0; g < GROUPS; g++) {
                int l = sinter_client_leader(c, g);
                int node = l >= 0 ? node_by_url(sinter_client_node_url(c, (size_t)l)) : 0;
                all = all && node != 0 && N[node].pid > 0;
                if (g == group) {
                    want = node;
                }
            }
            found = all ? want : 0;
        }
        if (found == 0) {
            sinter_test_sleep_ms(100);
        }
    }
    sinter_client_close(c);
    return found;
}

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
        snprintf(path, sizeof path, "%s/group-%d/tc.sqlite", N[i].dir, g);
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
    char ini[400];
    snprintf(ini, sizeof ini, "%s/cluster.ini", g_tmp);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f,
            "[raft]\ngroups = %d\ntick_ms = 20\n[tc]\nsecret = " SECRET
            "\ndefault_timeout_ms = 600000\n",
            GROUPS);
    fclose(f);
    for (int i = 1; i <= NODES; i++) {
        N[i].id = (uint64_t)i;
        N[i].raft_port = sinter_test_free_port();
        N[i].client_port = sinter_test_free_port();
        snprintf(N[i].client_url, sizeof N[i].client_url, "tcp://127.0.0.1:%d", N[i].client_port);
        snprintf(N[i].dir, sizeof N[i].dir, "%s/n%d", g_tmp, i);
    }
    for (int i = 1; i <= NODES; i++) {
        spawn(&N[i]);
    }
    int first = wait_leader(0);
    assert_true(first != 0);

    /* The TM knows only the node that leads group 0 now (the one killed below, so the TM must
     * have learnt the others from ClusterMeta), the RM only another node. */
    const char *tm_addr[1] = {N[first].client_url};
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

    const char *rm_addr[1] = {N[first % NODES + 1].client_url};
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
    int victim = wait_leader(0);
    assert_true(victim != 0);
    sinter_test_kill9(&N[victim].pid);
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
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
    }
    assert_int_equal(g_bad_exits, 0);
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
    for (int i = 1; i <= NODES; i++) {
        stop_node(&N[i]);
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
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sinter-clients-XXXXXX");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(clients_cluster, teardown),
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
    } else {
        snprintf(cmd, sizeof cmd, "tail -n 40 %s/node*.log 1>&2; echo 'kept %s' 1>&2", g_tmp,
                 g_tmp);
    }
    if (system(cmd) != 0) {
        fprintf(stderr, "could not run: %s\n", cmd);
    }
    return rc;
}
