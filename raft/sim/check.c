/*
 * raft/sim/check.c — the safety checker, run after every step.
 *
 * The properties are those of the Raft paper's Figure 3 (and the dissertation's 3.6), checked
 * against history, not only the present:
 *
 *  - Election Safety: at most one leader per term. term_leader[] remembers, for every term, the
 *    first node seen leading it; any other node leading that term later is a violation.
 *  - Leader Append-Only: a leader never overwrites or deletes entries in its log. Each leader's
 *    log is shadowed from the step it is first seen leading; while it leads in that term, every
 *    shadowed entry must still be there with the same term and content.
 *  - Log Matching: if two logs contain an entry with the same index and term, the logs are
 *    identical up to that index. Checked inductively, the way the TLA+ spec proves it: (index,
 *    term) must name one entry forever, with one content and one predecessor term. The registry
 *    remembers every (index, term) ever durable on any disk; every in-memory log (scanned every
 *    step) and every write to a disk must agree with it: a second content or a second predecessor
 *    term is a violation.
 *  - Leader Completeness: an entry committed in term T is in the log of every leader of a term
 *    > T. com[] records each committed entry and the lowest current term of a node seen treating
 *    it as committed (that term is >= the term it was committed in, so the check is never stronger
 *    than the property); every step, every leader whose term is above it must hold it.
 *  - State Machine Safety: no two nodes apply different entries at one index. app[] records the
 *    first (term, content, state digest) applied at each index; every later application, and every
 *    snapshot taken or installed, must match. Also: no node ever treats as committed an entry
 *    other than the one committed at that index.
 *
 * Beyond Figure 3: membership (a node acts on the latest configuration in its log; a leader
 * appends one configuration at a time, each changing at most one voter, only once the previous
 * one committed; only voters campaign; a removed leader steps down once its removal commits),
 * plus log shape (terms never decrease, never exceed the current term; commit <= last). The
 * persistence contract (durable before promise) is checked on every send in net.c, the ready
 * contract and linearizable reads in host.c.
 *
 * Per-step cost is O(nodes x in-memory log); hosts snapshot often so logs stay short, a
 * fingerprint cache keyed by (index, term, data pointer, length) avoids rehashing entries, and a
 * node whose core the simulator did not call during the step is skipped (the core is pure).
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

static int grow(void **arr, size_t *n, size_t need, size_t elem)
{
    if (need <= *n)
        return SINTER_OK;
    size_t cap = *n ? *n : 64;
    while (cap < need)
        cap *= 2;
    void *p = realloc(*arr, cap * elem);
    if (!p)
        return SINTER_ENOMEM;
    memset((char *)p + *n * elem, 0, (cap - *n) * elem);
    *arr = p;
    *n = cap;
    return SINTER_OK;
}

int sinter_sim_check_init(struct sim_checker *c)
{
    memset(c, 0, sizeof(*c));
    return SINTER_OK;
}

void sinter_sim_check_free(struct sim_checker *c)
{
    for (size_t i = 0; i < c->n_reg; i++)
        free(c->reg[i].v);
    free(c->reg);
    free(c->term_leader);
    free(c->com);
    free(c->app);
    memset(c, 0, sizeof(*c));
}

void sinter_sim_check_reset_node(struct sim_node *n)
{
    n->commit_seen = 0;
    n->cfg_first = n->cfg_last = n->cfg_last_term = UINT64_MAX;
    n->shadow.term = 0;
    n->shadow.n = 0;
    if (n->cache)
        memset(n->cache, 0, SIM_CACHE * sizeof(*n->cache));
}

static bool oom(struct sim *s, int rc)
{
    if (rc != SINTER_OK)
        sinter_sim_fail(s, "simulator out of memory");
    return rc != SINTER_OK;
}

void sinter_sim_check_entry(struct sim *s, int node, const char *where,
                            const struct sinter_raft_entry *e, uint64_t hash, uint64_t prev,
                            bool durable)
{
    struct sim_checker *c = &s->chk;
    if (!durable && e->index >= c->n_reg)
        return;
    if (oom(s, grow((void **)&c->reg, &c->n_reg, e->index + 1, sizeof(*c->reg))))
        return;
    struct sim_reg_slot *slot = &c->reg[e->index];
    for (uint32_t k = 0; k < slot->n; k++) {
        struct sim_reg_ent *v = &slot->v[k];
        if (v->term != e->term)
            continue;
        if (v->hash != hash)
            sinter_sim_fail(s,
                            "log matching: node %d %s entry (%llu, term %llu) whose content "
                            "differs from the entry with that index and term seen before",
                            node + 1, where, (unsigned long long)e->index,
                            (unsigned long long)e->term);
        else if (prev && v->prev && v->prev != prev)
            sinter_sim_fail(s,
                            "log matching: node %d %s entry (%llu, term %llu) after an entry of "
                            "term %llu, but elsewhere it follows term %llu",
                            node + 1, where, (unsigned long long)e->index,
                            (unsigned long long)e->term, (unsigned long long)prev,
                            (unsigned long long)v->prev);
        else if (!v->prev && durable)
            v->prev = prev;
        return;
    }
    if (!durable)
        return;
    if (slot->n == slot->cap) {
        uint32_t cap = slot->cap ? slot->cap * 2 : 2;
        struct sim_reg_ent *v = realloc(slot->v, cap * sizeof(*v));
        if (oom(s, v ? SINTER_OK : SINTER_ENOMEM))
            return;
        slot->v = v;
        slot->cap = cap;
    }
    slot->v[slot->n++] = (struct sim_reg_ent){e->term, hash, prev};
}

void sinter_sim_check_apply(struct sim *s, struct sim_node *n, const struct sinter_raft_entry *e,
                            uint64_t hash, const struct sim_sm *sm)
{
    struct sim_checker *c = &s->chk;
    if (oom(s, grow((void **)&c->app, &c->n_app, e->index + 1, sizeof(*c->app))))
        return;
    struct sim_applied *a = &c->app[e->index];
    if (!a->set) {
        *a = (struct sim_applied){true, e->term, hash, sm->digest};
    } else if (a->term != e->term || a->hash != hash) {
        sinter_sim_fail(s,
                        "state machine safety: node %llu applied (%llu, term %llu) but another "
                        "node applied (%llu, term %llu)%s",
                        (unsigned long long)n->id, (unsigned long long)e->index,
                        (unsigned long long)e->term, (unsigned long long)e->index,
                        (unsigned long long)a->term,
                        a->term == e->term ? " with other content" : "");
        return;
    } else if (a->digest != sm->digest) {
        sinter_sim_fail(s,
                        "state machine safety: node %llu reached a different state at index %llu "
                        "than another node (different history before it)",
                        (unsigned long long)n->id, (unsigned long long)e->index);
        return;
    }
    if (e->index < c->n_com && c->com[e->index].set &&
        (c->com[e->index].term != e->term || c->com[e->index].hash != hash))
        sinter_sim_fail(s,
                        "state machine safety: node %llu applied (%llu, term %llu) but (%llu, "
                        "term %llu) is committed",
                        (unsigned long long)n->id, (unsigned long long)e->index,
                        (unsigned long long)e->term, (unsigned long long)e->index,
                        (unsigned long long)c->com[e->index].term);
}

void sinter_sim_check_snapshot_state(struct sim *s, struct sim_node *n, const char *what,
                                     const struct sinter_raft_snapshot_meta *meta,
                                     const struct sim_sm *data)
{
    struct sim_checker *c = &s->chk;
    if (data->index != meta->index) {
        sinter_sim_fail(s, "node %llu: snapshot %s at %llu carries state at index %llu",
                        (unsigned long long)n->id, what, (unsigned long long)meta->index,
                        (unsigned long long)data->index);
        return;
    }
    if (meta->index == 0)
        return;
    if (meta->index >= c->n_app || !c->app[meta->index].set) {
        sinter_sim_fail(s, "node %llu: snapshot %s at %llu covers an index nobody applied",
                        (unsigned long long)n->id, what, (unsigned long long)meta->index);
        return;
    }
    const struct sim_applied *a = &c->app[meta->index];
    if (a->term != meta->term || a->digest != data->digest)
        sinter_sim_fail(s,
                        "state machine safety: node %llu snapshot %s at (%llu, term %llu) differs "
                        "from the state applied at that index (term %llu)",
                        (unsigned long long)n->id, what, (unsigned long long)meta->index,
                        (unsigned long long)meta->term, (unsigned long long)a->term);
}

bool sinter_sim_check_is_committed(const struct sim *s, uint64_t index, uint64_t term)
{
    const struct sim_checker *c = &s->chk;
    return index < c->n_com && c->com[index].set && c->com[index].term == term;
}

/* The latest configuration in n's log (dissertation 4.1: a server uses the latest configuration
 * in its log, committed or not): the last CONFIG entry in memory, else the snapshot's. */
