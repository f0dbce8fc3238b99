/*
 * sinter/raft_host.h — runs several Raft groups in one process on real disks and a real network.
 *
 * A host glues the pure core (sinter/raft.h), the durable store (sinter/raft_store.h, one
 * directory per group: DIR/group-N/) and the node-to-node transport (sinter/raft_transport.h):
 *
 *   - One event-loop thread owns every group's core and store. nng callback threads and API callers
 *     only enqueue an event (a lock-free push; the push that makes the inbox non-empty wakes the
 *     loop through an eventfd) and return: they never block on the loop, the disk or the network.
 *   - Each loop iteration: drain the inbox (received messages, proposals, reads, admin calls), tick
 *     every group when the tick interval has elapsed, then handle each group's ready in the order
 *     sinter/raft.h prescribes (send msgs; persist snapshot, hard state and entries with one store
 *     append per ready — group commit, Raft dissertation 10.2.1; send msgs_after_persist; apply
 *     committed entries in one batch; complete proposals and reads; advance). A hard state that
 *     only moves the commit hint is written after the completions, off the commit's path.
 *   - Messages of all groups bound for one peer share the peer's connection and batch. HEARTBEAT
 *     and HEARTBEAT_RESP messages of every group are collected per peer during the iteration and
 *     leave as ONE coalesced frame per peer (sinter_raft_transport_send_heartbeats): with G groups
 *     a tick costs one heartbeat frame per peer, not G (as CockroachDB and dragonboat do).
 *   - Snapshots: every snapshot_every applied entries a group takes a snapshot without stalling the
 *     loop: the state machine hands over a consistent copy on the loop thread (snapshot_prepare),
 *     a helper thread serialises it into the store's snapshot writer (snapshot_save) and makes it
 *     durable (fsync, rename: sinter_store_snap_sync), the loop publishes it, compacts the core
 * (keeping snapshot_trailing entries for slightly lagging followers) and the store. Followers too
 * far behind get the newest snapshot streamed by the transport; the receiver persists it, steps it
 * into the core, and loads it into the state machine when the core installs it.
 *   - A store error (EIO, ENOSPC, ...) stops only that group: it is logged, every pending request
 *     of the group fails with the error, and status reports it. The process stays up.
 *
 * Callbacks (state machine, proposal / read / admin completions) run on the loop thread, so they
 * must be quick and must not call sinter_raft_host_stop(); they may call the enqueueing API.
 */
#ifndef SINTER_RAFT_HOST_H
#define SINTER_RAFT_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sinter/error.h"
#include "sinter/raft.h"
#include "sinter/raft_transport.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SINTER_RAFT_HOST_MAX_GROUPS 1024

struct sinter_raft_host;
struct sinter_store_io;
struct sinter_raft_host_snap_writer;
struct sinter_raft_host_snap_reader;

/* A committed entry handed to the state machine. Every committed index reaches apply, in order:
 *   - type SINTER_RAFT_ENTRY_NORMAL: a proposed command, len > 0 (propose refuses empty data);
 *   - type SINTER_RAFT_ENTRY_NOOP (every new leader appends one) or SINTER_RAFT_ENTRY_CONFIG:
 *     nothing to apply, data NULL and len 0; the state machine only notes that its state now
 *     reflects the log up to `index`.
 * So "len == 0" alone tells a state machine that an entry is not a command. data is owned by the
 * host, valid only during the apply call. */
struct sinter_raft_host_entry {
    uint64_t index;
    uint64_t term;
    const uint8_t *data;
    uint32_t len;
    uint32_t type; /* enum sinter_raft_entry_type */
};

/* The application's state machine, one instance per group (arg and group tell which).
 * Every member but snapshot_save runs on the loop thread. */
