/* Unit tests for the wire codec (sinter/proto.h): round trips of every message, every truncation
 * point, corrupted lengths, unknown codes, wrong version, oversized frames, enum domains. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto_samples.h"
#include "sinter/crc32c.h"
#include "sinter/error.h"
#include "sinter/proto.h"

#define FRAME_MAX ((1u << 20) + 64)

static uint8_t *encode_sample(size_t i, size_t *len)
{
    struct sinter_proto_msg *m = malloc(sizeof *m);
    assert_non_null(m);
    proto_sample(i, m);
    size_t want = sinter_proto_encoded_size(m, NULL);
    assert_true(want >= SINTER_PROTO_HEADER_SIZE);
    uint8_t *buf = malloc(want);
    assert_non_null(buf);
    assert_int_equal(sinter_proto_encode(m, NULL, buf, want, len), SINTER_OK);
    assert_int_equal(*len, want);
    free(m);
    return buf;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Makes the header agree with a frame of len bytes (body_len and CRC), so the decoder gets past
 * the frame checks and reaches the body. */
static void reseal(uint8_t *f, size_t len)
{
    put32(f + 16, (uint32_t)(len - SINTER_PROTO_HEADER_SIZE));
    uint32_t crc = sinter_crc32c(0, f, 20);
    crc = sinter_crc32c(crc, f + SINTER_PROTO_HEADER_SIZE, len - SINTER_PROTO_HEADER_SIZE);
    put32(f + 20, crc);
}

static int decode(const uint8_t *f, size_t len)
{
    static struct sinter_proto_msg m;
    return sinter_proto_decode(f, len, NULL, &m);
}

/* Every sample encodes, decodes, and re-encodes to the identical bytes (so every field survived
 * the trip), and the decoded prefix and header match. */
static void roundtrip_every_message(void **state)
{
    (void)state;
    struct sinter_proto_msg *in = malloc(sizeof *in);
    struct sinter_proto_msg *out = malloc(sizeof *out);
    uint8_t *again = malloc(FRAME_MAX);
    for (size_t i = 0; i < proto_sample_count(); i++) {
        size_t len;
        size_t len2;
        uint8_t *f = encode_sample(i, &len);
        proto_sample(i, in);
        assert_int_equal(sinter_proto_decode(f, len, NULL, out), SINTER_OK);
        assert_int_equal(out->code, in->code);
        assert_true(out->request_id == in->request_id);
        if (sinter_proto_code_is_request(in->code)) {
            assert_true(out->rq.client_id == in->rq.client_id);
            assert_true(out->rq.seq == in->rq.seq);
        } else {
            assert_int_equal(out->rs.result, in->rs.result);
            assert_int_equal(out->rs.message.len, in->rs.message.len);
        }
        assert_int_equal(sinter_proto_encode(out, NULL, again, FRAME_MAX, &len2), SINTER_OK);
        assert_int_equal(len2, len);
        assert_memory_equal(again, f, len);
        free(f);
    }
    free(in);
    free(out);
    free(again);
}

