-- Sinter coordinator state: one SQLite database per raft group, written only by the transaction
-- state machine (tc/fsm.c) while it applies committed raft entries. This file is the single source
-- of the schema: the build embeds it into the sinter-tc-fsm library (tc/CMakeLists.txt), and the
-- state machine runs it once when it creates a database. Schema version 1 (meta.schema_version);
-- a change to this file that is not backward compatible must bump that number. Indexes hold no
-- state of their own (the digest and every query's result are the same with or without one), so
-- adding or dropping one is not such a change: tc/fsm.c open_db brings an older file's index set
-- up to date and the version stays (a bump would also change meta, hence the digest, between
-- replicas of different versions).
--
-- Determinism: every key is chosen by the state machine from raft indexes or from command fields
-- (never an implicit rowid), every ordered scan names its ORDER BY, and times are the leader's
-- clock stamped into the command, so every replica holds byte-identical logical state.
-- Status codes are Seata's (include/sinter/types.h).

-- Key/value integers: schema_version, group_id, last_applied_index, last_applied_term.
-- last_applied_index is written in the same SQLite transaction as the changes of the entries up
-- to it, so a restart re-applies exactly the entries after it.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Global transactions. xid_index is the raft index of the BEGIN entry (the xid is
-- "<group>:<xid_index>"), so it is unique for the life of the cluster.
CREATE TABLE globals (
    xid_index       INTEGER PRIMARY KEY,
    status          INTEGER NOT NULL,           -- GlobalStatus
    decision        INTEGER NOT NULL DEFAULT 0, -- 0 (Begin) or Committing / Rollbacking /
                                                -- TimeoutRollbacking: which way phase 2 goes
    app_id          TEXT    NOT NULL,
    tx_name         TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,           -- the TM that began it ('' if none)
    timeout_ms      INTEGER NOT NULL,
    begin_ms        INTEGER NOT NULL,           -- leader clock at BEGIN
    deadline_ms     INTEGER NOT NULL,           -- begin_ms + timeout_ms (timeout scan key)
    decided_ms      INTEGER NOT NULL DEFAULT 0, -- leader clock at the decision
    phase2_first_ms INTEGER NOT NULL DEFAULT 0, -- first phase-2 attempt (retry deadline base)
    end_ms          INTEGER NOT NULL DEFAULT 0, -- leader clock when a final status was reached
    app_data        BLOB    NOT NULL
);
-- Phase-2 worker, admin listings and metrics: status IN (...), in xid order.
CREATE INDEX globals_status ON globals (status, xid_index);
-- Timeout worker (Begin globals whose deadline passed, oldest deadline first): served by
-- globals_status (status = 1), the plan SQLite chose anyway. The former partial index
-- globals_begin_deadline cost a page write per BEGIN and per decision and no plan used it.
-- Retention GC: only successfully finished globals are ever removed (failed ones stay for an
-- operator), oldest end first; the partial index holds exactly the removable rows. Its condition
-- is spelled with OR, not IN (9, 11, 13): SQLite evaluates a partial index's condition on every
-- INSERT of a global and twice (old and new row) on every UPDATE of its status, and 3.40 codes an
-- IN list of more than two constants as an ephemeral table built each time (EXPLAIN:
-- OpenEphemeral; a temporary pager and its page-cache allocation), five per 2-branch global. The
-- former globals_gc (the IN spelling) is replaced by tc/fsm.c open_db in an older file.
CREATE INDEX globals_ended ON globals (end_ms, xid_index)
    WHERE status = 9 OR status = 11 OR status = 13;

-- Branches. branch_id is the raft index of the REGISTER entry (unique within the group, and
-- together with the xid unique in the cluster).
CREATE TABLE branches (
    branch_id      INTEGER PRIMARY KEY,
    xid_index      INTEGER NOT NULL,
    branch_type    INTEGER NOT NULL,            -- BranchType: 1 TCC, 3 XA
    resource_id    TEXT    NOT NULL,
    client_id      TEXT    NOT NULL,            -- the RM instance that registered it
    status         INTEGER NOT NULL,            -- BranchStatus
    app_data       BLOB    NOT NULL,
    xa_info        BLOB    NOT NULL,            -- XA: e.g. the pg_current_xact_id() of the branch
    register_ms    INTEGER NOT NULL,
    phase2_results INTEGER NOT NULL DEFAULT 0,  -- phase-2 results recorded (retry count + 1)
    last_result_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX branches_xid ON branches (xid_index, branch_id);

-- Client sessions: per client, the highest sequence number seen and the floor below which answers
-- have been forgotten (a retry at or below the floor is refused, never re-applied). A row outlives
-- its answers by far: GC removes it only once no answer is left, never in the pass that raised its
-- floor, and only when last_seen_ms is older than the GC command's client cutoff (a client
-- retention much longer than the session retention), so a retry of a forgotten seq is refused for
-- as long as the row exists.
CREATE TABLE clients (
    client_id    TEXT PRIMARY KEY,
    max_seq      INTEGER NOT NULL,
    floor_seq    INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The first answer to each (client, seq): a retry returns it without applying anything again.
-- body_crc is the CRC32C of the command body, so a seq reused for a different request is refused.
CREATE TABLE sessions (
    client_id     TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    body_crc      INTEGER NOT NULL,
    rc            INTEGER NOT NULL,
    status        INTEGER NOT NULL,
    branch_status INTEGER NOT NULL,
    xid_index     INTEGER NOT NULL,
    branch_id     INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
-- Session GC: oldest first.
CREATE INDEX sessions_created ON sessions (created_ms, client_id, seq);
