/*
 * Fault layers for the raft store tests (sinter_store_io implementations).
 *
 * memfs: an in-memory file system that remembers, per file, what was made durable (by fsync /
 * fdatasync) and, per directory, which names were made durable (by syncdir). memfs_crash() then
 * simulates a power cut: unsynced changes are dropped (MEMFS_CRASH_DROP) or a random part of them
 * survives (MEMFS_CRASH_RANDOM: each 512-byte sector of each unsynced write independently, a
 * prefix of unsynced size changes, a prefix of unsynced directory operations), which covers torn
 * writes and pages reaching the disk out of order. memfs_die_after(n) kills the "process" at its
 * n-th mutating call: that call fails (a pwrite first writes a random prefix of its buffer: a
 * write cut short) and every later call fails with EIO until memfs_crash().
 *
 * faultio: wraps another table (normally the POSIX one, on real files) and fails chosen calls
 * with a chosen errno (ENOSPC, EIO). The optional hooks writeback_wait and dontneed are wrapped
 * (counted, faults injected) when the inner table has them; writeback is passed through.
 */
#ifndef SINTER_TEST_FAULTFS_H
#define SINTER_TEST_FAULTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/raft_store.h"

enum fop {
    FOP_OPEN,
    FOP_CLOSE,
    FOP_PWRITE,
    FOP_PREAD,
    FOP_FDATASYNC,
    FOP_FSYNC,
    FOP_FTRUNCATE,
    FOP_FALLOCATE,
    FOP_FILESIZE,
    FOP_RENAME,
    FOP_UNLINK,
    FOP_MKDIR,
    FOP_LISTDIR,
    FOP_SYNCDIR,
    FOP_WRITEBACK_WAIT, /* faultio only (memfs has no write-back hooks) */
    FOP_DONTNEED,       /* faultio only */
    FOP_COUNT
};
#define FOP_BIT(op) (1u << (op))

/* One-shot or sticky failure of the calls whose kind is in mask, after `after` matching calls. */
struct fault {
    unsigned mask;
    int err;
    long after; /* < 0: disarmed */
    bool sticky;
    long hits;
};

struct memfs;

/* DROP: power cut, unsynced changes lost. RANDOM: power cut, a random part of them survives.
 * KEEP: only the process died (kill -9): everything written so far stays. */
enum { MEMFS_CRASH_DROP = 0, MEMFS_CRASH_RANDOM = 1, MEMFS_CRASH_KEEP = 2 };

struct memfs *memfs_new(uint64_t seed);
void memfs_free(struct memfs *fs);
const struct sinter_store_io *memfs_io(struct memfs *fs);
/* Files opened with O_DIRECT take only 512-byte-aligned writes (else EINVAL), and an O_DSYNC
 * write is durable when it returns (a crash during it keeps each sector old or new).
 * memfs_no_direct(fs, true) makes open refuse O_DIRECT with EINVAL (like file systems without
 * direct I/O); memfs_dsync_writes counts the O_DSYNC writes that succeeded. */
void memfs_no_direct(struct memfs *fs, bool refuse);
long memfs_dsync_writes(const struct memfs *fs);
/* Number of descriptors open now with O_DIRECT. */
size_t memfs_open_direct(const struct memfs *fs);
void memfs_die_after(struct memfs *fs, long n_mutating_calls);
bool memfs_dead(const struct memfs *fs);
void memfs_crash(struct memfs *fs, int policy);
void memfs_fail(struct memfs *fs, unsigned mask, int err, long after, bool sticky);
/* XORs byte `off` of file `name` with x, durably (media corruption). Returns 0 or -1. */
int memfs_flip(struct memfs *fs, const char *name, uint64_t off, uint8_t x);
bool memfs_exists(const struct memfs *fs, const char *name);
/* Number of files whose name ends with suffix. */
size_t memfs_count_suffix(const struct memfs *fs, const char *suffix);
uint64_t memfs_file_size(const struct memfs *fs, const char *name);
long memfs_calls(const struct memfs *fs, int op);
void memfs_reset_calls(struct memfs *fs);

struct faultio {
    struct sinter_store_io io; /* give &fio->io to the store */
    const struct sinter_store_io *inner;
    struct fault f;
    long calls[FOP_COUNT];
};
void faultio_init(struct faultio *fio, const struct sinter_store_io *inner);
void faultio_fail(struct faultio *fio, unsigned mask, int err, long after, bool sticky);

#endif
