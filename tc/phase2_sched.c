/*
 * The phase-2 driver's scheduler (see tc/phase2_sched.h): a hash of the branches being driven, a
 * hash of their globals, a binary min-heap on `when` for waiting and leased branches, and one FIFO
 * of ready branches per resource id, so a poll naming k resources costs O(k + items handed out),
 * never a scan of every pending branch (the bench target is thousands of globals per second).
 */
#include "tc/phase2_sched.h"

#include <stdlib.h>
#include <string.h>

#include "sinter/error.h"

struct sinter_p2_global {
    uint64_t xid_index;
    bool commit;
    uint64_t first_ms;   /* replicated first attempt, or this leader's estimate (wall clock) */
    bool start_sent;     /* first_ms is set: replicated, asked for, or estimated at a delivery */
    bool start_deferred; /* first_ms is this leader's estimate only: PHASE2_START at the next
                            lease expiry unless a BRANCH_RESULT records a base first */
    uint64_t decided_ms;
    uint64_t deadline;       /* wall: first_ms + max retry, saturated; valid when start_sent */
    uint64_t deadline_asked; /* when RETRY_TIMEOUT was last asked for (monotonic); 0 never */
    size_t dl_idx;           /* index in the deadline heap, SIZE_MAX when not in it */
    bool expired;            /* in the expired list (deadline passed, not ended yet) */
    struct sinter_p2_global *xprev, *xnext; /* expired list */
    size_t n_branches;
    struct sinter_p2_branch *branches;
    struct sinter_p2_global *hnext;
};

/* One per distinct resource id of the tracked branches, referenced by each of them and freed with
 * the last one: a client names resource ids freely, so the table must not keep every id ever
 * seen. */
struct sinter_p2_rqueue {
    char *id;
    uint32_t len;
    size_t refs; /* branches whose b->q is this queue */
    struct sinter_p2_branch *head, *tail;
    struct sinter_p2_rqueue *hnext;
};

struct sinter_p2_sched {
    struct sinter_p2_cfg cfg;
    sinter_p2_rand_fn rnd;
    void *rnd_arg;
    struct sinter_p2_branch **bh; /* branch hash */
    size_t bh_cap, n_branches;
    struct sinter_p2_global **gh; /* global hash */
    size_t gh_cap, n_globals;
    struct sinter_p2_rqueue **rq; /* resource queue hash, grown with the number of queues */
    size_t rq_cap, n_rq;
    struct sinter_p2_branch **heap;
    size_t heap_n, heap_cap;
    size_t n_ready;
    struct sinter_p2_global **dheap; /* globals with a first attempt, on `deadline` (wall) */
    size_t dheap_n, dheap_cap;
    struct sinter_p2_global *expired; /* past the deadline, RETRY_TIMEOUT being asked for */
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t bkey(uint64_t xid, uint64_t branch, size_t cap)
{
    return (size_t)(mix(xid ^ mix(branch)) & (cap - 1));
}

static size_t gkey(uint64_t xid, size_t cap)
{
    return (size_t)(mix(xid) & (cap - 1));
}

static size_t skey(const char *p, uint32_t n, size_t cap)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (uint32_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    }
    return (size_t)(mix(h) & (cap - 1));
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t sinter_p2_backoff_ms(const struct sinter_p2_cfg *cfg, uint32_t attempt, uint64_t r)
{
    uint64_t cap = cfg->retry_initial_ms;
    for (uint32_t i = 1; i < attempt && cap < cfg->retry_max_ms; i++) {
        cap *= 2; /* initial * 2^(attempt-1), stopping at the cap (no overflow) */
    }
    if (cap > cfg->retry_max_ms) {
        cap = cfg->retry_max_ms;
    }
    uint64_t d = cap == UINT64_MAX ? r : r % (cap + 1);
    uint64_t floor = cfg->retry_initial_ms / 2;
    return d < floor ? floor : d;
}

bool sinter_p2_timeout_due(uint64_t begin_ms, uint64_t timeout_ms, uint64_t max_skew_ms,
                           uint64_t led_ms, uint64_t wall)
{
    /* The deadline was stamped by whichever leader ran the BEGIN; this leader's clock may be
     * ahead of it by up to max_skew, so only a time past deadline + skew is surely past the
     * deadline on the begin's clock. A leader that just took over waits max_skew first (measured
     * on the monotonic clock, so a wall-clock step cannot shorten it): a clock that jumped
     * forward on restart is then caught by NTP before it decides anything. */
    if (led_ms < max_skew_ms) {
        return false;
    }
    return wall > sat_add(sat_add(begin_ms, timeout_ms), max_skew_ms);
}

int sinter_p2_sched_new(struct sinter_p2_sched **out, const struct sinter_p2_cfg *cfg,
                        sinter_p2_rand_fn rnd, void *rnd_arg)
{
    if (out == NULL || cfg == NULL || rnd == NULL || cfg->retry_initial_ms == 0 ||
        cfg->lease_ms == 0 || cfg->retry_max_ms < cfg->retry_initial_ms) {
        return SINTER_EINVAL;
    }
    struct sinter_p2_sched *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SINTER_ENOMEM;
    }
    s->cfg = *cfg;
    s->rnd = rnd;
    s->rnd_arg = rnd_arg;
    s->bh_cap = 64;
    s->gh_cap = 64;
    s->rq_cap = 16;
    s->bh = calloc(s->bh_cap, sizeof *s->bh);
    s->gh = calloc(s->gh_cap, sizeof *s->gh);
    s->rq = calloc(s->rq_cap, sizeof *s->rq);
    if (s->bh == NULL || s->gh == NULL || s->rq == NULL) {
        sinter_p2_sched_free(s);
        return SINTER_ENOMEM;
    }
    *out = s;
    return SINTER_OK;
}

