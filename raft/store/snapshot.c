/*
 * Snapshot files. A snapshot is written under a temporary name, its header (meta, data length,
 * data CRC32C, header CRC32C) last, then fsync'd, renamed to its final name and the directory
 * fsync'd: the final name therefore always denotes a complete, synced file, and a crash before the
 * rename leaves the previous snapshots untouched (the temporary file is deleted on open). Only
 * then are snapshots beyond the newest `snapshots_keep` deleted. Format: internal.h.
 *
 * Threads: the writer's data, header, fsync, rename and directory sync (snap_write, snap_sync)
 * touch only the writer and its own file, never the store's mutable state, so a helper thread can
 * run them while the store's thread keeps appending (the fsync of a large snapshot would otherwise
 * stall the log: raft/host/FINDINGS.md S1). Their error messages stay in the writer (S2) and reach
 * the store's errmsg only in snap_publish / snap_finish, on the store's thread.
 *
 * The configuration is encoded here, with its own version byte, rather than with
 * sinter_raft_config_encode(): the store must not depend on the core library, and a snapshot file
 * must stay readable whatever the core's encoding becomes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "sinter/crc32c.h"

struct sinter_store_snap_writer {
    struct sinter_store *s;
    struct sinter_raft_snapshot_meta meta;
    int fd;
    uint64_t len;
    uint64_t written_back; /* data bytes handed to io->writeback so far */
    uint32_t crc;
    int err;       /* first error: sync / publish refuse */
    bool detached; /* sinter_store_snap_begin_rx: not s->writer, never read s->writer */
    bool flushed;  /* header written and the file fsync'd (still under its temporary name) */
    bool synced;   /* header written, fsync'd, renamed and the directory synced */
    bool renamed;  /* the file carries its final name (a complete, fsync'd snapshot) */
    char tmp[STORE_PATH_MAX];
    char path[STORE_PATH_MAX]; /* final name */
    char name[64];
    char errmsg[STORE_ERRMSG_SIZE];
};

struct sinter_store_snap_reader {
    const struct sinter_store_io *io;
    void *ctx;
    int fd;
    uint64_t size;
    uint64_t pos;
    uint32_t crc;
    uint32_t want;
};

static bool config_valid(const struct sinter_raft_config *c)
{
    if (c->n > SINTER_RAFT_MAX_SERVERS) {
        return false;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->servers[i].id == 0 || c->servers[i].suffrage > SINTER_RAFT_LEARNER ||
            (i > 0 && c->servers[i].id <= c->servers[i - 1].id)) {
            return false;
        }
    }
    return true;
}

static size_t config_encode(const struct sinter_raft_config *c, uint8_t *p)
{
    p[0] = 1; /* configuration encoding version */
    p[1] = (uint8_t)c->n;
    size_t o = 2;
    for (uint32_t i = 0; i < c->n; i++) {
        store_put64(p + o, c->servers[i].id);
        p[o + 8] = c->servers[i].suffrage;
        o += 9;
    }
    return o;
}

static bool config_decode(struct sinter_raft_config *c, const uint8_t *p, size_t len)
{
    memset(c, 0, sizeof *c);
    if (len < 2 || p[0] != 1 || p[1] > SINTER_RAFT_MAX_SERVERS || len != 2u + p[1] * 9u) {
        return false;
    }
    c->n = p[1];
    for (uint32_t i = 0; i < c->n; i++) {
        c->servers[i].id = store_get64(p + 2 + i * 9);
        c->servers[i].suffrage = p[2 + i * 9 + 8];
    }
    return config_valid(c);
}

static void header_encode(uint8_t *h, const struct sinter_raft_snapshot_meta *m, uint64_t len,
                          uint32_t crc)
{
    memset(h, 0, STORE_SNAP_HDR);
    memcpy(h, "SNSP", 4);
    store_put16(h + 4, STORE_VERSION);
    store_put64(h + 8, m->index);
    store_put64(h + 16, m->term);
    store_put64(h + 24, m->config_index);
    store_put64(h + 32, len);
    store_put32(h + 40, crc);
    size_t cl = config_encode(&m->config, h + 48);
    store_put32(h + 44, (uint32_t)cl);
    store_put32(h + 252, sinter_crc32c(0, h, 252));
}

