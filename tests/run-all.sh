#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (README's second command, .ci/run):
#   1. build/       normal build with -Werror, then ctest (every tier: unit, sim, integration, fuzz
#                   corpus replays);
#   2. build-asan/  ASan + UBSan build with -Werror, then ctest again;
#   3. build-fuzz/  when clang is installed: libFuzzer targets, each fuzzed FUZZ_SECONDS (60).
# Any failure, crash or sanitizer report fails the run. Environment knobs:
#   JOBS=N           parallel build/test jobs (default: number of cores)
#   FUZZ_SECONDS=N   fuzz time per target (default 60; 0 skips fuzzing)
#   SINTER_SIM_SEEDS_ASAN=N   simulator seeds in the sanitizer build (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
fuzz_seconds=${FUZZ_SECONDS:-60}

configure_and_build() {
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DSINTER_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs"
}

section() { printf '\n==== %s ====\n' "$*"; }

section "normal build (-Werror)"
configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
section "ctest: normal build"
ctest --test-dir build --output-on-failure -j "$jobs"

section "sanitizer build (ASan + UBSan, -Werror)"
configure_and_build build-asan -DCMAKE_BUILD_TYPE=Debug -DSINTER_SANITIZE=ON \
  -DSINTER_SIM_SEEDS="${SINTER_SIM_SEEDS_ASAN:-300}"
section "ctest: sanitizer build"
# Not strict_string_checks: it demands NUL-terminated input even from strndup/strnlen, which are
# defined to stop at n bytes, and so reports valid code.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

if command -v clang >/dev/null && [[ "$fuzz_seconds" != 0 ]]; then
  section "fuzz build (clang, libFuzzer) and ${fuzz_seconds}s per target"
  configure_and_build build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSINTER_FUZZ=ON
  tests/fuzz/run-fuzz.sh "$fuzz_seconds" build-fuzz
else
  section "fuzzing skipped (no clang, or FUZZ_SECONDS=0)"
fi
section "all test stages passed"
