/*
 * Transport smoke tests: a Sinter REQ/REP server and client over real TCP on 127.0.0.1 (port
 * picked by the kernel). Many requests in flight through contexts with replies from worker
 * threads; malformed frames answered with error replies; and a flood of rude connections (closed
 * at once, half an SP handshake, garbage, oversized SP lengths) after which a well-behaved client
 * must still be served (guards against nanomsg/nng#1518, see sinter/transport.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "sinter/crc32c.h"
#include "sinter/proto.h"
#include "sinter/transport.h"

/* ---------------------------------------------------------------------------------------------
 * A test server: answers Heartbeat and GlobalBegin (xid index = seq), either inline on nng's
 * callback thread or from worker threads through a queue (the way the TC will do it).
 */

#define QCAP    1024
#define WORKERS 3

struct fixture {
    struct sinter_transport_server *srv;
    char url[64];
    bool use_workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sinter_transport_request *q[QCAP];
    size_t qhead, qlen;
    bool stop;
    pthread_t workers[WORKERS];
    unsigned in_flight, peak_in_flight;
    unsigned handled;
};

static void answer(struct sinter_transport_request *req)
{
    const struct sinter_proto_msg *m = sinter_transport_request_msg(req);
    struct sinter_proto_msg r;
    memset(&r, 0, sizeof r);
    r.code = sinter_proto_reply_code(m->code);
    switch (m->code) {
    case SINTER_MSG_GLOBAL_BEGIN:
        r.u.global_begin_result.xid.group = (uint32_t)(m->rq.client_id & 0xffff);
        r.u.global_begin_result.xid.index = m->rq.seq;
        r.rs.message = m->u.global_begin.transaction_name; /* echo, points into the request */
        break;
    case SINTER_MSG_HEARTBEAT:
        break;
    default:
        assert_int_equal(sinter_transport_reply_error(req, SINTER_ENOTLEADER, "try node 2"),
                         SINTER_OK);
        return;
    }
    assert_int_equal(sinter_transport_reply(req, &r), SINTER_OK);
}

static void *worker(void *arg)
{
    struct fixture *f = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->qlen == 0 && !f->stop) {
            pthread_cond_wait(&f->cv, &f->mu);
        }
        if (f->qlen == 0 && f->stop) {
            break;
        }
        struct sinter_transport_request *req = f->q[f->qhead];
        f->qhead = (f->qhead + 1) % QCAP;
        f->qlen--;
        pthread_mutex_unlock(&f->mu);
        /* A little work, so that requests pile up and many are in flight at once. */
        struct timespec ts = {0, (long)(rand_r(&seed) % 2000) * 1000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&f->mu);
        f->in_flight--;
        f->handled++;
        pthread_mutex_unlock(&f->mu);
        answer(req);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void handler(void *arg, struct sinter_transport_request *req)
{
    struct fixture *f = arg;
    if (!f->use_workers) {
        pthread_mutex_lock(&f->mu);
        f->handled++;
        pthread_mutex_unlock(&f->mu);
        answer(req);
        return;
    }
    pthread_mutex_lock(&f->mu);
    assert_true(f->qlen < QCAP);
    f->q[(f->qhead + f->qlen) % QCAP] = req;
    f->qlen++;
    f->in_flight++;
    if (f->in_flight > f->peak_in_flight) {
        f->peak_in_flight = f->in_flight;
    }
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static struct fixture *fixture_open(bool use_workers, uint32_t contexts)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->use_workers = use_workers;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (use_workers) {
        for (int i = 0; i < WORKERS; i++) {
            assert_int_equal(pthread_create(&f->workers[i], NULL, worker, f), 0);
        }
    }
    struct sinter_transport_server_opts o;
    sinter_transport_server_opts_default(&o);
    o.url = "tcp://127.0.0.1:0";
    o.n_contexts = contexts;
    o.handler = handler;
    o.handler_arg = f;
    o.watchdog_disable = getenv("SINTER_TEST_NO_WATCHDOG") != NULL;
    assert_int_equal(sinter_transport_server_open(&f->srv, &o), SINTER_OK);
    uint16_t port = sinter_transport_server_port(f->srv);
    assert_true(port != 0);
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%u", (unsigned)port);
    return f;
}

