/*
 * libsinter-rm: the resource manager client (sinter/rm.h). Phase one goes through the shared
 * client core (sinter/client.h); phase 2 follows docs/phase2-protocol.md with these threads:
 *
 *   pollers      one per known node: Phase2Poll there, queue the items (stamped with the node
 *                that delivered them), poll again; they ask for no more items than the queue
 *                has room for, so a slow service is never handed more leases than it can serve
 *   workers      take an item, call the handler, hand its outcome to the reporters
 *   reporters    send the queued outcomes, each to the node that delivered its item, retrying
 *                until the report's deadline; the outcomes queued for one node go in one
 *                Phase2ReportBatch; a worker never waits for a BRANCH_RESULT to commit
 *                (bench/FINDINGS.md T5: blocked workers bounded phase 2 at ~200 tx/s), and
 *                reports in flight count against queue_capacity so memory stays bounded
 *   maintenance  ClusterMeta refresh (a new member gets a poller), the TCC fence cleanup and
 *                the XA resources' periodic recovery scans (rm/rm_xa.c)
 *
 * Close: `stopping` is set and the core woken, so pollers parked in a long poll return at once
 * (their cancel flag is `stopping`; reports use no cancel flag and still go out); workers finish
 * the handler they are running, queued items are dropped (lease expiry makes the coordinator
 * deliver them again, docs/phase2-protocol.md "Leases"). The reporters then SEND every queued
 * report, each until its own deadline (report_timeout_ms after its handler returned), so close
 * returns within about report_timeout_ms plus one call even when no node answers.
 *
 * A failed start (a thread that could not be created) runs the same stop sequence on the threads
 * it did create and then clears `stopping`, `started` and the thread tables: the handle is back
 * in its opened, unstarted state and sinter_rm_start may be called again.
 */
#include "rm_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinter/proto.h"

#define DEFAULT_WORKERS        4u
#define DEFAULT_REPORTERS      16u
#define DEFAULT_QUEUE          256u
#define DEFAULT_POLL_WAIT      10000u
#define DEFAULT_POLL_ITEMS     16u
#define DEFAULT_REPORT_TIMEOUT 10000u
#define DEFAULT_META_REFRESH   10000u
#define DEFAULT_CLEANUP_EVERY  60000u
#define DEFAULT_RETENTION_MS   (7ull * 24 * 3600 * 1000)
#define DEFAULT_CLEANUP_BATCH  1000u
#define POLL_MARGIN_MS         5000u /* the poll's call timeout exceeds its wait_ms by this */
#define POLL_BACKOFF_MAX_MS    2000u

struct rm_item {
    struct rm_item *next;
    size_t node;
    uint16_t code;
    struct sinter_xid xid;
    uint64_t branch_id;
    uint32_t type;
    uint64_t xa_local_xid;
    uint32_t attempt;
    uint32_t data_len;
    char *resource; /* points into the same allocation */
    uint8_t *data;  /* idem */
};

/* One finished item's outcome, waiting for (or being sent by) a reporter. */
struct rm_report {
    struct rm_report *next;
    size_t node; /* the node that delivered the item: it holds the lease */
    uint16_t phase;
    struct sinter_xid xid;
    uint64_t branch_id;
    uint32_t status;
    uint32_t attempt;
    uint64_t deadline_ms; /* sinter_client_now_ms() after which the report is dropped */
};

struct poller_arg {
    struct sinter_rm *rm;
    size_t node;
};

void sinter_rm_opts_default(struct sinter_rm_opts *o)
{
    memset(o, 0, sizeof *o);
}

const char *sinter_rm_errmsg(void)
{
    return sinter_client_errmsg();
}

uint64_t sinter_rm_client_id(const struct sinter_rm *rm)
{
    return sinter_client_id(rm->cl);
}

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Sleeps ms unless the handle starts stopping. */
static void rm_sleep(struct sinter_rm *rm, uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&rm->mu);
    while (!atomic_load(&rm->stopping)) {
        if (pthread_cond_timedwait(&rm->stop_cv, &rm->mu, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&rm->mu);
}

atomic_int sinter_rm_fault_thread_create = 0;

/* pthread_create, or the injected failure of sinter_rm_fault_thread_create (rm_int.h). */
static int spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int f = atomic_load(&sinter_rm_fault_thread_create);
    while (f > 0 && !atomic_compare_exchange_weak(&sinter_rm_fault_thread_create, &f, f - 1)) {
    }
    if (f == 1) {
        return -1;
    }
    return pthread_create(t, NULL, fn, arg) == 0 ? 0 : -1;
}

