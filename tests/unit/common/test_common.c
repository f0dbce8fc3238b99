/* Unit tests for the shared vocabulary: error strings and CRC32C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/crc32c.h"
#include "sinter/error.h"
#include "sinter/types.h"
#include "sinter/xid.h"

/* Every code has a name and a text, and no two codes share a text, so a log line is unambiguous. */
static void strerror_covers_every_code(void **state)
{
    (void)state;
    for (int rc = 0; rc < SINTER_ERROR_COUNT; rc++) {
        const char *t = sinter_strerror(rc);
        assert_non_null(t);
        assert_string_not_equal(t, "unknown error");
        assert_string_not_equal(sinter_errname(rc), "SINTER_E?");
        for (int o = 0; o < rc; o++) {
            assert_string_not_equal(t, sinter_strerror(o));
            assert_string_not_equal(sinter_errname(rc), sinter_errname(o));
        }
    }
    assert_string_equal(sinter_strerror(-1), "unknown error");
    assert_string_equal(sinter_strerror(SINTER_ERROR_COUNT), "unknown error");
    assert_string_equal(sinter_errname(9999), "SINTER_E?");
    assert_string_equal(sinter_errname(SINTER_ENOTLEADER), "SINTER_ENOTLEADER");
}

/* Known-answer values from RFC 3720 appendix B.4 (iSCSI) and the common check value. */
static void crc32c_known_answers(void **state)
{
    (void)state;
    uint8_t buf[48];
    assert_int_equal(sinter_crc32c(0, "123456789", 9), 0xE3069283u);
    memset(buf, 0, 32);
    assert_int_equal(sinter_crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    assert_int_equal(sinter_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)i;
    }
    assert_int_equal(sinter_crc32c(0, buf, 32), 0x46DD794Eu);
    assert_int_equal(sinter_crc32c(0, NULL, 0), 0u);
}

/* Checksumming in pieces, at every split point and alignment, equals checksumming at once. */
static void crc32c_incremental_matches_whole(void **state)
{
    (void)state;
    uint8_t buf[100];
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] = (uint8_t)(i * 7 + 3);
    }
    for (size_t off = 0; off < 8; off++) {
        uint32_t whole = sinter_crc32c(0, buf + off, sizeof buf - off);
        for (size_t cut = 0; cut <= sizeof buf - off; cut++) {
            uint32_t c = sinter_crc32c(0, buf + off, cut);
            c = sinter_crc32c(c, buf + off + cut, sizeof buf - off - cut);
            assert_int_equal(c, whole);
        }
    }
}

/* The text form round-trips, and every non-canonical spelling is refused. */
static void xid_text_roundtrip_and_strictness(void **state)
{
    (void)state;
    char buf[SINTER_XID_STRLEN];
    struct sinter_xid x = {UINT32_MAX, UINT64_MAX};
    struct sinter_xid y;
    size_t n = sinter_xid_format(&x, buf);
    assert_int_equal(n, strlen(buf));
    assert_true(n < SINTER_XID_STRLEN);
    assert_int_equal(sinter_xid_parse(&y, buf, n), SINTER_OK);
    assert_int_equal(y.group, x.group);
    assert_true(y.index == x.index);
    assert_int_equal(sinter_xid_parse(&y, "0:1", 3), SINTER_OK);
    assert_int_equal(y.group, 0);
    assert_true(y.index == 1);
    static const char *bad[] = {
        "",     ":",    "0:",   ":1",   "0:0",  "01:5",         "0:05",
        "-1:5", "1:-5", "1:5:", " 1:5", "1:5 ", "4294967296:1", "1:18446744073709551616",
        "a:1",  "1;1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sinter_xid_parse(&y, bad[i], strlen(bad[i])), SINTER_EINVAL);
    }
    /* Length is honoured: trailing bytes beyond len are not read. */
    assert_int_equal(sinter_xid_parse(&y, "7:9xyz", 3), SINTER_OK);
    assert_true(y.index == 9);
}

/* Seata's numbers and names, and the commit/rollback sides never overlap. */
static void status_codes_match_seata(void **state)
{
    (void)state;
    assert_int_equal(SINTER_GS_TIMEOUT_ROLLBACKING, 6);
    assert_int_equal(SINTER_GS_COMMITTED, 9);
    assert_int_equal(SINTER_GS_ROLLBACK_RETRY_TIMEOUT, 17);
    assert_int_equal(SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE, 10);
    assert_string_equal(sinter_global_status_name(SINTER_GS_COMMIT_RETRYING), "CommitRetrying");
    assert_string_equal(sinter_branch_status_name(SINTER_BS_PHASE2_COMMITTED),
                        "PhaseTwo_Committed");
    assert_string_equal(sinter_branch_type_name(SINTER_BT_XA), "XA");
    assert_false(sinter_global_status_valid(8));
    assert_false(sinter_global_status_valid(0));
    assert_false(sinter_global_status_valid(18));
    assert_false(sinter_branch_status_valid(4));
    assert_false(sinter_branch_type_valid(2));
    for (uint32_t s = 0; s <= SINTER_GS_MAX + 1; s++) {
        assert_false(sinter_global_status_is_commit_side(s) &&
                     sinter_global_status_is_rollback_side(s));
        if (sinter_global_status_is_final(s)) {
            assert_true(sinter_global_status_is_commit_side(s) ||
                        sinter_global_status_is_rollback_side(s));
        }
    }
    assert_false(sinter_global_status_is_final(SINTER_GS_BEGIN));
    assert_false(sinter_global_status_is_final(SINTER_GS_FINISHED));
    assert_true(sinter_global_status_is_final(SINTER_GS_TIMEOUT_ROLLBACKED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_covers_every_code),
        cmocka_unit_test(crc32c_known_answers),
        cmocka_unit_test(crc32c_incremental_matches_whole),
        cmocka_unit_test(xid_text_roundtrip_and_strictness),
        cmocka_unit_test(status_codes_match_seata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
