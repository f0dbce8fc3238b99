/*
 * sinter-bench xa: XA global transactions per second through a running sinter-tc cluster, with
 * N branches on one PostgreSQL database (bench/xa_vs_pgbench.sh runs it beside pgbench doing the
 * same two-phase work without a coordinator).
 *
 * One global = TM begin; per branch: sinter_rm_xa_begin (BEGIN, SET LOCAL bounds,
 * pg_current_xact_id(), BranchRegister), one UPDATE of the client's own row, sinter_rm_xa_end
 * (PREPARE TRANSACTION, the late-prepare guard's GlobalStatus, BranchReport); TM commit, which
 * returns once the decision is durable (Seata's answer to the TM); the RM's workers then run
 * COMMIT PREPARED on every branch. So that a counted transaction did all the work pgbench's
 * script does, a row's clock runs until phase 2 has drained: after the window the clients stop
 * and the row waits until none of the bench's gids is left in pg_prepared_xacts; tx/s = globals
 * committed in the window / (window + stop + drain). (Phase 2 cannot fall behind unboundedly
 * anyway: max_prepared_transactions caps the backlog, PREPARE would fail.)
 * --wait-phase2: each commit also waits for phase 2 with sinter_tm_commit's wait (libsinter-tm
 * polls the status after 2, 4, 8, ... ms, at most every 100 ms, tm/tm.c).
 * --async-report: the resource's async_report option (sinter/rm_xa.h): sinter_rm_xa_end returns
 * after PREPARE and the PhaseOne_Done report goes out on the RM's sender threads, so the
 * global's path has 4 sequential coordinator writes instead of 6; each row then prints the
 * resource's report counters (accepted / refused: the commit overtook the report, ...).
 * --report-delay-ms D: with --async-report, the resource's report_delay_ms (reports wait D ms, at
 * most 1000; one whose branch phase 2 has ended meanwhile is dropped, counted superseded).
 *
 * Each client (thread) has its own rows (no lock waits between clients, as in the pgbench
 * script) and one connection per branch. Rows are printed per concurrency:
 *   conc  tx_per_s  errors  p50_ms  p99_ms
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench_common.h"
#include "sinter/rm.h"
#include "sinter/rm_xa.h"
#include "sinter/tm.h"
#include "sinter/types.h"
#include "sinter_bench.h"

#define MAX_ADDR     8
#define MAX_BRANCHES 8
#define MAX_CONC     256

struct xa_bench {
    const char *conninfo;
    unsigned branches;
    bool wait_phase2;
    bool async_report;
    unsigned report_delay_ms;
    struct sinter_tm *tm;
    struct sinter_rm_xa *xa;
    atomic_bool stop, measuring;
    pthread_mutex_t mu;
    struct bench_lat lat;
    uint64_t done, errors;
    char first_err[256];
};

struct client {
    struct xa_bench *b;
    unsigned idx;
    pthread_t th;
};

static void note_error(struct xa_bench *b, const char *what, int rc, const char *msg)
{
    pthread_mutex_lock(&b->mu);
    b->errors++;
    if (b->first_err[0] == '\0') {
        snprintf(b->first_err, sizeof b->first_err, "%s: %s (%s)", what, sinter_strerror(rc), msg);
    }
    pthread_mutex_unlock(&b->mu);
}

/* One global transaction; returns whether it committed. */
static bool one_global(struct xa_bench *b, PGconn **c, unsigned idx)
{
    char xid[SINTER_XID_STRLEN];
    int rc = sinter_tm_begin(b->tm, "bench-xa", 0, xid);
    if (rc != SINTER_OK) {
        note_error(b, "begin", rc, sinter_tm_errmsg());
        return false;
    }
    bool ok = true;
    for (unsigned k = 0; k < b->branches && ok; k++) {
        struct sinter_xa_branch br;
        rc = sinter_rm_xa_begin(b->xa, c[k], xid, &br);
        if (rc != SINTER_OK) {
            note_error(b, "branch begin", rc, sinter_xa_errmsg());
            ok = false;
            break;
        }
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE bench_xa SET balance = balance + 1 WHERE id = %u",
                 idx * b->branches + k + 1);
        PGresult *r = PQexec(c[k], sql);
        bool sql_ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!sql_ok) {
            note_error(b, "update", SINTER_EDB, PQresultErrorMessage(r));
        }
        PQclear(r);
        rc = sinter_rm_xa_end(b->xa, c[k], &br, sql_ok);
        if (sql_ok && rc != SINTER_OK) {
            note_error(b, "branch end", rc, sinter_xa_errmsg());
        }
        ok = ok && sql_ok && rc == SINTER_OK;
    }
    uint32_t st = 0;
    rc = ok ? sinter_tm_commit(b->tm, xid, b->wait_phase2 ? 30000 : 0, &st)
            : sinter_tm_rollback(b->tm, xid, 0, &st);
    if (!ok) {
        return false;
    }
    bool committed = rc == SINTER_OK && (b->wait_phase2 ? st == SINTER_GS_COMMITTED
                                                        : sinter_global_status_is_commit_side(st));
    if (!committed) {
        note_error(b, "commit", rc, sinter_global_status_name(st));
    }
    return committed;
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct xa_bench *b = cl->b;
    PGconn *c[MAX_BRANCHES] = {0};
    for (unsigned k = 0; k < b->branches; k++) {
        c[k] = PQconnectdb(b->conninfo);
        if (PQstatus(c[k]) != CONNECTION_OK) {
            note_error(b, "connect", SINTER_EDB, PQerrorMessage(c[k]));
            goto out;
        }
    }
    while (!atomic_load(&b->stop)) {
        uint64_t t0 = bench_now_ns();
        bool ok = one_global(b, c, cl->idx);
        uint64_t t1 = bench_now_ns();
        if (ok && atomic_load(&b->measuring)) {
            pthread_mutex_lock(&b->mu);
            b->done++;
            bench_lat_add(&b->lat, t1 - t0);
            pthread_mutex_unlock(&b->mu);
        }
        if (!ok) {
            bench_sleep_ms(10); /* do not spin on a persistent failure */
        }
    }
