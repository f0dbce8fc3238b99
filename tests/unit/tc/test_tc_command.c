/* Unit tests for the coordinator's replicated command format (tc/command.h): round trips of every
 * command, the exact little-endian layout, and strict, bounds-checked decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "tc/command.h"

static struct sinter_tc_bytes B(const char *s) {
    struct sinter_tc_bytes b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

static int
bytes_eq(struct sinter_tc_bytes a, struct sinter_tc_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static const struct sinter_xid X = {7, 1234567};

/* One valid command of every type. */
static size_t all_commands(struct sinter_tc_cmd *out)
{
    size_t n = 0;
    for (uint8_t t = 1; t <= SINTER_TC_CMD_TYPE_MAX; t++) {
        struct sinter_tc_cmd *c = &out[n++];
        memset(c, 0, sizeof *c);
        c->type = t;
        c->now_ms = 1700000000000ull + t;
        c->client_id = B("app:10.0.0.1:8091");
        c->seq = 42 + t;
        switch (t) {
        case SINTER_TC_CMD_BEGIN:
            c->u.begin.app_id = B("demo-app");
            c->u.begin.tx_name = B("tx-1");
            c->u.begin.timeout_ms = 60000;
            c->u.begin.app_data = B("{\"data\":\"test\"}");
            break;
        case SINTER_TC_CMD_REGISTER_BRANCH:
            c->u.reg.xid = X;
            c->u.reg.branch_type = SINTER_BT_XA;
            c->u.reg.resource_id = B("jdbc:postgresql://db/orders");
            c->u.reg.app_data = B("abc");
            c->u.reg.xa_info = B("pg_xact:889");
            break;
        case SINTER_TC_CMD_REPORT_BRANCH:
            c->u.report.xid = X;
            c->u.report.branch_id = 99;
            c->u.report.status = SINTER_BS_PHASE1_DONE;
            c->u.report.has = SINTER_TC_REPORT_HAS_XA_INFO;
            c->u.report.xa_info = B("pg_xact:890");
            break;
        case SINTER_TC_CMD_DECIDE:
            c->u.decide.xid = X;
            c->u.decide.target = SINTER_GS_ROLLBACKING;
            break;
        case SINTER_TC_CMD_BRANCH_RESULT:
            c->client_id = B("");
            c->seq = 0;
            c->u.result.xid = X;
            c->u.result.branch_id = 100;
            c->u.result.outcome = SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
            c->u.result.first_attempt_ms = 1700000000001ull;
            break;
        case SINTER_TC_CMD_RETRY_TIMEOUT:
            c->u.retry_timeout.xid = X;
            c->u.retry_timeout.max_retry_ms = 3600000;
            break;
        case SINTER_TC_CMD_GC:
            c->client_id = B("");
            c->seq = 0;
            c->u.gc.global_cutoff_ms = 5;
            c->u.gc.session_cutoff_ms = 6;
            c->u.gc.client_cutoff_ms = 4;
            c->u.gc.max_items = 100;
            break;
        case SINTER_TC_CMD_RESOLVE:
            c->u.resolve.xid = X;
            c->u.resolve.target = SINTER_GS_COMMITTED;
            break;
        case SINTER_TC_CMD_BRANCH_RESULTS:
            c->client_id = B("");
            c->seq = 0;
            c->u.results.n = 3;
            for (uint32_t i = 0; i < 3; i++) {
                c->u.results.r[i].xid = (struct sinter_xid){X.group + i, X.index + i};
                c->u.results.r[i].branch_id = 200 + i;
                c->u.results.r[i].outcome = (uint8_t)(SINTER_BS_PHASE2_COMMITTED + i);
                c->u.results.r[i].first_attempt_ms = i;
            }
            break;
        default: /* PHASE2_START, END, REDRIVE */
            c->u.x.xid = X;
            break;
        }
    }
    return n;
}

