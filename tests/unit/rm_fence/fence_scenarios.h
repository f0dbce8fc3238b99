/*
 * TCC fence scenarios shared by the SQLite unit test (tests/unit/rm_fence) and the real
 * PostgreSQL integration test (tests/integration/fence_pg): the same semantics must hold on both
 * backends, so they are written once against struct sinter_fence_db.
 *
 * Each scenario is a cmocka test whose *state is a struct sinter_fence_db * connected to a
 * database on which sinter_fence_init() succeeded; fence_reset() (called by the backends' setup)
 * empties the fence table and creates the business table:
 *     acct(name TEXT PRIMARY KEY, balance BIGINT, frozen BIGINT)  alice 100/0, bob 0/0
 */
#ifndef SINTER_TEST_FENCE_SCENARIOS_H
#define SINTER_TEST_FENCE_SCENARIOS_H

#include <stdint.h>

#include "sinter/fence.h"

/* Runs one statement with $1..$n text parameters on either backend; *changes (may be NULL) gets
 * the rows changed. Returns SINTER_OK or SINTER_EDB (message printed). */
int fx_exec(const struct sinter_fence_db *db, const char *sql, int n, const char *const *params,
            long long *changes);
/* First column of the first row of a query without parameters, as an integer (-1 if no row). */
long long fx_q1(const struct sinter_fence_db *db, const char *sql);
/* Resets the tables described above. */
void fence_reset(const struct sinter_fence_db *db);
/* ms since the Unix epoch, CLOCK_REALTIME. */
int64_t fx_now_ms(void);

#define FENCE_SCENARIO_LIST(X)                                                                     \
    X(t_init_is_idempotent)                                                                        \
    X(t_try_then_confirm)                                                                          \
    X(t_try_then_cancel)                                                                           \
    X(t_empty_rollback_then_late_try)                                                              \
    X(t_duplicate_try_is_refused)                                                                  \
    X(t_confirm_without_try)                                                                       \
    X(t_opposite_phase2_refused)                                                                   \
    X(t_failing_try_hook_leaves_nothing)                                                           \
    X(t_failing_phase2_hook_leaves_tried)                                                          \
    X(t_money_moves_exactly_once)                                                                  \
    X(t_cleanup_in_batches)                                                                        \
    X(t_invalid_arguments)                                                                         \
    X(t_connection_inside_transaction)                                                             \
    X(t_hook_that_commits_is_caught)                                                               \
    X(t_wrong_table_and_db_errors)                                                                 \
    X(t_status_names)

#define FENCE_DECLARE(f) void f(void **state);
FENCE_SCENARIO_LIST(FENCE_DECLARE)
#undef FENCE_DECLARE

#endif
