/*
 * sinter-tc's HTTP endpoints (tc/http.c) on a real 3-node cluster on loopback, checked with real
 * HTTP/1.0 requests over plain sockets:
 *
 *   - /health answers 200 on every node once each group has a leader, every node names the same
 *     leader per group with its HTTP address, and the leader itself reports role "leader";
 *   - transactions are driven through the client wire protocol (begin / register / report /
 *     commit / rollback) into five statuses; /metrics on every node then passes a strict reader
 *     of the Prometheus text format (tests/lib/promtext.h) and its sinter_globals series add up
 *     to exactly the globals created, per status;
 *   - the admin listing, paged two at a time across groups, returns exactly those globals with
 *     their status; filters by status name, code and group; bad parameters are 400;
 *   - a global shows every field and its branch (resource, status, app data in base64); an
 *     unknown xid is 404 with status Finished; a malformed xid is 400;
 *   - redrive / resolve: no or a wrong bearer secret -> 401; on the leader with the secret, on a
 *     global that is not failed -> 409; resolve without or with a bad target -> 400; a follower
 *     answers 421 naming the leader's id and HTTP address; GET on them -> 405.
 *     (A successful redrive / resolve needs a really failed global, which only the phase-2 driver
 *     produces: tests/integration/tc_cluster/test_tc_workers.c does that with its fake RM and
 *     sinterctl, and the fsm's unit tests cover the transitions. Here the HTTP paths around them.)
 *   - with two of three nodes stopped, /health on the last one turns 503.
 *   - sinterctl (cli/sinterctl.c), the real binary: health, metrics, list (filtered), show (table
 *     and --json), an unknown xid (exit 1, the server's 404), redrive without a secret (exit 2),
 *     with a wrong one (exit 1, 401), at a follower (follows the 421 to the leader, whose 409
 *     comes back), a node that does not listen (exit 3), and health without a quorum (exit 1).
 *
 * The cluster and the raw protocol client come from tests/lib (tccluster.h, tcproto.h).
 * Processes are stopped by PID; every wait is bounded and polls.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>

#include "promtext.h"
#include "tccluster.h"
#include "tcproto.h"
#include "testproc.h"

#include "sinter/error.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#define NODES   3
#define GROUPS  2
#define WAIT_MS 30000
#define SECRET  "http-test-secret"

static const char *g_bin; /* sinter-tc */
static const char *g_ctl; /* sinterctl */
static struct sinter_tcc C;
static struct sinter_tcc_node *const N = C.node; /* N[1..NODES] */
static struct sinter_raw P;

/* ---- HTTP ----------------------------------------------------------------------------------- */

struct http_res {
    int status;
    char *body; /* malloc'ed, NUL terminated */
};

/* One HTTP/1.0 request to node i (the server closes after the answer). 0, or -1 when the node
 * could not be reached or answered nothing parseable. */
static int http(int i, const char *method, const char *path, const char *auth, const char *body,
                struct http_res *out)
{
    out->status = 0;
    out->body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)N[i].http_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: %zu\r\n\r\n%s",
                     method, path, auth ? "Authorization: " : "", auth ? auth : "",
                     auth ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep == NULL || sscanf(buf, "HTTP/1.%*c %d", &out->status) != 1) {
        free(buf);
        return -1;
    }
    out->body = strdup(sep + 4);
    free(buf);
    return 0;
}

/* Request that must be answered; returns the parsed JSON body (caller decrefs), *status set. */
static json_t *http_json(int i, const char *method, const char *path, const char *auth,
                         const char *body, int *status)
{
    struct http_res r;
    if (http(i, method, path, auth, body, &r) != 0) {
        fail_msg("node %d: %s %s: no answer", i, method, path);
    }
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    if (j == NULL) {
        fail_msg("node %d: %s %s: %d, not JSON: %s", i, method, path, r.status, r.body);
    }
    *status = r.status;
    free(r.body);
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL) {
        fail_msg("no string member '%s'", key);
    }
    return s;
}