struct sinter_raft_host_sm {
    /* Applies n committed entries, in log order, with no gap: NOOP and CONFIG entries come too
     * (len 0, see sinter_raft_host_entry), so after the call the state reflects the log up to
     * e[n-1].index, the index a snapshot of it is taken at. Return SINTER_OK; any error stops the
     * group (the replicas must stay identical, so a command the state machine cannot apply is
     * fatal to the group, never skipped). Required. */
    int (*apply)(void *arg, uint32_t group, const struct sinter_raft_host_entry *e, size_t n);
    /* Returns a consistent, immutable copy (or reference-counted view) of the state as of the
     * last applied entry, index `index` (always the index of the last entry passed to apply, or
     * of the last snapshot loaded), for snapshot_save to serialise on another thread; NULL on
     * failure (the snapshot is skipped). Optional: without it no snapshot is ever taken. */
    void *(*snapshot_prepare)(void *arg, uint32_t group, uint64_t index);
    /* Serialises `copy` with sinter_raft_host_snap_write(). Runs on a helper thread, never the
     * loop; must not touch the live state. Returns SINTER_OK or an error (snapshot abandoned). */
    int (*snapshot_save)(void *arg, uint32_t group, void *copy,
                         struct sinter_raft_host_snap_writer *w);
    /* Frees what snapshot_prepare returned (called on the loop thread after save). */
    void (*snapshot_release)(void *arg, uint32_t group, void *copy);
    /* Replaces the whole state with the snapshot read by sinter_raft_host_snap_read(), covering
     * entries up to `index`. Called on start (newest local snapshot) and when a snapshot from the
     * leader is installed. An error stops the group. Required if snapshots are used. */
    int (*snapshot_load)(void *arg, uint32_t group, uint64_t index,
                         struct sinter_raft_host_snap_reader *r);
    /* Role, leader or term changed. Optional. Also called once with SINTER_RAFT_FOLLOWER and
     * leader 0 when the group stops on a store or apply error (it does nothing as a replica from
     * then on, so nothing leader-only may go on above it); every request to the group completes
     * with that error afterwards (sinter_raft_host_call is the way to learn it). */
    void (*on_role)(void *arg, uint32_t group, uint32_t role, sinter_raft_id leader, uint64_t term);
    /* Called once per tick round (every tick_ms) for every running group, after the group's
     * core ticked, on the loop thread: the place for periodic work that must read the state
     * machine (a leader's timeout scan, phase-2 driver). Must be quick; it may call the
     * enqueueing API (propose, read, call). Optional. */
    void (*on_tick)(void *arg, uint32_t group);
    void *arg;
};

/* Appends len bytes to the snapshot being saved. Ownership: reads data. Any thread (the helper).
 * Errors: SINTER_EIO, SINTER_ENOSPC. */
int sinter_raft_host_snap_write(struct sinter_raft_host_snap_writer *w, const void *data,
                                size_t len);

/* Reads up to cap bytes of the snapshot being loaded; *n == 0 at the end. The snapshot's CRC32C is
 * verified when its last byte is read. Errors: SINTER_EIO, SINTER_ECORRUPT. */
int sinter_raft_host_snap_read(struct sinter_raft_host_snap_reader *r, void *buf, size_t cap,
                               size_t *n);

/* Log sink. level: 0 error, 1 warn, 2 info, 3 debug. group is UINT32_MAX for host-wide lines. */
typedef void (*sinter_raft_host_log_fn)(void *arg, int level, uint32_t group, const char *msg);

struct sinter_raft_host_peer {
    sinter_raft_id id;
    const char *url;
};

