/*
 * Sinter frames over nng REQ/REP contexts; see sinter/transport.h for the contract and for the
 * listener watchdog that guards against nng 1.5's disconnect-during-negotiation bug.
 */
#include "sinter/transport.h"

#include "sinter/crc32c.h"
#include "transport_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#define DEFAULT_CONTEXTS SINTER_TRANSPORT_DEFAULT_CONTEXTS
#define SP_OVERHEAD      SINTER_TRANSPORT_SP_OVERHEAD

static int map_nng(int rv)
{
    switch (rv) {
    case 0:
        return SINTER_OK;
    case NNG_ETIMEDOUT:
        return SINTER_ETIMEOUT;
    case NNG_ECLOSED:
        return SINTER_ESHUTDOWN;
    case NNG_ECANCELED:
        return SINTER_ECANCELED;
    case NNG_ENOMEM:
        return SINTER_ENOMEM;
    case NNG_EADDRINVAL:
    case NNG_ENOTSUP:
    case NNG_EINVAL:
        return SINTER_ECONFIG;
    default:
        return SINTER_ETRANSPORT;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Absolute CLOCK_MONOTONIC deadline ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Encodes m into a new nng message with request_id as the frame's request id. m is const and may
 * be shared, so the id is patched into the encoded header and the CRC recomputed instead of
 * copying the 12 KiB struct. */
static int encode_msg(const struct sinter_proto_msg *m, uint64_t request_id,
                      const struct sinter_proto_limits *lim, nng_msg **out)
{
    size_t size = sinter_proto_encoded_size(m, lim);
    size_t n;
    nng_msg *msg;
    if (size == 0) {
        /* Ask the encoder for the precise error. */
        uint8_t dummy[SINTER_PROTO_HEADER_SIZE];
        int rc = sinter_proto_encode(m, lim, dummy, 0, &n);
        return rc == SINTER_OK ? SINTER_EINTERNAL : rc;
    }
    if (nng_msg_alloc(&msg, size) != 0) {
        return SINTER_ENOMEM;
    }
    uint8_t *b = nng_msg_body(msg);
    int rc = sinter_proto_encode(m, lim, b, size, &n);
    if (rc != SINTER_OK) {
        nng_msg_free(msg);
        return rc;
    }
    sinter_tp_set_request_id(b, n, request_id);
    *out = msg;
    return SINTER_OK;
}

int sinter_tp_decode_request(const uint8_t *b, size_t len, const struct sinter_proto_limits *lim,
                             struct sinter_proto_msg *m, const char **why)
{
    *why = NULL;
    int rc = sinter_proto_decode(b, len, lim, m);
    if (rc == SINTER_OK && !sinter_proto_code_is_request(m->code)) {
        rc = SINTER_EBADVALUE;
        *why = "not a request message";
    }
    return rc;
}

void sinter_tp_set_request_id(uint8_t *b, size_t n, uint64_t request_id)
{
    for (int i = 0; i < 8; i++) {
        b[8 + i] = (uint8_t)(request_id >> (8 * i));
    }
    uint32_t crc = sinter_crc32c(0, b, 20);
    crc = sinter_crc32c(crc, b + SINTER_PROTO_HEADER_SIZE, n - SINTER_PROTO_HEADER_SIZE);
    for (int i = 0; i < 4; i++) {
        b[20 + i] = (uint8_t)(crc >> (8 * i));
    }
}

/* =============================================================================================
 * Server
 */

enum { S_IDLE, S_RECV, S_HANDLER, S_SEND };

/* One nng context of the server (the nng engine's request). */
struct nreq {
    struct sinter_transport_request pub; /* first: sinter_transport_reply() casts back */
    struct sinter_transport_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    nng_msg *req;        /* the received frame while the handler owns the request */
    nng_pipe pipe;       /* the connection the request came on (under srv->mu) */
    uint64_t send_since; /* S_SEND: when the reply was handed to nng (under srv->mu) */
    int state;
};

struct sinter_transport_server {
    struct sinter_transport_server_opts o;
    struct sinter_tn_server *nat; /* the native engine (tcp:// without use_nng); NULL: nng */
    char *url;
    nng_socket sock;
    nng_tls_config *tls;    /* tls+tcp:// only */
    pthread_mutex_t lst_mu; /* guards lst: the watchdog replaces it */
    nng_listener lst;
    struct nreq *slots;
    uint32_t n;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* in_handler changes, probe pipe seen, watchdog stop */
    bool closing;
    uint32_t in_handler;
    struct sinter_transport_server_stats st;
    /* Pipes counted against max_connections (ids; st.connections of them), under mu. An id set
     * rather than a counter: nng runs REM_POST for every pipe that saw ADD_PRE, including the
     * ones we closed there, and only the admitted ones may be subtracted. */
    uint32_t *pipe_ids;

    /* Watchdog (tcp:// only). */
    uint16_t port;                 /* host order */
    struct sockaddr_storage probe; /* where the probe connects (loopback for wildcard binds) */
    socklen_t probe_len;
    char relisten_url[96]; /* the bound address, to listen again on the same port */
    bool wd_started;
    pthread_t wd;
    uint16_t probe_port; /* network order; 0 = no probe running */
    bool probe_seen;

    bool stall_started; /* the stalled-reply scanner (srv_stall_main) */
    pthread_t stall;
};

void sinter_transport_server_opts_default(struct sinter_transport_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_contexts = DEFAULT_CONTEXTS;
    sinter_proto_limits_default(&o->limits);
    o->watchdog_ms = 500;
    o->watchdog_probe_ms = 1500;
    o->max_connections = SINTER_TRANSPORT_DEFAULT_MAX_CONNS;
    o->reply_timeout_ms = SINTER_TRANSPORT_DEFAULT_REPLY_TIMEOUT_MS;
}

/* Removes id from the admitted set; false if it was not there. Under s->mu. */
static bool pipe_forget(struct sinter_transport_server *s, uint32_t id)
{
    for (uint64_t i = 0; i < s->st.connections; i++) {
        if (s->pipe_ids[i] == id) {
            s->pipe_ids[i] = s->pipe_ids[--s->st.connections];
            return true;
        }
    }
    return false;
}

static void srv_rearm(struct nreq *r)
{
    struct sinter_transport_server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        r->state = S_IDLE;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    r->state = S_RECV;
    pthread_mutex_unlock(&s->mu);
    nng_ctx_recv(r->ctx, r->aio);
}

static void srv_send(struct nreq *r, nng_msg *m)
{
    nng_aio_set_msg(r->aio, m);
    nng_ctx_send(r->ctx, r->aio);
}

/* An Error reply built by the transport itself. */
static int srv_error_msg(struct sinter_transport_server *s, int rc, const char *text,
                         uint64_t request_id, nng_msg **out)
{
    struct sinter_proto_msg e;
    memset(&e, 0, sizeof e);
    e.code = SINTER_MSG_ERROR;
    e.rs.result = rc;
    e.rs.message = sinter_proto_str_c(text != NULL ? text : sinter_strerror(rc));
    if (e.rs.message.len > s->o.limits.max_message) {
        e.rs.message.len = s->o.limits.max_message;
    }
    return encode_msg(&e, request_id, &s->o.limits, out);
}

static void srv_cb(void *arg)
{
    struct nreq *r = arg;
    struct sinter_transport_server *s = r->srv;
    int rv = nng_aio_result(r->aio);

    pthread_mutex_lock(&s->mu);
    int state = r->state;
    pthread_mutex_unlock(&s->mu);

    if (state == S_SEND) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(r->aio)); /* not sent: still ours */
        }
        srv_rearm(r);
        return;
    }
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            pthread_mutex_lock(&s->mu);
            r->state = S_IDLE;
            pthread_mutex_unlock(&s->mu);
            return;
        }
        srv_rearm(r);
        return;
    }

    nng_msg *m = nng_aio_get_msg(r->aio);
    const uint8_t *body = nng_msg_body(m);
    size_t len = nng_msg_len(m);
    const char *why = NULL;
    int rc = sinter_tp_decode_request(body, len, &s->o.limits, &r->pub.msg, &why);
    pthread_mutex_lock(&s->mu);
    r->pipe = nng_msg_get_pipe(m);
    if (rc == SINTER_OK && s->closing) {
        rc = SINTER_ESHUTDOWN;
    }
    if (rc != SINTER_OK) {
        s->st.bad_frames += rc == SINTER_ESHUTDOWN ? 0 : 1;
        r->state = S_SEND;
        r->send_since = now_ms();
    } else {
        s->st.requests++;
        s->in_handler++;
        r->state = S_HANDLER;
        r->req = m;
    }
    pthread_mutex_unlock(&s->mu);

    if (rc != SINTER_OK) {
        /* Echo the request id when the header was readable, so the peer can correlate. */
        struct sinter_proto_header h;
        (void)sinter_proto_decode_header(body, len, &s->o.limits, &h);
        uint64_t id = h.request_id;
        nng_msg_free(m);
        nng_msg *reply;
        if (srv_error_msg(s, rc, why, id, &reply) != SINTER_OK) {
            srv_rearm(r);
            return;
        }
        srv_send(r, reply);
        return;
    }
    s->o.handler(s->o.handler_arg, &r->pub);
}

