/*
 * The XA resource on PostgreSQL (libpq): the database-facing half of an XA branch.
 *
 * Flow (Seata's XA mode on PostgreSQL's two-phase commit):
 *
 *   sinter_xa_begin    BEGIN, bound the service's statements (SET LOCAL statement_timeout /
 *                      lock_timeout), read the local transaction id pg_current_xact_id() (a
 *                      64-bit xid8), then register the branch with the coordinator (hook) WITH
 *                      that id, so every phase-2 delivery can ask pg_xact_status about it
 *   ... the service runs its SQL on the same connection ...
 *   sinter_xa_prepare  PREPARE TRANSACTION '<gid>', report PhaseOne_Done (hook); the
 *                      late-prepare guard: if the report is refused or lost and the global has
 *                      meanwhile gone to the rollback side, ROLLBACK PREPARED at once
 *   sinter_xa_abort    ROLLBACK, report PhaseOne_Failed (hook)
 *   phase 2            sinter_xa_commit_prepared / sinter_xa_rollback_prepared from ANY
 *                      connection of the resource's database; the answer is a Seata
 *                      BranchStatus for the coordinator (table in rm/README.md)
 *   restart            sinter_xa_recover lists this resource's prepared transactions;
 *                      sinter_xa_resolve applies the coordinator's answer to each
 *
 * The coordinator-facing parts (register, report, ask the global's status) are callbacks
 * (struct sinter_xa_hooks), so this layer is tested with a fake coordinator and wired to the
 * RM's network client later.
 *
 * gid format: "sntr:<ns>:<group>:<index>:<branch>" — ns is the resource's namespace (1..64 of
 * [A-Za-z0-9_.-], unique per resource), group:index the xid, branch the branch id, all decimal.
 * At most 5 + 64 + 1 + 10 + 1 + 20 + 1 + 20 = 122 bytes: always under PostgreSQL's limit of
 * 200 bytes including the NUL (GIDSIZE). The namespace keeps two resources' gids apart on a
 * shared server, and lets the recovery scan find only its own.
 *
 * Connections are the caller's: this layer never opens, closes or reconfigures them beyond the
 * branch transaction (SET LOCAL ends with it). One thread per connection at a time (libpq's
 * rule); a resource may be used by many threads on different connections at once.
 *
 * Hang protection: every statement this layer sends runs under a client-side deadline
 * (call_timeout_ms; asynchronous libpq with poll(), then PQcancel, see rm/xa.c). If the server
 * does not even answer the cancel, the call returns SINTER_ETIMEOUT with a query still in flight
 * on the connection: the caller must then PQfinish() it (its state is unknown). The service's
 * own statements inside a branch are bounded by the server (statement_timeout, lock_timeout).
 *
 * Errors, for every function below: SINTER_EINVAL (bad argument), SINTER_ESTATE (connection in
 * the wrong transaction state, or as described), SINTER_EDB (PostgreSQL reported an error;
 * sinter_xa_errmsg() has the message and SQLSTATE), SINTER_EBUSY (retryable contention: SQLSTATE
 * 40001, 40P01, 55P03, 57014, 55000), SINTER_ETIMEOUT (our client-side deadline passed; from
 * sinter_xa_prepare also "outcome decided by the coordinator", see its table),
 * SINTER_ETRANSPORT (connection lost, SQLSTATE class 08 or 57P0x), SINTER_ENOMEM, or a hook's
 * code passed through.
 */
#ifndef SINTER_XA_H
#define SINTER_XA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "sinter/types.h"
#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size of a gid buffer including the NUL: PostgreSQL's GIDSIZE (src/include/access/twophase.h,
 * "must be less than 200 bytes long" in the PREPARE TRANSACTION docs). Every gid we build is
 * far shorter (SINTER_XA_GID_MAXLEN). */
#define SINTER_XA_GID_LEN 200
/* Longest namespace (bytes, no NUL) and the resulting longest gid (bytes, no NUL). */
#define SINTER_XA_NS_MAX     64
#define SINTER_XA_GID_MAXLEN (5 + SINTER_XA_NS_MAX + 1 + 10 + 1 + 20 + 1 + 20)

