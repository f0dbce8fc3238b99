/*
 * sinter/transport.h — Sinter frames over nng's SP REQ/REP protocol.
 *
 * Two engines behind this one API, speaking the same bytes on the wire (an nng REQ client talks
 * to a native server and a native client to an nng REP server, so nodes and clients can be
 * upgraded one at a time):
 *   - native (tcp://, tcp4://, tcp6:// by default; proto/transport_native.c): own non-blocking
 *     sockets and one epoll I/O thread per server and per client. The server calls the handler
 *     on its I/O thread and sinter_transport_reply() writes straight to the connection from the
 *     replying thread; the client writes calls from the caller's thread and completes them on
 *     its I/O thread. No nng threads on the request path (issues #6/#7: CPU per transaction).
 *   - nng (tls+tcp:// always, and tcp:// with use_nng): nng REQ/REP sockets with contexts, as
 *     described below. TLS stays on nng, with the listener watchdog.
 * Differences a caller can see: the native server has no listener watchdog (it does not have
 * nng#1518; probes stay 0) and counts connections it closed for SP-level violations in
 * bad_connections; a native client whose connection drops completes the calls it had sent with
 * SINTER_ETRANSPORT, where nng's REQ resends them on the next connection itself (either way the
 * outcome is unknown and the caller retries with the same seq).
 *
 * Server (nng engine; the native one keeps the same contract with its own I/O thread in place of
 * nng's): one REP socket, N nng_ctx contexts each with its own nng_aio, so up to N requests are
 * in flight at once. A context that receives a frame decodes it and hands it to the user handler
 * on nng's callback thread; the handler must return promptly (never block: no disk, no raft
 * round-trip, no lock held by slow code) and answers with sinter_transport_reply() exactly once,
 * either before returning or later from any thread. The context stays busy until then, which is
 * the server's back-pressure: with all N contexts busy nng queues further requests.
 * A malformed frame is answered by the transport itself with a SINTER_MSG_ERROR reply whose
 * result names the problem (SINTER_EBADMAGIC, SINTER_ECRC, ...); the handler never sees it, and
 * the connection and every other client keep being served.
 *
 * Client: one REQ socket with N contexts (native: N call slots), so N calls are in flight over
 * one connection; a synchronous call with a timeout and an asynchronous call with a completion
 * callback.
 *
 * nng 1.5 listener bug (nanomsg/nng#1518, fixed upstream after 1.5.2, not in Debian bookworm's
 * 1.5.2-2): when a peer disconnects while the SP handshake is in progress, the transport can
 * report NNG_ECLOSED (EPIPE) to the listener's accept aio; the socket core takes that for "listener
 * closed" and never accepts again, so one rude client silences the server for everyone. The
 * server therefore runs a watchdog (see watchdog_ms below) that opens a raw TCP connection to its
 * own listener, completes the SP handshake and waits for nng to report the new pipe; if the pipe
 * never arrives, the listener is closed and re-created on the same address. Connections that were
 * already established are dropped by the restart; REQ clients redial and resend, and the TC
 * deduplicates the resent requests by (client_id, seq).
 *
 * nng 1.5.2 close hang (also in Debian's 1.5.2-2; upstream fixed the receive side in 1.6.0, the
 * send side not as of 1.12): when a connection is dropped while nng is writing a message too
 * large for one write(2), its tcp (and tls) transport can re-issue the next piece on the closed
 * pipe, and that write then never completes; nng's reaper waits for it for ever, so every later
 * nng_close in the process (the client's or the server's close below) hangs. Reproduced with nng
 * alone: a REQ socket sending 3 MiB to a REP socket whose NNG_OPT_RECVMAXSZ is 1 MiB hangs in
 * nng_close within ~40 tries. Our requests and replies are small (well under one socket buffer),
 * so only a large TCC argument or message on a connection the peer drops at that moment can hit
 * it; the native engine (tcp://, the default) does not have it. TLS stays exposed until nng is.
 *
 * TLS: tls+tcp:// URLs with tls_enable and the files below (nng's TLS transport, mbedTLS in
 * Debian). The server presents its certificate; the client verifies it against its CA file. When
 * the server is given a CA file too, clients must present a certificate chaining to it (mutual
 * TLS). The listener watchdog probes tcp:// listeners only.
 */
