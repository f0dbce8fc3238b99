/*
 * raft/store: opening, recovery orchestration, error plumbing and shared I/O helpers.
 * The log is in log.c, term/vote in meta.c, snapshots in snapshot.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

/* ---- errors and reports --------------------------------------------------------------------- */

int sinter_rs_err(struct sinter_store *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return rc;
}

int sinter_rs_ioerr(struct sinter_store *s, int e, const char *fmt, ...)
{
    char what[STORE_ERRMSG_SIZE - 96];
    char ebuf[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *es = strerror_r(e, ebuf, sizeof ebuf);
    snprintf(s->err, sizeof s->err, "%s: %s (errno %d)", what, es, e);
    return e == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
}

int sinter_rs_fail(struct sinter_store *s, int rc)
{
    if (s->failed == 0) {
        s->failed = rc;
        memcpy(s->failed_msg, s->err, sizeof s->failed_msg);
    }
    return rc;
}

int sinter_rs_check_failed(struct sinter_store *s)
{
    if (s->failed == 0) {
        return SINTER_OK;
    }
    return sinter_rs_err(s, s->failed,
                         "raft store %s failed earlier (%s); close and reopen to recover", s->dir,
                         s->failed_msg);
}

void sinter_rs_report(struct sinter_store *s, const char *fmt, ...)
{
    char msg[STORE_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->opts.report != NULL) {
        s->opts.report(s->opts.report_arg, msg);
    } else {
        fprintf(stderr, "sinter raft store %s: %s\n", s->dir, msg);
    }
}

void sinter_rs_path(const struct sinter_store *s, char *buf, const char *name)
{
    snprintf(buf, STORE_PATH_MAX, "%s/%s", s->dir, name);
}

const char *sinter_store_errmsg(const struct sinter_store *s)
{
    return s->err;
}

/* ---- I/O helpers ---------------------------------------------------------------------------- */

int sinter_rs_pwrite_full(struct sinter_store *s, int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        size_t done = 0;
        int e = s->io->pwrite(s->ctx, fd, p, len, off, &done);
        if (e != 0) {
            return e;
        }
        if (done == 0) {
            return EIO; /* a zero-length write would loop forever */
        }
        p += done;
        len -= done;
        off += done;
    }
    return 0;
}

int sinter_rs_pread_full(struct sinter_store *s, int fd, void *buf, size_t len, uint64_t off,
                         size_t *got)
{
    uint8_t *p = buf;
    size_t total = 0;
    while (total < len) {
        size_t done = 0;
        int e = s->io->pread(s->ctx, fd, p + total, len - total, off + total, &done);
        if (e != 0) {
            return e;
        }
        if (done == 0) {
            break;
        }
        total += done;
    }
    *got = total;
    return 0;
}

/* Reserves space so that later writes into [off, off + len) cannot fail for lack of space and
 * fdatasync need not flush a size change; where fallocate is unsupported, a sparse extension is
 * the best we can do (the writes may then still hit ENOSPC, which the store reports). */
int sinter_rs_reserve(struct sinter_store *s, int fd, uint64_t off, uint64_t len)
{
    int e = s->io->fallocate(s->ctx, fd, off, len);
    if (e == EOPNOTSUPP || e == ENOSYS) {
        e = s->io->ftruncate(s->ctx, fd, off + len);
    }
    return e;
}

int sinter_rs_grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return SINTER_OK;
    }
    size_t c = *cap ? *cap : 4096;
    while (c < need) {
        c *= 2;
    }
    uint8_t *p = realloc(*buf, c);
    if (p == NULL) {
        return SINTER_ENOMEM;
    }
    *buf = p;
    *cap = c;
    return SINTER_OK;
}

uint64_t sinter_rs_random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) {
        return v;
    }
    /* No entropy yet (early boot): a salt only needs to differ from stale bytes, not be secret. */
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (++counter << 48);
    return v * 0x9E3779B97F4A7C15u;
}

/* ---- open ----------------------------------------------------------------------------------- */

void sinter_store_options_defaults(struct sinter_store_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->io = sinter_store_io_posix();
    opts->segment_size = SINTER_STORE_SEGMENT_SIZE_DEFAULT;
    opts->snapshots_keep = 2;
    opts->direct_io = SINTER_STORE_DIRECT_IO_AUTO;
}

