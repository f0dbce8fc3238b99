/*
 * raft/host/host.c — the multi-group raft host (include/sinter/raft_host.h).
 *
 * Threads:
 *   - the loop thread (loop_main) owns every core, store and state machine;
 *   - the loop thread also reads the raft connections (plain tcp:// URLs): the transport is opened
 *     in caller-pumps mode with the loop's eventfd in its epoll set (watch_fd), and the loop
 *     sleeps and reads in one epoll_wait (loop_pump_wait), so a received frame is read, decoded
 *     and queued on the loop with no thread hand-off (bench/FINDINGS.md F2); on_recv then
 *     enqueues without writing the eventfd (tl_loop);
 *   - the transport's snapshot thread (tcp://) or nng's threads (tls+tcp://, and all outbound
 *     completions) run the other transport callbacks (snapshot sink / reader / done, and on_recv
 *     under TLS): they only enqueue an event or copy bytes into memory owned by one stream;
 *   - API callers only enqueue an event;
 *   - one helper thread per running snapshot job serialises a state-machine copy into the store's
 *     snapshot writer and makes it durable (sinter_store_snap_sync: the writer touches only its
 *     own file, so this is safe alongside the loop's use of the store); publishing it and
 *     compaction run back on the loop;
 *   - one helper per group at a time removes the files the store queued (defer_unlink: compacted
 *     segments, retired snapshots), which touches nothing of the store;
 *   - one helper per group at a time zero-fills the store's next segment (sinter_store_spare_make:
 *     touches only the job and its file), so a rollover on the loop only writes a header and the
 *     log's fdatasync never has to commit the journal for unwritten extents (bench/FINDINGS.md F5).
 * The inbox is a lock-free LIFO (a Treiber stack) that producers push onto with one
 * compare-and-swap and the loop empties with one exchange; the loop sleeps on an eventfd (in the
 * transport's epoll set, or poll() beside it without a native transport) that a producer writes
 * only when its push made the inbox non-empty (and never from the loop
 * thread itself, which looks at the inbox before it sleeps). So a burst of proposals or received
 * frames costs one wake-up, and producers never contend for a lock with the loop (bench/FINDINGS.md
 * F1, F2: a mutex + condvar signal per event made the futex calls and the thread hand-offs
 * dominate the profile).
 */
#include "sinter/raft_host.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sinter/raft_store.h"

#define HOST_MAX_PEERS         (SINTER_RAFT_TRANSPORT_MAX_PEERS + 1)
#define HOST_READIES_PER_ROUND 4
/* Rounds of readies per loop pass: the first, and one more for what its callbacks submitted on
 * the loop's own thread (loop_main). */
#define HOST_SELF_ROUNDS 2
/* Received frames dispatched per loop pass: enough to empty a burst from every peer, small
 * enough that ticks, proposals and readies are never starved by a flood of input. */
#define HOST_RX_PER_ROUND 64
/* After a failed snapshot the next automatic attempt waits this many ticks, doubled per
 * consecutive failure up to the max (2 ticks .. 512 ticks = 40 ms .. ~10 s at the default tick):
 * a failure that persists (ENOSPC, a state machine that cannot copy itself) costs one attempt and
 * one log line per step, never a full copy of the state per loop pass. */
#define HOST_SNAP_BACKOFF_MIN 2u
#define HOST_SNAP_BACKOFF_MAX 512u
/* balance_leaders: how far (entries) the preferred voter may trail the leader's last index and
 * still be handed leadership. The transfer first brings it up to date while proposals wait
 * (SINTER_EBUSY), so only a short catch-up is worth starting; a voter further behind catches up
 * by ordinary replication first. */
#define HOST_BALANCE_MAX_LAG 16u

enum ev_type {
    EV_RX = 1,
    EV_PROPOSE,
    EV_READ,
    EV_CHANGE,
    EV_TRANSFER,
    EV_SNAPNOW,
    EV_SNAP_RX,   /* a snapshot fully received from a leader */
    EV_SNAP_SENT, /* a snapshot stream to a follower ended */
    EV_SNAP_JOB,  /* a helper finished serialising a snapshot */
    EV_CALL,      /* run a callback on the loop (sinter_raft_host_call) */
    EV_SPARE,     /* a helper finished zero-filling a spare segment */
};

/* A snapshot being received: its bytes go straight to a temporary file of the group's store as
 * they arrive (on the transport's thread), so memory does not grow with the snapshot. */
struct snap_in {
    uint32_t group;
    sinter_raft_id from;
    struct sinter_raft_msg msg;
    uint64_t total;
    uint64_t got; /* bytes written so far */
    struct sinter_store_snap_writer *w;
};

struct snap_job;

struct event {
    struct event *next;
    int type;
    uint32_t group;
    struct sinter_raft_transport_rx *rx;
    sinter_raft_host_done_fn cb;
    void *arg;
    sinter_raft_id id;
    int change;
    bool ok;
    struct snap_in *snap_in;
    struct snap_job *job;
    uint32_t len;
    uint64_t t_sub; /* EV_PROPOSE: when submitted (now_ns), for the proposal stage counters */
    uint8_t data[]; /* EV_PROPOSE */
};

struct pending {
    struct pending *next;
    uint64_t index;
    uint64_t term;
    uint64_t deadline;
    sinter_raft_host_done_fn cb;
    void *arg;
    uint64_t t_sub, t_step; /* submitted, proposed to the core (now_ns) */
};

struct pread {
    struct pread *next;
    uint64_t ctx;
    uint64_t index;
    bool confirmed;
    sinter_raft_host_done_fn cb;
    void *arg;
};

struct sinter_raft_host_snap_writer {
    struct sinter_store_snap_writer *w;
};

struct sinter_raft_host_snap_reader {
    struct sinter_store_snap_reader *r;
};

struct group;

struct snap_job {
    struct group *g;
    pthread_t th;
    void *copy;
    struct sinter_raft_host_snap_writer w;
    struct sinter_raft_snapshot_meta meta;
    int rc;
    bool sync_failed; /* rc came from sinter_store_snap_sync, not from the state machine */
    uint64_t sync_ns; /* helper: time in sinter_store_snap_sync */
    bool done;        /* the helper's event arrived */
};

struct snap_out {
    struct sinter_raft_host *h;
    uint32_t group;
    struct sinter_store_snap_reader *r;
    uint64_t next;
};

struct group {
    uint32_t id;
    struct sinter_raft_host *h;
    struct sinter_raft *r;
    struct sinter_store *s;
    struct sinter_raft_host_sm sm;
    char dir[PATH_MAX];
    int error;
    char errmsg[512];                   /* for sinter_raft_host_status (error_msg) */
    struct pending *props, *props_tail; /* sorted by index */
    struct pread *reads;
    struct pending *snap_waiters;
    bool snap_requested;
    uint64_t read_ctx;
    uint64_t last_snap; /* newest durable snapshot index */
    struct snap_job *job;
    pthread_t gc_th;                  /* unlinks compacted segments off the loop */
    bool gc_running;                  /* gc_th started and not joined yet */
    struct sinter_store_spare *spare; /* out for zero-filling (spare_th) until EV_SPARE */
    uint64_t spare_ns;                /* spare_th: time in sinter_store_spare_make */
    pthread_t spare_th;
    bool spare_running;       /* spare_th started and not joined yet */
    uint32_t snap_failures;   /* consecutive failed snapshots (0 after a success) */
    uint64_t snap_retry_tick; /* no automatic snapshot before this tick round */
    uint64_t balance_tick;    /* balance_leaders: no automatic transfer before this tick round */
    uint32_t role;
    sinter_raft_id leader;
    uint64_t term;
    uint64_t taken, installed, sent;
    struct sinter_raft_host_entry *abuf;
    size_t abuf_cap;
    bool dirty;                        /* loop only: st is stale */
    uint64_t apply_t0, apply_t1;       /* loop only: the current apply's start and end (now_ns) */
    struct sinter_raft_host_status st; /* published under h->st_mu */
};

struct beatvec {
    struct sinter_raft_wire_beat *v;
    size_t n, cap;
};

struct beatslot {
    sinter_raft_id peer;
    struct beatvec hb, resp;
};

struct sinter_raft_host {
    struct sinter_raft_host_opts o;
    char *listen_url;
    char *data_dir;
    struct sinter_raft_transport *t;
    struct group *groups;
    uint32_t n_groups;
    pthread_t loop;
    bool loop_started;

    _Atomic(struct event *) inbox; /* LIFO; see the top of this file */
    int wake_fd;                   /* eventfd the loop polls */
    int rx_fd;                     /* the transport's poll fd (-1: frames arrive on nng threads) */
    bool watching;                 /* wake_fd is in the transport's epoll set: loop_pump_wait */
    atomic_bool stopping;
    _Atomic uint64_t ticks;

    pthread_mutex_t st_mu;                /* published status and stats */
    struct sinter_raft_host_stats lstats; /* loop only: accumulated since the last publish */
    struct sinter_raft_host_stats pstats; /* under st_mu */
    bool unflushed;                       /* loop only: messages queued since the last flush */

    pthread_mutex_t peer_mu; /* peer table */
    size_t n_peers;
    sinter_raft_id peer_ids[HOST_MAX_PEERS];
    char *peer_urls[HOST_MAX_PEERS];

