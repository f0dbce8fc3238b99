/*
 * Integration tests of the transport's native inbound path (tcp:// listen URLs: our own sockets
 * and epoll instead of nng's listener), in both modes: the transport's own pump thread
 * (caller_pumps false) and the caller pumping (caller_pumps true, as the raft host's loop does).
 * Peers are raw TCP sockets written by the test, so splits, garbage and abrupt closes are exact;
 * one test also sends from a real transport (its native outbound side) to this one; nng stream
 * dialers send to it in test_raft_transport_outbound.
 * Every wait is bounded and polls for its condition; every transport is closed by the test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sinter/raft_transport.h"

#define WAIT_MS 15000
#define SELF    2u /* the transport under test */
#define PEER    1u /* the sender the raw sockets claim to be (a configured peer) */

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
 * The transport under test and what its callbacks saw. Callbacks only record (no cmocka
 * assertions off the test thread); the test thread asserts.
 */
struct rxnode {
    struct sinter_raft_transport *t;
    bool pumps; /* caller_pumps: the test thread pumps */
    size_t budget;
    uint16_t port;
    pthread_mutex_t mu;
    pthread_t test_thread;
    uint64_t frames, msgs, bad, last_commit;
    uint64_t on_test_thread, off_test_thread; /* on_recv calls by thread */
    uint64_t sink_on_test_thread;             /* sink calls on the pumping thread: must be 0 */
    int begins, writes, finishes, aborts;
    uint64_t snap_got;
    uint64_t frames_before_finish; /* on_recv calls that came before the sink's finish */
};

static struct rxnode g_n;

static void on_recv(void *arg, struct sinter_raft_transport_rx *rx)
{
    struct rxnode *n = arg;
    bool mine = pthread_equal(pthread_self(), n->test_thread) != 0;
    pthread_mutex_lock(&n->mu);
    n->frames++;
    if (mine) {
        n->on_test_thread++;
    } else {
        n->off_test_thread++;
    }
    if (n->finishes == 0) {
        n->frames_before_finish++;
    }
    for (size_t i = 0; i < rx->n; i++) {
        const struct sinter_raft_msg *m = &rx->msgs[i];
        n->msgs++;
        n->last_commit = m->commit;
        if (m->to != SELF || m->from != PEER || rx->from != PEER) {
            n->bad++;
        }
        for (uint32_t e = 0; e < m->n_entries; e++) {
            for (uint32_t b = 0; b < m->entries[e].len; b++) {
                if (m->entries[e].data[b] != (uint8_t)(m->entries[e].index + b)) {
                    n->bad++;
                    break;
                }
            }
        }
    }
    pthread_mutex_unlock(&n->mu);
    sinter_raft_transport_rx_release(rx);
}

static void sink_note(struct rxnode *n)
{
    if (pthread_equal(pthread_self(), n->test_thread) != 0) {
        n->sink_on_test_thread++;
    }
}

static int sink_begin(void *arg, sinter_raft_id from, uint32_t group,
                      const struct sinter_raft_msg *m, uint64_t total, void **stream)
{
    struct rxnode *n = arg;
    (void)from;
    (void)group;
    (void)m;
    (void)total;
    pthread_mutex_lock(&n->mu);
    sink_note(n);
    n->begins++;
    n->snap_got = 0;
    pthread_mutex_unlock(&n->mu);
    *stream = n;
    return SINTER_OK;
}

static int sink_write(void *arg, void *stream, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct rxnode *n = arg;
    (void)stream;
    int rc = SINTER_OK;
    pthread_mutex_lock(&n->mu);
    sink_note(n);
    n->writes++;
    if (offset != n->snap_got) {
        rc = SINTER_EINTERNAL;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (data[i] != (uint8_t)(offset + i)) {
            rc = SINTER_EINTERNAL;
        }
    }
    n->snap_got += len;
    pthread_mutex_unlock(&n->mu);
    return rc;
}

static int sink_finish(void *arg, void *stream, sinter_raft_id from, uint32_t group,
                       const struct sinter_raft_msg *m)
{
    struct rxnode *n = arg;
    (void)stream;
    (void)from;
    (void)group;
    (void)m;
    pthread_mutex_lock(&n->mu);
    sink_note(n);
    n->finishes++;
    pthread_mutex_unlock(&n->mu);
    return SINTER_OK;
}

