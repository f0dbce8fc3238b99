/*
 * sinter-tc with TLS switched on by its URLs (tc/config.h [tls], docs/operations.md), on a real
 * 3-node cluster on loopback with a throwaway CA made by the openssl command line:
 *
 *   - configuration errors stop sinter-tc at start with exit status 2 and a message naming the
 *     key: a tls+tcp:// listener without tls.cert_key_file, a certificate file that does not
 *     exist, a file that is not a certificate, a TLS raft listener without tls.ca_file, a peer
 *     whose URL scheme differs from the node's, TLS keys with no TLS listener;
 *   - three nodes with tls+tcp:// raft and client listeners and an https:// HTTP endpoint elect
 *     leaders (raft traffic flows only over mutual TLS) and a transport client trusting the CA
 *     registers (RegisterTM), begins and commits a global transaction, which needs a majority
 *     over the TLS raft links;
 *   - a plain tcp:// client of a TLS port, and a TLS client trusting another CA, get no answer,
 *     and the cluster keeps serving the good client;
 *   - sinterctl over https:// with --ca reads /health and shows the committed global; without
 *     the CA (system CAs only) or over plain http:// it cannot connect (exit 3).
 *
 * Processes are stopped by PID; every wait is bounded and polls.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "testproc.h"

#include "sinter/error.h"
#include "sinter/proto.h"
#include "sinter/transport.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#define NODES   3
#define WAIT_MS 60000
#define SECRET  "tls-test-secret"

struct node {
    uint64_t id;
    int raft_port, client_port, http_port;
    char raft_url[64], client_url[64], http_url[64];
    pid_t pid;
    char dir[300];
    struct sinter_transport_client *cl;
};

static const char *g_bin, *g_ctl;
static char g_tmp[128];
static char g_cert[200], g_ca[200], g_other[200];
static struct node N[NODES + 1];
static uint64_t g_client, g_seq;
static int g_guess = 1;

/* ---- certificates --------------------------------------------------------------------------- */

/* A CA, a node certificate it signs (CN/SAN localhost, 127.0.0.1; every node presents the same
 * one, which is enough to prove the links are TLS and verified), and a second CA nobody trusts. */
static int make_certs(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd %s && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
             "-subj /CN=sinter-test-ca && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 "
             "-subj /CN=other-ca && "
             "openssl req -newkey rsa:2048 -nodes -keyout node.key -out node.csr "
             "-subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && "
             "openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out node.crt -days 2 -extfile ext.cnf && cat node.crt node.key > node.pem) "
             ">/dev/null 2>&1",
             g_tmp);
    snprintf(g_cert, sizeof g_cert, "%s/node.pem", g_tmp);
    snprintf(g_ca, sizeof g_ca, "%s/ca.pem", g_tmp);
    snprintf(g_other, sizeof g_other, "%s/other.pem", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- configuration errors ------------------------------------------------------------------- */

/* Writes body to DIR/bad.ini, runs sinter-tc --config it plus a node's flags, and checks that it
 * exits with 2 before serving and that stderr names want (the key). */
static void expect_config_error(const char *ini_body, const char *raft_url, const char *client_url,
                                const char *peer, const char *want1, const char *want2)
{
    char ini[200];
    snprintf(ini, sizeof ini, "%s/bad.ini", g_tmp);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f, "[tc]\nsecret = " SECRET "\n%s", ini_body);
    fclose(f);
    char dir[200], raft[64], client[64];
    snprintf(dir, sizeof dir, "%s/bad", g_tmp);
    snprintf(raft, sizeof raft, "%s", raft_url);
    snprintf(client, sizeof client, "%s", client_url);
    char *argv[] = {
        (char *)g_bin,     "--config", ini,          "--id", "1",      "--raft-listen", raft,
        "--client-listen", client,     "--data-dir", dir,    "--peer", (char *)peer,    NULL};
    struct sinter_test_output o;
    assert_int_equal(sinter_test_run(argv, NULL, NULL, 30000, &o), 0);
    if (o.exit_code != 2 || strstr(o.err, want1) == NULL ||
        (want2 != NULL && strstr(o.err, want2) == NULL)) {
        fail_msg("config error: exit %d (want 2), stderr should name '%s' / '%s':\n%s", o.exit_code,
                 want1, want2 ? want2 : "", o.err);
    }
    sinter_test_output_free(&o);
}

