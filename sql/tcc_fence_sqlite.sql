-- Sinter TCC fence table, SQLite flavour. It lives in the service's own database, next to the
-- business tables, so a fence row and the business change of the same try / confirm / cancel are
-- written by one local transaction (rm/fence.c). Single source: the build embeds this file into
-- libsinter-rm (rm/CMakeLists.txt) and sinter_fence_init() runs it; every statement must be
-- idempotent (IF NOT EXISTS) because it runs on every service start.
--
-- Modelled on Seata's tcc_fence_log; the status codes are Seata's TCCFenceConstant values:
--   1 TRIED       phase one ran (the business try is committed with this row)
--   2 COMMITTED   confirm ran
--   3 ROLLBACKED  cancel ran after a try
--   4 SUSPENDED   cancel arrived first ("empty rollback"): nothing to undo, and a try that
--                 arrives later is refused (anti-suspension)
-- Times are milliseconds since the Unix epoch (UTC) on the service's clock.
CREATE TABLE IF NOT EXISTS sinter_tcc_fence (
    xid         TEXT     NOT NULL,                -- global transaction id, text form "<group>:<index>"
    branch_id   INTEGER  NOT NULL,                -- branch id from the coordinator
    action_name TEXT     NOT NULL,                -- the TCC action (resource) name, for operators
    status      SMALLINT NOT NULL CHECK (status BETWEEN 1 AND 4),
    created_at  INTEGER  NOT NULL,                -- ms epoch when the row was inserted
    modified_at INTEGER  NOT NULL,                -- ms epoch of the last status change
    PRIMARY KEY (xid, branch_id)                  -- the fence itself: one row per branch, ever
) WITHOUT ROWID;

-- Cleanup (sinter_fence_cleanup) deletes ended rows (status 2, 3, 4) modified before a cutoff,
-- in batches: this index serves exactly that scan.
CREATE INDEX IF NOT EXISTS sinter_tcc_fence_status_modified
    ON sinter_tcc_fence (status, modified_at);