static void assert_same(const struct sinter_tc_cmd *a, const struct sinter_tc_cmd *b)
{
    assert_int_equal(a->type, b->type);
    assert_true(a->now_ms == b->now_ms);
    assert_true(bytes_eq(a->client_id, b->client_id));
    assert_true(a->seq == b->seq);
    switch (a->type) {
    case SINTER_TC_CMD_BEGIN:
        assert_true(bytes_eq(a->u.begin.app_id, b->u.begin.app_id));
        assert_true(bytes_eq(a->u.begin.tx_name, b->u.begin.tx_name));
        assert_true(bytes_eq(a->u.begin.app_data, b->u.begin.app_data));
        assert_true(a->u.begin.timeout_ms == b->u.begin.timeout_ms);
        break;
    case SINTER_TC_CMD_REGISTER_BRANCH:
        assert_int_equal(a->u.reg.xid.group, b->u.reg.xid.group);
        assert_true(a->u.reg.xid.index == b->u.reg.xid.index);
        assert_int_equal(a->u.reg.branch_type, b->u.reg.branch_type);
        assert_true(bytes_eq(a->u.reg.resource_id, b->u.reg.resource_id));
        assert_true(bytes_eq(a->u.reg.app_data, b->u.reg.app_data));
        assert_true(bytes_eq(a->u.reg.xa_info, b->u.reg.xa_info));
        break;
    case SINTER_TC_CMD_REPORT_BRANCH:
        assert_true(a->u.report.branch_id == b->u.report.branch_id);
        assert_int_equal(a->u.report.status, b->u.report.status);
        assert_int_equal(a->u.report.has, b->u.report.has);
        assert_true(bytes_eq(a->u.report.xa_info, b->u.report.xa_info));
        assert_true(bytes_eq(a->u.report.app_data, b->u.report.app_data));
        break;
    case SINTER_TC_CMD_BRANCH_RESULT:
        assert_true(a->u.result.branch_id == b->u.result.branch_id);
        assert_int_equal(a->u.result.outcome, b->u.result.outcome);
        assert_true(a->u.result.first_attempt_ms == b->u.result.first_attempt_ms);
        break;
    case SINTER_TC_CMD_BRANCH_RESULTS:
        assert_int_equal(a->u.results.n, b->u.results.n);
        for (uint32_t i = 0; i < a->u.results.n; i++) {
            const struct sinter_tc_cmd_branch_result *x = &a->u.results.r[i];
            const struct sinter_tc_cmd_branch_result *y = &b->u.results.r[i];
            assert_int_equal(x->xid.group, y->xid.group);
            assert_true(x->xid.index == y->xid.index);
            assert_true(x->branch_id == y->branch_id);
            assert_int_equal(x->outcome, y->outcome);
            assert_true(x->first_attempt_ms == y->first_attempt_ms);
        }
        break;
    case SINTER_TC_CMD_GC:
        assert_true(a->u.gc.global_cutoff_ms == b->u.gc.global_cutoff_ms);
        assert_true(a->u.gc.session_cutoff_ms == b->u.gc.session_cutoff_ms);
        assert_true(a->u.gc.client_cutoff_ms == b->u.gc.client_cutoff_ms);
        assert_int_equal(a->u.gc.max_items, b->u.gc.max_items);
        break;
    default:
        /* Every other body is an xid plus at most one byte / u64 at the same offset. */
        assert_memory_equal(&a->u, &b->u, sizeof(struct sinter_tc_cmd_retry_timeout));
        break;
    }
}

