/*
 * Native engine for tcp:// URLs: Sinter frames over nng's SP REQ0/REP0 wire protocol, on our own
 * non-blocking sockets and one epoll thread per server and per client. See sinter/transport.h
 * for the contract (the same as nng's engine) and why it exists: with nng every request crossed
 * nng's poller and task threads on both sides (issues #6/#7, bench/FINDINGS.md T2/T4).
 *
 * The SP over TCP wire, as nng writes it (src/sp/transport/tcp/tcp.c, reqrep0/req.c, rep.c):
 *   - after connect each side sends 8 bytes: 0x00 'S' 'P' 0x00, its protocol id as a 16-bit
 *     big-endian number (REQ0 0x0030, REP0 0x0031), 0x00 0x00; nng checks bytes 0-3 and 6-7 and
 *     the socket core drops a pipe whose peer is not its expected peer protocol;
 *   - then every message is a 64-bit big-endian length and that many bytes. nng closes the pipe
 *     when the length is over NNG_OPT_RECVMAXSZ (we set max_frame + SP_OVERHEAD on both ends), and
 *     drops a partly received message when the peer closes mid-message;
 *   - a REQ0 body starts with the 32-bit big-endian request id with the high bit set; nng's REQ
 *     draws ids from [0x80000000, 0xffffffff] starting at a random point. A REP0 moves 32-bit
 *     words to the reply's "backtrace" until one with the high bit set (words without it are hops
 *     added by devices); over 8 hops (NNG_OPT_MAXTTL's default) the request is dropped, and a
 *     body that ends before the high-bit word makes nng close the pipe. The reply carries the
 *     backtrace words, then the body. A REQ0 drops a reply whose id it does not wait for.
 * Our own frame (proto/codec.c: magic, version, CRC32C, request id) is the body after that.
 *
 * Server: the I/O thread accepts, reads every connection (edge-triggered, at most one read per
 * connection per pass so one busy peer cannot starve the others), cuts SP messages, decodes and
 * calls the handler inline. sinter_transport_reply() encodes and writes straight to the socket
 * under the connection's write lock from whatever thread replies; only what the kernel does not
 * take is queued and EPOLLOUT armed. A request holds a reference to its connection, so a reply
 * after the connection closed is dropped and the request still released. Back-pressure: with
 * n_contexts requests handed to the handler and not replied, the I/O thread stops cutting
 * messages (bytes stay in the kernel, TCP pushes back) until a reply frees a slot and kicks it
 * through an eventfd; and a connection whose peer leaves OUT_CAP of replies unread gets no more
 * requests cut until they drain. A peer's FIN is read even when it came with the last data.
 *
 * Client: one connection dialled in the background with jittered backoff (a host name resolved
 * on a lookup thread, a numeric one directly), calls pipelined on it, each
 * with its own SP request id (slot index in the low bits, a generation above) and matched on
 * the reply. The I/O thread reads replies, runs timeouts and redials; callers write their
 * request straight to the socket under the client lock. Calls made while disconnected wait for
 * the connection within their timeout, as with nng REQ. On connection loss the calls already
 * sent complete with SINTER_ETRANSPORT (the outcome is unknown: sinter_client retries with the
 * same seq and the TC deduplicates); nng REQ would instead resend them itself.
 *
 * Locks: the server's mu and a connection's wmu are never held together; the client has one
 * mutex. No user callback (handler, done) runs with a transport lock held.
 */
#include "transport_priv.h"

#include "sinter/crc32c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SP_REQ0       0x30u
#define SP_REP0       0x31u
#define SP_MAX_HOPS   8u          /* nng's default NNG_OPT_MAXTTL */
#define RX_CHUNK      (16u << 10) /* initial receive buffer; it grows as bytes actually arrive */
#define EVENTS        64
#define REQ_KEEP      64u   /* released server requests kept for reuse */
#define REQ_KEEP_CAP  4096u /* ... when their frame room is at most this */
#define DIAL_MIN_MS   20u
#define DIAL_MAX_MS   1000u
#define STOP_FLUSH_MS 2000u /* how long close() lets queued replies drain */
#define IDLE_TICK_MS  500u
/* Reply bytes a server connection may have queued in user space (what the kernel did not take)
 * before the I/O thread stops cutting requests from it; it resumes once the queue drains below
 * this. nng bounds the same thing by parking the context on the busy pipe (rep0_ctx_send), so a
 * peer that sends requests and never reads its replies cannot make the server grow without
 * bound: its requests stay in the kernel and TCP pushes back on it alone. */
#define OUT_CAP (1u << 20)
/* A receive buffer larger than this is given back once it is empty (a connection that once took
 * a 1 MiB frame does not keep 1 MiB for the rest of its life; nng frees each message). */
#define RX_KEEP (64u << 10)
/* A connection that has not completed the SP header exchange by then is closed, as nng does
 * (its TCP transport's 10 s negotiation timeout): a peer that connects and says nothing does not
 * hold a descriptor forever, and a client whose server never answers the header redials. */
#define NEGO_MS 10000u

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (24 - 8 * i));
    }
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void sp_hello(uint8_t h[8], unsigned proto)
{
    h[0] = 0;
    h[1] = 'S';
    h[2] = 'P';
    h[3] = 0;
    h[4] = (uint8_t)(proto >> 8);
    h[5] = (uint8_t)proto;
    h[6] = 0;
    h[7] = 0;
}

/* The checks nng makes of a peer's header, plus the peer protocol its socket core insists on. */
static bool sp_hello_ok(const uint8_t h[8], unsigned want_proto)
{
    return h[0] == 0 && h[1] == 'S' && h[2] == 'P' && h[3] == 0 && h[6] == 0 && h[7] == 0 &&
           (((unsigned)h[4] << 8) | h[5]) == want_proto;
}

static void kick(int evfd)
{
    uint64_t one = 1;
    (void)!write(evfd, &one, sizeof one);
}

static void drain(int evfd)
{
    uint64_t v;
    (void)!read(evfd, &v, sizeof v);
}

/* Encodes m with request_id as the frame's id into *buf (grown as needed) after pre bytes of
 * room for the SP header. m is const and may be shared, so the id is patched into the encoded
 * header and the CRC recomputed (as the nng engine does). */
