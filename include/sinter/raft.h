/*
 * sinter/raft.h — the pure Raft consensus core.
 *
 * The core is a deterministic state machine: no clock, no randomness source, no sockets and no disk
 * inside. The caller (a host process, the simulator, a unit test) feeds it events and collects what
 * to do in a "ready" batch, in the style of etcd's raft.Node and canonical/raft's legacy API:
 *
 *   events in:   sinter_raft_tick()          one unit of logical time passed
 *                sinter_raft_step()          a message arrived from a peer
 *                sinter_raft_propose()       the application wants an entry replicated
 *                sinter_raft_change_member() add a learner / voter, promote, remove
 *                sinter_raft_transfer()      hand leadership to another voter
 *                sinter_raft_read_index()    start a linearizable read
 *                sinter_raft_compact()       the host has a durable snapshot at index N
 *                sinter_raft_report_*()      transport feedback (unreachable peer, snapshot sent)
 *
 *   actions out: sinter_raft_ready() fills a struct sinter_raft_ready. The host MUST then, in
 * order:
 *                1. send rd.msgs (allowed at once, in parallel with step 2: Raft dissertation
 *                   section 10.2.1 lets the leader write its log while replicating);
 *                2. persist durably (fsync) rd.snapshot (if any), rd.hard_state (if dirty) and
 *                   rd.entries (rd.entries[0].index replaces every persisted entry at that index or
 *                   above); a hard state whose term and vote are unchanged only moves the commit
 *                   hint, which nothing sent depends on: it may be written at any point before
 *                   step 5, without fsync, or be lost;
 *                3. only after 2 is durable, send rd.msgs_after_persist (votes and append
 *                   acknowledgements promise something about stable storage, Raft paper 5.1-5.4);
 *                4. apply rd.committed in order, and serve rd.reads once applied >= read.index;
 *                5. call sinter_raft_advance().
 *                At most one ready is outstanding: sinter_raft_ready() fails with SINTER_EBUSY
 * until sinter_raft_advance(). Events may be fed while a ready is outstanding.
 *
 * Election timeouts are randomised in [election_ticks, 2 * election_ticks) from a PRNG seeded by
 * options.seed, which the caller owns, so a run is reproducible from its seeds.
 *
 * Memory: the core keeps every entry since the last compaction in memory (as canonical/raft does);
 * the host bounds that by taking snapshots. All pointers inside a ready or inside messages the core
 * produced are owned by the core and stay valid until sinter_raft_advance() (for a ready) or the
 * next call on the same sinter_raft (for anything else). Messages passed to sinter_raft_step() are
 * owned by the caller; the core copies what it keeps.
 *
 * Thread safety: none. One sinter_raft is used by one thread at a time.
 */
#ifndef SINTER_RAFT_H
#define SINTER_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A configuration holds at most this many servers (voters plus learners). */
#define SINTER_RAFT_MAX_SERVERS 16

/* Server ids are chosen by the operator; 0 means "none" (no leader known, no vote cast). */
typedef uint64_t sinter_raft_id;

enum sinter_raft_role {
    SINTER_RAFT_FOLLOWER = 0,
    SINTER_RAFT_PRE_CANDIDATE = 1, /* pre-vote phase, term not yet incremented (dissertation 9.6) */
    SINTER_RAFT_CANDIDATE = 2,
    SINTER_RAFT_LEADER = 3,
};

enum sinter_raft_suffrage {
    SINTER_RAFT_VOTER = 0,   /* counts in elections and commit quorums */
    SINTER_RAFT_LEARNER = 1, /* receives the log, never votes or counts (dissertation 4.2.1) */
};

struct sinter_raft_server {
    sinter_raft_id id;
    uint8_t suffrage; /* enum sinter_raft_suffrage */
};

/* A cluster configuration. Servers are kept sorted by id; ids are unique and non-zero. */
struct sinter_raft_config {
    uint32_t n;
    struct sinter_raft_server servers[SINTER_RAFT_MAX_SERVERS];
};

enum sinter_raft_entry_type {
    SINTER_RAFT_ENTRY_NORMAL = 1, /* application command */
    SINTER_RAFT_ENTRY_CONFIG = 2, /* data = sinter_raft_config_encode() of the new configuration */
    SINTER_RAFT_ENTRY_NOOP = 3,   /* appended by every new leader (Raft paper 5.4.2, 8) */
};

