/*
 * A small in-test cluster for the Raft core's scenario tests: N cores, a network queue the test
 * controls (deliver, drop, reorder, duplicate, partition, rewrite), an in-memory "disk" that
 * persists each ready exactly as raft.h prescribes, crash/restart from that disk, and an applied
 * record per node to compare state machines. Deterministic: every random choice comes from the
 * harness seed.
 */
#ifndef SINTER_TEST_RAFT_HARNESS_H
#define SINTER_TEST_RAFT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/raft.h"

#define H_MAX 7

/* One applied entry (or an installed snapshot, type 0, covering up to index). */
struct h_app {
    uint64_t index;
    uint64_t term;
    uint32_t type;
    uint32_t len;
    uint8_t data[16];
};

struct h_apps {
    struct h_app *v;
    size_t n;
    size_t cap;
};

struct h_node {
    sinter_raft_id id;
    struct sinter_raft *r;
    bool up;
    uint64_t seed;
    struct sinter_raft_options opts;
    /* disk */
    struct sinter_raft_hard_state hs;
    bool has_snap;
    struct sinter_raft_snapshot_meta snap;
    struct sinter_raft_entry *log; /* deep copies, following snap */
    size_t n_log;
    uint64_t applied;
    /* state machine: what was applied, in order (a snapshot install replaces it) */
    struct h_apps apps;
    struct h_apps pending_snap_apps; /* data that came with the last SNAPSHOT message */
    uint64_t pending_snap_index;
    /* finished reads */
    struct sinter_raft_read_state reads[1024];
    size_t n_reads;
    /* counters */
    uint64_t n_snapshots_installed;
};

struct h_msg {
    struct sinter_raft_msg m; /* deep copy */
    struct h_apps snap_apps;  /* SNAPSHOT: the state machine data shipped beside it */
    uint32_t n_alloc;         /* entries allocated (a filter may shorten m.n_entries) */
};

struct harness;

/* Return true to drop the message; may also edit *m (for example strip entries). */
typedef bool (*h_filter_fn)(struct harness *h, struct sinter_raft_msg *m);

struct harness {
    size_t n;
    struct h_node nodes[H_MAX];
    struct h_msg *q;
    size_t nq;
    size_t capq;
    bool cut[H_MAX + 1][H_MAX + 1];  /* cut[from][to]: messages from -> to are lost */
    bool hold[H_MAX + 1][H_MAX + 1]; /* hold[from][to]: messages stay queued (delayed) */
    uint64_t rng;
    unsigned drop_pct;    /* random loss */
    unsigned dup_pct;     /* random duplication */
    bool reorder;         /* deliver a random queued message instead of the oldest */
    h_filter_fn filter;   /* applied at delivery */
    bool tolerate_enomem; /* allocation-failure runs: SINTER_ENOMEM from the core is a lost
                             event (step, ready, propose), retried or ignored */
    void *filter_arg;
    /* statistics */
    uint64_t delivered;
    size_t max_appends_in_flight; /* most APPENDs with entries queued at once, leader->one peer */
    /* election safety: leader seen per term */
    sinter_raft_id leader_of_term[4096];
};

typedef void (*h_opts_fn)(struct sinter_raft_options *o);

/* n nodes with ids 1..n; the first n_voters bootstrap a cluster of voters 1..n_voters, the others
 * start empty (to be added). opts_fn (may be NULL) adjusts each node's options. */
void h_init(struct harness *h, size_t n, size_t n_voters, uint64_t seed, h_opts_fn opts_fn);
void h_free(struct harness *h);

struct h_node *h_node(struct harness *h, sinter_raft_id id);
struct sinter_raft *h_raft(struct harness *h, sinter_raft_id id);

/* Handles every ready of node id (persist, queue messages, apply, advance). */
void h_process(struct harness *h, sinter_raft_id id);
/* Delivers one queued message (the oldest, or a random one when reordering). False if none. */
bool h_deliver_one(struct harness *h);
/* Delivers until the queue is empty (bounded). */
void h_deliver_all(struct harness *h);
/* Drops every queued message. */
void h_drop_all(struct harness *h);
/* One tick on every live node, then process. */
void h_tick_all(struct harness *h);
/* ticks rounds of: tick all, deliver all. */
void h_run(struct harness *h, unsigned ticks);
/* Runs until some live node leads with every other live, connected voter following it; returns
 * its id or 0. */
sinter_raft_id h_wait_leader(struct harness *h, unsigned max_ticks);
/* The live leader with the highest term, 0 if none. */
sinter_raft_id h_leader(struct harness *h);
/* Propose a short string on node id; returns the rc. */
int h_propose(struct harness *h, sinter_raft_id id, const char *s, uint64_t *index);

void h_isolate(struct harness *h, sinter_raft_id id);
void h_cut(struct harness *h, sinter_raft_id from, sinter_raft_id to);
void h_cut_both(struct harness *h, sinter_raft_id a, sinter_raft_id b);
void h_heal(struct harness *h);

void h_crash(struct harness *h, sinter_raft_id id);
void h_restart(struct harness *h, sinter_raft_id id);

/* Compacts node id's core at its applied index, keeping `trailing` entries. */
void h_compact(struct harness *h, sinter_raft_id id, uint64_t trailing);

/* Asserts (cmocka) that live nodes' applied records agree index by index and that committed
 * entries in memory agree in term (log matching). */
void h_check_consistent(struct harness *h);
/* True when node id applied an entry (index, data). */
bool h_applied_has(struct harness *h, sinter_raft_id id, const char *s);
/* Number of NORMAL entries node id applied. */
size_t h_applied_normal(struct harness *h, sinter_raft_id id);

#endif