static void sink_abort(void *arg, void *stream, int reason)
{
    struct rxnode *n = arg;
    (void)stream;
    (void)reason;
    pthread_mutex_lock(&n->mu);
    n->aborts++;
    pthread_mutex_unlock(&n->mu);
}

static uint64_t get(const uint64_t *field)
{
    pthread_mutex_lock(&g_n.mu);
    uint64_t v = *field;
    pthread_mutex_unlock(&g_n.mu);
    return v;
}

static int geti(const int *field)
{
    pthread_mutex_lock(&g_n.mu);
    int v = *field;
    pthread_mutex_unlock(&g_n.mu);
    return v;
}

static int open_node(bool pumps, uint32_t max_inbound)
{
    memset(&g_n, 0, sizeof g_n);
    pthread_mutex_init(&g_n.mu, NULL);
    g_n.test_thread = pthread_self();
    g_n.pumps = pumps;
    g_n.budget = 64;
    struct sinter_raft_transport_opts o;
    sinter_raft_transport_opts_default(&o);
    o.self = SELF;
    o.listen_url = "tcp://127.0.0.1:0";
    o.on_recv = on_recv;
    o.on_recv_arg = &g_n;
    o.sink = (struct sinter_raft_snapshot_sink){.begin = sink_begin,
                                                .write = sink_write,
                                                .finish = sink_finish,
                                                .abort = sink_abort,
                                                .arg = &g_n};
    o.caller_pumps = pumps;
    if (max_inbound != 0) {
        o.max_inbound = max_inbound;
    }
    /* The peer the raw sockets claim to be; nothing listens there (acks queue and drop). */
    struct sinter_raft_transport_peer p = {.id = PEER, .url = "tcp://127.0.0.1:1"};
    o.peers = &p;
    o.n_peers = 1;
    int rc = sinter_raft_transport_open(&g_n.t, &o);
    if (rc == SINTER_OK) {
        g_n.port = sinter_raft_transport_port(g_n.t);
    }
    return rc;
}

static int up_self(void **state)
{
    (void)state;
    return open_node(false, 0) == SINTER_OK && g_n.port != 0 ? 0 : -1;
}

static int up_pumps(void **state)
{
    (void)state;
    return open_node(true, 0) == SINTER_OK && g_n.port != 0 ? 0 : -1;
}

static int down(void **state)
{
    (void)state;
    sinter_raft_transport_close(g_n.t);
    g_n.t = NULL;
    pthread_mutex_destroy(&g_n.mu);
    return 0;
}

