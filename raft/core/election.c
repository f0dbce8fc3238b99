/*
 * Leader election (Raft paper 5.2) with the dissertation's additions: pre-vote (9.6) so a server
 * cut off from the cluster cannot inflate terms and disrupt it when it returns; check-quorum and
 * the followers' leader lease (4.2.3, 6.2) so a leader that lost its majority steps down and
 * servers that hear from a live leader ignore disruptive votes.
 */
#include <string.h>

#include "internal.h"

/* splitmix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for spreading timeouts, and
 * fully determined by the caller's seed. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Paper 5.2: randomised timeouts in [E, 2E) make split votes rare and resolve them quickly. */
void raft__reset_randomized_timeout(struct sinter_raft *r)
{
    uint32_t e = r->o.election_ticks;
    r->randomized_timeout = e + (uint32_t)(splitmix64(&r->prng) % e);
}

static void tally_reset(struct sinter_raft *r)
{
    r->n_granted = 0;
    r->n_rejected = 0;
}

static void reset(struct sinter_raft *r, uint64_t term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = 0;
    }
    r->leader = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    raft__reset_randomized_timeout(r);
    tally_reset(r);
    r->transfer_to = 0;
    r->transfer_elapsed = 0;
    r->timeout_now_sent = false;
}

void raft__become_follower(struct sinter_raft *r, uint64_t term, sinter_raft_id leader)
{
    bool was_leader = r->role == SINTER_RAFT_LEADER;
    reset(r, term);
    r->role = SINTER_RAFT_FOLLOWER;
    r->leader = leader;
    if (was_leader) {
        /* Dissertation 6.4: reads not yet confirmed can no longer be (we are not leader). */
        raft__reads_fail_all(r, SINTER_ENOTLEADER);
        r->uncommitted_bytes = 0;
    }
}

void raft__become_pre_candidate(struct sinter_raft *r)
{
    /* Term and vote stay: a pre-candidate promises nothing and changes no durable state. */
    r->role = SINTER_RAFT_PRE_CANDIDATE;
    r->leader = 0;
    r->election_elapsed = 0;
    raft__reset_randomized_timeout(r);
    tally_reset(r);
}

void raft__become_candidate(struct sinter_raft *r)
{
    reset(r, r->term + 1);
    r->vote = r->id;
    r->role = SINTER_RAFT_CANDIDATE;
}

void raft__become_leader(struct sinter_raft *r)
{
    r->role = SINTER_RAFT_LEADER;
    r->leader = r->id;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->uncommitted_bytes = 0;
    r->transfer_to = 0;
    r->timeout_now_sent = false;
    raft__pr_sync(r, true);
    /* Paper 5.4.2 and 8: a new leader commits an entry of its own term at once, which commits
     * everything before it and lets read-index and membership changes proceed. If the noop cannot
     * be allocated the leader simply has no current-term entry until the next proposal. */
    (void)raft__leader_append(r, SINTER_RAFT_ENTRY_NOOP, NULL, 0, NULL);
    raft__bcast_append(r);
}

/* Records a (pre-)vote answer from a voter; returns +1 won, -1 lost, 0 undecided. */
static int poll(struct sinter_raft *r, sinter_raft_id id, bool granted)
{
    if (!raft__is_voter(&r->cfg, id)) {
        return 0;
    }
    for (uint32_t i = 0; i < r->n_granted; i++) {
        if (r->granted[i] == id) {
            goto count;
        }
    }
    for (uint32_t i = 0; i < r->n_rejected; i++) {
        if (r->rejected[i] == id) {
            goto count;
        }
    }
    if (granted && r->n_granted < SINTER_RAFT_MAX_SERVERS) {
        r->granted[r->n_granted++] = id;
    } else if (!granted && r->n_rejected < SINTER_RAFT_MAX_SERVERS) {
        r->rejected[r->n_rejected++] = id;
    }
count:;
    uint32_t voters = sinter_raft_config_voters(&r->cfg);
    uint32_t q = raft__quorum(r);
    if (r->n_granted >= q) {
        return 1;
    }
    if (r->n_rejected > voters - q) {
        return -1;
    }
    return 0;
}

static void send_votes(struct sinter_raft *r, bool pre, bool transfer)
{
    for (uint32_t i = 0; i < r->cfg.n; i++) {
        const struct sinter_raft_server *s = &r->cfg.servers[i];
        if (s->id == r->id || s->suffrage != SINTER_RAFT_VOTER) {
            continue;
        }
        struct sinter_raft_msg m = {
            .type = pre ? SINTER_RAFT_MSG_PRE_VOTE : SINTER_RAFT_MSG_VOTE,
            .to = s->id,
            .term = pre ? r->term + 1 : r->term,
            .index = raft__log_last_index(&r->log),
            .log_term = raft__log_last_term(&r->log),
            .context = transfer ? 1 : 0,
        };
        raft__send(r, &m, false);
    }
}