#ifndef SINTER_TRANSPORT_H
#define SINTER_TRANSPORT_H

#include <stdint.h>

#include "sinter/error.h"
#include "sinter/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* TLS files (PEM). Paths are read during open only. */
struct sinter_transport_tls {
    const char *cert_key_file; /* certificate + private key; server: required; client: optional,
                                  presented when the server demands mutual TLS */
    const char *key_password;  /* NULL if the key is not encrypted */
    const char *ca_file;       /* client: required, the CA the server's certificate must chain to;
                                  server: optional, when set clients must present a certificate
                                  chaining to it */
    const char *server_name;   /* client: expected name in the server's certificate (NULL: not
                                  checked beyond the CA chain); server: ignored */
};

/* ---------------------------------------------------------------------------------------------
 * Server
 */

struct sinter_transport_server;
struct sinter_transport_request; /* one received request awaiting its reply */

/* Called on the server's I/O thread (native) or an nng callback thread for every well-formed
 * request frame. `req` stays valid until
 * sinter_transport_reply(req, ...) is called, which must happen exactly once per request.
 * Must not block. */
typedef void (*sinter_transport_handler)(void *arg, struct sinter_transport_request *req);

struct sinter_transport_server_opts {
    const char *url;     /* e.g. "tcp://127.0.0.1:0" (port 0: pick a free port); copied */
    uint32_t n_contexts; /* requests in flight; 0 = default 64 */
    struct sinter_proto_limits limits;
    sinter_transport_handler handler;
    void *handler_arg;
    uint32_t watchdog_ms;       /* listener probe interval; default 500; tcp:// only */
    uint32_t watchdog_probe_ms; /* how long one probe waits for its pipe; default 1500. The
                                   listener is restarted after two failed probes in a row */
    bool watchdog_disable;      /* true: no watchdog (tests that observe nng's raw behaviour) */
    bool tls_enable;            /* required for (and only allowed with) tls+tcp:// URLs */
    struct sinter_transport_tls tls;
    bool use_nng; /* tcp:// through nng's REP socket instead of the native engine (default
                     false); tls+tcp:// always uses nng */
    uint32_t max_connections;  /* client connections open at once; one more is closed as soon as
                                  it is accepted (refused_connections). 0 = default 4096 */
    uint32_t reply_timeout_ms; /* nng engine: a reply still waiting for its connection after this
                                  long means the peer stopped reading; its connection is closed
                                  (stalled_connections), which frees every context waiting on it.
                                  0 = default 10000. The native engine needs no timeout: it stops
                                  reading such a peer once 1 MiB of replies wait for it, and serves
                                  the others meanwhile */
};

/* Fills defaults: no url, no handler, 64 contexts, default limits, watchdog on, native tcp://,
 * 4096 connections, 10 s reply timeout.
 * Ownership: writes *o only. */
void sinter_transport_server_opts_default(struct sinter_transport_server_opts *o);

/* Opens the socket, starts listening and arms every context.
 * Ownership: *out is owned by the caller and released with sinter_transport_server_close();
 * opts is copied (url too). Errors: SINTER_EINVAL (missing url/handler), SINTER_ECONFIG (bad url,
 * tls+tcp:// without tls_enable or the reverse, a TLS file unreadable or invalid),
 * SINTER_ETRANSPORT (listen failed, e.g. address in use), SINTER_ENOMEM. */
int sinter_transport_server_open(struct sinter_transport_server **out,
                                 const struct sinter_transport_server_opts *opts);

/* The TCP port the server listens on (useful after binding port 0), 0 if not TCP. */
uint16_t sinter_transport_server_port(const struct sinter_transport_server *s);

