/* A raw wire-protocol client of a test cluster (see tcproto.h). */
#include "tcproto.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sinter/error.h"

#include "testproc.h"

/* A client id no other client of the cluster has: the coordinator keys its deduplication table
 * by (client id, seq), so two test clients must never share one. */
static uint64_t fresh_client_id(void)
{
    static uint64_t counter;
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
        id = ((uint64_t)time(NULL) << 32) ^ (uint64_t)getpid() ^ (++counter << 16);
    }
    return id | 1u;
}

int sinter_raw_open(struct sinter_raw *p, struct sinter_tcc *c, const char *secret, const char *app,
                    const char *ca_file)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    p->client = fresh_client_id();
    p->guess = 1;
    p->reg_code = SINTER_MSG_REGISTER_TM;
    p->secret = secret;
    p->app = app;
    p->call_ms = 2000;
    p->wait_ms = 30000;
    for (int i = 1; i <= c->n; i++) {
        struct sinter_transport_client_opts co;
        sinter_transport_client_opts_default(&co);
        co.url = c->node[i].client_url;
        if (ca_file != NULL && strncmp(co.url, "tls+", 4) == 0) {
            co.tls_enable = true;
            co.tls.ca_file = ca_file;
            co.tls.server_name = "localhost";
        }
        int rc = sinter_transport_client_open(&p->cl[i], &co);
        if (rc != SINTER_OK) {
            fprintf(stderr, "tcproto: client of %s: %s\n", co.url, sinter_errname(rc));
            sinter_raw_close(p);
            return rc;
        }
    }
    return SINTER_OK;
}

void sinter_raw_close(struct sinter_raw *p)
{
    for (int i = 1; i <= SINTER_TCC_MAX_NODES; i++) {
        sinter_transport_client_close(p->cl[i]);
        p->cl[i] = NULL;
    }
}

void sinter_raw_req(struct sinter_raw *p, struct sinter_proto_msg *m, uint16_t code, uint64_t seq)
{
    memset(m, 0, sizeof *m);
    m->code = code;
    m->rq.client_id = p->client;
    m->rq.seq = seq;
}

void sinter_raw_register_req(const struct sinter_raw *p, struct sinter_proto_msg *m)
{
    memset(m, 0, sizeof *m);
    m->code = p->reg_code;
    m->rq.client_id = p->client;
    m->u.reg.client_version = sinter_proto_str_c("test/1");
    m->u.reg.application_id = sinter_proto_str_c(p->app);
    m->u.reg.credential = sinter_proto_str_c(p->secret);
    if (p->reg_code == SINTER_MSG_REGISTER_RM) {
        for (uint32_t k = 0; k < p->n_resources && k < SINTER_PROTO_MAX_RESOURCES; k++) {
            m->u.reg.resource_ids[m->u.reg.n_resources++] = sinter_proto_str_c(p->resources[k]);
        }
    }
}

int sinter_raw_call(struct sinter_raw *p, int i, const struct sinter_proto_msg *m,
                    struct sinter_transport_reply_msg **out)
{
    *out = NULL;
    return sinter_transport_call(p->cl[i], m, p->call_ms, out);
}

int sinter_raw_result(struct sinter_raw *p, int i, const struct sinter_proto_msg *m)
{
    struct sinter_transport_reply_msg *r = NULL;
    int rc = sinter_raw_call(p, i, m, &r);
    if (rc == SINTER_OK) {
        rc = sinter_transport_reply_get(r)->rs.result;
        sinter_transport_reply_free(r);
    }
    return rc;
}

/* A result code the caller cannot confuse with an answer: the transport's failures. */
static bool transport_failure(int rc)
{
    return rc == SINTER_ETIMEOUT || rc == SINTER_ETRANSPORT || rc == SINTER_ESHUTDOWN;
}

