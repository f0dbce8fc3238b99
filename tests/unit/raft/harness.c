/* In-test cluster for the Raft core; see harness.h. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t h_rand(struct harness *h)
{
    uint64_t z = (h->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static void apps_push(struct h_apps *a, const struct h_app *x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        assert_non_null(a->v);
    }
    a->v[a->n++] = *x;
}

static void apps_copy_upto(struct h_apps *dst, const struct h_apps *src, uint64_t upto)
{
    dst->n = 0;
    for (size_t i = 0; i < src->n && src->v[i].index <= upto; i++) {
        apps_push(dst, &src->v[i]);
    }
}

static void entry_copy(struct sinter_raft_entry *d, const struct sinter_raft_entry *s)
{
    *d = *s;
    d->data = NULL;
    if (s->len > 0) {
        d->data = xmalloc(s->len);
        memcpy(d->data, s->data, s->len);
    }
}

struct h_node *h_node(struct harness *h, sinter_raft_id id)
{
    assert_true(id >= 1 && id <= h->n);
    return &h->nodes[id - 1];
}

struct sinter_raft *h_raft(struct harness *h, sinter_raft_id id)
{
    return h_node(h, id)->r;
}

static void new_core(struct harness *h, struct h_node *nd)
{
    (void)h;
    nd->opts.seed = nd->seed;
    assert_int_equal(sinter_raft_new(&nd->r, &nd->opts), SINTER_OK);
    nd->up = true;
}

void h_init(struct harness *h, size_t n, size_t n_voters, uint64_t seed, h_opts_fn opts_fn)
{
    memset(h, 0, sizeof *h);
    assert_true(n <= H_MAX);
    h->n = n;
    h->rng = seed;
    struct sinter_raft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    for (size_t i = 1; i <= n_voters; i++) {
        assert_int_equal(sinter_raft_config_add(&cfg, i, SINTER_RAFT_VOTER), SINTER_OK);
    }
    for (size_t i = 0; i < n; i++) {
        struct h_node *nd = &h->nodes[i];
        nd->id = i + 1;
        nd->seed = seed * 1000 + i + 1;
        sinter_raft_options_defaults(&nd->opts, nd->id);
        if (opts_fn != NULL) {
            opts_fn(&nd->opts);
        }
        new_core(h, nd);
        if (nd->id <= n_voters) {
            assert_int_equal(sinter_raft_bootstrap(nd->r, &cfg), SINTER_OK);
        }
        h_process(h, nd->id);
    }
}

static void msg_free(struct h_msg *m)
{
    for (uint32_t i = 0; i < m->n_alloc; i++) {
        free(m->m.entries[i].data);
    }
    free(m->m.entries);
    free(m->snap_apps.v);
}

static void node_disk_free(struct h_node *nd)
{
    for (size_t i = 0; i < nd->n_log; i++) {
        free(nd->log[i].data);
    }
    free(nd->log);
    nd->log = NULL;
    nd->n_log = 0;
}

void h_free(struct harness *h)
{
    for (size_t i = 0; i < h->n; i++) {
        struct h_node *nd = &h->nodes[i];
        sinter_raft_close(nd->r);
        node_disk_free(nd);
        free(nd->apps.v);
        free(nd->pending_snap_apps.v);
    }
    for (size_t i = 0; i < h->nq; i++) {
        msg_free(&h->q[i]);
    }
    free(h->q);
}

static void enqueue_copy(struct harness *h, const struct sinter_raft_msg *m,
                         const struct h_apps *snap_apps)
{
    if (h->nq == h->capq) {
        h->capq = h->capq ? h->capq * 2 : 256;
        h->q = realloc(h->q, h->capq * sizeof *h->q);
        assert_non_null(h->q);
    }
    struct h_msg *x = &h->q[h->nq++];
    memset(x, 0, sizeof *x);
    x->m = *m;
    x->m.entries = NULL;
    x->n_alloc = m->n_entries;
    if (m->n_entries > 0) {
        x->m.entries = xmalloc(m->n_entries * sizeof *m->entries);
        for (uint32_t i = 0; i < m->n_entries; i++) {
            entry_copy(&x->m.entries[i], &m->entries[i]);
        }
    }
    if (snap_apps != NULL) {
        apps_copy_upto(&x->snap_apps, snap_apps, UINT64_MAX);
    }
}

static void enqueue(struct harness *h, struct h_node *from, const struct sinter_raft_msg *m)
{
    assert_int_equal(m->from, from->id);
    assert_true(m->to >= 1 && m->to <= h->n);
    if (m->type == SINTER_RAFT_MSG_SNAPSHOT) {
        struct h_apps a = {0};
        apps_copy_upto(&a, &from->apps, m->snapshot.index);
        assert_int_equal(a.n, m->snapshot.index); /* the sender has the data it ships */
        enqueue_copy(h, m, &a);
        free(a.v);
    } else {
        enqueue_copy(h, m, NULL);
    }
    if (m->type == SINTER_RAFT_MSG_APPEND && m->n_entries > 0) {
        size_t c = 0;
        for (size_t i = 0; i < h->nq; i++) {
            const struct sinter_raft_msg *q = &h->q[i].m;
            if (q->type == SINTER_RAFT_MSG_APPEND && q->n_entries > 0 && q->from == m->from &&
                q->to == m->to) {
                c++;
            }
        }
        if (c > h->max_appends_in_flight) {
            h->max_appends_in_flight = c;
        }
    }
}

