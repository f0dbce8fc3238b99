/*
 * raft/sim/sim.c — the run loop, the fault scheduler, the clients and the scripted scenarios.
 *
 * A step is one unit of simulated time (SIM_TICK steps make a Raft tick). Each step:
 *   1. the scheduler may inject a fault or heal, and clients may propose, read, change membership
 *      or transfer leadership;
 *   2. the network delivers every message due;
 *   3. each node's clock ticks (per-node skew, pauses, jumps);
 *   4. each host runs its ready loop (sends, unsynced writes, syncs that came due, applies);
 *   5. the checker runs (check.c), then the liveness monitor.
 *
 * The schedule alternates fault phases (30-150 ticks of partitions, crashes -- of any node, of
 * the leader, of a node in the middle of an fsync --, loss, duplication, slow links, term-selective
 * loss, slow disks, clock faults, membership changes, transfers) with heal phases (network healed,
 * every node restarted). A heal phase ends only when liveness is shown: a leader within
 * 10 election timeouts and a proposal made after the heal committed within 20. The laggard
 * profile (fault_laggard) changes the fault mix to hunt Raft paper Figure 8 with random seeds.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

enum { PHASE_HEAL = 0, PHASE_FAULT = 1 };

void sinter_sim_config_defaults(struct sinter_sim_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = 1;
    cfg->nodes = 3;
    cfg->steps = 10000;
    cfg->scenario = SINTER_SIM_RANDOM;
}

static uint64_t ticks(uint64_t n)
{
    return n * SIM_TICK;
}

/* ---- picking nodes ---- */

static struct sim_node *pick_leader(struct sim *s)
{
    int cand[SIM_MAX_NODES], n = 0;
    for (int i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].up && sinter_raft_role(s->nodes[i].r) == SINTER_RAFT_LEADER)
            cand[n++] = i;
    if (n == 0)
        return NULL;
    return &s->nodes[cand[sinter_sim_rng_below(&s->rng, (uint64_t)n)]];
}

static struct sim_node *pick_where(struct sim *s, bool up)
{
    int cand[SIM_MAX_NODES], n = 0;
    for (int i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].up == up)
            cand[n++] = i;
    if (n == 0)
        return NULL;
    return &s->nodes[cand[sinter_sim_rng_below(&s->rng, (uint64_t)n)]];
}

/* Clients mostly find the leader, sometimes knock on the wrong door. */
static struct sim_node *pick_target(struct sim *s)
{
    struct sim_node *n = NULL;
    if (sinter_sim_rng_chance(&s->rng, 9, 10))
        n = pick_leader(s);
    return n ? n : pick_where(s, true);
}

/* ---- clients ---- */

static int client_propose(struct sim *s, struct sim_node *n)
{
    uint8_t buf[40];
    uint64_t w = ++s->next_write;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(w >> (8 * i));
    uint32_t len = 8 + (uint32_t)sinter_sim_rng_below(&s->rng, 25);
    for (uint32_t i = 8; i < len; i++)
        buf[i] = (uint8_t)sinter_sim_rng_next(&s->rng);
    uint64_t idx = 0, term = 0;
    n->touched = true;
    int rc = sinter_raft_propose(n->r, buf, len, &idx, &term);
    sinter_sim_ev(s, EV_PROPOSE, n->slot, 0, w, (uint64_t)rc, idx, term);
    if (rc == SINTER_OK) {
        if (s->phase == PHASE_HEAL && !s->heal_ok) {
            int k = s->n_probe++ % 8;
            s->probe_index[k] = idx;
            s->probe_term[k] = term;
        }
    } else if (rc != SINTER_ENOTLEADER && rc != SINTER_EBUSY) {
        sinter_sim_fail(s, "node %llu: propose failed unexpectedly: %s", (unsigned long long)n->id,
                        sinter_errname(rc));
    }
    return rc;
}

static int push_read(struct sim *s, const struct sim_read *r)
{
    if (s->n_reads == s->cap_reads) {
        size_t cap = s->cap_reads ? s->cap_reads * 2 : 32;
        struct sim_read *v = realloc(s->reads, cap * sizeof(*v));
        if (!v)
            return SINTER_ENOMEM;
        s->reads = v;
        s->cap_reads = cap;
    }
    s->reads[s->n_reads++] = *r;
    return SINTER_OK;
}

