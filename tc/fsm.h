/*
 * tc/fsm.h — the coordinator's transaction state machine, one per raft group, over SQLite.
 *
 * The raft host applies committed entries here in log order. Each entry holds one command
 * (tc/command.h); the state machine validates it against the stored state (compare-and-set) and
 * either applies it or refuses it with a precise code, identically on every replica:
 *
 *   - pure and deterministic: no clock (the leader's now_ms travels in the command), no randomness,
 *     no SQLite rowid or iteration order leaking into state or results; the same entries give
 *     byte-identical logical state on every replica (sinter_tc_fsm_digest() checks it);
 *   - exactly once: last_applied_index is written in the same SQLite transaction as the changes,
 *     and a batch of entries is one SQLite transaction, so after a crash or restart the host
 *     re-applies from last_applied_index + 1 and entries at or below it are ignored;
 *   - client sessions: (client id, seq) -> the first answer, so a retried request returns that
 *     answer and never begins a second global or registers a second branch. Once a (client id,
 *     seq) has been answered, a retry gets that answer or, once the answer is forgotten (window,
 *     session GC), SINTER_ESTALE — never a second application — for as long as the state holds
 *     the client's row (its floor and highest seq), which GC keeps far longer than the answers.
 *
 * Transition table (G = global status, B = branch status; the full rules with Seata citations are
 * in fsm.c):
 *
 *   BEGIN                       -> G Begin (xid = {group, entry index})
 *   REGISTER_BRANCH  G Begin    -> B Registered (branch id = entry index)
 *   REPORT_BRANCH    G Begin, B Registered -> B PhaseOne_Done | PhaseOne_Failed
 *   DECIDE           G Begin    -> Committing | Rollbacking | TimeoutRollbacking (timeout only
 *                                  when now > begin + timeout; commit only when no branch is
 *                                  PhaseOne_Failed, see below); then settles at once to
 *                                  Committed / Rollbacked / TimeoutRollbacked if no branch needs
 *                                  phase 2 (Seata's commit of a global without branches)
 *   PHASE2_START     G in phase 2 (*ing, *Retrying): records the first phase-2 attempt time (once;
 *                    the first BRANCH_RESULT records it too, with the same "once": the leader
 *                    proposes PHASE2_START only when a delivery's lease expires before any
 *                    BRANCH_RESULT, docs/phase2-protocol.md)
 *   BRANCH_RESULT    G on the decided side: B -> PhaseTwo_* outcome; a retryable outcome moves
 *                    G *ing -> *Retrying; when every branch is terminal G settles:
 *                    all done -> Committed | Rollbacked | TimeoutRollbacked,
 *                    any unretryable -> CommitFailed | RollbackFailed | TimeoutRollbackFailed
 *   BRANCH_RESULTS   1..64 BRANCH_RESULTs in one entry, applied one after the other as above, each
 *                    with its own answer (sinter_tc_result.sub); one refused outcome neither undoes
 *                    nor blocks the others
 *   END              explicit settle (same rule), refused while a branch is pending
 *   RETRY_TIMEOUT    G in phase 2, now > phase2_first + max_retry -> CommitRetryTimeout |
 *                    RollbackRetryTimeout
 *   GC               removes Committed/Rollbacked/TimeoutRollbacked globals with end < cutoff
 *                    (never a failed one), client answers older than the session cutoff (raising
 *                    the client's floor past them), and client rows silent since the (earlier)
 *                    client cutoff that hold no answer (never one whose floor the same GC raised)
 *   REDRIVE (admin)  G failed -> the side's *Retrying, unretryable branches -> retryable
 *   RESOLVE (admin)  G failed -> the side's success end
 *
 * Commit side (Committing, CommitRetrying, Committed, CommitFailed, CommitRetryTimeout) and
 * rollback side never meet: no command moves a global from one to the other.
 *
 * Phase one and phase two (one atomic outcome):
 *   - a commit decision is refused (SINTER_ESTATE, the global stays Begin) while any branch
 *     reported PhaseOne_Failed: the TM must roll back. Registered branches that never reported
 *     do not block it (a TCC try need not report; the RM answers a confirm that finds no fence row
 *     as retryable). A global without branches may commit (Seata). Seata itself accepts the
 *     commit and drops PhaseOne_Failed branches; we do not (see fsm.c).
 *   - every branch without a phase-2 end (Registered, PhaseOne_Done, PhaseOne_Failed, *_Retryable)
 *     needs a phase-2 delivery (sinter_tc_branch_needs_phase2), and a global settles only when
 *     each branch has a phase-2 end. On the rollback side this includes PhaseOne_Failed: a failed
 *     phase one may hide a PREPARE or a try whose commit outcome is unknown, and the RM makes a
 *     rollback of it safe (TCC fence: empty rollback; XA: 42704 resolved). Seata skips them.
 *
 * Thread safety: none; one thread uses an fsm at a time. sinter_tc_fsm_snapshot_to() reads through
 * its own connection and may run on another thread while this one applies.
 */
