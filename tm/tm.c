/*
 * libsinter-tm: the transaction manager client (sinter/tm.h) on the shared client core
 * (sinter/client.h), which does the routing, registration and idempotent retries.
 */
#include "sinter/tm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinter/client.h"
#include "sinter/proto.h"

/* The phase-2 wait polls the status with a growing pause: phase 2 of a healthy global takes a
 * few milliseconds (one delivery round trip and one replicated result per branch), so a fixed
 * 100 ms pause made every waiting commit last at least 100 ms; doubling from 2 ms finds a quick
 * end within a few reads and falls back to one read per 100 ms for a slow one. */
#define STATUS_POLL_FIRST_MS 2u
#define STATUS_POLL_MAX_MS   100u

struct sinter_tm {
    struct sinter_client *cl;
    char *app_id;
};

void sinter_tm_opts_default(struct sinter_tm_opts *o)
{
    memset(o, 0, sizeof *o);
}

int sinter_tm_open(struct sinter_tm **out, const struct sinter_tm_opts *opts)
{
    if (out == NULL || opts == NULL) {
        return SINTER_EINVAL;
    }
    struct sinter_tm *tm = calloc(1, sizeof *tm);
    if (tm == NULL) {
        return SINTER_ENOMEM;
    }
    tm->app_id = strdup(opts->application_id != NULL ? opts->application_id : "unknown");
    if (tm->app_id == NULL) {
        free(tm);
        return SINTER_ENOMEM;
    }
    struct sinter_client_opts co;
    sinter_client_opts_default(&co);
    co.urls = opts->addresses;
    co.n_urls = opts->n_addresses;
    co.secret = opts->secret;
    co.application_id = tm->app_id;
    co.client_version = "sinter-tm/0.1";
    co.deadline_ms = opts->deadline_ms;
    co.attempt_timeout_ms = opts->attempt_timeout_ms;
    int rc = sinter_client_open(&tm->cl, &co);
    if (rc != SINTER_OK) {
        free(tm->app_id);
        free(tm);
        return rc;
    }
    *out = tm;
    return SINTER_OK;
}

void sinter_tm_close(struct sinter_tm *tm)
{
    if (tm != NULL) {
        sinter_client_close(tm->cl);
        free(tm->app_id);
        free(tm);
    }
}

uint64_t sinter_tm_client_id(const struct sinter_tm *tm)
{
    return sinter_client_id(tm->cl);
}

const char *sinter_tm_errmsg(void)
{
    return sinter_client_errmsg();
}

static int parse_xid(const char *text, struct sinter_xid *x)
{
    if (text == NULL) {
        return SINTER_EINVAL;
    }
    return sinter_xid_parse(x, text, strnlen(text, SINTER_XID_STRLEN));
}

int sinter_tm_begin(struct sinter_tm *tm, const char *name, uint32_t timeout_ms,
                    char xid[SINTER_XID_STRLEN])
{
    if (tm == NULL || xid == NULL || (name != NULL && strlen(name) > 256)) {
        return SINTER_EINVAL;
    }
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_BEGIN;
    m.u.global_begin.application_id = sinter_proto_str_c(tm->app_id);
    m.u.global_begin.transaction_name = sinter_proto_str_c(name);
    m.u.global_begin.timeout_ms = timeout_ms;
    struct sinter_transport_reply_msg *r = NULL;
    /* The coordinator picks the begin's raft group from (client id, seq); the core learns it
     * from the redirect and keeps the seq for every retry, so retries reach the same group. */
    int rc = sinter_client_call(tm->cl, &m, SINTER_CLIENT_ANY_GROUP, 0, &r);
    if (rc != SINTER_OK) {
        return rc;
    }
    rc = sinter_client_result(r);
    if (rc == SINTER_OK) {
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        if (rm->code != SINTER_MSG_GLOBAL_BEGIN_RESULT ||
            rm->u.global_begin_result.xid.index == 0) {
            rc = SINTER_EINTERNAL;
        } else {
            sinter_xid_format(&rm->u.global_begin_result.xid, xid);
        }
    }
    sinter_transport_reply_free(r);
    return rc;
}

