/* Fault layers for the raft store tests: see faultfs.h. */
#include "faultfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared --------------------------------------------------------------------------------- */

static bool fault_hit(struct fault *f, int op, int *err)
{
    if (f->after < 0 || (f->mask & FOP_BIT(op)) == 0) {
        return false;
    }
    if (f->after > 0) {
        f->after--;
        return false;
    }
    f->hits++;
    *err = f->err;
    if (!f->sticky) {
        f->after = -1;
    }
    return true;
}

static const char *base_name(const char *path)
{
    const char *p = strrchr(path, '/');
    return p ? p + 1 : path;
}

/* ---- memfs ---------------------------------------------------------------------------------- */

#define SECTOR 512u

struct buf {
    uint8_t *p;
    size_t len, cap;
};

enum { PEND_WRITE, PEND_SIZE };
struct pend {
    int kind;
    uint64_t off; /* WRITE: offset; SIZE: new size */
    size_t len;
    uint8_t *data;
};

struct inode {
    struct buf cur, dur;
    struct pend *pend;
    size_t npend, cappend;
};

struct dent {
    char name[96];
    size_t ino;
};

struct dir {
    struct dent *e;
    size_t n, cap;
};

enum { DOP_LINK, DOP_UNLINK }; /* rename = LINK(to) + UNLINK(from), applied together */
struct dop {
    int kind;
    char name[96];
    char name2[96]; /* rename source, or "" */
    size_t ino;
};

struct memfs {
    struct sinter_store_io io;
    uint64_t rng;
    struct inode *ino;
    size_t nino, capino;
    struct dir cur, dur;
    struct dop *dops;
    size_t ndops, capdops;
    long fds[256];    /* fd -> inode + 1, 0 = free */
    int fdflags[256]; /* open flags of each fd (O_DIRECT, O_DSYNC) */
    bool no_direct;   /* O_DIRECT refused at open with EINVAL */
    long dsync_writes;
    long die_after;
    bool dead;
    struct fault f;
    long calls[FOP_COUNT];
};

static uint64_t rnd(struct memfs *fs)
{
    uint64_t x = fs->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fs->rng = x;
    return x;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        abort();
    }
    return q;
}

