/*
 * raft/sim/host.c — one simulated host per node: the ready/advance loop, the in-memory disk and
 * the replicated state machine.
 *
 * The loop follows sinter/raft.h step by step:
 *   1. rd.msgs go to the network at once;
 *   2. rd.snapshot / rd.hard_state / rd.entries become an UNSYNCED write on the disk; a sync step
 *      `sync_at` later (0..sync_max steps, drawn per ready) makes it durable. Until then the node
 *      keeps receiving messages and ticks (events may be fed while a ready is outstanding), and a
 *      crash keeps only a prefix of the write (often none of it);
 *   3. only after the sync, rd.msgs_after_persist are sent;
 *   4. rd.committed is applied, rd.reads are recorded and served once applied >= read index;
 *   5. sinter_raft_advance().
 * The ready's arrays are read at step 3/4, after other events were fed, which holds the core to
 * its promise that they stay valid until advance (the ASan build checks that).
 *
 * After applying, the host takes a snapshot every `snap_every` entries (stored durably at once, as
 * a real host would fsync it before telling the core) and compacts with `snap_trailing` entries.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

struct sim_node *sinter_sim_node_by_id(struct sim *s, sinter_raft_id id)
{
    if (id == 0 || id > (sinter_raft_id)s->n_nodes)
        return NULL;
    return &s->nodes[id - 1];
}

/* ---- host logs ---- */

static int log_push(struct sim_log *l, const struct sinter_raft_entry *e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        struct sinter_raft_entry *v = realloc(l->e, cap * sizeof(*v));
        if (!v)
            return SINTER_ENOMEM;
        l->e = v;
        l->cap = cap;
    }
    struct sinter_raft_entry *d = &l->e[l->n];
    *d = *e;
    d->data = NULL;
    if (e->len) {
        d->data = malloc(e->len);
        if (!d->data)
            return SINTER_ENOMEM;
        memcpy(d->data, e->data, e->len);
    }
    l->n++;
    return SINTER_OK;
}

static void log_truncate(struct sim_log *l, size_t n)
{
    while (l->n > n)
        free(l->e[--l->n].data);
}

/* Drops every entry at or below index (the log must stay consecutive after a snapshot). */
static void log_drop_through(struct sim_log *l, uint64_t index)
{
    size_t k = 0;
    while (k < l->n && l->e[k].index <= index)
        free(l->e[k++].data);
    if (k) {
        memmove(l->e, l->e + k, (l->n - k) * sizeof(*l->e));
        l->n -= k;
    }
}

void sinter_sim_log_free(struct sim_log *l)
{
    log_truncate(l, 0);
    free(l->e);
    l->e = NULL;
    l->cap = 0;
}

static const struct sinter_raft_entry *log_at(const struct sim_log *l, uint64_t index)
{
    if (l->n == 0 || index < l->e[0].index || index > l->e[l->n - 1].index)
        return NULL;
    return &l->e[index - l->e[0].index];
}

/* ---- the disk ---- */

static void disk_clear_pending(struct sim_disk *d)
{
    d->pending = d->p_snap = d->p_hs = false;
    log_truncate(&d->p_entries, 0);
}

/* The durable vote rule behind election safety: once a (term, vote) is durable it may have been
 * sent, so a later durable hard state may raise the term but never change the vote inside it. */
static void check_hs_durable(struct sim *s, struct sim_node *n,
                             const struct sinter_raft_hard_state *old,
                             const struct sinter_raft_hard_state *hs)
{
    if (hs->term < old->term)
        sinter_sim_fail(s, "node %llu persisted term %llu after term %llu (terms must not go back)",
                        (unsigned long long)n->id, (unsigned long long)hs->term,
                        (unsigned long long)old->term);
    else if (hs->term == old->term && old->vote != 0 && hs->vote != old->vote)
        sinter_sim_fail(s, "node %llu changed its durable vote in term %llu from %llu to %llu",
                        (unsigned long long)n->id, (unsigned long long)hs->term,
                        (unsigned long long)old->vote, (unsigned long long)hs->vote);
}

/* Replaces the durable snapshot (a host keeps only its latest). A snapshot the
 * host took keeps the log after it; one installed from a leader replaces the whole log (Raft paper
 * section 7: the core only asks to install when its log lacks the snapshot's last entry, and it
 * discards its whole in-memory log then; see FINDINGS.md F2). */