/* Canonical raft's libuv backend probes the file system the same way before using direct I/O:
 * some refuse O_DIRECT at open (EINVAL), some only at the first write. The probe writes one
 * aligned block with O_DIRECT | O_DSYNC into a temporary file and removes it; any failure means
 * buffered appends (pwrite + fdatasync), which work everywhere. */
void sinter_rs_dio_probe(struct sinter_store *s)
{
    s->dio = false;
    if (s->opts.direct_io != SINTER_STORE_DIRECT_IO_AUTO) {
        return;
    }
    if (s->opts.segment_size % STORE_DIO_BLOCK != 0) {
        sinter_rs_report(s,
                         "segment size %" PRIu32 " is not a multiple of %u: direct I/O off, log "
                         "appends use pwrite + fdatasync",
                         s->opts.segment_size, STORE_DIO_BLOCK);
        return;
    }
    char path[STORE_PATH_MAX];
    sinter_rs_path(s, path, "dio-probe.tmp");
    void *blk = NULL;
    if (posix_memalign(&blk, STORE_DIO_BLOCK, STORE_DIO_BLOCK) != 0) {
        return; /* no memory for one block: stay buffered, nothing worth a report */
    }
    memset(blk, 0, STORE_DIO_BLOCK);
    int fd = -1;
    const char *what = "open";
    int e = s->io->open(s->ctx, path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_DSYNC, 0644, &fd);
    if (e == 0) {
        size_t done = 0;
        what = "write";
        e = s->io->pwrite(s->ctx, fd, blk, STORE_DIO_BLOCK, 0, &done);
        if (e == 0 && done != STORE_DIO_BLOCK) {
            e = EIO;
        }
        s->io->close(s->ctx, fd);
    }
    if (e == 0 || fd >= 0) {
        (void)s->io->unlink(s->ctx, path);
    }
    free(blk);
    if (e != 0) {
        char ebuf[80];
        sinter_rs_report(s,
                         "O_DIRECT | O_DSYNC %s refused in %s (%s): direct I/O off, log appends "
                         "use pwrite + fdatasync",
                         what, s->dir, strerror_r(e, ebuf, sizeof ebuf));
        return;
    }
    s->dio = true;
}

/* What the directory listing found. */
struct listing {
    struct sinter_store *s;
    bool meta[2];
    uint64_t *segs;
    size_t nsegs, capsegs;
    char **snaps;
    size_t nsnaps, capsnaps;
    char **tmps;
    size_t ntmps, captmps;
    int rc;
};

static int push_name(char ***arr, size_t *n, size_t *cap, const char *name)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        char **p = realloc(*arr, c * sizeof *p);
        if (p == NULL) {
            return SINTER_ENOMEM;
        }
        *arr = p;
        *cap = c;
    }
    char *d = strdup(name);
    if (d == NULL) {
        return SINTER_ENOMEM;
    }
    (*arr)[(*n)++] = d;
    return SINTER_OK;
}

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }
    return true;
}

static int list_cb(void *arg, const char *name)
{
    struct listing *l = arg;
    size_t len = strlen(name);
    if (strcmp(name, "meta.0") == 0 || strcmp(name, "meta.1") == 0) {
        l->meta[name[5] - '0'] = true;
        return 0;
    }
    if (len > 4 && strcmp(name + len - 4, ".tmp") == 0) {
        l->rc = push_name(&l->tmps, &l->ntmps, &l->captmps, name);
        return l->rc ? -1 : 0;
    }
    if (len == 24 && strncmp(name, "seg-", 4) == 0 && all_digits(name + 4, 20)) {
        if (l->nsegs == l->capsegs) {
            size_t c = l->capsegs ? l->capsegs * 2 : 16;
            uint64_t *p = realloc(l->segs, c * sizeof *p);
            if (p == NULL) {
                l->rc = SINTER_ENOMEM;
                return -1;
            }
            l->segs = p;
            l->capsegs = c;
        }
        l->segs[l->nsegs++] = strtoull(name + 4, NULL, 10);
        return 0;
    }
    if (len == 51 && strncmp(name, "snap-", 5) == 0 && strcmp(name + 46, ".snap") == 0) {
        l->rc = push_name(&l->snaps, &l->nsnaps, &l->capsnaps, name);
        return l->rc ? -1 : 0;
    }
    return 0; /* not ours: left alone */
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void free_names(char **a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i]);
    }
    free(a);
}

