/*
 * craft-bench — the same measurement as raft-bench, on canonical raft (Debian's libraft-dev 0.15,
 * the C-Raft library from the dqlite project, linked as a system library; only its public headers
 * <raft.h> and <raft/uv.h> and its documentation were used to write this harness).
 *
 * Setup: three raft instances in ONE process, each on its own thread with its own libuv loop, its
 * own raft_uv_tcp transport on a free 127.0.0.1 port and its own raft_uv data directory under
 * $TMPDIR (default /tmp): a real disk with the library's default I/O (it syncs every append).
 * The state machine is the one raft-bench uses: a table of --fsm-slots slots of --entry-size
 * bytes, entry i overwrites slot i % slots; a snapshot is a copy of the table (version-1 FSM:
 * synchronous snapshot on the loop, the library's default).
 *
 * Method: as raft-bench: wait for a leader, warm up, then keep exactly C raft_apply() requests in
 * flight on the leader (each apply callback submits the next one, on the leader's loop thread);
 * latency = raft_apply -> apply callback.
 *
 *   craft-bench [--concurrency 1,16,64,256] [--seconds 5] [--warmup 1] [--entry-size 128]
 *               [--no-snapshots | --snapshot-threshold N] [--fsm-slots 4096]
 * Snapshots on: the library's default threshold (1024) and trailing (128); off: threshold 2^31.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "bench_common.h"

#define NODES 3

struct bench;

struct node {
    int idx;
    raft_id id;
    char addr[32];
    char dir[512];
    struct bench *b;
    pthread_t th;
    uv_loop_t loop;
    uv_async_t wake; /* main -> loop: look at cmd */
    uv_timer_t poll; /* publishes the role */
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    /* state machine */
    uint8_t *table;
    size_t slots;
    uint32_t slot_size;
    atomic_uint_fast64_t snapshots;
    atomic_int is_leader;
    atomic_int start_err;
    /* commands from main, under b->mu */
    unsigned start_n; /* submit this many proposals */
    bool stop;        /* close raft and leave the loop */
    bool started;
};

struct req {
    struct raft_apply apply;
    struct node *n;
    uint64_t start_ns;
};

struct bench {
    struct node nodes[NODES];
    uint32_t entry_size;
    unsigned threshold; /* 0: library default */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, counting;
    unsigned inflight;
    uint64_t done, errors, seq;
    uint64_t last_ns, max_gap_ns;
    int last_err;
    struct bench_lat lat;
};

/* ---- FSM ----------------------------------------------------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct node *n = fsm->data;
    uint64_t key = 0;
    memcpy(&key, buf->base, buf->len < 8 ? buf->len : 8);
    size_t len = buf->len < n->slot_size ? buf->len : n->slot_size;
    memcpy(n->table + (key % n->slots) * n->slot_size, buf->base, len);
    *result = NULL;
    return 0;
}

/* Version 1: raft owns (and frees) the buffers we hand over. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct node *n = fsm->data;
    size_t len = n->slots * n->slot_size;
    struct raft_buffer *b = raft_malloc(sizeof *b);
    if (b == NULL) {
        return RAFT_NOMEM;
    }
    b->base = raft_malloc(len);
    if (b->base == NULL) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    memcpy(b->base, n->table, len);
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    atomic_fetch_add(&n->snapshots, 1);
    return 0;
}

/* The FSM owns buf->base on success. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct node *n = fsm->data;
    if (buf->len != n->slots * n->slot_size) {
        return RAFT_MALFORMED;
    }
    memcpy(n->table, buf->base, buf->len);
    raft_free(buf->base);
    return 0;
}

/* ---- load ---------------------------------------------------------------------------------- */

static void apply_cb(struct raft_apply *a, int status, void *result);