struct sinter_raft_entry {
    uint64_t term;
    uint64_t index;
    uint32_t type; /* enum sinter_raft_entry_type */
    uint32_t len;
    uint8_t *data; /* len bytes; NULL when len is 0 */
};

/* What a snapshot covers: every entry up to and including (index, term), and the configuration in
 * force at that index. The snapshot's bytes are the application's business and never pass through
 * the core: the host reads them from its snapshot store when rd.msgs contains a
 * SINTER_RAFT_MSG_SNAPSHOT and ships them with the message. */
struct sinter_raft_snapshot_meta {
    uint64_t index;
    uint64_t term;
    uint64_t config_index; /* index of the entry that created `config` */
    struct sinter_raft_config config;
};

/* Term and vote: must be durable before any message that depends on them is sent. `commit` is
 * persisted as a hint only (it may lag): a ready's hard_state.commit never exceeds the entries
 * that were durable before that ready, so a crash between writing the hard state and the entries
 * cannot make restore() treat a stale entry as committed. */
struct sinter_raft_hard_state {
    uint64_t term;
    sinter_raft_id vote;
    uint64_t commit;
};

enum sinter_raft_msg_type {
    SINTER_RAFT_MSG_APPEND = 1,      /* AppendEntries: prev (index, log_term), entries, commit */
    SINTER_RAFT_MSG_APPEND_RESP = 2, /* index = last index now matching, or rejected prev index */
    SINTER_RAFT_MSG_VOTE = 3,        /* RequestVote: (index, log_term) = candidate's last entry */
    SINTER_RAFT_MSG_VOTE_RESP = 4,
    SINTER_RAFT_MSG_PRE_VOTE = 5, /* term = the term the sender would campaign in */
    SINTER_RAFT_MSG_PRE_VOTE_RESP = 6,
    SINTER_RAFT_MSG_HEARTBEAT = 7, /* commit, context (read-index round) */
    SINTER_RAFT_MSG_HEARTBEAT_RESP = 8,
    SINTER_RAFT_MSG_SNAPSHOT = 9, /* InstallSnapshot: snapshot meta; data travels beside it */
    SINTER_RAFT_MSG_TIMEOUT_NOW =
        10, /* leadership transfer: campaign at once (dissertation 3.10) */
};
#define SINTER_RAFT_MSG_TYPE_MAX 10

struct sinter_raft_msg {
    uint32_t type; /* enum sinter_raft_msg_type */
    sinter_raft_id from;
    sinter_raft_id to;
    uint64_t term;
    uint64_t log_term;    /* APPEND: prev log term; VOTE/PRE_VOTE: last log term */
    uint64_t index;       /* APPEND: prev log index; VOTE/PRE_VOTE: last log index;
                             APPEND_RESP: match index, or the rejected prev index */
    uint64_t commit;      /* APPEND/HEARTBEAT: leader's commit index */
    bool reject;          /* *_RESP */
    uint64_t reject_hint; /* APPEND_RESP reject: follower's hint for fast back-off (its last index
                             or the first index of the conflicting term) */
    uint64_t hint_term;   /* APPEND_RESP reject: term of the entry at reject_hint, 0 if none */
    uint64_t context;     /* HEARTBEAT(_RESP): read-index round; VOTE: 1 = leadership transfer
                             (a vote that may disregard a live leader's lease) */
    uint32_t n_entries;   /* APPEND */
    struct sinter_raft_entry *entries;
    struct sinter_raft_snapshot_meta snapshot; /* SNAPSHOT */
};

/* The answer to one sinter_raft_read_index() call. rc is SINTER_OK, SINTER_ENOTLEADER (leadership
 * lost before the read was confirmed) or SINTER_ETIMEOUT. When rc is SINTER_OK the host may serve
 * the read once its applied index is >= index. */
struct sinter_raft_read_state {
    uint64_t ctx;
    uint64_t index;
    int rc;
};

struct sinter_raft_ready {
    /* Soft state, always filled: what the node is now. */
    uint32_t role; /* enum sinter_raft_role */
    sinter_raft_id leader;
    uint64_t term;

    /* 1. Messages that may be sent at once. */
    struct sinter_raft_msg *msgs;
    size_t n_msgs;