int sinter_raw_register(struct sinter_raw *p, int i, uint32_t wait_ms)
{
    struct sinter_proto_msg m;
    sinter_raw_register_req(p, &m);
    uint64_t end = sinter_test_now_ms() + wait_ms;
    for (;;) {
        struct sinter_transport_reply_msg *r = NULL;
        int rc = sinter_raw_call(p, i, &m, &r);
        if (rc == SINTER_OK) {
            rc = sinter_transport_reply_get(r)->rs.result;
            sinter_transport_reply_free(r);
            return rc;
        }
        if (!transport_failure(rc) || sinter_test_now_ms() >= end) {
            return rc;
        }
        sinter_test_sleep_ms(100);
    }
}

int sinter_raw_leader(struct sinter_raw *p, const struct sinter_proto_msg *m,
                      struct sinter_transport_reply_msg **out, int *served_by)
{
    const int n = p->c->n;
    uint64_t end = sinter_test_now_ms() + p->wait_ms;
    int i = p->guess >= 1 && p->guess <= n ? p->guess : 1;
    *out = NULL;
    while (sinter_test_now_ms() < end) {
        struct sinter_transport_reply_msg *r = NULL;
        if (p->c->node[i].pid <= 0 || sinter_raw_call(p, i, m, &r) != SINTER_OK) {
            i = i % n + 1; /* down or not answering: the next one */
            sinter_test_sleep_ms(50);
            continue;
        }
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        if (rm->code == SINTER_MSG_ERROR && rm->rs.result == SINTER_ENOTLEADER) {
            struct sinter_proto_str a = rm->u.error.leader_addr;
            int next = sinter_tcc_node_by_url(p->c, a.ptr, a.len);
            sinter_transport_reply_free(r);
            if (next != 0 && next != i && p->c->node[next].pid > 0) {
                i = next; /* redirected: go straight there */
            } else {
                i = i % n + 1; /* election in progress: look around */
                sinter_test_sleep_ms(100);
            }
            continue;
        }
        if (rm->code == SINTER_MSG_ERROR && rm->rs.result == SINTER_EAUTH) {
            /* The node restarted and forgot the session (registration is per node, in memory,
             * as in Seata): register again, then repeat the request. */
            sinter_transport_reply_free(r);
            int rc = sinter_raw_register(p, i, 0);
            if (rc != SINTER_OK && !transport_failure(rc)) {
                fprintf(stderr, "tcproto: registering again with node %d: %s\n", i,
                        sinter_errname(rc));
                return rc;
            }
            continue;
        }
        if (rm->code == SINTER_MSG_ERROR &&
            (rm->rs.result == SINTER_ETIMEOUT || rm->rs.result == SINTER_ESHUTDOWN)) {
            sinter_transport_reply_free(r); /* outcome unknown: retry with the same seq */
            sinter_test_sleep_ms(100);
            continue;
        }
        p->guess = i;
        if (served_by != NULL) {
            *served_by = i;
        }
        *out = r;
        return SINTER_OK;
    }
    fprintf(stderr, "tcproto: no leader answered %s within %" PRIu32 " ms\n",
            sinter_proto_code_name(m->code), p->wait_ms);
    return SINTER_ETIMEOUT;
}

/* One node's ClusterMeta: checks it against the cluster and folds its leaders into leaders[].
 * Returns 1 when consistent with the others so far, 0 when not (yet), -1 on a contradiction. */
