/*
 * sinter/raft_store.h — durable storage for one Raft group: the log, term and vote, snapshots.
 *
 * One store owns one directory:
 *
 *   meta.0, meta.1            term / vote / commit hint, two alternating slots (sequence + CRC32C)
 *   seg-<first index, 20 digits>
 *                             log segments: fixed-size, preallocated files of CRC32C-protected
 *                             records; the name is the index of the segment's first record
 *   snap-<index>-<term>.snap  snapshots (header with meta + CRC32C, then the application's bytes)
 *   spare-<n>.tmp             the spare segment: zero-filled and synced ahead of need by a
 *                             helper thread, renamed to seg-<first> at rollover (see "Spare")
 *   *.tmp                     files being created; deleted on open (they never became durable)
 *
 * The index from log position to (segment, offset) is kept in memory only: it is rebuilt on open
 * by scanning every segment and verifying every record's CRC, as etcd's WAL and canonical/raft do;
 * the core keeps every entry since the last snapshot in memory anyway (sinter/raft.h), so the log
 * is bounded by snapshotting and the scan is bounded with it.
 *
 * Durability contract (what the host relies on to obey sinter_raft_ready's step 2):
 *   - sinter_store_append() returns SINTER_OK only once its entries are durable (one pwrite and one
 *     fdatasync per segment touched: group commit, Raft dissertation 10.2.1; in a pre-zeroed
 *     segment with options.direct_io, one O_DIRECT | O_DSYNC pwrite instead);
 *   - sinter_store_save_hard_state() returns only once a changed term or vote is durable;
 *   - sinter_store_snap_finish() (or snap_sync + snap_publish) returns only once the snapshot file
 *     and its name are durable.
 *
 * Crash recovery (sinter_store_open()): the log ends at its last valid record. Records are
 * written in batches, one unsynced batch at most; a torn or corrupt tail (a bad record that no
 * later batch follows) is cut off, reported through the report callback and never returned. A bad
 * record followed by a later, valid batch, a bad record in any segment but the last, a gap between
 * segments or between the snapshot and the log is corruption of data that was once durable: open
 * fails with SINTER_ECORRUPT and a message naming the file and offset, rather than silently
 * dropping committed entries. So is a whole record (its checksum verifies) of a record version
 * this build does not know, wherever it is, the last record included: a newer build wrote it, it
 * is no torn write. Zeroed preallocated space after the last record is the normal end.
 *
 * Errors: every fallible function returns a sinter_error code. I/O errors map ENOSPC ->
 * SINTER_ENOSPC and any other errno -> SINTER_EIO; failed validation -> SINTER_ECORRUPT. A message
 * naming the file, offset and cause is available from sinter_store_errmsg() (or, for open, in the
 * caller's buffer). After a failed write or sync the store cannot know what reached the disk
 * (fsync errors may drop dirty pages: PostgreSQL's "fsyncgate"), so it turns "failed": every later
 * mutation returns the same error until the store is closed and reopened, which recovers. A new
 * segment that cannot be allocated (disk full) is not such a failure: nothing was written, the
 * append returns SINTER_ENOSPC and may be retried.
 *
 * Thread safety: none. One store is used by one thread at a time. Exceptions: a snapshot
 * writer's sinter_store_snap_write(), _flush() and _sync(), a received snapshot's
 * sinter_store_snap_begin_rx() (and _abort() of such a writer), and a spare job's
 * sinter_store_spare_make(), touch only the writer or job and its file, so other threads may run
 * them while the store's thread keeps using the store (the I/O table must then allow calls from
 * several threads at once; the POSIX one does).
 */
#ifndef SINTER_RAFT_STORE_H
#define SINTER_RAFT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sinter/error.h"
#include "sinter/raft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- I/O vtable ----------------------------------------------------------------------------- */

/* Every disk access of the store goes through this table, so tests can substitute a layer that
 * cuts writes short, flips bytes, forgets unsynced data on a simulated crash or fails with ENOSPC
 * or EIO. Every function returns 0 or a positive errno value (never -1); paths are full paths
 * (directory + "/" + name). `ctx` is the table's own state, passed back unchanged. */
