/* Sample messages: every code at least once, plus edge cases (empty strings, limits reached,
 * full arrays, the largest xid, application data of exactly 64 KiB). */
#include "proto_samples.h"

#include <string.h>

static uint8_t big_data[64u << 10];
static char long_str[257];
static const uint8_t small_data[] = {0x00, 0x01, 0xfe, 0xff, 'd', 'a', 't', 'a'};

static void fill_static(void)
{
    for (size_t i = 0; i < sizeof big_data; i++) {
        big_data[i] = (uint8_t)(i * 31u + 7u);
    }
    memset(long_str, 'r', 256);
    long_str[256] = 0;
}

static void req(struct sinter_proto_msg *m, uint16_t code, uint64_t rid)
{
    memset(m, 0, sizeof *m);
    m->code = code;
    m->request_id = rid;
    m->rq.client_id = 0x0123456789abcdefull;
    m->rq.seq = rid * 3 + 1;
}

static void rep(struct sinter_proto_msg *m, uint16_t code, uint64_t rid, int result,
                const char *text)
{
    memset(m, 0, sizeof *m);
    m->code = code;
    m->request_id = rid;
    m->rs.result = result;
    m->rs.message = sinter_proto_str_c(text);
}

static struct sinter_proto_str S(const char *s) {
    return sinter_proto_str_c(s);
}

static void
work(struct sinter_proto_branch_work *w, uint64_t i, const uint8_t *data, uint32_t len)
{
    w->xid.group = (uint32_t)(i % 3);
    w->xid.index = 1000 + i;
    w->branch_id = 2000 + i;
    w->branch_type = (i % 2) ? SINTER_BT_XA : SINTER_BT_TCC;
    w->resource_id = S((i % 2) ? "pg-orders" : "tcc-stock");
    w->application_data.ptr = data;
    w->application_data.len = len;
    w->xa_local_xid = (i % 2) ? 777000 + i : 0;
    w->attempt = (uint32_t)(1 + i % 5);
}

#define N_SAMPLES 43

size_t proto_sample_count(void)
{
    return N_SAMPLES;
}

