/*
 * sinter-tc's HTTP endpoints: /health, /metrics and the JSON admin API (see tc/http.h and
 * docs/operations.md).
 *
 * Threads. nng's HTTP server calls a handler on one of its threads with an aio that completes the
 * request; the handler may finish that aio later from any thread. Handlers that only need the
 * raft host's status (/health) answer at once (sinter_raft_host_status is any-thread). Everything
 * that reads a state machine (which belongs to the raft loop thread, tc/server_int.h) goes through
 * sinter_raft_host_call() and answers from the loop thread; admin commands go through
 * sinter_raft_host_propose() and answer from the proposal's completion. A handler holds the
 * server's stop_lock for reading while it enqueues, like the RPC handlers: once stopping is set
 * no handler reaches the host, and the host's stop completes every queued request (ESHUTDOWN ->
 * 503), so when sinter_tc_http_stop() closes nng's server no aio is left waiting.
 *
 * Followers. Reads (list, show, metrics) are served by any node from its own state, which may lag
 * the leader by the entries it has not applied yet (each answer carries the node and applied
 * index). Admin commands must be proposed on the group's leader (Raft paper section 8: only the
 * leader appends); a follower does not forward them but answers 421 Misdirected Request naming the
 * leader's id and HTTP address, so the operator (or sinterctl) repeats the call there and sees the
 * leader's own answer. Forwarding would hide which node decided and add a hop that can time out
 * with an unknown outcome.
 */
#include "tc/http.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "sinter/error.h"
#include "sinter/raft.h"
#include "sinter/raft_host.h"
#include "sinter/types.h"
#include "sinter/xid.h"
#include "tc/command.h"
#include "tc/fsm.h"
#include "tc/http_render.h"
#include "tc/log.h"
#include "tc/server_int.h"

#define API_PREFIX   "/api/v1/globals"
#define MAX_BODY     4096u
#define STATUS_SLOTS (SINTER_GS_MAX + 1)

struct sinter_tc_http {
    nng_http_server *srv;
    nng_url *url;
};

enum job_kind { J_METRICS, J_LIST, J_SHOW, J_ADMIN };

/* One HTTP request waiting for the raft loop thread. */
struct job {
    struct sinter_tc_server *s;
    nng_aio *aio;
    enum job_kind kind;
    uint32_t group; /* the group being read or proposed to */
    /* metrics */
    struct sinter_tc_prom_group *pg;
    /* list */
    struct sinter_tc_list_query q;
    uint32_t g_hi;
    json_t *arr;
    uint32_t n;
    struct sinter_xid last;
    uint64_t *ids;
    /* show, admin */
    struct sinter_xid xid;
    uint8_t cmd;
};

static void job_free(struct job *j)
{
    if (j == NULL) {
        return;
    }
    free(j->pg);
    free(j->ids);
    json_decref(j->arr);
    free(j);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- answers -------------------------------------------------------------------------------- */

static void finish(nng_aio *aio, uint16_t status, const char *ctype, const char *body, size_t len)
{
    nng_http_res *res = NULL;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM); /* nng closes the connection */
        return;
    }
    nng_http_res_set_status(res, status);
    if (status == 421) {
        nng_http_res_set_reason(res, "Misdirected Request"); /* RFC 9110 15.5.20 */
    }
    nng_http_res_set_header(res, "Content-Type", ctype);
    nng_http_res_set_header(res, "Cache-Control", "no-store");
    if (nng_http_res_copy_data(res, body, len) != 0) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

