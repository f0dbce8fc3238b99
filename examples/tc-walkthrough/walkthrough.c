/*
 * sinter-walkthrough — a guided tour of what the sinter-tc coordinator does today.
 *
 *   sinter-walkthrough --secret S --addr tcp://127.0.0.1:18091 [--addr ...]
 *   sinter-walkthrough --secret-file build/local-cluster/secret --addr ...
 *
 * It talks to a running cluster (deploy/local-cluster.sh, or run.sh next to this file) over the
 * client wire protocol (sinter/proto.h, sinter/transport.h), the way the TM and RM libraries will,
 * and says in plain words what it asks and what the coordinator answers:
 *
 *   1. registration: a wrong secret is refused; a TM and an RM register with the shared secret;
 *   2. cluster metadata: the members, and the leader and term of every raft group;
 *   3. global 1: begin, two TCC branches with application data, phase one done, commit, status;
 *   4. global 2: begin, one branch, rollback; a late branch registration is refused;
 *   5. a retried begin (same client id and sequence number) returns the same xid;
 *   6. the status of an xid the cluster never issued is Finished.
 *
 * Every request goes to the leader of the raft group that owns it: the walkthrough follows
 * not-leader redirects and retries for a bounded time while an election is in progress. It exits
 * 0 when every answer was the expected one, 1 with a message on the first unexpected answer, and
 * 2 for a usage error.
 *
 * This walkthrough speaks the wire protocol by hand and runs no RM, so nobody serves the two
 * resources its branches name: the coordinator keeps each decision and queues the phase-2
 * deliveries (confirm / cancel) for the first RM that polls for those resources, so the globals
 * stay Committing / Rollbacking here. The TCC transfer demo (examples/tcc-transfer) shows phase 2
 * end to end.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/transport.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#define MAX_NODES       SINTER_PROTO_MAX_MEMBERS
#define MAX_URL         128
#define CALL_TIMEOUT_MS 2000u  /* one attempt at one node */
#define LEADER_WAIT_MS  10000u /* one request, redirects and elections included */

/* ---- small helpers -------------------------------------------------------------------------- */

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fputs("sinter-walkthrough: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The text form of an xid, usable directly as a printf argument: xid_text(x).s */
struct xid_text {
    char s[SINTER_XID_STRLEN];
};

static struct xid_text xid_text(struct sinter_xid x)
{
    struct xid_text t;
    sinter_xid_format(&x, t.s);
    return t;
}

/* A wire string copied into a NUL-terminated buffer (cut at cap - 1 bytes). */
static void copy_str(char *dst, size_t cap, struct sinter_proto_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n > 0) {
        memcpy(dst, s.ptr, n);
    }
    dst[n] = '\0';
}

/* A random non-zero client id: the TC deduplicates retries by (client id, seq). */
static uint64_t random_client_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
        id = now_ms() * UINT64_C(6364136223846793005) ^ (uint64_t)getpid();
    }
    return id != 0 ? id : 1;
}

/* ---- nodes and clients ---------------------------------------------------------------------- */

/* A coordinator node we talk to, by its client URL. Registration is per node (each node keeps
 * its registered clients in memory), so we remember which of our clients registered where. */
struct node {
    char url[MAX_URL];
    struct sinter_transport_client *conn;
    unsigned registered; /* bits of struct client.bit */
};

/* One client identity. As in Seata, the TM (begins and ends globals) and the RM (registers
 * branches of its resources) are separate clients, each with its own id and request sequence. */
struct client {
    const char *role; /* "TM" or "RM" */
    uint16_t register_code;
    unsigned bit;
    uint64_t id;
    uint64_t seq; /* +1 per logical request; a retry of that request reuses it */
};

static const char *const RESOURCES[] = {"account-a", "account-b"};

static struct node g_nodes[MAX_NODES];
static size_t g_n_nodes;
static size_t g_leader_guess; /* index of the node that answered last */
static char g_secret[512];

static struct client g_tm = {"TM", SINTER_MSG_REGISTER_TM, 1u, 0, 0};
static struct client g_rm = {"RM", SINTER_MSG_REGISTER_RM, 2u, 0, 0};