static int encode_frame(const struct sinter_proto_msg *m, uint64_t request_id,
                        const struct sinter_proto_limits *lim, size_t pre, uint8_t **buf,
                        size_t *cap, size_t *out_len)
{
    size_t size = sinter_proto_encoded_size(m, lim);
    size_t n;
    if (size == 0) {
        uint8_t dummy[SINTER_PROTO_HEADER_SIZE];
        int rc = sinter_proto_encode(m, lim, dummy, 0, &n);
        return rc == SINTER_OK ? SINTER_EINTERNAL : rc;
    }
    if (*buf == NULL || *cap < pre + size) {
        uint8_t *nb = realloc(*buf, pre + size);
        if (nb == NULL) {
            return SINTER_ENOMEM;
        }
        *buf = nb;
        *cap = pre + size;
    }
    uint8_t *b = *buf + pre;
    int rc = sinter_proto_encode(m, lim, b, size, &n);
    if (rc != SINTER_OK) {
        return rc;
    }
    sinter_tp_set_request_id(b, n, request_id);
    *out_len = pre + n;
    return SINTER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * URLs and sockets
 */

bool sinter_tn_is_tcp_url(const char *url)
{
    return strncmp(url, "tcp://", 6) == 0 || strncmp(url, "tcp4://", 7) == 0 ||
           strncmp(url, "tcp6://", 7) == 0;
}

int sinter_transport_tcp_url(const char *url, bool *is_tcp, int *af, char *host, size_t host_cap,
                             char *port, size_t port_cap)
{
    *is_tcp = false;
    const char *rest;
    if (strncmp(url, "tcp://", 6) == 0) {
        *af = AF_UNSPEC;
        rest = url + 6;
    } else if (strncmp(url, "tcp4://", 7) == 0) {
        *af = AF_INET;
        rest = url + 7;
    } else if (strncmp(url, "tcp6://", 7) == 0) {
        *af = AF_INET6;
        rest = url + 7;
    } else {
        return SINTER_OK;
    }
    const char *h = rest, *h_end, *colon;
    if (*rest == '[') {
        h = rest + 1;
        h_end = strchr(h, ']');
        if (h_end == NULL || h_end[1] != ':') {
            return SINTER_ECONFIG;
        }
        colon = h_end + 1;
    } else {
        colon = strrchr(rest, ':');
        const char *slash = strchr(rest, '/');
        if (colon == NULL || (slash != NULL && slash < colon)) {
            return SINTER_ECONFIG;
        }
        h_end = colon;
    }
    const char *pt = colon + 1;
    size_t plen = 0;
    while (pt[plen] >= '0' && pt[plen] <= '9') {
        plen++;
    }
    if (plen == 0 || plen > 5 || plen >= port_cap ||
        !(pt[plen] == '\0' || strcmp(pt + plen, "/") == 0) || strtoul(pt, NULL, 10) > 65535) {
        return SINTER_ECONFIG;
    }
    size_t hlen = (size_t)(h_end - h);
    if (hlen >= host_cap) {
        return SINTER_ECONFIG;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (strcmp(host, "*") == 0) {
        host[0] = '\0';
    }
    memcpy(port, pt, plen);
    port[plen] = '\0';
    *is_tcp = true;
    return SINTER_OK;
}

/* The native engine's URLs: tcp://, tcp4:// or tcp6:// only (SINTER_ECONFIG for anything else,
 * what nng answers for a malformed URL). */
static int parse_url(const char *url, int *af, char *host, size_t host_cap, char *port,
                     size_t port_cap)
{
    bool is_tcp = false;
    int rc = sinter_transport_tcp_url(url, &is_tcp, af, host, host_cap, port, port_cap);
    return rc == SINTER_OK && !is_tcp ? SINTER_ECONFIG : rc;
}

/* Small requests must not wait for Nagle: one frame is one write. */
static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A growable receive buffer: bytes [off, len) are unread. */
struct rxbuf {
    uint8_t *b;
    size_t off, len, cap;
};

/* One read(2) into r, making room for a message of `need` bytes from off (grown only when the
 * buffer is full, doubling, so a peer announcing a large message and sending nothing costs
 * RX_CHUNK; an empty buffer over RX_KEEP is given back first). Returns read(2)'s result; -1 with
 * errno ENOMEM when no room could be made. */
static ssize_t rx_read(int fd, struct rxbuf *r, size_t need, bool *drained)
{
    if (r->off == r->len) {
        r->off = r->len = 0;
        if (r->cap > RX_KEEP) {
            free(r->b);
            r->b = NULL;
            r->cap = 0;
        }
    } else if (r->off > 0 && (r->cap - r->len < RX_CHUNK || r->off + need > r->cap)) {
        memmove(r->b, r->b + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len == r->cap) {
        size_t ncap = r->cap == 0 ? RX_CHUNK : r->cap * 2;
        if (ncap > need && need > r->cap) {
            ncap = need;
        }
        if (ncap < RX_CHUNK) {
            ncap = RX_CHUNK;
        }
        uint8_t *nb = realloc(r->b, ncap);
        if (nb == NULL) {
            errno = ENOMEM;
            return -1;
        }
        r->b = nb;
        r->cap = ncap;
    }
    size_t room = r->cap - r->len;
    ssize_t n;
    do {
        n = read(fd, r->b + r->len, room);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        r->len += (size_t)n;
    }
    /* A short read emptied the socket: with edge-triggered epoll, later bytes raise a new
     * event, so there is no need to read again until then. Not so for the peer's FIN: when it
     * came with the data (one event, EPOLLIN|EPOLLRDHUP) no later edge announces it, so callers
     * that saw EPOLLRDHUP/HUP/ERR ignore this and read on until read(2) says 0 or EAGAIN. */
    *drained = n > 0 && (size_t)n < room;
    return n;
}

/* Bytes needed from r->off to complete the SP message that starts there. */
static size_t rx_need(const struct rxbuf *r)
{
    size_t avail = r->len - r->off;
    if (avail < 8) {
        return 8;
    }
    uint64_t len = get_be64(r->b + r->off);
    return len > SIZE_MAX - 8 ? SIZE_MAX : (size_t)len + 8;
}

/* A write queue for what the kernel did not take. */
struct outq {
    uint8_t *b;
    size_t off, len, cap;
};

static bool outq_append(struct outq *q, const uint8_t *p, size_t n)
{
    if (q->off > 0 && q->off == q->len) {
        q->off = q->len = 0;
    }
    if (q->cap - q->len < n) {
        if (q->off > 0) {
            memmove(q->b, q->b + q->off, q->len - q->off);
            q->len -= q->off;
            q->off = 0;
        }
        if (q->cap - q->len < n) {
            size_t ncap = q->cap == 0 ? 4096 : q->cap;
            while (ncap - q->len < n) {
                ncap *= 2;
            }
            uint8_t *nb = realloc(q->b, ncap);
            if (nb == NULL) {
                return false;
            }
            q->b = nb;
            q->cap = ncap;
        }
    }
    memcpy(q->b + q->len, p, n);
    q->len += n;
    return true;
}

/* Sends what q holds. Returns false when the connection is broken. */
static bool outq_flush(int fd, struct outq *q)
{
    while (q->off < q->len) {
        ssize_t n = send(fd, q->b + q->off, q->len - q->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        q->off += (size_t)n;
    }
    q->off = q->len = 0;
    return true;
}

/* Writes p straight to the socket when nothing is queued, queueing the rest. Returns 1 when
 * bytes are queued (the caller arms EPOLLOUT), 0 when all went out, -1 when the connection is
 * broken or memory ran out (the bytes are dropped; the reading side notices the broken
 * connection). When memory runs out after part of the message went out, the connection is shut
 * down: the peer would otherwise read the next message's bytes as the rest of this one. */
static int write_or_queue(int fd, struct outq *q, const uint8_t *p, size_t n)
{
    size_t done = 0;
    if (q->off == q->len) {
        while (done < n) {
            ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    break;
                }
                return -1;
            }
            done += (size_t)w;
        }
        if (done == n) {
            return 0;
        }
    }
    if (outq_append(q, p + done, n - done)) {
        return 1;
    }
    if (done > 0) {
        (void)shutdown(fd, SHUT_RDWR); /* the I/O thread reads EOF and closes it */
    }
    return -1;
}

/* =============================================================================================
 * Server
 */

struct tn_conn {
    struct tn_conn *next, *prev;   /* every connection (I/O thread) */
    struct tn_conn *rnext, *rprev; /* the ready list: maybe more to read or to dispatch */
    bool in_ready;
    bool readable; /* no EAGAIN / short read since the last EPOLLIN */
    bool rdhup;    /* an event carried EPOLLRDHUP: read until EOF or EAGAIN, not a short read */
    bool broken;   /* EPOLLHUP/EPOLLERR or a failed write: nothing can be answered, close it */
    bool out_full; /* over OUT_CAP queued reply bytes: off the ready list until they drain */
    bool hs_done;  /* the peer's SP header was read and accepted */
    uint64_t nego_deadline;
    struct sinter_tn_server *s;
    int fd;
    atomic_uint refs; /* the I/O thread's (until closed) + one per request */
    struct rxbuf rx;
    pthread_mutex_t wmu; /* guards what follows; the fd is closed under it */
    bool wclosed;
    bool out_armed;
    struct outq out;
};

struct tn_req {
    struct sinter_transport_request pub; /* first: sinter_transport_reply() casts back */
    struct tn_req *next_free;
    struct tn_conn *conn;
    bool counted; /* handed to the handler (holds one of n_contexts) */
    uint32_t n_bt;
    uint8_t bt[4 * SP_MAX_HOPS];
    size_t cap;
    uint8_t frame[]; /* the received Sinter frame */
};

struct sinter_tn_server {
    struct sinter_transport_server_opts o;
    size_t rcvmax;
    int lfd, epfd, evfd;
    uint16_t port;
    pthread_t io;
    bool io_started;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* outstanding reached 0 */
    uint32_t outstanding;
    bool paused;   /* the I/O thread waits for a free slot */
    bool closing;  /* no new work: requests get an ESHUTDOWN error reply */
    bool stopping; /* every request replied: the I/O thread drains and exits */
    struct sinter_transport_server_stats st;
    struct tn_req *free_reqs;
    uint32_t n_free;

    /* I/O thread only. */
    struct tn_conn *conns;
    struct tn_conn *rhead, *rtail;
    bool lfd_off;
    uint64_t lfd_retry;
    uint32_t n_nego; /* connections still in the SP header exchange */
    uint64_t next_nego_check;
};

static void conn_unref(struct tn_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        free(c->out.b);
        pthread_mutex_destroy(&c->wmu);
        free(c);
    }
}

static void ready_add(struct sinter_tn_server *s, struct tn_conn *c)
{
    if (c->in_ready) {
        return;
    }
    c->in_ready = true;
    c->rnext = NULL;
    c->rprev = s->rtail;
    if (s->rtail != NULL) {
        s->rtail->rnext = c;
    } else {
        s->rhead = c;
    }
    s->rtail = c;
}

static void ready_del(struct sinter_tn_server *s, struct tn_conn *c)
{
    if (!c->in_ready) {
        return;
    }
    c->in_ready = false;
    if (c->rprev != NULL) {
        c->rprev->rnext = c->rnext;
    } else {
        s->rhead = c->rnext;
    }
    if (c->rnext != NULL) {
        c->rnext->rprev = c->rprev;
    } else {
        s->rtail = c->rprev;
    }
}

/* Sends bytes on c from any thread; dropped silently once c is closed. */
static void conn_send(struct tn_conn *c, const uint8_t *p, size_t n)
{
    pthread_mutex_lock(&c->wmu);
    if (!c->wclosed && write_or_queue(c->fd, &c->out, p, n) > 0 && !c->out_armed) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        (void)epoll_ctl(c->s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->out_armed = true;
    }
    pthread_mutex_unlock(&c->wmu);
}

/* I/O thread: closes c; requests still holding it keep the memory until they are replied. */
static void conn_close(struct sinter_tn_server *s, struct tn_conn *c)
{
    if (!c->hs_done) {
        s->n_nego--;
    }
    pthread_mutex_lock(&s->mu);
    s->st.connections--;
    pthread_mutex_unlock(&s->mu);
    ready_del(s, c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    pthread_mutex_lock(&c->wmu);
    c->wclosed = true;
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&c->wmu);
    free(c->rx.b);
    c->rx.b = NULL;
    conn_unref(c);
}

static void conn_bad(struct sinter_tn_server *s, struct tn_conn *c)
{
    pthread_mutex_lock(&s->mu);
    s->st.bad_connections++;
    pthread_mutex_unlock(&s->mu);
    conn_close(s, c);
}

static struct tn_req *req_get(struct sinter_tn_server *s, size_t len)
{
    struct tn_req *r = NULL;
    pthread_mutex_lock(&s->mu);
    if (len <= REQ_KEEP_CAP && s->free_reqs != NULL) {
        r = s->free_reqs;
        s->free_reqs = r->next_free;
        s->n_free--;
    }
    pthread_mutex_unlock(&s->mu);
    if (r == NULL) {
        size_t cap = len < REQ_KEEP_CAP ? REQ_KEEP_CAP : len;
        r = malloc(sizeof *r + cap);
        if (r == NULL) {
            return NULL;
        }
        r->cap = cap;
    }
    r->pub.native = true;
    r->counted = false;
    r->next_free = NULL;
    return r;
}

/* Releases r (and its hold on a context slot and on its connection). */
static void req_release(struct sinter_tn_server *s, struct tn_req *r)
{
    struct tn_conn *c = r->conn;
    pthread_mutex_lock(&s->mu);
    if (r->counted) {
        s->outstanding--;
        if (s->paused) {
            /* Kicked under mu (the eventfd is non-blocking): once mu is released with
             * outstanding at 0, sinter_tn_server_close() may free s and close evfd, so
             * nothing after the unlock may touch s. */
            s->paused = false;
            kick(s->evfd);
        }
        if (s->outstanding == 0 && s->closing) {
            pthread_cond_broadcast(&s->cv);
        }
    }
    if (r->cap <= REQ_KEEP_CAP && s->n_free < REQ_KEEP) {
        r->next_free = s->free_reqs;
        s->free_reqs = r;
        s->n_free++;
        r = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    free(r);
    conn_unref(c);
}

/* Encodes reply for r (SP length, backtrace, frame) and sends it: small replies from a stack
 * buffer (encode_frame only reallocates a buffer that is too small, and this one is not). */
static int req_answer(struct sinter_tn_server *s, struct tn_req *r,
                      const struct sinter_proto_msg *reply, uint64_t id)
{
    uint8_t stackbuf[1024];
    size_t pre = 8 + 4 * (size_t)r->n_bt;
    size_t size = sinter_proto_encoded_size(reply, &s->o.limits);
    bool small = size != 0 && pre + size <= sizeof stackbuf;
    uint8_t *buf = small ? stackbuf : NULL;
    size_t cap = small ? sizeof stackbuf : 0, len = 0;
    int rc = encode_frame(reply, id, &s->o.limits, pre, &buf, &cap, &len);
    if (rc == SINTER_OK) {
        put_be64(buf, len - 8);
        memcpy(buf + 8, r->bt, 4 * (size_t)r->n_bt);
        conn_send(r->conn, buf, len);
    }
    if (!small) {
        free(buf);
    }
    return rc;
}

static int error_reply(struct sinter_tn_server *s, struct tn_req *r, int rc, const char *text,
                       uint64_t id)
{
    struct sinter_proto_msg e;
    memset(&e, 0, sizeof e);
    e.code = SINTER_MSG_ERROR;
    e.rs.result = rc;
    e.rs.message = sinter_proto_str_c(text != NULL ? text : sinter_strerror(rc));
    if (e.rs.message.len > s->o.limits.max_message) {
        e.rs.message.len = s->o.limits.max_message;
    }
    return req_answer(s, r, &e, id);
}

int sinter_tn_reply(struct sinter_transport_request *req, const struct sinter_proto_msg *reply)
{
    struct tn_req *r = (struct tn_req *)req;
    struct sinter_tn_server *s = r->conn->s;
    uint64_t id = r->pub.msg.request_id;
    int rc = reply == NULL ? SINTER_EINVAL : req_answer(s, r, reply, id);
    int ret = SINTER_OK;
    if (rc == SINTER_ENOMEM) {
        ret = SINTER_ENOMEM;
    } else if (rc != SINTER_OK) {
        ret = SINTER_EINTERNAL;
        if (error_reply(s, r, SINTER_EINTERNAL, "server could not encode its reply", id) !=
            SINTER_OK) {
            ret = SINTER_ENOMEM;
        }
    }
    req_release(s, r);
    return ret;
}

/* One complete SP message from c (I/O thread). Returns false when c must be closed. */
static bool serve_msg(struct sinter_tn_server *s, struct tn_conn *c, const uint8_t *p, size_t len)
{
    /* The backtrace, as nng's REP reads it: words up to and including the first with the high
     * bit set. */
    uint32_t n_bt = 0;
    for (;;) {
        if (n_bt >= SP_MAX_HOPS) {
            return true; /* too many hops: dropped, the connection stays (nng does the same) */
        }
        if (len < 4) {
            return false; /* nng: "peer is speaking garbage", kick it */
        }
        bool end = (p[0] & 0x80u) != 0;
        n_bt++;
        p += 4;
        len -= 4;
        if (end) {
            break;
        }
    }
    struct tn_req *r = req_get(s, len);
    if (r == NULL) {
        return true; /* dropped: the client times out and retries */
    }
    memcpy(r->bt, p - 4 * (size_t)n_bt, 4 * (size_t)n_bt);
    r->n_bt = n_bt;
    memcpy(r->frame, p, len);
    atomic_fetch_add(&c->refs, 1);
    r->conn = c;

    const char *why = NULL;
    int rc = sinter_tp_decode_request(r->frame, len, &s->o.limits, &r->pub.msg, &why);
    pthread_mutex_lock(&s->mu);
    if (rc == SINTER_OK && s->closing) {
        rc = SINTER_ESHUTDOWN;
    }
    if (rc != SINTER_OK) {
        s->st.bad_frames += rc == SINTER_ESHUTDOWN ? 0 : 1;
    } else {
        s->st.requests++;
        s->outstanding++;
        r->counted = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != SINTER_OK) {
        /* Echo the request id when the header was readable, so the peer can correlate. */
        struct sinter_proto_header h;
        memset(&h, 0, sizeof h);
        (void)sinter_proto_decode_header(r->frame, len, &s->o.limits, &h);
        (void)error_reply(s, r, rc, why, h.request_id);
        req_release(s, r);
        return true;
    }
    s->o.handler(s->o.handler_arg, &r->pub);
    return true;
}

enum { SERVE_DONE, SERVE_MORE, SERVE_PAUSED, SERVE_FULL, SERVE_CLOSED };

/* Dispatches what c's buffer holds, then reads once and dispatches again. */
static int serve_conn(struct sinter_tn_server *s, struct tn_conn *c)
{
    if (c->broken) {
        conn_close(s, c); /* reset or failed write: no reply can reach the peer */
        return SERVE_CLOSED;
    }
    for (int pass = 0;; pass++) {
        for (;;) {
            struct rxbuf *r = &c->rx;
            size_t avail = r->len - r->off;
            if (!c->hs_done) {
                if (avail < 8) {
                    break;
                }
                if (!sp_hello_ok(r->b + r->off, SP_REQ0)) {
                    conn_bad(s, c);
                    return SERVE_CLOSED;
                }
                r->off += 8;
                c->hs_done = true;
                s->n_nego--;
                continue;
            }
            if (avail < 8) {
                break;
            }
            uint64_t mlen = get_be64(r->b + r->off);
            if (mlen > s->rcvmax) {
                conn_bad(s, c); /* as nng: an oversized message closes the pipe */
                return SERVE_CLOSED;
            }
            if (avail - 8 < mlen) {
                break;
            }
            /* A peer that does not read its replies gets no more requests served until it
             * does (see OUT_CAP); the EPOLLOUT path puts it back on the ready list. */
            pthread_mutex_lock(&c->wmu);
            bool over = c->out.len - c->out.off >= OUT_CAP;
            pthread_mutex_unlock(&c->wmu);
            if (over) {
                c->out_full = true;
                return SERVE_FULL;
            }
            pthread_mutex_lock(&s->mu);
            bool full = !s->closing && s->outstanding >= s->o.n_contexts;
            if (full) {
                s->paused = true;
            }
            pthread_mutex_unlock(&s->mu);
            if (full) {
                return SERVE_PAUSED;
            }
            const uint8_t *msg = r->b + r->off + 8;
            r->off += 8 + (size_t)mlen;
            if (!serve_msg(s, c, msg, (size_t)mlen)) {
                conn_bad(s, c);
                return SERVE_CLOSED;
            }
        }
        if (pass == 1) {
            return c->readable ? SERVE_MORE : SERVE_DONE;
        }
        if (!c->readable) {
            return SERVE_DONE;
        }
        bool drained = false;
        ssize_t n = rx_read(c->fd, &c->rx, rx_need(&c->rx), &drained);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            return SERVE_DONE;
        }
        if (n <= 0) {
            /* Peer closed (a partly received message is dropped, as nng does) or failed. */
            conn_close(s, c);
            return SERVE_CLOSED;
        }
        if (drained && !c->rdhup) {
            c->readable = false;
        }
    }
}

static void srv_accept(struct sinter_tn_server *s)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: a level-triggered listener would spin; look again in
                 * 100 ms. */
                (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
                s->lfd_off = true;
                s->lfd_retry = mono_ms() + 100;
                return;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            continue; /* ECONNABORTED and friends: that one connection is gone */
        }
        /* Over the limit: closed at once, before it costs a buffer or an SP exchange. Its client
         * sees the connection end and redials with backoff (or tries another node). */
        pthread_mutex_lock(&s->mu);
        bool full = s->st.connections >= s->o.max_connections;
        s->st.refused_connections += full ? 1u : 0u;
        pthread_mutex_unlock(&s->mu);
        if (full) {
            close(fd);
            continue;
        }
        struct tn_conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        set_nodelay(fd);
        c->s = s;
        c->fd = fd;
        c->nego_deadline = mono_ms() + NEGO_MS;
        atomic_init(&c->refs, 1);
        pthread_mutex_init(&c->wmu, NULL);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            pthread_mutex_destroy(&c->wmu);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns != NULL) {
            s->conns->prev = c;
        }
        s->conns = c;
        s->n_nego++;
        pthread_mutex_lock(&s->mu);
        s->st.connections++;
        pthread_mutex_unlock(&s->mu);
        uint8_t hello[8];
        sp_hello(hello, SP_REP0); /* nng sends its header first, then reads the peer's */
        conn_send(c, hello, sizeof hello);
    }
}

