/* The default I/O table: thin wrappers over POSIX calls returning errno values (see raft_store.h).
 * EINTR is retried here so the store never sees it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int px_open(void *ctx, const char *path, int flags, mode_t mode, int *fd)
{
    (void)ctx;
    int r;
    do {
        r = open(path, flags | O_CLOEXEC, mode);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno;
    }
    *fd = r;
    return 0;
}

static int px_close(void *ctx, int fd)
{
    (void)ctx;
    /* No retry on EINTR: on Linux the descriptor is released anyway. */
    return close(fd) == 0 ? 0 : errno;
}

static int px_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
    (void)ctx;
    ssize_t r;
    do {
        r = pwrite(fd, buf, len, (off_t)off);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno;
    }
    *done = (size_t)r;
    return 0;
}

static int px_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    (void)ctx;
    ssize_t r;
    do {
        r = pread(fd, buf, len, (off_t)off);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno;
    }
    *done = (size_t)r;
    return 0;
}

static int px_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd) == 0 ? 0 : errno;
}

static int px_fsync(void *ctx, int fd)
{
    (void)ctx;
    return fsync(fd) == 0 ? 0 : errno;
}

static int px_ftruncate(void *ctx, int fd, uint64_t len)
{
    (void)ctx;
    int r;
    do {
        r = ftruncate(fd, (off_t)len);
    } while (r < 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

static int px_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
    (void)ctx;
    int r;
    do {
        r = fallocate(fd, 0, (off_t)off, (off_t)len);
    } while (r < 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

static int px_filesize(void *ctx, int fd, uint64_t *size)
{
    (void)ctx;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return errno;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

static int px_rename(void *ctx, const char *from, const char *to)
{
    (void)ctx;
    return rename(from, to) == 0 ? 0 : errno;
}

static int px_unlink(void *ctx, const char *path)
{
    (void)ctx;
    return unlink(path) == 0 ? 0 : errno;
}

static int px_mkdir(void *ctx, const char *path)
{
    (void)ctx;
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        return 0;
    }
    return errno;
}

static int px_listdir(void *ctx, const char *path, int (*fn)(void *arg, const char *name),
                      void *arg)
{
    (void)ctx;
    DIR *d = opendir(path);
    if (d == NULL) {
        return errno;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            rc = errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        rc = fn(arg, de->d_name);
        if (rc != 0) {
            break;
        }
    }
    closedir(d);
    return rc;
}

static int px_syncdir(void *ctx, const char *path)
{
    (void)ctx;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    int rc = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

static int px_writeback(void *ctx, int fd, uint64_t off, uint64_t len)
{
    (void)ctx;
#ifdef SYNC_FILE_RANGE_WRITE
    return sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : errno;
#else
    (void)fd;
    (void)off;
    (void)len;
    return 0;
#endif
}

static int px_writeback_wait(void *ctx, int fd, uint64_t off, uint64_t len)
{
    (void)ctx;
#ifdef SYNC_FILE_RANGE_WRITE
    unsigned flags =
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    int r;
    do {
        r = sync_file_range(fd, (off_t)off, (off_t)len, flags);
    } while (r < 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
#else
    (void)fd;
    (void)off;
    (void)len;
    return 0;
#endif
}

static int px_dontneed(void *ctx, int fd, uint64_t off, uint64_t len)
{
    (void)ctx;
    /* posix_fadvise returns the error number itself (it does not set errno). */
    return posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
}

static const struct sinter_store_io posix_io = {
    .ctx = NULL,
    .open = px_open,
    .close = px_close,
    .pwrite = px_pwrite,
    .pread = px_pread,
    .fdatasync = px_fdatasync,
    .fsync = px_fsync,
    .ftruncate = px_ftruncate,
    .fallocate = px_fallocate,
    .filesize = px_filesize,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
    .listdir = px_listdir,
    .syncdir = px_syncdir,
    .writeback = px_writeback,
    .writeback_wait = px_writeback_wait,
    .dontneed = px_dontneed,
};

const struct sinter_store_io *sinter_store_io_posix(void)
{
    return &posix_io;
}
