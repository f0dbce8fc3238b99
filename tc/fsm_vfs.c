/*
 * The state machine's SQLite VFS (tc/fsm_vfs.h): the default VFS with the WAL's writes gathered.
 *
 * Why: SQLite appends a WAL frame as two writes, its 24-byte header and then its page
 * (wal.c walWriteOneFrame), so a commit of F frames costs 2F pwrite calls; with ~7 pages per
 * applied entry that was most of the state machine's system time (bench/FINDINGS.md T7, T8).
 * The frames of one commit are contiguous in the WAL file, so they are kept in a buffer and
 * written with one pwrite when the commit frame is complete.
 *
 * Why it keeps SQLite's guarantees: a WAL transaction becomes visible (to this connection after a
 * cache reset, to other connections, to recovery after a crash) only through a commit frame, a
 * frame whose header carries the database size after the commit (bytes 4..7 non-zero; wal.c
 * walEncodeFrame), published in the wal-index after sqlite3WalFrames has written every frame.
 * Three rules make every byte of a transaction reach the file before it is published:
 *  - Only appends are gathered: a write below what this connection already wrote to the WAL (its
 *    high-water mark) flushes the buffer and goes straight to the file. SQLite writes below it
 *    when a transaction that spilled pages (cache pressure) changes one of them again: it
 *    overwrites the frame in place, and at commit, after the commit frame, rewrites the frame
 *    headers from that frame on with new checksums, the commit frame's last (wal.c
 *    sqlite3WalFrames, walRewriteChecksums). No page write follows that last header, so had it
 *    been gathered the transaction would have been published with the commit frame's old checksum
 *    in the file: recovery after a kill drops the commit, and a checkpoint by another connection
 *    before it leaves a database that no longer matches its WAL (tests/unit/tc/test_tc_fsm_vfs.c
 *    spilled_commit_survives_*).
 *  - The buffer is flushed before the write of the commit frame's page returns, with that write's
 *    error: a failed flush fails the commit as a failed write does.
 *  - The database file's xShmBarrier, which SQLite calls between the two copies of the wal-index
 *    header it writes to publish a commit (wal.c walIndexWriteHdr), flushes the connection's WAL
 *    buffer first. After the two rules above it is empty there; the barrier makes that hold for
 *    any other write pattern too (synchronous=FULL without powersafe overwrite splits a frame's
 *    page at the sync point and pads the commit: wal.c walWriteToLog), so with the wal-index in
 *    shared memory the VFS does not depend on the synchronous setting or the device (tc/fsm_vfs.h).
 * Frames of a transaction that is still open (a cache spill) may stay in the buffer meanwhile:
 * nothing refers to them until their commit frame. Every other operation on the WAL that could
 * observe the file (read, size, truncate, sync, lock and file controls, close) flushes first, so
 * SQLite never reads a state that differs from what it wrote. The fsync discipline
 * (synchronous=NORMAL: the WAL is synced before each checkpoint) is SQLite's, unchanged: a sync
 * flushes before it syncs. Files other than a WAL are passed through untouched.
 */
#include "tc/fsm_vfs.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define VFS_NAME  "sinter-fsm"
#define FRAME_HDR 24 /* WAL frame header bytes (wal.c WAL_FRAME_HDRSIZE) */
#define WAL_HDR   32 /* WAL file header bytes (wal.c WAL_HDRSIZE) */
/* Largest run gathered before a write: the unix VFS writes at most 0x1ffff bytes per call
 * (os_unix.c seekAndWriteFd masks the length; a longer write comes back short, as SQLITE_FULL), so
 * a bigger commit goes out in runs of about 30 frames. */
#define BUF_CAP   0x1f000u
#define NO_COMMIT (-1)

