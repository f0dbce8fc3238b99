/*
 * Transaction vocabulary shared by the coordinator, the client libraries and the wire protocol.
 * The numbers are Seata's (io.seata.core.model.GlobalStatus / BranchStatus / BranchType), so an
 * operator who knows Seata reads the same codes in Sinter's logs, metrics and admin API. They are
 * stored on disk and sent on the wire: never renumber.
 */
#ifndef SINTER_TYPES_H
#define SINTER_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum sinter_global_status {
    SINTER_GS_UNKNOWN = 0,
    SINTER_GS_BEGIN = 1,
    SINTER_GS_COMMITTING = 2,
    SINTER_GS_COMMIT_RETRYING = 3,
    SINTER_GS_ROLLBACKING = 4,
    SINTER_GS_ROLLBACK_RETRYING = 5,
    SINTER_GS_TIMEOUT_ROLLBACKING = 6,
    SINTER_GS_TIMEOUT_ROLLBACK_RETRYING = 7,
    /* 8 was Seata's AsyncCommitting (AT mode only); unused here, never reassigned. */
    SINTER_GS_COMMITTED = 9,
    SINTER_GS_COMMIT_FAILED = 10,
    SINTER_GS_ROLLBACKED = 11,
    SINTER_GS_ROLLBACK_FAILED = 12,
    SINTER_GS_TIMEOUT_ROLLBACKED = 13,
    SINTER_GS_TIMEOUT_ROLLBACK_FAILED = 14,
    SINTER_GS_FINISHED = 15, /* unknown xid: already finished and forgotten, or never existed */
    SINTER_GS_COMMIT_RETRY_TIMEOUT = 16,
    SINTER_GS_ROLLBACK_RETRY_TIMEOUT = 17,
};
#define SINTER_GS_MAX 17

enum sinter_branch_status {
    SINTER_BS_UNKNOWN = 0,
    SINTER_BS_REGISTERED = 1,
    SINTER_BS_PHASE1_DONE = 2,
    SINTER_BS_PHASE1_FAILED = 3,
    /* 4 was Seata's PhaseOne_Timeout; unused here, never reassigned. */
    SINTER_BS_PHASE2_COMMITTED = 5,
    SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE = 6,
    SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE = 7,
    SINTER_BS_PHASE2_ROLLBACKED = 8,
    SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE = 9,
    SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE = 10,
};
#define SINTER_BS_MAX 10

enum sinter_branch_type {
    SINTER_BT_TCC = 1,
    SINTER_BT_XA = 3,
};

/* True for a defined GlobalStatus / BranchStatus / BranchType value (wire validation). */
bool sinter_global_status_valid(uint32_t s);
bool sinter_branch_status_valid(uint32_t s);
bool sinter_branch_type_valid(uint32_t t);

/* Seata's names ("Begin", "CommitRetrying", "PhaseTwo_Committed", "TCC"), static strings;
 * "Unknown" for undefined values. */
const char *sinter_global_status_name(uint32_t s);
const char *sinter_branch_status_name(uint32_t s);
const char *sinter_branch_type_name(uint32_t t);

/* Classification used by the state machine, the workers and the clients. */
bool sinter_global_status_is_final(uint32_t s);         /* Committed .. RollbackRetryTimeout */
bool sinter_global_status_is_commit_side(uint32_t s);   /* Committing, CommitRetrying, Committed,
                                                           CommitFailed, CommitRetryTimeout */
bool sinter_global_status_is_rollback_side(uint32_t s); /* every Rollback* / TimeoutRollback* */

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TYPES_H */