static int latest_config(struct sim *s, struct sim_node *n, struct sinter_raft_config *cfg,
                         uint64_t *index)
{
    struct sinter_raft *r = n->r;
    uint64_t first = sinter_raft_first_index(r);
    for (uint64_t i = sinter_raft_last_index(r); i >= first && i > 0; i--) {
        const struct sinter_raft_entry *e;
        if (sinter_raft_entry_at(r, i, &e) != SINTER_OK)
            break;
        if (e->type != SINTER_RAFT_ENTRY_CONFIG)
            continue;
        int rc = sinter_raft_config_decode(cfg, e->data, e->len);
        if (rc != SINTER_OK) {
            sinter_sim_fail(s, "node %llu: CONFIG entry %llu does not decode: %s",
                            (unsigned long long)n->id, (unsigned long long)i, sinter_errname(rc));
            return rc;
        }
        *index = i;
        return SINTER_OK;
    }
    struct sinter_raft_snapshot_meta snap;
    sinter_raft_snapshot(r, &snap);
    *cfg = snap.config;
    *index = snap.config_index;
    return SINTER_OK;
}

static bool config_equal(const struct sinter_raft_config *a, const struct sinter_raft_config *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->servers[i].id != b->servers[i].id ||
            a->servers[i].suffrage != b->servers[i].suffrage)
            return false;
    return true;
}