int sinter_rm_open(struct sinter_rm **out, const struct sinter_rm_opts *opts)
{
    if (out == NULL || opts == NULL || opts->n_resources > SINTER_PROTO_MAX_RESOURCES ||
        (opts->n_resources > 0 && opts->resources == NULL)) {
        return SINTER_EINVAL;
    }
    struct sinter_rm *rm = calloc(1, sizeof *rm);
    if (rm == NULL) {
        return SINTER_ENOMEM;
    }
    rm->o = *opts;
    struct sinter_rm_opts *o = &rm->o;
    o->workers = o->workers ? o->workers : DEFAULT_WORKERS;
    o->reporters = o->reporters ? o->reporters : DEFAULT_REPORTERS;
    o->queue_capacity = o->queue_capacity ? o->queue_capacity : DEFAULT_QUEUE;
    o->poll_wait_ms = o->poll_wait_ms ? o->poll_wait_ms : DEFAULT_POLL_WAIT;
    o->poll_max_items = o->poll_max_items ? o->poll_max_items : DEFAULT_POLL_ITEMS;
    if (o->poll_max_items > SINTER_PROTO_MAX_BATCH) {
        o->poll_max_items = SINTER_PROTO_MAX_BATCH;
    }
    o->report_timeout_ms = o->report_timeout_ms ? o->report_timeout_ms : DEFAULT_REPORT_TIMEOUT;
    o->meta_refresh_ms = o->meta_refresh_ms ? o->meta_refresh_ms : DEFAULT_META_REFRESH;
    o->fence_cleanup_interval_ms =
        o->fence_cleanup_interval_ms ? o->fence_cleanup_interval_ms : DEFAULT_CLEANUP_EVERY;
    o->fence_retention_ms = o->fence_retention_ms ? o->fence_retention_ms : DEFAULT_RETENTION_MS;
    o->fence_cleanup_batch =
        o->fence_cleanup_batch ? o->fence_cleanup_batch : DEFAULT_CLEANUP_BATCH;
    pthread_mutex_init(&rm->mu, NULL);
    cond_init_mono(&rm->work_cv);
    cond_init_mono(&rm->space_cv);
    cond_init_mono(&rm->stop_cv);
    cond_init_mono(&rm->report_cv);
    pthread_rwlock_init(&rm->hlock, NULL);
    atomic_init(&rm->stopping, false);
    rm->app_id = strdup(opts->application_id != NULL ? opts->application_id : "unknown");
    int rc = rm->app_id != NULL ? SINTER_OK : SINTER_ENOMEM;
    if (rc == SINTER_OK && opts->n_resources > 0) {
        rm->resources = calloc(opts->n_resources, sizeof *rm->resources);
        rc = rm->resources != NULL ? SINTER_OK : SINTER_ENOMEM;
        for (uint32_t i = 0; rc == SINTER_OK && i < opts->n_resources; i++) {
            if (opts->resources[i] == NULL || opts->resources[i][0] == '\0') {
                rc = SINTER_EINVAL;
                break;
            }
            rm->resources[i] = strdup(opts->resources[i]);
            rm->n_resources = i + 1;
            rc = rm->resources[i] != NULL ? SINTER_OK : SINTER_ENOMEM;
        }
    }
    o->application_id = rm->app_id;
    o->resources = (const char *const *)rm->resources;
    o->addresses = NULL; /* copied by the core */
    if (rc == SINTER_OK) {
        struct sinter_client_opts co;
        sinter_client_opts_default(&co);
        co.urls = opts->addresses;
        co.n_urls = opts->n_addresses;
        co.secret = opts->secret;
        co.application_id = rm->app_id;
        co.client_version = "sinter-rm/0.1";
        co.rm = true;
        co.resources = (const char *const *)rm->resources;
        co.n_resources = rm->n_resources;
        co.deadline_ms = opts->deadline_ms;
        co.attempt_timeout_ms = opts->attempt_timeout_ms;
        rc = sinter_client_open(&rm->cl, &co);
    }
    o->secret = NULL; /* the core keeps its own copy */
    if (rc != SINTER_OK) {
        sinter_rm_close(rm);
        return rc;
    }
    *out = rm;
    return SINTER_OK;
}

/* ---- phase one ------------------------------------------------------------------------------- */

static int parse_xid(const char *text, struct sinter_xid *x)
{
    return text != NULL ? sinter_xid_parse(x, text, strnlen(text, SINTER_XID_STRLEN))
                        : SINTER_EINVAL;
}

static int call_result(struct sinter_rm *rm, struct sinter_proto_msg *m, uint32_t group,
                       struct sinter_transport_reply_msg **r)
{
    int rc = sinter_client_call(rm->cl, m, group, 0, r);
    if (rc != SINTER_OK) {
        return rc;
    }
    rc = sinter_client_result(*r);
    if (rc != SINTER_OK) {
        sinter_transport_reply_free(*r);
        *r = NULL;
    }
    return rc;
}

int sinter_rm_branch_register(struct sinter_rm *rm, const char *xid, uint32_t branch_type,
                              const char *resource_id, const void *app_data, size_t len,
                              uint64_t xa_local_xid, uint64_t *branch_id)
{
    struct sinter_xid x;
    if (rm == NULL || branch_id == NULL || parse_xid(xid, &x) != SINTER_OK ||
        !sinter_branch_type_valid(branch_type) || resource_id == NULL || resource_id[0] == '\0' ||
        (app_data == NULL && len > 0) || len > UINT32_MAX) {
        return SINTER_EINVAL;
    }
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_BRANCH_REGISTER;
    m.u.branch_register.xid = x;
    m.u.branch_register.branch_type = branch_type;
    m.u.branch_register.resource_id = sinter_proto_str_c(resource_id);
    m.u.branch_register.application_data = (struct sinter_proto_bytes){app_data, (uint32_t)len};
    m.u.branch_register.xa_local_xid = xa_local_xid;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = call_result(rm, &m, x.group, &r);
    if (rc == SINTER_OK) {
        uint64_t b = sinter_transport_reply_get(r)->u.branch_register_result.branch_id;
        sinter_transport_reply_free(r);
        if (b == 0) {
            return SINTER_EINTERNAL;
        }
        *branch_id = b;
    }
    return rc;
}

