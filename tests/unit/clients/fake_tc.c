/* The fake coordinator node of fake_tc.h. */
#include "fake_tc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinter/error.h"
#include "sinter/types.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool is_registered(struct fake_tc *f, uint64_t id)
{
    for (int i = 0; i < f->n_registered; i++) {
        if (f->registered[i] == id) {
            return true;
        }
    }
    return false;
}

static void reply_simple(struct sinter_transport_request *req, uint16_t code, int rc)
{
    struct sinter_proto_msg r;
    memset(&r, 0, sizeof r);
    r.code = sinter_proto_reply_code(code);
    r.rs.result = rc;
    sinter_transport_reply(req, &r);
}

/* Answers a poll with up to max items from the queue. f->mu held. */
static void answer_poll(struct fake_tc *f, struct sinter_transport_request *req, uint32_t max)
{
    struct sinter_proto_msg *r = calloc(1, sizeof *r);
    if (r == NULL) {
        sinter_transport_reply_error(req, SINTER_ENOMEM, NULL);
        return;
    }
    r->code = SINTER_MSG_PHASE2_POLL_RESULT;
    uint32_t n = 0;
    while (n < max && n < (uint32_t)f->n_items) {
        const struct fake_item *it = &f->items[n];
        struct sinter_proto_phase2_item *pi = &r->u.phase2_poll_result.items[n];
        pi->code = it->code;
        pi->work.xid = it->xid;
        pi->work.branch_id = it->branch_id;
        pi->work.branch_type = it->branch_type;
        pi->work.resource_id = sinter_proto_str_c(it->resource);
        pi->work.application_data = (struct sinter_proto_bytes){it->data, it->data_len};
        pi->work.xa_local_xid = it->xa_local_xid;
        pi->work.attempt = it->attempt != 0 ? it->attempt : 1;
        n++;
    }
    r->u.phase2_poll_result.n_items = n;
    sinter_transport_reply(req, r); /* encodes before returning: items may move after */
    memmove(f->items, f->items + n, (size_t)(f->n_items - (int)n) * sizeof f->items[0]);
    f->n_items -= (int)n;
    free(r);
}