/* Makes the recovered log agree with the newest snapshot, the rule sinter_store_snapshot_installed
 * also applies: entries at or below the snapshot are not returned; a log that ends before the
 * snapshot or disagrees with it at its index was superseded by an installed snapshot and is
 * discarded; a log that starts after snapshot + 1 lost entries and is corruption. */
static int reconcile(struct sinter_store *s)
{
    const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
    uint64_t first = sinter_rs_first(s);
    uint64_t last = sinter_rs_last(s);
    if (sn == NULL) {
        if (s->nsegs > 0 && first != 1) {
            return sinter_rs_err(s, SINTER_ECORRUPT,
                                 "raft store %s: log starts at index %" PRIu64
                                 " but no snapshot covers the entries before it",
                                 s->dir, first);
        }
        return SINTER_OK;
    }
    uint64_t si = sn->meta.index;
    if (s->nsegs == 0) {
        s->next_index = si + 1;
        return SINTER_OK;
    }
    if (first > si + 1) {
        return sinter_rs_err(s, SINTER_ECORRUPT,
                             "raft store %s: log starts at index %" PRIu64
                             " but the newest valid snapshot (%s) ends at %" PRIu64
                             ": entries in between are lost",
                             s->dir, first, sn->name, si);
    }
    if (first == si + 1) {
        return SINTER_OK;
    }
    uint64_t t = 0;
    if (last >= si && sinter_store_term(s, si, &t) == SINTER_OK && t == sn->meta.term) {
        return SINTER_OK;
    }
    sinter_rs_report(s,
                     "log [%" PRIu64 ", %" PRIu64 "] is superseded by snapshot %s (term %" PRIu64
                     " at %" PRIu64 "): discarding it",
                     first, last, sn->name, t, si);
    return sinter_rs_log_discard_all(s, si + 1);
}