struct sinter_store_io {
    void *ctx;
    /* open(2) with flags such as O_RDWR | O_CREAT | O_EXCL; *fd receives the descriptor. */
    int (*open)(void *ctx, const char *path, int flags, mode_t mode, int *fd);
    int (*close)(void *ctx, int fd);
    /* May write fewer bytes than asked (*done < len); the store loops. */
    int (*pwrite)(void *ctx, int fd, const void *buf, size_t len, uint64_t off, size_t *done);
    /* May read fewer bytes than asked; *done == 0 means end of file. */
    int (*pread)(void *ctx, int fd, void *buf, size_t len, uint64_t off, size_t *done);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync)(void *ctx, int fd);
    int (*ftruncate)(void *ctx, int fd, uint64_t len);
    /* Reserves [off, off + len) (mode 0: may extend the file). EOPNOTSUPP / ENOSYS make the store
     * fall back to ftruncate (a sparse file). */
    int (*fallocate)(void *ctx, int fd, uint64_t off, uint64_t len);
    int (*filesize)(void *ctx, int fd, uint64_t *size);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*mkdir)(void *ctx, const char *path); /* EEXIST is fine */
    /* Calls fn once per entry of directory path (not "." or ".."); stops early and returns fn's
     * non-zero result if fn returns one. */
    int (*listdir)(void *ctx, const char *path, int (*fn)(void *arg, const char *name), void *arg);
    /* Makes the directory's entries (creations, renames, unlinks) durable. */
    int (*syncdir)(void *ctx, const char *path);
    /* Optional (NULL: never called): starts writing back [off, off + len) without waiting and
     * without any durability promise (Linux sync_file_range(SYNC_FILE_RANGE_WRITE)). The snapshot
     * writer calls it every few MiB so the final fsync has little left to flush; one big flush
     * at the end holds up the log's fdatasync behind it on a shared disk (RocksDB's bytes_per_sync
     * does the same). Errors are ignored. */
    int (*writeback)(void *ctx, int fd, uint64_t off, uint64_t len);
    /* Optional (NULL: never called): writes back [off, off + len) and waits until it is on the
     * device, without flushing metadata or the device cache (Linux sync_file_range(WAIT_BEFORE |
     * WRITE | WAIT_AFTER)): no durability promise either. The spare segment's zero-fill waits on
     * each chunk with it, so at most two chunks of zeros are queued ahead of the log's own writes
     * at any time (64 MiB of dirty zeros written back at once held a log fdatasync up for 150 ms).
     * It CONSUMES write-back errors: Linux reports a failed write-back of the range once, to this
     * call, and a later fsync on the same open file returns 0 (file_check_and_advance_wb_err), so
     * a caller must check its result. The zero-fill fails on any error but EINVAL / ENOSYS /
     * EOPNOTSUPP / ESPIPE (not supported: only the pacing is lost). */
    int (*writeback_wait)(void *ctx, int fd, uint64_t off, uint64_t len);
    /* Optional (NULL: never called): advice that the clean cached pages of [off, off + len) are
     * not needed (posix_fadvise(POSIX_FADV_DONTNEED)). The spare's zero-fill calls it after its
     * fsync, so a segment's worth of zero pages does not evict useful cache. Errors are ignored. */
    int (*dontneed)(void *ctx, int fd, uint64_t off, uint64_t len);
};

/* The default POSIX implementation (ctx unused). Ownership: static table, never freed. */
const struct sinter_store_io *sinter_store_io_posix(void);

/* ---- Options and opening -------------------------------------------------------------------- */

#define SINTER_STORE_SEGMENT_SIZE_DEFAULT (64u * 1024u * 1024u)
#define SINTER_STORE_SEGMENT_SIZE_MIN     4096u
#define SINTER_STORE_SEGMENT_SIZE_MAX     (1024u * 1024u * 1024u)