static void client_read(struct sim *s, struct sim_node *n)
{
    uint64_t ctx = ++s->next_ctx;
    n->touched = true;
    int rc = sinter_raft_read_index(n->r, ctx);
    sinter_sim_ev(s, EV_READ, n->slot, 0, ctx, (uint64_t)rc, s->chk.max_committed, 0);
    if (rc == SINTER_OK) {
        struct sim_read r = {.ctx = ctx,
                             .slot = n->slot,
                             .inc = n->inc,
                             .need = s->chk.max_committed,
                             .start = s->now};
        if (push_read(s, &r) != SINTER_OK)
            sinter_sim_fail(s, "simulator out of memory");
    } else if (rc != SINTER_ENOTLEADER && rc != SINTER_EBUSY) {
        sinter_sim_fail(s, "node %llu: read_index failed unexpectedly: %s",
                        (unsigned long long)n->id, sinter_errname(rc));
    }
}

/* Membership changes on the leader, one server at a time (dissertation 4.1): add a learner (a
 * spare, or a removed server coming back), promote a learner, remove a learner or a voter
 * (including the leader itself, dissertation 4.2.2). At least min(3, founders) voters remain, so
 * a healed cluster can always elect a leader. */
static void client_conf(struct sim *s)
{
    struct sim_node *n = pick_leader(s);
    if (!n)
        return;
    struct sinter_raft_config cfg;
    sinter_raft_configuration(n->r, &cfg);
    uint32_t voters = sinter_raft_config_voters(&cfg);
    uint32_t min_voters = s->cfg.nodes < 3 ? s->cfg.nodes : 3;
    sinter_raft_id ids[3 * SIM_MAX_NODES];
    int changes[3 * SIM_MAX_NODES], k = 0;
    for (int i = 0; i < s->n_nodes; i++) {
        sinter_raft_id id = s->nodes[i].id;
        int at = sinter_raft_config_find(&cfg, id);
        if (at < 0) {
            ids[k] = id;
            changes[k++] = SINTER_RAFT_ADD_LEARNER;
            if (sinter_sim_rng_chance(&s->rng, 1, 4)) {
                ids[k] = id;
                changes[k++] = SINTER_RAFT_ADD_VOTER;
            }
        } else if (cfg.servers[at].suffrage == SINTER_RAFT_LEARNER) {
            ids[k] = id;
            changes[k++] = SINTER_RAFT_ADD_VOTER;
            ids[k] = id;
            changes[k++] = SINTER_RAFT_REMOVE;
        } else if (voters > min_voters && !(voters == 2 && id == n->id)) {
            /* Not the leader out of a 2-voter configuration: if it steps down before the other
             * voter has the new configuration, that voter needs its vote and never gets it
             * (FINDINGS.md F6). */
            ids[k] = id;
            changes[k++] = SINTER_RAFT_REMOVE;
        }
    }
    if (k == 0)
        return;
    int pick = (int)sinter_sim_rng_below(&s->rng, (uint64_t)k);
    uint64_t idx = 0;
    n->touched = true;
    int rc = sinter_raft_change_member(n->r, ids[pick], changes[pick], &idx);
    sinter_sim_ev(s, EV_CONF, n->slot, (uint32_t)changes[pick], ids[pick], (uint64_t)rc, idx, 0);
    if (rc == SINTER_OK)
        s->res->conf_changes++;
    else if (rc != SINTER_ECONFCHANGE && rc != SINTER_EBUSY)
        sinter_sim_fail(s, "node %llu: change_member(%s %llu) failed unexpectedly: %s",
                        (unsigned long long)n->id,
                        changes[pick] == SINTER_RAFT_REMOVE ? "remove" : "add",
                        (unsigned long long)ids[pick], sinter_errname(rc));
}

static void client_transfer(struct sim *s)
{
    struct sim_node *n = pick_leader(s);
    if (!n)
        return;
    struct sinter_raft_config cfg;
    sinter_raft_configuration(n->r, &cfg);
    sinter_raft_id cand[SINTER_RAFT_MAX_SERVERS];
    int k = 0;
    for (uint32_t i = 0; i < cfg.n; i++)
        if (cfg.servers[i].suffrage == SINTER_RAFT_VOTER && cfg.servers[i].id != n->id)
            cand[k++] = cfg.servers[i].id;
    if (k == 0)
        return;
    sinter_raft_id to = 0;
    if (sinter_sim_rng_chance(&s->rng, 4, 5))
        to = cand[sinter_sim_rng_below(&s->rng, (uint64_t)k)];
    n->touched = true;
    int rc = sinter_raft_transfer(n->r, to);
    sinter_sim_ev(s, EV_TRANSFER, n->slot, 0, to, (uint64_t)rc, 0, 0);
    if (rc == SINTER_OK)
        s->res->transfers++;
    else if (rc != SINTER_EBUSY)
        sinter_sim_fail(s, "node %llu: transfer(%llu) failed unexpectedly: %s",
                        (unsigned long long)n->id, (unsigned long long)to, sinter_errname(rc));
}

/* ---- faults ---- */

