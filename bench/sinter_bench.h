/*
 * bench/sinter_bench.h — sinter-bench, global transactions against a running sinter-tc cluster.
 *
 *   sinter-bench <subcommand> [options]      e.g.  sinter-bench tcc --branches 2 --concurrency 16
 *
 * Subcommands live in their own files and register in the table of sinter_bench.c
 * (sinter_bench_tcc.c: TCC; sinter_bench_xa.c: XA on PostgreSQL). They share this harness:
 * common flags, C closed-loop client threads (each runs one transaction after the other), a
 * warm-up, a measured window, exact latency percentiles, and one table row per concurrency:
 *
 *   concurrency  tx/s  p50_ms  p99_ms  p999_ms  errors  phase2/s  phase2_done
 *
 * tx/s and the percentiles count transactions that succeeded inside the window (latency as the
 * subcommand defines it; for TCC begin -> commit returned, the decision durable); errors counts
 * failed ones; phase2/s and phase2_done are the subcommand's phase-2 completions inside the
 * window (per transaction) and the share of the window's transactions whose phase 2 had finished
 * a few seconds after it. Lines starting with '#' are comments.
 */
#ifndef SINTER_BENCH_H
#define SINTER_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SINTER_BENCH_MAX_ADDRS 8
#define SINTER_BENCH_MAX_CONC  16

struct sinter_bench_opts {
    const char *addrs[SINTER_BENCH_MAX_ADDRS]; /* client URLs of the cluster */
    size_t n_addrs;
    const char *secret;
    unsigned conc[SINTER_BENCH_MAX_CONC]; /* one row per value */
    size_t n_conc;
    double seconds; /* measured window per row; default 10 */
    double warmup;  /* seconds before the window; default 2 */
};

/* A subcommand's transaction: runs one transaction on client thread `thread` (0..C-1), returns
 * 0 on success (its latency is recorded) or a sinter error code (counted in errors). */
typedef int (*sinter_bench_tx_fn)(void *arg, unsigned thread);

struct sinter_bench_row_hooks {
    sinter_bench_tx_fn tx;
    void *arg;
    /* Phase-2 completions so far, in transactions (e.g. confirms / branches); may be NULL. */
    uint64_t (*phase2_done)(void *arg);
    /* Called after the row's line was printed (e.g. to print a '#' breakdown); may be NULL. */
    void (*row_done)(void *arg);
};

/* Parses the common flags at argv[i]: returns how many entries it consumed (0: not a common
 * flag, -1: bad value, message printed). Ownership: o borrows argv's strings. */
int sinter_bench_parse_common(struct sinter_bench_opts *o, int argc, char **argv, int i);
void sinter_bench_opts_default(struct sinter_bench_opts *o);
/* Checks that the cluster and secret were given; prints why not. 0 or -1. */
int sinter_bench_check(const struct sinter_bench_opts *o);
extern const char sinter_bench_common_usage[];

/* Prints the table header. */
void sinter_bench_header(void);

/* Runs one row: conc threads calling h->tx in a loop for warmup + seconds, then prints the row.
 * Returns 0, or -1 when a thread could not start. */
int sinter_bench_row(const struct sinter_bench_opts *o, unsigned conc,
                     const struct sinter_bench_row_hooks *h);

/* Monotonic nanoseconds. */
uint64_t sinter_bench_now_ns(void);

struct sinter_bench_cmd {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand's name */
};

extern const struct sinter_bench_cmd sinter_bench_tcc_cmd;

/* sinter_bench_xa.c: XA global transactions per second (TM + RM + PostgreSQL). It parses its own
 * flags and prints its own table (see bench/README.md). */
int sinter_bench_xa(int argc, char **argv);
extern const struct sinter_bench_cmd sinter_bench_xa_cmd;

#endif /* SINTER_BENCH_H */
