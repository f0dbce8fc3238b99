/*
 * Node-to-node Raft transport over nng byte streams: see include/sinter/raft_transport.h for the
 * contract and for why streams and not an SP pattern.
 *
 * Per peer (outbound, one-way): at most one connection, a queue of sealed frames, one open batch
 * being filled, a way to notice the peer closing (the peer never writes on this connection), a
 * backoff timer, and the snapshots being streamed to it. Everything of a peer is under its own
 * mutex, so peers never wait on each other: a dead follower's full queue makes only its own sends
 * fail.
 *
 * Outbound, tcp:// peers of a native transport ("native outbound"): our own non-blocking socket
 * (TCP_NODELAY), connected without blocking and registered in the same epoll set as the inbound
 * side. The thread that queues a frame (the host loop: flush, heartbeats, snapshot acks and
 * chunks) writes the queue itself with sendmsg(MSG_NOSIGNAL), several frames per call; only when
 * the kernel buffer is full is EPOLLOUT armed, and the pumping thread (the caller's loop, or the
 * transport's pump thread) writes the rest when the socket drains. So a frame that leaves in one
 * write costs no thread wake-up at all, where nng completed every write on its taskq (one
 * hand-off per frame, bench/FINDINGS.md F2). EPOLLIN/EPOLLRDHUP on that socket means the peer
 * closed it (or broke the one-way rule): the connection is dropped and redialled with backoff.
 * epoll events may be stale (the descriptor was closed and a new one made by another thread
 * meanwhile), so every event is re-checked under the peer's mutex against the current socket.
 *
 * Outbound, other URLs (tls+tcp://): an nng stream dialer, one nng write in flight, a 1-byte nng
 * read that notices the peer closing.
 *
 * Inbound, tcp:// listen URLs ("native"): our own listening socket, accepted sockets and an eventfd
 * in one level-triggered epoll set. sinter_raft_transport_pump() (the caller's thread, or the
 * transport's pump thread) accepts, reads each readable connection once into a small staging
 * buffer (large bodies straight into the frame's buffer), cuts frames and dispatches them. Only
 * the pumping thread touches a connection, except a connection whose snapshot frame was handed
 * to the snapshot thread: it is out of the epoll set until that thread hands it back.
 *
 * Inbound, other URLs (tls+tcp://): nng's accept loop; each accepted connection reads header, then
 * body, decodes on nng's thread and hands the frame to the host (or to the snapshot sink, or to
 * the snapshot sender on an ack). An inbound connection frees itself when it fails
 * (nng_aio_reap, since an aio cannot be freed from its own callback).
 *
 * Lock order: transport mtx -> peer mtx; peer rx_mtx (snapshot receive) is taken alone or before
 * the peer mtx. User callbacks are called with no transport lock held, except the snapshot sink
 * (under the peer's rx_mtx, which serialises one sender's chunks).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "sinter/raft_transport.h"
#include "sinter/transport.h"

#define TICK_MS      100u
#define FREE_FRAMES  4u         /* recycled frame buffers kept per peer */
#define FREE_MAX_CAP (4u << 20) /* larger buffers are not kept */

struct txframe {
    struct txframe *next;
    uint32_t group; /* SNAP_CHUNK: the group, to fail its snapshot if the frame is lost */
    struct sinter_raft_wire_buf b;
};

/* A snapshot being streamed to a peer. */
struct snap_tx {
    struct snap_tx *next;
    uint32_t group;
    struct sinter_raft_msg msg;
    uint64_t total;
    uint64_t offset; /* of the chunk in flight */
    uint32_t len;    /* of the chunk in flight */
    bool busy;       /* a chunk is being read/queued outside the lock */
    nng_time deadline;
    sinter_raft_snapshot_read_fn read;
    sinter_raft_snapshot_done_fn done;
    void *arg;
    uint8_t *chunk;
};

/* A snapshot being received from a peer. */
struct snap_rx {
    struct snap_rx *next;
    uint32_t group;
    struct sinter_raft_msg msg;
    uint64_t total;
    uint64_t next_off;
    nng_time last; /* when the last chunk arrived: idle streams are aborted by the tick */
    void *stream;
};

/* What an epoll event's data.ptr points to, besides NULL (the listener) and the transport (the
 * kick eventfd): the first member of struct nconn or struct peer. */
enum { EV_INCONN = 1, EV_PEER = 2 };

struct peer {
    int ev_kind; /* EV_PEER; first: see EV_INCONN */
    struct sinter_raft_transport *t;
    sinter_raft_id id;
    char *url;
    nng_mtx *mtx;
    nng_stream_dialer *dialer;
    nng_stream *conn;
    uint64_t gen; /* bumped on every connection change; stale callbacks compare against it */
    uint64_t tx_gen, rd_gen;
    nng_aio *dial_aio, *tx_aio, *rd_aio, *retry_aio;
    bool dialing, retry_wait, writing, reading, closing;
    uint32_t backoff_ms;
    uint8_t rd_byte;
    struct txframe *open; /* BATCH being filled */
    struct txframe *qh, *qt;
    struct txframe *inflight;
    size_t inflight_off;
    struct txframe *free;
    uint32_t n_free;
    uint32_t q_frames; /* sealed + in flight */
    size_t q_bytes;    /* sealed + in flight + open */
    struct sinter_raft_transport_stats st;
    struct snap_tx *snaps;
    nng_mtx *rx_mtx;
    struct snap_rx *rx_snaps;
    /* Native outbound (see the top of the file). `writing` means EPOLLOUT is armed. */
    bool native;
    bool connecting;   /* fd's non-blocking connect() has not completed */
    int fd;            /* -1: no connection */
    int af;            /* from the URL: AF_UNSPEC, AF_INET or AF_INET6 */
    uint32_t dial_seq; /* failed dials: picks the next resolved address */
    size_t woff;       /* bytes of qh already written */
    struct snap_tx
        *snap_lost; /* streams whose chunk a broken connection lost; the tick fails them */
    char host[256], port[8];
};

/* A received frame: the decoded view and the bytes it points into, in one allocation. */
struct rx_impl {
    struct sinter_raft_transport_rx pub; /* first: rx_release() casts back */
    struct sinter_raft_wire_frame f;
    size_t len; /* whole frame, from its header */
    size_t cap; /* bytes allocated at data while the frame is being read */
    uint8_t data[];
};

/* The receive buffer starts at most this big and doubles as bytes actually arrive, so a header
 * that announces the maximum body and then sends nothing costs 64 KiB, not 32 MiB, per
 * connection (max_inbound of them could otherwise pin gigabytes). */
#define RX_INITIAL (64u << 10)

enum { IN_HEADER, IN_BODY };

/* Native inbound: one read(2) fills at most this much of a connection's staging buffer, so a burst
 * of small frames costs one system call; a body still missing at least this much is read straight
 * into the frame's buffer instead (no copy of snapshot chunks). */
#define NATIVE_STAGE      (16u << 10)
#define NATIVE_EVENTS     64u /* epoll events taken per pump */
#define NATIVE_ACCEPTS    16u /* connections accepted per pump */
#define NATIVE_SELF_BATCH 64u /* frames per pump on the transport's own pump thread */

struct inconn {
    struct inconn *next, *prev;
    struct sinter_raft_transport *t;
    nng_stream *s;
    nng_aio *aio;
    int state;
    size_t have;
    uint8_t hdr[SINTER_RAFT_WIRE_HEADER_SIZE];
    struct rx_impl *rx;
};

/* A natively read inbound connection (pumping thread only, see the top of the file). */
struct nconn {
    int ev_kind;               /* EV_INCONN; first: see EV_INCONN */
    struct nconn *next, *prev; /* t->nconns */
    struct nconn *pend_next;   /* t->npend: frames or bytes buffered, not yet dispatched */
    struct nconn *res_next;    /* t->nresumed (under t->nmtx) */
    struct nconn *work_next;   /* t->wq (under t->nmtx) */
    int fd;
    bool pending; /* on t->npend */
    bool paused;  /* its snapshot frame is with the snapshot thread; not in the epoll set */
    int state;
    size_t have; /* bytes of the current frame (header included) */
    uint8_t hdr[SINTER_RAFT_WIRE_HEADER_SIZE];
    struct rx_impl *rx;   /* the frame being read (IN_BODY) */
    struct rx_impl *held; /* the snapshot frame handed to the snapshot thread */
    size_t soff, slen;    /* unconsumed bytes are stage[soff, slen) */
    uint8_t stage[NATIVE_STAGE];
};