/* The node with this client URL, added (and its connection opened) on first sight. */
static struct node *node_for(const char *url)
{
    for (size_t i = 0; i < g_n_nodes; i++) {
        if (strcmp(g_nodes[i].url, url) == 0) {
            return &g_nodes[i];
        }
    }
    if (g_n_nodes == MAX_NODES) {
        die("more than %u coordinator addresses", (unsigned)MAX_NODES);
    }
    if (strlen(url) >= MAX_URL) {
        die("address too long: %s", url);
    }
    struct node *n = &g_nodes[g_n_nodes];
    snprintf(n->url, sizeof n->url, "%s", url);
    struct sinter_transport_client_opts o;
    sinter_transport_client_opts_default(&o);
    o.url = n->url;
    int rc = sinter_transport_client_open(&n->conn, &o);
    if (rc != SINTER_OK) {
        die("cannot open a connection to %s: %s (%s)", url, sinter_strerror(rc),
            sinter_errname(rc));
    }
    g_n_nodes++;
    return n;
}

/* A transport outcome that means "no answer from that node" (down, or not reachable). */
static bool unreachable(int rc)
{
    return rc == SINTER_ETIMEOUT || rc == SINTER_ETRANSPORT;
}

static void req_init(struct sinter_proto_msg *m, uint16_t code)
{
    memset(m, 0, sizeof *m);
    m->code = code;
}

/* RegisterTM / RegisterRM of client c with node n using secret. Returns the transport's error,
 * else the TC's result code; *text gets the TC's message. */
static int register_at(struct node *n, struct client *c, const char *secret, char *text,
                       size_t text_cap)
{
    struct sinter_proto_msg m;
    req_init(&m, c->register_code);
    m.rq.client_id = c->id; /* seq 0: registration is not a deduplicated command */
    m.u.reg.client_version = sinter_proto_str_c("sinter-walkthrough/1");
    m.u.reg.application_id = sinter_proto_str_c("walkthrough");
    m.u.reg.credential = sinter_proto_str_c(secret);
    if (c->register_code == SINTER_MSG_REGISTER_RM) {
        m.u.reg.n_resources = 2;
        m.u.reg.resource_ids[0] = sinter_proto_str_c(RESOURCES[0]);
        m.u.reg.resource_ids[1] = sinter_proto_str_c(RESOURCES[1]);
    }
    text[0] = '\0';
    struct sinter_transport_reply_msg *r = NULL;
    int rc = sinter_transport_call(n->conn, &m, CALL_TIMEOUT_MS, &r);
    if (rc != SINTER_OK) {
        return rc;
    }
    const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
    rc = rm->rs.result;
    copy_str(text, text_cap, rm->rs.message);
    if (rc == SINTER_OK && rm->code != sinter_proto_reply_code(c->register_code)) {
        rc = SINTER_EUNKNOWNMSG;
    }
    sinter_transport_reply_free(r);
    return rc;
}

/* Registers c with n unless it already is. Returns the transport's error (node unreachable);
 * a refusal by the TC is fatal. */
static int ensure_registered(struct node *n, struct client *c)
{
    if (n->registered & c->bit) {
        return SINTER_OK;
    }
    char text[256];
    int rc = register_at(n, c, g_secret, text, sizeof text);
    if (rc == SINTER_OK) {
        n->registered |= c->bit;
        printf("      (registered the %s with %s first: each node keeps its own registrations)\n",
               c->role, n->url);
    } else if (!unreachable(rc)) {
        die("Register%s at %s refused: %s (%s)", c->role, n->url, sinter_errname(rc), text);
    }
    return rc;
}

/* ---- calling the leader --------------------------------------------------------------------- */

/* What came back from one request, copied out of the reply. */
struct answer {
    int result;         /* SINTER_OK or the TC's error code */
    char text[256];     /* the TC's message, may be empty */
    char node[MAX_URL]; /* the node that answered */
    struct sinter_xid xid;
    uint64_t branch_id;
    uint32_t status;
};

/* Sends m as client c, with sequence number seq, to the leader of the raft group it concerns:
 * starts at the node that answered last, follows not-leader redirects (the reply names the
 * leader's client URL), registers c with nodes that do not know it yet, and retries the same
 * (client id, seq) while no leader is elected or a node does not answer, for LEADER_WAIT_MS in
 * all. The TC's answer to the request itself (say SINTER_ESTATE for a late branch) is returned
 * in .result; dies when no leader answered in time and on any other reply (an Error reply for
 * another reason, a reply of the wrong kind). */
