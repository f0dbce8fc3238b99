/*
 * The segment log. Format: internal.h. Recovery rules: raft_store.h and scan_segment() below.
 *
 * Writing. An append encodes all records going to one segment into one buffer, writes it with one
 * pwrite at the segment's end and makes it durable with one fdatasync (group commit; the file is
 * preallocated, so the sync flushes data, not a size change). In a pre-zeroed segment, or below
 * the zeroed watermark of one the store made ready itself (store_seg.zeroed_to,
 * options.zero_prefix), with options.direct_io the pwrite + fdatasync is one O_DIRECT | O_DSYNC
 * pwrite of whole 4 KiB blocks instead (seg_dio_write): durable when it returns, like the pair.
 * The watermark only decides speed, never correctness: past it the space reads as zeros too
 * (unwritten extents), and the zeros are written either before the segment is named (creation)
 * or over zeros (open, cut), so no crash can leave them where a record was. A batch that does not
 * fit is split: the first part is written and synced into the current segment before anything goes
 * to the next one, and every new segment is created (temporary name, fallocate, header, fsync,
 * rename, directory fsync; or, when a spare is ready, header over the spare's zeros, fdatasync,
 * rename, directory fsync: spare.c) before the first byte of the batch is written, so allocation
 * failures such as ENOSPC happen while nothing has been written yet. Hence at any instant at most
 * one batch is unsynced, and it is the last one in the log: the invariant recovery uses to tell a
 * torn tail from damage to data that was durable.
 *
 * Removing. Truncation unlinks later segments newest first and syncs the directory before it cuts
 * the segment holding the first removed entry (ftruncate at that record, re-extended with zeros,
 * fsync; then the zeroed prefix, fdatasync): a crash in between leaves a prefix of the old log,
 * never old segments after new entries. Compaction unlinks whole segments oldest first, so a crash
 * leaves a suffix.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "sinter/crc32c.h"

/* ---- in-memory index ------------------------------------------------------------------------ */

uint64_t sinter_rs_first(const struct sinter_store *s)
{
    return s->nsegs > 0 ? s->segs[0].first : s->next_index;
}

uint64_t sinter_rs_last(const struct sinter_store *s)
{
    if (s->nsegs == 0) {
        return s->next_index - 1;
    }
    const struct store_seg *g = &s->segs[s->nsegs - 1];
    return g->first + g->n - 1;
}

uint64_t sinter_store_first_index(const struct sinter_store *s)
{
    return sinter_rs_first(s);
}

uint64_t sinter_store_last_index(const struct sinter_store *s)
{
    return sinter_rs_last(s);
}

size_t sinter_store_segment_count(const struct sinter_store *s)
{
    return s->nsegs;
}

/* Rounds up to a whole direct-I/O block. */
static uint64_t blk_up(uint64_t off)
{
    return (off + STORE_DIO_BLOCK - 1) & ~(uint64_t)(STORE_DIO_BLOCK - 1);
}

bool sinter_store_direct_io_active(const struct sinter_store *s)
{
    if (s->nsegs == 0) {
        return false;
    }
    /* Direct if the smallest record (an empty entry) still ends below the watermark. */
    const struct store_seg *g = &s->segs[s->nsegs - 1];
    return g->dfd >= 0 && blk_up(g->end + STORE_REC_HDR) <= g->zeroed_to;
}

/* The segment holding index (which must lie in [first, last]). */
static size_t seg_find(const struct sinter_store *s, uint64_t index)
{
    size_t lo = 0;
    size_t hi = s->nsegs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->segs[mid].first <= index) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int sinter_store_term(const struct sinter_store *s, uint64_t index, uint64_t *term)
{
    if (index < sinter_rs_first(s)) {
        return SINTER_ECOMPACTED;
    }
    if (index > sinter_rs_last(s)) {
        return SINTER_ENOTFOUND;
    }
    const struct store_seg *g = &s->segs[seg_find(s, index)];
    *term = g->recs[index - g->first].term;
    return SINTER_OK;
}

static int seg_push_rec(struct store_seg *g, uint64_t term, uint64_t off, uint32_t len)
{
    if (g->n == g->cap) {
        size_t c = g->cap ? g->cap * 2 : 256;
        struct store_rec *p = realloc(g->recs, c * sizeof *p);
        if (p == NULL) {
            return SINTER_ENOMEM;
        }
        g->recs = p;
        g->cap = c;
    }
    g->recs[g->n++] = (struct store_rec){.term = term, .off = (uint32_t)off, .len = len};
    return SINTER_OK;
}

static int segs_reserve(struct sinter_store *s, size_t need)
{
    if (need <= s->capsegs) {
        return SINTER_OK;
    }
    size_t c = s->capsegs ? s->capsegs * 2 : 16;
    while (c < need) {
        c *= 2;
    }
    struct store_seg *p = realloc(s->segs, c * sizeof *p);
    if (p == NULL) {
        return SINTER_ENOMEM;
    }
    s->segs = p;
    s->capsegs = c;
    return SINTER_OK;
}

/* Ends direct appends to g (it is no longer the last segment, or its free space is no longer
 * pre-zeroed): later appends, if any, use fd + fdatasync. */
static void seg_dio_drop(struct sinter_store *s, struct store_seg *g)
{
    if (g->dfd >= 0) {
        s->io->close(s->ctx, g->dfd);
        g->dfd = -1;
    }
    free(g->tail);
    g->tail = NULL;
    g->tail_ok = false;
}

static void seg_release(struct sinter_store *s, struct store_seg *g)
{
    seg_dio_drop(s, g);
    if (g->fd >= 0) {
        s->io->close(s->ctx, g->fd);
        g->fd = -1;
    }
    free(g->recs);
    g->recs = NULL;
}

/* Closes and unlinks the segment at position i, removing it from the array. */
static int seg_remove(struct sinter_store *s, size_t i)
{
    char path[STORE_PATH_MAX];
    sinter_rs_path(s, path, s->segs[i].name);
    seg_release(s, &s->segs[i]);
    int e = s->io->unlink(s->ctx, path);
    memmove(&s->segs[i], &s->segs[i + 1], (s->nsegs - i - 1) * sizeof *s->segs);
    s->nsegs--;
    if (e != 0 && e != ENOENT) {
        return sinter_rs_ioerr(s, e, "unlink %s", path);
    }
    return SINTER_OK;
}

void sinter_rs_log_close(struct sinter_store *s)
{
    for (size_t i = 0; i < s->nsegs; i++) {
        seg_release(s, &s->segs[i]);
    }
    free(s->segs);
    s->segs = NULL;
    s->nsegs = s->capsegs = 0;
}

static void seg_name(char *buf, uint64_t first)
{
    snprintf(buf, 32, "seg-%020" PRIu64, first);
}

static void seg_set_salt(struct store_seg *g, uint64_t salt)
{
    uint8_t b[8];
    store_put64(b, salt);
    g->salt = salt;
    g->salt_crc = sinter_crc32c(0, b, 8);
}

/* ---- records -------------------------------------------------------------------------------- */

struct rec_view {
    uint8_t type;
    uint32_t len;
    uint64_t term;
    uint64_t index;
    uint32_t boff;
};

/* rec_check's answer for a whole record of a version this build does not know (compared by
 * address). */
static const char rec_newer_version[] = "whole record of an unknown version";

/* Checks the record whose header is at h, `avail` bytes being readable from h, and which sits at
 * segment offset off: structure and CRC, not its place in the log. Returns NULL if valid, else
 * why not. */
