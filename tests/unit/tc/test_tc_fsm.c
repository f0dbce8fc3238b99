/* Unit tests for the coordinator's transaction state machine (tc/fsm.h): every transition and
 * every refusal, Seata's DefaultCoreTest scenarios, client-session idempotency, exactly-once apply
 * across restarts, batch atomicity, snapshots, retention GC, a randomized two-replica check, and
 * data directories and snapshots of the previous index set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "sinter/error.h"
#include "sinter/types.h"
#include "tc/command.h"
#include "tc/fsm.h"

#define GROUP 3
#define T0    1700000000000ull /* leader clock at the start of every test */

/* ---- harness ---- */

struct h {
    char dir[64];
    char path[128];
    struct sinter_tc_fsm *f;
    uint64_t idx; /* last raft index used */
    uint64_t now; /* the leader's clock stamped into the next command */
    uint64_t seq; /* next client seq */
};

static int setup(void **state)
{
    struct h *h = calloc(1, sizeof *h);
    assert_non_null(h);
    strcpy(h->dir, "/tmp/sinter-tc-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->path, sizeof h->path, "%s/state.db", h->dir);
    assert_int_equal(sinter_tc_fsm_open(&h->f, h->path, GROUP), SINTER_OK);
    h->now = T0;
    h->seq = 1;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    struct h *h = *state;
    sinter_tc_fsm_close(h->f);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    assert_int_equal(system(cmd), 0);
    free(h);
    return 0;
}

static struct sinter_tc_bytes B(const char *s) {
    struct sinter_tc_bytes b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

static struct sinter_xid
XID(uint64_t index) {
    struct sinter_xid x = {GROUP, index};
    return x;
}

/* Encodes c into a malloc'ed buffer. */
static uint8_t *
enc(const struct sinter_tc_cmd *c, size_t *len)
{
    uint8_t *buf = malloc(SINTER_TC_CMD_MAX_BYTES);
    assert_non_null(buf);
    assert_int_equal(sinter_tc_cmd_encode(c, buf, SINTER_TC_CMD_MAX_BYTES, len), SINTER_OK);
    return buf;
}

/* Applies one command as the next raft entry, stamped with h->now. */
static struct sinter_tc_result apply(struct h *h, struct sinter_tc_cmd *c)
{
    c->now_ms = h->now;
    size_t len;
    uint8_t *buf = enc(c, &len);
    struct sinter_tc_entry e = {++h->idx, 1, buf, len};
    struct sinter_tc_result r;
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, &e, 1, &r), SINTER_OK);
    free(buf);
    assert_false(r.skipped);
    return r;
}

static struct sinter_tc_cmd client_cmd(struct h *h, uint8_t type, const char *client)
{
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = type;
    if (client != NULL) {
        c.client_id = B(client);
        c.seq = h->seq++;
    }
    return c;
}

static struct sinter_tc_cmd begin_cmd(struct h *h, uint64_t timeout_ms)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_BEGIN, "tm-1");
    c.u.begin.app_id = B("demo-child-app");
    c.u.begin.tx_name = B("tx-1");
    c.u.begin.timeout_ms = timeout_ms;
    c.u.begin.app_data = B("{\"data\":\"test\"}");
    return c;
}

static uint64_t begin(struct h *h, uint64_t timeout_ms)
{
    struct sinter_tc_cmd c = begin_cmd(h, timeout_ms);
    struct sinter_tc_result r = apply(h, &c);
    assert_int_equal(r.rc, SINTER_OK);
    assert_int_equal(r.status, SINTER_GS_BEGIN);
    assert_int_equal(r.xid.group, GROUP);
    assert_true(r.xid.index == h->idx);
    return r.xid.index;
}

static struct sinter_tc_cmd register_cmd(struct h *h, uint64_t xid)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_REGISTER_BRANCH, "rm-1");
    c.u.reg.xid = XID(xid);
    c.u.reg.branch_type = SINTER_BT_TCC;
    c.u.reg.resource_id = B("tb_1");
    c.u.reg.app_data = B("abc");
    c.u.reg.xa_info = B("");
    return c;
}

static struct sinter_tc_result reg(struct h *h, uint64_t xid)
{
    struct sinter_tc_cmd c = register_cmd(h, xid);
    return apply(h, &c);
}

static uint64_t reg_ok(struct h *h, uint64_t xid)
{
    struct sinter_tc_result r = reg(h, xid);
    assert_int_equal(r.rc, SINTER_OK);
    assert_int_equal(r.branch_status, SINTER_BS_REGISTERED);
    assert_true(r.branch_id == h->idx);
    return r.branch_id;
}

static struct sinter_tc_result report(struct h *h, uint64_t xid, uint64_t bid, uint8_t status)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_REPORT_BRANCH, "rm-1");
    c.u.report.xid = XID(xid);
    c.u.report.branch_id = bid;
    c.u.report.status = status;
    return apply(h, &c);
}

static struct sinter_tc_result decide(struct h *h, uint64_t xid, uint8_t target)
{
    /* TM decisions carry a session; the timeout worker's do not. */
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_DECIDE,
                                        target == SINTER_GS_TIMEOUT_ROLLBACKING ? NULL : "tm-1");
    c.u.decide.xid = XID(xid);
    c.u.decide.target = target;
    return apply(h, &c);
}

static struct sinter_tc_result result(struct h *h, uint64_t xid, uint64_t bid, uint8_t outcome)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_BRANCH_RESULT, NULL);
    c.u.result.xid = XID(xid);
    c.u.result.branch_id = bid;
    c.u.result.outcome = outcome;
    return apply(h, &c);
}

static struct sinter_tc_result xid_cmd(struct h *h, uint8_t type, uint64_t xid)
{
    struct sinter_tc_cmd c = client_cmd(h, type, NULL);
    c.u.x.xid = XID(xid);
    return apply(h, &c);
}

static struct sinter_tc_result retry_timeout(struct h *h, uint64_t xid, uint64_t max_retry_ms)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_RETRY_TIMEOUT, NULL);
    c.u.retry_timeout.xid = XID(xid);
    c.u.retry_timeout.max_retry_ms = max_retry_ms;
    return apply(h, &c);
}

static struct sinter_tc_result resolve(struct h *h, uint64_t xid, uint8_t target)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_RESOLVE, NULL);
    c.u.resolve.xid = XID(xid);
    c.u.resolve.target = target;
    return apply(h, &c);
}

static struct sinter_tc_result gc(struct h *h, uint64_t global_cutoff, uint64_t session_cutoff,
                                  uint64_t client_cutoff, uint32_t max)
{
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_GC, NULL);
    c.u.gc.global_cutoff_ms = global_cutoff;
    c.u.gc.session_cutoff_ms = session_cutoff;
    c.u.gc.client_cutoff_ms = client_cutoff;
    c.u.gc.max_items = max;
    return apply(h, &c);
}

static uint32_t gstatus(struct h *h, uint64_t xid)
{
    uint32_t s;
    int rc = sinter_tc_fsm_status(h->f, xid, &s);
    assert_true(rc == SINTER_OK || rc == SINTER_ENOTFOUND);
    return s;
}

static uint32_t bstatus(struct h *h, uint64_t xid, uint64_t bid)
{
    struct sinter_tc_global g;
    struct sinter_tc_branch *b;
    size_t n;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, xid, &g, &b, &n), SINTER_OK);
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].branch_id == bid) {
            s = b[i].status;
        }
    }
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(b, n);
    assert_int_not_equal(s, 0);
    return s;
}

static uint64_t count_status(struct h *h, uint32_t s)
{
    uint64_t counts[SINTER_GS_MAX + 1];
    assert_int_equal(sinter_tc_fsm_count_by_status(h->f, counts), SINTER_OK);
    return counts[s];
}

static uint64_t count_all(struct h *h)
{
    uint64_t counts[SINTER_GS_MAX + 1];
    assert_int_equal(sinter_tc_fsm_count_by_status(h->f, counts), SINTER_OK);
    uint64_t t = 0;
    for (int i = 0; i <= SINTER_GS_MAX; i++) {
        t += counts[i];
    }
    return t;
}

static uint32_t digest(struct sinter_tc_fsm *f)
{
    uint32_t d;
    assert_int_equal(sinter_tc_fsm_digest(f, &d), SINTER_OK);
    return d;
}

#define EXPECT(r, code, st)                                                                        \
    do {                                                                                           \
        struct sinter_tc_result r_ = (r);                                                          \
        assert_int_equal(r_.rc, (code));                                                           \
        assert_int_equal(r_.status, (st));                                                         \
    } while (0)

/* A global in Begin with one branch that finished phase one (DefaultCoreTest's setup). */
static uint64_t global_with_done_branch(struct h *h, uint64_t *bid)
{
    uint64_t x = begin(h, 3000);
    *bid = reg_ok(h, x);
    EXPECT(report(h, x, *bid, SINTER_BS_PHASE1_DONE), SINTER_OK, SINTER_GS_BEGIN);
    return x;
}

/* ---- BEGIN, REGISTER, REPORT ---- */

/* Seata beginTest: the global exists with the fields of the request; the xid names the group and
 * the BEGIN entry's index; times come from the leader's clock in the entry. */
static void begin_creates_global(void **state)
{
    struct h *h = *state;
    h->now = T0 + 5;
    uint64_t x = begin(h, 3000);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_int_equal(g.status, SINTER_GS_BEGIN);
    assert_int_equal(g.decision, 0);
    assert_int_equal(g.xid.group, GROUP);
    assert_true(g.xid.index == x);
    assert_string_equal(g.app_id, "demo-child-app");
    assert_string_equal(g.tx_name, "tx-1");
    assert_string_equal(g.client_id, "tm-1");
    assert_true(g.timeout_ms == 3000);
    assert_true(g.begin_ms == T0 + 5);
    assert_true(g.deadline_ms == T0 + 5 + 3000);
    assert_int_equal(g.app_data_len, strlen("{\"data\":\"test\"}"));
    assert_memory_equal(g.app_data, "{\"data\":\"test\"}", g.app_data_len);
    sinter_tc_global_free(&g);
    assert_true(sinter_tc_fsm_last_applied(h->f) == x);
    /* A second begin gets a different xid. */
    assert_true(begin(h, 3000) != x);
}

/* Seata branchRegisterTest, plus the refusals: unknown xid, another group's xid, late register. */
static void register_only_while_begin(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b = reg_ok(h, x);
    struct sinter_tc_global g;
    struct sinter_tc_branch *br;
    size_t n;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, &br, &n), SINTER_OK);
    assert_int_equal(n, 1);
    assert_true(br[0].branch_id == b);
    assert_int_equal(br[0].branch_type, SINTER_BT_TCC);
    assert_string_equal(br[0].resource_id, "tb_1");
    assert_string_equal(br[0].client_id, "rm-1");
    assert_int_equal(br[0].status, SINTER_BS_REGISTERED);
    assert_int_equal(br[0].app_data_len, 3);
    assert_true(br[0].register_ms == h->now);
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, n);

    EXPECT(reg(h, 999999), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
    struct sinter_tc_cmd c = register_cmd(h, x);
    c.u.reg.xid.group = GROUP + 1;
    EXPECT(apply(h, &c), SINTER_ENOTFOUND, SINTER_GS_FINISHED);

    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    struct sinter_tc_result r = reg(h, x);
    EXPECT(r, SINTER_ESTATE, SINTER_GS_COMMITTING);
    assert_true(r.branch_id == 0);
    uint64_t y = begin(h, 3000);
    EXPECT(decide(h, y, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKED);
    EXPECT(reg(h, y), SINTER_ESTATE, SINTER_GS_ROLLBACKED);
    /* Nothing was added by the refused registrations. */
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, &br, &n), SINTER_OK);
    assert_int_equal(n, 1);
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, n);
}