    /* 2. To persist durably, in this order. */
    bool snapshot_dirty; /* install the snapshot received from the leader (data came with the
                            SNAPSHOT message the host stepped); it replaces the state machine and
                            every log entry at or below snapshot.index. The core's log restarts
                            after the snapshot, so persisted entries above snapshot.index (left
                            from a conflicting suffix) must be discarded too; rd.entries, if any,
                            then start at snapshot.index + 1 */
    struct sinter_raft_snapshot_meta snapshot;
    bool hard_state_dirty;
    struct sinter_raft_hard_state hard_state;
    struct sinter_raft_entry *entries; /* new or rewritten log suffix */
    size_t n_entries;

    /* 3. Messages to send only once step 2 is durable. */
    struct sinter_raft_msg *msgs_after_persist;
    size_t n_msgs_after_persist;

    /* 4. Committed entries to apply in order, and finished read-index requests. */
    struct sinter_raft_entry *committed;
    size_t n_committed;
    struct sinter_raft_read_state *reads;
    size_t n_reads;
};

struct sinter_raft_options {
    sinter_raft_id id;        /* this server, non-zero */
    uint32_t election_ticks;  /* base election timeout; default 10 */
    uint32_t heartbeat_ticks; /* leader heartbeat interval; default 1; < election_ticks */
    uint64_t seed;            /* seeds the election-timeout PRNG */
    bool pre_vote;            /* default true when options are zeroed via _defaults() */
    bool check_quorum;        /* leader steps down when it cannot reach a majority for an
                                 election timeout; followers ignore votes while they hear from a
                                 live leader (dissertation 4.2.3, 6.2); default true */
    uint32_t max_msg_entries; /* cap on entries per APPEND; default 256 */
    uint32_t max_msg_bytes;   /* cap on entry bytes per APPEND (at least one entry is always
                                 sent); default 1 MiB */
    uint32_t max_inflight;    /* APPENDs in flight per follower while pipelining; default 64 */
    uint64_t max_uncommitted_bytes; /* leader refuses proposals (SINTER_EBUSY) beyond this many
                                       uncommitted entry bytes; default 64 MiB; 0 = no cap (one
                                       proposal is always admitted when none is pending) */
    uint32_t read_timeout_ticks;    /* read-index requests fail with SINTER_ETIMEOUT after this
                                       many ticks; default 2 * election_ticks */
};

/* Fills *opts with defaults for server id. Ownership: writes *opts only. */
void sinter_raft_options_defaults(struct sinter_raft_options *opts, sinter_raft_id id);

struct sinter_raft;

/* Creates a core with an empty log, term 0, no vote and no configuration (a server with no
 * configuration never campaigns: it waits to be added by a leader). Ownership: *out is owned by
 * the caller and released with sinter_raft_close(); opts is copied; zero ticks, caps and
 * read_timeout_ticks take their defaults.
 * Errors: SINTER_EINVAL (bad options), SINTER_ENOMEM. */
int sinter_raft_new(struct sinter_raft **out, const struct sinter_raft_options *opts);

/* Releases a core and everything it owns, including pointers handed out in a ready. NULL is ok. */
void sinter_raft_close(struct sinter_raft *r);

/* Bootstraps a brand-new cluster: appends entry (index 1, term 1, CONFIG, config). Every founding
 * server calls it with the same config; the entry appears in the next ready's entries to persist.
 * Errors: SINTER_ESTATE (log or term not empty), SINTER_EINVAL (invalid config). */
int sinter_raft_bootstrap(struct sinter_raft *r, const struct sinter_raft_config *config);

/* Restores durable state after a restart, before any other event: the last snapshot (NULL if
 * none), hard state, the persisted entries following the snapshot (consecutive indexes), and the
 * index the application has already applied (>= snapshot index, entries up to it are not handed
 * out again). Ownership: everything is copied. Errors: SINTER_ESTATE (core not fresh),
 * SINTER_EINVAL (gaps, indexes not following the snapshot, applied beyond the log), SINTER_ENOMEM.
 */
int sinter_raft_restore(struct sinter_raft *r, const struct sinter_raft_snapshot_meta *snapshot,
                        const struct sinter_raft_hard_state *hs,
                        const struct sinter_raft_entry *entries, size_t n_entries,
                        uint64_t applied);

/* One unit of logical time. Drives election timeouts, heartbeats, check-quorum, transfer and
 * read-index timeouts. */
void sinter_raft_tick(struct sinter_raft *r);

/* Feeds one message from a peer. Messages from older terms are answered or dropped as the Raft
 * paper says; malformed messages (unknown type, entries not consecutive) give SINTER_EINVAL and
 * change nothing. Ownership: *m is the caller's; the core copies entries it keeps.
 * Errors: SINTER_EINVAL, SINTER_ENOMEM. */
