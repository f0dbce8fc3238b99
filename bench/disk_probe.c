/*
 * disk-probe — does the disk stall on its own? One thread rewrites 4 KiB blocks of a pre-zeroed
 * file with O_DIRECT | O_DSYNC, the raft log's append into a spare segment (raft/store/log.c),
 * with no raft, no snapshot and no other I/O of ours, and prints the latency distribution and
 * every write of 10 ms or more. raft-bench --io-trace found its commit gaps to be log appends
 * that took the whole gap on all nodes at once (bench/FINDINGS.md F6); if this probe shows the
 * same stalls, they belong to the disk.
 *
 *   disk-probe [--seconds 20] [--dir $TMPDIR] [--settle 0]
 *
 * --settle S waits S seconds between the zero-fill (64 MiB, fsync'd) and the measurement: on this
 * VM the first seconds after it stalled more, as if the host were still writing it back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"

#define FILE_SIZE      (64u << 20)
#define BLOCK          4096u
#define LONG_NS        10000000u
#define LONG_MAX_SHOWN 40

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double secs = 20, settle = 0;
    const char *dir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            secs = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--settle") == 0 && i + 1 < argc) {
            settle = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "usage: disk-probe [--seconds 20] [--dir DIR] [--settle 0]\n");
            return 2;
        }
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/disk-probe-%d.bin", dir, (int)getpid());
    void *buf = NULL;
    if (posix_memalign(&buf, BLOCK, 1u << 20) != 0) {
        fprintf(stderr, "disk-probe: out of memory\n");
        return 1;
    }
    memset(buf, 0, 1u << 20);
    /* Pre-zero and sync, as the spare segment is: the probe then overwrites written blocks. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("disk-probe: create");
        return 1;
    }
    for (uint64_t off = 0; off < FILE_SIZE; off += 1u << 20) {
        if (pwrite(fd, buf, 1u << 20, (off_t)off) != (ssize_t)(1u << 20)) {
            perror("disk-probe: zero-fill");
            unlink(path);
            return 1;
        }
    }
    if (fsync(fd) != 0) {
        perror("disk-probe: fsync");
        unlink(path);
        return 1;
    }
    close(fd);
    if (settle > 0) {
        bench_sleep_ms((unsigned)(settle * 1000.0));
    }
    fd = open(path, O_WRONLY | O_DIRECT | O_DSYNC);
    if (fd < 0) {
        perror("disk-probe: open O_DIRECT | O_DSYNC");
        unlink(path);
        return 1;
    }
    memset(buf, 'x', BLOCK);
    size_t cap = 1u << 20, n = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    uint64_t long_at[LONG_MAX_SHOWN], long_ns[LONG_MAX_SHOWN];
    size_t n_long = 0;
    uint64_t t_start = bench_now_ns(), t_end = t_start + (uint64_t)(secs * 1e9), off = 0;
    int rc = 0;
    while (lat != NULL) {
        uint64_t t0 = bench_now_ns();
        if (t0 >= t_end) {
            break;
        }
        if (pwrite(fd, buf, BLOCK, (off_t)off) != (ssize_t)BLOCK) {
            perror("disk-probe: write");
            rc = 1;
            break;
        }
        uint64_t d = bench_now_ns() - t0;
        if (n == cap) {
            uint64_t *p = realloc(lat, 2 * cap * sizeof *lat);
            if (p == NULL) {
                fprintf(stderr, "disk-probe: out of memory after %zu writes: stopping early\n", n);
                rc = 1;
                break;
            }
            lat = p;
            cap *= 2;
        }
        lat[n++] = d;
        if (d >= LONG_NS) {
            if (n_long < LONG_MAX_SHOWN) {
                long_at[n_long] = t0 - t_start;
                long_ns[n_long] = d;
            }
            n_long++;
        }
        off = (off + BLOCK) % FILE_SIZE;
    }
    /* The time really measured: a write error or running out of memory ends the run early. */
    double took = (double)(bench_now_ns() - t_start) / 1e9;
    close(fd);
    unlink(path);
    if (lat == NULL || n == 0) {
        free(lat);
        free(buf);
        return rc != 0 ? rc : 1;
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
    printf("disk-probe: %zu 4 KiB O_DIRECT|O_DSYNC rewrites in %.1f s (%.0f/s) under %s: p50 %.3f "
           "ms p99 %.3f ms p99.9 %.3f ms max %.1f ms; %zu of 10 ms or more\n",
           n, took, (double)n / took, dir, (double)lat[n / 2] / 1e6,
           (double)lat[(size_t)((double)n * 0.99)] / 1e6,
           (double)lat[(size_t)((double)n * 0.999)] / 1e6, (double)lat[n - 1] / 1e6, n_long);
    for (size_t i = 0; i < n_long && i < LONG_MAX_SHOWN; i++) {
        printf("  at +%.3f s: %.1f ms\n", (double)long_at[i] / 1e9, (double)long_ns[i] / 1e6);
    }
    free(lat);
    free(buf);
    return rc;
}