struct sinter_raft_host_opts {
    sinter_raft_id id;                         /* this node, non-zero; the same id in every group */
    const char *listen_url;                    /* node-to-node URL, e.g. "tcp://127.0.0.1:7001" */
    const struct sinter_raft_host_peer *peers; /* other nodes known at start (copied) */
    size_t n_peers;
    const char *data_dir;        /* DIR; group g lives in DIR/group-g/ (created) */
    uint32_t groups;             /* number of groups, 1..SINTER_RAFT_HOST_MAX_GROUPS; default 1 */
    uint32_t tick_ms;            /* logical tick; default 20 */
    uint32_t election_ticks;     /* default 10 (200-400 ms): fast failover for tests and
                                    steady disks. A follower does not answer while its log's
                                    fdatasync runs, so a disk that can stall for longer than
                                    the timeout costs the leader its quorum check: sinter-tc
                                    uses 50 (1-2 s), bench/FINDINGS.md F7 */
    uint32_t heartbeat_ticks;    /* default 1 */
    bool bootstrap;              /* a founding member: on a fresh store, bootstrap every group with
                                    {id} + peers as voters */
    uint64_t snapshot_every;     /* take a snapshot every this many applied entries; 0 = never;
                                    default 8192. After a failed snapshot the next automatic one
                                    waits 2, 4, 8 ... up to 512 ticks (snapshot_now does not) */
    uint64_t snapshot_trailing;  /* entries kept in memory behind a snapshot; default 1024 */
    uint32_t propose_timeout_ms; /* a proposal not resolved by then completes with
                                    SINTER_ETIMEOUT (outcome unknown); default 10000 */
    uint32_t segment_size;       /* store segment bytes; 0 = store default */
    uint64_t seed;               /* election PRNG seed base; 0 = from time and id */
    /* Log appends into pre-zeroed segments with O_DIRECT | O_DSYNC (sinter/raft_store.h,
     * options.direct_io): SINTER_STORE_DIRECT_IO_AUTO or _OFF; 0 = store default. */
    int store_direct_io;
    /* Bytes of zeros written after a segment's end when the store makes the space ready itself
     * (sinter/raft_store.h, options.zero_prefix): 0 = store default (1/64 of a segment, at least
     * 128 KiB, at most a quarter of a segment), SINTER_STORE_ZERO_PREFIX_NONE = none. Written on
     * the loop thread (about 1 ms per MiB here), whole at a segment's creation, at most 128 KiB at
     * open; the spare segment is asked for at half of it (never below 64 KiB). */
    uint32_t store_zero_prefix;
    /* Leader placement across groups; default false (elections alone decide, so with G groups
     * one node may well lead all of them and carry every group's proposals and fsyncs while the
     * others only follow). When true, group g's preferred leader is the voter at position
     * g mod n of its voters sorted by id (n voters): a node leading g that is not the preferred
     * voter hands leadership to it (sinter_raft_transfer, dissertation 3.10) once that voter is
     * live (sinter_raft_peer_active) and caught up to within a few entries. The preference is a
     * pure function of the group and its configuration, the same on every node, so leadership
     * never ping-pongs and the preferred node is never moved away from; a preferred node that
     * is down or cannot win is retried at most once per 2 election timeouts per group (a
     * transfer refuses proposals while it runs). Checked once per tick round on the loop. */
    bool balance_leaders;
    /* state machine of group g: sm(sm_arg, g, &out) fills *out. Required. */
    void (*sm)(void *sm_arg, uint32_t group, struct sinter_raft_host_sm *out);
    void *sm_arg;
    /* I/O table of every group's store (sinter/raft_store.h); NULL: POSIX. The hook through which
     * tests inject ENOSPC / EIO into one group's store (always compiled in, off unless set).
     * Must stay valid until stop. */
    const struct sinter_store_io *store_io;
    sinter_raft_host_log_fn log; /* NULL: stderr */
    void *log_arg;
    int log_level; /* lines above this level are dropped; default 2 (info) */
    /* Node-to-node TLS, handed to the transport as is (sinter/raft_transport.h): required for
     * (and only allowed with) a tls+tcp:// listen_url and peer URLs. The paths are read while
     * sinter_raft_host_start() runs (the transport loads them then); not kept. */
    bool tls_enable;
    struct sinter_raft_transport_tls tls;
};

/* Fills defaults. Ownership: writes *o only. */
void sinter_raft_host_opts_default(struct sinter_raft_host_opts *o);

/* Opens every group's store, restores each core (loading the newest snapshot into its state
 * machine first), starts the transport and the loop thread. Ownership: *out is the caller's,
 * released by sinter_raft_host_stop(); opts is copied. A group whose store cannot be opened
 * (ECORRUPT, EIO) starts in the failed state, reported by status, rather than failing the host.
 * Errors: SINTER_EINVAL (bad options), SINTER_ETRANSPORT / SINTER_ECONFIG (listen failed),
 * SINTER_EIO (data dir not creatable), SINTER_ENOMEM. */