struct sinter_raft_transport {
    struct sinter_raft_transport_opts o;
    char *listen_url;
    nng_tls_config *tls_server, *tls_client;
    nng_stream_listener *listener;
    nng_aio *acc_aio, *tick_aio;
    nng_mtx *mtx;
    bool closing;
    bool accept_stalled;
    uint16_t port;
    struct inconn *inconns;
    uint32_t n_inconns;
    struct sinter_raft_transport_global_stats gst;
    struct peer *peers[SINTER_RAFT_TRANSPORT_MAX_PEERS];
    _Atomic size_t n_peers; /* slots [0, n_peers) are filled and never change */
    /* Native inbound (tcp:// listen URL). */
    bool native;
    int lfd, epfd, kick_fd; /* listening socket, epoll set, eventfd that makes epfd readable */
    int watch_fd;         /* the caller's own fd in epfd (sinter_raft_transport_watch_fd), or -1 */
    struct nconn *nconns; /* every native connection (pumping thread; close()) */
    struct nconn *npend, *npend_tail;
    nng_mtx *nmtx;              /* nresumed, wq, nstop */
    nng_cv *ncv;                /* wq non-empty or nstop */
    struct nconn *nresumed;     /* handed back by the snapshot thread */
    struct nconn *wq, *wq_tail; /* snapshot frames waiting for the snapshot thread */
    bool nstop;
    atomic_bool pump_stop;
    nng_thread *pump_thr, *snap_thr;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */
static char *dup_str(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}

static bool is_tls_url(const char *url)
{
    return strncmp(url, "tls+", 4) == 0;
}

static struct peer *find_peer(struct sinter_raft_transport *t, sinter_raft_id id)
{
    size_t n = atomic_load_explicit(&t->n_peers, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (t->peers[i]->id == id) {
            return t->peers[i];
        }
    }
    return NULL;
}

static int map_nng(int rv)
{
    switch (rv) {
    case 0:
        return SINTER_OK;
    case NNG_ENOMEM:
        return SINTER_ENOMEM;
    case NNG_EADDRINVAL:
    case NNG_EINVAL:
    case NNG_ENOTSUP:
        return SINTER_ECONFIG;
    default:
        return SINTER_ETRANSPORT;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Outbound: frames, queue, writer, dialer. All "locked" functions expect p->mtx held.
 */
static void nout_broken(struct peer *p);
static void nout_flush(struct peer *p);
static int native_url(const char *url, bool *native, int *af, char *host, size_t host_cap,
                      char *port, size_t port_cap);

/* A connection that carries frames (a native connect() still in progress does not). */
static bool peer_connected(const struct peer *p) /* locked */
{
    return p->native ? p->fd >= 0 && !p->connecting : p->conn != NULL;
}

/* A connection, or a native connect() in progress: nothing to redial. */
static bool peer_has_conn(const struct peer *p) /* locked */
{
    return p->native ? p->fd >= 0 : p->conn != NULL;
}

static struct txframe *frame_get(struct peer *p) /* locked */
{
    struct txframe *f = p->free;
    if (f != NULL) {
        p->free = f->next;
        p->n_free--;
        f->next = NULL;
        f->group = 0;
        return f;
    }
    f = calloc(1, sizeof(*f));
    return f;
}

static void frame_put(struct peer *p, struct txframe *f) /* locked */
{
    if (p->n_free < FREE_FRAMES && f->b.cap <= FREE_MAX_CAP) {
        f->next = p->free;
        p->free = f;
        p->n_free++;
        return;
    }
    sinter_raft_wire_buf_free(&f->b);
    free(f);
}

static void q_push(struct peer *p, struct txframe *f) /* locked; f's bytes already counted */
{
    f->next = NULL;
    if (p->qt != NULL) {
        p->qt->next = f;
    } else {
        p->qh = f;
    }
    p->qt = f;
    p->q_frames++;
}

static void seal_open(struct peer *p) /* locked */
{
    if (p->open == NULL || p->open->b.count == 0) {
        return;
    }
    (void)sinter_raft_wire_seal(&p->open->b, p->t->o.self);
    q_push(p, p->open);
    p->open = NULL;
}

static void issue_write(struct peer *p) /* locked */
{
    nng_iov iov;
    iov.iov_buf = p->inflight->b.data + p->inflight_off;
    iov.iov_len = p->inflight->b.len - p->inflight_off;
    nng_aio_set_iov(p->tx_aio, 1, &iov);
    p->writing = true;
    nng_stream_send(p->conn, p->tx_aio);
}

static void start_write(struct peer *p) /* locked */
{
    if (p->native) {
        /* Written now, on this thread; with EPOLLOUT armed (`writing`) the pumping thread
         * writes the queue when the socket drains, in order. */
        if (!p->writing && !p->closing && peer_connected(p)) {
            nout_flush(p);
        }
        return;
    }
    if (p->writing || p->conn == NULL || p->closing || p->qh == NULL) {
        return;
    }
    struct txframe *f = p->qh;
    p->qh = f->next;
    if (p->qh == NULL) {
        p->qt = NULL;
    }
    f->next = NULL;
    p->inflight = f;
    p->inflight_off = 0;
    p->tx_gen = p->gen;
    issue_write(p);
}

static void start_read(struct peer *p) /* locked */
{
    if (p->reading || p->conn == NULL || p->closing) {
        return;
    }
    nng_iov iov = {.iov_buf = &p->rd_byte, .iov_len = 1};
    nng_aio_set_iov(p->rd_aio, 1, &iov);
    p->reading = true;
    p->rd_gen = p->gen;
    nng_stream_recv(p->conn, p->rd_aio);
}

static void schedule_redial(struct peer *p) /* locked */
{
    if (p->closing || p->dialing || p->retry_wait || peer_has_conn(p)) {
        return;
    }
    p->retry_wait = true;
    nng_sleep_aio((nng_duration)p->backoff_ms, p->retry_aio);
    /* Exponential backoff between failed dials, as nng's own dialer does with
     * NNG_OPT_RECONNMINT / NNG_OPT_RECONNMAXT. */
    uint32_t next = p->backoff_ms * 2;
    p->backoff_ms = next > p->t->o.reconnect_max_ms ? p->t->o.reconnect_max_ms : next;
}

/* Drops the queued (not in-flight) coalesced heartbeat frames of kind `type`
 * (SINTER_RAFT_WIRE_HEARTBEAT or _HEARTBEAT_RESP; 0: both). A beat only says "the leader of term T
 * is alive, commit is C" at the time it was sent; the next tick's round says it again, fresher. So
 * beats queued for a peer that is not connected are worth nothing by the time it is, and
 * delivering hundreds of them in a burst on reconnect (raft/host/FINDINGS.md T1) only costs the
 * catching-up node CPU. */
static void drop_queued_beats(struct peer *p, uint8_t type) /* locked */
{
    struct txframe **pp = &p->qh, *last = NULL;
    while (*pp != NULL) {
        struct txframe *f = *pp;
        bool beat =
            f->b.type == SINTER_RAFT_WIRE_HEARTBEAT || f->b.type == SINTER_RAFT_WIRE_HEARTBEAT_RESP;
        if (beat && (type == 0 || f->b.type == type)) {
            *pp = f->next;
            p->q_frames--;
            p->q_bytes -= f->b.len;
            p->st.tx_stale_beat_frames++;
            frame_put(p, f);
        } else {
            last = f;
            pp = &f->next;
        }
    }
    p->qt = last;
}

static void conn_broken(struct peer *p) /* locked */
{
    if (p->native) {
        nout_broken(p);
        return;
    }
    if (p->conn == NULL) {
        return;
    }
    drop_queued_beats(p, 0);
    /* Close fails the pending read/write with NNG_ECLOSED (their callbacks see a stale gen);
     * free is deferred by nng to its reaper, so it is safe from a callback. */
    nng_stream_close(p->conn);
    nng_stream_free(p->conn);
    p->conn = NULL;
    p->gen++;
    p->st.disconnects++;
    schedule_redial(p);
}

/* Fails the snapshot to group (if any) after its chunk frame was lost. Returns the unlinked
 * stream for the caller to complete outside the lock. */
static struct snap_tx *snap_unlink(struct peer *p, uint32_t group) /* locked */
{
    for (struct snap_tx **pp = &p->snaps; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->group == group) {
            struct snap_tx *s = *pp;
            *pp = s->next;
            s->next = NULL;
            return s;
        }
    }
    return NULL;
}

static void snap_free(struct snap_tx *s)
{
    free(s->chunk);
    free(s);
}

static void snap_complete(struct peer *p, struct snap_tx *s, int rc)
{
    if (s == NULL) {
        return;
    }
    if (s->done != NULL) {
        s->done(s->arg, p->id, s->group, rc);
    }
    snap_free(s);
}

/* Counts a frame completely written. */
static void count_tx(struct peer *p, const struct txframe *f) /* locked */
{
    p->st.tx_frames++;
    p->st.tx_bytes += f->b.len;
    switch (f->b.type) {
    case SINTER_RAFT_WIRE_BATCH:
        p->st.tx_msgs += f->b.count;
        break;
    case SINTER_RAFT_WIRE_HEARTBEAT:
    case SINTER_RAFT_WIRE_HEARTBEAT_RESP:
        p->st.tx_heartbeat_frames++;
        p->st.tx_beats += f->b.count;
        break;
    case SINTER_RAFT_WIRE_SNAP_CHUNK:
        p->st.tx_snapshot_chunks++;
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Native outbound (tcp:// peers of a native transport): see the top of the file.
 */
#define NOUT_IOV 16u /* queued frames handed to one sendmsg() */

static void q_pop(struct peer *p) /* locked; drops qh and its counts */
{
    struct txframe *f = p->qh;
    p->qh = f->next;
    if (p->qh == NULL) {
        p->qt = NULL;
    }
    p->woff = 0;
    p->q_frames--;
    p->q_bytes -= f->b.len;
    frame_put(p, f);
}

/* Watches the socket for the peer closing it and, with `out`, for room to write. */
static int nout_watch(struct peer *p, int op, bool out) /* locked */
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0u), .data.ptr = p};
    return epoll_ctl(p->t->epfd, op, p->fd, &ev);
}

/* Drops the connection (an error, EOF, the peer writing to us, close()): the frame partly
 * written cannot be resumed on the next connection and is lost (Raft recovers lost messages by
 * retrying, dissertation 3.5); whole frames still queued go on the next one, except heartbeats
 * (drop_queued_beats). Then redials with backoff. */
static void nout_broken(struct peer *p) /* locked */
{
    if (p->fd < 0) {
        return;
    }
    if (p->woff > 0) {
        struct txframe *f = p->qh;
        p->st.tx_dropped_frames++;
        if (f->b.type == SINTER_RAFT_WIRE_SNAP_CHUNK) {
            struct snap_tx *s = snap_unlink(p, f->group);
            if (s != NULL) {
                s->next = p->snap_lost;
                p->snap_lost = s;
            }
        }
        q_pop(p);
    }
    p->woff = 0;
    if (!p->connecting) {
        drop_queued_beats(p, 0); /* a failed dial keeps them, as nng's dial_cb does */
    }
    (void)epoll_ctl(p->t->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->fd = -1;
    p->writing = false;
    if (p->connecting) {
        p->connecting = false;
        p->st.dial_failures++;
        p->dial_seq++; /* the next dial tries the next address of the name */
    } else {
        p->gen++;
        p->st.disconnects++;
    }
    schedule_redial(p);
}

/* Writes queued frames until the queue is empty or the kernel buffer is full; then EPOLLOUT is
 * armed and the pumping thread goes on (nout_event). A queue drained while more messages were
 * batched sends them too, as tx_cb does (the network's group commit). */
static void nout_flush(struct peer *p) /* locked; connected */
{
    for (;;) {
        if (p->qh == NULL) {
            seal_open(p);
            if (p->qh == NULL) {
                break;
            }
        }
        struct iovec iov[NOUT_IOV];
        size_t n = 0, off = p->woff;
        for (struct txframe *f = p->qh; f != NULL && n < NOUT_IOV; f = f->next) {
            iov[n].iov_base = f->b.data + off;
            iov[n].iov_len = f->b.len - off;
            off = 0;
            n++;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = n;
        /* MSG_NOSIGNAL: a peer that reset the connection gives EPIPE, never SIGPIPE. */
        ssize_t w = sendmsg(p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!p->writing) {
                    if (nout_watch(p, EPOLL_CTL_MOD, true) != 0) {
                        nout_broken(p); /* ENOMEM: nothing would ever write the rest */
                        return;
                    }
                    p->writing = true;
                    p->st.tx_blocked++;
                }
                return;
            }
            nout_broken(p); /* EPIPE, ECONNRESET, ETIMEDOUT... */
            return;
        }
        size_t left = (size_t)w;
        while (left > 0) {
            struct txframe *f = p->qh;
            size_t rem = f->b.len - p->woff;
            if (left < rem) {
                p->woff += left;
                break;
            }
            left -= rem;
            count_tx(p, f);
            q_pop(p);
        }
    }
    if (p->writing) {
        p->writing = false;
        if (nout_watch(p, EPOLL_CTL_MOD, false) != 0) {
            nout_broken(p);
        }
    }
}

static void nout_connected(struct peer *p) /* locked */
{
    p->connecting = false;
    p->gen++;
    p->st.connects++;
    p->backoff_ms = p->t->o.reconnect_min_ms;
    nout_flush(p);
}

/* Starts a non-blocking connect() to the peer (the first address the resolver gives, or the next
 * one after a failure); completion is an EPOLLOUT event on the pumping thread. A failure is
 * counted and redialled with backoff, like nng's dialer. Called without p->mtx and with
 * p->dialing set (so nothing else dials): the name is resolved without the lock, since a slow
 * resolver must not stall the sends to this peer (host and port never change). */
static void nout_dial(struct peer *p)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = p->af;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    int grc = getaddrinfo(p->host, p->port, &hints, &res);
    nng_mtx_lock(p->mtx);
    p->dialing = false;
    if (p->closing) {
        nng_mtx_unlock(p->mtx);
        if (grc == 0) {
            freeaddrinfo(res);
        }
        return;
    }
    if (grc != 0 || res == NULL) {
        p->st.dial_failures++;
        schedule_redial(p);
        nng_mtx_unlock(p->mtx);
        return;
    }
    size_t n_addr = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        n_addr++;
    }
    struct addrinfo *a = res;
    for (size_t i = p->dial_seq % n_addr; i > 0; i--) {
        a = a->ai_next;
    }
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = -1;
    if (fd >= 0) {
        int one = 1;
        /* Frames are whole messages already batched: send each at once (nng sets the same). */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        do {
            rc = connect(fd, a->ai_addr, a->ai_addrlen);
        } while (rc != 0 && errno == EINTR);
        if (rc != 0 && errno == EINPROGRESS) {
            rc = 1;
        }
    }
    freeaddrinfo(res);
    if (rc < 0) {
        if (fd >= 0) {
            close(fd);
        }
        p->st.dial_failures++;
        p->dial_seq++;
        schedule_redial(p);
        nng_mtx_unlock(p->mtx);
        return;
    }
    p->fd = fd;
    p->connecting = rc == 1;
    p->writing = false;
    p->woff = 0;
    struct epoll_event ev = {.events = p->connecting ? EPOLLOUT : EPOLLIN | EPOLLRDHUP,
                             .data.ptr = p};
    if (epoll_ctl(p->t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        p->connecting = true; /* counted as a failed dial */
        nout_broken(p);
    } else if (!p->connecting) {
        nout_connected(p); /* loopback often connects at once */
    }
    nng_mtx_unlock(p->mtx);
}

/* The pumping thread: an epoll event for the peer's socket. */
static void nout_event(struct peer *p, uint32_t events)
{
    nng_mtx_lock(p->mtx);
    if (p->closing || p->fd < 0) {
        nng_mtx_unlock(p->mtx); /* stale: that connection is gone */
        return;
    }
    if (p->connecting) {
        /* The event may belong to an older descriptor: ask the current one. */
        struct pollfd pf = {.fd = p->fd, .events = POLLOUT};
        if (poll(&pf, 1, 0) > 0) {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                err = errno;
            }
            if (err == 0 && (pf.revents & POLLOUT) != 0 &&
                (pf.revents & (POLLERR | POLLHUP)) == 0 &&
                nout_watch(p, EPOLL_CTL_MOD, false) == 0) {
                nout_connected(p);
            } else {
                nout_broken(p); /* ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH... */
            }
        }
        nng_mtx_unlock(p->mtx);
        return;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        /* The peer never writes here: EOF, an error or a byte all end the connection. EAGAIN:
         * the event was an older descriptor's. */
        uint8_t b;
        ssize_t n = recv(p->fd, &b, 1, MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            nout_broken(p);
            nng_mtx_unlock(p->mtx);
            return;
        }
    }
    if ((events & EPOLLOUT) != 0 && p->writing) {
        nout_flush(p);
    }
    nng_mtx_unlock(p->mtx);
}

