/*
 * etcd-put-bench — puts of --entry-size byte values at C in flight against an etcd 3.4 cluster,
 * printing the raft-bench table.
 *
 * etcd 3.4 speaks gRPC; this client uses its JSON gRPC-gateway over HTTP/1.1 instead (checked
 * against etcd 3.4.23: POST /v3/kv/put with {"key": base64, "value": base64}; /v3beta/ also
 * answers, /v3alpha/ is gone), so it needs nothing but sockets. One keep-alive connection per
 * request in flight, all to the leader's client URL (found with POST /v3/maintenance/status on
 * every endpoint), one thread driving them with poll(). Key i % 4096 is overwritten, like the
 * state machine of raft-bench. Latency = request written -> whole response read. The gateway
 * adds a JSON <-> protobuf translation and an in-process gRPC hop inside etcd: that cost is
 * etcd's as deployed this way, and is noted in bench/README.md.
 *
 *   etcd-put-bench --endpoints http://127.0.0.1:P1,http://127.0.0.1:P2,...
 *                  [--concurrency 1,16,64,256] [--seconds 5] [--warmup 1] [--entry-size 128]
 *                  [--keys 4096]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define MAX_EP   16
#define RESP_CAP 8192

struct ep {
    char host[64];
    uint16_t port;
};

struct conn {
    int fd;
    bool busy;
    uint64_t start_ns;
    char *req;
    size_t req_len, req_off;
    char resp[RESP_CAP];
    size_t resp_len;
};

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        out[o++] = b64tab[(v >> 18) & 63];
        out[o++] = b64tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static bool parse_url(const char *u, struct ep *e)
{
    const char *p = strncmp(u, "http://", 7) == 0 ? u + 7 : u;
    const char *colon = strchr(p, ':');
    if (colon == NULL || (size_t)(colon - p) >= sizeof e->host) {
        return false;
    }
    memcpy(e->host, p, (size_t)(colon - p));
    e->host[colon - p] = '\0';
    unsigned long port = strtoul(colon + 1, NULL, 10);
    if (port == 0 || port > 65535) {
        return false;
    }
    e->port = (uint16_t)port;
    return true;
}

static int dial(const struct ep *e, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(e->port);
    if (inet_pton(AF_INET, e->host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblock) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    return fd;
}

/* Returns the length of a complete HTTP response at the start of buf (0: incomplete, -1: bad) and
 * its status code. Handles Content-Length and chunked bodies. */
static long http_complete(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        return len >= RESP_CAP ? -1 : 0;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) {
        return -1;
    }
    *status = atoi(buf + 9);
    long clen = -1;
    bool chunked = false;
    for (const char *l = buf; l < end;) {
        const char *nl = memmem(l, (size_t)(end - l) + 2, "\r\n", 2);
        if (nl == NULL) {
            break;
        }
        if ((size_t)(nl - l) > 15 && strncasecmp(l, "Content-Length:", 15) == 0) {
            clen = strtol(l + 15, NULL, 10);
        } else if ((size_t)(nl - l) > 18 && strncasecmp(l, "Transfer-Encoding:", 18) == 0 &&
                   memmem(l, (size_t)(nl - l), "chunked", 7) != NULL) {
            chunked = true;
        }
        l = nl + 2;
    }
    if (chunked) {
        const char *t = memmem(buf + hlen, len - hlen, "0\r\n\r\n", 5);
        return t == NULL ? 0 : (long)(t + 5 - buf);
    }
    if (clen < 0) {
        return -1;
    }
    return hlen + (size_t)clen <= len ? (long)(hlen + (size_t)clen) : 0;
}