/* Sends j (consumed) as the JSON body. */
static void finish_json(nng_aio *aio, uint16_t status, json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\",\"code\":\"SINTER_ENOMEM\"}";
        finish(aio, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: one line per answer, friendly to curl */
    finish(aio, status, "application/json", text, len + 1);
    free(text);
}

/* {"error": msg, "code": "SINTER_E..."} plus the members of extra (consumed, may be NULL). */
static void finish_error(nng_aio *aio, uint16_t status, int rc, const char *msg, json_t *extra)
{
    json_t *j = json_object();
    if (j != NULL) {
        json_object_set_new(j, "error", json_string(msg));
        json_object_set_new(j, "code", json_string(sinter_errname(rc)));
        if (extra != NULL) {
            json_object_update(j, extra);
        }
    }
    json_decref(extra);
    finish_json(aio, status, j);
}

/* HTTP status for a raft host error that reached us instead of an answer. */
static uint16_t http_status_of(int rc)
{
    switch (rc) {
    case SINTER_ENOTFOUND:
        return 404;
    case SINTER_ESTATE:
        return 409;
    case SINTER_EINVAL:
    case SINTER_EBADVALUE:
        return 400;
    case SINTER_EAUTH:
        return 401;
    case SINTER_ESHUTDOWN:
    case SINTER_ETIMEOUT:
    case SINTER_EBUSY:
    case SINTER_ENOTLEADER:
    case SINTER_ESTALE:
        return 503;
    default:
        return 500;
    }
}

static json_t *jxid(const struct sinter_xid *x)
{
    char t[SINTER_XID_STRLEN];
    sinter_xid_format(x, t);
    return json_string(t);
}

static json_t *jstatus(json_t *o, const char *key, uint32_t status)
{
    char k[64];
    json_object_set_new(o, key, json_string(sinter_global_status_name(status)));
    snprintf(k, sizeof k, "%s_code", key);
    json_object_set_new(o, k, json_integer(status));
    return o;
}

static json_t *jbase64(const uint8_t *p, uint32_t n)
{
    if (n == 0) {
        return json_string("");
    }
    char *t = malloc(sinter_tc_base64_len(n) + 1);
    if (t == NULL) {
        return NULL;
    }
    sinter_tc_base64(p, n, t);
    json_t *j = json_string(t);
    free(t);
    return j;
}

static json_t *ju64(uint64_t v)
{
    /* json_int_t is long long: every value we hold (ms, indexes) is far below 2^63. */
    return json_integer((json_int_t)v);
}

static json_t *global_json(const struct sinter_tc_global *g, bool full)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "xid", jxid(&g->xid));
    json_object_set_new(o, "group", json_integer(g->xid.group));
    jstatus(o, "status", g->status);
    json_object_set_new(o, "app_id", json_string(g->app_id));
    json_object_set_new(o, "tx_name", json_string(g->tx_name));
    json_object_set_new(o, "begin_ms", ju64(g->begin_ms));
    json_object_set_new(o, "timeout_ms", ju64(g->timeout_ms));
    if (!full) {
        return o;
    }
    if (g->decision != 0) {
        jstatus(o, "decision", g->decision);
    } else {
        json_object_set_new(o, "decision", json_null());
    }
    json_object_set_new(o, "client_id", json_string(g->client_id));
    json_object_set_new(o, "deadline_ms", ju64(g->deadline_ms));
    json_object_set_new(o, "decided_ms", ju64(g->decided_ms));
    json_object_set_new(o, "phase2_first_ms", ju64(g->phase2_first_ms));
    json_object_set_new(o, "end_ms", ju64(g->end_ms));
    json_object_set_new(o, "app_data_base64", jbase64(g->app_data, g->app_data_len));
    return o;
}

static json_t *branch_json(const struct sinter_tc_branch *b)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "branch_id", ju64(b->branch_id));
    json_object_set_new(o, "branch_type", json_string(sinter_branch_type_name(b->branch_type)));
    json_object_set_new(o, "branch_type_code", json_integer(b->branch_type));
    json_object_set_new(o, "status", json_string(sinter_branch_status_name(b->status)));
    json_object_set_new(o, "status_code", json_integer(b->status));
    json_object_set_new(o, "resource_id", json_string(b->resource_id));
    json_object_set_new(o, "client_id", json_string(b->client_id));
    json_object_set_new(o, "register_ms", ju64(b->register_ms));
    json_object_set_new(o, "phase2_results", json_integer(b->phase2_results));
    json_object_set_new(o, "last_result_ms", ju64(b->last_result_ms));
    json_object_set_new(o, "app_data_base64", jbase64(b->app_data, b->app_data_len));
    json_object_set_new(o, "xa_info_base64", jbase64(b->xa_info, b->xa_info_len));
    return o;
}

static json_t *jstr_or_null(const char *v)
{
    return v != NULL ? json_string(v) : json_null();
}

/* ---- reaching the loop thread --------------------------------------------------------------- */

/* Enqueues cb for j on j->group (a read) or proposes data. On failure answers 503 and frees j. */
static void enqueue(struct job *j, sinter_raft_host_done_fn cb, const uint8_t *data, size_t len)
{
    struct sinter_tc_server *s = j->s;
    int rc = SINTER_ESHUTDOWN;
    pthread_rwlock_rdlock(&s->stop_lock);
    if (!s->stopping) {
        rc = data != NULL ? sinter_raft_host_propose(s->host, j->group, data, (uint32_t)len, cb, j)
                          : sinter_raft_host_call(s->host, j->group, cb, j);
    }
    pthread_rwlock_unlock(&s->stop_lock);
    if (rc != SINTER_OK) {
        finish_error(j->aio, http_status_of(rc), rc,
                     rc == SINTER_ESHUTDOWN ? "coordinator is stopping" : sinter_strerror(rc),
                     NULL);
        job_free(j);
    }
}