static void buf_resize(struct buf *b, size_t len)
{
    if (len > b->cap) {
        size_t c = b->cap ? b->cap : 64;
        while (c < len) {
            c *= 2;
        }
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
    if (len > b->len) {
        memset(b->p + b->len, 0, len - b->len);
    }
    b->len = len;
}

static void buf_write(struct buf *b, uint64_t off, const void *data, size_t len)
{
    if (off + len > b->len) {
        buf_resize(b, (size_t)(off + len));
    }
    memcpy(b->p + off, data, len);
}

static void buf_copy(struct buf *to, const struct buf *from)
{
    to->len = 0;
    buf_resize(to, from->len);
    if (from->len > 0) {
        memcpy(to->p, from->p, from->len);
    }
}

static void pend_push(struct inode *in, int kind, uint64_t off, const void *data, size_t len)
{
    if (in->npend == in->cappend) {
        in->cappend = in->cappend ? in->cappend * 2 : 8;
        in->pend = xrealloc(in->pend, in->cappend * sizeof *in->pend);
    }
    struct pend *p = &in->pend[in->npend++];
    p->kind = kind;
    p->off = off;
    p->len = len;
    p->data = NULL;
    if (len > 0 && data != NULL) {
        p->data = xrealloc(NULL, len);
        memcpy(p->data, data, len);
    }
}

static void pend_clear(struct inode *in)
{
    for (size_t i = 0; i < in->npend; i++) {
        free(in->pend[i].data);
    }
    in->npend = 0;
}

static long dir_find(const struct dir *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->e[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static void dir_link(struct dir *d, const char *name, size_t ino)
{
    long i = dir_find(d, name);
    if (i >= 0) {
        d->e[i].ino = ino;
        return;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->e = xrealloc(d->e, d->cap * sizeof *d->e);
    }
    snprintf(d->e[d->n].name, sizeof d->e[d->n].name, "%s", name);
    d->e[d->n].ino = ino;
    d->n++;
}

static void dir_unlink(struct dir *d, const char *name)
{
    long i = dir_find(d, name);
    if (i >= 0) {
        d->e[i] = d->e[d->n - 1];
        d->n--;
    }
}

static void dir_copy(struct dir *to, const struct dir *from)
{
    if (to->cap < from->n) {
        to->cap = from->n;
        to->e = xrealloc(to->e, to->cap * sizeof *to->e);
    }
    if (from->n > 0) {
        memcpy(to->e, from->e, from->n * sizeof *from->e);
    }
    to->n = from->n;
}

static void dop_push(struct memfs *fs, int kind, const char *name, const char *name2, size_t ino)
{
    if (fs->ndops == fs->capdops) {
        fs->capdops = fs->capdops ? fs->capdops * 2 : 16;
        fs->dops = xrealloc(fs->dops, fs->capdops * sizeof *fs->dops);
    }
    struct dop *d = &fs->dops[fs->ndops++];
    d->kind = kind;
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->name2, sizeof d->name2, "%s", name2 ? name2 : "");
    d->ino = ino;
}

static bool is_mutating(int op)
{
    return op == FOP_OPEN || op == FOP_PWRITE || op == FOP_FDATASYNC || op == FOP_FSYNC ||
           op == FOP_FTRUNCATE || op == FOP_FALLOCATE || op == FOP_RENAME || op == FOP_UNLINK ||
           op == FOP_SYNCDIR;
}

/* Common entry of every call: counts, death, injected faults. Returns an errno or 0. */
static int enter(struct memfs *fs, int op, bool *die_now)
{
    fs->calls[op]++;
    *die_now = false;
    if (fs->dead) {
        return EIO;
    }
    if (is_mutating(op) && fs->die_after >= 0) {
        if (fs->die_after == 0) {
            fs->dead = true;
            *die_now = true;
            return EIO;
        }
        fs->die_after--;
    }
    int err = 0;
    if (fault_hit(&fs->f, op, &err)) {
        return err;
    }
    return 0;
}

static struct inode *fd_inode(struct memfs *fs, int fd)
{
    if (fd < 0 || fd >= 256 || fs->fds[fd] == 0) {
        return NULL;
    }
    return &fs->ino[fs->fds[fd] - 1];
}

static size_t new_inode(struct memfs *fs)
{
    if (fs->nino == fs->capino) {
        fs->capino = fs->capino ? fs->capino * 2 : 16;
        fs->ino = xrealloc(fs->ino, fs->capino * sizeof *fs->ino);
    }
    memset(&fs->ino[fs->nino], 0, sizeof fs->ino[fs->nino]);
    return fs->nino++;
}

static int m_open(void *ctx, const char *path, int flags, mode_t mode, int *fd)
{
    (void)mode;
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_OPEN, &die);
    if (e != 0) {
        return e;
    }
    if ((flags & O_DIRECT) && fs->no_direct) {
        return EINVAL; /* as file systems without direct I/O answer */
    }
    const char *name = base_name(path);
    long i = dir_find(&fs->cur, name);
    size_t ino;
    if (i < 0) {
        if ((flags & O_CREAT) == 0) {
            return ENOENT;
        }
        ino = new_inode(fs);
        dir_link(&fs->cur, name, ino);
        dop_push(fs, DOP_LINK, name, NULL, ino);
    } else {
        if ((flags & O_CREAT) && (flags & O_EXCL)) {
            return EEXIST;
        }
        ino = fs->cur.e[i].ino;
        if (flags & O_TRUNC) {
            fs->ino[ino].cur.len = 0;
            pend_push(&fs->ino[ino], PEND_SIZE, 0, NULL, 0);
        }
    }
    for (int k = 3; k < 256; k++) {
        if (fs->fds[k] == 0) {
            fs->fds[k] = (long)ino + 1;
            fs->fdflags[k] = flags;
            *fd = k;
            return 0;
        }
    }
    return EMFILE;
}

static int m_close(void *ctx, int fd)
{
    struct memfs *fs = ctx;
    fs->calls[FOP_CLOSE]++;
    if (fd >= 0 && fd < 256) {
        fs->fds[fd] = 0;
    }
    return 0;
}

/* An O_DSYNC write is durable when it returns: it goes to the durable image too, and earlier
 * unsynced writes over the same bytes take its data (a crash replaying them must not bring the
 * older bytes back over it). */
static void dsync_write(struct inode *in, uint64_t off, const uint8_t *data, size_t len)
{
    buf_write(&in->cur, off, data, len);
    buf_write(&in->dur, off, data, len);
    for (size_t k = 0; k < in->npend; k++) {
        struct pend *p = &in->pend[k];
        if (p->kind != PEND_WRITE || p->data == NULL) {
            continue;
        }
        uint64_t a = p->off > off ? p->off : off;
        uint64_t b = p->off + p->len < off + len ? p->off + p->len : off + len;
        if (a < b) {
            memcpy(p->data + (a - p->off), data + (a - off), (size_t)(b - a));
        }
    }
}

static int m_pwrite(void *ctx, int fd, const void *data, size_t len, uint64_t off, size_t *done)
{
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_PWRITE, &die);
    struct inode *in = fd_inode(fs, fd);
    int fl = fd >= 0 && fd < 256 ? fs->fdflags[fd] : 0;
    if ((fl & O_DIRECT) && e == 0 && in != NULL &&
        (off % SECTOR != 0 || len % SECTOR != 0 || (uintptr_t)data % SECTOR != 0)) {
        return EINVAL; /* what Linux answers to a misaligned direct write */
    }
    if ((fl & O_DSYNC) && die && in != NULL) {
        /* Killed (power cut) during a direct write: each 512-byte sector holds its old or its new
         * content, nothing in between, and whichever it is stays. */
        const uint8_t *d = data;
        for (uint64_t o = 0; o < len; o += SECTOR) {
            size_t n = len - o < SECTOR ? (size_t)(len - o) : SECTOR;
            if (rnd(fs) & 1u) {
                dsync_write(in, off + o, d + o, n);
            }
        }
        return e;
    }
    if (die && in != NULL && len > 0) {
        /* Killed in the middle of the write: some prefix made it to the page cache. */
        size_t cut = (size_t)(rnd(fs) % len);
        buf_write(&in->cur, off, data, cut);
        pend_push(in, PEND_WRITE, off, data, cut);
    }
    if (e != 0) {
        return e;
    }
    if (in == NULL) {
        return EBADF;
    }
    if (fl & O_DSYNC) {
        fs->dsync_writes++;
        dsync_write(in, off, data, len);
        *done = len;
        return 0;
    }
    buf_write(&in->cur, off, data, len);
    pend_push(in, PEND_WRITE, off, data, len);
    *done = len;
    return 0;
}