static void branch_free(struct sinter_p2_branch *b)
{
    free(b->resource_id);
    free(b->app_data);
    free(b);
}

void sinter_p2_sched_free(struct sinter_p2_sched *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; s->bh != NULL && i < s->bh_cap; i++) {
        while (s->bh[i] != NULL) {
            struct sinter_p2_branch *b = s->bh[i];
            s->bh[i] = b->hnext;
            branch_free(b);
        }
    }
    for (size_t i = 0; s->gh != NULL && i < s->gh_cap; i++) {
        while (s->gh[i] != NULL) {
            struct sinter_p2_global *g = s->gh[i];
            s->gh[i] = g->hnext;
            free(g);
        }
    }
    for (size_t i = 0; s->rq != NULL && i < s->rq_cap; i++) {
        while (s->rq[i] != NULL) {
            struct sinter_p2_rqueue *q = s->rq[i];
            s->rq[i] = q->hnext;
            free(q->id);
            free(q);
        }
    }
    free(s->bh);
    free(s->gh);
    free(s->rq);
    free(s->heap);
    free(s->dheap);
    free(s);
}

/* ---- heap on `when` ---- */

static void heap_set(struct sinter_p2_sched *s, size_t i, struct sinter_p2_branch *b)
{
    s->heap[i] = b;
    b->heap_idx = i;
}

/* Ordered by time, then xid and branch: equal times pop in one deterministic order (oldest global
 * first), whatever order they were pushed in. */
static bool before(const struct sinter_p2_branch *a, const struct sinter_p2_branch *b)
{
    if (a->when != b->when) {
        return a->when < b->when;
    }
    if (a->xid.index != b->xid.index) {
        return a->xid.index < b->xid.index;
    }
    return a->branch_id < b->branch_id;
}

static void heap_up(struct sinter_p2_sched *s, size_t i)
{
    struct sinter_p2_branch *b = s->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(b, s->heap[p])) {
            break;
        }
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, b);
}

static void heap_down(struct sinter_p2_sched *s, size_t i)
{
    struct sinter_p2_branch *b = s->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const struct sinter_p2_branch *w = b;
        if (l < s->heap_n && before(s->heap[l], w)) {
            m = l;
            w = s->heap[l];
        }
        if (l + 1 < s->heap_n && before(s->heap[l + 1], w)) {
            m = l + 1;
        }
        if (m == i) {
            break;
        }
        heap_set(s, i, s->heap[m]);
        i = m;
    }
    heap_set(s, i, b);
}

