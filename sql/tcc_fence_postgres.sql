-- Sinter TCC fence table, PostgreSQL flavour. It lives in the service's own database, next to the
-- business tables, so a fence row and the business change of the same try / confirm / cancel are
-- written by one local transaction (rm/fence.c). Single source: the build embeds this file into
-- libsinter-rm (rm/CMakeLists.txt) and sinter_fence_init() runs it (in the connection's current
-- schema); every statement must be idempotent (IF NOT EXISTS) because it runs on every start.
--
-- Modelled on Seata's tcc_fence_log; the status codes are Seata's TCCFenceConstant values:
--   1 TRIED       phase one ran (the business try is committed with this row)
--   2 COMMITTED   confirm ran
--   3 ROLLBACKED  cancel ran after a try
--   4 SUSPENDED   cancel arrived first ("empty rollback"): nothing to undo, and a try that
--                 arrives later is refused (anti-suspension)
-- Times are the database server's clock.
CREATE TABLE IF NOT EXISTS sinter_tcc_fence (
    xid         text        NOT NULL,             -- global transaction id, text form "<group>:<index>"
    branch_id   bigint      NOT NULL,             -- branch id from the coordinator
    action_name text        NOT NULL,             -- the TCC action (resource) name, for operators
    status      smallint    NOT NULL CHECK (status BETWEEN 1 AND 4),
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    -- The fence itself: one row per branch, ever. Concurrent inserts of the same key (a try racing
    -- its cancel) are serialised by this unique index; rm/fence_pg.c relies on it.
    CONSTRAINT sinter_tcc_fence_pkey PRIMARY KEY (xid, branch_id)
);

-- Cleanup (sinter_fence_cleanup) deletes ended rows (status 2, 3, 4) modified before a cutoff,
-- in batches: this index serves exactly that scan.
CREATE INDEX IF NOT EXISTS sinter_tcc_fence_status_modified
    ON sinter_tcc_fence (status, modified_at);