const struct sinter_proto_msg *
sinter_transport_request_msg(const struct sinter_transport_request *req)
{
    return &req->msg;
}

/* Sends m (or re-arms when m is NULL), then releases the handler's hold on req. The hold is
 * released last: sinter_transport_server_close() waits for in_handler to reach 0 and then closes
 * the socket and frees every slot's aio, so a send issued after the release could reach a closed
 * socket with a freed aio (nng panicked "pthread_mutex_lock: Invalid argument" in nng_ctx_send,
 * seen once in test_transport's many_requests_in_flight under ASan). */
static void srv_finish(struct nreq *r, nng_msg *m)
{
    struct sinter_transport_server *s = r->srv;
    nng_msg_free(r->req);
    r->req = NULL;
    pthread_mutex_lock(&s->mu);
    r->state = S_SEND; /* before the send: srv_cb reads it */
    r->send_since = now_ms();
    pthread_mutex_unlock(&s->mu);
    if (m == NULL) {
        srv_rearm(r);
    } else {
        srv_send(r, m);
    }
    pthread_mutex_lock(&s->mu);
    s->in_handler--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sinter_transport_reply(struct sinter_transport_request *pub,
                           const struct sinter_proto_msg *reply)
{
    if (pub->native) {
        return sinter_tn_reply(pub, reply);
    }
    struct nreq *req = (struct nreq *)pub;
    struct sinter_transport_server *s = req->srv;
    uint64_t id = req->pub.msg.request_id;
    nng_msg *m = NULL;
    int rc = reply == NULL ? SINTER_EINVAL : encode_msg(reply, id, &s->o.limits, &m);
    int ret = SINTER_OK;
    if (rc == SINTER_ENOMEM) {
        srv_finish(req, NULL);
        return SINTER_ENOMEM;
    }
    if (rc != SINTER_OK) {
        ret = SINTER_EINTERNAL;
        if (srv_error_msg(s, SINTER_EINTERNAL, "server could not encode its reply", id, &m) !=
            SINTER_OK) {
            srv_finish(req, NULL);
            return SINTER_ENOMEM;
        }
    }
    srv_finish(req, m);
    return ret;
}

int sinter_transport_reply_error(struct sinter_transport_request *req, int rc, const char *text)
{
    struct sinter_proto_msg e;
    memset(&e, 0, sizeof e);
    e.code = SINTER_MSG_ERROR;
    e.rs.result = rc;
    e.rs.message = sinter_proto_str_c(text);
    return sinter_transport_reply(req, &e);
}

/* ---------------------------------------------------------------------------------------------
 * Listener and watchdog
 */

static bool is_tls_url(const char *url)
{
    return strncmp(url, "tls+", 4) == 0;
}

/* Builds the TLS configuration of one side (see struct sinter_transport_tls): a server always
 * presents its certificate and verifies clients only when it has a CA; a client always verifies
 * the server and presents a certificate when it has one. nng errors become SINTER_ECONFIG: they
 * come from files that are missing, unreadable or not valid PEM. */
static int tls_setup(nng_tls_config **out, bool server, const struct sinter_transport_tls *t)
{
    if (server ? t->cert_key_file == NULL : t->ca_file == NULL) {
        return SINTER_ECONFIG;
    }
    nng_tls_config *cfg;
    int rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv != 0) {
        return rv == NNG_ENOMEM ? SINTER_ENOMEM : SINTER_ECONFIG;
    }
    if (t->cert_key_file != NULL) {
        rv = nng_tls_config_cert_key_file(cfg, t->cert_key_file, t->key_password);
    }
    if (rv == 0 && t->ca_file != NULL) {
        rv = nng_tls_config_ca_file(cfg, t->ca_file);
    }
    if (rv == 0) {
        rv = nng_tls_config_auth_mode(cfg, t->ca_file != NULL ? NNG_TLS_AUTH_MODE_REQUIRED
                                                              : NNG_TLS_AUTH_MODE_NONE);
    }
    if (rv == 0 && !server && t->server_name != NULL) {
        rv = nng_tls_config_server_name(cfg, t->server_name);
    }
    if (rv != 0) {
        nng_tls_config_free(cfg);
        return SINTER_ECONFIG;
    }
    *out = cfg;
    return SINTER_OK;
}