/* Voters in exactly one of a and b. */
static uint32_t voter_diff(const struct sinter_raft_config *a, const struct sinter_raft_config *b)
{
    uint32_t d = 0;
    for (int pass = 0; pass < 2; pass++) {
        const struct sinter_raft_config *x = pass ? b : a, *y = pass ? a : b;
        for (uint32_t i = 0; i < x->n; i++) {
            if (x->servers[i].suffrage != SINTER_RAFT_VOTER)
                continue;
            int k = sinter_raft_config_find(y, x->servers[i].id);
            if (k < 0 || y->servers[k].suffrage != SINTER_RAFT_VOTER)
                d++;
        }
    }
    return d;
}

/* The configuration a node acts on must be the latest in its log. Re-checked whenever the shape
 * of its log changes (a configuration only changes with the log). */
static void check_config(struct sim *s, struct sim_node *n)
{
    struct sinter_raft *r = n->r;
    uint64_t first = sinter_raft_first_index(r), last = sinter_raft_last_index(r);
    uint64_t lt = sinter_raft_last_term(r);
    if (first == n->cfg_first && last == n->cfg_last && lt == n->cfg_last_term)
        return;
    n->cfg_first = first;
    n->cfg_last = last;
    n->cfg_last_term = lt;
    struct sinter_raft_config want, have;
    uint64_t at;
    if (latest_config(s, n, &want, &at) != SINTER_OK)
        return;
    sinter_raft_configuration(r, &have);
    if (!config_equal(&want, &have))
        sinter_sim_fail(s,
                        "membership: node %llu acts on a configuration of %u servers, but the "
                        "latest in its log (entry %llu) has %u (dissertation 4.1)",
                        (unsigned long long)n->id, have.n, (unsigned long long)at, want.n);
}

/* The configuration before the one created at `index`: the previous CONFIG entry in memory, else
 * the snapshot's when it is older. Returns false when it is not known any more (compacted). */
static bool config_before(struct sim_node *n, uint64_t index, struct sinter_raft_config *cfg)
{
    struct sinter_raft *r = n->r;
    uint64_t first = sinter_raft_first_index(r);
    for (uint64_t i = index - 1; i >= first && i > 0; i--) {
        const struct sinter_raft_entry *e;
        if (sinter_raft_entry_at(r, i, &e) != SINTER_OK)
            return false;
        if (e->type == SINTER_RAFT_ENTRY_CONFIG)
            return sinter_raft_config_decode(cfg, e->data, e->len) == SINTER_OK;
    }
    struct sinter_raft_snapshot_meta snap;
    sinter_raft_snapshot(r, &snap);
    if (snap.config_index >= index)
        return false;
    *cfg = snap.config;
    return true;
}