/* Seata branchReportTest and its refusals. */
static void report_branch_phase_one(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b1 = reg_ok(h, x);
    uint64_t b2 = reg_ok(h, x);
    struct sinter_tc_result r = report(h, x, b1, SINTER_BS_PHASE1_DONE);
    EXPECT(r, SINTER_OK, SINTER_GS_BEGIN);
    assert_int_equal(r.branch_status, SINTER_BS_PHASE1_DONE);
    assert_int_equal(bstatus(h, x, b1), SINTER_BS_PHASE1_DONE);
    /* The same report again is accepted; a different phase-one result is not. */
    EXPECT(report(h, x, b1, SINTER_BS_PHASE1_DONE), SINTER_OK, SINTER_GS_BEGIN);
    r = report(h, x, b1, SINTER_BS_PHASE1_FAILED);
    EXPECT(r, SINTER_ESTATE, SINTER_GS_BEGIN);
    assert_int_equal(r.branch_status, SINTER_BS_PHASE1_DONE);
    EXPECT(report(h, x, b2, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    /* Unknown branch, a branch of another global, unknown xid. */
    EXPECT(report(h, x, 424242, SINTER_BS_PHASE1_DONE), SINTER_ENOTFOUND, SINTER_GS_BEGIN);
    uint64_t y = begin(h, 3000);
    EXPECT(report(h, y, b1, SINTER_BS_PHASE1_DONE), SINTER_ENOTFOUND, SINTER_GS_BEGIN);
    EXPECT(report(h, 31337, b1, SINTER_BS_PHASE1_DONE), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
    /* Optional fields replace the stored ones (e.g. the XA local transaction id). */
    uint64_t b3 = reg_ok(h, x);
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_REPORT_BRANCH, "rm-1");
    c.u.report.xid = XID(x);
    c.u.report.branch_id = b3;
    c.u.report.status = SINTER_BS_PHASE1_DONE;
    c.u.report.has = SINTER_TC_REPORT_HAS_XA_INFO | SINTER_TC_REPORT_HAS_APP_DATA;
    c.u.report.xa_info = B("pg_xact:777");
    c.u.report.app_data = B("");
    EXPECT(apply(h, &c), SINTER_OK, SINTER_GS_BEGIN);
    struct sinter_tc_global g;
    struct sinter_tc_branch *br;
    size_t n;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, &br, &n), SINTER_OK);
    assert_int_equal(n, 3);
    assert_int_equal(br[2].xa_info_len, 11);
    assert_memory_equal(br[2].xa_info, "pg_xact:777", 11);
    assert_int_equal(br[2].app_data_len, 0);
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, n);
    /* After the decision a Registered branch can no longer report phase one. */
    uint64_t b4 = reg_ok(h, x);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(report(h, x, b4, SINTER_BS_PHASE1_DONE), SINTER_ESTATE, SINTER_GS_ROLLBACKING);
}

/* ---- DECIDE ---- */

/* Seata commitTest: commit of a Begin global leaves Begin; commit of a non-Begin global returns
 * its status; the other side is refused, so a committing global never rolls back. */
static void commit_decision_and_repeats(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    h->now += 7;
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_int_equal(g.decision, SINTER_GS_COMMITTING);
    assert_true(g.decided_ms == h->now);
    assert_true(g.end_ms == 0);
    sinter_tc_global_free(&g);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_ESTATE, SINTER_GS_COMMITTING);
    h->now += 100000;
    EXPECT(decide(h, x, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_ESTATE, SINTER_GS_COMMITTING);
    EXPECT(decide(h, 777777, SINTER_GS_COMMITTING), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
    /* Still on the commit side after it ends. */
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTED);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_ESTATE, SINTER_GS_COMMITTED);
}

/* Seata rollBackTest: rollback of a Begin global gives Rollbacking; repeated rollback returns the
 * status; commit afterwards is refused. */
static void rollback_decision_and_repeats(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_ROLLBACKING);
    h->now += 100000;
    EXPECT(decide(h, x, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_ESTATE, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_ROLLBACKED);
}

/* A decision with nothing to deliver ends at once, as Seata ends a global without branches in the
 * same call. A PhaseOne_Failed branch blocks a commit and still needs a rollback delivery (this
 * test used to expect the commit to be accepted and end Committed at once: that was the bug). */
