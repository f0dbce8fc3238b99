/*
 * The coordinator's leader-only workers and the RM-facing phase-2 service (see tc/worker.h and
 * docs/phase2-protocol.md). Everything here runs on the raft host's loop thread, which owns every
 * group's fsm, except sinter_tc_poll_submit (an RPC thread: it only hands the poll to the loop
 * with sinter_raft_host_call) and sinter_tc_workers_shutdown (the stopping thread, after the loop
 * is gone).
 *
 * Worker commands carry an empty client id and seq 0 (tc/command.h): they are not client requests
 * and need no session; the state machine's compare-and-set makes a repeated or stale one harmless
 * (a timeout decision re-checks the deadline, RETRY_TIMEOUT re-checks first attempt + max, a
 * BRANCH_RESULT repeating a recorded end is accepted as done).
 */
#include "tc/worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinter/error.h"
#include "sinter/raft.h"
#include "sinter/types.h"
#include "tc/command.h"
#include "tc/log.h"
#include "tc/phase2_sched.h"

#define SCAN_PAGE       256u   /* decided globals read per tick while rescanning */
#define SCAN_PERIOD_MS  30000u /* safety-net rescan of the decided globals */
#define TIMEOUT_PAGE    128u   /* timed-out globals decided per scan */
#define TIMEOUT_SCAN_MS 100u   /* between two timeout scans when the last one was not full */
#define GC_BATCH        1000u  /* rows per kind per GC command */
#define DEADLINE_CAP    64u
#define POLL_MAX_ITEMS  64u /* the transport's default max_batch (sinter_proto_limits) */
/* A Phase2PollResult must fit the 1 MiB frame limit; items carry up to 64 KiB of app data. */
#define POLL_MAX_BYTES (900u * 1024u)

struct tc_worker {
    struct tc_group *g;
    struct sinter_p2_sched *sched;
    uint64_t gen;
    uint64_t term;
    uint64_t since_ms; /* leader since (this node's monotonic clock) */
    uint64_t rng;
    bool scanning;
    uint64_t scan_after;
    uint64_t next_scan_ms;
    uint32_t timeouts_inflight;
    uint64_t next_timeout_ms;
    bool gc_inflight;
    uint64_t next_gc_ms;
};

struct tc_end_waiter {
    struct tc_end_waiter *next;
    struct sinter_transport_request *req;
    uint16_t code;
    struct sinter_xid xid;
    uint64_t deadline;
};

struct tc_poll_waiter {
    struct tc_poll_waiter *prev, *next;
    struct sinter_tc_server *s;
    struct sinter_transport_request *req;
    const struct sinter_proto_msg *m; /* the request, valid until the reply */
    uint32_t max_items;
    uint32_t wait_ms;
    uint64_t deadline;
};

enum wkind { WK_START, WK_RETRY_TIMEOUT, WK_TIMEOUT, WK_GC };

/* A worker proposal in flight. */
struct wprop {
    struct sinter_tc_server *s;
    uint32_t group;
    uint64_t gen;
    enum wkind kind;
    struct sinter_xid xid;
};

uint64_t sinter_tc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sinter_tc_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sinter_tc_mono_ms(void)
{
    /* + 1: 0 means "never" in several timers; the monotonic clock may start near 0. */
    return sinter_tc_mono_ns() / 1000000u + 1u;
}

static bool in_phase2(uint32_t st)
{
    return st >= SINTER_GS_COMMITTING && st <= SINTER_GS_TIMEOUT_ROLLBACK_RETRYING;
}

static uint64_t w_rand(void *arg)
{
    struct tc_worker *w = arg;
    /* xorshift64*: jitter only needs to spread retries, not to be unpredictable. */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545f4914f6cdd1dull;
}

static void reply_error(struct sinter_transport_request *req, int rc, const char *text)
{
    sinter_transport_reply_error(req, rc, text);
}

/* ---- worker proposals ------------------------------------------------------------------------ */

static bool wpropose(struct tc_worker *w, enum wkind kind, struct sinter_tc_cmd *cmd,
                     struct sinter_xid xid);

/* The replicated first-attempt time of a global still in phase 2 (false: gone or not in phase 2).
 */
static bool phase2_first(struct tc_worker *w, uint64_t xid_index, uint64_t *first)
{
    struct sinter_tc_global gl;
    if (sinter_tc_fsm_get_global(w->g->fsm, xid_index, &gl, NULL, NULL) != SINTER_OK) {
        return false;
    }
    bool ok = in_phase2(gl.status);
    *first = gl.phase2_first_ms;
    sinter_tc_global_free(&gl);
    return ok;
}

static void w_restart_or_set_first(struct tc_worker *w, struct sinter_xid xid)
{
    uint64_t first = 0;
    if (!phase2_first(w, xid.index, &first) || !sinter_p2_has_global(w->sched, xid.index)) {
        return;
    }
    if (first != 0) {
        sinter_p2_set_first(w->sched, xid.index, first);
        return;
    }
    sinter_tc_log(SINTER_TC_LOG_WARN, w->g->id, &xid,
                  "RETRY_TIMEOUT refused: no first-attempt time recorded, proposing PHASE2_START");
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_PHASE2_START;
    c.u.x.xid = xid;
    wpropose(w, WK_START, &c, xid);
}