static void tx_cb(void *arg)
{
    struct peer *p = arg;
    int rv = nng_aio_result(p->tx_aio);
    struct snap_tx *lost = NULL;

    nng_mtx_lock(p->mtx);
    p->writing = false;
    struct txframe *f = p->inflight;
    bool current = p->tx_gen == p->gen && p->conn != NULL;
    if (f != NULL && rv == 0 && current) {
        p->inflight_off += nng_aio_count(p->tx_aio);
        if (p->inflight_off < f->b.len) {
            issue_write(p); /* short write: the rest of the frame */
            nng_mtx_unlock(p->mtx);
            return;
        }
        count_tx(p, f);
    } else if (f != NULL) {
        /* A frame partly written on a broken connection cannot be resumed on the next one:
         * drop it (Raft recovers lost messages by retrying, dissertation 3.5). */
        p->st.tx_dropped_frames++;
        if (f->b.type == SINTER_RAFT_WIRE_SNAP_CHUNK) {
            lost = snap_unlink(p, f->group);
        }
        if (rv != 0 && current) {
            conn_broken(p);
        }
    }
    if (f != NULL) {
        p->inflight = NULL;
        p->q_frames--;
        p->q_bytes -= f->b.len;
        frame_put(p, f);
    }
    /* Queue drained while more messages were batched: send them now (the network's group
     * commit: whatever accumulated during one write leaves as the next frame). */
    if (p->qh == NULL) {
        seal_open(p);
    }
    start_write(p);
    nng_mtx_unlock(p->mtx);
    snap_complete(p, lost, SINTER_ETRANSPORT);
}

static void rd_cb(void *arg)
{
    struct peer *p = arg;
    int rv = nng_aio_result(p->rd_aio);
    nng_mtx_lock(p->mtx);
    p->reading = false;
    if (p->rd_gen == p->gen && p->conn != NULL) {
        /* EOF/error: the peer went away. A byte: the peer broke the one-way rule. Either way
         * this connection is done; redial. */
        (void)rv;
        conn_broken(p);
    } else {
        start_read(p); /* stale completion of an older connection */
    }
    nng_mtx_unlock(p->mtx);
}

static void dial_cb(void *arg)
{
    struct peer *p = arg;
    int rv = nng_aio_result(p->dial_aio);
    nng_stream *s = rv == 0 ? nng_aio_get_output(p->dial_aio, 0) : NULL;
    nng_mtx_lock(p->mtx);
    p->dialing = false;
    if (p->closing) {
        nng_mtx_unlock(p->mtx);
        if (s != NULL) {
            nng_stream_free(s);
        }
        return;
    }
    if (rv == 0) {
        (void)nng_stream_set_bool(s, NNG_OPT_TCP_NODELAY, true);
        (void)nng_stream_set_bool(s, NNG_OPT_TCP_KEEPALIVE, true);
        p->conn = s;
        p->gen++;
        p->st.connects++;
        p->backoff_ms = p->t->o.reconnect_min_ms;
        start_read(p);
        start_write(p);
    } else {
        schedule_redial(p);
    }
    nng_mtx_unlock(p->mtx);
}

static void retry_cb(void *arg)
{
    struct peer *p = arg;
    nng_mtx_lock(p->mtx);
    p->retry_wait = false;
    bool native = false;
    if (!p->closing && !peer_has_conn(p) && !p->dialing) {
        p->dialing = true;
        native = p->native;
        if (!native) {
            nng_stream_dialer_dial(p->dialer, p->dial_aio);
        }
    }
    nng_mtx_unlock(p->mtx);
    if (native) {
        nout_dial(p); /* close() waits for this callback (nng_aio_stop), so p stays valid */
    }
}

/* ---------------------------------------------------------------------------------------------
 * Peers
 */
static void peer_free(struct peer *p)
{
    if (p == NULL) {
        return;
    }
    if (p->dial_aio != NULL) {
        nng_aio_free(p->dial_aio);
    }
    nng_aio_free(p->tx_aio);
    nng_aio_free(p->rd_aio);
    nng_aio_free(p->retry_aio);
    if (p->conn != NULL) {
        nng_stream_free(p->conn);
    }
    if (p->fd >= 0) {
        close(p->fd);
    }
    if (p->dialer != NULL) {
        nng_stream_dialer_free(p->dialer);
    }
    struct txframe *lists[] = {p->open, p->inflight, p->qh, p->free};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        struct txframe *f = lists[i];
        bool chain = i >= 2;
        while (f != NULL) {
            struct txframe *next = chain ? f->next : NULL;
            sinter_raft_wire_buf_free(&f->b);
            free(f);
            f = next;
        }
    }
    if (p->mtx != NULL) {
        nng_mtx_free(p->mtx);
    }
    if (p->rx_mtx != NULL) {
        nng_mtx_free(p->rx_mtx);
    }
    free(p->url);
    free(p);
}

static int check_url(const struct sinter_raft_transport *t, const char *url)
{
    if (url == NULL || url[0] == '\0') {
        return SINTER_EINVAL;
    }
    /* TLS is all or nothing: a cluster that enables it must not silently talk plain TCP. */
    if (is_tls_url(url) != t->o.tls_enable) {
        return SINTER_EINVAL;
    }
    return SINTER_OK;
}

static int peer_new(struct sinter_raft_transport *t, sinter_raft_id id, const char *url,
                    struct peer **out)
{
    int rc = check_url(t, url);
    if (rc != SINTER_OK) {
        return rc;
    }
    struct peer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return SINTER_ENOMEM;
    }
    p->ev_kind = EV_PEER;
    p->t = t;
    p->id = id;
    p->fd = -1;
    p->backoff_ms = t->o.reconnect_min_ms;
    if (t->native) {
        /* A tcp:// peer of a transport that has the epoll set is dialled natively; tls+tcp://
         * (and a host-less URL, which nng refuses below) keeps nng's dialer. */
        bool native = false;
        rc = native_url(url, &native, &p->af, p->host, sizeof p->host, p->port, sizeof p->port);
        if (rc != SINTER_OK) {
            free(p);
            return rc;
        }
        p->native = native && p->host[0] != '\0';
    }
    p->url = dup_str(url);
    int rv = p->url == NULL ? NNG_ENOMEM : 0;
    if (rv == 0) {
        rv = nng_mtx_alloc(&p->mtx);
    }
    if (rv == 0) {
        rv = nng_mtx_alloc(&p->rx_mtx);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&p->dial_aio, dial_cb, p);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&p->tx_aio, tx_cb, p);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&p->rd_aio, rd_cb, p);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&p->retry_aio, retry_cb, p);
    }
    if (rv != 0) {
        peer_free(p);
        return map_nng(rv);
    }
    rv = p->native ? 0 : nng_stream_dialer_alloc(&p->dialer, url);
    if (rv == 0 && !p->native && t->tls_client != NULL) {
        rv = nng_stream_dialer_set_ptr(p->dialer, NNG_OPT_TLS_CONFIG, t->tls_client);
    }
    if (rv != 0) {
        peer_free(p);
        return rv == NNG_ENOMEM ? SINTER_ENOMEM : SINTER_ECONFIG;
    }
    *out = p;
    return SINTER_OK;
}

/* Adds a peer and starts dialing; caller holds t->mtx (serialises adders). */
static int add_peer_locked(struct sinter_raft_transport *t, sinter_raft_id id, const char *url)
{
    if (id == 0 || id == t->o.self) {
        return SINTER_EINVAL;
    }
    if (find_peer(t, id) != NULL) {
        return SINTER_EEXIST;
    }
    size_t n = atomic_load_explicit(&t->n_peers, memory_order_relaxed);
    if (n >= SINTER_RAFT_TRANSPORT_MAX_PEERS) {
        return SINTER_ETOOBIG;
    }
    struct peer *p = NULL;
    int rc = peer_new(t, id, url, &p);
    if (rc != SINTER_OK) {
        return rc;
    }
    t->peers[n] = p;
    atomic_store_explicit(&t->n_peers, n + 1, memory_order_release);
    nng_mtx_lock(p->mtx);
    p->dialing = true;
    if (!p->native) {
        nng_stream_dialer_dial(p->dialer, p->dial_aio);
    }
    nng_mtx_unlock(p->mtx);
    if (p->native) {
        nout_dial(p); /* close() cannot run meanwhile: it waits for t->mtx, held by the adder */
    }
    return SINTER_OK;
}