static bool header_decode(const uint8_t *h, struct sinter_raft_snapshot_meta *m, uint64_t *len,
                          uint32_t *crc)
{
    if (memcmp(h, "SNSP", 4) != 0 || store_get16(h + 4) != STORE_VERSION ||
        store_get32(h + 252) != sinter_crc32c(0, h, 252)) {
        return false;
    }
    uint32_t cl = store_get32(h + 44);
    if (cl > STORE_CFG_MAX) {
        return false;
    }
    m->index = store_get64(h + 8);
    m->term = store_get64(h + 16);
    m->config_index = store_get64(h + 24);
    *len = store_get64(h + 32);
    *crc = store_get32(h + 40);
    return m->index > 0 && m->config_index <= m->index && config_decode(&m->config, h + 48, cl);
}

static void snap_name(char *buf, size_t cap, uint64_t index, uint64_t term, const char *ext)
{
    snprintf(buf, cap, "snap-%020" PRIu64 "-%020" PRIu64 ".%s", index, term, ext);
}

const struct store_snapinfo *sinter_rs_snap_newest(const struct sinter_store *s)
{
    return s->nsnaps > 0 ? &s->snaps[s->nsnaps - 1] : NULL;
}

void sinter_rs_snap_close(struct sinter_store *s)
{
    free(s->snaps);
    s->snaps = NULL;
    s->nsnaps = s->capsnaps = 0;
}

/* Inserts keeping the array sorted by (index, term); an equal name replaces. */
static int snaps_insert(struct sinter_store *s, const struct store_snapinfo *si)
{
    size_t i = 0;
    while (i < s->nsnaps &&
           (s->snaps[i].meta.index < si->meta.index ||
            (s->snaps[i].meta.index == si->meta.index && s->snaps[i].meta.term < si->meta.term))) {
        i++;
    }
    if (i < s->nsnaps && strcmp(s->snaps[i].name, si->name) == 0) {
        s->snaps[i] = *si;
        return SINTER_OK;
    }
    if (s->nsnaps == s->capsnaps) {
        size_t c = s->capsnaps ? s->capsnaps * 2 : 4;
        struct store_snapinfo *p = realloc(s->snaps, c * sizeof *p);
        if (p == NULL) {
            return SINTER_ENOMEM;
        }
        s->snaps = p;
        s->capsnaps = c;
    }
    memmove(&s->snaps[i + 1], &s->snaps[i], (s->nsnaps - i) * sizeof *s->snaps);
    s->snaps[i] = *si;
    s->nsnaps++;
    return SINTER_OK;
}

/* Reads and validates the header of snapshot file `name` (open descriptor fd). */
static int snap_check(struct sinter_store *s, int fd, const char *name, struct store_snapinfo *si,
                      uint32_t *crc)
{
    uint8_t h[STORE_SNAP_HDR];
    size_t got = 0;
    uint64_t fsize = 0;
    int e = sinter_rs_pread_full(s, fd, h, sizeof h, 0, &got);
    if (e == 0) {
        e = s->io->filesize(s->ctx, fd, &fsize);
    }
    if (e != 0) {
        return sinter_rs_ioerr(s, e, "read %s/%s", s->dir, name);
    }
    memset(si, 0, sizeof *si);
    if (got != sizeof h || !header_decode(h, &si->meta, &si->size, crc)) {
        return sinter_rs_err(s, SINTER_ECORRUPT, "raft store %s: snapshot %s: invalid header",
                             s->dir, name);
    }
    char want[64];
    snap_name(want, sizeof want, si->meta.index, si->meta.term, "snap");
    if (strcmp(want, name) != 0 || fsize != STORE_SNAP_HDR + si->size) {
        return sinter_rs_err(s, SINTER_ECORRUPT,
                             "raft store %s: snapshot %s: header (index %" PRIu64 ", term %" PRIu64
                             ", %" PRIu64 " bytes) disagrees with the file's name or size (%" PRIu64
                             ")",
                             s->dir, name, si->meta.index, si->meta.term, si->size, fsize);
    }
    snprintf(si->name, sizeof si->name, "%s", name);
    return SINTER_OK;
}

int sinter_rs_snap_load(struct sinter_store *s, char **names, size_t n)
{
    char path[STORE_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        sinter_rs_path(s, path, names[i]);
        int fd = -1;
        int e = s->io->open(s->ctx, path, O_RDONLY, 0, &fd);
        if (e != 0) {
            return sinter_rs_ioerr(s, e, "open %s", path);
        }
        struct store_snapinfo si;
        uint32_t crc = 0;
        int rc = snap_check(s, fd, names[i], &si, &crc);
        s->io->close(s->ctx, fd);
        if (rc == SINTER_ECORRUPT) {
            /* An older snapshot (or the log) may still cover us; if not, the log's gap check in
             * reconcile() refuses to start. The file is kept for inspection. */
            sinter_rs_report(s, "%s; ignoring it", s->err);
            continue;
        }
        if (rc == SINTER_OK) {
            rc = snaps_insert(s, &si);
        }
        if (rc != SINTER_OK) {
            return rc;
        }
    }
    return SINTER_OK;
}

