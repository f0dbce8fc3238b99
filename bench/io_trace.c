/*
 * io_trace — see io_trace.h. Every call goes to sinter_store_io_posix(); around it the wrapper
 * takes two clock readings and, for calls worth keeping, one record under a mutex. The store calls
 * its I/O table from the host's loop (log appends, rollovers, the meta file) and from the host's
 * helper threads (snapshot writer, spare zero-fill, garbage collection), so the table is shared.
 */
#include "io_trace.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define FD_MAX       4096
#define NAME_MAX_LEN 64
#define REC_CAP      (1u << 18)

/* The kind of the file this thread renamed last (IOK_UNLINKED after an unlink): a directory sync
 * follows a rename or unlinks on the same thread (snapshot helper, the loop's rollover of a spare
 * into a segment, the garbage helper), so it says whose directory sync it was. */
static _Thread_local int last_rename_kind = IOK_OTHER;

struct io_trace {
    struct sinter_store_io io; /* the table handed to the host; ctx = this */
    const struct sinter_store_io *px;
    pthread_mutex_t mu;
    char names[FD_MAX][NAME_MAX_LEN]; /* basename per open descriptor ("" = unknown), under mu */
    atomic_int kinds[FD_MAX];         /* kind_of(names[fd]), read without mu on every call */
    struct io_trace_rec *recs;
    uint64_t n, dropped;
};

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b != NULL ? b + 1 : path;
}

static int kind_of(const char *name)
{
    if (strncmp(name, "seg-", 4) == 0) {
        return IOK_SEG;
    }
    if (strncmp(name, "spare-", 6) == 0) {
        return IOK_SPARE;
    }
    if (strncmp(name, "snap-", 5) == 0) {
        return IOK_SNAP;
    }
    return IOK_OTHER;
}

static int fd_kind(struct io_trace *t, int fd)
{
    if (fd < 0 || fd >= FD_MAX) {
        return IOK_OTHER;
    }
    return atomic_load_explicit(&t->kinds[fd], memory_order_relaxed);
}

/* Keeps a record of op on kind that ran from t0 for dur ns. Called with t->mu NOT held. */
static void rec(struct io_trace *t, int op, int kind, uint64_t t0, uint64_t dur, size_t len)
{
    int via = op == IOT_SYNCDIR ? last_rename_kind : kind;
    if (kind == IOK_SEG && (op == IOT_WRITE || op == IOT_FDATASYNC || op == IOT_READ) &&
        dur < IO_TRACE_SEG_MIN_NS) {
        return; /* the log's many short writes: nothing to attribute */
    }
    if (op == IOT_READ && dur < IO_TRACE_SEG_MIN_NS) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    if (t->n < REC_CAP) {
        struct io_trace_rec *r = &t->recs[t->n++];
        r->t0 = t0;
        r->dur = dur;
        r->len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        r->op = (uint8_t)op;
        r->kind = (uint8_t)kind;
        r->via = (uint8_t)via;
    } else {
        t->dropped++;
    }
    pthread_mutex_unlock(&t->mu);
}

static int tr_open(void *ctx, const char *path, int flags, mode_t mode, int *fd)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->open(t->px->ctx, path, flags, mode, fd);
    uint64_t dur = bench_now_ns() - t0;
    const char *b = base_name(path);
    if (e == 0 && *fd >= 0 && *fd < FD_MAX) {
        pthread_mutex_lock(&t->mu);
        strncpy(t->names[*fd], b, NAME_MAX_LEN - 1);
        t->names[*fd][NAME_MAX_LEN - 1] = '\0';
        atomic_store_explicit(&t->kinds[*fd], kind_of(b), memory_order_relaxed);
        pthread_mutex_unlock(&t->mu);
    }
    if ((flags & O_CREAT) != 0) {
        rec(t, IOT_OPEN, kind_of(b), t0, dur, 0);
    }
    return e;
}