int sinter_raft_transport_add_peer(struct sinter_raft_transport *t, sinter_raft_id id,
                                   const char *url)
{
    if (t == NULL) {
        return SINTER_EINVAL;
    }
    nng_mtx_lock(t->mtx);
    int rc = t->closing ? SINTER_ESHUTDOWN : add_peer_locked(t, id, url);
    nng_mtx_unlock(t->mtx);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Sending API
 */
int sinter_raft_transport_send(struct sinter_raft_transport *t, uint32_t group,
                               const struct sinter_raft_msg *m)
{
    if (t == NULL || m == NULL || m->from != t->o.self) {
        return SINTER_EINVAL; /* the receiver drops a frame whose messages lie about the sender */
    }
    struct peer *p = find_peer(t, m->to);
    if (p == NULL) {
        return SINTER_ENOTFOUND;
    }
    size_t sz = sinter_raft_wire_msg_size(m);
    int rc = SINTER_OK;
    nng_mtx_lock(p->mtx);
    if (p->closing) {
        rc = SINTER_ESHUTDOWN;
        goto out;
    }
    if (p->q_frames >= t->o.max_queue_frames || p->q_bytes + sz > t->o.max_queue_bytes) {
        p->st.tx_busy++; /* back-pressure: fail fast, never wait for a slow peer */
        rc = SINTER_EBUSY;
        goto out;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (p->open == NULL) {
            struct txframe *f = frame_get(p);
            if (f == NULL) {
                rc = SINTER_ENOMEM;
                goto out;
            }
            rc = sinter_raft_wire_begin(&f->b, SINTER_RAFT_WIRE_BATCH);
            if (rc != SINTER_OK) {
                frame_put(p, f);
                goto out;
            }
            p->open = f;
            p->q_bytes += f->b.len;
        }
        size_t before = p->open->b.len;
        rc = sinter_raft_wire_add_msg(&p->open->b, group, m);
        if (rc == SINTER_ETOOBIG && p->open->b.count > 0 && attempt == 0) {
            seal_open(p); /* frame full: this message starts the next one */
            continue;
        }
        if (rc == SINTER_OK) {
            p->q_bytes += p->open->b.len - before;
        }
        break;
    }
    if (rc == SINTER_OK && p->open->b.len >= t->o.max_batch_bytes) {
        seal_open(p);
        start_write(p);
    }
out:
    nng_mtx_unlock(p->mtx);
    return rc;
}

static void flush_peer(struct peer *p)
{
    nng_mtx_lock(p->mtx);
    seal_open(p);
    start_write(p);
    nng_mtx_unlock(p->mtx);
}

int sinter_raft_transport_flush(struct sinter_raft_transport *t, sinter_raft_id peer)
{
    if (t == NULL) {
        return SINTER_EINVAL;
    }
    if (peer == 0) {
        size_t n = atomic_load_explicit(&t->n_peers, memory_order_acquire);
        for (size_t i = 0; i < n; i++) {
            flush_peer(t->peers[i]);
        }
        return SINTER_OK;
    }
    struct peer *p = find_peer(t, peer);
    if (p == NULL) {
        return SINTER_ENOTFOUND;
    }
    flush_peer(p);
    return SINTER_OK;
}

int sinter_raft_transport_send_heartbeats(struct sinter_raft_transport *t, sinter_raft_id peer,
                                          bool resp, const struct sinter_raft_wire_beat *beats,
                                          size_t n)
{
    if (t == NULL || beats == NULL || n == 0) {
        return SINTER_EINVAL;
    }
    if (n > SINTER_RAFT_WIRE_MAX_BEATS) {
        return SINTER_ETOOBIG;
    }
    struct peer *p = find_peer(t, peer);
    if (p == NULL) {
        return SINTER_ENOTFOUND;
    }
    size_t sz = SINTER_RAFT_WIRE_HEADER_SIZE + 4 + n * SINTER_RAFT_WIRE_BEAT_SIZE;
    int rc;
    nng_mtx_lock(p->mtx);
    if (!peer_connected(p) && !p->closing) {
        /* Not connected: this round replaces the previous one waiting in the queue (T1). */
        drop_queued_beats(p, resp ? SINTER_RAFT_WIRE_HEARTBEAT_RESP : SINTER_RAFT_WIRE_HEARTBEAT);
    }
    if (p->closing) {
        rc = SINTER_ESHUTDOWN;
    } else if (p->q_frames >= t->o.max_queue_frames || p->q_bytes + sz > t->o.max_queue_bytes) {
        p->st.tx_busy++;
        rc = SINTER_EBUSY;
    } else {
        struct txframe *f = frame_get(p);
        rc = f == NULL ? SINTER_ENOMEM
                       : sinter_raft_wire_encode_beats(&f->b, t->o.self, resp, beats, n);
        if (rc == SINTER_OK) {
            seal_open(p); /* messages queued before the beats leave before them */
            p->q_bytes += f->b.len;
            q_push(p, f);
            start_write(p);
        } else if (f != NULL) {
            frame_put(p, f);
        }
    }
    nng_mtx_unlock(p->mtx);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Snapshot sending
 */

/* Reads and queues the chunk at offset. s->busy is set by the caller, so nothing frees s
 * meanwhile; the reader runs without any lock held. */
static int snap_send_chunk(struct peer *p, struct snap_tx *s, uint64_t offset)
{
    struct sinter_raft_transport *t = p->t;
    uint64_t left = s->total - offset;
    uint32_t len = left < t->o.snapshot_chunk_bytes ? (uint32_t)left : t->o.snapshot_chunk_bytes;
    int rc = len != 0 ? s->read(s->arg, offset, s->chunk, len) : SINTER_OK;
    if (rc != SINTER_OK) {
        return rc;
    }
    struct sinter_raft_wire_chunk c = {
        .group = s->group,
        .last = offset + len == s->total,
        .total = s->total,
        .offset = offset,
        .len = len,
        .data = s->chunk,
        .msg = s->msg,
    };
    nng_mtx_lock(p->mtx);
    if (p->closing) {
        nng_mtx_unlock(p->mtx);
        return SINTER_ESHUTDOWN;
    }
    struct txframe *f = frame_get(p);
    rc = f == NULL ? SINTER_ENOMEM : sinter_raft_wire_encode_chunk(&f->b, t->o.self, &c);
    if (rc == SINTER_OK) {
        f->group = s->group;
        p->q_bytes += f->b.len;
        q_push(p, f); /* bypasses max_queue_*: one chunk per stream is in flight */
        start_write(p);
        s->offset = offset;
        s->len = len;
        s->deadline = nng_clock() + t->o.snapshot_timeout_ms;
        s->busy = false;
    } else if (f != NULL) {
        frame_put(p, f);
    }
    nng_mtx_unlock(p->mtx);
    return rc;
}

int sinter_raft_transport_send_snapshot(struct sinter_raft_transport *t, uint32_t group,
                                        const struct sinter_raft_msg *m, uint64_t total,
                                        sinter_raft_snapshot_read_fn read,
                                        sinter_raft_snapshot_done_fn done, void *arg)
{
    if (t == NULL || m == NULL || read == NULL || m->type != SINTER_RAFT_MSG_SNAPSHOT ||
        m->n_entries != 0) {
        return SINTER_EINVAL;
    }
    struct peer *p = find_peer(t, m->to);
    if (p == NULL) {
        return SINTER_ENOTFOUND;
    }
    struct snap_tx *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return SINTER_ENOMEM;
    }
    s->group = group;
    s->msg = *m;
    s->msg.entries = NULL;
    s->total = total;
    s->read = read;
    s->done = done;
    s->arg = arg;
    s->busy = true;
    uint32_t cap = total < t->o.snapshot_chunk_bytes ? (uint32_t)total : t->o.snapshot_chunk_bytes;
    s->chunk = malloc(cap != 0 ? cap : 1);
    if (s->chunk == NULL) {
        snap_free(s);
        return SINTER_ENOMEM;
    }
    nng_mtx_lock(p->mtx);
    int rc = SINTER_OK;
    if (p->closing) {
        rc = SINTER_ESHUTDOWN;
    } else {
        for (struct snap_tx *o = p->snaps; o != NULL; o = o->next) {
            if (o->group == group) {
                rc = SINTER_EBUSY;
            }
        }
    }
    if (rc == SINTER_OK) {
        s->next = p->snaps;
        p->snaps = s;
    }
    nng_mtx_unlock(p->mtx);
    if (rc != SINTER_OK) {
        snap_free(s);
        return rc;
    }
    rc = snap_send_chunk(p, s, 0);
    if (rc != SINTER_OK) {
        nng_mtx_lock(p->mtx);
        snap_unlink(p, group);
        nng_mtx_unlock(p->mtx);
        snap_free(s);
    }
    return rc;
}

static void handle_ack(struct peer *p, const struct sinter_raft_wire_snap_ack *a)
{
    nng_mtx_lock(p->mtx);
    struct snap_tx *s = p->snaps;
    while (s != NULL && s->group != a->group) {
        s = s->next;
    }
    if (s == NULL || s->busy || a->index != s->msg.snapshot.index ||
        a->term != s->msg.snapshot.term) {
        nng_mtx_unlock(p->mtx); /* stale ack of an abandoned stream */
        return;
    }
    int rc = (int)a->status;
    bool finished = false;
    if (rc == SINTER_OK && a->next_offset != s->offset + s->len) {
        rc = SINTER_ETRANSPORT; /* the receiver lost track: give up, the core will retry */
    } else if (rc == SINTER_OK && s->offset + s->len == s->total) {
        finished = true;
    }
    if (rc != SINTER_OK || finished) {
        snap_unlink(p, s->group);
        nng_mtx_unlock(p->mtx);
        snap_complete(p, s, rc);
        return;
    }
    s->busy = true;
    uint64_t next = s->offset + s->len;
    nng_mtx_unlock(p->mtx);
    rc = snap_send_chunk(p, s, next);
    if (rc != SINTER_OK) {
        nng_mtx_lock(p->mtx);
        snap_unlink(p, s->group);
        nng_mtx_unlock(p->mtx);
        snap_complete(p, s, rc);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Snapshot receiving
 */
static void send_ack(struct peer *p, const struct sinter_raft_wire_snap_ack *a)
{
    nng_mtx_lock(p->mtx);
    if (!p->closing) {
        struct txframe *f = frame_get(p);
        if (f != NULL && sinter_raft_wire_encode_snap_ack(&f->b, p->t->o.self, a) == SINTER_OK) {
            p->q_bytes += f->b.len;
            q_push(p, f); /* acks bypass max_queue_*: the stream stalls without them */
            start_write(p);
        } else if (f != NULL) {
            frame_put(p, f);
        }
    }
    nng_mtx_unlock(p->mtx);
}

static uint32_t clamp_status(int rc)
{
    return rc >= 0 && rc < SINTER_ERROR_COUNT ? (uint32_t)rc : (uint32_t)SINTER_EINTERNAL;
}

static void rx_snap_drop(struct peer *p, struct snap_rx *r) /* rx_mtx held */
{
    for (struct snap_rx **pp = &p->rx_snaps; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    free(r);
}

static void handle_chunk(struct peer *p, const struct sinter_raft_wire_chunk *c)
{
    const struct sinter_raft_snapshot_sink *sink = &p->t->o.sink;
    struct sinter_raft_wire_snap_ack ack = {
        .group = c->group,
        .index = c->msg.snapshot.index,
        .term = c->msg.snapshot.term,
        .next_offset = c->offset,
    };
    int rc = SINTER_OK;
    nng_mtx_lock(p->rx_mtx);
    struct snap_rx *r = p->rx_snaps;
    while (r != NULL && r->group != c->group) {
        r = r->next;
    }
    if (sink->begin == NULL || sink->write == NULL || sink->finish == NULL) {
        rc = SINTER_EINVAL; /* this node takes no snapshots */
        goto ack;
    }
    if (c->offset == 0) {
        /* A new stream for the group supersedes an unfinished one (the leader restarted it,
         * maybe for a newer snapshot). */
        if (r != NULL) {
            if (sink->abort != NULL) {
                sink->abort(sink->arg, r->stream, SINTER_ECANCELED);
            }
            rx_snap_drop(p, r);
        }
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            rc = SINTER_ENOMEM;
            goto ack;
        }
        r->group = c->group;
        r->msg = c->msg;
        r->total = c->total;
        rc = sink->begin(sink->arg, p->id, c->group, &r->msg, c->total, &r->stream);
        if (rc != SINTER_OK) {
            free(r);
            r = NULL;
            goto ack;
        }
        r->next = p->rx_snaps;
        p->rx_snaps = r;
    } else if (r == NULL || r->next_off != c->offset || r->total != c->total ||
               r->msg.snapshot.index != c->msg.snapshot.index ||
               r->msg.snapshot.term != c->msg.snapshot.term) {
        /* Out of order, a gap, or a chunk of another snapshot: refuse and abort; the sender
         * fails the transfer and the core retries with a fresh stream. */
        rc = SINTER_ESTATE;
        if (r != NULL) {
            if (sink->abort != NULL) {
                sink->abort(sink->arg, r->stream, SINTER_ESTATE);
            }
            rx_snap_drop(p, r);
        }
        goto ack;
    }
    if (c->len != 0) {
        rc = sink->write(sink->arg, r->stream, c->offset, c->data, c->len);
        if (rc != SINTER_OK) {
            if (sink->abort != NULL) {
                sink->abort(sink->arg, r->stream, rc);
            }
            rx_snap_drop(p, r);
            goto ack;
        }
    }
    r->next_off += c->len;
    r->last = nng_clock();
    ack.next_offset = r->next_off;
    if (c->last) {
        rc = sink->finish(sink->arg, r->stream, p->id, c->group, &r->msg);
        rx_snap_drop(p, r);
    }
ack:
    nng_mtx_unlock(p->rx_mtx);
    ack.status = clamp_status(rc);
    send_ack(p, &ack);
}

/* ---------------------------------------------------------------------------------------------
 * Inbound connections
 */
void sinter_raft_transport_rx_release(struct sinter_raft_transport_rx *rx)
{
    if (rx == NULL) {
        return;
    }
    struct rx_impl *r = (struct rx_impl *)(void *)rx;
    sinter_raft_wire_frame_release(&r->f);
    free(r);
}

enum { DISPATCH_OK, DISPATCH_BAD, DISPATCH_HELD };

static void native_hand_off(struct sinter_raft_transport *t, struct nconn *c, struct rx_impl *r);

/* Decodes and dispatches one whole frame. Returns DISPATCH_BAD when the connection must be closed
 * (undecodable frame or a lying sender), DISPATCH_HELD when the frame went to the snapshot thread
 * (c, a native connection of a caller-pumps transport, is then paused). Takes ownership of r. */
static int dispatch(struct sinter_raft_transport *t, struct rx_impl *r, struct nconn *c)
{
    int rc = sinter_raft_wire_decode(r->data, r->len, &r->f);
    if (rc != SINTER_OK) {
        nng_mtx_lock(t->mtx);
        t->gst.rx_bad_frames++;
        nng_mtx_unlock(t->mtx);
        free(r);
        return DISPATCH_BAD;
    }
    struct sinter_raft_wire_frame *f = &r->f;
    struct peer *p = find_peer(t, f->sender);
    switch (f->type) {
    case SINTER_RAFT_WIRE_BATCH:
    case SINTER_RAFT_WIRE_HEARTBEAT:
    case SINTER_RAFT_WIRE_HEARTBEAT_RESP:
        for (size_t i = 0; i < f->n_msgs; i++) {
            if (f->type != SINTER_RAFT_WIRE_BATCH) {
                f->msgs[i].to = t->o.self;
            } else if (f->msgs[i].from != f->sender) {
                nng_mtx_lock(t->mtx);
                t->gst.rx_bad_sender++;
                nng_mtx_unlock(t->mtx);
                sinter_raft_transport_rx_release(&r->pub);
                return DISPATCH_BAD;
            }
        }
        if (p != NULL) {
            nng_mtx_lock(p->mtx);
            p->st.rx_frames++;
            p->st.rx_bytes += r->len;
            if (f->type == SINTER_RAFT_WIRE_BATCH) {
                p->st.rx_msgs += f->n_msgs;
            } else {
                p->st.rx_heartbeat_frames++;
                p->st.rx_beats += f->n_beats;
            }
            nng_mtx_unlock(p->mtx);
        } else {
            nng_mtx_lock(t->mtx);
            t->gst.rx_unknown++;
            nng_mtx_unlock(t->mtx);
        }
        r->pub.from = f->sender;
        r->pub.frame_type = f->type;
        r->pub.n = f->n_msgs;
        r->pub.groups = f->groups;
        r->pub.msgs = f->msgs;
        t->o.on_recv(t->o.on_recv_arg, &r->pub); /* ownership passes to the host */
        return DISPATCH_OK;
    case SINTER_RAFT_WIRE_SNAP_CHUNK:
    case SINTER_RAFT_WIRE_SNAP_ACK:
        if (p != NULL) {
            nng_mtx_lock(p->mtx);
            p->st.rx_frames++;
            p->st.rx_bytes += r->len;
            if (f->type == SINTER_RAFT_WIRE_SNAP_CHUNK) {
                p->st.rx_snapshot_chunks++;
            }
            nng_mtx_unlock(p->mtx);
            if (c != NULL && t->o.caller_pumps) {
                /* The pumping thread is the caller's event loop: the sink (chunks) and the
                 * snapshot reader (acks) may do disk I/O, which must not stall it. */
                native_hand_off(t, c, r);
                return DISPATCH_HELD;
            }
            if (f->type == SINTER_RAFT_WIRE_SNAP_CHUNK) {
                handle_chunk(p, &f->chunk);
            } else {
                handle_ack(p, &f->ack);
            }
        }
        break;
    default:
        break;
    }
    if (p == NULL) {
        nng_mtx_lock(t->mtx);
        t->gst.rx_unknown++;
        nng_mtx_unlock(t->mtx);
    }
    sinter_raft_transport_rx_release(&r->pub);
    return DISPATCH_OK;
}

static void inconn_read(struct inconn *c)
{
    nng_iov iov;
    if (c->state == IN_HEADER) {
        iov.iov_buf = c->hdr + c->have;
        iov.iov_len = sizeof(c->hdr) - c->have;
    } else {
        iov.iov_buf = c->rx->data + c->have;
        iov.iov_len = c->rx->cap - c->have;
    }
    nng_aio_set_iov(c->aio, 1, &iov);
    nng_stream_recv(c->s, c->aio);
}

static void inconn_cb(void *arg)
{
    struct inconn *c = arg;
    struct sinter_raft_transport *t = c->t;
    if (nng_aio_result(c->aio) != 0) {
        goto dead;
    }
    c->have += nng_aio_count(c->aio);
    if (c->state == IN_HEADER) {
        if (c->have < sizeof(c->hdr)) {
            inconn_read(c);
            return;
        }
        /* Validate the header before allocating for the body: the body size is bounded by
         * SINTER_RAFT_WIRE_MAX_BODY and garbage fails on the magic. The buffer then grows
         * with the bytes received (RX_INITIAL). */
        struct sinter_raft_wire_header h;
        if (sinter_raft_wire_header_decode(c->hdr, sizeof(c->hdr), &h) != SINTER_OK) {
            nng_mtx_lock(t->mtx);
            t->gst.rx_bad_frames++;
            nng_mtx_unlock(t->mtx);
            goto dead;
        }
        size_t len = sizeof(c->hdr) + h.body_len;
        size_t cap = len < RX_INITIAL ? len : RX_INITIAL;
        c->rx = malloc(sizeof(struct rx_impl) + cap);
        if (c->rx == NULL) {
            goto dead;
        }
        memset(c->rx, 0, sizeof(struct rx_impl));
        c->rx->len = len;
        c->rx->cap = cap;
        memcpy(c->rx->data, c->hdr, sizeof(c->hdr));
        c->state = IN_BODY;
    }
    if (c->have < c->rx->len) {
        if (c->have == c->rx->cap) {
            size_t cap = c->rx->cap * 2 < c->rx->len ? c->rx->cap * 2 : c->rx->len;
            struct rx_impl *grown = realloc(c->rx, sizeof(struct rx_impl) + cap);
            if (grown == NULL) {
                goto dead;
            }
            grown->cap = cap;
            c->rx = grown;
        }
        inconn_read(c);
        return;
    }
    struct rx_impl *r = c->rx;
    c->rx = NULL;
    c->state = IN_HEADER;
    c->have = 0;
    if (dispatch(t, r, NULL) == DISPATCH_BAD) {
        goto dead; /* a corrupt stream cannot be resynchronised: drop the connection */
    }
    inconn_read(c);
    return;
dead:
    nng_mtx_lock(t->mtx);
    if (t->closing) {
        /* close() has taken the list and will stop, then free, this connection. */
        nng_mtx_unlock(t->mtx);
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        t->inconns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    t->n_inconns--;
    nng_mtx_unlock(t->mtx);
    free(c->rx);
    nng_stream_free(c->s);
    nng_aio_reap(c->aio); /* cannot free an aio from its own callback */
    free(c);
}

static void accept_cb(void *arg)
{
    struct sinter_raft_transport *t = arg;
    int rv = nng_aio_result(t->acc_aio);
    nng_stream *s = rv == 0 ? nng_aio_get_output(t->acc_aio, 0) : NULL;
    nng_mtx_lock(t->mtx);
    if (t->closing || rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        nng_mtx_unlock(t->mtx);
        if (s != NULL) {
            nng_stream_free(s);
        }
        return;
    }
    if (rv != 0) {
        /* EMFILE and friends: let the tick re-arm accept instead of spinning. */
        t->accept_stalled = true;
        nng_mtx_unlock(t->mtx);
        return;
    }
    struct inconn *c = NULL;
    if (t->n_inconns < t->o.max_inbound) {
        c = calloc(1, sizeof(*c));
        if (c != NULL && nng_aio_alloc(&c->aio, inconn_cb, c) != 0) {
            free(c);
            c = NULL;
        }
    }
    if (c == NULL) {
        t->gst.refused++;
        nng_stream_free(s);
    } else {
        c->t = t;
        c->s = s;
        c->next = t->inconns;
        if (t->inconns != NULL) {
            t->inconns->prev = c;
        }
        t->inconns = c;
        t->n_inconns++;
        t->gst.accepted++;
        inconn_read(c);
    }
    nng_stream_listener_accept(t->listener, t->acc_aio);
    nng_mtx_unlock(t->mtx);
}

/* Housekeeping every TICK_MS: snapshot ack timeouts, a stalled accept loop. */
static void tick_cb(void *arg)
{
    struct sinter_raft_transport *t = arg;
    if (nng_aio_result(t->tick_aio) == NNG_ECANCELED) {
        return;
    }
    nng_mtx_lock(t->mtx);
    if (t->closing) {
        nng_mtx_unlock(t->mtx);
        return;
    }
    if (t->accept_stalled) {
        t->accept_stalled = false;
        if (t->native) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
            (void)epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->lfd, &ev);
        } else {
            nng_stream_listener_accept(t->listener, t->acc_aio);
        }
    }
    nng_mtx_unlock(t->mtx);
    size_t n = atomic_load_explicit(&t->n_peers, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        struct peer *p = t->peers[i];
        /* A receive stream whose sender went quiet (crashed, gave up, lost its connection) is
         * aborted after twice the sender's own ack timeout, so the sink's resources (a temp
         * file) do not linger until the next snapshot. The clock is read with rx_mtx held: a
         * chunk handled while this thread waited for the lock (handle_chunk holds it through the
         * sink's write, which may be slow: a disk) stamps r->last later than any earlier
         * reading, and the unsigned now - r->last would wrap to a huge idle time and abort a
         * live stream; its next chunk was then refused (ESTATE, seen under ASan). */
        nng_mtx_lock(p->rx_mtx);
        nng_time now = nng_clock();
        for (struct snap_rx **pp = &p->rx_snaps; *pp != NULL;) {
            struct snap_rx *r = *pp;
            if (now > r->last && now - r->last > 2 * (nng_time)t->o.snapshot_timeout_ms) {
                *pp = r->next;
                if (t->o.sink.abort != NULL) {
                    t->o.sink.abort(t->o.sink.arg, r->stream, SINTER_ETIMEOUT);
                }
                free(r);
            } else {
                pp = &r->next;
            }
        }
        nng_mtx_unlock(p->rx_mtx);
        struct snap_tx *expired = NULL;
        nng_mtx_lock(p->mtx);
        struct snap_tx *lost = p->snap_lost; /* their chunk went with a broken connection */
        p->snap_lost = NULL;
        now = nng_clock(); /* likewise against the deadlines set under p->mtx */
        for (struct snap_tx **pp = &p->snaps; *pp != NULL;) {
            struct snap_tx *s = *pp;
            if (!s->busy && now >= s->deadline) {
                *pp = s->next;
                s->next = expired;
                expired = s;
            } else {
                pp = &s->next;
            }
        }
        nng_mtx_unlock(p->mtx);
        while (expired != NULL) {
            struct snap_tx *s = expired;
            expired = s->next;
            snap_complete(p, s, SINTER_ETIMEOUT);
        }
        while (lost != NULL) {
            struct snap_tx *s = lost;
            lost = s->next;
            snap_complete(p, s, SINTER_ETRANSPORT);
        }
    }
    nng_sleep_aio(TICK_MS, t->tick_aio);
}

/* ---------------------------------------------------------------------------------------------
 * Native inbound (tcp:// listen URLs): see the top of the file and "Receiving" in the header.
 */

/* Makes epfd readable (the kick eventfd is in the set) so the pumping thread comes back: frames
 * left buffered, a connection handed back by the snapshot thread, close(). */
static void native_kick(struct sinter_raft_transport *t)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(t->kick_fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, so the fd is readable anyway. */
}

/* Whether url is one the native side serves (tcp://, tcp4://, tcp6://: SINTER_OK with *native
 * set, host and port split the way nng's TCP listener reads them), another scheme (SINTER_OK,
 * *native false: nng handles it), or a malformed tcp URL (SINTER_ECONFIG, what
 * nng_stream_listener_alloc() answers). The parser is the client transport's, so both read a URL
 * alike. */
static int native_url(const char *url, bool *native, int *af, char *host, size_t host_cap,
                      char *port, size_t port_cap)
{
    return sinter_transport_tcp_url(url, native, af, host, host_cap, port, port_cap);
}

/* Binds and listens like nng's TCP listener: the first address the resolver gives, SO_REUSEADDR
 * (a restarted node rebinds its port while old connections sit in TIME_WAIT). */
static int native_listen(struct sinter_raft_transport *t, int af, const char *host,
                         const char *port)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = af;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res) != 0 || res == NULL) {
        return SINTER_ETRANSPORT; /* nng fails the same way in listen(), resolving the host */
    }
    int rc = SINTER_ETRANSPORT;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
                if (ss.ss_family == AF_INET) {
                    t->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
                } else if (ss.ss_family == AF_INET6) {
                    t->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
                }
            }
            t->lfd = fd;
            fd = -1;
            rc = SINTER_OK;
        } else if (errno == ENOMEM || errno == ENOBUFS) {
            rc = SINTER_ENOMEM;
        }
    } else if (errno == ENOMEM || errno == ENOBUFS) {
        rc = SINTER_ENOMEM;
    }
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