static void heap_remove(struct sinter_p2_sched *s, struct sinter_p2_branch *b)
{
    size_t i = b->heap_idx;
    if (i == SIZE_MAX) {
        return;
    }
    b->heap_idx = SIZE_MAX;
    s->heap_n--;
    if (i == s->heap_n) {
        return;
    }
    heap_set(s, i, s->heap[s->heap_n]);
    heap_down(s, i);
    heap_up(s, s->heap[i]->heap_idx);
}

/* Heap capacity is reserved at add, so a push for a branch already counted cannot fail. */
static void heap_push_reserved(struct sinter_p2_sched *s, struct sinter_p2_branch *b)
{
    heap_set(s, s->heap_n++, b);
    heap_up(s, s->heap_n - 1);
}

/* ---- ready queues ---- */

static struct sinter_p2_rqueue *rq_find(const struct sinter_p2_sched *s, const char *id,
                                        uint32_t len)
{
    for (struct sinter_p2_rqueue *q = s->rq[skey(id, len, s->rq_cap)]; q != NULL; q = q->hnext) {
        if (q->len == len && memcmp(q->id, id, len) == 0) {
            return q;
        }
    }
    return NULL;
}

static void rq_push(struct sinter_p2_branch *b)
{
    struct sinter_p2_rqueue *q = b->q;
    b->qnext = NULL;
    b->qprev = q->tail;
    if (q->tail != NULL) {
        q->tail->qnext = b;
    } else {
        q->head = b;
    }
    q->tail = b;
}

static void rq_remove(struct sinter_p2_branch *b)
{
    struct sinter_p2_rqueue *q = b->q;
    if (b->qprev != NULL) {
        b->qprev->qnext = b->qnext;
    } else {
        q->head = b->qnext;
    }
    if (b->qnext != NULL) {
        b->qnext->qprev = b->qprev;
    } else {
        q->tail = b->qprev;
    }
    b->qprev = b->qnext = NULL;
}

static int grow_rq(struct sinter_p2_sched *s)
{
    size_t nc = s->rq_cap * 2;
    struct sinter_p2_rqueue **nh = calloc(nc, sizeof *nh);
    if (nh == NULL) {
        return SINTER_ENOMEM;
    }
    for (size_t i = 0; i < s->rq_cap; i++) {
        while (s->rq[i] != NULL) {
            struct sinter_p2_rqueue *q = s->rq[i];
            s->rq[i] = q->hnext;
            size_t k = skey(q->id, q->len, nc);
            q->hnext = nh[k];
            nh[k] = q;
        }
    }
    free(s->rq);
    s->rq = nh;
    s->rq_cap = nc;
    return SINTER_OK;
}

/* Drops one branch's reference to its queue; the last one frees the queue. */
static void rq_unref(struct sinter_p2_sched *s, struct sinter_p2_rqueue *q)
{
    if (--q->refs > 0) {
        return;
    }
    struct sinter_p2_rqueue **pp = &s->rq[skey(q->id, q->len, s->rq_cap)];
    while (*pp != q) {
        pp = &(*pp)->hnext;
    }
    *pp = q->hnext;
    s->n_rq--;
    free(q->id);
    free(q);
}

/* ---- the deadline heap of globals (wall clock: the deadline is replicated time) ---- */

static void dheap_set(struct sinter_p2_sched *s, size_t i, struct sinter_p2_global *g)
{
    s->dheap[i] = g;
    g->dl_idx = i;
}

static bool dbefore(const struct sinter_p2_global *a, const struct sinter_p2_global *b)
{
    return a->deadline != b->deadline ? a->deadline < b->deadline : a->xid_index < b->xid_index;
}

static void dheap_up(struct sinter_p2_sched *s, size_t i)
{
    struct sinter_p2_global *g = s->dheap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!dbefore(g, s->dheap[p])) {
            break;
        }
        dheap_set(s, i, s->dheap[p]);
        i = p;
    }
    dheap_set(s, i, g);
}

