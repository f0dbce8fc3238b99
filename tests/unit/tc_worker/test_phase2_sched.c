/*
 * The phase-2 driver's scheduling decisions (tc/phase2_sched.c), driven with a fake clock and a
 * scripted random source: backoff bounds and jitter range, the timeout-rollback skew rule, one
 * delivery in flight per branch, lease expiry -> redelivery with attempt + 1, retryable outcome ->
 * backoff, deadline -> RETRY_TIMEOUT asked (and asked again if refused), PHASE2_START only for an
 * unanswered delivery of a global without a replicated base (once), resource filters and the
 * reply byte budget, and a rebuild after a leader change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/error.h"
#include "tc/phase2_sched.h"

/* Scripted random source: returns vals[i++ % n]. */
struct script {
    uint64_t vals[8];
    size_t n, i;
};

static uint64_t script_rand(void *arg)
{
    struct script *s = arg;
    return s->vals[s->i++ % s->n];
}

static uint64_t lcg_state = 12345;
static uint64_t lcg_rand(void *arg)
{
    (void)arg;
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return lcg_state ^ (lcg_state >> 29);
}

static const struct sinter_p2_cfg CFG = {
    .retry_initial_ms = 100,
    .retry_max_ms = 1000,
    .lease_ms = 500,
    .max_commit_retry_ms = 5000,
    .max_rollback_retry_ms = 8000,
};

static struct sinter_p2_branch_info info(uint64_t xid, uint64_t branch, const char *res,
                                         bool commit)
{
    struct sinter_p2_branch_info i;
    memset(&i, 0, sizeof i);
    i.xid = (struct sinter_xid){0, xid};
    i.branch_id = branch;
    i.commit = commit;
    i.branch_type = 1;
    i.resource_id = res;
    i.app_data = (const uint8_t *)"args";
    i.app_data_len = 4;
    i.decided_ms = 1;
    return i;
}

static void add(struct sinter_p2_sched *s, struct sinter_p2_branch_info i, uint64_t now)
{
    bool added = false;
    assert_int_equal(sinter_p2_add(s, &i, now, &added), SINTER_OK);
    assert_true(added);
}

static struct sinter_p2_events advance(struct sinter_p2_sched *s, uint64_t now,
                                       struct sinter_p2_deadline *dl, size_t cap)
{
    struct sinter_p2_events ev;
    memset(&ev, 0, sizeof ev);
    ev.deadline = dl;
    ev.deadline_cap = cap;
    sinter_p2_advance(s, now, now, &ev); /* both clocks at the same reading */
    return ev;
}

static struct sinter_p2_events advance_st(struct sinter_p2_sched *s, uint64_t now,
                                          struct sinter_xid *st, size_t cap)
{
    struct sinter_p2_events ev;
    memset(&ev, 0, sizeof ev);
    ev.start = st;
    ev.start_cap = cap;
    sinter_p2_advance(s, now, now, &ev);
    return ev;
}

static size_t take1(struct sinter_p2_sched *s, uint64_t now, const char *res,
                    struct sinter_p2_take_item *out, size_t max)
{
    const char *r[1] = {res};
    uint32_t l[1] = {(uint32_t)strlen(res)};
    size_t bytes = 0;
    return sinter_p2_take(s, now, now, r, l, 1, out, max, &bytes, 1u << 20);
}

static void backoff_bounds(void **state)
{
    (void)state;
    /* r = 0: the floor retry_initial / 2; r = max: the cap min(max, initial * 2^(attempt-1)). */
    uint64_t caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (uint32_t a = 1; a <= 7; a++) {
        assert_int_equal(sinter_p2_backoff_ms(&CFG, a, 0), 50);
        assert_int_equal(sinter_p2_backoff_ms(&CFG, a, caps[a - 1]), caps[a - 1]);
        assert_int_equal(sinter_p2_backoff_ms(&CFG, a, caps[a - 1] + 1), 50); /* wraps to 0 */
    }
    /* A huge attempt number neither overflows nor exceeds the cap. */
    assert_true(sinter_p2_backoff_ms(&CFG, 4000000000u, UINT64_MAX - 1) <= 1000);
    /* Full jitter: over many draws the delays spread over the whole range [floor, cap]. */
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 5000; i++) {
        uint64_t d = sinter_p2_backoff_ms(&CFG, 4, lcg_rand(NULL));
        assert_true(d >= 50 && d <= 800);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_int_equal(lo, 50);
    assert_true(hi >= 780);
}

