/*
 * rm/rm_xa.c's supersede predicate (sinter_rm_xa_phase2_ended, rm_int.h): a queued asynchronous
 * PhaseOne_Done report may be dropped only after phase 2 ENDED its branch on this RM -- a
 * finished COMMIT PREPARED / ROLLBACK PREPARED (or one found finished). A retryable result
 * ('in progress' before PREPARE, 55000 busy, a timeout, a lost connection, the database down)
 * leaves the branch prepared or still to prepare, and its report (and so the late-prepare guard)
 * is still needed: dropping it there would leave a late PREPARE to phase 2's backoff alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../../rm/rm_int.h"
#include "sinter/error.h"
#include "sinter/types.h"

static void test_ended_only_when_done(void **state)
{
    (void)state;
    assert_true(sinter_rm_xa_phase2_ended(SINTER_OK, SINTER_BS_PHASE2_COMMITTED));
    assert_true(sinter_rm_xa_phase2_ended(SINTER_OK, SINTER_BS_PHASE2_ROLLBACKED));
}

static void test_retryable_never_ends(void **state)
{
    (void)state;
    /* What xa_phase2 sees from sinter_xa_commit_prepared / sinter_xa_rollback_prepared and
     * pool_get when the branch is not (yet) finished. */
    static const int rcs[] = {SINTER_EBUSY,  SINTER_ETIMEOUT, SINTER_ETRANSPORT, SINTER_EDB,
                              SINTER_ENOMEM, SINTER_ESTATE,   SINTER_EINTERNAL,  SINTER_ENOTFOUND};
    static const uint32_t outcomes[] = {0, SINTER_BS_PHASE2_COMMITTED, SINTER_BS_PHASE2_ROLLBACKED,
                                        SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE,
                                        SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE};
    for (size_t i = 0; i < sizeof rcs / sizeof rcs[0]; i++) {
        for (size_t j = 0; j < sizeof outcomes / sizeof outcomes[0]; j++) {
            assert_false(sinter_rm_xa_phase2_ended(rcs[i], outcomes[j]));
        }
    }
}

static void test_ok_without_an_end_does_not_end(void **state)
{
    (void)state;
    assert_false(sinter_rm_xa_phase2_ended(SINTER_OK, 0));
    assert_false(sinter_rm_xa_phase2_ended(SINTER_OK, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE));
    assert_false(sinter_rm_xa_phase2_ended(SINTER_OK, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE));
    assert_false(sinter_rm_xa_phase2_ended(SINTER_OK, SINTER_BS_PHASE1_DONE));
    assert_false(sinter_rm_xa_phase2_ended(SINTER_OK, SINTER_BS_REGISTERED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ended_only_when_done),
        cmocka_unit_test(test_retryable_never_ends),
        cmocka_unit_test(test_ok_without_an_end_does_not_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
