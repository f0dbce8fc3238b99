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
 *   - sinterctl over https:// with --ca reads /health and shows the committed global, and answers
 *     30 GETs in a row each at the first try; without the CA (system CAs only) or over plain
 *     http:// it cannot connect (exit 3).
 *
 * The cluster (tccluster.h, switched to TLS URLs) and the raw protocol client (tcproto.h, dialing
 * over TLS with the CA) come from tests/lib. Processes are stopped by PID; every wait is bounded
 * and polls.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tccluster.h"
#include "tcproto.h"
#include "testproc.h"

#include "sinter/error.h"
#include "sinter/types.h"
#include "sinter/xid.h"

#define NODES   3
#define WAIT_MS 60000
#define SECRET  "tls-test-secret"

static const char *g_bin, *g_ctl;
static char g_tmp[128]; /* the cluster's temp dir */
static char g_cert[200], g_ca[200], g_other[200];
static struct sinter_tcc C;
static struct sinter_raw P;

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

/* ---- client protocol ------------------------------------------------------------------------ */

/* A transport client of url of its own (not P's), over TLS trusting ca when url is tls+. */
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

/* Many GETs over https, each on its own connection and TLS handshake, every one answered in full
 * at the first try (sinterctl says on stderr when it had to try again). With nng 1.5.2 a server
 * that closes right after writing an answer over TLS can drop the answer's end (see exchange() in
 * cli/sinterctl.c): when sinterctl asked for "Connection: close", 6 of 300 GETs came back as
 * "Connection shutdown" or no answer at all (so 30 catch that about 45% of the time; the exact
 * check is test_sinterctl_conn). Alternates a small answer (health), one read on the raft loop
 * thread (show) and a larger one (metrics). */
#define MANY_GETS 30
static void many_gets(const char *url, const char *xt)
{
    for (int i = 0; i < MANY_GETS; i++) {
        const char *cmd = i % 3 == 0 ? "health" : i % 3 == 1 ? "show" : "metrics";
        const char *want = i % 3 == 0 ? "status ok" : i % 3 == 1 ? "Committed (9)" : "sinter_";
        struct sinter_test_output o = ctl(url, g_ca, cmd, i % 3 == 1 ? xt : NULL);
        if (o.exit_code != 0 || strstr(o.out, want) == NULL || strstr(o.err, "dropped") != NULL) {
            fail_msg("GET %d of %d over https (sinterctl %s): exit %d\n%s\n%s", i + 1, MANY_GETS,
                     cmd, o.exit_code, o.out, o.err);
        }
        sinter_test_output_free(&o);
    }
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

    /* Every listener and peer URL on TLS; the [tls] section names the certificates made above. */
    sinter_tcc_use_tls(&C);
    char tls[600];
    snprintf(tls, sizeof tls, "[tls]\ncert_key_file = %s\nca_file = %s\nserver_name = localhost\n",
             g_cert, g_ca);
    assert_int_equal(sinter_tcc_append_ini(&C, tls), 0);
    assert_int_equal(sinter_raw_open(&P, &C, SECRET, "tc-tls-test", g_ca), SINTER_OK);
    P.call_ms = 3000;
    P.wait_ms = WAIT_MS;
    assert_int_equal(sinter_tcc_start_all(&C), 0);

    /* Every node accepts the registration over TLS (polled: the nodes are starting). */
    for (int i = 1; i <= NODES; i++) {
        int rc = sinter_raw_register(&P, i, WAIT_MS);
        if (rc != SINTER_OK) {
            fail_msg("node %d: RegisterTM over TLS: %s", i, sinter_errname(rc));
        }
    }

    /* Begin and commit: both need a leader elected and a majority reached over TLS raft. */
    struct sinter_xid x = {0, 0};
    assert_int_equal(sinter_raw_begin(&P, 0, 600000, &x, NULL), SINTER_OK);
    uint32_t st = 0;
    assert_int_equal(sinter_raw_end(&P, x, true, 0, 0, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);
    char xt[SINTER_XID_STRLEN];
    sinter_xid_format(&x, xt);

    /* A plain tcp:// client of a TLS port gets nothing; neither does a client trusting another
     * CA. The good client is still served afterwards. */
    int L = P.guess; /* the leader that answered */
    const struct sinter_tcc_node *nl = &C.node[L];
    char plain[64];
    snprintf(plain, sizeof plain, "tcp://127.0.0.1:%d", nl->client_port);
    struct sinter_transport_client *bad = tls_client(plain, NULL);
    struct sinter_proto_msg m;
    sinter_raw_register_req(&P, &m);
    struct sinter_transport_reply_msg *r = NULL;
    assert_int_equal(sinter_transport_call(bad, &m, 2000, &r), SINTER_ETIMEOUT);
    sinter_transport_client_close(bad);
    bad = tls_client(nl->client_url, g_other);
    assert_int_equal(sinter_transport_call(bad, &m, 2000, &r), SINTER_ETIMEOUT);
    sinter_transport_client_close(bad);
    assert_int_equal(sinter_raw_status(&P, x, 0, &st), SINTER_OK);
    assert_int_equal(st, SINTER_GS_COMMITTED);

    /* HTTPS: sinterctl with the CA reads /health and the global; without it, or over plain
     * http://, it cannot connect. */
    uint64_t end = sinter_test_now_ms() + WAIT_MS;
    for (;;) {
        struct sinter_test_output o = ctl(nl->http_url, g_ca, "health", NULL);
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
    struct sinter_test_output o = ctl(nl->http_url, g_ca, "show", xt);
    if (o.exit_code != 0 || strstr(o.out, "Committed (9)") == NULL) {
        fail_msg("sinterctl show over https: exit %d\n%s\n%s", o.exit_code, o.out, o.err);
    }
    sinter_test_output_free(&o);
    many_gets(nl->http_url, xt);
    o = ctl(nl->http_url, g_other, "health", NULL);
    assert_int_equal(o.exit_code, 3);
    assert_non_null(strstr(o.err, "cannot connect"));
    sinter_test_output_free(&o);
    char http_plain[64];
    snprintf(http_plain, sizeof http_plain, "http://127.0.0.1:%d", nl->http_port);
    o = ctl(http_plain, NULL, "health", NULL);
    assert_int_equal(o.exit_code, 3);
    sinter_test_output_free(&o);

    sinter_tcc_stop_all(&C);
    assert_int_equal(C.bad_exits, 0);
}

static int teardown(void **state)
{
    (void)state;
    sinter_tcc_stop_all(&C);
    sinter_raw_close(&P);
    return 0;
}

/* The cluster's temp dir exists first: the certificates and the bad configurations go there. */
static int setup(void **state)
{
    (void)state;
    if (sinter_tcc_init(&C, g_bin, "tc-tls", NODES, 1, SECRET, NULL) != 0) {
        return -1;
    }
    size_t n = strlen(C.tmp);
    if (n >= sizeof g_tmp) {
        return -1;
    }
    memcpy(g_tmp, C.tmp, n + 1);
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
        cmocka_unit_test_teardown(tc_tls, teardown),
    };
    return sinter_tcc_finish(&C, cmocka_run_group_tests(tests, setup, NULL));
}