static const char *rec_check(const struct store_seg *g, const uint8_t *h, uint64_t avail,
                             uint64_t off, struct rec_view *v)
{
    if (avail < STORE_REC_HDR) {
        return "record header past the end of the file";
    }
    if (h[0] != STORE_VERSION && h[0] != 0) {
        /* Whole (its CRC32C verifies under this segment's salt, which only a writer of this
         * segment knows): a newer build wrote it, not a torn write; the caller refuses it
         * (internal.h). Anything else is damage, judged like any bad record. */
        uint32_t len = store_get32(h + 4);
        if ((uint64_t)len <= avail - STORE_REC_HDR) {
            uint32_t crc = sinter_crc32c(g->salt_crc, h, 28);
            crc = sinter_crc32c(crc, h + STORE_REC_HDR, len);
            if (crc == store_get32(h + 28)) {
                return rec_newer_version;
            }
        }
    }
    if (h[0] != STORE_VERSION || store_get16(h + 2) != 0) {
        static const uint8_t zero[STORE_REC_HDR];
        return memcmp(h, zero, sizeof zero) == 0 ? "zeroed record header"
                                                 : "unknown record version";
    }
    v->type = h[1];
    v->len = store_get32(h + 4);
    v->term = store_get64(h + 8);
    v->index = store_get64(h + 16);
    v->boff = store_get32(h + 24);
    if ((uint64_t)v->len > avail - STORE_REC_HDR) {
        return "record length past the end of the file";
    }
    if (v->boff > off || v->boff < STORE_SEG_HDR || (off - v->boff) % 8 != 0) {
        return "bad batch offset";
    }
    uint32_t crc = sinter_crc32c(g->salt_crc, h, 28);
    crc = sinter_crc32c(crc, h + STORE_REC_HDR, v->len);
    if (crc != store_get32(h + 28)) {
        return "CRC32C mismatch";
    }
    return NULL;
}

/* Encodes one record at p (STORE_REC_HDR + pad8(len) bytes). */
static void rec_encode(const struct store_seg *g, uint8_t *p, const struct sinter_raft_entry *e,
                       uint64_t boff)
{
    uint64_t total = STORE_REC_HDR + store_pad8(e->len);
    p[0] = STORE_VERSION;
    p[1] = (uint8_t)e->type;
    store_put16(p + 2, 0);
    store_put32(p + 4, e->len);
    store_put64(p + 8, e->term);
    store_put64(p + 16, e->index);
    store_put32(p + 24, (uint32_t)boff);
    if (e->len > 0) {
        memcpy(p + STORE_REC_HDR, e->data, e->len);
    }
    memset(p + STORE_REC_HDR + e->len, 0, total - STORE_REC_HDR - e->len);
    uint32_t crc = sinter_crc32c(g->salt_crc, p, 28);
    crc = sinter_crc32c(crc, p + STORE_REC_HDR, e->len);
    store_put32(p + 28, crc);
}

/* ---- recovery ------------------------------------------------------------------------------- */

struct scan {
    uint64_t bad_off;     /* where the valid records end (== g->end) */
    const char *why;      /* why the record at bad_off is not valid */
    bool garbage;         /* non-zero bytes at or after bad_off */
    uint64_t garbage_end; /* just past the last non-zero byte */
    bool later;           /* a valid record of a LATER batch lies after bad_off */
    uint64_t later_off;
    uint8_t newer; /* != 0: the record at bad_off is whole but of this version */
};

static uint64_t last_nonzero_end(const uint8_t *buf, uint64_t from, uint64_t sz)
{
    uint64_t i = sz;
    while (i > from && (i & 7u) != 0) {
        if (buf[i - 1] != 0) {
            return i;
        }
        i--;
    }
    while (i >= from + 8) {
        uint64_t w;
        memcpy(&w, buf + i - 8, 8);
        if (w != 0) {
            break;
        }
        i -= 8;
    }
    while (i > from) {
        if (buf[i - 1] != 0) {
            return i;
        }
        i--;
    }
    return from;
}

/* Scans one segment image: collects the valid records from the start, in order, with consecutive
 * indexes, non-decreasing terms and consistent batch offsets, then looks at what follows.
 *
 * The decisive question for what follows a bad record at offset X is whether a valid record of a
 * LATER batch exists after it (batch offset > X). Only the last batch of the log can ever be
 * unsynced (see the top of this file), and pages of an unsynced write may reach the disk in any
 * order, so valid records of the batch containing X after X are expected in a torn tail (their
 * batch offset is <= X). A record of a later batch, on the other hand, was written only after the
 * batch at X had been synced: X was durable and has since been damaged. That is the distinction
 * etcd's WAL draws between an unexpected EOF in the last file and a CRC error elsewhere. */
static int scan_segment(struct store_seg *g, const uint8_t *buf, uint64_t sz, uint64_t prev_term,
                        struct scan *r)
{
    memset(r, 0, sizeof *r);
    uint64_t off = STORE_SEG_HDR;
    uint64_t batch = 0;
    uint64_t expect = g->first;
    for (;;) {
        struct rec_view v;
        const char *why =
            off + STORE_REC_HDR <= sz ? rec_check(g, buf + off, sz - off, off, &v) : "end of file";
        if (why == NULL && v.index != expect) {
            why = "unexpected index";
        }
        if (why == NULL && (v.term == 0 || v.term < prev_term)) {
            why = "term goes backwards";
        }
        if (why == NULL && v.boff != off && v.boff != batch) {
            why = "batch offset does not continue the batch";
        }
        if (why != NULL) {
            r->why = why;
            if (why == rec_newer_version) {
                r->newer = buf[off];
            }
            break;
        }
        int rc = seg_push_rec(g, v.term, off, v.len);
        if (rc != SINTER_OK) {
            return rc;
        }
        prev_term = v.term;
        batch = v.boff;
        expect++;
        off += STORE_REC_HDR + store_pad8(v.len);
    }
    g->end = off;
    r->bad_off = off;
    r->garbage_end = last_nonzero_end(buf, off, sz);
    r->garbage = r->garbage_end > off;
    if (r->garbage) {
        for (uint64_t y = off + 8; y + STORE_REC_HDR <= sz; y += 8) {
            struct rec_view v;
            if (buf[y] == STORE_VERSION && rec_check(g, buf + y, sz - y, y, &v) == NULL &&
                v.boff > off) {
                r->later = true;
                r->later_off = y;
                break;
            }
        }
    }
    return SINTER_OK;
}

/* Zero-fill chunk of a prefix: a bounded buffer however large options.zero_prefix is, and the
 * spare's chunk size (spare.c SPARE_CHUNK): a log fdatasync of another group, process or node on
 * the same disk that arrives while a chunk is on its way waits for all of it, so chunks stay small
 * (1 MiB chunks raised raft-bench's C=64 p99 from ~2.3 to ~4 ms). */
#define ZERO_CHUNK (128u << 10)

/* Writes zeros over [from, to) of g without syncing (the caller's fsync / fdatasync follows) and
 * sets *zeroed_to to the new watermark: `to` (a block boundary or the segment size), or, when the
 * disk is full, the last block boundary the zeros reached. ENOSPC is no error here: the prefix
 * only saves the extent conversion, so a full disk ends it where it got to (said through report)
 * and appends past that point pay the conversion, as without a prefix (options.zero_prefix).
 * No memory for the zeros: no prefix, silently. Returns 0 or another errno. */
static int seg_zero_range(struct sinter_store *s, struct store_seg *g, uint64_t from, uint64_t to,
                          uint64_t *zeroed_to)
{
    *zeroed_to = from & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    if (from >= to) {
        *zeroed_to = to;
        return 0;
    }
    uint8_t *z = calloc(1, ZERO_CHUNK);
    if (z == NULL) {
        return 0;
    }
    uint64_t off = from;
    int e = 0;
    while (off < to) {
        /* Chunks end on block boundaries, so a stop leaves a watermark at one. */
        uint64_t next = (off & ~(uint64_t)(STORE_DIO_BLOCK - 1)) + ZERO_CHUNK;
        uint64_t len = (next < to ? next : to) - off;
        e = sinter_rs_pwrite_full(s, g->fd, z, (size_t)len, off);
        if (e != 0) {
            break;
        }
        off += len;
    }
    free(z);
    if (e == ENOSPC) {
        sinter_rs_report(s,
                         "segment %s: disk full while zeroing [%" PRIu64 ", %" PRIu64
                         "): appends past offset %" PRIu64 " use pwrite + fdatasync into "
                         "unwritten space",
                         g->name, from, to, off & ~(uint64_t)(STORE_DIO_BLOCK - 1));
        e = 0;
    }
    if (e == 0) {
        *zeroed_to = off == to ? to : off & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    }
    return e;
}

