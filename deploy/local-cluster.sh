#!/usr/bin/env bash
# Runs a 3-node sinter-tc cluster on loopback for development and demos.
#
#   deploy/local-cluster.sh start  [DIR]   start the 3 nodes (data, logs, pids under DIR)
#   deploy/local-cluster.sh status [DIR]   which nodes run, which node leads each raft group
#   deploy/local-cluster.sh stop   [DIR]   stop the nodes by their PID files (SIGTERM, then KILL)
#
# DIR defaults to build/local-cluster. Environment: SINTER_TC (binary, default build/bin/sinter-tc),
# SINTER_GROUPS (raft groups, default 2), SINTER_CLIENT_PORT / SINTER_RAFT_PORT / SINTER_HTTP_PORT
# (first port of each range, defaults 18091 / 17091 / 18081; node N uses +N-1; "auto": free ones
# picked at start, recorded in DIR/cluster.env like the others). Each node serves
# /health, /metrics and the admin API (docs/operations.md) on its HTTP address. The shared secret
# is generated on the first start and kept in DIR/secret; clients (and admin calls, as
# "Authorization: Bearer $(cat DIR/secret)") read it from there. status and stop reuse the
# settings of the start (DIR/cluster.env). status asks each node's /health with build/bin/sinterctl
# when it is built (SINTERCTL overrides the path), else with bash's /dev/tcp.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
dir=${2:-$root/build/local-cluster}
bin=${SINTER_TC:-$root/build/bin/sinter-tc}
groups=${SINTER_GROUPS:-2}
cport=${SINTER_CLIENT_PORT:-18091}
rport=${SINTER_RAFT_PORT:-17091}
hport=${SINTER_HTTP_PORT:-18081}
nodes=(1 2 3)
# status and stop use the ports and group count the cluster was started with.
if [[ $cmd != start && -f $dir/cluster.env ]]; then
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
fi

client_url() { echo "tcp://127.0.0.1:$((cport + $1 - 1))"; }
raft_url() { echo "tcp://127.0.0.1:$((rport + $1 - 1))"; }
http_url() { echo "http://127.0.0.1:$((hport + $1 - 1))"; }

ctl=${SINTERCTL:-$root/build/bin/sinterctl}

# /health of node $1, printed as the node's JSON; fails when the node does not answer. With
# sinterctl built it asks (exit 1 is a 503, whose body is still the health document); otherwise
# bash's own /dev/tcp does (no curl or python on a minimal Debian), HTTP/1.0, so the server closes
# after its answer.
http_health() {
  if [[ -x $ctl ]]; then
    local out rc=0
    out=$("$ctl" --http "$(http_url "$1")" --timeout 5000 --json health 2>/dev/null) || rc=$?
    [[ ($rc == 0 || $rc == 1) && -n $out ]] || return 1
    printf '%s\n' "$out"
    return 0
  fi
  http_get "$1" /health
}

# GET path from node $1's HTTP port with /dev/tcp. Prints the body; fails when the node does not
# answer.
http_get() {
  local port=$((hport + $1 - 1)) out
  out=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
          printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
          timeout 5 cat <&3) 2>/dev/null) || return 1
  [[ -n $out ]] || return 1
  printf '%s\n' "${out#*$'\r\n\r\n'}"
}

