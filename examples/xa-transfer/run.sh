#!/usr/bin/env bash
# The XA transfer demo, self-contained: starts a throwaway PostgreSQL server (tests/lib/pg-server.sh:
# its own initdb, 127.0.0.1, a free port, max_prepared_transactions = 64) and a local 3-node
# sinter-tc cluster (deploy/local-cluster.sh), runs sinter-xa-transfer against both, and stops
# both again by PID, also when the demo fails or the script is interrupted.
#
#   examples/xa-transfer/run.sh [DIR]    DIR: cluster and server directories (default
#                                        build/xa-transfer; removed PostgreSQL dir at the end)
#
# Environment: SINTER_BIN (directory of sinter-tc and sinter-xa-transfer, default build/bin),
# SINTER_TRANSFERS (committed transfers, default 3), and deploy/local-cluster.sh's variables
# (SINTER_CLIENT_PORT, SINTER_RAFT_PORT, SINTER_HTTP_PORT, SINTER_GROUPS).
# Exit status: the demo's (0 = balances conserved, every global ended as expected).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/build/xa-transfer}
bin=${SINTER_BIN:-$root/build/bin}
export SINTER_TC=${SINTER_TC:-$bin/sinter-tc}
demo=$bin/sinter-xa-transfer
cluster=$root/deploy/local-cluster.sh
pgs=$root/tests/lib/pg-server.sh

if [[ ! -x $demo ]]; then
  echo "run.sh: $demo not found: build first (cmake --build build)" >&2
  exit 1
fi
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for base in "${SINTER_CLIENT_PORT:-18091}" "${SINTER_RAFT_PORT:-17091}"; do
  for port in "$base" $((base + 1)) $((base + 2)); do
    if port_open "$port"; then
      echo "run.sh: port $port is already in use (another local cluster? set" \
        "SINTER_CLIENT_PORT / SINTER_RAFT_PORT)" >&2
      exit 1
    fi
  done
done

mkdir -p "$dir"
cleanup() {
  echo
  "$cluster" stop "$dir/cluster" || echo "run.sh: stopping the cluster failed" >&2
  bash "$pgs" stop "$dir/pg" || echo "run.sh: stopping PostgreSQL failed" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== PostgreSQL (max_prepared_transactions = 64)"
bash "$pgs" start "$dir/pg" --max-prepared 64
echo "== sinter-tc cluster"
"$cluster" start "$dir/cluster"
cport=$(sed -n 's/^cport=//p' "$dir/cluster/cluster.env")
addrs=()
for n in 1 2 3; do
  addrs+=(--addr "tcp://127.0.0.1:$((cport + n - 1))")
done
echo
echo "== transfers"
"$demo" --secret-file "$dir/cluster/secret" "${addrs[@]}" --conninfo "$(cat "$dir/pg/conninfo")" \
  --transfers "${SINTER_TRANSFERS:-3}"