/* An error answer: expected HTTP status and "code". */
static json_t *expect_error(int i, const char *method, const char *path, const char *auth,
                            const char *body, int want_status, const char *want_code)
{
    int st = 0;
    json_t *j = http_json(i, method, path, auth, body, &st);
    if (st != want_status || strcmp(jstr(j, "code"), want_code) != 0) {
        char *d = json_dumps(j, 0);
        fail_msg("node %d: %s %s: got %d %s, want %d %s", i, method, path, st, d, want_status,
                 want_code);
    }
    assert_non_null(json_string_value(json_object_get(j, "error")));
    return j;
}

/* ---- sinterctl ------------------------------------------------------------------------------ */

/* Runs sinterctl --http <node i's URL> ARGS... with SINTER_SECRET set to secret (NULL: unset)
 * and SINTER_HTTP unset; checks its exit code and that stdout contains every string of want_out
 * (NULL-terminated) and stderr contains want_err (NULL: anything). Returns the output. */
static struct sinter_test_output ctl(int i, const char *secret, int want_exit,
                                     const char *const *want_out, const char *want_err, ...)
{
    char *args[17];
    int a = 0;
    char url[80];
    if (i > 0) {
        snprintf(url, sizeof url, "%s", N[i].http_url);
    } else {
        snprintf(url, sizeof url, "http://127.0.0.1:%d", -i); /* a port nobody listens on */
    }
    va_list ap;
    va_start(ap, want_err);
    for (char *x; (x = va_arg(ap, char *)) != NULL && a < 16;) {
        args[a++] = x;
    }
    va_end(ap);
    args[a] = NULL;
    struct sinter_test_output o;
    assert_int_equal(sinter_tcc_ctl(g_ctl, url, secret, args, &o), 0);
    bool ok = o.exit_code == want_exit && (want_err == NULL || strstr(o.err, want_err) != NULL);
    for (const char *const *w = want_out; w != NULL && *w != NULL; w++) {
        ok = ok && strstr(o.out, *w) != NULL;
    }
    if (!ok) {
        fail_msg("sinterctl %s ...: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", args[0],
                 o.exit_code, want_exit, o.out, o.err);
    }
    return o;
}

#define OUT(...) ((const char *const[]){__VA_ARGS__, NULL})

/* True when out (a sinterctl table) has a row whose first cell is xid. A bare strstr also
 * matches other cells: the BEGIN_UTC column's "...T01:30:15.520Z" contains "1:3", so "xid 1:3
 * is not listed" failed whenever the clock read x1:3x (seen in a CI-like run at 01:30). */
static bool has_row(const char *out, const char *xid)
{
    size_t n = strlen(xid);
    for (const char *l = out; l != NULL && *l != '\0';) {
        if (strncmp(l, xid, n) == 0 && (l[n] == ' ' || l[n] == '\n' || l[n] == '\0')) {
            return true;
        }
        l = strchr(l, '\n');
        l = l != NULL ? l + 1 : NULL;
    }
    return false;
}

static void ctl_free(struct sinter_test_output o)
{
    sinter_test_output_free(&o);
}

/* ---- /health -------------------------------------------------------------------------------- */

/* Polls /health on every live node until all answer 200 and agree on each group's leader, and
 * that leader reports role "leader". Fills leaders[g] with node indexes. */
static void wait_health(int leaders[GROUPS])
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    while (sinter_test_now_ms() < end) {
        bool ok = true;
        uint64_t lid[GROUPS] = {0};
        int leader_role[GROUPS] = {0};
        for (int i = 1; i <= NODES && ok; i++) {
            if (N[i].pid <= 0) {
                continue;
            }
            struct http_res r;
            if (http(i, "GET", "/health", NULL, NULL, &r) != 0 || r.status != 200) {
                ok = false;
                free(r.body);
                break;
            }
            json_t *j = json_loads(r.body, 0, NULL);
            free(r.body);
            assert_non_null(j);
            assert_int_equal(json_integer_value(json_object_get(j, "node")), N[i].id);
            assert_string_equal(jstr(j, "status"), "ok");
            assert_string_equal(jstr(j, "http"), N[i].http_url);
            json_t *gs = json_object_get(j, "groups");
            assert_int_equal(json_array_size(gs), GROUPS);
            for (size_t g = 0; g < GROUPS; g++) {
                json_t *e = json_array_get(gs, g);
                assert_int_equal(json_integer_value(json_object_get(e, "group")), g);
                assert_true(json_is_null(json_object_get(e, "error")));
                uint64_t l = (uint64_t)json_integer_value(json_object_get(e, "leader"));
                assert_true(json_integer_value(json_object_get(e, "term")) > 0);
                assert_true(json_integer_value(json_object_get(e, "applied")) <=
                            json_integer_value(json_object_get(e, "commit")));
                if (lid[g] != 0 && lid[g] != l) {
                    ok = false; /* nodes still disagree: an election is settling */
                }
                lid[g] = l;
                if (l == N[i].id) {
                    ok = ok && strcmp(jstr(e, "role"), "leader") == 0;
                    leader_role[g] = i;
                }
                assert_string_equal(jstr(e, "leader_http"), N[l].http_url);
            }
            json_decref(j);
        }
        for (int g = 0; g < GROUPS && ok; g++) {
            ok = leader_role[g] != 0;
            leaders[g] = leader_role[g];
        }
        if (ok) {
            return;
        }
        sinter_test_sleep_ms(100);
    }
    fail_msg("/health did not answer 200 with agreeing leaders on every node in %d ms", WAIT_MS);
}

