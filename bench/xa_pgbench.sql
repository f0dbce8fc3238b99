-- pgbench custom script for bench/xa_vs_pgbench.sh: the bare two-phase work of one XA global
-- with two branches, no coordinator. Each client updates its own two rows of bench_xa (created by
-- sinter-bench xa, rows 1..2 x concurrency), prepares both transactions, then commits both.
\set r1 :client_id * 2 + 1
\set r2 :client_id * 2 + 2
BEGIN;
UPDATE bench_xa SET balance = balance + 1 WHERE id = :r1;
PREPARE TRANSACTION 'pgb-:client_id-1';
BEGIN;
UPDATE bench_xa SET balance = balance + 1 WHERE id = :r2;
PREPARE TRANSACTION 'pgb-:client_id-2';
COMMIT PREPARED 'pgb-:client_id-1';
COMMIT PREPARED 'pgb-:client_id-2';