static void config_errors(void)
{
    const char *peer = "2=tls+tcp://127.0.0.1:2,tls+tcp://127.0.0.1:3";
    char body[600];
    /* tls+tcp:// without the certificate */
    expect_config_error("", "tls+tcp://127.0.0.1:1", "tls+tcp://127.0.0.1:4", peer,
                        "tls.cert_key_file", "required");
    /* a certificate file that does not exist */
    snprintf(body, sizeof body, "[tls]\ncert_key_file = %s/missing.pem\nca_file = %s\n", g_tmp,
             g_ca);
    expect_config_error(body, "tls+tcp://127.0.0.1:1", "tls+tcp://127.0.0.1:4", peer,
                        "tls.cert_key_file", "cannot read");
    /* a readable file that is not a certificate with its key (the CA's certificate alone) */
    snprintf(body, sizeof body, "[tls]\ncert_key_file = %s\nca_file = %s\n", g_ca, g_ca);
    expect_config_error(body, "tls+tcp://127.0.0.1:1", "tls+tcp://127.0.0.1:4", peer,
                        "tls.cert_key_file", "not a PEM certificate");
    /* a CA file that does not exist */
    snprintf(body, sizeof body, "[tls]\ncert_key_file = %s\nca_file = %s/nope.pem\n", g_cert,
             g_tmp);
    expect_config_error(body, "tls+tcp://127.0.0.1:1", "tls+tcp://127.0.0.1:4", peer, "tls.ca_file",
                        "cannot read");
    /* raft over TLS verifies the peers: the CA is required */
    snprintf(body, sizeof body, "[tls]\ncert_key_file = %s\n", g_cert);
    expect_config_error(body, "tls+tcp://127.0.0.1:1", "tls+tcp://127.0.0.1:4", peer, "tls.ca_file",
                        "required");
    /* a peer on plain tcp:// in a TLS cluster */
    snprintf(body, sizeof body, "[tls]\ncert_key_file = %s\nca_file = %s\n", g_cert, g_ca);
    expect_config_error(body, "tls+tcp://127.0.0.1:1", "tls+tcp://127.0.0.1:4",
                        "2=tcp://127.0.0.1:2,tls+tcp://127.0.0.1:3", "peers.2", "node.raft_listen");
    expect_config_error(body, "tls+tcp://127.0.0.1:1", "tcp://127.0.0.1:4", peer, "peers.2",
                        "node.client_listen");
    /* TLS files given but every listener plain: the operator believes traffic is encrypted */
    expect_config_error(body, "tcp://127.0.0.1:1", "tcp://127.0.0.1:4",
                        "2=tcp://127.0.0.1:2,tcp://127.0.0.1:3", "tls:", "no listener uses TLS");
}

/* ---- processes ------------------------------------------------------------------------------ */

static void spawn(struct node *n)
{
    char *argv[40];
    char bufs[30][300];
    int a = 0, b = 0;
    argv[a++] = (char *)g_bin;
#define ARG(...)                                                                                   \
    do {                                                                                           \
        snprintf(bufs[b], sizeof bufs[b], __VA_ARGS__);                                            \
        argv[a++] = bufs[b++];                                                                     \
    } while (0)
    ARG("--config");
    ARG("%s/cluster.ini", g_tmp);
    ARG("--id");
    ARG("%" PRIu64, n->id);
    ARG("--raft-listen");
    ARG("%s", n->raft_url);
    ARG("--client-listen");
    ARG("%s", n->client_url);
    ARG("--http-listen");
    ARG("%s", n->http_url);
    ARG("--data-dir");
    ARG("%s", n->dir);
    for (int i = 1; i <= NODES; i++) {
        if (&N[i] != n) {
            ARG("--peer");
            ARG("%" PRIu64 "=%s,%s,%s", N[i].id, N[i].raft_url, N[i].client_url, N[i].http_url);
        }
    }
    argv[a] = NULL;
#undef ARG
    char logp[300];
    snprintf(logp, sizeof logp, "%s/node%" PRIu64 ".log", g_tmp, n->id);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        execv(g_bin, argv);
        _exit(127);
    }
    n->pid = pid;
}