static void disk_set_snapshot(struct sim_disk *d, const struct sinter_raft_snapshot_meta *meta,
                              const struct sim_sm *data, bool whole_log)
{
    d->has_snap = true;
    d->snap = *meta;
    d->snap_data = *data;
    if (whole_log)
        log_truncate(&d->log, 0);
    else
        log_drop_through(&d->log, meta->index);
}

/* raft.h: a ready's hard_state.commit never exceeds the entries durable before that ready, so a
 * crash between the hard state and the entries cannot leave a hint that restore() would apply to
 * a stale suffix (FINDINGS.md F3). Checked directly rather than waiting for the unlucky crash:
 * the hint must be covered by the durable snapshot or log, and the durable entry at the hint must
 * be the one the core holds there. */
static void check_commit_hint(struct sim *s, struct sim_node *n,
                              const struct sinter_raft_hard_state *hs)
{
    const struct sim_disk *d = &n->disk;
    uint64_t c = hs->commit;
    uint64_t snap = d->has_snap ? d->snap.index : 0;
    if (c <= snap)
        return;
    const struct sinter_raft_entry *de = log_at(&d->log, c);
    if (!de) {
        sinter_sim_fail(s,
                        "persistence: node %llu's ready carries commit hint %llu but its durable "
                        "log ends at %llu (snapshot %llu)",
                        (unsigned long long)n->id, (unsigned long long)c,
                        (unsigned long long)(d->log.n ? d->log.e[d->log.n - 1].index : 0),
                        (unsigned long long)snap);
        return;
    }
    const struct sinter_raft_entry *e;
    if (sinter_raft_entry_at(n->r, c, &e) == SINTER_OK && e->term != de->term)
        sinter_sim_fail(s,
                        "persistence: node %llu's ready carries commit hint %llu but the durable "
                        "entry there has term %llu, not the committed term %llu",
                        (unsigned long long)n->id, (unsigned long long)c,
                        (unsigned long long)de->term, (unsigned long long)e->term);
}

/* Makes the first `units` units of the pending write durable (snapshot, hard state, then one unit
 * per entry) and forgets the rest. A sync passes every unit; a crash a prefix. */
static void disk_commit(struct sim *s, struct sim_node *n, size_t units)
{
    struct sim_disk *d = &n->disk;
    size_t u = 0;
    if (d->p_snap && u < units) {
        disk_set_snapshot(d, &d->p_meta, &d->p_data, true);
        u++;
    }
    if (d->p_hs && u < units) {
        check_hs_durable(s, n, &d->hs, &d->p_hsv);
        d->hs = d->p_hsv;
        u++;
    }
    for (size_t k = 0; k < d->p_entries.n && u < units; k++, u++) {
        const struct sinter_raft_entry *e = &d->p_entries.e[k];
        if (k == 0) {
            /* rd.entries[0].index replaces every persisted entry at that index or above. */
            size_t keep = 0;
            while (keep < d->log.n && d->log.e[keep].index < e->index)
                keep++;
            log_truncate(&d->log, keep);
        }
        /* Now durable: record it for Log Matching, with the durable entry before it. */
        uint64_t prev = 0;
        if (d->log.n)
            prev = d->log.e[d->log.n - 1].index + 1 == e->index ? d->log.e[d->log.n - 1].term : 0;
        else if (d->has_snap && d->snap.index + 1 == e->index)
            prev = d->snap.term;
        sinter_sim_check_entry(s, n->slot, "made durable", e, sinter_sim_entry_hash(e), prev, true);
        if (log_push(&d->log, e) != SINTER_OK) {
            sinter_sim_fail(s, "simulator out of memory");
            break;
        }
    }
    disk_clear_pending(d);
}

static size_t pending_units(const struct sim_disk *d)
{
    return (d->p_snap ? 1u : 0u) + (d->p_hs ? 1u : 0u) + d->p_entries.n;
}

/* ---- node life cycle ---- */

