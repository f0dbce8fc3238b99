/*
 * TCC end to end with real processes: three sinter-tc nodes (tests/lib/tccluster.h), account
 * services (examples/tcc-transfer: sinter-account, each with its own SQLite file in the test's
 * temp dir, libsinter-rm and the TCC fence), and this process as the client (libsinter-tm plus
 * the services' line RPC). The cases run in order on one cluster and one pair of databases:
 *
 *   1. many concurrent transfers (8 threads x 40, random directions and amounts, one in eight
 *      far above any balance so its try fails), with a SIGKILL of group 0's leader a third of
 *      the way in; the node is restarted afterwards;
 *   2. bank-a is killed with SIGKILL after both tries and before the commit: the committed global
 *      cannot finish while no instance serves bank-a; restarted, bank-a confirms its branch;
 *   3. a duplicate phase-2 delivery: two bank-a instances on the same file, whose confirm hook
 *      outlasts the coordinator's phase2_lease_ms (1 s): the confirm is delivered again while the
 *      first still runs, and the business confirm runs once (hook_log);
 *   4. a try that arrives after its cancel: the service registers the branch, the global times
 *      out, the cancel reaches the fence (an empty rollback: SUSPENDED), then the try runs and is
 *      refused (SINTER_EFENCE); nothing is frozen.
 *
 * Afterwards, with every service stopped: money is conserved over both databases (balance +
 * frozen, nothing frozen or incoming left), every global the client began is Committed (both
 * fence rows COMMITTED) or Rollbacked / TimeoutRollbacked (every fence row ROLLBACKED or
 * SUSPENDED), no fence row is TRIED, and no business hook ran twice for a branch.
 *
 * Every wait polls with a generous bound (a loaded 2-core machine, sanitizer builds); nothing
 * asserts on timing.
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

#include "acct_rpc.h"
#include "tccluster.h"
#include "testproc.h"

#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/tm.h"
#include "sinter/types.h"

#define GROUPS        2u
#define SECRET        "tcc-e2e-secret"
#define N_ACCOUNTS    4
#define START_BALANCE 1000
#define THREADS       8
#define PER_THREAD    40
#define RPC_MS        20000u
#define FINAL_WAIT_MS 60000u
#define MAX_GLOBALS   (THREADS * PER_THREAD + 16)

/* Globals from the coordinator's point of view: short retries so phase 2 converges fast; a 1 s
 * lease so case 3's slow confirm is delivered twice. */
static const char *extra_ini = "[tc]\n"
                               "retry_initial_ms = 50\n"
                               "retry_max_ms = 1000\n"
                               "phase2_lease_ms = 1000\n";

struct svc {
    const char *name; /* action = resource id */
    char db[512], log[512], url[64];
    unsigned confirm_delay_ms;
    pid_t pid;
};

static struct sinter_tcc cl;
static const char *g_acct_bin;
static struct sinter_tm *g_tm;
static struct svc svc_a, svc_b, svc_a2;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_xids[MAX_GLOBALS][SINTER_XID_STRLEN];
static size_t g_n_xids;
static uint32_t g_final[MAX_GLOBALS]; /* each global's final status, read in invariants_hold */

static void record_xid(const char *xid)
{
    pthread_mutex_lock(&g_mu);
    if (g_n_xids < MAX_GLOBALS) {
        snprintf(g_xids[g_n_xids++], SINTER_XID_STRLEN, "%s", xid);
    }
    pthread_mutex_unlock(&g_mu);
}

/* ---- account services ---------------------------------------------------------------------------
 */

static void svc_init(struct svc *s, const char *name, const char *dbname, const char *logname)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    snprintf(s->db, sizeof s->db, "%s/%s", cl.tmp, dbname);
    snprintf(s->log, sizeof s->log, "%s/%s", cl.tmp, logname);
    snprintf(s->url, sizeof s->url, "tcp://127.0.0.1:%d", sinter_test_free_port());
}

/* Starts s and waits for its "ready" line. Accounts are created only when missing, so a restart
 * keeps the balances. */
