/*
 * sinter-tc configuration: defaults, INI file (inih), command-line flags (getopt_long) and
 * validation (see tc/config.h for the keys).
 *
 * One table drives the file and the flags, so a key and its flag cannot drift apart and every
 * error names the key the operator has to fix ("raft.groups"), whichever source set it.
 */
#include "tc/config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "sinter/error.h"
#include "tc/command.h"
#include "tc/fsm.h"

enum ktype { K_U64, K_U32, K_INT, K_STR, K_BOOL };

struct key {
    const char *section;
    const char *name;
    const char *flag; /* long option */
    enum ktype type;
    size_t off;
};

#define KEY(sec, nm, fl, ty, field)                                                                \
    {                                                                                              \
        sec, nm, fl, ty, offsetof(struct sinter_tc_config, field)                                  \
    }

static const struct key keys[] = {
    KEY("node", "id", "id", K_U64, node_id),
    KEY("node", "client_listen", "client-listen", K_STR, client_listen),
    KEY("node", "raft_listen", "raft-listen", K_STR, raft_listen),
    KEY("node", "data_dir", "data-dir", K_STR, data_dir),
    KEY("node", "http_listen", "http-listen", K_STR, http_listen),
    KEY("node", "log_level", "log-level", K_INT, log_level),
    KEY("raft", "groups", "groups", K_U32, groups),
    KEY("raft", "tick_ms", "tick-ms", K_U32, tick_ms),
    KEY("raft", "election_ticks", "election-ticks", K_U32, election_ticks),
    KEY("raft", "snapshot_every", "snapshot-every", K_U64, snapshot_every),
    KEY("raft", "bootstrap", NULL, K_BOOL, bootstrap),
    KEY("raft", "balance_leaders", "balance-leaders", K_BOOL, balance_leaders),
    KEY("tc", "secret", "secret", K_STR, secret),
    KEY("tc", "secret_file", "secret-file", K_STR, secret_file),
    KEY("tc", "default_timeout_ms", "default-timeout-ms", K_U64, default_timeout_ms),
    KEY("tc", "retry_initial_ms", "retry-initial-ms", K_U64, retry_initial_ms),
    KEY("tc", "retry_max_ms", "retry-max-ms", K_U64, retry_max_ms),
    KEY("tc", "max_commit_retry_ms", "max-commit-retry-ms", K_U64, max_commit_retry_ms),
    KEY("tc", "max_rollback_retry_ms", "max-rollback-retry-ms", K_U64, max_rollback_retry_ms),
    KEY("tc", "phase2_lease_ms", "phase2-lease-ms", K_U64, phase2_lease_ms),
    KEY("tc", "max_clock_skew_ms", "max-clock-skew-ms", K_U64, max_clock_skew_ms),
    KEY("tc", "retention_ms", "retention-ms", K_U64, retention_ms),
    KEY("tc", "client_retention_ms", "client-retention-ms", K_U64, client_retention_ms),
    KEY("tc", "gc_interval_ms", "gc-interval-ms", K_U64, gc_interval_ms),
    KEY("tc", "client_idle_ms", "client-idle-ms", K_U64, client_idle_ms),
    KEY("tc", "batch_branch_results", "batch-branch-results", K_BOOL, batch_branch_results),
    KEY("tc", "client_transport", "client-transport", K_STR, client_transport),
    KEY("tc", "max_client_connections", "max-client-connections", K_U32, max_client_connections),
    KEY("tls", "cert_key_file", "tls-cert-key-file", K_STR, tls_cert_key_file),
    KEY("tls", "key_password", "tls-key-password", K_STR, tls_key_password),
    KEY("tls", "ca_file", "tls-ca-file", K_STR, tls_ca_file),
    KEY("tls", "server_name", "tls-server-name", K_STR, tls_server_name),
    KEY("tls", "client_verify", "tls-client-verify", K_BOOL, tls_client_verify),
};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* Long options beyond the key table. */
enum { OPT_CONFIG = 1000, OPT_PEER, OPT_JOIN, OPT_HELP, OPT_KEY0 };