static void block_pair(struct sim *s, int a, int b, bool both)
{
    s->link[a][b].blocked = true;
    if (both)
        s->link[b][a].blocked = true;
}

static void isolate(struct sim *s, int a, bool on)
{
    for (int i = 0; i < s->n_nodes; i++)
        if (i != a) {
            s->link[a][i].blocked = on;
            s->link[i][a].blocked = on;
        }
}

static void heal_all(struct sim *s)
{
    sinter_sim_net_heal(s);
    sinter_sim_ev(s, EV_HEAL, -1, 0, 0, 0, 0, 0);
    for (int i = 0; i < s->n_nodes && !s->failed; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->up)
            sinter_sim_node_start(s, n);
        n->paused_until = 0;
        n->tick_period = SIM_TICK;
        if (n->sync_max > 3)
            n->sync_max = 3;
    }
}

static void clock_ticks(struct sim_node *n, uint64_t k)
{
    n->touched = true;
    for (uint64_t i = 0; i < k; i++)
        sinter_raft_tick(n->r);
}

static void fault(struct sim *s)
{
    int nn = s->n_nodes;
    uint64_t et = s->election_ticks;
    switch (sinter_sim_rng_below(&s->rng, 19)) {
    case 18: { /* term-selective loss (Figure 8's ingredient): the leader's APPENDs to one
                * follower lose the entries of the leader's own term, older ones get through */
        struct sim_node *l = pick_leader(s);
        int f = (int)sinter_sim_rng_below(&s->rng, (uint64_t)nn);
        if (l && f != l->slot) {
            s->filter = (struct sim_filter){true, l->slot, f, sinter_raft_term(l->r) - 1};
            sinter_sim_ev(s, EV_LINK, l->slot, 1, (uint64_t)(f + 1) << 32, 0, 0, 0);
        }
        break;
    }
    case 16:
    case 17: { /* crash in the middle of an fsync: the node's unsynced write is (partly) lost */
        int cand[SIM_MAX_NODES], k = 0;
        for (int i = 0; i < nn; i++)
            if (s->nodes[i].up && s->nodes[i].rd_out && s->nodes[i].disk.pending)
                cand[k++] = i;
        if (k == 0)
            break;
        struct sim_node *n = &s->nodes[cand[sinter_sim_rng_below(&s->rng, (uint64_t)k)]];
        sinter_sim_node_crash(s, n);
        if (sinter_sim_rng_chance(&s->rng, 1, 2))
            sinter_sim_node_start(s, n);
        break;
    }
    case 0:
    case 1:
    case 2: { /* crash */
        struct sim_node *n = pick_where(s, true);
        if (n)
            sinter_sim_node_crash(s, n);
        break;
    }
    case 3:
    case 4: { /* restart */
        struct sim_node *n = pick_where(s, false);
        if (n)
            sinter_sim_node_start(s, n);
        break;
    }
    case 5: { /* crash and restart at once: only the unsynced write is lost */
        struct sim_node *n = pick_where(s, true);
        if (n) {
            sinter_sim_node_crash(s, n);
            sinter_sim_node_start(s, n);
        }
        break;
    }
    case 6:
    case 7: { /* symmetric partition into two random sides */
        uint64_t mask = sinter_sim_rng_next(&s->rng) & ((1ull << nn) - 1);
        for (int i = 0; i < nn; i++)
            for (int j = 0; j < nn; j++)
                s->link[i][j].blocked = i != j && (((mask >> i) ^ (mask >> j)) & 1);
        sinter_sim_ev(s, EV_PART, -1, 0, mask, 0, 0, 0);
        break;
    }
    case 8: { /* isolate one node */
        int a = (int)sinter_sim_rng_below(&s->rng, (uint64_t)nn);
        isolate(s, a, true);
        sinter_sim_ev(s, EV_PART, a, 0, 1ull << a, 0, 0, 0);
        break;
    }
    case 9: { /* one-way cuts */
        int cuts = 1 + (int)sinter_sim_rng_below(&s->rng, 3);
        for (int c = 0; c < cuts; c++) {
            int a = (int)sinter_sim_rng_below(&s->rng, (uint64_t)nn);
            int b = (int)sinter_sim_rng_below(&s->rng, (uint64_t)nn);
            if (a != b) {
                block_pair(s, a, b, false);
                sinter_sim_ev(s, EV_PART, a, 0, 1ull << b, 1, 0, 0);
            }
        }
        break;
    }
    case 10: /* heal the network only */
        for (int i = 0; i < nn; i++)
            for (int j = 0; j < nn; j++)
                s->link[i][j].blocked = false;
        sinter_sim_ev(s, EV_HEAL, -1, 1, 0, 0, 0, 0);
        break;
    case 11: { /* lossy, duplicating, slow, reordering links */
        bool all = sinter_sim_rng_chance(&s->rng, 1, 3);
        int a = (int)sinter_sim_rng_below(&s->rng, (uint64_t)nn);
        uint16_t loss = (uint16_t)sinter_sim_rng_below(&s->rng, 300);
        uint16_t dup = (uint16_t)sinter_sim_rng_below(&s->rng, 100);
        uint16_t dmin = (uint16_t)(1 + sinter_sim_rng_below(&s->rng, 3));
        uint16_t dmax = (uint16_t)(dmin + sinter_sim_rng_below(&s->rng, 25));
        for (int i = 0; i < nn; i++)
            for (int j = 0; j < nn; j++)
                if (all || i == a || j == a) {
                    s->link[i][j].loss = loss;
                    s->link[i][j].dup = dup;
                    s->link[i][j].dmin = dmin;
                    s->link[i][j].dmax = dmax;
                }
        sinter_sim_ev(s, EV_LINK, all ? -1 : a, 0, (uint64_t)(a + 1) << 32 | loss, dup, dmin, dmax);
        break;
    }
    case 12: { /* clock jump: a burst of ticks at once */
        struct sim_node *n = pick_where(s, true);
        if (n) {
            uint64_t k = 1 + sinter_sim_rng_below(&s->rng, 2 * et);
            sinter_sim_ev(s, EV_CLOCK, n->slot, 0, k, 0, 0, 0);
            clock_ticks(n, k);
        }
        break;
    }
    case 13: { /* clock pause, or skew */
        struct sim_node *n = pick_where(s, true);
        if (!n)
            break;
        if (sinter_sim_rng_chance(&s->rng, 1, 2)) {
            uint64_t k = 1 + sinter_sim_rng_below(&s->rng, 2 * et);
            n->paused_until = s->now + ticks(k);
            sinter_sim_ev(s, EV_CLOCK, n->slot, 1, k, 0, 0, 0);
        } else {
            n->tick_period = (uint32_t)(SIM_TICK - 2 + sinter_sim_rng_below(&s->rng, 6));
        }
        break;
    }
    case 14: { /* slow disk */
        struct sim_node *n = pick_where(s, true);
        if (n)
            n->sync_max = (uint32_t)sinter_sim_rng_below(&s->rng, 16);
        break;
    }
    default: /* leader-targeted crash: the most disruptive single fault */
    {
        struct sim_node *n = pick_leader(s);
        if (n)
            sinter_sim_node_crash(s, n);
        break;
    }
    }
}