static struct job *job_new(struct sinter_tc_server *s, nng_aio *aio, enum job_kind kind)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        finish_error(aio, 500, SINTER_ENOMEM, "out of memory", NULL);
        return NULL;
    }
    j->s = s;
    j->aio = aio;
    j->kind = kind;
    return j;
}

/* Called on the loop thread from a completion: the next group of a multi-group job. Returns
 * false (answered, j freed) when the host refused. */
static bool next_group(struct job *j, sinter_raft_host_done_fn cb)
{
    int rc = sinter_raft_host_call(j->s->host, j->group, cb, j);
    if (rc != SINTER_OK) {
        finish_error(j->aio, 503, rc, sinter_strerror(rc), NULL);
        job_free(j);
        return false;
    }
    return true;
}

/* ---- /health -------------------------------------------------------------------------------- */

static struct sinter_tc_server *server_of(nng_aio *aio)
{
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    return nng_http_handler_get_data(h);
}

static void h_health(nng_aio *aio)
{
    struct sinter_tc_server *s = server_of(aio);
    json_t *o = json_object();
    json_t *groups = json_array();
    bool healthy = true;
    pthread_rwlock_rdlock(&s->stop_lock);
    bool stopping = s->stopping;
    for (uint32_t g = 0; g < s->cfg->groups && !stopping; g++) {
        struct sinter_raft_host_status st;
        if (sinter_raft_host_status(s->host, g, &st) != SINTER_OK) {
            healthy = false;
            continue;
        }
        json_t *e = json_object();
        json_object_set_new(e, "group", json_integer(g));
        json_object_set_new(e, "role", json_string(sinter_raft_role_name(st.role)));
        json_object_set_new(e, "leader", ju64(st.leader));
        json_object_set_new(e, "leader_http",
                            jstr_or_null(sinter_tc_config_http_url(s->cfg, st.leader)));
        json_object_set_new(e, "term", ju64(st.term));
        json_object_set_new(e, "commit", ju64(st.commit));
        json_object_set_new(e, "applied", ju64(st.applied));
        if (st.error != SINTER_OK) {
            json_t *err = json_object();
            json_object_set_new(err, "code", json_string(sinter_errname(st.error)));
            json_object_set_new(err, "message", json_string(st.error_msg));
            json_object_set_new(e, "error", err);
        } else {
            json_object_set_new(e, "error", json_null());
        }
        /* Serving needs every group: a failed group or one without a leader cannot take
         * writes for its share of the xids. */
        healthy = healthy && st.error == SINTER_OK && st.leader != 0;
        json_array_append_new(groups, e);
    }
    pthread_rwlock_unlock(&s->stop_lock);
    healthy = healthy && !stopping;
    json_object_set_new(o, "node", ju64(s->cfg->node_id));
    json_object_set_new(o, "status",
                        json_string(stopping  ? "stopping"
                                    : healthy ? "ok"
                                              : "unavailable"));
    json_object_set_new(o, "client", jstr_or_null(s->cfg->client_listen));
    json_object_set_new(o, "http", jstr_or_null(s->cfg->http_listen));
    json_object_set_new(o, "groups", groups);
    finish_json(aio, healthy ? 200 : 503, o);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

static void metrics_render(struct job *j)
{
    struct sinter_tc_server *s = j->s;
    for (uint32_t g = 0; g < s->cfg->groups; g++) {
        struct sinter_raft_host_status st;
        struct sinter_tc_prom_group *p = &j->pg[g];
        p->group = g;
        if (sinter_raft_host_status(s->host, g, &st) == SINTER_OK) {
            p->role = st.role;
            p->leader = st.leader;
            p->term = st.term;
            p->commit = st.commit;
            p->applied = st.applied;
            p->error = st.error;
        }
    }
    struct sinter_raft_host_stats hs;
    bool have_hs = sinter_raft_host_stats(s->host, &hs, false) == SINTER_OK;
    struct sinter_tc_buf b = {0};
    struct sinter_transport_server_stats ts;
    bool have_ts = s->rpc != NULL;
    if (have_ts) {
        sinter_transport_server_stats(s->rpc, &ts);
    }
    int rc = sinter_tc_prom_render(s->cfg->node_id, j->pg, s->cfg->groups, &s->metrics,
                                   have_hs ? &hs : NULL, have_ts ? &ts : NULL, &b);
    if (rc == SINTER_OK) {
        finish(j->aio, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    } else {
        finish_error(j->aio, 500, rc, sinter_strerror(rc), NULL);
    }
    sinter_tc_buf_free(&b);
    job_free(j);
}

static void on_metrics(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    (void)index;
    (void)leader;
    (void)url;
    struct job *j = arg;
    if (rc == SINTER_ESHUTDOWN) {
        finish_error(j->aio, 503, rc, "coordinator is stopping", NULL);
        job_free(j);
        return;
    }
    /* A group stopped by a store error still gets its raft series; only its counts are
     * missing (sinter_raft_group_failed says why). */
    struct sinter_tc_prom_group *p = &j->pg[j->group];
    p->have_counts = rc == SINTER_OK && sinter_tc_fsm_count_by_status(j->s->groups[j->group].fsm,
                                                                      p->counts) == SINTER_OK;
    if (++j->group < j->s->cfg->groups) {
        next_group(j, on_metrics);
        return;
    }
    metrics_render(j);
}

static void h_metrics(nng_aio *aio)
{
    struct sinter_tc_server *s = server_of(aio);
    struct job *j = job_new(s, aio, J_METRICS);
    if (j == NULL) {
        return;
    }
    j->pg = calloc(s->cfg->groups, sizeof *j->pg);
    if (j->pg == NULL) {
        finish_error(aio, 500, SINTER_ENOMEM, "out of memory", NULL);
        job_free(j);
        return;
    }
    j->group = 0;
    enqueue(j, on_metrics, NULL, 0);
}

/* ---- GET /api/v1/globals -------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Up to `room` xid indexes of group g after `after`, ascending, into j->ids; *n found. */
static int list_ids(struct job *j, struct sinter_tc_fsm *fsm, uint64_t after, size_t room,
                    size_t *n)
{
    if (j->q.status != 0) {
        return sinter_tc_fsm_list_by_status(fsm, j->q.status, after, j->ids, room, n);
    }
    /* Every status: the first `room` of each status list, merged; the smallest `room` of the
     * union are exactly the next page (each list is in xid order). */
    size_t have = 0;
    for (uint32_t st = 1; st <= SINTER_GS_MAX; st++) {
        if (!sinter_global_status_valid(st) || st == SINTER_GS_FINISHED) {
            continue;
        }
        size_t k = 0;
        int rc = sinter_tc_fsm_list_by_status(fsm, st, after, j->ids + have, room, &k);
        if (rc != SINTER_OK) {
            return rc;
        }
        have += k;
    }
    qsort(j->ids, have, sizeof *j->ids, cmp_u64);
    *n = have < room ? have : room;
    return SINTER_OK;
}

static void list_done(struct job *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "node", ju64(j->s->cfg->node_id));
    json_object_set_new(o, "globals", j->arr);
    j->arr = NULL;
    /* A full page may have a next one; the client asks again with after = next_after. */
    json_object_set_new(o, "next_after", j->n == j->q.limit ? jxid(&j->last) : json_null());
    finish_json(j->aio, 200, o);
    job_free(j);
}

static void on_list(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    (void)index;
    (void)leader;
    (void)url;
    struct job *j = arg;
    if (rc != SINTER_OK) {
        char msg[128];
        snprintf(msg, sizeof msg, "group %u cannot be read: %s", j->group, sinter_strerror(rc));
        finish_error(j->aio, 503, rc, msg, NULL);
        job_free(j);
        return;
    }
    struct sinter_tc_fsm *fsm = j->s->groups[j->group].fsm;
    uint64_t after = j->q.after.index != 0 && j->q.after.group == j->group ? j->q.after.index : 0;
    size_t room = j->q.limit - j->n, n = 0;
    rc = list_ids(j, fsm, after, room, &n);
    for (size_t i = 0; i < n && rc == SINTER_OK; i++) {
        struct sinter_tc_global g;
        rc = sinter_tc_fsm_get_global(fsm, j->ids[i], &g, NULL, NULL);
        if (rc == SINTER_OK) {
            json_array_append_new(j->arr, global_json(&g, false));
            sinter_tc_global_free(&g);
            j->last = (struct sinter_xid){j->group, j->ids[i]};
            j->n++;
        }
    }
    if (rc != SINTER_OK) {
        finish_error(j->aio, 500, rc, sinter_strerror(rc), NULL);
        job_free(j);
        return;
    }
    if (j->n < j->q.limit && j->group < j->g_hi) {
        j->group++;
        next_group(j, on_list);
        return;
    }
    list_done(j);
}

static void api_list(struct sinter_tc_server *s, nng_aio *aio, const char *query)
{
    struct job *j = job_new(s, aio, J_LIST);
    if (j == NULL) {
        return;
    }
    char err[160];
    if (sinter_tc_list_query_parse(query, s->cfg->groups, &j->q, err, sizeof err) != SINTER_OK) {
        finish_error(aio, 400, SINTER_EINVAL, err, NULL);
        job_free(j);
        return;
    }
    /* Pages run in (group, index) order; `after` names where the previous page stopped. */
    uint32_t lo = j->q.has_group ? j->q.group : 0;
    j->g_hi = j->q.has_group ? j->q.group : s->cfg->groups - 1;
    if (j->q.after.index != 0 && j->q.after.group > lo) {
        lo = j->q.after.group;
    }
    /* Worst case of an all-status page: each status list returns `limit` ids. */
    j->ids = calloc((size_t)j->q.limit * STATUS_SLOTS, sizeof *j->ids);
    j->arr = json_array();
    if (j->ids == NULL || j->arr == NULL) {
        finish_error(aio, 500, SINTER_ENOMEM, "out of memory", NULL);
        job_free(j);
        return;
    }
    if (lo > j->g_hi) {
        list_done(j); /* after lies beyond the groups asked for: an empty last page */
        return;
    }
    j->group = lo;
    enqueue(j, on_list, NULL, 0);
}

/* ---- GET /api/v1/globals/{xid} -------------------------------------------------------------- */

static void on_show(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    (void)leader;
    (void)url;
    struct job *j = arg;
    if (rc != SINTER_OK) {
        finish_error(j->aio, 503, rc, sinter_strerror(rc), NULL);
        job_free(j);
        return;
    }
    struct sinter_tc_global g;
    struct sinter_tc_branch *br = NULL;
    size_t nb = 0;
    rc = sinter_tc_fsm_get_global(j->s->groups[j->group].fsm, j->xid.index, &g, &br, &nb);
    if (rc == SINTER_ENOTFOUND) {
        /* Seata answers Finished for an unknown xid: never begun, or finished and removed by
         * retention GC. */
        json_t *x = json_object();
        json_object_set_new(x, "xid", jxid(&j->xid));
        jstatus(x, "status", SINTER_GS_FINISHED);
        finish_error(j->aio, 404, rc, "unknown xid (never begun, or finished and removed)", x);
    } else if (rc != SINTER_OK) {
        finish_error(j->aio, 500, rc, sinter_strerror(rc), NULL);
    } else {
        json_t *o = global_json(&g, true);
        json_t *a = json_array();
        for (size_t i = 0; i < nb; i++) {
            json_array_append_new(a, branch_json(&br[i]));
        }
        json_object_set_new(o, "branches", a);
        json_object_set_new(o, "node", ju64(j->s->cfg->node_id));
        json_object_set_new(o, "applied_index", ju64(index));
        sinter_tc_global_free(&g);
        sinter_tc_branches_free(br, nb);
        finish_json(j->aio, 200, o);
    }
    job_free(j);
}

/* ---- POST /api/v1/globals/{xid}/redrive|resolve --------------------------------------------- */

/* The fsm's answer to the entry at index in the group's last applied batch (as server.c's
 * on_proposed finds it: the host applies a batch, then resolves the proposals in it). */
static const struct sinter_tc_result *result_at(const struct tc_group *g, uint64_t index)
{
    size_t lo = 0, hi = g->n_last;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->ents[mid].index < index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < g->n_last && g->ents[lo].index == index ? &g->res[lo] : NULL;
}

static void on_admin(void *arg, int rc, uint64_t index, sinter_raft_id leader, const char *url)
{
    (void)url; /* a raft URL: the operator needs the leader's HTTP address */
    struct job *j = arg;
    struct sinter_tc_server *s = j->s;
    const char *what = j->cmd == SINTER_TC_CMD_REDRIVE ? "redrive" : "resolve";
    if (rc == SINTER_ENOTLEADER) {
        json_t *x = json_object();
        json_object_set_new(x, "group", json_integer(j->group));
        json_object_set_new(x, "leader", ju64(leader));
        json_object_set_new(x, "leader_http",
                            jstr_or_null(sinter_tc_config_http_url(s->cfg, leader)));
        json_object_set_new(x, "leader_client",
                            jstr_or_null(sinter_tc_config_client_url(s->cfg, leader)));
        /* 421 when the leader is known (repeat there), 503 during an election. */
        finish_error(j->aio, leader != 0 ? 421 : 503, rc,
                     leader != 0 ? "not the leader of this group: send it to the leader"
                                 : "no leader known for this group (election in progress): retry",
                     x);
        job_free(j);
        return;
    }
    if (rc != SINTER_OK) {
        /* ETIMEOUT / ESTALE: the outcome is unknown; both commands are safe to repeat (a second
         * redrive finds the global retrying: 409; a second resolve finds it resolved: 200). */
        finish_error(j->aio, 503, rc,
                     rc == SINTER_ETIMEOUT || rc == SINTER_ESTALE
                         ? "outcome unknown (leader change or timeout): check the global, retry"
                         : sinter_strerror(rc),
                     NULL);
        job_free(j);
        return;
    }
    const struct sinter_tc_result *r = result_at(&s->groups[j->group], index);
    if (r == NULL) {
        finish_error(j->aio, 503, SINTER_ETIMEOUT, "result not retained: check the global", NULL);
        job_free(j);
        return;
    }
    json_t *x = json_object();
    json_object_set_new(x, "xid", jxid(&j->xid));
    jstatus(x, "status", r->status);
    if (r->rc == SINTER_OK) {
        sinter_tc_log(SINTER_TC_LOG_WARN, j->group, &j->xid, "admin %s: now %s", what,
                      sinter_global_status_name(r->status));
        json_object_set_new(x, "index", ju64(index));
        finish_json(j->aio, 200, x);
    } else if (r->rc == SINTER_ESTATE) {
        finish_error(j->aio, 409, r->rc,
                     j->cmd == SINTER_TC_CMD_REDRIVE
                         ? "only a failed global (CommitFailed, RollbackFailed, "
                           "TimeoutRollbackFailed, *RetryTimeout) can be redriven"
                         : "only a failed global can be resolved, and only to the success end of "
                           "its own side",
                     x);
    } else if (r->rc == SINTER_ENOTFOUND) {
        finish_error(j->aio, 404, r->rc, "unknown xid", x);
    } else {
        finish_error(j->aio, http_status_of(r->rc), r->rc, sinter_strerror(r->rc), x);
    }
    job_free(j);
}

/* Compares in time independent of where the first difference is (as the RPC's secret check). */
static bool bearer_ok(const char *secret, const char *header)
{
    static const char pfx[] = "Bearer ";
    if (header == NULL || strncmp(header, pfx, sizeof pfx - 1) != 0) {
        return false;
    }
    const char *cred = header + sizeof pfx - 1;
    size_t n = strlen(secret), m = strlen(cred);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < m; i++) {
        diff |= (unsigned)((uint8_t)cred[i] ^ (uint8_t)secret[i % (n ? n : 1)]);
    }
    return diff == 0;
}