int sinter_rm_branch_report(struct sinter_rm *rm, const char *xid, uint64_t branch_id,
                            uint32_t branch_type, const char *resource_id, uint32_t status,
                            uint64_t xa_local_xid)
{
    struct sinter_xid x;
    if (rm == NULL || parse_xid(xid, &x) != SINTER_OK || branch_id == 0 ||
        !sinter_branch_type_valid(branch_type) ||
        (status != SINTER_BS_PHASE1_DONE && status != SINTER_BS_PHASE1_FAILED)) {
        return SINTER_EINVAL;
    }
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_BRANCH_REPORT;
    m.u.branch_report.xid = x;
    m.u.branch_report.branch_id = branch_id;
    m.u.branch_report.branch_type = branch_type;
    m.u.branch_report.branch_status = status;
    m.u.branch_report.resource_id = sinter_proto_str_c(resource_id);
    m.u.branch_report.xa_local_xid = xa_local_xid;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = call_result(rm, &m, x.group, &r);
    sinter_transport_reply_free(r);
    return rc;
}

int sinter_rm_global_status(struct sinter_rm *rm, const char *xid, uint32_t *status)
{
    struct sinter_xid x;
    if (rm == NULL || status == NULL || parse_xid(xid, &x) != SINTER_OK) {
        return SINTER_EINVAL;
    }
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_STATUS;
    m.u.global_status.xid = x;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = call_result(rm, &m, x.group, &r);
    if (rc == SINTER_OK) {
        *status = sinter_transport_reply_get(r)->u.global_status_result.global_status;
        sinter_transport_reply_free(r);
    }
    return rc;
}

/* ---- handlers -------------------------------------------------------------------------------- */

int sinter_rm_set_handler(struct sinter_rm *rm, const char *resource_id, uint32_t branch_type,
                          sinter_rm_phase2_fn fn, void *arg)
{
    if (rm == NULL || !sinter_branch_type_valid(branch_type) ||
        (resource_id != NULL && resource_id[0] == '\0')) {
        return SINTER_EINVAL;
    }
    int rc = SINTER_OK;
    pthread_rwlock_wrlock(&rm->hlock);
    uint32_t i = 0;
    for (; i < rm->n_handlers; i++) {
        struct rm_handler *h = &rm->handlers[i];
        if (h->type == branch_type && ((h->resource == NULL && resource_id == NULL) ||
                                       (h->resource != NULL && resource_id != NULL &&
                                        strcmp(h->resource, resource_id) == 0))) {
            break;
        }
    }
    if (fn == NULL) {
        if (i < rm->n_handlers) {
            free(rm->handlers[i].resource);
            rm->handlers[i] = rm->handlers[--rm->n_handlers];
        }
    } else if (i < rm->n_handlers) {
        rm->handlers[i].fn = fn;
        rm->handlers[i].arg = arg;
    } else if (rm->n_handlers >= RM_MAX_HANDLERS) {
        rc = SINTER_EBUSY;
    } else {
        char *res = resource_id != NULL ? strdup(resource_id) : NULL;
        if (resource_id != NULL && res == NULL) {
            rc = SINTER_ENOMEM;
        } else {
            rm->handlers[rm->n_handlers++] = (struct rm_handler){res, branch_type, fn, arg};
        }
    }
    pthread_rwlock_unlock(&rm->hlock);
    return rc;
}

uint32_t sinter_rm_phase2_status(bool commit, int rc, uint32_t status)
{
    if (commit && (status == SINTER_BS_PHASE2_COMMITTED ||
                   status == SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE ||
                   status == SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE)) {
        return status;
    }
    if (!commit && (status == SINTER_BS_PHASE2_ROLLBACKED ||
                    status == SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE ||
                    status == SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE)) {
        return status;
    }
    if (rc == SINTER_OK) {
        return commit ? SINTER_BS_PHASE2_COMMITTED : SINTER_BS_PHASE2_ROLLBACKED;
    }
    if (rc == SINTER_ESTATE || rc == SINTER_EFENCE) {
        return commit ? SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE
                      : SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE;
    }
    return commit ? SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE
                  : SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
}

/* ---- workers --------------------------------------------------------------------------------- */

/* Sends one report until it is accepted, refused for good, or its deadline passes. Runs on a
 * reporter thread. The seq is drawn once: resends after a timeout are the same request, so the
 * coordinator's session dedups them (docs/phase2-protocol.md "Reports"). */