    struct beatslot beats[HOST_MAX_PEERS]; /* loop only */
    size_t n_beatslots;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void stat_max(uint64_t *m, uint64_t v)
{
    if (v > *m) {
        *m = v;
    }
}

static void hlog(struct sinter_raft_host *h, int level, uint32_t group, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void hlog(struct sinter_raft_host *h, int level, uint32_t group, const char *fmt, ...)
{
    if (level > h->o.log_level) {
        return;
    }
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (h->o.log != NULL) {
        h->o.log(h->o.log_arg, level, group, buf);
        return;
    }
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    const char *lv = level >= 0 && level <= 3 ? names[level] : "?";
    if (group == UINT32_MAX) {
        fprintf(stderr, "%s raft-host[%" PRIu64 "]: %s\n", lv, h->o.id, buf);
    } else {
        fprintf(stderr, "%s raft-host[%" PRIu64 "] g%u: %s\n", lv, h->o.id, group, buf);
    }
}

const char *sinter_raft_host_peer_url(struct sinter_raft_host *h, sinter_raft_id id)
{
    const char *url = NULL;
    if (h == NULL || id == 0) {
        return NULL;
    }
    pthread_mutex_lock(&h->peer_mu);
    for (size_t i = 0; i < h->n_peers; i++) {
        if (h->peer_ids[i] == id) {
            url = h->peer_urls[i]; /* never freed before stop */
        }
    }
    pthread_mutex_unlock(&h->peer_mu);
    return url;
}

static int peer_table_add(struct sinter_raft_host *h, sinter_raft_id id, const char *url)
{
    int rc = SINTER_OK;
    pthread_mutex_lock(&h->peer_mu);
    for (size_t i = 0; i < h->n_peers; i++) {
        if (h->peer_ids[i] == id) {
            rc = SINTER_EEXIST;
        }
    }
    if (rc == SINTER_OK && h->n_peers >= HOST_MAX_PEERS) {
        rc = SINTER_ETOOBIG;
    }
    if (rc == SINTER_OK) {
        char *u = strdup(url);
        if (u == NULL) {
            rc = SINTER_ENOMEM;
        } else {
            h->peer_ids[h->n_peers] = id;
            h->peer_urls[h->n_peers] = u;
            h->n_peers++;
        }
    }
    pthread_mutex_unlock(&h->peer_mu);
    return rc;
}

/* Completes a request with the leader's address when the answer is "not the leader", so a client
 * can retry there at once (Raft paper section 8: clients find the leader through redirects). */
static void complete(struct group *g, sinter_raft_host_done_fn cb, void *arg, int rc,
                     uint64_t index)
{
    if (cb == NULL) {
        return;
    }
    sinter_raft_id leader = 0;
    const char *url = NULL;
    if (rc == SINTER_ENOTLEADER && g->r != NULL) {
        leader = sinter_raft_leader(g->r);
        url = sinter_raft_host_peer_url(g->h, leader);
    }
    cb(arg, rc, index, leader, url);
}

static void fail_pending(struct group *g, int rc)
{
    while (g->props != NULL) {
        struct pending *p = g->props;
        g->props = p->next;
        complete(g, p->cb, p->arg, rc, 0);
        free(p);
    }
    g->props_tail = NULL;
    while (g->reads != NULL) {
        struct pread *p = g->reads;
        g->reads = p->next;
        complete(g, p->cb, p->arg, rc, 0);
        free(p);
    }
    while (g->snap_waiters != NULL) {
        struct pending *p = g->snap_waiters;
        g->snap_waiters = p->next;
        complete(g, p->cb, p->arg, rc, 0);
        free(p);
    }
}

/* A store (or state-machine) failure stops the group, never the process: after a failed write or
 * fsync nothing can be assumed about what reached the disk (sinter/raft_store.h), so the only safe
 * continuation is to stop acting as this replica until an operator restarts the node. */
static void group_fail(struct group *g, int rc, const char *what)
{
    if (g->error != SINTER_OK) {
        return;
    }
    g->error = rc;
    g->dirty = true;
    /* Store messages carry a path, an offset and the errno text: log them whole, keep what fits
     * (the store's messages are below 512 bytes, so status gets them whole too). */
    char full[768];
    snprintf(full, sizeof full, "%s: %s", what, sinter_strerror(rc));
    snprintf(g->errmsg, sizeof g->errmsg, "%.*s", (int)sizeof g->errmsg - 1, full);
    hlog(g->h, 0, g->id, "group stopped: %s (%s)", full, sinter_errname(rc));
    fail_pending(g, rc);
    /* Leader-only work above this host (delivery, timers) must stop too (raft_host.h on_role). */
    g->role = SINTER_RAFT_FOLLOWER;
    g->leader = 0;
    if (g->sm.on_role != NULL) {
        g->sm.on_role(g->sm.arg, g->id, SINTER_RAFT_FOLLOWER, 0, g->term);
    }
}

static void pending_add(struct group *g, uint64_t index, uint64_t term, uint64_t deadline,
                        sinter_raft_host_done_fn cb, void *arg, uint64_t t_sub)
{
    struct pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        complete(g, cb, arg, SINTER_ENOMEM, 0);
        return;
    }
    p->index = index;
    p->term = term;
    p->deadline = deadline;
    p->cb = cb;
    p->arg = arg;
    p->t_sub = t_sub;
    p->t_step = t_sub != 0 ? now_ns() : 0;
    /* A new entry at or below a pending one means our log was cut back there (we lost leadership
     * and got truncated, then won again): the older pending entries are gone for good. A
     * committed entry is never truncated (Leader Completeness, paper 5.4), so this is "lost". */
    struct pending **pp = &g->props;
    while (*pp != NULL && (*pp)->index < index) {
        pp = &(*pp)->next;
    }
    while (*pp != NULL) {
        struct pending *old = *pp;
        *pp = old->next;
        complete(g, old->cb, old->arg, SINTER_ESTALE, old->index);
        free(old);
    }
    *pp = p;
    g->props_tail = p;
}

/* ---------------------------------------------------------------------------------------------
 * Inbox
 */

/* The host whose loop runs on this thread (NULL elsewhere): its own callbacks enqueue without a
 * wake-up, since the loop looks at the inbox before it sleeps. */
static _Thread_local const struct sinter_raft_host *tl_loop;

static void wake(struct sinter_raft_host *h)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(h->wake_fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, so the loop has a wake-up pending anyway. */
}

static int enqueue(struct sinter_raft_host *h, struct event *e)
{
    /* Snapshot completions still arrive while stop() tears down: it drains them. A producer racing
     * with stop() is only an API caller using the host while stopping it, which the contract
     * forbids (transport callbacks and helpers are finished before stop() drains the inbox). */
    if (atomic_load_explicit(&h->stopping, memory_order_acquire) && e->type != EV_SNAP_SENT &&
        e->type != EV_SNAP_JOB) {
        return SINTER_ESHUTDOWN;
    }
    struct event *head = atomic_load_explicit(&h->inbox, memory_order_relaxed);
    do {
        e->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&h->inbox, &head, e, memory_order_release,
                                                    memory_order_relaxed));
    if (head == NULL && tl_loop != h) {
        wake(h); /* only the push that made the inbox non-empty wakes the loop */
    }
    return SINTER_OK;
}

static struct event *event_new(int type, uint32_t group, size_t extra)
{
    struct event *e = calloc(1, sizeof *e + extra);
    if (e != NULL) {
        e->type = type;
        e->group = group;
    }
    return e;
}