#ifndef SINTER_TC_FSM_H
#define SINTER_TC_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/types.h"
#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Seata keeps finished sessions only in memory; we keep finished globals this long by default so
 * a late duplicate (commit retried after a leader change) gets a precise answer. The leader's GC
 * worker proposes GC with cutoff = now - retention. */
#define SINTER_TC_DEFAULT_RETENTION_MS (24ull * 3600 * 1000)

/* A client's requests with seq <= max_seq - SINTER_TC_SESSION_WINDOW whose answers are gone are
 * refused (SINTER_ESTALE) rather than re-applied: a client never has that many requests in flight.
 */
#define SINTER_TC_SESSION_WINDOW 4096

/* How long the leader's GC keeps a silent client's row (GC client_cutoff = now - this), which
 * holds the floor that refuses retries of its forgotten answers. Must be >= the session retention
 * (the decoder refuses a GC whose client cutoff is later than its session cutoff) and should be far
 * longer than any client's retry horizon: a row is tiny, but client ids are unique per client
 * process start, so rows of exited clients must go eventually. */
#define SINTER_TC_DEFAULT_CLIENT_RETENTION_MS (30ull * 24 * 3600 * 1000)

struct sinter_tc_fsm;

/* One committed raft entry. len == 0 marks an entry that is not a command (raft no-op or
 * configuration change): it only advances the applied index. */
struct sinter_tc_entry {
    uint64_t index; /* raft log index, > 0 and <= INT64_MAX, strictly increasing in a batch */
    uint64_t term;
    const uint8_t *data;
    size_t len;
};

/* The answer to one entry, which the server sends to the client waiting on it. */
struct sinter_tc_result {
    int rc;                    /* SINTER_OK or the refusal (see the codes below) */
    uint32_t status;           /* the global's status after the entry (SINTER_GS_FINISHED when the
                                  xid is unknown; 0 when the command names no global) */
    uint32_t branch_status;    /* the branch's status after the entry, for branch commands */
    struct sinter_xid xid;     /* the global concerned (BEGIN: the new xid) */
    uint64_t branch_id;        /* REGISTER: the new branch id; branch commands: that branch */
    uint64_t removed;          /* GC: globals removed */
    uint64_t sessions_removed; /* GC: client answers forgotten */
    uint64_t clients_removed;  /* GC: client rows forgotten */
    bool duplicate;            /* answer replayed from the client session table, nothing applied */
    bool skipped;              /* index <= last applied: ignored (rc SINTER_ESTALE) */
    /* BRANCH_RESULTS (rc SINTER_OK): sub[i] is the answer to outcome i, what a BRANCH_RESULT with
     * it would have been answered (its own rc, status, branch status, xid, branch id). Points
     * into the fsm, valid until its next apply_batch (or close); NULL and 0 otherwise. */
    const struct sinter_tc_result *sub;
    uint32_t n_sub;
};

/* Result codes of a refused command (rc in sinter_tc_result):
 *   SINTER_EINVAL     command malformed (decode failed) or a sequence number reused for a
 *                     different request
 *   SINTER_ENOTFOUND  unknown xid (status Finished) or branch
 *   SINTER_ESTATE     not allowed in the current state: late register, decide from non-Begin on
 *                     the other side, timeout not yet reached, result for a branch in a wrong
 *                     state, retry deadline not reached, settle with pending branches
 *   SINTER_ESTALE     client request older than the session window (answer forgotten) */