static void wprop_done(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                       const char *leader_url)
{
    (void)leader;
    (void)leader_url;
    struct wprop *p = arg;
    struct tc_group *g = &p->s->groups[p->group];
    struct sinter_tc_metrics *mt = &p->s->metrics;
    const struct sinter_tc_result *r = rc == SINTER_OK ? sinter_tc_last_result(g, index) : NULL;
    struct tc_worker *w = g->worker != NULL && g->worker->gen == p->gen ? g->worker : NULL;
    bool applied = r != NULL && r->rc == SINTER_OK;
    uint64_t now = sinter_tc_mono_ms();
    switch (p->kind) {
    case WK_TIMEOUT:
        if (w != NULL && w->timeouts_inflight > 0) {
            w->timeouts_inflight--;
        }
        if (applied && r->status != SINTER_GS_BEGIN) {
            atomic_fetch_add_explicit(&mt->timeouts, 1, memory_order_relaxed);
            sinter_tc_log(SINTER_TC_LOG_INFO, p->group, &p->xid, "timeout rollback: %s",
                          sinter_global_status_name(r->status));
        }
        break;
    case WK_RETRY_TIMEOUT:
        if (applied && (r->status == SINTER_GS_COMMIT_RETRY_TIMEOUT ||
                        r->status == SINTER_GS_ROLLBACK_RETRY_TIMEOUT)) {
            atomic_fetch_add_explicit(&mt->retry_timeouts, 1, memory_order_relaxed);
            sinter_tc_log(SINTER_TC_LOG_WARN, p->group, &p->xid,
                          "phase-2 deadline passed: %s (kept for an operator)",
                          sinter_global_status_name(r->status));
        } else if (w != NULL) {
            /* Refused: the state machine's first-attempt time differs from this leader's
             * estimate. 0 means the PHASE2_START was lost (the state machine refuses every
             * RETRY_TIMEOUT until it has one): ask for it again; otherwise count the deadline from
             * the replicated time. */
            w_restart_or_set_first(w, p->xid);
        }
        break;
    case WK_GC:
        if (applied) {
            atomic_fetch_add_explicit(&mt->gc_removed, r->removed, memory_order_relaxed);
            if (r->removed + r->sessions_removed + r->clients_removed > 0) {
                sinter_tc_log(SINTER_TC_LOG_INFO, p->group, NULL,
                              "retention GC removed %" PRIu64 " globals, %" PRIu64
                              " client answers, %" PRIu64 " clients",
                              r->removed, r->sessions_removed, r->clients_removed);
            }
        }
        if (w != NULL) {
            w->gc_inflight = false;
            /* A full batch means more is due: go on at once (the next tick) rather than wait a
             * whole interval, in batches so one entry never stalls apply. */
            bool full = applied && (r->removed >= GC_BATCH || r->sessions_removed >= GC_BATCH ||
                                    r->clients_removed >= GC_BATCH);
            w->next_gc_ms = full ? now : now + p->s->cfg->gc_interval_ms;
        }
        break;
    case WK_START:
        if (w != NULL) {
            uint64_t first = 0;
            if (phase2_first(w, p->xid.index, &first) && first != 0) {
                /* The deadline counts from the replicated time, not this leader's estimate. */
                sinter_p2_set_first(w->sched, p->xid.index, first);
            } else if (!applied) {
                /* Not durable (proposal failed, lost in a leader change, refused): forget the
                 * estimate so the next delivery asks again; otherwise the global would have no
                 * deadline at all (RETRY_TIMEOUT is refused while the state has no time). */
                sinter_tc_log(SINTER_TC_LOG_WARN, p->group, &p->xid,
                              "PHASE2_START not applied (%s): asked again at the next delivery",
                              sinter_errname(rc != SINTER_OK ? rc
                                             : r != NULL     ? r->rc
                                                             : rc));
                sinter_p2_start_failed(w->sched, p->xid.index);
            }
        }
        break;
    }
    free(p);
}

static bool wpropose(struct tc_worker *w, enum wkind kind, struct sinter_tc_cmd *cmd,
                     struct sinter_xid xid)
{
    struct tc_group *g = w->g;
    cmd->version = SINTER_TC_CMD_VERSION;
    cmd->now_ms = sinter_tc_wall_ms(); /* the leader's clock travels in the entry */
    cmd->client_id = (struct sinter_tc_bytes){NULL, 0};
    cmd->seq = 0;
    uint8_t buf[256];
    size_t len = 0;
    int rc = sinter_tc_cmd_encode(cmd, buf, sizeof buf, &len);
    struct wprop *p = rc == SINTER_OK ? malloc(sizeof *p) : NULL;
    if (p == NULL) {
        sinter_tc_log(SINTER_TC_LOG_ERROR, g->id, xid.index ? &xid : NULL, "%s not proposed: %s",
                      sinter_tc_cmd_name(cmd->type),
                      sinter_errname(rc != SINTER_OK ? rc : SINTER_ENOMEM));
        return false;
    }
    *p = (struct wprop){g->srv, g->id, w->gen, kind, xid};
    rc = sinter_raft_host_propose(g->srv->host, g->id, buf, (uint32_t)len, wprop_done, p);
    if (rc != SINTER_OK) {
        free(p);
        return false;
    }
    return true;
}