/* The resolve target from the query, else the body: JSON {"target": "..."} or a form. */
static int admin_target(nng_http_req *req, const char *query, char *out, size_t cap)
{
    if (sinter_tc_query_get(query, "target", out, cap) == SINTER_OK) {
        return SINTER_OK;
    }
    void *body = NULL;
    size_t len = 0;
    nng_http_req_get_data(req, &body, &len);
    if (body == NULL || len == 0 || len > MAX_BODY) {
        return SINTER_ENOTFOUND;
    }
    char text[MAX_BODY + 1];
    memcpy(text, body, len);
    text[len] = '\0';
    size_t k = 0;
    while (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t') {
        k++;
    }
    if (text[k] == '{') {
        json_t *j = json_loadb(text, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "target"));
        int rc = t != NULL && strlen(t) < cap ? SINTER_OK : SINTER_ENOTFOUND;
        if (rc == SINTER_OK) {
            strcpy(out, t);
        }
        json_decref(j);
        return rc;
    }
    return sinter_tc_query_get(text, "target", out, cap);
}

static void api_admin(struct sinter_tc_server *s, nng_aio *aio, nng_http_req *req,
                      const struct sinter_xid *xid, const char *verb, const char *query)
{
    if (!bearer_ok(s->cfg->secret, nng_http_req_get_header(req, "Authorization"))) {
        sinter_tc_log(SINTER_TC_LOG_WARN, SINTER_TC_NO_GROUP, NULL,
                      "admin %s refused: missing or wrong bearer secret", verb);
        finish_error(aio, 401, SINTER_EAUTH,
                     "state-changing calls need 'Authorization: Bearer <tc.secret>'", NULL);
        return;
    }
    struct sinter_tc_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.version = SINTER_TC_CMD_VERSION;
    cmd.now_ms = wall_ms();
    /* Worker and admin commands carry no client session: empty client id, seq 0 (command.h). */
    if (strcmp(verb, "redrive") == 0) {
        cmd.type = SINTER_TC_CMD_REDRIVE;
        cmd.u.x.xid = *xid;
    } else {
        char t[64];
        uint32_t target = 0;
        if (admin_target(req, query, t, sizeof t) != SINTER_OK) {
            finish_error(aio, 400, SINTER_EINVAL,
                         "resolve needs a target: committed | rollbacked | timeout_rollbacked "
                         "(?target=, a form or {\"target\": ...})",
                         NULL);
            return;
        }
        if (sinter_tc_resolve_target_parse(t, &target) != SINTER_OK) {
            finish_error(aio, 400, SINTER_EINVAL,
                         "target must be committed, rollbacked or timeout_rollbacked", NULL);
            return;
        }
        cmd.type = SINTER_TC_CMD_RESOLVE;
        cmd.u.resolve.xid = *xid;
        cmd.u.resolve.target = (uint8_t)target;
    }
    uint8_t buf[64];
    size_t len = 0;
    int rc = sinter_tc_cmd_encode(&cmd, buf, sizeof buf, &len);
    if (rc != SINTER_OK) {
        finish_error(aio, 400, rc, sinter_strerror(rc), NULL);
        return;
    }
    struct job *j = job_new(s, aio, J_ADMIN);
    if (j == NULL) {
        return;
    }
    j->group = xid->group;
    j->xid = *xid;
    j->cmd = cmd.type;
    enqueue(j, on_admin, buf, len);
}

