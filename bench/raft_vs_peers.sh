#!/usr/bin/env bash
# bench/raft_vs_peers.sh — Sinter's raft against two peers, on this machine, in one run:
#   1. raft-bench      Sinter raft host, 3 nodes in one process, snapshots at the host default
#                      (and once more with --no-snapshots, for reference)
#   2. craft-bench     canonical raft 0.15 (Debian libraft-dev), same 3-node same-disk setup,
#                      snapshots off (threshold 2^31) and at the library default (1024)
#   3. etcd-put-bench  a 3-member etcd 3.4 cluster (Debian etcd-server) started here on loopback
#                      ports and temporary directories, puts over its JSON gateway
# Same entry size and concurrencies for all. Prints every row, then the ratios per concurrency.
#
#   bench/raft_vs_peers.sh [--seconds 5] [--concurrency 1,16,64,256] [--entry-size 128]
#                          [--rounds 1] [--io-trace] [--build-dir build] [--no-install] [--no-build]
#
# --rounds N runs the compared pair (Sinter with snapshots on, canonical raft with snapshots off)
# N times, alternated, and the table and targets use each row's median over the rounds: on this
# shared VM one run's row moves by 10-20% with the load and a disk stall (bench/README.md). The
# other three runs stay single. --io-trace adds one more Sinter run (snapshots on) with
# raft-bench --io-trace, whose "# gaps" lines say how many commit gaps > 10 ms overlapped snapshot
# I/O: target 3 is then also judged on that (a gap with no snapshot I/O is a disk stall, not the
# snapshot stall the target is about); the strict max_gap verdict is printed as well.
#
# Everything listens on 127.0.0.1 only; etcd is stopped by PID (trap on exit) and every temporary
# directory is removed. Default runtime: about 2.5 minutes (5 bench runs x (4 rows x 5 s + set-up));
# each further round adds two runs, --io-trace one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
seconds=5
conc=1,16,64,256
size=128
build="$root/build"
rounds=1
iotrace=0
install=1
dobuild=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --entry-size) size=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --io-trace) iotrace=1; shift ;;
    --no-install) install=0; shift ;;
    --no-build) dobuild=0; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "raft_vs_peers: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
  echo "raft_vs_peers: --rounds wants a positive integer, not '$rounds'" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/raft-vs-peers-XXXXXX")
etcd_pids=()
cleanup() {
  local rc=$?
  for p in "${etcd_pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${etcd_pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  etcd_pids=()
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT INT TERM

if [[ $install -eq 1 ]]; then
  "$root/deploy/install-deps.sh" --bench
fi
if [[ $dobuild -eq 1 ]]; then
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  fi
  cmake --build "$build" -j2 --target raft-bench craft-bench etcd-put-bench
fi
bin="$build/bin"
for b in raft-bench craft-bench etcd-put-bench; do
  [[ -x "$bin/$b" ]] || { echo "raft_vs_peers: $bin/$b missing (build it first)" >&2; exit 1; }
done
command -v etcd >/dev/null || { echo "raft_vs_peers: etcd not installed (etcd-server)" >&2; exit 1; }

common=(--concurrency "$conc" --seconds "$seconds" --entry-size "$size")

echo "== raft_vs_peers: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cpus, $(uname -sr)"
echo "== cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg); disk for ${TMPDIR:-/tmp}: $(df -h "${TMPDIR:-/tmp}" | awk 'NR==2{print $1" "$2}')"
extra=""
[[ $iotrace -eq 1 ]] && extra=", plus an --io-trace run"
echo "== args: ${common[*]}; rounds $rounds$extra"

failed=""
run() { # name, command... A failed run is reported and the others still run: its rows so far
  local name=$1 # are in the table, the rows it did not reach show "-".
  shift
  echo
  echo "== $name: $*"
  if ! "$@" | tee "$tmp/$name.out"; then
    echo "== $name: exited with an error (see its last lines above)"
    failed+=" $name"
  fi
}

# The compared pair alternates round by round, so that a slow spell of the VM falls on both.
for r in $(seq "$rounds"); do
  run "sinter.r$r" "$bin/raft-bench" "${common[@]}"
  run "craft-nosnap.r$r" "$bin/craft-bench" "${common[@]}" --no-snapshots
done
run sinter-nosnap.r1 "$bin/raft-bench" "${common[@]}" --no-snapshots
run craft-snap.r1 "$bin/craft-bench" "${common[@]}"
if [[ $iotrace -eq 1 ]]; then
  run sinter-iotrace.r1 "$bin/raft-bench" "${common[@]}" --io-trace
fi

# ---- etcd: three members on free loopback ports, started only for its own run -----------------
# Below the kernel's ephemeral range (ip_local_port_range, 32768 by default): a port from inside it
# can be taken by any outgoing connection between this check and etcd's bind (seen: "bind: address
# already in use" while CI's tests ran), and any socket on it counts, not only listeners.
eph_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[[ $eph_low -gt 12000 ]] || eph_low=32768
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % (eph_low - 10000)))
    if ! ss -Htan "sport = :$p" | grep -q . && [[ " ${used_ports:-} " != *" $p "* ]]; then
      used_ports="${used_ports:-} $p"
      echo "$p"
      return
    fi
  done
}
cluster=""
eps=""
declare -a cport pport
for i in 1 2 3; do
  cport[$i]=$(free_port)
  pport[$i]=$(free_port)
  cluster+="${cluster:+,}e$i=http://127.0.0.1:${pport[$i]}"
  eps+="${eps:+,}http://127.0.0.1:${cport[$i]}"