static struct answer request(struct client *c, struct sinter_proto_msg *m, uint64_t seq)
{
    m->rq.client_id = c->id;
    m->rq.seq = seq;
    uint16_t want = sinter_proto_reply_code(m->code);
    const char *what = sinter_proto_code_name(m->code);
    uint64_t deadline = now_ms() + LEADER_WAIT_MS;
    size_t i = g_leader_guess;
    bool said_waiting = false;
    while (now_ms() < deadline) {
        struct node *n = &g_nodes[i];
        struct sinter_transport_reply_msg *r = NULL;
        int rc = ensure_registered(n, c);
        if (rc == SINTER_OK) {
            rc = sinter_transport_call(n->conn, m, CALL_TIMEOUT_MS, &r);
        }
        if (rc != SINTER_OK) {
            printf("      (%s did not answer: %s; trying the next node)\n", n->url,
                   sinter_errname(rc));
            i = (i + 1) % g_n_nodes;
            sleep_ms(100);
            continue;
        }
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        int result = rm->code == SINTER_MSG_ERROR ? rm->rs.result : SINTER_OK;
        if (result == SINTER_ENOTLEADER && rm->u.error.leader_addr.len > 0) {
            char url[MAX_URL];
            copy_str(url, sizeof url, rm->u.error.leader_addr);
            printf("      (%s does not lead raft group %" PRIu32 ": redirected to node %" PRIu64
                   " at %s)\n",
                   n->url, rm->u.error.group, rm->u.error.leader_id, url);
            sinter_transport_reply_free(r);
            struct node *leader = node_for(url);
            i = (size_t)(leader - g_nodes);
            sleep_ms(50); /* two nodes with stale views must not ping-pong at full speed */
            continue;
        }
        if (result == SINTER_ENOTLEADER || result == SINTER_ETIMEOUT || result == SINTER_EBUSY ||
            result == SINTER_ESHUTDOWN) {
            /* No leader known yet (election), or the outcome is unknown: same seq again. */
            if (!said_waiting) {
                printf("      (%s: %s; retrying for up to %u s)\n", n->url, sinter_errname(result),
                       LEADER_WAIT_MS / 1000u);
                said_waiting = true;
            }
            sinter_transport_reply_free(r);
            if (result == SINTER_ENOTLEADER) {
                i = (i + 1) % g_n_nodes;
            }
            sleep_ms(200);
            continue;
        }
        if (result == SINTER_EAUTH) {
            /* The node forgot us (it restarted): register again, then retry. */
            n->registered &= ~c->bit;
            sinter_transport_reply_free(r);
            continue;
        }
        char text[256];
        copy_str(text, sizeof text, rm->rs.message);
        if (rm->code != want) {
            die("%s: %s answered %s, %s (%s)", what, n->url, sinter_proto_code_name(rm->code),
                sinter_errname(result), text);
        }
        struct answer a;
        memset(&a, 0, sizeof a);
        a.result = rm->rs.result;
        snprintf(a.text, sizeof a.text, "%s", text);
        snprintf(a.node, sizeof a.node, "%s", n->url);
        switch (rm->code) {
        case SINTER_MSG_GLOBAL_BEGIN_RESULT:
            a.xid = rm->u.global_begin_result.xid;
            break;
        case SINTER_MSG_BRANCH_REGISTER_RESULT:
            a.branch_id = rm->u.branch_register_result.branch_id;
            break;
        case SINTER_MSG_GLOBAL_COMMIT_RESULT:
        case SINTER_MSG_GLOBAL_ROLLBACK_RESULT:
        case SINTER_MSG_GLOBAL_STATUS_RESULT:
            a.status = rm->u.global_status_result.global_status;
            break;
        default:
            break;
        }
        sinter_transport_reply_free(r);
        g_leader_guess = i;
        return a;
    }
    die("%s: no leader answered within %u s", what, LEADER_WAIT_MS / 1000u);
}

/* Dies unless a succeeded. */
static void expect_ok(const struct answer *a, const char *what)
{
    if (a->result != SINTER_OK) {
        die("%s: %s (%s)", what, sinter_errname(a->result), a->text);
    }
}

