/*
 * Unit tests for the raft store (sinter/raft_store.h): restarts, segment rollover, truncation and
 * compaction across segments, crash recovery under injected faults (writes cut short, bytes
 * flipped, unsynced tails dropped, random power cuts), metadata slots, snapshots, ENOSPC / EIO.
 * Real files live in a mkdtemp directory under /tmp, removed at the end; crash tests use the
 * in-memory file system of faultfs.c, which knows what was synced.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultfs.h"
#include "sinter/crc32c.h"
#include "sinter/raft_store.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *mktmp(void)
{
    char *d = strdup("/tmp/sinter-store-test-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmtree(char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

struct reports {
    int n;
    char last[600];
};

static void on_report(void *arg, const char *msg)
{
    struct reports *r = arg;
    r->n++;
    snprintf(r->last, sizeof r->last, "%s", msg);
}

static void opts_init(struct sinter_store_options *o, const struct sinter_store_io *io,
                      uint32_t segsize, struct reports *r)
{
    sinter_store_options_defaults(o);
    if (io != NULL) {
        o->io = io;
    }
    o->segment_size = segsize;
    o->report = on_report;
    o->report_arg = r;
}

/* Entry payloads are a function of (index, term), so any entry read back can be checked. */
static uint32_t ent_len(uint64_t index, uint64_t term)
{
    return (uint32_t)((index * 37u + term * 11u) % 161u);
}

static uint8_t ent_byte(uint64_t index, uint64_t term, uint32_t i)
{
    return (uint8_t)(index * 131u + term * 17u + i * 7u + 1u);
}

struct batch {
    struct sinter_raft_entry *e;
    size_t n;
};

static struct batch make_batch(uint64_t first, size_t n, uint64_t term)
{
    struct batch b = {calloc(n, sizeof *b.e), n};
    assert_non_null(b.e);
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = first + i;
        struct sinter_raft_entry *e = &b.e[i];
        e->index = idx;
        e->term = term;
        e->type = SINTER_RAFT_ENTRY_NORMAL;
        e->len = ent_len(idx, term);
        e->data = e->len ? malloc(e->len) : NULL;
        for (uint32_t k = 0; k < e->len; k++) {
            e->data[k] = ent_byte(idx, term, k);
        }
    }
    return b;
}

static void free_batch(struct batch b)
{
    for (size_t i = 0; i < b.n; i++) {
        free(b.e[i].data);
    }
    free(b.e);
}

static int append_range(struct sinter_store *s, uint64_t first, size_t n, uint64_t term)
{
    struct batch b = make_batch(first, n, term);
    int rc = sinter_store_append(s, b.e, b.n);
    free_batch(b);
    return rc;
}

/* True when e holds the payload of (index, term). */
static bool entry_ok(const struct sinter_raft_entry *e, uint64_t index, uint64_t term)
{
    if (e->index != index || e->term != term || e->len != ent_len(index, term) ||
        e->type != SINTER_RAFT_ENTRY_NORMAL) {
        return false;
    }
    for (uint32_t k = 0; k < e->len; k++) {
        if (e->data[k] != ent_byte(index, term, k)) {
            return false;
        }
    }
    return true;
}

/* A model log: terms[i] for index i (1-based), last index. */
struct model {
    uint64_t terms[4096];
    uint64_t last;
};

static void check_entries(const struct sinter_raft_entry *e, size_t n, uint64_t first,
                          const struct model *m)
{
    for (size_t i = 0; i < n; i++) {
        assert_true(entry_ok(&e[i], first + i, m->terms[first + i]));
    }
}

static void model_set(struct model *m, uint64_t first, size_t n, uint64_t term)
{
    for (size_t i = 0; i < n; i++) {
        m->terms[first + i] = term;
    }
    m->last = first + n - 1;
}

static int open_store(struct sinter_store **s, const char *dir,
                      const struct sinter_store_options *o, struct sinter_store_recovered *rec)
{
    char err[600];
    err[0] = '\0';
    int rc = sinter_store_open(s, dir, o, rec, err, sizeof err);
    if (rc != SINTER_OK) {
        print_message("open: %s: %s\n", sinter_errname(rc), err);
    }
    return rc;
}

/* Offset of record `index` in a segment starting at `first` written with model m's terms. */
static uint64_t rec_offset(const struct model *m, uint64_t first, uint64_t index)
{
    uint64_t off = 32;
    for (uint64_t i = first; i < index; i++) {
        off += 32 + ((ent_len(i, m->terms[i]) + 7u) & ~7u);
    }
    return off;
}

static void flip_file(const char *dir, const char *name, uint64_t off)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static bool file_exists(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static size_t count_files(const char *dir, const char *prefix, const char *suffix)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls -1 %s", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256];
    size_t n = 0;
    while (fgets(line, sizeof line, p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        size_t l = strlen(line);
        size_t sl = strlen(suffix);
        if (strncmp(line, prefix, strlen(prefix)) == 0 && l >= sl &&
            strcmp(line + l - sl, suffix) == 0) {
            n++;
        }
    }
    pclose(p);
    return n;
}

static struct sinter_raft_snapshot_meta snap_meta(uint64_t index, uint64_t term)
{
    struct sinter_raft_snapshot_meta m;
    memset(&m, 0, sizeof m);
    m.index = index;
    m.term = term;
    m.config_index = 1;
    m.config.n = 3;
    m.config.servers[0] = (struct sinter_raft_server){1, SINTER_RAFT_VOTER};
    m.config.servers[1] = (struct sinter_raft_server){2, SINTER_RAFT_VOTER};
    m.config.servers[2] = (struct sinter_raft_server){7, SINTER_RAFT_LEARNER};
    return m;
}

static uint8_t snap_byte(uint64_t index, uint64_t i)
{
    return (uint8_t)(index * 29u + i * 13u + 5u);
}

static int write_snapshot(struct sinter_store *s, uint64_t index, uint64_t term, size_t size,
                          size_t chunk)
{
    struct sinter_raft_snapshot_meta m = snap_meta(index, term);
    struct sinter_store_snap_writer *w = NULL;
    int rc = sinter_store_snap_begin(s, &m, &w);
    if (rc != SINTER_OK) {
        return rc;
    }
    uint8_t *buf = malloc(chunk);
    assert_non_null(buf);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        for (size_t i = 0; i < n; i++) {
            buf[i] = snap_byte(index, off + i);
        }
        rc = sinter_store_snap_write(w, buf, n);
        if (rc != SINTER_OK) {
            break;
        }
    }
    free(buf);
    if (rc != SINTER_OK) {
        sinter_store_snap_abort(w);
        return rc;
    }
    return sinter_store_snap_finish(w);
}

/* Reads the newest snapshot back in odd-sized chunks and checks meta and bytes. */
static int verify_snapshot(struct sinter_store *s, uint64_t index, uint64_t term, size_t size)
{
    struct sinter_store_snap_reader *r = NULL;
    struct sinter_raft_snapshot_meta m;
    uint64_t sz = 0;
    int rc = sinter_store_snap_open(s, &m, &sz, &r);
    if (rc != SINTER_OK) {
        return rc;
    }
    struct sinter_raft_snapshot_meta want = snap_meta(index, term);
    assert_int_equal(m.index, index);
    assert_int_equal(m.term, term);
    assert_int_equal(m.config_index, want.config_index);
    assert_memory_equal(&m.config, &want.config, sizeof want.config);
    assert_int_equal(sz, size);
    uint8_t buf[777];
    uint64_t pos = 0;
    uint64_t bad = 0;
    for (;;) {
        size_t n = 0;
        rc = sinter_store_snap_read(r, buf, sizeof buf, &n);
        if (rc != SINTER_OK || n == 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            bad += buf[i] != snap_byte(index, pos + i);
        }
        pos += n;
    }
    sinter_store_snap_close(r);
    if (rc == SINTER_OK) {
        /* Whatever the reader accepted is exactly what was written. */
        assert_int_equal(pos, size);
        assert_int_equal(bad, 0);
    }
    return rc;
}

/* ---- restarts, rollover, truncation, compaction (real files) -------------------------------- */

static void clean_restart(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};

    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_false(rec.has_snapshot);
    assert_int_equal(rec.n_entries, 0);
    assert_int_equal(rec.hard_state.term, 0);
    assert_int_equal(sinter_store_first_index(s), 1);
    assert_int_equal(sinter_store_last_index(s), 0);
    sinter_store_recovered_free(&rec);

    struct sinter_raft_hard_state hs = {.term = 3, .vote = 2, .commit = 0};
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
    assert_int_equal(append_range(s, 1, 10, 1), SINTER_OK);
    assert_int_equal(append_range(s, 11, 30, 2), SINTER_OK);
    assert_int_equal(append_range(s, 41, 1, 3), SINTER_OK);
    model_set(&m, 1, 10, 1);
    model_set(&m, 11, 30, 2);
    model_set(&m, 41, 1, 3);
    hs.commit = 30;
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
    sinter_store_close(s);

    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 41);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.hard_state.term, 3);
    assert_int_equal(rec.hard_state.vote, 2);
    assert_int_equal(rec.hard_state.commit, 30);
    assert_int_equal(rec.torn_bytes, 0);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);
    uint64_t t = 0;
    assert_int_equal(sinter_store_term(s, 20, &t), SINTER_OK);
    assert_int_equal(t, 2);
    assert_int_equal(sinter_store_term(s, 42, &t), SINTER_ENOTFOUND);

    assert_int_equal(append_range(s, 42, 9, 3), SINTER_OK);
    model_set(&m, 42, 9, 3);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 50);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* Many small segments; batches span several of them; reads cross their boundaries. */
static void segment_rollover(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    uint64_t next = 1;
    size_t sizes[] = {1, 7, 40, 3, 100, 19, 2, 64, 33, 150};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        assert_int_equal(append_range(s, next, sizes[i], 1 + i / 3), SINTER_OK);
        model_set(&m, next, sizes[i], 1 + i / 3);
        next += sizes[i];
    }
    assert_int_equal(sinter_store_last_index(s), m.last);
    assert_true(sinter_store_segment_count(s) > 8);
    /* Every range, including ones crossing segments, reads back intact. */
    for (uint64_t lo = 1; lo <= m.last; lo += 13) {
        struct sinter_raft_entry *e;
        size_t n;
        assert_int_equal(sinter_store_read(s, lo, lo + 57, 0, &e, &n), SINTER_OK);
        size_t want = lo + 57 <= m.last ? 58 : (size_t)(m.last - lo + 1);
        assert_int_equal(n, want);
        check_entries(e, n, lo, &m);
        sinter_store_entries_free(e);
    }
    /* max_bytes stops early but always returns one entry. */
    struct sinter_raft_entry *e;
    size_t n;
    assert_int_equal(sinter_store_read(s, 5, 400, 1, &e, &n), SINTER_OK);
    assert_int_equal(n, 1);
    check_entries(e, n, 5, &m);
    sinter_store_entries_free(e);
    assert_int_equal(sinter_store_read(s, 5, 400, 500, &e, &n), SINTER_OK);
    assert_true(n >= 2 && n < 30);
    check_entries(e, n, 5, &m);
    sinter_store_entries_free(e);
    assert_int_equal(sinter_store_read(s, m.last + 1, m.last + 5, 0, &e, &n), SINTER_OK);
    assert_int_equal(n, 0);
    assert_null(e);
    assert_int_equal(sinter_store_read(s, 0, 5, 0, &e, &n), SINTER_EINVAL);
    size_t segs = sinter_store_segment_count(s);
    sinter_store_close(s);

    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, m.last);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(sinter_store_segment_count(s), segs);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* A 64 x 128-byte batch costs one pwrite and one fdatasync (group commit), nothing else. */
static void group_commit_one_write_one_sync(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    struct sinter_store_options o;
    opts_init(&o, &fio.io, 1024 * 1024, &rp);
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* the fallocate'd, buffered path */
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 1, 1), SINTER_OK); /* creates the segment */
    struct sinter_raft_entry ents[64];
    uint8_t data[64][128];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 64; i++) {
            memset(data[i], round + i, sizeof data[i]);
            ents[i] = (struct sinter_raft_entry){.index = 2 + (uint64_t)(round * 64 + i),
                                                 .term = 1,
                                                 .type = SINTER_RAFT_ENTRY_NORMAL,
                                                 .len = 128,
                                                 .data = data[i]};
        }
        memset(fio.calls, 0, sizeof fio.calls);
        assert_int_equal(sinter_store_append(s, ents, 64), SINTER_OK);
        assert_int_equal(fio.calls[FOP_PWRITE], 1);
        assert_int_equal(fio.calls[FOP_FDATASYNC], 1);
        long total = 0;
        for (int k = 0; k < FOP_COUNT; k++) {
            total += fio.calls[k];
        }
        assert_int_equal(total, 2);
    }
    sinter_store_close(s);
    rmtree(dir);
}

static void truncate_across_segments(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    for (uint64_t i = 1; i <= 300; i += 10) {
        assert_int_equal(append_range(s, i, 10, 1), SINTER_OK);
    }
    model_set(&m, 1, 300, 1);
    size_t before = sinter_store_segment_count(s);
    assert_true(before > 5);

    /* Cut in the middle of an early segment: later segments go, the cut one keeps its head. */
    assert_int_equal(sinter_store_truncate(s, 77), SINTER_OK);
    assert_int_equal(sinter_store_last_index(s), 76);
    assert_true(sinter_store_segment_count(s) < before);
    assert_int_equal(sinter_store_truncate(s, 500), SINTER_OK); /* beyond the end: no-op */
    assert_int_equal(append_range(s, 77, 60, 2), SINTER_OK);
    model_set(&m, 77, 60, 2);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 136);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);

    /* Cut exactly at a segment's first index: that whole segment goes. */
    char name[64];
    uint64_t segfirst = 0;
    for (uint64_t i = 100; i <= 136 && segfirst == 0; i++) {
        snprintf(name, sizeof name, "seg-%020llu", (unsigned long long)i);
        if (file_exists(dir, name)) {
            segfirst = i;
        }
    }
    assert_true(segfirst > 0);
    assert_int_equal(sinter_store_truncate(s, segfirst), SINTER_OK);
    assert_false(file_exists(dir, name));
    assert_int_equal(sinter_store_last_index(s), segfirst - 1);
    /* An append below the last index truncates implicitly (the ready contract). */
    assert_int_equal(append_range(s, segfirst - 5, 30, 3), SINTER_OK);
    model_set(&m, segfirst - 5, 30, 3);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, m.last);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);

    /* Truncate everything: the log is empty, the next append is at 1 again. */
    assert_int_equal(sinter_store_truncate(s, 1), SINTER_OK);
    assert_int_equal(sinter_store_segment_count(s), 0);
    assert_int_equal(sinter_store_last_index(s), 0);
    assert_int_equal(append_range(s, 1, 5, 4), SINTER_OK);
    model_set(&m, 1, 5, 4);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 5);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

static void compaction_across_segments(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    for (uint64_t i = 1; i <= 300; i += 20) {
        assert_int_equal(append_range(s, i, 20, 1 + i / 100), SINTER_OK);
        model_set(&m, i, 20, 1 + i / 100);
    }
    size_t before = sinter_store_segment_count(s);
    /* No snapshot yet: compaction would open a gap, refused. */
    assert_int_equal(sinter_store_compact(s, 100), SINTER_EINVAL);
    assert_int_equal(write_snapshot(s, 150, m.terms[150], 5000, 1000), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, 151), SINTER_EINVAL);
    assert_int_equal(sinter_store_compact(s, 150), SINTER_OK);
    uint64_t first = sinter_store_first_index(s);
    assert_true(first > 1 && first <= 151);
    assert_true(sinter_store_segment_count(s) < before);
    uint64_t t;
    assert_int_equal(sinter_store_term(s, first - 1, &t), SINTER_ECOMPACTED);
    struct sinter_raft_entry *e;
    size_t n;
    assert_int_equal(sinter_store_read(s, 1, 10, 0, &e, &n), SINTER_ECOMPACTED);
    assert_int_equal(sinter_store_read(s, first, 300, 0, &e, &n), SINTER_OK);
    assert_int_equal(n, 300 - first + 1);
    check_entries(e, n, first, &m);
    sinter_store_entries_free(e);
    assert_int_equal(append_range(s, 2, 1, 9), SINTER_ECOMPACTED);
    assert_int_equal(sinter_store_truncate(s, 1), SINTER_ECOMPACTED);
    sinter_store_close(s);

    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_true(rec.has_snapshot);
    assert_int_equal(rec.snapshot.index, 150);
    assert_int_equal(rec.n_entries, 150);
    check_entries(rec.entries, rec.n_entries, 151, &m);
    assert_int_equal(sinter_store_first_index(s), first);
    assert_int_equal(verify_snapshot(s, 150, m.terms[150], 5000), SINTER_OK);
    sinter_store_recovered_free(&rec);
    /* Compacting everything the snapshot covers still keeps the last segment. */
    assert_int_equal(write_snapshot(s, 300, m.terms[300], 10, 10), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, 300), SINTER_OK);
    assert_int_equal(sinter_store_segment_count(s), 1);
    assert_int_equal(sinter_store_last_index(s), 300);
    assert_int_equal(append_range(s, 301, 3, 5), SINTER_OK);
    model_set(&m, 301, 3, 5);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, 300);
    assert_int_equal(rec.n_entries, 3);
    check_entries(rec.entries, rec.n_entries, 301, &m);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

static void append_validation(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 2, 1, 1), SINTER_EINVAL); /* gap after an empty log */
    assert_int_equal(sinter_store_append(s, NULL, 0), SINTER_EINVAL);
    assert_int_equal(append_range(s, 1, 5, 2), SINTER_OK);
    assert_int_equal(append_range(s, 7, 1, 2), SINTER_EINVAL); /* gap */
    assert_int_equal(append_range(s, 6, 1, 1), SINTER_EINVAL); /* term goes backwards */
    assert_int_equal(append_range(s, 0, 1, 1), SINTER_EINVAL); /* index 0 */
    struct batch b = make_batch(6, 2, 2);
    b.e[1].term = 1; /* decreasing inside the batch */
    assert_int_equal(sinter_store_append(s, b.e, b.n), SINTER_EINVAL);
    b.e[1].term = 2;
    b.e[1].index = 8; /* not consecutive */
    assert_int_equal(sinter_store_append(s, b.e, b.n), SINTER_EINVAL);
    b.e[1].index = 7;
    b.e[0].type = 256;
    assert_int_equal(sinter_store_append(s, b.e, b.n), SINTER_EINVAL);
    free_batch(b);
    uint8_t big[5000] = {0};
    struct sinter_raft_entry e = {.index = 6, .term = 2, .type = 1, .len = sizeof big, .data = big};
    assert_int_equal(sinter_store_append(s, &e, 1), SINTER_ETOOBIG);
    assert_non_null(strstr(sinter_store_errmsg(s), "does not fit"));
    assert_int_equal(sinter_store_last_index(s), 5);
    struct sinter_raft_hard_state hs = {.term = 5, .vote = 1};
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
    hs.vote = 2; /* another vote in the same term */
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_EINVAL);
    hs.term = 4; /* term going back */
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_EINVAL);
    sinter_store_close(s);
    rmtree(dir);
}

/* ---- corruption on real files --------------------------------------------------------------- */

static void setup_five_batches(const char *dir, const struct sinter_store_options *o,
                               struct model *m)
{
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, o, NULL), SINTER_OK);
    for (uint64_t i = 1; i <= 50; i += 10) {
        assert_int_equal(append_range(s, i, 10, 1), SINTER_OK);
    }
    model_set(m, 1, 50, 1);
    sinter_store_close(s);
}

/* A flipped byte in the last batch: a corrupt tail, cut off and reported, never returned. */
static void flipped_tail_is_truncated(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct model m = {0};
    setup_five_batches(dir, &o, &m);
    uint64_t off = rec_offset(&m, 1, 47);
    flip_file(dir, "seg-00000000000000000001", off + 33);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 46);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_true(rec.torn_bytes > 0);
    assert_int_equal(rp.n, 1);
    assert_non_null(strstr(rp.last, "seg-00000000000000000001"));
    assert_non_null(strstr(rp.last, "CRC32C"));
    sinter_store_recovered_free(&rec);
    assert_int_equal(append_range(s, 47, 10, 2), SINTER_OK);
    model_set(&m, 47, 10, 2);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 56);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    assert_int_equal(rp.n, 1);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* Garbage in the preallocated space after the last record is cut; nothing is lost. */
static void garbage_after_end_is_cut(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct model m = {0};
    setup_five_batches(dir, &o, &m);
    flip_file(dir, "seg-00000000000000000001", 60000);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 50);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rp.n, 1);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* A flipped byte in a batch that later batches follow: damage to durable data, refuse to open. */