/* ---- WAIT_PHASE2 replies ----------------------------------------------------------------------
 */

static void end_reply(struct tc_end_waiter *ew, int rc, uint32_t status)
{
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = sinter_proto_reply_code(ew->code);
    m.rs.result = rc;
    m.u.global_status_result.global_status = status;
    sinter_transport_reply(ew->req, &m);
    free(ew);
}

void sinter_tc_end_wait(struct tc_group *g, struct sinter_transport_request *req, uint16_t code,
                        struct sinter_xid xid, uint32_t wait_ms)
{
    uint32_t st = SINTER_GS_FINISHED;
    int qrc = sinter_tc_fsm_status(g->fsm, xid.index, &st);
    struct tc_end_waiter *ew = calloc(1, sizeof *ew);
    if (ew == NULL) {
        reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    *ew = (struct tc_end_waiter){NULL, req, code, xid, 0};
    if (qrc != SINTER_OK || sinter_global_status_is_final(st)) {
        end_reply(ew, qrc == SINTER_OK || qrc == SINTER_ENOTFOUND ? SINTER_OK : qrc, st);
        return;
    }
    if (wait_ms == 0) {
        wait_ms = SINTER_TC_END_WAIT_DEFAULT_MS;
    } else if (wait_ms > SINTER_TC_END_WAIT_MAX_MS) {
        wait_ms = SINTER_TC_END_WAIT_MAX_MS;
    }
    ew->deadline = sinter_tc_mono_ms() + wait_ms;
    size_t b = (size_t)(xid.index % END_BUCKETS);
    ew->next = g->end_waiters[b];
    g->end_waiters[b] = ew;
    g->n_end_waiters++;
}

static void end_wake(struct tc_group *g, uint64_t xid_index, uint32_t status)
{
    struct tc_end_waiter **pp = &g->end_waiters[xid_index % END_BUCKETS];
    while (*pp != NULL) {
        struct tc_end_waiter *ew = *pp;
        if (ew->xid.index == xid_index) {
            *pp = ew->next;
            g->n_end_waiters--;
            end_reply(ew, SINTER_OK, status);
        } else {
            pp = &ew->next;
        }
    }
}

static void end_expire(struct tc_group *g, uint64_t now)
{
    for (size_t b = 0; b < END_BUCKETS && g->n_end_waiters > 0; b++) {
        struct tc_end_waiter **pp = &g->end_waiters[b];
        while (*pp != NULL) {
            struct tc_end_waiter *ew = *pp;
            if (now >= ew->deadline) {
                *pp = ew->next;
                g->n_end_waiters--;
                uint32_t st = SINTER_GS_FINISHED;
                int qrc = sinter_tc_fsm_status(g->fsm, ew->xid.index, &st);
                /* The wait is over: the status it has now (Seata's commit returns the status it
                 * reached, Committing included). */
                end_reply(ew, qrc == SINTER_OK || qrc == SINTER_ENOTFOUND ? SINTER_OK : qrc, st);
            } else {
                pp = &ew->next;
            }
        }
    }
}

/* ---- Phase2Poll -------------------------------------------------------------------------------
 */

static size_t ready_total(const struct sinter_tc_server *s)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->cfg->groups; i++) {
        if (s->groups[i].worker != NULL) {
            n += sinter_p2_ready_count(s->groups[i].worker->sched);
        }
    }
    return n;
}

static void poll_unlink(struct sinter_tc_server *s, struct tc_poll_waiter *pw)
{
    if (pw->prev != NULL) {
        pw->prev->next = pw->next;
    } else {
        s->polls = pw->next;
    }
    if (pw->next != NULL) {
        pw->next->prev = pw->prev;
    }
    pw->prev = pw->next = NULL;
    s->n_polls--;
}

/* Fills a reply for pw from every group this node leads; replies and returns true when there was
 * work, or when `final` (the wait is over: an empty batch). */
