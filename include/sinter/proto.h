/*
 * sinter/proto.h — Sinter's wire protocol: message codes, one C struct per message, and a
 * bounds-checked codec.
 *
 * Frame (every integer little-endian, fixed width, no padding; SINTER_PROTO_HEADER_SIZE bytes of
 * header then body_len bytes of body):
 *
 *   offset size field
 *        0    4 magic       "SNTR" (bytes 'S','N','T','R'; SINTER_PROTO_MAGIC as a LE u32)
 *        4    1 version     SINTER_PROTO_VERSION (1)
 *        5    1 flags       reserved, must be 0 in version 1 (room for compression, tracing)
 *        6    2 code        enum sinter_msg_code
 *        8    8 request_id  chosen by the sender of a request, echoed in its reply
 *       16    4 body_len    bytes of body that follow the header
 *       20    4 crc         CRC32C over header bytes [0, 20) followed by the body
 *
 * Body: every request body starts with the request prefix (client_id u64, seq u64: the TC
 * deduplicates retries on that pair, DESIGN.md "Idempotent requests"); every reply body starts with
 * the reply prefix (result u32 = a sinter error code, message string). The message's own fields
 * follow in the order of its struct below. Field encodings:
 *
 *   u8/u16/u32/u64  little-endian
 *   bool            u8, 0 or 1
 *   string          u16 length + bytes (no NUL on the wire, NUL bytes inside are refused)
 *   bytes           u32 length + bytes (application data)
 *   xid             string holding the text form of sinter/xid.h ("<group>:<index>"), strictly
 *                   parsed; the empty string means "no xid" (index 0) where a field allows it
 *   array           u16 count + elements
 *
 * The encoding is canonical: one message has exactly one byte sequence (strict xid text, bools
 * 0/1, reserved bits 0), so decode followed by encode reproduces the input bytes exactly; the
 * fuzz target checks that.
 *
 * The decoder never allocates: decoded strings and application data point into the caller's
 * buffer (zero-copy), so a hostile length can never make us allocate. Every length is checked
 * against the bytes present and against struct sinter_proto_limits before it is used; the decoder
 * rejects, it never truncates. Arrays decode into fixed-capacity arrays inside the message struct
 * (hard caps SINTER_PROTO_MAX_*), whose configured limits are checked before any element is read.
 *
 * Numbering: codes below 200 are Seata's io.seata.core.protocol.MessageType values for the same
 * message, so an operator who knows Seata reads the same numbers in logs. Sinter-only messages
 * live at 200 and above.
 */
#ifndef SINTER_PROTO_H
#define SINTER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SINTER_PROTO_MAGIC       0x52544E53u /* "SNTR" read as a little-endian u32 */
#define SINTER_PROTO_VERSION     1u
#define SINTER_PROTO_HEADER_SIZE 24u

enum sinter_msg_code {
    /* Seata numbering (MessageType.java). Odd = request, even = its result. */
    SINTER_MSG_GLOBAL_BEGIN = 1,
    SINTER_MSG_GLOBAL_BEGIN_RESULT = 2,
    SINTER_MSG_BRANCH_COMMIT = 3, /* TC -> RM work: confirm / COMMIT PREPARED */
    SINTER_MSG_BRANCH_COMMIT_RESULT = 4,
    SINTER_MSG_BRANCH_ROLLBACK = 5, /* TC -> RM work: cancel / ROLLBACK PREPARED */
    SINTER_MSG_BRANCH_ROLLBACK_RESULT = 6,
    SINTER_MSG_GLOBAL_COMMIT = 7,
    SINTER_MSG_GLOBAL_COMMIT_RESULT = 8,
    SINTER_MSG_GLOBAL_ROLLBACK = 9,
    SINTER_MSG_GLOBAL_ROLLBACK_RESULT = 10,
    SINTER_MSG_BRANCH_REGISTER = 11,
    SINTER_MSG_BRANCH_REGISTER_RESULT = 12,
    SINTER_MSG_BRANCH_REPORT = 13, /* Seata's BranchStatusReport */
    SINTER_MSG_BRANCH_REPORT_RESULT = 14,
    SINTER_MSG_GLOBAL_STATUS = 15,
    SINTER_MSG_GLOBAL_STATUS_RESULT = 16,
    SINTER_MSG_GLOBAL_REPORT = 17,
    SINTER_MSG_GLOBAL_REPORT_RESULT = 18,
    /* 21/22 GlobalLockQuery and 59/60 Merge are AT-mode / batching only: not used. */
    SINTER_MSG_REGISTER_TM = 101, /* Seata's TYPE_REG_CLT */
    SINTER_MSG_REGISTER_TM_RESULT = 102,
    SINTER_MSG_REGISTER_RM = 103,
    SINTER_MSG_REGISTER_RM_RESULT = 104,
    /* Seata sends ping and pong both as 120 (HeartbeatMessage.isPing); 121 is Seata's
     * BatchResultMsg. We want one body layout per code, so the pong is Sinter's 207. */
    SINTER_MSG_HEARTBEAT = 120,