struct sinter_store_options {
    const struct sinter_store_io *io; /* NULL: sinter_store_io_posix() */
    uint32_t segment_size;            /* bytes per segment file, [MIN, MAX]; multiple of 8 */
    uint32_t snapshots_keep;          /* newest valid snapshots kept; >= 1, default 2 */
    /* Files the store no longer needs (segments removed by sinter_store_compact, snapshots beyond
     * snapshots_keep) are not unlinked on the store's thread but queued: the owner takes them with
     * sinter_store_garbage_take() and removes them on any thread (sinter_store_garbage_collect()).
     * Freeing a large file can take tens of ms on a busy disk (70 ms for a 64 MiB preallocated
     * segment measured by raft-bench), which the store's thread (a raft loop) should not wait for.
     * Until collected the files are an older log prefix or snapshot that the newest snapshot
     * covers. If the process dies first, open() finds them again: a prefix that still joins the
     * log is compacted again and old snapshots are retired again. A prefix that no longer joins
     * the log (an installed snapshot replaced the log after it and new entries were appended;
     * sinter_store_snapshot_installed() removes the current segments at once) is removed at open
     * because the newest valid snapshot covers it. A gap that the snapshot does not cover is
     * still SINTER_ECORRUPT. close() collects what was not taken. With it, the newest compacted
     * segment is not queued but kept for the next spare ("Spare segment", recycling), so a busy
     * group neither allocates nor frees segments (freed blocks are discarded at the journal commit
     * on a file system mounted -o discard, and the log's appends waited behind 30-60 ms of
     * discards: bench/FINDINGS.md F6); close() leaves it (an old prefix to open(), removed again
     * later). Retired snapshots are always queued: one may still be streamed to a follower
     * through an open reader, which an unlinked file allows and a reused one would not. Default
     * false: unlinked at once, as before. */
    bool defer_unlink;
    /* Called for recoverable events worth an operator's attention (torn tail cut off, superseded
     * log discarded, corrupt snapshot skipped). NULL: the message goes to stderr. The message is
     * only valid during the call. */
    void (*report)(void *arg, const char *msg);
    void *report_arg;
    /* How appends reach the disk in a pre-zeroed segment (one made from a spare, see "Spare"):
     * SINTER_STORE_DIRECT_IO_AUTO writes them through a second descriptor opened O_DIRECT |
     * O_DSYNC, in whole 4 KiB blocks (the partial last block is kept in memory and rewritten with
     * the new records), so the write is durable when it returns and no fdatasync follows; on a
     * pre-zeroed file that is a plain overwrite of written blocks with a FUA / cache flush, no
     * journal commit (canonical raft's libuv backend appends the same way). Open probes the
     * directory with one O_DIRECT | O_DSYNC write; a file system that refuses it (EINVAL), or a
     * segment_size that is not a multiple of 4 KiB, falls back to pwrite + fdatasync, said once
     * through report. The same holds below the zeroed watermark of a segment the store made
     * ready itself (zero_prefix: fallocate fallback, found at open, after a truncation); past
     * it, appends use pwrite + fdatasync. Reads keep using the buffered descriptor:
     * Linux invalidates the page cache over a direct write's range, so they see the new bytes.
     * SINTER_STORE_DIRECT_IO_OFF: always pwrite + fdatasync. 0 (a zero-initialised struct) means
     * the default, SINTER_STORE_DIRECT_IO_AUTO (sinter_store_options_defaults()). A direct write
     * refused with EINVAL before any byte was written (a file system that refuses O_DIRECT on
     * some inodes although the probe passed) ends direct appends to that segment, said once
     * through report, and the batch goes through pwrite + fdatasync. Other errors of a direct
     * write are those of a failed fdatasync (SINTER_EIO / SINTER_ENOSPC, the store turns
     * failed). */
    int direct_io;
    /* Bytes of zeros the store writes and syncs after a segment's end whenever it makes that
     * space ready itself, so that appends below that watermark overwrite written blocks, like
     * appends into a spare: no extent conversion, so they go direct (options.direct_io) or, with
     * pwrite + fdatasync, commit no journal. Without it every append before the first spare is
     * ready paid the conversion: a fresh cluster and a restarted node ran their first MiBs on the
     * slow path. Where, all synchronous on the calling thread (about 1 ms per MiB plus one sync,
     * written in 128 KiB chunks):
     *  - inside sinter_store_append, at the creation of a segment with fallocate (no spare ready:
     *    the first segment of a new store, or the fallback at rollover): its first zero_prefix
     *    bytes, before its fsync and rename (a crash in the middle leaves a *.tmp that open
     *    removes). None at a fallback rollover while a spare job is out (the helper is behind:
     *    the disk is busy, and the spare soon takes over);
     *  - inside sinter_store_truncate, after the cut is durable: zero_prefix bytes after the new
     *    end (zeros over zeros: a crash in the middle leaves the same log);
     *  - inside sinter_store_open, after the last record of the last segment, if it has records
     *    and no torn tail (a torn tail is cut as above): the smaller of zero_prefix and 128 KiB
     *    only, since a restart opens every group of a node in a row and most are idle.
     * The spare is wanted once half of the prefix was appended since open (half of the one chunk
     * zeroed at open after a restart; never below 64 KiB, or 1/64 of a smaller segment:
     * sinter_store_spare_want), so it is normally ready before the prefix is used up. Errors:
     *  - a disk full while writing the zeros is never an error: the watermark stays where the
     *    zeros got to, said once through report;
     *  - at creation, any other error (EIO) fails that append like a failed fallocate: nothing is
     *    named or written, the store stays usable and the append can be retried;
     *  - at a cut and at open, any error from the zeros or from their fdatasync only costs the
     *    prefix (said through report; appends there use pwrite + fdatasync): the zeros go over
     *    zeros and nothing else is unsynced then, so no acknowledged byte depends on that sync.
     * 0 (a zero-initialised struct): the default, segment_size / 64, at least 128 KiB or a
     * quarter of the segment if that is less (1 MiB of the default 64 MiB segment);
     * SINTER_STORE_ZERO_PREFIX_NONE: none (appends before the first spare pay the conversion).
     * Other values are rounded up to a multiple of 4 KiB and capped at the segment size; note
     * that a large value is written on the caller's thread at every creation and cut. */
    uint32_t zero_prefix;
};