int sinter_raft_step(struct sinter_raft *r, const struct sinter_raft_msg *m);

/* Appends a NORMAL entry with a copy of data on the leader. On success *index and *term (either
 * may be NULL) say where it went: the proposal is committed if an entry with that index and term
 * is later handed out in rd.committed; a different term at that index means it was lost.
 * Errors: SINTER_ENOTLEADER, SINTER_EBUSY (uncommitted-bytes cap, or leadership transfer in
 * progress), SINTER_ETOOBIG (len > max_msg_bytes), SINTER_EINVAL (data NULL with len > 0),
 * SINTER_ENOMEM. */
int sinter_raft_propose(struct sinter_raft *r, const void *data, uint32_t len, uint64_t *index,
                        uint64_t *term);

enum sinter_raft_change {
    SINTER_RAFT_ADD_LEARNER = 1, /* add a new server as learner */
    SINTER_RAFT_ADD_VOTER = 2,   /* add a new server as voter, or promote a learner */
    SINTER_RAFT_REMOVE = 3,      /* remove a voter or learner; removing the leader is allowed: it
                                    replicates the entry, steps down once it commits
                                    (dissertation 4.2.2) */
};

/* Proposes a single-server membership change (dissertation 4.1) on the leader. At most one change
 * is uncommitted at a time. Errors: SINTER_ENOTLEADER, SINTER_ECONFCHANGE (a change is pending or
 * the leader has not committed an entry in its term yet), SINTER_EINVAL (unknown id to remove,
 * existing id to add, would leave no voter), SINTER_ETOOBIG (configuration full), SINTER_EBUSY
 * (transfer in progress), SINTER_ENOMEM. */
int sinter_raft_change_member(struct sinter_raft *r, sinter_raft_id id, int change,
                              uint64_t *index);

/* Starts leadership transfer to voter `to` (0: the most up-to-date other voter). The leader stops
 * accepting proposals, brings `to` up to date, then sends TIMEOUT_NOW; the transfer is abandoned
 * after an election timeout. Errors: SINTER_ENOTLEADER, SINTER_EINVAL (to is not a voter or is
 * self), SINTER_EBUSY (a transfer is already running). */
int sinter_raft_transfer(struct sinter_raft *r, sinter_raft_id to);

/* Starts a linearizable read (dissertation 6.4). The answer arrives in a later ready's reads with
 * the same ctx: the read index, once the leader has confirmed with a majority, in its current
 * term, that it is still leader, and has committed an entry of its own term.
 * Errors: SINTER_ENOTLEADER (only the leader serves read-index), SINTER_ENOMEM. */
int sinter_raft_read_index(struct sinter_raft *r, uint64_t ctx);

/* The host has durably stored a snapshot covering entries up to `index` (<= applied index).
 * The core discards its in-memory entries up to index - trailing (keeping `trailing` entries so a
 * slightly lagging follower still gets entries, not a snapshot), and uses the snapshot for
 * followers behind the kept log. Errors: SINTER_EINVAL (index beyond applied or before the last
 * snapshot). */
int sinter_raft_compact(struct sinter_raft *r, uint64_t index, uint64_t trailing);

/* Fills *meta with what a snapshot at `index` (<= applied) must record, notably the configuration
 * in force at that index. Errors: SINTER_EINVAL (index beyond applied), SINTER_ECOMPACTED (index
 * precedes the entries held in memory; the host already has a snapshot covering it, or is about
 * to: a snapshot received from the leader beyond `applied` waits in the next ready). */
int sinter_raft_snapshot_meta_at(const struct sinter_raft *r, uint64_t index,
                                 struct sinter_raft_snapshot_meta *meta);

/* Transport feedback: peer `id` could not be reached (a send failed); the leader stops pipelining
 * to it and probes instead. */
void sinter_raft_report_unreachable(struct sinter_raft *r, sinter_raft_id id);

/* Transport feedback: the snapshot the host shipped to `id` was delivered (ok) or failed. A
 * SNAPSHOT message always names the host's latest snapshot at the time of the ready that carries
 * it (sinter_raft_compact() between readies updates queued ones). If no report and no answer
 * arrives within 4 election timeouts, the leader probes the follower again (and so may send a
 * fresh SNAPSHOT). */
void sinter_raft_report_snapshot(struct sinter_raft *r, sinter_raft_id id, bool ok);

