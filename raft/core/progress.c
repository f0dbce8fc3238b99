/*
 * Per-peer replication progress on the leader (the "nextIndex/matchIndex" of paper figure 2, with
 * the flow-control states of etcd's raft and the dissertation's 10.2.2 pipelining):
 *   PROBE      the match point is unknown: one AppendEntries at a time, paused until answered;
 *   REPLICATE  the follower is known to match up to `match`: appends are pipelined, next advances
 *              optimistically, at most max_inflight appends outstanding;
 *   SNAPSHOT   the follower needs entries we compacted: one InstallSnapshot, then wait.
 */
#include <string.h>

#include "internal.h"

struct raft__progress *raft__pr_get(struct sinter_raft *r, sinter_raft_id id)
{
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        if (r->prs[i].used && r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

const struct raft__progress *raft__pr_cget(const struct sinter_raft *r, sinter_raft_id id)
{
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        if (r->prs[i].used && r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

static void pr_init(struct sinter_raft *r, struct raft__progress *p, sinter_raft_id id)
{
    uint64_t *infl = p->infl;
    memset(p, 0, sizeof *p);
    p->infl = infl;
    p->infl_cap = r->o.max_inflight;
    p->used = true;
    p->id = id;
    p->next = raft__log_last_index(&r->log) + 1;
    p->state = RAFT__PR_PROBE;
    /* A fresh peer gets one election timeout of grace before check-quorum counts it absent. */
    p->recent_active = true;
    if (id == r->id) {
        p->match = r->persisted;
    }
}

/* Servers the leader replicates to: the latest configuration, plus, while it is uncommitted,
 * the servers it removes (they still get the log, so they learn they were removed; they never
 * count: majorities always come from the latest configuration). */
static bool tracked(const struct sinter_raft *r, sinter_raft_id id)
{
    return sinter_raft_config_find(&r->cfg, id) >= 0 ||
           (r->cfg_index > r->commit && sinter_raft_config_find(&r->prev_cfg, id) >= 0);
}

static void track(struct sinter_raft *r, sinter_raft_id id)
{
    if (raft__pr_get(r, id) != NULL) {
        return;
    }
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        if (!r->prs[i].used) {
            pr_init(r, &r->prs[i], id);
            return;
        }
    }
}

void raft__pr_sync(struct sinter_raft *r, bool reset)
{
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        struct raft__progress *p = &r->prs[i];
        if (p->used && (reset || !tracked(r, p->id))) {
            p->used = false;
        }
    }
    for (uint32_t s = 0; s < r->cfg.n; s++) {
        track(r, r->cfg.servers[s].id);
    }
    if (r->cfg_index > r->commit) {
        for (uint32_t s = 0; s < r->prev_cfg.n; s++) {
            track(r, r->prev_cfg.servers[s].id);
        }
    }
}

static void infl_reset(struct raft__progress *p)
{
    p->infl_start = 0;
    p->infl_count = 0;
}

void raft__pr_become_probe(struct sinter_raft *r, struct raft__progress *p)
{
    (void)r;
    if (p->state == RAFT__PR_SNAPSHOT) {
        uint64_t n = p->pending_snapshot + 1;
        p->next = n > p->match + 1 ? n : p->match + 1;
    } else {
        p->next = p->match + 1;
    }
    p->state = RAFT__PR_PROBE;
    p->paused = false;
    p->pending_snapshot = 0;
    infl_reset(p);
}

void raft__pr_become_replicate(struct sinter_raft *r, struct raft__progress *p)
{
    (void)r;
    p->state = RAFT__PR_REPLICATE;
    p->next = p->match + 1;
    p->paused = false;
    p->pending_snapshot = 0;
    infl_reset(p);
}

void raft__pr_become_snapshot(struct raft__progress *p, uint64_t snap_index)
{
    p->state = RAFT__PR_SNAPSHOT;
    p->pending_snapshot = snap_index;
    p->snapshot_elapsed = 0;
    p->paused = false;
    infl_reset(p);
}

bool raft__pr_infl_full(const struct sinter_raft *r, const struct raft__progress *p)
{
    return p->infl_count >= r->o.max_inflight;
}

bool raft__pr_is_paused(const struct sinter_raft *r, const struct raft__progress *p)
{
    switch (p->state) {
    case RAFT__PR_PROBE:
        return p->paused;
    case RAFT__PR_REPLICATE:
        return raft__pr_infl_full(r, p);
    default:
        return true;
    }
}

void raft__pr_infl_add(struct sinter_raft *r, struct raft__progress *p, uint64_t last)
{
    if (raft__pr_infl_full(r, p)) {
        return; /* callers check; never overwrite */
    }
    uint32_t at = (p->infl_start + p->infl_count) % r->o.max_inflight;
    p->infl[at] = last;
    p->infl_count++;
}

void raft__pr_infl_free_to(struct raft__progress *p, uint64_t index)
{
    while (p->infl_count > 0 && p->infl[p->infl_start] <= index) {
        p->infl_count--;
        p->infl_start = (p->infl_start + 1) % p->infl_cap;
    }
}

void raft__pr_infl_free_first(struct raft__progress *p)
{
    if (p->infl_count > 0) {
        p->infl_count--;
        p->infl_start = (p->infl_start + 1) % p->infl_cap;
    }
}

bool raft__pr_maybe_update(struct raft__progress *p, uint64_t index)
{
    bool updated = false;
    if (p->match < index) {
        p->match = index;
        p->paused = false;
        updated = true;
    }
    if (p->next < index + 1) {
        p->next = index + 1;
    }
    return updated;
}

bool raft__pr_maybe_decr(struct raft__progress *p, uint64_t rejected, uint64_t probe_last)
{
    if (p->state == RAFT__PR_REPLICATE) {
        /* Pipelined appends beyond `match` are now suspect: restart right after the match. */
        if (rejected <= p->match) {
            return false; /* stale rejection, answered by a later success */
        }
        p->next = p->match + 1;
        return true;
    }
    if (p->state != RAFT__PR_PROBE || p->next - 1 != rejected) {
        return false; /* not the probe we are waiting for */
    }
    uint64_t n = probe_last + 1 < rejected ? probe_last + 1 : rejected;
    p->next = n > p->match + 1 ? n : p->match + 1;
    p->paused = false;
    return true;
}