static void roundtrip_every_command(void **state)
{
    (void)state;
    struct sinter_tc_cmd cmds[SINTER_TC_CMD_TYPE_MAX];
    size_t n = all_commands(cmds);
    assert_int_equal(n, SINTER_TC_CMD_TYPE_MAX);
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[SINTER_TC_CMD_MAX_BYTES];
        size_t len = 0;
        assert_int_equal(sinter_tc_cmd_encode(&cmds[i], buf, sizeof buf, &len), SINTER_OK);
        assert_int_equal(len, sinter_tc_cmd_encoded_size(&cmds[i]));
        struct sinter_tc_cmd d;
        assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_OK);
        /* The first format's types keep version 1 byte for byte (an old replica applies them);
         * BRANCH_RESULTS is version 2 (an old replica stops on it instead of skipping it). */
        uint8_t want_version = cmds[i].type == SINTER_TC_CMD_BRANCH_RESULTS ? 2 : 1;
        assert_int_equal(buf[0], want_version);
        assert_int_equal(d.version, want_version);
        assert_int_equal(sinter_tc_cmd_version_of(cmds[i].type), want_version);
        assert_same(&cmds[i], &d);
        assert_string_not_equal(sinter_tc_cmd_name(cmds[i].type), "UNKNOWN");
        /* A buffer one byte short is refused by the encoder. */
        assert_int_equal(sinter_tc_cmd_encode(&cmds[i], buf, len - 1, &len), SINTER_ETOOBIG);
    }
    assert_string_equal(sinter_tc_cmd_name(0), "UNKNOWN");
    assert_string_equal(sinter_tc_cmd_name(SINTER_TC_CMD_BRANCH_RESULTS), "BRANCH_RESULTS");
    assert_int_equal(sinter_tc_cmd_version_of(0), 0);
    assert_int_equal(sinter_tc_cmd_version_of(SINTER_TC_CMD_TYPE_MAX + 1), 0);
}

/* BRANCH_RESULTS: version 2, u16 count, then per outcome xid, branch id, outcome, first attempt.
 */
static void branch_results_layout(void **state)
{
    (void)state;
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_BRANCH_RESULTS;
    c.now_ms = 9;
    c.u.results.n = 2;
    c.u.results.r[0] = (struct sinter_tc_cmd_branch_result){{1, 0x0203}, 0x0405, 5, 0};
    c.u.results.r[1] = (struct sinter_tc_cmd_branch_result){{0, 7}, 8, 10, 0x0102};
    uint8_t buf[128];
    size_t len;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    static const uint8_t want[] = {
        2,    12,   0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* hdr: version 2, type 12 */
        0,    0,    0, 0, 0, 0, 0, 0,                   /* seq */
        2,    0,                                        /* n */
        1,    0,    0, 0, 3, 2, 0, 0, 0, 0, 0, 0,       /* xid {1, 0x0203} */
        5,    4,    0, 0, 0, 0, 0, 0,                   /* branch id */
        5,                                              /* PhaseTwo_Committed */
        0,    0,    0, 0, 0, 0, 0, 0,                   /* first attempt */
        0,    0,    0, 0, 7, 0, 0, 0, 0, 0, 0, 0,       /* xid {0, 7} */
        8,    0,    0, 0, 0, 0, 0, 0,                   /* branch id */
        10,                                             /* PhaseTwo_RollbackFailed_Unretryable */
        0x02, 0x01, 0, 0, 0, 0, 0, 0,                   /* first attempt */
    };
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    struct sinter_tc_cmd d;
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_OK);
    assert_int_equal(d.u.results.n, 2);
    assert_true(d.u.results.r[1].first_attempt_ms == 0x0102);

    /* The count: 0 and 65 are refused by the encoder and by the decoder (the count is checked
     * before any outcome is read: it bounds the array); 64 is the most. */
    uint8_t b2[sizeof buf];
    memcpy(b2, buf, len);
    b2[22] = 0;
    assert_int_equal(sinter_tc_cmd_decode(&d, b2, len), SINTER_EBADVALUE);
    b2[22] = SINTER_TC_MAX_RESULTS + 1;
    assert_int_equal(sinter_tc_cmd_decode(&d, b2, len), SINTER_EBADVALUE);
    b2[22] = 1;
    b2[23] = 1; /* 257 */
    assert_int_equal(sinter_tc_cmd_decode(&d, b2, len), SINTER_EBADVALUE);
    b2[23] = 0;
    assert_int_equal(sinter_tc_cmd_decode(&d, b2, len), SINTER_EBADLEN); /* 1 + a trailing one */
    b2[22] = 3;
    assert_int_equal(sinter_tc_cmd_decode(&d, b2, len), SINTER_ETRUNCATED);
    struct sinter_tc_cmd e = c;
    e.u.results.n = 0;
    assert_int_equal(sinter_tc_cmd_encode(&e, buf, sizeof buf, &len), SINTER_EBADVALUE);
    e.u.results.n = SINTER_TC_MAX_RESULTS + 1;
    assert_int_equal(sinter_tc_cmd_encode(&e, buf, sizeof buf, &len), SINTER_EBADVALUE);
    e.u.results.n = SINTER_TC_MAX_RESULTS;
    for (uint32_t i = 0; i < SINTER_TC_MAX_RESULTS; i++) {
        e.u.results.r[i] = (struct sinter_tc_cmd_branch_result){{0, 1 + i}, 2 + i, 8, 0};
    }
    uint8_t big[4096];
    assert_int_equal(sinter_tc_cmd_encode(&e, big, sizeof big, &len), SINTER_OK);
    assert_int_equal(len, 22 + 2 + 29 * SINTER_TC_MAX_RESULTS);
    assert_int_equal(sinter_tc_cmd_decode(&d, big, len), SINTER_OK);
    assert_int_equal(d.u.results.n, SINTER_TC_MAX_RESULTS);
    assert_true(d.u.results.r[63].branch_id == 65);
    /* Every outcome is checked like a BRANCH_RESULT's: a phase-one status in the last one. */
    e.u.results.r[63].outcome = SINTER_BS_PHASE1_DONE;
    assert_int_equal(sinter_tc_cmd_encode(&e, big, sizeof big, &len), SINTER_EBADVALUE);
    e.u.results.r[63].outcome = 8;
    e.u.results.r[63].xid.index = 0;
    assert_int_equal(sinter_tc_cmd_encode(&e, big, sizeof big, &len), SINTER_EBADVALUE);
    /* No client session: its table keeps one answer per request, this command has n. */
    e = c;
    e.client_id = B("rm-1");
    e.seq = 5;
    assert_int_equal(sinter_tc_cmd_encode(&e, buf, sizeof buf, &len), SINTER_EBADVALUE);

    /* One spelling per type and version: BRANCH_RESULTS as version 1 (what an old replica's
     * decoder would have to accept to skip it), and an old type as version 2, are refused. */
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    buf[0] = 1;
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_EBADVERSION);
    buf[0] = 3;
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_EBADVERSION);
    assert_int_equal(d.version, 3); /* the fsm stops on a version newer than it knows */
}