/* The end of the zeroed prefix after offset `from` of g (options.zero_prefix): whole blocks, at
 * most the segment. */
static uint64_t zero_target(const struct sinter_store *s, const struct store_seg *g, uint64_t from)
{
    uint64_t to = blk_up(from + s->zero_prefix);
    return to < g->size ? to : g->size;
}

static void seg_dio_open(struct sinter_store *s, struct store_seg *g, const uint8_t *h);

/* The zeroed prefix after the last record of g, which ends durably at g->end and reads as zeros
 * after it (a cut just synced, or a clean tail found at open), bounded by `bytes`: zeros over
 * zeros, then an fdatasync; sets g->zeroed_to and opens the direct descriptor (options.direct_io)
 * when there is room for a record below it. Any error (ENOSPC or EIO from the zeros or from their
 * fdatasync) only costs the prefix: said through report, g->zeroed_to stays below g->end and
 * appends use pwrite + fdatasync, as without a prefix. Safe, unlike a failed fdatasync of records:
 * the bytes in question are zeros whichever version reaches the disk, and nothing else is dirty
 * (everything before was synced), so no acknowledged byte depends on the failed sync. Failing the
 * open or the store here instead would turn an optimisation into an outage: a node whose file
 * system reports ENOSPC at writeback (NFS, thin provisioning) could not restart, and a follower's
 * truncation would fail its group. */
static void seg_zero_ahead(struct sinter_store *s, struct store_seg *g, uint64_t bytes)
{
    uint64_t zto = 0;
    uint64_t to = blk_up(g->end + bytes);
    int e = seg_zero_range(s, g, g->end, to < g->size ? to : g->size, &zto);
    const char *what = "zero";
    if (e == 0 && zto > g->end) {
        e = s->io->fdatasync(s->ctx, g->fd);
        what = "fdatasync the zeros of";
    }
    if (e != 0) {
        char ebuf[80];
        sinter_rs_report(s,
                         "segment %s: %s the free space after offset %" PRIu64
                         ": %s; appends there use pwrite + fdatasync into unwritten space",
                         g->name, what, g->end, strerror_r(e, ebuf, sizeof ebuf));
        zto = g->end & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    }
    g->zeroed_to = zto;
    seg_dio_drop(s, g);
    if (s->dio && zto > g->end) {
        seg_dio_open(s, g, NULL);
    }
}

/* Cuts segment g at offset off: everything after becomes zeros again (ftruncate, then reserve the
 * space again so the file keeps its preallocated size), then fsync (size and extents changed).
 * Then the zeroed prefix after off (options.zero_prefix) and an fdatasync: only after the cut is
 * durable, so the zeros go over zeros. Written before it, zeros that reached the disk while the
 * cut did not (a crash in between) would blank the first removed records and leave the later
 * ones: a hole followed by valid batches, which open must take for damage to durable data. */
static int seg_cut(struct sinter_store *s, struct store_seg *g, uint64_t off, bool prefix)
{
    int e = s->io->ftruncate(s->ctx, g->fd, off);
    if (e == 0) {
        e = sinter_rs_reserve(s, g->fd, off, g->size - off);
    }
    if (e == 0) {
        e = s->io->fsync(s->ctx, g->fd);
    }
    if (e != 0) {
        return sinter_rs_ioerr(s, e, "cut %s/%s at offset %" PRIu64, s->dir, g->name, off);
    }
    g->end = off;
    /* The tail was freed and reserved again: unwritten extents but for the prefix. The cached
     * tail block of a direct descriptor is stale now: dropped, reopened by seg_zero_ahead (the
     * block is reloaded at the next append). */
    g->zeroed_to = off & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    seg_dio_drop(s, g);
    if (prefix && s->zero_prefix > 0) {
        seg_zero_ahead(s, g, s->zero_prefix);
    }
    return SINTER_OK;
}

/* Opens, syncs and reads one segment file and checks its header. */
static int seg_load(struct sinter_store *s, uint64_t first, struct store_seg *g, uint8_t **buf,
                    size_t *cap)
{
    char path[STORE_PATH_MAX];
    memset(g, 0, sizeof *g);
    g->fd = -1;
    g->dfd = -1;
    g->first = first;
    seg_name(g->name, first);
    sinter_rs_path(s, path, g->name);
    int e = s->io->open(s->ctx, path, O_RDWR, 0, &g->fd);
    if (e != 0) {
        g->fd = -1;
        return sinter_rs_ioerr(s, e, "open %s", path);
    }
    /* Data a killed process wrote but never synced may sit in the page cache: make it durable
     * before we hand it to the core as persisted (it could acknowledge it). */
    e = s->io->fdatasync(s->ctx, g->fd);
    if (e == 0) {
        e = s->io->filesize(s->ctx, g->fd, &g->size);
    }
    if (e != 0) {
        return sinter_rs_ioerr(s, e, "sync %s", path);
    }
    if (g->size < STORE_SEG_HDR || g->size > SINTER_STORE_SEGMENT_SIZE_MAX) {
        return sinter_rs_err(s, SINTER_ECORRUPT,
                             "raft store: segment %s has size %" PRIu64
                             ", outside the possible range: refusing to start",
                             path, g->size);
    }
    if (sinter_rs_grow(buf, cap, g->size) != SINTER_OK) {
        return sinter_rs_err(s, SINTER_ENOMEM, "raft store: no memory to read %s", path);
    }
    size_t got = 0;
    e = sinter_rs_pread_full(s, g->fd, *buf, g->size, 0, &got);
    if (e != 0) {
        return sinter_rs_ioerr(s, e, "read %s", path);
    }
    if (got != g->size) {
        return sinter_rs_err(s, SINTER_EIO, "raft store: %s shrank while being read", path);
    }
    const uint8_t *h = *buf;
    if (memcmp(h, "SNSG", 4) != 0 || store_get16(h + 4) != STORE_VERSION ||
        store_get32(h + 28) != sinter_crc32c(0, h, 28) || store_get64(h + 16) != first) {
        /* The header was synced before the file got its name, so it cannot be torn. */
        return sinter_rs_err(s, SINTER_ECORRUPT,
                             "raft store: segment %s has an invalid header (offset 0): refusing to "
                             "start",
                             path);
    }
    seg_set_salt(g, store_get64(h + 8));
    return SINTER_OK;
}

/* Drops the leading segments that lie wholly at or below the newest valid snapshot when a gap
 * separates them from the rest of the log, before the contiguity check would call the gap lost
 * entries. They are an old prefix the snapshot covers whose removal did not reach the disk: a
 * compacted prefix queued for removal (options.defer_unlink) or only partly unlinked when the
 * process died, after which an installed snapshot replaced the rest of the log (discard_all
 * removes the current segments at once) and new entries were appended after it. Nothing in them
 * is needed (Raft paper section 7: the snapshot replaces the log prefix it covers). Only a gap
 * the snapshot bridges counts: the segment after it must start at or below snapshot + 1, else
 * the gap is still ECORRUPT below. Segments with damaged records are left to the checks below. */