int sinter_raft_host_start(struct sinter_raft_host **out, const struct sinter_raft_host_opts *opts);

/* Stops the loop and the transport, waits for helper threads, completes every pending request with
 * SINTER_ESHUTDOWN (on the calling thread), closes the stores and frees the host. Everything
 * acknowledged is already durable. NULL is ok. Must not be called from a host callback. */
void sinter_raft_host_stop(struct sinter_raft_host *h);

/* Completion of a proposal or membership change: rc SINTER_OK with the entry's index once it is
 * committed and applied; SINTER_ENOTLEADER with the leader's id and URL if known (0 / NULL
 * otherwise; url valid only during the call); SINTER_ETIMEOUT (outcome unknown), SINTER_EBUSY,
 * SINTER_ETOOBIG, SINTER_ECONFCHANGE, SINTER_EINVAL, SINTER_ESHUTDOWN, or the group's store
 * error. Runs on the loop thread. */
typedef void (*sinter_raft_host_done_fn)(void *arg, int rc, uint64_t index, sinter_raft_id leader,
                                         const char *leader_url);

/* Proposes a NORMAL entry (data copied) to group. cb is called exactly once if this returns
 * SINTER_OK. Errors (cb not called): SINTER_EINVAL (bad group, len 0), SINTER_ESHUTDOWN,
 * SINTER_ENOMEM. Any thread. */
int sinter_raft_host_propose(struct sinter_raft_host *h, uint32_t group, const void *data,
                             uint32_t len, sinter_raft_host_done_fn cb, void *arg);

/* Linearizable read (read-index, dissertation 6.4): cb(rc == SINTER_OK) runs on the loop thread
 * once the local state machine reflects every write committed before the call, so reading it
 * inside the callback is linearizable. Other rc: SINTER_ENOTLEADER (with leader), SINTER_ETIMEOUT,
 * SINTER_ESHUTDOWN. Same errors and threading as propose. */
int sinter_raft_host_read(struct sinter_raft_host *h, uint32_t group, sinter_raft_host_done_fn cb,
                          void *arg);

/* Runs cb on the loop thread, in order with the other requests to group, with rc SINTER_OK and
 * index = the group's last applied index: the way for another thread to read the state machine
 * (which belongs to the loop thread) without a raft round trip. Not linearizable (a follower's
 * state may lag); use _read for that. rc SINTER_ESHUTDOWN when the host stops first, or the
 * group's store error. Same errors and threading as propose. */
int sinter_raft_host_call(struct sinter_raft_host *h, uint32_t group, sinter_raft_host_done_fn cb,
                          void *arg);

/* Single-server membership change (enum sinter_raft_change) on group's leader; cb once the
 * configuration entry commits. A new server's URL must be known first (sinter_raft_host_add_peer).
 * Same errors and threading as propose. */
int sinter_raft_host_change_member(struct sinter_raft_host *h, uint32_t group, sinter_raft_id id,
                                   int change, sinter_raft_host_done_fn cb, void *arg);

/* Starts leadership transfer of group to `to` (0: best voter); cb as soon as the core accepted
 * (rc SINTER_OK) or refused it; watch status for the outcome. Same errors as propose. */
int sinter_raft_host_transfer(struct sinter_raft_host *h, uint32_t group, sinter_raft_id to,
                              sinter_raft_host_done_fn cb, void *arg);

/* Asks group to take a snapshot now (if anything was applied since the last one); cb with the
 * snapshot's index once it is durable and the log compacted. That snapshot covers every entry
 * applied when the loop took the request: one already being written when the request came, which
 * may miss some, does not answer it (a new one is taken at once). Same errors as propose. */
int sinter_raft_host_snapshot_now(struct sinter_raft_host *h, uint32_t group,
                                  sinter_raft_host_done_fn cb, void *arg);

/* Makes a node addressable (before adding it to a group). url copied. Any thread.
 * Errors: as sinter_raft_transport_add_peer (SINTER_EEXIST for a known id). */
int sinter_raft_host_add_peer(struct sinter_raft_host *h, sinter_raft_id id, const char *url);