static bool srv_output_pending(struct sinter_tn_server *s)
{
    bool pending = false;
    for (struct tn_conn *c = s->conns; c != NULL && !pending; c = c->next) {
        pthread_mutex_lock(&c->wmu);
        pending = c->out.off < c->out.len;
        pthread_mutex_unlock(&c->wmu);
    }
    return pending;
}

static void *srv_main(void *arg)
{
    struct sinter_tn_server *s = arg;
    /* Named so perf and top tell the RPC thread from the raft loop (nng names its own). */
    (void)pthread_setname_np(pthread_self(), "sinter:rpc-srv");
    struct epoll_event evs[EVENTS];
    uint64_t stop_deadline = 0;
    bool listening = true;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool closing = s->closing, stopping = s->stopping;
        bool paused = s->paused && !closing; /* closing: the rest is refused, not held */
        pthread_mutex_unlock(&s->mu);
        if (closing && listening) {
            /* Stop accepting at once; connections already open keep being served. */
            if (!s->lfd_off) {
                (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
            }
            close(s->lfd);
            s->lfd = -1;
            listening = false;
        }
        int timeout = -1;
        if (stopping) {
            uint64_t now = mono_ms();
            if (stop_deadline == 0) {
                stop_deadline = now + STOP_FLUSH_MS;
            }
            if (!srv_output_pending(s) || now >= stop_deadline) {
                break;
            }
            timeout = 20;
        }
        if (s->rhead != NULL && !paused) {
            timeout = 0;
        }
        if (listening && s->lfd_off) {
            uint64_t now = mono_ms();
            if (now >= s->lfd_retry) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->lfd};
                (void)epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev);
                s->lfd_off = false;
            } else if (timeout < 0 || (uint64_t)timeout > s->lfd_retry - now) {
                timeout = (int)(s->lfd_retry - now);
            }
        }
        if (s->n_nego > 0) {
            uint64_t now = mono_ms();
            if (now >= s->next_nego_check) {
                for (struct tn_conn *c = s->conns, *next; c != NULL; c = next) {
                    next = c->next;
                    if (!c->hs_done && c->nego_deadline <= now) {
                        conn_close(s, c);
                    }
                }
                s->next_nego_check = now + 1000;
            }
            if (timeout < 0 || (uint64_t)timeout > s->next_nego_check - now) {
                timeout = (int)(s->next_nego_check - now);
            }
        }
        int n = epoll_wait(s->epfd, evs, EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s->evfd) {
                drain(s->evfd);
            } else if (p == &s->lfd) {
                if (listening) {
                    srv_accept(s);
                }
            } else {
                struct tn_conn *c = p;
                uint32_t e = evs[i].events;
                if (e & EPOLLOUT) {
                    pthread_mutex_lock(&c->wmu);
                    if (!c->wclosed) {
                        if (!outq_flush(c->fd, &c->out)) {
                            c->broken = true;
                        } else if (c->out.off == c->out.len && c->out_armed) {
                            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                                     .data.ptr = c};
                            (void)epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
                            c->out_armed = false;
                        }
                    }
                    bool drained_below = c->out.len - c->out.off < OUT_CAP;
                    pthread_mutex_unlock(&c->wmu);
                    if (c->out_full && (drained_below || c->broken)) {
                        c->out_full = false; /* the peer reads again: serve it again */
                        ready_add(s, c);
                    }
                }
                if (e & (EPOLLHUP | EPOLLERR)) {
                    c->broken = true;
                }
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    /* Sticky: the FIN may have come with the data this event announces, and
                     * then no later edge reports it (see rx_read). */
                    c->rdhup = true;
                }
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    c->readable = true;
                    if (!c->out_full || c->broken) {
                        ready_add(s, c);
                    }
                }
            }
        }
        /* One pass over the ready connections: each gets one read, so a busy peer cannot starve
         * the others. A connection stays listed while it may hold more. */
        struct tn_conn *c = s->rhead;
        struct tn_conn *last = s->rtail;
        while (c != NULL) {
            struct tn_conn *next = c->rnext;
            bool was_last = c == last;
            int st = serve_conn(s, c);
            if (st == SERVE_PAUSED) {
                break;
            }
            if (st == SERVE_DONE || st == SERVE_FULL) {
                ready_del(s, c);
            }
            if (was_last) {
                break;
            }
            c = next;
        }
    }
    while (s->conns != NULL) {
        conn_close(s, s->conns);
    }
    return NULL;
}