static void dheap_down(struct sinter_p2_sched *s, size_t i)
{
    struct sinter_p2_global *g = s->dheap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const struct sinter_p2_global *w = g;
        if (l < s->dheap_n && dbefore(s->dheap[l], w)) {
            m = l;
            w = s->dheap[l];
        }
        if (l + 1 < s->dheap_n && dbefore(s->dheap[l + 1], w)) {
            m = l + 1;
        }
        if (m == i) {
            break;
        }
        dheap_set(s, i, s->dheap[m]);
        i = m;
    }
    dheap_set(s, i, g);
}

static void dheap_remove(struct sinter_p2_sched *s, struct sinter_p2_global *g)
{
    size_t i = g->dl_idx;
    if (i == SIZE_MAX) {
        return;
    }
    g->dl_idx = SIZE_MAX;
    s->dheap_n--;
    if (i == s->dheap_n) {
        return;
    }
    dheap_set(s, i, s->dheap[s->dheap_n]);
    dheap_down(s, i);
    dheap_up(s, s->dheap[i]->dl_idx);
}

static void expired_unlink(struct sinter_p2_sched *s, struct sinter_p2_global *g)
{
    if (!g->expired) {
        return;
    }
    if (g->xprev != NULL) {
        g->xprev->xnext = g->xnext;
    } else {
        s->expired = g->xnext;
    }
    if (g->xnext != NULL) {
        g->xnext->xprev = g->xprev;
    }
    g->xprev = g->xnext = NULL;
    g->expired = false;
}

static uint64_t deadline_of(const struct sinter_p2_sched *s, const struct sinter_p2_global *g)
{
    return g->commit ? s->cfg.max_commit_retry_ms : s->cfg.max_rollback_retry_ms;
}

/* (Re)arms g's deadline timer from its first-attempt time: a timer per global, independent of
 * where its branches are (waiting, queued for a poller that never comes, leased), so a global
 * whose RMs are all gone still reaches RETRY_TIMEOUT (docs/phase2-protocol.md). Capacity for
 * every global is reserved at add, so this cannot fail. */
static void deadline_arm(struct sinter_p2_sched *s, struct sinter_p2_global *g)
{
    g->deadline = sat_add(g->first_ms, deadline_of(s, g));
    expired_unlink(s, g);
    if (g->dl_idx != SIZE_MAX) {
        dheap_up(s, g->dl_idx);
        dheap_down(s, g->dl_idx);
        return;
    }
    dheap_set(s, s->dheap_n++, g);
    dheap_up(s, s->dheap_n - 1);
}

static bool past_deadline(const struct sinter_p2_global *g, uint64_t wall)
{
    return g->start_sent && wall > g->deadline;
}

/* Takes b out of whatever structure its state puts it in. */
static void unlink_state(struct sinter_p2_sched *s, struct sinter_p2_branch *b)
{
    if (b->state == SINTER_P2_READY) {
        rq_remove(b);
        s->n_ready--;
    } else {
        heap_remove(s, b);
    }
}

/* ---- hashes ---- */

static struct sinter_p2_global *g_find(const struct sinter_p2_sched *s, uint64_t xid)
{
    for (struct sinter_p2_global *g = s->gh[gkey(xid, s->gh_cap)]; g != NULL; g = g->hnext) {
        if (g->xid_index == xid) {
            return g;
        }
    }
    return NULL;
}

static struct sinter_p2_branch *b_find(const struct sinter_p2_sched *s, uint64_t xid,
                                       uint64_t branch)
{
    for (struct sinter_p2_branch *b = s->bh[bkey(xid, branch, s->bh_cap)]; b != NULL;
         b = b->hnext) {
        if (b->xid.index == xid && b->branch_id == branch) {
            return b;
        }
    }
    return NULL;
}

static int grow_b(struct sinter_p2_sched *s)
{
    size_t nc = s->bh_cap * 2;
    struct sinter_p2_branch **nh = calloc(nc, sizeof *nh);
    if (nh == NULL) {
        return SINTER_ENOMEM;
    }
    for (size_t i = 0; i < s->bh_cap; i++) {
        while (s->bh[i] != NULL) {
            struct sinter_p2_branch *b = s->bh[i];
            s->bh[i] = b->hnext;
            size_t k = bkey(b->xid.index, b->branch_id, nc);
            b->hnext = nh[k];
            nh[k] = b;
        }
    }
    free(s->bh);
    s->bh = nh;
    s->bh_cap = nc;
    return SINTER_OK;
}