static bool is_voter(const struct sinter_raft_config *cfg, sinter_raft_id id)
{
    int at = sinter_raft_config_find(cfg, id);
    return at >= 0 && cfg->servers[at].suffrage == SINTER_RAFT_VOTER;
}

/* Who may campaign and lead (dissertation 4.2): voters of the latest configuration; learners and
 * servers outside it never campaign (4.2.1), except a voter whose own removal is the latest,
 * still uncommitted configuration (the core lets it campaign so a cluster that needs its vote is
 * not wedged, FINDINGS.md F6; any majority of the new configuration overlaps one of the old).
 * A leader that removed itself steps down once that removal is committed (4.2.2). A candidate's
 * configuration only changes through a leader's APPEND, which makes it a follower first, so
 * checking after the step is exact. */
static void check_suffrage(struct sim *s, struct sim_node *n, uint32_t role)
{
    if (role == SINTER_RAFT_FOLLOWER)
        return;
    struct sinter_raft_config cfg, before;
    sinter_raft_configuration(n->r, &cfg);
    if (is_voter(&cfg, n->id))
        return;
    uint64_t cfg_index;
    if (latest_config(s, n, &cfg, &cfg_index) != SINTER_OK)
        return;
    bool uncommitted = cfg_index > sinter_raft_commit_index(n->r);
    if (role == SINTER_RAFT_LEADER) {
        if (!uncommitted)
            sinter_sim_fail(s,
                            "membership: node %llu still leads term %llu after the configuration "
                            "without it (entry %llu) committed",
                            (unsigned long long)n->id, (unsigned long long)sinter_raft_term(n->r),
                            (unsigned long long)cfg_index);
        return;
    }
    if (uncommitted && (!config_before(n, cfg_index, &before) || is_voter(&before, n->id)))
        return;
    sinter_sim_fail(s, "membership: node %llu is %s although it is not a voter",
                    (unsigned long long)n->id, sinter_raft_role_name(role));
}

/* The fingerprint of the entry at i in n's in-memory log, through the cache. Returns the slot. */
static struct sim_cache_ent *fingerprint(struct sim_node *n, const struct sinter_raft_entry *e)
{
    struct sim_cache_ent *ce = &n->cache[e->index & (SIM_CACHE - 1)];
    if (ce->index == e->index && ce->term == e->term && ce->ptr == e->data && ce->len == e->len &&
        ce->type == e->type)
        return ce;
    ce->index = e->index;
    ce->term = e->term;
    ce->ptr = e->data;
    ce->len = e->len;
    ce->type = e->type;
    ce->hash = sinter_sim_entry_hash(e);
    ce->checked = false;
    return ce;
}

static uint64_t hash_at(struct sim_node *n, const struct sinter_raft_entry *e)
{
    return fingerprint(n, e)->hash;
}