#define SINTER_STORE_DIRECT_IO_OFF    1
#define SINTER_STORE_DIRECT_IO_AUTO   2
#define SINTER_STORE_ZERO_PREFIX_NONE UINT32_MAX

/* Fills *opts with defaults (POSIX I/O, 64 MiB segments, keep 2 snapshots, stderr reports,
 * direct_io SINTER_STORE_DIRECT_IO_AUTO, zero_prefix 0: the default prefix).
 * Ownership: writes *opts only. */
void sinter_store_options_defaults(struct sinter_store_options *opts);

/* What a restart hands to sinter_raft_restore(): the newest valid snapshot (if any), the hard
 * state and every persisted entry after the snapshot, consecutive. */
struct sinter_store_recovered {
    bool has_snapshot;
    struct sinter_raft_snapshot_meta snapshot;
    struct sinter_raft_hard_state hard_state;
    struct sinter_raft_entry *entries; /* one allocation; free with sinter_store_entries_free() */
    size_t n_entries;
    uint64_t torn_bytes; /* bytes of torn / corrupt tail cut off during this open (0: clean) */
};

struct sinter_store;

/* Opens (creating if needed) the store in directory `dir` and recovers it (see the top of this
 * file). On success *out is owned by the caller (release with sinter_store_close()); if rec is not
 * NULL it is filled and rec->entries is owned by the caller (sinter_store_recovered_free()).
 * opts may be NULL (defaults); it is copied. On failure *out is NULL and, if err is not NULL, a
 * message of at most errlen bytes (NUL included) says what and where.
 * Errors: SINTER_EINVAL (bad options), SINTER_ENOMEM, SINTER_EIO, SINTER_ENOSPC, SINTER_ECORRUPT
 * (corruption that would lose durable data: the node must not start). */
int sinter_store_open(struct sinter_store **out, const char *dir,
                      const struct sinter_store_options *opts, struct sinter_store_recovered *rec,
                      char *err, size_t errlen);

/* Closes every file and frees the store. Nothing is written: everything acknowledged is already
 * durable. NULL is ok. */
void sinter_store_close(struct sinter_store *s);

/* The message describing the last error returned by a call on s ("" if none). Ownership: owned by
 * s, valid until the next call on s. */
const char *sinter_store_errmsg(const struct sinter_store *s);

/* Frees rec->entries and zeroes the entry fields. rec may be NULL. */
void sinter_store_recovered_free(struct sinter_store_recovered *rec);

/* Frees an entry array returned by sinter_store_read() or inside a sinter_store_recovered.
 * NULL is ok. */
void sinter_store_entries_free(struct sinter_raft_entry *entries);

/* ---- Hard state ----------------------------------------------------------------------------- */

/* Persists term / vote / commit hint. A changed term or vote is written to the older of the two
 * metadata slots and fdatasync'd before returning (Raft paper figure 2: "updated on stable storage
 * before responding to RPCs"). A change of the commit hint alone is written without a sync (it is
 * a hint, sinter/raft.h) into the slot that does not hold the last durable state, so a crash can
 * lose the hint but never the term or vote. Nothing is written when nothing changed.
 * Ownership: reads *hs. Errors: SINTER_EINVAL (term lower than the durable one, or a different
 * vote in the same term), SINTER_EIO, SINTER_ENOSPC (the store turns failed). */
int sinter_store_save_hard_state(struct sinter_store *s, const struct sinter_raft_hard_state *hs);

/* The hard state as last saved. Ownership: writes *hs. */
void sinter_store_hard_state(const struct sinter_store *s, struct sinter_raft_hard_state *hs);