static bool poll_try(struct sinter_tc_server *s, struct tc_poll_waiter *pw, uint64_t now,
                     bool final)
{
    if (!final && ready_total(s) == 0) {
        return false;
    }
    struct sinter_proto_msg *r = calloc(1, sizeof *r);
    if (r == NULL) {
        if (final) {
            reply_error(pw->req, SINTER_ENOMEM, NULL);
        }
        return final;
    }
    const struct sinter_proto_phase2_poll *p = &pw->m->u.phase2_poll;
    const char *res[SINTER_PROTO_MAX_RESOURCES];
    uint32_t lens[SINTER_PROTO_MAX_RESOURCES];
    for (uint32_t i = 0; i < p->n_resources; i++) {
        res[i] = p->resource_ids[i].ptr != NULL ? p->resource_ids[i].ptr : "";
        lens[i] = p->resource_ids[i].len;
    }
    struct sinter_p2_take_item items[POLL_MAX_ITEMS];
    size_t k = 0, bytes = 0;
    for (uint32_t gi = 0; gi < s->cfg->groups && k < pw->max_items; gi++) {
        struct tc_worker *w = s->groups[gi].worker;
        if (w == NULL || sinter_p2_ready_count(w->sched) == 0) {
            continue;
        }
        size_t got = sinter_p2_take(w->sched, now, sinter_tc_wall_ms(), res, lens, p->n_resources,
                                    items + k, pw->max_items - k, &bytes, POLL_MAX_BYTES);
        for (size_t j = k; j < k + got; j++) {
            const struct sinter_p2_branch *b = items[j].b;
            struct sinter_proto_phase2_item *it = &r->u.phase2_poll_result.items[j];
            it->code = b->commit ? SINTER_MSG_BRANCH_COMMIT : SINTER_MSG_BRANCH_ROLLBACK;
            it->work.xid = b->xid;
            it->work.branch_id = b->branch_id;
            it->work.branch_type = b->branch_type;
            it->work.resource_id = sinter_proto_str_c(b->resource_id);
            it->work.application_data = (struct sinter_proto_bytes){b->app_data, b->app_data_len};
            it->work.xa_local_xid = b->xa_local_xid;
            it->work.attempt = b->attempt;
            /* No PHASE2_START here: the first BRANCH_RESULT records the deadline base, and an
             * unanswered delivery asks for it at its lease expiry (advance). One raft entry less
             * per global whose phase 2 goes well (docs/phase2-protocol.md). */
            sinter_tc_log(SINTER_TC_LOG_DEBUG, gi, &b->xid,
                          "deliver %s of branch %" PRIu64 " (%s), attempt %u",
                          b->commit ? "commit" : "rollback", b->branch_id, b->resource_id,
                          b->attempt);
        }
        k += got;
    }
    if (k == 0 && !final) {
        free(r);
        return false;
    }
    atomic_fetch_add_explicit(&s->metrics.phase2_deliveries, k, memory_order_relaxed);
    r->code = SINTER_MSG_PHASE2_POLL_RESULT;
    r->u.phase2_poll_result.n_items = (uint32_t)k;
    /* The reply is encoded inside this call, while the items still point into the scheduler. */
    sinter_transport_reply(pw->req, r);
    free(r);
    return true;
}

static void serve_polls(struct sinter_tc_server *s, uint64_t now)
{
    struct tc_poll_waiter *pw = s->polls;
    while (pw != NULL && ready_total(s) > 0) {
        struct tc_poll_waiter *next = pw->next;
        if (poll_try(s, pw, now, false)) {
            poll_unlink(s, pw);
            free(pw);
        }
        pw = next;
    }
}

static void poll_on_loop(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                         const char *leader_url)
{
    (void)index;
    (void)leader;
    (void)leader_url;
    struct tc_poll_waiter *pw = arg;
    struct sinter_tc_server *s = pw->s;
    if (rc == SINTER_ESHUTDOWN) {
        reply_error(pw->req, SINTER_ESHUTDOWN, "coordinator is stopping");
        free(pw);
        return;
    }
    /* Any other rc (group 0's store failed) still runs on the loop: serve from the others. */
    uint64_t now = sinter_tc_mono_ms();
    pw->deadline = now + pw->wait_ms;
    if (poll_try(s, pw, now, false)) {
        free(pw);
        return;
    }
    pw->prev = NULL;
    pw->next = s->polls;
    if (s->polls != NULL) {
        s->polls->prev = pw;
    }
    s->polls = pw;
    s->n_polls++;
}

