/*
 * tests/lib/tcproto.h — a raw wire-protocol client of a tccluster.h cluster, for the integration
 * tests that speak the client protocol (sinter/transport.h) themselves instead of going through
 * libsinter-tm / -rm, so that they see every reply as the coordinator sent it.
 *
 * A struct sinter_raw holds one transport client per node, a client id and a request sequence.
 * sinter_raw_leader() sends a request where it must go the way a TM/RM does: it follows
 * not-leader redirects (which name the leader's client URL), moves on from nodes that are down or
 * not answering, registers again with a node that answers SINTER_EAUTH (it restarted and forgot
 * the session) and repeats a request whose outcome is unknown (SINTER_ETIMEOUT / _ESHUTDOWN from
 * the node) with the same (client id, seq), which the coordinator deduplicates.
 *
 * The builders return the reply's result code (or a transport / deadline error); a reply of the
 * wrong message type is reported on stderr and returned as SINTER_EUNKNOWNMSG, so a test that
 * asserts a code also asserts the reply's type. `seq` 0 means the next one (++p->seq); a test
 * that retries on purpose passes the seq of the first attempt.
 *
 * Threads: sinter_raw_call / sinter_raw_result / sinter_raw_register may run on several threads
 * at once (a transport client takes concurrent calls); the rest from one thread, the one that
 * also starts and stops the nodes (sinter_raw_leader reads their pids).
 */
#ifndef SINTER_TEST_TCPROTO_H
#define SINTER_TEST_TCPROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "sinter/proto.h"
#include "sinter/transport.h"
#include "sinter/types.h"

#include "tccluster.h"

struct sinter_raw {
    struct sinter_tcc *c;                                         /* not owned */
    struct sinter_transport_client *cl[SINTER_TCC_MAX_NODES + 1]; /* 1..c->n, owned */
    uint64_t client;    /* client id: random and odd, set by open */
    uint64_t seq;       /* the last seq a builder took */
    int guess;          /* the node believed to lead, updated by sinter_raw_leader */
    uint16_t reg_code;  /* SINTER_MSG_REGISTER_TM (the default) or SINTER_MSG_REGISTER_RM */
    const char *secret; /* credential of the registrations */
    const char *app;    /* application id of registrations and begins */
    const char *const *resources; /* RegisterRM's resource ids (n_resources of them) */
    uint32_t n_resources;
    uint32_t call_ms; /* one attempt's timeout; default 2000 */
    uint32_t wait_ms; /* sinter_raw_leader's deadline, and the leader waits'; default 30000 */
};

/* Opens one transport client per node of c (dialing in the background, so the nodes may still
 * be starting), with a fresh random client id. ca_file NULL: plain; otherwise nodes whose client
 * URL is tls+tcp:// are dialed over TLS trusting ca_file, expecting the name "localhost".
 * secret and app are kept by pointer (the caller keeps them alive). Ownership: close with
 * sinter_raw_close. Errors: those of sinter_transport_client_open. */
int sinter_raw_open(struct sinter_raw *p, struct sinter_tcc *c, const char *secret, const char *app,
                    const char *ca_file);

/* Closes the transport clients (no thread may still be calling); NULL-safe per node. */
void sinter_raw_close(struct sinter_raw *p);

/* Clears *m and sets its code, p's client id and seq (as given: registration and ClusterMeta
 * go with 0; the builders below take ++p->seq for 0). */
void sinter_raw_req(struct sinter_raw *p, struct sinter_proto_msg *m, uint16_t code, uint64_t seq);

/* The registration p sends (p->reg_code, secret, app, resources for RM), seq 0. */
void sinter_raw_register_req(const struct sinter_raw *p, struct sinter_proto_msg *m);

/* One call to node i (1..n) with p->call_ms. Returns the transport's code; on SINTER_OK *out is
 * the reply (caller frees it with sinter_transport_reply_free). The caller knows node i runs. */
int sinter_raw_call(struct sinter_raw *p, int i, const struct sinter_proto_msg *m,
                    struct sinter_transport_reply_msg **out);

/* One call to node i: the transport's error, or the reply's result code (reply freed). */
int sinter_raw_result(struct sinter_raw *p, int i, const struct sinter_proto_msg *m);

/* Registers p with node i. wait_ms 0: one attempt; otherwise transport failures (a node still
 * starting) are retried for up to wait_ms. Returns the answer's result (SINTER_OK, SINTER_EAUTH)
 * or the last transport error. */
int sinter_raw_register(struct sinter_raw *p, int i, uint32_t wait_ms);

/* Sends m to the leader of its group (see the top of this file) until an answer other than
 * not-leader / timeout / shutdown, within p->wait_ms. Returns SINTER_OK with *out the reply
 * (caller frees it) and *served_by (may be NULL) the node that gave it; SINTER_ETIMEOUT when no
 * leader answered in time, or a failed re-registration's code (both said on stderr). */
int sinter_raw_leader(struct sinter_raw *p, const struct sinter_proto_msg *m,
                      struct sinter_transport_reply_msg **out, int *served_by);

/* Asks every running node for ClusterMeta until all name the same running leader for each of
 * the cluster's groups; returns the node (1..n) leading `group`, or 0 after p->wait_ms or when
 * an answer contradicts the cluster (wrong node id, member list or group count: said on
 * stderr). */
int sinter_raw_leader_of(struct sinter_raw *p, uint32_t group);

/* GlobalBegin (application p->app, transaction name "transfer", timeout_ms) through the leader;
 * *xid the new global, *served_by (may be NULL) the node that answered. */
int sinter_raw_begin(struct sinter_raw *p, uint64_t seq, uint32_t timeout_ms,
                     struct sinter_xid *xid, int *served_by);

/* BranchRegister of a TCC branch on resource res (application data "{}"); *branch its id. */
int sinter_raw_branch_register(struct sinter_raw *p, struct sinter_xid x, const char *res,
                               uint64_t seq, uint64_t *branch);

/* BranchReport of a TCC branch's phase-one status. */
int sinter_raw_branch_report(struct sinter_raw *p, struct sinter_xid x, uint64_t branch,
                             const char *res, uint32_t status, uint64_t seq);

/* GlobalCommit (commit) or GlobalRollback with flags and wait_ms (SINTER_PROTO_END_WAIT_PHASE2);
 * *status the global's status in the answer (set on errors too: e.g. the commit-side status of
 * a refused rollback). */
int sinter_raw_end(struct sinter_raw *p, struct sinter_xid x, bool commit, uint32_t flags,
                   uint32_t wait_ms, uint64_t seq, uint32_t *status);

/* GlobalStatus; *status the answer (Finished for an unknown xid). */
int sinter_raw_status(struct sinter_raw *p, struct sinter_xid x, uint64_t seq, uint32_t *status);

#endif /* SINTER_TEST_TCPROTO_H */