static int svc_start(struct svc *s, const char *prefix)
{
    long from = sinter_test_file_size(s->log);
    const char *urls[SINTER_TCC_MAX_NODES];
    int n = sinter_tcc_client_urls(&cl, urls);
    char opens[N_ACCOUNTS][32], delay[16];
    const char *argv[64];
    int k = 0;
    argv[k++] = g_acct_bin;
    argv[k++] = "--name";
    argv[k++] = s->name;
    argv[k++] = "--db";
    argv[k++] = s->db;
    argv[k++] = "--listen";
    argv[k++] = s->url;
    argv[k++] = "--secret";
    argv[k++] = SECRET;
    for (int i = 0; i < n; i++) {
        argv[k++] = "--addr";
        argv[k++] = urls[i];
    }
    for (int i = 0; i < N_ACCOUNTS; i++) {
        snprintf(opens[i], sizeof opens[i], "%s%d=%d", prefix, i, START_BALANCE);
        argv[k++] = "--open";
        argv[k++] = opens[i];
    }
    if (s->confirm_delay_ms > 0) {
        snprintf(delay, sizeof delay, "%u", s->confirm_delay_ms);
        argv[k++] = "--confirm-delay-ms";
        argv[k++] = delay;
    }
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(g_acct_bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    uint64_t end = sinter_test_now_ms() + 30000;
    while (sinter_test_now_ms() < end) {
        if (sinter_test_count_lines(s->log, from, "ready", NULL) > 0) {
            return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "%s exited at start, see %s\n", s->name, s->log);
            return -1;
        }
        sinter_test_sleep_ms(20);
    }
    return -1;
}

static int svc_stop(struct svc *s)
{
    return sinter_test_stop(&s->pid, 20000);
}

/* One RPC to a service on a fresh handle; returns the transport code, answer in resp. */
static int rpc(const struct svc *s, const char *req, char *resp, size_t cap)
{
    struct sinter_acct_client *c = NULL;
    int rc = sinter_acct_open(&c, s->url);
    if (rc == SINTER_OK) {
        rc = sinter_acct_call(c, req, resp, cap, RPC_MS);
    }
    sinter_acct_close(c);
    return rc;
}

/* ---- the coordinator's view
 * ----------------------------------------------------------------------- */

/* The leader of group g: among running nodes' last "role" lines for g, the highest term's
 * "leader N". 0 when none is known. */
static int leader_of(unsigned g)
{
    long best_term = -1;
    int leader = 0;
    for (int i = 1; i <= cl.n; i++) {
        if (cl.node[i].pid <= 0) {
            continue;
        }
        char path[512], line[512], last[512] = "", pat[32];
        snprintf(pat, sizeof pat, "group=%u ", g);
        FILE *f = fopen(sinter_tcc_log_path(&cl, i, path, sizeof path), "r");
        if (f == NULL) {
            continue;
        }
        while (fgets(line, sizeof line, f) != NULL) {
            if (strstr(line, pat) != NULL && strstr(line, "msg=\"role ") != NULL) {
                snprintf(last, sizeof last, "%s", line);
            }
        }
        fclose(f);
        const char *p = strstr(last, ", leader ");
        const char *t = strstr(last, ", term ");
        if (p != NULL && t != NULL) {
            long term = strtol(t + 7, NULL, 10);
            int l = (int)strtol(p + 9, NULL, 10);
            if (l > 0 && term > best_term) {
                best_term = term;
                leader = l;
            }
        }
    }
    return leader;
}

static bool is_final_ok(uint32_t st)
{
    return st == SINTER_GS_COMMITTED || st == SINTER_GS_ROLLBACKED ||
           st == SINTER_GS_TIMEOUT_ROLLBACKED;
}

/* Polls the global's status until it is final (bounded); returns the last status read. */
static uint32_t wait_final(const char *xid)
{
    uint32_t st = 0;
    uint64_t end = sinter_test_now_ms() + FINAL_WAIT_MS;
    while (sinter_test_now_ms() < end) {
        if (sinter_tm_status(g_tm, xid, 5000, &st) == SINTER_OK &&
            sinter_global_status_is_final(st)) {
            break;
        }
    }
    return st;
}