void sinter_tc_poll_submit(struct sinter_tc_server *s, struct sinter_transport_request *req,
                           const struct sinter_proto_msg *m)
{
    const struct sinter_proto_phase2_poll *p = &m->u.phase2_poll;
    if (p->n_resources == 0 || p->max_items == 0) {
        reply_error(req, SINTER_EINVAL, "Phase2Poll needs at least one resource id and max_items");
        return;
    }
    struct tc_poll_waiter *pw = calloc(1, sizeof *pw);
    if (pw == NULL) {
        reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    pw->s = s;
    pw->req = req;
    pw->m = m;
    pw->max_items = p->max_items < POLL_MAX_ITEMS ? p->max_items : POLL_MAX_ITEMS;
    pw->wait_ms = p->wait_ms < 1                            ? 1
                  : p->wait_ms > SINTER_TC_POLL_WAIT_MAX_MS ? SINTER_TC_POLL_WAIT_MAX_MS
                                                            : p->wait_ms;
    /* The schedulers belong to the loop thread: the poll is parked there. Every group runs on
     * the same loop; group 0 only names the queue. */
    int rc = sinter_raft_host_call(s->host, 0, poll_on_loop, pw);
    if (rc != SINTER_OK) {
        free(pw);
        reply_error(req, rc, sinter_strerror(rc));
    }
}

/* ---- the phase-2 driver -----------------------------------------------------------------------
 */

static uint64_t parse_xa(const uint8_t *p, uint32_t n)
{
    static const char pre[] = "pg_xact:";
    if (p == NULL || n <= sizeof pre - 1 || memcmp(p, pre, sizeof pre - 1) != 0) {
        return 0;
    }
    uint64_t v = 0;
    for (uint32_t i = sizeof pre - 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
        v = v * 10u + (uint64_t)(p[i] - '0');
    }
    return v;
}

/* Loads a decided global from the state and schedules every branch that still needs phase 2.
 * Returns whether anything was added. */
static bool track_global(struct tc_worker *w, uint64_t xid_index, uint64_t now)
{
    struct sinter_tc_global gl;
    struct sinter_tc_branch *br = NULL;
    size_t nb = 0;
    if (sinter_tc_fsm_get_global(w->g->fsm, xid_index, &gl, &br, &nb) != SINTER_OK) {
        return false; /* gone (GC) or a database error, logged by the next apply */
    }
    bool any = false;
    if (in_phase2(gl.status)) {
        for (size_t i = 0; i < nb; i++) {
            if (!sinter_tc_branch_needs_phase2(br[i].status)) {
                continue;
            }
            struct sinter_p2_branch_info info = {
                .xid = gl.xid,
                .branch_id = br[i].branch_id,
                .commit = gl.decision == SINTER_GS_COMMITTING,
                .branch_type = br[i].branch_type,
                .resource_id = br[i].resource_id,
                .app_data = br[i].app_data,
                .app_data_len = br[i].app_data_len,
                .xa_local_xid = parse_xa(br[i].xa_info, br[i].xa_info_len),
                .attempts_done = br[i].phase2_results,
                .phase2_first_ms = gl.phase2_first_ms,
                .decided_ms = gl.decided_ms,
            };
            bool added = false;
            if (sinter_p2_add(w->sched, &info, now, &added) != SINTER_OK) {
                sinter_tc_log(SINTER_TC_LOG_ERROR, w->g->id, &gl.xid,
                              "phase-2 branch %" PRIu64 " not scheduled: out of memory",
                              br[i].branch_id);
            }
            any = any || added;
        }
        sinter_p2_set_first(w->sched, xid_index, gl.phase2_first_ms);
    }
    sinter_tc_global_free(&gl);
    sinter_tc_branches_free(br, nb);
    return any;
}

static void advance(struct tc_worker *w, uint64_t now)
{
    struct sinter_tc_server *s = w->g->srv;
    struct sinter_p2_deadline dl[DEADLINE_CAP];
    struct sinter_xid starts[DEADLINE_CAP];
    struct sinter_p2_events ev;
    memset(&ev, 0, sizeof ev);
    ev.deadline = dl;
    ev.deadline_cap = DEADLINE_CAP;
    ev.start = starts;
    ev.start_cap = DEADLINE_CAP;
    sinter_p2_advance(w->sched, now, sinter_tc_wall_ms(), &ev);
    for (size_t i = 0; i < ev.n_start; i++) {
        /* A delivery went unanswered before any BRANCH_RESULT recorded the global's first-attempt
         * time: record it now, so a new leader counts the deadline from it too. */
        struct sinter_tc_cmd c;
        memset(&c, 0, sizeof c);
        c.type = SINTER_TC_CMD_PHASE2_START;
        c.u.x.xid = starts[i];
        if (!wpropose(w, WK_START, &c, starts[i])) {
            sinter_p2_start_failed(w->sched, starts[i].index);
        }
    }
    if (ev.lease_expired > 0) {
        atomic_fetch_add_explicit(&s->metrics.phase2_lease_expired, ev.lease_expired,
                                  memory_order_relaxed);
        sinter_tc_log(SINTER_TC_LOG_INFO, w->g->id, NULL,
                      "%" PRIu64 " phase-2 lease(s) expired without a report: redelivering",
                      ev.lease_expired);
    }
    atomic_fetch_add_explicit(&s->metrics.phase2_retries, ev.retries, memory_order_relaxed);
    for (size_t i = 0; i < ev.n_deadline; i++) {
        struct sinter_tc_cmd c;
        memset(&c, 0, sizeof c);
        c.type = SINTER_TC_CMD_RETRY_TIMEOUT;
        c.u.retry_timeout.xid = dl[i].xid;
        c.u.retry_timeout.max_retry_ms =
            dl[i].commit ? s->cfg->max_commit_retry_ms : s->cfg->max_rollback_retry_ms;
        wpropose(w, WK_RETRY_TIMEOUT, &c, dl[i].xid);
    }
    if (ev.ready > 0 && s->polls != NULL) {
        serve_polls(s, now);
    }
}

/* One applied answer ri: an entry's (type 0: e's type), or one outcome's of a BRANCH_RESULTS
 * (type BRANCH_RESULT, e NULL). */
static void applied_one(struct tc_group *g, struct tc_worker *w, uint64_t now,
                        const struct sinter_tc_result *ri, uint32_t type,
                        const struct sinter_tc_entry *e, bool *touched)
{
    if (ri->rc != SINTER_OK || ri->xid.index == 0) {
        return;
    }
    uint32_t st = ri->status;
    if (sinter_global_status_is_final(st)) {
        if (g->n_end_waiters > 0) {
            end_wake(g, ri->xid.index, st);
        }
        if (w != NULL && sinter_p2_has_global(w->sched, ri->xid.index)) {
            uint64_t d = sinter_p2_decided_ms(w->sched, ri->xid.index);
            if (d != 0) {
                uint64_t wall = sinter_tc_wall_ms(); /* decided_ms is replicated wall time */
                sinter_tc_hist_observe(&g->srv->metrics.phase2_latency, wall > d ? wall - d : 0);
            }
            sinter_p2_global_ended(w->sched, ri->xid.index);
        }
        return;
    }
    if (w == NULL || !in_phase2(st)) {
        return;
    }
    if (type == 0) {
        /* The fsm accepted the entry (rc OK), so it decoded: its type is the header's second
         * byte (tc/command.h), no need to decode it again. */
        type = e->len >= 2 ? e->data[1] : 0;
    }
    switch (type) {
    case SINTER_TC_CMD_BRANCH_RESULT:
        /* Applied in phase 2: the state machine recorded the global's first-attempt time if it
         * had none (tc/fsm.c), so no PHASE2_START is needed for it any more. An accepted result's
         * branch status is its outcome (tc/fsm.c apply_result). */
        sinter_p2_base_recorded(w->sched, ri->xid.index);
        if (!sinter_tc_branch_needs_phase2(ri->branch_status)) {
            /* A terminal outcome ends the branch whichever delivery it answers. */
            sinter_p2_branch_ended(w->sched, ri->xid.index, ri->branch_id);
        } else if (!sinter_p2_has_global(w->sched, ri->xid.index)) {
            /* A retryable outcome of a previous leader's delivery for a global this leader has
             * not loaded yet: load it, and let the branch wait the backoff rather than go out
             * again at once. */
            *touched = track_global(w, ri->xid.index, now) || *touched;
            sinter_p2_defer(w->sched, ri->xid.index, ri->branch_id, now);
        }
        /* A retryable outcome of a tracked branch only reschedules it if it answers the delivery
         * in flight: sinter_tc_worker_reported, with the report's attempt number, once the
         * proposal completes on this node. */
        break;
    case SINTER_TC_CMD_DECIDE:
    case SINTER_TC_CMD_REDRIVE:
        /* Phase 2 starts the moment the decision is applied: its branches are due now. */
        *touched = track_global(w, ri->xid.index, now) || *touched;
        break;
    default:
        break;
    }
}

void sinter_tc_worker_applied(struct tc_group *g, const struct sinter_tc_entry *e,
                              const struct sinter_tc_result *r, size_t n)
{
    struct tc_worker *w = g->worker;
    if (w == NULL && g->n_end_waiters == 0) {
        return;
    }
    uint64_t now = sinter_tc_mono_ms();
    bool touched = false;
    for (size_t i = 0; i < n; i++) {
        if (e[i].len == 0 || r[i].skipped) {
            continue;
        }
        if (r[i].n_sub > 0) {
            /* BRANCH_RESULTS: each outcome exactly as if it had been its own BRANCH_RESULT. */
            for (uint32_t k = 0; k < r[i].n_sub; k++) {
                applied_one(g, w, now, &r[i].sub[k], SINTER_TC_CMD_BRANCH_RESULT, NULL, &touched);
            }
            continue;
        }
        applied_one(g, w, now, &r[i], 0, &e[i], &touched);
    }
    if (touched) {
        advance(w, now);
    }
}

void sinter_tc_worker_reported(struct tc_group *g, const struct sinter_proto_phase2_report *p)
{
    struct tc_worker *w = g->worker;
    if (w == NULL || !sinter_tc_branch_needs_phase2(p->outcome.branch_status)) {
        return; /* terminal outcomes ended the branch when applied */
    }
    uint64_t now = sinter_tc_mono_ms();
    int rc = sinter_p2_retry(w->sched, p->outcome.xid.index, p->outcome.branch_id, p->attempt, now);
    if (rc == SINTER_OK) {
        atomic_fetch_add_explicit(&g->srv->metrics.phase2_retries, 1, memory_order_relaxed);
    } else if (rc == SINTER_ESTALE) {
        sinter_tc_log(SINTER_TC_LOG_DEBUG, g->id, &p->outcome.xid,
                      "retryable report of branch %" PRIu64
                      " attempt %u is not the delivery in flight: recorded only",
                      p->outcome.branch_id, p->attempt);
    }
}

/* ---- start, stop, tick ------------------------------------------------------------------------
 */

static void worker_drop(struct tc_group *g)
{
    struct tc_worker *w = g->worker;
    if (w == NULL) {
        return;
    }
    g->worker = NULL;
    sinter_tc_log(SINTER_TC_LOG_INFO, g->id, NULL,
                  "leader workers stopped (%zu phase-2 branch(es) left to the next leader)",
                  sinter_p2_count(w->sched));
    sinter_p2_sched_free(w->sched);
    free(w);
}

static void worker_start(struct tc_group *g, uint64_t term)
{
    const struct sinter_tc_config *cfg = g->srv->cfg;
    struct tc_worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return;
    }
    uint64_t now = sinter_tc_mono_ms();
    w->g = g;
    w->gen = ++g->worker_gen;
    w->term = term;
    w->since_ms = now;
    w->rng =
        (sinter_tc_wall_ms() ^ now ^ (cfg->node_id << 32) ^ ((uint64_t)g->id << 16) ^ w->gen) | 1u;
    w->scanning = true; /* rebuild from the replicated state: every pending branch due now */
    w->next_gc_ms = now + cfg->gc_interval_ms;
    struct sinter_p2_cfg pc = {cfg->retry_initial_ms, cfg->retry_max_ms, cfg->phase2_lease_ms,
                               cfg->max_commit_retry_ms, cfg->max_rollback_retry_ms};
    if (sinter_p2_sched_new(&w->sched, &pc, w_rand, w) != SINTER_OK) {
        free(w);
        return;
    }
    g->worker = w;
    sinter_tc_log(SINTER_TC_LOG_INFO, g->id, NULL,
                  "leader workers started for term %" PRIu64 " (timeout decisions after %" PRIu64
                  " ms of leadership)",
                  term, cfg->max_clock_skew_ms);
}

