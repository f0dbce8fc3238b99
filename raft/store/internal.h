/*
 * raft/store internals shared by its .c files. Nothing here is public: the shared functions are
 * prefixed sinter_rs_ and hidden.
 *
 * On-disk formats (all integers little-endian; every structure carries a version and a CRC32C):
 *
 * Segment file "seg-%020llu" (the first index), preallocated to the segment size (the spare
 * "spare-%llu.tmp", zero-filled and synced by a helper, when one is ready; else fallocate, with
 * zeros written over a prefix: options.zero_prefix):
 *   header, 32 bytes:
 *     0  "SNSG"      magic
 *     4  u16         format version (1)
 *     6  u16         reserved, 0
 *     8  u64         salt: random per segment, mixed into every record's CRC, so bytes that merely
 *                    look like a record (stale data, or a record embedded in an entry's payload
 *                    by a client) never validate
 *     16 u64         first index (equals the name)
 *     24 u32         reserved, 0
 *     28 u32         CRC32C of bytes 0..27
 *   then records, each 8-byte aligned:
 *     0  u8          record version (1)
 *     1  u8          entry type
 *     2  u16         reserved, 0
 *     4  u32         data length
 *     8  u64         term
 *     16 u64         index
 *     24 u32         batch offset: segment offset of the first record of the write (batch) this
 *                    record belongs to; it is what tells a torn last batch from damage to a batch
 *                    that a later batch follows (see store.c, recovery)
 *     28 u32         CRC32C of salt (8 bytes LE) || bytes 0..27 || data
 *     32 ...         data, then zero padding to a multiple of 8
 *   then zeros up to the end of the file (the normal end of the log).
 *   Record versions: a later version must keep bytes 0..7 and the CRC at 28 over salt || bytes
 *   0..27 || data. A record whose version is not 1 but whose CRC verifies that way is whole (only
 *   a writer of this segment knows its salt), written by a newer build: open refuses it with
 *   SINTER_ECORRUPT and a message naming the segment, offset and version, wherever it is, even as
 *   the last record (a torn write never leaves a whole record, and cutting it could drop an
 *   acknowledged entry). A version byte that fails the CRC is damage like any other bad record
 *   (a torn tail if no later batch follows, else corruption).
 *
 * Metadata file "meta.0" / "meta.1", 512 bytes (a fixed size, so fdatasync has no size to flush):
 *     0  "SNMT"      magic
 *     4  u16         version (1)
 *     6  u16         reserved, 0
 *     8  u64         sequence (higher wins; slot = sequence & 1)
 *     16 u64         term
 *     24 u64         vote
 *     32 u64         commit hint
 *     40 u32         reserved, 0
 *     44 u32         CRC32C of bytes 0..43
 *     48 ...         zeros
 *
 * Snapshot file "snap-%020llu-%020llu.snap" (index, term):
 *     0  "SNSP"      magic
 *     4  u16         version (1)
 *     6  u16         reserved, 0
 *     8  u64         last included index
 *     16 u64         last included term
 *     24 u64         configuration index
 *     32 u64         data length
 *     40 u32         CRC32C of the data
 *     44 u32         configuration length L (<= 146)
 *     48 L bytes     configuration: u8 version (1), u8 n, n x (u64 id, u8 suffrage)
 *     .. zeros up to 252
 *     252 u32        CRC32C of bytes 0..251
 *     256 ...        data
 */
#ifndef SINTER_RAFT_STORE_INTERNAL_H
#define SINTER_RAFT_STORE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sinter/raft_store.h"

#define STORE_SEG_HDR        32u
#define STORE_REC_HDR        32u
#define STORE_META_SIZE      512u
#define STORE_META_REC       48u
#define STORE_SNAP_HDR       256u
#define STORE_SNAP_WRITEBACK (4u << 20) /* snapshot bytes between writeback hints */
#define STORE_CFG_MAX        (2u + SINTER_RAFT_MAX_SERVERS * 9u)
#define STORE_VERSION        1u
#define STORE_PATH_MAX       4096
#define STORE_ERRMSG_SIZE    512
/* Block of a direct append: offsets, lengths and the buffer are aligned to it. 4 KiB covers
 * 512-byte and 4 KiB logical sectors and ext4 / xfs blocks up to 4 KiB. */
