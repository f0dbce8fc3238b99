#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: its own cluster in a directory, on 127.0.0.1 and a
# free port, never the distribution's cluster.
#
# usage: pg-server.sh start DIR [--max-prepared N]   initdb into DIR, start, print the port
#        pg-server.sh stop DIR                        stop by the PID in postmaster.pid, rm DIR
#        pg-server.sh check DIR [--max-prepared N]    the server answers as configured
#        pg-server.sh bindir                          print the PostgreSQL binaries' directory
#
# After start, DIR holds:
#   port       the TCP port, one line
#   conninfo   a libpq connection string: host=127.0.0.1 port=N user=postgres dbname=postgres
#   data/      the cluster (PGDATA); postmaster.pid there names the server process
#   sock/      its unix socket directory
#   log        the server log
# data/, sock/ and log move to a /tmp/sinter-pg.* directory, named in DIR/cluster, when DIR's
# path is too long for a unix socket or (as root) the postgres user cannot reach DIR.
# max_prepared_transactions is 64 unless --max-prepared says otherwise (0 for the XA test that
# checks the "no prepared transactions" error). Authentication is trust, for the unix socket and
# 127.0.0.1 only; fsync is off (a crash loses a test database, nothing else).
#
# initdb and postgres refuse to run as root. When the caller is root (CI containers), DIR is
# handed to the `postgres` system user (created by Debian's postgresql package) and every
# PostgreSQL binary runs through `runuser -u postgres --`; otherwise they run as the caller.
# The server is stopped by its PID only (pg_ctl stop -m fast, then SIGTERM / SIGKILL to that
# PID after checking it is still a postgres process): never pkill or killall.
set -euo pipefail

die() {
  echo "pg-server.sh: $*" >&2
  exit 1
}

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return; }
  fi
  # Debian keeps server binaries out of PATH, one directory per major version: newest first.
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -rn); do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  die "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql package"
}

BINDIR=$(find_bindir)

# as_pg CMD...: run a PostgreSQL binary as the user that may run it.
if [[ $(id -u) -eq 0 ]]; then
  getent passwd postgres >/dev/null || die "running as root needs the 'postgres' system user"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The server's PID if DIR's server is running, else nothing.
running_pid() {
  local pidfile=$1/data/postmaster.pid pid
  [[ -f "$pidfile" ]] || return 0
  pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  # Only a live postgres process counts: after a reboot or crash the PID may belong to someone
  # else now, and we must never signal that.
  [[ -r /proc/$pid/comm ]] || return 0
  case $(cat "/proc/$pid/comm" 2>/dev/null) in
  postgres | postmaster) echo "$pid" ;;
  esac
}

# The cluster's directory: DIR itself, or the /tmp directory named in DIR/cluster (see start).
cluster_of() {
  local c=$1
  [[ -f "$1/cluster" ]] && c=$(cat "$1/cluster")
  echo "$c"
}

cmd_stop() {
  local dir=$1 pid i port="" cluster
  [[ -d "$dir" ]] || return 0
  [[ -f "$dir/port" ]] && port=$(cat "$dir/port")
  cluster=$(cluster_of "$dir")
  pid=$(running_pid "$cluster")
  if [[ -n "$pid" ]]; then
    as_pg "$BINDIR/pg_ctl" -D "$cluster/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    for sig in TERM KILL; do
      kill -0 "$pid" 2>/dev/null || break
      kill "-$sig" "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    done
    if kill -0 "$pid" 2>/dev/null; then
      die "postmaster $pid of $dir is still running"
    fi
  fi
  if [[ "$cluster" != "$dir" && "$cluster" == /tmp/sinter-pg.* ]]; then
    rm -rf "$cluster"
  fi
  rm -rf "$dir"
  # Nothing of ours may be left listening (the fixture's cleanup relies on this check).
  if [[ -n "$port" ]] && port_busy "$port"; then
    die "port $port of $dir still accepts connections after stop"
  fi
}

