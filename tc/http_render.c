/*
 * Pure pieces of sinter-tc's HTTP endpoints (see tc/http_render.h): Prometheus text, query
 * strings, base64.
 */
#include "tc/http_render.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/raft.h"

/* ---- buffer --------------------------------------------------------------------------------- */

void sinter_tc_buf_printf(struct sinter_tc_buf *b, const char *fmt, ...)
{
    if (b->oom) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap > 0 ? b->cap : 4096;
        while (cap - b->len <= (size_t)n) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void sinter_tc_buf_free(struct sinter_tc_buf *b)
{
    free(b->p);
    *b = (struct sinter_tc_buf){0};
}

/* ---- Prometheus ----------------------------------------------------------------------------- */

static void family(struct sinter_tc_buf *b, const char *name, const char *type, const char *help)
{
    sinter_tc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t ld(const _Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* Seconds from milliseconds, exactly (Prometheus' base unit for durations is the second). */
static void secs(struct sinter_tc_buf *b, uint64_t ms)
{
    sinter_tc_buf_printf(b, "%" PRIu64 ".%03" PRIu64, ms / 1000, ms % 1000);
}

static void per_group(struct sinter_tc_buf *b, const struct sinter_tc_prom_group *g, size_t n,
                      const char *name, const char *type, const char *help, int which)
{
    family(b, name, type, help);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        switch (which) {
        case 0:
            v = g[i].term;
            break;
        case 1:
            v = g[i].commit;
            break;
        case 2:
            v = g[i].applied;
            break;
        case 3:
            v = g[i].role == SINTER_RAFT_LEADER;
            break;
        case 4:
            v = g[i].leader;
            break;
        default:
            v = g[i].error != SINTER_OK;
            break;
        }
        sinter_tc_buf_printf(b, "%s{group=\"%u\"} %" PRIu64 "\n", name, g[i].group, v);
    }
}

/* Seconds from nanoseconds, to the microsecond. */
static void secs_ns(struct sinter_tc_buf *b, uint64_t ns)
{
    sinter_tc_buf_printf(b, "%" PRIu64 ".%06" PRIu64, ns / 1000000000u, ns / 1000u % 1000000u);
}

/* The raft host's own counters (one loop thread for every group of the node). They answer "where
 * does a write's time go on this node": fdatasync of the log (store_append), the state machine
 * (apply), or the loop being busy at all (bench/FINDINGS.md F4 found the stalls this way). */
static void host_series(struct sinter_tc_buf *b, const struct sinter_raft_host_stats *h)
{
    static const struct {
        const char *name, *help;
        size_t off;
        bool ns;
    } rows[] = {
#define ROW(field, name, ns, help) {name, help, offsetof(struct sinter_raft_host_stats, field), ns}
        ROW(loop_iterations, "sinter_raft_loop_iterations_total", false,
            "Iterations of the raft host's loop thread."),
        ROW(loop_wakeups, "sinter_raft_loop_wakeups_total", false,
            "Loop sleeps ended by new work (not by the tick)."),
        ROW(events, "sinter_raft_loop_events_total", false,
            "Proposals, received frames and other events the loop handled."),
        ROW(loop_busy_ns, "sinter_raft_loop_busy_seconds_total", true,
            "Time the loop thread spent working rather than sleeping."),
        ROW(store_appends, "sinter_raft_store_appends_total", false,
            "Log appends (one write and one fdatasync each, many entries per append)."),
        ROW(store_append_entries, "sinter_raft_store_append_entries_total", false,
            "Entries written by those appends."),
        ROW(store_append_ns, "sinter_raft_store_append_seconds_total", true,
            "Time in log appends, fdatasync included."),
        ROW(hard_state_saves, "sinter_raft_hard_state_saves_total", false,
            "Term, vote or commit hint saves (fsync'd when term or vote moved)."),
        ROW(hard_state_ns, "sinter_raft_hard_state_seconds_total", true,
            "Time in hard-state saves."),
        ROW(apply_entries, "sinter_raft_apply_entries_total", false,
            "Entries applied to the state machines (every group)."),
        ROW(apply_ns, "sinter_raft_apply_seconds_total", true, "Time in state-machine apply."),
        ROW(snapshot_sync_ns, "sinter_raft_snapshot_sync_seconds_total", true,
            "Helper threads' time writing and syncing snapshots."),
        ROW(snapshot_publish_ns, "sinter_raft_snapshot_publish_seconds_total", true,
            "Loop time publishing taken snapshots and compacting the log."),
        ROW(props_done, "sinter_raft_proposals_committed_total", false,
            "Proposals made on this node that completed committed."),
        ROW(prop_queue_ns, "sinter_raft_proposal_queue_seconds_total", true,
            "Their time from submission until the loop proposed them to the core."),
        ROW(prop_commit_ns, "sinter_raft_proposal_commit_seconds_total", true,
            "Their time from the core until their batch's apply started (replication)."),
        ROW(prop_apply_ns, "sinter_raft_proposal_apply_seconds_total", true,
            "Their batch's apply time, counted once per proposal."),
        ROW(prop_complete_ns, "sinter_raft_proposal_complete_seconds_total", true,
            "Their time from the apply's end until their completion ran."),
#undef ROW
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)h + rows[i].off, sizeof v);
        family(b, rows[i].name, "counter", rows[i].help);
        sinter_tc_buf_printf(b, "%s ", rows[i].name);
        if (rows[i].ns) {
            secs_ns(b, v);
        } else {
            sinter_tc_buf_printf(b, "%" PRIu64, v);
        }
        sinter_tc_buf_printf(b, "\n");
    }
}

/* The client listener (include/sinter/transport.h): what an operator needs to see a connection
 * storm, a client that stopped reading or a client speaking something else. */
static void rpc_series(struct sinter_tc_buf *b, const struct sinter_transport_server_stats *t)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } rows[] = {
#define ROW(field, name, type, help)                                                               \
    {name, type, help, offsetof(struct sinter_transport_server_stats, field)}
        ROW(connections, "sinter_client_connections", "gauge",
            "Client connections open on the client listener."),
        ROW(refused_connections, "sinter_client_connections_refused_total", "counter",
            "Client connections closed on arrival because tc.max_client_connections were open."),
        ROW(stalled_connections, "sinter_client_connections_stalled_total", "counter",
            "Client connections closed because a reply could not be sent in time (the peer "
            "stopped reading; nng engine)."),
        ROW(bad_connections, "sinter_client_connections_bad_total", "counter",
            "Client connections closed for violating the SP protocol (native engine)."),
        ROW(bad_frames, "sinter_client_bad_frames_total", "counter",
            "Client frames answered with an error by the transport (malformed, oversized)."),
#undef ROW
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)t + rows[i].off, sizeof v);
        family(b, rows[i].name, rows[i].type, rows[i].help);
        sinter_tc_buf_printf(b, "%s %" PRIu64 "\n", rows[i].name, v);
    }
}