static int meta_of(struct sinter_raw *p, int i, uint64_t *leaders)
{
    const struct sinter_tcc *c = p->c;
    struct sinter_proto_msg m;
    sinter_raw_req(p, &m, SINTER_MSG_CLUSTER_META, 0);
    struct sinter_transport_reply_msg *r = NULL;
    if (sinter_raw_call(p, i, &m, &r) != SINTER_OK) {
        return 0;
    }
    const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
    const struct sinter_proto_cluster_meta_result *cm = &rm->u.cluster_meta_result;
    int ok = 1;
    if (rm->code != SINTER_MSG_CLUSTER_META_RESULT || cm->node_id != c->node[i].id ||
        cm->n_members != (uint32_t)c->n || cm->n_groups != c->groups) {
        fprintf(stderr,
                "tcproto: node %d's ClusterMeta: code %u node %" PRIu64 " members %" PRIu32
                " groups %" PRIu32 "\n",
                i, rm->code, cm->node_id, cm->n_members, cm->n_groups);
        ok = -1;
    }
    for (uint32_t k = 0; ok == 1 && k < cm->n_members; k++) {
        int j = sinter_tcc_node_by_url(c, cm->members[k].addr.ptr, cm->members[k].addr.len);
        if (j == 0 || cm->members[k].id != c->node[j].id) {
            fprintf(stderr, "tcproto: node %d's ClusterMeta: member %" PRIu64 " at %.*s\n", i,
                    cm->members[k].id, (int)cm->members[k].addr.len, cm->members[k].addr.ptr);
            ok = -1;
        }
    }
    for (uint32_t g = 0; ok == 1 && g < c->groups; g++) {
        uint64_t l = cm->groups[g].leader_id;
        bool live = false;
        for (int j = 1; j <= c->n; j++) {
            live = live || (c->node[j].id == l && c->node[j].pid > 0);
        }
        if (!live || (leaders[g] != 0 && leaders[g] != l)) {
            ok = 0; /* no leader yet, or nodes still disagree: an election is settling */
        }
        leaders[g] = l;
    }
    sinter_transport_reply_free(r);
    return ok;
}

int sinter_raw_leader_of(struct sinter_raw *p, uint32_t group)
{
    const struct sinter_tcc *c = p->c;
    uint64_t end = sinter_test_now_ms() + p->wait_ms;
    while (sinter_test_now_ms() < end) {
        uint64_t leaders[SINTER_PROTO_MAX_GROUPS] = {0};
        int ok = 1;
        for (int i = 1; i <= c->n && ok == 1; i++) {
            if (c->node[i].pid > 0) {
                ok = meta_of(p, i, leaders);
            }
        }
        if (ok < 0) {
            return 0;
        }
        if (ok == 1 && group < c->groups) {
            for (int j = 1; j <= c->n; j++) {
                if (c->node[j].id == leaders[group]) {
                    return j;
                }
            }
        }
        sinter_test_sleep_ms(100);
    }
    fprintf(stderr, "tcproto: no agreed leader of every group within %" PRIu32 " ms\n", p->wait_ms);
    return 0;
}

/* Sends m through the leader; returns the answer's result when it is of type `want` (then *out
 * holds it, caller frees), else an error with *out NULL. */
static int leader_call(struct sinter_raw *p, const struct sinter_proto_msg *m, uint16_t want,
                       struct sinter_transport_reply_msg **out, int *served_by)
{
    int rc = sinter_raw_leader(p, m, out, served_by);
    if (rc != SINTER_OK) {
        return rc;
    }
    const struct sinter_proto_msg *rm = sinter_transport_reply_get(*out);
    if (rm->code != want) {
        fprintf(stderr, "tcproto: %s answered with %s (%s), not %s\n",
                sinter_proto_code_name(m->code), sinter_proto_code_name(rm->code),
                sinter_errname(rm->rs.result), sinter_proto_code_name(want));
        sinter_transport_reply_free(*out);
        *out = NULL;
        return SINTER_EUNKNOWNMSG;
    }
    return rm->rs.result;
}

static uint64_t seq_or_next(struct sinter_raw *p, uint64_t seq)
{
    return seq != 0 ? seq : ++p->seq;
}

