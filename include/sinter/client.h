/*
 * sinter/client.h — the cluster client core shared by libsinter-tm and libsinter-rm (one
 * implementation, in libsinter-proto: proto/client.c).
 *
 * What it does for a caller that has one request to make:
 *   - knows the cluster's nodes: the URLs it was given plus the members ClusterMeta lists (asked
 *     before a routed call until one answer arrived, each node in turn with an equal share of
 *     the round's budget, at most one round per second) and the leader URLs that
 *     not-leader redirects name, so any subset of the addresses is enough, even after the given
 *     node dies;
 *   - keeps one transport client (nng REQ socket with contexts) per node;
 *   - registers with a node (RegisterTM or RegisterRM with application id, shared secret and
 *     resource ids) before the first request to it, and again when the node answers SINTER_EAUTH
 *     (registration is per node and in memory at the TC: a restarted node forgot us), then
 *     retries the same request;
 *   - keeps a leader per raft group, learnt from redirects (Raft paper section 8: a follower
 *     names the leader it knows), from successful answers and from ClusterMeta;
 *   - fills the request prefix: the handle's random non-zero client id and a fresh seq, and
 *     REUSES that seq for every retry of the logical request, so the TC answers a retry with the
 *     first answer (DESIGN.md "Idempotent requests"): a retried begin never begins twice;
 *   - retries on not-leader, on no answer in time, on transport failure and on a node that is
 *     stopping, on the next candidate node, with a short exponential backoff, until the caller's
 *     deadline; then SINTER_ETIMEOUT, which means "outcome unknown";
 *   - on local saturation (every one of the node's transport contexts in flight, nothing sent)
 *     waits and retries the same node, which stays the presumed leader.
 *
 * Thread-safe: any number of threads may call concurrently on one handle. Blocking: every call
 * waits at most about its deadline (plus one backoff step).
 */
#ifndef SINTER_CLIENT_H
#define SINTER_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most nodes one handle tracks (configured URLs plus learnt members; a member list never holds
 * more than SINTER_PROTO_MAX_MEMBERS). */
#define SINTER_CLIENT_MAX_NODES 32u
/* "The raft group is not known yet": GlobalBegin, whose group the server picks. */
#define SINTER_CLIENT_ANY_GROUP UINT32_MAX

struct sinter_client;

/* sinter_client_opts.deadline_ms 0: the bound of one logical call, retries included (also the
 * default of the TM's and RM's deadline_ms, which pass theirs through). */
#define SINTER_CLIENT_DEFAULT_DEADLINE_MS 10000u

struct sinter_client_opts {
    const char *const *urls; /* node client URLs ("tcp://host:port"), at least one; copied */
    size_t n_urls;
    const char *secret;           /* shared secret (the TC's [tc] secret); copied; required */
    const char *application_id;   /* copied; NULL = "unknown" */
    const char *client_version;   /* copied; NULL = "sinter-client/0.1" */
    bool rm;                      /* register as RM (with resources) instead of TM */
    const char *const *resources; /* RM: resource ids this process serves; copied */
    uint32_t n_resources;         /* at most SINTER_PROTO_MAX_RESOURCES */
    uint32_t deadline_ms;         /* default bound of one logical call; 0 =
                                     SINTER_CLIENT_DEFAULT_DEADLINE_MS */
    uint32_t attempt_timeout_ms;  /* bound of one attempt on one node; 0 = 3000 */
    uint64_t client_id;           /* 0 = random (the normal case; tests may fix it) */
};

/* Fills defaults (all zero / NULL: see the field comments). Ownership: writes *o only. */
void sinter_client_opts_default(struct sinter_client_opts *o);

/* Creates the handle and a transport client per configured URL (dialing in the background: the
 * cluster may be down). Nothing is sent yet. Ownership: *out is the caller's, released with
 * sinter_client_close(); opts and its strings are copied. Errors: SINTER_EINVAL (no URL, no
 * secret, too many URLs or resources, a string over the protocol limits), SINTER_ECONFIG (a bad
 * URL), SINTER_ENOMEM, SINTER_ETRANSPORT. */
int sinter_client_open(struct sinter_client **out, const struct sinter_client_opts *opts);

/* Makes every call blocked in this handle return SINTER_ESHUTDOWN now, and every later call
 * fail with SINTER_ESHUTDOWN at once. Requests already sent may still be applied by the TC (their
 * outcome is unknown). Used by owners that must stop threads parked in long polls.
 * Thread-safe. */
void sinter_client_interrupt(struct sinter_client *c);

/* Closes every transport client and frees c. No other thread may be inside a call on c (call
 * sinter_client_interrupt() first and join them). NULL is a no-op. */
void sinter_client_close(struct sinter_client *c);

/* The handle's client id (non-zero). */
uint64_t sinter_client_id(const struct sinter_client *c);

/* A fresh request sequence number (> 0) for one logical request. Thread-safe. */
uint64_t sinter_client_next_seq(struct sinter_client *c);