out:
    for (unsigned k = 0; k < b->branches; k++) {
        PQfinish(c[k]);
    }
    return NULL;
}

/* This bench's prepared transactions still waiting for phase 2 (-1 on error). */
static long prepared_left(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_prepared_xacts "
                            "WHERE starts_with(gid, 'sntr:bench:')");
    long n = PQresultStatus(r) == PGRES_TUPLES_OK ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

static int setup_table(const char *conninfo, unsigned rows)
{
    PGconn *c = PQconnectdb(conninfo);
    char sql[256];
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS bench_xa (id int PRIMARY KEY, balance bigint NOT NULL);"
             "INSERT INTO bench_xa SELECT g, 0 FROM generate_series(1, %u) g "
             "ON CONFLICT DO NOTHING",
             rows);
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0) {
        fprintf(stderr, "sinter-bench xa: setup: %s", PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static const char usage[] =
    "usage: sinter-bench xa --conninfo CONNINFO --addr URL [--addr URL ...] --secret-file F\n"
    "         [--branches N (2)] [--concurrency C (repeatable; 8)] [--seconds T (10)]\n"
    "         [--warmup W (2)] [--rm-workers W (16)] [--wait-phase2] [--async-report]\n"
    "         [--report-delay-ms D (0)]\n"
    "  CONNINFO names the database (dbname=...); its server needs max_prepared_transactions\n"
    "  of at least branches x the largest concurrency.\n";

int sinter_bench_xa(int argc, char **argv)
{
    const char *addrs[MAX_ADDR];
    size_t n_addr = 0;
    const char *secret_file = NULL;
    unsigned conc[BENCH_MAX_CONC];
    size_t n_conc = 0;
    unsigned rm_workers = 16;
    double seconds = 10, warmup = 2;
    struct xa_bench b;
    memset(&b, 0, sizeof b);
    b.branches = 2;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--wait-phase2") == 0) {
            b.wait_phase2 = true;
            continue;
        }
        if (strcmp(argv[i], "--async-report") == 0) {
            b.async_report = true;
            continue;
        }
        if (v == NULL) {
            fputs(usage, stderr);
            return 2;
        }
        if (strcmp(argv[i], "--conninfo") == 0) {
            b.conninfo = v;
        } else if (strcmp(argv[i], "--addr") == 0 && n_addr < MAX_ADDR) {
            addrs[n_addr++] = v;
        } else if (strcmp(argv[i], "--secret-file") == 0) {
            secret_file = v;
        } else if (strcmp(argv[i], "--branches") == 0) {
            b.branches = (unsigned)atoi(v);
        } else if (strcmp(argv[i], "--concurrency") == 0 && n_conc < BENCH_MAX_CONC) {
            conc[n_conc++] = (unsigned)atoi(v);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(v);
        } else if (strcmp(argv[i], "--warmup") == 0) {
            warmup = atof(v);
        } else if (strcmp(argv[i], "--report-delay-ms") == 0) {
            b.report_delay_ms = (unsigned)atoi(v);
        } else if (strcmp(argv[i], "--rm-workers") == 0) {
            rm_workers = (unsigned)atoi(v);
        } else {
            fputs(usage, stderr);
            return 2;
        }
        i++;
    }
    if (n_conc == 0) {
        conc[n_conc++] = 8;
    }
    unsigned max_conc = 0;
    for (size_t i = 0; i < n_conc; i++) {
        max_conc = conc[i] > max_conc ? conc[i] : max_conc;
    }
    char secret[256] = "";
    FILE *f = secret_file ? fopen(secret_file, "r") : NULL;
    if (f == NULL || fgets(secret, sizeof secret, f) == NULL || b.conninfo == NULL || n_addr == 0 ||
        b.branches < 1 || b.branches > MAX_BRANCHES || max_conc < 1 || max_conc > MAX_CONC ||
        seconds <= 0) {
        if (f != NULL) {
            fclose(f);
        }
        fputs(usage, stderr);
        return 2;
    }
    fclose(f);
    secret[strcspn(secret, "\r\n")] = '\0';
    if (setup_table(b.conninfo, max_conc * b.branches) != 0) {
        return 1;
    }

    struct sinter_tm_opts to;
    sinter_tm_opts_default(&to);
    to.addresses = addrs;
    to.n_addresses = n_addr;
    to.secret = secret;
    to.application_id = "sinter-bench";
    static const char *const res[] = {"bench_xa"};
    struct sinter_rm_opts ro;
    sinter_rm_opts_default(&ro);
    ro.addresses = addrs;
    ro.n_addresses = n_addr;
    ro.secret = secret;
    ro.application_id = "sinter-bench";
    ro.resources = res;
    ro.n_resources = 1;
    ro.workers = rm_workers;
    ro.queue_capacity = 1024;
    ro.poll_max_items = 64;
    struct sinter_rm *rm = NULL;
    if (sinter_tm_open(&b.tm, &to) != SINTER_OK || sinter_rm_open(&rm, &ro) != SINTER_OK) {
        fprintf(stderr, "sinter-bench xa: cannot open TM / RM: %s %s\n", sinter_tm_errmsg(),
                sinter_rm_errmsg());
        return 1;
    }
    struct sinter_rm_xa_opts xo = {.resource_id = "bench_xa",
                                   .ns = "bench",
                                   .conninfo = b.conninfo,
                                   .pool_size = rm_workers,
                                   .async_report = b.async_report,
                                   .report_delay_ms = b.report_delay_ms};
    int rc = sinter_rm_xa_register(rm, &xo, &b.xa, NULL);
    if (rc != SINTER_OK || sinter_rm_start(rm) != SINTER_OK) {
        fprintf(stderr, "sinter-bench xa: %s: %s\n", sinter_strerror(rc), sinter_rm_errmsg());
        sinter_rm_close(rm);
        sinter_tm_close(b.tm);
        return 1;
    }
    PGconn *mon = PQconnectdb(b.conninfo);
    if (PQstatus(mon) != CONNECTION_OK) {
        fprintf(stderr, "sinter-bench xa: %s", PQerrorMessage(mon));
        PQfinish(mon);
        sinter_rm_close(rm);
        sinter_tm_close(b.tm);
        return 1;
    }
    pthread_mutex_init(&b.mu, NULL);
    printf("# sinter-bench xa: %u branches per global on one database, %s; %.0f s per row after "
           "%.0f s warm-up; RM workers %u; PhaseOne_Done reports %s (delay %u ms)\n",
           b.branches,
           b.wait_phase2 ? "each commit waits for phase 2 (TM status poll)"
                         : "row time includes draining phase 2",
           seconds, warmup, rm_workers, b.async_report ? "asynchronous" : "synchronous",
           b.report_delay_ms);
    printf("%6s %10s %8s %8s %8s\n", "conc", "tx_per_s", "errors", "p50_ms", "p99_ms");
    fflush(stdout);
    int status = 0;
    for (size_t r = 0; r < n_conc; r++) {
        struct client *cl = calloc(conc[r], sizeof *cl);
        if (cl == NULL) {
            status = 1;
            break;
        }
        atomic_store(&b.stop, false);
        atomic_store(&b.measuring, false);
        for (unsigned i = 0; i < conc[r]; i++) {
            cl[i].b = &b;
            cl[i].idx = i;
            pthread_create(&cl[i].th, NULL, client_main, &cl[i]);
        }
        bench_sleep_ms((unsigned)(warmup * 1000));
        pthread_mutex_lock(&b.mu);
        b.done = 0;
        b.errors = 0;
        b.first_err[0] = '\0';
        bench_lat_reset(&b.lat);
        pthread_mutex_unlock(&b.mu);
        uint64_t t0 = bench_now_ns();
        atomic_store(&b.measuring, true);
        bench_sleep_ms((unsigned)(seconds * 1000));
        atomic_store(&b.measuring, false);
        atomic_store(&b.stop, true);
        for (unsigned i = 0; i < conc[r]; i++) {
            pthread_join(cl[i].th, NULL);
        }
        free(cl);
        /* The row's clock runs until phase 2 of everything committed has finished. */
        long left = 0;
        uint64_t drain_end = bench_now_ns() + 60ull * 1000000000ull;
        while ((left = prepared_left(mon)) != 0 && bench_now_ns() < drain_end) {
            bench_sleep_ms(5);
        }
        double secs = (double)(bench_now_ns() - t0) / 1e9;
        if (left != 0) {
            printf("# phase 2 did not drain within 60 s: %ld prepared left\n", left);
            status = 1;
        }
        pthread_mutex_lock(&b.mu);
        uint64_t done = b.done, errors = b.errors;
        bench_lat_sort(&b.lat);
        double p50 = bench_lat_pct(&b.lat, 0.50), p99 = bench_lat_pct(&b.lat, 0.99);
        pthread_mutex_unlock(&b.mu);
        printf("%6u %10.1f %8" PRIu64 " %8.2f %8.2f\n", conc[r], (double)done / secs, errors, p50,
               p99);
        if (b.first_err[0] != '\0') {
            printf("# first error: %s\n", b.first_err);
            b.first_err[0] = '\0';
        }
        if (b.async_report) {
            struct sinter_rm_xa_report_stats as;
            sinter_rm_xa_report_stats(b.xa, &as);
            printf("# async reports so far: queued %" PRIu64 " accepted %" PRIu64
                   " refused %" PRIu64 " lost %" PRIu64 " guard_rollbacks %" PRIu64 " left %" PRIu64
                   " superseded %" PRIu64 " sync_fallbacks %" PRIu64 " pending %u\n",
                   as.queued, as.accepted, as.refused, as.lost, as.guard_rollbacks, as.left,
                   as.superseded, as.sync_fallbacks, as.pending);
        }
        fflush(stdout);
    }
    PQfinish(mon);
    sinter_rm_close(rm);
    sinter_tm_close(b.tm);
    bench_lat_free(&b.lat);
    pthread_mutex_destroy(&b.mu);
    return status;
}