static int read_status(struct sinter_tm *tm, const struct sinter_xid *x, uint32_t *status)
{
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = SINTER_MSG_GLOBAL_STATUS;
    m.u.global_status.xid = *x;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = sinter_client_call(tm->cl, &m, x->group, 0, &r);
    if (rc != SINTER_OK) {
        return rc;
    }
    rc = sinter_client_result(r);
    if (rc == SINTER_OK) {
        *status = sinter_transport_reply_get(r)->u.global_status_result.global_status;
    }
    sinter_transport_reply_free(r);
    return rc;
}

/* Polls the status until it is final or wait_ms passed (phase 2 runs at the coordinator).
 * after_decision: the caller's commit / rollback was answered OK, so the outcome is already
 * guaranteed (durable on a majority); a status read that fails then ends the wait with SINTER_OK
 * and the last status read, never with an error that would read as "outcome unknown". */
static int wait_final(struct sinter_tm *tm, const struct sinter_xid *x, uint32_t wait_ms,
                      bool after_decision, uint32_t *status)
{
    uint64_t end = sinter_client_now_ms() + wait_ms;
    uint32_t pause = STATUS_POLL_FIRST_MS;
    for (;;) {
        if (sinter_global_status_is_final(*status)) {
            return SINTER_OK;
        }
        uint64_t now = sinter_client_now_ms();
        if (now >= end) {
            return SINTER_OK; /* the wait ran out: not an error, *status says where it is */
        }
        uint32_t d = end - now < pause ? (uint32_t)(end - now) : pause;
        pause = pause * 2 < STATUS_POLL_MAX_MS ? pause * 2 : STATUS_POLL_MAX_MS;
        struct timespec ts = {0, (long)d * 1000000L};
        nanosleep(&ts, NULL);
        uint32_t st = 0;
        int rc = read_status(tm, x, &st);
        if (rc != SINTER_OK) {
            return after_decision ? SINTER_OK : rc;
        }
        *status = st;
    }
}

static int end_global(struct sinter_tm *tm, bool commit, const char *xid, uint32_t wait_ms,
                      uint32_t *status)
{
    struct sinter_xid x;
    uint32_t st = 0;
    if (tm == NULL || parse_xid(xid, &x) != SINTER_OK) {
        return SINTER_EINVAL;
    }
    struct sinter_proto_msg m;
    memset(&m, 0, sizeof m);
    m.code = commit ? SINTER_MSG_GLOBAL_COMMIT : SINTER_MSG_GLOBAL_ROLLBACK;
    m.u.global_end.xid = x;
    /* The phase-2 wait is done here by polling the status, not with the server's WAIT_PHASE2
     * flag: a reply held for up to wait_ms would outlast the per-attempt timeout and turn into
     * retries, and the poll works with every coordinator version. */
    struct sinter_transport_reply_msg *r = NULL;
    int rc = sinter_client_call(tm->cl, &m, x.group, 0, &r);
    if (rc != SINTER_OK) {
        return rc;
    }
    rc = sinter_client_result(r);
    /* Only a GlobalCommitResult / GlobalRollbackResult carries a status (also with ESTATE); an
     * ERROR reply's union holds the error fields: the status is then unknown (0). */
    const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
    if (rm->code == sinter_proto_reply_code(m.code)) {
        st = rm->u.global_status_result.global_status;
    }
    sinter_transport_reply_free(r);
    if (rc == SINTER_OK && wait_ms > 0) {
        rc = wait_final(tm, &x, wait_ms, true, &st);
    }
    if (status != NULL) {
        *status = st;
    }
    return rc;
}

int sinter_tm_commit(struct sinter_tm *tm, const char *xid, uint32_t wait_phase2_ms,
                     uint32_t *status)
{
    return end_global(tm, true, xid, wait_phase2_ms, status);
}

int sinter_tm_rollback(struct sinter_tm *tm, const char *xid, uint32_t wait_phase2_ms,
                       uint32_t *status)
{
    return end_global(tm, false, xid, wait_phase2_ms, status);
}

int sinter_tm_status(struct sinter_tm *tm, const char *xid, uint32_t wait_ms, uint32_t *status)
{
    struct sinter_xid x;
    if (tm == NULL || status == NULL || parse_xid(xid, &x) != SINTER_OK) {
        return SINTER_EINVAL;
    }
    uint32_t st = 0;
    int rc = read_status(tm, &x, &st);
    if (rc == SINTER_OK && wait_ms > 0) {
        rc = wait_final(tm, &x, wait_ms, false, &st);
    }
    if (rc == SINTER_OK) {
        *status = st;
    }
    return rc;
}