/* ---- the laggard profile ----
 * Why the default mix does not find Figure 8 (paper 5.4.2) on a core that commits an old-term
 * entry by counting replicas: the bug shows only when a majority holds an entry X of an older term
 * but NOT the current leader's own no-op right behind it, and that majority then lets a leader
 * without X win. The no-op follows X in the same APPEND (max_msg_entries >= 2) or one pipelined
 * message later (1..3 steps on a healthy link), so the window is a few steps, and it must then
 * outlive an election. The default term-selective loss (fault() case 18) pins the term of the
 * leader at install time, so it strips X itself or needs to be installed in those few steps.
 * Random masks over nodes and spares rarely give the three leader-targeted partitions in a row
 * Figure 8 needs. Here a minority of followers are laggards (net.c filter_strip: an APPEND to
 * one loses the entries of the APPEND's own term, whoever leads) and the usual fault is to cut the
 * current leader off alone: leader A appends X alone; B wins with the laggards (its no-op never
 * reaches them); B is cut off, A wins with the laggards and hands them X but not its no-op; A is
 * cut off, B (last term above X's) wins with the laggards again and overwrites X. */
static void pick_laggards(struct sim *s)
{
    struct sim_node *l = pick_leader(s);
    int cand[SIM_MAX_NODES], k = 0;
    if (l) {
        struct sinter_raft_config cfg;
        sinter_raft_configuration(l->r, &cfg);
        for (uint32_t i = 0; i < cfg.n; i++) {
            struct sim_node *n = sinter_sim_node_by_id(s, cfg.servers[i].id);
            if (n && n != l && cfg.servers[i].suffrage == SINTER_RAFT_VOTER)
                cand[k++] = n->slot;
        }
    } else {
        for (int i = 0; i < (int)s->cfg.nodes; i++)
            cand[k++] = i;
    }
    /* floor(V/2) of the V voters: never a majority on their own, but one with either the leader
     * A or any other voter B, which is all each of Figure 8's elections needs. */
    int want = l ? (k + 1) / 2 : k / 2;
    s->laggards = 0;
    for (int i = 0; i < want; i++) {
        int j = i + (int)sinter_sim_rng_below(&s->rng, (uint64_t)(k - i));
        int t = cand[i];
        cand[i] = cand[j];
        cand[j] = t;
        s->laggards |= 1u << cand[i];
    }
    sinter_sim_ev(s, EV_LINK, -1, 2, s->laggards, 0, 0, 0);
}