static void disk_append(struct h_node *nd, const struct sinter_raft_entry *e, size_t n)
{
    if (n == 0) {
        return;
    }
    uint64_t base = nd->has_snap ? nd->snap.index : 0;
    uint64_t first = e[0].index;
    assert_true(first >= base + 1);
    assert_true(first <= base + nd->n_log + 1); /* no gap */
    size_t keep = (size_t)(first - base - 1);
    for (size_t i = keep; i < nd->n_log; i++) {
        free(nd->log[i].data);
    }
    nd->log = realloc(nd->log, (keep + n) * sizeof *nd->log);
    assert_non_null(nd->log);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(e[i].index, first + i);
        entry_copy(&nd->log[keep + i], &e[i]);
    }
    nd->n_log = keep + n;
}

void h_process(struct harness *h, sinter_raft_id id)
{
    struct h_node *nd = h_node(h, id);
    if (!nd->up) {
        return;
    }
    struct sinter_raft *r = nd->r;
    while (sinter_raft_has_ready(r)) {
        struct sinter_raft_ready rd;
        struct sinter_raft_ready rd2;
        int rc = sinter_raft_ready(r, &rd);
        if (rc == SINTER_ENOMEM && h->tolerate_enomem) {
            break; /* nothing changed: the next call tries again */
        }
        assert_int_equal(rc, SINTER_OK);
        /* At most one ready outstanding. */
        assert_int_equal(sinter_raft_ready(r, &rd2), SINTER_EBUSY);
        if (rd.role == SINTER_RAFT_LEADER && rd.term < 4096) {
            /* Election safety (paper figure 3): at most one leader per term. */
            if (h->leader_of_term[rd.term] != 0) {
                assert_int_equal(h->leader_of_term[rd.term], id);
            }
            h->leader_of_term[rd.term] = id;
        }
        /* 1. messages that may go at once */
        for (size_t i = 0; i < rd.n_msgs; i++) {
            enqueue(h, nd, &rd.msgs[i]);
        }
        /* 2. persist */
        if (rd.snapshot_dirty) {
            assert_int_equal(nd->pending_snap_index, rd.snapshot.index);
            node_disk_free(nd);
            nd->has_snap = true;
            nd->snap = rd.snapshot;
            apps_copy_upto(&nd->apps, &nd->pending_snap_apps, UINT64_MAX);
            nd->applied = rd.snapshot.index;
            nd->n_snapshots_installed++;
        }
        if (rd.hard_state_dirty) {
            assert_true(rd.hard_state.term >= nd->hs.term);
            nd->hs = rd.hard_state;
        }
        disk_append(nd, rd.entries, rd.n_entries);
        /* 3. messages promising durability */
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
            enqueue(h, nd, &rd.msgs_after_persist[i]);
        }
        /* 4. apply */
        for (size_t i = 0; i < rd.n_committed; i++) {
            const struct sinter_raft_entry *e = &rd.committed[i];
            assert_int_equal(e->index, nd->applied + 1);
            struct h_app a = {.index = e->index, .term = e->term, .type = e->type, .len = e->len};
            if (e->len > 0) {
                memcpy(a.data, e->data, e->len < sizeof a.data ? e->len : sizeof a.data);
            }
            apps_push(&nd->apps, &a);
            nd->applied = e->index;
        }
        for (size_t i = 0; i < rd.n_reads; i++) {
            assert_true(nd->n_reads < sizeof nd->reads / sizeof nd->reads[0]);
            nd->reads[nd->n_reads++] = rd.reads[i];
        }
        sinter_raft_advance(r, &rd);
    }
}

static void remove_at(struct harness *h, size_t i, struct h_msg *out)
{
    *out = h->q[i];
    memmove(&h->q[i], &h->q[i + 1], (h->nq - i - 1) * sizeof *h->q);
    h->nq--;
}