/* One round of the caller's event loop (caller-pumps mode): wait up to 5 ms for the fd, pump. */
static void drive(void)
{
    if (!g_n.pumps) {
        sleep_ms(2);
        return;
    }
    struct pollfd pfd = {.fd = sinter_raft_transport_poll_fd(g_n.t), .events = POLLIN};
    if (poll(&pfd, 1, 5) > 0) {
        (void)sinter_raft_transport_pump(g_n.t, g_n.budget);
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

/* Keeps the transport reading for ms (to show that nothing more arrives). */
static void settle(unsigned ms)
{
    uint64_t until = mono_ms() + ms;
    while (mono_ms() < until) {
        drive();
    }
}

static struct sinter_raft_transport_global_stats gstats(void)
{
    struct sinter_raft_transport_global_stats s;
    sinter_raft_transport_global_stats(g_n.t, &s);
    return s;
}

static struct sinter_raft_transport_stats pstats(void)
{
    struct sinter_raft_transport_stats s;
    assert_int_equal(sinter_raft_transport_stats(g_n.t, PEER, &s), SINTER_OK);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Raw peers
 */
static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* one segment per write */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(g_n.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* True once the transport has closed fd's connection (EOF or reset on our side). */
static bool raw_closed(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* A BATCH frame from PEER: one APPEND with commit `commit` and two entries of pattern bytes. */
static void make_batch(struct sinter_raft_wire_buf *b, uint64_t commit, uint32_t entry_len)
{
    static uint8_t data[2][4096];
    struct sinter_raft_entry e[2];
    for (uint32_t k = 0; k < 2; k++) {
        uint64_t index = commit * 10u + k + 1u;
        for (uint32_t i = 0; i < entry_len && i < sizeof data[k]; i++) {
            data[k][i] = (uint8_t)(index + i);
        }
        e[k] = (struct sinter_raft_entry){.term = 1,
                                          .index = index,
                                          .type = SINTER_RAFT_ENTRY_NORMAL,
                                          .len = entry_len,
                                          .data = data[k]};
    }
    struct sinter_raft_msg m = {.type = SINTER_RAFT_MSG_APPEND,
                                .from = PEER,
                                .to = SELF,
                                .term = 1,
                                .commit = commit,
                                .n_entries = 2,
                                .entries = e};
    uint32_t group = 0;
    assert_int_equal(sinter_raft_wire_encode_batch(b, PEER, &group, &m, 1), SINTER_OK);
}

/* ---------------------------------------------------------------------------------------------
 * Tests (each runs in both modes)
 */

/* A frame written one byte per write (a read per byte on the receiver) arrives exactly once, and
 * so do three frames in one write. Shows which thread ran on_recv in each mode. */
static void byte_by_byte_frame_received_once(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    make_batch(&b, 7, 100);
    int fd = raw_connect();
    for (size_t i = 0; i < b.len; i++) {
        raw_send(fd, b.data + i, 1);
        if (i % 16 == 0) {
            settle(1); /* let the receiver read (and return EAGAIN) in the middle of the frame */
        }
    }
    WAIT_FOR(get(&g_n.frames) == 1);
    settle(50);
    assert_int_equal(get(&g_n.frames), 1);
    assert_int_equal(get(&g_n.msgs), 1);
    assert_int_equal(get(&g_n.last_commit), 7);

    /* Three frames in one write: three deliveries, in order. */
    struct sinter_raft_wire_buf three;
    sinter_raft_wire_buf_init(&three);
    uint8_t *all = NULL;
    size_t all_len = 0;
    for (uint64_t k = 8; k <= 10; k++) {
        make_batch(&three, k, 64);
        all = realloc(all, all_len + three.len);
        assert_non_null(all);
        memcpy(all + all_len, three.data, three.len);
        all_len += three.len;
    }
    raw_send(fd, all, all_len);
    WAIT_FOR(get(&g_n.frames) == 4);
    assert_int_equal(get(&g_n.last_commit), 10);
    assert_int_equal(get(&g_n.bad), 0);
    assert_false(raw_closed(fd));
    struct sinter_raft_transport_stats s = pstats();
    assert_int_equal(s.rx_frames, 4);
    assert_int_equal(s.rx_msgs, 4);
    assert_int_equal(s.rx_bytes, b.len + all_len);
    assert_int_equal(gstats().accepted, 1);
    if (g_n.pumps) {
        assert_int_equal(get(&g_n.off_test_thread), 0); /* on_recv ran on the pumping thread */
    } else {
        assert_int_equal(get(&g_n.on_test_thread), 0); /* on the transport's own thread */
    }
    close(fd);
    free(all);
    sinter_raft_wire_buf_free(&three);
    sinter_raft_wire_buf_free(&b);
}

/* A pump with a budget of one frame dispatches one, and the fd stays readable while frames are
 * buffered: the caller's poll() never sleeps through input already read. */
static void pump_budget_leaves_fd_readable(void **state)
{
    (void)state;
    if (!g_n.pumps) {
        assert_int_equal(sinter_raft_transport_poll_fd(g_n.t), -1);
        assert_int_equal(sinter_raft_transport_pump(g_n.t, 8), 0);
        return;
    }
    int pfd_fd = sinter_raft_transport_poll_fd(g_n.t);
    assert_true(pfd_fd >= 0);
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    uint8_t *all = NULL;
    size_t all_len = 0;
    for (uint64_t k = 1; k <= 5; k++) {
        make_batch(&b, k, 32);
        all = realloc(all, all_len + b.len);
        assert_non_null(all);
        memcpy(all + all_len, b.data, b.len);
        all_len += b.len;
    }
    int fd = raw_connect();
    raw_send(fd, all, all_len);
    g_n.budget = 1;
    size_t total = 0;
    uint64_t until = mono_ms() + WAIT_MS;
    while (total < 5 && mono_ms() < until) {
        struct pollfd pfd = {.fd = pfd_fd, .events = POLLIN};
        if (poll(&pfd, 1, 5) > 0) {
            size_t got = sinter_raft_transport_pump(g_n.t, 1);
            assert_true(got <= 1);
            total += got;
            if (got == 1 && total < 5 && get(&g_n.frames) >= 1) {
                /* Frames remain (read in one go, or still in the socket): readable at once. */
                struct pollfd again = {.fd = pfd_fd, .events = POLLIN};
                assert_int_equal(poll(&again, 1, 1000), 1);
            }
        }
    }
    assert_int_equal(total, 5);
    assert_int_equal(get(&g_n.frames), 5);
    assert_int_equal(get(&g_n.last_commit), 5);
    g_n.budget = 64;
    close(fd);
    free(all);
    sinter_raft_wire_buf_free(&b);
}

/* The caller's own fd in the transport's epoll set (the raft host's wake eventfd): one
 * pump_wait() sleeps for frames and for that fd alike, reports the fd without reading it, never
 * sleeps while frames it already read are waiting, and still sleeps when nothing is there. */
static void pump_wait_watches_caller_fd(void **state)
{
    (void)state;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(efd >= 0);
    bool w = true;
    if (!g_n.pumps) {
        assert_int_equal(sinter_raft_transport_watch_fd(g_n.t, efd), SINTER_EINVAL);
        assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 10, &w), 0);
        assert_false(w);
        close(efd);
        return;
    }
    assert_int_equal(sinter_raft_transport_watch_fd(g_n.t, -1), SINTER_EINVAL);
    assert_int_equal(sinter_raft_transport_watch_fd(g_n.t, efd), SINTER_OK);
    assert_int_equal(sinter_raft_transport_watch_fd(g_n.t, efd), SINTER_EINVAL); /* once */
    assert_int_equal(sinter_raft_transport_pump_wait(NULL, 8, 10, &w), 0);
    assert_false(w);

    /* Nothing there: a zero timeout returns at once, a positive one sleeps. The fixture's dead
     * peer is redialled every few tens of ms and each redial ends a sleep early, so the check is
     * that 300 ms of 60 ms sleeps take a handful of calls, not the thousands a kick left set (a
     * busy loop) would. */
    assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 0, &w), 0);
    assert_false(w);
    uint64_t t0 = mono_ms();
    unsigned calls = 0;
    while (mono_ms() - t0 < 300) {
        assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 60, &w), 0);
        assert_false(w);
        calls++;
    }
    assert_true(calls <= 100);

    /* The watched fd wakes the sleep and is reported, not read: it stays readable until the
     * caller reads it, and is not reported after. */
    uint64_t one = 1;
    assert_int_equal(write(efd, &one, sizeof one), (ssize_t)sizeof one);
    t0 = mono_ms();
    assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 20000, &w), 0);
    assert_true(w);
    assert_true(mono_ms() - t0 < 10000);
    assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 0, &w), 0);
    assert_true(w);
    uint64_t cnt = 0;
    assert_int_equal(read(efd, &cnt, sizeof cnt), (ssize_t)sizeof cnt);
    assert_int_equal(cnt, 1);
    assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 0, &w), 0);
    assert_false(w);

    /* Frames wake the sleep and are dispatched on this thread. With a budget of one, the frames
     * already read (and re-kicked) keep the next calls from sleeping: three frames, no 20 s
     * timeout. */
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    uint8_t *all = NULL;
    size_t all_len = 0;
    for (uint64_t k = 1; k <= 3; k++) {
        make_batch(&b, k, 16);
        all = realloc(all, all_len + b.len);
        assert_non_null(all);
        memcpy(all + all_len, b.data, b.len);
        all_len += b.len;
    }
    int fd = raw_connect();
    uint64_t before = get(&g_n.frames);
    raw_send(fd, all, all_len);
    size_t total = 0;
    uint64_t t0w = mono_ms();
    /* A round may only accept the connection; its bytes are readable at once after that. */
    while (total < 3 && mono_ms() - t0w < WAIT_MS) {
        size_t got = sinter_raft_transport_pump_wait(g_n.t, 1, 20000, &w);
        assert_true(got <= 1);
        total += got;
    }
    t0 = t0w;
    assert_int_equal(total, 3);
    assert_true(mono_ms() - t0 < 10000); /* no 20 s sleep while frames were waiting */
    assert_int_equal(get(&g_n.frames) - before, 3);
    assert_int_equal(get(&g_n.last_commit), 3);
    close(fd);
    free(all);
    sinter_raft_wire_buf_free(&b);
    /* Closing a watched fd is allowed: epoll forgets it, even with a count left in it. */
    assert_int_equal(write(efd, &one, sizeof one), (ssize_t)sizeof one);
    close(efd);
    assert_int_equal(sinter_raft_transport_pump_wait(g_n.t, 8, 0, &w), 0);
    assert_false(w);
}

