/*
 * raft/sim/net.c — the in-memory network.
 *
 * Every message is deep-copied at send time (the core owns its buffers only until the next call)
 * and queued with a delivery step drawn from its link's delay range, so messages on one link
 * overtake each other (reordering). A link can lose or duplicate messages and can be blocked in
 * one direction or both (partitions). A message in flight when its link is cut is lost, as on a
 * real network where the connection breaks. SNAPSHOT messages carry the sender's snapshot data
 * beside the core's message, as sinter/raft.h says the host must.
 *
 * Transport feedback mirrors what a real transport can know: a send over a cut link may report
 * the peer unreachable, and every SNAPSHOT send ends with sinter_raft_report_snapshot() (delivered
 * or not) so the leader never waits forever on a snapshot that vanished.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

static bool msg_before(const struct sim_netmsg *a, const struct sim_netmsg *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int heap_push(struct sim *s, struct sim_netmsg *m)
{
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 256;
        struct sim_netmsg **h = realloc(s->heap, cap * sizeof(*h));
        if (!h)
            return SINTER_ENOMEM;
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!msg_before(m, s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = m;
    return SINTER_OK;
}

static struct sim_netmsg *heap_pop(struct sim *s)
{
    struct sim_netmsg *top = s->heap[0];
    struct sim_netmsg *last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct sim_netmsg *best = last;
        if (l < n && msg_before(s->heap[l], best)) {
            m = l;
            best = s->heap[l];
        }
        if (r < n && msg_before(s->heap[r], best))
            m = r;
        if (m == i)
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

/* One allocation holds the message, its entry array and all entry data. */
static struct sim_netmsg *msg_copy(const struct sinter_raft_msg *m)
{
    size_t data = 0;
    for (uint32_t i = 0; i < m->n_entries; i++)
        data += m->entries[i].len;
    size_t sz =
        sizeof(struct sim_netmsg) + (size_t)m->n_entries * sizeof(struct sinter_raft_entry) + data;
    struct sim_netmsg *c = malloc(sz);
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->m = *m;
    struct sinter_raft_entry *ents = (struct sinter_raft_entry *)(c + 1);
    uint8_t *p = (uint8_t *)(ents + m->n_entries);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        ents[i] = m->entries[i];
        if (m->entries[i].len) {
            memcpy(p, m->entries[i].data, m->entries[i].len);
            ents[i].data = p;
            p += m->entries[i].len;
        } else {
            ents[i].data = NULL;
        }
    }
    c->m.entries = m->n_entries ? ents : NULL;
    return c;
}

static void report_snap(struct sim *s, int slot, uint32_t inc, sinter_raft_id to, bool ok)
{
    struct sim_node *n = &s->nodes[slot];
    if (n->up && n->inc == inc) {
        n->touched = true;
        sinter_raft_report_snapshot(n->r, to, ok);
    }
}

/* Persistence before promise (raft.h step 3; Raft paper 5.1-5.4): a granted vote and an append
 * acknowledgement promise state on stable storage, so when the host sends one, the disk's DURABLE
 * part (not the unsynced write) must already hold it. A core that put these messages in rd.msgs
 * instead of rd.msgs_after_persist would double-vote or lose acknowledged entries after a crash;
 * this catches it at the send, without waiting for an unlucky crash. */