/* The GC body's layout: three u64 cutoffs (global, session, client) then the u32 limit. */
static void gc_layout(void **state)
{
    (void)state;
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_GC;
    c.now_ms = 9;
    c.u.gc.global_cutoff_ms = 0x0102;
    c.u.gc.session_cutoff_ms = 0x0304;
    c.u.gc.client_cutoff_ms = 0x0203;
    c.u.gc.max_items = 0x0506;
    uint8_t buf[64];
    size_t len;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    static const uint8_t want[] = {1,    9,    0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* hdr */
                                   0,    0,    0, 0, 0, 0, 0, 0,                   /* seq */
                                   0x02, 0x01, 0, 0, 0, 0, 0, 0,                   /* global */
                                   0x04, 0x03, 0, 0, 0, 0, 0, 0,                   /* session */
                                   0x03, 0x02, 0, 0, 0, 0, 0, 0,                   /* client */
                                   0x06, 0x05, 0, 0};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    struct sinter_tc_cmd d;
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_OK);
    assert_true(d.u.gc.client_cutoff_ms == 0x0203);
}

/* The header layout is explicit little-endian, independent of the host. */
static void header_is_little_endian(void **state)
{
    (void)state;
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_END;
    c.now_ms = 0x0102030405060708ull;
    c.client_id = B("ab");
    c.seq = 0x1122;
    c.u.x.xid.group = 0x0A0B0C0D;
    c.u.x.xid.index = 5;
    uint8_t buf[64];
    size_t len;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    static const uint8_t want[] = {1,    7,    0,    0,    8,    7,    6, 5, 4, 3, 2, 1,
                                   2,    0,    'a',  'b',  0x22, 0x11, 0, 0, 0, 0, 0, 0,
                                   0x0D, 0x0C, 0x0B, 0x0A, 5,    0,    0, 0, 0, 0, 0, 0};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
}