static void decision_without_phase2_settles(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    h->now += 3;
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTED);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_true(g.end_ms == h->now);
    sinter_tc_global_free(&g);
    uint64_t y = begin(h, 3000);
    EXPECT(decide(h, y, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKED);
    uint64_t z = begin(h, 3000);
    uint64_t b = reg_ok(h, z);
    EXPECT(report(h, z, b, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    EXPECT(decide(h, z, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, z, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, z, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    uint64_t t = begin(h, 10);
    h->now += 11;
    EXPECT(decide(h, t, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKED);
}

/* Timeout rollback: the deadline is re-checked with the leader's now carried in the entry
 * (Seata's isTimeout: now - begin > timeout); only from Begin. */
static void timeout_decision_rechecks_deadline(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    reg_ok(h, x);
    uint64_t list[8];
    size_t n;
    assert_int_equal(sinter_tc_fsm_list_timed_out(h->f, T0 + 3000, list, 8, &n), SINTER_OK);
    assert_int_equal(n, 0);
    assert_int_equal(sinter_tc_fsm_list_timed_out(h->f, T0 + 3001, list, 8, &n), SINTER_OK);
    assert_int_equal(n, 1);
    assert_true(list[0] == x);
    h->now = T0 + 3000; /* exactly at the deadline: not yet */
    EXPECT(decide(h, x, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_ESTATE, SINTER_GS_BEGIN);
    h->now = T0 + 3001;
    EXPECT(decide(h, x, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(decide(h, x, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    /* A TM commit arriving late is refused; a rollback is satisfied by the timeout rollback. */
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    assert_int_equal(sinter_tc_fsm_list_timed_out(h->f, T0 + 99999, list, 8, &n), SINTER_OK);
    assert_int_equal(n, 0);
    /* A committed global is never timed out. */
    uint64_t y = begin(h, 10);
    reg_ok(h, y);
    EXPECT(decide(h, y, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    h->now += 1000;
    EXPECT(decide(h, y, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_ESTATE, SINTER_GS_COMMITTING);
}

/* ---- phase 2: Seata DefaultCoreTest doGlobalCommit / doGlobalRollback scenarios ---- */

/* doGlobalCommitCommitTest: the branch commits -> Committed. */
static void seata_commit_branch_committed(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    h->now += 50;
    struct sinter_tc_result r = result(h, x, b, SINTER_BS_PHASE2_COMMITTED);
    EXPECT(r, SINTER_OK, SINTER_GS_COMMITTED);
    assert_int_equal(r.branch_status, SINTER_BS_PHASE2_COMMITTED);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_true(g.end_ms == h->now);
    assert_true(g.phase2_first_ms == h->now); /* no first attempt given: the entry's now */
    sinter_tc_global_free(&g);
}

/* doGlobalCommitUnretryableTest: an unretryable commit failure ends the global CommitFailed. */
static void seata_commit_unretryable(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_FAILED);
    assert_int_equal(bstatus(h, x, b), SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE);
}

/* doGlobalCommitExpTest: a retryable failure (or an unknown answer) -> CommitRetrying; a later
 * success ends Committed. */
static void seata_commit_retryable(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_RETRYING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_RETRYING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    struct sinter_tc_global g;
    struct sinter_tc_branch *br;
    size_t n;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, &br, &n), SINTER_OK);
    assert_int_equal(br[0].phase2_results, 3);
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, n);
}

/* doGlobalRollBackRollbackedTest: the branch rolls back -> Rollbacked. */
static void seata_rollback_branch_rollbacked(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
}

/* doGlobalRollBackUnretryableTest: -> RollbackFailed; after a timeout rollback ->
 * TimeoutRollbackFailed. */
static void seata_rollback_unretryable(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_ROLLBACK_FAILED);
    uint64_t y = global_with_done_branch(h, &b);
    h->now += 3001;
    EXPECT(decide(h, y, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(result(h, y, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_TIMEOUT_ROLLBACK_FAILED);
}

/* doGlobalRollBackRetryableExpTest: -> RollbackRetrying; a timeout rollback ->
 * TimeoutRollbackRetrying, then TimeoutRollbacked (Seata's "timeout then retry"). */
static void seata_rollback_retryable(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE), SINTER_OK,
           SINTER_GS_ROLLBACK_RETRYING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    uint64_t y = global_with_done_branch(h, &b);
    h->now += 3001;
    EXPECT(decide(h, y, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(result(h, y, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE), SINTER_OK,
           SINTER_GS_TIMEOUT_ROLLBACK_RETRYING);
    EXPECT(result(h, y, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKED);
}

/* Unlike Seata (which stops at the first unretryable branch) the other branches are still driven
 * to their end; the global fails once all have ended. */
static void unretryable_waits_for_other_branches(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b1 = reg_ok(h, x);
    uint64_t b2 = reg_ok(h, x);
    /* b3 never reports phase one (a TCC try need not): it still gets a commit delivery. (This
     * test used to report b3 PhaseOne_Failed and commit anyway: that commit is now refused.) */
    uint64_t b3 = reg_ok(h, x);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b2, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_RETRYING);
    EXPECT(result(h, x, b2, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMIT_RETRYING);
    EXPECT(result(h, x, b3, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMIT_FAILED);
    uint64_t list[4];
    size_t n;
    assert_int_equal(sinter_tc_fsm_list_phase2(h->f, 0, list, 4, &n), SINTER_OK);
    assert_int_equal(n, 0);
}

/* Every refusal of BRANCH_RESULT, and deduplicated retries of a recorded end. */
static void branch_result_refusals(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b1 = reg_ok(h, x);
    uint64_t b2 = reg_ok(h, x);
    /* (This test used to hold a third, PhaseOne_Failed branch through a commit and expect its
     * commit result to be refused as "needs no phase 2": such a commit is now refused, and on
     * the rollback side that branch gets a delivery; see rollback_delivers_to_phase_one_failed.)
     */
    /* Undecided global. */
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_COMMITTED), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    /* An outcome of the other side. */
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_ROLLBACKED), SINTER_ESTATE, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE), SINTER_ESTATE,
           SINTER_GS_COMMITTING);
    /* Unknown branch / xid. */
    EXPECT(result(h, x, 5555, SINTER_BS_PHASE2_COMMITTED), SINTER_ENOTFOUND, SINTER_GS_COMMITTING);
    EXPECT(result(h, 5555, b1, SINTER_BS_PHASE2_COMMITTED), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTING);
    /* The same end again: a deduplicated retry, nothing changes (not even the result count). */
    struct sinter_tc_result r = result(h, x, b1, SINTER_BS_PHASE2_COMMITTED);
    EXPECT(r, SINTER_OK, SINTER_GS_COMMITTING);
    assert_int_equal(r.branch_status, SINTER_BS_PHASE2_COMMITTED);
    struct sinter_tc_global g;
    struct sinter_tc_branch *br;
    size_t n;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, &br, &n), SINTER_OK);
    assert_int_equal(br[0].phase2_results, 1);
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, n);
    /* A different result for an ended branch. */
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE), SINTER_ESTATE,
           SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE), SINTER_ESTATE,
           SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b2, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    EXPECT(result(h, x, b2, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    EXPECT(result(h, x, b2, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE), SINTER_ESTATE,
           SINTER_GS_COMMITTED);
}

/* ---- BRANCH_RESULTS ---- */

struct outcome {
    uint64_t xid;
    uint64_t bid;
    uint8_t outcome;
};

static struct sinter_tc_cmd results_cmd(const struct outcome *o, size_t n)
{
    struct sinter_tc_cmd c;
    memset(&c, 0, sizeof c);
    c.type = SINTER_TC_CMD_BRANCH_RESULTS;
    c.u.results.n = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        c.u.results.r[i].xid = XID(o[i].xid);
        c.u.results.r[i].branch_id = o[i].bid;
        c.u.results.r[i].outcome = o[i].outcome;
    }
    return c;
}

/* Gives a second replica h's state through a snapshot: same logical state, same last applied. */
static void mirror(struct h *h, struct sinter_tc_fsm *f2)
{
    char snap[192];
    snprintf(snap, sizeof snap, "%s/mirror.snap", h->dir);
    uint64_t index;
    uint64_t term;
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap, &index, &term, NULL, NULL), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_install_from(f2, snap), SINTER_OK);
    assert_int_equal(digest(h->f), digest(f2));
}

/* One BRANCH_RESULTS entry with K outcomes does to the state exactly what K BRANCH_RESULT entries
 * do, and answers each outcome as its BRANCH_RESULT is answered: the second branch of a global
 * settles it, a duplicate of the same branch in the entry is a deduplicated retry, and refusals
 * (undecided, wrong side, unknown xid / branch, another end for an ended branch) write nothing
 * and do not stop the outcomes after them. */
static void branch_results_equal_singles(void **state)
{
    struct h *h = *state;
    uint64_t c1 = begin(h, 3000); /* commit side, two branches: settles inside the entry */
    uint64_t c1a = reg_ok(h, c1);
    uint64_t c1b = reg_ok(h, c1);
    uint64_t r1 = begin(h, 3000); /* rollback side, one branch: retryable, then rolled back */
    uint64_t r1a = reg_ok(h, r1);
    uint64_t r2 = begin(h, 3000); /* rollback side, two branches: one unretryable */
    uint64_t r2a = reg_ok(h, r2);
    uint64_t r2b = reg_ok(h, r2);
    uint64_t u1 = begin(h, 3000); /* undecided */
    uint64_t u1a = reg_ok(h, u1);
    EXPECT(decide(h, c1, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(decide(h, r1, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(decide(h, r2, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);

    char path2[160];
    snprintf(path2, sizeof path2, "%s/singles.db", h->dir);
    struct sinter_tc_fsm *f2;
    assert_int_equal(sinter_tc_fsm_open(&f2, path2, GROUP), SINTER_OK);
    mirror(h, f2);

    const struct outcome o[] = {
        {u1, u1a, SINTER_BS_PHASE2_COMMITTED},                   /* 0 undecided: ESTATE */
        {c1, c1a, SINTER_BS_PHASE2_ROLLBACKED},                  /* 1 other side: ESTATE */
        {c1, c1a, SINTER_BS_PHASE2_COMMITTED},                   /* 2 OK, Committing */
        {c1, c1a, SINTER_BS_PHASE2_COMMITTED},                   /* 3 duplicate: OK */
        {c1, c1a, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE},     /* 4 another end: ESTATE */
        {r1, r1a, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE},   /* 5 OK, RollbackRetrying */
        {9999, 1, SINTER_BS_PHASE2_COMMITTED},                   /* 6 unknown xid */
        {c1, 9999, SINTER_BS_PHASE2_COMMITTED},                  /* 7 unknown branch */
        {c1, c1b, SINTER_BS_PHASE2_COMMITTED},                   /* 8 OK, settles: Committed */
        {r1, r1a, SINTER_BS_PHASE2_ROLLBACKED},                  /* 9 OK, settles: Rollbacked */
        {r2, r2a, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE}, /* 10 OK, Rollbacking */
        {r2, r2b, SINTER_BS_PHASE2_ROLLBACKED},                  /* 11 OK: RollbackFailed */
        {c1, c1b, SINTER_BS_PHASE2_COMMITTED},                   /* 12 after settle: OK */
    };
    const size_t k = sizeof o / sizeof o[0];
    const int want_rc[] = {SINTER_ESTATE, SINTER_ESTATE, SINTER_OK,        SINTER_OK,
                           SINTER_ESTATE, SINTER_OK,     SINTER_ENOTFOUND, SINTER_ENOTFOUND,
                           SINTER_OK,     SINTER_OK,     SINTER_OK,        SINTER_OK,
                           SINTER_OK};
    const uint32_t want_st[] = {
        SINTER_GS_BEGIN,      SINTER_GS_COMMITTING,  SINTER_GS_COMMITTING,
        SINTER_GS_COMMITTING, SINTER_GS_COMMITTING,  SINTER_GS_ROLLBACK_RETRYING,
        SINTER_GS_FINISHED,   SINTER_GS_COMMITTING,  SINTER_GS_COMMITTED,
        SINTER_GS_ROLLBACKED, SINTER_GS_ROLLBACKING, SINTER_GS_ROLLBACK_FAILED,
        SINTER_GS_COMMITTED};

    /* Replica A: one BRANCH_RESULTS entry, then K-1 no-op entries so both end at the same
     * index (the digest covers last applied). */
    h->now += 50;
    struct sinter_tc_cmd c = results_cmd(o, k);
    c.now_ms = h->now;
    size_t len;
    uint8_t *buf = enc(&c, &len);
    struct sinter_tc_entry ea[16];
    struct sinter_tc_result ra[16];
    uint64_t first = h->idx + 1;
    for (size_t i = 0; i < k; i++) {
        ea[i] = (struct sinter_tc_entry){first + i, 1, i == 0 ? buf : NULL, i == 0 ? len : 0};
    }
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, ea, k, ra), SINTER_OK);
    free(buf);
    h->idx += k;
    EXPECT(ra[0], SINTER_OK, 0);
    assert_int_equal(ra[0].n_sub, k);
    assert_non_null(ra[0].sub);
    for (size_t i = 1; i < k; i++) {
        assert_int_equal(ra[i].n_sub, 0);
        assert_null(ra[i].sub);
    }

    /* Replica B: K BRANCH_RESULT entries in one batch, same time. */
    struct sinter_tc_entry eb[16];
    struct sinter_tc_result rb[16];
    uint8_t *bufs[16];
    for (size_t i = 0; i < k; i++) {
        struct sinter_tc_cmd one = client_cmd(h, SINTER_TC_CMD_BRANCH_RESULT, NULL);
        one.now_ms = h->now;
        one.u.result.xid = XID(o[i].xid);
        one.u.result.branch_id = o[i].bid;
        one.u.result.outcome = o[i].outcome;
        bufs[i] = enc(&one, &len);
        eb[i] = (struct sinter_tc_entry){first + i, 1, bufs[i], len};
    }
    assert_int_equal(sinter_tc_fsm_apply_batch(f2, eb, k, rb), SINTER_OK);
    for (size_t i = 0; i < k; i++) {
        free(bufs[i]);
        const struct sinter_tc_result *s = &ra[0].sub[i];
        assert_int_equal(s->rc, want_rc[i]);
        assert_int_equal(s->status, want_st[i]);
        assert_int_equal(s->rc, rb[i].rc);
        assert_int_equal(s->status, rb[i].status);
        assert_int_equal(s->branch_status, rb[i].branch_status);
        assert_true(s->xid.group == rb[i].xid.group && s->xid.index == rb[i].xid.index);
        assert_true(s->branch_id == rb[i].branch_id);
        assert_false(s->duplicate);
        assert_int_equal(s->n_sub, 0);
    }
    /* The state: identical, byte for byte. */
    assert_int_equal(digest(h->f), digest(f2));
    assert_int_equal(gstatus(h, c1), SINTER_GS_COMMITTED);
    assert_int_equal(gstatus(h, r1), SINTER_GS_ROLLBACKED);
    assert_int_equal(gstatus(h, r2), SINTER_GS_ROLLBACK_FAILED);
    assert_int_equal(gstatus(h, u1), SINTER_GS_BEGIN);
    assert_int_equal(bstatus(h, u1, u1a), SINTER_BS_REGISTERED);
    /* A duplicate inside the entry counted once, as a later BRANCH_RESULT would have. */
    struct sinter_tc_global g;
    struct sinter_tc_branch *br;
    size_t nb;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, c1, &g, &br, &nb), SINTER_OK);
    assert_int_equal(br[0].phase2_results, 1);
    assert_true(g.phase2_first_ms == h->now); /* the first accepted outcome set the base */
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, nb);
    sinter_tc_fsm_close(f2);
}

/* Several BRANCH_RESULTS entries in one batch, between other entries: each entry's answers are
 * its own slice, in entry order, valid until the next batch; a re-applied (skipped) entry has
 * none; a malformed one (n over 64 by a hand-made count) is refused like any bad entry. */
static void branch_results_in_a_batch(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b[5];
    for (int i = 0; i < 5; i++) {
        b[i] = reg_ok(h, x);
    }
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    const struct outcome o1[] = {{x, b[0], SINTER_BS_PHASE2_COMMITTED},
                                 {x, b[1], SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE}};
    const struct outcome o2[] = {{x, b[2], SINTER_BS_PHASE2_COMMITTED}};
    const struct outcome o3[] = {{x, b[1], SINTER_BS_PHASE2_COMMITTED},
                                 {x, b[3], SINTER_BS_PHASE2_COMMITTED},
                                 {x, b[4], SINTER_BS_PHASE2_COMMITTED}};
    struct sinter_tc_cmd c1 = results_cmd(o1, 2);
    struct sinter_tc_cmd c2 = results_cmd(o2, 1);
    struct sinter_tc_cmd c3 = results_cmd(o3, 3);
    struct sinter_tc_cmd st = client_cmd(h, SINTER_TC_CMD_PHASE2_START, NULL);
    st.u.x.xid = XID(x);
    c1.now_ms = c2.now_ms = c3.now_ms = st.now_ms = h->now;
    size_t l1, l2, l3, l4;
    uint8_t *p1 = enc(&c1, &l1);
    uint8_t *p2 = enc(&c2, &l2);
    uint8_t *p3 = enc(&c3, &l3);
    uint8_t *p4 = enc(&st, &l4);
    uint8_t *bad = malloc(l2);
    assert_non_null(bad);
    memcpy(bad, p2, l2);
    bad[22] = SINTER_TC_MAX_RESULTS + 1; /* the count, right after the 22-byte header */
    uint64_t i0 = h->idx;
    struct sinter_tc_entry e[6] = {{i0 + 1, 1, p1, l1}, {i0 + 2, 1, p4, l4},  {i0 + 3, 1, bad, l2},
                                   {i0 + 4, 1, p2, l2}, {i0 + 5, 1, NULL, 0}, {i0 + 6, 1, p3, l3}};
    struct sinter_tc_result r[6];
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, 6, r), SINTER_OK);
    h->idx += 6;
    assert_int_equal(r[0].n_sub, 2);
    assert_int_equal(r[0].sub[0].rc, SINTER_OK);
    assert_int_equal(r[0].sub[0].status, SINTER_GS_COMMITTING);
    assert_int_equal(r[0].sub[1].rc, SINTER_OK);
    assert_int_equal(r[0].sub[1].status, SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(r[0].sub[1].branch_status, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    EXPECT(r[1], SINTER_OK, SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(r[1].n_sub, 0);
    assert_int_equal(r[2].rc, SINTER_EINVAL);
    assert_int_equal(r[2].n_sub, 0);
    assert_null(r[2].sub);
    assert_int_equal(r[3].n_sub, 1);
    assert_true(r[3].sub == r[0].sub + 2);
    assert_true(r[3].sub[0].branch_id == b[2]);
    assert_int_equal(r[3].sub[0].status, SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(r[5].n_sub, 3);
    assert_true(r[5].sub[0].branch_id == b[1]);
    assert_int_equal(r[5].sub[0].status, SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(r[5].sub[1].status, SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(r[5].sub[2].status, SINTER_GS_COMMITTED);
    assert_int_equal(gstatus(h, x), SINTER_GS_COMMITTED);
    /* Replayed after a restart: skipped, no answers, nothing applied twice. */
    uint32_t d = digest(h->f);
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, 6, r), SINTER_OK);
    for (int i = 0; i < 6; i++) {
        assert_true(r[i].skipped);
        assert_int_equal(r[i].n_sub, 0);
        assert_null(r[i].sub);
    }
    assert_int_equal(digest(h->f), d);
    free(p1);
    free(p2);
    free(p3);
    free(p4);
    free(bad);
}

/* END: explicit settle; idempotent once ended; refused while a branch is pending or before the
 * decision. */
static void end_command(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b = reg_ok(h, x);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_END, x), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_END, x), SINTER_ESTATE, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_END, x), SINTER_OK, SINTER_GS_COMMITTED);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_END, 123456), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
}

/* Phase-2 deadline: counted from the first attempt; past it the global ends *RetryTimeout and
 * stays; a delivery in flight at the deadline is still recorded on its branch. */
static void retry_timeout_from_first_attempt(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t b1 = reg_ok(h, x);
    uint64_t b2 = reg_ok(h, x);
    EXPECT(retry_timeout(h, x, 1000), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    h->now += 5000;
    /* No attempt recorded yet: the deadline has not started. */
    EXPECT(retry_timeout(h, x, 1000), SINTER_ESTATE, SINTER_GS_COMMITTING);
    uint64_t first = h->now;
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, x), SINTER_OK, SINTER_GS_COMMITTING);
    h->now += 10;
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, x), SINTER_OK, SINTER_GS_COMMITTING);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_true(g.phase2_first_ms == first); /* recorded once */
    sinter_tc_global_free(&g);
    EXPECT(result(h, x, b1, SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_RETRYING);
    h->now = first + 1000;
    EXPECT(retry_timeout(h, x, 1000), SINTER_ESTATE, SINTER_GS_COMMIT_RETRYING);
    h->now = first + 1001;
    EXPECT(retry_timeout(h, x, 1000), SINTER_OK, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    EXPECT(retry_timeout(h, x, 1000), SINTER_OK, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    /* A late result is recorded on the branch; the global stays for the operator. */
    EXPECT(result(h, x, b2, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    assert_int_equal(bstatus(h, x, b2), SINTER_BS_PHASE2_COMMITTED);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_ESTATE, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, x), SINTER_ESTATE,
           SINTER_GS_COMMIT_RETRY_TIMEOUT);

    /* Rollback side, with the first attempt carried by the first BRANCH_RESULT. */
    uint64_t y = begin(h, 3000);
    uint64_t c1 = reg_ok(h, y);
    EXPECT(decide(h, y, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_BRANCH_RESULT, NULL);
    c.u.result.xid = XID(y);
    c.u.result.branch_id = c1;
    c.u.result.outcome = SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE;
    c.u.result.first_attempt_ms = h->now - 500;
    EXPECT(apply(h, &c), SINTER_OK, SINTER_GS_ROLLBACK_RETRYING);
    h->now += 500; /* first + 1000: exactly at the deadline, not past it */
    EXPECT(retry_timeout(h, y, 1000), SINTER_ESTATE, SINTER_GS_ROLLBACK_RETRYING);
    h->now += 1;
    EXPECT(retry_timeout(h, y, 1000), SINTER_OK, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(decide(h, y, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    /* Timeout rollbacks end RollbackRetryTimeout too. */
    uint64_t z = begin(h, 10);
    reg_ok(h, z);
    h->now += 11;
    EXPECT(decide(h, z, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, z), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    h->now += 2;
    EXPECT(retry_timeout(h, z, 1), SINTER_OK, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(retry_timeout(h, 99999, 1), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
}

/* Admin: REDRIVE puts a failed global back to retrying on its own side; RESOLVE declares it done
 * on its own side only. */
static void redrive_and_resolve(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t x = global_with_done_branch(h, &b);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_REDRIVE, x), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_REDRIVE, x), SINTER_ESTATE, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_FAILED);
    h->now += 99;
    EXPECT(xid_cmd(h, SINTER_TC_CMD_REDRIVE, x), SINTER_OK, SINTER_GS_COMMIT_RETRYING);
    assert_int_equal(bstatus(h, x, b), SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_true(g.phase2_first_ms == h->now); /* the deadline restarts */
    assert_true(g.end_ms == 0);
    sinter_tc_global_free(&g);
    EXPECT(result(h, x, b, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);

    /* RESOLVE: only failed globals, only to their own side's success. */
    uint64_t y = global_with_done_branch(h, &b);
    EXPECT(resolve(h, y, SINTER_GS_COMMITTED), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, y, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, y), SINTER_OK, SINTER_GS_ROLLBACKING);
    h->now += 10;
    EXPECT(retry_timeout(h, y, 1), SINTER_OK, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(resolve(h, y, SINTER_GS_COMMITTED), SINTER_ESTATE, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(resolve(h, y, SINTER_GS_TIMEOUT_ROLLBACKED), SINTER_ESTATE,
           SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(resolve(h, y, SINTER_GS_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    EXPECT(resolve(h, y, SINTER_GS_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    /* A late delivery after the operator's resolution is recorded, the global stays. */
    EXPECT(result(h, y, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    /* REDRIVE of a RollbackRetryTimeout whose branches all ended meanwhile settles at once. */
    uint64_t z = global_with_done_branch(h, &b);
    EXPECT(decide(h, z, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, z), SINTER_OK, SINTER_GS_ROLLBACKING);
    h->now += 10;
    EXPECT(retry_timeout(h, z, 1), SINTER_OK, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(result(h, z, b, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK,
           SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_REDRIVE, z), SINTER_OK, SINTER_GS_ROLLBACKED);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_REDRIVE, 8888), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
}

/* Rollback side: every branch without a phase-2 end gets a rollback delivery, PhaseOne_Failed and
 * Registered ones included (a failed phase one may hide a PREPARE or a try whose commit outcome
 * is unknown; the RM makes that rollback safe), and the global settles only once each has a
 * rollback result. */
static void rollback_delivers_to_phase_one_failed(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t done = reg_ok(h, x);
    uint64_t failed = reg_ok(h, x);
    uint64_t silent = reg_ok(h, x); /* never reports phase one */
    EXPECT(report(h, x, done, SINTER_BS_PHASE1_DONE), SINTER_OK, SINTER_GS_BEGIN);
    EXPECT(report(h, x, failed, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, done, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, silent, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKING);
    /* Still in the phase-2 queue, and not settled, while the failed branch has no result. */
    uint64_t list[4];
    size_t n;
    assert_int_equal(sinter_tc_fsm_list_phase2(h->f, 0, list, 4, &n), SINTER_OK);
    assert_int_equal(n, 1);
    assert_true(list[0] == x);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_END, x), SINTER_ESTATE, SINTER_GS_ROLLBACKING);
    struct sinter_tc_result r = result(h, x, failed, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE);
    EXPECT(r, SINTER_OK, SINTER_GS_ROLLBACK_RETRYING);
    assert_int_equal(r.branch_status, SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE);
    EXPECT(result(h, x, failed, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    assert_int_equal(bstatus(h, x, failed), SINTER_BS_PHASE2_ROLLBACKED);
    EXPECT(result(h, x, failed, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    assert_int_equal(sinter_tc_fsm_list_phase2(h->f, 0, list, 4, &n), SINTER_OK);
    assert_int_equal(n, 0);

    /* A global whose only branch failed phase one does not end at the decision: the rollback is
     * delivered, and an unretryable answer fails the global like any other branch's. */
    uint64_t y = begin(h, 3000);
    uint64_t b = reg_ok(h, y);
    EXPECT(report(h, y, b, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    EXPECT(decide(h, y, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, y, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_ROLLBACK_FAILED);
    /* The same after a timeout rollback. */
    uint64_t z = begin(h, 10);
    uint64_t c = reg_ok(h, z);
    EXPECT(report(h, z, c, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    h->now += 11;
    EXPECT(decide(h, z, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(result(h, z, c, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKED);

    /* The phase-2 worker's predicate is the same rule. */
    assert_true(sinter_tc_branch_needs_phase2(SINTER_BS_REGISTERED));
    assert_true(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE1_DONE));
    assert_true(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE1_FAILED));
    assert_true(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE2_COMMIT_FAILED_RETRYABLE));
    assert_true(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE2_ROLLBACK_FAILED_RETRYABLE));
    assert_false(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE2_COMMITTED));
    assert_false(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE));
    assert_false(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE2_ROLLBACKED));
    assert_false(sinter_tc_branch_needs_phase2(SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE));
    assert_false(sinter_tc_branch_needs_phase2(0));
    assert_false(sinter_tc_branch_needs_phase2(4));
    assert_false(sinter_tc_branch_needs_phase2(99));
}

/* One atomic outcome: a commit is refused while any branch reported PhaseOne_Failed; the global
 * stays Begin (no decision recorded) and the TM must roll back. Registered branches that never
 * reported, and a global without branches, may still commit. */
static void commit_refused_after_phase_one_failed(void **state)
{
    struct h *h = *state;
    uint64_t x = begin(h, 3000);
    uint64_t ok = reg_ok(h, x);
    uint64_t bad = reg_ok(h, x);
    EXPECT(report(h, x, ok, SINTER_BS_PHASE1_DONE), SINTER_OK, SINTER_GS_BEGIN);
    EXPECT(report(h, x, bad, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    struct sinter_tc_cmd dc = client_cmd(h, SINTER_TC_CMD_DECIDE, "tm-1");
    dc.u.decide.xid = XID(x);
    dc.u.decide.target = SINTER_GS_COMMITTING;
    EXPECT(apply(h, &dc), SINTER_ESTATE, SINTER_GS_BEGIN);
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, NULL, NULL), SINTER_OK);
    assert_int_equal(g.status, SINTER_GS_BEGIN);
    assert_int_equal(g.decision, 0);
    assert_true(g.decided_ms == 0);
    sinter_tc_global_free(&g);
    uint64_t list[4];
    size_t n;
    assert_int_equal(sinter_tc_fsm_list_phase2(h->f, 0, list, 4, &n), SINTER_OK);
    assert_int_equal(n, 0);
    /* The TM's retry gets the same refusal; a fresh commit request too. */
    struct sinter_tc_result r = apply(h, &dc);
    EXPECT(r, SINTER_ESTATE, SINTER_GS_BEGIN);
    assert_true(r.duplicate);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_BEGIN);
    assert_int_equal(bstatus(h, x, ok), SINTER_BS_PHASE1_DONE);
    assert_int_equal(bstatus(h, x, bad), SINTER_BS_PHASE1_FAILED);
    /* Rollback is the way out, and then commit is the other side. */
    EXPECT(decide(h, x, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(decide(h, x, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, ok, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, x, bad, SINTER_BS_PHASE2_ROLLBACKED), SINTER_OK, SINTER_GS_ROLLBACKED);
    /* Nor does it block a timeout rollback. */
    uint64_t y = begin(h, 10);
    uint64_t b = reg_ok(h, y);
    EXPECT(report(h, y, b, SINTER_BS_PHASE1_FAILED), SINTER_OK, SINTER_GS_BEGIN);
    h->now += 11;
    EXPECT(decide(h, y, SINTER_GS_COMMITTING), SINTER_ESTATE, SINTER_GS_BEGIN);
    EXPECT(decide(h, y, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    /* Registered but unreported (a TCC try need not report): the commit is taken. */
    uint64_t z = begin(h, 3000);
    uint64_t u = reg_ok(h, z);
    EXPECT(decide(h, z, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, z, u, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    /* No branches at all: commits and ends at once (Seata). */
    uint64_t w = begin(h, 3000);
    EXPECT(decide(h, w, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTED);
}

/* ---- client sessions ---- */

/* A retried request (same client id and seq, re-stamped by another leader) returns its first
 * answer: no second global, no second branch, and a decision's first answer even after the state
 * moved on. */
static void client_retry_returns_first_answer(void **state)
{
    struct h *h = *state;
    struct sinter_tc_cmd bc = begin_cmd(h, 3000);
    struct sinter_tc_result r1 = apply(h, &bc);
    assert_int_equal(r1.rc, SINTER_OK);
    assert_false(r1.duplicate);
    h->now += 2000; /* the retry goes through a new leader with a later clock */
    struct sinter_tc_result r2 = apply(h, &bc);
    assert_int_equal(r2.rc, SINTER_OK);
    assert_true(r2.duplicate);
    assert_int_equal(r2.status, SINTER_GS_BEGIN);
    assert_int_equal(r2.xid.group, GROUP);
    assert_true(r2.xid.index == r1.xid.index);
    assert_true(count_all(h) == 1);
    uint64_t x = r1.xid.index;

    struct sinter_tc_cmd rc = register_cmd(h, x);
    struct sinter_tc_result b1 = apply(h, &rc);
    struct sinter_tc_result b2 = apply(h, &rc);
    assert_true(b2.duplicate);
    assert_true(b1.branch_id == b2.branch_id);
    assert_int_equal(b2.branch_status, SINTER_BS_REGISTERED);
    struct sinter_tc_global g;
    struct sinter_tc_branch *br;
    size_t n;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, x, &g, &br, &n), SINTER_OK);
    assert_int_equal(n, 1);
    sinter_tc_global_free(&g);
    sinter_tc_branches_free(br, n);

    struct sinter_tc_cmd dc = client_cmd(h, SINTER_TC_CMD_DECIDE, "tm-1");
    dc.u.decide.xid = XID(x);
    dc.u.decide.target = SINTER_GS_COMMITTING;
    EXPECT(apply(h, &dc), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, x, b1.branch_id, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    struct sinter_tc_result d2 = apply(h, &dc);
    EXPECT(d2, SINTER_OK, SINTER_GS_COMMITTING); /* the first answer */
    assert_true(d2.duplicate);

    /* Refusals are answers too: a late register retried returns the same refusal. */
    struct sinter_tc_cmd late = register_cmd(h, x);
    EXPECT(apply(h, &late), SINTER_ESTATE, SINTER_GS_COMMITTED);
    struct sinter_tc_result l2 = apply(h, &late);
    EXPECT(l2, SINTER_ESTATE, SINTER_GS_COMMITTED);
    assert_true(l2.duplicate);

    /* The same (client, seq) for a different request is a client bug: refused, not applied. */
    struct sinter_tc_cmd other = begin_cmd(h, 3000);
    other.seq = bc.seq;
    other.u.begin.timeout_ms = 4000;
    struct sinter_tc_result o = apply(h, &other);
    assert_int_equal(o.rc, SINTER_EINVAL);
    assert_false(o.duplicate);
    assert_true(count_all(h) == 1);
    /* Another client may use the same seq. */
    struct sinter_tc_cmd mine = begin_cmd(h, 3000);
    mine.client_id = B("tm-2");
    mine.seq = bc.seq;
    struct sinter_tc_result m = apply(h, &mine);
    assert_int_equal(m.rc, SINTER_OK);
    assert_false(m.duplicate);
    assert_true(count_all(h) == 2);
}

/* Forgotten answers (per-client window, session GC) make a retry fail with ESTALE instead of
 * applying it a second time. */
static void forgotten_sessions_refuse_retries(void **state)
{
    struct h *h = *state;
    struct sinter_tc_cmd old = begin_cmd(h, 3000);
    old.seq = 10;
    EXPECT(apply(h, &old), SINTER_OK, SINTER_GS_BEGIN);
    struct sinter_tc_cmd newer = begin_cmd(h, 3000);
    newer.seq = 10 + SINTER_TC_SESSION_WINDOW;
    EXPECT(apply(h, &newer), SINTER_OK, SINTER_GS_BEGIN);
    /* seq 10 fell out of the window: its answer is pruned and a retry is refused. */
    struct sinter_tc_result r = apply(h, &old);
    assert_int_equal(r.rc, SINTER_ESTALE);
    assert_false(r.duplicate);
    struct sinter_tc_cmd unseen = begin_cmd(h, 3000);
    unseen.seq = 9;
    assert_int_equal(apply(h, &unseen).rc, SINTER_ESTALE);
    assert_true(count_all(h) == 2);

    /* Session GC by the leader's cutoff time. */
    struct sinter_tc_cmd a = begin_cmd(h, 3000);
    a.client_id = B("tm-9");
    a.seq = 5;
    EXPECT(apply(h, &a), SINTER_OK, SINTER_GS_BEGIN);
    h->now += 1000;
    struct sinter_tc_cmd b = begin_cmd(h, 3000);
    b.client_id = B("tm-9");
    b.seq = 6;
    EXPECT(apply(h, &b), SINTER_OK, SINTER_GS_BEGIN);
    /* Answers created before now go; clients silent since now too, but only once they hold no
     * answer: tm-1's last answer goes in this very pass, so tm-1 is kept (its floor refuses a
     * retry of seq 10+W). */
    struct sinter_tc_result g = gc(h, 0, h->now, h->now, 100);
    assert_int_equal(g.rc, SINTER_OK);
    assert_true(g.sessions_removed == 2); /* tm-1 seq 10+W and tm-9 seq 5 */
    assert_true(g.clients_removed == 0);
    assert_int_equal(apply(h, &a).rc, SINTER_ESTALE);
    assert_int_equal(apply(h, &newer).rc, SINTER_ESTALE);
    struct sinter_tc_result again = apply(h, &b);
    assert_true(again.duplicate); /* created at h->now: kept */
    assert_true(count_all(h) == 4);
    /* Silent clients with no answers left are forgotten at the next GC (tm-1); tm-9 loses its
     * last answer in that pass and is kept until the one after. */
    h->now += 1000;
    g = gc(h, 0, h->now, h->now, 100);
    assert_true(g.sessions_removed == 1);
    assert_true(g.clients_removed == 1);
    assert_int_equal(apply(h, &b).rc, SINTER_ESTALE);
    g = gc(h, 0, h->now, h->now, 100);
    assert_true(g.sessions_removed == 0);
    assert_true(g.clients_removed == 1);
    assert_true(count_all(h) == 4);
}

/* The reviewer's scenario: a TM's BEGIN (seq 7) is answered, the client goes idle, GC forgets the
 * answer; a retry of seq 7 (after a leader change) must be refused, never begin a second global.
 * The client's row (its floor) is kept in the pass that raised the floor, even when the client
 * cutoff is as late as the decoder allows, and for the whole client retention after that. */
static void gc_keeps_idle_client_floor(void **state)
{
    struct h *h = *state;
    struct sinter_tc_cmd bc = begin_cmd(h, 3000);
    bc.client_id = B("tm-idle");
    bc.seq = 7;
    EXPECT(apply(h, &bc), SINTER_OK, SINTER_GS_BEGIN);
    h->now += 60000;
    struct sinter_tc_result g = gc(h, 0, h->now, h->now, 100);
    assert_int_equal(g.rc, SINTER_OK);
    assert_true(g.sessions_removed == 1);
    struct sinter_tc_result r = apply(h, &bc);
    assert_true(count_all(h) == 1); /* no second global */
    assert_int_equal(r.rc, SINTER_ESTALE);
    assert_false(r.duplicate);
    assert_true(g.clients_removed == 0);
    /* With the default retention the row survives GC after GC... */
    for (int i = 0; i < 3; i++) {
        h->now += 3600 * 1000;
        g = gc(h, 0, h->now, h->now - SINTER_TC_DEFAULT_CLIENT_RETENTION_MS, 100);
        assert_true(g.clients_removed == 0);
        assert_int_equal(apply(h, &bc).rc, SINTER_ESTALE);
    }
    assert_true(count_all(h) == 1);
    /* ...and goes once the client has been silent for longer than it. */
    h->now += SINTER_TC_DEFAULT_CLIENT_RETENTION_MS;
    g = gc(h, 0, h->now, h->now - SINTER_TC_DEFAULT_CLIENT_RETENTION_MS, 100);
    assert_true(g.clients_removed == 1);
    /* A client cutoff later than the session cutoff is not a valid command. */
    struct sinter_tc_cmd bad = client_cmd(h, SINTER_TC_CMD_GC, NULL);
    bad.u.gc.session_cutoff_ms = h->now - 10;
    bad.u.gc.client_cutoff_ms = h->now - 9;
    bad.u.gc.max_items = 10;
    uint8_t buf[64];
    size_t len;
    assert_int_equal(sinter_tc_cmd_encode(&bad, buf, sizeof buf, &len), SINTER_EBADVALUE);
}

/* ---- retention GC ---- */

/* GC removes only successfully finished globals (with their branches) that ended before the
 * cutoff, at most N per command, oldest first; failed ones stay forever. A late duplicate of a
 * removed global gets Finished. */
static void retention_gc_keeps_failed(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t committed = global_with_done_branch(h, &b);
    EXPECT(decide(h, committed, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, committed, b, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    h->now += 1;
    uint64_t rollbacked = begin(h, 3000);
    EXPECT(decide(h, rollbacked, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKED);
    h->now += 1;
    uint64_t tro = begin(h, 1);
    h->now += 2;
    EXPECT(decide(h, tro, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKED);
    uint64_t cf = global_with_done_branch(h, &b);
    EXPECT(decide(h, cf, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, cf, b, SINTER_BS_PHASE2_COMMIT_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_COMMIT_FAILED);
    uint64_t rf = global_with_done_branch(h, &b);
    EXPECT(decide(h, rf, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(result(h, rf, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_ROLLBACK_FAILED);
    uint64_t trf = global_with_done_branch(h, &b);
    h->now += 3001;
    EXPECT(decide(h, trf, SINTER_GS_TIMEOUT_ROLLBACKING), SINTER_OK, SINTER_GS_TIMEOUT_ROLLBACKING);
    EXPECT(result(h, trf, b, SINTER_BS_PHASE2_ROLLBACK_FAILED_UNRETRYABLE), SINTER_OK,
           SINTER_GS_TIMEOUT_ROLLBACK_FAILED);
    uint64_t crt = global_with_done_branch(h, &b);
    EXPECT(decide(h, crt, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, crt), SINTER_OK, SINTER_GS_COMMITTING);
    h->now += 2;
    EXPECT(retry_timeout(h, crt, 1), SINTER_OK, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    uint64_t rrt = global_with_done_branch(h, &b);
    EXPECT(decide(h, rrt, SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    EXPECT(xid_cmd(h, SINTER_TC_CMD_PHASE2_START, rrt), SINTER_OK, SINTER_GS_ROLLBACKING);
    h->now += 2;
    EXPECT(retry_timeout(h, rrt, 1), SINTER_OK, SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    uint64_t open_tx = begin(h, 3000);
    uint64_t in_flight = global_with_done_branch(h, &b);
    EXPECT(decide(h, in_flight, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    assert_true(count_all(h) == 10);

    /* A cutoff before every end removes nothing. */
    struct sinter_tc_result r = gc(h, T0, 0, 0, 100);
    assert_true(r.removed == 0);
    /* Oldest first, at most max per command. */
    h->now += SINTER_TC_DEFAULT_RETENTION_MS + 10;
    uint64_t cutoff = h->now - SINTER_TC_DEFAULT_RETENTION_MS;
    r = gc(h, cutoff, 0, 0, 2);
    assert_int_equal(r.rc, SINTER_OK);
    assert_true(r.removed == 2);
    assert_int_equal(gstatus(h, committed), SINTER_GS_FINISHED);
    assert_int_equal(gstatus(h, rollbacked), SINTER_GS_FINISHED);
    assert_int_equal(gstatus(h, tro), SINTER_GS_TIMEOUT_ROLLBACKED);
    r = gc(h, cutoff, 0, 0, 100);
    assert_true(r.removed == 1);
    r = gc(h, cutoff, 0, 0, 100);
    assert_true(r.removed == 0);
    assert_true(count_all(h) == 7);
    assert_int_equal(gstatus(h, cf), SINTER_GS_COMMIT_FAILED);
    assert_int_equal(gstatus(h, rf), SINTER_GS_ROLLBACK_FAILED);
    assert_int_equal(gstatus(h, trf), SINTER_GS_TIMEOUT_ROLLBACK_FAILED);
    assert_int_equal(gstatus(h, crt), SINTER_GS_COMMIT_RETRY_TIMEOUT);
    assert_int_equal(gstatus(h, rrt), SINTER_GS_ROLLBACK_RETRY_TIMEOUT);
    assert_int_equal(gstatus(h, open_tx), SINTER_GS_BEGIN);
    assert_int_equal(gstatus(h, in_flight), SINTER_GS_COMMITTING);
    /* The removed global's branches went with it; late duplicates get Finished. */
    struct sinter_tc_global g;
    assert_int_equal(sinter_tc_fsm_get_global(h->f, committed, &g, NULL, NULL), SINTER_ENOTFOUND);
    EXPECT(decide(h, committed, SINTER_GS_COMMITTING), SINTER_ENOTFOUND, SINTER_GS_FINISHED);
    EXPECT(result(h, committed, committed + 1, SINTER_BS_PHASE2_COMMITTED), SINTER_ENOTFOUND,
           SINTER_GS_FINISHED);
}

/* ---- apply mechanics ---- */

/* Restart: last applied index and term survive; re-applying the same indexes changes nothing. */
static void restart_applies_nothing_twice(void **state)
{
    struct h *h = *state;
    struct sinter_tc_cmd cmds[3];
    cmds[0] = begin_cmd(h, 3000);
    cmds[1] = begin_cmd(h, 3000);
    cmds[2] = begin_cmd(h, 3000);
    uint8_t *bufs[3];
    struct sinter_tc_entry e[4];
    for (int i = 0; i < 3; i++) {
        cmds[i].now_ms = h->now;
        size_t len;
        bufs[i] = enc(&cmds[i], &len);
        e[i].index = (uint64_t)(10 + i);
        e[i].term = 2;
        e[i].data = bufs[i];
        e[i].len = len;
    }
    struct sinter_tc_result res[4];
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, 3, res), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(h->f) == 12);
    uint32_t d = digest(h->f);
    sinter_tc_fsm_close(h->f);
    assert_int_equal(sinter_tc_fsm_open(&h->f, h->path, GROUP), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(h->f) == 12);
    assert_true(sinter_tc_fsm_last_applied_term(h->f) == 2);
    assert_int_equal(digest(h->f), d);
    /* The host replays from an older point: 11 and 12 are skipped, a no-op at 13 applies. */
    e[0] = e[1];
    e[1] = e[2];
    e[2].index = 13;
    e[2].term = 3;
    e[2].data = NULL;
    e[2].len = 0;
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, 3, res), SINTER_OK);
    assert_true(res[0].skipped && res[1].skipped);
    assert_int_equal(res[0].rc, SINTER_ESTALE);
    assert_false(res[2].skipped);
    assert_int_equal(res[2].rc, SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(h->f) == 13);
    assert_true(count_all(h) == 3);
    /* Opening with another group's id is refused. */
    struct sinter_tc_fsm *other;
    assert_int_equal(sinter_tc_fsm_open(&other, h->path, GROUP + 1), SINTER_ECONFIG);
    for (int i = 0; i < 3; i++) {
        free(bufs[i]);
    }
}

/* A batch is one SQLite transaction: refusals inside it are answers, but a fatal entry (a newer
 * command format) rolls back the whole batch. Malformed entries are refused and consume their
 * index. Indexes must increase. */
static void batch_atomicity(void **state)
{
    struct h *h = *state;
    struct sinter_tc_cmd b1 = begin_cmd(h, 3000);
    struct sinter_tc_cmd d1 = client_cmd(h, SINTER_TC_CMD_DECIDE, NULL);
    d1.u.decide.xid = XID(1);
    d1.u.decide.target = SINTER_GS_COMMITTING;
    size_t l1;
    size_t l2;
    b1.now_ms = d1.now_ms = h->now;
    uint8_t *p1 = enc(&b1, &l1);
    uint8_t *p2 = enc(&d1, &l2);
    uint8_t junk[5] = {1, 2, 3, 4, 5};
    uint8_t *newer = malloc(l1);
    assert_non_null(newer);
    memcpy(newer, p1, l1);
    newer[0] = SINTER_TC_CMD_VERSION + 1;
    struct sinter_tc_entry e[4] = {
        {1, 1, p1, l1}, {2, 1, p2, l2}, {3, 1, junk, sizeof junk}, {4, 1, newer, l1}};
    struct sinter_tc_result res[4];
    uint32_t d0 = digest(h->f);
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, 4, res), SINTER_EBADVERSION);
    assert_true(sinter_tc_fsm_last_applied(h->f) == 0);
    assert_int_equal(digest(h->f), d0);
    assert_true(count_all(h) == 0);
    /* Non-increasing indexes. */
    struct sinter_tc_entry bad[2] = {{5, 1, p1, l1}, {5, 1, p2, l2}};
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, bad, 2, res), SINTER_EINVAL);
    bad[1].index = 0;
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, bad + 1, 1, res), SINTER_EINVAL);
    /* Without the fatal entry: all three apply in one go, the junk one refused. */
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, 3, res), SINTER_OK);
    EXPECT(res[0], SINTER_OK, SINTER_GS_BEGIN);
    EXPECT(res[1], SINTER_OK, SINTER_GS_COMMITTED);
    assert_int_equal(res[2].rc, SINTER_EINVAL);
    assert_true(sinter_tc_fsm_last_applied(h->f) == 3);
    /* Version 0 is malformed, not "newer": refused and skipped, never fatal. */
    newer[0] = 0;
    struct sinter_tc_entry v0 = {4, 1, newer, l1};
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, &v0, 1, res), SINTER_OK);
    assert_int_equal(res[0].rc, SINTER_EINVAL);
    free(p1);
    free(p2);
    free(newer);
}

/* Listings and counts used by the workers, the admin API and metrics. */
static void queries(void **state)
{
    struct h *h = *state;
    uint64_t xs[6];
    for (int i = 0; i < 6; i++) {
        xs[i] = begin(h, 3000);
        reg_ok(h, xs[i]);
    }
    EXPECT(decide(h, xs[1], SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(decide(h, xs[3], SINTER_GS_ROLLBACKING), SINTER_OK, SINTER_GS_ROLLBACKING);
    uint64_t out[8];
    size_t n;
    assert_int_equal(sinter_tc_fsm_list_by_status(h->f, SINTER_GS_BEGIN, 0, out, 2, &n), SINTER_OK);
    assert_int_equal(n, 2);
    assert_true(out[0] == xs[0] && out[1] == xs[2]);
    assert_int_equal(sinter_tc_fsm_list_by_status(h->f, SINTER_GS_BEGIN, out[1], out, 8, &n),
                     SINTER_OK);
    assert_int_equal(n, 2);
    assert_true(out[0] == xs[4] && out[1] == xs[5]);
    assert_int_equal(sinter_tc_fsm_list_phase2(h->f, 0, out, 8, &n), SINTER_OK);
    assert_int_equal(n, 2);
    assert_true(out[0] == xs[1] && out[1] == xs[3]);
    assert_int_equal(sinter_tc_fsm_list_phase2(h->f, xs[1], out, 8, &n), SINTER_OK);
    assert_int_equal(n, 1);
    assert_true(count_status(h, SINTER_GS_BEGIN) == 4);
    assert_true(count_status(h, SINTER_GS_COMMITTING) == 1);
    assert_true(count_status(h, SINTER_GS_ROLLBACKING) == 1);
    uint32_t s;
    assert_int_equal(sinter_tc_fsm_status(h->f, 424242, &s), SINTER_ENOTFOUND);
    assert_int_equal(s, SINTER_GS_FINISHED);
    assert_int_equal(sinter_tc_fsm_status(h->f, xs[1], &s), SINTER_OK);
    assert_int_equal(s, SINTER_GS_COMMITTING);
    assert_int_equal(sinter_tc_fsm_list_by_status(h->f, 99, 0, out, 8, &n), SINTER_EINVAL);
    assert_int_equal(sinter_tc_fsm_group(h->f), GROUP);
}

/* ---- snapshots ---- */

struct snap_ctx {
    struct h *h;
    int steps;
    uint64_t xid;
};

/* Applies one entry between backup steps: apply is not stalled by a snapshot in progress. */
static void during_snapshot(void *arg)
{
    struct snap_ctx *s = arg;
    s->steps++;
    if (s->steps == 1) {
        EXPECT(decide(s->h, s->xid, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTED);
    }
    begin(s->h, 3000);
}

static void snapshot_install_roundtrip(void **state)
{
    struct h *h = *state;
    /* Enough data for several backup steps (256 pages each). */
    static uint8_t blob[60000];
    memset(blob, 0x5a, sizeof blob);
    uint64_t first = 0;
    for (int i = 0; i < 40; i++) {
        struct sinter_tc_cmd c = begin_cmd(h, 3000);
        c.u.begin.app_data.p = blob;
        c.u.begin.app_data.len = sizeof blob;
        struct sinter_tc_result r = apply(h, &c);
        assert_int_equal(r.rc, SINTER_OK);
        if (first == 0) {
            first = r.xid.index;
        }
    }
    uint32_t d_at_snapshot = digest(h->f);
    uint64_t idx_at_snapshot = sinter_tc_fsm_last_applied(h->f);
    char snap[160];
    snprintf(snap, sizeof snap, "%s/snap.db", h->dir);
    struct snap_ctx ctx = {h, 0, first};
    uint64_t sidx;
    uint64_t sterm;
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap, &sidx, &sterm, during_snapshot, &ctx),
                     SINTER_OK);
    assert_true(ctx.steps > 1);
    assert_true(sidx == idx_at_snapshot);
    assert_true(sterm == 1);
    assert_true(sinter_tc_fsm_last_applied(h->f) > sidx);

    /* A fresh replica of the same group installs it and has exactly the state at sidx. */
    char path2[160];
    snprintf(path2, sizeof path2, "%s/replica.db", h->dir);
    struct sinter_tc_fsm *f2;
    assert_int_equal(sinter_tc_fsm_open(&f2, path2, GROUP), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_install_from(f2, snap), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(f2) == sidx);
    assert_int_equal(digest(f2), d_at_snapshot);
    assert_int_equal(access(snap, F_OK), 0); /* the snapshot file is left in place */

    /* A second snapshot carries the entries applied during the first; installing it over the
     * replica's state brings it level with the leader. */
    char snap2[160];
    snprintf(snap2, sizeof snap2, "%s/snap2.db", h->dir);
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap2, &sidx, &sterm, NULL, NULL), SINTER_OK);
    assert_true(sidx == sinter_tc_fsm_last_applied(h->f));
    assert_int_equal(sinter_tc_fsm_install_from(f2, snap2), SINTER_OK);
    assert_int_equal(digest(f2), digest(h->f));
    assert_true(sinter_tc_fsm_last_applied(f2) == sidx);
    /* The installed database works as a live one. */
    struct h h2 = *h;
    h2.f = f2;
    h2.idx = sidx;
    uint64_t x = begin(&h2, 3000);
    assert_int_equal(gstatus(&h2, x), SINTER_GS_BEGIN);
    /* ...and survives a restart. */
    sinter_tc_fsm_close(f2);
    assert_int_equal(sinter_tc_fsm_open(&f2, path2, GROUP), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(f2) == x);

    /* Refused snapshots leave the state untouched: another group's, and garbage. */
    uint32_t before = digest(f2);
    struct sinter_tc_fsm *f3;
    char path3[160];
    snprintf(path3, sizeof path3, "%s/other.db", h->dir);
    assert_int_equal(sinter_tc_fsm_open(&f3, path3, GROUP + 1), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_install_from(f3, snap), SINTER_ECONFIG);
    sinter_tc_fsm_close(f3);
    char junk[160];
    snprintf(junk, sizeof junk, "%s/junk.db", h->dir);
    FILE *fp = fopen(junk, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 5000; i++) {
        fputc(i * 7, fp);
    }
    fclose(fp);
    assert_int_equal(sinter_tc_fsm_install_from(f2, junk), SINTER_ECORRUPT);
    assert_int_equal(digest(f2), before);
    sinter_tc_fsm_close(f2);
}

struct bg_snap {
    struct sinter_tc_fsm *f;
    char path[160];
    uint64_t index;
    uint64_t term;
    int rc;
};

static void *bg_snapshot(void *arg)
{
    struct bg_snap *b = arg;
    b->rc = sinter_tc_fsm_snapshot_to(b->f, b->path, &b->index, &b->term, NULL, NULL);
    return NULL;
}

/* The host takes snapshots on a background thread while the apply thread goes on: the snapshot
 * holds exactly the state at its index (every entry here is a BEGIN, so the snapshot has one
 * global per index up to it). */
static void snapshot_on_another_thread(void **state)
{
    struct h *h = *state;
    static uint8_t blob[60000];
    memset(blob, 0x33, sizeof blob);
    for (int i = 0; i < 40; i++) {
        struct sinter_tc_cmd c = begin_cmd(h, 3000);
        c.u.begin.app_data.p = blob;
        c.u.begin.app_data.len = sizeof blob;
        assert_int_equal(apply(h, &c).rc, SINTER_OK);
    }
    uint64_t start = h->idx;
    struct bg_snap b = {h->f, "", 0, 0, -1};
    snprintf(b.path, sizeof b.path, "%s/bg.db", h->dir);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_snapshot, &b), 0);
    for (int i = 0; i < 200; i++) {
        begin(h, 3000);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(b.rc, SINTER_OK);
    assert_true(b.index >= start && b.index <= h->idx);
    char path2[160];
    snprintf(path2, sizeof path2, "%s/replica.db", h->dir);
    struct sinter_tc_fsm *f2;
    assert_int_equal(sinter_tc_fsm_open(&f2, path2, GROUP), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_install_from(f2, b.path), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(f2) == b.index);
    uint64_t counts[SINTER_GS_MAX + 1];
    assert_int_equal(sinter_tc_fsm_count_by_status(f2, counts), SINTER_OK);
    assert_true(counts[SINTER_GS_BEGIN] == b.index);
    sinter_tc_fsm_close(f2);
}

struct busy_install {
    struct h *h;
    const char *snap;
    int steps;
    int rc;
    uint32_t digest_before;
    uint64_t applied_before;
    char msg[512];
};

/* Runs between backup steps, while the snapshot's reader holds a WAL snapshot: an entry committed
 * now is a WAL frame that no checkpoint can fold into the file until that reader is gone. */
static void install_while_reader(void *arg)
{
    struct busy_install *b = arg;
    if (++b->steps != 1) {
        return;
    }
    begin(b->h, 3000);
    b->digest_before = digest(b->h->f);
    b->applied_before = sinter_tc_fsm_last_applied(b->h->f);
    b->rc = sinter_tc_fsm_install_from(b->h->f, b->snap);
    snprintf(b->msg, sizeof b->msg, "%s", sinter_tc_fsm_errmsg(b->h->f));
}

/* An install whose WAL checkpoint cannot finish must not remove the WAL: it fails with EDB and a
 * message, and the old state (including what only the WAL held) stays in use. */
static void install_keeps_old_state_when_checkpoint_fails(void **state)
{
    struct h *h = *state;
    static uint8_t blob[60000];
    memset(blob, 0x77, sizeof blob);
    for (int i = 0; i < 40; i++) {
        struct sinter_tc_cmd c = begin_cmd(h, 3000);
        c.u.begin.app_data.p = blob;
        c.u.begin.app_data.len = sizeof blob;
        assert_int_equal(apply(h, &c).rc, SINTER_OK);
    }
    char snap[160];
    char snap2[160];
    snprintf(snap, sizeof snap, "%s/snap.db", h->dir);
    snprintf(snap2, sizeof snap2, "%s/snap2.db", h->dir);
    uint64_t sidx;
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap, &sidx, NULL, NULL, NULL), SINTER_OK);
    begin(h, 3000);
    struct busy_install b = {h, snap, 0, -1, 0, 0, ""};
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap2, NULL, NULL, install_while_reader, &b),
                     SINTER_OK);
    assert_true(b.steps >= 1);
    assert_int_equal(b.rc, SINTER_EDB);
    assert_non_null(strstr(b.msg, "checkpoint"));
    assert_int_equal(digest(h->f), b.digest_before);
    assert_true(sinter_tc_fsm_last_applied(h->f) == b.applied_before);
    /* Still usable, and everything survives a restart. */
    uint64_t x = begin(h, 3000);
    sinter_tc_fsm_close(h->f);
    assert_int_equal(sinter_tc_fsm_open(&h->f, h->path, GROUP), SINTER_OK);
    assert_true(sinter_tc_fsm_last_applied(h->f) == x);
    assert_int_equal(gstatus(h, x), SINTER_GS_BEGIN);
    /* With the reader gone the same install goes through. */
    assert_int_equal(sinter_tc_fsm_install_from(h->f, snap), SINTER_OK);
    assert_string_equal(sinter_tc_fsm_errmsg(h->f), "");
    assert_true(sinter_tc_fsm_last_applied(h->f) == sidx);
    assert_int_equal(gstatus(h, x), SINTER_GS_FINISHED);
}

/* A damaged snapshot (garbage over its pages, or cut short) is refused with ECORRUPT and a
 * message before anything is touched: the old state survives and stays usable. */
static void install_refuses_damaged_snapshot(void **state)
{
    struct h *h = *state;
    static uint8_t blob[20000];
    memset(blob, 0x42, sizeof blob);
    for (int i = 0; i < 10; i++) {
        struct sinter_tc_cmd c = begin_cmd(h, 3000);
        c.u.begin.app_data.p = blob;
        c.u.begin.app_data.len = sizeof blob;
        assert_int_equal(apply(h, &c).rc, SINTER_OK);
    }
    char snap[160];
    snprintf(snap, sizeof snap, "%s/snap.db", h->dir);
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap, NULL, NULL, NULL, NULL), SINTER_OK);
    begin(h, 3000);
    uint32_t before = digest(h->f);
    uint64_t applied = sinter_tc_fsm_last_applied(h->f);

    /* Garbage over pages 2..5 (the first tables' b-tree pages); page 1 (the header) intact. */
    FILE *fp = fopen(snap, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size > 8 * 4096);
    assert_int_equal(fseek(fp, 4096, SEEK_SET), 0);
    for (int i = 0; i < 4 * 4096; i++) {
        fputc((i * 131 + 7) & 0xff, fp);
    }
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(sinter_tc_fsm_install_from(h->f, snap), SINTER_ECORRUPT);
    assert_non_null(strstr(sinter_tc_fsm_errmsg(h->f), "snapshot"));
    assert_int_equal(digest(h->f), before);
    assert_true(sinter_tc_fsm_last_applied(h->f) == applied);

    /* A snapshot cut short. */
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap, NULL, NULL, NULL, NULL), SINTER_OK);
    fp = fopen(snap, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    size = ftell(fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(truncate(snap, size / 2), 0);
    assert_int_equal(sinter_tc_fsm_install_from(h->f, snap), SINTER_ECORRUPT);
    assert_int_not_equal(sinter_tc_fsm_errmsg(h->f)[0], '\0');
    assert_int_equal(digest(h->f), before);
    uint64_t x = begin(h, 3000);
    assert_int_equal(gstatus(h, x), SINTER_GS_BEGIN);
}

/* ---- randomized: two replicas, same entries ---- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int side_of(uint32_t s)
{
    if (sinter_global_status_is_commit_side(s)) {
        return 1;
    }
    if (sinter_global_status_is_rollback_side(s)) {
        return 2;
    }
    return 0;
}

/* Random command sequences (valid, invalid, duplicated, out of order) applied in random batches to
 * two fresh state machines: identical results, identical digests, and no global ever crosses from
 * one side to the other. */
static void randomized_replicas_agree(void **state)
{
    struct h *h = *state;
    char path2[160];
    snprintf(path2, sizeof path2, "%s/replica.db", h->dir);
    struct sinter_tc_fsm *f2;
    assert_int_equal(sinter_tc_fsm_open(&f2, path2, GROUP), SINTER_OK);
    enum { MAXX = 4096 };
    static int side[MAXX];
    memset(side, 0, sizeof side);
    uint64_t seed = 0xC0FFEEull;
    static uint64_t known_x[MAXX];
    static uint64_t known_b[MAXX][2];
    size_t n_known_x = 0;
    size_t n_known_b = 0;
    int n_ok = 0;
    int n_sub_ok = 0;
    uint64_t seqs[2] = {0, 0};
    uint64_t now = T0;
    uint64_t idx = 0;
    for (int batch = 0; batch < 500; batch++) {
        size_t n = 1 + rnd(&seed) % 8;
        struct sinter_tc_entry e[8];
        uint8_t *bufs[8];
        for (size_t i = 0; i < n; i++) {
            now += rnd(&seed) % 400;
            struct sinter_tc_cmd c;
            memset(&c, 0, sizeof c);
            c.now_ms = now;
            /* Mostly known globals and branches, sometimes any index (unknown or wrong kind). */
            uint64_t x = idx > 0 ? 1 + rnd(&seed) % idx : 1;
            uint64_t b = idx > 0 ? 1 + rnd(&seed) % idx : 1;
            if (n_known_b > 0 && rnd(&seed) % 10 < 8) {
                size_t k = (size_t)(rnd(&seed) % n_known_b);
                x = known_b[k][0];
                b = known_b[k][1];
            }
            if (n_known_x > 0 && rnd(&seed) % 10 < 5) {
                x = known_x[n_known_x - 1 -
                            (size_t)(rnd(&seed) % (n_known_x < 20 ? n_known_x : 20))];
            }
            int ci = (int)(rnd(&seed) % 2);
            char *client = ci ? "c-a" : "c-b";
            /* Mostly a fresh seq; sometimes a recent one again (a retry, or a reused seq). */
            uint64_t seq = ++seqs[ci];
            if (rnd(&seed) % 5 == 0 && seqs[ci] > 5) {
                seq = seqs[ci] - rnd(&seed) % 5;
            }
            switch (rnd(&seed) % 10) {
            case 0:
            case 1:
                c.type = SINTER_TC_CMD_BEGIN;
                c.u.begin.app_id = B("app");
                c.u.begin.tx_name = B("t");
                c.u.begin.timeout_ms = 1 + rnd(&seed) % 3000;
                break;
            case 2:
            case 3:
                c.type = SINTER_TC_CMD_REGISTER_BRANCH;
                c.u.reg.xid = XID(x);
                c.u.reg.branch_type = SINTER_BT_XA;
                c.u.reg.resource_id = B("r");
                break;
            case 4:
                c.type = SINTER_TC_CMD_REPORT_BRANCH;
                c.u.report.xid = XID(x);
                c.u.report.branch_id = b;
                c.u.report.status =
                    rnd(&seed) % 2 ? SINTER_BS_PHASE1_DONE : SINTER_BS_PHASE1_FAILED;
                break;
            case 5: {
                static const uint8_t t[3] = {SINTER_GS_COMMITTING, SINTER_GS_ROLLBACKING,
                                             SINTER_GS_TIMEOUT_ROLLBACKING};
                c.type = SINTER_TC_CMD_DECIDE;
                c.u.decide.xid = XID(x);
                c.u.decide.target = t[rnd(&seed) % 3];
                break;
            }
            case 6:
            case 7:
                c.type = SINTER_TC_CMD_BRANCH_RESULT;
                c.u.result.xid = XID(x);
                c.u.result.branch_id = b;
                c.u.result.outcome = (uint8_t)(SINTER_BS_PHASE2_COMMITTED + rnd(&seed) % 6);
                if (rnd(&seed) % 3 == 0) {
                    /* A Phase2ReportBatch's outcomes: mostly known branches, repeats and
                     * siblings of one global included. */
                    c.type = SINTER_TC_CMD_BRANCH_RESULTS;
                    c.u.results.n = 1 + (uint32_t)(rnd(&seed) % 6);
                    for (uint32_t j = 0; j < c.u.results.n; j++) {
                        struct sinter_tc_cmd_branch_result *o = &c.u.results.r[j];
                        o->xid = XID(x);
                        o->branch_id = b;
                        if (n_known_b > 0 && rnd(&seed) % 10 < 8) {
                            size_t k = (size_t)(rnd(&seed) % n_known_b);
                            o->xid = XID(known_b[k][0]);
                            o->branch_id = known_b[k][1];
                        }
                        o->outcome = (uint8_t)(SINTER_BS_PHASE2_COMMITTED + rnd(&seed) % 6);
                    }
                }
                break;
            case 8:
                c.type = rnd(&seed) % 2 ? SINTER_TC_CMD_PHASE2_START : SINTER_TC_CMD_REDRIVE;
                c.u.x.xid = XID(x);
                if (rnd(&seed) % 3 == 0) {
                    c.type = SINTER_TC_CMD_RETRY_TIMEOUT;
                    c.u.retry_timeout.max_retry_ms = rnd(&seed) % 1000;
                }
                break;
            default:
                c.type = rnd(&seed) % 2 ? SINTER_TC_CMD_GC : SINTER_TC_CMD_RESOLVE;
                if (c.type == SINTER_TC_CMD_GC) {
                    c.u.gc.global_cutoff_ms = now - 20000 - rnd(&seed) % 20000;
                    c.u.gc.session_cutoff_ms = now - rnd(&seed) % 5000;
                    c.u.gc.client_cutoff_ms = c.u.gc.session_cutoff_ms - rnd(&seed) % 5000;
                    c.u.gc.max_items = 1 + (uint32_t)(rnd(&seed) % 5);
                } else {
                    static const uint8_t t[3] = {SINTER_GS_COMMITTED, SINTER_GS_ROLLBACKED,
                                                 SINTER_GS_TIMEOUT_ROLLBACKED};
                    c.u.resolve.xid = XID(x);
                    c.u.resolve.target = t[rnd(&seed) % 3];
                }
                break;
            }
            bool client_cmd_type = c.type == SINTER_TC_CMD_BEGIN ||
                                   c.type == SINTER_TC_CMD_REGISTER_BRANCH ||
                                   c.type == SINTER_TC_CMD_REPORT_BRANCH ||
                                   (c.type == SINTER_TC_CMD_DECIDE && rnd(&seed) % 2);
            if (client_cmd_type) {
                c.client_id = B(client);
                c.seq = seq;
            }
            size_t len;
            bufs[i] = enc(&c, &len);
            if (rnd(&seed) % 50 == 0) {
                len = len / 2; /* a malformed entry now and then */
            }
            e[i].index = ++idx;
            e[i].term = 1 + idx / 100;
            e[i].data = bufs[i];
            e[i].len = len;
        }
        struct sinter_tc_result r1[8];
        struct sinter_tc_result r2[8];
        assert_int_equal(sinter_tc_fsm_apply_batch(h->f, e, n, r1), SINTER_OK);
        assert_int_equal(sinter_tc_fsm_apply_batch(f2, e, n, r2), SINTER_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(r1[i].rc, r2[i].rc);
            assert_int_equal(r1[i].status, r2[i].status);
            assert_int_equal(r1[i].branch_status, r2[i].branch_status);
            assert_true(r1[i].xid.index == r2[i].xid.index);
            assert_true(r1[i].branch_id == r2[i].branch_id);
            assert_true(r1[i].removed == r2[i].removed);
            assert_true(r1[i].sessions_removed == r2[i].sessions_removed);
            assert_true(r1[i].clients_removed == r2[i].clients_removed);
            assert_int_equal(r1[i].duplicate, r2[i].duplicate);
            assert_int_equal(r1[i].n_sub, r2[i].n_sub);
            for (uint32_t j = 0; j < r1[i].n_sub; j++) {
                assert_int_equal(r1[i].sub[j].rc, r2[i].sub[j].rc);
                assert_int_equal(r1[i].sub[j].status, r2[i].sub[j].status);
                assert_int_equal(r1[i].sub[j].branch_status, r2[i].sub[j].branch_status);
                n_sub_ok += r1[i].sub[j].rc == SINTER_OK;
            }
            free(bufs[i]);
            if (r1[i].rc == SINTER_OK && !r1[i].duplicate) {
                n_ok++;
                if (r1[i].status == SINTER_GS_BEGIN && r1[i].branch_id == 0 &&
                    r1[i].xid.index == e[i].index && n_known_x < MAXX) {
                    known_x[n_known_x++] = r1[i].xid.index;
                }
                if (r1[i].branch_id == e[i].index && n_known_b < MAXX) {
                    known_b[n_known_b][0] = r1[i].xid.index;
                    known_b[n_known_b][1] = r1[i].branch_id;
                    n_known_b++;
                }
            }
        }
        assert_int_equal(digest(h->f), digest(f2));
        /* The side rule, checked over every global still present. */
        for (uint64_t x = 1; x <= idx && x < MAXX; x++) {
            uint32_t s;
            if (sinter_tc_fsm_status(h->f, x, &s) != SINTER_OK) {
                continue;
            }
            int sd = side_of(s);
            if (sd != 0) {
                assert_true(side[x] == 0 || side[x] == sd);
                side[x] = sd;
            } else {
                assert_int_equal(side[x], 0); /* never back to Begin */
            }
        }
    }
    /* The random run reached both sides and several end states. */
    uint64_t counts[SINTER_GS_MAX + 1];
    assert_int_equal(sinter_tc_fsm_count_by_status(h->f, counts), SINTER_OK);
    int distinct = 0;
    for (int i = 0; i <= SINTER_GS_MAX; i++) {
        distinct += counts[i] > 0;
    }
    assert_true(distinct >= 8);
    assert_true(n_ok > 500);    /* most commands were meaningful, not refusals */
    assert_true(n_sub_ok > 50); /* and BRANCH_RESULTS outcomes were accepted, not only refused */
    assert_true(counts[SINTER_GS_BEGIN] > 0);
    int sides_seen = 0;
    for (int x = 0; x < MAXX; x++) {
        sides_seen |= side[x];
    }
    assert_int_equal(sides_seen, 3);
    sinter_tc_fsm_close(f2);
}

/* ---- the previous version's index set ---- */

/* The index set of the first version: the partial index dropped for costing a page write per
 * BEGIN and per decision while no query plan used it, and the retention GC's index with its IN
 * spelling (an ephemeral table per status update), which globals_ended replaced
 * (sql/tc_schema.sql). */
#define V1_BEGIN_DEADLINE_SQL                                                                      \
    "CREATE INDEX globals_begin_deadline ON globals (deadline_ms, xid_index) WHERE status = 1; "   \
    "DROP INDEX globals_ended; "                                                                   \
    "CREATE INDEX globals_gc ON globals (end_ms, xid_index) WHERE status IN (9, 11, 13)"

/* Runs sql on the database file at path through a connection of its own. */
static void exec_on(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* How many indexes named name the database file at path holds (0 or 1). */
static int has_index(const char *path, const char *name)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM sqlite_schema "
                                        "WHERE type = 'index' AND name = ?1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return n;
}

/* The stored definition of index name in the file at path, runs of white space collapsed to one
 * space (SQLite keeps the CREATE text as written, minus IF NOT EXISTS). */
static void index_sql(const char *path, const char *name, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT sql FROM sqlite_schema "
                                        "WHERE type = 'index' AND name = ?1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    const char *t = (const char *)sqlite3_column_text(s, 0);
    assert_non_null(t);
    size_t n = 0;
    bool space = false;
    for (; *t != '\0' && n + 1 < cap; t++) {
        bool ws = *t == ' ' || *t == '\n' || *t == '\t' || *t == '\r';
        if (ws && space) {
            continue;
        }
        space = ws;
        out[n++] = ws ? ' ' : *t;
    }
    out[n] = '\0';
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A data directory and a snapshot made by a previous version (with globals_begin_deadline, and
 * globals_gc instead of globals_ended) open with the same state, get this version's index set, and
 * serve the timeout listing and the retention GC (which names globals_ended in INDEXED BY) as
 * before; new snapshots come with this version's set. */
static void previous_index_set_opens(void **state)
{
    struct h *h = *state;
    uint64_t b;
    uint64_t done = global_with_done_branch(h, &b);
    EXPECT(decide(h, done, SINTER_GS_COMMITTING), SINTER_OK, SINTER_GS_COMMITTING);
    EXPECT(result(h, done, b, SINTER_BS_PHASE2_COMMITTED), SINTER_OK, SINTER_GS_COMMITTED);
    uint64_t late = begin(h, 5);
    uint64_t open_tx = begin(h, 600000);
    uint64_t later = begin(h, 7);
    assert_int_equal(has_index(h->path, "globals_begin_deadline"), 0);

    /* The previous version's snapshot: this state with the index, a rollback-journal file. */
    char snap_new[160];
    char snap_old[160];
    snprintf(snap_new, sizeof snap_new, "%s/new.snap", h->dir);
    snprintf(snap_old, sizeof snap_old, "%s/old.snap", h->dir);
    uint64_t sidx;
    uint64_t sterm;
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap_new, &sidx, &sterm, NULL, NULL),
                     SINTER_OK);
    assert_int_equal(has_index(snap_new, "globals_begin_deadline"), 0);
    assert_int_equal(has_index(snap_new, "globals_gc"), 0);
    assert_int_equal(has_index(snap_new, "globals_ended"), 1);
    assert_int_equal(sinter_tc_fsm_snapshot_to(h->f, snap_old, &sidx, &sterm, NULL, NULL),
                     SINTER_OK);
    exec_on(snap_old, V1_BEGIN_DEADLINE_SQL);
    assert_int_equal(has_index(snap_old, "globals_begin_deadline"), 1);

    /* The previous version's data directory: the same file with the index. */
    uint32_t d = digest(h->f);
    uint64_t last = sinter_tc_fsm_last_applied(h->f);
    sinter_tc_fsm_close(h->f);
    h->f = NULL;
    exec_on(h->path, V1_BEGIN_DEADLINE_SQL);
    assert_int_equal(has_index(h->path, "globals_begin_deadline"), 1);
    assert_int_equal(has_index(h->path, "globals_gc"), 1);
    assert_int_equal(has_index(h->path, "globals_ended"), 0);
    assert_int_equal(sinter_tc_fsm_open(&h->f, h->path, GROUP), SINTER_OK);
    assert_int_equal(has_index(h->path, "globals_begin_deadline"), 0);
    assert_int_equal(has_index(h->path, "globals_gc"), 0);
    assert_int_equal(has_index(h->path, "globals_ended"), 1);
    /* open_db's copy of the index (GLOBALS_ENDED_SQL) is the schema file's, word for word: the
     * migrated file and a new one (the snapshot) hold the same definition. */
    char want[256];
    char got[256];
    index_sql(snap_new, "globals_ended", want, sizeof want);
    index_sql(h->path, "globals_ended", got, sizeof got);
    assert_string_equal(got, want);
    assert_int_equal(digest(h->f), d);
    assert_true(sinter_tc_fsm_last_applied(h->f) == last);

    /* The timeout listing: timed-out Begin globals, oldest deadline first, without the index. */
    uint64_t ids[8];
    size_t n = 0;
    assert_int_equal(sinter_tc_fsm_list_timed_out(h->f, h->now + 100, ids, 8, &n), SINTER_OK);
    assert_true(n == 2);
    assert_true(ids[0] == late && ids[1] == later);
    assert_int_equal(sinter_tc_fsm_list_timed_out(h->f, h->now + 100, ids, 1, &n), SINTER_OK);
    assert_true(n == 1 && ids[0] == late);

    /* The previous version's snapshot installs into a new replica with the same state. */
    char p2[160];
    snprintf(p2, sizeof p2, "%s/replica2.db", h->dir);
    struct sinter_tc_fsm *f2 = NULL;
    assert_int_equal(sinter_tc_fsm_open(&f2, p2, GROUP), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_install_from(f2, snap_old), SINTER_OK);
    assert_int_equal(has_index(p2, "globals_begin_deadline"), 0);
    assert_int_equal(has_index(p2, "globals_gc"), 0);
    assert_int_equal(has_index(p2, "globals_ended"), 1);
    assert_int_equal(digest(f2), d);
    assert_true(sinter_tc_fsm_last_applied(f2) == sidx);

    /* Both replicas apply the same entries to the same state: a timeout decision, then the
     * retention GC of the committed global. */
    h->now += 100;
    struct sinter_tc_cmd c = client_cmd(h, SINTER_TC_CMD_DECIDE, NULL);
    c.u.decide.xid = XID(late);
    c.u.decide.target = SINTER_GS_TIMEOUT_ROLLBACKING;
    c.now_ms = h->now;
    struct sinter_tc_cmd g;
    memset(&g, 0, sizeof g);
    g.type = SINTER_TC_CMD_GC;
    g.now_ms = h->now + SINTER_TC_DEFAULT_RETENTION_MS + 10;
    g.u.gc.global_cutoff_ms = g.now_ms - SINTER_TC_DEFAULT_RETENTION_MS;
    g.u.gc.max_items = 100;
    size_t l1;
    size_t l2;
    uint8_t *e1 = enc(&c, &l1);
    uint8_t *e2 = enc(&g, &l2);
    struct sinter_tc_entry es[2] = {{last + 1, 1, e1, l1}, {last + 2, 1, e2, l2}};
    struct sinter_tc_result r1[2];
    struct sinter_tc_result r2[2];
    assert_int_equal(sinter_tc_fsm_apply_batch(h->f, es, 2, r1), SINTER_OK);
    assert_int_equal(sinter_tc_fsm_apply_batch(f2, es, 2, r2), SINTER_OK);
    free(e1);
    free(e2);
    h->idx = last + 2;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r1[i].rc, SINTER_OK);
        assert_int_equal(r2[i].rc, r1[i].rc);
        assert_int_equal(r2[i].status, r1[i].status);
    }
    assert_int_equal(r1[0].status, SINTER_GS_TIMEOUT_ROLLBACKED);
    /* done and late (TimeoutRollbacked, ended before the cutoff) are removed, oldest end first. */
    assert_true(r1[1].removed == 2 && r2[1].removed == 2);
    assert_int_equal(gstatus(h, done), SINTER_GS_FINISHED);
    assert_int_equal(gstatus(h, late), SINTER_GS_FINISHED);
    assert_int_equal(gstatus(h, open_tx), SINTER_GS_BEGIN);
    assert_int_equal(digest(f2), digest(h->f));
    sinter_tc_fsm_close(f2);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(begin_creates_global),
        T(register_only_while_begin),
        T(report_branch_phase_one),
        T(commit_decision_and_repeats),
        T(rollback_decision_and_repeats),
        T(decision_without_phase2_settles),
        T(timeout_decision_rechecks_deadline),
        T(seata_commit_branch_committed),
        T(seata_commit_unretryable),
        T(seata_commit_retryable),
        T(seata_rollback_branch_rollbacked),
        T(seata_rollback_unretryable),
        T(seata_rollback_retryable),
        T(unretryable_waits_for_other_branches),
        T(branch_result_refusals),
        T(branch_results_equal_singles),
        T(branch_results_in_a_batch),
        T(end_command),
        T(retry_timeout_from_first_attempt),
        T(redrive_and_resolve),
        T(rollback_delivers_to_phase_one_failed),
        T(commit_refused_after_phase_one_failed),
        T(client_retry_returns_first_answer),
        T(forgotten_sessions_refuse_retries),
        T(gc_keeps_idle_client_floor),
        T(retention_gc_keeps_failed),
        T(restart_applies_nothing_twice),
        T(batch_atomicity),
        T(queries),
        T(snapshot_install_roundtrip),
        T(snapshot_on_another_thread),
        T(install_keeps_old_state_when_checkpoint_fails),
        T(install_refuses_damaged_snapshot),
        T(randomized_replicas_agree),
        T(previous_index_set_opens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