/* ---- client wire protocol (asserting wrappers of tcproto.h) -------------------------------- */

static struct sinter_xid begin(void)
{
    struct sinter_xid x = {0, 0};
    assert_int_equal(sinter_raw_begin(&P, 0, 600000, &x, NULL), SINTER_OK);
    return x;
}

/* A branch on res, registered and reported done in phase one. */
static uint64_t branch(struct sinter_xid x, const char *res)
{
    uint64_t b = 0;
    assert_int_equal(sinter_raw_branch_register(&P, x, res, 0, &b), SINTER_OK);
    assert_int_equal(sinter_raw_branch_report(&P, x, b, res, SINTER_BS_PHASE1_DONE, 0), SINTER_OK);
    return b;
}

static uint32_t end_global(struct sinter_xid x, bool commit)
{
    uint32_t st = 0;
    assert_int_equal(sinter_raw_end(&P, x, commit, 0, 0, 0, &st), SINTER_OK);
    return st;
}

/* ---- the scenario --------------------------------------------------------------------------- */

#define NX 5
static struct sinter_xid X[NX];
static uint32_t XS[NX]; /* expected status */
static char XT[NX][SINTER_XID_STRLEN];

/* Every node's /metrics is valid and its sinter_globals add up to the globals created. */
static void check_metrics(void)
{
    double begins = 0;
    for (int i = 1; i <= NODES; i++) {
        uint64_t end = sinter_test_now_ms() + WAIT_MS;
        for (;;) {
            struct http_res r;
            assert_int_equal(http(i, "GET", "/metrics", NULL, NULL, &r), 0);
            assert_int_equal(r.status, 200);
            char err[300];
            if (prom_check(r.body, err, sizeof err) != 0) {
                fail_msg("node %d /metrics: %s", i, err);
            }
            bool match = true;
            for (uint32_t s = 1; s <= SINTER_GS_MAX; s++) {
                if (!sinter_global_status_valid(s) || s == SINTER_GS_FINISHED) {
                    continue;
                }
                double sum = 0;
                for (int g = 0; g < GROUPS; g++) {
                    char series[128];
                    snprintf(series, sizeof series, "sinter_globals{group=\"%d\",status=\"%s\"}", g,
                             sinter_global_status_name(s));
                    double v = -1;
                    assert_int_equal(prom_value(r.body, series, &v), 0);
                    sum += v;
                }
                double want = 0;
                for (int k = 0; k < NX; k++) {
                    want += XS[k] == s;
                }
                match = match && sum == want;
            }
            double v = 0;
            assert_int_equal(prom_value(r.body, "sinter_requests_total{type=\"GlobalBegin\"}", &v),
                             0);
            /* The client listener's series: the test's own TM is connected to every node. */
            double conns = 0, refused = -1;
            assert_int_equal(prom_value(r.body, "sinter_client_connections", &conns), 0);
            assert_true(conns >= 1);
            assert_int_equal(
                prom_value(r.body, "sinter_client_connections_refused_total", &refused), 0);
            assert_true(refused == 0);
            for (int g = 0; g < GROUPS; g++) {
                char series[96];
                snprintf(series, sizeof series, "sinter_raft_leader_changes_total{group=\"%d\"}",
                         g);
                double lc = 0;
                assert_int_equal(prom_value(r.body, series, &lc), 0);
                assert_true(lc >= 1); /* every node saw at least the first leader */
            }
            /* Every node wrote and applied the globals' entries through its own log: the host's
             * counters show it (an append carries at least one entry). */
            double appends = 0, entries = 0, applied = 0;
            assert_int_equal(prom_value(r.body, "sinter_raft_store_appends_total", &appends), 0);
            assert_int_equal(prom_value(r.body, "sinter_raft_store_append_entries_total", &entries),
                             0);
            assert_int_equal(prom_value(r.body, "sinter_raft_apply_entries_total", &applied), 0);
            assert_true(appends >= 1 && entries >= appends && applied >= 1);
            free(r.body);
            if (match) {
                begins += v;
                break;
            }
            /* A follower applies a moment after the leader: poll. */
            if (sinter_test_now_ms() > end) {
                fail_msg("node %d: sinter_globals never matched the globals created", i);
            }
            sinter_test_sleep_ms(100);
        }
    }
    assert_true(begins >= NX); /* each begin counted by the node that served it */
}

