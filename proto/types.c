/* Names and classification of the Seata status codes in sinter/types.h. */
#include "sinter/types.h"

#include <stddef.h>

static const char *const global_names[SINTER_GS_MAX + 1] = {
    [SINTER_GS_UNKNOWN] = "UnKnown",
    [SINTER_GS_BEGIN] = "Begin",
    [SINTER_GS_COMMITTING] = "Committing",
    [SINTER_GS_COMMIT_RETRYING] = "CommitRetrying",
    [SINTER_GS_ROLLBACKING] = "Rollbacking",
    [SINTER_GS_ROLLBACK_RETRYING] = "RollbackRetrying",
    [SINTER_GS_TIMEOUT_ROLLBACKING] = "TimeoutRollbacking",
    [SINTER_GS_TIMEOUT_ROLLBACK_RETRYING] = "TimeoutRollbackRetrying",
    [SINTER_GS_COMMITTED] = "Committed",
    [SINTER_GS_COMMIT_FAILED] = "CommitFailed",
    [SINTER_GS_ROLLBACKED] = "Rollbacked",
    [SINTER_GS_ROLLBACK_FAILED] = "RollbackFailed",
    [SINTER_GS_TIMEOUT_ROLLBACKED] = "TimeoutRollbacked",
    [SINTER_GS_TIMEOUT_ROLLBACK_FAILED] = "TimeoutRollbackFailed",
    [SINTER_GS_FINISHED] = "Finished",
    [SINTER_GS_COMMIT_RETRY_TIMEOUT] = "CommitRetryTimeout",
    [SINTER_GS_ROLLBACK_RETRY_TIMEOUT] = "RollbackRetryTimeout",
};

static const char *const branch_names[SINTER_BS_MAX + 1] = {
    [SINTER_BS_UNKNOWN] = "Unknown",
    [SINTER_BS_REGISTERED] = "Registered",
    [SINTER_BS_PHASE1_DONE] = "PhaseOne_Done",
    [SINTER_BS_PHASE1_FAILED] = "PhaseOne_Failed",
    [SINTER_BS_PHASE2_COMMITTED] = "PhaseTwo_Committed",
    [SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE] = "PhaseTwo_CommitFailed_Retryable",
    [SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE] = "PhaseTwo_CommitFailed_Unretryable",
    [SINTER_BS_PHASE2_ROLLBACKED] = "PhaseTwo_Rollbacked",
    [SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE] = "PhaseTwo_RollbackFailed_Retryable",
    [SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE] = "PhaseTwo_RollbackFailed_Unretryable",
};

bool sinter_global_status_valid(uint32_t s)
{
    return s >= SINTER_GS_BEGIN && s <= SINTER_GS_MAX && global_names[s] != NULL;
}

bool sinter_branch_status_valid(uint32_t s)
{
    return s >= SINTER_BS_REGISTERED && s <= SINTER_BS_MAX && branch_names[s] != NULL;
}

bool sinter_branch_type_valid(uint32_t t)
{
    return t == SINTER_BT_TCC || t == SINTER_BT_XA;
}

const char *sinter_global_status_name(uint32_t s)
{
    return (s <= SINTER_GS_MAX && global_names[s] != NULL) ? global_names[s] : "Unknown";
}

const char *sinter_branch_status_name(uint32_t s)
{
    return (s <= SINTER_BS_MAX && branch_names[s] != NULL) ? branch_names[s] : "Unknown";
}

const char *sinter_branch_type_name(uint32_t t)
{
    switch (t) {
    case SINTER_BT_TCC:
        return "TCC";
    case SINTER_BT_XA:
        return "XA";
    default:
        return "Unknown";
    }
}

bool sinter_global_status_is_final(uint32_t s)
{
    return s >= SINTER_GS_COMMITTED && s <= SINTER_GS_ROLLBACK_RETRY_TIMEOUT &&
           s != SINTER_GS_FINISHED;
}

bool sinter_global_status_is_commit_side(uint32_t s)
{
    return s == SINTER_GS_COMMITTING || s == SINTER_GS_COMMIT_RETRYING ||
           s == SINTER_GS_COMMITTED || s == SINTER_GS_COMMIT_FAILED ||
           s == SINTER_GS_COMMIT_RETRY_TIMEOUT;
}

bool sinter_global_status_is_rollback_side(uint32_t s)
{
    switch (s) {
    case SINTER_GS_ROLLBACKING:
    case SINTER_GS_ROLLBACK_RETRYING:
    case SINTER_GS_TIMEOUT_ROLLBACKING:
    case SINTER_GS_TIMEOUT_ROLLBACK_RETRYING:
    case SINTER_GS_ROLLBACKED:
    case SINTER_GS_ROLLBACK_FAILED:
    case SINTER_GS_TIMEOUT_ROLLBACKED:
    case SINTER_GS_TIMEOUT_ROLLBACK_FAILED:
    case SINTER_GS_ROLLBACK_RETRY_TIMEOUT:
        return true;
    default:
        return false;
    }
}