/* ---- /api/v1/globals routing ---------------------------------------------------------------- */

static void h_api(nng_aio *aio)
{
    struct sinter_tc_server *s = server_of(aio);
    nng_http_req *req = nng_aio_get_input(aio, 0);
    const char *method = nng_http_req_get_method(req);
    char uri[1024];
    if (snprintf(uri, sizeof uri, "%s", nng_http_req_get_uri(req)) >= (int)sizeof uri) {
        finish_error(aio, 414, SINTER_ETOOBIG, "URI too long", NULL);
        return;
    }
    char *query = strchr(uri, '?');
    if (query != NULL) {
        *query++ = '\0';
    }
    /* nng matched the prefix; what follows is "", "/", "/{xid}" or "/{xid}/{verb}". */
    const char *rest = uri + strlen(API_PREFIX);
    if (strncmp(uri, API_PREFIX, strlen(API_PREFIX)) != 0) {
        rest = "";
    }
    if (*rest == '/') {
        rest++;
    }
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    if (*rest == '\0') {
        if (!get) {
            finish_error(aio, 405, SINTER_EINVAL, "the listing takes GET", NULL);
            return;
        }
        api_list(s, aio, query);
        return;
    }
    const char *slash = strchr(rest, '/');
    size_t xlen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    char xtext[SINTER_XID_STRLEN * 3];
    struct sinter_xid xid;
    /* An xid may arrive with its ':' percent-encoded (%3A). */
    int prc = sinter_tc_url_decode(rest, xlen, xtext, sizeof xtext);
    if (prc == SINTER_OK) {
        prc = sinter_xid_parse(&xid, xtext, strlen(xtext));
    }
    if (prc != SINTER_OK) {
        finish_error(aio, 400, SINTER_EINVAL, "not an xid: expected GROUP:INDEX, e.g. 0:42", NULL);
        return;
    }
    const char *verb = slash != NULL ? slash + 1 : "";
    bool admin = strcmp(verb, "redrive") == 0 || strcmp(verb, "resolve") == 0;
    if (*verb != '\0' && !admin) {
        finish_error(aio, 404, SINTER_ENOTFOUND, "no such operation (redrive, resolve)", NULL);
        return;
    }
    if ((admin && !post) || (!admin && !get)) {
        finish_error(aio, 405, SINTER_EINVAL,
                     admin ? "redrive and resolve take POST" : "a global is read with GET", NULL);
        return;
    }
    if (xid.group >= s->cfg->groups) {
        json_t *x = json_object();
        json_object_set_new(x, "xid", jxid(&xid));
        jstatus(x, "status", SINTER_GS_FINISHED);
        finish_error(aio, 404, SINTER_ENOTFOUND, "unknown xid (no such raft group)", x);
        return;
    }
    if (admin) {
        api_admin(s, aio, req, &xid, verb, query);
        return;
    }
    struct job *j = job_new(s, aio, J_SHOW);
    if (j == NULL) {
        return;
    }
    j->group = xid.group;
    j->xid = xid;
    enqueue(j, on_show, NULL, 0);
}

