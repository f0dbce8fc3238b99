/*
 * raft-bench — commit throughput and latency of Sinter's raft host (include/sinter/raft_host.h).
 *
 * Setup: three hosts in ONE process (each its own event loop, store and nng transport), talking
 * over loopback TCP on free ports, each with its own data directory under $TMPDIR (default /tmp):
 * a real disk, fsync on, exactly the code path raft-node runs. One group. The state machine is a
 * fixed table of --fsm-slots slots of --entry-size bytes (entry i overwrites slot i % slots), so
 * apply is a memcpy and a snapshot is the table (512 KiB by default); craft-bench uses the same
 * state machine.
 *
 * Method: wait for a leader, warm up, then for each concurrency C keep exactly C proposals in
 * flight at the leader (each completion re-proposes from the completion callback), for --seconds.
 * Latency is propose -> completion callback (committed on a majority and applied on the leader).
 * Printed per row: entries/s, p50/p99/p99.9/max latency, the longest gap between consecutive
 * commits (a snapshot stall shows up there), snapshots taken (leader/all nodes) and errors; then a
 * "# host" line per node with the host's loop counters for the row (sinter_raft_host_stats: loop
 * iterations and busy time, longest iteration, store appends and their mean / max time, apply
 * time, snapshot fsync time on the helper and publish time on the loop), to attribute the tail;
 * then "# gaps >10ms: n". With --io-trace (issue #4, "no stall when a snapshot is taken") every
 * store's I/O calls are timed (io_trace.c) and the disk's counters sampled every 2 ms, and that
 * line says how many of the commit gaps > 10 ms overlapped snapshot I/O, spare zero-fill I/O or
 * neither, followed by the five longest gaps in detail and the row's background calls; off by
 * default because the timing and sampling cost throughput at C=16 (bench/README.md).
 *
 *   raft-bench [--concurrency 1,16,64,256] [--seconds 5] [--warmup 1] [--entry-size 128]
 *              [--snapshot-every N | --no-snapshots] [--fsm-slots 4096 | --state-kib K]
 *              [--io-trace] [--log-level 1]
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_common.h"
#include "io_trace.h"
#include "sinter/raft_host.h"

#define NODES 3

/* Commit gaps longer than this are attributed (issue #4: "no stall when a snapshot is taken" is
 * checked as max_gap < 10 ms by raft_vs_peers.sh). */
#define GAP_MIN_NS 10000000u
#define GAPS_MAX   4096

/* ---- the state machine: a table of slots --------------------------------------------------- */

struct fsm { /* touched only on its host's loop thread */
    uint8_t *table;
    size_t slots;
    uint32_t slot_size;
    uint64_t applied;
};

struct snapcopy {
    uint8_t *p;
    size_t len;
};

static int fsm_apply(void *arg, uint32_t group, const struct sinter_raft_host_entry *e, size_t n)
{
    (void)group;
    struct fsm *f = arg;
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != SINTER_RAFT_ENTRY_NORMAL) {
            continue; /* a leader's no-op or a configuration change: nothing to apply */
        }
        uint64_t key = 0;
        size_t kl = e[i].len < 8 ? e[i].len : 8;
        memcpy(&key, e[i].data, kl);
        size_t len = e[i].len < f->slot_size ? e[i].len : f->slot_size;
        memcpy(f->table + (key % f->slots) * f->slot_size, e[i].data, len);
        f->applied++;
    }
    return SINTER_OK;
}