    /* Sinter-only. */
    SINTER_MSG_ERROR = 200,       /* generic error reply to any request (bad frame, not leader) */
    SINTER_MSG_PHASE2_POLL = 201, /* RM long-polls the leader for phase-2 work */
    SINTER_MSG_PHASE2_POLL_RESULT = 202,
    SINTER_MSG_PHASE2_REPORT = 203, /* RM reports the outcome of one phase-2 work item */
    SINTER_MSG_PHASE2_REPORT_RESULT = 204,
    SINTER_MSG_CLUSTER_META = 205, /* any node: members, leader and term per raft group */
    SINTER_MSG_CLUSTER_META_RESULT = 206,
    SINTER_MSG_HEARTBEAT_RESULT = 207,
    SINTER_MSG_PHASE2_REPORT_BATCH = 208, /* RM reports several outcomes in one message */
    SINTER_MSG_PHASE2_REPORT_BATCH_RESULT = 209,
};

/* Hard capacities of the fixed arrays inside the message structs. A sinter_proto_limits value
 * larger than its cap is clamped to the cap. */
#define SINTER_PROTO_MAX_RESOURCES 64u  /* resource ids per RegisterRM / Phase2Poll */
#define SINTER_PROTO_MAX_BATCH     128u /* work items per Phase2PollResult */
#define SINTER_PROTO_MAX_REPORTS   64u  /* outcomes per Phase2ReportBatch (fixed, no limit) */
#define SINTER_PROTO_MAX_MEMBERS   16u  /* cluster members (SINTER_RAFT_MAX_SERVERS) */
#define SINTER_PROTO_MAX_GROUPS    256u /* raft groups per ClusterMetaResult */

/* Limits the codec enforces on both sides: the encoder refuses to build what a peer with the
 * same limits would reject, the decoder refuses anything larger (SINTER_ETOOBIG). */
struct sinter_proto_limits {
    uint32_t max_frame;      /* header + body; default 1 MiB */
    uint32_t max_str;        /* ids, names, versions, addresses; default 256, at most 65535 */
    uint32_t max_message;    /* reply message text; default 1024, at most 65535 */
    uint32_t max_credential; /* RegisterTM/RM credential; default 256, at most 65535 */
    uint32_t max_app_data;   /* branch application data; default 64 KiB */
    uint32_t max_resources;  /* default 64, capped at SINTER_PROTO_MAX_RESOURCES */
    uint32_t max_batch;      /* default 64, capped at SINTER_PROTO_MAX_BATCH */
    uint32_t max_members;    /* default and cap SINTER_PROTO_MAX_MEMBERS */
    uint32_t max_groups;     /* default and cap SINTER_PROTO_MAX_GROUPS */
};

/* Fills *lim with the defaults above. Ownership: writes *lim only. */
void sinter_proto_limits_default(struct sinter_proto_limits *lim);

/* A string or byte run that is NOT NUL-terminated. After decoding, ptr points into the decoded
 * buffer (valid while that buffer is alive and unchanged); when encoding, the caller owns it. */
struct sinter_proto_str {
    const char *ptr; /* may be NULL when len is 0 */
    uint32_t len;
};
struct sinter_proto_bytes {
    const uint8_t *ptr; /* may be NULL when len is 0 */
    uint32_t len;
};

/* Builds a sinter_proto_str over a NUL-terminated C string (NULL gives the empty string).
 * Ownership: the result points at s, which must outlive its use. */
struct sinter_proto_str sinter_proto_str_c(const char *s);

/* True when s holds exactly the bytes of the C string c. */
bool sinter_proto_str_eq(struct sinter_proto_str s, const char *c);

/* Request prefix: the TC keeps the first answer per (client_id, seq) and returns it to retries,
 * across leader changes (the pair is replicated with the command). client_id is chosen at random
 * by each client process; seq grows by one per logical request and is reused by its retries. */
struct sinter_proto_rq {
    uint64_t client_id;
    uint64_t seq;
};

/* Reply prefix. result is SINTER_OK or a sinter error code (wire u32, at most INT32_MAX; codes a
 * newer peer adds are passed through, sinter_strerror() names them "unknown error"). */