static void flipped_middle_is_corruption(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct model m = {0};
    setup_five_batches(dir, &o, &m);
    flip_file(dir, "seg-00000000000000000001", rec_offset(&m, 1, 15) + 20);
    struct sinter_store *s = (struct sinter_store *)&rp;
    struct sinter_store_recovered rec;
    char err[600];
    assert_int_equal(sinter_store_open(&s, dir, &o, &rec, err, sizeof err), SINTER_ECORRUPT);
    assert_null(s);
    assert_null(rec.entries);
    assert_non_null(strstr(err, "seg-00000000000000000001"));
    assert_non_null(strstr(err, "offset"));
    assert_non_null(strstr(err, "index 15"));
    /* It stays refused: nothing was "repaired" away. */
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    rmtree(dir);

    /* The same in a segment that is not the last one. */
    dir = mktmp();
    opts_init(&o, NULL, 4096, &rp);
    setup_five_batches(dir, &o, &m);
    flip_file(dir, "seg-00000000000000000001", rec_offset(&m, 1, 3) + 10);
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    assert_non_null(strstr(err, "refusing to start"));
    rmtree(dir);
}

/* Sets the version byte of the record at `off` of segment `name` and, if `fix_crc`, recomputes
 * its CRC32C the way the store does (salt from the segment header, internal.h), so the record is
 * whole in every respect but its version: what a newer build would have written. */
static void set_record_version(const char *dir, const char *name, uint64_t off, uint8_t version,
                               bool fix_crc)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t salt[8], h[32];
    assert_int_equal(pread(fd, salt, 8, 8), 8);
    assert_int_equal(pread(fd, h, 32, (off_t)off), 32);
    assert_int_equal(h[0], 1); /* a version-1 record is where the caller said */
    uint32_t len =
        (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
    uint8_t *data = malloc(len + 1u);
    assert_non_null(data);
    assert_int_equal(pread(fd, data, len, (off_t)(off + 32)), (ssize_t)len);
    h[0] = version;
    if (fix_crc) {
        uint32_t crc = sinter_crc32c(0, salt, 8);
        crc = sinter_crc32c(crc, h, 28);
        crc = sinter_crc32c(crc, data, len);
        for (int i = 0; i < 4; i++) {
            h[28 + i] = (uint8_t)(crc >> (8 * i));
        }
    }
    free(data);
    assert_int_equal(pwrite(fd, h, 32, (off_t)off), 32);
    close(fd);
}

/* Opens dir expecting a refusal of the whole version-2 record of index `index`: ECORRUPT, a
 * message naming the segment, the offset, the index and the version, and still refused on a
 * second open (nothing was cut). */
static void expect_version_refused(const char *dir, const struct sinter_store_options *o,
                                   const char *seg, uint64_t off, uint64_t index)
{
    struct sinter_store *s = NULL;
    struct sinter_store_recovered rec;
    char err[600], want[80];
    for (int k = 0; k < 2; k++) {
        err[0] = '\0';
        assert_int_equal(sinter_store_open(&s, dir, o, &rec, err, sizeof err), SINTER_ECORRUPT);
        assert_null(s);
        assert_null(rec.entries);
        if (k == 0) {
            print_message("refused: %s\n", err);
        }
        assert_non_null(strstr(err, seg));
        snprintf(want, sizeof want, "offset %" PRIu64 " (index %" PRIu64 ")", off, index);
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, "record version 2"));
    }
}

/* A whole record (its CRC32C verifies) of a record version this build does not know is written
 * by a newer build, never torn: open refuses it wherever it is (internal.h, "Record versions"),
 * in the middle of the log, in the middle of the last batch (where a bad record is otherwise a
 * torn tail), as the very last record, and in a segment that is not the last. The same byte
 * without a matching CRC is damage as before: cut as a torn tail at the end. */
static void unknown_record_version_refused(void **state)
{
    (void)state;
    static const char seg1[] = "seg-00000000000000000001";
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct model m = {0};
    /* 15: later batches follow; 45: records of its own (last) batch follow, none of a later one;
     * 50: the last record of the log. */
    static const uint64_t at[] = {15, 45, 50};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        char *dir = mktmp();
        setup_five_batches(dir, &o, &m);
        uint64_t off = rec_offset(&m, 1, at[k]);
        set_record_version(dir, seg1, off, 2, true);
        rp.n = 0;
        expect_version_refused(dir, &o, seg1, off, at[k]);
        assert_int_equal(rp.n, 0); /* nothing reported as cut */
        rmtree(dir);
    }

    /* In a segment that is not the last one (4 KiB segments: several). */
    char *dir = mktmp();
    struct sinter_store_options o4;
    opts_init(&o4, NULL, 4096, &rp);
    setup_five_batches(dir, &o4, &m);
    assert_true(count_files(dir, "seg-", "") > 1);
    uint64_t off = rec_offset(&m, 1, 3);
    set_record_version(dir, seg1, off, 2, true);
    expect_version_refused(dir, &o4, seg1, off, 3);
    rmtree(dir);

    /* Control: the same version byte with the old CRC is a bad record like any other: as the last
     * record, a torn tail, cut and reported. */
    dir = mktmp();
    setup_five_batches(dir, &o, &m);
    set_record_version(dir, seg1, rec_offset(&m, 1, 50), 2, false);
    rp.n = 0;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 49);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_true(rec.torn_bytes > 0);
    assert_int_equal(rp.n, 1);
    assert_non_null(strstr(rp.last, "unknown record version"));
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

static void missing_files_are_corruption(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct model m = {0};
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 200, 1), SINTER_OK);
    assert_true(sinter_store_segment_count(s) > 3);
    sinter_store_close(s);
    char path[4200];
    char err[600];
    /* A segment in the middle vanished. */
    char name[64] = "";
    for (uint64_t i = 2; i <= 150; i++) {
        snprintf(name, sizeof name, "seg-%020llu", (unsigned long long)i);
        if (file_exists(dir, name)) {
            break;
        }
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    assert_non_null(strstr(err, "missing"));
    /* The first segment vanished and no snapshot covers it. */
    snprintf(path, sizeof path, "%s/seg-00000000000000000001", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    rmtree(dir);

    dir = mktmp();
    setup_five_batches(dir, &o, &m);
    snprintf(path, sizeof path, "%s/meta.0", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/meta.1", dir);
    unlink(path);
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    assert_non_null(strstr(err, "meta"));
    rmtree(dir);
}

/* ---- crash recovery with the in-memory file system ------------------------------------------ */

/* Killed in the middle of a write (a prefix of the batch reached the page cache): the partial
 * batch is a torn tail; power cut right after: the unsynced tail is simply gone. */
static void write_cut_short_and_dropped_tail(void **state)
{
    (void)state;
    for (int policy = 0; policy < 3; policy++) {
        for (uint64_t seed = 1; seed <= 20; seed++) {
            struct memfs *fs = memfs_new(seed);
            struct reports rp = {0};
            struct sinter_store_options o;
            opts_init(&o, memfs_io(fs), 4096, &rp);
            o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* the fallocate'd, buffered path */
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            struct model m = {0};
            assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
            for (uint64_t i = 1; i <= 40; i += 8) {
                assert_int_equal(append_range(s, i, 8, 1), SINTER_OK);
            }
            model_set(&m, 1, 40, 1);
            /* seed picks the victim: the pwrite (cut short) or the fdatasync after it. */
            memfs_die_after(fs, (long)(seed % 2));
            assert_int_equal(append_range(s, 41, 12, 2), SINTER_EIO);
            assert_true(memfs_dead(fs));
            /* The store refuses further writes until reopened. */
            assert_int_equal(append_range(s, 41, 1, 2), SINTER_EIO);
            assert_non_null(strstr(sinter_store_errmsg(s), "failed earlier"));
            sinter_store_close(s);
            memfs_crash(fs, policy);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            assert_true(rec.n_entries >= 40 && rec.n_entries <= 52);
            model_set(&m, 41, 12, 2);
            check_entries(rec.entries, rec.n_entries, 1, &m);
            if (policy == MEMFS_CRASH_DROP) {
                assert_int_equal(rec.n_entries, 40);
            }
            if (policy == MEMFS_CRASH_KEEP && seed % 2 == 1) {
                assert_int_equal(rec.n_entries, 52); /* all written, only the sync was lost */
            }
            sinter_store_recovered_free(&rec);
            /* Recovery left a clean end: appending and reopening work. */
            uint64_t last = sinter_store_last_index(s);
            assert_int_equal(append_range(s, last + 1, 3, 3), SINTER_OK);
            model_set(&m, last + 1, 3, 3);
            sinter_store_close(s);
            memfs_crash(fs, MEMFS_CRASH_DROP);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            assert_int_equal(rec.n_entries, last + 3);
            check_entries(rec.entries, rec.n_entries, 1, &m);
            assert_int_equal(rec.torn_bytes, 0);
            sinter_store_recovered_free(&rec);
            sinter_store_close(s);
            memfs_free(fs);
        }
    }
}

/* The randomized crash loop. Every round: open and verify against the model, run random operations
 * (appends, conflicting appends, truncations, hard state, snapshots, compaction) until the
 * "process" dies at a random call, then cut the power (drop, random survival, or keep).
 * Invariant: the recovered log is a prefix of either the acknowledged log or the log the
 * interrupted operation was producing, and it contains every acknowledged entry the operation was
 * not itself removing; term and vote are the acknowledged or the attempted ones; the snapshot is
 * the acknowledged or the attempted one and reads back intact. */
enum op_kind { OP_NONE, OP_APPEND, OP_TRUNCATE, OP_HS, OP_SNAP };

struct world {
    struct model a;      /* acknowledged log */
    uint64_t snap_index; /* acknowledged snapshot (0: none) */
    uint64_t snap_term;
    struct sinter_raft_hard_state hs;
    /* the interrupted operation */
    int op;
    uint64_t k, n, term; /* APPEND: [k, k+n) at term; TRUNCATE: from k */
    struct sinter_raft_hard_state phs;
    uint64_t psnap_index, psnap_term;
};

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static size_t snap_size(uint64_t index)
{
    return (size_t)(index * 53u % 3000u);
}

static void verify_world(struct world *w, struct sinter_store *s,
                         const struct sinter_store_recovered *rec, uint64_t seed, int round)
{
    /* Snapshot: acknowledged or attempted. */
    uint64_t si = rec->has_snapshot ? rec->snapshot.index : 0;
    uint64_t st = rec->has_snapshot ? rec->snapshot.term : 0;
    bool snap_ok = (si == w->snap_index && st == w->snap_term) ||
                   (w->op == OP_SNAP && si == w->psnap_index && st == w->psnap_term);
    if (!snap_ok) {
        fail_msg("seed %llu round %d: snapshot (%llu,%llu), acked (%llu,%llu)",
                 (unsigned long long)seed, round, (unsigned long long)si, (unsigned long long)st,
                 (unsigned long long)w->snap_index, (unsigned long long)w->snap_term);
    }
    if (si > 0) {
        assert_int_equal(verify_snapshot(s, si, st, snap_size(si)), SINTER_OK);
    }
    /* Hard state. */
    bool hs_ok = (rec->hard_state.term == w->hs.term && rec->hard_state.vote == w->hs.vote) ||
                 (w->op == OP_HS && rec->hard_state.term == w->phs.term &&
                  rec->hard_state.vote == w->phs.vote);
    if (!hs_ok) {
        fail_msg("seed %llu round %d: hard state (%llu,%llu), acked (%llu,%llu)",
                 (unsigned long long)seed, round, (unsigned long long)rec->hard_state.term,
                 (unsigned long long)rec->hard_state.vote, (unsigned long long)w->hs.term,
                 (unsigned long long)w->hs.vote);
    }
    /* Log: the attempted log P, and the common prefix c of A and P. */
    static struct model p;
    p = w->a;
    uint64_t c = w->a.last;
    if (w->op == OP_APPEND) {
        for (uint64_t i = 0; i < w->n; i++) {
            p.terms[w->k + i] = w->term;
        }
        p.last = w->k + w->n - 1;
        c = w->k - 1 < c ? w->k - 1 : c;
    } else if (w->op == OP_TRUNCATE) {
        p.last = w->k - 1 < w->a.last ? w->k - 1 : w->a.last;
        c = p.last;
    }
    uint64_t last = si + rec->n_entries;
    bool prefix_a = last <= w->a.last;
    bool prefix_p = last <= p.last;
    for (size_t i = 0; i < rec->n_entries; i++) {
        uint64_t idx = si + 1 + i;
        prefix_a = prefix_a && entry_ok(&rec->entries[i], idx, w->a.terms[idx]);
        prefix_p = prefix_p && entry_ok(&rec->entries[i], idx, p.terms[idx]);
    }
    if (!(prefix_a || prefix_p) || last < c) {
        fail_msg("seed %llu round %d: recovered log ends at %llu (snapshot %llu), acked %llu, "
                 "attempted op %d ends at %llu, must keep %llu; prefix of acked %d, of attempted "
                 "%d",
                 (unsigned long long)seed, round, (unsigned long long)last, (unsigned long long)si,
                 (unsigned long long)w->a.last, w->op, (unsigned long long)p.last,
                 (unsigned long long)c, prefix_a, prefix_p);
    }
    /* The recovered state becomes the acknowledged one. */
    if (prefix_p && !prefix_a) {
        w->a = p;
    }
    w->a.last = last;
    w->snap_index = si;
    w->snap_term = st;
    w->hs = rec->hard_state;
    w->op = OP_NONE;
    assert_int_equal(sinter_store_last_index(s), last);
}

static int make_spare(struct sinter_store *s, bool on_thread);

/* Garbage taken from the store (options.defer_unlink) and not collected yet, oldest first, as
 * the host's garbage thread holds it. */
#define CRASH_GB_MAX 8
struct gbq {
    struct sinter_store_garbage *g[CRASH_GB_MAX];
    int n;
};

/* Collects the oldest queued garbage (all of it with all): the garbage thread's turn. */
static void gbq_collect(struct gbq *q, bool all)
{
    while (q->n > 0) {
        (void)sinter_store_garbage_collect(q->g[0]); /* fails once the "process" died */
        memmove(&q->g[0], &q->g[1], (size_t)(q->n - 1) * sizeof q->g[0]);
        q->n--;
        if (!all) {
            break;
        }
    }
}

/* Seeds [seed_lo, seed_hi]. direct: segment sizes that are multiples of 4 KiB, so the probe keeps
 * direct I/O on and segments made from spares take O_DIRECT | O_DSYNC appends (with truncation into
 * them, term changes, snapshots and compaction); else sizes 4096 + 8k, which turn it off. Odd
 * seeds run with options.defer_unlink: compacted segments and retired snapshots are queued and
 * removed now and then, or never before the crash, and the newest compacted segment is recycled
 * by the next spare (spare.c recycle_open). */
static void crash_loop(uint64_t seed_lo, uint64_t seed_hi, bool direct)
{
    static struct world w;
    long rounds = 0, ops = 0, deaths = 0, reports = 0, max_last = 0, snaps = 0, spares = 0;
    long dsync = 0, collected = 0, abandoned = 0;
    for (uint64_t seed = seed_lo; seed <= seed_hi; seed++) {
        memset(&w, 0, sizeof w);
        uint64_t x = seed * 0x9E3779B97F4A7C15u + 7;
        struct memfs *fs = memfs_new(seed);
        struct reports rp = {0};
        struct sinter_store_options o;
        uint32_t segsize =
            direct ? 4096u * (1u + (uint32_t)(seed % 4)) : 4096 + 8 * (uint32_t)(seed % 64);
        opts_init(&o, memfs_io(fs), segsize, &rp);
        o.defer_unlink = seed % 2 == 1;
        struct gbq gq = {.n = 0};
        for (int round = 0; round < 25; round++) {
            struct sinter_store *s = NULL;
            struct sinter_store_recovered rec;
            /* Sometimes die during recovery itself, then recover again. */
            if (rng_next(&x) % 5 == 0) {
                memfs_die_after(fs, (long)(rng_next(&x) % 6));
                if (sinter_store_open(&s, "/mem", &o, NULL, NULL, 0) == SINTER_OK) {
                    sinter_store_close(s);
                }
                memfs_crash(fs, (int)(rng_next(&x) % 3));
            }
            char err[600];
            int rc = sinter_store_open(&s, "/mem", &o, &rec, err, sizeof err);
            if (rc != SINTER_OK) {
                fail_msg("seed %llu round %d: open: %s", (unsigned long long)seed, round, err);
            }
            verify_world(&w, s, &rec, seed, round);
            sinter_store_recovered_free(&rec);
            rounds++;
            snaps += w.snap_index > 0;
            max_last = (long)w.a.last > max_last ? (long)w.a.last : max_last;
            if (w.a.last > 3500) {
                sinter_store_close(s);
                break;
            }

            memfs_die_after(fs, (long)(rng_next(&x) % 40));
            for (int step = 0; step < 30; step++) {
                if (rng_next(&x) % 6 == 0) {
                    /* A spare made now and then: rollovers into pre-zeroed segments, kills during
                     * zero-fill and during a rollover into the spare. */
                    spares += make_spare(s, false) == SINTER_OK;
                }
                if (gq.n > 0 && rng_next(&x) % 4 == 0) {
                    gbq_collect(&gq, false);
                    collected++;
                }
                uint64_t r = rng_next(&x) % 100;
                uint64_t first = sinter_store_first_index(s);
                uint64_t last = sinter_store_last_index(s);
                uint64_t lo = w.snap_index + 1 > first ? w.snap_index + 1 : first;
                if (r < 55 || last == 0) {
                    w.op = OP_APPEND;
                    w.n = 1 + rng_next(&x) % 24;
                    w.k = last + 1;
                    w.term = last ? w.a.terms[last] : 1;
                    if (r < 12 && last >= lo) {
                        /* A conflicting suffix from a newer leader. */
                        w.k = lo + rng_next(&x) % (last - lo + 1);
                        w.term = w.a.terms[last] + 1;
                    } else if (r < 20) {
                        w.term++;
                    }
                    rc = append_range(s, w.k, (size_t)w.n, w.term);
                    if (rc == SINTER_OK) {
                        for (uint64_t i = 0; i < w.n; i++) {
                            w.a.terms[w.k + i] = w.term;
                        }
                        w.a.last = w.k + w.n - 1;
                    }
                } else if (r < 62 && last >= lo) {
                    w.op = OP_TRUNCATE;
                    w.k = lo + rng_next(&x) % (last - lo + 1);
                    rc = sinter_store_truncate(s, w.k);
                    if (rc == SINTER_OK) {
                        w.a.last = w.k - 1;
                    }
                } else if (r < 80) {
                    w.op = OP_HS;
                    w.phs = w.hs;
                    if (r < 70) {
                        w.phs.term++;
                        w.phs.vote = 1 + rng_next(&x) % 3;
                    } else {
                        w.phs.commit++;
                    }
                    rc = sinter_store_save_hard_state(s, &w.phs);
                    if (rc == SINTER_OK) {
                        w.hs = w.phs;
                    }
                } else if (last >= lo && last > w.snap_index) {
                    w.op = OP_SNAP;
                    w.psnap_index = lo + rng_next(&x) % (last - lo + 1);
                    w.psnap_term = w.a.terms[w.psnap_index];
                    rc = write_snapshot(s, w.psnap_index, w.psnap_term, snap_size(w.psnap_index),
                                        1 + rng_next(&x) % 700);
                    if (rc == SINTER_OK) {
                        w.snap_index = w.psnap_index;
                        w.snap_term = w.psnap_term;
                        w.op = OP_NONE;
                        if (rng_next(&x) % 2) {
                            rc = sinter_store_compact(s, w.snap_index);
                        }
                        struct sinter_store_garbage *gb = sinter_store_garbage_take(s);
                        if (gb != NULL && gq.n == CRASH_GB_MAX) {
                            gbq_collect(&gq, false);
                            collected++;
                        }
                        if (gb != NULL) {
                            gq.g[gq.n++] = gb;
                        }
                    }
                } else {
                    continue;
                }
                ops++;
                if (rc != SINTER_OK) {
                    if (!memfs_dead(fs)) {
                        fail_msg("seed %llu: op %d failed without a fault: %s",
                                 (unsigned long long)seed, w.op, sinter_store_errmsg(s));
                    }
                    deaths++;
                    break;
                }
                w.op = OP_NONE;
            }
            if (gq.n > 0) {
                /* The garbage thread either got to the rest before the end, or the process dies
                 * with the queue: every unlink fails and open() must cope with the files. */
                if (rng_next(&x) % 2 == 0) {
                    memfs_die_after(fs, 0);
                    abandoned += gq.n;
                } else {
                    collected += gq.n;
                }
                gbq_collect(&gq, true);
            }
            sinter_store_close(s);
            memfs_crash(fs, (int)(rng_next(&x) % 3));
        }
        reports += rp.n;
        dsync += memfs_dsync_writes(fs);
        memfs_free(fs);
    }
    print_message("crash loop: %ld rounds, %ld operations, %ld killed mid-operation, %ld torn "
                  "tails reported, longest log %ld, %ld rounds with a snapshot, %ld spares made, "
                  "%ld O_DSYNC writes, deferred removals %ld collected, %ld left to open()\n",
                  rounds, ops, deaths, reports, max_last, snaps, spares, dsync, collected,
                  abandoned);
    assert_true(collected > 0 && abandoned > 0);
    if (direct) {
        assert_true(dsync > 100); /* the direct path was really exercised */
    } else {
        assert_int_equal(dsync, 0);
    }
}

static void random_crash_loop(void **state)
{
    (void)state;
    crash_loop(1, 60, false);
}

static void random_crash_loop_direct(void **state)
{
    (void)state;
    crash_loop(1, 300, true);
}

/* ---- metadata ------------------------------------------------------------------------------- */

static uint64_t read_seq(const char *dir, const char *name, bool *valid)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t b[48];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, sizeof b, 0), (ssize_t)sizeof b);
    close(fd);
    *valid = memcmp(b, "SNMT", 4) == 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | b[8 + i];
    }
    return v;
}