/* Spot checks of decoded field values, including zero-copy pointers into the buffer. */
static void decoded_fields_are_exact(void **state)
{
    (void)state;
    struct sinter_proto_msg *m = malloc(sizeof *m);
    size_t len;
    uint8_t *f = encode_sample(6, &len); /* BranchRollback with 64 KiB of data */
    assert_int_equal(sinter_proto_decode(f, len, NULL, m), SINTER_OK);
    assert_int_equal(m->code, SINTER_MSG_BRANCH_ROLLBACK);
    assert_int_equal(m->u.branch_work.application_data.len, 64u << 10);
    assert_true(m->u.branch_work.application_data.ptr > f &&
                m->u.branch_work.application_data.ptr < f + len);
    for (size_t k = 0; k < (64u << 10); k += 4099) {
        assert_int_equal(m->u.branch_work.application_data.ptr[k], (uint8_t)(k * 31u + 7u));
    }
    assert_true(sinter_proto_str_eq(m->u.branch_work.resource_id, "tcc-stock"));
    assert_int_equal(m->u.branch_work.branch_type, SINTER_BT_TCC);
    assert_int_equal(m->u.branch_work.xid.group, 2);
    assert_true(m->u.branch_work.xid.index == 1002);
    free(f);

    f = encode_sample(2, &len); /* the largest xid */
    assert_int_equal(sinter_proto_decode(f, len, NULL, m), SINTER_OK);
    assert_int_equal(m->u.global_begin_result.xid.group, UINT32_MAX);
    assert_true(m->u.global_begin_result.xid.index == UINT64_MAX);
    free(f);

    f = encode_sample(29, &len); /* not leader, try X */
    assert_int_equal(sinter_proto_decode(f, len, NULL, m), SINTER_OK);
    assert_int_equal(m->rs.result, SINTER_ENOTLEADER);
    assert_true(sinter_proto_str_eq(m->u.error.leader_addr, "tcp://10.0.0.2:8091"));
    assert_true(m->u.error.leader_id == 2 && m->u.error.term == 17);
    free(f);

    f = encode_sample(38, &len);
    assert_int_equal(sinter_proto_decode(f, len, NULL, m), SINTER_OK);
    assert_int_equal(m->u.cluster_meta_result.n_members, 3);
    assert_false(m->u.cluster_meta_result.members[2].voter);
    assert_true(m->u.cluster_meta_result.members[1].voter);
    assert_true(m->u.cluster_meta_result.groups[3].term == 13);
    free(f);
    free(m);
}

/* The sample set covers every known code, and the known codes are exactly the table's. */
static void samples_cover_every_code(void **state)
{
    (void)state;
    struct sinter_proto_msg *m = malloc(sizeof *m);
    unsigned known = 0;
    for (uint32_t code = 0; code <= 0xffff; code++) {
        if (!sinter_proto_code_is_known(code)) {
            assert_string_equal(sinter_proto_code_name(code), "Unknown");
            continue;
        }
        known++;
        bool found = false;
        for (size_t i = 0; i < proto_sample_count() && !found; i++) {
            proto_sample(i, m);
            found = m->code == code;
        }
        assert_true(found);
        if (sinter_proto_code_is_request(code)) {
            uint16_t r = sinter_proto_reply_code(code);
            assert_true(sinter_proto_code_is_known(r));
            assert_false(sinter_proto_code_is_request(r));
        }
    }
    assert_int_equal(known, 33);
    free(m);
}

/* Seata's MessageType numbers where a Seata message exists. */
static void codes_match_seata(void **state)
{
    (void)state;
    assert_int_equal(SINTER_MSG_GLOBAL_BEGIN, 1);
    assert_int_equal(SINTER_MSG_GLOBAL_BEGIN_RESULT, 2);
    assert_int_equal(SINTER_MSG_BRANCH_COMMIT, 3);
    assert_int_equal(SINTER_MSG_BRANCH_ROLLBACK_RESULT, 6);
    assert_int_equal(SINTER_MSG_GLOBAL_COMMIT, 7);
    assert_int_equal(SINTER_MSG_GLOBAL_ROLLBACK, 9);
    assert_int_equal(SINTER_MSG_BRANCH_REGISTER, 11);
    assert_int_equal(SINTER_MSG_BRANCH_REPORT, 13);
    assert_int_equal(SINTER_MSG_GLOBAL_STATUS, 15);
    assert_int_equal(SINTER_MSG_GLOBAL_REPORT_RESULT, 18);
    assert_int_equal(SINTER_MSG_REGISTER_TM, 101);
    assert_int_equal(SINTER_MSG_REGISTER_RM_RESULT, 104);
    assert_int_equal(SINTER_MSG_HEARTBEAT, 120);
    assert_int_equal(sinter_proto_reply_code(SINTER_MSG_GLOBAL_COMMIT),
                     SINTER_MSG_GLOBAL_COMMIT_RESULT);
    assert_int_equal(sinter_proto_reply_code(SINTER_MSG_HEARTBEAT), SINTER_MSG_HEARTBEAT_RESULT);
    assert_int_equal(sinter_proto_reply_code(SINTER_MSG_ERROR), 0);
    assert_string_equal(sinter_proto_code_name(SINTER_MSG_PHASE2_POLL), "Phase2Poll");
}

