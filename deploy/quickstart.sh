#!/usr/bin/env bash
# The README's first command: build everything and run the main job.
#   1. build (build/);
#   2. the TCC transfer demo (examples/tcc-transfer/run.sh): a local 3-node sinter-tc cluster
#      (deploy/local-cluster.sh), two account services with their own SQLite databases, and a
#      client moving money between them: a commit, a cancel after a failed try, a timeout
#      rollback; then everything is stopped;
#   3. the coordinator walkthrough over the raw wire protocol (examples/tc-walkthrough/run.sh):
#      registration with the shared secret, a refused late registration, an idempotent retry;
#   4. run the deterministic Raft simulator over seeded fault schedules.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

echo "== building (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >build.configure.log 2>&1 ||
  { cat build.configure.log; exit 1; }
cmake --build build -j "$jobs"

echo
echo "== the TCC transfer demo: a local 3-node cluster, two account services, three transfers"
examples/tcc-transfer/run.sh build/quickstart-cluster

echo
echo "== a local 3-node coordinator cluster and a walkthrough of its wire protocol"
examples/tc-walkthrough/run.sh build/quickstart-walkthrough

for n in 3 5; do
  echo
  echo "== raft-sim: 200 seeded schedules on a $n-node cluster (partitions, crashes, loss,"
  echo "   membership changes, leadership transfers, snapshots, reads; checked every step)"
  build/bin/raft-sim --seeds 200 --nodes "$n"
done
echo
echo "quickstart: done. Executables are in build/bin/; run the tests with tests/run-all.sh."