/* ---- databases (read directly)
 * -------------------------------------------------------------------- */

static sqlite3 *db_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* The first column of the first row of sql with up to two text parameters. */
static int64_t db_int(const char *path, const char *sql, const char *p1, const char *p2)
{
    sqlite3 *db = db_open(path);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (p1 != NULL) {
        sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
    }
    if (p2 != NULL) {
        sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
    }
    int src = sqlite3_step(st);
    assert_true(src == SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int64_t fence_status_of(const char *path, const char *xid, const char *branch)
{
    return db_int(path,
                  "SELECT coalesce(max(status), 0) FROM sinter_tcc_fence"
                  " WHERE xid = ?1 AND branch_id = CAST(?2 AS INTEGER)",
                  xid, branch);
}

/* ---- one transfer
 * ----------------------------------------------------------------------------------- */

struct xfer_result {
    int begin, try1, try2, end;
    char xid[SINTER_XID_STRLEN];
    char b1[24], b2[24]; /* branch ids */
};

static int do_try(const struct svc *s, const char *xid, char kind, const char *acct, long amt,
                  const char *extra, char *branch, size_t bcap)
{
    char req[256], resp[SINTER_ACCT_LINE_MAX];
    snprintf(req, sizeof req, "try %s %c %s %ld%s", xid, kind, acct, amt, extra);
    int rc = rpc(s, req, resp, sizeof resp);
    if (rc != SINTER_OK) {
        return rc;
    }
    rc = sinter_acct_answer_code(resp);
    if (rc == SINTER_OK && branch != NULL) {
        unsigned long long bid = strtoull(resp + 3, NULL, 10);
        snprintf(branch, bcap, "%llu", bid);
    }
    return rc;
}

/* begin, try debit at from, try credit at to, commit or rollback (no phase-2 wait). */
static void transfer(const struct svc *from, const char *facct, const struct svc *to,
                     const char *tacct, long amt, struct xfer_result *r)
{
    memset(r, 0, sizeof *r);
    r->begin = sinter_tm_begin(g_tm, "transfer", 60000, r->xid);
    if (r->begin != SINTER_OK) {
        return; /* outcome unknown: an orphan global is rolled back at its timeout */
    }
    record_xid(r->xid);
    r->try1 = do_try(from, r->xid, 'D', facct, amt, "", r->b1, sizeof r->b1);
    r->try2 = r->try1 == SINTER_OK ? do_try(to, r->xid, 'C', tacct, amt, "", r->b2, sizeof r->b2)
                                   : SINTER_ECANCELED;
    uint32_t st;
    if (r->try1 == SINTER_OK && r->try2 == SINTER_OK) {
        r->end = sinter_tm_commit(g_tm, r->xid, 0, &st);
    } else {
        r->end = sinter_tm_rollback(g_tm, r->xid, 0, &st);
    }
}

/* ---- case 1: concurrent transfers with a leader kill ------------------------------------------
 */

static atomic_int g_done, g_commits, g_failed_tries, g_errors;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 17u;
    for (int i = 0; i < PER_THREAD; i++) {
        bool a_to_b = (rand_r(&seed) & 1) != 0;
        char fa[16], ta[16];
        snprintf(fa, sizeof fa, "%s%d", a_to_b ? "a" : "b", rand_r(&seed) % N_ACCOUNTS);
        snprintf(ta, sizeof ta, "%s%d", a_to_b ? "b" : "a", rand_r(&seed) % N_ACCOUNTS);
        long amt = rand_r(&seed) % 8 == 0 ? 100000 : 1 + rand_r(&seed) % 300;
        struct xfer_result r;
        transfer(a_to_b ? &svc_a : &svc_b, fa, a_to_b ? &svc_b : &svc_a, ta, amt, &r);
        if (r.begin == SINTER_OK && r.try1 == SINTER_OK && r.try2 == SINTER_OK &&
            r.end == SINTER_OK) {
            atomic_fetch_add(&g_commits, 1);
        } else if (r.begin == SINTER_OK && r.try1 == SINTER_ESTATE) {
            atomic_fetch_add(&g_failed_tries, 1);
        } else if (r.begin != SINTER_OK || r.end != SINTER_OK) {
            atomic_fetch_add(&g_errors, 1);
        }
        atomic_fetch_add(&g_done, 1);
    }
    return NULL;
}

static void concurrent_transfers_with_leader_kill(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)i), 0);
    }
    uint64_t end = sinter_test_now_ms() + 120000;
    while (atomic_load(&g_done) < THREADS * PER_THREAD / 3 && sinter_test_now_ms() < end) {
        sinter_test_sleep_ms(10);
    }
    int victim = leader_of(0);
    assert_true(victim > 0);
    fprintf(stderr, "# killing node %d (leader of group 0) after %d transfers\n", victim,
            atomic_load(&g_done));
    sinter_tcc_kill9(&cl, victim);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(sinter_tcc_start(&cl, victim), 0);
    fprintf(stderr, "# %d transfers: %d committed, %d failed tries, %d other errors\n",
            atomic_load(&g_done), atomic_load(&g_commits), atomic_load(&g_failed_tries),
            atomic_load(&g_errors));
    /* Both outcomes must have happened for the checks at the end to mean something. */
    assert_true(atomic_load(&g_commits) > THREADS * PER_THREAD / 4);
    assert_true(atomic_load(&g_failed_tries) > 0);
    for (size_t i = 0; i < g_n_xids; i++) {
        uint32_t st = wait_final(g_xids[i]);
        if (!is_final_ok(st)) {
            fail_msg("global %s ended %s", g_xids[i], sinter_global_status_name(st));
        }
    }
}