/* Cutting a valid frame anywhere is a clean SINTER_ETRUNCATED; cutting the body and making the
 * header agree (so the body parser meets the short body) fails too, never succeeds. */
static void every_truncation_is_rejected(void **state)
{
    (void)state;
    uint8_t *work = malloc(FRAME_MAX);
    for (size_t i = 0; i < proto_sample_count(); i++) {
        size_t len;
        uint8_t *f = encode_sample(i, &len);
        /* Step through big frames coarsely in the middle, exactly near both ends. */
        for (size_t cut = 0; cut < len; cut += (cut > 4096 && cut < len - 4096) ? 97 : 1) {
            /* A fresh heap copy of exactly cut bytes, so ASan catches any over-read. */
            uint8_t *p = malloc(cut == 0 ? 1 : cut);
            memcpy(p, f, cut);
            assert_int_equal(decode(p, cut), SINTER_ETRUNCATED);
            if (cut >= SINTER_PROTO_HEADER_SIZE) {
                reseal(p, cut);
                int rc = decode(p, cut);
                assert_true(rc == SINTER_ETRUNCATED || rc == SINTER_EBADLEN);
            }
            free(p);
        }
        free(f);
    }
    free(work);
}

static uint8_t *frame_of(struct sinter_proto_msg *m, size_t *len)
{
    uint8_t *buf = malloc(FRAME_MAX);
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, len), SINTER_OK);
    return buf;
}

/* Header checks, each with its own error. */
static void header_errors_are_distinct(void **state)
{
    (void)state;
    struct sinter_proto_msg m;
    size_t len;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_HEARTBEAT;
    m.request_id = 77;
    uint8_t *f = frame_of(&m, &len);
    assert_int_equal(len, SINTER_PROTO_HEADER_SIZE + 16);
    assert_int_equal(decode(f, len), SINTER_OK);
    int seen[6];

    f[0] ^= 0x20; /* magic */
    seen[0] = decode(f, len);
    assert_int_equal(seen[0], SINTER_EBADMAGIC);
    assert_int_equal(decode(f, 4), SINTER_EBADMAGIC); /* even from a short read */
    f[0] ^= 0x20;

    f[4] = 2; /* version */
    seen[1] = decode(f, len);
    assert_int_equal(seen[1], SINTER_EBADVERSION);
    f[4] = 1;

    put16(f + 6, 999); /* unknown code, CRC made valid */
    reseal(f, len);
    seen[2] = decode(f, len);
    assert_int_equal(seen[2], SINTER_EUNKNOWNMSG);
    put16(f + 6, 0);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EUNKNOWNMSG);
    put16(f + 6, SINTER_MSG_HEARTBEAT);
    reseal(f, len);

    put32(f + 16, (1u << 20) - SINTER_PROTO_HEADER_SIZE + 1); /* oversized frame */
    seen[3] = decode(f, len);
    assert_int_equal(seen[3], SINTER_ETOOBIG);
    put32(f + 16, UINT32_MAX);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    reseal(f, len);

    f[len - 1] ^= 1; /* body bit flip */
    seen[4] = decode(f, len);
    assert_int_equal(seen[4], SINTER_ECRC);
    f[len - 1] ^= 1;

    f[5] = 0x80; /* reserved flags */
    reseal(f, len);
    seen[5] = decode(f, len);
    assert_int_equal(seen[5], SINTER_EBADVALUE);
    f[5] = 0;
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_OK);

    for (int a = 0; a < 6; a++) {
        for (int b = 0; b < a; b++) {
            assert_int_not_equal(seen[a], seen[b]);
        }
    }

    /* Bytes after the frame: the buffer must hold exactly one frame. */
    f[len] = 0;
    assert_int_equal(decode(f, len + 1), SINTER_EBADLEN);

    /* The header alone is readable even when the body is not, for error replies. */
    struct sinter_proto_header h;
    assert_int_equal(sinter_proto_decode_header(f, len, NULL, &h), SINTER_OK);
    assert_true(h.request_id == 77);
    assert_int_equal(h.code, SINTER_MSG_HEARTBEAT);
    free(f);
}