static void fixture_close(struct fixture *f)
{
    sinter_transport_server_close(f->srv); /* waits for the workers' outstanding replies */
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (f->use_workers) {
        for (int i = 0; i < WORKERS; i++) {
            pthread_join(f->workers[i], NULL);
        }
    }
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static struct sinter_transport_client *client_open(const char *url, uint32_t contexts)
{
    struct sinter_transport_client_opts o;
    struct sinter_transport_client *c;
    sinter_transport_client_opts_default(&o);
    o.url = url;
    o.n_contexts = contexts;
    assert_int_equal(sinter_transport_client_open(&c, &o), SINTER_OK);
    return c;
}

static void begin_req(struct sinter_proto_msg *m, uint64_t client, uint64_t seq)
{
    memset(m, 0, sizeof *m);
    m->code = SINTER_MSG_GLOBAL_BEGIN;
    m->rq.client_id = client;
    m->rq.seq = seq;
    m->u.global_begin.application_id = sinter_proto_str_c("app");
    m->u.global_begin.transaction_name = sinter_proto_str_c("tx-name");
    m->u.global_begin.timeout_ms = 1000;
}

/* One synchronous GlobalBegin that must be answered correctly within timeout_ms. */
static void expect_served(const char *url, uint32_t timeout_ms)
{
    struct sinter_transport_client *c = client_open(url, 4);
    struct sinter_proto_msg m;
    struct sinter_transport_reply_msg *r = NULL;
    begin_req(&m, 7, 4242);
    int rc = sinter_transport_call(c, &m, timeout_ms, &r);
    assert_int_equal(rc, SINTER_OK);
    const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
    assert_int_equal(rm->code, SINTER_MSG_GLOBAL_BEGIN_RESULT);
    assert_int_equal(rm->rs.result, SINTER_OK);
    assert_true(rm->u.global_begin_result.xid.index == 4242);
    assert_int_equal(rm->u.global_begin_result.xid.group, 7);
    assert_true(sinter_proto_str_eq(rm->rs.message, "tx-name"));
    sinter_transport_reply_free(r);
    sinter_transport_client_close(c);
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 */

static void sync_call_roundtrip(void **state)
{
    (void)state;
    struct fixture *f = fixture_open(false, 8);
    expect_served(f->url, 10000);

    /* Heartbeat, and a request the handler answers with a "not leader" error reply. */
    struct sinter_transport_client *c = client_open(f->url, 2);
    struct sinter_proto_msg m;
    struct sinter_transport_reply_msg *r;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_HEARTBEAT;
    assert_int_equal(sinter_transport_call(c, &m, 10000, &r), SINTER_OK);
    assert_int_equal(sinter_transport_reply_get(r)->code, SINTER_MSG_HEARTBEAT_RESULT);
    sinter_transport_reply_free(r);
    m.code = SINTER_MSG_CLUSTER_META;
    assert_int_equal(sinter_transport_call(c, &m, 10000, &r), SINTER_OK);
    assert_int_equal(sinter_transport_reply_get(r)->code, SINTER_MSG_ERROR);
    assert_int_equal(sinter_transport_reply_get(r)->rs.result, SINTER_ENOTLEADER);
    assert_true(sinter_proto_str_eq(sinter_transport_reply_get(r)->rs.message, "try node 2"));
    sinter_transport_reply_free(r);

    /* A reply code is not a request: refused before sending. */
    m.code = SINTER_MSG_HEARTBEAT_RESULT;
    assert_int_equal(sinter_transport_call(c, &m, 1000, &r), SINTER_EINVAL);
    sinter_transport_client_close(c);
    fixture_close(f);
}

/* A client towards a port nobody listens on times out cleanly. */
static void call_times_out_without_server(void **state)
{
    (void)state;
    /* Bind and close a socket to learn a port that is free now. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    struct sinter_transport_client *c = client_open(url, 2);
    struct sinter_proto_msg m;
    struct sinter_transport_reply_msg *r;
    begin_req(&m, 1, 1);
    assert_int_equal(sinter_transport_call(c, &m, 300, &r), SINTER_ETIMEOUT);
    assert_null(r);
    sinter_transport_client_close(c);
}

/* Hundreds of requests in flight through contexts, answered from worker threads, each reply
 * matching its request. */
struct flight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ok, bad, done;
    unsigned char seen[1000];
};

static void flight_done(void *arg, int rc, struct sinter_transport_reply_msg *r)
{
    struct flight *fl = arg;
    bool good = false;
    uint64_t seq = 0;
    if (rc == SINTER_OK) {
        const struct sinter_proto_msg *m = sinter_transport_reply_get(r);
        seq = m->u.global_begin_result.xid.index;
        good = m->code == SINTER_MSG_GLOBAL_BEGIN_RESULT && m->rs.result == SINTER_OK && seq >= 1 &&
               seq <= 1000 && m->u.global_begin_result.xid.group == 9;
        sinter_transport_reply_free(r);
    }
    pthread_mutex_lock(&fl->mu);
    if (good && fl->seen[seq - 1] == 0) {
        fl->seen[seq - 1] = 1;
        fl->ok++;
    } else {
        fl->bad++;
    }
    fl->done++;
    pthread_cond_broadcast(&fl->cv);
    pthread_mutex_unlock(&fl->mu);
}

static void many_requests_in_flight(void **state)
{
    (void)state;
    struct fixture *f = fixture_open(true, 256);
    struct sinter_transport_client *c = client_open(f->url, 300);
    struct flight fl;
    memset(&fl, 0, sizeof fl);
    pthread_mutex_init(&fl.mu, NULL);
    pthread_cond_init(&fl.cv, NULL);
    struct sinter_proto_msg m;
    for (uint64_t seq = 1; seq <= 1000; seq++) {
        begin_req(&m, 9, seq);
        int rc;
        /* Bounded retry while all 300 client contexts are busy. */
        for (int tries = 0;
             (rc = sinter_transport_call_async(c, &m, 30000, flight_done, &fl)) == SINTER_EBUSY &&
             tries < 30000;
             tries++) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(rc, SINTER_OK);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&fl.mu);
    while (fl.done < 1000) {
        if (pthread_cond_timedwait(&fl.cv, &fl.mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&fl.mu);
    assert_int_equal(fl.done, 1000);
    assert_int_equal(fl.ok, 1000);
    assert_int_equal(fl.bad, 0);
    /* Many requests were held by the workers at the same time: contexts really overlap. */
    assert_true(f->peak_in_flight >= 50);
    printf("many_requests_in_flight: peak %u requests held by workers at once\n",
           f->peak_in_flight);
    sinter_transport_client_close(c);
    pthread_cond_destroy(&fl.cv);
    pthread_mutex_destroy(&fl.mu);
    fixture_close(f);
}

/* Raw nng REQ peer sending malformed Sinter frames: each gets an Error reply naming the problem,
 * and the server keeps serving. */
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void reseal(uint8_t *fr, size_t len)
{
    put32(fr + 16, (uint32_t)(len - SINTER_PROTO_HEADER_SIZE));
    uint32_t crc = sinter_crc32c(0, fr, 20);
    crc = sinter_crc32c(crc, fr + SINTER_PROTO_HEADER_SIZE, len - SINTER_PROTO_HEADER_SIZE);
    put32(fr + 20, crc);
}

static void expect_error_reply(nng_socket s, const uint8_t *buf, size_t len, int want)
{
    assert_int_equal(nng_send(s, (void *)buf, len, 0), 0);
    char *rb = NULL;
    size_t rl = 0;
    assert_int_equal(nng_recv(s, &rb, &rl, NNG_FLAG_ALLOC), 0);
    struct sinter_proto_msg m;
    assert_int_equal(sinter_proto_decode((uint8_t *)rb, rl, NULL, &m), SINTER_OK);
    assert_int_equal(m.code, SINTER_MSG_ERROR);
    assert_int_equal(m.rs.result, want);
    if (len >= SINTER_PROTO_HEADER_SIZE && want != SINTER_EBADMAGIC && want != SINTER_EBADVERSION) {
        assert_true(m.request_id == 0x1122334455667788ull); /* echoed from the header */
    }
    nng_free(rb, rl);
}

static void malformed_frames_get_error_replies(void **state)
{
    (void)state;
    struct fixture *f = fixture_open(false, 8);
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000), 0);
    assert_int_equal(nng_dial(s, f->url, NULL, 0), 0);

    struct sinter_proto_msg m;
    uint8_t good[256];
    uint8_t bad[256];
    size_t len;
    begin_req(&m, 1, 1);
    m.request_id = 0x1122334455667788ull;
    assert_int_equal(sinter_proto_encode(&m, NULL, good, sizeof good, &len), SINTER_OK);

    memcpy(bad, good, len);
    bad[1] = 'X';
    expect_error_reply(s, bad, len, SINTER_EBADMAGIC);
    memcpy(bad, good, len);
    bad[4] = 9;
    expect_error_reply(s, bad, len, SINTER_EBADVERSION);
    memcpy(bad, good, len);
    bad[len - 1] ^= 1;
    expect_error_reply(s, bad, len, SINTER_ECRC);
    expect_error_reply(s, good, len - 1, SINTER_ETRUNCATED);
    expect_error_reply(s, good, 3, SINTER_ETRUNCATED);
    memcpy(bad, good, len);
    bad[6] = 0x77; /* unknown code */
    reseal(bad, len);
    expect_error_reply(s, bad, len, SINTER_EUNKNOWNMSG);
    memcpy(bad, good, len);
    put32(bad + 16, 50u << 20); /* announced body over max_frame */
    expect_error_reply(s, bad, len, SINTER_ETOOBIG);
    memcpy(bad, good, len);
    bad[SINTER_PROTO_HEADER_SIZE + 16] = 250; /* string length over the body */
    reseal(bad, len);
    expect_error_reply(s, bad, len, SINTER_EBADLEN);
    /* A reply sent as a request. */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_HEARTBEAT_RESULT;
    m.request_id = 0x1122334455667788ull;
    assert_int_equal(sinter_proto_encode(&m, NULL, bad, sizeof bad, &len), SINTER_OK);
    expect_error_reply(s, bad, len, SINTER_EBADVALUE);

    /* An SP message over NNG_OPT_RECVMAXSZ: nng drops it and the connection, no reply. */
    size_t huge = 3u << 20;
    uint8_t *h = calloc(1, huge);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 500), 0);
    assert_int_equal(nng_send(s, h, huge, 0), 0);
    char *rb = NULL;
    size_t rl = 0;
    int rv = nng_recv(s, &rb, &rl, NNG_FLAG_ALLOC);
    assert_int_not_equal(rv, 0);
    free(h);
    nng_close(s);

    expect_served(f->url, 10000);
    struct sinter_transport_server_stats st;
    sinter_transport_server_stats(f->srv, &st);
    assert_true(st.bad_frames >= 9);
    fixture_close(f);
}