struct sinter_proto_rs {
    int32_t result;
    struct sinter_proto_str message; /* human-readable detail, may be empty */
};

/* 1 GlobalBegin */
struct sinter_proto_global_begin {
    struct sinter_proto_str application_id;
    struct sinter_proto_str transaction_name;
    uint32_t timeout_ms; /* 0 = server default */
};
/* 2 GlobalBeginResult: xid.index == 0 (empty on the wire) when result != OK. */
struct sinter_proto_global_begin_result {
    struct sinter_xid xid;
};

/* Flags of GlobalCommit / GlobalRollback. */
#define SINTER_PROTO_END_WAIT_PHASE2                                                               \
    0x1u /* reply once every branch finished phase 2 (or wait_ms                                   \
            passed), not as soon as the decision is durable */
#define SINTER_PROTO_END_FLAGS_ALL 0x1u

/* 7 GlobalCommit, 9 GlobalRollback */
struct sinter_proto_global_end {
    struct sinter_xid xid; /* required */
    uint32_t flags;        /* SINTER_PROTO_END_*; unknown bits are refused */
    uint32_t wait_ms;      /* bound on the phase-2 wait; 0 = server default */
};
/* 15 GlobalStatus */
struct sinter_proto_global_status {
    struct sinter_xid xid; /* required */
};
/* 17 GlobalReport: the TM reports the status it reached (Seata's GlobalReportRequest). */
struct sinter_proto_global_report {
    struct sinter_xid xid;  /* required */
    uint32_t global_status; /* a valid enum sinter_global_status */
};
/* 8, 10, 16, 18: the global's status after the request (SINTER_GS_FINISHED for an unknown xid);
 * 0 (Unknown) allowed when result != OK. */
struct sinter_proto_global_status_result {
    uint32_t global_status;
};

/* 11 BranchRegister */
struct sinter_proto_branch_register {
    struct sinter_xid xid; /* required */
    uint32_t branch_type;  /* enum sinter_branch_type */
    struct sinter_proto_str resource_id;
    struct sinter_proto_bytes application_data; /* stored and handed back in phase 2 */
    uint64_t xa_local_xid; /* XA: pg_current_xact_id() of the branch's local transaction, 0 if not
                              known yet (then sent with BranchReport) */
};
/* 12 BranchRegisterResult: branch_id 0 when result != OK. The XA gid is built by the RM from xid
 * and branch_id. */
struct sinter_proto_branch_register_result {
    uint64_t branch_id;
};

/* 13 BranchReport (phase-1 outcome: PhaseOne_Done / PhaseOne_Failed, or XA local xid) */
struct sinter_proto_branch_report {
    struct sinter_xid xid; /* required */
    uint64_t branch_id;
    uint32_t branch_type;   /* enum sinter_branch_type */
    uint32_t branch_status; /* a valid enum sinter_branch_status */
    struct sinter_proto_str resource_id;
    struct sinter_proto_bytes application_data;
    uint64_t xa_local_xid;
};

/* 3 BranchCommit, 5 BranchRollback: one phase-2 work item, as a standalone TC -> RM request or
 * inside a Phase2PollResult. Carries the application data stored at register. */
struct sinter_proto_branch_work {
    struct sinter_xid xid; /* required */
    uint64_t branch_id;
    uint32_t branch_type; /* enum sinter_branch_type */
    struct sinter_proto_str resource_id;
    struct sinter_proto_bytes application_data;
    uint64_t xa_local_xid;
    uint32_t attempt; /* 1 for the first delivery, +1 per retry (for logs and backoff) */
};
/* 4 BranchCommitResult, 6 BranchRollbackResult */
struct sinter_proto_branch_outcome {
    struct sinter_xid xid; /* required */
    uint64_t branch_id;
    uint32_t branch_status; /* a valid enum sinter_branch_status, or 0 when result != OK */
};

/* 101 RegisterTM, 103 RegisterRM */
struct sinter_proto_register {
    struct sinter_proto_str client_version;
    struct sinter_proto_str application_id;
    struct sinter_proto_str credential; /* shared secret (TLS protects it on the wire) */
    uint32_t n_resources;               /* RegisterRM only; 0 for RegisterTM */
    struct sinter_proto_str resource_ids[SINTER_PROTO_MAX_RESOURCES];
};
/* 102, 104 */
struct sinter_proto_register_result {
    struct sinter_proto_str server_version;
};

/* 200 Error: the generic error reply. result says why (SINTER_ENOTLEADER, SINTER_EBADMAGIC, ...);
 * for SINTER_ENOTLEADER the leader fields name where to retry (leader_id 0 = unknown). */