/* Log matching and commit agreement over one node's in-memory log. */
static void scan_log(struct sim *s, struct sim_node *n)
{
    struct sim_checker *c = &s->chk;
    struct sinter_raft *r = n->r;
    uint64_t first = sinter_raft_first_index(r);
    uint64_t last = sinter_raft_last_index(r);
    uint64_t term = sinter_raft_term(r);
    uint64_t commit = sinter_raft_commit_index(r);
    struct sinter_raft_snapshot_meta snap;
    sinter_raft_snapshot(r, &snap);
    if (first == 0 || first > last + 1 || (snap.index && first > snap.index + 1)) {
        sinter_sim_fail(s, "node %llu: in-memory log [%llu, %llu] does not follow snapshot %llu",
                        (unsigned long long)n->id, (unsigned long long)first,
                        (unsigned long long)last, (unsigned long long)snap.index);
        return;
    }
    if (last > 0 && sinter_raft_last_term(r) == 0 && last > snap.index) {
        sinter_sim_fail(s, "node %llu: last_term 0 with last index %llu", (unsigned long long)n->id,
                        (unsigned long long)last);
        return;
    }
    if (commit > last) {
        sinter_sim_fail(s, "node %llu: commit index %llu beyond its last index %llu",
                        (unsigned long long)n->id, (unsigned long long)commit,
                        (unsigned long long)last);
        return;
    }
    uint64_t prev = (first - 1 == snap.index) ? snap.term : 0;
    for (uint64_t i = first; i <= last; i++) {
        const struct sinter_raft_entry *e;
        int rc = sinter_raft_entry_at(r, i, &e);
        if (rc != SINTER_OK || e->index != i) {
            sinter_sim_fail(s, "node %llu: entry_at(%llu) within [%llu, %llu] failed: %s",
                            (unsigned long long)n->id, (unsigned long long)i,
                            (unsigned long long)first, (unsigned long long)last,
                            sinter_errname(rc));
            return;
        }
        if (e->term < prev || e->term > term) {
            sinter_sim_fail(s,
                            "node %llu: entry %llu has term %llu after term %llu, current term "
                            "%llu (log terms never decrease nor exceed the current term)",
                            (unsigned long long)n->id, (unsigned long long)i,
                            (unsigned long long)e->term, (unsigned long long)prev,
                            (unsigned long long)term);
            return;
        }
        struct sim_cache_ent *ce = fingerprint(n, e);
        if (!ce->checked || ce->prev != prev) {
            sinter_sim_check_entry(s, n->slot, "holds", e, ce->hash, prev, false);
            ce->checked = true;
            ce->prev = prev;
        }
        if (i <= commit && i < c->n_com && c->com[i].set &&
            (c->com[i].term != e->term || c->com[i].hash != ce->hash)) {
            sinter_sim_fail(s,
                            "state machine safety: node %llu has (%llu, term %llu) under its "
                            "commit index %llu, but (%llu, term %llu) was committed",
                            (unsigned long long)n->id, (unsigned long long)i,
                            (unsigned long long)e->term, (unsigned long long)commit,
                            (unsigned long long)i, (unsigned long long)c->com[i].term);
            return;
        }
        if (s->failed)
            return;
        prev = e->term;
    }
}

/* Commit tracking: every entry a node treats as committed becomes (or must equal) com[i]. */
static void track_commit(struct sim *s, struct sim_node *n)
{
    struct sim_checker *c = &s->chk;
    struct sinter_raft *r = n->r;
    uint64_t commit = sinter_raft_commit_index(r);
    uint64_t term = sinter_raft_term(r);
    if (commit < n->commit_seen) {
        sinter_sim_fail(s, "node %llu: commit index went back from %llu to %llu",
                        (unsigned long long)n->id, (unsigned long long)n->commit_seen,
                        (unsigned long long)commit);
        return;
    }
    if (commit == n->commit_seen)
        return;
    if (oom(s, grow((void **)&c->com, &c->n_com, commit + 1, sizeof(*c->com))))
        return;
    uint64_t first = sinter_raft_first_index(r);
    uint64_t from = n->commit_seen + 1 > first ? n->commit_seen + 1 : first;
    for (uint64_t i = from; i <= commit; i++) {
        const struct sinter_raft_entry *e;
        if (sinter_raft_entry_at(r, i, &e) != SINTER_OK)
            break; /* scan_log reported it */
        uint64_t h = hash_at(n, e);
        struct sim_commit *m = &c->com[i];
        if (!m->set) {
            *m = (struct sim_commit){true, e->term, h, term};
            if (i > c->max_committed)
                c->max_committed = i;
        } else if (m->term != e->term || m->hash != h) {
            sinter_sim_fail(s,
                            "state machine safety: node %llu commits (%llu, term %llu) but (%llu, "
                            "term %llu) was committed",
                            (unsigned long long)n->id, (unsigned long long)i,
                            (unsigned long long)e->term, (unsigned long long)i,
                            (unsigned long long)m->term);
            return;
        } else if (term < m->cterm) {
            m->cterm = term;
        }
    }
    /* A snapshot covers what precedes `first`; its (index, term) must be the committed one. */
    struct sinter_raft_snapshot_meta snap;
    sinter_raft_snapshot(r, &snap);
    if (snap.index && snap.index <= commit) {
        struct sim_commit *m = &c->com[snap.index];
        if (m->set && m->term != snap.term)
            sinter_sim_fail(s,
                            "state machine safety: node %llu holds snapshot (%llu, term %llu) but "
                            "(%llu, term %llu) was committed",
                            (unsigned long long)n->id, (unsigned long long)snap.index,
                            (unsigned long long)snap.term, (unsigned long long)snap.index,
                            (unsigned long long)m->term);
    }
    n->commit_seen = commit;
}

