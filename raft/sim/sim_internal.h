/*
 * raft/sim/sim_internal.h — state shared by the simulator's translation units (not installed).
 *
 * Layout: sim.c runs the loop and the scheduler, host.c is the per-node host (ready contract,
 * in-memory disk, state machine), net.c the in-memory network, check.c the safety checker, trace.c
 * the event ring and the output. Functions shared between them carry the sinter_sim_ prefix.
 */
#ifndef SINTER_RAFT_SIM_INTERNAL_H
#define SINTER_RAFT_SIM_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sim.h"
#include "sinter/raft.h"

/* Steps per Raft tick. Network delays and sync latencies are counted in steps, so a message can
 * arrive in the middle of a tick and several can race within one. */
#define SIM_TICK       5
#define SIM_MAX_NODES  16
#define SIM_SPARES     2    /* servers outside the founding configuration, for add / re-add */
#define SIM_CACHE      1024 /* per-node entry-hash cache slots (power of two) */
#define SIM_RX_SNAPS   4    /* snapshot data kept per node, received beside SNAPSHOT messages */
#define SIM_TRACE_RING 512
#define SIM_SNAP_HIST  4 /* older snapshots a host keeps */

/* ---- PRNG: xoshiro256** seeded through splitmix64 (one stream per run) ---- */
struct sim_rng {
    uint64_t s[4];
};
void sinter_sim_rng_seed(struct sim_rng *r, uint64_t seed);
uint64_t sinter_sim_rng_next(struct sim_rng *r);
/* Uniform in [0, n); n == 0 gives 0. */
uint64_t sinter_sim_rng_below(struct sim_rng *r, uint64_t n);
/* True with probability num/den. */
bool sinter_sim_rng_chance(struct sim_rng *r, uint64_t num, uint64_t den);

/* 64-bit hashing used for entry fingerprints and the state machine digest. */
uint64_t sinter_sim_hash_bytes(const void *p, size_t n, uint64_t h);
uint64_t sinter_sim_mix(uint64_t h, uint64_t v);
/* Fingerprint of an entry's content (type and data; index and term are compared separately). */
uint64_t sinter_sim_entry_hash(const struct sinter_raft_entry *e);

/* ---- the replicated state machine: an append-only register ----
 * The state is the digest of every entry applied so far (index, term, type, data), so two nodes
 * that applied different histories can never have equal states, and a read that returns the state
 * at index N proves exactly which writes it reflects: all of those at index <= N. The snapshot
 * data is this struct. */
struct sim_sm {
    uint64_t index;  /* last applied index */
    uint64_t count;  /* NORMAL entries applied */
    uint64_t digest; /* hash chain over everything applied */
};

/* A log held by the host (disk image or pending write): consecutive entries, data owned. */
struct sim_log {
    struct sinter_raft_entry *e;
    size_t n, cap;
};

/* The in-memory disk. `durable` survives a crash; the pending write of the outstanding ready is
 * not durable until its sync step, and a crash keeps only a prefix of it (possibly empty). */
struct sim_disk {
    bool has_snap;
    struct sinter_raft_snapshot_meta snap;
    struct sim_sm snap_data;
    struct sinter_raft_hard_state hs;
    struct sim_log log; /* entries after snap.index */

    bool pending;
    bool p_snap;
    struct sinter_raft_snapshot_meta p_meta;
    struct sim_sm p_data;
    bool p_hs;
    struct sinter_raft_hard_state p_hsv;
    struct sim_log p_entries;
};

struct sim_rxsnap {
    bool valid;
    uint64_t index, term;
    struct sim_sm data;
};

/* A read-index request served by a node once its applied index reaches `index`. */
struct sim_read {
    uint64_t ctx;
    int slot;       /* node that started it */
    uint32_t inc;   /* incarnation of that node */
    uint64_t need;  /* highest index known committed anywhere when the read started */
    uint64_t start; /* step */
    uint64_t index; /* read index handed back by the core */
    bool confirmed; /* the core answered SINTER_OK */
};

/* Per-node cache of entry fingerprints so the per-step log scans do not rehash unchanged
 * entries: a slot matches when index, term, data pointer and length are all unchanged. */
struct sim_cache_ent {
    uint64_t index, term, prev, hash;
    const void *ptr;
    uint32_t len, type;
    bool checked; /* registry check passed with this prev term */
};

/* The leader append-only shadow: the log a leader held, from the step it was first seen leading in
 * `term`, as (term, hash) pairs from index `base`. */