void sinter_tc_config_init(struct sinter_tc_config *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = 2;
    c->groups = 1;
    c->tick_ms = 20;
    /* 1-2 s, as etcd's and SOFAJRaft's (Seata's raft mode) 1 s defaults: a leader steps down
     * when a majority has not answered for an election timeout (check-quorum), and a follower's
     * loop does not answer while its log fdatasync runs; with 200-400 ms, a disk that stalls for
     * half a second (seen on the VMs we test on, bench/FINDINGS.md F6) moved leadership. */
    c->election_ticks = 50;
    c->snapshot_every = 8192;
    c->bootstrap = true;
    c->default_timeout_ms = 60000; /* Seata's default global transaction timeout */
    c->retry_initial_ms = 1000;    /* Seata's committing/rollbacking retry period */
    c->retry_max_ms = 60000;
    c->max_commit_retry_ms = 24ull * 3600 * 1000;
    c->max_rollback_retry_ms = 24ull * 3600 * 1000;
    c->phase2_lease_ms = 10000;
    c->max_clock_skew_ms = 1000;
    c->retention_ms = SINTER_TC_DEFAULT_RETENTION_MS;
    c->client_retention_ms = SINTER_TC_DEFAULT_CLIENT_RETENTION_MS;
    c->gc_interval_ms = 60000;
    c->client_idle_ms = 3600000;
    c->batch_branch_results = true;
    c->max_client_connections = 4096;
}

static void peers_clear(struct sinter_tc_config *c)
{
    for (size_t i = 0; i < c->n_peers; i++) {
        free(c->peers[i].raft_url);
        free(c->peers[i].client_url);
        free(c->peers[i].http_url);
    }
    c->n_peers = 0;
}

void sinter_tc_config_free(struct sinter_tc_config *c)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].type == K_STR) {
            char **p = (char **)((char *)c + keys[i].off);
            free(*p);
            *p = NULL;
        }
    }
    peers_clear(c);
}

static bool parse_u64(const char *v, uint64_t *out)
{
    if (v == NULL || *v < '0' || *v > '9') {
        return false; /* strtoull accepts "-1" and spaces: refuse them */
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = x;
    return true;
}

static int set_key(struct sinter_tc_config *c, const struct key *k, const char *v, char *err,
                   size_t errlen)
{
    void *p = (char *)c + k->off;
    uint64_t x = 0;
    switch (k->type) {
    case K_STR: {
        char *s = strdup(v);
        if (s == NULL) {
            return SINTER_ENOMEM;
        }
        free(*(char **)p);
        *(char **)p = s;
        return SINTER_OK;
    }
    case K_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0) {
            *(bool *)p = true;
        } else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0) {
            *(bool *)p = false;
        } else {
            snprintf(err, errlen, "%s.%s = '%s': not a boolean (true/false)", k->section, k->name,
                     v);
            return SINTER_ECONFIG;
        }
        return SINTER_OK;
    case K_U64:
    case K_U32:
    case K_INT:
        if (!parse_u64(v, &x) || (k->type == K_U32 && x > UINT32_MAX) ||
            (k->type == K_INT && x > 1000000)) {
            snprintf(err, errlen, "%s.%s = '%s': not a non-negative integer in range", k->section,
                     k->name, v);
            return SINTER_ECONFIG;
        }
        if (k->type == K_U64) {
            *(uint64_t *)p = x;
        } else if (k->type == K_U32) {
            *(uint32_t *)p = (uint32_t)x;
        } else {
            *(int *)p = (int)x;
        }
        return SINTER_OK;
    }
    return SINTER_EINTERNAL;
}

/* "RAFT_URL,CLIENT_URL[,HTTP_URL]" for peer id. The HTTP URL is optional (the two-URL form
 * stays valid): a follower's admin API names the leader's HTTP address only when it knows it. */