int sinter_raw_begin(struct sinter_raw *p, uint64_t seq, uint32_t timeout_ms,
                     struct sinter_xid *xid, int *served_by)
{
    struct sinter_proto_msg m;
    sinter_raw_req(p, &m, SINTER_MSG_GLOBAL_BEGIN, seq_or_next(p, seq));
    m.u.global_begin.application_id = sinter_proto_str_c(p->app);
    m.u.global_begin.transaction_name = sinter_proto_str_c("transfer");
    m.u.global_begin.timeout_ms = timeout_ms;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = leader_call(p, &m, SINTER_MSG_GLOBAL_BEGIN_RESULT, &r, served_by);
    if (r != NULL) {
        *xid = sinter_transport_reply_get(r)->u.global_begin_result.xid;
        sinter_transport_reply_free(r);
    }
    return rc;
}

int sinter_raw_branch_register(struct sinter_raw *p, struct sinter_xid x, const char *res,
                               uint64_t seq, uint64_t *branch)
{
    struct sinter_proto_msg m;
    sinter_raw_req(p, &m, SINTER_MSG_BRANCH_REGISTER, seq_or_next(p, seq));
    m.u.branch_register.xid = x;
    m.u.branch_register.branch_type = SINTER_BT_TCC;
    m.u.branch_register.resource_id = sinter_proto_str_c(res);
    m.u.branch_register.application_data = (struct sinter_proto_bytes){(const uint8_t *)"{}", 2};
    struct sinter_transport_reply_msg *r = NULL;
    int rc = leader_call(p, &m, SINTER_MSG_BRANCH_REGISTER_RESULT, &r, NULL);
    if (r != NULL) {
        *branch = sinter_transport_reply_get(r)->u.branch_register_result.branch_id;
        sinter_transport_reply_free(r);
    }
    return rc;
}

int sinter_raw_branch_report(struct sinter_raw *p, struct sinter_xid x, uint64_t branch,
                             const char *res, uint32_t status, uint64_t seq)
{
    struct sinter_proto_msg m;
    sinter_raw_req(p, &m, SINTER_MSG_BRANCH_REPORT, seq_or_next(p, seq));
    m.u.branch_report.xid = x;
    m.u.branch_report.branch_id = branch;
    m.u.branch_report.branch_type = SINTER_BT_TCC;
    m.u.branch_report.branch_status = status;
    m.u.branch_report.resource_id = sinter_proto_str_c(res);
    struct sinter_transport_reply_msg *r = NULL;
    int rc = leader_call(p, &m, SINTER_MSG_BRANCH_REPORT_RESULT, &r, NULL);
    sinter_transport_reply_free(r);
    return rc;
}

int sinter_raw_end(struct sinter_raw *p, struct sinter_xid x, bool commit, uint32_t flags,
                   uint32_t wait_ms, uint64_t seq, uint32_t *status)
{
    struct sinter_proto_msg m;
    sinter_raw_req(p, &m, commit ? SINTER_MSG_GLOBAL_COMMIT : SINTER_MSG_GLOBAL_ROLLBACK,
                   seq_or_next(p, seq));
    m.u.global_end.xid = x;
    m.u.global_end.flags = flags;
    m.u.global_end.wait_ms = wait_ms;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = leader_call(
        p, &m, commit ? SINTER_MSG_GLOBAL_COMMIT_RESULT : SINTER_MSG_GLOBAL_ROLLBACK_RESULT, &r,
        NULL);
    if (r != NULL) {
        *status = sinter_transport_reply_get(r)->u.global_status_result.global_status;
        sinter_transport_reply_free(r);
    }
    return rc;
}

int sinter_raw_status(struct sinter_raw *p, struct sinter_xid x, uint64_t seq, uint32_t *status)
{
    struct sinter_proto_msg m;
    sinter_raw_req(p, &m, SINTER_MSG_GLOBAL_STATUS, seq_or_next(p, seq));
    m.u.global_status.xid = x;
    struct sinter_transport_reply_msg *r = NULL;
    int rc = leader_call(p, &m, SINTER_MSG_GLOBAL_STATUS_RESULT, &r, NULL);
    if (r != NULL) {
        *status = sinter_transport_reply_get(r)->u.global_status_result.global_status;
        sinter_transport_reply_free(r);
    }
    return rc;
}