/* Routed call with retries. Fills req->rq.client_id; fills req->rq.seq with a fresh seq unless
 * the caller set it (then that seq is reused: the caller's own retry of a logical request).
 * Sends to the presumed leader of `group` (SINTER_CLIENT_ANY_GROUP: any node; the group is then
 * learnt from the redirect or from a GlobalBeginResult's xid) and retries as described at the
 * top until deadline_ms (0 = the handle's default) has passed.
 * Returns SINTER_OK with *reply set to the final answer (the caller frees it with
 * sinter_transport_reply_free); that answer may still carry an error in rs.result (SINTER_ESTATE,
 * SINTER_ENOTFOUND, ...): sinter_client_result() reads it. The final answer is never a
 * not-leader, stopping or unregistered error.
 * Ownership: req is read (its strings borrowed) during the call and its prefix written; *reply is
 * the caller's. Errors (*reply NULL): SINTER_ETIMEOUT (deadline passed: outcome unknown, the TC
 * may have applied it), SINTER_EAUTH (a node refused our registration: wrong secret),
 * SINTER_ESHUTDOWN (interrupted), SINTER_EINVAL, SINTER_ENOMEM, the encoder's errors. The
 * calling thread's sinter_client_errmsg() says what happened last. */
int sinter_client_call(struct sinter_client *c, struct sinter_proto_msg *req, uint32_t group,
                       uint32_t deadline_ms, struct sinter_transport_reply_msg **reply);

/* rs.result of a reply (SINTER_OK or the TC's code), and sets the calling thread's
 * sinter_client_errmsg() to the reply's message (or to sinter_strerror of the code). */
int sinter_client_result(const struct sinter_transport_reply_msg *reply);

/* Number of nodes known now (grows as members are learnt, never shrinks). Thread-safe. */
size_t sinter_client_node_count(struct sinter_client *c);

/* The client URL of node i, or NULL when i >= sinter_client_node_count (nodes are never removed,
 * so an index below a count read earlier stays valid). Ownership: owned by c, valid until
 * sinter_client_close. */
const char *sinter_client_node_url(struct sinter_client *c, size_t i);

/* One attempt on node i, no routing: registers first if needed and again on SINTER_EAUTH
 * (then resends the same request once). req's prefix must be filled by the caller (client id
 * from sinter_client_id, seq from sinter_client_next_seq or 0 for messages the TC does not
 * deduplicate). Used for what must reach one particular node: Phase2Poll and Phase2Report
 * (docs/phase2-protocol.md). Returns like sinter_client_call, except that any answer is
 * returned (also not-leader errors), and transport errors are returned as they are
 * (SINTER_ETIMEOUT, SINTER_ETRANSPORT, SINTER_ESHUTDOWN, and SINTER_EBUSY when every transport
 * context to the node is in flight: nothing was sent, try again shortly). A registration this
 * call has to make first gets at most half of timeout_ms. Ownership: as sinter_client_call. */
int sinter_client_call_node(struct sinter_client *c, size_t i, const struct sinter_proto_msg *req,
                            uint32_t timeout_ms, struct sinter_transport_reply_msg **reply);

/* sinter_client_call_node with a cancel flag: the call returns SINTER_ESHUTDOWN as soon as
 * *cancel is true and sinter_client_wake() was called (or the handle was interrupted); other
 * calls on the handle go on. For an owner that stops its long polls but still sends reports.
 * cancel may be NULL. Ownership: borrows cancel for the call. */
int sinter_client_call_node_ex(struct sinter_client *c, size_t i,
                               const struct sinter_proto_msg *req, uint32_t timeout_ms,
                               struct sinter_transport_reply_msg **reply,
                               const atomic_bool *cancel);

/* Wakes every call waiting in this handle so it re-checks its cancel flag. Thread-safe. */
void sinter_client_wake(struct sinter_client *c);

/* Asks the known nodes, in turn, for ClusterMeta until one answers within timeout_ms, starting at
 * the node that answered last, each node getting an equal share of the time left; adds the
 * members it lists and records each group's leader (and the answering node as the first to try).
 * Errors: SINTER_ETIMEOUT (nobody answered), SINTER_ESHUTDOWN. */
int sinter_client_refresh(struct sinter_client *c, uint32_t timeout_ms);

/* Node index believed to lead `group`, or -1. Thread-safe. For tests and diagnostics. */
int sinter_client_leader(struct sinter_client *c, uint32_t group);

/* The calling thread's detail for its last call on any client handle: the server's message, or
 * what the retry loop saw last ("no answer from tcp://... in 3000 ms"). "" after success.
 * Ownership: thread-local buffer owned by the library, valid until the thread's next call;
 * never NULL. */
const char *sinter_client_errmsg(void);

/* Sets the calling thread's sinter_client_errmsg() (printf format), for the layers on top
 * (TM, RM, TCC) that fail before or after a call. Ownership: copies the text. */
void sinter_client_set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic milliseconds (the clock every deadline here uses). */
uint64_t sinter_client_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_CLIENT_H */