static int m_pread(void *ctx, int fd, void *data, size_t len, uint64_t off, size_t *done)
{
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_PREAD, &die);
    if (e != 0) {
        return e;
    }
    struct inode *in = fd_inode(fs, fd);
    if (in == NULL) {
        return EBADF;
    }
    size_t n = 0;
    if (off < in->cur.len) {
        n = in->cur.len - (size_t)off;
        if (n > len) {
            n = len;
        }
        memcpy(data, in->cur.p + off, n);
    }
    *done = n;
    return 0;
}

static int m_sync(struct memfs *fs, int op, int fd)
{
    bool die;
    int e = enter(fs, op, &die);
    if (e != 0) {
        return e;
    }
    struct inode *in = fd_inode(fs, fd);
    if (in == NULL) {
        return EBADF;
    }
    buf_copy(&in->dur, &in->cur);
    pend_clear(in);
    return 0;
}

static int m_fdatasync(void *ctx, int fd)
{
    return m_sync(ctx, FOP_FDATASYNC, fd);
}

static int m_fsync(void *ctx, int fd)
{
    return m_sync(ctx, FOP_FSYNC, fd);
}

static int m_setsize(struct memfs *fs, int op, int fd, uint64_t size, bool grow_only)
{
    bool die;
    int e = enter(fs, op, &die);
    if (e != 0) {
        return e;
    }
    struct inode *in = fd_inode(fs, fd);
    if (in == NULL) {
        return EBADF;
    }
    if (grow_only && size <= in->cur.len) {
        return 0;
    }
    if (size < in->cur.len) {
        in->cur.len = (size_t)size;
    } else {
        buf_resize(&in->cur, (size_t)size);
    }
    pend_push(in, PEND_SIZE, size, NULL, 0);
    return 0;
}

static int m_ftruncate(void *ctx, int fd, uint64_t len)
{
    return m_setsize(ctx, FOP_FTRUNCATE, fd, len, false);
}

static int m_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
    return m_setsize(ctx, FOP_FALLOCATE, fd, off + len, true);
}