int sinter_tc_prom_render(uint64_t node_id, const struct sinter_tc_prom_group *g, size_t n,
                          const struct sinter_tc_metrics *m,
                          const struct sinter_raft_host_stats *host,
                          const struct sinter_transport_server_stats *rpc, struct sinter_tc_buf *b)
{
    family(b, "sinter_node_info", "gauge", "This coordinator node (constant 1, labelled by id).");
    sinter_tc_buf_printf(b, "sinter_node_info{node=\"%" PRIu64 "\"} 1\n", node_id);

    /* Read from this replica's state machine at scrape time: on a follower the numbers may lag
     * the leader's by the entries not yet applied. Finished (15) is Seata's answer for an unknown
     * xid, never a stored status, so it has no series. */
    family(b, "sinter_globals", "gauge",
           "Global transactions in this replica's state, by raft group and status (Seata names).");
    for (size_t i = 0; i < n; i++) {
        if (!g[i].have_counts) {
            continue;
        }
        for (uint32_t s = 1; s <= SINTER_GS_MAX; s++) {
            if (!sinter_global_status_valid(s) || s == SINTER_GS_FINISHED) {
                continue;
            }
            sinter_tc_buf_printf(b, "sinter_globals{group=\"%u\",status=\"%s\"} %" PRIu64 "\n",
                                 g[i].group, sinter_global_status_name(s), g[i].counts[s]);
        }
    }

    per_group(b, g, n, "sinter_raft_term", "gauge", "Current raft term of the group.", 0);
    per_group(b, g, n, "sinter_raft_commit_index", "gauge", "Highest log index known committed.",
              1);
    per_group(b, g, n, "sinter_raft_applied_index", "gauge",
              "Highest log index applied to the state machine.", 2);
    per_group(b, g, n, "sinter_raft_is_leader", "gauge", "1 when this node leads the group.", 3);
    per_group(b, g, n, "sinter_raft_leader_id", "gauge", "Leader this node knows (0: none).", 4);
    per_group(b, g, n, "sinter_raft_group_failed", "gauge",
              "1 when a storage or apply error stopped the group on this node.", 5);
    family(b, "sinter_raft_leader_changes_total", "counter",
           "Leaders this node has seen take over the group since it started.");
    for (size_t i = 0; i < n; i++) {
        uint64_t v = g[i].group < SINTER_TC_MAX_GROUPS ? ld(&m->leader_changes[g[i].group]) : 0;
        sinter_tc_buf_printf(b, "sinter_raft_leader_changes_total{group=\"%u\"} %" PRIu64 "\n",
                             g[i].group, v);
    }

    /* Every request type this build serves gets a series, so a rate() starts from 0 rather than
     * from the first request of its kind. */
    family(b, "sinter_requests_total", "counter", "Client RPC requests received, by type.");
    for (uint32_t c = 0; c < 256; c++) {
        uint64_t v = ld(&m->requests[c]);
        if (v == 0 && !sinter_proto_code_is_request(c)) {
            continue;
        }
        sinter_tc_buf_printf(b, "sinter_requests_total{type=\"%s\"} %" PRIu64 "\n",
                             sinter_proto_code_is_known(c) ? sinter_proto_code_name(c) : "Unknown",
                             v);
    }
    family(b, "sinter_request_errors_total", "counter",
           "Client RPC requests answered with an error, by error code.");
    for (int e = 1; e < SINTER_ERROR_COUNT; e++) {
        sinter_tc_buf_printf(b, "sinter_request_errors_total{code=\"%s\"} %" PRIu64 "\n",
                             sinter_errname(e), ld(&m->errors[e]));
    }

    family(b, "sinter_phase2_deliveries_total", "counter",
           "Phase-2 work items (confirm/cancel, COMMIT/ROLLBACK PREPARED) handed to RMs.");
    sinter_tc_buf_printf(b, "sinter_phase2_deliveries_total %" PRIu64 "\n",
                         ld(&m->phase2_deliveries));
    family(b, "sinter_phase2_retries_total", "counter",
           "Phase-2 retries scheduled (retryable outcome or expired lease).");
    sinter_tc_buf_printf(b, "sinter_phase2_retries_total %" PRIu64 "\n", ld(&m->phase2_retries));
    family(b, "sinter_phase2_lease_expired_total", "counter",
           "Phase-2 deliveries whose lease expired before the RM reported.");
    sinter_tc_buf_printf(b, "sinter_phase2_lease_expired_total %" PRIu64 "\n",
                         ld(&m->phase2_lease_expired));
    family(b, "sinter_phase2_reports_total", "counter",
           "Phase-2 outcomes reported by RMs, by branch status (Seata names).");
    for (uint32_t s = SINTER_BS_PHASE2_COMMITTED; s <= SINTER_BS_MAX; s++) {
        if (sinter_branch_status_valid(s)) {
            sinter_tc_buf_printf(b, "sinter_phase2_reports_total{status=\"%s\"} %" PRIu64 "\n",
                                 sinter_branch_status_name(s), ld(&m->phase2_reports[s]));
        }
    }

    /* Buckets are stored per bound (not cumulative) and may move while we read: accumulate
     * from one read of each, and take _count as the total of those reads so that the +Inf
     * bucket always equals _count, as the format requires. */
    const char *h = "sinter_phase2_latency_seconds";
    family(b, h, "histogram",
           "From the decision applied to the global's final status, per global (leader's view).");
    const uint64_t *bounds = sinter_tc_hist_bounds();
    uint64_t cum = 0;
    for (unsigned i = 0; i < SINTER_TC_HIST_N; i++) {
        cum += ld(&m->phase2_latency.bucket[i]);
        sinter_tc_buf_printf(b, "%s_bucket{le=\"", h);
        if (i + 1 < SINTER_TC_HIST_N) {
            secs(b, bounds[i]);
        } else {
            sinter_tc_buf_printf(b, "+Inf");
        }
        sinter_tc_buf_printf(b, "\"} %" PRIu64 "\n", cum);
    }
    sinter_tc_buf_printf(b, "%s_sum ", h);
    secs(b, ld(&m->phase2_latency.sum_ms));
    sinter_tc_buf_printf(b, "\n%s_count %" PRIu64 "\n", h, cum);

    family(b, "sinter_timeouts_total", "counter",
           "Timeout rollback decisions proposed by this node's leader-only worker.");
    sinter_tc_buf_printf(b, "sinter_timeouts_total %" PRIu64 "\n", ld(&m->timeouts));
    family(b, "sinter_retry_timeouts_total", "counter",
           "Globals moved to *RetryTimeout (phase-2 deadline passed) by this node.");
    sinter_tc_buf_printf(b, "sinter_retry_timeouts_total %" PRIu64 "\n", ld(&m->retry_timeouts));
    family(b, "sinter_gc_removed_total", "counter",
           "Finished globals removed by retention GC proposed by this node.");
    sinter_tc_buf_printf(b, "sinter_gc_removed_total %" PRIu64 "\n", ld(&m->gc_removed));
    family(b, "sinter_write_replies_total", "counter",
           "Client writes answered with their applied result by this node (the leader).");
    sinter_tc_buf_printf(b, "sinter_write_replies_total %" PRIu64 "\n", ld(&m->write_replies));
    family(b, "sinter_write_reply_seconds_total", "counter",
           "Their time on this node, from the handler's start to the reply written.");
    sinter_tc_buf_printf(b, "sinter_write_reply_seconds_total ");
    secs_ns(b, ld(&m->write_reply_ns));
    sinter_tc_buf_printf(b, "\n");
    if (rpc != NULL) {
        rpc_series(b, rpc);
    }
    if (host != NULL) {
        host_series(b, host);
    }
    return b->oom ? SINTER_ENOMEM : SINTER_OK;
}

