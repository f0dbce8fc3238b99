#!/usr/bin/env bash
# usage: tests/fuzz/run-fuzz.sh [SECONDS] [BUILD_DIR]
# Runs every libFuzzer target in BUILD_DIR/bin (fuzz_<area>_<what>, built with SINTER_FUZZ=ON)
# for SECONDS each (default 60), seeded from tests/fuzz/corpus/<area>/ (or
# tests/fuzz/<area>_<what>/corpus/). The committed corpus is
# only read: new inputs go to a scratch directory. Fails on any crash, timeout, leak or sanitizer
# report; the reproducer is kept in BUILD_DIR/fuzz-artifacts/ and its path printed.
set -euo pipefail
seconds=${1:-60}
build=${2:-build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

targets=()
for t in "$build"/bin/fuzz_*; do
  [[ -x "$t" && ! "$t" =~ _replay$ ]] || continue
  targets+=("$t")
done
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "run-fuzz: no fuzz targets in $build/bin (configure with -DCMAKE_C_COMPILER=clang -DSINTER_FUZZ=ON)" >&2
  exit 1
fi

status=0
for t in "${targets[@]}"; do
  name=$(basename "$t")
  area=${name#fuzz_}
  area=${area%%_*}
  # Seeds live in corpus/<area>/, or in the target's own folder: <area>_<what>/corpus/.
  seeds="$here/corpus/$area"
  [[ -d "$seeds" ]] || seeds="$here/${name#fuzz_}/corpus"
  work=$(mktemp -d "/tmp/sinter-fuzz-$name.XXXXXX")
  log="$artifacts/$name.log"
  args=()
  [[ -d "$seeds" ]] && args+=("$seeds")
  echo "run-fuzz: $name for ${seconds}s (seeds: ${seeds})"
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      -max_len=131072 -artifact_prefix="$artifacts/$name-" "$work" "${args[@]}" >"$log" 2>&1 ||
    rc=$?
  rm -rf "$work"
  if [[ $rc -ne 0 ]] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: ' "$log"; then
    echo "run-fuzz: $name FAILED (exit $rc); log: $log" >&2
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" >&2 || tail -20 "$log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | sed "s/^/run-fuzz: $name /"
    echo "run-fuzz: $name clean"
  fi
done
exit $status