static void send_report(struct sinter_rm *rm, const struct rm_report *rp)
{
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_PHASE2_REPORT;
    m.rq.client_id = sinter_client_id(rm->cl);
    m.rq.seq = sinter_client_next_seq(rm->cl); /* one seq for the report and its resends */
    m.u.phase2_report.phase = rp->phase;
    m.u.phase2_report.outcome.xid = rp->xid;
    m.u.phase2_report.outcome.branch_id = rp->branch_id;
    m.u.phase2_report.outcome.branch_status = rp->status;
    m.u.phase2_report.attempt = rp->attempt;
    uint64_t end = rp->deadline_ms;
    uint32_t pause = 50;
    bool ok = false;
    pthread_mutex_lock(&rm->mu);
    rm->st.report_msgs++;
    pthread_mutex_unlock(&rm->mu);
    for (;;) {
        uint64_t now = sinter_client_now_ms();
        if (now >= end) {
            break;
        }
        uint32_t t = (uint32_t)(end - now);
        struct sinter_transport_reply_msg *r = NULL;
        /* To the node that delivered the item: it holds the lease (docs/phase2-protocol.md). */
        int rc = sinter_client_call_node(rm->cl, rp->node, &m, t, &r);
        if (rc == SINTER_OK) {
            int res = sinter_transport_reply_get(r)->rs.result;
            sinter_transport_reply_free(r);
            if (res == SINTER_OK) {
                ok = true;
                break;
            }
            if (res != SINTER_ETIMEOUT && res != SINTER_EBUSY) {
                /* ENOTLEADER: the new leader redelivers; ENOTFOUND, EINVAL: nothing to
                 * record. Either way the report is dropped, and a redelivery is harmless. */
                break;
            }
        } else if (rc == SINTER_EAUTH || rc == SINTER_EINVAL || rc == SINTER_ENOMEM) {
            break;
        }
        now = sinter_client_now_ms();
        if (now >= end) {
            break;
        }
        uint32_t left = (uint32_t)(end - now);
        uint32_t nap = pause < left ? pause : left;
        struct timespec ts = {(time_t)(nap / 1000u), (long)(nap % 1000u) * 1000000L};
        nanosleep(&ts, NULL);
        pause = pause * 2 > 1000 ? 1000 : pause * 2;
    }
    pthread_mutex_lock(&rm->mu);
    if (ok) {
        rm->st.reports_ok++;
    } else {
        rm->st.reports_failed++;
    }
    pthread_mutex_unlock(&rm->mu);
}

static void count_reports(struct sinter_rm *rm, uint32_t ok, uint32_t failed)
{
    pthread_mutex_lock(&rm->mu);
    rm->st.reports_ok += ok;
    rm->st.reports_failed += failed;
    pthread_mutex_unlock(&rm->mu);
}

/* Sends reports v[0..n) (all for one node) as Phase2ReportBatch messages until each is accepted,
 * refused for good, or past its deadline; frees them. The seq is kept while the same set is
 * resent after a timeout or a transport error (the coordinator may have applied it: the state
 * machine dedups a repeated outcome); a smaller set left after a partial answer is a new request
 * with a new seq. A coordinator that does not know the batch (EUNKNOWNMSG: an older version in a
 * rolling upgrade) gets single Phase2Reports from then on. */
static void send_batch(struct sinter_rm *rm, struct rm_report **v, uint32_t n)
{
    size_t node = v[0]->node;
    struct sinter_proto_msg *m = NULL;
    if (n > 1 && !atomic_load(&rm->no_batch[node])) {
        m = calloc(1, sizeof *m);
    }
    uint32_t ok = 0, failed = 0, pause = 50;
    bool rebuild = true;
    while (m != NULL && n > 0) {
        uint64_t now = sinter_client_now_ms();
        uint64_t end = UINT64_MAX;
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (v[i]->deadline_ms <= now) {
                failed++; /* its lease has expired: the coordinator redelivers the item */
                free(v[i]);
                rebuild = true;
                continue;
            }
            end = v[i]->deadline_ms < end ? v[i]->deadline_ms : end;
            v[k++] = v[i];
        }
        n = k;
        if (n == 0) {
            break;
        }
        if (rebuild) {
            memset(m, 0, sizeof *m);
            m->code = SINTER_MSG_PHASE2_REPORT_BATCH;
            m->rq.client_id = sinter_client_id(rm->cl);
            m->rq.seq = sinter_client_next_seq(rm->cl);
            m->u.phase2_report_batch.n_reports = n;
            for (uint32_t i = 0; i < n; i++) {
                struct sinter_proto_phase2_report *p = &m->u.phase2_report_batch.reports[i];
                p->phase = v[i]->phase;
                p->outcome.xid = v[i]->xid;
                p->outcome.branch_id = v[i]->branch_id;
                p->outcome.branch_status = v[i]->status;
                p->attempt = v[i]->attempt;
            }
            rebuild = false;
            pthread_mutex_lock(&rm->mu);
            rm->st.report_msgs++;
            pthread_mutex_unlock(&rm->mu);
        }
        struct sinter_transport_reply_msg *r = NULL;
        int rc = sinter_client_call_node(rm->cl, node, m, (uint32_t)(end - now), &r);
        if (rc == SINTER_OK) {
            const struct sinter_proto_msg *a = sinter_transport_reply_get(r);
            int res = a->rs.result;
            if (res == SINTER_OK && a->code == SINTER_MSG_PHASE2_REPORT_BATCH_RESULT &&
                a->u.phase2_report_batch_result.n_results == n) {
                k = 0;
                for (uint32_t i = 0; i < n; i++) {
                    int ri = a->u.phase2_report_batch_result.results[i];
                    if (ri == SINTER_ETIMEOUT || ri == SINTER_EBUSY) {
                        v[k++] = v[i]; /* not applied (yet): resend */
                        continue;
                    }
                    /* OK; or ENOTLEADER (the new leader redelivers), ENOTFOUND, EINVAL:
                     * nothing to record, as for a single report. */
                    if (ri == SINTER_OK) {
                        ok++;
                    } else {
                        failed++;
                    }
                    free(v[i]);
                }
                rebuild = k != n;
                n = k;
            } else if (res == SINTER_EUNKNOWNMSG) {
                atomic_store(&rm->no_batch[node], true);
                sinter_transport_reply_free(r);
                break; /* the rest goes as single reports below */
            } else if (res != SINTER_ETIMEOUT && res != SINTER_EBUSY) {
                for (uint32_t i = 0; i < n; i++) { /* e.g. ENOTLEADER for the whole batch */
                    failed++;
                    free(v[i]);
                }
                n = 0;
            }
            sinter_transport_reply_free(r);
        } else if (rc == SINTER_EAUTH || rc == SINTER_EINVAL || rc == SINTER_ENOMEM) {
            for (uint32_t i = 0; i < n; i++) {
                failed++;
                free(v[i]);
            }
            n = 0;
        }
        if (n > 0) {
            struct timespec ts = {0, (long)pause * 1000000L};
            nanosleep(&ts, NULL); /* short against the deadline; checked at the loop's top */
            pause = pause * 2 > 1000 ? 1000 : pause * 2;
        }
    }
    free(m);
    count_reports(rm, ok, failed);
    for (uint32_t i = 0; i < n; i++) { /* single reports: n == 1, no memory, or EUNKNOWNMSG */
        send_report(rm, v[i]);
        free(v[i]);
    }
}