/* ---- query strings -------------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int decode(const char *s, size_t n, char *out, size_t cap, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return SINTER_EINVAL;
            }
            int a = hexval((unsigned char)s[i + 1]), d = hexval((unsigned char)s[i + 2]);
            if (a < 0 || d < 0) {
                return SINTER_EINVAL;
            }
            c = a * 16 + d;
            i += 2;
            if (c == 0) {
                return SINTER_EINVAL;
            }
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (o + 1 >= cap) {
            return SINTER_EINVAL;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return SINTER_OK;
}

int sinter_tc_url_decode(const char *s, size_t n, char *out, size_t cap)
{
    return decode(s, n, out, cap, false);
}

/* Calls fn for each name=value pair (both decoded). Stops at the first non-OK. */
typedef int (*pair_fn)(void *arg, const char *name, const char *value);

static int each_pair(const char *q, pair_fn fn, void *arg)
{
    if (q == NULL) {
        return SINTER_OK;
    }
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t n = amp != NULL ? (size_t)(amp - q) : strlen(q);
        if (n > 0) {
            const char *eq = memchr(q, '=', n);
            size_t nl = eq != NULL ? (size_t)(eq - q) : n;
            char name[64], value[256];
            int rc = decode(q, nl, name, sizeof name, true);
            if (rc == SINTER_OK) {
                rc = eq != NULL ? decode(eq + 1, n - nl - 1, value, sizeof value, true)
                                : decode("", 0, value, sizeof value, true);
            }
            if (rc == SINTER_OK) {
                rc = fn(arg, name, value);
            }
            if (rc != SINTER_OK) {
                return rc;
            }
        }
        q += n;
        if (*q == '&') {
            q++;
        }
    }
    return SINTER_OK;
}