static int grow_g(struct sinter_p2_sched *s)
{
    size_t nc = s->gh_cap * 2;
    struct sinter_p2_global **nh = calloc(nc, sizeof *nh);
    if (nh == NULL) {
        return SINTER_ENOMEM;
    }
    for (size_t i = 0; i < s->gh_cap; i++) {
        while (s->gh[i] != NULL) {
            struct sinter_p2_global *g = s->gh[i];
            s->gh[i] = g->hnext;
            size_t k = gkey(g->xid_index, nc);
            g->hnext = nh[k];
            nh[k] = g;
        }
    }
    free(s->gh);
    s->gh = nh;
    s->gh_cap = nc;
    return SINTER_OK;
}

static void remove_branch(struct sinter_p2_sched *s, struct sinter_p2_branch *b)
{
    unlink_state(s, b);
    struct sinter_p2_branch **pp = &s->bh[bkey(b->xid.index, b->branch_id, s->bh_cap)];
    while (*pp != b) {
        pp = &(*pp)->hnext;
    }
    *pp = b->hnext;
    s->n_branches--;
    struct sinter_p2_global *g = b->g;
    pp = &g->branches;
    while (*pp != b) {
        pp = &(*pp)->gnext;
    }
    *pp = b->gnext;
    g->n_branches--;
    rq_unref(s, b->q);
    branch_free(b);
}

static void remove_global(struct sinter_p2_sched *s, struct sinter_p2_global *g)
{
    while (g->branches != NULL) {
        remove_branch(s, g->branches);
    }
    struct sinter_p2_global **pp = &s->gh[gkey(g->xid_index, s->gh_cap)];
    while (*pp != g) {
        pp = &(*pp)->hnext;
    }
    *pp = g->hnext;
    s->n_globals--;
    dheap_remove(s, g);
    expired_unlink(s, g);
    free(g);
}

