#!/usr/bin/env bash
# Runs `sinter-bench tcc` against a fresh local 3-node sinter-tc cluster (deploy/local-cluster.sh
# in a temp dir) at concurrency 1, 16 and 64 (one sinter-bench run per level), prints each row and
# a `# cpu` line (CPU ms of the nodes and of sinter-bench per committed transaction), and stops
# the cluster by its PIDs (also on failure or Ctrl-C).
#
#   bench/tcc_bench.sh [--seconds T] [--warmup S] [--branches N] [--concurrency C,...]
#                      [--rm-workers N]
#
# Environment: SINTER_BIN (directory of sinter-tc and sinter-bench, default build/bin), and the
# port variables of deploy/local-cluster.sh (SINTER_CLIENT_PORT / _RAFT_PORT / _HTTP_PORT,
# default "auto" here: free ports), SINTER_GROUPS (raft groups, default 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SINTER_BIN:-$root/build/bin}
export SINTER_TC=${SINTER_TC:-$bin/sinter-tc}
# Free ports unless set: a benchmark must not collide with a cluster or test already running.
export SINTER_CLIENT_PORT=${SINTER_CLIENT_PORT:-auto} SINTER_RAFT_PORT=${SINTER_RAFT_PORT:-auto}
export SINTER_HTTP_PORT=${SINTER_HTTP_PORT:-auto}
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
hport=$(sed -n 's/^hport=//p' "$dir/cluster.env")
addrs=tcp://127.0.0.1:$cport,tcp://127.0.0.1:$((cport + 1)),tcp://127.0.0.1:$((cport + 2))
echo "# fresh 3-node cluster in $dir ($(nproc) CPU(s)); $(uname -r); $(date -u +%FT%TZ)"

# CPU time, robust to a shared machine where tx/s is not: utime + stime (/proc/PID/stat fields 14
# and 15, clock ticks) of the 3 nodes, and of sinter-bench (the `times` of the subshell that ran
# it), over each row, from its warm-up to its exit (phase 2 drained, up to 10 s after the window);
# divided by the globals that became Committed meanwhile (node 1's sinter_globals, every group);
# and the raft entries committed meanwhile (sinter_raft_commit_index, every group) per global.
tck=$(getconf CLK_TCK)
nodes_ticks() {
  local n t=0 f
  for n in 1 2 3; do
    read -ra f <"/proc/$(<"$dir/node$n.pid")/stat"
    # Fields after the parenthesised command name (no spaces in "sinter-tc"): utime is $14.
    t=$((t + f[13] + f[14]))
  done
  echo "$t"
}
# "COMMITTED ENTRIES": globals Committed and raft entries committed, summed over the groups.
committed() {
  local out
  out=$( (exec 3<>"/dev/tcp/127.0.0.1/$hport" &&
          printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
          timeout 5 cat <&3) 2>/dev/null) || { echo 0 0; return; }
  printf '%s\n' "$out" | awk '/^sinter_globals\{.*status="Committed"\}/ { s += $2 }
    /^sinter_raft_commit_index\{/ { e += $2 } END { print s + 0, e + 0 }'
}

IFS=, read -ra levels <<<"$conc"
for c in "${levels[@]}"; do
  n0=$(nodes_ticks)
  read -r k0 e0 < <(committed)
  tf="$dir/times.$c"
  ( rc=0
    "$bin/sinter-bench" tcc --branches "$branches" --concurrency "$c" --seconds "$seconds" \
      --warmup "$warmup" --rm-workers "$rmw" --addrs "$addrs" --secret-file "$dir/secret" || rc=$?
    times >"$tf"
    exit $rc )
  n1=$(nodes_ticks)
  read -r k1 e1 < <(committed)
  # `times`, second line: the subshell's children's user and system time, "NmS.SSSs NmS.SSSs".
  bench_ms=$(sed -n 2p "$tf" | sed 's/[ms]/ /g' |
    awk '{ print int(($1 * 60 + $2 + $3 * 60 + $4) * 1000 + 0.5) }')
  nodes_ms=$(( (n1 - n0) * 1000 / tck ))
  tx=$((k1 - k0))
  awk -v c="$c" -v n="$nodes_ms" -v b="$bench_ms" -v tx="$tx" -v e=$((e1 - e0)) 'BEGIN {
    all = "-"; nd = "-"; ept = "-"
    if (tx > 0) {
      all = sprintf("%.3f", (n + b) / tx); nd = sprintf("%.3f", n / tx); ept = sprintf("%.2f", e / tx)
    }
    printf "# cpu C=%s: nodes %d ms + sinter-bench %d ms for %d globals Committed:" \
      " %s CPU ms per committed tx (nodes alone %s); %d raft entries, %s per committed tx\n",
      c, n, b, tx, all, nd, e, ept }'
done
