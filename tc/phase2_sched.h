/*
 * tc/phase2_sched.h — the phase-2 driver's scheduling decisions (internal to tc/), as a pure,
 * deterministic module: no clock (every call takes `now`), no I/O, randomness only from the
 * injected source. tc/worker.c feeds it from the replicated state and from RM polls; the unit tests
 * drive it with a fake clock and a scripted random source.
 *
 * What it decides (docs/phase2-protocol.md is the contract):
 *   - which branch is due for delivery: a branch is WAITING (in a time heap until `when`), READY
 *     (queued under its resource id for the next poller) or LEASED (handed to a poller; no other
 *     poller gets it until the lease ends): at most one delivery in flight per branch;
 *   - backoff with full jitter after a retryable outcome or an expired lease:
 *     delay = max(retry_initial / 2, random(0, min(retry_max, retry_initial * 2^(attempt-1))))
 *     (AWS architecture blog, "Exponential Backoff and Jitter"; Seata retries on a fixed period);
 *   - the deadline base (the global's first attempt) is replicated lazily: the first delivery
 *     proposes nothing; the first BRANCH_RESULT records its own time as the base (tc/fsm.c), and
 *     only when a delivery's lease expires while the base is still in this leader's memory is
 *     PHASE2_START asked for (so the base is recorded at most lease_ms after the first attempt,
 *     and a global whose phase 2 goes well costs no PHASE2_START entry);
 *   - the phase-2 deadline: every global with a first-attempt time has its own timer at
 *     first_attempt + max_retry (saturating), whatever its branches are doing (waiting, queued
 *     for a poller that never comes, leased); past it no branch of it is delivered and the
 *     global is reported for RETRY_TIMEOUT (the state machine re-checks it against the
 *     replicated first-attempt time, so a refused proposal is simply asked again);
 *   - a retryable report reschedules its branch only if it answers the delivery in flight (the
 *     branch is LEASED with that attempt number): a late report of an expired lease or a
 *     duplicate must not start a second delivery while another RM holds the lease.
 * Everything here is leader memory: a new leader builds a new scheduler from the replicated state
 * and every pending branch is due at once.
 *
 * Two clocks. `now` is the leader's monotonic clock (CLOCK_MONOTONIC, ms): leases, backoff and the
 * RETRY_TIMEOUT re-ask interval are in-memory timers, and an NTP step of the wall clock must
 * neither expire every lease at once nor freeze retries. `wall` is the wall clock
 * (CLOCK_REALTIME, ms): only the deadline compares with it, because first_attempt is replicated
 * wall time stamped by whichever leader ran PHASE2_START.
 *
 * Thread safety: none (the raft loop thread owns each group's scheduler).
 */
#ifndef SINTER_TC_PHASE2_SCHED_H
#define SINTER_TC_PHASE2_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/xid.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sinter_p2_cfg {
    uint64_t retry_initial_ms;      /* >= 1 */
    uint64_t retry_max_ms;          /* >= retry_initial_ms */
    uint64_t lease_ms;              /* >= 1 */
    uint64_t max_commit_retry_ms;   /* phase-2 deadline of the commit side */
    uint64_t max_rollback_retry_ms; /* and of the rollback side */
};

/* Random source: any 64-bit value, uniformly distributed. */
typedef uint64_t (*sinter_p2_rand_fn)(void *arg);

enum sinter_p2_state {
    SINTER_P2_WAITING = 1, /* in the time heap until `when` */
    SINTER_P2_READY = 2,   /* queued for a poller of its resource */
    SINTER_P2_LEASED = 3,  /* delivered; lease ends at `when` */
};

struct sinter_p2_global;

/* A branch that still needs phase 2. Read-only for callers. */
struct sinter_p2_branch {
    struct sinter_xid xid;
    uint64_t branch_id;
    bool commit; /* the global's decision side */
    uint32_t branch_type;
    char *resource_id; /* NUL-terminated copy */
    uint8_t *app_data; /* copy, app_data_len bytes (NULL when 0) */
    uint32_t app_data_len;
    uint64_t xa_local_xid;
    uint32_t attempt; /* deliveries so far (the last delivery's attempt number) */
    enum sinter_p2_state state;
    uint64_t when; /* WAITING: due time; LEASED: lease end (monotonic) */
    /* internal */
    struct sinter_p2_global *g;
    struct sinter_p2_branch *hnext;         /* branch hash chain */
    struct sinter_p2_branch *gnext;         /* the global's branch list */
    struct sinter_p2_branch *qprev, *qnext; /* ready queue */
    struct sinter_p2_rqueue *q;
    size_t heap_idx; /* SIZE_MAX when not in the heap */
};