static int srv_listen(struct sinter_transport_server *s, const char *url)
{
    nng_listener l;
    int rv = nng_listener_create(&l, s->sock, url);
    if (rv != 0) {
        return rv;
    }
    if (s->tls != NULL) {
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, s->tls);
        if (rv != 0) {
            nng_listener_close(l);
            return rv;
        }
    }
    rv = nng_listener_start(l, 0);
    if (rv != 0) {
        nng_listener_close(l);
        return rv;
    }
    s->lst = l;
    return 0;
}

/* Records where the listener is bound, for the probe and for listening again. */
static void srv_watch_setup(struct sinter_transport_server *s)
{
    nng_sockaddr sa;
    char host[INET6_ADDRSTRLEN];
    if (strncmp(s->url, "tcp://", 6) != 0 && strncmp(s->url, "tcp4://", 7) != 0 &&
        strncmp(s->url, "tcp6://", 7) != 0) {
        return;
    }
    if (nng_listener_get_addr(s->lst, NNG_OPT_LOCADDR, &sa) != 0) {
        return;
    }
    memset(&s->probe, 0, sizeof s->probe);
    if (sa.s_family == NNG_AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&s->probe;
        in->sin_family = AF_INET;
        in->sin_port = sa.s_in.sa_port;
        in->sin_addr.s_addr = sa.s_in.sa_addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(s->relisten_url, sizeof s->relisten_url, "tcp://%s:%u", host,
                 (unsigned)ntohs(sa.s_in.sa_port));
        if (in->sin_addr.s_addr == htonl(INADDR_ANY)) {
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
        s->probe_len = sizeof *in;
        s->port = ntohs(sa.s_in.sa_port);
    } else if (sa.s_family == NNG_AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s->probe;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = sa.s_in6.sa_port;
        memcpy(&in6->sin6_addr, sa.s_in6.sa_addr, 16);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(s->relisten_url, sizeof s->relisten_url, "tcp://[%s]:%u", host,
                 (unsigned)ntohs(sa.s_in6.sa_port));
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) {
            in6->sin6_addr = in6addr_loopback;
        }
        s->probe_len = sizeof *in6;
        s->port = ntohs(sa.s_in6.sa_port);
    }
}