/* ---- start and stop ------------------------------------------------------------------------- */

static int add(struct sinter_tc_server *s, const char *path, const char *method, bool tree,
               void (*cb)(nng_aio *))
{
    nng_http_handler *h = NULL;
    int rv = nng_http_handler_alloc(&h, path, cb);
    if (rv == 0) {
        rv = nng_http_handler_set_method(h, method);
    }
    if (rv == 0 && tree) {
        rv = nng_http_handler_set_tree(h);
    }
    if (rv == 0 && method == NULL) {
        rv = nng_http_handler_collect_body(h, true, MAX_BODY);
    }
    if (rv == 0) {
        rv = nng_http_handler_set_data(h, s, NULL);
    }
    if (rv == 0) {
        rv = nng_http_server_add_handler(s->http->srv, h); /* the server owns h from here */
        if (rv != 0) {
            nng_http_handler_free(h);
        }
    } else if (h != NULL) {
        nng_http_handler_free(h);
    }
    return rv;
}

/* https://: the node's certificate (tls.cert_key_file). Operators' clients are not asked for a
 * certificate: reads are open by design (docs/operations.md) and admin calls carry the secret. */
static int set_tls(struct sinter_tc_server *s)
{
    nng_tls_config *t = NULL;
    int rv = nng_tls_config_alloc(&t, NNG_TLS_MODE_SERVER);
    if (rv == 0) {
        rv = nng_tls_config_cert_key_file(t, s->cfg->tls_cert_key_file, s->cfg->tls_key_password);
    }
    if (rv == 0) {
        rv = nng_tls_config_auth_mode(t, NNG_TLS_AUTH_MODE_NONE);
    }
    if (rv == 0) {
        rv = nng_http_server_set_tls(s->http->srv, t); /* takes its own reference */
    }
    if (t != NULL) {
        nng_tls_config_free(t);
    }
    return rv;
}