/* Reporter thread: sends queued reports until close has joined the workers (reporters_done) and
 * the queue is empty, so every report a worker queued is sent or dropped at its deadline. */
static void *reporter_main(void *arg)
{
    struct sinter_rm *rm = arg;
    pthread_mutex_lock(&rm->mu);
    for (;;) {
        while (rm->rhead == NULL && !rm->reporters_done) {
            pthread_cond_wait(&rm->report_cv, &rm->mu);
        }
        if (rm->rhead == NULL) {
            break; /* reporters_done and nothing left */
        }
        /* The head and every other queued report for its node, up to a batch. */
        struct rm_report *v[SINTER_PROTO_MAX_REPORTS];
        uint32_t n = 0;
        size_t node = rm->rhead->node;
        struct rm_report **pp = &rm->rhead, *last = NULL;
        while (*pp != NULL && n < SINTER_PROTO_MAX_REPORTS) {
            struct rm_report *rp = *pp;
            if (rp->node == node) {
                *pp = rp->next;
                v[n++] = rp;
            } else {
                last = rp;
                pp = &rp->next;
            }
        }
        if (*pp == NULL) {
            rm->rtail = last;
        }
        pthread_mutex_unlock(&rm->mu);
        send_batch(rm, v, n);
        pthread_mutex_lock(&rm->mu);
        rm->reporting -= n;
        pthread_cond_broadcast(&rm->space_cv);
    }
    pthread_mutex_unlock(&rm->mu);
    return NULL;
}

/* Hands a finished item's outcome to the reporters. The item stays counted against
 * queue_capacity (running -> reporting) until its report is sent or dropped. rm->mu held. */
static void queue_report_locked(struct sinter_rm *rm, struct rm_report *rp)
{
    rp->next = NULL;
    if (rm->rtail != NULL) {
        rm->rtail->next = rp;
    } else {
        rm->rhead = rp;
    }
    rm->rtail = rp;
    rm->reporting++;
    pthread_cond_signal(&rm->report_cv);
}

static bool find_handler(struct sinter_rm *rm, const struct rm_item *it, struct rm_handler *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&rm->hlock);
    for (uint32_t i = 0; i < rm->n_handlers; i++) {
        const struct rm_handler *h = &rm->handlers[i];
        if (h->type != it->type) {
            continue;
        }
        if (h->resource != NULL && strcmp(h->resource, it->resource) == 0) {
            *out = *h;
            found = true;
            break;
        }
        if (h->resource == NULL && !found) {
            *out = *h;
            found = true; /* keep looking for an exact match */
        }
    }
    pthread_rwlock_unlock(&rm->hlock);
    return found;
}

/* Runs the item's handler; returns its report for the caller to queue (NULL: out of memory). */
static struct rm_report *run_item(struct sinter_rm *rm, struct rm_item *it)
{
    struct sinter_rm_work w;
    memset(&w, 0, sizeof w);
    w.commit = it->code == SINTER_MSG_BRANCH_COMMIT;
    w.xid = it->xid;
    sinter_xid_format(&it->xid, w.xid_text);
    w.branch_id = it->branch_id;
    w.branch_type = it->type;
    w.resource_id = it->resource;
    w.app_data = it->data_len > 0 ? it->data : NULL;
    w.app_data_len = it->data_len;
    w.xa_local_xid = it->xa_local_xid;
    w.attempt = it->attempt;
    w.node_url = sinter_client_node_url(rm->cl, it->node);
    struct rm_handler h = {NULL, 0, NULL, NULL};
    uint32_t status = 0;
    int rc = SINTER_ENOTFOUND;
    if (find_handler(rm, it, &h)) {
        rc = h.fn(h.arg, &w, &status);
    }
    struct rm_report *rp = malloc(sizeof *rp);
    if (rp == NULL) {
        return NULL; /* out of memory: no report, the lease expires and the item comes back */
    }
    memset(rp, 0, sizeof *rp);
    rp->node = it->node;
    rp->phase = it->code;
    rp->xid = it->xid;
    rp->branch_id = it->branch_id;
    rp->status = sinter_rm_phase2_status(w.commit, rc, status);
    rp->attempt = it->attempt;
    rp->deadline_ms = sinter_client_now_ms() + rm->o.report_timeout_ms;
    return rp;
}

