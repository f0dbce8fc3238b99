/*
 * The spare segment (raft_store.h, "Spare segment"): a file "spare-<n>.tmp" of the segment size
 * whose every byte a helper thread wrote with zeros and synced, so that appends into the segment
 * it becomes overwrite written blocks and their fdatasync flushes data only. Writing into space
 * reserved by fallocate (unwritten extents) makes every fdatasync also commit ext4's journal for
 * the extent conversion, which costs ~30% per append when three nodes share a disk
 * (bench/FINDINGS.md F5). PostgreSQL pre-zeroes WAL segments (XLogFileInit) for the same reason,
 * and etcd's WAL pre-creates its next file in a goroutine (filePipeline).
 *
 * Threads: a job copies what it needs from the store (I/O table, path, size) when it is handed
 * out, so sinter_store_spare_make() never touches the store; the store's state changes only in
 * want / put / take, on the store's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

/* Zeros per pwrite: small, because a log fdatasync that arrives while a chunk is on its way to the
 * disk waits for it (1 MiB chunks raised raft-bench's C=64 p99 from ~2.3 to ~4 ms). */
#define SPARE_CHUNK (128u << 10)

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps ns (at most 1 s): the zero-fill's rests, which leave the disk to the log. */
static void pause_ns(uint64_t ns)
{
    if (ns > 1000000000u) {
        ns = 1000000000u;
    }
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

struct sinter_store_spare {
    const struct sinter_store *owner; /* compared in put, never dereferenced by make */
    uint64_t job;                     /* the store's spare_jobs when handed out */
    const struct sinter_store_io *io;
    void *ctx;
    uint64_t size;
    int fd;
    int rc;
    bool made;
    atomic_bool cancel;
    char name[40];
    char path[STORE_PATH_MAX];
    /* A compacted segment to zero over instead of a new file (seg_hold in log.c), "" if none;
     * renamed to path by make, so the job owns it from want on. */
    char recycle[STORE_PATH_MAX];
    uint64_t discards;        /* the store's discards at want: the kept segment preceded the log */
    char dir[STORE_PATH_MAX]; /* the store's directory, synced after the recycle's rename */
    char err[STORE_ERRMSG_SIZE];
};

struct sinter_store_spare *sinter_store_spare_want(struct sinter_store *s)
{
    /* No spare before 1/64 of a segment was appended since open: a group that (nearly) never
     * writes, an idle shard or a test cluster that runs a few transactions, must not cost a
     * segment's worth of zeros on every start; a busy one passes it within a second. With a zeroed
     * prefix (options.zero_prefix, 1/64 of a segment by default) the spare is wanted at half of
     * it instead: wanted only when the prefix runs out, appends would pay the extent conversion
     * for the whole zero-fill (seconds); the other half is the helper's head start. After a
     * restart only one chunk was zeroed (zero_open): half of that, or appends would leave the
     * prefix long before the spare is asked for. Never below 64 KiB (or 1/64 of a small
     * segment): a tiny zero_prefix must not bring back a spare per group per restart. */
    uint64_t want_at = s->opts.segment_size / 64u;
    uint64_t zp = s->zero_open > 0 && s->zero_open < s->zero_prefix ? s->zero_open : s->zero_prefix;
    if (zp > 0 && zp / 2u < want_at) {
        want_at = zp / 2u;
    }
    uint64_t floor =
        s->opts.segment_size / 64u < (64u << 10) ? s->opts.segment_size / 64u : 64u << 10;
    if (want_at < floor) {
        want_at = floor;
    }
    if (s->failed != 0 || s->spare_fd >= 0 || s->spare_out || s->spare_failed ||
        s->appended < want_at) {
        return NULL;
    }
    /* A pre-zeroed last segment that is less than half full does not need its successor yet:
     * made right after the rollover into the previous spare, the next one's zeros would compete
     * with the log for the disk for nothing (raft-bench: C=1 max 150-250 ms while three nodes
     * zero-filled at once); made at half full, it still has half a segment's time to finish. */
    if (s->nsegs > 0) {
        const struct store_seg *g = &s->segs[s->nsegs - 1];
        if (g->zeroed_to >= g->size && g->size - g->end > g->size / 2) {
            return NULL;
        }
    }
    struct sinter_store_spare *j = calloc(1, sizeof *j);
    if (j == NULL) {
        return NULL;
    }
    j->owner = s;
    j->job = ++s->spare_jobs;
    j->io = s->io;
    j->ctx = s->ctx;
    j->size = s->opts.segment_size;
    j->fd = -1;
    atomic_init(&j->cancel, false);
    snprintf(j->name, sizeof j->name, "spare-%" PRIu64 ".tmp", ++s->spare_seq);
    sinter_rs_path(s, j->path, j->name);
    if (s->recycle_name[0] != '\0') {
        sinter_rs_path(s, j->recycle, s->recycle_name);
        snprintf(j->dir, sizeof j->dir, "%s", s->dir);
        j->discards = s->discards;
        s->recycle_name[0] = '\0';
    }
    s->spare_out = true;
    return j;
}

static int spare_err(struct sinter_store_spare *j, int e, const char *what)
{
    char ebuf[80];
    const char *es = strerror_r(e, ebuf, sizeof ebuf);
    snprintf(j->err, sizeof j->err, "raft store: %s spare segment %.360s: %s (errno %d)", what,
             j->path, es, e);
    return e == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
}

/* Makes the job's file out of the compacted segment it was given (seg_hold in log.c): renamed to
 * the spare's name, the rename made durable, and opened at the segment size. Its blocks are
 * allocated and written already, so zeroing over them needs no reservation, and its removal costs
 * no discard. Once the rename is durable it is a *.tmp file like any spare: a crash leaves nothing
 * that open() reads. The directory sync must come before the first zero: the zeros reach the disk
 * within milliseconds (sync_file_range, then fsync) while a rename is durable only at the next
 * journal commit, which appends into pre-zeroed segments do not force (on ext4 up to 5 s later).
 * A power cut in between left the old name over zeroed or half-zeroed records, and open() refused
 * to start: "invalid header", or a CRC mismatch before a later segment (found by review; the test
 * recycled_segment_power_cut_anywhere). Returns false when there is none or it cannot be used
 * (then a new file is made, as without one; a segment that could not be renamed is an old prefix
 * the snapshot covers: unlinked now, else removed by open(); one whose rename could not be synced
 * is unlinked under either name, untouched until then). */
static bool recycle_open(struct sinter_store_spare *j)
{
    if (j->recycle[0] == '\0') {
        return false;
    }
    int e = j->io->rename(j->ctx, j->recycle, j->path);
    if (e != 0) {
        (void)j->io->unlink(j->ctx, j->recycle);
        j->recycle[0] = '\0';
        return false;
    }
    j->recycle[0] = '\0';
    uint64_t size = 0;
    e = j->io->syncdir(j->ctx, j->dir);
    if (e == 0) {
        e = j->io->open(j->ctx, j->path, O_RDWR, 0, &j->fd);
    }
    if (e != 0) {
        j->fd = -1;
    } else {
        e = j->io->filesize(j->ctx, j->fd, &size);
        if (e == 0 && size != j->size) {
            e = j->io->ftruncate(j->ctx, j->fd, j->size);
        }
    }
    if (e != 0) {
        if (j->fd >= 0) {
            j->io->close(j->ctx, j->fd);
            j->fd = -1;
        }
        (void)j->io->unlink(j->ctx, j->path);
        return false;
    }
    return true;
}

int sinter_store_spare_make(struct sinter_store_spare *j)
{
    if (j->made || j->rc != SINTER_OK) {
        return j->rc;
    }
    if (atomic_load_explicit(&j->cancel, memory_order_relaxed)) {
        /* Cancelled before it began (a close): the kept segment is not renamed, so put gives it
         * back to the store instead of it being unlinked as a half-made spare. */
        snprintf(j->err, sizeof j->err, "raft store: spare segment %.400s cancelled", j->path);
        j->rc = SINTER_ECANCELED;
        return j->rc;
    }
    uint8_t *zeros = calloc(1, SPARE_CHUNK);
    if (zeros == NULL) {
        snprintf(j->err, sizeof j->err, "raft store: no memory to zero-fill %.400s", j->path);
        j->rc = SINTER_ENOMEM;
        return j->rc;
    }
    const char *what = "create";
    int rc = SINTER_OK;
    int e = 0;
    if (!recycle_open(j)) {
        e = j->io->open(j->ctx, j->path, O_RDWR | O_CREAT | O_TRUNC, 0644, &j->fd);
        if (e != 0) {
            j->fd = -1;
        } else {
            /* Reserve first: a full disk shows here, before a single zero is written, and the
             * blocks come in few extents. */
            what = "preallocate";
            e = j->io->fallocate(j->ctx, j->fd, 0, j->size);
            if (e == EOPNOTSUPP || e == ENOSYS) {
                e = j->io->ftruncate(j->ctx, j->fd, j->size);
            }
        }
    }
    uint64_t off = 0;
    uint64_t waited = 0; /* chunks before this offset are on the device */
    while (e == 0 && off < j->size) {
        if (atomic_load_explicit(&j->cancel, memory_order_relaxed)) {
            snprintf(j->err, sizeof j->err, "raft store: zero-filling %.400s cancelled", j->path);
            rc = SINTER_ECANCELED;
            break;
        }
        size_t len = j->size - off < SPARE_CHUNK ? (size_t)(j->size - off) : SPARE_CHUNK;
        size_t done = 0;
        uint64_t t0 = mono_ns();
        what = "zero-fill";
        e = j->io->pwrite(j->ctx, j->fd, zeros, len, off, &done);
        if (e == 0 && done == 0) {
            e = EIO; /* a zero-length write would loop forever */
        }
        uint64_t start = off;
        off += done;
        /* Pace the zeros to the disk: start writing this chunk back and wait for the previous
         * one, so at most two chunks are queued ahead of the log's own writes. Left to the page
         * cache, a whole segment of dirty zeros reached the device at once and a log fdatasync
         * waited behind it for 150-180 ms (raft-bench C=1 max); and a final fsync with everything
         * still dirty is the same flood (the snapshot writer's rule, STORE_SNAP_WRITEBACK). */
        if (e == 0 && j->io->writeback != NULL) {
            (void)j->io->writeback(j->ctx, j->fd, start, off - start);
        }
        if (e == 0 && j->io->writeback_wait != NULL && start > waited) {
            /* Checked: sync_file_range reports a write-back error once and advances this file
             * description's error cursor past it (file_check_and_advance_wb_err), so the final
             * fsync would return 0 and a failed zero-fill would pass as a spare (PostgreSQL's
             * "fsyncgate"). Only "not supported here" is ignored: pacing is then lost, nothing
             * else. */
            int we = j->io->writeback_wait(j->ctx, j->fd, waited, start - waited);
            if (we != 0 && we != EINVAL && we != ENOSYS && we != EOPNOTSUPP && we != ESPIPE) {
                e = we;
                what = "write back the zeros of";
            }
            waited = start;
        }
        /* ... and rest twice as long as the chunk took: at most a third of the disk's time goes
         * to zeros (a segment is needed only when the current one is full, and the spare is
         * asked for at half full, so the zero-fill keeps up while the log writes below about a
         * sixth of the disk's bandwidth, ~80 MB/s here against the 14 MB/s of raft-bench at
         * C=64; beyond that the rollover falls back to fallocate). */
        if (e == 0 && off < j->size) {
            pause_ns(2 * (mono_ns() - t0));
        }
    }
    if (e == 0 && rc == SINTER_OK) {
        /* fsync, not fdatasync: the size and the (now written) extents must be durable too, so
         * that the rollover only has the header to sync. */
        what = "fsync";
        e = j->io->fsync(j->ctx, j->fd);
        if (e == 0 && j->io->dontneed != NULL) {
            /* The zeros are on the disk: drop their clean pages, so a segment's worth of zero
             * pages does not push useful data out of the page cache. Advice only. */
            (void)j->io->dontneed(j->ctx, j->fd, 0, j->size);
        }
    }
    free(zeros);
    if (e != 0) {
        rc = spare_err(j, e, what);
    }
    if (rc != SINTER_OK) {
        if (j->fd >= 0) {
            j->io->close(j->ctx, j->fd);
            j->fd = -1;
            (void)j->io->unlink(j->ctx, j->path); /* else open() removes it (*.tmp) */
        }
        j->rc = rc;
        return rc;
    }
    j->made = true;
    return SINTER_OK;
}

const char *sinter_store_spare_errmsg(const struct sinter_store_spare *j)
{
    return j->err;
}

void sinter_store_spare_cancel(struct sinter_store_spare *j)
{
    if (j != NULL) {
        atomic_store_explicit(&j->cancel, true, memory_order_relaxed);
    }
}

void sinter_store_spare_abandon(struct sinter_store_spare *j)
{
    if (j == NULL) {
        return;
    }
    if (j->fd >= 0) {
        j->io->close(j->ctx, j->fd);
        (void)j->io->unlink(j->ctx, j->path);
    }
    if (j->recycle[0] != '\0') {
        (void)j->io->unlink(j->ctx, j->recycle); /* never made: the segment it was to reuse */
    }
    free(j);
}

/* A job that never renamed its kept segment (never run: no thread, no memory, cancelled first)
 * hands it back, so that the next job recycles it rather than abandon unlinking it here, on the
 * store's thread, with the discard stall recycling exists to avoid (log.c seg_hold). Kept again
 * only if it is still the newest compacted segment before the log: when a compaction kept a newer
 * one meanwhile, or an installed snapshot replaced the log (discard_all), it is queued for
 * removal like any older detached segment (removed now if the queue has no memory). */
static void give_back(struct sinter_store *s, struct sinter_store_spare *j)
{
    if (j->recycle[0] == '\0') {
        return;
    }
    const char *slash = strrchr(j->recycle, '/');
    const char *name = slash != NULL ? slash + 1 : j->recycle;
    if (s->recycle_name[0] == '\0' && j->discards == s->discards &&
        strlen(name) < sizeof s->recycle_name) {
        memcpy(s->recycle_name, name, strlen(name) + 1);
    } else if (sinter_rs_garbage_add(s, j->recycle) != SINTER_OK) {
        (void)s->io->unlink(s->ctx, j->recycle);
    }
    j->recycle[0] = '\0';
}

int sinter_store_spare_put(struct sinter_store *s, struct sinter_store_spare *j)
{
    if (j == NULL) {
        return sinter_rs_err(s, SINTER_EINVAL, "raft store: no spare job");
    }
    if (j->owner != s || !s->spare_out || j->job != s->spare_jobs) {
        sinter_store_spare_abandon(j);
        return sinter_rs_err(s, SINTER_EINVAL, "raft store %s: spare job of another store", s->dir);
    }
    s->spare_out = false;
    int rc = j->made ? SINTER_OK : j->rc != SINTER_OK ? j->rc : SINTER_ECANCELED;
    if (rc != SINTER_OK) {
        give_back(s, j);
        /* One attempt per segment: the next rollover (which falls back to fallocate, as without
         * a spare) allows the next job. A full disk thus costs one failed job per segment. */
        s->spare_failed = true;
        sinter_rs_err(s, rc, "%s", j->err[0] ? j->err : "raft store: spare segment not made");
        sinter_store_spare_abandon(j);
        return rc;
    }
    if (s->failed != 0) {
        sinter_store_spare_abandon(j);
        return SINTER_OK; /* nothing will be appended before a reopen, which removes *.tmp */
    }
    s->spare_fd = j->fd;
    snprintf(s->spare_name, sizeof s->spare_name, "%s", j->name);
    free(j);
    return SINTER_OK;
}

bool sinter_store_spare_ready(const struct sinter_store *s)
{
    return s->spare_fd >= 0;
}

bool sinter_rs_spare_take(struct sinter_store *s, int *fd, char *name, size_t namelen)
{
    if (s->spare_fd < 0) {
        return false;
    }
    *fd = s->spare_fd;
    snprintf(name, namelen, "%s", s->spare_name);
    s->spare_fd = -1;
    return true;
}

void sinter_rs_spare_close(struct sinter_store *s)
{
    if (s->spare_fd < 0) {
        return;
    }
    char path[STORE_PATH_MAX];
    sinter_rs_path(s, path, s->spare_name);
    s->io->close(s->ctx, s->spare_fd);
    s->spare_fd = -1;
    (void)s->io->unlink(s->ctx, path);
}
