/*
 * tc/command.h — the coordinator's replicated commands (internal to tc/).
 *
 * Every raft entry the coordinator proposes is one command, applied by tc/fsm.c on every replica.
 * A command states what the proposer expects (a decision is only taken from Begin, a register only
 * while Begin, a branch result only on the decided side), and the state machine validates it
 * against the replicated state: compare-and-set, never a blind overwrite. Replicas never read a
 * clock: the leader stamps its wall clock into every command (now_ms) and the state machine uses
 * that value for begin times, end times and deadline checks.
 *
 * Encoding, all integers little-endian, no padding:
 *
 *   header  u8  version (the type's format version, see below)
 *           u8  type (enum sinter_tc_cmd_type)
 *           u16 flags (0; reserved)
 *           u64 now_ms          leader clock when proposed
 *           str client_id       u16 length + bytes (<= 128, no NUL); empty for worker commands
 *           u64 seq             client request sequence; 0 exactly when client_id is empty
 *   body    by type, see the structs below; "xid" is u32 group + u64 index,
 *           "str" is u16 length + bytes, "blob" is u32 length + bytes.
 *
 * A decoder accepts exactly one spelling: trailing bytes, non-zero reserved fields, out-of-range
 * enums and lengths beyond the limits are refused. The type and the body (everything after the
 * header) are covered by body_crc so a client session can tell a retry from a sequence number
 * reused for a different request; now_ms is outside it because a retry through a new leader is
 * stamped again.
 *
 * Versions. The version byte is per type: every type of the first format (1..11) is written and
 * read as version 1, byte for byte as before; BRANCH_RESULTS (12) exists only as version 2. A
 * decoder accepts each type only under its own version (one spelling). Why a new type bumps the
 * version instead of reusing 1: a replica built before the type would decode "version 1, type 12"
 * as an unknown command and refuse it, i.e. apply nothing while upgraded replicas apply it, and
 * the replicas would diverge; "version 2" instead makes it stop the group (tc/fsm.h: a newer
 * format is never skipped) until it is upgraded. docs/operations.md "Upgrades" says how a
 * rolling upgrade avoids that stop (tc.batch_branch_results).
 */
#ifndef SINTER_TC_COMMAND_H
#define SINTER_TC_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The newest format this build reads and writes (BRANCH_RESULTS); see "Versions" above. */
#define SINTER_TC_CMD_VERSION 2
/* Outcomes in one BRANCH_RESULTS: as many as one Phase2ReportBatch carries
 * (SINTER_PROTO_MAX_REPORTS). */
#define SINTER_TC_MAX_RESULTS 64

/* Hard limits (bytes). Seata's defaults are similar (applicationData is a 64 KiB-ish VARCHAR,
 * transaction_name 128, resource_id 256). */
#define SINTER_TC_MAX_CLIENT_ID   128
#define SINTER_TC_MAX_APP_ID      128
#define SINTER_TC_MAX_TX_NAME     128
#define SINTER_TC_MAX_RESOURCE_ID 256
#define SINTER_TC_MAX_APP_DATA    65536
#define SINTER_TC_MAX_XA_INFO     512
/* A global's timeout: 1 ms .. 7 days. */
#define SINTER_TC_MAX_TIMEOUT_MS (7ull * 24 * 3600 * 1000)
/* GC removes at most this many rows per kind per command, so one entry never stalls apply. */
#define SINTER_TC_MAX_GC_ITEMS 10000
/* Upper bound of any encoded command: the header with the longest client id plus the largest body
 * (REGISTER_BRANCH: xid, type, resource id, app data, xa info). */
#define SINTER_TC_CMD_HEADER_MAX_BYTES (12 + 2 + SINTER_TC_MAX_CLIENT_ID + 8)
#define SINTER_TC_CMD_MAX_BYTES                                                                    \
    (SINTER_TC_CMD_HEADER_MAX_BYTES + 12 + 1 + 2 + SINTER_TC_MAX_RESOURCE_ID + 4 +                 \
     SINTER_TC_MAX_APP_DATA + 4 + SINTER_TC_MAX_XA_INFO)