static int m_filesize(void *ctx, int fd, uint64_t *size)
{
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_FILESIZE, &die);
    if (e != 0) {
        return e;
    }
    struct inode *in = fd_inode(fs, fd);
    if (in == NULL) {
        return EBADF;
    }
    *size = in->cur.len;
    return 0;
}

static int m_rename(void *ctx, const char *from, const char *to)
{
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_RENAME, &die);
    if (e != 0) {
        return e;
    }
    long i = dir_find(&fs->cur, base_name(from));
    if (i < 0) {
        return ENOENT;
    }
    size_t ino = fs->cur.e[i].ino;
    dir_unlink(&fs->cur, base_name(from));
    dir_link(&fs->cur, base_name(to), ino);
    dop_push(fs, DOP_LINK, base_name(to), base_name(from), ino);
    return 0;
}

static int m_unlink(void *ctx, const char *path)
{
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_UNLINK, &die);
    if (e != 0) {
        return e;
    }
    if (dir_find(&fs->cur, base_name(path)) < 0) {
        return ENOENT;
    }
    dir_unlink(&fs->cur, base_name(path));
    dop_push(fs, DOP_UNLINK, base_name(path), NULL, 0);
    return 0;
}

static int m_mkdir(void *ctx, const char *path)
{
    (void)path;
    struct memfs *fs = ctx;
    bool die;
    return enter(fs, FOP_MKDIR, &die);
}