static int drop_covered_prefix(struct sinter_store *s, struct scan *res, size_t *dropped)
{
    const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
    if (sn == NULL) {
        return SINTER_OK;
    }
    uint64_t si = sn->meta.index;
    size_t upto = 0; /* segments [0, upto) go */
    for (size_t i = 0; i + 1 < s->nsegs; i++) {
        const struct store_seg *g = &s->segs[i];
        if (res[i].garbage || res[i].later || g->first + g->n > si + 1) {
            break; /* damaged, or holds an entry past the snapshot: kept from here on */
        }
        uint64_t next = s->segs[i + 1].first;
        if (next != g->first + g->n && next <= si + 1) {
            upto = i + 1;
        }
    }
    if (upto == 0) {
        return SINTER_OK;
    }
    sinter_rs_report(s,
                     "segments %s to %s (index %" PRIu64 " to %" PRIu64
                     ") are covered by snapshot %s (index %" PRIu64
                     ") and do not reach the rest of the log at %s: a removal the crash cut "
                     "short; removing them",
                     s->segs[0].name, s->segs[upto - 1].name, s->segs[0].first,
                     s->segs[upto - 1].first + s->segs[upto - 1].n - 1, sn->name, si,
                     s->segs[upto].name);
    for (size_t i = 0; i < upto; i++) {
        int rc = seg_remove(s, 0);
        memmove(&res[0], &res[1], s->nsegs * sizeof *res); /* s->nsegs: one less now */
        (*dropped)++;
        if (rc != SINTER_OK) {
            return rc;
        }
    }
    return SINTER_OK;
}

int sinter_rs_log_load(struct sinter_store *s, const uint64_t *firsts, size_t n, uint64_t *torn)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    struct scan *res = calloc(n ? n : 1, sizeof *res);
    int rc = segs_reserve(s, n);
    if (res == NULL || rc != SINTER_OK) {
        free(res);
        return sinter_rs_err(s, SINTER_ENOMEM, "raft store %s: out of memory", s->dir);
    }
    uint64_t prev_term = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_seg *g = &s->segs[s->nsegs];
        rc = seg_load(s, firsts[i], g, &buf, &cap);
        s->nsegs++; /* owned by the array from now on, even half-loaded */
        if (rc == SINTER_OK) {
            rc = scan_segment(g, buf, g->size, prev_term, &res[i]);
        }
        if (rc != SINTER_OK) {
            goto out;
        }
        if (g->n > 0) {
            prev_term = g->recs[g->n - 1].term;
        }
    }
    free(buf);
    buf = NULL;

    /* Segments created for a batch that never reached them (a crash right after creation) are
     * empty and clean: drop them first, so the segment that really ends the log is judged as the
     * last one. */
    size_t dropped = 0;
    while (s->nsegs > 0 && s->segs[s->nsegs - 1].n == 0 && !res[s->nsegs - 1].garbage) {
        rc = seg_remove(s, s->nsegs - 1);
        if (rc != SINTER_OK) {
            goto out;
        }
        dropped++;
    }
    rc = drop_covered_prefix(s, res, &dropped);
    if (rc != SINTER_OK) {
        goto out;
    }
    for (size_t i = 0; i < s->nsegs; i++) {
        struct store_seg *g = &s->segs[i];
        struct scan *r = &res[i];
        bool last = i + 1 == s->nsegs;
        if (r->newer != 0) {
            /* Never cut, wherever it is: a whole record is no torn write, and it may hold an
             * acknowledged entry that a newer build wrote before this one was started on its
             * data (a downgrade). */
            rc = sinter_rs_err(s, SINTER_ECORRUPT,
                               "raft store %s: segment %s offset %" PRIu64 " (index %" PRIu64
                               "): record version %u is unknown to this build (it writes and "
                               "reads version %u); refusing to start rather than drop the record "
                               "and those after it",
                               s->dir, g->name, r->bad_off, g->first + g->n, (unsigned)r->newer,
                               STORE_VERSION);
            goto out;
        }
        if (r->later) {
            rc = sinter_rs_err(s, SINTER_ECORRUPT,
                               "raft store %s: segment %s offset %" PRIu64 " (index %" PRIu64
                               "): %s, yet a later batch follows at offset %" PRIu64
                               ": durable log data in the middle of the log is damaged; refusing "
                               "to start rather than lose committed entries",
                               s->dir, g->name, r->bad_off, g->first + g->n, r->why, r->later_off);
            goto out;
        }
        if (!last && r->garbage) {
            rc = sinter_rs_err(s, SINTER_ECORRUPT,
                               "raft store %s: segment %s offset %" PRIu64 " (index %" PRIu64
                               "): %s, yet later segment %s exists: durable log data is damaged; "
                               "refusing to start rather than lose committed entries",
                               s->dir, g->name, r->bad_off, g->first + g->n, r->why,
                               s->segs[i + 1].name);
            goto out;
        }
        if (!last && (g->n == 0 || s->segs[i + 1].first != g->first + g->n)) {
            rc =
                sinter_rs_err(s, SINTER_ECORRUPT,
                              "raft store %s: segment %s ends at index %" PRIu64
                              " but the next segment is %s: entries are missing; refusing to start",
                              s->dir, g->name, g->first + g->n - 1, s->segs[i + 1].name);
            goto out;
        }
        if (last && r->garbage) {
            /* A torn or corrupt tail: never returned, cut off so the next append starts on a
             * clean end (a stale record must not be revived by a later scan). */
            sinter_rs_report(s,
                             "segment %s: %s at offset %" PRIu64 ": cut %" PRIu64
                             " bytes of torn or corrupt tail; the log ends at index %" PRIu64,
                             g->name, r->why, r->bad_off, r->garbage_end - r->bad_off,
                             g->first + g->n - 1);
            *torn += r->garbage_end - r->bad_off;
            /* No prefix for a segment left empty: removed just below. */
            rc = seg_cut(s, g, r->bad_off, g->n > 0);
            if (rc != SINTER_OK) {
                goto out;
            }
            if (g->n == 0) {
                rc = seg_remove(s, i);
                if (rc != SINTER_OK) {
                    goto out;
                }
                dropped++;
            }
        }
    }
    if (dropped > 0) {
        int e = s->io->syncdir(s->ctx, s->dir);
        if (e != 0) {
            rc = sinter_rs_ioerr(s, e, "sync directory %s", s->dir);
            goto out;
        }
    }
    if (s->nsegs > 0 && !res[s->nsegs - 1].garbage && s->zero_prefix > 0 &&
        s->segs[s->nsegs - 1].n > 0) {
        /* The last segment's free space is unknown after open (a spare's zeros, or fallocate's
         * unwritten extents: nothing records which), so appends would pay the extent conversion
         * until the first spare is ready. Zero a prefix after its last record and sync it. Safe at
         * any point of a crash: the scan found only zeros after the end (no garbage), so this
         * writes zeros over zeros and the log reads the same whatever part of it reached the disk.
         * One chunk at most, not options.zero_prefix: a restart opens every group of the node in
         * a row on one thread, most of them idle, and each must not cost a MiB of writes and its
         * sync (raft_store.h, zero_prefix). A segment without records gets none either (nothing
         * says it will be written), and a cut segment (garbage) got its prefix in seg_cut. */
        s->zero_open = s->zero_prefix < ZERO_CHUNK ? s->zero_prefix : ZERO_CHUNK;
        seg_zero_ahead(s, &s->segs[s->nsegs - 1], s->zero_open);
    }
    if (s->nsegs == 0 && n > 0) {
        /* Every segment was empty: the log restarts where the first one would have begun. */
        s->next_index = firsts[0];
    }
    rc = SINTER_OK;
out:
    free(buf);
    free(res);
    return rc;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* Opens the direct descriptor of segment g (under its final name), whose free space is zeroed up
 * to g->zeroed_to. h: the durable header of a new, empty segment (the tail block is then known:
 * header, zeros); NULL for a segment with records (the tail block is read at the first direct
 * append). A failure is not an error: the segment is written like any other (fd + fdatasync),
 * which is always correct. */