/* Answers g's parked WAIT_PHASE2 replies with rc (the group stopped: nothing will end them). */
static void end_fail_all(struct tc_group *g, int rc)
{
    for (size_t b = 0; b < END_BUCKETS && g->n_end_waiters > 0; b++) {
        while (g->end_waiters[b] != NULL) {
            struct tc_end_waiter *ew = g->end_waiters[b];
            g->end_waiters[b] = ew->next;
            g->n_end_waiters--;
            reply_error(ew->req, rc, "raft group stopped on this node");
            free(ew);
        }
    }
}

/* Completion of the probe sent when g stopped leading: a failed group completes every request
 * with its store error (sinter/raft_host.h), a healthy one with SINTER_OK (nothing to do: its
 * waiters wake on apply, as on any follower). */
static void group_probe_done(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                             const char *leader_url)
{
    (void)index;
    (void)leader;
    (void)leader_url;
    struct tc_group *g = arg;
    if (rc != SINTER_OK && rc != SINTER_ESHUTDOWN) {
        worker_drop(g);
        end_fail_all(g, rc);
    }
}

void sinter_tc_worker_role(struct tc_group *g, uint32_t role, uint64_t term)
{
    if (role != SINTER_RAFT_LEADER) {
        worker_drop(g);
        if (g->n_end_waiters > 0 &&
            sinter_raft_host_call(g->srv->host, g->id, group_probe_done, g) != SINTER_OK) {
            /* Stopping: sinter_tc_workers_shutdown answers them. */
        }
        return;
    }
    if (g->worker != NULL && g->worker->term == term) {
        return;
    }
    worker_drop(g);
    worker_start(g, term);
}