/* Garbage, a broken CRC and a header announcing an oversize body each close their own connection
 * (counted), while a good connection opened before keeps delivering. */
static void bad_frames_close_only_their_connection(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    make_batch(&b, 1, 16);
    int good = raw_connect();
    raw_send(good, b.data, b.len);
    WAIT_FOR(get(&g_n.frames) == 1);

    int junk = raw_connect();
    raw_send(junk, "GARBAGE GARBAGE GARBAGE GARBAGE", 31);
    int crc = raw_connect();
    uint8_t *bad_crc = malloc(b.len);
    assert_non_null(bad_crc);
    memcpy(bad_crc, b.data, b.len);
    bad_crc[b.len - 1] ^= 0x40;
    raw_send(crc, bad_crc, b.len);
    int big = raw_connect();
    uint8_t hdr[SINTER_RAFT_WIRE_HEADER_SIZE];
    memcpy(hdr, b.data, sizeof hdr);
    uint32_t huge = SINTER_RAFT_WIRE_MAX_BODY + 1u; /* body_len at offset 16, little-endian */
    hdr[16] = (uint8_t)huge;
    hdr[17] = (uint8_t)(huge >> 8);
    hdr[18] = (uint8_t)(huge >> 16);
    hdr[19] = (uint8_t)(huge >> 24);
    raw_send(big, hdr, sizeof hdr);

    WAIT_FOR(raw_closed(junk) && raw_closed(crc) && raw_closed(big));
    WAIT_FOR(gstats().rx_bad_frames == 3);
    make_batch(&b, 2, 16);
    raw_send(good, b.data, b.len);
    WAIT_FOR(get(&g_n.frames) == 2);
    assert_int_equal(get(&g_n.last_commit), 2);
    assert_false(raw_closed(good));
    assert_int_equal(gstats().accepted, 4);
    close(junk);
    close(crc);
    close(big);
    close(good);
    free(bad_crc);
    sinter_raft_wire_buf_free(&b);
}