/* ---- Log ------------------------------------------------------------------------------------ */

/* Appends n entries with consecutive indexes, durably: the records of all entries going to one
 * segment are encoded into one buffer, written with one pwrite and made durable with one
 * fdatasync (group commit). If entries[0].index <= last index, every persisted entry at that index
 * or above is first removed (sinter_store_truncate(), the ready contract of sinter/raft.h).
 * entries[0].index must be at most last index + 1 and at least the first index still held (or,
 * for an empty log, exactly the next index). type must fit in 8 bits.
 * Ownership: reads the entries and their data; the caller keeps them.
 * Errors: SINTER_EINVAL (empty batch, gap, non-consecutive indexes, type > 255),
 * SINTER_ECOMPACTED (entries[0].index below the first index), SINTER_ETOOBIG (an entry does not
 * fit in one segment), SINTER_ENOSPC (a new segment could not be allocated: nothing was written,
 * the store stays usable), SINTER_EIO / SINTER_ENOSPC from a write or sync (the store turns
 * failed; entries already durable stay), SINTER_ENOMEM. */
int sinter_store_append(struct sinter_store *s, const struct sinter_raft_entry *entries, size_t n);

/* Removes every entry with index >= from (a conflicting suffix, Raft paper 5.3), durably: later
 * segments are unlinked (newest first) and the directory synced, then the segment holding `from`
 * is cut at that record and re-extended with zeros, and synced. from > last index is a no-op.
 * Errors: SINTER_ECOMPACTED (from < first index: those entries are in a snapshot and committed),
 * SINTER_EIO / SINTER_ENOSPC (the store turns failed). */
int sinter_store_truncate(struct sinter_store *s, uint64_t from);

/* ---- Spare segment (pre-zeroed, made off the store's thread) --------------------------------- */

/* A segment created with fallocate has *unwritten* extents: every append's fdatasync must then
 * also commit the file system's journal (ext4 converts the extent to written), which on a disk
 * shared by several nodes cost ~30% of an append (bench/FINDINGS.md F5). So the store keeps one
 * spare segment file, "spare-<n>.tmp", whose every byte was written with zeros and synced by
 * another thread ahead of need (PostgreSQL pre-zeroes its WAL segments for the same reason; etcd's
 * WAL pre-creates the next file in a goroutine). A rollover then only writes the 32-byte header
 * over the zeros, fdatasyncs, renames and syncs the directory. A segment whose free space is not
 * all known to be written (made by fallocate because no spare was ready, found at open, or cut)
 * has a zeroed prefix after its end (options.zero_prefix) and is left, once a spare is ready, by
 * the first append that would go past that prefix: it starts the spare as a new segment
 * (segments may end early; zeros after the last record are the normal end). The spare's temporary
 * name means a crash leaves nothing that open() reads as a segment: open removes every *.tmp file
 * (a recycled segment's rename, below, is made durable before its first zero is written).
 *
 * Recycling (options.defer_unlink only): the newest segment a compaction detaches is not queued
 * for removal but kept, and the next spare job renames it to its temporary name and zeroes over
 * it: no allocation, and no discard of 64 MiB of freed blocks (PostgreSQL recycles WAL segments
 * likewise). On a file system mounted -o discard, unlinking a segment kept this project's VM
 * disk busy for 30-60 ms, during which every node's log append waited: the commit gaps that
 * snapshots caused (bench/FINDINGS.md F6). The segment kept before is queued when a newer one is
 * detached, so at most one extra segment's space is held, and the queue stays oldest first; the
 * kept one is left on disk by close() (open() finds it as an old prefix the snapshot covers, and
 * if a spare took it while older queued files were still there, a gap the snapshot covers, which
 * open() removes with a report). On a copy-on-write file system (btrfs, XFS with reflinks) the
 * overwrite allocates new blocks, so recycling saves nothing there and its zeros can fail with
 * ENOSPC like a new spare's (the job fails; rollover falls back to fallocate).
 *
 * Protocol, like the garbage and the snapshot writer: the store's thread asks with
 * sinter_store_spare_want(); any one thread runs sinter_store_spare_make() on the job (it touches
 * only the job and its file, through the store's I/O table); the store's thread hands the job
 * back with sinter_store_spare_put(). Without these calls the store behaves as before (fallocate
 * at rollover). */
struct sinter_store_spare;

