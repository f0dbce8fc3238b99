/*
 * sinter/tm.h — libsinter-tm, the transaction manager client: begin, commit, rollback and status
 * of a global transaction (Seata's TransactionManager: begin / commit / rollback / getStatus).
 *
 * A handle talks to a sinter-tc cluster given any subset of its client addresses: it follows
 * the leader of each raft group (redirects, ClusterMeta), registers with each node it uses
 * (RegisterTM with the shared secret, again after a node restarted), and retries a call on
 * not-leader, no answer in time, reconnects and stopping nodes — always with the same client id
 * and request sequence, so the coordinator answers a retry with the first answer: a begin that
 * was retried after a lost reply never creates a second global (sinter/client.h).
 *
 * The xid text ("<group>:<index>", sinter/xid.h) is what crosses service boundaries (e.g. an RPC
 * header): a callee passes it to libsinter-rm to join the caller's global transaction.
 *
 * Thread-safe: one handle may be shared by every thread of a process. Every call is synchronous
 * and returns within about the handle's deadline (opts.deadline_ms, plus any phase-2 wait asked
 * for). Errors are sinter/error.h codes (sinter_strerror names them); sinter_tm_errmsg() gives
 * the calling thread's detail for its last call (the coordinator's message, or what the retry
 * loop saw last).
 *
 * Outcome of SINTER_ETIMEOUT: unknown. For begin, a global may exist that nobody will commit:
 * the coordinator rolls it back at its timeout. For commit / rollback, ask sinter_tm_status.
 */
#ifndef SINTER_TM_H
#define SINTER_TM_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sinter_tm;

struct sinter_tm_opts {
    const char *const *addresses; /* client URLs of cluster nodes, e.g. "tcp://10.0.0.1:8091";
                                     one is enough, more survive that one being down */
    size_t n_addresses;
    const char *secret;          /* the cluster's shared secret ([tc] secret); required */
    const char *application_id;  /* recorded with every global this TM begins; NULL = "unknown" */
    uint32_t deadline_ms;        /* bound of each call, retries included; 0 = 10000 */
    uint32_t attempt_timeout_ms; /* bound of one attempt on one node; 0 = 3000 */
};

/* Fills defaults (zero / NULL everywhere: see the fields). Ownership: writes *o only. */
void sinter_tm_opts_default(struct sinter_tm_opts *o);

/* Opens a handle. Sends nothing yet: the cluster may still be starting. Ownership: opts and its
 * strings are copied; *out is the caller's, released with sinter_tm_close().
 * Errors: SINTER_EINVAL (no address, no secret, more than 32 addresses, a string too long),
 * SINTER_ECONFIG (an address nng cannot parse), SINTER_ENOMEM, SINTER_ETRANSPORT. */
int sinter_tm_open(struct sinter_tm **out, const struct sinter_tm_opts *opts);

/* Closes the handle. No call may be running on it. NULL is a no-op. */
void sinter_tm_close(struct sinter_tm *tm);

/* Begins a global transaction named name (may be NULL: ""), rolled back by the coordinator if
 * it is still in Begin after timeout_ms (0: the coordinator's default_timeout_ms). Writes its
 * xid's text form into xid (SINTER_XID_STRLEN bytes, NUL-terminated).
 * Ownership: borrows name; writes xid only on success.
 * Errors: SINTER_EINVAL (NULL xid buffer, name over 256 bytes, timeout refused by the
 * coordinator), SINTER_ETIMEOUT (outcome unknown, see the top), SINTER_EAUTH (wrong secret),
 * SINTER_EBUSY, SINTER_ENOMEM, or another code the coordinator answered. */
int sinter_tm_begin(struct sinter_tm *tm, const char *name, uint32_t timeout_ms,
                    char xid[SINTER_XID_STRLEN]);

/* Commits global xid: returns once the decision is durable on a majority of the cluster (the
 * outcome is then guaranteed, DESIGN.md), with the global's status in *status (may be NULL):
 * Committing while phase 2 runs, Committed when every branch already finished. A repeated
 * commit returns the current status. wait_phase2_ms > 0: also wait up to that long for phase 2
 * to finish (*status then final, e.g. Committed, or still Committing / CommitRetrying when the
 * wait ran out: not an error). Once the decision was acknowledged, the call returns SINTER_OK
 * whatever happens during that wait: a status read that fails (no answer, leader change) ends
 * the wait early with the last status read in *status (the decision's own status at least),
 * never with SINTER_ETIMEOUT, because the outcome is already guaranteed.
 * Ownership: borrows xid; writes *status (0 when the coordinator's answer was an error reply
 * that carries no status).
 * Errors: SINTER_EINVAL (xid not in text form), SINTER_ESTATE (the global was already decided
 * the other way, or timed out: *status says where it is), SINTER_ENOTFOUND (unknown xid:
 * *status is Finished), SINTER_ETIMEOUT (outcome unknown: ask sinter_tm_status), SINTER_EAUTH,
 * SINTER_EBUSY (the coordinator's back-pressure outlasted the retries: ask sinter_tm_status),
 * SINTER_ESTALE (a retry so late that the coordinator has forgotten the first answer, tc/fsm.c
 * client window: the decision may or may not have been taken, ask sinter_tm_status),
 * SINTER_ENOMEM. */
int sinter_tm_commit(struct sinter_tm *tm, const char *xid, uint32_t wait_phase2_ms,
                     uint32_t *status);

/* Rolls back global xid; the mirror image of sinter_tm_commit (Rollbacking, Rollbacked, ...).
 * Ownership and errors as sinter_tm_commit (SINTER_ESTATE: already on the commit side). */
int sinter_tm_rollback(struct sinter_tm *tm, const char *xid, uint32_t wait_phase2_ms,
                       uint32_t *status);

/* The global's current status (a linearizable read at the group's leader) into *status:
 * SINTER_GS_FINISHED for an xid the coordinator does not know (never existed, or finished and
 * past its retention: Seata's answer). wait_ms > 0: poll until the status is final
 * (sinter_global_status_is_final) or wait_ms passed; the last status read is returned either way.
 * Ownership: borrows xid; writes *status on success. Errors: SINTER_EINVAL, SINTER_ETIMEOUT,
 * SINTER_EAUTH, SINTER_EBUSY (the coordinator's back-pressure outlasted the retries; ask
 * again), SINTER_ESTALE (refused as a stale retry; ask again), SINTER_ENOMEM, or another code
 * the coordinator answered. */
int sinter_tm_status(struct sinter_tm *tm, const char *xid, uint32_t wait_ms, uint32_t *status);

/* The handle's client id (random, non-zero): the coordinator logs it with this TM's requests. */
uint64_t sinter_tm_client_id(const struct sinter_tm *tm);

/* The calling thread's detail for its last sinter_tm_* call: "" after success. Ownership:
 * thread-local buffer owned by the library, valid until the thread's next call; never NULL. */
const char *sinter_tm_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TM_H */
