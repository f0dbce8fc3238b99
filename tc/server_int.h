/*
 * tc/server_int.h — the sinter-tc server's own structures (internal to tc/), shared by the files
 * that make up the server: server.c (state machine adapter, RPC), and the parts built on it (the
 * leader-only workers, the HTTP endpoints). Nothing here is a public interface.
 *
 * Threads (see server.c): the raft host's loop thread owns every group's fsm and everything marked
 * "loop thread only"; RPC handlers run on nng callback threads and reach the loop through
 * sinter_raft_host_propose / _read / _call.
 */
#ifndef SINTER_TC_SERVER_INT_H
#define SINTER_TC_SERVER_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/raft_host.h"
#include "sinter/transport.h"
#include "tc/config.h"
#include "tc/fsm.h"
#include "tc/metrics.h"
#include "tc/server.h"

#define MAX_REGISTERED 100000u /* registered clients remembered per node */
#define END_BUCKETS    64u     /* GlobalCommit / Rollback replies parked per group (WAIT_PHASE2) */

struct tc_worker;      /* tc/worker.c: a group's leader-only workers */
struct tc_end_waiter;  /* tc/worker.c: a parked WAIT_PHASE2 reply */
struct tc_poll_waiter; /* tc/worker.c: a parked Phase2Poll */

struct tc_group {
    uint32_t id;
    struct sinter_tc_server *srv;
    struct sinter_tc_fsm *fsm;
    char dir[PATH_MAX];
    /* Loop thread only: the entries and results of the last applied batch. */
    struct sinter_tc_entry *ents;
    struct sinter_tc_result *res;
    size_t n_last, cap;
    /* Serialises the fsm's snapshot copy (helper thread) with a snapshot install (loop): the
     * install replaces the database file the copy reads. */
    pthread_mutex_t snap_mu;
    /* Role as last reported by the host (on_role, loop thread); read by RPC threads. */
    pthread_mutex_t role_mu;
    uint32_t role;
    sinter_raft_id leader;
    uint64_t term;
    /* Loop thread only: the leader-only workers while this node leads the group (NULL
     * otherwise), a generation that tells a worker's late proposal completions apart from the
     * next worker's, and the WAIT_PHASE2 replies parked until their global ends. */
    struct tc_worker *worker;
    uint64_t worker_gen;
    struct tc_end_waiter *end_waiters[END_BUCKETS];
    size_t n_end_waiters;
};

struct reg_entry {
    struct reg_entry *next;
    uint64_t client_id;
    unsigned roles;   /* REG_TM | REG_RM */
    uint64_t last_ms; /* wall clock of the last request seen from it (idle eviction) */
};
#define REG_TM      1u
#define REG_RM      2u
#define REG_BUCKETS 4096u

struct sinter_tc_server {
    const struct sinter_tc_config *cfg;
    struct tc_group *groups;
    struct sinter_raft_host *host;
    struct sinter_transport_server *rpc;
    /* Handlers hold it for reading while they use the host; stop takes it for writing, so once
     * `stopping` is set no handler can reach a host that is being stopped. */
    pthread_rwlock_t stop_lock;
    bool stopping;
    /* Clients registered with this node (RegisterTM / RegisterRM with the shared secret). In
     * memory: after a restart clients get SINTER_EAUTH and register again, as Seata clients
     * re-register on every new channel. */
    pthread_mutex_t reg_mu;
    struct reg_entry *reg[REG_BUCKETS];
    size_t n_reg;
    size_t reg_sweep; /* next bucket the idle sweep looks at (loop thread) */
    /* Loop thread only: parked Phase2Polls (a doubly linked list) and the last server-wide tick. */
    struct tc_poll_waiter *polls;
    size_t n_polls;
    uint64_t last_server_tick_ms;
    /* Counters for /metrics; any thread (atomics). */
    struct sinter_tc_metrics metrics;
    /* HTTP endpoints (tc/http.c); NULL when node.http_listen is unset. */
    struct sinter_tc_http *http;
};

/* tc/server.c: the result of the entry at index in g's last applied batch, or NULL (loop thread;
 * valid during a proposal's completion, see server.c "Results"). */
const struct sinter_tc_result *sinter_tc_last_result(const struct tc_group *g, uint64_t index);

/* tc/server.c: drops registered clients idle for longer than cfg->client_idle_ms, a slice of the
 * registry per call (loop thread; takes reg_mu). */
void sinter_tc_reg_sweep(struct sinter_tc_server *s, uint64_t now_ms);

#endif /* SINTER_TC_SERVER_INT_H */