#define STORE_DIO_BLOCK 4096u

/* One record in the in-memory index. */
struct store_rec {
    uint64_t term;
    uint32_t off; /* segment offset of the record header */
    uint32_t len; /* data length */
};

struct store_seg {
    uint64_t first; /* index of its first record (also its name) */
    uint64_t n;     /* records held */
    struct store_rec *recs;
    size_t cap;
    uint64_t end;  /* offset just past the last record: where the next batch goes */
    uint64_t size; /* file size */
    uint64_t salt;
    uint32_t salt_crc; /* CRC32C state after the salt, reused for every record */
    int fd;
    /* Watermark: [0, zeroed_to) is known to be written (records, then zeros), so an append that
     * ends below it overwrites written blocks (no extent conversion, no journal commit:
     * raft_store.h "Spare") and may go direct. == size for a segment made from a spare; after
     * `end`, below it, a prefix the store zeroed itself (seg_zero_ahead in log.c) when it made the
     * space ready (fallocate'd segment, cut, open); always a multiple of STORE_DIO_BLOCK or ==
     * size, so a direct write's last block is below it whenever its records are. A hint for speed
     * only: what is past it reads as zeros too (unwritten extents), and an O_DSYNC write there is
     * just as durable, only slower. */
    uint64_t zeroed_to;
    /* Direct appends (options.direct_io): dfd is the segment opened O_WRONLY | O_DIRECT |
     * O_DSYNC (-1: appends use fd + fdatasync), tail the 4 KiB block holding `end` as it is on
     * disk (records before `end`, zeros after), valid when tail_ok. */
    int dfd;
    uint8_t *tail;
    bool tail_ok;
    char name[32];
};

struct store_snapinfo {
    struct sinter_raft_snapshot_meta meta;
    uint64_t size; /* data length */
    char name[64];
};

struct sinter_store {
    char *dir;
    struct sinter_store_options opts;
    const struct sinter_store_io *io;
    void *ctx;
    char err[STORE_ERRMSG_SIZE];
    int failed; /* non-zero: an earlier write or sync failed, mutations refused */
    char failed_msg[STORE_ERRMSG_SIZE];

    /* Metadata. */
    int meta_fd[2];
    uint64_t meta_seq;
    int durable_slot;                     /* slot holding the newest durable term/vote */
    struct sinter_raft_hard_state hs;     /* as last saved (commit may be unsynced) */
    struct sinter_raft_hard_state hs_dur; /* as last made durable */

    /* Log. */
    struct store_seg *segs;
    size_t nsegs;
    size_t capsegs;
    uint64_t next_index; /* next index to append when nsegs == 0 */
    uint8_t *wbuf;
    size_t wcap;
    uint8_t *rbuf;
    size_t rcap;
    bool dio; /* direct appends allowed here (options.direct_io AUTO and the probe passed) */
    uint64_t zero_prefix; /* options.zero_prefix resolved: bytes zeroed ahead, 0 for none */
    uint64_t zero_open;   /* bytes zeroed ahead at open (one chunk at most), 0 for none */
    uint8_t *dbuf;        /* STORE_DIO_BLOCK-aligned buffer of a direct append */
    size_t dcap;

    /* Snapshots, valid ones only, oldest first. */
    struct store_snapinfo *snaps;
    size_t nsnaps;
    size_t capsnaps;
    struct sinter_store_snap_writer *writer;

    /* Files to remove later (options.defer_unlink), oldest first. */
    struct sinter_store_garbage *garbage;