static int add_peer(struct sinter_tc_config *c, uint64_t id, const char *v, char *err,
                    size_t errlen)
{
    const char *comma = strchr(v, ',');
    const char *comma2 = comma != NULL ? strchr(comma + 1, ',') : NULL;
    if (comma == NULL || comma == v || comma[1] == '\0' || comma2 == comma + 1 ||
        (comma2 != NULL && (comma2[1] == '\0' || strchr(comma2 + 1, ',') != NULL))) {
        snprintf(err, errlen, "peers.%" PRIu64 " = '%s': expected RAFT_URL,CLIENT_URL[,HTTP_URL]",
                 id, v);
        return SINTER_ECONFIG;
    }
    if (c->n_peers == SINTER_TC_MAX_PEERS) {
        snprintf(err, errlen, "peers: more than %d peers", SINTER_TC_MAX_PEERS);
        return SINTER_ECONFIG;
    }
    struct sinter_tc_peer *p = &c->peers[c->n_peers];
    p->id = id;
    p->raft_url = strndup(v, (size_t)(comma - v));
    p->client_url =
        comma2 != NULL ? strndup(comma + 1, (size_t)(comma2 - comma - 1)) : strdup(comma + 1);
    p->http_url = comma2 != NULL ? strdup(comma2 + 1) : NULL;
    c->n_peers++;
    return p->raft_url != NULL && p->client_url != NULL && (comma2 == NULL || p->http_url != NULL)
               ? SINTER_OK
               : SINTER_ENOMEM;
}

/* "ID=RAFT_URL,CLIENT_URL[,HTTP_URL]" from --peer. */
static int add_peer_flag(struct sinter_tc_config *c, const char *v, char *err, size_t errlen)
{
    const char *eq = strchr(v, '=');
    char idtext[32];
    uint64_t id = 0;
    if (eq == NULL || (size_t)(eq - v) >= sizeof idtext) {
        snprintf(err, errlen, "--peer '%s': expected ID=RAFT_URL,CLIENT_URL[,HTTP_URL]", v);
        return SINTER_ECONFIG;
    }
    memcpy(idtext, v, (size_t)(eq - v));
    idtext[eq - v] = '\0';
    if (!parse_u64(idtext, &id)) {
        snprintf(err, errlen, "--peer '%s': peer id is not a number", v);
        return SINTER_ECONFIG;
    }
    return add_peer(c, id, eq + 1, err, errlen);
}

struct ini_ctx {
    struct sinter_tc_config *c;
    char *err;
    size_t errlen;
    int rc;
};

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *x = user;
    if (x->rc != SINTER_OK) {
        return 0;
    }
    if (strcmp(section, "peers") == 0) {
        uint64_t id = 0;
        if (!parse_u64(name, &id)) {
            snprintf(x->err, x->errlen, "peers.%s: the key must be the peer's node id", name);
            x->rc = SINTER_ECONFIG;
            return 0;
        }
        x->rc = add_peer(x->c, id, value, x->err, x->errlen);
        return x->rc == SINTER_OK;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(section, keys[i].section) == 0 && strcmp(name, keys[i].name) == 0) {
            x->rc = set_key(x->c, &keys[i], value, x->err, x->errlen);
            return x->rc == SINTER_OK;
        }
    }
    /* An unknown key is a typo until proven otherwise: refuse it rather than run with a default
     * the operator did not mean. */
    snprintf(x->err, x->errlen, "%s.%s: unknown key", section, name);
    x->rc = SINTER_ECONFIG;
    return 0;
}

