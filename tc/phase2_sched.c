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
    uint64_t first_ms; /* replicated first attempt, or this leader's estimate */
    bool start_sent;   /* PHASE2_START asked for (or the state already had a time) */
    uint64_t decided_ms;
    uint64_t deadline_asked; /* when RETRY_TIMEOUT was last asked for; 0 never */
    size_t n_branches;
    struct sinter_p2_branch *branches;
    struct sinter_p2_global *hnext;
};

struct sinter_p2_rqueue {
    char *id;
    uint32_t len;
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
    struct sinter_p2_rqueue *rq[256]; /* resource queues (few resources) */
    struct sinter_p2_branch **heap;
    size_t heap_n, heap_cap;
    size_t n_ready;
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

static uint32_t skey(const char *p, uint32_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint32_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    }
    return h & 255u;
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
                           uint64_t leader_since_ms, uint64_t now)
{
    /* The deadline was stamped by whichever leader ran the BEGIN; this leader's clock may be
     * ahead of it by up to max_skew, so only a time past deadline + skew is surely past the
     * deadline on the begin's clock. A leader that just took over waits max_skew first: a clock
     * that jumped forward on restart is then caught by NTP before it decides anything. */
    if (now < leader_since_ms + max_skew_ms) {
        return false;
    }
    return now > begin_ms + timeout_ms + max_skew_ms;
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
    s->bh = calloc(s->bh_cap, sizeof *s->bh);
    s->gh = calloc(s->gh_cap, sizeof *s->gh);
    if (s->bh == NULL || s->gh == NULL) {
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
    for (size_t i = 0; i < 256; i++) {
        while (s->rq[i] != NULL) {
            struct sinter_p2_rqueue *q = s->rq[i];
            s->rq[i] = q->hnext;
            free(q->id);
            free(q);
        }
    }
    free(s->bh);
    free(s->gh);
    free(s->heap);
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
    for (struct sinter_p2_rqueue *q = s->rq[skey(id, len)]; q != NULL; q = q->hnext) {
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
        uint32_t k = skey(q->id, rlen);
        q->hnext = s->rq[k];
        s->rq[k] = q;
    }
    struct sinter_p2_branch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return SINTER_ENOMEM;
    }
    b->resource_id = malloc(rlen + 1u);
    b->app_data = info->app_data_len > 0 ? malloc(info->app_data_len) : NULL;
    if (b->resource_id == NULL || (info->app_data_len > 0 && b->app_data == NULL)) {
        branch_free(b);
        return SINTER_ENOMEM;
    }
    struct sinter_p2_global *g = g_find(s, info->xid.index);
    if (g == NULL) {
        g = calloc(1, sizeof *g);
        if (g == NULL) {
            branch_free(b);
            return SINTER_ENOMEM;
        }
        g->xid_index = info->xid.index;
        g->commit = info->commit;
        g->first_ms = info->phase2_first_ms;
        g->start_sent = info->phase2_first_ms != 0;
        g->decided_ms = info->decided_ms;
        size_t k = gkey(g->xid_index, s->gh_cap);
        g->hnext = s->gh[k];
        s->gh[k] = g;
        s->n_globals++;
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

static uint64_t deadline_of(const struct sinter_p2_sched *s, const struct sinter_p2_global *g)
{
    return g->commit ? s->cfg.max_commit_retry_ms : s->cfg.max_rollback_retry_ms;
}

static void schedule_retry(struct sinter_p2_sched *s, struct sinter_p2_branch *b, uint64_t now)
{
    b->state = SINTER_P2_WAITING;
    b->when =
        now + sinter_p2_backoff_ms(&s->cfg, b->attempt > 0 ? b->attempt : 1, s->rnd(s->rnd_arg));
    heap_push_reserved(s, b);
}

void sinter_p2_advance(struct sinter_p2_sched *s, uint64_t now, struct sinter_p2_events *ev)
{
    while (s->heap_n > 0 && s->heap[0]->when <= now) {
        struct sinter_p2_branch *b = s->heap[0];
        heap_remove(s, b);
        struct sinter_p2_global *g = b->g;
        if (b->state == SINTER_P2_LEASED) {
            /* No report within the lease: the RM died or hung; a failed attempt (the contract's
             * "retried like a retryable failure"). */
            ev->lease_expired++;
            ev->retries++;
            schedule_retry(s, b, now);
            continue;
        }
        if (g->start_sent && now > g->first_ms + deadline_of(s, g)) {
            /* Past the deadline: no more deliveries; ask for RETRY_TIMEOUT (at most once per
             * retry_initial) and look again later in case the state machine refuses it (its
             * first-attempt time may be later than this leader's estimate). */
            if (g->deadline_asked == 0 || now >= g->deadline_asked + s->cfg.retry_initial_ms) {
                g->deadline_asked = now;
                if (ev->n_deadline < ev->deadline_cap) {
                    ev->deadline[ev->n_deadline++] = (struct sinter_p2_deadline){b->xid, g->commit};
                } else {
                    g->deadline_asked = 0; /* no room: ask on the next advance */
                }
            }
            b->when = now + s->cfg.retry_initial_ms;
            heap_push_reserved(s, b);
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

size_t sinter_p2_take(struct sinter_p2_sched *s, uint64_t now, const char *const *resources,
                      const uint32_t *lens, size_t n, struct sinter_p2_take_item *out, size_t max,
                      size_t *bytes, size_t max_bytes)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        struct sinter_p2_rqueue *q = rq_find(s, resources[i], lens[i]);
        while (q != NULL && q->head != NULL && k < max) {
            struct sinter_p2_branch *b = q->head;
            size_t cost = sinter_p2_item_bytes(b);
            if (*bytes > 0 && *bytes + cost > max_bytes) {
                return k; /* the reply frame is full; the branch stays first in line */
            }
            *bytes += cost;
            rq_remove(b);
            s->n_ready--;
            b->state = SINTER_P2_LEASED;
            b->attempt++;
            b->when = now + s->cfg.lease_ms;
            heap_push_reserved(s, b);
            out[k].b = b;
            out[k].start = false;
            if (!b->g->start_sent) {
                /* The deadline counts from the first attempt of the global (Seata's
                 * MAX_COMMIT_RETRY_TIMEOUT counts from the session's begin; we count from phase
                 * 2 so a long phase one does not eat the retry budget). */
                b->g->start_sent = true;
                b->g->first_ms = now;
                out[k].start = true;
            }
            k++;
        }
    }
    return k;
}

int sinter_p2_retry(struct sinter_p2_sched *s, uint64_t xid_index, uint64_t branch_id, uint64_t now)
{
    struct sinter_p2_branch *b = b_find(s, xid_index, branch_id);
    if (b == NULL) {
        return SINTER_ENOTFOUND;
    }
    unlink_state(s, b);
    schedule_retry(s, b, now);
    return SINTER_OK;
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
