/*
 * The cluster client core shared by the TM and RM libraries; contract in sinter/client.h.
 *
 * Waiting. Calls go out with sinter_transport_call_async and the caller waits on a small
 * reference-counted waiter (caller + completion callback), not inside sinter_transport_call: so
 * sinter_client_interrupt() can wake a caller parked in a long poll at once, and the callback,
 * which nng still runs later, frees what the abandoned caller left behind.
 *
 * Locks: c->mu guards the node table and the writes of the leader cache (read without it: the
 * entries are atomic hints); c->wmu guards the waiter list. A waiter has no lock: its result is
 * published with release order before its semaphore is posted. The callback takes no lock.
 */
#include "sinter/client.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define DEFAULT_ATTEMPT_MS 3000u
#define BACKOFF_MIN_MS     20u
#define BACKOFF_MAX_MS     500u
#define URL_MAX            256u
#define REFRESH_RETRY_MS   1000u /* after a ClusterMeta round nobody answered */

struct cnode {
    char url[URL_MAX];
    uint64_t id; /* raft node id once ClusterMeta told us, else 0 */
    struct sinter_transport_client *tc;
    atomic_bool registered;
    pthread_mutex_t reg_mu; /* one registration at a time per node */
};

/* One call in flight. A semaphore, not a mutex + condition variable: the callback publishes the
 * result (rc, reply, then done with release order) and posts; the caller waits on the semaphore
 * until done (acquire) or its stop flag. A condition variable cost one more futex wake per call
 * (glibc re-acquires the mutex after a wait in its "contended" state, so the unlock that follows
 * always enters the kernel) and a mutex hand-off with the callback. */
struct waiter {
    sem_t sem;
    atomic_int refs; /* the caller's and the transport callback's: see waiter_put */
    atomic_bool done;
    int rc;                                   /* written before done */
    struct sinter_transport_reply_msg *reply; /* written before done; freed by the last put */
    const atomic_bool *cancel;                /* the caller's own stop flag, or NULL */
    struct waiter *prev, *next;               /* c->waiters, under c->wmu */
};

struct sinter_client {
    uint64_t client_id;
    atomic_uint_fast64_t seq;
    char *secret, *app_id, *version;
    bool rm;
    char **resources;
    uint32_t n_resources;
    uint32_t deadline_ms, attempt_ms;

    pthread_mutex_t mu;
    struct cnode *nodes[SINTER_CLIENT_MAX_NODES];
    atomic_size_t n_nodes;
    /* Routing hints, read on every call without c->mu (atomic: a stale hint only costs a
     * redirect); written under c->mu, and only when they change. */
    atomic_int leader[SINTER_PROTO_MAX_GROUPS]; /* node index or -1 */
    atomic_int hint;                            /* last node that answered, or -1 */
    unsigned rr;                                /* round-robin cursor, under c->mu */
    /* Calls in flight, for interrupt(): their own lock, so the two list updates of every call
     * do not queue behind routing and node-table work on c->mu (64 client threads). */
    pthread_mutex_t wmu;
    struct waiter *waiters;
    atomic_bool interrupted;
    atomic_bool meta_known; /* a ClusterMeta answer was read once */
    atomic_uint n_groups;   /* the cluster's raft groups from ClusterMeta (0: not known yet) */
    /* Earliest time (sinter_client_now_ms) the next automatic ClusterMeta round may start; a
     * call that claims it (compare-and-swap) runs the round, the others go on without. */
    atomic_uint_fast64_t next_refresh;
};

static _Thread_local char t_detail[512];

static void detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_detail, sizeof t_detail, fmt, ap);
    va_end(ap);
}

const char *sinter_client_errmsg(void)
{
    return t_detail;
}

void sinter_client_set_errmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_detail, sizeof t_detail, fmt, ap);
    va_end(ap);
}

uint64_t sinter_client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static uint64_t random_u64(void)
{
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^
            (uint64_t)(uintptr_t)&ts;
    }
    return x;
}