static int tr_close(void *ctx, int fd)
{
    struct io_trace *t = ctx;
    if (fd >= 0 && fd < FD_MAX) {
        pthread_mutex_lock(&t->mu);
        t->names[fd][0] = '\0';
        atomic_store_explicit(&t->kinds[fd], IOK_OTHER, memory_order_relaxed);
        pthread_mutex_unlock(&t->mu);
    }
    return t->px->close(t->px->ctx, fd);
}

static int tr_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->pwrite(t->px->ctx, fd, buf, len, off, done);
    rec(t, IOT_WRITE, fd_kind(t, fd), t0, bench_now_ns() - t0, len);
    return e;
}

static int tr_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->pread(t->px->ctx, fd, buf, len, off, done);
    rec(t, IOT_READ, fd_kind(t, fd), t0, bench_now_ns() - t0, len);
    return e;
}

static int tr_fdatasync(void *ctx, int fd)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->fdatasync(t->px->ctx, fd);
    rec(t, IOT_FDATASYNC, fd_kind(t, fd), t0, bench_now_ns() - t0, 0);
    return e;
}

static int tr_fsync(void *ctx, int fd)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->fsync(t->px->ctx, fd);
    rec(t, IOT_FSYNC, fd_kind(t, fd), t0, bench_now_ns() - t0, 0);
    return e;
}

static int tr_ftruncate(void *ctx, int fd, uint64_t len)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->ftruncate(t->px->ctx, fd, len);
    rec(t, IOT_FTRUNCATE, fd_kind(t, fd), t0, bench_now_ns() - t0, 0);
    return e;
}

static int tr_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->fallocate(t->px->ctx, fd, off, len);
    rec(t, IOT_FALLOCATE, fd_kind(t, fd), t0, bench_now_ns() - t0, 0);
    return e;
}

static int tr_filesize(void *ctx, int fd, uint64_t *size)
{
    struct io_trace *t = ctx;
    return t->px->filesize(t->px->ctx, fd, size);
}

static int tr_rename(void *ctx, const char *from, const char *to)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->rename(t->px->ctx, from, to);
    uint64_t dur = bench_now_ns() - t0;
    const char *bf = base_name(from), *bt = base_name(to);
    int kind = kind_of(bf);
    last_rename_kind = kind;
    if (e == 0) {
        /* A spare becomes a segment, a temporary snapshot its final name: follow the descriptor. */
        pthread_mutex_lock(&t->mu);
        for (int fd = 0; fd < FD_MAX; fd++) {
            if (t->names[fd][0] != '\0' && strcmp(t->names[fd], bf) == 0) {
                strncpy(t->names[fd], bt, NAME_MAX_LEN - 1);
                t->names[fd][NAME_MAX_LEN - 1] = '\0';
                atomic_store_explicit(&t->kinds[fd], kind_of(bt), memory_order_relaxed);
            }
        }
        pthread_mutex_unlock(&t->mu);
    }
    rec(t, IOT_RENAME, kind, t0, dur, 0);
    return e;
}

static int tr_unlink(void *ctx, const char *path)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->unlink(t->px->ctx, path);
    last_rename_kind = IOK_UNLINKED;
    rec(t, IOT_UNLINK, kind_of(base_name(path)), t0, bench_now_ns() - t0, 0);
    return e;
}

static int tr_mkdir(void *ctx, const char *path)
{
    struct io_trace *t = ctx;
    return t->px->mkdir(t->px->ctx, path);
}

static int tr_listdir(void *ctx, const char *path, int (*fn)(void *arg, const char *name),
                      void *arg)
{
    struct io_trace *t = ctx;
    return t->px->listdir(t->px->ctx, path, fn, arg);
}

static int tr_syncdir(void *ctx, const char *path)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->syncdir(t->px->ctx, path);
    rec(t, IOT_SYNCDIR, IOK_DIR, t0, bench_now_ns() - t0, 0);
    return e;
}

