/*
 * A group whose store hits an I/O error (EIO on fdatasync, ENOSPC on a write) stops alone: the
 * host reports the error in that group's status, fails its pending and later requests with the
 * error, and keeps the other group (proposals, snapshots) and the process running. A restart
 * reopens the store, which recovers (sinter/raft_store.h: "close and reopen to recover").
 * And snapshot_now asked during a slow automatic snapshot waits for one that covers what it saw.
 * And a spare segment whose zero-fill fails (disk full) costs the group nothing: rollovers fall
 * back to fallocate; once the disk is back, rollovers rename the helper's spare.
 * And a damaged log found at a restart: a corrupt record in the middle of group 1's log stops
 * group 1 (SINTER_ECORRUPT, a message naming the file and offset) and only it; a torn last record
 * is cut off, reported through the log callback, and the group starts without it.
 *
 * A real single-node host (loop thread, store on real files under $TMPDIR, nng transport on a free
 * loopback port) with 2 groups; the fault comes from the host's store_io option: a layer over the
 * POSIX table that fails writes / syncs of files under group-1/ once armed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sinter/raft_host.h"
#include "sinter/raft_store.h"
#include "testproc.h"

#define MAX_FD  4096
#define WAIT_MS 30000

/* ---- the fault layer ------------------------------------------------------------------------ */

struct fio {
    struct sinter_store_io io;
    const struct sinter_store_io *in;
    atomic_bool marked[MAX_FD]; /* descriptors of files under group-1/ */
    atomic_int err;             /* 0: off; else the errno to fail with */
    atomic_int op;              /* 0: fdatasync / fsync, 1: pwrite */
    atomic_long hits;
    atomic_bool spare[MAX_FD]; /* descriptors of spare segments (spare-<n>.tmp) */
    atomic_int spare_err;      /* 0: off; else pwrite on spares fails with it */
    atomic_long spare_hits;    /* failed spare writes */
    atomic_long spare_renames; /* spare-<n>.tmp renamed to a segment: a rollover used it */
    /* What the fault tests (one_fault) rely on: their faults hit group 1's first, fallocate'd
     * segment through its buffered descriptor (pwrite + fdatasync), never a segment made from a
     * spare (whose descriptor keeps its spare mark across the rename) or an O_DIRECT one. */
    atomic_bool direct[MAX_FD]; /* descriptors opened with O_DIRECT */
    atomic_long spare_opens1;   /* spare files of group 1 created */
    atomic_long hits_off_path;  /* fault hits on a spare-made or O_DIRECT descriptor */
};

static struct fio g_fio;

static bool faulty(int fd, int op)
{
    bool hit = fd >= 0 && fd < MAX_FD && atomic_load(&g_fio.marked[fd]) &&
               atomic_load(&g_fio.err) != 0 && atomic_load(&g_fio.op) == op;
    if (hit && (atomic_load(&g_fio.spare[fd]) || atomic_load(&g_fio.direct[fd]))) {
        atomic_fetch_add(&g_fio.hits_off_path, 1);
    }
    return hit;
}