/* ---- the transaction API a TM / RM library will offer, in miniature ------------------------ */

static struct sinter_xid begin_with_seq(uint64_t seq)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_GLOBAL_BEGIN);
    m.u.global_begin.application_id = sinter_proto_str_c("walkthrough");
    m.u.global_begin.transaction_name = sinter_proto_str_c("transfer");
    m.u.global_begin.timeout_ms = 0; /* the server's default */
    struct answer a = request(&g_tm, &m, seq);
    expect_ok(&a, "GlobalBegin");
    printf("  GlobalBegin \"transfer\" -> xid %s (leader %s)\n", xid_text(a.xid).s, a.node);
    return a.xid;
}

static struct sinter_xid begin(void)
{
    return begin_with_seq(++g_tm.seq);
}

/* BranchRegister of a TCC branch; returns the answer (result and branch id). */
static struct answer register_branch(struct sinter_xid x, const char *resource, const char *data)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_BRANCH_REGISTER);
    m.u.branch_register.xid = x;
    m.u.branch_register.branch_type = SINTER_BT_TCC;
    m.u.branch_register.resource_id = sinter_proto_str_c(resource);
    m.u.branch_register.application_data =
        (struct sinter_proto_bytes){(const uint8_t *)data, (uint32_t)strlen(data)};
    return request(&g_rm, &m, ++g_rm.seq);
}

static uint64_t register_branch_ok(struct sinter_xid x, const char *resource, const char *data)
{
    struct answer a = register_branch(x, resource, data);
    expect_ok(&a, "BranchRegister");
    printf("  BranchRegister %s TCC %-9s data %s -> branch %" PRIu64 "\n", xid_text(x).s, resource,
           data, a.branch_id);
    return a.branch_id;
}

/* BranchReport: the RM's try succeeded (PhaseOne_Done). */
static void report_phase1_done(struct sinter_xid x, uint64_t branch, const char *resource)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_BRANCH_REPORT);
    m.u.branch_report.xid = x;
    m.u.branch_report.branch_id = branch;
    m.u.branch_report.branch_type = SINTER_BT_TCC;
    m.u.branch_report.branch_status = SINTER_BS_PHASE1_DONE;
    m.u.branch_report.resource_id = sinter_proto_str_c(resource);
    struct answer a = request(&g_rm, &m, ++g_rm.seq);
    expect_ok(&a, "BranchReport");
    printf("  BranchReport   branch %" PRIu64 " %s -> OK\n", branch,
           sinter_branch_status_name(SINTER_BS_PHASE1_DONE));
}

/* GlobalCommit (commit true) or GlobalRollback; returns the status the TC answers. */
static uint32_t end_global(struct sinter_xid x, bool commit)
{
    struct sinter_proto_msg m;
    req_init(&m, commit ? SINTER_MSG_GLOBAL_COMMIT : SINTER_MSG_GLOBAL_ROLLBACK);
    m.u.global_end.xid = x;
    struct answer a = request(&g_tm, &m, ++g_tm.seq);
    const char *what = commit ? "GlobalCommit" : "GlobalRollback";
    expect_ok(&a, what);
    printf("  %-14s %s -> %s\n", what, xid_text(x).s, sinter_global_status_name(a.status));
    if (commit ? !sinter_global_status_is_commit_side(a.status)
               : !sinter_global_status_is_rollback_side(a.status)) {
        die("%s %s answered %s: not on the %s side", what, xid_text(x).s,
            sinter_global_status_name(a.status), commit ? "commit" : "rollback");
    }
    return a.status;
}

static uint32_t global_status(struct sinter_xid x)
{
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_GLOBAL_STATUS);
    m.u.global_status.xid = x;
    struct answer a = request(&g_tm, &m, ++g_tm.seq);
    expect_ok(&a, "GlobalStatus");
    printf("  GlobalStatus   %s -> %s\n", xid_text(x).s, sinter_global_status_name(a.status));
    return a.status;
}

static void expect_status(uint32_t got, uint32_t want, const char *what)
{
    if (got != want) {
        die("%s: expected %s, the TC answered %s", what, sinter_global_status_name(want),
            sinter_global_status_name(got));
    }
}

/* ---- the steps ------------------------------------------------------------------------------ */

/* Registers our TM and RM with node n. Returns false when n does not answer (it may be down);
 * a refusal is fatal. */