/* Pipe events. ADD_PRE admits or refuses the pipe against max_connections (closing it there
 * keeps it out of the socket); ADD_POST tells the watchdog its probe's pipe arrived, which
 * proves the listener still accepts; REM_POST gives the pipe's place back. */
static void srv_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct sinter_transport_server *s = arg;
    uint32_t id = (uint32_t)nng_pipe_id(p);
    if (ev == NNG_PIPE_EV_REM_POST) {
        pthread_mutex_lock(&s->mu);
        (void)pipe_forget(s, id);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    nng_sockaddr sa;
    uint16_t port = 0;
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0) {
        if (sa.s_family == NNG_AF_INET) {
            port = sa.s_in.sa_port;
        } else if (sa.s_family == NNG_AF_INET6) {
            port = sa.s_in6.sa_port;
        }
    }
    pthread_mutex_lock(&s->mu);
    /* The watchdog's own probe is neither counted nor refused: refused at the limit, it would
     * look like a deaf listener, and two such misses restart the listener, which drops every
     * admitted client (and they would fill it again: a restart every few seconds). */
    bool probe = s->probe_port != 0 && port == s->probe_port;
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        bool full = !probe && s->st.connections >= s->o.max_connections;
        if (full) {
            s->st.refused_connections++;
        } else if (!probe) {
            s->pipe_ids[s->st.connections++] = id;
        }
        pthread_mutex_unlock(&s->mu);
        if (full) {
            nng_pipe_close(p);
        }
        return;
    }
    if (probe) {
        s->probe_seen = true;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Waits until fd is ready for events or the deadline passes. */
static bool wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            return false;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)(deadline - now));
        if (n > 0) {
            return true;
        }
        if (n < 0 && errno != EINTR) {
            return false;
        }
    }
}

/* One probe: a raw TCP connection that performs a correct SP handshake as a REQ peer (8 bytes:
 * 0 'S' 'P' 0, protocol 0x0030 big-endian, 0 0), reads the server's 8 bytes, then waits for nng to
 * report the pipe. We read the server's header before closing so our close is a clean FIN after a
 * completed handshake: the probe itself must never be a "disconnect during negotiation".
 * Returns false only when the listener provably did not hand the pipe to the socket. */
static bool srv_probe(struct sinter_transport_server *s)
{
    static const uint8_t hello[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};
    uint64_t deadline = now_ms() + s->o.watchdog_probe_ms;
    bool ok = false;
    int fd = socket(s->probe.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return true; /* cannot probe (fd exhaustion): no evidence against the listener */
    }
    if (connect(fd, (struct sockaddr *)&s->probe, s->probe_len) != 0) {
        int err = 0;
        socklen_t el = sizeof err;
        if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return false;
        }
    }
    struct sockaddr_storage me;
    socklen_t ml = sizeof me;
    if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0) {
        close(fd);
        return true;
    }
    uint16_t port = me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port
                                            : ((struct sockaddr_in6 *)&me)->sin6_port;
    pthread_mutex_lock(&s->mu);
    s->probe_port = port;
    s->probe_seen = false;
    pthread_mutex_unlock(&s->mu);

    bool sent = send(fd, hello, sizeof hello, MSG_NOSIGNAL) == (ssize_t)sizeof hello;
    uint8_t peer[8];
    size_t got = 0;
    while (sent && got < sizeof peer && wait_fd(fd, POLLIN, deadline)) {
        ssize_t n = recv(fd, peer + got, sizeof peer - got, 0);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) {
            break;
        }
        got += n > 0 ? (size_t)n : 0;
    }
    pthread_mutex_lock(&s->mu);
    if (got == sizeof peer) {
        struct timespec ts = deadline_in(deadline > now_ms() ? deadline - now_ms() : 0);
        while (!s->probe_seen && !s->closing) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) {
                break;
            }
        }
    }
    ok = s->probe_seen || s->closing;
    s->probe_port = 0;
    pthread_mutex_unlock(&s->mu);
    close(fd);
    return ok;
}

/* Closes the wedged listener and listens again on the same address. The old listener's pipes are
 * closed with it; clients redial. Retries briefly while the kernel releases the port. */
