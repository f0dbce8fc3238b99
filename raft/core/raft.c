/*
 * The core's public entry points: construction, restore, message dispatch with the term rules of
 * the Raft paper (figure 2, "Rules for Servers"), the ready/advance protocol and introspection.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Upper bound on options.max_inflight, so a typo cannot make the core allocate gigabytes. */
#define MAX_INFLIGHT_CAP 4096

void sinter_raft_options_defaults(struct sinter_raft_options *opts, sinter_raft_id id)
{
    memset(opts, 0, sizeof *opts);
    opts->id = id;
    opts->election_ticks = 10;
    opts->heartbeat_ticks = 1;
    opts->seed = id;
    opts->pre_vote = true;
    opts->check_quorum = true;
    opts->max_msg_entries = 256;
    opts->max_msg_bytes = 1u << 20;
    opts->max_inflight = 64;
    opts->max_uncommitted_bytes = 64u << 20;
    opts->read_timeout_ticks = 20;
}

int sinter_raft_new(struct sinter_raft **out, const struct sinter_raft_options *opts)
{
    if (out == NULL || opts == NULL || opts->id == 0) {
        return SINTER_EINVAL;
    }
    struct sinter_raft_options o = *opts;
    /* Zero means "default" for the sizes and timers (zero is never a sensible value for them). */
    if (o.election_ticks == 0) {
        o.election_ticks = 10;
    }
    if (o.heartbeat_ticks == 0) {
        o.heartbeat_ticks = 1;
    }
    if (o.max_msg_entries == 0) {
        o.max_msg_entries = 256;
    }
    if (o.max_msg_bytes == 0) {
        o.max_msg_bytes = 1u << 20;
    }
    if (o.max_inflight == 0) {
        o.max_inflight = 64;
    }
    if (o.read_timeout_ticks == 0) {
        o.read_timeout_ticks = 2 * o.election_ticks;
    }
    if (o.heartbeat_ticks >= o.election_ticks || o.election_ticks > UINT32_MAX / 2 ||
        o.max_inflight > MAX_INFLIGHT_CAP) {
        return SINTER_EINVAL;
    }
    struct sinter_raft *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return SINTER_ENOMEM;
    }
    r->infl_buf = calloc((size_t)SINTER_RAFT_MAX_SERVERS * o.max_inflight, sizeof(uint64_t));
    if (r->infl_buf == NULL) {
        free(r);
        return SINTER_ENOMEM;
    }
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        r->prs[i].infl = r->infl_buf + i * o.max_inflight;
    }
    r->o = o;
    r->id = o.id;
    r->role = SINTER_RAFT_FOLLOWER;
    r->unstable_from = 1;
    r->prng = o.seed;
    raft__reset_randomized_timeout(r);
    *out = r;
    return SINTER_OK;
}

static void msgq_release(struct raft__msgq *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->v[i].entries);
    }
    q->n = 0;
}

static void msgq_free(struct raft__msgq *q)
{
    msgq_release(q);
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

static int msgq_reserve(struct raft__msgq *q, size_t n)
{
    if (q->n + n <= q->cap) {
        return SINTER_OK;
    }
    size_t cap = q->cap ? q->cap : 16;
    while (cap < q->n + n) {
        cap *= 2;
    }
    struct sinter_raft_msg *v = realloc(q->v, cap * sizeof *v);
    if (v == NULL) {
        return SINTER_ENOMEM;
    }
    q->v = v;
    q->cap = cap;
    return SINTER_OK;
}

void sinter_raft_close(struct sinter_raft *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->log.n; i++) {
        raft__buf_free(r->log.e[i].data);
    }
    free(r->log.e);
    msgq_free(&r->msgs);
    msgq_free(&r->msgs_after);
    msgq_free(&r->rd_msgs);
    msgq_free(&r->rd_after);
    free(r->rd_entries);
    free(r->rd_committed);
    free(r->rd_reads);
    free(r->reads);
    free(r->reads_out);
    free(r->infl_buf);
    raft__buf_free_list(r->trash_new);
    raft__buf_free_list(r->trash_old);
    free(r);
}

/* ---- shared helpers ---------------------------------------------------------------------- */