static char *dupstr(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

void sinter_client_opts_default(struct sinter_client_opts *o)
{
    memset(o, 0, sizeof *o);
}

uint64_t sinter_client_id(const struct sinter_client *c)
{
    return c->client_id;
}

uint64_t sinter_client_next_seq(struct sinter_client *c)
{
    return atomic_fetch_add(&c->seq, 1) + 1;
}

size_t sinter_client_node_count(struct sinter_client *c)
{
    return atomic_load(&c->n_nodes);
}

const char *sinter_client_node_url(struct sinter_client *c, size_t i)
{
    return i < atomic_load(&c->n_nodes) ? c->nodes[i]->url : NULL;
}

int sinter_client_leader(struct sinter_client *c, uint32_t group)
{
    if (group >= SINTER_PROTO_MAX_GROUPS) {
        return -1;
    }
    return atomic_load(&c->leader[group]);
}

/* ---- node table ------------------------------------------------------------------------------ */

static void node_free(struct cnode *n)
{
    if (n != NULL) {
        sinter_transport_client_close(n->tc);
        pthread_mutex_destroy(&n->reg_mu);
        free(n);
    }
}

static int node_new(const char *url, size_t len, struct cnode **out)
{
    if (len == 0 || len >= URL_MAX) {
        return SINTER_EINVAL;
    }
    struct cnode *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return SINTER_ENOMEM;
    }
    memcpy(n->url, url, len);
    n->url[len] = '\0';
    pthread_mutex_init(&n->reg_mu, NULL);
    atomic_init(&n->registered, false);
    struct sinter_transport_client_opts to;
    sinter_transport_client_opts_default(&to);
    to.url = n->url;
    int rc = sinter_transport_client_open(&n->tc, &to);
    if (rc != SINTER_OK) {
        node_free(n);
        return rc;
    }
    *out = n;
    return SINTER_OK;
}

/* Index of the node with this URL, adding it if new; -1 if the table is full or it cannot be
 * opened. c->mu held. */
static int node_find_or_add_locked(struct sinter_client *c, const char *url, size_t len)
{
    size_t n = atomic_load(&c->n_nodes);
    for (size_t i = 0; i < n; i++) {
        if (strlen(c->nodes[i]->url) == len && memcmp(c->nodes[i]->url, url, len) == 0) {
            return (int)i;
        }
    }
    if (n >= SINTER_CLIENT_MAX_NODES) {
        return -1;
    }
    struct cnode *nn = NULL;
    if (node_new(url, len, &nn) != SINTER_OK) {
        return -1;
    }
    c->nodes[n] = nn;
    atomic_store(&c->n_nodes, n + 1); /* published after the slot is filled */
    return (int)n;
}

/* ---- open / close ---------------------------------------------------------------------------- */