int sinter_store_snap_meta(const struct sinter_store *s, struct sinter_raft_snapshot_meta *meta)
{
    const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
    if (sn == NULL) {
        return SINTER_ENOTFOUND;
    }
    *meta = sn->meta;
    return SINTER_OK;
}

/* ---- writer --------------------------------------------------------------------------------- */

/* SINTER_OK, or SINTER_EINVAL with the reason in err. */
static int meta_check(const struct sinter_raft_snapshot_meta *meta, char *err, size_t errlen)
{
    if (meta->index == 0 || meta->config_index > meta->index || !config_valid(&meta->config)) {
        snprintf(err, errlen,
                 "raft store: invalid snapshot meta (index %" PRIu64 ", config index %" PRIu64 ")",
                 meta->index, meta->config_index);
        return SINTER_EINVAL;
    }
    return SINTER_OK;
}

/* Creates a writer for meta (checked by the caller) whose temporary file is tname in s's
 * directory. Reads only s->io, s->ctx and s->dir (immutable after open), so any thread may call
 * it; the message of a failure goes to err (the callers copy it where they report). */
static int writer_open(struct sinter_store *s, const struct sinter_raft_snapshot_meta *meta,
                       const char *tname, struct sinter_store_snap_writer **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    struct sinter_store_snap_writer *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "raft store: out of memory");
        return SINTER_ENOMEM;
    }
    w->s = s;
    w->meta = *meta;
    snap_name(w->name, sizeof w->name, meta->index, meta->term, "snap");
    sinter_rs_path(s, w->tmp, tname);
    sinter_rs_path(s, w->path, w->name);
    int e = s->io->open(s->ctx, w->tmp, O_RDWR | O_CREAT | O_TRUNC, 0644, &w->fd);
    if (e != 0) {
        char ebuf[80];
        const char *es = strerror_r(e, ebuf, sizeof ebuf);
        snprintf(err, errlen, "create %s: %s (errno %d)", w->tmp, es, e);
        free(w);
        return e == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
    }
    *out = w;
    return SINTER_OK;
}

int sinter_store_snap_begin(struct sinter_store *s, const struct sinter_raft_snapshot_meta *meta,
                            struct sinter_store_snap_writer **out)
{
    *out = NULL;
    char err[STORE_ERRMSG_SIZE];
    int rc = meta_check(meta, err, sizeof err);
    if (rc != SINTER_OK) {
        return sinter_rs_err(s, rc, "%s", err);
    }
    if (s->writer != NULL) {
        return sinter_rs_err(s, SINTER_EBUSY, "raft store %s: a snapshot is already being written",
                             s->dir);
    }
    char tname[64];
    snap_name(tname, sizeof tname, meta->index, meta->term, "tmp");
    rc = writer_open(s, meta, tname, out, err, sizeof err);
    if (rc != SINTER_OK) {
        return sinter_rs_err(s, rc, "%s", err);
    }
    s->writer = *out;
    return SINTER_OK;
}

/* Distinguishes the temporary files of received snapshots: two senders (an old and a new leader)
 * may stream the same snapshot index at once, and a local writer uses the plain name. Global, not
 * per store: begin_rx must not write the store, and uniqueness within one process suffices (one
 * process owns a store directory). */
static atomic_uint_fast64_t rx_seq;

int sinter_store_snap_begin_rx(struct sinter_store *s, const struct sinter_raft_snapshot_meta *meta,
                               struct sinter_store_snap_writer **out, char *err, size_t errlen)
{
    /* Messages go to err, never to s->err (the store's thread may be writing it). */
    *out = NULL;
    if (errlen > 0) {
        err[0] = '\0';
    }
    int rc = meta_check(meta, err, errlen);
    if (rc != SINTER_OK) {
        return rc;
    }
    uint64_t seq = atomic_fetch_add_explicit(&rx_seq, 1, memory_order_relaxed) + 1;
    /* Ends in ".tmp": open() removes it as a leftover if we crash before the rename. */
    char tname[96];
    snprintf(tname, sizeof tname, "snap-%020" PRIu64 "-%020" PRIu64 "-rx%" PRIu64 ".tmp",
             meta->index, meta->term, seq);
    rc = writer_open(s, meta, tname, out, err, errlen);
    if (rc == SINTER_OK) {
        (*out)->detached = true;
    }
    return rc;
}

/* Like sinter_rs_ioerr, but the message goes to the writer (any thread may hold it). Records the
 * first error only: later calls return it unchanged. */