static void on_recv(void *arg, struct sinter_raft_transport_rx *rx)
{
    struct sinter_raft_host *h = arg;
    struct event *e = event_new(EV_RX, 0, 0);
    if (e == NULL) {
        sinter_raft_transport_rx_release(rx); /* lost message: Raft retries */
        return;
    }
    e->rx = rx;
    if (enqueue(h, e) != SINTER_OK) {
        sinter_raft_transport_rx_release(rx);
        free(e);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Snapshot streaming: sending side (reader on nng threads, reading the store's snapshot file
 * through its own descriptor) and receiving side (sink on nng threads, buffering in memory; the
 * loop persists the whole snapshot before stepping the SNAPSHOT message into the core, so the core
 * never installs a snapshot that is not durable).
 */

static int snap_out_read(void *arg, uint64_t offset, uint8_t *buf, uint32_t len)
{
    struct snap_out *so = arg;
    if (offset != so->next) {
        return SINTER_EINVAL; /* the transport reads in order; anything else is a bug */
    }
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        int rc = sinter_store_snap_read(so->r, buf + got, len - got, &n);
        if (rc != SINTER_OK) {
            return rc;
        }
        if (n == 0) {
            return SINTER_ECORRUPT;
        }
        got += n;
    }
    so->next += len;
    return SINTER_OK;
}

static void snap_out_done(void *arg, sinter_raft_id peer, uint32_t group, int rc)
{
    struct snap_out *so = arg;
    struct sinter_raft_host *h = so->h;
    sinter_store_snap_close(so->r);
    free(so);
    struct event *e = event_new(EV_SNAP_SENT, group, 0);
    if (e == NULL) {
        return; /* the core re-probes after 4 election timeouts */
    }
    e->id = peer;
    e->ok = rc == SINTER_OK;
    if (enqueue(h, e) != SINTER_OK) {
        free(e);
    }
}

/* The sink runs on a transport thread (never the loop). It may use g->s: the store is opened
 * before the transport and closed after it (sinter_raft_host_stop aborts every stream first), and
 * g->s itself never changes meanwhile. Only the detached writer API is used (begin_rx, write,
 * flush, abort): it touches the writer and its file, never the store's state the loop uses. */
static int sink_begin(void *arg, sinter_raft_id from, uint32_t group,
                      const struct sinter_raft_msg *m, uint64_t total, void **stream)
{
    struct sinter_raft_host *h = arg;
    if (group >= h->n_groups) {
        return SINTER_EINVAL;
    }
    struct group *g = &h->groups[group];
    if (g->s == NULL) {
        /* The group failed at open: g->error was set before the transport started and a set
         * error never changes, so reading it here is safe. */
        return g->error != SINTER_OK ? g->error : SINTER_ESTATE;
    }
    struct snap_in *si = calloc(1, sizeof *si);
    if (si == NULL) {
        return SINTER_ENOMEM;
    }
    char err[512];
    int rc = sinter_store_snap_begin_rx(g->s, &m->snapshot, &si->w, err, sizeof err);
    if (rc != SINTER_OK) {
        hlog(h, 1, group, "cannot store snapshot %" PRIu64 " from %" PRIu64 ": %s",
             m->snapshot.index, from, err);
        free(si);
        return rc;
    }
    si->group = group;
    si->from = from;
    si->msg = *m;
    si->msg.entries = NULL;
    si->msg.n_entries = 0;
    si->total = total;
    *stream = si;
    return SINTER_OK;
}

static int sink_write(void *arg, void *stream, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct sinter_raft_host *h = arg;
    struct snap_in *si = stream;
    if (offset > si->total || len > si->total - offset || offset != si->got) {
        return SINTER_EBADLEN;
    }
    int rc = sinter_store_snap_write(si->w, data, len);
    if (rc != SINTER_OK) {
        hlog(h, 1, si->group, "cannot store snapshot %" PRIu64 " from %" PRIu64 ": %s",
             si->msg.snapshot.index, si->from, sinter_store_snap_errmsg(si->w));
        return rc;
    }
    si->got += len;
    return SINTER_OK;
}

static void sink_abort(void *arg, void *stream, int reason)
{
    (void)arg;
    (void)reason;
    struct snap_in *si = stream;
    if (si != NULL) {
        sinter_store_snap_abort(si->w); /* a detached writer: any thread */
        free(si);
    }
}

static int sink_finish(void *arg, void *stream, sinter_raft_id from, uint32_t group,
                       const struct sinter_raft_msg *m)
{
    struct sinter_raft_host *h = arg;
    (void)from;
    (void)m;
    struct snap_in *si = stream;
    if (si->got != si->total) {
        sink_abort(arg, stream, SINTER_EBADLEN);
        return SINTER_EBADLEN;
    }
    /* The header and the fsync here, on the transport's thread: the loop is left with the
     * rename and the directory sync, and only if the core will want the snapshot. */
    int frc = sinter_store_snap_flush(si->w);
    if (frc != SINTER_OK) {
        hlog(h, 1, group, "cannot store snapshot %" PRIu64 " from %" PRIu64 ": %s",
             si->msg.snapshot.index, si->from, sinter_store_snap_errmsg(si->w));
        sink_abort(arg, stream, frc);
        return frc;
    }
    struct event *e = event_new(EV_SNAP_RX, group, 0);
    if (e == NULL) {
        sink_abort(arg, stream, SINTER_ENOMEM);
        return SINTER_ENOMEM;
    }
    e->snap_in = stream;
    int rc = enqueue(h, e);
    if (rc != SINTER_OK) {
        sink_abort(arg, stream, rc);
        free(e);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Sending a ready's messages
 */

static int beat_push(struct beatvec *v, const struct sinter_raft_wire_beat *b)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct sinter_raft_wire_beat *nv = realloc(v->v, cap * sizeof *nv);
        if (nv == NULL) {
            return SINTER_ENOMEM;
        }
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = *b;
    return SINTER_OK;
}

static struct beatslot *beat_slot(struct sinter_raft_host *h, sinter_raft_id peer)
{
    for (size_t i = 0; i < h->n_beatslots; i++) {
        if (h->beats[i].peer == peer) {
            return &h->beats[i];
        }
    }
    if (h->n_beatslots == HOST_MAX_PEERS) {
        return NULL;
    }
    struct beatslot *s = &h->beats[h->n_beatslots++];
    memset(s, 0, sizeof *s);
    s->peer = peer;
    return s;
}

static void send_snapshot(struct group *g, const struct sinter_raft_msg *m)
{
    struct sinter_raft_host *h = g->h;
    struct sinter_raft_snapshot_meta meta;
    uint64_t size = 0;
    struct sinter_store_snap_reader *r = NULL;
    int rc = sinter_store_snap_open(g->s, &meta, &size, &r);
    if (rc != SINTER_OK) {
        hlog(h, 1, g->id, "cannot open snapshot for peer %" PRIu64 ": %s", m->to,
             sinter_store_errmsg(g->s));
        sinter_raft_report_snapshot(g->r, m->to, false);
        return;
    }
    struct sinter_raft_msg sm = *m;
    sm.snapshot = meta; /* the store's newest is, by construction, the core's snapshot */
    struct snap_out *so = calloc(1, sizeof *so);
    if (so == NULL) {
        sinter_store_snap_close(r);
        sinter_raft_report_snapshot(g->r, m->to, false);
        return;
    }
    so->h = h;
    so->group = g->id;
    so->r = r;
    rc = sinter_raft_transport_send_snapshot(h->t, g->id, &sm, size, snap_out_read, snap_out_done,
                                             so);
    if (rc != SINTER_OK) {
        sinter_store_snap_close(r);
        free(so);
        if (rc != SINTER_EBUSY) { /* EBUSY: a stream for this group is already under way */
            sinter_raft_report_snapshot(g->r, m->to, false);
        }
        return;
    }
    hlog(h, 2, g->id, "streaming snapshot %" PRIu64 " (%" PRIu64 " bytes) to %" PRIu64, meta.index,
         size, m->to);
}

static void send_msgs(struct group *g, const struct sinter_raft_msg *msgs, size_t n)
{
    struct sinter_raft_host *h = g->h;
    for (size_t i = 0; i < n; i++) {
        const struct sinter_raft_msg *m = &msgs[i];
        if (m->type == SINTER_RAFT_MSG_HEARTBEAT || m->type == SINTER_RAFT_MSG_HEARTBEAT_RESP) {
            /* Coalesced at the end of the round: one frame per peer carries every group's beat. */
            struct beatslot *s = beat_slot(h, m->to);
            struct sinter_raft_wire_beat b = {.group = g->id,
                                              .reject = m->reject,
                                              .term = m->term,
                                              .commit = m->commit,
                                              .context = m->context};
            if (s != NULL) {
                beat_push(m->type == SINTER_RAFT_MSG_HEARTBEAT ? &s->hb : &s->resp, &b);
            }
            continue;
        }
        if (m->type == SINTER_RAFT_MSG_SNAPSHOT) {
            send_snapshot(g, m);
            continue;
        }
        int rc = sinter_raft_transport_send(h->t, g->id, m);
        if (rc == SINTER_OK) {
            h->unflushed = true;
        } else if (rc == SINTER_EBUSY) {
            sinter_raft_report_unreachable(g->r, m->to);
        } else if (rc != SINTER_OK && rc != SINTER_ENOTFOUND) {
            hlog(h, 3, g->id, "send %s to %" PRIu64 ": %s", sinter_raft_msg_name(m->type), m->to,
                 sinter_strerror(rc));
        }
    }
}

static void flush_beats(struct sinter_raft_host *h)
{
    for (size_t i = 0; i < h->n_beatslots; i++) {
        struct beatslot *s = &h->beats[i];
        for (int k = 0; k < 2; k++) {
            struct beatvec *v = k == 0 ? &s->hb : &s->resp;
            if (v->n == 0) {
                continue;
            }
            int rc = sinter_raft_transport_send_heartbeats(h->t, s->peer, k == 1, v->v, v->n);
            if (rc == SINTER_EBUSY && k == 0) {
                for (size_t j = 0; j < v->n; j++) {
                    struct group *g = &h->groups[v->v[j].group];
                    if (g->error == SINTER_OK) {
                        sinter_raft_report_unreachable(g->r, s->peer);
                    }
                }
            }
            v->n = 0;
        }
    }
    sinter_raft_transport_flush(h->t, 0);
}

/* ---------------------------------------------------------------------------------------------
 * State machine and snapshots on the loop
 */

static int sm_load_newest(struct group *g, const struct sinter_raft_snapshot_meta *want)
{
    struct sinter_raft_snapshot_meta meta;
    struct sinter_raft_host_snap_reader hr = {NULL};
    int rc = sinter_store_snap_open(g->s, &meta, NULL, &hr.r);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (want != NULL && (meta.index != want->index || meta.term != want->term)) {
        sinter_store_snap_close(hr.r);
        return SINTER_EINTERNAL;
    }
    rc = g->sm.snapshot_load != NULL ? g->sm.snapshot_load(g->sm.arg, g->id, meta.index, &hr)
                                     : SINTER_EINVAL;
    sinter_store_snap_close(hr.r);
    if (rc == SINTER_OK) {
        g->last_snap = meta.index;
    }
    return rc;
}

static void *job_main(void *arg)
{
    struct snap_job *j = arg;
    struct group *g = j->g;
    j->rc = g->sm.snapshot_save(g->sm.arg, g->id, j->copy, &j->w);
    if (j->rc == SINTER_OK) {
        /* The fsync of the whole file runs here, off the loop (raft/host/FINDINGS.md S1): the
         * loop only publishes the durable file (sinter_store_snap_publish). */
        uint64_t t0 = now_ns();
        j->rc = sinter_store_snap_sync(j->w.w);
        j->sync_ns = now_ns() - t0;
        j->sync_failed = j->rc != SINTER_OK;
    }
    struct event *e = event_new(EV_SNAP_JOB, g->id, 0);
    if (e != NULL) {
        e->job = j;
        if (enqueue(g->h, e) != SINTER_OK) {
            free(e);
        }
    }
    return NULL;
}

static void job_free(struct group *g, struct snap_job *j)
{
    pthread_join(j->th, NULL);
    if (g->sm.snapshot_release != NULL) {
        g->sm.snapshot_release(g->sm.arg, g->id, j->copy);
    }
    if (j->w.w != NULL) {
        sinter_store_snap_abort(j->w.w);
    }
    free(j);
}

/* Completes the snapshot_now waiters that a snapshot at `upto` answers: those that asked when at
 * most `upto` entries were applied (p->index). A waiter that asked while an older snapshot was
 * being written is not answered by it (that snapshot misses entries the caller saw applied): it
 * stays, snap_requested is still set, and the next job (started at once, no backoff) answers it.
 * Answering it with the older index made a caller that compacts or ships "the snapshot it just
 * asked for" work with a stale one (seen in test_raft_host_faults under ASan: snapshot 22 for a
 * request made at applied 62). */
static void snap_waiters_done(struct group *g, int rc, uint64_t upto, uint64_t index)
{
    for (struct pending **pp = &g->snap_waiters; *pp != NULL;) {
        struct pending *p = *pp;
        if (p->index > upto) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        complete(g, p->cb, p->arg, rc, index);
        free(p);
    }
}

/* The loop's tick round counter. Only the loop writes h->ticks, so the loop reads it unlocked. */
static uint64_t loop_ticks(struct sinter_raft_host *h)
{
    return atomic_load_explicit(&h->ticks, memory_order_relaxed);
}

/* A snapshot at `index` failed (a failed snapshot costs nothing but log space: keep going). The
 * next automatic attempt waits HOST_SNAP_BACKOFF_MIN ticks, doubled per consecutive failure up to
 * HOST_SNAP_BACKOFF_MAX; one log line per failure, so one per backoff step. Waiters of
 * snapshot_now get the error. */
static void snap_failed(struct group *g, uint64_t index, int rc, const char *what)
{
    struct sinter_raft_host *h = g->h;
    uint32_t wait = HOST_SNAP_BACKOFF_MAX;
    if (g->snap_failures < 16 && (HOST_SNAP_BACKOFF_MIN << g->snap_failures) < wait) {
        wait = HOST_SNAP_BACKOFF_MIN << g->snap_failures;
    }
    if (g->snap_failures < UINT32_MAX) {
        g->snap_failures++;
    }
    g->snap_retry_tick = loop_ticks(h) + wait;
    hlog(h, 1, g->id,
         "snapshot at %" PRIu64 " failed (%s): %s; failure %u in a row, next attempt in %u ticks",
         index, what, sinter_strerror(rc), g->snap_failures, wait);
    snap_waiters_done(g, rc, index, 0); /* later requests get their own attempt */
}

/* balance_leaders: the voter at position group mod n of the voters sorted by id (a
 * configuration keeps its servers sorted), 0 without voters. */
static sinter_raft_id preferred_leader(const struct sinter_raft_config *cfg, uint32_t group)
{
    uint32_t n = sinter_raft_config_voters(cfg);
    if (n == 0) {
        return 0;
    }
    uint32_t pos = group % n;
    for (uint32_t i = 0; i < cfg->n; i++) {
        if (cfg->servers[i].suffrage != SINTER_RAFT_VOTER) {
            continue;
        }
        if (pos == 0) {
            return cfg->servers[i].id;
        }
        pos--;
    }
    return 0;
}

/* balance_leaders, once per tick round: a leader that is not g's preferred voter hands
 * leadership to it when it is live and caught up. Live matters as much as caught up: a dead
 * voter's match index can equal the last index when nothing was proposed since it died, and a
 * transfer to it would refuse proposals for an election timeout for nothing. Attempts are spaced
 * by 2 election timeouts whatever their outcome, so a preferred voter that cannot win (its
 * disk stalls, it lost the election to a longer log) is not hammered. */
static void maybe_balance(struct group *g)
{
    struct sinter_raft_host *h = g->h;
    if (!h->o.balance_leaders || g->error != SINTER_OK ||
        sinter_raft_role(g->r) != SINTER_RAFT_LEADER || loop_ticks(h) < g->balance_tick) {
        return;
    }
    struct sinter_raft_config cfg;
    sinter_raft_configuration(g->r, &cfg);
    sinter_raft_id to = preferred_leader(&cfg, g->id);
    if (to == 0 || to == h->o.id) {
        return;
    }
    uint64_t last = sinter_raft_last_index(g->r);
    uint64_t match = sinter_raft_match_index(g->r, to);
    /* match 0: not heard from in this term yet (a new leader resets every match index). */
    if (match == 0 || match + HOST_BALANCE_MAX_LAG < last || !sinter_raft_peer_active(g->r, to)) {
        return;
    }
    g->balance_tick = loop_ticks(h) + 2 * (uint64_t)h->o.election_ticks;
    int rc = sinter_raft_transfer(g->r, to);
    hlog(h, rc == SINTER_OK ? 2 : 3, g->id,
         "balance_leaders: transferring leadership to preferred voter %" PRIu64 " (match %" PRIu64
         ", last %" PRIu64 "): %s",
         (uint64_t)to, match, last, sinter_strerror(rc));
}

/* Starts a snapshot job when due. The copy is taken here, between readies, so it is exactly the
 * state after `applied` entries (the state machine has seen every entry up to it, see
 * apply_committed); serialising it happens off the loop (dissertation 5.2 suggests copy-on-write
 * for the same reason: clients must not wait while a snapshot is written). After a failure an
 * automatic snapshot waits out its backoff; an explicit snapshot_now is tried at once (one attempt
 * per request, so it cannot spin either). */
static void maybe_snapshot(struct group *g)
{
    struct sinter_raft_host *h = g->h;
    if (g->error != SINTER_OK || g->job != NULL) {
        return;
    }
    uint64_t applied = sinter_raft_applied_index(g->r);
    bool due = h->o.snapshot_every != 0 && applied >= g->last_snap + h->o.snapshot_every &&
               loop_ticks(h) >= g->snap_retry_tick;
    if (!due && !g->snap_requested) {
        return;
    }
    if (applied <= g->last_snap || g->sm.snapshot_prepare == NULL || g->sm.snapshot_save == NULL) {
        g->snap_requested = false;
        snap_waiters_done(g, g->sm.snapshot_prepare == NULL ? SINTER_EINVAL : SINTER_OK, UINT64_MAX,
                          g->last_snap); /* nothing applied since: all answered */
        return;
    }
    g->snap_requested = false;
    struct snap_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        snap_failed(g, applied, SINTER_ENOMEM, "job");
        return;
    }
    j->g = g;
    int rc = sinter_raft_snapshot_meta_at(g->r, applied, &j->meta);
    if (rc == SINTER_OK) {
        rc = sinter_store_snap_begin(g->s, &j->meta, &j->w.w);
    }
    if (rc != SINTER_OK) {
        free(j);
        snap_failed(g, applied, rc, "cannot start");
        return;
    }
    j->copy = g->sm.snapshot_prepare(g->sm.arg, g->id, applied);
    if (j->copy == NULL) {
        sinter_store_snap_abort(j->w.w);
        free(j);
        snap_failed(g, applied, SINTER_ENOMEM, "state machine copy");
        return;
    }
    if (pthread_create(&j->th, NULL, job_main, j) != 0) {
        if (g->sm.snapshot_release != NULL) {
            g->sm.snapshot_release(g->sm.arg, g->id, j->copy);
        }
        sinter_store_snap_abort(j->w.w);
        free(j);
        snap_failed(g, applied, SINTER_ENOMEM, "helper thread");
        return;
    }
    g->job = j;
}

/* Removes files the store queued (compacted segments, retired snapshots; defer_unlink). A failure
 * leaves an old log prefix or snapshot that the next open keeps and a later compaction or snapshot
 * removes: nothing to report to the loop. */
static void *gc_main(void *arg)
{
    (void)sinter_store_garbage_collect(arg);
    return NULL;
}

/* Zero-fills the store's next segment off the loop; the result goes back to the loop (EV_SPARE),
 * which hands it to the store (sinter_store_spare_put). While stopping the event is refused and
 * stop() joins the thread and puts the job itself. */
static void *spare_main(void *arg)
{
    struct group *g = arg;
    uint64_t t0 = now_ns();
    (void)sinter_store_spare_make(g->spare);
    g->spare_ns = now_ns() - t0;
    struct event *e = event_new(EV_SPARE, g->id, 0);
    if (e != NULL && enqueue(g->h, e) != SINTER_OK) {
        free(e);
    }
    return NULL;
}

/* Starts a spare job if the store wants one (after appends: sinter_store_spare_want is cheap and
 * says no while a spare is ready or a job is out). No thread: no spare, rollovers fall back to
 * fallocate as before. */
static void spare_maybe(struct group *g)
{
    if (g->spare != NULL || g->error != SINTER_OK) {
        return;
    }
    struct sinter_store_spare *j = sinter_store_spare_want(g->s);
    if (j == NULL) {
        return;
    }
    g->spare = j;
    if (pthread_create(&g->spare_th, NULL, spare_main, g) != 0) {
        g->spare = NULL;
        (void)sinter_store_spare_put(g->s, j); /* never made: the store falls back */
        return;
    }
    g->spare_running = true;
}

static void spare_finished(struct group *g)
{
    if (!g->spare_running) {
        return;
    }
    pthread_join(g->spare_th, NULL);
    g->spare_running = false;
    struct sinter_store_spare *j = g->spare;
    g->spare = NULL;
    int rc = sinter_store_spare_put(g->s, j);
    if (rc != SINTER_OK) {
        /* Not a group failure: the next rollover uses fallocate, as without a spare. */
        hlog(g->h, 1, g->id, "spare segment not made: %s", sinter_store_errmsg(g->s));
    } else {
        hlog(g->h, 3, g->id, "spare segment ready (zero-filled in %" PRIu64 " ms)",
             g->spare_ns / 1000000u);
    }
}

static void job_finished(struct group *g, struct snap_job *j)
{
    struct sinter_raft_host *h = g->h;
    pthread_join(j->th, NULL);
    g->job = NULL;
    if (g->sm.snapshot_release != NULL) {
        g->sm.snapshot_release(g->sm.arg, g->id, j->copy);
    }
    int rc = j->rc;
    struct sinter_store_snap_writer *w = j->w.w;
    j->w.w = NULL;
    h->lstats.snapshot_sync_ns += j->sync_ns;
    if (j->sync_failed) {
        /* The helper's message stayed in the writer (S2: the helper never writes the store). */
        hlog(h, 1, g->id, "snapshot store error: %s", sinter_store_snap_errmsg(w));
    }
    uint64_t t0 = now_ns();
    if (rc == SINTER_OK && g->error == SINTER_OK) {
        rc = sinter_store_snap_publish(w);
    } else {
        sinter_store_snap_abort(w);
        if (rc == SINTER_OK) {
            rc = g->error;
        }
    }
    uint64_t index = j->meta.index;
    bool publish_failed = j->rc == SINTER_OK && g->error == SINTER_OK && rc != SINTER_OK;
    const char *what = j->sync_failed          ? "store sync"
                       : j->rc != SINTER_OK    ? "state machine save"
                       : g->error != SINTER_OK ? "group stopped"
                                               : "store";
    free(j);
    if (rc != SINTER_OK) {
        if (publish_failed) {
            hlog(h, 1, g->id, "snapshot store error: %s", sinter_store_errmsg(g->s));
        }
        snap_failed(g, index, rc, what);
        return;
    }
    if (g->snap_failures > 0) {
        hlog(h, 2, g->id, "snapshot at %" PRIu64 " succeeded after %u failed attempt(s)", index,
             g->snap_failures);
    }
    g->snap_failures = 0;
    g->snap_retry_tick = 0;
    g->last_snap = index;
    g->taken++;
    int crc = sinter_raft_compact(g->r, index, h->o.snapshot_trailing);
    if (crc != SINTER_OK) {
        hlog(h, 1, g->id, "core compaction at %" PRIu64 ": %s", index, sinter_strerror(crc));
    }
    /* Only whole segments at or below the durable snapshot go (the store enforces it). */
    crc = sinter_store_compact(g->s, index);
    if (crc != SINTER_OK) {
        hlog(h, 1, g->id, "store compaction at %" PRIu64 ": %s", index, sinter_store_errmsg(g->s));
    }
    /* The files of compacted segments and retired snapshots are unlinked by a helper: freeing a
     * 64 MiB segment or an old snapshot took 10-70 ms on the loop under load (raft-bench's
     * max_gap). If the previous helper is still busy they wait in the store for the next time. */
    if (!g->gc_running || pthread_tryjoin_np(g->gc_th, NULL) == 0) {
        g->gc_running = false;
        struct sinter_store_garbage *gb = sinter_store_garbage_take(g->s);
        if (gb != NULL) {
            if (pthread_create(&g->gc_th, NULL, gc_main, gb) == 0) {
                g->gc_running = true;
            } else {
                (void)sinter_store_garbage_collect(gb); /* no thread: do it here */
            }
        }
    }
    uint64_t dt = now_ns() - t0;
    h->lstats.snapshot_publish_ns += dt;
    stat_max(&h->lstats.snapshot_publish_max_ns, dt);
    hlog(h, 2, g->id, "snapshot taken at %" PRIu64, index);
    snap_waiters_done(g, SINTER_OK, index, index);
}

/* A snapshot from the leader arrived whole, already written and fsync'd under a temporary name
 * (sink_finish): publish it (rename + directory sync), then let the core decide. The core
 * installs it only if it is newer than our commit index and from a current leader; drop the file
 * when it certainly will not. */
static void snap_received(struct group *g, struct snap_in *si)
{
    struct sinter_raft_host *h = g->h;
    const struct sinter_raft_snapshot_meta *meta = &si->msg.snapshot;
    bool wanted = si->msg.term >= sinter_raft_term(g->r) &&
                  meta->index > sinter_raft_commit_index(g->r) && g->job == NULL;
    struct sinter_store_snap_writer *w = si->w;
    si->w = NULL;
    if (!wanted) {
        sinter_store_snap_abort(w);
    } else {
        int rc = sinter_store_snap_publish(w); /* frees w */
        if (rc != SINTER_OK) {
            hlog(h, 1, g->id, "cannot store snapshot %" PRIu64 " from %" PRIu64 ": %s", meta->index,
                 si->from, sinter_store_errmsg(g->s));
            goto out;
        }
    }
    int rc = sinter_raft_step(g->r, &si->msg);
    if (rc != SINTER_OK) {
        hlog(h, 1, g->id, "step SNAPSHOT: %s", sinter_strerror(rc));
    }
out:
    free(si);
}

static int install_snapshot(struct group *g, const struct sinter_raft_snapshot_meta *meta)
{
    int rc = sinter_store_snapshot_installed(g->s, meta);
    if (rc != SINTER_OK) {
        group_fail(g, rc, sinter_store_errmsg(g->s));
        return rc;
    }
    rc = sm_load_newest(g, meta);
    if (rc != SINTER_OK) {
        group_fail(g, rc, "loading the installed snapshot into the state machine");
        return rc;
    }
    g->installed++;
    /* Proposals at or below the snapshot cannot be matched to an entry any more. */
    while (g->props != NULL && g->props->index <= meta->index) {
        struct pending *p = g->props;
        g->props = p->next;
        complete(g, p->cb, p->arg, SINTER_ETIMEOUT, p->index);
        free(p);
    }
    if (g->props == NULL) {
        g->props_tail = NULL;
    }
    hlog(g->h, 2, g->id, "installed snapshot %" PRIu64 " (term %" PRIu64 ")", meta->index,
         meta->term);
    return SINTER_OK;
}

static int apply_committed(struct group *g, const struct sinter_raft_entry *c, size_t n)
{
    struct sinter_raft_host *h = g->h;
    if (n > g->abuf_cap) {
        struct sinter_raft_host_entry *nb = realloc(g->abuf, n * sizeof *nb);
        if (nb == NULL) {
            return SINTER_ENOMEM;
        }
        g->abuf = nb;
        g->abuf_cap = n;
    }
    /* Every committed index goes to the state machine, NOOP and CONFIG entries too (with no
     * data): the state machine's own idea of its applied index must be the core's applied index,
     * because that is the index maybe_snapshot takes a snapshot at (and the index the log replays
     * from after it). Passing only NORMAL entries left a state machine that records its applied
     * index (tc/fsm.c) behind the core whenever the last applied entry was a new leader's no-op:
     * it then rightly refused a copy "for index i" of state at i - 1, and the snapshot failed
     * until the next command. Asking the state machine for its own index instead would need one
     * more callback, and would still leave a snapshot (and the replay after a restart) one entry
     * short of what the core believes is applied. */
    for (size_t i = 0; i < n; i++) {
        bool cmd = c[i].type == SINTER_RAFT_ENTRY_NORMAL;
        g->abuf[i] = (struct sinter_raft_host_entry){.index = c[i].index,
                                                     .term = c[i].term,
                                                     .data = cmd ? c[i].data : NULL,
                                                     .len = cmd ? c[i].len : 0,
                                                     .type = c[i].type};
    }
    uint64_t t0 = now_ns();
    int rc = g->sm.apply(g->sm.arg, g->id, g->abuf, n);
    uint64_t t1 = now_ns();
    uint64_t dt = t1 - t0;
    g->apply_t0 = t0;
    g->apply_t1 = t1;
    h->lstats.apply_entries += n;
    h->lstats.apply_ns += dt;
    stat_max(&h->lstats.apply_max_ns, dt);
    return rc;
}

/* Resolves proposals against the committed entries (sinter_raft_propose: same index and term =
 * committed; a different term at that index = lost). */
static void resolve_props(struct group *g, const struct sinter_raft_entry *c, size_t n)
{
    for (size_t i = 0; i < n && g->props != NULL; i++) {
        while (g->props != NULL && g->props->index <= c[i].index) {
            struct pending *p = g->props;
            g->props = p->next;
            if (p->index == c[i].index && p->term == c[i].term) {
                if (p->t_sub != 0) {
                    /* Where a proposal's time went (sinter_raft_host_stats): queued for the
                     * loop, replicated until committed, applied, callbacks ahead of it. */
                    struct sinter_raft_host_stats *st = &g->h->lstats;
                    uint64_t now = now_ns();
                    st->props_done++;
                    st->prop_queue_ns += p->t_step - p->t_sub;
                    st->prop_commit_ns += g->apply_t0 - p->t_step;
                    st->prop_apply_ns += g->apply_t1 - g->apply_t0;
                    st->prop_complete_ns += now - g->apply_t1;
                }
                complete(g, p->cb, p->arg, SINTER_OK, p->index);
            } else {
                complete(g, p->cb, p->arg, SINTER_ENOTLEADER, p->index);
            }
            free(p);
        }
    }
    if (g->props == NULL) {
        g->props_tail = NULL;
    }
}

static void serve_reads(struct group *g)
{
    uint64_t applied = sinter_raft_applied_index(g->r);
    struct pread **pp = &g->reads;
    while (*pp != NULL) {
        struct pread *p = *pp;
        if (p->confirmed && p->index <= applied) {
            *pp = p->next;
            complete(g, p->cb, p->arg, SINTER_OK, p->index);
            free(p);
        } else {
            pp = &p->next;
        }
    }
}

static void note_reads(struct group *g, const struct sinter_raft_read_state *rs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct pread **pp = &g->reads;
        while (*pp != NULL && (*pp)->ctx != rs[i].ctx) {
            pp = &(*pp)->next;
        }
        struct pread *p = *pp;
        if (p == NULL) {
            continue;
        }
        if (rs[i].rc != SINTER_OK) {
            *pp = p->next;
            complete(g, p->cb, p->arg, rs[i].rc, 0);
            free(p);
        } else {
            p->confirmed = true;
            p->index = rs[i].index;
        }
    }
}

