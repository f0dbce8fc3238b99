/*
 * The frame and body codec of sinter/proto.h.
 *
 * Each message's layout is written once, as a "walker" that visits its fields in wire order
 * through a cursor that either reads (decode), writes (encode) or only counts (size). Encoder and
 * decoder therefore cannot drift apart, and every check (limits, enum domains, xid text) runs on
 * both sides: what we encode, a peer with the same limits decodes. This is explicit per-message
 * code, not generic reflection: no field is found by name or type tag at run time.
 */
#include "sinter/proto.h"

#include <string.h>

#include "sinter/crc32c.h"

/* ---------------------------------------------------------------------------------------------
 * Limits and small helpers
 */

void sinter_proto_limits_default(struct sinter_proto_limits *lim)
{
    lim->max_frame = 1u << 20;
    lim->max_str = 256;
    lim->max_message = 1024;
    lim->max_credential = 256;
    lim->max_app_data = 64u << 10;
    lim->max_resources = 64;
    lim->max_batch = 64;
    lim->max_members = SINTER_PROTO_MAX_MEMBERS;
    lim->max_groups = SINTER_PROTO_MAX_GROUPS;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* The limits actually enforced: defaults for NULL, every value clamped to what the wire and the
 * fixed arrays can hold. */
static void effective_limits(const struct sinter_proto_limits *in, struct sinter_proto_limits *out)
{
    if (in == NULL) {
        sinter_proto_limits_default(out);
    } else {
        *out = *in;
    }
    if (out->max_frame < SINTER_PROTO_HEADER_SIZE) {
        out->max_frame = SINTER_PROTO_HEADER_SIZE;
    }
    out->max_str = min_u32(out->max_str, UINT16_MAX);
    out->max_message = min_u32(out->max_message, UINT16_MAX);
    out->max_credential = min_u32(out->max_credential, UINT16_MAX);
    out->max_resources = min_u32(out->max_resources, SINTER_PROTO_MAX_RESOURCES);
    out->max_batch = min_u32(out->max_batch, SINTER_PROTO_MAX_BATCH);
    out->max_members = min_u32(out->max_members, SINTER_PROTO_MAX_MEMBERS);
    out->max_groups = min_u32(out->max_groups, SINTER_PROTO_MAX_GROUPS);
}

struct sinter_proto_str sinter_proto_str_c(const char *s)
{
    struct sinter_proto_str r = {s, 0};
    if (s != NULL) {
        size_t n = strlen(s);
        r.len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    }
    return r;
}

bool sinter_proto_str_eq(struct sinter_proto_str s, const char *c)
{
    size_t n = c == NULL ? 0 : strlen(c);
    return n == s.len && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * The cursor
 */

struct cur {
    bool rd;           /* true: decode from in; false: encode into out (or count if out NULL) */
    const uint8_t *in; /* decode: the body */
    uint8_t *out;      /* encode: the body, NULL when only counting */
    size_t pos;        /* bytes consumed / produced so far */
    size_t len;        /* decode: body length */
    struct sinter_proto_limits lim;
};

/* Reading a fixed-size field: the body ending inside it is a truncation. */
static int need(const struct cur *c, size_t n)
{
    return c->len - c->pos < n ? SINTER_ETRUNCATED : SINTER_OK;
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != SINTER_OK) {                                                                    \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static int c_u8(struct cur *c, uint8_t *v)
{
    if (c->rd) {
        CHECK(need(c, 1));
        *v = c->in[c->pos];
    } else if (c->out != NULL) {
        c->out[c->pos] = *v;
    }
    c->pos += 1;
    return SINTER_OK;
}

static int c_u16(struct cur *c, uint16_t *v)
{
    if (c->rd) {
        CHECK(need(c, 2));
        *v = get16(c->in + c->pos);
    } else if (c->out != NULL) {
        put16(c->out + c->pos, *v);
    }
    c->pos += 2;
    return SINTER_OK;
}

static int c_u32(struct cur *c, uint32_t *v)
{
    if (c->rd) {
        CHECK(need(c, 4));
        *v = get32(c->in + c->pos);
    } else if (c->out != NULL) {
        put32(c->out + c->pos, *v);
    }
    c->pos += 4;
    return SINTER_OK;
}

static int c_u64(struct cur *c, uint64_t *v)
{
    if (c->rd) {
        CHECK(need(c, 8));
        *v = get64(c->in + c->pos);
    } else if (c->out != NULL) {
        put64(c->out + c->pos, *v);
    }
    c->pos += 8;
    return SINTER_OK;
}

static int c_bool(struct cur *c, bool *v)
{
    /* On decode *v is stale memory (the union is not cleared), so it is only read when encoding. */
    uint8_t b = c->rd ? 0 : (*v ? 1 : 0);
    CHECK(c_u8(c, &b));
    if (b > 1) {
        return SINTER_EBADVALUE; /* canonical: exactly 0 or 1 */
    }
    if (c->rd) {
        *v = b == 1;
    }
    return SINTER_OK;
}

/* A run of n bytes whose length prefix was already handled: zero-copy on decode. The length was
 * checked against its limit before we get here, so nothing proportional to an unchecked length is
 * ever touched. */
static int c_run(struct cur *c, const void **p, uint32_t n)
{
    if (c->rd) {
        if (c->len - c->pos < n) {
            return SINTER_EBADLEN; /* the length prefix promises more than the body holds */
        }
        *p = n == 0 ? NULL : c->in + c->pos;
    } else {
        if (n > 0 && *p == NULL) {
            return SINTER_EINVAL;
        }
        if (c->out != NULL && n > 0) {
            memcpy(c->out + c->pos, *p, n);
        }
    }
    c->pos += n;
    return SINTER_OK;
}

static int c_str(struct cur *c, struct sinter_proto_str *s, uint32_t max)
{
    uint16_t n;
    if (!c->rd) {
        if (s->len > max) {
            return SINTER_ETOOBIG;
        }
        n = (uint16_t)s->len;
    }
    CHECK(c_u16(c, &n));
    if (n > max) {
        return SINTER_ETOOBIG;
    }
    const void *p = c->rd ? NULL : (const void *)s->ptr; /* decode: never read stale fields */
    CHECK(c_run(c, &p, n));
    /* Refuse NUL inside strings so every decoded string converts to a C string unchanged. */
    if (n > 0 && memchr(p, 0, n) != NULL) {
        return SINTER_EBADVALUE;
    }
    if (c->rd) {
        s->ptr = p;
        s->len = n;
    }
    return SINTER_OK;
}

static int c_bytes(struct cur *c, struct sinter_proto_bytes *b, uint32_t max)
{
    uint32_t n = b->len;
    if (!c->rd && n > max) {
        return SINTER_ETOOBIG;
    }
    CHECK(c_u32(c, &n));
    if (n > max) {
        return SINTER_ETOOBIG;
    }
    const void *p = c->rd ? NULL : (const void *)b->ptr;
    CHECK(c_run(c, &p, n));
    if (c->rd) {
        b->ptr = p;
        b->len = n;
    }
    return SINTER_OK;
}

/* An xid as its canonical text; empty means "none" and is allowed only when !required. */
static int c_xid(struct cur *c, struct sinter_xid *x, bool required)
{
    char text[SINTER_XID_STRLEN];
    uint16_t n = 0;
    if (!c->rd) {
        if (x->index != 0) {
            n = (uint16_t)sinter_xid_format(x, text);
        } else if (required || x->group != 0) {
            return SINTER_EBADVALUE;
        }
    }
    CHECK(c_u16(c, &n));
    if (n >= SINTER_XID_STRLEN) {
        return SINTER_ETOOBIG;
    }
    const void *p = text;
    CHECK(c_run(c, &p, n));
    if (c->rd) {
        if (n == 0) {
            if (required) {
                return SINTER_EBADVALUE;
            }
            x->group = 0;
            x->index = 0;
        } else if (sinter_xid_parse(x, p, n) != SINTER_OK) {
            return SINTER_EBADVALUE;
        }
    }
    return SINTER_OK;
}

/* An array count: checked against the limit before any element is visited. */
static int c_count(struct cur *c, uint32_t *n, uint32_t max)
{
    uint16_t v;
    if (!c->rd) {
        if (*n > max) {
            return SINTER_ETOOBIG;
        }
        v = (uint16_t)*n;
    }
    CHECK(c_u16(c, &v));
    if (v > max) {
        return SINTER_ETOOBIG;
    }
    if (c->rd) {
        *n = v;
    }
    return SINTER_OK;
}

static int check(bool ok)
{
    return ok ? SINTER_OK : SINTER_EBADVALUE;
}

static int c_branch_type(struct cur *c, uint32_t *t)
{
    CHECK(c_u32(c, t));
    return check(sinter_branch_type_valid(*t));
}

/* ---------------------------------------------------------------------------------------------
 * Message walkers, in wire order of their struct's fields
 */

static int w_none(struct cur *c, struct sinter_proto_msg *m)
{
    (void)c;
    (void)m;
    return SINTER_OK;
}

static int w_global_begin(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_global_begin *b = &m->u.global_begin;
    CHECK(c_str(c, &b->application_id, c->lim.max_str));
    CHECK(c_str(c, &b->transaction_name, c->lim.max_str));
    return c_u32(c, &b->timeout_ms);
}

static int w_global_begin_result(struct cur *c, struct sinter_proto_msg *m)
{
    return c_xid(c, &m->u.global_begin_result.xid, false);
}

static int w_global_end(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_global_end *e = &m->u.global_end;
    CHECK(c_xid(c, &e->xid, true));
    CHECK(c_u32(c, &e->flags));
    CHECK(check((e->flags & ~SINTER_PROTO_END_FLAGS_ALL) == 0));
    return c_u32(c, &e->wait_ms);
}

static int w_global_status(struct cur *c, struct sinter_proto_msg *m)
{
    return c_xid(c, &m->u.global_status.xid, true);
}

static int w_global_report(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_global_report *r = &m->u.global_report;
    CHECK(c_xid(c, &r->xid, true));
    CHECK(c_u32(c, &r->global_status));
    return check(sinter_global_status_valid(r->global_status));
}

static int w_global_status_result(struct cur *c, struct sinter_proto_msg *m)
{
    uint32_t *s = &m->u.global_status_result.global_status;
    CHECK(c_u32(c, s));
    return check(*s == SINTER_GS_UNKNOWN || sinter_global_status_valid(*s));
}

static int w_branch_register(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_branch_register *r = &m->u.branch_register;
    CHECK(c_xid(c, &r->xid, true));
    CHECK(c_branch_type(c, &r->branch_type));
    CHECK(c_str(c, &r->resource_id, c->lim.max_str));
    CHECK(c_bytes(c, &r->application_data, c->lim.max_app_data));
    return c_u64(c, &r->xa_local_xid);
}

static int w_branch_register_result(struct cur *c, struct sinter_proto_msg *m)
{
    return c_u64(c, &m->u.branch_register_result.branch_id);
}

static int w_branch_report(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_branch_report *r = &m->u.branch_report;
    CHECK(c_xid(c, &r->xid, true));
    CHECK(c_u64(c, &r->branch_id));
    CHECK(c_branch_type(c, &r->branch_type));
    CHECK(c_u32(c, &r->branch_status));
    CHECK(check(sinter_branch_status_valid(r->branch_status)));
    CHECK(c_str(c, &r->resource_id, c->lim.max_str));
    CHECK(c_bytes(c, &r->application_data, c->lim.max_app_data));
    return c_u64(c, &r->xa_local_xid);
}

static int c_branch_work(struct cur *c, struct sinter_proto_branch_work *w)
{
    CHECK(c_xid(c, &w->xid, true));
    CHECK(c_u64(c, &w->branch_id));
    CHECK(c_branch_type(c, &w->branch_type));
    CHECK(c_str(c, &w->resource_id, c->lim.max_str));
    CHECK(c_bytes(c, &w->application_data, c->lim.max_app_data));
    CHECK(c_u64(c, &w->xa_local_xid));
    return c_u32(c, &w->attempt);
}

static int w_branch_work(struct cur *c, struct sinter_proto_msg *m)
{
    return c_branch_work(c, &m->u.branch_work);
}

static int c_branch_outcome(struct cur *c, struct sinter_proto_branch_outcome *o)
{
    CHECK(c_xid(c, &o->xid, true));
    CHECK(c_u64(c, &o->branch_id));
    CHECK(c_u32(c, &o->branch_status));
    return check(o->branch_status == SINTER_BS_UNKNOWN ||
                 sinter_branch_status_valid(o->branch_status));
}

static int w_branch_outcome(struct cur *c, struct sinter_proto_msg *m)
{
    return c_branch_outcome(c, &m->u.branch_outcome);
}

static int c_resources(struct cur *c, uint32_t *n, struct sinter_proto_str *ids)
{
    CHECK(c_count(c, n, c->lim.max_resources));
    for (uint32_t i = 0; i < *n; i++) {
        CHECK(c_str(c, &ids[i], c->lim.max_str));
    }
    return SINTER_OK;
}

static int c_register(struct cur *c, struct sinter_proto_register *r)
{
    CHECK(c_str(c, &r->client_version, c->lim.max_str));
    CHECK(c_str(c, &r->application_id, c->lim.max_str));
    return c_str(c, &r->credential, c->lim.max_credential);
}

static int w_register_tm(struct cur *c, struct sinter_proto_msg *m)
{
    CHECK(c_register(c, &m->u.reg));
    /* RegisterTM has no resources; refuse to encode some that would be silently dropped. */
    if (c->rd) {
        m->u.reg.n_resources = 0;
    }
    return check(m->u.reg.n_resources == 0);
}

static int w_register_rm(struct cur *c, struct sinter_proto_msg *m)
{
    CHECK(c_register(c, &m->u.reg));
    return c_resources(c, &m->u.reg.n_resources, m->u.reg.resource_ids);
}

static int w_register_result(struct cur *c, struct sinter_proto_msg *m)
{
    return c_str(c, &m->u.reg_result.server_version, c->lim.max_str);
}

static int w_error(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_error *e = &m->u.error;
    CHECK(c_u64(c, &e->leader_id));
    CHECK(c_str(c, &e->leader_addr, c->lim.max_str));
    CHECK(c_u32(c, &e->group));
    return c_u64(c, &e->term);
}

static int w_phase2_poll(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_phase2_poll *p = &m->u.phase2_poll;
    CHECK(c_resources(c, &p->n_resources, p->resource_ids));
    CHECK(c_u32(c, &p->max_items));
    CHECK(check(p->max_items >= 1));
    return c_u32(c, &p->wait_ms);
}

static bool phase2_code_valid(uint16_t code)
{
    return code == SINTER_MSG_BRANCH_COMMIT || code == SINTER_MSG_BRANCH_ROLLBACK;
}

static int w_phase2_poll_result(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_phase2_poll_result *r = &m->u.phase2_poll_result;
    CHECK(c_count(c, &r->n_items, c->lim.max_batch));
    for (uint32_t i = 0; i < r->n_items; i++) {
        CHECK(c_u16(c, &r->items[i].code));
        CHECK(check(phase2_code_valid(r->items[i].code)));
        CHECK(c_branch_work(c, &r->items[i].work));
    }
    return SINTER_OK;
}

static int w_phase2_report(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_phase2_report *r = &m->u.phase2_report;
    CHECK(c_u16(c, &r->phase));
    CHECK(check(phase2_code_valid(r->phase)));
    CHECK(c_branch_outcome(c, &r->outcome));
    return c_u32(c, &r->attempt); /* any value: 0 = not tied to a delivery */
}

static int w_phase2_report_batch(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_phase2_report_batch *b = &m->u.phase2_report_batch;
    CHECK(c_count(c, &b->n_reports, SINTER_PROTO_MAX_REPORTS));
    CHECK(check(b->n_reports >= 1));
    for (uint32_t i = 0; i < b->n_reports; i++) {
        struct sinter_proto_phase2_report *r = &b->reports[i];
        CHECK(c_u16(c, &r->phase));
        CHECK(check(phase2_code_valid(r->phase)));
        CHECK(c_branch_outcome(c, &r->outcome));
        CHECK(c_u32(c, &r->attempt));
    }
    return SINTER_OK;
}

static int w_phase2_report_batch_result(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_phase2_report_batch_result *b = &m->u.phase2_report_batch_result;
    CHECK(c_count(c, &b->n_results, SINTER_PROTO_MAX_REPORTS));
    for (uint32_t i = 0; i < b->n_results; i++) {
        uint32_t r = (uint32_t)b->results[i];
        CHECK(check(c->rd || b->results[i] >= 0));
        CHECK(c_u32(c, &r));
        CHECK(check(r <= INT32_MAX)); /* error codes are non-negative, like rs.result */
        if (c->rd) {
            b->results[i] = (int32_t)r;
        }
    }
    return SINTER_OK;
}

static int w_cluster_meta_result(struct cur *c, struct sinter_proto_msg *m)
{
    struct sinter_proto_cluster_meta_result *r = &m->u.cluster_meta_result;
    CHECK(c_u64(c, &r->node_id));
    CHECK(c_count(c, &r->n_members, c->lim.max_members));
    for (uint32_t i = 0; i < r->n_members; i++) {
        CHECK(c_u64(c, &r->members[i].id));
        CHECK(c_str(c, &r->members[i].addr, c->lim.max_str));
        CHECK(c_bool(c, &r->members[i].voter));
    }
    CHECK(c_count(c, &r->n_groups, c->lim.max_groups));
    for (uint32_t i = 0; i < r->n_groups; i++) {
        CHECK(c_u32(c, &r->groups[i].group));
        CHECK(c_u64(c, &r->groups[i].leader_id));
        CHECK(c_u64(c, &r->groups[i].term));
    }
    return SINTER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The code table
 */

typedef int (*walker)(struct cur *, struct sinter_proto_msg *);

struct codedesc {
    uint16_t code;
    uint16_t reply; /* requests: their typed result code; replies: 0 */
    const char *name;
    walker walk;
};

static const struct codedesc codes[] = {
    {SINTER_MSG_GLOBAL_BEGIN, SINTER_MSG_GLOBAL_BEGIN_RESULT, "GlobalBegin", w_global_begin},
    {SINTER_MSG_GLOBAL_BEGIN_RESULT, 0, "GlobalBeginResult", w_global_begin_result},
    {SINTER_MSG_BRANCH_COMMIT, SINTER_MSG_BRANCH_COMMIT_RESULT, "BranchCommit", w_branch_work},
    {SINTER_MSG_BRANCH_COMMIT_RESULT, 0, "BranchCommitResult", w_branch_outcome},
    {SINTER_MSG_BRANCH_ROLLBACK, SINTER_MSG_BRANCH_ROLLBACK_RESULT, "BranchRollback",
     w_branch_work},
    {SINTER_MSG_BRANCH_ROLLBACK_RESULT, 0, "BranchRollbackResult", w_branch_outcome},
    {SINTER_MSG_GLOBAL_COMMIT, SINTER_MSG_GLOBAL_COMMIT_RESULT, "GlobalCommit", w_global_end},
    {SINTER_MSG_GLOBAL_COMMIT_RESULT, 0, "GlobalCommitResult", w_global_status_result},
    {SINTER_MSG_GLOBAL_ROLLBACK, SINTER_MSG_GLOBAL_ROLLBACK_RESULT, "GlobalRollback", w_global_end},
    {SINTER_MSG_GLOBAL_ROLLBACK_RESULT, 0, "GlobalRollbackResult", w_global_status_result},
    {SINTER_MSG_BRANCH_REGISTER, SINTER_MSG_BRANCH_REGISTER_RESULT, "BranchRegister",
     w_branch_register},
    {SINTER_MSG_BRANCH_REGISTER_RESULT, 0, "BranchRegisterResult", w_branch_register_result},
    {SINTER_MSG_BRANCH_REPORT, SINTER_MSG_BRANCH_REPORT_RESULT, "BranchReport", w_branch_report},
    {SINTER_MSG_BRANCH_REPORT_RESULT, 0, "BranchReportResult", w_none},
    {SINTER_MSG_GLOBAL_STATUS, SINTER_MSG_GLOBAL_STATUS_RESULT, "GlobalStatus", w_global_status},
    {SINTER_MSG_GLOBAL_STATUS_RESULT, 0, "GlobalStatusResult", w_global_status_result},
    {SINTER_MSG_GLOBAL_REPORT, SINTER_MSG_GLOBAL_REPORT_RESULT, "GlobalReport", w_global_report},
    {SINTER_MSG_GLOBAL_REPORT_RESULT, 0, "GlobalReportResult", w_global_status_result},
    {SINTER_MSG_REGISTER_TM, SINTER_MSG_REGISTER_TM_RESULT, "RegisterTM", w_register_tm},
    {SINTER_MSG_REGISTER_TM_RESULT, 0, "RegisterTMResult", w_register_result},
    {SINTER_MSG_REGISTER_RM, SINTER_MSG_REGISTER_RM_RESULT, "RegisterRM", w_register_rm},
    {SINTER_MSG_REGISTER_RM_RESULT, 0, "RegisterRMResult", w_register_result},
    {SINTER_MSG_HEARTBEAT, SINTER_MSG_HEARTBEAT_RESULT, "Heartbeat", w_none},
    {SINTER_MSG_ERROR, 0, "Error", w_error},
    {SINTER_MSG_PHASE2_POLL, SINTER_MSG_PHASE2_POLL_RESULT, "Phase2Poll", w_phase2_poll},
    {SINTER_MSG_PHASE2_POLL_RESULT, 0, "Phase2PollResult", w_phase2_poll_result},
    {SINTER_MSG_PHASE2_REPORT, SINTER_MSG_PHASE2_REPORT_RESULT, "Phase2Report", w_phase2_report},
    {SINTER_MSG_PHASE2_REPORT_RESULT, 0, "Phase2ReportResult", w_none},
    {SINTER_MSG_CLUSTER_META, SINTER_MSG_CLUSTER_META_RESULT, "ClusterMeta", w_none},
    {SINTER_MSG_CLUSTER_META_RESULT, 0, "ClusterMetaResult", w_cluster_meta_result},
    {SINTER_MSG_HEARTBEAT_RESULT, 0, "HeartbeatResult", w_none},
    {SINTER_MSG_PHASE2_REPORT_BATCH, SINTER_MSG_PHASE2_REPORT_BATCH_RESULT, "Phase2ReportBatch",
     w_phase2_report_batch},
    {SINTER_MSG_PHASE2_REPORT_BATCH_RESULT, 0, "Phase2ReportBatchResult",
     w_phase2_report_batch_result},
};

static const struct codedesc *find_code(uint32_t code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (codes[i].code == code) {
            return &codes[i];
        }
    }
    return NULL;
}

bool sinter_proto_code_is_known(uint32_t code)
{
    return find_code(code) != NULL;
}

bool sinter_proto_code_is_request(uint32_t code)
{
    const struct codedesc *d = find_code(code);
    return d != NULL && d->reply != 0;
}

uint16_t sinter_proto_reply_code(uint32_t code)
{
    const struct codedesc *d = find_code(code);
    return d == NULL ? 0 : d->reply;
}

/* splitmix64's finaliser: spreads consecutive seqs over the groups evenly. */
static uint64_t begin_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint32_t sinter_proto_begin_group(uint64_t client_id, uint64_t seq, uint32_t n_groups)
{
    if (n_groups <= 1) {
        return 0;
    }
    return (uint32_t)(begin_mix64(client_id ^ begin_mix64(seq)) % n_groups);
}

const char *sinter_proto_code_name(uint32_t code)
{
    const struct codedesc *d = find_code(code);
    return d == NULL ? "Unknown" : d->name;
}

/* The whole body: the request or reply prefix, then the message's own fields. */
static int walk_body(struct cur *c, const struct codedesc *d, struct sinter_proto_msg *m)
{
    if (d->reply != 0) {
        CHECK(c_u64(c, &m->rq.client_id));
        CHECK(c_u64(c, &m->rq.seq));
    } else {
        uint32_t r = (uint32_t)m->rs.result;
        if (!c->rd && m->rs.result < 0) {
            return SINTER_EBADVALUE;
        }
        CHECK(c_u32(c, &r));
        if (r > INT32_MAX) {
            return SINTER_EBADVALUE;
        }
        if (c->rd) {
            m->rs.result = (int32_t)r;
        }
        CHECK(c_str(c, &m->rs.message, c->lim.max_message));
    }
    return d->walk(c, m);
}

/* ---------------------------------------------------------------------------------------------
 * Encode
 */

/* Sizes the body (out == NULL) or writes it. */
static int encode_body(const struct sinter_proto_msg *m, const struct sinter_proto_limits *lim,
                       uint8_t *out, size_t *body_len)
{
    const struct codedesc *d = find_code(m->code);
    if (d == NULL) {
        return SINTER_EUNKNOWNMSG;
    }
    struct cur c = {.rd = false, .out = out};
    effective_limits(lim, &c.lim);
    /* The walkers take a mutable message because the same code decodes; in write mode every
     * store into the message is skipped (guarded by c->rd), so a const message is never written. */
    struct sinter_proto_msg *mm = (struct sinter_proto_msg *)m;
    CHECK(walk_body(&c, d, mm));
    if (c.pos > (size_t)c.lim.max_frame - SINTER_PROTO_HEADER_SIZE) {
        return SINTER_ETOOBIG;
    }
    *body_len = c.pos;
    return SINTER_OK;
}

size_t sinter_proto_encoded_size(const struct sinter_proto_msg *m,
                                 const struct sinter_proto_limits *lim)
{
    size_t body;
    if (m == NULL || encode_body(m, lim, NULL, &body) != SINTER_OK) {
        return 0;
    }
    return SINTER_PROTO_HEADER_SIZE + body;
}

int sinter_proto_encode(const struct sinter_proto_msg *m, const struct sinter_proto_limits *lim,
                        uint8_t *buf, size_t cap, size_t *out_len)
{
    size_t body;
    if (m == NULL || buf == NULL || out_len == NULL) {
        return SINTER_EINVAL;
    }
    CHECK(encode_body(m, lim, NULL, &body));
    if (cap < SINTER_PROTO_HEADER_SIZE || cap - SINTER_PROTO_HEADER_SIZE < body) {
        return SINTER_EINVAL;
    }
    size_t body2;
    CHECK(encode_body(m, lim, buf + SINTER_PROTO_HEADER_SIZE, &body2));
    if (body2 != body) {
        return SINTER_EINTERNAL;
    }
    put32(buf, SINTER_PROTO_MAGIC);
    buf[4] = SINTER_PROTO_VERSION;
    buf[5] = 0;
    put16(buf + 6, m->code);
    put64(buf + 8, m->request_id);
    put32(buf + 16, (uint32_t)body);
    uint32_t crc = sinter_crc32c(0, buf, 20);
    crc = sinter_crc32c(crc, buf + SINTER_PROTO_HEADER_SIZE, body);
    put32(buf + 20, crc);
    *out_len = SINTER_PROTO_HEADER_SIZE + body;
    return SINTER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Decode
 */

int sinter_proto_decode_header(const uint8_t *buf, size_t len,
                               const struct sinter_proto_limits *lim, struct sinter_proto_header *h)
{
    struct sinter_proto_limits l;
    if (buf == NULL || h == NULL) {
        return SINTER_EINVAL;
    }
    memset(h, 0, sizeof *h);
    effective_limits(lim, &l);
    /* Magic and version first, from as few bytes as are present, so a foreign or future peer
     * gets the precise error even from a short read. */
    if (len >= 4) {
        h->magic = get32(buf);
        if (h->magic != SINTER_PROTO_MAGIC) {
            return SINTER_EBADMAGIC;
        }
    }
    if (len >= 5) {
        h->version = buf[4];
        if (h->version != SINTER_PROTO_VERSION) {
            return SINTER_EBADVERSION;
        }
    }
    if (len < SINTER_PROTO_HEADER_SIZE) {
        return SINTER_ETRUNCATED;
    }
    h->flags = buf[5];
    h->code = get16(buf + 6);
    h->request_id = get64(buf + 8);
    h->body_len = get32(buf + 16);
    h->crc = get32(buf + 20);
    if (h->flags != 0) {
        return SINTER_EBADVALUE;
    }
    if (h->body_len > l.max_frame - SINTER_PROTO_HEADER_SIZE) {
        return SINTER_ETOOBIG;
    }
    if (len - SINTER_PROTO_HEADER_SIZE < h->body_len) {
        return SINTER_ETRUNCATED;
    }
    if (len - SINTER_PROTO_HEADER_SIZE > h->body_len) {
        return SINTER_EBADLEN;
    }
    return SINTER_OK;
}

int sinter_proto_decode(const uint8_t *buf, size_t len, const struct sinter_proto_limits *lim,
                        struct sinter_proto_msg *out)
{
    struct sinter_proto_header h;
    if (out == NULL) {
        return SINTER_EINVAL;
    }
    CHECK(sinter_proto_decode_header(buf, len, lim, &h));
    uint32_t crc = sinter_crc32c(0, buf, 20);
    crc = sinter_crc32c(crc, buf + SINTER_PROTO_HEADER_SIZE, h.body_len);
    if (crc != h.crc) {
        return SINTER_ECRC;
    }
    const struct codedesc *d = find_code(h.code);
    if (d == NULL) {
        return SINTER_EUNKNOWNMSG;
    }
    /* Only the prefix and header are cleared: the union member's arrays are written element by
     * element up to their decoded count, which keeps a 12 KiB memset off the hot path. */
    out->code = h.code;
    out->request_id = h.request_id;
    memset(&out->rq, 0, sizeof out->rq);
    memset(&out->rs, 0, sizeof out->rs);
    struct cur c = {.rd = true, .in = buf + SINTER_PROTO_HEADER_SIZE, .len = h.body_len};
    effective_limits(lim, &c.lim);
    CHECK(walk_body(&c, d, out));
    if (c.pos != c.len) {
        return SINTER_EBADLEN; /* bytes after the last field */
    }
    return SINTER_OK;
}