static void seg_dio_open(struct sinter_store *s, struct store_seg *g, const uint8_t *h)
{
    char path[STORE_PATH_MAX];
    void *t = NULL;
    if (posix_memalign(&t, STORE_DIO_BLOCK, STORE_DIO_BLOCK) != 0) {
        return;
    }
    int fd = -1;
    sinter_rs_path(s, path, g->name);
    if (s->io->open(s->ctx, path, O_WRONLY | O_DIRECT | O_DSYNC, 0, &fd) != 0) {
        free(t);
        return;
    }
    memset(t, 0, STORE_DIO_BLOCK);
    g->dfd = fd;
    g->tail = t;
    g->tail_ok = false;
    if (h != NULL) {
        /* The first block as on disk: header (just synced), then zeros. */
        memcpy(t, h, STORE_SEG_HDR);
        g->tail_ok = true;
    }
}

/* Grows the direct-write buffer (4 KiB-aligned, as O_DIRECT requires) to at least need bytes. */
static int dio_grow(struct sinter_store *s, uint64_t need)
{
    if (need <= s->dcap) {
        return SINTER_OK;
    }
    void *p = NULL;
    size_t c = s->dcap ? s->dcap : 64u * 1024u;
    while (c < need) {
        c *= 2;
    }
    if (posix_memalign(&p, STORE_DIO_BLOCK, c) != 0) {
        return SINTER_ENOMEM;
    }
    free(s->dbuf);
    s->dbuf = p;
    s->dcap = c;
    return SINTER_OK;
}

/* The direct-write buffer a batch of `bytes` (encoded) may need in any one segment: its records
 * plus the head of the block where they start, in whole blocks, never more than a segment
 * (segment_size is a multiple of the block when direct I/O is on). */
static uint64_t dio_need(const struct sinter_store *s, uint64_t bytes)
{
    uint64_t need = (bytes + 2u * STORE_DIO_BLOCK - 1) & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    return need < s->opts.segment_size ? need : s->opts.segment_size;
}

/* Writes the encoded records buf[0, len), which start at segment offset boff == g->end, through
 * g's direct descriptor: from the start of the block holding boff (the cached tail block supplies
 * the bytes before boff) to the next block boundary (zeros after the records, as on disk), in one
 * O_DIRECT | O_DSYNC pwrite that is durable when it returns. Rewriting bytes with their own value
 * keeps every earlier record intact even if the write is torn at a crash (a sector holds either
 * its old or its new content, and both carry the same earlier records). Returns 0 or an errno;
 * *wrote is false only when the write was refused with EINVAL before any byte was written. */
static int seg_dio_write(struct sinter_store *s, struct store_seg *g, const uint8_t *buf,
                         uint64_t len, uint64_t boff, bool *wrote)
{
    uint64_t bs = boff & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    uint64_t pre = boff - bs;
    uint64_t alen = (pre + len + STORE_DIO_BLOCK - 1) & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    *wrote = false;
    if (dio_grow(s, alen) != SINTER_OK) {
        /* Not reached: sinter_store_append grew the buffer before writing anything. */
        return ENOMEM;
    }
    if (!g->tail_ok) {
        /* Reload through the buffered descriptor: coherent with direct writes (the kernel
         * invalidates the page cache over their range). */
        size_t got = 0;
        int e = sinter_rs_pread_full(s, g->fd, g->tail, STORE_DIO_BLOCK, bs, &got);
        if (e != 0) {
            return e;
        }
        if (got != STORE_DIO_BLOCK) {
            return EIO;
        }
        memset(g->tail + pre, 0, STORE_DIO_BLOCK - pre);
        g->tail_ok = true;
    }
    memcpy(s->dbuf, g->tail, (size_t)pre);
    memcpy(s->dbuf + pre, buf, (size_t)len);
    memset(s->dbuf + pre + len, 0, (size_t)(alen - pre - len));
    g->tail_ok = false; /* until the write is known to have succeeded */
    size_t done = 0;
    int e = s->io->pwrite(s->ctx, g->dfd, s->dbuf, (size_t)alen, bs, &done);
    /* EINVAL with nothing written: refused (the caller may fall back to the buffered
     * descriptor). Any other failure may have written part of the range. */
    *wrote = !(e == EINVAL && done == 0);
    if (e == 0 && done == 0) {
        e = EIO; /* a zero-length write would loop forever */
    }
    if (e == 0 && done < alen) {
        /* Short: continue at the aligned offset the kernel stopped at (or fail with EINVAL). */
        e = sinter_rs_pwrite_full(s, g->dfd, s->dbuf + done, (size_t)(alen - done), bs + done);
    }
    if (e != 0) {
        return e;
    }
    uint64_t nbs = (boff + len) & ~(uint64_t)(STORE_DIO_BLOCK - 1);
    if (nbs - bs < alen) {
        memcpy(g->tail, s->dbuf + (nbs - bs), STORE_DIO_BLOCK);
    } else {
        memset(g->tail, 0, STORE_DIO_BLOCK); /* the records end on a block boundary */
    }
    g->tail_ok = true;
    return 0;
}

/* Creates segment `first` (see the top of this file) as the new last element of s->segs: from
 * the spare if one is ready (only the header is new: write it over the zeros, fdatasync, since the
 * helper already made the size and extents durable), else with fallocate as before the spare
 * existed (the fallback when no spare is ready: nothing waits for the helper). Either way the
 * header is durable before the file gets its name. *named tells whether the file got its final
 * name (then a failure leaves it behind). */
static int seg_create(struct sinter_store *s, uint64_t first, bool *named)
{
    char path[STORE_PATH_MAX];
    char tmp[STORE_PATH_MAX];
    char tname[40];
    *named = false;
    int rc = segs_reserve(s, s->nsegs + 1);
    if (rc != SINTER_OK) {
        return sinter_rs_err(s, rc, "raft store %s: out of memory", s->dir);
    }
    struct store_seg *g = &s->segs[s->nsegs];
    memset(g, 0, sizeof *g);
    g->fd = -1;
    g->dfd = -1;
    g->first = first;
    g->size = s->opts.segment_size;
    g->end = STORE_SEG_HDR;
    seg_name(g->name, first);
    seg_set_salt(g, sinter_rs_random64());
    sinter_rs_path(s, path, g->name);
    /* A rollover allows the next spare job even if the last one failed (spare.c). */
    s->spare_failed = false;
    bool spared = sinter_rs_spare_take(s, &g->fd, tname, sizeof tname);
    if (!spared) {
        snprintf(tname, sizeof tname, "%s.tmp", g->name);
    }
    sinter_rs_path(s, tmp, tname);

    uint8_t h[STORE_SEG_HDR];
    memset(h, 0, sizeof h);
    memcpy(h, "SNSG", 4);
    store_put16(h + 4, STORE_VERSION);
    store_put64(h + 8, g->salt);
    store_put64(h + 16, first);
    store_put32(h + 28, sinter_crc32c(0, h, 28));

    const char *what = "create";
    int e = 0;
    if (spared) {
        g->zeroed_to = g->size;
        e = sinter_rs_pwrite_full(s, g->fd, h, sizeof h, 0);
        what = "write header of";
        if (e == 0) {
            e = s->io->fdatasync(s->ctx, g->fd);
            what = "fdatasync";
        }
    } else {
        e = s->io->open(s->ctx, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644, &g->fd);
        if (e != 0) {
            g->fd = -1;
            return sinter_rs_ioerr(s, e, "create %s", tmp);
        }
        e = sinter_rs_reserve(s, g->fd, 0, g->size);
        if (e != 0) {
            what = "preallocate";
        }
        if (e == 0) {
            e = sinter_rs_pwrite_full(s, g->fd, h, sizeof h, 0);
            what = "write header of";
        }
        if (e == 0 && s->zero_prefix > 0 && !s->spare_out) {
            /* The zeroed prefix (options.zero_prefix): written before the fsync below, which
             * makes it durable with the header for no extra sync, and before the rename, so a
             * crash in the middle leaves a *.tmp file that open removes. Without it, the first
             * segment of every new group took its appends through the extent conversion until
             * the first spare was ready. None while a spare job is out: this rollover came
             * because the helper is behind, i.e. the disk is busy, where the zeros would stall
             * the loop longest, and the spare soon takes over anyway. */
            e = seg_zero_range(s, g, STORE_SEG_HDR, zero_target(s, g, 0), &g->zeroed_to);
            what = "zero the prefix of";
        }
        if (e == 0) {
            e = s->io->fsync(s->ctx, g->fd);
            what = "fsync";
        }
    }
    if (e == 0) {
        e = s->io->rename(s->ctx, tmp, path);
        what = "rename";
    }
    if (e == 0 && g->zeroed_to > STORE_SEG_HDR && s->dio) {
        seg_dio_open(s, g, h); /* renamed just above */
    }
    if (e != 0) {
        rc = sinter_rs_ioerr(s, e, "%s new segment %s", what, tmp);
        s->io->close(s->ctx, g->fd);
        g->fd = -1;
        s->io->unlink(s->ctx, tmp);
        return rc;
    }
    s->nsegs++;
    *named = true;
    /* The name must be durable before records in the file are acknowledged. */
    e = s->io->syncdir(s->ctx, s->dir);
    if (e != 0) {
        return sinter_rs_ioerr(s, e, "sync directory %s after creating %s", s->dir, g->name);
    }
    return SINTER_OK;
}