/* Saves hs (fsync'd by the store when term or vote moved); a failure stops the group. */
static bool save_hard_state(struct group *g, const struct sinter_raft_hard_state *hs)
{
    struct sinter_raft_host *h = g->h;
    uint64_t t0 = now_ns();
    int rc = sinter_store_save_hard_state(g->s, hs);
    h->lstats.hard_state_saves++;
    h->lstats.hard_state_ns += now_ns() - t0;
    if (rc != SINTER_OK) {
        group_fail(g, rc, sinter_store_errmsg(g->s));
        return false;
    }
    return true;
}

/* One ready, handled in the order sinter/raft.h prescribes. Returns true if one was handled. */
static bool handle_ready(struct group *g)
{
    struct sinter_raft_host *h = g->h;
    if (g->error != SINTER_OK || !sinter_raft_has_ready(g->r)) {
        return false;
    }
    struct sinter_raft_ready rd;
    if (sinter_raft_ready(g->r, &rd) != SINTER_OK) {
        return false;
    }
    g->dirty = true;
    h->lstats.readies++;
    if (rd.role != g->role || rd.leader != g->leader || rd.term != g->term) {
        if (rd.role != g->role || rd.leader != g->leader) {
            hlog(h, 2, g->id, "%s, term %" PRIu64 ", leader %" PRIu64,
                 sinter_raft_role_name(rd.role), rd.term, rd.leader);
        }
        g->role = rd.role;
        g->leader = rd.leader;
        g->term = rd.term;
        if (g->sm.on_role != NULL) {
            g->sm.on_role(g->sm.arg, g->id, rd.role, rd.leader, rd.term);
        }
    }
    /* A hard state whose term and vote are unchanged only moves the commit hint (sinter/raft.h:
     * "persisted as a hint only (it may lag)"): nothing sent depends on it, so it is written
     * after this ready's acknowledgements and completions (step 4b) instead of before: one
     * pwrite less on the path of every commit, on the follower before its acknowledgement and on
     * the leader before the proposal completes. The hint never exceeds the durable log either
     * way: the core clips it to its persisted index (raft.c hs_commit), and a hint that lags by
     * one more ready only makes a restarted node wait for the leader's commit index. */
    bool hint_only = false;
    if (rd.hard_state_dirty) {
        struct sinter_raft_hard_state cur;
        sinter_store_hard_state(g->s, &cur);
        hint_only = cur.term == rd.hard_state.term && cur.vote == rd.hard_state.vote;
    }
    /* 1. Messages that need nothing durable go out at once (dissertation 10.2.1). */
    send_msgs(g, rd.msgs, rd.n_msgs);
    /* ... and really leave before our own disk write: the leader writes its log in parallel
     * with replicating it (dissertation 10.2.1), so a follower's append is not delayed by the
     * leader's disk. Batching the frame until the end of the iteration put the leader's fdatasync
     * on the critical path of every commit. A ready with nothing to write but the commit hint
     * (the leader's after a commit: its messages are the empty appends that carry the new commit
     * index, raft__bcast_append) keeps them for the end of the pass instead: nothing slow comes
     * first, so they are not late; the proposals completed in step 4 come first, and a proposal
     * their callbacks make on this thread is taken in the same pass (loop_main), so at one
     * proposal in flight the next entry travels in the same frame as the commit index: one
     * frame, one wake-up and one acknowledgement per follower per entry instead of two. */
    bool persists = rd.snapshot_dirty || rd.n_entries > 0 || (rd.hard_state_dirty && !hint_only);
    if (h->unflushed && persists) {
        sinter_raft_transport_flush(h->t, 0);
        h->unflushed = false;
    }
    /* 2. Persist: snapshot, then term/vote (fsync'd by the store before it returns: paper figure
     * 2), then the new entries with one append (group commit). */
    if (rd.snapshot_dirty && install_snapshot(g, &rd.snapshot) != SINTER_OK) {
        return false;
    }
    if (rd.hard_state_dirty && !hint_only && !save_hard_state(g, &rd.hard_state)) {
        return false;
    }
    if (rd.n_entries > 0) {
        uint64_t t0 = now_ns();
        int rc = sinter_store_append(g->s, rd.entries, rd.n_entries);
        uint64_t dt = now_ns() - t0;
        h->lstats.store_appends++;
        h->lstats.store_append_entries += rd.n_entries;
        h->lstats.store_append_ns += dt;
        stat_max(&h->lstats.store_append_max_ns, dt);
        if (rc != SINTER_OK) {
            group_fail(g, rc, sinter_store_errmsg(g->s));
            return false;
        }
        spare_maybe(g);
    }
    /* 3. Votes and append acknowledgements promise durable state: only now, and at once: the
     * leader waits for the acknowledgement to commit. Held until the end of the iteration, it
     * waited for this ready's apply (a pipelined follower's ready carries new entries and the
     * commit of earlier ones) and its completions, then for the rest of the pass up to the next
     * flush: a later ready's step 1 when it has entries or a hard state to persist (every ready
     * with newly committed entries has), the end of the pass otherwise. */
    send_msgs(g, rd.msgs_after_persist, rd.n_msgs_after_persist);
    if (h->unflushed && rd.n_msgs_after_persist > 0) {
        sinter_raft_transport_flush(h->t, 0);
        h->unflushed = false;
    }
    /* 4. Apply in one batch, complete proposals, note reads. */
    if (rd.n_committed > 0) {
        int rc = apply_committed(g, rd.committed, rd.n_committed);
        if (rc != SINTER_OK) {
            group_fail(g, rc, "state machine apply");
            return false;
        }
        resolve_props(g, rd.committed, rd.n_committed);
    }
    /* 4b. The commit hint (see step 2). */
    if (hint_only && !save_hard_state(g, &rd.hard_state)) {
        return false;
    }
    note_reads(g, rd.reads, rd.n_reads);
    /* 5. */
    sinter_raft_advance(g->r, &rd);
    serve_reads(g);
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Events
 */

static void handle_event(struct sinter_raft_host *h, struct event *e)
{
    struct group *g = e->group < h->n_groups ? &h->groups[e->group] : NULL;
    if (g != NULL && e->type != EV_RX) {
        g->dirty = true;
    }
    switch (e->type) {
    case EV_RX: {
        const struct sinter_raft_transport_rx *rx = e->rx;
        for (size_t i = 0; i < rx->n; i++) {
            if (rx->groups[i] >= h->n_groups) {
                continue;
            }
            struct group *mg = &h->groups[rx->groups[i]];
            if (mg->error != SINTER_OK) {
                continue;
            }
            mg->dirty = true;
            int rc = sinter_raft_step(mg->r, &rx->msgs[i]);
            if (rc != SINTER_OK) {
                hlog(h, 3, mg->id, "step %s from %" PRIu64 ": %s",
                     sinter_raft_msg_name(rx->msgs[i].type), rx->msgs[i].from, sinter_strerror(rc));
            }
        }
        sinter_raft_transport_rx_release(e->rx);
        break;
    }
    case EV_PROPOSE: {
        if (g->error != SINTER_OK) {
            complete(g, e->cb, e->arg, g->error, 0);
            break;
        }
        uint64_t index = 0, term = 0;
        int rc = sinter_raft_propose(g->r, e->data, e->len, &index, &term);
        if (rc != SINTER_OK) {
            complete(g, e->cb, e->arg, rc, 0);
        } else {
            pending_add(g, index, term, now_ms() + h->o.propose_timeout_ms, e->cb, e->arg,
                        e->t_sub);
        }
        break;
    }
    case EV_CHANGE: {
        if (g->error != SINTER_OK) {
            complete(g, e->cb, e->arg, g->error, 0);
            break;
        }
        uint64_t index = 0;
        int rc = sinter_raft_change_member(g->r, e->id, e->change, &index);
        if (rc != SINTER_OK) {
            complete(g, e->cb, e->arg, rc, 0);
        } else {
            hlog(h, 2, g->id, "membership change %d of %" PRIu64 " proposed at %" PRIu64, e->change,
                 e->id, index);
            pending_add(g, index, sinter_raft_term(g->r), now_ms() + h->o.propose_timeout_ms, e->cb,
                        e->arg, 0);
        }
        break;
    }
    case EV_READ: {
        if (g->error != SINTER_OK) {
            complete(g, e->cb, e->arg, g->error, 0);
            break;
        }
        struct pread *p = calloc(1, sizeof *p);
        if (p == NULL) {
            complete(g, e->cb, e->arg, SINTER_ENOMEM, 0);
            break;
        }
        p->ctx = ++g->read_ctx;
        p->cb = e->cb;
        p->arg = e->arg;
        int rc = sinter_raft_read_index(g->r, p->ctx);
        if (rc != SINTER_OK) {
            free(p);
            complete(g, e->cb, e->arg, rc, 0);
            break;
        }
        p->next = g->reads;
        g->reads = p;
        break;
    }
    case EV_TRANSFER: {
        int rc = g->error != SINTER_OK ? g->error : sinter_raft_transfer(g->r, e->id);
        complete(g, e->cb, e->arg, rc, 0);
        break;
    }
    case EV_SNAPNOW: {
        if (g->error != SINTER_OK) {
            complete(g, e->cb, e->arg, g->error, 0);
            break;
        }
        struct pending *p = calloc(1, sizeof *p);
        if (p == NULL) {
            complete(g, e->cb, e->arg, SINTER_ENOMEM, 0);
            break;
        }
        p->cb = e->cb;
        p->arg = e->arg;
        p->index = sinter_raft_applied_index(g->r); /* the snapshot must cover at least this */
        p->next = g->snap_waiters;
        g->snap_waiters = p;
        g->snap_requested = true;
        break;
    }
    case EV_SNAP_RX:
        if (g == NULL || g->error != SINTER_OK) {
            sink_abort(h, e->snap_in, SINTER_ECANCELED);
        } else {
            snap_received(g, e->snap_in);
        }
        break;
    case EV_SNAP_SENT:
        if (g != NULL && g->error == SINTER_OK) {
            sinter_raft_report_snapshot(g->r, e->id, e->ok);
            if (e->ok) {
                g->sent++;
            }
        }
        break;
    case EV_SNAP_JOB:
        job_finished(g, e->job);
        break;
    case EV_SPARE:
        spare_finished(g);
        break;
    case EV_CALL:
        complete(g, e->cb, e->arg, g->error,
                 g->error == SINTER_OK ? sinter_raft_applied_index(g->r) : 0);
        break;
    default:
        break;
    }
}

static void expire(struct group *g, uint64_t now)
{
    struct pending **pp = &g->props;
    g->props_tail = NULL;
    while (*pp != NULL) {
        struct pending *p = *pp;
        if (p->deadline <= now) {
            *pp = p->next;
            complete(g, p->cb, p->arg, SINTER_ETIMEOUT, p->index);
            free(p);
        } else {
            g->props_tail = p;
            pp = &p->next;
        }
    }
}

static void stats_add(struct sinter_raft_host_stats *to, const struct sinter_raft_host_stats *d)
{
    to->loop_iterations += d->loop_iterations;
    to->loop_wakeups += d->loop_wakeups;
    to->events += d->events;
    to->readies += d->readies;
    to->loop_busy_ns += d->loop_busy_ns;
    if (d->loop_max_iter_ns > to->loop_max_iter_ns) {
        to->loop_max_iter_ns = d->loop_max_iter_ns;
        to->loop_max_iter_end_ns = d->loop_max_iter_end_ns;
    }
    to->store_appends += d->store_appends;
    to->store_append_entries += d->store_append_entries;
    to->store_append_ns += d->store_append_ns;
    stat_max(&to->store_append_max_ns, d->store_append_max_ns);
    to->hard_state_saves += d->hard_state_saves;
    to->hard_state_ns += d->hard_state_ns;
    to->apply_entries += d->apply_entries;
    to->apply_ns += d->apply_ns;
    stat_max(&to->apply_max_ns, d->apply_max_ns);
    to->snapshot_sync_ns += d->snapshot_sync_ns;
    to->snapshot_publish_ns += d->snapshot_publish_ns;
    stat_max(&to->snapshot_publish_max_ns, d->snapshot_publish_max_ns);
    to->props_done += d->props_done;
    to->prop_queue_ns += d->prop_queue_ns;
    to->prop_commit_ns += d->prop_commit_ns;
    to->prop_apply_ns += d->prop_apply_ns;
    to->prop_complete_ns += d->prop_complete_ns;
}

/* Publishes the status of the groups that changed (or of all, once per tick round and at start)
 * and the counters, under st_mu, which only status readers share with the loop: the inbox has no
 * lock, so publishing no longer holds up producers (F1). */
static void publish(struct sinter_raft_host *h, bool all)
{
    pthread_mutex_lock(&h->st_mu);
    for (uint32_t i = 0; i < h->n_groups; i++) {
        struct group *g = &h->groups[i];
        if (!g->dirty && !all) {
            continue;
        }
        g->dirty = false;
        struct sinter_raft_host_status *st = &g->st;
        if (g->r != NULL) {
            struct sinter_raft_snapshot_meta sm;
            sinter_raft_snapshot(g->r, &sm);
            st->role = sinter_raft_role(g->r);
            st->leader = sinter_raft_leader(g->r);
            st->term = sinter_raft_term(g->r);
            st->commit = sinter_raft_commit_index(g->r);
            st->applied = sinter_raft_applied_index(g->r);
            st->last_index = sinter_raft_last_index(g->r);
            st->snapshot_index = sm.index;
            sinter_raft_configuration(g->r, &st->config);
        }
        st->snapshots_taken = g->taken;
        st->snapshots_installed = g->installed;
        st->snapshots_sent = g->sent;
        st->error = g->error;
        snprintf(st->error_msg, sizeof st->error_msg, "%s", g->errmsg);
    }
    stats_add(&h->pstats, &h->lstats);
    pthread_mutex_unlock(&h->st_mu);
    memset(&h->lstats, 0, sizeof h->lstats);
}

/* Reads received frames on the loop thread (bounded); on_recv queues them in the inbox without a
 * wake-up. Nothing to do (one epoll_wait with no timeout) unless frames arrived. */
static void pump_rx(struct sinter_raft_host *h)
{
    if (h->rx_fd >= 0) {
        (void)sinter_raft_transport_pump(h->t, HOST_RX_PER_ROUND);
    }
}

/* The loop's wait and receive in one system call (the wake eventfd is in the transport's epoll
 * set: sinter_raft_transport_watch_fd): reads what arrived and, only when the inbox is empty,
 * sleeps until the inbox is signalled, a frame arrives or the deadline (ms, monotonic) passes.
 * Replaces pump_rx + loop_wait's poll + its pump, three or four system calls per pass on the
 * path of every frame (at 1 in flight a commit crosses three loop passes). Returns what the
 * inbox holds then (LIFO order). */
static struct event *loop_pump_wait(struct sinter_raft_host *h, uint64_t deadline)
{
    int timeout = 0;
    if (atomic_load_explicit(&h->inbox, memory_order_acquire) == NULL &&
        !atomic_load_explicit(&h->stopping, memory_order_acquire)) {
        /* A push after this load finds the inbox empty and writes the eventfd, which epoll
         * reports: the sleep below cannot miss it. */
        uint64_t now = now_ms();
        uint64_t wait = deadline > now ? deadline - now : 0;
        timeout = wait > 1000u ? 1000 : (int)wait;
    }
    bool watched = false;
    size_t n = sinter_raft_transport_pump_wait(h->t, HOST_RX_PER_ROUND, timeout, &watched);
    if (watched) {
        uint64_t cnt;
        ssize_t rd = read(h->wake_fd, &cnt, sizeof cnt); /* resets the eventfd counter */
        (void)rd;
    }
    if (timeout > 0 && (n > 0 || watched)) {
        h->lstats.loop_wakeups++;
    }
    return atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
}

/* Sleeps until the inbox is signalled, a frame arrives or the deadline (ms, monotonic) passes;
 * returns what the inbox holds then (LIFO order). */
static struct event *loop_wait(struct sinter_raft_host *h, uint64_t deadline)
{
    uint64_t now = now_ms();
    if (now >= deadline) {
        return NULL;
    }
    struct pollfd pfd[2] = {{.fd = h->wake_fd, .events = POLLIN},
                            {.fd = h->rx_fd, .events = POLLIN}};
    uint64_t wait = deadline - now;
    int n = poll(pfd, h->rx_fd >= 0 ? 2 : 1, wait > 1000u ? 1000 : (int)wait);
    if (n > 0) {
        h->lstats.loop_wakeups++;
    }
    if (n > 0 && (pfd[0].revents & POLLIN) != 0) {
        uint64_t cnt;
        ssize_t rd = read(h->wake_fd, &cnt, sizeof cnt); /* resets the eventfd counter */
        (void)rd;
    }
    if (n > 0 && h->rx_fd >= 0 && pfd[1].revents != 0) {
        pump_rx(h);
    }
    return atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
}

/* Handles a list taken from the inbox, in arrival order (the inbox is LIFO). */
static void handle_events(struct sinter_raft_host *h, struct event *list)
{
    struct event *fifo = NULL;
    while (list != NULL) {
        struct event *e = list;
        list = e->next;
        e->next = fifo;
        fifo = e;
    }
    while (fifo != NULL) {
        struct event *e = fifo;
        fifo = e->next;
        handle_event(h, e);
        free(e);
        h->lstats.events++;
    }
}

static void *loop_main(void *arg)
{
    struct sinter_raft_host *h = arg;
    tl_loop = h;
    uint64_t next_tick = now_ms() + h->o.tick_ms;
    for (;;) {
        struct event *list;
        if (h->watching) {
            list = loop_pump_wait(h, next_tick);
        } else {
            /* Frames that arrived while the loop was busy: a loop that always has work never
             * reaches loop_wait's poll, and must still read its connections every pass. */
            pump_rx(h);
            /* A push that lands after this exchange finds the inbox empty and writes the
             * eventfd, so the poll in loop_wait cannot sleep through it. */
            list = atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
            if (list == NULL && !atomic_load_explicit(&h->stopping, memory_order_acquire)) {
                list = loop_wait(h, next_tick);
            }
        }
        if (atomic_load_explicit(&h->stopping, memory_order_acquire)) {
            /* Put back what was taken: stop() completes it. */
            while (list != NULL) {
                struct event *e = list;
                list = e->next;
                struct event *head = atomic_load_explicit(&h->inbox, memory_order_relaxed);
                do {
                    e->next = head;
                } while (!atomic_compare_exchange_weak_explicit(
                    &h->inbox, &head, e, memory_order_release, memory_order_relaxed));
            }
            break;
        }
        uint64_t t0 = now_ns();
        handle_events(h, list);
        uint64_t now = now_ms();
        bool ticked = false;
        if (now >= next_tick) {
            /* Every group ticks in the same round, so their heartbeats leave together. */
            for (uint32_t i = 0; i < h->n_groups; i++) {
                struct group *g = &h->groups[i];
                if (g->error == SINTER_OK) {
                    sinter_raft_tick(g->r);
                    expire(g, now);
                    if (g->sm.on_tick != NULL) {
                        g->sm.on_tick(g->sm.arg, g->id);
                    }
                    maybe_balance(g);
                }
            }
            next_tick += h->o.tick_ms;
            if (next_tick <= now) {
                next_tick = now + h->o.tick_ms; /* we fell behind: do not burst */
            }
            atomic_fetch_add_explicit(&h->ticks, 1, memory_order_relaxed);
            ticked = true;
        }
        for (int round = 1;; round++) {
            for (uint32_t i = 0; i < h->n_groups; i++) {
                struct group *g = &h->groups[i];
                for (int k = 0; k < HOST_READIES_PER_ROUND && handle_ready(g); k++) {
                }
                maybe_snapshot(g);
            }
            /* What the readies' callbacks submitted on this thread (a completion that proposes
             * the next entry, as raft-bench and the coordinator's pipelines do) is handled now,
             * before the pass ends with its flush, not in the next pass: its appends leave in
             * the same frames as the commit index the readies held back (handle_ready, step
             * 1), instead of one frame and one wake-up of every follower later. Bounded, so a
             * stream of proposals cannot keep the pass from reading its connections, ticking
             * and flushing. */
            if (round >= HOST_SELF_ROUNDS ||
                atomic_load_explicit(&h->inbox, memory_order_relaxed) == NULL ||
                atomic_load_explicit(&h->stopping, memory_order_acquire)) {
                break;
            }
            handle_events(h, atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire));
        }
        flush_beats(h);
        h->unflushed = false;
        uint64_t dt = now_ns() - t0;
        h->lstats.loop_iterations++;
        h->lstats.loop_busy_ns += dt;
        if (dt > h->lstats.loop_max_iter_ns) {
            h->lstats.loop_max_iter_ns = dt;
            h->lstats.loop_max_iter_end_ns = t0 + dt;
        }
        publish(h, ticked);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Start / stop
 */

void sinter_raft_host_opts_default(struct sinter_raft_host_opts *o)
{
    memset(o, 0, sizeof *o);
    o->groups = 1;
    o->tick_ms = 20;
    o->election_ticks = 10;
    o->heartbeat_ticks = 1;
    o->snapshot_every = 8192;
    o->snapshot_trailing = 1024;
    o->propose_timeout_ms = 10000;
    o->log_level = 2;
}

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        return SINTER_EINVAL;
    }
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return SINTER_EIO;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        return SINTER_EIO;
    }
    return SINTER_OK;
}