static void fault_laggard(struct sim *s)
{
    switch (sinter_sim_rng_below(&s->rng, 10)) {
    case 0:
    case 1:
    case 2:
    case 3: { /* cut the current leader off alone; every other link comes back */
        struct sim_node *l = pick_leader(s);
        int a = l ? l->slot : (int)sinter_sim_rng_below(&s->rng, (uint64_t)s->n_nodes);
        for (int i = 0; i < s->n_nodes; i++)
            for (int j = 0; j < s->n_nodes; j++)
                s->link[i][j].blocked = false;
        isolate(s, a, true);
        sinter_sim_ev(s, EV_PART, a, 0, 1ull << a, 0, 0, 0);
        break;
    }
    case 4: /* heal the links (the laggards stay laggards) */
        for (int i = 0; i < s->n_nodes; i++)
            for (int j = 0; j < s->n_nodes; j++)
                s->link[i][j].blocked = false;
        sinter_sim_ev(s, EV_HEAL, -1, 1, 0, 0, 0, 0);
        break;
    case 5: { /* crash the leader: the other way a leader's own entries stay local */
        struct sim_node *n = pick_leader(s);
        if (n)
            sinter_sim_node_crash(s, n);
        break;
    }
    case 6: { /* restart */
        struct sim_node *n = pick_where(s, false);
        if (n)
            sinter_sim_node_start(s, n);
        break;
    }
    default: /* anything else from the broad mix */
        fault(s);
        break;
    }
}

/* ---- the schedule ---- */

static void start_heal(struct sim *s)
{
    s->phase = PHASE_HEAL;
    s->heal_start = s->now;
    s->leader_at = 0;
    s->heal_ok = false;
    s->n_probe = 0;
    s->phase_end = UINT64_MAX;
    sinter_sim_ev(s, EV_PHASE, -1, 0, 0, 0, 0, 0);
    heal_all(s);
}

static void clients(struct sim *s, bool writes, bool admin)
{
    if (writes && sinter_sim_rng_chance(&s->rng, 1, 6)) {
        struct sim_node *n = pick_target(s);
        if (n)
            client_propose(s, n);
    }
    if (sinter_sim_rng_chance(&s->rng, 1, 12)) {
        struct sim_node *n = pick_target(s);
        if (n)
            client_read(s, n);
    }
    if (admin && sinter_sim_rng_chance(&s->rng, 1, 120))
        client_conf(s);
    if (admin && sinter_sim_rng_chance(&s->rng, 1, 250))
        client_transfer(s);
}

static void schedule_random(struct sim *s)
{
    if (s->now >= s->phase_end) {
        if (s->phase == PHASE_HEAL) {
            s->phase = PHASE_FAULT;
            s->phase_end = s->now + ticks(30 + sinter_sim_rng_below(&s->rng, 120));
            sinter_sim_ev(s, EV_PHASE, -1, 1, s->phase_end, 0, 0, 0);
            if (s->cfg.profile == SINTER_SIM_PROFILE_LAGGARD)
                pick_laggards(s);
        } else {
            start_heal(s);
        }
    }
    if (s->phase == PHASE_FAULT && sinter_sim_rng_chance(&s->rng, 1, 20)) {
        if (s->cfg.profile == SINTER_SIM_PROFILE_LAGGARD)
            fault_laggard(s);
        else
            fault(s);
    }
    clients(s, true, s->phase == PHASE_FAULT || s->heal_ok);
}

/* ---- scripted scenario: Raft paper Figure 8 ----
 * Nodes A, B, C. (0) a stable leader A; isolate A and let it append X at index i in its term.
 * (1) B is elected by B and C; the moment it leads, isolate it, so its own entry at i (its no-op)
 * stays local. (2) reconnect A and C, but drop every APPEND from A to C that carries an entry of a
 * term above X's: A is elected again and can bring C up to X (max_msg_entries is 1) but never to
 * its current-term no-op. A correct leader must not commit X then: X is on a majority, but it is
 * not from the leader's term (paper 5.4.2). (3) If A commits X anyway, isolate A and reconnect B
 * and C: B (last term above X's) wins and overwrites X, which the checker flags. (9) heal. */
static bool all_caught_up(struct sim *s, struct sim_node *l)
{
    uint64_t last = sinter_raft_last_index(l->r);
    for (int i = 0; i < s->n_nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->up || sinter_raft_last_index(n->r) != last ||
            sinter_raft_commit_index(n->r) != last)
            return false;
    }
    return true;
}

