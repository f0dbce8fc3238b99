/*
 * io_trace — a timing wrapper around the raft store's POSIX I/O table (sinter_store_io), for
 * raft-bench's commit-gap attribution (issue #4, "no stall when a snapshot is taken"). A host given
 * it as opts.store_io records, per node, every background I/O call (snapshot file, spare segment,
 * unlinks, directory syncs) and every log write / sync that took at least IO_TRACE_SEG_MIN_NS,
 * with its start, duration and the file it touched. The bench then asks, for each commit gap,
 * what overlapped it. The host and store are unchanged: this is bench code, used only with
 * raft-bench --io-trace.
 */
#ifndef SINTER_BENCH_IO_TRACE_H
#define SINTER_BENCH_IO_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "sinter/raft_store.h"

/* Log writes shorter than this are only counted: a commit gap is about long ones. */
#define IO_TRACE_SEG_MIN_NS 500000u

enum io_trace_op {
    IOT_OPEN, /* with O_CREAT */
    IOT_WRITE,
    IOT_READ,
    IOT_FDATASYNC,
    IOT_FSYNC,
    IOT_RENAME,
    IOT_UNLINK,
    IOT_SYNCDIR,
    IOT_FALLOCATE,
    IOT_FTRUNCATE,
    IOT_WRITEBACK,
    IOT_WRITEBACK_WAIT,
    IOT_DONTNEED,
    IOT_OP_COUNT
};

/* What file an operation touched, from its name (raft/store: seg-*, spare-*.tmp, snap-*.tmp,
 * snap-*.snap, the meta file, the directory). */
enum io_trace_kind {
    IOK_SEG,      /* log segment */
    IOK_SPARE,    /* spare segment being zero-filled (or its header at rollover) */
    IOK_SNAP,     /* snapshot: temporary file being written, or a final one (read, unlinked) */
    IOK_DIR,      /* directory sync */
    IOK_OTHER,    /* meta (hard state), the direct-I/O probe, ... */
    IOK_UNLINKED, /* only as `via`: the thread's last call was an unlink (garbage collection) */
    IOK_KIND_COUNT
};

struct io_trace_rec {
    uint64_t t0;  /* CLOCK_MONOTONIC ns (bench_now_ns) */
    uint64_t dur; /* ns */
    uint32_t len; /* bytes for writes / reads, else 0 */
    uint8_t op;   /* enum io_trace_op */
    uint8_t kind; /* enum io_trace_kind */
    uint8_t via;  /* syncdir: the kind this thread renamed last (whose sync it is); else kind */
};

struct io_trace;

/* A tracer over sinter_store_io_posix(); *io is the table to pass as the host's store_io (valid
 * until io_trace_free). Returns NULL when out of memory. Ownership: the caller frees it with
 * io_trace_free after the host stopped. */
struct io_trace *io_trace_new(const struct sinter_store_io **io);
void io_trace_free(struct io_trace *t);

/* Moves the records taken since the last call into *recs (malloc'd, caller frees; *n of them,
 * in completion order) and starts a new interval. *dropped: records lost because the buffer was
 * full. Any thread. */
void io_trace_take(struct io_trace *t, struct io_trace_rec **recs, uint64_t *n, uint64_t *dropped);

const char *io_trace_op_name(int op);
const char *io_trace_kind_name(int kind);

#endif