static bool register_tm_and_rm(struct node *n)
{
    struct client *cs[] = {&g_tm, &g_rm};
    for (size_t k = 0; k < 2; k++) {
        char text[256];
        int rc = register_at(n, cs[k], g_secret, text, sizeof text);
        if (unreachable(rc)) {
            printf("  %s does not answer (%s): skipped, it may be down\n", n->url,
                   sinter_errname(rc));
            return false;
        }
        if (rc != SINTER_OK) {
            die("Register%s at %s: %s (%s)", cs[k]->role, n->url, sinter_errname(rc), text);
        }
        n->registered |= cs[k]->bit;
    }
    printf("  RegisterTM (client %016" PRIx64 ") and RegisterRM (client %016" PRIx64
           ", resources %s, %s) at %s -> OK\n",
           g_tm.id, g_rm.id, RESOURCES[0], RESOURCES[1], n->url);
    return true;
}

static void step_registration(size_t n_addr)
{
    printf("\nStep 1. Registration with the shared secret\n");
    char text[256];
    char wrong[sizeof g_secret + 8];
    snprintf(wrong, sizeof wrong, "%s-wrong", g_secret);
    struct client intruder = {"TM", SINTER_MSG_REGISTER_TM, 4u, random_client_id(), 0};
    /* At the first node that answers. */
    struct node *first = NULL;
    int rc = SINTER_ETIMEOUT;
    for (size_t i = 0; i < n_addr && unreachable(rc); i++) {
        first = &g_nodes[i];
        rc = register_at(first, &intruder, wrong, text, sizeof text);
    }
    if (unreachable(rc)) {
        die("no coordinator answered (%s): is the cluster running?", sinter_errname(rc));
    }
    if (rc != SINTER_EAUTH) {
        die("RegisterTM with a wrong secret at %s: expected SINTER_EAUTH, got %s (%s)", first->url,
            sinter_errname(rc), text);
    }
    printf("  RegisterTM with a wrong secret at %s -> refused: %s (%s)\n", first->url,
           sinter_errname(rc), text);

    /* A refused client cannot do anything else either. */
    struct sinter_proto_msg m;
    req_init(&m, SINTER_MSG_GLOBAL_BEGIN);
    m.rq.client_id = intruder.id;
    m.rq.seq = 1;
    struct sinter_transport_reply_msg *r = NULL;
    rc = sinter_transport_call(first->conn, &m, CALL_TIMEOUT_MS, &r);
    if (rc != SINTER_OK) {
        die("GlobalBegin at %s: %s", first->url, sinter_errname(rc));
    }
    rc = sinter_transport_reply_get(r)->rs.result;
    copy_str(text, sizeof text, sinter_transport_reply_get(r)->rs.message);
    sinter_transport_reply_free(r);
    if (rc != SINTER_EAUTH) {
        die("GlobalBegin by the refused client: expected SINTER_EAUTH, got %s (%s)",
            sinter_errname(rc), text);
    }
    printf("  ... and its GlobalBegin -> refused: %s (%s)\n", sinter_errname(rc), text);

    size_t registered = 0;
    for (size_t i = 0; i < n_addr; i++) {
        registered += register_tm_and_rm(&g_nodes[i]) ? 1u : 0u;
    }
    if (registered == 0) {
        die("no coordinator accepted the registration");
    }
}

