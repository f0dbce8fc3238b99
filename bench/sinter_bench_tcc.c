/*
 * sinter-bench tcc: global TCC transactions with N branches against a running cluster.
 *
 *   sinter-bench tcc --branches 2 --concurrency 1,16,64 --seconds 10 --warmup 2
 *                    --addrs tcp://127.0.0.1:18091,... --secret-file DIR/secret
 *
 * One process plays the TM and the RM: one libsinter-tm handle and one libsinter-rm handle
 * (serving N actions "bench-b0".."bench-b<N-1>", one per branch, with trivial try / confirm /
 * cancel hooks) shared by every client thread. A transaction is: begin -> N x sinter_tcc_try
 * (each registers its branch at the coordinator, then runs the try inside the fence) -> commit;
 * its latency ends when the commit returns (the decision durable on a majority: DESIGN.md "TM
 * commit returns once the decision is durable"). Phase 2 (the coordinator delivering N
 * confirms to this process, the fence confirming them) runs meanwhile on the RM's threads and is
 * reported as phase2/s and phase2_done (sinter_bench.h).
 *
 * The fence lives in a temporary SQLite file per action (WAL, synchronous = OFF: the benchmark
 * measures the coordinator, not the service's disk), one connection per client thread and
 * action for the tries; phase 2 borrows a connection per delivery from a small per-action pool
 * (the action's connect / disconnect factory, as a real service's pool would), so connections are
 * opened once, not per delivery. Every connection carries its fence statement cache
 * (sinter_fence_cache_new), freed before the connection is closed. Removed at exit.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench_common.h"
#include "sinter/error.h"
#include "sinter/fence.h"
#include "sinter/rm.h"
#include "sinter/tcc.h"
#include "sinter/tm.h"
#include "sinter_bench.h"

#define MAX_BRANCHES 8
#define MAX_THREADS  1024
#define MAX_CLIENTS  16

/* A phase-2 connection pool for one action: idle (connection, statement cache) pairs, LIFO so a
 * few hot connections serve all workers. */
#define POOL_MAX 64
struct conn_pool {
    pthread_mutex_t mu;
    const char *path;
    unsigned n_idle;
    struct sinter_fence_db idle[POOL_MAX];
};

struct tcc_bench {
    /* --clients N: N TM + RM handle pairs (N client ids, N connections per node); client
     * thread t uses pair t % N. Every RM serves every action. */
    struct sinter_tm *tm[MAX_CLIENTS];
    struct sinter_rm *rm[MAX_CLIENTS];
    unsigned n_clients;
    unsigned branches;
    char dir[512];
    char names[MAX_BRANCHES][32];
    char paths[MAX_BRANCHES][600];
    sqlite3 *conn[MAX_THREADS][MAX_BRANCHES]; /* the tries' connections, opened lazily */
    struct sinter_fence_cache *cache[MAX_THREADS][MAX_BRANCHES]; /* ... and their caches */
    struct conn_pool pool[MAX_BRANCHES];                         /* phase 2's */
    atomic_uint_fast64_t confirms, cancels;
    atomic_uint_fast64_t err_begin, err_try, err_commit;
    /* Time spent per step (ns) and transactions that got that far, for the per-row breakdown
     * (reset after each row; includes the warm-up). */
    atomic_uint_fast64_t ns_begin, ns_try, ns_commit, n_begin, n_try, n_commit;
};

static int hook_confirm(const struct sinter_tcc_ctx *c)
{
    struct tcc_bench *b = c->user;
    atomic_fetch_add(&b->confirms, 1);
    return 0;
}

static int hook_cancel(const struct sinter_tcc_ctx *c)
{
    struct tcc_bench *b = c->user;
    atomic_fetch_add(&b->cancels, 1);
    return 0;
}

static sqlite3 *open_fast(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;", NULL, NULL, NULL);
    return db;
}

static void close_pooled(struct sinter_fence_db *db)
{
    sinter_fence_cache_free(db->cache); /* before the close: sqlite3_close refuses otherwise */
    sqlite3_close(db->sqlite);
    memset(db, 0, sizeof *db);
}