static void timeout_skew_rule(void **state)
{
    (void)state;
    /* begin 10000, timeout 1000, skew 500: due only after 11500 (wall), and only for a leader
     * that has led for 500 ms (monotonic). */
    assert_false(sinter_p2_timeout_due(10000, 1000, 500, 5000, 11001));
    assert_false(sinter_p2_timeout_due(10000, 1000, 500, 5000, 11500));
    assert_true(sinter_p2_timeout_due(10000, 1000, 500, 5000, 11501));
    assert_false(sinter_p2_timeout_due(10000, 1000, 500, 400, 11600)); /* new leader waits */
    assert_true(sinter_p2_timeout_due(10000, 1000, 500, 500, 11700));
    assert_true(sinter_p2_timeout_due(10000, 1000, 0, 1, 11001)); /* no skew: plain rule */
    /* Huge configured values saturate instead of wrapping to "due now". */
    assert_false(sinter_p2_timeout_due(10000, UINT64_MAX - 5000, 500, 5000, UINT64_MAX - 1));
    assert_false(sinter_p2_timeout_due(10000, 1000, UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 1));
}

static void one_delivery_in_flight(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(10, 11, "acct-a", true), 1000);
    add(s, info(10, 12, "acct-b", true), 1000);
    bool added = true;
    struct sinter_p2_branch_info again = info(10, 11, "acct-a", true);
    assert_int_equal(sinter_p2_add(s, &again, 1000, &added), SINTER_OK);
    assert_false(added); /* known branch: left as it is */
    assert_int_equal(sinter_p2_count(s), 2);
    /* Due at once: the next advance makes both ready. */
    struct sinter_p2_events ev = advance(s, 1000, NULL, 0);
    assert_int_equal(ev.ready, 2);
    struct sinter_p2_take_item it[4];
    assert_int_equal(take1(s, 1000, "other", it, 4), 0); /* resource filter */
    assert_int_equal(take1(s, 1000, "acct-a", it, 4), 1);
    assert_int_equal(it[0].b->branch_id, 11);
    assert_int_equal(it[0].b->attempt, 1);
    assert_true(it[0].b->commit);
    assert_memory_equal(it[0].b->app_data, "args", 4);
    /* Leased: no second poller gets it, however often it asks, until the lease ends. */
    for (uint64_t t = 1000; t < 1500; t += 50) {
        advance(s, t, NULL, 0);
        assert_int_equal(take1(s, t, "acct-a", it, 4), 0);
    }
    assert_int_equal(take1(s, 1000, "acct-b", it, 4), 1);
    assert_int_equal(sinter_p2_ready_count(s), 0);
    /* Outcomes: 11 done, 12 done -> the global is forgotten. */
    sinter_p2_branch_ended(s, 10, 11);
    assert_true(sinter_p2_has_global(s, 10));
    sinter_p2_branch_ended(s, 10, 12);
    assert_false(sinter_p2_has_global(s, 10));
    assert_int_equal(sinter_p2_count(s), 0);
    assert_int_equal(sinter_p2_next_when(s), UINT64_MAX);
    sinter_p2_sched_free(s);
}