/* Pages through the listing on node i two at a time; true when it is exactly X with XS. */
static bool listing_matches(int i)
{
    bool seen[NX] = {false};
    int total = 0;
    char after[64] = "";
    for (int page = 0; page < 10; page++) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/globals?limit=2%s%s", after[0] ? "&after=" : "",
                 after);
        int st = 0;
        json_t *j = http_json(i, "GET", path, NULL, NULL, &st);
        assert_int_equal(st, 200);
        json_t *a = json_object_get(j, "globals");
        assert_true(json_array_size(a) <= 2);
        for (size_t k = 0; k < json_array_size(a); k++) {
            json_t *e = json_array_get(a, k);
            total++;
            for (int x = 0; x < NX; x++) {
                if (strcmp(jstr(e, "xid"), XT[x]) == 0) {
                    seen[x] = json_integer_value(json_object_get(e, "status_code")) == XS[x] &&
                              strcmp(jstr(e, "status"), sinter_global_status_name(XS[x])) == 0;
                }
            }
        }
        json_t *next = json_object_get(j, "next_after");
        bool more = json_is_string(next);
        if (more) {
            snprintf(after, sizeof after, "%s", json_string_value(next));
        }
        json_decref(j);
        if (!more) {
            break;
        }
    }
    bool all = total == NX;
    for (int x = 0; x < NX; x++) {
        all = all && seen[x];
    }
    return all;
}

/* xids in a listing answer (space separated), for exact comparisons. */
static void list_xids(int i, const char *query, char *out, size_t cap)
{
    char path[200];
    snprintf(path, sizeof path, "/api/v1/globals?%s", query);
    int st = 0;
    json_t *j = http_json(i, "GET", path, NULL, NULL, &st);
    assert_int_equal(st, 200);
    out[0] = '\0';
    json_t *a = json_object_get(j, "globals");
    for (size_t k = 0; k < json_array_size(a); k++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? " " : "", jstr(json_array_get(a, k), "xid"));
    }
    json_decref(j);
}