static int log_truncate(struct sinter_store *s, uint64_t from)
{
    size_t i = seg_find(s, from);
    bool removed = false;
    int rc;
    while (s->nsegs - 1 > i) {
        rc = seg_remove(s, s->nsegs - 1);
        removed = true;
        if (rc != SINTER_OK) {
            return sinter_rs_fail(s, rc);
        }
    }
    if (s->segs[i].first == from) {
        rc = seg_remove(s, i);
        removed = true;
        if (rc != SINTER_OK) {
            return sinter_rs_fail(s, rc);
        }
        if (s->nsegs == 0) {
            s->next_index = from;
        }
    }
    if (removed) {
        /* Before touching the cut segment: old segments must never reappear after new entries. */
        int e = s->io->syncdir(s->ctx, s->dir);
        if (e != 0) {
            return sinter_rs_fail(s, sinter_rs_ioerr(s, e, "sync directory %s", s->dir));
        }
    }
    if (s->nsegs > i) {
        struct store_seg *g = &s->segs[i];
        uint64_t keep = from - g->first;
        /* With a prefix even when nothing is kept: the segment stays the last one and takes the
         * next appends. */
        rc = seg_cut(s, g, g->recs[keep].off, true);
        if (rc != SINTER_OK) {
            return sinter_rs_fail(s, rc);
        }
        g->n = keep;
    }
    return SINTER_OK;
}

int sinter_store_truncate(struct sinter_store *s, uint64_t from)
{
    int rc = sinter_rs_check_failed(s);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (from > sinter_rs_last(s)) {
        return SINTER_OK;
    }
    if (from < sinter_rs_first(s)) {
        return sinter_rs_err(s, SINTER_ECOMPACTED,
                             "raft store %s: cannot truncate from %" PRIu64
                             ": entries before %" PRIu64 " are compacted",
                             s->dir, from, sinter_rs_first(s));
    }
    return log_truncate(s, from);
}

static uint64_t rec_size(const struct sinter_raft_entry *e)
{
    return STORE_REC_HDR + store_pad8(e->len);
}

/* Drops segments created for a batch that failed before reaching them from the array (their
 * files stay: the next open removes empty trailing segments). */
static void drop_empty_tail(struct sinter_store *s)
{
    while (s->nsegs > 0 && s->segs[s->nsegs - 1].n == 0) {
        seg_release(s, &s->segs[s->nsegs - 1]);
        s->nsegs--;
        if (s->nsegs == 0) {
            break;
        }
    }
}