/* One blocking request (setup only). Returns the body in out. */
static bool http_post(const struct ep *e, const char *path, const char *body, char *out, size_t cap)
{
    int fd = dial(e, false);
    if (fd < 0) {
        return false;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, e->host, (unsigned)e->port, strlen(body), body);
    bool ok = n > 0 && write(fd, req, (size_t)n) == n;
    size_t len = 0;
    while (ok && len + 1 < cap) {
        ssize_t r = read(fd, out + len, cap - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    out[len] = '\0';
    return ok && len > 0;
}

static bool json_str(const char *body, const char *field, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", field);
    const char *p = strstr(body, pat);
    if (p == NULL) {
        return false;
    }
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (q == NULL || (size_t)(q - p) >= cap) {
        return false;
    }
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return true;
}

/* ---- the load ------------------------------------------------------------------------------ */

struct run {
    struct ep leader;
    struct conn *c;
    unsigned n_conn;
    uint32_t value_size;
    unsigned keys;
    uint64_t seq;
    uint8_t *value;
    char *value64;
};

static void build_req(struct run *r, struct conn *c)
{
    uint64_t seq = r->seq++;
    char key[32], key64[64];
    int kl = snprintf(key, sizeof key, "bench-%06u", (unsigned)(seq % r->keys));
    b64((const uint8_t *)key, (size_t)kl, key64);
    /* {"key":"K","value":"V"} */
    size_t blen = strlen("{\"key\":\"\",\"value\":\"\"}") + strlen(key64) + strlen(r->value64);
    size_t cap = blen + 256;
    if (c->req == NULL) {
        c->req = malloc(cap);
    }
    int n = snprintf(c->req, cap,
                     "POST /v3/kv/put HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n{\"key\":\"%s\",\"value\":\"%s\"}",
                     r->leader.host, (unsigned)r->leader.port, blen, key64, r->value64);
    c->req_len = n > 0 ? (size_t)n : 0;
    c->req_off = 0;
}

/* Runs conc requests in flight for secs seconds, then drains (bounded). */
static void run_row(struct run *r, unsigned conc, double secs, struct bench_row *row,
                    struct bench_lat *lat)
{
    memset(row, 0, sizeof *row);
    row->conc = conc;
    row->snaps = -1;
    row->snaps_all = -1;
    bench_lat_reset(lat);
    struct pollfd *pf = calloc(conc, sizeof *pf);
    if (pf == NULL) {
        return;
    }
    for (unsigned i = 0; i < conc; i++) {
        struct conn *c = &r->c[i];
        if (c->fd < 0) {
            c->fd = dial(&r->leader, true);
        }
        c->busy = false;
        c->resp_len = 0;
    }
    uint64_t t0 = bench_now_ns(), last = t0, max_gap = 0;
    uint64_t t_end = t0 + (uint64_t)(secs * 1e9);
    bool running = true;
    unsigned busy = 0;
    uint64_t t1 = 0;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (running && now >= t_end) {
            running = false;
            t1 = now;
        }
        if (!running && (busy == 0 || now > t_end + 15000000000ull)) {
            break;
        }
        for (unsigned i = 0; i < conc; i++) {
            struct conn *c = &r->c[i];
            if (running && !c->busy && c->fd >= 0) {
                build_req(r, c);
                c->busy = true;
                c->start_ns = bench_now_ns();
                busy++;
            }
            pf[i].fd = c->fd;
            pf[i].events = (short)(c->busy ? (c->req_off < c->req_len ? POLLOUT : POLLIN) : 0);
            pf[i].revents = 0;
        }
        int pr = poll(pf, conc, 50);
        if (pr <= 0) {
            continue;
        }
        for (unsigned i = 0; i < conc; i++) {
            struct conn *c = &r->c[i];
            if (pf[i].revents == 0 || !c->busy) {
                continue;
            }
            bool fail = false;
            if (c->req_off < c->req_len) {
                ssize_t w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
                if (w > 0) {
                    c->req_off += (size_t)w;
                } else if (w < 0 && errno != EAGAIN) {
                    fail = true;
                }
            } else {
                ssize_t rd = read(c->fd, c->resp + c->resp_len, RESP_CAP - c->resp_len);
                if (rd > 0) {
                    c->resp_len += (size_t)rd;
                    int status = 0;
                    long done = http_complete(c->resp, c->resp_len, &status);
                    if (done < 0) {
                        fail = true;
                    } else if (done > 0) {
                        uint64_t t = bench_now_ns();
                        bool ok =
                            status == 200 && memmem(c->resp, (size_t)done, "\"error\"", 7) == NULL;
                        if (ok) {
                            bench_lat_add(lat, t - c->start_ns);
                            if (running) {
                                row->done++;
                                if (t - last > max_gap) {
                                    max_gap = t - last;
                                }
                                last = t;
                            }
                        } else {
                            row->errors++;
                        }
                        memmove(c->resp, c->resp + done, c->resp_len - (size_t)done);
                        c->resp_len -= (size_t)done;
                        c->busy = false;
                        busy--;
                    }
                } else if (rd == 0 || errno != EAGAIN) {
                    fail = true;
                }
            }
            if (fail) {
                row->errors++;
                close(c->fd);
                c->fd = dial(&r->leader, true);
                c->busy = false;
                c->resp_len = 0;
                busy--;
            }
        }
    }
    if (t1 == 0) {
        t1 = bench_now_ns();
    }
    for (unsigned i = 0; i < conc; i++) {
        struct conn *c = &r->c[i];
        if (c->busy) { /* no answer within the drain: never reuse a connection mid-response */
            row->errors++;
            close(c->fd);
            c->fd = -1;
            c->busy = false;
        }
    }
    if (t1 - last > max_gap) {
        max_gap = t1 - last;
    }
    row->secs = (double)(t1 - t0) / 1e9;
    row->max_gap_ms = (double)max_gap / 1e6;
    free(pf);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: etcd-put-bench --endpoints URL,URL,... [options]\n%s"
            "  --keys N             distinct keys, overwritten in turn (default 4096)\n",
            bench_opts_usage);
}