static int w_ioerr(struct sinter_store_snap_writer *w, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int w_ioerr(struct sinter_store_snap_writer *w, int e, const char *fmt, ...)
{
    if (w->err != 0) {
        return w->err;
    }
    char what[STORE_ERRMSG_SIZE - 96];
    char ebuf[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *es = strerror_r(e, ebuf, sizeof ebuf);
    snprintf(w->errmsg, sizeof w->errmsg, "%s: %s (errno %d)", what, es, e);
    w->err = e == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
    return w->err;
}

int sinter_store_snap_write(struct sinter_store_snap_writer *w, const void *data, size_t len)
{
    struct sinter_store *s = w->s;
    if (w->err != 0) {
        return w->err;
    }
    if (w->flushed || w->synced) {
        return SINTER_EINVAL; /* the header is written: the snapshot is complete */
    }
    int e = sinter_rs_pwrite_full(s, w->fd, data, len, STORE_SNAP_HDR + w->len);
    if (e != 0) {
        return w_ioerr(w, e, "write %s at offset %" PRIu64, w->tmp, STORE_SNAP_HDR + w->len);
    }
    w->crc = sinter_crc32c(w->crc, data, len);
    w->len += len;
    if (s->io->writeback != NULL && w->len - w->written_back >= STORE_SNAP_WRITEBACK) {
        /* Start writeback of what is written so far (see sinter_store_io.writeback). */
        (void)s->io->writeback(s->ctx, w->fd, STORE_SNAP_HDR + w->written_back,
                               w->len - w->written_back);
        w->written_back = w->len;
    }
    return SINTER_OK;
}

static void writer_free(struct sinter_store_snap_writer *w, bool unlink_tmp)
{
    struct sinter_store *s = w->s;
    if (w->fd >= 0) {
        s->io->close(s->ctx, w->fd);
    }
    if (unlink_tmp) {
        s->io->unlink(s->ctx, w->tmp);
    }
    /* A detached writer may be freed on any thread, while the store's thread uses s->writer. */
    if (!w->detached && s->writer == w) {
        s->writer = NULL;
    }
    free(w);
}

void sinter_store_snap_abort(struct sinter_store_snap_writer *w)
{
    if (w != NULL) {
        writer_free(w, !w->renamed);
    }
}

/* Deletes the oldest snapshots beyond snapshots_keep. Failures are reported, not returned: the new
 * snapshot is durable either way, and a leftover file only costs space. */
static void retire_old(struct sinter_store *s)
{
    char path[STORE_PATH_MAX];
    size_t drop = s->nsnaps > s->opts.snapshots_keep ? s->nsnaps - s->opts.snapshots_keep : 0;
    if (drop == 0) {
        return;
    }
    for (size_t i = 0; i < drop; i++) {
        sinter_rs_path(s, path, s->snaps[i].name);
        if (s->opts.defer_unlink && sinter_rs_garbage_add(s, path) == SINTER_OK) {
            continue; /* removed later, off this thread (options.defer_unlink) */
        }
        int e = s->io->unlink(s->ctx, path);
        if (e != 0 && e != ENOENT) {
            sinter_rs_report(s, "could not delete old snapshot %s: errno %d", path, e);
        }
    }
    memmove(&s->snaps[0], &s->snaps[drop], (s->nsnaps - drop) * sizeof *s->snaps);
    s->nsnaps -= drop;
    /* No directory sync here: this runs on the store's thread, and a deletion needs none. If a
     * crash undoes it, the old snapshot (complete, older than the newest) is loaded and retired
     * again on the next publish; the next directory sync (a new segment or snapshot) makes it
     * durable anyway. */
}

int sinter_store_snap_flush(struct sinter_store_snap_writer *w)
{
    struct sinter_store *s = w->s; /* only its immutable io and ctx are used */
    if (w->err != 0) {
        return w->err;
    }
    if (w->flushed || w->synced) {
        return SINTER_OK;
    }
    uint8_t h[STORE_SNAP_HDR];
    header_encode(h, &w->meta, w->len, w->crc);
    int e = sinter_rs_pwrite_full(s, w->fd, h, sizeof h, 0);
    if (e != 0) {
        return w_ioerr(w, e, "write header of snapshot %s", w->tmp);
    }
    e = s->io->fsync(s->ctx, w->fd);
    if (e != 0) {
        return w_ioerr(w, e, "fsync snapshot %s", w->tmp);
    }
    w->flushed = true;
    return SINTER_OK;
}

int sinter_store_snap_sync(struct sinter_store_snap_writer *w)
{
    struct sinter_store *s = w->s; /* only its immutable io, ctx and dir are used */
    if (w->err != 0) {
        return w->err;
    }
    if (w->synced) {
        return SINTER_OK;
    }
    int rc = sinter_store_snap_flush(w); /* no-op when done already (received snapshots) */
    if (rc != SINTER_OK) {
        return rc;
    }
    int e = s->io->rename(s->ctx, w->tmp, w->path);
    if (e != 0) {
        return w_ioerr(w, e, "rename snapshot %s", w->tmp);
    }
    w->renamed = true;
    e = s->io->syncdir(s->ctx, s->dir);
    if (e != 0) {
        /* The file is complete under its final name but the name may not be durable: publish
         * refuses (no compaction may rely on it); a later open finds it if it survived. */
        return w_ioerr(w, e, "sync directory %s after renaming %s", s->dir, w->name);
    }
    w->synced = true;
    return SINTER_OK;
}

const char *sinter_store_snap_errmsg(const struct sinter_store_snap_writer *w)
{
    return w->errmsg;
}

int sinter_store_snap_publish(struct sinter_store_snap_writer *w)
{
    struct sinter_store *s = w->s;
    int rc = sinter_store_snap_sync(w); /* no-op when a helper already ran it */
    if (rc != SINTER_OK) {
        snprintf(s->err, sizeof s->err, "%s", w->errmsg);
        /* A renamed file is complete and fsync'd: leave it (it may even equal a snapshot already
         * listed under the same name). Only a temporary file is garbage. */
        writer_free(w, !w->renamed);
        return rc;
    }
    struct store_snapinfo si;
    memset(&si, 0, sizeof si);
    si.meta = w->meta;
    si.size = w->len;
    snprintf(si.name, sizeof si.name, "%s", w->name);
    writer_free(w, false);
    if (snaps_insert(s, &si) != SINTER_OK) {
        return sinter_rs_err(s, SINTER_ENOMEM, "raft store: out of memory");
    }
    retire_old(s);
    return SINTER_OK;
}

int sinter_store_snap_finish(struct sinter_store_snap_writer *w)
{
    return sinter_store_snap_publish(w);
}

/* ---- reader --------------------------------------------------------------------------------- */

int sinter_store_snap_open(struct sinter_store *s, struct sinter_raft_snapshot_meta *meta,
                           uint64_t *size, struct sinter_store_snap_reader **out)
{
    *out = NULL;
    const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
    if (sn == NULL) {
        return sinter_rs_err(s, SINTER_ENOTFOUND, "raft store %s: no snapshot", s->dir);
    }
    char path[STORE_PATH_MAX];
    sinter_rs_path(s, path, sn->name);
    struct sinter_store_snap_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return sinter_rs_err(s, SINTER_ENOMEM, "raft store: out of memory");
    }
    r->io = s->io;
    r->ctx = s->ctx;
    int e = s->io->open(s->ctx, path, O_RDONLY, 0, &r->fd);
    if (e != 0) {
        free(r);
        return sinter_rs_ioerr(s, e, "open %s", path);
    }
    struct store_snapinfo si;
    int rc = snap_check(s, r->fd, sn->name, &si, &r->want);
    if (rc != SINTER_OK) {
        sinter_store_snap_close(r);
        return rc;
    }
    r->size = si.size;
    if (meta != NULL) {
        *meta = si.meta;
    }
    if (size != NULL) {
        *size = si.size;
    }
    *out = r;
    return SINTER_OK;
}

int sinter_store_snap_read(struct sinter_store_snap_reader *r, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    uint64_t left = r->size - r->pos;
    size_t want = left < cap ? (size_t)left : cap;
    size_t total = 0;
    while (total < want) {
        size_t done = 0;
        int e = r->io->pread(r->ctx, r->fd, (uint8_t *)buf + total, want - total,
                             STORE_SNAP_HDR + r->pos + total, &done);
        if (e != 0) {
            return e == ENOSPC ? SINTER_ENOSPC : SINTER_EIO;
        }
        if (done == 0) {
            return SINTER_ECORRUPT; /* shorter than its header says */
        }
        total += done;
    }
    r->crc = sinter_crc32c(r->crc, buf, total);
    r->pos += total;
    *n = total;
    if (total > 0 && r->pos == r->size && r->crc != r->want) {
        return SINTER_ECORRUPT;
    }
    if (r->size == 0 && r->crc != r->want) {
        return SINTER_ECORRUPT;
    }
    return SINTER_OK;
}

void sinter_store_snap_close(struct sinter_store_snap_reader *r)
{
    if (r == NULL) {
        return;
    }
    if (r->fd >= 0) {
        r->io->close(r->ctx, r->fd);
    }
    free(r);
}