/* A GlobalBegin whose first string length is corrupted: over the body, over the limit, and
 * leftover body bytes. Body layout: client_id 8, seq 8, app_id u16 len + bytes, ... */
static void corrupted_lengths_are_rejected(void **state)
{
    (void)state;
    struct sinter_proto_msg m;
    size_t len;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_BEGIN;
    m.u.global_begin.application_id = sinter_proto_str_c("app");
    m.u.global_begin.transaction_name = sinter_proto_str_c("tx");
    uint8_t *f = frame_of(&m, &len);
    uint8_t *lenp = f + SINTER_PROTO_HEADER_SIZE + 16;
    assert_int_equal(lenp[0], 3);

    put16(lenp, 200); /* under max_str, over the bytes present */
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADLEN);
    put16(lenp, 257); /* over max_str (256) */
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    put16(lenp, 0xffff);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    put16(lenp, 2); /* shorter: the rest misparses and the body does not end where it should */
    reseal(f, len);
    assert_int_not_equal(decode(f, len), SINTER_OK);
    put16(lenp, 3);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_OK);

    f[len] = 0xaa; /* one extra body byte, announced by body_len */
    reseal(f, len + 1);
    assert_int_equal(decode(f, len + 1), SINTER_EBADLEN);
    free(f);

    /* Application data: u32 length after rq 16, xid "1:2" (2+3), type 4, resource "r" (2+1). */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_BRANCH_REGISTER;
    m.u.branch_register.xid = (struct sinter_xid){1, 2};
    m.u.branch_register.branch_type = SINTER_BT_TCC;
    m.u.branch_register.resource_id = sinter_proto_str_c("r");
    m.u.branch_register.application_data.ptr = (const uint8_t *)"abcd";
    m.u.branch_register.application_data.len = 4;
    f = frame_of(&m, &len);
    uint8_t *dl = f + SINTER_PROTO_HEADER_SIZE + 16 + 5 + 4 + 3;
    assert_int_equal(dl[0], 4);
    put32(dl, 1000);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADLEN);
    put32(dl, (64u << 10) + 1);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    put32(dl, UINT32_MAX);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    free(f);

    /* Array counts: RegisterRM resources (after rq 16 and three empty strings 6). */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_REGISTER_RM;
    m.u.reg.n_resources = 1;
    m.u.reg.resource_ids[0] = sinter_proto_str_c("x");
    f = frame_of(&m, &len);
    uint8_t *cnt = f + SINTER_PROTO_HEADER_SIZE + 16 + 6;
    assert_int_equal(cnt[0], 1);
    put16(cnt, 65); /* over max_resources (64) */
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    put16(cnt, 0xffff);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETOOBIG);
    put16(cnt, 2); /* more elements announced than present */
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_ETRUNCATED);
    free(f);
}

/* Values outside their domain: branch type, statuses, flags, bools, xid text, NUL in strings,
 * negative results, a required xid missing. */