static void store_report(void *arg, const char *msg)
{
    struct group *g = arg;
    hlog(g->h, 1, g->id, "store: %s", msg);
}

/* Opens the store, loads the newest snapshot into the state machine, restores the core (or
 * bootstraps a fresh founding member). Failures leave the group in the failed state. */
static void group_open(struct sinter_raft_host *h, struct group *g)
{
    /* The store's message whole (its own buffer is 512 bytes): a corruption report names the
     * directory, the segment file and the offset, and an operator needs all of them. */
    char err[512] = "";
    int rc;
    if (snprintf(g->dir, sizeof g->dir, "%s/group-%u", h->data_dir, g->id) >= (int)sizeof g->dir) {
        group_fail(g, SINTER_EINVAL, "data dir path too long");
        return;
    }
    rc = mkdir_p(g->dir);
    if (rc != SINTER_OK) {
        group_fail(g, rc, g->dir);
        return;
    }
    struct sinter_store_options so;
    sinter_store_options_defaults(&so);
    if (h->o.segment_size != 0) {
        so.segment_size = h->o.segment_size;
    }
    if (h->o.store_direct_io != 0) {
        so.direct_io = h->o.store_direct_io;
    }
    so.zero_prefix = h->o.store_zero_prefix;
    so.report = store_report;
    so.defer_unlink = true; /* removed by a helper (gc_main), not on the loop */
    if (h->o.store_io != NULL) {
        so.io = h->o.store_io;
    }
    so.report_arg = g;
    struct sinter_store_recovered rec;
    memset(&rec, 0, sizeof rec);
    rc = sinter_store_open(&g->s, g->dir, &so, &rec, err, sizeof err);
    if (rc != SINTER_OK) {
        group_fail(g, rc, err);
        return;
    }
    struct sinter_raft_options ro;
    sinter_raft_options_defaults(&ro, h->o.id);
    ro.election_ticks = h->o.election_ticks;
    ro.heartbeat_ticks = h->o.heartbeat_ticks;
    ro.seed = h->o.seed * 1000003u + h->o.id * 7919u + g->id;
    rc = sinter_raft_new(&g->r, &ro);
    if (rc != SINTER_OK) {
        sinter_store_recovered_free(&rec);
        group_fail(g, rc, "creating the raft core");
        return;
    }
    bool fresh = !rec.has_snapshot && rec.n_entries == 0 && rec.hard_state.term == 0;
    if (fresh) {
        if (h->o.bootstrap) {
            struct sinter_raft_config cfg = {0};
            /* The peer table holds this node and every --peer given at start. */
            for (size_t i = 0; i < h->n_peers; i++) {
                sinter_raft_config_add(&cfg, h->peer_ids[i], SINTER_RAFT_VOTER);
            }
            rc = sinter_raft_bootstrap(g->r, &cfg);
            if (rc != SINTER_OK) {
                group_fail(g, rc, "bootstrap");
            }
        }
        sinter_store_recovered_free(&rec);
        return;
    }
    uint64_t applied = 0;
    if (rec.has_snapshot) {
        rc = sm_load_newest(g, &rec.snapshot);
        if (rc != SINTER_OK) {
            sinter_store_recovered_free(&rec);
            group_fail(g, rc, "loading the newest snapshot into the state machine");
            return;
        }
        applied = rec.snapshot.index;
    }
    rc = sinter_raft_restore(g->r, rec.has_snapshot ? &rec.snapshot : NULL, &rec.hard_state,
                             rec.entries, rec.n_entries, applied);
    if (rc != SINTER_OK) {
        sinter_store_recovered_free(&rec);
        group_fail(g, rc, "restoring the raft core from the store");
        return;
    }
    hlog(h, 2, g->id,
         "restored: term %" PRIu64 ", snapshot %" PRIu64 ", %zu entries, commit hint %" PRIu64,
         rec.hard_state.term, applied, rec.n_entries, rec.hard_state.commit);
    sinter_store_recovered_free(&rec);
}