bool h_deliver_one(struct harness *h)
{
    if (h->nq == 0) {
        return false;
    }
    size_t start = h->reorder ? (size_t)(h_rand(h) % h->nq) : 0;
    size_t at = h->nq;
    for (size_t k = 0; k < h->nq; k++) {
        size_t i = (start + k) % h->nq;
        if (!h->hold[h->q[i].m.from][h->q[i].m.to]) {
            at = i;
            break;
        }
    }
    if (at == h->nq) {
        return false; /* everything queued is held */
    }
    struct h_msg x;
    remove_at(h, at, &x);
    struct sinter_raft_msg *m = &x.m;
    struct h_node *to = h_node(h, m->to);
    struct h_node *from = h_node(h, m->from);
    bool lost = !to->up || h->cut[m->from][m->to];
    if (!lost && h->drop_pct > 0 && h_rand(h) % 100 < h->drop_pct) {
        lost = true;
    }
    if (!lost && h->filter != NULL && h->filter(h, m)) {
        lost = true;
    }
    if (!lost && h->dup_pct > 0 && h_rand(h) % 100 < h->dup_pct) {
        enqueue_copy(h, m, m->type == SINTER_RAFT_MSG_SNAPSHOT ? &x.snap_apps : NULL);
    }
    if (!lost) {
        if (m->type == SINTER_RAFT_MSG_SNAPSHOT) {
            apps_copy_upto(&to->pending_snap_apps, &x.snap_apps, UINT64_MAX);
            to->pending_snap_index = m->snapshot.index;
        }
        h->delivered++;
        int rc = sinter_raft_step(to->r, m);
        if (!(rc == SINTER_ENOMEM && h->tolerate_enomem)) {
            assert_int_equal(rc, SINTER_OK);
        }
        h_process(h, to->id);
    }
    if (m->type == SINTER_RAFT_MSG_SNAPSHOT && from->up) {
        sinter_raft_report_snapshot(from->r, to->id, !lost);
        h_process(h, from->id);
    }
    msg_free(&x);
    return true;
}

void h_deliver_all(struct harness *h)
{
    for (unsigned i = 0; i < 100000 && h_deliver_one(h); i++) {
    }
}

void h_drop_all(struct harness *h)
{
    for (size_t i = 0; i < h->nq; i++) {
        msg_free(&h->q[i]);
    }
    h->nq = 0;
}

void h_tick_all(struct harness *h)
{
    for (size_t i = 0; i < h->n; i++) {
        if (h->nodes[i].up) {
            sinter_raft_tick(h->nodes[i].r);
            h_process(h, h->nodes[i].id);
        }
    }
}

void h_run(struct harness *h, unsigned ticks)
{
    for (unsigned t = 0; t < ticks; t++) {
        h_tick_all(h);
        h_deliver_all(h);
    }
}

sinter_raft_id h_leader(struct harness *h)
{
    sinter_raft_id best = 0;
    uint64_t term = 0;
    for (size_t i = 0; i < h->n; i++) {
        struct h_node *nd = &h->nodes[i];
        if (nd->up && sinter_raft_role(nd->r) == SINTER_RAFT_LEADER &&
            sinter_raft_term(nd->r) >= term) {
            best = nd->id;
            term = sinter_raft_term(nd->r);
        }
    }
    return best;
}

/* l leads a majority of its voters, and every voter it can reach follows it. */
static bool settled(struct harness *h, sinter_raft_id l)
{
    struct sinter_raft_config cfg;
    sinter_raft_configuration(h_raft(h, l), &cfg);
    uint32_t following = 0;
    for (uint32_t i = 0; i < cfg.n; i++) {
        sinter_raft_id id = cfg.servers[i].id;
        struct h_node *nd = h_node(h, id);
        if (cfg.servers[i].suffrage != SINTER_RAFT_VOTER) {
            continue;
        }
        if (id == l) {
            following++;
            continue;
        }
        if (!nd->up || h->cut[l][id] || h->cut[id][l]) {
            continue;
        }
        if (sinter_raft_leader(nd->r) != l ||
            sinter_raft_term(nd->r) != sinter_raft_term(h_raft(h, l))) {
            return false;
        }
        following++;
    }
    return following >= sinter_raft_config_voters(&cfg) / 2 + 1;
}

sinter_raft_id h_wait_leader(struct harness *h, unsigned max_ticks)
{
    for (unsigned t = 0; t < max_ticks; t++) {
        h_tick_all(h);
        h_deliver_all(h);
        sinter_raft_id l = h_leader(h);
        if (l != 0 && settled(h, l)) {
            return l;
        }
    }
    return 0;
}

int h_propose(struct harness *h, sinter_raft_id id, const char *s, uint64_t *index)
{
    int rc = sinter_raft_propose(h_raft(h, id), s, (uint32_t)strlen(s), index, NULL);
    h_process(h, id);
    return rc;
}

void h_cut(struct harness *h, sinter_raft_id from, sinter_raft_id to)
{
    h->cut[from][to] = true;
}