int sinter_tn_server_open(struct sinter_tn_server **out,
                          const struct sinter_transport_server_opts *opts)
{
    int af;
    char host[256], port[8];
    if (parse_url(opts->url, &af, host, sizeof host, port, sizeof port) != SINTER_OK) {
        return SINTER_ECONFIG;
    }
    struct sinter_tn_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SINTER_ENOMEM;
    }
    s->o = *opts;
    s->o.url = NULL;
    s->o.n_contexts = s->o.n_contexts == 0 ? SINTER_TRANSPORT_DEFAULT_CONTEXTS : s->o.n_contexts;
    s->o.max_connections =
        s->o.max_connections == 0 ? SINTER_TRANSPORT_DEFAULT_MAX_CONNS : s->o.max_connections;
    s->rcvmax = (size_t)s->o.limits.max_frame + SINTER_TRANSPORT_SP_OVERHEAD;
    s->lfd = s->epfd = s->evfd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = SINTER_ETRANSPORT;

    /* Bind like nng's TCP listener: the first address the resolver gives, SO_REUSEADDR (a
     * restarted node rebinds its port while old connections sit in TIME_WAIT). */
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = af;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res) != 0 || res == NULL) {
        goto fail;
    }
    s->lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd >= 0) {
        int one = 1;
        (void)setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s->lfd, res->ai_addr, res->ai_addrlen) != 0 || listen(s->lfd, SOMAXCONN) != 0) {
            close(s->lfd);
            s->lfd = -1;
        }
    }
    freeaddrinfo(res);
    if (s->lfd < 0) {
        rc = errno == ENOMEM || errno == ENOBUFS ? SINTER_ENOMEM : SINTER_ETRANSPORT;
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(s->lfd, (struct sockaddr *)&ss, &sl) == 0) {
        s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->epfd < 0 || s->evfd < 0) {
        rc = SINTER_ENOMEM;
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->lfd};
    struct epoll_event ek = {.events = EPOLLIN, .data.ptr = &s->evfd};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) != 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ek) != 0) {
        rc = SINTER_ENOMEM;
        goto fail;
    }
    if (pthread_create(&s->io, NULL, srv_main, s) != 0) {
        rc = SINTER_ENOMEM;
        goto fail;
    }
    s->io_started = true;
    *out = s;
    return SINTER_OK;

