#!/usr/bin/env bash
# The README's first command: build everything and run the main job.
# Today the main job is the deterministic Raft simulator over seeded fault schedules; once the
# coordinator cluster exists this script starts a local 3-node cluster and the TCC demo.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

echo "== building (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >build.configure.log 2>&1 ||
  { cat build.configure.log; exit 1; }
cmake --build build -j "$jobs"

if [[ -x build/bin/raft-sim ]]; then
  for n in 3 5; do
    echo
    echo "== raft-sim: 200 seeded schedules on a $n-node cluster (partitions, crashes, loss,"
    echo "   membership changes, leadership transfers, snapshots, reads; checked every step)"
    build/bin/raft-sim --seeds 200 --nodes "$n"
  done
fi
echo
echo "quickstart: done. Executables are in build/bin/; run the tests with tests/run-all.sh."