int sinter_client_open(struct sinter_client **out, const struct sinter_client_opts *o)
{
    if (out == NULL || o == NULL || o->urls == NULL || o->n_urls == 0 ||
        o->n_urls > SINTER_CLIENT_MAX_NODES || o->secret == NULL ||
        o->n_resources > SINTER_PROTO_MAX_RESOURCES ||
        (o->n_resources > 0 && o->resources == NULL)) {
        return SINTER_EINVAL;
    }
    struct sinter_proto_limits lim;
    sinter_proto_limits_default(&lim);
    if (strlen(o->secret) > lim.max_credential ||
        (o->application_id != NULL && strlen(o->application_id) > lim.max_str) ||
        (o->client_version != NULL && strlen(o->client_version) > lim.max_str)) {
        return SINTER_EINVAL;
    }
    for (uint32_t i = 0; i < o->n_resources; i++) {
        if (o->resources[i] == NULL || o->resources[i][0] == '\0' ||
            strlen(o->resources[i]) > lim.max_str) {
            return SINTER_EINVAL;
        }
    }
    struct sinter_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return SINTER_ENOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->wmu, NULL);
    c->client_id = o->client_id;
    while (c->client_id == 0) {
        c->client_id = random_u64();
    }
    atomic_init(&c->seq, 0);
    atomic_init(&c->n_nodes, 0);
    atomic_init(&c->interrupted, false);
    atomic_init(&c->meta_known, false);
    atomic_init(&c->n_groups, 0);
    atomic_init(&c->next_refresh, 0);
    atomic_init(&c->hint, -1);
    for (size_t g = 0; g < SINTER_PROTO_MAX_GROUPS; g++) {
        atomic_init(&c->leader[g], -1);
    }
    c->rm = o->rm;
    c->deadline_ms = o->deadline_ms != 0 ? o->deadline_ms : SINTER_CLIENT_DEFAULT_DEADLINE_MS;
    c->attempt_ms = o->attempt_timeout_ms != 0 ? o->attempt_timeout_ms : DEFAULT_ATTEMPT_MS;
    c->secret = dupstr(o->secret);
    c->app_id = dupstr(o->application_id != NULL ? o->application_id : "unknown");
    c->version = dupstr(o->client_version != NULL ? o->client_version : "sinter-client/0.1");
    int rc = (c->secret && c->app_id && c->version) ? SINTER_OK : SINTER_ENOMEM;
    if (rc == SINTER_OK && o->n_resources > 0) {
        c->resources = calloc(o->n_resources, sizeof *c->resources);
        rc = c->resources != NULL ? SINTER_OK : SINTER_ENOMEM;
        for (uint32_t i = 0; rc == SINTER_OK && i < o->n_resources; i++) {
            c->resources[i] = dupstr(o->resources[i]);
            c->n_resources = i + 1;
            rc = c->resources[i] != NULL ? SINTER_OK : SINTER_ENOMEM;
        }
    }
    for (size_t i = 0; rc == SINTER_OK && i < o->n_urls; i++) {
        if (o->urls[i] == NULL) {
            rc = SINTER_EINVAL;
            break;
        }
        size_t len = strlen(o->urls[i]);
        size_t n = atomic_load(&c->n_nodes);
        bool dup = false;
        for (size_t k = 0; k < n; k++) {
            dup = dup || strcmp(c->nodes[k]->url, o->urls[i]) == 0;
        }
        if (dup) {
            continue;
        }
        struct cnode *nn = NULL;
        rc = node_new(o->urls[i], len, &nn);
        if (rc == SINTER_OK) {
            c->nodes[n] = nn;
            atomic_store(&c->n_nodes, n + 1);
        }
    }
    if (rc != SINTER_OK) {
        sinter_client_close(c);
        return rc;
    }
    *out = c;
    return SINTER_OK;
}

static void wake_all(struct sinter_client *c)
{
    pthread_mutex_lock(&c->wmu);
    /* A post is never lost: a caller that checked its flags just before sleeps no longer (the
     * count stays raised), and listed waiters are alive (they unlist themselves under wmu). */
    for (struct waiter *w = c->waiters; w != NULL; w = w->next) {
        sem_post(&w->sem);
    }
    pthread_mutex_unlock(&c->wmu);
}

void sinter_client_interrupt(struct sinter_client *c)
{
    if (c != NULL) {
        atomic_store(&c->interrupted, true);
        wake_all(c);
    }
}

void sinter_client_wake(struct sinter_client *c)
{
    if (c != NULL) {
        wake_all(c);
    }
}

