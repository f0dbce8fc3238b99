/*
 * sinter-bench: the subcommand table and the harness shared by the subcommands (sinter_bench.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "sinter_bench.h"

/* Subcommands; an xa subcommand adds its line here. */
static const struct sinter_bench_cmd *const cmds[] = {
    &sinter_bench_tcc_cmd,
    &sinter_bench_xa_cmd,
};

const char sinter_bench_common_usage[] =
    "  --addrs URL[,URL...]      client URLs of the cluster (or --addr URL, repeated)\n"
    "  --secret S | --secret-file F   the cluster's shared secret\n"
    "  --concurrency C[,C...]    client threads, one table row each (default 16)\n"
    "  --seconds T               measured window per row (default 10)\n"
    "  --warmup S                seconds before each window (default 2)\n";

uint64_t sinter_bench_now_ns(void)
{
    return bench_now_ns();
}

void sinter_bench_opts_default(struct sinter_bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->conc[0] = 16;
    o->n_conc = 1;
    o->seconds = 10;
    o->warmup = 2;
}

static char secret_buf[256];
static char addrs_buf[1024];

int sinter_bench_parse_common(struct sinter_bench_opts *o, int argc, char **argv, int i)
{
    const char *f = argv[i];
    if (i + 1 >= argc) {
        return 0;
    }
    const char *v = argv[i + 1];
    if (strcmp(f, "--addr") == 0) {
        if (o->n_addrs >= SINTER_BENCH_MAX_ADDRS) {
            fprintf(stderr, "sinter-bench: too many addresses\n");
            return -1;
        }
        o->addrs[o->n_addrs++] = v;
        return 2;
    }
    if (strcmp(f, "--addrs") == 0) {
        snprintf(addrs_buf, sizeof addrs_buf, "%s", v);
        for (char *save = NULL, *t = strtok_r(addrs_buf, ",", &save); t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            if (o->n_addrs >= SINTER_BENCH_MAX_ADDRS) {
                fprintf(stderr, "sinter-bench: too many addresses\n");
                return -1;
            }
            o->addrs[o->n_addrs++] = t;
        }
        return 2;
    }
    if (strcmp(f, "--secret") == 0) {
        o->secret = v;
        return 2;
    }
    if (strcmp(f, "--secret-file") == 0) {
        FILE *fp = fopen(v, "r");
        if (fp == NULL || fgets(secret_buf, sizeof secret_buf, fp) == NULL) {
            fprintf(stderr, "sinter-bench: cannot read %s\n", v);
            if (fp != NULL) {
                fclose(fp);
            }
            return -1;
        }
        fclose(fp);
        secret_buf[strcspn(secret_buf, "\r\n")] = '\0';
        o->secret = secret_buf;
        return 2;
    }
    if (strcmp(f, "--concurrency") == 0) {
        o->n_conc = 0;
        const char *p = v;
        while (*p != '\0') {
            char *end;
            unsigned long c = strtoul(p, &end, 10);
            if (end == p || c == 0 || c > 1024 || o->n_conc >= SINTER_BENCH_MAX_CONC ||
                (*end != ',' && *end != '\0')) {
                fprintf(stderr, "sinter-bench: bad --concurrency %s\n", v);
                return -1;
            }
            o->conc[o->n_conc++] = (unsigned)c;
            p = *end == ',' ? end + 1 : end;
        }
        return o->n_conc > 0 ? 2 : -1;
    }
    if (strcmp(f, "--seconds") == 0 || strcmp(f, "--warmup") == 0) {
        char *end;
        double d = strtod(v, &end);
        if (*end != '\0' || d < 0 || d > 3600 || (f[2] == 's' && d <= 0)) {
            fprintf(stderr, "sinter-bench: bad %s %s\n", f, v);
            return -1;
        }
        *(f[2] == 's' ? &o->seconds : &o->warmup) = d;
        return 2;
    }
    return 0;
}

int sinter_bench_check(const struct sinter_bench_opts *o)
{
    if (o->n_addrs == 0 || o->secret == NULL) {
        fprintf(stderr, "sinter-bench: --addrs and --secret (or --secret-file) are required\n");
        return -1;
    }
    return 0;
}

void sinter_bench_header(void)
{
    printf("%11s %9s %8s %8s %8s %7s %9s %11s\n", "concurrency", "tx/s", "p50_ms", "p99_ms",
           "p999_ms", "errors", "phase2/s", "phase2_done");
    fflush(stdout);
}

/* ---- one row ------------------------------------------------------------------------------------
 */

struct row_state {
    const struct sinter_bench_row_hooks *h;
    _Atomic uint64_t t_start, t_end; /* window, monotonic ns; 0 until known */
    atomic_bool stop;
};

