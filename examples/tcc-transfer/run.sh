#!/usr/bin/env bash
# The TCC transfer demo: starts a local 3-node sinter-tc cluster (deploy/local-cluster.sh), two
# account services (sinter-account, each with its own SQLite database), and runs three global
# transactions with sinter-transfer, printing balances and the status each global ended in:
#
#   1. a transfer that commits (both tries succeed; the coordinator confirms both branches);
#   2. a transfer whose debit try fails (insufficient funds): the client rolls back, the
#      coordinator cancels the branches (the credit branch never tried: nothing to undo);
#   3. a transfer whose client never commits: at the global's timeout the coordinator rolls it
#      back by itself (TimeoutRollbacked) and cancels both tries.
#
# Then stops the services and the cluster by their PIDs (also on failure or Ctrl-C).
#
#   examples/tcc-transfer/run.sh [DIR]     DIR: cluster data, logs, PIDs and the two databases
#                                          (default build/local-cluster)
#
# Environment: SINTER_BIN (directory of sinter-tc, sinter-account, sinter-transfer; default
# build/bin), SINTER_ACCOUNT_PORT (first of the two services' ports, default 19101), and
# deploy/local-cluster.sh's variables (SINTER_CLIENT_PORT, SINTER_RAFT_PORT, SINTER_HTTP_PORT,
# SINTER_GROUPS). Exit status 0 when every global ended as described above.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/build/local-cluster}
bin=${SINTER_BIN:-$root/build/bin}
export SINTER_TC=${SINTER_TC:-$bin/sinter-tc}
cluster=$root/deploy/local-cluster.sh
aport=${SINTER_ACCOUNT_PORT:-19101}
svc_a=tcp://127.0.0.1:$aport
svc_b=tcp://127.0.0.1:$((aport + 1))

for p in sinter-tc sinter-account sinter-transfer; do
  if [[ ! -x $bin/$p ]]; then
    echo "run.sh: $bin/$p not found: build first (cmake --build build)" >&2
    exit 1
  fi
done
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$aport" $((aport + 1)); do
  if port_open "$port"; then
    echo "run.sh: port $port is already in use; set SINTER_ACCOUNT_PORT" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  local rc=$?
  echo
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  ((${#pids[@]} == 0)) || echo "account services stopped"
  "$cluster" stop "$dir" || echo "run.sh: stopping the cluster in $dir failed" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$cluster" start "$dir"
cport=$(sed -n 's/^cport=//p' "$dir/cluster.env")
addrs=()
for n in 1 2 3; do
  addrs+=(--addr "tcp://127.0.0.1:$((cport + n - 1))")
done
common=("${addrs[@]}" --secret-file "$dir/secret")

# Fresh databases each run: the demo's numbers are then always the same.
rm -f "$dir"/bank-[ab].db*
start_service() { # name db listen account=amount log
  "$bin/sinter-account" --name "$1" --db "$2" --listen "$3" --open "$4" "${common[@]}" \
    >"$5" 2>&1 &
  pids+=($!)
}
start_service bank-a "$dir/bank-a.db" "$svc_a" alice=100 "$dir/bank-a.log"
start_service bank-b "$dir/bank-b.db" "$svc_b" bob=50 "$dir/bank-b.log"
for log in "$dir/bank-a.log" "$dir/bank-b.log"; do
  for ((i = 0; i < 100; i++)); do
    grep -q '^ready' "$log" && break
    sleep 0.1
  done
  grep -q '^ready' "$log" || { echo "run.sh: service did not start, see $log:" >&2; cat "$log" >&2; exit 1; }
done
echo
echo "account services: bank-a ($svc_a, $dir/bank-a.db: alice = 100)," \
  "bank-b ($svc_b, $dir/bank-b.db: bob = 50)"

transfer() { "$bin/sinter-transfer" "${common[@]}" --from "$svc_a" alice --to "$svc_b" bob "$@"; }

echo
echo "== 1. alice pays bob 30: both tries succeed, the client commits, the coordinator confirms"
transfer --amount 30 --expect Committed
echo
echo "== 2. alice pays bob 500: the debit try fails (insufficient funds), the client rolls back"
transfer --amount 500 --expect Rollbacked
echo
echo "== 3. alice pays bob 20 with a 2 s timeout, but the client never commits: the coordinator"
echo "      rolls the global back at its timeout and cancels both tries"
transfer --amount 20 --timeout-ms 2000 --no-commit --expect TimeoutRollbacked
echo
echo "tcc-transfer: every global ended as expected; money moved only in 1 (alice 70, bob 80)."