int main(int argc, char **argv)
{
    struct bench_opts bo;
    bench_opts_default(&bo);
    struct ep eps[MAX_EP];
    size_t n_ep = 0;
    unsigned keys = 4096;
    for (int i = 1; i < argc;) {
        int k = bench_opts_parse(&bo, argc, argv, i);
        if (k < 0) {
            return 2;
        }
        if (k > 0) {
            i += k;
            continue;
        }
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--endpoints") == 0 && v != NULL) {
            char *copy = strdup(v), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t != NULL && n_ep < MAX_EP;
                 t = strtok_r(NULL, ",", &save)) {
                if (!parse_url(t, &eps[n_ep])) {
                    fprintf(stderr, "bad endpoint %s\n", t);
                    free(copy);
                    return 2;
                }
                n_ep++;
            }
            free(copy);
            i += 2;
        } else if (strcmp(a, "--keys") == 0 && v != NULL) {
            keys = (unsigned)strtoul(v, NULL, 10);
            i += 2;
        } else {
            usage();
            return 2;
        }
    }
    if (n_ep == 0 || keys == 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* Find the leader: the endpoint whose member_id is the leader it reports. */
    struct run r;
    memset(&r, 0, sizeof r);
    int li = -1;
    char version[32] = "?";
    for (unsigned tries = 0; tries < 100 && li < 0; tries++) {
        for (size_t i = 0; i < n_ep && li < 0; i++) {
            char body[4096], me[32], leader[32];
            if (http_post(&eps[i], "/v3/maintenance/status", "{}", body, sizeof body) &&
                json_str(body, "member_id", me, sizeof me) &&
                json_str(body, "leader", leader, sizeof leader) && strcmp(me, leader) == 0) {
                li = (int)i;
                json_str(body, "version", version, sizeof version);
            }
        }
        if (li < 0) {
            bench_sleep_ms(100);
        }
    }
    if (li < 0) {
        fprintf(stderr, "etcd-put-bench: no leader among the endpoints within 10 s\n");
        return 1;
    }
    r.leader = eps[li];
    r.value_size = bo.entry_size;
    r.keys = keys;
    r.value = malloc(bo.entry_size);
    r.value64 = malloc(((size_t)bo.entry_size + 2) / 3 * 4 + 1);
    unsigned max_conc = 16;
    for (size_t i = 0; i < bo.n_conc; i++) {
        max_conc = bo.conc[i] > max_conc ? bo.conc[i] : max_conc;
    }
    r.c = calloc(max_conc, sizeof *r.c);
    if (r.value == NULL || r.value64 == NULL || r.c == NULL) {
        return 1;
    }
    for (unsigned i = 0; i < max_conc; i++) {
        r.c[i].fd = -1;
    }
    for (uint32_t i = 0; i < bo.entry_size; i++) {
        r.value[i] = (uint8_t)('a' + i % 26);
    }
    b64(r.value, bo.entry_size, r.value64);

    printf("# etcd-put-bench: etcd %s, %zu members, leader %s:%u; HTTP/1.1 JSON gateway POST "
           "/v3/kv/put, one keep-alive connection per request in flight, one client thread\n",
           version, n_ep, r.leader.host, (unsigned)r.leader.port);
    printf("# value %u B (base64 in JSON), %u keys overwritten in turn, %.1f s per row, warm-up "
           "%.1f s\n",
           bo.entry_size, keys, bo.seconds, bo.warmup);
    printf("# latency = request written -> response read; snapshots: not observable here (etcd "
           "--snapshot-count, see the script)\n");
    fflush(stdout);
    struct bench_lat lat = {0};
    struct bench_row row;
    if (bo.warmup > 0) {
        run_row(&r, 16, bo.warmup, &row, &lat);
    }
    bench_print_header();
    int exit_code = 0;
    for (size_t i = 0; i < bo.n_conc; i++) {
        run_row(&r, bo.conc[i], bo.seconds, &row, &lat);
        bench_print_row(&row, &lat);
        if (row.done == 0) {
            exit_code = 1;
        }
    }
    for (unsigned i = 0; i < max_conc; i++) {
        if (r.c[i].fd >= 0) {
            close(r.c[i].fd);
        }
        free(r.c[i].req);
    }
    free(r.c);
    free(r.value);
    free(r.value64);
    bench_lat_free(&lat);
    return exit_code;
}