/* Every proper prefix of every command is refused, never read past. */
static void truncated_commands_are_refused(void **state)
{
    (void)state;
    struct sinter_tc_cmd cmds[SINTER_TC_CMD_TYPE_MAX];
    size_t n = all_commands(cmds);
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[SINTER_TC_CMD_MAX_BYTES];
        size_t len;
        assert_int_equal(sinter_tc_cmd_encode(&cmds[i], buf, sizeof buf, &len), SINTER_OK);
        for (size_t cut = 0; cut < len; cut++) {
            /* A heap copy of exactly `cut` bytes lets ASan catch any over-read. */
            uint8_t *p = malloc(cut > 0 ? cut : 1);
            assert_non_null(p);
            memcpy(p, buf, cut);
            struct sinter_tc_cmd d;
            int rc = sinter_tc_cmd_decode(&d, p, cut);
            free(p);
            assert_int_not_equal(rc, SINTER_OK);
        }
        /* One trailing byte too many. */
        buf[len] = 0;
        struct sinter_tc_cmd d;
        assert_int_equal(sinter_tc_cmd_decode(&d, buf, len + 1), SINTER_EBADLEN);
    }
}

static void oversized_fields_are_refused(void **state)
{
    (void)state;
    static uint8_t big[SINTER_TC_MAX_APP_DATA + 1];
    memset(big, 'x', sizeof big);
    struct sinter_tc_cmd cmds[SINTER_TC_CMD_TYPE_MAX];
    all_commands(cmds);
    struct sinter_tc_cmd c = cmds[SINTER_TC_CMD_BEGIN - 1];
    uint8_t *buf = malloc(SINTER_TC_CMD_MAX_BYTES + 16);
    assert_non_null(buf);
    size_t len;

    /* Exactly 64 KiB of application data is fine, one more byte is not. */
    c.u.begin.app_data.p = big;
    c.u.begin.app_data.len = SINTER_TC_MAX_APP_DATA;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_OK);
    struct sinter_tc_cmd d;
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_OK);
    c.u.begin.app_data.len = SINTER_TC_MAX_APP_DATA + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_ETOOBIG);

    /* Hand-made: announce 65537 bytes of app data with the bytes present. */
    c.u.begin.app_data.len = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_OK);
    size_t off = len - 4; /* the app data length is the last field */
    uint32_t n = SINTER_TC_MAX_APP_DATA + 1;
    buf[off] = (uint8_t)n;
    buf[off + 1] = (uint8_t)(n >> 8);
    buf[off + 2] = (uint8_t)(n >> 16);
    buf[off + 3] = (uint8_t)(n >> 24);
    memset(buf + len, 'y', n);
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len + n), SINTER_ETOOBIG);
    /* A huge announced length without the bytes: still ETOOBIG (limit before presence). */
    buf[off + 3] = 0x7f;
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_ETOOBIG);
    /* A whole buffer beyond the maximum command size. */
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, SINTER_TC_CMD_MAX_BYTES + 1), SINTER_ETOOBIG);

    /* Strings over their limits. */
    c = cmds[SINTER_TC_CMD_BEGIN - 1];
    c.u.begin.app_id.p = big;
    c.u.begin.app_id.len = SINTER_TC_MAX_APP_ID + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_ETOOBIG);
    c = cmds[SINTER_TC_CMD_REGISTER_BRANCH - 1];
    c.u.reg.resource_id.p = big;
    c.u.reg.resource_id.len = SINTER_TC_MAX_RESOURCE_ID + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_ETOOBIG);
    c = cmds[SINTER_TC_CMD_REGISTER_BRANCH - 1];
    c.u.reg.xa_info.p = big;
    c.u.reg.xa_info.len = SINTER_TC_MAX_XA_INFO + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_ETOOBIG);
    /* The largest command there is fills SINTER_TC_CMD_MAX_BYTES exactly. */
    c.client_id.p = big;
    c.client_id.len = SINTER_TC_MAX_CLIENT_ID;
    c.u.reg.xa_info.len = SINTER_TC_MAX_XA_INFO;
    c.u.reg.resource_id.p = big;
    c.u.reg.resource_id.len = SINTER_TC_MAX_RESOURCE_ID;
    c.u.reg.app_data.p = big;
    c.u.reg.app_data.len = SINTER_TC_MAX_APP_DATA;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_OK);
    assert_int_equal(len, SINTER_TC_CMD_MAX_BYTES);
    assert_int_equal(sinter_tc_cmd_decode(&d, buf, len), SINTER_OK);
    c.client_id.len = SINTER_TC_MAX_CLIENT_ID + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, SINTER_TC_CMD_MAX_BYTES, &len), SINTER_ETOOBIG);
    free(buf);
}

