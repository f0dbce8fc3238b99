/* See testproc.h. */
#include "testproc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t sinter_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sinter_test_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Ports this process handed out, each with the lock that keeps other test processes off it. */
static struct {
    int port;
    int lock_fd;
} given[512];
static size_t n_given;

/* The kernel picks outgoing connections' local ports from ip_local_port_range (32768-60999 by
 * default): a node dialling its peers can take any port there, including one a test picked and has
 * not yet handed to the server it starts. So tests pick below that range, where only listeners
 * that ask for a port by number land. */
static void port_window(int *lo, int *hi)
{
    int a = 32768, b = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d %d", &a, &b) != 2) {
            a = 32768;
        }
        fclose(f);
    }
    if (a > 12000) {
        *lo = 10000;
        *hi = a - 1;
    } else { /* an unusual host whose ephemeral range starts low: use what lies above it */
        *lo = b + 1;
        *hi = 65535;
    }
}

static int bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    int one = 1; /* as the servers do: a port whose last connection is in TIME_WAIT is usable */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int sinter_test_free_port(void)
{
    if (n_given == sizeof given / sizeof given[0]) {
        return -1;
    }
    int lo, hi;
    port_window(&lo, &hi);
    /* Test processes running side by side (ctest -j) coordinate through one lock file per port:
     * flock is released by the kernel when the holder exits, so a crashed test leaves nothing
     * stale behind, and the files themselves are empty. */
    char dir[] = "/tmp/sinter-test-ports";
    if (mkdir(dir, 01777) == 0) {
        chmod(dir, 01777); /* umask must not keep another user's tests out */
    }
    static unsigned seed;
    if (seed == 0) {
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)sinter_test_now_ms();
    }
    for (int attempt = 0; attempt < 2000; attempt++) {
        seed = seed * 1103515245u + 12345u;
        int port = lo + (int)((seed >> 8) % (unsigned)(hi - lo + 1));
        int dup = 0;
        for (size_t i = 0; i < n_given; i++) {
            dup |= given[i].port == port;
        }
        if (dup) {
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "%s/%d", dir, port);
        int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 || !bindable(port)) {
            close(fd);
            continue;
        }
        given[n_given].port = port;
        given[n_given].lock_fd = fd; /* held until this process exits */
        n_given++;
        return port;
    }
    return -1;
}

void sinter_test_kill9(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

int sinter_test_stop(pid_t *pid, unsigned timeout_ms)
{
    if (*pid <= 0) {
        return 0;
    }
    kill(*pid, SIGTERM);
    uint64_t end = sinter_test_now_ms() + timeout_ms;
    while (sinter_test_now_ms() < end) {
        int ws = 0;
        if (waitpid(*pid, &ws, WNOHANG) == *pid) {
            *pid = 0;
            return ws; /* 0 exactly when it exited with status 0 */
        }
        sinter_test_sleep_ms(50);
    }
    sinter_test_kill9(pid);
    return -1;
}

pid_t sinter_test_spawn(char *const argv[], const char *log_path)
{
    fflush(NULL); /* or the child's exit could flush the parent's buffered output a second time */
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int sinter_test_stop_clean(pid_t *pid, const char *what)
{
    int ws = sinter_test_stop(pid, 30000);
    if (ws != 0) {
        fprintf(stderr, "%s did not exit cleanly (status %d)\n", what, ws);
        return 1;
    }
    return 0;
}

int sinter_test_finish_dir(const char *dir, int rc)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -q -e 'Sanitizer' -e 'runtime error:' %s/node*.log 2>/dev/null",
             dir);
    if (system(cmd) == 0) {
        fprintf(stderr, "a node log holds a sanitizer report\n");
        rc = 1;
    }
    if (rc == 0 && getenv("SINTER_TEST_KEEP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    } else if (rc == 0) {
        snprintf(cmd, sizeof cmd, "echo 'kept %s' 1>&2", dir);
    } else {
        snprintf(cmd, sizeof cmd, "tail -n 40 %s/node*.log 1>&2; echo 'kept %s' 1>&2", dir, dir);
    }
    if (system(cmd) != 0) {
        fprintf(stderr, "could not run: %s\n", cmd);
    }
    return rc;
}

long sinter_test_file_size(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

int sinter_test_count_lines(const char *path, long from, const char *a, const char *b)
{
    char line[2048];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    fseek(f, from, SEEK_SET);
    int count = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL)) {
            count++;
        }
    }
    fclose(f);
    return count;
}

/* Reads what is left in fd into a malloc'ed string. */
static char *slurp(int fd)
{
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    if (b == NULL) {
        return NULL;
    }
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (len + 1 == cap) {
            char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                break;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + len, cap - len - 1);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    b[len] = '\0';
    return b;
}

extern char **environ;

int sinter_test_run(char *const argv[], const char *const *unset, const char *const *set,
                    unsigned timeout_ms, struct sinter_test_output *o)
{
    o->exit_code = -1;
    o->out = o->err = NULL;
    /* Temporary files, not pipes: the child never blocks on a full pipe while we wait. */
    FILE *fo = tmpfile(), *fe = tmpfile();
    if (fo == NULL || fe == NULL) {
        if (fo != NULL) {
            fclose(fo);
        }
        if (fe != NULL) {
            fclose(fe);
        }
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fclose(fo);
        fclose(fe);
        return -1;
    }
    if (pid == 0) {
        for (const char *const *u = unset; u != NULL && *u != NULL; u++) {
            unsetenv(*u);
        }
        for (const char *const *v = set; v != NULL && *v != NULL; v++) {
            putenv((char *)*v);
        }
        dup2(fileno(fo), 1);
        dup2(fileno(fe), 2);
        execve(argv[0], argv, environ);
        _exit(127);
    }
    uint64_t end = sinter_test_now_ms() + timeout_ms;
    int ws = 0;
    for (;;) {
        if (waitpid(pid, &ws, WNOHANG) == pid) {
            o->exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            break;
        }
        if (sinter_test_now_ms() > end) {
            sinter_test_kill9(&pid);
            break;
        }
        sinter_test_sleep_ms(10);
    }
    o->out = slurp(fileno(fo));
    o->err = slurp(fileno(fe));
    fclose(fo);
    fclose(fe);
    return o->out != NULL && o->err != NULL ? 0 : -1;
}

void sinter_test_output_free(struct sinter_test_output *o)
{
    free(o->out);
    free(o->err);
    o->out = o->err = NULL;
}