int sinter_sim_node_start(struct sim *s, struct sim_node *n)
{
    struct sinter_raft_options *o = &n->opts;
    sinter_raft_options_defaults(o, n->id);
    o->election_ticks = s->election_ticks;
    o->heartbeat_ticks = 1;
    o->seed = sinter_sim_rng_next(&s->rng);
    o->pre_vote = s->pre_vote;
    o->check_quorum = s->check_quorum;
    o->max_msg_entries = s->max_msg_entries;
    o->max_inflight = s->max_inflight;
    /* A small cap keeps a deposed-but-unaware leader's uncommitted tail short. */
    o->max_uncommitted_bytes = 4096;
    n->touched = true;
    int rc = sinter_raft_new(&n->r, o);
    if (rc != SINTER_OK) {
        sinter_sim_fail(s, "node %llu: sinter_raft_new: %s", (unsigned long long)n->id,
                        sinter_errname(rc));
        return rc;
    }
    struct sim_disk *d = &n->disk;
    bool empty = !d->has_snap && d->log.n == 0 && d->hs.term == 0 && d->hs.vote == 0;
    if (empty) {
        /* A founder with nothing durable bootstraps (again): it never sent anything that depended
         * on state it lost. Other servers wait to be added. */
        if (n->founder)
            rc = sinter_raft_bootstrap(n->r, &s->founders);
    } else {
        rc = sinter_raft_restore(n->r, d->has_snap ? &d->snap : NULL, &d->hs, d->log.e, d->log.n,
                                 d->has_snap ? d->snap.index : 0);
    }
    if (rc != SINTER_OK) {
        sinter_sim_fail(s,
                        "node %llu: %s after restart failed: %s (durable: snapshot %llu term %llu, "
                        "entries %llu..%llu, hard state term %llu vote %llu commit %llu)",
                        (unsigned long long)n->id, empty ? "bootstrap" : "restore",
                        sinter_errname(rc), (unsigned long long)d->snap.index,
                        (unsigned long long)d->snap.term,
                        (unsigned long long)(d->log.n ? d->log.e[0].index : 0),
                        (unsigned long long)(d->log.n ? d->log.e[d->log.n - 1].index : 0),
                        (unsigned long long)d->hs.term, (unsigned long long)d->hs.vote,
                        (unsigned long long)d->hs.commit);
        return rc;
    }
    memset(&n->sm, 0, sizeof(n->sm));
    if (d->has_snap)
        n->sm = d->snap_data;
    n->up = true;
    n->inc++;
    n->rd_out = false;
    n->rx_next = 0;
    memset(n->rx, 0, sizeof(n->rx));
    n->next_tick = s->now + 1 + sinter_sim_rng_below(&s->rng, n->tick_period);
    n->paused_until = 0;
    sinter_sim_check_reset_node(n);
    sinter_sim_ev(s, EV_RESTART, n->slot, 0, d->hs.term, d->hs.vote,
                  d->has_snap ? d->snap.index : 0, d->log.n ? d->log.e[d->log.n - 1].index : 0);
    return SINTER_OK;
}

static void drop_reads_of(struct sim *s, struct sim_node *n)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_reads; i++)
        if (s->reads[i].slot != n->slot)
            s->reads[k++] = s->reads[i];
    s->n_reads = k;
}

void sinter_sim_node_crash(struct sim *s, struct sim_node *n)
{
    if (!n->up)
        return;
    struct sim_disk *d = &n->disk;
    size_t units = 0, keep = 0;
    if (d->pending) {
        units = pending_units(d);
        if (sinter_sim_rng_below(&s->rng, 1000) < s->torn_pm)
            keep = (size_t)sinter_sim_rng_below(&s->rng, units + 1);
        if (keep < units)
            s->res->lost_writes++;
        disk_commit(s, n, keep);
    }
    sinter_sim_ev(s, EV_CRASH, n->slot, 0, d->pending || units, keep, units, 0);
    sinter_raft_close(n->r);
    n->r = NULL;
    n->up = false;
    n->rd_out = false;
    drop_reads_of(s, n);
    sinter_sim_check_reset_node(n);
    s->res->crashes++;
}

void sinter_sim_node_free(struct sim_node *n)
{
    sinter_raft_close(n->r);
    n->r = NULL;
    sinter_sim_log_free(&n->disk.log);
    sinter_sim_log_free(&n->disk.p_entries);
    free(n->shadow.terms);
    free(n->shadow.hashes);
    free(n->cache);
}

/* ---- the state machine ---- */