struct thread_state {
    struct row_state *row;
    unsigned id;
    pthread_t th;
    struct bench_lat lat;
    uint64_t ok, errors;
};

static void *client_thread(void *arg)
{
    struct thread_state *t = arg;
    struct row_state *r = t->row;
    while (!atomic_load(&r->stop)) {
        uint64_t t0 = bench_now_ns();
        int rc = r->h->tx(r->h->arg, t->id);
        uint64_t t1 = bench_now_ns();
        /* Count what started and ended inside the window. */
        if (t0 >= atomic_load(&r->t_start) && t1 <= atomic_load(&r->t_end)) {
            if (rc == 0) {
                bench_lat_add(&t->lat, t1 - t0);
                t->ok++;
            } else {
                t->errors++;
            }
        }
    }
    return NULL;
}

int sinter_bench_row(const struct sinter_bench_opts *o, unsigned conc,
                     const struct sinter_bench_row_hooks *h)
{
    struct row_state r;
    memset(&r, 0, sizeof r);
    r.h = h;
    uint64_t now = bench_now_ns();
    atomic_store(&r.t_start, now + (uint64_t)(o->warmup * 1e9));
    atomic_store(&r.t_end, now + (uint64_t)((o->warmup + o->seconds) * 1e9));
    struct thread_state *ts = calloc(conc, sizeof *ts);
    if (ts == NULL) {
        return -1;
    }
    unsigned started = 0;
    for (; started < conc; started++) {
        ts[started].row = &r;
        ts[started].id = started;
        if (pthread_create(&ts[started].th, NULL, client_thread, &ts[started]) != 0) {
            break;
        }
    }
    uint64_t p2_start = 0, p2_end = 0;
    bench_sleep_ms((unsigned)(o->warmup * 1000));
    if (h->phase2_done != NULL) {
        p2_start = h->phase2_done(h->arg);
    }
    bench_sleep_ms((unsigned)(o->seconds * 1000));
    if (h->phase2_done != NULL) {
        p2_end = h->phase2_done(h->arg);
    }
    atomic_store(&r.stop, true);
    for (unsigned i = 0; i < started; i++) {
        pthread_join(ts[i].th, NULL);
    }
    struct bench_lat all = {0};
    uint64_t ok = 0, errors = 0;
    for (unsigned i = 0; i < started; i++) {
        for (size_t k = 0; k < ts[i].lat.n; k++) {
            bench_lat_add(&all, ts[i].lat.v[k]);
        }
        ok += ts[i].ok;
        errors += ts[i].errors;
        bench_lat_free(&ts[i].lat);
    }
    free(ts);
    /* Share of the transactions begun before the window's end whose phase 2 is done a little
     * later: waits up to 10 s for the backlog to drain. */
    double done_share = -1;
    if (h->phase2_done != NULL && ok > 0) {
        uint64_t target = p2_start + ok, cur = 0;
        for (int i = 0; i < 100; i++) {
            cur = h->phase2_done(h->arg);
            if (cur >= target) {
                break;
            }
            bench_sleep_ms(100);
        }
        done_share = cur >= target ? 100.0 : 100.0 * (double)(cur - p2_start) / (double)ok;
    }
    bench_lat_sort(&all);
    char p2rate[32] = "-", p2done[32] = "-";
    if (h->phase2_done != NULL) {
        snprintf(p2rate, sizeof p2rate, "%.0f", (double)(p2_end - p2_start) / o->seconds);
        snprintf(p2done, sizeof p2done, "%.1f%%", done_share < 0 ? 0.0 : done_share);
    }
    printf("%11u %9.0f %8.2f %8.2f %8.2f %7" PRIu64 " %9s %11s\n", conc, (double)ok / o->seconds,
           bench_lat_pct(&all, 0.50), bench_lat_pct(&all, 0.99), bench_lat_pct(&all, 0.999), errors,
           p2rate, p2done);
    fflush(stdout);
    if (h->row_done != NULL) {
        h->row_done(h->arg);
    }
    bench_lat_free(&all);
    return started == conc ? 0 : -1;
}

const struct sinter_bench_cmd sinter_bench_xa_cmd = {
    "xa", "XA global transactions/s with N branches on one PostgreSQL server", sinter_bench_xa};

/* ---- main ---------------------------------------------------------------------------------------
 */

static void usage(FILE *f)
{
    fputs("usage: sinter-bench <subcommand> [options]\n", f);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        fprintf(f, "  %-6s %s\n", cmds[i]->name, cmds[i]->summary);
    }
    fputs("common options:\n", f);
    fputs(sinter_bench_common_usage, f);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i]->name) == 0) {
            return cmds[i]->main(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "sinter-bench: unknown subcommand %s\n", argv[1]);
    usage(stderr);
    return 2;
}
