#!/usr/bin/env bash
# Starts a local 3-node sinter-tc cluster, runs sinter-walkthrough against it, and stops the
# cluster again, also when the walkthrough fails or the script is interrupted.
#
#   examples/tc-walkthrough/run.sh [DIR]    DIR: the cluster's data, logs and PID files
#                                           (default build/local-cluster)
#
# Environment: SINTER_BIN, the directory holding sinter-tc and sinter-walkthrough (default
# build/bin); SINTER_TC and the other variables of deploy/local-cluster.sh (SINTER_GROUPS,
# SINTER_CLIENT_PORT, SINTER_RAFT_PORT) are passed through to it. The cluster is stopped through
# `deploy/local-cluster.sh stop DIR`, which signals the PIDs recorded in DIR: a cluster that was
# already running in DIR is stopped too. Exit status: the walkthrough's (0 = every answer as
# expected), or local-cluster.sh's when the cluster did not start.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/build/local-cluster}
bin=${SINTER_BIN:-$root/build/bin}
export SINTER_TC=${SINTER_TC:-$bin/sinter-tc}
walkthrough=$bin/sinter-walkthrough
cluster=$root/deploy/local-cluster.sh

if [[ ! -x $walkthrough ]]; then
  echo "run.sh: $walkthrough not found: build first (cmake --build build)" >&2
  exit 1
fi

# local-cluster.sh start reports success when another process already listens on a node's ports
# (its own node then exits with "address in use"), and the walkthrough would talk to that other
# cluster with the wrong secret. Refuse early instead. Same defaults as local-cluster.sh.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for base in "${SINTER_CLIENT_PORT:-18091}" "${SINTER_RAFT_PORT:-17091}"; do
  for port in "$base" $((base + 1)) $((base + 2)); do
    if port_open "$port"; then
      echo "run.sh: port $port is already in use (another local cluster? stop it with" \
        "deploy/local-cluster.sh stop ITS_DIR, or set SINTER_CLIENT_PORT / SINTER_RAFT_PORT)" >&2
      exit 1
    fi
  done
done

stop_cluster() {
  echo
  "$cluster" stop "$dir" || echo "run.sh: stopping the cluster in $dir failed" >&2
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$cluster" start "$dir"
# The client ports the cluster was started with (local-cluster.sh records them).
cport=$(sed -n 's/^cport=//p' "$dir/cluster.env")
addrs=()
for n in 1 2 3; do
  addrs+=(--addr "tcp://127.0.0.1:$((cport + n - 1))")
done
echo
"$walkthrough" --secret-file "$dir/secret" "${addrs[@]}"