/* A job making a spare, or NULL if none is wanted now (less than 1/64 of a segment, or half of
 * options.zero_prefix if that is less, appended since open: a group that hardly writes costs no
 * zeros; the last segment is itself pre-zeroed and less than half full: its successor is made
 * later, not while the disk just made it; a spare is ready; a job is out; the store failed; or the
 * last job failed and no rollover happened since: one attempt per segment, so a full disk costs one
 * failed job per rollover, never a loop). Store's thread. Call it after appends (it is cheap).
 * Ownership: the caller's until sinter_store_spare_put() (or _abandon()), which frees it. Never
 * fails but for memory (then NULL).
 */
struct sinter_store_spare *sinter_store_spare_want(struct sinter_store *s);

/* Creates the job's file, reserves it (fallocate), writes zeros over all of it in 128 KiB chunks,
 * each written back (io.writeback) and waited for (io.writeback_wait) before the next but one is
 * written, then rests twice as long as the chunk took (the zeros use at most a third of the
 * disk's time and never queue more than two chunks ahead of the log's fdatasync), and fsyncs it;
 * then advises the kernel to drop the zeros' cached pages (io.dontneed). A write-back error
 * reported by io.writeback_wait fails the job like a failed fsync (the fsync would not see it
 * again). Any one thread; touches only the job and its file. On an error the file is removed and
 * the message kept in the job (sinter_store_spare_errmsg). Errors: SINTER_ENOSPC, SINTER_EIO,
 * SINTER_ENOMEM. */
int sinter_store_spare_make(struct sinter_store_spare *j);

/* The message of the job's error ("" if none). Ownership: the job's. */
const char *sinter_store_spare_errmsg(const struct sinter_store_spare *j);

/* Asks a running sinter_store_spare_make() to stop between two chunks (it then fails with
 * SINTER_ECANCELED and removes its file), so that closing need not wait for a whole segment of
 * zeros; a make that has not begun then touches no file. Any thread. NULL is ok. */
void sinter_store_spare_cancel(struct sinter_store_spare *j);

/* Hands a job back to its store (store's thread) and frees it. A made spare becomes the store's
 * spare (used by the next rollover, or removed by close); a job that failed or was never made
 * leaves nothing (the store falls back to fallocate at rollover), except that a compacted segment
 * it was given to recycle and never renamed goes back to the store, for the next job. Returns the
 * job's result: SINTER_OK, or the error of sinter_store_spare_make() with its message copied to
 * sinter_store_errmsg() (the store does not turn failed: nothing of the log was touched),
 * SINTER_ECANCELED (never made, or cancelled), or SINTER_EINVAL for a job of another store. */
int sinter_store_spare_put(struct sinter_store *s, struct sinter_store_spare *j);

/* Frees a job without its store (which may be closed): closes and removes its file. Any thread.
 * NULL is ok. The store does not learn of it: it asks for no new spare until reopened, so this is
 * for shutting down. */
void sinter_store_spare_abandon(struct sinter_store_spare *j);

/* Whether a spare is ready (for tests and metrics). */
bool sinter_store_spare_ready(const struct sinter_store *s);

/* Whether the next append to the last segment goes through O_DIRECT | O_DSYNC (options.direct_io:
 * AUTO, the probe passed, and the last segment is pre-zeroed, or zeroed by the store far enough
 * past its end for an empty record: options.zero_prefix; a larger next append may still cross
 * the watermark and go through pwrite + fdatasync). For tests and metrics. */
bool sinter_store_direct_io_active(const struct sinter_store *s);

/* Files queued for removal (options.defer_unlink), oldest first; NULL if none. Ownership: the
 * caller's, released by sinter_store_garbage_collect(). Store's thread. */
struct sinter_store_garbage;
struct sinter_store_garbage *sinter_store_garbage_take(struct sinter_store *s);

/* Unlinks the files (in order, stopping at the first failure so that no gap appears in the log),
 * syncs the directory and frees g. Any thread: touches nothing of the store, which may even be
 * closed. NULL is ok. Errors: SINTER_EIO / SINTER_ENOSPC (some files stay until the next open()
 * deals with them, see options.defer_unlink). */
int sinter_store_garbage_collect(struct sinter_store_garbage *g);

/* Discards the log prefix covered by a durable snapshot: unlinks, oldest first, every whole
 * segment whose entries are all <= upto. The last segment is never removed, so entries after upto
 * are never lost, and some entries <= upto may remain (first index tells). upto must not exceed
 * the newest durable snapshot's index (the store checks: otherwise a crash would leave a gap).
 * Errors: SINTER_EINVAL (upto beyond the newest snapshot), SINTER_EIO (some segments may remain;
 * what remains is still a consistent suffix). */