fail:
    if (s->lfd >= 0) {
        close(s->lfd);
    }
    if (s->epfd >= 0) {
        close(s->epfd);
    }
    if (s->evfd >= 0) {
        close(s->evfd);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}

uint16_t sinter_tn_server_port(const struct sinter_tn_server *s)
{
    return s->port;
}

void sinter_tn_server_stats(struct sinter_tn_server *s, struct sinter_transport_server_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    pthread_mutex_unlock(&s->mu);
}

void sinter_tn_server_close(struct sinter_tn_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_mutex_unlock(&s->mu);
    kick(s->evfd); /* stop accepting now */
    pthread_mutex_lock(&s->mu);
    while (s->outstanding > 0) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    s->paused = false; /* nothing is outstanding: no reply will need to wake the I/O thread */
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    kick(s->evfd);
    pthread_join(s->io, NULL);
    if (s->lfd >= 0) {
        close(s->lfd);
    }
    close(s->epfd);
    close(s->evfd);
    while (s->free_reqs != NULL) {
        struct tn_req *r = s->free_reqs;
        s->free_reqs = r->next_free;
        free(r);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* =============================================================================================
 * Client
 */

enum { K_FREE, K_ENCODING, K_WAIT, K_SENT };
enum { CS_DOWN, CS_CONNECTING, CS_HANDSHAKE, CS_UP };

struct tn_slot {
    int state;
    uint32_t next_free;
    uint32_t sp_id;
    uint64_t request_id;
    uint16_t want;
    uint64_t deadline;
    sinter_transport_done done;
    void *arg;
    uint8_t *buf; /* SP length + request id + frame; kept for reuse */
    size_t cap, len;
};

struct done_item {
    sinter_transport_done done;
    void *arg;
    int rc;
    struct sinter_transport_reply_msg *reply;
};

#define NO_SLOT UINT32_MAX

struct sinter_tn_client {
    struct sinter_proto_limits lim;
    size_t rcvmax;
    uint32_t n, idx_bits;
    int af;
    char host[256], port[8];
    int epfd, evfd;
    pthread_t io;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* a slot became free (only signalled while someone waits) */
    uint32_t slot_waiters;
    bool closing;
    int fd;
    int cstate;
    bool out_armed;
    struct outq out;
    struct tn_slot *slots;
    uint32_t free_head;
    uint32_t gen;
    uint64_t next_id;
    uint64_t wake_at; /* the I/O thread scans for expired calls at this time */

    /* I/O thread only. */
    uint64_t nego_deadline; /* of the connection being set up (CS_CONNECTING, CS_HANDSHAKE) */
    uint64_t next_dial;
    uint32_t backoff;
    uint64_t rng;             /* redial jitter */
    struct tn_lookup *lookup; /* a host name being resolved for the next dial */
    struct rxbuf rx;
    struct done_item *dq; /* completions collected under mu, run after it */
    size_t n_dq;
};

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Frees slot k (mu held) and queues its completion for the I/O thread to run. */
static void slot_finish(struct sinter_tn_client *c, struct tn_slot *k, int rc,
                        struct sinter_transport_reply_msg *reply)
{
    c->dq[c->n_dq++] = (struct done_item){k->done, k->arg, rc, reply};
    k->state = K_FREE;
    k->done = NULL;
    k->next_free = c->free_head;
    c->free_head = (uint32_t)(k - c->slots);
    if (c->slot_waiters > 0) {
        pthread_cond_broadcast(&c->cv);
    }
}

static void run_done(struct sinter_tn_client *c)
{
    for (size_t i = 0; i < c->n_dq; i++) {
        struct done_item *d = &c->dq[i];
        d->done(d->arg, d->rc, d->reply);
    }
    c->n_dq = 0;
}

/* mu held: writes k's request to the connection; arms EPOLLOUT for what is queued. */
static void slot_send(struct sinter_tn_client *c, struct tn_slot *k)
{
    int w = write_or_queue(c->fd, &c->out, k->buf, k->len);
    k->state = K_SENT;
    if (w > 0 && !c->out_armed) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = &c->fd};
        (void)epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->out_armed = true;
    }
}

