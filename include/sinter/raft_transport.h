/*
 * sinter/raft_transport.h — node-to-node Raft messaging over nng, for a host running several raft
 * groups in one process. Frames are those of sinter/raft_wire.h.
 *
 * Shape. Every node listens on one URL and dials every peer; each TCP connection is one-way: a
 * node writes only on the connection it dialed and reads only on the connections it accepted (the
 * way etcd's rafthttp and canonical/raft's uv transport use one outbound stream per peer). Raft
 * messages are asynchronous notifications, not requests awaiting replies (Raft dissertation 3.3:
 * responses are ordinary messages travelling the other way), so nothing pairs a reply with a
 * request and a one-way pipe per direction is all that is needed. Messages of all groups between
 * two nodes share that connection.
 *
 * Why nng byte streams (nng_stream_dialer / nng_stream_listener) rather than an SP pattern
 * (PUSH/PULL or PAIR1): we evaluated PUSH/PULL, whose semantics are exactly these one-way pipes,
 * but (1) nng 1.5.2 as shipped in Debian bookworm has nanomsg/nng#1518: a peer that disconnects
 * during the SP handshake can complete the SP listener's accept with NNG_ECLOSED, after which that
 * listener never accepts again — one rude or crashing peer would silently partition a raft node
 * from everyone (the client transport needs a probing watchdog for this). The stream listener has
 * no handshake in its accept path; our accept loop is ours and a broken connection only ever
 * closes itself. (2) Our frame already carries magic, version, length and CRC32C; SP would add a
 * second length header and copy each frame into an nng_msg. (3) Back-pressure must be a fast
 * SINTER_EBUSY from a bounded per-peer queue, which we need to own anyway (a PUSH socket with no
 * pipe just holds the send). The price is that reconnection is ours: each peer is redialled after
 * reconnect_min_ms, doubling up to reconnect_max_ms, exactly nng's dialer
 * NNG_OPT_RECONNMINT/RECONNMAXT policy. TLS works the same way (tls+tcp:// URLs, nng_tls_config).
 *
 * Sending. sinter_raft_transport_send() only encodes the message into the peer's open batch (no
 * allocation once the peer's buffers have grown); the batch becomes one frame on
 * sinter_raft_transport_flush(), when it reaches max_batch_bytes, or when the peer's previous write
 * completes with the batch non-empty (so under load messages queued while a write is in flight
 * leave together: group commit of the network). The host sends a whole ready batch of every group,
 * then flushes. Each peer has its own connection and queue, so a dead or slow peer only
 * fills its own queue: once max_queue_frames frames or max_queue_bytes bytes are waiting, sends to
 * that peer fail with SINTER_EBUSY at once (back-pressure; the host then calls
 * sinter_raft_report_unreachable() for that peer in the group, and the leader drops to probing as
 * in etcd's raft). Frames in flight when a connection breaks are dropped (Raft tolerates loss);
 * frames still queued are sent after reconnecting, except coalesced heartbeat frames: those are
 * dropped when the connection breaks, and while the peer is not connected each new heartbeat frame
 * replaces the queued one of its kind, so a peer coming back gets one fresh round, not a backlog.
 *
 * Heartbeats. sinter_raft_transport_send_heartbeats() sends the beats of all groups for one peer
 * as ONE coalesced frame; the receiver expands it into per-group HEARTBEAT(_RESP) messages. The
 * host collects the core's HEARTBEAT messages of every group per peer and sends them this way.
 *
 * Receiving. For a plain tcp:// (tcp4://, tcp6://) listen URL the transport accepts and reads
 * inbound connections with its own non-blocking sockets and one epoll set, not with nng: nng 1.5
 * reads a socket on its poller thread and completes the read on a taskq thread, so every received
 * frame cost two thread hand-offs before the host's loop even saw it (bench/FINDINGS.md F2).
 * Who reads is chosen by opts.caller_pumps:
 *   - false (default): the transport runs one thread of its own that waits on the epoll set and
 *     pumps; on_recv, the snapshot sink and the snapshot reader (on an ack) run on that thread.
 *   - true: nothing reads until the caller calls sinter_raft_transport_pump(), typically from its
 *     event loop when sinter_raft_transport_poll_fd() is readable; on_recv then runs on the
 *     pumping thread, so a frame costs no hand-off at all (canonical raft reads its sockets in
 *     its libuv loop the same way). Snapshot frames (SNAP_CHUNK, SNAP_ACK) are still handed to a
 *     thread of the transport, because the sink and the snapshot reader may touch the disk and
 *     an event loop must not (bench/FINDINGS.md F3); the connection that carried one is not read
 *     again until it has been handled, which keeps each connection's frames in order and bounds
 *     the hand-off to one frame per connection.
 * Outbound, a transport with such a listener dials its tcp:// peers the same way: its own
 * non-blocking socket (TCP_NODELAY) in the same epoll set. The thread that flushes (or sends
 * heartbeats, a snapshot chunk or ack) writes the peer's queue at once with sendmsg(), several
 * frames per call; only when the kernel buffer is full does the rest wait for EPOLLOUT, which the
 * pumping side (the caller's pump() or the transport's thread) handles, as it handles a connect()
 * completing. So a frame that leaves in one write costs no thread hand-off (nng completed every
 * write on its taskq). The bytes are the same as with nng's raw TCP streams (no SP protocol, no
 * handshake: the first bytes are the first frame), so native and nng ends talk to each other.
 * Errors (refused, reset, EPIPE: never SIGPIPE) drop the connection, are counted and redialled
 * with backoff.
 * tls+tcp:// (and any other scheme nng knows) keeps nng's stream listener: frames are read and
 * decoded on nng's callback threads in both modes, and poll_fd() is -1. on_recv must be cheap
 * and never block (the host enqueues rx for its raft thread). The rx owns the frame
 * buffer (entries' data point into it: zero-copy) until sinter_raft_transport_rx_release().
 * A malformed frame (bad magic, CRC, lengths...) closes only that connection; the sender redials.
 * The transport does not bound the memory of rx the host has not released yet: the host bounds
 * its own inbound queue (and may drop APPENDs when it is full; Raft retries them).
 *
 * Snapshots. sinter_raft_transport_send_snapshot() streams a snapshot in chunks read from a reader
 * callback, one chunk in flight: the next is read and sent when the receiver acknowledges the
 * previous one (flow control without buffering the snapshot). The receiver hands chunks, in order,
 * to a sink (begin / write / finish / abort); a chunk out of order is refused with a negative ack
 * that aborts the stream on both sides. After finish, the host steps the SNAPSHOT message into
 * the core and the sender's done callback reports the outcome (-> sinter_raft_report_snapshot()).
 *
 * Threads. Every function may be called from any thread, except sinter_raft_transport_pump()
 * (one thread at a time, never concurrently with or after close()). Callbacks (on_recv, sink,
 * reader, done) run on nng's threads, the transport's threads or the pumping thread (see
 * Receiving) and must not block nor call sinter_raft_transport_close().
 */
