/*
 * Integration tests of the transport's native outbound path (tcp:// peers: our own non-blocking
 * socket, frames written by the sending thread, EPOLLOUT in the transport's epoll set only when the
 * kernel buffer is full), in both modes: the transport's own pump thread (caller_pumps false) and
 * the caller pumping (caller_pumps true, as the raft host's loop does; then nothing but the test's
 * pumping completes a connect or drains a full socket).
 *
 * The transport under test is the SENDER. Its receivers are written by the test: plain sockets
 * (which can stop reading, refuse, reset) and an nng stream listener (wire compatibility with a
 * node whose inbound side is nng); one test also sends from an nng stream dialer to the native
 * inbound side. Every wait is bounded and polls for its condition; every transport is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>

#include "sinter/raft_transport.h"
#include "testproc.h"

#define WAIT_MS 20000
#define SELF    1u /* the sender under test */
#define PEER_A  2u
#define PEER_B  3u

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * A receiver: cuts a byte stream into frames and checks them (any thread; under its mutex).
 */
struct rcv {
    pthread_mutex_t mu;
    uint8_t *buf;
    size_t len, cap;
    uint64_t frames, bytes, msgs, beat_frames, beats, bad;
    uint64_t last_commit;
};

static void rcv_init(struct rcv *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static void rcv_free(struct rcv *r)
{
    free(r->buf);
    pthread_mutex_destroy(&r->mu);
}

/* A new connection starts a new stream (a partial frame of the old one is gone). */
static void rcv_reset(struct rcv *r)
{
    pthread_mutex_lock(&r->mu);
    r->len = 0;
    pthread_mutex_unlock(&r->mu);
}

static void rcv_bytes(struct rcv *r, const uint8_t *p, size_t n)
{
    pthread_mutex_lock(&r->mu);
    if (r->len + n > r->cap) {
        size_t cap = r->cap != 0 ? r->cap : 4096;
        while (cap < r->len + n) {
            cap *= 2;
        }
        r->buf = realloc(r->buf, cap);
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    size_t off = 0;
    while (r->len - off >= SINTER_RAFT_WIRE_HEADER_SIZE) {
        struct sinter_raft_wire_header h;
        if (sinter_raft_wire_header_decode(r->buf + off, r->len - off, &h) != SINTER_OK) {
            r->bad++;
            off = r->len;
            break;
        }
        size_t flen = SINTER_RAFT_WIRE_HEADER_SIZE + h.body_len;
        if (r->len - off < flen) {
            break;
        }
        struct sinter_raft_wire_frame f;
        if (sinter_raft_wire_decode(r->buf + off, flen, &f) != SINTER_OK || f.sender != SELF) {
            r->bad++;
        } else {
            r->frames++;
            r->bytes += flen;
            if (f.type == SINTER_RAFT_WIRE_BATCH) {
                for (size_t i = 0; i < f.n_msgs; i++) {
                    const struct sinter_raft_msg *m = &f.msgs[i];
                    if (m->from != SELF) {
                        r->bad++;
                    }
                    for (uint32_t e = 0; e < m->n_entries; e++) {
                        for (uint32_t b = 0; b < m->entries[e].len; b++) {
                            if (m->entries[e].data[b] != (uint8_t)(m->entries[e].index + b)) {
                                r->bad++;
                                break;
                            }
                        }
                    }
                    r->last_commit = m->commit;
                }
                r->msgs += f.n_msgs;
            } else if (f.type == SINTER_RAFT_WIRE_HEARTBEAT) {
                r->beat_frames++;
                r->beats += f.n_beats;
            }
        }
        sinter_raft_wire_frame_release(&f);
        off += flen;
    }
    memmove(r->buf, r->buf + off, r->len - off);
    r->len -= off;
    pthread_mutex_unlock(&r->mu);
}

static uint64_t rget(struct rcv *r, const uint64_t *field)
{
    pthread_mutex_lock(&r->mu);
    uint64_t v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* A plain-socket receiver on its own thread: accepts (one connection at a time, a new one
 * replaces the old) and reads unless told to stall; can be told to drop its connection. */
struct sockrx {
    struct rcv r;
    int lfd, cfd;
    uint16_t port;
    atomic_bool stop, stall, drop, reset; /* reset: drop with an RST (SO_LINGER 0) */
    atomic_int accepted, eofs;            /* eofs: connections the sender ended */
    pthread_t thr;
};

static void *sockrx_main(void *arg)
{
    struct sockrx *s = arg;
    uint8_t buf[65536];
    while (!atomic_load(&s->stop)) {
        if (atomic_exchange(&s->drop, false) && s->cfd >= 0) {
            if (atomic_load(&s->reset)) {
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(s->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            close(s->cfd);
            s->cfd = -1;
        }
        struct pollfd pfd[2] = {{.fd = s->lfd, .events = POLLIN},
                                {.fd = atomic_load(&s->stall) ? -1 : s->cfd, .events = POLLIN}};
        if (poll(pfd, 2, 10) <= 0) {
            continue;
        }
        if (pfd[0].revents != 0) {
            int fd = accept(s->lfd, NULL, NULL);
            if (fd >= 0) {
                if (s->cfd >= 0) {
                    close(s->cfd);
                }
                s->cfd = fd;
                rcv_reset(&s->r);
                atomic_fetch_add(&s->accepted, 1);
            }
        }
        if (pfd[1].revents != 0 && s->cfd >= 0) {
            ssize_t n = recv(s->cfd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                rcv_bytes(&s->r, buf, (size_t)n);
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(s->cfd);
                s->cfd = -1;
                atomic_fetch_add(&s->eofs, 1);
            }
        }
    }
    return NULL;
}

/* Listens on port (0: any) with a small receive buffer, so a stalled reader fills up soon. */
static void sockrx_start(struct sockrx *s, uint16_t port, bool stall)
{
    memset(s, 0, sizeof *s);
    rcv_init(&s->r);
    s->cfd = -1;
    atomic_init(&s->stall, stall);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    int one = 1, small = 16384;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->thr, NULL, sockrx_main, s), 0);
}

static void sockrx_stop(struct sockrx *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thr, NULL);
    if (s->cfd >= 0) {
        close(s->cfd);
    }
    close(s->lfd);
    rcv_free(&s->r);
}

/* A port nothing listens on. From sinter_test_free_port, not a kernel-picked one: that lies in
 * the ephemeral range, where another process's connect() can take it at any time (one case later
 * binds its own receiver there); this one is outside it and reserved for this process by a lock
 * file against other tests running side by side. */
static uint16_t dead_port(void)
{
    int port = sinter_test_free_port();
    assert_true(port > 0);
    return (uint16_t)port;
}

/* ---------------------------------------------------------------------------------------------
 * The sender under test.
 */
static struct sinter_raft_transport *g_t;
static bool g_pumps;
static atomic_uint_fast64_t g_rx_frames; /* frames received by the sender (nng -> native test) */
static atomic_uint_fast64_t g_rx_msgs;
static pthread_t g_test_thread;
static atomic_uint_fast64_t g_rx_off_thread; /* on_recv off the test thread in pumps mode */

static void on_recv(void *arg, struct sinter_raft_transport_rx *rx)
{
    (void)arg;
    atomic_fetch_add(&g_rx_frames, 1);
    atomic_fetch_add(&g_rx_msgs, rx->n);
    if (g_pumps && pthread_equal(pthread_self(), g_test_thread) == 0) {
        atomic_fetch_add(&g_rx_off_thread, 1);
    }
    sinter_raft_transport_rx_release(rx);
}

static int open_sender(uint16_t port_a, uint16_t port_b, uint32_t max_frames)
{
    char ua[64], ub[64];
    snprintf(ua, sizeof ua, "tcp://127.0.0.1:%u", (unsigned)port_a);
    snprintf(ub, sizeof ub, "tcp://127.0.0.1:%u", (unsigned)port_b);
    struct sinter_raft_transport_peer peers[2] = {{.id = PEER_A, .url = ua},
                                                  {.id = PEER_B, .url = ub}};
    struct sinter_raft_transport_opts o;
    sinter_raft_transport_opts_default(&o);
    o.self = SELF;
    o.listen_url = "tcp://127.0.0.1:0";
    o.on_recv = on_recv;
    o.caller_pumps = g_pumps;
    o.reconnect_min_ms = 10;
    o.reconnect_max_ms = 100;
    if (max_frames != 0) {
        o.max_queue_frames = max_frames;
    }
    o.peers = peers;
    o.n_peers = port_b != 0 ? 2 : 1;
    return sinter_raft_transport_open(&g_t, &o);
}

static int up_self(void **state)
{
    (void)state;
    g_pumps = false;
    g_test_thread = pthread_self();
    atomic_store(&g_rx_frames, 0);
    atomic_store(&g_rx_msgs, 0);
    atomic_store(&g_rx_off_thread, 0);
    g_t = NULL;
    return 0;
}

static int up_pumps(void **state)
{
    (void)up_self(state);
    g_pumps = true;
    return 0;
}

static int down(void **state)
{
    (void)state;
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    return 0;
}

/* One round of the caller's event loop (caller-pumps mode): wait up to 5 ms for the fd, pump. */
static void drive(void)
{
    if (!g_pumps || g_t == NULL) {
        sleep_ms(2);
        return;
    }
    struct pollfd pfd = {.fd = sinter_raft_transport_poll_fd(g_t), .events = POLLIN};
    if (poll(&pfd, 1, 5) > 0) {
        (void)sinter_raft_transport_pump(g_t, 64);
    }
}

#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        uint64_t until_ = mono_ms() + WAIT_MS;                                                     \
        while (!(cond) && mono_ms() < until_) {                                                    \
            drive();                                                                               \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static struct sinter_raft_transport_stats pst(sinter_raft_id peer)
{
    struct sinter_raft_transport_stats s;
    assert_int_equal(sinter_raft_transport_stats(g_t, peer, &s), SINTER_OK);
    return s;
}

/* An APPEND to `to` with commit k and one entry of entry_len pattern bytes. */
static int send_append(sinter_raft_id to, uint64_t k, uint32_t entry_len)
{
    static uint8_t d[65536];
    uint64_t index = k * 10u + 1u;
    for (uint32_t i = 0; i < entry_len && i < sizeof d; i++) {
        d[i] = (uint8_t)(index + i);
    }
    struct sinter_raft_entry e = {
        .term = 1, .index = index, .type = SINTER_RAFT_ENTRY_NORMAL, .len = entry_len, .data = d};
    struct sinter_raft_msg m = {.type = SINTER_RAFT_MSG_APPEND,
                                .from = SELF,
                                .to = to,
                                .term = 1,
                                .commit = k,
                                .n_entries = 1,
                                .entries = &e};
    return sinter_raft_transport_send(g_t, 0, &m);
}

/* Sends and flushes, pumping while the peer's queue is full. */
static void send_flush(sinter_raft_id to, uint64_t k, uint32_t entry_len)
{
    int rc;
    uint64_t until = mono_ms() + WAIT_MS;
    while ((rc = send_append(to, k, entry_len)) == SINTER_EBUSY && mono_ms() < until) {
        drive();
    }
    assert_int_equal(rc, SINTER_OK);
    assert_int_equal(sinter_raft_transport_flush(g_t, to), SINTER_OK);
}

/* ---------------------------------------------------------------------------------------------
 * Tests (each runs in both modes)
 */

/* Frames go out, in order and intact, to a plain reader; the sender's counters agree with what
 * arrived, and large frames (more than one socket buffer) are finished by the pumping side. */
static void frames_reach_a_plain_reader(void **state)
{
    (void)state;
    struct sockrx a;
    sockrx_start(&a, 0, false);
    assert_int_equal(open_sender(a.port, 0, 0), SINTER_OK);
    WAIT_FOR(pst(PEER_A).connected);
    for (uint64_t k = 1; k <= 300; k++) {
        send_flush(PEER_A, k, k % 50 == 0 ? 60000u : 16u);
        drive();
    }
    struct sinter_raft_wire_beat beat = {.group = 0, .term = 1, .commit = 5};
    assert_int_equal(sinter_raft_transport_send_heartbeats(g_t, PEER_A, false, &beat, 1),
                     SINTER_OK);
    WAIT_FOR(rget(&a.r, &a.r.msgs) == 300 && rget(&a.r, &a.r.beats) == 1);
    assert_int_equal(rget(&a.r, &a.r.bad), 0);
    assert_int_equal(rget(&a.r, &a.r.last_commit), 300);
    struct sinter_raft_transport_stats s;
    WAIT_FOR((s = pst(PEER_A), s.queued_frames == 0));
    assert_int_equal(s.tx_frames, rget(&a.r, &a.r.frames));
    assert_int_equal(s.tx_bytes, rget(&a.r, &a.r.bytes));
    assert_int_equal(s.tx_msgs, 300);
    assert_int_equal(s.tx_heartbeat_frames, 1);
    assert_int_equal(s.connects, 1);
    assert_int_equal(s.disconnects, 0);
    assert_int_equal(s.tx_dropped_frames, 0);
    assert_int_equal(atomic_load(&a.accepted), 1);
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    sockrx_stop(&a);
}

/* Wire compatibility, native sender -> nng receiver: an nng stream listener reads exactly the
 * frames a native sender writes. */
struct nngrx {
    struct rcv r;
    nng_stream_listener *l;
    nng_stream *s;
    atomic_bool stop;
    pthread_t thr;
};

static void *nngrx_main(void *arg)
{
    struct nngrx *x = arg;
    nng_aio *aio;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
        return NULL;
    }
    nng_aio_set_timeout(aio, 50);
    while (!atomic_load(&x->stop) && x->s == NULL) {
        nng_stream_listener_accept(x->l, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) == 0) {
            x->s = nng_aio_get_output(aio, 0);
        }
    }
    uint8_t buf[65536];
    while (!atomic_load(&x->stop) && x->s != NULL) {
        nng_iov iov = {.iov_buf = buf, .iov_len = sizeof buf};
        nng_aio_set_iov(aio, 1, &iov);
        nng_stream_recv(x->s, aio);
        nng_aio_wait(aio);
        int rv = nng_aio_result(aio);
        if (rv == 0) {
            rcv_bytes(&x->r, buf, nng_aio_count(aio));
        } else if (rv != NNG_ETIMEDOUT) {
            break;
        }
    }
    nng_aio_free(aio);
    return NULL;
}

static void native_sender_to_nng_receiver(void **state)
{
    (void)state;
    struct nngrx x;
    memset(&x, 0, sizeof x);
    rcv_init(&x.r);
    assert_int_equal(nng_stream_listener_alloc(&x.l, "tcp://127.0.0.1:0"), 0);
    assert_int_equal(nng_stream_listener_listen(x.l), 0);
    int port = 0;
    assert_int_equal(nng_stream_listener_get_int(x.l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
    assert_int_equal(pthread_create(&x.thr, NULL, nngrx_main, &x), 0);
    assert_int_equal(open_sender((uint16_t)port, 0, 0), SINTER_OK);
    for (uint64_t k = 1; k <= 200; k++) {
        send_flush(PEER_A, k, k % 40 == 0 ? 50000u : 32u);
        drive();
    }
    struct sinter_raft_wire_beat beats[3] = {{.group = 0, .term = 1, .commit = 1},
                                             {.group = 1, .term = 1, .commit = 2},
                                             {.group = 2, .term = 1, .commit = 3}};
    assert_int_equal(sinter_raft_transport_send_heartbeats(g_t, PEER_A, false, beats, 3),
                     SINTER_OK);
    WAIT_FOR(rget(&x.r, &x.r.msgs) == 200 && rget(&x.r, &x.r.beats) == 3);
    assert_int_equal(rget(&x.r, &x.r.bad), 0);
    assert_int_equal(rget(&x.r, &x.r.beat_frames), 1);
    struct sinter_raft_transport_stats s;
    WAIT_FOR((s = pst(PEER_A), s.queued_frames == 0));
    assert_int_equal(s.tx_bytes, rget(&x.r, &x.r.bytes));
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    atomic_store(&x.stop, true);
    pthread_join(x.thr, NULL);
    if (x.s != NULL) {
        nng_stream_free(x.s);
    }
    nng_stream_listener_free(x.l);
    rcv_free(&x.r);
}

/* Wire compatibility, nng sender -> native receiver: frames written with nng_stream_send (as a
 * tls-less node of the previous release dials) are read by the native inbound side. */
static void nng_sender_to_native_receiver(void **state)
{
    (void)state;
    assert_int_equal(open_sender(dead_port(), 0, 0), SINTER_OK);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%u", (unsigned)sinter_raft_transport_port(g_t));
    nng_stream_dialer *d;
    nng_aio *aio;
    assert_int_equal(nng_stream_dialer_alloc(&d, url), 0);
    assert_int_equal(nng_aio_alloc(&aio, NULL, NULL), 0);
    nng_stream_dialer_dial(d, aio);
    nng_aio_wait(aio);
    assert_int_equal(nng_aio_result(aio), 0);
    nng_stream *s = nng_aio_get_output(aio, 0);
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    for (uint64_t k = 1; k <= 20; k++) {
        uint8_t data[100];
        uint64_t index = k * 10u + 1u;
        for (uint32_t i = 0; i < sizeof data; i++) {
            data[i] = (uint8_t)(index + i);
        }
        struct sinter_raft_entry e = {
            .term = 1, .index = index, .type = SINTER_RAFT_ENTRY_NORMAL, .len = 100, .data = data};
        struct sinter_raft_msg m = {.type = SINTER_RAFT_MSG_APPEND,
                                    .from = PEER_A,
                                    .to = SELF,
                                    .term = 1,
                                    .commit = k,
                                    .n_entries = 1,
                                    .entries = &e};
        uint32_t group = 0;
        assert_int_equal(sinter_raft_wire_encode_batch(&b, PEER_A, &group, &m, 1), SINTER_OK);
        size_t off = 0;
        while (off < b.len) {
            nng_iov iov = {.iov_buf = b.data + off, .iov_len = b.len - off};
            nng_aio_set_iov(aio, 1, &iov);
            nng_stream_send(s, aio);
            nng_aio_wait(aio);
            assert_int_equal(nng_aio_result(aio), 0);
            off += nng_aio_count(aio);
        }
    }
    WAIT_FOR(atomic_load(&g_rx_msgs) == 20);
    assert_int_equal(atomic_load(&g_rx_frames), 20);
    assert_int_equal(atomic_load(&g_rx_off_thread), 0);
    nng_stream_free(s);
    nng_aio_free(aio);
    nng_stream_dialer_free(d);
    sinter_raft_wire_buf_free(&b);
}

/* A peer that is down: dials fail (counted) and are retried with backoff, messages wait in the
 * bounded queue, heartbeat rounds replace each other. When it comes up the queue is delivered
 * with one fresh round of beats; when it drops the connection, the sender redials. */
static void peer_down_then_up(void **state)
{
    (void)state;
    uint16_t port = dead_port();
    assert_int_equal(open_sender(port, 0, 0), SINTER_OK);
    for (uint64_t k = 1; k <= 10; k++) {
        send_flush(PEER_A, k, 16);
    }
    for (uint64_t r = 0; r < 5; r++) {
        struct sinter_raft_wire_beat beat = {.group = 0, .term = 1, .commit = r};
        assert_int_equal(sinter_raft_transport_send_heartbeats(g_t, PEER_A, false, &beat, 1),
                         SINTER_OK);
    }
    WAIT_FOR(pst(PEER_A).dial_failures >= 3);
    struct sinter_raft_transport_stats s = pst(PEER_A);
    assert_false(s.connected);
    assert_int_equal(s.connects, 0);
    assert_int_equal(s.queued_frames, 11); /* ten batches, one round of beats */
    assert_int_equal(s.tx_stale_beat_frames, 4);

    struct sockrx a;
    sockrx_start(&a, port, false);
    WAIT_FOR(rget(&a.r, &a.r.msgs) == 10 && rget(&a.r, &a.r.beats) == 1);
    s = pst(PEER_A);
    assert_true(s.connected);
    assert_int_equal(s.connects, 1);
    assert_int_equal(rget(&a.r, &a.r.bad), 0);
    assert_int_equal(rget(&a.r, &a.r.last_commit), 10);

    /* The receiver drops the connection: EOF is noticed without sending, the sender redials. */
    atomic_store(&a.drop, true);
    WAIT_FOR(pst(PEER_A).disconnects == 1 && atomic_load(&a.accepted) == 2);
    WAIT_FOR(pst(PEER_A).connected);
    send_flush(PEER_A, 11, 16);
    WAIT_FOR(rget(&a.r, &a.r.msgs) == 11);
    assert_int_equal(pst(PEER_A).connects, 2);
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    sockrx_stop(&a);
}

/* A peer that stops reading: its socket fills, the rest waits in its queue (EPOLLOUT armed, no
 * busy loop), the queue stays within max_queue_frames and sends fail fast with EBUSY; a healthy
 * peer of the same transport gets every message meanwhile. When the stalled peer resets the
 * connection (closing with unread data), the sender drops it, counts it and redials. */
static void stalled_peer_does_not_slow_the_others(void **state)
{
    (void)state;
    struct sockrx a, b;
    sockrx_start(&a, 0, true);
    sockrx_start(&b, 0, false);
    assert_int_equal(open_sender(a.port, b.port, 32), SINTER_OK);
    WAIT_FOR(pst(PEER_A).connected && pst(PEER_B).connected);
    uint64_t busy = 0;
    for (uint64_t k = 1; k <= 400; k++) {
        if (send_append(PEER_A, k, 60000) == SINTER_EBUSY) {
            busy++;
        }
        assert_int_equal(sinter_raft_transport_flush(g_t, PEER_A), SINTER_OK);
        send_flush(PEER_B, k, 60000);
        drive();
        struct sinter_raft_transport_stats s = pst(PEER_A);
        assert_true(s.queued_frames <= 32);
    }
    WAIT_FOR(rget(&b.r, &b.r.msgs) == 400);
    assert_int_equal(rget(&b.r, &b.r.bad), 0);
    struct sinter_raft_transport_stats sa = pst(PEER_A), sb = pst(PEER_B);
    assert_true(busy > 0);
    assert_int_equal(sa.tx_busy, busy);
    assert_true(sa.tx_blocked >= 1);
    assert_true(sa.connected);
    assert_int_equal(sa.queued_frames, 32);
    assert_int_equal(sb.tx_busy, 0);
    assert_int_equal(sb.tx_msgs, 400);

    /* Reset (ECONNRESET/EPIPE on the sender): the half-written frame is dropped, whole frames
     * stay queued for the next connection. */
    atomic_store(&a.reset, true);
    atomic_store(&a.drop, true);
    WAIT_FOR(pst(PEER_A).disconnects == 1);
    sa = pst(PEER_A);
    assert_true(sa.tx_dropped_frames <= 1);
    assert_true(sa.queued_frames >= 31);
    /* It redials and the queue drains to the receiver, reading again. */
    atomic_store(&a.stall, false);
    WAIT_FOR((sa = pst(PEER_A), sa.connects == 2 && sa.queued_frames == 0));
    WAIT_FOR(rget(&a.r, &a.r.msgs) >= 31);
    assert_int_equal(rget(&a.r, &a.r.bad), 0);
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    sockrx_stop(&a);
    sockrx_stop(&b);
}

/* close() with frames queued behind a full socket (EPOLLOUT armed), frames queued for a peer that
 * is down and an open batch: everything is freed (the sanitizer build checks), the stalled
 * receiver sees the connection end. */
static void close_with_frames_queued(void **state)
{
    (void)state;
    struct sockrx a;
    sockrx_start(&a, 0, true);
    assert_int_equal(open_sender(a.port, dead_port(), 16), SINTER_OK);
    WAIT_FOR(pst(PEER_A).connected);
    for (uint64_t k = 1; pst(PEER_A).tx_busy == 0 && k < 10000; k++) {
        (void)send_append(PEER_A, k, 60000);
        (void)sinter_raft_transport_flush(g_t, PEER_A);
        drive();
    }
    assert_true(pst(PEER_A).tx_blocked >= 1);
    for (uint64_t k = 1; k <= 5; k++) {
        assert_int_equal(send_append(PEER_B, k, 100), SINTER_OK);
        assert_int_equal(sinter_raft_transport_flush(g_t, PEER_B), SINTER_OK);
    }
    assert_int_equal(send_append(PEER_B, 6, 100), SINTER_OK); /* left in the open batch */
    assert_int_equal(pst(PEER_B).queued_frames, 5);
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    atomic_store(&a.stall, false);
    uint64_t until = mono_ms() + WAIT_MS;
    while (atomic_load(&a.eofs) == 0 && mono_ms() < until) { /* read to EOF */
        sleep_ms(5);
    }
    assert_int_equal(atomic_load(&a.eofs), 1);
    sockrx_stop(&a);
}

/* A peer added later (membership change) by host name: the name is resolved when dialling
 * ("localhost" may give ::1 first, where nothing listens: the next dial tries the next address);
 * a malformed tcp:// URL is refused as nng refuses it. */
static void peer_added_by_name(void **state)
{
    (void)state;
    struct sockrx b;
    sockrx_start(&b, 0, false);
    assert_int_equal(open_sender(dead_port(), 0, 0), SINTER_OK);
    assert_int_equal(sinter_raft_transport_add_peer(g_t, PEER_B, "tcp://127.0.0.1"),
                     SINTER_ECONFIG);
    assert_int_equal(sinter_raft_transport_add_peer(g_t, PEER_B, "tcp://127.0.0.1:99999"),
                     SINTER_ECONFIG);
    char url[64];
    snprintf(url, sizeof url, "tcp://localhost:%u", (unsigned)b.port);
    assert_int_equal(sinter_raft_transport_add_peer(g_t, PEER_B, url), SINTER_OK);
    for (uint64_t k = 1; k <= 5; k++) {
        send_flush(PEER_B, k, 100);
    }
    WAIT_FOR(rget(&b.r, &b.r.msgs) == 5);
    assert_int_equal(rget(&b.r, &b.r.bad), 0);
    assert_int_equal(pst(PEER_B).connects, 1);
    sinter_raft_transport_close(g_t);
    g_t = NULL;
    sockrx_stop(&b);
}

#define BOTH(fn)                                                                                   \
    cmocka_unit_test_setup_teardown(fn, up_self, down),                                            \
        cmocka_unit_test_setup_teardown(fn, up_pumps, down)

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const struct CMUnitTest tests[] = {
        BOTH(frames_reach_a_plain_reader),
        BOTH(native_sender_to_nng_receiver),
        BOTH(nng_sender_to_native_receiver),
        BOTH(peer_down_then_up),
        BOTH(stalled_peer_does_not_slow_the_others),
        BOTH(close_with_frames_queued),
        BOTH(peer_added_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