static void meta_slots_alternate(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    bool v0, v1;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(read_seq(dir, "meta.0", &v0), 0);
    assert_true(v0);
    read_seq(dir, "meta.1", &v1);
    assert_false(v1);
    for (uint64_t t = 1; t <= 5; t++) {
        struct sinter_raft_hard_state hs = {.term = t, .vote = t % 3, .commit = 0};
        assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
        const char *slot = (t & 1) ? "meta.1" : "meta.0";
        const char *other = (t & 1) ? "meta.0" : "meta.1";
        assert_int_equal(read_seq(dir, slot, &v0), t);
        assert_true(v0);
        if (t > 1) {
            assert_int_equal(read_seq(dir, other, &v1), t - 1); /* the previous one is intact */
        }
    }
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.hard_state.term, 5);
    assert_int_equal(rec.hard_state.vote, 2);
    sinter_store_close(s);

    /* The newest slot damaged: the older one is used. Both damaged: refuse to start. */
    flip_file(dir, "meta.1", 16);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.hard_state.term, 4);
    assert_int_equal(rec.hard_state.vote, 1);
    sinter_store_close(s);
    flip_file(dir, "meta.0", 40);
    char err[600];
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    assert_non_null(strstr(err, "meta.0"));
    rmtree(dir);
}

static void meta_torn_write(void **state)
{
    (void)state;
    for (int policy = 0; policy < 3; policy++) {
        for (uint64_t seed = 1; seed <= 30; seed++) {
            struct memfs *fs = memfs_new(seed);
            struct reports rp = {0};
            struct sinter_store_options o;
            opts_init(&o, memfs_io(fs), 4096, &rp);
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
            struct sinter_raft_hard_state hs = {.term = 5, .vote = 1, .commit = 3};
            assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
            hs.commit = 4; /* unsynced hint */
            assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
            struct sinter_raft_hard_state next = {.term = 6, .vote = 2, .commit = 4};
            memfs_die_after(fs, (long)(seed % 2)); /* the pwrite, or the fdatasync */
            assert_int_equal(sinter_store_save_hard_state(s, &next), SINTER_EIO);
            sinter_store_close(s);
            memfs_crash(fs, policy);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            bool old = rec.hard_state.term == 5 && rec.hard_state.vote == 1;
            bool neu = rec.hard_state.term == 6 && rec.hard_state.vote == 2;
            assert_true(old || neu);
            if (policy == MEMFS_CRASH_DROP) {
                assert_true(old);
            }
            sinter_store_close(s);
            memfs_free(fs);
        }
    }
}

/* A change of the commit hint alone costs no fdatasync, and a crash never loses term or vote. */
static void commit_hint_is_lazy(void **state)
{
    (void)state;
    struct memfs *fs = memfs_new(3);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    struct sinter_raft_hard_state hs = {.term = 2, .vote = 1, .commit = 0};
    memfs_reset_calls(fs);
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1);
    for (uint64_t c = 1; c <= 10; c++) {
        hs.commit = c;
        assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
    }
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1);
    assert_int_equal(memfs_calls(fs, FOP_PWRITE), 11);
    assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK); /* unchanged: no I/O */
    assert_int_equal(memfs_calls(fs, FOP_PWRITE), 11);
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_RANDOM);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.hard_state.term, 2);
    assert_int_equal(rec.hard_state.vote, 1);
    assert_true(rec.hard_state.commit <= 10);
    sinter_store_close(s);
    memfs_free(fs);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static void snapshot_stream_and_retention(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    struct sinter_raft_snapshot_meta m;
    assert_int_equal(sinter_store_snap_meta(s, &m), SINTER_ENOTFOUND);
    struct sinter_store_snap_reader *r;
    assert_int_equal(sinter_store_snap_open(s, NULL, NULL, &r), SINTER_ENOTFOUND);
    assert_int_equal(write_snapshot(s, 10, 2, 100000, 1000), SINTER_OK);
    assert_int_equal(verify_snapshot(s, 10, 2, 100000), SINTER_OK);
    /* One writer at a time; an aborted writer leaves nothing behind. */
    struct sinter_store_snap_writer *w1, *w2;
    struct sinter_raft_snapshot_meta m2 = snap_meta(11, 2);
    assert_int_equal(sinter_store_snap_begin(s, &m2, &w1), SINTER_OK);
    assert_int_equal(sinter_store_snap_begin(s, &m2, &w2), SINTER_EBUSY);
    assert_int_equal(sinter_store_snap_write(w1, "abc", 3), SINTER_OK);
    sinter_store_snap_abort(w1);
    assert_int_equal(count_files(dir, "snap-", ".tmp"), 0);
    m2.config.servers[1].id = 1; /* unsorted / duplicate ids */
    assert_int_equal(sinter_store_snap_begin(s, &m2, &w2), SINTER_EINVAL);
    /* A snapshot with an empty payload, and retention of the newest two. */
    assert_int_equal(write_snapshot(s, 20, 3, 0, 1), SINTER_OK);
    assert_int_equal(verify_snapshot(s, 20, 3, 0), SINTER_OK);
    assert_int_equal(write_snapshot(s, 30, 3, 7777, 4096), SINTER_OK);
    assert_int_equal(count_files(dir, "snap-", ".snap"), 2);
    assert_false(file_exists(dir, "snap-00000000000000000010-00000000000000000002.snap"));
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_true(rec.has_snapshot);
    struct sinter_raft_snapshot_meta want = snap_meta(30, 3);
    assert_memory_equal(&rec.snapshot, &want, sizeof want);
    assert_int_equal(rec.n_entries, 0);
    assert_int_equal(sinter_store_first_index(s), 31);
    assert_int_equal(append_range(s, 30, 1, 3), SINTER_ECOMPACTED);
    assert_int_equal(append_range(s, 31, 4, 3), SINTER_OK);
    assert_int_equal(verify_snapshot(s, 30, 3, 7777), SINTER_OK);
    sinter_store_close(s);

    /* Flipped data byte: the reader reports ECORRUPT at the end. */
    flip_file(dir, "snap-00000000000000000030-00000000000000000003.snap", 256 + 5000);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(verify_snapshot(s, 30, 3, 7777), SINTER_ECORRUPT);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    /* Flipped header byte: that snapshot is skipped (reported), the older one is used; here the
     * log (31..34) no longer follows it, which is a gap: refuse. */
    flip_file(dir, "snap-00000000000000000030-00000000000000000003.snap", 9);
    char err[600];
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_ECORRUPT);
    assert_non_null(strstr(err, "lost"));
    rmtree(dir);
}

static void snapshot_header_damage_falls_back(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 30, 1), SINTER_OK);
    model_set(&m, 1, 30, 1);
    assert_int_equal(write_snapshot(s, 10, 1, 300, 64), SINTER_OK);
    assert_int_equal(write_snapshot(s, 20, 1, 300, 64), SINTER_OK);
    sinter_store_close(s);
    flip_file(dir, "snap-00000000000000000020-00000000000000000001.snap", 20);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, 10);
    assert_int_equal(rec.n_entries, 20);
    check_entries(rec.entries, rec.n_entries, 11, &m);
    assert_int_equal(rp.n, 1);
    assert_non_null(strstr(rp.last, "invalid header"));
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* Crash before the rename: the previous snapshot stays. Crash after the rename but before the
 * directory sync: either may survive, never a half-written one. */
static void snapshot_crash_atomicity(void **state)
{
    (void)state;
    for (long die = 0; die < 8; die++) {
        for (int policy = 0; policy < 3; policy++) {
            struct memfs *fs = memfs_new((uint64_t)(die * 3 + policy + 1));
            struct reports rp = {0};
            struct sinter_store_options o;
            opts_init(&o, memfs_io(fs), 4096, &rp);
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
            assert_int_equal(append_range(s, 1, 40, 1), SINTER_OK);
            assert_int_equal(write_snapshot(s, 10, 1, snap_size(10), 100), SINTER_OK);
            /* Calls in the second snapshot: create, 3 chunk writes, header, fsync, rename,
             * syncdir, then retention. die picks the victim. */
            memfs_die_after(fs, die);
            int rc = write_snapshot(s, 30, 1, snap_size(30), 400);
            sinter_store_close(s);
            memfs_crash(fs, policy);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            assert_true(rec.has_snapshot);
            assert_true(rec.snapshot.index == 10 || rec.snapshot.index == 30);
            if (rc == SINTER_OK) {
                assert_int_equal(rec.snapshot.index, 30);
            }
            if (die < 6 && rc != SINTER_OK) {
                assert_int_equal(rec.snapshot.index, 10); /* not renamed yet */
            }
            assert_int_equal(
                verify_snapshot(s, rec.snapshot.index, 1, snap_size(rec.snapshot.index)),
                SINTER_OK);
            assert_int_equal(memfs_count_suffix(fs, ".tmp"), 0);
            sinter_store_recovered_free(&rec);
            sinter_store_close(s);
            memfs_free(fs);
        }
    }
}

static void snapshot_install_resets_log(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 50, 1), SINTER_OK);
    model_set(&m, 1, 50, 1);
    /* A snapshot that matches the log at its index: the entries after it are kept. */
    assert_int_equal(write_snapshot(s, 30, 1, 100, 100), SINTER_OK);
    struct sinter_raft_snapshot_meta sm = snap_meta(30, 1);
    assert_int_equal(sinter_store_snapshot_installed(s, &sm), SINTER_OK);
    assert_int_equal(sinter_store_last_index(s), 50);
    /* A snapshot beyond the log: the whole log goes. */
    assert_int_equal(write_snapshot(s, 100, 3, 100, 100), SINTER_OK);
    sm = snap_meta(30, 1);
    assert_int_equal(sinter_store_snapshot_installed(s, &sm), SINTER_EINVAL); /* not newest */
    sm = snap_meta(100, 3);
    assert_int_equal(sinter_store_snapshot_installed(s, &sm), SINTER_OK);
    assert_int_equal(sinter_store_segment_count(s), 0);
    assert_int_equal(sinter_store_first_index(s), 101);
    assert_int_equal(sinter_store_last_index(s), 100);
    assert_int_equal(append_range(s, 101, 2, 3), SINTER_OK);
    model_set(&m, 101, 2, 3);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, 100);
    assert_int_equal(rec.n_entries, 2);
    check_entries(rec.entries, rec.n_entries, 101, &m);
    sinter_store_recovered_free(&rec);

    /* Crash between a durable snapshot and the log reset: recovery applies the same rule. */
    assert_int_equal(write_snapshot(s, 200, 4, 10, 10), SINTER_OK);
    sinter_store_close(s);
    rp.n = 0;
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, 200);
    assert_int_equal(rec.n_entries, 0);
    assert_int_equal(rp.n, 1);
    assert_non_null(strstr(rp.last, "superseded"));
    assert_int_equal(sinter_store_first_index(s), 201);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* ---- ENOSPC and EIO ------------------------------------------------------------------------- */

static void enospc_on_new_segment_is_retryable(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    struct sinter_store_options o;
    opts_init(&o, &fio.io, 4096, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    faultio_fail(&fio, FOP_BIT(FOP_FALLOCATE), ENOSPC, 0, false);
    assert_int_equal(append_range(s, 1, 5, 1), SINTER_ENOSPC);
    assert_non_null(strstr(sinter_store_errmsg(s), "No space left"));
    assert_int_equal(sinter_store_last_index(s), 0);
    assert_int_equal(count_files(dir, "seg-", ""), 0);
    assert_int_equal(append_range(s, 1, 5, 1), SINTER_OK); /* disk freed: retry works */
    model_set(&m, 1, 5, 1);
    /* A batch spilling into a second and third segment: all-or-nothing on allocation. */
    faultio_fail(&fio, FOP_BIT(FOP_FALLOCATE), ENOSPC, 1, false);
    assert_int_equal(append_range(s, 6, 100, 1), SINTER_ENOSPC);
    assert_int_equal(sinter_store_last_index(s), 5);
    assert_int_equal(count_files(dir, "seg-", ""), 1);
    assert_int_equal(append_range(s, 6, 100, 1), SINTER_OK);
    model_set(&m, 6, 100, 1);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 105);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

static void write_and_sync_errors_fail_the_store(void **state)
{
    (void)state;
    unsigned ops[] = {FOP_PWRITE, FOP_FDATASYNC, FOP_PWRITE};
    int errs[] = {ENOSPC, EIO, EIO};
    int codes[] = {SINTER_ENOSPC, SINTER_EIO, SINTER_EIO};
    for (int c = 0; c < 3; c++) {
        char *dir = mktmp();
        struct reports rp = {0};
        struct faultio fio;
        faultio_init(&fio, sinter_store_io_posix());
        struct sinter_store_options o;
        opts_init(&o, &fio.io, 4096, &rp);
        o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* the fallocate'd, buffered path */
        struct sinter_store *s;
        struct sinter_store_recovered rec;
        struct model m = {0};
        assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
        assert_int_equal(append_range(s, 1, 10, 1), SINTER_OK);
        model_set(&m, 1, 10, 1);
        struct sinter_raft_hard_state hs = {.term = 1, .vote = 1};
        assert_int_equal(sinter_store_save_hard_state(s, &hs), SINTER_OK);
        faultio_fail(&fio, FOP_BIT(ops[c]), errs[c], 0, c == 2);
        assert_int_equal(append_range(s, 11, 10, 1), codes[c]);
        assert_non_null(strstr(sinter_store_errmsg(s), "seg-00000000000000000001"));
        /* Failed: every later mutation is refused with the same code; reads still work. */
        assert_int_equal(append_range(s, 11, 1, 1), codes[c]);
        hs.term = 2;
        assert_int_equal(sinter_store_save_hard_state(s, &hs), codes[c]);
        assert_int_equal(sinter_store_truncate(s, 5), codes[c]);
        struct sinter_raft_entry *e;
        size_t n;
        assert_int_equal(sinter_store_read(s, 1, 10, 0, &e, &n), SINTER_OK);
        check_entries(e, n, 1, &m);
        sinter_store_entries_free(e);
        sinter_store_close(s);
        faultio_fail(&fio, 0, 0, -1, false);
        assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
        assert_true(rec.n_entries == 10 || rec.n_entries == 20);
        model_set(&m, 11, 10, 1);
        check_entries(rec.entries, rec.n_entries, 1, &m);
        assert_int_equal(rec.hard_state.term, 1);
        sinter_store_recovered_free(&rec);
        sinter_store_close(s);
        rmtree(dir);
    }
}

static void snapshot_enospc_keeps_old(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    struct sinter_store_options o;
    opts_init(&o, &fio.io, 4096, &rp);
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 20, 1), SINTER_OK);
    assert_int_equal(write_snapshot(s, 5, 1, 1000, 100), SINTER_OK);
    faultio_fail(&fio, FOP_BIT(FOP_PWRITE), ENOSPC, 3, false);
    assert_int_equal(write_snapshot(s, 15, 1, 1000, 100), SINTER_ENOSPC);
    assert_int_equal(count_files(dir, "snap-", ".tmp"), 0);
    assert_int_equal(verify_snapshot(s, 5, 1, 1000), SINTER_OK);
    faultio_fail(&fio, FOP_BIT(FOP_FSYNC), EIO, 0, false);
    assert_int_equal(write_snapshot(s, 15, 1, 1000, 100), SINTER_EIO);
    assert_int_equal(verify_snapshot(s, 5, 1, 1000), SINTER_OK);
    /* The log is unaffected by snapshot failures. */
    assert_int_equal(append_range(s, 21, 5, 1), SINTER_OK);
    /* EIO while opening is an error, not a crash. */
    sinter_store_close(s);
    faultio_fail(&fio, FOP_BIT(FOP_PREAD), EIO, 2, false);
    char err[600];
    assert_int_equal(sinter_store_open(&s, dir, &o, NULL, err, sizeof err), SINTER_EIO);
    assert_non_null(strstr(err, "Input/output error"));
    rmtree(dir);
}

/* ---- snapshot sync on a helper thread, publish on the store's thread ---------------------------
 */

struct snap_job {
    struct sinter_store_snap_writer *w;
    uint64_t index;
    size_t size;
    int write_rc, sync_rc;
};

/* What a host's helper does (raft/host/FINDINGS.md S1): write the data, then sync. */
static void *snap_job_main(void *arg)
{
    struct snap_job *j = arg;
    uint8_t buf[4096];
    j->write_rc = SINTER_OK;
    for (size_t off = 0; off < j->size && j->write_rc == SINTER_OK; off += sizeof buf) {
        size_t n = j->size - off < sizeof buf ? j->size - off : sizeof buf;
        for (size_t i = 0; i < n; i++) {
            buf[i] = snap_byte(j->index, off + i);
        }
        j->write_rc = sinter_store_snap_write(j->w, buf, n);
    }
    j->sync_rc = j->write_rc == SINTER_OK ? sinter_store_snap_sync(j->w) : j->write_rc;
    return NULL;
}

/* The store keeps appending while a helper writes and fsyncs a snapshot; the snapshot becomes
 * visible (and usable for compaction) only when published on the store's thread. */
static void snapshot_sync_on_helper_publish_on_store_thread(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 20, 1), SINTER_OK);
    assert_int_equal(write_snapshot(s, 5, 1, 1000, 100), SINTER_OK);

    struct sinter_raft_snapshot_meta m = snap_meta(15, 1);
    struct snap_job j = {.index = 15, .size = 300 * 1024};
    assert_int_equal(sinter_store_snap_begin(s, &m, &j.w), SINTER_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, snap_job_main, &j), 0);
    /* Meanwhile the store's thread appends (what the loop does while the helper fsyncs). */
    for (uint64_t i = 21; i < 221; i += 10) {
        assert_int_equal(append_range(s, i, 10, 1), SINTER_OK);
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(j.write_rc, SINTER_OK);
    assert_int_equal(j.sync_rc, SINTER_OK);
    assert_int_equal(sinter_store_snap_sync(j.w), SINTER_OK);              /* idempotent */
    assert_int_equal(sinter_store_snap_write(j.w, "x", 1), SINTER_EINVAL); /* complete */
    /* Durable under its final name, but not published yet: the store still offers snapshot 5. */
    assert_true(file_exists(dir, "snap-00000000000000000015-00000000000000000001.snap"));
    assert_int_equal(count_files(dir, "snap-", ".tmp"), 0);
    struct sinter_raft_snapshot_meta cur;
    assert_int_equal(sinter_store_snap_meta(s, &cur), SINTER_OK);
    assert_int_equal(cur.index, 5);
    assert_int_equal(sinter_store_compact(s, 15), SINTER_EINVAL); /* nothing relies on it */
    assert_int_equal(sinter_store_snap_publish(j.w), SINTER_OK);
    assert_int_equal(sinter_store_snap_meta(s, &cur), SINTER_OK);
    assert_int_equal(cur.index, 15);
    assert_int_equal(verify_snapshot(s, 15, 1, j.size), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, 15), SINTER_OK);
    sinter_store_close(s);
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_true(rec.has_snapshot);
    assert_int_equal(rec.snapshot.index, 15);
    assert_int_equal(rec.entries[rec.n_entries - 1].index, 220);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* A received snapshot (sinter_store_snap_begin_rx): begun, written and flushed on another thread
 * while the store's thread appends and publishes a local snapshot. */
struct rx_job {
    struct sinter_store *s;
    struct sinter_store_snap_writer *w;
    uint64_t index;
    size_t size;
    atomic_int phase; /* 1: begun and half written (thread); 2: go on (main) */
    int begin_rc, write_rc, flush_rc;
};

static void *rx_job_main(void *arg)
{
    struct rx_job *j = arg;
    struct sinter_raft_snapshot_meta m = snap_meta(j->index, 2);
    char err[512];
    j->begin_rc = sinter_store_snap_begin_rx(j->s, &m, &j->w, err, sizeof err);
    if (j->begin_rc != SINTER_OK) {
        atomic_store(&j->phase, 1);
        return NULL;
    }
    uint8_t buf[4096];
    for (size_t off = 0; off < j->size && j->write_rc == SINTER_OK; off += sizeof buf) {
        if (off == j->size / 2 / sizeof buf * sizeof buf) {
            atomic_store(&j->phase, 1);
            /* Bounded: if the main thread failed an assertion it never says go. */
            for (int t = 0; t < 60000 && atomic_load(&j->phase) != 2; t++) {
                usleep(1000);
            }
        }
        size_t n = j->size - off < sizeof buf ? j->size - off : sizeof buf;
        for (size_t i = 0; i < n; i++) {
            buf[i] = snap_byte(j->index, off + i);
        }
        j->write_rc = sinter_store_snap_write(j->w, buf, n);
    }
    j->flush_rc = j->write_rc == SINTER_OK ? sinter_store_snap_flush(j->w) : j->write_rc;
    return NULL;
}