/* mu held: drops the connection; calls already sent fail with SINTER_ETRANSPORT (their outcome is
 * unknown), calls still waiting for a connection keep waiting. */
static void cli_disconnect(struct sinter_tn_client *c)
{
    if (c->fd >= 0) {
        (void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->cstate = CS_DOWN;
    c->out.off = c->out.len = 0;
    c->out_armed = false;
    c->rx.off = c->rx.len = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->slots[i].state == K_SENT) {
            slot_finish(c, &c->slots[i], SINTER_ETRANSPORT, NULL);
        }
    }
    /* +-50 % jitter (as sinter_client's retries): after a TC restart its clients do not all
     * redial in lockstep. */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    uint64_t now = mono_ms();
    c->next_dial = now + c->backoff / 2 + c->rng % (c->backoff + 1u);
    c->backoff = c->backoff * 2 > DIAL_MAX_MS ? DIAL_MAX_MS : c->backoff * 2;
}

/* A host name resolved on a thread of its own: getaddrinfo() can block for the resolver's
 * timeout times its attempts, and on the I/O thread that would stop call timeouts, callbacks and
 * close() with it (nng resolves on its own resolver threads too). The lookup holds one reference
 * and the client one; a client closing meanwhile abandons it, under mu, so the lookup never
 * kicks an eventfd that is closed. */
struct tn_lookup {
    pthread_mutex_t mu;
    int refs;
    bool done, ok, abandoned;
    int evfd;
    int af;
    char host[256], port[8];
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

static void lookup_unref(struct tn_lookup *l)
{
    pthread_mutex_lock(&l->mu);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (last) {
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
}

static void *lookup_main(void *arg)
{
    struct tn_lookup *l = arg;
    (void)pthread_setname_np(pthread_self(), "sinter:rpc-dns");
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = l->af;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    bool ok = getaddrinfo(l->host, l->port, &hints, &res) == 0 && res != NULL &&
              res->ai_addrlen <= sizeof l->addr;
    pthread_mutex_lock(&l->mu);
    if (ok) {
        memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
        l->addrlen = res->ai_addrlen;
    }
    l->ok = ok;
    l->done = true;
    if (!l->abandoned) {
        kick(l->evfd);
    }
    pthread_mutex_unlock(&l->mu);
    if (res != NULL) {
        freeaddrinfo(res);
    }
    lookup_unref(l);
    return NULL;
}

/* A numeric address (the usual case: cluster members are configured by IP) needs no resolver. */
static bool numeric_addr(int af, const char *host, const char *port, struct sockaddr_storage *ss,
                         socklen_t *sl)
{
    uint16_t p = htons((uint16_t)strtoul(port, NULL, 10));
    memset(ss, 0, sizeof *ss);
    if (af != AF_INET6) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) == 1) {
            a->sin_family = AF_INET;
            a->sin_port = p;
            *sl = sizeof *a;
            return true;
        }
    }
    if (af != AF_INET) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) == 1) {
            a->sin6_family = AF_INET6;
            a->sin6_port = p;
            *sl = sizeof *a;
            return true;
        }
    }
    return false;
}

/* I/O thread: starts a lookup of c's host. False when no thread could be started. */
static bool lookup_start(struct sinter_tn_client *c)
{
    struct tn_lookup *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return false;
    }
    pthread_mutex_init(&l->mu, NULL);
    l->refs = 2;
    l->evfd = c->evfd;
    l->af = c->af;
    memcpy(l->host, c->host, sizeof l->host);
    memcpy(l->port, c->port, sizeof l->port);
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, lookup_main, l);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        pthread_mutex_destroy(&l->mu);
        free(l);
        return false;
    }
    c->lookup = l;
    return true;
}

/* I/O thread, mu not held: starts a non-blocking connect. A numeric host is used as is; a name
 * is resolved on a lookup thread (see struct tn_lookup), which kicks this thread when it is done,
 * and the dial goes on from there. Every dial resolves afresh (a restarted pod may come back
 * under another address). */