static void out_of_domain_values_are_rejected(void **state)
{
    (void)state;
    struct sinter_proto_msg m;
    size_t len;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_BRANCH_REGISTER;
    m.u.branch_register.xid = (struct sinter_xid){1, 2};
    m.u.branch_register.branch_type = SINTER_BT_XA;
    uint8_t *f = frame_of(&m, &len);
    uint8_t *xid = f + SINTER_PROTO_HEADER_SIZE + 16 + 2;
    uint8_t *bt = f + SINTER_PROTO_HEADER_SIZE + 16 + 5;
    assert_memory_equal(xid, "1:2", 3);
    put32(bt, 2); /* AT mode: not supported */
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADVALUE);
    put32(bt, SINTER_BT_XA);
    memcpy(xid, "1:0", 3); /* index 0 */
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADVALUE);
    memcpy(xid, "01:", 3);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADVALUE);
    memcpy(xid, "1:2", 3);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_OK);
    free(f);

    /* Encoder refuses the same things. */
    uint8_t buf[512];
    m.u.branch_register.branch_type = 2;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    assert_int_equal(sinter_proto_encoded_size(&m, NULL), 0);
    m.u.branch_register.branch_type = SINTER_BT_TCC;
    m.u.branch_register.xid.index = 0; /* required xid missing */
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    m.u.branch_register.xid.index = 9;
    m.u.branch_register.resource_id.ptr = "a\0b";
    m.u.branch_register.resource_id.len = 3;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    m.u.branch_register.resource_id.ptr = NULL; /* non-empty with no bytes */
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EINVAL);

    /* NUL inside a decoded string. */
    m.u.branch_register.resource_id = sinter_proto_str_c("abc");
    f = frame_of(&m, &len);
    uint8_t *res = f + SINTER_PROTO_HEADER_SIZE + 16 + 5 + 4 + 2;
    assert_memory_equal(res, "abc", 3);
    res[1] = 0;
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADVALUE);
    free(f);

    /* A bool that is neither 0 nor 1 (ClusterMetaResult member voter). */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_CLUSTER_META_RESULT;
    m.u.cluster_meta_result.n_members = 1;
    m.u.cluster_meta_result.members[0].addr = sinter_proto_str_c("a");
    m.u.cluster_meta_result.members[0].voter = true;
    f = frame_of(&m, &len);
    /* rs: result 4 + message 2; node 8; count 2; id 8; addr 2+1; voter */
    uint8_t *voter = f + SINTER_PROTO_HEADER_SIZE + 6 + 8 + 2 + 8 + 3;
    assert_int_equal(*voter, 1);
    *voter = 2;
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADVALUE);
    free(f);

    /* Reply result must be a non-negative int32. */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_HEARTBEAT_RESULT;
    m.rs.result = -1;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    m.rs.result = SINTER_ENOTLEADER;
    f = frame_of(&m, &len);
    put32(f + SINTER_PROTO_HEADER_SIZE, 0x80000000u);
    reseal(f, len);
    assert_int_equal(decode(f, len), SINTER_EBADVALUE);
    free(f);

    /* Unknown GlobalCommit flags, a GlobalReport status that is not a status, poll max 0,
     * a work item code that is neither commit nor rollback, RegisterTM with resources. */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_COMMIT;
    m.u.global_end.xid = (struct sinter_xid){0, 1};
    m.u.global_end.flags = 2;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_REPORT;
    m.u.global_report.xid = (struct sinter_xid){0, 1};
    m.u.global_report.global_status = 8;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_PHASE2_POLL;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_PHASE2_REPORT;
    m.u.phase2_report.phase = SINTER_MSG_GLOBAL_COMMIT;
    m.u.phase2_report.outcome.xid = (struct sinter_xid){0, 1};
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    /* Phase2ReportBatch: empty, over the cap, a bad phase inside, a negative result code. */
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_PHASE2_REPORT_BATCH;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    m.u.phase2_report_batch.n_reports = SINTER_PROTO_MAX_REPORTS + 1;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_ETOOBIG);
    m.u.phase2_report_batch.n_reports = 2;
    for (int k = 0; k < 2; k++) {
        m.u.phase2_report_batch.reports[k].phase = SINTER_MSG_BRANCH_COMMIT;
        m.u.phase2_report_batch.reports[k].outcome.xid = (struct sinter_xid){0, 1};
        m.u.phase2_report_batch.reports[k].outcome.branch_id = 1;
        m.u.phase2_report_batch.reports[k].outcome.branch_status = SINTER_BS_PHASE2_COMMITTED;
    }
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_OK);
    m.u.phase2_report_batch.reports[1].phase = SINTER_MSG_GLOBAL_COMMIT;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_PHASE2_REPORT_BATCH_RESULT;
    m.u.phase2_report_batch_result.n_results = 1;
    m.u.phase2_report_batch_result.results[0] = -1;
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_REGISTER_TM;
    m.u.reg.n_resources = 1;
    m.u.reg.resource_ids[0] = sinter_proto_str_c("x");
    assert_int_equal(sinter_proto_encode(&m, NULL, buf, sizeof buf, &len), SINTER_EBADVALUE);
}