void raft__send(struct sinter_raft *r, struct sinter_raft_msg *m, bool after_persist)
{
    struct raft__msgq *q = after_persist ? &r->msgs_after : &r->msgs;
    m->from = r->id;
    if (m->term == 0) {
        m->term = r->term;
    }
    struct sinter_raft_entry *copy = NULL;
    if (m->n_entries > 0) {
        copy = malloc(m->n_entries * sizeof *copy);
        if (copy == NULL) {
            return; /* dropped: the protocol recovers from lost messages */
        }
        memcpy(copy, m->entries, m->n_entries * sizeof *copy);
    }
    if (msgq_reserve(q, 1) != SINTER_OK) {
        free(copy);
        return;
    }
    m->entries = copy;
    q->v[q->n++] = *m;
}

bool raft__is_voter(const struct sinter_raft_config *cfg, sinter_raft_id id)
{
    int i = sinter_raft_config_find(cfg, id);
    return i >= 0 && cfg->servers[i].suffrage == SINTER_RAFT_VOTER;
}

uint32_t raft__quorum(const struct sinter_raft *r)
{
    return sinter_raft_config_voters(&r->cfg) / 2 + 1;
}

/* May this server campaign? A voter of the latest configuration may. So may a server whose own
 * removal is still uncommitted (it was a voter just before): it counts votes under the new
 * configuration, without itself, and if it wins it only commits its removal and steps down
 * (dissertation 4.2.2). Without this, a removed leader that lost leadership before its removal
 * committed can wedge a cluster that needs its vote, e.g. voters {1, 3} removing 1 while 3 still
 * has {1, 3} and 1 refuses to vote for 3's shorter log (raft/sim FINDINGS F6). Any majority of
 * the new configuration overlaps any majority of the previous one, so election safety holds. */
bool raft__promotable(const struct sinter_raft *r)
{
    if (raft__is_voter(&r->cfg, r->id)) {
        return true;
    }
    return r->cfg_index > r->commit && r->voter_before_cfg;
}

/* ---- bootstrap and restore --------------------------------------------------------------- */

static bool fresh(const struct sinter_raft *r)
{
    return r->term == 0 && raft__log_last_index(&r->log) == 0 && r->snap.index == 0;
}

int sinter_raft_bootstrap(struct sinter_raft *r, const struct sinter_raft_config *config)
{
    if (r == NULL || config == NULL) {
        return SINTER_EINVAL;
    }
    if (!fresh(r)) {
        return SINTER_ESTATE;
    }
    if (!raft__config_valid(config) || sinter_raft_config_voters(config) == 0) {
        return SINTER_EINVAL;
    }
    uint8_t buf[SINTER_RAFT_CONFIG_MAX_BYTES];
    uint32_t len = (uint32_t)sinter_raft_config_encode(config, buf);
    struct sinter_raft_entry e = {.term = 1, .index = 1, .type = SINTER_RAFT_ENTRY_CONFIG};
    e.len = len;
    e.data = raft__buf_alloc(len);
    if (e.data == NULL || raft__log_reserve(&r->log, 1) != SINTER_OK) {
        raft__buf_free(e.data);
        return SINTER_ENOMEM;
    }
    memcpy(e.data, buf, len);
    raft__log_push(&r->log, &e);
    /* Term 1 so that term >= last log term holds from the start (the entry is term 1). */
    r->term = 1;
    raft__config_refresh(r);
    return SINTER_OK;
}

static bool entry_valid(const struct sinter_raft_entry *e)
{
    if (e->type < SINTER_RAFT_ENTRY_NORMAL || e->type > SINTER_RAFT_ENTRY_NOOP) {
        return false;
    }
    if (e->len > 0 && e->data == NULL) {
        return false;
    }
    if (e->type == SINTER_RAFT_ENTRY_CONFIG) {
        struct sinter_raft_config c;
        if (sinter_raft_config_decode(&c, e->data, e->len) != SINTER_OK) {
            return false;
        }
    }
    return true;
}

