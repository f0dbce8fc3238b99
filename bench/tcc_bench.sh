#!/usr/bin/env bash
# Runs `sinter-bench tcc` against a fresh local 3-node sinter-tc cluster (deploy/local-cluster.sh
# in a temp dir) at concurrency 1, 16 and 64, prints the table, and stops the cluster by its PIDs
# (also on failure or Ctrl-C).
#
#   bench/tcc_bench.sh [--seconds T] [--warmup S] [--branches N] [--concurrency C,...]
#                      [--rm-workers N]
#
# Environment: SINTER_BIN (directory of sinter-tc and sinter-bench, default build/bin), and the
# port variables of deploy/local-cluster.sh (SINTER_CLIENT_PORT / _RAFT_PORT / _HTTP_PORT,
# default 18091 / 17091 / 18081), SINTER_GROUPS (raft groups, default 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SINTER_BIN:-$root/build/bin}
export SINTER_TC=${SINTER_TC:-$bin/sinter-tc}
seconds=10 warmup=2 branches=2 conc=1,16,64 rmw=8
while (($#)); do
  case $1 in
  --seconds) seconds=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --branches) branches=$2; shift 2 ;;
  --concurrency) conc=$2; shift 2 ;;
  --rm-workers) rmw=$2; shift 2 ;;
  *) echo "usage: $0 [--seconds T] [--warmup S] [--branches N] [--concurrency C,...] [--rm-workers N]" >&2; exit 2 ;;
  esac
done
for p in sinter-tc sinter-bench; do
  [[ -x $bin/$p ]] || { echo "tcc_bench.sh: $bin/$p not found: build first" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/sinter-tcc-bench.XXXXXX")
cleanup() {
  "$root/deploy/local-cluster.sh" stop "$dir" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
cport=$(sed -n 's/^cport=//p' "$dir/cluster.env")
addrs=tcp://127.0.0.1:$cport,tcp://127.0.0.1:$((cport + 1)),tcp://127.0.0.1:$((cport + 2))
echo "# fresh 3-node cluster in $dir ($(nproc) CPU(s)); $(uname -r); $(date -u +%FT%TZ)"
"$bin/sinter-bench" tcc --branches "$branches" --concurrency "$conc" --seconds "$seconds" \
  --warmup "$warmup" --rm-workers "$rmw" --addrs "$addrs" --secret-file "$dir/secret"
