/*
 * tc/http_render.c: /metrics text and the admin API's parsers, without a server.
 *   - a rendering with groups, counters and histogram observations passes the strict reader
 *     (HELP/TYPE per family, _total counters, cumulative buckets, +Inf == _count) and carries the
 *     exact values put in (globals by status name, raft indexes, leader flag, latency in seconds);
 *   - a group whose state could not be read has raft series but no globals series;
 *   - list queries: defaults, names and numbers for status, bounds, unknown parameters, escapes;
 *   - resolve targets, url decoding, base64 (RFC 4648 section 10 vectors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "promtext.h"

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/raft.h"
#include "sinter/types.h"
#include "tc/http_render.h"
#include "tc/metrics.h"

static double value_of(const char *text, const char *series)
{
    double v = -1;
    if (prom_value(text, series, &v) != 0) {
        fail_msg("series %s missing", series);
    }
    return v;
}

static void render_full(void **state)
{
    (void)state;
    static struct sinter_tc_metrics m; /* zeroed atomics */
    atomic_store(&m.requests[SINTER_MSG_GLOBAL_BEGIN], 7);
    atomic_store(&m.errors[SINTER_ENOTLEADER], 2);
    atomic_store(&m.phase2_deliveries, 11);
    atomic_store(&m.phase2_retries, 3);
    atomic_store(&m.phase2_lease_expired, 1);
    atomic_store(&m.phase2_reports[SINTER_BS_PHASE2_COMMITTED], 9);
    atomic_store(&m.timeouts, 4);
    atomic_store(&m.retry_timeouts, 5);
    atomic_store(&m.gc_removed, 6);
    atomic_store(&m.write_replies, 8);
    atomic_store(&m.write_reply_ns, 12500000);
    atomic_store(&m.leader_changes[1], 2);
    sinter_tc_hist_observe(&m.phase2_latency, 1);      /* le 0.001 */
    sinter_tc_hist_observe(&m.phase2_latency, 150);    /* le 0.200 */
    sinter_tc_hist_observe(&m.phase2_latency, 9999);   /* le 10.000 */
    sinter_tc_hist_observe(&m.phase2_latency, 700000); /* +Inf */

    struct sinter_tc_prom_group g[2];
    memset(g, 0, sizeof g);
    g[0] = (struct sinter_tc_prom_group){.group = 0,
                                         .role = SINTER_RAFT_LEADER,
                                         .leader = 3,
                                         .term = 5,
                                         .commit = 40,
                                         .applied = 39,
                                         .have_counts = true};
    g[0].counts[SINTER_GS_COMMITTING] = 12;
    g[0].counts[SINTER_GS_BEGIN] = 1;
    g[1] = (struct sinter_tc_prom_group){.group = 1,
                                         .role = SINTER_RAFT_FOLLOWER,
                                         .leader = 2,
                                         .term = 6,
                                         .commit = 8,
                                         .applied = 8,
                                         .error = SINTER_EIO,
                                         .have_counts = false};
    struct sinter_raft_host_stats hs = {.store_appends = 7,
                                        .store_append_entries = 90,
                                        .store_append_ns = 2500001000u,
                                        .apply_ns = 999999,
                                        .props_done = 5,
                                        .prop_queue_ns = 1000000,
                                        .prop_commit_ns = 4000000,
                                        .prop_apply_ns = 500000,
                                        .prop_complete_ns = 2000};
    struct sinter_transport_server_stats ts = {
        .connections = 12, .refused_connections = 3, .stalled_connections = 1, .bad_frames = 5};
    struct sinter_tc_buf b = {0};
    assert_int_equal(sinter_tc_prom_render(3, g, 2, &m, &hs, &ts, &b), SINTER_OK);
    char err[256];
    if (prom_check(b.p, err, sizeof err) != 0) {
        fail_msg("%s\n%s", err, b.p);
    }
    assert_true(value_of(b.p, "sinter_globals{group=\"0\",status=\"Committing\"}") == 12);
    assert_true(value_of(b.p, "sinter_globals{group=\"0\",status=\"Begin\"}") == 1);
    assert_true(value_of(b.p, "sinter_globals{group=\"0\",status=\"RollbackRetryTimeout\"}") == 0);
    double v;
    assert_int_equal(prom_value(b.p, "sinter_globals{group=\"0\",status=\"Finished\"}", &v), -1);
    assert_int_equal(prom_value(b.p, "sinter_globals{group=\"1\",status=\"Begin\"}", &v), -1);
    assert_true(value_of(b.p, "sinter_raft_term{group=\"1\"}") == 6);
    assert_true(value_of(b.p, "sinter_raft_commit_index{group=\"0\"}") == 40);
    assert_true(value_of(b.p, "sinter_raft_applied_index{group=\"0\"}") == 39);
    assert_true(value_of(b.p, "sinter_raft_is_leader{group=\"0\"}") == 1);
    assert_true(value_of(b.p, "sinter_raft_is_leader{group=\"1\"}") == 0);
    assert_true(value_of(b.p, "sinter_raft_group_failed{group=\"1\"}") == 1);
    assert_true(value_of(b.p, "sinter_raft_store_appends_total") == 7);
    assert_true(value_of(b.p, "sinter_raft_store_append_entries_total") == 90);
    assert_true(value_of(b.p, "sinter_raft_store_append_seconds_total") == 2.500001);
    assert_true(value_of(b.p, "sinter_raft_apply_seconds_total") == 0.000999);
    assert_true(value_of(b.p, "sinter_raft_loop_busy_seconds_total") == 0);
    assert_true(value_of(b.p, "sinter_raft_proposals_committed_total") == 5);
    assert_true(value_of(b.p, "sinter_raft_proposal_queue_seconds_total") == 0.001);
    assert_true(value_of(b.p, "sinter_raft_proposal_commit_seconds_total") == 0.004);
    assert_true(value_of(b.p, "sinter_raft_proposal_apply_seconds_total") == 0.0005);
    assert_true(value_of(b.p, "sinter_raft_proposal_complete_seconds_total") == 0.000002);
    assert_true(value_of(b.p, "sinter_write_replies_total") == 8);
    assert_true(value_of(b.p, "sinter_write_reply_seconds_total") == 0.0125);
    assert_true(value_of(b.p, "sinter_raft_leader_changes_total{group=\"1\"}") == 2);
    assert_true(value_of(b.p, "sinter_requests_total{type=\"GlobalBegin\"}") == 7);
    assert_true(value_of(b.p, "sinter_requests_total{type=\"GlobalCommit\"}") == 0);
    assert_true(value_of(b.p, "sinter_request_errors_total{code=\"SINTER_ENOTLEADER\"}") == 2);
    assert_true(value_of(b.p, "sinter_phase2_deliveries_total") == 11);
    assert_true(value_of(b.p, "sinter_phase2_retries_total") == 3);
    assert_true(value_of(b.p, "sinter_phase2_lease_expired_total") == 1);
    assert_true(value_of(b.p, "sinter_phase2_reports_total{status=\"PhaseTwo_Committed\"}") == 9);
    assert_true(value_of(b.p, "sinter_timeouts_total") == 4);
    assert_true(value_of(b.p, "sinter_retry_timeouts_total") == 5);
    assert_true(value_of(b.p, "sinter_gc_removed_total") == 6);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_bucket{le=\"0.001\"}") == 1);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_bucket{le=\"0.200\"}") == 2);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_bucket{le=\"10.000\"}") == 3);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_bucket{le=\"600.000\"}") == 3);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_bucket{le=\"+Inf\"}") == 4);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_count") == 4);
    assert_true(value_of(b.p, "sinter_phase2_latency_seconds_sum") == 710.150);
    assert_true(value_of(b.p, "sinter_node_info{node=\"3\"}") == 1);
    assert_true(value_of(b.p, "sinter_client_connections") == 12);
    assert_true(value_of(b.p, "sinter_client_connections_refused_total") == 3);
    assert_true(value_of(b.p, "sinter_client_connections_stalled_total") == 1);
    assert_true(value_of(b.p, "sinter_client_connections_bad_total") == 0);
    assert_true(value_of(b.p, "sinter_client_bad_frames_total") == 5);
    sinter_tc_buf_free(&b);
}

