/*
 * Snapshots and log compaction (Raft paper 7, dissertation 5). The host owns snapshot bytes; the
 * core tracks the metadata: the index and term covered and the configuration in force there, so a
 * follower installing it knows its cluster (dissertation 5.1).
 */
#include "internal.h"

int sinter_raft_snapshot_meta_at(const struct sinter_raft *r, uint64_t index,
                                 struct sinter_raft_snapshot_meta *meta)
{
    if (index > r->applied) {
        return SINTER_EINVAL;
    }
    if (index < r->log.base) {
        return SINTER_ECOMPACTED;
    }
    uint64_t term = 0;
    raft__log_term(&r->log, index, &term);
    meta->index = index;
    meta->term = term;
    raft__log_config_at(&r->log, index, &meta->config, &meta->config_index);
    return SINTER_OK;
}

int sinter_raft_compact(struct sinter_raft *r, uint64_t index, uint64_t trailing)
{
    if (index > r->applied || index < r->snap.index) {
        return SINTER_EINVAL;
    }
    struct sinter_raft_snapshot_meta meta;
    int rc = sinter_raft_snapshot_meta_at(r, index, &meta);
    if (rc != SINTER_OK) {
        return rc;
    }
    r->snap = meta;
    /* Keep `trailing` entries so a follower a little behind still gets entries, which is far
     * cheaper than a snapshot (dissertation 5.1.3). */
    uint64_t upto = index > trailing ? index - trailing : 0;
    raft__log_compact(r, upto);
    return SINTER_OK;
}

void raft__send_snapshot(struct sinter_raft *r, struct raft__progress *p)
{
    if (p->state == RAFT__PR_SNAPSHOT || r->snap.index < r->log.base || r->snap.index == 0) {
        return;
    }
    struct sinter_raft_msg m = {
        .type = SINTER_RAFT_MSG_SNAPSHOT,
        .to = p->id,
        .snapshot = r->snap,
    };
    raft__send(r, &m, false);
    raft__pr_become_snapshot(p, r->snap.index);
}

int raft__handle_snapshot(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    const struct sinter_raft_snapshot_meta *s = &m->snapshot;
    struct sinter_raft_msg resp = {.type = SINTER_RAFT_MSG_APPEND_RESP, .to = m->from};
    uint64_t t = 0;
    if (s->index <= r->commit) {
        resp.index = r->commit; /* stale or duplicate snapshot: we already have it all */
    } else if (raft__log_term(&r->log, s->index, &t) && t == s->term) {
        /* Our log already holds the snapshot's last entry, so (Log Matching) everything before
         * it too: no need to replace the state machine, just commit up to there. */
        r->commit = s->index;
        resp.index = s->index;
    } else {
        /* Paper 7: discard the whole log and take the snapshot. */
        raft__log_truncate(r, r->log.base + 1);
        r->log.base = s->index;
        r->log.base_term = s->term;
        r->log.base_cfg = s->config;
        r->log.base_cfg_index = s->config_index;
        r->unstable_from = s->index + 1;
        r->snap = *s;
        r->snap_pending = true;
        r->commit = s->index;
        if (r->apply_handed < s->index) {
            r->apply_handed = s->index;
        }
        raft__config_refresh(r);
        resp.index = s->index;
    }
    raft__send(r, &resp, true);
    return SINTER_OK;
}

void raft__tick_snapshots(struct sinter_raft *r)
{
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        struct raft__progress *p = &r->prs[i];
        if (!p->used || p->state != RAFT__PR_SNAPSHOT) {
            continue;
        }
        /* A host that never reports the transfer (message lost) must not wedge the follower:
         * after a while, probe again (which sends a fresh snapshot if still needed). */
        if (++p->snapshot_elapsed >= 4 * r->o.election_ticks) {
            p->pending_snapshot = 0;
            raft__pr_become_probe(r, p);
        }
    }
}

void sinter_raft_report_snapshot(struct sinter_raft *r, sinter_raft_id id, bool ok)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return;
    }
    struct raft__progress *p = raft__pr_get(r, id);
    if (p == NULL || p->state != RAFT__PR_SNAPSHOT) {
        return;
    }
    if (!ok) {
        p->pending_snapshot = 0;
    }
    /* On success wait for the follower's answer (it carries its new match); either way the next
     * heartbeat answer unpauses the probe. */
    raft__pr_become_probe(r, p);
    p->paused = true;
}

void sinter_raft_report_unreachable(struct sinter_raft *r, sinter_raft_id id)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return;
    }
    struct raft__progress *p = raft__pr_get(r, id);
    if (p != NULL && p->state == RAFT__PR_REPLICATE) {
        raft__pr_become_probe(r, p);
    }
}