int sinter_p2_add(struct sinter_p2_sched *s, const struct sinter_p2_branch_info *info, uint64_t now,
                  bool *added)
{
    *added = false;
    if (s == NULL || info == NULL || info->resource_id == NULL) {
        return SINTER_EINVAL;
    }
    if (b_find(s, info->xid.index, info->branch_id) != NULL) {
        return SINTER_OK;
    }
    if (s->n_branches + 1 > s->bh_cap && grow_b(s) != SINTER_OK) {
        return SINTER_ENOMEM;
    }
    if (s->n_globals + 1 > s->gh_cap && grow_g(s) != SINTER_OK) {
        return SINTER_ENOMEM;
    }
    if (s->heap_n == s->heap_cap || s->n_branches + 1 > s->heap_cap) {
        /* Reserve heap room for every branch, so moving one into the heap never fails later. */
        size_t nc = s->heap_cap ? s->heap_cap * 2 : 64;
        struct sinter_p2_branch **nh = realloc(s->heap, nc * sizeof *nh);
        if (nh == NULL) {
            return SINTER_ENOMEM;
        }
        s->heap = nh;
        s->heap_cap = nc;
    }
    if (s->n_globals + 1 > s->dheap_cap) {
        /* Room for every global in the deadline heap, so arming its timer never fails. */
        size_t nc = s->dheap_cap ? s->dheap_cap * 2 : 64;
        struct sinter_p2_global **nh = realloc(s->dheap, nc * sizeof *nh);
        if (nh == NULL) {
            return SINTER_ENOMEM;
        }
        s->dheap = nh;
        s->dheap_cap = nc;
    }
    if (s->n_rq + 1 > s->rq_cap && grow_rq(s) != SINTER_OK) {
        return SINTER_ENOMEM;
    }
    uint32_t rlen = (uint32_t)strlen(info->resource_id);
    struct sinter_p2_rqueue *q = rq_find(s, info->resource_id, rlen);
    if (q == NULL) {
        q = calloc(1, sizeof *q);
        if (q == NULL || (q->id = malloc(rlen + 1u)) == NULL) {
            free(q);
            return SINTER_ENOMEM;
        }
        memcpy(q->id, info->resource_id, rlen + 1u);
        q->len = rlen;
        size_t k = skey(q->id, rlen, s->rq_cap);
        q->hnext = s->rq[k];
        s->rq[k] = q;
        s->n_rq++;
    }
    q->refs++; /* held by the branch below; dropped again on failure */
    struct sinter_p2_branch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        rq_unref(s, q);
        return SINTER_ENOMEM;
    }
    b->resource_id = malloc(rlen + 1u);
    b->app_data = info->app_data_len > 0 ? malloc(info->app_data_len) : NULL;
    if (b->resource_id == NULL || (info->app_data_len > 0 && b->app_data == NULL)) {
        branch_free(b);
        rq_unref(s, q);
        return SINTER_ENOMEM;
    }
    struct sinter_p2_global *g = g_find(s, info->xid.index);
    if (g == NULL) {
        g = calloc(1, sizeof *g);
        if (g == NULL) {
            branch_free(b);
            rq_unref(s, q);
            return SINTER_ENOMEM;
        }
        g->xid_index = info->xid.index;
        g->commit = info->commit;
        g->first_ms = info->phase2_first_ms;
        g->start_sent = info->phase2_first_ms != 0;
        g->decided_ms = info->decided_ms;
        g->dl_idx = SIZE_MAX;
        size_t k = gkey(g->xid_index, s->gh_cap);
        g->hnext = s->gh[k];
        s->gh[k] = g;
        s->n_globals++;
        if (g->start_sent) {
            deadline_arm(s, g);
        }
    }
    memcpy(b->resource_id, info->resource_id, rlen + 1u);
    if (info->app_data_len > 0) {
        memcpy(b->app_data, info->app_data, info->app_data_len);
    }
    b->xid = info->xid;
    b->branch_id = info->branch_id;
    b->commit = g->commit;
    b->branch_type = info->branch_type;
    b->app_data_len = info->app_data_len;
    b->xa_local_xid = info->xa_local_xid;
    b->attempt = info->attempts_done;
    b->state = SINTER_P2_WAITING;
    b->when = now; /* a new leader redelivers every pending branch at once */
    b->g = g;
    b->q = q;
    b->heap_idx = SIZE_MAX;
    size_t k = bkey(b->xid.index, b->branch_id, s->bh_cap);
    b->hnext = s->bh[k];
    s->bh[k] = b;
    b->gnext = g->branches;
    g->branches = b;
    g->n_branches++;
    s->n_branches++;
    heap_push_reserved(s, b);
    *added = true;
    return SINTER_OK;
}

static void schedule_retry(struct sinter_p2_sched *s, struct sinter_p2_branch *b, uint64_t now)
{
    b->state = SINTER_P2_WAITING;
    b->when = sat_add(
        now, sinter_p2_backoff_ms(&s->cfg, b->attempt > 0 ? b->attempt : 1, s->rnd(s->rnd_arg)));
    heap_push_reserved(s, b);
}

/* A branch of a global past its deadline is not delivered: it waits (looked at again every
 * retry_initial) until the state machine ends the global or a later replicated first-attempt time
 * moves the deadline. */
static void park_past_deadline(struct sinter_p2_sched *s, struct sinter_p2_branch *b, uint64_t now)
{
    b->state = SINTER_P2_WAITING;
    b->when = sat_add(now, s->cfg.retry_initial_ms);
    heap_push_reserved(s, b);
}

/* Asks for RETRY_TIMEOUT of g (at most once per retry_initial, monotonic) if there is room. */
static void ask_deadline(struct sinter_p2_sched *s, struct sinter_p2_global *g, uint64_t now,
                         struct sinter_p2_events *ev)
{
    if (g->deadline_asked != 0 && now < sat_add(g->deadline_asked, s->cfg.retry_initial_ms)) {
        return;
    }
    if (ev->n_deadline < ev->deadline_cap) {
        g->deadline_asked = now > 0 ? now : 1;
        struct sinter_xid x =
            g->branches != NULL ? g->branches->xid : (struct sinter_xid){0, g->xid_index};
        ev->deadline[ev->n_deadline++] = (struct sinter_p2_deadline){x, g->commit};
    }
    /* no room: asked on a later advance (deadline_asked unchanged) */
}