static void scan_step(struct tc_worker *w, uint64_t now)
{
    if (!w->scanning && now >= w->next_scan_ms) {
        w->scanning = true;
        w->scan_after = 0;
    }
    if (!w->scanning) {
        return;
    }
    uint64_t ids[SCAN_PAGE];
    size_t n = 0;
    if (sinter_tc_fsm_list_phase2(w->g->fsm, w->scan_after, ids, SCAN_PAGE, &n) != SINTER_OK) {
        return;
    }
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!sinter_p2_has_global(w->sched, ids[i])) {
            any = track_global(w, ids[i], now) || any;
        }
    }
    if (n < SCAN_PAGE) {
        w->scanning = false;
        w->next_scan_ms = now + SCAN_PERIOD_MS;
    } else {
        w->scan_after = ids[n - 1];
    }
    if (any) {
        advance(w, now);
    }
}

static void timeout_step(struct tc_worker *w, uint64_t now)
{
    const struct sinter_tc_config *cfg = w->g->srv->cfg;
    uint64_t skew = cfg->max_clock_skew_ms;
    uint64_t led = now - w->since_ms;    /* monotonic: a wall-clock step cannot shorten it */
    uint64_t wall = sinter_tc_wall_ms(); /* compared with replicated begin times */
    if (w->timeouts_inflight > 0 || now < w->next_timeout_ms ||
        !sinter_p2_timeout_due(0, 0, skew, led, wall)) {
        return;
    }
    uint64_t ids[TIMEOUT_PAGE];
    size_t n = 0;
    if (wall <= skew ||
        sinter_tc_fsm_list_timed_out(w->g->fsm, wall - skew, ids, TIMEOUT_PAGE, &n) != SINTER_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct sinter_tc_global gl;
        if (sinter_tc_fsm_get_global(w->g->fsm, ids[i], &gl, NULL, NULL) != SINTER_OK) {
            continue;
        }
        bool due = gl.status == SINTER_GS_BEGIN &&
                   sinter_p2_timeout_due(gl.begin_ms, gl.timeout_ms, skew, led, wall);
        struct sinter_xid x = gl.xid;
        sinter_tc_global_free(&gl);
        if (!due) {
            continue;
        }
        struct sinter_tc_cmd c;
        memset(&c, 0, sizeof c);
        c.type = SINTER_TC_CMD_DECIDE;
        c.u.decide.xid = x;
        c.u.decide.target = SINTER_GS_TIMEOUT_ROLLBACKING;
        if (wpropose(w, WK_TIMEOUT, &c, x)) {
            w->timeouts_inflight++;
        }
    }
    w->next_timeout_ms = n == TIMEOUT_PAGE ? now : now + TIMEOUT_SCAN_MS;
}