/* ---- case 2: the service dies between try and confirm -------------------------------------------
 */

static void service_killed_between_try_and_confirm(void **state)
{
    (void)state;
    char xid[SINTER_XID_STRLEN], b1[24], b2[24];
    assert_int_equal(sinter_tm_begin(g_tm, "kill-between", 60000, xid), SINTER_OK);
    record_xid(xid);
    assert_int_equal(do_try(&svc_a, xid, 'D', "a0", 7, "", b1, sizeof b1), SINTER_OK);
    assert_int_equal(do_try(&svc_b, xid, 'C', "b0", 7, "", b2, sizeof b2), SINTER_OK);
    sinter_test_kill9(&svc_a.pid);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    /* No process serves bank-a: its confirm cannot have run, whatever the timing. */
    assert_int_equal(fence_status_of(svc_a.db, xid, b1), SINTER_FENCE_TRIED);
    assert_int_equal(sinter_tm_status(g_tm, xid, 0, &st), SINTER_OK);
    assert_true(st == SINTER_GS_COMMITTING || st == SINTER_GS_COMMIT_RETRYING);

    assert_int_equal(svc_start(&svc_a, "a"), 0);
    st = wait_final(xid);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    assert_int_equal(fence_status_of(svc_a.db, xid, b1), SINTER_FENCE_COMMITTED);
    assert_int_equal(fence_status_of(svc_b.db, xid, b2), SINTER_FENCE_COMMITTED);
}

/* ---- case 3: the same confirm delivered twice
 * ------------------------------------------------------- */

static int64_t svc_items(const struct svc *s)
{
    char resp[SINTER_ACCT_LINE_MAX];
    long long items = -1, handled, reports;
    if (rpc(s, "stats", resp, sizeof resp) != SINTER_OK ||
        sscanf(resp, "ok %lld %lld %lld", &items, &handled, &reports) != 3) {
        return -1;
    }
    return items;
}