static void handle(void *arg, struct sinter_transport_request *req)
{
    struct fake_tc *f = arg;
    const struct sinter_proto_msg *m = sinter_transport_request_msg(req);
    pthread_mutex_lock(&f->mu);
    if (f->n_log < FAKE_LOG_MAX) {
        f->log[f->n_log++] = (struct fake_req){m->code, m->rq.client_id, m->rq.seq};
    }
    switch (m->code) {
    case SINTER_MSG_REGISTER_TM:
    case SINTER_MSG_REGISTER_RM: {
        f->n_register_calls++;
        struct sinter_proto_msg r;
        memset(&r, 0, sizeof r);
        r.code = sinter_proto_reply_code(m->code);
        if (!sinter_proto_str_eq(m->u.reg.credential, f->secret)) {
            r.rs.result = SINTER_EAUTH;
            r.rs.message = sinter_proto_str_c("authentication failed: wrong shared secret");
        } else if (!is_registered(f, m->rq.client_id) && f->n_registered < FAKE_REG_MAX) {
            f->registered[f->n_registered++] = m->rq.client_id;
        }
        sinter_transport_reply(req, &r);
        break;
    }
    case SINTER_MSG_CLUSTER_META: {
        struct sinter_proto_msg *r = calloc(1, sizeof *r);
        r->code = SINTER_MSG_CLUSTER_META_RESULT;
        r->u.cluster_meta_result.node_id = 1;
        r->u.cluster_meta_result.n_members = 1;
        r->u.cluster_meta_result.members[0].id = 1;
        r->u.cluster_meta_result.members[0].addr = sinter_proto_str_c(f->url);
        r->u.cluster_meta_result.members[0].voter = true;
        sinter_transport_reply(req, r);
        free(r);
        break;
    }
    default:
        if (!is_registered(f, m->rq.client_id)) {
            sinter_transport_reply_error(req, SINTER_EAUTH, "client not registered");
            break;
        }
        if (f->redirect && m->code != SINTER_MSG_PHASE2_POLL &&
            m->code != SINTER_MSG_PHASE2_REPORT) {
            struct sinter_proto_msg r;
            memset(&r, 0, sizeof r);
            r.code = SINTER_MSG_ERROR;
            r.rs.result = SINTER_ENOTLEADER;
            r.u.error.leader_id = 2;
            r.u.error.leader_addr = sinter_proto_str_c(f->redirect_url);
            r.u.error.group = f->redirect_group;
            r.u.error.term = 1;
            sinter_transport_reply(req, &r);
            break;
        }
        switch (m->code) {
        case SINTER_MSG_GLOBAL_BEGIN:
            if (f->drop_begins > 0 && f->n_held < FAKE_HELD_MAX) {
                f->drop_begins--;
                f->held[f->n_held++] = req; /* answered at stop: far too late */
            } else {
                struct sinter_proto_msg r;
                memset(&r, 0, sizeof r);
                r.code = SINTER_MSG_GLOBAL_BEGIN_RESULT;
                r.u.global_begin_result.xid = (struct sinter_xid){f->begin_group, f->next_index++};
                sinter_transport_reply(req, &r);
            }
            break;
        case SINTER_MSG_GLOBAL_COMMIT:
        case SINTER_MSG_GLOBAL_ROLLBACK: {
            struct sinter_proto_msg r;
            memset(&r, 0, sizeof r);
            if (f->end_error != 0) {
                /* An ERROR reply: its union holds the error fields, not a status. */
                r.code = SINTER_MSG_ERROR;
                r.rs.result = f->end_error;
                r.u.error.leader_id = 7;
                r.u.error.group = 3;
                sinter_transport_reply(req, &r);
                break;
            }
            r.code = sinter_proto_reply_code(m->code);
            r.u.global_status_result.global_status = f->end_status;
            sinter_transport_reply(req, &r);
            break;
        }
        case SINTER_MSG_GLOBAL_STATUS: {
            if (f->status_error != 0) {
                sinter_transport_reply_error(req, f->status_error, "status refused by the fake");
                break;
            }
            struct sinter_proto_msg r;
            memset(&r, 0, sizeof r);
            r.code = SINTER_MSG_GLOBAL_STATUS_RESULT;
            if (f->status_until > 0 && --f->status_until == 0) {
                f->status_value = f->status_final;
            }
            r.u.global_status_result.global_status = f->status_value;
            sinter_transport_reply(req, &r);
            break;
        }
        case SINTER_MSG_BRANCH_REGISTER: {
            struct sinter_proto_msg r;
            memset(&r, 0, sizeof r);
            r.code = SINTER_MSG_BRANCH_REGISTER_RESULT;
            const struct sinter_proto_branch_register *b = &m->u.branch_register;
            if (f->n_branches < FAKE_BRANCH_MAX && b->application_data.len <= 256 &&
                b->resource_id.len < 64) {
                struct fake_branch *fb = &f->branches[f->n_branches++];
                memset(fb, 0, sizeof *fb);
                fb->xid = b->xid;
                fb->id = f->next_branch++;
                memcpy(fb->resource, b->resource_id.ptr, b->resource_id.len);
                if (b->application_data.len > 0) {
                    memcpy(fb->data, b->application_data.ptr, b->application_data.len);
                }
                fb->data_len = b->application_data.len;
                r.u.branch_register_result.branch_id = fb->id;
            } else {
                r.rs.result = SINTER_EINVAL;
            }
            sinter_transport_reply(req, &r);
            break;
        }
        case SINTER_MSG_BRANCH_REPORT:
            for (int i = 0; i < f->n_branches; i++) {
                if (f->branches[i].id == m->u.branch_report.branch_id) {
                    f->branches[i].phase1 = m->u.branch_report.branch_status;
                }
            }
            reply_simple(req, m->code, SINTER_OK);
            break;
        case SINTER_MSG_PHASE2_POLL:
            f->n_poll_calls++;
            if (f->n_items > 0) {
                answer_poll(f, req, m->u.phase2_poll.max_items);
            } else if (f->n_polls < FAKE_HELD_MAX) {
                uint32_t w = m->u.phase2_poll.wait_ms;
                f->polls[f->n_polls++] = (struct fake_poll){
                    req, mono_ms() + (w > 30000 ? 30000 : w), m->u.phase2_poll.max_items};
            } else {
                sinter_transport_reply_error(req, SINTER_EBUSY, "too many polls");
            }
            break;
        case SINTER_MSG_PHASE2_REPORT:
            if (f->n_reports < FAKE_REPORTS_MAX) {
                const struct sinter_proto_phase2_report *p = &m->u.phase2_report;
                f->reports[f->n_reports++] =
                    (struct fake_report){p->phase, p->outcome.xid, p->outcome.branch_id,
                                         p->outcome.branch_status, m->rq.client_id};
            }
            reply_simple(req, m->code, f->report_result);
            break;
        default:
            sinter_transport_reply_error(req, SINTER_EUNKNOWNMSG, "not served by the fake");
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
}

/* Answers held polls: with work as soon as there is some, empty when their wait ran out. */
static void *timer_main(void *arg)
{
    struct fake_tc *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        if (f->stop) {
            pthread_mutex_unlock(&f->mu);
            return NULL;
        }
        uint64_t now = mono_ms();
        for (int i = 0; i < f->n_polls;) {
            if (f->n_items > 0 || now >= f->polls[i].deadline) {
                answer_poll(f, f->polls[i].req, f->polls[i].max_items);
                f->polls[i] = f->polls[--f->n_polls];
            } else {
                i++;
            }
        }
        pthread_mutex_unlock(&f->mu);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int fake_tc_start(struct fake_tc *f, const char *secret)
{
    memset(f, 0, sizeof *f);
    f->secret = secret;
    f->next_index = 1;
    f->next_branch = 100;
    f->end_status = SINTER_GS_COMMITTING;
    f->status_value = SINTER_GS_BEGIN;
    pthread_mutex_init(&f->mu, NULL);
    struct sinter_transport_server_opts o;
    sinter_transport_server_opts_default(&o);
    o.url = "tcp://127.0.0.1:0";
    o.handler = handle;
    o.handler_arg = f;
    o.n_contexts = 2 * FAKE_HELD_MAX; /* room beside the held requests */
    int rc = sinter_transport_server_open(&f->srv, &o);
    if (rc != SINTER_OK) {
        return rc;
    }
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%u", sinter_transport_server_port(f->srv));
    if (pthread_create(&f->timer, NULL, timer_main, f) != 0) {
        return SINTER_EINTERNAL;
    }
    return SINTER_OK;
}

void fake_tc_stop(struct fake_tc *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->timer, NULL);
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_polls; i++) {
        sinter_transport_reply_error(f->polls[i].req, SINTER_ESHUTDOWN, "fake stopping");
    }
    f->n_polls = 0;
    for (int i = 0; i < f->n_held; i++) {
        sinter_transport_reply_error(f->held[i], SINTER_ESHUTDOWN, "fake stopping");
    }
    f->n_held = 0;
    pthread_mutex_unlock(&f->mu);
    sinter_transport_server_close(f->srv);
    pthread_mutex_destroy(&f->mu);
}

void fake_tc_release(struct fake_tc *f)
{
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_held; i++) {
        struct sinter_proto_msg r;
        memset(&r, 0, sizeof r);
        r.code = SINTER_MSG_GLOBAL_BEGIN_RESULT;
        r.u.global_begin_result.xid = (struct sinter_xid){f->begin_group, f->next_index++};
        sinter_transport_reply(f->held[i], &r);
    }
    f->n_held = 0;
    pthread_mutex_unlock(&f->mu);
}