static void schedule_figure8(struct sim *s)
{
    uint64_t et = s->election_ticks;
    struct sim_node *l = NULL;
    switch (s->sc_state) {
    case 0:
        clients(s, true, false);
        if (!s->heal_ok || s->now < ticks(40))
            break;
        l = pick_leader(s);
        if (!l || !all_caught_up(s, l))
            break;
        s->sc_a = l->slot;
        isolate(s, l->slot, true);
        if (client_propose(s, l) != SINTER_OK) {
            isolate(s, l->slot, false);
            break;
        }
        s->sc_index = sinter_raft_last_index(l->r);
        s->sc_term = sinter_raft_term(l->r);
        sinter_sim_note(s, l->slot, "figure8: A isolated with X at (%llu, term %llu)",
                        (unsigned long long)s->sc_index, (unsigned long long)s->sc_term);
        s->sc_state = 1;
        s->sc_since = s->now;
        s->phase = PHASE_FAULT;
        break;
    case 1:
        for (int i = 0; i < s->n_nodes; i++) {
            struct sim_node *n = &s->nodes[i];
            if (i != s->sc_a && n->up && sinter_raft_role(n->r) == SINTER_RAFT_LEADER &&
                sinter_raft_term(n->r) > s->sc_term)
                l = n;
        }
        if (l) {
            s->sc_b = l->slot;
            s->sc_c = 3 - s->sc_a - s->sc_b;
            isolate(s, s->sc_b, true);
            s->link[s->sc_a][s->sc_c].blocked = false;
            s->link[s->sc_c][s->sc_a].blocked = false;
            s->filter = (struct sim_filter){true, s->sc_a, s->sc_c, s->sc_term};
            sinter_sim_note(s, l->slot, "figure8: B leads term %llu, isolated; A-C reconnected",
                            (unsigned long long)sinter_raft_term(l->r));
            s->sc_state = 2;
            s->sc_since = s->now;
        } else if (s->now - s->sc_since > ticks(30 * et)) {
            s->sc_state = 9;
        }
        break;
    case 2: {
        struct sim_node *a = &s->nodes[s->sc_a];
        if (a->up && sinter_raft_role(a->r) == SINTER_RAFT_LEADER &&
            sinter_raft_commit_index(a->r) >= s->sc_index) {
            sinter_sim_note(s, a->slot, "figure8: A committed X in term %llu: isolate A",
                            (unsigned long long)sinter_raft_term(a->r));
            isolate(s, s->sc_a, true);
            s->link[s->sc_b][s->sc_c].blocked = false;
            s->link[s->sc_c][s->sc_b].blocked = false;
            s->filter.on = false;
            s->sc_state = 3;
            s->sc_since = s->now;
        } else if (s->now - s->sc_since > ticks(15 * et)) {
            s->sc_state = 9;
        }
        break;
    }
    case 3:
        if (s->now - s->sc_since > ticks(30 * et))
            s->sc_state = 9;
        break;
    case 9:
        sinter_sim_note(s, -1, "figure8: heal");
        start_heal(s);
        s->sc_state = 10;
        break;
    default:
        clients(s, true, false);
        break;
    }
}

/* ---- liveness ---- */

static void liveness(struct sim *s)
{
    if (s->phase != PHASE_HEAL || s->heal_ok)
        return;
    uint64_t et = s->election_ticks;
    uint64_t elapsed = s->now - s->heal_start;
    if (!s->leader_at) {
        if (pick_leader(s))
            s->leader_at = s->now;
        else if (elapsed > ticks(10 * et))
            sinter_sim_fail_liveness(s, "no leader within %llu ticks after the faults healed",
                                     (unsigned long long)(10 * et));
        return;
    }
    for (int k = 0; k < s->n_probe && k < 8; k++)
        if (sinter_sim_check_is_committed(s, s->probe_index[k], s->probe_term[k])) {
            s->heal_ok = true;
            s->res->heals++;
            s->phase_end = s->now + ticks(10 + sinter_sim_rng_below(&s->rng, 30));
            return;
        }
    if (elapsed > ticks(20 * et))
        sinter_sim_fail_liveness(s,
                                 "no proposal made after the faults healed committed within %llu "
                                 "ticks (leader seen at step %llu)",
                                 (unsigned long long)(20 * et), (unsigned long long)s->leader_at);
}

/* Reads must be answered: the core promises SINTER_ETIMEOUT after read_timeout_ticks. */
static void read_deadlines(struct sim *s)
{
    uint64_t bound = ticks(10 * s->election_ticks);
    for (size_t i = 0; i < s->n_reads; i++) {
        const struct sim_read *r = &s->reads[i];
        const struct sim_node *n = &s->nodes[r->slot];
        if (s->now - r->start > bound && n->paused_until < r->start && n->up) {
            sinter_sim_fail_liveness(s,
                                     "read ctx=%llu started on node %llu at step %llu was neither "
                                     "answered nor served within %llu ticks",
                                     (unsigned long long)r->ctx, (unsigned long long)n->id,
                                     (unsigned long long)r->start,
                                     (unsigned long long)(bound / SIM_TICK));
            return;
        }
    }
}

