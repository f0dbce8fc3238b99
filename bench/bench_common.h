/*
 * bench/bench_common.h — helpers shared by raft-bench and its peers (craft-bench, etcd-put-bench):
 * the clock, a latency recorder, the result table, option parsing, loopback ports and temporary
 * directories. Every bench prints the same table so bench/raft_vs_peers.sh can put rows side by
 * side: a header line, then one line per concurrency whose first field is the concurrency.
 * Lines starting with '#' are comments (setup, notes).
 */
#ifndef SINTER_BENCH_COMMON_H
#define SINTER_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_CONC 16

/* Monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);

/* Every latency of a row (ns), kept whole: a 5 s row at 60k/s is 300k values, 2.4 MB, and exact
 * percentiles beat a histogram's buckets at the tail we care about. Not thread-safe: the caller
 * serialises. */
struct bench_lat {
    uint64_t *v;
    size_t n, cap;
};

void bench_lat_add(struct bench_lat *l, uint64_t ns);
void bench_lat_reset(struct bench_lat *l);
void bench_lat_free(struct bench_lat *l);
/* Sorts in place; then bench_lat_pct(l, 0.99) is the 99th percentile in ms (0 when empty). */
void bench_lat_sort(struct bench_lat *l);
double bench_lat_pct(const struct bench_lat *l, double q);

/* One row of the table. */
struct bench_row {
    unsigned conc;
    double secs;       /* measured window */
    uint64_t done;     /* completions inside the window */
    uint64_t errors;   /* failed proposals / puts (any error) */
    int64_t snaps;     /* snapshots taken by the leader during the row; -1 unknown */
    int64_t snaps_all; /* by all nodes; -1 unknown */
    double max_gap_ms; /* longest time without a completion inside the window */
};

void bench_print_header(void);
/* Sorts l and prints the row. */
void bench_print_row(const struct bench_row *r, struct bench_lat *l);

/* Common flags. Returns the number of argv entries consumed at argv[i] (0: not a common flag,
 * -1: bad value, message printed). */
struct bench_opts {
    unsigned conc[BENCH_MAX_CONC];
    size_t n_conc;
    double seconds;      /* per row; default 5 */
    double warmup;       /* seconds; default 1 */
    uint32_t entry_size; /* default 128 */
};
void bench_opts_default(struct bench_opts *o);
int bench_opts_parse(struct bench_opts *o, int argc, char **argv, int i);
extern const char bench_opts_usage[];

/* A free TCP port on 127.0.0.1 (bound then released; the caller binds it soon after). 0 on
 * failure. */
uint16_t bench_free_port(void);

/* mkdtemp under $TMPDIR or /tmp with prefix; returns a malloc'd path or NULL. */
char *bench_mkdtemp(const char *prefix);
/* rm -rf path (best effort). */
void bench_rmrf(const char *path);

/* Sleeps ms milliseconds. */
void bench_sleep_ms(unsigned ms);

#endif /* SINTER_BENCH_COMMON_H */