/* Builds the gid of (ns, xid, branch_id) into buf (SINTER_XA_GID_LEN bytes). ns: 1..64 bytes of
 * [A-Za-z0-9_.-]; xid->index > 0; branch_id > 0. Returns the gid's length (> 0), or 0 for an
 * invalid argument (buf is then ""). Ownership: borrows ns and xid; writes buf only. */
size_t sinter_xa_gid(const char *ns, const struct sinter_xid *xid, uint64_t branch_id,
                     char buf[SINTER_XA_GID_LEN]);

/* Parses a gid built by sinter_xa_gid. When ns is not NULL the gid must carry exactly that
 * namespace. Canonical form only (the same rules as sinter_xid_parse: no leading zeros, no
 * signs, index and branch > 0), so exactly the strings sinter_xa_gid makes are accepted.
 * Ownership: borrows gid and ns; writes *xid and *branch_id only on success.
 * Errors: SINTER_EINVAL (not a gid of ours / of that namespace). */
int sinter_xa_gid_parse(const char *gid, const char *ns, struct sinter_xid *xid,
                        uint64_t *branch_id);

/* Checks that the server can run XA branches: max_prepared_transactions > 0 (PostgreSQL's
 * default is 0, which makes every PREPARE TRANSACTION fail) and version >= 13
 * (pg_current_xact_id / pg_xact_status on xid8). Runs outside or inside a transaction; changes
 * nothing. err (may be NULL) of errlen bytes gets a message for operators, naming the setting
 * and the fix; also available from sinter_xa_errmsg().
 * Ownership: borrows conn; writes err. Errors: SINTER_ENOPREPARED (max_prepared_transactions is
 * 0), SINTER_ECONFIG (server too old), SINTER_EINVAL, SINTER_EDB, SINTER_ETIMEOUT,
 * SINTER_ETRANSPORT. */
int sinter_xa_check_server(PGconn *conn, char *err, size_t errlen);

/* ---- the resource and its coordinator hooks ---- */

struct sinter_xa_branch;

/* The coordinator-facing calls, supplied by the RM (or by a test's fake). Each returns
 * SINTER_OK or a Sinter error code, which this layer passes back to its caller. arg is
 * sinter_xa_hooks.arg. They are called on the thread that called this layer, with no lock
 * held, and must not use the branch's connection. */
struct sinter_xa_hooks {
    /* Required. Registers a branch of global xid for resource_id (BranchType XA) and writes the
     * branch id (> 0) the coordinator assigned. local_xid (> 0) is the branch's local
     * transaction id, pg_current_xact_id() of the transaction sinter_xa_begin has just started:
     * the coordinator must keep it with the branch and pass it to every phase-2 delivery
     * (sinter_xa_commit_prepared / sinter_xa_rollback_prepared), which resolve "no such prepared
     * transaction" with pg_xact_status(local_xid). That is what makes a rollback delivered
     * before the branch prepared answer RollbackFailed_Retryable ('in progress') instead of an
     * empty-rollback "done" that would leave a later PREPARE to the late-prepare guard alone.
     * It is called while the branch transaction is open on the branch's connection (the time
     * it takes counts against idle_timeout_ms); on any error that transaction is rolled back
     * and the error returned, nothing is reported. SINTER_ESTATE: the global is no longer Begin
     * (late register). */
    int (*register_branch)(void *arg, const struct sinter_xid *xid, const char *resource_id,
                           uint64_t local_xid, uint64_t *branch_id);
    /* Optional (NULL: no reports). Reports the branch's phase-one result: status is
     * SINTER_BS_PHASE1_DONE (br->gid is prepared; br->local_xid is the id to keep with the
     * branch for phase 2) or SINTER_BS_PHASE1_FAILED (the local transaction was rolled back).
     * SINTER_ESTATE from a PhaseOne_Done report: the coordinator refuses it because the global
     * is no longer Begin. The late-prepare guard relies on that refusal: a hook must return
     * SINTER_OK only when the coordinator recorded PhaseOne_Done while the global was Begin. */
    int (*report)(void *arg, const struct sinter_xa_branch *br, uint32_t status);
    /* Optional (NULL: every PhaseOne_Done report is sent by sinter_xa_prepare itself). Takes the
     * PhaseOne_Done report of the branch sinter_xa_prepare has just prepared off the caller's
     * path. br is valid for the call only: the hook copies what it needs. SINTER_OK: the hook's
     * owner sends the report later (with `report` or its own call) and hands its result to
     * sinter_xa_report_settle, which applies the late-prepare guard on a connection of the
     * owner's (never the branch's: the caller owns that one again); sinter_xa_prepare then
     * returns SINTER_OK without waiting. Any other code (queue full, closing): sinter_xa_prepare
     * reports synchronously, as without this hook. Needs `report`; ignored without it. Why the
     * branch stays safe while its report is in flight: rm/xa.c "Asynchronous PhaseOne_Done". */
    int (*report_async)(void *arg, const struct sinter_xa_branch *br);
    /* Required. Writes the global's current GlobalStatus (SINTER_GS_FINISHED when the
     * coordinator does not know the xid). Used by the late-prepare guard (after a refused or lost
     * report, or after PREPARE when there is no report hook). */
    int (*global_status)(void *arg, const struct sinter_xid *xid, uint32_t *status);
    void *arg;
};