static bool srv_relisten(struct sinter_transport_server *s)
{
    bool ok = false;
    pthread_mutex_lock(&s->lst_mu);
    nng_listener_close(s->lst);
    for (int i = 0; i < 20 && !ok; i++) {
        ok = srv_listen(s, s->relisten_url) == 0;
        if (!ok) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    pthread_mutex_unlock(&s->lst_mu);
    return ok;
}

int sinter_transport_server_test_kill_listener(struct sinter_transport_server *s)
{
    if (s->nat != NULL) {
        return SINTER_ETRANSPORT; /* the native listener has no nng#1518 to simulate */
    }
    pthread_mutex_lock(&s->lst_mu);
    int rv = nng_listener_close(s->lst);
    pthread_mutex_unlock(&s->lst_mu);
    return rv == 0 ? SINTER_OK : SINTER_ETRANSPORT;
}

static void *srv_watchdog(void *arg)
{
    struct sinter_transport_server *s = arg;
    int failures = 0;
    pthread_mutex_lock(&s->mu);
    while (!s->closing) {
        struct timespec ts = deadline_in(s->o.watchdog_ms);
        while (!s->closing && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT) {
        }
        if (s->closing) {
            break;
        }
        pthread_mutex_unlock(&s->mu);
        bool ok = srv_probe(s);
        bool restarted = false;
        failures = ok ? 0 : failures + 1;
        /* Two misses in a row: one slow probe under a connection flood is not evidence enough
         * to drop every established connection. */
        if (failures >= 2) {
            restarted = srv_relisten(s);
            failures = 0;
        }
        pthread_mutex_lock(&s->mu);
        s->st.probes++;
        s->st.probe_failures += ok ? 0 : 1;
        s->st.listener_restarts += restarted ? 1 : 0;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A REP context's send completes only once its pipe took the message, and a pipe takes the next
 * one only after the kernel took the last: a peer that stops reading parks every context that
 * answers it, and with all of them parked nobody else is served. This thread closes the pipe of
 * any reply still parked after reply_timeout_ms; nng then completes every send parked on it
 * (rep0 drops them as if sent), the contexts receive again, and the peer's client redials and
 * retries with the same client id and seq, which the coordinator answers without applying twice.
 * A thread rather than an aio timeout on the send: nng 1.5's timed sends race the socket's
 * close (a panic seen in test_transport), and the scan costs nothing per reply. */
static void *srv_stall_main(void *arg)
{
    struct sinter_transport_server *s = arg;
    uint32_t period = s->o.reply_timeout_ms / 4u;
    period = period < 50u ? 50u : period > 1000u ? 1000u : period;
    nng_pipe *close_these = calloc(s->n, sizeof *close_these);
    pthread_mutex_lock(&s->mu);
    while (!s->closing) {
        struct timespec ts = deadline_in(period);
        while (!s->closing && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT) {
        }
        if (s->closing) {
            break;
        }
        uint64_t now = now_ms();
        uint32_t k = 0;
        for (uint32_t i = 0; i < s->n && close_these != NULL; i++) {
            struct nreq *r = &s->slots[i];
            /* Counted once per connection: the first parked reply found takes the pipe out of
             * the admitted set, the others on it find it gone. */
            if (r->state == S_SEND && now - r->send_since >= s->o.reply_timeout_ms &&
                nng_pipe_id(r->pipe) > 0 && pipe_forget(s, (uint32_t)nng_pipe_id(r->pipe))) {
                s->st.stalled_connections++;
                close_these[k++] = r->pipe;
            }
        }
        pthread_mutex_unlock(&s->mu);
        for (uint32_t i = 0; i < k; i++) {
            nng_pipe_close(close_these[i]); /* ENOENT if it went away meanwhile: fine */
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(close_these);
    return NULL;
}

int sinter_transport_server_open(struct sinter_transport_server **out,
                                 const struct sinter_transport_server_opts *opts)
{
    if (out == NULL || opts == NULL || opts->url == NULL || opts->handler == NULL) {
        return SINTER_EINVAL;
    }
    struct sinter_transport_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SINTER_ENOMEM;
    }
    if (!opts->use_nng && sinter_tn_is_tcp_url(opts->url)) {
        int rc = opts->tls_enable ? SINTER_ECONFIG : sinter_tn_server_open(&s->nat, opts);
        if (rc != SINTER_OK) {
            free(s);
            return rc;
        }
        *out = s;
        return SINTER_OK;
    }
    s->o = *opts;
    s->o.n_contexts = s->o.n_contexts == 0 ? DEFAULT_CONTEXTS : s->o.n_contexts;
    s->o.watchdog_ms = s->o.watchdog_ms == 0 ? 500 : s->o.watchdog_ms;
    s->o.watchdog_probe_ms = s->o.watchdog_probe_ms == 0 ? 1500 : s->o.watchdog_probe_ms;
    s->o.max_connections =
        s->o.max_connections == 0 ? SINTER_TRANSPORT_DEFAULT_MAX_CONNS : s->o.max_connections;
    s->o.reply_timeout_ms = s->o.reply_timeout_ms == 0 ? SINTER_TRANSPORT_DEFAULT_REPLY_TIMEOUT_MS
                                                       : s->o.reply_timeout_ms;
    s->url = strdup(opts->url);
    s->n = s->o.n_contexts;
    s->slots = calloc(s->n, sizeof *s->slots);
    s->pipe_ids = calloc(s->o.max_connections, sizeof *s->pipe_ids);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->lst_mu, NULL);
    cond_init_monotonic(&s->cv);
    int rc = SINTER_ENOMEM;
    int rv;
    if (s->url == NULL || s->slots == NULL || s->pipe_ids == NULL) {
        goto fail_free;
    }
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        rc = map_nng(rv);
        goto fail_free;
    }
    /* nng drops (and closes the pipe of) any SP message larger than this before allocating it,
     * so an oversized SP length costs us nothing. */
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, (size_t)s->o.limits.max_frame + SP_OVERHEAD);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, srv_pipe_cb, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, srv_pipe_cb, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, srv_pipe_cb, s);
    for (uint32_t i = 0; i < s->n; i++) {
        struct nreq *r = &s->slots[i];
        r->srv = s;
        if ((rv = nng_aio_alloc(&r->aio, srv_cb, r)) != 0 ||
            (rv = nng_ctx_open(&r->ctx, s->sock)) != 0) {
            rc = map_nng(rv);
            goto fail_close;
        }
    }
    if (is_tls_url(s->url) != s->o.tls_enable) {
        rc = SINTER_ECONFIG;
        goto fail_close;
    }
    if (s->o.tls_enable && (rc = tls_setup(&s->tls, true, &opts->tls)) != SINTER_OK) {
        goto fail_close;
    }
    if ((rv = srv_listen(s, s->url)) != 0) {
        rc = (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP || rv == NNG_EINVAL) ? SINTER_ECONFIG
                                                                             : SINTER_ETRANSPORT;
        goto fail_close;
    }
    srv_watch_setup(s);
    int bound = 0;
    if (s->port == 0 && s->tls != NULL &&
        nng_listener_get_int(s->lst, NNG_OPT_TCP_BOUND_PORT, &bound) == 0 && bound > 0 &&
        bound <= 65535) {
        s->port = (uint16_t)bound; /* no watchdog for TLS, but the port is still useful */
    }
    for (uint32_t i = 0; i < s->n; i++) {
        srv_rearm(&s->slots[i]);
    }
    if (!s->o.watchdog_disable && s->probe_len != 0) {
        if (pthread_create(&s->wd, NULL, srv_watchdog, s) == 0) {
            s->wd_started = true;
        }
    }
    if (pthread_create(&s->stall, NULL, srv_stall_main, s) == 0) {
        s->stall_started = true;
    }
    *out = s;
    return SINTER_OK;

fail_close:
    nng_close(s->sock);
    if (s->tls != NULL) {
        nng_tls_config_free(s->tls);
    }
fail_free:
    if (s->slots != NULL) {
        for (uint32_t i = 0; i < s->n; i++) {
            if (s->slots[i].aio != NULL) {
                nng_aio_free(s->slots[i].aio);
            }
        }
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lst_mu);
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s->pipe_ids);
    free(s->url);
    free(s);
    return rc;
}

