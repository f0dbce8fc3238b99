/* Encoding and strict decoding of the coordinator's replicated commands (see tc/command.h). One
 * validation function serves both directions, so anything the encoder writes the decoder accepts
 * and the other way round. */
#include "tc/command.h"

#include <string.h>

#include "sinter/crc32c.h"
#include "sinter/error.h"
#include "sinter/types.h"

#define HEADER_FIXED 12 /* version, type, flags, now_ms */
#define RESULT_BYTES 29 /* one branch result: xid (12), branch id, outcome, first attempt */

/* ---- writer ---- */

struct wr {
    uint8_t *p;
    size_t off;
};

static void put_u8(struct wr *w, uint8_t v)
{
    w->p[w->off++] = v;
}

static void put_u16(struct wr *w, uint16_t v)
{
    w->p[w->off++] = (uint8_t)v;
    w->p[w->off++] = (uint8_t)(v >> 8);
}

static void put_u32(struct wr *w, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        w->p[w->off++] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u64(struct wr *w, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        w->p[w->off++] = (uint8_t)(v >> (8 * i));
    }
}

static void put_raw(struct wr *w, const struct sinter_tc_bytes *b)
{
    if (b->len > 0) {
        memcpy(w->p + w->off, b->p, b->len);
        w->off += b->len;
    }
}

static void put_str(struct wr *w, const struct sinter_tc_bytes *b)
{
    put_u16(w, (uint16_t)b->len);
    put_raw(w, b);
}

static void put_blob(struct wr *w, const struct sinter_tc_bytes *b)
{
    put_u32(w, b->len);
    put_raw(w, b);
}

static void put_xid(struct wr *w, const struct sinter_xid *x)
{
    put_u32(w, x->group);
    put_u64(w, x->index);
}

static void put_result(struct wr *w, const struct sinter_tc_cmd_branch_result *b)
{
    put_xid(w, &b->xid);
    put_u64(w, b->branch_id);
    put_u8(w, b->outcome);
    put_u64(w, b->first_attempt_ms);
}

/* ---- reader ---- */

struct rd {
    const uint8_t *p;
    size_t len;
    size_t off;
    int err; /* first error; once set every read returns zeros */
};

static int need(struct rd *r, size_t n)
{
    if (r->err != SINTER_OK) {
        return 0;
    }
    if (r->len - r->off < n) {
        r->err = SINTER_ETRUNCATED;
        return 0;
    }
    return 1;
}

static uint8_t get_u8(struct rd *r)
{
    return need(r, 1) ? r->p[r->off++] : 0;
}

static uint16_t get_u16(struct rd *r)
{
    if (!need(r, 2)) {
        return 0;
    }
    uint16_t v = (uint16_t)(r->p[r->off] | (r->p[r->off + 1] << 8));
    r->off += 2;
    return v;
}

static uint32_t get_u32(struct rd *r)
{
    if (!need(r, 4)) {
        return 0;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        v |= (uint32_t)r->p[r->off + (size_t)i] << (8 * i);
    }
    r->off += 4;
    return v;
}

static uint64_t get_u64(struct rd *r)
{
    if (!need(r, 8)) {
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
    }
    r->off += 8;
    return v;
}

/* The limit is checked before the bytes are looked for, so an absurd announced length is reported
 * as ETOOBIG whether or not the buffer happens to be long enough. */
static void get_bytes(struct rd *r, struct sinter_tc_bytes *b, uint32_t n, uint32_t limit)
{
    b->p = NULL;
    b->len = 0;
    if (r->err != SINTER_OK) {
        return;
    }
    if (n > limit) {
        r->err = SINTER_ETOOBIG;
        return;
    }
    if (!need(r, n)) {
        return;
    }
    b->p = n > 0 ? r->p + r->off : NULL;
    b->len = n;
    r->off += n;
}

static void get_str(struct rd *r, struct sinter_tc_bytes *b, uint32_t limit)
{
    uint16_t n = get_u16(r);
    get_bytes(r, b, n, limit);
}

static void get_blob(struct rd *r, struct sinter_tc_bytes *b, uint32_t limit)
{
    uint32_t n = get_u32(r);
    get_bytes(r, b, n, limit);
}