static void group_close(struct group *g)
{
    if (g->job != NULL) {
        job_free(g, g->job);
        g->job = NULL;
    }
    if (g->spare_running) {
        sinter_store_spare_cancel(g->spare);
        pthread_join(g->spare_th, NULL);
        g->spare_running = false;
    }
    if (g->spare != NULL) {
        (void)sinter_store_spare_put(g->s, g->spare); /* close removes a made spare */
        g->spare = NULL;
    }
    if (g->gc_running) {
        pthread_join(g->gc_th, NULL);
        g->gc_running = false;
    }
    fail_pending(g, SINTER_ESHUTDOWN);
    sinter_raft_close(g->r);
    sinter_store_close(g->s);
    free(g->abuf);
}

static void host_free(struct sinter_raft_host *h)
{
    for (size_t i = 0; i < h->n_peers; i++) {
        free(h->peer_urls[i]);
    }
    for (size_t i = 0; i < h->n_beatslots; i++) {
        free(h->beats[i].hb.v);
        free(h->beats[i].resp.v);
    }
    free(h->groups);
    free(h->listen_url);
    free(h->data_dir);
    if (h->wake_fd >= 0) {
        close(h->wake_fd);
    }
    pthread_mutex_destroy(&h->st_mu);
    pthread_mutex_destroy(&h->peer_mu);
    free(h);
}