void sinter_client_close(struct sinter_client *c)
{
    if (c == NULL) {
        return;
    }
    size_t n = atomic_load(&c->n_nodes);
    /* Closing a transport client completes its calls in flight (ESHUTDOWN) and waits for their
     * callbacks, which release the waiters abandoned by interrupted callers. */
    for (size_t i = 0; i < n; i++) {
        node_free(c->nodes[i]);
    }
    for (uint32_t i = 0; i < c->n_resources; i++) {
        free(c->resources[i]);
    }
    free(c->resources);
    free(c->secret);
    free(c->app_id);
    free(c->version);
    pthread_mutex_destroy(&c->wmu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- one raw call ---------------------------------------------------------------------------- */

static void waiter_put(struct waiter *w)
{
    /* Lock-free: on_done drops its reference right after waking the caller. The acq_rel
     * decrement orders every use of w (and the caller taking the reply) before the free. */
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) {
        sinter_transport_reply_free(w->reply);
        sem_destroy(&w->sem);
        free(w);
    }
}

static void on_done(void *arg, int rc, struct sinter_transport_reply_msg *reply)
{
    struct waiter *w = arg;
    w->rc = rc;
    w->reply = reply;
    atomic_store_explicit(&w->done, true, memory_order_release);
    sem_post(&w->sem); /* our reference keeps w alive until the put below */
    waiter_put(w);
}

static bool cancelled(const struct sinter_client *c, const atomic_bool *cancel)
{
    return atomic_load(&c->interrupted) || (cancel != NULL && atomic_load(cancel));
}

static int raw_call(struct sinter_client *c, struct cnode *n, const struct sinter_proto_msg *req,
                    uint32_t timeout_ms, struct sinter_transport_reply_msg **reply,
                    const atomic_bool *cancel)
{
    *reply = NULL;
    if (cancelled(c, cancel)) {
        return SINTER_ESHUTDOWN;
    }
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return SINTER_ENOMEM;
    }
    if (sem_init(&w->sem, 0, 0) != 0) {
        free(w);
        return SINTER_ENOMEM;
    }
    atomic_init(&w->refs, 2);
    atomic_init(&w->done, false);
    w->cancel = cancel;
    pthread_mutex_lock(&c->wmu);
    w->next = c->waiters;
    if (c->waiters != NULL) {
        c->waiters->prev = w;
    }
    c->waiters = w;
    pthread_mutex_unlock(&c->wmu);

    /* SINTER_EBUSY here is local: every context of this node's transport client is in flight.
     * It is returned as is, not as a timeout: nothing was sent and the node may be fine
     * (sinter_client_call retries the same node after a pause). */
    int rc = sinter_transport_call_async(n->tc, req, timeout_ms, on_done, w);
    if (rc != SINTER_OK) {
        atomic_store(&w->refs, 1); /* the callback will not run */
    } else {
        /* The transport's aio timeout bounds this wait; interrupt() cuts it short. */
        while (!atomic_load_explicit(&w->done, memory_order_acquire) && !cancelled(c, cancel)) {
            (void)sem_wait(&w->sem); /* EINTR: look again */
        }
        if (atomic_load_explicit(&w->done, memory_order_acquire)) {
            rc = w->rc;
            *reply = w->reply;
            w->reply = NULL;
        } else {
            rc = SINTER_ESHUTDOWN; /* a late reply is freed by on_done's put */
        }
    }
    pthread_mutex_lock(&c->wmu);
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        c->waiters = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&c->wmu);
    waiter_put(w);
    return rc;
}

static bool is_error(const struct sinter_transport_reply_msg *r, int code)
{
    const struct sinter_proto_msg *m = sinter_transport_reply_get(r);
    return m->code == SINTER_MSG_ERROR && m->rs.result == code;
}

/* RegisterTM/RM on node n. SINTER_EAUTH means the node refused the secret. */
static int do_register(struct sinter_client *c, struct cnode *n, uint32_t timeout_ms,
                       const atomic_bool *cancel)
{
    pthread_mutex_lock(&n->reg_mu);
    if (atomic_load(&n->registered)) {
        pthread_mutex_unlock(&n->reg_mu);
        return SINTER_OK;
    }
    struct sinter_proto_msg *m = calloc(1, sizeof *m); /* ~12 KiB */
    if (m == NULL) {
        pthread_mutex_unlock(&n->reg_mu);
        return SINTER_ENOMEM;
    }
    m->code = c->rm ? SINTER_MSG_REGISTER_RM : SINTER_MSG_REGISTER_TM;
    m->rq.client_id = c->client_id;
    m->rq.seq = 0; /* registration is not a deduplicated command */
    m->u.reg.client_version = sinter_proto_str_c(c->version);
    m->u.reg.application_id = sinter_proto_str_c(c->app_id);
    m->u.reg.credential = sinter_proto_str_c(c->secret);
    m->u.reg.n_resources = c->rm ? c->n_resources : 0;
    for (uint32_t i = 0; i < m->u.reg.n_resources; i++) {
        m->u.reg.resource_ids[i] = sinter_proto_str_c(c->resources[i]);
    }
    struct sinter_transport_reply_msg *r = NULL;
    uint16_t code = m->code;
    int rc = raw_call(c, n, m, timeout_ms, &r, cancel);
    free(m);
    if (rc == SINTER_OK) {
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        rc = rm->rs.result;
        if (rc == SINTER_OK) {
            atomic_store(&n->registered, true);
        } else {
            detail("%s refused by %s: %.*s (%s)", sinter_proto_code_name(code), n->url,
                   (int)rm->rs.message.len, rm->rs.message.ptr ? rm->rs.message.ptr : "",
                   sinter_errname(rc));
        }
        sinter_transport_reply_free(r);
    } else {
        detail("registration with %s: %s", n->url, sinter_strerror(rc));
    }
    pthread_mutex_unlock(&n->reg_mu);
    return rc;
}

