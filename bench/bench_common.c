/* bench/bench_common.c — see bench_common.h. */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000u), .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void bench_lat_add(struct bench_lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint64_t *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL) {
            return; /* drop the sample rather than the run */
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = ns;
}

void bench_lat_reset(struct bench_lat *l)
{
    l->n = 0;
}

void bench_lat_free(struct bench_lat *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void bench_lat_sort(struct bench_lat *l)
{
    if (l->n > 1) {
        qsort(l->v, l->n, sizeof *l->v, cmp_u64);
    }
}

double bench_lat_pct(const struct bench_lat *l, double q)
{
    if (l->n == 0) {
        return 0;
    }
    size_t i = (size_t)(q * (double)l->n);
    if (i >= l->n) {
        i = l->n - 1;
    }
    return (double)l->v[i] / 1e6;
}

void bench_print_header(void)
{
    printf("%11s %10s %8s %8s %8s %8s %10s %9s %6s\n", "concurrency", "entries/s", "p50_ms",
           "p99_ms", "p999_ms", "max_ms", "max_gap_ms", "snapshots", "errors");
    fflush(stdout);
}

void bench_print_row(const struct bench_row *r, struct bench_lat *l)
{
    bench_lat_sort(l);
    char snaps[48];
    if (r->snaps < 0) {
        snprintf(snaps, sizeof snaps, "-");
    } else if (r->snaps_all < 0) {
        snprintf(snaps, sizeof snaps, "%" PRId64, r->snaps);
    } else {
        snprintf(snaps, sizeof snaps, "%" PRId64 "/%" PRId64, r->snaps, r->snaps_all);
    }
    double rate = r->secs > 0 ? (double)r->done / r->secs : 0;
    printf("%11u %10.0f %8.3f %8.3f %8.3f %8.3f %10.3f %9s %6" PRIu64 "\n", r->conc, rate,
           bench_lat_pct(l, 0.50), bench_lat_pct(l, 0.99), bench_lat_pct(l, 0.999),
           l->n ? (double)l->v[l->n - 1] / 1e6 : 0.0, r->max_gap_ms, snaps, r->errors);
    fflush(stdout);
}

const char bench_opts_usage[] =
    "  --concurrency LIST   proposals in flight per row, e.g. 1,16,64,256 (default)\n"
    "  --seconds S          measured seconds per row (default 5)\n"
    "  --warmup S           warm-up seconds at 16 in flight before the first row (default 1)\n"
    "  --entry-size B       bytes per entry (default 128, >= 16)\n";

void bench_opts_default(struct bench_opts *o)
{
    memset(o, 0, sizeof *o);
    static const unsigned def[] = {1, 16, 64, 256};
    for (size_t i = 0; i < sizeof def / sizeof def[0]; i++) {
        o->conc[o->n_conc++] = def[i];
    }
    o->seconds = 5;
    o->warmup = 1;
    o->entry_size = 128;
}

int bench_opts_parse(struct bench_opts *o, int argc, char **argv, int i)
{
    const char *a = argv[i];
    bool known = strcmp(a, "--concurrency") == 0 || strcmp(a, "--seconds") == 0 ||
                 strcmp(a, "--warmup") == 0 || strcmp(a, "--entry-size") == 0;
    if (!known) {
        return 0;
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a);
        return -1;
    }
    const char *v = argv[i + 1];
    char *end = NULL;
    if (strcmp(a, "--concurrency") == 0) {
        o->n_conc = 0;
        const char *p = v;
        while (*p != '\0') {
            unsigned long c = strtoul(p, &end, 10);
            if (end == p || c == 0 || c > 100000 || o->n_conc == BENCH_MAX_CONC) {
                fprintf(stderr, "bad --concurrency %s\n", v);
                return -1;
            }
            o->conc[o->n_conc++] = (unsigned)c;
            p = *end == ',' ? end + 1 : end;
            if (*end != ',' && *end != '\0') {
                fprintf(stderr, "bad --concurrency %s\n", v);
                return -1;
            }
        }
        if (o->n_conc == 0) {
            fprintf(stderr, "bad --concurrency %s\n", v);
            return -1;
        }
    } else if (strcmp(a, "--seconds") == 0 || strcmp(a, "--warmup") == 0) {
        double d = strtod(v, &end);
        if (end == v || *end != '\0' || d < 0 || d > 3600 ||
            (strcmp(a, "--seconds") == 0 && d <= 0)) {
            fprintf(stderr, "bad %s %s\n", a, v);
            return -1;
        }
        if (strcmp(a, "--seconds") == 0) {
            o->seconds = d;
        } else {
            o->warmup = d;
        }
    } else {
        unsigned long s = strtoul(v, &end, 10);
        if (end == v || *end != '\0' || s < 16 || s > 1024 * 1024) {
            fprintf(stderr, "bad --entry-size %s (16 .. 1048576)\n", v);
            return -1;
        }
        o->entry_size = (uint32_t)s;
    }
    return 2;
}

/* One probe: a port the kernel just gave to a bound socket, released again. */
static uint16_t probe_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t len = sizeof sa;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

uint16_t bench_free_port(void)
{
    /* The kernel may hand the same port out twice in a row once released: a cluster whose two
     * listeners got one port fails to start, so never return a port twice. */
    static uint16_t given[256];
    static size_t n;
    for (int attempt = 0; attempt < 100 && n < sizeof given / sizeof given[0]; attempt++) {
        uint16_t p = probe_port();
        int dup = p == 0;
        for (size_t i = 0; i < n && !dup; i++) {
            dup = given[i] == p;
        }
        if (!dup) {
            given[n++] = p;
            return p;
        }
    }
    return 0;
}

char *bench_mkdtemp(const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0') {
        tmp = "/tmp";
    }
    size_t n = strlen(tmp) + strlen(prefix) + 16;
    char *p = malloc(n);
    if (p == NULL) {
        return NULL;
    }
    snprintf(p, n, "%s/%s-XXXXXX", tmp, prefix);
    if (mkdtemp(p) == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void bench_rmrf(const char *path)
{
    if (path != NULL && *path != '\0') {
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}