uint16_t sinter_transport_server_port(const struct sinter_transport_server *s)
{
    if (s->nat != NULL) {
        return sinter_tn_server_port(s->nat);
    }
    return s->port;
}

void sinter_transport_server_stats(struct sinter_transport_server *s,
                                   struct sinter_transport_server_stats *st)
{
    if (s->nat != NULL) {
        sinter_tn_server_stats(s->nat, st);
        return;
    }
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    pthread_mutex_unlock(&s->mu);
}

void sinter_transport_server_close(struct sinter_transport_server *s)
{
    if (s == NULL) {
        return;
    }
    if (s->nat != NULL) {
        sinter_tn_server_close(s->nat);
        free(s);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_broadcast(&s->cv);
    while (s->in_handler > 0) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    if (s->wd_started) {
        pthread_join(s->wd, NULL);
    }
    if (s->stall_started) {
        pthread_join(s->stall, NULL);
    }
    nng_close(s->sock); /* pending receives and sends complete with NNG_ECLOSED */
    for (uint32_t i = 0; i < s->n; i++) {
        nng_aio_stop(s->slots[i].aio);
    }
    for (uint32_t i = 0; i < s->n; i++) {
        nng_aio_free(s->slots[i].aio);
    }
    if (s->tls != NULL) {
        nng_tls_config_free(s->tls);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lst_mu);
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s->pipe_ids);
    free(s->url);
    free(s);
}

/* =============================================================================================
 * Client
 */

enum { C_FREE, C_SEND, C_RECV };

struct cslot {
    struct sinter_transport_client *c;
    nng_ctx ctx;
    nng_aio *aio;
    int state;
    uint64_t request_id;
    uint16_t want; /* the typed reply code */
    uint64_t deadline;
    sinter_transport_done done;
    void *arg;
};

struct sinter_transport_client {
    struct sinter_transport_client_opts o;
    struct sinter_tn_client *nat; /* the native engine (tcp:// without use_nng); NULL: nng */
    nng_socket sock;
    struct cslot *slots;
    uint32_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a slot became free, or a callback left nng */
    bool closing;
    uint32_t in_nng; /* callbacks between their closing check and their nng_ctx_recv */
    uint64_t next_id;
};

void sinter_transport_client_opts_default(struct sinter_transport_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_contexts = DEFAULT_CONTEXTS;
    sinter_proto_limits_default(&o->limits);
}

const struct sinter_proto_msg *
sinter_transport_reply_get(const struct sinter_transport_reply_msg *r)
{
    return &r->msg;
}

void sinter_transport_reply_free(struct sinter_transport_reply_msg *r)
{
    if (r != NULL) {
        if (r->m != NULL) {
            nng_msg_free(r->m); /* nng engine; the native one's bytes share r's allocation */
        }
        free(r);
    }
}