/* Asks the nodes for ClusterMeta until one answers with a leader for every raft group. */
static void step_cluster_meta(void)
{
    printf("\nStep 2. Cluster metadata (ClusterMeta, answered by any node)\n");
    uint64_t deadline = now_ms() + LEADER_WAIT_MS;
    size_t i = 0;
    bool said_waiting = false;
    for (;;) {
        struct node *n = &g_nodes[i];
        struct sinter_proto_msg m;
        req_init(&m, SINTER_MSG_CLUSTER_META);
        struct sinter_transport_reply_msg *r = NULL;
        int rc = sinter_transport_call(n->conn, &m, CALL_TIMEOUT_MS, &r);
        if (rc == SINTER_OK) {
            const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
            if (rm->code != SINTER_MSG_CLUSTER_META_RESULT) {
                die("ClusterMeta at %s: answered %s, %s", n->url, sinter_proto_code_name(rm->code),
                    sinter_errname(rm->rs.result));
            }
            const struct sinter_proto_cluster_meta_result *cm = &rm->u.cluster_meta_result;
            bool all_led = cm->n_groups > 0;
            for (uint32_t g = 0; g < cm->n_groups; g++) {
                all_led = all_led && cm->groups[g].leader_id != 0;
            }
            if (all_led) {
                printf("  answered by node %" PRIu64 " (%s)\n", cm->node_id, n->url);
                printf("  members:\n");
                for (uint32_t k = 0; k < cm->n_members; k++) {
                    char url[MAX_URL];
                    copy_str(url, sizeof url, cm->members[k].addr);
                    printf("    node %" PRIu64 "  %s  %s\n", cm->members[k].id, url,
                           cm->members[k].voter ? "voter" : "learner");
                    node_for(url); /* every member is a place requests may be sent */
                }
                printf("  raft groups (transactions are sharded over them; the xid names its "
                       "group):\n");
                for (uint32_t g = 0; g < cm->n_groups; g++) {
                    char url[MAX_URL] = "?";
                    for (uint32_t k = 0; k < cm->n_members; k++) {
                        if (cm->members[k].id == cm->groups[g].leader_id) {
                            copy_str(url, sizeof url, cm->members[k].addr);
                        }
                    }
                    printf("    group %" PRIu32 "  leader node %" PRIu64 " (%s)  term %" PRIu64
                           "\n",
                           cm->groups[g].group, cm->groups[g].leader_id, url, cm->groups[g].term);
                }
                sinter_transport_reply_free(r);
                return;
            }
            sinter_transport_reply_free(r);
        }
        if (now_ms() >= deadline) {
            die("ClusterMeta: no node reported a leader for every raft group within %u s",
                LEADER_WAIT_MS / 1000u);
        }
        if (!said_waiting) {
            printf("  (waiting for every raft group to elect a leader, up to %u s)\n",
                   LEADER_WAIT_MS / 1000u);
            said_waiting = true;
        }
        i = (i + 1) % g_n_nodes;
        sleep_ms(200);
    }
}

/* A global transaction and the status it was last seen in. */
struct outcome {
    struct sinter_xid xid;
    uint32_t status;
};

static struct outcome step_commit(void)
{
    printf("\nStep 3. Global transaction 1: two TCC branches, then commit\n");
    struct sinter_xid x = begin();
    uint64_t a = register_branch_ok(x, RESOURCES[0], "{\"from\":\"alice\",\"amount\":10}");
    uint64_t b = register_branch_ok(x, RESOURCES[1], "{\"to\":\"bob\",\"amount\":10}");
    if (a <= x.index || b <= a) {
        die("branch ids %" PRIu64 ", %" PRIu64 " do not follow xid %s", a, b, xid_text(x).s);
    }
    printf("  (an xid is <raft group>:<log index of its begin>; branch ids are later log "
           "indexes)\n");
    report_phase1_done(x, a, RESOURCES[0]);
    report_phase1_done(x, b, RESOURCES[1]);
    expect_status(global_status(x), SINTER_GS_BEGIN, "status before the commit");
    end_global(x, true);
    printf("  (the commit decision is now durable on a majority: this global can only end "
           "committed)\n");
    uint32_t st = global_status(x);
    if (!sinter_global_status_is_commit_side(st)) {
        die("status after the commit: %s is not on the commit side", sinter_global_status_name(st));
    }
    return (struct outcome){x, st};
}

static struct outcome step_rollback(void)
{
    printf("\nStep 4. Global transaction 2: one branch, then rollback\n");
    struct sinter_xid x = begin();
    register_branch_ok(x, RESOURCES[0], "{\"from\":\"carol\",\"amount\":5}");
    end_global(x, false);
    struct answer late = register_branch(x, RESOURCES[1], "{\"to\":\"dave\",\"amount\":5}");
    if (late.result != SINTER_ESTATE) {
        die("a branch registered after the rollback: expected SINTER_ESTATE, got %s (%s)",
            sinter_errname(late.result), late.text);
    }
    printf("  BranchRegister %s TCC %-9s (late registration, after the rollback) -> refused: "
           "%s (%s)\n",
           xid_text(x).s, RESOURCES[1], sinter_errname(late.result), late.text);
    uint32_t st = global_status(x);
    if (!sinter_global_status_is_rollback_side(st)) {
        die("status after the rollback: %s is not on the rollback side",
            sinter_global_status_name(st));
    }
    return (struct outcome){x, st};
}