int sinter_raft_restore(struct sinter_raft *r, const struct sinter_raft_snapshot_meta *snapshot,
                        const struct sinter_raft_hard_state *hs,
                        const struct sinter_raft_entry *entries, size_t n_entries, uint64_t applied)
{
    if (r == NULL || (n_entries > 0 && entries == NULL)) {
        return SINTER_EINVAL;
    }
    if (!fresh(r) || r->vote != 0) {
        return SINTER_ESTATE;
    }
    struct sinter_raft_snapshot_meta snap;
    memset(&snap, 0, sizeof snap);
    if (snapshot != NULL) {
        snap = *snapshot;
        if (!raft__config_valid(&snap.config) || snap.config_index > snap.index ||
            (snap.index > 0 && snap.term == 0)) {
            return SINTER_EINVAL;
        }
    }
    struct sinter_raft_hard_state h = {0, 0, 0};
    if (hs != NULL) {
        h = *hs;
    }
    uint64_t prev_term = snap.term;
    for (size_t i = 0; i < n_entries; i++) {
        const struct sinter_raft_entry *e = &entries[i];
        if (e->index != snap.index + 1 + i || e->term < prev_term || !entry_valid(e)) {
            return SINTER_EINVAL;
        }
        prev_term = e->term;
    }
    uint64_t last = snap.index + n_entries;
    if (prev_term > h.term || applied < snap.index || applied > last) {
        return SINTER_EINVAL;
    }
    if (raft__log_reserve(&r->log, n_entries) != SINTER_OK) {
        return SINTER_ENOMEM;
    }
    if (raft__entries_copy(r->log.e, entries, n_entries) != SINTER_OK) {
        return SINTER_ENOMEM;
    }
    r->log.n = n_entries;
    r->log.base = snap.index;
    r->log.base_term = snap.term;
    r->log.base_cfg = snap.config;
    r->log.base_cfg_index = snap.config_index;
    r->snap = snap;
    r->term = h.term;
    r->vote = h.vote;
    /* The persisted commit is a hint; it can only be trusted up to what we hold. */
    uint64_t commit = h.commit < last ? h.commit : last;
    if (commit < applied) {
        commit = applied;
    }
    r->commit = commit;
    r->applied = r->apply_handed = applied;
    r->persisted = last;
    r->unstable_from = last + 1;
    r->hs_handed.term = r->term;
    r->hs_handed.vote = r->vote;
    r->hs_handed.commit = r->commit;
    raft__config_refresh(r);
    raft__become_follower(r, r->term, 0);
    return SINTER_OK;
}

/* ---- events ------------------------------------------------------------------------------ */

void sinter_raft_tick(struct sinter_raft *r)
{
    if (r->role == SINTER_RAFT_LEADER) {
        raft__tick_leader(r);
    } else {
        raft__tick_election(r);
    }
}

static int validate(const struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    if (m == NULL || m->type < SINTER_RAFT_MSG_APPEND || m->type > SINTER_RAFT_MSG_TYPE_MAX) {
        return SINTER_EINVAL;
    }
    if (m->from == 0 || m->from == r->id || (m->to != 0 && m->to != r->id) || m->term == 0) {
        return SINTER_EINVAL;
    }
    if (m->n_entries > 0 && (m->entries == NULL || m->type != SINTER_RAFT_MSG_APPEND)) {
        return SINTER_EINVAL;
    }
    if (m->type == SINTER_RAFT_MSG_APPEND) {
        if (m->log_term > m->term || m->index > UINT64_MAX - m->n_entries) {
            return SINTER_EINVAL;
        }
        uint64_t prev_term = m->log_term;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct sinter_raft_entry *e = &m->entries[i];
            if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term ||
                !entry_valid(e)) {
                return SINTER_EINVAL;
            }
            prev_term = e->term;
        }
    }
    if (m->type == SINTER_RAFT_MSG_VOTE || m->type == SINTER_RAFT_MSG_PRE_VOTE) {
        if (m->log_term > m->term) {
            return SINTER_EINVAL;
        }
    }
    if (m->type == SINTER_RAFT_MSG_SNAPSHOT) {
        const struct sinter_raft_snapshot_meta *s = &m->snapshot;
        if (s->index == 0 || s->term == 0 || s->term > m->term || s->config_index > s->index ||
            !raft__config_valid(&s->config)) {
            return SINTER_EINVAL;
        }
    }
    return SINTER_OK;
}