static void *worker_main(void *arg)
{
    struct sinter_rm *rm = arg;
    pthread_mutex_lock(&rm->mu);
    for (;;) {
        while (rm->head == NULL && !atomic_load(&rm->stopping)) {
            pthread_cond_wait(&rm->work_cv, &rm->mu);
        }
        if (atomic_load(&rm->stopping)) {
            break;
        }
        struct rm_item *it = rm->head;
        rm->head = it->next;
        if (rm->head == NULL) {
            rm->tail = NULL;
        }
        rm->queued--;
        rm->running++;
        pthread_mutex_unlock(&rm->mu);
        struct rm_report *rp = run_item(rm, it);
        free(it);
        /* One lock round per item for the report and the bookkeeping together. */
        pthread_mutex_lock(&rm->mu);
        if (rp != NULL) {
            queue_report_locked(rm, rp);
        }
        rm->running--;
        rm->st.handled++;
        pthread_cond_broadcast(&rm->space_cv);
    }
    pthread_mutex_unlock(&rm->mu);
    return NULL;
}

/* ---- pollers --------------------------------------------------------------------------------- */

static struct rm_item *item_copy(const struct sinter_proto_phase2_item *pi, size_t node)
{
    const struct sinter_proto_branch_work *bw = &pi->work;
    struct rm_item *it =
        malloc(sizeof *it + (size_t)bw->resource_id.len + 1 + (size_t)bw->application_data.len);
    if (it == NULL) {
        return NULL;
    }
    memset(it, 0, sizeof *it);
    it->node = node;
    it->code = pi->code;
    it->xid = bw->xid;
    it->branch_id = bw->branch_id;
    it->type = bw->branch_type;
    it->xa_local_xid = bw->xa_local_xid;
    it->attempt = bw->attempt;
    it->resource = (char *)(it + 1);
    if (bw->resource_id.len > 0) {
        memcpy(it->resource, bw->resource_id.ptr, bw->resource_id.len);
    }
    it->resource[bw->resource_id.len] = '\0';
    it->data = (uint8_t *)it->resource + bw->resource_id.len + 1;
    it->data_len = bw->application_data.len;
    if (it->data_len > 0) {
        memcpy(it->data, bw->application_data.ptr, it->data_len);
    }
    return it;
}

static void *poller_main(void *arg)
{
    struct poller_arg pa = *(struct poller_arg *)arg;
    free(arg);
    struct sinter_rm *rm = pa.rm;
    struct sinter_proto_msg *m = calloc(1, sizeof *m); /* ~12 KiB, off the stack */
    if (m == NULL) {
        return NULL;
    }
    uint32_t pause = 100;
    while (!atomic_load(&rm->stopping)) {
        /* Back-pressure: ask only for what the queue can take. */
        pthread_mutex_lock(&rm->mu);
        while (rm->queued + rm->running + rm->reporting >= rm->o.queue_capacity &&
               !atomic_load(&rm->stopping)) {
            pthread_cond_wait(&rm->space_cv, &rm->mu);
        }
        uint32_t room = rm->o.queue_capacity - (rm->queued + rm->running + rm->reporting);
        pthread_mutex_unlock(&rm->mu);
        if (atomic_load(&rm->stopping)) {
            break;
        }
        memset(m, 0, sizeof *m);
        m->code = SINTER_MSG_PHASE2_POLL;
        m->rq.client_id = sinter_client_id(rm->cl);
        m->rq.seq = sinter_client_next_seq(rm->cl);
        m->u.phase2_poll.n_resources = rm->n_resources;
        for (uint32_t i = 0; i < rm->n_resources; i++) {
            m->u.phase2_poll.resource_ids[i] = sinter_proto_str_c(rm->resources[i]);
        }
        m->u.phase2_poll.max_items = room < rm->o.poll_max_items ? room : rm->o.poll_max_items;
        m->u.phase2_poll.wait_ms = rm->o.poll_wait_ms;
        struct sinter_transport_reply_msg *r = NULL;
        int rc = sinter_client_call_node_ex(rm->cl, pa.node, m, rm->o.poll_wait_ms + POLL_MARGIN_MS,
                                            &r, &rm->stopping);
        if (atomic_load(&rm->stopping)) {
            sinter_transport_reply_free(r); /* items in it: their leases expire, redelivered */
            break;
        }
        const struct sinter_proto_msg *rm_msg =
            rc == SINTER_OK ? sinter_transport_reply_get(r) : NULL;
        if (rm_msg == NULL || rm_msg->code != SINTER_MSG_PHASE2_POLL_RESULT ||
            rm_msg->rs.result != SINTER_OK) {
            /* Node down, not serving polls (yet), or refusing us: try again later. */
            sinter_transport_reply_free(r);
            rm_sleep(rm, pause);
            pause = pause * 2 > POLL_BACKOFF_MAX_MS ? POLL_BACKOFF_MAX_MS : pause * 2;
            continue;
        }
        pause = 100;
        const struct sinter_proto_phase2_poll_result *pr = &rm_msg->u.phase2_poll_result;
        pthread_mutex_lock(&rm->mu);
        rm->st.polls++;
        uint32_t added = 0;
        for (uint32_t i = 0; i < pr->n_items; i++) {
            struct rm_item *it = item_copy(&pr->items[i], pa.node);
            if (it == NULL) {
                continue; /* out of memory: the lease expires and the item comes back */
            }
            if (rm->tail != NULL) {
                rm->tail->next = it;
            } else {
                rm->head = it;
            }
            rm->tail = it;
            rm->queued++;
            rm->st.items++;
            added++;
        }
        pthread_mutex_unlock(&rm->mu);
        /* One wake-up per new item (after the unlock, so the woken worker does not block on
         * rm->mu at once), not a broadcast: with 1 or 2 items per poll (the usual case) the other
         * idle workers would only wake, contend for rm->mu and sleep again. */
        if (added >= rm->n_workers) {
            pthread_cond_broadcast(&rm->work_cv);
        } else {
            for (uint32_t i = 0; i < added; i++) {
                pthread_cond_signal(&rm->work_cv);
            }
        }
        sinter_transport_reply_free(r);
    }
    free(m);
    return NULL;
}