/* Says where the two globals stand, and why they stop there: no RM serves their resources. */
static void note_phase2(struct outcome committed, struct outcome rolled_back)
{
    printf("\n  Note: phase 2 (confirm / cancel) needs an RM serving %s and %s, and this\n"
           "  walkthrough runs none: the coordinator queues the deliveries for one. The decisions\n"
           "  are durable: global %s stays %s and global %s stays %s until an RM appears\n"
           "  (the TCC transfer demo, examples/tcc-transfer, shows phase 2 end to end).\n",
           RESOURCES[0], RESOURCES[1], xid_text(committed.xid).s,
           sinter_global_status_name(committed.status), xid_text(rolled_back.xid).s,
           sinter_global_status_name(rolled_back.status));
}

static void step_idempotent_begin(void)
{
    printf("\nStep 5. A retried request returns the first answer\n");
    uint64_t seq = ++g_tm.seq;
    printf("  GlobalBegin with client %016" PRIx64 ", seq %" PRIu64 ":\n", g_tm.id, seq);
    struct sinter_xid first = begin_with_seq(seq);
    printf("  the same request again (as after a lost reply):\n");
    struct sinter_xid again = begin_with_seq(seq);
    if (again.group != first.group || again.index != first.index) {
        die("the retried begin returned xid %s, the first %s", xid_text(again).s,
            xid_text(first).s);
    }
    printf("  same xid %s: the TC began one global transaction, not two\n", xid_text(first).s);
    printf("  tidying up; with no branch there is nothing to cancel:\n");
    end_global(first, false);
}

static void step_unknown_xid(struct sinter_xid known)
{
    printf("\nStep 6. An xid the cluster never issued\n");
    struct sinter_xid unknown = {known.group, known.index + 1000000u};
    expect_status(global_status(unknown), SINTER_GS_FINISHED, "status of an unknown xid");
    printf("  (Seata's answer: Finished means \"already finished and forgotten, or never "
           "existed\")\n");
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: sinter-walkthrough (--secret S | --secret-file PATH) --addr tcp://HOST:PORT "
          "[--addr ...]\n"
          "  Walks through what the sinter-tc coordinator does today against a running cluster\n"
          "  (deploy/local-cluster.sh prints the client addresses; the secret is in DIR/secret).\n",
          f);
}

static void read_secret_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        die("cannot open the secret file %s", path);
    }
    size_t n = fread(g_secret, 1, sizeof g_secret - 1, f);
    fclose(f);
    while (n > 0 && (g_secret[n - 1] == '\n' || g_secret[n - 1] == '\r')) {
        n--;
    }
    g_secret[n] = '\0';
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order when piped */
    const char *addrs[MAX_NODES];
    size_t n_addr = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        if (strcmp(arg, "--secret") == 0) {
            snprintf(g_secret, sizeof g_secret, "%s", val);
        } else if (strcmp(arg, "--secret-file") == 0) {
            read_secret_file(val);
        } else if (strcmp(arg, "--addr") == 0 && n_addr < MAX_NODES) {
            addrs[n_addr++] = val;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (g_secret[0] == '\0' || n_addr == 0) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < n_addr; i++) {
        node_for(addrs[i]);
    }
    n_addr = g_n_nodes; /* duplicates collapsed */
    g_tm.id = random_client_id();
    g_rm.id = random_client_id();

    printf("Sinter coordinator walkthrough against %zu node(s):", n_addr);
    for (size_t i = 0; i < n_addr; i++) {
        printf(" %s", g_nodes[i].url);
    }
    printf("\n");

    step_registration(n_addr);
    step_cluster_meta();
    struct outcome g1 = step_commit();
    struct outcome g2 = step_rollback();
    note_phase2(g1, g2);
    step_idempotent_begin();
    step_unknown_xid(g1.xid);

    printf("\nWalkthrough complete: every answer was the expected one.\n");
    for (size_t i = 0; i < g_n_nodes; i++) {
        sinter_transport_client_close(g_nodes[i].conn);
    }
    return 0;
}
