/*
 * Log replication (Raft paper 5.3) and commitment (5.4.2), with pipelining and batching
 * (dissertation 10.2.2), fast back-off of nextIndex on rejection (paper 5.3, last paragraphs; the
 * term-based variant of etcd's raft), and proposals on the leader.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int raft__leader_append(struct sinter_raft *r, uint32_t type, const void *data, uint32_t len,
                        uint64_t *index)
{
    if (raft__log_reserve(&r->log, 1) != SINTER_OK) {
        return SINTER_ENOMEM;
    }
    struct sinter_raft_entry e = {
        .term = r->term,
        .index = raft__log_last_index(&r->log) + 1,
        .type = type,
        .len = len,
        .data = NULL,
    };
    if (len > 0) {
        e.data = raft__buf_alloc(len);
        if (e.data == NULL) {
            return SINTER_ENOMEM;
        }
        memcpy(e.data, data, len);
    }
    raft__log_push(&r->log, &e);
    if (type == SINTER_RAFT_ENTRY_CONFIG) {
        raft__config_refresh(r); /* dissertation 4.1: in force as soon as it is in the log */
    }
    if (index != NULL) {
        *index = e.index;
    }
    return SINTER_OK;
}

int sinter_raft_propose(struct sinter_raft *r, const void *data, uint32_t len, uint64_t *index,
                        uint64_t *term)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return SINTER_ENOTLEADER;
    }
    if (len > 0 && data == NULL) {
        return SINTER_EINVAL;
    }
    if (r->transfer_to != 0) {
        return SINTER_EBUSY; /* dissertation 3.10: hold proposals while handing over */
    }
    if (len > r->o.max_msg_bytes) {
        return SINTER_ETOOBIG;
    }
    /* The cap protects followers and the leader's memory from a burst the cluster cannot commit.
     * One proposal is always admitted when nothing is pending, so a large entry cannot wedge. */
    uint64_t cap = r->o.max_uncommitted_bytes;
    if (cap != 0 && r->uncommitted_bytes > 0 && r->uncommitted_bytes + len > cap) {
        return SINTER_EBUSY;
    }
    uint64_t at = 0;
    int rc = raft__leader_append(r, SINTER_RAFT_ENTRY_NORMAL, data, len, &at);
    if (rc != SINTER_OK) {
        return rc;
    }
    r->uncommitted_bytes += len;
    raft__bcast_append(r);
    if (index != NULL) {
        *index = at;
    }
    if (term != NULL) {
        *term = r->term;
    }
    return SINTER_OK;
}

bool raft__send_append(struct sinter_raft *r, struct raft__progress *p, bool send_if_empty)
{
    if (p->id == r->id || raft__pr_is_paused(r, p)) {
        return false;
    }
    uint64_t last = raft__log_last_index(&r->log);
    if (p->next > last + 1) {
        p->next = last + 1;
    }
    uint64_t prev = p->next - 1;
    uint64_t prev_term = 0;
    if (!raft__log_term(&r->log, prev, &prev_term)) {
        /* The entries it needs were compacted: paper 7, InstallSnapshot. */
        raft__send_snapshot(r, p);
        return false;
    }
    /* Batching: as many entries as the caps allow, always at least one. */
    uint32_t n = 0;
    uint64_t bytes = 0;
    for (uint64_t i = p->next; i <= last && n < r->o.max_msg_entries; i++) {
        const struct sinter_raft_entry *e = raft__log_get(&r->log, i);
        if (n > 0 && bytes + e->len > r->o.max_msg_bytes) {
            break;
        }
        bytes += e->len;
        n++;
    }
    if (n == 0 && !send_if_empty) {
        return false;
    }
    if (n == 0 && p->state == RAFT__PR_REPLICATE && p->match >= r->log.base) {
        /* An empty append only carries the commit index. Anchor it at the acknowledged match,
         * not at next - 1: appends still in flight (or reordered) would make the follower
         * reject it and knock a healthy pipeline back to probing. */
        prev = p->match;
        raft__log_term(&r->log, prev, &prev_term);
    }
    struct sinter_raft_msg m = {
        .type = SINTER_RAFT_MSG_APPEND,
        .to = p->id,
        .index = prev,
        .log_term = prev_term,
        .commit = r->commit,
        .n_entries = n,
        .entries = n > 0 ? raft__log_get(&r->log, p->next) : NULL,
    };
    raft__send(r, &m, false);
    if (p->state == RAFT__PR_REPLICATE) {
        if (n > 0) {
            /* Pipelining: assume success and move on; a rejection rewinds to match + 1. */
            p->next = prev + n + 1;
            raft__pr_infl_add(r, p, prev + n);
        }
    } else {
        p->paused = true;
    }
    return n > 0;
}