static void gc_step(struct tc_worker *w, uint64_t now)
{
    const struct sinter_tc_config *cfg = w->g->srv->cfg;
    if (w->gc_inflight || now < w->next_gc_ms) {
        return;
    }
    uint64_t wall = sinter_tc_wall_ms(); /* cutoffs compare with replicated times */
    if (wall <= cfg->retention_ms) {
        w->next_gc_ms = now + cfg->gc_interval_ms;
        return;
    }
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_GC;
    c.u.gc.global_cutoff_ms = wall - cfg->retention_ms;
    c.u.gc.session_cutoff_ms = wall - cfg->retention_ms;
    /* Client rows outlive their answers (the decoder insists): client_retention >= retention. */
    c.u.gc.client_cutoff_ms = wall > cfg->client_retention_ms ? wall - cfg->client_retention_ms : 0;
    c.u.gc.max_items = GC_BATCH;
    if (wpropose(w, WK_GC, &c, (struct sinter_xid){0, 0})) {
        w->gc_inflight = true;
    } else {
        w->next_gc_ms = now + cfg->gc_interval_ms;
    }
}

static void server_tick(struct sinter_tc_server *s, uint64_t now)
{
    /* WAIT_PHASE2 expiry for every group here, not in the group's own tick: a group whose store
     * failed gets no more ticks, and its waiters must still be answered. */
    for (uint32_t i = 0; i < s->cfg->groups; i++) {
        if (s->groups[i].n_end_waiters > 0) {
            end_expire(&s->groups[i], now);
        }
    }
    struct tc_poll_waiter *pw = s->polls;
    while (pw != NULL) {
        struct tc_poll_waiter *next = pw->next;
        if (now >= pw->deadline && poll_try(s, pw, now, true)) {
            poll_unlink(s, pw);
            free(pw);
        }
        pw = next;
    }
    sinter_tc_reg_sweep(s, now);
}

void sinter_tc_worker_tick(struct tc_group *g)
{
    struct sinter_tc_server *s = g->srv;
    uint64_t now = sinter_tc_mono_ms();
    /* on_tick runs per group; the node-wide part once per tick round (whichever group's tick
     * comes first, so a failed group 0 does not stop it). */
    if (now >= s->last_server_tick_ms + s->cfg->tick_ms / 2 || now < s->last_server_tick_ms) {
        s->last_server_tick_ms = now;
        server_tick(s, now);
    }
    if (g->worker == NULL) {
        if (g->role == SINTER_RAFT_LEADER) {
            worker_start(g, g->term); /* a start that failed (ENOMEM) is retried here */
        }
        if (g->worker == NULL) {
            return;
        }
    }
    struct tc_worker *w = g->worker;
    advance(w, now);
    scan_step(w, now);
    timeout_step(w, now);
    gc_step(w, now);
}

void sinter_tc_workers_shutdown(struct sinter_tc_server *s)
{
    while (s->polls != NULL) {
        struct tc_poll_waiter *pw = s->polls;
        poll_unlink(s, pw);
        reply_error(pw->req, SINTER_ESHUTDOWN, "coordinator is stopping");
        free(pw);
    }
    for (uint32_t i = 0; s->groups != NULL && i < s->cfg->groups; i++) {
        struct tc_group *g = &s->groups[i];
        for (size_t b = 0; b < END_BUCKETS; b++) {
            while (g->end_waiters[b] != NULL) {
                struct tc_end_waiter *ew = g->end_waiters[b];
                g->end_waiters[b] = ew->next;
                reply_error(ew->req, SINTER_ESHUTDOWN, "coordinator is stopping");
                free(ew);
            }
        }
        g->n_end_waiters = 0;
        if (g->worker != NULL) {
            sinter_p2_sched_free(g->worker->sched);
            free(g->worker);
            g->worker = NULL;
        }
    }
}