static int m_listdir(void *ctx, const char *path, int (*fn)(void *arg, const char *name), void *arg)
{
    (void)path;
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_LISTDIR, &die);
    if (e != 0) {
        return e;
    }
    for (size_t i = 0; i < fs->cur.n; i++) {
        int rc = fn(arg, fs->cur.e[i].name);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int m_syncdir(void *ctx, const char *path)
{
    (void)path;
    struct memfs *fs = ctx;
    bool die;
    int e = enter(fs, FOP_SYNCDIR, &die);
    if (e != 0) {
        return e;
    }
    dir_copy(&fs->dur, &fs->cur);
    fs->ndops = 0;
    return 0;
}

struct memfs *memfs_new(uint64_t seed)
{
    struct memfs *fs = calloc(1, sizeof *fs);
    if (fs == NULL) {
        abort();
    }
    fs->rng = seed * 0x9E3779B97F4A7C15u + 0x2545F4914F6CDD1Du;
    if (fs->rng == 0) {
        fs->rng = 1;
    }
    fs->die_after = -1;
    fs->f.after = -1;
    fs->io = (struct sinter_store_io){
        .ctx = fs,
        .open = m_open,
        .close = m_close,
        .pwrite = m_pwrite,
        .pread = m_pread,
        .fdatasync = m_fdatasync,
        .fsync = m_fsync,
        .ftruncate = m_ftruncate,
        .fallocate = m_fallocate,
        .filesize = m_filesize,
        .rename = m_rename,
        .unlink = m_unlink,
        .mkdir = m_mkdir,
        .listdir = m_listdir,
        .syncdir = m_syncdir,
    };
    return fs;
}

void memfs_free(struct memfs *fs)
{
    if (fs == NULL) {
        return;
    }
    for (size_t i = 0; i < fs->nino; i++) {
        pend_clear(&fs->ino[i]);
        free(fs->ino[i].pend);
        free(fs->ino[i].cur.p);
        free(fs->ino[i].dur.p);
    }
    free(fs->ino);
    free(fs->cur.e);
    free(fs->dur.e);
    free(fs->dops);
    free(fs);
}

const struct sinter_store_io *memfs_io(struct memfs *fs)
{
    return &fs->io;
}

void memfs_no_direct(struct memfs *fs, bool refuse)
{
    fs->no_direct = refuse;
}

long memfs_dsync_writes(const struct memfs *fs)
{
    return fs->dsync_writes;
}

size_t memfs_open_direct(const struct memfs *fs)
{
    size_t n = 0;
    for (int fd = 0; fd < 256; fd++) {
        n += fs->fds[fd] != 0 && (fs->fdflags[fd] & O_DIRECT) != 0;
    }
    return n;
}

void memfs_die_after(struct memfs *fs, long n)
{
    fs->die_after = n;
}

bool memfs_dead(const struct memfs *fs)
{
    return fs->dead;
}

void memfs_fail(struct memfs *fs, unsigned mask, int err, long after, bool sticky)
{
    fs->f = (struct fault){.mask = mask, .err = err, .after = after, .sticky = sticky};
}

void memfs_crash(struct memfs *fs, int policy)
{
    if (policy == MEMFS_CRASH_KEEP) {
        /* The process died, the machine did not: the page cache keeps every write. */
        dir_copy(&fs->dur, &fs->cur);
        fs->ndops = 0;
        for (size_t i = 0; i < fs->nino; i++) {
            pend_clear(&fs->ino[i]);
            buf_copy(&fs->ino[i].dur, &fs->ino[i].cur);
        }
        memset(fs->fds, 0, sizeof fs->fds);
        fs->dead = false;
        fs->die_after = -1;
        fs->f.after = -1;
        return;
    }
    bool random = policy == MEMFS_CRASH_RANDOM;
    /* Directory: the durable entries plus, at random, a prefix of the operations since. */
    size_t keep = random ? (size_t)(rnd(fs) % (fs->ndops + 1)) : 0;
    for (size_t i = 0; i < keep; i++) {
        const struct dop *d = &fs->dops[i];
        if (d->kind == DOP_LINK) {
            if (d->name2[0] != '\0') {
                dir_unlink(&fs->dur, d->name2);
            }
            dir_link(&fs->dur, d->name, d->ino);
        } else {
            dir_unlink(&fs->dur, d->name);
        }
    }
    fs->ndops = 0;
    dir_copy(&fs->cur, &fs->dur);
    /* Files: durable content plus, at random, sectors of unsynced writes and a prefix of the
     * unsynced size changes. */
    for (size_t i = 0; i < fs->nino; i++) {
        struct inode *in = &fs->ino[i];
        if (random) {
            bool sizes = true;
            for (size_t k = 0; k < in->npend; k++) {
                const struct pend *p = &in->pend[k];
                if (p->kind == PEND_SIZE) {
                    sizes = sizes && (rnd(fs) & 1u);
                    if (sizes) {
                        if (p->off < in->dur.len) {
                            in->dur.len = (size_t)p->off;
                        } else {
                            buf_resize(&in->dur, (size_t)p->off);
                        }
                    }
                    continue;
                }
                uint64_t o = p->off;
                uint64_t end = p->off + p->len;
                while (o < end) {
                    uint64_t next = (o / SECTOR + 1) * SECTOR;
                    if (next > end) {
                        next = end;
                    }
                    if (rnd(fs) & 1u) {
                        buf_write(&in->dur, o, p->data + (o - p->off), (size_t)(next - o));
                    }
                    o = next;
                }
            }
        }
        pend_clear(in);
        buf_copy(&in->cur, &in->dur);
    }
    memset(fs->fds, 0, sizeof fs->fds);
    fs->dead = false;
    fs->die_after = -1;
    fs->f.after = -1;
}

static struct inode *by_name(const struct memfs *fs, const char *name)
{
    long i = dir_find(&fs->cur, name);
    return i < 0 ? NULL : &fs->ino[fs->cur.e[i].ino];
}

int memfs_flip(struct memfs *fs, const char *name, uint64_t off, uint8_t x)
{
    struct inode *in = by_name(fs, name);
    if (in == NULL || off >= in->cur.len) {
        return -1;
    }
    in->cur.p[off] ^= x;
    if (off < in->dur.len) {
        in->dur.p[off] ^= x;
    }
    return 0;
}

bool memfs_exists(const struct memfs *fs, const char *name)
{
    return dir_find(&fs->cur, name) >= 0;
}

size_t memfs_count_suffix(const struct memfs *fs, const char *suffix)
{
    size_t n = 0;
    size_t sl = strlen(suffix);
    for (size_t i = 0; i < fs->cur.n; i++) {
        size_t l = strlen(fs->cur.e[i].name);
        if (l >= sl && strcmp(fs->cur.e[i].name + l - sl, suffix) == 0) {
            n++;
        }
    }
    return n;
}

uint64_t memfs_file_size(const struct memfs *fs, const char *name)
{
    struct inode *in = by_name(fs, name);
    return in ? in->cur.len : 0;
}

long memfs_calls(const struct memfs *fs, int op)
{
    return fs->calls[op];
}

void memfs_reset_calls(struct memfs *fs)
{
    memset(fs->calls, 0, sizeof fs->calls);
}

/* ---- faultio -------------------------------------------------------------------------------- */

#define FIO_ENTER(fio, op)                                                                         \
    do {                                                                                           \
        int err_;                                                                                  \
        (fio)->calls[op]++;                                                                        \
        if (fault_hit(&(fio)->f, op, &err_)) {                                                     \
            return err_;                                                                           \
        }                                                                                          \
    } while (0)

static int f_open(void *ctx, const char *path, int flags, mode_t mode, int *fd)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_OPEN);
    return fio->inner->open(fio->inner->ctx, path, flags, mode, fd);
}
static int f_close(void *ctx, int fd)
{
    struct faultio *fio = ctx;
    fio->calls[FOP_CLOSE]++;
    return fio->inner->close(fio->inner->ctx, fd);
}
static int f_pwrite(void *ctx, int fd, const void *b, size_t len, uint64_t off, size_t *done)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_PWRITE);
    return fio->inner->pwrite(fio->inner->ctx, fd, b, len, off, done);
}
static int f_pread(void *ctx, int fd, void *b, size_t len, uint64_t off, size_t *done)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_PREAD);
    return fio->inner->pread(fio->inner->ctx, fd, b, len, off, done);
}
static int f_fdatasync(void *ctx, int fd)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_FDATASYNC);
    return fio->inner->fdatasync(fio->inner->ctx, fd);
}
static int f_fsync(void *ctx, int fd)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_FSYNC);
    return fio->inner->fsync(fio->inner->ctx, fd);
}
static int f_ftruncate(void *ctx, int fd, uint64_t len)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_FTRUNCATE);
    return fio->inner->ftruncate(fio->inner->ctx, fd, len);
}
static int f_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_FALLOCATE);
    return fio->inner->fallocate(fio->inner->ctx, fd, off, len);
}
static int f_filesize(void *ctx, int fd, uint64_t *size)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_FILESIZE);
    return fio->inner->filesize(fio->inner->ctx, fd, size);
}
static int f_rename(void *ctx, const char *from, const char *to)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_RENAME);
    return fio->inner->rename(fio->inner->ctx, from, to);
}
static int f_unlink(void *ctx, const char *path)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_UNLINK);
    return fio->inner->unlink(fio->inner->ctx, path);
}
static int f_mkdir(void *ctx, const char *path)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_MKDIR);
    return fio->inner->mkdir(fio->inner->ctx, path);
}
static int f_listdir(void *ctx, const char *path, int (*fn)(void *arg, const char *name), void *arg)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_LISTDIR);
    return fio->inner->listdir(fio->inner->ctx, path, fn, arg);
}
static int f_syncdir(void *ctx, const char *path)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_SYNCDIR);
    return fio->inner->syncdir(fio->inner->ctx, path);
}