static void lease_expiry_redelivers(void **state)
{
    (void)state;
    struct script sc = {{80}, 1, 0}; /* every backoff draw: 80 ms */
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(20, 21, "acct-a", false), 0);
    advance(s, 0, NULL, 0);
    struct sinter_p2_take_item it[2];
    assert_int_equal(take1(s, 0, "acct-a", it, 2), 1);
    assert_false(it[0].b->commit);
    assert_int_equal(sinter_p2_next_when(s), 500); /* lease end */
    struct sinter_p2_events ev = advance(s, 499, NULL, 0);
    assert_int_equal(ev.lease_expired, 0);
    ev = advance(s, 500, NULL, 0);
    assert_int_equal(ev.lease_expired, 1);
    assert_int_equal(ev.retries, 1);
    assert_int_equal(ev.ready, 0); /* backoff first */
    assert_int_equal(sinter_p2_next_when(s), 580);
    assert_int_equal(take1(s, 570, "acct-a", it, 2), 0);
    ev = advance(s, 580, NULL, 0);
    assert_int_equal(ev.ready, 1);
    assert_int_equal(take1(s, 580, "acct-a", it, 2), 1);
    assert_int_equal(it[0].b->attempt, 2);
    sinter_p2_sched_free(s);
}

static void retryable_outcome_backs_off(void **state)
{
    (void)state;
    struct script sc = {{0, 1000000}, 2, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(30, 31, "acct-a", true), 0);
    advance(s, 0, NULL, 0);
    struct sinter_p2_take_item it[2];
    assert_int_equal(take1(s, 0, "acct-a", it, 2), 1);
    assert_int_equal(sinter_p2_retry(s, 30, 99, 1, 10), SINTER_ENOTFOUND);
    assert_int_equal(sinter_p2_retry(s, 30, 31, 1, 10), SINTER_OK); /* draw 0 -> floor 50 */
    assert_int_equal(sinter_p2_next_when(s), 60);
    advance(s, 60, NULL, 0);
    assert_int_equal(take1(s, 60, "acct-a", it, 2), 1);
    assert_int_equal(it[0].b->attempt, 2);
    /* attempt 2: cap 200; the draw (1000000 % 201 = 25) is raised to the floor 50 */
    assert_int_equal(sinter_p2_retry(s, 30, 31, 2, 100), SINTER_OK);
    uint64_t when = sinter_p2_next_when(s);
    assert_true(when >= 150 && when <= 300);
    sinter_p2_sched_free(s);
}

static void deadline_asks_retry_timeout(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(40, 41, "acct-a", true), 0);
    add(s, info(50, 51, "acct-a", false), 0);
    advance(s, 0, NULL, 0);
    struct sinter_p2_take_item it[4];
    assert_int_equal(take1(s, 0, "acct-a", it, 4), 2); /* both globals' first attempt at 0 */
    struct sinter_p2_deadline dl[4];
    /* Leases expire and retries go on until the commit deadline (5000) passes. */
    uint64_t t = 0;
    size_t asked40 = 0, asked50 = 0;
    for (t = 0; t <= 9000; t += 10) {
        struct sinter_p2_events ev = advance(s, t, dl, 4);
        for (size_t i = 0; i < ev.n_deadline; i++) {
            if (dl[i].xid.index == 40) {
                assert_true(t > 5000);
                assert_true(dl[i].commit);
                asked40++;
            } else {
                assert_int_equal(dl[i].xid.index, 50);
                assert_true(t > 8000); /* the rollback side's deadline */
                assert_false(dl[i].commit);
                asked50++;
            }
        }
        size_t n = take1(s, t, "acct-a", it, 4);
        for (size_t i = 0; i < n; i++) {
            /* Never delivered past its deadline. */
            assert_true(it[i].b->xid.index == 40 ? t <= 5000 : t <= 8000);
        }
    }
    /* Asked again while the state machine has not ended it (refused: asked once per
     * retry_initial at most). */
    assert_true(asked40 >= 2 && asked40 <= (9000 - 5000) / 100 + 1);
    assert_true(asked50 >= 2);
    sinter_p2_global_ended(s, 40);
    sinter_p2_global_ended(s, 50);
    assert_int_equal(sinter_p2_count(s), 0);
    sinter_p2_sched_free(s);
}