static struct cnode *node_at(struct sinter_client *c, size_t i)
{
    return i < atomic_load(&c->n_nodes) ? c->nodes[i] : NULL;
}

int sinter_client_call_node(struct sinter_client *c, size_t i, const struct sinter_proto_msg *req,
                            uint32_t timeout_ms, struct sinter_transport_reply_msg **reply)
{
    return sinter_client_call_node_ex(c, i, req, timeout_ms, reply, NULL);
}

int sinter_client_call_node_ex(struct sinter_client *c, size_t i,
                               const struct sinter_proto_msg *req, uint32_t timeout_ms,
                               struct sinter_transport_reply_msg **reply, const atomic_bool *cancel)
{
    if (c == NULL || req == NULL || reply == NULL) {
        return SINTER_EINVAL;
    }
    *reply = NULL;
    struct cnode *n = node_at(c, i);
    if (n == NULL) {
        return SINTER_EINVAL;
    }
    uint64_t end = sinter_client_now_ms() + timeout_ms;
    /* Round 0 sends; round 1 only follows an EAUTH (the node forgot us) and always returns. */
    for (int round = 0;; round++) {
        if (!atomic_load(&n->registered)) {
            /* At most half of what is left: a slow registration must not leave the request
             * itself a millisecond. */
            uint64_t now = sinter_client_now_ms();
            uint32_t left = end > now ? (uint32_t)(end - now) : 1u;
            int rc = do_register(c, n, left / 2 > 0 ? left / 2 : 1u, cancel);
            if (rc != SINTER_OK) {
                return rc;
            }
        }
        uint64_t now = sinter_client_now_ms();
        uint32_t left = end > now ? (uint32_t)(end - now) : 1u;
        struct sinter_transport_reply_msg *r = NULL;
        int rc = raw_call(c, n, req, left, &r, cancel);
        if (rc != SINTER_OK) {
            detail("no answer from %s: %s", n->url, sinter_strerror(rc));
            return rc;
        }
        if (round == 0 && is_error(r, SINTER_EAUTH)) {
            /* The node forgot us (it restarted): register again, resend the same request. */
            sinter_transport_reply_free(r);
            atomic_store(&n->registered, false);
            continue;
        }
        *reply = r;
        return SINTER_OK;
    }
}

int sinter_client_result(const struct sinter_transport_reply_msg *reply)
{
    const struct sinter_proto_msg *m = sinter_transport_reply_get(reply);
    int rc = m->rs.result;
    if (rc == SINTER_OK) {
        t_detail[0] = '\0';
    } else if (m->rs.message.len > 0) {
        detail("%.*s", (int)m->rs.message.len, m->rs.message.ptr);
    } else {
        detail("%s", sinter_strerror(rc));
    }
    return rc;
}

/* ---- routing --------------------------------------------------------------------------------- */

static int next_node(struct sinter_client *c, int cur)
{
    size_t n = atomic_load(&c->n_nodes);
    return cur < 0 ? 0 : (int)(((size_t)cur + 1) % n);
}

static int pick(struct sinter_client *c, uint32_t group)
{
    int t = group < SINTER_PROTO_MAX_GROUPS ? atomic_load(&c->leader[group]) : -1;
    if (t < 0) {
        t = atomic_load(&c->hint);
    }
    if (t < 0) {
        pthread_mutex_lock(&c->mu);
        t = (int)(c->rr++ % atomic_load(&c->n_nodes));
        pthread_mutex_unlock(&c->mu);
    }
    return t;
}