static void received_snapshot_written_off_the_store_thread(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 20, 1), SINTER_OK);

    struct rx_job j = {.s = s, .index = 40, .size = 300 * 1024};
    atomic_init(&j.phase, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, rx_job_main, &j), 0);
    while (atomic_load(&j.phase) != 1) {
        usleep(1000);
    }
    assert_int_equal(j.begin_rc, SINTER_OK);
    /* The store's own writer is free (the rx writer is not it), and its snapshot publishes while
     * the received one is half written. */
    for (uint64_t i = 21; i < 121; i += 10) {
        assert_int_equal(append_range(s, i, 10, 1), SINTER_OK);
    }
    assert_int_equal(write_snapshot(s, 10, 1, 5000, 1000), SINTER_OK);
    atomic_store(&j.phase, 2);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(j.write_rc, SINTER_OK);
    assert_int_equal(j.flush_rc, SINTER_OK);
    assert_int_equal(sinter_store_snap_flush(j.w), SINTER_OK);             /* idempotent */
    assert_int_equal(sinter_store_snap_write(j.w, "x", 1), SINTER_EINVAL); /* complete */
    /* Flushed but not renamed: only a temporary file, the store still offers snapshot 10. */
    assert_false(file_exists(dir, "snap-00000000000000000040-00000000000000000002.snap"));
    assert_int_equal(count_files(dir, "snap-00000000000000000040-", ".tmp"), 1);
    struct sinter_raft_snapshot_meta cur;
    assert_int_equal(sinter_store_snap_meta(s, &cur), SINTER_OK);
    assert_int_equal(cur.index, 10);
    assert_int_equal(verify_snapshot(s, 10, 1, 5000), SINTER_OK);

    /* A second stream of the same snapshot (another sender) gets its own file; aborting it
     * removes only that file. */
    struct sinter_raft_snapshot_meta m = snap_meta(40, 2);
    struct sinter_store_snap_writer *w2 = NULL;
    char err[512];
    assert_int_equal(sinter_store_snap_begin_rx(s, &m, &w2, err, sizeof err), SINTER_OK);
    assert_int_equal(sinter_store_snap_write(w2, "garbage", 7), SINTER_OK);
    assert_int_equal(sinter_store_snap_flush(w2), SINTER_OK);
    assert_int_equal(count_files(dir, "snap-00000000000000000040-", ".tmp"), 2);
    sinter_store_snap_abort(w2);
    assert_int_equal(count_files(dir, "snap-00000000000000000040-", ".tmp"), 1);

    /* Published on the store's thread: visible now, and after a reopen. */
    assert_int_equal(sinter_store_snap_publish(j.w), SINTER_OK);
    assert_int_equal(count_files(dir, "snap-", ".tmp"), 0);
    assert_int_equal(sinter_store_snap_meta(s, &cur), SINTER_OK);
    assert_int_equal(cur.index, 40);
    assert_int_equal(verify_snapshot(s, 40, 2, j.size), SINTER_OK);
    sinter_store_close(s);
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_true(rec.has_snapshot);
    assert_int_equal(rec.snapshot.index, 40);
    assert_int_equal(rec.snapshot.term, 2);
    assert_int_equal(verify_snapshot(s, 40, 2, j.size), SINTER_OK);
    sinter_store_recovered_free(&rec);

    /* Invalid meta is refused with a message in the caller's buffer. */
    m.index = 0;
    assert_int_equal(sinter_store_snap_begin_rx(s, &m, &w2, err, sizeof err), SINTER_EINVAL);
    assert_null(w2);
    assert_non_null(strstr(err, "invalid snapshot meta"));
    sinter_store_close(s);
    rmtree(dir);
}

/* A process that dies after flushing a received snapshot, before publishing it, leaves a file
 * that the next open removes; the previous snapshot stays the newest. */
static void received_snapshot_crash_before_publish(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 64 * 1024, &rp);
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 20, 1), SINTER_OK);
    assert_int_equal(write_snapshot(s, 10, 1, 5000, 1000), SINTER_OK);
    sinter_store_close(s);
    for (int k = 0; k < 2; k++) {
        /* k 0: die after the flush; 1: die while writing (no header yet). */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct sinter_store *cs;
            char err[600];
            if (sinter_store_open(&cs, dir, &o, NULL, err, sizeof err) != SINTER_OK) {
                _exit(2);
            }
            struct sinter_raft_snapshot_meta m = snap_meta(50, 3);
            struct sinter_store_snap_writer *w = NULL;
            uint8_t buf[1000];
            memset(buf, 7, sizeof buf);
            if (sinter_store_snap_begin_rx(cs, &m, &w, err, sizeof err) != SINTER_OK ||
                sinter_store_snap_write(w, buf, sizeof buf) != SINTER_OK ||
                (k == 0 && sinter_store_snap_flush(w) != SINTER_OK)) {
                _exit(3);
            }
            _exit(0); /* no publish, no abort, no close */
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        assert_int_equal(count_files(dir, "snap-00000000000000000050-", ".tmp"), 1);
        struct sinter_store_recovered rec;
        assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
        assert_true(rec.has_snapshot);
        assert_int_equal(rec.snapshot.index, 10);
        assert_int_equal(count_files(dir, "snap-", ".tmp"), 0);
        assert_false(file_exists(dir, "snap-00000000000000000050-00000000000000000003.snap"));
        assert_int_equal(verify_snapshot(s, 10, 1, 5000), SINTER_OK);
        sinter_store_recovered_free(&rec);
        sinter_store_close(s);
    }
    rmtree(dir);
}

/* Errors on the helper thread stay in the writer (raft/host/FINDINGS.md S2): the store's message,
 * which its own thread may be writing at that moment, is untouched until publish reports them. */
static void snapshot_helper_errors_stay_in_the_writer(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    struct sinter_store_options o;
    opts_init(&o, &fio.io, 4096, &rp);
    struct sinter_store *s;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 20, 1), SINTER_OK);
    assert_int_equal(write_snapshot(s, 5, 1, 1000, 100), SINTER_OK);
    for (int k = 0; k < 3; k++) {
        /* k 0: the data write fails (ENOSPC); 1: the fsync (EIO); 2: the directory sync (EIO,
         * after the rename: the complete file stays, unpublished). */
        struct sinter_raft_snapshot_meta m = snap_meta(15, 1);
        struct snap_job j = {.index = 15, .size = 20000};
        assert_int_equal(sinter_store_snap_begin(s, &m, &j.w), SINTER_OK);
        if (k == 0) {
            faultio_fail(&fio, FOP_BIT(FOP_PWRITE), ENOSPC, 2, false);
        } else if (k == 1) {
            faultio_fail(&fio, FOP_BIT(FOP_FSYNC), EIO, 0, false);
        } else {
            faultio_fail(&fio, FOP_BIT(FOP_SYNCDIR), EIO, 0, false);
        }
        char before[600];
        snprintf(before, sizeof before, "%s", sinter_store_errmsg(s));
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, snap_job_main, &j), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        int want = k == 0 ? SINTER_ENOSPC : SINTER_EIO;
        assert_int_equal(j.sync_rc, want);
        const char *wmsg = sinter_store_snap_errmsg(j.w);
        assert_non_null(strstr(wmsg, k == 0 ? "write" : k == 1 ? "fsync" : "sync directory"));
        assert_string_equal(sinter_store_errmsg(s), before); /* the store was not touched */
        assert_int_equal(sinter_store_snap_sync(j.w), want); /* the first error sticks */
        assert_int_equal(sinter_store_snap_publish(j.w), want);
        assert_non_null(strstr(sinter_store_errmsg(s), k == 0 ? "No space left" : "Input/output"));
        assert_int_equal(count_files(dir, "snap-", ".tmp"), 0);
        struct sinter_raft_snapshot_meta cur;
        assert_int_equal(sinter_store_snap_meta(s, &cur), SINTER_OK);
        assert_int_equal(cur.index, 5); /* the old snapshot is still the newest published */
        assert_int_equal(verify_snapshot(s, 5, 1, 1000), SINTER_OK);
    }
    /* The log is unaffected, and the next snapshot succeeds. */
    assert_int_equal(append_range(s, 21, 5, 1), SINTER_OK);
    assert_int_equal(write_snapshot(s, 22, 1, 5000, 1000), SINTER_OK);
    assert_int_equal(verify_snapshot(s, 22, 1, 5000), SINTER_OK);
    sinter_store_close(s);
    rmtree(dir);
}

/* With defer_unlink, compaction and snapshot retirement leave their files for another thread:
 * the segments leave the store at once; until collected the files are a valid old prefix (and an
 * old snapshot) that open() accepts; a removal that fails stops there, so no gap ever appears. */
static void *collect_main(void *arg)
{
    return (void *)(intptr_t)sinter_store_garbage_collect(arg);
}

static void deferred_unlink_collected_elsewhere(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    struct sinter_store_options o;
    opts_init(&o, &fio.io, 4096, &rp);
    o.defer_unlink = true;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    for (uint64_t i = 1; i <= 300; i += 20) {
        assert_int_equal(append_range(s, i, 20, 1 + i / 100), SINTER_OK);
        model_set(&m, i, 20, 1 + i / 100);
    }
    size_t before = sinter_store_segment_count(s);
    assert_true(before >= 4);
    assert_null(sinter_store_garbage_take(s));
    assert_int_equal(write_snapshot(s, 50, m.terms[50], 100, 100), SINTER_OK);
    assert_int_equal(write_snapshot(s, 100, m.terms[100], 100, 100), SINTER_OK);
    assert_int_equal(write_snapshot(s, 150, m.terms[150], 5000, 1000), SINTER_OK);
    long unlinks = fio.calls[FOP_UNLINK];
    assert_int_equal(sinter_store_compact(s, 150), SINTER_OK);
    assert_int_equal(fio.calls[FOP_UNLINK], unlinks); /* nothing removed on this thread */
    uint64_t first = sinter_store_first_index(s);
    assert_true(first > 1 && first <= 151);
    size_t detached = before - sinter_store_segment_count(s);
    assert_true(detached >= 1);
    assert_int_equal(count_files(dir, "snap-", ".snap"), 3); /* snapshot 50 retired, still there */
    struct sinter_raft_entry *e;
    size_t n;
    assert_int_equal(sinter_store_read(s, 1, 10, 0, &e, &n), SINTER_ECOMPACTED);
    assert_int_equal(append_range(s, 301, 20, 5), SINTER_OK); /* the store goes on */
    model_set(&m, 301, 20, 5);
    struct sinter_store_garbage *gb = sinter_store_garbage_take(s);
    assert_non_null(gb);
    assert_null(sinter_store_garbage_take(s));
    sinter_store_close(s);
    /* A crash before the files are gone: an old prefix and an old snapshot, both covered. */
    size_t files = count_files(dir, "seg-", "");
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, 150);
    assert_int_equal(rec.n_entries, 170);
    check_entries(rec.entries, rec.n_entries, 151, &m);
    assert_int_equal(sinter_store_first_index(s), 1);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    /* The helper removes them (even after the store that queued them closed). */
    pthread_t th;
    void *res = NULL;
    assert_int_equal(pthread_create(&th, NULL, collect_main, gb), 0);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_int_equal((int)(intptr_t)res, SINTER_OK);
    /* All but the newest detached segment: that one is kept for the next spare to zero over
     * (spare_recycles_compacted_segment), and a close leaves it to the next compaction. */
    assert_int_equal(count_files(dir, "seg-", ""), files - detached + 1);
    assert_int_equal(count_files(dir, "snap-", ".snap"), 2);

    /* A removal that fails stops there: the oldest remaining file is the one that failed, and
     * the log has no gap (open succeeds and returns the same entries). */
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    sinter_store_recovered_free(&rec);
    assert_int_equal(write_snapshot(s, 300, m.terms[300], 10, 10), SINTER_OK);
    size_t segs = sinter_store_segment_count(s);
    assert_int_equal(sinter_store_compact(s, 300), SINTER_OK);
    assert_true(segs - sinter_store_segment_count(s) >= 2);
    uint64_t kept_first = sinter_store_first_index(s);
    gb = sinter_store_garbage_take(s);
    assert_non_null(gb);
    sinter_store_close(s);
    faultio_fail(&fio, FOP_BIT(FOP_UNLINK), EIO, 1, false); /* the 2nd unlink fails */
    assert_int_equal(sinter_store_garbage_collect(gb), SINTER_EIO);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, 300);
    assert_int_equal(rec.n_entries, 20);
    check_entries(rec.entries, rec.n_entries, 301, &m);
    assert_true(sinter_store_first_index(s) < kept_first); /* old files kept, contiguous */
    sinter_store_recovered_free(&rec);
    /* A later compaction removes them. */
    assert_int_equal(sinter_store_compact(s, 300), SINTER_OK);
    assert_int_equal(sinter_store_first_index(s), kept_first);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_int_equal(sinter_store_garbage_collect(NULL), SINTER_OK);
    sinter_store_close(s);
    rmtree(dir);
}

/* ---- spare segment (pre-zeroed by a helper) ------------------------------------------------- */

/* Makes a spare the way the host does: want on the store's thread, make on another thread, put
 * back on the store's thread. Returns put's result; -1 if no job was wanted. */
struct spare_thread_arg {
    struct sinter_store_spare *j;
    int rc;
};

static void *spare_thread(void *arg)
{
    struct spare_thread_arg *a = arg;
    a->rc = sinter_store_spare_make(a->j);
    return NULL;
}

static int make_spare(struct sinter_store *s, bool on_thread)
{
    struct sinter_store_spare *j = sinter_store_spare_want(s);
    if (j == NULL) {
        return -1;
    }
    if (on_thread) {
        struct spare_thread_arg a = {j, -1};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, spare_thread, &a), 0);
        pthread_join(th, NULL);
    } else {
        (void)sinter_store_spare_make(j);
    }
    return sinter_store_spare_put(s, j);
}

static bool file_all_zero(const char *dir, const char *name, uint64_t from, uint64_t *size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint64_t off = 0;
    bool zero = true;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (off >= from && c != 0) {
            zero = false;
        }
        off++;
    }
    fclose(f);
    *size = off;
    return zero;
}

/* The store asks for a spare only once it appends; the helper's file is zero-filled to the segment
 * size under a temporary name; the next append leaves the fallocate'd first segment for it (only a
 * header write, one fdatasync, a rename and a directory sync: no fallocate, no fsync); a full
 * segment later rolls over into the next spare; everything reads back across a restart. */
static void spare_used_at_rollover(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    const uint32_t segsize = 16384;
    struct sinter_store_options o;
    opts_init(&o, &fio.io, segsize, &rp);
    o.direct_io = SINTER_STORE_DIRECT_IO_OFF; /* counts the buffered path (direct: see below) */
    /* Rollovers out of fallocate'd segments without a zeroed prefix (with one:
     * zero_prefix_then_spare). */
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_null(sinter_store_spare_want(s)); /* nothing appended yet: an idle group costs nothing */
    assert_int_equal(append_range(s, 1, 1, 1), SINTER_OK);
    assert_null(sinter_store_spare_want(s)); /* 1/64 of a segment (256 bytes) not reached yet */
    assert_int_equal(append_range(s, 2, 9, 1), SINTER_OK);
    model_set(&m, 1, 10, 1);
    assert_int_equal(sinter_store_segment_count(s), 1);

    struct sinter_store_spare *j = sinter_store_spare_want(s);
    assert_non_null(j);
    assert_null(sinter_store_spare_want(s)); /* one job out at a time */
    struct spare_thread_arg a = {j, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spare_thread, &a), 0);
    /* The store's thread keeps appending while the helper zero-fills. */
    assert_int_equal(append_range(s, 11, 5, 1), SINTER_OK);
    model_set(&m, 11, 5, 1);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, SINTER_OK);
    assert_string_equal(sinter_store_spare_errmsg(j), "");
    assert_false(sinter_store_spare_ready(s));
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_OK);
    assert_true(sinter_store_spare_ready(s));
    assert_null(sinter_store_spare_want(s)); /* one is ready */
    uint64_t size = 0;
    assert_true(file_exists(dir, "spare-1.tmp"));
    assert_true(file_all_zero(dir, "spare-1.tmp", 0, &size));
    assert_int_equal(size, segsize);

    /* The first segment was made with fallocate: the next append moves to the spare. */
    memset(fio.calls, 0, sizeof fio.calls);
    assert_int_equal(append_range(s, 16, 3, 2), SINTER_OK);
    model_set(&m, 16, 3, 2);
    assert_int_equal(fio.calls[FOP_FALLOCATE], 0);
    assert_int_equal(fio.calls[FOP_FSYNC], 0);
    assert_int_equal(fio.calls[FOP_OPEN], 0);
    assert_int_equal(fio.calls[FOP_FDATASYNC], 2); /* header, then the batch */
    assert_int_equal(fio.calls[FOP_RENAME], 1);
    assert_int_equal(fio.calls[FOP_SYNCDIR], 1);
    assert_false(sinter_store_spare_ready(s));
    assert_false(file_exists(dir, "spare-1.tmp"));
    assert_true(file_exists(dir, "seg-00000000000000000016"));
    assert_int_equal(sinter_store_segment_count(s), 2);
    /* The spare-made segment is zeros after its last record, and full size. */
    assert_true(file_all_zero(dir, "seg-00000000000000000016", rec_offset(&m, 16, 19), &size));
    assert_int_equal(size, segsize);

    /* A pre-zeroed segment wants its successor only once it is half full; it is kept until it is
     * full; the next spare then takes over. */
    uint64_t next = 19;
    while ((j = sinter_store_spare_want(s)) == NULL) {
        assert_int_equal(append_range(s, next, 7, 2), SINTER_OK);
        model_set(&m, next, 7, 2);
        next += 7;
    }
    assert_true(rec_offset(&m, 16, next) >= segsize / 2);
    a = (struct spare_thread_arg){j, -1};
    assert_int_equal(pthread_create(&th, NULL, spare_thread, &a), 0);
    pthread_join(th, NULL);
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_OK);
    assert_int_equal(sinter_store_segment_count(s), 2);
    assert_true(sinter_store_spare_ready(s));
    while (sinter_store_spare_ready(s)) {
        assert_int_equal(append_range(s, next, 7, 2), SINTER_OK);
        model_set(&m, next, 7, 2);
        next += 7;
    }
    assert_int_equal(sinter_store_segment_count(s), 3);
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 0);
    /* Without a spare, rollovers fall back to fallocate. */
    size_t segs = sinter_store_segment_count(s);
    memset(fio.calls, 0, sizeof fio.calls);
    while (sinter_store_segment_count(s) == segs) {
        assert_int_equal(append_range(s, next, 7, 2), SINTER_OK);
        model_set(&m, next, 7, 2);
        next += 7;
    }
    assert_int_equal(fio.calls[FOP_FALLOCATE], 1);
    /* A ready spare is removed by close. */
    assert_int_equal(make_spare(s, false), SINTER_OK);
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 1);
    sinter_store_close(s);
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 0);

    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, m.last);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);
    /* After a restart the last segment's free space is of unknown kind: a spare takes over. */
    assert_int_equal(append_range(s, next, 4, 3), SINTER_OK); /* past 1/64 of a segment */
    model_set(&m, next, 4, 3);
    next += 4;
    segs = sinter_store_segment_count(s);
    assert_int_equal(make_spare(s, true), SINTER_OK);
    assert_int_equal(append_range(s, next, 1, 3), SINTER_OK);
    model_set(&m, next, 1, 3);
    assert_int_equal(sinter_store_segment_count(s), segs + 1);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, m.last);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* The segment files' names, sorted (oldest first); returns how many (at most max). */
static size_t seg_names(const char *dir, char (*names)[32], size_t max)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls -1 %s | grep '^seg-' | sort", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256];
    size_t n = 0;
    while (n < max && fgets(line, sizeof line, p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        assert_true(strlen(line) < 32);
        memcpy(names[n++], line, strlen(line) + 1);
    }
    pclose(p);
    return n;
}

/* Appends batches of 7 in term 2 until the store has `want` segments. */
static uint64_t fill_segments(struct sinter_store *s, struct model *m, uint64_t next, size_t want)
{
    while (sinter_store_segment_count(s) < want) {
        assert_int_equal(append_range(s, next, 7, 2), SINTER_OK);
        model_set(m, next, 7, 2);
        next += 7;
    }
    return next;
}

/* With defer_unlink, the newest segment a compaction detaches is kept for the next spare instead
 * of being queued for removal (bench/FINDINGS.md F6: unlinking a segment cost its discards and
 * the spare a new allocation); the spare job renames it to its temporary name and zeroes over it
 * without reserving space; the segment made from it reads back across a restart. A later
 * compaction queues the one kept before (older) and keeps the new newest. */