int sinter_raft_step(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    int rc = validate(r, m);
    if (rc != SINTER_OK) {
        return rc;
    }
    bool leader_msg = m->type == SINTER_RAFT_MSG_APPEND || m->type == SINTER_RAFT_MSG_HEARTBEAT ||
                      m->type == SINTER_RAFT_MSG_SNAPSHOT;
    if (m->term > r->term) {
        if (m->type == SINTER_RAFT_MSG_VOTE || m->type == SINTER_RAFT_MSG_PRE_VOTE) {
            /* Leader lease (dissertation 4.2.3): a server that hears from a live leader ignores
             * requests to replace it, unless the request comes from a leadership transfer. */
            bool forced = m->type == SINTER_RAFT_MSG_VOTE && m->context == 1;
            if (!forced && raft__in_lease(r)) {
                return SINTER_OK;
            }
        }
        if (m->type == SINTER_RAFT_MSG_PRE_VOTE) {
            /* A pre-vote never changes our term: that is its point (dissertation 9.6). */
        } else if (m->type == SINTER_RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
            /* A granted pre-vote carries the term we would campaign in; not a newer term. */
        } else if (m->type == SINTER_RAFT_MSG_VOTE && r->role != SINTER_RAFT_LEADER) {
            /* Paper figure 2: only hearing from the leader or granting a vote resets the
             * election timer; a higher term alone does not. Otherwise, with pre-vote off, stale
             * candidates keep resetting the up-to-date servers' timers and no electable server
             * ever campaigns (FINDINGS F4). handle_vote resets it if the vote is granted. */
            uint32_t elapsed = r->election_elapsed;
            uint32_t timeout = r->randomized_timeout;
            raft__become_follower(r, m->term, 0);
            r->election_elapsed = elapsed;
            r->randomized_timeout = timeout;
        } else {
            raft__become_follower(r, m->term, leader_msg ? m->from : 0);
        }
    } else if (m->term < r->term) {
        if ((r->o.check_quorum || r->o.pre_vote) &&
            (m->type == SINTER_RAFT_MSG_APPEND || m->type == SINTER_RAFT_MSG_HEARTBEAT)) {
            /* A stale leader (e.g. back from a partition) would otherwise never learn the new
             * term: with pre-vote or check-quorum no one disrupts it with a higher-term vote. */
            struct sinter_raft_msg resp = {.type = SINTER_RAFT_MSG_APPEND_RESP, .to = m->from};
            raft__send(r, &resp, false);
        } else if (m->type == SINTER_RAFT_MSG_PRE_VOTE || m->type == SINTER_RAFT_MSG_VOTE) {
            /* Paper figure 2: a stale RequestVote is answered with our term so the candidate
             * learns it. Dropping it silently (etcd does, relying on pre-vote and check-quorum)
             * lets a candidate in a lower term campaign forever when both are off, because the
             * servers in higher terms never talk to it (raft/sim FINDINGS F7). */
            struct sinter_raft_msg resp = {.type = m->type == SINTER_RAFT_MSG_VOTE
                                                       ? SINTER_RAFT_MSG_VOTE_RESP
                                                       : SINTER_RAFT_MSG_PRE_VOTE_RESP,
                                           .to = m->from,
                                           .reject = true};
            raft__send(r, &resp, false);
        }
        return SINTER_OK;
    }

    switch (m->type) {
    case SINTER_RAFT_MSG_APPEND:
    case SINTER_RAFT_MSG_HEARTBEAT:
    case SINTER_RAFT_MSG_SNAPSHOT:
        if (r->role == SINTER_RAFT_LEADER) {
            return SINTER_OK; /* two leaders in one term cannot happen (paper 5.2); ignore */
        }
        if (r->role != SINTER_RAFT_FOLLOWER || r->leader != m->from) {
            raft__become_follower(r, r->term, m->from);
        }
        r->election_elapsed = 0;
        if (m->type == SINTER_RAFT_MSG_APPEND) {
            return raft__handle_append(r, m);
        }
        if (m->type == SINTER_RAFT_MSG_HEARTBEAT) {
            raft__handle_heartbeat(r, m);
            return SINTER_OK;
        }
        return raft__handle_snapshot(r, m);
    case SINTER_RAFT_MSG_APPEND_RESP:
        raft__handle_append_resp(r, m);
        return SINTER_OK;
    case SINTER_RAFT_MSG_HEARTBEAT_RESP:
        raft__handle_heartbeat_resp(r, m);
        return SINTER_OK;
    case SINTER_RAFT_MSG_VOTE:
    case SINTER_RAFT_MSG_PRE_VOTE:
        raft__handle_vote(r, m);
        return SINTER_OK;
    case SINTER_RAFT_MSG_VOTE_RESP:
    case SINTER_RAFT_MSG_PRE_VOTE_RESP:
        raft__handle_vote_resp(r, m);
        return SINTER_OK;
    case SINTER_RAFT_MSG_TIMEOUT_NOW:
        /* Dissertation 3.10: the target starts an election at once, skipping pre-vote (the
         * leader vouches for it) and flagging its votes so voters disregard their lease. */
        if (r->role != SINTER_RAFT_LEADER && raft__promotable(r)) {
            raft__campaign(r, true);
        }
        return SINTER_OK;
    default:
        return SINTER_EINVAL;
    }
}