static int f_open(void *ctx, const char *path, int flags, mode_t mode, int *fd)
{
    (void)ctx;
    int e = g_fio.in->open(g_fio.in->ctx, path, flags, mode, fd);
    if (e == 0 && *fd >= 0 && *fd < MAX_FD) {
        atomic_store(&g_fio.marked[*fd], strstr(path, "/group-1/") != NULL);
        atomic_store(&g_fio.spare[*fd], strstr(path, "/spare-") != NULL);
        atomic_store(&g_fio.direct[*fd], (flags & O_DIRECT) != 0);
        if (strstr(path, "/group-1/spare-") != NULL) {
            atomic_fetch_add(&g_fio.spare_opens1, 1);
        }
    }
    return e;
}
static int f_close(void *ctx, int fd)
{
    (void)ctx;
    if (fd >= 0 && fd < MAX_FD) {
        atomic_store(&g_fio.marked[fd], false);
    }
    return g_fio.in->close(g_fio.in->ctx, fd);
}
static int f_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
    (void)ctx;
    if (faulty(fd, 1)) {
        atomic_fetch_add(&g_fio.hits, 1);
        return atomic_load(&g_fio.err);
    }
    if (fd >= 0 && fd < MAX_FD && atomic_load(&g_fio.spare[fd]) && atomic_load(&g_fio.spare_err)) {
        atomic_fetch_add(&g_fio.spare_hits, 1);
        return atomic_load(&g_fio.spare_err);
    }
    return g_fio.in->pwrite(g_fio.in->ctx, fd, buf, len, off, done);
}
static int f_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    (void)ctx;
    return g_fio.in->pread(g_fio.in->ctx, fd, buf, len, off, done);
}
static int f_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    if (faulty(fd, 0)) {
        atomic_fetch_add(&g_fio.hits, 1);
        return atomic_load(&g_fio.err);
    }
    return g_fio.in->fdatasync(g_fio.in->ctx, fd);
}
static int f_fsync(void *ctx, int fd)
{
    (void)ctx;
    if (faulty(fd, 0)) {
        atomic_fetch_add(&g_fio.hits, 1);
        return atomic_load(&g_fio.err);
    }
    return g_fio.in->fsync(g_fio.in->ctx, fd);
}
static int f_ftruncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    return g_fio.in->ftruncate(g_fio.in->ctx, fd, len);
}
static int f_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
    (void)ctx;
    return g_fio.in->fallocate(g_fio.in->ctx, fd, off, len);
}
static int f_filesize(void *ctx, int fd, uint64_t *size)
{
    (void)ctx;
    return g_fio.in->filesize(g_fio.in->ctx, fd, size);
}
static int f_rename(void *ctx, const char *from, const char *to)
{
    (void)ctx;
    int e = g_fio.in->rename(g_fio.in->ctx, from, to);
    if (e == 0 && strstr(from, "/spare-") != NULL && strstr(to, "/seg-") != NULL) {
        atomic_fetch_add(&g_fio.spare_renames, 1);
    }
    return e;
}
static int f_unlink(void *ctx, const char *path)
{
    (void)ctx;
    return g_fio.in->unlink(g_fio.in->ctx, path);
}
static int f_mkdir(void *ctx, const char *path)
{
    (void)ctx;
    return g_fio.in->mkdir(g_fio.in->ctx, path);
}
static int f_listdir(void *ctx, const char *path, int (*fn)(void *arg, const char *name), void *arg)
{
    (void)ctx;
    return g_fio.in->listdir(g_fio.in->ctx, path, fn, arg);
}
static int f_syncdir(void *ctx, const char *path)
{
    (void)ctx;
    return g_fio.in->syncdir(g_fio.in->ctx, path);
}

static void fio_init(void)
{
    memset(&g_fio, 0, sizeof g_fio);
    g_fio.in = sinter_store_io_posix();
    g_fio.io = (struct sinter_store_io){.ctx = &g_fio,
                                        .open = f_open,
                                        .close = f_close,
                                        .pwrite = f_pwrite,
                                        .pread = f_pread,
                                        .fdatasync = f_fdatasync,
                                        .fsync = f_fsync,
                                        .ftruncate = f_ftruncate,
                                        .fallocate = f_fallocate,
                                        .filesize = f_filesize,
                                        .rename = f_rename,
                                        .unlink = f_unlink,
                                        .mkdir = f_mkdir,
                                        .listdir = f_listdir,
                                        .syncdir = f_syncdir,
                                        .writeback = g_fio.in->writeback,
                                        .writeback_wait = g_fio.in->writeback_wait,
                                        .dontneed = g_fio.in->dontneed};
}

/* ---- a state machine: counts applied commands, snapshots the count -------------------------- */

struct sm {
    uint64_t applied_cmds; /* loop thread only */
};

static struct sm g_sm[2];

static int sm_apply(void *arg, uint32_t group, const struct sinter_raft_host_entry *e, size_t n)
{
    (void)group;
    struct sm *s = arg;
    for (size_t i = 0; i < n; i++) {
        s->applied_cmds += e[i].len > 0;
    }
    return SINTER_OK;
}
static void *sm_prepare(void *arg, uint32_t group, uint64_t index)
{
    (void)group;
    (void)index;
    struct sm *s = arg;
    uint64_t *c = malloc(sizeof *c);
    if (c != NULL) {
        *c = s->applied_cmds;
    }
    return c;
}
/* A closed gate holds every snapshot save of group 0 (on the host's helper thread) until the
 * test opens it, or for WAIT_MS at most: a slow disk, made deterministic. */
static atomic_bool g_save_gate_closed;
static atomic_int g_saves_started;