/* A peer that closes (or resets) in the middle of a frame delivers nothing of it; a new
 * connection from the same peer is independent and delivers its frame once. */
static void peer_closing_mid_frame(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    make_batch(&b, 3, 3000); /* a body past the staging size: read straight into the frame */
    for (int i = 0; i < 4; i++) {
        int fd = raw_connect();
        raw_send(fd, b.data, i < 2 ? 10 : b.len - 1); /* inside the header, inside the body */
        settle(20);
        if (i % 2 == 1) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close with RST */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
    }
    int fd = raw_connect();
    raw_send(fd, b.data, b.len);
    WAIT_FOR(get(&g_n.frames) == 1);
    settle(100);
    assert_int_equal(get(&g_n.frames), 1);
    assert_int_equal(get(&g_n.bad), 0);
    assert_int_equal(gstats().accepted, 5);
    assert_int_equal(gstats().rx_bad_frames, 0);
    close(fd);
    sinter_raft_wire_buf_free(&b);
}

/* Many connections at once, each sending its frame in two halves interleaved with the others:
 * every frame arrives once. */
static void many_connections_interleaved(void **state)
{
    (void)state;
    enum { N = 40 };
    int fds[N];
    struct sinter_raft_wire_buf b[N];
    for (int i = 0; i < N; i++) {
        sinter_raft_wire_buf_init(&b[i]);
        make_batch(&b[i], (uint64_t)i + 100u, 200);
        fds[i] = raw_connect();
    }
    for (int half = 0; half < 2; half++) {
        for (int i = 0; i < N; i++) {
            size_t cut = b[i].len / 2;
            raw_send(fds[i], b[i].data + (half == 0 ? 0 : cut), half == 0 ? cut : b[i].len - cut);
        }
        settle(10);
    }
    WAIT_FOR(get(&g_n.frames) == N);
    settle(50);
    assert_int_equal(get(&g_n.frames), N);
    assert_int_equal(get(&g_n.bad), 0);
    assert_int_equal(gstats().accepted, N);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
        sinter_raft_wire_buf_free(&b[i]);
    }
}