# The PID in DIR/nodeN.pid if that process is alive and is a sinter-tc (a recycled PID is not
# ours to signal).
live_pid() {
  local f="$dir/node$1.pid" pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'sinter-tc' || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A first port for 3 nodes whose 3 ports nobody listens on, outside Linux's ephemeral range
# (32768-60999) and away from the others picked: for "auto" (benchmarks beside other clusters).
picked=" "
auto_base() {
  local b n ok
  while :; do
    b=$((20000 + RANDOM % 12000))
    ok=1
    for n in 0 1 2; do
      if [[ $picked == *" $((b + n)) "* ]] || port_open $((b + n)); then
        ok=0
        break
      fi
    done
    if ((ok)); then
      echo "$b" # runs in $(...): the caller adds the 3 ports to $picked
      return
    fi
  done
}

start() {
  if [[ ! -x $bin ]]; then
    echo "local-cluster: $bin not found: build first (cmake --build build)" >&2
    exit 1
  fi
  if [[ $cport == auto ]]; then cport=$(auto_base); picked+="$cport $((cport + 1)) $((cport + 2)) "; fi
  if [[ $rport == auto ]]; then rport=$(auto_base); picked+="$rport $((rport + 1)) $((rport + 2)) "; fi
  if [[ $hport == auto ]]; then hport=$(auto_base); fi
  mkdir -p "$dir"
  if [[ ! -s $dir/secret ]]; then
    (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/secret")
  fi
  # The INI names the secret's file (tc.secret_file) instead of holding it: only DIR/secret,
  # written under umask 077, ever contains the secret.
  cat >"$dir/cluster.ini" <<EOF
; written by deploy/local-cluster.sh
[raft]
groups = $groups
[tc]
secret_file = $dir/secret
EOF
  printf 'groups=%d\ncport=%d\nrport=%d\nhport=%d\n' "$groups" "$cport" "$rport" "$hport" \
    >"$dir/cluster.env"
  # A port held by anything else (another cluster, a stale process) would make the node exit
  # while the other listener answers in its place: refuse before starting anything.
  for n in "${nodes[@]}"; do
    live_pid "$n" >/dev/null && continue
    for port in $((cport + n - 1)) $((rport + n - 1)) $((hport + n - 1)); do
      if port_open "$port"; then
        echo "local-cluster: port $port (node $n) is already in use; stop whatever holds it" \
          "or pick other ports with SINTER_CLIENT_PORT / SINTER_RAFT_PORT / SINTER_HTTP_PORT" >&2
        exit 1
      fi
    done
  done
  for n in "${nodes[@]}"; do
    if pid=$(live_pid "$n"); then
      echo "node $n already running (pid $pid)"
      continue
    fi
    local args=(--config "$dir/cluster.ini" --id "$n" --client-listen "$(client_url "$n")"
                --raft-listen "$(raft_url "$n")" --http-listen "$(http_url "$n")"
                --data-dir "$dir/node$n")
    for p in "${nodes[@]}"; do
      [[ $p == "$n" ]] || args+=(--peer "$p=$(raft_url "$p"),$(client_url "$p"),$(http_url "$p")")
    done
    nohup "$bin" "${args[@]}" >>"$dir/node$n.log" 2>&1 </dev/null &
    echo $! >"$dir/node$n.pid"
  done
  for n in "${nodes[@]}"; do
    local port=$((cport + n - 1)) i
    for ((i = 0; i < 100; i++)); do
      port_open "$port" && break
      if ! live_pid "$n" >/dev/null; then
        echo "local-cluster: node $n exited; see $dir/node$n.log:" >&2
        tail -n 5 "$dir/node$n.log" >&2
        stop >/dev/null
        exit 1
      fi
      sleep 0.1
    done
    if ! port_open "$port" || ! live_pid "$n" >/dev/null; then
      echo "local-cluster: node $n is not serving on $port; see $dir/node$n.log" >&2
      stop >/dev/null
      exit 1
    fi
  done
  echo "sinter-tc cluster running in $dir ($groups raft group(s))"
  for n in "${nodes[@]}"; do
    printf '  node %d: client %s  http %s  raft %s  pid %s\n' "$n" "$(client_url "$n")" \
      "$(http_url "$n")" "$(raft_url "$n")" "$(live_pid "$n")"
  done
  echo "  shared secret: $dir/secret"
}

status() {
  local any=0 n
  declare -A health=()
  for n in "${nodes[@]}"; do
    if pid=$(live_pid "$n"); then
      local h state
      h=$(http_health "$n") || h=""
      state=$(grep -o '"status":"[a-z]*"' <<<"$h" | head -n 1 | cut -d'"' -f4) || true
      health[$n]=$h
      echo "node $n: running (pid $pid), client $(client_url "$n"), http $(http_url "$n")," \
        "health ${state:-no answer}"
      any=1
    else
      echo "node $n: stopped"
    fi
  done
  [[ $any == 1 ]] || return 0
  # Each running node's /health names the leader it knows per group, with the term; the newest
  # term among the nodes wins (a node cut off may still remember an old leader).
  for ((g = 0; g < groups; g++)); do
    local best_term=-1 best_leader=0
    for n in "${!health[@]}"; do
      local e leader term
      e=$(grep -o "{\"group\":$g,\"role\":\"[a-z-]*\",\"leader\":[0-9]*,[^}]*\"term\":[0-9]*" \
            <<<"${health[$n]}") || continue
      leader=$(sed -E 's/.*"leader":([0-9]+).*/\1/' <<<"$e")
      term=$(sed -E 's/.*"term":([0-9]+).*/\1/' <<<"$e")
      if ((term > best_term)); then
        best_term=$term
        best_leader=$leader
      fi
    done
    if [[ $best_leader == 0 ]]; then
      echo "group $g: no leader known"
    else
      echo "group $g: leader node $best_leader (term $best_term), client" \
        "$(client_url "$best_leader"), http $(http_url "$best_leader")"
    fi
  done
  if [[ -x $ctl ]]; then
    echo "more: $ctl --http $(http_url 1) health | list | show XID (SINTER_SECRET=\$(cat $dir/secret) for redrive / resolve)"
  fi
}

stop() {
  local pids=()
  for n in "${nodes[@]}"; do
    if pid=$(live_pid "$n"); then
      kill -TERM "$pid"
      pids+=("$n:$pid")
    fi
  done
  for np in "${pids[@]}"; do
    local n=${np%%:*} pid=${np#*:} i
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node $n (pid $pid) did not stop in 30 s: SIGKILL"
      kill -KILL "$pid"
    fi
    echo "node $n stopped"
    rm -f "$dir/node$n.pid"
  done
  ((${#pids[@]} > 0)) || echo "no node running in $dir"
}

case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
*)
  echo "usage: $0 start|stop|status [DIR]" >&2
  exit 2
  ;;
esac