static void set_leader(struct sinter_client *c, uint32_t group, int idx)
{
    if (group >= SINTER_PROTO_MAX_GROUPS) {
        return;
    }
    /* Every successful call confirms its leader: nearly always unchanged, then no lock. */
    if (atomic_load(&c->leader[group]) == idx && (idx < 0 || atomic_load(&c->hint) == idx)) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->leader[group], idx);
    if (idx >= 0) {
        atomic_store(&c->hint, idx);
    }
    pthread_mutex_unlock(&c->mu);
}

static void forget_node(struct sinter_client *c, uint32_t group, int idx)
{
    pthread_mutex_lock(&c->mu);
    if (group < SINTER_PROTO_MAX_GROUPS && atomic_load(&c->leader[group]) == idx) {
        atomic_store(&c->leader[group], -1);
    }
    if (atomic_load(&c->hint) == idx) {
        atomic_store(&c->hint, -1);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Exponential backoff with jitter (AWS "Exponential Backoff and Jitter"): keeps a herd of
 * clients that lost the same leader from hammering the next one in lockstep. */
static void backoff(struct sinter_client *c, uint32_t *step, uint64_t deadline)
{
    uint32_t d = *step / 2 + (uint32_t)(random_u64() % (*step / 2 + 1));
    uint64_t now = sinter_client_now_ms();
    if (now + d > deadline) {
        d = deadline > now ? (uint32_t)(deadline - now) : 0;
    }
    if (d > 0 && !atomic_load(&c->interrupted)) {
        sleep_ms(d);
    }
    *step = *step * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *step * 2;
}

int sinter_client_call(struct sinter_client *c, struct sinter_proto_msg *req, uint32_t group,
                       uint32_t deadline_ms, struct sinter_transport_reply_msg **reply)
{
    if (c == NULL || req == NULL || reply == NULL) {
        return SINTER_EINVAL;
    }
    *reply = NULL;
    t_detail[0] = '\0';
    req->rq.client_id = c->client_id;
    if (req->rq.seq == 0) {
        req->rq.seq = sinter_client_next_seq(c);
    }
    uint64_t deadline = sinter_client_now_ms() + (deadline_ms != 0 ? deadline_ms : c->deadline_ms);
    if (!atomic_load(&c->meta_known)) {
        /* Learn the members once, so a handle given one address survives losing that node.
         * Rate-limited: one thread runs a round, and after a round nobody answered the next
         * waits REFRESH_RETRY_MS, so a cluster that is down does not cost every call a round. */
        uint64_t now = sinter_client_now_ms();
        uint_fast64_t due = atomic_load(&c->next_refresh);
        if (now >= due &&
            atomic_compare_exchange_strong(&c->next_refresh, &due, now + REFRESH_RETRY_MS)) {
            uint32_t t =
                deadline - now < c->attempt_ms ? (uint32_t)(deadline - now) : c->attempt_ms;
            (void)sinter_client_refresh(c, t / 2 > 0 ? t / 2 : 1);
        }
    }
    uint32_t step = BACKOFF_MIN_MS;
    uint32_t route = group;
    unsigned ng = atomic_load(&c->n_groups);
    if (group == SINTER_CLIENT_ANY_GROUP && req->code == SINTER_MSG_GLOBAL_BEGIN && ng > 0) {
        /* The coordinator puts a begin in a group that is a function of (client id, seq):
         * sent to that group's presumed leader, it needs no redirect (one round trip less for
         * every begin whose group another node leads). Only a routing hint: the node that
         * receives it decides, and redirects as before if the hint is wrong. */
        route = sinter_proto_begin_group(c->client_id, req->rq.seq, ng);
    }
    int target = pick(c, route);
    int hops = 0; /* redirects followed without a pause */
    int last = SINTER_ETIMEOUT;
    for (;;) {
        if (atomic_load(&c->interrupted)) {
            detail("client interrupted (closing)");
            return SINTER_ESHUTDOWN;
        }
        uint64_t now = sinter_client_now_ms();
        if (now >= deadline) {
            /* Keep the last thing seen in the detail: it says why (which node, what error). */
            char seen[sizeof t_detail];
            snprintf(seen, sizeof seen, "%s", t_detail);
            detail("deadline passed, outcome unknown (last: %s)",
                   seen[0] != '\0' ? seen : sinter_strerror(last));
            return SINTER_ETIMEOUT;
        }
        uint32_t left = (uint32_t)(deadline - now);
        uint32_t t = left < c->attempt_ms ? left : c->attempt_ms;
        struct sinter_transport_reply_msg *r = NULL;
        int rc = sinter_client_call_node(c, (size_t)target, req, t, &r);
        if (rc == SINTER_EAUTH || rc == SINTER_ENOMEM || rc == SINTER_EINVAL ||
            rc == SINTER_ETOOBIG || rc == SINTER_EBADVALUE) {
            return rc; /* secret refused, or a request that can never be sent */
        }
        if (rc == SINTER_EBUSY) {
            /* Local saturation: every context to this node is in flight, nothing was sent.
             * The node is not suspect: keep it as leader, wait for a context, try it again. */
            detail("all requests to %s in flight (local limit)", c->nodes[target]->url);
            last = rc;
            backoff(c, &step, deadline);
            continue;
        }
        if (rc != SINTER_OK) {
            /* No answer, node down or stopping: the outcome is unknown, so the retry elsewhere
             * carries the same seq.
             *
             * SINTER_ETRANSPORT (the native transport: the connection dropped with this call
             * sent; nng's REQ would resend it on the same node after redialling) is treated the
             * same, deliberately, without a first retry on the same node:
             *   - a node that stops gracefully answers what it holds with ESHUTDOWN before it
             *     closes, and the transport notices an idle connection's close and redials, so
             *     a restart does not surface here as ETRANSPORT; what does is a connection
             *     dropped under a call in flight: a crash, a reset, a partition;
             *   - for those a retry on the same node waits for a redial that is refused or never
             *     answered, i.e. a whole attempt_ms (3 s by default) before failing over, which
             *     is exactly the delay the native transport removed;
             *   - moving on costs at most one redirect round trip (the next node names the
             *     leader, and the leader cache is refilled from it), and the same seq makes the
             *     retry idempotent wherever it lands (DESIGN: idempotent requests). */
            last = rc;
            forget_node(c, group, target);
            target = next_node(c, target);
            backoff(c, &step, deadline);
            continue;
        }
        const struct sinter_proto_msg *m = sinter_transport_reply_get(r);
        if (m->code == SINTER_MSG_ERROR) {
            int res = m->rs.result;
            if (res == SINTER_ENOTLEADER) {
                uint32_t eg = m->u.error.group;
                if (group == SINTER_CLIENT_ANY_GROUP && eg < SINTER_PROTO_MAX_GROUPS) {
                    group = eg; /* GlobalBegin: the server named the group it picked */
                }
                int to = -1;
                if (m->u.error.leader_addr.len > 0) {
                    pthread_mutex_lock(&c->mu);
                    to = node_find_or_add_locked(c, m->u.error.leader_addr.ptr,
                                                 m->u.error.leader_addr.len);
                    pthread_mutex_unlock(&c->mu);
                }
                detail("%s is not the leader of group %u", c->nodes[target]->url, eg);
                sinter_transport_reply_free(r);
                last = res;
                if (to >= 0 && to != target && hops < 3) {
                    set_leader(c, eg, to);
                    target = to;
                    hops++;
                } else {
                    /* Election in progress (no leader known) or a redirect loop: look around,
                     * after a pause. */
                    forget_node(c, eg, target);
                    target = to >= 0 && to != target ? to : next_node(c, target);
                    hops = 0;
                    backoff(c, &step, deadline);
                }
                continue;
            }
            if (res == SINTER_ESHUTDOWN || res == SINTER_ETIMEOUT || res == SINTER_EBUSY ||
                res == SINTER_EAUTH) {
                /* Stopping node, a proposal lost in a leader change, back-pressure, or a node
                 * that forgot us twice: retry (same seq), elsewhere if the node is stopping. */
                detail("%s answered %s: %.*s", c->nodes[target]->url, sinter_errname(res),
                       (int)m->rs.message.len, m->rs.message.ptr ? m->rs.message.ptr : "");
                sinter_transport_reply_free(r);
                last = res;
                if (res == SINTER_ESHUTDOWN) {
                    forget_node(c, group, target);
                    target = next_node(c, target);
                }
                backoff(c, &step, deadline);
                continue;
            }
        } else if (m->rs.result == SINTER_OK) {
            uint32_t g = group;
            if (g == SINTER_CLIENT_ANY_GROUP && m->code == SINTER_MSG_GLOBAL_BEGIN_RESULT) {
                g = m->u.global_begin_result.xid.group;
            }
            set_leader(c, g, target);
        }
        *reply = r;
        return SINTER_OK;
    }
}

int sinter_client_refresh(struct sinter_client *c, uint32_t timeout_ms)
{
    if (c == NULL) {
        return SINTER_EINVAL;
    }
    uint64_t end = sinter_client_now_ms() + timeout_ms;
    size_t n = atomic_load(&c->n_nodes);
    /* Start at the node that answered last (or the round-robin cursor), and give each node an
     * equal share of what is left: a dead first node must not eat the whole budget, or the
     * members would never be learnt while it stays down. */
    pthread_mutex_lock(&c->mu);
    int h = atomic_load(&c->hint);
    size_t start = h >= 0 ? (size_t)h : (size_t)(c->rr % n);
    pthread_mutex_unlock(&c->mu);
    int rc = SINTER_ETIMEOUT;
    for (size_t tried = 0; tried < n; tried++) {
        size_t i = (start + tried) % n;
        uint64_t now = sinter_client_now_ms();
        if (now >= end) {
            break;
        }
        uint32_t share = (uint32_t)((end - now) / (n - tried));
        struct sinter_proto_msg req;
        memset(&req, 0, sizeof req);
        req.code = SINTER_MSG_CLUSTER_META;
        req.rq.client_id = c->client_id;
        struct sinter_transport_reply_msg *r = NULL;
        /* ClusterMeta needs no registration: a raw call. */
        rc = raw_call(c, c->nodes[i], &req, share > 0 ? share : 1u, &r, NULL);
        if (rc == SINTER_ESHUTDOWN && atomic_load(&c->interrupted)) {
            return rc;
        }
        if (rc != SINTER_OK) {
            continue;
        }
        const struct sinter_proto_msg *m = sinter_transport_reply_get(r);
        if (m->code != SINTER_MSG_CLUSTER_META_RESULT || m->rs.result != SINTER_OK) {
            sinter_transport_reply_free(r);
            rc = SINTER_ETIMEOUT;
            continue;
        }
        const struct sinter_proto_cluster_meta_result *cm = &m->u.cluster_meta_result;
        int idx_of[SINTER_PROTO_MAX_MEMBERS];
        pthread_mutex_lock(&c->mu);
        c->nodes[i]->id = cm->node_id;
        if (atomic_load(&c->hint) < 0) {
            atomic_store(&c->hint, (int)i); /* it answers: a good first try without a leader */
        }
        for (uint32_t k = 0; k < cm->n_members; k++) {
            idx_of[k] = -1;
            if (cm->members[k].addr.len > 0) {
                idx_of[k] =
                    node_find_or_add_locked(c, cm->members[k].addr.ptr, cm->members[k].addr.len);
                if (idx_of[k] >= 0) {
                    c->nodes[idx_of[k]]->id = cm->members[k].id;
                }
            }
        }
        if (cm->n_groups > 0 && cm->n_groups <= SINTER_PROTO_MAX_GROUPS) {
            atomic_store(&c->n_groups, cm->n_groups);
        }
        for (uint32_t g = 0; g < cm->n_groups; g++) {
            uint32_t grp = cm->groups[g].group;
            if (grp >= SINTER_PROTO_MAX_GROUPS || cm->groups[g].leader_id == 0) {
                continue;
            }
            for (uint32_t k = 0; k < cm->n_members; k++) {
                if (cm->members[k].id == cm->groups[g].leader_id && idx_of[k] >= 0) {
                    atomic_store(&c->leader[grp], idx_of[k]);
                }
            }
        }
        pthread_mutex_unlock(&c->mu);
        sinter_transport_reply_free(r);
        atomic_store(&c->meta_known, true);
        return SINTER_OK;
    }
    return rc;
}
