#!/usr/bin/env bash
# Installs every Debian 12 package Sinter's build, tests and demos need. Idempotent: packages
# already installed are not touched, and when nothing is missing apt is not run at all.
# Run as root, or as a user with sudo. Everything else (tests/run-all.sh, deploy/quickstart.sh,
# .ci/run) calls this script rather than naming packages itself.
#
#   deploy/install-deps.sh          build + tests + demos
#   deploy/install-deps.sh --bench  also the peers the benchmarks compare against
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git   # toolchain (CMake >= 3.25 on bookworm)
  libnng-dev                                          # transport: REQ/REP, TCP, TLS, HTTP server
  libsqlite3-dev sqlite3                              # coordinator state, TCC fence (SQLite)
  libpq-dev postgresql                                # XA resource, TCC fence (PostgreSQL), tests
  libcmocka-dev                                       # unit tests
  libinih-dev                                         # sinter-tc configuration file (INI)
  libjansson-dev                                      # sinter-tc admin API and /health (JSON)
  clang libclang-rt-14-dev llvm                       # libFuzzer targets, sanitizer runtimes
  clang-format                                        # the committed .clang-format
  procps iproute2                                     # ps/kill/ss used by test scripts
  openssl                                             # throwaway TLS certificates in tests
  gdb                                                 # stacks of a hung test (tests/lib/hangguard.h)
)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(etcd-server etcd-client libraft-dev libuv1-dev postgresql-contrib)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