/* Connections beyond max_inbound are refused and counted; the ones accepted still work. */
static void max_inbound_refuses_extra(void **state)
{
    (void)state;
    sinter_raft_transport_close(g_n.t);
    g_n.t = NULL;
    bool pumps = g_n.pumps;
    pthread_mutex_destroy(&g_n.mu);
    assert_int_equal(open_node(pumps, 3), SINTER_OK);
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = raw_connect();
    }
    WAIT_FOR(gstats().accepted == 3 && gstats().refused == 2);
    int closed = 0, kept = 0;
    for (int i = 0; i < 5; i++) {
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        if (poll(&pfd, 1, 200) > 0 && raw_closed(fds[i])) {
            closed++;
            close(fds[i]);
        } else {
            fds[kept++] = fds[i]; /* accepted: still open */
        }
    }
    assert_int_equal(closed, 2);
    assert_int_equal(kept, 3);
    /* A slot freed by a peer leaving is usable again (the transport notices the EOF: retry until
     * it has, since a pump may see the new connection before the old one's EOF). */
    close(fds[0]);
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    make_batch(&b, 5, 8);
    uint64_t until = mono_ms() + WAIT_MS;
    int again = -1;
    while (get(&g_n.frames) == 0 && mono_ms() < until) {
        if (again >= 0) {
            close(again);
        }
        again = raw_connect();
        raw_send(again, b.data, b.len);
        uint64_t step = mono_ms() + 500;
        while (get(&g_n.frames) == 0 && !raw_closed(again) && mono_ms() < step) {
            drive();
        }
    }
    assert_int_equal(get(&g_n.frames), 1);
    assert_true(gstats().accepted >= 4);
    for (int i = 1; i < kept; i++) {
        close(fds[i]);
    }
    close(again);
    sinter_raft_wire_buf_free(&b);
}

/* A snapshot stream over one connection, followed on the same connection by a BATCH: the sink
 * sees begin / write / write / finish in order, never on the pumping thread (it may write to
 * disk), and the BATCH is delivered after the chunks (per-connection order). */
static void snapshot_chunks_off_the_pumping_thread(void **state)
{
    (void)state;
    uint8_t data[3000];
    for (uint32_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)i;
    }
    struct sinter_raft_msg m = {
        .type = SINTER_RAFT_MSG_SNAPSHOT, .from = PEER, .to = SELF, .term = 2};
    m.snapshot.index = 40;
    m.snapshot.term = 2;
    struct sinter_raft_wire_buf f;
    sinter_raft_wire_buf_init(&f);
    uint8_t *all = NULL;
    size_t all_len = 0;
    for (int k = 0; k < 2; k++) {
        struct sinter_raft_wire_chunk c = {.group = 1,
                                           .total = sizeof data,
                                           .offset = k == 0 ? 0 : 1000,
                                           .len = k == 0 ? 1000 : 2000,
                                           .last = k == 1,
                                           .data = data + (k == 0 ? 0 : 1000),
                                           .msg = m};
        assert_int_equal(sinter_raft_wire_encode_chunk(&f, PEER, &c), SINTER_OK);
        all = realloc(all, all_len + f.len);
        assert_non_null(all);
        memcpy(all + all_len, f.data, f.len);
        all_len += f.len;
    }
    make_batch(&f, 9, 10);
    all = realloc(all, all_len + f.len);
    assert_non_null(all);
    memcpy(all + all_len, f.data, f.len);
    all_len += f.len;
    int fd = raw_connect();
    raw_send(fd, all, all_len); /* both chunks and the batch in one write */
    WAIT_FOR(get(&g_n.frames) == 1);
    assert_int_equal(geti(&g_n.begins), 1);
    assert_int_equal(geti(&g_n.writes), 2);
    assert_int_equal(geti(&g_n.finishes), 1);
    assert_int_equal(geti(&g_n.aborts), 0);
    assert_int_equal(get(&g_n.snap_got), sizeof data);
    assert_int_equal(get(&g_n.frames_before_finish), 0);
    assert_int_equal(get(&g_n.sink_on_test_thread), 0);
    assert_int_equal(pstats().rx_snapshot_chunks, 2);
    assert_int_equal(pstats().rx_frames, 3);
    close(fd);
    free(all);
    sinter_raft_wire_buf_free(&f);
}