static void checker_catches_errors(void **state)
{
    (void)state;
    char err[256];
    /* The reader itself must refuse what the format forbids, or the test above proves little. */
    assert_int_equal(
        prom_check("# HELP a_total x\n# TYPE a_total counter\na_total 1\n", err, sizeof err), 0);
    assert_int_equal(prom_check("a 1\n", err, sizeof err), 1);
    assert_int_equal(prom_check("# HELP a x\n# TYPE a counter\na 1\n", err, sizeof err), 1);
    assert_int_equal(prom_check("# HELP a x\n# TYPE a gauge\na{b=1} 1\n", err, sizeof err), 1);
    assert_int_equal(prom_check("# HELP a x\n# TYPE a gauge\na one\n", err, sizeof err), 1);
    assert_int_equal(prom_check("# HELP a x\n# TYPE a gauge\na 1\na 2\n", err, sizeof err), 1);
    assert_int_equal(prom_check("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                                err, sizeof err),
                     1);
    assert_int_equal(prom_check("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\n"
                                "h_sum 1\nh_count 3\n",
                                err, sizeof err),
                     1);
}

static void list_query(void **state)
{
    (void)state;
    struct sinter_tc_list_query q;
    char err[160];
    assert_int_equal(sinter_tc_list_query_parse(NULL, 4, &q, err, sizeof err), SINTER_OK);
    assert_int_equal(q.status, 0);
    assert_false(q.has_group);
    assert_int_equal(q.after.index, 0);
    assert_int_equal(q.limit, SINTER_TC_LIST_DEFAULT_LIMIT);
    assert_int_equal(sinter_tc_list_query_parse("status=committing&group=3&after=3%3A17&limit=2", 4,
                                                &q, err, sizeof err),
                     SINTER_OK);
    assert_int_equal(q.status, SINTER_GS_COMMITTING);
    assert_true(q.has_group);
    assert_int_equal(q.group, 3);
    assert_int_equal(q.after.group, 3);
    assert_int_equal(q.after.index, 17);
    assert_int_equal(q.limit, 2);
    assert_int_equal(sinter_tc_list_query_parse("status=16", 4, &q, err, sizeof err), SINTER_OK);
    assert_int_equal(q.status, SINTER_GS_COMMIT_RETRY_TIMEOUT);
    const char *bad[] = {"status=Finished", "status=15", "status=8",    "status=nope",
                         "group=4",         "group=-1",  "limit=0",     "limit=501",
                         "after=0:0",       "after=x",   "colour=blue", "status=%zz"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sinter_tc_list_query_parse(bad[i], 4, &q, err, sizeof err) != SINTER_EINVAL) {
            fail_msg("accepted '%s'", bad[i]);
        }
        assert_true(err[0] != '\0');
    }
    char v[16];
    assert_int_equal(sinter_tc_query_get("a=1&target=timeout%5Frollbacked", "target", v, sizeof v),
                     SINTER_EINVAL); /* longer than cap says: refused, never truncated */
    char w[32];
    assert_int_equal(sinter_tc_query_get("a=1&target=timeout%5Frollbacked", "target", w, sizeof w),
                     SINTER_OK);
    assert_string_equal(w, "timeout_rollbacked");
    assert_int_equal(sinter_tc_query_get("a=1", "target", v, sizeof v), SINTER_ENOTFOUND);
    assert_int_equal(sinter_tc_query_get(NULL, "target", v, sizeof v), SINTER_ENOTFOUND);
}