/* ---- client protocol ------------------------------------------------------------------------ */

static void req_init(struct sinter_proto_msg *m, uint16_t code, uint64_t seq)
{
    memset(m, 0, sizeof *m);
    m->code = code;
    m->rq.client_id = g_client;
    m->rq.seq = seq;
}

static void register_req(struct sinter_proto_msg *m)
{
    req_init(m, SINTER_MSG_REGISTER_TM, 0);
    m->u.reg.client_version = sinter_proto_str_c("test/1");
    m->u.reg.application_id = sinter_proto_str_c("tc-tls-test");
    m->u.reg.credential = sinter_proto_str_c(SECRET);
}

static struct sinter_transport_client *tls_client(const char *url, const char *ca)
{
    struct sinter_transport_client_opts co;
    sinter_transport_client_opts_default(&co);
    co.url = url;
    co.tls_enable = strncmp(url, "tls+", 4) == 0;
    co.tls.ca_file = ca;
    co.tls.server_name = "localhost";
    struct sinter_transport_client *c = NULL;
    assert_int_equal(sinter_transport_client_open(&c, &co), SINTER_OK);
    return c;
}

static int node_by_url(struct sinter_proto_str url)
{
    for (int i = 1; i <= NODES; i++) {
        if (sinter_proto_str_eq(url, N[i].client_url)) {
            return i;
        }
    }
    return 0;
}

/* Sends m to the leader of its group, following ENOTLEADER redirects (which name tls+tcp://
 * client URLs) and waiting out elections. */
static const struct sinter_proto_msg *call_leader(const struct sinter_proto_msg *m,
                                                  struct sinter_transport_reply_msg **out)
{
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    int i = g_guess;
    while (sinter_test_now_ms() < end) {
        struct sinter_transport_reply_msg *r = NULL;
        if (sinter_transport_call(N[i].cl, m, 3000, &r) != SINTER_OK) {
            i = i % NODES + 1;
            sinter_test_sleep_ms(50);
            continue;
        }
        const struct sinter_proto_msg *rm = sinter_transport_reply_get(r);
        if (rm->code == SINTER_MSG_ERROR && rm->rs.result == SINTER_ENOTLEADER) {
            int next = node_by_url(rm->u.error.leader_addr);
            sinter_transport_reply_free(r);
            i = next != 0 && next != i ? next : i % NODES + 1;
            sinter_test_sleep_ms(next != 0 ? 0 : 100);
            continue;
        }
        if (rm->code == SINTER_MSG_ERROR &&
            (rm->rs.result == SINTER_ETIMEOUT || rm->rs.result == SINTER_ESHUTDOWN)) {
            sinter_transport_reply_free(r);
            sinter_test_sleep_ms(100);
            continue;
        }
        g_guess = i;
        *out = r;
        return rm;
    }
    fail_msg("no leader answered %s within %d ms", sinter_proto_code_name(m->code), WAIT_MS);
    return NULL;
}

/* ---- sinterctl ------------------------------------------------------------------------------ */