struct wb_file {
    sqlite3_file base;  /* base.pMethods: &wb_io, or NULL when the real open failed */
    sqlite3_file *real; /* the default VFS's file, in the same allocation after this struct */
    int is_wal;
    /* WAL only: bytes [off, off + len) of the file not yet written. */
    unsigned char *buf;
    size_t len;
    sqlite3_int64 off;
    /* Offset of the page of the last commit frame whose header was gathered; the buffer is
     * written once that page is in it. NO_COMMIT when none is pending. A stale value (a commit
     * abandoned between its header and its page) only causes one early write. */
    sqlite3_int64 commit_page;
    /* End of the WAL as this connection wrote it since it last wrote the WAL header (offset 0);
     * a write that starts below it is not an append and is written through. */
    sqlite3_int64 hwm;
    /* The other file of the pair, both opened by one pager: on the database file its WAL (NULL
     * while none is open), on the WAL its database file (NULL if that was not opened through
     * this VFS). The pager uses both from the one thread that holds the connection, so the link
     * needs no lock; the WAL is closed before its database file (pager.c sqlite3PagerClose), and
     * its close unlinks it. */
    struct wb_file *peer;
};

static sqlite3_vfs *g_real;
static sqlite3_vfs g_vfs;
static int g_ok;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct wb_file *)f)->real;
}

/* Writes what is gathered. The buffer only ever holds frames of no published transaction (the
 * barrier flush), normally those of the transaction being written. If the write fails:
 *  - From xWrite (drop true) the bytes are dropped: the error is the error of one of the
 *    transaction's own frame writes in sqlite3WalFrames, which then fails, and the pager enters
 *    its error state and rolls the transaction back (pager.c pager_error), so nothing can commit
 *    on top of the missing frames; keeping them would only make every later write of this
 *    connection fail on them again.
 *  - From any other method they are kept and written again by the next operation (or its error
 *    returned): a failed read may end only the statement (SQLITE_FULL with a statement journal),
 *    the transaction going on to commit over the frames it spilled, and some callers ignore the
 *    error (xClose; wal.c walLimitSize's xFileSize and xTruncate), so dropping there could leave a
 *    hole under a later commit frame. */
static int flush(struct wb_file *w, bool drop)
{
    if (w->len == 0) {
        return SQLITE_OK;
    }
    int rc = w->real->pMethods->xWrite(w->real, w->buf, (int)w->len, w->off);
    if (rc == SQLITE_OK || drop) {
        w->len = 0;
    }
    return rc;
}

static int wb_close(sqlite3_file *f)
{
    struct wb_file *w = (struct wb_file *)f;
    /* A failed flush here loses only frames of no published transaction (a commit's are written
     * by its barrier at the latest), as a close in the middle of a transaction discards them. */
    int rc = flush(w, true);
    if (w->peer != NULL) {
        w->peer->peer = NULL;
        w->peer = NULL;
    }
    int rc2 = w->real->pMethods->xClose(w->real);
    sqlite3_free(w->buf);
    w->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, p, n, off);
}