const char *sinter_tc_config_usage(void)
{
    return "usage: sinter-tc [--config FILE] [--id N] [--client-listen URL] [--raft-listen URL]\n"
           "                 [--data-dir DIR] [--peer ID=RAFT_URL,CLIENT_URL[,HTTP_URL]]...\n"
           "                 [--groups G] [--http-listen http://HOST:PORT]\n"
           "                 [--tick-ms MS] [--election-ticks N] [--snapshot-every N] [--join]\n"
           "                 [--balance-leaders true|false]\n"
           "                 [--secret S | --secret-file F] [--default-timeout-ms MS] "
           "[--retry-initial-ms MS]\n"
           "                 [--retry-max-ms MS] [--max-commit-retry-ms MS]\n"
           "                 [--max-rollback-retry-ms MS] [--phase2-lease-ms MS]\n"
           "                 [--max-clock-skew-ms MS] [--retention-ms MS]\n"
           "                 [--client-retention-ms MS] [--gc-interval-ms MS]\n"
           "                 [--client-idle-ms MS] [--batch-branch-results true|false]\n"
           "                 [--client-transport native|nng] [--http-listen URL] "
           "[--log-level 0..3]\n"
           "                 [--tls-cert-key-file PEM] [--tls-key-password P] [--tls-ca-file PEM]\n"
           "                 [--tls-server-name NAME] [--tls-client-verify true|false]\n"
           "Flags override the file's keys (see tc/config.h); --peer flags replace the file's\n"
           "[peers]. --join: not a founding member (no bootstrap on a fresh data dir).\n";
}

/* tc.secret_file: the secret's own file (mode 0600, a Kubernetes Secret mount), so the secret is
 * neither in the INI that operators share nor in `ps` output. One line; a final "\n" or "\r\n"
 * is dropped; anything longer than the wire's credential limit is refused by validation. */
static int read_secret_file(struct sinter_tc_config *c, char *err, size_t errlen)
{
    if (c->secret_file == NULL) {
        return SINTER_OK;
    }
    if (c->secret != NULL) {
        snprintf(err, errlen, "tc.secret and tc.secret_file: give one of them, not both");
        return SINTER_ECONFIG;
    }
    FILE *f = fopen(c->secret_file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "tc.secret_file = %s: cannot open: %s", c->secret_file,
                 strerror(errno));
        return SINTER_ECONFIG;
    }
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r') {
            buf[--n] = '\0';
        }
    }
    if (more || strchr(buf, '\n') != NULL || strlen(buf) != n) {
        snprintf(err, errlen, "tc.secret_file = %s: must hold one line of at most 256 bytes",
                 c->secret_file);
        return SINTER_ECONFIG;
    }
    c->secret = strdup(buf);
    return c->secret != NULL ? SINTER_OK : SINTER_ENOMEM;
}

int sinter_tc_config_load(struct sinter_tc_config *c, int argc, char **argv, bool *help, char *err,
                          size_t errlen)
{
    struct option opts[N_KEYS + 5];
    size_t n = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].flag != NULL) {
            opts[n++] = (struct option){keys[i].flag, required_argument, NULL, OPT_KEY0 + (int)i};
        }
    }
    opts[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    opts[n++] = (struct option){"peer", required_argument, NULL, OPT_PEER};
    opts[n++] = (struct option){"join", no_argument, NULL, OPT_JOIN};
    opts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    *help = false;
    err[0] = '\0';

    /* Pass 1: the file, so that flags (pass 2) override it whatever their order. */
    const char *file = NULL;
    opterr = 0;
    optind = 0; /* glibc: 0 also resets its internal state */
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (o == OPT_CONFIG) {
            file = optarg;
        } else if (o == OPT_HELP) {
            *help = true;
            return SINTER_OK;
        } else if (o == '?') {
            snprintf(err, errlen, "unknown or incomplete flag '%s'", argv[optind - 1]);
            return SINTER_ECONFIG;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return SINTER_ECONFIG;
    }
    if (file != NULL) {
        struct ini_ctx x = {c, err, errlen, SINTER_OK};
        int line = ini_parse(file, ini_cb, &x);
        if (x.rc != SINTER_OK) {
            return x.rc;
        }
        if (line == -1) {
            snprintf(err, errlen, "config file %s: cannot open: %s", file, strerror(errno));
            return SINTER_ECONFIG;
        }
        if (line != 0) {
            snprintf(err, errlen, "config file %s: syntax error on line %d", file, line);
            return SINTER_ECONFIG;
        }
    }
    optind = 0;
    bool cli_peers = false;
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        int rc = SINTER_OK;
        if (o == OPT_PEER) {
            if (!cli_peers) {
                peers_clear(c);
                cli_peers = true;
            }
            rc = add_peer_flag(c, optarg, err, errlen);
        } else if (o == OPT_JOIN) {
            c->bootstrap = false;
        } else if (o >= OPT_KEY0 && o < OPT_KEY0 + (int)N_KEYS) {
            rc = set_key(c, &keys[o - OPT_KEY0], optarg, err, errlen);
        }
        if (rc != SINTER_OK) {
            return rc;
        }
    }
    return read_secret_file(c, err, errlen);
}

