/*
 * Leadership transfer (dissertation 3.10): the leader stops taking proposals, brings the target's
 * log up to date, then sends TIMEOUT_NOW so the target campaigns at once. If the target has not
 * taken over within an election timeout, the leader gives up and resumes.
 */
#include "internal.h"

static void send_timeout_now(struct sinter_raft *r, sinter_raft_id to)
{
    struct sinter_raft_msg m = {.type = SINTER_RAFT_MSG_TIMEOUT_NOW, .to = to};
    raft__send(r, &m, false);
    r->timeout_now_sent = true;
}

int sinter_raft_transfer(struct sinter_raft *r, sinter_raft_id to)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return SINTER_ENOTLEADER;
    }
    if (r->transfer_to != 0) {
        return SINTER_EBUSY;
    }
    if (to == 0) {
        /* The most up-to-date other voter: the shortest catch-up. */
        uint64_t best = 0;
        for (uint32_t i = 0; i < r->cfg.n; i++) {
            const struct sinter_raft_server *s = &r->cfg.servers[i];
            const struct raft__progress *p = raft__pr_cget(r, s->id);
            if (s->id == r->id || s->suffrage != SINTER_RAFT_VOTER || p == NULL) {
                continue;
            }
            if (to == 0 || p->match > best) {
                to = s->id;
                best = p->match;
            }
        }
    }
    if (to == 0 || to == r->id || !raft__is_voter(&r->cfg, to)) {
        return SINTER_EINVAL;
    }
    struct raft__progress *p = raft__pr_get(r, to);
    if (p == NULL) {
        return SINTER_EINVAL;
    }
    r->transfer_to = to;
    r->transfer_elapsed = 0;
    r->timeout_now_sent = false;
    if (p->match == raft__log_last_index(&r->log)) {
        send_timeout_now(r, to);
    } else {
        raft__send_append(r, p, true);
    }
    return SINTER_OK;
}

void raft__transfer_abort(struct sinter_raft *r)
{
    r->transfer_to = 0;
    r->transfer_elapsed = 0;
    r->timeout_now_sent = false;
}

void raft__transfer_on_progress(struct sinter_raft *r, struct raft__progress *p)
{
    if (r->transfer_to == p->id && !r->timeout_now_sent &&
        p->match == raft__log_last_index(&r->log)) {
        send_timeout_now(r, p->id);
    }
}

void raft__transfer_tick(struct sinter_raft *r)
{
    if (r->transfer_to != 0 && ++r->transfer_elapsed >= r->o.election_ticks) {
        raft__transfer_abort(r);
    }
}