/* Encodes c (which must be valid), lets `poke` alter byte `at`, and returns the decoder's verdict.
 */
static int decode_poked(const struct sinter_tc_cmd *c, size_t at, uint8_t value)
{
    uint8_t buf[1024];
    size_t len;
    assert_int_equal(sinter_tc_cmd_encode(c, buf, sizeof buf, &len), SINTER_OK);
    assert_true(at < len);
    buf[at] = value;
    struct sinter_tc_cmd d;
    return sinter_tc_cmd_decode(&d, buf, len);
}

static void bad_values_are_refused(void **state)
{
    (void)state;
    struct sinter_tc_cmd cmds[SINTER_TC_CMD_TYPE_MAX];
    all_commands(cmds);
    const struct sinter_tc_cmd *end = &cmds[SINTER_TC_CMD_END - 1];
    assert_int_equal(decode_poked(end, 0, 2), SINTER_EBADVERSION); /* END is version 1 only */
    assert_int_equal(decode_poked(end, 0, SINTER_TC_CMD_VERSION + 1), SINTER_EBADVERSION);
    assert_int_equal(decode_poked(end, 0, 0), SINTER_EBADVERSION);
    assert_int_equal(decode_poked(end, 1, 0), SINTER_EUNKNOWNMSG);
    assert_int_equal(decode_poked(end, 1, SINTER_TC_CMD_TYPE_MAX + 1), SINTER_EUNKNOWNMSG);
    assert_int_equal(decode_poked(end, 2, 1), SINTER_EBADVALUE);  /* reserved flags */
    assert_int_equal(decode_poked(end, 14, 0), SINTER_EBADVALUE); /* NUL in client id */

    uint8_t buf[1024];
    size_t len;
    struct sinter_tc_cmd c = cmds[SINTER_TC_CMD_DECIDE - 1];
    c.u.decide.target = SINTER_GS_COMMITTED; /* a decision is only Committing / *Rollbacking */
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_DECIDE - 1];
    c.u.decide.xid.index = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_BEGIN - 1];
    c.u.begin.timeout_ms = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c.u.begin.timeout_ms = SINTER_TC_MAX_TIMEOUT_MS + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_BEGIN - 1];
    c.u.begin.app_id = B("");
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    /* Client commands need a session; seq and client id come together. */
    c = cmds[SINTER_TC_CMD_BEGIN - 1];
    c.client_id = B("");
    c.seq = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_END - 1];
    c.seq = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c.client_id = B("");
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    c = cmds[SINTER_TC_CMD_REGISTER_BRANCH - 1];
    c.u.reg.branch_type = 2; /* Seata's AT/SAGA are not supported */
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_REPORT_BRANCH - 1];
    c.u.report.status = SINTER_BS_PHASE2_COMMITTED; /* phase-one results only */
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_REPORT_BRANCH - 1];
    c.u.report.app_data = B("x"); /* present without its flag */
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c.u.report.has = 0x04;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_BRANCH_RESULT - 1];
    c.u.result.outcome = SINTER_BS_PHASE1_DONE;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_GC - 1];
    c.u.gc.max_items = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c.u.gc.max_items = SINTER_TC_MAX_GC_ITEMS + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    /* Client rows hold the floor that refuses retries of forgotten answers: the client cutoff may
     * not be later than the session cutoff (equal is the latest allowed; 0 keeps every client). */
    c = cmds[SINTER_TC_CMD_GC - 1];
    c.u.gc.client_cutoff_ms = c.u.gc.session_cutoff_ms + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c.u.gc.client_cutoff_ms = c.u.gc.session_cutoff_ms;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    c.u.gc.client_cutoff_ms = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    c.u.gc.client_cutoff_ms = (uint64_t)INT64_MAX;
    c.u.gc.session_cutoff_ms = (uint64_t)INT64_MAX;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    /* The decoder refuses the same: GC body = global, session, client cutoff (u64 each), max. */
    assert_int_equal(decode_poked(&cmds[SINTER_TC_CMD_GC - 1], 22 + 16, 7), SINTER_EBADVALUE);
    assert_int_equal(decode_poked(&cmds[SINTER_TC_CMD_GC - 1], 22 + 16, 6), SINTER_OK);
    c = cmds[SINTER_TC_CMD_RESOLVE - 1];
    c.u.resolve.target = SINTER_GS_COMMIT_FAILED;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c = cmds[SINTER_TC_CMD_END - 1];
    c.u.x.xid.index = (uint64_t)INT64_MAX + 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    c.type = 0;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_EBADVALUE);
    assert_int_equal(sinter_tc_cmd_encode(NULL, buf, sizeof buf, &len), SINTER_EINVAL);
    struct sinter_tc_cmd d;
    assert_int_equal(sinter_tc_cmd_decode(&d, NULL, 0), SINTER_ETRUNCATED);
}