static void spare_recycles_compacted_segment(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    const uint32_t segsize = 16384;
    struct sinter_store_options o;
    opts_init(&o, &fio.io, segsize, &rp);
    o.defer_unlink = true;
    o.direct_io = SINTER_STORE_DIRECT_IO_OFF;
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* every segment fallocate'd, full size */
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    uint64_t next = fill_segments(s, &m, 1, 5);
    char names[16][32];
    assert_int_equal(seg_names(dir, names, 16), 5);
    /* A snapshot in the 4th segment: the first three are compacted. */
    uint64_t si = sinter_store_last_index(s) - 20;
    assert_int_equal(write_snapshot(s, si, 2, 100, 100), SINTER_OK);
    long unlinks = fio.calls[FOP_UNLINK];
    assert_int_equal(sinter_store_compact(s, si), SINTER_OK);
    assert_int_equal(fio.calls[FOP_UNLINK], unlinks);
    size_t detached = 5 - sinter_store_segment_count(s);
    assert_true(detached >= 2);
    /* The older detached segments are queued, the newest is not. */
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    for (size_t i = 0; i + 1 < detached; i++) {
        assert_false(file_exists(dir, names[i]));
    }
    const char *kept = names[detached - 1];
    assert_true(file_exists(dir, kept));

    /* The next spare is made of it: renamed, zeroed over, no reservation. */
    memset(fio.calls, 0, sizeof fio.calls);
    struct sinter_store_spare *j = sinter_store_spare_want(s);
    assert_non_null(j);
    struct spare_thread_arg a = {j, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spare_thread, &a), 0);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, SINTER_OK);
    assert_int_equal(fio.calls[FOP_RENAME], 1);
    assert_int_equal(fio.calls[FOP_FALLOCATE], 0);
    assert_int_equal(fio.calls[FOP_UNLINK], 0);
    assert_false(file_exists(dir, kept));
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_OK);
    assert_true(sinter_store_spare_ready(s));
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 1);
    char spare[32];
    snprintf(spare, sizeof spare, "spare-1.tmp");
    uint64_t size = 0;
    assert_true(file_all_zero(dir, spare, 0, &size));
    assert_int_equal(size, segsize);
    /* The next append leaves the fallocate'd last segment for it. */
    size_t segs = sinter_store_segment_count(s);
    assert_int_equal(append_range(s, next, 7, 2), SINTER_OK);
    model_set(&m, next, 7, 2);
    next += 7;
    assert_int_equal(sinter_store_segment_count(s), segs + 1);
    assert_false(sinter_store_spare_ready(s));
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 0);
    next = fill_segments(s, &m, next, segs + 2); /* past the recycled segment's end */

    /* Two compactions without a spare between them: the first kept segment is queued by the
     * second, which keeps its own newest. */
    char before[16][32];
    size_t nb = seg_names(dir, before, 16);
    si = sinter_store_last_index(s) - 10;
    assert_int_equal(write_snapshot(s, si, m.terms[si], 100, 100), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, si), SINTER_OK);
    size_t d1 = nb - sinter_store_segment_count(s);
    assert_true(d1 >= 2);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_true(file_exists(dir, before[d1 - 1]));
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 2);
    si = sinter_store_last_index(s) - 10;
    size_t c2 = sinter_store_segment_count(s);
    assert_int_equal(write_snapshot(s, si, m.terms[si], 100, 100), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, si), SINTER_OK);
    assert_true(c2 - sinter_store_segment_count(s) >= 1);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_false(file_exists(dir, before[d1 - 1]));
    /* Exactly one compacted segment stays on disk: the kept one, before the log's first. */
    char after[16][32];
    size_t na = seg_names(dir, after, 16);
    assert_int_equal(na, sinter_store_segment_count(s) + 1);

    /* A close leaves it; open finds it as an old prefix the snapshot covers, contiguous. */
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, si);
    assert_int_equal(rec.n_entries, m.last - si);
    check_entries(rec.entries, rec.n_entries, si + 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    sinter_store_recovered_free(&rec);
    assert_int_equal(sinter_store_segment_count(s), na);
    sinter_store_close(s);
    assert_int_equal(rp.n, 0);
    rmtree(dir);
}

/* An installed snapshot that replaces the whole log queues the segment kept for a spare too: a
 * restart then finds no old segment before a gap (no "removal the crash cut short" report). */
static void installed_snapshot_queues_kept_segment(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 16384, &rp);
    o.defer_unlink = true;
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    uint64_t next = fill_segments(s, &m, 1, 4);
    char names[16][32];
    assert_int_equal(seg_names(dir, names, 16), 4);
    uint64_t si = sinter_store_last_index(s) - 5;
    assert_int_equal(write_snapshot(s, si, 2, 100, 100), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, si), SINTER_OK);
    size_t detached = 4 - sinter_store_segment_count(s);
    assert_true(detached >= 2);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_true(file_exists(dir, names[detached - 1])); /* kept for a spare */
    uint64_t big = next + 1000;
    assert_int_equal(write_snapshot(s, big, 3, 100, 100), SINTER_OK);
    struct sinter_raft_snapshot_meta sm = snap_meta(big, 3);
    assert_int_equal(sinter_store_snapshot_installed(s, &sm), SINTER_OK);
    assert_int_equal(sinter_store_segment_count(s), 0);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_int_equal(count_files(dir, "seg-", ""), 0);
    assert_int_equal(append_range(s, big + 1, 3, 3), SINTER_OK);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, big);
    assert_int_equal(rec.n_entries, 3);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    assert_int_equal(rp.n, 0);
    rmtree(dir);
}

/* A crash after the spare job renamed the kept segment away but before the helper removed the
 * older detached ones leaves old segments, a gap, then the log: the newest snapshot covers the
 * gap, so open removes the old ones (reported) and recovers every entry; the helper's late
 * removal of files already gone is fine. */
static void recycled_segment_gap_covered_at_open(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    const uint32_t segsize = 16384;
    struct sinter_store_options o;
    opts_init(&o, NULL, segsize, &rp);
    o.defer_unlink = true;
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    (void)fill_segments(s, &m, 1, 5);
    uint64_t si = sinter_store_last_index(s) - 20;
    assert_int_equal(write_snapshot(s, si, 2, 100, 100), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, si), SINTER_OK);
    assert_true(5 - sinter_store_segment_count(s) >= 2);
    struct sinter_store_garbage *gb = sinter_store_garbage_take(s); /* not collected yet */
    assert_non_null(gb);
    assert_int_equal(make_spare(s, true), SINTER_OK); /* renames the kept segment */
    sinter_store_close(s);                            /* "crash": the old ones are still there */
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, si);
    assert_int_equal(rec.n_entries, m.last - si);
    check_entries(rec.entries, rec.n_entries, si + 1, &m);
    sinter_store_recovered_free(&rec);
    assert_int_equal(rp.n, 1);
    assert_non_null(strstr(rp.last, "covered by snapshot"));
    assert_true(sinter_store_first_index(s) <= si + 1);
    sinter_store_close(s);
    assert_int_equal(sinter_store_garbage_collect(gb), SINTER_OK);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, m.last - si);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* Snapshots at `back` entries before the last and compacts: at least one segment is detached, the
 * older ones are removed, and the newest is kept for a spare (seg_hold); its name goes to kept. */
static void compact_keeping(struct sinter_store *s, const struct model *m, const char *dir,
                            uint64_t back, char kept[32])
{
    char before[16][32];
    size_t nb = seg_names(dir, before, 16);
    size_t c = sinter_store_segment_count(s);
    uint64_t si = sinter_store_last_index(s) - back;
    assert_int_equal(write_snapshot(s, si, m->terms[si], 100, 100), SINTER_OK);
    assert_int_equal(sinter_store_compact(s, si), SINTER_OK);
    size_t d = c - sinter_store_segment_count(s);
    assert_true(d >= 1);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    snprintf(kept, 32, "%s", before[nb - c + d - 1]);
    assert_true(file_exists(dir, kept));
}

/* A job that never ran (cancelled by a close before it began, no thread, no memory) gives its kept
 * segment back instead of unlinking it on the store's thread: the next job recycles it. When a
 * newer compaction kept another segment meanwhile, or an installed snapshot replaced the log, the
 * given-back one is queued for removal instead. */
static void unrun_spare_job_gives_the_kept_segment_back(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    struct sinter_store_options o;
    opts_init(&o, &fio.io, 16384, &rp);
    o.defer_unlink = true;
    o.direct_io = SINTER_STORE_DIRECT_IO_OFF;
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    uint64_t next = fill_segments(s, &m, 1, 5);
    char kept[32];
    compact_keeping(s, &m, dir, 20, kept);

    /* Cancelled before it began: no file touched, the segment is the store's again. */
    memset(fio.calls, 0, sizeof fio.calls);
    struct sinter_store_spare *j = sinter_store_spare_want(s);
    assert_non_null(j);
    sinter_store_spare_cancel(j);
    assert_int_equal(sinter_store_spare_make(j), SINTER_ECANCELED);
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_ECANCELED);
    assert_int_equal(fio.calls[FOP_RENAME], 0);
    assert_int_equal(fio.calls[FOP_UNLINK], 0);
    assert_true(file_exists(dir, kept));
    assert_null(sinter_store_garbage_take(s));
    /* Put back unrun (as after a failed pthread_create): the same. */
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 1); /* allows a new job */
    j = sinter_store_spare_want(s);
    assert_non_null(j);
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_ECANCELED);
    assert_true(file_exists(dir, kept));
    assert_int_equal(fio.calls[FOP_UNLINK], 0);

    /* The next job that runs recycles it. */
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 1);
    memset(fio.calls, 0, sizeof fio.calls);
    assert_int_equal(make_spare(s, true), SINTER_OK);
    assert_int_equal(fio.calls[FOP_RENAME], 1);
    assert_int_equal(fio.calls[FOP_FALLOCATE], 0);
    assert_false(file_exists(dir, kept));
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 2);

    /* A newer compaction while a job is out: the job's (older) segment is queued, the newer one
     * stays kept and is what the next job recycles. */
    char old_kept[32];
    compact_keeping(s, &m, dir, 10, old_kept);
    j = sinter_store_spare_want(s);
    assert_non_null(j);
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 2);
    compact_keeping(s, &m, dir, 10, kept);
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_ECANCELED);
    assert_true(file_exists(dir, old_kept)); /* queued, not removed on this thread */
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_false(file_exists(dir, old_kept));
    assert_true(file_exists(dir, kept));
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 1);
    memset(fio.calls, 0, sizeof fio.calls);
    assert_int_equal(make_spare(s, true), SINTER_OK);
    assert_int_equal(fio.calls[FOP_RENAME], 1);
    assert_false(file_exists(dir, kept));
    next = fill_segments(s, &m, next, sinter_store_segment_count(s) + 2);

    /* An installed snapshot that replaced the log while a job was out: queued too, and the next
     * job makes a new file. */
    compact_keeping(s, &m, dir, 10, kept);
    j = sinter_store_spare_want(s);
    assert_non_null(j);
    uint64_t big = next + 1000;
    assert_int_equal(write_snapshot(s, big, 3, 100, 100), SINTER_OK);
    struct sinter_raft_snapshot_meta sm = snap_meta(big, 3);
    assert_int_equal(sinter_store_snapshot_installed(s, &sm), SINTER_OK);
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_ECANCELED);
    assert_int_equal(sinter_store_garbage_collect(sinter_store_garbage_take(s)), SINTER_OK);
    assert_int_equal(count_files(dir, "seg-", ""), 0);
    assert_int_equal(append_range(s, big + 1, 40, 3), SINTER_OK);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.snapshot.index, big);
    assert_int_equal(rec.n_entries, 40);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    assert_int_equal(rp.n, 0);
    rmtree(dir);
}

/* A power cut at any point of a spare job that recycles a compacted segment (the rename, the
 * zeros, their sync, the rollover into it) and of the removal of the older detached segments, with
 * unsynced writes and directory changes dropped, partly kept or all kept: open always succeeds and
 * recovers the snapshot and every acknowledged entry after it. Before the rename's directory sync
 * came ahead of the zeros (spare.c recycle_open), a power cut could leave the old segment name
 * over zeroed records: open refused to start. */
static void recycled_segment_power_cut_anywhere(void **state)
{
    (void)state;
    long runs = 0, died = 0;
    for (int policy = MEMFS_CRASH_DROP; policy <= MEMFS_CRASH_KEEP; policy++) {
        for (int gc_first = 0; gc_first < 2; gc_first++) {
            for (long n = 0; n < 48; n++) {
                struct memfs *fs = memfs_new(1000 + (uint64_t)n * 7 + (uint64_t)policy);
                struct reports rp = {0};
                struct sinter_store_options o;
                opts_init(&o, memfs_io(fs), 4096, &rp);
                o.defer_unlink = true;
                struct sinter_store *s;
                assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
                assert_int_equal(append_range(s, 1, 200, 1), SINTER_OK);
                assert_int_equal(write_snapshot(s, 100, 1, 1000, 1000), SINTER_OK);
                assert_int_equal(sinter_store_compact(s, 100), SINTER_OK);
                struct sinter_store_garbage *gb = sinter_store_garbage_take(s);
                if (gc_first) {
                    assert_int_equal(sinter_store_garbage_collect(gb), SINTER_OK);
                    gb = NULL;
                }
                uint64_t acked = 200;
                struct sinter_store_spare *j;
                while ((j = sinter_store_spare_want(s)) == NULL) {
                    assert_int_equal(append_range(s, acked + 1, 1, 1), SINTER_OK);
                    acked++;
                }
                memfs_die_after(fs, n);
                (void)sinter_store_spare_make(j);
                (void)sinter_store_spare_put(s, j);
                /* Enough to roll over into the spare (4 KiB segments). */
                for (int k = 0; k < 4; k++) {
                    if (append_range(s, acked + 1, 10, 1) == SINTER_OK) {
                        acked += 10;
                    }
                }
                (void)sinter_store_garbage_collect(gb);
                died += memfs_dead(fs);
                sinter_store_close(s);
                memfs_crash(fs, policy);
                struct sinter_store_recovered rec;
                if (open_store(&s, "/mem", &o, &rec) != SINTER_OK) {
                    print_message("policy %d, garbage collected first %d, died after %ld calls\n",
                                  policy, gc_first, n);
                    fail();
                }
                assert_int_equal(rec.snapshot.index, 100);
                assert_true(rec.n_entries >= acked - 100);
                for (size_t i = 0; i < rec.n_entries; i++) {
                    assert_true(entry_ok(&rec.entries[i], 101 + i, 1));
                }
                sinter_store_recovered_free(&rec);
                sinter_store_close(s);
                memfs_free(fs);
                runs++;
            }
        }
    }
    /* The later points pass the whole job and the rollover: the range covered all of it. */
    assert_true(died > 0 && died < runs);
    print_message("%ld power cuts, %ld in the middle\n", runs, died);
}

/* A spare file left by a crash (zero-filled or half-filled, or already carrying a segment header
 * written just before the rename) is never read as a segment: open removes it. */
static void spare_leftovers_removed_at_open(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, NULL, 8192, &rp);
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* a spare is wanted for the first segment */
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    struct model m = {0};
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 30, 1), SINTER_OK);
    model_set(&m, 1, 30, 1);
    sinter_store_close(s);
    /* Leftovers: a copy of the segment (valid header and records) under a spare's name, and a
     * half-written one. */
    char cmd[4400];
    snprintf(cmd, sizeof cmd,
             "cp %s/seg-00000000000000000001 %s/spare-3.tmp && head -c 3000 /dev/zero > "
             "%s/spare-9.tmp",
             dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 0);
    assert_int_equal(rec.n_entries, 30);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(sinter_store_segment_count(s), 1);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);

    /* Power cuts around a spare, on the in-memory file system: after making it, and at every
     * step of the rollover into it. */
    for (long die = -1; die < 8; die++) {
        for (int policy = 0; policy < 3; policy++) {
            struct memfs *fs = memfs_new((uint64_t)(die + 2) * 7 + (uint64_t)policy);
            struct sinter_store_options mo;
            opts_init(&mo, memfs_io(fs), 4096, &rp);
            mo.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
            struct model mm = {0};
            assert_int_equal(open_store(&s, "/mem", &mo, NULL), SINTER_OK);
            assert_int_equal(append_range(s, 1, 4, 1), SINTER_OK);
            model_set(&mm, 1, 4, 1);
            assert_int_equal(make_spare(s, false), SINTER_OK);
            assert_int_equal(memfs_count_suffix(fs, ".tmp"), 1);
            if (die >= 0) {
                memfs_die_after(fs, die);
            }
            int rc = append_range(s, 5, 3, 1); /* rollover into the spare */
            bool acked = rc == SINTER_OK;
            assert_true(acked || die >= 0);
            sinter_store_close(s);
            memfs_crash(fs, policy);
            assert_int_equal(open_store(&s, "/mem", &mo, &rec), SINTER_OK);
            assert_int_equal(memfs_count_suffix(fs, ".tmp"), 0);
            /* The old log, plus a prefix of the interrupted batch (all of it if acknowledged). */
            assert_true(rec.n_entries >= 4 && rec.n_entries <= 7);
            assert_true(!acked || rec.n_entries == 7);
            model_set(&mm, 5, 3, 1);
            check_entries(rec.entries, rec.n_entries, 1, &mm);
            sinter_store_recovered_free(&rec);
            sinter_store_close(s);
            memfs_free(fs);
        }
    }
    rmtree(dir);
}

/* A failing zero-fill (disk full at reservation or while writing, EIO at the fsync, open refused)
 * is an error of the job only: its file is removed, the store is not failed, the next rollover
 * falls back to fallocate, no entry is lost, and one new attempt is allowed per rollover. */
static void spare_faults_fall_back(void **state)
{
    (void)state;
    struct {
        unsigned op;
        long after;
        int err;
        int code;
    } cases[] = {
        {FOP_FALLOCATE, 0, ENOSPC, SINTER_ENOSPC}, {FOP_PWRITE, 0, ENOSPC, SINTER_ENOSPC},
        {FOP_PWRITE, 2, EIO, SINTER_EIO},          {FOP_FSYNC, 0, EIO, SINTER_EIO},
        {FOP_OPEN, 0, EACCES, SINTER_EIO},
    };
    /* cases[2] fails the third 128 KiB write of a 3 MiB segment; the others use small segments so
     * that a rollover is quick to reach. */
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct memfs *fs = memfs_new(c + 1);
        struct reports rp = {0};
        struct sinter_store_options o;
        bool big = c == 2;
        opts_init(&o, memfs_io(fs), big ? 3u << 20 : 8192u, &rp);
        struct sinter_store *s;
        struct sinter_store_recovered rec;
        struct model m = {0};
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        size_t n0 = big ? 600 : 10; /* past 1/64 of the segment, when a spare is first wanted */
        assert_int_equal(append_range(s, 1, n0, 1), SINTER_OK);
        model_set(&m, 1, n0, 1);
        struct sinter_store_spare *j = sinter_store_spare_want(s);
        assert_non_null(j);
        memfs_fail(fs, FOP_BIT(cases[c].op), cases[c].err, cases[c].after, false);
        assert_int_equal(sinter_store_spare_make(j), cases[c].code);
        assert_non_null(strstr(sinter_store_spare_errmsg(j), "spare-1.tmp"));
        assert_int_equal(memfs_count_suffix(fs, ".tmp"), 0);
        assert_int_equal(sinter_store_spare_put(s, j), cases[c].code);
        assert_non_null(strstr(sinter_store_errmsg(s), "spare"));
        assert_false(sinter_store_spare_ready(s));
        /* No retry loop: nothing wanted until the next rollover. */
        assert_null(sinter_store_spare_want(s));
        /* The log goes on; a big batch rolls over with fallocate. */
        memfs_reset_calls(fs);
        size_t n = big ? 20 : 200;
        assert_int_equal(append_range(s, n0 + 1, n, 1), SINTER_OK);
        model_set(&m, n0 + 1, n, 1);
        assert_true(big ? sinter_store_segment_count(s) == 1 : sinter_store_segment_count(s) > 1);
        assert_true(big || memfs_calls(fs, FOP_FALLOCATE) >= 1);
        if (big) {
            assert_null(sinter_store_spare_want(s)); /* still no rollover */
            sinter_store_close(s);
            memfs_free(fs);
            continue;
        }
        /* After the rollover one new attempt is allowed, and it works now. */
        assert_int_equal(make_spare(s, false), SINTER_OK);
        assert_true(sinter_store_spare_ready(s));
        sinter_store_close(s);
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        assert_int_equal(rec.n_entries, m.last);
        check_entries(rec.entries, rec.n_entries, 1, &m);
        assert_int_equal(rp.n, 0);
        sinter_store_recovered_free(&rec);
        sinter_store_close(s);
        memfs_free(fs);
    }
    /* A cancelled job and a job of another store change nothing. */
    char *dir = mktmp();
    struct sinter_store_options o;
    struct reports rp = {0};
    opts_init(&o, NULL, 8192, &rp);
    struct sinter_store *s, *s2;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    char dir2[4200];
    snprintf(dir2, sizeof dir2, "%s/other", dir);
    assert_int_equal(open_store(&s2, dir2, &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 3, 1), SINTER_OK);
    struct sinter_store_spare *j = sinter_store_spare_want(s);
    assert_non_null(j);
    sinter_store_spare_cancel(j);
    assert_int_equal(sinter_store_spare_make(j), SINTER_ECANCELED);
    assert_int_equal(count_files(dir, "spare-", ".tmp"), 0);
    assert_int_equal(sinter_store_spare_put(s2, j), SINTER_EINVAL); /* freed */
    sinter_store_close(s2);
    sinter_store_close(s);
    rmtree(dir);
}

/* Killed at a random point while appending into pre-zeroed segments (and while zero-filling the
 * next spare): every acknowledged entry survives, the torn tail of the last batch is cut, and the
 * store keeps working after the restart. The zeros after the last record are the normal end. */