static int sm_save(void *arg, uint32_t group, void *copy, struct sinter_raft_host_snap_writer *w)
{
    (void)arg;
    if (group == 0) {
        atomic_fetch_add(&g_saves_started, 1);
        uint64_t until = sinter_test_now_ms() + WAIT_MS;
        while (atomic_load(&g_save_gate_closed) && sinter_test_now_ms() < until) {
            sinter_test_sleep_ms(5);
        }
    }
    return sinter_raft_host_snap_write(w, copy, sizeof(uint64_t));
}
static void sm_release(void *arg, uint32_t group, void *copy)
{
    (void)arg;
    (void)group;
    free(copy);
}
static int sm_load(void *arg, uint32_t group, uint64_t index,
                   struct sinter_raft_host_snap_reader *r)
{
    (void)group;
    (void)index;
    struct sm *s = arg;
    uint64_t v = 0;
    size_t n = 0;
    int rc = sinter_raft_host_snap_read(r, &v, sizeof v, &n);
    if (rc == SINTER_OK && n != sizeof v) {
        rc = SINTER_ECORRUPT;
    }
    if (rc == SINTER_OK) {
        s->applied_cmds = v;
    }
    return rc;
}
static void sm_fill(void *arg, uint32_t group, struct sinter_raft_host_sm *out)
{
    (void)arg;
    memset(out, 0, sizeof *out);
    out->apply = sm_apply;
    out->snapshot_prepare = sm_prepare;
    out->snapshot_save = sm_save;
    out->snapshot_release = sm_release;
    out->snapshot_load = sm_load;
    out->arg = &g_sm[group];
}

/* ---- completions ---------------------------------------------------------------------------- */

#define MAX_REQ 64

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, done;
    int rc[MAX_REQ];
    uint64_t index[MAX_REQ];
};

struct req {
    struct waiter *w;
    int i;
};

static void on_done(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    (void)leader;
    (void)url;
    struct req *r = arg;
    struct waiter *w = r->w;
    pthread_mutex_lock(&w->mu);
    w->rc[r->i] = rc;
    w->index[r->i] = index;
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_init(struct waiter *w, int n)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->n = n;
    for (int i = 0; i < n; i++) {
        w->rc[i] = -1;
    }
}