#ifndef SINTER_RAFT_TRANSPORT_H
#define SINTER_RAFT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/raft.h"
#include "sinter/raft_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Peers a transport can address (fixed so lookups need no lock). */
#define SINTER_RAFT_TRANSPORT_MAX_PEERS 64

struct sinter_raft_transport;

/* A received batch of messages from one peer: a BATCH frame, or an expanded coalesced heartbeat
 * (msgs[i].to is filled with this node's id). groups[i] is the raft group of msgs[i]. Everything
 * pointed to, including entries and their data, is owned by the rx and valid until
 * sinter_raft_transport_rx_release(). */
struct sinter_raft_transport_rx {
    sinter_raft_id from;
    uint8_t frame_type; /* SINTER_RAFT_WIRE_BATCH, _HEARTBEAT or _HEARTBEAT_RESP */
    size_t n;
    const uint32_t *groups;
    const struct sinter_raft_msg *msgs;
};

/* Called for every received message frame, on the thread that read it (see Receiving above).
 * Ownership: rx passes to the callee, which must release it exactly once (from any thread). Must
 * not block. */
typedef void (*sinter_raft_transport_recv_fn)(void *arg, struct sinter_raft_transport_rx *rx);

/* Frees a received frame. NULL is ok. */
void sinter_raft_transport_rx_release(struct sinter_raft_transport_rx *rx);

/* Receiving side of install-snapshot. All four run on a transport or nng thread (never on a
 * thread calling sinter_raft_transport_pump(): see Receiving), one chunk at a time per
 * (sender, group), and must be quick (copy into memory or a page-cache write; a host with slow
 * disks hands chunks to its own writer). *stream is the sink's per-snapshot state.
 *   begin:  chunk 0 of a new snapshot arrived; m is the core's SNAPSHOT message (meta inside),
 *           total its size. Return SINTER_OK to accept, or an error to refuse the stream.
 *   write:  the next len bytes at offset (offsets are contiguous, starting at 0). Error = abort.
 *   finish: every byte arrived; the host now persists/installs and steps m into group's core.
 *           Its return value is sent to the sender as the final status.
 *   abort:  the stream ended early (out-of-order chunk, newer snapshot, error, no chunk for
 *           2 x snapshot_timeout_ms, close); release *stream. Not called after finish.
 * Ownership: m and data are valid only during the call. */