/* ---- ready / advance --------------------------------------------------------------------- */

static uint64_t apply_limit(const struct sinter_raft *r)
{
    return r->commit < r->persisted ? r->commit : r->persisted;
}

/* The commit index to persist as a hint. It is clipped to entries that were durable before this
 * ready (persisted drops below a conflicting suffix as soon as it is truncated): the host may
 * write the hard state before the entries, and a crash in between must not leave a hint pointing
 * at a stale entry that is still on disk (raft/sim FINDINGS F3). Never lowered. */
static uint64_t hs_commit(const struct sinter_raft *r)
{
    uint64_t c = r->commit < r->persisted ? r->commit : r->persisted;
    return c > r->hs_handed.commit ? c : r->hs_handed.commit;
}

static bool hs_changed(const struct sinter_raft *r)
{
    return r->hs_handed.term != r->term || r->hs_handed.vote != r->vote ||
           r->hs_handed.commit != hs_commit(r);
}

bool sinter_raft_has_ready(const struct sinter_raft *r)
{
    if (r == NULL || r->ready_out) {
        return false;
    }
    return r->msgs.n > 0 || r->msgs_after.n > 0 ||
           r->unstable_from <= raft__log_last_index(&r->log) || r->snap_pending || hs_changed(r) ||
           apply_limit(r) > r->apply_handed || r->n_reads_out > 0;
}