struct sinter_transport_server_stats {
    uint64_t requests;            /* well-formed requests handed to the handler */
    uint64_t bad_frames;          /* frames answered with an error reply by the transport */
    uint64_t probes;              /* watchdog probes run */
    uint64_t probe_failures;      /* probes whose pipe never arrived */
    uint64_t listener_restarts;   /* listener re-created by the watchdog */
    uint64_t bad_connections;     /* native engine: connections closed for an SP violation (bad
                                     SP header or peer protocol, SP length over max_frame + 64,
                                     no request id); nng closes those without counting */
    uint64_t refused_connections; /* closed at once: max_connections were open */
    uint64_t stalled_connections; /* nng engine: closed because a reply could not be sent within
                                     reply_timeout_ms (the peer does not read) */
    uint64_t connections;         /* open now (a gauge; nng: pipes past the SP handshake) */
};

/* Copies the counters into *st. Thread-safe. Ownership: writes *st only. */
void sinter_transport_server_stats(struct sinter_transport_server *s,
                                   struct sinter_transport_server_stats *st);

/* Test hook: closes the listener behind the server's back, leaving it as deaf as nng#1518 does,
 * so a test can check that the watchdog notices and listens again. Not for production use.
 * Errors: SINTER_ETRANSPORT if there was no listener to close, and always on the native engine
 * (nothing to simulate: it has no watchdog and does not have the bug). */
int sinter_transport_server_test_kill_listener(struct sinter_transport_server *s);

/* The decoded request. Strings and data point into the received message and stay valid until
 * sinter_transport_reply() is called for req. Ownership: owned by the transport. */
const struct sinter_proto_msg *
sinter_transport_request_msg(const struct sinter_transport_request *req);

/* Sends reply for req and releases req (it must not be used afterwards). Callable from any
 * thread, exactly once per request. reply->request_id is ignored: the request's id is echoed.
 * reply->code should be sinter_proto_reply_code(request code) or SINTER_MSG_ERROR.
 * If reply cannot be encoded (a handler bug: field over a limit, bad enum), an Error reply with
 * SINTER_EINTERNAL is sent instead and that error is returned. Ownership: reads reply (it may be
 * freed once this returns). Errors: SINTER_EINTERNAL (see above), SINTER_ENOMEM (no reply sent;
 * the client times out and retries). req is released in every case. */
int sinter_transport_reply(struct sinter_transport_request *req,
                           const struct sinter_proto_msg *reply);

/* Convenience: replies SINTER_MSG_ERROR with result rc and message text (may be NULL).
 * Ownership and errors as sinter_transport_reply(). */
int sinter_transport_reply_error(struct sinter_transport_request *req, int rc, const char *text);

/* Stops accepting work, waits until every request handed to the handler has been replied (the
 * caller must make sure its workers still reply), closes the socket and frees s. Replies sent
 * during close still go out. NULL is a no-op. Must not be called from the handler. */
void sinter_transport_server_close(struct sinter_transport_server *s);

/* ---------------------------------------------------------------------------------------------
 * Client
 */

struct sinter_transport_client;

/* A decoded reply. Ownership: the caller owns it and frees it with sinter_transport_reply_free();
 * the message's strings and data point into it. */
struct sinter_transport_reply_msg;

const struct sinter_proto_msg *
sinter_transport_reply_get(const struct sinter_transport_reply_msg *r);
void sinter_transport_reply_free(struct sinter_transport_reply_msg *r);

/* Completion of an asynchronous call, run on the client's I/O thread (native) or an nng callback
 * thread (must not block). rc is SINTER_OK with reply non-NULL (owned by the callee from now
 * on), or an error with reply NULL: SINTER_ETIMEOUT (no answer in time: the outcome is unknown,
 * retry with the same seq), SINTER_ESHUTDOWN (client closed), SINTER_ETRANSPORT (native: the
 * connection dropped after the call was sent; the outcome is unknown as for a timeout),
 * SINTER_ENOMEM, or a decode error
 * (SINTER_ECRC, ...) when the server's frame was malformed. An Error reply (code
 * SINTER_MSG_ERROR) is delivered as rc SINTER_OK: look at reply's rs.result. */