/* ---- the run ---- */

static void profile(struct sim *s)
{
    static const uint32_t ents[] = {1, 2, 8, 64};
    static const uint32_t infl[] = {1, 4, 64};
    /* max_msg_entries 1 with max_inflight 1 replicates one entry per round trip, below the
     * clients' write rate, so liveness bounds would measure the backlog, not the protocol. */
    s->election_ticks = 10;
    s->snap_every = 8 + (uint32_t)sinter_sim_rng_below(&s->rng, 40);
    s->snap_trailing = (uint32_t)sinter_sim_rng_below(&s->rng, 16);
    s->torn_pm = 300;
    s->max_msg_entries = ents[sinter_sim_rng_below(&s->rng, 4)];
    s->max_inflight = infl[sinter_sim_rng_below(&s->rng, 3)];
    s->pre_vote = sinter_sim_rng_chance(&s->rng, 9, 10);
    s->check_quorum = sinter_sim_rng_chance(&s->rng, 9, 10);
    /* Overridden after the draws so the rest of the seed's run stays the same stream. */
    if (s->cfg.max_msg_entries)
        s->max_msg_entries = s->cfg.max_msg_entries;
    if (s->max_msg_entries == 1 && s->max_inflight == 1)
        s->max_inflight = 4;
    if (s->cfg.scenario == SINTER_SIM_FIGURE8) {
        s->max_msg_entries = 1;
        s->max_inflight = 64;
        s->pre_vote = true;
        s->check_quorum = true;
        s->snap_every = 1000;
    }
}

static void step(struct sim *s)
{
    if (s->cfg.scenario == SINTER_SIM_FIGURE8)
        schedule_figure8(s);
    else
        schedule_random(s);
    if (s->failed)
        return;
    sinter_sim_net_deliver(s);
    for (int i = 0; i < s->n_nodes && !s->failed; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->up || n->paused_until > s->now)
            continue;
        while (n->next_tick <= s->now) {
            n->touched = true;
            sinter_raft_tick(n->r);
            n->next_tick += n->tick_period;
        }
    }
    for (int i = 0; i < s->n_nodes && !s->failed; i++)
        sinter_sim_node_process(s, &s->nodes[i]);
    if (s->failed)
        return;
    sinter_sim_check_step(s);
    if (s->failed)
        return;
    liveness(s);
    read_deadlines(s);
}

/* One line per node: what the core and the disk hold, to read a failure without a replay. */
static void print_nodes(struct sim *s)
{
    for (int i = 0; i < s->n_nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        fprintf(s->out, "  n%d: ", i + 1);
        if (!n->up) {
            fprintf(s->out, "down (durable term %llu vote %llu, snapshot %llu, %zu entries)\n",
                    (unsigned long long)n->disk.hs.term, (unsigned long long)n->disk.hs.vote,
                    (unsigned long long)n->disk.snap.index, n->disk.log.n);
            continue;
        }
        struct sinter_raft_config cfg;
        sinter_raft_configuration(n->r, &cfg);
        fprintf(
            s->out,
            "%s term=%llu vote=%llu leader=%llu log=%llu..%llu (last term %llu) commit=%llu "
            "applied=%llu config=[",
            sinter_raft_role_name(sinter_raft_role(n->r)),
            (unsigned long long)sinter_raft_term(n->r), (unsigned long long)sinter_raft_vote(n->r),
            (unsigned long long)sinter_raft_leader(n->r),
            (unsigned long long)sinter_raft_first_index(n->r),
            (unsigned long long)sinter_raft_last_index(n->r),
            (unsigned long long)sinter_raft_last_term(n->r),
            (unsigned long long)sinter_raft_commit_index(n->r), (unsigned long long)n->sm.index);
        for (uint32_t k = 0; k < cfg.n; k++)
            fprintf(s->out, "%s%llu%s", k ? " " : "", (unsigned long long)cfg.servers[k].id,
                    cfg.servers[k].suffrage == SINTER_RAFT_LEARNER ? "L" : "");
        fprintf(s->out, "]\n");
    }
}