int sinter_raft_ready(struct sinter_raft *r, struct sinter_raft_ready *rd)
{
    if (r->ready_out) {
        return SINTER_EBUSY;
    }
    memset(rd, 0, sizeof *rd);
    uint64_t last = raft__log_last_index(&r->log);
    size_t n_ent = r->unstable_from <= last ? (size_t)(last - r->unstable_from + 1) : 0;
    uint64_t hi = apply_limit(r);
    size_t n_com = hi > r->apply_handed ? (size_t)(hi - r->apply_handed) : 0;
    bool term_dirty = r->hs_handed.term != r->term || r->hs_handed.vote != r->vote;

    /* Allocate everything first so that SINTER_ENOMEM leaves the core as it was. */
    struct sinter_raft_entry *ents = NULL;
    struct sinter_raft_entry *com = NULL;
    if (n_ent > 0 && (ents = malloc(n_ent * sizeof *ents)) == NULL) {
        return SINTER_ENOMEM;
    }
    if (n_com > 0 && (com = malloc(n_com * sizeof *com)) == NULL) {
        free(ents);
        return SINTER_ENOMEM;
    }
    struct sinter_raft_read_state *rs = NULL;
    if (r->n_reads_out > 0 && (rs = malloc(r->n_reads_out * sizeof *rs)) == NULL) {
        free(ents);
        free(com);
        return SINTER_ENOMEM;
    }
    if (term_dirty && msgq_reserve(&r->msgs_after, r->msgs.n) != SINTER_OK) {
        free(ents);
        free(com);
        free(rs);
        return SINTER_ENOMEM;
    }
    for (size_t i = 0; i < n_ent; i++) {
        ents[i] = *raft__log_get(&r->log, r->unstable_from + i);
    }
    for (size_t i = 0; i < n_com; i++) {
        com[i] = *raft__log_get(&r->log, r->apply_handed + 1 + i);
    }
    if (term_dirty && r->msgs.n > 0) {
        /* A new term or vote must be durable before anything we say in it is heard: a leader or
         * candidate that crashed before persisting it could otherwise vote again in that term
         * after restarting (paper 5.1, figure 2 "persistent state"). */
        memcpy(r->msgs_after.v + r->msgs_after.n, r->msgs.v, r->msgs.n * sizeof *r->msgs.v);
        r->msgs_after.n += r->msgs.n;
        r->msgs.n = 0;
    }

    /* A SNAPSHOT queued before the host's latest compaction names the older snapshot, which the
     * host may no longer keep: name the newest instead, never worse for the follower (FINDINGS
     * F1). */
    for (size_t i = 0; i < r->msgs.n; i++) {
        struct sinter_raft_msg *m = &r->msgs.v[i];
        if (m->type == SINTER_RAFT_MSG_SNAPSHOT && r->snap.index > m->snapshot.index) {
            m->snapshot = r->snap;
        }
    }
    for (size_t i = 0; i < r->msgs_after.n; i++) {
        struct sinter_raft_msg *m = &r->msgs_after.v[i];
        if (m->type == SINTER_RAFT_MSG_SNAPSHOT && r->snap.index > m->snapshot.index) {
            m->snapshot = r->snap;
        }
    }

    rd->role = r->role;
    rd->leader = r->leader;
    rd->term = r->term;

    struct raft__msgq t = r->rd_msgs;
    r->rd_msgs = r->msgs;
    r->msgs = t;
    t = r->rd_after;
    r->rd_after = r->msgs_after;
    r->msgs_after = t;
    rd->msgs = r->rd_msgs.v;
    rd->n_msgs = r->rd_msgs.n;
    rd->msgs_after_persist = r->rd_after.v;
    rd->n_msgs_after_persist = r->rd_after.n;

    r->ready_had_snap = r->snap_pending;
    if (r->snap_pending) {
        rd->snapshot_dirty = true;
        rd->snapshot = r->snap;
        r->ready_snap_index = r->snap.index;
        r->snap_pending = false;
    }
    if (hs_changed(r)) {
        rd->hard_state_dirty = true;
    }
    rd->hard_state.term = r->term;
    rd->hard_state.vote = r->vote;
    rd->hard_state.commit = hs_commit(r);
    r->hs_handed = rd->hard_state;

    free(r->rd_entries);
    r->rd_entries = ents;
    rd->entries = ents;
    rd->n_entries = n_ent;
    r->ready_last = last;
    r->unstable_from = last + 1;

    free(r->rd_committed);
    r->rd_committed = com;
    rd->committed = com;
    rd->n_committed = n_com;
    r->apply_handed += n_com;
    r->ready_applied = r->apply_handed;

    free(r->rd_reads);
    r->rd_reads = rs;
    r->rd_n_reads = r->n_reads_out;
    if (rs != NULL) {
        memcpy(rs, r->reads_out, r->n_reads_out * sizeof *rs);
    }
    rd->reads = rs;
    rd->n_reads = r->n_reads_out;
    r->n_reads_out = 0;

    /* Buffers dropped before this ready can be freed at its advance (see raft__buf). */
    if (r->trash_new != NULL) {
        struct raft__buf *tail = r->trash_new;
        while (tail->next != NULL) {
            tail = tail->next;
        }
        tail->next = r->trash_old;
        r->trash_old = r->trash_new;
        r->trash_new = NULL;
    }
    r->ready_out = true;
    return SINTER_OK;
}