int sinter_store_open(struct sinter_store **out, const char *dir,
                      const struct sinter_store_options *opts, struct sinter_store_recovered *rec,
                      char *errbuf, size_t errlen)
{
    *out = NULL;
    if (rec != NULL) {
        memset(rec, 0, sizeof *rec);
    }
    struct sinter_store_options o;
    if (opts != NULL) {
        o = *opts;
    } else {
        sinter_store_options_defaults(&o);
    }
    if (o.io == NULL) {
        o.io = sinter_store_io_posix();
    }
    if (o.snapshots_keep == 0) {
        o.snapshots_keep = 2;
    }
    if (o.direct_io == 0) {
        /* A zero-initialised struct gets the documented default, like snapshots_keep (the probe
         * treated 0 as OFF while raft_store.h promised AUTO). */
        o.direct_io = SINTER_STORE_DIRECT_IO_AUTO;
    }
    if (dir == NULL || strlen(dir) > STORE_PATH_MAX - 64 ||
        o.segment_size < SINTER_STORE_SEGMENT_SIZE_MIN ||
        o.segment_size > SINTER_STORE_SEGMENT_SIZE_MAX || o.segment_size % 8 != 0 ||
        (o.direct_io != SINTER_STORE_DIRECT_IO_OFF && o.direct_io != SINTER_STORE_DIRECT_IO_AUTO)) {
        if (errbuf != NULL && errlen > 0) {
            snprintf(errbuf, errlen, "raft store: invalid directory, segment size or direct_io");
        }
        return SINTER_EINVAL;
    }
    struct sinter_store *s = calloc(1, sizeof *s);
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        if (errbuf != NULL && errlen > 0) {
            snprintf(errbuf, errlen, "raft store: out of memory");
        }
        return SINTER_ENOMEM;
    }
    s->opts = o;
    s->io = o.io;
    /* The zeroed prefix (options.zero_prefix): 1/64 of a segment by default, at least one
     * 128 KiB chunk or a quarter of the segment if that is less (1 MiB of the default 64 MiB
     * segment): it is written on the caller's thread (the host's loop, shared by many groups), and
     * 4 MiB cost ~4-5 ms per creation, 64 groups created at once more than an election timeout. The
     * spare is wanted at half of it (spare.c), so it normally is ready before appends pass the
     * prefix. Whole blocks, so a direct write below the watermark never touches a block past it;
     * never more than the segment. */
    if (o.zero_prefix != SINTER_STORE_ZERO_PREFIX_NONE) {
        uint64_t zp = o.zero_prefix;
        if (zp == 0) {
            /* The floor, one chunk, only up to a quarter of the segment: a small segment keeps
             * most of its space for the spare to replace. */
            uint64_t floor = o.segment_size / 4u < (128u << 10) ? o.segment_size / 4u : 128u << 10;
            zp = o.segment_size / 64u;
            zp = zp > floor ? zp : floor;
        }
        zp = (zp + STORE_DIO_BLOCK - 1) & ~(uint64_t)(STORE_DIO_BLOCK - 1);
        s->zero_prefix = zp < o.segment_size ? zp : o.segment_size;
    }
    s->ctx = o.io->ctx;
    s->meta_fd[0] = s->meta_fd[1] = -1;
    s->spare_fd = -1;
    s->next_index = 1;

    struct listing l = {.s = s};
    uint64_t torn = 0;
    char path[STORE_PATH_MAX];
    int rc;
    int e = s->io->mkdir(s->ctx, dir);
    if (e != 0) {
        rc = sinter_rs_ioerr(s, e, "mkdir %s", dir);
        goto fail;
    }
    e = s->io->listdir(s->ctx, dir, list_cb, &l);
    if (l.rc != 0) {
        rc = sinter_rs_err(s, l.rc, "raft store %s: out of memory listing the directory", dir);
        goto fail;
    }
    if (e != 0) {
        rc = sinter_rs_ioerr(s, e, "list %s", dir);
        goto fail;
    }
    /* Temporary files never became durable under their final name: they are leftovers of a crash
     * (segment or snapshot being created, metadata being initialised, a spare segment being
     * zero-filled or left unused). A spare is not reused: whether its zero-fill finished before
     * the crash is not recorded anywhere, and a new one is made off the loop anyway. */
    for (size_t i = 0; i < l.ntmps; i++) {
        sinter_rs_path(s, path, l.tmps[i]);
        e = s->io->unlink(s->ctx, path);
        if (e != 0 && e != ENOENT) {
            rc = sinter_rs_ioerr(s, e, "unlink %s", path);
            goto fail;
        }
    }
    sinter_rs_dio_probe(s);
    bool fresh = !l.meta[0] && !l.meta[1];
    if (fresh && (l.nsegs > 0 || l.nsnaps > 0)) {
        rc = sinter_rs_err(s, SINTER_ECORRUPT,
                           "raft store %s: log or snapshot files exist but meta.0 and meta.1 are "
                           "missing: term and vote are lost, refusing to start",
                           dir);
        goto fail;
    }
    rc = sinter_rs_meta_open(s, fresh);
    if (rc != SINTER_OK) {
        goto fail;
    }
    rc = sinter_rs_snap_load(s, l.snaps, l.nsnaps);
    if (rc != SINTER_OK) {
        goto fail;
    }
    if (l.nsegs > 1) {
        qsort(l.segs, l.nsegs, sizeof *l.segs, cmp_u64);
    }
    rc = sinter_rs_log_load(s, l.segs, l.nsegs, &torn);
    if (rc != SINTER_OK) {
        goto fail;
    }
    rc = reconcile(s);
    if (rc != SINTER_OK) {
        goto fail;
    }
    if (rec != NULL) {
        const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
        if (sn != NULL) {
            rec->has_snapshot = true;
            rec->snapshot = sn->meta;
        }
        rec->hard_state = s->hs;
        rec->torn_bytes = torn;
        uint64_t lo = sn != NULL ? sn->meta.index + 1 : 1;
        if (lo < sinter_rs_first(s)) {
            lo = sinter_rs_first(s);
        }
        if (lo <= sinter_rs_last(s)) {
            rc = sinter_store_read(s, lo, sinter_rs_last(s), 0, &rec->entries, &rec->n_entries);
            if (rc != SINTER_OK) {
                goto fail;
            }
        }
    }
    free(l.segs);
    free_names(l.snaps, l.nsnaps);
    free_names(l.tmps, l.ntmps);
    s->err[0] = '\0';
    *out = s;
    return SINTER_OK;