enum sinter_tc_cmd_type {
    SINTER_TC_CMD_BEGIN = 1,           /* client (TM): start a global */
    SINTER_TC_CMD_REGISTER_BRANCH = 2, /* client (RM): add a branch, only while Begin */
    SINTER_TC_CMD_REPORT_BRANCH = 3,   /* client (RM): phase-one result */
    SINTER_TC_CMD_DECIDE = 4,          /* client (TM) commit/rollback, or the timeout worker */
    SINTER_TC_CMD_PHASE2_START = 5,    /* phase-2 worker: deadline base, when no BRANCH_RESULT
                                          recorded one before a delivery's lease expired */
    SINTER_TC_CMD_BRANCH_RESULT = 6,   /* phase-2 worker: a branch's phase-2 outcome */
    SINTER_TC_CMD_END = 7,             /* settle: derive the final status from the branches */
    SINTER_TC_CMD_RETRY_TIMEOUT = 8,   /* phase-2 worker: deadline passed -> *RetryTimeout */
    SINTER_TC_CMD_GC = 9,              /* retention: remove old finished globals and sessions */
    SINTER_TC_CMD_REDRIVE = 10,        /* admin: failed global back to retrying */
    SINTER_TC_CMD_RESOLVE = 11,        /* admin: operator declares a failed global done */
    SINTER_TC_CMD_BRANCH_RESULTS = 12, /* leader: 1..64 BRANCH_RESULTs in one entry (version 2) */
};
#define SINTER_TC_CMD_TYPE_MAX 12

/* A length-delimited byte string borrowed from the decoded buffer or the caller (not NUL
 * terminated). Strings (ids, names) never contain NUL; blobs may hold anything. */
struct sinter_tc_bytes {
    const uint8_t *p;
    uint32_t len;
};

struct sinter_tc_cmd_begin {
    struct sinter_tc_bytes app_id;   /* 1..128 */
    struct sinter_tc_bytes tx_name;  /* 0..128 */
    uint64_t timeout_ms;             /* 1..SINTER_TC_MAX_TIMEOUT_MS; encoded u64 */
    struct sinter_tc_bytes app_data; /* 0..64 KiB */
    /* begin time = header now_ms; xid = { group, index of this entry } */
};

struct sinter_tc_cmd_register {
    struct sinter_xid xid;
    uint8_t branch_type;                /* SINTER_BT_TCC or SINTER_BT_XA */
    struct sinter_tc_bytes resource_id; /* 1..256 */
    struct sinter_tc_bytes app_data;    /* 0..64 KiB */
    struct sinter_tc_bytes xa_info;     /* 0..512, e.g. "pg_xact:12345" */
    /* branch client id = header client_id (required); branch id = index of this entry */
};

#define SINTER_TC_REPORT_HAS_APP_DATA 0x01u
#define SINTER_TC_REPORT_HAS_XA_INFO  0x02u

struct sinter_tc_cmd_report {
    struct sinter_xid xid;
    uint64_t branch_id;
    uint8_t status; /* SINTER_BS_PHASE1_DONE or SINTER_BS_PHASE1_FAILED */
    uint8_t has;    /* SINTER_TC_REPORT_HAS_* : which optional fields replace stored ones */
    struct sinter_tc_bytes app_data;
    struct sinter_tc_bytes xa_info;
};

struct sinter_tc_cmd_decide {
    struct sinter_xid xid;
    uint8_t target; /* SINTER_GS_COMMITTING, _ROLLBACKING or _TIMEOUT_ROLLBACKING; the expected
                       prior state is always Begin. For a timeout the state machine re-checks
                       now_ms > begin + timeout with the header's now_ms. */
};

struct sinter_tc_cmd_xid_only {
    struct sinter_xid xid; /* PHASE2_START, END, REDRIVE */
};

struct sinter_tc_cmd_branch_result {
    struct sinter_xid xid;
    uint64_t branch_id;
    uint8_t outcome;           /* SINTER_BS_PHASE2_* (5..10), on the side of the decision */
    uint64_t first_attempt_ms; /* the worker's first phase-2 attempt for this global; 0 = now */
};

/* BRANCH_RESULTS: n outcomes, each exactly what one BRANCH_RESULT carries, applied in order as
 * n independent BRANCH_RESULTs (tc/fsm.c). Encoded as u16 n (1..SINTER_TC_MAX_RESULTS) then n
 * times { xid, u64 branch_id, u8 outcome, u64 first_attempt_ms }. Never carries a client session
 * (seq 0): a session keeps one answer per request, this command has n. */