static void nconn_free(struct nconn *c)
{
    close(c->fd);
    free(c->rx);
    if (c->held != NULL) {
        sinter_raft_transport_rx_release(&c->held->pub);
    }
    free(c);
}

/* Closes a connection (pumping thread; c is not pending, and not paused or just resumed). */
static void nconn_close(struct sinter_raft_transport *t, struct nconn *c)
{
    (void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        t->nconns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    nng_mtx_lock(t->mtx);
    t->n_inconns--;
    nng_mtx_unlock(t->mtx);
    nconn_free(c);
}

static void native_accept(struct sinter_raft_transport *t)
{
    for (uint32_t i = 0; i < NATIVE_ACCEPTS; i++) {
        int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: the pending connection keeps the level-triggered listener
                 * readable, so stop watching it and let the tick re-arm it (as the nng accept
                 * loop does) instead of spinning. */
                struct epoll_event ev = {.events = 0, .data.ptr = NULL};
                (void)epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->lfd, &ev);
                nng_mtx_lock(t->mtx);
                t->accept_stalled = true;
                nng_mtx_unlock(t->mtx);
            }
            return;
        }
        struct nconn *c = NULL;
        nng_mtx_lock(t->mtx);
        if (t->n_inconns < t->o.max_inbound) {
            c = malloc(sizeof(*c));
        }
        if (c == NULL) {
            t->gst.refused++;
        } else {
            t->n_inconns++;
            t->gst.accepted++;
        }
        nng_mtx_unlock(t->mtx);
        if (c == NULL) {
            close(fd);
            continue;
        }
        memset(c, 0, offsetof(struct nconn, stage));
        c->ev_kind = EV_INCONN;
        c->fd = fd;
        c->state = IN_HEADER;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        c->next = t->nconns;
        if (t->nconns != NULL) {
            t->nconns->prev = c;
        }
        t->nconns = c;
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            nconn_close(t, c);
        }
    }
}