/* The encoder enforces the limits, the frame size and the caller's buffer size. */
static void encoder_enforces_limits(void **state)
{
    (void)state;
    struct sinter_proto_msg *m = malloc(sizeof *m);
    uint8_t *buf = malloc(FRAME_MAX);
    size_t len;
    proto_sample(1, m); /* application id of exactly max_str */
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_OK);
    assert_int_equal(sinter_proto_encoded_size(m, NULL), len);
    assert_int_equal(sinter_proto_encode(m, NULL, buf, len - 1, &len), SINTER_EINVAL);
    m->u.global_begin.application_id.len++;
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_ETOOBIG);

    proto_sample(6, m); /* 64 KiB application data */
    m->u.branch_work.application_data.len++;
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_ETOOBIG);

    proto_sample(25, m); /* 64 resources */
    m->u.reg.n_resources = 65;
    m->u.reg.resource_ids[63] = sinter_proto_str_c("x");
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_ETOOBIG);

    /* A batch of 32 items of 64 KiB each is 2 MiB: over max_frame. */
    static uint8_t data[64u << 10];
    memset(m, 0, sizeof *m);
    m->code = SINTER_MSG_PHASE2_POLL_RESULT;
    m->u.phase2_poll_result.n_items = 32;
    for (uint32_t k = 0; k < 32; k++) {
        struct sinter_proto_phase2_item *it = &m->u.phase2_poll_result.items[k];
        it->code = SINTER_MSG_BRANCH_COMMIT;
        it->work.xid = (struct sinter_xid){0, k + 1};
        it->work.branch_type = SINTER_BT_TCC;
        it->work.application_data.ptr = data;
        it->work.application_data.len = sizeof data;
    }
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_ETOOBIG);
    m->u.phase2_poll_result.n_items = 15; /* just under 1 MiB */
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_OK);
    assert_true(len <= (1u << 20));

    m->code = 4242;
    assert_int_equal(sinter_proto_encode(m, NULL, buf, FRAME_MAX, &len), SINTER_EUNKNOWNMSG);
    assert_int_equal(sinter_proto_encode(NULL, NULL, buf, FRAME_MAX, &len), SINTER_EINVAL);
    free(m);
    free(buf);
}

/* The decoder enforces the caller's (smaller) limits; limits above the caps are clamped. */
static void decoder_enforces_caller_limits(void **state)
{
    (void)state;
    struct sinter_proto_msg *m = malloc(sizeof *m);
    struct sinter_proto_limits lim;
    size_t len;
    uint8_t *f = encode_sample(4, &len); /* BranchCommit with 8 bytes of data */
    sinter_proto_limits_default(&lim);
    lim.max_app_data = 7;
    assert_int_equal(sinter_proto_decode(f, len, &lim, m), SINTER_ETOOBIG);
    lim.max_app_data = 8;
    assert_int_equal(sinter_proto_decode(f, len, &lim, m), SINTER_OK);
    lim.max_frame = (uint32_t)len - 1;
    assert_int_equal(sinter_proto_decode(f, len, &lim, m), SINTER_ETOOBIG);
    free(f);

    f = encode_sample(33, &len); /* 64 items */
    sinter_proto_limits_default(&lim);
    lim.max_batch = 63;
    assert_int_equal(sinter_proto_decode(f, len, &lim, m), SINTER_ETOOBIG);
    lim.max_batch = 100000; /* clamped to SINTER_PROTO_MAX_BATCH */
    assert_int_equal(sinter_proto_decode(f, len, &lim, m), SINTER_OK);
    free(f);

    /* A frame encoded with larger limits than the default is refused by a default decoder. */
    memset(m, 0, sizeof *m);
    m->code = SINTER_MSG_PHASE2_POLL_RESULT;
    m->u.phase2_poll_result.n_items = 100;
    for (uint32_t k = 0; k < 100; k++) {
        m->u.phase2_poll_result.items[k].code = SINTER_MSG_BRANCH_ROLLBACK;
        m->u.phase2_poll_result.items[k].work.xid = (struct sinter_xid){0, k + 1};
        m->u.phase2_poll_result.items[k].work.branch_type = SINTER_BT_XA;
    }
    lim.max_batch = 128;
    uint8_t *buf = malloc(FRAME_MAX);
    assert_int_equal(sinter_proto_encode(m, &lim, buf, FRAME_MAX, &len), SINTER_OK);
    assert_int_equal(sinter_proto_decode(buf, len, &lim, m), SINTER_OK);
    assert_int_equal(sinter_proto_decode(buf, len, NULL, m), SINTER_ETOOBIG);
    free(buf);
    free(m);
}