struct sinter_xa_config {
    /* Gid namespace of this resource: 1..SINTER_XA_NS_MAX bytes of [A-Za-z0-9_.-]. Must be
     * unique among the resources whose databases share a PostgreSQL server and stable across
     * restarts (recovery finds prepared transactions by it). */
    const char *ns;
    /* Resource id given to register_branch (e.g. "jdbc:postgresql://db1/orders"); may be NULL
     * (then ns is used). At most 255 bytes. */
    const char *resource_id;
    /* Bounds on the service's statements inside a branch, set with SET LOCAL so they end with the
     * branch transaction (PostgreSQL runtime-config-client docs). 0 = default: statement 30000 ms,
     * lock 10000 ms. lock_timeout is what ends a wait PostgreSQL cannot see as a deadlock (two
     * branches of one global on the same row: the second waits for a transaction that only the
     * coordinator will end). UINT32_MAX = no bound (PostgreSQL's 0). */
    uint32_t statement_timeout_ms;
    uint32_t lock_timeout_ms;
    /* idle_in_transaction_session_timeout for the branch (the server ends the SESSION of a
     * service that leaves a branch idle that long, releasing its locks). 0 = not set. */
    uint32_t idle_timeout_ms;
    /* Client-side deadline for each statement this layer sends itself (BEGIN, PREPARE, COMMIT
     * PREPARED, scans, ...). 0 = default 30000 ms. */
    uint32_t call_timeout_ms;
    struct sinter_xa_hooks hooks;
};

/* Opaque, immutable after open: share it between threads freely. */
struct sinter_xa_resource;

/* Registers an XA resource: validates cfg, copies it, and checks the server with
 * sinter_xa_check_server on conn (so a server without max_prepared_transactions is refused
 * here, with the setting's name, not deep inside a transaction later). err (may be NULL) gets a
 * message too. Ownership: borrows cfg (its strings are copied) and conn; *out is the caller's,
 * freed with sinter_xa_resource_close. Errors: SINTER_EINVAL, SINTER_ENOMEM, and those of
 * sinter_xa_check_server. */
int sinter_xa_resource_open(const struct sinter_xa_config *cfg, PGconn *conn,
                            struct sinter_xa_resource **out, char *err, size_t errlen);

/* Frees the resource (NULL is fine). Ownership: takes res. */
void sinter_xa_resource_close(struct sinter_xa_resource *res);

/* The resource's namespace (its gid prefix is "sntr:<ns>:"). Ownership: owned by res. */
const char *sinter_xa_resource_ns(const struct sinter_xa_resource *res);

/* ---- phase one ---- */

/* One branch, caller-owned (on the stack is fine); filled by sinter_xa_begin. */
struct sinter_xa_branch {
    struct sinter_xid xid;
    uint64_t branch_id;          /* assigned by register_branch */
    uint64_t local_xid;          /* pg_current_xact_id(): what pg_xact_status takes */
    char gid[SINTER_XA_GID_LEN]; /* sinter_xa_gid(ns, xid, branch_id) */
    int state;                   /* internal: 0 none, 1 active, 2 ended */
};