done
for i in 1 2 3; do
  mkdir -p "$tmp/etcd$i"
  etcd --name "e$i" --data-dir "$tmp/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${cport[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${cport[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${pport[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${pport[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "raft-vs-peers-$$" \
    --logger zap --log-outputs "$tmp/etcd$i.log" --log-level warn \
    >/dev/null 2>&1 &
  etcd_pids+=($!)
done
healthy=0
for _ in $(seq 100); do
  if ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint health >/dev/null 2>&1; then
    healthy=1
    break
  fi
  sleep 0.1
done
if [[ $healthy -eq 0 ]]; then
  echo "raft_vs_peers: etcd cluster not healthy in 10 s; logs:" >&2
  tail -n 5 "$tmp"/etcd*.log >&2 || true
  exit 1
fi
echo
echo "== etcd $(etcd --version | head -1 | awk '{print $3}'): 3 members, pids ${etcd_pids[*]}, client $eps, defaults (snapshot-count 100000, fsync on)"
run etcd.r1 "$bin/etcd-put-bench" --endpoints "$eps" "${common[@]}"
for p in "${etcd_pids[@]}"; do
  kill "$p" 2>/dev/null || true
done
for p in "${etcd_pids[@]}"; do
  wait "$p" 2>/dev/null || true
done
etcd_pids=()

# ---- side by side ---------------------------------------------------------------------------
echo
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $rounds -gt 1 ]]; then
  echo "== side by side, medians over $rounds rounds for the first and third columns (entries/s, p99 ms, max_gap ms); ratios = Sinter (snapshots on) / peer"
else
  echo "== side by side (entries/s, p99 ms, max_gap ms); ratios = Sinter (snapshots on) / peer"