typedef void (*sinter_transport_done)(void *arg, int rc, struct sinter_transport_reply_msg *reply);

struct sinter_transport_client_opts {
    const char *url;     /* server to dial; copied */
    uint32_t n_contexts; /* calls in flight; 0 = default 64 */
    struct sinter_proto_limits limits;
    bool tls_enable; /* required for (and only allowed with) tls+tcp:// URLs */
    struct sinter_transport_tls tls;
    bool use_nng; /* tcp:// through nng's REQ socket instead of the native engine (default
                     false); tls+tcp:// always uses nng */
};

/* Fills defaults: no url, 64 contexts, default limits, native tcp://. Ownership: writes *o. */
void sinter_transport_client_opts_default(struct sinter_transport_client_opts *o);

/* Creates the socket and starts dialing in the background (redialing with backoff while the
 * server is down), so opening succeeds while the server is down; calls made meanwhile wait for
 * the connection within their timeout. Ownership: *out is the caller's, released with
 * sinter_transport_client_close(); opts copied. Errors: SINTER_EINVAL, SINTER_ECONFIG (bad url,
 * TLS mismatch or a TLS file unreadable or invalid, as for the server), SINTER_ETRANSPORT,
 * SINTER_ENOMEM. */
int sinter_transport_client_open(struct sinter_transport_client **out,
                                 const struct sinter_transport_client_opts *opts);

/* Starts a call: encodes req (request_id is assigned by the client and written to *request_id
 * if non-NULL), sends it and calls done once with the outcome within about timeout_ms.
 * Ownership: req is read before this returns (it may be freed afterwards).
 * Errors (done is then NOT called): SINTER_EBUSY (all contexts in flight), SINTER_EINVAL (not a
 * request code, NULL args), the encoder's errors, SINTER_ESHUTDOWN, SINTER_ENOMEM. */
int sinter_transport_call_async(struct sinter_transport_client *c,
                                const struct sinter_proto_msg *req, uint32_t timeout_ms,
                                sinter_transport_done done, void *arg);

/* Synchronous call: like _call_async, but waits up to timeout_ms for a free context too, and
 * returns the outcome. On SINTER_OK *reply is set (caller frees it).
 * Errors: those of sinter_transport_done, plus the start errors except SINTER_EBUSY (it waits
 * instead and fails with SINTER_ETIMEOUT). */
int sinter_transport_call(struct sinter_transport_client *c, const struct sinter_proto_msg *req,
                          uint32_t timeout_ms, struct sinter_transport_reply_msg **reply);

/* Closes the socket (calls in flight complete with SINTER_ESHUTDOWN), waits for their callbacks
 * and frees c. NULL is a no-op. Must not be called from a done callback, nor while another thread
 * is still inside sinter_transport_call() or _call_async() on c. */
void sinter_transport_client_close(struct sinter_transport_client *c);

/* ---------------------------------------------------------------------------------------------
 * URLs
 */

/* Splits a tcp://, tcp4:// or tcp6:// URL the way nng's TCP transport reads it: "host:port",
 * "[v6addr]:port", an empty host or "*" (listen only) for every address, port 0..65535 (0: any
 * free port when listening), nothing after the port but an optional "/". *af becomes AF_UNSPEC,
 * AF_INET or AF_INET6. Shared by the native engines of this transport and of the raft transport.
 * Ownership: reads url; writes *is_tcp, *af and the host / port buffers (NUL-terminated).
 * Returns SINTER_OK with *is_tcp true (parsed), SINTER_OK with *is_tcp false (another scheme,
 * e.g. tls+tcp://: nothing else written), or SINTER_ECONFIG (a malformed tcp URL, or a host or
 * port longer than its buffer). */
int sinter_transport_tcp_url(const char *url, bool *is_tcp, int *af, char *host, size_t host_cap,
                             char *port, size_t port_cap);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TRANSPORT_H */