struct sim_shadow {
    uint64_t term; /* 0 = not leading */
    uint64_t base;
    uint64_t *terms, *hashes;
    size_t n, cap;
    struct sinter_raft_config cfg; /* configuration in force at the last look */
    uint64_t cfg_index;            /* index of the entry that created it (0: bootstrap/none) */
};

struct sim_node {
    sinter_raft_id id;
    int slot;
    bool founder;
    bool up;
    uint32_t inc; /* incarnation, bumped on every restart */
    struct sinter_raft *r;
    struct sinter_raft_options opts;

    /* the outstanding ready */
    bool rd_out;
    struct sinter_raft_ready rd;
    uint64_t sync_at;

    struct sim_disk disk;
    struct sim_sm sm;
    struct sim_rxsnap rx[SIM_RX_SNAPS];
    unsigned rx_next;

    /* clock */
    uint64_t next_tick;
    uint32_t tick_period; /* steps per tick for this node's clock (skew) */
    uint64_t paused_until;
    uint32_t sync_max; /* max sync latency in steps */

    /* checker bookkeeping */
    bool touched; /* the simulator called into r since the last check: the core is pure, so an
                     untouched core cannot have changed and its per-node checks are skipped */
    uint64_t commit_seen;
    uint64_t cfg_first, cfg_last, cfg_last_term; /* log shape at the last configuration check */
    struct sim_shadow shadow;
    struct sim_cache_ent *cache;
};

/* Network link parameters, per ordered pair (from, to). */
struct sim_link {
    bool blocked;
    uint16_t loss;       /* per mille */
    uint16_t dup;        /* per mille */
    uint16_t dmin, dmax; /* delay in steps, dmin >= 1 */
};

struct sim_netmsg {
    uint64_t at, seq;
    int from, to; /* slots */
    uint32_t from_inc;
    bool has_snap;
    struct sim_sm snap_data;
    struct sinter_raft_msg m; /* entries point into the same allocation */
};

/* A filter the Figure 8 scenario installs: drop APPENDs from -> to that carry an entry with a term
 * above `above`. */
struct sim_filter {
    bool on;
    int from, to;
    uint64_t above;
};

struct sim_reg_ent {
    uint64_t term, hash, prev; /* prev = term of the entry before it, 0 = not seen yet */
};
struct sim_reg_slot {
    struct sim_reg_ent *v;
    uint32_t n, cap;
};
struct sim_commit {
    bool set;
    uint64_t term, hash;
    uint64_t cterm; /* lowest current term of a node seen treating it as committed */
};
struct sim_applied {
    bool set;
    uint64_t term, hash, digest;
};

struct sim_checker {
    uint64_t *term_leader; /* term -> leader id (0 = none seen) */
    size_t n_terms;
    struct sim_reg_slot *reg; /* index -> entries seen at that index, one per term */
    size_t n_reg;
    struct sim_commit *com; /* index -> the committed entry */
    size_t n_com;
    uint64_t max_committed;
    struct sim_applied *app; /* index -> the canonical applied entry and state digest */
    size_t n_app;
};

enum sim_ev_kind {
    EV_NOTE = 0,
    EV_RECV,
    EV_DROP,
    EV_CRASH,
    EV_RESTART,
    EV_PART,
    EV_HEAL,
    EV_PROPOSE,
    EV_READ,
    EV_READ_DONE,
    EV_CONF,
    EV_TRANSFER,
    EV_ROLE,
    EV_SNAP_TAKE,
    EV_SNAP_INSTALL,
    EV_CLOCK,
    EV_SYNC,
    EV_COMMIT,
    EV_PHASE,
    EV_LINK,
};

struct sim_ev {
    uint64_t step;
    uint16_t kind;
    int16_t node;
    uint32_t x;
    uint64_t a, b, c, d;
};

struct sim {
    struct sinter_sim_config cfg;
    FILE *out;
    struct sim_rng rng;
    uint64_t now;

    int n_nodes;
    struct sim_node nodes[SIM_MAX_NODES];
    struct sinter_raft_config founders;

    /* per-seed profile */
    uint32_t election_ticks;
    uint32_t snap_every;    /* applied entries between host snapshots */
    uint32_t snap_trailing; /* entries kept after compaction */
    uint32_t torn_pm;       /* per mille: a crash keeps a prefix of the unsynced write */
    uint32_t max_msg_entries, max_inflight;
    bool pre_vote, check_quorum;