static void check_promise(struct sim *s, struct sim_node *from, const struct sinter_raft_msg *m)
{
    const struct sim_disk *d = &from->disk;
    /* raft.h: term and vote are durable before any message that depends on them. Every message
     * but a pre-vote (which names the term its sender would campaign in) speaks for its term. */
    if (m->type != SINTER_RAFT_MSG_PRE_VOTE && m->type != SINTER_RAFT_MSG_PRE_VOTE_RESP &&
        m->term > d->hs.term) {
        sinter_sim_fail(
            s, "persistence: node %llu sent a %s of term %llu while its durable term is %llu",
            (unsigned long long)from->id, sinter_raft_msg_name(m->type),
            (unsigned long long)m->term, (unsigned long long)d->hs.term);
        return;
    }
    if (m->type == SINTER_RAFT_MSG_VOTE_RESP && !m->reject) {
        if (d->hs.term < m->term || (d->hs.term == m->term && d->hs.vote != m->to))
            sinter_sim_fail(s,
                            "persistence: node %llu granted its vote in term %llu to %llu before "
                            "that was durable (durable term %llu, vote %llu)",
                            (unsigned long long)from->id, (unsigned long long)m->term,
                            (unsigned long long)m->to, (unsigned long long)d->hs.term,
                            (unsigned long long)d->hs.vote);
    } else if (m->type == SINTER_RAFT_MSG_APPEND_RESP && !m->reject) {
        uint64_t last = d->has_snap ? d->snap.index : 0;
        if (d->log.n && d->log.e[d->log.n - 1].index > last)
            last = d->log.e[d->log.n - 1].index;
        if (m->index > last) {
            sinter_sim_fail(s,
                            "persistence: node %llu acknowledged entries up to %llu but only %llu "
                            "are durable",
                            (unsigned long long)from->id, (unsigned long long)m->index,
                            (unsigned long long)last);
            return;
        }
        /* The acknowledged entry on disk must be the leader's: the ack names the leader's term,
         * not the entry's, so compare with the entry the leader of that term holds now, when it
         * still leads and holds it. (The follower's in-memory log may already have moved on:
         * this ack can belong to a ready completed after a newer leader rewrote the entry.) */
        if (!d->log.n || m->index < d->log.e[0].index)
            return;
        const struct sinter_raft_entry *de = &d->log.e[m->index - d->log.e[0].index];
        if (de->term > m->term) {
            sinter_sim_fail(s,
                            "persistence: node %llu acknowledged entry %llu in term %llu but its "
                            "disk holds an entry of later term %llu there",
                            (unsigned long long)from->id, (unsigned long long)m->index,
                            (unsigned long long)m->term, (unsigned long long)de->term);
            return;
        }
        const struct sim_checker *c = &s->chk;
        struct sim_node *l =
            m->term < c->n_terms ? sinter_sim_node_by_id(s, c->term_leader[m->term]) : NULL;
        const struct sinter_raft_entry *le;
        if (l && l->up && sinter_raft_role(l->r) == SINTER_RAFT_LEADER &&
            sinter_raft_term(l->r) == m->term &&
            sinter_raft_entry_at(l->r, m->index, &le) == SINTER_OK && le->term != de->term)
            sinter_sim_fail(s,
                            "persistence: node %llu acknowledged entry %llu to the leader of term "
                            "%llu, which holds term %llu there, but its disk holds term %llu",
                            (unsigned long long)from->id, (unsigned long long)m->index,
                            (unsigned long long)m->term, (unsigned long long)le->term,
                            (unsigned long long)de->term);
    }
}

void sinter_sim_net_send(struct sim *s, struct sim_node *from, const struct sinter_raft_msg *m)
{
    check_promise(s, from, m);
    if (s->failed)
        return;
    struct sim_node *to = sinter_sim_node_by_id(s, m->to);
    if (m->from != from->id) {
        sinter_sim_fail(s, "node %llu sent a %s claiming to be from %llu",
                        (unsigned long long)from->id, sinter_raft_msg_name(m->type),
                        (unsigned long long)m->from);
        return;
    }
    if (!to || to == from) {
        sinter_sim_fail(s, "node %llu sent a %s to unknown or self id %llu",
                        (unsigned long long)from->id, sinter_raft_msg_name(m->type),
                        (unsigned long long)m->to);
        return;
    }
    bool snap = m->type == SINTER_RAFT_MSG_SNAPSHOT;
    struct sim_sm data = {0};
    if (snap) {
        /* raft.h: a SNAPSHOT message names the host's latest snapshot at the time of the ready
         * that carries it (see FINDINGS.md F1), so the host keeps only that one. */
        const struct sim_disk *d = &from->disk;
        if (!d->has_snap || d->snap.index != m->snapshot.index ||
            d->snap.term != m->snapshot.term) {
            sinter_sim_fail(s,
                            "node %llu sent SNAPSHOT (%llu, term %llu) but its host's latest "
                            "snapshot is (%llu, term %llu)",
                            (unsigned long long)from->id, (unsigned long long)m->snapshot.index,
                            (unsigned long long)m->snapshot.term, (unsigned long long)d->snap.index,
                            (unsigned long long)d->snap.term);
            return;
        }
        data = d->snap_data;
    }
    from->touched = true; /* transport feedback below calls into its core */
    struct sim_link *l = &s->link[from->slot][to->slot];
    if (l->blocked) {
        sinter_sim_ev(s, EV_DROP, to->slot, (uint32_t)((from->slot + 1) << 8 | m->type), m->term, 1,
                      0, 0);
        /* A real transport notices a dead connection some of the time. */
        if (sinter_sim_rng_chance(&s->rng, 1, 2))
            sinter_raft_report_unreachable(from->r, m->to);
        if (snap)
            sinter_raft_report_snapshot(from->r, m->to, false);
        return;
    }
    if (l->loss && sinter_sim_rng_below(&s->rng, 1000) < l->loss) {
        sinter_sim_ev(s, EV_DROP, to->slot, (uint32_t)((from->slot + 1) << 8 | m->type), m->term, 0,
                      0, 0);
        if (snap)
            sinter_raft_report_snapshot(from->r, m->to, false);
        return;
    }
    int copies = 1;
    if (l->dup && sinter_sim_rng_below(&s->rng, 1000) < l->dup)
        copies = 2;
    for (int i = 0; i < copies; i++) {
        struct sim_netmsg *c = msg_copy(m);
        if (!c) {
            sinter_sim_fail(s, "simulator out of memory");
            return;
        }
        c->from = from->slot;
        c->to = to->slot;
        c->from_inc = from->inc;
        c->has_snap = snap;
        c->snap_data = data;
        c->at = s->now + l->dmin + sinter_sim_rng_below(&s->rng, (uint64_t)(l->dmax - l->dmin) + 1);
        c->seq = s->msg_seq++;
        if (i > 0)
            c->from_inc = UINT32_MAX; /* a duplicate carries the data but does not report */
        if (heap_push(s, c) != SINTER_OK) {
            free(c);
            sinter_sim_fail(s, "simulator out of memory");
            return;
        }
    }
}

