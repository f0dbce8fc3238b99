/*
 * Private to proto/: what transport.c (the public API and the nng engine) and transport_native.c
 * (the native tcp:// engine) share. Not installed.
 */
#ifndef SINTER_PROTO_TRANSPORT_PRIV_H
#define SINTER_PROTO_TRANSPORT_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "sinter/transport.h"

#define SINTER_TRANSPORT_DEFAULT_CONTEXTS         64u
#define SINTER_TRANSPORT_DEFAULT_MAX_CONNS        4096u
#define SINTER_TRANSPORT_DEFAULT_REPLY_TIMEOUT_MS 10000u
/* Room for the SP header (request id, and any backtrace a device added) in front of our frame;
 * both engines accept SP messages up to max_frame + this. */
#define SINTER_TRANSPORT_SP_OVERHEAD 64u

/* Both engines' requests start with this, so sinter_transport_reply() can tell them apart. */
struct sinter_transport_request {
    struct sinter_proto_msg msg; /* decoded; strings point into the engine's copy of the frame */
    bool native;
};

/* A decoded reply of either engine: nng's keeps its nng_msg, the native one's frame bytes
 * follow the struct in the same allocation (m == NULL). */
struct sinter_transport_reply_msg {
    struct sinter_proto_msg msg;
    nng_msg *m;
};

/* True for the URLs the native engine serves: tcp://, tcp4://, tcp6://. */
bool sinter_tn_is_tcp_url(const char *url);

/* Writes request_id into the encoded frame b (n bytes, from sinter_proto_encode, which leaves
 * the id 0) and recomputes the frame's CRC32C over it: the id is chosen per call after encoding.
 * Both engines frame their requests and replies this way. */
void sinter_tp_set_request_id(uint8_t *b, size_t n, uint64_t request_id);

/* Decodes a received request frame into *m (strings point into b) and checks that it is a
 * request code. Returns the decoder's error, or SINTER_EBADVALUE with *why set (else *why NULL)
 * for a well-formed frame that is not a request. Shared by both engines' servers. */
int sinter_tp_decode_request(const uint8_t *b, size_t len, const struct sinter_proto_limits *lim,
                             struct sinter_proto_msg *m, const char **why);

struct sinter_tn_server;
struct sinter_tn_client;

/* Native server: the contract of sinter_transport_server_open() and friends, for tcp:// URLs.
 * Errors as sinter_transport_server_open(). */
int sinter_tn_server_open(struct sinter_tn_server **out,
                          const struct sinter_transport_server_opts *opts);
uint16_t sinter_tn_server_port(const struct sinter_tn_server *s);
void sinter_tn_server_stats(struct sinter_tn_server *s, struct sinter_transport_server_stats *st);
int sinter_tn_reply(struct sinter_transport_request *req, const struct sinter_proto_msg *reply);
void sinter_tn_server_close(struct sinter_tn_server *s);

/* Native client: the contract of sinter_transport_client_open() and friends. */
int sinter_tn_client_open(struct sinter_tn_client **out,
                          const struct sinter_transport_client_opts *opts);
int sinter_tn_call_async(struct sinter_tn_client *c, const struct sinter_proto_msg *req,
                         uint32_t timeout_ms, sinter_transport_done done, void *arg);
/* Waits up to ms for a free call slot; false on timeout or when the client is closing. */
bool sinter_tn_client_wait_slot(struct sinter_tn_client *c, uint32_t ms);
void sinter_tn_client_close(struct sinter_tn_client *c);

#endif /* SINTER_PROTO_TRANSPORT_PRIV_H */