/* Starts a branch of global xid on conn, which must be idle (not inside a transaction): BEGIN;
 * in one statement the SET LOCAL bounds and pg_current_xact_id() (br->local_xid); then
 * register_branch with that local_xid (br->branch_id, br->gid). On success conn is inside the
 * branch transaction: the service runs its SQL there, then calls sinter_xa_prepare or
 * sinter_xa_abort. On every failure conn is idle again (the transaction rolled back):
 *   - BEGIN / the start statement failed: nothing was registered, nothing reported;
 *   - register_branch failed: nothing registered (or, after a lost reply, a branch the
 *     coordinator rolls back: phase 2 finds local_xid aborted, Rollbacked), the hook's code
 *     returned, nothing reported;
 *   - register_branch returned branch id 0: PhaseOne_Failed reported, SINTER_EINTERNAL.
 * Ownership: borrows res, conn and xid; writes *br. Errors: SINTER_ESTATE (conn inside a
 * transaction), the hook's codes, common. */
int sinter_xa_begin(const struct sinter_xa_resource *res, PGconn *conn,
                    const struct sinter_xid *xid, struct sinter_xa_branch *br);

/* Ends phase one successfully: PREPARE TRANSACTION '<br->gid>' on conn, then report PhaseOne_Done.
 * The report is the late-prepare guard: the coordinator accepts PhaseOne_Done only while the
 * global is Begin, so an accepted report proves no decision came first, and any later rollback
 * reaches this prepared branch through phase 2. Only when the report is refused with
 * SINTER_ESTATE (the global is no longer Begin) or fails (lost in transit: it may or may not be
 * recorded) is global_status asked which side the global is on; on the rollback side (or
 * unknown to the coordinator) the branch is rolled back at once (ROLLBACK PREPARED, PhaseOne_Failed
 * reported): a prepared transaction nobody will ever finish would hold its locks forever.
 * Without a report hook, global_status is asked right after PREPARE instead (the guard of the
 * table's last two rows). On every return conn is idle (or broken). What each return means for
 * the branch:
 *
 *   case                                                 branch                       return
 *   br not active / the service ended the transaction    nothing prepared             ESTATE
 *   the service left the transaction aborted             rolled back, Failed reported EDB
 *   PREPARE failed (SQL error, connection lost, ...)     rolled back, Failed reported common
 *   PREPARE hit our deadline (call_timeout_ms)           cancelled, rolled back,      ETIMEOUT
 *                                                        Failed reported (if the
 *                                                        server never answered: its
 *                                                        fate is phase 2's/recovery's)
 *   report accepted                                      prepared, Done recorded      OK
 *   report_async hook took the report                    prepared, report in flight   OK
 *     (the guard runs later: sinter_xa_report_settle)
 *   report refused or failed, then global_status:        ROLLBACK PREPARED, Failed    ESTATE
 *     rollback side, Finished or unknown
 *   report refused, then global_status: commit side (or  PREPARED; the coordinator    ETIMEOUT
 *     Begin, or global_status failed: the refusal        commits it (it knows the
 *     already proves a decision that may be commit)      branch and its local_xid)
 *   report failed (lost in transit), then global_status: PREPARED; phase 2 / recovery ETIMEOUT
 *     Begin or commit side, or global_status failed
 *   no report hook: global_status rollback side/unknown  ROLLBACK PREPARED           ESTATE
 *   no report hook: global_status failed                 ROLLBACK PREPARED           its code
 *
 * So SINTER_ESTATE always means "this branch is rolled back (or was never prepared)", and
 * SINTER_ETIMEOUT means "outcome decided by the coordinator; do not assume either side": the
 * branch is prepared (or, after our own deadline, possibly so) and the coordinator's phase 2 or
 * the recovery scan finishes it. A service answers its caller as it would for a timed-out call;
 * it must not undo the branch itself. sinter_xa_errmsg() names the global's status or the
 * report's own error. Ownership: borrows res, conn, br (br->state is updated).
 * Errors: as in the table: SINTER_ESTATE, SINTER_ETIMEOUT, SINTER_EDB, global_status's code (no
 * report hook), common ones (nothing prepared). */
