/*
 * sinter/tcc.h — TCC (try / confirm / cancel) on libsinter-rm, with the fence (sinter/fence.h)
 * in the service's own database. Seata's TCC mode with useTCCFence = true:
 *
 *   service (phase one)      sinter_tcc_try: BranchRegister (the try's arguments become the
 *                            branch's application data, stored at the coordinator), then the
 *                            user's try inside sinter_fence_try on the caller's connection, in
 *                            one local transaction with the fence row; on failure the branch is
 *                            reported PhaseOne_Failed (the global cannot commit)
 *   TM commits / rolls back  the coordinator delivers BranchCommit / BranchRollback to ANY live
 *                            instance serving the action (resource id = action name)
 *   RM worker (phase two)    confirm inside sinter_fence_confirm / cancel inside
 *                            sinter_fence_cancel, on a connection to the same database opened by
 *                            the library for that worker thread; the hook gets the xid, branch
 *                            id, action name and the try's arguments from the delivery, so it
 *                            needs no state from the process that ran the try
 *
 * The fence makes confirm / cancel idempotent (a duplicate delivery runs the hook once), turns a
 * cancel without try into an empty rollback (no hook), and refuses a try after its cancel
 * (SINTER_EFENCE). A hook does its business change on ctx->db and must not begin, commit or roll
 * back itself; returning non-zero rolls the business change and the fence row back together.
 *
 * Phase-2 results (sinter/rm.h table): the fence's SINTER_ESTATE (confirm after cancel, cancel
 * after confirm) is reported *_Unretryable; SINTER_EBUSY (confirm before the try committed, a
 * connection that is not idle, database contention, a PostgreSQL lock or statement timeout) and a
 * hook's own error codes are *_Retryable (the coordinator retries with backoff); a hook returning
 * SINTER_ESTATE or SINTER_EFENCE says "never" (Unretryable).
 *
 * Fence cleanup: the RM's maintenance thread deletes ended fence rows older than
 * sinter_rm_opts.fence_retention_ms (see there: it must exceed the coordinator's phase-2 retry
 * deadline and the longest global timeout).
 */
#ifndef SINTER_TCC_H
#define SINTER_TCC_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/fence.h"
#include "sinter/rm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a try / confirm / cancel hook gets. Valid for the call only. */
struct sinter_tcc_ctx {
    const char *xid; /* text form of the global's xid */
    uint64_t branch_id;
    const char *action;  /* the action's name (its resource id) */
    const uint8_t *args; /* the try's arguments (may be NULL when args_len is 0) */
    size_t args_len;
    const struct sinter_fence_db *db; /* do the business change here, inside the fence's
                                         local transaction */
    void *user;                       /* sinter_tcc_action.user */
    uint32_t attempt;                 /* 0 for try; the delivery's attempt (1, 2, ...) in phase 2 */
};

/* A hook: 0 on success, any non-zero sinter code to roll back (see the top for how phase 2
 * reports it). */
typedef int (*sinter_tcc_hook)(const struct sinter_tcc_ctx *ctx);