void raft__campaign(struct sinter_raft *r, bool transfer)
{
    if (!raft__promotable(r)) {
        return;
    }
    bool pre = !transfer && r->o.pre_vote;
    if (pre) {
        raft__become_pre_candidate(r);
    } else {
        raft__become_candidate(r);
    }
    if (poll(r, r->id, true) > 0) {
        /* A single voter wins at once. */
        if (pre) {
            raft__campaign(r, true);
        } else {
            raft__become_leader(r);
        }
        return;
    }
    send_votes(r, pre, transfer);
}

void raft__tick_election(struct sinter_raft *r)
{
    if (r->election_elapsed < UINT32_MAX) {
        r->election_elapsed++;
    }
    if (raft__promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        r->election_elapsed = 0;
        raft__campaign(r, false);
    }
}

/* Check-quorum (dissertation 6.2): has a majority of voters been heard from in the last election
 * timeout? Clears the marks for the next round. */
static bool quorum_active(struct sinter_raft *r)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < r->cfg.n; i++) {
        const struct sinter_raft_server *s = &r->cfg.servers[i];
        if (s->suffrage != SINTER_RAFT_VOTER) {
            continue;
        }
        if (s->id == r->id) {
            active++;
            continue;
        }
        struct raft__progress *p = raft__pr_get(r, s->id);
        if (p != NULL && p->recent_active) {
            active++;
        }
    }
    for (size_t i = 0; i < SINTER_RAFT_MAX_SERVERS; i++) {
        if (r->prs[i].used && r->prs[i].id != r->id) {
            r->prs[i].recent_active = false;
        }
    }
    return active >= raft__quorum(r);
}

void raft__tick_leader(struct sinter_raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->o.election_ticks) {
        r->election_elapsed = 0;
        if (r->o.check_quorum && !quorum_active(r)) {
            raft__become_follower(r, r->term, 0);
            return;
        }
    }
    raft__transfer_tick(r);
    raft__reads_tick(r);
    raft__tick_snapshots(r);
    if (r->role != SINTER_RAFT_LEADER) {
        return;
    }
    if (raft__log_last_term(&r->log) != r->term &&
        raft__leader_append(r, SINTER_RAFT_ENTRY_NOOP, NULL, 0, NULL) == SINTER_OK) {
        /* The noop of become_leader() could not be allocated: retry, or reads and membership
         * changes would wait for the next proposal. */
        raft__bcast_append(r);
    }
    if (r->heartbeat_elapsed >= r->o.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        raft__bcast_heartbeat(r, r->read_round);
    }
}

bool raft__in_lease(const struct sinter_raft *r)
{
    return r->o.check_quorum && r->leader != 0 && r->election_elapsed < r->o.election_ticks;
}

void raft__handle_vote(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    bool pre = m->type == SINTER_RAFT_MSG_PRE_VOTE;
    uint32_t resp_type = pre ? SINTER_RAFT_MSG_PRE_VOTE_RESP : SINTER_RAFT_MSG_VOTE_RESP;
    /* Paper 5.2: one vote per term, first come first served; a pre-vote for a later term binds
     * nothing and may be granted freely. */
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);
    if (can_vote && raft__log_up_to_date(&r->log, m->index, m->log_term)) {
        struct sinter_raft_msg resp = {.type = resp_type, .to = m->from, .term = m->term};
        if (pre) {
            raft__send(r, &resp, false);
        } else {
            r->vote = m->from;
            r->election_elapsed = 0;
            /* The vote is a promise about stable storage: send it once it is durable. */
            raft__send(r, &resp, true);
        }
    } else {
        struct sinter_raft_msg resp = {
            .type = resp_type, .to = m->from, .term = r->term, .reject = true};
        raft__send(r, &resp, false);
    }
}

void raft__handle_vote_resp(struct sinter_raft *r, const struct sinter_raft_msg *m)
{
    bool pre = m->type == SINTER_RAFT_MSG_PRE_VOTE_RESP;
    if ((pre && r->role != SINTER_RAFT_PRE_CANDIDATE) ||
        (!pre && r->role != SINTER_RAFT_CANDIDATE)) {
        return;
    }
    int res = poll(r, m->from, !m->reject);
    if (res > 0) {
        if (pre) {
            /* Won the pre-vote: now a real election, with a real term increment. */
            raft__become_candidate(r);
            if (poll(r, r->id, true) > 0) {
                raft__become_leader(r);
                return;
            }
            send_votes(r, false, false);
        } else {
            raft__become_leader(r);
        }
    } else if (res < 0) {
        raft__become_follower(r, r->term, 0);
    }
}