int sinter_store_append(struct sinter_store *s, const struct sinter_raft_entry *e, size_t n)
{
    int rc = sinter_rs_check_failed(s);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (n == 0 || e == NULL) {
        return sinter_rs_err(s, SINTER_EINVAL, "raft store: empty append");
    }
    uint64_t k = e[0].index;
    uint64_t max_rec = (uint64_t)s->opts.segment_size - STORE_SEG_HDR;
    for (size_t i = 0; i < n; i++) {
        if (e[i].index != k + i || e[i].type > 255 || e[i].term == 0 ||
            (i > 0 && e[i].term < e[i - 1].term) || (e[i].len > 0 && e[i].data == NULL)) {
            return sinter_rs_err(s, SINTER_EINVAL,
                                 "raft store: append: entry %zu (index %" PRIu64 ", term %" PRIu64
                                 ", type %" PRIu32
                                 ") breaks consecutive indexes, non-decreasing terms or type < 256",
                                 i, e[i].index, e[i].term, e[i].type);
        }
        if (rec_size(&e[i]) > max_rec) {
            return sinter_rs_err(s, SINTER_ETOOBIG,
                                 "raft store: entry %" PRIu64 " of %" PRIu32
                                 " bytes does not fit in a segment of %" PRIu32 " bytes",
                                 e[i].index, e[i].len, s->opts.segment_size);
        }
    }
    uint64_t first = sinter_rs_first(s);
    uint64_t last = sinter_rs_last(s);
    if (k == 0 || k > last + 1) {
        return sinter_rs_err(s, SINTER_EINVAL,
                             "raft store: append at index %" PRIu64 " leaves a gap after %" PRIu64,
                             k, last);
    }
    if (k < first) {
        return sinter_rs_err(s, SINTER_ECOMPACTED,
                             "raft store: append at index %" PRIu64 " below first index %" PRIu64,
                             k, first);
    }
    if (k > first) {
        uint64_t pt = 0;
        sinter_store_term(s, k - 1, &pt);
        if (e[0].term < pt) {
            return sinter_rs_err(s, SINTER_EINVAL,
                                 "raft store: append of term %" PRIu64 " after index %" PRIu64
                                 " of term %" PRIu64 ": terms go backwards",
                                 e[0].term, k - 1, pt);
        }
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += rec_size(&e[i]);
    }
    /* The write buffer holds one segment's share of the batch, never more than the batch or a
     * segment: grow it before anything changes. Growing it later, per segment, could fail after
     * the batch's next segment file was created and named, leaving an empty segment on disk that
     * a later rollover at another index would strand in the middle of the log. */
    if (sinter_rs_grow(&s->wbuf, &s->wcap, bytes < max_rec ? bytes : max_rec) != SINTER_OK) {
        return sinter_rs_err(s, SINTER_ENOMEM, "raft store %s: out of memory for the write buffer",
                             s->dir);
    }
    if (s->dio) {
        /* The direct-write buffer grows before anything changes too: out of memory is then
         * SINTER_ENOMEM with the store usable, not a failed write (nothing is written). */
        if (dio_grow(s, dio_need(s, bytes)) != SINTER_OK) {
            return sinter_rs_err(s, SINTER_ENOMEM,
                                 "raft store %s: out of memory for the direct-write buffer",
                                 s->dir);
        }
    }
    if (k <= last) {
        rc = log_truncate(s, k);
        if (rc != SINTER_OK) {
            return rc;
        }
    }

    /* Plan: which entries open a new segment. Create those segments before writing anything. */
    size_t base = s->nsegs;
    uint64_t room = 0;
    uint64_t last_lim = 0; /* where the plan lets records in the current last segment end */
    if (s->nsegs > 0) {
        const struct store_seg *g = &s->segs[s->nsegs - 1];
        room = g->size - g->end;
        if (g->zeroed_to < g->size && g->n > 0 && s->spare_fd >= 0) {
            /* Its free space past the watermark is unwritten (fallocate, cut, or unknown after
             * open, beyond the store's own zeroed prefix): every append there would commit the
             * journal for the extent conversion. Fill the prefix, then leave the segment for the
             * ready spare; zeros after its last record are a normal segment end (raft_store.h,
             * "Spare"). */
            room = g->zeroed_to > g->end ? g->zeroed_to - g->end : 0;
        }
        last_lim = g->end + room;
    }
    size_t target = s->nsegs > 0 && rec_size(&e[0]) <= room ? s->nsegs - 1 : s->nsegs;
    for (size_t i = 0; i < n; i++) {
        uint64_t rs = rec_size(&e[i]);
        if (rs > room) {
            bool named = false;
            rc = seg_create(s, e[i].index, &named);
            if (rc != SINTER_OK) {
                if (named) {
                    return sinter_rs_fail(s, rc); /* directory state unknown */
                }
                /* Undo the segments made for this batch: nothing was written, the store stays
                 * usable and the append may be retried (disk full is not fatal). */
                while (s->nsegs > base) {
                    char msg[STORE_ERRMSG_SIZE];
                    memcpy(msg, s->err, sizeof msg);
                    int rc2 = seg_remove(s, s->nsegs - 1);
                    if (rc2 == SINTER_OK) {
                        int e2 = s->io->syncdir(s->ctx, s->dir);
                        rc2 = e2 ? sinter_rs_ioerr(s, e2, "sync directory %s", s->dir) : SINTER_OK;
                    }
                    if (rc2 != SINTER_OK) {
                        return sinter_rs_fail(s, rc2);
                    }
                    memcpy(s->err, msg, sizeof msg);
                }
                return rc;
            }
            room = s->segs[s->nsegs - 1].size - STORE_SEG_HDR;
        }
        room -= rs;
    }

    /* Write: one buffer, one pwrite and one fdatasync per segment touched. */
    size_t i = 0;
    while (i < n) {
        struct store_seg *g = &s->segs[target];
        uint64_t boff = g->end;
        uint64_t len = 0;
        size_t j = i;
        /* The plan's limit, not the file's: the segment kept up to its watermark (spare ready)
         * must not take the records planned for the next one. */
        uint64_t lim = target + 1 == base ? last_lim : g->size;
        while (j < n && g->end + len + rec_size(&e[j]) <= lim) {
            len += rec_size(&e[j]);
            j++;
        }
        if (j == i || sinter_rs_grow(&s->wbuf, &s->wcap, len) != SINTER_OK) {
            rc = j == i ? sinter_rs_err(s, SINTER_EINTERNAL, "raft store: append plan mismatch")
                        : sinter_rs_err(s, SINTER_ENOMEM, "raft store: out of memory");
            drop_empty_tail(s);
            return rc;
        }
        uint64_t p = 0;
        for (size_t x = i; x < j; x++) {
            rec_encode(g, s->wbuf + p, &e[x], boff);
            p += rec_size(&e[x]);
        }
        int err = 0;
        if (g->dfd >= 0 && blk_up(boff + len) > g->zeroed_to) {
            /* Past the zeroed watermark: unwritten space, where an O_DSYNC write would commit the
             * journal anyway; later appends only go further, so this segment goes on with
             * pwrite + fdatasync (until the next rollover, into a spare if one is ready). */
            seg_dio_drop(s, g);
        }
        bool buffered = g->dfd < 0;
        if (!buffered) {
            bool wrote = true;
            err = seg_dio_write(s, g, s->wbuf, len, boff, &wrote);
            if (err == EINVAL && !wrote) {
                /* The probe passed for the directory, yet this inode refuses O_DIRECT (some
                 * file systems decide per inode: inline data, encryption, DAX...). Nothing was
                 * written: this segment goes on with pwrite + fdatasync, always correct. */
                sinter_rs_report(s,
                                 "segment %s: O_DIRECT | O_DSYNC write refused (EINVAL): direct "
                                 "I/O off for this segment, appends use pwrite + fdatasync",
                                 g->name);
                seg_dio_drop(s, g);
                buffered = true;
                err = 0;
            }
        }
        if (buffered) {
            err = sinter_rs_pwrite_full(s, g->fd, s->wbuf, len, boff);
            if (err == 0) {
                err = s->io->fdatasync(s->ctx, g->fd);
            }
        }
        if (err != 0) {
            rc = sinter_rs_ioerr(
                s, err, "write %s/%s at offset %" PRIu64 " (entries %" PRIu64 "..%" PRIu64 ")",
                s->dir, g->name, boff, e[i].index, e[j - 1].index);
            drop_empty_tail(s);
            return sinter_rs_fail(s, rc);
        }
        p = boff;
        for (size_t x = i; x < j; x++) {
            if (seg_push_rec(g, e[x].term, p, e[x].len) != SINTER_OK) {
                /* Durable but not indexed: only a reopen can index it. */
                sinter_rs_err(s, SINTER_ENOMEM, "raft store: out of memory indexing the log");
                drop_empty_tail(s);
                return sinter_rs_fail(s, SINTER_ENOMEM);
            }
            p += rec_size(&e[x]);
        }
        g->end = boff + len;
        i = j;
        target++;
    }
    /* Only the last segment is appended to: free the direct descriptor and tail block of every
     * other one. Not only of those this batch wrote: in a plain rollover the old last segment is
     * not written at all (the first record did not fit), and its descriptor used to stay open
     * until compaction, one extra per segment. Not in seg_create either: its undo path can make
     * the old segment the last one again. All of them, not just the one before this batch's new
     * segments: a batch that failed halfway (out of memory) may have left one behind; the loop
     * is a compare per segment. */
    for (size_t x = 0; x + 1 < s->nsegs; x++) {
        seg_dio_drop(s, &s->segs[x]);
    }
    /* And the last one's once not even an empty record fits below its watermark: the next append
     * goes buffered anyway (sinter_store_direct_io_active says so from now on). */
    if (s->nsegs > 0 && !sinter_store_direct_io_active(s)) {
        seg_dio_drop(s, &s->segs[s->nsegs - 1]);
    }
    for (size_t x = 0; x < n; x++) {
        s->appended += rec_size(&e[x]);
    }
    return SINTER_OK;
}

/* ---- removing the prefix -------------------------------------------------------------------- */

/* Sets aside a compacted segment, g at path (options.defer_unlink): it is kept for the next spare
 * job to zero over (sinter_store_spare_want), and the one kept before it, older, is queued for
 * removal. Only a whole segment is kept, so the spare needs no allocation. PostgreSQL recycles
 * its old WAL segments for the same reason. Why: unlinking a 64 MiB segment frees its blocks in
 * one journal commit, and on a file system mounted -o discard their discard kept this VM's disk
 * busy for 30-60 ms, during which every node's log append waited (raft-bench's commit gaps with
 * snapshots on, bench/FINDINGS.md F6); the spare then allocated 64 MiB anew. Recycled, a segment
 * costs neither. Crash safety: the kept segment is the newest compacted one, so the files queued
 * before it are older and a crash at any point leaves a contiguous old prefix, or, once a spare
 * job renamed it away while older ones still wait for removal, a gap the newest snapshot covers,
 * which open() removes (drop_covered_prefix). SINTER_OK, or SINTER_ENOMEM from the queue (the
 * caller then unlinks g itself). */
static int seg_hold(struct sinter_store *s, const struct store_seg *g, const char *path)
{
    if (s->recycle_name[0] != '\0') {
        char old[STORE_PATH_MAX];
        sinter_rs_path(s, old, s->recycle_name);
        if (sinter_rs_garbage_add(s, old) != SINTER_OK) {
            /* No memory to queue it: removed now, on this thread, rather than left before the
             * newer segments the caller would then remove at once (a gap open() must report). */
            (void)s->io->unlink(s->ctx, old);
        }
        s->recycle_name[0] = '\0';
    }
    if (g->size != s->opts.segment_size || strlen(g->name) >= sizeof s->recycle_name) {
        return sinter_rs_garbage_add(s, path);
    }
    memcpy(s->recycle_name, g->name, strlen(g->name) + 1);
    return SINTER_OK;
}