void raft__bcast_append(struct sinter_raft *r)
{
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        struct raft__progress *p = &r->prs[i];
        if (p->used && p->id != r->id) {
            raft__send_append(r, p, true);
        }
    }
}

void raft__bcast_heartbeat(struct sinter_raft *r, uint64_t ctx)
{
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        struct raft__progress *p = &r->prs[i];
        if (!p->used || p->id == r->id) {
            continue;
        }
        /* Never tell a follower to commit beyond what it is known to share with us: its log may
         * still hold conflicting entries past `match`. */
        struct sinter_raft_msg m = {
            .type = SINTER_RAFT_MSG_HEARTBEAT,
            .to = p->id,
            .commit = p->match < r->commit ? p->match : r->commit,
            .context = ctx,
        };
        raft__send(r, &m, false);
    }
}

int raft__handle_append(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    struct sinter_raft_msg resp = {.type = SINTER_RAFT_MSG_APPEND_RESP, .to = m->from};
    if (m->index < r->commit) {
        /* Everything up to commit matches the leader (Log Matching); report it. */
        resp.index = r->commit;
        raft__send(r, &resp, true);
        return SINTER_OK;
    }
    uint64_t t = 0;
    if (!raft__log_term(&r->log, m->index, &t) || t != m->log_term) {
        /* Paper 5.3 consistency check failed. Hint: the last index at or below the rejected one
         * whose term is <= the leader's prev term, so the leader can skip a whole term at a
         * time instead of one entry per round trip. */
        uint64_t last = raft__log_last_index(&r->log);
        uint64_t hint = m->index < last ? m->index : last;
        hint = raft__log_find_conflict_by_term(&r->log, hint, m->log_term);
        uint64_t hint_term = 0;
        raft__log_term(&r->log, hint, &hint_term);
        resp.reject = true;
        resp.index = m->index;
        resp.reject_hint = hint;
        resp.hint_term = hint_term;
        raft__send(r, &resp, false);
        return SINTER_OK;
    }
    /* Skip the entries we already have; find the first conflict (paper figure 2, receiver 3). */
    uint32_t i = 0;
    bool conflict = false;
    for (; i < m->n_entries; i++) {
        uint64_t lt = 0;
        if (!raft__log_term(&r->log, m->entries[i].index, &lt)) {
            break;
        }
        if (lt != m->entries[i].term) {
            conflict = true;
            break;
        }
    }
    uint32_t rest = m->n_entries - i;
    if (conflict && m->entries[i].index <= r->commit) {
        return SINTER_EINTERNAL; /* would rewrite a committed entry: cannot happen in Raft */
    }
    bool has_config = conflict;
    if (rest > 0) {
        /* All allocations first, so SINTER_ENOMEM leaves the log untouched. */
        struct sinter_raft_entry *tmp = malloc(rest * sizeof *tmp);
        if (tmp == NULL) {
            return SINTER_ENOMEM;
        }
        if (raft__entries_copy(tmp, m->entries + i, rest) != SINTER_OK) {
            free(tmp);
            return SINTER_ENOMEM;
        }
        if (raft__log_reserve(&r->log, rest) != SINTER_OK) {
            for (uint32_t k = 0; k < rest; k++) {
                raft__buf_free(tmp[k].data);
            }
            free(tmp);
            return SINTER_ENOMEM;
        }
        if (conflict) {
            /* Paper figure 2, receiver 3: delete the conflicting entry and all that follow. */
            raft__log_truncate(r, m->entries[i].index);
        }
        for (uint32_t k = 0; k < rest; k++) {
            has_config = has_config || tmp[k].type == SINTER_RAFT_ENTRY_CONFIG;
            raft__log_push(&r->log, &tmp[k]);
        }
        free(tmp);
    }
    if (has_config) {
        raft__config_refresh(r);
    }
    uint64_t last_new = m->index + m->n_entries;
    uint64_t c = m->commit < last_new ? m->commit : last_new;
    if (c > r->commit) {
        r->commit = c;
    }
    resp.index = last_new;
    raft__send(r, &resp, true); /* promises the entries are durable: after persist */
    return SINTER_OK;
}