struct get_ctx {
    const char *name;
    char *out;
    size_t cap;
    bool found;
};

static int get_cb(void *arg, const char *name, const char *value)
{
    struct get_ctx *x = arg;
    if (!x->found && strcmp(name, x->name) == 0) {
        if (strlen(value) >= x->cap) {
            return SINTER_EINVAL;
        }
        strcpy(x->out, value);
        x->found = true;
    }
    return SINTER_OK;
}

int sinter_tc_query_get(const char *query, const char *name, char *out, size_t cap)
{
    struct get_ctx x = {name, out, cap, false};
    int rc = each_pair(query, get_cb, &x);
    if (rc != SINTER_OK) {
        return rc;
    }
    return x.found ? SINTER_OK : SINTER_ENOTFOUND;
}

static bool parse_u64(const char *v, uint64_t *out)
{
    if (v == NULL || *v < '0' || *v > '9') {
        return false;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = x;
    return true;
}

int sinter_tc_status_parse(const char *text, uint32_t *status)
{
    uint64_t code = 0;
    if (parse_u64(text, &code)) {
        if (code > SINTER_GS_MAX || !sinter_global_status_valid((uint32_t)code) ||
            code == SINTER_GS_FINISHED) {
            return SINTER_EINVAL;
        }
        *status = (uint32_t)code;
        return SINTER_OK;
    }
    for (uint32_t s = 1; s <= SINTER_GS_MAX; s++) {
        if (sinter_global_status_valid(s) && s != SINTER_GS_FINISHED &&
            strcasecmp(text, sinter_global_status_name(s)) == 0) {
            *status = s;
            return SINTER_OK;
        }
    }
    return SINTER_EINVAL;
}

int sinter_tc_resolve_target_parse(const char *text, uint32_t *status)
{
    static const struct {
        const char *a, *b;
        uint32_t s;
    } t[] = {
        {"committed", "Committed", SINTER_GS_COMMITTED},
        {"rollbacked", "Rollbacked", SINTER_GS_ROLLBACKED},
        {"timeout_rollbacked", "TimeoutRollbacked", SINTER_GS_TIMEOUT_ROLLBACKED},
    };
    for (size_t i = 0; text != NULL && i < sizeof t / sizeof t[0]; i++) {
        if (strcasecmp(text, t[i].a) == 0 || strcasecmp(text, t[i].b) == 0) {
            *status = t[i].s;
            return SINTER_OK;
        }
    }
    return SINTER_EINVAL;
}

struct list_ctx {
    struct sinter_tc_list_query *q;
    uint32_t n_groups;
    char *err;
    size_t errlen;
};

static int list_cb(void *arg, const char *name, const char *value)
{
    struct list_ctx *x = arg;
    uint64_t v = 0;
    if (strcmp(name, "status") == 0) {
        if (sinter_tc_status_parse(value, &x->q->status) != SINTER_OK) {
            snprintf(x->err, x->errlen,
                     "status '%s': not a global status (a Seata name such as Committing, or its "
                     "number)",
                     value);
            return SINTER_EINVAL;
        }
    } else if (strcmp(name, "group") == 0) {
        if (!parse_u64(value, &v) || v >= x->n_groups) {
            snprintf(x->err, x->errlen, "group '%s': must be 0..%u", value, x->n_groups - 1);
            return SINTER_EINVAL;
        }
        x->q->has_group = true;
        x->q->group = (uint32_t)v;
    } else if (strcmp(name, "after") == 0) {
        if (sinter_xid_parse(&x->q->after, value, strlen(value)) != SINTER_OK) {
            snprintf(x->err, x->errlen, "after '%s': not an xid (GROUP:INDEX)", value);
            return SINTER_EINVAL;
        }
    } else if (strcmp(name, "limit") == 0) {
        if (!parse_u64(value, &v) || v < 1 || v > SINTER_TC_LIST_MAX_LIMIT) {
            snprintf(x->err, x->errlen, "limit '%s': must be 1..%u", value,
                     SINTER_TC_LIST_MAX_LIMIT);
            return SINTER_EINVAL;
        }
        x->q->limit = (uint32_t)v;
    } else {
        snprintf(x->err, x->errlen, "unknown parameter '%s' (status, group, after, limit)", name);
        return SINTER_EINVAL;
    }
    return SINTER_OK;
}

int sinter_tc_list_query_parse(const char *query, uint32_t n_groups, struct sinter_tc_list_query *q,
                               char *err, size_t errlen)
{
    memset(q, 0, sizeof *q);
    q->limit = SINTER_TC_LIST_DEFAULT_LIMIT;
    snprintf(err, errlen, "malformed query string (bad %%-escape or value too long)");
    struct list_ctx x = {q, n_groups, err, errlen};
    int rc = each_pair(query, list_cb, &x);
    if (rc == SINTER_OK) {
        err[0] = '\0';
    }
    return rc;
}

/* ---- base64 --------------------------------------------------------------------------------- */

size_t sinter_tc_base64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void sinter_tc_base64(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}