struct sinter_raft_snapshot_sink {
    int (*begin)(void *arg, sinter_raft_id from, uint32_t group, const struct sinter_raft_msg *m,
                 uint64_t total, void **stream);
    int (*write)(void *arg, void *stream, uint64_t offset, const uint8_t *data, uint32_t len);
    int (*finish)(void *arg, void *stream, sinter_raft_id from, uint32_t group,
                  const struct sinter_raft_msg *m);
    void (*abort)(void *arg, void *stream, int reason);
    void *arg;
};

/* Sending side: fill buf with exactly len bytes of the snapshot at offset; return SINTER_OK or an
 * error (which fails the transfer). Runs on the caller's thread for chunk 0, then on the thread
 * that handles the receiver's acks (an nng or transport thread, never a pumping thread);
 * must be quick (pread of a snapshot file, memcpy). */
typedef int (*sinter_raft_snapshot_read_fn)(void *arg, uint64_t offset, uint8_t *buf, uint32_t len);
/* Called exactly once per accepted send_snapshot(): SINTER_OK when the receiver's finish()
 * succeeded, else the error (receiver's status, SINTER_ETIMEOUT, SINTER_ETRANSPORT,
 * SINTER_ESHUTDOWN, the reader's error). On an nng or transport thread, or in close(). */
typedef void (*sinter_raft_snapshot_done_fn)(void *arg, sinter_raft_id peer, uint32_t group,
                                             int rc);

/* TLS (nng's tls+tcp:// transport, mbedTLS in Debian). Both sides authenticate each other: every
 * node presents cert_key_file and verifies the other against ca_file (a node-to-node link is
 * between equals; one CA for the cluster). Paths are copied. */
struct sinter_raft_transport_tls {
    const char *cert_key_file; /* PEM with this node's certificate and private key */
    const char *key_password;  /* NULL if the key is not encrypted */
    const char *ca_file;       /* PEM with the CA certificate(s) peers must chain to */
    const char *server_name;   /* expected name in the peers' certificates; NULL = not checked
                                  (mutual verification against ca_file still applies) */
};

struct sinter_raft_transport_peer {
    sinter_raft_id id;
    const char *url; /* "tcp://127.0.0.1:7001" or "tls+tcp://host:7001"; copied */
};

struct sinter_raft_transport_opts {
    sinter_raft_id self;    /* this node, non-zero; the sender id in every frame */
    const char *listen_url; /* "tcp://127.0.0.1:0" picks a free port (see _port()); copied */
    const struct sinter_raft_transport_peer *peers; /* copied; more with add_peer() */
    size_t n_peers;
    sinter_raft_transport_recv_fn on_recv; /* required */
    void *on_recv_arg;
    struct sinter_raft_snapshot_sink sink; /* optional (all NULL: chunks are refused) */
    uint32_t max_queue_frames;             /* per peer, frames waiting or in flight; default 256 */
    uint32_t max_queue_bytes;      /* per peer, bytes waiting or in flight; default 64 MiB */
    uint32_t max_batch_bytes;      /* seal the open batch at this size; default 1 MiB */
    uint32_t reconnect_min_ms;     /* default 50 */
    uint32_t reconnect_max_ms;     /* default 2000 */
    uint32_t snapshot_chunk_bytes; /* default 1 MiB, <= SINTER_RAFT_WIRE_MAX_CHUNK */
    uint32_t snapshot_timeout_ms;  /* no ack for this long fails the transfer; default 10000 */
    uint32_t max_inbound;          /* accepted connections at once; default 256 */
    bool tls_enable;               /* required for tls+tcp:// URLs */
    struct sinter_raft_transport_tls tls;
    bool caller_pumps; /* tcp:// listeners: the caller reads inbound connections with
                          sinter_raft_transport_pump(); false: a transport thread does */
};

/* Fills defaults (no self, no url, no peers, no callbacks). Ownership: writes *o only. */
void sinter_raft_transport_opts_default(struct sinter_raft_transport_opts *o);

/* Starts listening and dialing every peer. Ownership: *out is the caller's, released with
 * sinter_raft_transport_close(); opts and everything it points to are copied.
 * Errors: SINTER_EINVAL (self 0, no url or on_recv, duplicate/zero peer id, too many peers, bad
 * option values, tls+tcp:// without tls_enable or tls files missing), SINTER_ECONFIG (bad URL or
 * TLS files nng refuses), SINTER_ETRANSPORT (listen failed, e.g. address in use), SINTER_ENOMEM. */