int sinter_store_compact(struct sinter_store *s, uint64_t upto);

/* Reads entries [lo, hi] (hi clamped to the last index), stopping early once more than max_bytes
 * of data have been gathered (max_bytes 0: no limit; at least one entry is always returned).
 * Every record's CRC32C is checked. On success *out (one allocation, entries and data together)
 * is owned by the caller and freed with sinter_store_entries_free(); *n is the count (0 and
 * *out NULL if lo > last index).
 * Errors: SINTER_ECOMPACTED (lo < first index), SINTER_EINVAL (lo == 0), SINTER_ECORRUPT
 * (a record fails its CRC: message names segment and offset), SINTER_EIO, SINTER_ENOMEM. */
int sinter_store_read(struct sinter_store *s, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                      struct sinter_raft_entry **out, size_t *n);

/* The term of the entry at index, from the in-memory index (no I/O).
 * Errors: SINTER_ECOMPACTED (index < first index), SINTER_ENOTFOUND (index > last index). */
int sinter_store_term(const struct sinter_store *s, uint64_t index, uint64_t *term);

/* First and last index held. For an empty log, first == last + 1 == the next index to append. */
uint64_t sinter_store_first_index(const struct sinter_store *s);
uint64_t sinter_store_last_index(const struct sinter_store *s);
/* Number of segment files currently in use (for tests and metrics). */
size_t sinter_store_segment_count(const struct sinter_store *s);

/* ---- Snapshots ------------------------------------------------------------------------------ */

struct sinter_store_snap_writer;
struct sinter_store_snap_reader;

/* Starts writing a snapshot described by *meta (streamed in chunks, e.g. while receiving an
 * install-snapshot, or while the application serialises its state). The data goes to a temporary
 * file; nothing is visible until sinter_store_snap_publish() / _finish(). At most one writer at a
 * time. Ownership: *w is owned by the caller until publish, finish or abort, which free it; *meta
 * is copied. Errors: SINTER_EINVAL (meta->index == 0, invalid config), SINTER_EBUSY (a writer is
 * open), SINTER_EIO, SINTER_ENOSPC, SINTER_ENOMEM. */
int sinter_store_snap_begin(struct sinter_store *s, const struct sinter_raft_snapshot_meta *meta,
                            struct sinter_store_snap_writer **w);

/* Starts writing a snapshot received from a leader, from ANY thread (e.g. a transport thread as
 * chunks arrive), while the store's thread keeps using the store: it reads only what is fixed at
 * open (the I/O table and the directory) and is not the store's one writer, so it neither
 * conflicts with sinter_store_snap_begin() nor with other received snapshots (each gets its own
 * temporary file, "*.tmp": a crash before the rename leaves a file open() removes).
 * Then: sinter_store_snap_write() and sinter_store_snap_flush() on the receiving thread (one
 * thread at a time), and finally sinter_store_snap_publish() on the store's thread, or
 * sinter_store_snap_abort() on any thread. Every such writer must be published or aborted before
 * sinter_store_close() (close does not know them). Publishing one while a local writer of the
 * same index and term is open is the caller's mistake (both target the same final name).
 * Ownership: *w as for sinter_store_snap_begin; *meta is copied; a message naming the file is
 * written to err (errlen bytes, may be 0), never to the store's errmsg.
 * Errors: SINTER_EINVAL (invalid meta), SINTER_EIO, SINTER_ENOSPC, SINTER_ENOMEM. */
int sinter_store_snap_begin_rx(struct sinter_store *s, const struct sinter_raft_snapshot_meta *meta,
                               struct sinter_store_snap_writer **w, char *err, size_t errlen);

/* Appends len bytes to the snapshot being written. Ownership: reads data. Any one thread (see
 * "Thread safety"); an error's message is kept in the writer (sinter_store_snap_errmsg).
 * Errors: SINTER_EIO, SINTER_ENOSPC (the first error sticks: later calls return it),
 * SINTER_EINVAL (after snap_flush or snap_sync). */
int sinter_store_snap_write(struct sinter_store_snap_writer *w, const void *data, size_t len);

/* Makes the snapshot's bytes durable under its temporary name: writes the header and fsyncs the
 * file, without renaming (so nothing is visible, and a crash leaves only a file open() removes).
 * Any one thread, like snap_write: a host receiving a snapshot runs it on its receiving thread so
 * the store's thread is left with the cheap rename and directory sync (sinter_store_snap_publish,
 * which then skips this part). Idempotent once it succeeded. Does not free w. Errors: as
 * sinter_store_snap_sync. */