static void rebuild_after_leader_change(void **state)
{
    (void)state;
    /* The old leader delivered twice and recorded the first attempt at 100; the new leader's
     * scheduler starts from the replicated state: due at once, attempt 3, no second
     * PHASE2_START, deadline counted from 100. */
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    struct sinter_p2_branch_info i = info(60, 61, "acct-a", true);
    i.attempts_done = 2;
    i.phase2_first_ms = 100;
    add(s, i, 3000);
    struct sinter_p2_events ev = advance(s, 3000, NULL, 0);
    assert_int_equal(ev.ready, 1);
    struct sinter_p2_take_item it[1];
    assert_int_equal(take1(s, 3000, "acct-a", it, 1), 1);
    assert_int_equal(it[0].b->attempt, 3);
    /* The state has a first-attempt time: an unanswered delivery asks for no PHASE2_START. */
    struct sinter_xid st[2];
    assert_int_equal(advance_st(s, 3000 + 500, st, 2).n_start, 0);
    sinter_p2_sched_free(s);
    /* Past the deadline already when the new leader takes over: RETRY_TIMEOUT, no delivery. */
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, i, 5101);
    struct sinter_p2_deadline dl[1];
    ev = advance(s, 5101, dl, 1);
    assert_int_equal(ev.n_deadline, 1);
    assert_int_equal(dl[0].xid.index, 60);
    assert_int_equal(ev.ready, 0);
    sinter_p2_sched_free(s);
}

static void byte_budget_and_order(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    for (uint64_t x = 1; x <= 5; x++) {
        add(s, info(100 + x, 200 + x, "acct-a", true), 0);
    }
    add(s, info(300, 301, "acct-b", true), 0);
    advance(s, 0, NULL, 0);
    const struct sinter_p2_branch *b = sinter_p2_find(s, 101, 201);
    assert_non_null(b);
    size_t one = sinter_p2_item_bytes(b);
    const char *r[2] = {"acct-b", "acct-a"};
    uint32_t l[2] = {6, 6};
    struct sinter_p2_take_item it[8];
    size_t bytes = 0;
    /* Room for two items: acct-b's first (the poll's order), then acct-a's oldest. */
    assert_int_equal(sinter_p2_take(s, 0, 0, r, l, 2, it, 8, &bytes, 2 * one), 2);
    assert_int_equal(it[0].b->xid.index, 300);
    assert_int_equal(it[1].b->xid.index, 101);
    assert_int_equal(bytes, 2 * one);
    /* A budget smaller than one item still hands out one (a frame always holds one). */
    bytes = 0;
    assert_int_equal(sinter_p2_take(s, 0, 0, r, l, 2, it, 8, &bytes, 1), 1);
    assert_int_equal(it[0].b->xid.index, 102);
    assert_int_equal(sinter_p2_ready_count(s), 3);
    bytes = 0;
    assert_int_equal(sinter_p2_take(s, 0, 0, r, l, 2, it, 2, &bytes, 1u << 20), 2); /* max */
    sinter_p2_sched_free(s);
}

static void bad_config(void **state)
{
    (void)state;
    struct sinter_p2_sched *s = NULL;
    struct sinter_p2_cfg c = CFG;
    c.retry_max_ms = 10;
    assert_int_equal(sinter_p2_sched_new(&s, &c, lcg_rand, NULL), SINTER_EINVAL);
    c = CFG;
    c.lease_ms = 0;
    assert_int_equal(sinter_p2_sched_new(&s, &c, lcg_rand, NULL), SINTER_EINVAL);
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, NULL, NULL), SINTER_EINVAL);
}

static void many_branches(void **state)
{
    (void)state;
    /* Enough to grow every table; every branch delivered exactly once, then ended. */
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, lcg_rand, NULL), SINTER_OK);
    for (uint64_t x = 1; x <= 3000; x++) {
        add(s, info(x * 10, x * 10 + 1, x % 2 ? "acct-a" : "acct-b", true), x);
        add(s, info(x * 10, x * 10 + 2, "acct-c", true), x);
    }
    assert_int_equal(sinter_p2_count(s), 6000);
    advance(s, 3000, NULL, 0);
    assert_int_equal(sinter_p2_ready_count(s), 6000);
    const char *r[3] = {"acct-a", "acct-b", "acct-c"};
    uint32_t l[3] = {6, 6, 6};
    struct sinter_p2_take_item it[64];
    size_t total = 0;
    for (;;) {
        size_t bytes = 0;
        size_t n = sinter_p2_take(s, 3000, 3000, r, l, 3, it, 64, &bytes, 1u << 20);
        if (n == 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(it[i].b->attempt, 1);
        }
        for (size_t i = 0; i < n; i++) {
            sinter_p2_branch_ended(s, it[i].b->xid.index, it[i].b->branch_id);
        }
        total += n;
    }
    assert_int_equal(total, 6000);
    assert_int_equal(sinter_p2_count(s), 0);
    sinter_p2_sched_free(s);
}