/* Opens (creating if needed) the state database at path for raft group `group`. WAL mode,
 * synchronous=NORMAL (see fsm.c for why that is enough). Ownership: *out belongs to the caller,
 * released with sinter_tc_fsm_close(); path is copied.
 * Errors: SINTER_EINVAL (NULL), SINTER_ECONFIG (database belongs to another group),
 * SINTER_ECORRUPT (schema version unknown or meta missing), SINTER_EDB, SINTER_ENOMEM. */
int sinter_tc_fsm_open(struct sinter_tc_fsm **out, const char *path, uint32_t group);

/* Closes the database and frees everything. NULL is ok. */
void sinter_tc_fsm_close(struct sinter_tc_fsm *fsm);

/* The raft group this state machine belongs to. */
uint32_t sinter_tc_fsm_group(const struct sinter_tc_fsm *fsm);

/* A message describing the last error of sinter_tc_fsm_install_from() ("" when it succeeded or
 * was never called). Ownership: points into fsm, valid until the next call on fsm. */
const char *sinter_tc_fsm_errmsg(const struct sinter_tc_fsm *fsm);

/* Whether a branch in branch_status still needs a phase-2 delivery once its global is decided
 * (either side): every status but a phase-2 end, so Registered, PhaseOne_Done, PhaseOne_Failed
 * and the *_Retryable failures. The phase-2 worker uses it to pick the branches to deliver to; the
 * state machine settles a global with the same rule. False for an invalid status. */
bool sinter_tc_branch_needs_phase2(uint32_t branch_status);

/* Index and term of the last applied entry (0, 0 for a fresh database). */
uint64_t sinter_tc_fsm_last_applied(const struct sinter_tc_fsm *fsm);
uint64_t sinter_tc_fsm_last_applied_term(const struct sinter_tc_fsm *fsm);

/* Applies n entries in one SQLite transaction and fills results[0..n) (one per entry). Entries
 * with index <= last applied are skipped (result.skipped, rc SINTER_ESTALE). A refused command is
 * not an error of this function: its result carries the refusal and the entry still counts as
 * applied. Ownership: reads entries (and their data), writes results.
 * Errors (nothing is applied, last applied unchanged; the host must not advance): SINTER_EINVAL
 * (indexes not strictly increasing, NULL), SINTER_EBADVERSION (a command of a newer format: this
 * replica must be upgraded before it can apply it, never skip it), SINTER_EDB, SINTER_ENOMEM. */
int sinter_tc_fsm_apply_batch(struct sinter_tc_fsm *fsm, const struct sinter_tc_entry *entries,
                              size_t n, struct sinter_tc_result *results);

/* ---- queries (for the server, the admin API and the leader's workers) ------------------------ */

struct sinter_tc_global {
    struct sinter_xid xid;
    uint32_t status;
    uint32_t decision; /* 0 while Begin, else Committing / Rollbacking / TimeoutRollbacking */
    char app_id[129];
    char tx_name[129];
    char client_id[129];
    uint64_t timeout_ms;
    uint64_t begin_ms;
    uint64_t deadline_ms;
    uint64_t decided_ms;
    uint64_t phase2_first_ms;
    uint64_t end_ms;
    uint8_t *app_data; /* malloc'ed, app_data_len bytes (NULL when 0) */
    uint32_t app_data_len;
};

struct sinter_tc_branch {
    uint64_t branch_id;
    uint32_t branch_type;
    uint32_t status;
    char resource_id[257];
    char client_id[129];
    uint64_t register_ms;
    uint32_t phase2_results;
    uint64_t last_result_ms;
    uint8_t *app_data; /* malloc'ed */
    uint32_t app_data_len;
    uint8_t *xa_info; /* malloc'ed */
    uint32_t xa_info_len;
};

/* Reads global xid_index and, when branches is not NULL, its branches in branch-id order.
 * Ownership: fills *g (g->app_data is malloc'ed); *branches becomes a malloc'ed array of
 * *n_branches entries. Release both with sinter_tc_global_free() / sinter_tc_branches_free().
 * Errors: SINTER_ENOTFOUND (unknown xid: callers report status Finished), SINTER_EDB,
 * SINTER_ENOMEM. */