static void get_xid(struct rd *r, struct sinter_xid *x)
{
    x->group = get_u32(r);
    x->index = get_u64(r);
}

static void get_result(struct rd *r, struct sinter_tc_cmd_branch_result *b)
{
    get_xid(r, &b->xid);
    b->branch_id = get_u64(r);
    b->outcome = get_u8(r);
    b->first_attempt_ms = get_u64(r);
}

/* ---- validation ---- */

/* A string field: within [min, max] bytes, no NUL (ids and names are printed, logged and used as
 * C strings by the admin API). */
static int check_str(const struct sinter_tc_bytes *b, uint32_t min, uint32_t max)
{
    if (b->len > max) {
        return SINTER_ETOOBIG;
    }
    if (b->len < min || (b->len > 0 && b->p == NULL)) {
        return SINTER_EBADVALUE;
    }
    if (b->len > 0 && memchr(b->p, 0, b->len) != NULL) {
        return SINTER_EBADVALUE;
    }
    return SINTER_OK;
}

static int check_blob(const struct sinter_tc_bytes *b, uint32_t max)
{
    if (b->len > max) {
        return SINTER_ETOOBIG;
    }
    if (b->len > 0 && b->p == NULL) {
        return SINTER_EBADVALUE;
    }
    return SINTER_OK;
}

static int check_xid(const struct sinter_xid *x)
{
    /* Indexes are stored as SQLite INTEGER (signed 64-bit). */
    return (x->index == 0 || x->index > (uint64_t)INT64_MAX) ? SINTER_EBADVALUE : SINTER_OK;
}

static int check_id(uint64_t id)
{
    return (id == 0 || id > (uint64_t)INT64_MAX) ? SINTER_EBADVALUE : SINTER_OK;
}

