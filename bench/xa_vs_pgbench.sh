#!/usr/bin/env bash
# XA through the coordinator vs. the bare two-phase work, on the same PostgreSQL server and at the
# same concurrency:
#   sinter-bench xa --branches 2   TM begin, two XA branches (BEGIN, UPDATE, PREPARE TRANSACTION
#                                  via the RM), TM commit; each row's time runs until phase 2
#                                  (COMMIT PREPARED of both, by the RM's workers) has drained
#   pgbench                        per transaction: two BEGIN; UPDATE; PREPARE TRANSACTION, then
#                                  COMMIT PREPARED of both (bench/xa_pgbench.sql), no coordinator
# Both update the client's own two rows of table bench_xa. Prints both throughputs and
# their ratio per concurrency.
#
#   bench/xa_vs_pgbench.sh [SECONDS]     (default 15 s per row)
#
# Starts its own PostgreSQL (tests/lib/pg-server.sh in a temp dir, max_prepared_transactions 256)
# and a local 3-node cluster (deploy/local-cluster.sh, 1 raft group, temp dir, ports from
# SINTER_CLIENT_PORT etc., free ones unless set), stops both by PID at the end. Environment: SINTER_BIN (default
# build/bin), SINTER_BENCH_CONC (default "8 32"), SINTER_XA_BENCH_ARGS (extra sinter-bench xa
# flags, e.g. "--wait-phase2" for commits that wait for phase 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-15}
bin=${SINTER_BIN:-$root/build/bin}
concs=${SINTER_BENCH_CONC:-"8 32"}
export SINTER_TC=${SINTER_TC:-$bin/sinter-tc}
# Free ports unless set: a benchmark must not collide with a cluster or test already running.
export SINTER_CLIENT_PORT=${SINTER_CLIENT_PORT:-auto} SINTER_RAFT_PORT=${SINTER_RAFT_PORT:-auto}
export SINTER_HTTP_PORT=${SINTER_HTTP_PORT:-auto}
export SINTER_GROUPS=${SINTER_GROUPS:-1}
pgs=$root/tests/lib/pg-server.sh
cluster=$root/deploy/local-cluster.sh
pgbench="$(bash "$pgs" bindir)/pgbench"
[[ -x $bin/sinter-bench ]] || { echo "xa_vs_pgbench: build sinter-bench first" >&2; exit 1; }
[[ -x $pgbench ]] || { echo "xa_vs_pgbench: pgbench not found (package postgresql-contrib / postgresql)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/sinter-xa-bench.XXXXXX)
cleanup() {
  "$cluster" stop "$tmp/cluster" >/dev/null || true
  bash "$pgs" stop "$tmp/pg" >/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$pgs" start "$tmp/pg" --max-prepared 256 >/dev/null
base=$(cat "$tmp/pg/conninfo")
ci="$base dbname=postgres"
"$cluster" start "$tmp/cluster" >/dev/null
cport=$(sed -n 's/^cport=//p' "$tmp/cluster/cluster.env")
addrs=()
for n in 1 2 3; do addrs+=(--addr "tcp://127.0.0.1:$((cport + n - 1))"); done
# pgbench connects through libpq environment variables (its own -h/-p/-U flags would do too).
port=$(cat "$tmp/pg/port")
as_pg=()
[[ $(id -u) -eq 0 ]] && as_pg=(runuser -u postgres --)

cargs=()
for c in $concs; do cargs+=(--concurrency "$c"); done
echo "# sinter-bench xa --branches 2, $secs s per row"
read -r -a xargs_extra <<<"${SINTER_XA_BENCH_ARGS:-}"
"$bin/sinter-bench" xa --branches 2 --seconds "$secs" --conninfo "$ci" \
  --secret-file "$tmp/cluster/secret" "${addrs[@]}" "${cargs[@]}" "${xargs_extra[@]}" | tee "$tmp/xa.out"

printf '\n%6s %14s %14s %8s\n' conc sinter_xa_tx_s pgbench_tx_s ratio
for c in $concs; do
  xa=$(awk -v c="$c" '$1 == c { print $2 }' "$tmp/xa.out")
  jobs=$((c < 2 ? c : 2))
  pg=$(cd "$tmp" && "${as_pg[@]}" env PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres \
        "$pgbench" -n -M simple -f "$root/bench/xa_pgbench.sql" -c "$c" -j "$jobs" -T "$secs" \
        postgres 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
  ratio=$(awk -v a="$xa" -v b="$pg" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf '%6s %14s %14s %8s\n' "$c" "$xa" "$pg" "$ratio"
done