void raft__handle_append_resp(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return;
    }
    struct raft__progress *p = raft__pr_get(r, m->from);
    if (p == NULL) {
        return;
    }
    p->recent_active = true;
    if (m->reject) {
        uint64_t probe_last = m->reject_hint;
        if (m->hint_term > 0) {
            probe_last = raft__log_find_conflict_by_term(&r->log, m->reject_hint, m->hint_term);
        }
        if (raft__pr_maybe_decr(p, m->index, probe_last)) {
            if (p->state == RAFT__PR_REPLICATE) {
                raft__pr_become_probe(r, p);
            }
            raft__send_append(r, p, true);
        }
        return;
    }
    if (!raft__pr_maybe_update(p, m->index)) {
        return;
    }
    switch (p->state) {
    case RAFT__PR_PROBE:
        raft__pr_become_replicate(r, p);
        break;
    case RAFT__PR_SNAPSHOT:
        if (p->match >= p->pending_snapshot) {
            raft__pr_become_probe(r, p);
            raft__pr_become_replicate(r, p);
        }
        break;
    default:
        raft__pr_infl_free_to(p, m->index);
        break;
    }
    uint64_t old = r->commit;
    if (raft__maybe_commit(r)) {
        raft__bcast_append(r);
        raft__on_commit(r, old);
        if (r->role != SINTER_RAFT_LEADER) {
            return;
        }
    }
    while (raft__send_append(r, p, false)) {
    }
    raft__transfer_on_progress(r, p);
}

void raft__handle_heartbeat(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    uint64_t last = raft__log_last_index(&r->log);
    uint64_t c = m->commit < last ? m->commit : last;
    if (c > r->commit) {
        r->commit = c;
    }
    struct sinter_raft_msg resp = {
        .type = SINTER_RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .context = m->context};
    raft__send(r, &resp, false);
}

void raft__handle_heartbeat_resp(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return;
    }
    struct raft__progress *p = raft__pr_get(r, m->from);
    if (p == NULL) {
        return;
    }
    p->recent_active = true;
    if (m->context > p->read_ack) {
        p->read_ack = m->context;
    }
    uint64_t last = raft__log_last_index(&r->log);
    if (p->state == RAFT__PR_PROBE) {
        /* The probe or its answer may have been lost: try again. */
        p->paused = false;
        if (p->match < last) {
            raft__send_append(r, p, true);
        }
    } else if (p->state == RAFT__PR_REPLICATE) {
        /* Pipelined appends may have been lost with no later append to expose the gap. If the
         * follower made no progress over two heartbeat rounds, fall back to probing. */
        if (p->match < last && p->match == p->hb_match) {
            if (++p->stalls >= 2) {
                p->stalls = 0;
                raft__pr_become_probe(r, p);
                raft__send_append(r, p, true);
            }
        } else {
            p->stalls = 0;
        }
        p->hb_match = p->match;
    }
    raft__reads_on_ack(r);
}

bool raft__maybe_commit(struct sinter_raft *r)
{
    uint64_t v[SINTER_RAFT_MAX_SERVERS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->cfg.n; i++) {
        const struct sinter_raft_server *s = &r->cfg.servers[i];
        if (s->suffrage != SINTER_RAFT_VOTER) {
            continue;
        }
        uint64_t match = 0;
        if (s->id == r->id) {
            match = r->persisted;
        } else {
            const struct raft__progress *p = raft__pr_cget(r, s->id);
            match = p != NULL ? p->match : 0;
        }
        /* insertion sort, descending */
        uint32_t k = n++;
        while (k > 0 && v[k - 1] < match) {
            v[k] = v[k - 1];
            k--;
        }
        v[k] = match;
    }
    if (n == 0) {
        return false;
    }
    uint64_t candidate = v[raft__quorum(r) - 1];
    if (candidate <= r->commit) {
        return false;
    }
#ifndef SINTER_RAFT_BROKEN_COMMIT_TERM
    /* Paper 5.4.2 (figure 8): only an entry of the leader's current term is committed by
     * counting replicas; earlier entries commit indirectly, through it. */
    uint64_t t = 0;
    if (!raft__log_term(&r->log, candidate, &t) || t != r->term) {
        return false;
    }
#endif
    r->commit = candidate;
    return true;
}

void raft__on_commit(struct sinter_raft *r, uint64_t old_commit)
{
    for (uint64_t i = old_commit + 1; i <= r->commit; i++) {
        const struct sinter_raft_entry *e = raft__log_get(&r->log, i);
        if (e != NULL && e->term == r->term && e->type == SINTER_RAFT_ENTRY_NORMAL) {
            r->uncommitted_bytes -= e->len < r->uncommitted_bytes ? e->len : r->uncommitted_bytes;
        }
    }
    raft__reads_on_commit(r);
    raft__config_on_commit(r);
}