static void *fsm_prepare(void *arg, uint32_t group, uint64_t index)
{
    (void)group;
    (void)index;
    struct fsm *f = arg;
    struct snapcopy *c = malloc(sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->len = f->slots * f->slot_size;
    c->p = malloc(c->len);
    if (c->p == NULL) {
        free(c);
        return NULL;
    }
    memcpy(c->p, f->table, c->len);
    return c;
}

static int fsm_save(void *arg, uint32_t group, void *copy, struct sinter_raft_host_snap_writer *w)
{
    (void)arg;
    (void)group;
    struct snapcopy *c = copy;
    return sinter_raft_host_snap_write(w, c->p, c->len);
}

static void fsm_release(void *arg, uint32_t group, void *copy)
{
    (void)arg;
    (void)group;
    struct snapcopy *c = copy;
    if (c != NULL) {
        free(c->p);
        free(c);
    }
}

static int fsm_load(void *arg, uint32_t group, uint64_t index,
                    struct sinter_raft_host_snap_reader *r)
{
    (void)group;
    (void)index;
    struct fsm *f = arg;
    size_t off = 0, cap = f->slots * f->slot_size;
    for (;;) {
        uint8_t buf[65536];
        size_t n = 0;
        int rc = sinter_raft_host_snap_read(r, buf, sizeof buf, &n);
        if (rc != SINTER_OK) {
            return rc;
        }
        if (n == 0) {
            break;
        }
        if (n > cap - off) {
            return SINTER_ECORRUPT;
        }
        memcpy(f->table + off, buf, n);
        off += n;
    }
    return off == cap ? SINTER_OK : SINTER_ECORRUPT;
}

static void fsm_fill(void *sm_arg, uint32_t group, struct sinter_raft_host_sm *out)
{
    (void)group;
    memset(out, 0, sizeof *out);
    out->apply = fsm_apply;
    out->snapshot_prepare = fsm_prepare;
    out->snapshot_save = fsm_save;
    out->snapshot_release = fsm_release;
    out->snapshot_load = fsm_load;
    out->arg = sm_arg;
}

/* ---- the load ------------------------------------------------------------------------------ */

struct bench;

struct slot {
    struct bench *b;
    uint64_t start_ns;
    uint8_t *payload;
};

struct bench {
    struct sinter_raft_host *leader;
    uint32_t entry_size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;      /* re-propose on completion */
    bool counting;     /* completions count towards the row */
    unsigned inflight; /* proposals not yet completed */
    uint64_t done, errors, seq;
    uint64_t last_ns, max_gap_ns;
    uint64_t gap_t0[GAPS_MAX], gap_t1[GAPS_MAX]; /* gaps > GAP_MIN_NS in the row */
    unsigned n_gaps;
    uint64_t row_t0;
    int last_err;
    struct bench_lat lat;
};

static void on_done(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url);

/* Starts one proposal for slot s. Called with b->mu NOT held. */
static void propose(struct slot *s)
{
    struct bench *b = s->b;
    pthread_mutex_lock(&b->mu);
    uint64_t seq = b->seq++;
    pthread_mutex_unlock(&b->mu);
    memcpy(s->payload, &seq, sizeof seq);
    s->start_ns = bench_now_ns();
    int rc = sinter_raft_host_propose(b->leader, 0, s->payload, b->entry_size, on_done, s);
    if (rc != SINTER_OK) {
        pthread_mutex_lock(&b->mu);
        b->errors++;
        b->last_err = rc;
        b->inflight--;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
}

static void on_done(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    (void)index;
    (void)leader;
    (void)url;
    struct slot *s = arg;
    struct bench *b = s->b;
    pthread_mutex_lock(&b->mu);
    /* Read under the lock: two completions racing between the read and the lock would make
     * now < last_ns and an unsigned gap of centuries. */
    uint64_t now = bench_now_ns();
    if (rc == SINTER_OK) {
        bench_lat_add(&b->lat, now - s->start_ns);
        if (b->counting) {
            b->done++;
            if (b->last_ns != 0 && now - b->last_ns > b->max_gap_ns) {
                b->max_gap_ns = now - b->last_ns;
            }
            if (b->last_ns != 0 && now - b->last_ns > GAP_MIN_NS && b->n_gaps < GAPS_MAX) {
                b->gap_t0[b->n_gaps] = b->last_ns;
                b->gap_t1[b->n_gaps] = now;
                b->n_gaps++;
            }
            b->last_ns = now;
        }
    } else {
        b->errors++;
        b->last_err = rc;
    }
    /* Only a success is followed by the next proposal: after an error (SINTER_ENOTLEADER when
     * the leader lost its term, a failed store) an immediate re-proposal fails the same way, and
     * a row that lost its leader once spun through 8.9 million of them (FINDINGS F7). The slot
     * stops instead; the row reports the errors and the lost leadership. */
    bool again = b->running && rc == SINTER_OK;
    if (!again) {
        b->inflight--;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (again) {
        propose(s);
    }
}

/* ---- setup --------------------------------------------------------------------------------- */

static int g_log_level = 1;

static void host_log(void *arg, int level, uint32_t group, const char *msg)
{
    (void)group;
    if (level <= g_log_level) {
        fprintf(stderr, "raft-bench n%d: %s\n", (int)(intptr_t)arg, msg);
    }
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: raft-bench [options]\n%s"
        "  --snapshot-every N   snapshot every N applied entries (default: the host's, 8192)\n"
        "  --no-snapshots       never snapshot\n"
        "  --fsm-slots N        state machine table slots (default 4096)\n"
        "  --state-kib K        state machine size in KiB (sets the slots from the entry size)\n"
        "  --io-trace           time the stores' I/O calls and sample the disk: attribute every\n"
        "                       commit gap > 10 ms (costs throughput: off by default)\n"
        "  --log-level L        host log level 0..3 (default 1)\n",
        bench_opts_usage);
}

static double ms_of(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* One line per node with its loop counters for the row just run (reset before the row); the
 * counters are left in st[] for the gap attribution. */
static void print_host_stats(struct sinter_raft_host *const *h, int li,
                             struct sinter_raft_host_stats *st)
{
    for (int i = 0; i < NODES; i++) {
        struct sinter_raft_host_stats s;
        sinter_raft_host_stats(h[i], &s, true);
        st[i] = s;
        double busy = s.loop_iterations ? ms_of(s.loop_busy_ns) : 0;
        printf("# host n%d%s: iters %" PRIu64 " busy %.0f ms max_iter %.2f ms wakeups %" PRIu64
               " events %" PRIu64 " | appends %" PRIu64 " (%.1f entries) mean %.3f max %.2f ms | "
               "apply %.2f us/entry max %.2f ms | hard state %" PRIu64
               " mean %.1f us | snap sync %.1f "
               "ms (helper) publish max %.2f ms\n",
               i + 1, i == li ? "*" : "", s.loop_iterations, busy, ms_of(s.loop_max_iter_ns),
               s.loop_wakeups, s.events, s.store_appends,
               s.store_appends ? (double)s.store_append_entries / (double)s.store_appends : 0.0,
               s.store_appends ? ms_of(s.store_append_ns) / (double)s.store_appends : 0.0,
               ms_of(s.store_append_max_ns),
               s.apply_entries ? (double)s.apply_ns / 1e3 / (double)s.apply_entries : 0.0,
               ms_of(s.apply_max_ns), s.hard_state_saves,
               s.hard_state_saves ? (double)s.hard_state_ns / 1e3 / (double)s.hard_state_saves
                                  : 0.0,
               ms_of(s.snapshot_sync_ns), ms_of(s.snapshot_publish_max_ns));
    }
}

/* ---- commit-gap attribution ----------------------------------------------------------------- */

/* The disk's own counters, sampled every 2 ms during a row: sectors written and flushes of the
 * whole device (/sys/dev/block/M:m/stat, every process on the machine: the disk is shared with
 * other engineers' builds) against the bytes this process caused to be written
 * (/proc/self/io write_bytes, counted when a page is dirtied, not when it reaches the device:
 * buffered data dirtied before a gap and written back during it looks foreign, so "the disk wrote
 * more than we did" is an upper bound on foreign writes). A gap in which the device wrote much
 * more than we did points outside the bench (or at the journal's own writes, which the kernel's
 * jbd2 thread submits, not us). */
#define DISK_SAMPLES_MAX 16384

struct disk_sample {
    uint64_t t, dev_sect, dev_wios, dev_flush, dev_busy_ms, dev_discards, dev_discard_sect;
    uint64_t own_bytes;
};

struct disk_sampler {
    pthread_t th;
    atomic_bool stop;
    char stat_path[96];
    struct disk_sample *s;
    size_t n;
};

static bool disk_read(struct disk_sampler *d, struct disk_sample *out)
{
    char buf[512];
    FILE *f = fopen(d->stat_path, "r");
    if (f == NULL) {
        return false;
    }
    unsigned long long v[17] = {0};
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    char *p = buf;
    for (int i = 0; i < 17; i++) {
        char *end = NULL;
        v[i] = strtoull(p, &end, 10);
        if (end == p) {
            break;
        }
        p = end;
    }
    out->dev_wios = v[4];
    out->dev_sect = v[6];
    out->dev_busy_ms = v[9];
    out->dev_flush = v[15];
    out->dev_discards = v[11];
    out->dev_discard_sect = v[13];
    out->own_bytes = 0;
    f = fopen("/proc/self/io", "r");
    if (f != NULL) {
        char line[128];
        while (fgets(line, sizeof line, f) != NULL) {
            if (strncmp(line, "write_bytes:", 12) == 0) {
                out->own_bytes = strtoull(line + 12, NULL, 10);
            }
        }
        fclose(f);
    }
    out->t = bench_now_ns();
    return true;
}

static void *disk_main(void *arg)
{
    struct disk_sampler *d = arg;
    while (!atomic_load(&d->stop) && d->n < DISK_SAMPLES_MAX) {
        if (disk_read(d, &d->s[d->n])) {
            d->n++;
        }
        bench_sleep_ms(2);
    }
    return NULL;
}

/* Starts sampling the device that holds dir; false (no sampling) if it cannot be found. */
static bool disk_start(struct disk_sampler *d, const char *dir)
{
    memset(d, 0, sizeof *d);
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        return false;
    }
    snprintf(d->stat_path, sizeof d->stat_path, "/sys/dev/block/%u:%u/stat", major(sb.st_dev),
             minor(sb.st_dev));
    d->s = malloc(DISK_SAMPLES_MAX * sizeof *d->s);
    struct disk_sample probe;
    if (d->s == NULL || !disk_read(d, &probe)) {
        free(d->s);
        d->s = NULL;
        return false;
    }
    atomic_init(&d->stop, false);
    if (pthread_create(&d->th, NULL, disk_main, d) != 0) {
        free(d->s);
        d->s = NULL;
        return false;
    }
    return true;
}

static void disk_stop(struct disk_sampler *d)
{
    if (d->s != NULL) {
        atomic_store(&d->stop, true);
        pthread_join(d->th, NULL);
    }
}

/* Device sectors written, flushes and our own bytes over [t0, t1], from the samples around it. */
static bool disk_between(const struct disk_sampler *d, uint64_t t0, uint64_t t1,
                         struct disk_sample *delta)
{
    if (d->s == NULL || d->n < 2) {
        return false;
    }
    size_t a = 0, b = d->n - 1;
    for (size_t i = 0; i < d->n; i++) {
        if (d->s[i].t <= t0) {
            a = i;
        }
        if (d->s[i].t >= t1) {
            b = i;
            break;
        }
    }
    delta->t = d->s[b].t - d->s[a].t;
    delta->dev_sect = d->s[b].dev_sect - d->s[a].dev_sect;
    delta->dev_wios = d->s[b].dev_wios - d->s[a].dev_wios;
    delta->dev_busy_ms = d->s[b].dev_busy_ms - d->s[a].dev_busy_ms;
    delta->dev_discards = d->s[b].dev_discards - d->s[a].dev_discards;
    delta->dev_discard_sect = d->s[b].dev_discard_sect - d->s[a].dev_discard_sect;
    delta->dev_flush = d->s[b].dev_flush - d->s[a].dev_flush;
    delta->own_bytes = d->s[b].own_bytes - d->s[a].own_bytes;
    return true;
}

/* What a traced I/O call was, for the attribution: the log's own append, or which background
 * job's I/O it was (raft/store: snapshot writer on a host helper, spare zero-fill on a helper,
 * compaction unlinks on the garbage helper, a rollover on the loop). */
enum io_class { IOC_APPEND, IOC_SNAP, IOC_SPARE, IOC_ROLLOVER, IOC_UNLINK, IOC_OTHER, IOC_COUNT };

static const char *const io_class_name[IOC_COUNT] = {"append",   "snap",   "spare",
                                                     "rollover", "unlink", "other"};

/* Background calls shorter than this are not counted as overlapping a gap: a 512 KiB snapshot
 * write into the page cache takes ~0.3 ms, and with a snapshot every ~40 ms per node at C=256
 * some call of every kind touches every gap; only calls that waited for the disk matter. */
#define BG_MIN_NS 1000000u

static int io_class_of(const struct io_trace_rec *r)
{
    switch (r->kind) {
    case IOK_SEG:
        if (r->op == IOT_WRITE || r->op == IOT_FDATASYNC || r->op == IOT_READ) {
            return IOC_APPEND;
        }
        return r->op == IOT_UNLINK ? IOC_UNLINK : IOC_ROLLOVER; /* fallocate fallback's create */
    case IOK_SPARE:
        if (r->op == IOT_FDATASYNC || r->op == IOT_RENAME ||
            (r->op == IOT_WRITE && r->len < 65536u)) {
            return IOC_ROLLOVER; /* the loop writes the header over the zeros and renames */
        }
        return IOC_SPARE;
    case IOK_SNAP:
        return r->op == IOT_UNLINK ? IOC_UNLINK : IOC_SNAP;
    case IOK_DIR:
        return r->via == IOK_SNAP       ? IOC_SNAP
               : r->via == IOK_UNLINKED ? IOC_UNLINK
               : r->via == IOK_OTHER    ? IOC_OTHER
                                        : IOC_ROLLOVER;
    default:
        return IOC_OTHER;
    }
}

struct node_trace {
    struct io_trace_rec *recs;
    uint64_t n, dropped;
};

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* Prints, for the row just run, how many commit gaps > 10 ms overlapped which background I/O
 * (from the io_trace records), and the longest gaps in detail. */
static void print_gaps(const struct bench *b, uint64_t row_t0, const struct node_trace *nt,
                       const struct sinter_raft_host_stats *st, int li,
                       const struct disk_sampler *disk)
{
    unsigned with_snap = 0, with_spare = 0, neither = 0, with_roll = 0, with_unlink = 0,
             with_long_append = 0, with_long_iter = 0, with_foreign = 0, with_discard = 0;
    /* The longest gaps first for the detail lines. */
    unsigned order[5];
    unsigned n_order = 0;
    for (unsigned k = 0; k < b->n_gaps; k++) {
        uint64_t d = b->gap_t1[k] - b->gap_t0[k];
        unsigned pos = n_order;
        while (pos > 0 && b->gap_t1[order[pos - 1]] - b->gap_t0[order[pos - 1]] < d) {
            pos--;
        }
        if (pos < 5) {
            unsigned last = n_order < 5 ? n_order : 4;
            for (unsigned m = last; m > pos; m--) {
                order[m] = order[m - 1];
            }
            order[pos] = k;
            if (n_order < 5) {
                n_order++;
            }
        }
    }
    for (unsigned k = 0; k < b->n_gaps; k++) {
        uint64_t g0 = b->gap_t0[k], g1 = b->gap_t1[k];
        bool cls[IOC_COUNT] = {false};
        bool long_append = false, long_iter = false;
        for (int i = 0; i < NODES; i++) {
            for (uint64_t r = 0; r < nt[i].n; r++) {
                const struct io_trace_rec *x = &nt[i].recs[r];
                if (!overlaps(x->t0, x->t0 + x->dur, g0, g1)) {
                    continue;
                }
                int c = io_class_of(x);
                if (c == IOC_APPEND) {
                    long_append = long_append || x->dur >= 5000000u;
                } else if (x->dur >= BG_MIN_NS) {
                    cls[c] = true;
                }
            }
            uint64_t it1 = st[i].loop_max_iter_end_ns, it0 = it1 - st[i].loop_max_iter_ns;
            if (st[i].loop_max_iter_ns >= GAP_MIN_NS / 2 && overlaps(it0, it1, g0, g1)) {
                long_iter = true;
            }
        }
        with_snap += cls[IOC_SNAP];
        with_spare += cls[IOC_SPARE];
        neither += !cls[IOC_SNAP] && !cls[IOC_SPARE];
        with_roll += cls[IOC_ROLLOVER];
        with_unlink += cls[IOC_UNLINK];
        with_long_append += long_append;
        with_long_iter += long_iter;
        struct disk_sample dd;
        if (disk_between(disk, g0, g1, &dd) && dd.dev_sect / 2 > dd.own_bytes / 1024 + 1024) {
            with_foreign++;
        }
        if (disk_between(disk, g0, g1, &dd) && dd.dev_discards > 0) {
            with_discard++; /* ext4 mounted -o discard: freed blocks are discarded at commit */
        }
    }
    printf("# gaps >10ms: %u, with snapshot I/O %u, with spare I/O %u, with neither %u "
           "(also: rollover %u, unlinks %u, a log append >= 5 ms %u, a loop iteration >= 5 ms %u,"
           " disk wrote > 1 MiB more than we did %u, the disk discarded %u;"
           " background calls >= 1 ms counted)\n",
           b->n_gaps, with_snap, with_spare, neither, with_roll, with_unlink, with_long_append,
           with_long_iter, with_foreign, with_discard);
    for (unsigned o = 0; o < n_order; o++) {
        unsigned k = order[o];
        uint64_t g0 = b->gap_t0[k], g1 = b->gap_t1[k];
        printf("#   gap %.1f ms at +%.3f s:", ms_of(g1 - g0), (double)(g0 - row_t0) / 1e9);
        struct disk_sample dd;
        if (disk_between(disk, g0, g1, &dd)) {
            printf(" disk (%.1f ms, busy %" PRIu64 " ms) wrote %" PRIu64 " KiB in %" PRIu64
                   " writes, we %" PRIu64 " KiB, %" PRIu64 " flushes, %" PRIu64
                   " discards (%" PRIu64 " KiB)",
                   ms_of(dd.t), dd.dev_busy_ms, dd.dev_sect / 2, dd.dev_wios, dd.own_bytes / 1024,
                   dd.dev_flush, dd.dev_discards, dd.dev_discard_sect / 2);
        }
        for (int i = 0; i < NODES; i++) {
            uint64_t app = 0;
            const struct io_trace_rec *top[3] = {NULL, NULL, NULL};
            for (uint64_t r = 0; r < nt[i].n; r++) {
                const struct io_trace_rec *x = &nt[i].recs[r];
                if (!overlaps(x->t0, x->t0 + x->dur, g0, g1)) {
                    continue;
                }
                if (io_class_of(x) == IOC_APPEND) {
                    app = x->dur > app ? x->dur : app;
                    continue;
                }
                if (x->dur < BG_MIN_NS) {
                    continue;
                }
                for (int m = 0; m < 3; m++) {
                    if (top[m] == NULL || top[m]->dur < x->dur) {
                        for (int q = 2; q > m; q--) {
                            top[q] = top[q - 1];
                        }
                        top[m] = x;
                        break;
                    }
                }
            }
            printf(" | n%d%s append %s%.1f", i + 1, i == li ? "*" : "", app ? "" : "<",
                   app ? ms_of(app) : ms_of(IO_TRACE_SEG_MIN_NS));
            for (int m = 0; m < 3 && top[m] != NULL; m++) {
                printf(" %s:%s(%s) %.1f@%+.1f", io_class_name[io_class_of(top[m])],
                       io_trace_op_name(top[m]->op), io_trace_kind_name(top[m]->kind),
                       ms_of(top[m]->dur), ((double)top[m]->t0 - (double)g0) / 1e6);
            }
            uint64_t it1 = st[i].loop_max_iter_end_ns, it0 = it1 - st[i].loop_max_iter_ns;
            if (st[i].loop_max_iter_ns >= GAP_MIN_NS / 2 && overlaps(it0, it1, g0, g1)) {
                printf(" loop-iter %.1f", ms_of(st[i].loop_max_iter_ns));
            }
        }
        printf("\n");
    }
    /* The row's background calls over all nodes, what the gap lines above may name: how many and
     * the longest of each. */
    struct {
        const char *name;
        int cls, op;
        uint64_t n, max;
    } bg[] = {
        {"snapshot write", IOC_SNAP, IOT_WRITE, 0, 0},
        {"snapshot writeback hint", IOC_SNAP, IOT_WRITEBACK, 0, 0},
        {"snapshot fsync", IOC_SNAP, IOT_FSYNC, 0, 0},
        {"snapshot rename", IOC_SNAP, IOT_RENAME, 0, 0},
        {"snapshot syncdir", IOC_SNAP, IOT_SYNCDIR, 0, 0},
        {"unlink", IOC_UNLINK, IOT_UNLINK, 0, 0},
        {"unlink syncdir", IOC_UNLINK, IOT_SYNCDIR, 0, 0},
        {"spare wb-wait", IOC_SPARE, IOT_WRITEBACK_WAIT, 0, 0},
        {"spare fsync", IOC_SPARE, IOT_FSYNC, 0, 0},
        {"rollover syncdir", IOC_ROLLOVER, IOT_SYNCDIR, 0, 0},
    };
    for (int i = 0; i < NODES; i++) {
        for (uint64_t r = 0; r < nt[i].n; r++) {
            const struct io_trace_rec *x = &nt[i].recs[r];
            int c = io_class_of(x);
            for (size_t m = 0; m < sizeof bg / sizeof *bg; m++) {
                if (bg[m].cls == c && bg[m].op == x->op) {
                    bg[m].n++;
                    bg[m].max = x->dur > bg[m].max ? x->dur : bg[m].max;
                }
            }
        }
    }
    printf("# background I/O calls in the row, all nodes (count, longest ms):");
    for (size_t m = 0; m < sizeof bg / sizeof *bg; m++) {
        printf("%s %s %" PRIu64 " %.1f", m ? "," : "", bg[m].name, bg[m].n, ms_of(bg[m].max));
    }
    printf("\n");
    struct disk_sample row;
    if (disk->s != NULL && disk->n >= 2 && disk_between(disk, 0, UINT64_MAX, &row)) {
        double sec = (double)row.t / 1e9;
        printf("# disk over the row (%.2f s, whole device): %.1f MiB/s written in %.0f writes/s, "
               "%.0f flushes/s, %.1f discards/s (%.1f MiB/s), busy %.0f%%; this process "
               "dirtied %.1f MiB/s\n",
               sec, (double)row.dev_sect / 2048.0 / sec, (double)row.dev_wios / sec,
               (double)row.dev_flush / sec, (double)row.dev_discards / sec,
               (double)row.dev_discard_sect / 2048.0 / sec, (double)row.dev_busy_ms / 10.0 / sec,
               (double)row.own_bytes / 1048576.0 / sec);
    }
    for (int i = 0; i < NODES; i++) {
        if (nt[i].dropped > 0) {
            printf("# n%d: %" PRIu64 " I/O records dropped (trace buffer full)\n", i + 1,
                   nt[i].dropped);
        }
    }
}

static void status_all(struct sinter_raft_host *const *h, struct sinter_raft_host_status *st)
{
    for (int i = 0; i < NODES; i++) {
        sinter_raft_host_status(h[i], 0, &st[i]);
    }
}

/* Waits (bounded) until a node leads; returns its index or -1. */
static int wait_leader(struct sinter_raft_host *const *h, unsigned ms)
{
    for (unsigned waited = 0; waited < ms; waited += 20) {
        struct sinter_raft_host_status st[NODES];
        status_all(h, st);
        for (int i = 0; i < NODES; i++) {
            if (st[i].role == SINTER_RAFT_LEADER) {
                return i;
            }
        }
        bench_sleep_ms(20);
    }
    return -1;
}

/* Runs conc proposals in flight for secs seconds (and drains). Returns false if the drain timed
 * out. */
static bool run_row(struct bench *b, struct slot *slots, unsigned conc, double secs, double *win)
{
    pthread_mutex_lock(&b->mu);
    b->running = true;
    b->counting = true;
    b->done = 0;
    b->errors = 0;
    b->last_ns = 0;
    b->max_gap_ns = 0;
    b->n_gaps = 0;
    b->inflight = conc;
    bench_lat_reset(&b->lat);
    pthread_mutex_unlock(&b->mu);
    uint64_t t0 = bench_now_ns();
    pthread_mutex_lock(&b->mu);
    b->last_ns = t0;
    b->row_t0 = t0;
    pthread_mutex_unlock(&b->mu);
    for (unsigned i = 0; i < conc; i++) {
        propose(&slots[i]);
    }
    bench_sleep_ms((unsigned)(secs * 1000.0));
    pthread_mutex_lock(&b->mu);
    b->running = false;
    b->counting = false;
    uint64_t t1 = bench_now_ns();
    /* The gap still open at the end of the window counts too. */
    if (t1 - b->last_ns > b->max_gap_ns) {
        b->max_gap_ns = t1 - b->last_ns;
    }
    if (t1 - b->last_ns > GAP_MIN_NS && b->n_gaps < GAPS_MAX) {
        b->gap_t0[b->n_gaps] = b->last_ns;
        b->gap_t1[b->n_gaps] = t1;
        b->n_gaps++;
    }
    *win = (double)(t1 - t0) / 1e9;
    bool ok = true;
    while (b->inflight > 0 && ok) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 15;
        if (pthread_cond_timedwait(&b->cv, &b->mu, &ts) != 0) {
            ok = false;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

int main(int argc, char **argv)
{
    struct bench_opts bo;
    bench_opts_default(&bo);
    uint64_t snap_every = 0;
    bool snap_set = false, no_snap = false;
    size_t fsm_slots = 4096;
    uint64_t state_kib = 0;
    bool trace_io = false;
    for (int i = 1; i < argc;) {
        int n = bench_opts_parse(&bo, argc, argv, i);
        if (n < 0) {
            return 2;
        }
        if (n > 0) {
            i += n;
            continue;
        }
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-snapshots") == 0) {
            no_snap = true;
            i++;
        } else if (strcmp(a, "--snapshot-every") == 0 && v != NULL) {
            snap_every = strtoull(v, NULL, 10);
            snap_set = true;
            i += 2;
        } else if (strcmp(a, "--fsm-slots") == 0 && v != NULL) {
            fsm_slots = strtoul(v, NULL, 10);
            i += 2;
        } else if (strcmp(a, "--state-kib") == 0 && v != NULL) {
            state_kib = strtoull(v, NULL, 10);
            i += 2;
        } else if (strcmp(a, "--io-trace") == 0) {
            trace_io = true;
            i++;
        } else if (strcmp(a, "--log-level") == 0 && v != NULL) {
            g_log_level = (int)strtol(v, NULL, 10);
            i += 2;
        } else {
            usage();
            return 2;
        }
    }
    if (state_kib > 0) {
        fsm_slots = (size_t)(state_kib * 1024u / bo.entry_size);
    }
    if (fsm_slots == 0 || fsm_slots > (1u << 24)) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    char *root = bench_mkdtemp("raft-bench");
    if (root == NULL) {
        perror("raft-bench: mkdtemp");
        return 1;
    }
    uint16_t ports[NODES];
    char urls[NODES][64], dirs[NODES][512];
    for (int i = 0; i < NODES; i++) {
        ports[i] = bench_free_port();
        snprintf(urls[i], sizeof urls[i], "tcp://127.0.0.1:%u", (unsigned)ports[i]);
        snprintf(dirs[i], sizeof dirs[i], "%s/n%d", root, i + 1);
    }
    struct fsm fsms[NODES];
    struct sinter_raft_host *hosts[NODES] = {NULL};
    struct io_trace *tracers[NODES] = {NULL};
    int rc = SINTER_OK;
    uint64_t eff_snap = 0;
    memset(fsms, 0, sizeof fsms);
    for (int i = 0; i < NODES && rc == SINTER_OK; i++) {
        fsms[i].slots = fsm_slots;
        fsms[i].slot_size = bo.entry_size;
        fsms[i].table = calloc(fsm_slots, bo.entry_size);
        if (fsms[i].table == NULL) {
            rc = SINTER_ENOMEM;
            break;
        }
        struct sinter_raft_host_opts o;
        sinter_raft_host_opts_default(&o);
        struct sinter_raft_host_peer peers[NODES - 1];
        size_t np = 0;
        for (int j = 0; j < NODES; j++) {
            if (j != i) {
                peers[np].id = (sinter_raft_id)(j + 1);
                peers[np].url = urls[j];
                np++;
            }
        }
        o.id = (sinter_raft_id)(i + 1);
        o.listen_url = urls[i];
        o.peers = peers;
        o.n_peers = np;
        o.data_dir = dirs[i];
        o.groups = 1;
        o.bootstrap = true;
        /* sinter-tc's default election timeout (tc/config.c): 1-2 s. With the host's 200-400 ms,
         * a disk stall on the followers (this VM's stop for up to ~0.9 s) made the leader lose its
         * quorum check and step down in the middle of a row. */
        o.election_ticks = 50;
        if (no_snap) {
            o.snapshot_every = 0;
        } else if (snap_set) {
            o.snapshot_every = snap_every;
        }
        eff_snap = o.snapshot_every;
        o.sm = fsm_fill;
        o.sm_arg = &fsms[i];
        o.log = host_log;
        o.log_arg = (void *)(intptr_t)(i + 1);
        o.log_level = g_log_level;
        if (trace_io) {
            tracers[i] = io_trace_new(&o.store_io);
            if (tracers[i] == NULL) {
                rc = SINTER_ENOMEM;
                break;
            }
        }
        rc = sinter_raft_host_start(&hosts[i], &o);
        if (rc != SINTER_OK) {
            fprintf(stderr, "raft-bench: host %d on %s: %s\n", i + 1, urls[i], sinter_strerror(rc));
        }
    }

    int exit_code = 1;
    struct slot *slots = NULL;
    struct bench b;
    memset(&b, 0, sizeof b);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.entry_size = bo.entry_size;
    int li = rc == SINTER_OK ? wait_leader(hosts, 10000) : -1;
    if (rc == SINTER_OK && li < 0) {
        fprintf(stderr, "raft-bench: no leader within 10 s\n");
    }
    unsigned max_conc = 16;
    for (size_t i = 0; i < bo.n_conc; i++) {
        max_conc = bo.conc[i] > max_conc ? bo.conc[i] : max_conc;
    }
    if (li >= 0) {
        slots = calloc(max_conc, sizeof *slots);
        for (unsigned i = 0; slots != NULL && i < max_conc; i++) {
            slots[i].b = &b;
            slots[i].payload = malloc(bo.entry_size);
            if (slots[i].payload == NULL) {
                li = -1;
                break;
            }
            memset(slots[i].payload, 'a' + (int)(i % 26), bo.entry_size);
        }
        if (slots == NULL) {
            li = -1;
        }
    }
    if (li >= 0) {
        b.leader = hosts[li];
        struct utsname un;
        uname(&un);
        printf("# raft-bench: Sinter raft host, 3 nodes IN ONE PROCESS (3 loops, 3 stores, nng tcp "
               "on 127.0.0.1:%u,%u,%u), leader n%d\n",
               ports[0], ports[1], ports[2], li + 1);
        printf("# data under %s (real disk, fdatasync per append), 1 group, tick 20 ms, "
               "election 50 ticks\n",
               root);
        if (eff_snap == 0) {
            printf("# entry %u B, snapshots OFF, fsm %zu slots (%zu KiB), %.1f s per row, "
                   "warm-up %.1f s; %s %s, %ld cpus\n",
                   bo.entry_size, fsm_slots, fsm_slots * bo.entry_size / 1024, bo.seconds,
                   bo.warmup, un.sysname, un.release, sysconf(_SC_NPROCESSORS_ONLN));
        } else {
            printf("# entry %u B, snapshot every %" PRIu64 " entries%s, trailing 1024, fsm %zu "
                   "slots (%zu KiB), %.1f s per row, warm-up %.1f s; %s %s, %ld cpus\n",
                   bo.entry_size, eff_snap, snap_set ? "" : " (host default)", fsm_slots,
                   fsm_slots * bo.entry_size / 1024, bo.seconds, bo.warmup, un.sysname, un.release,
                   sysconf(_SC_NPROCESSORS_ONLN));
        }
        printf("# latency = propose -> committed+applied callback on the leader; max_gap = longest "
               "time without a commit; snapshots = leader/all nodes\n");
        fflush(stdout);
        double win = 0;
        if (bo.warmup > 0) {
            run_row(&b, slots, 16, bo.warmup, &win);
        }
        bench_print_header();
        exit_code = 0;
        for (size_t r = 0; r < bo.n_conc; r++) {
            struct sinter_raft_host_status before[NODES], after[NODES];
            status_all(hosts, before);
            for (int i = 0; i < NODES; i++) {
                struct sinter_raft_host_stats s;
                sinter_raft_host_stats(hosts[i], &s, true); /* the row's counters start at 0 */
            }
            for (int i = 0; i < NODES && tracers[i] != NULL; i++) {
                struct io_trace_rec *drop = NULL;
                uint64_t dn = 0, dd = 0;
                io_trace_take(tracers[i], &drop, &dn, &dd); /* the row's records start here */
                free(drop);
            }
            struct disk_sampler disk;
            memset(&disk, 0, sizeof disk);
            bool sampling = tracers[0] != NULL && disk_start(&disk, root);
            bool ok = run_row(&b, slots, bo.conc[r], bo.seconds, &win);
            if (sampling) {
                disk_stop(&disk);
            }
            status_all(hosts, after);
            struct bench_row row = {
                .conc = bo.conc[r], .secs = win, .done = b.done, .errors = b.errors};
            row.snaps = (int64_t)(after[li].snapshots_taken - before[li].snapshots_taken);
            row.snaps_all = 0;
            for (int i = 0; i < NODES; i++) {
                row.snaps_all += (int64_t)(after[i].snapshots_taken - before[i].snapshots_taken);
            }
            row.max_gap_ms = (double)b.max_gap_ns / 1e6;
            bench_print_row(&row, &b.lat);
            struct sinter_raft_host_stats hst[NODES];
            print_host_stats(hosts, li, hst);
            if (tracers[0] != NULL) {
                struct node_trace nt[NODES];
                for (int i = 0; i < NODES; i++) {
                    io_trace_take(tracers[i], &nt[i].recs, &nt[i].n, &nt[i].dropped);
                }
                print_gaps(&b, b.row_t0, nt, hst, li, &disk);
                for (int i = 0; i < NODES; i++) {
                    free(nt[i].recs);
                }
            } else {
                printf("# gaps >10ms: %u (--io-trace says what overlapped them)\n", b.n_gaps);
            }
            if (sampling) {
                free(disk.s);
            }
            if (b.errors > 0) {
                printf("# row %u: %" PRIu64 " errors, last %s\n", bo.conc[r], b.errors,
                       sinter_errname(b.last_err));
            }
            if (after[li].role != SINTER_RAFT_LEADER) {
                printf("# leadership moved away from n%d during the row\n", li + 1);
                exit_code = 1;
                break;
            }
            if (!ok) {
                printf("# proposals still in flight 15 s after the row ended: stopping\n");
                exit_code = 1;
                break;
            }
        }
    }
    for (int i = NODES - 1; i >= 0; i--) {
        sinter_raft_host_stop(hosts[i]);
    }
    for (int i = 0; i < NODES; i++) {
        io_trace_free(tracers[i]);
    }
    if (slots != NULL) {
        for (unsigned i = 0; i < max_conc; i++) {
            free(slots[i].payload);
        }
        free(slots);
    }
    for (int i = 0; i < NODES; i++) {
        free(fsms[i].table);
    }
    bench_lat_free(&b.lat);
    bench_rmrf(root);
    free(root);
    return exit_code;
}