/* Starts a poller for every node that has none yet. rm->mu held. */
static int spawn_pollers_locked(struct sinter_rm *rm)
{
    size_t n = sinter_client_node_count(rm->cl);
    while (rm->n_pollers < n && !atomic_load(&rm->stopping)) {
        struct poller_arg *pa = malloc(sizeof *pa);
        if (pa == NULL) {
            return SINTER_ENOMEM;
        }
        *pa = (struct poller_arg){rm, rm->n_pollers};
        if (spawn(&rm->pollers[rm->n_pollers], poller_main, pa) != 0) {
            free(pa);
            return SINTER_EINTERNAL;
        }
        rm->n_pollers++;
        rm->st.pollers = (uint32_t)rm->n_pollers;
    }
    return SINTER_OK;
}

static void *maint_main(void *arg)
{
    struct sinter_rm *rm = arg;
    uint64_t next_meta = 0, next_clean = 0;
    while (!atomic_load(&rm->stopping)) {
        uint64_t now = sinter_client_now_ms();
        if (now >= next_meta) {
            /* New members (a grown cluster, or nodes we were not given) get a poller. */
            if (sinter_client_refresh(rm->cl, rm->o.attempt_timeout_ms ? rm->o.attempt_timeout_ms
                                                                       : 3000u) == SINTER_OK &&
                rm->n_resources > 0) {
                pthread_mutex_lock(&rm->mu);
                spawn_pollers_locked(rm);
                pthread_mutex_unlock(&rm->mu);
            }
            next_meta = sinter_client_now_ms() + rm->o.meta_refresh_ms;
        }
        if (rm->o.fence_cleanup_interval_ms != UINT32_MAX && now >= next_clean) {
            if (next_clean != 0) { /* not at start: the service is still warming up */
                sinter_rm_tcc_cleanup_all(rm);
            }
            next_clean = sinter_client_now_ms() + rm->o.fence_cleanup_interval_ms;
        }
        /* XA recovery scans (rm/rm_xa.c): each resource on its own interval. A scan asks the
         * coordinator about every prepared gid of its namespace; it is bounded by the number of
         * such gids times deadline_ms, and the meta refresh above waits for it. */
        uint64_t next_xa = sinter_rm_xa_scan_due(rm);
        uint64_t wake = next_meta;
        if (rm->o.fence_cleanup_interval_ms != UINT32_MAX && next_clean < wake) {
            wake = next_clean;
        }
        if (next_xa < wake) {
            wake = next_xa;
        }
        now = sinter_client_now_ms();
        rm_sleep(rm, wake > now ? (uint32_t)(wake - now) : 1u);
    }
    return NULL;
}

/* Stops every thread the handle runs and waits for them, in the order close needs: the
 * maintenance thread (so no poller is added meanwhile), the pollers (woken from their long poll),
 * the workers (each finishes its handler and queues the report), then the reporters, which send
 * every queued report before they exit. Items queued but never started are dropped (their
 * leases expire and the coordinator delivers them again). Called by close, and by a failed
 * start on the threads it created. Not with rm->mu held. */