static void duplicate_confirm_runs_once(void **state)
{
    (void)state;
    /* Two bank-a instances on the same database, each confirm outlasting the 1 s lease. The
     * redelivery must reach the other instance while the first confirm still runs: after the
     * lease, the coordinator's next lease scan and that instance's next poll. 8 s leaves that
     * 7 s on a loaded machine (3 s left 2, and a late redelivery found the branch done). The
     * second confirm then waits on the first's SQLite write lock (busy timeout 5 s), may fail
     * retryably and be delivered again; the fence makes every later one a no-op. */
    assert_int_equal(svc_stop(&svc_a), 0);
    svc_a.confirm_delay_ms = 8000;
    svc_a2.confirm_delay_ms = 8000;
    assert_int_equal(svc_start(&svc_a, "a"), 0);
    assert_int_equal(svc_start(&svc_a2, "a"), 0);

    char xid[SINTER_XID_STRLEN], b1[24], b2[24];
    assert_int_equal(sinter_tm_begin(g_tm, "duplicate", 60000, xid), SINTER_OK);
    record_xid(xid);
    assert_int_equal(do_try(&svc_a, xid, 'D', "a1", 11, "", b1, sizeof b1), SINTER_OK);
    assert_int_equal(do_try(&svc_b, xid, 'C', "b1", 11, "", b2, sizeof b2), SINTER_OK);
    uint32_t st = 0;
    assert_int_equal(sinter_tm_commit(g_tm, xid, 0, &st), SINTER_OK);
    assert_int_equal(wait_final(xid), SINTER_GS_COMMITTED);

    int64_t items = svc_items(&svc_a) + svc_items(&svc_a2);
    fprintf(stderr, "# bank-a instances received %" PRId64 " deliveries for one branch\n", items);
    assert_true(items >= 2); /* delivered again after the lease ran out */
    assert_int_equal(db_int(svc_a.db,
                            "SELECT count(*) FROM hook_log WHERE xid = ?1 AND hook = 'confirm'",
                            xid, NULL),
                     1);
    assert_int_equal(fence_status_of(svc_a.db, xid, b1), SINTER_FENCE_COMMITTED);
    assert_int_equal(svc_stop(&svc_a2), 0);
}

/* ---- case 4: a try after its cancel
 * --------------------------------------------------------------- */

static void late_try_refused(void **state)
{
    (void)state;
    const char *q = "SELECT balance * 1000000 + frozen FROM accounts WHERE id = ?1";
    int64_t before = db_int(svc_a.db, q, "a2", NULL);
    char xid[SINTER_XID_STRLEN];
    /* 1.5 s timeout and no commit: the coordinator's timeout rollback cancels the branch. */
    assert_int_equal(sinter_tm_begin(g_tm, "late-try", 1500, xid), SINTER_OK);
    record_xid(xid);
    int rc = do_try(&svc_a, xid, 'D', "a2", 13, " late", NULL, 0);
    assert_int_equal(rc, SINTER_EFENCE);
    assert_int_equal(wait_final(xid), SINTER_GS_TIMEOUT_ROLLBACKED);
    assert_int_equal(
        db_int(svc_a.db, "SELECT max(status) FROM sinter_tcc_fence WHERE xid = ?1", xid, NULL),
        SINTER_FENCE_SUSPENDED);
    assert_int_equal(db_int(svc_a.db, "SELECT count(*) FROM hook_log WHERE xid = ?1", xid, NULL),
                     0);
    assert_int_equal(db_int(svc_a.db, q, "a2", NULL), before);
}

/* ---- afterwards
 * ------------------------------------------------------------------------------------- */