int sinter_xa_prepare(const struct sinter_xa_resource *res, PGconn *conn,
                      struct sinter_xa_branch *br);

/* Where sinter_xa_report_settle gets a connection to the resource's database, only when it
 * has something to roll back (a refused report of a commit-side global needs none). get returns
 * an idle connection or NULL (could not connect: then the branch is left to phase 2 / recovery);
 * put takes it back; rc is the result of the last call made on it (SINTER_ETIMEOUT /
 * SINTER_ETRANSPORT: its state is unknown, do not reuse it). */
struct sinter_xa_conn_source {
    PGconn *(*get)(void *arg);
    void (*put)(void *arg, PGconn *conn, int rc);
    void *arg;
};

/* The late-prepare guard of a PhaseOne_Done report sent apart from sinter_xa_prepare (the
 * report_async hook), applied to that report's result rrc (SINTER_OK: accepted; SINTER_ESTATE /
 * SINTER_ENOTFOUND: refused, the global is no longer Begin or no longer known; anything else:
 * lost, recorded or not). The same rules
 * as sinter_xa_prepare's table rows after PREPARE: accepted -> nothing to do; otherwise
 * global_status is asked, and on the rollback side (or Finished / unknown) the branch is rolled
 * back at once with ROLLBACK PREPARED on a connection from src and PhaseOne_Failed reported;
 * 42704 there (phase 2 or a recovery scan rolled it back first) is resolved by pg_xact_status
 * and counts as done. The connection is never the branch's (the caller owns that one again).
 * br: a copy of the branch as sinter_xa_prepare left it (xid, branch_id, gid, local_xid).
 * Returns SINTER_OK (accepted, nothing done), SINTER_ESTATE (rollback side: rolled back, or the
 * ROLLBACK PREPARED failed / no connection and phase 2 / recovery finishes it; sinter_xa_errmsg()
 * says which), SINTER_ETIMEOUT (left prepared: commit side, still Begin, or the side could not
 * be told; the coordinator's phase 2 or the recovery scan settles it), SINTER_EINVAL.
 * *rolled_back (may be NULL) is set when the branch is rolled back by this call's ROLLBACK
 * PREPARED (or was found rolled back). Ownership: borrows all. */
int sinter_xa_report_settle(const struct sinter_xa_resource *res,
                            const struct sinter_xa_conn_source *src,
                            const struct sinter_xa_branch *br, int rrc, bool *rolled_back);

/* Ends phase one with failure: ROLLBACK (if conn is still in the transaction) and report
 * PhaseOne_Failed. Safe to call after any failed call of the branch. Ownership: borrows all.
 * Errors: SINTER_ESTATE (br was never begun), the report's code; the rollback cannot fail (a
 * lost connection rolls back by itself). */
int sinter_xa_abort(const struct sinter_xa_resource *res, PGconn *conn,
                    struct sinter_xa_branch *br);

/* ---- phase two ---- */

/* COMMIT PREPARED '<gid>' on conn (any idle connection to the resource's database). gid must be
 * a gid of this resource's namespace. local_xid is the id recorded at begin (0 if unknown: then
 * it is looked up in pg_prepared_xacts before committing). *outcome (always written) is the
 * BranchStatus to report: PHASE2_COMMITTED (also for a retry whose earlier attempt committed:
 * 42704 resolved by pg_xact_status = committed), PHASE2_COMMIT_FAILED_RETRYABLE or
 * PHASE2_COMMIT_FAILED_UNRETRYABLE (the local transaction was rolled back or its fate is
 * unknowable: never reported as success). The return code says why (table in rm/README.md):
 * SINTER_OK exactly when *outcome is PHASE2_COMMITTED. Ownership: borrows all; writes *outcome.
 * Errors: SINTER_EINVAL, SINTER_ESTATE (conn inside a transaction: retryable elsewhere; or the
 * local transaction was rolled back: unretryable), SINTER_ENOTFOUND (no such prepared
 * transaction and its fate cannot be told: unretryable), common ones (retryable). */
