/*
 * tc/config.h — sinter-tc configuration (internal to tc/).
 *
 * Sources, later ones overriding earlier ones: built-in defaults, the INI file given with
 * --config (parsed by inih, libinih-dev), then command-line flags (getopt_long). Everything is
 * validated once at start by sinter_tc_config_validate(): a bad value stops the server before it
 * touches the disk or the network, with SINTER_ECONFIG and a message naming the key.
 *
 * File layout (keys; the flag that overrides each is in brackets):
 *
 *   [node]
 *   id = 1                                  [--id]             non-zero, unique in the cluster
 *   client_listen = tcp://127.0.0.1:8091    [--client-listen]  TM/RM RPC (sinter transport);
 *                                                              tls+tcp:// = TLS (see [tls])
 *   raft_listen = tcp://127.0.0.1:7091      [--raft-listen]    node-to-node raft traffic;
 *                                                              tls+tcp:// = mutual TLS
 *   data_dir = /var/lib/sinter              [--data-dir]       DIR/group-N/{raft log, tc.sqlite}
 *   http_listen = http://127.0.0.1:8081     [--http-listen]    /health, /metrics, admin API
 *                                                              (tc/http.h); unset = no HTTP;
 *                                                              https:// = TLS
 *   log_level = 2                           [--log-level]      0 error .. 3 debug
 *   [raft]
 *   groups = 1                              [--groups]         1..256
 *   tick_ms = 20                            [--tick-ms]
 *   election_ticks = 50                     [--election-ticks] 1..2 s at 20 ms ticks
 *   snapshot_every = 8192                   [--snapshot-every] 0 = never
 *   bootstrap = true                        [--join sets false] founding member of the cluster
 *   balance_leaders = false                 [--balance-leaders] true: group g's preferred leader
 *                                           is the voter at position g mod n of the voters
 *                                           sorted by id, and a leader that is not preferred
 *                                           hands g to it once it is live and caught up. With
 *                                           several groups each leader carries its groups'
 *                                           writes and the leader-only workers (timeouts,
 *                                           phase 2, GC), and nothing else spreads them again
 *                                           after a failover. Off by default: with 1 group it
 *                                           only pins group 0 to the lowest id, so every
 *                                           restart of that node costs one more leadership
 *                                           change; and each transfer refuses proposals for
 *                                           up to an election timeout (clients retry them)
 *   [peers]
 *   2 = tcp://10.0.0.2:7091,tcp://10.0.0.2:8091[,http://10.0.0.2:8081]
 *                          [--peer 2=RAFT_URL,CLIENT_URL[,HTTP_URL]] (repeatable); the optional
 *                          HTTP URL lets a follower's admin API name the leader's HTTP address
 *   [tc]
 *   secret = ...                            [--secret]         shared secret, required (or:)
 *   secret_file = /etc/sinter/secret        [--secret-file]    read the secret from this file
 *                                           (one line; a final newline is dropped), so it stays
 *                                           out of the INI and of ps; give secret or secret_file
 *   default_timeout_ms = 60000              [--default-timeout-ms]
 *   retry_initial_ms = 1000                 [--retry-initial-ms]  phase-2 backoff start
 *   retry_max_ms = 60000                    [--retry-max-ms]      phase-2 backoff cap
 *   max_commit_retry_ms = 86400000          [--max-commit-retry-ms]   phase-2 deadline, commit
 *   max_rollback_retry_ms = 86400000        [--max-rollback-retry-ms] phase-2 deadline, rollback
 *   phase2_lease_ms = 10000                 [--phase2-lease-ms]   a delivery's lease at the RM
 *   max_clock_skew_ms = 1000                [--max-clock-skew-ms] bound on node clock differences
 *                                           (NTP); timeout rollback waits this much extra
 *   retention_ms = 86400000                 [--retention-ms]      finished globals and client
 *                                           answers kept this long, then removed by GC
 *   client_retention_ms = 2592000000        [--client-retention-ms] silent clients' rows (>=
 *                                           retention_ms)
 *   gc_interval_ms = 60000                  [--gc-interval-ms]    between two retention GC runs
 *   client_idle_ms = 3600000                [--client-idle-ms]    a registered client idle this
 *                                           long is forgotten by the node (it re-registers)
 *   batch_branch_results = true             [--batch-branch-results] true: the outcomes of one
 *                                           Phase2ReportBatch become one BRANCH_RESULTS entry
 *                                           per group; false: one BRANCH_RESULT each, the only
 *                                           form a node older than BRANCH_RESULTS applies (set
 *                                           it false during a rolling upgrade from one,
 *                                           docs/operations.md "Upgrades")
 *   client_transport = native               [--client-transport] engine of a tcp:// client_listen:
 *                                           native (own sockets + epoll, the default) or nng
 *                                           (nng's REP socket, the engine before it; an escape
 *                                           hatch). Both speak the same wire protocol. A
 *                                           tls+tcp:// client_listen always uses nng
 *   max_client_connections = 4096           [--max-client-connections] client connections open
 *                                           at once; one more is closed on arrival (its client
 *                                           redials or tries another node). Keep it under the
 *                                           process's descriptor limit (LimitNOFILE)
 *   [tls]   (used by every listener whose URL is tls+tcp:// or https://; peers' URLs then use
 *            the same scheme as this node's listener of that kind)
 *   cert_key_file = /etc/sinter/node.pem    [--tls-cert-key-file] PEM certificate + private key
 *                                           this node presents; required when a listener is TLS
 *   key_password = ...                      [--tls-key-password]  when the key is encrypted
 *   ca_file = /etc/sinter/ca.pem            [--tls-ca-file]    CA peers' certificates chain to;
 *                                           required with a tls+tcp:// raft_listen (nodes verify
 *                                           each other)
 *   server_name = sinter-tc                 [--tls-server-name] name expected in the peers'
 *                                           certificates on raft links; unset = CA chain only
 *   client_verify = false                   [--tls-client-verify] true: TM/RM clients must
 *                                           present a certificate chaining to ca_file (mutual
 *                                           TLS on client_listen); false: the shared secret
 *                                           authenticates them, TLS only encrypts and proves
 *                                           the server
 */