/* On the leader's loop thread. */
static void submit(struct node *n, struct req *q)
{
    struct bench *b = n->b;
    if (q == NULL) {
        q = malloc(sizeof *q);
    }
    struct raft_buffer buf = {.base = raft_malloc(b->entry_size), .len = b->entry_size};
    int rv = q == NULL || buf.base == NULL ? RAFT_NOMEM : 0;
    if (rv == 0) {
        pthread_mutex_lock(&b->mu);
        uint64_t seq = b->seq++;
        pthread_mutex_unlock(&b->mu);
        memset(buf.base, 'a' + (int)(seq % 26), b->entry_size);
        memcpy(buf.base, &seq, sizeof seq);
        q->n = n;
        q->apply.data = q;
        q->start_ns = bench_now_ns();
        rv = raft_apply(&n->raft, &q->apply, &buf, 1, apply_cb);
    }
    if (rv != 0) {
        if (buf.base != NULL) {
            raft_free(buf.base);
        }
        free(q);
        pthread_mutex_lock(&b->mu);
        b->errors++;
        b->last_err = rv;
        b->inflight--;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
}

static void apply_cb(struct raft_apply *a, int status, void *result)
{
    (void)result;
    struct req *q = a->data;
    struct node *n = q->n;
    struct bench *b = n->b;
    uint64_t now = bench_now_ns();
    pthread_mutex_lock(&b->mu);
    if (status == 0) {
        bench_lat_add(&b->lat, now - q->start_ns);
        if (b->counting) {
            b->done++;
            if (b->last_ns != 0 && now - b->last_ns > b->max_gap_ns) {
                b->max_gap_ns = now - b->last_ns;
            }
            b->last_ns = now;
        }
    } else {
        b->errors++;
        b->last_err = status;
    }
    bool again = b->running && status != RAFT_SHUTDOWN;
    if (!again) {
        b->inflight--;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (again) {
        submit(n, q); /* a fresh request struct is not needed: the library is done with q */
    } else {
        free(q);
    }
}

/* ---- node threads -------------------------------------------------------------------------- */

static void on_closed(struct raft *r)
{
    struct node *n = r->data;
    raft_uv_close(&n->io);
    raft_uv_tcp_close(&n->transport);
    uv_close((uv_handle_t *)&n->wake, NULL);
    uv_close((uv_handle_t *)&n->poll, NULL);
}

static void on_wake(uv_async_t *h)
{
    struct node *n = h->data;
    struct bench *b = n->b;
    pthread_mutex_lock(&b->mu);
    unsigned start = n->start_n;
    n->start_n = 0;
    bool stop = n->stop;
    n->stop = false;
    pthread_mutex_unlock(&b->mu);
    for (unsigned i = 0; i < start; i++) {
        submit(n, NULL);
    }
    if (stop) {
        uv_timer_stop(&n->poll);
        raft_close(&n->raft, on_closed);
    }
}

static void on_poll(uv_timer_t *t)
{
    struct node *n = t->data;
    atomic_store(&n->is_leader, raft_state(&n->raft) == RAFT_LEADER);
}

static void *node_main(void *arg)
{
    struct node *n = arg;
    struct bench *b = n->b;
    int rv = uv_loop_init(&n->loop);
    if (rv == 0) {
        rv = raft_uv_tcp_init(&n->transport, &n->loop);
    }
    if (rv == 0) {
        rv = raft_uv_init(&n->io, &n->loop, n->dir, &n->transport);
    }
    n->fsm.version = 1;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    if (rv == 0) {
        rv = raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr);
    }
    if (rv == 0) {
        n->raft.data = n;
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        for (int i = 0; i < NODES && rv == 0; i++) {
            rv = raft_configuration_add(&conf, b->nodes[i].id, b->nodes[i].addr, RAFT_VOTER);
        }
        if (rv == 0) {
            rv = raft_bootstrap(&n->raft, &conf);
        }
        raft_configuration_close(&conf);
    }
    if (rv == 0) {
        if (b->threshold != 0) {
            raft_set_snapshot_threshold(&n->raft, b->threshold);
        }
        rv = raft_start(&n->raft);
    }
    if (rv == 0) {
        uv_async_init(&n->loop, &n->wake, on_wake);
        n->wake.data = n;
        uv_timer_init(&n->loop, &n->poll);
        n->poll.data = n;
        uv_timer_start(&n->poll, on_poll, 5, 5);
    }
    if (rv != 0) {
        fprintf(stderr, "craft-bench: node %d: %s\n", n->idx + 1, raft_strerror(rv));
        atomic_store(&n->start_err, rv != 0 ? rv : -1);
        return NULL;
    }
    pthread_mutex_lock(&b->mu);
    n->started = true;
    pthread_mutex_unlock(&b->mu);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
    return NULL;
}

static void node_cmd(struct node *n, unsigned start, bool stop)
{
    pthread_mutex_lock(&n->b->mu);
    n->start_n += start;
    n->stop = n->stop || stop;
    pthread_mutex_unlock(&n->b->mu);
    uv_async_send(&n->wake);
}

static bool run_row(struct bench *b, struct node *leader, unsigned conc, double secs, double *win)
{
    pthread_mutex_lock(&b->mu);
    b->running = true;
    b->counting = true;
    b->done = 0;
    b->errors = 0;
    b->max_gap_ns = 0;
    b->inflight = conc;
    bench_lat_reset(&b->lat);
    uint64_t t0 = bench_now_ns();
    b->last_ns = t0;
    pthread_mutex_unlock(&b->mu);
    node_cmd(leader, conc, false);
    bench_sleep_ms((unsigned)(secs * 1000.0));
    pthread_mutex_lock(&b->mu);
    b->running = false;
    b->counting = false;
    uint64_t t1 = bench_now_ns();
    if (t1 - b->last_ns > b->max_gap_ns) {
        b->max_gap_ns = t1 - b->last_ns;
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

static void usage(void)
{
    fprintf(stderr,
            "usage: craft-bench [options]\n%s"
            "  --no-snapshots          snapshot threshold 2^31 (never)\n"
            "  --snapshot-threshold N  snapshot every N entries (default: library's, 1024)\n"
            "  --fsm-slots N           state machine table slots (default 4096)\n",
            bench_opts_usage);
}

int main(int argc, char **argv)
{
    struct bench_opts bo;
    bench_opts_default(&bo);
    static struct bench b; /* large; zeroed */
    size_t fsm_slots = 4096;
    for (int i = 1; i < argc;) {
        int k = bench_opts_parse(&bo, argc, argv, i);
        if (k < 0) {
            return 2;
        }
        if (k > 0) {
            i += k;
            continue;
        }
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-snapshots") == 0) {
            b.threshold = 1u << 31;
            i++;
        } else if (strcmp(a, "--snapshot-threshold") == 0 && v != NULL) {
            b.threshold = (unsigned)strtoul(v, NULL, 10);
            i += 2;
        } else if (strcmp(a, "--fsm-slots") == 0 && v != NULL) {
            fsm_slots = strtoul(v, NULL, 10);
            i += 2;
        } else {
            usage();
            return 2;
        }
    }
    if (fsm_slots == 0 || fsm_slots > (1u << 24)) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char *root = bench_mkdtemp("craft-bench");
    if (root == NULL) {
        perror("craft-bench: mkdtemp");
        return 1;
    }
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.entry_size = bo.entry_size;
    int rc = 0;
    for (int i = 0; i < NODES; i++) {
        struct node *n = &b.nodes[i];
        n->idx = i;
        n->id = (raft_id)(i + 1);
        n->b = &b;
        snprintf(n->addr, sizeof n->addr, "127.0.0.1:%u", (unsigned)bench_free_port());
        snprintf(n->dir, sizeof n->dir, "%s/n%d", root, i + 1);
        n->slots = fsm_slots;
        n->slot_size = bo.entry_size;
        n->table = calloc(fsm_slots, bo.entry_size);
        if (n->table == NULL || mkdir(n->dir, 0700) != 0) {
            rc = -1;
        }
    }
    int started = 0;
    for (int i = 0; i < NODES && rc == 0; i++) {
        if (pthread_create(&b.nodes[i].th, NULL, node_main, &b.nodes[i]) != 0) {
            rc = -1;
            break;
        }
        started++;
    }
    /* Wait for every node to be up (or fail), then for a leader. */
    int li = -1;
    for (unsigned waited = 0; rc == 0 && waited < 15000 && li < 0; waited += 10) {
        bool all = true;
        pthread_mutex_lock(&b.mu);
        for (int i = 0; i < NODES; i++) {
            all = all && b.nodes[i].started;
        }
        pthread_mutex_unlock(&b.mu);
        for (int i = 0; i < NODES; i++) {
            if (atomic_load(&b.nodes[i].start_err) != 0) {
                rc = -1;
            }
            if (all && atomic_load(&b.nodes[i].is_leader)) {
                li = i;
            }
        }
        bench_sleep_ms(10);
    }
    int exit_code = 1;
    if (rc == 0 && li < 0) {
        fprintf(stderr, "craft-bench: no leader within 15 s\n");
    }
    if (li >= 0) {
        struct utsname un;
        uname(&un);
        printf("# craft-bench: canonical raft %s (libraft-dev, libuv %s), 3 nodes IN ONE PROCESS "
               "(3 threads, 3 uv loops, raft_uv_tcp on %s,%s,%s), leader n%d\n",
               "0.15", uv_version_string(), b.nodes[0].addr, b.nodes[1].addr, b.nodes[2].addr,
               li + 1);
        printf("# data under %s (real disk, raft_uv default I/O), election 1000 ms, heartbeat "
               "100 ms (library defaults)\n",
               root);
        if (b.threshold == 1u << 31) {
            printf("# entry %u B, snapshots OFF (threshold 2^31), fsm %zu slots (%zu KiB), %.1f s "
                   "per row, warm-up %.1f s; %s %s, %ld cpus\n",
                   bo.entry_size, fsm_slots, fsm_slots * bo.entry_size / 1024, bo.seconds,
                   bo.warmup, un.sysname, un.release, sysconf(_SC_NPROCESSORS_ONLN));
        } else {
            printf("# entry %u B, snapshot threshold %u%s, trailing 128, fsm v1 (sync snapshot), "
                   "%zu slots (%zu KiB), %.1f s per row, warm-up %.1f s; %s %s, %ld cpus\n",
                   bo.entry_size, b.threshold ? b.threshold : 1024,
                   b.threshold ? "" : " (library default)", fsm_slots,
                   fsm_slots * bo.entry_size / 1024, bo.seconds, bo.warmup, un.sysname, un.release,
                   sysconf(_SC_NPROCESSORS_ONLN));
        }
        printf("# latency = raft_apply -> apply callback on the leader; max_gap = longest time "
               "without a commit; snapshots = leader/all nodes\n");
        fflush(stdout);
        struct node *leader = &b.nodes[li];
        double win = 0;
        if (bo.warmup > 0) {
            run_row(&b, leader, 16, bo.warmup, &win);
        }
        bench_print_header();
        exit_code = 0;
        for (size_t r = 0; r < bo.n_conc; r++) {
            uint64_t before[NODES], after[NODES];
            for (int i = 0; i < NODES; i++) {
                before[i] = atomic_load(&b.nodes[i].snapshots);
            }
            bool ok = run_row(&b, leader, bo.conc[r], bo.seconds, &win);
            for (int i = 0; i < NODES; i++) {
                after[i] = atomic_load(&b.nodes[i].snapshots);
            }
            struct bench_row row = {
                .conc = bo.conc[r], .secs = win, .done = b.done, .errors = b.errors};
            row.snaps = (int64_t)(after[li] - before[li]);
            row.snaps_all = 0;
            for (int i = 0; i < NODES; i++) {
                row.snaps_all += (int64_t)(after[i] - before[i]);
            }
            row.max_gap_ms = (double)b.max_gap_ns / 1e6;
            bench_print_row(&row, &b.lat);
            if (b.errors > 0) {
                printf("# row %u: %" PRIu64 " errors, last %s\n", bo.conc[r], b.errors,
                       raft_strerror(b.last_err));
            }
            if (!atomic_load(&leader->is_leader)) {
                printf("# leadership moved away from n%d during the row\n", li + 1);
                exit_code = 1;
                break;
            }
            if (!ok) {
                printf("# requests still in flight 15 s after the row ended: stopping\n");
                exit_code = 1;
                break;
            }
        }
    }
    for (int i = 0; i < started; i++) {
        /* A node still starting cannot take a command yet: wait until it runs or failed. */
        for (unsigned w = 0; w < 15000; w += 10) {
            pthread_mutex_lock(&b.mu);
            bool up = b.nodes[i].started;
            pthread_mutex_unlock(&b.mu);
            if (up || atomic_load(&b.nodes[i].start_err) != 0) {
                break;
            }
            bench_sleep_ms(10);
        }
        if (atomic_load(&b.nodes[i].start_err) == 0) {
            node_cmd(&b.nodes[i], 0, true);
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(b.nodes[i].th, NULL);
    }
    for (int i = 0; i < NODES; i++) {
        free(b.nodes[i].table);
    }
    bench_lat_free(&b.lat);
    bench_rmrf(root);
    free(root);
    return exit_code;
}
