/*
 * The Raft core under allocation failure: every Nth allocation the core makes fails. The core must
 * report SINTER_ENOMEM (or drop a message, which Raft tolerates as network loss) and never crash,
 * leak or break safety; once memory is back the cluster converges. Run under ASan/LSan in the
 * sanitizer build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "sinter/raft.h"

void *nomem_malloc(size_t n);
void *nomem_calloc(size_t n, size_t size);
void *nomem_realloc(void *p, size_t n);

static unsigned fail_every; /* 0: never fail */
static unsigned long calls;
static unsigned long failures;

static bool fail_now(void)
{
    calls++;
    if (fail_every != 0 && calls % fail_every == 0) {
        failures++;
        return true;
    }
    return false;
}

void *nomem_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

void *nomem_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

void *nomem_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

static struct harness H;

static void opts_small(struct sinter_raft_options *o)
{
    o->max_msg_entries = 4;
    o->max_inflight = 4;
}

static void core_survives_allocation_failures_and_converges(void **state)
{
    (void)state;
    for (unsigned every = 3; every <= 40; every += 3) {
        fail_every = 0;
        h_init(&H, 3, 3, every, opts_small);
        H.tolerate_enomem = true;
        H.reorder = true;
        H.drop_pct = 3;
        fail_every = every;
        for (int t = 0; t < 300; t++) {
            sinter_raft_id l = h_leader(&H);
            if (l != 0) {
                char buf[16];
                snprintf(buf, sizeof buf, "m%d", t);
                int rc = h_propose(&H, l, buf, NULL);
                assert_true(rc == SINTER_OK || rc == SINTER_ENOMEM || rc == SINTER_EBUSY);
                if (t % 50 == 25) {
                    rc = sinter_raft_read_index(h_raft(&H, l), (uint64_t)t);
                    assert_true(rc == SINTER_OK || rc == SINTER_ENOMEM);
                    h_process(&H, l);
                }
                if (t % 70 == 35) {
                    h_compact(&H, l, 2);
                }
                if (t == 150) {
                    sinter_raft_id to = l % 3 + 1;
                    rc = sinter_raft_transfer(h_raft(&H, l), to);
                    assert_true(rc == SINTER_OK || rc == SINTER_EBUSY);
                    h_process(&H, l);
                }
            }
            h_tick_all(&H);
            h_deliver_all(&H);
            h_check_consistent(&H);
        }
        fail_every = 0;
        H.reorder = false;
        H.drop_pct = 0;
        sinter_raft_id l = h_wait_leader(&H, 300);
        assert_int_not_equal(l, 0);
        int rc = SINTER_EBUSY;
        for (int k = 0; k < 30 && rc != SINTER_OK; k++) {
            rc = h_propose(&H, h_leader(&H), "final", NULL);
            h_run(&H, 1);
        }
        assert_int_equal(rc, SINTER_OK);
        h_run(&H, 20);
        for (sinter_raft_id i = 1; i <= 3; i++) {
            assert_true(h_applied_has(&H, i, "final"));
        }
        h_check_consistent(&H);
        h_free(&H);
        memset(&H, 0, sizeof H);
    }
    assert_true(failures > 100); /* the injection really happened */
}

/* ready() under allocation failure changes nothing: the same ready comes out once memory is
 * back. */
static void ready_enomem_leaves_core_unchanged(void **state)
{
    (void)state;
    struct sinter_raft_options o;
    sinter_raft_options_defaults(&o, 1);
    struct sinter_raft *r = NULL;
    assert_int_equal(sinter_raft_new(&r, &o), SINTER_OK);
    struct sinter_raft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    sinter_raft_config_add(&cfg, 1, SINTER_RAFT_VOTER);
    assert_int_equal(sinter_raft_bootstrap(r, &cfg), SINTER_OK);
    struct sinter_raft_ready rd;
    fail_every = 1;
    assert_int_equal(sinter_raft_ready(r, &rd), SINTER_ENOMEM);
    assert_int_equal(sinter_raft_propose(r, "x", 1, NULL, NULL), SINTER_ENOTLEADER);
    fail_every = 0;
    assert_true(sinter_raft_has_ready(r));
    assert_int_equal(sinter_raft_ready(r, &rd), SINTER_OK);
    assert_int_equal(rd.n_entries, 1);
    assert_true(rd.hard_state_dirty);
    sinter_raft_advance(r, &rd);
    sinter_raft_close(r);
}

static int teardown(void **state)
{
    (void)state;
    fail_every = 0;
    h_free(&H);
    memset(&H, 0, sizeof H);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(core_survives_allocation_failures_and_converges, teardown),
        cmocka_unit_test(ready_enomem_leaves_core_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