static void kill_during_writes_into_zeroed_segment(void **state)
{
    (void)state;
    long torn = 0, deaths = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint64_t x = seed * 0x2545F4914F6CDD1Du + 3;
        struct memfs *fs = memfs_new(seed);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), 4096 + 512 * (uint32_t)(seed % 5), &rp);
        struct model a = {0};
        for (int round = 0; round < 6; round++) {
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            /* Acknowledged entries all present; at most the one interrupted batch beyond. */
            assert_true(rec.n_entries >= a.last);
            for (uint64_t i = 1; i <= a.last; i++) {
                assert_true(entry_ok(&rec.entries[i - 1], i, a.terms[i]));
            }
            for (uint64_t i = a.last + 1; i <= rec.n_entries; i++) {
                assert_true(entry_ok(&rec.entries[i - 1], i, 1));
                a.terms[i] = 1;
            }
            a.last = rec.n_entries;
            torn += rec.torn_bytes > 0;
            sinter_store_recovered_free(&rec);
            if (a.last + 200 > 4000) {
                sinter_store_close(s);
                break;
            }
            /* Into pre-zeroed segments: a spare before every batch that wants one. */
            memfs_die_after(fs, (long)(rng_next(&x) % 60));
            for (int step = 0; step < 20; step++) {
                (void)make_spare(s, false);
                size_t n = 1 + (size_t)(rng_next(&x) % 12);
                if (append_range(s, a.last + 1, n, 1) != SINTER_OK) {
                    assert_true(memfs_dead(fs));
                    deaths++;
                    break;
                }
                model_set(&a, a.last + 1, n, 1);
            }
            sinter_store_close(s);
            memfs_crash(fs, (int)(rng_next(&x) % 3));
        }
        memfs_free(fs);
    }
    print_message("pre-zeroed kill loop: %ld killed mid-operation, %ld torn tails cut\n", deaths,
                  torn);
    assert_true(deaths > 0);
}

/* ---- direct appends (options.direct_io) ------------------------------------------------------ */

/* Reads entries [lo, hi] back through the store (its buffered descriptor) and checks them. */
static void read_back(struct sinter_store *s, uint64_t lo, uint64_t hi, const struct model *m)
{
    struct sinter_raft_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(sinter_store_read(s, lo, hi, 0, &e, &n), SINTER_OK);
    assert_int_equal(n, hi - lo + 1);
    check_entries(e, n, lo, m);
    sinter_store_entries_free(e);
}

/* On a real file system (the test directory is on the machine's disk): once a spare-made segment
 * is the last one, appends go through O_DIRECT | O_DSYNC with no fdatasync; every entry reads back
 * through the buffered descriptor right after its write, also after that descriptor cached the
 * same block (Linux invalidates the page cache over a direct write), and through a third,
 * independent descriptor; a truncation of a conflicting suffix ends direct appends in that
 * segment (its free space is no longer pre-zeroed) and new entries are written buffered over the
 * cut; everything survives a restart. */
static void direct_appends_read_back(void **state)
{
    (void)state;
    char *dir = mktmp();
    struct reports rp = {0};
    struct faultio fio;
    faultio_init(&fio, sinter_store_io_posix());
    const uint32_t segsize = 65536;
    struct sinter_store_options o;
    opts_init(&o, &fio.io, segsize, &rp);
    assert_int_equal(o.direct_io, SINTER_STORE_DIRECT_IO_AUTO); /* the default */
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* buffered first segment, then a spare */
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    if (rp.n > 0) {
        print_message("direct I/O refused here (%s): only the fallback is checked\n", rp.last);
    }
    bool dio = rp.n == 0;
    uint64_t next = 1;
    assert_int_equal(append_range(s, next, 20, 1), SINTER_OK); /* past 1/64 of a segment */
    model_set(&m, next, 20, 1);
    next += 20;
    assert_false(sinter_store_direct_io_active(s)); /* fallocate'd first segment */
    assert_int_equal(make_spare(s, true), SINTER_OK);
    assert_int_equal(append_range(s, next, 1, 1), SINTER_OK);
    model_set(&m, next, 1, 1);
    next += 1;
    assert_int_equal(sinter_store_segment_count(s), 2);
    assert_int_equal(sinter_store_direct_io_active(s), dio);
    uint64_t seg2 = next - 1;

    char path[4200];
    snprintf(path, sizeof path, "%s/seg-%020" PRIu64, dir, seg2);
    int rfd = open(path, O_RDONLY);
    assert_true(rfd >= 0);
    uint64_t x = 77;
    int rounds = 0;
    while (sinter_store_segment_count(s) == 2 && next + 40 < 4000) {
        size_t n = 1 + (size_t)(rng_next(&x) % 24);
        memset(fio.calls, 0, sizeof fio.calls);
        assert_int_equal(append_range(s, next, n, 1), SINTER_OK);
        model_set(&m, next, n, 1);
        if (sinter_store_segment_count(s) == 2) {
            /* One write, durable by itself: no fdatasync (buffered: one of each). */
            assert_int_equal(fio.calls[FOP_PWRITE], 1);
            assert_int_equal(fio.calls[FOP_FDATASYNC], dio ? 0 : 1);
        }
        /* The block just written was read (cached) by the previous round's read-back. */
        read_back(s, next, next + n - 1, &m);
        if (sinter_store_segment_count(s) == 2) {
            /* A third descriptor sees the last record's bytes too (CRC checked by the store's
             * read above; here: its index field at its offset). */
            uint64_t off = rec_offset(&m, seg2, next + n - 1);
            uint8_t h[32];
            assert_int_equal(pread(rfd, h, sizeof h, (off_t)off), (ssize_t)sizeof h);
            uint64_t idx = 0;
            for (int k = 7; k >= 0; k--) {
                idx = (idx << 8) | h[16 + k];
            }
            assert_int_equal(idx, next + n - 1);
        }
        next += n;
        rounds++;
    }
    close(rfd);
    assert_true(rounds > 20);
    read_back(s, 1, next - 1, &m);

    /* A new spare, a rollover into it, then a conflicting suffix replaced (Raft 5.3). */
    assert_int_equal(make_spare(s, false), SINTER_OK);
    while (!sinter_store_direct_io_active(s) && dio) {
        assert_int_equal(append_range(s, next, 5, 1), SINTER_OK);
        model_set(&m, next, 5, 1);
        next += 5;
    }
    assert_int_equal(append_range(s, next, 30, 1), SINTER_OK);
    model_set(&m, next, 30, 1);
    next += 30;
    uint64_t cut = next - 17;
    assert_int_equal(append_range(s, cut, 9, 2), SINTER_OK); /* truncates [cut, next) */
    model_set(&m, cut, 9, 2);
    next = cut + 9;
    assert_false(sinter_store_direct_io_active(s)); /* cut: unwritten space again */
    read_back(s, 1, next - 1, &m);
    assert_int_equal(append_range(s, next, 6, 2), SINTER_OK);
    model_set(&m, next, 6, 2);
    next += 6;
    read_back(s, cut - 3, next - 1, &m);
    sinter_store_close(s);

    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, next - 1);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    rmtree(dir);
}

/* Where O_DIRECT is refused (the in-memory file system told to answer EINVAL, as file systems
 * without direct I/O do) open says so once and appends use pwrite + fdatasync; a segment size that
 * is not a multiple of 4 KiB also keeps direct I/O off (with a report); direct_io OFF does not even
 * probe. */
static void direct_io_refused_falls_back(void **state)
{
    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        struct memfs *fs = memfs_new(9);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), mode == 1 ? 8192 + 512 : 8192, &rp);
        if (mode == 0) {
            memfs_no_direct(fs, true);
        }
        if (mode == 2) {
            o.direct_io = SINTER_STORE_DIRECT_IO_OFF;
            memfs_no_direct(fs, true); /* would make a probe report */
        }
        struct sinter_store *s;
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        if (mode == 2) {
            assert_int_equal(rp.n, 0);
        } else {
            assert_int_equal(rp.n, 1);
            assert_non_null(strstr(rp.last, "direct I/O off"));
        }
        assert_false(memfs_exists(fs, "dio-probe.tmp"));
        static struct model m;
        memset(&m, 0, sizeof m);
        uint64_t next = 1;
        for (int k = 0; k < 60; k++) {
            (void)make_spare(s, false);
            memfs_reset_calls(fs);
            assert_int_equal(append_range(s, next, 3, 1), SINTER_OK);
            model_set(&m, next, 3, 1);
            next += 3;
            assert_false(sinter_store_direct_io_active(s));
            assert_true(memfs_calls(fs, FOP_FDATASYNC) >= 1);
        }
        assert_true(sinter_store_segment_count(s) > 2);
        assert_int_equal(memfs_dsync_writes(fs), 0);
        read_back(s, 1, next - 1, &m);
        sinter_store_close(s);
        memfs_free(fs);
    }
}

/* EIO / ENOSPC from a direct write surface like a failed fdatasync: the append fails with the
 * mapped code, the store turns failed, and a reopen finds every acknowledged entry. */
static void direct_write_errors_fail_the_store(void **state)
{
    (void)state;
    const int errs[2] = {EIO, ENOSPC};
    const int codes[2] = {SINTER_EIO, SINTER_ENOSPC};
    for (int k = 0; k < 2; k++) {
        struct memfs *fs = memfs_new(5);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), 8192, &rp);
        struct sinter_store *s;
        struct sinter_store_recovered rec;
        static struct model m;
        memset(&m, 0, sizeof m);
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        assert_int_equal(rp.n, 0);
        assert_int_equal(append_range(s, 1, 10, 1), SINTER_OK);
        model_set(&m, 1, 10, 1);
        assert_int_equal(make_spare(s, false), SINTER_OK);
        assert_int_equal(append_range(s, 11, 4, 1), SINTER_OK);
        model_set(&m, 11, 4, 1);
        assert_true(sinter_store_direct_io_active(s));
        long before = memfs_dsync_writes(fs);
        assert_int_equal(append_range(s, 15, 4, 1), SINTER_OK);
        model_set(&m, 15, 4, 1);
        assert_int_equal(memfs_dsync_writes(fs), before + 1);
        memfs_fail(fs, FOP_BIT(FOP_PWRITE), errs[k], 0, false);
        assert_int_equal(append_range(s, 19, 3, 1), codes[k]);
        assert_non_null(strstr(sinter_store_errmsg(s), "write"));
        assert_int_equal(append_range(s, 19, 3, 1), codes[k]); /* failed: refused until reopen */
        sinter_store_close(s);
        memfs_crash(fs, MEMFS_CRASH_DROP);
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        assert_int_equal(rec.n_entries, 18);
        check_entries(rec.entries, rec.n_entries, 1, &m);
        sinter_store_recovered_free(&rec);
        sinter_store_close(s);
        memfs_free(fs);
    }
}

/* Power cuts and kills during direct appends (segment sizes multiple of 4 KiB, a spare before
 * every batch): a direct write acknowledged is durable without any fdatasync (MEMFS_CRASH_DROP
 * keeps it), and one torn by the crash (each 512-byte sector old or new) only ever loses the
 * interrupted batch: the rewritten head of its block carries the earlier records unchanged. */
static void kill_during_direct_writes(void **state)
{
    (void)state;
    long torn = 0, deaths = 0, dsync = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint64_t x = seed * 0x9E3779B97F4A7C15u + 11;
        struct memfs *fs = memfs_new(seed + 1000);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), 4096u * (1u + (uint32_t)(seed % 3)), &rp);
        static struct model a;
        memset(&a, 0, sizeof a);
        for (int round = 0; round < 6; round++) {
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            assert_true(rec.n_entries >= a.last);
            for (uint64_t i = 1; i <= a.last; i++) {
                assert_true(entry_ok(&rec.entries[i - 1], i, a.terms[i]));
            }
            for (uint64_t i = a.last + 1; i <= rec.n_entries; i++) {
                assert_true(entry_ok(&rec.entries[i - 1], i, 1));
                a.terms[i] = 1;
            }
            a.last = rec.n_entries;
            torn += rec.torn_bytes > 0;
            sinter_store_recovered_free(&rec);
            if (a.last + 200 > 4000) {
                sinter_store_close(s);
                break;
            }
            memfs_die_after(fs, (long)(rng_next(&x) % 60));
            for (int step = 0; step < 20; step++) {
                (void)make_spare(s, false);
                size_t n = 1 + (size_t)(rng_next(&x) % 12);
                if (append_range(s, a.last + 1, n, 1) != SINTER_OK) {
                    assert_true(memfs_dead(fs));
                    deaths++;
                    break;
                }
                model_set(&a, a.last + 1, n, 1);
            }
            sinter_store_close(s);
            memfs_crash(fs, (int)(rng_next(&x) % 3));
        }
        dsync += memfs_dsync_writes(fs);
        memfs_free(fs);
    }
    print_message("direct kill loop: %ld killed mid-operation, %ld torn tails cut, %ld direct "
                  "writes\n",
                  deaths, torn, dsync);
    assert_true(deaths > 0);
    assert_true(dsync > 100);
}

/* ---- review fixes: write-back errors, descriptors, memory, EINVAL, defaults -------------------
 */

/* sync_file_range reports a failed write-back once and then forgets it (the final fsync on the
 * same descriptor returns 0), so the zero-fill must fail on writeback_wait's error itself; only
 * "not supported" answers are ignored. After a good fsync the zeros' pages are dropped from the
 * cache (dontneed), whose errors do not matter. */
static void spare_writeback_errors_fail_the_job(void **state)
{
    (void)state;
    struct {
        unsigned mask;
        int err;
        int code;
    } cases[] = {
        {FOP_BIT(FOP_WRITEBACK_WAIT), EIO, SINTER_EIO},
        {FOP_BIT(FOP_WRITEBACK_WAIT), ENOSPC, SINTER_ENOSPC},
        {FOP_BIT(FOP_WRITEBACK_WAIT), EINVAL, SINTER_OK},
        {FOP_BIT(FOP_WRITEBACK_WAIT), ENOSYS, SINTER_OK},
        {FOP_BIT(FOP_WRITEBACK_WAIT), EOPNOTSUPP, SINTER_OK},
        {FOP_BIT(FOP_WRITEBACK_WAIT), ESPIPE, SINTER_OK},
        {FOP_BIT(FOP_DONTNEED), EIO, SINTER_OK},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char *dir = mktmp();
        struct reports rp = {0};
        struct faultio fio;
        faultio_init(&fio, sinter_store_io_posix());
        assert_non_null(fio.io.writeback_wait);
        assert_non_null(fio.io.dontneed);
        struct sinter_store_options o;
        opts_init(&o, &fio.io, 1u << 20, &rp); /* 8 chunks of zeros */
        struct sinter_store *s;
        assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
        assert_int_equal(append_range(s, 1, 300, 1), SINTER_OK); /* past 1/64 of a segment */
        struct sinter_store_spare *j = sinter_store_spare_want(s);
        assert_non_null(j);
        /* Sticky: the unsupported answers come on every call, an error on one chunk suffices. */
        bool dn = cases[c].mask == FOP_BIT(FOP_DONTNEED); /* called once, after the fsync */
        faultio_fail(&fio, cases[c].mask, cases[c].err, dn ? 0 : 1, cases[c].code == SINTER_OK);
        assert_int_equal(sinter_store_spare_make(j), cases[c].code);
        if (fio.f.hits < 1) {
            fail_msg("case %zu: the fault was not hit", c);
        }
        if (cases[c].code != SINTER_OK) {
            assert_non_null(strstr(sinter_store_spare_errmsg(j), "write back"));
            assert_int_equal(fio.calls[FOP_DONTNEED], 0);
            assert_int_equal(count_files(dir, "spare-", ".tmp"), 0);
        } else {
            assert_int_equal(fio.calls[FOP_DONTNEED], 1);
            assert_true(fio.calls[FOP_WRITEBACK_WAIT] >= 6);
        }
        faultio_fail(&fio, 0, 0, -1, false);
        assert_int_equal(sinter_store_spare_put(s, j), cases[c].code);
        assert_int_equal(sinter_store_spare_ready(s), cases[c].code == SINTER_OK);
        sinter_store_close(s);
        rmtree(dir);
    }
}

static int cmp_u64_test(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment firsts in memfs directory /mem, sorted (names are seg-<first, 20 digits>). */
struct seg_list {
    uint64_t first[256];
    size_t n;
};

static int seg_list_cb(void *arg, const char *name)
{
    struct seg_list *l = arg;
    if (strncmp(name, "seg-", 4) == 0 && strlen(name) == 24 && l->n < 256) {
        l->first[l->n++] = strtoull(name + 4, NULL, 10);
    }
    return 0;
}

static void seg_list(struct memfs *fs, struct seg_list *l)
{
    const struct sinter_store_io *io = memfs_io(fs);
    l->n = 0;
    assert_int_equal(io->listdir(io->ctx, "/mem", seg_list_cb, l), 0);
    qsort(l->first, l->n, sizeof *l->first, cmp_u64_test);
}

/* A follower compacts its prefix with defer_unlink (the segments wait for the owner's helper),
 * then installs a leader's snapshot past its log end, which removes the current segments at once,
 * and appends after it. The process dies before the queued segments are removed: on disk are the
 * old prefix, a gap, the snapshot and the new segment. The old prefix is covered by the snapshot,
 * so open removes it instead of calling the gap lost entries (it refused to start before). */
static void deferred_prefix_then_installed_snapshot_reopens(void **state)
{
    (void)state;
    for (int policy = MEMFS_CRASH_DROP; policy <= MEMFS_CRASH_KEEP; policy++) {
        struct memfs *fs = memfs_new(31 + (uint64_t)policy);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), 4096, &rp);
        o.defer_unlink = true;
        struct sinter_store *s;
        struct sinter_store_recovered rec;
        static struct model m;
        memset(&m, 0, sizeof m);
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        assert_int_equal(append_range(s, 1, 200, 1), SINTER_OK);
        assert_int_equal(write_snapshot(s, 100, 1, 1000, 1000), SINTER_OK);
        assert_int_equal(sinter_store_compact(s, 100), SINTER_OK);
        struct seg_list l;
        seg_list(fs, &l);
        size_t queued = l.n - sinter_store_segment_count(s);
        assert_true(queued >= 2); /* compacted, still on disk */
        assert_int_equal(l.first[0], 1);
        assert_int_equal(write_snapshot(s, 500, 1, 1000, 1000), SINTER_OK);
        struct sinter_raft_snapshot_meta sm = snap_meta(500, 1);
        assert_int_equal(sinter_store_snapshot_installed(s, &sm), SINTER_OK);
        assert_int_equal(sinter_store_segment_count(s), 0);
        assert_int_equal(append_range(s, 501, 10, 1), SINTER_OK);
        model_set(&m, 501, 10, 1);
        seg_list(fs, &l);
        assert_int_equal(l.n, queued + 1); /* old prefix, gap, seg-501 */
        assert_int_equal(l.first[l.n - 1], 501);
        assert_true(l.first[l.n - 2] < 100);
        /* The process dies: nothing more reaches the disk, so close() cannot collect the queue. */
        memfs_die_after(fs, 0);
        sinter_store_close(s);
        memfs_crash(fs, policy);
        rp.n = 0;
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        assert_true(rec.has_snapshot);
        assert_int_equal(rec.snapshot.index, 500);
        assert_int_equal(rec.n_entries, 10);
        check_entries(rec.entries, rec.n_entries, 501, &m);
        sinter_store_recovered_free(&rec);
        assert_int_equal(rp.n, 1);
        assert_non_null(strstr(rp.last, "covered by snapshot"));
        assert_int_equal(sinter_store_first_index(s), 501);
        assert_int_equal(sinter_store_last_index(s), 510);
        seg_list(fs, &l); /* the old prefix is gone, durably (checked by the next crash) */
        assert_int_equal(l.n, 1);
        assert_int_equal(l.first[0], 501);
        assert_int_equal(append_range(s, 511, 5, 2), SINTER_OK);
        model_set(&m, 511, 5, 2);
        sinter_store_close(s);
        memfs_crash(fs, MEMFS_CRASH_DROP);
        rp.n = 0;
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        assert_int_equal(rp.n, 0);
        assert_int_equal(rec.n_entries, 15);
        check_entries(rec.entries, rec.n_entries, 501, &m);
        sinter_store_recovered_free(&rec);
        sinter_store_close(s);
        memfs_free(fs);
    }
}

/* A gap the newest snapshot does not bridge is still lost entries, and open refuses to start
 * without removing anything: (a) the segment holding snapshot + 1 is missing, so the segments
 * before the gap lie wholly below the snapshot but the one after it starts past snapshot + 1;
 * (b) a segment in the middle of the log above the snapshot is missing. */