/* ---------------------------------------------------------------------------------------------
 * The flood
 */

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect() too */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Abortive close: RST instead of FIN, the harshest disconnect during negotiation. */
static void rst_close(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void send_all(int fd, const void *p, size_t n)
{
    (void)!send(fd, p, n, MSG_NOSIGNAL);
}

struct flood_stats {
    int attempts, connected;
};

static void flood(uint16_t port, int rounds, struct flood_stats *fs)
{
    static const uint8_t sp_req[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};
    static const uint8_t sp_bad[8] = {0, 'S', 'P', 0, 0x00, 0x10, 0, 0}; /* PAIR peer */
    uint8_t garbage[64];
    for (size_t i = 0; i < sizeof garbage; i++) {
        garbage[i] = (uint8_t)(i * 37 + 11);
    }
    for (int r = 0; r < rounds; r++) {
        int fds[10];
        for (int k = 0; k < 10; k++) {
            fs->attempts++;
            fds[k] = tcp_connect(port);
            fs->connected += fds[k] >= 0;
        }
        if (fds[0] >= 0) { /* connect and close at once */
            close(fds[0]);
        }
        if (fds[1] >= 0) { /* connect and reset at once */
            rst_close(fds[1]);
        }
        if (fds[2] >= 0) { /* half an SP handshake, then reset */
            send_all(fds[2], sp_req, 4);
            rst_close(fds[2]);
        }
        if (fds[3] >= 0) { /* half an SP handshake, then close */
            send_all(fds[3], sp_req, 5);
            close(fds[3]);
        }
        if (fds[4] >= 0) { /* garbage instead of a handshake */
            send_all(fds[4], garbage, sizeof garbage);
            close(fds[4]);
        }
        if (fds[5] >= 0) { /* full handshake, then an oversized SP length (2^62) */
            static const uint8_t big[8] = {0x40, 0, 0, 0, 0, 0, 0, 0};
            uint8_t hdr[8];
            send_all(fds[5], sp_req, 8);
            (void)!recv(fds[5], hdr, sizeof hdr, 0);
            send_all(fds[5], big, 8);
            close(fds[5]);
        }
        if (fds[6] >= 0) { /* handshake for the wrong protocol */
            send_all(fds[6], sp_bad, 8);
            rst_close(fds[6]);
        }
        if (fds[7] >= 0) { /* full handshake, half a message, reset */
            static const uint8_t len[8] = {0, 0, 0, 0, 0, 0, 0, 40};
            send_all(fds[7], sp_req, 8);
            send_all(fds[7], len, 8);
            send_all(fds[7], garbage, 10);
            rst_close(fds[7]);
        }
        /* FIN then RST before nng wrote its handshake: the server socket is in CLOSE_WAIT when
         * the RST lands, so Linux reports EPIPE to nng's first write, which nng 1.5.2 maps to
         * NNG_ECLOSED and passes to the listener's accept: the nng#1518 trigger. */
        for (int k = 8; k < 10; k++) {
            if (fds[k] >= 0) {
                shutdown(fds[k], SHUT_WR);
                rst_close(fds[k]);
            }
        }
    }
}

static void flood_then_well_behaved_client_is_served(void **state)
{
    (void)state;
    struct fixture *f = fixture_open(true, 16);
    uint16_t port = sinter_transport_server_port(f->srv);
    expect_served(f->url, 10000);

    /* A client that stays connected through the whole flood. */
    struct sinter_transport_client *steady = client_open(f->url, 4);
    struct flood_stats fs = {0, 0};
    for (int wave = 0; wave < 3; wave++) {
        flood(port, 60, &fs);
        /* Bounded time: a fresh connection must be served within 20 s of the flood stopping
         * (the watchdog needs up to ~2 x (interval + probe timeout) to notice a wedged
         * listener, and re-listens at once). */
        expect_served(f->url, 20000);
        struct sinter_proto_msg m;
        struct sinter_transport_reply_msg *r;
        begin_req(&m, 7, 4242);
        assert_int_equal(sinter_transport_call(steady, &m, 20000, &r), SINTER_OK);
        sinter_transport_reply_free(r);
    }
    /* The watchdog keeps probing through and after the flood, without false alarms that would
     * drop established clients. */
    struct sinter_transport_server_stats st;
    for (int i = 0; i < 100; i++) {
        sinter_transport_server_stats(f->srv, &st);
        if (st.probes >= 3) {
            break;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(st.probes >= 3);
    printf("flood: %d/%d rude connections made; server: %llu requests, %llu probes, %llu probe "
           "failures, %llu listener restarts\n",
           fs.connected, fs.attempts, (unsigned long long)st.requests,
           (unsigned long long)st.probes, (unsigned long long)st.probe_failures,
           (unsigned long long)st.listener_restarts);
    assert_true(fs.connected > fs.attempts / 2);
    sinter_transport_client_close(steady);
    fixture_close(f);
}

/* A listener that stops accepting (simulated: closed behind the server's back) is noticed by
 * the watchdog and re-created on the same port; a new client is then served. */
static void watchdog_revives_dead_listener(void **state)
{
    (void)state;
    struct fixture *f = fixture_open(false, 8);
    expect_served(f->url, 10000);
    assert_int_equal(sinter_transport_server_test_kill_listener(f->srv), SINTER_OK);
    expect_served(f->url, 20000);
    struct sinter_transport_server_stats st;
    sinter_transport_server_stats(f->srv, &st);
    assert_true(st.listener_restarts >= 1);
    assert_true(st.probe_failures >= 2);
    assert_int_equal(sinter_transport_server_port(f->srv),
                     (uint16_t)atoi(strrchr(f->url, ':') + 1));
    fixture_close(f);
}

/* ---------------------------------------------------------------------------------------------
 * TLS: a throwaway CA and a server certificate (CN/SAN localhost, 127.0.0.1) made with the openssl
 * command line, plus a second CA nobody trusts.
 */

static int make_tls_dir(char dir[64])
{
    snprintf(dir, 64, "/tmp/sinter-tx-tls.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd %s && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
             "-subj /CN=sinter-test-ca && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 "
             "-subj /CN=other-ca && "
             "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost "
             "&& printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.crt -days 2 -extfile ext.cnf && cat srv.crt srv.key > srv.pem) "
             ">/dev/null 2>&1",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tls_client_server(void **state)
{
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        skip(); /* deploy/install-deps.sh installs openssl; a bare machine may not have it */
    }
    char dir[64], cert[96], ca[96], other[96], url[64];
    assert_int_equal(make_tls_dir(dir), 0);
    snprintf(cert, sizeof cert, "%s/srv.pem", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(other, sizeof other, "%s/other.pem", dir);

    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    struct sinter_transport_server_opts o;
    sinter_transport_server_opts_default(&o);
    o.url = "tls+tcp://127.0.0.1:0";
    o.handler = handler;
    o.handler_arg = f;
    /* tls+tcp:// needs tls_enable, and a TLS server needs its certificate. */
    assert_int_equal(sinter_transport_server_open(&f->srv, &o), SINTER_ECONFIG);
    o.tls_enable = true;
    assert_int_equal(sinter_transport_server_open(&f->srv, &o), SINTER_ECONFIG);
    o.tls.cert_key_file = "/nonexistent/srv.pem";
    assert_int_equal(sinter_transport_server_open(&f->srv, &o), SINTER_ECONFIG);
    o.tls.cert_key_file = cert;
    assert_int_equal(sinter_transport_server_open(&f->srv, &o), SINTER_OK);
    uint16_t port = sinter_transport_server_port(f->srv);
    assert_true(port != 0);
    snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%u", (unsigned)port);

    /* A client that trusts the CA and checks the name is served. */
    struct sinter_transport_client_opts co;
    struct sinter_transport_client *c;
    sinter_transport_client_opts_default(&co);
    co.url = url;
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_ECONFIG); /* no tls_enable */
    co.tls_enable = true;
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_ECONFIG); /* no CA */
    co.tls.ca_file = ca;
    co.tls.server_name = "localhost";
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_OK);
    struct sinter_proto_msg m;
    struct sinter_transport_reply_msg *r = NULL;
    begin_req(&m, 7, 99);
    assert_int_equal(sinter_transport_call(c, &m, 10000, &r), SINTER_OK);
    assert_int_equal(sinter_transport_reply_get(r)->u.global_begin_result.xid.index, 99);
    sinter_transport_reply_free(r);
    sinter_transport_client_close(c);

    /* A client trusting another CA never gets an answer (the handshake fails). */
    co.tls.ca_file = other;
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_OK);
    assert_int_equal(sinter_transport_call(c, &m, 1500, &r), SINTER_ETIMEOUT);
    sinter_transport_client_close(c);

    /* Neither does a plain TCP client of the TLS port; the server keeps serving the good one. */
    char plain[64];
    snprintf(plain, sizeof plain, "tcp://127.0.0.1:%u", (unsigned)port);
    sinter_transport_client_opts_default(&co);
    co.url = plain;
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_OK);
    assert_int_equal(sinter_transport_call(c, &m, 1500, &r), SINTER_ETIMEOUT);
    sinter_transport_client_close(c);
    co.url = url;
    co.tls_enable = true;
    co.tls.ca_file = ca;
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_OK);
    assert_int_equal(sinter_transport_call(c, &m, 10000, &r), SINTER_OK);
    sinter_transport_reply_free(r);
    sinter_transport_client_close(c);

    /* tls_enable with a tcp:// URL is refused too. */
    sinter_transport_server_opts_default(&o);
    o.url = "tcp://127.0.0.1:0";
    o.handler = handler;
    o.tls_enable = true;
    o.tls.cert_key_file = cert;
    struct sinter_transport_server *s2 = NULL;
    assert_int_equal(sinter_transport_server_open(&s2, &o), SINTER_ECONFIG);

    sinter_transport_server_close(f->srv);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    char rm[96];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    (void)system(rm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sync_call_roundtrip),
        cmocka_unit_test(call_times_out_without_server),
        cmocka_unit_test(many_requests_in_flight),
        cmocka_unit_test(malformed_frames_get_error_replies),
        cmocka_unit_test(flood_then_well_behaved_client_is_served),
        cmocka_unit_test(watchdog_revives_dead_listener),
        cmocka_unit_test(tls_client_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