/* Review item 1: RM A hangs, its lease expires, RM B gets attempt 2; A's late retryable report
 * (attempt 1) must not put the branch back in the queue while B's lease runs, and a duplicate of
 * B's report must not restart the backoff. */
static void stale_report_keeps_the_lease(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_cfg cfg = CFG;
    cfg.lease_ms = 10000;
    cfg.max_commit_retry_ms = 3600000;
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &cfg, script_rand, &sc), SINTER_OK);
    add(s, info(10, 11, "acct-a", true), 0);
    advance(s, 0, NULL, 0);
    struct sinter_p2_take_item it[2];
    assert_int_equal(take1(s, 0, "acct-a", it, 2), 1); /* A: attempt 1 */
    advance(s, 10000, NULL, 0);                        /* lease expired: backoff 50 */
    advance(s, 10050, NULL, 0);
    assert_int_equal(take1(s, 10050, "acct-a", it, 2), 1); /* B: attempt 2, lease to 20050 */
    assert_int_equal(it[0].b->attempt, 2);
    assert_int_equal(sinter_p2_retry(s, 10, 11, 1, 12000), SINTER_ESTALE); /* A, late */
    assert_int_equal(sinter_p2_retry(s, 10, 11, 0, 12000), SINTER_ESTALE); /* no attempt */
    assert_int_equal(sinter_p2_retry(s, 10, 11, 3, 12000), SINTER_ESTALE); /* not handed out */
    const struct sinter_p2_branch *b = sinter_p2_find(s, 10, 11);
    assert_int_equal(b->state, SINTER_P2_LEASED);
    assert_int_equal(b->when, 20050);
    for (uint64_t t = 12000; t < 20050; t += 50) {
        advance(s, t, NULL, 0);
        assert_int_equal(take1(s, t, "acct-a", it, 2), 0); /* no C while B holds the lease */
    }
    /* B's own retryable report reschedules; its duplicate changes nothing. */
    assert_int_equal(sinter_p2_retry(s, 10, 11, 2, 20000), SINTER_OK);
    assert_int_equal(b->state, SINTER_P2_WAITING);
    uint64_t when = b->when;
    assert_int_equal(sinter_p2_retry(s, 10, 11, 2, 20040), SINTER_ESTALE);
    assert_int_equal(b->when, when);
    sinter_p2_sched_free(s);
}

/* Review item 2: the RM dies after the first delivery and no poller ever comes back: the global
 * still reaches its deadline (asked within retry_initial of it), and a poller that returns later
 * gets nothing of it. */
static void deadline_without_pollers(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(10, 11, "acct-a", true), 0);
    add(s, info(10, 12, "acct-b", true), 0); /* never polled for at all */
    advance(s, 0, NULL, 0);
    struct sinter_p2_take_item it[2];
    assert_int_equal(take1(s, 0, "acct-a", it, 2), 1);
    struct sinter_p2_deadline dl[4];
    uint64_t first_ask = 0;
    size_t asks = 0;
    for (uint64_t t = 0; t <= 100000; t += 20) {
        struct sinter_p2_events ev = advance(s, t, dl, 4);
        if (ev.n_deadline > 0) {
            assert_int_equal(ev.n_deadline, 1); /* once per global, not per branch */
            assert_int_equal(dl[0].xid.index, 10);
            assert_true(dl[0].commit);
            first_ask = first_ask ? first_ask : t;
            asks++;
        }
    }
    assert_true(first_ask > 5000 && first_ask <= 5000 + 20);
    assert_true(asks >= 2 && asks <= (100000 - 5000) / 100 + 1); /* re-asked, rate-limited */
    assert_int_equal(take1(s, 100000, "acct-a", it, 2), 0);
    assert_int_equal(take1(s, 100000, "acct-b", it, 2), 0);
    /* A branch queued before the deadline is not handed out after it either. */
    add(s, info(20, 21, "acct-c", true), 100000);
    advance(s, 100000, NULL, 0);
    assert_int_equal(take1(s, 100000, "acct-c", it, 2), 1); /* first attempt of 20 at 100000 */
    advance(s, 100500, NULL, 0);                            /* lease expiry */
    advance(s, 100550, NULL, 0);                            /* ready again */
    assert_int_equal(sinter_p2_ready_count(s), 1);
    assert_int_equal(take1(s, 105001, "acct-c", it, 2), 0); /* past 100000 + 5000 */
    assert_int_equal(sinter_p2_ready_count(s), 0);
    struct sinter_p2_events ev = advance(s, 105002, dl, 4);
    assert_true(ev.n_deadline >= 1);
    sinter_p2_sched_free(s);
}