void sinter_raft_advance(struct sinter_raft *r, const struct sinter_raft_ready *rd)
{
    (void)rd;
    if (!r->ready_out) {
        return;
    }
    r->ready_out = false;
    if (r->ready_last > r->persisted) {
        r->persisted = r->ready_last;
    }
    if (r->ready_had_snap) {
        if (r->ready_snap_index > r->persisted) {
            r->persisted = r->ready_snap_index;
        }
        if (r->ready_snap_index > r->applied) {
            r->applied = r->ready_snap_index;
        }
        r->ready_had_snap = false;
    }
    if (r->ready_applied > r->applied) {
        r->applied = r->ready_applied;
    }
    msgq_release(&r->rd_msgs);
    msgq_release(&r->rd_after);
    free(r->rd_entries);
    r->rd_entries = NULL;
    free(r->rd_committed);
    r->rd_committed = NULL;
    free(r->rd_reads);
    r->rd_reads = NULL;
    r->rd_n_reads = 0;
    raft__buf_free_list(r->trash_old);
    r->trash_old = NULL;

    if (r->role == SINTER_RAFT_LEADER) {
        /* The leader counts itself only for entries that are durable (paper 5.3 with
         * dissertation 10.2.1: it may replicate before its own write completes). */
        struct raft__progress *self = raft__pr_get(r, r->id);
        if (self != NULL) {
            raft__pr_maybe_update(self, r->persisted);
        }
        uint64_t old = r->commit;
        if (raft__maybe_commit(r)) {
            raft__bcast_append(r);
            raft__on_commit(r, old);
        }
    }
}

/* ---- introspection ----------------------------------------------------------------------- */

sinter_raft_id sinter_raft_self(const struct sinter_raft *r)
{
    return r->id;
}

uint32_t sinter_raft_role(const struct sinter_raft *r)
{
    return r->role;
}

sinter_raft_id sinter_raft_leader(const struct sinter_raft *r)
{
    return r->leader;
}

uint64_t sinter_raft_term(const struct sinter_raft *r)
{
    return r->term;
}

sinter_raft_id sinter_raft_vote(const struct sinter_raft *r)
{
    return r->vote;
}

uint64_t sinter_raft_commit_index(const struct sinter_raft *r)
{
    return r->commit;
}

uint64_t sinter_raft_applied_index(const struct sinter_raft *r)
{
    return r->applied;
}

uint64_t sinter_raft_first_index(const struct sinter_raft *r)
{
    return r->log.base + 1;
}

uint64_t sinter_raft_last_index(const struct sinter_raft *r)
{
    return raft__log_last_index(&r->log);
}

uint64_t sinter_raft_last_term(const struct sinter_raft *r)
{
    return raft__log_last_term(&r->log);
}

void sinter_raft_snapshot(const struct sinter_raft *r, struct sinter_raft_snapshot_meta *meta)
{
    *meta = r->snap;
}

int sinter_raft_entry_at(const struct sinter_raft *r, uint64_t index,
                         const struct sinter_raft_entry **e)
{
    if (index > raft__log_last_index(&r->log) || index == 0) {
        return SINTER_ENOTFOUND;
    }
    if (index <= r->log.base) {
        return SINTER_ECOMPACTED;
    }
    *e = raft__log_get(&r->log, index);
    return SINTER_OK;
}

void sinter_raft_configuration(const struct sinter_raft *r, struct sinter_raft_config *cfg)
{
    *cfg = r->cfg;
}

uint64_t sinter_raft_match_index(const struct sinter_raft *r, sinter_raft_id id)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return 0;
    }
    if (id == r->id) {
        return r->persisted;
    }
    const struct raft__progress *p = raft__pr_cget(r, id);
    return p != NULL ? p->match : 0;
}

bool sinter_raft_peer_active(const struct sinter_raft *r, sinter_raft_id id)
{
    if (r->role != SINTER_RAFT_LEADER) {
        return false;
    }
    if (id == r->id) {
        return true;
    }
    const struct raft__progress *p = raft__pr_cget(r, id);
    return p != NULL && p->recent_active;
}

const char *sinter_raft_role_name(uint32_t role)
{
    switch (role) {
    case SINTER_RAFT_FOLLOWER:
        return "follower";
    case SINTER_RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case SINTER_RAFT_CANDIDATE:
        return "candidate";
    case SINTER_RAFT_LEADER:
        return "leader";
    default:
        return "unknown";
    }
}

const char *sinter_raft_msg_name(uint32_t type)
{
    static const char *const names[] = {
        "unknown",       "append",    "append-resp",    "vote",     "vote-resp",   "pre-vote",
        "pre-vote-resp", "heartbeat", "heartbeat-resp", "snapshot", "timeout-now",
    };
    return type <= SINTER_RAFT_MSG_TYPE_MAX ? names[type] : "unknown";
}