cmd_check() {
  local dir=$1 maxprep=$2 got
  [[ -f "$dir/conninfo" ]] || die "no server in $dir (no conninfo)"
  got=$("$BINDIR/psql" "$(cat "$dir/conninfo")" -X -A -t -v ON_ERROR_STOP=1 \
    -c "SELECT current_setting('max_prepared_transactions') || ' ' ||
               current_setting('listen_addresses') || ' ' || inet_server_addr()")
  [[ "$got" == "$maxprep 127.0.0.1 127.0.0.1/32" ]] ||
    die "unexpected server settings: '$got' (want max_prepared_transactions=$maxprep on 127.0.0.1)"
  echo "ok: $got"
}

cmd_start() {
  local dir=$1 maxprep=$2 port="" attempt cluster pid
  # A server left over from an interrupted run of the same directory is stopped first.
  cmd_stop "$dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cluster=$dir
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$dir"
    # The postgres user must reach DIR: a checkout under /root (mode 700) is not searchable.
    runuser -u postgres -- test -w "$dir" || cluster=""
  fi
  # A unix socket path is limited to 107 bytes: deep build directories do not fit.
  if [[ -n "$cluster" && ${#cluster} -gt 70 ]]; then
    cluster=""
  fi
  if [[ -z "$cluster" ]]; then
    # Then the cluster lives in /tmp and DIR/cluster names it; stop removes both.
    cluster=$(mktemp -d /tmp/sinter-pg.XXXXXX)
    echo "$cluster" >"$dir/cluster"
    if [[ $(id -u) -eq 0 ]]; then
      chown postgres: "$cluster"
    fi
  fi
  as_pg mkdir -m 700 "$cluster/sock"
  as_pg "$BINDIR/initdb" -D "$cluster/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  # Trust on the unix socket and 127.0.0.1 only; nothing else may connect.
  printf '%s\n' "local all all              trust" "host  all all 127.0.0.1/32 trust" |
    as_pg tee "$cluster/data/pg_hba.conf" >/dev/null
  printf '%s\n' "" "# --- tests/lib/pg-server.sh ---" \
    "listen_addresses = '127.0.0.1'" \
    "unix_socket_directories = '$cluster/sock'" \
    "max_prepared_transactions = $maxprep" \
    "max_connections = 100" \
    "shared_buffers = 32MB" \
    "fsync = off" \
    "synchronous_commit = off" \
    "full_page_writes = off" \
    "log_min_messages = warning" |
    as_pg tee -a "$cluster/data/postgresql.conf" >/dev/null
  # Pick a port nobody listens on, below the kernel's ephemeral range (where outgoing connections
  # take their local ports; tests/lib/testproc.c picks there too); if another process grabs it
  # before the server binds, the start fails and we try the next candidate.
  local eph_lo
  eph_lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  ((eph_lo > 12000)) || eph_lo=32768
  for ((attempt = 0; attempt < 20; attempt++)); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % (eph_lo - 10000)))
    port_busy "$port" && continue
    if as_pg "$BINDIR/pg_ctl" -D "$cluster/data" -l "$cluster/log" -w -t 60 -o "-p $port" \
      start >/dev/null 2>&1; then
      break
    fi
    port=""
    # A failed start may still have left a postmaster behind: stop it by PID before retrying.
    pid=$(running_pid "$cluster")
    if [[ -n "$pid" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  if [[ -z "$port" ]]; then
    cat "$cluster/log" >&2 2>/dev/null || true
    die "server did not start"
  fi
  echo "$port" >"$dir/port"
  echo "host=127.0.0.1 port=$port user=postgres dbname=postgres connect_timeout=10" \
    >"$dir/conninfo"
  chmod 644 "$dir/port" "$dir/conninfo"
  echo "$port"
}

case ${1:-} in
start | check)
  [[ $# -ge 2 ]] || die "usage: pg-server.sh $1 DIR [--max-prepared N]"
  cmd=$1 dir=$2 maxprep=64
  shift 2
  while [[ $# -gt 0 ]]; do
    case $1 in
    --max-prepared)
      [[ ${2:-} =~ ^[0-9]+$ ]] || die "--max-prepared needs a number"
      maxprep=$2
      shift 2
      ;;
    *) die "unknown option $1" ;;
    esac
  done
  "cmd_$cmd" "$dir" "$maxprep"
  ;;
stop)
  [[ $# -eq 2 ]] || die "usage: pg-server.sh stop DIR"
  cmd_stop "$2"
  ;;
bindir) echo "$BINDIR" ;;
*) die "usage: pg-server.sh start|check DIR [--max-prepared N] | stop DIR | bindir" ;;
esac