/* The deadline base is replicated lazily (tc/phase2_sched.h): a take proposes nothing; a
 * delivery whose lease expires while the global's first-attempt time is only this leader's
 * estimate asks for PHASE2_START once; a BRANCH_RESULT recording the base (base_recorded) or a
 * replicated time (set_first) makes it unnecessary; a global that did not fit the caller's array
 * is asked for at a later expiry. */
static void start_deferred_to_lease_expiry(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0}; /* backoff = its floor, 50 */
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(10, 11, "acct-a", true), 0);
    add(s, info(10, 12, "acct-a", true), 0);
    add(s, info(20, 21, "acct-b", true), 0);
    add(s, info(30, 31, "acct-c", true), 0);
    struct sinter_xid st[4];
    assert_int_equal(advance_st(s, 0, st, 4).n_start, 0);
    struct sinter_p2_take_item it[4];
    assert_int_equal(take1(s, 0, "acct-a", it, 4), 2);
    assert_int_equal(take1(s, 0, "acct-b", it, 4), 1);
    assert_int_equal(take1(s, 0, "acct-c", it, 4), 1);
    assert_int_equal(advance_st(s, 499, st, 4).n_start, 0); /* leases still running */
    /* 20's first BRANCH_RESULT was applied: its base is replicated. */
    sinter_p2_base_recorded(s, 20);
    sinter_p2_base_recorded(s, 99); /* unknown: no-op */
    /* Every lease expires at 500: one PHASE2_START for 10 (two branches, one ask), none for 20;
     * 30 does not fit a one-entry array and waits for a later expiry. */
    struct sinter_p2_events ev = advance_st(s, 500, st, 1);
    assert_int_equal(ev.lease_expired, 4);
    assert_int_equal(ev.n_start, 1);
    assert_int_equal(st[0].index, 10);
    assert_int_equal(advance_st(s, 550, st, 4).n_start, 0); /* retries due: ready */
    assert_int_equal(take1(s, 550, "acct-a", it, 4), 2);
    assert_int_equal(take1(s, 550, "acct-c", it, 4), 1);
    ev = advance_st(s, 1050, st, 4);
    assert_int_equal(ev.lease_expired, 3);
    assert_int_equal(ev.n_start, 1); /* 30 now; 10 was asked already */
    assert_int_equal(st[0].index, 30);
    /* 10's PHASE2_START was not applied: the estimate is forgotten, the next delivery makes a new
     * one and its unanswered lease asks again. The replicated time then sets the deadline. */
    sinter_p2_start_failed(s, 10);
    advance_st(s, 1100, st, 4);
    assert_int_equal(take1(s, 1100, "acct-a", it, 4), 2);
    ev = advance_st(s, 1600, st, 4);
    assert_int_equal(ev.n_start, 1);
    assert_int_equal(st[0].index, 10);
    sinter_p2_set_first(s, 10, 2000);
    struct sinter_p2_deadline dl[4];
    struct sinter_p2_events e2;
    memset(&e2, 0, sizeof e2);
    e2.deadline = dl;
    e2.deadline_cap = 4;
    sinter_p2_advance(s, 6900, 6900, &e2);
    for (size_t i = 0; i < e2.n_deadline; i++) {
        assert_true(dl[i].xid.index != 10); /* 2000 + 5000 not passed */
    }
    memset(&e2, 0, sizeof e2);
    e2.deadline = dl;
    e2.deadline_cap = 4;
    sinter_p2_advance(s, 7001, 7001, &e2);
    bool ten = false;
    for (size_t i = 0; i < e2.n_deadline; i++) {
        ten = ten || dl[i].xid.index == 10;
    }
    assert_true(ten);
    sinter_p2_start_failed(s, 99); /* unknown: no-op */
    sinter_p2_sched_free(s);
}