void sinter_p2_advance(struct sinter_p2_sched *s, uint64_t now, uint64_t wall,
                       struct sinter_p2_events *ev)
{
    /* Deadlines first (wall clock: first_ms is replicated wall time, and the state machine
     * re-checks RETRY_TIMEOUT against it): a global whose deadline passed moves to the expired
     * list, whatever its branches are doing. */
    while (s->dheap_n > 0 && wall > s->dheap[0]->deadline) {
        struct sinter_p2_global *g = s->dheap[0];
        dheap_remove(s, g);
        g->expired = true;
        g->xprev = NULL;
        g->xnext = s->expired;
        if (s->expired != NULL) {
            s->expired->xprev = g;
        }
        s->expired = g;
    }
    for (struct sinter_p2_global *g = s->expired, *next; g != NULL; g = next) {
        next = g->xnext;
        if (!past_deadline(g, wall)) {
            deadline_arm(s, g); /* a later first attempt (set_first) or the clock stepped back */
            continue;
        }
        ask_deadline(s, g, now, ev);
    }
    while (s->heap_n > 0 && s->heap[0]->when <= now) {
        struct sinter_p2_branch *b = s->heap[0];
        heap_remove(s, b);
        struct sinter_p2_global *g = b->g;
        if (b->state == SINTER_P2_LEASED) {
            /* No report within the lease: the RM died or hung; a failed attempt (the contract's
             * "retried like a retryable failure"). */
            ev->lease_expired++;
            ev->retries++;
            if (g->start_deferred && ev->n_start < ev->start_cap) {
                /* The delivery went unanswered, and with it the BRANCH_RESULT that would have
                 * recorded the deadline base: record it now (lease_ms after the first attempt at
                 * most), so a later leader counts the deadline from it too. */
                g->start_deferred = false;
                ev->start[ev->n_start++] = b->xid;
            }
            schedule_retry(s, b, now);
            continue;
        }
        if (past_deadline(g, wall)) {
            park_past_deadline(s, b, now);
            continue;
        }
        b->state = SINTER_P2_READY;
        rq_push(b);
        s->n_ready++;
        ev->ready++;
    }
}

size_t sinter_p2_item_bytes(const struct sinter_p2_branch *b)
{
    return 64u + strlen(b->resource_id) + b->app_data_len;
}

size_t sinter_p2_take(struct sinter_p2_sched *s, uint64_t now, uint64_t wall,
                      const char *const *resources, const uint32_t *lens, size_t n,
                      struct sinter_p2_take_item *out, size_t max, size_t *bytes, size_t max_bytes)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        struct sinter_p2_rqueue *q = rq_find(s, resources[i], lens[i]);
        while (q != NULL && q->head != NULL && k < max) {
            struct sinter_p2_branch *b = q->head;
            if (past_deadline(b->g, wall)) {
                /* Queued before the deadline, its poller came after it: not delivered (the next
                 * advance asks for RETRY_TIMEOUT from the global's timer). */
                rq_remove(b);
                s->n_ready--;
                park_past_deadline(s, b, now);
                continue;
            }
            size_t cost = sinter_p2_item_bytes(b);
            if (*bytes > 0 && *bytes + cost > max_bytes) {
                return k; /* the reply frame is full; the branch stays first in line */
            }
            *bytes += cost;
            rq_remove(b);
            s->n_ready--;
            b->state = SINTER_P2_LEASED;
            b->attempt++;
            b->when = sat_add(now, s->cfg.lease_ms);
            heap_push_reserved(s, b);
            out[k].b = b;
            if (!b->g->start_sent) {
                /* The deadline counts from the first attempt of the global (Seata's
                 * MAX_COMMIT_RETRY_TIMEOUT counts from the session's begin; we count from phase
                 * 2 so a long phase one does not eat the retry budget). Replicated lazily: see
                 * sinter_p2_advance's start[] and sinter_p2_base_recorded. */
                b->g->start_sent = true;
                b->g->start_deferred = true;
                b->g->first_ms = wall;
                deadline_arm(s, b->g);
            }
            k++;
        }
    }
    return k;
}