/* close() with connections open, frames half read and a snapshot stream begun: everything is
 * freed (the sanitizer build checks), the sink's stream is aborted, the pump thread joined. */
static void close_with_connections_open(void **state)
{
    (void)state;
    struct sinter_raft_wire_buf b;
    sinter_raft_wire_buf_init(&b);
    make_batch(&b, 4, 2000);
    int fds[6];
    for (int i = 0; i < 6; i++) {
        fds[i] = raw_connect();
        if (i != 1) { /* fds[1] carries a snapshot chunk, below */
            raw_send(fds[i], b.data, i == 0 ? b.len : b.len / 2);
        }
    }
    uint8_t data[100] = {0};
    for (uint32_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)i;
    }
    struct sinter_raft_msg m = {
        .type = SINTER_RAFT_MSG_SNAPSHOT, .from = PEER, .to = SELF, .term = 2};
    m.snapshot.index = 5;
    m.snapshot.term = 2;
    struct sinter_raft_wire_chunk c = {
        .group = 0, .total = 1000, .offset = 0, .len = 100, .data = data, .msg = m};
    struct sinter_raft_wire_buf f;
    sinter_raft_wire_buf_init(&f);
    assert_int_equal(sinter_raft_wire_encode_chunk(&f, PEER, &c), SINTER_OK);
    raw_send(fds[1], f.data, f.len);
    WAIT_FOR(get(&g_n.frames) == 1 && geti(&g_n.begins) == 1 && gstats().accepted == 6);
    sinter_raft_transport_close(g_n.t);
    g_n.t = NULL;
    assert_int_equal(geti(&g_n.aborts), 1);
    for (int i = 0; i < 6; i++) {
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 2000), 1);
        assert_true(raw_closed(fds[i]));
        close(fds[i]);
    }
    sinter_raft_wire_buf_free(&f);
    sinter_raft_wire_buf_free(&b);
}

/* A real transport (native outbound, its own pump thread) sends to one read natively: batches and
 * coalesced heartbeats arrive, and the sender's counters agree. */