void h_cut_both(struct harness *h, sinter_raft_id a, sinter_raft_id b)
{
    h->cut[a][b] = true;
    h->cut[b][a] = true;
}

void h_isolate(struct harness *h, sinter_raft_id id)
{
    for (sinter_raft_id o = 1; o <= h->n; o++) {
        if (o != id) {
            h_cut_both(h, id, o);
        }
    }
}

void h_heal(struct harness *h)
{
    memset(h->cut, 0, sizeof h->cut);
    memset(h->hold, 0, sizeof h->hold);
}

void h_crash(struct harness *h, sinter_raft_id id)
{
    struct h_node *nd = h_node(h, id);
    sinter_raft_close(nd->r);
    nd->r = NULL;
    nd->up = false;
}

void h_restart(struct harness *h, sinter_raft_id id)
{
    struct h_node *nd = h_node(h, id);
    assert_false(nd->up);
    nd->seed += 7919; /* a new run of the PRNG, as a real restart would have */
    new_core(h, nd);
    assert_int_equal(sinter_raft_restore(nd->r, nd->has_snap ? &nd->snap : NULL, &nd->hs, nd->log,
                                         nd->n_log, nd->applied),
                     SINTER_OK);
    h_process(h, id);
}

void h_compact(struct harness *h, sinter_raft_id id, uint64_t trailing)
{
    struct h_node *nd = h_node(h, id);
    uint64_t at = sinter_raft_applied_index(nd->r);
    assert_int_equal(at, nd->applied);
    assert_int_equal(sinter_raft_compact(nd->r, at, trailing), SINTER_OK);
    struct sinter_raft_snapshot_meta meta;
    sinter_raft_snapshot(nd->r, &meta);
    assert_int_equal(meta.index, at);
    /* The disk log must follow the snapshot: drop what it covers. */
    uint64_t base = nd->has_snap ? nd->snap.index : 0;
    size_t drop = (size_t)(meta.index - base);
    assert_true(drop <= nd->n_log);
    for (size_t i = 0; i < drop; i++) {
        free(nd->log[i].data);
    }
    if (drop > 0) {
        memmove(nd->log, nd->log + drop, (nd->n_log - drop) * sizeof *nd->log);
    }
    nd->n_log -= drop;
    nd->has_snap = true;
    nd->snap = meta;
    h_process(h, id);
}

void h_check_consistent(struct harness *h)
{
    for (size_t a = 0; a < h->n; a++) {
        const struct h_apps *x = &h->nodes[a].apps;
        for (size_t i = 0; i < x->n; i++) {
            assert_int_equal(x->v[i].index, i + 1);
        }
        for (size_t b = a + 1; b < h->n; b++) {
            const struct h_apps *y = &h->nodes[b].apps;
            size_t n = x->n < y->n ? x->n : y->n;
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(x->v[i].term, y->v[i].term);
                assert_int_equal(x->v[i].type, y->v[i].type);
                assert_int_equal(x->v[i].len, y->v[i].len);
                assert_memory_equal(x->v[i].data, y->v[i].data, sizeof x->v[i].data);
            }
            if (!h->nodes[a].up || !h->nodes[b].up) {
                continue;
            }
            struct sinter_raft *ra = h->nodes[a].r;
            struct sinter_raft *rb = h->nodes[b].r;
            uint64_t lo = sinter_raft_first_index(ra);
            if (sinter_raft_first_index(rb) > lo) {
                lo = sinter_raft_first_index(rb);
            }
            uint64_t hi = sinter_raft_commit_index(ra);
            if (sinter_raft_commit_index(rb) < hi) {
                hi = sinter_raft_commit_index(rb);
            }
            for (uint64_t i = lo; i <= hi; i++) {
                const struct sinter_raft_entry *ea;
                const struct sinter_raft_entry *eb;
                if (sinter_raft_entry_at(ra, i, &ea) == SINTER_OK &&
                    sinter_raft_entry_at(rb, i, &eb) == SINTER_OK) {
                    assert_int_equal(ea->term, eb->term);
                }
            }
        }
    }
}

bool h_applied_has(struct harness *h, sinter_raft_id id, const char *s)
{
    const struct h_apps *x = &h_node(h, id)->apps;
    size_t len = strlen(s);
    for (size_t i = 0; i < x->n; i++) {
        if (x->v[i].type == SINTER_RAFT_ENTRY_NORMAL && x->v[i].len == len &&
            memcmp(x->v[i].data, s, len < 16 ? len : 16) == 0) {
            return true;
        }
    }
    return false;
}

size_t h_applied_normal(struct harness *h, sinter_raft_id id)
{
    const struct h_apps *x = &h_node(h, id)->apps;
    size_t c = 0;
    for (size_t i = 0; i < x->n; i++) {
        c += x->v[i].type == SINTER_RAFT_ENTRY_NORMAL;
    }
    return c;
}