int sinter_xa_commit_prepared(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                              uint64_t local_xid, uint32_t *outcome);

/* ROLLBACK PREPARED '<gid>'; the mirror image. *outcome: PHASE2_ROLLBACKED (also for an unknown
 * or never-prepared gid whose local transaction aborted or never existed: an "empty rollback"),
 * PHASE2_ROLLBACK_FAILED_RETRYABLE (also while the local transaction is still running: it may
 * yet prepare) or PHASE2_ROLLBACK_FAILED_UNRETRYABLE (it committed). SINTER_OK exactly when
 * *outcome is PHASE2_ROLLBACKED. Ownership: borrows all; writes *outcome.
 * Errors: as sinter_xa_commit_prepared. */
int sinter_xa_rollback_prepared(const struct sinter_xa_resource *res, PGconn *conn, const char *gid,
                                uint64_t local_xid, uint32_t *outcome);

/* ---- recovery ---- */

/* One prepared transaction of this resource, as found by sinter_xa_recover. */
struct sinter_xa_prepared {
    char gid[SINTER_XA_GID_LEN];
    struct sinter_xid xid;
    uint64_t branch_id;
    uint64_t local_xid;  /* its transaction id widened to xid8 */
    int64_t prepared_ms; /* when it was prepared, ms since the Unix epoch */
    char owner[64];      /* the role that prepared it (truncated) */
};

/* Called once per prepared transaction. p is valid for the call only. Returning non-zero stops
 * the scan and is returned by sinter_xa_recover. The callback may use conn (the scan's result is
 * complete before the first call), e.g. to call sinter_xa_resolve. */
typedef int (*sinter_xa_recover_cb)(void *arg, PGconn *conn, const struct sinter_xa_prepared *p);

/* Lists the prepared transactions of conn's database whose gid is this resource's (prefix
 * "sntr:<ns>:" and parseable), oldest first, and calls cb for each. Run it at RM start, on a
 * connection that no branch uses, and ask the coordinator about each.
 * Ownership: borrows res, conn and arg. Errors: common ones, or cb's code. */
int sinter_xa_recover(const struct sinter_xa_resource *res, PGconn *conn, sinter_xa_recover_cb cb,
                      void *arg);

/* Applies the coordinator's answer global_status (a GlobalStatus) to one recovered branch:
 * commit side (Committing .. Committed, CommitFailed, CommitRetryTimeout) -> COMMIT PREPARED;
 * rollback side -> ROLLBACK PREPARED; Begin -> left prepared for the coordinator to drive
 * (*outcome = SINTER_BS_PHASE1_DONE, SINTER_OK); Finished / unknown to the coordinator -> left
 * alone for an operator (*outcome = SINTER_BS_PHASE1_DONE, SINTER_ENOTFOUND, sinter_xa_errmsg()
 * names the gid): a prepared branch of a forgotten global is an anomaly that only a human can
 * settle without risking a half-committed global. Ownership: borrows all; writes *outcome.
 * Errors: those of the phase-2 calls, SINTER_ENOTFOUND, SINTER_EINVAL. */
int sinter_xa_resolve(const struct sinter_xa_resource *res, PGconn *conn,
                      const struct sinter_xa_prepared *p, uint32_t global_status,
                      uint32_t *outcome);

/* ---- helpers ---- */

/* Classifies a SQLSTATE (5 characters, or NULL) the way this layer does: SINTER_EBUSY for
 * retryable contention (40001, 40P01, 55P03, 57014, 55000), SINTER_ETRANSPORT for class 08 and
 * 57P01..57P05, SINTER_EDB otherwise (also for NULL). For the service's own statements inside a
 * branch (e.g. a lock_timeout ends an UPDATE with 55P03). Ownership: borrows sqlstate. */
int sinter_xa_sqlstate_rc(const char *sqlstate);

/* The calling thread's message for the last call of this layer that failed (PostgreSQL's text
 * and SQLSTATE where there is one), also set for outcomes other than success; "" after a
 * success. Ownership: thread-local buffer owned by the library, valid until the thread's next
 * call of this layer; never NULL. */
const char *sinter_xa_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_XA_H */