struct sinter_tcc_action {
    const char *name; /* resource id of the branches; 1..64 bytes (the fence's action limit). To
                         receive phase 2, the RM must list it in sinter_rm_opts.resources. */
    sinter_tcc_hook try_fn;     /* may be NULL (nothing to reserve) */
    sinter_tcc_hook confirm_fn; /* may be NULL */
    sinter_tcc_hook cancel_fn;  /* may be NULL */
    void *user;                 /* passed in ctx->user */
    /* Phase 2's database, the one the service runs its tries on (same fence table). Exactly one
     * of: sqlite_path (opened by the library, one connection per worker thread, busy timeout
     * 5 s), pg_conninfo (libpq, one connection per worker thread, closed and reopened when it
     * broke or was left inside a transaction), or connect + disconnect (the caller's factory,
     * e.g. a pool: connect is called on the worker thread at the start of EVERY phase-2
     * delivery and fills *db (zeroed on entry) with an idle connection; disconnect gets it back at
     * the end of that delivery, whatever its outcome, possibly inside a failed transaction: the
     * pool checks or replaces it. A pooled SQLite connection should come with its statement cache
     * in db->cache (sinter_fence_cache_new; it stays the pool's, freed before the connection is
     * closed): a phase-2 delivery then prepares nothing. The library's sqlite_path connections
     * have one built in. connect returning non-zero, or a connection handed out inside a
     * transaction (SINTER_EBUSY), makes the delivery retryable. Both are also called once by
     * sinter_tcc_register and per fence-cleanup round). */
    const char *sqlite_path;
    const char *pg_conninfo;
    int (*connect)(void *arg, struct sinter_fence_db *db);
    void (*disconnect)(void *arg, struct sinter_fence_db *db);
    void *connect_arg;
    /* true: report PhaseOne_Done after a successful try (one more replicated write; Seata's TCC
     * does not report by default and neither do we). */
    bool report_phase1_done;
    /* pg_conninfo only: bounds on every wait of the library's own PostgreSQL connections, so a
     * stuck database or a row lock held by the service never parks a phase-2 worker past the
     * coordinator's lease (phase2_lease_ms, default 10 s). 0 = the default, UINT32_MAX = no
     * bound. A lock or statement timeout fails the fence call with SINTER_EBUSY (SQLSTATE 55P03
     * / 57014): reported retryable, the coordinator delivers again with backoff. */
    uint32_t pg_connect_timeout_ms;   /* libpq connect_timeout, whole seconds rounded up (libpq
                                         waits at least 2 s); 0 = 5000. A connect_timeout in
                                         pg_conninfo wins. */
    uint32_t pg_lock_timeout_ms;      /* SET lock_timeout on connect; 0 = 5000 */
    uint32_t pg_statement_timeout_ms; /* SET statement_timeout on connect; 0 = 8000 */
};

/* Registers an action with rm: opens one connection to check the database and create the fence
 * table if missing (sinter_fence_init), then installs the phase-2 handler for (name, TCC).
 * Call before sinter_rm_start (or deliveries that arrive first are reported retryable).
 * Ownership: a and its strings are copied; user and connect_arg are borrowed until
 * sinter_rm_close. Errors: SINTER_EINVAL (no name, name too long, not exactly one database
 * source), SINTER_EEXIST (an action of that name exists), SINTER_EDB (the database could not be
 * opened or initialised: sinter_rm_errmsg says why), SINTER_ECONFIG (a table named
 * sinter_tcc_fence without the fence's columns), SINTER_EBUSY, SINTER_ENOMEM. */
int sinter_tcc_register(struct sinter_rm *rm, const struct sinter_tcc_action *a);

/* Phase one of action for global xid: registers the branch with args (len bytes, up to 64 KiB)
 * as its application data, then runs the action's try inside sinter_fence_try on db (the
 * caller's idle connection to the service's database; the try's business change goes there).
 * On a failed try (fence refusal, hook error, database error) the branch is reported
 * PhaseOne_Failed (best effort) and the try's code returned. *branch_id (may be NULL) gets the
 * branch id once registered, also when the try then fails.
 * Ownership: borrows everything. Errors: those of sinter_rm_branch_register (SINTER_ESTATE: the
 * global is no longer Begin; SINTER_ETIMEOUT: outcome unknown, nothing ran), SINTER_ENOTFOUND
 * (no such action registered), SINTER_EFENCE (the cancel came first: anti-suspension), the
 * hook's code, the fence's errors (sinter_fence_errmsg), and with report_phase1_done the
 * report's errors (the try is committed then: the branch stays Registered, which phase 2 treats
 * alike). */
int sinter_tcc_try(struct sinter_rm *rm, const char *action, const char *xid, const void *args,
                   size_t len, const struct sinter_fence_db *db, uint64_t *branch_id);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TCC_H */