/* The session checksum covers the request (type and body) but not the leader's timestamp, which
 * a retry through another leader changes. */
static void body_crc_ignores_now(void **state)
{
    (void)state;
    struct sinter_tc_cmd cmds[SINTER_TC_CMD_TYPE_MAX];
    all_commands(cmds);
    struct sinter_tc_cmd c = cmds[SINTER_TC_CMD_BEGIN - 1];
    uint8_t buf[1024];
    size_t len;
    struct sinter_tc_cmd d1;
    struct sinter_tc_cmd d2;
    struct sinter_tc_cmd d3;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf, sizeof buf, &len), SINTER_OK);
    assert_int_equal(sinter_tc_cmd_decode(&d1, buf, len), SINTER_OK);
    uint8_t buf2[1024];
    c.now_ms += 5000;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf2, sizeof buf2, &len), SINTER_OK);
    assert_int_equal(sinter_tc_cmd_decode(&d2, buf2, len), SINTER_OK);
    assert_int_equal(d1.body_crc, d2.body_crc);
    uint8_t buf3[1024];
    c.u.begin.timeout_ms += 1;
    assert_int_equal(sinter_tc_cmd_encode(&c, buf3, sizeof buf3, &len), SINTER_OK);
    assert_int_equal(sinter_tc_cmd_decode(&d3, buf3, len), SINTER_OK);
    assert_int_not_equal(d1.body_crc, d3.body_crc);
}

/* Random bytes and random mutations of valid commands never crash the decoder, and whatever it
 * accepts re-encodes to the same bytes (one spelling per command). */
static void random_input_never_crashes(void **state)
{
    (void)state;
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    struct sinter_tc_cmd cmds[SINTER_TC_CMD_TYPE_MAX];
    size_t n = all_commands(cmds);
    for (int iter = 0; iter < 20000; iter++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint8_t buf[512];
        size_t len;
        assert_int_equal(sinter_tc_cmd_encode(&cmds[(seed >> 33) % n], buf, sizeof buf, &len),
                         SINTER_OK);
        int flips = (int)((seed >> 20) % 4) + 1;
        for (int k = 0; k < flips; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            buf[(seed >> 33) % len] = (uint8_t)(seed >> 13);
        }
        uint8_t *p = malloc(len);
        assert_non_null(p);
        memcpy(p, buf, len);
        struct sinter_tc_cmd d;
        if (sinter_tc_cmd_decode(&d, p, len) == SINTER_OK) {
            uint8_t again[512];
            size_t len2;
            assert_int_equal(sinter_tc_cmd_encode(&d, again, sizeof again, &len2), SINTER_OK);
            assert_int_equal(len2, len);
            assert_memory_equal(again, p, len);
        }
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_every_command),
        cmocka_unit_test(header_is_little_endian),
        cmocka_unit_test(gc_layout),
        cmocka_unit_test(branch_results_layout),
        cmocka_unit_test(truncated_commands_are_refused),
        cmocka_unit_test(oversized_fields_are_refused),
        cmocka_unit_test(bad_values_are_refused),
        cmocka_unit_test(body_crc_ignores_now),
        cmocka_unit_test(random_input_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