static void real_sender_to_native_listener(void **state)
{
    (void)state;
    struct sinter_raft_transport_opts o;
    sinter_raft_transport_opts_default(&o);
    o.self = PEER;
    o.listen_url = "tcp://127.0.0.1:0";
    o.on_recv = on_recv; /* never called: nothing is sent to it */
    o.on_recv_arg = &g_n;
    o.reconnect_min_ms = 10;
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%u", (unsigned)g_n.port);
    struct sinter_raft_transport_peer p = {.id = SELF, .url = url};
    o.peers = &p;
    o.n_peers = 1;
    struct sinter_raft_transport *a = NULL;
    assert_int_equal(sinter_raft_transport_open(&a, &o), SINTER_OK);
    for (uint64_t k = 1; k <= 50; k++) {
        uint8_t d[8];
        for (uint32_t i = 0; i < sizeof d; i++) {
            d[i] = (uint8_t)(k * 10u + 1u + i);
        }
        struct sinter_raft_entry e = {.term = 1,
                                      .index = k * 10u + 1u,
                                      .type = SINTER_RAFT_ENTRY_NORMAL,
                                      .len = 8,
                                      .data = d};
        struct sinter_raft_msg m = {.type = SINTER_RAFT_MSG_APPEND,
                                    .from = PEER,
                                    .to = SELF,
                                    .term = 1,
                                    .commit = k,
                                    .n_entries = 1,
                                    .entries = &e};
        int rc;
        uint64_t until = mono_ms() + WAIT_MS;
        while ((rc = sinter_raft_transport_send(a, 0, &m)) == SINTER_EBUSY && mono_ms() < until) {
            drive();
        }
        assert_int_equal(rc, SINTER_OK);
        assert_int_equal(sinter_raft_transport_flush(a, SELF), SINTER_OK);
        drive();
    }
    WAIT_FOR(get(&g_n.msgs) == 50);
    struct sinter_raft_wire_beat beat = {.group = 0, .term = 1, .commit = 99};
    assert_int_equal(sinter_raft_transport_send_heartbeats(a, SELF, false, &beat, 1), SINTER_OK);
    WAIT_FOR(get(&g_n.msgs) == 51);
    assert_int_equal(get(&g_n.last_commit), 99);
    assert_int_equal(get(&g_n.bad), 0);
    struct sinter_raft_transport_stats rx = pstats();
    struct sinter_raft_transport_stats tx;
    WAIT_FOR((sinter_raft_transport_stats(a, SELF, &tx), tx.tx_frames == rx.rx_frames));
    assert_int_equal(tx.tx_bytes, rx.rx_bytes);
    assert_int_equal(rx.rx_heartbeat_frames, 1);
    sinter_raft_transport_close(a);
}

/* URL forms of the native listener: nng's rules. */
static void listen_url_forms(void **state)
{
    (void)state;
    struct sinter_raft_transport_opts o;
    sinter_raft_transport_opts_default(&o);
    o.self = 5;
    o.on_recv = on_recv;
    o.on_recv_arg = &g_n;
    o.caller_pumps = g_n.pumps;
    struct sinter_raft_transport *t = NULL;
    const char *bad[] = {"tcp://127.0.0.1",     "tcp://127.0.0.1:", "tcp://127.0.0.1:70000",
                         "tcp://127.0.0.1:12x", "tcp://[::1:0",     "tcp://127.0.0.1:0/path"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.listen_url = bad[i];
        assert_int_equal(sinter_raft_transport_open(&t, &o), SINTER_ECONFIG);
        assert_null(t);
    }
    const char *good[] = {"tcp://127.0.0.1:0", "tcp://*:0", "tcp://:0", "tcp4://127.0.0.1:0/",
                          "tcp://localhost:0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        o.listen_url = good[i];
        assert_int_equal(sinter_raft_transport_open(&t, &o), SINTER_OK);
        assert_true(sinter_raft_transport_port(t) != 0);
        assert_true((sinter_raft_transport_poll_fd(t) >= 0) == g_n.pumps);
        sinter_raft_transport_close(t);
        t = NULL;
    }
    /* The port in use: SO_REUSEADDR does not let a second listener bind it. */
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%u", (unsigned)g_n.port);
    o.listen_url = url;
    assert_int_equal(sinter_raft_transport_open(&t, &o), SINTER_ETRANSPORT);
    assert_null(t);
}

#define BOTH(fn)                                                                                   \
    cmocka_unit_test_setup_teardown(fn, up_self, down),                                            \
        cmocka_unit_test_setup_teardown(fn, up_pumps, down)

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const struct CMUnitTest tests[] = {
        BOTH(byte_by_byte_frame_received_once),
        BOTH(pump_budget_leaves_fd_readable),
        BOTH(bad_frames_close_only_their_connection),
        BOTH(peer_closing_mid_frame),
        BOTH(many_connections_interleaved),
        BOTH(max_inbound_refuses_extra),
        BOTH(snapshot_chunks_off_the_pumping_thread),
        BOTH(close_with_connections_open),
        BOTH(real_sender_to_native_listener),
        BOTH(listen_url_forms),
        BOTH(pump_wait_watches_caller_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
