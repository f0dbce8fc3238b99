/*
 * bench/sinter_bench.h — sinter-bench, one program with a subcommand per workload. Each
 * subcommand lives in its own file (sinter_bench_<name>.c) and adds one line to the table below;
 * main (sinter_bench.c) only dispatches. Output: '#' comment lines, then a header and one row per
 * concurrency, so scripts can grep the rows.
 */
#ifndef SINTER_BENCH_H
#define SINTER_BENCH_H

/* A subcommand: argv[0] is its name; returns the process exit status. */
typedef int (*sinter_bench_fn)(int argc, char **argv);

/* sinter_bench_xa.c: XA global transactions per second (TM + RM + PostgreSQL). */
int sinter_bench_xa(int argc, char **argv);

struct sinter_bench_cmd {
    const char *name;
    sinter_bench_fn run;
    const char *summary;
};

/* The subcommand table: add a line per subcommand. */
#define SINTER_BENCH_COMMANDS                                                                      \
    {"xa", sinter_bench_xa, "XA global transactions/s with N branches on one PostgreSQL server"},

#endif /* SINTER_BENCH_H */