static void targets_and_decoding(void **state)
{
    (void)state;
    uint32_t s = 0;
    assert_int_equal(sinter_tc_resolve_target_parse("committed", &s), SINTER_OK);
    assert_int_equal(s, SINTER_GS_COMMITTED);
    assert_int_equal(sinter_tc_resolve_target_parse("Rollbacked", &s), SINTER_OK);
    assert_int_equal(s, SINTER_GS_ROLLBACKED);
    assert_int_equal(sinter_tc_resolve_target_parse("TimeoutRollbacked", &s), SINTER_OK);
    assert_int_equal(s, SINTER_GS_TIMEOUT_ROLLBACKED);
    assert_int_equal(sinter_tc_resolve_target_parse("timeout_rollbacked", &s), SINTER_OK);
    assert_int_equal(sinter_tc_resolve_target_parse("committing", &s), SINTER_EINVAL);
    assert_int_equal(sinter_tc_resolve_target_parse(NULL, &s), SINTER_EINVAL);
    char out[16];
    assert_int_equal(sinter_tc_url_decode("0%3a42", 6, out, sizeof out), SINTER_OK);
    assert_string_equal(out, "0:42");
    assert_int_equal(sinter_tc_url_decode("a+b", 3, out, sizeof out), SINTER_OK);
    assert_string_equal(out, "a+b"); /* '+' is a space only in forms, not in paths */
    assert_int_equal(sinter_tc_url_decode("%4", 2, out, sizeof out), SINTER_EINVAL);
    assert_int_equal(sinter_tc_url_decode("%00", 3, out, sizeof out), SINTER_EINVAL);
    assert_int_equal(sinter_tc_url_decode("0123456789abcdef", 16, out, sizeof out), SINTER_EINVAL);
}

static void base64(void **state)
{
    (void)state;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char out[16];
        size_t n = strlen(in[i]);
        assert_int_equal(sinter_tc_base64_len(n), strlen(want[i]));
        sinter_tc_base64((const uint8_t *)in[i], n, out);
        assert_string_equal(out, want[i]);
    }
    const uint8_t bin[3] = {0xff, 0x00, 0xfe};
    char out[8];
    sinter_tc_base64(bin, 3, out);
    assert_string_equal(out, "/wD+");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(render_full), cmocka_unit_test(checker_catches_errors),
        cmocka_unit_test(list_query),  cmocka_unit_test(targets_and_decoding),
        cmocka_unit_test(base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