static void tc_http(void **state)
{
    (void)state;
    assert_int_equal(sinter_tcc_init(&C, g_bin, "tc-http", NODES, GROUPS, SECRET, NULL), 0);
    assert_int_equal(sinter_raw_open(&P, &C, SECRET, "tc-http-test", NULL), SINTER_OK);
    assert_int_equal(sinter_tcc_start_all(&C), 0);

    int leaders[GROUPS];
    wait_health(leaders);
    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(sinter_raw_register(&P, i, 0), SINTER_OK);
    }

    /* Five globals in five statuses. */
    X[0] = begin();
    branch(X[0], "account-a");
    XS[0] = end_global(X[0], true);
    assert_int_equal(XS[0], SINTER_GS_COMMITTING); /* a branch waits for phase 2 */
    X[1] = begin();
    XS[1] = end_global(X[1], true);
    assert_int_equal(XS[1], SINTER_GS_COMMITTED); /* no branch: settles at once */
    X[2] = begin();
    XS[2] = end_global(X[2], false);
    assert_int_equal(XS[2], SINTER_GS_ROLLBACKED);
    X[3] = begin();
    XS[3] = SINTER_GS_BEGIN;
    X[4] = begin();
    branch(X[4], "account-b");
    XS[4] = end_global(X[4], false);
    assert_int_equal(XS[4], SINTER_GS_ROLLBACKING);
    for (int k = 0; k < NX; k++) {
        sinter_xid_format(&X[k], XT[k]);
    }

    check_metrics();

    /* Listing: every node, paged, exactly our globals (polled: a follower may lag). */
    for (int i = 1; i <= NODES; i++) {
        uint64_t end = sinter_test_now_ms() + WAIT_MS;
        while (!listing_matches(i)) {
            if (sinter_test_now_ms() > end) {
                fail_msg("node %d never listed exactly the globals created", i);
            }
            sinter_test_sleep_ms(100);
        }
    }
    char got[256], q[64];
    list_xids(1, "status=Committing", got, sizeof got);
    assert_string_equal(got, XT[0]);
    list_xids(2, "status=2", got, sizeof got);
    assert_string_equal(got, XT[0]);
    snprintf(q, sizeof q, "status=rollbacking&group=%u", X[4].group);
    list_xids(3, q, got, sizeof got);
    assert_string_equal(got, XT[4]);
    snprintf(q, sizeof q, "status=Rollbacking&group=%u", 1 - X[4].group);
    list_xids(3, q, got, sizeof got);
    assert_string_equal(got, "");
    json_decref(
        expect_error(1, "GET", "/api/v1/globals?status=Nope", NULL, NULL, 400, "SINTER_EINVAL"));
    json_decref(
        expect_error(1, "GET", "/api/v1/globals?limit=0", NULL, NULL, 400, "SINTER_EINVAL"));
    json_decref(
        expect_error(1, "GET", "/api/v1/globals?group=9", NULL, NULL, 400, "SINTER_EINVAL"));
    json_decref(
        expect_error(1, "GET", "/api/v1/globals?colour=1", NULL, NULL, 400, "SINTER_EINVAL"));

    /* Show: every field and the branch; the ':' may come percent-encoded. */
    int L = leaders[X[0].group];
    char path[160];
    snprintf(path, sizeof path, "/api/v1/globals/%u%%3A%" PRIu64, X[0].group, X[0].index);
    int st = 0;
    json_t *g = http_json(L, "GET", path, NULL, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(g, "xid"), XT[0]);
    assert_string_equal(jstr(g, "status"), "Committing");
    assert_int_equal(json_integer_value(json_object_get(g, "status_code")), 2);
    assert_string_equal(jstr(g, "decision"), "Committing");
    assert_string_equal(jstr(g, "app_id"), "tc-http-test");
    assert_string_equal(jstr(g, "tx_name"), "transfer");
    assert_int_equal(json_integer_value(json_object_get(g, "timeout_ms")), 600000);
    assert_true(json_integer_value(json_object_get(g, "begin_ms")) > 0);
    assert_true(json_integer_value(json_object_get(g, "decided_ms")) >=
                json_integer_value(json_object_get(g, "begin_ms")));
    assert_int_equal(json_integer_value(json_object_get(g, "end_ms")), 0);
    assert_string_equal(jstr(g, "app_data_base64"), "");
    assert_int_equal(json_integer_value(json_object_get(g, "node")), N[L].id);
    json_t *brs = json_object_get(g, "branches");
    assert_int_equal(json_array_size(brs), 1);
    json_t *b0 = json_array_get(brs, 0);
    assert_true(json_integer_value(json_object_get(b0, "branch_id")) > (json_int_t)X[0].index);
    assert_string_equal(jstr(b0, "branch_type"), "TCC");
    assert_string_equal(jstr(b0, "status"), "PhaseOne_Done");
    assert_string_equal(jstr(b0, "resource_id"), "account-a");
    assert_string_equal(jstr(b0, "app_data_base64"), "e30="); /* "{}" */
    json_decref(g);

    /* Unknown and malformed xids. */
    snprintf(path, sizeof path, "/api/v1/globals/%u:%" PRIu64, X[0].group, X[0].index + 1000000);
    g = expect_error(1, "GET", path, NULL, NULL, 404, "SINTER_ENOTFOUND");
    assert_string_equal(jstr(g, "status"), "Finished");
    json_decref(g);
    json_decref(expect_error(2, "GET", "/api/v1/globals/9:1", NULL, NULL, 404, "SINTER_ENOTFOUND"));
    json_decref(expect_error(2, "GET", "/api/v1/globals/abc", NULL, NULL, 400, "SINTER_EINVAL"));
    json_decref(expect_error(2, "GET", "/api/v1/globals/0:0", NULL, NULL, 400, "SINTER_EINVAL"));

    /* Admin calls: secret, state, target, leader. */
    char redrive[160], resolve[160];
    snprintf(redrive, sizeof redrive, "/api/v1/globals/%s/redrive", XT[0]);
    snprintf(resolve, sizeof resolve, "/api/v1/globals/%s/resolve", XT[0]);
    const char *bearer = "Bearer " SECRET;
    json_decref(expect_error(L, "POST", redrive, NULL, NULL, 401, "SINTER_EAUTH"));
    json_decref(expect_error(L, "POST", redrive, "Bearer wrong", NULL, 401, "SINTER_EAUTH"));
    json_decref(expect_error(L, "POST", resolve, "Basic " SECRET, "{\"target\":\"committed\"}", 401,
                             "SINTER_EAUTH"));
    g = expect_error(L, "POST", redrive, bearer, NULL, 409, "SINTER_ESTATE");
    assert_string_equal(jstr(g, "status"), "Committing"); /* unchanged */
    json_decref(g);
    g = expect_error(L, "POST", resolve, bearer, "{\"target\":\"committed\"}", 409,
                     "SINTER_ESTATE");
    assert_string_equal(jstr(g, "status"), "Committing");
    json_decref(g);
    char rq[200];
    snprintf(rq, sizeof rq, "%s?target=rollbacked", resolve);
    json_decref(expect_error(L, "POST", rq, bearer, NULL, 409, "SINTER_ESTATE"));
    json_decref(expect_error(L, "POST", resolve, bearer, "target=committed", 409, "SINTER_ESTATE"));
    json_decref(expect_error(L, "POST", resolve, bearer, NULL, 400, "SINTER_EINVAL"));
    json_decref(expect_error(L, "POST", resolve, bearer, "{\"target\":\"committing\"}", 400,
                             "SINTER_EINVAL"));
    snprintf(path, sizeof path, "/api/v1/globals/%u:%" PRIu64 "/redrive", X[0].group,
             X[0].index + 1000000);
    json_decref(expect_error(L, "POST", path, bearer, NULL, 404, "SINTER_ENOTFOUND"));
    json_decref(expect_error(L, "GET", redrive, bearer, NULL, 405, "SINTER_EINVAL"));
    json_decref(expect_error(L, "POST", "/api/v1/globals", bearer, NULL, 405, "SINTER_EINVAL"));
    snprintf(path, sizeof path, "/api/v1/globals/%s/delete", XT[0]);
    json_decref(expect_error(L, "POST", path, bearer, NULL, 404, "SINTER_ENOTFOUND"));
    int F = L % NODES + 1; /* a follower of the group */
    g = expect_error(F, "POST", redrive, bearer, NULL, 421, "SINTER_ENOTLEADER");
    assert_int_equal(json_integer_value(json_object_get(g, "leader")), N[L].id);
    assert_string_equal(jstr(g, "leader_http"), N[L].http_url);
    assert_string_equal(jstr(g, "leader_client"), N[L].client_url);
    json_decref(g);
    json_decref(expect_error(F, "POST", redrive, NULL, NULL, 401, "SINTER_EAUTH"));
    /* Nothing of the above changed the global. */
    snprintf(path, sizeof path, "/api/v1/globals/%s", XT[0]);
    g = http_json(L, "GET", path, NULL, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(g, "status"), "Committing");
    json_decref(g);

    /* sinterctl against the same cluster. */
    char nid[16];
    snprintf(nid, sizeof nid, "node %d", L);
    ctl_free(ctl(L, NULL, 0, OUT(nid, "status ok", "leader", N[L].http_url), NULL, "health", NULL));
    ctl_free(ctl(1, NULL, 0, OUT("sinter_node_info{node=\"1\"} 1", "sinter_globals{"), NULL,
                 "metrics", NULL));
    ctl_free(ctl(2, NULL, 0,
                 OUT(XT[0], XT[1], XT[2], XT[3], XT[4], "5 global(s)", "Committing", "Rollbacked",
                     "tc-http-test", "transfer"),
                 NULL, "list", NULL));
    struct sinter_test_output o =
        ctl(3, NULL, 0, OUT(XT[0], "1 global(s)"), NULL, "list", "--status", "Committing", NULL);
    assert_true(has_row(o.out, XT[0]));
    assert_false(has_row(o.out, XT[1]));
    ctl_free(o);
    o = ctl(1, NULL, 0, OUT("2 global(s); more after"), NULL, "list", "--limit", "2", NULL);
    ctl_free(o);
    ctl_free(ctl(2, NULL, 2, NULL, "belong to list", "show", XT[0], "--limit", "2", NULL));
    ctl_free(ctl(L, NULL, 0,
                 OUT(XT[0], "Committing (2)", "tc-http-test", "1 branch(es)", "account-a",
                     "PhaseOne_Done (2)", "TCC"),
                 NULL, "show", XT[0], NULL));
    o = ctl(L, NULL, 0, NULL, NULL, "--json", "show", XT[0], NULL);
    g = json_loads(o.out, 0, NULL);
    assert_non_null(g);
    assert_string_equal(jstr(g, "xid"), XT[0]);
    assert_string_equal(jstr(g, "status"), "Committing");
    json_decref(g);
    ctl_free(o);
    char unknown[64];
    snprintf(unknown, sizeof unknown, "%u:%" PRIu64, X[0].group, X[0].index + 1000000);
    ctl_free(ctl(1, NULL, 1, NULL, "HTTP 404", "show", unknown, NULL));
    ctl_free(ctl(1, NULL, 2, NULL, "secret", "redrive", XT[0], NULL));
    ctl_free(ctl(L, "wrong", 1, NULL, "HTTP 401", "redrive", XT[0], NULL));
    ctl_free(ctl(L, NULL, 2, NULL, "--target", "resolve", XT[0], "--secret", SECRET, NULL));
    /* At a follower: the 421 names the leader, sinterctl asks it, and the leader's 409 (the
     * global is not failed) is the answer. */
    o = ctl(F, SECRET, 1, NULL, "HTTP 409", "redrive", XT[0], NULL);
    assert_non_null(strstr(o.err, N[L].http_url));
    assert_non_null(strstr(o.err, "Committing"));
    ctl_free(o);
    o = ctl(F, NULL, 1, NULL, "HTTP 409", "resolve", XT[0], "--target", "committed", "--secret",
            SECRET, NULL);
    assert_non_null(strstr(o.err, N[L].http_url));
    ctl_free(o);
    int closed = sinter_test_free_port();
    ctl_free(ctl(-closed, NULL, 3, NULL, "cannot connect", "health", NULL));
    ctl_free(ctl(1, NULL, 2, NULL, "unknown command", "frobnicate", NULL));

    /* Paths outside the API. */
    struct http_res r;
    assert_int_equal(http(1, "GET", "/nope", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    free(r.body);

    /* Two of three stopped: the last node loses its quorum, and /health says so. */
    int last = 1;
    for (int i = 2; i <= NODES; i++) {
        sinter_tcc_stop(&C, i);
    }
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(http(last, "GET", "/health", NULL, NULL, &r), 0);
        int status = r.status;
        bool unavailable = strstr(r.body, "\"status\":\"unavailable\"") != NULL;
        free(r.body);
        if (status == 503 && unavailable) {
            break;
        }
        assert_int_equal(status, 200);
        if (sinter_test_now_ms() > end) {
            fail_msg("/health stayed 200 without a quorum");
        }
        sinter_test_sleep_ms(100);
    }
    ctl_free(ctl(last, NULL, 1, OUT("status unavailable"), NULL, "health", NULL));
    sinter_tcc_stop(&C, last);
    assert_int_equal(C.bad_exits, 0);
}

static int teardown(void **state)
{
    (void)state;
    sinter_tcc_stop_all(&C);
    sinter_raw_close(&P);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s path/to/sinter-tc path/to/sinterctl\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    g_ctl = argv[2];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(tc_http, teardown),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, NULL, NULL));
}