int sinter_raft_host_start(struct sinter_raft_host **out, const struct sinter_raft_host_opts *opts)
{
    *out = NULL;
    if (opts == NULL || opts->id == 0 || opts->listen_url == NULL || opts->data_dir == NULL ||
        opts->sm == NULL || opts->groups == 0 || opts->groups > SINTER_RAFT_HOST_MAX_GROUPS ||
        opts->tick_ms == 0 || opts->n_peers >= HOST_MAX_PEERS ||
        (opts->n_peers > 0 && opts->peers == NULL)) {
        return SINTER_EINVAL;
    }
    struct sinter_raft_host *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return SINTER_ENOMEM;
    }
    h->o = *opts;
    h->o.peers = NULL; /* copied into the peer table */
    pthread_mutex_init(&h->peer_mu, NULL);
    pthread_mutex_init(&h->st_mu, NULL);
    atomic_init(&h->inbox, NULL);
    atomic_init(&h->stopping, false);
    atomic_init(&h->ticks, 0);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->rx_fd = -1;
    h->listen_url = strdup(opts->listen_url);
    h->data_dir = strdup(opts->data_dir);
    h->n_groups = opts->groups;
    h->groups = calloc(opts->groups, sizeof *h->groups);
    int rc = h->listen_url && h->data_dir && h->groups ? SINTER_OK : SINTER_ENOMEM;
    if (rc == SINTER_OK && h->wake_fd < 0) {
        rc = SINTER_ENOMEM; /* EMFILE / ENOMEM: no descriptor for the loop's wake-up */
    }
    if (rc == SINTER_OK) {
        rc = peer_table_add(h, opts->id, opts->listen_url);
    }
    for (size_t i = 0; rc == SINTER_OK && i < opts->n_peers; i++) {
        if (opts->peers[i].id == 0 || opts->peers[i].url == NULL) {
            rc = SINTER_EINVAL;
        } else {
            rc = peer_table_add(h, opts->peers[i].id, opts->peers[i].url);
        }
    }
    if (rc == SINTER_OK) {
        rc = mkdir_p(opts->data_dir);
    }
    if (rc != SINTER_OK) {
        host_free(h);
        return rc;
    }
    /* Groups first: the transport delivers messages as soon as it is open. */
    for (uint32_t i = 0; i < h->n_groups; i++) {
        struct group *g = &h->groups[i];
        g->id = i;
        g->h = h;
        opts->sm(opts->sm_arg, i, &g->sm);
        if (g->sm.apply == NULL) {
            group_fail(g, SINTER_EINVAL, "state machine without apply");
            continue;
        }
        group_open(h, g);
        if (g->r != NULL) {
            g->role = sinter_raft_role(g->r);
            g->term = sinter_raft_term(g->r);
        }
    }
    struct sinter_raft_transport_peer tp[HOST_MAX_PEERS];
    for (size_t i = 0; i < opts->n_peers; i++) {
        tp[i].id = opts->peers[i].id;
        tp[i].url = opts->peers[i].url;
    }
    struct sinter_raft_transport_opts to;
    sinter_raft_transport_opts_default(&to);
    to.self = opts->id;
    to.listen_url = opts->listen_url;
    to.peers = tp;
    to.n_peers = opts->n_peers;
    to.on_recv = on_recv;
    to.on_recv_arg = h;
    to.tls_enable = opts->tls_enable;
    to.tls = opts->tls;
    to.caller_pumps = true; /* the loop reads its own connections: see the top of this file */
    to.sink = (struct sinter_raft_snapshot_sink){.begin = sink_begin,
                                                 .write = sink_write,
                                                 .finish = sink_finish,
                                                 .abort = sink_abort,
                                                 .arg = h};
    rc = sinter_raft_transport_open(&h->t, &to);
    if (rc != SINTER_OK) {
        hlog(h, 0, UINT32_MAX, "transport on %s: %s", opts->listen_url, sinter_strerror(rc));
        for (uint32_t i = 0; i < h->n_groups; i++) {
            group_close(&h->groups[i]);
        }
        host_free(h);
        return rc;
    }
    h->rx_fd = sinter_raft_transport_poll_fd(h->t);
    /* Before the loop starts: the loop thread is the pumping thread afterwards. */
    h->watching = h->rx_fd >= 0 && sinter_raft_transport_watch_fd(h->t, h->wake_fd) == SINTER_OK;
    publish(h, true);
    if (pthread_create(&h->loop, NULL, loop_main, h) != 0) {
        sinter_raft_transport_close(h->t);
        for (uint32_t i = 0; i < h->n_groups; i++) {
            group_close(&h->groups[i]);
        }
        host_free(h);
        return SINTER_ENOMEM;
    }
    h->loop_started = true;
    hlog(h, 2, UINT32_MAX, "started: %u group(s), listening on %s", h->n_groups, opts->listen_url);
    *out = h;
    return SINTER_OK;
}