static void waiter_wait(struct waiter *w)
{
    uint64_t until = sinter_test_now_ms() + WAIT_MS;
    pthread_mutex_lock(&w->mu);
    while (w->done < w->n && sinter_test_now_ms() < until) {
        pthread_mutex_unlock(&w->mu);
        sinter_test_sleep_ms(5);
        pthread_mutex_lock(&w->mu);
    }
    int done = w->done;
    pthread_mutex_unlock(&w->mu);
    assert_int_equal(done, w->n);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/* Proposes n commands to group and waits for every completion. */
static void propose_n(struct sinter_raft_host *h, uint32_t group, int n, struct waiter *w)
{
    static struct req reqs[MAX_REQ];
    assert_true(n <= MAX_REQ);
    waiter_init(w, n);
    for (int i = 0; i < n; i++) {
        reqs[i] = (struct req){.w = w, .i = i};
        char cmd[32];
        int len = snprintf(cmd, sizeof cmd, "g%u-cmd-%d", group, i);
        assert_int_equal(sinter_raft_host_propose(h, group, cmd, (uint32_t)len, on_done, &reqs[i]),
                         SINTER_OK);
    }
    waiter_wait(w);
}

static int one_call(struct sinter_raft_host *h, uint32_t group, int kind, uint64_t *index)
{
    struct waiter w;
    struct req r = {.w = &w, .i = 0};
    waiter_init(&w, 1);
    int rc = kind == 0   ? sinter_raft_host_read(h, group, on_done, &r)
             : kind == 1 ? sinter_raft_host_call(h, group, on_done, &r)
                         : sinter_raft_host_snapshot_now(h, group, on_done, &r);
    assert_int_equal(rc, SINTER_OK);
    waiter_wait(&w);
    if (index != NULL) {
        *index = w.index[0];
    }
    return w.rc[0];
}

/* ---- the host ------------------------------------------------------------------------------- */

static char g_dir[256];
static char g_url[64];

/* What host_up does differently for the corruption tests (reset by test_begin). */
static uint64_t g_snap_every = 16;  /* 0: no snapshots, so the log alone holds every entry */
static uint32_t g_want_leaders = 3; /* bit g: wait until group g leads */

/* The host's log lines, kept for the tests that check what the store reported. */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[64 * 1024];
static size_t g_log_len;

static void test_log(void *arg, int level, uint32_t group, const char *msg)
{
    (void)arg;
    char line[1024];
    int n = snprintf(line, sizeof line, "[%d g%d] %s\n", level,
                     group == UINT32_MAX ? -1 : (int)group, msg);
    fputs(line, stderr);
    pthread_mutex_lock(&g_log_mu);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof line ? sizeof line - 1 : (size_t)n;
    if (g_log_len + len < sizeof g_log) {
        memcpy(g_log + g_log_len, line, len);
        g_log_len += len;
        g_log[g_log_len] = '\0';
    }
    pthread_mutex_unlock(&g_log_mu);
}

/* Whether a captured log line holds every one of the NULL-terminated strings. */
static bool log_has_line(const char *a, ...)
{
    bool found = false;
    pthread_mutex_lock(&g_log_mu);
    for (const char *l = g_log; !found && *l != '\0';) {
        const char *end = strchr(l, '\n');
        size_t len = end != NULL ? (size_t)(end - l) : strlen(l);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        found = true;
        va_list ap;
        va_start(ap, a);
        for (const char *w = a; w != NULL; w = va_arg(ap, const char *)) {
            found = found && strstr(line, w) != NULL;
        }
        va_end(ap);
        l += len + (end != NULL);
    }
    pthread_mutex_unlock(&g_log_mu);
    return found;
}

static struct sinter_raft_host *host_up(void)
{
    struct sinter_raft_host_opts o;
    sinter_raft_host_opts_default(&o);
    o.id = 1;
    o.listen_url = g_url;
    o.data_dir = g_dir;
    o.groups = 2;
    o.tick_ms = 10;
    o.bootstrap = true;
    o.snapshot_every = g_snap_every;
    o.snapshot_trailing = 4;
    o.segment_size = 64 * 1024;
    /* The faults below are meant for pwrite + fdatasync (they fail the n-th fdatasync). A new
     * segment's zeroed prefix (sinter/raft_store.h, options.zero_prefix) would send the first
     * entries direct, O_DSYNC, with no fdatasync to fail; without it those entries go into
     * fallocate'd space, buffered, as before the prefix. Direct I/O stays at its default, so
     * segments made from a spare still take the direct path. */
    o.store_zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
    o.store_io = &g_fio.io;
    o.sm = sm_fill;
    o.log_level = 1;
    o.log = test_log;
    struct sinter_raft_host *h = NULL;
    assert_int_equal(sinter_raft_host_start(&h, &o), SINTER_OK);
    /* A single voter elects itself after one election timeout. */
    uint64_t until = sinter_test_now_ms() + WAIT_MS;
    for (;;) {
        struct sinter_raft_host_status s0, s1;
        assert_int_equal(sinter_raft_host_status(h, 0, &s0), SINTER_OK);
        assert_int_equal(sinter_raft_host_status(h, 1, &s1), SINTER_OK);
        if ((s0.role == SINTER_RAFT_LEADER || (g_want_leaders & 1u) == 0) &&
            (s1.role == SINTER_RAFT_LEADER || (g_want_leaders & 2u) == 0)) {
            break;
        }
        assert_true(sinter_test_now_ms() < until);
        sinter_test_sleep_ms(10);
    }
    return h;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void one_fault(int err, int op)
{
    fio_init();
    memset(g_sm, 0, sizeof g_sm);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/raft-host-faults-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(g_dir));
    int port = sinter_test_free_port();
    assert_true(port > 0);
    snprintf(g_url, sizeof g_url, "tcp://127.0.0.1:%d", port);
    struct sinter_raft_host *h = host_up();
    struct waiter w;
    for (uint32_t g = 0; g < 2; g++) {
        propose_n(h, g, 20, &w);
        for (int i = 0; i < 20; i++) {
            assert_int_equal(w.rc[i], SINTER_OK);
        }
    }

    /* Group 1's disk fails. Every one of its proposals in flight fails with the error. The fault
     * is meant for pwrite + fdatasync into the first, fallocate'd segment (no zeroed prefix, see
     * host_up): 20 small entries stay
     * below segment_size / 64, so no spare is wanted (sinter_store_spare_want), no rollover into
     * one happens and no direct write; asserted below, so that larger entries or a smaller
     * threshold cannot quietly move the fault onto another path. */
    assert_int_equal(atomic_load(&g_fio.spare_opens1), 0);
    atomic_store(&g_fio.op, op);
    atomic_store(&g_fio.err, err);
    int want = err == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
    propose_n(h, 1, 30, &w);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(w.rc[i], want);
    }
    assert_true(atomic_load(&g_fio.hits) >= 1);
    assert_int_equal(atomic_load(&g_fio.hits_off_path), 0);
    assert_int_equal(atomic_load(&g_fio.spare_opens1), 0);
    struct sinter_raft_host_status st;
    assert_int_equal(sinter_raft_host_status(h, 1, &st), SINTER_OK);
    assert_int_equal(st.error, want);
    assert_true(strlen(st.error_msg) > 0);
    printf("# group 1 stopped: %s (%s)\n", st.error_msg, sinter_errname(st.error));
    /* ... and every later request to it, of every kind. */
    propose_n(h, 1, 3, &w);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w.rc[i], want);
    }
    assert_int_equal(one_call(h, 1, 0, NULL), want);
    assert_int_equal(one_call(h, 1, 1, NULL), want);
    assert_int_equal(one_call(h, 1, 2, NULL), want);

    /* Group 0 and the process are unaffected: proposals commit, snapshots are taken. */
    struct sinter_raft_host_status before;
    assert_int_equal(sinter_raft_host_status(h, 0, &before), SINTER_OK);
    propose_n(h, 0, 40, &w);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    uint64_t snap_index = 0;
    assert_int_equal(one_call(h, 0, 2, &snap_index), SINTER_OK);
    uint64_t applied = 0;
    assert_int_equal(one_call(h, 0, 1, &applied), SINTER_OK);
    assert_int_equal(snap_index, applied);
    assert_int_equal(one_call(h, 0, 0, NULL), SINTER_OK);
    assert_int_equal(sinter_raft_host_status(h, 0, &st), SINTER_OK);
    assert_int_equal(st.error, SINTER_OK);
    assert_int_equal(st.role, SINTER_RAFT_LEADER);
    assert_true(st.commit >= before.commit + 40);
    assert_true(st.snapshots_taken > before.snapshots_taken);
    assert_int_equal(g_sm[0].applied_cmds, 60); /* read after the host's callbacks ran */
    sinter_raft_host_stop(h);

    /* The disk is back: a restart reopens group 1's store, which recovers what was durable. */
    atomic_store(&g_fio.err, 0);
    memset(g_sm, 0, sizeof g_sm);
    h = host_up();
    assert_int_equal(sinter_raft_host_status(h, 1, &st), SINTER_OK);
    assert_int_equal(st.error, SINTER_OK);
    assert_int_equal(one_call(h, 0, 0, NULL), SINTER_OK); /* group 0 replayed its log */
    propose_n(h, 1, 5, &w);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    assert_int_equal(one_call(h, 1, 0, NULL), SINTER_OK); /* applied caught up with commit */
    /* The 20 acknowledged before the fault survived; of the failed ones, only entries that made
     * it to the disk anyway may come back (their outcome was reported as unknown-by-error). */
    assert_true(g_sm[1].applied_cmds >= 25);
    assert_true(g_sm[1].applied_cmds <= 20 + 30 + 5);
    assert_int_equal(g_sm[0].applied_cmds, 60);
    sinter_raft_host_stop(h);
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* snapshot_now asked while an automatic snapshot is still being written is answered by a snapshot
 * that covers every entry applied when it asked, not by the older one in progress (which the
 * host used to hand back: snapshot 22 for a request made at applied 62, seen under ASan when
 * the automatic snapshot's fsync was slow). */
static void snapshot_now_not_answered_by_an_older_one(void **state)
{
    (void)state;
    fio_init();
    memset(g_sm, 0, sizeof g_sm);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/raft-host-snapnow-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(g_dir));
    int port = sinter_test_free_port();
    assert_true(port > 0);
    snprintf(g_url, sizeof g_url, "tcp://127.0.0.1:%d", port);
    atomic_store(&g_saves_started, 0);
    atomic_store(&g_save_gate_closed, true);
    struct sinter_raft_host *h = host_up();
    struct waiter w;
    /* 20 entries: an automatic snapshot (every 16) starts and is held in its save. */
    propose_n(h, 0, 20, &w);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    uint64_t until = sinter_test_now_ms() + WAIT_MS;
    while (atomic_load(&g_saves_started) == 0 && sinter_test_now_ms() < until) {
        sinter_test_sleep_ms(5);
    }
    assert_int_equal(atomic_load(&g_saves_started), 1);
    /* More entries, then snapshot_now while that snapshot is still being saved. */
    propose_n(h, 0, 20, &w);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    static struct waiter sw;
    static struct req sr = {.w = &sw, .i = 0};
    waiter_init(&sw, 1);
    assert_int_equal(sinter_raft_host_snapshot_now(h, 0, on_done, &sr), SINTER_OK);
    uint64_t applied = 0;
    assert_int_equal(one_call(h, 0, 1, &applied), SINTER_OK); /* after the request, in order */
    assert_int_equal(atomic_load(&g_saves_started), 1);       /* the old save is still held */
    atomic_store(&g_save_gate_closed, false);
    waiter_wait(&sw);
    assert_int_equal(sw.rc[0], SINTER_OK);
    if (sw.index[0] < applied) {
        fail_msg("snapshot_now asked at applied index %llu answered with snapshot %llu",
                 (unsigned long long)applied, (unsigned long long)sw.index[0]);
    }
    assert_int_equal(atomic_load(&g_saves_started), 2); /* a second snapshot was taken for it */
    sinter_raft_host_stop(h);
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Proposes to group 0 in rounds of MAX_REQ until *counter reaches want (at most 400 rounds, about
 * 9 segments of 64 KiB); every proposal must commit. Returns the commands proposed. */
static int propose_until(struct sinter_raft_host *h, atomic_long *counter, long want)
{
    struct waiter w;
    int total = 0;
    for (int round = 0; round < 400 && atomic_load(counter) < want; round++) {
        propose_n(h, 0, MAX_REQ, &w);
        for (int i = 0; i < MAX_REQ; i++) {
            assert_int_equal(w.rc[i], SINTER_OK);
        }
        total += MAX_REQ;
    }
    assert_true(atomic_load(counter) >= want);
    return total;
}

static void spare_failure_falls_back_then_spares_are_used(void **state)
{
    (void)state;
    fio_init();
    memset(g_sm, 0, sizeof g_sm);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/raft-host-faults-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(g_dir));
    int port = sinter_test_free_port();
    assert_true(port > 0);
    snprintf(g_url, sizeof g_url, "tcp://127.0.0.1:%d", port);
    /* Disk full for the zero-fill only: two failed jobs mean a rollover happened in between (one
     * attempt per segment), which therefore used fallocate; the group never stops. */
    atomic_store(&g_fio.spare_err, ENOSPC);
    struct sinter_raft_host *h = host_up();
    int total = propose_until(h, &g_fio.spare_hits, 2);
    assert_int_equal(atomic_load(&g_fio.spare_renames), 0);
    struct sinter_raft_host_status st;
    assert_int_equal(sinter_raft_host_status(h, 0, &st), SINTER_OK);
    assert_int_equal(st.error, SINTER_OK);
    assert_int_equal(st.role, SINTER_RAFT_LEADER);
    /* Space again: the helper's spares become the next segments. */
    atomic_store(&g_fio.spare_err, 0);
    total += propose_until(h, &g_fio.spare_renames, 2);
    assert_int_equal(sinter_raft_host_status(h, 0, &st), SINTER_OK);
    assert_int_equal(st.error, SINTER_OK);
    assert_int_equal(one_call(h, 0, 0, NULL), SINTER_OK);
    assert_int_equal(g_sm[0].applied_cmds, (uint64_t)total);
    sinter_raft_host_stop(h);
    /* Everything acknowledged is there after a restart (segments made from spares included). */
    memset(g_sm, 0, sizeof g_sm);
    h = host_up();
    assert_int_equal(one_call(h, 0, 0, NULL), SINTER_OK);
    assert_int_equal(g_sm[0].applied_cmds, (uint64_t)total);
    sinter_raft_host_stop(h);
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- a damaged log on restart --------------------------------------------------------------- */

/* One record of a segment file, as raft/store/internal.h lays it out: a 32-byte header (version,
 * type, data length at 4, term at 8, index at 16), the data, zero padding to a multiple of 8. */
struct seg_rec {
    uint64_t off;
    uint32_t len;
    uint64_t index;
    uint8_t type;
};

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads the records of path from the 32-byte segment header on, until the zeros that end the
 * log; fills at most max of them and returns how many. */
static size_t seg_records(const char *path, struct seg_rec *out, size_t max)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    uint8_t *b = malloc((size_t)sb.st_size);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, (size_t)sb.st_size, 0), sb.st_size);
    close(fd);
    size_t n = 0;
    uint64_t off = 32, sz = (uint64_t)sb.st_size;
    while (n < max && off + 32 <= sz && b[off] == 1) {
        uint32_t len = le32_at(b + off + 4);
        if (off + 32 + len > sz) {
            break;
        }
        out[n++] =
            (struct seg_rec){.off = off,
                             .len = len,
                             .index = le32_at(b + off + 16) | (uint64_t)le32_at(b + off + 20) << 32,
                             .type = b[off + 1]};
        off += 32 + ((len + 7u) & ~7u);
    }
    free(b);
    return n;
}