struct sinter_p2_branch_info {
    struct sinter_xid xid;
    uint64_t branch_id;
    bool commit;
    uint32_t branch_type;
    const char *resource_id; /* NUL-terminated; copied */
    const uint8_t *app_data; /* copied */
    uint32_t app_data_len;
    uint64_t xa_local_xid;
    uint32_t attempts_done;   /* phase-2 results recorded in the replicated state */
    uint64_t phase2_first_ms; /* the global's replicated first-attempt time, 0 = none yet */
    uint64_t decided_ms;      /* the global's decision time (latency metric) */
};

/* One delivery handed out by sinter_p2_take(). */
struct sinter_p2_take_item {
    const struct sinter_p2_branch *b;
};

/* A global whose phase-2 deadline passed, and its side (which deadline applies). */
struct sinter_p2_deadline {
    struct sinter_xid xid;
    bool commit;
};

/* What sinter_p2_advance() did. deadline[] lists globals whose phase-2 deadline passed (propose
 * RETRY_TIMEOUT); each global at most once per retry_initial_ms. start[] lists globals whose
 * delivery's lease expired while their first-attempt time was only in this leader's memory
 * (propose PHASE2_START: its time becomes the replicated deadline base); each global once, unless
 * sinter_p2_start_failed() says it was not applied (a global that did not fit start_cap is listed
 * at a later lease expiry). */
struct sinter_p2_events {
    uint64_t lease_expired; /* leases that ended without a report */
    uint64_t retries;       /* retries scheduled (lease expiry; retryable reports count in
                               sinter_p2_retry's return) */
    uint64_t ready;         /* branches that became ready */
    struct sinter_p2_deadline *deadline; /* caller's array of deadline_cap entries */
    size_t deadline_cap;
    size_t n_deadline;
    struct sinter_xid *start; /* caller's array of start_cap entries (NULL: 0) */
    size_t start_cap;
    size_t n_start;
};

struct sinter_p2_sched;

/* The backoff before retry number `attempt` + 1 (attempt >= 1 deliveries done), with full jitter
 * from r: a value in [retry_initial / 2, min(retry_max, retry_initial * 2^(attempt-1))]. Pure. */
uint64_t sinter_p2_backoff_ms(const struct sinter_p2_cfg *cfg, uint32_t attempt, uint64_t r);

/* Whether a Begin global (begin_ms + timeout_ms from the replicated entry, wall clock) may be
 * rolled back by a leader whose wall clock reads `wall` and that has led for led_ms (measured on
 * the monotonic clock), with max_skew_ms the bound on clock differences between nodes: only when
 * wall > begin + timeout + max_skew (saturating) and led_ms >= max_skew (see
 * docs/architecture.md "Time"). Pure. */
bool sinter_p2_timeout_due(uint64_t begin_ms, uint64_t timeout_ms, uint64_t max_skew_ms,
                           uint64_t led_ms, uint64_t wall);

/* Creates an empty scheduler. cfg is copied; rnd(rnd_arg) is the random source.
 * Ownership: *out is the caller's, released with sinter_p2_sched_free().
 * Errors: SINTER_EINVAL (NULL, a zero interval, retry_max < retry_initial), SINTER_ENOMEM. */
int sinter_p2_sched_new(struct sinter_p2_sched **out, const struct sinter_p2_cfg *cfg,
                        sinter_p2_rand_fn rnd, void *rnd_arg);

/* Frees everything. NULL is ok. */
void sinter_p2_sched_free(struct sinter_p2_sched *s);

/* Adds a branch that needs phase 2 (WAITING, due at now: the next advance makes it ready or
 * reports the global's deadline). A branch already known is left as it is (SINTER_OK, *added
 * false). Ownership: copies what info points to. Errors: SINTER_EINVAL, SINTER_ENOMEM. */
int sinter_p2_add(struct sinter_p2_sched *s, const struct sinter_p2_branch_info *info, uint64_t now,
                  bool *added);

/* Moves time to now (monotonic) / wall: globals whose deadline passed (wall > first + max) are
 * reported in ev->deadline (again every retry_initial while they are not ended), expired leases
 * become retries (backoff), due branches become ready unless their global is past its deadline.
 * Errors: none (void). */