static int f_writeback(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct faultio *fio = ctx;
    return fio->inner->writeback(fio->inner->ctx, fd, off, len);
}
static int f_writeback_wait(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_WRITEBACK_WAIT);
    return fio->inner->writeback_wait(fio->inner->ctx, fd, off, len);
}
static int f_dontneed(void *ctx, int fd, uint64_t off, uint64_t len)
{
    struct faultio *fio = ctx;
    FIO_ENTER(fio, FOP_DONTNEED);
    return fio->inner->dontneed(fio->inner->ctx, fd, off, len);
}

void faultio_init(struct faultio *fio, const struct sinter_store_io *inner)
{
    memset(fio, 0, sizeof *fio);
    fio->inner = inner;
    fio->f.after = -1;
    fio->io = (struct sinter_store_io){
        .ctx = fio,
        .open = f_open,
        .close = f_close,
        .pwrite = f_pwrite,
        .pread = f_pread,
        .fdatasync = f_fdatasync,
        .fsync = f_fsync,
        .ftruncate = f_ftruncate,
        .fallocate = f_fallocate,
        .filesize = f_filesize,
        .rename = f_rename,
        .unlink = f_unlink,
        .mkdir = f_mkdir,
        .listdir = f_listdir,
        .syncdir = f_syncdir,
        .writeback = inner->writeback != NULL ? f_writeback : NULL,
        .writeback_wait = inner->writeback_wait != NULL ? f_writeback_wait : NULL,
        .dontneed = inner->dontneed != NULL ? f_dontneed : NULL,
    };
}

void faultio_fail(struct faultio *fio, unsigned mask, int err, long after, bool sticky)
{
    fio->f = (struct fault){.mask = mask, .err = err, .after = after, .sticky = sticky};
}
