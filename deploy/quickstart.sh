#!/usr/bin/env bash
# The README's first command: build everything and run the main job.
#   1. build (build/);
#   2. start a local 3-node sinter-tc cluster (deploy/local-cluster.sh) and walk through what the
#      coordinator does today: registration with the shared secret, a committed and a rolled-back
#      global transaction, a refused late registration, an idempotent retry; then stop it;
#   3. run the deterministic Raft simulator over seeded fault schedules.
# The TCC transfer demo replaces step 2's walkthrough once the client libraries land.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

echo "== building (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >build.configure.log 2>&1 ||
  { cat build.configure.log; exit 1; }
cmake --build build -j "$jobs"

echo
echo "== a local 3-node coordinator cluster and a walkthrough against it"
examples/tc-walkthrough/run.sh build/quickstart-cluster

for n in 3 5; do
  echo
  echo "== raft-sim: 200 seeded schedules on a $n-node cluster (partitions, crashes, loss,"
  echo "   membership changes, leadership transfers, snapshots, reads; checked every step)"
  build/bin/raft-sim --seeds 200 --nodes "$n"
done
echo
echo "quickstart: done. Executables are in build/bin/; run the tests with tests/run-all.sh."