fail:
    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "%s", s->err[0] ? s->err : sinter_strerror(rc));
    }
    free(l.segs);
    free_names(l.snaps, l.nsnaps);
    free_names(l.tmps, l.ntmps);
    if (rec != NULL) {
        sinter_store_recovered_free(rec);
    }
    sinter_store_close(s);
    return rc;
}

/* ---- deferred removal ------------------------------------------------------------------------ */

struct sinter_store_garbage {
    const struct sinter_store_io *io;
    void *ctx;
    char dir[STORE_PATH_MAX];
    size_t n, cap;
    char (*paths)[STORE_PATH_MAX]; /* in the order they were queued: oldest first */
};

int sinter_rs_garbage_add(struct sinter_store *s, const char *path)
{
    struct sinter_store_garbage *g = s->garbage;
    if (g == NULL) {
        g = calloc(1, sizeof *g);
        if (g == NULL) {
            return SINTER_ENOMEM;
        }
        g->io = s->io;
        g->ctx = s->ctx;
        snprintf(g->dir, sizeof g->dir, "%s", s->dir);
        s->garbage = g;
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4;
        char(*np)[STORE_PATH_MAX] = realloc(g->paths, cap * sizeof *np);
        if (np == NULL) {
            return SINTER_ENOMEM;
        }
        g->paths = np;
        g->cap = cap;
    }
    snprintf(g->paths[g->n++], STORE_PATH_MAX, "%s", path);
    return SINTER_OK;
}

struct sinter_store_garbage *sinter_store_garbage_take(struct sinter_store *s)
{
    struct sinter_store_garbage *g = s->garbage;
    s->garbage = NULL;
    return g;
}

int sinter_store_garbage_collect(struct sinter_store_garbage *g)
{
    if (g == NULL) {
        return SINTER_OK;
    }
    int err = 0;
    for (size_t i = 0; i < g->n && err == 0; i++) {
        /* Stop at the first failure, so that what stays is the oldest part of the queue: a log
         * prefix the newest snapshot covers, which open() removes even when a gap follows it. */
        int e = g->io->unlink(g->ctx, g->paths[i]);
        if (e != 0 && e != ENOENT) {
            err = e;
        }
    }
    if (g->n > 0) {
        int e = g->io->syncdir(g->ctx, g->dir);
        if (e != 0 && err == 0) {
            err = e;
        }
    }
    free(g->paths);
    free(g);
    return err == 0 ? SINTER_OK : err == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
}

void sinter_store_close(struct sinter_store *s)
{
    if (s == NULL) {
        return;
    }
    /* Queued files nobody took: remove them now, on the closing thread. A compacted segment kept
     * for the next spare (seg_hold) stays: it is the newest of the old prefix, so removing it while
     * older files handed to a helper may still wait would leave a gap (one open() copes with, but
     * needless); open() finds it as the log's first segment and the next compaction takes it. */
    (void)sinter_store_garbage_collect(sinter_store_garbage_take(s));
    if (s->writer != NULL) {
        sinter_store_snap_abort(s->writer);
    }
    sinter_rs_spare_close(s);
    sinter_rs_log_close(s);
    sinter_rs_meta_close(s);
    sinter_rs_snap_close(s);
    free(s->wbuf);
    free(s->rbuf);
    free(s->dbuf);
    free(s->dir);
    free(s);
}

void sinter_store_recovered_free(struct sinter_store_recovered *rec)
{
    if (rec == NULL) {
        return;
    }
    sinter_store_entries_free(rec->entries);
    rec->entries = NULL;
    rec->n_entries = 0;
}

void sinter_store_entries_free(struct sinter_raft_entry *entries)
{
    free(entries);
}