static void print_failure(struct sim *s)
{
    const struct sinter_sim_config *c = &s->cfg;
    fprintf(s->out, "%s seed=%llu step=%llu: %s\n", s->liveness_failed ? "LIVENESS" : "VIOLATION",
            (unsigned long long)c->seed, (unsigned long long)s->now, s->why);
    print_nodes(s);
    sinter_sim_print_tail(s);
    fprintf(s->out, "  replay: raft-sim --nodes %u --steps %llu --seed %llu%s%s", c->nodes,
            (unsigned long long)c->steps, (unsigned long long)c->seed,
            c->scenario == SINTER_SIM_FIGURE8 ? " --scenario figure8" : "",
            c->profile == SINTER_SIM_PROFILE_LAGGARD ? " --profile laggard" : "");
    if (c->max_msg_entries)
        fprintf(s->out, " --max-msg-entries %u", c->max_msg_entries);
    fprintf(s->out, "\n");
}

int sinter_sim_run(const struct sinter_sim_config *cfg, struct sinter_sim_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!cfg || cfg->nodes < 1 || cfg->nodes + SIM_SPARES > SIM_MAX_NODES || cfg->steps == 0 ||
        (cfg->scenario != SINTER_SIM_RANDOM && cfg->scenario != SINTER_SIM_FIGURE8) ||
        (cfg->scenario == SINTER_SIM_FIGURE8 && cfg->nodes != 3) ||
        (cfg->profile != SINTER_SIM_PROFILE_DEFAULT &&
         cfg->profile != SINTER_SIM_PROFILE_LAGGARD) ||
        (cfg->scenario == SINTER_SIM_FIGURE8 && cfg->profile != SINTER_SIM_PROFILE_DEFAULT))
        return SINTER_EINVAL;
    struct sim *s = calloc(1, sizeof(*s));
    if (!s)
        return SINTER_ENOMEM;
    s->cfg = *cfg;
    s->out = cfg->out ? cfg->out : stdout;
    s->res = res;
    sinter_sim_rng_seed(&s->rng, cfg->seed);
    sinter_sim_check_init(&s->chk);
    profile(s);
    int rc = SINTER_OK;
    s->n_nodes = (int)cfg->nodes + (cfg->scenario == SINTER_SIM_FIGURE8 ? 0 : SIM_SPARES);
    s->founders.n = 0;
    for (uint32_t i = 0; i < cfg->nodes; i++)
        sinter_raft_config_add(&s->founders, i + 1, SINTER_RAFT_VOTER);
    for (int i = 0; i < s->n_nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        n->id = (sinter_raft_id)(i + 1);
        n->slot = i;
        n->founder = (uint32_t)i < cfg->nodes;
        n->tick_period = SIM_TICK;
        n->sync_max = 2;
        n->cache = calloc(SIM_CACHE, sizeof(*n->cache));
        if (!n->cache) {
            rc = SINTER_ENOMEM;
            goto out;
        }
    }
    sinter_sim_net_heal(s);
    if (s->cfg.verbose || s->cfg.trace)
        fprintf(s->out,
                "seed=%llu nodes=%u%s: snap_every=%u trailing=%u max_msg_entries=%u "
                "max_inflight=%u pre_vote=%d check_quorum=%d\n",
                (unsigned long long)cfg->seed, cfg->nodes,
                cfg->profile == SINTER_SIM_PROFILE_LAGGARD ? " profile=laggard" : "", s->snap_every,
                s->snap_trailing, s->max_msg_entries, s->max_inflight, s->pre_vote,
                s->check_quorum);
    start_heal(s);
    for (s->now = 1; s->now <= cfg->steps && !s->failed; s->now++)
        step(s);
    if (s->failed) {
        res->violation = true;
        res->liveness = s->liveness_failed;
        res->step = s->now;
        print_failure(s);
    } else {
        res->step = cfg->steps;
    }
    if (s->cfg.verbose)
        fprintf(s->out,
                "seed=%llu %s: steps=%llu term=%llu leaders=%llu commit=%llu crashes=%llu "
                "lost_writes=%llu snapshots=%llu installs=%llu reads=%llu conf=%llu "
                "transfers=%llu heals=%llu msgs=%llu\n",
                (unsigned long long)cfg->seed, s->failed ? "FAIL" : "ok",
                (unsigned long long)res->step, (unsigned long long)res->max_term,
                (unsigned long long)res->leaders, (unsigned long long)res->commits,
                (unsigned long long)res->crashes, (unsigned long long)res->lost_writes,
                (unsigned long long)res->snapshots, (unsigned long long)res->installs,
                (unsigned long long)res->reads, (unsigned long long)res->conf_changes,
                (unsigned long long)res->transfers, (unsigned long long)res->heals,
                (unsigned long long)res->msgs);
out:
    for (int i = 0; i < s->n_nodes; i++)
        sinter_sim_node_free(&s->nodes[i]);
    sinter_sim_net_free(s);
    sinter_sim_check_free(&s->chk);
    free(s->reads);
    free(s);
    return rc;
}