/* sinter_strerror covers every code, including the ones the codec returns. */
static void strerror_covers_every_code(void **state)
{
    (void)state;
    for (int rc = 0; rc < SINTER_ERROR_COUNT; rc++) {
        assert_string_not_equal(sinter_strerror(rc), "unknown error");
        for (int o = 0; o < rc; o++) {
            assert_string_not_equal(sinter_strerror(rc), sinter_strerror(o));
        }
    }
    assert_string_equal(sinter_errname(SINTER_EBADMAGIC), "SINTER_EBADMAGIC");
    assert_string_equal(sinter_strerror(SINTER_ERROR_COUNT + 5), "unknown error");
}

/* Small helpers. */
static void str_helpers(void **state)
{
    (void)state;
    struct sinter_proto_str s = sinter_proto_str_c("abc");
    assert_int_equal(s.len, 3);
    assert_true(sinter_proto_str_eq(s, "abc"));
    assert_false(sinter_proto_str_eq(s, "abcd"));
    assert_false(sinter_proto_str_eq(s, "abd"));
    s = sinter_proto_str_c(NULL);
    assert_int_equal(s.len, 0);
    assert_true(sinter_proto_str_eq(s, ""));
    assert_true(sinter_proto_str_eq(s, NULL));
}

/* The begin's raft group: the coordinator's placement and the client's routing hint share it,
 * and a retry after an upgrade must still reach the group of its first attempt, so the values
 * are pinned (splitmix64 finaliser of client_id ^ mix(seq), modulo the group count). */
static void begin_group_is_pinned(void **state)
{
    (void)state;
    assert_int_equal(sinter_proto_begin_group(0x0123456789abcdefull, 1, 2), 0);
    assert_int_equal(sinter_proto_begin_group(0x0123456789abcdefull, 2, 2), 0);
    assert_int_equal(sinter_proto_begin_group(0x0123456789abcdefull, 3, 2), 1);
    assert_int_equal(sinter_proto_begin_group(42, 7, 3), 0);
    assert_int_equal(sinter_proto_begin_group(42, 8, 3), 2);
    assert_int_equal(sinter_proto_begin_group(UINT64_MAX, UINT64_MAX - 1, 256), 58);
    assert_int_equal(sinter_proto_begin_group(42, 8, 0), 0);
    assert_int_equal(sinter_proto_begin_group(42, 8, 1), 0);
    /* Spread: consecutive seqs of one client land in every group, none far off its share. */
    unsigned hits[4] = {0};
    for (uint64_t seq = 1; seq <= 4000; seq++) {
        uint32_t g = sinter_proto_begin_group(0x5eed, seq, 4);
        assert_true(g < 4);
        hits[g]++;
    }
    for (int g = 0; g < 4; g++) {
        assert_in_range(hits[g], 800, 1200);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_every_message),
        cmocka_unit_test(decoded_fields_are_exact),
        cmocka_unit_test(samples_cover_every_code),
        cmocka_unit_test(codes_match_seata),
        cmocka_unit_test(every_truncation_is_rejected),
        cmocka_unit_test(header_errors_are_distinct),
        cmocka_unit_test(corrupted_lengths_are_rejected),
        cmocka_unit_test(out_of_domain_values_are_rejected),
        cmocka_unit_test(encoder_enforces_limits),
        cmocka_unit_test(decoder_enforces_caller_limits),
        cmocka_unit_test(strerror_covers_every_code),
        cmocka_unit_test(str_helpers),
        cmocka_unit_test(begin_group_is_pinned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