void sinter_p2_advance(struct sinter_p2_sched *s, uint64_t now, uint64_t wall,
                       struct sinter_p2_events *ev);

/* Hands out up to max ready branches whose resource id is one of resources[0..n) (lengths in
 * lens), oldest first per resource, and leases each (attempt + 1, lease until now + lease_ms).
 * A queued branch whose global is past its deadline at `wall` is not handed out (it waits for
 * RETRY_TIMEOUT). The first delivery of a global records first_attempt = wall and arms the
 * global's deadline timer.
 * *bytes accumulates sinter_p2_item_bytes() of what is handed out; a branch that would take it
 * past max_bytes stays queued unless nothing was handed out yet (one reply frame must hold the
 * batch; a poll may span several schedulers, hence the running total).
 * Ownership: the returned branch pointers stay valid until the branch is removed (report, end,
 * global end) or the scheduler is freed. Returns the number written to out. */
size_t sinter_p2_take(struct sinter_p2_sched *s, uint64_t now, uint64_t wall,
                      const char *const *resources, const uint32_t *lens, size_t n,
                      struct sinter_p2_take_item *out, size_t max, size_t *bytes, size_t max_bytes);

/* Bytes a branch adds to a Phase2PollResult (an upper bound of its encoding). */
size_t sinter_p2_item_bytes(const struct sinter_p2_branch *b);

/* A retryable outcome of delivery number `attempt` was recorded for the branch: if that delivery
 * is the one in flight (the branch is LEASED with this attempt number), schedule the branch again
 * after the backoff. Errors: SINTER_ENOTFOUND (branch not tracked), SINTER_ESTALE (not leased, or
 * leased with another attempt: a late or repeated report; nothing changes). */
int sinter_p2_retry(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id,
                    uint32_t attempt, uint64_t now);

/* The replicated state recorded a retryable outcome for a branch this leader did not deliver (a
 * report proposed by a previous leader): a WAITING or READY branch waits the backoff before its
 * next delivery instead of going out at once. Errors: SINTER_ENOTFOUND, SINTER_ESTALE (LEASED:
 * this leader's delivery is in flight; left alone). */
int sinter_p2_defer(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id,
                    uint64_t now);

/* The PHASE2_START asked for by an advance (events .start) was not applied (the proposal failed
 * or was lost in a leader change): forget the estimated first attempt and its deadline timer, so
 * the next delivery of the global estimates it again. No-op for an unknown global. */
void sinter_p2_start_failed(struct sinter_p2_sched *s, uint64_t xid_index);

/* The replicated state now has a first-attempt time for the global (a BRANCH_RESULT of it was
 * applied, which records one when there was none): no PHASE2_START is needed for it. The deadline
 * timer keeps this leader's estimate; if the replicated time is later, the refused RETRY_TIMEOUT
 * makes the caller re-read it (sinter_p2_set_first). No-op for an unknown global. */
void sinter_p2_base_recorded(struct sinter_p2_sched *s, uint64_t xid_index);

/* The branch has a phase-2 end: forget it (and its global once no branch is left). */
void sinter_p2_branch_ended(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id);

/* The global ended (final status or removed): forget it and its branches. */
void sinter_p2_global_ended(struct sinter_p2_sched *s, uint64_t xid_index);

/* Records the replicated first-attempt time of a global (from the state), so the deadline counts
 * from it rather than from this leader's estimate. No-op for an unknown global. */
void sinter_p2_set_first(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t phase2_first_ms);

/* Lookups. */
bool sinter_p2_has_global(const struct sinter_p2_sched *s, uint64_t xid_index);
const struct sinter_p2_branch *sinter_p2_find(const struct sinter_p2_sched *s, uint64_t xid_index,
                                              uint64_t branch_id);
/* Decision time of a tracked global (0 if unknown). */
uint64_t sinter_p2_decided_ms(const struct sinter_p2_sched *s, uint64_t xid_index);
/* Branches tracked, and how many of them are ready. */
size_t sinter_p2_count(const struct sinter_p2_sched *s);
size_t sinter_p2_ready_count(const struct sinter_p2_sched *s);
/* Earliest `when` of a waiting or leased branch, UINT64_MAX if none. */
uint64_t sinter_p2_next_when(const struct sinter_p2_sched *s);
/* Distinct resource ids of the tracked branches (queues are freed with their last branch). */
size_t sinter_p2_resource_count(const struct sinter_p2_sched *s);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_TC_PHASE2_SCHED_H */