/* Names group 1's segment files: the first (sorted) one into first, the last into last. */
static void group1_segments(char *first, char *last, size_t cap)
{
    char dir[320];
    snprintf(dir, sizeof dir, "%s/group-1", g_dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    char lo[64] = "", hi[64] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "seg-", 4) != 0) {
            continue;
        }
        if (lo[0] == '\0' || strcmp(e->d_name, lo) < 0) {
            snprintf(lo, sizeof lo, "%.63s", e->d_name);
        }
        if (hi[0] == '\0' || strcmp(e->d_name, hi) > 0) {
            snprintf(hi, sizeof hi, "%.63s", e->d_name);
        }
    }
    closedir(d);
    assert_true(lo[0] != '\0');
    snprintf(first, cap, "%s", lo);
    snprintf(last, cap, "%s", hi);
}

static void overwrite(const char *name, uint64_t off, const void *buf, size_t len)
{
    char path[400];
    snprintf(path, sizeof path, "%s/group-1/%s", g_dir, name);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* A fresh data dir and port; group 1 gets 10 rounds of 3 commands, each round a separate batch
 * (propose_n waits for its round), group 0 gets 5; then the host stops cleanly. No snapshots, so
 * the log alone holds every entry and what is applied after a restart comes from it. */
static void damage_setup(const char *name)
{
    fio_init();
    memset(g_sm, 0, sizeof g_sm);
    pthread_mutex_lock(&g_log_mu);
    g_log_len = 0;
    g_log[0] = '\0';
    pthread_mutex_unlock(&g_log_mu);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/%s-XXXXXX", tmp != NULL ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(g_dir));
    int port = sinter_test_free_port();
    assert_true(port > 0);
    snprintf(g_url, sizeof g_url, "tcp://127.0.0.1:%d", port);
    g_snap_every = 0;
    g_want_leaders = 3;
    struct sinter_raft_host *h = host_up();
    struct waiter w;
    for (int round = 0; round < 10; round++) {
        propose_n(h, 1, 3, &w);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(w.rc[i], SINTER_OK);
        }
    }
    propose_n(h, 0, 5, &w);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    assert_int_equal(one_call(h, 1, 0, NULL), SINTER_OK);
    assert_int_equal(g_sm[1].applied_cmds, 30);
    sinter_raft_host_stop(h);
    memset(g_sm, 0, sizeof g_sm);
}