int sinter_raft_transport_open(struct sinter_raft_transport **out,
                               const struct sinter_raft_transport_opts *opts);

/* Stops everything: closes the listener and every connection, waits for nng callbacks to finish,
 * aborts snapshot streams (sink abort / done with SINTER_ESHUTDOWN), frees queued frames.
 * Received rx not yet released stay valid until released. NULL is ok. Must not be called from a
 * transport callback. */
void sinter_raft_transport_close(struct sinter_raft_transport *t);

/* The TCP port the listener is bound to (useful with port 0), 0 if unknown. */
uint16_t sinter_raft_transport_port(const struct sinter_raft_transport *t);

/* A descriptor for the caller's poll()/epoll: readable while inbound work is pending (a
 * connection to accept, bytes to read, frames already read but not yet dispatched). -1 unless the
 * transport was opened with caller_pumps on a tcp:// listen URL (then inbound frames arrive on
 * nng threads and need no pumping). Also readable when a tcp:// peer's connect() completes or
 * its full socket drains: pump() then does that outbound work too. Ownership: the transport's;
 * valid until close(), never to be closed or read by the caller. Errors: none. */
int sinter_raft_transport_poll_fd(const struct sinter_raft_transport *t);

/* Does a bounded amount of inbound work on the calling thread: accepts pending connections, reads
 * each readable connection once, and dispatches at most max_frames complete frames; and the
 * outbound work epoll reports (completes connects, writes queued frames to drained sockets, drops
 * connections the peer closed) (on_recv on
 * this thread; snapshot frames to the transport's thread). Never blocks. Work left over (more
 * frames already buffered) keeps poll_fd() readable, so the caller just polls again. Returns the
 * number of frames dispatched. Only with caller_pumps (otherwise returns 0 and does nothing);
 * from one thread at a time, never concurrently with or after close(). Errors: none (a broken or
 * malformed connection is closed and counted in the global stats). */
size_t sinter_raft_transport_pump(struct sinter_raft_transport *t, size_t max_frames);

/* Puts fd (the caller's own eventfd or pipe, which it keeps owning, reading and closing) into
 * the set behind poll_fd(), so that a caller loop sleeps in sinter_raft_transport_pump_wait()
 * alone instead of poll() on both descriptors followed by a pump: one system call per wake-up
 * instead of three. Once per transport, only with caller_pumps, from the pumping thread. fd must
 * stay open until close(), or be closed by the caller first (epoll forgets it once its last
 * duplicate is closed: do not dup() it or let a fork inherit it).
 * Errors: SINTER_EINVAL (not caller_pumps, fd < 0, a fd already watched, fd epoll refuses),
 * SINTER_ENOMEM. */
int sinter_raft_transport_watch_fd(struct sinter_raft_transport *t, int fd);

/* sinter_raft_transport_pump(), except that when no frame was dispatched before it, the round
 * sleeps up to timeout_ms (0: never) for inbound work or the watched fd; a signal ends the sleep
 * early (returns 0). *watched (may be NULL) is set to whether the watched fd was reported
 * readable; the caller reads it. Without caller_pumps (or on a non-tcp:// listener) it returns 0
 * at once, never sleeping, with *watched false. Same threading rules and errors as
 * sinter_raft_transport_pump(). */
size_t sinter_raft_transport_pump_wait(struct sinter_raft_transport *t, size_t max_frames,
                                       int timeout_ms, bool *watched);

/* Adds a peer (membership change) and starts dialing it. url is copied.
 * Errors: SINTER_EINVAL (id 0 or self), SINTER_EEXIST, SINTER_ETOOBIG (MAX_PEERS),
 * SINTER_ECONFIG (bad URL), SINTER_ESHUTDOWN, SINTER_ENOMEM. */
int sinter_raft_transport_add_peer(struct sinter_raft_transport *t, sinter_raft_id id,
                                   const char *url);

/* Queues m (of raft group `group`) for m->to (must be a known peer) in the peer's open batch.
 * Ownership: m and its entries are copied before return. The message leaves on flush.
 * Errors: SINTER_ENOTFOUND (unknown peer), SINTER_EBUSY (peer's queue full: back-pressure),
 * SINTER_EINVAL (m->from is not self; and see sinter_raft_wire_add_msg), SINTER_ETOOBIG,
 * SINTER_ESHUTDOWN, SINTER_ENOMEM. */