static int wb_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    struct wb_file *w = (struct wb_file *)f;
    if (!w->is_wal || n <= 0) {
        return w->real->pMethods->xWrite(w->real, p, n, off);
    }
    if (off == 0) {
        w->hwm = 0; /* the WAL restarts: its header, then frames appended from WAL_HDR */
    }
    if (off < w->hwm) {
        /* Not an append: a spilled frame's page overwritten in place, or a frame header rewritten
         * with a new checksum (walRewriteChecksums, the commit frame's last, right before the
         * commit is published). Written through, after what is gathered, in file order. */
        int rc = flush(w, true);
        return rc != SQLITE_OK ? rc : w->real->pMethods->xWrite(w->real, p, n, off);
    }
    w->hwm = off + n;
    if (w->len > 0 && (off != w->off + (sqlite3_int64)w->len || w->len + (size_t)n > BUF_CAP)) {
        int rc = flush(w, true); /* not the continuation of the run, or the run is full */
        if (rc != SQLITE_OK) {
            return rc;
        }
    }
    if ((size_t)n > BUF_CAP) {
        return w->real->pMethods->xWrite(w->real, p, n, off);
    }
    if (w->buf == NULL) {
        w->buf = sqlite3_malloc64(BUF_CAP);
        if (w->buf == NULL) {
            return w->real->pMethods->xWrite(w->real, p, n, off); /* unbuffered, as SQLite */
        }
    }
    if (w->len == 0) {
        w->off = off;
    }
    memcpy(w->buf + w->len, p, (size_t)n);
    w->len += (size_t)n;
    const unsigned char *h = p;
    if (n == FRAME_HDR && off >= WAL_HDR && (h[4] | h[5] | h[6] | h[7]) != 0) {
        w->commit_page = off + FRAME_HDR; /* a commit frame's header: its page comes next */
        return SQLITE_OK;
    }
    if (off == w->commit_page) {
        /* The commit frame is complete: the transaction's frames go out. Only here is the
         * pending commit cleared: a run written early because it was full (which may split the
         * commit frame's header from its page) must not forget that the page ends a commit. */
        w->commit_page = NO_COMMIT;
        return flush(w, true);
    }
    return SQLITE_OK;
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (w->hwm > size) {
        w->hwm = size; /* bytes past size are gone: writing there again is an append */
    }
    return w->real->pMethods->xTruncate(w->real, size);
}

static int wb_sync(sqlite3_file *f, int flags)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int wb_lock(sqlite3_file *f, int lock)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xLock(w->real, lock);
}

static int wb_unlock(sqlite3_file *f, int lock)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xUnlock(w->real, lock);
}

static int wb_check_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wb_sector_size(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int wb_device_characteristics(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int wb_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **p)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, p);
}

static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}

/* Called on the database file. Before SQLite publishes a commit (wal.c walIndexWriteHdr calls the
 * barrier between writing the two copies of the wal-index header, and readers trust the header
 * only when both copies agree) every frame of it must be in the WAL file: the connection's
 * gathered WAL bytes are written first. The WAL is found through the pair's link (wb_open)
 * rather than by flushing every WAL open in the process under a global lock: only this
 * connection's frames can be the ones published here, and the link needs no lock since the
 * connection is used by one thread at a time. The barrier cannot return an error; if the write
 * fails, publishing would make readers (and a checkpoint) use frames that are not in the file,
 * so the process stops instead: after a crash recovery rebuilds the wal-index from the WAL file
 * alone, whose commit frames are all complete. With the append-only rule the buffer is empty
 * here for every write pattern SQLite 3.40 has with synchronous=NORMAL (the fsm's setting), so
 * this is a safeguard, not a path taken. */
static void wb_shm_barrier(sqlite3_file *f)
{
    struct wb_file *w = (struct wb_file *)f;
    if (w->peer != NULL && w->peer->len > 0) {
        int rc = flush(w->peer, false);
        if (rc != SQLITE_OK) {
            fprintf(stderr, "sinter-fsm vfs: WAL write before publishing a commit failed (%d)\n",
                    rc);
            abort();
        }
    }
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int wb_shm_unmap(sqlite3_file *f, int del)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = flush(w, false);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFetch(w->real, off, n, pp);
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

/* One method table per io version the real VFS may hand out (the shm and fetch methods exist
 * from versions 2 and 3); a file gets the one of its real file's version, so SQLite never calls
 * a method the real file lacks. */
static sqlite3_io_methods g_io[3];

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)vfs;
    struct wb_file *w = (struct wb_file *)f;
    memset(w, 0, sizeof *w);
    w->real = (sqlite3_file *)(w + 1);
    w->commit_page = NO_COMMIT;
    int rc = g_real->xOpen(g_real, name, w->real, flags, out);
    if (rc != SQLITE_OK || w->real->pMethods == NULL) {
        w->base.pMethods = NULL; /* SQLite calls no method, not even xClose */
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    int v = w->real->pMethods->iVersion;
    w->base.pMethods = &g_io[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
    w->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    if (w->is_wal) {
        /* The pager opens a WAL with the name it derived from its database file's, from which
         * SQLite finds that file (sqlite3_database_file_object); linked only if it is one of
         * ours, for the barrier flush. */
        sqlite3_file *db = sqlite3_database_file_object(name);
        if (db != NULL &&
            (db->pMethods == &g_io[0] || db->pMethods == &g_io[1] || db->pMethods == &g_io[2])) {
            w->peer = (struct wb_file *)db;
            w->peer->peer = w;
        }
    }
    return SQLITE_OK;
}

static int wb_delete(sqlite3_vfs *v, const char *name, int sync)
{
    (void)v;
    return g_real->xDelete(g_real, name, sync);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return g_real->xAccess(g_real, name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return g_real->xFullPathname(g_real, name, n, out);
}

static void *wb_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return g_real->xDlOpen(g_real, name);
}

static void wb_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    g_real->xDlError(g_real, n, out);
}