void sinter_raft_host_stop(struct sinter_raft_host *h)
{
    if (h == NULL) {
        return;
    }
    atomic_store_explicit(&h->stopping, true, memory_order_release);
    wake(h);
    if (h->loop_started) {
        pthread_join(h->loop, NULL);
    }
    /* Streams end with done / abort callbacks that may still enqueue; the inbox is drained
     * after this. */
    sinter_raft_transport_close(h->t);
    /* Helper threads finish (their events are ignored below: group_close frees the jobs). */
    for (uint32_t i = 0; i < h->n_groups; i++) {
        if (h->groups[i].job != NULL) {
            pthread_join(h->groups[i].job->th, NULL);
        }
        if (h->groups[i].spare_running) {
            /* A whole segment of zeros need not be finished just to be removed. */
            sinter_store_spare_cancel(h->groups[i].spare);
            pthread_join(h->groups[i].spare_th, NULL);
            h->groups[i].spare_running = false;
        }
    }
    struct event *list = atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
    while (list != NULL) {
        struct event *e = list;
        list = e->next;
        struct group *g = e->group < h->n_groups ? &h->groups[e->group] : NULL;
        switch (e->type) {
        case EV_RX:
            sinter_raft_transport_rx_release(e->rx);
            break;
        case EV_SNAP_RX:
            sink_abort(h, e->snap_in, SINTER_ESHUTDOWN);
            break;
        case EV_PROPOSE:
        case EV_READ:
        case EV_CHANGE:
        case EV_TRANSFER:
        case EV_SNAPNOW:
        case EV_CALL:
            complete(g, e->cb, e->arg, SINTER_ESHUTDOWN, 0);
            break;
        default:
            break;
        }
        free(e);
    }
    for (uint32_t i = 0; i < h->n_groups; i++) {
        struct group *g = &h->groups[i];
        if (g->job != NULL) {
            /* joined above; release its copy and writer */
            struct snap_job *j = g->job;
            g->job = NULL;
            if (g->sm.snapshot_release != NULL) {
                g->sm.snapshot_release(g->sm.arg, g->id, j->copy);
            }
            sinter_store_snap_abort(j->w.w);
            free(j);
        }
        group_close(g);
    }
    hlog(h, 2, UINT32_MAX, "stopped");
    host_free(h);
}

/* ---------------------------------------------------------------------------------------------
 * API
 */

static int submit(struct sinter_raft_host *h, int type, uint32_t group, sinter_raft_id id,
                  int change, const void *data, uint32_t len, sinter_raft_host_done_fn cb,
                  void *arg)
{
    if (h == NULL || group >= h->n_groups) {
        return SINTER_EINVAL;
    }
    struct event *e = event_new(type, group, len);
    if (e == NULL) {
        return SINTER_ENOMEM;
    }
    e->id = id;
    e->change = change;
    e->cb = cb;
    e->arg = arg;
    e->len = len;
    e->t_sub = type == EV_PROPOSE ? now_ns() : 0;
    if (len > 0) {
        memcpy(e->data, data, len);
    }
    int rc = enqueue(h, e);
    if (rc != SINTER_OK) {
        free(e);
    }
    return rc;
}

int sinter_raft_host_propose(struct sinter_raft_host *h, uint32_t group, const void *data,
                             uint32_t len, sinter_raft_host_done_fn cb, void *arg)
{
    if (data == NULL || len == 0) {
        return SINTER_EINVAL;
    }
    return submit(h, EV_PROPOSE, group, 0, 0, data, len, cb, arg);
}

int sinter_raft_host_read(struct sinter_raft_host *h, uint32_t group, sinter_raft_host_done_fn cb,
                          void *arg)
{
    return submit(h, EV_READ, group, 0, 0, NULL, 0, cb, arg);
}

int sinter_raft_host_change_member(struct sinter_raft_host *h, uint32_t group, sinter_raft_id id,
                                   int change, sinter_raft_host_done_fn cb, void *arg)
{
    if (id == 0 || change < SINTER_RAFT_ADD_LEARNER || change > SINTER_RAFT_REMOVE) {
        return SINTER_EINVAL;
    }
    return submit(h, EV_CHANGE, group, id, change, NULL, 0, cb, arg);
}

int sinter_raft_host_transfer(struct sinter_raft_host *h, uint32_t group, sinter_raft_id to,
                              sinter_raft_host_done_fn cb, void *arg)
{
    return submit(h, EV_TRANSFER, group, to, 0, NULL, 0, cb, arg);
}

int sinter_raft_host_snapshot_now(struct sinter_raft_host *h, uint32_t group,
                                  sinter_raft_host_done_fn cb, void *arg)
{
    return submit(h, EV_SNAPNOW, group, 0, 0, NULL, 0, cb, arg);
}

int sinter_raft_host_call(struct sinter_raft_host *h, uint32_t group, sinter_raft_host_done_fn cb,
                          void *arg)
{
    return submit(h, EV_CALL, group, 0, 0, NULL, 0, cb, arg);
}

int sinter_raft_host_add_peer(struct sinter_raft_host *h, sinter_raft_id id, const char *url)
{
    if (h == NULL || url == NULL || id == 0) {
        return SINTER_EINVAL;
    }
    int rc = sinter_raft_transport_add_peer(h->t, id, url);
    if (rc != SINTER_OK) {
        return rc;
    }
    return peer_table_add(h, id, url);
}

int sinter_raft_host_status(struct sinter_raft_host *h, uint32_t group,
                            struct sinter_raft_host_status *st)
{
    if (h == NULL || group >= h->n_groups || st == NULL) {
        return SINTER_EINVAL;
    }
    pthread_mutex_lock(&h->st_mu);
    *st = h->groups[group].st;
    pthread_mutex_unlock(&h->st_mu);
    return SINTER_OK;
}

int sinter_raft_host_stats(struct sinter_raft_host *h, struct sinter_raft_host_stats *st,
                           bool reset)
{
    if (h == NULL || st == NULL) {
        return SINTER_EINVAL;
    }
    pthread_mutex_lock(&h->st_mu);
    *st = h->pstats;
    if (reset) {
        memset(&h->pstats, 0, sizeof h->pstats);
    }
    pthread_mutex_unlock(&h->st_mu);
    return SINTER_OK;
}

int sinter_raft_host_peer_stats(struct sinter_raft_host *h, sinter_raft_id peer,
                                struct sinter_raft_transport_stats *st)
{
    if (h == NULL || st == NULL) {
        return SINTER_EINVAL;
    }
    return sinter_raft_transport_stats(h->t, peer, st);
}

uint64_t sinter_raft_host_ticks(struct sinter_raft_host *h)
{
    return atomic_load_explicit(&h->ticks, memory_order_relaxed);
}

int sinter_raft_host_snap_write(struct sinter_raft_host_snap_writer *w, const void *data,
                                size_t len)
{
    return sinter_store_snap_write(w->w, data, len);
}

int sinter_raft_host_snap_read(struct sinter_raft_host_snap_reader *r, void *buf, size_t cap,
                               size_t *n)
{
    return sinter_store_snap_read(r->r, buf, cap, n);
}