static void stop_threads(struct sinter_rm *rm)
{
    pthread_mutex_lock(&rm->mu);
    atomic_store(&rm->stopping, true);
    pthread_cond_broadcast(&rm->work_cv);
    pthread_cond_broadcast(&rm->space_cv);
    pthread_cond_broadcast(&rm->stop_cv);
    pthread_mutex_unlock(&rm->mu);
    sinter_client_wake(rm->cl); /* pollers parked in Phase2Poll return now */
    if (rm->maint_started) {
        pthread_join(rm->maint, NULL);
        rm->maint_started = false;
    }
    /* No new poller can start now (the maintenance thread is gone, stopping is set). */
    for (size_t i = 0; i < rm->n_pollers; i++) {
        pthread_join(rm->pollers[i], NULL);
    }
    rm->n_pollers = 0;
    /* Workers finish the handler they run and queue its report, then see `stopping`. */
    for (uint32_t i = 0; i < rm->n_workers; i++) {
        pthread_join(rm->workers[i], NULL);
    }
    rm->n_workers = 0;
    free(rm->workers);
    rm->workers = NULL;
    /* No report can be queued any more: the reporters send what is left (each report bounded by
     * its deadline) and exit. */
    pthread_mutex_lock(&rm->mu);
    rm->reporters_done = true;
    pthread_cond_broadcast(&rm->report_cv);
    pthread_mutex_unlock(&rm->mu);
    for (uint32_t i = 0; i < rm->n_reporters; i++) {
        pthread_join(rm->reporters[i], NULL);
    }
    rm->n_reporters = 0;
    free(rm->reporters);
    rm->reporters = NULL;
    pthread_mutex_lock(&rm->mu);
    while (rm->rhead != NULL) { /* only when no reporter could be started */
        struct rm_report *rp = rm->rhead;
        rm->rhead = rp->next;
        rm->st.reports_failed++;
        free(rp);
    }
    rm->rtail = NULL;
    rm->reporting = 0;
    while (rm->head != NULL) {
        struct rm_item *it = rm->head;
        rm->head = it->next;
        rm->st.dropped++;
        free(it);
    }
    rm->tail = NULL;
    rm->queued = 0;
    rm->st.pollers = 0;
    pthread_mutex_unlock(&rm->mu);
}

int sinter_rm_start(struct sinter_rm *rm)
{
    if (rm == NULL) {
        return SINTER_EINVAL;
    }
    pthread_mutex_lock(&rm->mu);
    if (rm->started || atomic_load(&rm->stopping)) {
        pthread_mutex_unlock(&rm->mu);
        return SINTER_ESTATE;
    }
    rm->started = true;
    int rc = SINTER_OK;
    rm->reporters = calloc(rm->o.reporters, sizeof *rm->reporters);
    rm->workers = calloc(rm->o.workers, sizeof *rm->workers);
    if (rm->workers == NULL || rm->reporters == NULL) {
        rc = SINTER_ENOMEM;
    }
    for (uint32_t i = 0; rc == SINTER_OK && i < rm->o.reporters; i++) {
        if (spawn(&rm->reporters[i], reporter_main, rm) != 0) {
            rc = SINTER_EINTERNAL;
            break;
        }
        rm->n_reporters = i + 1;
    }
    for (uint32_t i = 0; rc == SINTER_OK && i < rm->o.workers; i++) {
        if (spawn(&rm->workers[i], worker_main, rm) != 0) {
            rc = SINTER_EINTERNAL;
            break;
        }
        rm->n_workers = i + 1;
    }
    if (rc == SINTER_OK && rm->n_resources > 0) {
        rc = spawn_pollers_locked(rm);
    }
    if (rc == SINTER_OK) {
        if (spawn(&rm->maint, maint_main, rm) != 0) {
            rc = SINTER_EINTERNAL;
        } else {
            rm->maint_started = true;
        }
    }
    pthread_mutex_unlock(&rm->mu);
    if (rc != SINTER_OK) {
        /* Leave the handle as sinter_rm_open left it, so the caller can start it again (e.g.
         * after the thread limit was raised): stop and join what did start (pollers may already
         * hold leases: their items are dropped and redelivered after the lease, as at close;
         * reports of items a worker finished are still sent), then clear the flags. `started`
         * stays set until then, so a concurrent start answers SINTER_ESTATE meanwhile. */
        stop_threads(rm);
        pthread_mutex_lock(&rm->mu);
        rm->reporters_done = false;
        atomic_store(&rm->stopping, false);
        rm->started = false;
        pthread_mutex_unlock(&rm->mu);
        sinter_client_set_errmsg("rm start: %s", rc == SINTER_ENOMEM
                                                     ? "out of memory"
                                                     : "a thread could not be created");
    }
    return rc;
}

void sinter_rm_stats(struct sinter_rm *rm, struct sinter_rm_stats *st)
{
    pthread_mutex_lock(&rm->mu);
    *st = rm->st;
    pthread_mutex_unlock(&rm->mu);
}

void sinter_rm_close(struct sinter_rm *rm)
{
    if (rm == NULL) {
        return;
    }
    stop_threads(rm);
    sinter_rm_tcc_free_all(rm);
    sinter_rm_xa_free_all(rm);
    sinter_client_close(rm->cl);
    for (uint32_t i = 0; i < rm->n_handlers; i++) {
        free(rm->handlers[i].resource);
    }
    for (uint32_t i = 0; i < rm->n_resources; i++) {
        free(rm->resources[i]);
    }
    free(rm->resources);
    free(rm->app_id);
    pthread_rwlock_destroy(&rm->hlock);
    pthread_cond_destroy(&rm->work_cv);
    pthread_cond_destroy(&rm->space_cv);
    pthread_cond_destroy(&rm->stop_cv);
    pthread_cond_destroy(&rm->report_cv);
    pthread_mutex_destroy(&rm->mu);
    free(rm);
}
