#!/usr/bin/env bash
# The transcoder's quality-bar figures, release build, on this machine (`make bench` runs it):
#   transcode  a 60 s 720p30 clip into the 720/480/360/240 ladder through Flick (job pickup ->
#              renditions in S3, plus time to first playable) vs a naive one-process ffmpeg
#              ladder (audio per rung; bar: Flick wall <= 0.80x) vs one ffmpeg per rung (bar:
#              Flick CPU <= 0.70x the sum)
#   upload     1 GiB with tus in 8 MiB chunks into the transcoder on the S3 server vs a direct
#              multipart upload to the same server (bar >= 70%), Flick's peak RSS (bar <= 150 MiB);
#              then as 4 partial uploads sent at once joined by a final (tus concatenation;
#              bar >= 100% of the direct upload, RSS <= 150 MiB)
# The work is in scripts/bench_transcode.py (its docstring lists the FLICK_BENCH_* knobs).
# env: FLICK_BENCH_BUILD=0 skips the build; ~6-8 min with the defaults on 2 cores.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/flick/target}
"$FLICK_ROOT/scripts/services.sh" up >/dev/null # SeaweedFS S3 on :9000, bucket flick-test
"$FLICK_ROOT/scripts/tools.sh" ffmpeg >/dev/null
put=$CARGO_TARGET_DIR/release/examples/multipart_put
# Two invocations, as scripts/bench.sh builds flick on its own: each reuses its earlier
# artifacts (the example also builds flick-storage's dev-dependencies).
if [ "${FLICK_BENCH_BUILD:-1}" != 0 ]; then
  log "cargo build --release -p flick --bin flick"
  cargo build --release -q -p flick --bin flick
fi
if [ "${FLICK_BENCH_BUILD:-1}" != 0 ] || [ ! -x "$put" ]; then
  log "cargo build --release -p flick-storage --example multipart_put"
  cargo build --release -q -p flick-storage --example multipart_put
fi
exec python3 "$FLICK_ROOT/scripts/bench_transcode.py" \
  --flick "$CARGO_TARGET_DIR/release/flick" \
  --multipart-put "$put"
