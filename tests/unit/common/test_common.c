/* Unit tests for the shared vocabulary: error strings and CRC32C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/crc32c.h"
#include "sinter/error.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_covers_every_code),
        cmocka_unit_test(crc32c_known_answers),
        cmocka_unit_test(crc32c_incremental_matches_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