int sinter_tc_fsm_get_global(struct sinter_tc_fsm *fsm, uint64_t xid_index,
                             struct sinter_tc_global *g, struct sinter_tc_branch **branches,
                             size_t *n_branches);
void sinter_tc_global_free(struct sinter_tc_global *g);
void sinter_tc_branches_free(struct sinter_tc_branch *branches, size_t n);

/* Status of a global: SINTER_OK and *status, or SINTER_ENOTFOUND with *status =
 * SINTER_GS_FINISHED (Seata's answer for an unknown xid). Errors: SINTER_EDB. */
int sinter_tc_fsm_status(struct sinter_tc_fsm *fsm, uint64_t xid_index, uint32_t *status);

/* Listings fill out[0..*n) with xid indexes, at most max. Ownership: writes out and *n.
 * Errors: SINTER_EINVAL (status out of range), SINTER_EDB. */
/* Globals in `status` with xid_index > after, in xid order (page with after = last returned). */
int sinter_tc_fsm_list_by_status(struct sinter_tc_fsm *fsm, uint32_t status, uint64_t after,
                                 uint64_t *out, size_t max, size_t *n);
/* Begin globals whose deadline passed (begin + timeout < now_ms), oldest deadline first: the
 * timeout worker proposes DECIDE TimeoutRollbacking for each. */
int sinter_tc_fsm_list_timed_out(struct sinter_tc_fsm *fsm, uint64_t now_ms, uint64_t *out,
                                 size_t max, size_t *n);
/* Globals decided but not finished (Committing .. TimeoutRollbackRetrying), xid order, after
 * `after`: the phase-2 worker's queue. */
int sinter_tc_fsm_list_phase2(struct sinter_tc_fsm *fsm, uint64_t after, uint64_t *out, size_t max,
                              size_t *n);

/* counts[s] = number of globals in status s, for s in 0..SINTER_GS_MAX (metrics).
 * Errors: SINTER_EDB. */
int sinter_tc_fsm_count_by_status(struct sinter_tc_fsm *fsm, uint64_t counts[SINTER_GS_MAX + 1]);

/* CRC32C over the whole logical state (every table, every row in key order, every column with its
 * type): equal on replicas that applied the same entries. Errors: SINTER_EDB. */
int sinter_tc_fsm_digest(struct sinter_tc_fsm *fsm, uint32_t *crc);

/* ---- snapshots ------------------------------------------------------------------------------- */

/* Called between backup steps (tests use it to apply entries while a snapshot is taken). */
typedef void (*sinter_tc_snapshot_step_fn)(void *arg);

/* Writes a consistent copy of the database to path: a separate read-only connection opens a read
 * transaction (a WAL snapshot, which never blocks the writer) and copies it with SQLite's online
 * backup in chunks of pages; the copy is written to path.tmp, fsynced and renamed over path, and
 * the directory fsynced. *index / *term receive the last applied entry the copy contains. step
 * (may be NULL) is called between chunks. Ownership: reads fsm's file; writes path.
 * Errors: SINTER_EDB, SINTER_EIO, SINTER_ENOMEM. */
int sinter_tc_fsm_snapshot_to(struct sinter_tc_fsm *fsm, const char *path, uint64_t *index,
                              uint64_t *term, sinter_tc_snapshot_step_fn step, void *step_arg);

/* Replaces the state with the snapshot at path: validates it (schema version, group, SQLite quick
 * check) before touching anything, copies it next to the database, fsyncs, closes the database,
 * renames the copy over it (atomic), fsyncs the directory and reopens. path is left in place.
 * Afterwards last applied is the snapshot's. Ownership: reads path.
 * Errors: SINTER_ECORRUPT (not a valid state snapshot; state untouched), SINTER_ECONFIG (another
 * group's snapshot), SINTER_EDB (among others: the old database's WAL could not be checkpointed,
 * e.g. a reader still holds it; or quick_check gave no verdict; state untouched and the fsm still
 * usable), SINTER_EIO, SINTER_ENOMEM. Every error but SINTER_EINVAL leaves a message in
 * sinter_tc_fsm_errmsg(). After an error past the rename the fsm is
 * unusable (every call fails with SINTER_EDB) and must be closed. */
int sinter_tc_fsm_install_from(struct sinter_tc_fsm *fsm, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TC_FSM_H */
