#!/usr/bin/env bash
# The recommender's quality-bar figures, release build, on this machine (`make bench` runs it):
#   embedding     titles/s through all-MiniLM-L6-v2 in batches of 32 (bar >= 150), median of runs
#   related       related(first: 10) with 100,000 vectors in pgvector (HNSW): p50/p99 of the
#                 domain call with its PostgreSQL round trips (bar p99 <= 20 ms), recall@10
#                 against an exact search with the same exclusions (bar >= 0.95), and the
#                 HNSW parameters. Vectors: clustered synthetic ones plus real title embeddings.
# env: FLICK_BENCH_VECTORS (100000), FLICK_BENCH_QUERIES (500), FLICK_BENCH_RUNS (3),
#      FLICK_BENCH_BUILD=0 skips the build.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
"$FLICK_ROOT/scripts/services.sh" up >/dev/null # PostgreSQL+pgvector on :5433 and the model weights
bench=$CARGO_TARGET_DIR/release/examples/bench
if [ "${FLICK_BENCH_BUILD:-1}" != 0 ] || [ ! -x "$bench" ]; then
  log "cargo build --release -p flick-recommender --example bench"
  cargo build --release -q -p flick-recommender --example bench
fi
"$bench"