static int tr_writeback(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->writeback(t->px->ctx, fd, off, len);
    rec(t, IOT_WRITEBACK, fd_kind(t, fd), t0, bench_now_ns() - t0, (size_t)len);
    return e;
}

static int tr_writeback_wait(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->writeback_wait(t->px->ctx, fd, off, len);
    rec(t, IOT_WRITEBACK_WAIT, fd_kind(t, fd), t0, bench_now_ns() - t0, (size_t)len);
    return e;
}

static int tr_dontneed(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct io_trace *t = ctx;
    uint64_t t0 = bench_now_ns();
    int e = t->px->dontneed(t->px->ctx, fd, off, len);
    rec(t, IOT_DONTNEED, fd_kind(t, fd), t0, bench_now_ns() - t0, 0);
    return e;
}

struct io_trace *io_trace_new(const struct sinter_store_io **io)
{
    struct io_trace *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->recs = malloc(REC_CAP * sizeof *t->recs);
    if (t->recs == NULL) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    for (int fd = 0; fd < FD_MAX; fd++) {
        atomic_init(&t->kinds[fd], IOK_OTHER);
    }
    t->px = sinter_store_io_posix();
    t->io.ctx = t;
    t->io.open = tr_open;
    t->io.close = tr_close;
    t->io.pwrite = tr_pwrite;
    t->io.pread = tr_pread;
    t->io.fdatasync = tr_fdatasync;
    t->io.fsync = tr_fsync;
    t->io.ftruncate = tr_ftruncate;
    t->io.fallocate = tr_fallocate;
    t->io.filesize = tr_filesize;
    t->io.rename = tr_rename;
    t->io.unlink = tr_unlink;
    t->io.mkdir = tr_mkdir;
    t->io.listdir = tr_listdir;
    t->io.syncdir = tr_syncdir;
    /* Optional entries stay NULL where the POSIX table has none (the store then skips them). */
    t->io.writeback = t->px->writeback != NULL ? tr_writeback : NULL;
    t->io.writeback_wait = t->px->writeback_wait != NULL ? tr_writeback_wait : NULL;
    t->io.dontneed = t->px->dontneed != NULL ? tr_dontneed : NULL;
    *io = &t->io;
    return t;
}

void io_trace_free(struct io_trace *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_destroy(&t->mu);
    free(t->recs);
    free(t);
}

void io_trace_take(struct io_trace *t, struct io_trace_rec **recs, uint64_t *n, uint64_t *dropped)
{
    pthread_mutex_lock(&t->mu);
    *n = t->n;
    *dropped = t->dropped;
    *recs = malloc((t->n ? t->n : 1) * sizeof **recs);
    if (*recs != NULL) {
        memcpy(*recs, t->recs, t->n * sizeof **recs);
    } else {
        *n = 0;
    }
    t->n = 0;
    t->dropped = 0;
    pthread_mutex_unlock(&t->mu);
}

const char *io_trace_op_name(int op)
{
    switch (op) {
    case IOT_OPEN:
        return "create";
    case IOT_WRITE:
        return "write";
    case IOT_READ:
        return "read";
    case IOT_FDATASYNC:
        return "fdatasync";
    case IOT_FSYNC:
        return "fsync";
    case IOT_RENAME:
        return "rename";
    case IOT_UNLINK:
        return "unlink";
    case IOT_SYNCDIR:
        return "syncdir";
    case IOT_FALLOCATE:
        return "fallocate";
    case IOT_FTRUNCATE:
        return "ftruncate";
    case IOT_WRITEBACK:
        return "writeback";
    case IOT_WRITEBACK_WAIT:
        return "wb-wait";
    case IOT_DONTNEED:
        return "dontneed";
    default:
        return "?";
    }
}

const char *io_trace_kind_name(int kind)
{
    switch (kind) {
    case IOK_SEG:
        return "seg";
    case IOK_SPARE:
        return "spare";
    case IOK_SNAP:
        return "snap";
    case IOK_DIR:
        return "dir";
    default:
        return "other";
    }
}