fi
outs=()
for f in "$tmp"/*.r*.out; do
  [[ -f $f ]] && outs+=("$f")
done
awk -v conc="$conc" -v rounds="$rounds" '
  # median of the n values v[1..n] (sorted in place; n is small)
  function median(v, n,    i, j, x) {
    for (i = 2; i <= n; i++) {
      x = v[i]
      for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]
      v[j + 1] = x
    }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  FNR == 1 { name = FILENAME; sub(/.*\//, "", name); sub(/\.r[0-9]+\.out$/, "", name); row = "" }
  /^ *[0-9]+ / {
    row = $1; k = ++cnt[name, row]
    r_rate[name, row, k] = $2; r_p99[name, row, k] = $4; r_gap[name, row, k] = $7
    if ($7 + 0 > worst[name, row]) worst[name, row] = $7 + 0
  }
  /^# gaps >10ms: [0-9]+, with snapshot I\/O/ && row != "" {
    g = $0; sub(/^# gaps >10ms: /, "", g); split(g, gp, /[ ,]+/)
    tr_gaps[row] = gp[1]; s = $0; sub(/.*with snapshot I\/O /, "", s); tr_snap[row] = s + 0
    s = $0; sub(/.*with spare I\/O /, "", s); tr_spare[row] = s + 0
    s = $0; sub(/.*with neither /, "", s); tr_none[row] = s + 0
    traced = 1
  }
  END {
    split("sinter sinter-nosnap craft-nosnap craft-snap etcd", ns, " ")
    for (j = 1; j <= 5; j++)
      for (key in cnt) {
        split(key, kk, SUBSEP)
        if (kk[1] != ns[j]) continue
        n = cnt[key]; c = kk[2]
        for (q = 1; q <= n; q++) v[q] = r_rate[ns[j], c, q]
        rate[ns[j], c] = median(v, n)
        for (q = 1; q <= n; q++) v[q] = r_p99[ns[j], c, q]
        p99[ns[j], c] = median(v, n)
        for (q = 1; q <= n; q++) v[q] = r_gap[ns[j], c, q]
        gap[ns[j], c] = median(v, n)
      }
    n = split(conc, cs, ",")
    printf "%5s | %-22s | %-22s | %-22s | %-22s | %-22s | %8s %8s %8s\n", "conc",
           "sinter snap-on", "sinter snap-off", "craft snap-off", "craft snap-on",
           "etcd", "S/craft0", "S/craft1", "S/etcd"
    for (i = 1; i <= n; i++) {
      c = cs[i]
      line = sprintf("%5s", c)
      for (j = 1; j <= 5; j++) {
        k = ns[j]
        if ((k, c) in rate)
          line = line sprintf(" | %7d %6.2f %7.1f", rate[k, c], p99[k, c], gap[k, c])
        else
          line = line sprintf(" | %22s", "-")
      }
      r1 = rate["craft-nosnap", c] > 0 ? sprintf("%8.2f", rate["sinter", c] / rate["craft-nosnap", c]) : "       -"
      r2 = rate["craft-snap", c] > 0 ? sprintf("%8.2f", rate["sinter", c] / rate["craft-snap", c]) : "       -"
      r3 = rate["etcd", c] > 0 ? sprintf("%8.2f", rate["sinter", c] / rate["etcd", c]) : "       -"
      print line " | " r1 " " r2 " " r3
    }
    if (rounds > 1) {
      print ""
      print "per round (entries/s), Sinter snap-on / craft snap-off:"
      for (i = 1; i <= n; i++) {
        c = cs[i]; line = sprintf("%5s |", c)
        for (q = 1; q <= rounds; q++)
          line = line sprintf(" %7s / %-7s", (("sinter", c, q) in r_rate) ? r_rate["sinter", c, q] : "-",
                              (("craft-nosnap", c, q) in r_rate) ? r_rate["craft-nosnap", c, q] : "-")
        print line
      }
    }
    if (traced) {
      print ""
      print "io-trace run (Sinter, snapshots on): commit gaps > 10 ms and what overlapped them"
      printf "%5s | %6s %10s %10s %10s\n", "conc", "gaps", "snap I/O", "spare I/O", "neither"
      for (i = 1; i <= n; i++) {
        c = cs[i]
        if (c in tr_gaps) printf "%5s | %6d %10d %10d %10d\n", c, tr_gaps[c], tr_snap[c], tr_spare[c], tr_none[c]
        else printf "%5s | %6s\n", c, "-"
      }
    }
    # Targets (issue): Sinter with snapshots on >= canonical raft snapshots off at every
    # concurrency; p99 at 64 in flight < 3 ms; no stall when a snapshot is taken (strictly: the
    # longest gap between commits stays under 10 ms in every row; attributed, with --io-trace:
    # no gap > 10 ms of the traced run overlapped snapshot I/O).
    t1 = "MET"; t2 = "MET"; t3 = "MET"; t3a = "MET"
    for (i = 1; i <= n; i++) {
      c = cs[i]
      if (!((("sinter", c) in rate) && rate["sinter", c] >= rate["craft-nosnap", c])) t1 = "MISSED"
      if (gap["sinter", c] + 0 >= 10) t3 = "MISSED"
      if (!(c in tr_gaps)) t3a = "not measured"
      else if (tr_snap[c] > 0 && t3a == "MET") t3a = "MISSED"
    }
    if (!(("sinter", 64) in p99)) t2 = "not measured (64 not in --concurrency)"
    else if (p99["sinter", 64] + 0 >= 3) t2 = "MISSED"
    wg = ""
    for (i = 1; i <= n; i++) wg = wg (i > 1 ? "/" : "") sprintf("%.1f", worst["sinter", cs[i]])
    med = rounds > 1 ? " (medians)" : ""
    print ""
    print "target 1, Sinter (snapshots on) >= canonical raft (snapshots off) at every concurrency" med ": " t1
    print "target 2, Sinter p99 at 64 in flight < 3 ms" med ": " t2 \
          ((("sinter", 64) in p99) ? " (" p99["sinter", 64] " ms)" : "")
    print "target 3, no snapshot stall (Sinter max_gap < 10 ms in every row" med "): " t3 " (worst round per row: " wg " ms)"
    if (traced)
      print "target 3, attributed (no gap > 10 ms of the --io-trace run overlapped snapshot I/O): " t3a
  }' "${outs[@]}"
if [[ -n $failed ]]; then
  echo
  echo "raft_vs_peers: these runs failed:$failed"
  exit 1
fi