struct sinter_proto_error {
    uint64_t leader_id;
    struct sinter_proto_str leader_addr; /* nng URL, e.g. "tcp://10.0.0.2:8091" */
    uint32_t group;                      /* raft group the answer is about */
    uint64_t term;
};

/* 201 Phase2Poll: wait up to wait_ms for phase-2 work on any of the resources, return at most
 * max_items (the server clamps it to its own max_batch). */
struct sinter_proto_phase2_poll {
    uint32_t n_resources;
    struct sinter_proto_str resource_ids[SINTER_PROTO_MAX_RESOURCES];
    uint32_t max_items; /* >= 1 */
    uint32_t wait_ms;
};
struct sinter_proto_phase2_item {
    uint16_t code; /* SINTER_MSG_BRANCH_COMMIT or SINTER_MSG_BRANCH_ROLLBACK */
    struct sinter_proto_branch_work work;
};
/* 202 Phase2PollResult: an empty batch when wait_ms passed without work. */
struct sinter_proto_phase2_poll_result {
    uint32_t n_items;
    struct sinter_proto_phase2_item items[SINTER_PROTO_MAX_BATCH];
};
/* 203 Phase2Report: the RM's answer to one work item. */
struct sinter_proto_phase2_report {
    uint16_t phase; /* SINTER_MSG_BRANCH_COMMIT or SINTER_MSG_BRANCH_ROLLBACK */
    struct sinter_proto_branch_outcome outcome;
    /* The answered item's work.attempt (1, 2, ...): the leader reschedules a retryable outcome
     * only if it answers the delivery in flight, so a late report of an expired lease cannot
     * start a second delivery. 0 = not tied to a delivery (the outcome is recorded only). */
    uint32_t attempt;
};
/* 208 Phase2ReportBatch: several Phase2Reports in one message (the RM's reporter sends the
 * outcomes queued for one node together), each exactly as a 203 would carry it. 1..64 of them. */
struct sinter_proto_phase2_report_batch {
    uint32_t n_reports;
    struct sinter_proto_phase2_report reports[SINTER_PROTO_MAX_REPORTS];
};
/* 209 Phase2ReportBatchResult: results[i] is what a 203's Phase2ReportResult.result would be
 * for reports[i] (SINTER_OK, SINTER_ENOTLEADER, SINTER_ETIMEOUT, ...); n_results equals the
 * request's n_reports when rs.result is SINTER_OK, 0 otherwise. */
struct sinter_proto_phase2_report_batch_result {
    uint32_t n_results;
    int32_t results[SINTER_PROTO_MAX_REPORTS]; /* sinter error codes, >= 0 */
};

/* 206 ClusterMetaResult */
struct sinter_proto_member {
    uint64_t id;
    struct sinter_proto_str addr; /* client-facing nng URL */
    bool voter;                   /* false: learner */
};
struct sinter_proto_group_info {
    uint32_t group;
    uint64_t leader_id; /* 0 = unknown */
    uint64_t term;
};
struct sinter_proto_cluster_meta_result {
    uint64_t node_id; /* the answering node */
    uint32_t n_members;
    struct sinter_proto_member members[SINTER_PROTO_MAX_MEMBERS];
    uint32_t n_groups;
    struct sinter_proto_group_info groups[SINTER_PROTO_MAX_GROUPS];
};

/* One message. Heartbeat (120), ClusterMeta (205) and the results 14, 204, 207 have no fields
 * beyond the prefix. The struct is about 12 KiB: fine on a thread's stack, or allocate it. */
struct sinter_proto_msg {
    uint16_t code; /* enum sinter_msg_code: selects the union member and the prefix */
    uint64_t request_id;
    struct sinter_proto_rq rq; /* requests only */
    struct sinter_proto_rs rs; /* replies only */
    union {
        struct sinter_proto_global_begin global_begin;
        struct sinter_proto_global_begin_result global_begin_result;
        struct sinter_proto_global_end global_end; /* commit and rollback */
        struct sinter_proto_global_status global_status;
        struct sinter_proto_global_report global_report;
        struct sinter_proto_global_status_result global_status_result; /* 8, 10, 16, 18 */
        struct sinter_proto_branch_register branch_register;
        struct sinter_proto_branch_register_result branch_register_result;
        struct sinter_proto_branch_report branch_report;
        struct sinter_proto_branch_work branch_work;       /* 3, 5 */
        struct sinter_proto_branch_outcome branch_outcome; /* 4, 6 */
        struct sinter_proto_register reg;                  /* 101, 103 */
        struct sinter_proto_register_result reg_result;    /* 102, 104 */
        struct sinter_proto_error error;
        struct sinter_proto_phase2_poll phase2_poll;
        struct sinter_proto_phase2_poll_result phase2_poll_result;
        struct sinter_proto_phase2_report phase2_report;
        struct sinter_proto_phase2_report_batch phase2_report_batch;
        struct sinter_proto_phase2_report_batch_result phase2_report_batch_result;
        struct sinter_proto_cluster_meta_result cluster_meta_result;
    } u;
};

