/*
 * Membership changes one server at a time (dissertation 4.1): any two consecutive configurations
 * then share a majority, so no joint consensus is needed. A configuration is used as soon as its
 * entry is in the log, committed or not, and reverts if that entry is truncated away.
 *
 * Two rules from the dissertation and its errata:
 *   - at most one change is uncommitted at a time (4.1);
 *   - a new leader proposes a change only after it committed an entry of its own term. Without
 *     this, a change left uncommitted by a previous leader and a new change can overlap without a
 *     shared majority (Ongaro, raft-dev, "bug in single-server membership changes", 2015).
 * Removing the leader (4.2.2): it keeps managing the cluster, not counting itself in majorities,
 * until the entry commits, then steps down.
 */
#include "internal.h"

void raft__config_refresh(struct sinter_raft *r)
{
    raft__log_config_at(&r->log, raft__log_last_index(&r->log), &r->cfg, &r->cfg_index);
    r->voter_before_cfg = false;
    r->prev_cfg = r->cfg;
    if (r->cfg_index > r->log.base) {
        uint64_t prev_index = 0;
        raft__log_config_at(&r->log, r->cfg_index - 1, &r->prev_cfg, &prev_index);
        r->voter_before_cfg = raft__is_voter(&r->prev_cfg, r->id);
    }
    if (r->role == SINTER_RAFT_LEADER) {
        raft__pr_sync(r, false);
        if (r->transfer_to != 0 && !raft__is_voter(&r->cfg, r->transfer_to)) {
            raft__transfer_abort(r);
        }
    }
}

void raft__config_on_commit(struct sinter_raft *r)
{
    if (r->role != SINTER_RAFT_LEADER || r->cfg_index > r->commit) {
        return;
    }
    /* A server removed by the change was still replicated to until now; tell it the change
     * committed (best effort: if it holds the entry), so it stops campaigning (raft__promotable)
     * instead of disturbing the cluster it left (dissertation 4.2.3). Then forget it. */
    bool dropped = false;
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        struct raft__progress *p = &r->prs[i];
        if (!p->used || sinter_raft_config_find(&r->cfg, p->id) >= 0) {
            continue;
        }
        dropped = true;
        if (p->id != r->id && p->match >= r->cfg_index) {
            struct sinter_raft_msg m = {
                .type = SINTER_RAFT_MSG_HEARTBEAT,
                .to = p->id,
                .commit = p->match < r->commit ? p->match : r->commit,
                .context = r->read_round,
            };
            raft__send(r, &m, false);
        }
    }
    if (dropped) {
        raft__pr_sync(r, false);
    }
    if (!raft__is_voter(&r->cfg, r->id)) {
        raft__become_follower(r, r->term, 0);
    }
}

int sinter_raft_change_member(struct sinter_raft *r, sinter_raft_id id, int change, uint64_t *index)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return SINTER_ENOTLEADER;
    }
    if (r->transfer_to != 0) {
        return SINTER_EBUSY;
    }
    if (id == 0) {
        return SINTER_EINVAL;
    }
    uint64_t commit_term = 0;
    raft__log_term(&r->log, r->commit, &commit_term);
    if (r->cfg_index > r->commit || commit_term != r->term) {
        return SINTER_ECONFCHANGE;
    }
    struct sinter_raft_config next = r->cfg;
    int at = sinter_raft_config_find(&next, id);
    int rc;
    switch (change) {
    case SINTER_RAFT_ADD_LEARNER:
        if (at >= 0) {
            return SINTER_EINVAL;
        }
        rc = sinter_raft_config_add(&next, id, SINTER_RAFT_LEARNER);
        break;
    case SINTER_RAFT_ADD_VOTER:
        if (at >= 0 && next.servers[at].suffrage == SINTER_RAFT_VOTER) {
            return SINTER_EINVAL;
        }
        rc = sinter_raft_config_add(&next, id, SINTER_RAFT_VOTER);
        break;
    case SINTER_RAFT_REMOVE:
        if (at < 0) {
            return SINTER_EINVAL;
        }
        rc = sinter_raft_config_remove(&next, id);
        break;
    default:
        return SINTER_EINVAL;
    }
    if (rc != SINTER_OK) {
        return rc;
    }
    if (sinter_raft_config_voters(&next) == 0) {
        return SINTER_EINVAL;
    }
    uint8_t buf[SINTER_RAFT_CONFIG_MAX_BYTES];
    uint32_t len = (uint32_t)sinter_raft_config_encode(&next, buf);
    rc = raft__leader_append(r, SINTER_RAFT_ENTRY_CONFIG, buf, len, index);
    if (rc != SINTER_OK) {
        return rc;
    }
    raft__bcast_append(r);
    return SINTER_OK;
}