/* Times are signed 64-bit in SQLite too. */
static int check_ms(uint64_t ms)
{
    return ms > (uint64_t)INT64_MAX / 2 ? SINTER_EBADVALUE : SINTER_OK;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != SINTER_OK) {                                                                    \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static int check_result(const struct sinter_tc_cmd_branch_result *b)
{
    TRY(check_xid(&b->xid));
    TRY(check_id(b->branch_id));
    TRY(check_ms(b->first_attempt_ms));
    if (b->outcome < SINTER_BS_PHASE2_COMMITTED ||
        b->outcome > SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE) {
        return SINTER_EBADVALUE;
    }
    return SINTER_OK;
}

/* Commands a client sends through the TM/RM libraries must carry a session (client id, seq):
 * without it a retry after a leader change would begin a second global or register a second
 * branch. Worker and admin commands may carry one (admin retries) but need not. */
static int needs_client(uint8_t type)
{
    return type == SINTER_TC_CMD_BEGIN || type == SINTER_TC_CMD_REGISTER_BRANCH ||
           type == SINTER_TC_CMD_REPORT_BRANCH;
}

static int validate(const struct sinter_tc_cmd *c)
{
    TRY(check_str(&c->client_id, 0, SINTER_TC_MAX_CLIENT_ID));
    if ((c->client_id.len == 0) != (c->seq == 0) || c->seq > (uint64_t)INT64_MAX) {
        return SINTER_EBADVALUE;
    }
    if (needs_client(c->type) && c->seq == 0) {
        return SINTER_EBADVALUE;
    }
    TRY(check_ms(c->now_ms));
    switch (c->type) {
    case SINTER_TC_CMD_BEGIN: {
        const struct sinter_tc_cmd_begin *b = &c->u.begin;
        TRY(check_str(&b->app_id, 1, SINTER_TC_MAX_APP_ID));
        TRY(check_str(&b->tx_name, 0, SINTER_TC_MAX_TX_NAME));
        TRY(check_blob(&b->app_data, SINTER_TC_MAX_APP_DATA));
        if (b->timeout_ms == 0 || b->timeout_ms > SINTER_TC_MAX_TIMEOUT_MS) {
            return SINTER_EBADVALUE;
        }
        return SINTER_OK;
    }
    case SINTER_TC_CMD_REGISTER_BRANCH: {
        const struct sinter_tc_cmd_register *g = &c->u.reg;
        TRY(check_xid(&g->xid));
        if (!sinter_branch_type_valid(g->branch_type)) {
            return SINTER_EBADVALUE;
        }
        TRY(check_str(&g->resource_id, 1, SINTER_TC_MAX_RESOURCE_ID));
        TRY(check_blob(&g->app_data, SINTER_TC_MAX_APP_DATA));
        TRY(check_blob(&g->xa_info, SINTER_TC_MAX_XA_INFO));
        return SINTER_OK;
    }
    case SINTER_TC_CMD_REPORT_BRANCH: {
        const struct sinter_tc_cmd_report *p = &c->u.report;
        TRY(check_xid(&p->xid));
        TRY(check_id(p->branch_id));
        if (p->status != SINTER_BS_PHASE1_DONE && p->status != SINTER_BS_PHASE1_FAILED) {
            return SINTER_EBADVALUE;
        }
        if ((p->has & ~(SINTER_TC_REPORT_HAS_APP_DATA | SINTER_TC_REPORT_HAS_XA_INFO)) != 0) {
            return SINTER_EBADVALUE;
        }
        /* An absent optional field must be empty: one spelling per command. */
        if ((!(p->has & SINTER_TC_REPORT_HAS_APP_DATA) && p->app_data.len != 0) ||
            (!(p->has & SINTER_TC_REPORT_HAS_XA_INFO) && p->xa_info.len != 0)) {
            return SINTER_EBADVALUE;
        }
        TRY(check_blob(&p->app_data, SINTER_TC_MAX_APP_DATA));
        TRY(check_blob(&p->xa_info, SINTER_TC_MAX_XA_INFO));
        return SINTER_OK;
    }
    case SINTER_TC_CMD_DECIDE: {
        uint8_t t = c->u.decide.target;
        TRY(check_xid(&c->u.decide.xid));
        if (t != SINTER_GS_COMMITTING && t != SINTER_GS_ROLLBACKING &&
            t != SINTER_GS_TIMEOUT_ROLLBACKING) {
            return SINTER_EBADVALUE;
        }
        return SINTER_OK;
    }
    case SINTER_TC_CMD_PHASE2_START:
    case SINTER_TC_CMD_END:
    case SINTER_TC_CMD_REDRIVE:
        return check_xid(&c->u.x.xid);
    case SINTER_TC_CMD_BRANCH_RESULT:
        return check_result(&c->u.result);
    case SINTER_TC_CMD_BRANCH_RESULTS: {
        /* No session: the session table keeps one answer per request, and these outcomes have
         * one each (the state machine dedups a repeated outcome by itself, as for a single). */
        if (c->seq != 0 || c->u.results.n == 0 || c->u.results.n > SINTER_TC_MAX_RESULTS) {
            return SINTER_EBADVALUE;
        }
        for (uint32_t i = 0; i < c->u.results.n; i++) {
            TRY(check_result(&c->u.results.r[i]));
        }
        return SINTER_OK;
    }
    case SINTER_TC_CMD_RETRY_TIMEOUT:
        TRY(check_xid(&c->u.retry_timeout.xid));
        return check_ms(c->u.retry_timeout.max_retry_ms);
    case SINTER_TC_CMD_GC: {
        const struct sinter_tc_cmd_gc *g = &c->u.gc;
        TRY(check_ms(g->global_cutoff_ms));
        TRY(check_ms(g->session_cutoff_ms));
        TRY(check_ms(g->client_cutoff_ms));
        /* A client row holds the floor that refuses retries of forgotten answers: it must not
         * be forgotten before the answers are. */
        if (g->client_cutoff_ms > g->session_cutoff_ms) {
            return SINTER_EBADVALUE;
        }
        if (g->max_items == 0 || g->max_items > SINTER_TC_MAX_GC_ITEMS) {
            return SINTER_EBADVALUE;
        }
        return SINTER_OK;
    }
    case SINTER_TC_CMD_RESOLVE: {
        uint8_t t = c->u.resolve.target;
        TRY(check_xid(&c->u.resolve.xid));
        if (t != SINTER_GS_COMMITTED && t != SINTER_GS_ROLLBACKED &&
            t != SINTER_GS_TIMEOUT_ROLLBACKED) {
            return SINTER_EBADVALUE;
        }
        return SINTER_OK;
    }
    default:
        return SINTER_EUNKNOWNMSG;
    }
}

/* ---- encode ---- */

size_t sinter_tc_cmd_encoded_size(const struct sinter_tc_cmd *c)
{
    size_t n = HEADER_FIXED + 2 + c->client_id.len + 8;
    switch (c->type) {
    case SINTER_TC_CMD_BEGIN:
        n += 2 + (size_t)c->u.begin.app_id.len + 2 + c->u.begin.tx_name.len + 8 + 4 +
             c->u.begin.app_data.len;
        break;
    case SINTER_TC_CMD_REGISTER_BRANCH:
        n += 12 + 1 + 2 + (size_t)c->u.reg.resource_id.len + 4 + c->u.reg.app_data.len + 4 +
             c->u.reg.xa_info.len;
        break;
    case SINTER_TC_CMD_REPORT_BRANCH:
        n += 12 + 8 + 1 + 1;
        if (c->u.report.has & SINTER_TC_REPORT_HAS_APP_DATA) {
            n += 4 + (size_t)c->u.report.app_data.len;
        }
        if (c->u.report.has & SINTER_TC_REPORT_HAS_XA_INFO) {
            n += 4 + (size_t)c->u.report.xa_info.len;
        }
        break;
    case SINTER_TC_CMD_DECIDE:
        n += 12 + 1;
        break;
    case SINTER_TC_CMD_PHASE2_START:
    case SINTER_TC_CMD_END:
    case SINTER_TC_CMD_REDRIVE:
        n += 12;
        break;
    case SINTER_TC_CMD_BRANCH_RESULT:
        n += RESULT_BYTES;
        break;
    case SINTER_TC_CMD_BRANCH_RESULTS:
        n += 2 + (size_t)c->u.results.n * RESULT_BYTES;
        break;
    case SINTER_TC_CMD_RETRY_TIMEOUT:
        n += 12 + 8;
        break;
    case SINTER_TC_CMD_GC:
        n += 8 + 8 + 8 + 4;
        break;
    case SINTER_TC_CMD_RESOLVE:
        n += 12 + 1;
        break;
    default:
        break;
    }
    return n;
}

int sinter_tc_cmd_encode(const struct sinter_tc_cmd *c, uint8_t *buf, size_t cap, size_t *len)
{
    if (c == NULL || buf == NULL || len == NULL) {
        return SINTER_EINVAL;
    }
    int rc = validate(c);
    if (rc == SINTER_EUNKNOWNMSG) {
        return SINTER_EBADVALUE;
    }
    if (rc != SINTER_OK) {
        return rc;
    }
    size_t need_bytes = sinter_tc_cmd_encoded_size(c);
    if (need_bytes > cap) {
        return SINTER_ETOOBIG;
    }
    struct wr w = {buf, 0};
    put_u8(&w, sinter_tc_cmd_version_of(c->type));
    put_u8(&w, c->type);
    put_u16(&w, 0);
    put_u64(&w, c->now_ms);
    put_str(&w, &c->client_id);
    put_u64(&w, c->seq);
    switch (c->type) {
    case SINTER_TC_CMD_BEGIN:
        put_str(&w, &c->u.begin.app_id);
        put_str(&w, &c->u.begin.tx_name);
        put_u64(&w, c->u.begin.timeout_ms);
        put_blob(&w, &c->u.begin.app_data);
        break;
    case SINTER_TC_CMD_REGISTER_BRANCH:
        put_xid(&w, &c->u.reg.xid);
        put_u8(&w, c->u.reg.branch_type);
        put_str(&w, &c->u.reg.resource_id);
        put_blob(&w, &c->u.reg.app_data);
        put_blob(&w, &c->u.reg.xa_info);
        break;
    case SINTER_TC_CMD_REPORT_BRANCH:
        put_xid(&w, &c->u.report.xid);
        put_u64(&w, c->u.report.branch_id);
        put_u8(&w, c->u.report.status);
        put_u8(&w, c->u.report.has);
        if (c->u.report.has & SINTER_TC_REPORT_HAS_APP_DATA) {
            put_blob(&w, &c->u.report.app_data);
        }
        if (c->u.report.has & SINTER_TC_REPORT_HAS_XA_INFO) {
            put_blob(&w, &c->u.report.xa_info);
        }
        break;
    case SINTER_TC_CMD_DECIDE:
        put_xid(&w, &c->u.decide.xid);
        put_u8(&w, c->u.decide.target);
        break;
    case SINTER_TC_CMD_PHASE2_START:
    case SINTER_TC_CMD_END:
    case SINTER_TC_CMD_REDRIVE:
        put_xid(&w, &c->u.x.xid);
        break;
    case SINTER_TC_CMD_BRANCH_RESULT:
        put_result(&w, &c->u.result);
        break;
    case SINTER_TC_CMD_BRANCH_RESULTS:
        put_u16(&w, (uint16_t)c->u.results.n);
        for (uint32_t i = 0; i < c->u.results.n; i++) {
            put_result(&w, &c->u.results.r[i]);
        }
        break;
    case SINTER_TC_CMD_RETRY_TIMEOUT:
        put_xid(&w, &c->u.retry_timeout.xid);
        put_u64(&w, c->u.retry_timeout.max_retry_ms);
        break;
    case SINTER_TC_CMD_GC:
        put_u64(&w, c->u.gc.global_cutoff_ms);
        put_u64(&w, c->u.gc.session_cutoff_ms);
        put_u64(&w, c->u.gc.client_cutoff_ms);
        put_u32(&w, c->u.gc.max_items);
        break;
    case SINTER_TC_CMD_RESOLVE:
        put_xid(&w, &c->u.resolve.xid);
        put_u8(&w, c->u.resolve.target);
        break;
    default:
        return SINTER_EBADVALUE;
    }
    if (w.off != need_bytes) {
        return SINTER_EINTERNAL;
    }
    *len = w.off;
    return SINTER_OK;
}

/* ---- decode ---- */

int sinter_tc_cmd_decode(struct sinter_tc_cmd *c, const uint8_t *buf, size_t len)
{
    if (c == NULL || (buf == NULL && len > 0)) {
        return SINTER_EINVAL;
    }
    memset(c, 0, sizeof *c);
    if (len > SINTER_TC_CMD_MAX_BYTES) {
        return SINTER_ETOOBIG;
    }
    struct rd r = {buf, len, 0, SINTER_OK};
    c->version = get_u8(&r);
    if (r.err != SINTER_OK) {
        return r.err;
    }
    if (c->version == 0 || c->version > SINTER_TC_CMD_VERSION) {
        return SINTER_EBADVERSION; /* > current: tc/fsm.c stops rather than skip it */
    }
    c->type = get_u8(&r);
    uint16_t flags = get_u16(&r);
    c->now_ms = get_u64(&r);
    get_str(&r, &c->client_id, SINTER_TC_MAX_CLIENT_ID);
    c->seq = get_u64(&r);
    if (r.err != SINTER_OK) {
        return r.err;
    }
    if (c->type == 0 || c->type > SINTER_TC_CMD_TYPE_MAX) {
        return SINTER_EUNKNOWNMSG;
    }
    if (c->version != sinter_tc_cmd_version_of(c->type)) {
        return SINTER_EBADVERSION; /* one spelling: each type under its own version only */
    }
    if (flags != 0) {
        return SINTER_EBADVALUE;
    }
    size_t body = r.off;
    switch (c->type) {
    case SINTER_TC_CMD_BEGIN:
        get_str(&r, &c->u.begin.app_id, SINTER_TC_MAX_APP_ID);
        get_str(&r, &c->u.begin.tx_name, SINTER_TC_MAX_TX_NAME);
        c->u.begin.timeout_ms = get_u64(&r);
        get_blob(&r, &c->u.begin.app_data, SINTER_TC_MAX_APP_DATA);
        break;
    case SINTER_TC_CMD_REGISTER_BRANCH:
        get_xid(&r, &c->u.reg.xid);
        c->u.reg.branch_type = get_u8(&r);
        get_str(&r, &c->u.reg.resource_id, SINTER_TC_MAX_RESOURCE_ID);
        get_blob(&r, &c->u.reg.app_data, SINTER_TC_MAX_APP_DATA);
        get_blob(&r, &c->u.reg.xa_info, SINTER_TC_MAX_XA_INFO);
        break;
    case SINTER_TC_CMD_REPORT_BRANCH:
        get_xid(&r, &c->u.report.xid);
        c->u.report.branch_id = get_u64(&r);
        c->u.report.status = get_u8(&r);
        c->u.report.has = get_u8(&r);
        if (c->u.report.has & SINTER_TC_REPORT_HAS_APP_DATA) {
            get_blob(&r, &c->u.report.app_data, SINTER_TC_MAX_APP_DATA);
        }
        if (c->u.report.has & SINTER_TC_REPORT_HAS_XA_INFO) {
            get_blob(&r, &c->u.report.xa_info, SINTER_TC_MAX_XA_INFO);
        }
        break;
    case SINTER_TC_CMD_DECIDE:
        get_xid(&r, &c->u.decide.xid);
        c->u.decide.target = get_u8(&r);
        break;
    case SINTER_TC_CMD_PHASE2_START:
    case SINTER_TC_CMD_END:
    case SINTER_TC_CMD_REDRIVE:
        get_xid(&r, &c->u.x.xid);
        break;
    case SINTER_TC_CMD_BRANCH_RESULT:
        get_result(&r, &c->u.result);
        break;
    case SINTER_TC_CMD_BRANCH_RESULTS: {
        uint16_t n = get_u16(&r);
        if (r.err == SINTER_OK && (n == 0 || n > SINTER_TC_MAX_RESULTS)) {
            return SINTER_EBADVALUE; /* before reading: n bounds the array */
        }
        c->u.results.n = n;
        for (uint32_t i = 0; i < n && r.err == SINTER_OK; i++) {
            get_result(&r, &c->u.results.r[i]);
        }
        break;
    }
    case SINTER_TC_CMD_RETRY_TIMEOUT:
        get_xid(&r, &c->u.retry_timeout.xid);
        c->u.retry_timeout.max_retry_ms = get_u64(&r);
        break;
    case SINTER_TC_CMD_GC:
        c->u.gc.global_cutoff_ms = get_u64(&r);
        c->u.gc.session_cutoff_ms = get_u64(&r);
        c->u.gc.client_cutoff_ms = get_u64(&r);
        c->u.gc.max_items = get_u32(&r);
        break;
    case SINTER_TC_CMD_RESOLVE:
        get_xid(&r, &c->u.resolve.xid);
        c->u.resolve.target = get_u8(&r);
        break;
    default:
        return SINTER_EUNKNOWNMSG;
    }
    if (r.err != SINTER_OK) {
        return r.err;
    }
    if (r.off != len) {
        return SINTER_EBADLEN;
    }
    int rc = validate(c);
    if (rc != SINTER_OK) {
        return rc;
    }
    c->body_crc = sinter_crc32c(sinter_crc32c(0, &c->type, 1), buf + body, len - body);
    return SINTER_OK;
}

const char *sinter_tc_cmd_name(uint32_t type)
{
    static const char *const names[SINTER_TC_CMD_TYPE_MAX + 1] = {
        [SINTER_TC_CMD_BEGIN] = "BEGIN",
        [SINTER_TC_CMD_REGISTER_BRANCH] = "REGISTER_BRANCH",
        [SINTER_TC_CMD_REPORT_BRANCH] = "REPORT_BRANCH",
        [SINTER_TC_CMD_DECIDE] = "DECIDE",
        [SINTER_TC_CMD_PHASE2_START] = "PHASE2_START",
        [SINTER_TC_CMD_BRANCH_RESULT] = "BRANCH_RESULT",
        [SINTER_TC_CMD_END] = "END",
        [SINTER_TC_CMD_RETRY_TIMEOUT] = "RETRY_TIMEOUT",
        [SINTER_TC_CMD_GC] = "GC",
        [SINTER_TC_CMD_REDRIVE] = "REDRIVE",
        [SINTER_TC_CMD_RESOLVE] = "RESOLVE",
        [SINTER_TC_CMD_BRANCH_RESULTS] = "BRANCH_RESULTS",
    };
    return (type >= 1 && type <= SINTER_TC_CMD_TYPE_MAX) ? names[type] : "UNKNOWN";
}

uint8_t sinter_tc_cmd_version_of(uint32_t type)
{
    if (type >= SINTER_TC_CMD_BEGIN && type <= SINTER_TC_CMD_RESOLVE) {
        return 1;
    }
    return type == SINTER_TC_CMD_BRANCH_RESULTS ? 2 : 0;
}