/* The decoded frame header. */
struct sinter_proto_header {
    uint32_t magic;
    uint8_t version;
    uint8_t flags;
    uint16_t code;
    uint64_t request_id;
    uint32_t body_len;
    uint32_t crc;
};

/* Code classification. _is_known: a code this build can decode. _is_request: a known request.
 * _reply_code: the typed result code for a request code (0 when code is not a request).
 * _name: "GlobalBegin", ...; "Unknown" for other values (static string). */
bool sinter_proto_code_is_known(uint32_t code);
bool sinter_proto_code_is_request(uint32_t code);
uint16_t sinter_proto_reply_code(uint32_t code);
const char *sinter_proto_code_name(uint32_t code);

/* The raft group a coordinator with n_groups groups puts a GlobalBegin from (client_id, seq)
 * in: a pure function of the request, never of who leads what (a retry with the same seq must
 * reach the group that saw the first attempt, whose client session answers it). The coordinator
 * decides with it; a client uses it only to send the begin to that group's presumed leader at
 * once instead of following a redirect. n_groups 0 is treated as 1. Pure, any thread. */
uint32_t sinter_proto_begin_group(uint64_t client_id, uint64_t seq, uint32_t n_groups);

/* Bytes sinter_proto_encode() would write for m, or 0 when m cannot be encoded (unknown code,
 * a field over a limit or out of its domain: sinter_proto_encode() says which).
 * lim may be NULL for the defaults. Ownership: reads m only. */
size_t sinter_proto_encoded_size(const struct sinter_proto_msg *m,
                                 const struct sinter_proto_limits *lim);

/* Encodes m as one frame into buf (cap bytes) and sets *out_len. The same checks as the decoder
 * apply, so whatever encodes also decodes. lim may be NULL for the defaults.
 * Ownership: reads m (and the strings/bytes it points to), writes buf[0, *out_len) only.
 * Errors: SINTER_EUNKNOWNMSG (m->code), SINTER_ETOOBIG (a length over its limit, or the frame over
 * max_frame), SINTER_EBADVALUE (enum/flag/xid out of domain, NUL inside a string),
 * SINTER_EINVAL (NULL argument, non-empty string with NULL ptr, cap too small: size buf with
 * sinter_proto_encoded_size()). buf contents are unspecified on error. */
int sinter_proto_encode(const struct sinter_proto_msg *m, const struct sinter_proto_limits *lim,
                        uint8_t *buf, size_t cap, size_t *out_len);

/* Checks and decodes only the header of the frame in buf[0, len): magic, version, flags, body
 * length against max_frame and against len. Does not verify the CRC or the code (so a server can
 * still echo request_id in an error reply). lim may be NULL.
 * Ownership: reads buf, writes *h only.
 * Errors: SINTER_ETRUNCATED (len shorter than the header or than header + body_len),
 * SINTER_EBADMAGIC, SINTER_EBADVERSION, SINTER_EBADVALUE (reserved flags set), SINTER_ETOOBIG
 * (frame over max_frame), SINTER_EBADLEN (bytes after the body). *h is filled as far as read. */
int sinter_proto_decode_header(const uint8_t *buf, size_t len,
                               const struct sinter_proto_limits *lim,
                               struct sinter_proto_header *h);

/* Decodes exactly one frame occupying all of buf[0, len) into *out. Never allocates.
 * Ownership: reads buf; the strings and byte runs in *out point INTO buf (zero-copy) and are valid
 * only while buf is alive and unchanged. lim may be NULL for the defaults.
 * Errors, in the order they are checked: the header errors of sinter_proto_decode_header(), then
 * SINTER_ECRC, SINTER_EUNKNOWNMSG, then in the body SINTER_ETRUNCATED (body ends inside a
 * fixed-size field), SINTER_EBADLEN (a length or count larger than the bytes left, or bytes left
 * over after the last field), SINTER_ETOOBIG (a length or count over its limit),
 * SINTER_EBADVALUE (enum, flag, bool or xid text out of domain, NUL inside a string),
 * SINTER_EINVAL (NULL argument). *out is unspecified on error. */
int sinter_proto_decode(const uint8_t *buf, size_t len, const struct sinter_proto_limits *lim,
                        struct sinter_proto_msg *out);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_PROTO_H */