/* Review item 5: leases and backoff run on `now` (monotonic); only the deadline reads `wall`. A
 * wall-clock step forward expires no lease; a step back does not freeze redelivery. */
static void clocks_are_split(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    add(s, info(10, 11, "acct-a", true), 0);
    struct sinter_p2_events ev;
    memset(&ev, 0, sizeof ev);
    sinter_p2_advance(s, 0, 1000000, &ev);
    const char *r[1] = {"acct-a"};
    uint32_t l[1] = {6};
    struct sinter_p2_take_item it[1];
    size_t bytes = 0;
    assert_int_equal(sinter_p2_take(s, 0, 1000000, r, l, 1, it, 1, &bytes, 1u << 20), 1);
    /* Wall jumps an hour ahead (past this config's 5 s deadline) while monotonic time stands
     * still: the lease is intact, only the deadline notices. */
    struct sinter_p2_deadline dl[1];
    memset(&ev, 0, sizeof ev);
    ev.deadline = dl;
    ev.deadline_cap = 1;
    sinter_p2_advance(s, 10, 1000000 + 3600000, &ev);
    assert_int_equal(ev.lease_expired, 0);
    assert_int_equal(ev.n_deadline, 1);
    assert_int_equal(sinter_p2_find(s, 10, 11)->state, SINTER_P2_LEASED);
    sinter_p2_global_ended(s, 10);
    /* Wall steps back a day: the lease still expires on monotonic time and the retry comes. */
    add(s, info(20, 21, "acct-a", true), 100);
    memset(&ev, 0, sizeof ev);
    sinter_p2_advance(s, 100, 200000000, &ev);
    bytes = 0;
    assert_int_equal(sinter_p2_take(s, 100, 200000000, r, l, 1, it, 1, &bytes, 1u << 20), 1);
    memset(&ev, 0, sizeof ev);
    sinter_p2_advance(s, 600, 200000000 - 86400000, &ev);
    assert_int_equal(ev.lease_expired, 1);
    memset(&ev, 0, sizeof ev);
    sinter_p2_advance(s, 650, 200000000 - 86400000, &ev);
    assert_int_equal(ev.ready, 1);
    sinter_p2_sched_free(s);
}

/* Review item 6: a huge max retry neither wraps the deadline to "passed" nor overflows a lease. */
static void huge_config_saturates(void **state)
{
    (void)state;
    struct script sc = {{UINT64_MAX - 3}, 1, 0};
    struct sinter_p2_cfg cfg = {1, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &cfg, script_rand, &sc), SINTER_OK);
    struct sinter_p2_branch_info i = info(10, 11, "acct-a", true);
    i.phase2_first_ms = 1700000000000ull;
    add(s, i, 5);
    struct sinter_p2_deadline dl[1];
    struct sinter_p2_events ev;
    memset(&ev, 0, sizeof ev);
    ev.deadline = dl;
    ev.deadline_cap = 1;
    sinter_p2_advance(s, 5, UINT64_MAX - 1, &ev);
    assert_int_equal(ev.n_deadline, 0);
    assert_int_equal(ev.ready, 1);
    struct sinter_p2_take_item it[1];
    assert_int_equal(take1(s, 5, "acct-a", it, 1), 1);
    assert_int_equal(sinter_p2_next_when(s), UINT64_MAX); /* lease end saturated */
    assert_int_equal(sinter_p2_retry(s, 10, 11, it[0].b->attempt, 7), SINTER_OK);
    assert_true(sinter_p2_next_when(s) >= 7); /* backoff saturated, not wrapped */
    sinter_p2_sched_free(s);
}