/* The Figure 8 scenario's adversary: APPENDs from -> to lose every entry with a term above
 * `above` (a suffix, since log terms never decrease). What is left is still a valid APPEND the
 * leader could have sent, and equals "the message carrying the newer entries was lost" while the
 * probe and the older entries get through. Returns true when something was stripped. */
static bool filter_strip(const struct sim *s, struct sim_netmsg *c)
{
    const struct sim_filter *f = &s->filter;
    if (c->m.type != SINTER_RAFT_MSG_APPEND)
        return false;
    uint64_t above;
    if (s->laggards >> c->to & 1u) {
        /* The laggard profile's adversary: whoever leads, a laggard gets the entries its leader
         * inherited from older terms but never the leader's own ones. That is Figure 8's follower
         * S3 (paper 5.4.2): it takes (2, term 2) from the term-4 leader S1 without S1's term-4
         * entry, so a leader counting replicas of an old-term entry commits it on a majority that
         * a later leader (S5, last term 3) can still win without it. The term is read from the
         * message, not fixed at install time, so it holds across the elections Figure 8 needs. */
        above = c->m.term - 1;
    } else if (f->on && c->from == f->from && c->to == f->to) {
        above = f->above;
    } else {
        return false;
    }
    uint32_t keep = 0;
    while (keep < c->m.n_entries && c->m.entries[keep].term <= above)
        keep++;
    if (keep == c->m.n_entries)
        return false;
    c->m.n_entries = keep;
    if (keep == 0)
        c->m.entries = NULL;
    return true;
}

void sinter_sim_net_deliver(struct sim *s)
{
    while (s->n_heap > 0 && s->heap[0]->at <= s->now && !s->failed) {
        struct sim_netmsg *c = heap_pop(s);
        struct sim_node *to = &s->nodes[c->to];
        uint32_t tag = (uint32_t)((c->from + 1) << 8 | c->m.type);
        int why = -1;
        if (filter_strip(s, c))
            sinter_sim_ev(s, EV_DROP, c->to, tag, c->m.term, 3, 0, 0);
        if (s->link[c->from][c->to].blocked)
            why = 1;
        else if (!to->up)
            why = 2;
        bool snap = c->m.type == SINTER_RAFT_MSG_SNAPSHOT;
        if (why >= 0) {
            sinter_sim_ev(s, EV_DROP, c->to, tag, c->m.term, (uint64_t)why, 0, 0);
            if (snap)
                report_snap(s, c->from, c->from_inc, s->nodes[c->to].id, false);
            free(c);
            continue;
        }
        sinter_sim_ev(s, EV_RECV, c->to, tag, c->m.term, c->m.index,
                      snap ? c->m.snapshot.index : c->m.commit, c->m.n_entries);
        if (snap && c->has_snap) {
            /* Keep the data so the host can install it when a ready says snapshot_dirty. */
            struct sim_rxsnap *rx = &to->rx[to->rx_next++ % SIM_RX_SNAPS];
            rx->valid = true;
            rx->index = c->m.snapshot.index;
            rx->term = c->m.snapshot.term;
            rx->data = c->snap_data;
        }
        to->touched = true;
        int rc = sinter_raft_step(to->r, &c->m);
        s->res->msgs++;
        if (rc != SINTER_OK)
            sinter_sim_fail(s, "node %llu: sinter_raft_step(%s from %llu, term %llu) failed: %s",
                            (unsigned long long)to->id, sinter_raft_msg_name(c->m.type),
                            (unsigned long long)c->m.from, (unsigned long long)c->m.term,
                            sinter_errname(rc));
        if (snap)
            report_snap(s, c->from, c->from_inc, to->id, true);
        free(c);
    }
}

void sinter_sim_net_heal(struct sim *s)
{
    for (int i = 0; i < s->n_nodes; i++)
        for (int j = 0; j < s->n_nodes; j++) {
            struct sim_link *l = &s->link[i][j];
            l->blocked = false;
            l->loss = 0;
            l->dup = 0;
            l->dmin = 1;
            l->dmax = 3;
        }
    s->filter.on = false;
    s->laggards = 0;
}

void sinter_sim_net_free(struct sim *s)
{
    for (size_t i = 0; i < s->n_heap; i++)
        free(s->heap[i]);
    free(s->heap);
    s->heap = NULL;
    s->n_heap = s->cap_heap = 0;
}