void proto_sample(size_t i, struct sinter_proto_msg *m)
{
    fill_static();
    uint64_t rid = 100 + i;
    switch (i) {
    case 0:
        req(m, SINTER_MSG_GLOBAL_BEGIN, rid);
        m->u.global_begin.application_id = S("order-service");
        m->u.global_begin.transaction_name = S("place-order");
        m->u.global_begin.timeout_ms = 60000;
        break;
    case 1:
        req(m, SINTER_MSG_GLOBAL_BEGIN, rid);
        m->u.global_begin.application_id = S(long_str); /* exactly max_str */
        break;
    case 2:
        rep(m, SINTER_MSG_GLOBAL_BEGIN_RESULT, rid, SINTER_OK, "");
        m->u.global_begin_result.xid = (struct sinter_xid){UINT32_MAX, UINT64_MAX};
        break;
    case 3:
        rep(m, SINTER_MSG_GLOBAL_BEGIN_RESULT, rid, SINTER_EBUSY, "too many transactions");
        break;
    case 4:
        req(m, SINTER_MSG_BRANCH_COMMIT, rid);
        work(&m->u.branch_work, 1, small_data, sizeof small_data);
        break;
    case 5:
        rep(m, SINTER_MSG_BRANCH_COMMIT_RESULT, rid, SINTER_OK, "confirmed");
        m->u.branch_outcome.xid = (struct sinter_xid){1, 42};
        m->u.branch_outcome.branch_id = 43;
        m->u.branch_outcome.branch_status = SINTER_BS_PHASE2_COMMITTED;
        break;
    case 6:
        req(m, SINTER_MSG_BRANCH_ROLLBACK, rid);
        work(&m->u.branch_work, 2, big_data, sizeof big_data); /* exactly max_app_data */
        break;
    case 7:
        rep(m, SINTER_MSG_BRANCH_ROLLBACK_RESULT, rid, SINTER_EDB, "deadlock detected");
        m->u.branch_outcome.xid = (struct sinter_xid){0, 1};
        m->u.branch_outcome.branch_id = 2;
        m->u.branch_outcome.branch_status = SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
        break;
    case 8:
        req(m, SINTER_MSG_GLOBAL_COMMIT, rid);
        m->u.global_end.xid = (struct sinter_xid){2, 99};
        break;
    case 9:
        req(m, SINTER_MSG_GLOBAL_COMMIT, rid);
        m->u.global_end.xid = (struct sinter_xid){2, 100};
        m->u.global_end.flags = SINTER_PROTO_END_WAIT_PHASE2;
        m->u.global_end.wait_ms = 30000;
        break;
    case 10:
        rep(m, SINTER_MSG_GLOBAL_COMMIT_RESULT, rid, SINTER_OK, "");
        m->u.global_status_result.global_status = SINTER_GS_COMMITTED;
        break;
    case 11:
        req(m, SINTER_MSG_GLOBAL_ROLLBACK, rid);
        m->u.global_end.xid = (struct sinter_xid){0, 5};
        m->u.global_end.flags = SINTER_PROTO_END_WAIT_PHASE2;
        break;
    case 12:
        rep(m, SINTER_MSG_GLOBAL_ROLLBACK_RESULT, rid, SINTER_ESTATE, "already committing");
        m->u.global_status_result.global_status = SINTER_GS_COMMITTING;
        break;
    case 13:
        req(m, SINTER_MSG_BRANCH_REGISTER, rid);
        m->u.branch_register.xid = (struct sinter_xid){3, 7};
        m->u.branch_register.branch_type = SINTER_BT_TCC;
        m->u.branch_register.resource_id = S("tcc-stock");
        m->u.branch_register.application_data.ptr = small_data;
        m->u.branch_register.application_data.len = sizeof small_data;
        break;
    case 14:
        req(m, SINTER_MSG_BRANCH_REGISTER, rid);
        m->u.branch_register.xid = (struct sinter_xid){3, 8};
        m->u.branch_register.branch_type = SINTER_BT_XA;
        m->u.branch_register.resource_id = S("pg-orders");
        m->u.branch_register.xa_local_xid = 0xfedcba9876543210ull;
        break;
    case 15:
        rep(m, SINTER_MSG_BRANCH_REGISTER_RESULT, rid, SINTER_OK, "");
        m->u.branch_register_result.branch_id = 123456789;
        break;
    case 16:
        req(m, SINTER_MSG_BRANCH_REPORT, rid);
        m->u.branch_report.xid = (struct sinter_xid){3, 7};
        m->u.branch_report.branch_id = 9;
        m->u.branch_report.branch_type = SINTER_BT_XA;
        m->u.branch_report.branch_status = SINTER_BS_PHASE1_DONE;
        m->u.branch_report.resource_id = S("pg-orders");
        m->u.branch_report.xa_local_xid = 31337;
        break;
    case 17:
        rep(m, SINTER_MSG_BRANCH_REPORT_RESULT, rid, SINTER_OK, "ok");
        break;
    case 18:
        req(m, SINTER_MSG_GLOBAL_STATUS, rid);
        m->u.global_status.xid = (struct sinter_xid){4, 4};
        break;
    case 19:
        rep(m, SINTER_MSG_GLOBAL_STATUS_RESULT, rid, SINTER_OK, "");
        m->u.global_status_result.global_status = SINTER_GS_FINISHED;
        break;
    case 20:
        req(m, SINTER_MSG_GLOBAL_REPORT, rid);
        m->u.global_report.xid = (struct sinter_xid){4, 5};
        m->u.global_report.global_status = SINTER_GS_ROLLBACKED;
        break;
    case 21:
        rep(m, SINTER_MSG_GLOBAL_REPORT_RESULT, rid, SINTER_OK, "");
        m->u.global_status_result.global_status = SINTER_GS_ROLLBACKED;
        break;
    case 22:
        req(m, SINTER_MSG_REGISTER_TM, rid);
        m->u.reg.client_version = S("sinter-tm 0.1.0");
        m->u.reg.application_id = S("order-service");
        m->u.reg.credential = S("s3cret");
        break;
    case 23:
        rep(m, SINTER_MSG_REGISTER_TM_RESULT, rid, SINTER_EAUTH, "bad secret");
        break;
    case 24:
        req(m, SINTER_MSG_REGISTER_RM, rid);
        m->u.reg.client_version = S("sinter-rm 0.1.0");
        m->u.reg.application_id = S("stock-service");
        m->u.reg.n_resources = 2;
        m->u.reg.resource_ids[0] = S("tcc-stock");
        m->u.reg.resource_ids[1] = S("pg-orders");
        break;
    case 25:
        req(m, SINTER_MSG_REGISTER_RM, rid);
        m->u.reg.application_id = S("many");
        m->u.reg.n_resources = 64; /* exactly max_resources */
        for (uint32_t k = 0; k < 64; k++) {
            m->u.reg.resource_ids[k] = S(long_str + k * 4);
        }
        break;
    case 26:
        rep(m, SINTER_MSG_REGISTER_RM_RESULT, rid, SINTER_OK, "");
        m->u.reg_result.server_version = S("sinter-tc 0.1.0");
        break;
    case 27:
        req(m, SINTER_MSG_HEARTBEAT, rid);
        break;
    case 28:
        rep(m, SINTER_MSG_HEARTBEAT_RESULT, rid, SINTER_OK, "");
        break;
    case 29:
        rep(m, SINTER_MSG_ERROR, rid, SINTER_ENOTLEADER, "not leader, try node 2");
        m->u.error.leader_id = 2;
        m->u.error.leader_addr = S("tcp://10.0.0.2:8091");
        m->u.error.group = 1;
        m->u.error.term = 17;
        break;
    case 30:
        rep(m, SINTER_MSG_ERROR, 0, SINTER_ECRC, "checksum mismatch");
        break;
    case 31:
        req(m, SINTER_MSG_PHASE2_POLL, rid);
        m->u.phase2_poll.n_resources = 2;
        m->u.phase2_poll.resource_ids[0] = S("tcc-stock");
        m->u.phase2_poll.resource_ids[1] = S("pg-orders");
        m->u.phase2_poll.max_items = 32;
        m->u.phase2_poll.wait_ms = 20000;
        break;
    case 32:
        rep(m, SINTER_MSG_PHASE2_POLL_RESULT, rid, SINTER_OK, "");
        m->u.phase2_poll_result.n_items = 3;
        for (uint32_t k = 0; k < 3; k++) {
            m->u.phase2_poll_result.items[k].code =
                k == 1 ? SINTER_MSG_BRANCH_ROLLBACK : SINTER_MSG_BRANCH_COMMIT;
            work(&m->u.phase2_poll_result.items[k].work, k, small_data, (uint32_t)k * 3);
        }
        break;
    case 33:
        rep(m, SINTER_MSG_PHASE2_POLL_RESULT, rid, SINTER_OK, "");
        m->u.phase2_poll_result.n_items = 64; /* exactly max_batch */
        for (uint32_t k = 0; k < 64; k++) {
            m->u.phase2_poll_result.items[k].code = SINTER_MSG_BRANCH_COMMIT;
            work(&m->u.phase2_poll_result.items[k].work, k, small_data, sizeof small_data);
        }
        break;
    case 34:
        rep(m, SINTER_MSG_PHASE2_POLL_RESULT, rid, SINTER_OK, "");
        break;
    case 35:
        req(m, SINTER_MSG_PHASE2_REPORT, rid);
        m->u.phase2_report.phase = SINTER_MSG_BRANCH_ROLLBACK;
        m->u.phase2_report.outcome.xid = (struct sinter_xid){5, 6};
        m->u.phase2_report.outcome.branch_id = 7;
        m->u.phase2_report.outcome.branch_status = SINTER_BS_PHASE2_ROLLBACKED;
        m->u.phase2_report.attempt = 3;
        break;
    case 36:
        rep(m, SINTER_MSG_PHASE2_REPORT_RESULT, rid, SINTER_OK, "");
        break;
    case 37:
        req(m, SINTER_MSG_CLUSTER_META, rid);
        break;
    case 38:
        rep(m, SINTER_MSG_CLUSTER_META_RESULT, rid, SINTER_OK, "");
        m->u.cluster_meta_result.node_id = 1;
        m->u.cluster_meta_result.n_members = 3;
        for (uint32_t k = 0; k < 3; k++) {
            static const char *addrs[] = {"tcp://10.0.0.1:8091", "tcp://10.0.0.2:8091",
                                          "tcp://10.0.0.3:8091"};
            m->u.cluster_meta_result.members[k].id = k + 1;
            m->u.cluster_meta_result.members[k].addr = S(addrs[k]);
            m->u.cluster_meta_result.members[k].voter = k != 2;
        }
        m->u.cluster_meta_result.n_groups = 4;
        for (uint32_t k = 0; k < 4; k++) {
            m->u.cluster_meta_result.groups[k].group = k;
            m->u.cluster_meta_result.groups[k].leader_id = k % 3;
            m->u.cluster_meta_result.groups[k].term = 10 + k;
        }
        break;
    case 39:
        req(m, SINTER_MSG_PHASE2_REPORT_BATCH, rid);
        m->u.phase2_report_batch.n_reports = 3;
        for (uint32_t k = 0; k < 3; k++) {
            struct sinter_proto_phase2_report *r = &m->u.phase2_report_batch.reports[k];
            r->phase = k == 1 ? SINTER_MSG_BRANCH_ROLLBACK : SINTER_MSG_BRANCH_COMMIT;
            r->outcome.xid = (struct sinter_xid){k, 100 + k};
            r->outcome.branch_id = 7 + k;
            r->outcome.branch_status = k == 1   ? SINTER_BS_PHASE2_ROLLBACKED
                                       : k == 2 ? SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE
                                                : SINTER_BS_PHASE2_COMMITTED;
            r->attempt = k; /* 0: not tied to a delivery */
        }
        break;
    case 40:
        req(m, SINTER_MSG_PHASE2_REPORT_BATCH, rid);
        m->u.phase2_report_batch.n_reports = SINTER_PROTO_MAX_REPORTS; /* exactly the cap */
        for (uint32_t k = 0; k < SINTER_PROTO_MAX_REPORTS; k++) {
            struct sinter_proto_phase2_report *r = &m->u.phase2_report_batch.reports[k];
            r->phase = SINTER_MSG_BRANCH_COMMIT;
            r->outcome.xid = (struct sinter_xid){UINT32_MAX, UINT64_MAX - k};
            r->outcome.branch_id = UINT64_MAX - k;
            r->outcome.branch_status = SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE;
            r->attempt = UINT32_MAX - k;
        }
        break;
    case 41:
        rep(m, SINTER_MSG_PHASE2_REPORT_BATCH_RESULT, rid, SINTER_OK, "");
        m->u.phase2_report_batch_result.n_results = 3;
        m->u.phase2_report_batch_result.results[0] = SINTER_OK;
        m->u.phase2_report_batch_result.results[1] = SINTER_ENOTLEADER;
        m->u.phase2_report_batch_result.results[2] = SINTER_ETIMEOUT;
        break;
    default:
        rep(m, SINTER_MSG_CLUSTER_META_RESULT, rid, SINTER_OK, "");
        m->u.cluster_meta_result.node_id = 5;
        m->u.cluster_meta_result.n_groups = 256; /* exactly the cap */
        for (uint32_t k = 0; k < 256; k++) {
            m->u.cluster_meta_result.groups[k].group = k;
            m->u.cluster_meta_result.groups[k].leader_id = 1 + k % 5;
            m->u.cluster_meta_result.groups[k].term = UINT64_MAX - k;
        }
        break;
    }
}