static void cli_dial(struct sinter_tn_client *c)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    bool have = false;
    if (c->lookup != NULL) {
        struct tn_lookup *l = c->lookup;
        pthread_mutex_lock(&l->mu);
        bool done = l->done;
        if (done && l->ok) {
            ss = l->addr;
            sl = l->addrlen;
            have = true;
        }
        pthread_mutex_unlock(&l->mu);
        if (!done) {
            return; /* still resolving */
        }
        c->lookup = NULL;
        lookup_unref(l);
    } else if (numeric_addr(c->af, c->host, c->port, &ss, &sl)) {
        have = true;
    } else if (lookup_start(c)) {
        return;
    }
    int fd = -1;
    if (have) {
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            set_nodelay(fd);
            /* A connect that completes at once (loopback) is reported writable by epoll like
             * one that completes later: one path for both. */
            if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
                close(fd);
                fd = -1;
            }
        }
    }
    pthread_mutex_lock(&c->mu);
    if (fd < 0) {
        cli_disconnect(c);
    } else {
        c->fd = fd;
        c->cstate = CS_CONNECTING;
        c->nego_deadline = mono_ms() + NEGO_MS;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = &c->fd};
        c->out_armed = true;
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            cli_disconnect(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* I/O thread, mu not held: one SP message from the server. Returns false on a protocol error
 * that closes the connection. */
static bool cli_msg(struct sinter_tn_client *c, const uint8_t *p, size_t len)
{
    if (len < 4) {
        return false; /* nng REQ: malformed, the pipe is closed */
    }
    uint32_t sp_id = get_be32(p);
    p += 4;
    len -= 4;
    uint32_t idx = sp_id & ((1u << c->idx_bits) - 1u);
    struct sinter_transport_reply_msg *r = malloc(sizeof *r + len);
    int rc = SINTER_ENOMEM;
    if (r != NULL) {
        r->m = NULL;
        uint8_t *body = (uint8_t *)(r + 1);
        memcpy(body, p, len);
        rc = sinter_proto_decode(body, len, &c->lim, &r->msg);
    }
    pthread_mutex_lock(&c->mu);
    struct tn_slot *k = idx < c->n ? &c->slots[idx] : NULL;
    if (k == NULL || k->state != K_SENT || k->sp_id != sp_id) {
        pthread_mutex_unlock(&c->mu); /* a late reply to a call that timed out: dropped */
        free(r);
        return true;
    }
    /* The SP id matched; checking our own id and the code as well catches a confused or hostile
     * server before the caller reads the wrong union member. */
    if (rc == SINTER_OK && (r->msg.request_id != k->request_id ||
                            (r->msg.code != k->want && r->msg.code != SINTER_MSG_ERROR))) {
        rc = SINTER_EBADVALUE;
    }
    if (rc != SINTER_OK) {
        free(r);
        r = NULL;
    }
    slot_finish(c, k, rc, r);
    pthread_mutex_unlock(&c->mu);
    run_done(c);
    return true;
}

/* I/O thread: reads what the connection has. rdhup: the event carried EPOLLRDHUP, EPOLLHUP or
 * EPOLLERR, so read until EOF or EAGAIN (a FIN that came with the data raises no later edge). */
static void cli_read(struct sinter_tn_client *c, bool rdhup)
{
    bool drained = false;
    for (;;) {
        struct rxbuf *r = &c->rx;
        /* Cut complete messages. */
        for (;;) {
            size_t avail = r->len - r->off;
            if (c->cstate == CS_HANDSHAKE) {
                if (avail < 8) {
                    break;
                }
                pthread_mutex_lock(&c->mu);
                if (!sp_hello_ok(r->b + r->off, SP_REP0)) {
                    cli_disconnect(c); /* not a REP0 server (or not SP at all) */
                    pthread_mutex_unlock(&c->mu);
                    run_done(c);
                    return;
                }
                r->off += 8;
                c->cstate = CS_UP;
                c->backoff = DIAL_MIN_MS;
                /* Calls that waited for the connection go out now, in slot order (not by age:
                 * each keeps its own deadline, and the server may answer in any order). */
                for (uint32_t i = 0; i < c->n; i++) {
                    if (c->slots[i].state == K_WAIT) {
                        slot_send(c, &c->slots[i]);
                    }
                }
                pthread_mutex_unlock(&c->mu);
                continue;
            }
            if (avail < 8) {
                break;
            }
            uint64_t mlen = get_be64(r->b + r->off);
            if (mlen > c->rcvmax) {
                pthread_mutex_lock(&c->mu);
                cli_disconnect(c);
                pthread_mutex_unlock(&c->mu);
                run_done(c);
                return;
            }
            if (avail - 8 < mlen) {
                break;
            }
            const uint8_t *msg = r->b + r->off + 8;
            r->off += 8 + (size_t)mlen;
            if (!cli_msg(c, msg, (size_t)mlen)) {
                pthread_mutex_lock(&c->mu);
                cli_disconnect(c);
                pthread_mutex_unlock(&c->mu);
                run_done(c);
                return;
            }
        }
        if (drained && !rdhup) {
            return; /* the last read emptied the socket: the next bytes raise a new edge */
        }
        ssize_t n = rx_read(c->fd, r, rx_need(r), &drained);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            pthread_mutex_lock(&c->mu);
            cli_disconnect(c);
            pthread_mutex_unlock(&c->mu);
            run_done(c);
            return;
        }
    }
}