static int shadow_push(struct sim_shadow *sh, uint64_t term, uint64_t hash)
{
    if (sh->n == sh->cap) {
        size_t cap = sh->cap ? sh->cap * 2 : 64;
        uint64_t *t = realloc(sh->terms, cap * sizeof(*t));
        if (!t)
            return SINTER_ENOMEM;
        sh->terms = t;
        uint64_t *h = realloc(sh->hashes, cap * sizeof(*h));
        if (!h)
            return SINTER_ENOMEM;
        sh->hashes = h;
        sh->cap = cap;
    }
    sh->terms[sh->n] = term;
    sh->hashes[sh->n] = hash;
    sh->n++;
    return SINTER_OK;
}

/* A leader appended configuration entry e (dissertation 4.1): one voter added or removed at a
 * time, and only once the previous configuration entry is committed. The commit index is read
 * after the step, so a previous configuration committed in the same step is not caught; what is
 * reported is certain. */
static void check_new_config(struct sim *s, struct sim_node *n, const struct sinter_raft_entry *e)
{
    struct sim_shadow *sh = &n->shadow;
    struct sinter_raft_config cfg;
    int rc = sinter_raft_config_decode(&cfg, e->data, e->len);
    if (rc != SINTER_OK) {
        sinter_sim_fail(s, "node %llu: CONFIG entry %llu does not decode: %s",
                        (unsigned long long)n->id, (unsigned long long)e->index,
                        sinter_errname(rc));
        return;
    }
    uint32_t d = voter_diff(&sh->cfg, &cfg);
    if (d > 1)
        sinter_sim_fail(s,
                        "membership: leader %llu appended configuration %llu that changes %u "
                        "voters at once (single-server changes only, dissertation 4.1)",
                        (unsigned long long)n->id, (unsigned long long)e->index, d);
    else if (sh->cfg_index > sinter_raft_commit_index(n->r))
        sinter_sim_fail(s,
                        "membership: leader %llu appended configuration %llu while configuration "
                        "%llu was not committed (dissertation 4.1)",
                        (unsigned long long)n->id, (unsigned long long)e->index,
                        (unsigned long long)sh->cfg_index);
    sh->cfg = cfg;
    sh->cfg_index = e->index;
}

/* Leader Append-Only, for a node that leads now. */
static void check_append_only(struct sim *s, struct sim_node *n, uint64_t term)
{
    struct sim_shadow *sh = &n->shadow;
    struct sinter_raft *r = n->r;
    uint64_t first = sinter_raft_first_index(r);
    uint64_t last = sinter_raft_last_index(r);
    if (sh->term != term) {
        sh->term = term;
        sh->base = first;
        sh->n = 0;
        if (latest_config(s, n, &sh->cfg, &sh->cfg_index) != SINTER_OK)
            return;
    } else {
        uint64_t shadow_last = sh->base + sh->n - 1;
        if (sh->n && last < shadow_last) {
            sinter_sim_fail(s,
                            "leader append-only: leader %llu (term %llu) dropped entries %llu.."
                            "%llu from its log",
                            (unsigned long long)n->id, (unsigned long long)term,
                            (unsigned long long)last + 1, (unsigned long long)shadow_last);
            return;
        }
        /* Entries compacted away are gone from memory legitimately (they are committed). */
        if (first > sh->base) {
            size_t k = (size_t)(first - sh->base);
            if (k > sh->n)
                k = sh->n;
            memmove(sh->terms, sh->terms + k, (sh->n - k) * sizeof(uint64_t));
            memmove(sh->hashes, sh->hashes + k, (sh->n - k) * sizeof(uint64_t));
            sh->n -= k;
            sh->base += k;
        }
        for (size_t k = 0; k < sh->n; k++) {
            uint64_t i = sh->base + k;
            const struct sinter_raft_entry *e;
            if (sinter_raft_entry_at(r, i, &e) != SINTER_OK || e->term != sh->terms[k] ||
                hash_at(n, e) != sh->hashes[k]) {
                sinter_sim_fail(s,
                                "leader append-only: leader %llu (term %llu) overwrote entry %llu "
                                "(term %llu) of its log",
                                (unsigned long long)n->id, (unsigned long long)term,
                                (unsigned long long)i, (unsigned long long)sh->terms[k]);
                return;
            }
        }
    }
    for (uint64_t i = sh->base + sh->n; i <= last; i++) {
        const struct sinter_raft_entry *e;
        if (sinter_raft_entry_at(r, i, &e) != SINTER_OK)
            return;
        if (oom(s, shadow_push(sh, e->term, hash_at(n, e))))
            return;
        if (e->type == SINTER_RAFT_ENTRY_CONFIG && e->term == term)
            check_new_config(s, n, e);
    }
}