static void sm_apply(struct sim_sm *sm, const struct sinter_raft_entry *e, uint64_t hash)
{
    sm->index = e->index;
    if (e->type == SINTER_RAFT_ENTRY_NORMAL)
        sm->count++;
    sm->digest =
        sinter_sim_mix(sinter_sim_mix(sinter_sim_mix(sm->digest, e->index), e->term), hash);
}

static void take_snapshot(struct sim *s, struct sim_node *n)
{
    struct sinter_raft_snapshot_meta meta;
    int rc = sinter_raft_snapshot_meta_at(n->r, n->sm.index, &meta);
    if (rc == SINTER_ECOMPACTED)
        return; /* the core took a leader's snapshot past it; the next ready installs it */
    if (rc != SINTER_OK) {
        sinter_sim_fail(s, "node %llu: snapshot_meta_at(applied %llu) failed: %s",
                        (unsigned long long)n->id, (unsigned long long)n->sm.index,
                        sinter_errname(rc));
        return;
    }
    if (meta.index != n->sm.index) {
        sinter_sim_fail(s, "node %llu: snapshot_meta_at(%llu) gave index %llu",
                        (unsigned long long)n->id, (unsigned long long)n->sm.index,
                        (unsigned long long)meta.index);
        return;
    }
    sinter_sim_check_snapshot_state(s, n, "taken", &meta, &n->sm);
    disk_set_snapshot(&n->disk, &meta, &n->sm, false);
    n->touched = true;
    rc = sinter_raft_compact(n->r, meta.index, s->snap_trailing);
    if (rc != SINTER_OK)
        sinter_sim_fail(s, "node %llu: compact(%llu, %u) failed: %s", (unsigned long long)n->id,
                        (unsigned long long)meta.index, s->snap_trailing, sinter_errname(rc));
    sinter_sim_ev(s, EV_SNAP_TAKE, n->slot, 0, meta.index, meta.term, s->snap_trailing, 0);
    s->res->snapshots++;
}

/* ---- reads ---- */

static struct sim_read *find_read(struct sim *s, uint64_t ctx)
{
    for (size_t i = 0; i < s->n_reads; i++)
        if (s->reads[i].ctx == ctx)
            return &s->reads[i];
    return NULL;
}

static void remove_read(struct sim *s, struct sim_read *r)
{
    size_t i = (size_t)(r - s->reads);
    s->reads[i] = s->reads[--s->n_reads];
}

/* Linearizable reads (dissertation 6.4): the state a read returns must reflect every write
 * committed before the read began. `need` is the highest index any node treated as committed when
 * the read started; the register's state at applied index N contains exactly the entries <= N, so
 * the read is correct iff the served N >= need (and the state at N is the canonical one, which the
 * apply checks already guarantee). The read index the core handed back must also be >= need:
 * a host may serve as soon as applied reaches it. */
static void serve_reads(struct sim *s, struct sim_node *n)
{
    for (size_t i = 0; i < s->n_reads && !s->failed;) {
        struct sim_read *r = &s->reads[i];
        if (r->slot != n->slot || !r->confirmed || r->index > n->sm.index) {
            i++;
            continue;
        }
        if (n->sm.index < r->need)
            sinter_sim_fail(s,
                            "linearizable read: read ctx=%llu on node %llu started at step %llu "
                            "when index %llu was committed, but was served the state at applied "
                            "index %llu",
                            (unsigned long long)r->ctx, (unsigned long long)n->id,
                            (unsigned long long)r->start, (unsigned long long)r->need,
                            (unsigned long long)n->sm.index);
        sinter_sim_ev(s, EV_READ_DONE, n->slot, 0, r->ctx, n->sm.index, r->index, r->need);
        s->res->reads++;
        remove_read(s, r);
    }
}