static void *cli_main(void *arg)
{
    struct sinter_tn_client *c = arg;
    (void)pthread_setname_np(pthread_self(), "sinter:rpc-cli");
    struct epoll_event evs[8];
    for (;;) {
        pthread_mutex_lock(&c->mu);
        if (c->closing) {
            break;
        }
        uint64_t now = mono_ms();
        if (now >= c->wake_at) {
            uint64_t next = UINT64_MAX;
            for (uint32_t i = 0; i < c->n; i++) {
                struct tn_slot *k = &c->slots[i];
                if (k->state != K_WAIT && k->state != K_SENT) {
                    continue;
                }
                if (k->deadline <= now) {
                    /* A reply that arrives later finds the slot free or reused (another SP
                     * id) and is dropped. */
                    slot_finish(c, k, SINTER_ETIMEOUT, NULL);
                } else if (k->deadline < next) {
                    next = k->deadline;
                }
            }
            /* Nothing pending: look again within IDLE_TICK_MS anyway, so that a new call
             * only needs to kick this thread when its timeout is shorter than that. */
            c->wake_at = next != UINT64_MAX ? next : now + IDLE_TICK_MS;
        }
        if ((c->cstate == CS_CONNECTING || c->cstate == CS_HANDSHAKE) && now >= c->nego_deadline) {
            cli_disconnect(c); /* no SP header in time: redial (nothing was sent on it) */
        }
        bool dial = c->cstate == CS_DOWN && now >= c->next_dial;
        pthread_mutex_unlock(&c->mu);
        run_done(c);
        if (dial) {
            cli_dial(c);
            run_done(c);
        }
        pthread_mutex_lock(&c->mu);
        now = mono_ms();
        uint64_t until = c->wake_at;
        if (c->cstate == CS_DOWN && c->lookup == NULL && c->next_dial < until) {
            until = c->next_dial; /* (a lookup in progress kicks this thread when it is done) */
        }
        if ((c->cstate == CS_CONNECTING || c->cstate == CS_HANDSHAKE) && c->nego_deadline < until) {
            until = c->nego_deadline;
        }
        pthread_mutex_unlock(&c->mu);
        int timeout = until == UINT64_MAX ? -1 : until <= now ? 0 : (int)(until - now);
        int n = epoll_wait(c->epfd, evs, 8, timeout);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &c->evfd) {
                drain(c->evfd);
                continue;
            }
            uint32_t e = evs[i].events;
            pthread_mutex_lock(&c->mu);
            int cs = c->cstate;
            if (cs == CS_CONNECTING && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t el = sizeof err;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0 ||
                    (e & (EPOLLERR | EPOLLHUP))) {
                    cli_disconnect(c);
                } else {
                    uint8_t hello[8];
                    sp_hello(hello, SP_REQ0);
                    c->cstate = CS_HANDSHAKE;
                    if (write_or_queue(c->fd, &c->out, hello, sizeof hello) < 0) {
                        cli_disconnect(c);
                    } else if (c->out.off == c->out.len) {
                        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                                 .data.ptr = &c->fd};
                        (void)epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev);
                        c->out_armed = false;
                    }
                }
                cs = c->cstate;
            } else if (cs >= CS_HANDSHAKE && (e & EPOLLOUT)) {
                if (!outq_flush(c->fd, &c->out)) {
                    cli_disconnect(c);
                    cs = CS_DOWN;
                } else if (c->out.off == c->out.len && c->out_armed) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                             .data.ptr = &c->fd};
                    (void)epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    c->out_armed = false;
                }
            }
            pthread_mutex_unlock(&c->mu);
            run_done(c);
            if (cs >= CS_HANDSHAKE && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                cli_read(c, (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
            }
        }
    }
    /* Closing (mu held): every call still in flight completes with SINTER_ESHUTDOWN. */
    for (uint32_t i = 0; i < c->n; i++) {
        struct tn_slot *k = &c->slots[i];
        if (k->state == K_WAIT || k->state == K_SENT) {
            slot_finish(c, k, SINTER_ESHUTDOWN, NULL);
        }
    }
    if (c->fd >= 0) {
        (void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    pthread_mutex_unlock(&c->mu);
    run_done(c);
    return NULL;
}

int sinter_tn_client_open(struct sinter_tn_client **out,
                          const struct sinter_transport_client_opts *opts)
{
    struct sinter_tn_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return SINTER_ENOMEM;
    }
    if (parse_url(opts->url, &c->af, c->host, sizeof c->host, c->port, sizeof c->port) !=
            SINTER_OK ||
        c->host[0] == '\0') {
        free(c);
        return SINTER_ECONFIG; /* nng's dialer needs a host too */
    }
    c->lim = opts->limits;
    c->rcvmax = (size_t)c->lim.max_frame + SINTER_TRANSPORT_SP_OVERHEAD;
    c->n = opts->n_contexts == 0 ? SINTER_TRANSPORT_DEFAULT_CONTEXTS : opts->n_contexts;
    if (c->n > (1u << 20)) {
        c->n = 1u << 20;
    }
    while ((1u << c->idx_bits) < c->n) {
        c->idx_bits++;
    }
    c->fd = -1;
    c->epfd = c->evfd = -1;
    c->cstate = CS_DOWN;
    c->backoff = DIAL_MIN_MS;
    c->wake_at = UINT64_MAX;
    /* nng's REQ starts its ids at a random point; so do we (a restarted client does not reuse
     * the ids its previous incarnation had in flight). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->gen = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid();
    c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
    pthread_mutex_init(&c->mu, NULL);
    cond_init_mono(&c->cv);
    c->slots = calloc(c->n, sizeof *c->slots);
    c->dq = calloc(c->n, sizeof *c->dq);
    int rc = SINTER_ENOMEM;
    if (c->slots == NULL || c->dq == NULL) {
        goto fail;
    }
    c->free_head = NO_SLOT;
    for (uint32_t i = c->n; i-- > 0;) {
        c->slots[i].next_free = c->free_head;
        c->free_head = i;
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ek = {.events = EPOLLIN, .data.ptr = &c->evfd};
    if (c->epfd < 0 || c->evfd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ek) != 0 ||
        pthread_create(&c->io, NULL, cli_main, c) != 0) {
        goto fail;
    }
    *out = c;
    return SINTER_OK;

fail:
    if (c->epfd >= 0) {
        close(c->epfd);
    }
    if (c->evfd >= 0) {
        close(c->evfd);
    }
    free(c->slots);
    free(c->dq);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return rc;
}

int sinter_tn_call_async(struct sinter_tn_client *c, const struct sinter_proto_msg *req,
                         uint32_t timeout_ms, sinter_transport_done done, void *arg)
{
    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        return SINTER_ESHUTDOWN;
    }
    if (c->free_head == NO_SLOT) {
        pthread_mutex_unlock(&c->mu);
        return SINTER_EBUSY;
    }
    uint32_t idx = c->free_head;
    struct tn_slot *k = &c->slots[idx];
    c->free_head = k->next_free;
    k->state = K_ENCODING;
    uint64_t id = ++c->next_id;
    c->gen++;
    uint32_t sp_id = 0x80000000u | (((c->gen << c->idx_bits) | idx) & 0x7fffffffu);
    pthread_mutex_unlock(&c->mu);

    /* Encoding runs outside the lock: the I/O thread ignores a slot in K_ENCODING. */
    int rc = encode_frame(req, id, &c->lim, 12, &k->buf, &k->cap, &k->len);
    if (rc == SINTER_OK) {
        put_be64(k->buf, k->len - 8);
        put_be32(k->buf + 8, sp_id);
    }
    pthread_mutex_lock(&c->mu);
    if (rc == SINTER_OK && c->closing) {
        rc = SINTER_ESHUTDOWN;
    }
    if (rc != SINTER_OK) {
        k->state = K_FREE;
        k->next_free = c->free_head;
        c->free_head = idx;
        if (c->slot_waiters > 0) {
            pthread_cond_broadcast(&c->cv);
        }
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    k->sp_id = sp_id;
    k->request_id = id;
    k->want = sinter_proto_reply_code(req->code);
    k->deadline = mono_ms() + (timeout_ms == 0 ? 1u : timeout_ms);
    k->done = done;
    k->arg = arg;
    if (c->cstate == CS_UP) {
        slot_send(c, k);
    } else {
        k->state = K_WAIT; /* sent by the I/O thread once the connection is up */
    }
    bool wake = k->deadline < c->wake_at;
    if (wake) {
        c->wake_at = k->deadline;
    }
    pthread_mutex_unlock(&c->mu);
    if (wake) {
        kick(c->evfd); /* its sleep may end after this call's deadline */
    }
    return SINTER_OK;
}

bool sinter_tn_client_wait_slot(struct sinter_tn_client *c, uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    bool ok = true;
    pthread_mutex_lock(&c->mu);
    c->slot_waiters++;
    while (c->free_head == NO_SLOT && !c->closing) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) {
            ok = c->free_head != NO_SLOT;
            break;
        }
    }
    c->slot_waiters--;
    ok = ok && !c->closing;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void sinter_tn_client_close(struct sinter_tn_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    kick(c->evfd);
    pthread_join(c->io, NULL);
    if (c->lookup != NULL) {
        pthread_mutex_lock(&c->lookup->mu);
        c->lookup->abandoned = true; /* before evfd is closed: the lookup no longer kicks it */
        pthread_mutex_unlock(&c->lookup->mu);
        lookup_unref(c->lookup);
    }
    close(c->epfd);
    close(c->evfd);
    for (uint32_t i = 0; i < c->n; i++) {
        free(c->slots[i].buf);
    }
    free(c->slots);
    free(c->dq);
    free(c->out.b);
    free(c->rx.b);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
