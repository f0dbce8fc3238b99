#!/usr/bin/env bash
# usage: check-install.sh BUILD_DIR CC CONSUMER_SOURCE [EXTRA_CFLAGS]
set -euo pipefail
build=$1 cc=$2 src=$3 extra=${4:-}
prefix=$(mktemp -d /tmp/sinter-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/sinter/error.h include/sinter/raft.h; do
  [[ -f "$prefix/$f" ]] || { echo "not installed: $f"; exit 1; }
done
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
mods=()
for pc in "$prefix"/lib*/pkgconfig/*.pc "$prefix"/lib/*/pkgconfig/*.pc; do
  [[ -f "$pc" ]] && mods+=("$(basename "$pc" .pc)")
done
[[ ${#mods[@]} -gt 0 ]] || { echo "no pkg-config files installed"; exit 1; }
echo "pkg-config modules: ${mods[*]}"
# Each installed module must resolve on its own (its Requires are installed too).
for m in "${mods[@]}"; do pkg-config --exists --print-errors "$m"; done
# shellcheck disable=SC2046
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror $extra -o "$prefix/consumer" "$src" \
  $(pkg-config --cflags --libs sinter-tm sinter-rm sinter-proto)
"$prefix/consumer"