/* Review item 7: resource queues are freed with their last branch; many distinct ids work. */
static void resource_queues_are_freed(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    char name[32];
    for (uint64_t x = 1; x <= 5000; x++) {
        snprintf(name, sizeof name, "res-%llu", (unsigned long long)x);
        add(s, info(x, 1, name, true), 0);
        add(s, info(x, 2, name, true), 0); /* two branches share the queue */
    }
    assert_int_equal(sinter_p2_resource_count(s), 5000);
    advance(s, 0, NULL, 0);
    struct sinter_p2_take_item it[4];
    assert_int_equal(take1(s, 0, "res-4321", it, 4), 2);
    assert_int_equal(it[0].b->xid.index, 4321);
    for (uint64_t x = 1; x <= 5000; x++) {
        sinter_p2_branch_ended(s, x, 1);
    }
    assert_int_equal(sinter_p2_resource_count(s), 5000); /* branch 2 still holds each */
    for (uint64_t x = 1; x <= 2500; x++) {
        sinter_p2_branch_ended(s, x, 2);
    }
    for (uint64_t x = 2501; x <= 5000; x++) {
        sinter_p2_global_ended(s, x);
    }
    assert_int_equal(sinter_p2_resource_count(s), 0);
    assert_int_equal(take1(s, 0, "res-4321", it, 4), 0);
    add(s, info(9000, 1, "res-1", true), 0); /* a freed id comes back as a new queue */
    assert_int_equal(sinter_p2_resource_count(s), 1);
    sinter_p2_sched_free(s);
}

/* Review item 8: a retryable outcome recorded by a previous leader's delivery waits the backoff
 * at the new leader instead of going out at once; a branch this leader leased is left alone. */
static void defer_applies_backoff(void **state)
{
    (void)state;
    struct script sc = {{0}, 1, 0};
    struct sinter_p2_sched *s = NULL;
    assert_int_equal(sinter_p2_sched_new(&s, &CFG, script_rand, &sc), SINTER_OK);
    struct sinter_p2_branch_info i = info(10, 11, "acct-a", true);
    i.attempts_done = 3;
    i.phase2_first_ms = 1;
    add(s, i, 1000);
    assert_int_equal(sinter_p2_defer(s, 10, 11, 1000), SINTER_OK);
    assert_int_equal(sinter_p2_defer(s, 10, 99, 1000), SINTER_ENOTFOUND);
    assert_int_equal(advance(s, 1000, NULL, 0).ready, 0);
    assert_int_equal(sinter_p2_next_when(s), 1050); /* backoff floor */
    assert_int_equal(advance(s, 1050, NULL, 0).ready, 1);
    struct sinter_p2_take_item it[1];
    assert_int_equal(take1(s, 1050, "acct-a", it, 1), 1);
    assert_int_equal(sinter_p2_defer(s, 10, 11, 1060), SINTER_ESTALE);
    assert_int_equal(sinter_p2_find(s, 10, 11)->state, SINTER_P2_LEASED);
    sinter_p2_sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_bounds),
        cmocka_unit_test(timeout_skew_rule),
        cmocka_unit_test(one_delivery_in_flight),
        cmocka_unit_test(lease_expiry_redelivers),
        cmocka_unit_test(retryable_outcome_backs_off),
        cmocka_unit_test(deadline_asks_retry_timeout),
        cmocka_unit_test(rebuild_after_leader_change),
        cmocka_unit_test(byte_budget_and_order),
        cmocka_unit_test(bad_config),
        cmocka_unit_test(many_branches),
        cmocka_unit_test(stale_report_keeps_the_lease),
        cmocka_unit_test(deadline_without_pollers),
        cmocka_unit_test(start_deferred_to_lease_expiry),
        cmocka_unit_test(clocks_are_split),
        cmocka_unit_test(huge_config_saturates),
        cmocka_unit_test(resource_queues_are_freed),
        cmocka_unit_test(defer_applies_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
