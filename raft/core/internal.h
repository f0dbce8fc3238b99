/*
 * Private declarations shared by the modules of the pure Raft core. Nothing here is exported from
 * sinter/raft.h; every non-static symbol carries the raft__ prefix.
 *
 * Module map (one concern each):
 *   raft.c        API entry points, message dispatch and term rules, ready/advance, introspection
 *   log.c         the in-memory log since the last compaction; entry buffers and their deferred
 *                 release
 *   election.c    role changes, randomised timeouts, pre-vote and vote (Raft paper 5.2,
 *                 dissertation 9.6), check-quorum and the follower's leader lease (4.2.3, 6.2)
 *   progress.c    per-peer replication progress: probe / replicate / snapshot, inflight window
 *   replication.c AppendEntries both ways, heartbeats, commit counting (paper 5.3, 5.4.2)
 *   membership.c  single-server changes (dissertation 4.1-4.3) and learners
 *   snapshot.c    compaction, snapshot metadata, InstallSnapshot (paper 7)
 *   readindex.c   linearizable reads by ReadIndex (dissertation 6.4)
 *   transfer.c    leadership transfer (dissertation 3.10)
 *   config.c      the public sinter_raft_config_* helpers
 */
#ifndef SINTER_RAFT_INTERNAL_H
#define SINTER_RAFT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/raft.h"

/* ---- entry data buffers ----------------------------------------------------------------------
 * Entry payloads live in heap buffers with a small header. A buffer dropped from the log (by
 * truncation or compaction) may still be referenced by a ready or a queued message, so it is not
 * freed at once: it is linked into a "trash" list (no allocation needed, so dropping can never
 * fail) and freed by the first sinter_raft_advance() whose ready was taken after the drop. */
struct raft__buf {
    struct raft__buf *next;
};

uint8_t *raft__buf_alloc(uint32_t len);
void raft__buf_trash(struct sinter_raft *r, uint8_t *data);
void raft__buf_free(uint8_t *data);
void raft__buf_free_list(struct raft__buf *b);

/* ---- log ------------------------------------------------------------------------------------ */
struct raft__log {
    struct sinter_raft_entry *e; /* e[i].index == base + 1 + i */
    size_t n;
    size_t cap;
    uint64_t base;      /* index of the last entry discarded (0 if none) */
    uint64_t base_term; /* its term */
    /* Configuration in force at `base` (from the snapshot, or computed when compacting). */
    struct sinter_raft_config base_cfg;
    uint64_t base_cfg_index;
};

uint64_t raft__log_last_index(const struct raft__log *l);
uint64_t raft__log_last_term(const struct raft__log *l);
/* Term of the entry at index: true and *term when known (base..last), false otherwise. */
bool raft__log_term(const struct raft__log *l, uint64_t index, uint64_t *term);
/* Entry at index, NULL when outside (base, last]. */
struct sinter_raft_entry *raft__log_get(const struct raft__log *l, uint64_t index);
/* Ensures room for n more entries. SINTER_ENOMEM leaves the log unchanged. */
int raft__log_reserve(struct raft__log *l, size_t n);
/* Appends e, taking ownership of e->data (a raft__buf). Room must have been reserved. */
void raft__log_push(struct raft__log *l, const struct sinter_raft_entry *e);
/* Deep-copies n entries into dst with fresh payload buffers. All or nothing (SINTER_ENOMEM). */
int raft__entries_copy(struct sinter_raft_entry *dst, const struct sinter_raft_entry *src,
                       size_t n);
/* Drops every entry at index >= from (trashing their buffers). */
void raft__log_truncate(struct sinter_raft *r, uint64_t from);
/* Drops every entry at index <= upto; base moves to upto. */
void raft__log_compact(struct sinter_raft *r, uint64_t upto);
/* Largest index <= index whose term is <= term (fast back-off, etcd's findConflictByTerm). Stops
 * at base. */
uint64_t raft__log_find_conflict_by_term(const struct raft__log *l, uint64_t index, uint64_t term);
/* Is a log ending at (index, term) at least as up to date as ours (paper 5.4.1)? */
bool raft__log_up_to_date(const struct raft__log *l, uint64_t index, uint64_t term);
/* Configuration in force at index (base <= index): latest CONFIG entry at or below it, or the
 * configuration at base. */
void raft__log_config_at(const struct raft__log *l, uint64_t index, struct sinter_raft_config *cfg,
                         uint64_t *cfg_index);

/* ---- progress ------------------------------------------------------------------------------- */
enum raft__pr_state {
    RAFT__PR_PROBE = 0,     /* one append at a time until the match point is found */
    RAFT__PR_REPLICATE = 1, /* pipelining: next advanced optimistically, inflight window */
    RAFT__PR_SNAPSHOT = 2,  /* a snapshot is on its way; nothing else is sent */
};