int sinter_raft_transport_send(struct sinter_raft_transport *t, uint32_t group,
                               const struct sinter_raft_msg *m);

/* Seals the open batch of `peer` (0: of every peer) into a frame and starts writing it if the
 * connection is idle. Errors: SINTER_ENOTFOUND (unknown peer), SINTER_ESHUTDOWN. */
int sinter_raft_transport_flush(struct sinter_raft_transport *t, sinter_raft_id peer);

/* Sends one coalesced HEARTBEAT (resp false) or HEARTBEAT_RESP (resp true) frame carrying the
 * beats of n groups to `peer`, at once (the open batch is flushed first, keeping order).
 * Ownership: beats copied. Errors: SINTER_ENOTFOUND, SINTER_EBUSY (queue full), SINTER_EINVAL
 * (n == 0), SINTER_ETOOBIG (n > SINTER_RAFT_WIRE_MAX_BEATS), SINTER_ESHUTDOWN, SINTER_ENOMEM. */
int sinter_raft_transport_send_heartbeats(struct sinter_raft_transport *t, sinter_raft_id peer,
                                          bool resp, const struct sinter_raft_wire_beat *beats,
                                          size_t n);

/* Streams a snapshot of `total` bytes to m->to for `group`: m is the core's SNAPSHOT message
 * (copied), bytes come from read(). done(arg, ...) is called exactly once if this returns
 * SINTER_OK. Chunk frames bypass max_queue_* (one is in flight at a time).
 * Errors (done not called): SINTER_ENOTFOUND (unknown peer), SINTER_EINVAL (m not a valid
 * SNAPSHOT, no reader), SINTER_EBUSY (a snapshot to that peer for that group is already
 * streaming), the reader's error for chunk 0, SINTER_ESHUTDOWN, SINTER_ENOMEM. */
int sinter_raft_transport_send_snapshot(struct sinter_raft_transport *t, uint32_t group,
                                        const struct sinter_raft_msg *m, uint64_t total,
                                        sinter_raft_snapshot_read_fn read,
                                        sinter_raft_snapshot_done_fn done, void *arg);

/* Counters for one peer (tx: to it; rx: from it). */
struct sinter_raft_transport_stats {
    uint64_t tx_frames;           /* frames completely written (every type) */
    uint64_t tx_msgs;             /* raft messages in written BATCH frames */
    uint64_t tx_heartbeat_frames; /* coalesced heartbeat frames written (both directions' kinds) */
    uint64_t tx_beats;            /* beats in them */
    uint64_t tx_bytes;
    uint64_t tx_busy;              /* sends refused with SINTER_EBUSY */
    uint64_t tx_dropped_frames;    /* frames lost when a connection broke mid-write */
    uint64_t tx_stale_beat_frames; /* queued heartbeat frames dropped: the peer was not connected
                                      (a fresher round replaced them, or the connection broke) */
    uint64_t tx_snapshot_chunks;
    uint64_t connects;      /* successful dials */
    uint64_t disconnects;   /* established connections lost (error, EOF, reset, close) */
    uint64_t dial_failures; /* tcp:// peers: dials that failed (refused, unreachable...) */
    uint64_t tx_blocked;    /* tcp:// peers: writes that found the kernel buffer full and left
                               the rest to the pumping thread (EPOLLOUT) */
    uint64_t rx_frames;
    uint64_t rx_msgs;
    uint64_t rx_heartbeat_frames;
    uint64_t rx_beats;
    uint64_t rx_bytes;
    uint64_t rx_snapshot_chunks;
    uint32_t queued_frames; /* now */
    uint32_t queued_bytes;  /* now */
    bool connected;         /* now */
};

/* Fills *s for `peer`. Errors: SINTER_ENOTFOUND. */
int sinter_raft_transport_stats(struct sinter_raft_transport *t, sinter_raft_id peer,
                                struct sinter_raft_transport_stats *s);

/* Listener-wide counters. */
struct sinter_raft_transport_global_stats {
    uint64_t accepted;      /* inbound connections accepted */
    uint64_t refused;       /* inbound connections refused (max_inbound) */
    uint64_t rx_bad_frames; /* frames that failed to decode (each closed its connection) */
    uint64_t rx_unknown;    /* frames from a sender that is not a configured peer (delivered) */
    uint64_t rx_bad_sender; /* BATCH messages whose from differs from the frame's sender */
};
void sinter_raft_transport_global_stats(struct sinter_raft_transport *t,
                                        struct sinter_raft_transport_global_stats *s);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RAFT_TRANSPORT_H */