static bool is_tls_url(const char *u)
{
    return u != NULL && strncmp(u, "tls+tcp://", 10) == 0;
}

static bool is_https_url(const char *u)
{
    return u != NULL && strncmp(u, "https://", 8) == 0;
}

static const struct sinter_tc_peer *peer_of(const struct sinter_tc_config *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_peers; i++) {
        if (c->peers[i].id == id) {
            return &c->peers[i];
        }
    }
    return NULL;
}

const char *sinter_tc_config_client_url(const struct sinter_tc_config *c, uint64_t id)
{
    const struct sinter_tc_peer *p = peer_of(c, id);
    return id == c->node_id ? c->client_listen : p != NULL ? p->client_url : NULL;
}

const char *sinter_tc_config_http_url(const struct sinter_tc_config *c, uint64_t id)
{
    const struct sinter_tc_peer *p = peer_of(c, id);
    return id == c->node_id ? c->http_listen : p != NULL ? p->http_url : NULL;
}

bool sinter_tc_config_client_tls(const struct sinter_tc_config *c)
{
    return is_tls_url(c->client_listen);
}

bool sinter_tc_config_raft_tls(const struct sinter_tc_config *c)
{
    return is_tls_url(c->raft_listen);
}

bool sinter_tc_config_http_tls(const struct sinter_tc_config *c)
{
    return is_https_url(c->http_listen);
}

/* tcp://HOST:PORT or tls+tcp://HOST:PORT (TLS is switched on by the scheme, DESIGN.md "TLS
 * through nng's TLS transport is a config switch"). */
static bool url_ok(const char *u)
{
    if (u == NULL || strlen(u) >= 200) {
        return false;
    }
    size_t pre = is_tls_url(u) ? 10 : strncmp(u, "tcp://", 6) == 0 ? 6 : 0;
    return pre != 0 && u[pre] != '\0';
}

/* http(s)://HOST:PORT with an explicit port and no path: nng's HTTP server binds exactly that. */
static bool http_url_ok(const char *u)
{
    if (u == NULL || strlen(u) >= 200) {
        return false;
    }
    size_t pre = is_https_url(u) ? 8 : strncmp(u, "http://", 7) == 0 ? 7 : 0;
    if (pre == 0) {
        return false;
    }
    const char *colon = strrchr(u + pre, ':');
    if (colon == NULL || colon == u + pre || colon[1] == '\0') {
        return false;
    }
    uint64_t port = 0;
    return parse_u64(colon + 1, &port) && port >= 1 && port <= 65535;
}

/* 10 years: beyond that a cutoff is meaningless and now - retention could wrap. */
#define SINTER_TC_MAX_RETENTION_MS (3650ull * 24 * 3600 * 1000)

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return SINTER_ECONFIG;                                                                     \
    } while (0)