static void take_reads(struct sim *s, struct sim_node *n, const struct sinter_raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_reads && !s->failed; i++) {
        const struct sinter_raft_read_state *rs = &rd->reads[i];
        struct sim_read *r = find_read(s, rs->ctx);
        if (!r || r->slot != n->slot || r->confirmed) {
            sinter_sim_fail(s, "node %llu answered read ctx=%llu it was not asked (or twice)",
                            (unsigned long long)n->id, (unsigned long long)rs->ctx);
            return;
        }
        if (rs->rc != SINTER_OK) {
            sinter_sim_ev(s, EV_READ_DONE, n->slot, 1, r->ctx, 0, (uint64_t)rs->rc, r->need);
            remove_read(s, r);
            continue;
        }
        if (rs->index < r->need) {
            sinter_sim_fail(s,
                            "linearizable read: node %llu returned read index %llu for ctx=%llu, "
                            "but index %llu was committed before the read started (step %llu)",
                            (unsigned long long)n->id, (unsigned long long)rs->index,
                            (unsigned long long)rs->ctx, (unsigned long long)r->need,
                            (unsigned long long)r->start);
            return;
        }
        r->index = rs->index;
        r->confirmed = true;
    }
}

/* ---- the ready loop ---- */

/* Steps 3-5 of the contract, once the write of step 2 is durable. */
static void complete(struct sim *s, struct sim_node *n)
{
    struct sinter_raft_ready *rd = &n->rd;
    struct sim_disk *d = &n->disk;
    bool installed = d->pending && d->p_snap;
    struct sim_sm snap_state = d->p_data;
    if (d->pending) {
        sinter_sim_ev(s, EV_SYNC, n->slot, 0, d->p_hs ? d->p_hsv.term : d->hs.term,
                      d->p_hs ? d->p_hsv.vote : d->hs.vote,
                      d->p_entries.n ? d->p_entries.e[d->p_entries.n - 1].index : 0,
                      d->p_snap ? d->p_meta.index : 0);
        disk_commit(s, n, pending_units(d));
    }
    if (installed) {
        n->sm = snap_state;
        sinter_sim_ev(s, EV_SNAP_INSTALL, n->slot, 0, rd->snapshot.index, rd->snapshot.term, 0, 0);
        s->res->installs++;
    }
    for (size_t i = 0; i < rd->n_msgs_after_persist && !s->failed; i++)
        sinter_sim_net_send(s, n, &rd->msgs_after_persist[i]);
    uint64_t commit = sinter_raft_commit_index(n->r);
    for (size_t i = 0; i < rd->n_committed && !s->failed; i++) {
        const struct sinter_raft_entry *e = &rd->committed[i];
        if (e->index != n->sm.index + 1) {
            sinter_sim_fail(s, "node %llu was handed committed entry %llu to apply after %llu",
                            (unsigned long long)n->id, (unsigned long long)e->index,
                            (unsigned long long)n->sm.index);
            break;
        }
        if (e->index > commit) {
            sinter_sim_fail(s, "node %llu was handed entry %llu to apply beyond its commit %llu",
                            (unsigned long long)n->id, (unsigned long long)e->index,
                            (unsigned long long)commit);
            break;
        }
        uint64_t h = sinter_sim_entry_hash(e);
        sm_apply(&n->sm, e, h);
        sinter_sim_check_apply(s, n, e, h, &n->sm);
    }
    if (rd->n_committed)
        sinter_sim_ev(s, EV_COMMIT, n->slot, 0, rd->committed[0].index,
                      rd->committed[rd->n_committed - 1].index,
                      rd->committed[rd->n_committed - 1].term, 0);
    take_reads(s, n, rd);
    serve_reads(s, n);
    if (s->failed)
        return;
    n->touched = true;
    sinter_raft_advance(n->r, rd);
    n->rd_out = false;
    uint64_t snap_index = d->has_snap ? d->snap.index : 0;
    if (n->sm.index >= snap_index + s->snap_every)
        take_snapshot(s, n);
}