    /* network */
    struct sim_link link[SIM_MAX_NODES][SIM_MAX_NODES];
    struct sim_netmsg **heap;
    size_t n_heap, cap_heap;
    uint64_t msg_seq;
    struct sim_filter filter;
    /* Laggard profile: slots (bit i = slot i) whose incoming APPENDs lose every entry of the
     * APPEND's own term, whoever sends it; cleared by every heal. */
    uint32_t laggards;

    /* clients */
    uint64_t next_write;
    uint64_t next_ctx;
    struct sim_read *reads;
    size_t n_reads, cap_reads;

    /* schedule */
    int phase; /* 0 heal, 1 fault */
    uint64_t phase_end;
    uint64_t heal_start;
    uint64_t leader_at; /* step a leader was seen in this heal phase, 0 = not yet */
    bool heal_ok;
    uint64_t probe_index[8], probe_term[8]; /* proposals made during the heal phase */
    int n_probe;
    int sc_state; /* scenario state */
    uint64_t sc_since, sc_index, sc_term;
    int sc_a, sc_b, sc_c;

    struct sim_checker chk;

    /* violation */
    bool failed;
    bool liveness_failed;
    char why[512];

    struct sim_ev ring[SIM_TRACE_RING];
    uint64_t n_ev;

    struct sinter_sim_result *res;
};

/* ---- trace.c ---- */
void sinter_sim_ev(struct sim *s, uint16_t kind, int node, uint32_t x, uint64_t a, uint64_t b,
                   uint64_t c, uint64_t d);
/* Records a free-form note (kept short; formatted at once, only when tracing or on violation). */
void sinter_sim_note(struct sim *s, int node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks the run failed (first failure wins). */
void sinter_sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sinter_sim_fail_liveness(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sinter_sim_print_ev(struct sim *s, const struct sim_ev *e);
void sinter_sim_print_tail(struct sim *s);

/* ---- host.c ---- */
int sinter_sim_node_start(struct sim *s, struct sim_node *n);
void sinter_sim_node_crash(struct sim *s, struct sim_node *n);
void sinter_sim_node_process(struct sim *s, struct sim_node *n);
void sinter_sim_node_free(struct sim_node *n);
void sinter_sim_log_free(struct sim_log *l);
struct sim_node *sinter_sim_node_by_id(struct sim *s, sinter_raft_id id);

/* ---- net.c ---- */
void sinter_sim_net_send(struct sim *s, struct sim_node *from, const struct sinter_raft_msg *m);
void sinter_sim_net_deliver(struct sim *s);
void sinter_sim_net_free(struct sim *s);
void sinter_sim_net_heal(struct sim *s);

/* ---- check.c ---- */
int sinter_sim_check_init(struct sim_checker *c);
void sinter_sim_check_free(struct sim_checker *c);
/* Log matching (checked inductively): (index, term) names one entry forever, with one content and
 * one predecessor term (prev 0 = unknown). The registry holds every entry that was ever DURABLE on
 * some node (`durable` = record it); entries a core holds in memory or a host is about to write
 * are looked up against it. Volatile entries are not recorded: a single-voter leader that crashes
 * before its new term is durable legitimately re-creates its term (nothing escaped meanwhile,
 * raft.h holds every message back while the term is unsynced). */
void sinter_sim_check_entry(struct sim *s, int node, const char *where,
                            const struct sinter_raft_entry *e, uint64_t hash, uint64_t prev,
                            bool durable);
/* State machine safety on one applied entry; sm is the state after applying it. */
void sinter_sim_check_apply(struct sim *s, struct sim_node *n, const struct sinter_raft_entry *e,
                            uint64_t hash, const struct sim_sm *sm);
/* A state machine state adopted from a snapshot must equal the canonical state at its index. */
void sinter_sim_check_snapshot_state(struct sim *s, struct sim_node *n, const char *what,
                                     const struct sinter_raft_snapshot_meta *meta,
                                     const struct sim_sm *data);
/* Every per-step check over all nodes. */
void sinter_sim_check_step(struct sim *s);
/* Forgets a node's per-incarnation checker state (crash). */
void sinter_sim_check_reset_node(struct sim_node *n);
/* Whether (index, term) is known committed. */
bool sinter_sim_check_is_committed(const struct sim *s, uint64_t index, uint64_t term);

#endif /* SINTER_RAFT_SIM_INTERNAL_H */