static void invariants_hold(void **state)
{
    (void)state;
    for (size_t i = 0; i < g_n_xids; i++) {
        uint32_t st = wait_final(g_xids[i]);
        if (!is_final_ok(st)) {
            fail_msg("global %s ended %s", g_xids[i], sinter_global_status_name(st));
        }
        g_final[i] = st;
    }
    assert_int_equal(svc_stop(&svc_a), 0);
    assert_int_equal(svc_stop(&svc_b), 0);

    const char *dbs[2] = {svc_a.db, svc_b.db};
    int64_t money = 0;
    for (int d = 0; d < 2; d++) {
        money += db_int(dbs[d], "SELECT sum(balance + frozen) FROM accounts", NULL, NULL);
        assert_int_equal(
            db_int(dbs[d], "SELECT sum(frozen) + sum(incoming) FROM accounts", NULL, NULL), 0);
        assert_int_equal(
            db_int(dbs[d], "SELECT count(*) FROM sinter_tcc_fence WHERE status = 1", NULL, NULL),
            0);
        assert_int_equal(db_int(dbs[d],
                                "SELECT count(*) FROM (SELECT 1 FROM hook_log"
                                " GROUP BY xid, branch_id, hook HAVING count(*) > 1)",
                                NULL, NULL),
                         0);
    }
    assert_int_equal(money, 2 * N_ACCOUNTS * START_BALANCE);

    size_t committed = 0;
    for (size_t i = 0; i < g_n_xids; i++) {
        uint32_t st = g_final[i];
        const char *xid = g_xids[i];
        int64_t rows = 0, good = 0;
        for (int d = 0; d < 2; d++) {
            rows +=
                db_int(dbs[d], "SELECT count(*) FROM sinter_tcc_fence WHERE xid = ?1", xid, NULL);
            good += db_int(dbs[d],
                           st == SINTER_GS_COMMITTED
                               ? "SELECT count(*) FROM sinter_tcc_fence WHERE xid = ?1"
                                 " AND status = 2"
                               : "SELECT count(*) FROM sinter_tcc_fence WHERE xid = ?1"
                                 " AND status IN (3, 4)",
                           xid, NULL);
            if (st != SINTER_GS_COMMITTED) {
                assert_int_equal(db_int(dbs[d],
                                        "SELECT count(*) FROM hook_log WHERE xid = ?1"
                                        " AND hook = 'confirm'",
                                        xid, NULL),
                                 0);
            }
        }
        if (rows != good || (st == SINTER_GS_COMMITTED && rows != 2)) {
            fail_msg("global %s (%s): %" PRId64 " fence rows, %" PRId64 " in the right state", xid,
                     sinter_global_status_name(st), rows, good);
        }
        committed += st == SINTER_GS_COMMITTED;
    }
    fprintf(stderr, "# %zu globals checked, %zu committed; money conserved: %" PRId64 "\n",
            g_n_xids, committed, money);
}

/* ---- fixture
 * ---------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    if (sinter_tcc_init(&cl, cl.bin, "tcc-e2e", 3, GROUPS, SECRET, extra_ini) != 0 ||
        sinter_tcc_start_all(&cl) != 0 || sinter_tcc_wait_leaders(&cl, GROUPS, 60000) != 0) {
        return -1;
    }
    const char *urls[SINTER_TCC_MAX_NODES];
    struct sinter_tm_opts o;
    sinter_tm_opts_default(&o);
    o.addresses = urls;
    o.n_addresses = (size_t)sinter_tcc_client_urls(&cl, urls);
    o.secret = SECRET;
    o.application_id = "tcc-e2e";
    o.deadline_ms = 30000;
    if (sinter_tm_open(&g_tm, &o) != SINTER_OK) {
        return -1;
    }
    svc_init(&svc_a, "bank-a", "a.db", "bank-a.log");
    svc_init(&svc_b, "bank-b", "b.db", "bank-b.log");
    svc_init(&svc_a2, "bank-a", "a.db", "bank-a2.log");
    if (svc_start(&svc_a, "a") != 0 || svc_start(&svc_b, "b") != 0) {
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sinter_test_kill9(&svc_a.pid);
    sinter_test_kill9(&svc_a2.pid);
    sinter_test_kill9(&svc_b.pid);
    sinter_tm_close(g_tm);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s path/to/sinter-tc path/to/sinter-account\n", argv[0]);
        return 2;
    }
    cl.bin = argv[1];
    g_acct_bin = argv[2];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_transfers_with_leader_kill),
        cmocka_unit_test(service_killed_between_try_and_confirm),
        cmocka_unit_test(duplicate_confirm_runs_once),
        cmocka_unit_test(late_try_refused),
        cmocka_unit_test(invariants_hold),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    /* The services' logs (sanitizer builds) count like the nodes'. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "grep -l -e 'Sanitizer' -e 'runtime error:' %s/bank-*.log", cl.tmp);
    if (cl.tmp[0] != '\0' && system(cmd) == 0) {
        fprintf(stderr, "an account service log holds a sanitizer report\n");
        rc = 1;
    }
    return sinter_tcc_finish(&cl, rc);
}