/* The file must be readable by this process now: nng reports a missing file only as "invalid
 * configuration", so the operator would not learn which key or why. */
static int check_readable(const char *key, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        BAD("%s = '%s': cannot read: %s", key, path, strerror(errno));
    }
    fclose(f);
    return SINTER_OK;
}

/* Loads the files into a throwaway nng TLS configuration, as the listeners will, so a file that
 * is readable but not what mbedTLS accepts (wrong PEM, wrong key password) stops the node here
 * with the key named instead of later with "cannot start". */
static int check_tls_load(const struct sinter_tc_config *c, char *err, size_t errlen)
{
    nng_tls_config *t = NULL;
    if (nng_tls_config_alloc(&t, NNG_TLS_MODE_SERVER) != 0) {
        BAD("tls: nng has no TLS support (libnng built without mbedTLS)");
    }
    int rv = nng_tls_config_cert_key_file(t, c->tls_cert_key_file, c->tls_key_password);
    if (rv != 0) {
        nng_tls_config_free(t);
        BAD("tls.cert_key_file = '%s': not a PEM certificate with its private key (or "
            "tls.key_password does not open the key): %s",
            c->tls_cert_key_file, nng_strerror(rv));
    }
    if (c->tls_ca_file != NULL && (rv = nng_tls_config_ca_file(t, c->tls_ca_file)) != 0) {
        nng_tls_config_free(t);
        BAD("tls.ca_file = '%s': not a PEM CA certificate: %s", c->tls_ca_file, nng_strerror(rv));
    }
    nng_tls_config_free(t);
    return SINTER_OK;
}

static int validate_tls(const struct sinter_tc_config *c, char *err, size_t errlen)
{
    bool rtls = sinter_tc_config_raft_tls(c), ctls = sinter_tc_config_client_tls(c);
    bool htls = sinter_tc_config_http_tls(c);
    const char *why = rtls   ? "node.raft_listen is tls+tcp://"
                      : ctls ? "node.client_listen is tls+tcp://"
                             : "node.http_listen is https://";
    if (!rtls && !ctls && !htls) {
        /* Files given but no TLS listener: the operator believes traffic is encrypted. */
        if (c->tls_cert_key_file != NULL || c->tls_ca_file != NULL || c->tls_client_verify) {
            BAD("tls: keys are set but no listener uses TLS: use tls+tcp:// for "
                "node.client_listen / node.raft_listen or https:// for node.http_listen");
        }
        return SINTER_OK;
    }
    if (c->tls_cert_key_file == NULL || c->tls_cert_key_file[0] == '\0') {
        BAD("tls.cert_key_file: required: %s", why);
    }
    int rc = check_readable("tls.cert_key_file", c->tls_cert_key_file, err, errlen);
    if (rc != SINTER_OK) {
        return rc;
    }
    if (rtls && (c->tls_ca_file == NULL || c->tls_ca_file[0] == '\0')) {
        BAD("tls.ca_file: required: node.raft_listen is tls+tcp:// and nodes verify each other");
    }
    if (c->tls_client_verify && (!ctls || c->tls_ca_file == NULL)) {
        BAD("tls.client_verify: needs a tls+tcp:// node.client_listen and tls.ca_file");
    }
    if (c->tls_ca_file != NULL &&
        (rc = check_readable("tls.ca_file", c->tls_ca_file, err, errlen)) != SINTER_OK) {
        return rc;
    }
    return check_tls_load(c, err, errlen);
}