static void damage_teardown(void)
{
    g_snap_every = 16;
    g_want_leaders = 3;
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Group 0 is unaffected by group 1's damage: it replayed its 5 commands and takes more. */
static void group0_still_works(struct sinter_raft_host *h)
{
    struct waiter w;
    propose_n(h, 0, 5, &w);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    assert_int_equal(one_call(h, 0, 0, NULL), SINTER_OK);
    struct sinter_raft_host_status st;
    assert_int_equal(sinter_raft_host_status(h, 0, &st), SINTER_OK);
    assert_int_equal(st.error, SINTER_OK);
    assert_int_equal(g_sm[0].applied_cmds, 10);
}

/* A flipped byte in the data of an early record of group 1, with later batches after it, is
 * damage to durable (committed) entries, not a torn write: the store refuses to open, and the
 * host keeps group 1 stopped with SINTER_ECORRUPT and a message naming the segment file and the
 * record's offset, fails every request to it with that error, applies none of its entries, and
 * keeps group 0 serving. */
static void corrupt_log_middle_fails_group_with_message(void **state)
{
    (void)state;
    damage_setup("raft-host-corrupt");
    char first[64], last[64], path[400];
    group1_segments(first, last, sizeof first);
    snprintf(path, sizeof path, "%s/group-1/%s", g_dir, first);
    struct seg_rec recs[256];
    size_t n = seg_records(path, recs, 256);
    size_t k = 0;
    while (k < n && (recs[k].type != SINTER_RAFT_ENTRY_NORMAL || recs[k].len == 0)) {
        k++;
    }
    assert_true(k < n);
    assert_true(n - k >= 10); /* later rounds (batches) follow the damaged record */
    uint8_t byte;
    uint64_t at = recs[k].off + 32 + recs[k].len / 2; /* inside its data, not the padding */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, (off_t)at), 1);
    close(fd);
    byte ^= 0x5a;
    overwrite(first, at, &byte, 1);
    printf("# flipped a byte of index %llu (record at offset %llu of %s)\n",
           (unsigned long long)recs[k].index, (unsigned long long)recs[k].off, first);

    g_want_leaders = 1; /* group 1 never leads again */
    struct sinter_raft_host *h = host_up();
    struct sinter_raft_host_status st;
    assert_int_equal(sinter_raft_host_status(h, 1, &st), SINTER_OK);
    printf("# group 1: %s (%s)\n", st.error_msg, sinter_errname(st.error));
    assert_int_equal(st.error, SINTER_ECORRUPT);
    char where[64];
    snprintf(where, sizeof where, "offset %llu", (unsigned long long)recs[k].off);
    assert_non_null(strstr(st.error_msg, first));
    assert_non_null(strstr(st.error_msg, where));
    assert_true(log_has_line("group stopped", first, where, NULL));
    assert_int_equal(st.applied, 0);

    /* Every request to group 1 fails with the error, none succeeds or hangs. */
    struct waiter w;
    propose_n(h, 1, 3, &w);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w.rc[i], SINTER_ECORRUPT);
    }
    assert_int_equal(one_call(h, 1, 0, NULL), SINTER_ECORRUPT);
    assert_int_equal(one_call(h, 1, 1, NULL), SINTER_ECORRUPT);
    group0_still_works(h);
    /* Nothing of group 1's log reached its state machine (no snapshot, so nothing at all). */
    assert_int_equal(g_sm[1].applied_cmds, 0);
    sinter_raft_host_stop(h);
    damage_teardown();
}