/* Grows the frame buffer to hold at least `need` bytes (never beyond the frame). */
static bool nconn_reserve(struct nconn *c, size_t need)
{
    if (need <= c->rx->cap) {
        return true;
    }
    size_t cap = c->rx->cap * 2 > need ? c->rx->cap * 2 : need;
    if (cap > c->rx->len) {
        cap = c->rx->len;
    }
    struct rx_impl *grown = realloc(c->rx, sizeof(struct rx_impl) + cap);
    if (grown == NULL) {
        return false;
    }
    grown->cap = cap;
    c->rx = grown;
    return true;
}

/* One read(2) of a readable connection whose staged bytes are all consumed. Returns false when
 * the connection is finished (EOF, error, no memory). */
static bool nconn_read(struct nconn *c)
{
    uint8_t *dst;
    size_t want;
    bool direct = c->state == IN_BODY && c->rx->len - c->have >= NATIVE_STAGE;
    if (direct) {
        if (c->have == c->rx->cap && !nconn_reserve(c, c->have + 1)) {
            return false;
        }
        dst = c->rx->data + c->have;
        want = c->rx->cap - c->have;
    } else {
        c->soff = 0; /* bytes past this frame's end are the next frames': staged too */
        c->slen = 0;
        dst = c->stage;
        want = sizeof(c->stage);
    }
    ssize_t n;
    do {
        n = recv(c->fd, dst, want, 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        return false; /* the peer closed (mid-frame or not: a partial frame is just dropped) */
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    if (direct) {
        c->have += (size_t)n;
    } else {
        c->slen = (size_t)n;
    }
    return true;
}

static bool nconn_has_work(const struct nconn *c)
{
    return c->soff < c->slen || (c->state == IN_BODY && c->have == c->rx->len);
}

static void pend_push(struct sinter_raft_transport *t, struct nconn *c)
{
    if (c->pending) {
        return;
    }
    c->pending = true;
    c->pend_next = NULL;
    if (t->npend_tail != NULL) {
        t->npend_tail->pend_next = c;
    } else {
        t->npend = c;
    }
    t->npend_tail = c;
}

/* Cuts the staged bytes into frames and dispatches complete ones while *budget lasts. The same
 * validation as inconn_cb: the header is checked before anything is allocated for the body, and
 * the buffer grows with the bytes received (RX_INITIAL). Returns a DISPATCH_* value. */
static int nconn_parse(struct sinter_raft_transport *t, struct nconn *c, size_t *budget)
{
    for (;;) {
        if (c->state == IN_BODY && c->have == c->rx->len) {
            if (*budget == 0) {
                return DISPATCH_OK;
            }
            struct rx_impl *r = c->rx;
            c->rx = NULL;
            c->state = IN_HEADER;
            c->have = 0;
            (*budget)--;
            int d = dispatch(t, r, c);
            if (d != DISPATCH_OK) {
                return d; /* BAD: a corrupt stream cannot be resynchronised; HELD: paused */
            }
            continue;
        }
        size_t avail = c->slen - c->soff;
        if (avail == 0) {
            return DISPATCH_OK;
        }
        if (c->state == IN_HEADER) {
            size_t take = sizeof(c->hdr) - c->have;
            take = take < avail ? take : avail;
            memcpy(c->hdr + c->have, c->stage + c->soff, take);
            c->have += take;
            c->soff += take;
            if (c->have < sizeof(c->hdr)) {
                continue;
            }
            struct sinter_raft_wire_header h;
            if (sinter_raft_wire_header_decode(c->hdr, sizeof(c->hdr), &h) != SINTER_OK) {
                nng_mtx_lock(t->mtx);
                t->gst.rx_bad_frames++;
                nng_mtx_unlock(t->mtx);
                return DISPATCH_BAD;
            }
            size_t len = sizeof(c->hdr) + h.body_len;
            size_t cap = len < RX_INITIAL ? len : RX_INITIAL;
            c->rx = malloc(sizeof(struct rx_impl) + cap);
            if (c->rx == NULL) {
                return DISPATCH_BAD;
            }
            memset(c->rx, 0, sizeof(struct rx_impl));
            c->rx->len = len;
            c->rx->cap = cap;
            memcpy(c->rx->data, c->hdr, sizeof(c->hdr));
            c->state = IN_BODY;
        } else {
            size_t take = c->rx->len - c->have;
            take = take < avail ? take : avail;
            if (!nconn_reserve(c, c->have + take)) {
                return DISPATCH_BAD;
            }
            memcpy(c->rx->data + c->have, c->stage + c->soff, take);
            c->have += take;
            c->soff += take;
        }
    }
}

/* Pumping thread: a snapshot frame goes to the snapshot thread and its connection stops being
 * read until the frame is handled (per-connection order; at most one frame per connection). */
static void native_hand_off(struct sinter_raft_transport *t, struct nconn *c, struct rx_impl *r)
{
    /* Out of the set, not just without EPOLLIN: epoll reports a hang-up whatever the mask, which
     * would keep the poll fd readable (the pumping thread spinning) until the frame is handled. */
    (void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->paused = true;
    nng_mtx_lock(t->nmtx);
    c->held = r;
    c->work_next = NULL;
    if (t->wq_tail != NULL) {
        t->wq_tail->work_next = c;
    } else {
        t->wq = c;
    }
    t->wq_tail = c;
    nng_cv_wake1(t->ncv);
    nng_mtx_unlock(t->nmtx);
}

static void native_snap_main(void *arg)
{
    struct sinter_raft_transport *t = arg;
    nng_mtx_lock(t->nmtx);
    for (;;) {
        while (!t->nstop && t->wq == NULL) {
            nng_cv_wait(t->ncv);
        }
        if (t->nstop) {
            break;
        }
        struct nconn *c = t->wq;
        t->wq = c->work_next;
        if (t->wq == NULL) {
            t->wq_tail = NULL;
        }
        struct rx_impl *r = c->held;
        nng_mtx_unlock(t->nmtx);
        struct peer *p = find_peer(t, r->f.sender); /* dispatch found it: peers are never removed */
        if (r->f.type == SINTER_RAFT_WIRE_SNAP_CHUNK) {
            handle_chunk(p, &r->f.chunk);
        } else {
            handle_ack(p, &r->f.ack);
        }
        sinter_raft_transport_rx_release(&r->pub);
        nng_mtx_lock(t->nmtx);
        c->held = NULL;
        c->res_next = t->nresumed;
        t->nresumed = c;
        nng_mtx_unlock(t->nmtx);
        native_kick(t);
        nng_mtx_lock(t->nmtx);
    }
    nng_mtx_unlock(t->nmtx);
}

/* Pumping thread: connections the snapshot thread is done with are read again. */
static void native_resume(struct sinter_raft_transport *t)
{
    if (t->nmtx == NULL) {
        return;
    }
    nng_mtx_lock(t->nmtx);
    struct nconn *list = t->nresumed;
    t->nresumed = NULL;
    nng_mtx_unlock(t->nmtx);
    while (list != NULL) {
        struct nconn *c = list;
        list = c->res_next;
        c->paused = false;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            nconn_close(t, c); /* ENOMEM: cannot watch it any more */
        } else if (nconn_has_work(c)) {
            pend_push(t, c);
        }
    }
}

/* One round of inbound work (see sinter_raft_transport_pump). timeout_ms > 0 lets the round's
 * epoll_wait sleep when nothing was dispatched before it; *watched reports the caller's watched
 * fd readable. The kick eventfd is read only when epoll reports it: reading it unconditionally
 * cost one failed read(2) per loop pass, on the path of every frame at 1 in flight. */
static size_t native_pump(struct sinter_raft_transport *t, size_t max_frames, int timeout_ms,
                          bool *watched)
{
    native_resume(t);
    size_t budget = max_frames;
    /* Frames already read come first: they were first on the wire. */
    struct nconn *pend = t->npend;
    t->npend = NULL;
    t->npend_tail = NULL;
    while (pend != NULL) {
        struct nconn *c = pend;
        pend = c->pend_next;
        c->pending = false;
        int d = nconn_parse(t, c, &budget);
        if (d == DISPATCH_BAD) {
            nconn_close(t, c);
        } else if (d == DISPATCH_OK && nconn_has_work(c)) {
            pend_push(t, c);
        }
    }
    bool kicked = false;
    if (budget > 0) {
        struct epoll_event ev[NATIVE_EVENTS];
        int n;
        /* Frames already dispatched: do not sleep, the caller has work. (Defensive: with frames
         * still buffered the kick below keeps epfd readable anyway.) */
        int wait = budget < max_frames ? 0 : timeout_ms;
        do {
            n = epoll_wait(t->epfd, ev, (int)NATIVE_EVENTS, wait);
        } while (n < 0 && errno == EINTR && wait == 0);
        if (n < 0) {
            n = 0; /* EINTR during a sleep: return, the caller recomputes its deadline */
        }
        for (int i = 0; i < n; i++) {
            void *ptr = ev[i].data.ptr;
            if (ptr == NULL) {
                native_accept(t);
                continue;
            }
            if (ptr == (void *)t) {
                /* The kick: reset it. A snapshot-thread resume may have landed after this round's
                 * native_resume() above and kicked just before this read: resumed again below,
                 * after the events, or that connection would stay out of the epoll set with
                 * nothing left to wake anyone. npend is re-kicked below. */
                uint64_t cnt;
                if (read(t->kick_fd, &cnt, sizeof cnt) < 0) {
                    /* EAGAIN: another round already drained it */
                }
                kicked = true;
                continue;
            }
            if (ptr == (void *)&t->watch_fd) {
                if (watched != NULL) {
                    *watched = true; /* the caller reads its own fd */
                }
                continue;
            }
            if (*(const int *)ptr == EV_PEER) {
                nout_event(ptr, ev[i].events); /* outbound: whatever the budget */
                continue;
            }
            struct nconn *c = ptr;
            /* Buffered frames first; a budget spent leaves the socket readable (level-triggered).
             */
            if (c->paused || c->pending || budget == 0) {
                continue;
            }
            if (!nconn_read(c)) {
                nconn_close(t, c);
                continue;
            }
            int d = nconn_parse(t, c, &budget);
            if (d == DISPATCH_BAD) {
                nconn_close(t, c);
            } else if (d == DISPATCH_OK && nconn_has_work(c)) {
                pend_push(t, c);
            }
        }
    }
    if (kicked) {
        native_resume(t); /* see the kick above: no system call when nothing was handed back */
    }
    if (t->npend != NULL) {
        native_kick(t); /* more frames buffered: keep the poll fd readable */
    }
    return max_frames - budget;
}

static void native_pump_main(void *arg)
{
    struct sinter_raft_transport *t = arg;
    while (!atomic_load_explicit(&t->pump_stop, memory_order_acquire)) {
        struct pollfd pfd = {.fd = t->epfd, .events = POLLIN};
        if (poll(&pfd, 1, -1) > 0) {
            (void)native_pump(t, NATIVE_SELF_BATCH, 0, NULL);
        }
    }
}

int sinter_raft_transport_poll_fd(const struct sinter_raft_transport *t)
{
    return t != NULL && t->native && t->o.caller_pumps ? t->epfd : -1;
}

size_t sinter_raft_transport_pump(struct sinter_raft_transport *t, size_t max_frames)
{
    if (t == NULL || !t->native || !t->o.caller_pumps || max_frames == 0) {
        return 0;
    }
    return native_pump(t, max_frames, 0, NULL);
}

size_t sinter_raft_transport_pump_wait(struct sinter_raft_transport *t, size_t max_frames,
                                       int timeout_ms, bool *watched)
{
    if (watched != NULL) {
        *watched = false;
    }
    if (t == NULL || !t->native || !t->o.caller_pumps || max_frames == 0) {
        return 0;
    }
    return native_pump(t, max_frames, timeout_ms < 0 ? 0 : timeout_ms, watched);
}

int sinter_raft_transport_watch_fd(struct sinter_raft_transport *t, int fd)
{
    if (t == NULL || !t->native || !t->o.caller_pumps || fd < 0 || t->watch_fd >= 0) {
        return SINTER_EINVAL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->watch_fd};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return errno == ENOMEM || errno == ENOSPC ? SINTER_ENOMEM : SINTER_EINVAL;
    }
    t->watch_fd = fd;
    return SINTER_OK;
}

/* Opens the native listener, the epoll set and the reading thread of the mode. */
static int native_open(struct sinter_raft_transport *t, int af, const char *host, const char *port)
{
    t->native = true;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->epfd < 0 || t->kick_fd < 0) {
        return SINTER_ENOMEM; /* EMFILE / ENOMEM */
    }
    int rc = native_listen(t, af, host, port);
    if (rc != SINTER_OK) {
        return rc;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event kev = {.events = EPOLLIN, .data.ptr = t};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lfd, &ev) != 0 ||
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->kick_fd, &kev) != 0) {
        return SINTER_ENOMEM;
    }
    int rv = nng_mtx_alloc(&t->nmtx);
    if (rv == 0) {
        rv = nng_cv_alloc(&t->ncv, t->nmtx);
    }
    if (rv == 0) {
        rv = t->o.caller_pumps ? nng_thread_create(&t->snap_thr, native_snap_main, t)
                               : nng_thread_create(&t->pump_thr, native_pump_main, t);
    }
    return map_nng(rv);
}