int sinter_tc_config_validate(const struct sinter_tc_config *c, char *err, size_t errlen)
{
    if (c->node_id == 0) {
        BAD("node.id: required, a non-zero integer unique in the cluster");
    }
    if (!url_ok(c->client_listen)) {
        BAD("node.client_listen = '%s': required, tcp://HOST:PORT or tls+tcp://HOST:PORT",
            c->client_listen ? c->client_listen : "");
    }
    if (!url_ok(c->raft_listen)) {
        BAD("node.raft_listen = '%s': required, tcp://HOST:PORT or tls+tcp://HOST:PORT",
            c->raft_listen ? c->raft_listen : "");
    }
    if (strcmp(c->client_listen, c->raft_listen) == 0) {
        BAD("node.raft_listen: must differ from node.client_listen");
    }
    if (c->max_client_connections < 1 || c->max_client_connections > 1000000) {
        BAD("tc.max_client_connections = %" PRIu32 ": must be 1..1000000",
            c->max_client_connections);
    }
    if (c->client_transport != NULL && strcmp(c->client_transport, "native") != 0 &&
        strcmp(c->client_transport, "nng") != 0) {
        BAD("tc.client_transport = '%s': native or nng", c->client_transport);
    }
    if (c->data_dir == NULL || c->data_dir[0] == '\0' || strlen(c->data_dir) > 3000) {
        BAD("node.data_dir: required, a directory path");
    }
    if (c->http_listen != NULL && !http_url_ok(c->http_listen)) {
        BAD("node.http_listen = '%s': http://HOST:PORT or https://HOST:PORT (a port, no path), "
            "or unset for no HTTP",
            c->http_listen);
    }
    if (c->log_level < 0 || c->log_level > 3) {
        BAD("node.log_level = %d: must be 0..3", c->log_level);
    }
    if (c->groups < 1 || c->groups > SINTER_TC_MAX_GROUPS) {
        BAD("raft.groups = %u: must be 1..%d", c->groups, SINTER_TC_MAX_GROUPS);
    }
    if (c->tick_ms < 1 || c->tick_ms > 10000) {
        BAD("raft.tick_ms = %u: must be 1..10000", c->tick_ms);
    }
    if (c->election_ticks < 3 || c->election_ticks > 1000) {
        BAD("raft.election_ticks = %u: must be 3..1000", c->election_ticks);
    }
    for (size_t i = 0; i < c->n_peers; i++) {
        const struct sinter_tc_peer *p = &c->peers[i];
        if (p->id == 0 || p->id == c->node_id) {
            BAD("peers.%" PRIu64 ": a peer id must be non-zero and differ from node.id", p->id);
        }
        if (!url_ok(p->raft_url) || !url_ok(p->client_url)) {
            BAD("peers.%" PRIu64 ": both URLs must be tcp://HOST:PORT or tls+tcp://HOST:PORT",
                p->id);
        }
        if (p->http_url != NULL && !http_url_ok(p->http_url)) {
            BAD("peers.%" PRIu64 ": the third URL (HTTP) must be http(s)://HOST:PORT", p->id);
        }
        /* One cluster, one scheme per kind of listener: a TLS node cannot talk to a plain peer,
         * and a redirect must not send a TLS client to a plain address (or the reverse). */
        if (is_tls_url(p->raft_url) != sinter_tc_config_raft_tls(c)) {
            BAD("peers.%" PRIu64 ": raft URL '%s' must use the scheme of node.raft_listen (%s)",
                p->id, p->raft_url, sinter_tc_config_raft_tls(c) ? "tls+tcp://" : "tcp://");
        }
        if (is_tls_url(p->client_url) != sinter_tc_config_client_tls(c)) {
            BAD("peers.%" PRIu64 ": client URL '%s' must use the scheme of node.client_listen (%s)",
                p->id, p->client_url, sinter_tc_config_client_tls(c) ? "tls+tcp://" : "tcp://");
        }
        if (p->http_url != NULL && c->http_listen != NULL &&
            is_https_url(p->http_url) != sinter_tc_config_http_tls(c)) {
            BAD("peers.%" PRIu64 ": HTTP URL '%s' must use the scheme of node.http_listen (%s)",
                p->id, p->http_url, sinter_tc_config_http_tls(c) ? "https://" : "http://");
        }
        for (size_t j = 0; j < i; j++) {
            if (c->peers[j].id == p->id) {
                BAD("peers.%" PRIu64 ": listed twice", p->id);
            }
        }
    }
    if (c->secret == NULL || c->secret[0] == '\0') {
        BAD("tc.secret: required (clients authenticate with it at RegisterTM / RegisterRM)");
    }
    if (strlen(c->secret) > 256) {
        BAD("tc.secret: longer than 256 bytes (the wire's credential limit)");
    }
    if (c->default_timeout_ms < 1 || c->default_timeout_ms > SINTER_TC_MAX_TIMEOUT_MS) {
        BAD("tc.default_timeout_ms = %" PRIu64 ": must be 1..%llu", c->default_timeout_ms,
            (unsigned long long)SINTER_TC_MAX_TIMEOUT_MS);
    }
    if (c->retry_initial_ms < 1 || c->retry_initial_ms > c->retry_max_ms) {
        BAD("tc.retry_initial_ms = %" PRIu64 ": must be 1..tc.retry_max_ms (%" PRIu64 ")",
            c->retry_initial_ms, c->retry_max_ms);
    }
    if (c->retry_max_ms > 3600ull * 1000) {
        BAD("tc.retry_max_ms = %" PRIu64 ": must be at most 3600000", c->retry_max_ms);
    }
    /* Capped at the longest retention (10 years): first attempt + the deadline must not wrap
     * (a wrapped deadline would end every global in *RetryTimeout at its first delivery). */
    if (c->max_commit_retry_ms < c->retry_initial_ms ||
        c->max_commit_retry_ms > SINTER_TC_MAX_RETENTION_MS) {
        BAD("tc.max_commit_retry_ms = %" PRIu64 ": must be tc.retry_initial_ms..%llu",
            c->max_commit_retry_ms, (unsigned long long)SINTER_TC_MAX_RETENTION_MS);
    }
    if (c->max_rollback_retry_ms < c->retry_initial_ms ||
        c->max_rollback_retry_ms > SINTER_TC_MAX_RETENTION_MS) {
        BAD("tc.max_rollback_retry_ms = %" PRIu64 ": must be tc.retry_initial_ms..%llu",
            c->max_rollback_retry_ms, (unsigned long long)SINTER_TC_MAX_RETENTION_MS);
    }
    if (c->phase2_lease_ms < 1 || c->phase2_lease_ms > 3600ull * 1000) {
        BAD("tc.phase2_lease_ms = %" PRIu64 ": must be 1..3600000", c->phase2_lease_ms);
    }
    if (c->max_clock_skew_ms > 60000) {
        BAD("tc.max_clock_skew_ms = %" PRIu64 ": must be 0..60000 (keep clocks in sync with NTP)",
            c->max_clock_skew_ms);
    }
    if (c->retention_ms < 1 || c->retention_ms > SINTER_TC_MAX_RETENTION_MS) {
        BAD("tc.retention_ms = %" PRIu64 ": must be 1..%llu", c->retention_ms,
            (unsigned long long)SINTER_TC_MAX_RETENTION_MS);
    }
    if (c->client_retention_ms < c->retention_ms ||
        c->client_retention_ms > SINTER_TC_MAX_RETENTION_MS) {
        BAD("tc.client_retention_ms = %" PRIu64 ": must be tc.retention_ms (%" PRIu64 ")..%llu",
            c->client_retention_ms, c->retention_ms,
            (unsigned long long)SINTER_TC_MAX_RETENTION_MS);
    }
    if (c->gc_interval_ms < 1 || c->gc_interval_ms > 24ull * 3600 * 1000) {
        BAD("tc.gc_interval_ms = %" PRIu64 ": must be 1..86400000", c->gc_interval_ms);
    }
    if (c->client_idle_ms < 1000) {
        BAD("tc.client_idle_ms = %" PRIu64 ": must be at least 1000", c->client_idle_ms);
    }
    return validate_tls(c, err, errlen);
}