/* True when sinter_raft_ready() would return something worth handling. */
bool sinter_raft_has_ready(const struct sinter_raft *r);

/* Fills *rd with everything to do now (see the top of this file). Ownership: the arrays belong to
 * the core and stay valid until sinter_raft_advance(). Errors: SINTER_EBUSY (previous ready not
 * advanced). */
int sinter_raft_ready(struct sinter_raft *r, struct sinter_raft_ready *rd);

/* The host has done everything rd asked (persisted, sent, applied). Must be called with the ready
 * returned by the last sinter_raft_ready(). */
void sinter_raft_advance(struct sinter_raft *r, const struct sinter_raft_ready *rd);

/* Introspection, for hosts, metrics, the simulator's safety checker and tests. */
sinter_raft_id sinter_raft_self(const struct sinter_raft *r);
uint32_t sinter_raft_role(const struct sinter_raft *r);
sinter_raft_id sinter_raft_leader(const struct sinter_raft *r);
uint64_t sinter_raft_term(const struct sinter_raft *r);
sinter_raft_id sinter_raft_vote(const struct sinter_raft *r);
uint64_t sinter_raft_commit_index(const struct sinter_raft *r);
uint64_t sinter_raft_applied_index(const struct sinter_raft *r);
uint64_t sinter_raft_first_index(const struct sinter_raft *r); /* first entry held in memory */
uint64_t sinter_raft_last_index(const struct sinter_raft *r);
uint64_t sinter_raft_last_term(const struct sinter_raft *r);
/* The snapshot the log starts after (index 0 if none). */
void sinter_raft_snapshot(const struct sinter_raft *r, struct sinter_raft_snapshot_meta *meta);
/* The entry at index, or SINTER_ECOMPACTED / SINTER_ENOTFOUND. *e points into the core's memory,
 * valid until the next mutating call. */
int sinter_raft_entry_at(const struct sinter_raft *r, uint64_t index,
                         const struct sinter_raft_entry **e);
/* The configuration in force (the latest in the log, committed or not: dissertation 4.1). */
void sinter_raft_configuration(const struct sinter_raft *r, struct sinter_raft_config *cfg);
/* Leader only: the match index of each server in the configuration (0 if unknown). */
uint64_t sinter_raft_match_index(const struct sinter_raft *r, sinter_raft_id id);
/* Leader only: true when server id answered (an append or heartbeat response) since the current
 * check-quorum round began, i.e. within about one election timeout, so a host can tell a live
 * follower from one whose match index is merely old (a leadership transfer to a dead server
 * blocks proposals for an election timeout). A server the leader has not heard from yet counts
 * as active for its first round (the grace check-quorum gives it), self always does; false on a
 * follower or candidate and for ids outside the configuration. Without check_quorum the marks
 * are never cleared, so it only says the server was heard from once. */
bool sinter_raft_peer_active(const struct sinter_raft *r, sinter_raft_id id);

/* Configuration helpers. encode writes at most SINTER_RAFT_CONFIG_MAX_BYTES into buf and returns
 * the length; decode validates a version byte, bounds, sortedness and uniqueness.
 * Errors (decode): SINTER_ETRUNCATED, SINTER_EBADVERSION, SINTER_EINVAL. */
#define SINTER_RAFT_CONFIG_MAX_BYTES (8 + SINTER_RAFT_MAX_SERVERS * 9)
size_t sinter_raft_config_encode(const struct sinter_raft_config *cfg, uint8_t *buf);
int sinter_raft_config_decode(struct sinter_raft_config *cfg, const uint8_t *buf, size_t len);
/* Adds or updates server id with the given suffrage, keeping the array sorted.
 * Errors: SINTER_EINVAL (id 0), SINTER_ETOOBIG (full). */
int sinter_raft_config_add(struct sinter_raft_config *cfg, sinter_raft_id id, uint8_t suffrage);
/* Removes id. Errors: SINTER_ENOTFOUND. */
int sinter_raft_config_remove(struct sinter_raft_config *cfg, sinter_raft_id id);
/* Returns the index of id in cfg->servers, or -1. */
int sinter_raft_config_find(const struct sinter_raft_config *cfg, sinter_raft_id id);
/* Number of voters. */
uint32_t sinter_raft_config_voters(const struct sinter_raft_config *cfg);

/* Human-readable names, static strings. */
const char *sinter_raft_role_name(uint32_t role);
const char *sinter_raft_msg_name(uint32_t type);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RAFT_H */