struct sinter_tc_cmd_branch_results {
    uint32_t n;
    struct sinter_tc_cmd_branch_result r[SINTER_TC_MAX_RESULTS];
};

struct sinter_tc_cmd_retry_timeout {
    struct sinter_xid xid;
    uint64_t max_retry_ms; /* the configured phase-2 deadline; the state machine checks
                              now_ms > phase2_first_ms + max_retry_ms */
};

struct sinter_tc_cmd_gc {
    uint64_t global_cutoff_ms;  /* remove Committed/Rollbacked/TimeoutRollbacked with end < this */
    uint64_t session_cutoff_ms; /* forget client answers created before this */
    uint64_t client_cutoff_ms;  /* forget clients (and the floor that refuses retries of their
                                   forgotten answers) silent since before this and holding no
                                   answer; must be <= session_cutoff_ms (client rows outlive their
                                   answers); 0 = keep every client. See fsm.h. */
    uint32_t max_items;         /* 1..SINTER_TC_MAX_GC_ITEMS, per kind */
};

struct sinter_tc_cmd_resolve {
    struct sinter_xid xid;
    uint8_t target; /* Committed, Rollbacked or TimeoutRollbacked: the success end of the side
                       the global is on; only from a failed status */
};

struct sinter_tc_cmd {
    uint8_t version; /* output of decode: the type's version (sinter_tc_cmd_version_of); encode
                        ignores it and writes the type's version */
    uint8_t type;    /* enum sinter_tc_cmd_type */
    uint64_t now_ms;
    struct sinter_tc_bytes client_id;
    uint64_t seq;
    uint32_t body_crc; /* output of decode: CRC32C of type and body; encode ignores it */
    union {
        struct sinter_tc_cmd_begin begin;
        struct sinter_tc_cmd_register reg;
        struct sinter_tc_cmd_report report;
        struct sinter_tc_cmd_decide decide;
        struct sinter_tc_cmd_xid_only x;
        struct sinter_tc_cmd_branch_result result;
        struct sinter_tc_cmd_retry_timeout retry_timeout;
        struct sinter_tc_cmd_gc gc;
        struct sinter_tc_cmd_resolve resolve;
        struct sinter_tc_cmd_branch_results results;
    } u;
};

/* Bytes sinter_tc_cmd_encode() will write for c (no validation). */
size_t sinter_tc_cmd_encoded_size(const struct sinter_tc_cmd *c);

/* Validates c with the same rules as the decoder and writes its encoding into buf (cap bytes);
 * *len receives the length. Ownership: reads c (and the bytes it points to), writes buf.
 * Errors: SINTER_EBADVALUE (enum or field out of domain), SINTER_ETOOBIG (a length over its
 * limit or cap too small), SINTER_EINVAL (NULL arguments). */
int sinter_tc_cmd_encode(const struct sinter_tc_cmd *c, uint8_t *buf, size_t cap, size_t *len);

/* Decodes exactly len bytes. On success every sinter_tc_bytes in *c points into buf, so buf
 * must outlive *c. Ownership: borrows buf, writes *c. Errors: SINTER_ETRUNCATED (buf ends
 * early), SINTER_EBADVERSION (version 0 or newer than SINTER_TC_CMD_VERSION, or not the type's
 * version), SINTER_EUNKNOWNMSG (type), SINTER_ETOOBIG (length over its limit), SINTER_EBADLEN
 * (trailing bytes), SINTER_EBADVALUE (reserved bits, enums, NUL in a string, seq/client id
 * mismatch, zero timeout, BRANCH_RESULTS count not 1..64 or with a session). */
int sinter_tc_cmd_decode(struct sinter_tc_cmd *c, const uint8_t *buf, size_t len);

/* The format version a command type is written in: 1 for the first format's types (1..11), 2 for
 * BRANCH_RESULTS; 0 for an unknown type. */
uint8_t sinter_tc_cmd_version_of(uint32_t type);

/* Static name of a command type ("BEGIN"), "UNKNOWN" otherwise. */
const char *sinter_tc_cmd_name(uint32_t type);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TC_COMMAND_H */