static void (*wb_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return g_real->xDlSym(g_real, h, sym);
}

static void wb_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    g_real->xDlClose(g_real, h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xRandomness(g_real, n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return g_real->xSleep(g_real, us);
}

static int wb_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return g_real->xCurrentTime(g_real, out);
}

static int wb_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xGetLastError != NULL ? g_real->xGetLastError(g_real, n, out) : 0;
}

static int wb_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return g_real->xCurrentTimeInt64(g_real, out);
}

static void init_once(void)
{
    if (sqlite3_initialize() != SQLITE_OK) {
        return;
    }
    g_real = sqlite3_vfs_find(NULL);
    if (g_real == NULL || g_real->iVersion < 2 || g_real->xCurrentTimeInt64 == NULL) {
        return;
    }
    for (int i = 0; i < 3; i++) {
        g_io[i] = (sqlite3_io_methods){
            .iVersion = i + 1,
            .xClose = wb_close,
            .xRead = wb_read,
            .xWrite = wb_write,
            .xTruncate = wb_truncate,
            .xSync = wb_sync,
            .xFileSize = wb_file_size,
            .xLock = wb_lock,
            .xUnlock = wb_unlock,
            .xCheckReservedLock = wb_check_reserved,
            .xFileControl = wb_file_control,
            .xSectorSize = wb_sector_size,
            .xDeviceCharacteristics = wb_device_characteristics,
            .xShmMap = i >= 1 ? wb_shm_map : NULL,
            .xShmLock = i >= 1 ? wb_shm_lock : NULL,
            .xShmBarrier = i >= 1 ? wb_shm_barrier : NULL,
            .xShmUnmap = i >= 1 ? wb_shm_unmap : NULL,
            .xFetch = i >= 2 ? wb_fetch : NULL,
            .xUnfetch = i >= 2 ? wb_unfetch : NULL,
        };
    }
    /* Version 2: the syscall-override methods (version 3) are the default VFS's business. */
    g_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wb_file) + g_real->szOsFile,
        .mxPathname = g_real->mxPathname,
        .zName = VFS_NAME,
        .xOpen = wb_open,
        .xDelete = wb_delete,
        .xAccess = wb_access,
        .xFullPathname = wb_full_pathname,
        .xDlOpen = wb_dlopen,
        .xDlError = wb_dlerror,
        .xDlSym = wb_dlsym,
        .xDlClose = wb_dlclose,
        .xRandomness = wb_randomness,
        .xSleep = wb_sleep,
        .xCurrentTime = wb_current_time,
        .xGetLastError = wb_last_error,
        .xCurrentTimeInt64 = wb_current_time64,
    };
    g_ok = sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK;
}

const char *sinter_tc_fsm_vfs(void)
{
    pthread_once(&g_once, init_once);
    return g_ok ? VFS_NAME : NULL;
}