struct sinter_raft_host_status {
    uint32_t role;
    sinter_raft_id leader;
    uint64_t term;
    uint64_t commit;
    uint64_t applied;
    uint64_t last_index;
    uint64_t snapshot_index;      /* the core's log starts after this */
    uint64_t snapshots_taken;     /* by this node, since start */
    uint64_t snapshots_installed; /* received from a leader and installed, since start */
    uint64_t snapshots_sent;      /* streamed to followers successfully, since start */
    struct sinter_raft_config config;
    int error; /* SINTER_OK, or the error that stopped the group */
    /* What stopped it, e.g. the store's message naming the file and offset of a corrupt record
     * (the log line has the same text, whole even when this is cut). */
    char error_msg[512];
};

/* Snapshot of group's state as of the last loop iteration. Any thread.
 * Errors: SINTER_EINVAL (bad group). */
int sinter_raft_host_status(struct sinter_raft_host *h, uint32_t group,
                            struct sinter_raft_host_status *st);

/* Host-wide counters of the loop thread (bench/FINDINGS.md F4: where the time of a commit goes),
 * accumulated since start or the last reset, published once per loop iteration. Times in ns. */
struct sinter_raft_host_stats {
    uint64_t loop_iterations;
    uint64_t loop_wakeups;         /* sleeps ended by the eventfd or a received frame */
    uint64_t events;               /* inbox events handled (proposals, received frames, ...) */
    uint64_t readies;              /* readies handled, all groups */
    uint64_t loop_busy_ns;         /* time in iterations, i.e. not sleeping */
    uint64_t loop_max_iter_ns;     /* longest single iteration */
    uint64_t loop_max_iter_end_ns; /* when it ended (CLOCK_MONOTONIC ns), to place it in time */
    uint64_t store_appends;        /* sinter_store_append calls (each one pwrite + fdatasync) */
    uint64_t store_append_entries;
    uint64_t store_append_ns;
    uint64_t store_append_max_ns;
    uint64_t hard_state_saves; /* term / vote / commit hint saved (fsync'd if term or vote moved) */
    uint64_t hard_state_ns;
    uint64_t apply_entries; /* entries handed to the state machines */
    uint64_t apply_ns;      /* time in the state machines' apply */
    uint64_t apply_max_ns;
    uint64_t snapshot_sync_ns;    /* helper threads: snapshot header + fsync + rename */
    uint64_t snapshot_publish_ns; /* loop: publishing taken snapshots + compaction */
    uint64_t snapshot_publish_max_ns;
    /* Proposals (sinter_raft_host_propose) that completed committed, and the sum of their time
     * in each stage: submitted -> proposed to the core on the loop (queue), -> their batch's
     * apply started (commit: own append, replication, acknowledgements, loop passes), the apply
     * of that batch (apply), -> their callback ran (complete: callbacks ahead of it). */
    uint64_t props_done;
    uint64_t prop_queue_ns;
    uint64_t prop_commit_ns;
    uint64_t prop_apply_ns;
    uint64_t prop_complete_ns;
};

/* Copies the counters into *st; reset zeroes them afterwards (so *_max_ns cover the interval
 * since the previous reset). Any thread. Errors: SINTER_EINVAL (NULL h or st). */
int sinter_raft_host_stats(struct sinter_raft_host *h, struct sinter_raft_host_stats *st,
                           bool reset);

/* Transport counters towards / from peer (heartbeat frames, beats, ...). Any thread.
 * Errors: SINTER_ENOTFOUND. */
int sinter_raft_host_peer_stats(struct sinter_raft_host *h, sinter_raft_id peer,
                                struct sinter_raft_transport_stats *st);

/* Number of tick rounds the loop has run (to relate heartbeat frames to rounds). Any thread. */
uint64_t sinter_raft_host_ticks(struct sinter_raft_host *h);

/* The URL of a known node (self included), NULL if unknown. Ownership: owned by the host, valid
 * until stop. Any thread. */
const char *sinter_raft_host_peer_url(struct sinter_raft_host *h, sinter_raft_id id);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_RAFT_HOST_H */