static void cli_complete(struct cslot *k, int rc, struct sinter_transport_reply_msg *reply)
{
    struct sinter_transport_client *c = k->c;
    sinter_transport_done done = k->done;
    void *arg = k->arg;
    pthread_mutex_lock(&c->mu);
    k->state = C_FREE;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    done(arg, rc, reply);
}

static void cli_cb(void *arg)
{
    struct cslot *k = arg;
    struct sinter_transport_client *c = k->c;
    int rv = nng_aio_result(k->aio);
    if (k->state == C_SEND) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(k->aio));
            cli_complete(k, map_nng(rv), NULL);
            return;
        }
        /* No nng_ctx_recv once close has begun, and close's nng_close waits for one already
         * under way: a context operation racing nng_close can panic inside nng 1.5.2 (its
         * nni_ctx_rele wakes the closer before the context's teardown locks the socket's mutex,
         * which the closer then destroys: "pthread_mutex_lock: Invalid argument", seen under
         * ASan in test_transport). */
        pthread_mutex_lock(&c->mu);
        bool closing = c->closing;
        if (!closing) {
            c->in_nng++;
            k->state = C_RECV; /* under mu: call_async scans the states under it (TSan) */
        }
        pthread_mutex_unlock(&c->mu);
        if (closing) {
            cli_complete(k, SINTER_ESHUTDOWN, NULL);
            return;
        }
        uint64_t now = now_ms();
        nng_aio_set_timeout(k->aio, k->deadline > now ? (nng_duration)(k->deadline - now) : 1);
        nng_ctx_recv(k->ctx, k->aio);
        pthread_mutex_lock(&c->mu);
        c->in_nng--;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (rv != 0) {
        cli_complete(k, map_nng(rv), NULL);
        return;
    }
    struct sinter_transport_reply_msg *r = malloc(sizeof *r);
    nng_msg *m = nng_aio_get_msg(k->aio);
    if (r == NULL) {
        nng_msg_free(m);
        cli_complete(k, SINTER_ENOMEM, NULL);
        return;
    }
    r->m = m;
    int rc = sinter_proto_decode(nng_msg_body(m), nng_msg_len(m), &c->o.limits, &r->msg);
    /* nng REQ already matches replies to contexts; checking our own id and the code as well
     * catches a confused or hostile server before the caller reads the wrong union member. */
    if (rc == SINTER_OK && (r->msg.request_id != k->request_id ||
                            (r->msg.code != k->want && r->msg.code != SINTER_MSG_ERROR))) {
        rc = SINTER_EBADVALUE;
    }
    if (rc != SINTER_OK) {
        sinter_transport_reply_free(r);
        r = NULL;
    }
    cli_complete(k, rc, r);
}

int sinter_transport_client_open(struct sinter_transport_client **out,
                                 const struct sinter_transport_client_opts *opts)
{
    if (out == NULL || opts == NULL || opts->url == NULL) {
        return SINTER_EINVAL;
    }
    struct sinter_transport_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return SINTER_ENOMEM;
    }
    if (!opts->use_nng && sinter_tn_is_tcp_url(opts->url)) {
        int rc = opts->tls_enable ? SINTER_ECONFIG : sinter_tn_client_open(&c->nat, opts);
        if (rc != SINTER_OK) {
            free(c);
            return rc;
        }
        *out = c;
        return SINTER_OK;
    }
    c->o = *opts;
    c->o.url = NULL; /* not kept: nng copies it at dial */
    c->n = opts->n_contexts == 0 ? DEFAULT_CONTEXTS : opts->n_contexts;
    c->slots = calloc(c->n, sizeof *c->slots);
    pthread_mutex_init(&c->mu, NULL);
    cond_init_monotonic(&c->cv);
    int rc = SINTER_ENOMEM;
    int rv;
    if (c->slots == NULL) {
        goto fail_free;
    }
    if ((rv = nng_req0_open(&c->sock)) != 0) {
        rc = map_nng(rv);
        goto fail_free;
    }
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, (size_t)c->o.limits.max_frame + SP_OVERHEAD);
    for (uint32_t i = 0; i < c->n; i++) {
        struct cslot *k = &c->slots[i];
        k->c = c;
        if ((rv = nng_aio_alloc(&k->aio, cli_cb, k)) != 0 ||
            (rv = nng_ctx_open(&k->ctx, c->sock)) != 0) {
            rc = map_nng(rv);
            goto fail_close;
        }
    }
    /* Non-blocking dial: nng keeps redialing in the background, so a client may start before its
     * server and survives server restarts. */
    if (is_tls_url(opts->url) != opts->tls_enable) {
        rc = SINTER_ECONFIG;
        goto fail_close;
    }
    nng_tls_config *tls = NULL;
    if (opts->tls_enable && (rc = tls_setup(&tls, false, &opts->tls)) != SINTER_OK) {
        goto fail_close;
    }
    nng_dialer d;
    rv = nng_dialer_create(&d, c->sock, opts->url);
    if (rv == 0 && tls != NULL) {
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tls);
    }
    if (rv == 0) {
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    }
    if (tls != NULL) {
        nng_tls_config_free(tls); /* the dialer holds its own reference */
    }
    if (rv != 0) {
        rc = (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP || rv == NNG_EINVAL) ? SINTER_ECONFIG
                                                                             : SINTER_ETRANSPORT;
        goto fail_close;
    }
    *out = c;
    return SINTER_OK;