static void uncovered_gap_still_refuses(void **state)
{
    (void)state;
    for (int c = 0; c < 2; c++) {
        struct memfs *fs = memfs_new(41 + (uint64_t)c);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), 4096, &rp);
        struct sinter_store *s;
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        assert_int_equal(append_range(s, 1, 200, 1), SINTER_OK);
        assert_int_equal(write_snapshot(s, 100, 1, 1000, 1000), SINTER_OK);
        sinter_store_close(s);
        struct seg_list l;
        seg_list(fs, &l);
        assert_true(l.n >= 6);
        size_t k = 0; /* (a): the segment holding index 101 */
        while (k + 1 < l.n && l.first[k + 1] <= 101) {
            k++;
        }
        if (c == 1) {
            k = l.n - 2; /* (b): well above the snapshot, not the last */
            assert_true(l.first[k] > 102);
        }
        assert_true(k > 0 && k + 1 < l.n);
        char path[64];
        snprintf(path, sizeof path, "/mem/seg-%020" PRIu64, l.first[k]);
        const struct sinter_store_io *io = memfs_io(fs);
        assert_int_equal(io->unlink(io->ctx, path), 0);
        assert_int_equal(io->syncdir(io->ctx, "/mem"), 0);
        char err[600] = "";
        assert_int_equal(sinter_store_open(&s, "/mem", &o, NULL, err, sizeof err), SINTER_ECORRUPT);
        assert_null(s);
        assert_non_null(strstr(err, "entries are missing; refusing to start"));
        struct seg_list after;
        seg_list(fs, &after);
        assert_int_equal(after.n, l.n - 1); /* nothing removed */
        memfs_free(fs);
    }
}

/* Only the last segment keeps a direct descriptor and tail block: a plain rollover (the batch's
 * first record does not fit) does not write the old last segment, which must still let go of
 * them. A truncation back into an earlier segment keeps the count at one at most. */
static void direct_descriptors_only_in_last_segment(void **state)
{
    (void)state;
    struct memfs *fs = memfs_new(21);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 16384, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    assert_int_equal(rp.n, 0); /* memfs takes direct I/O */
    uint64_t next = 1;
    int direct_rounds = 0;
    for (int k = 0; sinter_store_segment_count(s) < 10; k++) {
        (void)make_spare(s, false); /* a spare before every batch: every rollover uses one */
        /* Mostly single entries: a rollover then writes nothing into the old last segment (its
         * first record does not fit), the case that kept its descriptor; now and then a batch
         * that may be split across the two. */
        size_t n = k % 5 == 0 ? 7 : 1;
        assert_int_equal(append_range(s, next, n, 1), SINTER_OK);
        model_set(&m, next, n, 1);
        next += n;
        bool dio = sinter_store_direct_io_active(s);
        direct_rounds += dio;
        if (memfs_open_direct(fs) != (dio ? 1u : 0u)) {
            fail_msg("%zu segments: %zu descriptors open with O_DIRECT, want %d",
                     sinter_store_segment_count(s), memfs_open_direct(fs), dio);
        }
    }
    assert_true(direct_rounds > 100);
    /* Back into an earlier segment (a conflicting suffix): none is direct any more (cut). */
    uint64_t cut = next - 100;
    assert_int_equal(append_range(s, cut, 5, 2), SINTER_OK);
    model_set(&m, cut, 5, 2);
    next = cut + 5;
    assert_int_equal(memfs_open_direct(fs), sinter_store_direct_io_active(s) ? 1 : 0);
    read_back(s, 1, next - 1, &m);
    sinter_store_close(s);
    assert_int_equal(memfs_open_direct(fs), 0);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, next - 1);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    memfs_free(fs);
}

/* posix_memalign made to fail for blocks of 64 KiB and more (the direct-write buffer; the cached
 * tail block is 4 KiB), by interposition over the C library's (or the sanitizer's) function. */
static atomic_bool g_fail_big_memalign;

int posix_memalign(void **p, size_t align, size_t size)
{
    static int (*real)(void **, size_t, size_t);
    if (atomic_load(&g_fail_big_memalign) && size >= 65536) {
        return ENOMEM;
    }
    if (real == NULL) {
        real = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
        if (real == NULL) {
            abort();
        }
    }
    return real(p, align, size);
}

/* No memory for the direct-write buffer is SINTER_ENOMEM before anything is written, like the
 * buffered path's: the store stays usable and the same append succeeds once memory is back. */
static void direct_buffer_enomem_keeps_the_store(void **state)
{
    (void)state;
    struct memfs *fs = memfs_new(22);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 256u << 10, &rp);
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE; /* the rollover below makes the segment */
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 60, 1), SINTER_OK); /* past 1/64 of a segment */
    model_set(&m, 1, 60, 1);
    assert_int_equal(make_spare(s, false), SINTER_OK);
    assert_int_equal(append_range(s, 61, 4, 1), SINTER_OK); /* rollover: direct, small buffer */
    model_set(&m, 61, 4, 1);
    assert_true(sinter_store_direct_io_active(s));
    /* A batch of ~100 KB needs a bigger direct-write buffer than the first 64 KiB. */
    atomic_store(&g_fail_big_memalign, true);
    int rc = append_range(s, 65, 900, 2);
    atomic_store(&g_fail_big_memalign, false);
    assert_int_equal(rc, SINTER_ENOMEM);
    assert_non_null(strstr(sinter_store_errmsg(s), "memory"));
    assert_int_equal(sinter_store_last_index(s), 64);
    assert_true(sinter_store_direct_io_active(s));
    /* Usable: the same append now succeeds, directly. */
    long dsync = memfs_dsync_writes(fs);
    assert_int_equal(append_range(s, 65, 900, 2), SINTER_OK);
    model_set(&m, 65, 900, 2);
    assert_int_equal(sinter_store_segment_count(s), 2);
    assert_int_equal(memfs_dsync_writes(fs), dsync + 1);
    assert_int_equal(append_range(s, 965, 6, 2), SINTER_OK);
    model_set(&m, 965, 6, 2);
    read_back(s, 1, 970, &m);
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_DROP);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 970);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    memfs_free(fs);
}

/* A direct write refused with EINVAL before writing anything (an inode that refuses O_DIRECT
 * although the probe passed) ends direct I/O for that segment with one report; the batch goes
 * through pwrite + fdatasync and the store goes on. */
static void direct_write_einval_falls_back(void **state)
{
    (void)state;
    struct memfs *fs = memfs_new(23);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 8192, &rp);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 10, 1), SINTER_OK);
    model_set(&m, 1, 10, 1);
    assert_int_equal(make_spare(s, false), SINTER_OK);
    assert_int_equal(append_range(s, 11, 4, 1), SINTER_OK);
    model_set(&m, 11, 4, 1);
    assert_true(sinter_store_direct_io_active(s));
    long dsync = memfs_dsync_writes(fs);
    memfs_reset_calls(fs);
    memfs_fail(fs, FOP_BIT(FOP_PWRITE), EINVAL, 0, false);
    assert_int_equal(append_range(s, 15, 3, 1), SINTER_OK);
    model_set(&m, 15, 3, 1);
    assert_int_equal(rp.n, 1);
    assert_non_null(strstr(rp.last, "EINVAL"));
    assert_false(sinter_store_direct_io_active(s));
    assert_int_equal(memfs_open_direct(fs), 0);
    assert_int_equal(memfs_calls(fs, FOP_PWRITE), 2); /* refused, then buffered */
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1);
    assert_int_equal(memfs_dsync_writes(fs), dsync);
    assert_int_equal(append_range(s, 18, 3, 1), SINTER_OK);
    model_set(&m, 18, 3, 1);
    read_back(s, 1, 20, &m);
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_DROP);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 20);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    memfs_free(fs);
}

/* direct_io 0 (a zero-initialised struct) is the documented default, AUTO; other values than
 * OFF and AUTO are refused. */
static void direct_io_zero_means_auto(void **state)
{
    (void)state;
    struct memfs *fs = memfs_new(24);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 8192, &rp);
    o.direct_io = 3;
    struct sinter_store *s;
    char err[200];
    assert_int_equal(sinter_store_open(&s, "/mem", &o, NULL, err, sizeof err), SINTER_EINVAL);
    o.direct_io = 0;
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 10, 1), SINTER_OK);
    assert_int_equal(make_spare(s, false), SINTER_OK);
    long dsync = memfs_dsync_writes(fs);
    assert_int_equal(append_range(s, 11, 4, 1), SINTER_OK);
    assert_true(sinter_store_direct_io_active(s));
    assert_int_equal(memfs_dsync_writes(fs), dsync + 1);
    sinter_store_close(s);
    memfs_free(fs);
}

/* ---- zeroed prefix (options.zero_prefix) ------------------------------------------------------
 */

/* A new store's first segment is made with fallocate (no spare yet) and its first zero_prefix
 * bytes written with zeros inside the creation: appends go direct from the first entry, with no
 * fdatasync, until a record would end past the watermark; from there pwrite + fdatasync. After a
 * reopen the last segment gets a new prefix after its last record and appends are direct again. */
static void zero_prefix_direct_from_first_entry(void **state)
{
    (void)state;
    struct memfs *fs = memfs_new(31);
    struct reports rp = {0};
    struct sinter_store_options o;
    const uint32_t segsize = 64u << 10;
    opts_init(&o, memfs_io(fs), segsize, &rp);
    o.zero_prefix = 16u << 10;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    assert_int_equal(rp.n, 0);                      /* memfs takes direct I/O */
    assert_false(sinter_store_direct_io_active(s)); /* no segment yet */
    long probe = memfs_dsync_writes(fs);
    memfs_reset_calls(fs);
    assert_int_equal(append_range(s, 1, 1, 1), SINTER_OK);
    model_set(&m, 1, 1, 1);
    /* Creation: fallocate, header + 16 KiB of zeros, one fsync (nothing more for the prefix). */
    assert_int_equal(memfs_calls(fs, FOP_FALLOCATE), 1);
    assert_int_equal(memfs_calls(fs, FOP_FSYNC), 1);
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 0); /* the entry went direct */
    assert_int_equal(memfs_dsync_writes(fs), probe + 1);
    assert_true(sinter_store_direct_io_active(s));
    /* Direct while the records end below the watermark (16 KiB), then buffered. */
    uint64_t next = 2;
    long direct = 1;
    while (sinter_store_direct_io_active(s)) {
        long before = memfs_dsync_writes(fs);
        memfs_reset_calls(fs);
        assert_int_equal(append_range(s, next, 3, 1), SINTER_OK);
        model_set(&m, next, 3, 1);
        next += 3;
        if (memfs_dsync_writes(fs) == before + 1) {
            assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 0);
            direct++;
        } else {
            assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1); /* crossed the watermark */
        }
    }
    assert_true(rec_offset(&m, 1, next) > 12u << 10);
    assert_true(direct > 20);
    assert_int_equal(memfs_open_direct(fs), 0); /* dropped once past the watermark */
    long before = memfs_dsync_writes(fs);
    memfs_reset_calls(fs);
    assert_int_equal(append_range(s, next, 2, 1), SINTER_OK);
    model_set(&m, next, 2, 1);
    next += 2;
    assert_int_equal(memfs_dsync_writes(fs), before);
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1);
    assert_int_equal(sinter_store_segment_count(s), 1);
    read_back(s, 1, next - 1, &m);
    sinter_store_close(s);

    /* Reopen: zeros after the last record (no report, nothing torn), direct again. */
    memfs_crash(fs, MEMFS_CRASH_DROP);
    memfs_reset_calls(fs);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, next - 1);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    assert_int_equal(rp.n, 0);
    sinter_store_recovered_free(&rec);
    assert_true(memfs_calls(fs, FOP_PWRITE) >= 1); /* the prefix (and the probe) */
    assert_true(sinter_store_direct_io_active(s));
    before = memfs_dsync_writes(fs);
    memfs_reset_calls(fs);
    assert_int_equal(append_range(s, next, 4, 2), SINTER_OK);
    model_set(&m, next, 4, 2);
    next += 4;
    assert_int_equal(memfs_dsync_writes(fs), before + 1);
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 0);
    read_back(s, 1, next - 1, &m);
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_DROP);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, next - 1);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);

    /* The same on real files, with the default prefix (segment_size / 16). */
    char *dir = mktmp();
    opts_init(&o, NULL, segsize, &rp);
    rp.n = 0;
    assert_int_equal(open_store(&s, dir, &o, NULL), SINTER_OK);
    bool dio = rp.n == 0;
    assert_int_equal(append_range(s, 1, 1, 1), SINTER_OK);
    assert_int_equal(sinter_store_direct_io_active(s), dio);
    uint64_t size = 0;
    assert_true(file_all_zero(dir, "seg-00000000000000000001", rec_offset(&m, 1, 2), &size));
    assert_int_equal(size, segsize);
    sinter_store_close(s);
    assert_int_equal(open_store(&s, dir, &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 1);
    assert_int_equal(rec.torn_bytes, 0);
    sinter_store_recovered_free(&rec);
    assert_int_equal(sinter_store_direct_io_active(s), dio);
    sinter_store_close(s);
    rmtree(dir);

    /* SINTER_STORE_ZERO_PREFIX_NONE: the first segment stays buffered, as before. */
    memfs_free(fs);
    fs = memfs_new(32);
    opts_init(&o, memfs_io(fs), segsize, &rp);
    o.zero_prefix = SINTER_STORE_ZERO_PREFIX_NONE;
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    probe = memfs_dsync_writes(fs);
    assert_int_equal(append_range(s, 1, 1, 1), SINTER_OK);
    assert_false(sinter_store_direct_io_active(s));
    assert_int_equal(memfs_dsync_writes(fs), probe);
    sinter_store_close(s);
    memfs_free(fs);
}

/* With a spare ready, the segment that has only a zeroed prefix keeps taking appends up to its
 * watermark and then rolls over into the spare: a batch that would cross it is split there,
 * nothing is written past it, and every entry reads back before and after a reopen. */
static void zero_prefix_then_spare(void **state)
{
    (void)state;
    for (int split = 0; split < 2; split++) {
        struct memfs *fs = memfs_new(33 + (uint64_t)split);
        struct reports rp = {0};
        struct sinter_store_options o;
        const uint32_t segsize = 256u << 10;
        opts_init(&o, memfs_io(fs), segsize, &rp);
        o.zero_prefix = 32u << 10;
        struct sinter_store *s;
        struct sinter_store_recovered rec;
        static struct model m;
        memset(&m, 0, sizeof m);
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        uint64_t next = 1;
        /* Past 1/64 of a segment (4 KiB): a spare is wanted although the prefix is not used up. */
        while (rec_offset(&m, 1, next) < 8u << 10) {
            assert_int_equal(append_range(s, next, 5, 1), SINTER_OK);
            model_set(&m, next, 5, 1);
            next += 5;
        }
        assert_int_equal(make_spare(s, split == 1), SINTER_OK);
        assert_true(sinter_store_spare_ready(s));
        /* Still below the watermark: the spare waits. */
        size_t batch = split ? 60 : 5;
        long segs_seen = 1;
        uint64_t first_of_2 = 0;
        while (sinter_store_spare_ready(s)) {
            long before = memfs_dsync_writes(fs);
            memfs_reset_calls(fs);
            assert_int_equal(append_range(s, next, batch, 1), SINTER_OK);
            model_set(&m, next, batch, 1);
            /* Direct all the way: below the watermark, then into the pre-zeroed spare. */
            assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), sinter_store_spare_ready(s) ? 0 : 1);
            assert_true(memfs_dsync_writes(fs) >= before + 1);
            if (!sinter_store_spare_ready(s)) {
                segs_seen = (long)sinter_store_segment_count(s);
                /* Where does the new segment start? The first record that did not fit. */
                for (uint64_t x = next; x < next + batch; x++) {
                    if (rec_offset(&m, 1, x + 1) > 32u << 10) {
                        first_of_2 = x;
                        break;
                    }
                }
            }
            next += batch;
        }
        assert_int_equal(segs_seen, 2);
        assert_true(first_of_2 > 0);
        char name[40];
        snprintf(name, sizeof name, "seg-%020" PRIu64, first_of_2);
        assert_true(memfs_exists(fs, name));
        assert_true(rec_offset(&m, 1, first_of_2) <= 32u << 10); /* nothing past the watermark */
        assert_true(sinter_store_direct_io_active(s));
        read_back(s, 1, next - 1, &m);
        sinter_store_close(s);
        memfs_crash(fs, MEMFS_CRASH_RANDOM);
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        assert_int_equal(rec.n_entries, next - 1);
        check_entries(rec.entries, rec.n_entries, 1, &m);
        assert_int_equal(rec.torn_bytes, 0);
        sinter_store_recovered_free(&rec);
        assert_int_equal(sinter_store_segment_count(s), 2);
        sinter_store_close(s);
        memfs_free(fs);
    }
}

/* Killed (power cut or kill -9) at every step of a new store's first segment creation with a
 * multi-chunk prefix, and of the prefix zeroed at reopen: the log is always the acknowledged
 * entries (plus, unacknowledged, the interrupted one), never a *.tmp left over, never a torn tail
 * reported for the zeros, and the store takes appends afterwards. */
static void kill_during_zero_prefix(void **state)
{
    (void)state;
    long deaths = 0;
    for (int phase = 0; phase < 2; phase++) {
        for (long die = 0; die < 20; die++) {
            for (int policy = 0; policy < 3; policy++) {
                struct memfs *fs = memfs_new((uint64_t)(die * 3 + policy + 100 * phase + 1));
                struct reports rp = {0};
                struct sinter_store_options o;
                opts_init(&o, memfs_io(fs), 2u << 20, &rp);
                o.zero_prefix = 512u << 10; /* four 128 KiB chunks */
                struct sinter_store *s;
                struct sinter_store_recovered rec;
                struct model m = {0};
                uint64_t acked = 0;
                assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
                if (phase == 0) {
                    /* Creation: open, fallocate, header, 4 chunks, fsync, rename, syncdir,
                     * the entry's direct write. */
                    memfs_die_after(fs, die);
                    if (append_range(s, 1, 3, 1) == SINTER_OK) {
                        acked = 3;
                    } else {
                        assert_true(memfs_dead(fs));
                        deaths++;
                    }
                    sinter_store_close(s);
                } else {
                    assert_int_equal(append_range(s, 1, 9, 1), SINTER_OK);
                    acked = 9;
                    sinter_store_close(s);
                    memfs_crash(fs, MEMFS_CRASH_DROP);
                    /* Reopen: probe, the segment's fdatasync, then 1 chunk and an fdatasync. */
                    memfs_die_after(fs, die);
                    if (sinter_store_open(&s, "/mem", &o, NULL, NULL, 0) == SINTER_OK) {
                        sinter_store_close(s);
                    } else {
                        assert_true(memfs_dead(fs));
                        deaths++;
                    }
                }
                model_set(&m, 1, 9, 1);
                memfs_crash(fs, policy);
                assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
                assert_int_equal(memfs_count_suffix(fs, ".tmp"), 0);
                assert_true(rec.n_entries == acked || (phase == 0 && rec.n_entries <= 3));
                check_entries(rec.entries, rec.n_entries, 1, &m);
                if (phase == 1) {
                    assert_int_equal(rec.torn_bytes, 0); /* the zeros are no torn tail */
                }
                uint64_t last = rec.n_entries;
                sinter_store_recovered_free(&rec);
                assert_int_equal(append_range(s, last + 1, 2, 2), SINTER_OK);
                model_set(&m, last + 1, 2, 2);
                sinter_store_close(s);
                memfs_crash(fs, MEMFS_CRASH_DROP);
                assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
                assert_int_equal(rec.n_entries, last + 2);
                check_entries(rec.entries, rec.n_entries, 1, &m);
                sinter_store_recovered_free(&rec);
                sinter_store_close(s);
                memfs_free(fs);
            }
        }
    }
    assert_true(deaths > 40);
}

/* Disk full while zeroing the prefix is no error: the watermark stays where the zeros got to
 * (said through report) and appends past it are buffered. Any other error zeroing a new segment's
 * prefix fails that append like a failed fallocate: nothing named, nothing written, the store
 * usable and the append retryable. At open, disk full is the same fallback. */