static struct sinter_test_output ctl(const char *url, const char *ca, const char *a1,
                                     const char *a2)
{
    char *argv[12];
    int a = 0;
    argv[a++] = (char *)g_ctl;
    argv[a++] = "--http";
    argv[a++] = (char *)url;
    argv[a++] = "--timeout";
    argv[a++] = "10000";
    if (ca != NULL) {
        argv[a++] = "--ca";
        argv[a++] = (char *)ca;
        argv[a++] = "--server-name";
        argv[a++] = "localhost";
    }
    argv[a++] = (char *)a1;
    argv[a++] = (char *)a2;
    argv[a] = NULL;
    static const char *const unset[] = {"SINTER_SECRET", "SINTER_HTTP", NULL};
    struct sinter_test_output o;
    assert_int_equal(sinter_test_run(argv, unset, NULL, 60000, &o), 0);
    return o;
}

/* ---- the scenario --------------------------------------------------------------------------- */

static void tc_tls(void **state)
{
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        skip(); /* deploy/install-deps.sh installs openssl; a bare machine may not have it */
    }
    assert_int_equal(make_certs(), 0);
    config_errors();

    char ini[200];
    snprintf(ini, sizeof ini, "%s/cluster.ini", g_tmp);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f,
            "[raft]\ngroups = 1\ntick_ms = 20\n[tc]\nsecret = " SECRET "\n"
            "[tls]\ncert_key_file = %s\nca_file = %s\nserver_name = localhost\n",
            g_cert, g_ca);
    fclose(f);
    for (int i = 1; i <= NODES; i++) {
        N[i].id = (uint64_t)i;
        N[i].raft_port = sinter_test_free_port();
        N[i].client_port = sinter_test_free_port();
        N[i].http_port = sinter_test_free_port();
        snprintf(N[i].raft_url, sizeof N[i].raft_url, "tls+tcp://127.0.0.1:%d", N[i].raft_port);
        snprintf(N[i].client_url, sizeof N[i].client_url, "tls+tcp://127.0.0.1:%d",
                 N[i].client_port);
        snprintf(N[i].http_url, sizeof N[i].http_url, "https://127.0.0.1:%d", N[i].http_port);
        snprintf(N[i].dir, sizeof N[i].dir, "%s/n%d", g_tmp, i);
        N[i].cl = tls_client(N[i].client_url, g_ca);
    }
    for (int i = 1; i <= NODES; i++) {
        spawn(&N[i]);
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    g_client = ((uint64_t)rand() << 32 | (uint64_t)rand()) | 1u;

    /* Every node accepts the registration over TLS (polled: the nodes are starting). */
    struct sinter_proto_msg m;
    register_req(&m);
    for (int i = 1; i <= NODES; i++) {
        uint64_t end = sinter_test_now_ms() + WAIT_MS;
        for (;;) {
            struct sinter_transport_reply_msg *r = NULL;
            int rc = sinter_transport_call(N[i].cl, &m, 3000, &r);
            if (rc == SINTER_OK) {
                rc = sinter_transport_reply_get(r)->rs.result;
                sinter_transport_reply_free(r);
                assert_int_equal(rc, SINTER_OK);
                break;
            }
            if (sinter_test_now_ms() > end) {
                fail_msg("node %d: no RegisterTM answer over TLS in %d ms", i, WAIT_MS);
            }
            sinter_test_sleep_ms(100);
        }
    }

    /* Begin and commit: both need a leader elected and a majority reached over TLS raft. */
    req_init(&m, SINTER_MSG_GLOBAL_BEGIN, ++g_seq);
    m.u.global_begin.application_id = sinter_proto_str_c("tc-tls-test");
    m.u.global_begin.transaction_name = sinter_proto_str_c("transfer");
    m.u.global_begin.timeout_ms = 600000;
    struct sinter_transport_reply_msg *r;
    const struct sinter_proto_msg *rm = call_leader(&m, &r);
    assert_int_equal(rm->rs.result, SINTER_OK);
    struct sinter_xid x = rm->u.global_begin_result.xid;
    sinter_transport_reply_free(r);
    req_init(&m, SINTER_MSG_GLOBAL_COMMIT, ++g_seq);
    m.u.global_end.xid = x;
    rm = call_leader(&m, &r);
    assert_int_equal(rm->rs.result, SINTER_OK);
    assert_int_equal(rm->u.global_status_result.global_status, SINTER_GS_COMMITTED);
    sinter_transport_reply_free(r);
    char xt[SINTER_XID_STRLEN];
    sinter_xid_format(&x, xt);

    /* A plain tcp:// client of a TLS port gets nothing; neither does a client trusting another
     * CA. The good client is still served afterwards. */
    char plain[64];
    snprintf(plain, sizeof plain, "tcp://127.0.0.1:%d", N[g_guess].client_port);
    struct sinter_transport_client *bad = tls_client(plain, NULL);
    register_req(&m);
    assert_int_equal(sinter_transport_call(bad, &m, 2000, &r), SINTER_ETIMEOUT);
    sinter_transport_client_close(bad);
    bad = tls_client(N[g_guess].client_url, g_other);
    assert_int_equal(sinter_transport_call(bad, &m, 2000, &r), SINTER_ETIMEOUT);
    sinter_transport_client_close(bad);
    req_init(&m, SINTER_MSG_GLOBAL_STATUS, ++g_seq);
    m.u.global_status.xid = x;
    rm = call_leader(&m, &r);
    assert_int_equal(rm->rs.result, SINTER_OK);
    assert_int_equal(rm->u.global_status_result.global_status, SINTER_GS_COMMITTED);
    sinter_transport_reply_free(r);

    /* HTTPS: sinterctl with the CA reads /health and the global; without it, or over plain
     * http://, it cannot connect. */
    int L = g_guess;
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    for (;;) {
        struct sinter_test_output o = ctl(N[L].http_url, g_ca, "health", NULL);
        bool ok = o.exit_code == 0 && strstr(o.out, "status ok") != NULL &&
                  strstr(o.out, "leader") != NULL;
        if (!ok && sinter_test_now_ms() > end) {
            fail_msg("sinterctl health over https: exit %d\n%s\n%s", o.exit_code, o.out, o.err);
        }
        sinter_test_output_free(&o);
        if (ok) {
            break;
        }
        sinter_test_sleep_ms(200);
    }
    struct sinter_test_output o = ctl(N[L].http_url, g_ca, "show", xt);
    if (o.exit_code != 0 || strstr(o.out, "Committed (9)") == NULL) {
        fail_msg("sinterctl show over https: exit %d\n%s\n%s", o.exit_code, o.out, o.err);
    }
    sinter_test_output_free(&o);
    o = ctl(N[L].http_url, g_other, "health", NULL);
    assert_int_equal(o.exit_code, 3);
    assert_non_null(strstr(o.err, "cannot connect"));
    sinter_test_output_free(&o);
    char http_plain[64];
    snprintf(http_plain, sizeof http_plain, "http://127.0.0.1:%d", N[L].http_port);
    o = ctl(http_plain, NULL, "health", NULL);
    assert_int_equal(o.exit_code, 3);
    sinter_test_output_free(&o);

    for (int i = 1; i <= NODES; i++) {
        assert_int_equal(sinter_test_stop(&N[i].pid, 30000), 0);
    }
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 1; i <= NODES; i++) {
        sinter_test_stop(&N[i].pid, 30000);
        sinter_transport_client_close(N[i].cl);
        N[i].cl = NULL;
    }
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
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sinter-tc-tls-XXXXXX");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(tc_tls, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep -q -e 'Sanitizer' -e 'runtime error:' %s/node*.log", g_tmp);
    if (system(cmd) == 0) {
        fprintf(stderr, "a node log holds a sanitizer report\n");
        rc = 1;
    }
    if (rc == 0 && getenv("SINTER_TEST_KEEP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    } else {
        snprintf(cmd, sizeof cmd, "tail -n 30 %s/node*.log 1>&2; echo 'kept %s' 1>&2", g_tmp,
                 g_tmp);
    }
    if (system(cmd) != 0) {
        fprintf(stderr, "could not run: %s\n", cmd);
    }
    return rc;
}