/* close(): stops the reading threads, then frees every connection and descriptor. */
static void native_close(struct sinter_raft_transport *t)
{
    if (!t->native) {
        return;
    }
    if (t->pump_thr != NULL) {
        atomic_store_explicit(&t->pump_stop, true, memory_order_release);
        native_kick(t);
        nng_thread_destroy(t->pump_thr); /* joins */
    }
    if (t->snap_thr != NULL) {
        nng_mtx_lock(t->nmtx);
        t->nstop = true;
        nng_cv_wake(t->ncv);
        nng_mtx_unlock(t->nmtx);
        nng_thread_destroy(t->snap_thr);
    }
    /* Nothing reads any more: frames still held for the snapshot thread go with their
     * connections. */
    while (t->nconns != NULL) {
        struct nconn *c = t->nconns;
        t->nconns = c->next;
        nconn_free(c);
    }
    if (t->lfd >= 0) {
        close(t->lfd);
    }
    if (t->epfd >= 0) {
        close(t->epfd);
    }
    if (t->kick_fd >= 0) {
        close(t->kick_fd);
    }
    if (t->ncv != NULL) {
        nng_cv_free(t->ncv);
    }
    if (t->nmtx != NULL) {
        nng_mtx_free(t->nmtx);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Open / close
 */
void sinter_raft_transport_opts_default(struct sinter_raft_transport_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->max_queue_frames = 256;
    o->max_queue_bytes = 64u << 20;
    o->max_batch_bytes = 1u << 20;
    o->reconnect_min_ms = 50;
    o->reconnect_max_ms = 2000;
    o->snapshot_chunk_bytes = 1u << 20;
    o->snapshot_timeout_ms = 10000;
    o->max_inbound = 256;
}

static int tls_config(nng_tls_config **out, nng_tls_mode mode,
                      const struct sinter_raft_transport_tls *tls)
{
    nng_tls_config *cfg;
    int rv = nng_tls_config_alloc(&cfg, mode);
    if (rv != 0) {
        return map_nng(rv);
    }
    rv = nng_tls_config_cert_key_file(cfg, tls->cert_key_file, tls->key_password);
    if (rv == 0) {
        rv = nng_tls_config_ca_file(cfg, tls->ca_file);
    }
    if (rv == 0) {
        rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
    }
    if (rv == 0 && mode == NNG_TLS_MODE_CLIENT && tls->server_name != NULL) {
        rv = nng_tls_config_server_name(cfg, tls->server_name);
    }
    if (rv != 0) {
        nng_tls_config_free(cfg);
        return rv == NNG_ENOMEM ? SINTER_ENOMEM : SINTER_ECONFIG;
    }
    *out = cfg;
    return SINTER_OK;
}

static int validate_opts(const struct sinter_raft_transport_opts *o)
{
    if (o->self == 0 || o->listen_url == NULL || o->on_recv == NULL ||
        (o->n_peers != 0 && o->peers == NULL) || o->n_peers > SINTER_RAFT_TRANSPORT_MAX_PEERS ||
        o->max_queue_frames == 0 || o->max_queue_bytes == 0 || o->max_batch_bytes == 0 ||
        o->max_batch_bytes > SINTER_RAFT_WIRE_MAX_BODY || o->reconnect_min_ms == 0 ||
        o->reconnect_max_ms < o->reconnect_min_ms || o->snapshot_chunk_bytes == 0 ||
        o->snapshot_chunk_bytes > SINTER_RAFT_WIRE_MAX_CHUNK || o->snapshot_timeout_ms == 0 ||
        o->max_inbound == 0) {
        return SINTER_EINVAL;
    }
    if (o->tls_enable && (o->tls.cert_key_file == NULL || o->tls.ca_file == NULL)) {
        return SINTER_EINVAL;
    }
    return SINTER_OK;
}

int sinter_raft_transport_open(struct sinter_raft_transport **out,
                               const struct sinter_raft_transport_opts *opts)
{
    if (out == NULL || opts == NULL) {
        return SINTER_EINVAL;
    }
    *out = NULL;
    int rc = validate_opts(opts);
    if (rc != SINTER_OK) {
        return rc;
    }
    struct sinter_raft_transport *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return SINTER_ENOMEM;
    }
    t->o = *opts;
    t->o.peers = NULL;
    t->o.n_peers = 0;
    t->o.tls.cert_key_file = NULL; /* only used here, during open */
    t->o.tls.key_password = NULL;
    t->o.tls.ca_file = NULL;
    t->o.tls.server_name = NULL;
    atomic_init(&t->n_peers, 0);
    atomic_init(&t->pump_stop, false);
    t->lfd = -1;
    t->epfd = -1;
    t->kick_fd = -1;
    t->watch_fd = -1;
    t->listen_url = dup_str(opts->listen_url);
    t->o.listen_url = t->listen_url;
    if (t->listen_url == NULL) {
        free(t);
        return SINTER_ENOMEM;
    }
    int rv = nng_mtx_alloc(&t->mtx);
    if (rv == 0) {
        rv = nng_aio_alloc(&t->acc_aio, accept_cb, t);
    }
    if (rv == 0) {
        rv = nng_aio_alloc(&t->tick_aio, tick_cb, t);
    }
    if (rv != 0) {
        rc = map_nng(rv);
        goto fail;
    }
    rc = check_url(t, t->listen_url);
    if (rc != SINTER_OK) {
        goto fail;
    }
    if (opts->tls_enable) {
        rc = tls_config(&t->tls_server, NNG_TLS_MODE_SERVER, &opts->tls);
        if (rc == SINTER_OK) {
            rc = tls_config(&t->tls_client, NNG_TLS_MODE_CLIENT, &opts->tls);
        }
        if (rc != SINTER_OK) {
            goto fail;
        }
    }
    bool native = false;
    int af = AF_UNSPEC;
    char host[256], port_s[8];
    rc = native_url(t->listen_url, &native, &af, host, sizeof host, port_s, sizeof port_s);
    if (rc != SINTER_OK) {
        goto fail;
    }
    if (native) {
        rc = native_open(t, af, host, port_s);
        if (rc != SINTER_OK) {
            goto fail;
        }
    } else {
        rv = nng_stream_listener_alloc(&t->listener, t->listen_url);
        if (rv != 0) {
            rc = rv == NNG_ENOMEM ? SINTER_ENOMEM : SINTER_ECONFIG;
            goto fail;
        }
        if (t->tls_server != NULL) {
            rv = nng_stream_listener_set_ptr(t->listener, NNG_OPT_TLS_CONFIG, t->tls_server);
            if (rv != 0) {
                rc = SINTER_ECONFIG;
                goto fail;
            }
        }
        rv = nng_stream_listener_listen(t->listener);
        if (rv != 0) {
            rc = rv == NNG_ENOMEM ? SINTER_ENOMEM : SINTER_ETRANSPORT;
            goto fail;
        }
        int port = 0;
        if (nng_stream_listener_get_int(t->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0 &&
            port > 0 && port <= 65535) {
            t->port = (uint16_t)port;
        }
    }
    nng_mtx_lock(t->mtx);
    for (size_t i = 0; i < opts->n_peers && rc == SINTER_OK; i++) {
        rc = add_peer_locked(t, opts->peers[i].id, opts->peers[i].url);
    }
    if (rc == SINTER_OK) {
        if (t->listener != NULL) {
            nng_stream_listener_accept(t->listener, t->acc_aio);
        }
        nng_sleep_aio(TICK_MS, t->tick_aio);
    }
    nng_mtx_unlock(t->mtx);
    if (rc != SINTER_OK) {
        sinter_raft_transport_close(t);
        return rc;
    }
    *out = t;
    return SINTER_OK;
fail:
    sinter_raft_transport_close(t);
    return rc;
}

uint16_t sinter_raft_transport_port(const struct sinter_raft_transport *t)
{
    return t != NULL ? t->port : 0;
}

void sinter_raft_transport_close(struct sinter_raft_transport *t)
{
    if (t == NULL) {
        return;
    }
    if (t->mtx != NULL) {
        nng_mtx_lock(t->mtx);
        t->closing = true;
        nng_mtx_unlock(t->mtx);
    }
    if (t->listener != NULL) {
        nng_stream_listener_close(t->listener);
    }
    if (t->acc_aio != NULL) {
        nng_aio_stop(t->acc_aio);
    }
    if (t->tick_aio != NULL) {
        nng_aio_stop(t->tick_aio);
    }
    size_t n = atomic_load_explicit(&t->n_peers, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        struct peer *p = t->peers[i];
        nng_mtx_lock(p->mtx);
        p->closing = true;
        if (p->conn != NULL) {
            nng_stream_close(p->conn);
        }
        if (p->fd >= 0) {
            /* Frames still queued are freed with the peer: close() does not linger to deliver
             * them (the nng path drops them the same way). */
            (void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, p->fd, NULL);
            close(p->fd);
            p->fd = -1;
        }
        nng_mtx_unlock(p->mtx);
        if (p->dialer != NULL) {
            nng_stream_dialer_close(p->dialer);
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct peer *p = t->peers[i];
        nng_aio_stop(p->dial_aio);
        nng_aio_stop(p->retry_aio);
        nng_aio_stop(p->tx_aio);
        nng_aio_stop(p->rd_aio);
    }
    /* Inbound connections: take the list (a failing connection no longer frees itself once
     * closing is set), then close and stop each. nng_aio_stop() cancels a pending read and waits
     * for a running callback; a read issued after the stop is refused by nng. Closing the stream
     * alone is not enough: nng 1.5.2 leaves a read started on a closed TCP stream pending forever
     * (tcp_recv does not check the closed flag), so a callback racing with close would hang. */
    struct inconn *in = NULL;
    if (t->mtx != NULL) {
        nng_mtx_lock(t->mtx);
        in = t->inconns;
        t->inconns = NULL;
        t->n_inconns = 0;
        nng_mtx_unlock(t->mtx);
    }
    while (in != NULL) {
        struct inconn *c = in;
        in = c->next;
        nng_stream_close(c->s);
        nng_aio_stop(c->aio);
        nng_aio_free(c->aio);
        nng_stream_free(c->s);
        free(c->rx);
        free(c);
    }
    native_close(t);
    /* No callback can run any more: complete what is left. */
    for (size_t i = 0; i < n; i++) {
        struct peer *p = t->peers[i];
        while (p->snaps != NULL) {
            struct snap_tx *s = p->snaps;
            p->snaps = s->next;
            snap_complete(p, s, SINTER_ESHUTDOWN);
        }
        while (p->snap_lost != NULL) {
            struct snap_tx *s = p->snap_lost;
            p->snap_lost = s->next;
            snap_complete(p, s, SINTER_ESHUTDOWN);
        }
        while (p->rx_snaps != NULL) {
            struct snap_rx *r = p->rx_snaps;
            p->rx_snaps = r->next;
            if (t->o.sink.abort != NULL) {
                t->o.sink.abort(t->o.sink.arg, r->stream, SINTER_ESHUTDOWN);
            }
            free(r);
        }
        peer_free(p);
    }
    if (t->listener != NULL) {
        nng_stream_listener_free(t->listener);
    }
    if (t->tls_server != NULL) {
        nng_tls_config_free(t->tls_server);
    }
    if (t->tls_client != NULL) {
        nng_tls_config_free(t->tls_client);
    }
    nng_aio_free(t->acc_aio);
    nng_aio_free(t->tick_aio);
    if (t->mtx != NULL) {
        nng_mtx_free(t->mtx);
    }
    free(t->listen_url);
    free(t);
}

/* ---------------------------------------------------------------------------------------------
 * Counters
 */
int sinter_raft_transport_stats(struct sinter_raft_transport *t, sinter_raft_id peer,
                                struct sinter_raft_transport_stats *s)
{
    struct peer *p = t != NULL ? find_peer(t, peer) : NULL;
    if (p == NULL || s == NULL) {
        return SINTER_ENOTFOUND;
    }
    nng_mtx_lock(p->mtx);
    *s = p->st;
    s->queued_frames = p->q_frames;
    s->queued_bytes = p->q_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)p->q_bytes;
    s->connected = peer_connected(p);
    nng_mtx_unlock(p->mtx);
    return SINTER_OK;
}

void sinter_raft_transport_global_stats(struct sinter_raft_transport *t,
                                        struct sinter_raft_transport_global_stats *s)
{
    nng_mtx_lock(t->mtx);
    *s = t->gst;
    nng_mtx_unlock(t->mtx);
}