/* The RM workers' connections (the action's connect factory, called per delivery): an idle
 * pooled connection, or a new one with the tries' pragmas and its statement cache. */
static int worker_connect(void *arg, struct sinter_fence_db *db)
{
    struct conn_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    if (p->n_idle > 0) {
        *db = p->idle[--p->n_idle];
        pthread_mutex_unlock(&p->mu);
        return SINTER_OK;
    }
    pthread_mutex_unlock(&p->mu);
    sqlite3 *s = open_fast(p->path);
    if (s == NULL) {
        return SINTER_EDB;
    }
    *db = sinter_fence_db_sqlite(s);
    int rc = sinter_fence_cache_new(db, &db->cache);
    if (rc != SINTER_OK) {
        sqlite3_close(s);
    }
    return rc;
}

/* Back to the pool after a delivery, whatever its outcome: a connection left inside a
 * transaction is rolled back, and closed if that does not make it idle (sinter/tcc.h). */
static void worker_disconnect(void *arg, struct sinter_fence_db *db)
{
    struct conn_pool *p = arg;
    if (!sqlite3_get_autocommit(db->sqlite)) {
        (void)sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL);
    }
    if (sqlite3_get_autocommit(db->sqlite)) {
        pthread_mutex_lock(&p->mu);
        if (p->n_idle < POOL_MAX) {
            p->idle[p->n_idle++] = *db;
            memset(db, 0, sizeof *db);
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (db->sqlite != NULL) {
        close_pooled(db);
    }
}

static int tcc_tx(void *arg, unsigned thread)
{
    struct tcc_bench *b = arg;
    struct sinter_tm *tm = b->tm[thread % b->n_clients];
    struct sinter_rm *rm = b->rm[thread % b->n_clients];
    char xid[SINTER_XID_STRLEN];
    uint64_t t0 = sinter_bench_now_ns();
    int rc = sinter_tm_begin(tm, "bench", 60000, xid);
    uint64_t t1 = sinter_bench_now_ns();
    atomic_fetch_add(&b->ns_begin, t1 - t0);
    atomic_fetch_add(&b->n_begin, 1);
    if (rc != SINTER_OK) {
        atomic_fetch_add(&b->err_begin, 1);
        return rc;
    }
    for (unsigned i = 0; i < b->branches; i++) {
        struct sinter_fence_db db = sinter_fence_db_sqlite(b->conn[thread][i]);
        rc = SINTER_OK;
        if (db.sqlite == NULL) {
            db = sinter_fence_db_sqlite(b->conn[thread][i] = open_fast(b->paths[i]));
            rc = db.sqlite == NULL ? SINTER_EDB : sinter_fence_cache_new(&db, &b->cache[thread][i]);
        }
        if (rc == SINTER_OK) {
            db.cache = b->cache[thread][i];
            rc = sinter_tcc_try(rm, b->names[i], xid, "x", 1, &db, NULL);
        }
        if (rc != SINTER_OK) {
            atomic_fetch_add(&b->err_try, 1);
            uint32_t st;
            (void)sinter_tm_rollback(tm, xid, 0, &st);
            return rc;
        }
    }
    uint64_t t2 = sinter_bench_now_ns();
    atomic_fetch_add(&b->ns_try, t2 - t1);
    atomic_fetch_add(&b->n_try, 1);
    uint32_t st = 0;
    rc = sinter_tm_commit(tm, xid, 0, &st);
    atomic_fetch_add(&b->ns_commit, sinter_bench_now_ns() - t2);
    atomic_fetch_add(&b->n_commit, 1);
    if (rc != SINTER_OK) {
        atomic_fetch_add(&b->err_commit, 1);
    }
    return rc;
}

static uint64_t tcc_phase2_done(void *arg)
{
    struct tcc_bench *b = arg;
    return atomic_load(&b->confirms) / b->branches;
}

static double mean_ms(atomic_uint_fast64_t *ns, atomic_uint_fast64_t *n)
{
    uint64_t c = atomic_exchange(n, 0), t = atomic_exchange(ns, 0);
    return c ? (double)t / (double)c / 1e6 : 0;
}

/* Where a transaction's time goes: mean ms of the begin, of all N tries together (each is a
 * BranchRegister at the coordinator plus the local fence transaction), and of the commit. */
static void tcc_row_done(void *arg)
{
    struct tcc_bench *b = arg;
    double mb = mean_ms(&b->ns_begin, &b->n_begin), mt = mean_ms(&b->ns_try, &b->n_try);
    double mc = mean_ms(&b->ns_commit, &b->n_commit);
    printf("#   mean ms per step: begin %.2f, %u tries %.2f, commit %.2f\n", mb, b->branches, mt,
           mc);
    fflush(stdout);
}

static void usage(void)
{
    fputs("usage: sinter-bench tcc [--branches N] [common options]\n"
          "  --branches N   TCC branches per global transaction, 1..8 (default 2)\n"
          "  --rm-workers N phase-2 worker threads of each RM handle (default 8)\n"
          "  --clients N    TM + RM handle pairs, thread t uses pair t mod N (default 1)\n",
          stderr);
    fputs(sinter_bench_common_usage, stderr);
}

static int tcc_main(int argc, char **argv)
{
    struct sinter_bench_opts o;
    sinter_bench_opts_default(&o);
    unsigned branches = 2, rm_workers = 8, clients = 1;
    for (int i = 1; i < argc;) {
        int n = sinter_bench_parse_common(&o, argc, argv, i);
        if (n < 0) {
            return 2;
        }
        if (n > 0) {
            i += n;
            continue;
        }
        if (strcmp(argv[i], "--branches") == 0 && i + 1 < argc) {
            branches = (unsigned)strtoul(argv[i + 1], NULL, 10);
            i += 2;
        } else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc) {
            clients = (unsigned)strtoul(argv[i + 1], NULL, 10);
            i += 2;
        } else if (strcmp(argv[i], "--rm-workers") == 0 && i + 1 < argc) {
            rm_workers = (unsigned)strtoul(argv[i + 1], NULL, 10);
            i += 2;
        } else {
            usage();
            return 2;
        }
    }
    if (branches < 1 || branches > MAX_BRANCHES || rm_workers < 1 || rm_workers > 256 ||
        clients < 1 || clients > MAX_CLIENTS || sinter_bench_check(&o) != 0) {
        usage();
        return 2;
    }
    for (size_t i = 0; i < o.n_conc; i++) {
        if (o.conc[i] > MAX_THREADS) {
            fprintf(stderr, "sinter-bench tcc: concurrency at most %d\n", MAX_THREADS);
            return 2;
        }
    }
    struct tcc_bench *b = calloc(1, sizeof *b);
    char *dir = bench_mkdtemp("sinter-bench-tcc");
    if (b == NULL || dir == NULL) {
        fprintf(stderr, "sinter-bench tcc: out of memory or no temp dir\n");
        return 1;
    }
    b->branches = branches;
    b->n_clients = clients;
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    free(dir);
    const char *resources[MAX_BRANCHES];
    for (unsigned i = 0; i < branches; i++) {
        snprintf(b->names[i], sizeof b->names[i], "bench-b%u", i);
        snprintf(b->paths[i], sizeof b->paths[i], "%s/%s.db", b->dir, b->names[i]);
        resources[i] = b->names[i];
        pthread_mutex_init(&b->pool[i].mu, NULL);
        b->pool[i].path = b->paths[i];
    }

    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = o.addrs;
    to.n_addresses = o.n_addrs;
    to.secret = o.secret;
    to.application_id = "sinter-bench";
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = o.addrs;
    ro.n_addresses = o.n_addrs;
    ro.secret = o.secret;
    ro.application_id = "sinter-bench";
    ro.resources = resources;
    ro.n_resources = branches;
    ro.workers = rm_workers;
    ro.queue_capacity = 4096;
    ro.poll_max_items = 256;
    int rc = SINTER_OK;
    for (unsigned k = 0; rc == SINTER_OK && k < clients; k++) {
        rc = sinter_tm_open(&b->tm[k], &to);
        if (rc == SINTER_OK) {
            rc = sinter_rm_open(&b->rm[k], &ro);
        }
        for (unsigned i = 0; rc == SINTER_OK && i < branches; i++) {
            struct sinter_tcc_action a;
            memset(&a, 0, sizeof a);
            a.name = b->names[i];
            a.confirm_fn = hook_confirm;
            a.cancel_fn = hook_cancel;
            a.user = b;
            a.connect = worker_connect;
            a.disconnect = worker_disconnect;
            a.connect_arg = &b->pool[i];
            rc = sinter_tcc_register(b->rm[k], &a);
        }
        if (rc == SINTER_OK) {
            rc = sinter_rm_start(b->rm[k]);
        }
    }
    if (rc != SINTER_OK) {
        fprintf(stderr, "sinter-bench tcc: %s (%s)\n", sinter_strerror(rc), sinter_rm_errmsg());
        return 1;
    }
    printf("# sinter-bench tcc: %u branch(es) per global, %zu node address(es), window %.1f s "
           "after %.1f s warm-up; latency = begin -> commit returned (decision durable)\n",
           branches, o.n_addrs, o.seconds, o.warmup);
    printf("# %u TM + RM handle pair(s), %u phase-2 worker(s) each\n", clients, rm_workers);
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) == 3) {
        printf("# load average before: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    }
    sinter_bench_header();
    struct sinter_bench_row_hooks h = {tcc_tx, b, tcc_phase2_done, tcc_row_done};
    int ret = 0;
    for (size_t i = 0; i < o.n_conc && ret == 0; i++) {
        ret = sinter_bench_row(&o, o.conc[i], &h);
    }
    if (getloadavg(load, 3) == 3) {
        printf("# load average after: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    }
    struct sinter_rm_stats st, sk;
    memset(&st, 0, sizeof st);
    for (unsigned k = 0; k < clients; k++) {
        sinter_rm_stats(b->rm[k], &sk);
        st.items += sk.items;
        st.polls += sk.polls;
        st.reports_ok += sk.reports_ok;
        st.reports_failed += sk.reports_failed;
        st.report_msgs += sk.report_msgs;
    }
    printf("# errors by step: begin %" PRIuFAST64 ", try %" PRIuFAST64 ", commit %" PRIuFAST64
           "; phase 2: %" PRIuFAST64 " confirms, %" PRIuFAST64 " cancels, %" PRIu64
           " deliveries in %" PRIu64 " polls, %" PRIu64 " reports accepted (%" PRIu64
           " report messages), %" PRIu64 " dropped\n",
           atomic_load(&b->err_begin), atomic_load(&b->err_try), atomic_load(&b->err_commit),
           atomic_load(&b->confirms), atomic_load(&b->cancels), st.items, st.polls, st.reports_ok,
           st.report_msgs, st.reports_failed);
    for (unsigned k = 0; k < clients; k++) {
        sinter_rm_close(b->rm[k]);
        sinter_tm_close(b->tm[k]);
    }
    for (unsigned t = 0; t < MAX_THREADS; t++) {
        for (unsigned i = 0; i < branches; i++) {
            sinter_fence_cache_free(b->cache[t][i]);
            sqlite3_close(b->conn[t][i]);
        }
    }
    for (unsigned i = 0; i < branches; i++) {
        while (b->pool[i].n_idle > 0) {
            close_pooled(&b->pool[i].idle[--b->pool[i].n_idle]);
        }
        pthread_mutex_destroy(&b->pool[i].mu);
    }
    bench_rmrf(b->dir);
    free(b);
    return ret == 0 ? 0 : 1;
}

const struct sinter_bench_cmd sinter_bench_tcc_cmd = {
    "tcc", "global TCC transactions with N trivial branches against a running cluster", tcc_main};