void fake_tc_forget(struct fake_tc *f)
{
    pthread_mutex_lock(&f->mu);
    f->n_registered = 0;
    pthread_mutex_unlock(&f->mu);
}

void fake_tc_push(struct fake_tc *f, const struct fake_item *it)
{
    pthread_mutex_lock(&f->mu);
    if (f->n_items < FAKE_ITEMS_MAX) {
        f->items[f->n_items++] = *it;
    }
    pthread_mutex_unlock(&f->mu);
}

int fake_tc_count(struct fake_tc *f, uint16_t code)
{
    pthread_mutex_lock(&f->mu);
    int n = 0;
    for (int i = 0; i < f->n_log; i++) {
        n += code == 0 || f->log[i].code == code;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

struct fake_req fake_tc_nth(struct fake_tc *f, uint16_t code, int k)
{
    struct fake_req out = {0, 0, 0};
    int total = fake_tc_count(f, code);
    if (k < 0) {
        k = total + k;
    }
    pthread_mutex_lock(&f->mu);
    int n = 0;
    for (int i = 0; i < f->n_log; i++) {
        if (code == 0 || f->log[i].code == code) {
            if (n++ == k) {
                out = f->log[i];
                break;
            }
        }
    }
    pthread_mutex_unlock(&f->mu);
    return out;
}

int fake_tc_wait_reports(struct fake_tc *f, int n, unsigned ms)
{
    uint64_t end = mono_ms() + ms;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        int have = f->n_reports;
        pthread_mutex_unlock(&f->mu);
        if (have >= n || mono_ms() >= end) {
            return have;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

bool fake_tc_branch(struct fake_tc *f, uint64_t id, struct fake_branch *out)
{
    bool found = false;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_branches; i++) {
        if (f->branches[i].id == id) {
            *out = f->branches[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return found;
}