/* Leader Completeness, for a node that leads in `term`. */
static void check_completeness(struct sim *s, struct sim_node *n, uint64_t term)
{
    struct sim_checker *c = &s->chk;
    struct sinter_raft *r = n->r;
    uint64_t first = sinter_raft_first_index(r);
    uint64_t last = sinter_raft_last_index(r);
    struct sinter_raft_snapshot_meta snap;
    sinter_raft_snapshot(r, &snap);
    if (snap.index && snap.index < c->n_com && c->com[snap.index].set &&
        c->com[snap.index].term != snap.term) {
        sinter_sim_fail(s,
                        "leader completeness: leader %llu (term %llu) starts from snapshot (%llu, "
                        "term %llu) but (%llu, term %llu) was committed",
                        (unsigned long long)n->id, (unsigned long long)term,
                        (unsigned long long)snap.index, (unsigned long long)snap.term,
                        (unsigned long long)snap.index,
                        (unsigned long long)c->com[snap.index].term);
        return;
    }
    for (uint64_t i = first; i <= c->max_committed; i++) {
        const struct sim_commit *m = &c->com[i];
        if (!m->set || m->cterm >= term)
            continue;
        const struct sinter_raft_entry *e = NULL;
        if (i > last || sinter_raft_entry_at(r, i, &e) != SINTER_OK || e->term != m->term ||
            hash_at(n, e) != m->hash) {
            sinter_sim_fail(s,
                            "leader completeness: entry (%llu, term %llu) committed by term %llu "
                            "is missing from the log of leader %llu of term %llu (it has %s%llu)",
                            (unsigned long long)i, (unsigned long long)m->term,
                            (unsigned long long)m->cterm, (unsigned long long)n->id,
                            (unsigned long long)term, e ? "term " : "last index ",
                            e ? (unsigned long long)e->term : (unsigned long long)last);
            return;
        }
    }
}

void sinter_sim_check_step(struct sim *s)
{
    struct sim_checker *c = &s->chk;
    for (int k = 0; k < s->n_nodes && !s->failed; k++) {
        struct sim_node *n = &s->nodes[k];
        if (!n->up)
            continue;
        if (!n->touched)
            continue;
        n->touched = false;
        uint32_t role = sinter_raft_role(n->r);
        uint64_t term = sinter_raft_term(n->r);
        scan_log(s, n);
        if (s->failed)
            return;
        track_commit(s, n);
        if (s->failed)
            return;
        check_config(s, n);
        if (s->failed)
            return;
        check_suffrage(s, n, role);
        if (s->failed)
            return;
        if (role == SINTER_RAFT_LEADER) {
            if (oom(s,
                    grow((void **)&c->term_leader, &c->n_terms, term + 1, sizeof(*c->term_leader))))
                return;
            if (c->term_leader[term] == 0) {
                c->term_leader[term] = n->id;
                s->res->leaders++;
                sinter_sim_ev(s, EV_ROLE, n->slot, role, term, sinter_raft_last_index(n->r),
                              sinter_raft_commit_index(n->r), 0);
            } else if (c->term_leader[term] != n->id) {
                sinter_sim_fail(s, "election safety: nodes %llu and %llu both led term %llu",
                                (unsigned long long)c->term_leader[term], (unsigned long long)n->id,
                                (unsigned long long)term);
                return;
            }
            check_append_only(s, n, term);
            if (s->failed)
                return;
        } else {
            n->shadow.term = 0;
        }
        if (term > s->res->max_term)
            s->res->max_term = term;
    }
    /* Completeness after every node's commits of this step are known. */
    for (int k = 0; k < s->n_nodes && !s->failed; k++) {
        struct sim_node *n = &s->nodes[k];
        if (n->up && sinter_raft_role(n->r) == SINTER_RAFT_LEADER)
            check_completeness(s, n, sinter_raft_term(n->r));
    }
    s->res->commits = c->max_committed;
}