int sinter_store_compact(struct sinter_store *s, uint64_t upto)
{
    int rc = sinter_rs_check_failed(s);
    if (rc != SINTER_OK) {
        return rc;
    }
    const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
    if (sn == NULL || upto > sn->meta.index) {
        return sinter_rs_err(s, SINTER_EINVAL,
                             "raft store %s: compact up to %" PRIu64
                             " beyond the newest durable snapshot (%" PRIu64 ")",
                             s->dir, upto, sn ? sn->meta.index : 0);
    }
    bool removed = false;
    while (s->nsegs > 1 && s->segs[1].first <= upto + 1) {
        char path[STORE_PATH_MAX];
        sinter_rs_path(s, path, s->segs[0].name);
        if (s->opts.defer_unlink && seg_hold(s, &s->segs[0], path) == SINTER_OK) {
            /* Detached: the file, an old prefix the snapshot covers, goes later (options), or
             * becomes the next spare (seg_hold). */
            seg_release(s, &s->segs[0]);
            memmove(&s->segs[0], &s->segs[1], (s->nsegs - 1) * sizeof *s->segs);
            s->nsegs--;
            continue;
        }
        rc = seg_remove(s, 0);
        removed = true;
        if (rc != SINTER_OK) {
            break;
        }
    }
    if (removed) {
        int e = s->io->syncdir(s->ctx, s->dir);
        if (e != 0 && rc == SINTER_OK) {
            rc = sinter_rs_ioerr(s, e, "sync directory %s", s->dir);
        }
    }
    return rc;
}

int sinter_rs_log_discard_all(struct sinter_store *s, uint64_t next_index)
{
    s->discards++;
    if (s->recycle_name[0] != '\0') {
        /* The segment kept for a spare would no longer join the log that starts at next_index:
         * queued (else removed at once), so that a restart does not find it before a gap. */
        char path[STORE_PATH_MAX];
        sinter_rs_path(s, path, s->recycle_name);
        s->recycle_name[0] = '\0';
        if (sinter_rs_garbage_add(s, path) != SINTER_OK) {
            (void)s->io->unlink(s->ctx, path);
        }
    }
    bool removed = s->nsegs > 0;
    while (s->nsegs > 0) {
        int rc = seg_remove(s, s->nsegs - 1);
        if (rc != SINTER_OK) {
            return sinter_rs_fail(s, rc);
        }
    }
    if (removed) {
        int e = s->io->syncdir(s->ctx, s->dir);
        if (e != 0) {
            return sinter_rs_fail(s, sinter_rs_ioerr(s, e, "sync directory %s", s->dir));
        }
    }
    s->next_index = next_index;
    return SINTER_OK;
}

int sinter_store_snapshot_installed(struct sinter_store *s,
                                    const struct sinter_raft_snapshot_meta *meta)
{
    int rc = sinter_rs_check_failed(s);
    if (rc != SINTER_OK) {
        return rc;
    }
    const struct store_snapinfo *sn = sinter_rs_snap_newest(s);
    if (sn == NULL || sn->meta.index != meta->index || sn->meta.term != meta->term) {
        return sinter_rs_err(s, SINTER_EINVAL,
                             "raft store %s: snapshot (%" PRIu64 ", %" PRIu64
                             ") is not the newest durable one",
                             s->dir, meta->index, meta->term);
    }
    uint64_t t = 0;
    if (sinter_store_term(s, meta->index, &t) == SINTER_OK && t == meta->term) {
        return sinter_store_compact(s, meta->index);
    }
    if (s->nsegs == 0 && s->next_index == meta->index + 1) {
        return SINTER_OK;
    }
    return sinter_rs_log_discard_all(s, meta->index + 1);
}

/* ---- reading -------------------------------------------------------------------------------- */

int sinter_store_read(struct sinter_store *s, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                      struct sinter_raft_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (lo == 0) {
        return sinter_rs_err(s, SINTER_EINVAL, "raft store: read from index 0");
    }
    if (lo < sinter_rs_first(s)) {
        return sinter_rs_err(s, SINTER_ECOMPACTED,
                             "raft store: read from %" PRIu64 " below first index %" PRIu64, lo,
                             sinter_rs_first(s));
    }
    uint64_t last = sinter_rs_last(s);
    if (hi > last) {
        hi = last;
    }
    if (lo > hi) {
        return SINTER_OK;
    }
    /* Size the result from the index: one allocation for the array and all data. */
    uint64_t count = 0;
    uint64_t bytes = 0;
    for (uint64_t x = lo; x <= hi;) {
        const struct store_seg *g = &s->segs[seg_find(s, x)];
        for (; x <= hi && x < g->first + g->n; x++) {
            uint32_t len = g->recs[x - g->first].len;
            if (count > 0 && max_bytes > 0 && bytes + len > max_bytes) {
                hi = x - 1;
                break;
            }
            count++;
            bytes += len;
        }
    }
    size_t head = (size_t)count * sizeof(struct sinter_raft_entry);
    uint8_t *block = malloc(head + (size_t)bytes + 1);
    if (block == NULL) {
        return sinter_rs_err(s, SINTER_ENOMEM,
                             "raft store: out of memory reading %" PRIu64 " bytes", bytes);
    }
    struct sinter_raft_entry *ents = (struct sinter_raft_entry *)block;
    uint8_t *data = block + head;
    size_t k = 0;
    for (uint64_t x = lo; x <= hi;) {
        const struct store_seg *g = &s->segs[seg_find(s, x)];
        uint64_t a = x - g->first;
        uint64_t b = (hi < g->first + g->n - 1 ? hi : g->first + g->n - 1) - g->first;
        uint64_t from = g->recs[a].off;
        uint64_t to = g->recs[b].off + STORE_REC_HDR + store_pad8(g->recs[b].len);
        size_t got = 0;
        int e = 0;
        if (sinter_rs_grow(&s->rbuf, &s->rcap, (size_t)(to - from)) != SINTER_OK) {
            free(block);
            return sinter_rs_err(s, SINTER_ENOMEM, "raft store: out of memory");
        }
        e = sinter_rs_pread_full(s, g->fd, s->rbuf, (size_t)(to - from), from, &got);
        if (e != 0 || got != to - from) {
            free(block);
            return e ? sinter_rs_ioerr(s, e, "read %s/%s at offset %" PRIu64, s->dir, g->name, from)
                     : sinter_rs_err(s, SINTER_EIO, "raft store: short read of %s/%s", s->dir,
                                     g->name);
        }
        for (uint64_t r = a; r <= b; r++, x++) {
            const struct store_rec *ri = &g->recs[r];
            /* Check against the segment image: only [from, to) is present in rbuf, so shift. */
            struct rec_view v;
            const uint8_t *h = s->rbuf + (ri->off - from);
            const char *why = rec_check(g, h, to - ri->off, ri->off, &v);
            if (why == NULL && (v.index != x || v.term != ri->term || v.len != ri->len)) {
                why = "record differs from the index built at open";
            }
            if (why != NULL) {
                free(block);
                return sinter_rs_err(s, SINTER_ECORRUPT,
                                     "raft store %s: segment %s offset %" PRIu32 " (index %" PRIu64
                                     "): %s",
                                     s->dir, g->name, ri->off, x, why);
            }
            ents[k] = (struct sinter_raft_entry){.term = v.term,
                                                 .index = v.index,
                                                 .type = v.type,
                                                 .len = v.len,
                                                 .data = v.len ? data : NULL};
            memcpy(data, h + STORE_REC_HDR, v.len);
            data += v.len;
            k++;
        }
    }
    *out = ents;
    *n = k;
    return SINTER_OK;
}