/* The last record of group 1's log torn (its second half zeros, as a write cut short by a crash
 * leaves it): the store cuts it off and says so, the group starts without it, takes new
 * proposals, and its state machine gets every command but the torn one. */
static void torn_log_tail_is_cut_and_reported(void **state)
{
    (void)state;
    damage_setup("raft-host-torn");
    char first[64], last[64], path[400];
    group1_segments(first, last, sizeof first);
    snprintf(path, sizeof path, "%s/group-1/%s", g_dir, last);
    struct seg_rec recs[256];
    size_t n = seg_records(path, recs, 256);
    assert_true(n >= 2);
    struct seg_rec *r = &recs[n - 1];
    assert_int_equal(r->type, SINTER_RAFT_ENTRY_NORMAL);
    uint8_t zeros[64] = {0};
    uint64_t end = r->off + 32 + ((r->len + 7u) & ~7u);
    assert_true(end - (r->off + 16) <= sizeof zeros);
    overwrite(last, r->off + 16, zeros, (size_t)(end - (r->off + 16)));
    printf("# tore index %llu (record at offset %llu of %s)\n", (unsigned long long)r->index,
           (unsigned long long)r->off, last);

    struct sinter_raft_host *h = host_up();
    struct sinter_raft_host_status st;
    assert_int_equal(sinter_raft_host_status(h, 1, &st), SINTER_OK);
    assert_int_equal(st.error, SINTER_OK);
    char where[64], ends[64];
    snprintf(where, sizeof where, "at offset %llu", (unsigned long long)r->off);
    snprintf(ends, sizeof ends, "the log ends at index %llu", (unsigned long long)r->index - 1);
    assert_true(log_has_line("store: ", last, where, "torn or corrupt tail", ends, NULL));

    assert_int_equal(one_call(h, 1, 0, NULL), SINTER_OK);
    assert_int_equal(g_sm[1].applied_cmds, 29); /* all but the torn one */
    struct waiter w;
    propose_n(h, 1, 3, &w);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w.rc[i], SINTER_OK);
    }
    assert_int_equal(one_call(h, 1, 0, NULL), SINTER_OK);
    assert_int_equal(g_sm[1].applied_cmds, 32);
    group0_still_works(h);
    sinter_raft_host_stop(h);
    damage_teardown();
}

static void eio_on_fdatasync_stops_only_that_group(void **state)
{
    (void)state;
    one_fault(EIO, 0);
}

static void enospc_on_write_stops_only_that_group(void **state)
{
    (void)state;
    one_fault(ENOSPC, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eio_on_fdatasync_stops_only_that_group),
        cmocka_unit_test(enospc_on_write_stops_only_that_group),
        cmocka_unit_test(snapshot_now_not_answered_by_an_older_one),
        cmocka_unit_test(spare_failure_falls_back_then_spares_are_used),
        cmocka_unit_test(corrupt_log_middle_fails_group_with_message),
        cmocka_unit_test(torn_log_tail_is_cut_and_reported),
    };
    return cmocka_run_group_tests_name("raft_host_faults", tests, NULL, NULL);
}