struct raft__progress {
    bool used;
    sinter_raft_id id;
    uint64_t match;
    uint64_t next;
    uint8_t state;
    bool paused;        /* probe: an append is outstanding */
    bool recent_active; /* heard from it since the last check-quorum round */
    uint64_t pending_snapshot;
    uint32_t snapshot_elapsed;
    uint64_t read_ack; /* highest read-index round it acknowledged in this term */
    uint64_t hb_match; /* match at the previous heartbeat answer (stall detection) */
    uint32_t stalls;   /* heartbeat answers in a row without progress while replicating */
    uint64_t *infl;    /* ring of last indexes of appends in flight, max_inflight slots */
    uint32_t infl_cap; /* == options.max_inflight */
    uint32_t infl_start;
    uint32_t infl_count;
};

struct raft__progress *raft__pr_get(struct sinter_raft *r, sinter_raft_id id);
const struct raft__progress *raft__pr_cget(const struct sinter_raft *r, sinter_raft_id id);
/* Makes the progress slots match r->cfg: keeps existing peers, adds new ones probing at next. */
void raft__pr_sync(struct sinter_raft *r, bool reset);
void raft__pr_become_probe(struct sinter_raft *r, struct raft__progress *p);
void raft__pr_become_replicate(struct sinter_raft *r, struct raft__progress *p);
void raft__pr_become_snapshot(struct raft__progress *p, uint64_t snap_index);
bool raft__pr_is_paused(const struct sinter_raft *r, const struct raft__progress *p);
void raft__pr_infl_add(struct sinter_raft *r, struct raft__progress *p, uint64_t last);
void raft__pr_infl_free_to(struct raft__progress *p, uint64_t index);
void raft__pr_infl_free_first(struct raft__progress *p);
bool raft__pr_infl_full(const struct sinter_raft *r, const struct raft__progress *p);
/* Updates match/next from an acknowledgement; true when match advanced. */
bool raft__pr_maybe_update(struct raft__progress *p, uint64_t index);
/* Fast back-off after a rejection; false when the rejection is stale. */
bool raft__pr_maybe_decr(struct raft__progress *p, uint64_t rejected, uint64_t probe_last);

/* ---- queues --------------------------------------------------------------------------------- */
struct raft__msgq {
    struct sinter_raft_msg *v;
    size_t n;
    size_t cap;
};

struct raft__read {
    uint64_t ctx;
    uint64_t index;
    uint64_t round; /* 0: waiting for the leader to commit an entry of its term */
    uint32_t elapsed;
};

/* ---- the core ------------------------------------------------------------------------------- */
struct sinter_raft {
    struct sinter_raft_options o;
    sinter_raft_id id;

    /* Persistent state (paper figure 2). */
    uint64_t term;
    sinter_raft_id vote;
    struct raft__log log;

    /* Volatile state. */
    uint32_t role;
    sinter_raft_id leader;
    uint64_t commit;
    uint64_t applied;      /* the host has applied up to here (advance) */
    uint64_t apply_handed; /* handed out in rd.committed (>= applied) */

    /* Persistence bookkeeping (see "Persistence contract" in raft.h). */
    uint64_t persisted;     /* entries <= persisted are durable */
    uint64_t unstable_from; /* first entry not yet handed out in a ready */
    uint64_t ready_last;    /* last entry of the outstanding ready (clipped on truncation) */
    struct sinter_raft_hard_state hs_handed; /* last hard state handed out */
    bool snap_pending; /* the installed snapshot must go out in the next ready */
    bool ready_out;    /* a ready is outstanding */
    bool ready_had_snap;
    uint64_t ready_snap_index;
    uint64_t ready_applied; /* last index in the outstanding ready's committed */

    /* The host's latest durable snapshot (what is sent to lagging followers). */
    struct sinter_raft_snapshot_meta snap;

    /* Configuration: the latest one in the log (dissertation 4.1: used as soon as appended). */
    struct sinter_raft_config cfg;
    uint64_t cfg_index;
    bool voter_before_cfg;              /* we are a voter in the configuration preceding cfg */
    struct sinter_raft_config prev_cfg; /* the configuration preceding cfg (== cfg if unknown) */

    /* Timers. */
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    uint64_t prng;

    /* Candidate / pre-candidate vote tally (indexes follow cfg.servers). */
    sinter_raft_id granted[SINTER_RAFT_MAX_SERVERS];
    sinter_raft_id rejected[SINTER_RAFT_MAX_SERVERS];
    uint32_t n_granted;
    uint32_t n_rejected;

    /* Leader state. */
    struct raft__progress prs[SINTER_RAFT_MAX_SERVERS];
    uint64_t *infl_buf;
    uint64_t uncommitted_bytes;
    sinter_raft_id transfer_to;
    uint32_t transfer_elapsed;
    bool timeout_now_sent;