int sinter_store_snap_flush(struct sinter_store_snap_writer *w);

/* Makes the snapshot durable under its final name: writes the header, fsyncs the file, renames it
 * and fsyncs the directory. Any one thread (it touches only the writer and its file): this is the
 * expensive part, which a host runs off its store thread. It does not make the snapshot visible to
 * the store (sinter_store_snap_publish does). Idempotent once it succeeded. Does not free w.
 * Errors: SINTER_EIO, SINTER_ENOSPC (message in sinter_store_snap_errmsg); then only publish
 * (which returns the error) or abort may follow. */
int sinter_store_snap_sync(struct sinter_store_snap_writer *w);

/* The message of the writer's first error ("" if none). Ownership: the writer's, valid until it is
 * freed. Any thread that may use w. */
const char *sinter_store_snap_errmsg(const struct sinter_store_snap_writer *w);

/* Publishes the snapshot on the store's thread: runs sinter_store_snap_sync() first if it was not
 * (so publish alone is the whole job), then adds the snapshot to the store (snap_open, compaction
 * may use it) and deletes snapshots beyond the newest snapshots_keep (without a directory sync: a
 * deletion undone by a crash is redone later). Once this returns SINTER_OK the snapshot survives
 * any crash, and a crash at any earlier point leaves the previous snapshots as they were. Frees w
 * in every case; on an error the message is copied to sinter_store_errmsg(). A snapshot that was
 * already renamed (complete and fsync'd) is left on disk even on an error.
 * Errors: the writer's first error (SINTER_EIO, SINTER_ENOSPC), SINTER_ENOMEM. */
int sinter_store_snap_publish(struct sinter_store_snap_writer *w);

/* sinter_store_snap_sync() then sinter_store_snap_publish(), on the store's thread.
 * Same errors as publish. */
int sinter_store_snap_finish(struct sinter_store_snap_writer *w);

/* Abandons the snapshot: removes the temporary file (a file sinter_store_snap_sync already
 * renamed is complete and stays) and frees w. NULL is ok. Store's thread; a writer from
 * sinter_store_snap_begin_rx() may be aborted on any thread (it never touches the store). */
void sinter_store_snap_abort(struct sinter_store_snap_writer *w);

/* The newest durable snapshot's meta. Errors: SINTER_ENOTFOUND (none). */
int sinter_store_snap_meta(const struct sinter_store *s, struct sinter_raft_snapshot_meta *meta);

/* Opens the newest durable snapshot for reading in chunks (to load the state machine or to stream
 * to a follower). *meta (may be NULL) receives its meta and *size its data length (may be NULL).
 * Ownership: *r is the caller's, released with sinter_store_snap_close(); it stays readable even
 * if a newer snapshot replaces this one meanwhile (the descriptor stays open).
 * Errors: SINTER_ENOTFOUND (no snapshot), SINTER_ECORRUPT (header no longer valid), SINTER_EIO,
 * SINTER_ENOMEM. */
int sinter_store_snap_open(struct sinter_store *s, struct sinter_raft_snapshot_meta *meta,
                           uint64_t *size, struct sinter_store_snap_reader **r);

/* Reads the next at most cap bytes into buf; *n == 0 means the end. The data's CRC32C is checked
 * when the last byte has been read: a mismatch gives SINTER_ECORRUPT at that point (discard what
 * was read). Errors: SINTER_EIO, SINTER_ECORRUPT (short file or CRC mismatch). */
int sinter_store_snap_read(struct sinter_store_snap_reader *r, void *buf, size_t cap, size_t *n);

/* Closes a reader. NULL is ok. */
void sinter_store_snap_close(struct sinter_store_snap_reader *r);

/* Call after installing a snapshot received from the leader (sinter_store_snap_finish() returned
 * SINTER_OK, the core set rd.snapshot_dirty): if the log holds meta->index with meta->term, the
 * entries after it are kept (Raft paper section 7) and the covered prefix compacted; otherwise
 * the whole log is discarded (segments unlinked newest first, directory synced) and the next
 * append must be at meta->index + 1. Recovery applies the same rule, so a crash in between is
 * harmless. Errors: SINTER_EINVAL (meta is not the newest durable snapshot), SINTER_EIO. */
int sinter_store_snapshot_installed(struct sinter_store *s,
                                    const struct sinter_raft_snapshot_meta *meta);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RAFT_STORE_H */