    /* The spare segment (sinter_store_spare_*, spare.c). */
    int spare_fd; /* -1: no spare ready */
    char spare_name[40];
    uint64_t spare_seq;  /* numbers the spare files of this store */
    uint64_t spare_jobs; /* jobs handed out (a job carries its number: put checks it) */
    bool spare_out;      /* a job is out */
    bool spare_failed;   /* the last job failed: no new one before the next rollover */
    /* The newest compacted segment (options.defer_unlink), kept for the next spare job to zero
     * over instead of being unlinked: "" if none (raft_store.h "Spare segment", recycling). */
    char recycle_name[32];
    uint64_t discards; /* sinter_rs_log_discard_all calls: a job's kept segment is then stale */
    uint64_t appended; /* bytes appended since open (a spare is wanted past 1/64 segment) */
};

/* Little-endian codec. */
static inline void store_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void store_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}
static inline void store_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}
static inline uint16_t store_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t store_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t store_get64(const uint8_t *p)
{
    return (uint64_t)store_get32(p) | ((uint64_t)store_get32(p + 4) << 32);
}
static inline uint64_t store_pad8(uint64_t n)
{
    return (n + 7u) & ~(uint64_t)7u;
}

/* Functions shared between the library's files: prefixed sinter_rs_ ("raft store") so a static
 * link never clashes, and hidden so a shared build never exports them. */
#pragma GCC visibility push(hidden)

/* Errors and reports (store.c). sinter_rs_err sets s->err and returns rc; sinter_rs_ioerr maps an
 * errno (ENOSPC -> SINTER_ENOSPC, else SINTER_EIO) and names the operation and file; sinter_rs_fail
 * also marks the store failed. */
int sinter_rs_err(struct sinter_store *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sinter_rs_ioerr(struct sinter_store *s, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sinter_rs_fail(struct sinter_store *s, int rc);
int sinter_rs_check_failed(struct sinter_store *s);
void sinter_rs_report(struct sinter_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sinter_rs_path(const struct sinter_store *s, char *buf, const char *name);
/* Queues path for sinter_store_garbage_collect (store.c). SINTER_OK or SINTER_ENOMEM. */
int sinter_rs_garbage_add(struct sinter_store *s, const char *path);

/* I/O helpers (store.c): full-length pwrite / pread loops. sinter_rs_pread_full reports a short
 * file as *got < len. */
int sinter_rs_pwrite_full(struct sinter_store *s, int fd, const void *buf, size_t len,
                          uint64_t off);
int sinter_rs_pread_full(struct sinter_store *s, int fd, void *buf, size_t len, uint64_t off,
                         size_t *got);
int sinter_rs_reserve(struct sinter_store *s, int fd, uint64_t off, uint64_t len);
int sinter_rs_grow(uint8_t **buf, size_t *cap, size_t need);
uint64_t sinter_rs_random64(void);

/* Metadata (meta.c). */
int sinter_rs_meta_open(struct sinter_store *s, bool fresh);
void sinter_rs_meta_close(struct sinter_store *s);

/* Log (log.c). */
int sinter_rs_log_load(struct sinter_store *s, const uint64_t *firsts, size_t n, uint64_t *torn);
void sinter_rs_log_close(struct sinter_store *s);
int sinter_rs_log_discard_all(struct sinter_store *s, uint64_t next_index);
uint64_t sinter_rs_first(const struct sinter_store *s);
uint64_t sinter_rs_last(const struct sinter_store *s);

/* Direct I/O (store.c): the open-time probe; sets s->dio. */
void sinter_rs_dio_probe(struct sinter_store *s);

/* Spare segment (spare.c). sinter_rs_spare_take moves the ready spare's descriptor and name to the
 * caller (false if none); sinter_rs_spare_close closes and removes a ready spare. */
bool sinter_rs_spare_take(struct sinter_store *s, int *fd, char *name, size_t namelen);
void sinter_rs_spare_close(struct sinter_store *s);

/* Snapshots (snapshot.c). */
int sinter_rs_snap_load(struct sinter_store *s, char **names, size_t n);
void sinter_rs_snap_close(struct sinter_store *s);
const struct store_snapinfo *sinter_rs_snap_newest(const struct sinter_store *s);

#pragma GCC visibility pop

#endif /* SINTER_RAFT_STORE_INTERNAL_H */
