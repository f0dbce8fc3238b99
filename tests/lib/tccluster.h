/*
 * tests/lib/tccluster.h — a loopback cluster of real sinter-tc processes for integration tests,
 * examples' tests and benchmarks' smoke runs: one place that picks free ports, writes the shared
 * configuration file, starts, kills and stops the nodes by PID, and checks their logs.
 *
 * Layout under a fresh temp dir (kept on failure or with SINTER_TEST_KEEP=1):
 *   DIR/cluster.ini      the cluster-wide settings (groups, secret, extra INI text)
 *   DIR/n<i>/            node i's data dir
 *   DIR/node<i>.log      node i's stderr (structured log lines)
 * Node i (1-based) listens on 127.0.0.1 only: client tcp://127.0.0.1:<client_port>, raft
 * tcp://127.0.0.1:<raft_port>, HTTP http://127.0.0.1:<http_port> (tls+tcp:// and https:// after
 * sinter_tcc_use_tls). Every wait is bounded; a node is stopped with SIGTERM then SIGKILL after a
 * bound, never by name. Raw wire-protocol clients of such a cluster: tcproto.h.
 */
#ifndef SINTER_TEST_TCCLUSTER_H
#define SINTER_TEST_TCCLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SINTER_TCC_MAX_NODES 5

struct sinter_tcc_node {
    uint64_t id; /* 1..n */
    int raft_port, client_port, http_port;
    char raft_url[64];
    char client_url[64];
    char http_url[64];
    char dir[400];
    pid_t pid; /* 0 while not running */
    /* NULL-terminated flags appended to this node's command line at every start, after the
     * generated ones (sinter-tc lets a later flag win), e.g. {"--snapshot-every", "1", NULL}.
     * NULL (the default) for none; the caller keeps the array alive while the node may start. */
    const char *const *extra_args;
    long log_from; /* size of DIR/node<i>.log when this node was last started */
};

struct sinter_tcc {
    const char *bin; /* path of sinter-tc */
    char tmp[256];
    int n;
    unsigned groups; /* raft groups, as given to sinter_tcc_init */
    struct sinter_tcc_node node[SINTER_TCC_MAX_NODES + 1]; /* 1..n */
    int bad_exits; /* graceful stops that did not end in exit status 0 */
};

/* Creates the temp dir (prefix names it, e.g. "tcc-e2e"), picks ports for n nodes (1..5) and
 * writes DIR/cluster.ini with [raft] groups, tick_ms = 20, election_ticks = 50 (1-2 s election
 * timeouts), [tc] secret, followed by extra_ini
 * (may be NULL: INI text appended verbatim, e.g. "[tc]\nretry_initial_ms = 50\n" — a section may
 * repeat; later keys win). Starts nothing. Returns 0, or -1 with a message on stderr. */
int sinter_tcc_init(struct sinter_tcc *c, const char *bin, const char *prefix, int n,
                    unsigned groups, const char *secret, const char *extra_ini);

/* Appends text verbatim to DIR/cluster.ini, for settings that need the temp dir to exist first
 * (e.g. a [tls] section naming certificates made in c->tmp). Before the nodes start (or between a
 * stop and a start). Returns 0 or -1. */
int sinter_tcc_append_ini(struct sinter_tcc *c, const char *text);

/* Switches every node's URLs to TLS: raft and client tls+tcp://, HTTP https:// (same ports).
 * sinter-tc then wants a [tls] section with cert_key_file and ca_file (sinter_tcc_append_ini).
 * Call after sinter_tcc_init, before the first start. */
void sinter_tcc_use_tls(struct sinter_tcc *c);

/* The node (1..n) whose client URL is url[0..len), or 0. For not-leader redirects and
 * ClusterMeta member lists, which name nodes by client URL. */
int sinter_tcc_node_by_url(const struct sinter_tcc *c, const char *url, size_t len);

/* Starts node i (1..n) in the background with the per-node flags (id, listeners, data dir,
 * peers, then extra_args); nothing when it runs already. Returns 0 or -1. */
int sinter_tcc_start(struct sinter_tcc *c, int i);
int sinter_tcc_start_all(struct sinter_tcc *c);

/* kill -9 of node i (waits for it to be gone). */
void sinter_tcc_kill9(struct sinter_tcc *c, int i);

/* Waits (bounded, 30 s) until node i, since its last start, logged that it serves (sinter-tc
 * takes SIGTERM as a clean stop from then on), then SIGTERM, then SIGKILL after a bound; counts
 * an unclean exit in bad_exits. The wait matters for a node stopped right after a (re)start: a
 * SIGTERM that lands before sinter-tc's main() has blocked it (exec, the sanitizer runtime's
 * start-up on a loaded machine) kills it with the default action, an unclean exit. */
void sinter_tcc_stop(struct sinter_tcc *c, int i);
void sinter_tcc_stop_all(struct sinter_tcc *c);

/* Writes the n client URLs into urls[0..n) (pointers into c) for a client library's address
 * list; returns n. */
int sinter_tcc_client_urls(const struct sinter_tcc *c, const char *urls[SINTER_TCC_MAX_NODES]);

/* Asks the running nodes for ClusterMeta (a sinter_client with secret) until it names, for every
 * group, a leader that is one of c's running nodes, bounded by wait_ms. Returns the node (1..n)
 * leading `group` then, 0 on timeout. */
int sinter_tcc_meta_leader(struct sinter_tcc *c, const char *secret, uint32_t group,
                           unsigned wait_ms);

/* Node i's log path, written into buf. */
const char *sinter_tcc_log_path(const struct sinter_tcc *c, int i, char *buf, size_t cap);

/* Waits until, for every group 0..groups-1, some running node's log says it became that group's
 * leader (its "role leader" line), bounded by timeout_ms. A cheap readiness check before the first
 * client call; clients still follow redirects. Returns 0 or -1. */
int sinter_tcc_wait_leaders(struct sinter_tcc *c, unsigned groups, unsigned timeout_ms);

/* Stops every node still running, then: returns rc unchanged unless a node log holds a sanitizer
 * report or a node exited uncleanly (then 1). Removes the temp dir when the result is 0 and
 * SINTER_TEST_KEEP is unset; otherwise prints the tail of each log and keeps it. */
int sinter_tcc_finish(struct sinter_tcc *c, int rc);

/* Runs the sinterctl binary at ctl as `ctl --http url args...` (args NULL-terminated, at most 16)
 * with SINTER_HTTP unset and SINTER_SECRET set to secret (NULL: unset too), so only the command
 * line speaks; waits up to 60 s and captures its output in *o (sinter_test_output_free). Returns
 * 0, or -1 when it could not be started or args are too many. */
struct sinter_test_output;
int sinter_tcc_ctl(const char *ctl, const char *url, const char *secret, char *const args[],
                   struct sinter_test_output *o);

#endif /* SINTER_TEST_TCCLUSTER_H */