/* Steps 1-2: send, and start the unsynced write. */
static void handle_ready(struct sim *s, struct sim_node *n)
{
    struct sinter_raft_ready *rd = &n->rd;
    n->touched = true;
    int rc = sinter_raft_ready(n->r, rd);
    if (rc != SINTER_OK) {
        sinter_sim_fail(s, "node %llu: sinter_raft_ready failed: %s", (unsigned long long)n->id,
                        sinter_errname(rc));
        return;
    }
    n->rd_out = true;
    for (size_t i = 0; i < rd->n_msgs && !s->failed; i++)
        sinter_sim_net_send(s, n, &rd->msgs[i]);

    struct sim_disk *d = &n->disk;
    uint64_t snap_index = d->has_snap ? d->snap.index : 0;
    uint64_t snap_term = d->has_snap ? d->snap.term : 0;
    if (rd->snapshot_dirty) {
        const struct sim_rxsnap *rx = NULL;
        for (int i = 0; i < SIM_RX_SNAPS; i++)
            if (n->rx[i].valid && n->rx[i].index == rd->snapshot.index &&
                n->rx[i].term == rd->snapshot.term)
                rx = &n->rx[i];
        if (!rx) {
            sinter_sim_fail(s,
                            "node %llu: ready asks to install snapshot (%llu, term %llu) that "
                            "never arrived with a SNAPSHOT message",
                            (unsigned long long)n->id, (unsigned long long)rd->snapshot.index,
                            (unsigned long long)rd->snapshot.term);
            return;
        }
        if (rd->snapshot.index < n->sm.index) {
            sinter_sim_fail(s,
                            "node %llu: ready installs snapshot at %llu below its applied index "
                            "%llu (the state machine would go back)",
                            (unsigned long long)n->id, (unsigned long long)rd->snapshot.index,
                            (unsigned long long)n->sm.index);
            return;
        }
        sinter_sim_check_snapshot_state(s, n, "received", &rd->snapshot, &rx->data);
        d->p_snap = true;
        d->p_meta = rd->snapshot;
        d->p_data = rx->data;
        snap_index = rd->snapshot.index;
        snap_term = rd->snapshot.term;
    }
    if (rd->hard_state_dirty) {
        d->p_hs = true;
        d->p_hsv = rd->hard_state;
        check_hs_durable(s, n, &d->hs, &d->p_hsv);
        check_commit_hint(s, n, &rd->hard_state);
    }
    if (rd->n_entries) {
        /* The log the write lands on: the durable log after the (pending) snapshot. */
        uint64_t last = snap_index;
        if (!rd->snapshot_dirty && d->log.n && d->log.e[d->log.n - 1].index > last)
            last = d->log.e[d->log.n - 1].index;
        uint64_t x = rd->entries[0].index;
        if (x <= snap_index || x > last + 1) {
            sinter_sim_fail(s,
                            "node %llu: ready entries start at %llu but the persisted log covers "
                            "snapshot %llu .. %llu",
                            (unsigned long long)n->id, (unsigned long long)x,
                            (unsigned long long)snap_index, (unsigned long long)last);
            return;
        }
        uint64_t prev = snap_term;
        if (x - 1 > snap_index && !rd->snapshot_dirty) {
            const struct sinter_raft_entry *pe = log_at(&d->log, x - 1);
            prev = pe ? pe->term : 0;
        }
        for (size_t i = 0; i < rd->n_entries && !s->failed; i++) {
            const struct sinter_raft_entry *e = &rd->entries[i];
            if (e->index != x + i) {
                sinter_sim_fail(s, "node %llu: ready entries not consecutive at %llu",
                                (unsigned long long)n->id, (unsigned long long)e->index);
                return;
            }
            if (e->term < prev) {
                sinter_sim_fail(s,
                                "node %llu: ready entry %llu has term %llu after term %llu (log "
                                "terms never decrease)",
                                (unsigned long long)n->id, (unsigned long long)e->index,
                                (unsigned long long)e->term, (unsigned long long)prev);
                return;
            }
            sinter_sim_check_entry(s, n->slot, "persists", e, sinter_sim_entry_hash(e), prev,
                                   false);
            if (log_push(&d->p_entries, e) != SINTER_OK) {
                sinter_sim_fail(s, "simulator out of memory");
                return;
            }
            prev = e->term;
        }
    }
    d->pending = d->p_snap || d->p_hs || d->p_entries.n;
    uint64_t lat = d->pending ? sinter_sim_rng_below(&s->rng, (uint64_t)n->sync_max + 1) : 0;
    n->sync_at = s->now + lat;
    if (lat == 0 && !s->failed)
        complete(s, n);
}

void sinter_sim_node_process(struct sim *s, struct sim_node *n)
{
    /* A bound on readies per step: a core that always claims to have a ready must not hang us. */
    for (int guard = 0; guard < 32 && n->up && !s->failed; guard++) {
        if (n->rd_out) {
            if (s->now < n->sync_at)
                return;
            complete(s, n);
            continue;
        }
        if (!sinter_raft_has_ready(n->r))
            return;
        handle_ready(s, n);
    }
}