    /* Read-index. */
    struct raft__read *reads;
    size_t n_reads;
    size_t cap_reads;
    uint64_t read_round;
    struct sinter_raft_read_state *reads_out; /* finished, waiting for the next ready */
    size_t n_reads_out;
    size_t cap_reads_out;

    /* Output queues: pending ones fill up between readies; the ready_* ones belong to the
     * outstanding ready. */
    struct raft__msgq msgs;
    struct raft__msgq msgs_after;
    struct raft__msgq rd_msgs;
    struct raft__msgq rd_after;
    struct sinter_raft_entry *rd_entries;
    struct sinter_raft_entry *rd_committed;
    struct sinter_raft_read_state *rd_reads;
    size_t rd_n_reads;

    /* Deferred frees of entry buffers (see raft__buf). */
    struct raft__buf *trash_new;
    struct raft__buf *trash_old;
};

/* ---- raft.c --------------------------------------------------------------------------------- */
/* Queues a message for rd.msgs (after_persist false) or rd.msgs_after_persist. Entries are copied
 * shallowly (the buffers stay the log's). A message that cannot be allocated is dropped, which
 * Raft tolerates like any network loss. */
void raft__send(struct sinter_raft *r, struct sinter_raft_msg *m, bool after_persist);
bool raft__is_voter(const struct sinter_raft_config *cfg, sinter_raft_id id);
uint32_t raft__quorum(const struct sinter_raft *r);
bool raft__promotable(const struct sinter_raft *r);

/* ---- election.c ----------------------------------------------------------------------------- */
void raft__reset_randomized_timeout(struct sinter_raft *r);
void raft__become_follower(struct sinter_raft *r, uint64_t term, sinter_raft_id leader);
void raft__become_pre_candidate(struct sinter_raft *r);
void raft__become_candidate(struct sinter_raft *r);
void raft__become_leader(struct sinter_raft *r);
void raft__campaign(struct sinter_raft *r, bool transfer);
void raft__tick_election(struct sinter_raft *r);
void raft__tick_leader(struct sinter_raft *r);
bool raft__in_lease(const struct sinter_raft *r);
void raft__handle_vote(struct sinter_raft *r, const struct sinter_raft_msg *m);
void raft__handle_vote_resp(struct sinter_raft *r, const struct sinter_raft_msg *m);

/* ---- replication.c -------------------------------------------------------------------------- */
bool raft__send_append(struct sinter_raft *r, struct raft__progress *p, bool send_if_empty);
void raft__bcast_append(struct sinter_raft *r);
void raft__bcast_heartbeat(struct sinter_raft *r, uint64_t ctx);
int raft__handle_append(struct sinter_raft *r, const struct sinter_raft_msg *m);
void raft__handle_append_resp(struct sinter_raft *r, const struct sinter_raft_msg *m);
void raft__handle_heartbeat(struct sinter_raft *r, const struct sinter_raft_msg *m);
void raft__handle_heartbeat_resp(struct sinter_raft *r, const struct sinter_raft_msg *m);
/* Leader: advances commit by counting persisted matches (paper 5.3, 5.4.2). True if it moved. */
bool raft__maybe_commit(struct sinter_raft *r);
/* Appends entries the leader created (noop, proposal, config) to its own log. */
int raft__leader_append(struct sinter_raft *r, uint32_t type, const void *data, uint32_t len,
                        uint64_t *index);
/* Commit moved: release uncommitted bytes, finish config changes, reads. */
void raft__on_commit(struct sinter_raft *r, uint64_t old_commit);

/* ---- membership.c --------------------------------------------------------------------------- */
/* A CONFIG entry was appended (or the log was truncated / reset): recompute r->cfg. */
void raft__config_refresh(struct sinter_raft *r);
void raft__config_on_commit(struct sinter_raft *r);
bool raft__config_valid(const struct sinter_raft_config *cfg);

/* ---- snapshot.c ----------------------------------------------------------------------------- */
void raft__send_snapshot(struct sinter_raft *r, struct raft__progress *p);
int raft__handle_snapshot(struct sinter_raft *r, const struct sinter_raft_msg *m);
void raft__tick_snapshots(struct sinter_raft *r);

/* ---- readindex.c ---------------------------------------------------------------------------- */
void raft__reads_on_ack(struct sinter_raft *r);
void raft__reads_on_commit(struct sinter_raft *r);
void raft__reads_fail_all(struct sinter_raft *r, int rc);
void raft__reads_tick(struct sinter_raft *r);

/* ---- transfer.c ----------------------------------------------------------------------------- */
void raft__transfer_abort(struct sinter_raft *r);
void raft__transfer_on_progress(struct sinter_raft *r, struct raft__progress *p);
void raft__transfer_tick(struct sinter_raft *r);

#endif /* SINTER_RAFT_INTERNAL_H */