int sinter_p2_retry(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id,
                    uint32_t attempt, uint64_t now)
{
    struct sinter_p2_branch *b = b_find(s, xid_index, branch_id);
    if (b == NULL) {
        return SINTER_ENOTFOUND;
    }
    if (b->state != SINTER_P2_LEASED || b->attempt != attempt) {
        /* A late report of an earlier delivery (its lease expired and the branch moved on) or a
         * duplicate: the delivery in flight, or the backoff already running, stays as it is. */
        return SINTER_ESTALE;
    }
    heap_remove(s, b);
    schedule_retry(s, b, now);
    return SINTER_OK;
}

int sinter_p2_defer(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id, uint64_t now)
{
    struct sinter_p2_branch *b = b_find(s, xid_index, branch_id);
    if (b == NULL) {
        return SINTER_ENOTFOUND;
    }
    if (b->state == SINTER_P2_LEASED) {
        return SINTER_ESTALE;
    }
    unlink_state(s, b);
    schedule_retry(s, b, now);
    return SINTER_OK;
}

void sinter_p2_start_failed(struct sinter_p2_sched *s, uint64_t xid_index)
{
    struct sinter_p2_global *g = g_find(s, xid_index);
    if (g == NULL || !g->start_sent) {
        return;
    }
    g->start_sent = false;
    g->start_deferred = false;
    g->first_ms = 0;
    g->deadline_asked = 0;
    dheap_remove(s, g);
    expired_unlink(s, g);
}

void sinter_p2_branch_ended(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id)
{
    struct sinter_p2_branch *b = b_find(s, xid_index, branch_id);
    if (b == NULL) {
        return;
    }
    struct sinter_p2_global *g = b->g;
    remove_branch(s, b);
    if (g->n_branches == 0) {
        remove_global(s, g);
    }
}

void sinter_p2_global_ended(struct sinter_p2_sched *s, uint64_t xid_index)
{
    struct sinter_p2_global *g = g_find(s, xid_index);
    if (g != NULL) {
        remove_global(s, g);
    }
}

void sinter_p2_set_first(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t phase2_first_ms)
{
    struct sinter_p2_global *g = g_find(s, xid_index);
    if (g != NULL && phase2_first_ms != 0) {
        g->first_ms = phase2_first_ms;
        g->start_sent = true;
        g->start_deferred = false;
        deadline_arm(s, g);
    }
}

void sinter_p2_base_recorded(struct sinter_p2_sched *s, uint64_t xid_index)
{
    struct sinter_p2_global *g = g_find(s, xid_index);
    if (g != NULL) {
        g->start_deferred = false;
    }
}

bool sinter_p2_has_global(const struct sinter_p2_sched *s, uint64_t xid_index)
{
    return g_find(s, xid_index) != NULL;
}

const struct sinter_p2_branch *sinter_p2_find(const struct sinter_p2_sched *s, uint64_t xid_index,
                                              uint64_t branch_id)
{
    return b_find(s, xid_index, branch_id);
}

uint64_t sinter_p2_decided_ms(const struct sinter_p2_sched *s, uint64_t xid_index)
{
    const struct sinter_p2_global *g = g_find(s, xid_index);
    return g != NULL ? g->decided_ms : 0;
}

size_t sinter_p2_count(const struct sinter_p2_sched *s)
{
    return s->n_branches;
}

size_t sinter_p2_ready_count(const struct sinter_p2_sched *s)
{
    return s->n_ready;
}

uint64_t sinter_p2_next_when(const struct sinter_p2_sched *s)
{
    return s->heap_n > 0 ? s->heap[0]->when : UINT64_MAX;
}

size_t sinter_p2_resource_count(const struct sinter_p2_sched *s)
{
    return s->n_rq;
}