int sinter_tc_http_start(struct sinter_tc_server *s)
{
    const char *u = s->cfg->http_listen;
    if (u == NULL) {
        return SINTER_OK;
    }
    s->http = calloc(1, sizeof *s->http);
    if (s->http == NULL) {
        return SINTER_ENOMEM;
    }
    int rv = nng_url_parse(&s->http->url, u);
    int rc = SINTER_ECONFIG;
    if (rv == 0) {
        rv = nng_http_server_hold(&s->http->srv, s->http->url);
        rc = SINTER_ENOMEM;
    }
    if (rv == 0 && sinter_tc_config_http_tls(s->cfg)) {
        rc = SINTER_ECONFIG;
        rv = set_tls(s);
    }
    if (rv == 0) {
        rc = SINTER_ENOMEM;
        rv = add(s, "/health", "GET", false, h_health);
    }
    if (rv == 0) {
        rv = add(s, "/metrics", "GET", false, h_metrics);
    }
    if (rv == 0) {
        rv = add(s, API_PREFIX, NULL, true, h_api);
    }
    if (rv == 0) {
        rv = nng_http_server_start(s->http->srv);
        rc = SINTER_ETRANSPORT;
    }
    if (rv != 0) {
        sinter_tc_log(SINTER_TC_LOG_ERROR, SINTER_TC_NO_GROUP, NULL,
                      "HTTP listener on %s did not start: %s", u, nng_strerror(rv));
        if (s->http->srv != NULL) {
            nng_http_server_release(s->http->srv);
        }
        nng_url_free(s->http->url);
        free(s->http);
        s->http = NULL;
        return rc;
    }
    sinter_tc_log(SINTER_TC_LOG_INFO, SINTER_TC_NO_GROUP, NULL,
                  "serving /health, /metrics and " API_PREFIX " on %s", u);
    return SINTER_OK;
}

void sinter_tc_http_stop(struct sinter_tc_server *s)
{
    if (s->http == NULL) {
        return;
    }
    /* Stop waits for every connection, and so for any handler still running on nng's threads;
     * none waits on the raft host any more (see the top of this file). */
    nng_http_server_stop(s->http->srv);
    nng_http_server_release(s->http->srv);
    nng_url_free(s->http->url);
    free(s->http);
    s->http = NULL;
}
