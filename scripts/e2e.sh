#!/usr/bin/env bash
# End-to-end checks run by `make test`, on both shapes of the platform:
#   dev    scripts/dev.sh (one flick process, embedded adapters) on a fresh data directory
#   stack  scripts/stack.sh (a process per service, replicas, real services, the mesh,
#          Prometheus + Alertmanager) from fresh state (stack name `e2e`)
# For each: start it, run scripts/smoke.sh through the edge (which runs the upload-to-playback
# journey, scripts/e2e_upload.py, and the security checks), tus-js-client's parallel uploads
# (web/tests/tus-parallel.mjs), on dev also the web app's journey in
# Chromium (web/tests/journey.mjs; FLICK_WEB=0 skips the web app and it; its screenshots and
# report are kept in $FLICK_ARTIFACTS_DIR/web-journey, default data/artifacts), stop it with SIGTERM
# and check every port it used was released.
# usage: scripts/e2e.sh [dev|stack]...   (default: both)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLICK_ROOT"

# Known to the checks, as if it had leaked: a client that knows it must still gain nothing.
export FLICK_MESH_SECRET=${FLICK_MESH_SECRET:-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}

# run_shape NAME SCRIPT BANNER PORTS SMOKE_ENV...: start SCRIPT on a fresh data directory, wait
# for BANNER in its output, smoke-test with SMOKE_ENV, stop it, check PORTS are free.
run_shape() {
  local name=$1 script=$2 banner=$3 ports=$4
  shift 4
  local data status=0 pid port
  data=$(mktemp -d "/tmp/flick-e2e-$name.XXXXXX")
  log "$name: $script on $data"
  FLICK_DEV_BUILD=0 FLICK_DATA_DIR=$data "$script" >"$data/$name.log" 2>&1 &
  pid=$!
  if ! wait_banner "$data/$name.log" "$pid" 300 "$banner"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    die "$name: $script did not come up"
  fi
  env "$@" scripts/smoke.sh || status=$?
  if [ "$status" -eq 0 ] && [ "${FLICK_WEB:-1}" != 0 ]; then
    tus_parallel "$name" "$data" || status=$?
  fi
  if [ "$status" -eq 0 ] && [ "$name" = dev ] && [ "${FLICK_WEB:-1}" != 0 ]; then
    web_journey "$data" || status=$?
  fi
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for port in $ports; do
    if tcp_open 127.0.0.1 "$port"; then
      echo "FAIL  $name: port $port still open after the stack stopped"
      status=1
    fi
  done
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$data/$name.log" >&2
    [ ! -d "$data/logs" ] || echo "($name: logs kept in $data/logs)" >&2
  else
    rm -rf "$data"
  fi
  return "$status"
}

# tus-js-client's parallelUploads (web/tests/tus-parallel.mjs, the web app's own tus-js-client
# in Node): partial uploads joined by a final one, transcoded to READY. Needs the web app's
# node_modules (scripts/web.sh, which dev.sh and stack.sh run); FLICK_WEB=0 runs neither.
tus_parallel() {
  local name=$1 data=$2
  log "$name: a parallel upload with tus-js-client"
  if (cd web && FLICK_EDGE_URL=http://127.0.0.1:8080 FLICK_DATA_DIR=$data node tests/tus-parallel.mjs); then
    echo "ok    $name: tus-js-client parallelUploads joined and transcoded"
  else
    echo "FAIL  $name: tus-js-client parallelUploads"
    return 1
  fi
}

# The web app's browser journey (web/tests/journey.mjs) in Debian's Chromium through the edge;
# screenshots and the report stay under DATA/web-screenshots and DATA/web-journey.
web_journey() {
  local data=$1 started=$SECONDS
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
  log "dev: the web app's journey in Chromium"
  local status=0 kept=${FLICK_ARTIFACTS_DIR:-$FLICK_ROOT/data/artifacts}/web-journey
  (cd web && FLICK_WEB_URL=http://127.0.0.1:8080 FLICK_DATA_DIR=$data node tests/journey.mjs) || status=$?
  # The screenshots and the report outlive the run's data directory (test artifacts).
  rm -rf "$kept" && mkdir -p "$kept" && cp -r "$data/web-screenshots" "$data/web-journey/report.json" "$kept/" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "FAIL  dev: the web journey (screenshots and report in $kept)"
    return 1
  fi
  echo "ok    dev: the web journey in Chromium ($((SECONDS - started)) s; screenshots in $kept)"
}

shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(dev stack)
# Videos of 8 s or more are split into 4 s parts (production: 120 s, 60 s), so the uploads of
# the smoke checks and the web journey's 10 s clip go through segment-parallel jobs, and
# Chromium plays the assembled video across the parts' boundaries.
export FLICK_TRANSCODER__CHUNK_MIN_SECONDS=${FLICK_TRANSCODER__CHUNK_MIN_SECONDS:-8}
export FLICK_TRANSCODER__CHUNK_SECONDS=${FLICK_TRANSCODER__CHUNK_SECONDS:-4}
export FLICK_TRANSCODER__CHUNK_FIRST_SECONDS=${FLICK_TRANSCODER__CHUNK_FIRST_SECONDS:-4}
status=0
for shape in "${shapes[@]}"; do
  case $shape in
    dev)
      run_shape dev scripts/dev.sh 'Flick dev stack is up' "8080 8090 4000 8081 8082 8083 8084" || status=1
      ;;
    stack)
      FLICK_STACK_NAME=e2e FLICK_STACK_FRESH=1 run_shape stack scripts/stack.sh 'Flick stack is up' \
        "8080 8090 4000 8191 8192 8193 8194 8281 8381 8282 8382 8283 8284 8285 8385 9090 9093" \
        FLICK_SMOKE_PROCESSES="accounts-1:8281 accounts-2:8381 media-1:8282 media-2:8382 transcoder:8283 recommender:8284 activity:8287" \
        FLICK_SMOKE_PROMETHEUS=http://127.0.0.1:9090 || status=1
      ;;
    *) die "unknown shape $shape (dev or stack)" ;;
  esac
done
exit "$status"