fail_close:
    nng_close(c->sock);
fail_free:
    if (c->slots != NULL) {
        for (uint32_t i = 0; i < c->n; i++) {
            if (c->slots[i].aio != NULL) {
                nng_aio_free(c->slots[i].aio);
            }
        }
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c);
    return rc;
}

int sinter_transport_call_async(struct sinter_transport_client *c,
                                const struct sinter_proto_msg *req, uint32_t timeout_ms,
                                sinter_transport_done done, void *arg)
{
    if (c == NULL || req == NULL || done == NULL || !sinter_proto_code_is_request(req->code)) {
        return SINTER_EINVAL;
    }
    if (c->nat != NULL) {
        return sinter_tn_call_async(c->nat, req, timeout_ms, done, arg);
    }
    struct cslot *k = NULL;
    uint64_t id;
    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        return SINTER_ESHUTDOWN;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->slots[i].state == C_FREE) {
            k = &c->slots[i];
            break;
        }
    }
    if (k == NULL) {
        pthread_mutex_unlock(&c->mu);
        return SINTER_EBUSY;
    }
    k->state = C_SEND;
    id = ++c->next_id;
    pthread_mutex_unlock(&c->mu);

    nng_msg *m;
    int rc = encode_msg(req, id, &c->o.limits, &m);
    if (rc != SINTER_OK) {
        pthread_mutex_lock(&c->mu);
        k->state = C_FREE;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    k->request_id = id;
    k->want = sinter_proto_reply_code(req->code);
    k->deadline = now_ms() + timeout_ms;
    k->done = done;
    k->arg = arg;
    nng_aio_set_msg(k->aio, m);
    nng_aio_set_timeout(k->aio, timeout_ms == 0 ? 1 : (nng_duration)timeout_ms);
    nng_ctx_send(k->ctx, k->aio);
    return SINTER_OK;
}

struct sync_call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    struct sinter_transport_reply_msg *reply;
};

static void sync_done(void *arg, int rc, struct sinter_transport_reply_msg *reply)
{
    struct sync_call *sc = arg;
    pthread_mutex_lock(&sc->mu);
    sc->done = true;
    sc->rc = rc;
    sc->reply = reply;
    pthread_cond_signal(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

int sinter_transport_call(struct sinter_transport_client *c, const struct sinter_proto_msg *req,
                          uint32_t timeout_ms, struct sinter_transport_reply_msg **reply)
{
    if (reply == NULL) {
        return SINTER_EINVAL;
    }
    *reply = NULL;
    struct sync_call sc = {.done = false};
    pthread_mutex_init(&sc.mu, NULL);
    pthread_cond_init(&sc.cv, NULL);
    uint64_t deadline = now_ms() + timeout_ms;
    int rc;
    for (;;) {
        uint64_t now = now_ms();
        uint32_t left = deadline > now ? (uint32_t)(deadline - now) : 0;
        rc = sinter_transport_call_async(c, req, left, sync_done, &sc);
        if (rc != SINTER_EBUSY) {
            break;
        }
        /* All contexts busy: wait for one to free up, within the caller's deadline. */
        if (c->nat != NULL) {
            if (left == 0) {
                rc = SINTER_ETIMEOUT;
                break;
            }
            /* Whatever ended the wait (a free slot, the deadline, a close() that has begun),
             * the next call_async says what it means: OK, EBUSY and then ETIMEOUT with no time
             * left, or ESHUTDOWN as the nng engine answers for a closing client (not ETIMEOUT).
             * A call racing close() past that point is outside the contract, as with nng. */
            (void)sinter_tn_client_wait_slot(c->nat, left);
            continue;
        }
        pthread_mutex_lock(&c->mu);
        struct timespec ts = deadline_in(left);
        int w = left == 0 ? ETIMEDOUT : pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        pthread_mutex_unlock(&c->mu);
        if (w == ETIMEDOUT) {
            rc = SINTER_ETIMEOUT;
            break;
        }
    }
    if (rc == SINTER_OK) {
        /* The aio's own timeout bounds this wait. */
        pthread_mutex_lock(&sc.mu);
        while (!sc.done) {
            pthread_cond_wait(&sc.cv, &sc.mu);
        }
        pthread_mutex_unlock(&sc.mu);
        rc = sc.rc;
        *reply = sc.reply;
    }
    pthread_cond_destroy(&sc.cv);
    pthread_mutex_destroy(&sc.mu);
    return rc;
}

void sinter_transport_client_close(struct sinter_transport_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->nat != NULL) {
        sinter_tn_client_close(c->nat);
        free(c);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    while (c->in_nng > 0) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    nng_close(c->sock); /* calls in flight complete with SINTER_ESHUTDOWN */
    for (uint32_t i = 0; i < c->n; i++) {
        nng_aio_stop(c->slots[i].aio);
    }
    for (uint32_t i = 0; i < c->n; i++) {
        nng_aio_free(c->slots[i].aio);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c);
}