static void zero_prefix_enospc_falls_back(void **state)
{
    (void)state;
    for (long after = 0; after < 3; after++) {
        struct memfs *fs = memfs_new((uint64_t)after + 40);
        struct reports rp = {0};
        struct sinter_store_options o;
        opts_init(&o, memfs_io(fs), 1u << 20, &rp);
        o.zero_prefix = 256u << 10; /* two 128 KiB chunks */
        struct sinter_store *s;
        struct sinter_store_recovered rec;
        static struct model m;
        memset(&m, 0, sizeof m);
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        /* pwrites of the creation: the header, then the chunks; `after` chunks get through (2:
         * no fault, the whole prefix). */
        if (after < 2) {
            memfs_fail(fs, FOP_BIT(FOP_PWRITE), ENOSPC, 1 + after, false);
        }
        int rc = append_range(s, 1, 1, 1);
        memfs_fail(fs, 0, 0, -1, false);
        assert_int_equal(rc, SINTER_OK);
        model_set(&m, 1, 1, 1);
        uint64_t zto = (uint64_t)after * (128u << 10);
        assert_int_equal(rp.n, after == 2 ? 0 : 1);
        if (after < 2) {
            assert_non_null(strstr(rp.last, "disk full while zeroing"));
        }
        assert_int_equal(sinter_store_direct_io_active(s), zto > 0);
        /* Appends are direct exactly while their blocks end below the watermark. */
        uint64_t next = 2;
        long direct = 0;
        while (rec_offset(&m, 1, next) < 300u << 10) { /* (the model holds 4096 entries) */
            model_set(&m, next, 100, 1);
            bool expect = ((rec_offset(&m, 1, next + 100) + 4095u) & ~(uint64_t)4095u) <= zto;
            long before = memfs_dsync_writes(fs);
            assert_int_equal(append_range(s, next, 100, 1), SINTER_OK);
            next += 100;
            assert_int_equal(memfs_dsync_writes(fs) == before + 1, expect);
            direct += expect;
            if (rec_offset(&m, 1, next) > zto) {
                assert_false(sinter_store_direct_io_active(s));
            }
        }
        assert_int_equal(direct > 0, zto > (64u << 10));
        read_back(s, 1, next - 1, &m);
        sinter_store_close(s);

        /* At open, disk full while zeroing after the last record: open succeeds, buffered. */
        memfs_crash(fs, MEMFS_CRASH_DROP);
        rp.n = 0;
        memfs_fail(fs, FOP_BIT(FOP_PWRITE), ENOSPC, 1, false); /* the probe's write gets through */
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        memfs_fail(fs, 0, 0, -1, false);
        assert_int_equal(rec.n_entries, next - 1);
        check_entries(rec.entries, rec.n_entries, 1, &m);
        sinter_store_recovered_free(&rec);
        assert_int_equal(rp.n, 1);
        assert_non_null(strstr(rp.last, "disk full while zeroing"));
        assert_false(sinter_store_direct_io_active(s));
        assert_int_equal(append_range(s, next, 3, 2), SINTER_OK);
        model_set(&m, next, 3, 2);
        next += 3;
        sinter_store_close(s);
        memfs_crash(fs, MEMFS_CRASH_DROP);
        assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
        assert_int_equal(rec.n_entries, next - 1);
        check_entries(rec.entries, rec.n_entries, 1, &m);
        assert_int_equal(rec.torn_bytes, 0);
        sinter_store_recovered_free(&rec);
        sinter_store_close(s);
        memfs_free(fs);
    }

    /* EIO while zeroing a new segment's prefix: the append fails, the store does not. */
    struct memfs *fs = memfs_new(50);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 2u << 20, &rp);
    o.zero_prefix = 1u << 20;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    memfs_fail(fs, FOP_BIT(FOP_PWRITE), EIO, 2, false);
    assert_int_equal(append_range(s, 1, 2, 1), SINTER_EIO);
    assert_non_null(strstr(sinter_store_errmsg(s), "zero the prefix of"));
    assert_int_equal(memfs_count_suffix(fs, ".tmp"), 0);
    assert_int_equal(sinter_store_segment_count(s), 0);
    assert_int_equal(append_range(s, 1, 2, 1), SINTER_OK);
    assert_true(sinter_store_direct_io_active(s));
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_DROP);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 2);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    memfs_free(fs);
}

/* Appends [first, first + n) at term and asserts it went as one direct O_DSYNC write, with no
 * fdatasync: the zeroed prefix is in place after the segment's end. */
static void append_direct(struct memfs *fs, struct sinter_store *s, struct model *m, uint64_t first,
                          size_t n, uint64_t term)
{
    assert_true(sinter_store_direct_io_active(s));
    long before = memfs_dsync_writes(fs);
    memfs_reset_calls(fs);
    assert_int_equal(append_range(s, first, n, term), SINTER_OK);
    model_set(m, first, n, term);
    assert_int_equal(memfs_dsync_writes(fs), before + 1);
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 0);
}

/* Killed (power cut, or kill -9 with the page cache kept) at every step of a truncation's cut with
 * a two-chunk prefix (ftruncate, fallocate, fsync, the zero chunks, their fdatasync) and of the
 * append after it: the log read back is a prefix of the old one (all of it, or the entries kept by
 * the cut, or those plus the new batch once acknowledged), no torn tail, never SINTER_ECORRUPT.
 * Whenever the cut completed, the next append is one direct write with no fdatasync (the prefix
 * after the cut is in place), and after any reopen too (the prefix zeroed at open). Last, a
 * flipped byte in the last batch: the torn tail cut at open gets a prefix, appends go direct. */
static void kill_during_cut_with_prefix(void **state)
{
    (void)state;
    long deaths = 0;
    long completed = 0;
    long short_file = 0;
    for (long die = 0; die < 16; die++) {
        for (int policy = 0; policy < 3; policy++) {
            struct memfs *fs = memfs_new((uint64_t)(die * 3 + policy + 300));
            struct reports rp = {0};
            struct sinter_store_options o;
            opts_init(&o, memfs_io(fs), 1u << 20, &rp);
            o.zero_prefix = 256u << 10; /* two 128 KiB chunks */
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            static struct model m;
            memset(&m, 0, sizeof m);
            assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
            assert_int_equal(rp.n, 0); /* memfs takes direct I/O */
            assert_int_equal(append_range(s, 1, 30, 1), SINTER_OK);
            model_set(&m, 1, 30, 1);
            /* A follower's conflict: entries from 21 on are replaced by term 2. */
            memfs_die_after(fs, die);
            int rc = sinter_store_truncate(s, 21);
            uint64_t acked = 30; /* entries the log must hold at least up to... */
            bool cut = false;
            if (!memfs_dead(fs)) {
                assert_int_equal(rc, SINTER_OK);
                cut = true;
                acked = 20;
                /* The direct descriptor reopened after the cut, over the prefix's zeros: one
                 * O_DSYNC write, no fdatasync (unless killed during it). */
                assert_true(sinter_store_direct_io_active(s));
                long before = memfs_dsync_writes(fs);
                memfs_reset_calls(fs);
                rc = append_range(s, 21, 4, 2);
                model_set(&m, 21, 4, 2);
                if (!memfs_dead(fs)) {
                    assert_int_equal(rc, SINTER_OK);
                    assert_int_equal(memfs_dsync_writes(fs), before + 1);
                    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 0);
                    acked = 24;
                    completed++;
                }
            }
            if (memfs_dead(fs)) {
                deaths++;
            }
            sinter_store_close(s);
            memfs_crash(fs, policy);
            rp.n = 0;
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK); /* never ECORRUPT */
            /* Torn: only the unacknowledged batch of a kill during the direct append after a
             * completed cut (the O_DSYNC write keeps each sector old or new), cut off at open. */
            if (rec.torn_bytes > 0) {
                assert_true(cut && acked == 20);
                assert_int_equal(rec.n_entries, 20);
                assert_int_equal(rp.n, 1);
            } else {
                assert_int_equal(rp.n, 0);
            }
            /* A prefix of the old log (up to 30 of term 1), or the cut log (20), or the cut log
             * plus the acknowledged new batch (24, term 2). */
            if (acked == 24) {
                assert_int_equal(rec.n_entries, 24);
            } else if (cut) {
                assert_true(rec.n_entries == 20 || rec.n_entries == 24);
            } else {
                assert_true(rec.n_entries == 20 || rec.n_entries == 30);
            }
            if (rec.n_entries == 30) {
                model_set(&m, 21, 10, 1); /* the cut never reached the disk */
            }
            check_entries(rec.entries, rec.n_entries, 1, &m);
            uint64_t last = rec.n_entries;
            sinter_store_recovered_free(&rec);
            if (memfs_file_size(fs, "seg-00000000000000000001") == 1u << 20) {
                append_direct(fs, s, &m, last + 1, 3, 3);
            } else {
                /* Killed between the ftruncate and the fallocate, and the shorter size reached
                 * the disk: no space after the end to zero (as without a prefix), buffered. */
                assert_false(sinter_store_direct_io_active(s));
                assert_int_equal(append_range(s, last + 1, 3, 3), SINTER_OK);
                model_set(&m, last + 1, 3, 3);
                short_file++;
            }
            sinter_store_close(s);
            memfs_crash(fs, MEMFS_CRASH_DROP);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            assert_int_equal(rec.n_entries, last + 3);
            check_entries(rec.entries, rec.n_entries, 1, &m);
            sinter_store_recovered_free(&rec);
            sinter_store_close(s);
            memfs_free(fs);
        }
    }
    assert_true(deaths > 20);
    assert_true(completed > 0);
    assert_true(short_file < deaths);

    /* A torn tail cut at open: the segment keeps records, so it gets its prefix and the next
     * append is direct. */
    struct memfs *fs = memfs_new(399);
    struct reports rp = {0};
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 1u << 20, &rp);
    o.zero_prefix = 256u << 10;
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    assert_int_equal(append_range(s, 1, 10, 1), SINTER_OK);
    assert_int_equal(append_range(s, 11, 10, 1), SINTER_OK);
    model_set(&m, 1, 20, 1);
    sinter_store_close(s);
    assert_int_equal(memfs_flip(fs, "seg-00000000000000000001", rec_offset(&m, 1, 15) + 33, 0x40),
                     0);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 14); /* the tail is cut at the damaged record */
    assert_true(rec.torn_bytes > 0);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    append_direct(fs, s, &m, 15, 5, 2);
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_DROP);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, 19);
    assert_int_equal(rec.torn_bytes, 0);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    memfs_free(fs);
}

/* Any error zeroing the prefix after a segment's durable end, at open or at a cut (ENOSPC or EIO
 * from the zeros or from their fdatasync), costs only the prefix: said through report, the open
 * or the truncation succeeds, the store stays usable and appends there are buffered; nothing
 * acknowledged is lost. */
static void zero_ahead_errors_fall_back(void **state)
{
    (void)state;
    const int errs[2] = {ENOSPC, EIO};
    for (int k = 0; k < 2; k++) {
        for (int op = 0; op < 2; op++) { /* 0: the fdatasync, 1: the zeros' pwrite */
            struct memfs *fs = memfs_new((uint64_t)(k * 2 + op + 400));
            struct reports rp = {0};
            struct sinter_store_options o;
            opts_init(&o, memfs_io(fs), 1u << 20, &rp);
            o.zero_prefix = 256u << 10;
            struct sinter_store *s;
            struct sinter_store_recovered rec;
            static struct model m;
            memset(&m, 0, sizeof m);
            assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
            assert_int_equal(append_range(s, 1, 30, 1), SINTER_OK);
            model_set(&m, 1, 30, 1);

            /* At a cut: the cut's own steps are ftruncate, fallocate, fsync; the prefix's the
             * pwrites and one fdatasync. */
            unsigned mask = op == 0 ? FOP_BIT(FOP_FDATASYNC) : FOP_BIT(FOP_PWRITE);
            memfs_fail(fs, mask, errs[k], 0, false);
            rp.n = 0;
            assert_int_equal(sinter_store_truncate(s, 21), SINTER_OK);
            memfs_fail(fs, 0, 0, -1, false);
            assert_true(rp.n >= 1);
            /* ENOSPC from the zeros is said by seg_zero_range, anything else by the fallback. */
            assert_true(strstr(rp.last, "free space after offset") != NULL ||
                        (op == 1 && errs[k] == ENOSPC &&
                         strstr(rp.last, "disk full while zeroing") != NULL));
            assert_false(sinter_store_direct_io_active(s));
            memfs_reset_calls(fs);
            assert_int_equal(append_range(s, 21, 4, 2), SINTER_OK); /* the store did not fail */
            model_set(&m, 21, 4, 2);
            assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1); /* buffered */
            sinter_store_close(s);
            memfs_crash(fs, MEMFS_CRASH_DROP);

            /* At open: count the fdatasyncs and pwrites of a clean open, then fail the last
             * fdatasync (the prefix's) or the first pwrite of the prefix's zeros (the last two
             * pwrites: up to the chunk boundary at 128 KiB, then to the block after end +
             * 128 KiB). */
            memfs_reset_calls(fs);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            sinter_store_recovered_free(&rec);
            assert_true(sinter_store_direct_io_active(s));
            long syncs = memfs_calls(fs, FOP_FDATASYNC);
            long writes = memfs_calls(fs, FOP_PWRITE);
            sinter_store_close(s);
            memfs_crash(fs, MEMFS_CRASH_DROP);
            memfs_fail(fs, mask, errs[k], op == 0 ? syncs - 1 : writes - 2, false);
            rp.n = 0;
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            memfs_fail(fs, 0, 0, -1, false);
            assert_int_equal(rp.n, 1);
            assert_true(strstr(rp.last, "free space after offset") != NULL ||
                        (op == 1 && errs[k] == ENOSPC &&
                         strstr(rp.last, "disk full while zeroing") != NULL));
            assert_int_equal(rec.n_entries, 24);
            assert_int_equal(rec.torn_bytes, 0);
            check_entries(rec.entries, rec.n_entries, 1, &m);
            sinter_store_recovered_free(&rec);
            assert_false(sinter_store_direct_io_active(s));
            memfs_reset_calls(fs);
            assert_int_equal(append_range(s, 25, 3, 3), SINTER_OK);
            model_set(&m, 25, 3, 3);
            assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1);
            sinter_store_close(s);
            memfs_crash(fs, MEMFS_CRASH_RANDOM);
            assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
            assert_int_equal(rec.n_entries, 27);
            assert_int_equal(rec.torn_bytes, 0);
            check_entries(rec.entries, rec.n_entries, 1, &m);
            sinter_store_recovered_free(&rec);
            sinter_store_close(s);
            memfs_free(fs);
        }
    }
}

/* Appends to a new 8 MiB-segment store with the given zero_prefix and checks that the spare is
 * not wanted until `at` bytes were appended, and is wanted right after. */
static void spare_wanted_at(uint32_t zero_prefix, bool reopen, uint64_t at, struct reports *rp)
{
    struct memfs *fs = memfs_new(62);
    struct sinter_store_options o;
    opts_init(&o, memfs_io(fs), 8u << 20, rp);
    o.zero_prefix = zero_prefix;
    struct sinter_store *s;
    static struct model m;
    memset(&m, 0, sizeof m);
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    uint64_t next = 1;
    if (reopen) {
        /* A restart: only one chunk is zeroed at open, and the count starts again. */
        assert_int_equal(append_range(s, next, 2, 1), SINTER_OK);
        model_set(&m, next, 2, 1);
        next += 2;
        sinter_store_close(s);
        assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
        at += rec_offset(&m, 1, next);
    }
    while (rec_offset(&m, 1, next) < at - 200) {
        assert_null(sinter_store_spare_want(s));
        assert_int_equal(append_range(s, next, 2, 1), SINTER_OK);
        model_set(&m, next, 2, 1);
        next += 2;
    }
    while (rec_offset(&m, 1, next) < at + 200) {
        assert_int_equal(append_range(s, next, 2, 1), SINTER_OK);
        model_set(&m, next, 2, 1);
        next += 2;
    }
    struct sinter_store_spare *j = sinter_store_spare_want(s);
    assert_non_null(j);
    sinter_store_close(s);
    sinter_store_spare_abandon(j);
    memfs_free(fs);
}

/* The spare is wanted once half of the zeroed prefix was appended (not 1/64 of the segment), and
 * a fallback rollover while its job is still out (the helper is behind) makes the new segment
 * without a prefix: its appends are buffered until the spare is taken at the next rollover. */
static void zero_prefix_skipped_while_spare_out(void **state)
{
    (void)state;
    struct reports rp = {0};
    struct sinter_store_options o;
    /* 8 MiB segments: 1/64 is 128 KiB, the default prefix. A 192 KiB prefix: wanted at half of it,
     * 96 KiB. A 16 KiB prefix: half is 8 KiB, below the 64 KiB floor, so wanted at 64 KiB. */
    spare_wanted_at(192u << 10, false, 96u << 10, &rp);
    spare_wanted_at(16u << 10, false, 64u << 10, &rp);
    /* After a restart a 1 MiB prefix is only one 128 KiB chunk at open: wanted at 64 KiB
     * appended since the open, not at 1/64 of the segment (128 KiB), past the zeroed chunk. */
    spare_wanted_at(1u << 20, true, 64u << 10, &rp);

    /* The fallback rollover with the job out: small segments, so that one is reached. */
    struct memfs *fs = memfs_new(61);
    opts_init(&o, memfs_io(fs), 32u << 10, &rp);
    o.zero_prefix = 8u << 10;
    static struct model m;
    memset(&m, 0, sizeof m);
    struct sinter_store *s;
    struct sinter_store_recovered rec;
    assert_int_equal(open_store(&s, "/mem", &o, NULL), SINTER_OK);
    uint64_t next = 1;
    struct sinter_store_spare *j = NULL;
    while (sinter_store_segment_count(s) < 2) {
        if (j == NULL) {
            j = sinter_store_spare_want(s);
        }
        assert_int_equal(append_range(s, next, 4, 1), SINTER_OK);
        model_set(&m, next, 4, 1);
        next += 4;
    }
    assert_non_null(j);
    /* Rolled over with fallocate and no zeros: the new segment's appends are buffered. */
    assert_false(sinter_store_direct_io_active(s));
    long before = memfs_dsync_writes(fs);
    memfs_reset_calls(fs);
    assert_int_equal(append_range(s, next, 2, 1), SINTER_OK);
    model_set(&m, next, 2, 1);
    next += 2;
    assert_int_equal(memfs_dsync_writes(fs), before);
    assert_int_equal(memfs_calls(fs, FOP_FDATASYNC), 1);
    /* The job comes back made: the next rollover takes the spare, direct again. */
    assert_int_equal(sinter_store_spare_make(j), SINTER_OK);
    assert_int_equal(sinter_store_spare_put(s, j), SINTER_OK);
    while (sinter_store_spare_ready(s)) {
        assert_int_equal(append_range(s, next, 4, 1), SINTER_OK);
        model_set(&m, next, 4, 1);
        next += 4;
    }
    assert_int_equal(sinter_store_segment_count(s), 3);
    assert_true(sinter_store_direct_io_active(s));
    sinter_store_close(s);
    memfs_crash(fs, MEMFS_CRASH_DROP);
    assert_int_equal(open_store(&s, "/mem", &o, &rec), SINTER_OK);
    assert_int_equal(rec.n_entries, next - 1);
    check_entries(rec.entries, rec.n_entries, 1, &m);
    assert_int_equal(rec.torn_bytes, 0);
    sinter_store_recovered_free(&rec);
    sinter_store_close(s);
    memfs_free(fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clean_restart),
        cmocka_unit_test(segment_rollover),
        cmocka_unit_test(group_commit_one_write_one_sync),
        cmocka_unit_test(truncate_across_segments),
        cmocka_unit_test(compaction_across_segments),
        cmocka_unit_test(append_validation),
        cmocka_unit_test(flipped_tail_is_truncated),
        cmocka_unit_test(garbage_after_end_is_cut),
        cmocka_unit_test(flipped_middle_is_corruption),
        cmocka_unit_test(unknown_record_version_refused),
        cmocka_unit_test(missing_files_are_corruption),
        cmocka_unit_test(write_cut_short_and_dropped_tail),
        cmocka_unit_test(random_crash_loop),
        cmocka_unit_test(meta_slots_alternate),
        cmocka_unit_test(meta_torn_write),
        cmocka_unit_test(commit_hint_is_lazy),
        cmocka_unit_test(snapshot_stream_and_retention),
        cmocka_unit_test(snapshot_header_damage_falls_back),
        cmocka_unit_test(snapshot_crash_atomicity),
        cmocka_unit_test(snapshot_install_resets_log),
        cmocka_unit_test(enospc_on_new_segment_is_retryable),
        cmocka_unit_test(write_and_sync_errors_fail_the_store),
        cmocka_unit_test(snapshot_enospc_keeps_old),
        cmocka_unit_test(snapshot_sync_on_helper_publish_on_store_thread),
        cmocka_unit_test(snapshot_helper_errors_stay_in_the_writer),
        cmocka_unit_test(received_snapshot_written_off_the_store_thread),
        cmocka_unit_test(received_snapshot_crash_before_publish),
        cmocka_unit_test(deferred_unlink_collected_elsewhere),
        cmocka_unit_test(spare_used_at_rollover),
        cmocka_unit_test(spare_recycles_compacted_segment),
        cmocka_unit_test(recycled_segment_power_cut_anywhere),
        cmocka_unit_test(recycled_segment_gap_covered_at_open),
        cmocka_unit_test(unrun_spare_job_gives_the_kept_segment_back),
        cmocka_unit_test(installed_snapshot_queues_kept_segment),
        cmocka_unit_test(spare_leftovers_removed_at_open),
        cmocka_unit_test(spare_faults_fall_back),
        cmocka_unit_test(kill_during_writes_into_zeroed_segment),
        cmocka_unit_test(direct_appends_read_back),
        cmocka_unit_test(direct_io_refused_falls_back),
        cmocka_unit_test(direct_write_errors_fail_the_store),
        cmocka_unit_test(kill_during_direct_writes),
        cmocka_unit_test(random_crash_loop_direct),
        cmocka_unit_test(spare_writeback_errors_fail_the_job),
        cmocka_unit_test(deferred_prefix_then_installed_snapshot_reopens),
        cmocka_unit_test(uncovered_gap_still_refuses),
        cmocka_unit_test(direct_descriptors_only_in_last_segment),
        cmocka_unit_test(direct_buffer_enomem_keeps_the_store),
        cmocka_unit_test(direct_write_einval_falls_back),
        cmocka_unit_test(direct_io_zero_means_auto),
        cmocka_unit_test(zero_prefix_direct_from_first_entry),
        cmocka_unit_test(zero_prefix_then_spare),
        cmocka_unit_test(kill_during_zero_prefix),
        cmocka_unit_test(zero_prefix_enospc_falls_back),
        cmocka_unit_test(kill_during_cut_with_prefix),
        cmocka_unit_test(zero_ahead_errors_fall_back),
        cmocka_unit_test(zero_prefix_skipped_while_spare_out),
    };
    return cmocka_run_group_tests_name("raft_store", tests, NULL, NULL);
}