#ifndef SINTER_TC_CONFIG_H
#define SINTER_TC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SINTER_TC_MAX_PEERS  15  /* + this node = SINTER_PROTO_MAX_MEMBERS */
#define SINTER_TC_MAX_GROUPS 256 /* SINTER_PROTO_MAX_GROUPS: ClusterMeta lists every group */

struct sinter_tc_peer {
    uint64_t id;
    char *raft_url;   /* malloc'ed */
    char *client_url; /* malloc'ed */
    char *http_url;   /* malloc'ed; NULL when the peer's entry gives no HTTP URL */
};

struct sinter_tc_config {
    uint64_t node_id;
    char *client_listen; /* malloc'ed strings; NULL = not set */
    char *raft_listen;
    char *data_dir;
    char *http_listen; /* NULL = no HTTP endpoint */
    int log_level;
    uint32_t groups;
    uint32_t tick_ms;
    uint32_t election_ticks;
    uint64_t snapshot_every;
    bool bootstrap;
    bool balance_leaders; /* [raft] balance_leaders: sinter_raft_host_opts.balance_leaders */
    struct sinter_tc_peer peers[SINTER_TC_MAX_PEERS];
    size_t n_peers;
    char *secret;
    char *secret_file; /* [tc] secret_file: read into secret by sinter_tc_config_load */
    uint64_t default_timeout_ms;
    uint64_t retry_initial_ms;
    uint64_t retry_max_ms;
    uint64_t max_commit_retry_ms;
    uint64_t max_rollback_retry_ms;
    uint64_t phase2_lease_ms;
    uint64_t max_clock_skew_ms;
    uint64_t retention_ms;
    uint64_t client_retention_ms;
    uint64_t gc_interval_ms;
    uint64_t client_idle_ms;
    bool batch_branch_results;
    char *client_transport; /* "native" (NULL = default) or "nng" */
    uint32_t max_client_connections;
    char *tls_cert_key_file; /* [tls]; malloc'ed, NULL = not set */
    char *tls_key_password;
    char *tls_ca_file;
    char *tls_server_name;
    bool tls_client_verify;
};

/* Which listeners of c use TLS: tls+tcp:// client_listen / raft_listen, https:// http_listen.
 * Pure; c need not be validated (a NULL URL is plain). */
bool sinter_tc_config_client_tls(const struct sinter_tc_config *c);
bool sinter_tc_config_raft_tls(const struct sinter_tc_config *c);
bool sinter_tc_config_http_tls(const struct sinter_tc_config *c);

/* The client / HTTP URL of node id (this node's own listener, or the peer's configured URL);
 * NULL when the id is unknown (0 included: ids are non-zero) or that URL is not configured.
 * Ownership: points into c. */
const char *sinter_tc_config_client_url(const struct sinter_tc_config *c, uint64_t id);
const char *sinter_tc_config_http_url(const struct sinter_tc_config *c, uint64_t id);

/* Fills defaults (no id, URLs, data dir or secret). Ownership: writes *c only. */
void sinter_tc_config_init(struct sinter_tc_config *c);

/* Frees the strings inside c (not c). */
void sinter_tc_config_free(struct sinter_tc_config *c);

/* Reads --config FILE (if given) and then every other flag of argv into c, which must have been
 * initialised. *help is set when --help was asked (c is then incomplete). Ownership: copies what
 * it keeps; argv is only read (getopt_long may permute it).
 * Errors: SINTER_ECONFIG (unknown flag, unreadable file, syntax error, bad number or unknown key;
 * err names the key or the line), SINTER_ENOMEM. */
int sinter_tc_config_load(struct sinter_tc_config *c, int argc, char **argv, bool *help, char *err,
                          size_t errlen);

/* Checks every value and the relations between them, and loads the TLS files once (through nng's
 * TLS, as the listeners will) so an unreadable or invalid file stops the node at start. Errors:
 * SINTER_ECONFIG with err naming the key, e.g. "raft.groups = 0: must be 1..256" or
 * "tls.cert_key_file: required: node.raft_listen is tls+tcp://". */
int sinter_tc_config_validate(const struct sinter_tc_config *c, char *err, size_t errlen);

/* The usage text for --help and for a flag error. Static string. */
const char *sinter_tc_config_usage(void);

#endif /* SINTER_TC_CONFIG_H */
